/* dbenv.h - an LMDB environment the project's way: private locked dir, open, errors, format
 * records. */
#ifndef IHALA_DBENV_H
#define IHALA_DBENV_H

#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "datadir.h"

/*
 * What the broker's store (broker/store.c, read-only also proto/logdb.c) and a client node's
 * local store (clients/localstore.c) do alike with LMDB: prepare and lock the directory,
 * open the environment, map LMDB's codes to the project's, read and write values under
 * string keys, and keep the format records ("format_version", "kind", "created") in the
 * database "meta". Each store keeps its own layout and rules.
 *
 * Errors: 0 or a negative code from error.h. LMDB failures map (dbenv_err) to
 * IHALA_ENOTFOUND (MDB_NOTFOUND, not logged), IHALA_ESTOREFULL (MDB_MAP_FULL),
 * IHALA_EAGAIN (MDB_TXN_FULL: commit and retry), IHALA_ENOMEM, IHALA_EIO (EIO),
 * IHALA_ENOSPACE (ENOSPC: the file system is full; the transaction did not happen) or
 * IHALA_ESTORE for anything else; never to IHALA_EINVAL or IHALA_ETOOLARGE, which are left to
 * argument checks, so a caller can tell the two apart.
 */

/* LMDB stores a value's size in 32 bits. */
#define DBENV_MAX_VALUE ((size_t)UINT32_MAX)
/* The format records in "meta" (decimal version, store kind, UTC creation time). */
#define DBENV_META_VERSION "format_version"
#define DBENV_META_KIND "kind"
#define DBENV_META_CREATED "created"

/* One environment. Fields are read by its owner; dbenv_open and dbenv_close set them. */
struct dbenv {
	MDB_env *env;
	const char *who;       /* "store", "local store": starts every log line (static) */
	const char *full_hint; /* what to do when the map is full (static) */
	char *dir;             /* owned copy of the directory */
	size_t maxkey;         /* longest key LMDB takes */
	int lockfd;            /* held flock, -1 when none */
	int map_full;          /* set by dbenv_err on MDB_MAP_FULL; cleared by the owner */
};

struct dbenv_opts {
	enum datadir_mode mode; /* how the directory is prepared (datadir_prepare) */
	const char *lockfile;   /* taken with datadir_lock in the directory; NULL: none */
	int lock_shared;        /* take it shared (several processes at once), not exclusive */
	unsigned flags;         /* mdb_env_open flags (MDB_RDONLY, MDB_NOTLS) */
	unsigned maxdbs;
	unsigned maxreaders; /* 0: LMDB's default */
	size_t mapsize;      /* set before opening (it wins over the recorded one); 0: recorded */
	const char *full_hint;
};

/*
 * Prepare `dir`, lock it when o->lockfile says so, then create and open the environment
 * (files 0600) and clear reader slots left by crashed processes. `who` is a static string.
 * On success *e is the caller's until dbenv_close; on failure it is released already.
 * IHALA_EAGAIN when another process holds the lock (not logged: the caller says who).
 */
int dbenv_open(struct dbenv *e, const char *who, const char *dir, const struct dbenv_opts *o);

/* Close the environment and release the lock. A zeroed or released dbenv is accepted. */
void dbenv_close(struct dbenv *e);

/* 1 when `dir` has no data file yet (or an empty one): a store being created. */
int dbenv_fresh(const char *dir);

/* Map an LMDB code (see above); logs "<who> <dir>: <what>: ..." for all but MDB_NOTFOUND. */
int dbenv_err(struct dbenv *e, int rc, const char *what);

/* Log "damaged <what>" and return IHALA_ESTORE. */
int dbenv_damaged(struct dbenv *e, const char *what);

/* mdb_txn_begin (flags MDB_RDONLY or 0) with the error mapped; *txn NULL on failure. */
int dbenv_begin(struct dbenv *e, MDB_txn *parent, unsigned flags, MDB_txn **txn);

/* mdb_txn_commit (synchronous: no env has a NOSYNC flag); the handle is freed either way. */
int dbenv_commit(struct dbenv *e, MDB_txn *txn, const char *what);

/* Point `k` at the string `key`: non-empty (else IHALA_EINVAL), at most maxkey bytes (else
 * IHALA_ETOOLARGE). */
int dbenv_key(const struct dbenv *e, const char *key, MDB_val *k);

/* The value under string `key`: *v points into the map until the transaction ends. */
int dbenv_get(struct dbenv *e, MDB_txn *txn, MDB_dbi dbi, const char *key, MDB_val *v,
              const char *what);

/* Put `len` bytes under string `key` with mdb_put `flags`; IHALA_ETOOLARGE past LMDB's
 * value limit, IHALA_EINVAL for a NULL value of non-zero length. */
int dbenv_put(struct dbenv *e, MDB_txn *txn, MDB_dbi dbi, const char *key, const void *val,
              size_t len, unsigned flags, const char *what);

/* A malloc'd NUL-terminated copy of a value; the caller frees *text. IHALA_ENOMEM. */
int dbenv_copy_text(const MDB_val *v, char **text);

/* What a store's format records say, and how a refused directory is explained. */
struct dbenv_format {
	unsigned version; /* "format_version" in decimal */
	const char *kind; /* "kind", or NULL when the store has none */
	const char *name; /* "ihala store": what the directory is not, when refused */
	const char *fix;  /* "give the broker an empty or an ihala data directory" */
};

/*
 * Open "meta" in `txn` and check the format records. A store with no "meta" is new when
 * its main database is empty: with `create` "meta" is created and *fresh set (write the
 * records with dbenv_format_init), without it IHALA_ENOTFOUND. Any other format (version,
 * kind, or LMDB data without records) is refused with IHALA_EVERSION, nothing written.
 */
int dbenv_format_open(struct dbenv *e, MDB_txn *txn, const struct dbenv_format *f, int create,
                      MDB_dbi *meta, int *fresh);

/* Write the format records of a new store (version, kind when set, creation time). */
int dbenv_format_init(struct dbenv *e, MDB_txn *txn, MDB_dbi meta, const struct dbenv_format *f);

/* Named databases to open: name, mdb_dbi_open flags, where the handle goes. */
struct dbenv_db {
	const char *name;
	unsigned flags;
	MDB_dbi *dbi;
};

/* Open each database (flags | `create`); one that is missing without MDB_CREATE makes
 * the store damaged (IHALA_ESTORE, logged). */
int dbenv_dbis_open(struct dbenv *e, MDB_txn *txn, const struct dbenv_db *dbs, size_t n,
                    unsigned create);

/*
 * Hot, compacted (MDB_CP_COMPACT), consistent copy of the environment into `dir`/data.mdb
 * (dir created 0700 when missing; an existing data.mdb there is refused with IHALA_EIO).
 * The copy is written 0600 and fsync'ed, and so is the directory entry.
 */
int dbenv_backup(struct dbenv *e, const char *dir);

#endif
