/* pbjson.c - one idea: the JSON <-> protobuf mapping driven by protobuf-c descriptors. */
#include "pbjson.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "error.h"
#include "ihala.pb-c.h"
#include "suggest.h"

#define PATH_CAP 1024
#define KEY_SHOW 64           /* bytes of a key or string value quoted in errors */
#define NAME_CAP 256          /* longest field or enum value name we render */
#define EXACT_INT (1LL << 53) /* largest integer every JSON reader keeps exact */

struct ctx {
	char *err;
	size_t errlen;
	char path[PATH_CAP];
	size_t pathlen;
};

static pbjson_bytes_hook bytes_hook;

static const char *const type_names[] = {
    "int32",   "sint32", "sfixed32", "int64", "sint64", "sfixed64", "uint32", "fixed32", "uint64",
    "fixed64", "float",  "double",   "bool",  "enum",   "string",   "bytes",  "message",
};

static int msg_from_json(struct ctx *c, const ProtobufCMessageDescriptor *d, json_t *in, int depth,
                         ProtobufCMessage **out);
static int msg_to_json(const ProtobufCMessage *m, int flags, int depth, json_t **out);

void
pbjson_set_bytes_hook(pbjson_bytes_hook hook)
{
	bytes_hook = hook;
}

const ProtobufCMessageDescriptor *
pbjson_ihala_embedded(const ProtobufCMessageDescriptor *msg, const ProtobufCFieldDescriptor *field)
{
	if (msg == &ihala__v2__submit__descriptor || msg == &ihala__v2__log_entry__descriptor) {
		if (strcmp(field->name, "envelope") == 0) {
			return &ihala__v2__envelope__descriptor;
		}
	} else if (msg == &ihala__v2__deliver__descriptor ||
	           msg == &ihala__v2__log_record__descriptor) {
		if (strcmp(field->name, "entry") == 0) {
			return &ihala__v2__log_entry__descriptor;
		}
	}
	return NULL;
}

static const char *
type_name(ProtobufCType t)
{
	if ((size_t)t < sizeof(type_names) / sizeof(type_names[0])) {
		return type_names[t];
	}
	return "unknown";
}

/* ---- error messages and paths ---- */

/* Copies at most KEY_SHOW bytes of s (n bytes) into buf, cut on a UTF-8
 * boundary, control characters and quotes replaced, so any input is safe to
 * quote in a one-line message. */
static void
show(const char *s, size_t n, char *buf, size_t buflen)
{
	size_t i, o = 0, lim = n;
	int cut = 0;

	if (lim > KEY_SHOW) {
		lim = KEY_SHOW;
		while (lim > 0 && ((unsigned char)s[lim] & 0xC0) == 0x80) {
			lim--;
		}
		cut = 1;
	}
	for (i = 0; i < lim && o + 4 < buflen; i++) {
		unsigned char ch = (unsigned char)s[i];

		buf[o++] = (ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\'') ? '?' : (char)ch;
	}
	if (cut && o + 4 < buflen) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
}

/* "string \"abc\"", "number 1.5", "an object" ... for "got ..." messages. */
static void
describe(json_t *v, char *buf, size_t buflen)
{
	char tmp[KEY_SHOW * 2];

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		snprintf(buf, buflen, "an object");
		break;
	case JSON_ARRAY:
		snprintf(buf, buflen, "an array");
		break;
	case JSON_STRING:
		show(json_string_value(v), json_string_length(v), tmp, sizeof(tmp));
		snprintf(buf, buflen, "string \"%s\"", tmp);
		break;
	case JSON_INTEGER:
		snprintf(buf, buflen, "number %" JSON_INTEGER_FORMAT, json_integer_value(v));
		break;
	case JSON_REAL: {
		/* the shortest form that reads back the same: 0.1, not 0.10000000000000001 */
		double r = json_real_value(v);
		int prec;

		for (prec = 1; prec < 17; prec++) {
			snprintf(tmp, sizeof(tmp), "%.*g", prec, r);
			if (strtod(tmp, NULL) == r) {
				break;
			}
		}
		snprintf(buf, buflen, "number %.*g", prec, r);
		break;
	}
	case JSON_TRUE:
		snprintf(buf, buflen, "true");
		break;
	case JSON_FALSE:
		snprintf(buf, buflen, "false");
		break;
	default:
		snprintf(buf, buflen, "null");
		break;
	}
}

