/* fuzz_merkle.c - fuzz target: Merkle proof verification with fuzzed sizes, paths and trees. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fuzz.h"
#include "log.h"
#include "merkle.h"

/*
 * Input: one mode byte, then:
 *  mode even ("raw"): index, size, size2 (8 bytes each, big-endian), leaf, root, root2 (32
 *    bytes each) and path hashes (the rest, 32 bytes each, at most MERKLE_MAX_PATH + 8).
 *    Both verifiers run on it; they may say anything but must not read outside the path or
 *    crash. A proof that verifies must obey the header's rules (index < size, path length,
 *    size1 <= size2, size1 == size2 only with an empty path and equal roots).
 *  mode odd ("tree"): size (2 bytes), index and size1 selectors (2 bytes each), a tamper
 *    selector (2 bytes) and a seed (the rest). A real tree of 1..MAXN leaves is built with
 *    merkle_append in memory; merkle_root must equal the compact range's root; the inclusion
 *    proof of the chosen leaf and the consistency proof from size1 must verify, and must
 *    stop verifying when one bit of the path, leaf or root is flipped or the path loses or
 *    gains a hash.
 */

#define MAXN 600
#define MAXLEVEL 10

struct memtree {
	uint8_t node[MAXLEVEL + 1][MAXN][MERKLE_HASH_LEN];
	uint8_t have[MAXLEVEL + 1][MAXN];
};

static struct memtree *tree;

static int
mem_get(void *ctx, unsigned level, uint64_t index, uint8_t out[MERKLE_HASH_LEN])
{
	struct memtree *t = ctx;

	if (level > MAXLEVEL || index >= MAXN || !t->have[level][index]) {
		return IHALA_ENOTFOUND;
	}
	memcpy(out, t->node[level][index], MERKLE_HASH_LEN);
	return 0;
}

static int
mem_put(void *ctx, unsigned level, uint64_t index, const uint8_t hash[MERKLE_HASH_LEN])
{
	struct memtree *t = ctx;

	FUZZ_ASSERT(level <= MAXLEVEL && index < MAXN);
	memcpy(t->node[level][index], hash, MERKLE_HASH_LEN);
	t->have[level][index] = 1;
	return 0;
}

static const struct merkle_store_ops ops = {mem_get, mem_put};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_setlevel(LOG_LEVEL_ERROR);
	tree = calloc(1, sizeof(*tree));
	FUZZ_ASSERT(tree != NULL);
	return 0;
}

static uint64_t
be64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++) {
		v = v << 8 | p[i];
	}
	return v;
}

static void
raw_mode(const uint8_t *data, size_t size)
{
	uint8_t leaf[32], root[32], root2[32];
	uint8_t(*path)[MERKLE_HASH_LEN] = NULL;
	uint64_t index, tsize, size2;
	size_t pathlen;

	if (size < 24 + 96) {
		return;
	}
	index = be64(data);
	tsize = be64(data + 8);
	size2 = be64(data + 16);
	memcpy(leaf, data + 24, 32);
	memcpy(root, data + 56, 32);
	memcpy(root2, data + 88, 32);
	data += 120;
	size -= 120;
	pathlen = size / MERKLE_HASH_LEN;
	if (pathlen > MERKLE_MAX_PATH + 8) {
		pathlen = MERKLE_MAX_PATH + 8;
	}
	if (pathlen > 0) {
		/* exactly pathlen hashes, so ASan catches a read past the proof */
		path = malloc(pathlen * MERKLE_HASH_LEN);
		FUZZ_ASSERT(path != NULL);
		memcpy(path, data, pathlen * MERKLE_HASH_LEN);
	}
	if (merkle_verify_inclusion(index, tsize, leaf, (const uint8_t(*)[MERKLE_HASH_LEN])path,
	                            pathlen, root) == 0) {
		FUZZ_ASSERT(index < tsize && pathlen <= MERKLE_MAX_PATH);
	}
	if (merkle_verify_consistency(tsize, size2, root, root2,
	                              (const uint8_t(*)[MERKLE_HASH_LEN])path, pathlen) == 0) {
		FUZZ_ASSERT(tsize != 0 && tsize <= size2 && pathlen <= MERKLE_MAX_PATH);
		if (tsize == size2) {
			FUZZ_ASSERT(pathlen == 0 && memcmp(root, root2, 32) == 0);
		}
	}
	free(path);
}

static void
flip(uint8_t *p, unsigned bit)
{
	p[(bit / 8) % MERKLE_HASH_LEN] ^= (uint8_t)(1u << (bit % 8));
}

