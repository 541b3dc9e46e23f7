/* ledger.c - submissions, acks and ticks applied to the store in group-committed batches. */
#include "clock.h"
#include "ledger.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "error.h"
#include "frame.h"
#include "log.h"
#include "metrics.h"
#include "refstate.h"
#include "store.h"

#define S(x) IHALA__V2__TASK_STATUS__TASK_STATUS_##x
#define DEADLINE_PREFIX "deadline:"
#define RETENTION_PREFIX "retention:"

#define FRONTIER_LEVELS 64

/* The tree's right edge: at each level the last two nodes put, so that an append (whose left
 * siblings are among them) and the root of the committed tree (made of them) read nothing
 * back from the store. Loaded from the store at start and after an abort (frontier_sync). */
struct frontier {
	/* [0] the last node put at each level, [1] the one before it: merkle_append puts a
	 * node before it reads the left sibling at its level. */
	uint64_t valid[2]; /* bit per level */
	int stale;         /* to be loaded before the next use */
	uint64_t index[2][FRONTIER_LEVELS];
	uint8_t hash[2][FRONTIER_LEVELS][MERKLE_HASH_LEN];
};

/* Senders' counts in recipients' queues, read and changed during one batch and written back
 * once before its commit (see share_slot()). */
#define SHARE_CACHE 64
#define SHARE_KEY_MAX (2 * ID_AGENCY_MAX + 16)

struct share_slot {
	char key[SHARE_KEY_MAX];
	uint64_t n;
	int dirty;
};

struct ledger {
	struct ledger_params p;
	struct share_slot shares[SHARE_CACHE];
	size_t n_shares;
	int shares_on; /* a batch without savepoints: counts go through shares[] */
	uint64_t last_ckpt_size;
	uint64_t last_ckpt_ms;
	int nearly_full; /* submissions are refused; acks, ticks and reads go on */
	int disk_low;    /* the same, for lack of free space under the store */
	uint64_t disk_free, disk_checked_ns;
	struct frontier frontier;
	struct refstate_cache *states; /* see state_take() */
	uint8_t *buf;                  /* encoding buffer for entries and states, grown as needed */
	size_t buf_cap;
	char origin[256]; /* a copy: the main thread frees its config on reload */
};

/* Share of the map kept for acks, broker events and checkpoints once submissions stop. */
#define STORE_RESERVE_DIV 10

#define DISK_FULL_TEXT                                                                             \
	"broker's disk is full; submissions are refused until an operator frees space under its "  \
	"data_dir"

/* The free space under the store is looked at once a second, and at every batch once it is
 * within twice the reserve: a second of submissions must not eat the reserve unseen. */
#define DISK_CHECK_NS 1000000000ULL

static void
check_disk(struct ledger *lg)
{
	uint64_t now, avail;
	int was = lg->disk_low;

	if (lg->p.disk_reserve == 0) {
		return;
	}
	now = clock_mono_ns();
	if (lg->disk_checked_ns != 0 && now - lg->disk_checked_ns < DISK_CHECK_NS &&
	    lg->disk_free / 2 > lg->p.disk_reserve) {
		return;
	}
	lg->disk_checked_ns = now;
	if (store_disk_free(lg->p.store, &avail) != 0) {
		return;
	}
	lg->disk_free = avail;
	lg->disk_low = avail < lg->p.disk_reserve;
	if (lg->disk_low && !was) {
		log_warnx("the disk under the store is nearly full (%llu bytes free, disk_reserve "
		          "%llu): submissions are refused until space is freed; deliveries, "
		          "queries and replays go on",
		          (unsigned long long)avail, (unsigned long long)lg->p.disk_reserve);
	} else if (!lg->disk_low && was) {
		log_info("the disk under the store has room again (%llu bytes free): submissions "
		         "are accepted",
		         (unsigned long long)avail);
	}
}

void
ledger_check_room(struct ledger *lg)
{
	struct store_stats st;
	int was = lg->nearly_full;

	check_disk(lg);
	if (store_stat(lg->p.store, &st) != 0) {
		return;
	}
	lg->nearly_full = st.used_bytes > st.map_size - st.map_size / STORE_RESERVE_DIV;
	if (lg->nearly_full && lg->p.auto_grow && store_grow_auto(lg->p.store) == 0) {
		log_info("store map grown (was %zu bytes, %zu in use)", st.map_size, st.used_bytes);
		lg->nearly_full = 0;
	}
	if (lg->nearly_full && !was) {
		log_warnx("store is nearly full (%zu of %zu bytes): submissions are refused until "
		          "map_size is grown; deliveries, queries and replays go on",
		          st.used_bytes, st.map_size);
	} else if (!lg->nearly_full && was) {
		log_info("store has room again: submissions are accepted");
	}
}

struct wreq *
wreq_new(enum wreq_type type)
{
	struct wreq *r = calloc(1, sizeof(*r));

	if (r != NULL) {
		r->type = type;
	}
	return r;
}

/*
 * Room for a decoded envelope in a submission's block: protobuf-c takes a struct per message
 * and a copy of each string (frame_test checks that a referral with every field fits, and
 * ledger_test that each envelope it submits does). One that does not goes on in blocks of
 * the arena's own.
 */
#define WREQ_ARENA_ROOM(env_len) (2 * (env_len) + 1024)

struct wreq *
wreq_new_submit(size_t env_len, size_t sealed_len)
{
	size_t head = (sizeof(struct wreq) + 15) & ~(size_t)15;
	size_t room = WREQ_ARENA_ROOM(env_len);
	struct wreq *r;
	uint8_t *p;

	if (env_len > SIZE_MAX / 4 || sealed_len > SIZE_MAX / 4) {
		return NULL;
	}
	/* malloc, not calloc: only the request's own fields need zeroing, not the room */
	if ((p = malloc(head + room + env_len + 1 + sealed_len)) == NULL) {
		return NULL;
	}
	r = (struct wreq *)p;
	memset(r, 0, sizeof(*r));
	r->type = WREQ_SUBMIT;
	r->own_block = 1;
	pb_arena_init(&r->arena, p + head, room);
	r->env_bytes = p + head + room;
	r->env_len = env_len;
	r->env_bytes[env_len] = 0;
	if (sealed_len > 0) {
		r->sealed = r->env_bytes + env_len + 1;
		r->sealed_len = sealed_len;
	}
	return r;
}

void
wreq_free(struct wreq *r)
{
	if (r == NULL) {
		return;
	}
	if (r->own_block) {
		pb_arena_release(&r->arena);
		free(r);
		return;
	}
	free(r->env_bytes);
	free(r->sealed);
	envelope_free(r->env);
	free(r);
}

/* ---- Merkle nodes in the store ---- */

static int
tree_get_r(void *ctx, unsigned level, uint64_t index, uint8_t out[MERKLE_HASH_LEN])
{
	return store_tree_get(ctx, level, index, out);
}

/*
 * The writer's view of the tree: a batch, and the last two nodes put at each level. Appends
 * are in order, so the left sibling an append needs is always the node put at its level just
 * before the new one: it comes from here, not from a store lookup (tests/unit/ledger_test.c
 * counts the lookups: none per append). Nodes put in a transaction or savepoint that
 * is then aborted are gone from the store, so every abort forgets the cache (frontier_forget)
 * and the next use loads it again from what the store holds (frontier_sync).
 */
struct tree_w {
	struct frontier *f;
	struct store_wtxn *w;
};

static int
tree_get_w(void *ctx, unsigned level, uint64_t index, uint8_t out[MERKLE_HASH_LEN])
{
	struct tree_w *t = ctx;
	int i;

	for (i = 0; i < 2 && level < FRONTIER_LEVELS; i++) {
		if ((t->f->valid[i] >> level & 1) && t->f->index[i][level] == index) {
			memcpy(out, t->f->hash[i][level], MERKLE_HASH_LEN);
			return 0;
		}
	}
	return store_tree_get(store_wread(t->w), level, index, out);
}