static int fail(struct ctx *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(struct ctx *c, int code, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (c->err == NULL || c->errlen == 0) {
		return code;
	}
	n = snprintf(c->err, c->errlen, "%s: ", c->path);
	if (n < 0 || (size_t)n >= c->errlen) {
		return code;
	}
	va_start(ap, fmt);
	vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return code;
}

static int
fail_type(struct ctx *c, const char *want, json_t *got)
{
	char d[KEY_SHOW * 2 + 32];

	describe(got, d, sizeof(d));
	return fail(c, IHALA_EJSON, "expected %s, got %s", want, d);
}

static size_t
path_push_key(struct ctx *c, const char *key)
{
	size_t old = c->pathlen;
	char k[KEY_SHOW * 2];
	int n;

	show(key, strlen(key), k, sizeof(k));
	n = snprintf(c->path + c->pathlen, PATH_CAP - c->pathlen, ".%s", k);
	if (n > 0) {
		c->pathlen +=
		    (size_t)n < PATH_CAP - c->pathlen ? (size_t)n : PATH_CAP - 1 - c->pathlen;
	}
	return old;
}

static size_t
path_push_index(struct ctx *c, size_t i)
{
	size_t old = c->pathlen;
	int n;

	n = snprintf(c->path + c->pathlen, PATH_CAP - c->pathlen, "[%zu]", i);
	if (n > 0) {
		c->pathlen +=
		    (size_t)n < PATH_CAP - c->pathlen ? (size_t)n : PATH_CAP - 1 - c->pathlen;
	}
	return old;
}

static void
path_pop(struct ctx *c, size_t old)
{
	c->pathlen = old;
	c->path[old] = '\0';
}

/* ---- names ---- */

/* The proto3 JSON name of a field name: '_' dropped, next letter upper. */
static void
json_name(const char *name, char *buf, size_t buflen)
{
	size_t o = 0;
	int up = 0;

	for (; *name != '\0' && o + 1 < buflen; name++) {
		if (*name == '_') {
			up = 1;
			continue;
		}
		buf[o++] = up ? (char)toupper((unsigned char)*name) : *name;
		up = 0;
	}
	buf[o] = '\0';
}

static int
json_name_eq(const char *name, const char *key)
{
	int up = 0;

	for (; *name != '\0'; name++) {
		char ch;

		if (*name == '_') {
			up = 1;
			continue;
		}
		ch = up ? (char)toupper((unsigned char)*name) : *name;
		up = 0;
		if (*key != ch) {
			return 0;
		}
		key++;
	}
	return *key == '\0';
}

static const ProtobufCFieldDescriptor *
find_field(const ProtobufCMessageDescriptor *d, const char *key)
{
	unsigned i;

	for (i = 0; i < d->n_fields; i++) {
		if (json_name_eq(d->fields[i].name, key) || strcmp(d->fields[i].name, key) == 0) {
			return &d->fields[i];
		}
	}
	return NULL;
}

/* The JSON name of the field closest to key, when one is close enough. */
static int
suggest_field(const ProtobufCMessageDescriptor *d, const char *key, char *buf, size_t buflen)
{
	size_t len = strlen(key);
	unsigned best = SUGGEST_FAR, allowed, i;
	char jn[NAME_CAP];

	allowed = len <= 4 ? 1 : len <= 8 ? 2 : 3;
	for (i = 0; i < d->n_fields; i++) {
		unsigned e1, e2;

		json_name(d->fields[i].name, jn, sizeof(jn));
		e1 = suggest_distance(key, jn);
		e2 = suggest_distance(key, d->fields[i].name);
		if (e2 < e1) {
			e1 = e2;
		}
		if (e1 < best) {
			best = e1;
			snprintf(buf, buflen, "%s", jn);
		}
	}
	return best <= allowed;
}

/* ---- enums ---- */

/* Length of the prefix shared by the enum's value names (see pbjson.h). */
static size_t
enum_prefix_len(const ProtobufCEnumDescriptor *ed)
{
	char want[NAME_CAP];
	const char *s = ed->short_name != NULL ? ed->short_name : "";
	size_t o = 0, i, n, common;
	unsigned k;

	if (ed->n_value_names == 0) {
		return 0;
	}
	/* TaskStatus -> TASK_STATUS_ */
	for (i = 0; s[i] != '\0' && o + 3 < sizeof(want); i++) {
		unsigned char ch = (unsigned char)s[i];

		if (i > 0 && isupper(ch) &&
		    (islower((unsigned char)s[i - 1]) || isdigit((unsigned char)s[i - 1]) ||
		     (isupper((unsigned char)s[i - 1]) && islower((unsigned char)s[i + 1])))) {
			want[o++] = '_';
		}
		want[o++] = (char)toupper(ch);
	}
	want[o++] = '_';
	want[o] = '\0';
	for (k = 0; k < ed->n_value_names; k++) {
		const char *v = ed->values_by_name[k].name;

		if (strncmp(v, want, o) != 0 || v[o] == '\0') {
			break;
		}
	}
	if (k == ed->n_value_names) {
		return o;
	}
	/* otherwise the longest common prefix that ends in '_' */
	common = strlen(ed->values_by_name[0].name);
	for (k = 1; k < ed->n_value_names; k++) {
		const char *a = ed->values_by_name[0].name, *b = ed->values_by_name[k].name;

		for (n = 0; n < common && a[n] == b[n]; n++) {
		}
		common = n;
	}
	while (common > 0 && ed->values_by_name[0].name[common - 1] != '_') {
		common--;
	}
	for (k = 0; k < ed->n_value_names; k++) {
		if (ed->values_by_name[k].name[common] == '\0') {
			return 0;
		}
	}
	return common;
}

static void
enum_short(const char *name, size_t prefix, char *buf, size_t buflen)
{
	size_t o = 0;

	for (name += prefix; *name != '\0' && o + 1 < buflen; name++) {
		buf[o++] = *name == '_' ? '-' : (char)tolower((unsigned char)*name);
	}
	buf[o] = '\0';
}

/* Compares a value name with input, case-insensitively, '-' matching '_'. */
static int
enum_name_eq(const char *name, const char *in)
{
	for (; *name != '\0' && *in != '\0'; name++, in++) {
		char ch = *in == '-' ? '_' : (char)toupper((unsigned char)*in);

		if (ch != *name) {
			return 0;
		}
	}
	return *name == '\0' && *in == '\0';
}

static const ProtobufCEnumValue *
enum_lookup(const ProtobufCEnumDescriptor *ed, const char *in)
{
	size_t prefix = enum_prefix_len(ed);
	unsigned k;

	for (k = 0; k < ed->n_value_names; k++) {
		const char *name = ed->values_by_name[k].name;

		if (enum_name_eq(name + prefix, in) || enum_name_eq(name, in)) {
			return &ed->values[ed->values_by_name[k].index];
		}
	}
	return NULL;
}

/* "emergency, urgent, normal": the accepted short names, leaving out the
 * zero value when it only says "unspecified". */
static void
enum_choices(const ProtobufCEnumDescriptor *ed, char *buf, size_t buflen)
{
	size_t prefix = enum_prefix_len(ed), o = 0;
	unsigned k;
	char s[NAME_CAP];

	buf[0] = '\0';
	for (k = 0; k < ed->n_values; k++) {
		size_t n;

		enum_short(ed->values[k].name, prefix, s, sizeof(s));
		if (ed->values[k].value == 0 && strcmp(s, "unspecified") == 0) {
			continue;
		}
		n = strlen(s);
		if (o + n + 8 >= buflen) {
			snprintf(buf + o, buflen - o, "%s...", o > 0 ? ", " : "");
			return;
		}
		o += (size_t)snprintf(buf + o, buflen - o, "%s%s", o > 0 ? ", " : "", s);
	}
}

int
pbjson_enum_to_name(const ProtobufCEnumDescriptor *ed, int value, char *buf, size_t buflen)
{
	const ProtobufCEnumValue *v;
	char s[NAME_CAP];

	if (ed == NULL || buf == NULL || buflen == 0) {
		return IHALA_EINVAL;
	}
	v = protobuf_c_enum_descriptor_get_value(ed, value);
	if (v == NULL) {
		return IHALA_ENOTFOUND;
	}
	enum_short(v->name, enum_prefix_len(ed), s, sizeof(s));
	if (strlen(s) >= buflen) {
		return IHALA_EINVAL;
	}
	memcpy(buf, s, strlen(s) + 1);
	return 0;
}

int
pbjson_enum_from_name(const ProtobufCEnumDescriptor *ed, const char *name, int *value)
{
	const ProtobufCEnumValue *v;

	if (ed == NULL || name == NULL || value == NULL) {
		return IHALA_EINVAL;
	}
	v = enum_lookup(ed, name);
	if (v == NULL) {
		return IHALA_ENOTFOUND;
	}
	*value = v->value;
	return 0;
}

/* ---- base64 ---- */

/* Standard base64 with padding as a new JSON string. */
static json_t *
b64_json(const uint8_t *p, size_t n)
{
	char *buf;
	json_t *j;

	if (n > BASE64_MAX_IN || (buf = malloc(BASE64_LEN(n) + 1)) == NULL) {
		return NULL;
	}
	base64_encode(p, n, buf);
	j = json_stringn(buf, BASE64_LEN(n));
	free(buf);
	return j;
}

/* ---- JSON -> protobuf ---- */

/* A JSON integer, an integral number or a decimal string, within
 * [min, max] for signed types. */
static int
get_signed(struct ctx *c, json_t *v, ProtobufCType t, int64_t min, int64_t max, int64_t *out)
{
	long long x;

	if (json_is_integer(v)) {
		x = json_integer_value(v);
	} else if (json_is_real(v)) {
		double r = json_real_value(v);

		if (r != floor(r) || fabs(r) > (double)EXACT_INT) {
			return fail_type(c, "an integer", v);
		}
		x = (long long)r;
	} else if (json_is_string(v)) {
		const char *s = json_string_value(v);
		size_t i = s[0] == '-' ? 1 : 0, n = json_string_length(v);
		char *end;

		if (n <= i || strspn(s + i, "0123456789") != n - i) {
			return fail_type(c, "an integer", v);
		}
		errno = 0;
		x = strtoll(s, &end, 10);
		if (errno == ERANGE) {
			char sh[KEY_SHOW * 2];

			show(s, n, sh, sizeof(sh));
			return fail(c, IHALA_EJSON, "value %s is out of range for %s", sh,
			            type_name(t));
		}
	} else {
		return fail_type(c, "an integer", v);
	}
	if (x < min || x > max) {
		return fail(c, IHALA_EJSON, "value %lld is out of range for %s", x, type_name(t));
	}
	*out = x;
	return 0;
}

static int
get_unsigned(struct ctx *c, json_t *v, ProtobufCType t, uint64_t max, uint64_t *out)
{
	unsigned long long x;

	if (json_is_integer(v)) {
		if (json_integer_value(v) < 0) {
			return fail(c, IHALA_EJSON,
			            "value %" JSON_INTEGER_FORMAT " is out of range for %s",
			            json_integer_value(v), type_name(t));
		}
		x = (unsigned long long)json_integer_value(v);
	} else if (json_is_real(v)) {
		double r = json_real_value(v);

		if (r != floor(r) || fabs(r) > (double)EXACT_INT) {
			return fail_type(c, "an integer", v);
		}
		if (r < 0) {
			return fail(c, IHALA_EJSON, "value %.0f is out of range for %s", r,
			            type_name(t));
		}
		x = (unsigned long long)r;
	} else if (json_is_string(v)) {
		const char *s = json_string_value(v);
		size_t i = s[0] == '-' ? 1 : 0, n = json_string_length(v);
		char sh[KEY_SHOW * 2];
		char *end;

		if (n <= i || strspn(s + i, "0123456789") != n - i) {
			return fail_type(c, "an integer", v);
		}
		show(s, n, sh, sizeof(sh));
		if (i == 1 && strspn(s + 1, "0") != n - 1) {
			return fail(c, IHALA_EJSON, "value %s is out of range for %s", sh,
			            type_name(t));
		}
		errno = 0;
		x = strtoull(s + i, &end, 10);
		if (errno == ERANGE) {
			return fail(c, IHALA_EJSON, "value %s is out of range for %s", sh,
			            type_name(t));
		}
	} else {
		return fail_type(c, "an integer", v);
	}
	if (x > max) {
		return fail(c, IHALA_EJSON, "value %llu is out of range for %s", x, type_name(t));
	}
	*out = x;
	return 0;
}

static int
get_double(struct ctx *c, json_t *v, ProtobufCType t, double *out)
{
	double r;

	if (json_is_number(v)) {
		r = json_number_value(v);
	} else if (json_is_string(v)) {
		const char *s = json_string_value(v);
		size_t n = json_string_length(v);
		char *end;

		if (strcmp(s, "NaN") == 0) {
			r = NAN;
		} else if (strcmp(s, "Infinity") == 0) {
			r = INFINITY;
		} else if (strcmp(s, "-Infinity") == 0) {
			r = -INFINITY;
		} else {
			if (n == 0 || n > 64 || strspn(s, "0123456789+-.eE") != n) {
				return fail_type(c, "a number", v);
			}
			errno = 0;
			r = strtod(s, &end);
			if (*end != '\0' || errno == ERANGE) {
				return fail_type(c, "a number", v);
			}
		}
	} else {
		return fail_type(c, "a number", v);
	}
	if (t == PROTOBUF_C_TYPE_FLOAT && isfinite(r) && fabs(r) > FLT_MAX) {
		return fail(c, IHALA_EJSON, "value %g is out of range for float", r);
	}
	*out = r;
	return 0;
}

static int
get_enum(struct ctx *c, const ProtobufCFieldDescriptor *f, json_t *v, int *out)
{
	const ProtobufCEnumDescriptor *ed = f->descriptor;
	const ProtobufCEnumValue *ev = NULL;
	char choices[512], sh[KEY_SHOW * 2];

	if (json_is_string(v)) {
		if (json_string_length(v) < NAME_CAP) {
			ev = enum_lookup(ed, json_string_value(v));
		}
		if (ev == NULL) {
			enum_choices(ed, choices, sizeof(choices));
			show(json_string_value(v), json_string_length(v), sh, sizeof(sh));
			return fail(c, IHALA_EJSON, "unknown value \"%s\" (expected one of: %s)",
			            sh, choices);
		}
	} else if (json_is_integer(v)) {
		json_int_t x = json_integer_value(v);

		if (x >= INT32_MIN && x <= INT32_MAX) {
			ev = protobuf_c_enum_descriptor_get_value(ed, (int)x);
		}
		if (ev == NULL) {
			enum_choices(ed, choices, sizeof(choices));
			return fail(c, IHALA_EJSON,
			            "unknown value %" JSON_INTEGER_FORMAT " (expected one of: %s)",
			            x, choices);
		}
	} else {
		return fail_type(c, "an enum name or number", v);
	}
	*out = ev->value;
	return 0;
}

static int
get_string(struct ctx *c, json_t *v, char **out)
{
	size_t n;
	char *s;

	if (!json_is_string(v)) {
		return fail_type(c, "a string", v);
	}
	n = json_string_length(v);
	if (n > PBJSON_MAX_STRING) {
		return fail(c, IHALA_ETOOLARGE, "string is too long (%zu bytes, at most %d)", n,
		            PBJSON_MAX_STRING);
	}
	if (memchr(json_string_value(v), '\0', n) != NULL) {
		return fail(c, IHALA_EJSON, "string contains a NUL character");
	}
	s = malloc(n + 1);
	if (s == NULL) {
		return fail(c, IHALA_ENOMEM, "out of memory");
	}
	memcpy(s, json_string_value(v), n + 1);
	*out = s;
	return 0;
}

static int
get_bytes(struct ctx *c, const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
          json_t *v, int depth, ProtobufCBinaryData *out)
{
	const ProtobufCMessageDescriptor *inner = bytes_hook != NULL ? bytes_hook(d, f) : NULL;
	uint8_t *data;
	size_t n, len;
	int rc;

	if (json_is_object(v) && inner != NULL) {
		ProtobufCMessage *sub;

		rc = msg_from_json(c, inner, v, depth + 1, &sub);
		if (rc != 0) {
			return rc;
		}
		len = protobuf_c_message_get_packed_size(sub);
		if (len > PBJSON_MAX_BYTES) {
			protobuf_c_message_free_unpacked(sub, NULL);
			return fail(c, IHALA_ETOOLARGE,
			            "embedded message is too large (%zu bytes, at most %d)", len,
			            PBJSON_MAX_BYTES);
		}
		data = malloc(len > 0 ? len : 1);
		if (data == NULL) {
			protobuf_c_message_free_unpacked(sub, NULL);
			return fail(c, IHALA_ENOMEM, "out of memory");
		}
		protobuf_c_message_pack(sub, data);
		protobuf_c_message_free_unpacked(sub, NULL);
		out->data = data;
		out->len = len;
		return 0;
	}
	if (!json_is_string(v)) {
		return fail_type(
		    c, inner != NULL ? "a base64 string or an object" : "a base64 string", v);
	}
	n = json_string_length(v);
	if (n > (size_t)PBJSON_MAX_BYTES / 3 * 4 + 4) {
		return fail(c, IHALA_ETOOLARGE, "bytes value is too long (at most %d bytes)",
		            PBJSON_MAX_BYTES);
	}
	rc = base64_decode_lenient(json_string_value(v), n, &data, &len);
	if (rc == IHALA_ENOMEM) {
		return fail(c, rc, "out of memory");
	}
	if (rc != 0) {
		return fail(c, IHALA_EJSON, "invalid base64");
	}
	if (len > PBJSON_MAX_BYTES) {
		free(data);
		return fail(c, IHALA_ETOOLARGE, "bytes value is too long (at most %d bytes)",
		            PBJSON_MAX_BYTES);
	}
	out->data = data;
	out->len = len;
	return 0;
}

static size_t
elem_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return 4;
	case PROTOBUF_C_TYPE_ENUM:
		return sizeof(int);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return 8;
	case PROTOBUF_C_TYPE_FLOAT:
		return sizeof(float);
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	}
	return 0;
}

