/* notes_load.c - benchmark load: many notes on one referral, entries/s as its history grows. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "channel.h"
#include "clock.h"
#include "error.h"
#include "frame.h"
#include "ihala.pb-c.h"
#include "log.h"
#include "sealpart.h"
#include "tlsctx.h"
#include "wire.h"

/*
 *   notes_load -b EP -P PKI -a AGENCY -t TO -n COUNT [-k CHUNK] [-W WINDOW] [-s BYTES]
 *              [-p PREFIX] [-T SECONDS]
 *
 * One referral from AGENCY to TO, then COUNT notes (Envelope.note, BYTES of text each,
 * default 256) on that same referral, pipelined: up to WINDOW without a receipt (default
 * CHUNK / 10, at most Welcome.limits.max_inflight), as fast as receipts allow. The window is
 * well under a chunk so that one group commit (its receipts come at once) cannot fill a
 * chunk by itself. Every Deliver the sender gets is acked. A referral's history grows
 * by one entry per note: if one entry's cost grows with that history, the later notes go
 * slower, and this shows it: the receipt rate for each CHUNK (default 1 000) of notes.
 * Speaks the wire protocol directly (proto/wire.h), as bench/ihala_load does (libihala's
 * ihala_submit waits for each receipt and syncs its own outbox, which would measure the
 * client).
 *
 * Results on stdout as KEY=VALUE lines: notes (receipted), refused, chunk, window,
 * first_per_s and last_per_s (the first and the last CHUNK notes, each from the receipt that
 * closed the chunk before it, or from the first note sent), chunks_per_s (every chunk,
 * comma-separated), t_first_us, t_last_us (CLOCK_MONOTONIC).
 */

#define OUT_CAP (4u * 1024 * 1024)

struct conn {
	struct wire *w;
	int welcomed;
	uint32_t max_inflight;
};

struct run {
	uint64_t receipted, refused, inflight, acked;
	int ref_done;      /* the referral's receipt came (1) or it was refused (-1) */
	uint64_t *t_chunk; /* receipt time closing each chunk */
	uint64_t chunk, n_chunks;
	uint64_t t_last_us;
};

static uint64_t
mono_us(void)
{
	return clock_mono_ns() / 1000;
}

static int
conn_open(void *zctx, SSL_CTX *ctx, const char *ep, struct conn *c)
{
	struct wire_opts o;
	char err[256];

	memset(c, 0, sizeof(*c));
	memset(&o, 0, sizeof(o));
	o.endpoint = ep;
	o.ssl = ctx;
	o.server_name = "localhost";
	o.max_frame = FRAME_MAX_LIMIT;
	o.out_cap = OUT_CAP;
	o.send_timeout_ms = -1;
	o.hwm = 100000;
	if (wire_open(zctx, &o, &c->w, err, sizeof(err)) != 0) {
		fprintf(stderr, "notes_load: %s\n", err);
		return IHALA_EZMQ;
	}
	return wire_start(c->w, 0) != 0 ? IHALA_ETLS : 0;
}

static void
conn_close(struct conn *c)
{
	if (c->w != NULL) {
		wire_close(c->w);
		wire_free(c->w, 200);
	}
	memset(c, 0, sizeof(*c));
}

/* Pack and write one frame (not flushed); IHALA_EAGAIN when the channel's output is full. */
static int
conn_send(struct conn *c, const Ihala__V2__Frame *f)
{
	return wire_send_frame(c->w, f);
}

static int
submit(struct conn *c, const Ihala__V2__Envelope *env, const uint8_t *sealed, size_t sealed_len)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__Submit sub = IHALA__V2__SUBMIT__INIT;
	uint8_t buf[4096];
	size_t len = ihala__v2__envelope__get_packed_size(env);

	if (len > sizeof(buf)) {
		return IHALA_EINVAL;
	}
	ihala__v2__envelope__pack(env, buf);
	sub.envelope.data = buf;
	sub.envelope.len = len;
	sub.sealed.data = (uint8_t *)sealed;
	sub.sealed.len = sealed_len;
	f.kind_case = IHALA__V2__FRAME__KIND_SUBMIT;
	f.submit = &sub;
	return conn_send(c, &f);
}

