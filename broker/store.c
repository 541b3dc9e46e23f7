/* store.c - the broker's durable store over LMDB: versioned env, batches, savepoints, reads. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "datadir.h"
#include "endian.h"
#include "error.h"
#include "log.h"

/* MDB_INTEGERKEY keys are unsigned int or size_t: the uint64 log seq needs
 * size_t to be 64 bits. */
_Static_assert(sizeof(size_t) == sizeof(uint64_t), "the store needs a 64-bit size_t");

#define STORE_MAXDBS 16
#define STORE_MAXREADERS 126
#define STORE_LOCKFILE "ihala.lock"
#define QCOUNT_PREFIX "qcount:"
#define META_VERSION "format_version"
#define META_CREATED "created"
/* LMDB's value size field is 32 bits. */
#define STORE_MAX_VALUE ((size_t)UINT32_MAX)
#define TREE_KEY_LEN 9
#define SEQ_LEN 8

struct store {
	MDB_env *env;
	MDB_dbi log;
	MDB_dbi tree;
	MDB_dbi msgid;
	MDB_dbi queue;
	MDB_dbi referral;
	MDB_dbi checkpoint;
	MDB_dbi meta;
	char *dir;
	unsigned flags;
	size_t max_mapsize;
	size_t page_size;
	size_t maxkey;
	pid_t pid;
	int lockfd;

	/* Writer thread only. */
	struct store_wtxn *wtxn; /* the open top batch */
	int map_full;		 /* a write hit MDB_MAP_FULL since the last growth */
	int cap_warned;

	/* Read transactions in flight, so store_grow can wait them out. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned readers;
	int resizing;
};

struct store_rtxn {
	struct store *s;
	MDB_txn *txn;
	struct store_wtxn *w;	     /* set on the read view of a batch */
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
	struct store_rtxn r; /* read view; r.txn is this (sub-)batch's txn */
	struct store_wtxn *parent;
	struct store_wtxn *child;
	uint64_t next_seq;
	int failed; /* sticky error code once an LMDB write failed */
	struct qc_slot qc[QC_SLOTS];
	size_t n_qc;
};

static int qc_flush(struct store_wtxn *w);

struct store_log_iter {
	struct store_rtxn *r; /* NULL once its transaction ended */
	MDB_cursor *cur;
	uint64_t from;
	int started;
	struct store_log_iter *next;
	struct store_log_iter **pprev;
};

/* ---- small helpers ---- */

static size_t
round_page(const struct store *s, size_t n)
{
	if (n > SIZE_MAX - s->page_size) {
		return SIZE_MAX - SIZE_MAX % s->page_size;
	}
	return (n + s->page_size - 1) / s->page_size * s->page_size;
}

/*
 * Map an LMDB return code to the project's codes. MDB_NOTFOUND is an
 * ordinary answer and not logged; everything else is.
 */
static int
store_err(struct store *s, int rc, const char *what)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return IHALA_ENOTFOUND;
	case MDB_MAP_FULL:
		s->map_full = 1;
		log_warnx("store %s: %s: the store is full (MDB_MAP_FULL); it must be grown",
			  s->dir, what);
		return IHALA_ESTOREFULL;
	case MDB_TXN_FULL:
		log_warnx("store %s: %s: batch too large (%s); commit it and retry", s->dir, what,
			  mdb_strerror(rc));
		return IHALA_EAGAIN;
	case ENOMEM:
		log_warnx("store %s: %s: %s", s->dir, what, mdb_strerror(rc));
		return IHALA_ENOMEM;
	case EIO:
		log_warnx("store %s: %s: %s: the disk failed", s->dir, what, mdb_strerror(rc));
		return IHALA_EIO;
	case ENOSPC:
		log_warnx("store %s: %s: %s: the disk is full; submissions are refused until there is "
			  "room",
			  s->dir, what, mdb_strerror(rc));
		return IHALA_ESTOREFULL;
	case MDB_MAP_RESIZED:
		log_warnx("store %s: %s: %s (another process grew the store; restart the broker)",
			  s->dir, what, mdb_strerror(rc));
		return IHALA_ESTORE;
	default:
		log_warnx("store %s: %s: %s", s->dir, what, mdb_strerror(rc));
		return IHALA_ESTORE;
	}
}

/* A write failure other than "not found" makes the batch unusable (LMDB
 * marks its txn as failed too); remember the first code for wcommit. */
static int
wfail(struct store_wtxn *w, int rc, const char *what)
{
	int err = store_err(w->r.s, rc, what);

	if (rc != MDB_NOTFOUND && w->failed == 0) {
		w->failed = err;
	}
	return err;
}

/* A batch handle is usable when it is not failed and has no open child. */
static int
wcheck(struct store_wtxn *w)
{
	if (w == NULL) {
		return IHALA_EINVAL;
	}
	if (w->child != NULL) {
		log_warnx("store %s: batch used while its sub-batch is open (a bug)", w->r.s->dir);
		return IHALA_EINVAL;
	}
	if (w->failed != 0) {
		return w->failed;
	}
	return 0;
}

static int
rcheck(struct store_rtxn *r)
{
	if (r == NULL || r->txn == NULL) {
		return IHALA_EINVAL;
	}
	if (r->w != NULL) {
		return wcheck(r->w);
	}
	return 0;
}

/* Check an id used in keys: non-empty and short enough for `room` more
 * key bytes. Returns its length or a negative code. */
static int
id_len(const struct store *s, const char *id, size_t room, size_t *len)
{
	size_t n;

	if (id == NULL || id[0] == '\0') {
		return IHALA_EINVAL;
	}
	n = strlen(id);
	if (n > s->maxkey || room > s->maxkey - n) {
		return IHALA_ETOOLARGE;
	}
	*len = n;
	return 0;
}

/* Key "agency\0" + big-endian seq; buf must hold maxkey bytes. */
static int
queue_key(const struct store *s, const char *agency, uint64_t seq, uint8_t *buf, MDB_val *key)
{
	size_t n;
	int rc;

	if ((rc = id_len(s, agency, 1 + SEQ_LEN, &n)) < 0) {
		return rc;
	}
	memcpy(buf, agency, n);
	buf[n] = '\0';
	be64enc(buf + n + 1, seq);
	key->mv_data = buf;
	key->mv_size = n + 1 + SEQ_LEN;
	return 0;
}

static int
qcount_key(const struct store *s, const char *agency, char *buf, MDB_val *key)
{
	size_t n, p = strlen(QCOUNT_PREFIX);
	int rc;

	if ((rc = id_len(s, agency, p, &n)) < 0) {
		return rc;
	}
	memcpy(buf, QCOUNT_PREFIX, p);
	memcpy(buf + p, agency, n);
	key->mv_data = buf;
	key->mv_size = p + n;
	return 0;
}