/* Converts one value into dst, which has the C type of f's protobuf type.
 * Pointers are written only on success, so the message stays freeable. */
static int
value_from_json(struct ctx *c, const ProtobufCMessageDescriptor *d,
                const ProtobufCFieldDescriptor *f, json_t *v, void *dst, int depth)
{
	int64_t s = 0;
	uint64_t u = 0;
	double r = 0;
	int rc, e = 0;

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		rc = get_signed(c, v, f->type, INT32_MIN, INT32_MAX, &s);
		if (rc == 0) {
			*(int32_t *)dst = (int32_t)s;
		}
		return rc;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		rc = get_signed(c, v, f->type, INT64_MIN, INT64_MAX, &s);
		if (rc == 0) {
			*(int64_t *)dst = s;
		}
		return rc;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		rc = get_unsigned(c, v, f->type, UINT32_MAX, &u);
		if (rc == 0) {
			*(uint32_t *)dst = (uint32_t)u;
		}
		return rc;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		rc = get_unsigned(c, v, f->type, UINT64_MAX, &u);
		if (rc == 0) {
			*(uint64_t *)dst = u;
		}
		return rc;
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE:
		rc = get_double(c, v, f->type, &r);
		if (rc == 0 && f->type == PROTOBUF_C_TYPE_FLOAT) {
			*(float *)dst = (float)r;
		} else if (rc == 0) {
			*(double *)dst = r;
		}
		return rc;
	case PROTOBUF_C_TYPE_BOOL:
		if (!json_is_boolean(v)) {
			return fail_type(c, "true or false", v);
		}
		*(protobuf_c_boolean *)dst = json_is_true(v);
		return 0;
	case PROTOBUF_C_TYPE_ENUM:
		rc = get_enum(c, f, v, &e);
		if (rc == 0) {
			*(int *)dst = e;
		}
		return rc;
	case PROTOBUF_C_TYPE_STRING:
		return get_string(c, v, (char **)dst);
	case PROTOBUF_C_TYPE_BYTES:
		return get_bytes(c, d, f, v, depth, (ProtobufCBinaryData *)dst);
	case PROTOBUF_C_TYPE_MESSAGE:
		return msg_from_json(c, f->descriptor, v, depth + 1, (ProtobufCMessage **)dst);
	}
	return fail(c, IHALA_EINTERNAL, "field type %d is not supported", (int)f->type);
}

