/* probe.c - raw test client: drives the broker's TLS-over-ZeroMQ channel by hand, even hostile. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <zmq.h>

#include "channel.h"
#include "clock.h"
#include "error.h"
#include "frame.h"
#include "hex.h"
#include "pbjson.h"
#include "tlsctx.h"
#include "wire.h"

/*
 * Usage: probe [options] MODE [ARGS...]; `probe --help` lists the modes.
 *
 * Exit codes: 0 the mode ran and printed its result on stdout (the caller
 * judges the text), 1 refused (welcome-like modes) or the expected event
 * did not happen, 2 usage, 3 no answer in time, 4 local failure.
 *
 * Everything it prints on stdout is one result per line, stable for grep.
 */

#define EXIT_OK 0
#define EXIT_REFUSED 1
#define EXIT_USAGE 2
#define EXIT_TIMEOUT 3
#define EXIT_LOCAL 4

/* The probe accepts anything the broker may send and may write large frames. */
#define PROBE_MAX_FRAME FRAME_MAX_LIMIT
/* Room for one ZeroMQ message's payload. */
#define WIRE_CHUNK (64 * 1024)
#define LINGER_MS 500
/* How long to look for the close that follows a session Error. */
#define CLOSE_WAIT_MS 1500
#define LIVENESS_REQ_ID 4242

struct opts {
	const char *endpoint;
	const char *ca;
	const char *cert;
	const char *key;
	const char *server_name;
	int no_cert;
	int tls12;
	int close_after;
	int no_immediate;
	long timeout_ms;
	/* make-envelope */
	const char *from;
	const char *to;
	const char *message_id;
	const char *referral_id;
	int bad_utf8;
	/* submit-file, submit-json: a sealed part to attach; the envelope's sealed_sha256 is
	 * set to its SHA-256 unless `hash` (hex, "" for none) says otherwise */
	const char *sealed;
	const char *hash;
	int ack; /* inbox: ack each delivery */
};

/* One DEALER connection and the TLS session on it. */
struct conn {
	struct wire *w;
	int gone; /* the socket monitor saw the TCP connection go (sticky) */
};

enum ev {
	EV_FRAME,      /* *f holds a decoded frame (frame_free it) */
	EV_CLOSED,     /* close_notify from the broker */
	EV_FAILED,     /* channel failed: channel_error_text() */
	EV_RESET,      /* CHANNEL_MSG_RESET arrived */
	EV_DISCONNECT, /* the socket monitor saw the TCP connection go */
	EV_TIMEOUT,
	EV_LOCAL, /* our own failure, already printed on stderr */
};

static void *zctx;
static SSL_CTX *sslctx;
static struct opts opt;

static uint64_t
now_ms(void)
{
	return clock_mono_ms();
}

static long
left_ms(uint64_t deadline)
{
	uint64_t t = now_ms();

	return t >= deadline ? 0 : (long)(deadline - t);
}

/* ---- TLS context ---- */

static int
ctx_by_hand(SSL_CTX **out)
{
	static const unsigned char alpn[] = "\x07" TLSCTX_ALPN;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		return IHALA_ENOMEM;
	}
	if (opt.tls12) {
		SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
		SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
	} else {
		SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	}
	if (SSL_CTX_load_verify_file(ctx, opt.ca) != 1) {
		fprintf(stderr, "probe: cannot load CA '%s'\n", opt.ca);
		goto fail;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1) != 0) {
		goto fail;
	}
	if (!opt.no_cert) {
		if (SSL_CTX_use_certificate_chain_file(ctx, opt.cert) != 1 ||
		    SSL_CTX_use_PrivateKey_file(ctx, opt.key, SSL_FILETYPE_PEM) != 1) {
			fprintf(stderr, "probe: cannot load '%s' / '%s'\n", opt.cert, opt.key);
			goto fail;
		}
	}
	*out = ctx;
	return 0;
fail:
	SSL_CTX_free(ctx);
	return IHALA_ECONFIG;
}

static int
make_ctx(void)
{
	struct tls_files tf;
	char err[512];
	int rc;

	if (opt.ca == NULL || (!opt.no_cert && (opt.cert == NULL || opt.key == NULL))) {
		fprintf(stderr, "probe: --ca and --cert/--key (or --no-cert) are required\n");
		return IHALA_EINVAL;
	}
	if (opt.no_cert || opt.tls12) {
		return ctx_by_hand(&sslctx);
	}
	memset(&tf, 0, sizeof(tf));
	tf.ca_file = opt.ca;
	tf.cert_file = opt.cert;
	tf.key_file = opt.key;
	rc = tlsctx_client_new(&tf, &sslctx, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "probe: %s\n", err);
	}
	return rc;
}

/* ---- connection ---- */

/* A DEALER to the broker; monitor: see the TCP connection go (EV_DISCONNECT). Sends block up
 * to --timeout until connected. */
static int
conn_open(struct conn *c, int monitor)
{
	struct wire_opts o;
	char err[256];
	int rc;

	memset(c, 0, sizeof(*c));
	memset(&o, 0, sizeof(o));
	o.endpoint = opt.endpoint;
	o.ssl = sslctx;
	o.server_name = opt.server_name;
	o.max_frame = PROBE_MAX_FRAME;
	o.out_cap = channel_wire_size(PROBE_MAX_FRAME);
	o.immediate = !opt.no_immediate;
	o.linger_ms = LINGER_MS;
	o.send_timeout_ms = (int)opt.timeout_ms;
	o.monitor = monitor;
	rc = wire_open(zctx, &o, &c->w, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "probe: %s\n", err);
	}
	return rc;
}

static void
conn_close(struct conn *c)
{
	wire_free(c->w, -1);
	c->w = NULL;
}

static struct channel *
conn_channel(const struct conn *c)
{
	return wire_channel(c->w);
}

/* One ZeroMQ message: type byte + payload. Blocks up to --timeout until connected. */
static int
conn_send(struct conn *c, uint8_t type, const uint8_t *data, size_t len)
{
	return wire_send_raw(c->w, type, data, len);
}

/* Send every pending TLS byte of the channel. */
static int
conn_flush(struct conn *c)
{
	return wire_flush(c->w);
}

/* Fresh TLS session on the connection; its ClientHello is sent unless hold_hello. */
static int
conn_start_tls(struct conn *c, int hold_hello)
{
	int rc = wire_start(c->w, hold_hello);

	if (rc != 0 && rc != IHALA_ETIMEDOUT) {
		fprintf(stderr, "probe: cannot start TLS: %s\n", ihala_strerror(rc));
	}
	return rc;
}

/*
 * Receive one ZeroMQ message before the deadline, as it came (CHANNEL_MSG_PROBE skipped).
 * Returns 1 with *type and the payload copied into buf (*len; -2 when it is longer than
 * cap), 0 on timeout, -1 when the monitor reported a disconnect, -2 on a ZeroMQ failure.
 */
static int
conn_recv(struct conn *c, uint64_t deadline, uint8_t *type, uint8_t *buf, size_t cap, size_t *len)
{
	struct wire_event ev;

	for (;;) {
		if (wire_next_raw(c->w, &ev) != 0) {
			return -2;
		}
		if (ev.kind == WIRE_DISCONNECTED) {
			c->gone = 1;
			return -1;
		}
		if (ev.kind == WIRE_RAW) {
			if (ev.len > cap) {
				fprintf(stderr, "probe: a message of %zu bytes, more than %zu\n",
				        ev.len, cap);
				return -2;
			}
			*type = ev.type;
			*len = ev.len;
			memcpy(buf, ev.data, ev.len);
			return 1;
		}
		if (ev.kind != WIRE_NONE) {
			continue;
		}
		if (left_ms(deadline) == 0) {
			return 0;
		}
		if (wire_wait(c->w, left_ms(deadline)) < 0) {
			return -2;
		}
	}
}

/*
 * 1 when the socket monitor has seen the TCP connection go (now or before), without waiting.
 * Takes every message waiting on the connection (as it came, unread), 0 without a monitor.
 */
static int
conn_gone(struct conn *c)
{
	struct wire_event ev;

	do {
		if (wire_next_raw(c->w, &ev) != 0) {
			break;
		}
		if (ev.kind == WIRE_DISCONNECTED) {
			c->gone = 1;
		}
	} while (ev.kind != WIRE_NONE);
	return c->gone;
}

