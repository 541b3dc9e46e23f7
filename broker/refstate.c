/* refstate.c - a referral's state record as the ledger keeps it: load, new, history, free. */
#include "refstate.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "frame.h"
#include "log.h"
#include "store.h"

#define S(x) IHALA__V2__TASK_STATUS__TASK_STATUS_##x

/* One item under (rid, item->seq), encoded on the stack when it fits (it nearly always does:
 * a few short strings). */
static int
item_put(struct store_wtxn *w, const char *rid, const Ihala__V2__HistoryItem *it)
{
	uint8_t stack[512], *buf = stack;
	size_t len = ihala__v2__history_item__get_packed_size(it);
	int err;

	if (len > sizeof(stack) && (buf = malloc(len)) == NULL) {
		return IHALA_ENOMEM;
	}
	ihala__v2__history_item__pack(it, buf);
	err = store_history_put(w, rid, it->seq, buf, len);
	if (buf != stack) {
		free(buf);
	}
	return err;
}

int
refstate_load(struct store_rtxn *r, const char *rid, Ihala__V2__ReferralState **out)
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
	*out = ihala__v2__referral_state__unpack(NULL, len, p);
	if (*out == NULL) {
		log_warnx("referral '%s': stored state does not decode", rid);
		return IHALA_ESTORE;
	}
	return 0;
}

int
refstate_history_add(struct store_wtxn *w, const char *rid, uint64_t seq, uint64_t t,
                     const char *agency, Ihala__V2__TaskStatus status, const char *what)
{
	Ihala__V2__HistoryItem it = IHALA__V2__HISTORY_ITEM__INIT;

	it.seq = seq;
	it.time_ms = t;
	it.agency = (char *)agency;
	it.status = status;
	it.what = (char *)what;
	return item_put(w, rid, &it);
}

int
refstate_history_move(struct store_wtxn *w, Ihala__V2__ReferralState *st)
{
	size_t i;
	int err;

	for (i = 0; i < st->n_history; i++) {
		if ((err = item_put(w, st->referral_id, st->history[i])) != 0) {
			return err;
		}
	}
	for (i = 0; i < st->n_history; i++) {
		protobuf_c_message_free_unpacked(&st->history[i]->base, NULL);
	}
	free(st->history);
	st->history = NULL;
	st->n_history = 0;
	return 0;
}

struct load {
	Ihala__V2__ReferralState *st;
	size_t cap;
	int sorted;
};

static int
load_item(void *arg, uint64_t seq, const void *item, size_t len)
{
	struct load *l = arg;
	Ihala__V2__ReferralState *st = l->st;
	Ihala__V2__HistoryItem *it;

	if (st->n_history == l->cap) {
		size_t cap = l->cap < 16 ? 16 : 2 * l->cap;
		Ihala__V2__HistoryItem **h = realloc(st->history, cap * sizeof(*h));

		if (h == NULL) {
			return IHALA_ENOMEM;
		}
		st->history = h;
		l->cap = cap;
	}
	it = ihala__v2__history_item__unpack(NULL, len, item);
	if (it == NULL) {
		log_warnx("referral '%s': stored history item %llu does not decode",
		          st->referral_id, (unsigned long long)seq);
		return IHALA_ESTORE;
	}
	it->seq = seq; /* the key's, which orders the records */
	if (st->n_history > 0 && st->history[st->n_history - 1]->seq > seq) {
		l->sorted = 0;
	}
	st->history[st->n_history++] = it;
	return 0;
}

