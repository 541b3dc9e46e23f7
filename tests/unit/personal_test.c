/* personal_test.c - proto/personal: split and merge of every kind, nothing personal left in the
 * clear part, the binding and content checks, and the node-side validation of personal fields.
 */
#define _GNU_SOURCE /* memmem */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "frame.h"
#include "personal.h"

#define CAT(x) IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_##x

/* Distinctive texts: none of them may appear in a clear encoding. */
static const char *const secrets[] = {
    "زينب قادر",            /* survivor.name (Arabic) */
    "ژینەب هەورامی",        /* business status (Kurdish) */
    "CASE-77-SECRET",       /* survivor.case_id */
    "Sulaymaniyah-SECRET",  /* survivor.governorate */
    "Halabja-SECRET",       /* survivor.district */
    "injury.SECRET",        /* an injury code */
    "2019-06-SECRET",       /* injury.incident_date */
    "reason-SECRET",        /* referral.reason */
    "+964-750-SECRET",      /* referring_officer.phone */
    "officer-SECRET",       /* referring_officer.name */
    "notes-SECRET",         /* referral.notes */
    "status-reason-SECRET", /* status_update.reason */
    "status-note-SECRET",   /* status_update.note */
    "2025-01-SECRET",       /* outcome.date */
    "outcome-notes-SECRET", /* outcome.notes */
    "note-text-SECRET",     /* note.text */
};

static Ihala__V2__Envelope env;
static Ihala__V2__Referral ref;
static Ihala__V2__Survivor surv;
static Ihala__V2__Injury inj;
static Ihala__V2__Consent cons;
static Ihala__V2__Contact officer;
static Ihala__V2__StatusUpdate upd;
static Ihala__V2__Outcome out;
static Ihala__V2__Note note;
static char *codes[70];
static Ihala__V2__ServiceCode services[] = {
    IHALA__V2__SERVICE_CODE__SERVICE_CODE_PROSTHETICS_ORTHOTICS};
static char *agencies[] = {"moh"};
static Ihala__V2__DataCategory covered[] = {CAT(IDENTITY), CAT(DEMOGRAPHICS), CAT(LOCATION),
                                            CAT(INJURY), CAT(NEEDS)};
static Ihala__V2__ReasonCode reasons[] = {IHALA__V2__REASON_CODE__REASON_CODE_CLIENT_UNREACHABLE};

/* env, cleared, as message `mid` of kind `kind` (its kind's message set by the caller). */
static void
env_start(const char *mid, Ihala__V2__Envelope__KindCase kind)
{
	ihala__v2__envelope__init(&env);
	env.message_id = (char *)mid;
	env.kind_case = kind;
}

static Ihala__V2__Envelope *
referral(void)
{
	env_start("m-1", IHALA__V2__ENVELOPE__KIND_REFERRAL);
	ihala__v2__referral__init(&ref);
	ihala__v2__survivor__init(&surv);
	ihala__v2__injury__init(&inj);
	ihala__v2__consent__init(&cons);
	ihala__v2__contact__init(&officer);
	env.to = "moh";
	env.referral = &ref;
	ref.referral_id = "R-1";
	ref.receiving_agency = "moh";
	ref.priority = IHALA__V2__PRIORITY__PRIORITY_URGENT;
	ref.n_services = 1;
	ref.services = services;
	ref.reason = "reason-SECRET";
	ref.notes = "notes-SECRET";
	ref.survivor = &surv;
	ref.consent = &cons;
	ref.referring_officer = &officer;
	ref.created_time_ms = 1700000000000;
	surv.case_id = "CASE-77-SECRET";
	surv.name = "زينب قادر";
	surv.sex = IHALA__V2__SEX__SEX_FEMALE;
	surv.birth_year = 1987;
	surv.governorate = "Sulaymaniyah-SECRET";
	surv.district = "Halabja-SECRET";
	surv.injury = &inj;
	codes[0] = "injury.SECRET";
	inj.n_injury_codes = 1;
	inj.injury_codes = codes;
	inj.incident_date = "2019-06-SECRET";
	officer.name = "officer-SECRET";
	officer.phone = "+964-750-SECRET";
	cons.given = 1;
	cons.date = "2024-04-02";
	cons.recorded_by = "DMA-VA-0231";
	cons.n_agencies = 1;
	cons.agencies = agencies;
	cons.n_data_covered = sizeof(covered) / sizeof(covered[0]);
	cons.data_covered = covered;
	return &env;
}

