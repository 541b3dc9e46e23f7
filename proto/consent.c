/* consent.c - the data category of each personal field of a Referral, and consent scope. */
#include "consent.h"

#include <string.h>

#define CAT(x) IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_##x

static int
has_name(const Ihala__V2__Referral *r)
{
	return r->survivor != NULL && r->survivor->name[0] != '\0';
}

static int
has_sex(const Ihala__V2__Referral *r)
{
	return r->survivor != NULL && r->survivor->sex != IHALA__V2__SEX__SEX_UNSPECIFIED;
}

static int
has_birth_year(const Ihala__V2__Referral *r)
{
	return r->survivor != NULL && r->survivor->birth_year != 0;
}

static int
has_governorate(const Ihala__V2__Referral *r)
{
	return r->survivor != NULL && r->survivor->governorate[0] != '\0';
}

static int
has_district(const Ihala__V2__Referral *r)
{
	return r->survivor != NULL && r->survivor->district[0] != '\0';
}

static int
has_displacement(const Ihala__V2__Referral *r)
{
	return r->survivor != NULL &&
	       r->survivor->displacement != IHALA__V2__DISPLACEMENT__DISPLACEMENT_UNSPECIFIED;
}

static int
has_functioning(const Ihala__V2__Referral *r)
{
	return r->survivor != NULL && r->survivor->functioning != NULL;
}

static int
has_injury(const Ihala__V2__Referral *r)
{
	return r->survivor != NULL && r->survivor->injury != NULL;
}

static int
has_services(const Ihala__V2__Referral *r)
{
	return r->n_services > 0;
}

static int
has_reason(const Ihala__V2__Referral *r)
{
	return r->reason[0] != '\0';
}

static int
has_notes(const Ihala__V2__Referral *r)
{
	return r->notes[0] != '\0';
}

/* In the order of the Referral and Survivor messages; the enum comments of DataCategory in
 * ihala.proto say the same in words. */
const struct consent_field consent_fields[] = {
    {"services", CAT(NEEDS), has_services},
    {"reason", CAT(NEEDS), has_reason},
    {"survivor.name", CAT(IDENTITY), has_name},
    {"survivor.sex", CAT(DEMOGRAPHICS), has_sex},
    {"survivor.birth_year", CAT(DEMOGRAPHICS), has_birth_year},
    {"survivor.governorate", CAT(LOCATION), has_governorate},
    {"survivor.district", CAT(LOCATION), has_district},
    {"survivor.displacement", CAT(DISPLACEMENT), has_displacement},
    {"survivor.functioning", CAT(FUNCTIONING), has_functioning},
    {"survivor.injury", CAT(INJURY), has_injury},
    {"notes", CAT(NEEDS), has_notes},
};
const size_t consent_n_fields = sizeof(consent_fields) / sizeof(consent_fields[0]);

const char *
consent_category_name(Ihala__V2__DataCategory c)
{
	static const char *names[] = {"UNSPECIFIED",  "IDENTITY", "CONTACT",
	                              "DEMOGRAPHICS", "LOCATION", "DISPLACEMENT",
	                              "FUNCTIONING",  "INJURY",   "NEEDS"};

	if ((unsigned)c < sizeof(names) / sizeof(names[0])) {
		return names[c];
	}
	return "UNKNOWN";
}

int
consent_covers_category(const Ihala__V2__Consent *c, Ihala__V2__DataCategory cat)
{
	size_t i;

	for (i = 0; c != NULL && i < c->n_data_covered; i++) {
		if (c->data_covered[i] == cat) {
			return 1;
		}
	}
	return 0;
}

int
consent_covers_agency(const Ihala__V2__Consent *c, const char *id)
{
	size_t i;

	for (i = 0; c != NULL && i < c->n_agencies; i++) {
		if (strcmp(c->agencies[i], id) == 0) {
			return 1;
		}
	}
	return 0;
}

const struct consent_field *
consent_uncovered(const Ihala__V2__Referral *r)
{
	size_t i;

	for (i = 0; i < consent_n_fields; i++) {
		const struct consent_field *f = &consent_fields[i];

		if (f->carried(r) && !consent_covers_category(r->consent, f->category)) {
			return f;
		}
	}
	return NULL;
}