static int
by_seq(const void *a, const void *b)
{
	const Ihala__V2__HistoryItem *x = *(Ihala__V2__HistoryItem *const *)a;
	const Ihala__V2__HistoryItem *y = *(Ihala__V2__HistoryItem *const *)b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int
refstate_load_history(struct store_rtxn *r, Ihala__V2__ReferralState *st)
{
	struct load l = {st, st->n_history, 1};
	int err;

	err = store_history_iter(r, st->referral_id, load_item, &l);
	if (err == 0 && !l.sorted) {
		/* Items carried by the state record and records of its own at once: only when a
		 * release before per-item records wrote to this store after this one did. */
		qsort(st->history, st->n_history, sizeof(*st->history), by_seq);
	}
	return err;
}

void
refstate_free(Ihala__V2__ReferralState *st)
{
	if (st != NULL) {
		protobuf_c_message_free_unpacked(&st->base, NULL);
	}
}

/* The consent's agencies and categories into st (nothing when c is NULL); -1 when out of
 * memory, with what was copied left for refstate_free. */
static int
copy_scope(Ihala__V2__ReferralState *st, const Ihala__V2__Consent *c)
{
	size_t i;

	if (c == NULL) {
		return 0;
	}
	if (c->n_agencies > 0) {
		st->consent_agencies = calloc(c->n_agencies, sizeof(*st->consent_agencies));
		if (st->consent_agencies == NULL) {
			return -1;
		}
		for (i = 0; i < c->n_agencies; i++) {
			if ((st->consent_agencies[i] = strdup(c->agencies[i])) == NULL) {
				return -1;
			}
			st->n_consent_agencies++;
		}
	}
	if (c->n_data_covered > 0) {
		st->consent_data = malloc(c->n_data_covered * sizeof(*st->consent_data));
		if (st->consent_data == NULL) {
			return -1;
		}
		memcpy(st->consent_data, c->data_covered,
		       c->n_data_covered * sizeof(*st->consent_data));
		st->n_consent_data = c->n_data_covered;
	}
	return 0;
}

Ihala__V2__ReferralState *
refstate_new(const Ihala__V2__Referral *r, const char *referrer, const char *recipient,
             uint64_t deadline)
{
	Ihala__V2__ReferralState *st = malloc(sizeof(*st));

	if (st == NULL) {
		return NULL;
	}
	ihala__v2__referral_state__init(st);
	st->referral_id = strdup(r->referral_id);
	st->parent_referral_id = strdup(r->parent_referral_id);
	st->referrer = strdup(referrer);
	st->recipient = strdup(recipient);
	st->status = S(REQUESTED);
	st->priority = r->priority;
	st->deadline_ms = deadline;
	if (st->referral_id == NULL || st->parent_referral_id == NULL || st->referrer == NULL ||
	    st->recipient == NULL || copy_scope(st, r->consent) != 0) {
		refstate_free(st);
		return NULL;
	}
	return st;
}

static int
first_seq(void *arg, uint64_t seq, const void *item, size_t len)
{
	(void)item;
	(void)len;
	*(uint64_t *)arg = seq;
	return 1;
}

int
refstate_load_scope(struct store_rtxn *r, Ihala__V2__ReferralState *st)
{
	Ihala__V2__LogEntry *e = NULL;
	Ihala__V2__Envelope *env = NULL;
	const void *data;
	size_t len;
	uint64_t seq = 0;
	int err;

	if (st->n_consent_agencies > 0) {
		return 0;
	}
	/* The referral's first event is its own submission (items the state record still
	 * carries come before any record of their own). */
	if (st->n_history > 0) {
		seq = st->history[0]->seq;
	} else if ((err = store_history_iter(r, st->referral_id, first_seq, &seq)) != 0) {
		return err;
	}
	if (seq == 0) {
		return IHALA_ESTORE;
	}
	if ((err = store_log_get(r, seq, &data, &len)) != 0 ||
	    (err = logentry_decode(data, len, &e)) != 0 ||
	    (err = envelope_decode(e->envelope.data, e->envelope.len, &env)) != 0) {
		goto out;
	}
	if (env->kind_case != IHALA__V2__ENVELOPE__KIND_REFERRAL ||
	    strcmp(env->referral->referral_id, st->referral_id) != 0) {
		log_warnx("referral '%s': its first event (seq %llu) is not its submission",
		          st->referral_id, (unsigned long long)seq);
		err = IHALA_ESTORE;
		goto out;
	}
	err = copy_scope(st, env->referral->consent) != 0 ? IHALA_ENOMEM : 0;
out:
	envelope_free(env);
	logentry_free(e);
	return err;
}

/* ---- the writer's cache of states ---- */

#define NIL UINT32_MAX

struct cache_ent {
	Ihala__V2__ReferralState *st; /* NULL: on the free list */
	uint64_t hash;
	uint32_t chain;      /* next in the bucket, or in the free list */
	uint32_t prev, next; /* recency: head is the newest */
};

struct refstate_cache {
	struct cache_ent *ent;
	uint32_t *bucket;
	uint32_t cap, mask, n, free, head, tail;
	uint64_t hits, misses, evictions, clears;
};

static uint64_t
rid_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

	while (*s != '\0') {
		h = (h ^ (uint8_t)*s++) * 0x100000001b3ull;
	}
	return h;
}

