/* client.c - libihala: one TLS session to the broker over a ZeroMQ DEALER, outbox and inbox. */
#include "client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>
#include <zmq.h>

#include "channel.h"
#include "checkpoint.h"
#include "clock.h"
#include "conf.h"
#include "frame.h"
#include "localstore.h"
#include "log.h"
#include "tlsctx.h"
#include "wire.h"

#define OUT_CAP (4u * 1024 * 1024)
/* Without a session this long, the caller is told we keep trying (ihala_on_connecting). */
#define CONNECTING_AFTER_MS 1000

static uint64_t
now_ms(void)
{
	return clock_mono_ms();
}

static uint64_t
wall_ms(void)
{
	return clock_wall_ms();
}

int
client_fail(struct ihala_client *c, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
	va_end(ap);
	return err;
}

const char *
ihala_errmsg(const struct ihala_client *c)
{
	return c->errmsg;
}

void
ihala_new_message_id(char *buf, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t r[16];
	size_t i;

	if (RAND_bytes(r, sizeof(r)) != 1) {
		/* Not reached on a working system; still never reuse an id. */
		for (i = 0; i < sizeof(r); i++) {
			r[i] = (uint8_t)(random() & 0xff);
		}
	}
	for (i = 0; i < sizeof(r) && 2 * i + 2 < len; i++) {
		buf[2 * i] = hex[r[i] >> 4];
		buf[2 * i + 1] = hex[r[i] & 15];
	}
	buf[len > 2 * i ? 2 * i : len - 1] = '\0';
}

int
ihala_open(const struct client_config *cfg, struct ihala_client **out)
{
	struct ihala_client *c = calloc(1, sizeof(*c));
	struct tls_files tf;
	char err[512];
	int rc;

	if (c == NULL) {
		return IHALA_ENOMEM;
	}
	c->cfg = cfg;
	tf.ca_file = cfg->ca_file;
	tf.crl_file = NULL;
	tf.cert_file = cfg->cert_file;
	tf.key_file = cfg->key_file;
	rc = tlsctx_client_new(&tf, &c->ssl, err, sizeof(err));
	if (rc != 0) {
		log_warnx("%s", err);
		free(c);
		return rc;
	}
	rc = localstore_open(cfg->data_dir, &c->ls);
	if (rc != 0) {
		SSL_CTX_free(c->ssl);
		free(c);
		return rc;
	}
	if ((rc = sealing_init(c)) != 0) {
		localstore_close(c->ls);
		SSL_CTX_free(c->ssl);
		free(c);
		return rc;
	}
	c->zctx = zmq_ctx_new();
	if (c->zctx == NULL) {
		sealing_release(c);
		localstore_close(c->ls);
		SSL_CTX_free(c->ssl);
		free(c);
		return IHALA_EZMQ;
	}
	c->seal_pending = 1; /* an earlier run may have left some: looked for once */
	/* Sent records past sent_keep go now (and a few at each receipt): the store does not
	 * keep survivors' data, even sealed, longer than a repeat needs it. */
	if ((rc = localstore_sent_prune(c->ls, wall_ms(), cfg->sent_keep_ms, NULL)) != 0) {
		log_warnx("cannot prune the sent messages of data dir '%s': %s", cfg->data_dir,
		          ihala_strerror(rc));
	}
	RAND_bytes((uint8_t *)&c->next_request, sizeof(c->next_request));
	c->next_request = (c->next_request >> 16) + 1;
	*out = c;
	return 0;
}

/* ZeroMQ has a TCP connection. */
static int
connected(const struct ihala_client *c)
{
	return c->w != NULL && wire_connected(c->w);
}

static void
session_drop(struct ihala_client *c)
{
	if (c->w != NULL) {
		wire_drop(c->w);
	}
	c->state = SESS_NONE;
	c->n_pending = 0; /* they stay in the inbox; the broker sends them again too */
	c->inbox_scanned = 0;
	c->inbox_cursor = 0;
	frame_free(c->welcome);
	c->welcome = NULL;
	c->gate_request = 0;
	c->big_size = 0;
	c->big_msgid[0] = '\0';
	free(c->gate_text);
	c->gate_text = NULL;
	while (c->n_held > 0) {
		frame_free(c->held[--c->n_held]);
	}
	sealing_session_reset(c); /* directory picks are asked again in a new session */
}

static void
socket_close(struct ihala_client *c)
{
	session_drop(c);
	wire_free(c->w, -1);
	c->w = NULL;
}

void
ihala_close(struct ihala_client *c)
{
	size_t i;

	if (c == NULL) {
		return;
	}
	if (c->state == SESS_OPEN && connected(c)) {
		wire_close(c->w);
	}
	/* Let the last acks and the close_notify leave before the socket goes. */
	session_drop(c);
	wire_free(c->w, 1000);
	c->w = NULL;
	frame_free(c->response);
	for (i = 0; i < c->n_msgids; i++) {
		free(c->msgids[i]);
	}
	zmq_ctx_term(c->zctx);
	ckpt_release(c);
	sealing_release(c);
	localstore_close(c->ls);
	SSL_CTX_free(c->ssl);
	free(c);
}

static int
socket_open(struct ihala_client *c)
{
	struct wire_opts o;
	char err[256];
	int rc;

	memset(&o, 0, sizeof(o));
	o.endpoint = c->cfg->broker;
	o.ssl = c->ssl;
	o.server_name = c->cfg->server_name;
	o.max_frame = FRAME_MAX_LIMIT;
	o.out_cap = OUT_CAP;
	o.immediate = 1;
	o.send_timeout_ms = -1;
	o.keepalive = 1;
	o.monitor = 1;
	if ((rc = wire_open(c->zctx, &o, &c->w, err, sizeof(err))) != 0) {
		return client_fail(c, rc, "%s", err);
	}
	return 0;
}

