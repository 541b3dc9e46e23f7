/* client_test.c - libihala's session pump against a broker played by the test (ROUTER + channel).
 */
#define _GNU_SOURCE /* memmem */
#include <pthread.h>
#include <unistd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "channel.h"
#include "clock.h"
#include "error.h"
#include "frame.h"
#include "ihala.h"
#include "localstore.h"
#include "log.h"
#include "personal.h"
#include "seal.h"
#include "testpki.h"
#include "tlsctx.h"

/* libihala's insides the offline test reaches for (clients/client.h) */
void sealing_session_reset(struct ihala_client *c);

/*
 * The broker here is a ZeroMQ ROUTER on loopback TCP with one server channel per routing
 * id, stepped by the test between the client's calls (no threads): real sockets, real TLS,
 * nothing mocked. It answers the handshake with a Welcome and otherwise does only what a
 * test tells it, so each test can send what a real broker seldom does.
 */

#define STEP_MS 20
#define WEEK_MS (7 * 24 * 3600 * 1000ULL)
#define MAX_SUBMITS 16

struct fake {
	void *zctx, *router;
	SSL_CTX *ssl;
	char endpoint[128];
	uint8_t rid[256]; /* the routing id of the session */
	size_t rid_len;
	struct channel *ch;
	int welcomed;
	int handshakes;                /* ClientHellos that started a session */
	int stale_reset;               /* RESET the next ClientHello before answering it */
	char submits[MAX_SUBMITS][65]; /* message ids of the Submits received */
	size_t n_submits;
	uint64_t acked;        /* last DeliveryAck seq */
	uint32_t max_inflight; /* Welcome.limits.max_inflight */
	const char *dir_cert;  /* the file the directory offers for any agency (NULL: none) */
	int dir_requests;      /* DirectoryRequests answered */
	int queries;           /* Queries answered */
	int dir_silent;        /* DirectoryRequests go unanswered (a broker out of reach) */
	uint8_t *last_env;     /* the last Submit's envelope and sealed part (malloc'd) */
	size_t last_env_len;
	uint8_t *last_sealed;
	size_t last_sealed_len;
	int dedup;       /* answer each Submit as the broker does by its message id (one id) */
	uint8_t *logged; /* ... the envelope it logged first (malloc'd), as seq 7 */
	size_t logged_len;
};

static char pki[512];
static char datadir[600];
static struct client_config cfg;
static struct fake fb;

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
fake_send(uint8_t type, const uint8_t *p, size_t len)
{
	uint8_t buf[64 * 1024 + 1];

	assert_true(len < sizeof(buf));
	buf[0] = type;
	if (len > 0) {
		memcpy(buf + 1, p, len);
	}
	assert_int_equal(zmq_send(fb.router, fb.rid, fb.rid_len, ZMQ_SNDMORE), (int)fb.rid_len);
	assert_int_equal(zmq_send(fb.router, buf, len + 1, 0), (int)len + 1);
}

static void
fake_flush(void)
{
	uint8_t buf[64 * 1024];
	size_t n;

	while (fb.ch != NULL && channel_pending_out(fb.ch) > 0) {
		assert_int_equal(channel_take_out(fb.ch, buf, sizeof(buf), &n), 0);
		fake_send(CHANNEL_MSG_TLS, buf, n);
	}
}

static void
fake_write(const Ihala__V2__Frame *f)
{
	uint8_t *buf;
	size_t len;

	assert_int_equal(frame_encode(f, &buf, &len), 0);
	assert_int_equal(channel_write_frame(fb.ch, buf, len), 0);
	free(buf);
	fake_flush();
}

static void
fake_welcome(void)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__Welcome w = IHALA__V2__WELCOME__INIT;
	Ihala__V2__Limits l = IHALA__V2__LIMITS__INIT;

	w.agency_id = "dma";
	w.role = IHALA__V2__ROLE__ROLE_DMA;
	w.protocol_version = 2;
	l.max_frame_bytes = FRAME_MAX_DEFAULT;
	l.credit_window = 64;
	l.max_inflight = fb.max_inflight;
	w.limits = &l;
	f.kind_case = IHALA__V2__FRAME__KIND_WELCOME;
	f.welcome = &w;
	fake_write(&f);
	fb.welcomed = 1;
}

static void fake_write(const Ihala__V2__Frame *f);

/* DER of the PEM certificate in pki/name (malloc'd). */
static uint8_t *
cert_der(const char *name, size_t *len)
{
	FILE *fp = fopen(testpki_path(pki, name), "r");
	X509 *x = fp != NULL ? PEM_read_X509(fp, NULL, NULL, NULL) : NULL;
	uint8_t *der = NULL;
	int n;

	assert_non_null(x);
	fclose(fp);
	n = i2d_X509(x, &der);
	assert_true(n > 0);
	X509_free(x);
	*len = (size_t)n;
	return der;
}

/* The broker's directory: fb.dir_cert for whichever agency is asked. */
static void
fake_directory(const Ihala__V2__DirectoryRequest *q)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__Directory d = IHALA__V2__DIRECTORY__INIT;
	Ihala__V2__AgencyCerts ac = IHALA__V2__AGENCY_CERTS__INIT, *acs[1] = {&ac};
	ProtobufCBinaryData der;

	ac.agency = q->agency;
	if (fb.dir_cert != NULL) {
		char own[64];

		/* "*": each agency's own */
		snprintf(own, sizeof(own), "%s-enc.crt", q->agency);
		der.data = cert_der(strcmp(fb.dir_cert, "*") == 0 ? own : fb.dir_cert, &der.len);
		ac.n_cert_der = 1;
		ac.cert_der = &der;
	}
	d.request_id = q->request_id;
	d.n_agencies = 1;
	d.agencies = acs;
	f.kind_case = IHALA__V2__FRAME__KIND_DIRECTORY;
	f.directory = &d;
	fake_write(&f);
	if (fb.dir_cert != NULL) {
		OPENSSL_free(der.data);
	}
	fb.dir_requests++;
}

static void fake_receipt_text(const char *msgid, Ihala__V2__ReceiptStatus status, int err,
                              uint64_t seq, const char *text);

/* The broker's answer to a Submit of message id `id` (fb.dedup): the first envelope is
 * logged as seq 7, the same bytes again are DUPLICATE, other bytes MESSAGE_ID_CONFLICT. */
static void
fake_dedup(const char *id)
{
	char text[160];

	if (fb.logged == NULL) {
		fb.logged = malloc(fb.last_env_len + 1);
		memcpy(fb.logged, fb.last_env, fb.last_env_len);
		fb.logged_len = fb.last_env_len;
		fake_receipt_text(id, IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED, 0, 7, "");
	} else if (fb.logged_len == fb.last_env_len &&
	           memcmp(fb.logged, fb.last_env, fb.logged_len) == 0) {
		fake_receipt_text(id, IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_DUPLICATE, 0, 7,
		                  "");
	} else {
		snprintf(text, sizeof(text),
		         "message id '%s' was already used for different content (seq 7)", id);
		fake_receipt_text(id, IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED,
		                  IHALA_EMSGID, 0, text);
	}
}

