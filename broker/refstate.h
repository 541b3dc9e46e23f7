/* refstate.h - a referral's state record as the ledger keeps it: load, new, history, free. */
#ifndef IHALA_REFSTATE_H
#define IHALA_REFSTATE_H

#include <stdint.h>

#include "ihala.pb-c.h"

struct store_rtxn;
struct store_wtxn;

/*
 * A state is a decoded ReferralState whose every field is malloc'ed (by protobuf-c, or here);
 * the caller owns it and frees it with refstate_free. The ledger encodes it into the store
 * (store_referral_put) with its own buffer; refstate_load gives the state without its
 * history, refstate_load_history adds it.
 */

/* The stored state of referral `rid` into *out. IHALA_ENOTFOUND when there is none (or `rid`
 * is empty), IHALA_ESTORE when it does not decode, or the store's error. */
int refstate_load(struct store_rtxn *r, const char *rid, Ihala__V2__ReferralState **out);
/* A new state (requested) of referral `r` from `referrer` to `recipient`, due by `deadline`,
 * with the scope of r->consent (agencies, data categories); NULL when out of memory. Strings
 * are copied. */
Ihala__V2__ReferralState *refstate_new(const Ihala__V2__Referral *r, const char *referrer,
                                       const char *recipient, uint64_t deadline);
/*
 * History: one store record per item (store_history_put), never inside the state record, so
 * that adding an item writes a bounded number of bytes whatever the history's length. A state
 * record written before that (a format-1 store of an earlier release) still carries its
 * items in `history`: refstate_history_move gives them records of their own once.
 */

/* Record one history item of referral `rid` (strings are encoded, not kept). */
int refstate_history_add(struct store_wtxn *w, const char *rid, uint64_t seq, uint64_t t,
                         const char *agency, Ihala__V2__TaskStatus status, const char *what);
/* Move the items `st` carries, if any, to records of their own; st->history is then empty
 * (save the state after). */
int refstate_history_move(struct store_wtxn *w, Ihala__V2__ReferralState *st);
/* Fill st->history with the referral's whole history in seq order: its records and any items
 * the state record carried. IHALA_ENOMEM leaves a state that is only fit to be freed;
 * IHALA_ESTORE when an item does not decode. */
int refstate_load_history(struct store_rtxn *r, Ihala__V2__ReferralState *st);
/* A state record written before the consent scope was recorded in it (an earlier release)
 * has none: fill st->consent_agencies and consent_data from the referral's own submission in
 * the log. Nothing is done when the state has them. IHALA_ESTORE when that entry is missing
 * or is not the referral; IHALA_ENOMEM. */
int refstate_load_scope(struct store_rtxn *r, Ihala__V2__ReferralState *st);
/* Free a state from refstate_load or refstate_new; NULL is fine. */
void refstate_free(Ihala__V2__ReferralState *st);

/*
 * The writer's cache of decoded states, keyed by referral id, at most `cap` of them (the least
 * recently kept is freed to make room). A state is taken out of it (the caller owns it then)
 * and kept again when done with. The cache knows nothing of transactions: its user keeps only
 * a state equal to the record the store holds in the transaction it writes (write-through),
 * and clears the cache whenever a transaction or savepoint that may have put a kept state is
 * aborted (ledger.c).
 */
struct refstate_cache;

struct refstate_cache_stats {
	size_t entries, cap;
	uint64_t hits;      /* takes that found the state: an unpack avoided */
	uint64_t misses;    /* takes that did not */
	uint64_t evictions; /* states freed to make room */
	uint64_t clears;
};

/* A cache of up to `cap` states (cap > 0); NULL when out of memory. */
struct refstate_cache *refstate_cache_new(size_t cap);
/* Referral `rid`'s state out of the cache (the caller owns it), or NULL when it holds none. */
Ihala__V2__ReferralState *refstate_cache_take(struct refstate_cache *c, const char *rid);
/* Give `st` (owned by the caller until now) to the cache; it replaces any copy of the same
 * referral there. NULL is fine; with c NULL, st is freed. */
void refstate_cache_keep(struct refstate_cache *c, Ihala__V2__ReferralState *st);
/* Free every state the cache holds. */
void refstate_cache_clear(struct refstate_cache *c);
void refstate_cache_stats(const struct refstate_cache *c, struct refstate_cache_stats *out);
/* fn on each state, newest first, until it returns non-zero (returned). */
int refstate_cache_each(const struct refstate_cache *c,
                        int (*fn)(void *arg, const Ihala__V2__ReferralState *st), void *arg);
/* Free the cache and its states; NULL is fine. */
void refstate_cache_free(struct refstate_cache *c);

#endif