/* The next thing that happens on the session, before the deadline. */
static enum ev
conn_next(struct conn *c, uint64_t deadline, Ihala__V2__Frame **f)
{
	struct wire_event ev;
	int rc;

	for (;;) {
		rc = wire_next(c->w, &ev);
		if (rc != 0) {
			fprintf(stderr, "probe: cannot talk to the broker: %s\n",
			        rc == IHALA_EZMQ ? zmq_strerror(zmq_errno()) : ihala_strerror(rc));
			return EV_LOCAL;
		}
		switch (ev.kind) {
		case WIRE_FRAME:
			rc = frame_decode(ev.data, ev.len, PROBE_MAX_FRAME, f);
			if (rc != 0) {
				fprintf(stderr, "probe: broker sent an undecodable frame: %s\n",
				        ihala_strerror(rc));
				return EV_LOCAL;
			}
			return EV_FRAME;
		case WIRE_FAILED:
			return EV_FAILED;
		case WIRE_CLOSED:
			return EV_CLOSED;
		case WIRE_RESET:
			return EV_RESET;
		case WIRE_DISCONNECTED:
			c->gone = 1;
			return EV_DISCONNECT;
		case WIRE_NONE:
			if (left_ms(deadline) == 0) {
				return EV_TIMEOUT;
			}
			if (wire_wait(c->w, left_ms(deadline)) < 0) {
				fprintf(stderr, "probe: zmq: %s\n", zmq_strerror(zmq_errno()));
				return EV_LOCAL;
			}
			break;
		default:
			break;
		}
	}
}

/* Encode f and write it into the session; flush. */
static int
conn_write(struct conn *c, const Ihala__V2__Frame *f)
{
	int rc = wire_send_frame(c->w, f);

	return rc != 0 ? rc : conn_flush(c);
}

static int
send_checkpoint_request(struct conn *c, uint64_t id)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__CheckpointRequest q = IHALA__V2__CHECKPOINT_REQUEST__INIT;

	q.request_id = id;
	f.kind_case = IHALA__V2__FRAME__KIND_CHECKPOINT_REQUEST;
	f.checkpoint_request = &q;
	return conn_write(c, &f);
}

/* Polite end: close_notify, then the socket. */
static void
conn_bye(struct conn *c)
{
	wire_close(c->w);
	conn_close(c);
}

/* ---- printing ---- */

static const char *
role_name(Ihala__V2__Role r)
{
	switch (r) {
	case IHALA__V2__ROLE__ROLE_DMA:
		return "dma";
	case IHALA__V2__ROLE__ROLE_MINISTRY:
		return "ministry";
	case IHALA__V2__ROLE__ROLE_NGO:
		return "ngo";
	case IHALA__V2__ROLE__ROLE_AUDITOR:
		return "auditor";
	default:
		return "unspecified";
	}
}

static const char *
code_name(int wire)
{
	return ihala_errname(-wire);
}

static void
print_receipt(const Ihala__V2__Receipt *r)
{
	switch (r->status) {
	case IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED:
		printf("receipt ACCEPTED seq %llu\n", (unsigned long long)r->seq);
		break;
	case IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_DUPLICATE:
		printf("receipt DUPLICATE seq %llu\n", (unsigned long long)r->seq);
		break;
	case IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED:
		printf("receipt REFUSED %s: %s\n", code_name(r->error_code), r->error_message);
		break;
	default:
		printf("receipt status %d\n", (int)r->status);
		break;
	}
}

/* One line for any frame the broker sent. */
static void
print_frame(const char *prefix, const Ihala__V2__Frame *f)
{
	switch (f->kind_case) {
	case IHALA__V2__FRAME__KIND_ERROR:
		printf("%serror %s: %s\n", prefix, code_name((int)f->error->code),
		       f->error->message);
		break;
	case IHALA__V2__FRAME__KIND_RECEIPT:
		fputs(prefix, stdout);
		print_receipt(f->receipt);
		break;
	default:
		printf("%sframe %d\n", prefix, (int)f->kind_case);
		break;
	}
}

/* ---- the session opening, shared by most modes ---- */

/*
 * Handshake and wait for Welcome. On success returns EXIT_OK and, when
 * `print`, prints "welcome AGENCY ROLE". Otherwise prints "refused: WHY"
 * (EXIT_REFUSED) or "timeout" (EXIT_TIMEOUT).
 */
static int
await_welcome(struct conn *c, uint64_t deadline, int print)
{
	Ihala__V2__Frame *f = NULL;

	for (;;) {
		switch (conn_next(c, deadline, &f)) {
		case EV_FRAME:
			if (f->kind_case == IHALA__V2__FRAME__KIND_WELCOME) {
				if (print) {
					printf("welcome %s %s\n", f->welcome->agency_id,
					       role_name(f->welcome->role));
				}
				frame_free(f);
				return EXIT_OK;
			}
			if (f->kind_case == IHALA__V2__FRAME__KIND_ERROR) {
				printf("refused: %s: %s\n", code_name((int)f->error->code),
				       f->error->message);
			} else {
				print_frame("refused: before Welcome: ", f);
			}
			frame_free(f);
			return EXIT_REFUSED;
		case EV_FAILED:
			printf("refused: %s\n", channel_error_text(conn_channel(c)));
			return EXIT_REFUSED;
		case EV_CLOSED:
			printf("refused: closed by the broker without a reason\n");
			return EXIT_REFUSED;
		case EV_RESET:
			printf("refused: reset by the broker\n");
			return EXIT_REFUSED;
		case EV_DISCONNECT:
			printf("refused: connection dropped by the broker\n");
			return EXIT_REFUSED;
		case EV_TIMEOUT:
			printf("timeout\n");
			return EXIT_TIMEOUT;
		case EV_LOCAL:
			return EXIT_LOCAL;
		}
	}
}

static int
open_session(struct conn *c, uint64_t deadline, int print)
{
	int rc = conn_start_tls(c, 0);

	if (rc == IHALA_ETIMEDOUT) {
		printf("timeout\n");
		return EXIT_TIMEOUT;
	}
	if (rc != 0) {
		return EXIT_LOCAL;
	}
	return await_welcome(c, deadline, print);
}

/*
 * What comes back after a hostile frame: the first frame (or "no answer"),
 * then "closed" or "open" depending on whether the broker ended the session.
 */
static int
report_answer(struct conn *c, uint64_t deadline)
{
	Ihala__V2__Frame *f = NULL;
	enum ev e;
	int terminal = 0;

	/* Deliveries and unsolicited checkpoints are not answers. */
	while ((e = conn_next(c, deadline, &f)) == EV_FRAME &&
	       (f->kind_case == IHALA__V2__FRAME__KIND_DELIVER ||
	        (f->kind_case == IHALA__V2__FRAME__KIND_CHECKPOINT &&
	         f->checkpoint->request_id == 0))) {
		frame_free(f);
	}
	switch (e) {
	case EV_FRAME:
		print_frame("", f);
		frame_free(f);
		break;
	case EV_TIMEOUT:
		printf("no answer\n");
		break;
	case EV_LOCAL:
		return EXIT_LOCAL;
	default:
		printf("no answer\n");
		terminal = 1;
		break;
	}
	if (!terminal) {
		for (;;) {
			e = conn_next(c, now_ms() + CLOSE_WAIT_MS, &f);
			if (e != EV_FRAME) {
				break;
			}
			frame_free(f); /* e.g. a Deliver: keep looking for the close */
		}
	}
	switch (e) {
	case EV_CLOSED:
	case EV_FAILED:
	case EV_RESET:
	case EV_DISCONNECT:
		printf("closed\n");
		break;
	default:
		printf("open\n");
		break;
	}
	fflush(stdout);
	return EXIT_OK;
}

/* ---- hex ---- */

static int
hexval(int ch)
{
	if (ch >= '0' && ch <= '9') {
		return ch - '0';
	}
	if (ch >= 'a' && ch <= 'f') {
		return ch - 'a' + 10;
	}
	if (ch >= 'A' && ch <= 'F') {
		return ch - 'A' + 10;
	}
	return -1;
}

/* Hex digits, with optional spaces or ':' between bytes, into a malloc'd buffer. */
static int
parse_hex(const char *s, uint8_t **out, size_t *len)
{
	uint8_t *b = malloc(strlen(s) / 2 + 1);
	size_t n = 0;
	int hi, lo;

	if (b == NULL) {
		return IHALA_ENOMEM;
	}
	while (*s != '\0') {
		if (*s == ' ' || *s == ':') {
			s++;
			continue;
		}
		hi = hexval((unsigned char)s[0]);
		lo = s[1] != '\0' ? hexval((unsigned char)s[1]) : -1;
		if (hi < 0 || lo < 0) {
			free(b);
			return IHALA_EINVAL;
		}
		b[n++] = (uint8_t)(hi << 4 | lo);
		s += 2;
	}
	*out = b;
	*len = n;
	return 0;
}

static int
parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "probe: '%s' is not a number in %ld..%ld\n", s, min, max);
		return IHALA_EINVAL;
	}
	*out = v;
	return 0;
}

/* ---- modes ---- */

static int
mode_welcome(void)
{
	struct conn c;
	int rc;

	if (conn_open(&c, 1) != 0) {
		return EXIT_LOCAL;
	}
	rc = open_session(&c, now_ms() + (uint64_t)opt.timeout_ms, 1);
	conn_bye(&c);
	return rc;
}