static void
tree_mode(const uint8_t *data, size_t size)
{
	uint8_t path[MERKLE_MAX_PATH + 1][MERKLE_HASH_LEN], leaf[32], root[32], root1[32], r[32];
	struct merkle_range range;
	uint64_t n, index, size1, i;
	size_t pathlen, cpathlen;
	unsigned tamper;

	if (size < 8) {
		return;
	}
	n = 1 + ((uint64_t)data[0] << 8 | data[1]) % MAXN;
	index = ((uint64_t)data[2] << 8 | data[3]) % n;
	size1 = 1 + ((uint64_t)data[4] << 8 | data[5]) % n;
	tamper = (unsigned)data[6] << 8 | data[7];
	data += 8;
	size -= 8;

	memset(tree->have, 0, sizeof(tree->have));
	merkle_range_init(&range);
	for (i = 0; i < n; i++) {
		uint8_t buf[16] = {0};
		uint8_t h[32];

		memcpy(buf, &i, sizeof(i));
		if (size > 0) {
			buf[8] = data[i % size];
		}
		FUZZ_ASSERT(merkle_leaf_hash(buf, sizeof(buf), h) == 0);
		FUZZ_ASSERT(merkle_append(&ops, tree, i, h) == 0);
		FUZZ_ASSERT(merkle_range_push(&range, h) == 0);
	}
	FUZZ_ASSERT(merkle_range_size(&range) == n);
	FUZZ_ASSERT(merkle_root(&ops, tree, n, root) == 0);
	FUZZ_ASSERT(merkle_range_root(&range, r) == 0);
	FUZZ_ASSERT(memcmp(root, r, 32) == 0);
	FUZZ_ASSERT(merkle_root(&ops, tree, size1, root1) == 0);
	FUZZ_ASSERT(mem_get(tree, 0, index, leaf) == 0);

	/* inclusion */
	FUZZ_ASSERT(merkle_inclusion_proof(&ops, tree, index, n, path, &pathlen) == 0);
	FUZZ_ASSERT(pathlen <= MERKLE_MAX_PATH);
	FUZZ_ASSERT(merkle_verify_inclusion(index, n, leaf, (const uint8_t(*)[32])path, pathlen,
	                                    root) == 0);
	switch (tamper % 4) {
	case 0:
		if (pathlen > 0) {
			flip(path[(tamper >> 2) % pathlen], tamper >> 4);
			FUZZ_ASSERT(merkle_verify_inclusion(index, n, leaf,
			                                    (const uint8_t(*)[32])path, pathlen,
			                                    root) == IHALA_EPROOF);
			flip(path[(tamper >> 2) % pathlen], tamper >> 4);
		}
		break;
	case 1:
		flip(leaf, tamper >> 2);
		FUZZ_ASSERT(merkle_verify_inclusion(index, n, leaf, (const uint8_t(*)[32])path,
		                                    pathlen, root) == IHALA_EPROOF);
		flip(leaf, tamper >> 2);
		break;
	case 2:
		flip(root, tamper >> 2);
		FUZZ_ASSERT(merkle_verify_inclusion(index, n, leaf, (const uint8_t(*)[32])path,
		                                    pathlen, root) == IHALA_EPROOF);
		flip(root, tamper >> 2);
		break;
	default:
		if (pathlen > 0) {
			FUZZ_ASSERT(merkle_verify_inclusion(index, n, leaf,
			                                    (const uint8_t(*)[32])path, pathlen - 1,
			                                    root) == IHALA_EPROOF);
		}
		memcpy(path[pathlen], root, 32);
		FUZZ_ASSERT(merkle_verify_inclusion(index, n, leaf, (const uint8_t(*)[32])path,
		                                    pathlen + 1, root) == IHALA_EPROOF);
		break;
	}

	/* consistency from size1 to n */
	FUZZ_ASSERT(merkle_consistency_proof(&ops, tree, size1, n, path, &cpathlen) == 0);
	FUZZ_ASSERT(cpathlen <= MERKLE_MAX_PATH);
	FUZZ_ASSERT((cpathlen == 0) == (size1 == n));
	FUZZ_ASSERT(merkle_verify_consistency(size1, n, root1, root, (const uint8_t(*)[32])path,
	                                      cpathlen) == 0);
	if (cpathlen > 0) {
		flip(path[(tamper >> 2) % cpathlen], tamper >> 4);
		FUZZ_ASSERT(merkle_verify_consistency(size1, n, root1, root,
		                                      (const uint8_t(*)[32])path,
		                                      cpathlen) == IHALA_EPROOF);
		flip(path[(tamper >> 2) % cpathlen], tamper >> 4);
		FUZZ_ASSERT(merkle_verify_consistency(size1, n, root1, root,
		                                      (const uint8_t(*)[32])path,
		                                      cpathlen - 1) == IHALA_EPROOF);
	}
	flip(root1, tamper);
	FUZZ_ASSERT(merkle_verify_consistency(size1, n, root1, root, (const uint8_t(*)[32])path,
	                                      cpathlen) == IHALA_EPROOF);
	flip(root1, tamper);
	flip(root, tamper);
	FUZZ_ASSERT(merkle_verify_consistency(size1, n, root1, root, (const uint8_t(*)[32])path,
	                                      cpathlen) == IHALA_EPROOF);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1) {
		return 0;
	}
	if (data[0] & 1) {
		tree_mode(data + 1, size - 1);
	} else {
		raw_mode(data + 1, size - 1);
	}
	return 0;
}
