/* policy_test.c - unit tests of broker/policy: every cell of the DESIGN §7 table, ACL and rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "consent.h"
#include "error.h"
#include "ihala.pb-c.h"
#include "policy.h"

#define S(x) IHALA__V2__TASK_STATUS__TASK_STATUS_##x
#define ROLE(x) IHALA__V2__ROLE__ROLE_##x
#define NSTATUS 11

/*
 * The expected transition table, written from DESIGN §7 by hand (one row per row of §7), and
 * never computed by the code under test. `setter` is the only party that may set the status
 * (SETTER_NOBODY: nobody through policy_transition: unspecified is not a status, requested
 * comes only with a new Referral, overdue only from the broker's clock).
 */
#define SETTER_NOBODY (-1)
#define F(x) (1u << S(x))
#define NON_TERMINAL (F(REQUESTED) | F(RECEIVED) | F(ACCEPTED) | F(IN_PROGRESS) | F(ON_HOLD))

struct rule {
	Ihala__V2__TaskStatus to;
	int setter;
	unsigned from; /* bit (1 << status) for every status it may come from */
	int needs_outcome;
};

static const struct rule rules[NSTATUS] = {
    {S(UNSPECIFIED), SETTER_NOBODY, 0, 0},
    {S(REQUESTED), SETTER_NOBODY, 0, 0},
    {S(RECEIVED), POLICY_PARTY_BROKER, F(REQUESTED), 0},
    {S(ACCEPTED), POLICY_PARTY_RECIPIENT, F(REQUESTED) | F(RECEIVED), 0},
    {S(DECLINED), POLICY_PARTY_RECIPIENT, F(REQUESTED) | F(RECEIVED), 0},
    {S(IN_PROGRESS), POLICY_PARTY_RECIPIENT, F(ACCEPTED) | F(IN_PROGRESS) | F(ON_HOLD), 0},
    {S(ON_HOLD), POLICY_PARTY_RECIPIENT, F(ACCEPTED) | F(IN_PROGRESS) | F(ON_HOLD), 0},
    {S(COMPLETED), POLICY_PARTY_RECIPIENT, F(ACCEPTED) | F(IN_PROGRESS) | F(ON_HOLD), 1},
    {S(FAILED), POLICY_PARTY_RECIPIENT, F(ACCEPTED) | F(IN_PROGRESS) | F(ON_HOLD), 1},
    {S(CANCELLED), POLICY_PARTY_REFERRER, NON_TERMINAL, 0},
    {S(OVERDUE), SETTER_NOBODY, 0, 0},
};

/* Names written here rather than taken from the module, so a wrong name cannot hide. */
static const char *const status_names[NSTATUS] = {
    "unspecified", "requested", "received", "accepted",  "declined", "in-progress",
    "on-hold",     "completed", "failed",   "cancelled", "overdue",
};

static const char *
party_name(enum policy_party p)
{
	switch (p) {
	case POLICY_PARTY_REFERRER:
		return "referrer";
	case POLICY_PARTY_RECIPIENT:
		return "recipient";
	case POLICY_PARTY_BROKER:
		return "broker";
	default:
		return "none";
	}
}

static const char *
err_name(int err)
{
	switch (err) {
	case IHALA_EFORBIDDEN:
		return "FORBIDDEN";
	case IHALA_ETRANSITION:
		return "INVALID_TRANSITION";
	case IHALA_EOUTCOME:
		return "OUTCOME_REQUIRED";
	default:
		return "?";
	}
}

/* One cell of the table: its own cmocka test. */
struct cell {
	enum policy_party who;
	Ihala__V2__TaskStatus from;
	Ihala__V2__TaskStatus to;
	int has_outcome;
	int expected;
	char name[112];
};

static int
expected_of(enum policy_party who, Ihala__V2__TaskStatus from, Ihala__V2__TaskStatus to,
            int has_outcome)
{
	const struct rule *r = &rules[to];

	if (r->setter == SETTER_NOBODY || (int)who != r->setter) {
		return IHALA_EFORBIDDEN;
	}
	if ((r->from & (1u << from)) == 0) {
		return IHALA_ETRANSITION;
	}
	if (r->needs_outcome && !has_outcome) {
		return IHALA_EOUTCOME;
	}
	return 0;
}

static void
test_cell(void **state)
{
	const struct cell *c = *state;

	assert_int_equal(policy_transition(c->who, c->from, c->to, c->has_outcome), c->expected);
}

/* Cancel by the referrer through policy_check, from one status (the cell's `from`). */
static void test_cancel_from(void **state);

/* ------------------------------------------------------------------------------------------ */
/* A fake agency table.                                                                        */

#define KIND_DMA (POLICY_KIND_REFERRAL | POLICY_KIND_STATUS | POLICY_KIND_NOTE)
#define KIND_ANSWER                                                                                \
	(POLICY_KIND_REFERRAL | POLICY_KIND_STATUS | POLICY_KIND_OUTCOME | POLICY_KIND_NOTE)

enum { A_DMA, A_MOH, A_MOLSA, A_HI, A_AUDITOR, N_AGENCIES };

static const struct policy_agency base_agencies[N_AGENCIES] = {
    [A_DMA] = {"dma", ROLE(DMA), KIND_DMA, NULL, 0, 1},
    [A_MOH] = {"moh", ROLE(MINISTRY), KIND_ANSWER, NULL, 0, 0},
    [A_MOLSA] = {"molsa", ROLE(MINISTRY), KIND_ANSWER, NULL, 0, 0},
    [A_HI] = {"hi", ROLE(NGO), KIND_ANSWER, NULL, 0, 0},
    [A_AUDITOR] = {"auditor", ROLE(AUDITOR), 0, NULL, 0, 0},
};

/* A table a test may change; the view points into it. */
struct world {
	struct policy_agency agencies[N_AGENCIES];
	struct policy_view view;
};

static const struct policy_agency *
fake_find(void *ctx, const char *id)
{
	const struct world *w = ctx;
	size_t i;

	for (i = 0; i < N_AGENCIES; i++) {
		if (strcmp(w->agencies[i].id, id) == 0) {
			return &w->agencies[i];
		}
	}
	return NULL;
}

static void
world_init(struct world *w)
{
	memcpy(w->agencies, base_agencies, sizeof(w->agencies));
	w->view.find = fake_find;
	w->view.ctx = w;
}

/* ------------------------------------------------------------------------------------------ */
/* Envelopes built in memory; every pointer points into the struct msg itself or at literals.   */

struct msg {
	Ihala__V2__Envelope env;
	Ihala__V2__Referral ref;
	Ihala__V2__Survivor surv;
	Ihala__V2__Consent consent;
	char *consent_agencies[4];
	Ihala__V2__DataCategory consent_data[9];
	Ihala__V2__ServiceCode services[1];
	Ihala__V2__StatusUpdate su;
	Ihala__V2__Outcome outcome;
	Ihala__V2__ReasonCode reasons[1];
	Ihala__V2__Note note;
	Ihala__V2__Erase erase;
	Ihala__V2__Unreadable unr;
};

static void
msg_init(struct msg *m)
{
	memset(m, 0, sizeof(*m));
	ihala__v2__envelope__init(&m->env);
	m->env.message_id = "msg-0001";
}

#define CAT(x) IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_##x

/* A complete, valid referral `rid` from `referrer` to `recipient`, consent covering it and
 * NEEDS (its services), and no other personal data. */
static void
msg_referral(struct msg *m, const char *referrer, const char *recipient, const char *rid)
{
	msg_init(m);
	ihala__v2__referral__init(&m->ref);
	ihala__v2__survivor__init(&m->surv);
	ihala__v2__consent__init(&m->consent);
	m->env.to = (char *)recipient;
	m->env.kind_case = IHALA__V2__ENVELOPE__KIND_REFERRAL;
	m->env.referral = &m->ref;
	m->ref.referral_id = (char *)rid;
	m->ref.referring_agency = (char *)referrer;
	m->ref.receiving_agency = (char *)recipient;
	m->ref.priority = IHALA__V2__PRIORITY__PRIORITY_URGENT;
	m->services[0] = IHALA__V2__SERVICE_CODE__SERVICE_CODE_PROSTHETICS_ORTHOTICS;
	m->ref.n_services = 1;
	m->ref.services = m->services;
	m->surv.case_id = "IQ-NIN-000123"; /* sealed: set_* put it in clear for the tests of that */
	m->consent.given = 1;
	m->consent.given_by = IHALA__V2__CONSENT_GIVER__CONSENT_GIVER_SURVIVOR;
	m->consent.date = "2025-03-01";
	m->consent_agencies[0] = (char *)recipient;
	m->consent.n_agencies = 1;
	m->consent.agencies = m->consent_agencies;
	m->consent_data[0] = CAT(NEEDS); /* services are needs */
	m->consent.n_data_covered = 1;
	m->consent.data_covered = m->consent_data;
	m->ref.consent = &m->consent;
}