static int
tree_put_w(void *ctx, unsigned level, uint64_t index, const uint8_t hash[MERKLE_HASH_LEN])
{
	struct tree_w *t = ctx;
	struct frontier *f = t->f;
	uint64_t bit = (uint64_t)1 << level;
	int err = store_tree_put(t->w, level, index, hash);

	if (level < FRONTIER_LEVELS) {
		f->valid[1] = (f->valid[1] & ~bit) | (err == 0 ? f->valid[0] & bit : 0);
		f->index[1][level] = f->index[0][level];
		memcpy(f->hash[1][level], f->hash[0][level], MERKLE_HASH_LEN);
		if (err == 0) {
			f->index[0][level] = index;
			memcpy(f->hash[0][level], hash, MERKLE_HASH_LEN);
			f->valid[0] |= bit;
		} else {
			f->valid[0] &= ~bit;
		}
	}
	return err;
}

/* After an abort: the nodes put since the view's start are gone, the cache with them. */
static void
frontier_forget(struct frontier *f)
{
	f->valid[0] = f->valid[1] = 0;
	f->stale = 1;
}

/*
 * Load the frontier of a tree of n leaves from the view `r`: for each one bit L of n, the node
 * (L, (n >> L) - 1), popcount(n) reads. Those are the perfect subtrees the tree is made of,
 * so appends and the root need no other node. A read that fails leaves its level out
 * (tree_get_w then reads the store).
 */
static void
frontier_load(struct frontier *f, struct store_rtxn *r, uint64_t n)
{
	unsigned level;

	f->valid[0] = f->valid[1] = 0;
	f->stale = 0;
	for (level = 0; level < FRONTIER_LEVELS && (n >> level) != 0; level++) {
		if ((n >> level & 1) == 0) {
			continue;
		}
		f->index[0][level] = (n >> level) - 1;
		if (store_tree_get(r, level, f->index[0][level], f->hash[0][level]) == 0) {
			f->valid[0] |= (uint64_t)1 << level;
		}
	}
}

/* Before using the frontier in batch `w`: load it if an abort made it stale. */
static void
frontier_sync(struct frontier *f, struct store_wtxn *w)
{
	if (f->stale) {
		frontier_load(f, store_wread(w), store_log_next(w) - 1);
	}
}

const struct merkle_store_ops ledger_tree_rops = {tree_get_r, NULL};
static const struct merkle_store_ops tree_wops = {tree_get_w, tree_put_w};

/* ---- referral state ---- */

/* The writer's encoding buffer, at least len bytes (NULL when out of memory). */
static uint8_t *
wbuf(struct ledger *lg, size_t len)
{
	if (len > lg->buf_cap) {
		size_t cap = len < 4096 ? 4096 : len + len / 2;
		uint8_t *b = realloc(lg->buf, cap);

		if (b == NULL) {
			return NULL;
		}
		lg->buf = b;
		lg->buf_cap = cap;
	}
	return lg->buf;
}

/* The state record, without its history: each history item is a record of its own
 * (refstate_history_add), so saving a state costs the same however long its history is. */
static int
state_save(struct ledger *lg, struct store_wtxn *w, Ihala__V2__ReferralState *st)
{
	size_t len;
	uint8_t *buf;
	int err;

	if (st->n_history > 0 && (err = refstate_history_move(w, st)) != 0) {
		return err; /* a state from an earlier release: its items get records once */
	}
	len = ihala__v2__referral_state__get_packed_size(st);
	if ((buf = wbuf(lg, len ? len : 1)) == NULL) {
		return IHALA_ENOMEM;
	}
	ihala__v2__referral_state__pack(st, buf);
	return store_referral_put(w, st->referral_id, buf, len);
}

/*
 * The writer's cache of decoded states (refstate_cache): consecutive events of a referral,
 * within a batch or across batches, take its state from there instead of unpacking the
 * record again. The cache is write-through: a state is kept only when it equals the record
 * as the batch holds it (unchanged since it was read, or just put by state_save). Whatever
 * was put in a transaction or savepoint that is aborted is gone from the store, so every
 * abort clears the cache (states_forget), like the frontier; after a commit every state it
 * holds is the committed record.
 */
#define STATE_CACHE 4096

/* Referral `rid`'s state as batch `w` holds it, owned by the caller: from the cache, or
 * unpacked from the store (refstate_load's errors). */
static int
state_take(struct ledger *lg, struct store_wtxn *w, const char *rid, Ihala__V2__ReferralState **out)
{
	if ((*out = refstate_cache_take(lg->states, rid)) != NULL) {
		return 0;
	}
	return refstate_load(store_wread(w), rid, out);
}

/* Done with a state from state_take or refstate_new: kept when the request went well (err
 * 0), in which case it equals the stored record (never changed, or saved since); freed
 * otherwise (the caller's transaction or savepoint is about to be aborted). */
static void
state_done(struct ledger *lg, Ihala__V2__ReferralState *st, int err)
{
	if (err == 0) {
		refstate_cache_keep(lg->states, st);
	} else {
		refstate_free(st);
	}
}

/* After an abort: states put since the transaction's or savepoint's start are gone. */
static void
states_forget(struct ledger *lg)
{
	refstate_cache_clear(lg->states);
}

void
ledger_state_stats(const struct ledger *lg, struct refstate_cache_stats *out)
{
	refstate_cache_stats(lg->states, out);
}

struct state_check {
	struct store_rtxn *r;
	uint8_t *buf;
	size_t cap;
	size_t n;
};

static int
state_check_one(void *arg, const Ihala__V2__ReferralState *st)
{
	struct state_check *c = arg;
	size_t len = ihala__v2__referral_state__get_packed_size(st);
	const void *p;
	size_t plen;
	int err;

	if (len > c->cap) {
		uint8_t *b = realloc(c->buf, len);

		if (b == NULL) {
			return IHALA_ENOMEM;
		}
		c->buf = b;
		c->cap = len;
	}
	ihala__v2__referral_state__pack(st, c->buf);
	if ((err = store_referral_get(c->r, st->referral_id, &p, &plen)) != 0) {
		log_warnx("state cache: referral '%s' is not in the store", st->referral_id);
		return IHALA_ESTORE;
	}
	if (plen != len || memcmp(p, c->buf, len) != 0) {
		log_warnx("state cache: referral '%s' differs from the store", st->referral_id);
		return IHALA_ESTORE;
	}
	c->n++;
	return 0;
}

int
ledger_state_check(struct ledger *lg, size_t *n_checked)
{
	struct state_check c = {NULL, NULL, 0, 0};
	int err;

	if ((err = store_rbegin(lg->p.store, &c.r)) != 0) {
		return err;
	}
	err = refstate_cache_each(lg->states, state_check_one, &c);
	store_rend(c.r);
	free(c.buf);
	if (n_checked != NULL) {
		*n_checked = c.n;
	}
	return err;
}

/* ---- deadlines and retention: meta keys "deadline:<20-digit ms>:<referral id>" (and
 * "retention:...") ---- */

/* Keys are built by hand: snprintf was a twentieth of the writer's instructions. Each part
 * is cut at the buffer's end, as snprintf would. */
static size_t
key_put(char *buf, size_t len, size_t at, const char *s, size_t n)
{
	if (at + n >= len) {
		n = at < len - 1 ? len - 1 - at : 0;
	}
	memcpy(buf + at, s, n);
	buf[at + n] = '\0';
	return at + n;
}

static void
time_key(char *buf, size_t len, const char *prefix, uint64_t when, const char *rid)
{
	char digits[20]; /* %020llu: UINT64_MAX has 20 digits */
	size_t at;
	int i;

	for (i = 19; i >= 0; i--) {
		digits[i] = (char)('0' + when % 10);
		when /= 10;
	}
	at = key_put(buf, len, 0, prefix, strlen(prefix));
	at = key_put(buf, len, at, digits, sizeof(digits));
	at = key_put(buf, len, at, ":", 1);
	key_put(buf, len, at, rid, strlen(rid));
}

/* ---- log entries ---- */

