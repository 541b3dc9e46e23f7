/* logdb.c - the broker store's on-disk format: layout, read-only open, log/tree/checkpoint reads.
 */
#include "logdb.h"

#include <stdlib.h>
#include <string.h>

#include "endian.h"
#include "error.h"
#include "log.h"

/* MDB_INTEGERKEY keys are unsigned int or size_t: the uint64 log seq needs size_t to be 64
 * bits. */
_Static_assert(sizeof(size_t) == sizeof(uint64_t), "the store needs a 64-bit size_t");

static const struct dbenv_format logdb_format = {
    LOGDB_FORMAT_VERSION,
    NULL,
    "ihala store",
    "give the broker an empty or an ihala data directory",
};

struct logdb {
	struct dbenv env;
	struct logdb_dbis dbs;
};

int
logdb_layout(struct dbenv *e, MDB_txn *txn, int create, struct logdb_dbis *d, int *fresh)
{
	const struct dbenv_db dbs[] = {
	    {"log", MDB_INTEGERKEY, &d->log},
	    {"tree", 0, &d->tree},
	    {"msgid", 0, &d->msgid},
	    {"queue", 0, &d->queue},
	    {"referral", 0, &d->referral},
	    {"checkpoint", 0, &d->checkpoint},
	    {"sealed", MDB_INTEGERKEY, &d->sealed},
	    {"children", 0, &d->children},
	};
	int err;

	int rc;

	if ((err = dbenv_format_open(e, txn, &logdb_format, create, &d->meta, fresh)) < 0) {
		return err;
	}
	if ((err = dbenv_dbis_open(e, txn, dbs, sizeof(dbs) / sizeof(dbs[0]),
	                           create ? MDB_CREATE : 0)) < 0) {
		return err;
	}
	/* "node" came later: a store without it is read through "tree" alone. */
	rc = mdb_dbi_open(txn, "node", create ? MDB_CREATE : 0, &d->node);
	if (rc == MDB_NOTFOUND && !create) {
		d->has_node = 0;
		return 0;
	}
	if (rc != 0) {
		return dbenv_err(e, rc, "node");
	}
	d->has_node = 1;
	return 0;
}

int
logdb_format_init(struct dbenv *e, MDB_txn *txn, const struct logdb_dbis *d)
{
	return dbenv_format_init(e, txn, d->meta, &logdb_format);
}

/* ---- read-only open ---- */

int
logdb_open(const char *dir, struct logdb **out)
{
	const struct dbenv_opts o = {
	    .mode = DATADIR_RDONLY,
	    .flags = MDB_RDONLY | MDB_NOTLS,
	    .maxdbs = LOGDB_MAXDBS,
	    .maxreaders = LOGDB_MAXREADERS,
	};
	struct logdb *db;
	MDB_txn *txn;
	int err, fresh;

	if (out == NULL || dir == NULL || dir[0] == '\0') {
		return IHALA_EINVAL;
	}
	*out = NULL;
	if ((db = calloc(1, sizeof(*db))) == NULL) {
		return IHALA_ENOMEM;
	}
	if ((err = dbenv_open(&db->env, "store", dir, &o)) < 0) {
		free(db);
		return err;
	}
	if ((err = dbenv_begin(&db->env, NULL, MDB_RDONLY, &txn)) < 0) {
		goto fail;
	}
	if ((err = logdb_layout(&db->env, txn, 0, &db->dbs, &fresh)) < 0) {
		mdb_txn_abort(txn);
		goto fail;
	}
	/* Committed, not aborted: the database handles outlive the transaction only then. */
	if ((err = dbenv_commit(&db->env, txn, "committing the opening transaction")) < 0) {
		goto fail;
	}
	*out = db;
	return 0;
fail:
	logdb_close(db);
	return err;
}

void
logdb_close(struct logdb *db)
{
	if (db == NULL) {
		return;
	}
	dbenv_close(&db->env);
	free(db);
}

int
logdb_begin(struct logdb *db, struct logdb_txn *t)
{
	if (db == NULL || t == NULL) {
		return IHALA_EINVAL;
	}
	t->env = &db->env;
	t->dbs = &db->dbs;
	return dbenv_begin(&db->env, NULL, MDB_RDONLY, &t->txn);
}

void
logdb_end(struct logdb_txn *t)
{
	if (t != NULL && t->txn != NULL) {
		mdb_txn_abort(t->txn);
		t->txn = NULL;
	}
}

int
logdb_backup(struct logdb *db, const char *dir)
{
	if (db == NULL || dir == NULL) {
		return IHALA_EINVAL;
	}
	return dbenv_backup(&db->env, dir);
}

