/* handlers_test.c - unit tests of broker/handlers.c and deliver.c: a session over a real
 * ROUTER and TLS channel, with a writer pipe the test holds (or one that refuses). */
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

#include <openssl/evp.h>
#include <zmq.h>

#include "channel.h"
#include "config.h"
#include "deliver.h"
#include "error.h"
#include "frame.h"
#include "handlers.h"
#include "ledger.h"
#include "log.h"
#include "ratelog.h"
#include "server_int.h"
#include "seal.h"
#include "session.h"
#include "store.h"
#include "tlsctx.h"

#define MAXF (1024 * 1024)
#define RID "client-1"

struct rig {
	struct server sv;
	struct broker_config cfg;
	struct agency_config ac[2];
	char dir[64];
	void *peer;          /* the client's DEALER */
	void *wend;          /* the writer's end of the pipe, or NULL */
	SSL_CTX *cctx;       /* the client's TLS context */
	struct channel *cch; /* the client's channel */
	struct session *s;   /* the broker's session of that client */
};

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void
pki_path(char *buf, size_t cap, const char *name)
{
	const char *dir = getenv("IHALA_PKI");

	if (dir == NULL || dir[0] == '\0') {
		fail_msg("IHALA_PKI is not set: run through tests/run");
	}
	assert_true((size_t)snprintf(buf, cap, "%s/%s", dir, name) < cap);
}

/*
 * A broker with one agency (dma) and a store, its ROUTER bound to an inproc endpoint, and a
 * client over a DEALER. `writer_ok`: the pipe to the writer is a PAIR whose other end the
 * test holds; else a PULL socket, which refuses every send (as a failing pipe would).
 */
static struct rig *
rig_open(int writer_ok)
{
	struct rig *g = calloc(1, sizeof(*g));
	char ca[512], crl[512], cert[512], key[512], err[512];
	struct tls_files tf;
	int one = 1, zero = 0;

	assert_non_null(g);
	snprintf(g->dir, sizeof(g->dir), "/tmp/handlers_test.XXXXXX");
	assert_non_null(mkdtemp(g->dir));
	assert_int_equal(store_open(g->dir, 0, 0, &g->sv.store), 0);

	g->ac[0].id = "dma";
	g->ac[0].cn = "dma";
	g->ac[0].role = AGENCY_ROLE_DMA;
	g->ac[1].id = "moh";
	g->ac[1].cn = "moh";
	g->ac[1].role = AGENCY_ROLE_MINISTRY;
	g->cfg.agencies = g->ac;
	g->cfg.nagencies = 2;
	g->cfg.limits.max_frame = MAXF;
	g->cfg.limits.max_sessions = 16;
	g->cfg.limits.max_preauth_sessions = 16;
	g->cfg.limits.max_sessions_per_agency = 16;
	g->cfg.limits.handshake_timeout_ms = 10000;
	g->cfg.limits.queue_limit = 100;
	g->cfg.limits.credit_window = 8;
	g->cfg.limits.max_inflight = 4;
	g->cfg.limits.out_cap = 4 * MAXF;
	g->sv.cfg = &g->cfg;
	g->sv.sigfd = -1;
	assert_int_equal(ratelog_new(10000, &g->sv.refusals), 0);

	pki_path(ca, sizeof(ca), "ca.pem");
	pki_path(crl, sizeof(crl), "ca.crl");
	pki_path(cert, sizeof(cert), "broker.pem");
	pki_path(key, sizeof(key), "broker.key");
	tf = (struct tls_files){ca, crl, cert, key};
	if (tlsctx_server_new(&tf, &g->sv.ssl, err, sizeof(err)) != 0) {
		fail_msg("broker TLS: %s", err);
	}
	pki_path(cert, sizeof(cert), "dma.pem");
	pki_path(key, sizeof(key), "dma.key");
	tf = (struct tls_files){ca, crl, cert, key};
	if (tlsctx_client_new(&tf, &g->cctx, err, sizeof(err)) != 0) {
		fail_msg("client TLS: %s", err);
	}

	g->sv.zctx = zmq_ctx_new();
	assert_non_null(g->sv.zctx);
	g->sv.router = zmq_socket(g->sv.zctx, ZMQ_ROUTER);
	assert_non_null(g->sv.router);
	assert_int_equal(zmq_setsockopt(g->sv.router, ZMQ_ROUTER_MANDATORY, &one, sizeof(one)), 0);
	assert_int_equal(zmq_setsockopt(g->sv.router, ZMQ_LINGER, &zero, sizeof(zero)), 0);
	assert_int_equal(zmq_bind(g->sv.router, "inproc://handlers-test-router"), 0);
	g->peer = zmq_socket(g->sv.zctx, ZMQ_DEALER);
	assert_non_null(g->peer);
	assert_int_equal(zmq_setsockopt(g->peer, ZMQ_ROUTING_ID, RID, strlen(RID)), 0);
	assert_int_equal(zmq_setsockopt(g->peer, ZMQ_LINGER, &zero, sizeof(zero)), 0);
	assert_int_equal(zmq_connect(g->peer, "inproc://handlers-test-router"), 0);

	if (writer_ok) {
		g->sv.wpair = zmq_socket(g->sv.zctx, ZMQ_PAIR);
		assert_non_null(g->sv.wpair);
		assert_int_equal(zmq_bind(g->sv.wpair, "inproc://handlers-test-writer"), 0);
		g->wend = zmq_socket(g->sv.zctx, ZMQ_PAIR);
		assert_non_null(g->wend);
		assert_int_equal(zmq_connect(g->wend, "inproc://handlers-test-writer"), 0);
	} else {
		g->sv.wpair = zmq_socket(g->sv.zctx, ZMQ_PULL);
		assert_non_null(g->sv.wpair);
	}
	assert_int_equal(zmq_setsockopt(g->sv.wpair, ZMQ_LINGER, &zero, sizeof(zero)), 0);

	assert_int_equal(
	    channel_new(g->cctx, 0, "localhost", MAXF, channel_wire_size(MAXF), &g->cch), 0);
	return g;
}

