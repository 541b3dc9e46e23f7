/* store.h - the broker's durable store (LMDB): log, dedup, queues, referrals, tree, checkpoints. */
#ifndef IHALA_STORE_H
#define IHALA_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "logdb.h"

/*
 * One LMDB environment in one directory, holding the named databases of
 * DESIGN.md §8. Entries, referral states and meta values are opaque bytes
 * here; the broker encodes them.
 *
 * Threads: one writer thread opens write batches (store_wbegin) and calls
 * store_grow; any thread may open short read transactions (store_rbegin),
 * which the environment allows because it is opened with MDB_NOTLS. A read
 * transaction may be ended by a thread other than the one that began it.
 * Keep read transactions short: an open one pins old pages (the file grows)
 * and makes store_grow wait.
 *
 * Processes: open the store after daemonizing and never use it after fork().
 * A writable store takes an exclusive lock on DIR/ihala.lock, so a second
 * broker (or a second store_open in this process) on the same directory is
 * refused. `mdb_stat`, `mdb_dump` and `mdb_copy` may read a live store.
 *
 * Durability: every store_wcommit is a synchronous LMDB commit; the store
 * never uses MDB_NOSYNC, MDB_NOMETASYNC or MDB_WRITEMAP.
 *
 * Errors: 0 or a negative code from error.h. IHALA_ENOTFOUND for a missing
 * key; IHALA_ESTOREFULL when the map is full (MDB_MAP_FULL); IHALA_EAGAIN
 * when one batch dirtied too many pages (MDB_TXN_FULL: commit and retry);
 * IHALA_EVERSION for a store of another format; IHALA_ETOOLARGE for a key or
 * value past LMDB's limits; IHALA_EINVAL for misuse; from store_wcommit,
 * IHALA_ENOSPACE when the file system is full (the batch did not happen) and
 * IHALA_EIO when the disk failed (never retry: the writer stops); IHALA_ESTORE
 * for any other LMDB failure (logged with mdb_strerror).
 *
 * The on-disk format (database names, keys and values) is proto/logdb.h's,
 * which also reads it read-only for auditors and backups; this module is the
 * only writer.
 *
 * Who owns what: store.c the environment, batches and read transactions; store_log.c the
 * audit record (log, message ids, tree, checkpoints); store_state.c the delivery state
 * (queues, referral states, meta).
 */

struct store;
struct store_wtxn;
struct store_rtxn;
struct store_log_iter;

/* The on-disk format this code reads and writes (meta "format_version"). */
#define STORE_FORMAT_VERSION LOGDB_FORMAT_VERSION

/* Map size used when store_open is given 0. */
#define STORE_DEFAULT_MAPSIZE ((size_t)1 << 30)
/* Cap of automatic growth unless store_set_max_mapsize says otherwise. */
#define STORE_DEFAULT_MAX_MAPSIZE ((size_t)64 << 30)
/* How long store_grow waits for open read transactions to end. */
#define STORE_GROW_WAIT_MS 5000
/* Size of a Merkle tree node hash. */
#define STORE_HASH_LEN LOGDB_HASH_LEN

enum store_flags {
	/* After a write failed with IHALA_ESTOREFULL, the next store_wbegin
	 * doubles the map size (up to the maximum) before it begins. */
	STORE_AUTO_GROW = 0x1,
	/* Open read-only (tests and tools; auditors and backups use
	 * proto/logdb.h): no lock file, no writes, the store must exist. */
	STORE_RDONLY = 0x2,
};

struct store_stats {
	uint64_t entries;   /* log entries */
	uint64_t last_seq;  /* seq of the last entry, 0 when empty */
	size_t map_size;    /* current map size (the store's size limit) */
	size_t max_mapsize; /* cap of automatic growth */
	size_t used_bytes;  /* bytes of the map in use (pages up to the last one used) */
	size_t page_size;
	/* Key and value bytes this process's write batches have handed to LMDB since
	 * store_open (aborted ones included): what the writes cost, not the file's size. */
	uint64_t put_bytes;
	/* Tree nodes read back from the store (store_tree_get, any thread) since store_open:
	 * the writer's appends read none (tests/unit/ledger_test.c). */
	uint64_t tree_gets;
};

/* ---- environment ---- */

