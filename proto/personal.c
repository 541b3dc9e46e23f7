/* personal.c - which fields of a message are sealed, split/merge, and their validation at nodes. */
#include "personal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consent.h"
#include "error.h"
#include "frame.h"
#include "id.h"

/* Bounds the broker kept on personal fields before they were sealed (broker/policy.c). */
#define MAX_CODES 64

/* The one rule (docs/SEALING.md): every row is sealed, everything else is clear. */
const struct personal_field personal_fields[] = {
    {&ihala__v2__referral__descriptor, "survivor", 0},
    {&ihala__v2__referral__descriptor, "reason", 0},
    {&ihala__v2__referral__descriptor, "referring_officer", 0},
    {&ihala__v2__referral__descriptor, "notes", 0},
    {&ihala__v2__status_update__descriptor, "business_status", 0},
    {&ihala__v2__status_update__descriptor, "reason", 0},
    {&ihala__v2__status_update__descriptor, "note", 0},
    {&ihala__v2__status_update__descriptor, "outcome", 1},
    {&ihala__v2__outcome__descriptor, "date", 0},
    {&ihala__v2__outcome__descriptor, "notes", 0},
    {&ihala__v2__note__descriptor, "text", 0},
};
const size_t personal_n_fields = sizeof(personal_fields) / sizeof(personal_fields[0]);

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

static const struct personal_field *
row_of(const ProtobufCMessageDescriptor *d, const char *name)
{
	size_t i;

	for (i = 0; i < personal_n_fields; i++) {
		if (personal_fields[i].msg == d && strcmp(personal_fields[i].name, name) == 0) {
			return &personal_fields[i];
		}
	}
	return NULL;
}

/* ---- fields through the descriptors (proto3: no has_ flags, no oneofs below the kind) ---- */

static size_t
scalar_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(void *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	default:
		return 4; /* int32, uint32, enum, bool (protobuf_c_boolean), float */
	}
}

static void *
member(const ProtobufCFieldDescriptor *f, const void *m)
{
	return (char *)m + f->offset;
}

/* 1 when field f of m holds something other than its default. */
static int
field_set(const ProtobufCFieldDescriptor *f, const void *m)
{
	const uint8_t *p = member(f, m);
	size_t i, n;

	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		memcpy(&n, (const char *)m + f->quantifier_offset, sizeof(n));
		return n > 0;
	}
	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING: {
		const char *s;

		memcpy(&s, p, sizeof(s));
		return s != NULL && s[0] != '\0';
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const void *sub;

		memcpy(&sub, p, sizeof(sub));
		return sub != NULL;
	}
	case PROTOBUF_C_TYPE_BYTES:
		return ((const ProtobufCBinaryData *)p)->len > 0;
	default:
		n = scalar_size(f->type);
		for (i = 0; i < n; i++) {
			if (p[i] != 0) {
				return 1;
			}
		}
		return 0;
	}
}

/* Field f of m back to its default (nothing is freed: m is a shallow copy). */
static void
field_reset(const ProtobufCFieldDescriptor *f, void *m)
{
	void *p = member(f, m);

	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		memset((char *)m + f->quantifier_offset, 0, sizeof(size_t));
		memset(p, 0, sizeof(void *));
	} else if (f->type == PROTOBUF_C_TYPE_STRING) {
		const char *s = protobuf_c_empty_string;

		memcpy(p, &s, sizeof(s));
	} else {
		memset(p, 0, scalar_size(f->type));
	}
}

/* Field f of src into dst (shallow). */
static void
field_copy(const ProtobufCFieldDescriptor *f, void *dst, const void *src)
{
	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		memcpy((char *)dst + f->quantifier_offset, (const char *)src + f->quantifier_offset,
		       sizeof(size_t));
		memcpy(member(f, dst), member(f, src), sizeof(void *));
	} else {
		memcpy(member(f, dst), member(f, src), scalar_size(f->type));
	}
}