/* Stay connected; say how the session ended, or that it still answers. */
static int
mode_hold(long secs)
{
	uint64_t deadline;
	Ihala__V2__Frame *f = NULL;
	struct conn c;
	int rc;

	if (conn_open(&c, 1) != 0) {
		return EXIT_LOCAL;
	}
	rc = open_session(&c, now_ms() + (uint64_t)opt.timeout_ms, 1);
	fflush(stdout);
	if (rc != EXIT_OK) {
		conn_close(&c);
		return rc;
	}
	deadline = now_ms() + (uint64_t)secs * 1000;
	for (;;) {
		enum ev e = conn_next(&c, deadline, &f);

		if (e == EV_FRAME) {
			if (f->kind_case == IHALA__V2__FRAME__KIND_ERROR &&
			    f->error->request_id == 0) {
				printf("closed: %s: %s\n", code_name((int)f->error->code),
				       f->error->message);
				frame_free(f);
				break;
			}
			if (f->kind_case == IHALA__V2__FRAME__KIND_DELIVER) {
				printf("deliver %llu\n", (unsigned long long)f->deliver->seq);
			}
			frame_free(f);
			continue;
		}
		if (e == EV_TIMEOUT) {
			/* Still open as far as we know: prove it with a request. */
			if (send_checkpoint_request(&c, LIVENESS_REQ_ID) != 0) {
				printf("closed: cannot write\n");
				break;
			}
			deadline = now_ms() + (uint64_t)opt.timeout_ms;
			while ((e = conn_next(&c, deadline, &f)) == EV_FRAME) {
				uint64_t id = f->kind_case == IHALA__V2__FRAME__KIND_CHECKPOINT
				                  ? f->checkpoint->request_id
				              : f->kind_case == IHALA__V2__FRAME__KIND_ERROR
				                  ? f->error->request_id
				                  : 0;

				frame_free(f);
				if (id == LIVENESS_REQ_ID) {
					break;
				}
			}
			printf(e == EV_FRAME ? "open: answered\n" : "open: no answer\n");
			break;
		}
		if (e == EV_CLOSED) {
			printf("closed: close_notify\n");
		} else if (e == EV_FAILED) {
			printf("closed: %s\n", channel_error_text(conn_channel(&c)));
		} else if (e == EV_RESET) {
			printf("closed: reset\n");
		} else if (e == EV_DISCONNECT) {
			printf("closed: disconnected\n");
		}
		break;
	}
	conn_bye(&c);
	return EXIT_OK;
}

/*
 * Stay connected across a broker restart, as a real client must: keep asking
 * for the checkpoint; on RESET or the broker's close start a new TLS session
 * and wait for Welcome again; done when a request is answered after that.
 * Disconnects seen by the monitor are only noted: the stale TLS bytes must
 * reach the new broker, which answers them with RESET.
 */
static int
mode_reconnect(long secs)
{
	uint64_t deadline, sent_at = 0, req = 0, next_id = 1;
	Ihala__V2__Frame *f = NULL;
	struct conn c;
	int rc, again = 0, lost;

	if (conn_open(&c, 1) != 0) {
		return EXIT_LOCAL;
	}
	rc = open_session(&c, now_ms() + (uint64_t)opt.timeout_ms, 1);
	fflush(stdout);
	if (rc != EXIT_OK) {
		conn_close(&c);
		return rc;
	}
	deadline = now_ms() + (uint64_t)secs * 1000;
	while (left_ms(deadline) > 0) {
		enum ev e;

		if (req == 0 || now_ms() - sent_at > 1000) {
			req = next_id++;
			sent_at = now_ms();
			if (send_checkpoint_request(&c, req) != 0) {
				printf("write failed\n");
			}
		}
		e = conn_next(&c, now_ms() + 200 < deadline ? now_ms() + 200 : deadline, &f);
		lost = 0;
		switch (e) {
		case EV_FRAME: {
			uint64_t id = 0;

			if (f->kind_case == IHALA__V2__FRAME__KIND_CHECKPOINT) {
				id = f->checkpoint->request_id;
			} else if (f->kind_case == IHALA__V2__FRAME__KIND_ERROR) {
				id = f->error->request_id;
				if (id == 0) {
					printf("closed: %s\n", code_name((int)f->error->code));
				}
			}
			frame_free(f);
			if (id != 0 && id == req) {
				req = 0;
				if (again) {
					printf("answered after reconnect\n");
					conn_bye(&c);
					return EXIT_OK;
				}
			}
			break;
		}
		case EV_RESET:
			printf("reset\n");
			lost = 1;
			break;
		case EV_CLOSED:
			printf("closed: close_notify\n");
			lost = 1;
			break;
		case EV_FAILED:
			printf("closed: %s\n", channel_error_text(conn_channel(&c)));
			lost = 1;
			break;
		case EV_DISCONNECT:
			printf("disconnected\n");
			break;
		case EV_LOCAL:
			conn_close(&c);
			return EXIT_LOCAL;
		default:
			break;
		}
		fflush(stdout);
		while (lost && left_ms(deadline) > 0) {
			/* A handshake may get lost in a dying connection: retry on a fresh one. */
			rc = open_session(
			    &c, now_ms() + 3000 < deadline ? now_ms() + 3000 : deadline, 0);
			if (rc == EXIT_OK) {
				printf("welcome again\n");
				fflush(stdout);
				again = 1;
				lost = 0;
				req = 0;
				break;
			}
			conn_close(&c);
			if (conn_open(&c, 1) != 0) {
				return EXIT_LOCAL;
			}
		}
	}
	printf("not reconnected\n");
	conn_close(&c);
	return EXIT_REFUSED;
}

static void
random_not_tls(uint8_t *b, size_t n)
{
	RAND_bytes(b, (int)n);
	b[0] = 0x17; /* never 0x16: this must not pass for a ClientHello */
}

/* Random bytes from a fresh connection: the broker must answer RESET. */
static int
mode_garbage(void)
{
	uint8_t junk[512], buf[64], type;
	struct conn c;
	size_t n;
	int rc;

	random_not_tls(junk, sizeof(junk));
	if (conn_open(&c, 0) != 0) {
		return EXIT_LOCAL;
	}
	if (conn_send(&c, CHANNEL_MSG_TLS, junk, sizeof(junk)) != 0) {
		printf("timeout\n");
		conn_close(&c);
		return EXIT_TIMEOUT;
	}
	rc = conn_recv(&c, now_ms() + (uint64_t)opt.timeout_ms, &type, buf, sizeof(buf), &n);
	conn_close(&c);
	if (rc == 1 && type == CHANNEL_MSG_RESET) {
		printf("reset\n");
		return EXIT_OK;
	}
	if (rc == 1) {
		printf("unexpected message type %u\n", type);
		return EXIT_REFUSED;
	}
	printf("timeout\n");
	return EXIT_TIMEOUT;
}

/* Send one junk byte on each connection; count the RESETs within wait_ms. */
static size_t
count_resets(struct conn *cs, size_t n, long wait_ms)
{
	zmq_pollitem_t *it = calloc(n, sizeof(*it));
	uint8_t *seen = calloc(n, 1);
	uint64_t deadline;
	uint8_t junk = 0x17, buf[64], type;
	size_t i, resets = 0, len;

	if (it == NULL || seen == NULL) {
		free(it);
		free(seen);
		return 0;
	}
	for (i = 0; i < n; i++) {
		/* A connection the broker closed lost its session too: that counts. */
		if (conn_gone(&cs[i])) {
			seen[i] = 1;
			resets++;
			continue;
		}
		conn_send(&cs[i], CHANNEL_MSG_TLS, &junk, 1);
	}
	deadline = now_ms() + (uint64_t)wait_ms;
	while (resets < n && left_ms(deadline) > 0) {
		for (i = 0; i < n; i++) {
			it[i].socket = wire_socket(cs[i].w);
			it[i].events = ZMQ_POLLIN;
		}
		if (zmq_poll(it, (int)n, left_ms(deadline)) <= 0) {
			continue;
		}
		for (i = 0; i < n; i++) {
			if ((it[i].revents & ZMQ_POLLIN) &&
			    conn_recv(&cs[i], now_ms(), &type, buf, sizeof(buf), &len) == 1 &&
			    type == CHANNEL_MSG_RESET && !seen[i]) {
				seen[i] = 1;
				resets++;
			}
		}
	}
	for (i = 0; i < n; i++) {
		/* Closed by the broker while we waited (our bytes then went nowhere). */
		if (!seen[i] && conn_gone(&cs[i])) {
			seen[i] = 1;
			resets++;
		}
	}
	free(it);
	free(seen);
	return resets;
}

/*
 * N connections each send a real ClientHello and nothing more, for SECONDS.
 * Then one more byte on each: a connection whose session the broker dropped
 * gets RESET.
 */