struct refstate_cache *
refstate_cache_new(size_t cap)
{
	struct refstate_cache *c;
	size_t nb = 1;

	if (cap == 0 || cap >= NIL / 4 || (c = calloc(1, sizeof(*c))) == NULL) {
		return NULL;
	}
	while (nb < 2 * cap) {
		nb <<= 1;
	}
	c->ent = calloc(cap, sizeof(*c->ent));
	c->bucket = malloc(nb * sizeof(*c->bucket));
	if (c->ent == NULL || c->bucket == NULL) {
		free(c->ent);
		free(c->bucket);
		free(c);
		return NULL;
	}
	c->cap = (uint32_t)cap;
	c->mask = (uint32_t)(nb - 1);
	c->head = c->tail = NIL;
	memset(c->bucket, 0xff, nb * sizeof(*c->bucket));
	for (c->free = NIL; cap > 0; cap--) {
		c->ent[cap - 1].chain = c->free;
		c->free = (uint32_t)(cap - 1);
	}
	return c;
}

/* Entry i out of its bucket and the recency list, onto the free list; its state is
 * returned (the caller's now). */
static Ihala__V2__ReferralState *
cache_unlink(struct refstate_cache *c, uint32_t i)
{
	struct cache_ent *e = &c->ent[i];
	Ihala__V2__ReferralState *st = e->st;
	uint32_t *p = &c->bucket[e->hash & c->mask];

	while (*p != i) {
		p = &c->ent[*p].chain;
	}
	*p = e->chain;
	if (e->prev != NIL) {
		c->ent[e->prev].next = e->next;
	} else {
		c->head = e->next;
	}
	if (e->next != NIL) {
		c->ent[e->next].prev = e->prev;
	} else {
		c->tail = e->prev;
	}
	e->st = NULL;
	e->chain = c->free;
	c->free = i;
	c->n--;
	return st;
}

static uint32_t
cache_find(const struct refstate_cache *c, const char *rid, uint64_t h)
{
	uint32_t i;

	for (i = c->bucket[h & c->mask]; i != NIL; i = c->ent[i].chain) {
		if (c->ent[i].hash == h && strcmp(c->ent[i].st->referral_id, rid) == 0) {
			return i;
		}
	}
	return NIL;
}

Ihala__V2__ReferralState *
refstate_cache_take(struct refstate_cache *c, const char *rid)
{
	uint32_t i;

	if (c == NULL || rid == NULL || rid[0] == '\0') {
		return NULL;
	}
	if ((i = cache_find(c, rid, rid_hash(rid))) == NIL) {
		c->misses++;
		return NULL;
	}
	c->hits++;
	return cache_unlink(c, i);
}

void
refstate_cache_keep(struct refstate_cache *c, Ihala__V2__ReferralState *st)
{
	struct cache_ent *e;
	uint64_t h;
	uint32_t i;

	if (st == NULL) {
		return;
	}
	if (c == NULL || st->referral_id == NULL || st->referral_id[0] == '\0') {
		refstate_free(st);
		return;
	}
	h = rid_hash(st->referral_id);
	if ((i = cache_find(c, st->referral_id, h)) != NIL) {
		Ihala__V2__ReferralState *old = cache_unlink(c, i);

		if (old != st) {
			refstate_free(old); /* an older copy: st is the newer */
		}
	}
	if (c->free == NIL) {
		refstate_free(cache_unlink(c, c->tail));
		c->evictions++;
	}
	i = c->free;
	e = &c->ent[i];
	c->free = e->chain;
	e->st = st;
	e->hash = h;
	e->chain = c->bucket[h & c->mask];
	c->bucket[h & c->mask] = i;
	e->prev = NIL;
	e->next = c->head;
	if (c->head != NIL) {
		c->ent[c->head].prev = i;
	} else {
		c->tail = i;
	}
	c->head = i;
	c->n++;
}

void
refstate_cache_clear(struct refstate_cache *c)
{
	if (c == NULL) {
		return;
	}
	while (c->head != NIL) {
		refstate_free(cache_unlink(c, c->head));
	}
	c->clears++;
}

void
refstate_cache_stats(const struct refstate_cache *c, struct refstate_cache_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (c != NULL) {
		out->entries = c->n;
		out->cap = c->cap;
		out->hits = c->hits;
		out->misses = c->misses;
		out->evictions = c->evictions;
		out->clears = c->clears;
	}
}

int
refstate_cache_each(const struct refstate_cache *c,
                    int (*fn)(void *arg, const Ihala__V2__ReferralState *st), void *arg)
{
	uint32_t i;
	int err;

	for (i = c != NULL ? c->head : NIL; i != NIL; i = c->ent[i].next) {
		if ((err = fn(arg, c->ent[i].st)) != 0) {
			return err;
		}
	}
	return 0;
}

void
refstate_cache_free(struct refstate_cache *c)
{
	if (c != NULL) {
		refstate_cache_clear(c);
		free(c->ent);
		free(c->bucket);
		free(c);
	}
}
