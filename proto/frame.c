/* frame.c - frame codec, strict protobuf decoding, UTF-8 checks and the stream splitter. */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

/* No message in ihala.proto nests deeper than this; a guard for the walker. */
#define PB_MAX_DEPTH 32

/* ---------------------------------------------------------------------------
 * UTF-8
 */

int
pb_utf8_valid(const uint8_t *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint8_t c = s[i];
		uint8_t lo = 0x80, hi = 0xbf;
		size_t need, k;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			if (c == 0xe0) {
				lo = 0xa0; /* overlong below U+0800 */
			} else if (c == 0xed) {
				hi = 0x9f; /* surrogates U+D800..U+DFFF */
			}
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			if (c == 0xf0) {
				lo = 0x90; /* overlong below U+10000 */
			} else if (c == 0xf4) {
				hi = 0x8f; /* above U+10FFFF */
			}
		} else {
			/* continuation byte first, C0/C1 overlong, F5..FF */
			return 0;
		}
		if (len - i <= need) {
			return 0;
		}
		/* Only the first continuation byte has the narrowed range. */
		if (s[i + 1] < lo || s[i + 1] > hi) {
			return 0;
		}
		for (k = 2; k <= need; k++) {
			if (s[i + k] < 0x80 || s[i + k] > 0xbf) {
				return 0;
			}
		}
		i += need + 1;
	}
	return 1;
}

/* ---------------------------------------------------------------------------
 * Generic walk over a decoded message through its descriptor
 */

enum pb_check {
	PB_CHECK_UTF8,
	PB_CHECK_ENUMS,
	PB_CHECK_UNKNOWN,
};

static int walk(const ProtobufCMessage *m, enum pb_check what, unsigned depth);

/* Check one present value of field f stored at p (a char *, an int or a
 * ProtobufCMessage * slot). */
static int
check_value(const ProtobufCFieldDescriptor *f, const void *p, enum pb_check what, unsigned depth)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING: {
		const char *s;

		if (what != PB_CHECK_UTF8) {
			return 0;
		}
		memcpy(&s, p, sizeof(s));
		if (s != NULL && !pb_utf8_valid((const uint8_t *)s, strlen(s))) {
			return IHALA_EUTF8;
		}
		return 0;
	}
	case PROTOBUF_C_TYPE_ENUM: {
		int v;

		if (what != PB_CHECK_ENUMS) {
			return 0;
		}
		memcpy(&v, p, sizeof(v));
		if (protobuf_c_enum_descriptor_get_value(f->descriptor, v) == NULL) {
			return IHALA_ESCHEMA;
		}
		return 0;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *sub;

		memcpy(&sub, p, sizeof(sub));
		return sub != NULL ? walk(sub, what, depth + 1) : 0;
	}
	default:
		return 0;
	}
}

/* Size of one element of a repeated field as protobuf-c stores it. */
static size_t
elem_size(const ProtobufCFieldDescriptor *f)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	case PROTOBUF_C_TYPE_ENUM:
		return sizeof(int);
	default:
		return 0; /* not walked */
	}
}

static int
walk(const ProtobufCMessage *m, enum pb_check what, unsigned depth)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char *base = (const char *)m;
	unsigned i;
	int rc;

	if (depth > PB_MAX_DEPTH) {
		return IHALA_EBADFRAME;
	}
	if (what == PB_CHECK_UNKNOWN && m->n_unknown_fields != 0) {
		return IHALA_EBADFRAME;
	}
	for (i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const void *p = base + f->offset;

		if (elem_size(f) == 0) {
			continue;
		}
		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			uint32_t which;

			memcpy(&which, base + f->quantifier_offset, sizeof(which));
			if (which != f->id) {
				continue;
			}
			rc = check_value(f, p, what, depth);
		} else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n, k;
			const char *arr;

			memcpy(&n, base + f->quantifier_offset, sizeof(n));
			memcpy(&arr, p, sizeof(arr));
			rc = 0;
			for (k = 0; k < n && arr != NULL && rc == 0; k++) {
				rc = check_value(f, arr + k * elem_size(f), what, depth);
			}
		} else if (f->label == PROTOBUF_C_LABEL_OPTIONAL &&
		           f->type == PROTOBUF_C_TYPE_ENUM) {
			protobuf_c_boolean has;

			memcpy(&has, base + f->quantifier_offset, sizeof(has));
			rc = has ? check_value(f, p, what, depth) : 0;
		} else {
			rc = check_value(f, p, what, depth);
		}
		if (rc != 0) {
			return rc;
		}
	}
	return 0;
}

int
pb_check_utf8(const ProtobufCMessage *m)
{
	if (m == NULL) {
		return IHALA_EINVAL;
	}
	return walk(m, PB_CHECK_UTF8, 0);
}

int
pb_check_enums(const ProtobufCMessage *m)
{
	if (m == NULL) {
		return IHALA_EINVAL;
	}
	return walk(m, PB_CHECK_ENUMS, 0);
}

