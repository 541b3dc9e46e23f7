/* tlsctx.h - OpenSSL contexts for ihala's mutual TLS 1.3, and certificate identity checks. */
#ifndef IHALA_TLSCTX_H
#define IHALA_TLSCTX_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "id.h"

/* The one ALPN protocol both ends must agree on. */
#define TLSCTX_ALPN "ihala/2"

/* Longest agency id, without the terminating NUL; ids are [a-z0-9_-]{1,32}. */
/* Size of a certificate fingerprint (SHA-256 over the DER encoding). */
#define TLS_FP_LEN 32

/*
 * The files a context is built from. The strings are borrowed for the duration
 * of the call only. ca_file: PEM trust anchors (the federation CA). crl_file:
 * PEM CRL(s) of that CA; required for the server, optional (NULL) for the
 * client. cert_file: our PEM certificate, optionally followed by intermediates.
 * key_file: our PEM private key, unencrypted, and not readable by group or
 * others.
 */
struct tls_files {
	const char *ca_file;
	const char *crl_file;
	const char *cert_file;
	const char *key_file;
};

/*
 * Build a fresh SSL_CTX. Both: TLS 1.3 only, no session tickets, no session
 * cache, ALPN TLSCTX_ALPN, CRL checking of the peer's certificate when a CRL
 * is loaded. Server: requires a client certificate (SSL_VERIFY_PEER |
 * SSL_VERIFY_FAIL_IF_NO_PEER_CERT) and refuses a ClientHello that does not
 * offer TLSCTX_ALPN. Client: verifies the server (the name to check is given
 * per connection, see channel_new()).
 *
 * On success returns 0 and *out is a new SSL_CTX owned by the caller (release
 * with SSL_CTX_free(); every SSL made from it holds its own reference, so the
 * broker may free the old context after a reload while old sessions live on).
 * On failure returns IHALA_EKEYPERM (key readable by group/others),
 * IHALA_ECONFIG (a file missing or unusable, key not matching the
 * certificate, CRL expired), IHALA_ENOMEM or IHALA_ETLS, leaves *out
 * untouched, and writes a sentence for people into err (may be NULL), e.g.
 * "cannot load certificate '/etc/ihala/moh.pem': no start line".
 */
int tlsctx_server_new(const struct tls_files *f, SSL_CTX **out, char *err, size_t errlen);
int tlsctx_client_new(const struct tls_files *f, SSL_CTX **out, char *err, size_t errlen);

/*
 * A server context as tlsctx_server_new, with the CA file and CRL read from f but the
 * certificate (and its chain) and private key of `keep` (borrowed; the new context takes its
 * own references): f->cert_file and f->key_file are not read. For a broker reloading after
 * dropping root, whose key file only root can read. Errors as tlsctx_server_new, and
 * IHALA_EINVAL when keep is NULL or has no certificate and key.
 */
int tlsctx_server_renew(const struct tls_files *f, SSL_CTX *keep, SSL_CTX **out, char *err,
                        size_t errlen);

/*
 * Re-verify a certificate, as the server verifies a client certificate at
 * handshake, against ctx's current trust store (CA and CRL, at the current
 * time). The broker calls it on SIGHUP with the freshly built context for
 * every live session: cert = channel_peer_cert(), chain =
 * SSL_get_peer_cert_chain(channel_ssl()) (may be NULL). All borrowed.
 * Returns 0 when still valid, IHALA_EREVOKED when the certificate is revoked,
 * IHALA_ECERT for any other verification failure (unknown CA, expired ...),
 * IHALA_ENOMEM; err (may be NULL) gets the reason ("certificate revoked").
 */
int tlsctx_verify_cert(SSL_CTX *ctx, X509 *cert, STACK_OF(X509) * chain, char *err, size_t errlen);

/*
 * The agency id a certificate names, and its fingerprint. The id is taken
 * from a SAN URI "ihala:agency:<id>" when the certificate has one, else from
 * the subject CN. Refused (IHALA_ECERT): no such name, two different ihala
 * URIs, several CNs, embedded NUL, empty, longer than ID_AGENCY_MAX, or any
 * character outside [a-z0-9_-]. Whether the id is a configured agency is the
 * caller's business.
 * agency: caller's buffer of len >= ID_AGENCY_MAX + 1 bytes (IHALA_EINVAL
 * otherwise), NUL-terminated on success. fp: caller's TLS_FP_LEN bytes or
 * NULL, SHA-256 of the certificate's DER. cert is borrowed.
 */
int tls_cert_identity(X509 *cert, char *agency, size_t len, uint8_t fp[TLS_FP_LEN]);

/*
 * What the broker requires of an agency's certificate beyond a verified chain: not a CA
 * (basicConstraints CA:TRUE, or X509_check_ca() non-zero, is refused), the clientAuth
 * extended key usage present, and a subject CN in agency-id form naming the same agency as
 * the SAN URI ihala:agency:ID when it has both (a CN that is not an id, such as a display
 * name, is not compared). 0, or IHALA_ECERT with a reason for people in why (NULL allowed).
 * cert is borrowed; NULL gives 0 (tls_peer_identity() reports a missing certificate).
 */
int tls_agency_cert_check(X509 *cert, char *why, size_t whylen);

/*
 * tls_cert_identity() of the verified peer certificate of an established
 * session. IHALA_ENOTAUTH when there is no peer certificate, IHALA_ECERT when
 * its verification did not succeed. ssl is borrowed.
 */
int tls_peer_identity(SSL *ssl, char *agency, size_t len, uint8_t fp[TLS_FP_LEN]);

/*
 * The earliest nextUpdate, in Unix seconds, of the CRLs loaded into ctx's trust store: past
 * it, every handshake fails CRL checking until a fresh CRL is loaded. 0 and *when_s set, or
 * IHALA_EINVAL when ctx holds no CRL with a nextUpdate. ctx is borrowed; not while another
 * thread changes its store.
 */
int tlsctx_crl_next_update(SSL_CTX *ctx, int64_t *when_s);

/*
 * Why our own callbacks refused a handshake on this SSL (e.g. "client did not
 * offer ALPN 'ihala/1'"), or NULL. Static storage; ssl is borrowed.
 */
const char *tlsctx_refusal(const SSL *ssl);

/*
 * Empty this thread's OpenSSL error queue into buf as text for people:
 * reasons (with their detail, if any) separated by "; ". buf gets "" when the
 * queue is empty; it is always NUL-terminated when len > 0.
 */
void tlsctx_errors(char *buf, size_t len);

#endif
