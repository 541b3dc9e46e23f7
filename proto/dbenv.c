/* dbenv.c - the LMDB plumbing the broker store and a node's local store share. */
#include "dbenv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "log.h"

int
dbenv_err(struct dbenv *e, int rc, const char *what)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return IHALA_ENOTFOUND;
	case MDB_MAP_FULL:
		e->map_full = 1;
		log_warnx("%s %s: %s: the store is full (MDB_MAP_FULL); %s", e->who, e->dir, what,
		          e->full_hint != NULL ? e->full_hint : "it must be grown");
		return IHALA_ESTOREFULL;
	case MDB_TXN_FULL:
		log_warnx("%s %s: %s: transaction too large (%s); commit it and retry", e->who,
		          e->dir, what, mdb_strerror(rc));
		return IHALA_EAGAIN;
	case ENOMEM:
		log_warnx("%s %s: %s: %s", e->who, e->dir, what, mdb_strerror(rc));
		return IHALA_ENOMEM;
	case EIO:
		log_warnx("%s %s: %s: %s: the disk failed", e->who, e->dir, what, mdb_strerror(rc));
		return IHALA_EIO;
	case ENOSPC:
		/* Nothing of the transaction counts (LMDB writes the meta page last): the
		 * caller may refuse what it carried and go on. */
		log_warnx("%s %s: %s: %s: no space left on the disk under it", e->who, e->dir, what,
		          mdb_strerror(rc));
		return IHALA_ENOSPACE;
	case MDB_MAP_RESIZED:
		log_warnx("%s %s: %s: %s (another process grew the store; restart this one)",
		          e->who, e->dir, what, mdb_strerror(rc));
		return IHALA_ESTORE;
	default:
		log_warnx("%s %s: %s: %s", e->who, e->dir, what, mdb_strerror(rc));
		return IHALA_ESTORE;
	}
}

int
dbenv_damaged(struct dbenv *e, const char *what)
{
	log_warnx("%s %s: damaged %s; restore the data dir from a backup", e->who, e->dir, what);
	return IHALA_ESTORE;
}

int
dbenv_fresh(const char *dir)
{
	char path[PATH_MAX];
	struct stat sb;
	int n;

	n = snprintf(path, sizeof(path), "%s/data.mdb", dir);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		return 0;
	}
	return stat(path, &sb) != 0 || sb.st_size == 0;
}

int
dbenv_open(struct dbenv *e, const char *who, const char *dir, const struct dbenv_opts *o)
{
	int rc, err, dead;

	memset(e, 0, sizeof(*e));
	e->lockfd = -1;
	e->who = who;
	e->full_hint = o->full_hint;
	if ((e->dir = strdup(dir)) == NULL) {
		return IHALA_ENOMEM;
	}
	if ((err = datadir_prepare(who, dir, o->mode)) < 0) {
		goto fail;
	}
	if (o->lockfile != NULL &&
	    (err = datadir_lock_mode(who, e->dir, o->lockfile, o->lock_shared, &e->lockfd)) < 0) {
		goto fail;
	}
	if ((rc = mdb_env_create(&e->env)) != 0) {
		e->env = NULL;
		err = dbenv_err(e, rc, "creating the environment");
		goto fail;
	}
	if ((rc = mdb_env_set_maxdbs(e->env, o->maxdbs)) != 0 ||
	    (o->maxreaders != 0 && (rc = mdb_env_set_maxreaders(e->env, o->maxreaders)) != 0) ||
	    (o->mapsize != 0 && (rc = mdb_env_set_mapsize(e->env, o->mapsize)) != 0)) {
		err = dbenv_err(e, rc, "configuring the environment");
		goto fail;
	}
	/* Never MDB_NOSYNC / MDB_NOMETASYNC / MDB_WRITEMAP: a commit must be on disk before
	 * a receipt, an ack or a checkpoint signature depends on it. */
	if ((rc = mdb_env_open(e->env, dir, o->flags, 0600)) != 0) {
		err = dbenv_err(e, rc, "opening the environment");
		goto fail;
	}
	e->maxkey = (size_t)mdb_env_get_maxkeysize(e->env);
	/* Reader slots left by a process that crashed would pin old pages. */
	if ((rc = mdb_reader_check(e->env, &dead)) != 0) {
		err = dbenv_err(e, rc, "clearing stale readers");
		goto fail;
	}
	if (dead > 0) {
		log_info("%s %s: cleared %d stale reader slot(s)", who, dir, dead);
	}
	return 0;
fail:
	dbenv_close(e);
	return err;
}

void
dbenv_close(struct dbenv *e)
{
	if (e->env != NULL) {
		mdb_env_close(e->env);
		e->env = NULL;
	}
	if (e->lockfd >= 0) {
		close(e->lockfd); /* releases the flock */
		e->lockfd = -1;
	}
	free(e->dir);
	e->dir = NULL;
}

