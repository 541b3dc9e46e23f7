/* store_test.c - unit tests of broker/store.c against real LMDB files in a temporary directory. */
#define _GNU_SOURCE /* nftw */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "store.h"

static char root[64];

/* A fresh path under the test's temporary root; static storage, one per name. */
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
	snprintf(root, sizeof(root), "/tmp/store_test.XXXXXX");
	return mkdtemp(root) != NULL ? 0 : -1;
}

static int
group_teardown(void **state)
{
	(void)state;
	return nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static struct store *
open_ok(const char *dir, size_t mapsize, unsigned flags)
{
	struct store *s = NULL;

	assert_int_equal(store_open(dir, mapsize, flags, &s), 0);
	assert_non_null(s);
	return s;
}

/* Append `n` entries "entry-<i>" (i from `first`) in one batch. */
static void
append_n(struct store *s, int first, int n)
{
	struct store_wtxn *w;
	char buf[64];
	uint64_t seq;
	int i;

	assert_int_equal(store_wbegin(s, &w), 0);
	for (i = first; i < first + n; i++) {
		snprintf(buf, sizeof(buf), "entry-%d", i);
		assert_int_equal(store_log_append(w, buf, strlen(buf), &seq), 0);
		assert_int_equal(seq, (uint64_t)i);
	}
	assert_int_equal(store_wcommit(w), 0);
}

static void
assert_entry(struct store_rtxn *r, uint64_t seq)
{
	char want[64];
	const void *data;
	size_t len;

	snprintf(want, sizeof(want), "entry-%llu", (unsigned long long)seq);
	assert_int_equal(store_log_get(r, seq, &data, &len), 0);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(data, want, len);
}

/* LMDB forbids using an environment across fork(): in the child every use is refused, in
 * the parent the store goes on. */
static void
test_refused_after_fork(void **state)
{
	struct store *s = open_ok(tpath("fork"), 0, 0);
	struct store_rtxn *r = NULL;
	int status = -1;
	pid_t pid;

	(void)state;
	append_n(s, 1, 1);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store_wtxn *w = NULL;
		int ok = store_rbegin(s, &r) == IHALA_EINVAL && r == NULL &&
		         store_wbegin(s, &w) == IHALA_EINVAL && w == NULL;

		_exit(ok ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(store_rbegin(s, &r), 0);
	assert_entry(r, 1);
	store_rend(r);
	store_close(s);
}

/* ---- log ---- */

static void
test_append_get_order(void **state)
{
	struct store *s = open_ok(tpath("order"), 0, 0);
	struct store_log_iter *it;
	struct store_rtxn *r;
	struct store_wtxn *w;
	const void *data;
	size_t len;
	uint64_t seq, last, expect;
	int rc;

	(void)state;
	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_log_last(r, &last), 0);
	assert_int_equal(last, 0);
	assert_int_equal(store_log_get(r, 1, &data, &len), IHALA_ENOTFOUND);
	store_rend(r);

	append_n(s, 1, 100);

	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_log_last(r, &last), 0);
	assert_int_equal(last, 100);
	for (seq = 1; seq <= 100; seq++) {
		assert_entry(r, seq);
	}
	assert_int_equal(store_log_get(r, 0, &data, &len), IHALA_ENOTFOUND);
	assert_int_equal(store_log_get(r, 101, &data, &len), IHALA_ENOTFOUND);

	/* From the start, then from the middle; seq order either way. */
	assert_int_equal(store_log_iter_begin(r, 0, &it), 0);
	expect = 1;
	while ((rc = store_log_iter_next(it, &seq, &data, &len)) == 0) {
		assert_int_equal(seq, expect);
		expect++;
	}
	assert_int_equal(rc, IHALA_ENOTFOUND);
	assert_int_equal(expect, 101);
	store_log_iter_end(it);
	assert_int_equal(store_log_iter_begin(r, 60, &it), 0);
	assert_int_equal(store_log_iter_next(it, &seq, &data, &len), 0);
	assert_int_equal(seq, 60);
	assert_int_equal(store_log_iter_next(it, &seq, &data, &len), 0);
	assert_int_equal(seq, 61);
	store_log_iter_end(it);
	assert_int_equal(store_log_iter_begin(r, 101, &it), 0);
	assert_int_equal(store_log_iter_next(it, &seq, &data, &len), IHALA_ENOTFOUND);
	store_log_iter_end(it);
	store_rend(r);

	/* Refusals: empty entries, NULL data. */
	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(store_log_append(w, "", 0, &seq), IHALA_EINVAL);
	assert_int_equal(store_log_append(w, NULL, 5, &seq), IHALA_EINVAL);
	/* A refused argument does not poison the batch. */
	assert_int_equal(store_log_append(w, "x", 1, &seq), 0);
	assert_int_equal(seq, 101);
	store_wabort(w);

	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_log_last(r, &last), 0);
	assert_int_equal(last, 100); /* the aborted append left nothing */
	store_rend(r);
	store_close(s);
}

static void
test_seqs_survive_reopen(void **state)
{
	const char *dir = tpath("reopen");
	struct store *s = open_ok(dir, 0, 0);
	struct store_rtxn *r;
	uint64_t last, seq;

	(void)state;
	append_n(s, 1, 3);
	store_close(s);

	s = open_ok(dir, 0, 0);
	append_n(s, 4, 2); /* asserts seqs 4 and 5 */
	store_close(s);

	s = open_ok(dir, 0, 0);
	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_log_last(r, &last), 0);
	assert_int_equal(last, 5);
	for (seq = 1; seq <= 5; seq++) {
		assert_entry(r, seq);
	}
	store_rend(r);
	store_close(s);
}

/* ---- snapshots and threads ---- */

struct rend_arg {
	struct store_rtxn *r;
	int delay_ms;
};

static void *
rend_thread(void *p)
{
	struct rend_arg *a = p;
	struct timespec ts = {0, (long)a->delay_ms * 1000000L};

	nanosleep(&ts, NULL);
	store_rend(a->r);
	return NULL;
}

static void
test_read_views(void **state)
{
	struct store *s = open_ok(tpath("views"), 0, 0);
	struct store_rtxn *r1, *r2;
	struct store_wtxn *w, *w2;
	struct rend_arg a;
	pthread_t th;
	uint64_t last;

	(void)state;
	append_n(s, 1, 2);

	/* Two read txns in one thread at once: only possible with MDB_NOTLS. */
	assert_int_equal(store_rbegin(s, &r1), 0);
	assert_int_equal(store_rbegin(s, &r2), 0);

	/* The batch's read view sees its own append, the snapshots do not. */
	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(store_wbegin(s, &w2), IHALA_EINVAL); /* one batch at a time */
	assert_int_equal(store_log_append(w, "entry-3", 7, NULL), 0);
	assert_int_equal(store_log_last(store_wread(w), &last), 0);
	assert_int_equal(last, 3);
	assert_int_equal(store_log_last(r1, &last), 0);
	assert_int_equal(last, 2);
	assert_int_equal(store_wcommit(w), 0);
	assert_int_equal(store_log_last(r2, &last), 0);
	assert_int_equal(last, 2); /* still its snapshot */
	store_rend(r2);

	/* A read txn begun here may be ended by another thread. */
	a.r = r1;
	a.delay_ms = 0;
	assert_int_equal(pthread_create(&th, NULL, rend_thread, &a), 0);
	assert_int_equal(pthread_join(th, NULL), 0);

	assert_int_equal(store_rbegin(s, &r1), 0);
	assert_int_equal(store_log_last(r1, &last), 0);
	assert_int_equal(last, 3);
	store_rend(r1);
	store_close(s);
}

