/* localstore.h - a client node's durable local store (LMDB): outbox, inbox, last checkpoint. */
#ifndef IHALA_LOCALSTORE_H
#define IHALA_LOCALSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"

/*
 * One LMDB environment in the node's data_dir (DESIGN.md §9). Messages are
 * opaque bytes here; libihala encodes them.
 *
 * Durability: every function that writes is one synchronous LMDB commit of
 * its own; when it returns 0 the change is on disk. The store never uses
 * MDB_NOSYNC, MDB_NOMETASYNC or MDB_WRITEMAP. A function that fails leaves
 * the store as it was.
 *
 * Processes: any number at a time per data dir (LMDB is safe across
 * processes; writes are serialized by LMDB). localstore_open takes a shared
 * flock on DIR/ihala-client.lock (close-on-exec): a program that takes it
 * exclusively (a backup, a move) keeps the clients out, and the other way
 * round (IHALA_EIO). One process opens a data dir once: a second opener in
 * the same process is refused with IHALA_EIO. Never use a store after fork():
 * open it in the child (a child that only execs is fine).
 *
 * Threads: every function runs its own short LMDB transaction, none spans
 * a call (localstore_outbox_iter ends its transaction before each callback),
 * so calls from several threads are safe; writes are serialized. Only
 * localstore_close must not run concurrently with anything else.
 *
 * Errors: 0 or a negative code from error.h. IHALA_EINVAL for bad arguments,
 * IHALA_ENOTFOUND as documented, IHALA_ESTOREFULL when the map is full
 * (MDB_MAP_FULL), IHALA_EAGAIN when one transaction is too large for LMDB
 * (MDB_TXN_FULL), IHALA_ETOOLARGE for a value past LMDB's 4 GiB limit,
 * IHALA_ENOMEM, IHALA_EVERSION for a data dir of another format, IHALA_EIO
 * for directory and lock failures, IHALA_ESTORE for any other LMDB failure or
 * damaged record (logged with log_warnx, naming mdb_strerror when LMDB said).
 */

struct localstore;

/* The on-disk format this code reads and writes (meta "format_version"). */
#define LOCALSTORE_FORMAT_VERSION 1
/* Size of the LMDB map: the store's size limit. */
#define LOCALSTORE_MAPSIZE ((size_t)256 << 20)
/* Message ids: 1 .. 64 printable ASCII characters without spaces (as the
 * broker requires of Envelope.message_id). */
#define LOCALSTORE_MAX_MSGID 64

/* ---- environment ---- */

/*
 * Open the store in `dir`, creating the directory and its missing parents
 * (mode 0700) and a new store when there is none. A new store gets meta
 * "format_version" = "1"; a store of any other version, or an LMDB
 * environment that is not an ihala client store, is refused with
 * IHALA_EVERSION and left untouched. A data dir held by another opener:
 * IHALA_EIO. `dir` is copied. On success *out is the caller's, to be
 * released with localstore_close; on failure *out is NULL.
 */
int localstore_open(const char *dir, struct localstore **out);

/* Close the store and release the lock. NULL is accepted. */
void localstore_close(struct localstore *ls);

/*
 * Take the node's inbox: an exclusive flock on DIR/ihala-inbox.lock, held
 * until localstore_close, so that one process at a time takes deliveries
 * (idempotent). IHALA_EAGAIN when another opener holds it, IHALA_EIO.
 */
int localstore_inbox_lock(struct localstore *ls);

/* ---- outbox: message_id -> encoded Envelope, kept until its receipt arrives ---- */

/*
 * Queue `env` (len bytes, 1 .. 4 GiB - 66) under `message_id` (a
 * NUL-terminated id, see LOCALSTORE_MAX_MSGID). Both are copied. If the id
 * is already queued: 0 when the bytes are the same (nothing changes, the
 * entry keeps its place), IHALA_EMSGID when they differ.
 */
int localstore_outbox_put(struct localstore *ls, const char *message_id, const void *env,
                          size_t len);

/* Replace the bytes queued under `message_id`, keeping its place in the outbox (a message
 * sealed for good after it was queued); IHALA_ENOTFOUND if it is not queued. */
int localstore_outbox_replace(struct localstore *ls, const char *message_id, const void *env,
                              size_t len);

/* A copy of what is queued under `message_id`: *env malloc'd (free()), *len bytes;
 * IHALA_ENOTFOUND when it is not queued. */
int localstore_outbox_get(struct localstore *ls, const char *message_id, void **env, size_t *len);

/*
 * The broker logged `message_id` as `seq` at wall time now_ms: its record leaves the outbox for
 * the sent list (one commit), so the same message submitted again under its id is the same
 * bytes (DUPLICATE), for keep_ms after this first receipt of the seq (a later receipt of the
 * same seq, a DUPLICATE, does not make it younger); keep_ms 0: not kept at all. A sent record
 * of the same id is replaced (keep_ms 0: dropped). In the same commit, at most
 * LOCALSTORE_PRUNE_STEP of the records older than keep_ms go (localstore_sent_prune).
 * IHALA_ENOTFOUND when it is not queued.
 */
