/* logdb.h - the broker store's on-disk format (log, tree, checkpoints) and a read-only reader. */
#ifndef IHALA_LOGDB_H
#define IHALA_LOGDB_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "dbenv.h"
#include "merkle.h"

/*
 * One LMDB environment in one directory (DESIGN.md §8), format version LOGDB_FORMAT_VERSION
 * in meta "format_version", with the named databases
 *
 *   log         seq (native-endian uint64, MDB_INTEGERKEY) -> LogEntry bytes
 *   node        be64 position of the node in a postorder walk of the tree (see
 *               logdb_node_pos) -> 32-byte Merkle node hash
 *   tree        u8 level || be64 index -> 32-byte Merkle node hash (stores written before
 *               "node": their nodes stay here; and nodes beyond any tree a log can hold)
 *   checkpoint  be64 tree size -> signed note text (1 .. CHECKPOINT_TEXT_MAX bytes)
 *   msgid       sender "\0" message id -> be64 seq
 *   queue       agency "\0" be64 seq -> tag bytes (maybe empty)
 *   referral    referral id -> ReferralState bytes without history (current state, rewritten)
 *               referral id "\0" be64 seq -> HistoryItem bytes (one per event of the referral)
 *   meta        string key -> bytes ("format_version", "created", "qcount:<agency>" ...)
 *   sealed      seq (native-endian uint64, MDB_INTEGERKEY) -> the sealed part of that log
 *               entry (Submit.sealed, DER), absent when it had none or it was erased
 *               (format 2, protocol v2: the entry keeps only its SHA-256, so deleting the
 *               row erases the personal data and leaves the log and its tree whole)
 *   children    parent referral id "\0" child referral id -> "" (onward referrals, for
 *               erasure; format 2)
 *
 * The writer appends the nodes of each leaf in increasing postorder position (the leaf, then
 * the subtrees it completes), so "node" grows at its end only (MDB_APPEND: no page split,
 * pages filled whole). A node not in "node" is looked for in "tree": a store written before
 * keeps its older nodes there, so it needs no migration; an earlier release given a later
 * store would see only those older nodes. A read-only open of a store that has no "node"
 * yet reads "tree" alone.
 *
 * A referral's history is one record per item, keyed after its state record, so that an
 * event writes a bounded number of bytes however long the history is (the key's NUL is in
 * no id). Stores written before that keep the items inside the state record (`history`);
 * the broker reads both and moves a record's items out at the referral's next event. An
 * earlier release given a later store would see only the items in state records.
 *
 * The broker (broker/store.c) writes it and reads it through the functions below; auditors
 * (clients/audit.c) and `ihala-broker --backup` open it read-only with logdb_open, never
 * taking the broker's lock, so they may read a live store or a copy of one. The log key is
 * native-endian, so data.mdb is not portable between byte orders: export, do not ship, it.
 *
 * Pointers into the map (log entries, checkpoint text given to callbacks) are owned by
 * LMDB, must not be modified, and are valid until the transaction ends. Errors: 0 or a
 * negative code from error.h, as in dbenv.h; a record of the wrong shape is IHALA_ESTORE.
 */

#define LOGDB_FORMAT_VERSION 2
#define LOGDB_HASH_LEN MERKLE_HASH_LEN
#define LOGDB_SEQ_LEN 8
#define LOGDB_TREE_KEY_LEN 9
#define LOGDB_NODE_KEY_LEN 8
#define LOGDB_MAXDBS 16
#define LOGDB_MAXREADERS 126
/* Queue counters in meta: "qcount:" + agency -> decimal count. */
#define LOGDB_QCOUNT_PREFIX "qcount:"

struct logdb_dbis {
	MDB_dbi meta, log, tree, node, msgid, queue, referral, checkpoint, sealed, children;
	int has_node; /* "node" exists (always in a writable store) */
};

/*
 * Open the databases in `txn` after checking the format records: with `create`, a new
 * (empty) store gets them all, *fresh is set and the caller writes the format records
 * (logdb_format_init); an existing one gets missing databases created. Without it nothing
 * is created and an empty directory is IHALA_ENOTFOUND. Another format: IHALA_EVERSION.
 */
int logdb_layout(struct dbenv *e, MDB_txn *txn, int create, struct logdb_dbis *d, int *fresh);
int logdb_format_init(struct dbenv *e, MDB_txn *txn, const struct logdb_dbis *d);

/* A read view: a transaction on a broker store. Filled by logdb_begin, or by the broker's
 * store around its own transactions (then `env` and `dbs` are its own). */
struct logdb_txn {
	struct dbenv *env;
	const struct logdb_dbis *dbs;
	MDB_txn *txn;
};