/* ---- msgid ---- */

static void
test_msgid_dedup(void **state)
{
	const char *dir = tpath("msgid");
	struct store *s = open_ok(dir, 0, 0);
	struct store_rtxn *r;
	struct store_wtxn *w;
	char longid[600];
	uint64_t seq, got;

	(void)state;
	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(store_log_append(w, "e1", 2, &seq), 0);
	assert_int_equal(store_msgid_get(store_wread(w), "dma", "m-1", &got), IHALA_ENOTFOUND);
	assert_int_equal(store_msgid_put(w, "dma", "m-1", seq), 0);
	/* Visible inside the same batch, before any commit. */
	assert_int_equal(store_msgid_get(store_wread(w), "dma", "m-1", &got), 0);
	assert_int_equal(got, seq);
	/* Dedup is per sender: another agency may use the same id. */
	assert_int_equal(store_msgid_get(store_wread(w), "moh", "m-1", &got), IHALA_ENOTFOUND);
	assert_int_equal(store_log_append(w, "e2", 2, &seq), 0);
	assert_int_equal(store_msgid_put(w, "moh", "m-1", seq), 0);
	/* Same pair, same seq: idempotent; another seq: refused. */
	assert_int_equal(store_msgid_put(w, "moh", "m-1", seq), 0);
	assert_int_equal(store_msgid_put(w, "moh", "m-1", 1), IHALA_EMSGID);
	/* No seq from the future, no empty or oversized ids. */
	assert_int_equal(store_msgid_put(w, "dma", "m-2", 99), IHALA_EINVAL);
	assert_int_equal(store_msgid_put(w, "", "m-2", 1), IHALA_EINVAL);
	assert_int_equal(store_msgid_put(w, "dma", "", 1), IHALA_EINVAL);
	memset(longid, 'x', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	assert_int_equal(store_msgid_put(w, "dma", longid, 1), IHALA_ETOOLARGE);
	assert_int_equal(store_msgid_get(store_wread(w), "dma", longid, &got), IHALA_ETOOLARGE);
	assert_int_equal(store_wcommit(w), 0);

	/* An aborted batch records nothing. */
	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(store_log_append(w, "e3", 2, &seq), 0);
	assert_int_equal(store_msgid_put(w, "dma", "m-3", seq), 0);
	store_wabort(w);
	store_close(s);

	s = open_ok(dir, 0, 0);
	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_msgid_get(r, "dma", "m-1", &got), 0);
	assert_int_equal(got, 1);
	assert_int_equal(store_msgid_get(r, "moh", "m-1", &got), 0);
	assert_int_equal(got, 2);
	assert_int_equal(store_msgid_get(r, "dma", "m-3", &got), IHALA_ENOTFOUND);
	/* The NUL separator keeps ("dm", "a\0...") apart from ("dma", ...). */
	assert_int_equal(store_msgid_get(r, "dm", "a", &got), IHALA_ENOTFOUND);
	store_rend(r);
	store_close(s);
}

/* ---- queue ---- */

struct collect {
	uint64_t seqs[64];
	size_t n;
	size_t stop_after; /* 0: never */
	int fail;
};

static int
collect_cb(void *arg, uint64_t seq)
{
	struct collect *c = arg;

	if (c->fail) {
		return IHALA_EIO;
	}
	assert_true(c->n < 64);
	c->seqs[c->n++] = seq;
	return (c->stop_after != 0 && c->n == c->stop_after) ? 1 : 0;
}

static void
collect(struct store_rtxn *r, const char *agency, uint64_t from, struct collect *c)
{
	memset(c, 0, sizeof(*c));
	assert_int_equal(store_queue_iter(r, agency, from, collect_cb, c), 0);
}