/* Send what the session has for the wire; what ZeroMQ cannot take now waits in the wire. */
static void
flush_wire(struct ihala_client *c)
{
	if (connected(c)) {
		wire_flush(c->w);
	}
}

static int
session_start(struct ihala_client *c)
{
	int err;

	session_drop(c);
	err = wire_start(c->w, 1);
	if (err != 0) {
		return client_fail(c, err, "cannot start TLS: %s", ihala_strerror(err));
	}
	c->state = SESS_HANDSHAKING;
	c->refused = 0;
	flush_wire(c);
	return 0;
}

int
client_send_frame(struct ihala_client *c, const Ihala__V2__Frame *f)
{
	int err;

	if (c->state != SESS_OPEN) {
		return IHALA_ECLOSED;
	}
	err = wire_send_frame(c->w, f);
	flush_wire(c);
	return err;
}

size_t
ihala_max_frame(const struct ihala_client *c)
{
	const Ihala__V2__Welcome *w = c->welcome != NULL ? c->welcome->welcome : NULL;

	if (w != NULL && w->limits != NULL && w->limits->max_frame_bytes > 0) {
		return w->limits->max_frame_bytes;
	}
	return IHALA_DEFAULT_MAX_FRAME;
}

/* Bytes of the Frame body that carries an outbox record (an encoded Submit) of `len` bytes:
 * the field's tag, its length, the Submit. */
static size_t
submit_frame_size(size_t len)
{
	size_t n = 1 + 1;

	for (size_t v = len; v >= 0x80; v >>= 7) {
		n++;
	}
	return n + len;
}

/* The receipt a caller waits for, when it is for `message_id`. */
static void
set_receipt(struct ihala_client *c, const char *message_id, Ihala__V2__ReceiptStatus status,
            uint64_t seq, const uint8_t *leaf, int error, const char *text)
{
	struct ihala_receipt *rc = &c->receipt;

	if (c->want_msgid == NULL ||
	    (message_id[0] != '\0' && strcmp(c->want_msgid, message_id) != 0)) {
		return;
	}
	memset(rc, 0, sizeof(*rc));
	rc->status = status;
	rc->seq = seq;
	if (leaf != NULL) {
		memcpy(rc->leaf_hash, leaf, MERKLE_HASH_LEN);
	}
	rc->error = error;
	snprintf(rc->message_id, sizeof(rc->message_id), "%s", c->want_msgid);
	snprintf(rc->text, sizeof(rc->text), "%s", text);
	c->got_receipt = 1;
}

/* A message refused for good leaves the outbox for the rejected list: it never holds up the
 * ones behind it, and `ihala outbox` shows it with its reason. */
static void
reject(struct ihala_client *c, const char *message_id, int code, const char *text)
{
	int err = localstore_outbox_reject(c->ls, message_id, code, text, wall_ms());

	if (err != 0 && err != IHALA_ENOTFOUND) {
		log_warnx("cannot move refused message %s out of the outbox: %s", message_id,
		          ihala_strerror(err));
	}
}

void
client_refuse(struct ihala_client *c, const char *message_id, int code, const char *text)
{
	reject(c, message_id, code, text);
	set_receipt(c, message_id, IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED, 0, NULL, code,
	            text);
}

static int
outbox_send_cb(void *arg, const char *message_id, const void *env, size_t len)
{
	struct ihala_client *c = arg;
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__Submit s = IHALA__V2__SUBMIT__INIT, *sp;
	size_t fsize = submit_frame_size(len), max = ihala_max_frame(c);
	int err;

	if (fsize > max) {
		/* Sent, it would end the session and come back with every reconnect. */
		char text[200];

		snprintf(text, sizeof(text),
		         "message of %zu bytes is over the broker's frame limit of %zu bytes",
		         fsize, max);
		reject(c, message_id, IHALA_ETOOLARGE, text);
		set_receipt(c, message_id, IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED, 0,
		            NULL, IHALA_ETOOLARGE, text);
		return 0;
	}
	/* The record is the Submit (clear part and sealed part) as it was queued. */
	if ((sp = ihala__v2__submit__unpack(NULL, len, env)) == NULL) {
		reject(c, message_id, IHALA_ESTORE, "the outbox record does not decode (damaged)");
		set_receipt(c, message_id, IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED, 0,
		            NULL, IHALA_ESTORE, "the outbox record does not decode (damaged)");
		return 0;
	}
	s = *sp;
	f.kind_case = IHALA__V2__FRAME__KIND_SUBMIT;
	f.submit = &s;
	err = client_send_frame(c, &f);
	ihala__v2__submit__free_unpacked(sp, NULL);
	if (err == 0 && fsize > c->big_size) {
		/* The culprit should the broker still find a frame too large (FRAME_TOO_LARGE). */
		c->big_size = fsize;
		snprintf(c->big_msgid, sizeof(c->big_msgid), "%s", message_id);
	}
	return err == 0 ? 0 : 1;
}

/* The outbox window's limits for this session. */
static void
window_limits(const struct ihala_client *c, size_t *n, size_t *bytes)
{
	const Ihala__V2__Welcome *w = c->welcome != NULL ? c->welcome->welcome : NULL;

	*n = OB_WINDOW;
	*bytes = OB_WINDOW_BYTES;
	if (w != NULL && w->limits != NULL) {
		if (w->limits->max_inflight > 0 && w->limits->max_inflight < *n) {
			*n = w->limits->max_inflight;
		}
		if (w->limits->max_inflight_bytes > 0 && w->limits->max_inflight_bytes < *bytes) {
			*bytes = w->limits->max_inflight_bytes;
		}
	}
}