/* A successful outcome of `rid` (not attached to anything yet). */
static void
outcome_init(struct msg *m, const char *rid, int success)
{
	ihala__v2__outcome__init(&m->outcome);
	m->outcome.referral_id = (char *)rid;
	m->outcome.service_implemented = 1; /* its date and notes are sealed */
	m->outcome.success = success;
	if (!success) {
		m->reasons[0] = IHALA__V2__REASON_CODE__REASON_CODE_CLIENT_DID_NOT_ATTEND;
		m->outcome.n_not_successful_reasons = 1;
		m->outcome.not_successful_reasons = m->reasons;
	}
}

static void
msg_status(struct msg *m, const char *rid, Ihala__V2__TaskStatus status,
           Ihala__V2__ReasonCode reason, int with_outcome)
{
	msg_init(m);
	ihala__v2__status_update__init(&m->su);
	m->env.kind_case = IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE;
	m->env.status_update = &m->su;
	m->su.referral_id = (char *)rid;
	m->su.status = status;
	m->su.reason_code = reason;
	if (with_outcome) {
		outcome_init(m, rid, status != S(FAILED));
		m->su.outcome = &m->outcome;
	}
}

static void
msg_outcome(struct msg *m, const char *rid, int success)
{
	msg_init(m);
	outcome_init(m, rid, success);
	m->env.kind_case = IHALA__V2__ENVELOPE__KIND_OUTCOME;
	m->env.outcome = &m->outcome;
}

static void
msg_note(struct msg *m, const char *rid)
{
	msg_init(m);
	ihala__v2__note__init(&m->note);
	m->env.kind_case = IHALA__V2__ENVELOPE__KIND_NOTE;
	m->env.note = &m->note;
	m->note.referral_id = (char *)rid; /* its text is sealed */
}

/* The consent scope every state made here records: moh and hi; identity, location, needs. */
static const char *const state_agencies[] = {"moh", "hi"};
static const Ihala__V2__DataCategory state_data[] = {CAT(IDENTITY), CAT(LOCATION), CAT(NEEDS)};

static void
state_init(Ihala__V2__ReferralState *st, const char *rid, const char *referrer,
           const char *recipient, Ihala__V2__TaskStatus status)
{
	ihala__v2__referral_state__init(st);
	st->referral_id = (char *)rid;
	st->referrer = (char *)referrer;
	st->recipient = (char *)recipient;
	st->status = status;
	st->priority = IHALA__V2__PRIORITY__PRIORITY_URGENT;
	st->n_consent_agencies = sizeof(state_agencies) / sizeof(state_agencies[0]);
	st->consent_agencies = (char **)state_agencies;
	st->n_consent_data = sizeof(state_data) / sizeof(state_data[0]);
	st->consent_data = (Ihala__V2__DataCategory *)state_data;
}

/* Assert a refusal with code `want`, mirrored in d.err, with a sentence for people. */
#define assert_refused(got, d, want)                                                               \
	do {                                                                                       \
		int got_ = (got);                                                                  \
		assert_int_equal(got_, (want));                                                    \
		assert_int_equal((d).err, (want));                                                 \
		assert_true((d).text[0] != '\0');                                                  \
	} while (0)

#define assert_allowed(got, d)                                                                     \
	do {                                                                                       \
		int got_ = (got);                                                                  \
		if (got_ != 0) {                                                                   \
			fail_msg("refused (%d): %s", got_, (d).text);                              \
		}                                                                                  \
		assert_int_equal((d).err, 0);                                                      \
	} while (0)

/* A referral r-1 from dma to moh in status `status`. */
#define CUR(st, status) state_init(&(st), "r-1", "dma", "moh", (status))

/* ------------------------------------------------------------------------------------------ */
/* Sender and envelope checks                                                                  */

static void
test_unknown_sender(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_referral(&m, "ghost", "moh", "r-1");
	assert_refused(policy_check(&w.view, "ghost", &m.env, NULL, NULL, &d), d,
	               IHALA_EUNKNOWNAGENCY);
}

static void
test_auditor_referral_readonly(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_referral(&m, "auditor", "moh", "r-1");
	assert_refused(policy_check(&w.view, "auditor", &m.env, NULL, NULL, &d), d,
	               IHALA_EREADONLY);
}

static void
test_auditor_status_readonly(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(REQUESTED));
	msg_status(&m, "r-1", S(CANCELLED), IHALA__V2__REASON_CODE__REASON_CODE_OTHER, 0);
	assert_refused(policy_check(&w.view, "auditor", &m.env, &cur, NULL, &d), d,
	               IHALA_EREADONLY);
}

static void
test_auditor_outcome_readonly(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(ACCEPTED));
	msg_outcome(&m, "r-1", 1);
	assert_refused(policy_check(&w.view, "auditor", &m.env, &cur, NULL, &d), d,
	               IHALA_EREADONLY);
}

static void
test_auditor_note_readonly(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(ACCEPTED));
	msg_note(&m, "r-1");
	assert_refused(policy_check(&w.view, "auditor", &m.env, &cur, NULL, &d), d,
	               IHALA_EREADONLY);
}

static void
test_from_spoofed(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_referral(&m, "dma", "moh", "r-1");
	m.env.from = "molsa";
	assert_refused(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d, IHALA_EFROM);
}

static void
test_from_matching_ok(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_referral(&m, "dma", "moh", "r-1");
	m.env.from = "dma";
	assert_allowed(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d);
}

static void
test_referring_agency_spoofed(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_referral(&m, "dma", "moh", "r-1");
	m.ref.referring_agency = "molsa";
	assert_refused(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d, IHALA_EFROM);
}

static void
test_message_id_empty(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_referral(&m, "dma", "moh", "r-1");
	m.env.message_id = "";
	assert_refused(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d, IHALA_ESCHEMA);
}

static void
test_message_id_65_chars(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	char id[66];

	(void)state;
	world_init(&w);
	msg_referral(&m, "dma", "moh", "r-1");
	memset(id, 'a', 65);
	id[65] = '\0';
	m.env.message_id = id;
	assert_refused(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d, IHALA_ESCHEMA);
}

static void
test_message_id_64_chars_ok(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	char id[65];

	(void)state;
	world_init(&w);
	msg_referral(&m, "dma", "moh", "r-1");
	memset(id, 'a', 64);
	id[64] = '\0';
	m.env.message_id = id;
	assert_allowed(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d);
}

static void
test_message_id_with_space(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_referral(&m, "dma", "moh", "r-1");
	m.env.message_id = "msg 0001";
	assert_refused(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d, IHALA_ESCHEMA);
}

/* Envelope.clerk_id: the pseudonymous clerk who acted; empty, or a-z 0-9 _ - up to 32. */
static void
test_clerk_id_ok(void **state)
{
	static const char *const good[] = {"local", "c-8f3a09b2c4d5e6f7", "a",
	                                   "abcdefghijklmnopqrstuvwxyz_01234"};
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;
	size_t i;

	(void)state;
	world_init(&w);
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		msg_referral(&m, "dma", "moh", "r-1");
		m.env.clerk_id = (char *)good[i];
		assert_allowed(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d);
		CUR(cur, S(RECEIVED));
		msg_status(&m, "r-1", S(ACCEPTED), 0, 0);
		m.env.clerk_id = (char *)good[i];
		assert_allowed(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d);
	}
}

static void
test_clerk_id_refused(void **state)
{
	/* a name (capitals, a space, Arabic), 33 characters, markup, a control character */
	static const char *const bad[] = {
	    "Layla Saeed", "layla.saeed", "نور", "abcdefghijklmnopqrstuvwxyz_012345",
	    "<b>",         "c\n1",        "C-1"};
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;
	size_t i;

	(void)state;
	world_init(&w);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		msg_referral(&m, "dma", "moh", "r-1");
		m.env.clerk_id = (char *)bad[i];
		assert_refused(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d,
		               IHALA_ESCHEMA);
		assert_non_null(strstr(d.text, "clerk_id"));
		CUR(cur, S(RECEIVED));
		msg_status(&m, "r-1", S(ACCEPTED), 0, 0);
		m.env.clerk_id = (char *)bad[i];
		assert_refused(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d,
		               IHALA_ESCHEMA);
	}
}

static void
test_envelope_no_kind(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_init(&m);
	m.env.to = "moh";
	assert_refused(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d, IHALA_ESCHEMA);
}

/* ------------------------------------------------------------------------------------------ */
/* New referrals                                                                               */

static void
test_referral_ok(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_referral(&m, "dma", "moh", "r-1");
	assert_allowed(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d);
	assert_int_equal(d.kind, POLICY_KIND_REFERRAL);
	assert_string_equal(d.recipient, "moh");
	assert_int_equal(d.new_status, S(REQUESTED));
}

static void
test_referral_no_consent(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_referral(&m, "dma", "moh", "r-1");
	m.ref.consent = NULL;
	assert_refused(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d, IHALA_ECONSENT);
}

static void
test_referral_consent_not_given(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_referral(&m, "dma", "moh", "r-1");
	m.consent.given = 0;
	assert_refused(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d, IHALA_ECONSENT);
}

static void
test_referral_consent_not_covering_recipient(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_referral(&m, "dma", "moh", "r-1");
	m.consent_agencies[0] = "molsa";
	m.consent_agencies[1] = "hi";
	m.consent.n_agencies = 2;
	assert_refused(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d, IHALA_ECONSENT);
}