static int
log_entry(struct ledger *lg, struct store_wtxn *w, const Ihala__V2__LogEntry *e_in,
          uint64_t *seq_out, uint8_t leaf[MERKLE_HASH_LEN])
{
	Ihala__V2__LogEntry e = *e_in;
	uint64_t seq;
	size_t len;
	uint8_t *buf;
	int err;

	e.seq = store_log_next(w);
	len = ihala__v2__log_entry__get_packed_size(&e);
	if ((buf = wbuf(lg, len)) == NULL) {
		return IHALA_ENOMEM;
	}
	ihala__v2__log_entry__pack(&e, buf);
	err = store_log_append(w, buf, len, &seq);
	if (err == 0 && seq != e.seq) {
		log_warnx("store assigned seq %llu where %llu was expected",
		          (unsigned long long)seq, (unsigned long long)e.seq);
		err = IHALA_EINTERNAL;
	}
	if (err == 0) {
		err = merkle_leaf_hash(buf, len, leaf);
	}
	if (err == 0) {
		struct tree_w t = {&lg->frontier, w};

		err = merkle_append(&tree_wops, &t, seq - 1, leaf);
	}
	if (err == 0) {
		*seq_out = seq;
	}
	return err;
}

/* What a queued seq is about, kept with it (store_queue_put_tagged) so that its ack needs no
 * decoding: a kind letter and the referral id. */
#define TAG_REFERRAL 'R' /* the submission of a new referral: its ack marks it received */
#define TAG_UPDATE 'S'   /* any other submission */
#define TAG_EVENT 'E'    /* a broker event (received, overdue) */

static void
refuse(struct wreq *r, int err, const char *text)
{
	r->err = err;
	r->status = IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED;
	snprintf(r->text, sizeof(r->text), "%s", text != NULL ? text : ihala_strerror(err));
}

/* ---- fair shares: one sender's part of a recipient's queue, one referral's volume ---- */

/* Meta key of the counter of undelivered entries of `sender` in `recipient`'s queue. (The
 * bytes logged on a referral are kept in its state, saved with every entry anyway.) */
#define SHARE_PREFIX "qshare:"

static uint64_t
meta_u64(struct store_rtxn *rv, const char *key)
{
	const void *v;
	size_t len;
	uint64_t n = 0;

	if (store_meta_get(rv, key, &v, &len) == 0 && len == sizeof(n)) {
		memcpy(&n, v, sizeof(n));
	}
	return n;
}

static int
meta_u64_put(struct store_wtxn *w, const char *key, uint64_t n)
{
	if (n == 0) {
		int err = store_meta_del(w, key);

		return err == IHALA_ENOTFOUND ? 0 : err;
	}
	return store_meta_put(w, key, &n, sizeof(n));
}

static void
share_key(char *buf, size_t len, const char *recipient, const char *sender)
{
	size_t at;

	at = key_put(buf, len, 0, SHARE_PREFIX, strlen(SHARE_PREFIX));
	at = key_put(buf, len, at, recipient, strlen(recipient));
	at = key_put(buf, len, at, ":", 1);
	key_put(buf, len, at, sender, strlen(sender));
}

/*
 * The cached count of `key`, read from the store on first use in the batch; NULL when the
 * cache is off or full (the caller goes to the store). A batch without savepoints is one
 * transaction that commits or aborts whole, so the cache is written back before its commit
 * (shares_flush) and dropped otherwise (shares_forget); with savepoints (a request may be
 * aborted alone) it is off. A batch's many entries between a few agencies so cost a read and
 * a write per pair, not per entry.
 */
static struct share_slot *
share_slot(struct ledger *lg, struct store_rtxn *rv, const char *key)
{
	struct share_slot *sl;
	size_t i;

	if (!lg->shares_on) {
		return NULL;
	}
	for (i = 0; i < lg->n_shares; i++) {
		if (strcmp(lg->shares[i].key, key) == 0) {
			return &lg->shares[i];
		}
	}
	if (lg->n_shares == SHARE_CACHE) {
		return NULL;
	}
	sl = &lg->shares[lg->n_shares++];
	id_copy(sl->key, sizeof(sl->key), key);
	sl->n = meta_u64(rv, key);
	sl->dirty = 0;
	return sl;
}

static void
shares_forget(struct ledger *lg)
{
	lg->n_shares = 0;
}

static int
shares_flush(struct ledger *lg, struct store_wtxn *w)
{
	size_t i;
	int err = 0;

	for (i = 0; i < lg->n_shares && err == 0; i++) {
		if (lg->shares[i].dirty) {
			err = meta_u64_put(w, lg->shares[i].key, lg->shares[i].n);
		}
	}
	shares_forget(lg);
	lg->shares_on = 0;
	return err;
}

/* The sender's entries in the recipient's queue now. */
static uint64_t
share_get(struct ledger *lg, struct store_rtxn *rv, const char *recipient, const char *sender)
{
	char key[SHARE_KEY_MAX];
	struct share_slot *sl;

	share_key(key, sizeof(key), recipient, sender);
	sl = share_slot(lg, rv, key);
	return sl != NULL ? sl->n : meta_u64(rv, key);
}

/* Add one (delta 1) or take one (-1, never below 0: an entry queued before the counter
 * existed) to the sender's count in the recipient's queue. */
static int
share_add(struct ledger *lg, struct store_wtxn *w, const char *recipient, const char *sender,
          int delta)
{
	char key[SHARE_KEY_MAX];
	struct share_slot *sl;
	uint64_t n;

	share_key(key, sizeof(key), recipient, sender);
	sl = share_slot(lg, store_wread(w), key);
	n = sl != NULL ? sl->n : meta_u64(store_wread(w), key);
	n = delta > 0 ? n + 1 : n > 0 ? n - 1 : 0;
	if (sl != NULL) {
		sl->n = n;
		sl->dirty = 1;
		return 0;
	}
	return meta_u64_put(w, key, n);
}

/* The referral's messages in its current minute (a fixed window that starts with the first
 * message after the last one ended): kept in its state, so counting costs nothing. */
static uint64_t
rate_count(const Ihala__V2__ReferralState *st, uint64_t now_ms)
{
	return now_ms - st->rate_window_ms < 60000 ? st->rate_count : 0;
}

static void
rate_add(Ihala__V2__ReferralState *st, uint64_t now_ms)
{
	if (st->rate_count == 0 || now_ms - st->rate_window_ms >= 60000) {
		st->rate_window_ms = now_ms;
		st->rate_count = 0;
	}
	st->rate_count++;
}

/*
 * The fair-share checks of an accepted submission to `recipient` on referral `cur` (NULL: a
 * new one): the sender's share of the recipient's queue, the referral's message rate and its
 * byte quota. 0, or the refusal set on r (its text names the limit and nothing of another
 * agency's figures). *refbytes gets the referral's logged bytes so far.
 */
static int
shares_check(struct ledger *lg, struct store_rtxn *rv, struct wreq *r, const char *recipient,
             const char *rid, const Ihala__V2__ReferralState *cur, uint64_t *refbytes)
{
	const struct writer_policy *pol = lg->p.policy;
	uint64_t share = pol->queue_limit * pol->queue_share / 100;

	share = share > 0 ? share : 1;
	/* 0 or 100: no share but the whole queue (queue_limit, checked before). */
	if (pol->queue_share > 0 && pol->queue_share < 100 &&
	    share_get(lg, rv, recipient, r->agency) >= share) {
		refuse(r, IHALA_EQUEUEFULL, NULL);
		snprintf(r->text, sizeof(r->text),
		         "this sender's share of the recipient's queue is full (%llu undelivered "
		         "entries, %llu%% of queue_limit); retry later",
		         (unsigned long long)share, (unsigned long long)pol->queue_share);
		return 1;
	}
	if (cur != NULL && pol->referral_rate > 0 &&
	    rate_count(cur, r->now_ms) >= pol->referral_rate) {
		refuse(r, IHALA_EOVERLOAD, NULL);
		snprintf(r->text, sizeof(r->text),
		         "referral '%s' has had %llu messages in the last minute, its limit "
		         "(referral_rate); retry later",
		         rid, (unsigned long long)pol->referral_rate);
		return 1;
	}
	*refbytes = cur != NULL ? cur->bytes_logged : 0;
	if (pol->referral_bytes > 0 &&
	    *refbytes + r->env_len + r->sealed_len > pol->referral_bytes) {
		refuse(r, IHALA_EQUOTA, NULL);
		snprintf(r->text, sizeof(r->text),
		         "referral '%s' would pass its quota of %llu bytes of messages "
		         "(referral_bytes)",
		         rid, (unsigned long long)pol->referral_bytes);
		return 1;
	}
	return 0;
}