static int
window_send_cb(void *arg, const char *message_id, const void *env, size_t len)
{
	struct ihala_client *c = arg;
	size_t max_n, max_bytes;
	int err;

	window_limits(c, &max_n, &max_bytes);
	if (c->ob_n >= max_n || (c->ob_n > 0 && c->ob_bytes + len > max_bytes)) {
		return 1; /* full: this one goes when receipts make room */
	}
	if (sealing_record_pending(env, len)) {
		c->seal_pending = 1;
		return 1; /* not sealed for good yet (sealing_reseal): it and those behind wait */
	}
	if (sealing_record_oversize(env, len)) {
		client_refuse(
		    c, message_id, IHALA_ETOOLARGE,
		    "message is over the broker's limit per frame once sealed; nothing was "
		    "sent (shorten long texts or lists)");
		return 0;
	}
	if (submit_frame_size(len) > ihala_max_frame(c)) {
		return outbox_send_cb(c, message_id, env, len); /* rejected here, never sent */
	}
	err = outbox_send_cb(c, message_id, env, len);
	if (err == 0) {
		snprintf(c->ob_win[c->ob_n].id, sizeof(c->ob_win[0].id), "%s", message_id);
		c->ob_win[c->ob_n].len = len;
		c->ob_n++;
		c->ob_bytes += len;
	}
	return err;
}

void
client_outbox_pump(struct ihala_client *c)
{
	if (c->state != SESS_OPEN) {
		return;
	}
	if (c->ob_retry) {
		/* What was refused for now lies behind ob_pos: start again from the oldest once
		 * nothing is in flight (so nothing goes twice) and the backoff has passed. */
		if (c->ob_n > 0 || now_ms() < c->ob_retry_at) {
			return;
		}
		c->ob_retry = 0;
		c->ob_pos = 0;
	}
	localstore_outbox_iter_from(c->ls, &c->ob_pos, window_send_cb, c);
}

/* A receipt (or a transient refusal) for message_id: its room in the window is free. */
static void
window_release(struct ihala_client *c, const char *message_id)
{
	size_t i;

	for (i = 0; i < c->ob_n; i++) {
		if (strcmp(c->ob_win[i].id, message_id) == 0) {
			c->ob_bytes -= c->ob_win[i].len;
			c->ob_win[i] = c->ob_win[--c->ob_n];
			return;
		}
	}
}

/* A new session: everything not yet receipted goes again, a window at a time. */
void
client_resend_outbox(struct ihala_client *c)
{
	c->ob_pos = 0;
	c->ob_n = c->ob_bytes = 0;
	c->ob_retry = 0;
	client_outbox_pump(c);
}

/* Refusals that say "not now" rather than "not this": the message stays in the outbox. */
static int
transient(const Ihala__V2__Receipt *r)
{
	return r->status == IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED &&
	       (-r->error_code == IHALA_ESHUTDOWN || -r->error_code == IHALA_EOVERLOAD);
}

static void
on_receipt(struct ihala_client *c, const Ihala__V2__Receipt *r)
{
	window_release(c, r->message_id);
	if (transient(r)) {
		/* It stays in the outbox and goes again after a backoff. */
		c->busy = 1;
		if (!c->ob_retry) {
			c->ob_retry = 1;
			c->ob_backoff_ms = c->ob_backoff_ms == 0 ? OB_BACKOFF_MS
			                   : c->ob_backoff_ms * 2 > OB_BACKOFF_MAX
			                       ? OB_BACKOFF_MAX
			                       : c->ob_backoff_ms * 2;
			c->ob_retry_at = now_ms() + c->ob_backoff_ms;
		}
		client_fail(c, -r->error_code, "broker busy: %s", r->error_message);
		return;
	}
	if (!c->ob_retry) {
		c->ob_backoff_ms = 0;
	}
	if (r->message_id[0] != '\0') {
		if (r->status == IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED &&
		    -r->error_code == IHALA_EERASED) {
			/* Its referral was erased: its sealed part goes too, not to the rejected
			 * list (the caller still gets the refusal). */
			localstore_outbox_del(c->ls, r->message_id);
		} else if (r->status == IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED) {
			reject(c, r->message_id, -r->error_code, r->error_message);
		} else if (localstore_outbox_sent(c->ls, r->message_id, r->seq, wall_ms(),
		                                  c->cfg->sent_keep_ms) != 0) {
			/* kept as sent (sent_keep) so a repeat under its id is the same bytes */
			localstore_outbox_del(c->ls, r->message_id);
		}
	}
	set_receipt(c, r->message_id, r->status, r->seq,
	            r->leaf_hash.len == MERKLE_HASH_LEN ? r->leaf_hash.data : NULL, -r->error_code,
	            r->error_message);
	client_outbox_pump(c);
}

void
client_on_deliver(struct ihala_client *c, const Ihala__V2__Deliver *d)
{
	enum localstore_inbox_state prev;
	size_t i;
	int err;

	if (c->no_deliveries) {
		/* Not stored, not acked: the broker gives it to the session that takes them. */
		return;
	}
	if (d->seq == 0) {
		return;
	}
	err = localstore_inbox_put_sealed(c->ls, d->seq, d->entry.data, d->entry.len,
	                                  d->sealed.data, d->sealed.len, &prev);
	if (err != 0) {
		if (err == IHALA_ENOSPACE && c->nospace_seq == 0) {
			c->nospace_seq = d->seq;
		}
		return; /* not stored, so not acked: it comes again */
	}
	if (prev == LOCALSTORE_DONE) {
		/* Taken by the application before (our ack was lost): ack again, show nothing. */
		Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
		Ihala__V2__DeliveryAck a = IHALA__V2__DELIVERY_ACK__INIT;

		a.seq = d->seq;
		f.kind_case = IHALA__V2__FRAME__KIND_DELIVERY_ACK;
		f.delivery_ack = &a;
		client_send_frame(c, &f);
		return;
	}
	if (prev == LOCALSTORE_ABSENT) {
		/* An erasure takes this node's copies away as soon as it is stored, before the
		 * entries still pending before it are read (it is done again when taken). */
		Ihala__V2__LogEntry *le = NULL;

		if (logentry_decode(d->entry.data, d->entry.len, &le) == 0 &&
		    le->kind == IHALA__V2__ENTRY_KIND__ENTRY_KIND_ERASURE) {
			sealing_erasure(c, le);
		}
		logentry_free(le);
	}
	for (i = 0; i < c->n_pending; i++) {
		if (c->pending[i] == d->seq) {
			return;
		}
	}
	if (c->n_pending < MAX_PENDING) {
		c->pending[c->n_pending++] = d->seq;
	}
}