int
logdb_stat(const struct logdb_txn *t, struct logdb_stats *st)
{
	MDB_envinfo info;
	MDB_stat ms;
	int rc;

	if (t == NULL || st == NULL) {
		return IHALA_EINVAL;
	}
	memset(st, 0, sizeof(*st));
	if ((rc = mdb_env_info(t->env->env, &info)) != 0 ||
	    (rc = mdb_stat(t->txn, t->dbs->log, &ms)) != 0) {
		return dbenv_err(t->env, rc, "reading statistics");
	}
	st->entries = ms.ms_entries;
	st->map_size = info.me_mapsize;
	st->page_size = ms.ms_psize;
	st->used_bytes = (info.me_last_pgno + 1) * (size_t)ms.ms_psize;
	return logdb_log_last(t, &st->last_seq);
}

/* ---- log ---- */

int
logdb_log_get(const struct logdb_txn *t, uint64_t seq, const void **data, size_t *len)
{
	MDB_val k, v;
	size_t key = (size_t)seq;
	int rc;

	if (data == NULL || len == NULL) {
		return IHALA_EINVAL;
	}
	if (seq == 0) {
		return IHALA_ENOTFOUND;
	}
	k.mv_data = &key;
	k.mv_size = sizeof(key);
	if ((rc = mdb_get(t->txn, t->dbs->log, &k, &v)) != 0) {
		return dbenv_err(t->env, rc, "reading the log");
	}
	*data = v.mv_data;
	*len = v.mv_size;
	return 0;
}

int
logdb_sealed_get(const struct logdb_txn *t, uint64_t seq, const void **data, size_t *len)
{
	MDB_val k, v;
	size_t key = (size_t)seq;
	int rc;

	if (data == NULL || len == NULL) {
		return IHALA_EINVAL;
	}
	if (seq == 0) {
		return IHALA_ENOTFOUND;
	}
	k.mv_data = &key;
	k.mv_size = sizeof(key);
	if ((rc = mdb_get(t->txn, t->dbs->sealed, &k, &v)) != 0) {
		return dbenv_err(t->env, rc, "reading a sealed part");
	}
	*data = v.mv_data;
	*len = v.mv_size;
	return 0;
}

int
logdb_log_last(const struct logdb_txn *t, uint64_t *seq)
{
	MDB_cursor *cur;
	MDB_val k, v;
	size_t key;
	int rc;

	if (seq == NULL) {
		return IHALA_EINVAL;
	}
	if ((rc = mdb_cursor_open(t->txn, t->dbs->log, &cur)) != 0) {
		return dbenv_err(t->env, rc, "opening a log cursor");
	}
	rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND) {
		*seq = 0;
		return 0;
	}
	if (rc != 0) {
		return dbenv_err(t->env, rc, "reading the last log entry");
	}
	if (k.mv_size != sizeof(key)) {
		return dbenv_damaged(t->env, "log key");
	}
	memcpy(&key, k.mv_data, sizeof(key));
	*seq = key;
	return 0;
}

static int
iter_begin(const struct logdb_txn *t, MDB_dbi dbi, uint64_t from_seq, struct logdb_log_iter *it)
{
	int rc;

	if (t == NULL || it == NULL) {
		return IHALA_EINVAL;
	}
	memset(it, 0, sizeof(*it));
	if ((rc = mdb_cursor_open(t->txn, dbi, &it->cur)) != 0) {
		it->cur = NULL;
		return dbenv_err(t->env, rc, "opening a log cursor");
	}
	it->env = t->env;
	it->from = from_seq == 0 ? 1 : from_seq;
	return 0;
}

int
logdb_log_iter_begin(const struct logdb_txn *t, uint64_t from_seq, struct logdb_log_iter *it)
{
	return iter_begin(t, t != NULL ? t->dbs->log : 0, from_seq, it);
}

int
logdb_sealed_iter_begin(const struct logdb_txn *t, uint64_t from_seq, struct logdb_log_iter *it)
{
	return iter_begin(t, t != NULL ? t->dbs->sealed : 0, from_seq, it);
}

int
logdb_log_iter_next(struct logdb_log_iter *it, uint64_t *seq, const void **data, size_t *len)
{
	MDB_val k, v;
	size_t key;
	int rc;

	if (it == NULL || it->cur == NULL || seq == NULL || data == NULL || len == NULL) {
		return IHALA_EINVAL;
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
		return dbenv_err(it->env, rc, "iterating the log or its sealed parts");
	}
	if (k.mv_size != sizeof(key)) {
		return dbenv_damaged(it->env, "log or sealed part key");
	}
	memcpy(&key, k.mv_data, sizeof(key));
	*seq = key;
	*data = v.mv_data;
	*len = v.mv_size;
	return 0;
}

void
logdb_log_iter_end(struct logdb_log_iter *it)
{
	if (it != NULL && it->cur != NULL) {
		mdb_cursor_close(it->cur);
		it->cur = NULL;
	}
}

/* ---- tree ---- */

