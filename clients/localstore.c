/* localstore.c - a client node's durable local store over LMDB: outbox, inbox, last checkpoint. */
#include "localstore.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
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

/*
 * Layout (all integers big-endian, so keys sort numerically):
 *   meta         "format_version" -> "1", "kind" -> "client", "created" -> UTC time,
 *                "outbox_next" -> u64 next outbox counter (never reused),
 *                "checkpoint" -> last verified checkpoint text
 *   outbox       u64 counter -> u8 id length, id, envelope bytes
 *   outbox_id    message id -> u64 counter
 *   inbox        u64 seq -> entry bytes (PENDING)
 *   inbox_done   u64 seq -> empty (DONE)
 * A seq is in at most one of inbox and inbox_done, so next_pending is one
 * cursor seek however many deliveries are already done.
 */

#define LS_MAXDBS 8
#define LS_LOCKFILE "ihala-client.lock"
#define LS_KIND "client"
#define META_VERSION "format_version"
#define META_KIND "kind"
#define META_CREATED "created"
#define META_OUTBOX_NEXT "outbox_next"
#define META_CHECKPOINT "checkpoint"
#define U64_LEN 8
/* LMDB stores a value's size in 32 bits. */
#define LS_MAX_VALUE ((size_t)UINT32_MAX)
#define LS_MAX_ENVELOPE (LS_MAX_VALUE - 1 - LOCALSTORE_MAX_MSGID)

struct localstore {
	MDB_env *env;
	MDB_dbi meta;
	MDB_dbi outbox;
	MDB_dbi outbox_id;
	MDB_dbi inbox;
	MDB_dbi inbox_done;
	char *dir;
	int lockfd;
};

/* ---- small helpers ---- */

static void
mkval(MDB_val *v, const void *data, size_t len)
{
	v->mv_data = (void *)data;
	v->mv_size = len;
}

/*
 * Map an LMDB return code to the project's codes. MDB_NOTFOUND is an
 * ordinary answer and not logged; everything else is.
 */
static int
ls_err(const struct localstore *ls, int rc, const char *what)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return IHALA_ENOTFOUND;
	case MDB_MAP_FULL:
		log_warnx("local store %s: %s: %s; the store is full (deliver the outbox or "
			  "move the data dir to a fresh one)",
			  ls->dir, what, mdb_strerror(rc));
		return IHALA_ESTOREFULL;
	case ENOMEM:
		log_warnx("local store %s: %s: %s", ls->dir, what, mdb_strerror(rc));
		return IHALA_ENOMEM;
	default:
		log_warnx("local store %s: %s: %s", ls->dir, what, mdb_strerror(rc));
		return IHALA_ESTORE;
	}
}

static int
damaged(const struct localstore *ls, const char *what)
{
	log_warnx("local store %s: damaged %s; restore the data dir from a backup", ls->dir, what);
	return IHALA_ESTORE;
}

/* A message id: 1 .. LOCALSTORE_MAX_MSGID bytes of printable ASCII without
 * spaces. Checked byte by byte so an unterminated giant is never read past
 * the limit. */
static int
msgid_len(const char *id, size_t *len)
{
	size_t n;

	if (id == NULL) {
		return IHALA_EINVAL;
	}
	for (n = 0; id[n] != '\0'; n++) {
		if (n == LOCALSTORE_MAX_MSGID) {
			return IHALA_EINVAL;
		}
		if ((unsigned char)id[n] <= 0x20 || (unsigned char)id[n] >= 0x7f) {
			return IHALA_EINVAL;
		}
	}
	if (n == 0) {
		return IHALA_EINVAL;
	}
	*len = n;
	return 0;
}

static int
rbegin(struct localstore *ls, MDB_txn **txn)
{
	int rc;

	if ((rc = mdb_txn_begin(ls->env, NULL, MDB_RDONLY, txn)) != 0) {
		*txn = NULL;
		return ls_err(ls, rc, "beginning a read transaction");
	}
	return 0;
}

static int
wbegin(struct localstore *ls, MDB_txn **txn)
{
	int rc;

	if ((rc = mdb_txn_begin(ls->env, NULL, 0, txn)) != 0) {
		*txn = NULL;
		return ls_err(ls, rc, "beginning a write transaction");
	}
	return 0;
}

