/* tlsctx.c - builds the mutual TLS 1.3 SSL_CTXs and maps certificates to agency ids. */
#include "tlsctx.h"

#include "error.h"
#include "pemkey.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

/* ALPN wire form: one length byte, then the name. */
static const unsigned char alpn_wire[] = "\x07" TLSCTX_ALPN;
#define ALPN_WIRE_LEN (sizeof(alpn_wire) - 1)

#define URI_PREFIX "ihala:agency:"

static pthread_once_t refusal_once = PTHREAD_ONCE_INIT;
static int refusal_idx = -1;

static void
refusal_init(void)
{
	refusal_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static void
set_refusal(SSL *ssl, const char *why)
{
	if (refusal_idx >= 0) {
		/* The ex_data API takes a non-const pointer; the string is never written. */
		SSL_set_ex_data(ssl, refusal_idx, (void *)(uintptr_t)why);
	}
}

const char *
tlsctx_refusal(const SSL *ssl)
{
	if (ssl == NULL || refusal_idx < 0) {
		return NULL;
	}
	return SSL_get_ex_data(ssl, refusal_idx);
}

void
tlsctx_errors(char *buf, size_t len)
{
	const char *data, *reason;
	unsigned long e;
	size_t used = 0;
	int flags, n;
	char code[32];

	if (len == 0) {
		ERR_clear_error();
		return;
	}
	buf[0] = '\0';
	while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
		reason = ERR_reason_error_string(e);
		if (reason == NULL) {
			snprintf(code, sizeof(code), "error %08lx", e);
			reason = code;
		}
		if (used >= len - 1) {
			continue; /* keep draining the queue */
		}
		n = snprintf(buf + used, len - used, "%s%s", used > 0 ? "; " : "", reason);
		if (n > 0) {
			used += (size_t)n < len - used ? (size_t)n : len - used - 1;
		}
		if ((flags & ERR_TXT_STRING) && data != NULL && data[0] != '\0' && used < len - 1) {
			n = snprintf(buf + used, len - used, " (%s)", data);
			if (n > 0) {
				used += (size_t)n < len - used ? (size_t)n : len - used - 1;
			}
		}
	}
}

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
}

/* "cannot load <what> '<path>': <OpenSSL queue or errno text>" */
static int
load_failed(char *err, size_t errlen, const char *what, const char *path, int code)
{
	char detail[512];

	tlsctx_errors(detail, sizeof(detail));
	if (detail[0] == '\0') {
		snprintf(detail, sizeof(detail), "unknown error");
	}
	seterr(err, errlen, "cannot load %s '%s': %s", what, path, detail);
	return code;
}

/* Gives the errno sentence ("No such file or directory") that OpenSSL buries. */
static int
check_readable(const char *what, const char *path, char *err, size_t errlen)
{
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		seterr(err, errlen, "cannot load %s '%s': %s", what, path, strerror(errno));
		return IHALA_ECONFIG;
	}
	close(fd);
	return 0;
}

/*
 * Open the key, check its mode on the open descriptor (no race with a
 * chmod between check and use), then parse it.
 */
static int
load_key(SSL_CTX *ctx, const char *path, const char *cert_path, char *err, size_t errlen)
{
	unsigned long e;
	EVP_PKEY *pkey = NULL;
	struct stat st;
	FILE *fp = NULL;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		seterr(err, errlen, "cannot load private key '%s': %s", path, strerror(errno));
		return IHALA_ECONFIG;
	}
	if (fstat(fd, &st) != 0) {
		seterr(err, errlen, "cannot load private key '%s': %s", path, strerror(errno));
		rc = IHALA_ECONFIG;
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		seterr(err, errlen, "cannot load private key '%s': not a regular file", path);
		rc = IHALA_ECONFIG;
		goto fail;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		seterr(
		    err, errlen,
		    "private key '%s' is accessible by group or others (mode %04o): chmod 600 it",
		    path, (unsigned)(st.st_mode & 07777));
		rc = IHALA_EKEYPERM;
		goto fail;
	}
	fp = fdopen(fd, "r");
	if (fp == NULL) {
		rc = IHALA_ENOMEM;
		seterr(err, errlen, "cannot load private key '%s': %s", path, strerror(errno));
		goto fail;
	}
	fd = -1;
	ERR_clear_error();
	pkey = PEM_read_PrivateKey(fp, NULL, pem_no_passphrase, NULL);
	if (pkey == NULL) {
		rc = load_failed(err, errlen, "private key", path, IHALA_ECONFIG);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1) {
		e = ERR_peek_last_error();
		if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
		    ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
			ERR_clear_error();
			seterr(err, errlen, "private key '%s' does not match certificate '%s'",
			       path, cert_path);
			rc = IHALA_ECONFIG;
			goto fail;
		}
		rc = load_failed(err, errlen, "private key", path, IHALA_ECONFIG);
		goto fail;
	}
	rc = 0;
