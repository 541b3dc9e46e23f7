/* store_state.c - the store's delivery state: queues (with a batch's counter cache), referral
 * states, meta. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endian.h"
#include "store_int.h"

/* ---- keys and counters ---- */

/* Key "agency\0" + big-endian seq; buf must hold maxkey bytes. */
static int
queue_key(const struct store *s, const char *agency, uint64_t seq, uint8_t *buf, MDB_val *key)
{
	size_t n;
	int rc;

	if ((rc = id_len(s, agency, 1 + LOGDB_SEQ_LEN, &n)) < 0) {
		return rc;
	}
	memcpy(buf, agency, n);
	buf[n] = '\0';
	be64enc(buf + n + 1, seq);
	key->mv_data = buf;
	key->mv_size = n + 1 + LOGDB_SEQ_LEN;
	return 0;
}

static int
qcount_key(const struct store *s, const char *agency, char *buf, MDB_val *key)
{
	size_t n, p = strlen(LOGDB_QCOUNT_PREFIX);
	int rc;

	if ((rc = id_len(s, agency, p, &n)) < 0) {
		return rc;
	}
	memcpy(buf, LOGDB_QCOUNT_PREFIX, p);
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
	log_warnx("store %s: damaged queue counter in meta (not a decimal number)", s->db.dir);
	return IHALA_ESTORE;
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
		if (w->qc[i].len == ck->mv_size &&
		    memcmp(w->qc[i].key, ck->mv_data, ck->mv_size) == 0) {
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

	rc = mdb_get(r->lt.txn, r->s->dbi.meta, (MDB_val *)ck, &v);
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
		rc = mdb_del(w->r.lt.txn, w->r.s->dbi.meta, (MDB_val *)ck, NULL);
		if (rc == MDB_NOTFOUND) {
			rc = 0;
		}
	} else {
		v.mv_size = (size_t)snprintf(buf, sizeof(buf), "%llu", (unsigned long long)n);
		v.mv_data = buf;
		rc = store_put(w->r.s, w->r.lt.txn, w->r.s->dbi.meta, (MDB_val *)ck, &v, 0);
	}
	return rc != 0 ? wfail(w, rc, "updating a queue counter") : 0;
}

