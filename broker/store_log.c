/* store_log.c - the store's audit record: log entries, message-id dedup, Merkle tree nodes,
 * checkpoints. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endian.h"
#include "store_int.h"

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
	if (len > DBENV_MAX_VALUE) {
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
	if ((rc = store_put(w->r.s, w->r.lt.txn, w->r.s->dbi.log, &k, &v, MDB_APPEND)) != 0) {
		if (rc == MDB_KEYEXIST) {
			log_warnx("store %s: seq %llu already in the log (a bug)", w->r.s->db.dir,
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
	int err;

	if ((err = rcheck(r)) < 0) {
		return err;
	}
	return logdb_log_get(&r->lt, seq, data, len);
}

int
store_log_last(struct store_rtxn *r, uint64_t *seq)
{
	int err;

	if ((err = rcheck(r)) < 0) {
		return err;
	}
	return logdb_log_last(&r->lt, seq);
}

int
store_log_iter_begin(struct store_rtxn *r, uint64_t from_seq, struct store_log_iter **out)
{
	struct store_log_iter *it;
	int err;

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
	if ((err = logdb_log_iter_begin(&r->lt, from_seq, &it->li)) < 0) {
		free(it);
		return err;
	}
	it->r = r;
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
	int err;

	if (it == NULL || it->r == NULL || seq == NULL || data == NULL || len == NULL) {
		return IHALA_EINVAL;
	}
	if ((err = rcheck(it->r)) < 0) {
		return err;
	}
	return logdb_log_iter_next(&it->li, seq, data, len);
}

void
store_log_iter_end(struct store_log_iter *it)
{
	if (it == NULL) {
		return;
	}
	if (it->r != NULL) {
		logdb_log_iter_end(&it->li);
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
	if (v->mv_size != LOGDB_SEQ_LEN) {
		log_warnx("store %s: damaged message id record", s->db.dir);
		return IHALA_ESTORE;
	}
	*seq = be64dec(v->mv_data);
	return 0;
}

int
store_msgid_put(struct store_wtxn *w, const char *sender, const char *msgid, uint64_t seq)
{
	uint8_t kbuf[1024], vbuf[LOGDB_SEQ_LEN];
	uint64_t old;
	MDB_val k, v;
	int rc, err;

	if ((err = wcheck(w)) < 0) {
		return err;
	}
	if (w->r.s->db.maxkey > sizeof(kbuf)) {
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
	rc = store_put(w->r.s, w->r.lt.txn, w->r.s->dbi.msgid, &k, &v, MDB_NOOVERWRITE);
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
	if (seq == NULL || r->s->db.maxkey > sizeof(kbuf)) {
		return IHALA_EINVAL;
	}
	if ((err = msgid_key(r->s, sender, msgid, kbuf, &k)) < 0) {
		return err;
	}
	if ((rc = mdb_get(r->lt.txn, r->s->dbi.msgid, &k, &v)) != 0) {
		return store_err(r->s, rc, "reading a message id");
	}
	return read_seq_value(r->s, &v, seq);
}

/* ---- tree ---- */

/* The answer to a put of `hash` where a node is already stored (`v`, as LMDB left it). */
static int
tree_exists(struct store *s, const MDB_val *v, unsigned level, uint64_t index,
            const uint8_t hash[STORE_HASH_LEN])
{
	if (v->mv_size == STORE_HASH_LEN && memcmp(v->mv_data, hash, STORE_HASH_LEN) == 0) {
		return 0;
	}
	log_warnx("store %s: tree node (level %u, index %llu) already stored with another "
	          "hash; refusing to rewrite it",
	          s->db.dir, level, (unsigned long long)index);
	return IHALA_EINCONSISTENT;
}

int
store_tree_put(struct store_wtxn *w, unsigned level, uint64_t index,
               const uint8_t hash[STORE_HASH_LEN])
{
	struct store *s;
	uint8_t kbuf[LOGDB_TREE_KEY_LEN], pbuf[LOGDB_NODE_KEY_LEN];
	uint64_t pos;
	MDB_val k, v;
	int rc, err;

	if ((err = wcheck(w)) < 0) {
		return err;
	}
	if (hash == NULL || (err = logdb_tree_key(level, index, kbuf, &k)) < 0) {
		return IHALA_EINVAL;
	}
	s = w->r.s;
	if (s->old_tree) {
		/* a store written before "node": its older nodes are in "tree" */
		rc = mdb_get(w->r.lt.txn, s->dbi.tree, &k, &v);
		if (rc == 0) {
			return tree_exists(s, &v, level, index, hash);
		}
		if (rc != MDB_NOTFOUND) {
			return wfail(w, rc, "reading a tree node");
		}
	}
	if (logdb_node_pos(level, index, &pos) == 0) {
		/* The writer's nodes come in postorder: each one goes at the end. */
		be64enc(pbuf, pos);
		k.mv_data = pbuf;
		k.mv_size = sizeof(pbuf);
		v.mv_data = (void *)hash;
		v.mv_size = STORE_HASH_LEN;
		rc = store_put(s, w->r.lt.txn, s->dbi.node, &k, &v, MDB_APPEND);
		if (rc == MDB_KEYEXIST) { /* at or before the last one: stored, or a hole */
			rc = store_put(s, w->r.lt.txn, s->dbi.node, &k, &v, MDB_NOOVERWRITE);
		}
	} else {
		v.mv_data = (void *)hash;
		v.mv_size = STORE_HASH_LEN;
		rc = store_put(s, w->r.lt.txn, s->dbi.tree, &k, &v, MDB_NOOVERWRITE);
	}
	if (rc == MDB_KEYEXIST) {
		return tree_exists(s, &v, level, index, hash);
	}
	if (rc != 0) {
		return wfail(w, rc, "storing a tree node");
	}
	return 0;
}