static Ihala__V2__Envelope *
status_update(int with_outcome)
{
	env_start("m-2", IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE);
	ihala__v2__status_update__init(&upd);
	ihala__v2__outcome__init(&out);
	env.status_update = &upd;
	upd.referral_id = "R-1";
	upd.status = IHALA__V2__TASK_STATUS__TASK_STATUS_FAILED;
	upd.business_status = "ژینەب هەورامی";
	upd.reason_code = IHALA__V2__REASON_CODE__REASON_CODE_CLIENT_UNREACHABLE;
	upd.reason = "status-reason-SECRET";
	upd.note = "status-note-SECRET";
	if (with_outcome) {
		upd.outcome = &out;
		out.referral_id = "R-1";
		out.service_implemented = 1;
		out.date = "2025-01-SECRET";
		out.notes = "outcome-notes-SECRET";
		out.n_not_successful_reasons = 1;
		out.not_successful_reasons = reasons;
	}
	return &env;
}

static Ihala__V2__Envelope *
outcome(void)
{
	env_start("m-3", IHALA__V2__ENVELOPE__KIND_OUTCOME);
	ihala__v2__outcome__init(&out);
	env.outcome = &out;
	out.referral_id = "R-1";
	out.success = 1;
	out.follow_up_needed = 1;
	out.date = "2025-01-SECRET";
	out.notes = "outcome-notes-SECRET";
	return &env;
}

static Ihala__V2__Envelope *
note_env(void)
{
	env_start("m-4", IHALA__V2__ENVELOPE__KIND_NOTE);
	ihala__v2__note__init(&note);
	env.note = &note;
	note.referral_id = "R-1";
	note.text = "note-text-SECRET";
	return &env;
}

static uint8_t *
pack_env(const Ihala__V2__Envelope *e, size_t *len)
{
	uint8_t *b = malloc(ihala__v2__envelope__get_packed_size(e) + 1);

	assert_non_null(b);
	*len = ihala__v2__envelope__pack(e, b);
	return b;
}

/* A message as the nodes move it: its sealed part and its clear part, encoded and decoded. */
struct parts {
	uint8_t *sealed, *clear;
	size_t slen, clen;
	Ihala__V2__Envelope *ce;
};

/* p's clear part: full's, its sealed_sha256 the 32 bytes at hash (NULL: none). */
static void
parts_clear(struct parts *p, const Ihala__V2__Envelope *full, const uint8_t *hash)
{
	assert_int_equal(personal_clear(full, hash, &p->clear, &p->clen), 0);
	assert_int_equal(envelope_decode(p->clear, p->clen, &p->ce), 0);
}

/* Both parts of `full` as `sender` sends it. */
static void
parts_split(struct parts *p, const Ihala__V2__Envelope *full, const char *sender,
            const uint8_t *hash)
{
	memset(p, 0, sizeof(*p));
	assert_int_equal(personal_split(full, sender, &p->sealed, &p->slen), 0);
	parts_clear(p, full, hash);
}

static void
parts_free(struct parts *p)
{
	envelope_free(p->ce);
	free(p->clear);
	free(p->sealed);
}

static void
assert_no_secret(const uint8_t *b, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
		if (memmem(b, len, secrets[i], strlen(secrets[i])) != NULL) {
			fail_msg("'%s' is in the clear part", secrets[i]);
		}
	}
}

/* Split, check the clear part holds nothing personal, merge, and compare with the full one. */
static void
round_trip(const Ihala__V2__Envelope *full, const char *sender)
{
	static const uint8_t hash[32] = {1, 2, 3};
	struct parts p;
	uint8_t *a, *b;
	Ihala__V2__Envelope *merged = NULL;
	size_t alen, blen;
	char err[256];

	assert_int_equal(personal_validate(full, err, sizeof(err)), 0);
	parts_split(&p, full, sender, hash);
	assert_non_null(p.sealed);
	assert_no_secret(p.clear, p.clen);
	assert_int_equal(p.ce->sealed_sha256.len, 32);
	assert_memory_equal(p.ce->sealed_sha256.data, hash, 32);
	assert_int_equal(personal_merge(p.ce, sender, p.sealed, p.slen, &merged, err, sizeof(err)),
	                 0);
	/* The merged message is the full one, with the clear part's additions. */
	merged->sealed_sha256.len = 0;
	merged->n_data_declared = 0;
	a = pack_env(full, &alen);
	b = pack_env(merged, &blen);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	free(a);
	free(b);
	envelope_free(merged);
	parts_free(&p);
}

static void
test_round_trip_every_kind(void **state)
{
	(void)state;
	round_trip(referral(), "dma");
	round_trip(status_update(0), "moh");
	round_trip(status_update(1), "moh");
	round_trip(outcome(), "moh");
	round_trip(note_env(), "moh");
}

/* A referral declares the categories its sealed fields carry, and only those (services is
 * clear: no NEEDS from it alone). */
