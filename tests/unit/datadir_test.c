/* datadir_test.c - unit tests of proto/datadir.c: private store directories and their lock. */
#define _GNU_SOURCE /* nftw */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "datadir.h"
#include "error.h"
#include "log.h"

static char root[64];
static mode_t old_umask;

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
	/* No umask help: the modes below must come from datadir itself. */
	old_umask = umask(0);
	snprintf(root, sizeof(root), "/tmp/datadir_test.XXXXXX");
	return mkdtemp(root) != NULL ? 0 : -1;
}

static int
group_teardown(void **state)
{
	(void)state;
	umask(old_umask);
	return nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static mode_t
mode_of(const char *path)
{
	struct stat sb;

	assert_int_equal(stat(path, &sb), 0);
	return sb.st_mode & 07777;
}

static void
test_create_private(void **state)
{
	(void)state;
	assert_int_equal(datadir_prepare("test", tpath("c"), DATADIR_CREATE), 0);
	assert_int_equal(mode_of(tpath("c")), 0700);
	/* existing: fine, left as it is */
	assert_int_equal(datadir_prepare("test", tpath("c"), DATADIR_CREATE), 0);
	/* CREATE makes one level only */
	assert_int_equal(datadir_prepare("test", tpath("x/y"), DATADIR_CREATE), IHALA_EIO);
	assert_int_equal(access(tpath("x"), F_OK), -1);
}

static void
test_parents(void **state)
{
	(void)state;
	assert_int_equal(datadir_prepare("test", tpath("p/q/r"), DATADIR_PARENTS), 0);
	assert_int_equal(mode_of(tpath("p")), 0700);
	assert_int_equal(mode_of(tpath("p/q")), 0700);
	assert_int_equal(mode_of(tpath("p/q/r")), 0700);
	/* a trailing slash and an existing tree are fine */
	assert_int_equal(datadir_prepare("test", tpath("p/q/r/"), DATADIR_PARENTS), 0);
}

static void
test_rdonly(void **state)
{
	(void)state;
	/* must exist, nothing is created */
	assert_int_equal(datadir_prepare("test", tpath("ro"), DATADIR_RDONLY), IHALA_EIO);
	assert_int_equal(access(tpath("ro"), F_OK), -1);
	assert_int_equal(mkdir(tpath("ro"), 0755), 0);
	assert_int_equal(datadir_prepare("test", tpath("ro"), DATADIR_RDONLY), 0);
	assert_int_equal(mode_of(tpath("ro")), 0755); /* never changed, only warned about */
}

static void
test_refusals(void **state)
{
	char *longp;
	int fd;

	(void)state;
	assert_int_equal(datadir_prepare("test", "", DATADIR_CREATE), IHALA_EINVAL);
	longp = malloc(PATH_MAX + 2);
	assert_non_null(longp);
	memset(longp, 'a', PATH_MAX + 1);
	longp[PATH_MAX + 1] = '\0';
	assert_int_equal(datadir_prepare("test", longp, DATADIR_PARENTS), IHALA_EINVAL);
	free(longp);

	/* a file is not a directory, whatever the mode */
	fd = open(tpath("file"), O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(datadir_prepare("test", tpath("file"), DATADIR_CREATE), IHALA_EIO);
	assert_int_equal(datadir_prepare("test", tpath("file"), DATADIR_RDONLY), IHALA_EIO);
	assert_int_equal(datadir_prepare("test", tpath("file/sub"), DATADIR_PARENTS), IHALA_EIO);

	/* a group-readable directory is used (with a warning) */
	assert_int_equal(mkdir(tpath("open"), 0750), 0);
	assert_int_equal(datadir_prepare("test", tpath("open"), DATADIR_CREATE), 0);
}

static void
test_lock(void **state)
{
	int fd1 = -1, fd2 = -1, st;
	pid_t pid;

	(void)state;
	assert_int_equal(datadir_prepare("test", tpath("lk"), DATADIR_CREATE), 0);
	assert_int_equal(datadir_lock("test", tpath("lk"), "the.lock", &fd1), 0);
	assert_true(fd1 >= 0);
	assert_int_equal(mode_of(tpath("lk/the.lock")), 0600);
	assert_true((fcntl(fd1, F_GETFD) & FD_CLOEXEC) != 0);

	/* a second holder in this process is refused, quietly, with no fd left open */
	assert_int_equal(datadir_lock("test", tpath("lk"), "the.lock", &fd2), IHALA_EAGAIN);
	assert_int_equal(fd2, -1);

	/* and in another process */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = -1;

		_exit(datadir_lock("test", tpath("lk"), "the.lock", &fd) == IHALA_EAGAIN ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	/* another name is another lock */
	assert_int_equal(datadir_lock("test", tpath("lk"), "other.lock", &fd2), 0);
	close(fd2);

	/* closing releases it */
	close(fd1);
	assert_int_equal(datadir_lock("test", tpath("lk"), "the.lock", &fd2), 0);
	close(fd2);

	/* a directory that is not there */
	assert_int_equal(datadir_lock("test", tpath("nolk"), "the.lock", &fd2), IHALA_EIO);
	assert_int_equal(fd2, -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_create_private), cmocka_unit_test(test_parents),
	    cmocka_unit_test(test_rdonly),         cmocka_unit_test(test_refusals),
	    cmocka_unit_test(test_lock),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
