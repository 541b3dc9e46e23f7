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

static Ihala__V2__Envelope *
referral(void)
{
	ihala__v2__envelope__init(&env);
	ihala__v2__referral__init(&ref);
	ihala__v2__survivor__init(&surv);
	ihala__v2__injury__init(&inj);
	ihala__v2__consent__init(&cons);
	ihala__v2__contact__init(&officer);
	env.message_id = "m-1";
	env.to = "moh";
	env.kind_case = IHALA__V2__ENVELOPE__KIND_REFERRAL;
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
	ihala__v2__envelope__init(&env);
	ihala__v2__status_update__init(&upd);
	ihala__v2__outcome__init(&out);
	env.message_id = "m-2";
	env.kind_case = IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE;
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
	ihala__v2__envelope__init(&env);
	ihala__v2__outcome__init(&out);
	env.message_id = "m-3";
	env.kind_case = IHALA__V2__ENVELOPE__KIND_OUTCOME;
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
	ihala__v2__envelope__init(&env);
	ihala__v2__note__init(&note);
	env.message_id = "m-4";
	env.kind_case = IHALA__V2__ENVELOPE__KIND_NOTE;
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
	uint8_t *sealed = NULL, *clear = NULL, *a, *b;
	Ihala__V2__Envelope *ce = NULL, *merged = NULL;
	size_t slen, clen, alen, blen;
	char err[256];

	assert_int_equal(personal_validate(full, err, sizeof(err)), 0);
	assert_int_equal(personal_split(full, sender, &sealed, &slen), 0);
	assert_non_null(sealed);
	assert_int_equal(personal_clear(full, hash, &clear, &clen), 0);
	assert_no_secret(clear, clen);
	assert_int_equal(envelope_decode(clear, clen, &ce), 0);
	assert_int_equal(ce->sealed_sha256.len, 32);
	assert_memory_equal(ce->sealed_sha256.data, hash, 32);
	assert_int_equal(personal_merge(ce, sender, sealed, slen, &merged, err, sizeof(err)), 0);
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
	envelope_free(ce);
	free(clear);
	free(sealed);
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
	Ihala__V2__Envelope *e = referral(), *ce = NULL;
	uint8_t *clear = NULL;
	size_t n, clen;

	(void)state;
	n = personal_declared(e->referral, d, 16);
	assert_int_equal(n, 5);
	assert_int_equal(d[0], CAT(IDENTITY));
	assert_int_equal(d[1], CAT(DEMOGRAPHICS));
	assert_int_equal(d[2], CAT(LOCATION));
	assert_int_equal(d[3], CAT(INJURY));
	assert_int_equal(d[4], CAT(NEEDS));
	assert_int_equal(personal_clear(e, NULL, &clear, &clen), 0);
	assert_int_equal(envelope_decode(clear, clen, &ce), 0);
	assert_int_equal(ce->n_data_declared, 5);
	assert_int_equal(ce->sealed_sha256.len, 0);
	envelope_free(ce);
	free(clear);
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

/* What the receiving node refuses after opening. */
static void
test_merge_refusals(void **state)
{
	uint8_t *sealed = NULL, *clear = NULL, *other = NULL;
	Ihala__V2__Envelope *ce = NULL, *m = NULL;
	size_t slen, clen, olen;
	char err[256];

	(void)state;
	assert_int_equal(personal_split(referral(), "dma", &sealed, &slen), 0);
	assert_int_equal(personal_clear(&env, NULL, &clear, &clen), 0);
	assert_int_equal(envelope_decode(clear, clen, &ce), 0);
	/* another sender, another message id, another referral */
	assert_int_equal(personal_merge(ce, "hi", sealed, slen, &m, err, sizeof(err)),
	                 IHALA_ESEALBIND);
	assert_null(m);
	ce->message_id[0] = 'x';
	assert_int_equal(personal_merge(ce, "dma", sealed, slen, &m, err, sizeof(err)),
	                 IHALA_ESEALBIND);
	ce->message_id[0] = 'm';
	ce->referral->referral_id[0] = 'X';
	assert_int_equal(personal_merge(ce, "dma", sealed, slen, &m, err, sizeof(err)),
	                 IHALA_ESEALBIND);
	ce->referral->referral_id[0] = 'R';
	/* not a Sealed message */
	assert_int_equal(
	    personal_merge(ce, "dma", (const uint8_t *)"\xff\xff", 2, &m, err, sizeof(err)),
	    IHALA_ESEALFORM);
	/* a category the clear part does not declare */
	ce->n_data_declared = 4; /* INJURY dropped ... */
	ce->data_declared[3] = CAT(NEEDS);
	assert_int_equal(personal_merge(ce, "dma", sealed, slen, &m, err, sizeof(err)),
	                 IHALA_ESEALCONTENT);
	assert_non_null(strstr(err, "INJURY"));
	ce->n_data_declared = 5;
	ce->data_declared[3] = CAT(INJURY);
	assert_int_equal(personal_merge(ce, "dma", sealed, slen, &m, err, sizeof(err)), 0);
	envelope_free(m);
	m = NULL;
	/* a sealed part carrying a clear field (priority), hand-made */
	{
		Ihala__V2__Sealed s = IHALA__V2__SEALED__INIT;
		Ihala__V2__Referral r = IHALA__V2__REFERRAL__INIT;

		s.message_id = "m-1";
		s.referral_id = "R-1";
		s.sender = "dma";
		s.kind_case = IHALA__V2__SEALED__KIND_REFERRAL;
		s.referral = &r;
		r.priority = IHALA__V2__PRIORITY__PRIORITY_EMERGENCY;
		other = malloc(ihala__v2__sealed__get_packed_size(&s));
		olen = ihala__v2__sealed__pack(&s, other);
		assert_int_equal(personal_merge(ce, "dma", other, olen, &m, err, sizeof(err)),
		                 IHALA_ESEALCONTENT);
		assert_non_null(strstr(err, "priority"));
		free(other);
		/* no survivor at all: invalid content (the case id is required) */
		r.priority = 0;
		r.notes = "n";
		other = malloc(ihala__v2__sealed__get_packed_size(&s));
		olen = ihala__v2__sealed__pack(&s, other);
		assert_int_equal(personal_merge(ce, "dma", other, olen, &m, err, sizeof(err)),
		                 IHALA_ESEALCONTENT);
		assert_non_null(strstr(err, "case_id"));
		free(other);
		/* another kind */
		s.kind_case = IHALA__V2__SEALED__KIND_NOTE;
		{
			Ihala__V2__Note n = IHALA__V2__NOTE__INIT;

			n.text = "x";
			s.note = &n;
			other = malloc(ihala__v2__sealed__get_packed_size(&s));
			olen = ihala__v2__sealed__pack(&s, other);
		}
		assert_int_equal(personal_merge(ce, "dma", other, olen, &m, err, sizeof(err)),
		                 IHALA_ESEALBIND);
		free(other);
	}
	envelope_free(ce);
	free(clear);
	free(sealed);
}

/* Outcome details sealed inside a status update whose clear part has no outcome. */
static void
test_merge_outcome_without_clear(void **state)
{
	uint8_t *sealed = NULL, *clear = NULL;
	Ihala__V2__Envelope *ce = NULL, *m = NULL;
	size_t slen, clen;
	char err[256];

	(void)state;
	assert_int_equal(personal_split(status_update(1), "moh", &sealed, &slen), 0);
	upd.outcome = NULL;
	assert_int_equal(personal_clear(&env, NULL, &clear, &clen), 0);
	assert_int_equal(envelope_decode(clear, clen, &ce), 0);
	assert_int_equal(personal_merge(ce, "moh", sealed, slen, &m, err, sizeof(err)),
	                 IHALA_ESEALCONTENT);
	envelope_free(ce);
	free(clear);
	free(sealed);
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