static int
mode_halfopen(long n, long secs)
{
	struct conn *cs = calloc((size_t)n, sizeof(*cs));
	zmq_pollitem_t *it = calloc((size_t)n, sizeof(*it));
	uint8_t *answered = calloc((size_t)n, 1);
	uint8_t buf[WIRE_CHUNK], type;
	size_t i, na = 0, len, resets;
	uint64_t deadline;
	int rc = EXIT_LOCAL;

	if (cs == NULL || it == NULL || answered == NULL) {
		goto out;
	}
	for (i = 0; i < (size_t)n; i++) {
		if (conn_open(&cs[i], 1) != 0) {
			fprintf(stderr, "probe: half-open connection %zu failed\n", i);
			goto out;
		}
	}
	/* The ClientHellos together, once every connection (and its monitor) is set up. */
	for (i = 0; i < (size_t)n; i++) {
		if (conn_start_tls(&cs[i], 0) != 0) {
			fprintf(stderr, "probe: half-open connection %zu failed\n", i);
			goto out;
		}
	}
	printf("sent %ld\n", n);
	fflush(stdout);
	deadline = now_ms() + (uint64_t)secs * 1000;
	while (left_ms(deadline) > 0) {
		for (i = 0; i < (size_t)n; i++) {
			it[i].socket = wire_socket(cs[i].w);
			it[i].events = ZMQ_POLLIN;
		}
		if (zmq_poll(it, (int)n, left_ms(deadline)) <= 0) {
			continue;
		}
		for (i = 0; i < (size_t)n; i++) {
			if ((it[i].revents & ZMQ_POLLIN) &&
			    conn_recv(&cs[i], now_ms(), &type, buf, sizeof(buf), &len) == 1 &&
			    !answered[i]) {
				answered[i] = 1;
				na++;
			}
		}
	}
	resets = count_resets(cs, (size_t)n, 3000);
	printf("halfopen %ld: %zu answered, %zu reset\n", n, na, resets);
	rc = EXIT_OK;
out:
	for (i = 0; cs != NULL && i < (size_t)n; i++) {
		conn_close(&cs[i]);
	}
	free(cs);
	free(it);
	free(answered);
	return rc;
}

/* Take the whole ClientHello out of a fresh channel, without sending it. */
static int
take_hello(struct conn *c, uint8_t *buf, size_t cap, size_t *len)
{
	if (conn_start_tls(c, 1) != 0) {
		return IHALA_ETLS;
	}
	channel_take_out(conn_channel(c), buf, cap, len);
	return *len >= 16 ? 0 : IHALA_ETLS;
}

/*
 * A handshake that straddles a reload: ClientHello, the broker's whole flight taken in (its
 * certificate checked, ours made ready), then our certificate held back until the file
 * `trigger` exists; then as welcome. Prints "held" when the broker's flight is in.
 */
static int
mode_straddle(const char *trigger)
{
	uint8_t buf[WIRE_CHUNK], type;
	uint64_t deadline;
	size_t len;
	struct conn c;
	int rc;

	if (conn_open(&c, 1) != 0) {
		return EXIT_LOCAL;
	}
	deadline = now_ms() + (uint64_t)opt.timeout_ms;
	rc = conn_start_tls(&c, 0);
	if (rc != 0) {
		conn_close(&c);
		return rc == IHALA_ETIMEDOUT ? (printf("timeout\n"), EXIT_TIMEOUT) : EXIT_LOCAL;
	}
	/* Fed by hand, so that nothing flushes our answer before the trigger. */
	while (channel_state(conn_channel(&c)) == CHANNEL_HANDSHAKING) {
		rc = conn_recv(&c, deadline, &type, buf, sizeof(buf), &len);
		if (rc != 1 || type != CHANNEL_MSG_TLS) {
			printf(rc == 0 ? "timeout\n" : "refused: no server flight\n");
			conn_close(&c);
			return rc == 0 ? EXIT_TIMEOUT : EXIT_REFUSED;
		}
		if (channel_feed(conn_channel(&c), buf, len) != 0) {
			printf("refused: %s\n", channel_error_text(conn_channel(&c)));
			conn_close(&c);
			return EXIT_REFUSED;
		}
	}
	printf("held\n");
	fflush(stdout);
	while (access(trigger, F_OK) != 0) {
		if (left_ms(deadline) == 0) {
			printf("timeout\n");
			conn_close(&c);
			return EXIT_TIMEOUT;
		}
		usleep(10 * 1000);
	}
	rc = await_welcome(&c, now_ms() + (uint64_t)opt.timeout_ms, 1);
	conn_bye(&c);
	return rc;
}

/* The first half of a ClientHello, then silence; then one byte to see if it was dropped. */
static int
mode_halfhandshake(void)
{
	uint8_t hello[WIRE_CHUNK], buf[WIRE_CHUNK], type;
	size_t hlen, half, len;
	struct conn c;
	int rc, answered;

	if (conn_open(&c, 0) != 0 || take_hello(&c, hello, sizeof(hello), &hlen) != 0) {
		return EXIT_LOCAL;
	}
	half = hlen / 2;
	if (conn_send(&c, CHANNEL_MSG_TLS, hello, half) != 0) {
		printf("timeout\n");
		conn_close(&c);
		return EXIT_TIMEOUT;
	}
	rc = conn_recv(&c, now_ms() + (uint64_t)opt.timeout_ms, &type, buf, sizeof(buf), &len);
	answered = rc == 1;

	conn_send(&c, CHANNEL_MSG_TLS, hello + half, 1);
	rc = conn_recv(&c, now_ms() + 2000, &type, buf, sizeof(buf), &len);
	printf("halfhandshake: %s, %s\n", answered ? "answered" : "silent",
	       rc == 1 && type == CHANNEL_MSG_RESET ? "dropped" : "pending");
	conn_close(&c);
	return EXIT_OK;
}

/* A ClientHello one byte per second, until the broker drops it (RESET) or --timeout. */
static int
mode_slowloris(void)
{
	uint8_t hello[WIRE_CHUNK], buf[WIRE_CHUNK], type;
	size_t hlen, off, len;
	uint64_t start, deadline;
	struct conn c;
	int rc;

	if (conn_open(&c, 0) != 0 || take_hello(&c, hello, sizeof(hello), &hlen) != 0) {
		return EXIT_LOCAL;
	}
	start = now_ms();
	deadline = start + (uint64_t)opt.timeout_ms;
	/* 9 bytes: the least the broker takes for the start of a ClientHello. */
	off = 9;
	if (conn_send(&c, CHANNEL_MSG_TLS, hello, off) != 0) {
		printf("timeout\n");
		conn_close(&c);
		return EXIT_TIMEOUT;
	}
	while (left_ms(deadline) > 0) {
		rc = conn_recv(&c, now_ms() + 1000 < deadline ? now_ms() + 1000 : deadline, &type,
		               buf, sizeof(buf), &len);
		if (rc == 1 && type == CHANNEL_MSG_RESET) {
			printf("dropped after %.1f s\n", (double)(now_ms() - start) / 1000.0);
			conn_close(&c);
			return EXIT_OK;
		}
		if (rc == 0 && off < hlen) {
			conn_send(&c, CHANNEL_MSG_TLS, hello + off, 1);
			off++;
		}
	}
	printf("not dropped after %.1f s (%zu of %zu bytes sent)\n",
	       (double)(now_ms() - start) / 1000.0, off, hlen);
	conn_close(&c);
	return EXIT_REFUSED;
}

/* One ZeroMQ message of SIZE bytes from a fresh connection. */
static int
mode_bigmsg(long size)
{
	uint8_t *junk = malloc((size_t)size), buf[64], type;
	struct conn c;
	size_t len;
	int rc;

	if (junk == NULL || conn_open(&c, 1) != 0) {
		free(junk);
		return EXIT_LOCAL;
	}
	random_not_tls(junk, (size_t)size);
	rc = conn_send(&c, CHANNEL_MSG_TLS, junk, (size_t)size);
	free(junk);
	if (rc != 0) {
		printf("timeout\n");
		conn_close(&c);
		return EXIT_TIMEOUT;
	}
	rc = conn_recv(&c, now_ms() + (uint64_t)opt.timeout_ms, &type, buf, sizeof(buf), &len);
	if (rc == -1) {
		printf("disconnected\n");
	} else if (rc == 1 && type == CHANNEL_MSG_RESET) {
		printf("reset\n");
	} else if (rc == 1) {
		printf("answered\n");
	} else {
		printf("timeout\n");
	}
	conn_close(&c);
	return EXIT_OK;
}

/*
 * N complete handshakes, at most WINDOW of them unfinished at a time (WINDOW = N: all at once);
 * count Welcomes. Finished sessions stay open; connections end without close_notify.
 */