/* Counters in meta are decimal text, readable with mdb_dump. */
static int
parse_count(struct store *s, const MDB_val *v, uint64_t *out)
{
	const unsigned char *p = v->mv_data;
	uint64_t n = 0;
	size_t i;

	if (v->mv_size == 0 || v->mv_size > 20) {
		goto bad;
	}
	for (i = 0; i < v->mv_size; i++) {
		if (p[i] < '0' || p[i] > '9') {
			goto bad;
		}
		if (n > (UINT64_MAX - (p[i] - '0')) / 10) {
			goto bad;
		}
		n = n * 10 + (p[i] - '0');
	}
	*out = n;
	return 0;
bad:
	log_warnx("store %s: damaged queue counter in meta (not a decimal number)", s->dir);
	return IHALA_ESTORE;
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

static int
forked(struct store *s)
{
	if (getpid() != s->pid) {
		log_warnx("store %s: used after fork() (LMDB forbids it; open it in the child)",
			  s->dir);
		return 1;
	}
	return 0;
}

/* ---- open / close ---- */

/* Print an unknown version safely: printable ASCII, at most 32 bytes. */
static void
printable(const MDB_val *v, char *buf, size_t size)
{
	const unsigned char *p = v->mv_data;
	size_t i, n = v->mv_size < size - 1 ? v->mv_size : size - 1;

	for (i = 0; i < n; i++) {
		buf[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
	}
	buf[n] = '\0';
}

static int
open_dbis(struct store *s, MDB_txn *txn, unsigned create)
{
	static const struct {
		const char *name;
		size_t off;
		unsigned flags;
	} dbs[] = {
		{ "log", offsetof(struct store, log), MDB_INTEGERKEY },
		{ "tree", offsetof(struct store, tree), 0 },
		{ "msgid", offsetof(struct store, msgid), 0 },
		{ "queue", offsetof(struct store, queue), 0 },
		{ "referral", offsetof(struct store, referral), 0 },
		{ "checkpoint", offsetof(struct store, checkpoint), 0 },
	};
	size_t i;
	int rc;

	for (i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
		MDB_dbi *dbi = (MDB_dbi *)((char *)s + dbs[i].off);

		rc = mdb_dbi_open(txn, dbs[i].name, dbs[i].flags | create, dbi);
		if (rc == MDB_NOTFOUND) {
			log_warnx("store %s: database '%s' is missing; the store is damaged",
				  s->dir, dbs[i].name);
			return IHALA_ESTORE;
		}
		if (rc != 0) {
			return store_err(s, rc, dbs[i].name);
		}
	}
	return 0;
}

/* Create the format records of a new store inside `txn`. */
static int
init_meta(struct store *s, MDB_txn *txn)
{
	char created[32], version[16];
	struct tm tm;
	time_t now = time(NULL);
	MDB_val k, v;
	int rc;

	snprintf(version, sizeof(version), "%d", STORE_FORMAT_VERSION);
	gmtime_r(&now, &tm);
	strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);

	k.mv_data = META_VERSION;
	k.mv_size = strlen(META_VERSION);
	v.mv_data = version;
	v.mv_size = strlen(version);
	if ((rc = mdb_put(txn, s->meta, &k, &v, MDB_NOOVERWRITE)) != 0) {
		return store_err(s, rc, "writing the format version");
	}
	k.mv_data = META_CREATED;
	k.mv_size = strlen(META_CREATED);
	v.mv_data = created;
	v.mv_size = strlen(created);
	if ((rc = mdb_put(txn, s->meta, &k, &v, MDB_NOOVERWRITE)) != 0) {
		return store_err(s, rc, "writing the creation time");
	}
	log_info("store %s: created, format version %d", s->dir, STORE_FORMAT_VERSION);
	return 0;
}

/*
 * Open the named databases, creating them and the format records in an
 * empty environment, and refuse any other format. Nothing is written to a
 * refused store.
 */
static int
open_layout(struct store *s)
{
	char want[16], got[40];
	int rdonly = (s->flags & STORE_RDONLY) != 0;
	MDB_txn *txn = NULL;
	MDB_val k, v;
	MDB_stat st;
	int rc, err, fresh = 0;

	if ((rc = mdb_txn_begin(s->env, NULL, rdonly ? MDB_RDONLY : 0, &txn)) != 0) {
		return store_err(s, rc, "beginning the opening transaction");
	}
	rc = mdb_dbi_open(txn, "meta", 0, &s->meta);
	if (rc == MDB_NOTFOUND) {
		MDB_dbi main;

		if ((rc = mdb_dbi_open(txn, NULL, 0, &main)) != 0 ||
		    (rc = mdb_stat(txn, main, &st)) != 0) {
			err = store_err(s, rc, "reading the main database");
			goto fail;
		}
		if (st.ms_entries != 0) {
			log_warnx("store %s has no format version; it is not an ihala store "
				  "(give the broker an empty or an ihala data directory)",
				  s->dir);
			err = IHALA_EVERSION;
			goto fail;
		}
		if (rdonly) {
			log_warnx("store %s is empty; a read-only open needs an existing store",
				  s->dir);
			err = IHALA_ENOTFOUND;
			goto fail;
		}
		if ((rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta)) != 0) {
			err = store_err(s, rc, "creating database 'meta'");
			goto fail;
		}
		fresh = 1;
	} else if (rc != 0) {
		err = store_err(s, rc, "opening database 'meta'");
		goto fail;
	}

	if (!fresh) {
		snprintf(want, sizeof(want), "%d", STORE_FORMAT_VERSION);
		k.mv_data = META_VERSION;
		k.mv_size = strlen(META_VERSION);
		rc = mdb_get(txn, s->meta, &k, &v);
		if (rc == MDB_NOTFOUND) {
			log_warnx("store %s has no format version, this broker reads version %s; "
				  "it is damaged or not an ihala store",
				  s->dir, want);
			err = IHALA_EVERSION;
			goto fail;
		}
		if (rc != 0) {
			err = store_err(s, rc, "reading the format version");
			goto fail;
		}
		if (v.mv_size != strlen(want) || memcmp(v.mv_data, want, v.mv_size) != 0) {
			printable(&v, got, sizeof(got));
			log_warnx("store %s has format version %s, this broker reads version %s; "
				  "run the broker release that wrote it, or migrate the store",
				  s->dir, got, want);
			err = IHALA_EVERSION;
			goto fail;
		}
	}

	if ((err = open_dbis(s, txn, rdonly ? 0 : MDB_CREATE)) < 0) {
		goto fail;
	}
	if (fresh && (err = init_meta(s, txn)) < 0) {
		goto fail;
	}
	if ((rc = mdb_txn_commit(txn)) != 0) {
		txn = NULL;
		err = store_err(s, rc, "committing the opening transaction");
		goto fail;
	}
	return 0;
fail:
	mdb_txn_abort(txn);
	return err;
}

