/* checkpoint.h - C2SP tlog-checkpoint signed notes with Ed25519: sign, verify, key formats. */
#ifndef IHALA_CHECKPOINT_H
#define IHALA_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define CHECKPOINT_HASH_LEN 32
/* Longest origin line and longest key name, in bytes. */
#define CHECKPOINT_NAME_MAX 255
/* Longest note checkpoint_open and checkpoint_note_open accept, and the longest the broker's
 * store (proto/logdb.h) and a node's local store keep: the one limit of a checkpoint's size. */
#define CHECKPOINT_TEXT_MAX (16 * 1024)

/*
 * A signed checkpoint is the C2SP signed note
 *
 *	<origin>\n<size, decimal>\n<base64 root>\n[extension lines]\n
 *	— <key name> <base64(4-byte key id || 64-byte Ed25519 signature)>\n ...
 *
 * with key id = SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4].
 * Key names (and the origin, which should equal the key name) are 1 to
 * CHECKPOINT_NAME_MAX bytes of UTF-8 without control characters; key names
 * have no space and no '+' either.
 *
 * Errors: IHALA_EINVAL for a malformed argument or note, IHALA_ETOOLARGE for
 * a note over CHECKPOINT_TEXT_MAX, IHALA_ESIGNATURE when no valid signature
 * of the verifier's key is present (or one of its signatures is bad),
 * IHALA_EKEYPERM / IHALA_EIO / IHALA_ECONFIG for key files, IHALA_ENOMEM,
 * IHALA_EINTERNAL for OpenSSL failures.
 */

/* The private side: an Ed25519 key and its note key name. Opaque. */
struct checkpoint_signer;
/* The public side: name, key id and Ed25519 public key. Opaque. */
struct checkpoint_verifier;

/* What an accepted checkpoint says; trust size and root only after checkpoint_open() == 0. */
struct checkpoint {
	char origin[CHECKPOINT_NAME_MAX + 1];
	uint64_t size;
	uint8_t root[CHECKPOINT_HASH_LEN];
	unsigned extensions; /* extension lines present (signed, not interpreted) */
};

/*
 * Load an Ed25519 private key (PKCS#8 PEM, unencrypted) to sign under key
 * name `name`. Refuses with IHALA_EKEYPERM a file readable or writable by
 * group or others, or owned by another user than the caller or root;
 * IHALA_ECONFIG when the file holds no Ed25519 private key. Logs why. The
 * caller owns *out and frees it with checkpoint_signer_free.
 */
int checkpoint_key_load(const char *pem_path, const char *name, struct checkpoint_signer **out);
/* The same from a key in memory; takes its own reference on `pkey`. */
int checkpoint_signer_from_pkey(EVP_PKEY *pkey, const char *name, struct checkpoint_signer **out);
void checkpoint_signer_free(struct checkpoint_signer *s);

/*
 * Sign the checkpoint (origin, size, root) with one signature line. *text_out
 * is a malloc'd NUL-terminated note the caller frees. Safe to call from
 * several threads on one signer.
 */
int checkpoint_sign(const struct checkpoint_signer *s, const char *origin, uint64_t size,
                    const uint8_t root[CHECKPOINT_HASH_LEN], char **text_out);

/*
 * Generic signed note: sign `body` (len bytes, UTF-8, ending in exactly one
 * '\n', no empty line, no control characters but '\n').
 */
int checkpoint_note_sign(const struct checkpoint_signer *s, const char *body, size_t len,
                         char **text_out);

/*
 * Verifiers. _load reads an Ed25519 public key (SPKI PEM) for key name
 * `name`; _from_signer derives the public side of a signer; _parse reads a
 * C2SP verifier key "<name>+<8 hex key id>+<base64(0x01 || pubkey)>" and
 * refuses one whose key id does not match. Caller owns *out
 * (checkpoint_verifier_free).
 */
int checkpoint_verifier_load(const char *pem_path, const char *name,
                             struct checkpoint_verifier **out);
int checkpoint_verifier_from_signer(const struct checkpoint_signer *s,
                                    struct checkpoint_verifier **out);
int checkpoint_verifier_parse(const char *vkey, struct checkpoint_verifier **out);
void checkpoint_verifier_free(struct checkpoint_verifier *v);
/* The C2SP verifier key string; malloc'd, caller frees. */
int checkpoint_verifier_string(const struct checkpoint_verifier *v, char **out);
/* The key name; owned by v, valid until checkpoint_verifier_free. */
const char *checkpoint_verifier_name(const struct checkpoint_verifier *v);

/*
 * Check a signed note: well-formed, at most CHECKPOINT_TEXT_MAX bytes, and
 * carrying a valid signature by `v`. Signatures of other keys are ignored
 * (C2SP); a signature that names v's key but does not verify rejects the
 * note. On success *body and *body_len point into `text` (the signed text,
 * ending in '\n'), valid as long as `text` is.
 */
int checkpoint_note_open(const struct checkpoint_verifier *v, const char *text, size_t len,
                         const char **body, size_t *body_len);

/*
 * checkpoint_note_open, then parse the body strictly as a checkpoint: origin
 * line; size in decimal without sign or leading zero, fitting 64 bits;
 * canonical base64 of exactly 32 bytes; then only non-empty extension lines.
 * When `origin` is not NULL the note's origin must equal it. `out` is
 * written only on success.
 */
int checkpoint_open(const struct checkpoint_verifier *v, const char *origin, const char *text,
                    size_t len, struct checkpoint *out);

#endif