static void
on_frame(struct run *r, struct conn *c, const Ihala__V2__Frame *f)
{
	uint64_t now = mono_us();

	if (f->kind_case == IHALA__V2__FRAME__KIND_RECEIPT) {
		const Ihala__V2__Receipt *rc = f->receipt;
		int refused = rc->status == IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED;

		if (refused && r->refused++ < 3) {
			fprintf(stderr, "notes_load: '%s' refused: %s\n", rc->message_id,
			        rc->error_message);
		}
		if (r->ref_done == 0) {
			r->ref_done = refused ? -1 : 1;
			return;
		}
		r->inflight--;
		r->t_last_us = now;
		if (!refused && ++r->receipted % r->chunk == 0 &&
		    r->receipted / r->chunk <= r->n_chunks) {
			r->t_chunk[r->receipted / r->chunk] = now;
		}
	} else if (f->kind_case == IHALA__V2__FRAME__KIND_DELIVER) {
		Ihala__V2__Frame a = IHALA__V2__FRAME__INIT;
		Ihala__V2__DeliveryAck ack = IHALA__V2__DELIVERY_ACK__INIT;

		ack.seq = f->deliver->seq;
		a.kind_case = IHALA__V2__FRAME__KIND_DELIVERY_ACK;
		a.delivery_ack = &ack;
		if (conn_send(c, &a) == 0) {
			r->acked++;
		}
	}
}

/* Take every message waiting; hand each frame to on_frame. 0, or an error (printed). */
static int
conn_input(struct conn *c, struct run *r)
{
	struct wire_event ev;
	int err;

	while ((err = wire_next(c->w, &ev)) == 0 && ev.kind != WIRE_NONE) {
		Ihala__V2__Frame *f;

		switch (ev.kind) {
		case WIRE_FRAME:
			break;
		case WIRE_RESET:
			fprintf(stderr, "notes_load: the broker reset the session\n");
			return IHALA_ERESET;
		case WIRE_FAILED:
		case WIRE_CLOSED:
			fprintf(stderr, "notes_load: session ended: %s\n",
			        ev.kind == WIRE_FAILED ? channel_error_text(wire_channel(c->w))
			                               : "closed by the broker");
			return ev.kind == WIRE_FAILED ? ev.err : IHALA_ECLOSED;
		default:
			continue;
		}
		f = ihala__v2__frame__unpack(NULL, ev.len, ev.data);
		if (f == NULL) {
			fprintf(stderr, "notes_load: undecodable frame\n");
			return IHALA_EBADFRAME;
		}
		if (f->kind_case == IHALA__V2__FRAME__KIND_WELCOME) {
			c->welcomed = 1;
			c->max_inflight =
			    f->welcome->limits != NULL ? f->welcome->limits->max_inflight : 1;
		} else if (f->kind_case == IHALA__V2__FRAME__KIND_ERROR) {
			fprintf(stderr, "notes_load: broker error %d: %s\n", -(int)f->error->code,
			        f->error->message);
			if (f->error->request_id == 0) {
				ihala__v2__frame__free_unpacked(f, NULL);
				return IHALA_ECLOSED;
			}
		} else {
			on_frame(r, c, f);
		}
		ihala__v2__frame__free_unpacked(f, NULL);
	}
	return err;
}

/* Flush, wait once (up to timeout_ms) and take what came. */
static int
pump(struct conn *c, struct run *r, long timeout_ms)
{
	wire_flush(c->w);
	if (wire_wait(c->w, timeout_ms) < 0) {
		return IHALA_EZMQ;
	}
	return conn_input(c, r);
}

static SSL_CTX *
client_ctx(const char *pki, const char *agency)
{
	char ca[512], cert[512], key[512], err[512];
	struct tls_files tf;
	SSL_CTX *ctx = NULL;

	snprintf(ca, sizeof(ca), "%s/ca.pem", pki);
	snprintf(cert, sizeof(cert), "%s/%s.pem", pki, agency);
	snprintf(key, sizeof(key), "%s/%s.key", pki, agency);
	tf.ca_file = ca;
	tf.crl_file = NULL;
	tf.cert_file = cert;
	tf.key_file = key;
	if (tlsctx_client_new(&tf, &ctx, err, sizeof(err)) != 0) {
		fprintf(stderr, "notes_load: %s\n", err);
		return NULL;
	}
	return ctx;
}

