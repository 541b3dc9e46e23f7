/* logdb_test.c - unit tests of proto/logdb.c (the broker store's format, read-only) and
 * proto/dbenv.c. */
#define _GNU_SOURCE /* nftw */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dbenv.h"
#include "endian.h"
#include "error.h"
#include "localstore.h"
#include "log.h"
#include "logdb.h"
#include "store.h"

static char root[64];

static const char *
tpath(const char *name)
{
	static char buf[8][256];
	static int next;
	char *p = buf[next++ % 8];

	snprintf(p, sizeof(buf[0]), "%s/%s", root, name);
	return p;
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
group_setup(void **state)
{
	(void)state;
	log_setlevel(LOG_LEVEL_ERROR); /* the refusals below warn on purpose */
	snprintf(root, sizeof(root), "/tmp/logdb_test.XXXXXX");
	return mkdtemp(root) != NULL ? 0 : -1;
}

static int
group_teardown(void **state)
{
	(void)state;
	return nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void
hash_of(unsigned level, uint64_t index, uint8_t h[LOGDB_HASH_LEN])
{
	memset(h, 0, LOGDB_HASH_LEN);
	h[0] = (uint8_t)level;
	be64enc(h + 1, index);
	h[31] = 0xa5;
}

/*
 * A broker store written by the broker's own code: entries "entry-1" .. "entry-<n>", a leaf
 * node per entry plus the level-1 node (0), and checkpoints at sizes 2 and n. The broker
 * keeps the store open (and locked) when `keep` is not NULL.
 */
static void
make_store(const char *dir, int n, struct store **keep)
{
	struct store *s = NULL;
	struct store_wtxn *w;
	uint8_t h[LOGDB_HASH_LEN];
	char buf[64];
	uint64_t seq;
	int i;

	assert_int_equal(store_open(dir, 0, 0, &s), 0);
	assert_int_equal(store_wbegin(s, &w), 0);
	for (i = 1; i <= n; i++) {
		snprintf(buf, sizeof(buf), "entry-%d", i);
		assert_int_equal(store_log_append(w, buf, strlen(buf), &seq), 0);
		hash_of(0, (uint64_t)i - 1, h);
		assert_int_equal(store_tree_put(w, 0, (uint64_t)i - 1, h), 0);
	}
	hash_of(1, 0, h);
	assert_int_equal(store_tree_put(w, 1, 0, h), 0);
	assert_int_equal(store_checkpoint_put(w, 2, "ck two\n"), 0);
	snprintf(buf, sizeof(buf), "ck %d\n", n);
	assert_int_equal(store_checkpoint_put(w, (uint64_t)n, buf), 0);
	assert_int_equal(store_wcommit(w), 0);
	if (keep != NULL) {
		*keep = s;
	} else {
		store_close(s);
	}
}

static struct logdb *
open_ok(const char *dir)
{
	struct logdb *db = NULL;

	assert_int_equal(logdb_open(dir, &db), 0);
	assert_non_null(db);
	return db;
}

/* ---- read-only open ---- */

static void
test_open_refusals(void **state)
{
	struct logdb *db = (struct logdb *)1;
	struct localstore *ls;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi meta;
	MDB_val k, v;

	(void)state;
	assert_int_equal(logdb_open(NULL, &db), IHALA_EINVAL);
	assert_int_equal(logdb_open("", &db), IHALA_EINVAL);
	assert_int_equal(logdb_open(tpath("missing"), &db), IHALA_EIO);
	assert_null(db);
	/* nothing was created by the refusal */
	assert_int_equal(access(tpath("missing"), F_OK), -1);

	/* a directory without a store */
	assert_int_equal(mkdir(tpath("nostore"), 0700), 0);
	assert_int_equal(logdb_open(tpath("nostore"), &db), IHALA_ESTORE);
	assert_int_equal(access(tpath("nostore/data.mdb"), F_OK), -1);

	/* an LMDB environment with nothing in it */
	assert_int_equal(mkdir(tpath("emptyenv"), 0700), 0);
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_open(env, tpath("emptyenv"), 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	assert_int_equal(logdb_open(tpath("emptyenv"), &db), IHALA_ENOTFOUND);

	/* a client's local store is not a broker store */
	assert_int_equal(localstore_open(tpath("client"), &ls), 0);
	localstore_close(ls);
	assert_int_equal(logdb_open(tpath("client"), &db), IHALA_ESTORE);

	/* a broker store of another format version: refused, untouched */
	make_store(tpath("v2"), 3, NULL);
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
	assert_int_equal(mdb_env_open(env, tpath("v2"), 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
	k.mv_data = "format_version";
	k.mv_size = strlen("format_version");
	v.mv_data = "3";
	v.mv_size = 1;
	assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	assert_int_equal(logdb_open(tpath("v2"), &db), IHALA_EVERSION);
	assert_null(db);
}

/* An auditor or a backup reads a live store: no lock is taken, the broker keeps its own. */
static void
test_open_live_no_lock(void **state)
{
	struct store *s, *s2 = NULL;
	struct logdb *db;
	struct logdb_txn t;
	uint64_t last;

	(void)state;
	make_store(tpath("live"), 5, &s);
	db = open_ok(tpath("live"));
	assert_int_equal(logdb_begin(db, &t), 0);
	assert_int_equal(logdb_log_last(&t, &last), 0);
	assert_int_equal(last, 5);
	logdb_end(&t);
	/* the broker's lock is still its own: a second writer is refused */
	assert_int_equal(store_open(tpath("live"), 0, 0, &s2), IHALA_ESTORE);
	logdb_close(db);
	store_close(s);

	/* a read-only open of a store nobody holds creates no lock file */
	assert_int_equal(unlink(tpath("live/ihala.lock")), 0);
	db = open_ok(tpath("live"));
	logdb_close(db);
	assert_int_equal(access(tpath("live/ihala.lock"), F_OK), -1);
	logdb_close(NULL);
}

/* ---- log ---- */

static void
test_log(void **state)
{
	struct logdb *db;
	struct logdb_txn t;
	static const uint64_t froms[] = {0, 1, 13};
	struct logdb_log_iter it;
	const void *data;
	char want[32];
	uint64_t seq, last, expect;
	size_t len, i;
	int rc;

	(void)state;
	make_store(tpath("log"), 20, NULL);
	db = open_ok(tpath("log"));
	assert_int_equal(logdb_begin(db, &t), 0);
	assert_int_equal(logdb_log_last(&t, &last), 0);
	assert_int_equal(last, 20);
	assert_int_equal(logdb_log_get(&t, 7, &data, &len), 0);
	assert_int_equal(len, strlen("entry-7"));
	assert_memory_equal(data, "entry-7", len);
	assert_int_equal(logdb_log_get(&t, 0, &data, &len), IHALA_ENOTFOUND);
	assert_int_equal(logdb_log_get(&t, 21, &data, &len), IHALA_ENOTFOUND);
	assert_int_equal(logdb_log_get(&t, 1, NULL, &len), IHALA_EINVAL);

	/* from the start (0 and 1 alike), then from the middle; in seq order */
	for (i = 0; i < sizeof(froms) / sizeof(froms[0]); i++) {
		assert_int_equal(logdb_log_iter_begin(&t, froms[i], &it), 0);
		expect = froms[i] == 0 ? 1 : froms[i];
		while ((rc = logdb_log_iter_next(&it, &seq, &data, &len)) == 0) {
			snprintf(want, sizeof(want), "entry-%llu", (unsigned long long)seq);
			assert_int_equal(seq, expect);
			assert_int_equal(len, strlen(want));
			assert_memory_equal(data, want, len);
			expect++;
		}
		assert_int_equal(rc, IHALA_ENOTFOUND);
		assert_int_equal(expect, 21);
		logdb_log_iter_end(&it);
		logdb_log_iter_end(&it); /* ending twice is harmless */
	}
	assert_int_equal(logdb_log_iter_next(&it, &seq, &data, &len), IHALA_EINVAL);
	logdb_end(&t);
	logdb_end(&t);
	logdb_close(db);
}

/* ---- tree ---- */

static void
test_tree(void **state)
{
	uint8_t h[LOGDB_HASH_LEN], want[LOGDB_HASH_LEN], kbuf[LOGDB_TREE_KEY_LEN];
	struct logdb *db;
	struct logdb_txn t;
	MDB_val k;

	(void)state;
	/* the key: one byte of level, the index big-endian */
	assert_int_equal(logdb_tree_key(3, 0x0102030405060708ULL, kbuf, &k), 0);
	assert_int_equal(k.mv_size, 9);
	assert_memory_equal(k.mv_data, "\x03\x01\x02\x03\x04\x05\x06\x07\x08", 9);
	assert_int_equal(logdb_tree_key(64, 0, kbuf, &k), IHALA_EINVAL);

	make_store(tpath("tree"), 4, NULL);
	db = open_ok(tpath("tree"));
	assert_int_equal(logdb_begin(db, &t), 0);
	assert_int_equal(logdb_tree_get(&t, 0, 3, h), 0);
	hash_of(0, 3, want);
	assert_memory_equal(h, want, LOGDB_HASH_LEN);
	assert_int_equal(logdb_tree_node(&t, 1, 0, h), 0);
	hash_of(1, 0, want);
	assert_memory_equal(h, want, LOGDB_HASH_LEN);
	assert_int_equal(logdb_tree_get(&t, 0, 4, h), IHALA_ENOTFOUND);
	assert_int_equal(logdb_tree_get(&t, 64, 0, h), IHALA_EINVAL);
	logdb_end(&t);
	logdb_close(db);
}

/* Postorder positions: each leaf, then the subtrees it completes (C2SP tlog's stored hash
 * index); nodes beyond MERKLE_MAX_SIZE leaves have none. */
static void
test_node_pos(void **state)
{
	static const struct {
		unsigned level;
		uint64_t index, pos;
	} want[] = {
	    {0, 0, 0},  {0, 1, 1},  {1, 0, 2},  {0, 2, 3},  {0, 3, 4},  {1, 1, 5},
	    {2, 0, 6},  {0, 4, 7},  {0, 5, 8},  {1, 2, 9},  {0, 6, 10}, {0, 7, 11},
	    {1, 3, 12}, {2, 1, 13}, {3, 0, 14}, {0, 8, 15}, {4, 0, 30},
	};
	uint64_t pos, prev = 0, n, i;
	unsigned level;

	(void)state;
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(logdb_node_pos(want[i].level, want[i].index, &pos), 0);
		assert_int_equal(pos, want[i].pos);
	}
	/* the order merkle_append puts nodes in (leaf n, then level 1 .. trailing ones of n)
	 * is strictly increasing, with no gap: appends go at the end of "node" */
	for (n = 0; n < 4096; n++) {
		for (level = 0; level == 0 || (n >> (level - 1) & 1); level++) {
			assert_int_equal(logdb_node_pos(level, n >> level, &pos), 0);
			assert_int_equal(pos, n == 0 && level == 0 ? 0 : prev + 1);
			prev = pos;
		}
	}
	/* the last leaf and the largest subtree a log can hold, and past them */
	assert_int_equal(logdb_node_pos(0, MERKLE_MAX_SIZE - 1, &pos), 0);
	assert_int_equal(logdb_node_pos(0, MERKLE_MAX_SIZE, &pos), IHALA_ETOOLARGE);
	assert_int_equal(logdb_node_pos(62, 0, &pos), 0);
	assert_int_equal(logdb_node_pos(62, 1, &pos), IHALA_ETOOLARGE);
	assert_int_equal(logdb_node_pos(63, 0, &pos), IHALA_ETOOLARGE);
	assert_int_equal(logdb_node_pos(1, UINT64_MAX, &pos), IHALA_ETOOLARGE);
}

/* Rewrite the store in `dir` as a release before "node" wrote it: every node moved to "tree"
 * under its level || index key, "node" deleted. */
static void
to_old_layout(const char *dir)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi node, tree;
	MDB_cursor *cur;
	MDB_val k, v, tk;
	uint8_t kbuf[LOGDB_TREE_KEY_LEN];
	uint64_t pos, p;
	unsigned level;
	uint64_t index;
	int rc, found;

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
	assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "node", 0, &node), 0);
	assert_int_equal(mdb_dbi_open(txn, "tree", 0, &tree), 0);
	assert_int_equal(mdb_cursor_open(txn, node, &cur), 0);
	while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		assert_int_equal(k.mv_size, 8);
		pos = be64dec(k.mv_data);
		found = 0;
		for (level = 0; level < 8 && !found; level++) {
			for (index = 0; index < 64 && !found; index++) {
				found = logdb_node_pos(level, index, &p) == 0 && p == pos;
			}
		}
		assert_true(found);
		assert_int_equal(logdb_tree_key(level - 1, index - 1, kbuf, &tk), 0);
		assert_int_equal(mdb_put(txn, tree, &tk, &v, 0), 0);
	}
	assert_int_equal(rc, MDB_NOTFOUND);
	mdb_cursor_close(cur);
	assert_int_equal(mdb_drop(txn, node, 1), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

/* A store written before "node" is read through "tree" (read-only, where "node" is not made);
 * the broker opening it makes "node" and puts new nodes there, reads both, and still refuses
 * to rewrite an older node. */
static void
test_tree_old_layout(void **state)
{
	uint8_t h[LOGDB_HASH_LEN], want[LOGDB_HASH_LEN];
	struct logdb *db;
	struct logdb_txn t;
	struct store *s;
	struct store_wtxn *w;
	struct store_rtxn *r;

	(void)state;
	make_store(tpath("old"), 4, NULL);
	to_old_layout(tpath("old"));

	db = open_ok(tpath("old"));
	assert_int_equal(logdb_begin(db, &t), 0);
	assert_int_equal(logdb_tree_get(&t, 0, 3, h), 0);
	hash_of(0, 3, want);
	assert_memory_equal(h, want, LOGDB_HASH_LEN);
	assert_int_equal(logdb_tree_get(&t, 1, 0, h), 0);
	hash_of(1, 0, want);
	assert_memory_equal(h, want, LOGDB_HASH_LEN);
	assert_int_equal(logdb_tree_get(&t, 0, 4, h), IHALA_ENOTFOUND);
	logdb_end(&t);
	logdb_close(db);

	assert_int_equal(store_open(tpath("old"), 0, 0, &s), 0);
	assert_int_equal(store_wbegin(s, &w), 0);
	hash_of(1, 1, h);
	assert_int_equal(store_tree_put(w, 1, 1, h), 0);
	hash_of(2, 0, h);
	assert_int_equal(store_tree_put(w, 2, 0, h), 0);
	hash_of(0, 3, h); /* another hash for an older node: refused; the same again: fine */
	h[5] ^= 1;
	assert_int_equal(store_tree_put(w, 0, 3, h), IHALA_EINCONSISTENT);
	h[5] ^= 1;
	assert_int_equal(store_tree_put(w, 0, 3, h), 0);
	assert_int_equal(store_wcommit(w), 0);
	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_tree_get(r, 0, 2, h), 0); /* "tree" */
	hash_of(0, 2, want);
	assert_memory_equal(h, want, LOGDB_HASH_LEN);
	assert_int_equal(store_tree_get(r, 2, 0, h), 0); /* "node" */
	hash_of(2, 0, want);
	assert_memory_equal(h, want, LOGDB_HASH_LEN);
	store_rend(r);
	store_close(s);

	db = open_ok(tpath("old"));
	assert_int_equal(logdb_begin(db, &t), 0);
	assert_int_equal(logdb_tree_get(&t, 1, 1, h), 0);
	hash_of(1, 1, want);
	assert_memory_equal(h, want, LOGDB_HASH_LEN);
	assert_int_equal(logdb_tree_get(&t, 0, 0, h), 0);
	hash_of(0, 0, want);
	assert_memory_equal(h, want, LOGDB_HASH_LEN);
	logdb_end(&t);
	logdb_close(db);
}

/* ---- checkpoints ---- */

struct seen {
	uint64_t sizes[8];
	int n;
	int stop_at; /* return this from the call number stop_at (1-based), 0: never */
	int ret;
};

static int
collect(void *arg, uint64_t size, const char *text, size_t len)
{
	struct seen *s = arg;

	assert_true(len > 0 && text[len - 1] == '\n');
	s->sizes[s->n++] = size;
	return s->n == s->stop_at ? s->ret : 0;
}

static void
test_checkpoints(void **state)
{
	struct seen seen;
	struct logdb *db;
	struct logdb_txn t;
	uint64_t size;
	char *text;

	(void)state;
	make_store(tpath("ck"), 9, NULL);
	db = open_ok(tpath("ck"));
	assert_int_equal(logdb_begin(db, &t), 0);
	assert_int_equal(logdb_checkpoint_get(&t, 2, &text), 0);
	assert_string_equal(text, "ck two\n");
	free(text);
	assert_int_equal(logdb_checkpoint_get(&t, 3, &text), IHALA_ENOTFOUND);
	assert_int_equal(logdb_checkpoint_latest(&t, &size, &text), 0);
	assert_int_equal(size, 9);
	assert_string_equal(text, "ck 9\n");
	free(text);

	memset(&seen, 0, sizeof(seen));
	assert_int_equal(logdb_checkpoint_iter(&t, 0, collect, &seen), 0);
	assert_int_equal(seen.n, 2);
	assert_int_equal(seen.sizes[0], 2);
	assert_int_equal(seen.sizes[1], 9);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(logdb_checkpoint_iter(&t, 3, collect, &seen), 0);
	assert_int_equal(seen.n, 1);
	assert_int_equal(seen.sizes[0], 9);
	/* > 0 stops with 0, < 0 stops with that code */
	memset(&seen, 0, sizeof(seen));
	seen.stop_at = 1;
	seen.ret = 1;
	assert_int_equal(logdb_checkpoint_iter(&t, 0, collect, &seen), 0);
	assert_int_equal(seen.n, 1);
	memset(&seen, 0, sizeof(seen));
	seen.stop_at = 1;
	seen.ret = IHALA_ENOMEM;
	assert_int_equal(logdb_checkpoint_iter(&t, 0, collect, &seen), IHALA_ENOMEM);
	assert_int_equal(seen.n, 1);
	logdb_end(&t);
	logdb_close(db);
}

/* ---- the bytes on disk: what an older broker wrote must still read ---- */

static void
test_format_bytes(void **state)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k, v;
	size_t seq = 3;
	uint8_t kb[9];

	(void)state;
	make_store(tpath("bytes"), 3, NULL);
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
	assert_int_equal(mdb_env_open(env, tpath("bytes"), MDB_RDONLY, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);

	assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
	k.mv_data = "format_version";
	k.mv_size = strlen("format_version");
	assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
	assert_int_equal(v.mv_size, 1);
	assert_memory_equal(v.mv_data, "2", 1);
	k.mv_data = "created";
	k.mv_size = strlen("created");
	assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
	assert_int_equal(v.mv_size, strlen("2026-01-01T00:00:00Z"));
	k.mv_data = "kind"; /* the broker store has none; a client store says "client" */
	k.mv_size = strlen("kind");
	assert_int_equal(mdb_get(txn, dbi, &k, &v), MDB_NOTFOUND);

	/* log: native size_t keys (MDB_INTEGERKEY) */
	assert_int_equal(mdb_dbi_open(txn, "log", MDB_INTEGERKEY, &dbi), 0);
	k.mv_data = &seq;
	k.mv_size = sizeof(seq);
	assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
	assert_int_equal(v.mv_size, strlen("entry-3"));
	assert_memory_equal(v.mv_data, "entry-3", v.mv_size);

	/* node: big-endian postorder position -> 32 bytes (leaf 2 is position 3); "tree", the
	 * level byte + big-endian index layout of stores written before, holds none */
	assert_int_equal(mdb_dbi_open(txn, "node", 0, &dbi), 0);
	be64enc(kb, 3);
	k.mv_data = kb;
	k.mv_size = 8;
	assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
	assert_int_equal(v.mv_size, 32);
	assert_int_equal(((const uint8_t *)v.mv_data)[0], 0);
	assert_int_equal(be64dec((const uint8_t *)v.mv_data + 1), 2);
	assert_int_equal(mdb_dbi_open(txn, "tree", 0, &dbi), 0);
	kb[0] = 0;
	be64enc(kb + 1, 2);
	k.mv_size = 9;
	assert_int_equal(mdb_get(txn, dbi, &k, &v), MDB_NOTFOUND);

	/* checkpoint: big-endian size -> note text, no NUL */
	assert_int_equal(mdb_dbi_open(txn, "checkpoint", 0, &dbi), 0);
	be64enc(kb, 2);
	k.mv_data = kb;
	k.mv_size = 8;
	assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
	assert_int_equal(v.mv_size, strlen("ck two\n"));
	assert_memory_equal(v.mv_data, "ck two\n", v.mv_size);
	mdb_txn_abort(txn);
	mdb_env_close(env);
}

/* ---- stat and backup ---- */

static void
test_stat_backup(void **state)
{
	struct logdb_stats st;
	struct logdb *db, *copy;
	struct logdb_txn t;
	char bak[256];

	(void)state;
	make_store(tpath("sb"), 6, NULL);
	db = open_ok(tpath("sb"));
	assert_int_equal(logdb_begin(db, &t), 0);
	assert_int_equal(logdb_stat(&t, &st), 0);
	assert_int_equal(st.entries, 6);
	assert_int_equal(st.last_seq, 6);
	assert_true(st.page_size > 0 && st.used_bytes > 0 && st.map_size >= st.used_bytes);
	logdb_end(&t);

	snprintf(bak, sizeof(bak), "%s", tpath("sb-backup"));
	assert_int_equal(logdb_backup(db, bak), 0);
	/* an existing copy is never overwritten */
	assert_int_equal(logdb_backup(db, bak), IHALA_EIO);
	logdb_close(db);

	copy = open_ok(bak);
	assert_int_equal(logdb_begin(copy, &t), 0);
	assert_int_equal(logdb_stat(&t, &st), 0);
	assert_int_equal(st.entries, 6);
	assert_int_equal(st.last_seq, 6);
	logdb_end(&t);
	logdb_close(copy);
}

/* ---- dbenv ---- */

static void
test_dbenv_err(void **state)
{
	static const int lmdb_codes[] = {MDB_KEYEXIST, MDB_CORRUPTED, MDB_BAD_TXN};
	struct dbenv e;
	size_t i;

	(void)state;
	memset(&e, 0, sizeof(e));
	e.who = "test store";
	e.dir = "/nowhere";
	assert_int_equal(dbenv_err(&e, 0, "x"), 0);
	assert_int_equal(dbenv_err(&e, MDB_NOTFOUND, "x"), IHALA_ENOTFOUND);
	assert_int_equal(e.map_full, 0);
	assert_int_equal(dbenv_err(&e, MDB_MAP_FULL, "x"), IHALA_ESTOREFULL);
	assert_int_equal(e.map_full, 1);
	assert_int_equal(dbenv_err(&e, MDB_TXN_FULL, "x"), IHALA_EAGAIN);
	assert_int_equal(dbenv_err(&e, ENOMEM, "x"), IHALA_ENOMEM);
	assert_int_equal(dbenv_err(&e, MDB_MAP_RESIZED, "x"), IHALA_ESTORE);
	/* A failing disk is not a store error to retry: the writer stops on it (ledger.c). */
	assert_int_equal(dbenv_err(&e, EIO, "x"), IHALA_EIO);
	/* A full file system: a code of its own (a node exits 6; the broker refuses with
	 * STORE_FULL), not the full map's: growing the map would not help. */
	e.map_full = 0;
	assert_int_equal(dbenv_err(&e, ENOSPC, "x"), IHALA_ENOSPACE);
	assert_int_equal(e.map_full, 0);
	for (i = 0; i < sizeof(lmdb_codes) / sizeof(lmdb_codes[0]); i++) {
		assert_int_equal(dbenv_err(&e, lmdb_codes[i], "x"), IHALA_ESTORE);
	}
	assert_int_equal(dbenv_damaged(&e, "thing"), IHALA_ESTORE);
}

static void
test_dbenv_kv(void **state)
{
	const struct dbenv_opts o = {
	    .mode = DATADIR_CREATE,
	    .lockfile = "test.lock",
	    .flags = MDB_NOTLS,
	    .maxdbs = 4,
	    .mapsize = (size_t)1 << 20,
	};
	const struct dbenv_format f = {7, "test", "test store", "use another dir"};
	struct dbenv e, e2;
	char *big, *text;
	MDB_txn *txn;
	MDB_dbi meta;
	MDB_val k, v;
	int fresh;

	(void)state;
	assert_int_equal(dbenv_open(&e, "test store", tpath("kv"), &o), 0);
	/* one process at a time: the second opener is told the lock is held */
	assert_int_equal(dbenv_open(&e2, "test store", tpath("kv"), &o), IHALA_EAGAIN);
	assert_null(e2.env);
	assert_int_equal(e2.lockfd, -1);

	/* a new store: no meta, created and its records written */
	assert_int_equal(dbenv_begin(&e, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(dbenv_format_open(&e, txn, &f, 0, &meta, &fresh), IHALA_ENOTFOUND);
	mdb_txn_abort(txn);
	assert_int_equal(dbenv_begin(&e, NULL, 0, &txn), 0);
	assert_int_equal(dbenv_format_open(&e, txn, &f, 1, &meta, &fresh), 0);
	assert_int_equal(fresh, 1);
	assert_int_equal(dbenv_format_init(&e, txn, meta, &f), 0);

	/* string keys: checked, values copied in and out */
	assert_int_equal(dbenv_key(&e, "", &k), IHALA_EINVAL);
	assert_int_equal(dbenv_key(&e, NULL, &k), IHALA_EINVAL);
	big = malloc(e.maxkey + 2);
	assert_non_null(big);
	memset(big, 'k', e.maxkey + 1);
	big[e.maxkey + 1] = '\0';
	assert_int_equal(dbenv_put(&e, txn, meta, big, "v", 1, 0, "x"), IHALA_ETOOLARGE);
	big[e.maxkey] = '\0';
	assert_int_equal(dbenv_put(&e, txn, meta, big, "v", 1, 0, "x"), 0);
	free(big);
	assert_int_equal(dbenv_put(&e, txn, meta, "k", NULL, 1, 0, "x"), IHALA_EINVAL);
	assert_int_equal(dbenv_put(&e, txn, meta, "k", "value", 5, 0, "x"), 0);
	assert_int_equal(dbenv_put(&e, txn, meta, "k", "other", 5, MDB_NOOVERWRITE, "x"),
	                 IHALA_ESTORE);
	assert_int_equal(dbenv_commit(&e, txn, "x"), 0);

	assert_int_equal(dbenv_begin(&e, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(dbenv_format_open(&e, txn, &f, 0, &meta, &fresh), 0);
	assert_int_equal(fresh, 0);
	assert_int_equal(dbenv_get(&e, txn, meta, "k", &v, "x"), 0);
	assert_int_equal(dbenv_copy_text(&v, &text), 0);
	assert_string_equal(text, "value");
	free(text);
	assert_int_equal(dbenv_get(&e, txn, meta, "absent", &v, "x"), IHALA_ENOTFOUND);
	assert_int_equal(dbenv_get(&e, txn, meta, "kind", &v, "x"), 0);
	assert_int_equal(v.mv_size, 4);
	assert_memory_equal(v.mv_data, "test", 4);
	assert_int_equal(dbenv_get(&e, txn, meta, "format_version", &v, "x"), 0);
	assert_int_equal(v.mv_size, 1);
	assert_memory_equal(v.mv_data, "7", 1);
	mdb_txn_abort(txn);
	dbenv_close(&e);
	dbenv_close(&e); /* released twice is harmless */

	/* another kind or version is refused */
	{
		const struct dbenv_format other_kind = {7, "else", "test store", "x"};
		const struct dbenv_format other_version = {8, "test", "test store", "x"};

		assert_int_equal(dbenv_open(&e, "test store", tpath("kv"), &o), 0);
		assert_int_equal(dbenv_begin(&e, NULL, MDB_RDONLY, &txn), 0);
		assert_int_equal(dbenv_format_open(&e, txn, &other_kind, 0, &meta, &fresh),
		                 IHALA_EVERSION);
		assert_int_equal(dbenv_format_open(&e, txn, &other_version, 0, &meta, &fresh),
		                 IHALA_EVERSION);
		mdb_txn_abort(txn);
		dbenv_close(&e);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_open_refusals), cmocka_unit_test(test_open_live_no_lock),
	    cmocka_unit_test(test_log),           cmocka_unit_test(test_tree),
	    cmocka_unit_test(test_node_pos),      cmocka_unit_test(test_tree_old_layout),
	    cmocka_unit_test(test_checkpoints),   cmocka_unit_test(test_format_bytes),
	    cmocka_unit_test(test_stat_backup),   cmocka_unit_test(test_dbenv_err),
	    cmocka_unit_test(test_dbenv_kv),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