/* The request id an answer frame echoes (0 when none). */
static uint64_t
answer_request_id(const Ihala__V2__Frame *f)
{
	switch (f->kind_case) {
	case IHALA__V2__FRAME__KIND_ERROR:
		return f->error->request_id;
	case IHALA__V2__FRAME__KIND_REFERRAL_STATE:
		return f->referral_state->request_id;
	case IHALA__V2__FRAME__KIND_INCLUSION_PROOF:
		return f->inclusion_proof->request_id;
	case IHALA__V2__FRAME__KIND_CONSISTENCY_PROOF:
		return f->consistency_proof->request_id;
	case IHALA__V2__FRAME__KIND_CHECKPOINT:
		return f->checkpoint->request_id;
	case IHALA__V2__FRAME__KIND_DIRECTORY:
		return f->directory->request_id;
	case IHALA__V2__FRAME__KIND_LOG_ENTRIES:
		return f->log_entries->request_id;
	default:
		return 0;
	}
}

static void
on_frame(struct ihala_client *c, Ihala__V2__Frame *f)
{
	switch (f->kind_case) {
	case IHALA__V2__FRAME__KIND_WELCOME:
		frame_free(c->welcome);
		c->welcome = f;
		c->state = SESS_OPEN;
		/* With a checkpoint key, nothing goes out before the broker's log is checked. */
		if (c->cfg->checkpoint_key != NULL && ckpt_gate_welcome(c) != 0) {
			return;
		}
		/* Everything not yet receipted goes again, with its message id: logged once. */
		client_resend_outbox(c);
		return;
	case IHALA__V2__FRAME__KIND_RECEIPT:
		on_receipt(c, f->receipt);
		break;
	case IHALA__V2__FRAME__KIND_DELIVER:
		/* Nothing from a broker whose log is not checked yet reaches the inbox. */
		if (c->state == SESS_VERIFYING && c->n_held < MAX_HELD) {
			c->held[c->n_held++] = f;
			return;
		}
		if (c->state == SESS_OPEN) {
			client_on_deliver(c, f->deliver);
		}
		break;
	case IHALA__V2__FRAME__KIND_LOG_ENTRIES:
		if ((c->replay_cb != NULL || c->replay_rcb != NULL) &&
		    f->log_entries->request_id == c->want_request) {
			size_t i;

			for (i = 0; i < f->log_entries->n_records && !c->replay_stop; i++) {
				const Ihala__V2__LogRecord *r = f->log_entries->records[i];
				int stop =
				    c->replay_rcb != NULL
				        ? c->replay_rcb(c->replay_arg, r->seq, r->entry.data,
				                        r->entry.len, r->sealed.data, r->sealed.len)
				        : c->replay_cb(c->replay_arg, r->seq, r->entry.data,
				                       r->entry.len);

				if (stop != 0) {
					c->replay_stop = 1;
				}
			}
			if (f->log_entries->done) {
				c->replay_done = 1;
			}
		}
		break;
	case IHALA__V2__FRAME__KIND_ERROR:
		if (c->gate_request != 0 && f->error->request_id == c->gate_request) {
			ckpt_gate_answer(c, f);
			break;
		}
		if (f->error->request_id == 0) {
			/* A session error: the broker refused us or ends the session. */
			c->refused = -(int)f->error->code;
			client_fail(c, c->refused, "broker refused the session: %s",
			            f->error->message);
			if (c->refused == IHALA_EFRAMESIZE && c->big_msgid[0] != '\0') {
				/* Never again: it would end every session from now on. */
				reject(c, c->big_msgid, IHALA_ETOOLARGE, f->error->message);
				set_receipt(c, c->big_msgid,
				            IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED, 0,
				            NULL, IHALA_ETOOLARGE,
				            "message is over the broker's frame limit");
			}
			/* What we sent after the frame it refused is still on its way in this
			 * connection; a new one (new routing id, new TLS session) starts clean. */
			c->drop_socket = 1;
			break;
		}
		goto answer; /* an Error answering a request */
	case IHALA__V2__FRAME__KIND_CONSISTENCY_PROOF:
		if (c->gate_request != 0 && f->consistency_proof->request_id == c->gate_request) {
			ckpt_gate_answer(c, f);
			break;
		}
		goto answer;
	case IHALA__V2__FRAME__KIND_REFERRAL_STATE:
	case IHALA__V2__FRAME__KIND_INCLUSION_PROOF:
	case IHALA__V2__FRAME__KIND_CHECKPOINT:
	case IHALA__V2__FRAME__KIND_DIRECTORY:
	answer:
		/* Only the answer to the request waited for: a late answer to an earlier one
		 * (that timed out) must not be taken for it. */
		if (c->want_request != 0 && c->response == NULL &&
		    answer_request_id(f) == c->want_request) {
			c->response = f;
			return;
		}
		break;
	default:
		break;
	}
	frame_free(f);
}

/* A frame body from the broker. One that does not decode is logged and counted, not used. */
static void
on_body(struct ihala_client *c, const uint8_t *body, size_t len)
{
	Ihala__V2__Frame *f = NULL;
	int err = frame_decode(body, len, FRAME_MAX_LIMIT, &f);

	if (err != 0) {
		c->frames_dropped++;
		log_warnx(
		    "dropped a frame of %zu bytes from the broker at %s that does not decode: %s "
		    "(%llu so far)",
		    len, c->cfg->broker, ihala_strerror(err),
		    (unsigned long long)c->frames_dropped);
		return;
	}
	on_frame(c, f);
}