int
dbenv_begin(struct dbenv *e, MDB_txn *parent, unsigned flags, MDB_txn **txn)
{
	int rc;

	if ((rc = mdb_txn_begin(e->env, parent, flags, txn)) != 0) {
		*txn = NULL;
		return dbenv_err(e, rc,
		                 (flags & MDB_RDONLY) != 0 ? "beginning a read transaction"
		                                           : "beginning a write transaction");
	}
	return 0;
}

int
dbenv_commit(struct dbenv *e, MDB_txn *txn, const char *what)
{
	return dbenv_err(e, mdb_txn_commit(txn), what);
}

int
dbenv_key(const struct dbenv *e, const char *key, MDB_val *k)
{
	size_t n;

	if (key == NULL || key[0] == '\0') {
		return IHALA_EINVAL;
	}
	if ((n = strlen(key)) > e->maxkey) {
		return IHALA_ETOOLARGE;
	}
	k->mv_data = (void *)key;
	k->mv_size = n;
	return 0;
}

int
dbenv_get(struct dbenv *e, MDB_txn *txn, MDB_dbi dbi, const char *key, MDB_val *v, const char *what)
{
	MDB_val k;
	int err;

	if ((err = dbenv_key(e, key, &k)) < 0) {
		return err;
	}
	return dbenv_err(e, mdb_get(txn, dbi, &k, v), what);
}

int
dbenv_put(struct dbenv *e, MDB_txn *txn, MDB_dbi dbi, const char *key, const void *val, size_t len,
          unsigned flags, const char *what)
{
	MDB_val k, v;
	int err;

	if ((err = dbenv_key(e, key, &k)) < 0) {
		return err;
	}
	if (val == NULL && len != 0) {
		return IHALA_EINVAL;
	}
	if (len > DBENV_MAX_VALUE) {
		return IHALA_ETOOLARGE;
	}
	v.mv_data = (void *)val;
	v.mv_size = len;
	return dbenv_err(e, mdb_put(txn, dbi, &k, &v, flags), what);
}

int
dbenv_copy_text(const MDB_val *v, char **text)
{
	char *t;

	if ((t = malloc(v->mv_size + 1)) == NULL) {
		return IHALA_ENOMEM;
	}
	memcpy(t, v->mv_data, v->mv_size);
	t[v->mv_size] = '\0';
	*text = t;
	return 0;
}

/* ---- format records ---- */