int localstore_outbox_sent(struct localstore *ls, const char *message_id, uint64_t seq,
                           uint64_t now_ms, uint64_t keep_ms);

/* The sent record of `message_id` (as localstore_outbox_get) and its seq (may be NULL). */
int localstore_sent_get(struct localstore *ls, const char *message_id, void **env, size_t *len,
                        uint64_t *seq);

/*
 * Drop the sent records whose first receipt is older than keep_ms at wall time now_ms, oldest
 * first, LOCALSTORE_PRUNE_BATCH a commit (no write at all when none is); *pruned (may be NULL)
 * = how many. A message sent again after its record went is sealed anew: other bytes, so the
 * broker refuses it MESSAGE_ID_CONFLICT (libihala says why). Erased records are gone already.
 */
int localstore_sent_prune(struct localstore *ls, uint64_t now_ms, uint64_t keep_ms, size_t *pruned);
/* Sent records localstore_sent_prune drops a commit, and localstore_outbox_sent with each
 * receipt. */
#define LOCALSTORE_PRUNE_BATCH 256
#define LOCALSTORE_PRUNE_STEP 16

/* Remove the entry of `message_id`; IHALA_ENOTFOUND if it is not queued. */
int localstore_outbox_del(struct localstore *ls, const char *message_id);

/*
 * Call cb for each queued entry, oldest put first, until cb returns
 * non-zero; that value is then returned (0 when cb always returned 0 or
 * the outbox is empty). `message_id` (NUL-terminated) and `env` point to
 * copies owned by localstore_outbox_iter, valid only during that callback.
 * No transaction is open during a callback: cb may call any localstore
 * function, including localstore_outbox_del of its own entry. Entries put
 * after the iteration began are not visited; entries deleted before they
 * are reached are skipped.
 */
typedef int (*localstore_outbox_cb)(void *arg, const char *message_id, const void *env, size_t len);
int localstore_outbox_iter(struct localstore *ls, localstore_outbox_cb cb, void *arg);
/*
 * The same, from the entry after position *pos (0: the first), and *pos is left at the last
 * entry cb returned 0 for: the entry cb stopped at (non-zero) is visited again by the next
 * call. Positions only grow; a caller keeps one to send an outbox a window at a time.
 */
int localstore_outbox_iter_from(struct localstore *ls, uint64_t *pos, localstore_outbox_cb cb,
                                void *arg);

/* *n = the number of queued entries. */
int localstore_outbox_count(struct localstore *ls, size_t *n);

/* ---- rejected: messages refused for good, out of the outbox ---- */

/*
 * Move the outbox entry of `message_id` into the rejected list, with the
 * refusal's negative code, `text` (NUL-terminated, may be NULL, first 1024
 * bytes kept) and the wall time it happened, in one commit: it is no longer
 * sent, and the entries behind it are not held up. IHALA_ENOTFOUND when it
 * is not queued. A rejected entry of the same id is replaced.
 */
int localstore_outbox_reject(struct localstore *ls, const char *message_id, int code,
                             const char *text, uint64_t time_ms);

/* One rejected message, as localstore_rejected_iter shows it. Every pointer is
 * valid only during the callback; text is not NUL-terminated (text_len). */
struct localstore_rejected {
	const char *message_id;
	int code;
	uint64_t time_ms;
	const char *text;
	size_t text_len;
	const void *env;
	size_t env_len;
};

/*
 * Call cb for each rejected message in message id order until cb returns
 * non-zero (that value is returned). A read transaction is open during the
 * callbacks: cb must not call localstore functions that write.
 */
typedef int (*localstore_rejected_cb)(void *arg, const struct localstore_rejected *r);
int localstore_rejected_iter(struct localstore *ls, localstore_rejected_cb cb, void *arg);

/* *n = the number of rejected messages. */
int localstore_rejected_count(struct localstore *ls, size_t *n);

/* Put a rejected message back at the end of the outbox (it goes with the next
 * flush); IHALA_ENOTFOUND when there is none of that id, IHALA_EMSGID when
 * the outbox holds other bytes under the id. */
int localstore_rejected_retry(struct localstore *ls, const char *message_id);

/* Forget a rejected message for good; IHALA_ENOTFOUND when there is none. */
int localstore_rejected_del(struct localstore *ls, const char *message_id);

/* ---- inbox: deliveries by broker seq ---- */

/*
 * absent -> PENDING (stored, not yet processed by the application) -> DONE
 * (processed; the broker may or may not have our ack). The bytes of a DONE
 * entry are dropped; its seq is remembered for good, so a redelivery is
 * recognized.
 */
