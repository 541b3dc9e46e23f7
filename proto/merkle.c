/* merkle.c - RFC 6962 / RFC 9162 Merkle tree over stored perfect subtrees, and its verifiers. */
/* SHA256_Init/Update/Final are deprecated in OpenSSL 3 in favour of EVP; see sha256_2. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "merkle.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "error.h"

/*
 * SHA-256(a || b); either part may be empty. The low-level functions on a context on the
 * stack: no allocation, no provider dispatch. EVP_DigestInit_ex2/Final_ex on a reused context
 * cost about as much again as hashing a 1 KiB entry (EVP's init, a context cleanse and a
 * zalloc/free of the digest state per hash), and the writer hashes every entry and node.
 */
static int
sha256_2(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, uint8_t out[MERKLE_HASH_LEN])
{
	SHA256_CTX c;

	if (SHA256_Init(&c) != 1 || (alen > 0 && SHA256_Update(&c, a, alen) != 1) ||
	    (blen > 0 && SHA256_Update(&c, b, blen) != 1) || SHA256_Final(out, &c) != 1) {
		return IHALA_EINTERNAL;
	}
	return 0;
}

int
merkle_leaf_hash(const uint8_t *data, size_t len, uint8_t out[MERKLE_HASH_LEN])
{
	static const uint8_t prefix = 0x00;

	return sha256_2(&prefix, 1, data, len, out);
}

int
merkle_sha256(const uint8_t *data, size_t len, uint8_t out[MERKLE_HASH_LEN])
{
	return sha256_2(data, len, NULL, 0, out);
}

int
merkle_node_hash(const uint8_t l[MERKLE_HASH_LEN], const uint8_t r[MERKLE_HASH_LEN],
                 uint8_t out[MERKLE_HASH_LEN])
{
	uint8_t buf[1 + 2 * MERKLE_HASH_LEN];

	buf[0] = 0x01;
	memcpy(buf + 1, l, MERKLE_HASH_LEN);
	memcpy(buf + 1 + MERKLE_HASH_LEN, r, MERKLE_HASH_LEN);
	return sha256_2(buf, sizeof(buf), NULL, 0, out);
}

int
merkle_empty_root(uint8_t out[MERKLE_HASH_LEN])
{
	return sha256_2(NULL, 0, NULL, 0, out);
}

/* Largest power of two strictly below n; n >= 2. */
static uint64_t
split_point(uint64_t n)
{
	return (uint64_t)1 << (63 - __builtin_clzll(n - 1));
}

/*
 * MTH(D[lo:hi]) for 0 <= lo < hi, composed right to left from the perfect
 * subtrees named by the bits of hi - lo. Every range the RFC recursion asks
 * for starts on a multiple of its largest piece, so each piece is one stored
 * node; anything else is a bug in this file.
 */
static int
range_hash(const struct merkle_store_ops *ops, void *ctx, uint64_t lo, uint64_t hi,
           uint8_t out[MERKLE_HASH_LEN])
{
	uint8_t piece[MERKLE_HASH_LEN];
	uint64_t width = hi - lo, end = hi, step;
	unsigned level;
	int err, first = 1;

	for (level = 0; level < 64 && (width >> level) != 0; level++) {
		if (((width >> level) & 1) == 0) {
			continue;
		}
		step = (uint64_t)1 << level;
		end -= step;
		if ((end & (step - 1)) != 0) {
			return IHALA_EINTERNAL;
		}
		if ((err = ops->get_node(ctx, level, end >> level, first ? out : piece)) != 0) {
			return err;
		}
		if (!first && (err = merkle_node_hash(piece, out, out)) != 0) {
			return err;
		}
		first = 0;
	}
	return 0;
}

int
merkle_append(const struct merkle_store_ops *ops, void *ctx, uint64_t n_before,
              const uint8_t leaf[MERKLE_HASH_LEN])
{
	uint8_t h[MERKLE_HASH_LEN], sibling[MERKLE_HASH_LEN];
	uint64_t index = n_before;
	unsigned level = 0;
	int err;

	if (n_before >= MERKLE_MAX_SIZE || ops->put_node == NULL) {
		return IHALA_EINVAL;
	}
	if ((err = ops->put_node(ctx, 0, index, leaf)) != 0) {
		return err;
	}
	memcpy(h, leaf, MERKLE_HASH_LEN);
	/* Each trailing one of the index closes a perfect subtree one level up. */
	while (index & 1) {
		if ((err = ops->get_node(ctx, level, index - 1, sibling)) != 0 ||
		    (err = merkle_node_hash(sibling, h, h)) != 0) {
			return err;
		}
		index >>= 1;
		level++;
		if ((err = ops->put_node(ctx, level, index, h)) != 0) {
			return err;
		}
	}
	return 0;
}

