/* accounts_test.c - clients/web/accounts: names, argon2id verify, the file's mode and lines;
 * clients/web/sessions: sessions per clerk, idle expiry, the failed-login throttle. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "accounts.h"
#include "sessions.h"

static char dir[] = "/tmp/accounts_test.XXXXXX";
static char path[sizeof(dir) + 32];

static int
setup(void **state)
{
	(void)state;
	if (mkdtemp(dir) == NULL) {
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s", dir, ACCOUNTS_FILE);
	return 0;
}

static int
teardown(void **state)
{
	char tmp[sizeof(path) + 8];

	(void)state;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	unlink(path);
	unlink(tmp);
	rmdir(dir);
	return 0;
}

static void
write_file(const char *text, mode_t mode)
{
	FILE *fp;

	unlink(path);
	assert_non_null(fp = fopen(path, "w"));
	fputs(text, fp);
	fclose(fp);
	assert_int_equal(chmod(path, mode), 0);
}

static void
test_names(void **state)
{
	static const char *const good[] = {"layla",   "a",  "l.saeed",
	                                   "clerk_2", "9x", "abcdefghijklmnopqrstuvwxyz012345"};
	static const char *const bad[] = {"",        "Layla", "layla saeed",
	                                  ".layla",  "-x",    "نور",
	                                  "a:b",     "a/b",   "abcdefghijklmnopqrstuvwxyz0123456",
	                                  "<script>"};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_true(accounts_name_valid(good[i]));
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (accounts_name_valid(bad[i])) {
			fail_msg("'%s' taken as a name", bad[i]);
		}
	}
}

/* add, verify (right, wrong, unknown name), save 0600, load back, passwd, remove */
static void
test_add_verify_save_load(void **state)
{
	struct accounts a, b;
	struct stat st;
	char why[256], clerk[ID_CLERK_MAX + 1], clerk2[ID_CLERK_MAX + 1], buf[4096],
	    st1[ACCOUNTS_STAMP_LEN + 1], st2[ACCOUNTS_STAMP_LEN + 1];
	const char *pw = "correct horse battery";
	FILE *fp;
	size_t n;

	(void)state;
	unlink(path);
	assert_int_equal(accounts_load(path, &a, why, sizeof(why)), 0);
	assert_int_equal(a.n, 0);
	assert_false(accounts_verify(&a, "layla", pw, strlen(pw), clerk));

	assert_int_equal(accounts_set(&a, "layla", pw, strlen(pw), 1, why, sizeof(why)), 0);
	assert_int_equal(accounts_set(&a, "omar", "another one!", 12, 1, why, sizeof(why)), 0);
	assert_int_equal(a.n, 2);
	assert_true(id_clerk_valid(a.v[0].clerk_id));
	assert_string_not_equal(a.v[0].clerk_id, a.v[1].clerk_id);
	assert_null(strstr(a.v[0].clerk_id, "layla"));
	assert_int_equal(strncmp(a.v[0].hash, "$argon2id$", 10), 0);

	memset(clerk, 0, sizeof(clerk));
	assert_true(accounts_verify(&a, "layla", pw, strlen(pw), clerk));
	assert_string_equal(clerk, a.v[0].clerk_id);
	assert_false(accounts_verify(&a, "layla", "correct horse batterY", strlen(pw), clerk2));
	assert_false(accounts_verify(&a, "layla", pw, strlen(pw) - 1, clerk2));
	assert_false(accounts_verify(&a, "nobody", pw, strlen(pw), clerk2));
	/* another account's password is not this one's */
	assert_false(accounts_verify(&a, "omar", pw, strlen(pw), clerk2));

	assert_int_equal(accounts_save(path, &a, why, sizeof(why)), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_non_null(fp = fopen(path, "r"));
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	buf[n] = '\0';
	fclose(fp);
	assert_null(strstr(buf, pw));
	assert_non_null(strstr(buf, "layla "));

	assert_int_equal(accounts_load(path, &b, why, sizeof(why)), 0);
	assert_int_equal(b.n, 2);
	assert_true(accounts_verify(&b, "layla", pw, strlen(pw), clerk2));
	assert_string_equal(clerk2, clerk);

	/* passwd: a new hash (a new stamp: the sessions opened with the old one end), the same
	 * clerk id; the old password no longer opens */
	accounts_stamp(accounts_find(&b, "layla"), st1);
	assert_int_equal(strlen(st1), ACCOUNTS_STAMP_LEN);
	accounts_stamp(accounts_find(&b, "layla"), st2);
	assert_string_equal(st1, st2);
	assert_int_equal(accounts_set(&b, "layla", "new password 2", 14, 0, why, sizeof(why)), 0);
	accounts_stamp(accounts_find(&b, "layla"), st2);
	assert_string_not_equal(st1, st2);
	assert_false(accounts_verify(&b, "layla", pw, strlen(pw), clerk2));
	assert_true(accounts_verify(&b, "layla", "new password 2", 14, clerk2));
	assert_string_equal(clerk2, clerk);

	assert_int_equal(accounts_remove(&b, "layla"), 0);
	assert_int_equal(accounts_remove(&b, "layla"), -1);
	assert_false(accounts_verify(&b, "layla", "new password 2", 14, clerk2));
	assert_int_equal(b.n, 1);
	accounts_release(&a);
	accounts_release(&b);
}

static void
test_set_refused(void **state)
{
	struct accounts a;
	char why[256];

	(void)state;
	memset(&a, 0, sizeof(a));
	assert_int_equal(accounts_set(&a, "Layla", "long enough pw", 14, 1, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "invalid name"));
	assert_int_equal(accounts_set(&a, "layla", "short", 5, 1, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "password"));
	assert_int_equal(accounts_set(&a, "layla", "with\0nul in it", 14, 1, why, sizeof(why)), -1);
	assert_int_equal(accounts_set(&a, "layla", "long enough pw", 14, 0, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "no account"));
	assert_int_equal(accounts_set(&a, "layla", "long enough pw", 14, 1, why, sizeof(why)), 0);
	assert_int_equal(accounts_set(&a, "layla", "long enough pw", 14, 1, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "exists already"));
	accounts_release(&a);
}

static void
test_load_refused(void **state)
{
	static const struct {
		const char *text, *why;
	} bad[] = {
	    {"layla c-1\n", ":1: expected NAME CLERK_ID HASH"},
	    {"# c\nLayla c-1 $argon2id$v=19$x\n", ":2: the name is not"},
	    {"layla Layla.Saeed $argon2id$v=19$x\n", "the clerk id of 'layla'"},
	    {"layla c-1 $argon2i$v=19$x\n", "not an argon2id encoded hash"},
	    {"layla c-1 secret\n", "not an argon2id encoded hash"},
	    {"layla c-1 $argon2id$a\nlayla c-2 $argon2id$b\n", ":2: 'layla' is there twice"},
	    {"layla c-1 $argon2id$a\nomar c-1 $argon2id$b\n", "clerk id 'c-1' is there twice"},
	};
	struct accounts a;
	char why[512], longline[700];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_file(bad[i].text, 0600);
		assert_int_equal(accounts_load(path, &a, why, sizeof(why)), -1);
		if (strstr(why, bad[i].why) == NULL) {
			fail_msg("case %zu: '%s' lacks '%s'", i, why, bad[i].why);
		}
		assert_int_equal(a.n, 0);
	}
	memset(longline, 'a', sizeof(longline) - 2);
	longline[sizeof(longline) - 2] = '\n';
	longline[sizeof(longline) - 1] = '\0';
	write_file(longline, 0600);
	assert_int_equal(accounts_load(path, &a, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "longer than"));

	/* a good file open to group or others: refused */
	write_file("layla c-1 $argon2id$a\n", 0640);
	assert_int_equal(accounts_load(path, &a, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "chmod 600"));
	write_file("layla c-1 $argon2id$a\n", 0604);
	assert_int_equal(accounts_load(path, &a, why, sizeof(why)), -1);
	write_file("# ihala web users v1\n\nlayla c-1 $argon2id$a\n", 0600);
	assert_int_equal(accounts_load(path, &a, why, sizeof(why)), 0);
	assert_int_equal(a.n, 1);
	assert_string_equal(a.v[0].clerk_id, "c-1");
	accounts_release(&a);
}