/* Commit synchronously (the environment has no NOSYNC flag). The handle is
 * freed whatever the outcome. */
static int
wcommit(struct localstore *ls, MDB_txn *txn, const char *what)
{
	int rc;

	if ((rc = mdb_txn_commit(txn)) != 0) {
		return ls_err(ls, rc, what);
	}
	return 0;
}

/* ---- open / close ---- */

/* mkdir -p with mode 0700 for every directory created. */
/* Print an unknown meta value safely: printable ASCII, bounded. */
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
meta_put_str(struct localstore *ls, MDB_txn *txn, const char *key, const char *val)
{
	MDB_val k, v;
	int rc;

	mkval(&k, key, strlen(key));
	mkval(&v, val, strlen(val));
	if ((rc = mdb_put(txn, ls->meta, &k, &v, 0)) != 0) {
		return ls_err(ls, rc, "writing the format records");
	}
	return 0;
}

static int
init_meta(struct localstore *ls, MDB_txn *txn)
{
	char created[32], version[16];
	time_t now = time(NULL);
	struct tm tm;
	int err;

	snprintf(version, sizeof(version), "%d", LOCALSTORE_FORMAT_VERSION);
	gmtime_r(&now, &tm);
	strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if ((err = meta_put_str(ls, txn, META_VERSION, version)) < 0 ||
	    (err = meta_put_str(ls, txn, META_KIND, LS_KIND)) < 0 ||
	    (err = meta_put_str(ls, txn, META_CREATED, created)) < 0) {
		return err;
	}
	log_info("local store %s: created, format version %d", ls->dir, LOCALSTORE_FORMAT_VERSION);
	return 0;
}

/* Refuse a store whose meta `key` is not `want` (nothing is written). */
static int
check_meta(struct localstore *ls, MDB_txn *txn, const char *key, const char *want)
{
	char got[40];
	MDB_val k, v;
	int rc;

	mkval(&k, key, strlen(key));
	rc = mdb_get(txn, ls->meta, &k, &v);
	if (rc == MDB_NOTFOUND) {
		log_warnx("local store %s has no '%s' record; it is damaged or not an ihala "
			  "client store (give the client an empty or its own data dir)",
			  ls->dir, key);
		return IHALA_EVERSION;
	}
	if (rc != 0) {
		return ls_err(ls, rc, "reading the format records");
	}
	if (v.mv_size != strlen(want) || memcmp(v.mv_data, want, v.mv_size) != 0) {
		printable(&v, got, sizeof(got));
		if (strcmp(key, META_VERSION) == 0) {
			log_warnx("local store %s has format version %s, this ihala reads version "
				  "%s; run the release that wrote it, or migrate the store",
				  ls->dir, got, want);
		} else {
			log_warnx("local store %s is of kind '%s', not '%s'; it is not an ihala "
				  "client store (give the client its own data dir)",
				  ls->dir, got, want);
		}
		return IHALA_EVERSION;
	}
	return 0;
}

/*
 * Open the named databases, creating them and the format records in an
 * empty environment, and refuse any other format before writing anything.
 */