static void
test_referral_unknown_recipient(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_referral(&m, "dma", "mod", "r-1");
	assert_refused(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d, IHALA_ERECIPIENT);
}

static void
test_referral_to_itself(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_referral(&m, "dma", "dma", "r-1");
	assert_refused(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d, IHALA_EFORBIDDEN);
}

static void
test_referral_to_auditor(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_referral(&m, "dma", "auditor", "r-1");
	assert_refused(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d, IHALA_EFORBIDDEN);
}

static void
test_referral_to_differs_from_receiving_agency(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_referral(&m, "dma", "moh", "r-1");
	m.ref.receiving_agency = "molsa";
	m.consent_agencies[1] = "molsa";
	m.consent.n_agencies = 2;
	assert_refused(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d, IHALA_ESCHEMA);
}

static void
test_referral_no_priority(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_referral(&m, "dma", "moh", "r-1");
	m.ref.priority = IHALA__V2__PRIORITY__PRIORITY_UNSPECIFIED;
	assert_refused(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d, IHALA_ESCHEMA);
}

static void
test_referral_no_services(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_referral(&m, "dma", "moh", "r-1");
	m.ref.n_services = 0;
	m.ref.services = NULL;
	assert_refused(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d, IHALA_ESCHEMA);
}

/* Repeated fields are bounded: a huge list is refused TOO_LARGE, naming the field; the bound
 * itself is accepted. */
static void
test_referral_huge_repeated(void **state)
{
	static Ihala__V2__ServiceCode many[10000];
	static char *agencies[65];
	struct world w;
	struct msg m;
	struct policy_decision d;
	size_t i;

	(void)state;
	for (i = 0; i < 10000; i++) {
		many[i] = IHALA__V2__SERVICE_CODE__SERVICE_CODE_LEGAL;
	}
	world_init(&w);
	msg_referral(&m, "dma", "moh", "r-1");
	m.ref.n_services = 10000;
	m.ref.services = many;
	assert_refused(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d, IHALA_ETOOLARGE);
	assert_non_null(strstr(d.text, "referral.services"));
	m.ref.n_services = 32;
	assert_int_equal(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), 0);

	msg_referral(&m, "dma", "moh", "r-1");
	for (i = 0; i < 65; i++) {
		agencies[i] = "moh";
	}
	m.ref.consent->n_agencies = 65;
	m.ref.consent->agencies = agencies;
	assert_refused(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d, IHALA_ETOOLARGE);
	assert_non_null(strstr(d.text, "consent.agencies"));
}

/* The survivor is sealed (docs/SEALING.md): a referral without one in clear is complete. */
static void
test_referral_no_survivor(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_referral(&m, "dma", "moh", "r-1");
	assert_null(m.ref.survivor);
	assert_allowed(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d);
}

static void
test_referral_exists(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(REQUESTED));
	msg_referral(&m, "dma", "moh", "r-1");
	assert_refused(policy_check(&w.view, "dma", &m.env, &cur, NULL, &d), d, IHALA_EREFEXISTS);
}

static void
test_ministry_new_case_forbidden(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_referral(&m, "moh", "hi", "r-2");
	assert_refused(policy_check(&w.view, "moh", &m.env, NULL, NULL, &d), d, IHALA_EFORBIDDEN);
}

static void
test_ministry_new_case_allowed_when_configured(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	w.agencies[A_MOH].may_open_cases = 1;
	msg_referral(&m, "moh", "hi", "r-2");
	assert_allowed(policy_check(&w.view, "moh", &m.env, NULL, NULL, &d), d);
	assert_string_equal(d.recipient, "hi");
	assert_int_equal(d.new_status, S(REQUESTED));
}

/* moh refers r-2 onward to hi; its parent r-1 (dma -> moh) is in `parent_status`. */
static int
onward(const char *sender, Ihala__V2__TaskStatus parent_status, int parent_exists,
       struct policy_decision *d)
{
	struct world w;
	struct msg m;
	Ihala__V2__ReferralState parent;

	world_init(&w);
	CUR(parent, parent_status);
	msg_referral(&m, sender, "hi", "r-2");
	m.ref.parent_referral_id = "r-1";
	return policy_check(&w.view, sender, &m.env, NULL, parent_exists ? &parent : NULL, d);
}

static void
test_onward_parent_accepted_ok(void **state)
{
	struct policy_decision d;

	(void)state;
	assert_allowed(onward("moh", S(ACCEPTED), 1, &d), d);
	assert_string_equal(d.recipient, "hi");
	assert_int_equal(d.new_status, S(REQUESTED));
}

static void
test_onward_parent_in_progress_ok(void **state)
{
	struct policy_decision d;

	(void)state;
	assert_allowed(onward("moh", S(IN_PROGRESS), 1, &d), d);
	assert_string_equal(d.recipient, "hi");
	assert_int_equal(d.new_status, S(REQUESTED));
}

static void
test_onward_parent_requested_refused(void **state)
{
	struct policy_decision d;

	(void)state;
	assert_refused(onward("moh", S(REQUESTED), 1, &d), d, IHALA_EPARENT);
}

static void
test_onward_parent_completed_refused(void **state)
{
	struct policy_decision d;

	(void)state;
	assert_refused(onward("moh", S(COMPLETED), 1, &d), d, IHALA_EPARENT);
}

static void
test_onward_not_parent_recipient(void **state)
{
	struct policy_decision d;

	(void)state;
	/* molsa is no party to r-1: told what a sender is told of a parent that does not exist */
	assert_refused(onward("molsa", S(ACCEPTED), 1, &d), d, IHALA_ENOREFERRAL);
	assert_string_equal(d.text, "no parent referral 'r-1' that agency 'molsa' is a party to");
}

static void
test_onward_by_parent_referrer(void **state)
{
	struct policy_decision d;

	(void)state;
	assert_refused(onward("dma", S(ACCEPTED), 1, &d), d, IHALA_EPARENT);
}

static void
test_onward_parent_missing(void **state)
{
	struct policy_decision d;

	(void)state;
	assert_refused(onward("moh", S(ACCEPTED), 0, &d), d, IHALA_ENOREFERRAL);
	assert_string_equal(d.text, "no parent referral 'r-1' that agency 'moh' is a party to");
}

/* moh refers r-2 onward (parent r-1 accepted, consent scope of state_init) to `to`, with a
 * consent covering `agencies` and `cats`. */
static int
onward_consent(const char *to, const char *const *agencies, size_t n_agencies,
               const Ihala__V2__DataCategory *cats, size_t n_cats, struct policy_decision *d)
{
	struct world w;
	struct msg m;
	Ihala__V2__ReferralState parent;
	size_t i;

	world_init(&w);
	CUR(parent, S(ACCEPTED));
	msg_referral(&m, "moh", to, "r-2");
	m.ref.parent_referral_id = "r-1";
	for (i = 0; i < n_agencies; i++) {
		m.consent_agencies[i] = (char *)agencies[i];
	}
	m.consent.n_agencies = n_agencies;
	for (i = 0; i < n_cats; i++) {
		m.consent_data[i] = cats[i];
	}
	m.consent.n_data_covered = n_cats;
	return policy_check(&w.view, "moh", &m.env, NULL, &parent, d);
}

/* The case: the parent's consent covered moh and hi, the onward one says molsa. */
static void
test_onward_consent_agency_outside_parent(void **state)
{
	static const char *const ag[] = {"molsa"};
	static const Ihala__V2__DataCategory cats[] = {CAT(NEEDS)};
	struct policy_decision d;

	(void)state;
	assert_refused(onward_consent("molsa", ag, 1, cats, 1, &d), d, IHALA_ECONSENT);
	assert_string_equal(d.text, "the parent referral's consent does not cover agency 'molsa'");
}

static void
test_onward_consent_category_outside_parent(void **state)
{
	static const char *const ag[] = {"hi"};
	static const Ihala__V2__DataCategory cats[] = {CAT(NEEDS), CAT(IDENTITY), CAT(INJURY)};
	struct policy_decision d;

	(void)state;
	assert_refused(onward_consent("hi", ag, 1, cats, 3, &d), d, IHALA_ECONSENT);
	assert_string_equal(d.text,
	                    "the parent referral's consent does not cover data category INJURY");
}

/* Every missing agency and category is named, once, in the consent's order (UNSPECIFIED
 * covers nothing and is never missing). */
static void
test_onward_consent_names_all_missing(void **state)
{
	static const char *const ag[] = {"hi", "molsa", "dma", "molsa"};
	static const Ihala__V2__DataCategory cats[] = {CAT(CONTACT), CAT(NEEDS), CAT(UNSPECIFIED),
	                                               CAT(INJURY), CAT(CONTACT)};
	struct policy_decision d;

	(void)state;
	assert_refused(onward_consent("hi", ag, 4, cats, 5, &d), d, IHALA_ECONSENT);
	assert_string_equal(d.text, "the parent referral's consent does not cover agency 'molsa', "
	                            "agency 'dma', data category CONTACT, data category INJURY");
}