static void
fake_frame(const uint8_t *body, size_t len)
{
	Ihala__V2__Frame *f = NULL;

	assert_int_equal(frame_decode(body, len, FRAME_MAX_DEFAULT, &f), 0);
	if (f->kind_case == IHALA__V2__FRAME__KIND_DIRECTORY_REQUEST) {
		if (!fb.dir_silent) {
			fake_directory(f->directory_request);
		}
	} else if (f->kind_case == IHALA__V2__FRAME__KIND_REPLAY_REQUEST) {
		/* two records: one with its sealed part, one erased (none) */
		Ihala__V2__Frame a = IHALA__V2__FRAME__INIT;
		Ihala__V2__LogEntries le = IHALA__V2__LOG_ENTRIES__INIT;
		Ihala__V2__LogRecord r1 = IHALA__V2__LOG_RECORD__INIT,
		                     r2 = IHALA__V2__LOG_RECORD__INIT;
		Ihala__V2__LogRecord *rs[2] = {&r1, &r2};

		r1.seq = 1;
		r1.entry.data = (uint8_t *)"\x08\x01";
		r1.entry.len = 2;
		r1.sealed.data = (uint8_t *)"SEALED";
		r1.sealed.len = 6;
		r2.seq = 2;
		r2.entry.data = (uint8_t *)"\x08\x02";
		r2.entry.len = 2;
		le.request_id = f->replay_request->request_id;
		le.n_records = 2;
		le.records = rs;
		le.done = 1;
		a.kind_case = IHALA__V2__FRAME__KIND_LOG_ENTRIES;
		a.log_entries = &le;
		fake_write(&a);
	} else if (f->kind_case == IHALA__V2__FRAME__KIND_QUERY) {
		/* every referral is dma's to moh */
		Ihala__V2__Frame a = IHALA__V2__FRAME__INIT;
		Ihala__V2__ReferralState st = IHALA__V2__REFERRAL_STATE__INIT;

		st.request_id = f->query->request_id;
		st.referral_id = f->query->referral_id;
		st.referrer = "dma";
		st.recipient = "moh";
		st.status = IHALA__V2__TASK_STATUS__TASK_STATUS_ACCEPTED;
		a.kind_case = IHALA__V2__FRAME__KIND_REFERRAL_STATE;
		a.referral_state = &st;
		fake_write(&a);
		fb.queries++;
	} else if (f->kind_case == IHALA__V2__FRAME__KIND_SUBMIT && fb.n_submits < MAX_SUBMITS) {
		Ihala__V2__Envelope *e = NULL;

		free(fb.last_env);
		free(fb.last_sealed);
		fb.last_env_len = f->submit->envelope.len;
		fb.last_env = malloc(fb.last_env_len + 1);
		memcpy(fb.last_env, f->submit->envelope.data, fb.last_env_len);
		fb.last_sealed_len = f->submit->sealed.len;
		fb.last_sealed = malloc(fb.last_sealed_len + 1);
		if (fb.last_sealed_len > 0) {
			memcpy(fb.last_sealed, f->submit->sealed.data, fb.last_sealed_len);
		}
		assert_int_equal(
		    envelope_decode(f->submit->envelope.data, f->submit->envelope.len, &e), 0);
		snprintf(fb.submits[fb.n_submits++], sizeof(fb.submits[0]), "%s", e->message_id);
		if (fb.dedup) {
			fake_dedup(e->message_id);
		}
		envelope_free(e);
	} else if (f->kind_case == IHALA__V2__FRAME__KIND_DELIVERY_ACK) {
		fb.acked = f->delivery_ack->seq;
	}
	frame_free(f);
}

/* Take what the client sent, answer the handshake, Welcome once it is done. */
static void
fake_step(void)
{
	zmq_msg_t rid, m;

	for (;;) {
		const uint8_t *p, *body;
		size_t len, blen;

		zmq_msg_init(&rid);
		zmq_msg_init(&m);
		if (zmq_msg_recv(&rid, fb.router, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&rid);
			zmq_msg_close(&m);
			return;
		}
		assert_true(zmq_msg_recv(&m, fb.router, 0) >= 0);
		assert_true(zmq_msg_size(&rid) <= sizeof(fb.rid));
		p = zmq_msg_data(&m);
		len = zmq_msg_size(&m);
		assert_true(len >= 1);
		assert_int_equal(p[0], CHANNEL_MSG_TLS);
		if (channel_is_client_hello(p + 1, len - 1)) {
			fb.rid_len = zmq_msg_size(&rid);
			memcpy(fb.rid, zmq_msg_data(&rid), fb.rid_len);
			channel_free(fb.ch);
			assert_int_equal(
			    channel_new(fb.ssl, 1, NULL, FRAME_MAX_DEFAULT, 1u << 22, &fb.ch), 0);
			fb.welcomed = 0;
			fb.handshakes++;
			if (fb.stale_reset) {
				/* as a broker answers what reached it before this ClientHello */
				fb.stale_reset = 0;
				fake_send(CHANNEL_MSG_RESET, NULL, 0);
			}
		}
		if (fb.ch == NULL || zmq_msg_size(&rid) != fb.rid_len ||
		    memcmp(zmq_msg_data(&rid), fb.rid, fb.rid_len) != 0) {
			/* the close_notify of an earlier test's client, or a dropped session */
			zmq_msg_close(&rid);
			zmq_msg_close(&m);
			continue;
		}
		assert_int_equal(channel_feed(fb.ch, p + 1, len - 1), 0);
		while (channel_next_frame(fb.ch, &body, &blen) == 1) {
			fake_frame(body, blen);
		}
		fake_flush();
		if (!fb.welcomed && channel_state(fb.ch) == CHANNEL_OPEN) {
			fake_welcome();
		}
		zmq_msg_close(&rid);
		zmq_msg_close(&m);
	}
}

static void
fake_receipt_text(const char *msgid, Ihala__V2__ReceiptStatus status, int err, uint64_t seq,
                  const char *text)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__Receipt r = IHALA__V2__RECEIPT__INIT;
	static uint8_t leaf[32];

	r.message_id = (char *)msgid;
	r.status = status;
	r.error_code = -err;
	r.error_message = (char *)text;
	r.seq = seq;
	if (seq != 0) {
		r.leaf_hash.data = leaf;
		r.leaf_hash.len = sizeof(leaf);
	}
	f.kind_case = IHALA__V2__FRAME__KIND_RECEIPT;
	f.receipt = &r;
	fake_write(&f);
}

static void
fake_receipt(const char *msgid, Ihala__V2__ReceiptStatus status, int err)
{
	fake_receipt_text(msgid, status, err,
	                  status == IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED ? 7 : 0,
	                  err != 0 ? ihala_strerror(err) : "");
}

/* Let the client take what the broker sent: a call that pumps for STEP_MS and needs nothing
 * (IHALA_EUNREACHABLE: its session is not open again yet). */
static void
client_pump(struct ihala_client *c)
{
	struct ihala_delivery d;
	int rc = ihala_next_delivery(c, STEP_MS, &d);

	if (rc == 0) {
		ihala_delivery_release(&d);
	}
	if (rc != 0 && rc != IHALA_ETIMEDOUT && rc != IHALA_EUNREACHABLE) {
		fail_msg("client: %s: %s", ihala_strerror(rc), ihala_errmsg(c));
	}
}

/* The broker's Deliver of an ADMIN entry with this seq. */
static void
fake_deliver(uint64_t seq)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__Deliver dl = IHALA__V2__DELIVER__INIT;
	Ihala__V2__LogEntry le = IHALA__V2__LOG_ENTRY__INIT;
	uint8_t entry[256];

	le.seq = seq;
	le.sender = "moh";
	le.recipient = "dma";
	le.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_ADMIN;
	dl.seq = seq;
	dl.entry.len = ihala__v2__log_entry__pack(&le, entry);
	dl.entry.data = entry;
	f.kind_case = IHALA__V2__FRAME__KIND_DELIVER;
	f.deliver = &dl;
	fake_write(&f);
}

/* Make sure the client has handled everything the broker sent so far: a Deliver sent last
 * comes out after all of it (frames are handled in order). */
