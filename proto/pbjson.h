/* pbjson.h - generic JSON <-> protobuf mapping driven by protobuf-c descriptors. */
#ifndef IHALA_PBJSON_H
#define IHALA_PBJSON_H

#include <stddef.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

/*
 * The mapping follows the proto3 canonical JSON mapping, with these rules:
 *
 * Field names   written in lowerCamelCase ("birthYear"); the .proto name
 *               ("birth_year") is accepted on input too (not both at once).
 *               Unknown names are refused, with a suggestion when one is close.
 * Enums         written as the value name without the enum's prefix, lower
 *               case, '_' written as '-': TASK_STATUS_IN_PROGRESS in enum
 *               TaskStatus is "in-progress" (the FHIR Task.status code),
 *               PRIORITY_EMERGENCY is "emergency". The prefix is the enum's
 *               type name in UPPER_SNAKE plus '_' when every value starts with
 *               it, else the longest common prefix of the value names that
 *               ends in '_'. Input accepts that short form or the full name,
 *               in any case, with '-' or '_', or the number. A number that
 *               names no value is refused on input; on output (only possible
 *               for a message unpacked from the wire) it is written as the
 *               number.
 * 64-bit ints   input: a JSON integer or a decimal string ("18446744073709551615";
 *               values beyond the signed 64-bit range must be strings, jansson
 *               refuses larger literals). Output: a JSON integer while
 *               |value| <= 2^53 (exact in every JSON reader), else a decimal
 *               string; PBJSON_INT64_STRINGS always writes strings.
 * 32-bit ints   a JSON integer, an integral number (3.0) or a decimal string.
 * float/double  a JSON number, or "NaN", "Infinity", "-Infinity", or a
 *               decimal string.
 * bool          true or false only.
 * bytes         base64 (standard or URL-safe alphabet, padding optional on
 *               input; standard with padding on output). A bytes field for
 *               which the bytes hook names a message type may also be given
 *               as a JSON object: it is built and encoded.
 * messages      JSON objects; absent or null means not set.
 * repeated      JSON arrays (null items are refused).
 * oneof         at most one member may be set; a member that is set is
 *               written even when it holds its default value.
 * null          for any singular or repeated field means "not set".
 *
 * Output omits fields that hold their proto3 default (0, false, "", empty
 * bytes, empty arrays, unset messages) unless PBJSON_EMIT_DEFAULTS. Unknown
 * fields kept by protobuf_c_message_unpack() are not written.
 *
 * Error messages (from_json/from_string) start with the JSON path of the bad
 * value, rooted at the message type name in lowerCamelCase, using the keys as
 * the input wrote them: "referral.survivor.birthYear: expected an integer,
 * got string \"abc\"". protobuf-c descriptors do not carry oneof names, so a
 * oneof conflict names the two fields but not the oneof.
 */

/* Input limits; exceeding one fails with IHALA_ETOOLARGE. */
#define PBJSON_MAX_DEPTH 32                 /* nested messages, the root is level 1 */
#define PBJSON_MAX_STRING 65536             /* bytes in one string value */
#define PBJSON_MAX_BYTES (1024 * 1024)      /* decoded bytes in one bytes value */
#define PBJSON_MAX_ITEMS 10000              /* items in one repeated field */
#define PBJSON_MAX_INPUT (16 * 1024 * 1024) /* text given to pbjson_from_string */

/* Flags for pbjson_to_json and pbjson_to_string; unknown bits are ignored. */
enum pbjson_flags {
	PBJSON_EMIT_DEFAULTS = 1 << 0, /* also write fields holding defaults */
	PBJSON_INT64_STRINGS = 1 << 1, /* 64-bit integers always as strings */
	PBJSON_PROTO_NAMES = 1 << 2,   /* keys are .proto names (snake_case) */
	PBJSON_EMBEDDED = 1 << 3,      /* decode bytes fields the hook names */
	PBJSON_PRETTY = 1 << 4,        /* pbjson_to_string: indent by 2 */
};