static int
open_layout(struct localstore *ls)
{
	static const struct {
		const char *name;
		size_t off;
	} dbs[] = {
		{ "outbox", offsetof(struct localstore, outbox) },
		{ "outbox_id", offsetof(struct localstore, outbox_id) },
		{ "inbox", offsetof(struct localstore, inbox) },
		{ "inbox_done", offsetof(struct localstore, inbox_done) },
	};
	char want[16];
	MDB_txn *txn = NULL;
	MDB_dbi main;
	MDB_stat st;
	size_t i;
	int rc, err, fresh = 0;

	if ((err = wbegin(ls, &txn)) < 0) {
		return err;
	}
	rc = mdb_dbi_open(txn, "meta", 0, &ls->meta);
	if (rc == MDB_NOTFOUND) {
		if ((rc = mdb_dbi_open(txn, NULL, 0, &main)) != 0 ||
		    (rc = mdb_stat(txn, main, &st)) != 0) {
			err = ls_err(ls, rc, "reading the main database");
			goto fail;
		}
		if (st.ms_entries != 0) {
			log_warnx("local store %s has no format version; it is not an ihala client "
				  "store (give the client an empty or its own data dir)",
				  ls->dir);
			err = IHALA_EVERSION;
			goto fail;
		}
		if ((rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &ls->meta)) != 0) {
			err = ls_err(ls, rc, "creating database 'meta'");
			goto fail;
		}
		fresh = 1;
	} else if (rc != 0) {
		err = ls_err(ls, rc, "opening database 'meta'");
		goto fail;
	}
	if (!fresh) {
		snprintf(want, sizeof(want), "%d", LOCALSTORE_FORMAT_VERSION);
		if ((err = check_meta(ls, txn, META_VERSION, want)) < 0 ||
		    (err = check_meta(ls, txn, META_KIND, LS_KIND)) < 0) {
			goto fail;
		}
	}
	for (i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
		MDB_dbi *dbi = (MDB_dbi *)((char *)ls + dbs[i].off);

		rc = mdb_dbi_open(txn, dbs[i].name, fresh ? MDB_CREATE : 0, dbi);
		if (rc == MDB_NOTFOUND) {
			log_warnx("local store %s: database '%s' is missing; the store is damaged",
				  ls->dir, dbs[i].name);
			err = IHALA_ESTORE;
			goto fail;
		}
		if (rc != 0) {
			err = ls_err(ls, rc, dbs[i].name);
			goto fail;
		}
	}
	if (fresh && (err = init_meta(ls, txn)) < 0) {
		goto fail;
	}
	err = wcommit(ls, txn, "committing the opening transaction");
	txn = NULL;
	if (err < 0) {
		goto fail;
	}
	return 0;
fail:
	mdb_txn_abort(txn);
	return err;
}

int
localstore_open(const char *dir, struct localstore **out)
{
	struct localstore *ls;
	int rc, err, dead;

	if (out == NULL) {
		return IHALA_EINVAL;
	}
	*out = NULL;
	if (dir == NULL || dir[0] == '\0') {
		return IHALA_EINVAL;
	}
	if ((ls = calloc(1, sizeof(*ls))) == NULL) {
		return IHALA_ENOMEM;
	}
	ls->lockfd = -1;
	if ((ls->dir = strdup(dir)) == NULL) {
		err = IHALA_ENOMEM;
		goto fail;
	}
	err = datadir_prepare("local store", dir, DATADIR_PARENTS);
	if (err == 0) {
		err = datadir_lock("local store", ls->dir, LS_LOCKFILE, &ls->lockfd);
		if (err == IHALA_EAGAIN) {
			log_warnx("data dir %s is in use by another ihala process", ls->dir);
			err = IHALA_EIO;
		}
	}
	if (err < 0) {
		goto fail;
	}
	if ((rc = mdb_env_create(&ls->env)) != 0) {
		err = ls_err(ls, rc, "creating the environment");
		goto fail;
	}
	if ((rc = mdb_env_set_maxdbs(ls->env, LS_MAXDBS)) != 0 ||
	    (rc = mdb_env_set_mapsize(ls->env, LOCALSTORE_MAPSIZE)) != 0) {
		err = ls_err(ls, rc, "configuring the environment");
		goto fail;
	}
	/* Never MDB_NOSYNC / MDB_NOMETASYNC / MDB_WRITEMAP: a message is
	 * acked or counted as queued only once it is on disk. MDB_NOTLS lets
	 * several threads each run their short read transactions. */
	if ((rc = mdb_env_open(ls->env, dir, MDB_NOTLS, 0600)) != 0) {
		err = ls_err(ls, rc, "opening the environment");
		goto fail;
	}
	/* LMDB syncs no directory: data.mdb's name (and the directories made above) must be
	 * durable before an acked message counts on them. */
	if ((err = datadir_sync("local store", dir)) < 0) {
		goto fail;
	}
	/* Reader slots left by a process that crashed would pin old pages. */
	if ((rc = mdb_reader_check(ls->env, &dead)) != 0) {
		err = ls_err(ls, rc, "clearing stale readers");
		goto fail;
	}
	if (dead > 0) {
		log_info("local store %s: cleared %d stale reader slot(s)", dir, dead);
	}
	if ((err = open_layout(ls)) < 0) {
		goto fail;
	}
	*out = ls;
	return 0;
fail:
	localstore_close(ls);
	return err;
}