static void
test_declared(void **state)
{
	Ihala__V2__DataCategory d[16];
	Ihala__V2__Envelope *e = referral();
	struct parts p;
	size_t n;

	(void)state;
	n = personal_declared(e->referral, d, 16);
	assert_int_equal(n, 5);
	assert_int_equal(d[0], CAT(IDENTITY));
	assert_int_equal(d[1], CAT(DEMOGRAPHICS));
	assert_int_equal(d[2], CAT(LOCATION));
	assert_int_equal(d[3], CAT(INJURY));
	assert_int_equal(d[4], CAT(NEEDS));
	memset(&p, 0, sizeof(p));
	parts_clear(&p, e, NULL);
	assert_int_equal(p.ce->n_data_declared, 5);
	assert_int_equal(p.ce->sealed_sha256.len, 0);
	parts_free(&p);
	/* only the case id and services: nothing to declare */
	surv.name = surv.governorate = surv.district = "";
	surv.sex = 0;
	surv.birth_year = 0;
	surv.injury = NULL;
	ref.reason = ref.notes = "";
	assert_int_equal(personal_declared(e->referral, d, 16), 0);
}

/* A message whose personal fields are all empty has no sealed part. */
static void
test_nothing_to_seal(void **state)
{
	Ihala__V2__Envelope *e = status_update(0);
	uint8_t *sealed = (uint8_t *)1;
	size_t slen = 1;

	(void)state;
	upd.business_status = upd.reason = upd.note = "";
	assert_int_equal(personal_split(e, "moh", &sealed, &slen), 0);
	assert_null(sealed);
	assert_int_equal(slen, 0);
	assert_int_equal(personal_kind(e), 1);
	e->kind_case = IHALA__V2__ENVELOPE__KIND_ERASE;
	assert_int_equal(personal_kind(e), 0);
	assert_int_equal(personal_split(e, "moh", &sealed, &slen), IHALA_EINVAL);
}

/* personal_merge of p's clear part with `sealed` (len bytes) from `sender`: refused with
 * `want`, no message made, the reason holding `words` (NULL: not looked at). A failure names
 * the caller's line. */
#define merge_refused(...) merge_refused_at(__LINE__, __VA_ARGS__)
static void
merge_refused_at(int line, const struct parts *p, const char *sender, const uint8_t *sealed,
                 size_t len, int want, const char *words)
{
	Ihala__V2__Envelope *m = NULL;
	char err[256] = "";
	int rc = personal_merge(p->ce, sender, sealed, len, &m, err, sizeof(err));

	if (rc != want || m != NULL || (words != NULL && strstr(err, words) == NULL)) {
		fail_msg("line %d: merge gave %d%s, not %d with '%s': '%s'", line, rc,
		         m != NULL ? " and a message" : "", want, words != NULL ? words : "", err);
	}
}

/* The same with the hand-made Sealed content s from dma. */
#define merge_refused_sealed(...) merge_refused_sealed_at(__LINE__, __VA_ARGS__)
static void
merge_refused_sealed_at(int line, const struct parts *p, const Ihala__V2__Sealed *s, int want,
                        const char *words)
{
	size_t len = ihala__v2__sealed__get_packed_size(s);
	uint8_t *b = malloc(len + 1);

	assert_non_null(b);
	len = ihala__v2__sealed__pack(s, b);
	merge_refused_at(line, p, "dma", b, len, want, words);
	free(b);
}

