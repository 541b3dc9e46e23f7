/* refstate.c - a referral's state record as the ledger keeps it: load, new, history, free. */
#include "refstate.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "store.h"

#define S(x) IHALA__V1__TASK_STATUS__TASK_STATUS_##x

int
refstate_load(struct store_rtxn *r, const char *rid, Ihala__V1__ReferralState **out)
{
	const void *p;
	size_t len;
	int err;

	*out = NULL;
	if (rid == NULL || rid[0] == '\0') {
		return IHALA_ENOTFOUND;
	}
	err = store_referral_get(r, rid, &p, &len);
	if (err != 0) {
		return err;
	}
	*out = ihala__v1__referral_state__unpack(NULL, len, p);
	if (*out == NULL) {
		log_warnx("referral '%s': stored state does not decode", rid);
		return IHALA_ESTORE;
	}
	return 0;
}

int
refstate_add_history(Ihala__V1__ReferralState *st, uint64_t seq, uint64_t t, const char *agency,
                     Ihala__V1__TaskStatus status, const char *what)
{
	Ihala__V1__HistoryItem **h;
	Ihala__V1__HistoryItem *it;

	h = realloc(st->history, (st->n_history + 1) * sizeof(*h));
	if (h == NULL) {
		return IHALA_ENOMEM;
	}
	st->history = h;
	it = malloc(sizeof(*it));
	if (it == NULL) {
		return IHALA_ENOMEM;
	}
	ihala__v1__history_item__init(it);
	it->seq = seq;
	it->time_ms = t;
	it->agency = strdup(agency);
	it->status = status;
	it->what = strdup(what);
	st->history[st->n_history++] = it;
	if (it->agency == NULL || it->what == NULL) {
		return IHALA_ENOMEM;
	}
	return 0;
}

void
refstate_free(Ihala__V1__ReferralState *st)
{
	if (st != NULL) {
		protobuf_c_message_free_unpacked(&st->base, NULL);
	}
}

Ihala__V1__ReferralState *
refstate_new(const Ihala__V1__Referral *r, const char *referrer, const char *recipient,
             uint64_t deadline)
{
	Ihala__V1__ReferralState *st = malloc(sizeof(*st));

	if (st == NULL) {
		return NULL;
	}
	ihala__v1__referral_state__init(st);
	st->referral_id = strdup(r->referral_id);
	st->parent_referral_id = strdup(r->parent_referral_id);
	st->referrer = strdup(referrer);
	st->recipient = strdup(recipient);
	st->status = S(REQUESTED);
	st->priority = r->priority;
	st->deadline_ms = deadline;
	if (st->referral_id == NULL || st->parent_referral_id == NULL || st->referrer == NULL ||
	    st->recipient == NULL) {
		refstate_free(st);
		return NULL;
	}
	return st;
}
