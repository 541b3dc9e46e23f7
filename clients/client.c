/* client.c - libihala: one TLS session to the broker over a ZeroMQ DEALER, outbox and inbox. */
#include "ihala.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <zmq.h>

#include "channel.h"
#include "checkpoint.h"
#include "frame.h"
#include "localstore.h"
#include "log.h"
#include "tlsctx.h"
#include "wire.h"

#define OUT_CAP (4u * 1024 * 1024)
#define MAX_PENDING 4096
#define MAX_HELD 256 /* deliveries held while the Welcome's checkpoint is checked */

enum sess_state {
	SESS_NONE,	  /* no TLS session */
	SESS_HANDSHAKING, /* ClientHello sent, waiting for Welcome */
	SESS_VERIFYING,	  /* Welcome received, its checkpoint awaits a consistency proof */
	SESS_OPEN,	  /* Welcome received (and its checkpoint checked) */
};

struct ihala_client {
	const struct client_config *cfg;
	struct localstore *ls;
	SSL_CTX *ssl;
	void *zctx;
	struct wire *w; /* the socket and the TLS session on it; NULL until first needed */
	enum sess_state state;
	int refused;		/* the broker refused this session: code */
	uint64_t frames_dropped; /* frames from the broker that did not decode */
	Ihala__V1__Frame *welcome;
	uint64_t next_request;
	char errmsg[512];
	char *msgids[16];	/* message ids generated for callers' envelopes */
	size_t n_msgids;

	/* the receipt a caller waits for */
	const char *want_msgid;
	int got_receipt;
	int busy; /* a transient refusal came (SHUTTING_DOWN, OVERLOADED): send again later */
	struct ihala_receipt receipt;

	/* the answer a caller waits for, by request id */
	uint64_t want_request;
	Ihala__V1__Frame *response;

	/* replay streaming */
	ihala_entry_cb replay_cb;
	void *replay_arg;
	int replay_stop;
	int replay_done;

	/* deliveries received and stored, not yet handed to the application */
	uint64_t pending[MAX_PENDING];
	size_t n_pending;
	uint64_t inbox_cursor; /* inbox scan position for deliveries of earlier runs */
	int inbox_scanned;

	/* checkpoints (cfg->checkpoint_key): see "checkpoints" below */
	struct checkpoint_verifier *ver; /* cached verifier, for ver_key under its name */
	char *ver_key;
	int ckpt_bad;		/* the broker's log contradicts a kept checkpoint: refuse all */
	char ckpt_msg[512];	/* why, repeated by every later call */
	uint64_t gate_request;	/* request id of the Welcome check's consistency proof */
	char *gate_text;	/* the Welcome's checkpoint, kept once the proof verifies */
	struct checkpoint gate_old, gate_new;
	Ihala__V1__Frame *held[MAX_HELD]; /* Deliver frames that came during SESS_VERIFYING */
	size_t n_held;
};

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int
fail(struct ihala_client *c, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
fail(struct ihala_client *c, int err, const char *fmt, ...)
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
	c->zctx = zmq_ctx_new();
	if (c->zctx == NULL) {
		localstore_close(c->ls);
		SSL_CTX_free(c->ssl);
		free(c);
		return IHALA_EZMQ;
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
	free(c->gate_text);
	c->gate_text = NULL;
	while (c->n_held > 0) {
		frame_free(c->held[--c->n_held]);
	}
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
	checkpoint_verifier_free(c->ver);
	free(c->ver_key);
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
		return fail(c, rc, "%s", err);
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
		return fail(c, err, "cannot start TLS: %s", ihala_strerror(err));
	}
	c->state = SESS_HANDSHAKING;
	c->refused = 0;
	flush_wire(c);
	return 0;
}

static int
send_frame(struct ihala_client *c, const Ihala__V1__Frame *f)
{
	int err;

	if (c->state != SESS_OPEN) {
		return IHALA_ECLOSED;
	}
	err = wire_send_frame(c->w, f);
	flush_wire(c);
	return err;
}

static int
outbox_send_cb(void *arg, const char *message_id, const void *env, size_t len)
{
	struct ihala_client *c = arg;
	Ihala__V1__Frame f = IHALA__V1__FRAME__INIT;
	Ihala__V1__Submit s = IHALA__V1__SUBMIT__INIT;

	(void)message_id;
	s.envelope.data = (uint8_t *)env;
	s.envelope.len = len;
	f.kind_case = IHALA__V1__FRAME__KIND_SUBMIT;
	f.submit = &s;
	return send_frame(c, &f) == 0 ? 0 : 1;
}