/*
 * A queued seq's tag: its kind, the referral id, and (after a NUL) its sender, so that the
 * ack can give the sender's share back without decoding the entry.
 */
static int
queue_put(struct store_wtxn *w, const char *agency, uint64_t seq, char kind, const char *rid,
          const char *sender)
{
	char tag[STORE_QUEUE_TAG_MAX];
	size_t n = rid != NULL ? strlen(rid) : 0;
	size_t m = sender != NULL ? strlen(sender) : 0;

	if (n + m + 2 > sizeof(tag)) {
		return store_queue_put(w, agency, seq); /* untagged: the ack decodes the entry */
	}
	tag[0] = kind;
	if (n > 0) {
		memcpy(tag + 1, rid, n);
	}
	if (m == 0) {
		return store_queue_put_tagged(w, agency, seq, tag, n + 1);
	}
	tag[n + 1] = '\0';
	memcpy(tag + n + 2, sender, m);
	return store_queue_put_tagged(w, agency, seq, tag, n + m + 2);
}

static void
add_notify(struct wreq *r, const char *agency)
{
	int i;

	for (i = 0; i < r->n_notify; i++) {
		if (strcmp(r->notify[i], agency) == 0) {
			return;
		}
	}
	if (r->n_notify < WREQ_MAX_NOTIFY) {
		id_copy(r->notify[r->n_notify++], sizeof(r->notify[0]), agency);
	} else {
		r->notify_all = 1;
	}
}

/* ---- erasure ---- */

/*
 * The referrals an erasure covers: the root, then its onward referrals, breadth first, each
 * once, however many (a bound here left the rest of a large tree unerased, with the root
 * marked erased so that nobody could erase them from it again). A referral has one parent,
 * so a walk meets each once; the set still refuses a repeat (a damaged "children" index must
 * not loop), by a hash of the ids in `slot` (index + 1, 0 free; twice the ids at least).
 */
struct erase_set {
	char **ids;
	size_t n, cap;
	size_t *slot;
	size_t nslot;
};

static size_t
erase_hash(const char *rid)
{
	size_t h = 1469598103934665603ULL;

	for (; *rid != '\0'; rid++) {
		h = (h ^ (unsigned char)*rid) * 1099511628211ULL;
	}
	return h;
}

/* The slot of rid: where it is, or the free one where it would go. */
static size_t *
erase_slot(const struct erase_set *es, const char *rid)
{
	size_t i = erase_hash(rid) & (es->nslot - 1);

	while (es->slot[i] != 0 && strcmp(es->ids[es->slot[i] - 1], rid) != 0) {
		i = (i + 1) & (es->nslot - 1);
	}
	return &es->slot[i];
}

static int
erase_add(struct erase_set *es, const char *rid)
{
	size_t *slot;

	if (2 * (es->n + 1) > es->nslot) {
		size_t i, nslot = es->nslot == 0 ? 16 : es->nslot * 2;
		size_t *old = es->slot;

		if ((es->slot = calloc(nslot, sizeof(*es->slot))) == NULL) {
			es->slot = old;
			return IHALA_ENOMEM;
		}
		free(old);
		es->nslot = nslot;
		for (i = 0; i < es->n; i++) {
			*erase_slot(es, es->ids[i]) = i + 1;
		}
	}
	slot = erase_slot(es, rid);
	if (*slot != 0) {
		return 0;
	}
	if (es->n == es->cap) {
		size_t cap = es->cap == 0 ? 8 : es->cap * 2;
		char **ids = realloc(es->ids, cap * sizeof(*ids));

		if (ids == NULL) {
			return IHALA_ENOMEM;
		}
		es->ids = ids;
		es->cap = cap;
	}
	if ((es->ids[es->n] = strdup(rid)) == NULL) {
		return IHALA_ENOMEM;
	}
	*slot = ++es->n;
	return 0;
}

static int
erase_child_cb(void *arg, const char *child)
{
	return erase_add(arg, child);
}

static void
erase_set_free(struct erase_set *es)
{
	size_t i;

	for (i = 0; i < es->n; i++) {
		free(es->ids[i]);
	}
	free(es->ids);
	free(es->slot);
}

/* Seqs (history records of a referral) whose sealed rows an erasure deleted. */
struct erase_seqs {
	struct store_wtxn *w;
	uint64_t *seqs;
	size_t n, cap;
};

static int
erase_seq_cb(void *arg, uint64_t seq, const void *item, size_t len)
{
	struct erase_seqs *es = arg;
	int err;

	(void)item;
	(void)len;
	err = store_sealed_del(es->w, seq);
	if (err == IHALA_ENOTFOUND) {
		return 0;
	}
	if (err != 0) {
		return err;
	}
	if (es->n == es->cap) {
		size_t cap = es->cap == 0 ? 16 : es->cap * 2;
		uint64_t *seqs = realloc(es->seqs, cap * sizeof(*seqs));

		if (seqs == NULL) {
			return IHALA_ENOMEM;
		}
		es->seqs = seqs;
		es->cap = cap;
	}
	es->seqs[es->n++] = seq;
	return 0;
}

static int
party_add(char (*parties)[ID_AGENCY_MAX + 1], size_t *n, size_t cap, const char *agency)
{
	size_t i;

	if (agency == NULL || agency[0] == '\0') {
		return 0;
	}
	for (i = 0; i < *n; i++) {
		if (strcmp(parties[i], agency) == 0) {
			return 0;
		}
	}
	if (*n == cap) {
		return IHALA_ETOOLARGE;
	}
	id_copy(parties[(*n)++], sizeof(parties[0]), agency);
	return 0;
}

#define ERASE_MAX_PARTIES 256

/*
 * Erase referral `root` and its onward referrals (with `only_closed`, those of them not yet
 * closed are left for their own retention): delete the sealed rows of every entry of theirs,
 * mark them erased (with a history item), and log one ERASURE entry per party (each referrer
 * and recipient, and `eraser`), queued to it: sender `eraser` ("" for the retention period),
 * the root, the erased seqs, `reason`, ref_seq `ref_seq` (the Erase submission, or 0). Already
 * erased referrals are passed over. r (may be NULL) gets the agencies to notify.
 */
static int
erase_tree(struct ledger *lg, struct store_wtxn *w, const char *root, const char *eraser,
           Ihala__V2__ReasonCode reason, uint64_t ref_seq, uint64_t t, int only_closed,
           struct wreq *r)
{
	struct store_rtxn *rv = store_wread(w);
	struct erase_set set = {NULL, 0, 0, NULL, 0};
	struct erase_seqs seqs = {w, NULL, 0, 0};
	char(*parties)[ID_AGENCY_MAX + 1] = calloc(ERASE_MAX_PARTIES, sizeof(*parties));
	char *done = NULL;
	size_t i, np = 0, first_seq = 0;
	int err;

