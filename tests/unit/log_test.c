/* log_test.c - log lines keep peer-supplied text on one line (log_sanitize, and vlog using it);
 * log_capture. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

static void
test_sanitize(void **state)
{
	char out[64];

	(void)state;
	assert_int_equal(log_sanitize("plain text", out, sizeof(out)), 10);
	assert_string_equal(out, "plain text");
	log_sanitize("a\nb\rc\td", out, sizeof(out));
	assert_string_equal(out, "a\\nb\\rc\\td");
	log_sanitize("x\x01y\x1b[31m\x7fz", out, sizeof(out));
	assert_string_equal(out, "x\\x01y\\x1b[31m\\x7fz");
	/* UTF-8 (Arabic names) passes untouched. */
	log_sanitize("وزارة", out, sizeof(out));
	assert_string_equal(out, "وزارة");
	/* Truncated at a whole escape, always terminated. */
	assert_int_equal(log_sanitize("ab\ncd", out, 4), 2);
	assert_string_equal(out, "ab");
	assert_int_equal(log_sanitize("abc", out, 1), 0);
	assert_string_equal(out, "");
}

/* A message id with a newline cannot forge a second log line. */
static void
test_log_one_line(void **state)
{
	char path[] = "/tmp/ihala-log-test.XXXXXX";
	char buf[1024];
	int fd, saved;
	size_t n, lines = 0, i;
	FILE *f;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	saved = dup(2);
	assert_true(saved >= 0);
	fflush(stderr);
	dup2(fd, 2);
	log_init("ihala-test", 1);
	log_security("submission '%s' refused",
	             "m1\n2026-01-01T00:00:00.000Z ihala-broker: session 9: agency 'dma' (dma) "
	             "authenticated");
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	f = fdopen(fd, "r");
	assert_non_null(f);
	rewind(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	unlink(path);
	for (i = 0; i < n; i++) {
		lines += buf[i] == '\n';
	}
	assert_int_equal(lines, 1);
	assert_non_null(strstr(buf, "security: submission 'm1\\n2026-01-01"));
}

/* log_capture keeps the last warning's text (sanitized, errno appended) and writes nothing;
 * info lines pass through it; after log_capture(NULL, 0) warnings are written again. */
static void
test_capture(void **state)
{
	char path[] = "/tmp/ihala-log-test.XXXXXX";
	char why[128], buf[1024];
	int fd, saved;
	size_t n;
	FILE *f;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	saved = dup(2);
	assert_true(saved >= 0);
	fflush(stderr);
	dup2(fd, 2);
	log_init("ihala-test", 1);
	log_setlevel(LOG_LEVEL_ERROR); /* captured even when the level would hide it */
	log_capture(why, sizeof(why));
	log_warnx("first");
	errno = ENOENT;
	log_warn("cannot create directory '%s'", "/x\ny");
	log_capture(NULL, 0);
	log_setlevel(LOG_LEVEL_WARN);
	log_warnx("after");
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	f = fdopen(fd, "r");
	assert_non_null(f);
	rewind(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	unlink(path);
	assert_string_equal(why, "cannot create directory '/x\\ny': No such file or directory");
	assert_null(strstr(buf, "first"));
	assert_null(strstr(buf, "cannot create"));
	assert_non_null(strstr(buf, "after"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sanitize),
	    cmocka_unit_test(test_log_one_line),
	    cmocka_unit_test(test_capture),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