/* Refusals that say "not now" rather than "not this": the message stays in the outbox. */
static int
transient(const Ihala__V1__Receipt *r)
{
	return r->status == IHALA__V1__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED &&
	       (-r->error_code == IHALA_ESHUTDOWN || -r->error_code == IHALA_EOVERLOAD);
}

static void
on_receipt(struct ihala_client *c, const Ihala__V1__Receipt *r)
{
	if (transient(r)) {
		c->busy = 1;
		fail(c, -r->error_code, "broker busy: %s", r->error_message);
		return;
	}
	if (r->message_id[0] != '\0') {
		localstore_outbox_del(c->ls, r->message_id);
	}
	if (c->want_msgid != NULL &&
	    (strcmp(c->want_msgid, r->message_id) == 0 || r->message_id[0] == '\0')) {
		struct ihala_receipt *rc = &c->receipt;

		memset(rc, 0, sizeof(*rc));
		rc->status = r->status;
		rc->seq = r->seq;
		if (r->leaf_hash.len == MERKLE_HASH_LEN) {
			memcpy(rc->leaf_hash, r->leaf_hash.data, MERKLE_HASH_LEN);
		}
		rc->error = -r->error_code;
		snprintf(rc->message_id, sizeof(rc->message_id), "%s", c->want_msgid);
		snprintf(rc->text, sizeof(rc->text), "%s", r->error_message);
		c->got_receipt = 1;
	}
}

