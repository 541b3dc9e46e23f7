/* merkle.h - RFC 6962 / RFC 9162 Merkle tree: hashing, storage-agnostic proofs, verification. */
#ifndef IHALA_MERKLE_H
#define IHALA_MERKLE_H

#include <stddef.h>
#include <stdint.h>

#define MERKLE_HASH_LEN 32
/* Longest inclusion or consistency proof for any size <= MERKLE_MAX_SIZE. */
#define MERKLE_MAX_PATH 64
/* Largest tree size (2^63 - 1): keeps every shift and proof length in range. */
#define MERKLE_MAX_SIZE ((uint64_t)INT64_MAX)

/*
 * Hashing (SHA-256, RFC 6962 domain separation). Return 0, or IHALA_ENOMEM /
 * IHALA_EINTERNAL when OpenSSL fails. Safe from any thread. `out` may alias
 * `l` or `r`.
 */
int merkle_leaf_hash(const uint8_t *data, size_t len, uint8_t out[MERKLE_HASH_LEN]);
/* Plain SHA-256 of data (no prefix), as cheaply as the tree's hashes (no provider
 * dispatch); 0 or IHALA_EINTERNAL. */
int merkle_sha256(const uint8_t *data, size_t len, uint8_t out[MERKLE_HASH_LEN]);
int merkle_node_hash(const uint8_t l[MERKLE_HASH_LEN], const uint8_t r[MERKLE_HASH_LEN],
                     uint8_t out[MERKLE_HASH_LEN]);
/* The root of the empty tree, SHA-256(""). */
int merkle_empty_root(uint8_t out[MERKLE_HASH_LEN]);

/*
 * Node storage, provided by the caller (LMDB in the broker, memory in tests).
 * Node (level, index) is the root of the perfect subtree over leaves
 * [index * 2^level, (index + 1) * 2^level); level 0 holds leaf hashes. Only
 * complete subtrees are ever stored or asked for.
 *
 * get_node copies the hash into `out` and returns 0, IHALA_ENOTFOUND when the
 * node is not stored, or another negative ihala code; put_node stores a copy
 * of `hash` (the pointer is only valid during the call). Every merkle_*
 * function passes its `ctx` argument through unchanged and returns the first
 * error a callback returns. put_node may be NULL except for merkle_append.
 */
struct merkle_store_ops {
	int (*get_node)(void *ctx, unsigned level, uint64_t index, uint8_t out[MERKLE_HASH_LEN]);
	int (*put_node)(void *ctx, unsigned level, uint64_t index,
	                const uint8_t hash[MERKLE_HASH_LEN]);
};

/*
 * Append leaf number `n_before` (a leaf hash, see merkle_leaf_hash) to a tree
 * holding n_before leaves: writes the leaf at level 0 and every perfect
 * subtree it completes (1 + trailing ones of n_before writes, as many reads).
 * IHALA_EINVAL when the tree is full (n_before >= MERKLE_MAX_SIZE). On error
 * some nodes may be written already: abort the store transaction.
 */
int merkle_append(const struct merkle_store_ops *ops, void *ctx, uint64_t n_before,
                  const uint8_t leaf[MERKLE_HASH_LEN]);

/* Root of the first `size` leaves (any historical size), popcount(size) reads. */
int merkle_root(const struct merkle_store_ops *ops, void *ctx, uint64_t size,
                uint8_t out[MERKLE_HASH_LEN]);

/*
 * Proofs, written bottom-up into `path`, which must have room for
 * MERKLE_MAX_PATH hashes; *pathlen receives the count. At most about
 * 2 * log2(size) node reads. IHALA_EINVAL for index >= size, size1 == 0,
 * size1 > size2 or a size above MERKLE_MAX_SIZE. size1 == size2 gives the
 * empty proof. On error `path` holds garbage and *pathlen is 0.
 */
int merkle_inclusion_proof(const struct merkle_store_ops *ops, void *ctx, uint64_t index,
                           uint64_t size, uint8_t (*path)[MERKLE_HASH_LEN], size_t *pathlen);
int merkle_consistency_proof(const struct merkle_store_ops *ops, void *ctx, uint64_t size1,
                             uint64_t size2, uint8_t (*path)[MERKLE_HASH_LEN], size_t *pathlen);

/*
 * Verification (RFC 9162 2.1.3.2 and 2.1.4.2). 0 when the proof holds,
 * IHALA_EPROOF when it does not, IHALA_ENOMEM / IHALA_EINTERNAL if hashing
 * fails. Rules: index >= size fails; a path of the wrong length fails;
 * consistency fails for size1 == 0 or size1 > size2, and for size1 == size2
 * passes only with an empty path and equal roots.
 *
 * A proof alone does not bind the tree size: take (size, root) together from
 * a checkpoint that checkpoint_open() accepted, never from the prover.
 * `path` may be NULL when pathlen is 0.
 */
int merkle_verify_inclusion(uint64_t index, uint64_t size, const uint8_t leaf[MERKLE_HASH_LEN],
                            const uint8_t (*path)[MERKLE_HASH_LEN], size_t pathlen,
                            const uint8_t root[MERKLE_HASH_LEN]);
int merkle_verify_consistency(uint64_t size1, uint64_t size2, const uint8_t root1[MERKLE_HASH_LEN],
                              const uint8_t root2[MERKLE_HASH_LEN],
                              const uint8_t (*path)[MERKLE_HASH_LEN], size_t pathlen);

/*
 * Compact range ("frontier"): the roots of the perfect subtrees that make up
 * the leaves pushed so far, for verifiers that replay a whole log in one pass
 * in O(log n) memory. Caller-owned, no allocation: declare one, call
 * merkle_range_init, push leaf hashes in order. Nothing to release. Fields
 * are private.
 */
struct merkle_range {
	uint64_t size;
	/* stack[i] for i < popcount(size): largest subtree first. */
	uint8_t stack[MERKLE_MAX_PATH][MERKLE_HASH_LEN];
};

void merkle_range_init(struct merkle_range *r);
/* IHALA_EINVAL when the range already holds MERKLE_MAX_SIZE leaves. */
int merkle_range_push(struct merkle_range *r, const uint8_t leaf[MERKLE_HASH_LEN]);
/* Root of the leaves pushed so far; does not change the range. */
int merkle_range_root(const struct merkle_range *r, uint8_t out[MERKLE_HASH_LEN]);
uint64_t merkle_range_size(const struct merkle_range *r);

#endif