enum localstore_inbox_state {
	LOCALSTORE_ABSENT = 0,
	LOCALSTORE_PENDING = 1,
	LOCALSTORE_DONE = 2,
};

/*
 * Store `entry` (len bytes, 1 .. 4 GiB - 1, copied) for `seq` (>= 1) as
 * PENDING when the seq is absent. *prev (may be NULL) gets the state
 * before the call; when it is PENDING or DONE nothing changed. A PENDING
 * seq offered with different bytes is refused with IHALA_EINCONSISTENT
 * (logged as a security event: a log entry never changes), *prev PENDING.
 * DONE entries have no bytes left to compare.
 */
int localstore_inbox_put(struct localstore *ls, uint64_t seq, const void *entry, size_t len,
                         enum localstore_inbox_state *prev);

/* The same with the entry's sealed part (sealed_len bytes, 0: none), kept beside it until the
 * entry is DONE or erased. Only the entry's bytes are compared on a redelivery (the broker
 * sends an erased entry without its sealed part). */
int localstore_inbox_put_sealed(struct localstore *ls, uint64_t seq, const void *entry, size_t len,
                                const void *sealed, size_t sealed_len,
                                enum localstore_inbox_state *prev);

/* The sealed part of PENDING `seq`: *sealed malloc'd (free()), *len bytes; IHALA_ENOTFOUND
 * when it has none (never had, DONE, or erased). */
int localstore_inbox_sealed(struct localstore *ls, uint64_t seq, void **sealed, size_t *len);

/*
 * Erasure (issue 16): in one commit, drop the sealed parts of the inbox entries of seqs[0..n),
 * the sent records of those seqs and the journal records of those seqs (of any referral). *erased
 * (may be NULL): how many rows went. Idempotent.
 */
int localstore_erase_seqs(struct localstore *ls, const uint64_t *seqs, size_t n, size_t *erased);

/* Mark `seq` DONE and drop its bytes. Idempotent (DONE already: 0, no
 * write); IHALA_ENOTFOUND for a seq never put. */
int localstore_inbox_done(struct localstore *ls, uint64_t seq);

/* *st = the state of `seq` (>= 1); an unknown seq is LOCALSTORE_ABSENT (0). */
int localstore_inbox_state(struct localstore *ls, uint64_t seq, enum localstore_inbox_state *st);

/*
 * The PENDING entry with the smallest seq > `after` (0: from the start):
 * 0 with *seq, and in *entry / *len a malloc'd copy of its bytes that the
 * caller frees with free(); IHALA_ENOTFOUND when there is none (outputs
 * untouched).
 */
int localstore_inbox_next_pending(struct localstore *ls, uint64_t after, uint64_t *seq,
                                  void **entry, size_t *len);

/* ---- the last verified checkpoint this node saw (signed-note text) ---- */

/* Replace it with `text` (NUL-terminated, 1 .. CHECKPOINT_TEXT_MAX
 * bytes, copied; longer: IHALA_ETOOLARGE). */
int localstore_checkpoint_put(struct localstore *ls, const char *text);

/* *text = a NUL-terminated malloc'd copy the caller frees with free();
 * IHALA_ENOTFOUND if none was ever put. */
int localstore_checkpoint_get(struct localstore *ls, char **text);

/* ---- journal: the entries this node sent (with their receipt's seq) and took from its
 * inbox, as JSON text, per referral; `ihala status` and `ihala list` read it ---- */

/* Store `json` (NUL-terminated, copied) for (referral_id, seq >= 1), replacing what was
 * there. */
int localstore_journal_put(struct localstore *ls, const char *referral_id, uint64_t seq,
                           const char *json);

/* The same for binary records (a sealed JSON text): n bytes, 1 .. 4 GiB. */
int localstore_journal_put_bytes(struct localstore *ls, const char *referral_id, uint64_t seq,
                                 const void *data, size_t n);

/*
 * Call cb for each record in (referral id, seq) order; only those of `referral_id` when it
 * is not NULL. `rid` and `json` are NUL-terminated copies valid during the callback. A read
 * transaction is open during the callbacks: cb must not call localstore functions. A
 * non-zero return of cb stops the walk and is returned.
 */
typedef int (*localstore_journal_cb)(void *arg, const char *rid, uint64_t seq, const char *json);
int localstore_journal_iter(struct localstore *ls, const char *referral_id,
                            localstore_journal_cb cb, void *arg);
/* The same with each record's length (data is also NUL-terminated). */
typedef int (*localstore_journal_bytes_cb)(void *arg, const char *rid, uint64_t seq,
                                           const void *data, size_t len);
int localstore_journal_iter_bytes(struct localstore *ls, const char *referral_id,
                                  localstore_journal_bytes_cb cb, void *arg);

#endif