static void
test_onward_consent_within_parent_ok(void **state)
{
	static const char *const ag[] = {"hi", "moh"};
	static const Ihala__V2__DataCategory cats[] = {CAT(NEEDS), CAT(IDENTITY), CAT(LOCATION)};
	struct policy_decision d;

	(void)state;
	assert_allowed(onward_consent("hi", ag, 2, cats, 3, &d), d);
	assert_allowed(onward_consent("hi", ag, 1, cats, 1, &d), d);
}

/* A parent without a recorded scope (nothing covered) lets nothing onward. */
static void
test_onward_consent_parent_without_scope(void **state)
{
	static const char *const ag[] = {"hi"};
	static const Ihala__V2__DataCategory cats[] = {CAT(NEEDS)};
	struct world w;
	struct msg m;
	Ihala__V2__ReferralState parent;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	CUR(parent, S(ACCEPTED));
	parent.n_consent_agencies = 0;
	parent.n_consent_data = 0;
	msg_referral(&m, "moh", "hi", "r-2");
	m.ref.parent_referral_id = "r-1";
	m.consent_agencies[0] = (char *)ag[0];
	m.consent_data[0] = cats[0];
	assert_refused(policy_check(&w.view, "moh", &m.env, NULL, &parent, &d), d, IHALA_ECONSENT);
	assert_string_equal(
	    d.text,
	    "the parent referral's consent does not cover agency 'hi', data category NEEDS");
}

/* ------------------------------------------------------------------------------------------ */
/* Data categories: the table of proto/consent.c, checked against one written here by hand     */

/* Sets one personal field of m's referral; the field's name as the refusal says it. */
struct field_case {
	const char *name;
	Ihala__V2__DataCategory category;
	void (*set)(struct msg *m);
};

static Ihala__V2__WashingtonGroup wg_answers = IHALA__V2__WASHINGTON_GROUP__INIT;
static Ihala__V2__Injury injury_details = IHALA__V2__INJURY__INIT;

static void
set_name(struct msg *m)
{
	m->surv.name = "نور الهدى خلف حسن";
}
static void
set_sex(struct msg *m)
{
	m->surv.sex = IHALA__V2__SEX__SEX_FEMALE;
}
static void
set_birth_year(struct msg *m)
{
	m->surv.birth_year = 1996;
}
static void
set_governorate(struct msg *m)
{
	m->surv.governorate = "Ninewa";
}
static void
set_district(struct msg *m)
{
	m->surv.district = "Sinjar";
}
static void
set_displacement(struct msg *m)
{
	m->surv.displacement = IHALA__V2__DISPLACEMENT__DISPLACEMENT_IDP;
}
static void
set_functioning(struct msg *m)
{
	m->surv.functioning = &wg_answers;
}
static void
set_injury(struct msg *m)
{
	m->surv.injury = &injury_details;
}
static void
set_reason(struct msg *m)
{
	m->ref.reason = "needs a prosthesis";
}
static void
set_notes(struct msg *m)
{
	m->ref.notes = "call in the morning";
}

static const struct field_case field_cases[] = {
    {"survivor.name", CAT(IDENTITY), set_name},
    {"survivor.sex", CAT(DEMOGRAPHICS), set_sex},
    {"survivor.birth_year", CAT(DEMOGRAPHICS), set_birth_year},
    {"survivor.governorate", CAT(LOCATION), set_governorate},
    {"survivor.district", CAT(LOCATION), set_district},
    {"survivor.displacement", CAT(DISPLACEMENT), set_displacement},
    {"survivor.functioning", CAT(FUNCTIONING), set_functioning},
    {"survivor.injury", CAT(INJURY), set_injury},
    {"reason", CAT(NEEDS), set_reason},
    {"notes", CAT(NEEDS), set_notes},
};

static const char *const cat_names[] = {"UNSPECIFIED",  "IDENTITY", "CONTACT",
                                        "DEMOGRAPHICS", "LOCATION", "DISPLACEMENT",
                                        "FUNCTIONING",  "INJURY",   "NEEDS"};

static uint8_t fake_sha[32] = {1, 2, 3};

/* The message has a sealed part declaring categories cats[0..n). */
static void
declare(struct msg *m, const Ihala__V2__DataCategory *cats, size_t n)
{
	m->env.sealed_sha256.data = fake_sha;
	m->env.sealed_sha256.len = sizeof(fake_sha);
	m->env.data_declared = (Ihala__V2__DataCategory *)cats;
	m->env.n_data_declared = n;
}

/* One check: the world, a message, the decision, and the state of r-1 (dma to moh) that the
 * message is checked against (`state`: NULL for a new referral). */
struct fixture {
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;
	const Ihala__V2__ReferralState *state;
};

/* A new referral r-1 from dma to moh, in clear alone (cats NULL) or with a sealed part
 * declaring cats[0..n). */
static void
fx_referral(struct fixture *f, const Ihala__V2__DataCategory *cats, size_t n)
{
	world_init(&f->w);
	msg_referral(&f->m, "dma", "moh", "r-1");
	if (cats != NULL) {
		declare(&f->m, cats, n);
	}
	f->state = NULL;
}

/* r-1 (dma to moh) in `status`; the message, a note on it, in clear alone or sealed as
 * fx_referral's. */
static void
fx_update(struct fixture *f, Ihala__V2__TaskStatus status, const Ihala__V2__DataCategory *cats,
          size_t n)
{
	world_init(&f->w);
	CUR(f->cur, status);
	msg_note(&f->m, "r-1");
	if (cats != NULL) {
		declare(&f->m, cats, n);
	}
	f->state = &f->cur;
}

/* policy_check of f's message sent by `sender`, against f's state. */
static int
fx_check(struct fixture *f, const char *sender)
{
	return policy_check(&f->w.view, sender, &f->m.env, f->state, NULL, &f->d);
}

/* Each category declared alone, with a consent covering every category but it: refused,
 * naming the category; with it added: allowed. */
static void
test_declared_categories(void **state)
{
	size_t j;
	Ihala__V2__DataCategory c;

	(void)state;
	for (c = CAT(IDENTITY); c <= CAT(NEEDS); c++) {
		struct fixture f;
		char want[160];
		size_t n = 0;

		fx_referral(&f, &c, 1);
		f.m.consent_data[n++] = CAT(NEEDS); /* the services in clear */
		for (j = 1; j < 8; j++) {
			if (j != (size_t)c) {
				f.m.consent_data[n++] = (Ihala__V2__DataCategory)j;
			}
		}
		f.m.consent.n_data_covered = n;
		if (c != CAT(NEEDS)) {
			snprintf(want, sizeof(want),
			         "the consent does not cover %s, which the sealed part declares",
			         cat_names[c]);
			assert_refused(fx_check(&f, "dma"), f.d, IHALA_ECONSENT);
			assert_string_equal(f.d.text, want);
			f.m.consent_data[n++] = c;
			f.m.consent.n_data_covered = n;
		}
		assert_allowed(fx_check(&f, "dma"), f.d);
	}
}

/* The case: a consent covering only needs, and a sealed part declaring identity. */
static void
test_consent_needs_only_refuses_identity(void **state)
{
	static const Ihala__V2__DataCategory needs[] = {CAT(NEEDS)};
	static const Ihala__V2__DataCategory both[] = {CAT(NEEDS), CAT(IDENTITY)};
	struct fixture f;

	(void)state;
	fx_referral(&f, needs, 1);
	assert_allowed(fx_check(&f, "dma"), f.d);
	declare(&f.m, both, 2);
	assert_refused(fx_check(&f, "dma"), f.d, IHALA_ECONSENT);
	assert_string_equal(f.d.text,
	                    "the consent does not cover IDENTITY, which the sealed part declares");
}

/* Declared categories that are no category, too many, or without a sealed part. */
static void
test_declared_malformed(void **state)
{
	static const Ihala__V2__DataCategory unspec[] = {CAT(NEEDS), CAT(UNSPECIFIED)};
	static const Ihala__V2__DataCategory unknown[] = {(Ihala__V2__DataCategory)99};
	static Ihala__V2__DataCategory many[65];
	struct fixture f;
	size_t i;

	(void)state;
	fx_referral(&f, unspec, 2);
	assert_refused(fx_check(&f, "dma"), f.d, IHALA_ESCHEMA);
	assert_non_null(strstr(f.d.text, "unspecified"));
	declare(&f.m, unknown, 1);
	assert_refused(fx_check(&f, "dma"), f.d, IHALA_ESCHEMA);
	assert_non_null(strstr(f.d.text, "unknown category 99"));
	for (i = 0; i < 65; i++) {
		many[i] = CAT(NEEDS);
	}
	declare(&f.m, many, 65);
	assert_refused(fx_check(&f, "dma"), f.d, IHALA_ETOOLARGE);
	assert_non_null(strstr(f.d.text, "data_declared"));
	/* declared, but no sealed part */
	declare(&f.m, many, 1);
	f.m.env.sealed_sha256.len = 0;
	assert_refused(fx_check(&f, "dma"), f.d, IHALA_ESCHEMA);
	assert_non_null(strstr(f.d.text, "no sealed part"));
}

/* An update declares within the scope recorded with its referral (identity, location, needs):
 * a note declaring injury is refused, one declaring needs passes. */