static void
sync_client(struct ihala_client *c)
{
	static uint64_t seq = 1000;
	struct ihala_delivery d;

	seq++;
	fake_deliver(seq);
	assert_int_equal(ihala_next_delivery(c, 5000, &d), 0);
	assert_int_equal(d.seq, seq);
	ihala_delivery_release(&d);
	assert_int_equal(ihala_ack(c, seq), 0);
}

/* Step both sides until the client has its session (within 5 s). */
static void
connect_both(struct ihala_client *c)
{
	uint64_t deadline = now_ms() + 5000;
	int rc;

	do {
		fake_step();
		rc = ihala_connect(c, STEP_MS);
	} while (rc != 0 && now_ms() < deadline);
	assert_int_equal(rc, 0);
	assert_non_null(ihala_welcome(c));
	assert_string_equal(ihala_welcome(c)->agency_id, "dma");
}

/* Step both sides until the broker has `n` Submits (within 5 s). */
static void
wait_submits(struct ihala_client *c, size_t n)
{
	uint64_t deadline = now_ms() + 5000;

	while (fb.n_submits < n && now_ms() < deadline) {
		client_pump(c);
		fake_step();
	}
	assert_int_equal(fb.n_submits, n);
}

static size_t
outbox(struct ihala_client *c)
{
	size_t n = 99;

	assert_int_equal(ihala_outbox_count(c, &n), 0);
	return n;
}

