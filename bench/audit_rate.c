/* audit_rate.c - benchmark fallback for `ihala audit verify --db`: rehash a store's whole log. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "merkle.h"
#include "store.h"
#include "ledger.h"

/*
 *   audit_rate DATA_DIR
 *
 * Opens the broker store read-only, hashes every log entry as a Merkle leaf in seq order into
 * a compact range (merkle_range), and compares each leaf with the stored tree and the final
 * root with the root the stored nodes give: the core of an offline audit (checkpoint
 * signatures are not checked here). Prints "entries=N entries_per_s=R ok=1|0".
 */

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	struct store *st = NULL;
	struct store_rtxn *r = NULL;
	struct store_log_iter *it = NULL;
	struct merkle_range mr;
	uint8_t leaf[MERKLE_HASH_LEN], stored[MERKLE_HASH_LEN], root[MERKLE_HASH_LEN],
	    want[MERKLE_HASH_LEN];
	uint64_t seq, expect = 1, n = 0;
	const void *data;
	size_t len;
	double t0, t1;
	int ok = 1, err;

	if (argc != 2) {
		fprintf(stderr, "usage: audit_rate DATA_DIR\n");
		return 2;
	}
	if (store_open(argv[1], 0, STORE_RDONLY, &st) != 0 || store_rbegin(st, &r) != 0 ||
	    store_log_iter_begin(r, 1, &it) != 0) {
		fprintf(stderr, "audit_rate: cannot read the store %s\n", argv[1]);
		return 2;
	}
	merkle_range_init(&mr);
	t0 = now_s();
	while (store_log_iter_next(it, &seq, &data, &len) == 0) {
		if (seq != expect || merkle_leaf_hash(data, len, leaf) != 0 ||
		    store_tree_get(r, 0, seq - 1, stored) != 0 ||
		    memcmp(leaf, stored, MERKLE_HASH_LEN) != 0 ||
		    merkle_range_push(&mr, leaf) != 0) {
			fprintf(stderr, "audit_rate: seq %" PRIu64 " does not verify\n", seq);
			ok = 0;
			break;
		}
		expect++;
		n++;
	}
	store_log_iter_end(it);
	err = merkle_range_root(&mr, root);
	if (err == 0 && n > 0) {
		err = merkle_root(&ledger_tree_rops, r, n, want);
	}
	t1 = now_s();
	if (err != 0 || (n > 0 && memcmp(root, want, MERKLE_HASH_LEN) != 0)) {
		fprintf(stderr, "audit_rate: the recomputed root does not match the stored tree\n");
		ok = 0;
	}
	store_rend(r);
	store_close(st);
	printf("entries=%" PRIu64 " entries_per_s=%.0f ok=%d\n", n, (double)n / (t1 - t0), ok);
	return ok ? 0 : 1;
}