/* No data file yet (or an empty one): the store is being created. */
static int
is_fresh(const char *dir)
{
	char path[PATH_MAX];
	struct stat sb;
	int n;

	n = snprintf(path, sizeof(path), "%s/data.mdb", dir);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		return 0;
	}
	return stat(path, &sb) != 0 || sb.st_size == 0;
}

static size_t cur_mapsize(struct store *s);

int
store_open(const char *dir, size_t mapsize, unsigned flags, struct store **out)
{
	pthread_condattr_t ca;
	struct store *s = NULL;
	int rdonly = (flags & STORE_RDONLY) != 0;
	int rc, err, dead, fresh;
	long pg;

	if (out == NULL || dir == NULL || dir[0] == '\0' ||
	    (flags & ~(unsigned)(STORE_AUTO_GROW | STORE_RDONLY)) != 0) {
		return IHALA_EINVAL;
	}
	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		return IHALA_ENOMEM;
	}
	s->lockfd = -1;
	s->flags = flags;
	s->pid = getpid();
	pg = sysconf(_SC_PAGESIZE);
	s->page_size = pg > 0 ? (size_t)pg : 4096;
	if ((s->dir = strdup(dir)) == NULL) {
		free(s);
		return IHALA_ENOMEM;
	}
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);

	if ((err = datadir_prepare("store", dir, rdonly ? DATADIR_RDONLY : DATADIR_CREATE)) < 0) {
		goto fail;
	}
	if (!rdonly) {
		err = datadir_lock("store", s->dir, STORE_LOCKFILE, &s->lockfd);
		if (err == IHALA_EAGAIN) {
			log_warnx("store %s is in use by another broker (lock '%s' is held); stop it "
				  "first",
				  s->dir, STORE_LOCKFILE);
			err = IHALA_ESTORE;
		}
	}
	if (err < 0) {
		goto fail;
	}
	if (mapsize == 0) {
		mapsize = STORE_DEFAULT_MAPSIZE;
	}
	mapsize = round_page(s, mapsize);
	s->max_mapsize = mapsize > STORE_DEFAULT_MAX_MAPSIZE ? mapsize : STORE_DEFAULT_MAX_MAPSIZE;

	if ((rc = mdb_env_create(&s->env)) != 0) {
		err = store_err(s, rc, "creating the environment");
		goto fail;
	}
	if ((rc = mdb_env_set_maxdbs(s->env, STORE_MAXDBS)) != 0 ||
	    (rc = mdb_env_set_maxreaders(s->env, STORE_MAXREADERS)) != 0) {
		err = store_err(s, rc, "configuring the environment");
		goto fail;
	}
	/* A size set before mdb_env_open overrides the one the store
	 * recorded (LMDB only keeps it above the used pages), which would
	 * undo an earlier store_grow: set it up front for a new store only. */
	if ((fresh = is_fresh(dir)) && (rc = mdb_env_set_mapsize(s->env, mapsize)) != 0) {
		err = store_err(s, rc, "setting the map size");
		goto fail;
	}
	/* Never MDB_NOSYNC / MDB_NOMETASYNC / MDB_WRITEMAP: a commit must be
	 * on disk before a receipt or a checkpoint signature depends on it. */
	rc = mdb_env_open(s->env, dir, MDB_NOTLS | (rdonly ? MDB_RDONLY : 0), 0600);
	if (rc != 0) {
		err = store_err(s, rc, "opening the environment");
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
	    (rc = mdb_env_set_mapsize(s->env, mapsize)) != 0) {
		err = store_err(s, rc, "setting the map size");
		goto fail;
	}
	s->maxkey = (size_t)mdb_env_get_maxkeysize(s->env);
	/* Reader slots left by a broker that crashed would pin old pages. */
	if ((rc = mdb_reader_check(s->env, &dead)) != 0) {
		err = store_err(s, rc, "clearing stale readers");
		goto fail;
	}
	if (dead > 0) {
		log_info("store %s: cleared %d stale reader slot(s)", dir, dead);
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
		log_warnx("store %s: closed with a write batch open; aborting it", s->dir);
		store_wabort(s->wtxn);
	}
	if (s->readers != 0) {
		log_warnx("store %s: closed with %u read transaction(s) open (a bug)", s->dir,
			  s->readers);
	}
	if (s->env != NULL) {
		mdb_env_close(s->env);
	}
	if (s->lockfd >= 0) {
		close(s->lockfd); /* releases the flock */
	}
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s->dir);
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

	if (mdb_env_info(s->env, &info) != 0) {
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
		log_warnx("store %s: cannot grow while a write batch is open (a bug)", s->dir);
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
			log_warnx("store %s: cannot grow: %u read transaction(s) stay open", s->dir,
				  s->readers);
			err = IHALA_EAGAIN;
			goto out;
		}
	}
	if ((rc = mdb_env_set_mapsize(s->env, new_mapsize)) != 0) {
		err = store_err(s, rc, "growing the map");
		goto out;
	}
	s->map_full = 0;
	s->cap_warned = 0;
	log_info("store %s: map size grown from %zu to %zu bytes", s->dir, cur, new_mapsize);
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
				  s->dir, cur);
			s->cap_warned = 1;
		}
		return IHALA_ESTOREFULL;
	}
	return store_grow(s, next);
}

int
store_backup(struct store *s, const char *dir)
{
	char path[PATH_MAX];
	int fd = -1, dfd = -1, rc, err = 0, n;

	if (s == NULL || dir == NULL || forked(s)) {
		return IHALA_EINVAL;
	}
	if ((err = datadir_prepare("store backup", dir, DATADIR_CREATE)) < 0) {
		return err;
	}
	n = snprintf(path, sizeof(path), "%s/data.mdb", dir);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		log_warnx("store: backup path '%s' is too long", dir);
		return IHALA_EINVAL;
	}
	/* Our own open, not mdb_env_copy2's: the copy holds survivors' data
	 * and must not be created with the umask's looser mode. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_warn("store: cannot create backup '%s'", path);
		return IHALA_EIO;
	}
	reader_enter(s); /* the copy runs a read txn: keep store_grow out */
	rc = mdb_env_copyfd2(s->env, fd, MDB_CP_COMPACT);
	reader_leave(s);
	if (rc != 0) {
		err = store_err(s, rc, "copying to the backup");
		goto fail;
	}
	if (fsync(fd) != 0) {
		log_warn("store: cannot flush backup '%s'", path);
		err = IHALA_EIO;
		goto fail;
	}
	if (close(fd) != 0) {
		fd = -1;
		log_warn("store: cannot close backup '%s'", path);
		err = IHALA_EIO;
		goto fail;
	}
	fd = -1;
	/* Make the new directory entry durable too. */
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	log_info("store %s: backed up to '%s'", s->dir, path);
	return 0;
fail:
	if (fd >= 0) {
		close(fd);
	}
	unlink(path);
	return err;
}