	if (parties == NULL) {
		return IHALA_ENOMEM;
	}
	err = erase_add(&set, root);
	for (i = 0; err == 0 && i < set.n; i++) {
		err = store_children_iter(rv, set.ids[i], erase_child_cb, &set);
		err = err > 0 ? 0 : err;
	}
	if (err == 0 && (done = calloc(set.n, 1)) == NULL) {
		err = IHALA_ENOMEM;
	}
	/* 1: the sealed rows, and who the parties are */
	(void)party_add(parties, &np, ERASE_MAX_PARTIES, eraser);
	for (i = 0; err == 0 && i < set.n; i++) {
		Ihala__V2__ReferralState *st = NULL;

		err = state_take(lg, w, set.ids[i], &st);
		if (err == IHALA_ENOTFOUND) {
			err = 0;
			continue;
		}
		if (err == 0 && !st->erased && (!only_closed || policy_is_terminal(st->status))) {
			done[i] = 1;
			err = store_history_iter(rv, st->referral_id, erase_seq_cb, &seqs);
			if (err == 0) {
				err = party_add(parties, &np, ERASE_MAX_PARTIES, st->referrer);
			}
			if (err == 0) {
				err = party_add(parties, &np, ERASE_MAX_PARTIES, st->recipient);
			}
		}
		state_done(lg, st, 0); /* as read */
	}
	/* 2: one ERASURE entry per party, queued to it */
	for (i = 0; err == 0 && i < np; i++) {
		Ihala__V2__LogEntry e = IHALA__V2__LOG_ENTRY__INIT;
		Ihala__V2__BrokerEvent ev = IHALA__V2__BROKER_EVENT__INIT;
		uint8_t leaf[MERKLE_HASH_LEN];
		uint64_t seq;

		ev.referral_id = (char *)root;
		ev.ref_seq = ref_seq;
		ev.text = "erased";
		ev.n_erased_seqs = seqs.n;
		ev.erased_seqs = seqs.seqs;
		ev.reason_code = reason;
		e.broker_time_ms = t;
		e.sender = (char *)eraser;
		e.recipient = parties[i];
		e.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_ERASURE;
		e.event = &ev;
		err = log_entry(lg, w, &e, &seq, leaf);
		if (err == 0) {
			err = queue_put(w, parties[i], seq, TAG_EVENT, root, NULL);
		}
		if (err == 0 && r != NULL) {
			add_notify(r, parties[i]);
		}
		if (first_seq == 0) {
			first_seq = seq;
		}
	}
	/* 3: the referrals are marked erased, with an item in their history */
	for (i = 0; err == 0 && i < set.n; i++) {
		Ihala__V2__ReferralState *st = NULL;

		if (!done[i]) {
			continue;
		}
		err = state_take(lg, w, set.ids[i], &st);
		if (err == 0) {
			st->erased = 1;
			err = refstate_history_add(w, st->referral_id,
			                           ref_seq != 0 ? ref_seq : first_seq, t, eraser,
			                           st->status, "erased");
		}
		if (err == 0) {
			err = state_save(lg, w, st);
		}
		if (st != NULL) {
			state_done(lg, st, err);
		}
	}
	if (err == 0 && first_seq != 0) {
		size_t nd = 0;

		for (i = 0; i < set.n; i++) {
			nd += done[i];
		}
		log_info("referral '%s' erased%s: %zu referrals, %zu sealed parts deleted, %zu "
		         "parties told",
		         root, eraser[0] == '\0' ? " (retention period)" : "", nd, seqs.n, np);
		metrics_inc_erasures();
	}
	free(seqs.seqs);
	free(done);
	free(parties);
	erase_set_free(&set);
	return err;
}

/* An Unreadable: the sender must be the recipient of the submission at ref_seq, which had a
 * sealed part; routed to that submission's sender (d->recipient). 0, or 1 with r refused. */
static int
unreadable_check(struct store_rtxn *rv, struct wreq *r, struct policy_decision *d)
{
	const Ihala__V2__Unreadable *u = r->env->unreadable;
	Ihala__V2__LogEntry *e = NULL;
	Ihala__V2__Envelope *env = NULL;
	const void *data;
	size_t len;
	int ok = 0;

	if (store_log_get(rv, u->ref_seq, &data, &len) == 0 &&
	    logentry_decode(data, len, &e) == 0 &&
	    e->kind == IHALA__V2__ENTRY_KIND__ENTRY_KIND_SUBMISSION &&
	    strcmp(e->recipient, r->agency) == 0 &&
	    envelope_decode(e->envelope.data, e->envelope.len, &env) == 0) {
		ok = 1;
	}
	if (!ok) {
		refuse(r, IHALA_ENOTPARTY, NULL);
		snprintf(r->text, sizeof(r->text),
		         "no submission at seq %llu was delivered to agency '%s'",
		         (unsigned long long)u->ref_seq, r->agency);
	} else if (env->sealed_sha256.len == 0) {
		ok = 0;
		refuse(r, IHALA_ESCHEMA, NULL);
		snprintf(r->text, sizeof(r->text), "the submission at seq %llu had no sealed part",
		         (unsigned long long)u->ref_seq);
	} else if (u->referral_id[0] != '\0' && policy_referral_id(env) != NULL &&
	           strcmp(u->referral_id, policy_referral_id(env)) != 0) {
		ok = 0;
		refuse(r, IHALA_ESCHEMA, NULL);
		snprintf(r->text, sizeof(r->text),
		         "the submission at seq %llu is about referral '%s', not '%s'",
		         (unsigned long long)u->ref_seq, policy_referral_id(env), u->referral_id);
	} else {
		id_copy(d->recipient, sizeof(d->recipient), e->sender);
	}
	envelope_free(env);
	logentry_free(e);
	return ok ? 0 : 1;
}

/* An Erase the policy allowed: the submission logged (receipted as usual, queued to no one),
 * then the referral and its onward referrals erased. */
static int
apply_erase(struct ledger *lg, struct store_wtxn *w, struct wreq *r, const char *rid)
{
	Ihala__V2__LogEntry e = IHALA__V2__LOG_ENTRY__INIT;
	uint64_t seq;
	int err;

	e.broker_time_ms = r->now_ms;
	e.sender = r->agency;
	e.recipient = "";
	e.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_SUBMISSION;
	e.envelope.data = r->env_bytes;
	e.envelope.len = r->env_len;
	err = log_entry(lg, w, &e, &seq, r->leaf);
	if (err == 0) {
		err = store_msgid_put(w, r->agency, r->env->message_id, seq);
	}
	if (err == 0) {
		err = erase_tree(lg, w, rid, r->agency, r->env->erase->reason_code, seq, r->now_ms,
		                 0, r);
	}
	if (err == 0) {
		r->status = IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED;
		r->seq = seq;
	}
	return err;
}

/* A submission inside its own savepoint `w`. Returns an LMDB-level error (the savepoint is
 * then aborted by the caller); policy refusals are results, returned as 0 with r->err set. */