static int
setup(void **state)
{
	struct tls_files tf;
	char err[512];
	size_t len = sizeof(fb.endpoint);
	static char ca[600], cert[600], key[600];

	(void)state;
	log_setlevel(LOG_LEVEL_ERROR);
	if (testpki_make("client_test", pki, sizeof(pki)) != 0) {
		return -1;
	}
	snprintf(ca, sizeof(ca), "%s/ca.pem", pki);
	snprintf(cert, sizeof(cert), "%s/dma.pem", pki);
	snprintf(key, sizeof(key), "%s/dma.key", pki);
	tf.ca_file = ca;
	tf.crl_file = testpki_path(pki, "ca.crl");
	tf.cert_file = testpki_path(pki, "broker.pem");
	tf.key_file = testpki_path(pki, "broker.key");
	if (tlsctx_server_new(&tf, &fb.ssl, err, sizeof(err)) != 0) {
		fprintf(stderr, "client_test: %s\n", err);
		return -1;
	}
	fb.zctx = zmq_ctx_new();
	fb.router = zmq_socket(fb.zctx, ZMQ_ROUTER);
	if (fb.router == NULL || zmq_bind(fb.router, "tcp://127.0.0.1:*") != 0 ||
	    zmq_getsockopt(fb.router, ZMQ_LAST_ENDPOINT, fb.endpoint, &len) != 0) {
		return -1;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.broker = fb.endpoint;
	cfg.server_name = "localhost";
	cfg.ca_file = ca;
	cfg.cert_file = cert;
	cfg.key_file = key;
	cfg.timeout_ms = 5000;
	cfg.sent_keep_ms = WEEK_MS; /* client.conf's default */
	return 0;
}

static int
teardown(void **state)
{
	int zero = 0;

	(void)state;
	channel_free(fb.ch);
	zmq_setsockopt(fb.router, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_close(fb.router);
	zmq_ctx_term(fb.zctx);
	SSL_CTX_free(fb.ssl);
	testpki_remove(pki);
	return 0;
}

/* Each test: a fresh client on a fresh data dir, connected to the fake broker. */
static int
client_setup_n(void **state, uint32_t max_inflight)
{
	struct ihala_client *c = NULL;

	fb.max_inflight = max_inflight;
	channel_free(fb.ch);
	fb.ch = NULL;
	fb.welcomed = 0;
	fb.handshakes = 0;
	fb.n_submits = 0;
	fb.acked = 0;
	snprintf(datadir, sizeof(datadir), "%s/data.XXXXXX", pki);
	if (mkdtemp(datadir) == NULL) {
		return -1;
	}
	cfg.data_dir = datadir;
	if (ihala_open(&cfg, &c) != 0) {
		return -1;
	}
	connect_both(c);
	*state = c;
	return 0;
}

static int
client_setup(void **state)
{
	return client_setup_n(state, 64);
}

static int
client_setup_window(void **state)
{
	return client_setup_n(state, 4);
}

static int
client_teardown(void **state)
{
	ihala_close(*state);
	return 0;
}

static Ihala__V2__Envelope *
envelope(const char *msgid)
{
	static Ihala__V2__Envelope e;
	static Ihala__V2__Note n;
	static char id[65];

	ihala__v2__envelope__init(&e);
	ihala__v2__note__init(&n);
	snprintf(id, sizeof(id), "%s", msgid);
	e.message_id = id;
	e.to = "moh";
	n.referral_id = "R-1";
	n.text = ""; /* nothing personal: nothing sealed (see test_sealed_*) */
	e.kind_case = IHALA__V2__ENVELOPE__KIND_NOTE;
	e.note = &n;
	return &e;
}

/* The pump both ways: a submit goes out, its receipt comes back and empties the outbox. */
static void
test_submit_receipt(void **state)
{
	struct ihala_client *c = *state;
	struct ihala_receipt rc;

	assert_int_equal(fb.handshakes, 1);
	assert_int_equal(ihala_submit(c, envelope("m-accept"), STEP_MS, &rc), IHALA_ETIMEDOUT);
	assert_int_equal(outbox(c), 1);
	wait_submits(c, 1);
	assert_string_equal(fb.submits[0], "m-accept");
	fake_receipt("m-accept", IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED, 0);
	sync_client(c);
	assert_int_equal(outbox(c), 0);
}

/*
 * SHUTTING_DOWN and OVERLOADED say "not now": the envelope stays in the outbox and goes
 * again, and a later ACCEPTED takes it out. A final refusal takes it out at once.
 */
static void
test_transient_refusals_keep_outbox(void **state)
{
	static const int transient[] = {IHALA_EOVERLOAD, IHALA_ESHUTDOWN};
	struct ihala_client *c = *state;
	struct ihala_receipt rc;
	size_t i;

	assert_int_equal(ihala_submit(c, envelope("m-busy"), STEP_MS, &rc), IHALA_ETIMEDOUT);
	wait_submits(c, 1);
	for (i = 0; i < 2; i++) {
		fake_receipt("m-busy", IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED,
		             transient[i]);
		sync_client(c);
		assert_int_equal(outbox(c), 1);
	}
	/* After a busy answer the outbox goes again from its oldest message once a backoff
	 * (200 ms) has passed, in order, each message once: m-busy, then the new m-busy-2. */
	assert_int_equal(ihala_submit(c, envelope("m-busy-2"), 600, &rc), IHALA_ETIMEDOUT);
	wait_submits(c, 3);
	assert_string_equal(fb.submits[1], "m-busy");
	assert_string_equal(fb.submits[2], "m-busy-2");
	assert_int_equal(outbox(c), 2);
	/* A busy answer to one while the other is in flight: nothing goes again before the
	 * other's receipt (no message is sent twice at once), then after a longer backoff. */
	fake_receipt("m-busy-2", IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED,
	             IHALA_EOVERLOAD);
	sync_client(c);
	fake_receipt("m-busy", IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED, 0);
	sync_client(c);
	assert_int_equal(fb.n_submits, 3);
	assert_int_equal(outbox(c), 1);
	wait_submits(c, 4);
	assert_string_equal(fb.submits[3], "m-busy-2");
	fake_receipt("m-busy-2", IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED, IHALA_ESCHEMA);
	sync_client(c);
	assert_int_equal(outbox(c), 0);
}

/* A node's outbox goes a window at a time: no more than Welcome.limits.max_inflight (here 4)
 * without receipts, the next as receipts come; none twice. */
static void
test_outbox_window(void **state)
{
	struct ihala_client *c = *state;
	struct ihala_receipt rc;
	char id[16];
	size_t i;

	for (i = 0; i < 10; i++) {
		snprintf(id, sizeof(id), "m-win-%zu", i);
		ihala_submit(c, envelope(id), 0, &rc);
	}
	wait_submits(c, 4);
	for (i = 0; i < 20; i++) {
		client_pump(c);
		fake_step();
	}
	assert_int_equal(fb.n_submits, 4);
	for (i = 0; i < 3; i++) {
		snprintf(id, sizeof(id), "m-win-%zu", i);
		fake_receipt(id, IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED, 0);
	}
	wait_submits(c, 7);
	for (i = 0; i < 7; i++) {
		snprintf(id, sizeof(id), "m-win-%zu", i);
		assert_string_equal(fb.submits[i], id);
	}
	for (i = 3; i < 10; i++) {
		snprintf(id, sizeof(id), "m-win-%zu", i);
		fake_receipt(id, IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED, 0);
		wait_submits(c, i + 5 < 10 ? i + 5 : 10);
	}
	sync_client(c);
	assert_int_equal(fb.n_submits, 10);
	assert_int_equal(outbox(c), 0);
}

/* A frame that does not decode is dropped, counted, and the session goes on. */
static void
test_undecodable_frames_counted(void **state)
{
	static const uint8_t junk[][4] = {{0xff, 0xff, 0xff, 0xff}, {0x0a, 0x05, 'a', 'b'}};
	struct ihala_client *c = *state;
	struct ihala_receipt rc;
	size_t i;

	assert_int_equal(ihala_frames_dropped(c), 0);
	for (i = 0; i < 2; i++) {
		assert_int_equal(channel_write_frame(fb.ch, junk[i], sizeof(junk[i])), 0);
	}
	assert_int_equal(channel_write_frame(fb.ch, junk[0], 0), 0); /* empty: no kind */
	fake_flush();
	sync_client(c);
	assert_int_equal(ihala_frames_dropped(c), 3);
	/* still the same session, still working */
	assert_int_equal(ihala_submit(c, envelope("m-after"), STEP_MS, &rc), IHALA_ETIMEDOUT);
	wait_submits(c, 1);
	fake_receipt("m-after", IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED, 0);
	sync_client(c);
	assert_int_equal(outbox(c), 0);
	assert_int_equal(fb.handshakes, 1);
}

/* A Deliver is stored and handed over; the ack goes back with its seq. */
static void
test_deliver_ack(void **state)
{
	struct ihala_client *c = *state;
	struct ihala_delivery d;
	uint64_t deadline = now_ms() + 5000;

	fake_deliver(5);
	assert_int_equal(ihala_next_delivery(c, 5000, &d), 0);
	assert_int_equal(d.seq, 5);
	assert_int_equal(d.log->seq, 5);
	assert_string_equal(d.log->sender, "moh");
	ihala_delivery_release(&d);
	assert_int_equal(ihala_ack(c, 5), 0);
	while (fb.acked != 5 && now_ms() < deadline) {
		fake_step();
		client_pump(c);
	}
	assert_int_equal(fb.acked, 5);
}

/* RESET (the broker lost the session) makes the client start a new TLS session on the same
 * connection and send its outbox again. */
static void
test_reset_rehandshake(void **state)
{
	struct ihala_client *c = *state;
	uint64_t deadline = now_ms() + 5000;
	struct ihala_receipt rc;

	assert_int_equal(ihala_submit(c, envelope("m-reset"), STEP_MS, &rc), IHALA_ETIMEDOUT);
	wait_submits(c, 1);
	channel_free(fb.ch);
	fb.ch = NULL;
	fake_send(CHANNEL_MSG_RESET, NULL, 0);
	while (fb.handshakes < 2 && now_ms() < deadline) {
		client_pump(c);
		fake_step();
	}
	connect_both(c);
	assert_int_equal(fb.handshakes, 2);
	/* the Welcome of the new session sends what still waits for a receipt */
	wait_submits(c, 2);
	assert_string_equal(fb.submits[1], "m-reset");
	fake_receipt("m-reset", IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_DUPLICATE, 0);
	sync_client(c);
	assert_int_equal(outbox(c), 0);
}

/*
 * A RESET that answers what the client wrote before its new ClientHello (a reconnect it had
 * not seen yet) arrives after the client started its handshake and before the ServerHello:
 * the client must not start a second handshake, whose ServerHello would never come (the
 * first one's would end it: "invalid session id").
 */
static void
test_stale_reset_during_handshake(void **state)
{
	struct ihala_client *c = *state;
	uint64_t deadline = now_ms() + 5000;

	connect_both(c);
	assert_int_equal(fb.handshakes, 1);
	channel_free(fb.ch);
	fb.ch = NULL;
	fb.stale_reset = 1;
	fake_send(CHANNEL_MSG_RESET, NULL, 0);
	while (fb.handshakes < 2 && now_ms() < deadline) {
		client_pump(c);
		fake_step();
	}
	connect_both(c);
	assert_int_equal(fb.handshakes, 2);
	sync_client(c);
}

/* ---- sealed parts ---- */

static pthread_t steps_start(void);
static void steps_stop(pthread_t t);

struct seen_records {
	uint64_t seq[4];
	size_t sealed_len[4];
	int n;
};

static int
record_cb(void *arg, uint64_t seq, const uint8_t *entry, size_t len, const uint8_t *sealed,
          size_t sealed_len)
{
	struct seen_records *r = arg;

	(void)entry;
	(void)len;
	if (r->n < 4) {
		r->seq[r->n] = seq;
		r->sealed_len[r->n] = sealed_len;
		if (sealed_len > 0) {
			assert_memory_equal(sealed, "SEALED", 6);
		}
		r->n++;
	}
	return 0;
}

/* An auditor's replay with the sealed parts as the broker stores them (none once erased). */
static void
test_replay_records(void **state)
{
	struct ihala_client *c = *state;
	struct seen_records r;
	pthread_t t;

	memset(&r, 0, sizeof(r));
	t = steps_start();
	assert_int_equal(ihala_replay_records(c, 1, 0, 0, record_cb, &r, 2000), 0);
	steps_stop(t);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.seq[0], 1);
	assert_int_equal(r.sealed_len[0], 6);
	assert_int_equal(r.seq[1], 2);
	assert_int_equal(r.sealed_len[1], 0);
}

static int
count_json(void *arg, const char *rid, uint64_t seq, const char *json)
{
	(void)rid;
	(void)seq;
	assert_true(json[0] == '{');
	(*(int *)arg)++;
	return 0;
}

static const char arabic[] = "زينب قادر، ژینەب هەورامی";

/* The fake broker steps in a thread while the client waits inside a call (a directory
 * request, a query). */
static volatile int stepping;

static void *
stepper(void *arg)
{
	(void)arg;
	while (stepping) {
		fake_step();
		usleep(2000);
	}
	return NULL;
}

static pthread_t
steps_start(void)
{
	pthread_t t;

	stepping = 1;
	assert_int_equal(pthread_create(&t, NULL, stepper, NULL), 0);
	return t;
}

static void
steps_stop(pthread_t t)
{
	stepping = 0;
	assert_int_equal(pthread_join(t, NULL), 0);
}

static int
client_setup_sealed(void **state)
{
	static char cert[600], key[600];

	snprintf(cert, sizeof(cert), "%s/dma-enc.crt", pki);
	snprintf(key, sizeof(key), "%s/dma-enc.key", pki);
	cfg.encryption_cert = cert;
	cfg.encryption_key = key;
	fb.dir_cert = NULL;
	fb.dir_requests = 0;
	return client_setup_n(state, 64);
}

static int
client_teardown_sealed(void **state)
{
	fb.dir_silent = 0;
	fb.dedup = 0;
	free(fb.logged);
	fb.logged = NULL;
	ihala_close(*state);
	cfg.encryption_cert = cfg.encryption_key = NULL;
	cfg.custodians = NULL;
	cfg.old_encryption_keys = NULL;
	return 0;
}

static int
client_setup_custodian(void **state)
{
	cfg.custodians = "hi";
	fb.queries = 0;
	return client_setup_sealed(state);
}

/* 1 when the bytes of s are anywhere in the node's LMDB file. */
static int
in_store(const char *s)
{
	char path[700];
	uint8_t *buf;
	size_t n;
	FILE *fp;
	int found;

	snprintf(path, sizeof(path), "%s/data.mdb", datadir);
	assert_non_null(fp = fopen(path, "rb"));
	buf = malloc(LOCALSTORE_MAPSIZE);
	assert_non_null(buf);
	n = fread(buf, 1, LOCALSTORE_MAPSIZE, fp);
	fclose(fp);
	found = memmem(buf, n, s, strlen(s)) != NULL;
	free(buf);
	return found;
}

static struct seal_keyring *
keyring(const char *agency)
{
	struct seal_keyring *kr = NULL;
	char c[64], k[64];

	snprintf(c, sizeof(c), "%s-enc.crt", agency);
	snprintf(k, sizeof(k), "%s-enc.key", agency);
	assert_int_equal(seal_keyring_new(&kr), 0);
	assert_int_equal(seal_keyring_load(kr, testpki_path(pki, c), testpki_path(pki, k), NULL, 0),
	                 0);
	return kr;
}

/*
 * A note with personal text goes sealed: the Submit's envelope holds no text and the hash of
 * the sealed part, which the receiving agency (moh) and the sender (dma) both open; the
 * outbox never holds the text in clear.
 */
static void
test_sealed_submit(void **state)
{
	struct ihala_client *c = *state;
	Ihala__V2__Envelope *e = envelope("m-sealed"), *ce = NULL;
	static const char *agencies[] = {"moh", "dma"};
	struct ihala_receipt rc;
	uint8_t hash[32], *plain;
	size_t plen, i;
	pthread_t t;

	e->note->text = (char *)arabic;
	fb.dir_cert = "moh-enc.crt";
	t = steps_start();
	assert_int_equal(ihala_submit(c, e, 1000, &rc), IHALA_ETIMEDOUT);
	steps_stop(t);
	wait_submits(c, 1);
	assert_int_equal(fb.dir_requests, 1);
	assert_true(fb.last_sealed_len > 0);
	assert_null(memmem(fb.last_env, fb.last_env_len, arabic, strlen(arabic)));
	assert_int_equal(envelope_decode(fb.last_env, fb.last_env_len, &ce), 0);
	assert_string_equal(ce->note->text, "");
	assert_int_equal(ce->sealed_sha256.len, 32);
	EVP_Digest(fb.last_sealed, fb.last_sealed_len, hash, NULL, EVP_sha256(), NULL);
	assert_memory_equal(ce->sealed_sha256.data, hash, 32);
	envelope_free(ce);
	for (i = 0; i < 2; i++) {
		struct seal_keyring *kr = keyring(agencies[i]);

		assert_int_equal(
		    seal_open(kr, fb.last_sealed, fb.last_sealed_len, &plain, &plen, NULL, 0), 0);
		assert_non_null(memmem(plain, plen, arabic, strlen(arabic)));
		free(plain);
		seal_keyring_free(kr);
	}
	/* queued sealed: the text is nowhere in the store */
	assert_int_equal(outbox(c), 1);
	assert_false(in_store(arabic));
	fake_receipt("m-sealed", IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED, 0);
	sync_client(c);
	assert_int_equal(outbox(c), 0);
	/* The same message again under its id: the very same bytes (the broker: DUPLICATE),
	 * not a new sealing; other content under the id: sealed anew (MESSAGE_ID_CONFLICT). */
	{
		uint8_t *env1 = fb.last_env, *sealed1 = fb.last_sealed;
		size_t env1_len = fb.last_env_len, sealed1_len = fb.last_sealed_len;

		fb.last_env = fb.last_sealed = NULL;
		e = envelope("m-sealed");
		e->note->text = (char *)arabic;
		assert_int_equal(ihala_submit(c, e, 200, &rc), IHALA_ETIMEDOUT);
		wait_submits(c, 2);
		assert_int_equal(fb.last_env_len, env1_len);
		assert_memory_equal(fb.last_env, env1, env1_len);
		assert_int_equal(fb.last_sealed_len, sealed1_len);
		assert_memory_equal(fb.last_sealed, sealed1, sealed1_len);
		fake_receipt("m-sealed", IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_DUPLICATE, 0);
		sync_client(c);
		e = envelope("m-sealed");
		e->note->text = "другой текст";
		assert_int_equal(ihala_submit(c, e, 200, &rc), IHALA_ETIMEDOUT);
		wait_submits(c, 3);
		assert_false(fb.last_sealed_len == sealed1_len &&
		             memcmp(fb.last_sealed, sealed1, sealed1_len) == 0);
		free(env1);
		free(sealed1);
	}
}

/* Submit the sealed note `id` while the broker answers (fb.dedup); ihala_submit's code. */
static int
submit_sealed(struct ihala_client *c, const char *id, struct ihala_receipt *rc)
{
	Ihala__V2__Envelope *e = envelope(id);
	pthread_t t;
	int err;

	e->note->text = (char *)arabic;
	t = steps_start();
	err = ihala_submit(c, e, 5000, rc);
	steps_stop(t);
	return err;
}

/*
 * A sealed message sent again under its id within sent_keep is the same bytes (DUPLICATE,
 * its seq); once its sent record was pruned it is sealed anew, other bytes, and the
 * broker's MESSAGE_ID_CONFLICT comes with why: not silence, not a second entry.
 */
static void
test_sent_keep_rerun(void **state)
{
	struct ihala_client *c = *state;
	struct ihala_receipt rc;
	size_t n = 0;

	fb.dir_cert = "moh-enc.crt";
	fb.dedup = 1;
	assert_int_equal(submit_sealed(c, "m-keep", &rc), 0);
	assert_int_equal(rc.status, IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED);
	assert_int_equal(rc.seq, 7);
	/* within sent_keep: kept (a prune a day on takes nothing), the same bytes again */
	assert_int_equal(localstore_sent_prune(ihala_store(c), clock_wall_ms() + WEEK_MS / 7,
	                                       cfg.sent_keep_ms, &n),
	                 0);
	assert_int_equal(n, 0);
	assert_int_equal(submit_sealed(c, "m-keep", &rc), 0);
	assert_int_equal(rc.status, IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_DUPLICATE);
	assert_int_equal(rc.seq, 7);
	/* eight days on its record is pruned: the repeat is refused, saying why */
	assert_int_equal(localstore_sent_prune(ihala_store(c),
	                                       clock_wall_ms() + WEEK_MS + WEEK_MS / 7,
	                                       cfg.sent_keep_ms, &n),
	                 0);
	assert_int_equal(n, 1);
	assert_int_equal(submit_sealed(c, "m-keep", &rc), IHALA_EMSGID);
	assert_int_equal(rc.status, IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED);
	assert_int_equal(fb.n_submits, 3);
	assert_non_null(strstr(rc.text, "message id 'm-keep' was already used for different "
	                                "content (seq 7); if it is this same message, sent over "
	                                "sent_keep (7d) ago"));
	assert_non_null(strstr(ihala_errmsg(c), "sent over sent_keep (7d) ago"));
	/* a message without personal fields is the same bytes however late it comes again */
	free(fb.logged);
	fb.logged = NULL;
	{
		Ihala__V2__Envelope *e = envelope("m-clear");
		pthread_t t = steps_start();

		assert_int_equal(ihala_submit(c, e, 5000, &rc), 0);
		assert_int_equal(rc.status, IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED);
		assert_int_equal(localstore_sent_prune(ihala_store(c),
		                                       clock_wall_ms() + WEEK_MS + WEEK_MS / 7,
		                                       cfg.sent_keep_ms, &n),
		                 0);
		assert_int_equal(n, 1);
		e = envelope("m-clear");
		assert_int_equal(ihala_submit(c, e, 5000, &rc), 0);
		assert_int_equal(rc.status, IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_DUPLICATE);
		steps_stop(t);
	}
}

/* A node prunes its sent records past sent_keep when it opens. */
static void
test_sent_pruned_at_open(void **state)
{
	struct localstore *ls = NULL;
	void *p = NULL;
	size_t len = 0;

	ihala_close(*state);
	*state = NULL;
	assert_int_equal(localstore_open(datadir, &ls), 0);
	assert_int_equal(localstore_outbox_put(ls, "m-old", "old", 3), 0);
	assert_int_equal(localstore_outbox_sent(ls, "m-old", 5, clock_wall_ms() - WEEK_MS - 60000,
	                                        cfg.sent_keep_ms),
	                 0);
	assert_int_equal(localstore_outbox_put(ls, "m-young", "young", 5), 0);
	assert_int_equal(localstore_outbox_sent(ls, "m-young", 6,
	                                        clock_wall_ms() - WEEK_MS + 3600000,
	                                        cfg.sent_keep_ms),
	                 0);
	localstore_close(ls);
	assert_int_equal(ihala_open(&cfg, (struct ihala_client **)state), 0);
	ls = ihala_store(*state);
	assert_int_equal(localstore_sent_get(ls, "m-old", &p, &len, NULL), IHALA_ENOTFOUND);
	assert_int_equal(localstore_sent_get(ls, "m-young", &p, &len, NULL), 0);
	assert_int_equal(len, 5);
	free(p);
}

/*
 * Without `to`, the other party is the broker's answer to a query (here moh); the custodians
 * of client.conf (hi) are recipients too, and each agency's certificate is asked once per
 * session.
 */
static void
test_sealed_query_and_custodian(void **state)
{
	static const char *agencies[] = {"moh", "dma", "hi"};
	struct ihala_client *c = *state;
	Ihala__V2__Envelope *e;
	struct ihala_receipt rc;
	struct seal_keyring *kr;
	uint8_t *plain;
	size_t plen, i;
	pthread_t t;

	fb.dir_cert = "*";
	e = envelope("m-cust");
	e->to = "";
	e->note->text = (char *)arabic;
	t = steps_start();
	assert_int_equal(ihala_submit(c, e, 1000, &rc), IHALA_ETIMEDOUT);
	steps_stop(t);
	wait_submits(c, 1);
	assert_int_equal(fb.queries, 1);
	assert_int_equal(fb.dir_requests, 2); /* moh, hi; dma's own is the configured one */
	for (i = 0; i < 3; i++) {
		kr = keyring(agencies[i]);
		assert_int_equal(
		    seal_open(kr, fb.last_sealed, fb.last_sealed_len, &plain, &plen, NULL, 0), 0);
		free(plain);
		seal_keyring_free(kr);
	}
	kr = keyring("molsa"); /* not a recipient */
	assert_int_equal(seal_open(kr, fb.last_sealed, fb.last_sealed_len, &plain, &plen, NULL, 0),
	                 SEAL_ENOTRECIPIENT);
	seal_keyring_free(kr);
	/* a second one in the session: no new directory request */
	e = envelope("m-cust-2");
	e->note->text = (char *)arabic;
	t = steps_start();
	assert_int_equal(ihala_submit(c, e, 500, &rc), IHALA_ETIMEDOUT);
	steps_stop(t);
	wait_submits(c, 2);
	assert_int_equal(fb.dir_requests, 2);
}

/*
 * Offline: when the recipient's certificate cannot be had, the message is queued all the
 * same, sealed to this node alone and never sent so; once the broker answers, ihala_outbox's
 * flush seals it for good (same place, same message id) and sends it. One whose recipient
 * then has no valid certificate goes to the rejected list. Nothing personal in clear meanwhile.
 */
static void
test_sealed_offline(void **state)
{
	struct ihala_client *c = *state;
	Ihala__V2__Envelope *e, *ce = NULL;
	struct ihala_receipt rc;
	struct seal_keyring *kr;
	uint8_t *plain;
	size_t plen, left = 9, nrej = 9;
	pthread_t t;

	fb.dir_silent = 1;
	e = envelope("m-offline");
	e->note->text = (char *)arabic;
	t = steps_start();
	assert_int_equal(ihala_submit(c, e, 600, &rc), IHALA_EUNREACHABLE);
	steps_stop(t);
	assert_int_equal(outbox(c), 1);
	assert_false(in_store(arabic));
	e = envelope("m-offline-2");
	e->note->text = (char *)arabic;
	t = steps_start();
	assert_int_equal(ihala_submit(c, e, 600, &rc), IHALA_EUNREACHABLE);
	steps_stop(t);
	assert_int_equal(outbox(c), 2);
	assert_int_equal(fb.n_submits, 0); /* never sent unsealed for the recipient */
	/* the broker answers: sealed for good, in order */
	fb.dir_silent = 0;
	fb.dir_cert = "moh-enc.crt";
	t = steps_start();
	{
		int frc = ihala_flush_outbox(c, 800, &left);

		steps_stop(t);
		if (frc != IHALA_ETIMEDOUT) {
			fail_msg("flush: %s: %s", ihala_strerror(frc), ihala_errmsg(c));
		}
	}
	wait_submits(c, 2);
	assert_string_equal(fb.submits[0], "m-offline");
	assert_string_equal(fb.submits[1], "m-offline-2");
	kr = keyring("moh");
	assert_int_equal(seal_open(kr, fb.last_sealed, fb.last_sealed_len, &plain, &plen, NULL, 0),
	                 0);
	free(plain);
	seal_keyring_free(kr);
	assert_int_equal(envelope_decode(fb.last_env, fb.last_env_len, &ce), 0);
	assert_int_equal(ce->sealed_sha256.len, 32);
	envelope_free(ce);
	fake_receipt("m-offline", IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED, 0);
	fake_receipt("m-offline-2", IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED, 0);
	sync_client(c);
	assert_int_equal(outbox(c), 0);
	/* offline again, then the recipient's certificate is a substitute: rejected */
	fb.dir_silent = 1;
	sealing_session_reset(c); /* as a new session: moh's pick forgotten */
	e = envelope("m-offline-3");
	e->note->text = (char *)arabic;
	t = steps_start();
	assert_int_equal(ihala_submit(c, e, 600, &rc), IHALA_EUNREACHABLE);
	steps_stop(t);
	fb.dir_silent = 0;
	fb.dir_cert = "foreign-enc.crt";
	t = steps_start();
	assert_int_equal(ihala_flush_outbox(c, 800, &left), 0);
	steps_stop(t);
	assert_int_equal(outbox(c), 0);
	assert_int_equal(localstore_rejected_count(ihala_store(c), &nrej), 0);
	assert_int_equal(nrej, 1);
	assert_int_equal(fb.n_submits, 2);
	assert_false(in_store(arabic));
}

/*
 * A substituted encryption certificate (another agency's, another CA's, an expired one) or
 * none: the sending node refuses, naming the agency, and queues nothing.
 */
static void
test_substituted_cert_refused(void **state)
{
	static const char *const offered[] = {"dma-enc.crt", "foreign-enc.crt",
	                                      "moh-enc-expired.crt", "moh-enc-sig.crt", NULL};
	struct ihala_client *c = *state;
	Ihala__V2__Envelope *e;
	struct ihala_receipt rc;
	size_t i, nrej = 9;
	pthread_t t;

	for (i = 0; i < sizeof(offered) / sizeof(offered[0]); i++) {
		e = envelope("m-subst");
		e->note->text = (char *)arabic;
		fb.dir_cert = offered[i];
		t = steps_start();
		assert_int_equal(ihala_submit(c, e, 2000, &rc), IHALA_ECERT);
		steps_stop(t);
		assert_non_null(strstr(ihala_errmsg(c), "'moh'"));
		assert_int_equal(outbox(c), 0);
		assert_int_equal(localstore_rejected_count(ihala_store(c), &nrej), 0);
		assert_int_equal(nrej, 0);
	}
	assert_int_equal(fb.n_submits, 0);
	assert_false(in_store(arabic));
}

/* A Deliver of a note from moh with its sealed part as `make` says. */
enum tamper { T_NONE, T_FLIP, T_FLIP_REHASH, T_NOT_US, T_OLD };

static void
deliver_sealed(uint64_t seq, enum tamper how)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__Deliver dl = IHALA__V2__DELIVER__INIT;
	Ihala__V2__LogEntry le = IHALA__V2__LOG_ENTRY__INIT;
	Ihala__V2__Envelope e = IHALA__V2__ENVELOPE__INIT;
	Ihala__V2__Note n = IHALA__V2__NOTE__INIT;
	struct seal_trust *trust = NULL;
	struct seal_recipient r;
	uint8_t *plain, *der, *clear, hash[32], entry[4096];
	size_t plen, dlen, clen;
	FILE *fp;
	char id[32];

	snprintf(id, sizeof(id), "m-in-%llu", (unsigned long long)seq);
	e.message_id = id;
	e.kind_case = IHALA__V2__ENVELOPE__KIND_NOTE;
	e.note = &n;
	n.referral_id = "R-1";
	n.text = (char *)arabic;
	assert_int_equal(personal_split(&e, "moh", &plain, &plen), 0);
	assert_int_equal(seal_trust_new(testpki_path(pki, "ca.pem"), NULL, &trust, NULL, 0), 0);
	r.agency = how == T_NOT_US || how == T_OLD ? "moh" : "dma";
	assert_non_null(fp = fopen(testpki_path(pki, how == T_NOT_US ? "moh-enc.crt"
	                                             : how == T_OLD  ? "moh-enc-old.crt"
	                                                             : "dma-enc.crt"),
	                           "r"));
	assert_non_null(r.cert = PEM_read_X509(fp, NULL, NULL, NULL));
	fclose(fp);
	assert_int_equal(seal_bytes(trust, &r, 1, plain, plen, &der, &dlen, NULL, 0), 0);
	EVP_Digest(der, dlen, hash, NULL, EVP_sha256(), NULL);
	if (how == T_FLIP || how == T_FLIP_REHASH) {
		der[dlen - 20] ^= 0x01; /* in the ciphertext or the tag */
	}
	if (how == T_FLIP_REHASH) {
		EVP_Digest(der, dlen, hash, NULL, EVP_sha256(), NULL);
	}
	assert_int_equal(personal_clear(&e, hash, &clear, &clen), 0);
	le.seq = seq;
	le.sender = "moh";
	le.recipient = "dma";
	le.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_SUBMISSION;
	le.envelope.data = clear;
	le.envelope.len = clen;
	dl.seq = seq;
	dl.entry.len = ihala__v2__log_entry__pack(&le, entry);
	dl.entry.data = entry;
	dl.sealed.data = der;
	dl.sealed.len = dlen;
	f.kind_case = IHALA__V2__FRAME__KIND_DELIVER;
	f.deliver = &dl;
	fake_write(&f);
	X509_free(r.cert);
	seal_trust_free(trust);
	free(plain);
	free(der);
	free(clear);
}