static int
mode_flood(long n, long window)
{
	struct conn *cs = calloc((size_t)n, sizeof(*cs));
	zmq_pollitem_t *it = calloc((size_t)n, sizeof(*it));
	uint8_t *done = calloc((size_t)n, 1);
	size_t i, started = 0, welcomed = 0, refused = 0;
	uint64_t deadline;
	int rc = EXIT_LOCAL;

	if (cs == NULL || it == NULL || done == NULL) {
		goto out;
	}
	deadline = now_ms() + (uint64_t)opt.timeout_ms;
	while (welcomed + refused < (size_t)n && left_ms(deadline) > 0) {
		/* Connect only when the ClientHello follows: the broker closes a connection that
		 * sends none within handshake_timeout. */
		while (started < (size_t)n && started - welcomed - refused < (size_t)window) {
			if (conn_open(&cs[started], 0) != 0 ||
			    conn_start_tls(&cs[started], 0) != 0) {
				fprintf(stderr, "probe: flood connection %zu failed\n", started);
				goto out;
			}
			started++;
		}
		for (i = 0; i < started; i++) {
			it[i].socket = wire_socket(cs[i].w);
			it[i].events = done[i] ? 0 : ZMQ_POLLIN;
		}
		if (zmq_poll(it, (int)started, left_ms(deadline)) <= 0) {
			continue;
		}
		for (i = 0; i < started; i++) {
			struct wire_event ev;

			while (!done[i] && (it[i].revents & ZMQ_POLLIN) &&
			       wire_next(cs[i].w, &ev) == 0 && ev.kind != WIRE_NONE) {
				Ihala__V2__Frame *f = NULL;

				if (ev.kind == WIRE_FRAME &&
				    frame_decode(ev.data, ev.len, PROBE_MAX_FRAME, &f) == 0) {
					done[i] = 1;
					if (f->kind_case == IHALA__V2__FRAME__KIND_WELCOME) {
						welcomed++;
					} else {
						refused++;
					}
					frame_free(f);
				} else if (ev.kind == WIRE_RESET || ev.kind == WIRE_FAILED ||
				           ev.kind == WIRE_CLOSED) {
					done[i] = 1;
					refused++;
				}
			}
		}
	}
	printf("flood %ld: %zu welcome, %zu refused, %zu no answer\n", n, welcomed, refused,
	       (size_t)n - welcomed - refused);
	rc = EXIT_OK;
out:
	for (i = 0; cs != NULL && i < (size_t)n; i++) {
		conn_close(&cs[i]);
	}
	free(cs);
	free(it);
	free(done);
	return rc;
}

/*
 * After Welcome, write Query frames for SECS seconds, PER_FLUSH frames per flush, and read
 * none of the answers; then close without close_notify. With the answers left unread the
 * close resets the connection while the broker may still hold unread input from it.
 */
static int
mode_query_flood(long secs, long per_flush)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__Query q = IHALA__V2__QUERY__INIT;
	uint64_t deadline, sent = 0;
	uint8_t *buf = NULL;
	size_t len;
	struct conn c;
	long i;
	int rc;

	if (conn_open(&c, 0) != 0) {
		return EXIT_LOCAL;
	}
	rc = open_session(&c, now_ms() + (uint64_t)opt.timeout_ms, 1);
	if (rc != EXIT_OK) {
		conn_close(&c);
		return rc;
	}
	q.request_id = 1;
	q.referral_id = "R-FLOOD";
	f.kind_case = IHALA__V2__FRAME__KIND_QUERY;
	f.query = &q;
	if (frame_encode(&f, &buf, &len) != 0) {
		conn_close(&c);
		return EXIT_LOCAL;
	}
	deadline = now_ms() + (uint64_t)secs * 1000;
	rc = 0;
	while (rc == 0 && left_ms(deadline) > 0) {
		for (i = 0; i < per_flush && rc == 0; i++) {
			rc = channel_write_frame(conn_channel(&c), buf, len);
			sent += rc == 0;
		}
		if (rc == 0) {
			rc = conn_flush(&c);
		}
	}
	free(buf);
	printf("query-flood: %llu frames written%s\n", (unsigned long long)sent,
	       rc == 0 ? "" : ", then the broker stopped taking them");
	conn_close(&c);
	return EXIT_OK;
}

/*
 * Two connections naming the same ZeroMQ routing id, each then writing N messages (junk the
 * broker answers with RESET), then both closed. Prints 'dup-rid: N messages each'.
 */
static int
mode_dup_rid(long n)
{
	char rid[64];
	uint8_t junk[64], first[1 + sizeof(junk)];
	void *sock[2] = {NULL, NULL};
	long i, k;
	int rc = EXIT_OK, zero = 0, tmo = (int)opt.timeout_ms;

	memset(junk, 0x5a, sizeof(junk));
	first[0] = CHANNEL_MSG_TLS;
	memcpy(first + 1, junk, sizeof(junk));
	snprintf(rid, sizeof(rid), "probe-dup-rid-%ld", (long)getpid());
	/* Plain DEALERs: a wire never sets ZMQ_ROUTING_ID, and no TLS is needed here. */
	for (k = 0; k < 2 && rc == EXIT_OK; k++) {
		sock[k] = zmq_socket(zctx, ZMQ_DEALER);
		if (sock[k] == NULL) {
			rc = EXIT_LOCAL;
			break;
		}
		zmq_setsockopt(sock[k], ZMQ_ROUTING_ID, rid, strlen(rid));
		zmq_setsockopt(sock[k], ZMQ_LINGER, &zero, sizeof(zero));
		zmq_setsockopt(sock[k], ZMQ_SNDTIMEO, &tmo, sizeof(tmo));
		if (zmq_connect(sock[k], opt.endpoint) != 0 ||
		    zmq_send(sock[k], first, sizeof(first), 0) != (int)sizeof(first)) {
			fprintf(stderr, "probe: dup-rid connection %ld: %s\n", k,
			        zmq_strerror(zmq_errno()));
			rc = EXIT_LOCAL;
		}
		usleep(200 * 1000); /* the first is known by its id before the second comes */
	}
	for (i = 0; i < n && rc == EXIT_OK; i++) {
		for (k = 0; k < 2; k++) {
			zmq_send(sock[k], junk, sizeof(junk), ZMQ_DONTWAIT);
		}
	}
	usleep(200 * 1000);
	for (k = 0; k < 2; k++) {
		if (sock[k] != NULL) {
			zmq_close(sock[k]);
		}
	}
	if (rc == EXIT_OK) {
		printf("dup-rid: %ld messages each\n", n);
	}
	return rc;
}

/* N ZeroMQ connections that never send a byte of TLS, held SECS seconds: how many the broker
 * closed ('silent N: D disconnected'). */
static int
mode_silent(long n, long secs)
{
	struct conn *cs = calloc((size_t)n, sizeof(*cs));
	uint8_t *gone = calloc((size_t)n, 1);
	uint64_t deadline;
	size_t i, ngone = 0;
	int rc = EXIT_LOCAL;

	if (cs == NULL || gone == NULL) {
		goto out;
	}
	for (i = 0; i < (size_t)n; i++) {
		if (conn_open(&cs[i], 1) != 0) {
			fprintf(stderr, "probe: silent connection %zu failed\n", i);
			goto out;
		}
	}
	printf("opened %ld\n", n);
	fflush(stdout);
	deadline = now_ms() + (uint64_t)secs * 1000;
	while (left_ms(deadline) > 0) {
		for (i = 0; i < (size_t)n; i++) {
			if (!gone[i] && conn_gone(&cs[i])) {
				gone[i] = 1;
				ngone++;
			}
		}
		usleep(50 * 1000);
	}
	printf("silent %ld: %zu disconnected\n", n, ngone);
	rc = EXIT_OK;
out:
	for (i = 0; cs != NULL && i < (size_t)n; i++) {
		conn_close(&cs[i]);
	}
	free(cs);
	free(gone);
	return rc;
}

/* After Welcome, one frame whose body is exactly `body` (any bytes). */
static int
mode_send_hex(const char *hex)
{
	struct conn c;
	uint8_t *body;
	size_t len;
	int rc;

	if (parse_hex(hex, &body, &len) != 0) {
		fprintf(stderr, "probe: bad hex '%s'\n", hex);
		return EXIT_USAGE;
	}
	if (conn_open(&c, 1) != 0) {
		free(body);
		return EXIT_LOCAL;
	}
	rc = open_session(&c, now_ms() + (uint64_t)opt.timeout_ms, 0);
	if (rc == EXIT_OK) {
		rc = wire_send_body(c.w, body, len) == 0 && conn_flush(&c) == 0
		         ? report_answer(&c, now_ms() + (uint64_t)opt.timeout_ms)
		         : EXIT_LOCAL;
	}
	free(body);
	conn_bye(&c);
	return rc;
}

/*
 * After Welcome, a length prefix of our choosing and then `hex`, written
 * straight into TLS. TEST ONLY: this does I/O on channel_ssl(), which
 * channel.h forbids, to fake framing that channel_write_frame() never
 * produces; channel_take_out() then drains what SSL wrote into the memory BIO.
 */