fail:
	EVP_PKEY_free(pkey);
	if (fp != NULL) {
		fclose(fp);
	}
	if (fd >= 0) {
		close(fd);
	}
	return rc;
}

static int
load_crl(X509_STORE *store, const char *path, char *err, size_t errlen)
{
	const ASN1_TIME *next;
	X509_CRL *crl;
	BIO *bio;
	unsigned long e;
	int n = 0, rc;

	rc = check_readable("CRL", path, err, errlen);
	if (rc != 0) {
		return rc;
	}
	ERR_clear_error();
	bio = BIO_new_file(path, "r");
	if (bio == NULL) {
		return load_failed(err, errlen, "CRL", path, IHALA_ECONFIG);
	}
	while ((crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL) {
		/* An expired CRL makes every handshake fail: say so now, clearly. */
		next = X509_CRL_get0_nextUpdate(crl);
		if (next != NULL && X509_cmp_time(next, NULL) < 0) {
			seterr(err, errlen,
			       "CRL '%s' has expired (its next update is past): "
			       "issue a fresh one",
			       path);
			X509_CRL_free(crl);
			BIO_free(bio);
			return IHALA_ECONFIG;
		}
		if (X509_STORE_add_crl(store, crl) != 1) {
			X509_CRL_free(crl);
			BIO_free(bio);
			return load_failed(err, errlen, "CRL", path, IHALA_ETLS);
		}
		X509_CRL_free(crl);
		n++;
	}
	BIO_free(bio);
	e = ERR_peek_last_error();
	if (n > 0 && ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
		ERR_clear_error(); /* the normal end of the file */
		return 0;
	}
	return load_failed(err, errlen, "CRL", path, IHALA_ECONFIG);
}

int
tlsctx_crl_next_update(SSL_CTX *ctx, int64_t *when_s)
{
	STACK_OF(X509_OBJECT) * objs;
	const ASN1_TIME *next;
	struct tm tm;
	int64_t t, best = 0;
	int i, found = 0;

	if (ctx == NULL || when_s == NULL || SSL_CTX_get_cert_store(ctx) == NULL) {
		return IHALA_EINVAL;
	}
	objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx));
	for (i = 0; objs != NULL && i < sk_X509_OBJECT_num(objs); i++) {
		X509_OBJECT *o = sk_X509_OBJECT_value(objs, i);

		if (X509_OBJECT_get_type(o) != X509_LU_CRL) {
			continue;
		}
		next = X509_CRL_get0_nextUpdate(X509_OBJECT_get0_X509_CRL(o));
		if (next == NULL || ASN1_TIME_to_tm(next, &tm) != 1) {
			continue;
		}
		t = (int64_t)timegm(&tm);
		if (!found || t < best) {
			best = t;
			found = 1;
		}
	}
	if (!found) {
		return IHALA_EINVAL;
	}
	*when_s = best;
	return 0;
}

/* Server: accept only a ClientHello that offers our ALPN protocol. */
static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
            unsigned int inlen, void *arg)
{
	unsigned int i = 0, n;

	(void)arg;
	while (i < inlen) {
		n = in[i];
		if (n == 0 || n > inlen - i - 1) {
			break; /* malformed list */
		}
		if (n == ALPN_WIRE_LEN - 1 && memcmp(in + i + 1, alpn_wire + 1, n) == 0) {
			*out = in + i + 1;
			*outlen = (unsigned char)n;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + n;
	}
	/* An older ihala client: say so, the operator's first question. */
	for (i = 0; i < inlen && in[i] != 0 && in[i] <= inlen - i - 1; i += 1 + in[i]) {
		if (in[i] == 7 && memcmp(in + i + 1, "ihala/", 6) == 0) {
			set_refusal(
			    ssl, in[i + 7] == '1'
			             ? "client speaks protocol ihala/1; this broker speaks only "
			               "ihala/2 (sealed parts): upgrade the client"
			             : "client speaks another ihala protocol version; this broker "
			               "speaks only " TLSCTX_ALPN);
			return SSL_TLSEXT_ERR_ALERT_FATAL;
		}
	}
	set_refusal(ssl, "client does not offer ALPN protocol '" TLSCTX_ALPN "'");
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* The ALPN callback is not called at all when the client sends no ALPN. */
static int
client_hello_check(SSL *ssl, int *al, void *arg)
{
	const unsigned char *ext;
	size_t extlen;

	(void)arg;
	if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation,
	                               &ext, &extlen)) {
		set_refusal(ssl, "client offers no ALPN (needs '" TLSCTX_ALPN "')");
		*al = SSL_AD_NO_APPLICATION_PROTOCOL;
		return SSL_CLIENT_HELLO_ERROR;
	}
	return SSL_CLIENT_HELLO_SUCCESS;
}