static void
test_declared_update_within_scope(void **state)
{
	static const Ihala__V2__DataCategory injury[] = {CAT(INJURY)};
	static const Ihala__V2__DataCategory needs[] = {CAT(NEEDS)};
	struct fixture f;

	(void)state;
	fx_update(&f, S(ACCEPTED), needs, 1);
	assert_allowed(fx_check(&f, "moh"), f.d);
	declare(&f.m, injury, 1);
	assert_refused(fx_check(&f, "moh"), f.d, IHALA_ECONSENT);
	assert_string_equal(f.d.text,
	                    "the consent does not cover INJURY, which the sealed part declares");
	msg_status(&f.m, "r-1", S(IN_PROGRESS), 0, 0);
	declare(&f.m, injury, 1);
	assert_refused(fx_check(&f, "moh"), f.d, IHALA_ECONSENT);
}

/* A consent that covers no category lets no referral through: its services are needs. */
static void
test_consent_no_categories(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_referral(&m, "dma", "moh", "r-1");
	m.consent.n_data_covered = 0;
	assert_refused(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d, IHALA_ECONSENT);
	assert_string_equal(d.text, "the consent does not cover NEEDS, which services is");
}

/* The module's table against the hand-written one, and its names. */
static void
test_consent_table(void **state)
{
	size_t i, j, found;

	(void)state;
	for (i = 0; i < sizeof(cat_names) / sizeof(cat_names[0]); i++) {
		assert_string_equal(consent_category_name((Ihala__V2__DataCategory)i),
		                    cat_names[i]);
	}
	assert_string_equal(consent_category_name((Ihala__V2__DataCategory)99), "UNKNOWN");
	/* every row here is in the table with the same category, and the table has only these
	 * and services */
	assert_int_equal(consent_n_fields, sizeof(field_cases) / sizeof(field_cases[0]) + 1);
	for (i = 0; i < sizeof(field_cases) / sizeof(field_cases[0]); i++) {
		for (j = 0, found = 0; j < consent_n_fields; j++) {
			if (strcmp(consent_fields[j].name, field_cases[i].name) == 0) {
				assert_int_equal(consent_fields[j].category,
				                 field_cases[i].category);
				found++;
			}
		}
		assert_int_equal(found, 1);
	}
	for (j = 0, found = 0; j < consent_n_fields; j++) {
		if (strcmp(consent_fields[j].name, "services") == 0) {
			assert_int_equal(consent_fields[j].category, CAT(NEEDS));
			found++;
		}
	}
	assert_int_equal(found, 1);
}

/* consent_uncovered alone: no consent covers nothing; case_id alone needs no category. */
static void
test_consent_uncovered(void **state)
{
	Ihala__V2__Referral r = IHALA__V2__REFERRAL__INIT;
	Ihala__V2__Survivor sv = IHALA__V2__SURVIVOR__INIT;
	Ihala__V2__Consent c = IHALA__V2__CONSENT__INIT;
	Ihala__V2__DataCategory cats[] = {CAT(IDENTITY)};
	const struct consent_field *f;

	(void)state;
	assert_null(consent_uncovered(&r));
	sv.case_id = "IQ-1";
	r.survivor = &sv;
	assert_null(consent_uncovered(&r));
	sv.name = "x";
	f = consent_uncovered(&r);
	assert_non_null(f);
	assert_string_equal(f->name, "survivor.name");
	r.consent = &c;
	c.n_data_covered = 1;
	c.data_covered = cats;
	assert_null(consent_uncovered(&r));
	assert_true(consent_covers_category(&c, CAT(IDENTITY)));
	assert_false(consent_covers_category(&c, CAT(CONTACT)));
	assert_false(consent_covers_category(NULL, CAT(IDENTITY)));
	assert_false(consent_covers_agency(&c, "moh"));
}

/* Each personal field or free text in a clear part (docs/SEALING.md's table): refused with
 * SCHEMA, naming the field; without it, the same message passes. */
static void
test_clear_personal_fields(void **state)
{
	static Ihala__V2__Contact officer = IHALA__V2__CONTACT__INIT;
	static const char *const want[] = {
	    "referral.survivor",
	    "referral.survivor", /* case_id alone is sealed too */
	    "referral.reason",
	    "referral.referring_officer",
	    "referral.notes",
	    "status_update.business_status",
	    "status_update.reason",
	    "status_update.note",
	    "status_update.outcome.date",
	    "status_update.outcome.notes",
	    "outcome.date",
	    "outcome.notes",
	    "note.text",
	};
	char text[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct fixture f;
		struct msg *m = &f.m;
		const char *sender = "moh";

		if (i < 5) {
			fx_referral(&f, NULL, 0);
			sender = "dma";
		} else {
			fx_update(&f, S(IN_PROGRESS), NULL, 0);
		}
		if (i >= 5 && i < 10) {
			msg_status(m, "r-1", S(COMPLETED), 0, 1);
		} else if (i >= 10 && i < 12) {
			msg_outcome(m, "r-1", 1);
		}
		assert_allowed(fx_check(&f, sender), f.d);
		switch (i) {
		case 0:
			set_name(m);
			m->ref.survivor = &m->surv;
			break;
		case 1:
			m->ref.survivor = &m->surv; /* case_id only */
			break;
		case 2:
			m->ref.reason = "x";
			break;
		case 3:
			m->ref.referring_officer = &officer;
			break;
		case 4:
			m->ref.notes = "x";
			break;
		case 5:
			m->su.business_status = "device fitted";
			break;
		case 6:
			m->su.reason = "x";
			break;
		case 7:
			m->su.note = "x";
			break;
		case 8:
		case 10:
			m->outcome.date = "2025-04-02";
			break;
		case 9:
		case 11:
			m->outcome.notes = "x";
			break;
		default:
			m->note.text = "call after 4 pm";
			break;
		}
		snprintf(text, sizeof(text), "%s must be sealed (docs/SEALING.md)", want[i]);
		assert_refused(fx_check(&f, sender), f.d, IHALA_ESCHEMA);
		assert_string_equal(f.d.text, text);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Status updates                                                                              */

static void
test_status_missing_referral(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	msg_status(&m, "r-1", S(ACCEPTED), 0, 0);
	assert_refused(policy_check(&w.view, "moh", &m.env, NULL, NULL, &d), d, IHALA_ENOREFERRAL);
}

static void
test_status_bad_referral_id(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(REQUESTED));
	msg_status(&m, "", S(ACCEPTED), 0, 0);
	assert_refused(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d, IHALA_ESCHEMA);
}

static void
test_status_ngo_not_party(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(IN_PROGRESS));
	msg_status(&m, "r-1", S(COMPLETED), 0, 1);
	assert_refused(policy_check(&w.view, "hi", &m.env, &cur, NULL, &d), d, IHALA_ENOREFERRAL);
}

/* A stranger gets the same code and words for a referral that exists and one that does not. */
static void
test_nonparty_same_as_unknown(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d1, d2;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(IN_PROGRESS));
	msg_status(&m, "r-1", S(COMPLETED), 0, 1);
	assert_refused(policy_check(&w.view, "hi", &m.env, &cur, NULL, &d1), d1, IHALA_ENOREFERRAL);
	assert_refused(policy_check(&w.view, "hi", &m.env, NULL, NULL, &d2), d2, IHALA_ENOREFERRAL);
	assert_string_equal(d1.text, d2.text);
}

/* May it open a case at all comes before whether the id is taken: an NGO is not told. */
static void
test_forbidden_before_exists(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(REQUESTED));
	msg_referral(&m, "hi", "moh", "r-1");
	assert_refused(policy_check(&w.view, "hi", &m.env, &cur, NULL, &d), d, IHALA_EFORBIDDEN);
}

static void
test_status_dma_accepts_own(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(REQUESTED));
	msg_status(&m, "r-1", S(ACCEPTED), 0, 0);
	assert_refused(policy_check(&w.view, "dma", &m.env, &cur, NULL, &d), d, IHALA_ETRANSITION);
}

static void
test_status_recipient_accepts(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(REQUESTED));
	msg_status(&m, "r-1", S(ACCEPTED), 0, 0);
	assert_allowed(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d);
	assert_int_equal(d.kind, POLICY_KIND_STATUS);
	assert_string_equal(d.recipient, "dma");
	assert_int_equal(d.new_status, S(ACCEPTED));
}

static void
test_status_completed_without_outcome(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(IN_PROGRESS));
	msg_status(&m, "r-1", S(COMPLETED), 0, 0);
	assert_refused(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d, IHALA_EOUTCOME);
}

static void
test_status_completed_with_outcome(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(IN_PROGRESS));
	msg_status(&m, "r-1", S(COMPLETED), 0, 1);
	assert_allowed(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d);
	assert_string_equal(d.recipient, "dma");
	assert_int_equal(d.new_status, S(COMPLETED));
}

static void
test_status_failed_with_outcome(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(ACCEPTED));
	msg_status(&m, "r-1", S(FAILED), IHALA__V2__REASON_CODE__REASON_CODE_CLIENT_UNREACHABLE, 1);
	assert_allowed(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d);
	assert_int_equal(d.new_status, S(FAILED));
}