/* Print an unknown record safely: printable ASCII, bounded. */
static void
printable(const MDB_val *v, char *buf, size_t size)
{
	const unsigned char *p = v->mv_data;
	size_t i, n = v->mv_size < size - 1 ? v->mv_size : size - 1;

	for (i = 0; i < n; i++) {
		buf[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
	}
	buf[n] = '\0';
}

/* Refuse a store whose meta `key` is not `want` (nothing is written). */
static int
check_record(struct dbenv *e, MDB_txn *txn, MDB_dbi meta, const struct dbenv_format *f,
             const char *key, const char *want)
{
	char got[40];
	MDB_val v;
	int rc;

	rc = dbenv_get(e, txn, meta, key, &v, "reading the format records");
	if (rc == IHALA_ENOTFOUND) {
		log_warnx("%s %s has no '%s' record; it is damaged or not an %s (%s)", e->who,
		          e->dir, key, f->name, f->fix);
		return IHALA_EVERSION;
	}
	if (rc < 0) {
		return rc;
	}
	if (v.mv_size == strlen(want) && memcmp(v.mv_data, want, v.mv_size) == 0) {
		return 0;
	}
	printable(&v, got, sizeof(got));
	if (strcmp(key, DBENV_META_VERSION) == 0) {
		log_warnx("%s %s has format version %s, this release reads version %s; run the "
		          "release that wrote it, or migrate the store",
		          e->who, e->dir, got, want);
	} else {
		log_warnx("%s %s is of kind '%s', not '%s'; it is not an %s (%s)", e->who, e->dir,
		          got, want, f->name, f->fix);
	}
	return IHALA_EVERSION;
}

int
dbenv_format_open(struct dbenv *e, MDB_txn *txn, const struct dbenv_format *f, int create,
                  MDB_dbi *meta, int *fresh)
{
	char want[16];
	MDB_dbi main;
	MDB_stat st;
	MDB_val kv;
	int rc, err;

	*fresh = 0;
	rc = mdb_dbi_open(txn, "meta", 0, meta);
	if (rc == MDB_NOTFOUND) {
		if ((rc = mdb_dbi_open(txn, NULL, 0, &main)) != 0 ||
		    (rc = mdb_stat(txn, main, &st)) != 0) {
			return dbenv_err(e, rc, "reading the main database");
		}
		if (st.ms_entries != 0) {
			log_warnx("%s %s has no format version; it is not an %s (%s)", e->who,
			          e->dir, f->name, f->fix);
			return IHALA_EVERSION;
		}
		if (!create) {
			log_warnx("%s %s is empty; a read-only open needs an existing store",
			          e->who, e->dir);
			return IHALA_ENOTFOUND;
		}
		if ((rc = mdb_dbi_open(txn, "meta", MDB_CREATE, meta)) != 0) {
			return dbenv_err(e, rc, "creating database 'meta'");
		}
		*fresh = 1;
		return 0;
	}
	if (rc != 0) {
		return dbenv_err(e, rc, "opening database 'meta'");
	}
	/* A format without a kind (the broker's) given a store that has one (a node's): say
	 * so before the versions, which may differ too and would only mislead. */
	if (f->kind == NULL &&
	    dbenv_get(e, txn, *meta, DBENV_META_KIND, &kv, "reading the format records") == 0) {
		char got[40];

		printable(&kv, got, sizeof(got));
		log_warnx("%s %s is of kind '%s'; it is not an %s (%s)", e->who, e->dir, got,
		          f->name, f->fix);
		return IHALA_ESTORE;
	}
	snprintf(want, sizeof(want), "%u", f->version);
	if ((err = check_record(e, txn, *meta, f, DBENV_META_VERSION, want)) < 0) {
		return err;
	}
	if (f->kind != NULL &&
	    (err = check_record(e, txn, *meta, f, DBENV_META_KIND, f->kind)) < 0) {
		return err;
	}
	return 0;
}

int
dbenv_format_init(struct dbenv *e, MDB_txn *txn, MDB_dbi meta, const struct dbenv_format *f)
{
	char created[32], version[16];
	time_t now = time(NULL);
	struct tm tm;
	int err;

	snprintf(version, sizeof(version), "%u", f->version);
	gmtime_r(&now, &tm);
	strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if ((err = dbenv_put(e, txn, meta, DBENV_META_VERSION, version, strlen(version),
	                     MDB_NOOVERWRITE, "writing the format version")) < 0 ||
	    (f->kind != NULL &&
	     (err = dbenv_put(e, txn, meta, DBENV_META_KIND, f->kind, strlen(f->kind),
	                      MDB_NOOVERWRITE, "writing the store kind")) < 0) ||
	    (err = dbenv_put(e, txn, meta, DBENV_META_CREATED, created, strlen(created),
	                     MDB_NOOVERWRITE, "writing the creation time")) < 0) {
		return err;
	}
	log_info("%s %s: created, format version %u", e->who, e->dir, f->version);
	return 0;
}

int
dbenv_dbis_open(struct dbenv *e, MDB_txn *txn, const struct dbenv_db *dbs, size_t n,
                unsigned create)
{
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		rc = mdb_dbi_open(txn, dbs[i].name, dbs[i].flags | create, dbs[i].dbi);
		if (rc == MDB_NOTFOUND) {
			log_warnx("%s %s: database '%s' is missing; the store is damaged", e->who,
			          e->dir, dbs[i].name);
			return IHALA_ESTORE;
		}
		if (rc != 0) {
			return dbenv_err(e, rc, dbs[i].name);
		}
	}
	return 0;
}

int
dbenv_backup(struct dbenv *e, const char *dir)
{
	char path[PATH_MAX];
	int fd = -1, dfd = -1, rc, err = 0, n;

	if ((err = datadir_prepare("store backup", dir, DATADIR_CREATE)) < 0) {
		return err;
	}
	n = snprintf(path, sizeof(path), "%s/data.mdb", dir);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		log_warnx("%s: backup path '%s' is too long", e->who, dir);
		return IHALA_EINVAL;
	}
	/* Our own open, not mdb_env_copy2's: the copy holds survivors' data and must not be
	 * created with the umask's looser mode. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_warn("%s: cannot create backup '%s'", e->who, path);
		return IHALA_EIO;
	}
	if ((rc = mdb_env_copyfd2(e->env, fd, MDB_CP_COMPACT)) != 0) {
		err = dbenv_err(e, rc, "copying to the backup");
		goto fail;
	}
	if (fsync(fd) != 0) {
		log_warn("%s: cannot flush backup '%s'", e->who, path);
		err = IHALA_EIO;
		goto fail;
	}
	if (close(fd) != 0) {
		fd = -1;
		log_warn("%s: cannot close backup '%s'", e->who, path);
		err = IHALA_EIO;
		goto fail;
	}
	fd = -1;
	/* Make the new directory entry durable too. */
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	log_info("%s %s: backed up to '%s'", e->who, e->dir, path);
	return 0;
fail:
	if (fd >= 0) {
		close(fd);
	}
	unlink(path);
	return err;
}
