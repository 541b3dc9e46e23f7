/* localstore_test.c - unit tests of clients/localstore.c on real LMDB files in a temporary dir. */
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "datadir.h"
#include "error.h"
#include "localstore.h"
#include "log.h"

static char root[64];

/* Wall times the sent list is aged with (the clock is the caller's: passed in). */
#define HOUR (3600ULL * 1000)
#define DAY (24 * HOUR)
#define WEEK (7 * DAY)
#define T0 (1760000000000ULL)

/* A path under the test's temporary root; static storage, 8 in rotation. */
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
	umask(022);
	snprintf(root, sizeof(root), "/tmp/localstore_test.XXXXXX");
	return mkdtemp(root) != NULL ? 0 : -1;
}

static int
group_teardown(void **state)
{
	(void)state;
	return nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static struct localstore *
open_ok(const char *dir)
{
	struct localstore *ls = NULL;

	assert_int_equal(localstore_open(dir, &ls), 0);
	assert_non_null(ls);
	return ls;
}

static void
put_ok(struct localstore *ls, const char *id, const char *env)
{
	assert_int_equal(localstore_outbox_put(ls, id, env, strlen(env)), 0);
}

/* Collects what localstore_outbox_iter visits as "id=env;..." */
struct collect {
	char buf[1024];
	int calls;
	int stop_at; /* stop (returning stop_rc) at this call number, 0: never */
	int stop_rc;
	struct localstore *ls;
	int mutate; /* on the first call: delete that entry and queue a new one */
};

static int
collect_cb(void *arg, const char *id, const void *env, size_t len)
{
	struct collect *c = arg;
	size_t n = strlen(c->buf);

	c->calls++;
	snprintf(c->buf + n, sizeof(c->buf) - n, "%s=%.*s;", id, (int)len, (const char *)env);
	if (c->mutate && c->calls == 1) {
		assert_int_equal(localstore_outbox_del(c->ls, id), 0);
		put_ok(c->ls, "added-during-iter", "new");
	}
	if (c->stop_at != 0 && c->calls == c->stop_at) {
		return c->stop_rc;
	}
	return 0;
}

static const char *
iter_all(struct localstore *ls)
{
	static struct collect c;

	memset(&c, 0, sizeof(c));
	assert_int_equal(localstore_outbox_iter(ls, collect_cb, &c), 0);
	return c.buf;
}

static size_t
count(struct localstore *ls)
{
	size_t n = 12345;

	assert_int_equal(localstore_outbox_count(ls, &n), 0);
	return n;
}

static enum localstore_inbox_state
state_of(struct localstore *ls, uint64_t seq)
{
	enum localstore_inbox_state st = 99;

	assert_int_equal(localstore_inbox_state(ls, seq, &st), 0);
	return st;
}

/* ---- directory, lock ---- */

static void
test_open_creates_dir(void **state)
{
	const char *dir = tpath("a/b/data");
	struct localstore *ls = open_ok(dir), *ls2 = (void *)1;
	struct stat sb;
	FILE *f;

	(void)state;
	assert_int_equal(stat(tpath("a"), &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
	assert_int_equal(stat(tpath("a/b/data"), &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
	assert_int_equal(stat(tpath("a/b/data/data.mdb"), &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(stat(tpath("a/b/data/ihala-client.lock"), &sb), 0);
	localstore_close(ls);
	ls = open_ok(dir); /* reopen of an existing store */
	localstore_close(ls);
	localstore_close(NULL);

	/* A file where the directory should be, and under it. */
	f = fopen(tpath("plainfile"), "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(localstore_open(tpath("plainfile"), &ls2), IHALA_EIO);
	assert_null(ls2);
	assert_int_equal(localstore_open(tpath("plainfile/sub"), &ls2), IHALA_EIO);
	assert_null(ls2);
}

static void
test_second_open_refused(void **state)
{
	const char *dir = tpath("lock");
	struct localstore *ls = open_ok(dir), *ls2 = (void *)1;
	pid_t pid;
	int status, fd = -1;

	(void)state;
	/* In this process a data dir is opened once (LMDB's caveat)... */
	assert_int_equal(localstore_open(dir, &ls2), IHALA_EIO);
	assert_null(ls2);
	/* ...but another process opens it at the same time, and both see each other's writes. */
	put_ok(ls, "from-parent", "p");
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct localstore *c = NULL;
		int ok = localstore_open(dir, &c) == 0 && count(c) == 1 &&
		         localstore_outbox_put(c, "from-child", "c", 1) == 0 &&
		         localstore_inbox_lock(c) == 0;

		/* the inbox is taken by one process at a time */
		_exit(ok && localstore_inbox_lock(c) == 0 ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_string_equal(iter_all(ls), "from-parent=p;from-child=c;");
	assert_int_equal(localstore_inbox_lock(ls), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct localstore *c = NULL;

		_exit(localstore_open(dir, &c) == 0 && localstore_inbox_lock(c) == IHALA_EAGAIN
		          ? 0
		          : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* An exclusive holder of the data dir's lock keeps clients out. */
	localstore_close(ls);
	assert_int_equal(datadir_lock("test", dir, "ihala-client.lock", &fd), 0);
	ls2 = (void *)1;
	assert_int_equal(localstore_open(dir, &ls2), IHALA_EIO);
	assert_null(ls2);
	close(fd);
	/* After close the dir is free. */
	ls = open_ok(dir);
	assert_int_equal(count(ls), 2);
	localstore_close(ls);
}

/* ---- rejected ---- */

static int
rej_cb(void *arg, const struct localstore_rejected *r)
{
	struct collect *c = arg;
	size_t n = strlen(c->buf);

	snprintf(c->buf + n, sizeof(c->buf) - n, "%s:%d:%.*s:%.*s;", r->message_id, r->code,
	         (int)r->text_len, r->text, (int)r->env_len, (const char *)r->env);
	return 0;
}

static void
test_rejected(void **state)
{
	struct localstore *ls = open_ok(tpath("rejected"));
	struct collect c;
	size_t n = 9;

	(void)state;
	put_ok(ls, "m1", "one");
	put_ok(ls, "m2", "two");
	put_ok(ls, "m3", "three");
	/* A refused message leaves the outbox at once; the ones behind it stay, in order. */
	assert_int_equal(localstore_outbox_reject(ls, "m1", IHALA_ETOOLARGE, "too big", 7), 0);
	assert_int_equal(localstore_outbox_reject(ls, "m1", IHALA_ETOOLARGE, "x", 7),
	                 IHALA_ENOTFOUND);
	assert_string_equal(iter_all(ls), "m2=two;m3=three;");
	assert_int_equal(localstore_rejected_count(ls, &n), 0);
	assert_int_equal(n, 1);
	memset(&c, 0, sizeof(c));
	assert_int_equal(localstore_rejected_iter(ls, rej_cb, &c), 0);
	assert_string_equal(c.buf, "m1:-56:too big:one;");
	/* retry: back at the end of the outbox */
	assert_int_equal(localstore_rejected_retry(ls, "m1"), 0);
	assert_string_equal(iter_all(ls), "m2=two;m3=three;m1=one;");
	assert_int_equal(localstore_rejected_retry(ls, "m1"), IHALA_ENOTFOUND);
	/* drop: gone for good */
	assert_int_equal(localstore_outbox_reject(ls, "m2", IHALA_ESCHEMA, NULL, 8), 0);
	localstore_close(ls);
	ls = open_ok(tpath("rejected")); /* durable */
	memset(&c, 0, sizeof(c));
	assert_int_equal(localstore_rejected_iter(ls, rej_cb, &c), 0);
	assert_string_equal(c.buf, "m2:-40::two;");
	assert_int_equal(localstore_rejected_del(ls, "m2"), 0);
	assert_int_equal(localstore_rejected_del(ls, "m2"), IHALA_ENOTFOUND);
	assert_int_equal(localstore_rejected_count(ls, &n), 0);
	assert_int_equal(n, 0);
	assert_string_equal(iter_all(ls), "m3=three;m1=one;");
	localstore_close(ls);
}

/* ---- outbox ---- */

static void
test_outbox_order_del_count(void **state)
{
	struct localstore *ls = open_ok(tpath("outbox"));

	(void)state;
	assert_int_equal(count(ls), 0);
	assert_string_equal(iter_all(ls), "");
	/* Insertion order, not key order. */
	put_ok(ls, "m-zulu", "Z");
	put_ok(ls, "m-alpha", "A");
	put_ok(ls, "m-mike", "M");
	assert_int_equal(count(ls), 3);
	assert_string_equal(iter_all(ls), "m-zulu=Z;m-alpha=A;m-mike=M;");

	assert_int_equal(localstore_outbox_del(ls, "m-alpha"), 0);
	assert_int_equal(count(ls), 2);
	assert_string_equal(iter_all(ls), "m-zulu=Z;m-mike=M;");
	assert_int_equal(localstore_outbox_del(ls, "m-alpha"), IHALA_ENOTFOUND);
	assert_int_equal(localstore_outbox_del(ls, "never-queued"), IHALA_ENOTFOUND);

	/* A deleted id queued again goes to the end, with its new bytes. */
	put_ok(ls, "m-alpha", "A2");
	assert_string_equal(iter_all(ls), "m-zulu=Z;m-mike=M;m-alpha=A2;");
	/* Binary envelopes round-trip exactly (NUL bytes included). */
	assert_int_equal(localstore_outbox_put(ls, "bin", "\0\1\0", 3), 0);
	assert_int_equal(count(ls), 4);
	assert_int_equal(localstore_outbox_del(ls, "m-zulu"), 0);
	assert_int_equal(localstore_outbox_del(ls, "m-mike"), 0);
	assert_int_equal(localstore_outbox_del(ls, "m-alpha"), 0);
	assert_int_equal(localstore_outbox_del(ls, "bin"), 0);
	assert_int_equal(count(ls), 0);
	assert_string_equal(iter_all(ls), "");
	localstore_close(ls);
}

static int
bin_cb(void *arg, const char *id, const void *env, size_t len)
{
	(void)id;
	assert_int_equal(len, 3);
	assert_memory_equal(env, "\0\1\0", 3);
	(*(int *)arg)++;
	return 0;
}

static void
test_outbox_binary(void **state)
{
	struct localstore *ls = open_ok(tpath("outbox-bin"));
	int calls = 0;

	(void)state;
	assert_int_equal(localstore_outbox_put(ls, "bin", "\0\1\0", 3), 0);
	assert_int_equal(localstore_outbox_put(ls, "bin", "\0\1\0", 3), 0);
	assert_int_equal(localstore_outbox_put(ls, "bin", "\0\1\1", 3), IHALA_EMSGID);
	assert_int_equal(localstore_outbox_iter(ls, bin_cb, &calls), 0);
	assert_int_equal(calls, 1);
	localstore_close(ls);
}

static void
test_outbox_same_id(void **state)
{
	struct localstore *ls = open_ok(tpath("outbox-dup"));

	(void)state;
	put_ok(ls, "dup", "hello");
	put_ok(ls, "other", "x");
	/* Same bytes: fine, nothing changes (it keeps its place). */
	put_ok(ls, "dup", "hello");
	assert_int_equal(count(ls), 2);
	/* Different bytes, same or other length: refused. */
	assert_int_equal(localstore_outbox_put(ls, "dup", "hellO", 5), IHALA_EMSGID);
	assert_int_equal(localstore_outbox_put(ls, "dup", "hello!", 6), IHALA_EMSGID);
	assert_int_equal(localstore_outbox_put(ls, "dup", "hell", 4), IHALA_EMSGID);
	assert_int_equal(count(ls), 2);
	assert_string_equal(iter_all(ls), "dup=hello;other=x;");
	localstore_close(ls);
}

/* A queued message sealed for good later: replaced in place (order kept, same id). */
static void
test_outbox_replace(void **state)
{
	struct localstore *ls = open_ok(tpath("outbox-replace"));

	(void)state;
	put_ok(ls, "a", "pending");
	put_ok(ls, "b", "x");
	assert_int_equal(localstore_outbox_replace(ls, "a", "sealed for good", 15), 0);
	assert_string_equal(iter_all(ls), "a=sealed for good;b=x;");
	assert_int_equal(count(ls), 2);
	assert_int_equal(localstore_outbox_replace(ls, "zz", "y", 1), IHALA_ENOTFOUND);
	assert_int_equal(localstore_outbox_replace(ls, "a", "y", 0), IHALA_EINVAL);
	localstore_close(ls);
	ls = open_ok(tpath("outbox-replace"));
	assert_string_equal(iter_all(ls), "a=sealed for good;b=x;");
	localstore_close(ls);
}

static void
test_outbox_iter_stop_and_mutate(void **state)
{
	struct localstore *ls = open_ok(tpath("outbox-iter"));
	struct collect c;

	(void)state;
	put_ok(ls, "one", "1");
	put_ok(ls, "two", "2");
	put_ok(ls, "three", "3");

	/* A positive stop value is returned as is... */
	memset(&c, 0, sizeof(c));
	c.stop_at = 2;
	c.stop_rc = 7;
	assert_int_equal(localstore_outbox_iter(ls, collect_cb, &c), 7);
	assert_int_equal(c.calls, 2);
	assert_string_equal(c.buf, "one=1;two=2;");
	/* ...and so is a negative one. */
	memset(&c, 0, sizeof(c));
	c.stop_at = 1;
	c.stop_rc = IHALA_ECLOSED;
	assert_int_equal(localstore_outbox_iter(ls, collect_cb, &c), IHALA_ECLOSED);
	assert_int_equal(c.calls, 1);

	/* The callback may write: it deletes its own entry and queues a new
	 * one, which this iteration does not visit. */
	memset(&c, 0, sizeof(c));
	c.ls = ls;
	c.mutate = 1;
	assert_int_equal(localstore_outbox_iter(ls, collect_cb, &c), 0);
	assert_string_equal(c.buf, "one=1;two=2;three=3;");
	assert_string_equal(iter_all(ls), "two=2;three=3;added-during-iter=new;");
	localstore_close(ls);
}

/* ---- durability ---- */

static void
test_reopen_keeps_everything(void **state)
{
	const char *dir = tpath("reopen");
	struct localstore *ls = open_ok(dir);
	enum localstore_inbox_state prev;
	uint64_t seq;
	void *entry;
	size_t len;
	char *text;

	(void)state;
	put_ok(ls, "first", "F");
	put_ok(ls, "second", "S");
	put_ok(ls, "gone", "G");
	assert_int_equal(localstore_outbox_del(ls, "gone"), 0);
	assert_int_equal(localstore_inbox_put(ls, 4, "four", 4, &prev), 0);
	assert_int_equal(localstore_inbox_put(ls, 8, "eight", 5, &prev), 0);
	assert_int_equal(localstore_inbox_done(ls, 4), 0);
	assert_int_equal(localstore_checkpoint_put(ls, "origin\n8\nROOT\n"), 0);
	localstore_close(ls);

	ls = open_ok(dir);
	assert_int_equal(count(ls), 2);
	assert_string_equal(iter_all(ls), "first=F;second=S;");
	/* New entries still go after the old ones (the counter survived). */
	put_ok(ls, "third", "T");
	assert_string_equal(iter_all(ls), "first=F;second=S;third=T;");
	assert_int_equal(state_of(ls, 4), LOCALSTORE_DONE);
	assert_int_equal(state_of(ls, 8), LOCALSTORE_PENDING);
	assert_int_equal(localstore_inbox_next_pending(ls, 0, &seq, &entry, &len), 0);
	assert_int_equal(seq, 8);
	assert_int_equal(len, 5);
	assert_memory_equal(entry, "eight", 5);
	free(entry);
	assert_int_equal(localstore_checkpoint_get(ls, &text), 0);
	assert_string_equal(text, "origin\n8\nROOT\n");
	free(text);
	localstore_close(ls);
}

/* A process that dies without closing: each write was already committed. */
static void
test_survives_crash(void **state)
{
	const char *dir = tpath("crash");
	struct localstore *ls;
	pid_t pid;
	int status;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct localstore *c = NULL;
		int ok = localstore_open(dir, &c) == 0 &&
		         localstore_outbox_put(c, "before-crash", "B", 1) == 0 &&
		         localstore_inbox_put(c, 3, "three", 5, NULL) == 0 &&
		         localstore_inbox_put(c, 5, "five", 4, NULL) == 0 &&
		         localstore_inbox_done(c, 3) == 0;

		_exit(ok ? 0 : 1); /* no localstore_close */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	ls = open_ok(dir); /* the lock died with the process */
	assert_string_equal(iter_all(ls), "before-crash=B;");
	assert_int_equal(state_of(ls, 3), LOCALSTORE_DONE);
	assert_int_equal(state_of(ls, 5), LOCALSTORE_PENDING);
	localstore_close(ls);
}

/* ---- inbox ---- */

static void
test_inbox_states(void **state)
{
	struct localstore *ls = open_ok(tpath("inbox"));
	enum localstore_inbox_state prev = 99;
	uint64_t seq;
	void *entry;
	size_t len;

	(void)state;
	assert_int_equal(state_of(ls, 5), LOCALSTORE_ABSENT);
	assert_int_equal(localstore_inbox_put(ls, 5, "entry-5", 7, &prev), 0);
	assert_int_equal(prev, LOCALSTORE_ABSENT);
	assert_int_equal(state_of(ls, 5), LOCALSTORE_PENDING);

	/* A redelivery while PENDING: reported, nothing changes. */
	prev = 99;
	assert_int_equal(localstore_inbox_put(ls, 5, "entry-5", 7, &prev), 0);
	assert_int_equal(prev, LOCALSTORE_PENDING);
	assert_int_equal(localstore_inbox_put(ls, 5, "entry-5", 7, NULL), 0);
	/* The same seq with other bytes: refused, the first kept. */
	prev = 99;
	assert_int_equal(localstore_inbox_put(ls, 5, "entry-X", 7, &prev), IHALA_EINCONSISTENT);
	assert_int_equal(prev, LOCALSTORE_PENDING);
	assert_int_equal(localstore_inbox_put(ls, 5, "entry-55", 8, &prev), IHALA_EINCONSISTENT);
	assert_int_equal(localstore_inbox_next_pending(ls, 0, &seq, &entry, &len), 0);
	assert_int_equal(seq, 5);
	assert_int_equal(len, 7);
	assert_memory_equal(entry, "entry-5", 7);
	free(entry);

	/* done: DONE, idempotent. */
	assert_int_equal(localstore_inbox_done(ls, 5), 0);
	assert_int_equal(state_of(ls, 5), LOCALSTORE_DONE);
	assert_int_equal(localstore_inbox_done(ls, 5), 0);
	assert_int_equal(state_of(ls, 5), LOCALSTORE_DONE);
	/* A redelivery after DONE: reported, stays DONE, not pending again. */
	prev = 99;
	assert_int_equal(localstore_inbox_put(ls, 5, "entry-5", 7, &prev), 0);
	assert_int_equal(prev, LOCALSTORE_DONE);
	assert_int_equal(state_of(ls, 5), LOCALSTORE_DONE);
	assert_int_equal(localstore_inbox_next_pending(ls, 0, &seq, &entry, &len), IHALA_ENOTFOUND);

	/* done of a seq never delivered is refused and records nothing. */
	assert_int_equal(localstore_inbox_done(ls, 6), IHALA_ENOTFOUND);
	assert_int_equal(state_of(ls, 6), LOCALSTORE_ABSENT);
	assert_int_equal(state_of(ls, UINT64_MAX), LOCALSTORE_ABSENT);
	assert_int_equal(localstore_inbox_put(ls, UINT64_MAX, "max", 3, &prev), 0);
	assert_int_equal(state_of(ls, UINT64_MAX), LOCALSTORE_PENDING);
	localstore_close(ls);
}

static void
next_is(struct localstore *ls, uint64_t after, uint64_t want)
{
	char buf[32];
	uint64_t seq = 0;
	void *entry = NULL;
	size_t len = 0;

	assert_int_equal(localstore_inbox_next_pending(ls, after, &seq, &entry, &len), 0);
	assert_int_equal(seq, want);
	snprintf(buf, sizeof(buf), "e%llu", (unsigned long long)want);
	assert_int_equal(len, strlen(buf));
	assert_memory_equal(entry, buf, len);
	free(entry);
}

static void
test_inbox_next_pending(void **state)
{
	static const uint64_t seqs[] = {70, 3, 1000, 5, 256, 255};
	struct localstore *ls = open_ok(tpath("pending"));
	uint64_t seq = 42;
	void *entry = (void *)1;
	size_t i, len = 42;
	char buf[32];

	(void)state;
	assert_int_equal(localstore_inbox_next_pending(ls, 0, &seq, &entry, &len), IHALA_ENOTFOUND);
	assert_int_equal(seq, 42); /* untouched */
	for (i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
		snprintf(buf, sizeof(buf), "e%llu", (unsigned long long)seqs[i]);
		assert_int_equal(localstore_inbox_put(ls, seqs[i], buf, strlen(buf), NULL), 0);
	}
	assert_int_equal(localstore_inbox_done(ls, 5), 0);
	assert_int_equal(localstore_inbox_done(ls, 256), 0);

	/* Numeric order (big-endian keys: 255 < 256 < 1000), DONE skipped. */
	next_is(ls, 0, 3);
	next_is(ls, 3, 70);
	next_is(ls, 4, 70); /* 5 is DONE */
	next_is(ls, 70, 255);
	next_is(ls, 255, 1000); /* 256 is DONE */
	assert_int_equal(localstore_inbox_next_pending(ls, 1000, &seq, &entry, &len),
	                 IHALA_ENOTFOUND);
	assert_int_equal(localstore_inbox_next_pending(ls, UINT64_MAX, &seq, &entry, &len),
	                 IHALA_ENOTFOUND);

	/* Process them all: none pending, all remembered. */
	assert_int_equal(localstore_inbox_done(ls, 3), 0);
	assert_int_equal(localstore_inbox_done(ls, 70), 0);
	assert_int_equal(localstore_inbox_done(ls, 255), 0);
	assert_int_equal(localstore_inbox_done(ls, 1000), 0);
	assert_int_equal(localstore_inbox_next_pending(ls, 0, &seq, &entry, &len), IHALA_ENOTFOUND);
	for (i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
		assert_int_equal(state_of(ls, seqs[i]), LOCALSTORE_DONE);
	}
	localstore_close(ls);
}

/* ---- checkpoint ---- */

static void
test_checkpoint(void **state)
{
	struct localstore *ls = open_ok(tpath("checkpoint"));
	char *text = (char *)1, *big;

	(void)state;
	assert_int_equal(localstore_checkpoint_get(ls, &text), IHALA_ENOTFOUND);
	assert_int_equal(localstore_checkpoint_put(ls, "origin\n1\nAAAA\n"), 0);
	assert_int_equal(localstore_checkpoint_get(ls, &text), 0);
	assert_string_equal(text, "origin\n1\nAAAA\n");
	free(text);
	/* Replaced by the next one. */
	assert_int_equal(localstore_checkpoint_put(ls, "origin\n9\nBBBB\n"), 0);
	assert_int_equal(localstore_checkpoint_get(ls, &text), 0);
	assert_string_equal(text, "origin\n9\nBBBB\n");
	free(text);

	/* Size limits: the largest fits, one more byte does not. */
	big = malloc(CHECKPOINT_TEXT_MAX + 2);
	assert_non_null(big);
	memset(big, 'c', CHECKPOINT_TEXT_MAX + 1);
	big[CHECKPOINT_TEXT_MAX + 1] = '\0';
	assert_int_equal(localstore_checkpoint_put(ls, big), IHALA_ETOOLARGE);
	big[CHECKPOINT_TEXT_MAX] = '\0';
	assert_int_equal(localstore_checkpoint_put(ls, big), 0);
	assert_int_equal(localstore_checkpoint_get(ls, &text), 0);
	assert_string_equal(text, big);
	free(text);
	free(big);
	assert_int_equal(localstore_checkpoint_put(ls, ""), IHALA_EINVAL);
	localstore_close(ls);
}

/* ---- journal ---- */

struct jseen {
	char got[512];
	int stop_after;
	int n;
};

static int
journal_collect(void *arg, const char *rid, uint64_t seq, const char *json)
{
	struct jseen *js = arg;
	size_t off = strlen(js->got);

	snprintf(js->got + off, sizeof(js->got) - off, "%s/%llu=%s;", rid, (unsigned long long)seq,
	         json);
	js->n++;
	return js->stop_after != 0 && js->n >= js->stop_after ? 7 : 0;
}

static void
test_journal(void **state)
{
	struct localstore *ls = open_ok(tpath("journal"));
	struct jseen js;

	(void)state;
	memset(&js, 0, sizeof(js));
	assert_int_equal(localstore_journal_iter(ls, "R1", journal_collect, &js), 0);
	assert_int_equal(js.n, 0);
	/* R10 sorts after R1 and must not be taken for one of R1's records. */
	assert_int_equal(localstore_journal_put(ls, "R10", 3, "{\"c\":1}"), 0);
	assert_int_equal(localstore_journal_put(ls, "R1", 300, "{\"b\":1}"), 0);
	assert_int_equal(localstore_journal_put(ls, "R1", 2, "{\"a\":0}"), 0);
	assert_int_equal(localstore_journal_put(ls, "R1", 2, "{\"a\":1}"), 0); /* replaces */
	assert_int_equal(localstore_journal_put(ls, "R0", 9, "{}"), 0);
	assert_int_equal(localstore_journal_iter(ls, "R1", journal_collect, &js), 0);
	assert_string_equal(js.got, "R1/2={\"a\":1};R1/300={\"b\":1};");
	memset(&js, 0, sizeof(js));
	assert_int_equal(localstore_journal_iter(ls, NULL, journal_collect, &js), 0);
	assert_string_equal(js.got, "R0/9={};R1/2={\"a\":1};R1/300={\"b\":1};R10/3={\"c\":1};");
	/* A callback's non-zero return stops the walk and is returned. */
	memset(&js, 0, sizeof(js));
	js.stop_after = 2;
	assert_int_equal(localstore_journal_iter(ls, NULL, journal_collect, &js), 7);
	assert_int_equal(js.n, 2);
	/* Kept across a reopen. */
	localstore_close(ls);
	ls = open_ok(tpath("journal"));
	memset(&js, 0, sizeof(js));
	assert_int_equal(localstore_journal_iter(ls, "R10", journal_collect, &js), 0);
	assert_string_equal(js.got, "R10/3={\"c\":1};");
	/* Bad arguments. */
	assert_int_equal(localstore_journal_put(ls, "", 1, "{}"), IHALA_EINVAL);
	assert_int_equal(localstore_journal_put(ls, "R1", 0, "{}"), IHALA_EINVAL);
	assert_int_equal(localstore_journal_put(ls, "R1", 1, ""), IHALA_EINVAL);
	localstore_close(ls);
}

/* The inbox keeps a delivery's sealed part beside it: dropped when the entry is done, and by
 * an erasure, with the journal's records of the erased seqs (any referral); a redelivery of
 * an erased entry (no sealed part) is no inconsistency. */
static void
test_inbox_sealed_and_erasure(void **state)
{
	struct localstore *ls = open_ok(tpath("sealed"));
	enum localstore_inbox_state prev;
	static const uint64_t erase[] = {5, 6, 99};
	struct jseen js;
	void *p = NULL;
	size_t len = 0, n = 0;

	(void)state;
	assert_int_equal(localstore_inbox_put_sealed(ls, 5, "e5", 2, "S5", 2, &prev), 0);
	assert_int_equal(localstore_inbox_put_sealed(ls, 6, "e6", 2, "S6", 2, &prev), 0);
	assert_int_equal(localstore_inbox_put_sealed(ls, 7, "e7", 2, "S7", 2, &prev), 0);
	assert_int_equal(localstore_inbox_put(ls, 8, "e8", 2, &prev), 0);
	assert_int_equal(localstore_inbox_sealed(ls, 5, &p, &len), 0);
	assert_int_equal(len, 2);
	assert_memory_equal(p, "S5", 2);
	free(p);
	assert_int_equal(localstore_inbox_sealed(ls, 8, &p, &len), IHALA_ENOTFOUND);
	/* done: the sealed part goes with the bytes */
	assert_int_equal(localstore_inbox_done(ls, 7), 0);
	assert_int_equal(localstore_inbox_sealed(ls, 7, &p, &len), IHALA_ENOTFOUND);
	/* journal records of seqs 5 and 6 (an onward referral's too), and one to keep */
	assert_int_equal(localstore_journal_put_bytes(ls, "R1", 5, "\x30\x00x", 3), 0);
	assert_int_equal(localstore_journal_put(ls, "R1", 9, "{}"), 0);
	assert_int_equal(localstore_journal_put(ls, "R1-onward", 6, "{}"), 0);
	/* a message this node sent, logged as seq 6: kept as sent until erased */
	put_ok(ls, "m-sent", "record");
	assert_int_equal(localstore_outbox_sent(ls, "m-sent", 6, T0, WEEK), 0);
	assert_int_equal(count(ls), 0);
	{
		uint64_t sseq = 0;

		assert_int_equal(localstore_sent_get(ls, "m-sent", &p, &len, &sseq), 0);
		assert_int_equal(sseq, 6);
		assert_int_equal(len, 6);
		assert_memory_equal(p, "record", 6);
		free(p);
	}
	assert_int_equal(localstore_outbox_sent(ls, "m-none", 6, T0, WEEK), IHALA_ENOTFOUND);
	assert_int_equal(localstore_erase_seqs(ls, erase, 3, &n), 0);
	assert_int_equal(n, 5);
	assert_int_equal(localstore_sent_get(ls, "m-sent", &p, &len, NULL), IHALA_ENOTFOUND);
	assert_int_equal(localstore_inbox_sealed(ls, 5, &p, &len), IHALA_ENOTFOUND);
	assert_int_equal(localstore_inbox_sealed(ls, 6, &p, &len), IHALA_ENOTFOUND);
	memset(&js, 0, sizeof(js));
	assert_int_equal(localstore_journal_iter(ls, NULL, journal_collect, &js), 0);
	assert_string_equal(js.got, "R1/9={};");
	/* idempotent, and the entry itself (clear) is still pending */
	assert_int_equal(localstore_erase_seqs(ls, erase, 3, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(localstore_inbox_put_sealed(ls, 5, "e5", 2, NULL, 0, &prev), 0);
	assert_int_equal(prev, LOCALSTORE_PENDING);
	/* durable: still so after a reopen */
	localstore_close(ls);
	ls = open_ok(tpath("sealed"));
	assert_int_equal(localstore_inbox_sealed(ls, 6, &p, &len), IHALA_ENOTFOUND);
	assert_int_equal(localstore_inbox_put_sealed(ls, 9, "e9", 2, NULL, 3, &prev), IHALA_EINVAL);
	localstore_close(ls);
}

/* ---- the sent list's retention ---- */

/* Queue `id` and have the broker log it as seq at t_ms, kept keep_ms. */
static void
send_ok(struct localstore *ls, const char *id, uint64_t seq, uint64_t t_ms, uint64_t keep_ms)
{
	put_ok(ls, id, id);
	assert_int_equal(localstore_outbox_sent(ls, id, seq, t_ms, keep_ms), 0);
}

/* 1 when `id` has a sent record (of seq, when seq != 0). */
static int
is_sent(struct localstore *ls, const char *id, uint64_t seq)
{
	uint64_t got = 0;
	size_t len = 0;
	void *p = NULL;
	int rc = localstore_sent_get(ls, id, &p, &len, &got);

	assert_true(rc == 0 || rc == IHALA_ENOTFOUND);
	if (rc == 0) {
		assert_int_equal(len, strlen(id));
		assert_memory_equal(p, id, len);
		free(p);
	}
	return rc == 0 && (seq == 0 || got == seq);
}

static size_t
prune(struct localstore *ls, uint64_t now_ms)
{
	size_t n = 12345;

	assert_int_equal(localstore_sent_prune(ls, now_ms, WEEK, &n), 0);
	return n;
}

/*
 * A sent record is kept sent_keep after its first receipt, then pruned: not before, not
 * younger for a DUPLICATE receipt of the same seq; keep 0 keeps none; pruned records are gone
 * after a reopen too.
 */
static void
test_sent_keep(void **state)
{
	struct localstore *ls = open_ok(tpath("sentkeep"));

	(void)state;
	send_ok(ls, "m-a", 10, T0, WEEK);
	send_ok(ls, "m-b", 11, T0 + DAY, WEEK);
	/* within the period: kept */
	assert_int_equal(prune(ls, T0 + WEEK - 1), 0);
	assert_true(is_sent(ls, "m-a", 10));
	assert_true(is_sent(ls, "m-b", 11));
	/* past it: the older goes, the younger stays */
	assert_int_equal(prune(ls, T0 + WEEK + 1), 1);
	assert_false(is_sent(ls, "m-a", 0));
	assert_true(is_sent(ls, "m-b", 11));
	assert_int_equal(prune(ls, T0 + WEEK + 1), 0);
	/* m-b sent again, answered DUPLICATE (seq 11) six days on: its age still counts from its
	 * first receipt */
	send_ok(ls, "m-b", 11, T0 + WEEK, WEEK);
	assert_int_equal(prune(ls, T0 + DAY + WEEK - 1), 0);
	assert_int_equal(prune(ls, T0 + DAY + WEEK + 1), 1);
	assert_false(is_sent(ls, "m-b", 0));
	/* keep 0: nothing kept past the receipt, and an older record of the id goes with it */
	send_ok(ls, "m-c", 12, T0, WEEK);
	send_ok(ls, "m-c", 13, T0 + HOUR, 0);
	assert_false(is_sent(ls, "m-c", 0));
	assert_int_equal(count(ls), 0);
	send_ok(ls, "m-d", 14, T0, 0);
	assert_false(is_sent(ls, "m-d", 0));
	/* durable */
	send_ok(ls, "m-e", 15, T0, WEEK);
	assert_int_equal(prune(ls, T0 + WEEK + 1), 1);
	localstore_close(ls);
	ls = open_ok(tpath("sentkeep"));
	assert_false(is_sent(ls, "m-e", 0));
	assert_int_equal(localstore_sent_prune(NULL, T0, WEEK, NULL), IHALA_EINVAL);
	localstore_close(ls);
}

/*
 * Pruning is cheap: each receipt prunes LOCALSTORE_PRUNE_STEP of the expired records in its
 * own commit, and localstore_sent_prune takes any number, LOCALSTORE_PRUNE_BATCH a commit.
 */
static void
test_sent_prune_batches(void **state)
{
	struct localstore *ls = open_ok(tpath("sentbatch"));
	size_t i, n = LOCALSTORE_PRUNE_BATCH + LOCALSTORE_PRUNE_STEP + 10, left;
	char id[32];

	(void)state;
	for (i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "m-%zu", i);
		send_ok(ls, id, 100 + i, T0 + i, WEEK);
	}
	/* a receipt past the period of all of them: the oldest STEP go with it */
	send_ok(ls, "m-late", 99, T0 + WEEK + n, WEEK);
	for (i = 0, left = 0; i < n; i++) {
		snprintf(id, sizeof(id), "m-%zu", i);
		left += is_sent(ls, id, 100 + i);
		assert_int_equal(is_sent(ls, id, 0), i >= LOCALSTORE_PRUNE_STEP);
	}
	assert_int_equal(left, n - LOCALSTORE_PRUNE_STEP);
	/* the rest in one call, past a batch; m-late stays */
	assert_int_equal(prune(ls, T0 + WEEK + n), n - LOCALSTORE_PRUNE_STEP);
	assert_true(is_sent(ls, "m-late", 99));
	assert_int_equal(prune(ls, T0 + WEEK + n), 0);
	localstore_close(ls);
}

/*
 * An erased record leaves its age behind: when that age is past, it drops nothing, not even
 * a younger record sent again under the same id.
 */
static void
test_sent_erased_then_sent_again(void **state)
{
	struct localstore *ls = open_ok(tpath("senterased"));
	static const uint64_t erase[] = {20};
	size_t n = 0;

	(void)state;
	send_ok(ls, "m-x", 20, T0, WEEK);
	assert_int_equal(localstore_erase_seqs(ls, erase, 1, &n), 0);
	assert_int_equal(n, 1);
	assert_false(is_sent(ls, "m-x", 0));
	send_ok(ls, "m-x", 21, T0 + 3 * DAY, WEEK);
	assert_int_equal(prune(ls, T0 + WEEK + 1), 0);
	assert_true(is_sent(ls, "m-x", 21));
	assert_int_equal(prune(ls, T0 + 3 * DAY + WEEK + 1), 1);
	assert_false(is_sent(ls, "m-x", 0));
	localstore_close(ls);
}

/* Empty database `db` of the environment in `dir`, bypassing localstore. */
static void
raw_empty(const char *dir, const char *db)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
	assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, db, 0, &dbi), 0);
	assert_int_equal(mdb_drop(txn, dbi, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

static void raw_put(const char *dir, const char *db, const char *key, const char *val);

/* A store whose sent records have no ages (made before they had) ages them from its opening:
 * kept sent_keep from then, not forever. */
static void
test_sent_unaged_store(void **state)
{
	const char *dir = tpath("sentold");
	struct localstore *ls = open_ok(dir);
	uint64_t now;

	(void)state;
	send_ok(ls, "m-old", 30, T0, WEEK);
	localstore_close(ls);
	raw_empty(dir, "sent_age");
	raw_put(dir, "meta", "sent_aged", NULL);
	now = (uint64_t)time(NULL) * 1000;
	ls = open_ok(dir);
	assert_int_equal(prune(ls, now + WEEK - HOUR), 0);
	assert_true(is_sent(ls, "m-old", 30));
	assert_int_equal(prune(ls, now + WEEK + HOUR), 1);
	assert_false(is_sent(ls, "m-old", 0));
	localstore_close(ls);
}

/* ---- format version ---- */

/* Put (val != NULL) or delete `key` in database `db` (NULL: the main one)
 * of the environment in `dir`, bypassing localstore. */
static void
raw_put(const char *dir, const char *db, const char *key, const char *val)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k, v;

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
	assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, db, 0, &dbi), 0);
	k.mv_data = (void *)key;
	k.mv_size = strlen(key);
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
raw_get(const char *dir, const char *key, char *out, size_t size)
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
open_refused(const char *dir, int want)
{
	struct localstore *ls = (void *)1;

	assert_int_equal(localstore_open(dir, &ls), want);
	assert_null(ls);
}

static void
test_version(void **state)
{
	const char *dir = tpath("version");
	const char *alien = tpath("alien");
	struct localstore *ls = open_ok(dir);
	char got[32];

	(void)state;
	put_ok(ls, "kept", "K");
	localstore_close(ls);
	raw_get(dir, "format_version", got, sizeof(got));
	assert_string_equal(got, "1");

	/* Another version: refused and left untouched. */
	raw_put(dir, "meta", "format_version", "2");
	open_refused(dir, IHALA_EVERSION);
	raw_get(dir, "format_version", got, sizeof(got));
	assert_string_equal(got, "2");
	/* No version at all. */
	raw_put(dir, "meta", "format_version", NULL);
	open_refused(dir, IHALA_EVERSION);
	/* Back to "1": opens, data intact. */
	raw_put(dir, "meta", "format_version", "1");
	ls = open_ok(dir);
	assert_string_equal(iter_all(ls), "kept=K;");
	localstore_close(ls);
	/* Right version, wrong kind (e.g. a broker store). */
	raw_put(dir, "meta", "kind", "broker");
	open_refused(dir, IHALA_EVERSION);
	raw_put(dir, "meta", "kind", "client");
	localstore_close(open_ok(dir));

	/* An LMDB environment that is not ours (data in the main db). */
	assert_int_equal(mkdir(alien, 0700), 0);
	raw_put(alien, NULL, "stranger", "x");
	open_refused(alien, IHALA_EVERSION);
}

/* ---- refusals ---- */

static void
test_bad_arguments(void **state)
{
	struct localstore *ls = open_ok(tpath("badargs")), *other = (void *)1;
	char id65[66], id64[65], *text;
	enum localstore_inbox_state st;
	uint64_t seq;
	void *entry;
	size_t n;

	(void)state;
	memset(id65, 'x', 65);
	id65[65] = '\0';
	memset(id64, 'y', 64);
	id64[64] = '\0';

	assert_int_equal(localstore_open(NULL, &other), IHALA_EINVAL);
	assert_null(other);
	other = (void *)1;
	assert_int_equal(localstore_open("", &other), IHALA_EINVAL);
	assert_null(other);
	assert_int_equal(localstore_open(tpath("x"), NULL), IHALA_EINVAL);

	/* Message ids: 1..64 printable ASCII, no spaces. */
	assert_int_equal(localstore_outbox_put(ls, id64, "e", 1), 0);
	assert_int_equal(localstore_outbox_put(ls, id65, "e", 1), IHALA_EINVAL);
	assert_int_equal(localstore_outbox_put(ls, "", "e", 1), IHALA_EINVAL);
	assert_int_equal(localstore_outbox_put(ls, NULL, "e", 1), IHALA_EINVAL);
	assert_int_equal(localstore_outbox_put(ls, "has space", "e", 1), IHALA_EINVAL);
	assert_int_equal(localstore_outbox_put(ls, "tab\t", "e", 1), IHALA_EINVAL);
	assert_int_equal(localstore_outbox_put(ls, "caf\xc3\xa9", "e", 1), IHALA_EINVAL);
	assert_int_equal(localstore_outbox_put(ls, "ok", NULL, 1), IHALA_EINVAL);
	assert_int_equal(localstore_outbox_put(ls, "ok", "e", 0), IHALA_EINVAL);
	assert_int_equal(localstore_outbox_put(ls, "ok", "e", (size_t)UINT32_MAX), IHALA_ETOOLARGE);
	assert_int_equal(localstore_outbox_put(NULL, "ok", "e", 1), IHALA_EINVAL);
	assert_int_equal(localstore_outbox_del(ls, id65), IHALA_EINVAL);
	assert_int_equal(localstore_outbox_del(ls, ""), IHALA_EINVAL);
	assert_int_equal(localstore_outbox_del(NULL, "ok"), IHALA_EINVAL);
	assert_int_equal(localstore_outbox_iter(ls, NULL, NULL), IHALA_EINVAL);
	assert_int_equal(localstore_outbox_iter(NULL, collect_cb, NULL), IHALA_EINVAL);
	assert_int_equal(localstore_outbox_count(ls, NULL), IHALA_EINVAL);
	assert_int_equal(localstore_outbox_count(NULL, &n), IHALA_EINVAL);
	assert_int_equal(count(ls), 1); /* only the 64-byte id went in */

	/* Inbox: seq 0, missing bytes, NULL outputs. */
	assert_int_equal(localstore_inbox_put(ls, 0, "e", 1, &st), IHALA_EINVAL);
	assert_int_equal(localstore_inbox_put(ls, 1, NULL, 1, &st), IHALA_EINVAL);
	assert_int_equal(localstore_inbox_put(ls, 1, "e", 0, &st), IHALA_EINVAL);
	assert_int_equal(localstore_inbox_put(NULL, 1, "e", 1, &st), IHALA_EINVAL);
	assert_int_equal(localstore_inbox_done(ls, 0), IHALA_EINVAL);
	assert_int_equal(localstore_inbox_done(NULL, 1), IHALA_EINVAL);
	assert_int_equal(localstore_inbox_state(ls, 0, &st), IHALA_EINVAL);
	assert_int_equal(localstore_inbox_state(ls, 1, NULL), IHALA_EINVAL);
	assert_int_equal(localstore_inbox_next_pending(ls, 0, NULL, &entry, &n), IHALA_EINVAL);
	assert_int_equal(localstore_inbox_next_pending(ls, 0, &seq, NULL, &n), IHALA_EINVAL);
	assert_int_equal(localstore_inbox_next_pending(ls, 0, &seq, &entry, NULL), IHALA_EINVAL);
	assert_int_equal(state_of(ls, 1), LOCALSTORE_ABSENT);

	/* Checkpoint. */
	assert_int_equal(localstore_checkpoint_put(ls, NULL), IHALA_EINVAL);
	assert_int_equal(localstore_checkpoint_put(NULL, "c"), IHALA_EINVAL);
	assert_int_equal(localstore_checkpoint_get(ls, NULL), IHALA_EINVAL);
	assert_int_equal(localstore_checkpoint_get(NULL, &text), IHALA_EINVAL);
	localstore_close(ls);
}

/*
 * Filling the 256 MiB map: the write that does not fit is refused with
 * IHALA_ESTOREFULL and leaves the store as it was; once a receipt removes
 * an entry there is room again. 16 MiB entries: LMDB 0.9.24 leaks its
 * spill list when a transaction that spilled is aborted, and one entry
 * larger than half its dirty-page room (~256 MiB) would spill.
 */
static void
test_store_full(void **state)
{
	struct localstore *ls = open_ok(tpath("full"));
	size_t chunk = (size_t)16 << 20, n, i;
	char id[32], *buf = malloc(chunk);
	int err = 0;

	(void)state;
	assert_non_null(buf);
	memset(buf, 'f', chunk);
	for (i = 0; i < 64; i++) {
		snprintf(id, sizeof(id), "fill-%zu", i);
		if ((err = localstore_outbox_put(ls, id, buf, chunk)) != 0) {
			break;
		}
	}
	assert_int_equal(err, IHALA_ESTOREFULL);
	assert_true(i >= 8 && i < 16); /* it did fill, within the map */
	assert_int_equal(count(ls), i);
	assert_int_equal(localstore_inbox_put(ls, 1, buf, chunk, NULL), IHALA_ESTOREFULL);
	assert_int_equal(state_of(ls, 1), LOCALSTORE_ABSENT);
	n = i;

	/* Receipts make room; the refused id can then be queued. */
	assert_int_equal(localstore_outbox_del(ls, "fill-0"), 0);
	assert_int_equal(localstore_outbox_del(ls, "fill-1"), 0);
	assert_int_equal(localstore_outbox_put(ls, id, buf, chunk), 0);
	assert_int_equal(count(ls), n - 1);
	free(buf);
	localstore_close(ls);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_open_creates_dir),
	    cmocka_unit_test(test_second_open_refused),
	    cmocka_unit_test(test_rejected),
	    cmocka_unit_test(test_outbox_order_del_count),
	    cmocka_unit_test(test_outbox_binary),
	    cmocka_unit_test(test_outbox_same_id),
	    cmocka_unit_test(test_outbox_replace),
	    cmocka_unit_test(test_outbox_iter_stop_and_mutate),
	    cmocka_unit_test(test_reopen_keeps_everything),
	    cmocka_unit_test(test_survives_crash),
	    cmocka_unit_test(test_inbox_states),
	    cmocka_unit_test(test_inbox_next_pending),
	    cmocka_unit_test(test_checkpoint),
	    cmocka_unit_test(test_journal),
	    cmocka_unit_test(test_inbox_sealed_and_erasure),
	    cmocka_unit_test(test_sent_keep),
	    cmocka_unit_test(test_sent_prune_batches),
	    cmocka_unit_test(test_sent_erased_then_sent_again),
	    cmocka_unit_test(test_sent_unaged_store),
	    cmocka_unit_test(test_version),
	    cmocka_unit_test(test_bad_arguments),
	    cmocka_unit_test(test_store_full),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