static int
apply_submit(struct ledger *lg, struct store_wtxn *w, struct wreq *r)
{
	struct writer_policy *pol = lg->p.policy;
	struct store_rtxn *rv = store_wread(w);
	Ihala__V2__ReferralState *cur = NULL, *parent = NULL;
	struct policy_decision d;
	Ihala__V2__LogEntry e = IHALA__V2__LOG_ENTRY__INIT;
	const char *rid;
	uint64_t seq, orig, refbytes = 0;
	size_t queued;
	int err;

	/* Idempotency: the same sender and message id is answered with the original seq. */
	err = store_msgid_get(rv, r->agency, r->env->message_id, &orig);
	if (err == 0) {
		const void *data;
		size_t len;
		Ihala__V2__LogEntry *old = NULL;

		err = store_log_get(rv, orig, &data, &len);
		if (err == 0) {
			err = logentry_decode(data, len, &old);
		}
		if (err != 0) {
			return err;
		}
		if (old->envelope.len != r->env_len ||
		    memcmp(old->envelope.data, r->env_bytes, r->env_len) != 0) {
			logentry_free(old);
			refuse(r, IHALA_EMSGID, NULL);
			snprintf(
			    r->text, sizeof(r->text),
			    "message id '%s' was already used for different content (seq %llu)",
			    r->env->message_id, (unsigned long long)orig);
			return 0;
		}
		logentry_free(old);
		r->status = IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_DUPLICATE;
		r->seq = orig;
		return store_tree_get(rv, 0, orig - 1, r->leaf);
	}
	if (err != IHALA_ENOTFOUND) {
		return err;
	}

	rid = policy_referral_id(r->env);
	err = state_take(lg, w, rid, &cur);
	if (err != 0 && err != IHALA_ENOTFOUND) {
		return err;
	}
	if (r->env->kind_case == IHALA__V2__ENVELOPE__KIND_REFERRAL &&
	    r->env->referral->parent_referral_id[0] != '\0') {
		err = refstate_load(rv, r->env->referral->parent_referral_id, &parent);
		if (err == 0) {
			err = refstate_load_scope(rv, parent);
		}
		if (err != 0 && err != IHALA_ENOTFOUND) {
			refstate_free(parent);
			state_done(lg, cur, 0); /* as read */
			return err;
		}
	}
	if (policy_check(&pol->view, r->agency, r->env, cur, parent, &d) != 0) {
		refuse(r, d.err, d.text);
		err = 0;
		goto out;
	}
	if (d.kind == POLICY_KIND_ERASE) {
		/* erase_tree takes the states it changes itself: this copy would be stale */
		refstate_free(cur);
		cur = NULL;
		err = apply_erase(lg, w, r, rid);
		goto out;
	}
	if (d.kind == POLICY_KIND_UNREADABLE && unreadable_check(rv, r, &d) != 0) {
		err = 0;
		goto out;
	}
	err = store_queue_count(rv, d.recipient, &queued);
	if (err != 0 && err != IHALA_ENOTFOUND) {
		goto out;
	}
	if (err == 0 && queued >= pol->queue_limit) {
		/* The limit, not the queue's length: that is the recipient's business. */
		refuse(r, IHALA_EQUEUEFULL, NULL);
		snprintf(r->text, sizeof(r->text),
		         "queue of '%s' is full (queue_limit %zu undelivered entries); retry later",
		         d.recipient, pol->queue_limit);
		err = 0;
		goto out;
	}
	if (shares_check(lg, rv, r, d.recipient, rid, d.kind == POLICY_KIND_REFERRAL ? NULL : cur,
	                 &refbytes) != 0) {
		err = 0;
		goto out;
	}

	e.broker_time_ms = r->now_ms;
	e.sender = r->agency;
	e.recipient = d.recipient;
	e.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_SUBMISSION;
	e.envelope.data = r->env_bytes;
	e.envelope.len = r->env_len;
	err = log_entry(lg, w, &e, &seq, r->leaf);
	if (err == 0 && r->sealed_len > 0) {
		/* Beside the entry, in its transaction: the entry holds only its hash. */
		err = store_sealed_put(w, seq, r->sealed, r->sealed_len);
	}
	if (err == 0) {
		err = store_msgid_put(w, r->agency, r->env->message_id, seq);
	}
	if (err == 0) {
		err = queue_put(w, d.recipient, seq,
		                d.kind == POLICY_KIND_REFERRAL ? TAG_REFERRAL : TAG_UPDATE, rid,
		                r->agency);
	}
	if (err == 0) {
		err = share_add(lg, w, d.recipient, r->agency, 1);
	}
	if (err != 0) {
		goto out;
	}

	if (d.kind == POLICY_KIND_REFERRAL) {
		const Ihala__V2__Referral *ref = r->env->referral;
		unsigned pr = (unsigned)ref->priority < 4 ? (unsigned)ref->priority : 3;
		uint64_t deadline = r->now_ms + pol->deadline_ms[pr];
		char key[128];

		refstate_free(cur); /* none: policy_check refuses a known referral id */
		cur = refstate_new(ref, r->agency, d.recipient, deadline);
		if (cur == NULL) {
			err = IHALA_ENOMEM;
			goto out;
		}
		time_key(key, sizeof(key), DEADLINE_PREFIX, deadline, ref->referral_id);
		err = store_meta_put(w, key, "", 0);
		if (err == 0) {
			err = refstate_history_add(w, cur->referral_id, seq, r->now_ms, r->agency,
			                           S(REQUESTED), "referral");
		}
		if (err == 0 && ref->parent_referral_id[0] != '\0') {
			err = store_child_put(w, ref->parent_referral_id, ref->referral_id);
		}
	} else if (cur == NULL) {
		/* an Unreadable about no referral the broker knows: logged and routed only */
		if (err == 0) {
			r->status = IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED;
			r->seq = seq;
			add_notify(r, d.recipient);
		}
		goto out;
	} else {
		const char *what = d.kind == POLICY_KIND_STATUS       ? "status"
		                   : d.kind == POLICY_KIND_OUTCOME    ? "outcome"
		                   : d.kind == POLICY_KIND_UNREADABLE ? "unreadable"
		                                                      : "note";

		if (d.new_status != S(UNSPECIFIED)) {
			cur->status = d.new_status;
		}
		err = refstate_history_add(w, cur->referral_id, seq, r->now_ms, r->agency,
		                           cur->status, what);
		/* Closed: its sealed parts go when the retention period ends. */
		if (err == 0 && d.new_status != S(UNSPECIFIED) &&
		    policy_is_terminal(d.new_status) && pol->retention_ms > 0 && !cur->erased) {
			char key[128];

			time_key(key, sizeof(key), RETENTION_PREFIX, r->now_ms + pol->retention_ms,
			         cur->referral_id);
			err = store_meta_put(w, key, "", 0);
		}
	}
	if (err == 0) {
		cur->bytes_logged = refbytes + r->env_len + r->sealed_len;
		rate_add(cur, r->now_ms);
		err = state_save(lg, w, cur);
	}
	if (err == 0) {
		r->status = IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED;
		r->seq = seq;
		add_notify(r, d.recipient);
	}
out:
	state_done(lg, cur, err);
	refstate_free(parent);
	return err;
}

/* Broker-made status (received, overdue) of a referral, logged and queued for the referrer. */
static int
broker_status(struct ledger *lg, struct store_wtxn *w, Ihala__V2__ReferralState *st,
              Ihala__V2__TaskStatus status, uint64_t ref_seq, uint64_t t, const char *text,
              const char *sender, struct wreq *r)
{
	Ihala__V2__LogEntry e = IHALA__V2__LOG_ENTRY__INIT;
	Ihala__V2__BrokerEvent ev = IHALA__V2__BROKER_EVENT__INIT;
	uint8_t leaf[MERKLE_HASH_LEN];
	uint64_t seq;
	int err;

	ev.referral_id = st->referral_id;
	ev.status = status;
	ev.ref_seq = ref_seq;
	ev.text = (char *)text;
	e.broker_time_ms = t;
	e.sender = (char *)sender;
	e.recipient = st->referrer;
	e.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_BROKER_STATUS;
	e.event = &ev;
	err = log_entry(lg, w, &e, &seq, leaf);
	if (err == 0) {
		err = queue_put(w, st->referrer, seq, TAG_EVENT, st->referral_id, NULL);
	}
	if (err == 0) {
		if (status == S(OVERDUE)) {
			st->overdue = 1;
		} else {
			st->status = status;
		}
		err = refstate_history_add(w, st->referral_id, seq, t, "", status, text);
	}
	if (err == 0) {
		err = state_save(lg, w, st);
	}
	if (err == 0 && r != NULL) {
		add_notify(r, st->referrer);
	}
	return err;
}

/* What an untagged queued seq is about (a store written before tags): decode its entry. */
static int
ack_about_entry(struct store_rtxn *rv, uint64_t seq, char *tag, size_t cap, size_t *tag_len)
{
	Ihala__V2__LogEntry *orig;
	Ihala__V2__Envelope *env = NULL;
	const char *rid = NULL;
	const void *data;
	size_t len;
	char kind = TAG_EVENT;
	int err;

	*tag_len = 0;
	err = store_log_get(rv, seq, &data, &len);
	if (err != 0) {
		return err;
	}
	/* Our own entry, and its envelope, were decoded strictly when logged: a plain decode is
	 * enough here. */
	orig = ihala__v2__log_entry__unpack(NULL, len, data);
	if (orig == NULL) {
		return IHALA_ESTORE;
	}
	if (orig->kind == IHALA__V2__ENTRY_KIND__ENTRY_KIND_SUBMISSION &&
	    (env = ihala__v2__envelope__unpack(NULL, orig->envelope.len, orig->envelope.data)) !=
	        NULL) {
		rid = policy_referral_id(env);
		kind = env->kind_case == IHALA__V2__ENVELOPE__KIND_REFERRAL ? TAG_REFERRAL
		                                                            : TAG_UPDATE;
	} else if (orig->event != NULL) {
		rid = orig->event->referral_id; /* a broker event (received, overdue) */
	}
	if (rid != NULL && strlen(rid) + 1 <= cap) {
		size_t n = strlen(rid), m = orig->sender != NULL ? strlen(orig->sender) : 0;

		tag[0] = kind;
		memcpy(tag + 1, rid, n);
		*tag_len = n + 1;
		if (kind != TAG_EVENT && m > 0 && n + m + 2 <= cap) {
			tag[n + 1] = '\0';
			memcpy(tag + n + 2, orig->sender, m);
			*tag_len = n + m + 2;
		}
	}
	if (env != NULL) {
		ihala__v2__envelope__free_unpacked(env, NULL);
	}
	ihala__v2__log_entry__free_unpacked(orig, NULL);
	return 0;
}

