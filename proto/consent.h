/* consent.h - which data category each personal field of a Referral is, and consent scope. */
#ifndef IHALA_CONSENT_H
#define IHALA_CONSENT_H

#include <stddef.h>

#include "ihala.pb-c.h"

/*
 * The one table of the project that says which DataCategory each field of a Referral is
 * (DESIGN §12, issue 16): the broker refuses a referral carrying a field whose category its
 * consent does not cover, and a sending node can check the same before queueing.
 * survivor.case_id is no category (a pseudonymous id is always sent); CONTACT has no
 * survivor field yet (referring_officer is the officer's contact, not the survivor's).
 */
struct consent_field {
	const char *name;                 /* "survivor.name": the field as the refusal names it */
	Ihala__V2__DataCategory category; /* the category it is */
	/* 1 when `r` carries the field (a non-empty string, a set enum or number, a present
	 * message, a non-empty list); `r` is never NULL, r->survivor may be. */
	int (*carried)(const Ihala__V2__Referral *r);
};

/* The table (static storage) and its length. */
extern const struct consent_field consent_fields[];
extern const size_t consent_n_fields;

/* "IDENTITY", "NEEDS", ... for a category; "UNKNOWN" for a value outside the enum. */
const char *consent_category_name(Ihala__V2__DataCategory c);

/* 1 when consent `c` lists category `cat` in data_covered. */
int consent_covers_category(const Ihala__V2__Consent *c, Ihala__V2__DataCategory cat);

/* 1 when consent `c` lists agency `id` in agencies. */
int consent_covers_agency(const Ihala__V2__Consent *c, const char *id);

/*
 * The first field of the table that `r` carries and whose category r->consent does not
 * cover (every carried field when r->consent is NULL), or NULL when all are covered.
 * The result points into consent_fields.
 */
const struct consent_field *consent_uncovered(const Ihala__V2__Referral *r);

#endif