/* ---------------------------------------------------------------------------
 * Strict decoding
 */

/* An allocator that tells out-of-memory apart from malformed input, which
 * protobuf_c_message_unpack() reports the same way (NULL). */
static void *
pb_alloc(void *data, size_t size)
{
	void *p = malloc(size != 0 ? size : 1);

	if (p == NULL && data != NULL) {
		*(int *)data = 1;
	}
	return p;
}

static void
pb_dealloc(void *data, void *p)
{
	(void)data;
	free(p);
}

static ProtobufCAllocator pb_free_allocator = {pb_alloc, pb_dealloc, NULL};

/* ---- the decoding arena ---- */

struct pb_arena_block {
	struct pb_arena_block *next;
	size_t cap, used;
	_Alignas(16) uint8_t data[];
};

#define ARENA_ALIGN 16u
#define ARENA_BLOCK_MIN 4096u

void
pb_arena_init(struct pb_arena *a, void *buf, size_t cap)
{
	uintptr_t p = (uintptr_t)buf, q = (p + (ARENA_ALIGN - 1)) & ~(uintptr_t)(ARENA_ALIGN - 1);

	memset(a, 0, sizeof(*a));
	if (buf != NULL && cap > q - p) {
		a->buf = (uint8_t *)q;
		a->cap = cap - (q - p);
	}
}

void
pb_arena_reset(struct pb_arena *a)
{
	struct pb_arena_block *b, *next;

	for (b = a->more; b != NULL; b = next) {
		next = b->next;
		free(b);
	}
	a->more = NULL;
	a->used = 0;
	a->oom = 0;
}

size_t
pb_arena_used(const struct pb_arena *a)
{
	const struct pb_arena_block *b;
	size_t n = a->used;

	for (b = a->more; b != NULL; b = b->next) {
		n += b->used;
	}
	return n;
}

static void *
arena_alloc(void *data, size_t size)
{
	struct pb_arena *a = data;
	struct pb_arena_block *b = a->more;
	size_t n = (size + (ARENA_ALIGN - 1)) & ~(size_t)(ARENA_ALIGN - 1);
	void *p;

	if (n == 0) {
		n = ARENA_ALIGN;
	}
	if (n < size) {
		a->oom = 1;
		return NULL;
	}
	if (b == NULL && a->cap - a->used >= n) {
		p = a->buf + a->used;
		a->used += n;
		return p;
	}
	if (b == NULL || b->cap - b->used < n) {
		size_t cap = n > ARENA_BLOCK_MIN ? n : ARENA_BLOCK_MIN;

		if ((b = malloc(sizeof(*b) + cap)) == NULL) {
			a->oom = 1;
			return NULL;
		}
		b->next = a->more;
		b->cap = cap;
		b->used = 0;
		a->more = b;
	}
	p = b->data + b->used;
	b->used += n;
	return p;
}

static void
arena_dealloc(void *data, void *p)
{
	/* Everything goes at pb_arena_reset. */
	(void)data;
	(void)p;
}

static int
unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
       struct pb_arena *arena, ProtobufCMessage **out)
{
	int oom = 0;
	ProtobufCAllocator a = {pb_alloc, pb_dealloc, &oom};
	ProtobufCAllocator aa = {arena_alloc, arena_dealloc, arena};
	ProtobufCMessage *m;

	if (desc == NULL || out == NULL || (buf == NULL && len != 0)) {
		return IHALA_EINVAL;
	}
	if (arena != NULL) {
		arena->oom = 0;
	}
	m = protobuf_c_message_unpack(desc, arena != NULL ? &aa : &a, len,
	                              buf != NULL ? buf : (const uint8_t *)"");
	if (m == NULL) {
		return (arena != NULL ? arena->oom : oom) ? IHALA_ENOMEM : IHALA_EBADFRAME;
	}
	*out = m;
	return 0;
}

/* A message of unpack's that failed a later check: freed now, or with its arena. */
static void
unpacked_drop(ProtobufCMessage *m, struct pb_arena *arena)
{
	if (arena == NULL) {
		pb_free(m);
	}
}

/* Everything but the parse itself: no unknown fields, canonical size, UTF-8. */
static int
check_strict(const ProtobufCMessage *m, size_t len)
{
	int rc;

	if ((rc = walk(m, PB_CHECK_UNKNOWN, 0)) != 0) {
		return rc;
	}
	if (protobuf_c_message_get_packed_size(m) != len) {
		return IHALA_EBADFRAME;
	}
	return walk(m, PB_CHECK_UTF8, 0);
}

void
pb_free(ProtobufCMessage *m)
{
	if (m != NULL) {
		protobuf_c_message_free_unpacked(m, &pb_free_allocator);
	}
}