static void
test_queue(void **state)
{
	const char *dir = tpath("queue");
	struct store *s = open_ok(dir, 0, 0);
	struct store_rtxn *r;
	struct store_wtxn *w;
	struct collect c;
	size_t n;

	(void)state;
	append_n(s, 1, 10);
	assert_int_equal(store_wbegin(s, &w), 0);
	/* Out of order on purpose; "mo" is a prefix of "moh". */
	assert_int_equal(store_queue_put(w, "moh", 7), 0);
	assert_int_equal(store_queue_put(w, "moh", 2), 0);
	assert_int_equal(store_queue_put(w, "moh", 9), 0);
	assert_int_equal(store_queue_put(w, "moh", 4), 0);
	assert_int_equal(store_queue_put(w, "mo", 3), 0);
	assert_int_equal(store_queue_put(w, "molsa", 5), 0);
	assert_int_equal(store_queue_put(w, "molsa", 1), 0);
	/* Refusals: twice the same, a seq not in the log, bad agency. */
	assert_int_equal(store_queue_put(w, "moh", 7), IHALA_EINVAL);
	assert_int_equal(store_queue_put(w, "moh", 11), IHALA_EINVAL);
	assert_int_equal(store_queue_put(w, "moh", 0), IHALA_EINVAL);
	assert_int_equal(store_queue_put(w, "", 1), IHALA_EINVAL);
	assert_int_equal(store_queue_put(w, NULL, 1), IHALA_EINVAL);
	/* Counters are visible inside the batch. */
	assert_int_equal(store_queue_count(store_wread(w), "moh", &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(store_wcommit(w), 0);

	assert_int_equal(store_rbegin(s, &r), 0);
	collect(r, "moh", 0, &c);
	assert_int_equal(c.n, 4);
	assert_int_equal(c.seqs[0], 2);
	assert_int_equal(c.seqs[1], 4);
	assert_int_equal(c.seqs[2], 7);
	assert_int_equal(c.seqs[3], 9);
	collect(r, "moh", 5, &c); /* from a seq that is not queued */
	assert_int_equal(c.n, 2);
	assert_int_equal(c.seqs[0], 7);
	assert_int_equal(c.seqs[1], 9);
	collect(r, "moh", 10, &c);
	assert_int_equal(c.n, 0);
	collect(r, "mo", 0, &c);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.seqs[0], 3);
	collect(r, "molsa", 0, &c);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.seqs[0], 1);
	assert_int_equal(c.seqs[1], 5);
	collect(r, "ngo", 0, &c);
	assert_int_equal(c.n, 0);
	/* The callback stops the walk (> 0) or fails it (< 0). */
	memset(&c, 0, sizeof(c));
	c.stop_after = 2;
	assert_int_equal(store_queue_iter(r, "moh", 0, collect_cb, &c), 0);
	assert_int_equal(c.n, 2);
	memset(&c, 0, sizeof(c));
	c.fail = 1;
	assert_int_equal(store_queue_iter(r, "moh", 0, collect_cb, &c), IHALA_EIO);
	assert_int_equal(store_queue_iter(r, "moh", 0, NULL, NULL), IHALA_EINVAL);

	assert_int_equal(store_queue_count(r, "moh", &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(store_queue_count(r, "mo", &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(store_queue_count(r, "molsa", &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(store_queue_count(r, "ngo", &n), 0);
	assert_int_equal(n, 0);
	store_rend(r);

	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(store_queue_del(w, "moh", 4), 0);
	assert_int_equal(store_queue_del(w, "moh", 4), IHALA_ENOTFOUND);
	assert_int_equal(store_queue_del(w, "mo", 2), IHALA_ENOTFOUND); /* moh's, not mo's */
	assert_int_equal(store_queue_del(w, "mo", 3), 0);
	assert_int_equal(store_wcommit(w), 0); /* ENOTFOUND did not poison it */
	store_close(s);

	s = open_ok(dir, 0, 0);
	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_queue_count(r, "moh", &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(store_queue_count(r, "mo", &n), 0);
	assert_int_equal(n, 0);
	collect(r, "moh", 0, &c);
	assert_int_equal(c.n, 3);
	assert_int_equal(c.seqs[0], 2);
	assert_int_equal(c.seqs[1], 7);
	assert_int_equal(c.seqs[2], 9);
	collect(r, "mo", 0, &c);
	assert_int_equal(c.n, 0);
	store_rend(r);
	store_close(s);
}

/* A queued seq may carry a tag, given back when it is taken; untagged ones give none. */
static void
test_queue_tags(void **state)
{
	const char *dir = tpath("queue-tags");
	struct store *s = open_ok(dir, 0, 0);
	struct store_wtxn *w;
	char big[STORE_QUEUE_TAG_MAX + 1], got[STORE_QUEUE_TAG_MAX];
	size_t n, len;

	(void)state;
	append_n(s, 1, 5);
	memset(big, 'x', sizeof(big));
	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(store_queue_put_tagged(w, "moh", 1, "Rref-1", 6), 0);
	assert_int_equal(store_queue_put(w, "moh", 2), 0);
	assert_int_equal(store_queue_put_tagged(w, "moh", 3, big, STORE_QUEUE_TAG_MAX), 0);
	assert_int_equal(store_queue_put_tagged(w, "moh", 4, big, sizeof(big)), IHALA_EINVAL);
	assert_int_equal(store_queue_put_tagged(w, "moh", 4, NULL, 3), IHALA_EINVAL);
	assert_int_equal(store_queue_put_tagged(w, "moh", 1, "x", 1), IHALA_EINVAL); /* twice */
	assert_int_equal(store_wcommit(w), 0);
	store_close(s);

	s = open_ok(dir, 0, 0); /* tags are durable */
	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(store_queue_take(w, "moh", 1, got, sizeof(got), &len), 0);
	assert_int_equal(len, 6);
	assert_memory_equal(got, "Rref-1", 6);
	assert_int_equal(store_queue_take(w, "moh", 1, got, sizeof(got), &len), IHALA_ENOTFOUND);
	assert_int_equal(len, 0);
	assert_int_equal(store_queue_take(w, "moh", 2, got, sizeof(got), &len), 0);
	assert_int_equal(len, 0);
	/* A tag longer than the caller's room is not copied; the seq is taken all the same. */
	assert_int_equal(store_queue_take(w, "moh", 3, got, 10, &len), 0);
	assert_int_equal(len, 0);
	assert_int_equal(store_queue_take(w, "moh", 3, got, sizeof(got), &len), IHALA_ENOTFOUND);
	assert_int_equal(store_queue_take(w, "moh", 1, got, sizeof(got), NULL), IHALA_EINVAL);
	assert_int_equal(store_queue_count(store_wread(w), "moh", &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(store_wcommit(w), 0);
	store_close(s);
}

/* ---- savepoints ---- */

static void
test_nested_abort(void **state)
{
	const char *dir = tpath("nested");
	struct store *s = open_ok(dir, 0, 0);
	struct store_wtxn *w, *c, *c2;
	struct store_rtxn *r;
	const void *data;
	size_t len, n;
	uint64_t seq, got;

	(void)state;
	assert_int_equal(store_wbegin(s, &w), 0);

	assert_int_equal(store_wsub_begin(w, &c), 0);
	assert_int_equal(store_log_append(c, "A", 1, &seq), 0);
	assert_int_equal(seq, 1);
	assert_int_equal(store_msgid_put(c, "dma", "a", seq), 0);
	assert_int_equal(store_queue_put(c, "moh", seq), 0);
	/* The parent is off limits while its child is open. */
	assert_int_equal(store_log_append(w, "X", 1, NULL), IHALA_EINVAL);
	assert_int_equal(store_log_last(store_wread(w), &got), IHALA_EINVAL);
	assert_int_equal(store_wsub_begin(w, &c2), IHALA_EINVAL);
	assert_int_equal(store_wsub_commit(c), 0);

	assert_int_equal(store_wsub_begin(w, &c), 0);
	assert_int_equal(store_log_append(c, "B", 1, &seq), 0);
	assert_int_equal(seq, 2);
	assert_int_equal(store_msgid_put(c, "dma", "b", seq), 0);
	assert_int_equal(store_queue_put(c, "moh", seq), 0);
	/* A grandchild, committed into the child that is then aborted. */
	assert_int_equal(store_wsub_begin(c, &c2), 0);
	assert_int_equal(store_referral_put(c2, "r-b", "state", 5), 0);
	assert_int_equal(store_wsub_commit(c2), 0);
	store_wsub_abort(c);

	assert_int_equal(store_wsub_begin(w, &c), 0);
	assert_int_equal(store_log_append(c, "C", 1, &seq), 0);
	assert_int_equal(seq, 2); /* B's seq is free again */
	assert_int_equal(store_msgid_put(c, "dma", "c", seq), 0);
	assert_int_equal(store_wsub_commit(c), 0);

	assert_int_equal(store_log_append(w, "D", 1, &seq), 0);
	assert_int_equal(seq, 3);
	/* A sub-batch is not a top batch. */
	assert_int_equal(store_wsub_commit(w), IHALA_EINVAL);
	assert_int_equal(store_wcommit(w), 0);

	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_log_get(r, 1, &data, &len), 0);
	assert_memory_equal(data, "A", 1);
	assert_int_equal(store_log_get(r, 2, &data, &len), 0);
	assert_memory_equal(data, "C", 1);
	assert_int_equal(store_log_get(r, 3, &data, &len), 0);
	assert_memory_equal(data, "D", 1);
	assert_int_equal(store_log_get(r, 4, &data, &len), IHALA_ENOTFOUND);
	assert_int_equal(store_msgid_get(r, "dma", "a", &got), 0);
	assert_int_equal(store_msgid_get(r, "dma", "b", &got), IHALA_ENOTFOUND);
	assert_int_equal(store_msgid_get(r, "dma", "c", &got), 0);
	assert_int_equal(got, 2);
	assert_int_equal(store_referral_get(r, "r-b", &data, &len), IHALA_ENOTFOUND);
	assert_int_equal(store_queue_count(r, "moh", &n), 0);
	assert_int_equal(n, 1);
	store_rend(r);
	store_close(s);
}

/* ---- map full and growth ---- */

static int
append_big(struct store_wtxn *w, size_t len)
{
	unsigned char *buf = malloc(len);
	int rc;

	assert_non_null(buf);
	memset(buf, 0xa5, len);
	rc = store_log_append(w, buf, len, NULL);
	free(buf);
	return rc;
}

/* Fill with 8 KiB entries, one batch each, until the store is full. */
static int
fill(struct store *s, uint64_t *appended)
{
	struct store_wtxn *w;
	int i, rc;

	for (i = 0; i < 100000; i++) {
		assert_int_equal(store_wbegin(s, &w), 0);
		rc = append_big(w, 8192);
		if (rc < 0) {
			store_wabort(w);
			return rc;
		}
		rc = store_wcommit(w);
		if (rc < 0) {
			return rc;
		}
		(*appended)++;
	}
	return 0;
}

static void
test_map_full(void **state)
{
	const char *dir = tpath("full");
	struct store *s = open_ok(dir, 256 * 1024, 0);
	struct store_wtxn *w, *c;
	struct store_rtxn *r;
	struct store_stats st;
	const void *data;
	size_t len;
	uint64_t seq, last, filled = 0;
	int rc;

	(void)state;
	/* One oversized submission fails alone; its neighbours commit. */
	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(store_wsub_begin(w, &c), 0);
	assert_int_equal(store_log_append(c, "small-1", 7, &seq), 0);
	assert_int_equal(store_wsub_commit(c), 0);
	assert_int_equal(store_wsub_begin(w, &c), 0);
	assert_int_equal(append_big(c, 512 * 1024), IHALA_ESTOREFULL);
	/* The failed sub-batch is unusable until aborted. */
	assert_int_equal(store_log_append(c, "x", 1, NULL), IHALA_ESTOREFULL);
	store_wsub_abort(c);
	assert_int_equal(store_wsub_begin(w, &c), 0);
	assert_int_equal(store_log_append(c, "small-2", 7, &seq), 0);
	assert_int_equal(seq, 2);
	assert_int_equal(store_wsub_commit(c), 0);
	assert_int_equal(store_wcommit(w), 0);

	/* Without a savepoint the whole batch fails and commit says so. */
	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(store_log_append(w, "lost", 4, NULL), 0);
	assert_int_equal(append_big(w, 512 * 1024), IHALA_ESTOREFULL);
	assert_int_equal(store_wcommit(w), IHALA_ESTOREFULL);

	/* Fill it up for real. */
	rc = fill(s, &filled);
	assert_int_equal(rc, IHALA_ESTOREFULL);
	assert_true(filled > 5);

	/* Reads keep working on a full store. */
	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_log_last(r, &last), 0);
	assert_int_equal(last, 2 + filled);
	assert_int_equal(store_log_get(r, 1, &data, &len), 0);
	assert_memory_equal(data, "small-1", 7);
	assert_int_equal(store_log_get(r, 2, &data, &len), 0);
	assert_memory_equal(data, "small-2", 7);
	store_rend(r);
	/* And so does opening a batch; the next big write still fails. */
	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(append_big(w, 64 * 1024), IHALA_ESTOREFULL);
	store_wabort(w);

	/* Growing is refused while a batch is open, and cannot shrink. */
	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(store_grow(s, 4 << 20), IHALA_EINVAL);
	store_wabort(w);
	assert_int_equal(store_grow(s, 128 * 1024), IHALA_EINVAL);

	assert_int_equal(store_grow(s, 4 << 20), 0);
	assert_int_equal(store_stat(s, &st), 0);
	assert_int_equal(st.map_size, 4 << 20);
	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(append_big(w, 64 * 1024), 0);
	assert_int_equal(store_wcommit(w), 0);

	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_log_last(r, &last), 0);
	assert_int_equal(last, 3 + filled);
	store_rend(r);
	store_close(s);

	/* The grown size persists. */
	s = open_ok(dir, 256 * 1024, 0);
	assert_int_equal(store_stat(s, &st), 0);
	assert_int_equal(st.map_size, 4 << 20);
	assert_int_equal(st.last_seq, 3 + filled);
	assert_int_equal(st.entries, 3 + filled);
	assert_true(st.used_bytes > 256 * 1024);
	store_close(s);
	/* Asking for more at open grows it. */
	s = open_ok(dir, 8 << 20, 0);
	assert_int_equal(store_stat(s, &st), 0);
	assert_int_equal(st.map_size, 8 << 20);
	append_n(s, (int)(4 + filled), 1); /* LMDB records the size with a commit */
	store_close(s);
	s = open_ok(dir, 0, STORE_RDONLY);
	assert_int_equal(store_stat(s, &st), 0);
	assert_int_equal(st.map_size, 8 << 20);
	store_close(s);
}

static void
test_auto_grow(void **state)
{
	struct store *s = open_ok(tpath("autogrow"), 256 * 1024, STORE_AUTO_GROW);
	struct store_stats st;
	uint64_t filled = 0, before;
	int rounds = 0;

	(void)state;
	store_set_max_mapsize(s, 1 << 20);
	/* 256 KiB -> 512 KiB -> 1 MiB, then full for good. */
	while (fill(s, &filled) == IHALA_ESTOREFULL && rounds < 10) {
		assert_int_equal(store_stat(s, &st), 0);
		if (st.map_size == 1 << 20) {
			break;
		}
		rounds++;
	}
	assert_int_equal(rounds, 2);
	assert_int_equal(store_stat(s, &st), 0);
	assert_int_equal(st.map_size, 1 << 20);
	assert_int_equal(st.max_mapsize, 1 << 20);
	/* At the cap: it stays full and says so. */
	before = filled;
	assert_int_equal(fill(s, &filled), IHALA_ESTOREFULL);
	assert_int_equal(filled, before);
	assert_int_equal(store_grow_auto(s), IHALA_ESTOREFULL);
	assert_int_equal(store_stat(s, &st), 0);
	assert_int_equal(st.map_size, 1 << 20);
	assert_true(filled > 64); /* more than 512 KiB went in */
	store_close(s);
}

static void
test_grow_waits_for_readers(void **state)
{
	struct store *s = open_ok(tpath("growwait"), 256 * 1024, 0);
	struct store_stats st;
	struct store_rtxn *r;
	struct rend_arg a;
	pthread_t th;

	(void)state;
	append_n(s, 1, 1);

	/* A reader that ends after 100 ms: the growth waits for it. */
	assert_int_equal(store_rbegin(s, &r), 0);
	a.r = r;
	a.delay_ms = 100;
	assert_int_equal(pthread_create(&th, NULL, rend_thread, &a), 0);
	assert_int_equal(store_grow(s, 1 << 20), 0);
	assert_int_equal(pthread_join(th, NULL), 0);

	/* A reader that stays open: refused after STORE_GROW_WAIT_MS. */
	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_grow(s, 2 << 20), IHALA_EAGAIN);
	assert_int_equal(store_log_get(r, 1, &(const void *){NULL}, &(size_t){0}), 0);
	store_rend(r);
	assert_int_equal(store_stat(s, &st), 0);
	assert_int_equal(st.map_size, 1 << 20);
	store_close(s);
}

/* ---- format version ---- */

static void
raw_put_meta(const char *dir, const char *key, const char *val)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k, v;

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
	assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, key != NULL ? "meta" : NULL, 0, &dbi), 0);
	k.mv_data = (void *)(key != NULL ? key : "stranger");
	k.mv_size = strlen(k.mv_data);
	if (val != NULL) {
		v.mv_data = (void *)val;
		v.mv_size = strlen(val);
		assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	} else {
		assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
	}
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

static void
raw_get_meta(const char *dir, const char *key, char *out, size_t size)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k, v;

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
	assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
	k.mv_data = (void *)key;
	k.mv_size = strlen(key);
	assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
	assert_true(v.mv_size < size);
	memcpy(out, v.mv_data, v.mv_size);
	out[v.mv_size] = '\0';
	mdb_txn_abort(txn);
	mdb_env_close(env);
}

static void
test_format_version(void **state)
{
	const char *dir = tpath("version");
	const char *alien = tpath("alien");
	struct store *s = open_ok(dir, 0, 0);
	struct store_rtxn *r;
	const void *val;
	size_t len;
	char got[32];

	(void)state;
	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_meta_get(r, "format_version", &val, &len), 0);
	assert_int_equal(len, 1);
	assert_memory_equal(val, "2", 1);
	assert_int_equal(store_meta_get(r, "created", &val, &len), 0);
	assert_int_equal(len, 20); /* YYYY-MM-DDTHH:MM:SSZ */
	store_rend(r);
	store_close(s);

	raw_put_meta(dir, "format_version", "3");
	s = NULL;
	assert_int_equal(store_open(dir, 0, 0, &s), IHALA_EVERSION);
	assert_null(s);
	assert_int_equal(store_open(dir, 0, STORE_RDONLY, &s), IHALA_EVERSION);
	raw_get_meta(dir, "format_version", got, sizeof(got));
	assert_string_equal(got, "3"); /* refused and left untouched */

	/* A format-1 store (protocol v1, personal data in clear in its entries): refused. */
	raw_put_meta(dir, "format_version", "1");
	assert_int_equal(store_open(dir, 0, 0, &s), IHALA_EVERSION);

	/* No version at all: refused too. */
	raw_put_meta(dir, "format_version", NULL);
	assert_int_equal(store_open(dir, 0, 0, &s), IHALA_EVERSION);

	/* Back to "2": opens again. */
	raw_put_meta(dir, "format_version", "2");
	s = open_ok(dir, 0, 0);
	store_close(s);

	/* An LMDB environment that is not ours (data in the main db). */
	assert_int_equal(mkdir(alien, 0700), 0);
	raw_put_meta(alien, NULL, "x");
	assert_int_equal(store_open(alien, 0, 0, &s), IHALA_EVERSION);

	/* Read-only open of a directory without a store. */
	assert_int_equal(store_open(tpath("nonexistent"), 0, STORE_RDONLY, &s), IHALA_EIO);
	/* Bad arguments. */
	assert_int_equal(store_open("", 0, 0, &s), IHALA_EINVAL);
	assert_int_equal(store_open(dir, 0, 0x80, &s), IHALA_EINVAL);
}

static void
test_lock_and_dir(void **state)
{
	const char *dir = tpath("lock");
	struct store *s = open_ok(dir, 0, 0), *s2 = NULL;
	struct stat sb;
	FILE *f;

	(void)state;
	assert_int_equal(stat(dir, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
	assert_int_equal(stat(tpath("lock/data.mdb"), &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	/* A second open of a live store is refused. */
	assert_int_equal(store_open(dir, 0, 0, &s2), IHALA_ESTORE);
	assert_null(s2);
	store_close(s);
	s = open_ok(dir, 0, 0);
	store_close(s);

	/* A file where the directory should be. */
	f = fopen(tpath("plainfile"), "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(store_open(tpath("plainfile"), 0, 0, &s2), IHALA_EIO);
	/* A missing parent. */
	assert_int_equal(store_open(tpath("no/such/parent"), 0, 0, &s2), IHALA_EIO);
}

/* ---- checkpoint, tree, referral, meta ---- */

static void
test_checkpoint(void **state)
{
	struct store *s = open_ok(tpath("checkpoint"), 0, 0);
	struct store_rtxn *r;
	struct store_wtxn *w;
	uint64_t size;
	char *text;
	char big[CHECKPOINT_TEXT_MAX + 2];

	(void)state;
	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_checkpoint_latest(r, &size, &text), IHALA_ENOTFOUND);
	store_rend(r);

	append_n(s, 1, 300);
	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(store_checkpoint_put(w, 2, "origin\n2\nAAAA\n"), 0);
	assert_int_equal(store_checkpoint_put(w, 256, "origin\n256\nCCCC\n"), 0);
	assert_int_equal(store_checkpoint_put(w, 5, "origin\n5\nBBBB\n"), 0);
	/* Visible in the batch. */
	assert_int_equal(store_checkpoint_latest(store_wread(w), &size, &text), 0);
	assert_int_equal(size, 256);
	free(text);
	/* Same text again: fine. A different one: equivocation, refused. */
	assert_int_equal(store_checkpoint_put(w, 5, "origin\n5\nBBBB\n"), 0);
	assert_int_equal(store_checkpoint_put(w, 5, "origin\n5\nZZZZ\n"), IHALA_EINCONSISTENT);
	/* Never ahead of the log; never empty or huge. */
	assert_int_equal(store_checkpoint_put(w, 301, "origin\n301\nDDDD\n"), IHALA_EINVAL);
	assert_int_equal(store_checkpoint_put(w, 3, ""), IHALA_EINVAL);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(store_checkpoint_put(w, 3, big), IHALA_ETOOLARGE);
	assert_int_equal(store_wcommit(w), 0);

	assert_int_equal(store_rbegin(s, &r), 0);
	/* Latest by size (256 > 5 also when compared byte by byte). */
	assert_int_equal(store_checkpoint_latest(r, &size, &text), 0);
	assert_int_equal(size, 256);
	assert_string_equal(text, "origin\n256\nCCCC\n");
	free(text);
	assert_int_equal(store_checkpoint_get(r, 5, &text), 0);
	assert_string_equal(text, "origin\n5\nBBBB\n");
	free(text);
	assert_int_equal(store_checkpoint_get(r, 3, &text), IHALA_ENOTFOUND);
	store_rend(r);
	store_close(s);
}

static void
test_tree(void **state)
{
	struct store *s = open_ok(tpath("tree"), 0, 0);
	uint8_t h[STORE_HASH_LEN], got[STORE_HASH_LEN];
	struct store_rtxn *r;
	struct store_wtxn *w;
	unsigned level;

	(void)state;
	assert_int_equal(store_wbegin(s, &w), 0);
	for (level = 0; level < 4; level++) {
		memset(h, (int)(0x10 + level), sizeof(h));
		assert_int_equal(store_tree_put(w, level, 0, h), 0);
		memset(h, (int)(0x20 + level), sizeof(h));
		assert_int_equal(store_tree_put(w, level, 1, h), 0);
	}
	memset(h, 0x77, sizeof(h));
	assert_int_equal(store_tree_put(w, 63, UINT64_MAX, h), 0);
	assert_int_equal(store_tree_put(w, 64, 0, h), IHALA_EINVAL);
	assert_int_equal(store_tree_put(w, 0, 0, NULL), IHALA_EINVAL);
	/* Nodes are immutable: same hash fine, another refused. */
	memset(h, 0x10, sizeof(h));
	assert_int_equal(store_tree_put(w, 0, 0, h), 0);
	memset(h, 0x99, sizeof(h));
	assert_int_equal(store_tree_put(w, 0, 0, h), IHALA_EINCONSISTENT);
	assert_int_equal(store_wcommit(w), 0);

	assert_int_equal(store_rbegin(s, &r), 0);
	for (level = 0; level < 4; level++) {
		memset(h, (int)(0x10 + level), sizeof(h));
		assert_int_equal(store_tree_get(r, level, 0, got), 0);
		assert_memory_equal(got, h, sizeof(h));
		memset(h, (int)(0x20 + level), sizeof(h));
		assert_int_equal(store_tree_get(r, level, 1, got), 0);
		assert_memory_equal(got, h, sizeof(h));
	}
	memset(h, 0x77, sizeof(h));
	assert_int_equal(store_tree_get(r, 63, UINT64_MAX, got), 0);
	assert_memory_equal(got, h, sizeof(h));
	assert_int_equal(store_tree_get(r, 0, 2, got), IHALA_ENOTFOUND);
	assert_int_equal(store_tree_get(r, 4, 0, got), IHALA_ENOTFOUND);
	assert_int_equal(store_tree_get(r, 64, 0, got), IHALA_EINVAL);
	store_rend(r);
	store_close(s);
}

static void
test_referral_meta(void **state)
{
	struct store *s = open_ok(tpath("referral"), 0, 0);
	struct store_rtxn *r;
	struct store_wtxn *w;
	const void *val;
	size_t len;

	(void)state;
	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(store_referral_put(w, "ref-1", "requested", 9), 0);
	assert_int_equal(store_referral_put(w, "ref-1", "accepted", 8), 0); /* overwrite */
	assert_int_equal(store_referral_put(w, "ref-2", NULL, 0), 0);
	assert_int_equal(store_referral_put(w, "", "x", 1), IHALA_EINVAL);
	assert_int_equal(store_referral_put(w, "ref-3", NULL, 1), IHALA_EINVAL);
	assert_int_equal(store_meta_put(w, "signer_key_id", "abc", 3), 0);
	assert_int_equal(store_meta_put(w, "format_version", "9", 1), IHALA_EINVAL);
	assert_int_equal(store_meta_put(w, "created", "x", 1), IHALA_EINVAL);
	assert_int_equal(store_meta_put(w, "qcount:moh", "5", 1), IHALA_EINVAL);
	assert_int_equal(store_wcommit(w), 0);

	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_referral_get(r, "ref-1", &val, &len), 0);
	assert_int_equal(len, 8);
	assert_memory_equal(val, "accepted", 8);
	assert_int_equal(store_referral_get(r, "ref-2", &val, &len), 0);
	assert_int_equal(len, 0);
	assert_int_equal(store_referral_get(r, "ref-3", &val, &len), IHALA_ENOTFOUND);
	assert_int_equal(store_meta_get(r, "signer_key_id", &val, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(val, "abc", 3);
	assert_int_equal(store_meta_get(r, "format_version", &val, &len), 0);
	assert_memory_equal(val, "2", 1);
	assert_int_equal(store_meta_get(r, "nothing", &val, &len), IHALA_ENOTFOUND);
	store_rend(r);
	store_close(s);
}

/* ---- history ---- */

struct hist_seen {
	uint64_t seq[8];
	char item[8][16];
	int n;
};

static int
hist_cb(void *arg, uint64_t seq, const void *item, size_t len)
{
	struct hist_seen *h = arg;

	assert_true(h->n < 8 && len < sizeof(h->item[0]));
	h->seq[h->n] = seq;
	memcpy(h->item[h->n], item, len);
	h->item[h->n][len] = '\0';
	h->n++;
	return 0;
}

/* A referral's history items come back in seq order, its own only (not those of an id it is
 * a prefix of), beside its state record; every put is counted in put_bytes. */
/* Sealed parts: put once per seq (never replaced), read back, deleted (erasure), gone for
 * good; a backup carries them; nothing outlives its delete. */
static void
test_sealed(void **state)
{
	struct store *s = open_ok(tpath("sealed"), 0, 0);
	struct store_rtxn *r;
	struct store_wtxn *w;
	const void *val;
	size_t len;
	uint64_t seq;

	(void)state;
	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(store_log_append(w, "e", 1, &seq), 0);
	assert_int_equal(store_sealed_put(w, seq, "part-1", 6), 0);
	assert_int_equal(store_log_append(w, "e", 1, &seq), 0);
	assert_int_equal(store_sealed_put(w, seq, "part-2", 6), 0);
	assert_int_equal(store_sealed_put(w, 0, "x", 1), IHALA_EINVAL);
	assert_int_equal(store_sealed_put(w, 3, NULL, 0), IHALA_EINVAL);
	assert_int_equal(store_wcommit(w), 0);

	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(store_sealed_put(w, 1, "other", 5), IHALA_EINCONSISTENT);
	store_wabort(w);

	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_sealed_get(r, 1, &val, &len), 0);
	assert_int_equal(len, 6);
	assert_memory_equal(val, "part-1", 6);
	assert_int_equal(store_sealed_get(r, 3, &val, &len), IHALA_ENOTFOUND);
	assert_int_equal(store_sealed_get(r, 0, &val, &len), IHALA_ENOTFOUND);
	store_rend(r);

	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(store_sealed_del(w, 1), 0);
	assert_int_equal(store_sealed_del(w, 1), IHALA_ENOTFOUND);
	assert_int_equal(store_sealed_del(w, 0), IHALA_EINVAL);
	assert_int_equal(store_wcommit(w), 0); /* a "not found" leaves the batch usable */
	assert_int_equal(store_backup(s, tpath("sealed-copy")), 0);
	store_close(s);

	s = open_ok(tpath("sealed-copy"), 0, 0);
	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_sealed_get(r, 1, &val, &len), IHALA_ENOTFOUND);
	assert_int_equal(store_sealed_get(r, 2, &val, &len), 0);
	assert_memory_equal(val, "part-2", 6);
	store_rend(r);
	store_close(s);
}

/* Sealed parts fill their pages as the log's entries do (appended by seq): 300 parts of 900
 * bytes take at most 80 leaf pages of 4 KiB, where put in key order without MDB_APPEND every
 * page split in half and left them half empty (150 pages). */
static void
test_sealed_pages_full(void **state)
{
	const char *dir = tpath("sealed-pages");
	struct store *s = open_ok(dir, 0, 0);
	struct store_wtxn *w;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_stat st;
	char part[900];
	uint64_t seq;
	int b, i;

	(void)state;
	memset(part, 'x', sizeof(part));
	for (b = 0; b < 10; b++) {
		assert_int_equal(store_wbegin(s, &w), 0);
		for (i = 0; i < 30; i++) {
			assert_int_equal(store_log_append(w, "e", 1, &seq), 0);
			assert_int_equal(store_sealed_put(w, seq, part, sizeof(part)), 0);
		}
		assert_int_equal(store_wcommit(w), 0);
	}
	store_close(s);

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
	assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY | MDB_NOLOCK, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "sealed", MDB_INTEGERKEY, &dbi), 0);
	assert_int_equal(mdb_stat(txn, dbi, &st), 0);
	assert_int_equal(st.ms_entries, 300);
	assert_true(st.ms_leaf_pages <= 80);
	mdb_txn_abort(txn);
	mdb_env_close(env);
}

struct kids {
	char id[4][16];
	int n;
};

static int
kids_cb(void *arg, const char *child)
{
	struct kids *k = arg;

	assert_true(k->n < 4);
	snprintf(k->id[k->n++], sizeof(k->id[0]), "%s", child);
	return 0;
}

/* A referral's onward referrals, and no one else's (an id that extends another's). */
static void
test_children(void **state)
{
	struct store *s = open_ok(tpath("children"), 0, 0);
	struct kids k = {{{0}}, 0};
	struct store_rtxn *r;
	struct store_wtxn *w;

	(void)state;
	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(store_child_put(w, "R-1", "R-1b"), 0);
	assert_int_equal(store_child_put(w, "R-1", "R-1a"), 0);
	assert_int_equal(store_child_put(w, "R-1", "R-1a"), 0); /* again: no change */
	assert_int_equal(store_child_put(w, "R-10", "R-10a"), 0);
	assert_int_equal(store_child_put(w, "", "x"), IHALA_EINVAL);
	assert_int_equal(store_child_put(w, "R-1", ""), IHALA_EINVAL);
	assert_int_equal(store_wcommit(w), 0);
	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_children_iter(r, "R-1", kids_cb, &k), 0);
	assert_int_equal(k.n, 2);
	assert_string_equal(k.id[0], "R-1a");
	assert_string_equal(k.id[1], "R-1b");
	k.n = 0;
	assert_int_equal(store_children_iter(r, "R-10", kids_cb, &k), 0);
	assert_int_equal(k.n, 1);
	assert_string_equal(k.id[0], "R-10a");
	k.n = 0;
	assert_int_equal(store_children_iter(r, "R-1a", kids_cb, &k), 0);
	assert_int_equal(k.n, 0);
	store_rend(r);
	store_close(s);
}

static void
test_history(void **state)
{
	struct store *s = open_ok(tpath("history"), 0, 0);
	struct hist_seen h = {0};
	struct store_stats st0, st1;
	struct store_rtxn *r;
	struct store_wtxn *w;
	const void *val;
	size_t len;
	uint64_t seq;
	int i;

	(void)state;
	assert_int_equal(store_stat(s, &st0), 0);
	assert_int_equal(store_wbegin(s, &w), 0);
	for (i = 0; i < 3; i++) {
		assert_int_equal(store_log_append(w, "e", 1, &seq), 0);
	}
	assert_int_equal(store_referral_put(w, "R-1", "state", 5), 0);
	assert_int_equal(store_history_put(w, "R-1", 300, "c", 1), 0);
	assert_int_equal(store_history_put(w, "R-1", 2, "b", 1), 0);
	assert_int_equal(store_history_put(w, "R-10", 1, "other", 5), 0);
	assert_int_equal(store_history_put(w, "R-1", 1, "a", 1), 0);
	assert_int_equal(store_history_put(w, "R-1", 2, "B", 1), 0); /* replaces */
	assert_int_equal(store_history_put(w, "", 1, "x", 1), IHALA_EINVAL);
	assert_int_equal(store_history_put(w, "R-1", 0, "x", 1), IHALA_EINVAL);
	assert_int_equal(store_wcommit(w), 0);
	assert_int_equal(store_stat(s, &st1), 0);
	/* 3 log puts (8 + 1), the state (3 + 5), 5 items (id + 9 + value) */
	assert_int_equal(st1.put_bytes - st0.put_bytes, 3 * 9 + 8 + 4 * (3 + 9 + 1) + 4 + 9 + 5);

	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_history_iter(r, "R-1", hist_cb, &h), 0);
	assert_int_equal(h.n, 3);
	assert_int_equal(h.seq[0], 1);
	assert_string_equal(h.item[0], "a");
	assert_int_equal(h.seq[1], 2);
	assert_string_equal(h.item[1], "B");
	assert_int_equal(h.seq[2], 300);
	assert_string_equal(h.item[2], "c");
	assert_int_equal(store_referral_get(r, "R-1", &val, &len), 0);
	assert_int_equal(len, 5);
	memset(&h, 0, sizeof(h));
	assert_int_equal(store_history_iter(r, "R-10", hist_cb, &h), 0);
	assert_int_equal(h.n, 1);
	assert_string_equal(h.item[0], "other");
	memset(&h, 0, sizeof(h));
	assert_int_equal(store_history_iter(r, "R-2", hist_cb, &h), 0);
	assert_int_equal(h.n, 0);
	store_rend(r);
	store_close(s);
}