/* The certificate, its chain and the private key of `from`, into `ctx` (references taken). */
static int
identity_copy(SSL_CTX *ctx, SSL_CTX *from, char *err, size_t errlen)
{
	STACK_OF(X509) *chain = NULL;
	X509 *cert = SSL_CTX_get0_certificate(from);
	EVP_PKEY *pkey = SSL_CTX_get0_privatekey(from);

	if (cert == NULL || pkey == NULL) {
		seterr(err, errlen, "the TLS context in force has no certificate and key to keep");
		return IHALA_EINVAL;
	}
	if (SSL_CTX_get0_chain_certs(from, &chain) != 1 ||
	    SSL_CTX_use_certificate(ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ctx, pkey) != 1 ||
	    (chain != NULL && SSL_CTX_set1_chain(ctx, chain) != 1)) {
		return load_failed(err, errlen, "certificate and key", "kept from start-up",
		                   IHALA_ETLS);
	}
	return 0;
}

/* keep: NULL, or a context whose certificate and key are taken instead of f's files. */
static int
ctx_new(const struct tls_files *f, int server, SSL_CTX *keep, SSL_CTX **out, char *err,
        size_t errlen)
{
	STACK_OF(X509_NAME) *names = NULL;
	X509_STORE *store;
	SSL_CTX *ctx;
	int rc;

	if (f == NULL || out == NULL || f->ca_file == NULL ||
	    (keep == NULL && (f->cert_file == NULL || f->key_file == NULL)) ||
	    (server && f->crl_file == NULL)) {
		seterr(err, errlen, "TLS needs a CA file, a certificate, a private key%s",
		       server ? " and a CRL file" : "");
		return IHALA_EINVAL;
	}
	if (pthread_once(&refusal_once, refusal_init) != 0 || refusal_idx < 0) {
		seterr(err, errlen, "cannot set up OpenSSL ex_data");
		return IHALA_ETLS;
	}
	ERR_clear_error();
	ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (ctx == NULL) {
		return load_failed(err, errlen, "TLS context", server ? "server" : "client",
		                   IHALA_ENOMEM);
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1) {
		rc = load_failed(err, errlen, "TLS settings", "min TLS 1.3", IHALA_ETLS);
		goto fail;
	}
	/* No resumption: every connection gets a full chain and CRL check. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_set_num_tickets(ctx, 0) != 1) {
		rc = load_failed(err, errlen, "TLS settings", "num_tickets", IHALA_ETLS);
		goto fail;
	}
	/* Many idle sessions in the broker: give their buffers back. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);

	rc = check_readable("CA file", f->ca_file, err, errlen);
	if (rc != 0) {
		goto fail;
	}
	if (SSL_CTX_load_verify_file(ctx, f->ca_file) != 1) {
		rc = load_failed(err, errlen, "CA file", f->ca_file, IHALA_ECONFIG);
		goto fail;
	}
	if (f->crl_file != NULL) {
		store = SSL_CTX_get_cert_store(ctx);
		rc = load_crl(store, f->crl_file, err, errlen);
		if (rc != 0) {
			goto fail;
		}
		/* Without this flag OpenSSL silently ignores the loaded CRL. */
		X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
	}

	if (keep != NULL) {
		rc = identity_copy(ctx, keep, err, errlen);
		if (rc != 0) {
			goto fail;
		}
	} else {
		rc = check_readable("certificate", f->cert_file, err, errlen);
		if (rc != 0) {
			goto fail;
		}
		if (SSL_CTX_use_certificate_chain_file(ctx, f->cert_file) != 1) {
			rc = load_failed(err, errlen, "certificate", f->cert_file, IHALA_ECONFIG);
			goto fail;
		}
		rc = load_key(ctx, f->key_file, f->cert_file, err, errlen);
		if (rc != 0) {
			goto fail;
		}
	}
	ERR_clear_error();
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ERR_clear_error();
		seterr(err, errlen, "private key '%s' does not match certificate '%s'",
		       f->key_file != NULL ? f->key_file : "(kept)",
		       f->cert_file != NULL ? f->cert_file : "(kept)");
		rc = IHALA_ECONFIG;
		goto fail;
	}

	if (server) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
		/* Tell clients which CA we accept (CertificateRequest). */
		names = SSL_load_client_CA_file(f->ca_file);
		if (names != NULL) {
			SSL_CTX_set_client_CA_list(ctx, names); /* takes ownership */
		}
		ERR_clear_error();
		SSL_CTX_set_client_hello_cb(ctx, client_hello_check, NULL);
		SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		/* Note: returns 0 on success, unlike most of OpenSSL. */
		if (SSL_CTX_set_alpn_protos(ctx, alpn_wire, ALPN_WIRE_LEN) != 0) {
			rc = load_failed(err, errlen, "TLS settings", "ALPN", IHALA_ETLS);
			goto fail;
		}
	}
	*out = ctx;
	return 0;