int
merkle_root(const struct merkle_store_ops *ops, void *ctx, uint64_t size,
            uint8_t out[MERKLE_HASH_LEN])
{
	if (size > MERKLE_MAX_SIZE) {
		return IHALA_EINVAL;
	}
	if (size == 0) {
		return merkle_empty_root(out);
	}
	return range_hash(ops, ctx, 0, size, out);
}

/* The RFC recursions walk top-down; proofs are listed bottom-up. */
static void
reverse_into(uint8_t (*dst)[MERKLE_HASH_LEN], const uint8_t (*src)[MERKLE_HASH_LEN], size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		memcpy(dst[i], src[n - 1 - i], MERKLE_HASH_LEN);
	}
}

/*
 * PATH(m, D[n]) of RFC 9162 2.1.3.1. Once the walk turns left it stays
 * inside a perfect subtree, so only the first right-hand sibling can be a
 * composite range: at most 63 + popcount(n) reads.
 */
int
merkle_inclusion_proof(const struct merkle_store_ops *ops, void *ctx, uint64_t index, uint64_t size,
                       uint8_t (*path)[MERKLE_HASH_LEN], size_t *pathlen)
{
	uint8_t tmp[MERKLE_MAX_PATH][MERKLE_HASH_LEN];
	uint64_t lo = 0, hi = size, k;
	size_t n = 0;
	int err;

	*pathlen = 0;
	if (index >= size || size > MERKLE_MAX_SIZE) {
		return IHALA_EINVAL;
	}
	while (hi - lo > 1) {
		if (n == MERKLE_MAX_PATH) {
			return IHALA_EINTERNAL;
		}
		k = split_point(hi - lo);
		if (index < lo + k) {
			err = range_hash(ops, ctx, lo + k, hi, tmp[n]);
			hi = lo + k;
		} else {
			err = range_hash(ops, ctx, lo, lo + k, tmp[n]);
			lo += k;
		}
		if (err != 0) {
			return err;
		}
		n++;
	}
	reverse_into(path, (const uint8_t(*)[MERKLE_HASH_LEN])tmp, n);
	*pathlen = n;
	return 0;
}

/* PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of RFC 9162 2.1.4.1, same read bound. */
int
merkle_consistency_proof(const struct merkle_store_ops *ops, void *ctx, uint64_t size1,
                         uint64_t size2, uint8_t (*path)[MERKLE_HASH_LEN], size_t *pathlen)
{
	uint8_t tmp[MERKLE_MAX_PATH][MERKLE_HASH_LEN];
	uint64_t lo = 0, hi = size2, k;
	size_t n = 0;
	int err, whole = 1;

	*pathlen = 0;
	if (size1 == 0 || size1 > size2 || size2 > MERKLE_MAX_SIZE) {
		return IHALA_EINVAL;
	}
	if (size1 == size2) {
		return 0;
	}
	for (;;) {
		if (n == MERKLE_MAX_PATH) {
			return IHALA_EINTERNAL;
		}
		if (size1 == hi) {
			/* The old tree is a whole subtree here: the verifier has its
			 * root already only when it is the old root itself. */
			if (!whole) {
				if ((err = range_hash(ops, ctx, lo, hi, tmp[n])) != 0) {
					return err;
				}
				n++;
			}
			break;
		}
		k = split_point(hi - lo);
		if (size1 <= lo + k) {
			err = range_hash(ops, ctx, lo + k, hi, tmp[n]);
			hi = lo + k;
		} else {
			err = range_hash(ops, ctx, lo, lo + k, tmp[n]);
			lo += k;
			whole = 0;
		}
		if (err != 0) {
			return err;
		}
		n++;
	}
	reverse_into(path, (const uint8_t(*)[MERKLE_HASH_LEN])tmp, n);
	*pathlen = n;
	return 0;
}

int
merkle_verify_inclusion(uint64_t index, uint64_t size, const uint8_t leaf[MERKLE_HASH_LEN],
                        const uint8_t (*path)[MERKLE_HASH_LEN], size_t pathlen,
                        const uint8_t root[MERKLE_HASH_LEN])
{
	uint8_t r[MERKLE_HASH_LEN];
	uint64_t fn = index, sn;
	size_t i;
	int err;

	if (index >= size || pathlen > MERKLE_MAX_PATH) {
		return IHALA_EPROOF;
	}
	sn = size - 1;
	memcpy(r, leaf, MERKLE_HASH_LEN);
	for (i = 0; i < pathlen; i++) {
		if (sn == 0) {
			return IHALA_EPROOF; /* path longer than the tree is deep */
		}
		if ((fn & 1) || fn == sn) {
			err = merkle_node_hash(path[i], r, r);
			/* A right-border node: skip the levels where it has no sibling. */
			while (!(fn & 1) && fn != 0) {
				fn >>= 1;
				sn >>= 1;
			}
		} else {
			err = merkle_node_hash(r, path[i], r);
		}
		if (err != 0) {
			return err;
		}
		fn >>= 1;
		sn >>= 1;
	}
	if (sn != 0 || CRYPTO_memcmp(r, root, MERKLE_HASH_LEN) != 0) {
		return IHALA_EPROOF;
	}
	return 0;
}