uint64_t
ihala_frames_dropped(const struct ihala_client *c)
{
	return c->frames_dropped;
}

/* Wait up to timeout_ms for network events and handle them. */
static int
pump(struct ihala_client *c, long timeout_ms)
{
	struct wire_event ev;
	int rc;

	if (c->w == NULL && (rc = socket_open(c)) != 0) {
		return rc;
	}
	if (c->ob_retry && c->state == SESS_OPEN) {
		uint64_t t = now_ms();
		long left = c->ob_retry_at > t ? (long)(c->ob_retry_at - t) : 0;

		if (timeout_ms < 0 || left < timeout_ms) {
			timeout_ms = left; /* the outbox goes again then */
		}
	}
	if ((rc = wire_wait(c->w, timeout_ms)) < 0) {
		return rc;
	}
	while (wire_next(c->w, &ev) == 0 && ev.kind != WIRE_NONE) {
		switch (ev.kind) {
		case WIRE_RESET:
			/*
			 * A RESET answers a message that reached the broker before our ClientHello
			 * on this connection (the rest of a session written before the monitor told
			 * us of a reconnect): the broker answers every message in order and never
			 * RESETs a ClientHello, so while our new handshake has heard nothing the
			 * RESET is stale. Starting again then would put a second ClientHello behind
			 * the first, and the first one's ServerHello would end the second session
			 * ("invalid session id").
			 */
			if (c->state == SESS_HANDSHAKING && !wire_heard(c->w)) {
				break;
			}
			session_start(c);
			break;
		case WIRE_CONNECTED:
			/* A new TCP connection is a new routing id: a new TLS session. */
			session_start(c);
			break;
		case WIRE_DISCONNECTED:
			session_drop(c);
			break;
		case WIRE_FRAME:
			on_body(c, ev.data, ev.len);
			break;
		case WIRE_FAILED:
			if (c->refused == 0) {
				c->refused = ev.err;
				client_fail(c, ev.err, "TLS: %s",
				            channel_error_text(wire_channel(c->w)));
			}
			c->state = SESS_NONE;
			break;
		case WIRE_CLOSED:
			c->state = SESS_NONE;
			if (c->refused == 0) {
				c->refused = IHALA_ECLOSED;
				client_fail(c, IHALA_ECLOSED, "the broker closed the session");
			}
			break;
		default:
			break;
		}
		if (c->drop_socket) {
			break;
		}
	}
	if (c->drop_socket) {
		c->drop_socket = 0;
		socket_close(c);
		return 0;
	}
	if (c->ob_retry) {
		client_outbox_pump(c);
	}
	flush_wire(c);
	return 0;
}

/* Make sure a session is open, waiting until the deadline. */
static int
ensure_open(struct ihala_client *c, uint64_t deadline)
{
	uint64_t start = now_ms();
	int rc, said = 0;

	if (c->ckpt_bad) {
		/* A rewritten or forked log: this node talks to that broker no more. */
		socket_close(c);
		return client_fail(c, IHALA_EINCONSISTENT, "%s", c->ckpt_msg);
	}
	if (c->state == SESS_OPEN) {
		return 0;
	}
	if (c->refused != 0 && c->state == SESS_NONE && connected(c)) {
		/* Refused before: try a fresh connection once more. */
		socket_close(c);
	}
	c->refused = 0;
	while (c->state != SESS_OPEN) {
		uint64_t t = now_ms(), until = deadline;

		if (c->refused != 0) {
			return c->refused;
		}
		if (!said && t >= start + CONNECTING_AFTER_MS && t < deadline) {
			said = 1;
			if (c->on_connecting != NULL) {
				c->on_connecting(c->on_connecting_arg, c->cfg->broker);
			} else {
				log_info("connecting to %s (retrying)", c->cfg->broker);
			}
		}
		if (!said && start + CONNECTING_AFTER_MS < until) {
			until = start + CONNECTING_AFTER_MS;
		}
		if (t >= deadline) {
			if (!connected(c)) {
				return client_fail(c, IHALA_EUNREACHABLE,
				                   "cannot reach the broker at %s (is it running?)",
				                   c->cfg->broker);
			}
			return client_fail(c, IHALA_EUNREACHABLE,
			                   "the broker at %s did not complete the session in time",
			                   c->cfg->broker);
		}
		rc = pump(c, (long)(until > t ? until - t : 0));
		if (rc != 0 && rc != IHALA_EAGAIN) {
			return rc;
		}
	}
	return 0;
}

static uint64_t
deadline_of(const struct ihala_client *c, int timeout_ms)
{
	return now_ms() + (uint64_t)(timeout_ms >= 0 ? timeout_ms : (int)c->cfg->timeout_ms);
}

/* Milliseconds until the deadline (0 when past). */
static int
left_ms(uint64_t deadline)
{
	uint64_t t = now_ms();

	return t >= deadline ? 0 : deadline - t > INT32_MAX ? INT32_MAX : (int)(deadline - t);
}

int
ihala_connect(struct ihala_client *c, int timeout_ms)
{
	c->errmsg[0] = '\0';
	return ensure_open(c, deadline_of(c, timeout_ms));
}

void
ihala_on_connecting(struct ihala_client *c, void (*cb)(void *arg, const char *endpoint), void *arg)
{
	c->on_connecting = cb;
	c->on_connecting_arg = arg;
}

int
ihala_take_deliveries(struct ihala_client *c, int on)
{
	int err;

	if (!on) {
		c->no_deliveries = 1;
		return 0;
	}
	if ((err = localstore_inbox_lock(c->ls)) != 0) {
		return client_fail(c, err == IHALA_EAGAIN ? IHALA_EIO : err,
		                   err == IHALA_EAGAIN
		                       ? "another ihala process takes this node's deliveries (an "
		                         "'inbox' runs on data dir %s)"
		                       : "cannot lock the inbox of data dir %s",
		                   c->cfg->data_dir);
	}
	c->no_deliveries = 0;
	return 0;
}