/* Several clerks at once, each its own tokens; idle ones end; a forged or closed one opens
 * nothing. */
static void
test_sessions(void **state)
{
	struct sessions *s;
	char t1[SESSIONS_TOKEN_LEN + 1], c1[SESSIONS_TOKEN_LEN + 1], t2[SESSIONS_TOKEN_LEN + 1],
	    c2[SESSIONS_TOKEN_LEN + 1], csrf[SESSIONS_TOKEN_LEN + 1], clerk[ID_CLERK_MAX + 1],
	    forged[SESSIONS_TOKEN_LEN + 1], stamp[SESSIONS_STAMP_LEN + 1];
	int i;

	(void)state;
	assert_non_null(s = sessions_new(1000));
	assert_int_equal(sessions_open(s, "c-1", "stamp-1", 0, t1, c1), 0);
	assert_int_equal(sessions_open(s, "c-2", "", 10, t2, c2), 0);
	assert_string_not_equal(t1, t2);
	assert_string_not_equal(c1, c2);
	assert_string_not_equal(t1, c1);
	assert_int_equal(strlen(t1), SESSIONS_TOKEN_LEN);
	assert_true(sessions_find(s, t1, 500, csrf, clerk, stamp));
	assert_string_equal(clerk, "c-1");
	assert_string_equal(csrf, c1);
	assert_string_equal(stamp, "stamp-1");
	assert_true(sessions_find(s, t2, 500, csrf, clerk, stamp));
	assert_string_equal(clerk, "c-2");
	assert_string_equal(csrf, c2);
	assert_false(sessions_find(s, NULL, 500, csrf, clerk, stamp));
	assert_false(sessions_find(s, "", 500, csrf, clerk, stamp));
	memcpy(forged, t1, sizeof(forged));
	forged[0] = forged[0] == 'a' ? 'b' : 'a';
	assert_false(sessions_find(s, forged, 500, csrf, clerk, stamp));
	/* the CSRF token is not a session */
	assert_false(sessions_find(s, c1, 500, csrf, clerk, stamp));
	/* t1 used at 1400 (idle 900 ms) lives on; t2 last used at 500 is idle 1000 ms: ended */
	assert_true(sessions_find(s, t1, 1400, csrf, clerk, stamp));
	assert_false(sessions_find(s, t2, 1500, csrf, clerk, stamp));
	assert_false(sessions_find(s, t2, 1501, csrf, clerk, stamp));
	assert_int_equal(sessions_count(s, 1500), 1);
	sessions_close(s, t1);
	assert_false(sessions_find(s, t1, 1500, csrf, clerk, stamp));
	/* full: the least recently used goes */
	for (i = 0; i < SESSIONS_MAX; i++) {
		assert_int_equal(sessions_open(s, "c-3", "", 2000 + (uint64_t)i, t1, c1), 0);
		if (i == 0) {
			memcpy(t2, t1, sizeof(t2));
		}
	}
	assert_int_equal(sessions_count(s, 2100), SESSIONS_MAX);
	assert_int_equal(sessions_open(s, "c-4", "", 2100, t1, c1), 0);
	assert_false(sessions_find(s, t2, 2100, csrf, clerk, stamp));
	assert_true(sessions_find(s, t1, 2100, csrf, clerk, stamp));
	sessions_free(s);
}