static void
test_status_outcome_with_other_status(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(ACCEPTED));
	msg_status(&m, "r-1", S(IN_PROGRESS), 0, 1);
	assert_refused(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d, IHALA_ESCHEMA);
}

static void
test_outcome_naming_other_referral(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(IN_PROGRESS));
	msg_status(&m, "r-1", S(COMPLETED), 0, 1);
	m.outcome.referral_id = "r-9";
	assert_refused(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d, IHALA_ESCHEMA);
}

static void
test_status_declined_without_reason(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(RECEIVED));
	msg_status(&m, "r-1", S(DECLINED), IHALA__V2__REASON_CODE__REASON_CODE_UNSPECIFIED, 0);
	assert_refused(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d, IHALA_ESCHEMA);
}

static void
test_status_declined_with_reason(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(RECEIVED));
	msg_status(&m, "r-1", S(DECLINED), IHALA__V2__REASON_CODE__REASON_CODE_OUT_OF_AREA, 0);
	assert_allowed(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d);
	assert_int_equal(d.new_status, S(DECLINED));
	assert_string_equal(d.recipient, "dma");
}

static void
test_status_cancel_without_reason(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(REQUESTED));
	msg_status(&m, "r-1", S(CANCELLED), IHALA__V2__REASON_CODE__REASON_CODE_UNSPECIFIED, 0);
	assert_refused(policy_check(&w.view, "dma", &m.env, &cur, NULL, &d), d, IHALA_ESCHEMA);
}

static void
test_status_recipient_cancels(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(ACCEPTED));
	msg_status(&m, "r-1", S(CANCELLED), IHALA__V2__REASON_CODE__REASON_CODE_OTHER, 0);
	assert_refused(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d, IHALA_ETRANSITION);
}

static void
test_status_wrong_to(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(REQUESTED));
	msg_status(&m, "r-1", S(ACCEPTED), 0, 0);
	m.env.to = "molsa";
	assert_refused(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d, IHALA_ESCHEMA);
}

static void
test_status_right_to_ok(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(REQUESTED));
	msg_status(&m, "r-1", S(ACCEPTED), 0, 0);
	m.env.to = "dma";
	assert_allowed(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d);
}

/* The cell's `from` is the current status; dma cancels with a reason. */
static void
test_cancel_from(void **state)
{
	const struct cell *c = *state;
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;
	int err;

	world_init(&w);
	CUR(cur, c->from);
	msg_status(&m, "r-1", S(CANCELLED), IHALA__V2__REASON_CODE__REASON_CODE_ENTERED_IN_ERROR,
	           0);
	err = policy_check(&w.view, "dma", &m.env, &cur, NULL, &d);
	if (c->expected == 0) {
		assert_allowed(err, d);
		assert_string_equal(d.recipient, "moh");
		assert_int_equal(d.new_status, S(CANCELLED));
	} else {
		assert_refused(err, d, c->expected);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Outcomes and notes                                                                          */

static void
test_outcome_ok(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(COMPLETED));
	msg_outcome(&m, "r-1", 1);
	assert_allowed(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d);
	assert_int_equal(d.kind, POLICY_KIND_OUTCOME);
	assert_string_equal(d.recipient, "dma");
	assert_int_equal(d.new_status, S(UNSPECIFIED));
}

static void
test_outcome_before_acceptance_requested(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(REQUESTED));
	msg_outcome(&m, "r-1", 1);
	assert_refused(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d, IHALA_ETRANSITION);
}

static void
test_outcome_before_acceptance_received(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(RECEIVED));
	msg_outcome(&m, "r-1", 1);
	assert_refused(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d, IHALA_ETRANSITION);
}

static void
test_outcome_by_referrer_dma(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(IN_PROGRESS));
	msg_outcome(&m, "r-1", 1);
	assert_refused(policy_check(&w.view, "dma", &m.env, &cur, NULL, &d), d, IHALA_EFORBIDDEN);
}

/* A referrer whose mask allows outcomes (moh, onward to hi): the party rule refuses it. */
static void
test_outcome_by_referrer_ministry(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	state_init(&cur, "r-2", "moh", "hi", S(IN_PROGRESS));
	msg_outcome(&m, "r-2", 1);
	assert_refused(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d, IHALA_EFORBIDDEN);
}

static void
test_outcome_unsuccessful_without_reasons(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(IN_PROGRESS));
	msg_outcome(&m, "r-1", 0);
	m.outcome.n_not_successful_reasons = 0;
	m.outcome.not_successful_reasons = NULL;
	assert_refused(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d, IHALA_ESCHEMA);
}

static void
test_outcome_unsuccessful_with_reason(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(IN_PROGRESS));
	msg_outcome(&m, "r-1", 0);
	assert_allowed(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d);
}

static void
test_note_from_referrer(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(ACCEPTED));
	msg_note(&m, "r-1");
	assert_allowed(policy_check(&w.view, "dma", &m.env, &cur, NULL, &d), d);
	assert_int_equal(d.kind, POLICY_KIND_NOTE);
	assert_string_equal(d.recipient, "moh");
	assert_int_equal(d.new_status, S(UNSPECIFIED));
}

static void
test_note_from_recipient(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(ACCEPTED));
	msg_note(&m, "r-1");
	assert_allowed(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d);
	assert_int_equal(d.kind, POLICY_KIND_NOTE);
	assert_string_equal(d.recipient, "dma");
	assert_int_equal(d.new_status, S(UNSPECIFIED));
}

static void
test_note_from_third_party(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	CUR(cur, S(ACCEPTED));
	msg_note(&m, "r-1");
	assert_refused(policy_check(&w.view, "molsa", &m.env, &cur, NULL, &d), d,
	               IHALA_ENOREFERRAL);
}

/* ------------------------------------------------------------------------------------------ */
/* Erase, Unreadable, erased referrals                                                         */

static void
msg_erase(struct msg *m, const char *rid, Ihala__V2__ReasonCode reason)
{
	msg_init(m);
	ihala__v2__erase__init(&m->erase);
	m->env.kind_case = IHALA__V2__ENVELOPE__KIND_ERASE;
	m->env.erase = &m->erase;
	m->erase.referral_id = (char *)rid;
	m->erase.reason_code = reason;
}

/* Only the referrer erases, with one of three reasons, once; in any status; an auditor never;
 * a may_send mask without any kind does not stop it (a duty, not a message kind). */
static void
test_erase(void **state)
{
	static const Ihala__V2__ReasonCode ok[] = {
	    IHALA__V2__REASON_CODE__REASON_CODE_CONSENT_WITHDRAWN,
	    IHALA__V2__REASON_CODE__REASON_CODE_ENTERED_IN_ERROR,
	    IHALA__V2__REASON_CODE__REASON_CODE_OTHER};
	struct fixture f;
	size_t i;

	(void)state;
	fx_update(&f, S(COMPLETED), NULL, 0);
	for (i = 0; i < 3; i++) {
		msg_erase(&f.m, "r-1", ok[i]);
		assert_allowed(fx_check(&f, "dma"), f.d);
		assert_int_equal(f.d.kind, POLICY_KIND_ERASE);
		assert_string_equal(f.d.recipient, "");
	}
	f.w.agencies[A_DMA].may_send = 0;
	assert_allowed(fx_check(&f, "dma"), f.d);
	assert_refused(fx_check(&f, "moh"), f.d, IHALA_EFORBIDDEN);
	assert_string_equal(f.d.text, "only the referring agency of referral 'r-1' may erase it");
	assert_refused(fx_check(&f, "hi"), f.d, IHALA_ENOREFERRAL);
	f.state = NULL;
	assert_refused(fx_check(&f, "dma"), f.d, IHALA_ENOREFERRAL);
	f.state = &f.cur;
	assert_refused(fx_check(&f, "auditor"), f.d, IHALA_EREADONLY);
	msg_erase(&f.m, "r-1", IHALA__V2__REASON_CODE__REASON_CODE_UNSPECIFIED);
	assert_refused(fx_check(&f, "dma"), f.d, IHALA_ESCHEMA);
	msg_erase(&f.m, "r-1", IHALA__V2__REASON_CODE__REASON_CODE_RETENTION_EXPIRED);
	assert_refused(fx_check(&f, "dma"), f.d, IHALA_ESCHEMA);
	msg_erase(&f.m, "r-1", IHALA__V2__REASON_CODE__REASON_CODE_OTHER);
	f.cur.erased = 1;
	assert_refused(fx_check(&f, "dma"), f.d, IHALA_EERASED);
	assert_string_equal(f.d.text, "referral 'r-1' was already erased");
}

/* On an erased referral: a message with a sealed part is refused ERASED, one without passes;
 * an onward referral of it is refused ERASED. */