/* ---- read-only open (auditors, backups) ---- */

struct logdb;

/* Open the store in `dir` read-only (no lock, nothing written; it must exist). *out is the
 * caller's, released with logdb_close. IHALA_EIO for an unusable directory, IHALA_ESTORE
 * for one without a store (no data.mdb, or LMDB data without the broker's databases),
 * IHALA_EVERSION for another format, IHALA_ENOTFOUND for an LMDB file with nothing in it. */
int logdb_open(const char *dir, struct logdb **out);
void logdb_close(struct logdb *db);

/* Begin a read snapshot of `db` into *t; end it with logdb_end (keep it short when the
 * store is live: it pins old pages). */
int logdb_begin(struct logdb *db, struct logdb_txn *t);
void logdb_end(struct logdb_txn *t);

/* Compacted, consistent copy into `dir`/data.mdb (see dbenv_backup). */
int logdb_backup(struct logdb *db, const char *dir);

struct logdb_stats {
	uint64_t entries;  /* log entries */
	uint64_t last_seq; /* seq of the last entry, 0 when empty */
	size_t map_size;   /* current map size */
	size_t used_bytes; /* bytes of the map in use */
	size_t page_size;
};
int logdb_stat(const struct logdb_txn *t, struct logdb_stats *st);

/* ---- log ---- */

int logdb_log_get(const struct logdb_txn *t, uint64_t seq, const void **data, size_t *len);
/* The sealed part kept for the entry at `seq`: IHALA_ENOTFOUND when it had none or it was
 * erased. */
int logdb_sealed_get(const struct logdb_txn *t, uint64_t seq, const void **data, size_t *len);
/* *seq = the last seq, 0 when the log is empty. */
int logdb_log_last(const struct logdb_txn *t, uint64_t *seq);

/* A caller-owned cursor over the log in seq order from `from_seq` (0 or 1: the start).
 * next gives IHALA_ENOTFOUND at the end. End it before its transaction ends. */
struct logdb_log_iter {
	struct dbenv *env;
	MDB_cursor *cur;
	uint64_t from;
	int started;
};
int logdb_log_iter_begin(const struct logdb_txn *t, uint64_t from_seq, struct logdb_log_iter *it);
int logdb_log_iter_next(struct logdb_log_iter *it, uint64_t *seq, const void **data, size_t *len);
void logdb_log_iter_end(struct logdb_log_iter *it);
/* The same over the sealed parts (seq -> sealed part), in seq order, from from_seq: a walk of
 * the whole log reads them beside its entries without a lookup each. */
int logdb_sealed_iter_begin(const struct logdb_txn *t, uint64_t from_seq,
                            struct logdb_log_iter *it);

/* ---- tree: level 0 leaves, level L the root of 2^L leaves from index * 2^L ---- */

/*
 * *pos = the position of node (level, index) in the postorder walk of the tree (leaf 0 is 0,
 * leaf 1 is 1, their parent 2, leaf 2 is 3 ...; C2SP tlog's stored hash index), or
 * IHALA_ETOOLARGE when the node covers leaves beyond MERKLE_MAX_SIZE (such a node is in "tree").
 */
int logdb_node_pos(unsigned level, uint64_t index, uint64_t *pos);
/* The key of a node in "tree" (level <= 63, else IHALA_EINVAL), `buf` holding it. */
int logdb_tree_key(unsigned level, uint64_t index, uint8_t buf[LOGDB_TREE_KEY_LEN], MDB_val *k);
int logdb_tree_get(const struct logdb_txn *t, unsigned level, uint64_t index,
                   uint8_t hash[LOGDB_HASH_LEN]);
/* merkle_store_ops' get over a `const struct logdb_txn *` context. */
int logdb_tree_node(void *t, unsigned level, uint64_t index, uint8_t hash[MERKLE_HASH_LEN]);

/* ---- checkpoints: tree size -> signed note ---- */

/* The checkpoint of `size` / of the largest size: *text a NUL-terminated copy the caller
 * frees. */
int logdb_checkpoint_get(const struct logdb_txn *t, uint64_t size, char **text);
int logdb_checkpoint_latest(const struct logdb_txn *t, uint64_t *size, char **text);

/* cb for each checkpoint of size >= from_size in size order; `text` (not NUL-terminated)
 * valid during the call. cb: 0 go on, > 0 stop (0 returned), < 0 stop and return it. */
typedef int (*logdb_checkpoint_cb)(void *arg, uint64_t size, const char *text, size_t len);
int logdb_checkpoint_iter(const struct logdb_txn *t, uint64_t from_size, logdb_checkpoint_cb cb,
                          void *arg);

#endif