static int
apply_ack_one(struct ledger *lg, struct store_wtxn *w, struct wreq *r, uint64_t ack_seq)
{
	struct store_rtxn *rv = store_wread(w);
	Ihala__V2__LogEntry e = IHALA__V2__LOG_ENTRY__INIT;
	Ihala__V2__BrokerEvent ev = IHALA__V2__BROKER_EVENT__INIT;
	Ihala__V2__ReferralState *st = NULL;
	char tag[STORE_QUEUE_TAG_MAX + 1];
	size_t tag_len;
	uint64_t seq;
	int err;

	err = store_queue_take(w, r->agency, ack_seq, tag, STORE_QUEUE_TAG_MAX, &tag_len);
	if (err == IHALA_ENOTFOUND) {
		return 0; /* a repeated ack: already logged */
	}
	if (err == 0 && tag_len == 0) {
		err = ack_about_entry(rv, ack_seq, tag, STORE_QUEUE_TAG_MAX, &tag_len);
	}
	if (err != 0) {
		return err;
	}
	tag[tag_len] = '\0';
	/* The sender's share of this queue has room again. */
	if (tag_len > 0 && tag[0] != TAG_EVENT && strlen(tag + 1) + 2 < tag_len) {
		err = share_add(lg, w, r->agency, tag + strlen(tag + 1) + 2, -1);
		if (err != 0) {
			return err;
		}
	}
	/* The recipient took a new referral: the broker marks it received (DESIGN §7). One
	 * entry, from the acking agency to the referrer, records both the delivery and the
	 * new status (PROTOCOL.md §7.3). */
	if (tag_len > 0 && tag[0] == TAG_REFERRAL) {
		err = state_take(lg, w, tag + 1, &st);
		if (err == 0 && st->status == S(REQUESTED) &&
		    strcmp(st->recipient, r->agency) == 0 &&
		    policy_transition(POLICY_PARTY_BROKER, st->status, S(RECEIVED), 0) == 0) {
			err = broker_status(lg, w, st, S(RECEIVED), ack_seq, r->now_ms, "received",
			                    r->agency, r);
			state_done(lg, st, err);
			return err;
		}
		state_done(lg, st, 0); /* as read */
		if (err != 0 && err != IHALA_ENOTFOUND) {
			return err;
		}
	}
	ev.ref_seq = ack_seq;
	ev.text = "delivered";
	if (tag_len > 0) {
		ev.referral_id = tag + 1;
	}
	e.broker_time_ms = r->now_ms;
	e.sender = r->agency;
	e.recipient = "";
	e.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_DELIVERY;
	e.event = &ev;
	return log_entry(lg, w, &e, &seq, r->leaf);
}

static int
apply_ack(struct ledger *lg, struct store_wtxn *w, struct wreq *r)
{
	size_t i;
	int err = 0;

	for (i = 0; i < r->n_acks && err == 0; i++) {
		err = apply_ack_one(lg, w, r, r->acks[i]);
	}
	return err;
}

/* Retention: closed referrals whose period ended are erased (with their closed onward
 * referrals), by the broker: sender "", RETENTION_EXPIRED. */
static int
apply_retention(struct ledger *lg, struct store_wtxn *w, struct wreq *r)
{
	struct store_rtxn *rv = store_wread(w);
	int guard, err = 0;

	for (guard = 0; guard < 64; guard++) {
		char key[128];
		uint64_t when;

		err = store_meta_first(rv, RETENTION_PREFIX, key, sizeof(key));
		if (err == IHALA_ENOTFOUND) {
			return 0;
		}
		if (err != 0) {
			return err;
		}
		when = strtoull(key + strlen(RETENTION_PREFIX), NULL, 10);
		if (when > r->now_ms) {
			return 0;
		}
		err = store_meta_del(w, key);
		if (err == 0) {
			err = erase_tree(lg, w, key + strlen(RETENTION_PREFIX) + 21, "",
			                 IHALA__V2__REASON_CODE__REASON_CODE_RETENTION_EXPIRED, 0,
			                 r->now_ms, 1, r);
		}
		if (err != 0) {
			return err;
		}
	}
	return err;
}

/* Overdue: referrals still requested or received past their deadline. */
static int
apply_tick(struct ledger *lg, struct store_wtxn *w, struct wreq *r)
{
	struct store_rtxn *rv = store_wread(w);
	int err = 0;
	int guard;

	/* Deadlines are meta keys ordered by time: look at the first few that are due. */
	for (guard = 0; guard < 256; guard++) {
		char key[128];
		const char *rid;
		Ihala__V2__ReferralState *st = NULL;
		uint64_t when;

		err = store_meta_first(rv, DEADLINE_PREFIX, key, sizeof(key));
		if (err == IHALA_ENOTFOUND) {
			return 0;
		}
		if (err != 0) {
			return err;
		}
		when = strtoull(key + strlen(DEADLINE_PREFIX), NULL, 10);
		if (when > r->now_ms) {
			return 0;
		}
		rid = key + strlen(DEADLINE_PREFIX) + 21;
		err = store_meta_del(w, key);
		if (err == 0) {
			err = state_take(lg, w, rid, &st);
		}
		if (err == IHALA_ENOTFOUND) {
			err = 0;
			continue;
		}
		if (err == 0 && (st->status == S(REQUESTED) || st->status == S(RECEIVED)) &&
		    !st->overdue) {
			log_info("referral '%s' to '%s' is overdue (no answer by its deadline)",
			         rid, st->recipient);
			metrics_inc_overdue();
			err = broker_status(lg, w, st, S(OVERDUE), 0, r->now_ms, "overdue", "", r);
		}
		state_done(lg, st, err);
		if (err != 0) {
			return err;
		}
	}
	return err;
}

/* One request against the batch `w`. Refusals (policy, a nearly full map) are decided before
 * anything is written and come back as 0 with r->err set; any other return is an LMDB-level
 * error, after which `w` may hold part of the request. */
static int
apply_one(struct ledger *lg, struct store_wtxn *w, struct wreq *r)
{
	switch (r->type) {
	case WREQ_SUBMIT:
		if (lg->nearly_full) {
			refuse(r, IHALA_ESTOREFULL,
			       "broker store is full; submissions are refused until an operator "
			       "grows map_size");
			return 0;
		}
		if (lg->disk_low) {
			refuse(r, IHALA_ESTOREFULL, DISK_FULL_TEXT);
			return 0;
		}
		return apply_submit(lg, w, r);
	case WREQ_ACK:
		return apply_ack(lg, w, r);
	case WREQ_TICK: {
		int err = apply_tick(lg, w, r);

		return err != 0 ? err : apply_retention(lg, w, r);
	}
	default:
		return 0;
	}
}

/* The same inside its own savepoint: an LMDB error (a full map, say) costs only this request,
 * which is refused with it; the batch goes on. */
static int
apply_saved(struct ledger *lg, struct store_wtxn *batch, struct wreq *r)
{
	struct store_wtxn *sub;
	int err;

	err = store_wsub_begin(batch, &sub);
	if (err != 0) {
		return err;
	}
	err = apply_one(lg, sub, r);
	if (err != 0 || r->err != 0) {
		store_wsub_abort(sub);
		frontier_forget(&lg->frontier);
		frontier_sync(&lg->frontier, batch);
		states_forget(lg);
		if (err != 0) {
			refuse(r, err, NULL);
			r->n_notify = 0;
			r->notify_all = 0;
			if (err == IHALA_ESTOREFULL) {
				snprintf(r->text, sizeof(r->text),
				         "broker store is full; submissions are refused until an "
				         "operator grows map_size");
			}
		}
		return err;
	}
	return store_wsub_commit(sub);
}

/*
 * Is a checkpoint due (every N entries or T ms)? If so, sign one of the tree as it stands at
 * the start of batch `w`, which is everything already committed with sync, and put it into
 * `w`: it reaches the disk with the batch, without a commit of its own, and still never
 * covers an entry that was not on disk when it was signed. *size gets the tree size signed
 * (0 when none is due or signing failed; the next batch tries again).
 */
