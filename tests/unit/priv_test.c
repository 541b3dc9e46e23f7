/* priv_test.c - unit tests of broker/priv.c: switching to an unprivileged user, in children. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "priv.h"

/* Run fn in a child (a switch cannot be undone); its exit status is the result. */
static int
in_child(int (*fn)(void))
{
	pid_t pid = fork();
	int st;

	assert_true(pid >= 0);
	if (pid == 0) {
		_exit(fn());
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 100;
}

static void
test_nothing_to_do(void **state)
{
	uid_t u = getuid(), e = geteuid();

	(void)state;
	assert_int_equal(priv_drop(NULL), 0);
	assert_int_equal(getuid(), u);
	assert_int_equal(geteuid(), e);
}

static void
test_no_such_user(void **state)
{
	(void)state;
	assert_int_equal(priv_drop("no-such-user-ihala-test"), IHALA_ECONFIG);
}

/* As root: become nobody; everything switched, nothing left of root. */
static int
child_drop_to_nobody(void)
{
	struct passwd *pw = getpwnam("nobody");
	uid_t r, e, s;
	gid_t rg, eg, sg, groups[8];
	int n;

	if (pw == NULL) {
		return 10;
	}
	if (priv_drop("nobody") != 0) {
		return 11;
	}
	if (getresuid(&r, &e, &s) != 0 || r != pw->pw_uid || e != pw->pw_uid || s != pw->pw_uid) {
		return 12;
	}
	if (getresgid(&rg, &eg, &sg) != 0 || rg != pw->pw_gid || eg != pw->pw_gid ||
	    sg != pw->pw_gid) {
		return 13;
	}
	n = getgroups(8, groups);
	if (n != 1 || groups[0] != pw->pw_gid) {
		return 14;
	}
	if (setuid(0) == 0 || seteuid(0) == 0) {
		return 15;
	}
	/* Now not root: the same user again is fine, another one is refused. */
	if (priv_drop("nobody") != 0) {
		return 16;
	}
	if (priv_drop("root") != IHALA_ECONFIG) {
		return 17;
	}
	return 0;
}

static void
test_root_drops_to_nobody(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		skip();
	}
	assert_int_equal(in_child(child_drop_to_nobody), 0);
}

/* Not root: only "switching" to oneself is accepted. */
static int
child_not_root(void)
{
	struct passwd *pw = getpwuid(geteuid());
	char me[256];

	if (pw == NULL) {
		return 20;
	}
	snprintf(me, sizeof(me), "%s", pw->pw_name);
	if (priv_drop(me) != 0) {
		return 21;
	}
	if (priv_drop("root") != IHALA_ECONFIG) {
		return 22;
	}
	return 0;
}

static void
test_not_root(void **state)
{
	(void)state;
	if (geteuid() == 0) {
		skip(); /* covered inside test_root_drops_to_nobody */
	}
	assert_int_equal(in_child(child_not_root), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_nothing_to_do),
	    cmocka_unit_test(test_no_such_user),
	    cmocka_unit_test(test_root_drops_to_nobody),
	    cmocka_unit_test(test_not_root),
	};

	log_setlevel(LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