static int
field_from_json(struct ctx *c, const ProtobufCMessageDescriptor *d, ProtobufCMessage *m,
                const ProtobufCFieldDescriptor *f, json_t *v, int depth)
{
	char *base = (char *)m;
	size_t n, i, esz, *count;
	char *arr;
	int rc;

	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		if (!json_is_array(v)) {
			return fail_type(c, "an array", v);
		}
		n = json_array_size(v);
		if (n > PBJSON_MAX_ITEMS) {
			return fail(c, IHALA_ETOOLARGE, "too many items (%zu, at most %d)", n,
			            PBJSON_MAX_ITEMS);
		}
		if (n == 0) {
			return 0;
		}
		esz = elem_size(f->type);
		arr = calloc(n, esz);
		if (arr == NULL) {
			return fail(c, IHALA_ENOMEM, "out of memory");
		}
		/* Attached at once, counted item by item: a failure half-way
		 * leaves a message protobuf_c_message_free_unpacked frees. */
		*(void **)(base + f->offset) = arr;
		count = (size_t *)(base + f->quantifier_offset);
		*count = 0;
		for (i = 0; i < n; i++) {
			size_t old = path_push_index(c, i);

			rc = value_from_json(c, d, f, json_array_get(v, i), arr + i * esz, depth);
			if (rc != 0) {
				return rc;
			}
			(*count)++;
			path_pop(c, old);
		}
		return 0;
	}
	rc = value_from_json(c, d, f, v, base + f->offset, depth);
	if (rc != 0) {
		return rc;
	}
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		*(uint32_t *)(base + f->quantifier_offset) = f->id;
	} else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
	           f->type != PROTOBUF_C_TYPE_MESSAGE) {
		*(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
	}
	return 0;
}

