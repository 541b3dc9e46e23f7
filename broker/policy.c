/* policy.c - access control and the referral state machine of DESIGN §7, as pure functions. */
#include "policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "consent.h"
#include "error.h"
#include "id.h"

#define S(x) IHALA__V2__TASK_STATUS__TASK_STATUS_##x
#define CAT(x) IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_##x

unsigned
policy_role_default(Ihala__V2__Role role)
{
	switch (role) {
	case IHALA__V2__ROLE__ROLE_DMA:
		return POLICY_KIND_REFERRAL | POLICY_KIND_STATUS | POLICY_KIND_NOTE;
	case IHALA__V2__ROLE__ROLE_MINISTRY:
	case IHALA__V2__ROLE__ROLE_NGO:
		return POLICY_KIND_ALL;
	default:
		return 0;
	}
}

int
policy_is_terminal(Ihala__V2__TaskStatus s)
{
	return s == S(DECLINED) || s == S(COMPLETED) || s == S(FAILED) || s == S(CANCELLED);
}

const char *
policy_status_name(Ihala__V2__TaskStatus s)
{
	static const char *names[] = {"unspecified", "requested",   "received", "accepted",
	                              "declined",    "in-progress", "on-hold",  "completed",
	                              "failed",      "cancelled",   "overdue"};

	if ((unsigned)s < sizeof(names) / sizeof(names[0])) {
		return names[s];
	}
	return "unknown";
}

int
policy_transition(enum policy_party who, Ihala__V2__TaskStatus from, Ihala__V2__TaskStatus to,
                  int has_outcome)
{
	int from_ok;

	switch (to) {
	case S(RECEIVED):
		if (who != POLICY_PARTY_BROKER) {
			return IHALA_EFORBIDDEN;
		}
		from_ok = from == S(REQUESTED);
		break;
	case S(ACCEPTED):
	case S(DECLINED):
		if (who != POLICY_PARTY_RECIPIENT) {
			return IHALA_EFORBIDDEN;
		}
		from_ok = from == S(REQUESTED) || from == S(RECEIVED);
		break;
	case S(IN_PROGRESS):
	case S(ON_HOLD):
		if (who != POLICY_PARTY_RECIPIENT) {
			return IHALA_EFORBIDDEN;
		}
		from_ok = from == S(ACCEPTED) || from == S(IN_PROGRESS) || from == S(ON_HOLD);
		break;
	case S(COMPLETED):
	case S(FAILED):
		if (who != POLICY_PARTY_RECIPIENT) {
			return IHALA_EFORBIDDEN;
		}
		from_ok = from == S(ACCEPTED) || from == S(IN_PROGRESS) || from == S(ON_HOLD);
		if (from_ok && !has_outcome) {
			return IHALA_EOUTCOME;
		}
		break;
	case S(CANCELLED):
		if (who != POLICY_PARTY_REFERRER) {
			return IHALA_EFORBIDDEN;
		}
		from_ok = from != S(UNSPECIFIED) && !policy_is_terminal(from) && from != S(OVERDUE);
		break;
	default:
		/* requested is only ever set by a new Referral; overdue only by the broker's clock
		 */
		return IHALA_EFORBIDDEN;
	}
	return from_ok ? 0 : IHALA_ETRANSITION;
}

