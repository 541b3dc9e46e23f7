/* frame.h - length-prefixed protobuf frames inside the TLS stream, and strict decoding. */
#ifndef IHALA_FRAME_H
#define IHALA_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "ihala.pb-c.h"

/*
 * On the wire (inside TLS) every frame is a 4-byte big-endian length N
 * followed by N bytes: one encoded ihala.v2.Frame (docs/PROTOCOL.md §3).
 * The length prefix is the channel's (channel_write_frame adds it,
 * channel_next_frame strips it): everything here is about the N bytes.
 *
 * Decoding is strict, because the broker logs what it accepts and any other
 * implementation must be able to re-read it the same way:
 * - the bytes must parse as the message (else IHALA_EBADFRAME);
 * - no unknown fields at any depth (else IHALA_EBADFRAME): v1 peers send
 *   nothing beyond the schema, later versions are negotiated by ALPN;
 * - the encoding must be the canonical one, i.e. re-encoding the decoded
 *   message gives exactly as many bytes as were received (else
 *   IHALA_EBADFRAME). This refuses repeated or merged singular fields, two
 *   cases of one oneof, explicit proto3 default values, non-minimal varints
 *   and strings holding a NUL byte (which C would silently cut), while every
 *   mainstream protobuf library produces canonical output;
 * - every string is valid UTF-8 (else IHALA_EUTF8).
 */

/* Frame body size a peer may use before it knows the session's limits
 * (Welcome.limits.max_frame_bytes), and the default of that limit. */
#define FRAME_MAX_DEFAULT (1024u * 1024u)
/* Largest max_frame any function here accepts. */
#define FRAME_MAX_LIMIT (64u * 1024u * 1024u)

/*
 * Encode `f` into a malloc'd buffer: the frame body, without a length
 * prefix, ready for channel_write_frame(). On success *out (owned by the
 * caller, free() it) holds *outlen bytes. Returns IHALA_EINVAL when no kind
 * is set (or the kind's message is NULL), IHALA_EFRAMESIZE when the body
 * exceeds FRAME_MAX_LIMIT, IHALA_ENOMEM. The caller compares *outlen against
 * the peer's limit before sending. `f` is only read.
 */
int frame_encode(const Ihala__V2__Frame *f, uint8_t **out, size_t *outlen);

/*
 * Decode one frame body (without the length prefix) of `len` bytes.
 * `buf` is only read and may be freed after the call. On success *out is a
 * new Frame owned by the caller (frame_free() it) with exactly one kind set.
 * Errors (*out untouched): IHALA_EFRAMESIZE (len > max_frame), IHALA_EBADFRAME
 * (not a canonical Frame, see above), IHALA_EUNKNOWNFRAME (no kind set, or
 * only a kind this version does not know), IHALA_EUTF8, IHALA_ENOMEM,
 * IHALA_EINVAL (NULL arguments, max_frame 0 or > FRAME_MAX_LIMIT).
 * Enum values are not checked here (see pb_check_enums).
 */
int frame_decode(const uint8_t *buf, size_t len, size_t max_frame, Ihala__V2__Frame **out);

/* Free a frame from frame_decode(); NULL is allowed. */
void frame_free(Ihala__V2__Frame *f);

/*
 * Decode the Envelope carried in Submit.envelope (or in LogEntry.envelope)
 * with the same strictness as frame_decode, plus: one kind must be set and
 * every enum value must be known (else IHALA_ESCHEMA). Errors:
 * IHALA_EBADFRAME, IHALA_ESCHEMA, IHALA_EUTF8, IHALA_ENOMEM, IHALA_EINVAL.
 * *out is owned by the caller: envelope_free() it. `buf` is only read.
 */
int envelope_decode(const uint8_t *buf, size_t len, Ihala__V2__Envelope **out);
void envelope_free(Ihala__V2__Envelope *e);

/*
 * Decode a LogEntry (Deliver.entry, LogRecord.entry, the store's values)
 * with the strictness of frame_decode. Enum values are not checked, so an
 * auditor can read every entry. *out is owned by the caller:
 * logentry_free() it. Errors: IHALA_EBADFRAME, IHALA_EUTF8, IHALA_ENOMEM,
 * IHALA_EINVAL.
 */
int logentry_decode(const uint8_t *buf, size_t len, Ihala__V2__LogEntry **out);
void logentry_free(Ihala__V2__LogEntry *e);

/*
 * A decoding arena: messages decoded into it (frame_decode_in, envelope_decode_in) take their
 * memory from `buf` (the caller's) and, when that is used up, from blocks of their own; they
 * are never freed one by one. pb_arena_reset() ends every message decoded into the arena and
 * makes it ready for the next; call it (or pb_arena_release) before `buf` goes away. This is
 * the hot path's decoding: a submission and its envelope cost no malloc of their own, and
 * ending them costs no walk of the message.
 */
struct pb_arena_block;
struct pb_arena {
	uint8_t *buf;
	size_t cap, used;
	struct pb_arena_block *more; /* blocks beyond buf, newest first */
	int oom;                     /* an allocation failed (set during a decode) */
};

void pb_arena_init(struct pb_arena *a, void *buf, size_t cap);
void pb_arena_reset(struct pb_arena *a);
#define pb_arena_release pb_arena_reset
/* Bytes taken from buf and blocks since the last reset (for tests and sizing). */
size_t pb_arena_used(const struct pb_arena *a);

/* frame_decode and envelope_decode into `a` (NULL: as those, freed with frame_free and
 * envelope_free). With an arena the message lives until pb_arena_reset(a). */
int frame_decode_in(const uint8_t *buf, size_t len, size_t max_frame, struct pb_arena *a,
                    Ihala__V2__Frame **out);
int envelope_decode_in(const uint8_t *buf, size_t len, struct pb_arena *a,
                       Ihala__V2__Envelope **out);

/*
 * The generic strict decoder behind the three above, for any message type:
 * returns 0 and a new message in *out (pb_free() it) or IHALA_EBADFRAME,
 * IHALA_EUTF8, IHALA_ENOMEM, IHALA_EINVAL. No size limit is applied: the
 * caller bounds `len`.
 */
int pb_decode_strict(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                     ProtobufCMessage **out);
void pb_free(ProtobufCMessage *m);

/*
 * Walk every string field of `m` and its sub-messages (set oneof cases,
 * repeated elements) through the protobuf-c descriptors. Returns 0 when all
 * are valid UTF-8, IHALA_EUTF8 otherwise. protobuf-c does not check this
 * itself for proto3 strings. `m` is only read.
 */
int pb_check_utf8(const ProtobufCMessage *m);

/*
 * Walk every enum field of `m` and its sub-messages: returns 0 when every
 * value is one the schema defines, IHALA_ESCHEMA otherwise.
 */
int pb_check_enums(const ProtobufCMessage *m);

/*
 * 1 when s[0..len) is valid UTF-8 (RFC 3629: no overlong forms, no
 * surrogates U+D800..U+DFFF, nothing above U+10FFFF), else 0. NUL bytes are
 * valid UTF-8; C-string callers never see them.
 */
int pb_utf8_valid(const uint8_t *s, size_t len);

#endif