/* Take the next delivery: its seq and open_err as expected; acked. */
static void
take(struct ihala_client *c, uint64_t seq, int open_err)
{
	struct ihala_delivery d;

	assert_int_equal(ihala_next_delivery(c, 5000, &d), 0);
	assert_int_equal(d.seq, seq);
	assert_int_equal(d.open_err, open_err);
	if (open_err == 0 && d.envelope != NULL &&
	    d.envelope->kind_case == IHALA__V2__ENVELOPE__KIND_NOTE) {
		assert_string_equal(d.envelope->note->text, arabic);
	} else if (d.envelope != NULL && d.envelope->kind_case == IHALA__V2__ENVELOPE__KIND_NOTE) {
		assert_string_equal(d.envelope->note->text, "");
	}
	ihala_delivery_release(&d);
	assert_int_equal(ihala_ack(c, seq), 0);
}

/* The Unreadable the client sent last answers seq with code. */
static void
assert_unreadable(struct ihala_client *c, size_t nsubmits, uint64_t seq, int code)
{
	Ihala__V2__Envelope *e = NULL;
	char id[32];

	wait_submits(c, nsubmits);
	snprintf(id, sizeof(id), "unreadable-%llu", (unsigned long long)seq);
	assert_string_equal(fb.submits[nsubmits - 1], id);
	assert_int_equal(fb.last_sealed_len, 0);
	assert_int_equal(envelope_decode(fb.last_env, fb.last_env_len, &e), 0);
	assert_int_equal(e->kind_case, IHALA__V2__ENVELOPE__KIND_UNREADABLE);
	assert_int_equal(e->unreadable->ref_seq, seq);
	assert_int_equal(e->unreadable->code, -code);
	assert_string_equal(e->unreadable->referral_id, "R-1");
	envelope_free(e);
	fake_receipt(id, IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED, 0);
}