static int
mode_send_raw_prefix(long prefix, const char *hex)
{
	struct conn c;
	uint8_t *data, *plain;
	size_t len, n;
	int rc;

	if (parse_hex(hex, &data, &len) != 0) {
		fprintf(stderr, "probe: bad hex '%s'\n", hex);
		return EXIT_USAGE;
	}
	plain = malloc(len + CHANNEL_FRAME_PREFIX);
	if (plain == NULL || conn_open(&c, 1) != 0) {
		free(data);
		free(plain);
		return EXIT_LOCAL;
	}
	plain[0] = (uint8_t)((uint32_t)prefix >> 24);
	plain[1] = (uint8_t)((uint32_t)prefix >> 16);
	plain[2] = (uint8_t)((uint32_t)prefix >> 8);
	plain[3] = (uint8_t)prefix;
	if (len > 0) {
		memcpy(plain + CHANNEL_FRAME_PREFIX, data, len);
	}
	rc = open_session(&c, now_ms() + (uint64_t)opt.timeout_ms, 0);
	if (rc == EXIT_OK) {
		ERR_clear_error();
		if (SSL_write_ex(channel_ssl(conn_channel(&c)), plain, len + CHANNEL_FRAME_PREFIX,
		                 &n) != 1 ||
		    n != len + CHANNEL_FRAME_PREFIX) {
			fprintf(stderr, "probe: SSL_write failed\n");
			rc = EXIT_LOCAL;
		} else {
			if (opt.close_after) {
				channel_close(conn_channel(&c));
			}
			rc = conn_flush(&c) == 0 ? EXIT_OK : EXIT_LOCAL;
		}
		if (rc == EXIT_OK && opt.close_after) {
			printf("sent and closed\n");
		} else if (rc == EXIT_OK) {
			rc = report_answer(&c, now_ms() + (uint64_t)opt.timeout_ms);
		}
	}
	free(data);
	free(plain);
	conn_bye(&c);
	return rc;
}

static int
read_file(const char *path, uint8_t **out, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *b = NULL, *nb;
	size_t cap = 0, n = 0, r;

	if (fp == NULL) {
		fprintf(stderr, "probe: cannot open '%s': %s\n", path, strerror(errno));
		return IHALA_EIO;
	}
	for (;;) {
		if (n == cap) {
			cap = cap == 0 ? 4096 : cap * 2;
			nb = realloc(b, cap);
			if (nb == NULL) {
				free(b);
				fclose(fp);
				return IHALA_ENOMEM;
			}
			b = nb;
		}
		r = fread(b + n, 1, cap - n, fp);
		if (r == 0) {
			break;
		}
		n += r;
	}
	fclose(fp);
	*out = b;
	*len = n;
	return 0;
}

/*
 * The envelope `env` (len bytes, malloc'ed) with --sealed: its sealed_sha256 set (the part's
 * SHA-256, or --hash) and encoded again; the part into *sealed (malloc'ed). Without
 * --sealed, nothing changes. 0 or EXIT_*.
 */
static int
attach_sealed(uint8_t **env, size_t *len, uint8_t **sealed, size_t *slen)
{
	Ihala__V2__Envelope *e;
	uint8_t md[32], *hash = NULL, *nb;
	size_t hlen = 0;

	*sealed = NULL;
	*slen = 0;
	if (opt.sealed == NULL) {
		return 0;
	}
	if (read_file(opt.sealed, sealed, slen) != 0) {
		return EXIT_LOCAL;
	}
	if (opt.hash != NULL && opt.hash[0] != '\0' && parse_hex(opt.hash, &hash, &hlen) != 0) {
		fprintf(stderr, "probe: --hash is not hex\n");
		return EXIT_USAGE;
	}
	if (opt.hash == NULL && EVP_Digest(*sealed, *slen, md, NULL, EVP_sha256(), NULL) != 1) {
		return EXIT_LOCAL;
	}
	e = ihala__v2__envelope__unpack(NULL, *len, *env);
	if (e == NULL) {
		fprintf(stderr, "probe: --sealed needs an envelope that decodes\n");
		free(hash);
		return EXIT_USAGE;
	}
	e->sealed_sha256.data = opt.hash == NULL ? md : hash;
	e->sealed_sha256.len = opt.hash == NULL ? sizeof(md) : hlen;
	nb = malloc(ihala__v2__envelope__get_packed_size(e) + 1);
	if (nb == NULL) {
		e->sealed_sha256.data = NULL;
		ihala__v2__envelope__free_unpacked(e, NULL);
		free(hash);
		return EXIT_LOCAL;
	}
	*len = ihala__v2__envelope__pack(e, nb);
	e->sealed_sha256.data = NULL; /* ours, not the message's */
	e->sealed_sha256.len = 0;
	ihala__v2__envelope__free_unpacked(e, NULL);
	free(hash);
	free(*env);
	*env = nb;
	return 0;
}

/* After Welcome, a Submit of `env` (len bytes; owned) as the envelope, with --sealed's part;
 * print the Receipt. */
static int
submit_bytes(uint8_t *env, size_t len)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__Submit s = IHALA__V2__SUBMIT__INIT;
	Ihala__V2__Frame *in = NULL;
	uint8_t *sealed = NULL;
	size_t slen = 0;
	struct conn c;
	int rc;

	if ((rc = attach_sealed(&env, &len, &sealed, &slen)) != 0) {
		free(env);
		free(sealed);
		return rc;
	}
	if (conn_open(&c, 1) != 0) {
		free(env);
		free(sealed);
		return EXIT_LOCAL;
	}
	rc = open_session(&c, now_ms() + (uint64_t)opt.timeout_ms, 0);
	if (rc == EXIT_OK) {
		s.envelope.data = env;
		s.envelope.len = len;
		s.sealed.data = sealed;
		s.sealed.len = slen;
		f.kind_case = IHALA__V2__FRAME__KIND_SUBMIT;
		f.submit = &s;
		if (conn_write(&c, &f) != 0) {
			rc = EXIT_LOCAL;
		}
	}
	while (rc == EXIT_OK) {
		enum ev e = conn_next(&c, now_ms() + (uint64_t)opt.timeout_ms, &in);

		if (e == EV_FRAME && in->kind_case != IHALA__V2__FRAME__KIND_RECEIPT &&
		    in->kind_case != IHALA__V2__FRAME__KIND_ERROR) {
			frame_free(in);
			continue;
		}
		if (e == EV_FRAME) {
			print_frame("", in);
			frame_free(in);
		} else if (e == EV_TIMEOUT) {
			printf("timeout\n");
			rc = EXIT_TIMEOUT;
		} else {
			printf("closed without a receipt\n");
			rc = EXIT_REFUSED;
		}
		break;
	}
	free(env);
	free(sealed);
	conn_bye(&c);
	return rc;
}

/* After Welcome, a Submit of FILE's bytes as the envelope; print the Receipt. */
static int
mode_submit_file(const char *path)
{
	uint8_t *env;
	size_t len;

	if (read_file(path, &env, &len) != 0) {
		return EXIT_LOCAL;
	}
	return submit_bytes(env, len);
}

/* The same for an Envelope given as JSON (pbjson names); an empty messageId gets a random
 * one. */
static int
mode_submit_json(const char *path)
{
	ProtobufCMessage *m = NULL;
	Ihala__V2__Envelope *e;
	uint8_t *text, *env, rnd[8];
	char err[256], id[32];
	size_t len;

	if (read_file(path, &text, &len) != 0) {
		return EXIT_LOCAL;
	}
	if (pbjson_from_string(&ihala__v2__envelope__descriptor, (const char *)text, len, &m, err,
	                       sizeof(err)) != 0) {
		fprintf(stderr, "probe: %s: %s\n", path, err);
		free(text);
		return EXIT_USAGE;
	}
	free(text);
	e = (Ihala__V2__Envelope *)m;
	if (e->message_id == NULL || e->message_id[0] == '\0') {
		if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
			protobuf_c_message_free_unpacked(m, NULL);
			return EXIT_LOCAL;
		}
		hex_encode(rnd, sizeof(rnd), id);
		if (e->message_id != NULL && e->message_id != protobuf_c_empty_string) {
			free(e->message_id);
		}
		e->message_id = strdup(id);
	}
	env = malloc(ihala__v2__envelope__get_packed_size(e) + 1);
	if (env == NULL || e->message_id == NULL) {
		free(env);
		protobuf_c_message_free_unpacked(m, NULL);
		return EXIT_LOCAL;
	}
	len = ihala__v2__envelope__pack(e, env);
	protobuf_c_message_free_unpacked(m, NULL);
	return submit_bytes(env, len);
}

/* "none", or the first 8 bytes of the SHA-256 of a sealed part in hex. */
static const char *
sealed_tag(const ProtobufCBinaryData *b, char *buf)
{
	uint8_t md[32];

	if (b->len == 0) {
		return "none";
	}
	if (EVP_Digest(b->data, b->len, md, NULL, EVP_sha256(), NULL) != 1) {
		return "?";
	}
	hex_encode(md, 8, buf);
	return buf;
}