/* Write the batch's changed counters into its transaction and forget them all. */
int
store_qc_flush(struct store_wtxn *w)
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
	if (w->r.s->db.maxkey > sizeof(kbuf) || tag_len > STORE_QUEUE_TAG_MAX ||
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
	rc = store_put(w->r.s, w->r.lt.txn, w->r.s->dbi.queue, &k, &v, MDB_NOOVERWRITE);
	if (rc == MDB_KEYEXIST) {
		log_warnx("store %s: seq %llu already queued for '%s' (a bug)", w->r.s->db.dir,
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
	if (w->r.s->db.maxkey > sizeof(kbuf) || tag_len == NULL || (tag == NULL && tag_cap > 0)) {
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
	if ((rc = mdb_cursor_open(w->r.lt.txn, w->r.s->dbi.queue, &cur)) != 0) {
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
		          w->r.s->db.dir, agency);
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
	if (n == NULL || r->s->db.maxkey > sizeof(cbuf)) {
		return IHALA_EINVAL;
	}
	/* The counter key allows a longer agency than the queue key does:
	 * check against the queue key so both agree on what is valid. */
	if ((err = id_len(r->s, agency, 1 + LOGDB_SEQ_LEN, &(size_t){0})) < 0 ||
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
	if (cb == NULL || r->s->db.maxkey > sizeof(kbuf)) {
		return IHALA_EINVAL;
	}
	if ((err = queue_key(r->s, agency, from_seq, kbuf, &k)) < 0) {
		return err;
	}
	alen = k.mv_size - LOGDB_SEQ_LEN; /* agency + NUL: the prefix of this queue */
	if ((rc = mdb_cursor_open(r->lt.txn, r->s->dbi.queue, &cur)) != 0) {
		return store_err(r->s, rc, "opening a queue cursor");
	}
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	err = 0;
	while (rc == 0) {
		if (k.mv_size != alen + LOGDB_SEQ_LEN || memcmp(k.mv_data, kbuf, alen) != 0) {
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
	int err;

	if ((err = wcheck(w)) < 0) {
		return err;
	}
	if (reserved && key != NULL && meta_reserved(w->r.s, key)) {
		return IHALA_EINVAL;
	}
	if (key != NULL) {
		atomic_fetch_add_explicit(&w->r.s->put_bytes, strlen(key) + len,
		                          memory_order_relaxed);
	}
	err = dbenv_put(&w->r.s->db, w->r.lt.txn, dbi, key, val, len, 0, what);
	/* dbenv_put's own argument refusals leave the batch usable; LMDB's failures do not. */
	if (err < 0 && err != IHALA_EINVAL && err != IHALA_ETOOLARGE && w->failed == 0) {
		w->failed = err;
	}
	return err;
}

static int
str_get(struct store_rtxn *r, MDB_dbi dbi, const char *key, const void **val, size_t *len,
        const char *what)
{
	MDB_val v;
	int err;

	if ((err = rcheck(r)) < 0) {
		return err;
	}
	if (val == NULL || len == NULL) {
		return IHALA_EINVAL;
	}
	if ((err = dbenv_get(&r->s->db, r->lt.txn, dbi, key, &v, what)) < 0) {
		return err;
	}
	*val = v.mv_data;
	*len = v.mv_size;
	return 0;
}

int
store_referral_put(struct store_wtxn *w, const char *referral_id, const void *state, size_t len)
{
	return str_put(w, w != NULL ? w->r.s->dbi.referral : 0, referral_id, state, len, 0,
	               "storing a referral");
}

int
store_referral_get(struct store_rtxn *r, const char *referral_id, const void **state, size_t *len)
{
	return str_get(r, r != NULL ? r->s->dbi.referral : 0, referral_id, state, len,
	               "reading a referral");
}

/* ---- referral history: referral id "\0" be64 seq -> item, in the referral database ---- */

int
store_history_put(struct store_wtxn *w, const char *referral_id, uint64_t seq, const void *item,
                  size_t len)
{
	uint8_t kbuf[1024];
	MDB_val k, v;
	int rc, err;

	if ((err = wcheck(w)) < 0) {
		return err;
	}
	if (w->r.s->db.maxkey > sizeof(kbuf) || seq == 0 || (item == NULL && len > 0)) {
		return IHALA_EINVAL;
	}
	if (len > DBENV_MAX_VALUE) {
		return IHALA_ETOOLARGE;
	}
	/* The same layout as a queue key: the id, a NUL no id holds, the seq big-endian, so a
	 * referral's items follow its state record in seq order. */
	if ((err = queue_key(w->r.s, referral_id, seq, kbuf, &k)) < 0) {
		return err;
	}
	v.mv_data = (void *)item;
	v.mv_size = len;
	if ((rc = store_put(w->r.s, w->r.lt.txn, w->r.s->dbi.referral, &k, &v, 0)) != 0) {
		return wfail(w, rc, "storing a history item");
	}
	return 0;
}

int
store_history_iter(struct store_rtxn *r, const char *referral_id, store_history_cb cb, void *arg)
{
	uint8_t kbuf[1024];
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	size_t plen;
	int rc, err;

	if ((err = rcheck(r)) < 0) {
		return err;
	}
	if (cb == NULL || r->s->db.maxkey > sizeof(kbuf)) {
		return IHALA_EINVAL;
	}
	if ((err = queue_key(r->s, referral_id, 0, kbuf, &k)) < 0) {
		return err;
	}
	plen = k.mv_size - LOGDB_SEQ_LEN; /* id + NUL: the prefix of this referral's items */
	if ((rc = mdb_cursor_open(r->lt.txn, r->s->dbi.referral, &cur)) != 0) {
		return store_err(r->s, rc, "opening a history cursor");
	}
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	err = 0;
	while (rc == 0) {
		if (k.mv_size != plen + LOGDB_SEQ_LEN || memcmp(k.mv_data, kbuf, plen) != 0) {
			break; /* past this referral's items */
		}
		err = cb(arg, be64dec((const uint8_t *)k.mv_data + plen), v.mv_data, v.mv_size);
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
		return store_err(r->s, rc, "reading a referral's history");
	}
	return 0;
}

/* ---- meta ---- */

static int
meta_reserved(const struct store *s, const char *key)
{
	if (strcmp(key, DBENV_META_VERSION) == 0 || strcmp(key, DBENV_META_CREATED) == 0 ||
	    strncmp(key, LOGDB_QCOUNT_PREFIX, strlen(LOGDB_QCOUNT_PREFIX)) == 0) {
		log_warnx("store %s: meta key '%s' belongs to the store (a bug)", s->db.dir, key);
		return 1;
	}
	return 0;
}

int
store_meta_put(struct store_wtxn *w, const char *key, const void *val, size_t len)
{
	return str_put(w, w != NULL ? w->r.s->dbi.meta : 0, key, val, len, 1,
	               "storing a meta value");
}

int
store_meta_get(struct store_rtxn *r, const char *key, const void **val, size_t *len)
{
	return str_get(r, r != NULL ? r->s->dbi.meta : 0, key, val, len, "reading a meta value");
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
	rc = mdb_del(w->r.lt.txn, w->r.s->dbi.meta, &k, NULL);
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
	if ((rc = mdb_cursor_open(r->lt.txn, r->s->dbi.meta, &cur)) != 0) {
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

/* ---- children: parent referral id "\0" child referral id -> "" ---- */

static int
child_key(const struct store *s, const char *parent, const char *child, uint8_t *buf, MDB_val *k)
{
	size_t n, m = child != NULL ? strlen(child) : 0;
	int err;

	if ((err = id_len(s, parent, 1 + m, &n)) < 0) {
		return err;
	}
	memcpy(buf, parent, n);
	buf[n] = '\0';
	if (m > 0) {
		memcpy(buf + n + 1, child, m);
	}
	k->mv_data = buf;
	k->mv_size = n + 1 + m;
	return 0;
}

int
store_child_put(struct store_wtxn *w, const char *parent, const char *child)
{
	uint8_t kbuf[1024];
	MDB_val k, v = {0, ""};
	int rc, err;

	if ((err = wcheck(w)) < 0) {
		return err;
	}
	if (w->r.s->db.maxkey > sizeof(kbuf) || child == NULL || child[0] == '\0') {
		return IHALA_EINVAL;
	}
	if ((err = child_key(w->r.s, parent, child, kbuf, &k)) < 0) {
		return err;
	}
	if ((rc = store_put(w->r.s, w->r.lt.txn, w->r.s->dbi.children, &k, &v, 0)) != 0) {
		return wfail(w, rc, "storing an onward referral");
	}
	return 0;
}

int
store_children_iter(struct store_rtxn *r, const char *parent, store_child_cb cb, void *arg)
{
	uint8_t kbuf[1024];
	char child[1024];
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	size_t plen;
	int rc, err;

	if ((err = rcheck(r)) < 0) {
		return err;
	}
	if (cb == NULL || r->s->db.maxkey > sizeof(kbuf)) {
		return IHALA_EINVAL;
	}
	if ((err = child_key(r->s, parent, NULL, kbuf, &k)) < 0) {
		return err;
	}
	plen = k.mv_size; /* parent + NUL */
	if ((rc = mdb_cursor_open(r->lt.txn, r->s->dbi.children, &cur)) != 0) {
		return store_err(r->s, rc, "opening a cursor on onward referrals");
	}
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	err = 0;
	while (rc == 0) {
		if (k.mv_size <= plen || memcmp(k.mv_data, kbuf, plen) != 0) {
			break; /* past this parent's children */
		}
		if (k.mv_size - plen >= sizeof(child)) {
			err = IHALA_ESTORE;
			break;
		}
		memcpy(child, (const uint8_t *)k.mv_data + plen, k.mv_size - plen);
		child[k.mv_size - plen] = '\0';
		err = cb(arg, child);
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
		return store_err(r->s, rc, "reading onward referrals");
	}
	return 0;
}
