/* agency_table_test.c - unit tests of broker/agency_table.c: the copy, and out of memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "agency_table.h"
#include "config.h"

/*
 * strdup, replaced for the whole program: the table's copies go through it, and the test
 * makes the Nth call fail (a reload while short of memory).
 */
static int strdup_fail_at = -1; /* the call that fails, counting from 0; -1 none */
static int strdup_calls;

char *
strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p;

	if (strdup_calls++ == strdup_fail_at) {
		return NULL;
	}
	p = malloc(n);
	if (p != NULL) {
		memcpy(p, s, n);
	}
	return p;
}

static char *moh_to[] = {"dma", "hi"};
static char *hi_to[] = {"dma"};

/* dma may address anyone; moh and hi only the agencies listed. */
static void
config_init(struct broker_config *cfg, struct agency_config ac[3])
{
	memset(cfg, 0, sizeof(*cfg));
	memset(ac, 0, 3 * sizeof(*ac));
	ac[0].id = "dma";
	ac[0].role = AGENCY_ROLE_DMA;
	ac[0].may_open_cases = 1; /* config.c sets it from the role or the option */
	ac[0].may_send = POLICY_KIND_REFERRAL | POLICY_KIND_STATUS | POLICY_KIND_NOTE;
	ac[0].may_send_to_any = 1;
	ac[1].id = "moh";
	ac[1].role = AGENCY_ROLE_MINISTRY;
	ac[1].may_send = POLICY_KIND_STATUS | POLICY_KIND_OUTCOME;
	ac[1].may_send_to = moh_to;
	ac[1].may_send_to_count = 2;
	ac[2].id = "hi";
	ac[2].role = AGENCY_ROLE_NGO;
	ac[2].may_send = POLICY_KIND_REFERRAL;
	ac[2].may_send_set = 1;
	ac[2].may_send_to = hi_to;
	ac[2].may_send_to_count = 1;
	cfg->agencies = ac;
	cfg->nagencies = 3;
	cfg->limits.queue_limit = 77;
	cfg->deadlines.emergency_ms = 1000;
	cfg->deadlines.urgent_ms = 2000;
	cfg->deadlines.normal_ms = 3000;
}

static void
test_copy(void **state)
{
	struct broker_config cfg;
	struct agency_config ac[3];
	struct writer_policy *wp;
	const struct policy_agency *pa;

	(void)state;
	config_init(&cfg, ac);
	wp = agency_table_new(&cfg);
	assert_non_null(wp);
	assert_int_equal(wp->queue_limit, 77);
	assert_int_equal(wp->deadline_ms[IHALA__V2__PRIORITY__PRIORITY_EMERGENCY], 1000);
	assert_int_equal(wp->deadline_ms[IHALA__V2__PRIORITY__PRIORITY_URGENT], 2000);
	assert_int_equal(wp->deadline_ms[IHALA__V2__PRIORITY__PRIORITY_NORMAL], 3000);
	assert_int_equal(wp->deadline_ms[0], 3000);

	pa = wp->view.find(wp->view.ctx, "dma");
	assert_non_null(pa);
	assert_int_equal(pa->role, IHALA__V2__ROLE__ROLE_DMA);
	assert_null(pa->may_send_to);
	assert_int_equal(pa->may_open_cases, 1);
	pa = wp->view.find(wp->view.ctx, "moh");
	assert_non_null(pa);
	assert_int_equal(pa->may_send, POLICY_KIND_STATUS | POLICY_KIND_OUTCOME);
	assert_int_equal(pa->may_open_cases, 0);
	assert_non_null(pa->may_send_to);
	assert_int_equal(pa->n_may_send_to, 2);
	assert_string_equal(pa->may_send_to[0], "dma");
	assert_string_equal(pa->may_send_to[1], "hi");
	pa = wp->view.find(wp->view.ctx, "hi");
	assert_non_null(pa);
	assert_int_equal(pa->may_open_cases,
	                 0); /* may_send naming referrals opens no case: only may_open_cases does */
	assert_int_equal(pa->n_may_send_to, 1);
	assert_null(wp->view.find(wp->view.ctx, "nobody"));
	/* a copy: the config may go (a reload frees it) */
	assert_ptr_not_equal(pa->id, ac[2].id);
	wp->release(wp);
}

/* Every copy that fails fails the whole table: never an agency without an id, nor a
 * recipient list that turned into "any agency". */
static void
test_out_of_memory(void **state)
{
	struct broker_config cfg;
	struct agency_config ac[3];
	struct writer_policy *wp;
	int n_copies, k;

	(void)state;
	config_init(&cfg, ac);
	strdup_calls = 0;
	wp = agency_table_new(&cfg);
	assert_non_null(wp);
	wp->release(wp);
	n_copies = strdup_calls;
	assert_int_equal(n_copies, 6); /* three ids, three recipients */
	for (k = 0; k < n_copies; k++) {
		strdup_calls = 0;
		strdup_fail_at = k;
		wp = agency_table_new(&cfg);
		strdup_fail_at = -1;
		if (wp != NULL) {
			print_error("copy %d failed and the table was made anyway\n", k);
			wp->release(wp);
			fail();
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_copy),
	    cmocka_unit_test(test_out_of_memory),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