int
pb_decode_strict(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                 ProtobufCMessage **out)
{
	ProtobufCMessage *m = NULL;
	int rc;

	if ((rc = unpack(desc, buf, len, NULL, &m)) != 0) {
		return rc;
	}
	if ((rc = check_strict(m, len)) != 0) {
		goto fail;
	}
	*out = m;
	return 0;
fail:
	pb_free(m);
	return rc;
}

/* ---------------------------------------------------------------------------
 * Frames, envelopes, log entries
 */

int
frame_encode(const Ihala__V2__Frame *f, uint8_t **out, size_t *outlen)
{
	const ProtobufCFieldDescriptor *fd;
	const ProtobufCMessage *member;
	uint8_t *buf;
	size_t n;

	if (f == NULL || out == NULL || outlen == NULL) {
		return IHALA_EINVAL;
	}
	fd = protobuf_c_message_descriptor_get_field(&ihala__v2__frame__descriptor,
	                                             (unsigned)f->kind_case);
	if (f->kind_case == IHALA__V2__FRAME__KIND__NOT_SET || fd == NULL) {
		return IHALA_EINVAL;
	}
	memcpy(&member, (const char *)f + fd->offset, sizeof(member));
	if (member == NULL) {
		return IHALA_EINVAL;
	}
	n = protobuf_c_message_get_packed_size(&f->base);
	if (n > FRAME_MAX_LIMIT) {
		return IHALA_EFRAMESIZE;
	}
	if ((buf = malloc(n > 0 ? n : 1)) == NULL) {
		return IHALA_ENOMEM;
	}
	if (protobuf_c_message_pack(&f->base, buf) != n) {
		free(buf);
		return IHALA_EINTERNAL;
	}
	*out = buf;
	*outlen = n;
	return 0;
}

int
frame_decode_in(const uint8_t *buf, size_t len, size_t max_frame, struct pb_arena *a,
                Ihala__V2__Frame **out)
{
	ProtobufCMessage *m = NULL;
	Ihala__V2__Frame *f;
	int rc;

	if (out == NULL || max_frame == 0 || max_frame > FRAME_MAX_LIMIT) {
		return IHALA_EINVAL;
	}
	if (len > max_frame) {
		return IHALA_EFRAMESIZE;
	}
	if ((rc = unpack(&ihala__v2__frame__descriptor, buf, len, a, &m)) != 0) {
		return rc;
	}
	f = (Ihala__V2__Frame *)m;
	/* A kind from a later version arrives as an unknown field: say so
	 * rather than "bad frame". */
	if (f->kind_case == IHALA__V2__FRAME__KIND__NOT_SET) {
		rc = IHALA_EUNKNOWNFRAME;
		goto fail;
	}
	if ((rc = check_strict(m, len)) != 0) {
		goto fail;
	}
	*out = f;
	return 0;
fail:
	unpacked_drop(m, a);
	return rc;
}

int
frame_decode(const uint8_t *buf, size_t len, size_t max_frame, Ihala__V2__Frame **out)
{
	return frame_decode_in(buf, len, max_frame, NULL, out);
}

void
frame_free(Ihala__V2__Frame *f)
{
	pb_free(f != NULL ? &f->base : NULL);
}

int
envelope_decode_in(const uint8_t *buf, size_t len, struct pb_arena *a, Ihala__V2__Envelope **out)
{
	ProtobufCMessage *m = NULL;
	Ihala__V2__Envelope *e;
	int rc;

	if (out == NULL) {
		return IHALA_EINVAL;
	}
	if ((rc = unpack(&ihala__v2__envelope__descriptor, buf, len, a, &m)) != 0) {
		return rc;
	}
	if ((rc = check_strict(m, len)) != 0) {
		goto fail;
	}
	e = (Ihala__V2__Envelope *)m;
	if (e->kind_case == IHALA__V2__ENVELOPE__KIND__NOT_SET) {
		rc = IHALA_ESCHEMA;
		goto fail;
	}
	if ((rc = walk(m, PB_CHECK_ENUMS, 0)) != 0) {
		goto fail;
	}
	*out = e;
	return 0;
fail:
	unpacked_drop(m, a);
	return rc;
}

int
envelope_decode(const uint8_t *buf, size_t len, Ihala__V2__Envelope **out)
{
	return envelope_decode_in(buf, len, NULL, out);
}

void
envelope_free(Ihala__V2__Envelope *e)
{
	pb_free(e != NULL ? &e->base : NULL);
}

int
logentry_decode(const uint8_t *buf, size_t len, Ihala__V2__LogEntry **out)
{
	ProtobufCMessage *m = NULL;
	int rc;

	if (out == NULL) {
		return IHALA_EINVAL;
	}
	if ((rc = pb_decode_strict(&ihala__v2__log_entry__descriptor, buf, len, &m)) != 0) {
		return rc;
	}
	*out = (Ihala__V2__LogEntry *)m;
	return 0;
}

void
logentry_free(Ihala__V2__LogEntry *e)
{
	pb_free(e != NULL ? &e->base : NULL);
}