static int
any_set(const ProtobufCMessage *m)
{
	unsigned i;

	for (i = 0; i < m->descriptor->n_fields; i++) {
		if (field_set(&m->descriptor->fields[i], m)) {
			return 1;
		}
	}
	return 0;
}

/* The kind's message of env, or NULL for a kind without personal fields. */
static const ProtobufCMessage *
kind_msg(const Ihala__V2__Envelope *e)
{
	switch (e->kind_case) {
	case IHALA__V2__ENVELOPE__KIND_REFERRAL:
		return e->referral != NULL ? &e->referral->base : NULL;
	case IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE:
		return e->status_update != NULL ? &e->status_update->base : NULL;
	case IHALA__V2__ENVELOPE__KIND_OUTCOME:
		return e->outcome != NULL ? &e->outcome->base : NULL;
	case IHALA__V2__ENVELOPE__KIND_NOTE:
		return e->note != NULL ? &e->note->base : NULL;
	default:
		return NULL;
	}
}

const char *
personal_referral_id(const Ihala__V2__Envelope *e)
{
	switch (e->kind_case) {
	case IHALA__V2__ENVELOPE__KIND_REFERRAL:
		return e->referral->referral_id;
	case IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE:
		return e->status_update->referral_id;
	case IHALA__V2__ENVELOPE__KIND_OUTCOME:
		return e->outcome->referral_id;
	case IHALA__V2__ENVELOPE__KIND_NOTE:
		return e->note->referral_id;
	default:
		return "";
	}
}

int
personal_kind(const Ihala__V2__Envelope *env)
{
	return env != NULL && kind_msg(env) != NULL;
}

/* Room for one kind's message, clear or sealed. */
union kind_room {
	Ihala__V2__Referral r;
	Ihala__V2__StatusUpdate u;
	Ihala__V2__Outcome o;
	Ihala__V2__Note n;
};

/* One message split: the clear and the sealed copies, and those of a split sub-message. */
struct parts {
	union kind_room clear, sealed;
	Ihala__V2__Outcome sub_clear, sub_sealed;
};

/* Split src into p (shallow: pointers into src). `nested` 0 for a sub-message. */
static void
split_msg(const ProtobufCMessage *src, ProtobufCMessage *clear, ProtobufCMessage *sealed,
          ProtobufCMessage *sub_clear, ProtobufCMessage *sub_sealed)
{
	const ProtobufCMessageDescriptor *d = src->descriptor;
	unsigned i;

	memcpy(clear, src, d->sizeof_message);
	d->message_init(sealed);
	for (i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const struct personal_field *r = row_of(d, f->name);
		const ProtobufCMessage *sub;

		if (r == NULL) {
			continue;
		}
		if (r->split && sub_clear != NULL && field_set(f, src)) {
			memcpy(&sub, member(f, src), sizeof(sub));
			split_msg(sub, sub_clear, sub_sealed, NULL, NULL);
			memcpy(member(f, clear), &sub_clear, sizeof(sub_clear));
			if (any_set(sub_sealed)) {
				memcpy(member(f, sealed), &sub_sealed, sizeof(sub_sealed));
			}
			continue;
		}
		field_copy(f, sealed, src);
		field_reset(f, clear);
	}
}

static void
split_kind(const ProtobufCMessage *m, struct parts *p)
{
	split_msg(m, &p->clear.r.base, &p->sealed.r.base, &p->sub_clear.base, &p->sub_sealed.base);
}

static int
pack(const ProtobufCMessage *m, uint8_t **out, size_t *len)
{
	size_t n = protobuf_c_message_get_packed_size(m);

	if ((*out = malloc(n > 0 ? n : 1)) == NULL) {
		return IHALA_ENOMEM;
	}
	*len = protobuf_c_message_pack(m, *out);
	return 0;
}

/* ---- categories ---- */

/* 1 when consent field `name` ("survivor.name", "reason") is a sealed field of a Referral. */
static int
consent_field_sealed(const char *name)
{
	char first[64];
	size_t n = strcspn(name, ".");

	if (n >= sizeof(first)) {
		return 0;
	}
	memcpy(first, name, n);
	first[n] = '\0';
	return row_of(&ihala__v2__referral__descriptor, first) != NULL;
}