static void
test_throttle(void **state)
{
	struct sessions *s;
	int i;

	(void)state;
	assert_non_null(s = sessions_new(1000));
	for (i = 0; i < SESSIONS_FAILS_MAX - 1; i++) {
		assert_int_equal(sessions_throttled(s, "192.0.2.1", 100), 0);
		sessions_login_failed(s, "192.0.2.1", 100);
	}
	assert_int_equal(sessions_throttled(s, "192.0.2.1", 100), 0);
	sessions_login_failed(s, "192.0.2.1", 100);
	assert_int_equal(sessions_throttled(s, "192.0.2.1", 100), SESSIONS_LOCK_MS);
	assert_int_equal(sessions_throttled(s, "192.0.2.1", 100 + SESSIONS_LOCK_MS - 1), 1);
	/* another address is not held back */
	assert_int_equal(sessions_throttled(s, "192.0.2.2", 100), 0);
	/* after the wait, one more try; failed, another wait */
	assert_int_equal(sessions_throttled(s, "192.0.2.1", 100 + SESSIONS_LOCK_MS), 0);
	sessions_login_failed(s, "192.0.2.1", 100 + SESSIONS_LOCK_MS);
	assert_true(sessions_throttled(s, "192.0.2.1", 101 + SESSIONS_LOCK_MS) > 0);
	/* a success forgets the failures */
	sessions_login_ok(s, "192.0.2.1");
	assert_int_equal(sessions_throttled(s, "192.0.2.1", 101 + SESSIONS_LOCK_MS), 0);
	sessions_free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_names),       cmocka_unit_test(test_add_verify_save_load),
	    cmocka_unit_test(test_set_refused), cmocka_unit_test(test_load_refused),
	    cmocka_unit_test(test_sessions),    cmocka_unit_test(test_throttle),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