static const ProtobufCFieldDescriptor *
field_by_id(const ProtobufCMessageDescriptor *d, uint32_t id)
{
	unsigned i;

	for (i = 0; i < d->n_fields; i++) {
		if (d->fields[i].id == id) {
			return &d->fields[i];
		}
	}
	return NULL;
}

static int
msg_from_json(struct ctx *c, const ProtobufCMessageDescriptor *d, json_t *in, int depth,
              ProtobufCMessage **out)
{
	ProtobufCMessage *m = NULL;
	unsigned char *seen = NULL;
	void *it;
	int rc;

	*out = NULL;
	if (depth > PBJSON_MAX_DEPTH) {
		return fail(c, IHALA_ETOOLARGE, "nested deeper than %d messages", PBJSON_MAX_DEPTH);
	}
	if (!json_is_object(in)) {
		return fail_type(c, "an object", in);
	}
	m = malloc(d->sizeof_message);
	seen = calloc(d->n_fields + 1, 1);
	if (m == NULL || seen == NULL) {
		free(m);
		free(seen);
		return fail(c, IHALA_ENOMEM, "out of memory");
	}
	protobuf_c_message_init(d, m);

	for (it = json_object_iter(in); it != NULL; it = json_object_iter_next(in, it)) {
		const char *key = json_object_iter_key(it);
		json_t *v = json_object_iter_value(it);
		const ProtobufCFieldDescriptor *f = find_field(d, key);
		size_t old = path_push_key(c, key);
		char jn[NAME_CAP], other[NAME_CAP];

		if (f == NULL) {
			if (suggest_field(d, key, jn, sizeof(jn))) {
				rc = fail(c, IHALA_EJSON, "unknown field (did you mean '%s'?)", jn);
			} else {
				rc = fail(c, IHALA_EJSON, "unknown field");
			}
			goto fail;
		}
		json_name(f->name, jn, sizeof(jn));
		if (seen[f - d->fields]) {
			rc = fail(c, IHALA_EJSON, "field given twice (as '%s' and '%s')", jn,
			          f->name);
			goto fail;
		}
		seen[f - d->fields] = 1;
		if (json_is_null(v)) {
			path_pop(c, old);
			continue;
		}
		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			uint32_t set = *(uint32_t *)((char *)m + f->quantifier_offset);

			if (set != 0) {
				const ProtobufCFieldDescriptor *g = field_by_id(d, set);

				json_name(g != NULL ? g->name : "?", other, sizeof(other));
				path_pop(c, old);
				rc = fail(c, IHALA_EJSON,
				          "fields '%s' and '%s' of the same oneof are both set",
				          other, jn);
				goto fail;
			}
		}
		rc = field_from_json(c, d, m, f, v, depth);
		if (rc != 0) {
			goto fail;
		}
		path_pop(c, old);
	}
	free(seen);
	*out = m;
	return 0;