fail:
	SSL_CTX_free(ctx);
	return rc;
}

int
tlsctx_server_new(const struct tls_files *f, SSL_CTX **out, char *err, size_t errlen)
{
	return ctx_new(f, 1, NULL, out, err, errlen);
}

int
tlsctx_server_renew(const struct tls_files *f, SSL_CTX *keep, SSL_CTX **out, char *err,
                    size_t errlen)
{
	if (keep == NULL) {
		seterr(err, errlen, "no TLS context to keep the certificate and key of");
		return IHALA_EINVAL;
	}
	return ctx_new(f, 1, keep, out, err, errlen);
}

int
tlsctx_client_new(const struct tls_files *f, SSL_CTX **out, char *err, size_t errlen)
{
	return ctx_new(f, 0, NULL, out, err, errlen);
}

int
tlsctx_verify_cert(SSL_CTX *ctx, X509 *cert, STACK_OF(X509) * chain, char *err, size_t errlen)
{
	X509_STORE_CTX *sctx;
	X509_STORE *store;
	int rc, v;

	if (ctx == NULL || cert == NULL) {
		seterr(err, errlen, "no certificate to verify");
		return IHALA_EINVAL;
	}
	store = SSL_CTX_get_cert_store(ctx);
	ERR_clear_error();
	sctx = X509_STORE_CTX_new();
	if (sctx == NULL) {
		ERR_clear_error();
		seterr(err, errlen, "out of memory");
		return IHALA_ENOMEM;
	}
	if (X509_STORE_CTX_init(sctx, store, cert, chain) != 1 ||
	    X509_STORE_CTX_set_default(sctx, "ssl_client") != 1) {
		rc = load_failed(err, errlen, "verification context", "X509_STORE_CTX", IHALA_ETLS);
		goto out;
	}
	if (X509_verify_cert(sctx) == 1) {
		rc = 0;
		seterr(err, errlen, "%s", "");
		goto out;
	}
	v = X509_STORE_CTX_get_error(sctx);
	rc = v == X509_V_ERR_CERT_REVOKED ? IHALA_EREVOKED : IHALA_ECERT;
	seterr(err, errlen, "%s", X509_verify_cert_error_string(v));
out:
	ERR_clear_error();
	X509_STORE_CTX_free(sctx);
	return rc;
}

/*
 * 1 and the id in agency when the SAN holds exactly one ihala agency id,
 * 0 when it holds none, IHALA_ECERT when it is malformed or ambiguous.
 */