/* What the receiving node refuses after opening. */
static void
test_merge_refusals(void **state)
{
	Ihala__V2__Sealed s = IHALA__V2__SEALED__INIT;
	Ihala__V2__Referral r = IHALA__V2__REFERRAL__INIT;
	Ihala__V2__Note n = IHALA__V2__NOTE__INIT;
	Ihala__V2__Envelope *m = NULL;
	struct parts p;
	char err[256];

	(void)state;
	parts_split(&p, referral(), "dma", NULL);
	/* another sender, another message id, another referral */
	merge_refused(&p, "hi", p.sealed, p.slen, IHALA_ESEALBIND, NULL);
	p.ce->message_id[0] = 'x';
	merge_refused(&p, "dma", p.sealed, p.slen, IHALA_ESEALBIND, NULL);
	p.ce->message_id[0] = 'm';
	p.ce->referral->referral_id[0] = 'X';
	merge_refused(&p, "dma", p.sealed, p.slen, IHALA_ESEALBIND, NULL);
	p.ce->referral->referral_id[0] = 'R';
	/* not a Sealed message */
	merge_refused(&p, "dma", (const uint8_t *)"\xff\xff", 2, IHALA_ESEALFORM, NULL);
	/* a category the clear part does not declare */
	p.ce->n_data_declared = 4; /* INJURY dropped ... */
	p.ce->data_declared[3] = CAT(NEEDS);
	merge_refused(&p, "dma", p.sealed, p.slen, IHALA_ESEALCONTENT, "INJURY");
	p.ce->n_data_declared = 5;
	p.ce->data_declared[3] = CAT(INJURY);
	assert_int_equal(personal_merge(p.ce, "dma", p.sealed, p.slen, &m, err, sizeof(err)), 0);
	envelope_free(m);
	/* a sealed part carrying a clear field (priority), hand-made */
	s.message_id = "m-1";
	s.referral_id = "R-1";
	s.sender = "dma";
	s.kind_case = IHALA__V2__SEALED__KIND_REFERRAL;
	s.referral = &r;
	r.priority = IHALA__V2__PRIORITY__PRIORITY_EMERGENCY;
	merge_refused_sealed(&p, &s, IHALA_ESEALCONTENT, "priority");
	/* no survivor at all: invalid content (the case id is required) */
	r.priority = 0;
	r.notes = "n";
	merge_refused_sealed(&p, &s, IHALA_ESEALCONTENT, "case_id");
	/* another kind */
	s.kind_case = IHALA__V2__SEALED__KIND_NOTE;
	n.text = "x";
	s.note = &n;
	merge_refused_sealed(&p, &s, IHALA_ESEALBIND, NULL);
	parts_free(&p);
}

/* Outcome details sealed inside a status update whose clear part has no outcome. */
static void
test_merge_outcome_without_clear(void **state)
{
	struct parts p;

	(void)state;
	memset(&p, 0, sizeof(p));
	assert_int_equal(personal_split(status_update(1), "moh", &p.sealed, &p.slen), 0);
	upd.outcome = NULL;
	parts_clear(&p, &env, NULL);
	merge_refused(&p, "moh", p.sealed, p.slen, IHALA_ESEALCONTENT, NULL);
	parts_free(&p);
}

/* The checks the broker made on personal fields, now at the sending node. */
static void
test_validate(void **state)
{
	static char bad_utf8[] = {'a', (char)0xc3, 0};
	char err[256];
	size_t i;

	(void)state;
	referral();
	surv.case_id = "";
	assert_int_equal(personal_validate(&env, err, sizeof(err)), IHALA_ESCHEMA);
	assert_non_null(strstr(err, "case_id"));
	surv.case_id = "has space";
	assert_int_equal(personal_validate(&env, err, sizeof(err)), IHALA_ESCHEMA);
	referral();
	ref.survivor = NULL;
	assert_int_equal(personal_validate(&env, err, sizeof(err)), IHALA_ESCHEMA);
	referral();
	for (i = 0; i < 65; i++) {
		codes[i] = "injury.chest";
	}
	inj.n_injury_codes = 65;
	assert_int_equal(personal_validate(&env, err, sizeof(err)), IHALA_ESCHEMA);
	inj.n_injury_codes = 64;
	assert_int_equal(personal_validate(&env, err, sizeof(err)), 0);
	referral();
	surv.name = bad_utf8;
	assert_int_equal(personal_validate(&env, err, sizeof(err)), IHALA_EUTF8);
	referral();
	cons.recorded_by = "Ahmed Ali";
	assert_int_equal(personal_validate(&env, err, sizeof(err)), IHALA_ESCHEMA);
	assert_non_null(strstr(err, "recorded_by"));
	referral();
	cons.given = 0;
	assert_int_equal(personal_validate(&env, err, sizeof(err)), IHALA_ECONSENT);
	referral();
	cons.n_agencies = 0; /* the recipient moh not covered */
	assert_int_equal(personal_validate(&env, err, sizeof(err)), IHALA_ECONSENT);
	assert_non_null(strstr(err, "receiving agency 'moh'"));
	referral();
	surv.case_id = "";
	cons.given = 0; /* consent is judged first */
	assert_int_equal(personal_validate(&env, err, sizeof(err)), IHALA_ECONSENT);
	referral();
	cons.n_data_covered = 4; /* no NEEDS */
	assert_int_equal(personal_validate(&env, err, sizeof(err)), IHALA_ECONSENT);
	assert_non_null(strstr(err, "NEEDS"));
	note_env();
	note.text = bad_utf8;
	assert_int_equal(personal_validate(&env, err, sizeof(err)), IHALA_EUTF8);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip_every_kind),
	    cmocka_unit_test(test_declared),
	    cmocka_unit_test(test_nothing_to_seal),
	    cmocka_unit_test(test_merge_refusals),
	    cmocka_unit_test(test_merge_outcome_without_clear),
	    cmocka_unit_test(test_validate),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
