/* signer_test.c - the checkpoint signer process: signs tree heads, refuses the rest, its death. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "error.h"
#include "signer.h"

#define ORIGIN "signer.test/log"

static struct {
	char dir[64];
	char key[128];
	char pub[128];
	struct checkpoint_verifier *v;
} fx;

static int
setup(void **state)
{
	char cmd[512];

	(void)state;
	strcpy(fx.dir, "/tmp/ihala-signer-XXXXXX");
	if (mkdtemp(fx.dir) == NULL) {
		return -1;
	}
	snprintf(fx.key, sizeof(fx.key), "%s/key.pem", fx.dir);
	snprintf(fx.pub, sizeof(fx.pub), "%s/pub.pem", fx.dir);
	snprintf(cmd, sizeof(cmd),
	         "umask 077 && openssl genpkey -algorithm ed25519 -out %s && "
	         "openssl pkey -in %s -pubout -out %s",
	         fx.key, fx.key, fx.pub);
	if (system(cmd) != 0 || checkpoint_verifier_load(fx.pub, ORIGIN, &fx.v) != 0) {
		fprintf(stderr, "# cannot make a test key with the openssl command\n");
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	checkpoint_verifier_free(fx.v);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", fx.dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* sign (size, root filled with `fill`) and, when it succeeds, check the note. */
static int
sign(struct signer *sg, const char *origin, uint64_t size, uint8_t fill)
{
	uint8_t root[CHECKPOINT_HASH_LEN];
	struct checkpoint c;
	char *text = NULL;
	int err;

	memset(root, fill, sizeof(root));
	err = signer_sign(sg, origin, size, root, &text);
	if (err == 0) {
		assert_non_null(text);
		assert_int_equal(checkpoint_open(fx.v, ORIGIN, text, strlen(text), &c), 0);
		assert_int_equal(c.size, size);
		assert_memory_equal(c.root, root, sizeof(root));
	} else {
		assert_null(text);
	}
	free(text);
	return err;
}

/* Tree heads are signed in order; a smaller size, a second root for a size, size 0 and
 * another origin are refused. */
static void
test_tree_heads(void **state)
{
	struct signer *sg = NULL;

	(void)state;
	assert_int_equal(signer_start(fx.key, ORIGIN, NULL, -1, &sg), 0);
	assert_true(signer_pid(sg) > 0 && signer_pid(sg) != getpid());
	assert_int_equal(sign(sg, ORIGIN, 5, 0xaa), 0);
	assert_int_equal(sign(sg, ORIGIN, 5, 0xaa), 0);            /* the same head again */
	assert_int_equal(sign(sg, ORIGIN, 5, 0xbb), IHALA_EINVAL); /* a fork at size 5 */
	assert_int_equal(sign(sg, ORIGIN, 4, 0xaa), IHALA_EINVAL); /* an older view */
	assert_int_equal(sign(sg, ORIGIN, 0, 0xaa), IHALA_EINVAL);
	assert_int_equal(sign(sg, "another/log", 6, 0xaa), IHALA_EINVAL);
	assert_int_equal(sign(sg, ORIGIN, 6, 0xcc), 0); /* still serving after refusals */
	signer_stop(sg);
}

/* The child's key errors come back as start-up errors. */
static void
test_bad_keys(void **state)
{
	struct signer *sg = NULL;
	char open_key[160];
	char cmd[640];

	(void)state;
	assert_int_equal(signer_start("/nonexistent/key.pem", ORIGIN, NULL, -1, &sg), IHALA_EIO);
	assert_null(sg);
	snprintf(open_key, sizeof(open_key), "%s/open.pem", fx.dir);
	snprintf(cmd, sizeof(cmd), "cp %s %s && chmod 644 %s", fx.key, open_key, open_key);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(signer_start(open_key, ORIGIN, NULL, -1, &sg), IHALA_EKEYPERM);
	assert_null(sg);
}

/* A dead signer: reaped and described; signing says it is gone. */
static void
test_death(void **state)
{
	struct signer *sg = NULL;
	char why[128] = "";
	int i, gone = 0;

	(void)state;
	assert_int_equal(signer_start(fx.key, ORIGIN, NULL, -1, &sg), 0);
	assert_int_equal(signer_exited(sg, why, sizeof(why)), 0);
	assert_int_equal(kill(signer_pid(sg), SIGKILL), 0);
	for (i = 0; i < 200 && !gone; i++) {
		gone = signer_exited(sg, why, sizeof(why));
		if (!gone) {
			usleep(10 * 1000);
		}
	}
	assert_true(gone);
	assert_string_equal(why, "was killed by signal 9");
	assert_int_equal(sign(sg, ORIGIN, 1, 0x11), IHALA_ECLOSED);
	signer_stop(sg);
}

/* A stuck signer does not hold the broker's exit: killed after a second, and reaped. */
static void
test_stop_stuck(void **state)
{
	struct signer *sg = NULL;
	struct timespec a, b;
	pid_t pid;

	(void)state;
	assert_int_equal(signer_start(fx.key, ORIGIN, NULL, -1, &sg), 0);
	pid = signer_pid(sg);
	assert_int_equal(kill(pid, SIGSTOP), 0);
	clock_gettime(CLOCK_MONOTONIC, &a);
	signer_stop(sg);
	clock_gettime(CLOCK_MONOTONIC, &b);
	assert_true(b.tv_sec - a.tv_sec < 3);
	assert_int_equal(kill(pid, 0), -1); /* reaped: no such process */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tree_heads),
	    cmocka_unit_test(test_bad_keys),
	    cmocka_unit_test(test_death),
	    cmocka_unit_test(test_stop_stuck),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