/*
 * A sealed delivery is opened and merged (Arabic and Kurdish intact); one with a flipped byte
 * (the log's hash no longer matching, or matching a tampered part), or sealed to another
 * agency, is handed over with open_err set, answered with an Unreadable to the sender, and
 * acked like any other: nothing jams. The inbox keeps only the sealed form.
 */
static void
test_sealed_delivery(void **state)
{
	struct ihala_client *c = *state;
	uint64_t deadline = now_ms() + 5000;

	deliver_sealed(50, T_NONE);
	take(c, 50, 0);
	deliver_sealed(51, T_FLIP_REHASH);
	take(c, 51, IHALA_ESEALAUTH);
	assert_unreadable(c, 1, 51, IHALA_ESEALAUTH);
	deliver_sealed(52, T_FLIP);
	take(c, 52, IHALA_ESEALBIND);
	assert_unreadable(c, 2, 52, IHALA_ESEALBIND);
	deliver_sealed(53, T_NOT_US);
	take(c, 53, IHALA_ESEALRECIP);
	assert_unreadable(c, 3, 53, IHALA_ESEALRECIP);
	while (fb.acked != 53 && now_ms() < deadline) {
		fake_step();
		client_pump(c);
	}
	assert_int_equal(fb.acked, 53);
	/* pending, then read again after a restart: still sealed in the store, opened on read */
	deliver_sealed(54, T_NONE);
	{
		struct ihala_delivery d;
		void *sp = NULL;
		size_t sl = 0;

		/* shown once, not acked: it stays in the inbox, sealed */
		assert_int_equal(ihala_next_delivery(c, 5000, &d), 0);
		assert_int_equal(d.seq, 54);
		assert_int_equal(d.open_err, 0);
		ihala_delivery_release(&d);
		assert_int_equal(localstore_inbox_sealed(ihala_store(c), 54, &sp, &sl), 0);
		assert_true(sl > 0);
		free(sp);
		assert_false(in_store(arabic));
	}
	take(c, 54, 0); /* opened again on this read */
}