void
localstore_close(struct localstore *ls)
{
	if (ls == NULL) {
		return;
	}
	if (ls->env != NULL) {
		mdb_env_close(ls->env);
	}
	if (ls->lockfd >= 0) {
		close(ls->lockfd); /* releases the flock */
	}
	free(ls->dir);
	free(ls);
}

/* ---- outbox ---- */

/* Split an outbox record into its id (copied, NUL-terminated) and envelope. */
static int
outbox_decode(const struct localstore *ls, const MDB_val *v, char id[LOCALSTORE_MAX_MSGID + 1],
	      const void **env, size_t *len)
{
	const uint8_t *p = v->mv_data;
	size_t n, chk;

	if (v->mv_size < 1 || (n = p[0]) == 0 || n > LOCALSTORE_MAX_MSGID ||
	    v->mv_size - 1 < n) {
		return damaged(ls, "outbox record");
	}
	memcpy(id, p + 1, n);
	id[n] = '\0';
	if (msgid_len(id, &chk) < 0 || chk != n) {
		return damaged(ls, "outbox record");
	}
	*env = p + 1 + n;
	*len = v->mv_size - 1 - n;
	return 0;
}

/* Look up the counter of `id` in the index: 0, IHALA_ENOTFOUND or an error. */
static int
outbox_counter(struct localstore *ls, MDB_txn *txn, const MDB_val *k, uint64_t *counter)
{
	MDB_val v;
	int rc;

	rc = mdb_get(txn, ls->outbox_id, (MDB_val *)k, &v);
	if (rc != 0) {
		return ls_err(ls, rc, "reading the outbox index");
	}
	if (v.mv_size != U64_LEN) {
		return damaged(ls, "outbox index");
	}
	*counter = be64dec(v.mv_data);
	return 0;
}

/* Compare the queued entry `counter` with `env`: 0 same, IHALA_EMSGID
 * different, or an error. */
static int
outbox_same(struct localstore *ls, MDB_txn *txn, uint64_t counter, const char *id,
	    const void *env, size_t len)
{
	char got[LOCALSTORE_MAX_MSGID + 1];
	uint8_t kbuf[U64_LEN];
	const void *old;
	size_t oldlen;
	MDB_val k, v;
	int rc, err;

	be64enc(kbuf, counter);
	mkval(&k, kbuf, sizeof(kbuf));
	if ((rc = mdb_get(txn, ls->outbox, &k, &v)) != 0) {
		return rc == MDB_NOTFOUND ? damaged(ls, "outbox index")
					  : ls_err(ls, rc, "reading the outbox");
	}
	if ((err = outbox_decode(ls, &v, got, &old, &oldlen)) < 0) {
		return err;
	}
	if (strcmp(got, id) != 0) {
		return damaged(ls, "outbox index");
	}
	if (oldlen != len || memcmp(old, env, len) != 0) {
		log_warnx("local store %s: message id '%s' is already queued with other content",
			  ls->dir, id);
		return IHALA_EMSGID;
	}
	return 0;
}