fail:
	free(seen);
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

int
pbjson_from_json(const ProtobufCMessageDescriptor *d, json_t *in, ProtobufCMessage **out, char *err,
                 size_t errlen)
{
	struct ctx c;

	if (err != NULL && errlen > 0) {
		err[0] = '\0';
	}
	if (out != NULL) {
		*out = NULL;
	}
	if (d == NULL || in == NULL || out == NULL) {
		if (err != NULL && errlen > 0) {
			snprintf(err, errlen, "pbjson: invalid argument");
		}
		return IHALA_EINVAL;
	}
	memset(&c, 0, sizeof(c));
	c.err = err;
	c.errlen = errlen;
	json_name(d->short_name, c.path, sizeof(c.path));
	c.path[0] = (char)tolower((unsigned char)c.path[0]);
	c.pathlen = strlen(c.path);
	return msg_from_json(&c, d, in, 1, out);
}

int
pbjson_from_string(const ProtobufCMessageDescriptor *d, const char *text, size_t len,
                   ProtobufCMessage **out, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root;
	int rc;

	if (err != NULL && errlen > 0) {
		err[0] = '\0';
	}
	if (out != NULL) {
		*out = NULL;
	}
	if (d == NULL || text == NULL || out == NULL) {
		if (err != NULL && errlen > 0) {
			snprintf(err, errlen, "pbjson: invalid argument");
		}
		return IHALA_EINVAL;
	}
	if (len > PBJSON_MAX_INPUT) {
		if (err != NULL && errlen > 0) {
			snprintf(err, errlen, "input is too large (%zu bytes, at most %d)", len,
			         PBJSON_MAX_INPUT);
		}
		return IHALA_ETOOLARGE;
	}
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		if (err != NULL && errlen > 0) {
			char *c;

			snprintf(err, errlen, "line %d, column %d: %s", jerr.line, jerr.column,
			         jerr.text);
			/* jansson quotes the input near the error: keep the message one line */
			for (c = err; *c != '\0'; c++) {
				if ((unsigned char)*c < 0x20 || *c == 0x7f) {
					*c = '?';
				}
			}
		}
		return IHALA_EJSON;
	}
	rc = pbjson_from_json(d, root, out, err, errlen);
	json_decref(root);
	return rc;
}

