/* ledger.h - the broker's ledger: submissions, acks and ticks applied to the store, no threads. */
#ifndef IHALA_LEDGER_H
#define IHALA_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "id.h"
#include "ihala.pb-c.h"
#include "merkle.h"
#include "policy.h"

struct store;
struct checkpoint_signer;

/*
 * A batch of requests is applied in one LMDB write transaction and committed with sync.
 * Refusals are decided before a request writes anything; if a request meets an LMDB error (a
 * full map, say), the batch is done again with each request in its own savepoint, so that
 * only that request is refused. A due checkpoint of what is already on disk is signed into
 * the batch (it never covers an entry not yet synced, and costs no commit of its own).
 * The writer thread (writer.h) is the only caller: one ledger, one thread.
 */

enum wreq_type {
	WREQ_SUBMIT = 1, /* log an envelope: result is the Receipt */
	WREQ_ACK,        /* a recipient acked a delivery: log it, drop it from the queue */
	WREQ_TICK,       /* clock tick: overdue referrals, checkpoint by time */
	WREQ_POLICY,     /* swap the agency table (reload); the old one comes back in `policy` */
	WREQ_STOP,       /* finish and exit the thread (sent back before it exits) */
};

#define WREQ_MAX_NOTIFY 4
/* Acks of one session that arrived together travel as one request. */
#define WREQ_MAX_ACKS 64

struct wreq {
	enum wreq_type type;
	uint64_t session_id;            /* the main thread's session, to route the answer */
	char agency[ID_AGENCY_MAX + 1]; /* the authenticated sender or acker */
	uint64_t now_ms;

	/* WREQ_SUBMIT: the envelope bytes as received (owned by the request) and decoded; the
	 * sealed part (Submit.sealed, owned; NULL and 0 when none), its hash already checked
	 * against env->sealed_sha256 */
	uint8_t *env_bytes;
	size_t env_len;
	Ihala__V2__Envelope *env;
	uint8_t *sealed;
	size_t sealed_len;
	/* Made by wreq_new_submit: env_bytes and sealed are in the request's own block and env
	 * in `arena` (whose first bytes are in that block too), all freed with the request. */
	int own_block;
	struct pb_arena arena;

	/* WREQ_ACK: the seqs acked, in the order they came */
	uint64_t acks[WREQ_MAX_ACKS];
	size_t n_acks;

	/* WREQ_POLICY: in, the new table; out, the old one (main frees it) */
	void *policy;

	/* results */
	int err;        /* 0, or the refusal */
	char text[256]; /* refusal sentence */
	Ihala__V2__ReceiptStatus status;
	uint64_t seq; /* seq logged (or the original for DUPLICATE) */
	uint8_t leaf[MERKLE_HASH_LEN];
	char notify[WREQ_MAX_NOTIFY][ID_AGENCY_MAX + 1]; /* agencies that have new queued entries */
	int n_notify;
	int notify_all; /* more agencies than notify[] holds: look at every agency */
};

/* The agency table and limits the ledger judges submissions by. */
struct writer_policy {
	struct policy_view view;
	void (*release)(struct writer_policy *p); /* frees the table; called by main */
	size_t queue_limit;                       /* per recipient agency */
	uint64_t queue_share;    /* percent of queue_limit one sender may fill (0: all) */
	uint64_t referral_rate;  /* messages per referral per minute (0: no limit) */
	uint64_t referral_bytes; /* envelope bytes per referral (0: no limit) */
	uint64_t deadline_ms[4]; /* indexed by Priority */
	uint64_t retention_ms;   /* erase sealed parts this long after closure (0: never) */
};

/* What the ledger needs; every pointer borrowed for the ledger's life (policy swapped by
 * ledger_swap_policy), except `origin`, which is copied (up to 255 bytes). */
struct ledger_params {
	struct store *store;
	struct writer_policy *policy;
	struct checkpoint_signer *signer; /* NULL: no checkpoints (unless sign is set) */
	/* Checkpoints signed through this instead of `signer` (the broker: its signer process,
	 * signer.h); NULL: through `signer`. Called from the ledger's thread. */
	int (*sign)(void *arg, const char *origin, uint64_t size, const uint8_t root[32],
	            char **text_out);
	void *sign_arg;
	const char *origin;
	uint64_t ckpt_every_entries;
	uint64_t ckpt_every_ms;
	int auto_grow; /* grow the map instead of refusing when it is nearly full */
	/* Submissions are refused while the file system under the store has less free than
	 * this (0: not checked), so acks, broker events and checkpoints still fit. */
	uint64_t disk_reserve;
};

struct ledger;

/* A ledger over params->store; reads the latest checkpoint to know when the next is due.
 * Free with ledger_free. */
int ledger_new(const struct ledger_params *params, struct ledger **out);
void ledger_free(struct ledger *lg);

/* Decide, once per batch, whether the map has room for new submissions (grows it under
 * auto_grow) and the file system under the store has more than disk_reserve free (looked
 * at once a second, every batch when near); when not, submissions are refused with
 * IHALA_ESTOREFULL. */
void ledger_check_room(struct ledger *lg);

/*
 * Apply `batch` (n requests; STOP and POLICY are skipped) in one write transaction and commit
 * it with sync. Each request's result fields are set. Returns 0, or the error of a failed
 * begin or commit, in which case every submission and ack of the batch is refused with it.
 */
int ledger_apply_batch(struct ledger *lg, struct wreq **batch, size_t n);

/* Install `p`; returns the table in force until now (the caller releases it). */
struct writer_policy *ledger_swap_policy(struct ledger *lg, struct writer_policy *p);

/* Sign a checkpoint of everything on disk now, in a transaction of its own (at shutdown). */
void ledger_checkpoint_now(struct ledger *lg, uint64_t t);

/* The writer's cache of referral states (hits: unpacks avoided). */
struct refstate_cache_stats;
void ledger_state_stats(const struct ledger *lg, struct refstate_cache_stats *out);
/* Compare every cached state with the record committed in the store (tests; between batches):
 * 0 when each is byte for byte the same when packed, IHALA_ESTORE (logged) at the first that
 * is not or is missing. *n_checked (may be NULL) gets the number found equal. */
int ledger_state_check(struct ledger *lg, size_t *n_checked);

/* Allocate a zeroed request / free one with what it owns. */
struct wreq *wreq_new(enum wreq_type type);
void wreq_free(struct wreq *r);
/*
 * A WREQ_SUBMIT request in one allocation: room for env_len + 1 envelope bytes (env_bytes),
 * sealed_len bytes of sealed part (sealed; NULL when 0) and the decoded envelope's first
 * bytes (arena: decode into it with envelope_decode_in). The lengths are set; the bytes and
 * env are the caller's to fill. NULL when out of memory.
 */
struct wreq *wreq_new_submit(size_t env_len, size_t sealed_len);

/* merkle_store_ops over a store read view (ctx = struct store_rtxn *). */
extern const struct merkle_store_ops ledger_tree_rops;

#endif