int
store_stat(struct store *s, struct store_stats *st)
{
	struct store_rtxn *r;
	MDB_envinfo info;
	MDB_stat ms;
	int rc, err;

	if (s == NULL || st == NULL) {
		return IHALA_EINVAL;
	}
	memset(st, 0, sizeof(*st));
	if ((err = store_rbegin(s, &r)) < 0) {
		return err;
	}
	if ((rc = mdb_env_info(s->env, &info)) != 0 || (rc = mdb_stat(r->txn, s->log, &ms)) != 0) {
		err = store_err(s, rc, "reading statistics");
		goto out;
	}
	st->entries = ms.ms_entries;
	st->map_size = info.me_mapsize;
	st->max_mapsize = s->max_mapsize;
	st->page_size = ms.ms_psize;
	st->used_bytes = (info.me_last_pgno + 1) * (size_t)ms.ms_psize;
	err = store_log_last(r, &st->last_seq);
out:
	store_rend(r);
	return err;
}

/* ---- iterators bound to a transaction ---- */

static void
iters_detach(struct store_rtxn *r)
{
	struct store_log_iter *it;

	while ((it = r->iters) != NULL) {
		log_warnx("store %s: log iterator still open at the end of its transaction (a bug)",
			  r->s->dir);
		mdb_cursor_close(it->cur);
		it->cur = NULL;
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
		log_warnx("store %s: opened read-only; cannot write", s->dir);
		return IHALA_EINVAL;
	}
	if (s->wtxn != NULL) {
		log_warnx("store %s: a write batch is already open (a bug)", s->dir);
		return IHALA_EINVAL;
	}
	if (s->map_full && (s->flags & STORE_AUTO_GROW) != 0) {
		/* Failure to grow is not fatal: smaller writes may still fit. */
		(void)store_grow_auto(s);
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		return IHALA_ENOMEM;
	}
	w->r.s = s;
	w->r.w = w;
	if ((rc = mdb_txn_begin(s->env, NULL, 0, &w->r.txn)) != 0) {
		free(w);
		return store_err(s, rc, "beginning a write batch");
	}
	if ((err = load_next_seq(w)) < 0) {
		mdb_txn_abort(w->r.txn);
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
	mdb_txn_abort(w->r.txn);
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
		log_warnx("store %s: store_wcommit on a sub-batch (a bug)", s->dir);
		return IHALA_EINVAL;
	}
	if (w->child != NULL || w->r.iters != NULL) {
		log_warnx("store %s: batch committed with a sub-batch or iterator open (a bug); "
			  "aborted",
			  s->dir);
		wabort_tree(w);
		return IHALA_EINTERNAL;
	}
	if (w->failed != 0) {
		err = w->failed;
		wabort_tree(w);
		return err;
	}
	if ((err = qc_flush(w)) < 0) {
		wabort_tree(w);
		return err;
	}
	rc = mdb_txn_commit(w->r.txn); /* frees the txn, also on failure */
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
			  w->r.s->dir);
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
	if ((err = qc_flush(parent)) < 0) {
		return err;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		return IHALA_ENOMEM;
	}
	c->r.s = parent->r.s;
	c->r.w = c;
	c->parent = parent;
	c->next_seq = parent->next_seq;
	if ((rc = mdb_txn_begin(parent->r.s->env, parent->r.txn, 0, &c->r.txn)) != 0) {
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
			  c->r.s->dir);
		wabort_tree(c);
		return IHALA_EINTERNAL;
	}
	if (c->failed != 0) {
		err = c->failed;
		wabort_tree(c);
		return err;
	}
	rc = mdb_txn_commit(c->r.txn);
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
			  c->r.s->dir);
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
	reader_enter(s);
	if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &r->txn)) != 0) {
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
			  s->dir);
		return;
	}
	iters_detach(r);
	mdb_txn_abort(r->txn);
	free(r);
	reader_leave(s);
}

/* ---- log ---- */

uint64_t
store_log_next(struct store_wtxn *w)
{
	return w != NULL ? w->next_seq : 0;
}

int
store_log_append(struct store_wtxn *w, const void *entry, size_t len, uint64_t *seq_out)
{
	MDB_val k, v;
	size_t key;
	int rc, err;

	if ((err = wcheck(w)) < 0) {
		return err;
	}
	if (entry == NULL || len == 0) {
		return IHALA_EINVAL;
	}
	if (len > STORE_MAX_VALUE) {
		return IHALA_ETOOLARGE;
	}
	if (w->next_seq == 0) { /* wrapped past UINT64_MAX */
		return IHALA_ESTOREFULL;
	}
	key = (size_t)w->next_seq;
	k.mv_data = &key;
	k.mv_size = sizeof(key);
	v.mv_data = (void *)entry;
	v.mv_size = len;
	/* MDB_APPEND also guards the invariant: a seq at or below the last
	 * one fails with MDB_KEYEXIST instead of overwriting history. */
	if ((rc = mdb_put(w->r.txn, w->r.s->log, &k, &v, MDB_APPEND)) != 0) {
		if (rc == MDB_KEYEXIST) {
			log_warnx("store %s: seq %llu already in the log (a bug)", w->r.s->dir,
				  (unsigned long long)w->next_seq);
			if (w->failed == 0) {
				w->failed = IHALA_EINTERNAL;
			}
			return IHALA_EINTERNAL;
		}
		return wfail(w, rc, "appending to the log");
	}
	if (seq_out != NULL) {
		*seq_out = w->next_seq;
	}
	w->next_seq++;
	return 0;
}

int
store_log_get(struct store_rtxn *r, uint64_t seq, const void **data, size_t *len)
{
	MDB_val k, v;
	size_t key = (size_t)seq;
	int rc, err;

	if ((err = rcheck(r)) < 0) {
		return err;
	}
	if (data == NULL || len == NULL) {
		return IHALA_EINVAL;
	}
	if (seq == 0) {
		return IHALA_ENOTFOUND;
	}
	k.mv_data = &key;
	k.mv_size = sizeof(key);
	if ((rc = mdb_get(r->txn, r->s->log, &k, &v)) != 0) {
		return store_err(r->s, rc, "reading the log");
	}
	*data = v.mv_data;
	*len = v.mv_size;
	return 0;
}

int
store_log_last(struct store_rtxn *r, uint64_t *seq)
{
	MDB_cursor *cur;
	MDB_val k, v;
	size_t key;
	int rc, err;

	if ((err = rcheck(r)) < 0) {
		return err;
	}
	if (seq == NULL) {
		return IHALA_EINVAL;
	}
	if ((rc = mdb_cursor_open(r->txn, r->s->log, &cur)) != 0) {
		return store_err(r->s, rc, "opening a log cursor");
	}
	rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND) {
		*seq = 0;
		return 0;
	}
	if (rc != 0) {
		return store_err(r->s, rc, "reading the last log entry");
	}
	if (k.mv_size != sizeof(key)) {
		log_warnx("store %s: damaged log key", r->s->dir);
		return IHALA_ESTORE;
	}
	memcpy(&key, k.mv_data, sizeof(key));
	*seq = key;
	return 0;
}

