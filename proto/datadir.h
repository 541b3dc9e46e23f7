/* datadir.h - the private directory of an LMDB store: created 0700, checked, locked. */
#ifndef IHALA_DATADIR_H
#define IHALA_DATADIR_H

enum datadir_mode {
	DATADIR_RDONLY,  /* must exist; nothing created, no mode warning */
	DATADIR_CREATE,  /* created 0700 when missing; its parent must exist */
	DATADIR_PARENTS, /* created 0700 with any missing parents (mkdir -p) */
};

/*
 * Make sure `dir` is a directory this process can use for a store, creating it as `mode`
 * says. A writable directory open to group or others is warned about (it holds survivors'
 * data). `what` names the store in log lines ("store", "local store"). Returns 0,
 * IHALA_EINVAL (path empty or too long) or IHALA_EIO (logged).
 */
int datadir_prepare(const char *what, const char *dir, enum datadir_mode mode);

/*
 * Take an exclusive, non-blocking flock on dir/name (created 0600, close-on-exec), so that
 * one process at a time writes the store. On success *fd holds the lock until closed.
 * Returns 0, IHALA_EAGAIN when another process holds it (not logged: the caller says who),
 * IHALA_EINVAL (path too long) or IHALA_EIO (logged).
 */
int datadir_lock(const char *what, const char *dir, const char *name, int *fd);

/*
 * fsync `dir` and its parent, so that the files just created in it (LMDB's data.mdb: LMDB
 * never syncs a directory) and dir's own name survive a power cut: an fsynced file whose name
 * was never synced can vanish with everything committed to it. Returns 0, IHALA_EINVAL (path
 * too long) or IHALA_EIO (logged).
 */
int datadir_sync(const char *what, const char *dir);

/* The same, with a shared flock when `shared`: any number of shared holders at once, none
 * while an exclusive one holds it (and the other way round). */
int datadir_lock_mode(const char *what, const char *dir, const char *name, int shared, int *fd);

#endif