int
logdb_node_pos(unsigned level, uint64_t index, uint64_t *pos)
{
	uint64_t n = index, i = 0;
	unsigned l;

	/* (index + 1) << level <= MERKLE_MAX_SIZE, without overflow */
	if (level >= 63 || index >= (MERKLE_MAX_SIZE >> level)) {
		return IHALA_ETOOLARGE;
	}
	/* the node's last leaf... */
	for (l = 0; l < level; l++) {
		n = 2 * n + 1;
	}
	/* ...is preceded in postorder by the nodes of every leaf before it and its own
	 * subtrees; the node itself comes `level` positions after that leaf */
	for (; n > 0; n >>= 1) {
		i += n;
	}
	*pos = i + level;
	return 0;
}

int
logdb_tree_key(unsigned level, uint64_t index, uint8_t buf[LOGDB_TREE_KEY_LEN], MDB_val *k)
{
	if (level > 63) {
		return IHALA_EINVAL;
	}
	buf[0] = (uint8_t)level;
	be64enc(buf + 1, index);
	k->mv_data = buf;
	k->mv_size = LOGDB_TREE_KEY_LEN;
	return 0;
}

int
logdb_tree_get(const struct logdb_txn *t, unsigned level, uint64_t index,
               uint8_t hash[LOGDB_HASH_LEN])
{
	uint8_t kbuf[LOGDB_TREE_KEY_LEN];
	MDB_val k, v;
	int rc;

	uint8_t pbuf[LOGDB_NODE_KEY_LEN];
	uint64_t pos;

	if (hash == NULL || logdb_tree_key(level, index, kbuf, &k) < 0) {
		return IHALA_EINVAL;
	}
	if (t->dbs->has_node && logdb_node_pos(level, index, &pos) == 0) {
		MDB_val pk = {sizeof(pbuf), pbuf};

		be64enc(pbuf, pos);
		rc = mdb_get(t->txn, t->dbs->node, &pk, &v);
		if (rc == 0) {
			goto found;
		}
		if (rc != MDB_NOTFOUND) {
			return dbenv_err(t->env, rc, "reading a tree node");
		}
	}
	if ((rc = mdb_get(t->txn, t->dbs->tree, &k, &v)) != 0) {
		return dbenv_err(t->env, rc, "reading a tree node");
	}
found:
	if (v.mv_size != LOGDB_HASH_LEN) {
		log_warnx("%s %s: damaged tree node (level %u, index %llu)", t->env->who,
		          t->env->dir, level, (unsigned long long)index);
		return IHALA_ESTORE;
	}
	memcpy(hash, v.mv_data, LOGDB_HASH_LEN);
	return 0;
}

int
logdb_tree_node(void *t, unsigned level, uint64_t index, uint8_t hash[MERKLE_HASH_LEN])
{
	return logdb_tree_get(t, level, index, hash);
}

/* ---- checkpoints ---- */

int
logdb_checkpoint_get(const struct logdb_txn *t, uint64_t size, char **text)
{
	uint8_t kbuf[LOGDB_SEQ_LEN];
	MDB_val k, v;
	int rc;

	if (text == NULL) {
		return IHALA_EINVAL;
	}
	be64enc(kbuf, size);
	k.mv_data = kbuf;
	k.mv_size = sizeof(kbuf);
	if ((rc = mdb_get(t->txn, t->dbs->checkpoint, &k, &v)) != 0) {
		return dbenv_err(t->env, rc, "reading a checkpoint");
	}
	return dbenv_copy_text(&v, text);
}

int
logdb_checkpoint_latest(const struct logdb_txn *t, uint64_t *size, char **text)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, err;

	if (size == NULL || text == NULL) {
		return IHALA_EINVAL;
	}
	if ((rc = mdb_cursor_open(t->txn, t->dbs->checkpoint, &cur)) != 0) {
		return dbenv_err(t->env, rc, "opening a checkpoint cursor");
	}
	rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
	mdb_cursor_close(cur);
	if (rc != 0) {
		return dbenv_err(t->env, rc, "reading the latest checkpoint");
	}
	if (k.mv_size != LOGDB_SEQ_LEN) {
		return dbenv_damaged(t->env, "checkpoint key");
	}
	if ((err = dbenv_copy_text(&v, text)) < 0) {
		return err;
	}
	*size = be64dec(k.mv_data);
	return 0;
}

int
logdb_checkpoint_iter(const struct logdb_txn *t, uint64_t from_size, logdb_checkpoint_cb cb,
                      void *arg)
{
	uint8_t kbuf[LOGDB_SEQ_LEN];
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc, err;

	if (cb == NULL) {
		return IHALA_EINVAL;
	}
	if ((rc = mdb_cursor_open(t->txn, t->dbs->checkpoint, &cur)) != 0) {
		return dbenv_err(t->env, rc, "opening a checkpoint cursor");
	}
	be64enc(kbuf, from_size);
	k.mv_data = kbuf;
	k.mv_size = sizeof(kbuf);
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	err = 0;
	while (rc == 0) {
		if (k.mv_size != LOGDB_SEQ_LEN) {
			err = dbenv_damaged(t->env, "checkpoint key");
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
		return dbenv_err(t->env, rc, "iterating the checkpoints");
	}
	return 0;
}