static void
test_erased_referral(void **state)
{
	struct fixture f;
	Ihala__V2__ReferralState parent;

	(void)state;
	fx_update(&f, S(ACCEPTED), NULL, 0);
	f.cur.erased = 1;
	assert_allowed(fx_check(&f, "moh"), f.d);
	declare(&f.m, NULL, 0);
	assert_refused(fx_check(&f, "moh"), f.d, IHALA_EERASED);
	assert_string_equal(
	    f.d.text, "referral 'r-1' was erased: its messages carry no sealed part any more");

	state_init(&parent, "p-1", "dma", "moh", S(ACCEPTED));
	msg_referral(&f.m, "moh", "hi", "r-2");
	f.m.ref.parent_referral_id = "p-1";
	assert_allowed(policy_check(&f.w.view, "moh", &f.m.env, NULL, &parent, &f.d), f.d);
	parent.erased = 1;
	assert_refused(policy_check(&f.w.view, "moh", &f.m.env, NULL, &parent, &f.d), f.d,
	               IHALA_EERASED);
	assert_string_equal(f.d.text,
	                    "parent referral 'p-1' was erased; it cannot be referred onward");
}

/* An Unreadable's own fields (who may send it is the ledger's to check against the entry). */
static void
test_unreadable_fields(void **state)
{
	static char detail[POLICY_DETAIL_MAX + 2];
	struct world w;
	struct msg m;
	struct policy_decision d;
	int code;

	(void)state;
	world_init(&w);
	msg_init(&m);
	ihala__v2__unreadable__init(&m.unr);
	m.env.kind_case = IHALA__V2__ENVELOPE__KIND_UNREADABLE;
	m.env.unreadable = &m.unr;
	m.unr.referral_id = "r-1";
	m.unr.ref_seq = 7;
	for (code = -IHALA_ESEALRECIP; code <= -IHALA_ESEALCONTENT; code++) {
		m.unr.code = (Ihala__V2__ErrorCode)code;
		assert_allowed(policy_check(&w.view, "moh", &m.env, NULL, NULL, &d), d);
		assert_int_equal(d.kind, POLICY_KIND_UNREADABLE);
	}
	m.unr.code = (Ihala__V2__ErrorCode)(-IHALA_ESEALHASH);
	assert_refused(policy_check(&w.view, "moh", &m.env, NULL, NULL, &d), d, IHALA_ESCHEMA);
	m.unr.code = (Ihala__V2__ErrorCode)(-IHALA_ESEALCONTENT + 1);
	assert_refused(policy_check(&w.view, "moh", &m.env, NULL, NULL, &d), d, IHALA_ESCHEMA);
	m.unr.code = IHALA__V2__ERROR_CODE__ERROR_CODE_SEAL_MALFORMED;
	m.unr.ref_seq = 0;
	assert_refused(policy_check(&w.view, "moh", &m.env, NULL, NULL, &d), d, IHALA_ESCHEMA);
	m.unr.ref_seq = 7;
	m.unr.referral_id = "bad id";
	assert_refused(policy_check(&w.view, "moh", &m.env, NULL, NULL, &d), d, IHALA_ESCHEMA);
	m.unr.referral_id = "";
	assert_allowed(policy_check(&w.view, "moh", &m.env, NULL, NULL, &d), d);
	memset(detail, 'x', sizeof(detail) - 1);
	m.unr.detail = detail;
	assert_refused(policy_check(&w.view, "moh", &m.env, NULL, NULL, &d), d, IHALA_ETOOLARGE);
	detail[POLICY_DETAIL_MAX] = '\0';
	assert_allowed(policy_check(&w.view, "moh", &m.env, NULL, NULL, &d), d);
	assert_refused(policy_check(&w.view, "auditor", &m.env, NULL, NULL, &d), d,
	               IHALA_EREADONLY);
}

/* ------------------------------------------------------------------------------------------ */
/* Per-agency overrides                                                                        */

static void
test_may_send_without_note(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	w.agencies[A_DMA].may_send = POLICY_KIND_REFERRAL | POLICY_KIND_STATUS;
	CUR(cur, S(ACCEPTED));
	msg_note(&m, "r-1");
	assert_refused(policy_check(&w.view, "dma", &m.env, &cur, NULL, &d), d, IHALA_EFORBIDDEN);
}

static const char *const only_moh[] = {"moh"};
static const char *const only_hi[] = {"hi"};

static void
test_may_send_to_refuses_other_recipient(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	w.agencies[A_DMA].may_send_to = only_moh;
	w.agencies[A_DMA].n_may_send_to = 1;
	msg_referral(&m, "dma", "molsa", "r-1");
	assert_refused(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d, IHALA_EFORBIDDEN);
}

static void
test_may_send_to_allows_listed_recipient(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;

	(void)state;
	world_init(&w);
	w.agencies[A_DMA].may_send_to = only_moh;
	w.agencies[A_DMA].n_may_send_to = 1;
	msg_referral(&m, "dma", "moh", "r-1");
	assert_allowed(policy_check(&w.view, "dma", &m.env, NULL, NULL, &d), d);
}

static void
test_may_send_to_refuses_note_to_other(void **state)
{
	struct world w;
	struct msg m;
	struct policy_decision d;
	Ihala__V2__ReferralState cur;

	(void)state;
	world_init(&w);
	w.agencies[A_MOH].may_send_to = only_hi;
	w.agencies[A_MOH].n_may_send_to = 1;
	CUR(cur, S(ACCEPTED));
	msg_note(&m, "r-1");
	assert_refused(policy_check(&w.view, "moh", &m.env, &cur, NULL, &d), d, IHALA_EFORBIDDEN);
}

/* ------------------------------------------------------------------------------------------ */
/* Reading and role defaults                                                                   */

static void
test_may_read_referrer(void **state)
{
	Ihala__V2__ReferralState st;

	(void)state;
	CUR(st, S(ACCEPTED));
	assert_int_equal(policy_may_read("dma", ROLE(DMA), &st), 0);
}

static void
test_may_read_recipient(void **state)
{
	Ihala__V2__ReferralState st;

	(void)state;
	CUR(st, S(ACCEPTED));
	assert_int_equal(policy_may_read("moh", ROLE(MINISTRY), &st), 0);
}

static void
test_may_read_auditor(void **state)
{
	Ihala__V2__ReferralState st;

	(void)state;
	CUR(st, S(ACCEPTED));
	assert_int_equal(policy_may_read("auditor", ROLE(AUDITOR), &st), 0);
}

static void
test_may_read_other_ministry(void **state)
{
	Ihala__V2__ReferralState st;

	(void)state;
	CUR(st, S(ACCEPTED));
	assert_int_equal(policy_may_read("molsa", ROLE(MINISTRY), &st), IHALA_ENOTPARTY);
}

static void
test_may_read_other_ngo(void **state)
{
	Ihala__V2__ReferralState st;

	(void)state;
	CUR(st, S(ACCEPTED));
	assert_int_equal(policy_may_read("hi", ROLE(NGO), &st), IHALA_ENOTPARTY);
}

static void
test_may_read_other_dma(void **state)
{
	Ihala__V2__ReferralState st;

	(void)state;
	state_init(&st, "r-2", "moh", "hi", S(ACCEPTED));
	assert_int_equal(policy_may_read("dma", ROLE(DMA), &st), IHALA_ENOTPARTY);
}

static void
test_role_default_dma(void **state)
{
	(void)state;
	assert_int_equal(policy_role_default(ROLE(DMA)),
	                 POLICY_KIND_REFERRAL | POLICY_KIND_STATUS | POLICY_KIND_NOTE);
}

static void
test_role_default_ministry(void **state)
{
	(void)state;
	assert_int_equal(policy_role_default(ROLE(MINISTRY)), KIND_ANSWER);
}

static void
test_role_default_ngo(void **state)
{
	(void)state;
	assert_int_equal(policy_role_default(ROLE(NGO)), KIND_ANSWER);
}

static void
test_role_default_auditor(void **state)
{
	(void)state;
	assert_int_equal(policy_role_default(ROLE(AUDITOR)), 0);
}

static void
test_role_default_unspecified(void **state)
{
	(void)state;
	assert_int_equal(policy_role_default(ROLE(UNSPECIFIED)), 0);
}

static void
test_is_terminal(void **state)
{
	int s;

	(void)state;
	for (s = 0; s < NSTATUS; s++) {
		int want =
		    s == S(DECLINED) || s == S(COMPLETED) || s == S(FAILED) || s == S(CANCELLED);

		assert_int_equal(policy_is_terminal((Ihala__V2__TaskStatus)s), want);
	}
}

static void
test_status_names(void **state)
{
	int s;

	(void)state;
	for (s = 0; s < NSTATUS; s++) {
		assert_string_equal(policy_status_name((Ihala__V2__TaskStatus)s), status_names[s]);
	}
	assert_string_equal(policy_status_name((Ihala__V2__TaskStatus)99), "unknown");
}