static void
on_deliver(struct ihala_client *c, const Ihala__V1__Deliver *d)
{
	enum localstore_inbox_state prev;
	size_t i;

	if (d->seq == 0 || localstore_inbox_put(c->ls, d->seq, d->entry.data, d->entry.len, &prev) != 0) {
		return; /* not stored, so not acked: it comes again */
	}
	if (prev == LOCALSTORE_DONE) {
		/* Taken by the application before (our ack was lost): ack again, show nothing. */
		Ihala__V1__Frame f = IHALA__V1__FRAME__INIT;
		Ihala__V1__DeliveryAck a = IHALA__V1__DELIVERY_ACK__INIT;

		a.seq = d->seq;
		f.kind_case = IHALA__V1__FRAME__KIND_DELIVERY_ACK;
		f.delivery_ack = &a;
		send_frame(c, &f);
		return;
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

/* ---- checkpoints: verified with a key, kept, and checked for consistency ---- */

/*
 * With a checkpoint key (cfg->checkpoint_key, or the key given to ihala_prove) the node
 * keeps the last signed checkpoint it verified in its local store. Every later one it sees
 * (in a Welcome, with a proof) must extend it: the same origin, a size not smaller, and a
 * consistency proof from the kept size to the new one that verifies between the two signed
 * roots. Anything else means the broker's log was rewritten or forked since: the node then
 * refuses to go on (ckpt_bad, for the client's life). Without a key nothing is checked.
 */

enum ckpt_rel {
	CKPT_FIRST, /* nothing kept yet */
	CKPT_SAME,  /* the kept one (same size and root) */
	CKPT_NEWER, /* larger: a consistency proof decides */
};

/* The origin (first line) of a note not verified yet: the name of a PEM key's verifier. */
static int
note_origin(const char *text, char *out, size_t outlen)
{
	const char *nl = strchr(text, '\n');
	size_t n;

	if (nl == NULL || (n = (size_t)(nl - text)) == 0 || n >= outlen) {
		return IHALA_EINVAL;
	}
	memcpy(out, text, n);
	out[n] = '\0';
	return 0;
}

/*
 * Verify the signed checkpoint `text` with `key`: the path of the broker's Ed25519 public
 * key (PEM; the verifier is named after the note's origin line, as the broker names its key
 * after its origin) or a C2SP verifier key "name+id+key". *ck on success.
 */
static int
ckpt_verify(struct ihala_client *c, const char *key, const char *text, struct checkpoint *ck)
{
	char origin[CHECKPOINT_NAME_MAX + 1];
	int is_file = access(key, F_OK) == 0;
	int err;

	if (note_origin(text, origin, sizeof(origin)) != 0) {
		return fail(c, IHALA_ESIGNATURE, "the broker's checkpoint is not a signed checkpoint");
	}
	if (c->ver == NULL || strcmp(c->ver_key, key) != 0 ||
	    (is_file && strcmp(checkpoint_verifier_name(c->ver), origin) != 0)) {
		struct checkpoint_verifier *v = NULL;
		char *k = strdup(key);

		if (k == NULL) {
			return IHALA_ENOMEM;
		}
		err = is_file ? checkpoint_verifier_load(key, origin, &v)
			      : checkpoint_verifier_parse(key, &v);
		if (err != 0) {
			free(k);
			return fail(c, err == IHALA_ENOMEM ? err : IHALA_ECONFIG,
				    "cannot use checkpoint key '%s': %s (the broker's Ed25519 public "
				    "key in PEM, or a C2SP verifier key)",
				    key, ihala_strerror(err));
		}
		checkpoint_verifier_free(c->ver);
		free(c->ver_key);
		c->ver = v;
		c->ver_key = k;
	}
	err = checkpoint_open(c->ver, NULL, text, strlen(text), ck);
	if (err == IHALA_ENOMEM || err == IHALA_EINTERNAL) {
		return fail(c, err, "cannot verify a checkpoint: %s", ihala_strerror(err));
	}
	if (err != 0) {
		return fail(c, IHALA_ESIGNATURE,
			    "the checkpoint of log '%s' does not verify with checkpoint key '%s': %s",
			    origin, key, ihala_strerror(err));
	}
	return 0;
}

/* The broker's log contradicts the kept checkpoint of size `size`: say so, loudly, for good. */
static int
ckpt_inconsistent(struct ihala_client *c, uint64_t size, const char *detail)
{
	c->ckpt_bad = 1;
	snprintf(c->ckpt_msg, sizeof(c->ckpt_msg),
		 "the broker's log is inconsistent with checkpoint of size %llu this node saw: "
		 "forked or rewritten history (%.200s)",
		 (unsigned long long)size, detail);
	log_security("%s", c->ckpt_msg);
	return fail(c, IHALA_EINCONSISTENT, "%s", c->ckpt_msg);
}

/*
 * Compare a verified checkpoint `nw` (NULL: the broker has none) with the one this node
 * kept (verified again, into *old). *rel says how they relate; IHALA_EINCONSISTENT when
 * `nw` cannot extend it.
 */
static int
ckpt_compare(struct ihala_client *c, const char *key, const struct checkpoint *nw,
	     struct checkpoint *old, enum ckpt_rel *rel)
{
	char detail[CHECKPOINT_NAME_MAX * 2 + 64];
	char *text = NULL;
	int err;

	memset(old, 0, sizeof(*old));
	*rel = CKPT_FIRST;
	err = localstore_checkpoint_get(c->ls, &text);
	if (err == IHALA_ENOTFOUND) {
		return 0;
	}
	if (err != 0) {
		return fail(c, err, "cannot read the checkpoint this node kept: %s",
			    ihala_strerror(err));
	}
	err = ckpt_verify(c, key, text, old);
	free(text);
	if (err != 0) {
		return fail(c, err,
			    "the checkpoint this node kept does not verify with checkpoint key '%s' "
			    "(was the key changed?)",
			    key);
	}
	if (nw == NULL) {
		return ckpt_inconsistent(c, old->size, "the broker has no signed checkpoint");
	}
	if (strcmp(old->origin, nw->origin) != 0) {
		snprintf(detail, sizeof(detail), "the broker now signs log '%s', not '%s'",
			 nw->origin, old->origin);
		return ckpt_inconsistent(c, old->size, detail);
	}
	if (nw->size < old->size) {
		snprintf(detail, sizeof(detail), "the broker's checkpoint has size %llu",
			 (unsigned long long)nw->size);
		return ckpt_inconsistent(c, old->size, detail);
	}
	if (nw->size == old->size) {
		if (memcmp(nw->root, old->root, CHECKPOINT_HASH_LEN) != 0) {
			return ckpt_inconsistent(c, old->size,
						 "the broker signed another root for that size");
		}
		*rel = CKPT_SAME;
		return 0;
	}
	*rel = CKPT_NEWER;
	return 0;
}

/* Check the broker's consistency proof from the kept checkpoint `old` to the newer `nw`. */
static int
ckpt_check_proof(struct ihala_client *c, const struct checkpoint *old, const struct checkpoint *nw,
		 const Ihala__V1__ConsistencyProof *cp)
{
	uint8_t path[MERKLE_MAX_PATH][MERKLE_HASH_LEN];
	char detail[128];
	size_t i;
	int err;

	snprintf(detail, sizeof(detail),
		 "no valid consistency proof from it to the broker's checkpoint of size %llu",
		 (unsigned long long)nw->size);
	if (cp->size1 != old->size || cp->size2 != nw->size || cp->n_path > MERKLE_MAX_PATH) {
		return ckpt_inconsistent(c, old->size, detail);
	}
	for (i = 0; i < cp->n_path; i++) {
		if (cp->path[i].len != MERKLE_HASH_LEN) {
			return ckpt_inconsistent(c, old->size, detail);
		}
		memcpy(path[i], cp->path[i].data, MERKLE_HASH_LEN);
	}
	err = merkle_verify_consistency(old->size, nw->size, old->root, nw->root,
					(const uint8_t(*)[MERKLE_HASH_LEN])path, cp->n_path);
	if (err == IHALA_EPROOF) {
		return ckpt_inconsistent(c, old->size, detail);
	}
	if (err != 0) {
		return fail(c, err, "cannot check a consistency proof: %s", ihala_strerror(err));
	}
	return 0;
}

static int
ckpt_keep(struct ihala_client *c, const char *text)
{
	int err = localstore_checkpoint_put(c->ls, text);

	if (err != 0) {
		return fail(c, err, "cannot keep the broker's checkpoint: %s", ihala_strerror(err));
	}
	return 0;
}

/*
 * A Welcome came (state OPEN) and a checkpoint key is configured: check its checkpoint
 * before anything goes out. 0: the session may go on now. 1: not yet (state VERIFYING, a
 * consistency proof was asked for; gate_answer decides) or not at all (state NONE,
 * c->refused says why).
 */
static int
gate_welcome(struct ihala_client *c)
{
	const char *key = c->cfg->checkpoint_key;
	const char *text = c->welcome->welcome->checkpoint;
	Ihala__V1__Frame f = IHALA__V1__FRAME__INIT;
	Ihala__V1__ProofRequest q = IHALA__V1__PROOF_REQUEST__INIT;
	struct checkpoint nw, old;
	enum ckpt_rel rel = CKPT_FIRST;
	int err;

	if (text == NULL || text[0] == '\0') {
		err = ckpt_compare(c, key, NULL, &old, &rel);
	} else if ((err = ckpt_verify(c, key, text, &nw)) == 0) {
		err = ckpt_compare(c, key, &nw, &old, &rel);
		if (err == 0 && rel == CKPT_FIRST) {
			err = ckpt_keep(c, text);
		}
	}
	if (err == 0 && rel == CKPT_NEWER) {
		q.request_id = c->next_request++;
		q.tree_size = nw.size;
		q.consistency_from = old.size;
		f.kind_case = IHALA__V1__FRAME__KIND_PROOF_REQUEST;
		f.proof_request = &q;
		if ((c->gate_text = strdup(text)) == NULL) {
			err = IHALA_ENOMEM;
		} else if ((err = send_frame(c, &f)) == 0) {
			c->gate_request = q.request_id;
			c->gate_old = old;
			c->gate_new = nw;
			c->state = SESS_VERIFYING;
			return 1;
		}
		fail(c, err, "cannot ask the broker for a consistency proof: %s",
		     ihala_strerror(err));
	}
	if (err != 0) {
		c->state = SESS_NONE;
		c->refused = err;
		return 1;
	}
	return 0;
}

/* The answer to gate_welcome's proof request: open the session, or refuse it. */
static void
gate_answer(struct ihala_client *c, const Ihala__V1__Frame *f)
{
	int err;

	c->gate_request = 0;
	if (f->kind_case == IHALA__V1__FRAME__KIND_ERROR) {
		err = f->error->code != 0 ? -(int)f->error->code : IHALA_EPROTOCOL;
		fail(c, err,
		     "the broker cannot prove that its log extends the checkpoint of size %llu this "
		     "node saw: %s",
		     (unsigned long long)c->gate_old.size, f->error->message);
	} else {
		err = ckpt_check_proof(c, &c->gate_old, &c->gate_new, f->consistency_proof);
		if (err == 0) {
			err = ckpt_keep(c, c->gate_text);
		}
	}
	free(c->gate_text);
	c->gate_text = NULL;
	if (err != 0) {
		c->state = SESS_NONE;
		c->refused = err;
		while (c->n_held > 0) {
			frame_free(c->held[--c->n_held]);
		}
		return;
	}
	if (c->state == SESS_VERIFYING) {
		size_t i;

		c->state = SESS_OPEN;
		log_debug("the broker's checkpoint of size %llu extends the one of size %llu this "
			  "node kept (%zu deliveries held meanwhile)",
			  (unsigned long long)c->gate_new.size, (unsigned long long)c->gate_old.size,
			  c->n_held);
		for (i = 0; i < c->n_held; i++) {
			on_deliver(c, c->held[i]->deliver);
			frame_free(c->held[i]);
		}
		c->n_held = 0;
		localstore_outbox_iter(c->ls, outbox_send_cb, c);
	}
}

static void
on_frame(struct ihala_client *c, Ihala__V1__Frame *f)
{
	switch (f->kind_case) {
	case IHALA__V1__FRAME__KIND_WELCOME:
		frame_free(c->welcome);
		c->welcome = f;
		c->state = SESS_OPEN;
		/* With a checkpoint key, nothing goes out before the broker's log is checked. */
		if (c->cfg->checkpoint_key != NULL && gate_welcome(c) != 0) {
			return;
		}
		/* Everything not yet receipted goes again, with its message id: logged once. */
		localstore_outbox_iter(c->ls, outbox_send_cb, c);
		return;
	case IHALA__V1__FRAME__KIND_RECEIPT:
		on_receipt(c, f->receipt);
		break;
	case IHALA__V1__FRAME__KIND_DELIVER:
		/* Nothing from a broker whose log is not checked yet reaches the inbox. */
		if (c->state == SESS_VERIFYING && c->n_held < MAX_HELD) {
			c->held[c->n_held++] = f;
			return;
		}
		if (c->state == SESS_OPEN) {
			on_deliver(c, f->deliver);
		}
		break;
	case IHALA__V1__FRAME__KIND_LOG_ENTRIES:
		if (c->replay_cb != NULL && f->log_entries->request_id == c->want_request) {
			size_t i;

			for (i = 0; i < f->log_entries->n_records && !c->replay_stop; i++) {
				const Ihala__V1__LogRecord *r = f->log_entries->records[i];

				if (c->replay_cb(c->replay_arg, r->seq, r->entry.data, r->entry.len) != 0) {
					c->replay_stop = 1;
				}
			}
			if (f->log_entries->done) {
				c->replay_done = 1;
			}
		}
		break;
	case IHALA__V1__FRAME__KIND_ERROR:
		if (c->gate_request != 0 && f->error->request_id == c->gate_request) {
			gate_answer(c, f);
			break;
		}
		if (f->error->request_id == 0) {
			/* A session error: the broker refused us or ends the session. */
			c->refused = -(int)f->error->code;
			fail(c, c->refused, "broker refused the session: %s", f->error->message);
			break;
		}
		goto answer; /* an Error answering a request */
	case IHALA__V1__FRAME__KIND_CONSISTENCY_PROOF:
		if (c->gate_request != 0 && f->consistency_proof->request_id == c->gate_request) {
			gate_answer(c, f);
			break;
		}
		goto answer;
	case IHALA__V1__FRAME__KIND_REFERRAL_STATE:
	case IHALA__V1__FRAME__KIND_INCLUSION_PROOF:
	case IHALA__V1__FRAME__KIND_CHECKPOINT:
	answer:
		if (c->want_request != 0 && c->response == NULL) {
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
	Ihala__V1__Frame *f = NULL;
	int err = frame_decode(body, len, FRAME_MAX_LIMIT, &f);

	if (err != 0) {
		c->frames_dropped++;
		log_warnx("dropped a frame of %zu bytes from the broker at %s that does not decode: %s "
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
	if ((rc = wire_wait(c->w, timeout_ms)) < 0) {
		return rc;
	}
	while (wire_next(c->w, &ev) == 0 && ev.kind != WIRE_NONE) {
		switch (ev.kind) {
		case WIRE_CONNECTED:
		case WIRE_RESET:
			/* A new TCP connection is a new routing id, and a RESET says the broker has
			 * no session for this one (it restarted): a new TLS session either way. */
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
				fail(c, ev.err, "TLS: %s", channel_error_text(wire_channel(c->w)));
			}
			c->state = SESS_NONE;
			break;
		case WIRE_CLOSED:
			c->state = SESS_NONE;
			if (c->refused == 0) {
				c->refused = IHALA_ECLOSED;
				fail(c, IHALA_ECLOSED, "the broker closed the session");
			}
			break;
		default:
			break;
		}
	}
	flush_wire(c);
	return 0;
}

/* Make sure a session is open, waiting until the deadline. */
static int
ensure_open(struct ihala_client *c, uint64_t deadline)
{
	int rc;

	if (c->ckpt_bad) {
		/* A rewritten or forked log: this node talks to that broker no more. */
		socket_close(c);
		return fail(c, IHALA_EINCONSISTENT, "%s", c->ckpt_msg);
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
		uint64_t t = now_ms();

		if (c->refused != 0) {
			return c->refused;
		}
		if (t >= deadline) {
			if (!connected(c)) {
				return fail(c, IHALA_EUNREACHABLE,
					    "cannot reach the broker at %s (is it running?)",
					    c->cfg->broker);
			}
			return fail(c, IHALA_EUNREACHABLE,
				    "the broker at %s did not complete the session in time",
				    c->cfg->broker);
		}
		rc = pump(c, (long)(deadline - t));
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

int
ihala_connect(struct ihala_client *c, int timeout_ms)
{
	c->errmsg[0] = '\0';
	return ensure_open(c, deadline_of(c, timeout_ms));
}

const Ihala__V1__Welcome *
ihala_welcome(const struct ihala_client *c)
{
	return c->state == SESS_OPEN && c->welcome != NULL ? c->welcome->welcome : NULL;
}

int
ihala_outbox_count(struct ihala_client *c, size_t *n)
{
	return localstore_outbox_count(c->ls, n);
}

int
ihala_submit(struct ihala_client *c, Ihala__V1__Envelope *env, int timeout_ms,
	     struct ihala_receipt *rc)
{
	uint64_t deadline = deadline_of(c, timeout_ms);
	uint8_t *buf;
	size_t len;
	int err;

	memset(rc, 0, sizeof(*rc));
	c->errmsg[0] = '\0';
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
	len = ihala__v1__envelope__get_packed_size(env);
	buf = malloc(len ? len : 1);
	if (buf == NULL) {
		return IHALA_ENOMEM;
	}
	ihala__v1__envelope__pack(env, buf);
	/* On disk before it leaves this machine. */
	err = localstore_outbox_put(c->ls, env->message_id, buf, len);
	if (err != 0) {
		free(buf);
		return fail(c, err, "cannot store the message in the outbox: %s",
			    ihala_strerror(err));
	}
	c->want_msgid = env->message_id;
	c->got_receipt = 0;
	if (c->state == SESS_OPEN) {
		outbox_send_cb(c, env->message_id, buf, len);
	}
	free(buf);
	/* Opening the session sends the whole outbox, this message included. */
	err = ensure_open(c, deadline);
	c->busy = 0;
	while (err == 0 && !c->got_receipt) {
		uint64_t t = now_ms();

		if (t >= deadline) {
			err = fail(c, IHALA_ETIMEDOUT, "no receipt from the broker in time%s",
				   c->busy ? " (it was busy); the message stays in the outbox" : "");
			break;
		}
		if (c->busy && c->state == SESS_OPEN) {
			/* Back off a little, then offer everything waiting again. */
			c->busy = 0;
			pump(c, 200);
			if (c->state == SESS_OPEN) {
				localstore_outbox_iter(c->ls, outbox_send_cb, c);
			}
			continue;
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
	if (rc->status == IHALA__V1__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED) {
		return fail(c, rc->error != 0 ? rc->error : IHALA_EINTERNAL, "%s", rc->text);
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
	while (err == 0) {
		err = localstore_outbox_count(c->ls, &n);
		if (err != 0 || n == 0 || now_ms() >= deadline) {
			break;
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
		err = fail(c, IHALA_ETIMEDOUT, "%zu message(s) still wait for their receipts", n);
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
	memset(d, 0, sizeof(*d));
}

static int
delivery_fill(struct ihala_delivery *d, uint64_t seq, void *entry, size_t len)
{
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
	if (d->log->kind == IHALA__V1__ENTRY_KIND__ENTRY_KIND_SUBMISSION &&
	    envelope_decode(d->log->envelope.data, d->log->envelope.len, &d->envelope) != 0) {
		d->envelope = NULL;
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
			return delivery_fill(d, seq, entry, len);
		}
		if (now_ms() >= deadline) {
			return fail(c, IHALA_ETIMEDOUT, "no delivery");
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
	Ihala__V1__Frame f = IHALA__V1__FRAME__INIT;
	Ihala__V1__DeliveryAck a = IHALA__V1__DELIVERY_ACK__INIT;
	int err;

	/* Recorded first: if the ack is lost, the repeat is dropped and acked again. */
	err = localstore_inbox_done(c->ls, seq);
	if (err != 0) {
		return fail(c, err, "cannot record delivery %llu: %s", (unsigned long long)seq,
			    ihala_strerror(err));
	}
	a.seq = seq;
	f.kind_case = IHALA__V1__FRAME__KIND_DELIVERY_ACK;
	f.delivery_ack = &a;
	send_frame(c, &f);
	pump(c, 0);
	return 0;
}

/* Send a request frame and wait for the answer with the same request id. */
static int
request(struct ihala_client *c, Ihala__V1__Frame *f, uint64_t req, int timeout_ms,
	Ihala__V1__Frame **out)
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
	err = send_frame(c, f);
	while (err == 0 && c->response == NULL && !c->replay_done && !c->replay_stop) {
		if (now_ms() >= deadline) {
			if (c->replay_cb != NULL) {
				break; /* a replay ends when the broker goes quiet */
			}
			err = fail(c, IHALA_ETIMEDOUT, "no answer from the broker in time");
			break;
		}
		err = pump(c, (long)(deadline - now_ms()));
		if (err == IHALA_EAGAIN) {
			err = 0;
		}
		if (err == 0 && c->state != SESS_OPEN) {
			err = c->refused != 0 ? c->refused
					      : fail(c, IHALA_ECLOSED, "session lost during the request");
		}
	}
	c->want_request = 0;
	if (err != 0) {
		return err;
	}
	if (c->response != NULL && c->response->kind_case == IHALA__V1__FRAME__KIND_ERROR) {
		int code = -(int)c->response->error->code;

		fail(c, code, "%s", c->response->error->message);
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
	    Ihala__V1__ReferralState **out)
{
	Ihala__V1__Frame f = IHALA__V1__FRAME__INIT;
	Ihala__V1__Query q = IHALA__V1__QUERY__INIT;
	Ihala__V1__Frame *ans = NULL;
	int err;

	q.request_id = c->next_request++;
	q.referral_id = (char *)referral_id;
	f.kind_case = IHALA__V1__FRAME__KIND_QUERY;
	f.query = &q;
	err = request(c, &f, q.request_id, timeout_ms, &ans);
	if (err != 0) {
		return err;
	}
	if (ans == NULL || ans->kind_case != IHALA__V1__FRAME__KIND_REFERRAL_STATE) {
		frame_free(ans);
		return fail(c, IHALA_EPROTOCOL, "unexpected answer to a query");
	}
	*out = ans->referral_state;
	ans->referral_state = NULL;
	ans->kind_case = IHALA__V1__FRAME__KIND__NOT_SET;
	frame_free(ans);
	return 0;
}

void
ihala_state_free(Ihala__V1__ReferralState *st)
{
	if (st != NULL) {
		ihala__v1__referral_state__free_unpacked(st, NULL);
	}
}

int
ihala_replay(struct ihala_client *c, uint64_t from, uint64_t to, int follow, ihala_entry_cb cb,
	     void *arg, int timeout_ms)
{
	Ihala__V1__Frame f = IHALA__V1__FRAME__INIT;
	Ihala__V1__ReplayRequest q = IHALA__V1__REPLAY_REQUEST__INIT;
	Ihala__V1__Frame *ans = NULL;
	int err;

	q.request_id = c->next_request++;
	q.from_seq = from;
	q.to_seq = to;
	q.follow = follow;
	f.kind_case = IHALA__V1__FRAME__KIND_REPLAY_REQUEST;
	f.replay_request = &q;
	c->replay_cb = cb;
	c->replay_arg = arg;
	c->replay_stop = 0;
	c->replay_done = 0;
	err = request(c, &f, q.request_id, follow ? 1 << 30 : timeout_ms, &ans);
	c->replay_cb = NULL;
	frame_free(ans);
	if (err == 0 && !c->replay_done && !c->replay_stop && !follow) {
		err = fail(c, IHALA_ETIMEDOUT, "the replay did not finish in time");
	}
	return err;
}

int
ihala_prove(struct ihala_client *c, uint64_t seq, const char *message_id,
	    const char *verifier_key, int timeout_ms, struct ihala_proof *p)
{
	const char *key = verifier_key != NULL ? verifier_key : c->cfg->checkpoint_key;
	Ihala__V1__Frame f = IHALA__V1__FRAME__INIT;
	Ihala__V1__ProofRequest q = IHALA__V1__PROOF_REQUEST__INIT;
	Ihala__V1__Frame *ans = NULL, *cans = NULL;
	const Ihala__V1__InclusionProof *ip;
	uint8_t path[MERKLE_MAX_PATH][MERKLE_HASH_LEN];
	struct checkpoint ck, old;
	enum ckpt_rel rel;
	size_t i;
	int err;

	memset(p, 0, sizeof(*p));
	c->errmsg[0] = '\0';
	if (key == NULL) {
		return fail(c, IHALA_ECONFIG,
			    "no key to verify the broker's checkpoint with: set checkpoint_key in the "
			    "client config to the broker's checkpoint public key (PEM)");
	}
	if (seq == 0 && (message_id == NULL || message_id[0] == '\0')) {
		return fail(c, IHALA_EINVAL, "a seq or a message id is needed");
	}
	q.request_id = c->next_request++;
	if (seq != 0) {
		q.target_case = IHALA__V1__PROOF_REQUEST__TARGET_SEQ;
		q.seq = seq;
	} else {
		q.target_case = IHALA__V1__PROOF_REQUEST__TARGET_MESSAGE_ID;
		q.message_id = (char *)message_id;
	}
	f.kind_case = IHALA__V1__FRAME__KIND_PROOF_REQUEST;
	f.proof_request = &q;
	if ((err = request(c, &f, q.request_id, timeout_ms, &ans)) != 0) {
		return err;
	}
	if (ans == NULL || ans->kind_case != IHALA__V1__FRAME__KIND_INCLUSION_PROOF) {
		err = fail(c, IHALA_EPROTOCOL, "unexpected answer to a proof request");
		goto out;
	}
	ip = ans->inclusion_proof;
	if (ip->seq == 0 || (seq != 0 && ip->seq != seq) || ip->leaf_index != ip->seq - 1 ||
	    ip->leaf_hash.len != MERKLE_HASH_LEN || ip->n_path > MERKLE_MAX_PATH) {
		err = fail(c, IHALA_EPROOF, "the broker's inclusion proof is malformed");
		goto out;
	}
	for (i = 0; i < ip->n_path; i++) {
		if (ip->path[i].len != MERKLE_HASH_LEN) {
			err = fail(c, IHALA_EPROOF, "the broker's inclusion proof is malformed");
			goto out;
		}
		memcpy(path[i], ip->path[i].data, MERKLE_HASH_LEN);
	}
	/* (size, root) only from the signed checkpoint, never from the proof's own fields. */
	if ((err = ckpt_verify(c, key, ip->checkpoint, &ck)) != 0) {
		goto out;
	}
	if (ck.size != ip->tree_size) {
		err = fail(c, IHALA_EPROOF,
			   "the proof is for tree size %llu but its checkpoint is of size %llu",
			   (unsigned long long)ip->tree_size, (unsigned long long)ck.size);
		goto out;
	}
	if ((err = ckpt_compare(c, key, &ck, &old, &rel)) != 0) {
		goto out;
	}
	if (rel == CKPT_NEWER) {
		Ihala__V1__Frame cf = IHALA__V1__FRAME__INIT;
		Ihala__V1__ProofRequest cq = IHALA__V1__PROOF_REQUEST__INIT;

		cq.request_id = c->next_request++;
		cq.tree_size = ck.size;
		cq.consistency_from = old.size;
		cf.kind_case = IHALA__V1__FRAME__KIND_PROOF_REQUEST;
		cf.proof_request = &cq;
		err = request(c, &cf, cq.request_id, timeout_ms, &cans);
		if (err == 0 && (cans == NULL ||
				 cans->kind_case != IHALA__V1__FRAME__KIND_CONSISTENCY_PROOF)) {
			err = fail(c, IHALA_EPROTOCOL, "unexpected answer to a consistency request");
		}
		if (err == 0) {
			err = ckpt_check_proof(c, &old, &ck, cans->consistency_proof);
		}
	}
	if (err == 0 && rel != CKPT_SAME) {
		err = ckpt_keep(c, ip->checkpoint);
	}
	if (err != 0) {
		goto out;
	}
	err = merkle_verify_inclusion(ip->leaf_index, ck.size, ip->leaf_hash.data,
				      (const uint8_t(*)[MERKLE_HASH_LEN])path, ip->n_path, ck.root);
	if (err != 0) {
		err = fail(c, err,
			   "the inclusion proof of seq %llu does not verify against the signed "
			   "checkpoint of size %llu",
			   (unsigned long long)ip->seq, (unsigned long long)ck.size);
		goto out;
	}
	if ((p->checkpoint = strdup(ip->checkpoint)) == NULL) {
		err = IHALA_ENOMEM;
		goto out;
	}
	p->seq = ip->seq;
	p->tree_size = ck.size;
	memcpy(p->leaf_hash, ip->leaf_hash.data, MERKLE_HASH_LEN);
	memcpy(p->root, ck.root, MERKLE_HASH_LEN);
	p->path_len = ip->n_path;
out:
	frame_free(ans);
	frame_free(cans);
	return err;
}