/* ---- misuse ---- */

static void
test_misuse(void **state)
{
	const char *dir = tpath("misuse");
	struct store *s = open_ok(dir, 0, 0);
	struct store_log_iter *it;
	struct store_wtxn *w, *c;
	struct store_rtxn *r;
	const void *data;
	size_t len;
	uint64_t seq;

	(void)state;
	append_n(s, 1, 2);

	/* An iterator left open at commit: the batch is aborted, the
	 * iterator only fails until it is ended. */
	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(store_log_append(w, "entry-3", 7, NULL), 0);
	assert_int_equal(store_log_iter_begin(store_wread(w), 1, &it), 0);
	assert_int_equal(store_log_iter_next(it, &seq, &data, &len), 0);
	assert_int_equal(store_wcommit(w), IHALA_EINTERNAL);
	assert_int_equal(store_log_iter_next(it, &seq, &data, &len), IHALA_EINVAL);
	store_log_iter_end(it);

	/* Same for a read transaction ended under an iterator. */
	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_log_iter_begin(r, 1, &it), 0);
	store_rend(r);
	assert_int_equal(store_log_iter_next(it, &seq, &data, &len), IHALA_EINVAL);
	store_log_iter_end(it);

	/* Committing a batch with an open sub-batch aborts both. */
	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(store_wsub_begin(w, &c), 0);
	assert_int_equal(store_log_append(c, "entry-3", 7, NULL), 0);
	assert_int_equal(store_wcommit(w), IHALA_EINTERNAL);

	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_log_last(r, &seq), 0);
	assert_int_equal(seq, 2);
	store_rend(r);

	/* Closing with a batch open aborts it. */
	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(store_log_append(w, "entry-3", 7, NULL), 0);
	store_close(s);

	/* Read-only: reads fine, writes refused. */
	s = open_ok(dir, 0, STORE_RDONLY);
	assert_int_equal(store_wbegin(s, &w), IHALA_EINVAL);
	assert_int_equal(store_grow(s, 1 << 30), IHALA_EINVAL);
	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_log_last(r, &seq), 0);
	assert_int_equal(seq, 2);
	store_rend(r);
	store_close(s);
	store_close(NULL);
	store_wabort(NULL);
	store_rend(NULL);
}