int
store_log_iter_begin(struct store_rtxn *r, uint64_t from_seq, struct store_log_iter **out)
{
	struct store_log_iter *it;
	int rc, err;

	if (out == NULL) {
		return IHALA_EINVAL;
	}
	*out = NULL;
	if ((err = rcheck(r)) < 0) {
		return err;
	}
	if ((it = calloc(1, sizeof(*it))) == NULL) {
		return IHALA_ENOMEM;
	}
	if ((rc = mdb_cursor_open(r->txn, r->s->log, &it->cur)) != 0) {
		free(it);
		return store_err(r->s, rc, "opening a log cursor");
	}
	it->r = r;
	it->from = from_seq == 0 ? 1 : from_seq;
	it->next = r->iters;
	if (it->next != NULL) {
		it->next->pprev = &it->next;
	}
	it->pprev = &r->iters;
	r->iters = it;
	*out = it;
	return 0;
}

int
store_log_iter_next(struct store_log_iter *it, uint64_t *seq, const void **data, size_t *len)
{
	MDB_val k, v;
	size_t key;
	int rc, err;

	if (it == NULL || it->r == NULL || seq == NULL || data == NULL || len == NULL) {
		return IHALA_EINVAL;
	}
	if ((err = rcheck(it->r)) < 0) {
		return err;
	}
	if (!it->started) {
		key = (size_t)it->from;
		k.mv_data = &key;
		k.mv_size = sizeof(key);
		rc = mdb_cursor_get(it->cur, &k, &v, MDB_SET_RANGE);
		it->started = 1;
	} else {
		rc = mdb_cursor_get(it->cur, &k, &v, MDB_NEXT);
	}
	if (rc != 0) {
		return store_err(it->r->s, rc, "iterating the log");
	}
	if (k.mv_size != sizeof(key)) {
		log_warnx("store %s: damaged log key", it->r->s->dir);
		return IHALA_ESTORE;
	}
	memcpy(&key, k.mv_data, sizeof(key));
	*seq = key;
	*data = v.mv_data;
	*len = v.mv_size;
	return 0;
}

void
store_log_iter_end(struct store_log_iter *it)
{
	if (it == NULL) {
		return;
	}
	if (it->r != NULL) {
		mdb_cursor_close(it->cur);
		*it->pprev = it->next;
		if (it->next != NULL) {
			it->next->pprev = it->pprev;
		}
	}
	free(it);
}

/* ---- msgid ---- */

static int
msgid_key(const struct store *s, const char *sender, const char *msgid, uint8_t *buf, MDB_val *k)
{
	size_t sn, mn;
	int rc;

	if ((rc = id_len(s, sender, 2, &sn)) < 0) {
		return rc;
	}
	if ((rc = id_len(s, msgid, sn + 1, &mn)) < 0) {
		return rc;
	}
	memcpy(buf, sender, sn);
	buf[sn] = '\0';
	memcpy(buf + sn + 1, msgid, mn);
	k->mv_data = buf;
	k->mv_size = sn + 1 + mn;
	return 0;
}

static int
read_seq_value(struct store *s, const MDB_val *v, uint64_t *seq)
{
	if (v->mv_size != SEQ_LEN) {
		log_warnx("store %s: damaged message id record", s->dir);
		return IHALA_ESTORE;
	}
	*seq = be64dec(v->mv_data);
	return 0;
}

int
store_msgid_put(struct store_wtxn *w, const char *sender, const char *msgid, uint64_t seq)
{
	uint8_t kbuf[1024], vbuf[SEQ_LEN];
	uint64_t old;
	MDB_val k, v;
	int rc, err;

	if ((err = wcheck(w)) < 0) {
		return err;
	}
	if (w->r.s->maxkey > sizeof(kbuf)) {
		return IHALA_EINTERNAL;
	}
	if ((err = msgid_key(w->r.s, sender, msgid, kbuf, &k)) < 0) {
		return err;
	}
	if (seq == 0 || seq >= w->next_seq) {
		return IHALA_EINVAL;
	}
	be64enc(vbuf, seq);
	v.mv_data = vbuf;
	v.mv_size = sizeof(vbuf);
	rc = mdb_put(w->r.txn, w->r.s->msgid, &k, &v, MDB_NOOVERWRITE);
	if (rc == MDB_KEYEXIST) {
		/* v now holds the stored value. */
		if ((err = read_seq_value(w->r.s, &v, &old)) < 0) {
			return err;
		}
		return old == seq ? 0 : IHALA_EMSGID;
	}
	if (rc != 0) {
		return wfail(w, rc, "recording a message id");
	}
	return 0;
}

int
store_msgid_get(struct store_rtxn *r, const char *sender, const char *msgid, uint64_t *seq)
{
	uint8_t kbuf[1024];
	MDB_val k, v;
	int rc, err;

	if ((err = rcheck(r)) < 0) {
		return err;
	}
	if (seq == NULL || r->s->maxkey > sizeof(kbuf)) {
		return IHALA_EINVAL;
	}
	if ((err = msgid_key(r->s, sender, msgid, kbuf, &k)) < 0) {
		return err;
	}
	if ((rc = mdb_get(r->txn, r->s->msgid, &k, &v)) != 0) {
		return store_err(r->s, rc, "reading a message id");
	}
	return read_seq_value(r->s, &v, seq);
}

/* ---- queue ---- */

/* The counter cache of `w` when it may be used: a top batch with no sub-batch open. */
static struct store_wtxn *
qc_owner(struct store_wtxn *w)
{
	return w != NULL && w->parent == NULL && w->child == NULL ? w : NULL;
}

static struct qc_slot *
qc_find(struct store_wtxn *w, const MDB_val *ck)
{
	size_t i;

	for (i = 0; i < w->n_qc; i++) {
		if (w->qc[i].len == ck->mv_size && memcmp(w->qc[i].key, ck->mv_data, ck->mv_size) == 0) {
			return &w->qc[i];
		}
	}
	return NULL;
}

static int
qcount_read_db(struct store_rtxn *r, const MDB_val *ck, uint64_t *n)
{
	MDB_val v;
	int rc;

	rc = mdb_get(r->txn, r->s->meta, (MDB_val *)ck, &v);
	if (rc == MDB_NOTFOUND) {
		*n = 0;
		return 0;
	}
	if (rc != 0) {
		return store_err(r->s, rc, "reading a queue counter");
	}
	return parse_count(r->s, &v, n);
}

