/* audit_rate.c - benchmark of `ihala audit verify --db`: rehash a store copy's whole log. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "clock.h"
#include "error.h"
#include "logdb.h"
#include "merkle.h"

/*
 *   audit_rate DATA_DIR [KEY]
 *
 * Reads the broker store read-only through proto/logdb.h, as `ihala audit verify --db` does.
 * With KEY (the checkpoint public key, as --key takes it) it runs what that command runs,
 * audit_verify_store(), and times it. Without, it times that walk's core: every log entry
 * hashed as a Merkle leaf in seq order into a compact range (merkle_range), each leaf compared
 * with the stored tree and the final root with the root the stored nodes give (checkpoint
 * signatures are not checked). Prints "entries=N entries_per_s=R ok=1|0".
 */

static const struct merkle_store_ops stored_tree = {logdb_tree_node, NULL};

static double
now_s(void)
{
	return (double)clock_mono_ns() / 1e9;
}

static int
verify_with_key(const char *dir, const char *key)
{
	struct audit_verify_result res;
	int err = audit_verify_store(dir, key, NULL, &res);

	if (err != 0) {
		fprintf(stderr, "audit_rate: %s: %s\n", dir,
		        res.problem[0] != '\0' ? res.problem : ihala_strerror(err));
	}
	printf("entries=%" PRIu64 " entries_per_s=%.0f ok=%d\n", res.entries,
	       res.seconds > 0 ? (double)res.entries / res.seconds : 0, err == 0);
	return err == 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
	struct logdb *db = NULL;
	struct logdb_txn r = {NULL, NULL, NULL};
	struct logdb_log_iter it = {NULL, NULL, 0, 0};
	struct merkle_range mr;
	uint8_t leaf[MERKLE_HASH_LEN], stored[MERKLE_HASH_LEN], root[MERKLE_HASH_LEN],
	    want[MERKLE_HASH_LEN];
	uint64_t seq, expect = 1, n = 0;
	const void *data;
	size_t len;
	double t0, t1;
	int ok = 1, err;

	if (argc != 2 && argc != 3) {
		fprintf(stderr, "usage: audit_rate DATA_DIR [KEY]\n");
		return 2;
	}
	if (argc == 3) {
		return verify_with_key(argv[1], argv[2]);
	}
	if (logdb_open(argv[1], &db) != 0 || logdb_begin(db, &r) != 0 ||
	    logdb_log_iter_begin(&r, 1, &it) != 0) {
		fprintf(stderr, "audit_rate: cannot read the store %s\n", argv[1]);
		return 2;
	}
	merkle_range_init(&mr);
	t0 = now_s();
	while (logdb_log_iter_next(&it, &seq, &data, &len) == 0) {
		if (seq != expect || merkle_leaf_hash(data, len, leaf) != 0 ||
		    logdb_tree_get(&r, 0, seq - 1, stored) != 0 ||
		    memcmp(leaf, stored, MERKLE_HASH_LEN) != 0 ||
		    merkle_range_push(&mr, leaf) != 0) {
			fprintf(stderr, "audit_rate: seq %" PRIu64 " does not verify\n", seq);
			ok = 0;
			break;
		}
		expect++;
		n++;
	}
	logdb_log_iter_end(&it);
	err = merkle_range_root(&mr, root);
	if (err == 0 && n > 0) {
		err = merkle_root(&stored_tree, &r, n, want);
	}
	t1 = now_s();
	if (err != 0 || (n > 0 && memcmp(root, want, MERKLE_HASH_LEN) != 0)) {
		fprintf(stderr, "audit_rate: the recomputed root does not match the stored tree\n");
		ok = 0;
	}
	logdb_end(&r);
	logdb_close(db);
	printf("entries=%" PRIu64 " entries_per_s=%.0f ok=%d\n", n, (double)n / (t1 - t0), ok);
	return ok ? 0 : 1;
}
