/* client.h - libihala's insides: the client's state, shared by client.c and client_ckpt.c. */
#ifndef IHALA_CLIENT_INT_H
#define IHALA_CLIENT_INT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "checkpoint.h"
#include "ihala.h"
#include "localstore.h"
#include "seal.h"

#define MAX_PENDING 4096
#define MAX_HELD 256 /* deliveries held while the Welcome's checkpoint is checked */
/* The outbox goes out a window at a time: at most this many submissions without receipt (or
 * Welcome.limits.max_inflight if smaller), and this many envelope bytes (or the Welcome's
 * max_inflight_bytes if smaller), one always. */
#define OB_WINDOW 256
#define OB_WINDOW_BYTES (4u * 1024 * 1024)
#define OB_BACKOFF_MS 200   /* first wait after a transient refusal (OVERLOADED) */
#define OB_BACKOFF_MAX 5000 /* doubled up to this */
#define DIRCACHE_MAX 16     /* agencies whose encryption certificate a session keeps */

enum sess_state {
	SESS_NONE,        /* no TLS session */
	SESS_HANDSHAKING, /* ClientHello sent, waiting for Welcome */
	SESS_VERIFYING,   /* Welcome received, its checkpoint awaits a consistency proof */
	SESS_OPEN,        /* Welcome received (and its checkpoint checked) */
};

struct ihala_client {
	const struct client_config *cfg;
	struct localstore *ls;
	SSL_CTX *ssl;
	void *zctx;
	struct wire *w; /* the socket and the TLS session on it; NULL until first needed */
	enum sess_state state;
	int refused;             /* the broker refused this session: code */
	uint64_t frames_dropped; /* frames from the broker that did not decode */
	Ihala__V2__Frame *welcome;
	uint64_t next_request;
	char errmsg[512];
	char *msgids[16]; /* message ids generated for callers' envelopes */
	size_t n_msgids;

	/* the receipt a caller waits for */
	const char *want_msgid;
	int got_receipt;
	int busy; /* a transient refusal came (SHUTTING_DOWN, OVERLOADED): send again later */
	struct ihala_receipt receipt;

	/* the answer a caller waits for, by request id */
	uint64_t want_request;
	Ihala__V2__Frame *response;

	/* replay streaming */
	ihala_entry_cb replay_cb;
	ihala_record_cb replay_rcb; /* instead of replay_cb: with the sealed parts */
	void *replay_arg;
	int replay_stop;
	int replay_done;

	/* deliveries received and stored, not yet handed to the application */
	uint64_t pending[MAX_PENDING];
	size_t n_pending;
	uint64_t nospace_seq;  /* a delivery not stored for a full disk: next_delivery says so */
	uint64_t inbox_cursor; /* inbox scan position for deliveries of earlier runs */
	int inbox_scanned;

	/* checkpoints (cfg->checkpoint_key): see "checkpoints" below */
	struct checkpoint_verifier *ver; /* cached verifier, for ver_key under its name */
	char *ver_key;
	int ckpt_bad;          /* the broker's log contradicts a kept checkpoint: refuse all */
	char ckpt_msg[512];    /* why, repeated by every later call */
	uint64_t gate_request; /* request id of the Welcome check's consistency proof */
	char *gate_text;       /* the Welcome's checkpoint, kept once the proof verifies */
	struct checkpoint gate_old, gate_new;
	Ihala__V2__Frame *held[MAX_HELD]; /* Deliver frames that came during SESS_VERIFYING */
	size_t n_held;

	/* the outbox window (client_outbox_pump): sent this session, no receipt yet */
	uint64_t ob_pos; /* outbox position sent up to */
	struct {
		char id[ID_MAX + 1];
		size_t len;
	} ob_win[OB_WINDOW];
	size_t ob_n, ob_bytes;
	int ob_retry;         /* a transient refusal: the outbox goes again from the start */
	uint64_t ob_retry_at; /* ... once the window is empty and this time (now_ms) passed */
	unsigned ob_backoff_ms;

	/* the largest Submit of this session: the culprit of a FRAME_TOO_LARGE */
	size_t big_size;
	char big_msgid[ID_MAX + 1];
	int drop_socket;   /* the broker ended the session: a new socket (routing id) next */
	int no_deliveries; /* ihala_take_deliveries(c, 0): Deliver frames are left to others */
	void (*on_connecting)(void *arg, const char *endpoint);
	void *on_connecting_arg;

	/* sealed parts (sealing.c) */
	struct seal_keyring *keyring;       /* own keys; NULL: none configured */
	X509 *own_enc;                      /* own newest encryption certificate */
	char own_agency[ID_AGENCY_MAX + 1]; /* the agency own_enc names */
	struct seal_trust *trust;           /* cfg->ca_file (and crl_file): judges recipients */
	struct {
		char agency[ID_AGENCY_MAX + 1];
		X509 *cert;
	} dircache[DIRCACHE_MAX]; /* this session's directory picks */
	size_t n_dircache;
	int seal_pending; /* the outbox may hold records waiting to be sealed for good */
	int resealing;    /* sealing_reseal() runs (no recursion through its requests) */
};

