/* writer_test.c - unit tests of broker/writer.c: the thread, its PAIR pipe, the group commit. */
#define _GNU_SOURCE /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zmq.h>

#include "error.h"
#include "frame.h"
#include "ihala.pb-c.h"
#include "log.h"
#include "store.h"
#include "writer.h"

#define ROLE(x) IHALA__V2__ROLE__ROLE_##x
#define RS(x) IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_##x
#define ENDPOINT "inproc://writer-test"

/* ------------------------------------------------------------------------------------------ */
/* The agency table: a dma that refers, a ministry that answers.                               */

static const struct policy_agency agencies[] = {
    {"dma", ROLE(DMA), POLICY_KIND_REFERRAL | POLICY_KIND_STATUS | POLICY_KIND_NOTE, NULL, 0, 1},
    {"moh", ROLE(MINISTRY), POLICY_KIND_ALL, NULL, 0, 0},
};

static const struct policy_agency *
fake_find(void *ctx, const char *id)
{
	size_t i;

	(void)ctx;
	for (i = 0; i < sizeof(agencies) / sizeof(agencies[0]); i++) {
		if (strcmp(agencies[i].id, id) == 0) {
			return &agencies[i];
		}
	}
	return NULL;
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

struct msg {
	Ihala__V2__Envelope env;
	Ihala__V2__Referral ref;
	Ihala__V2__Survivor surv;
	Ihala__V2__Consent consent;
	char *consent_agencies[1];
	Ihala__V2__DataCategory consent_data[1];
	Ihala__V2__ServiceCode services[1];
	Ihala__V2__StatusUpdate su;
};

/* A complete, valid urgent referral `rid` from dma to moh, message id `mid`. */
static void
msg_referral(struct msg *m, const char *mid, const char *rid)
{
	memset(m, 0, sizeof(*m));
	ihala__v2__envelope__init(&m->env);
	ihala__v2__referral__init(&m->ref);
	ihala__v2__survivor__init(&m->surv);
	ihala__v2__consent__init(&m->consent);
	m->env.message_id = (char *)mid;
	m->env.to = "moh";
	m->env.kind_case = IHALA__V2__ENVELOPE__KIND_REFERRAL;
	m->env.referral = &m->ref;
	m->ref.referral_id = (char *)rid;
	m->ref.referring_agency = "dma";
	m->ref.receiving_agency = "moh";
	m->ref.priority = IHALA__V2__PRIORITY__PRIORITY_URGENT;
	m->services[0] = IHALA__V2__SERVICE_CODE__SERVICE_CODE_PROSTHETICS_ORTHOTICS;
	m->ref.n_services = 1;
	m->ref.services = m->services;
	m->surv.case_id = "IQ-NIN-000123"; /* sealed in v2: not in the clear part */
	m->consent.given = 1;
	m->consent.given_by = IHALA__V2__CONSENT_GIVER__CONSENT_GIVER_SURVIVOR;
	m->consent.date = "2025-03-01";
	m->consent_agencies[0] = "moh";
	m->consent.n_agencies = 1;
	m->consent.agencies = m->consent_agencies;
	m->consent_data[0] = IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_NEEDS; /* its services */
	m->consent.n_data_covered = 1;
	m->consent.data_covered = m->consent_data;
	m->ref.consent = &m->consent;
}

static struct wreq *
submit_req(const struct msg *m)
{
	struct wreq *r = wreq_new(WREQ_SUBMIT);
	size_t len = ihala__v2__envelope__get_packed_size(&m->env);

	assert_non_null(r);
	r->env_bytes = malloc(len + 1);
	assert_non_null(r->env_bytes);
	ihala__v2__envelope__pack(&m->env, r->env_bytes);
	r->env_len = len;
	assert_int_equal(envelope_decode(r->env_bytes, len, &r->env), 0);
	snprintf(r->agency, sizeof(r->agency), "dma");
	r->now_ms = 1700000000000ull;
	return r;
}

static void
put(void *sock, struct wreq *r)
{
	assert_int_equal(zmq_send(sock, &r, sizeof(r), 0), (int)sizeof(r));
}

static struct wreq *
get(void *sock)
{
	struct wreq *r = NULL;

	assert_int_equal(zmq_recv(sock, &r, sizeof(r), 0), (int)sizeof(r));
	return r;
}

/* Requests come back in the order sent, with their results, after their commit; a POLICY
 * swap brings the old table back; STOP comes back last and the thread ends. */
static void
test_thread(void **state)
{
	char dir[64] = "/tmp/writer_test.XXXXXX";
	struct writer_policy pol, pol2;
	struct writer_params wp;
	struct writer *w = NULL;
	struct store *st = NULL;
	struct store_rtxn *rt;
	struct wreq *r;
	struct msg m;
	uint64_t last = 0;
	void *zctx, *sock;
	int zero = 0, i;
	char mid[16], rid[16];

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(store_open(dir, 0, 0, &st), 0);
	memset(&pol, 0, sizeof(pol));
	pol.view.find = fake_find;
	pol.queue_limit = 100;
	pol2 = pol;
	pol2.queue_limit = 0;
	zctx = zmq_ctx_new();
	assert_non_null(zctx);
	sock = zmq_socket(zctx, ZMQ_PAIR);
	assert_non_null(sock);
	assert_int_equal(zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero)), 0);
	assert_int_equal(zmq_bind(sock, ENDPOINT), 0);
	memset(&wp, 0, sizeof(wp));
	wp.store = st;
	wp.zctx = zctx;
	wp.endpoint = ENDPOINT;
	wp.policy = &pol;
	wp.max_batch = 2;
	wp.origin = "writer.test/log";
	assert_int_equal(writer_start(&wp, &w), 0);

	/* Five submissions at once: batches of at most two, answers in order. */
	for (i = 0; i < 5; i++) {
		snprintf(mid, sizeof(mid), "m-%d", i);
		snprintf(rid, sizeof(rid), "R-%d", i);
		msg_referral(&m, mid, rid);
		put(sock, submit_req(&m));
	}
	for (i = 0; i < 5; i++) {
		r = get(sock);
		assert_int_equal(r->type, WREQ_SUBMIT);
		assert_int_equal(r->status, RS(ACCEPTED));
		assert_int_equal(r->seq, (uint64_t)i + 1);
		wreq_free(r);
	}
	/* On disk once answered. */
	assert_int_equal(store_rbegin(st, &rt), 0);
	assert_int_equal(store_log_last(rt, &last), 0);
	store_rend(rt);
	assert_int_equal(last, 5);

	r = wreq_new(WREQ_POLICY);
	assert_non_null(r);
	r->policy = &pol2;
	put(sock, r);
	r = get(sock);
	assert_int_equal(r->type, WREQ_POLICY);
	assert_ptr_equal(r->policy, &pol);
	wreq_free(r);
	msg_referral(&m, "m-late", "R-late");
	put(sock, submit_req(&m));
	r = get(sock);
	assert_int_equal(r->err, IHALA_EQUEUEFULL); /* judged by the new table */
	wreq_free(r);

	put(sock, wreq_new(WREQ_STOP));
	r = get(sock);
	assert_int_equal(r->type, WREQ_STOP);
	wreq_free(r);
	writer_join(w);
	zmq_close(sock);
	zmq_ctx_term(zctx);
	store_close(st);
	assert_int_equal(nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_thread),
	};

	log_setlevel(LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