size_t
personal_declared(const Ihala__V2__Referral *r, Ihala__V2__DataCategory *out, size_t cap)
{
	int seen[16] = {0};
	size_t i, n = 0;
	unsigned c;

	for (i = 0; i < consent_n_fields; i++) {
		const struct consent_field *f = &consent_fields[i];

		if ((unsigned)f->category < 16 && consent_field_sealed(f->name) && f->carried(r)) {
			seen[f->category] = 1;
		}
	}
	for (c = 0; c < 16; c++) {
		if (seen[c] && n < cap) {
			out[n++] = (Ihala__V2__DataCategory)c;
		}
	}
	return n;
}

/* ---- validation ---- */

static int
validate_referral(const Ihala__V2__Envelope *env, const Ihala__V2__Referral *r, char *err,
                  size_t errlen)
{
	const char *dest = env->to[0] != '\0' ? env->to : r->receiving_agency;
	const struct consent_field *f;

	/* Consent first (the broker's sentences): nothing about the person goes without it. */
	if (r->consent == NULL || !r->consent->given) {
		return fail(err, errlen, IHALA_ECONSENT, "referral '%s' has no recorded consent",
		            r->referral_id);
	}
	if (dest[0] != '\0' && !consent_covers_agency(r->consent, dest)) {
		return fail(err, errlen, IHALA_ECONSENT,
		            "the survivor's consent does not cover the receiving agency '%s'",
		            dest);
	}
	if (r->survivor == NULL || !id_valid(r->survivor->case_id)) {
		return fail(err, errlen, IHALA_ESCHEMA,
		            "a referral needs survivor.case_id (1..64 printable ASCII)");
	}
	if (r->survivor->injury != NULL) {
		const Ihala__V2__Injury *in = r->survivor->injury;

		if (in->n_injury_codes > MAX_CODES || in->n_amputations > MAX_CODES) {
			return fail(err, errlen, IHALA_ESCHEMA,
			            "referral.survivor.injury codes: %zu, at most %d of each are "
			            "allowed",
			            in->n_injury_codes + in->n_amputations, MAX_CODES);
		}
	}
	if (r->consent->recorded_by[0] != '\0' && !id_valid(r->consent->recorded_by)) {
		/* It stays clear: a pseudonymous staff id, never a name. */
		return fail(err, errlen, IHALA_ESCHEMA,
		            "consent.recorded_by must be a pseudonymous staff id (1..64 printable "
		            "ASCII characters without spaces), never a name: it is not sealed");
	}
	if ((f = consent_uncovered(r)) != NULL) {
		return fail(err, errlen, IHALA_ECONSENT,
		            "the consent does not cover %s, which %s is",
		            consent_category_name(f->category), f->name);
	}
	return 0;
}

int
personal_validate(const Ihala__V2__Envelope *env, char *err, size_t errlen)
{
	if (env == NULL) {
		return fail(err, errlen, IHALA_EINVAL, "no envelope");
	}
	if (pb_check_utf8(&env->base) != 0) {
		return fail(err, errlen, IHALA_EUTF8, "a text of the message is not valid UTF-8");
	}
	if (env->kind_case == IHALA__V2__ENVELOPE__KIND_REFERRAL && env->referral != NULL) {
		return validate_referral(env, env->referral, err, errlen);
	}
	return 0;
}

/* ---- split ---- */