/* ---- backup and external tools ---- */

static void
test_backup(void **state)
{
	const char *dir = tpath("live");
	const char *bak = tpath("backup");
	struct store *s = open_ok(dir, 0, 0), *b;
	struct store_rtxn *r;
	struct store_wtxn *w;
	struct stat sb;
	uint64_t seq, got;
	size_t n;
	char *text;
	uint8_t h[STORE_HASH_LEN], hg[STORE_HASH_LEN];

	(void)state;
	append_n(s, 1, 50);
	memset(h, 0x42, sizeof(h));
	assert_int_equal(store_wbegin(s, &w), 0);
	assert_int_equal(store_msgid_put(w, "dma", "m-7", 7), 0);
	assert_int_equal(store_queue_put(w, "moh", 7), 0);
	assert_int_equal(store_tree_put(w, 0, 6, h), 0);
	assert_int_equal(store_checkpoint_put(w, 50, "origin\n50\nXXXX\n"), 0);
	assert_int_equal(store_wcommit(w), 0);

	/* A reader open meanwhile does not stop the copy. */
	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(store_backup(s, bak), 0);
	store_rend(r);
	assert_int_equal(stat(tpath("backup/data.mdb"), &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	/* Never over an existing copy. */
	assert_int_equal(store_backup(s, bak), IHALA_EIO);
	append_n(s, 51, 1); /* after the copy: not in it */

	b = open_ok(bak, 0, STORE_RDONLY);
	assert_int_equal(store_rbegin(b, &r), 0);
	assert_int_equal(store_log_last(r, &seq), 0);
	assert_int_equal(seq, 50);
	for (seq = 1; seq <= 50; seq++) {
		assert_entry(r, seq);
	}
	assert_int_equal(store_msgid_get(r, "dma", "m-7", &got), 0);
	assert_int_equal(got, 7);
	assert_int_equal(store_queue_count(r, "moh", &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(store_tree_get(r, 0, 6, hg), 0);
	assert_memory_equal(hg, h, sizeof(h));
	assert_int_equal(store_checkpoint_latest(r, &seq, &text), 0);
	assert_int_equal(seq, 50);
	assert_string_equal(text, "origin\n50\nXXXX\n");
	free(text);
	store_rend(r);
	store_close(b);

	/* The copy is a full store: a broker may take it over. */
	b = open_ok(bak, 0, 0);
	append_n(b, 51, 1);
	store_close(b);
	store_close(s);
}

static void
test_mdb_stat(void **state)
{
	const char *dir = tpath("mdbstat");
	struct store *s = open_ok(dir, 0, 0);
	char cmd[512];

	(void)state;
	append_n(s, 1, 5);
	snprintf(cmd, sizeof(cmd), "mdb_stat -a '%s' >/dev/null 2>&1", dir);
	assert_int_equal(system(cmd), 0); /* on a live store */
	store_close(s);
	assert_int_equal(system(cmd), 0);
	/* The command can fail: on something that is not a store. */
	snprintf(cmd, sizeof(cmd), "mdb_stat -a '%s' >/dev/null 2>&1", tpath("no-store-here"));
	assert_int_not_equal(system(cmd), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_append_get_order),
	    cmocka_unit_test(test_refused_after_fork),
	    cmocka_unit_test(test_seqs_survive_reopen),
	    cmocka_unit_test(test_sealed),
	    cmocka_unit_test(test_children),
	    cmocka_unit_test(test_read_views),
	    cmocka_unit_test(test_msgid_dedup),
	    cmocka_unit_test(test_queue),
	    cmocka_unit_test(test_queue_tags),
	    cmocka_unit_test(test_nested_abort),
	    cmocka_unit_test(test_map_full),
	    cmocka_unit_test(test_auto_grow),
	    cmocka_unit_test(test_grow_waits_for_readers),
	    cmocka_unit_test(test_format_version),
	    cmocka_unit_test(test_lock_and_dir),
	    cmocka_unit_test(test_checkpoint),
	    cmocka_unit_test(test_tree),
	    cmocka_unit_test(test_referral_meta),
	    cmocka_unit_test(test_history),
	    cmocka_unit_test(test_misuse),
	    cmocka_unit_test(test_backup),
	    cmocka_unit_test(test_mdb_stat),
	    cmocka_unit_test(test_sealed_pages_full),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
