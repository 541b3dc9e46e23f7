/* refstate.h - a referral's state record as the ledger keeps it: load, new, history, free. */
#ifndef IHALA_REFSTATE_H
#define IHALA_REFSTATE_H

#include <stdint.h>

#include "ihala.pb-c.h"

struct store_rtxn;

/*
 * A state is a decoded ReferralState whose every field is malloc'ed (by protobuf-c, or here);
 * the caller owns it and frees it with refstate_free. The ledger encodes it into the store
 * (store_referral_put) with its own buffer.
 */

/* The stored state of referral `rid` into *out. IHALA_ENOTFOUND when there is none (or `rid`
 * is empty), IHALA_ESTORE when it does not decode, or the store's error. */
int refstate_load(struct store_rtxn *r, const char *rid, Ihala__V1__ReferralState **out);
/* A new state (requested) of referral `r` from `referrer` to `recipient`, due by `deadline`;
 * NULL when out of memory. Strings are copied. */
Ihala__V1__ReferralState *refstate_new(const Ihala__V1__Referral *r, const char *referrer,
                                       const char *recipient, uint64_t deadline);
/* Append a history item (strings copied). IHALA_ENOMEM leaves a state that is only fit to
 * be freed. */
int refstate_add_history(Ihala__V1__ReferralState *st, uint64_t seq, uint64_t t, const char *agency,
                         Ihala__V1__TaskStatus status, const char *what);
/* Free a state from refstate_load or refstate_new; NULL is fine. */
void refstate_free(Ihala__V1__ReferralState *st);

#endif