int
localstore_outbox_put(struct localstore *ls, const char *message_id, const void *env, size_t len)
{
	uint8_t kbuf[U64_LEN], nbuf[U64_LEN];
	MDB_txn *txn = NULL;
	MDB_val k, v, ik, nk, nv;
	uint64_t counter;
	size_t idn;
	int rc, err;

	if (ls == NULL || msgid_len(message_id, &idn) < 0 || env == NULL || len == 0) {
		return IHALA_EINVAL;
	}
	if (len > LS_MAX_ENVELOPE) {
		return IHALA_ETOOLARGE;
	}
	if ((err = wbegin(ls, &txn)) < 0) {
		return err;
	}
	mkval(&ik, message_id, idn);
	err = outbox_counter(ls, txn, &ik, &counter);
	if (err == 0) {
		/* Already queued: nothing to write either way. */
		err = outbox_same(ls, txn, counter, message_id, env, len);
		goto fail;
	}
	if (err != IHALA_ENOTFOUND) {
		goto fail;
	}

	/* The next counter; absent in a new store. */
	mkval(&nk, META_OUTBOX_NEXT, strlen(META_OUTBOX_NEXT));
	rc = mdb_get(txn, ls->meta, &nk, &nv);
	if (rc == MDB_NOTFOUND) {
		counter = 1;
	} else if (rc != 0) {
		err = ls_err(ls, rc, "reading the outbox counter");
		goto fail;
	} else if (nv.mv_size != U64_LEN || (counter = be64dec(nv.mv_data)) == 0 ||
		   counter == UINT64_MAX) {
		err = damaged(ls, "outbox counter");
		goto fail;
	}

	/* Counters only grow, so the record goes at the end (MDB_APPEND). */
	be64enc(kbuf, counter);
	mkval(&k, kbuf, sizeof(kbuf));
	mkval(&v, NULL, 1 + idn + len);
	rc = mdb_put(txn, ls->outbox, &k, &v, MDB_RESERVE | MDB_APPEND);
	if (rc == MDB_KEYEXIST) {
		err = damaged(ls, "outbox counter");
		goto fail;
	}
	if (rc != 0) {
		err = ls_err(ls, rc, "queueing a message");
		goto fail;
	}
	((uint8_t *)v.mv_data)[0] = (uint8_t)idn;
	memcpy((uint8_t *)v.mv_data + 1, message_id, idn);
	memcpy((uint8_t *)v.mv_data + 1 + idn, env, len);

	mkval(&v, kbuf, sizeof(kbuf));
	if ((rc = mdb_put(txn, ls->outbox_id, &ik, &v, MDB_NOOVERWRITE)) != 0) {
		err = ls_err(ls, rc, "indexing a queued message");
		goto fail;
	}
	be64enc(nbuf, counter + 1);
	mkval(&nv, nbuf, sizeof(nbuf));
	if ((rc = mdb_put(txn, ls->meta, &nk, &nv, 0)) != 0) {
		err = ls_err(ls, rc, "updating the outbox counter");
		goto fail;
	}
	return wcommit(ls, txn, "committing a queued message");
fail:
	mdb_txn_abort(txn);
	return err;
}

int
localstore_outbox_del(struct localstore *ls, const char *message_id)
{
	uint8_t kbuf[U64_LEN];
	MDB_txn *txn = NULL;
	MDB_val k, ik;
	uint64_t counter;
	size_t idn;
	int rc, err;

	if (ls == NULL || msgid_len(message_id, &idn) < 0) {
		return IHALA_EINVAL;
	}
	if ((err = wbegin(ls, &txn)) < 0) {
		return err;
	}
	mkval(&ik, message_id, idn);
	if ((err = outbox_counter(ls, txn, &ik, &counter)) < 0) {
		goto fail;
	}
	be64enc(kbuf, counter);
	mkval(&k, kbuf, sizeof(kbuf));
	rc = mdb_del(txn, ls->outbox, &k, NULL);
	if (rc == MDB_NOTFOUND) {
		/* An index entry without its record: drop the index entry so the
		 * id does not stay stuck. */
		log_warnx("local store %s: message id '%s' was indexed without its outbox record "
			  "(store damaged); removing the index entry",
			  ls->dir, message_id);
	} else if (rc != 0) {
		err = ls_err(ls, rc, "removing a queued message");
		goto fail;
	}
	if ((rc = mdb_del(txn, ls->outbox_id, &ik, NULL)) != 0) {
		err = ls_err(ls, rc, "removing from the outbox index");
		goto fail;
	}
	return wcommit(ls, txn, "committing an outbox removal");
fail:
	mdb_txn_abort(txn);
	return err;
}

/*
 * Copy out the first outbox entry with counter in (after, last]. A short
 * read transaction per entry, so none is open while the callback runs
 * (it may write, or take its time sending). IHALA_ENOTFOUND at the end.
 */