struct localstore *
ihala_store(struct ihala_client *c)
{
	return c->ls;
}

const Ihala__V2__Welcome *
ihala_welcome(const struct ihala_client *c)
{
	return c->state == SESS_OPEN && c->welcome != NULL ? c->welcome->welcome : NULL;
}

int
ihala_outbox_count(struct ihala_client *c, size_t *n)
{
	return localstore_outbox_count(c->ls, n);
}

/*
 * A message with a sealed part sent again under its id once its sent record is gone (kept
 * sent_keep after its receipt) is sealed anew: other bytes, which the broker refuses
 * MESSAGE_ID_CONFLICT as it does other content. Say so, and where to see what was logged.
 */
static void
conflict_why(struct ihala_client *c, struct ihala_receipt *rc)
{
	char keep[32], text[2 * sizeof(rc->text)];

	conf_format_duration(c->cfg->sent_keep_ms, keep, sizeof(keep));
	snprintf(
	    text, sizeof(text),
	    "%s; if it is this same message, sent over sent_keep (%s) ago, this node no longer "
	    "has its sealed bytes to repeat (ihala prove ID shows the one logged)",
	    rc->text, keep);
	memcpy(rc->text, text, sizeof(rc->text) - 1);
	rc->text[sizeof(rc->text) - 1] = '\0';
}

int
ihala_submit(struct ihala_client *c, Ihala__V2__Envelope *env, int timeout_ms,
             struct ihala_receipt *rc)
{
	uint64_t deadline = deadline_of(c, timeout_ms);
	uint8_t *buf;
	size_t len;
	int err, given, reused, anew;

	memset(rc, 0, sizeof(*rc));
	c->errmsg[0] = '\0';
	given = env->message_id != NULL && env->message_id[0] != '\0';
	if (env->message_id == NULL || env->message_id[0] == '\0') {
		char *id = malloc(33);

		if (id == NULL || c->n_msgids == sizeof(c->msgids) / sizeof(c->msgids[0])) {
			free(id);
			return IHALA_ENOMEM;
		}
		ihala_new_message_id(id, 33);
		c->msgids[c->n_msgids++] = id;
		env->message_id = id;
	}
	snprintf(rc->message_id, sizeof(rc->message_id), "%s", env->message_id);
	/* Validated, split and sealed: what is queued holds nothing personal in clear. */
	/* The same message again under its id: the same bytes (sealing anew would differ). */
	buf = NULL;
	reused = given && sealing_reuse(c, env, &buf, &len) == 0;
	if (!reused && (err = sealing_record(c, env, left_ms(deadline), &buf, &len)) != 0) {
		if (err == IHALA_ETOOLARGE && buf != NULL) {
			/* Never queued; on the rejected list (clear part only) for `ihala outbox`.
			 */
			if (localstore_outbox_put(c->ls, env->message_id, buf, len) == 0) {
				reject(c, env->message_id, IHALA_ETOOLARGE, c->errmsg);
			}
			free(buf);
			return IHALA_ETOOLARGE;
		}
		if (err <= IHALA_ESCHEMA && err > IHALA_ENOTFOUND) {
			/* A refusal of the message (the node's checks, the broker's sentences):
			 * told as the broker's would be; nothing was queued. */
			rc->status = IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED;
			rc->error = err;
			snprintf(rc->text, sizeof(rc->text), "%.255s", c->errmsg);
		}
		return err;
	}
	if (submit_frame_size(len) > ihala_max_frame(c)) {
		/* Sent, it would end the session: never queued; kept on the rejected list so
		 * `ihala outbox` shows it with the others. */
		client_fail(c, IHALA_ETOOLARGE,
		            "message %s is %zu bytes encoded, over the broker's limit of %zu bytes "
		            "per frame; nothing was queued (shorten long texts or lists)",
		            env->message_id, submit_frame_size(len), ihala_max_frame(c));
		if (localstore_outbox_put(c->ls, env->message_id, buf, len) == 0) {
			reject(c, env->message_id, IHALA_ETOOLARGE, c->errmsg);
		}
		free(buf);
		return IHALA_ETOOLARGE;
	}
	/* On disk before it leaves this machine. */
	err = localstore_outbox_put(c->ls, env->message_id, buf, len);
	if (err == IHALA_ENOSPACE) {
		/* The commit did not happen: nothing of it is in the outbox. */
		free(buf);
		return client_fail(c, err,
		                   "no space left on the disk of data dir '%s': message %s was not "
		                   "queued, nothing was sent; free some space and submit it again",
		                   c->cfg->data_dir, env->message_id);
	}
	if (err != 0) {
		free(buf);
		return client_fail(c, err, "cannot store the message in the outbox: %s",
		                   ihala_strerror(err));
	}
	c->want_msgid = env->message_id;
	c->got_receipt = 0;
	/* Its id given, but sealed anew: the broker cannot tell it from other content. */
	anew = given && !reused && sealing_record_sealed(buf, len);
	free(buf);
	/* It goes with the outbox window: now if there is room, else as receipts come. Opening
	 * the session sends the outbox, this message included. */
	client_outbox_pump(c);
	err = ensure_open(c, deadline);
	if (err == 0 && c->seal_pending) {
		/* Messages queued while the broker was away (this one too) go sealed now. */
		int e2 = sealing_reseal(c, left_ms(deadline));

		if (e2 != 0) {
			err = e2 == IHALA_ETIMEDOUT ? IHALA_EUNREACHABLE : e2;
		}
		client_outbox_pump(c);
	}
	c->busy = 0;
	while (err == 0 && !c->got_receipt) {
		uint64_t t = now_ms();

		if (t >= deadline) {
			err = client_fail(
			    c, IHALA_ETIMEDOUT, "no receipt from the broker in time%s",
			    c->busy ? " (it was busy); the message stays in the outbox" : "");
			break;
		}
		if (c->seal_pending) {
			/* Its message may be behind more than one batch of messages queued while
			 * the broker was away: they are sealed as the window empties. */
			int e2 = sealing_reseal(c, left_ms(deadline));

			client_outbox_pump(c);
			if (e2 != 0) {
				err = e2 == IHALA_ETIMEDOUT ? IHALA_EUNREACHABLE : e2;
				break;
			}
		}
		err = pump(c, (long)(deadline - t));
		if (err == IHALA_EAGAIN) {
			err = 0;
		}
		if (err == 0 && c->state != SESS_OPEN) {
			err = ensure_open(c, deadline);
		}
	}
	c->want_msgid = NULL;
	if (err != 0) {
		return err;
	}
	*rc = c->receipt;
	if (rc->status == IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED) {
		if (anew && rc->error == IHALA_EMSGID) {
			conflict_why(c, rc);
		}
		return client_fail(c, rc->error != 0 ? rc->error : IHALA_EINTERNAL, "%s", rc->text);
	}
	return 0;
}