/* The last error's sentence (ihala_errmsg) from fmt; returns err. */
int client_fail(struct ihala_client *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Send one frame in the open session and flush (IHALA_ECLOSED when it is not open). */
int client_send_frame(struct ihala_client *c, const Ihala__V2__Frame *f);

/* Send a request frame and wait for the answer with request id req (*out: frame_free). */
int client_request(struct ihala_client *c, Ihala__V2__Frame *f, uint64_t req, int timeout_ms,
                   Ihala__V2__Frame **out);

/* A Deliver from the broker: into the local inbox (acked again when taken before). */
void client_on_deliver(struct ihala_client *c, const Ihala__V2__Deliver *d);

/* Offer everything in the outbox to the broker again, with its message ids. */
void client_resend_outbox(struct ihala_client *c);
/* Send what the outbox window has room for (called as receipts come and timers pass). */
void client_outbox_pump(struct ihala_client *c);

/*
 * client_ckpt.c. A Welcome came (state OPEN) and a checkpoint key is configured: check its
 * checkpoint before anything goes out. 0: the session may go on now. 1: not yet (state
 * VERIFYING, a consistency proof was asked for; ckpt_gate_answer decides) or not at all
 * (state NONE, c->refused says why).
 */
int ckpt_gate_welcome(struct ihala_client *c);

/* The answer (ConsistencyProof or Error) to ckpt_gate_welcome's request. */
void ckpt_gate_answer(struct ihala_client *c, const Ihala__V2__Frame *f);

/* Free the cached checkpoint verifier. */
void ckpt_release(struct ihala_client *c);

/*
 * sealing.c: the node's side of sealed parts (docs/SEALING.md).
 * sealing_init: load the keyring, own certificate and trust anchors of c->cfg (nothing when
 * encryption_cert is not set); logs and returns IHALA_ECONFIG, IHALA_EKEYPERM, IHALA_ENOMEM.
 * sealing_release frees them; sealing_session_reset forgets the session's directory picks.
 */
int sealing_init(struct ihala_client *c);
void sealing_release(struct ihala_client *c);
void sealing_session_reset(struct ihala_client *c);

/*
 * The outbox record of the full envelope env: an encoded Submit holding the clear part and,
 * when env has personal fields set, their sealed part (validated, sealed to the other party,
 * this agency and the custodians). *rec: new (free()). Refusals with ihala_errmsg: the
 * personal_validate() codes, IHALA_ECERT/IHALA_EREVOKED naming an agency without a valid
 * certificate, IHALA_ECONFIG, transport errors of the directory and query requests.
 */
int sealing_record(struct ihala_client *c, Ihala__V2__Envelope *env, int timeout_ms, uint8_t **rec,
                   size_t *len);

/* Open d's sealed part into d->envelope, or set d->open_err (and queue an Unreadable to the
 * sender when the part cannot be opened or is invalid). */
void sealing_open_delivery(struct ihala_client *c, struct ihala_delivery *d);

/*
 * Offline: a message with personal fields queued while the broker was out of reach (its
 * recipients' certificates unknown) is kept sealed to this node alone, marked, and never sent
 * so (the outbox window stops at it, keeping the order). sealing_reseal() seals such records
 * for good once the broker answers (replacing them in place), or moves them to the rejected
 * list when refused for good. 0, or the transport error that stopped it.
 */
int sealing_record_pending(const void *rec, size_t len);
/* A record of a message too large once sealed (its clear part only, on the rejected list):
 * never sent, refused again when retried. */
int sealing_record_oversize(const void *rec, size_t len);

/* 1 when a record carries a sealed part (sealed for good or to this node alone). */
int sealing_record_sealed(const void *rec, size_t len);

/*
 * The record queued or sent before under env->message_id when it holds the same message
 * (a submission repeated under its id): *rec (free()) to queue again, the same bytes, so the
 * broker answers DUPLICATE with the original seq. IHALA_ENOTFOUND otherwise, and when its sent
 * record is gone (older than sent_keep, or erased): sealed anew it is other bytes, and the
 * broker refuses it MESSAGE_ID_CONFLICT (ihala_submit says why).
 */
int sealing_reuse(struct ihala_client *c, const Ihala__V2__Envelope *env, uint8_t **rec,
                  size_t *len);
int sealing_reseal(struct ihala_client *c, int timeout_ms);

/* A message refused for good: to the rejected list, and the receipt of a caller waiting for
 * it (client.c). */
void client_refuse(struct ihala_client *c, const char *message_id, int code, const char *text);

/* An ERASURE entry: the node's copies of its erased seqs go (durably). 0 or a store error. */
int sealing_erasure(struct ihala_client *c, const Ihala__V2__LogEntry *le);

#endif