static int
san_identity(X509 *cert, char *agency)
{
	const size_t plen = sizeof(URI_PREFIX) - 1;
	const unsigned char *p;
	GENERAL_NAMES *gens;
	GENERAL_NAME *gen;
	int crit = -1, i, n, found = 0, rc = 0;
	size_t idlen;

	gens = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
	if (gens == NULL) {
		ERR_clear_error();
		return crit == -1 ? 0 : IHALA_ECERT; /* -2: several SAN extensions; >= 0: bad one */
	}
	n = sk_GENERAL_NAME_num(gens);
	for (i = 0; i < n; i++) {
		gen = sk_GENERAL_NAME_value(gens, i);
		if (gen->type != GEN_URI) {
			continue;
		}
		p = ASN1_STRING_get0_data(gen->d.uniformResourceIdentifier);
		idlen = (size_t)ASN1_STRING_length(gen->d.uniformResourceIdentifier);
		if (idlen < plen || memcmp(p, URI_PREFIX, plen) != 0) {
			continue;
		}
		p += plen;
		idlen -= plen;
		if (!id_agency_valid((const char *)p, idlen)) {
			rc = IHALA_ECERT;
			goto out;
		}
		if (found && (strlen(agency) != idlen || memcmp(agency, p, idlen) != 0)) {
			rc = IHALA_ECERT; /* two different agencies in one certificate */
			goto out;
		}
		memcpy(agency, p, idlen);
		agency[idlen] = '\0';
		found = 1;
	}
	rc = found;
out:
	GENERAL_NAMES_free(gens);
	return rc;
}

static int
cn_identity(X509 *cert, char *agency)
{
	const X509_NAME *name;
	X509_NAME_ENTRY *ent;
	unsigned char *utf8 = NULL;
	int idx, n;

	name = X509_get_subject_name(cert);
	if (name == NULL) {
		return IHALA_ECERT;
	}
	idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	if (idx < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, idx) >= 0) {
		return IHALA_ECERT; /* no CN, or several: which one would be meant? */
	}
	ent = X509_NAME_get_entry(name, idx);
	n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(ent));
	if (n < 0) {
		ERR_clear_error();
		return IHALA_ECERT;
	}
	if (!id_agency_valid((const char *)utf8, (size_t)n)) {
		OPENSSL_free(utf8);
		return IHALA_ECERT;
	}
	memcpy(agency, utf8, (size_t)n);
	agency[n] = '\0';
	OPENSSL_free(utf8);
	return 0;
}

int
tls_cert_identity(X509 *cert, char *agency, size_t len, uint8_t fp[TLS_FP_LEN])
{
	char id[ID_AGENCY_MAX + 1];
	unsigned int fplen = 0;
	int rc;

	if (cert == NULL || agency == NULL || len < ID_AGENCY_MAX + 1) {
		return IHALA_EINVAL;
	}
	rc = san_identity(cert, id);
	if (rc < 0) {
		return rc;
	}
	if (rc == 0) {
		rc = cn_identity(cert, id);
		if (rc < 0) {
			return rc;
		}
	}
	if (fp != NULL) {
		if (X509_digest(cert, EVP_sha256(), fp, &fplen) != 1 || fplen != TLS_FP_LEN) {
			ERR_clear_error();
			return IHALA_ETLS;
		}
	}
	memcpy(agency, id, strlen(id) + 1);
	return 0;
}

int
tls_agency_cert_check(X509 *cert, char *why, size_t whylen)
{
	char san[ID_AGENCY_MAX + 1], cn[ID_AGENCY_MAX + 1];
	uint32_t flags;

	if (cert == NULL) {
		return 0; /* no certificate: tls_peer_identity() says so */
	}
	flags = X509_get_extension_flags(cert);
	if ((flags & EXFLAG_CA) || X509_check_ca(cert) != 0) {
		seterr(why, whylen,
		       "an agency certificate must not be a CA certificate "
		       "(basicConstraints CA:TRUE)");
		return IHALA_ECERT;
	}
	if (!(flags & EXFLAG_XKUSAGE) || !(X509_get_extended_key_usage(cert) & XKU_SSL_CLIENT)) {
		seterr(why, whylen,
		       "an agency certificate must have the clientAuth extended key "
		       "usage");
		return IHALA_ECERT;
	}
	if (san_identity(cert, san) == 1 && cn_identity(cert, cn) == 0 && strcmp(san, cn) != 0) {
		seterr(why, whylen,
		       "certificate names two agencies: subject CN '%s' and SAN ihala:agency:%s",
		       cn, san);
		return IHALA_ECERT;
	}
	return 0;
}

int
tls_peer_identity(SSL *ssl, char *agency, size_t len, uint8_t fp[TLS_FP_LEN])
{
	X509 *cert;

	if (ssl == NULL) {
		return IHALA_EINVAL;
	}
	cert = SSL_get0_peer_certificate(ssl);
	if (cert == NULL) {
		return IHALA_ENOTAUTH;
	}
	if (SSL_get_verify_result(ssl) != X509_V_OK) {
		return IHALA_ECERT;
	}
	return tls_cert_identity(cert, agency, len, fp);
}