int
ihala_flush_outbox(struct ihala_client *c, int timeout_ms, size_t *left)
{
	uint64_t deadline = deadline_of(c, timeout_ms);
	size_t n = 0;
	int err;

	err = ensure_open(c, deadline);
	if (err == 0 && c->seal_pending) {
		err = sealing_reseal(c, left_ms(deadline));
		client_outbox_pump(c);
	}
	while (err == 0) {
		err = localstore_outbox_count(c->ls, &n);
		if (err != 0 || n == 0 || now_ms() >= deadline) {
			break;
		}
		if (c->seal_pending) {
			/* sealing_reseal seals a batch at a time; the window stops at the next
			 * message still sealed to this node alone, so seal on as the window
			 * empties. */
			err = sealing_reseal(c, left_ms(deadline));
			client_outbox_pump(c);
			if (err != 0) {
				break;
			}
		}
		err = pump(c, (long)(deadline - now_ms()));
		if (err == IHALA_EAGAIN) {
			err = 0;
		}
		if (err == 0 && c->state != SESS_OPEN) {
			err = ensure_open(c, deadline);
		}
	}
	localstore_outbox_count(c->ls, &n);
	if (left != NULL) {
		*left = n;
	}
	if (err == 0 && n > 0) {
		err = client_fail(c, IHALA_ETIMEDOUT,
		                  "%zu message(s) still wait for their receipts", n);
	}
	return err;
}

void
ihala_delivery_release(struct ihala_delivery *d)
{
	if (d == NULL) {
		return;
	}
	envelope_free(d->envelope);
	logentry_free(d->log);
	free(d->entry);
	free(d->sealed);
	memset(d, 0, sizeof(*d));
}

static int
delivery_fill(struct ihala_client *c, struct ihala_delivery *d, uint64_t seq, void *entry,
              size_t len)
{
	void *sealed = NULL;
	size_t slen = 0;
	int err;

	memset(d, 0, sizeof(*d));
	d->seq = seq;
	d->entry = entry;
	d->entry_len = len;
	err = logentry_decode(entry, len, &d->log);
	if (err != 0) {
		ihala_delivery_release(d);
		return err;
	}
	if (d->log->kind == IHALA__V2__ENTRY_KIND__ENTRY_KIND_SUBMISSION &&
	    envelope_decode(d->log->envelope.data, d->log->envelope.len, &d->envelope) != 0) {
		d->envelope = NULL;
	}
	/* The inbox keeps the sealed form; it is opened on every read. */
	err = localstore_inbox_sealed(c->ls, seq, &sealed, &slen);
	if (err == 0) {
		d->sealed = sealed;
		d->sealed_len = slen;
	} else if (err != IHALA_ENOTFOUND) {
		ihala_delivery_release(d);
		return client_fail(c, err, "cannot read delivery %llu's sealed part: %s",
		                   (unsigned long long)seq, ihala_strerror(err));
	}
	sealing_open_delivery(c, d);
	/* An erasure takes this node's copies away (durably) before anyone sees it. */
	if ((err = sealing_erasure(c, d->log)) != 0) {
		ihala_delivery_release(d);
		return err;
	}
	return 0;
}

int
ihala_next_delivery(struct ihala_client *c, int timeout_ms, struct ihala_delivery *d)
{
	uint64_t deadline = deadline_of(c, timeout_ms);
	int err;

	c->errmsg[0] = '\0';
	err = ensure_open(c, deadline);
	while (err == 0) {
		uint64_t seq;
		void *entry;
		size_t len;

		/* Deliveries stored by this or an earlier run and not taken yet, in seq order. */
		if (localstore_inbox_next_pending(c->ls, 0, &seq, &entry, &len) == 0) {
			size_t i;

			for (i = 0; i < c->n_pending; i++) {
				if (c->pending[i] == seq) {
					c->pending[i] = c->pending[--c->n_pending];
					break;
				}
			}
			return delivery_fill(c, d, seq, entry, len);
		}
		if (c->nospace_seq != 0) {
			seq = c->nospace_seq;
			c->nospace_seq = 0;
			return client_fail(
			    c, IHALA_ENOSPACE,
			    "no space left on the disk of data dir '%s': delivery %llu "
			    "was not taken (not acknowledged: the broker delivers it "
			    "again); free some space and run it again",
			    c->cfg->data_dir, (unsigned long long)seq);
		}
		if (now_ms() >= deadline) {
			return client_fail(c, IHALA_ETIMEDOUT, "no delivery");
		}
		err = pump(c, (long)(deadline - now_ms()));
		if (err == IHALA_EAGAIN) {
			err = 0;
		}
		if (err == 0 && c->state != SESS_OPEN) {
			err = ensure_open(c, deadline);
		}
	}
	return err;
}