static void
checkpoint_into(struct ledger *lg, struct store_wtxn *w, uint64_t t, int force, uint64_t *size)
{
	struct tree_w tw = {&lg->frontier, w};
	uint8_t root[MERKLE_HASH_LEN];
	uint64_t n = store_log_next(w) - 1;
	char *text = NULL;
	int err;

	*size = 0;
	if ((lg->p.signer == NULL && lg->p.sign == NULL) || n == 0 || n == lg->last_ckpt_size ||
	    (!force && n - lg->last_ckpt_size < lg->p.ckpt_every_entries &&
	     t - lg->last_ckpt_ms < lg->p.ckpt_every_ms)) {
		return;
	}
	err = merkle_root(&tree_wops, &tw, n, root);
	if (err == 0) {
		err = lg->p.sign != NULL
		          ? lg->p.sign(lg->p.sign_arg, lg->p.origin, n, root, &text)
		          : checkpoint_sign(lg->p.signer, lg->p.origin, n, root, &text);
	}
	if (err == 0) {
		err = store_checkpoint_put(w, n, text);
	}
	free(text);
	if (err != 0) {
		log_warnx("cannot sign a checkpoint at tree size %llu: %s", (unsigned long long)n,
		          ihala_strerror(err));
		return;
	}
	*size = n;
}

/* The checkpoint put by checkpoint_into is on disk now. */
static void
checkpoint_done(struct ledger *lg, uint64_t size, uint64_t t)
{
	if (size == 0) {
		return;
	}
	lg->last_ckpt_size = size;
	lg->last_ckpt_ms = t;
	metrics_observe_checkpoint(size, t);
	log_debug("checkpoint signed at tree size %llu", (unsigned long long)size);
}

static void
result_reset(struct wreq *r)
{
	r->err = 0;
	r->text[0] = '\0';
	r->status = IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_UNSPECIFIED;
	r->seq = 0;
	memset(r->leaf, 0, sizeof(r->leaf));
	r->n_notify = 0;
	r->notify_all = 0;
}

/*
 * Apply a batch in one write transaction and commit it (synced). First without savepoints:
 * a savepoint is an LMDB nested transaction, whose begin and merge cost more than the
 * request itself. If a request meets an LMDB error, the transaction is dropped and the batch
 * done again with a savepoint per request, so that only the failing requests are refused.
 * STOP and POLICY requests are not applied here. Returns 0 or the error that refused every
 * request of the batch (a failed begin or commit).
 */
static int
apply_batch_txn(struct ledger *lg, struct wreq **batch, size_t n)
{
	struct store_wtxn *w = NULL;
	size_t i, n_work = 0;
	int careful, err = 0, rc;

	for (i = 0; i < n; i++) {
		n_work += batch[i]->type != WREQ_STOP && batch[i]->type != WREQ_POLICY;
	}
	if (n_work == 0) {
		return 0;
	}
	for (careful = 0; careful < 2; careful++) {
		uint64_t t = clock_wall_ms(), ckpt = 0;

		shares_forget(lg);
		lg->shares_on = !careful;
		err = store_wbegin(lg->p.store, &w);
		if (err == 0) {
			frontier_sync(&lg->frontier, w);
		}
		if (err == 0 && !careful) {
			checkpoint_into(lg, w, t, 0, &ckpt);
		} else if (err == 0) {
			struct store_wtxn *sub;

			/* A checkpoint that does not fit must not cost the batch. */
			if (store_wsub_begin(w, &sub) == 0) {
				checkpoint_into(lg, sub, t, 0, &ckpt);
				if (ckpt == 0) {
					store_wsub_abort(sub);
				} else if (store_wsub_commit(sub) != 0) {
					ckpt = 0;
				}
			}
		}
		for (i = 0; i < n && err == 0; i++) {
			struct wreq *r = batch[i];

			if (r->type == WREQ_STOP || r->type == WREQ_POLICY) {
				continue;
			}
			result_reset(r);
			if (!careful) {
				err = apply_one(lg, w, r);
				continue;
			}
			/* Fatal LMDB errors poison the batch; refusals and a full map do not. */
			rc = apply_saved(lg, w, r);
			if (rc != 0 && rc != IHALA_ESTOREFULL) {
				err = rc;
			}
		}
		if (err == 0) {
			err = shares_flush(lg, w);
		}
		if (err == 0) {
			uint64_t t0 = clock_mono_ns();

			err = store_wcommit(w); /* frees w, also on failure */
			metrics_observe_commit(n_work, clock_mono_ns() - t0);
			if (err == 0) {
				checkpoint_done(lg, ckpt, t);
				return 0;
			}
			if (err == IHALA_EIO) {
				/* A failed write or fsync is never retried: the kernel may have
				 * dropped what it covered ("fsyncgate"). No answer for the batch; a
				 * restart recovers to the last commit that was synced. */
				fatalx(
				    "writer: the disk failed committing a batch of %zu requests; "
				    "stopping without answering them (check the disk, then "
				    "restart)",
				    n);
			}
		} else {
			store_wabort(w);
		}
		frontier_forget(&lg->frontier);
		states_forget(lg);
		shares_forget(lg);
		lg->shares_on = 0;
		w = NULL;
		if (!careful) {
			log_debug(
			    "writer: batch of %zu requests met '%s'; applying it again request "
			    "by request",
			    n, ihala_strerror(err));
		}
	}
	return err;
}

/* At shutdown nothing follows to carry a checkpoint: it gets a transaction of its own. */
void
ledger_checkpoint_now(struct ledger *lg, uint64_t t)
{
	struct store_wtxn *w = NULL;
	uint64_t size = 0;

	if ((lg->p.signer == NULL && lg->p.sign == NULL) || store_wbegin(lg->p.store, &w) != 0) {
		return;
	}
	frontier_sync(&lg->frontier, w);
	checkpoint_into(lg, w, t, 1, &size);
	if (size == 0) {
		store_wabort(w);
		return;
	}
	if (store_wcommit(w) == 0) {
		checkpoint_done(lg, size, t);
	} else {
		log_warnx("cannot store the checkpoint at tree size %llu",
		          (unsigned long long)size);
	}
}

int
ledger_apply_batch(struct ledger *lg, struct wreq **batch, size_t n)
{
	int err = apply_batch_txn(lg, batch, n);
	size_t i;

	if (err != 0) {
		for (i = 0; i < n; i++) {
			if (batch[i]->type != WREQ_SUBMIT && batch[i]->type != WREQ_ACK) {
				continue;
			}
			/* A commit that met a full file system: nothing of it counts. */
			if (err == IHALA_ENOSPACE) {
				refuse(batch[i], IHALA_ESTOREFULL, DISK_FULL_TEXT);
			} else {
				refuse(batch[i], err, NULL);
			}
			batch[i]->n_notify = 0;
			batch[i]->notify_all = 0;
		}
	}
	return err;
}

struct writer_policy *
ledger_swap_policy(struct ledger *lg, struct writer_policy *p)
{
	struct writer_policy *old = lg->p.policy;

	lg->p.policy = p;
	return old;
}

int
ledger_new(const struct ledger_params *params, struct ledger **out)
{
	struct ledger *lg = calloc(1, sizeof(*lg));
	struct store_rtxn *r = NULL;

	if (lg == NULL) {
		return IHALA_ENOMEM;
	}
	lg->p = *params;
	snprintf(lg->origin, sizeof(lg->origin), "%s",
	         params->origin != NULL ? params->origin : "");
	lg->p.origin = lg->origin;
	lg->last_ckpt_ms = clock_wall_ms();
	lg->frontier.stale = 1; /* when it cannot be loaded now: at the first batch */
	if ((lg->states = refstate_cache_new(STATE_CACHE)) == NULL) {
		free(lg);
		return IHALA_ENOMEM;
	}
	if (store_rbegin(lg->p.store, &r) == 0) {
		char *text = NULL;
		uint64_t n;

		if (store_log_last(r, &n) == 0) {
			frontier_load(&lg->frontier, r, n);
		}
		if (store_checkpoint_latest(r, &lg->last_ckpt_size, &text) != 0) {
			lg->last_ckpt_size = 0;
		}
		free(text);
		store_rend(r);
	}
	*out = lg;
	return 0;
}

void
ledger_free(struct ledger *lg)
{
	if (lg != NULL) {
		refstate_cache_free(lg->states);
		free(lg->buf);
		free(lg);
	}
}