static int
qcount_write_db(struct store_wtxn *w, const MDB_val *ck, uint64_t n)
{
	char buf[24];
	MDB_val v;
	int rc;

	if (n == 0) {
		rc = mdb_del(w->r.txn, w->r.s->meta, (MDB_val *)ck, NULL);
		if (rc == MDB_NOTFOUND) {
			rc = 0;
		}
	} else {
		v.mv_size = (size_t)snprintf(buf, sizeof(buf), "%llu", (unsigned long long)n);
		v.mv_data = buf;
		rc = mdb_put(w->r.txn, w->r.s->meta, (MDB_val *)ck, &v, 0);
	}
	return rc != 0 ? wfail(w, rc, "updating a queue counter") : 0;
}

/* Write the batch's changed counters into its transaction and forget them all. */
static int
qc_flush(struct store_wtxn *w)
{
	MDB_val ck;
	size_t i;
	int err = 0;

	for (i = 0; i < w->n_qc && err == 0; i++) {
		if (w->qc[i].dirty) {
			ck.mv_data = w->qc[i].key;
			ck.mv_size = w->qc[i].len;
			err = qcount_write_db(w, &ck, w->qc[i].n);
		}
	}
	w->n_qc = 0;
	return err;
}

static int
qcount_read(struct store_rtxn *r, const MDB_val *ck, uint64_t *n)
{
	struct store_wtxn *w = qc_owner(r->w);
	struct qc_slot *q;
	int err;

	if (w != NULL && (q = qc_find(w, ck)) != NULL) {
		*n = q->n;
		return 0;
	}
	if ((err = qcount_read_db(r, ck, n)) < 0) {
		return err;
	}
	if (w != NULL && w->n_qc < QC_SLOTS && ck->mv_size <= QC_KEY_MAX) {
		q = &w->qc[w->n_qc++];
		memcpy(q->key, ck->mv_data, ck->mv_size);
		q->len = ck->mv_size;
		q->n = *n;
		q->dirty = 0;
	}
	return 0;
}

/* After a qcount_read of the same key in the same batch. */
static int
qcount_write(struct store_wtxn *w, const MDB_val *ck, uint64_t n)
{
	struct qc_slot *q = qc_owner(w) != NULL ? qc_find(w, ck) : NULL;

	if (q == NULL) {
		return qcount_write_db(w, ck, n);
	}
	q->n = n;
	q->dirty = 1;
	return 0;
}

int
store_queue_put_tagged(struct store_wtxn *w, const char *agency, uint64_t seq, const void *tag,
		       size_t tag_len)
{
	uint8_t kbuf[1024];
	char cbuf[1024];
	uint64_t n;
	MDB_val k, ck, v;
	int rc, err;

	if ((err = wcheck(w)) < 0) {
		return err;
	}
	if (w->r.s->maxkey > sizeof(kbuf) || tag_len > STORE_QUEUE_TAG_MAX ||
	    (tag == NULL && tag_len > 0)) {
		return IHALA_EINVAL;
	}
	if ((err = queue_key(w->r.s, agency, seq, kbuf, &k)) < 0 ||
	    (err = qcount_key(w->r.s, agency, cbuf, &ck)) < 0) {
		return err;
	}
	if (seq == 0 || seq >= w->next_seq) {
		return IHALA_EINVAL;
	}
	if ((err = qcount_read(&w->r, &ck, &n)) < 0) {
		return err;
	}
	v.mv_data = (void *)tag;
	v.mv_size = tag_len;
	rc = mdb_put(w->r.txn, w->r.s->queue, &k, &v, MDB_NOOVERWRITE);
	if (rc == MDB_KEYEXIST) {
		log_warnx("store %s: seq %llu already queued for '%s' (a bug)", w->r.s->dir,
			  (unsigned long long)seq, agency);
		return IHALA_EINVAL;
	}
	if (rc != 0) {
		return wfail(w, rc, "queueing");
	}
	return qcount_write(w, &ck, n + 1);
}

int
store_queue_put(struct store_wtxn *w, const char *agency, uint64_t seq)
{
	return store_queue_put_tagged(w, agency, seq, NULL, 0);
}

int
store_queue_take(struct store_wtxn *w, const char *agency, uint64_t seq, void *tag, size_t tag_cap,
		 size_t *tag_len)
{
	uint8_t kbuf[1024];
	char cbuf[1024];
	uint64_t n;
	MDB_cursor *cur;
	MDB_val k, ck, v;
	int rc, err;

	if ((err = wcheck(w)) < 0) {
		return err;
	}
	if (w->r.s->maxkey > sizeof(kbuf) || tag_len == NULL || (tag == NULL && tag_cap > 0)) {
		return IHALA_EINVAL;
	}
	*tag_len = 0;
	if ((err = queue_key(w->r.s, agency, seq, kbuf, &k)) < 0 ||
	    (err = qcount_key(w->r.s, agency, cbuf, &ck)) < 0) {
		return err;
	}
	if ((err = qcount_read(&w->r, &ck, &n)) < 0) {
		return err;
	}
	if ((rc = mdb_cursor_open(w->r.txn, w->r.s->queue, &cur)) != 0) {
		return wfail(w, rc, "opening a queue cursor");
	}
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
	if (rc == 0) {
		if (v.mv_size > 0 && v.mv_size <= tag_cap) {
			memcpy(tag, v.mv_data, v.mv_size);
			*tag_len = v.mv_size;
		}
		rc = mdb_cursor_del(cur, 0);
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND) {
		return IHALA_ENOTFOUND;
	}
	if (rc != 0) {
		return wfail(w, rc, "removing from a queue");
	}
	if (n == 0) {
		log_warnx("store %s: queue counter of '%s' was 0 with a seq queued; store damaged",
			  w->r.s->dir, agency);
		w->failed = IHALA_ESTORE;
		return IHALA_ESTORE;
	}
	return qcount_write(w, &ck, n - 1);
}

int
store_queue_del(struct store_wtxn *w, const char *agency, uint64_t seq)
{
	size_t len;

	return store_queue_take(w, agency, seq, NULL, 0, &len);
}

int
store_queue_count(struct store_rtxn *r, const char *agency, size_t *n)
{
	char cbuf[1024];
	uint64_t c;
	MDB_val ck;
	int err;

	if ((err = rcheck(r)) < 0) {
		return err;
	}
	if (n == NULL || r->s->maxkey > sizeof(cbuf)) {
		return IHALA_EINVAL;
	}
	/* The counter key allows a longer agency than the queue key does:
	 * check against the queue key so both agree on what is valid. */
	if ((err = id_len(r->s, agency, 1 + SEQ_LEN, &(size_t){ 0 })) < 0 ||
	    (err = qcount_key(r->s, agency, cbuf, &ck)) < 0) {
		return err;
	}
	if ((err = qcount_read(r, &ck, &c)) < 0) {
		return err;
	}
	*n = (size_t)c;
	return 0;
}

