/* localstore.c - a client node's durable local store over LMDB: outbox, inbox, last checkpoint. */
#include "localstore.h"

#include <lmdb.h>
#include <pthread.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "datadir.h"
#include "dbenv.h"
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
 *   sent         message id -> u64 seq, the outbox record as it was accepted (the
 *                message sent again under its id is the same bytes: DUPLICATE; dropped by
 *                an erasure naming the seq, or when older than the node's sent_keep)
 *   sent_age     u64 wall ms of the record's first receipt, message id -> u64 seq: the
 *                sent records oldest first, so pruning reads only what it drops. An entry
 *                whose record is gone (erased) or is of another seq drops nothing and goes
 *                at its time; meta "sent_aged" says every record has its entry (a store
 *                from before it has them made at open, aged from then)
 *   inbox_sealed u64 seq -> the sealed part delivered with a PENDING entry (dropped with
 *                its bytes when DONE, or when an erasure names the seq)
 *   rejected     message id -> i32 code, u64 wall ms, u16 text length, text,
 *                envelope bytes (refused for good: out of the outbox, kept for
 *                the user to read, retry or drop; created in older stores on open)
 * A seq is in at most one of inbox and inbox_done, so next_pending is one
 * cursor seek however many deliveries are already done.
 */

#define LS_MAXDBS 12
#define LS_LOCKFILE "ihala-client.lock"
#define LS_INBOX_LOCKFILE "ihala-inbox.lock"
#define META_OUTBOX_NEXT "outbox_next"
#define META_CHECKPOINT "checkpoint"
#define META_SENT_AGED "sent_aged"
#define U64_LEN 8
#define LS_MAX_ENVELOPE (DBENV_MAX_VALUE - 1 - LOCALSTORE_MAX_MSGID)

static const struct dbenv_format ls_format = {
    LOCALSTORE_FORMAT_VERSION,
    "client",
    "ihala client store",
    "give the client an empty or its own data dir",
};

struct localstore {
	struct dbenv db; /* env, dir, lock */
	MDB_dbi meta;
	MDB_dbi outbox;
	MDB_dbi outbox_id;
	MDB_dbi inbox;
	MDB_dbi inbox_done;
	MDB_dbi rejected;
	MDB_dbi journal;      /* referral id, NUL, u64 seq -> JSON text (created on open) */
	MDB_dbi inbox_sealed; /* u64 seq -> sealed part of a PENDING entry (created on open) */
	MDB_dbi sent;         /* message id -> u64 seq, record (created on open) */
	MDB_dbi sent_age;     /* u64 ms, message id -> u64 seq (created on open) */
	int inbox_lockfd;     /* localstore_inbox_lock, -1 when not held */
	dev_t dev;            /* the directory, in the open_dirs registry */
	ino_t ino;
	pid_t pid; /* the opener (a forked child inherits the registry, not the store) */
	struct localstore *next_open;
};

/*
 * Stores open in this process. Other processes share a data dir (shared flock), but this
 * one must not open an LMDB environment twice: closing the second would drop the first's
 * POSIX locks (lmdb.h, "caveats"). So the directory is checked here before LMDB opens it.
 */
static pthread_mutex_t open_mu = PTHREAD_MUTEX_INITIALIZER;
static struct localstore *open_dirs;

/* ---- small helpers ---- */

static void
mkval(MDB_val *v, const void *data, size_t len)
{
	v->mv_data = (void *)data;
	v->mv_size = len;
}

/* LMDB's code as the project's (dbenv_err: logged). */
static int
ls_err(struct localstore *ls, int rc, const char *what)
{
	return dbenv_err(&ls->db, rc, what);
}

static int
damaged(struct localstore *ls, const char *what)
{
	return dbenv_damaged(&ls->db, what);
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
	return dbenv_begin(&ls->db, NULL, MDB_RDONLY, txn);
}

static int
wbegin(struct localstore *ls, MDB_txn **txn)
{
	return dbenv_begin(&ls->db, NULL, 0, txn);
}

/* Check `message_id`, begin a transaction on it (read-only when `rdonly`) and make *ik its key
 * (pointing into message_id). IHALA_EINVAL for a bad id; else as rbegin/wbegin. */
static int
id_begin(struct localstore *ls, const char *message_id, int rdonly, MDB_txn **txn, MDB_val *ik)
{
	size_t idn;
	int err;

	if (ls == NULL || msgid_len(message_id, &idn) < 0) {
		return IHALA_EINVAL;
	}
	if ((err = rdonly ? rbegin(ls, txn) : wbegin(ls, txn)) < 0) {
		return err;
	}
	mkval(ik, message_id, idn);
	return 0;
}

/* Commit synchronously (the environment has no NOSYNC flag). The handle is
 * freed whatever the outcome. */
static int
wcommit(struct localstore *ls, MDB_txn *txn, const char *what)
{
	return dbenv_commit(&ls->db, txn, what);
}

/* ---- the sent records' ages ---- */

/* Index the sent record of message id `ik` (seq) as first receipted at `t_ms`. */
static int
sent_age_put(struct localstore *ls, MDB_txn *txn, uint64_t t_ms, const MDB_val *ik, uint64_t seq)
{
	uint8_t kbuf[U64_LEN + LOCALSTORE_MAX_MSGID], vbuf[U64_LEN];
	MDB_val k, v;
	int rc;

	if (ik->mv_size == 0 || ik->mv_size > LOCALSTORE_MAX_MSGID) {
		return damaged(ls, "sent record key");
	}
	be64enc(kbuf, t_ms);
	memcpy(kbuf + U64_LEN, ik->mv_data, ik->mv_size);
	be64enc(vbuf, seq);
	mkval(&k, kbuf, U64_LEN + ik->mv_size);
	mkval(&v, vbuf, sizeof(vbuf));
	if ((rc = mdb_put(txn, ls->sent_age, &k, &v, 0)) != 0) {
		return ls_err(ls, rc, "recording a sent message's age");
	}
	return 0;
}

/* A store whose sent records have no ages yet (made before they had): age them from now_ms. */
static int
sent_age_init(struct localstore *ls, MDB_txn *txn, uint64_t now_ms)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc, err;

	err =
	    dbenv_get(&ls->db, txn, ls->meta, META_SENT_AGED, &v, "reading the sent records' mark");
	if (err != IHALA_ENOTFOUND) {
		return err;
	}
	if ((rc = mdb_cursor_open(txn, ls->sent, &cur)) != 0) {
		return ls_err(ls, rc, "opening a cursor on the sent messages");
	}
	err = 0;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && err == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		err = v.mv_size < U64_LEN ? damaged(ls, "sent record")
		                          : sent_age_put(ls, txn, now_ms, &k, be64dec(v.mv_data));
	}
	mdb_cursor_close(cur);
	if (err == 0 && rc != MDB_NOTFOUND) {
		err = ls_err(ls, rc, "reading the sent messages");
	}
	if (err == 0) {
		err = dbenv_put(&ls->db, txn, ls->meta, META_SENT_AGED, "1", 1, 0,
		                "marking the sent records aged");
	}
	return err;
}