/*
 * Open (creating when missing, mode 0700) the store in `dir`. `mapsize` is
 * the map size in bytes (0: STORE_DEFAULT_MAPSIZE); an existing store
 * keeps its recorded size when that is larger (e.g. after store_grow;
 * LMDB records a new size with the next write commit). `flags` is a set of store_flags.
 * A new store gets meta "format_version" = "2" and "created"; a store of any
 * other format version is refused with IHALA_EVERSION and left untouched.
 * On success *out is the caller's, to be released with store_close.
 */
int store_open(const char *dir, size_t mapsize, unsigned flags, struct store **out);

/* Close the store. Every transaction and iterator must have ended (an open
 * write batch is aborted with a warning). NULL is accepted. */
void store_close(struct store *s);

/* Set the cap of automatic growth (bytes, rounded up to the page size). */
void store_set_max_mapsize(struct store *s, size_t max);

/*
 * Grow the map to `new_mapsize` bytes (rounded up to the page size; smaller
 * than the current size: IHALA_EINVAL; equal: no-op). Writer thread only,
 * with no write batch open. New read transactions wait while it runs; if
 * open ones do not end within STORE_GROW_WAIT_MS it gives up with
 * IHALA_EAGAIN. Not bounded by the automatic-growth cap: the caller decides.
 */
int store_grow(struct store *s, size_t new_mapsize);

/* Double the map size, capped by the maximum: 0 when it grew,
 * IHALA_ESTOREFULL when already at the cap, or store_grow's errors.
 * store_wbegin calls it by itself under STORE_AUTO_GROW. */
int store_grow_auto(struct store *s);

/*
 * Hot, compacted (MDB_CP_COMPACT), consistent copy of the store into
 * `dir`/data.mdb (dir created 0700 when missing; an existing data.mdb there
 * is refused). The copy is written 0600 and fsync'ed; store_open reads it.
 */
int store_backup(struct store *s, const char *dir);

/* Bytes free for this process on the file system under the store's directory (statvfs's
 * f_bavail): 0 or IHALA_EIO (logged). */
int store_disk_free(struct store *s, uint64_t *bytes);

/* Fill *st (a short read transaction inside). */
int store_stat(struct store *s, struct store_stats *st);

/* ---- write batches (writer thread only) ---- */

/*
 * Begin a write batch (one LMDB write transaction; one at a time). All the
 * write operations below take the batch or one of its sub-batches. The
 * handle is freed by store_wcommit or store_wabort.
 */
int store_wbegin(struct store *s, struct store_wtxn **w);

/* Commit the batch with a synchronous flush, then free it. Only when this
 * returns 0 is the batch durable (send receipts after, never before). A
 * batch on which an operation failed with an LMDB error is aborted and
 * that error returned. Any sub-batch or iterator still open is a bug: the
 * batch is aborted and IHALA_EINTERNAL returned. */
int store_wcommit(struct store_wtxn *w);

/* Abort the batch and free it (with its open sub-batches). NULL accepted. */
void store_wabort(struct store_wtxn *w);

/*
 * Savepoints: begin a sub-batch (an LMDB nested transaction) of `parent`.
 * While it is open, `parent` must not be used. store_wsub_commit folds it
 * into the parent (durable only when the top batch commits);
 * store_wsub_abort undoes just it, including the seqs it assigned. Both
 * free the child handle. Sub-batches nest.
 */
int store_wsub_begin(struct store_wtxn *parent, struct store_wtxn **child);
int store_wsub_commit(struct store_wtxn *child);
void store_wsub_abort(struct store_wtxn *child);

/* The read view of a (sub-)batch: read functions given it see the batch's
 * own writes. Valid until the batch ends; not to be passed to store_rend. */
struct store_rtxn *store_wread(struct store_wtxn *w);

/* ---- read transactions ---- */

/* Begin a short read-only snapshot; end it with store_rend. */
int store_rbegin(struct store *s, struct store_rtxn **r);

/* End a read transaction begun by store_rbegin (any thread). Every pointer
 * it returned becomes invalid. NULL accepted. */
void store_rend(struct store_rtxn *r);

/*
 * Pointers returned by the *_get functions below point into the database
 * map, as with mdb_get: the memory is owned by the store, must not be
 * modified, and is valid only until the read transaction ends or, on the
 * read view of a batch, until the next write operation on that batch.
 */

/* ---- log: seq (1, 2, ...) -> entry bytes ---- */

/* Append an entry (1 .. 4 GiB - 1 bytes); *seq_out (may be NULL) gets its
 * seq, which is the last seq + 1 (seqs start at 1). */
