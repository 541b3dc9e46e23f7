/* localstore.c - a client node's durable local store over LMDB: outbox, inbox, last checkpoint. */
#include "localstore.h"

#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

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
 * A seq is in at most one of inbox and inbox_done, so next_pending is one
 * cursor seek however many deliveries are already done.
 */

#define LS_MAXDBS 8
#define LS_LOCKFILE "ihala-client.lock"
#define META_OUTBOX_NEXT "outbox_next"
#define META_CHECKPOINT "checkpoint"
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
	MDB_dbi journal; /* referral id, NUL, u64 seq -> JSON text (created on open) */
};

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

/* Commit synchronously (the environment has no NOSYNC flag). The handle is
 * freed whatever the outcome. */
static int
wcommit(struct localstore *ls, MDB_txn *txn, const char *what)
{
	return dbenv_commit(&ls->db, txn, what);
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
		{ "outbox", 0, &ls->outbox },
		{ "outbox_id", 0, &ls->outbox_id },
		{ "inbox", 0, &ls->inbox },
		{ "inbox_done", 0, &ls->inbox_done },
	};
	const struct dbenv_db journal[] = {
		{ "journal", 0, &ls->journal },
	};
	MDB_txn *txn = NULL;
	int err, fresh;

	if ((err = wbegin(ls, &txn)) < 0) {
		return err;
	}
	if ((err = dbenv_format_open(&ls->db, txn, &ls_format, 1, &ls->meta, &fresh)) < 0 ||
	    (err = dbenv_dbis_open(&ls->db, txn, dbs, sizeof(dbs) / sizeof(dbs[0]),
				   fresh ? MDB_CREATE : 0)) < 0 ||
	    (fresh && (err = dbenv_format_init(&ls->db, txn, ls->meta, &ls_format)) < 0)) {
		mdb_txn_abort(txn);
		return err;
	}
	/* The journal came after format 1: created in older stores too (format unchanged). */
	if ((err = dbenv_dbis_open(&ls->db, txn, journal, 1, MDB_CREATE)) < 0) {
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
		.flags = MDB_NOTLS,
		.maxdbs = LS_MAXDBS,
		.mapsize = LOCALSTORE_MAPSIZE,
		.full_hint = "deliver the outbox or move the data dir to a fresh one",
	};
	struct localstore *ls;
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
	err = dbenv_open(&ls->db, "local store", dir, &o);
	if (err == IHALA_EAGAIN) {
		log_warnx("data dir %s is in use by another ihala process", dir);
		err = IHALA_EIO;
	}
	if (err < 0) {
		free(ls);
		return err;
	}
	if ((err = open_layout(ls)) < 0) {
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
	dbenv_close(&ls->db);
	free(ls);
}

/* ---- outbox ---- */

/* Split an outbox record into its id (copied, NUL-terminated) and envelope. */
static int
outbox_decode(struct localstore *ls, const MDB_val *v, char id[LOCALSTORE_MAX_MSGID + 1],
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
			  ls->db.dir, id);
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
	if (len > DBENV_MAX_VALUE) {
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
	uint8_t kbuf[LOCALSTORE_MAX_MSGID + 1 + U64_LEN];
	MDB_txn *txn = NULL;
	MDB_val k, v;
	size_t klen, n;
	int err, rc;

	if (ls == NULL || referral_id == NULL || json == NULL || seq == 0 ||
	    (n = strlen(json)) == 0 || n >= DBENV_MAX_VALUE) {
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

int
localstore_journal_iter(struct localstore *ls, const char *referral_id, localstore_journal_cb cb,
			void *arg)
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
		if (referral_id != NULL && (n + 1 + U64_LEN != klen || memcmp(k.mv_data, kbuf, n) != 0)) {
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
		err = cb(arg, rid, be64dec((const uint8_t *)k.mv_data + n + 1), text);
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