/* ---- protobuf -> JSON ---- */

static json_t *
int64_json(int64_t x, int flags)
{
	char buf[24];

	if (!(flags & PBJSON_INT64_STRINGS) && x >= -EXACT_INT && x <= EXACT_INT) {
		return json_integer((json_int_t)x);
	}
	snprintf(buf, sizeof(buf), "%" PRId64, x);
	return json_string(buf);
}

static json_t *
uint64_json(uint64_t x, int flags)
{
	char buf[24];

	if (!(flags & PBJSON_INT64_STRINGS) && x <= (uint64_t)EXACT_INT) {
		return json_integer((json_int_t)x);
	}
	snprintf(buf, sizeof(buf), "%" PRIu64, x);
	return json_string(buf);
}

static json_t *
double_json(double r)
{
	if (isnan(r)) {
		return json_string("NaN");
	}
	if (isinf(r)) {
		return json_string(r > 0 ? "Infinity" : "-Infinity");
	}
	return json_real(r);
}

static json_t *
enum_json(const ProtobufCEnumDescriptor *ed, int x)
{
	char buf[NAME_CAP];

	if (pbjson_enum_to_name(ed, x, buf, sizeof(buf)) == 0) {
		return json_string(buf);
	}
	return json_integer(x);
}

/* One value of f at src as JSON, in *out. */
static int
value_to_json(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
              const void *src, int flags, int depth, json_t **out)
{
	json_t *j = NULL;

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		j = json_integer(*(const int32_t *)src);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		j = json_integer(*(const uint32_t *)src);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		j = int64_json(*(const int64_t *)src, flags);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		j = uint64_json(*(const uint64_t *)src, flags);
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		j = double_json(*(const float *)src);
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		j = double_json(*(const double *)src);
		break;
	case PROTOBUF_C_TYPE_BOOL:
		j = json_boolean(*(const protobuf_c_boolean *)src);
		break;
	case PROTOBUF_C_TYPE_ENUM:
		j = enum_json(f->descriptor, *(const int *)src);
		break;
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)src;

		j = json_string(s != NULL ? s : "");
		if (j == NULL) {
			/* json_string fails on invalid UTF-8 or on memory:
			 * the unchecked variant tells the two apart. */
			j = json_string_nocheck(s != NULL ? s : "");
			if (j == NULL) {
				return IHALA_ENOMEM;
			}
			json_decref(j);
			return IHALA_EUTF8;
		}
		break;
	}
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *b = src;
		const ProtobufCMessageDescriptor *inner = NULL;

		if ((flags & PBJSON_EMBEDDED) && bytes_hook != NULL) {
			inner = bytes_hook(d, f);
		}
		if (inner != NULL) {
			ProtobufCMessage *sub;
			int rc;

			sub = protobuf_c_message_unpack(inner, NULL, b->len, b->data);
			if (sub != NULL) {
				rc = msg_to_json(sub, flags, depth + 1, out);
				protobuf_c_message_free_unpacked(sub, NULL);
				return rc;
			}
		}
		j = b64_json(b->data, b->len);
		break;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *sub = *(ProtobufCMessage *const *)src;

		if (sub == NULL) {
			j = json_object();
			break;
		}
		return msg_to_json(sub, flags, depth + 1, out);
	}
	}
	if (j == NULL) {
		return IHALA_ENOMEM;
	}
	*out = j;
	return 0;
}