static void
rig_close(struct rig *g)
{
	struct wreq *r;

	/* Whatever the test left in the pipe is the writer's to free. */
	while (g->wend != NULL && zmq_recv(g->wend, &r, sizeof(r), ZMQ_DONTWAIT) == sizeof(r)) {
		wreq_free(r);
	}
	while (g->sv.sessions != NULL) {
		struct session *s = g->sv.sessions;

		g->sv.sessions = s->next;
		session_free(&g->sv, s);
	}
	while (g->sv.agencies != NULL) {
		struct agency_rt *a = g->sv.agencies;

		g->sv.agencies = a->next;
		free(a);
	}
	channel_free(g->cch);
	zmq_close(g->peer);
	if (g->wend != NULL) {
		zmq_close(g->wend);
	}
	zmq_close(g->sv.wpair);
	zmq_close(g->sv.router);
	zmq_ctx_term(g->sv.zctx);
	SSL_CTX_free(g->cctx);
	SSL_CTX_free(g->sv.ssl);
	store_close(g->sv.store);
	ratelog_free(g->sv.refusals);
	assert_int_equal(nftw(g->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
	free(g);
}

/* One turn of both sides: the client's bytes to the broker (as server.c's router_input does,
 * making the session on the first message), the broker's flush, the broker's bytes to the
 * client. Returns the next frame the client has, decoded, or NULL. */
static Ihala__V2__Frame *
turn(struct rig *g)
{
	static uint8_t buf[64 * 1024 + 1];
	uint8_t rid[256];
	const uint8_t *body;
	size_t n, blen;
	int len, ridlen;
	Ihala__V2__Frame *f = NULL;

	while (channel_pending_out(g->cch) > 0) {
		assert_int_equal(channel_take_out(g->cch, buf + 1, sizeof(buf) - 1, &n), 0);
		buf[0] = CHANNEL_MSG_TLS;
		assert_int_equal(zmq_send(g->peer, buf, n + 1, 0), (int)n + 1);
	}
	while ((ridlen = zmq_recv(g->sv.router, rid, sizeof(rid), ZMQ_DONTWAIT)) > 0) {
		len = zmq_recv(g->sv.router, buf, sizeof(buf), 0);
		assert_true(len > 1 && buf[0] == CHANNEL_MSG_TLS);
		if (g->s == NULL) {
			struct session *s = calloc(1, sizeof(*s));

			assert_non_null(s);
			assert_int_equal(channel_new(g->sv.ssl, 1, NULL, MAXF, 4 * MAXF, &s->ch),
			                 0);
			memcpy(s->rid, rid, (size_t)ridlen);
			s->rid_len = (size_t)ridlen;
			s->id = ++g->sv.next_session_id;
			s->next = g->sv.sessions;
			g->sv.sessions = s;
			g->sv.n_sessions++;
			g->sv.n_preauth++;
			g->s = s;
		}
		session_input(&g->sv, g->s, buf + 1, (size_t)len - 1);
	}
	if (g->s != NULL) {
		session_flush(&g->sv, g->s);
	}
	while ((len = zmq_recv(g->peer, buf, sizeof(buf), ZMQ_DONTWAIT)) > 0) {
		assert_true(buf[0] == CHANNEL_MSG_TLS);
		assert_int_equal(channel_feed(g->cch, buf + 1, (size_t)len - 1), 0);
	}
	if (channel_next_frame(g->cch, &body, &blen) == 1) {
		assert_int_equal(frame_decode(body, blen, MAXF, &f), 0);
	}
	return f;
}

/* Turns until the client has a frame (fails after many). */
static Ihala__V2__Frame *
next_frame(struct rig *g)
{
	Ihala__V2__Frame *f = NULL;
	int i;

	for (i = 0; i < 200 && f == NULL; i++) {
		f = turn(g);
	}
	assert_non_null(f);
	return f;
}

/* Handshake and Welcome. */
static void
connect_dma(struct rig *g)
{
	Ihala__V2__Frame *f = next_frame(g);

	assert_int_equal(f->kind_case, IHALA__V2__FRAME__KIND_WELCOME);
	assert_string_equal(f->welcome->agency_id, "dma");
	frame_free(f);
	assert_non_null(g->s);
	assert_true(g->s->authed);
	assert_non_null(g->s->art);
}

/* The client sends a Submit of a referral with message id `mid`. */
static void
submit(struct rig *g, const char *mid)
{
	Ihala__V2__Envelope env = IHALA__V2__ENVELOPE__INIT;
	Ihala__V2__Note note = IHALA__V2__NOTE__INIT;
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__Submit sub = IHALA__V2__SUBMIT__INIT;
	uint8_t *eb, *fb;
	size_t elen, flen;

	env.message_id = (char *)mid;
	env.kind_case = IHALA__V2__ENVELOPE__KIND_NOTE;
	env.note = &note;
	note.referral_id = "R-1"; /* its text is sealed */
	elen = ihala__v2__envelope__get_packed_size(&env);
	eb = malloc(elen);
	assert_non_null(eb);
	ihala__v2__envelope__pack(&env, eb);
	sub.envelope.data = eb;
	sub.envelope.len = elen;
	f.kind_case = IHALA__V2__FRAME__KIND_SUBMIT;
	f.submit = &sub;
	assert_int_equal(frame_encode(&f, &fb, &flen), 0);
	assert_int_equal(channel_write_frame(g->cch, fb, flen), 0);
	free(fb);
	free(eb);
}

/*
 * The client sends a Submit with message id `mid` of kind `kind` (NOTE or ERASE), sealed part
 * sealed[0..slen) and Envelope.sealed_sha256 hash[0..hlen) (both may be empty).
 */
static void
submit_sealed(struct rig *g, const char *mid, Ihala__V2__Envelope__KindCase kind,
              const uint8_t *sealed, size_t slen, const uint8_t *hash, size_t hlen)
{
	Ihala__V2__Envelope env = IHALA__V2__ENVELOPE__INIT;
	Ihala__V2__Note note = IHALA__V2__NOTE__INIT;
	Ihala__V2__Erase erase = IHALA__V2__ERASE__INIT;
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__Submit sub = IHALA__V2__SUBMIT__INIT;
	uint8_t *eb, *fb;
	size_t elen, flen;

	env.message_id = (char *)mid;
	env.kind_case = kind;
	if (kind == IHALA__V2__ENVELOPE__KIND_ERASE) {
		env.erase = &erase;
		erase.referral_id = "R-1";
		erase.reason_code = IHALA__V2__REASON_CODE__REASON_CODE_CONSENT_WITHDRAWN;
	} else {
		env.note = &note;
		note.referral_id = "R-1";
	}
	env.sealed_sha256.data = (uint8_t *)hash;
	env.sealed_sha256.len = hlen;
	elen = ihala__v2__envelope__get_packed_size(&env);
	eb = malloc(elen);
	assert_non_null(eb);
	ihala__v2__envelope__pack(&env, eb);
	sub.envelope.data = eb;
	sub.envelope.len = elen;
	sub.sealed.data = (uint8_t *)sealed;
	sub.sealed.len = slen;
	f.kind_case = IHALA__V2__FRAME__KIND_SUBMIT;
	f.submit = &sub;
	assert_int_equal(frame_encode(&f, &fb, &flen), 0);
	assert_int_equal(channel_write_frame(g->cch, fb, flen), 0);
	free(fb);
	free(eb);
}

/* The client sends a Query of a referral that does not exist, with request id `id`. */
static void
query(struct rig *g, uint64_t id)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__Query q = IHALA__V2__QUERY__INIT;
	uint8_t *fb;
	size_t flen;

	q.request_id = id;
	q.referral_id = "R-none";
	f.kind_case = IHALA__V2__FRAME__KIND_QUERY;
	f.query = &q;
	assert_int_equal(frame_encode(&f, &fb, &flen), 0);
	assert_int_equal(channel_write_frame(g->cch, fb, flen), 0);
	free(fb);
}

/* The broker's output so far to the client; the number of frames the client now has. */
static int
answers(struct rig *g)
{
	static uint8_t buf[64 * 1024 + 1];
	const uint8_t *body;
	size_t blen;
	int len, n = 0;

	session_flush(&g->sv, g->s);
	while ((len = zmq_recv(g->peer, buf, sizeof(buf), ZMQ_DONTWAIT)) > 0) {
		assert_true(buf[0] == CHANNEL_MSG_TLS);
		assert_int_equal(channel_feed(g->cch, buf + 1, (size_t)len - 1), 0);
	}
	while (channel_next_frame(g->cch, &body, &blen) == 1) {
		n++;
	}
	return n;
}

/* Many small requests in one message are served SESSION_TURN_FRAMES per turn (the rest wait
 * in the channel, s->backlog set), so that one session's flood cannot hold the loop. */
static void
test_turn_budget(void **state)
{
	struct rig *g = rig_open(1);
	const int total = 3 * SESSION_TURN_FRAMES + 5;
	Ihala__V2__Frame *f;
	int i, got, pumps = 0;

	(void)state;
	connect_dma(g);
	for (i = 0; i < total; i++) {
		query(g, (uint64_t)i + 1);
	}
	f = turn(g); /* one message of TLS holding every query: the first share is served */
	assert_non_null(f);
	assert_int_equal(f->kind_case, IHALA__V2__FRAME__KIND_ERROR);
	frame_free(f);
	got = 1 + answers(g);
	assert_int_equal(got, SESSION_TURN_FRAMES);
	assert_true(g->s->backlog);
	while (g->s->backlog) {
		session_pump(&g->sv, g->s);
		pumps++;
		i = answers(g);
		assert_true(i <= SESSION_TURN_FRAMES);
		got += i;
	}
	assert_int_equal(got, total);
	assert_int_equal(pumps, 3);
	rig_close(g);
}

/* A submission reaches the writer's pipe, counted as waiting for its receipt. */
static void
test_submit_to_writer(void **state)
{
	struct rig *g = rig_open(1);
	struct wreq *r = NULL;
	int i;

	(void)state;
	connect_dma(g);
	submit(g, "m-1");
	for (i = 0; i < 50 && g->s->inflight_submits == 0; i++) {
		assert_null(turn(g));
	}
	assert_int_equal(g->s->inflight_submits, 1);
	assert_int_equal(zmq_recv(g->wend, &r, sizeof(r), ZMQ_DONTWAIT), (int)sizeof(r));
	assert_int_equal(r->type, WREQ_SUBMIT);
	assert_string_equal(r->agency, "dma");
	assert_string_equal(r->env->message_id, "m-1");
	assert_int_equal(r->session_id, g->s->id);
	wreq_free(r);
	rig_close(g);
}

/* The receipt the client gets next: REFUSED with `code`, naming `mid`, its sentence holding
 * `words`. Nothing reached the writer, nothing is in flight. */
static void
expect_refused(struct rig *g, const char *mid, int code, const char *words)
{
	Ihala__V2__Frame *f = next_frame(g);
	struct wreq *r = NULL;

	assert_int_equal(f->kind_case, IHALA__V2__FRAME__KIND_RECEIPT);
	assert_string_equal(f->receipt->message_id, mid);
	assert_int_equal(f->receipt->status, IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED);
	assert_int_equal(f->receipt->error_code, -code);
	if (strstr(f->receipt->error_message, words) == NULL) {
		fail_msg("'%s' does not say '%s'", f->receipt->error_message, words);
	}
	frame_free(f);
	assert_int_equal(g->s->inflight_submits, 0);
	assert_int_equal(zmq_recv(g->wend, &r, sizeof(r), ZMQ_DONTWAIT), -1);
}

/* A sealed part whose SHA-256 the envelope carries reaches the writer with the request, and
 * counts in the bytes in flight. */
static void
test_submit_sealed_to_writer(void **state)
{
	static const uint8_t sealed[] = "a sealed part, opaque";
	uint8_t md[32];
	struct rig *g = rig_open(1);
	struct wreq *r = NULL;
	int i;

	(void)state;
	assert_int_equal(EVP_Digest(sealed, sizeof(sealed), md, NULL, EVP_sha256(), NULL), 1);
	connect_dma(g);
	submit_sealed(g, "m-1", IHALA__V2__ENVELOPE__KIND_NOTE, sealed, sizeof(sealed), md,
	              sizeof(md));
	for (i = 0; i < 50 && g->s->inflight_submits == 0; i++) {
		assert_null(turn(g));
	}
	assert_int_equal(g->s->inflight_submits, 1);
	assert_int_equal(zmq_recv(g->wend, &r, sizeof(r), ZMQ_DONTWAIT), (int)sizeof(r));
	assert_int_equal(r->sealed_len, sizeof(sealed));
	assert_memory_equal(r->sealed, sealed, sizeof(sealed));
	assert_int_equal(g->s->inflight_bytes, r->env_len + sizeof(sealed));
	wreq_free(r);
	rig_close(g);
}

/* Each way a sealed part may disagree with its envelope, refused before the writer. */
static void
test_submit_sealed_refusals(void **state)
{
	static uint8_t big[SEAL_DER_MAX + 1];
	static const uint8_t sealed[] = "a sealed part, opaque";
	uint8_t md[32], bad[32];
	struct rig *g = rig_open(1);

	(void)state;
	assert_int_equal(EVP_Digest(sealed, sizeof(sealed), md, NULL, EVP_sha256(), NULL), 1);
	memcpy(bad, md, sizeof(bad));
	bad[31] ^= 1;
	connect_dma(g);

	/* a hash that is not the part's */
	submit_sealed(g, "m-1", IHALA__V2__ENVELOPE__KIND_NOTE, sealed, sizeof(sealed), bad,
	              sizeof(bad));
	expect_refused(g, "m-1", IHALA_ESEALHASH, "SHA-256 is not the envelope's sealed_sha256");
	/* a part without a hash */
	submit_sealed(g, "m-2", IHALA__V2__ENVELOPE__KIND_NOTE, sealed, sizeof(sealed), NULL, 0);
	expect_refused(g, "m-2", IHALA_ESEALHASH, "sealed_sha256 is 0 bytes");
	/* a hash of the wrong length */
	submit_sealed(g, "m-3", IHALA__V2__ENVELOPE__KIND_NOTE, sealed, sizeof(sealed), md, 31);
	expect_refused(g, "m-3", IHALA_ESEALHASH, "31 bytes");
	/* a hash without a part */
	submit_sealed(g, "m-4", IHALA__V2__ENVELOPE__KIND_NOTE, NULL, 0, md, sizeof(md));
	expect_refused(g, "m-4", IHALA_ESEALHASH, "carries no sealed part");
	/* an erase carries none */
	submit_sealed(g, "m-5", IHALA__V2__ENVELOPE__KIND_ERASE, sealed, sizeof(sealed), md,
	              sizeof(md));
	expect_refused(g, "m-5", IHALA_ESCHEMA, "an erase carries no sealed part");
	submit_sealed(g, "m-6", IHALA__V2__ENVELOPE__KIND_ERASE, NULL, 0, md, sizeof(md));
	expect_refused(g, "m-6", IHALA_ESCHEMA, "an erase carries no sealed part");
	/* over SEAL_DER_MAX */
	submit_sealed(g, "m-7", IHALA__V2__ENVELOPE__KIND_NOTE, big, sizeof(big), md, sizeof(md));
	expect_refused(g, "m-7", IHALA_ETOOLARGE, "sealed part of");
	/* within SEAL_DER_MAX, but with its envelope not within a Deliver frame */
	g->cfg.limits.max_frame = SEAL_DER_MAX + 200;
	submit_sealed(g, "m-8", IHALA__V2__ENVELOPE__KIND_NOTE, big, SEAL_DER_MAX, md, sizeof(md));
	expect_refused(g, "m-8", IHALA_ETOOLARGE, "envelope and sealed part of");
	rig_close(g);
}

/* A submission the pipe refuses is answered at once (REFUSED, OVERLOADED, naming it), freed,
 * and not counted as in flight: nothing waits for a receipt that will never come. */
static void
test_submit_pipe_refuses(void **state)
{
	struct rig *g = rig_open(0);
	Ihala__V2__Frame *f;
	int i;

	(void)state;
	connect_dma(g);
	for (i = 0; i < 6; i++) { /* more than max_inflight (4) */
		char mid[16];

		snprintf(mid, sizeof(mid), "m-%d", i);
		submit(g, mid);
		f = next_frame(g);
		assert_int_equal(f->kind_case, IHALA__V2__FRAME__KIND_RECEIPT);
		assert_string_equal(f->receipt->message_id, mid);
		assert_int_equal(f->receipt->status,
		                 IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED);
		assert_int_equal(f->receipt->error_code, -IHALA_EOVERLOAD);
		assert_non_null(strstr(f->receipt->error_message, "retry later"));
		frame_free(f);
		assert_int_equal(g->s->inflight_submits, 0);
	}
	rig_close(g);
}

/* Acks gathered for the writer: handed over as one request; when the pipe refuses it, freed
 * and not counted as pending (their entries stay queued and go again). */
static void
test_acks_hand_off(void **state)
{
	struct rig *ok = rig_open(1), *bad;
	struct wreq *r = NULL;

	(void)state;
	connect_dma(ok);
	handle_ack(&ok->sv, ok->s, 7);
	handle_ack(&ok->sv, ok->s, 9);
	assert_non_null(ok->s->acks);
	acks_send(&ok->sv, ok->s);
	assert_null(ok->s->acks);
	assert_int_equal(ok->s->art->acks_pending, 2);
	assert_int_equal(zmq_recv(ok->wend, &r, sizeof(r), ZMQ_DONTWAIT), (int)sizeof(r));
	assert_int_equal(r->type, WREQ_ACK);
	assert_int_equal(r->n_acks, 2);
	assert_int_equal(r->acks[0], 7);
	assert_int_equal(r->acks[1], 9);
	wreq_free(r);
	rig_close(ok);

	bad = rig_open(0);
	connect_dma(bad);
	handle_ack(&bad->sv, bad->s, 7);
	acks_send(&bad->sv, bad->s);
	assert_null(bad->s->acks);
	assert_int_equal(bad->s->art->acks_pending, 0);
	rig_close(bad);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_submit_to_writer),
	    cmocka_unit_test(test_submit_sealed_to_writer),
	    cmocka_unit_test(test_submit_sealed_refusals),
	    cmocka_unit_test(test_turn_budget),
	    cmocka_unit_test(test_submit_pipe_refuses),
	    cmocka_unit_test(test_acks_hand_off),
	};

	log_setlevel(LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