int
personal_split(const Ihala__V2__Envelope *env, const char *sender, uint8_t **out, size_t *len)
{
	const ProtobufCMessage *m = env != NULL ? kind_msg(env) : NULL;
	Ihala__V2__Sealed s = IHALA__V2__SEALED__INIT;
	struct parts p;

	*out = NULL;
	*len = 0;
	if (m == NULL || sender == NULL) {
		return IHALA_EINVAL;
	}
	split_kind(m, &p);
	if (!any_set(&p.sealed.r.base)) {
		return 0; /* nothing personal: no sealed part */
	}
	s.message_id = env->message_id;
	s.referral_id = (char *)personal_referral_id(env);
	s.sender = (char *)sender;
	s.kind_case = (Ihala__V2__Sealed__KindCase)env->kind_case;
	switch (env->kind_case) {
	case IHALA__V2__ENVELOPE__KIND_REFERRAL:
		s.referral = &p.sealed.r;
		break;
	case IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE:
		s.status_update = &p.sealed.u;
		break;
	case IHALA__V2__ENVELOPE__KIND_OUTCOME:
		s.outcome = &p.sealed.o;
		break;
	default:
		s.note = &p.sealed.n;
		break;
	}
	return pack(&s.base, out, len);
}

int
personal_clear(const Ihala__V2__Envelope *env, const uint8_t *sha256, uint8_t **out, size_t *len)
{
	Ihala__V2__DataCategory declared[16];
	const ProtobufCMessage *m = kind_msg(env);
	Ihala__V2__Envelope e = *env;
	struct parts p;

	*out = NULL;
	*len = 0;
	e.sealed_sha256.data = (uint8_t *)sha256;
	e.sealed_sha256.len = sha256 != NULL ? 32 : 0;
	e.n_data_declared = 0;
	e.data_declared = NULL;
	if (m != NULL) {
		split_kind(m, &p);
		switch (env->kind_case) {
		case IHALA__V2__ENVELOPE__KIND_REFERRAL:
			e.referral = &p.clear.r;
			e.n_data_declared = personal_declared(env->referral, declared, 16);
			e.data_declared = declared;
			break;
		case IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE:
			e.status_update = &p.clear.u;
			break;
		case IHALA__V2__ENVELOPE__KIND_OUTCOME:
			e.outcome = &p.clear.o;
			break;
		default:
			e.note = &p.clear.n;
			break;
		}
	}
	return pack(&e.base, out, len);
}

/* ---- merge ---- */

/* out := clear with the sealed rows taken from sealed (shallow). */
static int
merge_msg(const ProtobufCMessage *clear, const ProtobufCMessage *sealed, ProtobufCMessage *out,
          ProtobufCMessage *sub_out, const char *what, char *err, size_t errlen)
{
	const ProtobufCMessageDescriptor *d = clear->descriptor;
	unsigned i;
	int rc;

	memcpy(out, clear, d->sizeof_message);
	for (i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const struct personal_field *r = row_of(d, f->name);
		const ProtobufCMessage *sc, *ss;

		if (r == NULL) {
			if (field_set(f, sealed)) {
				return fail(err, errlen, IHALA_ESEALCONTENT,
				            "the sealed part carries %s.%s, which is not a sealed "
				            "field",
				            what, f->name);
			}
			continue;
		}
		if (r->split && sub_out != NULL) {
			memcpy(&ss, member(f, sealed), sizeof(ss));
			memcpy(&sc, member(f, clear), sizeof(sc));
			if (ss == NULL) {
				continue;
			}
			if (sc == NULL) {
				return fail(
				    err, errlen, IHALA_ESEALCONTENT,
				    "the sealed part carries %s.%s details but the clear part "
				    "has no %s",
				    what, f->name, f->name);
			}
			if ((rc = merge_msg(sc, ss, sub_out, NULL, f->name, err, errlen)) != 0) {
				return rc;
			}
			memcpy(member(f, out), &sub_out, sizeof(sub_out));
			continue;
		}
		if (field_set(f, sealed)) {
			field_copy(f, out, sealed);
		}
	}
	return 0;
}

