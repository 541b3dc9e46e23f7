/* store.c - the broker's durable store over LMDB: versioned env, batches, savepoints, reads. */
#include "store.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "datadir.h"
#include "dbenv.h"
#include "error.h"
#include "log.h"
#include "logdb.h"
#include "store_int.h"

/* The records are written by store_log.c (audit record) and store_state.c (delivery state). */

/* ---- small helpers ---- */

static size_t
round_page(const struct store *s, size_t n)
{
	if (n > SIZE_MAX - s->page_size) {
		return SIZE_MAX - SIZE_MAX % s->page_size;
	}
	return (n + s->page_size - 1) / s->page_size * s->page_size;
}

/* ---- reader accounting (for store_grow) ---- */

static void
reader_enter(struct store *s)
{
	pthread_mutex_lock(&s->mu);
	while (s->resizing) {
		pthread_cond_wait(&s->cv, &s->mu);
	}
	s->readers++;
	pthread_mutex_unlock(&s->mu);
}

static void
reader_leave(struct store *s)
{
	pthread_mutex_lock(&s->mu);
	s->readers--;
	if (s->readers == 0) {
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
}

/*
 * fork() children counted by an atfork handler: a store remembers the count at open and
 * refuses use when it has moved. Not getpid() on each use: it is a system call, and the main
 * thread begins a read transaction for every delivery.
 */
static _Atomic unsigned fork_gen;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void
fork_child(void)
{
	atomic_fetch_add_explicit(&fork_gen, 1, memory_order_relaxed);
}

static void
fork_watch(void)
{
	if (pthread_atfork(NULL, NULL, fork_child) != 0) {
		fatalx("store: cannot register a fork handler");
	}
}

static int
forked(struct store *s)
{
	if (atomic_load_explicit(&fork_gen, memory_order_relaxed) != s->fork_gen) {
		log_warnx("store %s: used after fork() (LMDB forbids it; open it in the child)",
		          s->db.dir);
		return 1;
	}
	return 0;
}

/* ---- open / close ---- */

/*
 * Open the named databases, creating them and the format records in an
 * empty environment, and refuse any other format. Nothing is written to a
 * refused store.
 */
static int
open_layout(struct store *s)
{
	int rdonly = (s->flags & STORE_RDONLY) != 0;
	MDB_txn *txn = NULL;
	int err, fresh;

	if ((err = dbenv_begin(&s->db, NULL, rdonly ? MDB_RDONLY : 0, &txn)) < 0) {
		return err;
	}
	MDB_stat ms;

	if ((err = logdb_layout(&s->db, txn, !rdonly, &s->dbi, &fresh)) < 0 ||
	    (fresh && (err = logdb_format_init(&s->db, txn, &s->dbi)) < 0)) {
		mdb_txn_abort(txn);
		return err;
	}
	s->old_tree = mdb_stat(txn, s->dbi.tree, &ms) == 0 && ms.ms_entries > 0;
	return dbenv_commit(&s->db, txn, "committing the opening transaction");
}

static size_t cur_mapsize(struct store *s);

int
store_open(const char *dir, size_t mapsize, unsigned flags, struct store **out)
{
	struct dbenv_opts o = {
	    .lockfile = STORE_LOCKFILE,
	    .flags = MDB_NOTLS,
	    .maxdbs = LOGDB_MAXDBS,
	    .maxreaders = LOGDB_MAXREADERS,
	    .full_hint = "it must be grown",
	    .mode = DATADIR_CREATE,
	};
	pthread_condattr_t ca;
	struct store *s = NULL;
	int rdonly = (flags & STORE_RDONLY) != 0;
	int rc, err, fresh;
	long pg;

	if (out == NULL || dir == NULL || dir[0] == '\0' ||
	    (flags & ~(unsigned)(STORE_AUTO_GROW | STORE_RDONLY)) != 0) {
		return IHALA_EINVAL;
	}
	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		return IHALA_ENOMEM;
	}
	s->flags = flags;
	pthread_once(&fork_once, fork_watch);
	s->fork_gen = atomic_load_explicit(&fork_gen, memory_order_relaxed);
	pg = sysconf(_SC_PAGESIZE);
	s->page_size = pg > 0 ? (size_t)pg : 4096;
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);

	if (mapsize == 0) {
		mapsize = STORE_DEFAULT_MAPSIZE;
	}
	mapsize = round_page(s, mapsize);
	s->max_mapsize = mapsize > STORE_DEFAULT_MAX_MAPSIZE ? mapsize : STORE_DEFAULT_MAX_MAPSIZE;
	if (rdonly) {
		o.mode = DATADIR_RDONLY;
		o.lockfile = NULL;
		o.flags |= MDB_RDONLY;
	}
	/* A size set before mdb_env_open overrides the one the store
	 * recorded (LMDB only keeps it above the used pages), which would
	 * undo an earlier store_grow: set it up front for a new store only. */
	if ((fresh = dbenv_fresh(dir))) {
		o.mapsize = mapsize;
	}
	err = dbenv_open(&s->db, "store", dir, &o);
	if (err == IHALA_EAGAIN) {
		log_warnx("store %s is in use by another broker (lock '%s' is held); stop it first",
		          dir, STORE_LOCKFILE);
		err = IHALA_ESTORE;
	}
	if (err < 0) {
		goto fail;
	}
	/* LMDB created data.mdb but syncs no directory: make its name durable before any
	 * commit counts on it (a power cut would otherwise lose the whole log). */
	if (fresh && !rdonly && (err = datadir_sync("store", dir)) < 0) {
		goto fail;
	}
	/* An existing store: adopt its size, grow it if asked for more
	 * (no transaction is open yet, as mdb_env_set_mapsize needs). */
	if (!fresh && !rdonly && cur_mapsize(s) < mapsize &&
	    (rc = mdb_env_set_mapsize(s->db.env, mapsize)) != 0) {
		err = store_err(s, rc, "setting the map size");
		goto fail;
	}
	if ((err = open_layout(s)) < 0) {
		goto fail;
	}
	*out = s;
	return 0;