static int
outbox_fetch(struct localstore *ls, uint64_t after, uint64_t last, uint64_t *counter,
	     char id[LOCALSTORE_MAX_MSGID + 1], void **env, size_t *len)
{
	uint8_t kbuf[U64_LEN];
	MDB_cursor *cur = NULL;
	MDB_txn *txn = NULL;
	const void *data;
	MDB_val k, v;
	uint64_t c;
	int rc, err;

	if (after >= last) {
		return IHALA_ENOTFOUND;
	}
	if ((err = rbegin(ls, &txn)) < 0) {
		return err;
	}
	if ((rc = mdb_cursor_open(txn, ls->outbox, &cur)) != 0) {
		err = ls_err(ls, rc, "opening an outbox cursor");
		goto out;
	}
	be64enc(kbuf, after + 1);
	mkval(&k, kbuf, sizeof(kbuf));
	if ((rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)) != 0) {
		err = ls_err(ls, rc, "reading the outbox");
		goto out;
	}
	if (k.mv_size != U64_LEN) {
		err = damaged(ls, "outbox key");
		goto out;
	}
	if ((c = be64dec(k.mv_data)) > last) {
		err = IHALA_ENOTFOUND;
		goto out;
	}
	if ((err = outbox_decode(ls, &v, id, &data, len)) < 0) {
		goto out;
	}
	/* Entries are never empty (outbox_put refuses that). */
	if (*len == 0 || (*env = malloc(*len)) == NULL) {
		err = *len == 0 ? damaged(ls, "outbox record") : IHALA_ENOMEM;
		goto out;
	}
	memcpy(*env, data, *len);
	*counter = c;
out:
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return err;
}

int
localstore_outbox_iter(struct localstore *ls, localstore_outbox_cb cb, void *arg)
{
	char id[LOCALSTORE_MAX_MSGID + 1];
	MDB_cursor *cur = NULL;
	MDB_txn *txn = NULL;
	uint64_t pos = 0, last = 0;
	MDB_val k, v;
	void *env = NULL;
	size_t len = 0;
	int rc, err = 0;

	if (ls == NULL || cb == NULL) {
		return IHALA_EINVAL;
	}
	/* Bound the walk by the last entry now, so entries the callback
	 * queues are not visited (and a callback that requeues cannot loop). */
	if ((err = rbegin(ls, &txn)) < 0) {
		return err;
	}
	if ((rc = mdb_cursor_open(txn, ls->outbox, &cur)) != 0) {
		mdb_txn_abort(txn);
		return ls_err(ls, rc, "opening an outbox cursor");
	}
	rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
	if (rc == 0 && k.mv_size != U64_LEN) {
		err = damaged(ls, "outbox key");
	} else if (rc == 0) {
		last = be64dec(k.mv_data);
	} else if (rc != MDB_NOTFOUND) {
		err = ls_err(ls, rc, "reading the outbox");
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	if (err < 0) {
		return err;
	}

	for (;;) {
		err = outbox_fetch(ls, pos, last, &pos, id, &env, &len);
		if (err == IHALA_ENOTFOUND) {
			return 0;
		}
		if (err < 0) {
			return err;
		}
		err = cb(arg, id, env, len);
		free(env);
		if (err != 0) {
			return err;
		}
	}
}

int
localstore_outbox_count(struct localstore *ls, size_t *n)
{
	MDB_txn *txn;
	MDB_stat st;
	int rc, err;

	if (ls == NULL || n == NULL) {
		return IHALA_EINVAL;
	}
	if ((err = rbegin(ls, &txn)) < 0) {
		return err;
	}
	rc = mdb_stat(txn, ls->outbox, &st);
	mdb_txn_abort(txn);
	if (rc != 0) {
		return ls_err(ls, rc, "counting the outbox");
	}
	*n = st.ms_entries;
	return 0;
}

/* ---- inbox ---- */

/* The state of `k` inside `txn`; when PENDING, *v (may be NULL) gets the
 * entry (pointing into the map until the transaction ends). */
static int
inbox_lookup(struct localstore *ls, MDB_txn *txn, const MDB_val *k,
	     enum localstore_inbox_state *st, MDB_val *v)
{
	MDB_val tmp, d;
	int rc, pending, done;

	if (v == NULL) {
		v = &tmp;
	}
	rc = mdb_get(txn, ls->inbox, (MDB_val *)k, v);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		return ls_err(ls, rc, "reading the inbox");
	}
	pending = rc == 0;
	rc = mdb_get(txn, ls->inbox_done, (MDB_val *)k, &d);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		return ls_err(ls, rc, "reading the inbox");
	}
	done = rc == 0;
	if (pending && done) {
		return damaged(ls, "inbox (a seq both pending and done)");
	}
	*st = pending ? LOCALSTORE_PENDING : done ? LOCALSTORE_DONE : LOCALSTORE_ABSENT;
	return 0;
}