/* One line for a logged entry: "KIND SEQ sender S recipient R sealed TAG[ ...]". */
static void
print_entry(const char *what, uint64_t seq, const ProtobufCBinaryData *entry,
            const ProtobufCBinaryData *sealed)
{
	static const char *kinds[] = {"unspecified", "submission", "delivery", "status",
	                              "refusal",     "admin",      "erasure"};
	Ihala__V2__LogEntry *e = ihala__v2__log_entry__unpack(NULL, entry->len, entry->data);
	char tag[17];
	size_t i;

	if (e == NULL) {
		printf("%s %llu undecodable\n", what, (unsigned long long)seq);
		return;
	}
	printf("%s %llu %s sender '%s' recipient '%s' sealed %s", what, (unsigned long long)seq,
	       (unsigned)e->kind < sizeof(kinds) / sizeof(kinds[0]) ? kinds[e->kind] : "?",
	       e->sender, e->recipient, sealed_tag(sealed, tag));
	if (e->event != NULL) {
		printf(" referral '%s' ref_seq %llu reason %d text '%s'", e->event->referral_id,
		       (unsigned long long)e->event->ref_seq, (int)e->event->reason_code,
		       e->event->text);
		if (e->event->n_erased_seqs > 0) {
			printf(" erased");
			for (i = 0; i < e->event->n_erased_seqs; i++) {
				printf("%c%llu", i == 0 ? ' ' : ',',
				       (unsigned long long)e->event->erased_seqs[i]);
			}
		}
	}
	if (e->envelope.len > 0) {
		Ihala__V2__Envelope *env =
		    ihala__v2__envelope__unpack(NULL, e->envelope.len, e->envelope.data);

		if (env != NULL) {
			printf(" message '%s' kind %d", env->message_id, (int)env->kind_case);
			ihala__v2__envelope__free_unpacked(env, NULL);
		}
	}
	printf("\n");
	ihala__v2__log_entry__free_unpacked(e, NULL);
}

/* After Welcome, up to N deliveries, one line each ("deliver SEQ ..."), acked with --ack;
 * "inbox: N" at the end, or "timeout after K" (exit 3) when fewer came in time. */
static int
mode_inbox(long n)
{
	Ihala__V2__Frame *in = NULL;
	struct conn c;
	long got = 0;
	int rc;

	if (conn_open(&c, 1) != 0) {
		return EXIT_LOCAL;
	}
	rc = open_session(&c, now_ms() + (uint64_t)opt.timeout_ms, 0);
	while (rc == EXIT_OK && got < n) {
		enum ev e = conn_next(&c, now_ms() + (uint64_t)opt.timeout_ms, &in);

		if (e != EV_FRAME) {
			printf("timeout after %ld\n", got);
			rc = e == EV_LOCAL ? EXIT_LOCAL : EXIT_TIMEOUT;
			break;
		}
		if (in->kind_case == IHALA__V2__FRAME__KIND_DELIVER) {
			print_entry("deliver", in->deliver->seq, &in->deliver->entry,
			            &in->deliver->sealed);
			got++;
			if (opt.ack) {
				Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
				Ihala__V2__DeliveryAck a = IHALA__V2__DELIVERY_ACK__INIT;

				a.seq = in->deliver->seq;
				f.kind_case = IHALA__V2__FRAME__KIND_DELIVERY_ACK;
				f.delivery_ack = &a;
				if (conn_write(&c, &f) != 0) {
					rc = EXIT_LOCAL;
				}
			}
		}
		frame_free(in);
	}
	if (rc == EXIT_OK) {
		printf("inbox: %ld\n", got);
	}
	conn_bye(&c);
	return rc;
}

/* After Welcome (an auditor), the whole log: one line per record ("record SEQ ..."), then
 * "replay: N". */
static int
mode_replay(void)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__ReplayRequest q = IHALA__V2__REPLAY_REQUEST__INIT;
	Ihala__V2__Frame *in = NULL;
	struct conn c;
	long got = 0;
	int rc, done = 0;
	size_t i;

	if (conn_open(&c, 1) != 0) {
		return EXIT_LOCAL;
	}
	rc = open_session(&c, now_ms() + (uint64_t)opt.timeout_ms, 0);
	if (rc == EXIT_OK) {
		q.request_id = 7;
		f.kind_case = IHALA__V2__FRAME__KIND_REPLAY_REQUEST;
		f.replay_request = &q;
		if (conn_write(&c, &f) != 0) {
			rc = EXIT_LOCAL;
		}
	}
	while (rc == EXIT_OK && !done) {
		enum ev e = conn_next(&c, now_ms() + (uint64_t)opt.timeout_ms, &in);

		if (e != EV_FRAME) {
			printf("timeout after %ld\n", got);
			rc = e == EV_LOCAL ? EXIT_LOCAL : EXIT_TIMEOUT;
			break;
		}
		if (in->kind_case == IHALA__V2__FRAME__KIND_LOG_ENTRIES) {
			for (i = 0; i < in->log_entries->n_records; i++, got++) {
				Ihala__V2__LogRecord *lr = in->log_entries->records[i];

				print_entry("record", lr->seq, &lr->entry, &lr->sealed);
			}
			done = in->log_entries->done;
		} else if (in->kind_case == IHALA__V2__FRAME__KIND_ERROR) {
			print_frame("", in);
			rc = EXIT_REFUSED;
		}
		frame_free(in);
	}
	if (rc == EXIT_OK) {
		printf("replay: %ld\n", got);
	}
	conn_bye(&c);
	return rc;
}

/* An encoded referral Envelope carrying MARKER, on stdout. No network. */
static int
mode_make_envelope(const char *marker)
{
	Ihala__V2__Envelope e = IHALA__V2__ENVELOPE__INIT;
	Ihala__V2__Referral r = IHALA__V2__REFERRAL__INIT;
	Ihala__V2__Consent cs = IHALA__V2__CONSENT__INIT;
	Ihala__V2__ServiceCode services[1] = {
	    IHALA__V2__SERVICE_CODE__SERVICE_CODE_PHYSICAL_REHABILITATION};
	Ihala__V2__DataCategory data[1] = {IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_NEEDS};
	char msgid[80], refid[80], reason[256];
	char *agencies[1];
	uint8_t *buf;
	size_t len;

	snprintf(msgid, sizeof(msgid), "%s",
	         opt.message_id != NULL ? opt.message_id : "probe-msg-1");
	snprintf(refid, sizeof(refid), "%s",
	         opt.referral_id != NULL ? opt.referral_id : "probe-ref-1");
	/* Protocol v2: a clear part only (the personal fields are sealed); the marker goes in a
	 * clear string, the consent's recorded_by. */
	snprintf(reason, sizeof(reason), "probe %s%s", marker, opt.bad_utf8 ? " \xc3\x28" : "");
	agencies[0] = (char *)opt.to;
	e.message_id = msgid;
	e.to = (char *)opt.to;
	if (opt.from != NULL) {
		e.from = (char *)opt.from;
	}
	e.client_time_ms = 1714567890123ull;
	e.kind_case = IHALA__V2__ENVELOPE__KIND_REFERRAL;
	e.referral = &r;
	r.referral_id = refid;
	r.priority = IHALA__V2__PRIORITY__PRIORITY_NORMAL;
	r.n_services = 1;
	r.services = services;
	r.consent = &cs;
	cs.given = 1;
	cs.given_by = IHALA__V2__CONSENT_GIVER__CONSENT_GIVER_SURVIVOR;
	cs.date = "2024-05-01";
	cs.recorded_by = reason;
	cs.n_agencies = 1;
	cs.agencies = agencies;
	cs.n_data_covered = 1;
	cs.data_covered = data;
	len = ihala__v2__envelope__get_packed_size(&e);
	buf = malloc(len);
	if (buf == NULL) {
		return EXIT_LOCAL;
	}
	ihala__v2__envelope__pack(&e, buf);
	if (fwrite(buf, 1, len, stdout) != len || fflush(stdout) != 0) {
		free(buf);
		return EXIT_LOCAL;
	}
	free(buf);
	return EXIT_OK;
}

/* ---- command line ---- */