fail:
	s->wtxn = NULL;
	store_close(s);
	return err;
}

void
store_close(struct store *s)
{
	if (s == NULL) {
		return;
	}
	if (s->wtxn != NULL) {
		log_warnx("store %s: closed with a write batch open; aborting it", s->db.dir);
		store_wabort(s->wtxn);
	}
	if (s->readers != 0) {
		log_warnx("store %s: closed with %u read transaction(s) open (a bug)", s->db.dir,
		          s->readers);
	}
	dbenv_close(&s->db);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

void
store_set_max_mapsize(struct store *s, size_t max)
{
	s->max_mapsize = round_page(s, max);
}

static size_t
cur_mapsize(struct store *s)
{
	MDB_envinfo info;

	if (mdb_env_info(s->db.env, &info) != 0) {
		return 0;
	}
	return info.me_mapsize;
}

int
store_grow(struct store *s, size_t new_mapsize)
{
	struct timespec deadline;
	size_t cur;
	int rc, err = 0;

	if (s == NULL || forked(s)) {
		return IHALA_EINVAL;
	}
	if ((s->flags & STORE_RDONLY) != 0) {
		return IHALA_EINVAL;
	}
	if (s->wtxn != NULL) {
		log_warnx("store %s: cannot grow while a write batch is open (a bug)", s->db.dir);
		return IHALA_EINVAL;
	}
	new_mapsize = round_page(s, new_mapsize);
	cur = cur_mapsize(s);
	if (new_mapsize < cur) {
		return IHALA_EINVAL;
	}
	if (new_mapsize == cur) {
		return 0;
	}

	/* LMDB does not check that no read txn is open: we must. New readers
	 * wait while we drain the open ones. */
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += STORE_GROW_WAIT_MS / 1000;
	deadline.tv_nsec += (long)(STORE_GROW_WAIT_MS % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->mu);
	s->resizing = 1;
	while (s->readers > 0) {
		if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT &&
		    s->readers > 0) {
			log_warnx("store %s: cannot grow: %u read transaction(s) stay open",
			          s->db.dir, s->readers);
			err = IHALA_EAGAIN;
			goto out;
		}
	}
	if ((rc = mdb_env_set_mapsize(s->db.env, new_mapsize)) != 0) {
		err = store_err(s, rc, "growing the map");
		goto out;
	}
	s->db.map_full = 0;
	s->cap_warned = 0;
	log_info("store %s: map size grown from %zu to %zu bytes", s->db.dir, cur, new_mapsize);
out:
	s->resizing = 0;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return err;
}

int
store_grow_auto(struct store *s)
{
	size_t cur, next;

	if (s == NULL) {
		return IHALA_EINVAL;
	}
	cur = cur_mapsize(s);
	next = cur > SIZE_MAX / 2 ? SIZE_MAX : cur * 2;
	if (next > s->max_mapsize) {
		next = s->max_mapsize;
	}
	if (next <= cur) {
		if (!s->cap_warned) {
			log_warnx("store %s is full at its maximum size of %zu bytes; raise the "
			          "store's maximum size or free disk space and restart",
			          s->db.dir, cur);
			s->cap_warned = 1;
		}
		return IHALA_ESTOREFULL;
	}
	return store_grow(s, next);
}

