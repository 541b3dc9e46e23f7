/* lmdb_ceiling.c - benchmark ceiling: raw LMDB appends of fixed-size records, synced commits. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <lmdb.h>

/*
 *   lmdb_ceiling DIR COUNT SIZE BATCH[,BATCH...]
 *
 * For each BATCH: a fresh LMDB environment in DIR/bBATCH, one integer-keyed database, COUNT
 * records of SIZE bytes appended (MDB_APPEND), BATCH records per write transaction, every
 * commit synchronous (LMDB's default: no NOSYNC, NOMETASYNC or WRITEMAP, as the broker's
 * store). This is what the broker's log append alone could do at that group-commit size, with
 * none of the broker's other work (dedup, queues, Merkle nodes, referral state).
 * Prints "batch=B msgs_per_s=R commits_per_s=C" per batch size.
 */

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
run(const char *dir, uint64_t count, size_t size, uint64_t batch)
{
	MDB_env *env = NULL;
	MDB_dbi dbi;
	MDB_txn *txn = NULL;
	unsigned char *val = malloc(size);
	uint64_t seq = 0, commits = 0;
	double t0, t1;
	int rc;

	if (val == NULL || batch == 0) {
		return 1;
	}
	memset(val, 0xa5, size);
	mkdir(dir, 0700);
	rc = mdb_env_create(&env);
	if (rc == 0) {
		rc = mdb_env_set_mapsize(env, (size_t)(count * (size + 64) * 2 + (64u << 20)));
	}
	if (rc == 0) {
		rc = mdb_env_set_maxdbs(env, 4);
	}
	if (rc == 0) {
		rc = mdb_env_open(env, dir, MDB_NOTLS, 0600);
	}
	if (rc == 0) {
		rc = mdb_txn_begin(env, NULL, 0, &txn);
	}
	if (rc == 0) {
		rc = mdb_dbi_open(txn, "log", MDB_CREATE | MDB_INTEGERKEY, &dbi);
	}
	if (rc == 0) {
		rc = mdb_txn_commit(txn);
		txn = NULL;
	}
	t0 = now_s();
	while (rc == 0 && seq < count) {
		uint64_t i;

		rc = mdb_txn_begin(env, NULL, 0, &txn);
		for (i = 0; rc == 0 && i < batch && seq < count; i++) {
			MDB_val k, v;

			seq++;
			k.mv_data = &seq;
			k.mv_size = sizeof(seq);
			v.mv_data = val;
			v.mv_size = size;
			memcpy(val, &seq, sizeof(seq)); /* not all pages alike */
			rc = mdb_put(txn, dbi, &k, &v, MDB_APPEND);
		}
		if (rc == 0) {
			rc = mdb_txn_commit(txn);
			commits++;
		} else {
			mdb_txn_abort(txn);
		}
		txn = NULL;
	}
	t1 = now_s();
	if (rc != 0) {
		fprintf(stderr, "lmdb_ceiling: %s: %s\n", dir, mdb_strerror(rc));
	} else {
		printf("batch=%" PRIu64 " msgs_per_s=%.0f commits_per_s=%.0f\n", batch,
		       (double)count / (t1 - t0), (double)commits / (t1 - t0));
	}
	mdb_env_close(env);
	free(val);
	return rc == 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
	char *save = NULL, *tok;
	uint64_t count;
	size_t size;
	int err = 0;

	if (argc != 5) {
		fprintf(stderr, "usage: lmdb_ceiling DIR COUNT SIZE BATCH[,BATCH...]\n");
		return 2;
	}
	count = strtoull(argv[2], NULL, 10);
	size = strtoul(argv[3], NULL, 10);
	mkdir(argv[1], 0700);
	for (tok = strtok_r(argv[4], ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		char dir[4096];
		uint64_t batch = strtoull(tok, NULL, 10);

		snprintf(dir, sizeof(dir), "%s/b%" PRIu64, argv[1], batch);
		err |= run(dir, count, size, batch);
	}
	return err;
}