static void
usage(FILE *fp)
{
	fprintf(
	    fp,
	    "usage: probe [options] MODE [ARGS]\n"
	    "\n"
	    "options:\n"
	    "  --endpoint E        broker endpoint (tcp://127.0.0.1:PORT)\n"
	    "  --ca F              federation CA (PEM)\n"
	    "  --cert F --key F    client certificate and key\n"
	    "  --no-cert           present no client certificate\n"
	    "  --tls12             offer TLS 1.2 only\n"
	    "  --server-name N     name the broker certificate must match (localhost)\n"
	    "  --timeout MS        how long to wait for an answer (5000)\n"
	    "  --close             send-raw-prefix: send close_notify right after the bytes\n"
	    "  --no-immediate      no ZMQ_IMMEDIATE: messages that arrived before a disconnect\n"
	    "                      stay readable (with it, ZeroMQ drops them on reconnect)\n"
	    "  --from A --to A --message-id M --referral-id R --bad-utf8   make-envelope\n"
	    "\n"
	    "modes:\n"
	    "  welcome                  'welcome AGENCY ROLE' or 'refused: WHY' (1) or 'timeout' "
	    "(3)\n"
	    "  hold SECONDS             welcome, then 'closed: WHY' or 'open: answered'\n"
	    "  reconnect SECONDS        survive a broker restart: 'answered after reconnect'\n"
	    "  garbage                  random bytes from a fresh connection: 'reset'\n"
	    "  halfopen N SECONDS       N ClientHellos held open: 'halfopen N: A answered, R "
	    "reset'\n"
	    "                           (R: RESET afterwards, or the broker closed the "
	    "connection)\n"
	    "  halfhandshake            half a ClientHello: 'halfhandshake: silent|answered, "
	    "dropped|pending'\n"
	    "  straddle FILE            the broker's flight in, then 'held'; our certificate sent\n"
	    "                           once FILE exists; then as welcome\n"
	    "  slowloris                a ClientHello byte by byte: 'dropped after S s'\n"
	    "  bigmsg SIZE              one ZeroMQ message of SIZE bytes: 'disconnected', 'reset', "
	    "'timeout'\n"
	    "  flood N [W]              N handshakes, W unfinished at a time (default N: all at "
	    "once):\n"
	    "                           'flood N: W welcome, R refused, T no "
	    "answer'\n"
	    "  silent N SECS            N connections that send nothing, held SECS s: 'silent N: D "
	    "disconnected'\n"
	    "  dup-rid N                two connections with one routing id, N messages each: "
	    "'dup-rid: N'\n"
	    "  query-flood SECS N       after Welcome, Query frames for SECS s, N per flush, no "
	    "answer\n"
	    "                           read, then close: 'query-flood: F frames written'\n"
	    "  send-hex HEX             one frame body: 'error CODE: text' | 'receipt ...' | 'no "
	    "answer',\n"
	    "                           then 'closed' or 'open'\n"
	    "  send-raw-prefix LEN HEX  prefix LEN then HEX straight into TLS (test only); as "
	    "send-hex\n"
	    "  submit-file FILE         Submit FILE as the envelope: 'receipt STATUS ...'\n"
	    "  submit-json FILE         the same for an Envelope in JSON (empty messageId: "
	    "random)\n"
	    "                           --sealed F: attach F as the sealed part, its SHA-256 in\n"
	    "                           the envelope (--hash HEX: that instead, '' for none)\n"
	    "  inbox N                  up to N deliveries, 'deliver SEQ KIND ... sealed TAG',\n"
	    "                           acked with --ack; then 'inbox: N' or 'timeout after K'\n"
	    "  replay                   (auditor) the log, 'record SEQ KIND ... sealed TAG';\n"
	    "                           then 'replay: N'\n"
	    "  make-envelope MARKER     encoded referral envelope (a clear part) carrying MARKER "
	    "on\n"
	    "                           stdout\n"
	    "\n"
	    "exit: 0 ran (judge the output), 1 refused, 2 usage, 3 timeout, 4 local failure\n");
}

static int
run_mode(int argc, char **argv)
{
	const char *m = argv[0];
	long a = 0, b = 0;

	if (strcmp(m, "make-envelope") == 0 && argc == 2) {
		if (opt.to == NULL) {
			opt.to = "moh";
		}
		return mode_make_envelope(argv[1]);
	}
	if (opt.endpoint == NULL) {
		fprintf(stderr, "probe: --endpoint is required\n");
		return EXIT_USAGE;
	}
	if (strcmp(m, "garbage") == 0 && argc == 1) {
		return mode_garbage();
	}
	if (strcmp(m, "silent") == 0 && argc == 3) {
		if (parse_long(argv[1], 1, 5000, &a) != 0 ||
		    parse_long(argv[2], 0, 3600, &b) != 0) {
			return EXIT_USAGE;
		}
		return mode_silent(a, b);
	}
	if (strcmp(m, "dup-rid") == 0 && argc == 2) {
		if (parse_long(argv[1], 1, 1000000, &a) != 0) {
			return EXIT_USAGE;
		}
		return mode_dup_rid(a);
	}
	if (strcmp(m, "bigmsg") == 0 && argc == 2) {
		if (parse_long(argv[1], 1, 256L << 20, &a) != 0) {
			return EXIT_USAGE;
		}
		return mode_bigmsg(a);
	}
	if (make_ctx() != 0) {
		return EXIT_LOCAL;
	}
	if (strcmp(m, "welcome") == 0 && argc == 1) {
		return mode_welcome();
	}
	if ((strcmp(m, "hold") == 0 || strcmp(m, "reconnect") == 0) && argc == 2) {
		if (parse_long(argv[1], 0, 3600, &a) != 0) {
			return EXIT_USAGE;
		}
		return m[0] == 'h' ? mode_hold(a) : mode_reconnect(a);
	}
	if (strcmp(m, "halfopen") == 0 && argc == 3) {
		if (parse_long(argv[1], 1, 5000, &a) != 0 ||
		    parse_long(argv[2], 0, 3600, &b) != 0) {
			return EXIT_USAGE;
		}
		return mode_halfopen(a, b);
	}
	if (strcmp(m, "straddle") == 0 && argc == 2) {
		return mode_straddle(argv[1]);
	}
	if (strcmp(m, "halfhandshake") == 0 && argc == 1) {
		return mode_halfhandshake();
	}
	if (strcmp(m, "slowloris") == 0 && argc == 1) {
		return mode_slowloris();
	}
	if (strcmp(m, "flood") == 0 && (argc == 2 || argc == 3)) {
		if (parse_long(argv[1], 1, 5000, &a) != 0 ||
		    (argc == 3 && parse_long(argv[2], 1, 5000, &b) != 0)) {
			return EXIT_USAGE;
		}
		return mode_flood(a, argc == 3 ? b : a);
	}
	if (strcmp(m, "query-flood") == 0 && argc == 3) {
		if (parse_long(argv[1], 0, 3600, &a) != 0 ||
		    parse_long(argv[2], 1, 100000, &b) != 0) {
			return EXIT_USAGE;
		}
		return mode_query_flood(a, b);
	}
	if (strcmp(m, "send-hex") == 0 && argc == 2) {
		return mode_send_hex(argv[1]);
	}
	if (strcmp(m, "send-raw-prefix") == 0 && argc == 3) {
		if (parse_long(argv[1], 0, 0xffffffffL, &a) != 0) {
			return EXIT_USAGE;
		}
		return mode_send_raw_prefix(a, argv[2]);
	}
	if (strcmp(m, "submit-file") == 0 && argc == 2) {
		return mode_submit_file(argv[1]);
	}
	if (strcmp(m, "submit-json") == 0 && argc == 2) {
		return mode_submit_json(argv[1]);
	}
	if (strcmp(m, "inbox") == 0 && argc == 2) {
		if (parse_long(argv[1], 0, 1000000, &a) != 0) {
			return EXIT_USAGE;
		}
		return mode_inbox(a);
	}
	if (strcmp(m, "replay") == 0 && argc == 1) {
		return mode_replay();
	}
	usage(stderr);
	return EXIT_USAGE;
}

int
main(int argc, char **argv)
{
	static const struct option lopts[] = {
	    {"endpoint", required_argument, NULL, 'e'},
	    {"ca", required_argument, NULL, 'a'},
	    {"cert", required_argument, NULL, 'c'},
	    {"key", required_argument, NULL, 'k'},
	    {"server-name", required_argument, NULL, 's'},
	    {"no-cert", no_argument, NULL, 'N'},
	    {"tls12", no_argument, NULL, '2'},
	    {"timeout", required_argument, NULL, 't'},
	    {"close", no_argument, NULL, 'C'},
	    {"no-immediate", no_argument, NULL, 'I'},
	    {"from", required_argument, NULL, 'f'},
	    {"to", required_argument, NULL, 'T'},
	    {"message-id", required_argument, NULL, 'm'},
	    {"referral-id", required_argument, NULL, 'r'},
	    {"bad-utf8", no_argument, NULL, 'U'},
	    {"sealed", required_argument, NULL, 'S'},
	    {"hash", required_argument, NULL, 'H'},
	    {"ack", no_argument, NULL, 'A'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int ch, rc;

	opt.server_name = "localhost";
	opt.timeout_ms = 5000;
	while ((ch = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		switch (ch) {
		case 'e':
			opt.endpoint = optarg;
			break;
		case 'a':
			opt.ca = optarg;
			break;
		case 'c':
			opt.cert = optarg;
			break;
		case 'k':
			opt.key = optarg;
			break;
		case 's':
			opt.server_name = optarg;
			break;
		case 'N':
			opt.no_cert = 1;
			break;
		case '2':
			opt.tls12 = 1;
			break;
		case 't':
			if (parse_long(optarg, 1, 3600000, &opt.timeout_ms) != 0) {
				return EXIT_USAGE;
			}
			break;
		case 'C':
			opt.close_after = 1;
			break;
		case 'I':
			opt.no_immediate = 1;
			break;
		case 'f':
			opt.from = optarg;
			break;
		case 'T':
			opt.to = optarg;
			break;
		case 'm':
			opt.message_id = optarg;
			break;
		case 'r':
			opt.referral_id = optarg;
			break;
		case 'U':
			opt.bad_utf8 = 1;
			break;
		case 'S':
			opt.sealed = optarg;
			break;
		case 'H':
			opt.hash = optarg;
			break;
		case 'A':
			opt.ack = 1;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	zctx = zmq_ctx_new();
	if (zctx == NULL) {
		return EXIT_LOCAL;
	}
	rc = run_mode(argc - optind, argv + optind);
	SSL_CTX_free(sslctx);
	zmq_ctx_term(zctx);
	return rc;
}