/* Rotation: a part sealed to an older certificate opens with old_encryption_keys (here the
 * fixtures' only older key pair, moh-enc-old, stands for the node's own older one). */
static void
test_old_key_opens(void **state)
{
	struct ihala_client *c = *state;

	deliver_sealed(70, T_OLD);
	take(c, 70, 0);
	assert_int_equal(fb.n_submits, 0);
}

static int
client_setup_oldkey(void **state)
{
	static char old[1300];

	snprintf(old, sizeof(old), "%s/moh-enc-old.crt:%s/moh-enc-old.key", pki, pki);
	cfg.old_encryption_keys = old;
	return client_setup_sealed(state);
}

/* ... and without it: not a recipient, answered as unreadable. */
static void
test_old_key_missing(void **state)
{
	struct ihala_client *c = *state;

	deliver_sealed(71, T_OLD);
	take(c, 71, IHALA_ESEALRECIP);
	assert_unreadable(c, 1, 71, IHALA_ESEALRECIP);
}

/*
 * An ERASURE delivery deletes the node's sealed copies of its seqs (a pending entry's sealed
 * part, the journal's records) before it is handed over; the entry is then read as erased.
 */
static void
test_erasure_delivery(void **state)
{
	struct ihala_client *c = *state;
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__Deliver dl = IHALA__V2__DELIVER__INIT;
	Ihala__V2__LogEntry le = IHALA__V2__LOG_ENTRY__INIT;
	Ihala__V2__BrokerEvent ev = IHALA__V2__BROKER_EVENT__INIT;
	uint64_t erased[] = {60, 62};
	uint8_t entry[512];
	char json[256];
	int n = 0;
	struct ihala_receipt rc;
	Ihala__V2__Envelope *e;
	size_t nrej = 0;
	pthread_t t;

	/* one of the referral's messages was refused: on the rejected list, sealed */
	fb.dir_cert = "moh-enc.crt";
	e = envelope("m-refused");
	e->note->text = (char *)arabic;
	t = steps_start();
	assert_int_equal(ihala_submit(c, e, 500, &rc), IHALA_ETIMEDOUT);
	steps_stop(t);
	wait_submits(c, 1);
	fake_receipt("m-refused", IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED, IHALA_ESCHEMA);
	sync_client(c);
	assert_int_equal(localstore_rejected_count(ihala_store(c), &nrej), 0);
	assert_int_equal(nrej, 1);

	/* the journal keeps what it is told sealed, and opens it on read */
	snprintf(json, sizeof(json), "{\"note\":\"%s\"}", arabic);
	assert_int_equal(ihala_journal_put(c, "R-1", 60, json), 0);
	assert_int_equal(ihala_journal_put(c, "R-1", 61, "{\"event\":1}"), 0);
	assert_false(in_store(arabic));
	assert_int_equal(ihala_journal_iter(c, "R-1", count_json, &n), 0);
	assert_int_equal(n, 2);
	deliver_sealed(60, T_NONE);
	le.seq = 63;
	le.recipient = "dma";
	le.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_ERASURE;
	le.event = &ev;
	ev.referral_id = "R-1";
	ev.n_erased_seqs = 2;
	ev.erased_seqs = erased;
	ev.reason_code = IHALA__V2__REASON_CODE__REASON_CODE_CONSENT_WITHDRAWN;
	dl.seq = 63;
	dl.entry.len = ihala__v2__log_entry__pack(&le, entry);
	dl.entry.data = entry;
	f.kind_case = IHALA__V2__FRAME__KIND_DELIVER;
	f.deliver = &dl;
	fake_write(&f);
	take(c, 60, IHALA_EERASED);
	take(c, 63, 0);
	n = 0;
	assert_int_equal(ihala_journal_iter(c, "R-1", count_json, &n), 0);
	assert_int_equal(n, 1); /* seq 61 stays */
	assert_int_equal(localstore_rejected_count(ihala_store(c), &nrej), 0);
	assert_int_equal(nrej, 0);         /* the refused message of R-1 went too */
	assert_int_equal(fb.n_submits, 1); /* an erased part is not unreadable */
	/* a message refused ERASED leaves the outbox for nowhere: its sealed part goes */
	e = envelope("m-after-erase");
	e->note->text = (char *)arabic;
	t = steps_start();
	assert_int_equal(ihala_submit(c, e, 500, &rc), IHALA_ETIMEDOUT);
	steps_stop(t);
	wait_submits(c, 2);
	fake_receipt("m-after-erase", IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED,
	             IHALA_EERASED);
	sync_client(c);
	assert_int_equal(outbox(c), 0);
	assert_int_equal(localstore_rejected_count(ihala_store(c), &nrej), 0);
	assert_int_equal(nrej, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_submit_receipt, client_setup, client_teardown),
	    cmocka_unit_test_setup_teardown(test_transient_refusals_keep_outbox, client_setup,
	                                    client_teardown),
	    cmocka_unit_test_setup_teardown(test_outbox_window, client_setup_window,
	                                    client_teardown),
	    cmocka_unit_test_setup_teardown(test_undecodable_frames_counted, client_setup,
	                                    client_teardown),
	    cmocka_unit_test_setup_teardown(test_deliver_ack, client_setup, client_teardown),
	    cmocka_unit_test_setup_teardown(test_reset_rehandshake, client_setup, client_teardown),
	    cmocka_unit_test_setup_teardown(test_stale_reset_during_handshake, client_setup,
	                                    client_teardown),
	    cmocka_unit_test_setup_teardown(test_sealed_submit, client_setup_sealed,
	                                    client_teardown_sealed),
	    cmocka_unit_test_setup_teardown(test_substituted_cert_refused, client_setup_sealed,
	                                    client_teardown_sealed),
	    cmocka_unit_test_setup_teardown(test_sealed_query_and_custodian, client_setup_custodian,
	                                    client_teardown_sealed),
	    cmocka_unit_test_setup_teardown(test_sent_keep_rerun, client_setup_sealed,
	                                    client_teardown_sealed),
	    cmocka_unit_test_setup_teardown(test_sent_pruned_at_open, client_setup_sealed,
	                                    client_teardown_sealed),
	    cmocka_unit_test_setup_teardown(test_sealed_offline, client_setup_sealed,
	                                    client_teardown_sealed),
	    cmocka_unit_test_setup_teardown(test_replay_records, client_setup, client_teardown),
	    cmocka_unit_test_setup_teardown(test_sealed_delivery, client_setup_sealed,
	                                    client_teardown_sealed),
	    cmocka_unit_test_setup_teardown(test_erasure_delivery, client_setup_sealed,
	                                    client_teardown_sealed),
	    cmocka_unit_test_setup_teardown(test_old_key_opens, client_setup_oldkey,
	                                    client_teardown_sealed),
	    cmocka_unit_test_setup_teardown(test_old_key_missing, client_setup_sealed,
	                                    client_teardown_sealed),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
