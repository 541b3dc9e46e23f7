/* accounts_test.c - clients/web/accounts: names, argon2id verify, the file's mode and lines. */
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
	char why[256], clerk[ID_CLERK_MAX + 1], clerk2[ID_CLERK_MAX + 1], buf[4096];
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

	/* passwd: a new hash, the same clerk id; the old password no longer opens */
	assert_int_equal(accounts_set(&b, "layla", "new password 2", 14, 0, why, sizeof(why)), 0);
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_add_verify_save_load),
	    cmocka_unit_test(test_set_refused),
	    cmocka_unit_test(test_load_refused),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