/* The seq the next store_log_append in this batch will assign. */
uint64_t store_log_next(struct store_wtxn *w);
int store_log_append(struct store_wtxn *w, const void *entry, size_t len, uint64_t *seq_out);
int store_log_get(struct store_rtxn *r, uint64_t seq, const void **data, size_t *len);
/* *seq = the last seq, 0 when the log is empty. */
int store_log_last(struct store_rtxn *r, uint64_t *seq);

/*
 * Iterate the log in seq order from `from_seq` (0 or 1: from the start).
 * store_log_iter_next returns 0 with the next entry (pointers as for
 * store_log_get) or IHALA_ENOTFOUND at the end. End every iterator with
 * store_log_iter_end before its transaction ends; an iterator outliving
 * its transaction only fails with IHALA_EINVAL until it is ended.
 */
int store_log_iter_begin(struct store_rtxn *r, uint64_t from_seq, struct store_log_iter **it);
int store_log_iter_next(struct store_log_iter *it, uint64_t *seq, const void **data, size_t *len);
void store_log_iter_end(struct store_log_iter *it);

/* ---- sealed: seq -> the entry's sealed part (protocol v2), deletable ---- */

/*
 * The sealed part of the entry at `seq` (Submit.sealed, 1 .. 4 GiB - 1 bytes), put in the
 * batch that appends the entry; never replaced (IHALA_EINCONSISTENT). The entry keeps its
 * SHA-256, so store_sealed_del erases the personal data and leaves the log and the tree
 * whole. store_sealed_get: IHALA_ENOTFOUND when the entry had none or it was erased;
 * store_sealed_del: IHALA_ENOTFOUND when there was none.
 */
int store_sealed_put(struct store_wtxn *w, uint64_t seq, const void *data, size_t len);
int store_sealed_get(struct store_rtxn *r, uint64_t seq, const void **data, size_t *len);
int store_sealed_del(struct store_wtxn *w, uint64_t seq);

/* ---- msgid: (sender agency, message id) -> seq, dedup per sender ---- */

/* IHALA_EMSGID if the pair already maps to another seq (same seq: 0).
 * sender and msgid are non-empty C strings, together at most ~500 bytes. */
int store_msgid_put(struct store_wtxn *w, const char *sender, const char *msgid, uint64_t seq);
int store_msgid_get(struct store_rtxn *r, const char *sender, const char *msgid, uint64_t *seq);

/* ---- queue: undelivered seqs per recipient agency ---- */

/* Queue `seq` (an existing log seq) for `agency`; IHALA_EINVAL if already
 * queued. The per-agency counter is updated in the same transaction. */
int store_queue_put(struct store_wtxn *w, const char *agency, uint64_t seq);
/* Remove it; IHALA_ENOTFOUND if it was not queued. */
int store_queue_del(struct store_wtxn *w, const char *agency, uint64_t seq);

/* Longest tag a queued seq may carry. */
#define STORE_QUEUE_TAG_MAX 256
/*
 * The same with a tag: up to STORE_QUEUE_TAG_MAX bytes the caller keeps with
 * the queued seq (the broker: what the entry is about, so that its ack needs
 * no decoding of the entry), given back by store_queue_take. A seq queued
 * without a tag (store_queue_put) is taken with *tag_len 0.
 */
int store_queue_put_tagged(struct store_wtxn *w, const char *agency, uint64_t seq, const void *tag,
                           size_t tag_len);
int store_queue_take(struct store_wtxn *w, const char *agency, uint64_t seq, void *tag,
                     size_t tag_cap, size_t *tag_len);
/* Number of seqs queued for `agency` (one key lookup). */
int store_queue_count(struct store_rtxn *r, const char *agency, size_t *n);

/*
 * Call cb(arg, seq) for each seq queued for `agency` that is >= from_seq,
 * in seq order. cb returns 0 to go on, > 0 to stop (store_queue_iter then
 * returns 0), < 0 to stop and have store_queue_iter return that value.
 * cb may call read functions on `r` but must not write through its batch.
 */
typedef int (*store_queue_cb)(void *arg, uint64_t seq);
int store_queue_iter(struct store_rtxn *r, const char *agency, uint64_t from_seq, store_queue_cb cb,
                     void *arg);

/* ---- referral: referral id -> current state bytes (overwritten; no history: see below) ---- */

int store_referral_put(struct store_wtxn *w, const char *referral_id, const void *state,
                       size_t len);
int store_referral_get(struct store_rtxn *r, const char *referral_id, const void **state,
                       size_t *len);

