/* policy.h - who may send what to whom, and the referral state machine (pure: no I/O). */
#ifndef IHALA_POLICY_H
#define IHALA_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "id.h"
#include "ihala.pb-c.h"

/* Message kinds, as bits of an agency's may_send mask. */
enum policy_kind {
	POLICY_KIND_REFERRAL = 1u << 0,
	POLICY_KIND_STATUS = 1u << 1,
	POLICY_KIND_OUTCOME = 1u << 2,
	POLICY_KIND_NOTE = 1u << 3,
	POLICY_KIND_ALL = 0xfu,
	/* Not in may_send masks: a party's duties, judged by the referral alone (an Erase by
	 * its referrer; an Unreadable by the recipient of the entry, which the ledger checks). */
	POLICY_KIND_ERASE = 1u << 4,
	POLICY_KIND_UNREADABLE = 1u << 5,
};

/* What the policy needs to know of one configured agency. Borrowed from the caller. */
struct policy_agency {
	const char *id;
	Ihala__V2__Role role;
	unsigned may_send;              /* POLICY_KIND_* mask (role default unless overridden) */
	const char *const *may_send_to; /* recipients allowed; NULL = any agency */
	size_t n_may_send_to;
	int may_open_cases; /* may send referrals without a parent (dma; others only when
	                       the config says so) */
};

/* The configured agencies, looked up by id; returns NULL for an unknown id. */
struct policy_view {
	const struct policy_agency *(*find)(void *ctx, const char *id);
	void *ctx;
};

/* Default may_send mask of a role (DESIGN §2): dma refers, cancels and notes; ministries
 * and NGOs answer, report outcomes, refer onward and note; auditors send nothing. */
unsigned policy_role_default(Ihala__V2__Role role);

/* Which side of a referral an agency is on. */
enum policy_party {
	POLICY_PARTY_NONE = 0,
	POLICY_PARTY_REFERRER = 1,
	POLICY_PARTY_RECIPIENT = 2,
	POLICY_PARTY_BROKER = 3,
};

/*
 * The transition table of DESIGN §7: may `who` move a referral from status `from` to `to`?
 * Returns 0, or IHALA_ETRANSITION (not allowed from that state) or IHALA_EFORBIDDEN (that
 * party never sets that status). `has_outcome` tells whether an Outcome comes with it:
 * completed and failed without one give IHALA_EOUTCOME.
 */
int policy_transition(enum policy_party who, Ihala__V2__TaskStatus from, Ihala__V2__TaskStatus to,
                      int has_outcome);

/* 1 for rejected, completed, failed, cancelled. */
int policy_is_terminal(Ihala__V2__TaskStatus s);

/* The result of policy_check. Strings are copied in; nothing to free. */
struct policy_decision {
	int err;        /* 0 allowed, or a negative IHALA_E* code */
	char text[256]; /* for a refusal: the sentence, with detail */
	enum policy_kind kind;
	char recipient[ID_AGENCY_MAX + 1]; /* agency the entry is delivered to */
	Ihala__V2__TaskStatus new_status;  /* status after, or UNSPECIFIED when unchanged */
};

/*
 * Erase: the referral's referring agency only (a recipient: FORBIDDEN; anyone else, or an
 * unknown id: UNKNOWN_REFERRAL), with reason_code CONSENT_WITHDRAWN, ENTERED_IN_ERROR or OTHER
 * (SCHEMA), once (a referral already erased: ERASED). out->recipient is "": the broker finds
 * the parties. Unreadable: ref_seq set, code one of the SEAL_* codes, detail at most
 * POLICY_DETAIL_MAX bytes; who may send it is the ledger's to check against the entry.
 * A message carrying a sealed part on an erased referral, and an onward referral of an
 * erased one, are refused ERASED.
 */
#define POLICY_DETAIL_MAX 512

/*
 * Decide on one submission. `sender` is the authenticated agency. `env` is the decoded
 * envelope. `cur` is the current state of the referral the envelope names (NULL when there is
 * none); `parent` is the state of a new referral's parent (NULL when none or not found).
 * `now_ms` is not needed by any rule yet. Fills *out and returns out->err.
 */
int policy_check(const struct policy_view *v, const char *sender, const Ihala__V2__Envelope *env,
                 const Ihala__V2__ReferralState *cur, const Ihala__V2__ReferralState *parent,
                 struct policy_decision *out);

/* The referral id an envelope concerns (borrowed from env), or NULL. */
const char *policy_referral_id(const Ihala__V2__Envelope *env);

/* May `agency` (with `role`) read referral `st`? Parties and auditors may. 0 or IHALA_ENOTPARTY. */
int policy_may_read(const char *agency, Ihala__V2__Role role, const Ihala__V2__ReferralState *st);

/* Short lower-case name of a status ("in-progress"); never NULL. */
const char *policy_status_name(Ihala__V2__TaskStatus s);

#endif