int
store_tree_get(struct store_rtxn *r, unsigned level, uint64_t index, uint8_t hash[STORE_HASH_LEN])
{
	int err;

	if ((err = rcheck(r)) < 0) {
		return err;
	}
	atomic_fetch_add_explicit(&r->s->tree_gets, 1, memory_order_relaxed);
	return logdb_tree_get(&r->lt, level, index, hash);
}

/* ---- checkpoint ---- */

int
store_checkpoint_put(struct store_wtxn *w, uint64_t size, const char *text)
{
	uint8_t kbuf[LOGDB_SEQ_LEN];
	MDB_val k, v;
	size_t n;
	int rc, err;

	if ((err = wcheck(w)) < 0) {
		return err;
	}
	if (text == NULL || (n = strlen(text)) == 0) {
		return IHALA_EINVAL;
	}
	if (n > CHECKPOINT_TEXT_MAX) {
		return IHALA_ETOOLARGE;
	}
	if (size >= w->next_seq) {
		log_warnx("store %s: checkpoint of size %llu is ahead of the log (last seq %llu)",
		          w->r.s->db.dir, (unsigned long long)size,
		          (unsigned long long)(w->next_seq - 1));
		return IHALA_EINVAL;
	}
	be64enc(kbuf, size);
	k.mv_data = kbuf;
	k.mv_size = sizeof(kbuf);
	v.mv_data = (void *)text;
	v.mv_size = n;
	rc = store_put(w->r.s, w->r.lt.txn, w->r.s->dbi.checkpoint, &k, &v, MDB_NOOVERWRITE);
	if (rc == MDB_KEYEXIST) {
		if (v.mv_size == n && memcmp(v.mv_data, text, n) == 0) {
			return 0;
		}
		log_warnx("store %s: a different checkpoint of size %llu is already stored; "
		          "refusing to replace it",
		          w->r.s->db.dir, (unsigned long long)size);
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
	int err;

	if ((err = rcheck(r)) < 0) {
		return err;
	}
	return logdb_checkpoint_get(&r->lt, size, text);
}

int
store_checkpoint_latest(struct store_rtxn *r, uint64_t *size, char **text)
{
	int err;

	if ((err = rcheck(r)) < 0) {
		return err;
	}
	return logdb_checkpoint_latest(&r->lt, size, text);
}

int
store_checkpoint_iter(struct store_rtxn *r, uint64_t from_size, store_checkpoint_cb cb, void *arg)
{
	int err;

	if ((err = rcheck(r)) < 0) {
		return err;
	}
	return logdb_checkpoint_iter(&r->lt, from_size, cb, arg);
}

/* ---- sealed parts: seq -> the entry's sealed part, deletable ---- */

static int
sealed_key(uint64_t seq, size_t *key, MDB_val *k)
{
	if (seq == 0) {
		return IHALA_EINVAL;
	}
	*key = (size_t)seq;
	k->mv_data = key;
	k->mv_size = sizeof(*key);
	return 0;
}

int
store_sealed_put(struct store_wtxn *w, uint64_t seq, const void *data, size_t len)
{
	MDB_val k, v;
	size_t key;
	int rc, err;

	if ((err = wcheck(w)) < 0) {
		return err;
	}
	if (data == NULL || len == 0 || (err = sealed_key(seq, &key, &k)) < 0) {
		return IHALA_EINVAL;
	}
	if (len > DBENV_MAX_VALUE) {
		return IHALA_ETOOLARGE;
	}
	v.mv_data = (void *)data;
	v.mv_size = len;
	/* A sealed part is written once, with its entry (whose seq is above every stored one):
	 * never replaced. MDB_APPEND refuses a seq at or below the last (MDB_KEYEXIST) and fills
	 * pages instead of splitting them in half, which left the sealed parts' pages half empty
	 * (100 000 leaf pages for 200 000 parts of ~850 bytes; 50 000 with it). */
	rc = store_put(w->r.s, w->r.lt.txn, w->r.s->dbi.sealed, &k, &v, MDB_APPEND);
	if (rc == MDB_KEYEXIST) {
		log_warnx("store %s: seq %llu is not above the last sealed part's (a bug)",
		          w->r.s->db.dir, (unsigned long long)seq);
		return IHALA_EINCONSISTENT;
	}
	if (rc != 0) {
		return wfail(w, rc, "storing a sealed part");
	}
	return 0;
}

int
store_sealed_get(struct store_rtxn *r, uint64_t seq, const void **data, size_t *len)
{
	int err;

	if ((err = rcheck(r)) < 0) {
		return err;
	}
	return logdb_sealed_get(&r->lt, seq, data, len);
}

int
store_sealed_del(struct store_wtxn *w, uint64_t seq)
{
	MDB_val k;
	size_t key;
	int rc, err;

	if ((err = wcheck(w)) < 0) {
		return err;
	}
	if ((err = sealed_key(seq, &key, &k)) < 0) {
		return err;
	}
	if ((rc = mdb_del(w->r.lt.txn, w->r.s->dbi.sealed, &k, NULL)) != 0) {
		return wfail(w, rc, "deleting a sealed part");
	}
	return 0;
}