int
store_queue_iter(struct store_rtxn *r, const char *agency, uint64_t from_seq, store_queue_cb cb,
		 void *arg)
{
	uint8_t kbuf[1024];
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	size_t alen;
	int rc, err;

	if ((err = rcheck(r)) < 0) {
		return err;
	}
	if (cb == NULL || r->s->maxkey > sizeof(kbuf)) {
		return IHALA_EINVAL;
	}
	if ((err = queue_key(r->s, agency, from_seq, kbuf, &k)) < 0) {
		return err;
	}
	alen = k.mv_size - SEQ_LEN; /* agency + NUL: the prefix of this queue */
	if ((rc = mdb_cursor_open(r->txn, r->s->queue, &cur)) != 0) {
		return store_err(r->s, rc, "opening a queue cursor");
	}
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	err = 0;
	while (rc == 0) {
		if (k.mv_size != alen + SEQ_LEN || memcmp(k.mv_data, kbuf, alen) != 0) {
			break; /* past this agency's keys */
		}
		err = cb(arg, be64dec((const uint8_t *)k.mv_data + alen));
		if (err != 0) {
			break;
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (err != 0) {
		return err < 0 ? err : 0;
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		return store_err(r->s, rc, "iterating a queue");
	}
	return 0;
}

/* ---- referral ---- */

static int meta_reserved(const struct store *s, const char *key);

/* Put / get of a value under a string key (referral ids, meta keys), with the store's checks;
 * `reserved`: refuse the keys the store keeps for itself. */
static int
str_put(struct store_wtxn *w, MDB_dbi dbi, const char *key, const void *val, size_t len,
	int reserved, const char *what)
{
	MDB_val k, v;
	size_t n;
	int rc, err;

	if ((err = wcheck(w)) < 0) {
		return err;
	}
	if ((err = id_len(w->r.s, key, 0, &n)) < 0) {
		return err;
	}
	if (reserved && meta_reserved(w->r.s, key)) {
		return IHALA_EINVAL;
	}
	if (val == NULL && len != 0) {
		return IHALA_EINVAL;
	}
	if (len > STORE_MAX_VALUE) {
		return IHALA_ETOOLARGE;
	}
	k.mv_data = (void *)key;
	k.mv_size = n;
	v.mv_data = (void *)val;
	v.mv_size = len;
	if ((rc = mdb_put(w->r.txn, dbi, &k, &v, 0)) != 0) {
		return wfail(w, rc, what);
	}
	return 0;
}

static int
str_get(struct store_rtxn *r, MDB_dbi dbi, const char *key, const void **val, size_t *len,
	const char *what)
{
	MDB_val k, v;
	size_t n;
	int rc, err;

	if ((err = rcheck(r)) < 0) {
		return err;
	}
	if (val == NULL || len == NULL) {
		return IHALA_EINVAL;
	}
	if ((err = id_len(r->s, key, 0, &n)) < 0) {
		return err;
	}
	k.mv_data = (void *)key;
	k.mv_size = n;
	if ((rc = mdb_get(r->txn, dbi, &k, &v)) != 0) {
		return store_err(r->s, rc, what);
	}
	*val = v.mv_data;
	*len = v.mv_size;
	return 0;
}

int
store_referral_put(struct store_wtxn *w, const char *referral_id, const void *state, size_t len)
{
	return str_put(w, w != NULL ? w->r.s->referral : 0, referral_id, state, len, 0,
		       "storing a referral");
}

int
store_referral_get(struct store_rtxn *r, const char *referral_id, const void **state, size_t *len)
{
	return str_get(r, r != NULL ? r->s->referral : 0, referral_id, state, len,
		       "reading a referral");
}

/* ---- tree ---- */

static int
tree_key(unsigned level, uint64_t index, uint8_t *buf, MDB_val *k)
{
	if (level > 63) {
		return IHALA_EINVAL;
	}
	buf[0] = (uint8_t)level;
	be64enc(buf + 1, index);
	k->mv_data = buf;
	k->mv_size = TREE_KEY_LEN;
	return 0;
}

int
store_tree_put(struct store_wtxn *w, unsigned level, uint64_t index,
	       const uint8_t hash[STORE_HASH_LEN])
{
	uint8_t kbuf[TREE_KEY_LEN];
	MDB_val k, v;
	int rc, err;

	if ((err = wcheck(w)) < 0) {
		return err;
	}
	if (hash == NULL || (err = tree_key(level, index, kbuf, &k)) < 0) {
		return IHALA_EINVAL;
	}
	v.mv_data = (void *)hash;
	v.mv_size = STORE_HASH_LEN;
	rc = mdb_put(w->r.txn, w->r.s->tree, &k, &v, MDB_NOOVERWRITE);
	if (rc == MDB_KEYEXIST) {
		if (v.mv_size == STORE_HASH_LEN && memcmp(v.mv_data, hash, STORE_HASH_LEN) == 0) {
			return 0;
		}
		log_warnx("store %s: tree node (level %u, index %llu) already stored with another "
			  "hash; refusing to rewrite it",
			  w->r.s->dir, level, (unsigned long long)index);
		return IHALA_EINCONSISTENT;
	}
	if (rc != 0) {
		return wfail(w, rc, "storing a tree node");
	}
	return 0;
}

int
store_tree_get(struct store_rtxn *r, unsigned level, uint64_t index, uint8_t hash[STORE_HASH_LEN])
{
	uint8_t kbuf[TREE_KEY_LEN];
	MDB_val k, v;
	int rc, err;

	if ((err = rcheck(r)) < 0) {
		return err;
	}
	if (hash == NULL || (err = tree_key(level, index, kbuf, &k)) < 0) {
		return IHALA_EINVAL;
	}
	if ((rc = mdb_get(r->txn, r->s->tree, &k, &v)) != 0) {
		return store_err(r->s, rc, "reading a tree node");
	}
	if (v.mv_size != STORE_HASH_LEN) {
		log_warnx("store %s: damaged tree node (level %u, index %llu)", r->s->dir, level,
			  (unsigned long long)index);
		return IHALA_ESTORE;
	}
	memcpy(hash, v.mv_data, STORE_HASH_LEN);
	return 0;
}

/* ---- checkpoint ---- */

static int
copy_text(const MDB_val *v, char **text)
{
	char *t;

	if ((t = malloc(v->mv_size + 1)) == NULL) {
		return IHALA_ENOMEM;
	}
	memcpy(t, v->mv_data, v->mv_size);
	t[v->mv_size] = '\0';
	*text = t;
	return 0;
}

int
store_checkpoint_put(struct store_wtxn *w, uint64_t size, const char *text)
{
	uint8_t kbuf[SEQ_LEN];
	MDB_val k, v;
	size_t n;
	int rc, err;

	if ((err = wcheck(w)) < 0) {
		return err;
	}
	if (text == NULL || (n = strlen(text)) == 0) {
		return IHALA_EINVAL;
	}
	if (n > STORE_MAX_CHECKPOINT) {
		return IHALA_ETOOLARGE;
	}
	if (size >= w->next_seq) {
		log_warnx("store %s: checkpoint of size %llu is ahead of the log (last seq %llu)",
			  w->r.s->dir, (unsigned long long)size,
			  (unsigned long long)(w->next_seq - 1));
		return IHALA_EINVAL;
	}
	be64enc(kbuf, size);
	k.mv_data = kbuf;
	k.mv_size = sizeof(kbuf);
	v.mv_data = (void *)text;
	v.mv_size = n;
	rc = mdb_put(w->r.txn, w->r.s->checkpoint, &k, &v, MDB_NOOVERWRITE);
	if (rc == MDB_KEYEXIST) {
		if (v.mv_size == n && memcmp(v.mv_data, text, n) == 0) {
			return 0;
		}
		log_warnx("store %s: a different checkpoint of size %llu is already stored; "
			  "refusing to replace it",
			  w->r.s->dir, (unsigned long long)size);
		return IHALA_EINCONSISTENT;
	}
	if (rc != 0) {
		return wfail(w, rc, "storing a checkpoint");
	}
	return 0;
}

int
store_checkpoint_get(struct store_rtxn *r, uint64_t size, char **text)
{
	uint8_t kbuf[SEQ_LEN];
	MDB_val k, v;
	int rc, err;

	if ((err = rcheck(r)) < 0) {
		return err;
	}
	if (text == NULL) {
		return IHALA_EINVAL;
	}
	be64enc(kbuf, size);
	k.mv_data = kbuf;
	k.mv_size = sizeof(kbuf);
	if ((rc = mdb_get(r->txn, r->s->checkpoint, &k, &v)) != 0) {
		return store_err(r->s, rc, "reading a checkpoint");
	}
	return copy_text(&v, text);
}

int
store_checkpoint_latest(struct store_rtxn *r, uint64_t *size, char **text)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, err;

	if ((err = rcheck(r)) < 0) {
		return err;
	}
	if (size == NULL || text == NULL) {
		return IHALA_EINVAL;
	}
	if ((rc = mdb_cursor_open(r->txn, r->s->checkpoint, &cur)) != 0) {
		return store_err(r->s, rc, "opening a checkpoint cursor");
	}
	rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
	mdb_cursor_close(cur);
	if (rc != 0) {
		return store_err(r->s, rc, "reading the latest checkpoint");
	}
	if (k.mv_size != SEQ_LEN) {
		log_warnx("store %s: damaged checkpoint key", r->s->dir);
		return IHALA_ESTORE;
	}
	if ((err = copy_text(&v, text)) < 0) {
		return err;
	}
	*size = be64dec(k.mv_data);
	return 0;
}

int
store_checkpoint_iter(struct store_rtxn *r, uint64_t from_size, store_checkpoint_cb cb, void *arg)
{
	uint8_t kbuf[SEQ_LEN];
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc, err;

	if ((err = rcheck(r)) < 0) {
		return err;
	}
	if (cb == NULL) {
		return IHALA_EINVAL;
	}
	if ((rc = mdb_cursor_open(r->txn, r->s->checkpoint, &cur)) != 0) {
		return store_err(r->s, rc, "opening a checkpoint cursor");
	}
	be64enc(kbuf, from_size);
	k.mv_data = kbuf;
	k.mv_size = sizeof(kbuf);
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	err = 0;
	while (rc == 0) {
		if (k.mv_size != SEQ_LEN) {
			log_warnx("store %s: damaged checkpoint key", r->s->dir);
			err = IHALA_ESTORE;
			break;
		}
		err = cb(arg, be64dec(k.mv_data), v.mv_data, v.mv_size);
		if (err != 0) {
			break;
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (err != 0) {
		return err < 0 ? err : 0;
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		return store_err(r->s, rc, "iterating the checkpoints");
	}
	return 0;
}

/* ---- meta ---- */

static int
meta_reserved(const struct store *s, const char *key)
{
	if (strcmp(key, META_VERSION) == 0 || strcmp(key, META_CREATED) == 0 ||
	    strncmp(key, QCOUNT_PREFIX, strlen(QCOUNT_PREFIX)) == 0) {
		log_warnx("store %s: meta key '%s' belongs to the store (a bug)", s->dir, key);
		return 1;
	}
	return 0;
}

int
store_meta_put(struct store_wtxn *w, const char *key, const void *val, size_t len)
{
	return str_put(w, w != NULL ? w->r.s->meta : 0, key, val, len, 1, "storing a meta value");
}

int
store_meta_get(struct store_rtxn *r, const char *key, const void **val, size_t *len)
{
	return str_get(r, r != NULL ? r->s->meta : 0, key, val, len, "reading a meta value");
}

int
store_meta_del(struct store_wtxn *w, const char *key)
{
	MDB_val k;
	size_t n;
	int rc, err;

	if ((err = wcheck(w)) < 0) {
		return err;
	}
	if ((err = id_len(w->r.s, key, 0, &n)) < 0) {
		return err;
	}
	if (meta_reserved(w->r.s, key)) {
		return IHALA_EINVAL;
	}
	k.mv_data = (void *)key;
	k.mv_size = n;
	rc = mdb_del(w->r.txn, w->r.s->meta, &k, NULL);
	if (rc == MDB_NOTFOUND) {
		return IHALA_ENOTFOUND;
	}
	if (rc != 0) {
		return wfail(w, rc, "deleting a meta value");
	}
	return 0;
}

int
store_meta_first(struct store_rtxn *r, const char *prefix, char *key, size_t size)
{
	MDB_cursor *cur;
	MDB_val k, v;
	size_t n;
	int rc, err;

	if ((err = rcheck(r)) < 0) {
		return err;
	}
	if (key == NULL || size == 0) {
		return IHALA_EINVAL;
	}
	if ((err = id_len(r->s, prefix, 0, &n)) < 0) {
		return err;
	}
	if ((rc = mdb_cursor_open(r->txn, r->s->meta, &cur)) != 0) {
		return store_err(r->s, rc, "opening a meta cursor");
	}
	k.mv_data = (void *)prefix;
	k.mv_size = n;
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	mdb_cursor_close(cur); /* k still points into the map until txn end */
	if (rc != 0) {
		return store_err(r->s, rc, "searching meta");
	}
	if (k.mv_size < n || memcmp(k.mv_data, prefix, n) != 0) {
		return IHALA_ENOTFOUND;
	}
	if (k.mv_size >= size || memchr(k.mv_data, '\0', k.mv_size) != NULL) {
		return IHALA_ETOOLARGE;
	}
	memcpy(key, k.mv_data, k.mv_size);
	key[k.mv_size] = '\0';
	return 0;
}