int
store_backup(struct store *s, const char *dir)
{
	int err;

	if (s == NULL || dir == NULL || forked(s)) {
		return IHALA_EINVAL;
	}
	reader_enter(s); /* the copy runs a read txn: keep store_grow out */
	err = dbenv_backup(&s->db, dir);
	reader_leave(s);
	return err;
}

int
store_disk_free(struct store *s, uint64_t *bytes)
{
	struct statvfs sv;

	if (s == NULL || bytes == NULL) {
		return IHALA_EINVAL;
	}
	if (statvfs(s->db.dir, &sv) != 0) {
		log_warn("store %s: cannot read the free space under it", s->db.dir);
		return IHALA_EIO;
	}
	*bytes = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
	return 0;
}

int
store_stat(struct store *s, struct store_stats *st)
{
	struct logdb_stats ls;
	struct store_rtxn *r;
	int err;

	if (s == NULL || st == NULL) {
		return IHALA_EINVAL;
	}
	memset(st, 0, sizeof(*st));
	if ((err = store_rbegin(s, &r)) < 0) {
		return err;
	}
	if ((err = logdb_stat(&r->lt, &ls)) == 0) {
		st->entries = ls.entries;
		st->last_seq = ls.last_seq;
		st->map_size = ls.map_size;
		st->max_mapsize = s->max_mapsize;
		st->page_size = ls.page_size;
		st->used_bytes = ls.used_bytes;
		st->put_bytes = atomic_load_explicit(&s->put_bytes, memory_order_relaxed);
		st->tree_gets = atomic_load_explicit(&s->tree_gets, memory_order_relaxed);
	}
	store_rend(r);
	return err;
}

/* ---- iterators bound to a transaction ---- */

/* Point the read view's format reader at the store (its txn is set when begun). */
static void
rtxn_bind(struct store_rtxn *r, struct store *s)
{
	r->lt.env = &s->db;
	r->lt.dbs = &s->dbi;
}

static void
iters_detach(struct store_rtxn *r)
{
	struct store_log_iter *it;

	while ((it = r->iters) != NULL) {
		log_warnx("store %s: log iterator still open at the end of its transaction (a bug)",
		          r->s->db.dir);
		logdb_log_iter_end(&it->li);
		it->r = NULL;
		r->iters = it->next;
		if (it->next != NULL) {
			it->next->pprev = &r->iters;
		}
		it->next = NULL;
		it->pprev = NULL;
	}
}

/* ---- write batches ---- */

static int
load_next_seq(struct store_wtxn *w)
{
	uint64_t last;
	int err;

	if ((err = store_log_last(&w->r, &last)) < 0) {
		return err;
	}
	if (last == UINT64_MAX) {
		return IHALA_ESTOREFULL;
	}
	w->next_seq = last + 1;
	return 0;
}

int
store_wbegin(struct store *s, struct store_wtxn **out)
{
	struct store_wtxn *w;
	int rc, err;

	if (s == NULL || out == NULL || forked(s)) {
		return IHALA_EINVAL;
	}
	*out = NULL;
	if ((s->flags & STORE_RDONLY) != 0) {
		log_warnx("store %s: opened read-only; cannot write", s->db.dir);
		return IHALA_EINVAL;
	}
	if (s->wtxn != NULL) {
		log_warnx("store %s: a write batch is already open (a bug)", s->db.dir);
		return IHALA_EINVAL;
	}
	if (s->db.map_full && (s->flags & STORE_AUTO_GROW) != 0) {
		/* Failure to grow is not fatal: smaller writes may still fit. */
		(void)store_grow_auto(s);
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		return IHALA_ENOMEM;
	}
	w->r.s = s;
	w->r.w = w;
	rtxn_bind(&w->r, s);
	if ((rc = mdb_txn_begin(s->db.env, NULL, 0, &w->r.lt.txn)) != 0) {
		free(w);
		return store_err(s, rc, "beginning a write batch");
	}
	if ((err = load_next_seq(w)) < 0) {
		mdb_txn_abort(w->r.lt.txn);
		free(w);
		return err;
	}
	s->wtxn = w;
	*out = w;
	return 0;
}

/* Abort a (sub-)batch and its open descendants; frees them. */
static void
wabort_tree(struct store_wtxn *w)
{
	if (w->child != NULL) {
		wabort_tree(w->child);
	}
	iters_detach(&w->r);
	mdb_txn_abort(w->r.lt.txn);
	if (w->parent != NULL) {
		w->parent->child = NULL;
	} else {
		w->r.s->wtxn = NULL;
	}
	free(w);
}