int
personal_merge(const Ihala__V2__Envelope *clear, const char *sender, const uint8_t *plain,
               size_t len, Ihala__V2__Envelope **merged, char *err, size_t errlen)
{
	Ihala__V2__DataCategory carried[16];
	ProtobufCMessage *sm = NULL;
	const Ihala__V2__Sealed *s;
	const ProtobufCMessage *cm, *skm = NULL;
	Ihala__V2__Envelope e;
	struct parts p;
	uint8_t *buf = NULL;
	size_t blen, n, i, j;
	int rc;

	*merged = NULL;
	if (clear == NULL || sender == NULL || (cm = kind_msg(clear)) == NULL) {
		return fail(err, errlen, IHALA_ESEALCONTENT,
		            "a sealed part on a message kind that has no personal fields");
	}
	rc = pb_decode_strict(&ihala__v2__sealed__descriptor, plain, len, &sm);
	if (rc == IHALA_ENOMEM) {
		return fail(err, errlen, rc, "out of memory");
	}
	if (rc != 0) {
		return fail(err, errlen, IHALA_ESEALFORM,
		            "the opened sealed part is not a Sealed message (%s)",
		            ihala_strerror(rc));
	}
	s = (const Ihala__V2__Sealed *)sm;
	if (strcmp(s->message_id, clear->message_id) != 0 ||
	    strcmp(s->referral_id, personal_referral_id(clear)) != 0 ||
	    strcmp(s->sender, sender) != 0) {
		rc = fail(err, errlen, IHALA_ESEALBIND,
		          "the sealed part belongs to another message: its message id, referral id "
		          "or sender differ from the clear part's");
		goto out;
	}
	if ((int)s->kind_case != (int)clear->kind_case) {
		rc = fail(err, errlen, IHALA_ESEALBIND,
		          "the sealed part holds another kind of message than the clear part");
		goto out;
	}
	switch (s->kind_case) {
	case IHALA__V2__SEALED__KIND_REFERRAL:
		skm = &s->referral->base;
		break;
	case IHALA__V2__SEALED__KIND_STATUS_UPDATE:
		skm = &s->status_update->base;
		break;
	case IHALA__V2__SEALED__KIND_OUTCOME:
		skm = &s->outcome->base;
		break;
	case IHALA__V2__SEALED__KIND_NOTE:
		skm = &s->note->base;
		break;
	default:
		break;
	}
	if (skm == NULL) {
		rc = fail(err, errlen, IHALA_ESEALFORM, "the sealed part holds no message");
		goto out;
	}
	if ((rc = merge_msg(cm, skm, &p.clear.r.base, &p.sub_clear.base, cm->descriptor->short_name,
	                    err, errlen)) != 0) {
		goto out;
	}
	e = *clear;
	switch (clear->kind_case) {
	case IHALA__V2__ENVELOPE__KIND_REFERRAL:
		e.referral = &p.clear.r;
		/* Nothing the clear part does not declare (the broker checked the declared ones
		 * against the consent). */
		n = personal_declared(e.referral, carried, 16);
		for (i = 0; i < n; i++) {
			for (j = 0; j < clear->n_data_declared; j++) {
				if (clear->data_declared[j] == carried[i]) {
					break;
				}
			}
			if (j == clear->n_data_declared) {
				rc = fail(
				    err, errlen, IHALA_ESEALCONTENT,
				    "the sealed part carries data of category %s, which the clear "
				    "part does not declare",
				    consent_category_name(carried[i]));
				goto out;
			}
		}
		break;
	case IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE:
		e.status_update = &p.clear.u;
		break;
	case IHALA__V2__ENVELOPE__KIND_OUTCOME:
		e.outcome = &p.clear.o;
		break;
	default:
		e.note = &p.clear.n;
		break;
	}
	if ((rc = personal_validate(&e, err, errlen)) != 0) {
		char why[256];

		snprintf(why, sizeof(why), "%s", err != NULL ? err : "");
		rc = fail(err, errlen, IHALA_ESEALCONTENT, "the opened content is not valid: %s",
		          why);
		goto out;
	}
	if ((rc = pack(&e.base, &buf, &blen)) != 0) {
		goto out;
	}
	if ((rc = envelope_decode(buf, blen, merged)) != 0) {
		rc = fail(err, errlen, IHALA_ESEALCONTENT,
		          "the merged message does not decode (%s)", ihala_strerror(rc));
	}
out:
	free(buf);
	pb_free(sm);
	return rc;
}
