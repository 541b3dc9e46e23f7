/* store_int.h - the store's private structures and checks (store.c, store_log.c, store_state.c). */
#ifndef IHALA_STORE_INT_H
#define IHALA_STORE_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "dbenv.h"
#include "error.h"
#include "log.h"
#include "logdb.h"
#include "store.h"

/*
 * Who owns what: store.c the environment, batches and read transactions (these structures'
 * life); store_log.c the audit record (log, message ids, tree, checkpoints); store_state.c
 * the delivery state (queues and their counters, referral states, meta). The format
 * (database names, keys, values) is proto/logdb.h's; these files write it.
 */

#define STORE_LOCKFILE "ihala.lock"

struct store {
	/* env, dir, maxkey, lock; db.map_full: a write hit MDB_MAP_FULL since the last
	 * growth (writer thread) */
	struct dbenv db;
	struct logdb_dbis dbi;
	unsigned flags;
	/* "tree" held nodes at open: a store written before "node", whose puts check it */
	int old_tree;
	size_t max_mapsize;
	size_t page_size;
	unsigned fork_gen; /* fork_gen (store.c) at open: another means a child of a fork */
	/* Key and value bytes handed to LMDB by puts since open (store_put; read by store_stat
	 * on any thread). */
	_Atomic uint64_t put_bytes;
	/* Tree nodes read by store_tree_get since open (store_stat). */
	_Atomic uint64_t tree_gets;

	/* Writer thread only. */
	struct store_wtxn *wtxn; /* the open top batch */
	int cap_warned;

	/* Read transactions in flight, so store_grow can wait them out. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned readers;
	int resizing;
};

struct store_rtxn {
	struct store *s;
	struct logdb_txn lt;          /* lt.txn: this transaction */
	struct store_wtxn *w;         /* set on the read view of a batch */
	struct store_log_iter *iters; /* open iterators, closed at txn end */
};

/*
 * Queue counters of a top batch, kept here and written to meta once, at commit: every
 * queued and every acked entry moves one, and a get and a put in meta each time were a
 * tenth of the writer's work. Sub-batches do not use it (see store_wsub_begin).
 */
#define QC_SLOTS 32
#define QC_KEY_MAX 128
struct qc_slot {
	char key[QC_KEY_MAX];
	size_t len;
	uint64_t n;
	int dirty;
};

struct store_wtxn {
	struct store_rtxn r; /* read view; r.lt.txn is this (sub-)batch's txn */
	struct store_wtxn *parent;
	struct store_wtxn *child;
	uint64_t next_seq;
	int failed; /* sticky error code once an LMDB write failed */
	struct qc_slot qc[QC_SLOTS];
	size_t n_qc;
};

struct store_log_iter {
	struct store_rtxn *r; /* NULL once its transaction ended */
	struct logdb_log_iter li;
	struct store_log_iter *next;
	struct store_log_iter **pprev;
};

/* Write the batch's changed queue counters into its transaction and forget them all
 * (store_state.c; store.c calls it at commit and before a sub-batch). */
int store_qc_flush(struct store_wtxn *w);

/* mdb_put, counting the key and value bytes it is given in s->put_bytes (what a write costs,
 * for store_stat and the tests that bound it). Every put of the store goes through here. */
static inline int
store_put(struct store *s, MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *v, unsigned flags)
{
	atomic_fetch_add_explicit(&s->put_bytes, k->mv_size + v->mv_size, memory_order_relaxed);
	return mdb_put(txn, dbi, k, v, flags);
}

/* ---- small checks ---- */

/* LMDB's code as the project's (dbenv_err: logged, map_full noted). */
static inline int
store_err(struct store *s, int rc, const char *what)
{
	return dbenv_err(&s->db, rc, what);
}

/* A write failure other than "not found" makes the batch unusable (LMDB
 * marks its txn as failed too); remember the first code for wcommit. */
static inline int
wfail(struct store_wtxn *w, int rc, const char *what)
{
	int err = store_err(w->r.s, rc, what);

	if (rc != MDB_NOTFOUND && w->failed == 0) {
		w->failed = err;
	}
	return err;
}

/* A batch handle is usable when it is not failed and has no open child. */
static inline int
wcheck(struct store_wtxn *w)
{
	if (w == NULL) {
		return IHALA_EINVAL;
	}
	if (w->child != NULL) {
		log_warnx("store %s: batch used while its sub-batch is open (a bug)",
		          w->r.s->db.dir);
		return IHALA_EINVAL;
	}
	if (w->failed != 0) {
		return w->failed;
	}
	return 0;
}

static inline int
rcheck(struct store_rtxn *r)
{
	if (r == NULL || r->lt.txn == NULL) {
		return IHALA_EINVAL;
	}
	if (r->w != NULL) {
		return wcheck(r->w);
	}
	return 0;
}

/* Check an id used in keys: non-empty and short enough for `room` more
 * key bytes. Returns its length or a negative code. */
static inline int
id_len(const struct store *s, const char *id, size_t room, size_t *len)
{
	size_t n;

	if (id == NULL || id[0] == '\0') {
		return IHALA_EINVAL;
	}
	n = strlen(id);
	if (n > s->db.maxkey || room > s->db.maxkey - n) {
		return IHALA_ETOOLARGE;
	}
	*len = n;
	return 0;
}

#endif