static const struct CMUnitTest fixed_tests[] = {
    cmocka_unit_test(test_unknown_sender),
    cmocka_unit_test(test_referral_huge_repeated),
    cmocka_unit_test(test_auditor_referral_readonly),
    cmocka_unit_test(test_auditor_status_readonly),
    cmocka_unit_test(test_auditor_outcome_readonly),
    cmocka_unit_test(test_auditor_note_readonly),
    cmocka_unit_test(test_from_spoofed),
    cmocka_unit_test(test_from_matching_ok),
    cmocka_unit_test(test_referring_agency_spoofed),
    cmocka_unit_test(test_message_id_empty),
    cmocka_unit_test(test_message_id_65_chars),
    cmocka_unit_test(test_message_id_64_chars_ok),
    cmocka_unit_test(test_message_id_with_space),
    cmocka_unit_test(test_clerk_id_ok),
    cmocka_unit_test(test_clerk_id_refused),
    cmocka_unit_test(test_envelope_no_kind),
    cmocka_unit_test(test_referral_ok),
    cmocka_unit_test(test_referral_no_consent),
    cmocka_unit_test(test_referral_consent_not_given),
    cmocka_unit_test(test_referral_consent_not_covering_recipient),
    cmocka_unit_test(test_referral_unknown_recipient),
    cmocka_unit_test(test_referral_to_itself),
    cmocka_unit_test(test_referral_to_auditor),
    cmocka_unit_test(test_referral_to_differs_from_receiving_agency),
    cmocka_unit_test(test_referral_no_priority),
    cmocka_unit_test(test_referral_no_services),
    cmocka_unit_test(test_referral_no_survivor),
    cmocka_unit_test(test_referral_exists),
    cmocka_unit_test(test_ministry_new_case_forbidden),
    cmocka_unit_test(test_ministry_new_case_allowed_when_configured),
    cmocka_unit_test(test_onward_parent_accepted_ok),
    cmocka_unit_test(test_onward_parent_in_progress_ok),
    cmocka_unit_test(test_onward_parent_requested_refused),
    cmocka_unit_test(test_onward_parent_completed_refused),
    cmocka_unit_test(test_onward_not_parent_recipient),
    cmocka_unit_test(test_onward_by_parent_referrer),
    cmocka_unit_test(test_onward_parent_missing),
    cmocka_unit_test(test_onward_consent_agency_outside_parent),
    cmocka_unit_test(test_onward_consent_category_outside_parent),
    cmocka_unit_test(test_onward_consent_names_all_missing),
    cmocka_unit_test(test_onward_consent_within_parent_ok),
    cmocka_unit_test(test_onward_consent_parent_without_scope),
    cmocka_unit_test(test_declared_categories),
    cmocka_unit_test(test_consent_needs_only_refuses_identity),
    cmocka_unit_test(test_declared_malformed),
    cmocka_unit_test(test_declared_update_within_scope),
    cmocka_unit_test(test_clear_personal_fields),
    cmocka_unit_test(test_erase),
    cmocka_unit_test(test_erased_referral),
    cmocka_unit_test(test_unreadable_fields),
    cmocka_unit_test(test_consent_no_categories),
    cmocka_unit_test(test_consent_table),
    cmocka_unit_test(test_consent_uncovered),
    cmocka_unit_test(test_status_missing_referral),
    cmocka_unit_test(test_status_bad_referral_id),
    cmocka_unit_test(test_status_ngo_not_party),
    cmocka_unit_test(test_nonparty_same_as_unknown),
    cmocka_unit_test(test_forbidden_before_exists),
    cmocka_unit_test(test_status_dma_accepts_own),
    cmocka_unit_test(test_status_recipient_accepts),
    cmocka_unit_test(test_status_completed_without_outcome),
    cmocka_unit_test(test_status_completed_with_outcome),
    cmocka_unit_test(test_status_failed_with_outcome),
    cmocka_unit_test(test_status_outcome_with_other_status),
    cmocka_unit_test(test_outcome_naming_other_referral),
    cmocka_unit_test(test_status_declined_without_reason),
    cmocka_unit_test(test_status_declined_with_reason),
    cmocka_unit_test(test_status_cancel_without_reason),
    cmocka_unit_test(test_status_recipient_cancels),
    cmocka_unit_test(test_status_wrong_to),
    cmocka_unit_test(test_status_right_to_ok),
    cmocka_unit_test(test_outcome_ok),
    cmocka_unit_test(test_outcome_before_acceptance_requested),
    cmocka_unit_test(test_outcome_before_acceptance_received),
    cmocka_unit_test(test_outcome_by_referrer_dma),
    cmocka_unit_test(test_outcome_by_referrer_ministry),
    cmocka_unit_test(test_outcome_unsuccessful_without_reasons),
    cmocka_unit_test(test_outcome_unsuccessful_with_reason),
    cmocka_unit_test(test_note_from_referrer),
    cmocka_unit_test(test_note_from_recipient),
    cmocka_unit_test(test_note_from_third_party),
    cmocka_unit_test(test_may_send_without_note),
    cmocka_unit_test(test_may_send_to_refuses_other_recipient),
    cmocka_unit_test(test_may_send_to_allows_listed_recipient),
    cmocka_unit_test(test_may_send_to_refuses_note_to_other),
    cmocka_unit_test(test_may_read_referrer),
    cmocka_unit_test(test_may_read_recipient),
    cmocka_unit_test(test_may_read_auditor),
    cmocka_unit_test(test_may_read_other_ministry),
    cmocka_unit_test(test_may_read_other_ngo),
    cmocka_unit_test(test_may_read_other_dma),
    cmocka_unit_test(test_role_default_dma),
    cmocka_unit_test(test_role_default_ministry),
    cmocka_unit_test(test_role_default_ngo),
    cmocka_unit_test(test_role_default_auditor),
    cmocka_unit_test(test_role_default_unspecified),
    cmocka_unit_test(test_is_terminal),
    cmocka_unit_test(test_status_names),
};

#define N_FIXED (sizeof(fixed_tests) / sizeof(fixed_tests[0]))
#define N_WHO 4
/* Per (who, from): 9 targets once, completed and failed twice (with and without outcome). */
#define N_CELLS (N_WHO * NSTATUS * (NSTATUS + 2))
#define N_CANCEL 9

static void
cell_name(struct cell *c)
{
	const char *suffix = "";

	if (c->to == S(COMPLETED) || c->to == S(FAILED)) {
		suffix = c->has_outcome ? " with outcome" : " without outcome";
	}
	if (c->expected == 0) {
		snprintf(c->name, sizeof(c->name), "%s: %s -> %s%s allowed", party_name(c->who),
		         status_names[c->from], status_names[c->to], suffix);
	} else {
		snprintf(c->name, sizeof(c->name), "%s: %s -> %s%s refused (%s)",
		         party_name(c->who), status_names[c->from], status_names[c->to], suffix,
		         err_name(c->expected));
	}
}

int
main(void)
{
	static const enum policy_party whos[N_WHO] = {POLICY_PARTY_REFERRER, POLICY_PARTY_RECIPIENT,
	                                              POLICY_PARTY_BROKER, POLICY_PARTY_NONE};
	static const Ihala__V2__TaskStatus cancel_from[N_CANCEL] = {
	    S(REQUESTED), S(RECEIVED),  S(ACCEPTED), S(IN_PROGRESS), S(ON_HOLD),
	    S(DECLINED),  S(COMPLETED), S(FAILED),   S(CANCELLED),
	};
	struct cell *cells;
	size_t n = 0, w, f, t, i;
	int o, rc;

	cells = calloc(N_CELLS + N_CANCEL, sizeof(*cells));
	if (cells == NULL) {
		fprintf(stderr, "policy_test: out of memory\n");
		return 1;
	}
	for (w = 0; w < N_WHO; w++) {
		for (f = 0; f < NSTATUS; f++) {
			for (t = 0; t < NSTATUS; t++) {
				int both = t == S(COMPLETED) || t == S(FAILED);

				for (o = both ? 1 : 0; o >= 0; o--) {
					struct cell *c = &cells[n++];

					c->who = whos[w];
					c->from = (Ihala__V2__TaskStatus)f;
					c->to = (Ihala__V2__TaskStatus)t;
					c->has_outcome = o;
					c->expected = expected_of(c->who, c->from, c->to, o);
					cell_name(c);
				}
			}
		}
	}
	for (t = 0; t < NSTATUS; t++) {
		if (rules[t].to != (Ihala__V2__TaskStatus)t) {
			n = 0; /* a row out of place would test the wrong cells */
		}
	}
	if (n != N_CELLS) {
		fprintf(stderr, "policy_test: the expected table is malformed\n");
		free(cells);
		return 1;
	}
	for (i = 0; i < N_CANCEL; i++) {
		struct cell *c = &cells[n++];
		int terminal = i >= 5;

		c->who = POLICY_PARTY_REFERRER;
		c->from = cancel_from[i];
		c->to = S(CANCELLED);
		c->expected = terminal ? IHALA_ETRANSITION : 0;
		snprintf(c->name, sizeof(c->name), "cancel by referrer from %s %s",
		         status_names[c->from],
		         terminal ? "refused (INVALID_TRANSITION)" : "allowed");
	}

	{
		struct CMUnitTest policy_tests[N_CELLS + N_CANCEL + N_FIXED];

		for (i = 0; i < N_CELLS + N_CANCEL; i++) {
			policy_tests[i].name = cells[i].name;
			policy_tests[i].test_func = i < N_CELLS ? test_cell : test_cancel_from;
			policy_tests[i].setup_func = NULL;
			policy_tests[i].teardown_func = NULL;
			policy_tests[i].initial_state = &cells[i];
		}
		memcpy(&policy_tests[N_CELLS + N_CANCEL], fixed_tests, sizeof(fixed_tests));
		rc = cmocka_run_group_tests(policy_tests, NULL, NULL);
	}
	free(cells);
	return rc;
}