int
merkle_verify_consistency(uint64_t size1, uint64_t size2, const uint8_t root1[MERKLE_HASH_LEN],
                          const uint8_t root2[MERKLE_HASH_LEN],
                          const uint8_t (*path)[MERKLE_HASH_LEN], size_t pathlen)
{
	uint8_t fr[MERKLE_HASH_LEN], sr[MERKLE_HASH_LEN];
	uint64_t fn, sn;
	size_t i;
	int err;

	/* Edge rules of the transparency-dev vectors (size 0 is never consistent). */
	if (size1 == 0 || size1 > size2 || pathlen > MERKLE_MAX_PATH) {
		return IHALA_EPROOF;
	}
	if (size1 == size2) {
		if (pathlen != 0 || CRYPTO_memcmp(root1, root2, MERKLE_HASH_LEN) != 0) {
			return IHALA_EPROOF;
		}
		return 0;
	}
	if (pathlen == 0) {
		return IHALA_EPROOF;
	}
	/* A power-of-two old tree is a node of the new one: its root is the
	 * implicit first path element. */
	i = 0;
	if ((size1 & (size1 - 1)) == 0) {
		memcpy(fr, root1, MERKLE_HASH_LEN);
	} else {
		memcpy(fr, path[i++], MERKLE_HASH_LEN);
	}
	memcpy(sr, fr, MERKLE_HASH_LEN);
	fn = size1 - 1;
	sn = size2 - 1;
	while (fn & 1) {
		fn >>= 1;
		sn >>= 1;
	}
	for (; i < pathlen; i++) {
		if (sn == 0) {
			return IHALA_EPROOF;
		}
		if ((fn & 1) || fn == sn) {
			if ((err = merkle_node_hash(path[i], fr, fr)) != 0 ||
			    (err = merkle_node_hash(path[i], sr, sr)) != 0) {
				return err;
			}
			while (!(fn & 1) && fn != 0) {
				fn >>= 1;
				sn >>= 1;
			}
		} else if ((err = merkle_node_hash(sr, path[i], sr)) != 0) {
			return err;
		}
		fn >>= 1;
		sn >>= 1;
	}
	if (sn != 0 || CRYPTO_memcmp(fr, root1, MERKLE_HASH_LEN) != 0 ||
	    CRYPTO_memcmp(sr, root2, MERKLE_HASH_LEN) != 0) {
		return IHALA_EPROOF;
	}
	return 0;
}

void
merkle_range_init(struct merkle_range *r)
{
	r->size = 0;
}

int
merkle_range_push(struct merkle_range *r, const uint8_t leaf[MERKLE_HASH_LEN])
{
	uint8_t h[MERKLE_HASH_LEN];
	unsigned top;
	uint64_t n;
	int err;

	if (r->size >= MERKLE_MAX_SIZE) {
		return IHALA_EINVAL;
	}
	top = (unsigned)__builtin_popcountll(r->size);
	memcpy(h, leaf, MERKLE_HASH_LEN);
	/* Merge once per trailing one: each closes a perfect subtree. The range
	 * changes only on success. */
	for (n = r->size; n & 1; n >>= 1) {
		if ((err = merkle_node_hash(r->stack[--top], h, h)) != 0) {
			return err;
		}
	}
	memcpy(r->stack[top], h, MERKLE_HASH_LEN);
	r->size++;
	return 0;
}

int
merkle_range_root(const struct merkle_range *r, uint8_t out[MERKLE_HASH_LEN])
{
	unsigned i, n = (unsigned)__builtin_popcountll(r->size);
	int err;

	if (n == 0) {
		return merkle_empty_root(out);
	}
	memcpy(out, r->stack[n - 1], MERKLE_HASH_LEN);
	for (i = n - 1; i > 0; i--) {
		if ((err = merkle_node_hash(r->stack[i - 1], out, out)) != 0) {
			return err;
		}
	}
	return 0;
}

uint64_t
merkle_range_size(const struct merkle_range *r)
{
	return r->size;
}