int
ihala_ack(struct ihala_client *c, uint64_t seq)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__DeliveryAck a = IHALA__V2__DELIVERY_ACK__INIT;
	int err;

	/* Recorded first: if the ack is lost, the repeat is dropped and acked again. */
	err = localstore_inbox_done(c->ls, seq);
	if (err != 0) {
		return client_fail(c, err, "cannot record delivery %llu: %s",
		                   (unsigned long long)seq, ihala_strerror(err));
	}
	a.seq = seq;
	f.kind_case = IHALA__V2__FRAME__KIND_DELIVERY_ACK;
	f.delivery_ack = &a;
	client_send_frame(c, &f);
	pump(c, 0);
	return 0;
}

/* Send a request frame and wait for the answer with the same request id. */
int
client_request(struct ihala_client *c, Ihala__V2__Frame *f, uint64_t req, int timeout_ms,
               Ihala__V2__Frame **out)
{
	uint64_t deadline = deadline_of(c, timeout_ms);
	int err;

	c->errmsg[0] = '\0';
	err = ensure_open(c, deadline);
	if (err != 0) {
		return err;
	}
	frame_free(c->response);
	c->response = NULL;
	c->want_request = req;
	err = client_send_frame(c, f);
	while (err == 0 && c->response == NULL && !c->replay_done && !c->replay_stop) {
		if (now_ms() >= deadline) {
			if (c->replay_cb != NULL || c->replay_rcb != NULL) {
				break; /* a replay ends when the broker goes quiet */
			}
			err = client_fail(c, IHALA_ETIMEDOUT, "no answer from the broker in time");
			break;
		}
		err = pump(c, (long)(deadline - now_ms()));
		if (err == IHALA_EAGAIN) {
			err = 0;
		}
		if (err == 0 && c->state != SESS_OPEN) {
			err = c->refused != 0 ? c->refused
			                      : client_fail(c, IHALA_ECLOSED,
			                                    "session lost during the request");
		}
	}
	c->want_request = 0;
	if (err != 0) {
		return err;
	}
	if (c->response != NULL && c->response->kind_case == IHALA__V2__FRAME__KIND_ERROR) {
		int code = -(int)c->response->error->code;

		client_fail(c, code, "%s", c->response->error->message);
		frame_free(c->response);
		c->response = NULL;
		return code;
	}
	*out = c->response;
	c->response = NULL;
	return 0;
}

int
ihala_query(struct ihala_client *c, const char *referral_id, int timeout_ms,
            Ihala__V2__ReferralState **out)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__Query q = IHALA__V2__QUERY__INIT;
	Ihala__V2__Frame *ans = NULL;
	uint64_t deadline = deadline_of(c, timeout_ms);
	size_t waiting = 0;
	int err;

	/* Outbox first: a referral still waiting there (sent again as this session opened)
	 * must be logged before the broker is asked about it. */
	if (!c->resealing && localstore_outbox_count(c->ls, &waiting) == 0 && waiting > 0) {
		err = ihala_flush_outbox(c, left_ms(deadline) / 2, NULL);
		if (err != 0 && err != IHALA_ETIMEDOUT) {
			return err;
		}
	}
	q.request_id = c->next_request++;
	q.referral_id = (char *)referral_id;
	f.kind_case = IHALA__V2__FRAME__KIND_QUERY;
	f.query = &q;
	err = client_request(c, &f, q.request_id, left_ms(deadline), &ans);
	if (err != 0) {
		return err;
	}
	if (ans == NULL || ans->kind_case != IHALA__V2__FRAME__KIND_REFERRAL_STATE) {
		frame_free(ans);
		return client_fail(c, IHALA_EPROTOCOL, "unexpected answer to a query");
	}
	*out = ans->referral_state;
	ans->referral_state = NULL;
	ans->kind_case = IHALA__V2__FRAME__KIND__NOT_SET;
	frame_free(ans);
	return 0;
}

void
ihala_state_free(Ihala__V2__ReferralState *st)
{
	if (st != NULL) {
		ihala__v2__referral_state__free_unpacked(st, NULL);
	}
}

static int replay(struct ihala_client *c, uint64_t from, uint64_t to, int follow, ihala_entry_cb cb,
                  ihala_record_cb rcb, void *arg, int timeout_ms);

int
ihala_replay(struct ihala_client *c, uint64_t from, uint64_t to, int follow, ihala_entry_cb cb,
             void *arg, int timeout_ms)
{
	return replay(c, from, to, follow, cb, NULL, arg, timeout_ms);
}

int
ihala_replay_records(struct ihala_client *c, uint64_t from, uint64_t to, int follow,
                     ihala_record_cb cb, void *arg, int timeout_ms)
{
	return replay(c, from, to, follow, NULL, cb, arg, timeout_ms);
}

static int
replay(struct ihala_client *c, uint64_t from, uint64_t to, int follow, ihala_entry_cb cb,
       ihala_record_cb rcb, void *arg, int timeout_ms)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__ReplayRequest q = IHALA__V2__REPLAY_REQUEST__INIT;
	Ihala__V2__Frame *ans = NULL;
	int err;

	q.request_id = c->next_request++;
	q.from_seq = from;
	q.to_seq = to;
	q.follow = follow;
	f.kind_case = IHALA__V2__FRAME__KIND_REPLAY_REQUEST;
	f.replay_request = &q;
	c->replay_cb = cb;
	c->replay_rcb = rcb;
	c->replay_arg = arg;
	c->replay_stop = 0;
	c->replay_done = 0;
	err = client_request(c, &f, q.request_id, follow ? 1 << 30 : timeout_ms, &ans);
	c->replay_cb = NULL;
	c->replay_rcb = NULL;
	frame_free(ans);
	if (err == 0 && !c->replay_done && !c->replay_stop && !follow) {
		err = client_fail(c, IHALA_ETIMEDOUT, "the replay did not finish in time");
	}
	return err;
}