/*
 * Inside txn, drop the sent records first receipted before `before` (ms), oldest first,
 * taking at most `max` entries of the age index: *taken of them, *pruned (added to) the
 * records they dropped; *more = 1 when older ones are left past max.
 */
static int
sent_prune_txn(struct localstore *ls, MDB_txn *txn, uint64_t before, size_t max, size_t *taken,
               size_t *pruned, int *more)
{
	uint8_t id[LOCALSTORE_MAX_MSGID];
	MDB_cursor *cur = NULL;
	MDB_val k, v, ik, sv;
	uint64_t seq;
	int rc, err = 0;

	*taken = 0;
	*more = 0;
	if ((rc = mdb_cursor_open(txn, ls->sent_age, &cur)) != 0) {
		return ls_err(ls, rc, "opening a cursor on the sent messages' ages");
	}
	/* Each entry taken is deleted: the next one is the first again. */
	while ((rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0) {
		if (k.mv_size <= U64_LEN || k.mv_size > U64_LEN + LOCALSTORE_MAX_MSGID ||
		    v.mv_size != U64_LEN) {
			err = damaged(ls, "sent age index");
			goto out;
		}
		if (be64dec(k.mv_data) >= before) {
			break;
		}
		if (*taken == max) {
			*more = 1;
			break;
		}
		seq = be64dec(v.mv_data);
		memcpy(id, (const uint8_t *)k.mv_data + U64_LEN, k.mv_size - U64_LEN);
		mkval(&ik, id, k.mv_size - U64_LEN);
		if ((rc = mdb_cursor_del(cur, 0)) != 0) {
			err = ls_err(ls, rc, "pruning the sent messages' ages");
			goto out;
		}
		(*taken)++;
		rc = mdb_get(txn, ls->sent, &ik, &sv);
		if (rc == 0 && sv.mv_size >= U64_LEN && be64dec(sv.mv_data) == seq) {
			if ((rc = mdb_del(txn, ls->sent, &ik, NULL)) != 0) {
				err = ls_err(ls, rc, "pruning a sent message");
				goto out;
			}
			(*pruned)++;
		} else if (rc != 0 && rc != MDB_NOTFOUND) {
			err = ls_err(ls, rc, "reading a sent message");
			goto out;
		}
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		err = ls_err(ls, rc, "reading the sent messages' ages");
	}
out:
	mdb_cursor_close(cur);
	return err;
}

/* The first receipt time before which a sent record is older than keep_ms at now_ms. */
static uint64_t
sent_cutoff(uint64_t now_ms, uint64_t keep_ms)
{
	return now_ms > keep_ms ? now_ms - keep_ms : 0;
}

/* ---- open / close ---- */

/*
 * Open the named databases, creating them and the format records in an
 * empty environment, and refuse any other format before writing anything.
 */
static int
open_layout(struct localstore *ls)
{
	const struct dbenv_db dbs[] = {
	    {"outbox", 0, &ls->outbox},
	    {"outbox_id", 0, &ls->outbox_id},
	    {"inbox", 0, &ls->inbox},
	    {"inbox_done", 0, &ls->inbox_done},
	};
	const struct dbenv_db added[] = {
	    /* Added after format 1 shipped: created in older stores too. */
	    {"rejected", 0, &ls->rejected},         {"journal", 0, &ls->journal},
	    {"inbox_sealed", 0, &ls->inbox_sealed}, {"sent", 0, &ls->sent},
	    {"sent_age", 0, &ls->sent_age},
	};
	MDB_txn *txn = NULL;
	int err, fresh;

	if ((err = wbegin(ls, &txn)) < 0) {
		return err;
	}
	if ((err = dbenv_format_open(&ls->db, txn, &ls_format, 1, &ls->meta, &fresh)) < 0 ||
	    (err = dbenv_dbis_open(&ls->db, txn, dbs, sizeof(dbs) / sizeof(dbs[0]),
	                           fresh ? MDB_CREATE : 0)) < 0 ||
	    (err = dbenv_dbis_open(&ls->db, txn, added, sizeof(added) / sizeof(added[0]),
	                           MDB_CREATE)) < 0 ||
	    (fresh && (err = dbenv_format_init(&ls->db, txn, ls->meta, &ls_format)) < 0) ||
	    (err = sent_age_init(ls, txn, clock_wall_ms())) < 0) {
		mdb_txn_abort(txn);
		return err;
	}
	return wcommit(ls, txn, "committing the opening transaction");
}

int
localstore_open(const char *dir, struct localstore **out)
{
	/* Never MDB_NOSYNC / MDB_NOMETASYNC / MDB_WRITEMAP: a message is acked or counted as
	 * queued only once it is on disk. MDB_NOTLS lets several threads each run their short
	 * read transactions. */
	const struct dbenv_opts o = {
	    .mode = DATADIR_PARENTS,
	    .lockfile = LS_LOCKFILE,
	    .lock_shared = 1,
	    .flags = MDB_NOTLS,
	    .maxdbs = LS_MAXDBS,
	    .mapsize = LOCALSTORE_MAPSIZE,
	    .full_hint = "deliver the outbox or move the data dir to a fresh one",
	};
	struct localstore *ls;
	struct stat sb;
	int err;

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
	ls->inbox_lockfd = -1;
	pthread_mutex_lock(&open_mu);
	if (stat(dir, &sb) == 0) {
		struct localstore *o2;

		for (o2 = open_dirs; o2 != NULL; o2 = o2->next_open) {
			if (o2->dev == sb.st_dev && o2->ino == sb.st_ino && o2->pid == getpid()) {
				pthread_mutex_unlock(&open_mu);
				log_warnx("data dir %s is open already in this process", dir);
				free(ls);
				return IHALA_EIO;
			}
		}
	}
	err = dbenv_open(&ls->db, "local store", dir, &o);
	if (err == IHALA_EAGAIN) {
		log_warnx("data dir %s is locked by another program", dir);
		err = IHALA_EIO;
	}
	if (err == 0 && stat(dir, &sb) != 0) {
		log_warn("local store: cannot use directory '%s'", dir);
		dbenv_close(&ls->db);
		err = IHALA_EIO;
	}
	if (err < 0) {
		pthread_mutex_unlock(&open_mu);
		free(ls);
		return err;
	}
	ls->dev = sb.st_dev;
	ls->ino = sb.st_ino;
	ls->pid = getpid();
	ls->next_open = open_dirs;
	open_dirs = ls;
	pthread_mutex_unlock(&open_mu);
	/* LMDB syncs no directory: data.mdb's name (and the directories made above) must be
	 * durable before an acked message counts on them. */
	if ((err = datadir_sync("local store", dir)) < 0 || (err = open_layout(ls)) < 0) {
		localstore_close(ls);
		return err;
	}
	*out = ls;
	return 0;
}

void
localstore_close(struct localstore *ls)
{
	if (ls == NULL) {
		return;
	}
	struct localstore **pp;

	if (ls->inbox_lockfd >= 0) {
		close(ls->inbox_lockfd);
	}
	dbenv_close(&ls->db);
	pthread_mutex_lock(&open_mu);
	for (pp = &open_dirs; *pp != NULL; pp = &(*pp)->next_open) {
		if (*pp == ls) {
			*pp = ls->next_open;
			break;
		}
	}
	pthread_mutex_unlock(&open_mu);
	free(ls);
}

int
localstore_inbox_lock(struct localstore *ls)
{
	if (ls == NULL) {
		return IHALA_EINVAL;
	}
	if (ls->inbox_lockfd >= 0) {
		return 0;
	}
	return datadir_lock("local store", ls->db.dir, LS_INBOX_LOCKFILE, &ls->inbox_lockfd);
}

/* ---- outbox ---- */

/* Split an outbox record into its id (copied, NUL-terminated) and envelope. */
static int
outbox_decode(struct localstore *ls, const MDB_val *v, char id[LOCALSTORE_MAX_MSGID + 1],
              const void **env, size_t *len)
{
	const uint8_t *p = v->mv_data;
	size_t n, chk;

	if (v->mv_size < 1 || (n = p[0]) == 0 || n > LOCALSTORE_MAX_MSGID || v->mv_size - 1 < n) {
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

/* Where the outbox keeps a message id: the key of its record (the id's counter). */
struct outbox_at {
	uint8_t kbuf[U64_LEN];
	MDB_val k; /* the record's key in the outbox: kbuf */
};

/* at->k = the outbox key of message id `ik` (the index's counter): 0, IHALA_ENOTFOUND when it
 * is not queued, or an error. */
static int
outbox_locate(struct localstore *ls, MDB_txn *txn, const MDB_val *ik, struct outbox_at *at)
{
	MDB_val v;
	int rc;

	rc = mdb_get(txn, ls->outbox_id, (MDB_val *)ik, &v);
	if (rc != 0) {
		return ls_err(ls, rc, "reading the outbox index");
	}
	if (v.mv_size != U64_LEN) {
		return damaged(ls, "outbox index");
	}
	memcpy(at->kbuf, v.mv_data, U64_LEN);
	mkval(&at->k, at->kbuf, sizeof(at->kbuf));
	return 0;
}

/* The same, and its record split (outbox_decode): `got` its id, *env (into the map until txn
 * ends) and *len its envelope. An index entry without its record: a damaged store. */
static int
outbox_find(struct localstore *ls, MDB_txn *txn, const MDB_val *ik, struct outbox_at *at,
            char got[LOCALSTORE_MAX_MSGID + 1], const void **env, size_t *len)
{
	MDB_val v;
	int rc, err;

	if ((err = outbox_locate(ls, txn, ik, at)) < 0) {
		return err;
	}
	if ((rc = mdb_get(txn, ls->outbox, &at->k, &v)) != 0) {
		return rc == MDB_NOTFOUND ? damaged(ls, "outbox index")
		                          : ls_err(ls, rc, "reading the outbox");
	}
	return outbox_decode(ls, &v, got, env, len);
}

/* *out = a malloc'd copy of data[0..len) (free()). */
static int
copy_out(const void *data, size_t len, void **out)
{
	if ((*out = malloc(len ? len : 1)) == NULL) {
		return IHALA_ENOMEM;
	}
	memcpy(*out, data, len);
	return 0;
}

/* Queue in `txn` (see localstore_outbox_put); 1 when the same bytes were queued already. */
static int
outbox_put_txn(struct localstore *ls, MDB_txn *txn, const char *message_id, size_t idn,
               const void *env, size_t len)
{
	char got[LOCALSTORE_MAX_MSGID + 1];
	uint8_t kbuf[U64_LEN], nbuf[U64_LEN];
	MDB_val k, v, ik, nk, nv;
	struct outbox_at at;
	const void *old;
	size_t oldlen;
	uint64_t counter;
	int rc, err;

	mkval(&ik, message_id, idn);
	err = outbox_find(ls, txn, &ik, &at, got, &old, &oldlen);
	if (err == 0) {
		/* Already queued: nothing to write either way. */
		if (strcmp(got, message_id) != 0) {
			return damaged(ls, "outbox index");
		}
		if (oldlen != len || memcmp(old, env, len) != 0) {
			log_warnx("local store %s: message id '%s' is already queued with other "
			          "content",
			          ls->db.dir, message_id);
			return IHALA_EMSGID;
		}
		return 1;
	}
	if (err != IHALA_ENOTFOUND) {
		return err;
	}

	/* The next counter; absent in a new store. */
	mkval(&nk, META_OUTBOX_NEXT, strlen(META_OUTBOX_NEXT));
	rc = mdb_get(txn, ls->meta, &nk, &nv);
	if (rc == MDB_NOTFOUND) {
		counter = 1;
	} else if (rc != 0) {
		return ls_err(ls, rc, "reading the outbox counter");
	} else if (nv.mv_size != U64_LEN || (counter = be64dec(nv.mv_data)) == 0 ||
	           counter == UINT64_MAX) {
		return damaged(ls, "outbox counter");
	}

	/* Counters only grow, so the record goes at the end (MDB_APPEND). */
	be64enc(kbuf, counter);
	mkval(&k, kbuf, sizeof(kbuf));
	mkval(&v, NULL, 1 + idn + len);
	rc = mdb_put(txn, ls->outbox, &k, &v, MDB_RESERVE | MDB_APPEND);
	if (rc == MDB_KEYEXIST) {
		return damaged(ls, "outbox counter");
	}
	if (rc != 0) {
		return ls_err(ls, rc, "queueing a message");
	}
	((uint8_t *)v.mv_data)[0] = (uint8_t)idn;
	memcpy((uint8_t *)v.mv_data + 1, message_id, idn);
	memcpy((uint8_t *)v.mv_data + 1 + idn, env, len);

	mkval(&v, kbuf, sizeof(kbuf));
	if ((rc = mdb_put(txn, ls->outbox_id, &ik, &v, MDB_NOOVERWRITE)) != 0) {
		return ls_err(ls, rc, "indexing a queued message");
	}
	be64enc(nbuf, counter + 1);
	mkval(&nv, nbuf, sizeof(nbuf));
	if ((rc = mdb_put(txn, ls->meta, &nk, &nv, 0)) != 0) {
		return ls_err(ls, rc, "updating the outbox counter");
	}
	return 0;
}

int
localstore_outbox_put(struct localstore *ls, const char *message_id, const void *env, size_t len)
{
	MDB_txn *txn = NULL;
	size_t idn;
	int err;

	if (ls == NULL || msgid_len(message_id, &idn) < 0 || env == NULL || len == 0) {
		return IHALA_EINVAL;
	}
	if (len > LS_MAX_ENVELOPE) {
		return IHALA_ETOOLARGE;
	}
	if ((err = wbegin(ls, &txn)) < 0) {
		return err;
	}
	err = outbox_put_txn(ls, txn, message_id, idn, env, len);
	if (err != 0) {
		mdb_txn_abort(txn);
		return err < 0 ? err : 0;
	}
	return wcommit(ls, txn, "committing a queued message");
}

int
localstore_outbox_del(struct localstore *ls, const char *message_id)
{
	struct outbox_at at;
	MDB_txn *txn = NULL;
	MDB_val ik;
	int rc, err;

	if ((err = id_begin(ls, message_id, 0, &txn, &ik)) < 0) {
		return err;
	}
	if ((err = outbox_locate(ls, txn, &ik, &at)) < 0) {
		goto fail;
	}
	rc = mdb_del(txn, ls->outbox, &at.k, NULL);
	if (rc == MDB_NOTFOUND) {
		/* An index entry without its record: drop the index entry so the
		 * id does not stay stuck. */
		log_warnx("local store %s: message id '%s' was indexed without its outbox record "
		          "(store damaged); removing the index entry",
		          ls->db.dir, message_id);
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

int
localstore_outbox_get(struct localstore *ls, const char *message_id, void **env, size_t *len)
{
	char got[LOCALSTORE_MAX_MSGID + 1];
	struct outbox_at at;
	MDB_txn *txn = NULL;
	const void *data;
	MDB_val ik;
	int err;

	if (env == NULL || len == NULL) {
		return IHALA_EINVAL;
	}
	if ((err = id_begin(ls, message_id, 1, &txn, &ik)) < 0) {
		return err;
	}
	if ((err = outbox_find(ls, txn, &ik, &at, got, &data, len)) == 0) {
		err = copy_out(data, *len, env);
	}
	mdb_txn_abort(txn);
	return err;
}

/* Remove `id` (key ik) from the outbox in txn, copying its envelope out (malloc'd). */
static int
outbox_take_txn(struct localstore *ls, MDB_txn *txn, const MDB_val *ik, void **env, size_t *len)
{
	char got[LOCALSTORE_MAX_MSGID + 1];
	struct outbox_at at;
	const void *data;
	int rc, err;

	if ((err = outbox_find(ls, txn, ik, &at, got, &data, len)) < 0 ||
	    (err = copy_out(data, *len, env)) < 0) {
		return err;
	}
	if ((rc = mdb_del(txn, ls->outbox, &at.k, NULL)) != 0 ||
	    (rc = mdb_del(txn, ls->outbox_id, (MDB_val *)ik, NULL)) != 0) {
		free(*env);
		*env = NULL;
		return ls_err(ls, rc, "removing a queued message");
	}
	return 0;
}

int
localstore_outbox_sent(struct localstore *ls, const char *message_id, uint64_t seq, uint64_t now_ms,
                       uint64_t keep_ms)
{
	MDB_txn *txn = NULL;
	MDB_val ik, v;
	void *env = NULL;
	size_t len = 0, taken, pruned = 0;
	int rc, err, more, again;

	if ((err = id_begin(ls, message_id, 0, &txn, &ik)) < 0) {
		return err;
	}
	if ((err = outbox_take_txn(ls, txn, &ik, &env, &len)) < 0) {
		goto fail;
	}
	rc = mdb_get(txn, ls->sent, &ik, &v);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		err = ls_err(ls, rc, "reading a sent message");
		goto fail;
	}
	/* Logged before under that seq (a DUPLICATE): it keeps the age of its first receipt. */
	again = rc == 0 && v.mv_size >= U64_LEN && be64dec(v.mv_data) == seq;
	if (keep_ms == 0) {
		/* Kept only until the receipt, an older record of the id with it. */
		if (rc == 0 && (rc = mdb_del(txn, ls->sent, &ik, NULL)) != 0) {
			err = ls_err(ls, rc, "dropping a sent message");
			goto fail;
		}
	} else {
		mkval(&v, NULL, U64_LEN + len);
		if ((rc = mdb_put(txn, ls->sent, &ik, &v, MDB_RESERVE)) != 0) {
			err = ls_err(ls, rc, "recording a sent message");
			goto fail;
		}
		be64enc(v.mv_data, seq);
		memcpy((uint8_t *)v.mv_data + U64_LEN, env, len);
		if (!again && (err = sent_age_put(ls, txn, now_ms, &ik, seq)) < 0) {
			goto fail;
		}
	}
	/* A receipt is the cheap moment to prune: a few of the oldest, in this commit. */
	if ((err = sent_prune_txn(ls, txn, sent_cutoff(now_ms, keep_ms), LOCALSTORE_PRUNE_STEP,
	                          &taken, &pruned, &more)) < 0) {
		goto fail;
	}
	free(env);
	return wcommit(ls, txn, "committing a sent message");
fail:
	free(env);
	mdb_txn_abort(txn);
	return err;
}

int
localstore_sent_prune(struct localstore *ls, uint64_t now_ms, uint64_t keep_ms, size_t *pruned)
{
	MDB_txn *txn = NULL;
	size_t taken, n = 0;
	int err, more;

	if (ls == NULL) {
		return IHALA_EINVAL;
	}
	do {
		if ((err = wbegin(ls, &txn)) < 0) {
			return err;
		}
		if ((err = sent_prune_txn(ls, txn, sent_cutoff(now_ms, keep_ms),
		                          LOCALSTORE_PRUNE_BATCH, &taken, &n, &more)) < 0) {
			mdb_txn_abort(txn);
			return err;
		}
		if (taken == 0) {
			mdb_txn_abort(txn); /* nothing to write: no commit, no sync */
			break;
		}
		if ((err = wcommit(ls, txn, "committing pruned sent messages")) < 0) {
			return err;
		}
	} while (more);
	if (pruned != NULL) {
		*pruned = n;
	}
	return 0;
}

int
localstore_sent_get(struct localstore *ls, const char *message_id, void **env, size_t *len,
                    uint64_t *seq)
{
	MDB_txn *txn = NULL;
	MDB_val ik, v;
	int rc, err;

	if (env == NULL || len == NULL) {
		return IHALA_EINVAL;
	}
	if ((err = id_begin(ls, message_id, 1, &txn, &ik)) < 0) {
		return err;
	}
	if ((rc = mdb_get(txn, ls->sent, &ik, &v)) != 0) {
		err = ls_err(ls, rc, "reading a sent message");
	} else if (v.mv_size < U64_LEN) {
		err = damaged(ls, "sent record");
	} else if ((err = copy_out((const uint8_t *)v.mv_data + U64_LEN, v.mv_size - U64_LEN,
	                           env)) == 0) {
		*len = v.mv_size - U64_LEN;
		if (seq != NULL) {
			*seq = be64dec(v.mv_data);
		}
	}
	mdb_txn_abort(txn);
	return err;
}

int
localstore_outbox_replace(struct localstore *ls, const char *message_id, const void *env,
                          size_t len)
{
	struct outbox_at at;
	MDB_txn *txn = NULL;
	MDB_val v, ik;
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
	if ((err = outbox_locate(ls, txn, &ik, &at)) < 0) {
		goto fail;
	}
	mkval(&v, NULL, 1 + idn + len);
	if ((rc = mdb_put(txn, ls->outbox, &at.k, &v, MDB_RESERVE)) != 0) {
		err = ls_err(ls, rc, "replacing a queued message");
		goto fail;
	}
	((uint8_t *)v.mv_data)[0] = (uint8_t)idn;
	memcpy((uint8_t *)v.mv_data + 1, message_id, idn);
	memcpy((uint8_t *)v.mv_data + 1 + idn, env, len);
	return wcommit(ls, txn, "committing a replaced message");
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
	uint64_t pos = 0;

	return localstore_outbox_iter_from(ls, &pos, cb, arg);
}

int
localstore_outbox_iter_from(struct localstore *ls, uint64_t *at, localstore_outbox_cb cb, void *arg)
{
	char id[LOCALSTORE_MAX_MSGID + 1];
	MDB_cursor *cur = NULL;
	MDB_txn *txn = NULL;
	uint64_t pos = *at, last = 0;
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
		*at = pos;
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
inbox_lookup(struct localstore *ls, MDB_txn *txn, const MDB_val *k, enum localstore_inbox_state *st,
             MDB_val *v)
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
	return localstore_inbox_put_sealed(ls, seq, entry, len, NULL, 0, prev);
}

int
localstore_inbox_put_sealed(struct localstore *ls, uint64_t seq, const void *entry, size_t len,
                            const void *sealed, size_t sealed_len,
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
	if (len > DBENV_MAX_VALUE || sealed_len > DBENV_MAX_VALUE) {
		return IHALA_ETOOLARGE;
	}
	if (sealed_len > 0 && sealed == NULL) {
		return IHALA_EINVAL;
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
		             ls->db.dir, (unsigned long long)seq);
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
	if (sealed_len > 0) {
		mkval(&v, sealed, sealed_len);
		if ((rc = mdb_put(txn, ls->inbox_sealed, &k, &v, 0)) != 0) {
			err = ls_err(ls, rc, "storing a delivery's sealed part");
			goto fail;
		}
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
	if ((rc = mdb_del(txn, ls->inbox_sealed, &k, NULL)) != 0 && rc != MDB_NOTFOUND) {
		err = ls_err(ls, rc, "dropping a processed delivery's sealed part");
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

int
localstore_inbox_sealed(struct localstore *ls, uint64_t seq, void **sealed, size_t *len)
{
	uint8_t kbuf[U64_LEN];
	MDB_txn *txn = NULL;
	MDB_val k, v;
	int rc, err;

	if (ls == NULL || seq == 0 || sealed == NULL || len == NULL) {
		return IHALA_EINVAL;
	}
	if ((err = rbegin(ls, &txn)) < 0) {
		return err;
	}
	be64enc(kbuf, seq);
	mkval(&k, kbuf, sizeof(kbuf));
	if ((rc = mdb_get(txn, ls->inbox_sealed, &k, &v)) != 0) {
		err = ls_err(ls, rc, "reading a delivery's sealed part");
	} else if ((*sealed = malloc(v.mv_size ? v.mv_size : 1)) == NULL) {
		err = IHALA_ENOMEM;
	} else {
		memcpy(*sealed, v.mv_data, v.mv_size);
		*len = v.mv_size;
	}
	mdb_txn_abort(txn);
	return err;
}

/* 1 when seq is one of seqs[0..n). */
static int
seq_in(uint64_t seq, const uint64_t *seqs, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (seqs[i] == seq) {
			return 1;
		}
	}
	return 0;
}

/* A table an erasure walks for the records of its seqs: where a record keeps its seq (the
 * journal: its key's last 8 bytes, after the referral id; the sent messages: their value's
 * first 8), and the words of the errors. */
struct erase_walk {
	int seq_in_key;
	const char *opening, *erasing, *reading;
};

static const struct erase_walk erase_sent = {0, "opening a cursor on the sent messages",
                                             "erasing a sent message", "reading the sent messages"};
static const struct erase_walk erase_journal = {1, "opening a journal cursor",
                                                "erasing a journal record", "reading the journal"};

/* Delete from dbi, inside txn, the records of one of seqs[0..n) (kept as `how` says), adding
 * how many to *count. */
static int
erase_records(struct localstore *ls, MDB_txn *txn, MDB_dbi dbi, const struct erase_walk *how,
              const uint64_t *seqs, size_t n, size_t *count)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc, hit;

	if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0) {
		return ls_err(ls, rc, how->opening);
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (how->seq_in_key) {
			hit = k.mv_size >= U64_LEN + 2 &&
			      seq_in(be64dec((const uint8_t *)k.mv_data + k.mv_size - U64_LEN),
			             seqs, n);
		} else {
			hit = v.mv_size >= U64_LEN && seq_in(be64dec(v.mv_data), seqs, n);
		}
		if (!hit) {
			continue;
		}
		if ((rc = mdb_cursor_del(cur, 0)) != 0) {
			mdb_cursor_close(cur);
			return ls_err(ls, rc, how->erasing);
		}
		(*count)++;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : ls_err(ls, rc, how->reading);
}

int
localstore_erase_seqs(struct localstore *ls, const uint64_t *seqs, size_t n, size_t *erased)
{
	uint8_t kbuf[U64_LEN];
	MDB_txn *txn = NULL;
	MDB_val k;
	size_t i, count = 0;
	int rc, err = 0;

	if (ls == NULL || (n > 0 && seqs == NULL)) {
		return IHALA_EINVAL;
	}
	if ((err = wbegin(ls, &txn)) < 0) {
		return err;
	}
	for (i = 0; i < n; i++) {
		be64enc(kbuf, seqs[i]);
		mkval(&k, kbuf, sizeof(kbuf));
		rc = mdb_del(txn, ls->inbox_sealed, &k, NULL);
		if (rc == 0) {
			count++;
		} else if (rc != MDB_NOTFOUND) {
			err = ls_err(ls, rc, "erasing a sealed part");
			goto fail;
		}
	}
	/* The records sent under those seqs, and the journal's records of those seqs whatever
	 * their referral (onward ones too). */
	if ((err = erase_records(ls, txn, ls->sent, &erase_sent, seqs, n, &count)) < 0 ||
	    (err = erase_records(ls, txn, ls->journal, &erase_journal, seqs, n, &count)) < 0) {
		goto fail;
	}
	if (erased != NULL) {
		*erased = count;
	}
	return wcommit(ls, txn, "committing an erasure");
fail:
	mdb_txn_abort(txn);
	return err;
}

/* ---- checkpoint ---- */

int
localstore_checkpoint_put(struct localstore *ls, const char *text)
{
	MDB_txn *txn = NULL;
	size_t n;
	int err;

	if (ls == NULL || text == NULL || text[0] == '\0') {
		return IHALA_EINVAL;
	}
	if ((n = strnlen(text, CHECKPOINT_TEXT_MAX + 1)) > CHECKPOINT_TEXT_MAX) {
		return IHALA_ETOOLARGE;
	}
	if ((err = wbegin(ls, &txn)) < 0) {
		return err;
	}
	if ((err = dbenv_put(&ls->db, txn, ls->meta, META_CHECKPOINT, text, n, 0,
	                     "storing the checkpoint")) < 0) {
		mdb_txn_abort(txn);
		return err;
	}
	return wcommit(ls, txn, "committing the checkpoint");
}

int
localstore_checkpoint_get(struct localstore *ls, char **text)
{
	MDB_txn *txn;
	MDB_val v;
	int err;

	if (ls == NULL || text == NULL) {
		return IHALA_EINVAL;
	}
	if ((err = rbegin(ls, &txn)) < 0) {
		return err;
	}
	err = dbenv_get(&ls->db, txn, ls->meta, META_CHECKPOINT, &v, "reading the checkpoint");
	if (err == 0 && (v.mv_size == 0 || memchr(v.mv_data, '\0', v.mv_size) != NULL)) {
		err = damaged(ls, "checkpoint");
	} else if (err == 0) {
		err = dbenv_copy_text(&v, text);
	}
	mdb_txn_abort(txn);
	return err;
}

/* ---- journal: what this node sent and received, per referral ---- */

/* key = referral id, NUL, big-endian seq */
static int
journal_key(const char *rid, uint64_t seq, uint8_t *buf, size_t cap, size_t *len)
{
	size_t n = strlen(rid);

	if (n == 0 || n > LOCALSTORE_MAX_MSGID || n + 1 + U64_LEN > cap) {
		return IHALA_EINVAL;
	}
	memcpy(buf, rid, n);
	buf[n] = '\0';
	be64enc(buf + n + 1, seq);
	*len = n + 1 + U64_LEN;
	return 0;
}

int
localstore_journal_put(struct localstore *ls, const char *referral_id, uint64_t seq,
                       const char *json)
{
	return localstore_journal_put_bytes(ls, referral_id, seq, json,
	                                    json != NULL ? strlen(json) : 0);
}

int
localstore_journal_put_bytes(struct localstore *ls, const char *referral_id, uint64_t seq,
                             const void *json, size_t n)
{
	uint8_t kbuf[LOCALSTORE_MAX_MSGID + 1 + U64_LEN];
	MDB_txn *txn = NULL;
	MDB_val k, v;
	size_t klen;
	int err, rc;

	if (ls == NULL || referral_id == NULL || json == NULL || seq == 0 || n == 0 ||
	    n >= DBENV_MAX_VALUE) {
		return IHALA_EINVAL;
	}
	if ((err = journal_key(referral_id, seq, kbuf, sizeof(kbuf), &klen)) < 0) {
		return err;
	}
	if ((err = wbegin(ls, &txn)) < 0) {
		return err;
	}
	mkval(&k, kbuf, klen);
	mkval(&v, json, n);
	if ((rc = mdb_put(txn, ls->journal, &k, &v, 0)) != 0) {
		mdb_txn_abort(txn);
		return ls_err(ls, rc, "writing the journal");
	}
	return wcommit(ls, txn, "committing the journal");
}

struct text_cb {
	localstore_journal_cb cb;
	void *arg;
};

static int
text_adapter(void *arg, const char *rid, uint64_t seq, const void *data, size_t len)
{
	struct text_cb *t = arg;

	(void)len;
	return t->cb(t->arg, rid, seq, data); /* NUL-terminated by journal_iter_bytes */
}

int
localstore_journal_iter(struct localstore *ls, const char *referral_id, localstore_journal_cb cb,
                        void *arg)
{
	struct text_cb t = {cb, arg};

	if (cb == NULL) {
		return IHALA_EINVAL;
	}
	return localstore_journal_iter_bytes(ls, referral_id, text_adapter, &t);
}

int
localstore_journal_iter_bytes(struct localstore *ls, const char *referral_id,
                              localstore_journal_bytes_cb cb, void *arg)
{
	uint8_t kbuf[LOCALSTORE_MAX_MSGID + 1 + U64_LEN];
	char rid[LOCALSTORE_MAX_MSGID + 1];
	MDB_cursor *cur = NULL;
	MDB_txn *txn = NULL;
	MDB_val k, v;
	size_t klen = 0, n;
	char *text;
	int err, rc, op = MDB_FIRST;

	if (ls == NULL || cb == NULL) {
		return IHALA_EINVAL;
	}
	if (referral_id != NULL) {
		if ((err = journal_key(referral_id, 0, kbuf, sizeof(kbuf), &klen)) < 0) {
			return err;
		}
		op = MDB_SET_RANGE;
	}
	if ((err = rbegin(ls, &txn)) < 0) {
		return err;
	}
	if ((rc = mdb_cursor_open(txn, ls->journal, &cur)) != 0) {
		err = ls_err(ls, rc, "opening a journal cursor");
		goto out;
	}
	mkval(&k, kbuf, klen);
	for (rc = mdb_cursor_get(cur, &k, &v, (MDB_cursor_op)op); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		n = k.mv_size > U64_LEN + 1 ? k.mv_size - U64_LEN - 1 : 0;
		if (n == 0 || n > LOCALSTORE_MAX_MSGID || ((const char *)k.mv_data)[n] != '\0') {
			err = damaged(ls, "journal key");
			goto out;
		}
		if (referral_id != NULL &&
		    (n + 1 + U64_LEN != klen || memcmp(k.mv_data, kbuf, n) != 0)) {
			break;
		}
		memcpy(rid, k.mv_data, n);
		rid[n] = '\0';
		if ((text = malloc(v.mv_size + 1)) == NULL) {
			err = IHALA_ENOMEM;
			goto out;
		}
		memcpy(text, v.mv_data, v.mv_size);
		text[v.mv_size] = '\0';
		err = cb(arg, rid, be64dec((const uint8_t *)k.mv_data + n + 1), text, v.mv_size);
		free(text);
		if (err != 0) {
			goto out;
		}
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		err = ls_err(ls, rc, "reading the journal");
	}
out:
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return err;
}

/* ---- rejected: messages the broker (or this node) refused for good ---- */

#define REJ_HEAD (4 + U64_LEN + 2)

/* Split a rejected record; text and env point into v. */
static int
rejected_decode(struct localstore *ls, const MDB_val *v, struct localstore_rejected *r)
{
	const uint8_t *p = v->mv_data;
	size_t tlen;

	if (v->mv_size < REJ_HEAD) {
		return damaged(ls, "rejected record");
	}
	r->code = (int32_t)be32dec(p);
	r->time_ms = be64dec(p + 4);
	tlen = (size_t)p[12] << 8 | p[13];
	if (v->mv_size - REJ_HEAD < tlen) {
		return damaged(ls, "rejected record");
	}
	r->text = (const char *)p + REJ_HEAD;
	r->text_len = tlen;
	r->env = p + REJ_HEAD + tlen;
	r->env_len = v->mv_size - REJ_HEAD - tlen;
	return 0;
}

int
localstore_outbox_reject(struct localstore *ls, const char *message_id, int code, const char *text,
                         uint64_t time_ms)
{
	MDB_txn *txn = NULL;
	MDB_val ik, v;
	uint8_t *p;
	void *env = NULL;
	size_t len = 0, tlen;
	int rc, err;

	tlen = text != NULL ? strnlen(text, 1024) : 0;
	if ((err = id_begin(ls, message_id, 0, &txn, &ik)) < 0) {
		return err;
	}
	if ((err = outbox_take_txn(ls, txn, &ik, &env, &len)) < 0) {
		goto fail;
	}
	mkval(&v, NULL, REJ_HEAD + tlen + len);
	if ((rc = mdb_put(txn, ls->rejected, &ik, &v, MDB_RESERVE)) != 0) {
		err = ls_err(ls, rc, "recording a rejected message");
		goto fail;
	}
	p = v.mv_data;
	be32enc(p, (uint32_t)code);
	be64enc(p + 4, time_ms);
	p[12] = (uint8_t)(tlen >> 8);
	p[13] = (uint8_t)tlen;
	memcpy(p + REJ_HEAD, text != NULL ? text : "", tlen);
	memcpy(p + REJ_HEAD + tlen, env, len);
	free(env);
	return wcommit(ls, txn, "committing a rejected message");
fail:
	free(env);
	mdb_txn_abort(txn);
	return err;
}

int
localstore_rejected_iter(struct localstore *ls, localstore_rejected_cb cb, void *arg)
{
	MDB_cursor *cur = NULL;
	MDB_txn *txn = NULL;
	char id[LOCALSTORE_MAX_MSGID + 1];
	MDB_val k, v;
	int rc, err;

	if (ls == NULL || cb == NULL) {
		return IHALA_EINVAL;
	}
	if ((err = rbegin(ls, &txn)) < 0) {
		return err;
	}
	if ((rc = mdb_cursor_open(txn, ls->rejected, &cur)) != 0) {
		mdb_txn_abort(txn);
		return ls_err(ls, rc, "opening a cursor on the rejected messages");
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct localstore_rejected r;

		if (k.mv_size == 0 || k.mv_size > LOCALSTORE_MAX_MSGID) {
			err = damaged(ls, "rejected key");
			break;
		}
		memcpy(id, k.mv_data, k.mv_size);
		id[k.mv_size] = '\0';
		memset(&r, 0, sizeof(r));
		r.message_id = id;
		if ((err = rejected_decode(ls, &v, &r)) < 0 || (err = cb(arg, &r)) != 0) {
			break;
		}
	}
	if (err == 0 && rc != 0 && rc != MDB_NOTFOUND) {
		err = ls_err(ls, rc, "reading the rejected messages");
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return err;
}

int
localstore_rejected_count(struct localstore *ls, size_t *n)
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
	rc = mdb_stat(txn, ls->rejected, &st);
	mdb_txn_abort(txn);
	if (rc != 0) {
		return ls_err(ls, rc, "counting the rejected messages");
	}
	*n = st.ms_entries;
	return 0;
}

/* Drop (requeue == 0) or move back to the end of the outbox (requeue == 1) a rejected
 * message. */
static int
rejected_take(struct localstore *ls, const char *message_id, int requeue)
{
	struct localstore_rejected r;
	MDB_txn *txn = NULL;
	MDB_val ik, v;
	void *copy;
	int rc, err;

	if ((err = id_begin(ls, message_id, 0, &txn, &ik)) < 0) {
		return err;
	}
	if ((rc = mdb_get(txn, ls->rejected, &ik, &v)) != 0) {
		err = ls_err(ls, rc, "reading a rejected message");
		goto fail;
	}
	if (requeue) {
		memset(&r, 0, sizeof(r));
		if ((err = rejected_decode(ls, &v, &r)) < 0) {
			goto fail;
		}
		if (r.env_len == 0) {
			err = damaged(ls, "rejected record");
			goto fail;
		}
		/* v points into a page the put may change: copy it first */
		if ((copy = malloc(r.env_len)) == NULL) {
			err = IHALA_ENOMEM;
			goto fail;
		}
		memcpy(copy, r.env, r.env_len);
		err = outbox_put_txn(ls, txn, message_id, ik.mv_size, copy, r.env_len);
		free(copy);
		if (err < 0) {
			goto fail;
		}
	}
	if ((rc = mdb_del(txn, ls->rejected, &ik, NULL)) != 0) {
		err = ls_err(ls, rc, "removing a rejected message");
		goto fail;
	}
	return wcommit(ls, txn, "committing a rejected message's removal");
fail:
	mdb_txn_abort(txn);
	return err;
}

int
localstore_rejected_retry(struct localstore *ls, const char *message_id)
{
	return rejected_take(ls, message_id, 1);
}

int
localstore_rejected_del(struct localstore *ls, const char *message_id)
{
	return rejected_take(ls, message_id, 0);
}