static int
is_zero(const ProtobufCFieldDescriptor *f, const void *p)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return *(const uint32_t *)p == 0;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return *(const uint64_t *)p == 0;
	case PROTOBUF_C_TYPE_FLOAT:
		return *(const float *)p == 0;
	case PROTOBUF_C_TYPE_DOUBLE:
		return *(const double *)p == 0;
	case PROTOBUF_C_TYPE_BOOL:
		return *(const protobuf_c_boolean *)p == 0;
	case PROTOBUF_C_TYPE_ENUM:
		return *(const int *)p == 0;
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;

		return s == NULL || s[0] == '\0';
	}
	case PROTOBUF_C_TYPE_BYTES:
		return ((const ProtobufCBinaryData *)p)->len == 0;
	case PROTOBUF_C_TYPE_MESSAGE:
		return *(ProtobufCMessage *const *)p == NULL;
	}
	return 1;
}

/* Whether a singular field is written: see the rules in pbjson.h. */
static int
present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, int flags)
{
	const char *base = (const char *)m;
	const void *p = base + f->offset;

	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
	}
	if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
		return *(ProtobufCMessage *const *)p != NULL;
	}
	if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
		if (f->type == PROTOBUF_C_TYPE_STRING) {
			return *(char *const *)p != NULL;
		}
		return *(const protobuf_c_boolean *)(base + f->quantifier_offset);
	}
	if (f->label == PROTOBUF_C_LABEL_REQUIRED) {
		return f->type != PROTOBUF_C_TYPE_STRING || *(char *const *)p != NULL;
	}
	return (flags & PBJSON_EMIT_DEFAULTS) || !is_zero(f, p);
}

static int
field_to_json(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, int flags, int depth,
              json_t **out)
{
	const char *base = (const char *)m;
	json_t *arr, *j;
	size_t n, i, esz;
	int rc;

	if (f->label != PROTOBUF_C_LABEL_REPEATED) {
		return value_to_json(m->descriptor, f, base + f->offset, flags, depth, out);
	}
	n = *(const size_t *)(base + f->quantifier_offset);
	esz = elem_size(f->type);
	arr = json_array();
	if (arr == NULL) {
		return IHALA_ENOMEM;
	}
	for (i = 0; i < n; i++) {
		const char *items = *(char *const *)(base + f->offset);

		rc = value_to_json(m->descriptor, f, items + i * esz, flags, depth, &j);
		if (rc != 0) {
			json_decref(arr);
			return rc;
		}
		if (json_array_append_new(arr, j) != 0) {
			json_decref(arr);
			return IHALA_ENOMEM;
		}
	}
	*out = arr;
	return 0;
}

static int
msg_to_json(const ProtobufCMessage *m, int flags, int depth, json_t **out)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	char key[NAME_CAP];
	json_t *obj, *j;
	unsigned i;
	int rc;

	*out = NULL;
	if (depth > PBJSON_MAX_DEPTH) {
		return IHALA_ETOOLARGE;
	}
	obj = json_object();
	if (obj == NULL) {
		return IHALA_ENOMEM;
	}
	for (i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];

		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			if (*(const size_t *)((const char *)m + f->quantifier_offset) == 0 &&
			    !(flags & PBJSON_EMIT_DEFAULTS)) {
				continue;
			}
		} else if (!present(m, f, flags)) {
			continue;
		}
		rc = field_to_json(m, f, flags, depth, &j);
		if (rc != 0) {
			json_decref(obj);
			return rc;
		}
		if (flags & PBJSON_PROTO_NAMES) {
			snprintf(key, sizeof(key), "%s", f->name);
		} else {
			json_name(f->name, key, sizeof(key));
		}
		if (json_object_set_new(obj, key, j) != 0) {
			json_decref(obj);
			return IHALA_ENOMEM;
		}
	}
	*out = obj;
	return 0;
}

int
pbjson_to_json(const ProtobufCMessage *m, int flags, json_t **out)
{
	if (out != NULL) {
		*out = NULL;
	}
	if (m == NULL || m->descriptor == NULL || out == NULL) {
		return IHALA_EINVAL;
	}
	return msg_to_json(m, flags, 1, out);
}

int
pbjson_to_string(const ProtobufCMessage *m, int flags, char **out)
{
	size_t jflags = (flags & PBJSON_PRETTY) ? JSON_INDENT(2) : JSON_COMPACT;
	size_t n;
	json_t *j;
	char *s;
	int rc;

	if (out != NULL) {
		*out = NULL;
	}
	if (out == NULL) {
		return IHALA_EINVAL;
	}
	rc = pbjson_to_json(m, flags, &j);
	if (rc != 0) {
		return rc;
	}
	/* Dumped into our own malloc'd buffer so free() is always right,
	 * whatever allocator jansson was given. */
	n = json_dumpb(j, NULL, 0, jflags);
	s = n > 0 ? malloc(n + 1) : NULL;
	if (s == NULL || json_dumpb(j, s, n, jflags) != n) {
		free(s);
		json_decref(j);
		return IHALA_ENOMEM;
	}
	s[n] = '\0';
	json_decref(j);
	*out = s;
	return 0;
}