/*
 * The bytes hook says which bytes fields hold an encoded message: given the
 * containing message type and the field, it returns the embedded message's
 * descriptor, or NULL for plain bytes. With PBJSON_EMBEDDED, pbjson_to_json
 * writes such a field as the decoded message (as base64 when the bytes do
 * not decode); pbjson_from_json always accepts an object there.
 * Set it once at start-up, before other threads use pbjson; NULL removes it.
 */
typedef const ProtobufCMessageDescriptor *(*pbjson_bytes_hook)(
    const ProtobufCMessageDescriptor *msg, const ProtobufCFieldDescriptor *field);

void pbjson_set_bytes_hook(pbjson_bytes_hook hook);

/*
 * The hook for ihala.proto: Submit.envelope and LogEntry.envelope hold an
 * Envelope, Deliver.entry and LogRecord.entry a LogEntry. Install it with
 * pbjson_set_bytes_hook(pbjson_ihala_embedded).
 */
const ProtobufCMessageDescriptor *pbjson_ihala_embedded(const ProtobufCMessageDescriptor *msg,
                                                        const ProtobufCFieldDescriptor *field);

/*
 * Builds a message of type d from the JSON object in (borrowed, not
 * modified). On success returns 0 and sets *out to a message the caller
 * owns and frees with protobuf_c_message_free_unpacked(*out, NULL); every
 * string, bytes buffer, array and sub-message in it is malloc'd.
 * On failure returns IHALA_EJSON (value does not fit the schema),
 * IHALA_ETOOLARGE (a limit above), IHALA_ENOMEM or IHALA_EINVAL (NULL
 * argument), sets *out to NULL and writes a one-line message to err
 * (always NUL-terminated when errlen > 0; err may be NULL).
 */
int pbjson_from_json(const ProtobufCMessageDescriptor *d, json_t *in, ProtobufCMessage **out,
                     char *err, size_t errlen);

/*
 * Same from len bytes of UTF-8 JSON text (need not be NUL-terminated; at
 * most PBJSON_MAX_INPUT). The text must be one JSON object; duplicate keys
 * are refused. Syntax errors give IHALA_EJSON and "line L, column C: ...".
 */
int pbjson_from_string(const ProtobufCMessageDescriptor *d, const char *text, size_t len,
                       ProtobufCMessage **out, char *err, size_t errlen);

/*
 * Writes message m (borrowed) as a new JSON object in *out, which the caller
 * owns (json_decref). Returns 0, IHALA_ENOMEM, IHALA_EUTF8 (a string field
 * is not valid UTF-8: jansson cannot hold it), IHALA_ETOOLARGE (nesting
 * deeper than PBJSON_MAX_DEPTH) or IHALA_EINVAL; on failure *out is NULL.
 */
int pbjson_to_json(const ProtobufCMessage *m, int flags, json_t **out);

/*
 * Same as text: UTF-8 (Arabic and Kurdish stay readable, not \u escaped),
 * compact on one line unless PBJSON_PRETTY, no trailing newline. *out is
 * malloc'd and NUL-terminated; the caller frees it with free().
 */
int pbjson_to_string(const ProtobufCMessage *m, int flags, char **out);

/*
 * The JSON name of an enum value ("in-progress") into buf, NUL-terminated.
 * Returns 0, IHALA_ENOTFOUND (no value has that number) or IHALA_EINVAL
 * (buf too small or NULL argument).
 */
int pbjson_enum_to_name(const ProtobufCEnumDescriptor *ed, int value, char *buf, size_t buflen);

/*
 * Parses an enum value as the input rules above say (short or full name,
 * any case, '-' or '_'; not numbers). Returns 0 and sets *value, or
 * IHALA_ENOTFOUND, or IHALA_EINVAL for a NULL argument.
 */
int pbjson_enum_from_name(const ProtobufCEnumDescriptor *ed, const char *name, int *value);

#endif