/*
 * ---- history: (referral id, seq) -> one history item's bytes ----
 *
 * A referral's history is one record per event, so adding one writes a few dozen bytes
 * whatever the length of the history (the state record above holds no history). A put at
 * a stored (id, seq) replaces the item. store_history_iter calls cb(arg, seq, item, len)
 * for each item of `referral_id` in seq order (`item` points into the map, valid during
 * the call); cb returns as for store_queue_iter. An id the key cannot hold (with its
 * 9 more bytes) is IHALA_ETOOLARGE.
 */
int store_history_put(struct store_wtxn *w, const char *referral_id, uint64_t seq, const void *item,
                      size_t len);
typedef int (*store_history_cb)(void *arg, uint64_t seq, const void *item, size_t len);
int store_history_iter(struct store_rtxn *r, const char *referral_id, store_history_cb cb,
                       void *arg);

/*
 * ---- children: a referral's onward referrals (for erasure) ----
 *
 * store_child_put records that `child` continues `parent` (put again: no change).
 * store_children_iter calls cb(arg, child) for each of parent's, in byte order of their ids
 * (`child` valid during the call); cb returns as for store_queue_iter.
 */
int store_child_put(struct store_wtxn *w, const char *parent, const char *child);
typedef int (*store_child_cb)(void *arg, const char *child);
int store_children_iter(struct store_rtxn *r, const char *parent, store_child_cb cb, void *arg);

/* ---- tree: (level, index) -> 32-byte Merkle node hash ---- */

/*
 * Level 0 holds leaf hashes (index = leaf index, 0-based), level L the root
 * of the complete subtree over leaves [index * 2^L, (index + 1) * 2^L).
 * Such nodes never change: putting a different hash at a stored position
 * is refused with IHALA_EINCONSISTENT (the same hash: 0). level <= 63.
 */
int store_tree_put(struct store_wtxn *w, unsigned level, uint64_t index,
                   const uint8_t hash[STORE_HASH_LEN]);
int store_tree_get(struct store_rtxn *r, unsigned level, uint64_t index,
                   uint8_t hash[STORE_HASH_LEN]);

/* ---- checkpoint: tree size -> signed note text ---- */

/*
 * Store the signed checkpoint of tree size `size` (<= the last seq in the
 * batch, so never ahead of the log; text 1 .. CHECKPOINT_TEXT_MAX bytes).
 * A checkpoint is never replaced: a different text for a stored size is
 * refused with IHALA_EINCONSISTENT (the same text: 0).
 */
int store_checkpoint_put(struct store_wtxn *w, uint64_t size, const char *text);
/* The checkpoint of `size`, or the one of the largest size. *text is a
 * NUL-terminated copy the caller frees with free(). */
int store_checkpoint_get(struct store_rtxn *r, uint64_t size, char **text);
int store_checkpoint_latest(struct store_rtxn *r, uint64_t *size, char **text);

/*
 * Call cb(arg, size, text, len) for each stored checkpoint of size >=
 * from_size, in size order (auditors verify them all). `text` points into
 * the map (not NUL-terminated), valid only during the call. cb returns as
 * for store_queue_iter: 0 go on, > 0 stop (then 0 is returned), < 0 stop
 * and return that value.
 */
typedef logdb_checkpoint_cb store_checkpoint_cb;
int store_checkpoint_iter(struct store_rtxn *r, uint64_t from_size, store_checkpoint_cb cb,
                          void *arg);

/* ---- meta: string key -> bytes ---- */

/* Keys "format_version", "created" and "qcount:*" belong to the store and
 * are refused (IHALA_EINVAL) by store_meta_put; store_meta_get reads all. */
int store_meta_put(struct store_wtxn *w, const char *key, const void *val, size_t len);
int store_meta_get(struct store_rtxn *r, const char *key, const void **val, size_t *len);
/* Delete a key (the store's own keys are refused); IHALA_ENOTFOUND if absent. */
int store_meta_del(struct store_wtxn *w, const char *key);
/* Copy into `key` (NUL-terminated, `size` bytes) the first key in byte
 * order that starts with `prefix` (non-empty): an ordered index, e.g. of
 * deadlines under "deadline:<zero-padded time>:". IHALA_ENOTFOUND if none,
 * IHALA_ETOOLARGE if it does not fit. */
int store_meta_first(struct store_rtxn *r, const char *prefix, char *key, size_t size);

#endif