static int refuse(struct policy_decision *out, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
refuse(struct policy_decision *out, int err, const char *fmt, ...)
{
	va_list ap;

	out->err = err;
	va_start(ap, fmt);
	vsnprintf(out->text, sizeof(out->text), fmt, ap);
	va_end(ap);
	return err;
}

const char *
policy_referral_id(const Ihala__V2__Envelope *env)
{
	switch (env->kind_case) {
	case IHALA__V2__ENVELOPE__KIND_REFERRAL:
		return env->referral->referral_id;
	case IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE:
		return env->status_update->referral_id;
	case IHALA__V2__ENVELOPE__KIND_OUTCOME:
		return env->outcome->referral_id;
	case IHALA__V2__ENVELOPE__KIND_NOTE:
		return env->note->referral_id;
	case IHALA__V2__ENVELOPE__KIND_ERASE:
		return env->erase->referral_id;
	case IHALA__V2__ENVELOPE__KIND_UNREADABLE:
		return env->unreadable->referral_id;
	default:
		return NULL;
	}
}

static enum policy_party
party_of(const char *agency, const Ihala__V2__ReferralState *st)
{
	if (strcmp(agency, st->referrer) == 0) {
		return POLICY_PARTY_REFERRER;
	}
	if (strcmp(agency, st->recipient) == 0) {
		return POLICY_PARTY_RECIPIENT;
	}
	return POLICY_PARTY_NONE;
}

int
policy_may_read(const char *agency, Ihala__V2__Role role, const Ihala__V2__ReferralState *st)
{
	if (role == IHALA__V2__ROLE__ROLE_AUDITOR || party_of(agency, st) != POLICY_PARTY_NONE) {
		return 0;
	}
	return IHALA_ENOTPARTY;
}

static int
may_send_to(const struct policy_agency *a, const char *to)
{
	size_t i;

	if (a->may_send_to == NULL) {
		return 1;
	}
	for (i = 0; i < a->n_may_send_to; i++) {
		if (strcmp(a->may_send_to[i], "*") == 0 || strcmp(a->may_send_to[i], to) == 0) {
			return 1;
		}
	}
	return 0;
}

static const char *
kind_name(enum policy_kind k)
{
	switch (k) {
	case POLICY_KIND_ERASE:
		return "erase";
	case POLICY_KIND_UNREADABLE:
		return "unreadable";
	case POLICY_KIND_REFERRAL:
		return "referral";
	case POLICY_KIND_STATUS:
		return "status update";
	case POLICY_KIND_OUTCOME:
		return "outcome";
	default:
		return "note";
	}
}

/* Bounds of repeated fields: generous for real use, far below what a frame could carry. */
#define MAX_SERVICES 32
#define MAX_AGENCIES 64
#define MAX_CODES 64

static int
too_many(struct policy_decision *out, const char *field, size_t n, size_t max)
{
	return refuse(out, IHALA_ETOOLARGE, "%s has %zu items (at most %zu)", field, n, max);
}

static int
check_outcome(const Ihala__V2__Outcome *o, const char *rid, struct policy_decision *out)
{
	if (o->n_services_delivered > MAX_SERVICES) {
		return too_many(out, "outcome.services_delivered", o->n_services_delivered,
		                MAX_SERVICES);
	}
	if (o->n_not_successful_reasons > MAX_CODES) {
		return too_many(out, "outcome.not_successful_reasons", o->n_not_successful_reasons,
		                MAX_CODES);
	}
	if (o->referral_id[0] != '\0' && strcmp(o->referral_id, rid) != 0) {
		return refuse(out, IHALA_ESCHEMA,
		              "outcome names referral '%s' but the update is for '%s'",
		              o->referral_id, rid);
	}
	if (!o->success && o->n_not_successful_reasons == 0) {
		return refuse(
		    out, IHALA_ESCHEMA,
		    "an unsuccessful outcome needs at least one not_successful_reasons code");
	}
	return 0;
}

/* Appends ", what" (or "what" first) to out->text, as far as it fits. */
static void
add_missing(struct policy_decision *out, size_t *len, const char *what, const char *name)
{
	int n;

	if (*len >= sizeof(out->text)) {
		return;
	}
	n = snprintf(out->text + *len, sizeof(out->text) - *len, "%s%s %s",
	             out->text[*len - 1] == ' ' ? "" : ", ", what, name);
	*len = n < 0 ? sizeof(out->text) : *len + (size_t)n;
}

/* Whether the first `n` agencies of `c` include agency `i` again (a repeat is named once). */
static int
agency_seen(const Ihala__V2__Consent *c, size_t i)
{
	size_t k;

	for (k = 0; k < i; k++) {
		if (strcmp(c->agencies[k], c->agencies[i]) == 0) {
			return 1;
		}
	}
	return 0;
}

static int
category_seen(const Ihala__V2__Consent *c, size_t i)
{
	size_t k;

	for (k = 0; k < i; k++) {
		if (c->data_covered[k] == c->data_covered[i]) {
			return 1;
		}
	}
	return 0;
}

/* An onward referral's consent must stay within its parent's recorded scope: every agency
 * and every data category it covers, the parent's covers too. The refusal names all that is
 * missing, each once. */
static int
check_within_parent(const Ihala__V2__Consent *c, const Ihala__V2__ReferralState *parent,
                    struct policy_decision *out)
{
	static const char head[] = "the parent referral's consent does not cover ";
	size_t i, j, len = sizeof(head) - 1;
	char quoted[ID_AGENCY_MAX + 3];
	int found;

	snprintf(out->text, sizeof(out->text), "%s", head);
	for (i = 0; i < c->n_agencies; i++) {
		for (j = 0, found = 0; j < parent->n_consent_agencies && !found; j++) {
			found = strcmp(c->agencies[i], parent->consent_agencies[j]) == 0;
		}
		if (!found && !agency_seen(c, i)) {
			snprintf(quoted, sizeof(quoted), "'%.*s'", ID_AGENCY_MAX, c->agencies[i]);
			add_missing(out, &len, "agency", quoted);
		}
	}
	for (i = 0; i < c->n_data_covered; i++) {
		for (j = 0, found = 0; j < parent->n_consent_data && !found; j++) {
			found = c->data_covered[i] == parent->consent_data[j];
		}
		/* UNSPECIFIED covers nothing, so it widens nothing */
		if (!found && !category_seen(c, i) &&
		    c->data_covered[i] != IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_UNSPECIFIED) {
			add_missing(out, &len, "data category",
			            consent_category_name(c->data_covered[i]));
		}
	}
	if (len == sizeof(head) - 1) {
		out->text[0] = '\0';
		return 0;
	}
	out->err = IHALA_ECONSENT;
	return out->err;
}

/*
 * Envelope.data_declared, the categories the sealed part carries: each a known category, and
 * covered by the consent (`covered`: a referral's own consent, or the scope recorded with
 * the referral an update is about). A declaration without a sealed part is refused too.
 */
static int
check_declared(const Ihala__V2__Envelope *env, const Ihala__V2__DataCategory *covered,
               size_t n_covered, struct policy_decision *out)
{
	size_t i, j;
	int found;

	if (env->n_data_declared == 0) {
		return 0;
	}
	if (env->n_data_declared > MAX_CODES) {
		return too_many(out, "data_declared", env->n_data_declared, MAX_CODES);
	}
	if (env->sealed_sha256.len == 0) {
		return refuse(out, IHALA_ESCHEMA,
		              "data_declared names categories but the message has no sealed part");
	}
	for (i = 0; i < env->n_data_declared; i++) {
		Ihala__V2__DataCategory c = env->data_declared[i];

		if (c == CAT(UNSPECIFIED) || (unsigned)c > (unsigned)CAT(NEEDS)) {
			return refuse(out, IHALA_ESCHEMA,
			              "data_declared holds %s category %d (IDENTITY .. NEEDS)",
			              c == CAT(UNSPECIFIED) ? "the unspecified" : "an unknown",
			              (int)c);
		}
		for (j = 0, found = 0; j < n_covered && !found; j++) {
			found = covered[j] == c;
		}
		if (!found) {
			return refuse(
			    out, IHALA_ECONSENT,
			    "the consent does not cover %s, which the sealed part declares",
			    consent_category_name(c));
		}
	}
	return 0;
}

/*
 * Protocol v2 (docs/SEALING.md): what is about the person, and every free text, travels in the
 * sealed part only. A clear part carrying one of those fields is refused, naming it, so that
 * no personal datum reaches the broker's log, which is never erased.
 */
static int
sealed_field(struct policy_decision *out, const char *field)
{
	return refuse(out, IHALA_ESCHEMA, "%s must be sealed (docs/SEALING.md)", field);
}

static int
check_outcome_clear(const Ihala__V2__Outcome *o, const char *prefix, struct policy_decision *out)
{
	char name[32];

	if (o == NULL) {
		return 0;
	}
	if (o->date[0] != '\0') {
		snprintf(name, sizeof(name), "%s.date", prefix);
		return sealed_field(out, name);
	}
	if (o->notes[0] != '\0') {
		snprintf(name, sizeof(name), "%s.notes", prefix);
		return sealed_field(out, name);
	}
	return 0;
}

static int
check_clear(const Ihala__V2__Envelope *env, struct policy_decision *out)
{
	switch (env->kind_case) {
	case IHALA__V2__ENVELOPE__KIND_REFERRAL: {
		const Ihala__V2__Referral *r = env->referral;

		if (r->survivor != NULL) {
			return sealed_field(out, "referral.survivor");
		}
		if (r->reason[0] != '\0') {
			return sealed_field(out, "referral.reason");
		}
		if (r->referring_officer != NULL) {
			return sealed_field(out, "referral.referring_officer");
		}
		if (r->notes[0] != '\0') {
			return sealed_field(out, "referral.notes");
		}
		return 0;
	}
	case IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE: {
		const Ihala__V2__StatusUpdate *u = env->status_update;

		if (u->business_status[0] != '\0') {
			return sealed_field(out, "status_update.business_status");
		}
		if (u->reason[0] != '\0') {
			return sealed_field(out, "status_update.reason");
		}
		if (u->note[0] != '\0') {
			return sealed_field(out, "status_update.note");
		}
		return check_outcome_clear(u->outcome, "status_update.outcome", out);
	}
	case IHALA__V2__ENVELOPE__KIND_OUTCOME:
		return check_outcome_clear(env->outcome, "outcome", out);
	case IHALA__V2__ENVELOPE__KIND_NOTE:
		return env->note->text[0] != '\0' ? sealed_field(out, "note.text") : 0;
	default:
		return 0;
	}
}

/* An Erase of referral `cur` by party `who` (the caller found it a party). */
static int
check_erase(const Ihala__V2__Erase *e, const Ihala__V2__ReferralState *cur, enum policy_party who,
            struct policy_decision *out)
{
	if (who != POLICY_PARTY_REFERRER) {
		return refuse(out, IHALA_EFORBIDDEN,
		              "only the referring agency of referral '%s' may erase it",
		              e->referral_id);
	}
	switch (e->reason_code) {
	case IHALA__V2__REASON_CODE__REASON_CODE_CONSENT_WITHDRAWN:
	case IHALA__V2__REASON_CODE__REASON_CODE_ENTERED_IN_ERROR:
	case IHALA__V2__REASON_CODE__REASON_CODE_OTHER:
		break;
	default:
		return refuse(out, IHALA_ESCHEMA,
		              "an erase needs reason_code consent-withdrawn, entered-in-error or "
		              "other");
	}
	if (cur->erased) {
		return refuse(out, IHALA_EERASED, "referral '%s' was already erased",
		              e->referral_id);
	}
	out->recipient[0] = '\0'; /* the parties are the broker's to find */
	return 0;
}

/* An Unreadable's own fields; the ledger checks the entry it names. */
static int
check_unreadable(const Ihala__V2__Envelope *env, struct policy_decision *out)
{
	const Ihala__V2__Unreadable *u = env->unreadable;

	out->kind = POLICY_KIND_UNREADABLE;
	if (u->ref_seq == 0) {
		return refuse(out, IHALA_ESCHEMA, "an unreadable names the entry (ref_seq)");
	}
	if (u->referral_id[0] != '\0' && !id_valid(u->referral_id)) {
		return refuse(
		    out, IHALA_ESCHEMA,
		    "referral_id must be 1..64 printable ASCII characters without spaces");
	}
	if ((int)u->code < -IHALA_ESEALRECIP || (int)u->code > -IHALA_ESEALCONTENT) {
		return refuse(
		    out, IHALA_ESCHEMA,
		    "an unreadable's code is one of SEAL_NOT_RECIPIENT, SEAL_AUTH_FAILED, "
		    "SEAL_MALFORMED, SEAL_MISMATCH, SEAL_INVALID_CONTENT (not %d)",
		    (int)u->code);
	}
	if (strlen(u->detail) > POLICY_DETAIL_MAX) {
		return refuse(out, IHALA_ETOOLARGE, "an unreadable's detail is over %d bytes",
		              POLICY_DETAIL_MAX);
	}
	return 0;
}

/* The refusal text for a referral that is unknown or not the sender's (id, sender). */
#define NONPARTY_TEXT "no referral '%s' that agency '%s' is a party to"

static int
check_referral(const struct policy_view *v, const struct policy_agency *me,
               const Ihala__V2__Envelope *env, const Ihala__V2__ReferralState *cur,
               const Ihala__V2__ReferralState *parent, struct policy_decision *out)
{
	const Ihala__V2__Referral *r = env->referral;
	const struct policy_agency *to;
	const char *dest = env->to[0] != '\0' ? env->to : r->receiving_agency;

	if (!id_valid(r->referral_id)) {
		return refuse(
		    out, IHALA_ESCHEMA,
		    "referral_id must be 1..64 printable ASCII characters without spaces");
	}
	if (dest[0] == '\0') {
		return refuse(out, IHALA_ESCHEMA, "a referral needs a recipient ('to')");
	}
	if (r->receiving_agency[0] != '\0' && strcmp(r->receiving_agency, dest) != 0) {
		return refuse(out, IHALA_ESCHEMA,
		              "receiving_agency '%s' differs from the envelope's 'to' '%s'",
		              r->receiving_agency, dest);
	}
	if (r->referring_agency[0] != '\0' && strcmp(r->referring_agency, me->id) != 0) {
		return refuse(out, IHALA_EFROM,
		              "referring_agency '%s' is not the authenticated agency '%s'",
		              r->referring_agency, me->id);
	}
	to = v->find(v->ctx, dest);
	if (to == NULL) {
		return refuse(out, IHALA_ERECIPIENT, "recipient '%s' is not a configured agency",
		              dest);
	}
	if (strcmp(dest, me->id) == 0) {
		return refuse(out, IHALA_EFORBIDDEN, "an agency cannot refer to itself");
	}
	if (to->role == IHALA__V2__ROLE__ROLE_AUDITOR) {
		return refuse(out, IHALA_EFORBIDDEN, "'%s' is an auditor and receives no referrals",
		              dest);
	}
	if (r->priority == IHALA__V2__PRIORITY__PRIORITY_UNSPECIFIED) {
		return refuse(out, IHALA_ESCHEMA,
		              "a referral needs a priority (emergency, urgent, normal)");
	}
	if (r->n_services == 0) {
		return refuse(out, IHALA_ESCHEMA,
		              "a referral needs at least one requested service");
	}
	if (r->n_services > MAX_SERVICES) {
		return too_many(out, "referral.services", r->n_services, MAX_SERVICES);
	}
	if (r->consent != NULL && r->consent->n_agencies > MAX_AGENCIES) {
		return too_many(out, "referral.consent.agencies", r->consent->n_agencies,
		                MAX_AGENCIES);
	}
	if (r->consent != NULL && r->consent->n_data_covered > MAX_CODES) {
		return too_many(out, "referral.consent.data_covered", r->consent->n_data_covered,
		                MAX_CODES);
	}
	/* The personal fields are the sending node's to check (docs/SEALING.md): the broker
	 * sees only the categories the sealed part declares (check_declared). */
	if (r->consent == NULL || !r->consent->given) {
		return refuse(out, IHALA_ECONSENT, "referral '%s' has no recorded consent",
		              r->referral_id);
	}
	if (!consent_covers_agency(r->consent, dest)) {
		return refuse(out, IHALA_ECONSENT,
		              "the survivor's consent does not cover the receiving agency '%s'",
		              dest);
	}
	/* services, the one categorized field in clear */
	if (r->n_services > 0 && !consent_covers_category(r->consent, CAT(NEEDS))) {
		return refuse(out, IHALA_ECONSENT, "the consent does not cover %s, which %s is",
		              consent_category_name(CAT(NEEDS)), "services");
	}
	if (check_declared(env, r->consent->data_covered, r->consent->n_data_covered, out) != 0) {
		return out->err;
	}
	/* Whether it may open a case at all comes before whether the id is taken: a sender that
	 * may not is never told which referral ids exist. */
	if (r->parent_referral_id[0] == '\0' && !me->may_open_cases) {
		/* By default only DMA opens new cases; the others refer onward. */
		return refuse(out, IHALA_EFORBIDDEN,
		              "a %s may only refer onward: set parent_referral_id",
		              me->role == IHALA__V2__ROLE__ROLE_NGO ? "NGO" : "ministry");
	}
	if (cur != NULL) {
		return refuse(out, IHALA_EREFEXISTS, "referral '%s' already exists",
		              r->referral_id);
	}
	if (r->parent_referral_id[0] != '\0') {
		/* As for the other kinds: one answer for a parent that does not exist and one the
		 * sender is not a party to, so a stranger learns nothing of which ids exist. */
		if (parent == NULL || party_of(me->id, parent) == POLICY_PARTY_NONE) {
			return refuse(out, IHALA_ENOREFERRAL,
			              "no parent referral '%s' that agency '%s' is a party to",
			              r->parent_referral_id, me->id);
		}
		if (parent->erased) {
			return refuse(
			    out, IHALA_EERASED,
			    "parent referral '%s' was erased; it cannot be referred onward",
			    r->parent_referral_id);
		}
		if (strcmp(parent->recipient, me->id) != 0) {
			return refuse(
			    out, IHALA_EPARENT,
			    "only the recipient of parent referral '%s' may refer it onward",
			    r->parent_referral_id);
		}
		if (parent->status != S(ACCEPTED) && parent->status != S(IN_PROGRESS)) {
			return refuse(
			    out, IHALA_EPARENT,
			    "parent referral '%s' is %s; onward referral needs it accepted or "
			    "in progress",
			    r->parent_referral_id, policy_status_name(parent->status));
		}
		if (check_within_parent(r->consent, parent, out) != 0) {
			return out->err;
		}
	}
	id_copy(out->recipient, sizeof(out->recipient), dest);
	out->new_status = S(REQUESTED);
	return 0;
}

int
policy_check(const struct policy_view *v, const char *sender, const Ihala__V2__Envelope *env,
             const Ihala__V2__ReferralState *cur, const Ihala__V2__ReferralState *parent,
             struct policy_decision *out)
{
	const struct policy_agency *me = v->find(v->ctx, sender);
	const char *rid;
	enum policy_party who;
	int err;

	memset(out, 0, sizeof(*out));
	if (me == NULL) {
		return refuse(out, IHALA_EUNKNOWNAGENCY, "agency '%s' is not configured", sender);
	}
	if (me->role == IHALA__V2__ROLE__ROLE_AUDITOR) {
		return refuse(out, IHALA_EREADONLY, "auditor '%s' may read but not submit", sender);
	}
	if (!id_valid(env->message_id)) {
		return refuse(out, IHALA_ESCHEMA,
		              "message_id must be 1..64 printable ASCII characters without spaces");
	}
	if (env->clerk_id[0] != '\0' && !id_clerk_valid(env->clerk_id)) {
		return refuse(out, IHALA_ESCHEMA,
		              "clerk_id must be empty or " ID_CLERK_RULE
		              " (a pseudonymous clerk id, never a name)");
	}
	if (env->from[0] != '\0' && strcmp(env->from, sender) != 0) {
		return refuse(out, IHALA_EFROM,
		              "envelope 'from' is '%s' but the certificate says '%s'", env->from,
		              sender);
	}
	switch (env->kind_case) {
	case IHALA__V2__ENVELOPE__KIND_REFERRAL:
		out->kind = POLICY_KIND_REFERRAL;
		break;
	case IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE:
		out->kind = POLICY_KIND_STATUS;
		break;
	case IHALA__V2__ENVELOPE__KIND_OUTCOME:
		out->kind = POLICY_KIND_OUTCOME;
		break;
	case IHALA__V2__ENVELOPE__KIND_NOTE:
		out->kind = POLICY_KIND_NOTE;
		break;
	case IHALA__V2__ENVELOPE__KIND_ERASE:
		out->kind = POLICY_KIND_ERASE;
		break;
	case IHALA__V2__ENVELOPE__KIND_UNREADABLE:
		return check_unreadable(env, out);
	default:
		return refuse(
		    out, IHALA_ESCHEMA,
		    "envelope carries no referral, status_update, outcome, note, erase or "
		    "unreadable");
	}
	if ((out->kind & POLICY_KIND_ALL) != 0 && (me->may_send & out->kind) == 0) {
		return refuse(out, IHALA_EFORBIDDEN, "agency '%s' may not send a %s", sender,
		              kind_name(out->kind));
	}
	if (check_clear(env, out) != 0) {
		return out->err;
	}
	if (out->kind == POLICY_KIND_REFERRAL) {
		err = check_referral(v, me, env, cur, parent, out);
		if (err == 0 && !may_send_to(me, out->recipient)) {
			return refuse(out, IHALA_EFORBIDDEN, "agency '%s' may not send to '%s'",
			              sender, out->recipient);
		}
		return err;
	}

	rid = policy_referral_id(env);
	if (!id_valid(rid)) {
		return refuse(
		    out, IHALA_ESCHEMA,
		    "referral_id must be 1..64 printable ASCII characters without spaces");
	}
	/* One answer for a referral that does not exist and one the sender is not party to:
	 * a stranger learns nothing of which ids exist. */
	who = cur != NULL ? party_of(sender, cur) : POLICY_PARTY_NONE;
	if (who == POLICY_PARTY_NONE) {
		return refuse(out, IHALA_ENOREFERRAL, NONPARTY_TEXT, rid, sender);
	}
	if (out->kind == POLICY_KIND_ERASE) {
		return check_erase(env->erase, cur, who, out);
	}
	if (cur->erased && env->sealed_sha256.len > 0) {
		return refuse(
		    out, IHALA_EERASED,
		    "referral '%s' was erased: its messages carry no sealed part any more", rid);
	}
	id_copy(out->recipient, sizeof(out->recipient),
	        who == POLICY_PARTY_REFERRER ? cur->recipient : cur->referrer);
	if (env->to[0] != '\0' && strcmp(env->to, out->recipient) != 0) {
		return refuse(out, IHALA_ESCHEMA,
		              "envelope 'to' is '%s' but the other party of referral '%s' is '%s'",
		              env->to, rid, out->recipient);
	}
	if (!may_send_to(me, out->recipient)) {
		return refuse(out, IHALA_EFORBIDDEN, "agency '%s' may not send to '%s'", sender,
		              out->recipient);
	}
	if (check_declared(env, cur->consent_data, cur->n_consent_data, out) != 0) {
		return out->err;
	}

	switch (out->kind) {
	case POLICY_KIND_STATUS: {
		const Ihala__V2__StatusUpdate *u = env->status_update;

		err = policy_transition(who, cur->status, u->status, u->outcome != NULL);
		if (err == IHALA_EOUTCOME) {
			return refuse(out, err, "status %s needs an outcome",
			              policy_status_name(u->status));
		}
		if (err == IHALA_EFORBIDDEN) {
			return refuse(out, IHALA_ETRANSITION, "the %s may not set status %s",
			              who == POLICY_PARTY_REFERRER ? "referrer" : "recipient",
			              policy_status_name(u->status));
		}
		if (err != 0) {
			return refuse(out, err, "referral '%s' is %s; it cannot become %s", rid,
			              policy_status_name(cur->status),
			              policy_status_name(u->status));
		}
		if ((u->status == S(DECLINED) || u->status == S(CANCELLED)) &&
		    u->reason_code == IHALA__V2__REASON_CODE__REASON_CODE_UNSPECIFIED) {
			return refuse(out, IHALA_ESCHEMA, "status %s needs a reason_code",
			              policy_status_name(u->status));
		}
		if (u->outcome != NULL && u->status != S(COMPLETED) && u->status != S(FAILED)) {
			return refuse(out, IHALA_ESCHEMA,
			              "an outcome goes only with status completed or failed");
		}
		if (u->outcome != NULL && check_outcome(u->outcome, rid, out) != 0) {
			return out->err;
		}
		out->new_status = u->status;
		return 0;
	}
	case POLICY_KIND_OUTCOME:
		if (who != POLICY_PARTY_RECIPIENT) {
			return refuse(out, IHALA_EFORBIDDEN,
			              "only the recipient of referral '%s' reports its outcome",
			              rid);
		}
		if (cur->status == S(REQUESTED) || cur->status == S(RECEIVED) ||
		    cur->status == S(DECLINED) || cur->status == S(CANCELLED)) {
			return refuse(out, IHALA_ETRANSITION,
			              "referral '%s' is %s; an outcome needs it accepted first",
			              rid, policy_status_name(cur->status));
		}
		return check_outcome(env->outcome, rid, out);
	default: /* note: either party, any state */
		return 0;
	}
}