/* Notes per second over chunk i (1-based): from the end of chunk i-1 to the end of chunk i. */
static double
chunk_rate(const struct run *r, uint64_t i)
{
	uint64_t a = r->t_chunk[i - 1], b = r->t_chunk[i];

	return b > a ? (double)r->chunk * 1e6 / (double)(b - a) : 0;
}

static void
usage(void)
{
	fprintf(stderr, "usage: notes_load -b EP -P PKI -a AGENCY -t TO -n COUNT [-k CHUNK] "
	                "[-W WINDOW] [-s BYTES] [-p PREFIX] [-T SECONDS]\n");
}

int
main(int argc, char **argv)
{
	const char *ep = NULL, *pki = NULL, *agency = NULL, *prefix = "notes";
	char *to = NULL;
	uint64_t count = 0, sent = 0, t_end, i;
	size_t bytes = 256;
	long timeout_s = 600;
	Ihala__V2__Envelope env = IHALA__V2__ENVELOPE__INIT;
	Ihala__V2__Referral ref = IHALA__V2__REFERRAL__INIT;
	Ihala__V2__Sealed sl = IHALA__V2__SEALED__INIT;
	Ihala__V2__Note pnote = IHALA__V2__NOTE__INIT;
	uint8_t *sealed = NULL, *plain = NULL, sha[32];
	size_t sealed_len = 0, plen;
	Ihala__V2__Consent con = IHALA__V2__CONSENT__INIT;
	Ihala__V2__Note note = IHALA__V2__NOTE__INIT;
	Ihala__V2__ServiceCode svc = IHALA__V2__SERVICE_CODE__SERVICE_CODE_PHYSICAL_REHABILITATION;
	Ihala__V2__DataCategory needs = IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_NEEDS;
	char msgid[80], rid[64], *text;
	uint32_t window = 0;
	struct run r;
	struct conn c;
	SSL_CTX *ctx;
	void *zctx;
	int ch, err = 0;

	memset(&r, 0, sizeof(r));
	r.chunk = 1000;
	log_setlevel(LOG_LEVEL_WARN);
	while ((ch = getopt(argc, argv, "b:P:a:t:n:k:W:s:p:T:")) != -1) {
		switch (ch) {
		case 'b':
			ep = optarg;
			break;
		case 'P':
			pki = optarg;
			break;
		case 'a':
			agency = optarg;
			break;
		case 't':
			to = optarg;
			break;
		case 'n':
			count = strtoull(optarg, NULL, 10);
			break;
		case 'k':
			r.chunk = strtoull(optarg, NULL, 10);
			break;
		case 'W':
			window = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 's':
			bytes = strtoul(optarg, NULL, 10);
			break;
		case 'p':
			prefix = optarg;
			break;
		case 'T':
			timeout_s = strtol(optarg, NULL, 10);
			break;
		default:
			usage();
			return 2;
		}
	}
	if (ep == NULL || pki == NULL || agency == NULL || to == NULL || count == 0 ||
	    r.chunk == 0 || bytes > 2048) {
		usage();
		return 2;
	}
	r.n_chunks = count / r.chunk;
	r.t_chunk = calloc(r.n_chunks + 1, sizeof(*r.t_chunk));
	text = malloc(bytes + 1);
	if (r.t_chunk == NULL || text == NULL) {
		return 2;
	}
	memset(text, 'n', bytes);
	text[bytes] = '\0';
	ctx = client_ctx(pki, agency);
	zctx = zmq_ctx_new();
	if (ctx == NULL || zctx == NULL || conn_open(zctx, ctx, ep, &c) != 0) {
		return 2;
	}
	t_end = mono_us() + (uint64_t)timeout_s * 1000000;

	/* The referral. */
	snprintf(msgid, sizeof(msgid), "%s-referral", prefix);
	snprintf(rid, sizeof(rid), "%s-R1", prefix);
	con.given = 1;
	con.n_agencies = 1;
	con.agencies = &to;
	con.n_data_covered = 1; /* the services */
	con.data_covered = &needs;
	ref.referral_id = rid;
	ref.receiving_agency = to;
	ref.priority = IHALA__V2__PRIORITY__PRIORITY_NORMAL;
	ref.n_services = 1;
	ref.services = &svc;
	ref.consent = &con; /* the clear part alone: nothing sealed */
	env.message_id = msgid;
	env.to = to;
	env.kind_case = IHALA__V2__ENVELOPE__KIND_REFERRAL;
	env.referral = &ref;
	while (err == 0 && !c.welcomed && mono_us() < t_end) {
		err = pump(&c, &r, 100);
	}
	if (err == 0 && c.welcomed) {
		err = submit(&c, &env, NULL, 0);
	}
	while (err == 0 && r.ref_done == 0 && mono_us() < t_end) {
		err = pump(&c, &r, 100);
	}
	if (err != 0 || r.ref_done != 1) {
		fprintf(stderr, "notes_load: the referral was not accepted\n");
		return 1;
	}

	/* The notes, pipelined. The text travels sealed to the recipient and the sender, sealed
	 * once: the broker never opens it, so it does the same work for every note. */
	note.referral_id = rid;
	pnote.text = text;
	sl.message_id = "notes-template";
	sl.referral_id = rid;
	sl.sender = (char *)agency;
	sl.kind_case = IHALA__V2__SEALED__KIND_NOTE;
	sl.note = &pnote;
	plen = ihala__v2__sealed__get_packed_size(&sl);
	if ((plain = malloc(plen + 1)) == NULL) {
		return 2;
	}
	ihala__v2__sealed__pack(&sl, plain);
	{
		const char *who[2] = {to, agency};

		if (sealpart("notes_load", pki, who, 2, plain, plen, &sealed, &sealed_len, sha) !=
		    0) {
			return 2;
		}
	}
	free(plain);
	env.sealed_sha256.data = sha;
	env.sealed_sha256.len = sizeof(sha);
	env.to = NULL;
	env.kind_case = IHALA__V2__ENVELOPE__KIND_NOTE;
	env.note = &note;
	r.refused = 0;
	if (window == 0) {
		window = r.chunk >= 10 ? (uint32_t)(r.chunk / 10) : 1;
	}
	if (window > c.max_inflight) {
		window = c.max_inflight;
	}
	r.t_chunk[0] = mono_us();
	while (err == 0 && r.receipted + r.refused < count) {
		if (mono_us() > t_end) {
			fprintf(stderr, "notes_load: timed out with %" PRIu64 " of %" PRIu64 "\n",
			        r.receipted, count);
			err = IHALA_ETIMEDOUT;
			break;
		}
		while (sent < count && r.inflight < window) {
			snprintf(msgid, sizeof(msgid), "%s-%" PRIu64, prefix, sent);
			if (submit(&c, &env, sealed, sealed_len) != 0) {
				break;
			}
			sent++;
			r.inflight++;
		}
		err = pump(&c, &r, 100);
	}
	printf("notes=%" PRIu64 "\nrefused=%" PRIu64 "\nchunk=%" PRIu64 "\nwindow=%" PRIu32 "\n",
	       r.receipted, r.refused, r.chunk, window);
	if (r.n_chunks > 0 && r.t_chunk[r.n_chunks] != 0) {
		printf("first_per_s=%.0f\nlast_per_s=%.0f\nchunks_per_s=", chunk_rate(&r, 1),
		       chunk_rate(&r, r.n_chunks));
		for (i = 1; i <= r.n_chunks; i++) {
			printf("%s%.0f", i > 1 ? "," : "", chunk_rate(&r, i));
		}
		printf("\n");
	}
	printf("t_first_us=%" PRIu64 "\nt_last_us=%" PRIu64 "\n", r.t_chunk[0], r.t_last_us);
	conn_close(&c);
	zmq_ctx_term(zctx);
	SSL_CTX_free(ctx);
	free(r.t_chunk);
	free(text);
	free(sealed);
	return err == 0 && r.refused == 0 && r.receipted == count ? 0 : 1;
}