int
store_wcommit(struct store_wtxn *w)
{
	struct store *s;
	int rc, err;

	if (w == NULL) {
		return IHALA_EINVAL;
	}
	s = w->r.s;
	if (w->parent != NULL) {
		log_warnx("store %s: store_wcommit on a sub-batch (a bug)", s->db.dir);
		return IHALA_EINVAL;
	}
	if (w->child != NULL || w->r.iters != NULL) {
		log_warnx("store %s: batch committed with a sub-batch or iterator open (a bug); "
		          "aborted",
		          s->db.dir);
		wabort_tree(w);
		return IHALA_EINTERNAL;
	}
	if (w->failed != 0) {
		err = w->failed;
		wabort_tree(w);
		return err;
	}
	if ((err = store_qc_flush(w)) < 0) {
		wabort_tree(w);
		return err;
	}
	rc = mdb_txn_commit(w->r.lt.txn); /* frees the txn, also on failure */
	s->wtxn = NULL;
	free(w);
	return store_err(s, rc, "committing a write batch");
}

void
store_wabort(struct store_wtxn *w)
{
	if (w == NULL) {
		return;
	}
	if (w->parent != NULL) {
		log_warnx("store %s: store_wabort on a sub-batch (a bug); aborting just it",
		          w->r.s->db.dir);
	}
	wabort_tree(w);
}

int
store_wsub_begin(struct store_wtxn *parent, struct store_wtxn **out)
{
	struct store_wtxn *c;
	int rc, err;

	if (out == NULL) {
		return IHALA_EINVAL;
	}
	*out = NULL;
	if ((err = wcheck(parent)) < 0) {
		return err;
	}
	/* The sub-batch reads and moves counters in its transaction: give it the parent's. */
	if ((err = store_qc_flush(parent)) < 0) {
		return err;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		return IHALA_ENOMEM;
	}
	c->r.s = parent->r.s;
	c->r.w = c;
	rtxn_bind(&c->r, parent->r.s);
	c->parent = parent;
	c->next_seq = parent->next_seq;
	if ((rc = mdb_txn_begin(parent->r.s->db.env, parent->r.lt.txn, 0, &c->r.lt.txn)) != 0) {
		free(c);
		return store_err(parent->r.s, rc, "beginning a sub-batch");
	}
	parent->child = c;
	*out = c;
	return 0;
}

int
store_wsub_commit(struct store_wtxn *c)
{
	struct store_wtxn *p;
	int rc, err;

	if (c == NULL || c->parent == NULL) {
		return IHALA_EINVAL;
	}
	p = c->parent;
	if (c->child != NULL || c->r.iters != NULL) {
		log_warnx("store %s: sub-batch committed with a sub-batch or iterator open "
		          "(a bug); aborted",
		          c->r.s->db.dir);
		wabort_tree(c);
		return IHALA_EINTERNAL;
	}
	if (c->failed != 0) {
		err = c->failed;
		wabort_tree(c);
		return err;
	}
	rc = mdb_txn_commit(c->r.lt.txn);
	p->child = NULL;
	if (rc != 0) {
		/* The child is gone; the parent may be damaged by a failed merge. */
		err = wfail(p, rc, "committing a sub-batch");
		free(c);
		return err;
	}
	p->next_seq = c->next_seq;
	free(c);
	return 0;
}

void
store_wsub_abort(struct store_wtxn *c)
{
	if (c == NULL) {
		return;
	}
	if (c->parent == NULL) {
		log_warnx("store %s: store_wsub_abort on a top batch (a bug); aborting it",
		          c->r.s->db.dir);
	}
	wabort_tree(c);
}

struct store_rtxn *
store_wread(struct store_wtxn *w)
{
	return w != NULL ? &w->r : NULL;
}

/* ---- read transactions ---- */

int
store_rbegin(struct store *s, struct store_rtxn **out)
{
	struct store_rtxn *r;
	int rc;

	if (s == NULL || out == NULL || forked(s)) {
		return IHALA_EINVAL;
	}
	*out = NULL;
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		return IHALA_ENOMEM;
	}
	r->s = s;
	rtxn_bind(r, s);
	reader_enter(s);
	if ((rc = mdb_txn_begin(s->db.env, NULL, MDB_RDONLY, &r->lt.txn)) != 0) {
		reader_leave(s);
		free(r);
		return store_err(s, rc, "beginning a read transaction");
	}
	*out = r;
	return 0;
}

void
store_rend(struct store_rtxn *r)
{
	struct store *s;

	if (r == NULL) {
		return;
	}
	s = r->s;
	if (r->w != NULL) {
		log_warnx("store %s: store_rend on the read view of a batch (a bug); ignored",
		          s->db.dir);
		return;
	}
	iters_detach(r);
	mdb_txn_abort(r->lt.txn);
	free(r);
	reader_leave(s);
}
