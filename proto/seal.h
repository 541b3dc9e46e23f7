/* seal.h - sealed parts: CMS AuthEnvelopedData (AES-256-GCM, ECDH P-256) to agencies' keys. */
#ifndef IHALA_SEAL_H
#define IHALA_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "error.h"

/*
 * A sealed part is the DER of a CMS ContentInfo of type AuthEnvelopedData (RFC 5083):
 * the content (type id-data) encrypted with AES-256-GCM under a fresh random key, that key
 * wrapped (AES-256 key wrap) for each recipient by ephemeral-static ECDH on P-256 with the
 * X9.63 SHA-256 KDF (RFC 5753, dhSinglePass-stdDH-sha256kdf-scheme), one KeyAgreeRecipientInfo
 * per recipient certificate, named by issuer and serial. `openssl cms -decrypt -inform DER
 * -recip CERT -inkey KEY` opens it.
 *
 * An encryption certificate is an agency's second certificate, for key agreement only:
 * P-256 key, keyUsage with keyAgreement and nothing else (no digitalSignature, so a TLS
 * certificate is never one), no TLS extended key usage, not a CA, chaining to the federation
 * CA (and not revoked when a CRL is given), valid now, and naming the agency by the TLS naming
 * rule (SAN URI ihala:agency:<id>, else the CN; tls_cert_identity()).
 */

/* Largest content sealed or opened, and largest sealed part accepted by seal_open(). */
#define SEAL_PLAIN_MAX (512u * 1024u)
#define SEAL_DER_MAX (SEAL_PLAIN_MAX + 64u * 1024u)
/* Most recipients of one sealed part, and most keys in one keyring. */
#define SEAL_RECIPIENTS_MAX 16
#define SEAL_KEYS_MAX 16

/*
 * The error codes of this module, from proto/error.h. They are named here so that the
 * dedicated wire codes the issue asks for (with the next protocol version) replace them in
 * one place.
 */
#define SEAL_ECERT IHALA_ECERT             /* not a valid encryption certificate for the agency */
#define SEAL_EREVOKED IHALA_EREVOKED       /* encryption certificate revoked */
#define SEAL_EMALFORMED IHALA_ESCHEMA      /* not a well-formed AuthEnvelopedData */
#define SEAL_ENOTRECIPIENT IHALA_ENOTPARTY /* none of our keys is a recipient */
#define SEAL_EAUTH IHALA_ETAMPER           /* authentication (GCM tag or key unwrap) failed */
#define SEAL_ETOOLARGE IHALA_ETOOLARGE     /* content or sealed part over its bound */

/*
 * Every function below returns 0 or a negative code of proto/error.h, and on failure writes a
 * sentence for people into err (err may be NULL; errlen its size). OpenSSL errors are drained
 * from the thread's queue into that sentence. X509 and EVP_PKEY arguments are borrowed for
 * the call unless said otherwise.
 */

/* The trust anchors an encryption certificate must chain to. Opaque. */
struct seal_trust;

/*
 * Load the CA file (PEM, one or more certificates) and, when crl_file is not NULL, its CRLs
 * (then every certificate checked must have a CRL from its issuer). *out: new, owned by the
 * caller, seal_trust_free() it. IHALA_ECONFIG for a file missing or unusable, IHALA_ENOMEM.
 */
int seal_trust_new(const char *ca_file, const char *crl_file, struct seal_trust **out, char *err,
                   size_t errlen);
void seal_trust_free(struct seal_trust *t);

/*
 * 0 when cert is a valid encryption certificate of agency under t now (see the top of this
 * file); SEAL_EREVOKED, or SEAL_ECERT with what is wrong ("certificate names agency 'dma',
 * not 'moh'"), IHALA_EINVAL, IHALA_ENOMEM.
 */
int seal_cert_check(struct seal_trust *t, X509 *cert, const char *agency, char *err, size_t errlen);

/*
 * Rotation: among n certificates offered for agency, the newest (latest notBefore, then
 * latest notAfter) that passes seal_cert_check(). *out: one of certs[] (borrowed from the
 * caller's array). SEAL_ECERT when none passes (err says why the last one failed).
 */
int seal_cert_pick(struct seal_trust *t, X509 *const *certs, size_t n, const char *agency,
                   X509 **out, char *err, size_t errlen);

/* One recipient: the agency and the encryption certificate to seal to (both borrowed). */
struct seal_recipient {
	const char *agency;
	X509 *cert;
};

/*
 * Seal len bytes (len <= SEAL_PLAIN_MAX, plain may be NULL when len is 0) to n recipients
 * (1..SEAL_RECIPIENTS_MAX), each checked with seal_cert_check() first: nothing is sealed to a
 * certificate that fails. *der: new buffer of *derlen bytes, owned by the caller (free()).
 * SEAL_ECERT/SEAL_EREVOKED naming the recipient, SEAL_ETOOLARGE, IHALA_EINVAL, IHALA_ENOMEM,
 * IHALA_ETLS for any other OpenSSL failure.
 */
int seal_bytes(struct seal_trust *t, const struct seal_recipient *r, size_t n, const uint8_t *plain,
               size_t len, uint8_t **der, size_t *derlen, char *err, size_t errlen);

/* Our own encryption keys, newest and older ones (rotation). Opaque. */
struct seal_keyring;

/* *out: new, empty, owned by the caller (seal_keyring_free()). IHALA_ENOMEM. */
int seal_keyring_new(struct seal_keyring **out);
void seal_keyring_free(struct seal_keyring *kr);

/*
 * Add a key and its certificate; the keyring takes its own references. IHALA_EINVAL when the
 * key does not match the certificate or the keyring already holds SEAL_KEYS_MAX keys.
 */
int seal_keyring_add(struct seal_keyring *kr, X509 *cert, EVP_PKEY *key, char *err, size_t errlen);

/*
 * seal_keyring_add() from files: a PEM certificate and a PEM private key (unencrypted, a
 * regular file not accessible by group or others: IHALA_EKEYPERM otherwise). IHALA_ECONFIG
 * for a file missing, unreadable or not matching.
 */
int seal_keyring_load(struct seal_keyring *kr, const char *cert_file, const char *key_file,
                      char *err, size_t errlen);

/*
 * Open a sealed part of derlen bytes (<= SEAL_DER_MAX) with whichever key of kr is one of its
 * recipients. It must be exactly one DER AuthEnvelopedData of id-data content. *plain: new
 * buffer of *plainlen bytes, owned by the caller (free(); not NUL-terminated; a 0-byte content
 * gives a 1-byte allocation). Nothing is returned unless the GCM tag verified.
 * SEAL_EMALFORMED, SEAL_ETOOLARGE, SEAL_ENOTRECIPIENT, SEAL_EAUTH (tampered, or a key that does
 * not match), IHALA_EINVAL, IHALA_ENOMEM.
 */
int seal_open(struct seal_keyring *kr, const uint8_t *der, size_t derlen, uint8_t **plain,
              size_t *plainlen, char *err, size_t errlen);

#endif