int
localstore_inbox_put(struct localstore *ls, uint64_t seq, const void *entry, size_t len,
		     enum localstore_inbox_state *prev)
{
	enum localstore_inbox_state st;
	uint8_t kbuf[U64_LEN];
	MDB_txn *txn = NULL;
	MDB_val k, v;
	int rc, err;

	if (ls == NULL || seq == 0 || entry == NULL || len == 0) {
		return IHALA_EINVAL;
	}
	if (len > LS_MAX_VALUE) {
		return IHALA_ETOOLARGE;
	}
	if ((err = wbegin(ls, &txn)) < 0) {
		return err;
	}
	be64enc(kbuf, seq);
	mkval(&k, kbuf, sizeof(kbuf));
	if ((err = inbox_lookup(ls, txn, &k, &st, &v)) < 0) {
		goto fail;
	}
	if (prev != NULL) {
		*prev = st;
	}
	if (st == LOCALSTORE_PENDING && (v.mv_size != len || memcmp(v.mv_data, entry, len) != 0)) {
		log_security("local store %s: delivery of seq %llu differs from the one stored "
			     "earlier; a log entry must never change (keeping the first)",
			     ls->dir, (unsigned long long)seq);
		err = IHALA_EINCONSISTENT;
		goto fail;
	}
	if (st != LOCALSTORE_ABSENT) {
		err = 0; /* a redelivery: nothing to write */
		goto fail;
	}
	mkval(&v, entry, len);
	if ((rc = mdb_put(txn, ls->inbox, &k, &v, MDB_NOOVERWRITE)) != 0) {
		err = ls_err(ls, rc, "storing a delivery");
		goto fail;
	}
	return wcommit(ls, txn, "committing a delivery");
fail:
	mdb_txn_abort(txn);
	return err;
}

int
localstore_inbox_done(struct localstore *ls, uint64_t seq)
{
	enum localstore_inbox_state st;
	uint8_t kbuf[U64_LEN];
	MDB_txn *txn = NULL;
	MDB_val k, v;
	int rc, err;

	if (ls == NULL || seq == 0) {
		return IHALA_EINVAL;
	}
	if ((err = wbegin(ls, &txn)) < 0) {
		return err;
	}
	be64enc(kbuf, seq);
	mkval(&k, kbuf, sizeof(kbuf));
	if ((err = inbox_lookup(ls, txn, &k, &st, NULL)) < 0) {
		goto fail;
	}
	if (st != LOCALSTORE_PENDING) {
		err = st == LOCALSTORE_DONE ? 0 : IHALA_ENOTFOUND;
		goto fail;
	}
	if ((rc = mdb_del(txn, ls->inbox, &k, NULL)) != 0) {
		err = ls_err(ls, rc, "dropping a processed delivery");
		goto fail;
	}
	mkval(&v, NULL, 0);
	if ((rc = mdb_put(txn, ls->inbox_done, &k, &v, MDB_NOOVERWRITE)) != 0) {
		err = ls_err(ls, rc, "recording a processed delivery");
		goto fail;
	}
	return wcommit(ls, txn, "committing a processed delivery");
fail:
	mdb_txn_abort(txn);
	return err;
}

