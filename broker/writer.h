/* writer.h - the broker's single writer thread: validates against state, logs, group-commits. */
#ifndef IHALA_WRITER_H
#define IHALA_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "id.h"
#include "ihala.pb-c.h"
#include "merkle.h"
#include "policy.h"

struct store;
struct checkpoint_signer;

/*
 * The main thread sends `struct wreq *` pointers over an inproc PAIR socket; the writer
 * takes everything that is waiting (up to max_batch), applies it in one LMDB write
 * transaction, commits with sync, and only then sends every request back with its result.
 * Refusals are decided before a request writes anything; if a request meets an LMDB error
 * (a full map, say), the batch is done again with each request in its own savepoint, so
 * that only that request is refused. A due checkpoint of what is already on disk is signed
 * into the batch (it never covers an entry not yet synced, and costs no commit of its own).
 * Ownership of a request passes with the pointer: the writer owns it between receive and
 * send-back, the main thread otherwise.
 */

enum wreq_type {
	WREQ_SUBMIT = 1, /* log an envelope: result is the Receipt */
	WREQ_ACK,	 /* a recipient acked a delivery: log it, drop it from the queue */
	WREQ_TICK,	 /* clock tick: overdue referrals, checkpoint by time */
	WREQ_POLICY,	 /* swap the agency table (reload); the old one comes back in `policy` */
	WREQ_STOP,	 /* finish and exit the thread (sent back before it exits) */
};

#define WREQ_MAX_NOTIFY 4
/* Acks of one session that arrived together travel as one request. */
#define WREQ_MAX_ACKS 64

struct wreq {
	enum wreq_type type;
	uint64_t session_id; /* the main thread's session, to route the answer */
	char agency[ID_AGENCY_MAX + 1]; /* the authenticated sender or acker */
	uint64_t now_ms;

	/* WREQ_SUBMIT: the envelope bytes as received (owned by the request) and decoded */
	uint8_t *env_bytes;
	size_t env_len;
	Ihala__V1__Envelope *env;

	/* WREQ_ACK: the seqs acked, in the order they came */
	uint64_t acks[WREQ_MAX_ACKS];
	size_t n_acks;

	/* WREQ_POLICY: in, the new table; out, the old one (main frees it) */
	void *policy;

	/* results */
	int err;		     /* 0, or the refusal */
	char text[256];		     /* refusal sentence */
	Ihala__V1__ReceiptStatus status;
	uint64_t seq;		     /* seq logged (or the original for DUPLICATE) */
	uint8_t leaf[MERKLE_HASH_LEN];
	char notify[WREQ_MAX_NOTIFY][ID_AGENCY_MAX + 1]; /* agencies that have new queued entries */
	int n_notify;
	int notify_all; /* more agencies than notify[] holds: look at every agency */
};

/* What the writer needs; every pointer borrowed for the thread's life (policy swapped by
 * WREQ_POLICY). `policy` points to a struct writer_policy. */
struct writer_policy {
	struct policy_view view;
	void (*release)(struct writer_policy *p); /* frees the table; called by main */
	size_t queue_limit;			  /* per recipient agency */
	uint64_t deadline_ms[4];		  /* indexed by Priority */
};

struct writer_params {
	struct store *store;
	void *zctx;		  /* ZeroMQ context shared with the main thread */
	const char *endpoint;	  /* inproc endpoint the main thread bound (PAIR) */
	struct writer_policy *policy;
	size_t max_batch;
	struct checkpoint_signer *signer; /* NULL: no checkpoints */
	const char *origin;	  /* copied by writer_start (up to 255 bytes) */
	uint64_t ckpt_every_entries;
	uint64_t ckpt_every_ms;
	int auto_grow; /* grow the map instead of refusing when it is nearly full */
};

struct writer;

/* Start the thread; it connects to params->endpoint. */
int writer_start(const struct writer_params *params, struct writer **out);
/* Join the thread (after WREQ_STOP came back) and free. */
void writer_join(struct writer *w);

/* Allocate a zeroed request / free one with what it owns. */
struct wreq *wreq_new(enum wreq_type type);
void wreq_free(struct wreq *r);

/* merkle_store_ops over a store read or write view (ctx = struct store_rtxn* / store_wtxn*). */
extern const struct merkle_store_ops writer_tree_rops;

#endif