int
localstore_inbox_state(struct localstore *ls, uint64_t seq, enum localstore_inbox_state *st)
{
	enum localstore_inbox_state s;
	uint8_t kbuf[U64_LEN];
	MDB_txn *txn;
	MDB_val k;
	int err;

	if (ls == NULL || seq == 0 || st == NULL) {
		return IHALA_EINVAL;
	}
	if ((err = rbegin(ls, &txn)) < 0) {
		return err;
	}
	be64enc(kbuf, seq);
	mkval(&k, kbuf, sizeof(kbuf));
	err = inbox_lookup(ls, txn, &k, &s, NULL);
	mdb_txn_abort(txn);
	if (err == 0) {
		*st = s;
	}
	return err;
}

int
localstore_inbox_next_pending(struct localstore *ls, uint64_t after, uint64_t *seq, void **entry,
			      size_t *len)
{
	uint8_t kbuf[U64_LEN];
	MDB_cursor *cur = NULL;
	MDB_txn *txn = NULL;
	MDB_val k, v;
	void *copy;
	int rc, err;

	if (ls == NULL || seq == NULL || entry == NULL || len == NULL) {
		return IHALA_EINVAL;
	}
	if (after == UINT64_MAX) {
		return IHALA_ENOTFOUND;
	}
	if ((err = rbegin(ls, &txn)) < 0) {
		return err;
	}
	if ((rc = mdb_cursor_open(txn, ls->inbox, &cur)) != 0) {
		err = ls_err(ls, rc, "opening an inbox cursor");
		goto out;
	}
	be64enc(kbuf, after + 1);
	mkval(&k, kbuf, sizeof(kbuf));
	if ((rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)) != 0) {
		err = ls_err(ls, rc, "reading the inbox");
		goto out;
	}
	if (k.mv_size != U64_LEN || v.mv_size == 0) {
		err = damaged(ls, "inbox entry");
		goto out;
	}
	if ((copy = malloc(v.mv_size)) == NULL) {
		err = IHALA_ENOMEM;
		goto out;
	}
	memcpy(copy, v.mv_data, v.mv_size);
	*seq = be64dec(k.mv_data);
	*entry = copy;
	*len = v.mv_size;
out:
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return err;
}

/* ---- checkpoint ---- */

int
localstore_checkpoint_put(struct localstore *ls, const char *text)
{
	MDB_txn *txn = NULL;
	MDB_val k, v;
	size_t n;
	int rc, err;

	if (ls == NULL || text == NULL || text[0] == '\0') {
		return IHALA_EINVAL;
	}
	if ((n = strnlen(text, LOCALSTORE_MAX_CHECKPOINT + 1)) > LOCALSTORE_MAX_CHECKPOINT) {
		return IHALA_ETOOLARGE;
	}
	if ((err = wbegin(ls, &txn)) < 0) {
		return err;
	}
	mkval(&k, META_CHECKPOINT, strlen(META_CHECKPOINT));
	mkval(&v, text, n);
	if ((rc = mdb_put(txn, ls->meta, &k, &v, 0)) != 0) {
		mdb_txn_abort(txn);
		return ls_err(ls, rc, "storing the checkpoint");
	}
	return wcommit(ls, txn, "committing the checkpoint");
}

int
localstore_checkpoint_get(struct localstore *ls, char **text)
{
	MDB_txn *txn;
	MDB_val k, v;
	char *t;
	int rc, err;

	if (ls == NULL || text == NULL) {
		return IHALA_EINVAL;
	}
	if ((err = rbegin(ls, &txn)) < 0) {
		return err;
	}
	mkval(&k, META_CHECKPOINT, strlen(META_CHECKPOINT));
	rc = mdb_get(txn, ls->meta, &k, &v);
	if (rc != 0) {
		err = ls_err(ls, rc, "reading the checkpoint");
	} else if (v.mv_size == 0 || memchr(v.mv_data, '\0', v.mv_size) != NULL) {
		err = damaged(ls, "checkpoint");
	} else if ((t = malloc(v.mv_size + 1)) == NULL) {
		err = IHALA_ENOMEM;
	} else {
		memcpy(t, v.mv_data, v.mv_size);
		t[v.mv_size] = '\0';
		*text = t;
	}
	mdb_txn_abort(txn);
	return err;
}
