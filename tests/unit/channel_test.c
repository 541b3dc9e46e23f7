/* channel_test.c - TLS channel and TLS contexts: a client and a server channel in one process. */
#define _GNU_SOURCE /* nftw */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "channel.h"
#include "error.h"
#include "tlsctx.h"

#define MAXF (64 * 1024)
#define BIG_OUT (4 * 1024 * 1024)

/*
 * The test PKI, generated here so every case (expired, revoked, foreign CA,
 * odd names) is under the test's control. The dev PKI of config/pki/mkpki
 * (IHALA_PKI) is exercised separately by test_dev_pki.
 */
static struct {
	char dir[PATH_MAX];
	X509 *ca;
	EVP_PKEY *cakey;
	long next_serial;
	long moh_serial;
	long revoked_serial;
} pki;

/* path of a file in the test PKI; the string lives until pki_teardown(). */
static const char *
pk(const char *name)
{
	static char **paths;
	static size_t n;
	char buf[PATH_MAX], **np;

	if (name == NULL) { /* teardown */
		while (n > 0) {
			free(paths[--n]);
		}
		free(paths);
		paths = NULL;
		return NULL;
	}
	if (snprintf(buf, sizeof(buf), "%s/%s", pki.dir, name) >= (int)sizeof(buf)) {
		fail_msg("path too long: %s/%s", pki.dir, name);
	}
	np = realloc(paths, (n + 1) * sizeof(*paths));
	assert_non_null(np);
	paths = np;
	paths[n] = strdup(buf);
	assert_non_null(paths[n]);
	return paths[n++];
}

/* ---- certificate factory (test only) ---- */

static EVP_PKEY *
gen_key(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	assert_non_null(k);
	return k;
}

/* cn may hold NULs (cnlen bytes); cn NULL: no CN at all. */
static X509 *
cert_new(EVP_PKEY *key, const char *cn, int cnlen, long from_days, long to_days)
{
	X509 *c = X509_new();
	X509_NAME *n;

	assert_non_null(c);
	assert_int_equal(X509_set_version(c, X509_VERSION_3), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(c), pki.next_serial++), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(c), from_days * 86400));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(c), to_days * 86400));
	assert_int_equal(X509_set_pubkey(c, key), 1);
	n = X509_get_subject_name(c);
	assert_int_equal(X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC,
	                                            (const unsigned char *)"ihala test", -1, -1, 0),
	                 1);
	if (cn != NULL) {
		assert_int_equal(X509_NAME_add_entry_by_NID(n, NID_commonName, V_ASN1_UTF8STRING,
		                                            (const unsigned char *)cn, cnlen, -1,
		                                            0),
		                 1);
	}
	return c;
}

static void
cert_ext(X509 *c, X509 *issuer, int nid, const char *value)
{
	X509_EXTENSION *e;
	X509V3_CTX v3;

	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, issuer, c, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	assert_non_null(e);
	assert_int_equal(X509_add_ext(c, e, -1), 1);
	X509_EXTENSION_free(e);
}

/* SAN URIs given raw (they may hold NULs). */
static void
cert_san_uris(X509 *c, const char *const *uris, const int *lens, int n)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *g;
	int i;

	assert_non_null(gens);
	for (i = 0; i < n; i++) {
		g = GENERAL_NAME_new();
		assert_non_null(g);
		g->type = GEN_URI;
		g->d.uniformResourceIdentifier = ASN1_IA5STRING_new();
		assert_non_null(g->d.uniformResourceIdentifier);
		assert_int_equal(ASN1_STRING_set(g->d.uniformResourceIdentifier, uris[i], lens[i]),
		                 1);
		assert_true(sk_GENERAL_NAME_push(gens, g) > 0);
	}
	assert_int_equal(X509_add1_ext_i2d(c, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT),
	                 1);
	GENERAL_NAMES_free(gens);
}

static void
cert_leaf_exts(X509 *c, X509 *issuer)
{
	cert_ext(c, issuer, NID_basic_constraints, "critical,CA:FALSE");
	cert_ext(c, issuer, NID_key_usage, "critical,digitalSignature");
	cert_ext(c, issuer, NID_ext_key_usage, "serverAuth,clientAuth");
	cert_ext(c, issuer, NID_subject_key_identifier, "hash");
	cert_ext(c, issuer, NID_authority_key_identifier, "keyid:always");
}

static void
cert_sign(X509 *c, EVP_PKEY *k)
{
	assert_true(X509_sign(c, k, EVP_sha256()) > 0);
}

static X509 *
ca_new(const char *cn, EVP_PKEY *key)
{
	X509 *c = cert_new(key, cn, (int)strlen(cn), -1, 3650);

	assert_int_equal(X509_set_issuer_name(c, X509_get_subject_name(c)), 1);
	cert_ext(c, c, NID_basic_constraints, "critical,CA:TRUE");
	cert_ext(c, c, NID_key_usage, "critical,keyCertSign,cRLSign");
	cert_ext(c, c, NID_subject_key_identifier, "hash");
	cert_ext(c, c, NID_authority_key_identifier, "keyid:always");
	cert_sign(c, key);
	return c;
}

/* A leaf certificate issued by ca/cakey, with an optional "ihala:agency:" URI. */
static X509 *
leaf_new(EVP_PKEY *key, const char *cn, const char *agency_uri, const char *san_conf, X509 *ca,
         EVP_PKEY *cakey, long from_days, long to_days)
{
	X509 *c = cert_new(key, cn, cn != NULL ? (int)strlen(cn) : 0, from_days, to_days);
	char uri[128];
	const char *uris[1] = {uri};
	int lens[1];

	assert_int_equal(X509_set_issuer_name(c, X509_get_subject_name(ca)), 1);
	cert_leaf_exts(c, ca);
	if (agency_uri != NULL) {
		lens[0] = snprintf(uri, sizeof(uri), "ihala:agency:%s", agency_uri);
		cert_san_uris(c, uris, lens, 1);
	} else if (san_conf != NULL) {
		cert_ext(c, ca, NID_subject_alt_name, san_conf);
	}
	cert_sign(c, cakey);
	return c;
}

static void
write_cert(const char *path, X509 *c)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(PEM_write_X509(fp, c), 1);
	assert_int_equal(fclose(fp), 0);
}

static void
write_key(const char *path, EVP_PKEY *k, mode_t mode)
{
	FILE *fp;
	int fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	fp = fdopen(fd, "w");
	assert_non_null(fp);
	assert_int_equal(PEM_write_PrivateKey(fp, k, NULL, NULL, 0, NULL, NULL), 1);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static void
write_crl(const char *path, const long *serials, int n, long next_days)
{
	X509_CRL *crl = X509_CRL_new();
	ASN1_TIME *t = ASN1_TIME_new();
	ASN1_INTEGER *s;
	X509_REVOKED *r;
	FILE *fp;
	int i;

	assert_non_null(crl);
	assert_non_null(t);
	assert_int_equal(X509_CRL_set_version(crl, 1), 1); /* v2 */
	assert_int_equal(X509_CRL_set_issuer_name(crl, X509_get_subject_name(pki.ca)), 1);
	X509_gmtime_adj(t, next_days < 0 ? (next_days - 1) * 86400 : -3600);
	assert_int_equal(X509_CRL_set1_lastUpdate(crl, t), 1);
	X509_gmtime_adj(t, next_days * 86400);
	assert_int_equal(X509_CRL_set1_nextUpdate(crl, t), 1);
	for (i = 0; i < n; i++) {
		r = X509_REVOKED_new();
		s = ASN1_INTEGER_new();
		assert_non_null(r);
		assert_non_null(s);
		ASN1_INTEGER_set(s, serials[i]);
		assert_int_equal(X509_REVOKED_set_serialNumber(r, s), 1);
		X509_gmtime_adj(t, next_days < 0 ? (next_days - 1) * 86400 : -3600);
		assert_int_equal(X509_REVOKED_set_revocationDate(r, t), 1);
		assert_int_equal(X509_CRL_add0_revoked(crl, r), 1);
		ASN1_INTEGER_free(s);
	}
	assert_int_equal(X509_CRL_sort(crl), 1);
	assert_true(X509_CRL_sign(crl, pki.cakey, EVP_sha256()) > 0);
	fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(PEM_write_X509_CRL(fp, crl), 1);
	assert_int_equal(fclose(fp), 0);
	ASN1_TIME_free(t);
	X509_CRL_free(crl);
}

/* Issue name.pem + name.key; returns the certificate's serial. */
static long
issue(const char *name, const char *cn, const char *agency_uri, const char *san_conf, X509 *ca,
      EVP_PKEY *cakey, long from_days, long to_days)
{
	char file[64];
	EVP_PKEY *k = gen_key();
	long serial = pki.next_serial;
	X509 *c = leaf_new(k, cn, agency_uri, san_conf, ca, cakey, from_days, to_days);

	snprintf(file, sizeof(file), "%s.pem", name);
	write_cert(pk(file), c);
	snprintf(file, sizeof(file), "%s.key", name);
	write_key(pk(file), k, 0600);
	X509_free(c);
	EVP_PKEY_free(k);
	return serial;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
pki_setup(void **state)
{
	EVP_PKEY *fkey;
	X509 *fca;
	long revoked[1];

	(void)state;
	snprintf(pki.dir, sizeof(pki.dir), "%s/channel_test.XXXXXX",
	         getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(pki.dir) == NULL) {
		return -1;
	}
	pki.next_serial = 1000;
	pki.cakey = gen_key();
	pki.ca = ca_new("ihala test CA", pki.cakey);
	write_cert(pk("ca.pem"), pki.ca);
	write_key(pk("ca.key"), pki.cakey, 0600);

	issue("broker", "broker", NULL, "DNS:localhost,IP:127.0.0.1", pki.ca, pki.cakey, -1, 365);
	pki.moh_serial = issue("moh", "moh", "moh", NULL, pki.ca, pki.cakey, -1, 365);
	issue("dma", "dma", NULL, NULL, pki.ca, pki.cakey, -1, 365);
	issue("stranger", "stranger", NULL, NULL, pki.ca, pki.cakey, -1, 365);
	pki.revoked_serial = issue("revoked", "revoked", NULL, NULL, pki.ca, pki.cakey, -1, 365);
	issue("expired", "expired", NULL, NULL, pki.ca, pki.cakey, -30, -1);
	revoked[0] = pki.revoked_serial;
	write_crl(pk("ca.crl"), revoked, 1, 30);

	fkey = gen_key();
	fca = ca_new("foreign CA", fkey);
	write_cert(pk("foreign-ca.pem"), fca);
	issue("foreign", "moh", NULL, NULL, fca, fkey, -1, 365);
	issue("foreign-broker", "broker", NULL, "DNS:localhost", fca, fkey, -1, 365);
	X509_free(fca);
	EVP_PKEY_free(fkey);
	return 0;
}

static int
pki_teardown(void **state)
{
	(void)state;
	X509_free(pki.ca);
	EVP_PKEY_free(pki.cakey);
	nftw(pki.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	pk(NULL);
	return 0;
}

/* ---- contexts and channel pairs ---- */

static SSL_CTX *
server_ctx_crl(const char *crl)
{
	struct tls_files f = {pk("ca.pem"), crl, pk("broker.pem"), pk("broker.key")};
	SSL_CTX *ctx = NULL;
	char err[512];
	int rc = tlsctx_server_new(&f, &ctx, err, sizeof(err));

	if (rc != 0) {
		fail_msg("tlsctx_server_new: %s (%s)", err, ihala_strerror(rc));
	}
	return ctx;
}

static SSL_CTX *
server_ctx(void)
{
	return server_ctx_crl(pk("ca.crl"));
}

static SSL_CTX *
client_ctx_ca(const char *name, const char *ca)
{
	char cert[64], key[64], err[512];
	struct tls_files f;
	SSL_CTX *ctx = NULL;
	int rc;

	snprintf(cert, sizeof(cert), "%s.pem", name);
	snprintf(key, sizeof(key), "%s.key", name);
	f.ca_file = pk(ca);
	f.crl_file = pk("ca.crl");
	f.cert_file = pk(cert);
	f.key_file = pk(key);
	rc = tlsctx_client_new(&f, &ctx, err, sizeof(err));
	if (rc != 0) {
		fail_msg("tlsctx_client_new(%s): %s (%s)", name, err, ihala_strerror(rc));
	}
	return ctx;
}

static SSL_CTX *
client_ctx(const char *name)
{
	return client_ctx_ca(name, "ca.pem");
}

struct pair {
	struct channel *c, *s;
	int cerr, serr; /* first error feeding the client / the server */
};

static void
pair_new(struct pair *p, SSL_CTX *cctx, SSL_CTX *sctx, const char *name, size_t maxf,
         size_t out_cap)
{
	memset(p, 0, sizeof(*p));
	assert_int_equal(channel_new(sctx, 1, NULL, maxf, out_cap, &p->s), 0);
	assert_int_equal(channel_new(cctx, 0, name, maxf, out_cap, &p->c), 0);
	assert_int_equal(channel_state(p->s), CHANNEL_HANDSHAKING);
	assert_int_equal(channel_state(p->c), CHANNEL_HANDSHAKING);
}

static void
pair_free(struct pair *p)
{
	channel_free(p->c);
	channel_free(p->s);
	p->c = p->s = NULL;
}

/* Move every pending output byte of `from` into `to`, chunk bytes per feed. */
static size_t
move_bytes(struct channel *from, struct channel *to, size_t chunk, int *err)
{
	static uint8_t buf[65536];
	size_t n, total = 0;
	int rc;

	if (chunk > sizeof(buf)) {
		chunk = sizeof(buf);
	}
	for (;;) {
		assert_int_equal(channel_take_out(from, buf, chunk, &n), 0);
		if (n == 0) {
			break;
		}
		total += n;
		rc = channel_feed(to, buf, n);
		if (rc != 0 && *err == 0) {
			*err = rc;
		}
	}
	return total;
}

static void
shuttle(struct pair *p, size_t chunk)
{
	while (move_bytes(p->c, p->s, chunk, &p->serr) + move_bytes(p->s, p->c, chunk, &p->cerr) >
	       0) {
	}
}

static void
pair_open(struct pair *p, SSL_CTX *cctx, SSL_CTX *sctx, size_t maxf, size_t out_cap, size_t chunk)
{
	pair_new(p, cctx, sctx, "localhost", maxf, out_cap);
	shuttle(p, chunk);
	if (channel_state(p->s) != CHANNEL_OPEN || channel_state(p->c) != CHANNEL_OPEN) {
		fail_msg("handshake: server %s '%s', client %s '%s'",
		         channel_state_name(channel_state(p->s)), channel_error_text(p->s),
		         channel_state_name(channel_state(p->c)), channel_error_text(p->c));
	}
	assert_int_equal(p->serr, 0);
	assert_int_equal(p->cerr, 0);
}

static void
fill(uint8_t *b, size_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	size_t i;

	for (i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		b[i] = (uint8_t)x;
	}
}

static void
expect_frame(struct channel *ch, const uint8_t *want, size_t wantlen)
{
	const uint8_t *body = NULL;
	size_t len = 0;

	assert_int_equal(channel_next_frame(ch, &body, &len), 1);
	assert_int_equal(len, wantlen);
	if (wantlen > 0) {
		assert_memory_equal(body, want, wantlen);
	}
}

static void
expect_no_frame(struct channel *ch)
{
	const uint8_t *body;
	size_t len;

	assert_int_equal(channel_next_frame(ch, &body, &len), 0);
}

static void
assert_contains(const char *hay, const char *needle)
{
	if (strstr(hay, needle) == NULL) {
		fail_msg("'%s' does not contain '%s'", hay, needle);
	}
}

static void
sha256_der(X509 *c, uint8_t out[32])
{
	unsigned char *der = NULL;
	unsigned int n = 0;
	int len = i2d_X509(c, &der);

	assert_true(len > 0);
	assert_int_equal(EVP_Digest(der, (size_t)len, out, &n, EVP_sha256(), NULL), 1);
	assert_int_equal(n, 32);
	OPENSSL_free(der);
}

static X509 *
read_cert(const char *path)
{
	FILE *fp = fopen(path, "r");
	X509 *c;

	assert_non_null(fp);
	c = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	assert_non_null(c);
	return c;
}

/* ---- tests ---- */

static void
test_handshake_identity(void **state)
{
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("moh");
	char agency[ID_AGENCY_MAX + 1];
	uint8_t fp[TLS_FP_LEN], want[32];
	struct pair p;
	X509 *moh;

	(void)state;
	pair_new(&p, cctx, sctx, "localhost", MAXF, BIG_OUT);
	/* No peer certificate yet: no identity. */
	assert_null(channel_peer_cert(p.s));
	assert_int_equal(tls_peer_identity(channel_ssl(p.s), agency, sizeof(agency), fp),
	                 IHALA_ENOTAUTH);
	assert_int_equal(channel_write_frame(p.c, (const uint8_t *)"x", 1), IHALA_EPROTOCOL);
	shuttle(&p, 65536);
	assert_int_equal(channel_state(p.s), CHANNEL_OPEN);
	assert_int_equal(channel_state(p.c), CHANNEL_OPEN);
	assert_true(channel_alpn_ok(p.s));
	assert_true(channel_alpn_ok(p.c));
	assert_string_equal(channel_error_text(p.s), "");
	assert_int_equal(channel_error(p.s), 0);
	assert_int_equal(SSL_version(channel_ssl(p.s)), TLS1_3_VERSION);
	assert_int_equal(SSL_session_reused(channel_ssl(p.c)), 0);

	assert_non_null(channel_peer_cert(p.s));
	assert_int_equal(tls_peer_identity(channel_ssl(p.s), agency, sizeof(agency), fp), 0);
	assert_string_equal(agency, "moh");
	moh = read_cert(pk("moh.pem"));
	sha256_der(moh, want);
	assert_memory_equal(fp, want, 32);
	assert_int_equal(X509_cmp(moh, channel_peer_cert(p.s)), 0);
	X509_free(moh);

	/* The client sees the broker. */
	assert_int_equal(tls_peer_identity(channel_ssl(p.c), agency, sizeof(agency), NULL), 0);
	assert_string_equal(agency, "broker");
	/* Too small a buffer for an agency id. */
	assert_int_equal(tls_peer_identity(channel_ssl(p.s), agency, ID_AGENCY_MAX, NULL),
	                 IHALA_EINVAL);

	/* No session ticket came: nothing to resume, every connection is fully verified. */
	assert_null(SSL_get0_session(channel_ssl(p.c)) != NULL &&
	                    SSL_SESSION_is_resumable(SSL_get0_session(channel_ssl(p.c)))
	                ? "resumable"
	                : NULL);

	pair_free(&p);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

static void
test_server_name_forms(void **state)
{
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("dma");
	const char *names[] = {"localhost", "127.0.0.1"};
	char agency[ID_AGENCY_MAX + 1];
	struct pair p;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		pair_new(&p, cctx, sctx, names[i], MAXF, BIG_OUT);
		shuttle(&p, 65536);
		assert_int_equal(channel_state(p.s), CHANNEL_OPEN);
		assert_int_equal(channel_state(p.c), CHANNEL_OPEN);
		/* dma has no SAN URI: the CN names it. */
		assert_int_equal(tls_peer_identity(channel_ssl(p.s), agency, sizeof(agency), NULL),
		                 0);
		assert_string_equal(agency, "dma");
		pair_free(&p);
	}
	/* A client must name the server it checks. */
	assert_int_equal(channel_new(cctx, 0, NULL, MAXF, BIG_OUT, &p.c), IHALA_EINVAL);
	assert_int_equal(channel_new(cctx, 0, "", MAXF, BIG_OUT, &p.c), IHALA_EINVAL);
	/* out_cap and max_frame must be sane. */
	assert_int_equal(channel_new(sctx, 1, NULL, MAXF, 0, &p.s), IHALA_EINVAL);
	assert_int_equal(channel_new(sctx, 1, NULL, 0, BIG_OUT, &p.s), IHALA_EINVAL);
	assert_int_equal(
	    channel_new(sctx, 1, NULL, (size_t)CHANNEL_MAX_FRAME_LIMIT + 1, SIZE_MAX / 2, &p.s),
	    IHALA_EINVAL);
	assert_int_equal(channel_new(sctx, 1, NULL, MAXF, channel_wire_size(MAXF), &p.s), 0);
	channel_free(p.s);
	channel_free(NULL);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

static void
test_frames_both_ways(void **state)
{
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("moh");
	static const size_t sizes[] = {0, 1, 2, 3, 4, 5, 100, 16379, 16380, 16381, 16384, 40000};
	static uint8_t data[MAXF];
	struct pair p;
	size_t i;

	(void)state;
	pair_open(&p, cctx, sctx, MAXF, BIG_OUT, 65536);
	expect_no_frame(p.s);
	expect_no_frame(p.c);
	/* Several frames queued, then delivered at once, in order, each way. */
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		fill(data, sizes[i], (uint32_t)i);
		assert_int_equal(channel_write_frame(p.c, data, sizes[i]), 0);
		fill(data, sizes[i], (uint32_t)i + 100);
		assert_int_equal(channel_write_frame(p.s, data, sizes[i]), 0);
	}
	shuttle(&p, 65536);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		fill(data, sizes[i], (uint32_t)i);
		expect_frame(p.s, data, sizes[i]);
		fill(data, sizes[i], (uint32_t)i + 100);
		expect_frame(p.c, data, sizes[i]);
	}
	expect_no_frame(p.s);
	expect_no_frame(p.c);

	/* A frame of exactly max_frame passes. */
	fill(data, MAXF, 7);
	assert_int_equal(channel_write_frame(p.s, data, MAXF), 0);
	shuttle(&p, 65536);
	expect_frame(p.c, data, MAXF);

	/* Close: the peer sees a clean close, frames before it are delivered. */
	assert_int_equal(channel_write_frame(p.s, (const uint8_t *)"bye", 3), 0);
	assert_int_equal(channel_close(p.s), 0);
	assert_int_equal(channel_state(p.s), CHANNEL_CLOSED);
	assert_int_equal(channel_write_frame(p.s, (const uint8_t *)"late", 4), IHALA_ECLOSED);
	shuttle(&p, 65536);
	assert_int_equal(p.cerr, 0);
	assert_int_equal(channel_state(p.c), CHANNEL_CLOSED);
	expect_frame(p.c, (const uint8_t *)"bye", 3);
	expect_no_frame(p.c);
	assert_int_equal(channel_write_frame(p.c, (const uint8_t *)"x", 1), IHALA_ECLOSED);
	assert_int_equal(channel_close(p.c), 0);
	pair_free(&p);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

static void
test_large_frames(void **state)
{
	const size_t maxf = 2 * 1024 * 1024, big = 1024 * 1024 + 3;
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("moh");
	uint8_t *data = malloc(big);
	struct pair p;

	(void)state;
	assert_non_null(data);
	pair_open(&p, cctx, sctx, maxf, channel_wire_size(maxf), 16 * 1024);
	fill(data, big, 1);
	assert_int_equal(channel_write_frame(p.c, data, big), 0);
	/* Spread over many TLS records and many 16 KiB transport messages. */
	assert_true(channel_pending_out(p.c) > big);
	assert_true(channel_pending_out(p.c) <= channel_wire_size(big));
	shuttle(&p, 16 * 1024);
	assert_int_equal(p.serr, 0);
	expect_frame(p.s, data, big);
	expect_no_frame(p.s);

	/* And back, fed in odd-sized pieces. */
	fill(data, big, 2);
	assert_int_equal(channel_write_frame(p.s, data, big), 0);
	shuttle(&p, 7001);
	expect_frame(p.c, data, big);
	pair_free(&p);
	free(data);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

static void
test_byte_by_byte(void **state)
{
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("moh");
	static const size_t sizes[] = {0, 1, 5, 300, 20000};
	static uint8_t data[20000];
	struct pair p;
	size_t i;

	(void)state;
	pair_open(&p, cctx, sctx, MAXF, BIG_OUT, 1);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		fill(data, sizes[i], (uint32_t)i + 9);
		assert_int_equal(channel_write_frame(p.c, data, sizes[i]), 0);
		assert_int_equal(channel_write_frame(p.s, data, sizes[i]), 0);
	}
	shuttle(&p, 1);
	assert_int_equal(p.serr, 0);
	assert_int_equal(p.cerr, 0);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		fill(data, sizes[i], (uint32_t)i + 9);
		expect_frame(p.s, data, sizes[i]);
		expect_frame(p.c, data, sizes[i]);
	}
	expect_no_frame(p.s);
	pair_free(&p);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

/* Write plaintext into the client's TLS session by hand, in records of `rec` bytes, as a peer
 * that frames by itself may (channel.h forbids I/O on channel_ssl(): test only). After each
 * record, *seen gets the plaintext bytes the server has received so far. */
static void
raw_record(struct pair *p, const uint8_t *plain, size_t len)
{
	size_t n = 0;

	assert_int_equal(SSL_write_ex(channel_ssl(p->c), plain, len, &n), 1);
	assert_int_equal(n, len);
	move_bytes(p->c, p->s, 65536, &p->serr);
}

/* The splitter of the length-prefixed stream (the only one: frame.c has none) takes frames
 * cut anywhere by the peer's records: each comes out once, whole, and as soon as its last
 * byte is in; an empty body comes out as such. */
static void
test_split_anywhere(void **state)
{
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("moh");
	static const size_t sizes[] = {300, 0, 2, 64};
	uint8_t plain[4 * 4 + 300 + 0 + 2 + 64], body[300];
	size_t ends[4], off = 0, rec, pos, i;
	struct pair p;

	(void)state;
	for (i = 0; i < 4; i++) {
		plain[off] = 0;
		plain[off + 1] = (uint8_t)(sizes[i] >> 16);
		plain[off + 2] = (uint8_t)(sizes[i] >> 8);
		plain[off + 3] = (uint8_t)sizes[i];
		fill(plain + off + 4, sizes[i], (uint32_t)i);
		off += 4 + sizes[i];
		ends[i] = off;
	}
	assert_int_equal(off, sizeof(plain));
	pair_open(&p, cctx, sctx, MAXF, BIG_OUT, 65536);
	for (rec = 1; rec <= sizeof(plain); rec++) {
		size_t got = 0;

		for (pos = 0; pos < sizeof(plain); pos += rec) {
			size_t n = sizeof(plain) - pos < rec ? sizeof(plain) - pos : rec;
			const uint8_t *b;
			size_t blen;

			raw_record(&p, plain + pos, n);
			assert_int_equal(p.serr, 0);
			while (channel_next_frame(p.s, &b, &blen) == 1) {
				assert_true(got < 4);
				assert_true(ends[got] <= pos + n);
				fill(body, sizes[got], (uint32_t)got);
				assert_int_equal(blen, sizes[got]);
				if (blen > 0) {
					assert_memory_equal(b, body, blen);
				}
				got++;
			}
			/* A frame whose last byte is in is never held back. */
			assert_true(got == 4 || ends[got] > pos + n);
		}
		assert_int_equal(got, 4);
	}
	pair_free(&p);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

/* A length over max_frame is refused from its prefix alone, also split across records and
 * right after a good frame of exactly max_frame in the same record; the good one stays. */
static void
test_split_refusals(void **state)
{
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("moh");
	static const uint8_t big[] = {0x00, 0x00, 0x00, 0x41}; /* 65 > 64 */
	uint8_t two[4 + 64 + 4], body[64];
	const uint8_t *b;
	size_t blen;
	struct pair p;

	(void)state;
	pair_open(&p, cctx, sctx, 64, BIG_OUT, 65536);
	raw_record(&p, big, 3);
	assert_int_equal(p.serr, 0);
	raw_record(&p, big + 3, 1);
	assert_int_equal(p.serr, IHALA_EFRAMESIZE);
	assert_int_equal(channel_state(p.s), CHANNEL_OPEN);
	assert_int_equal(channel_next_frame(p.s, &b, &blen), 0);
	pair_free(&p);

	fill(body, sizeof(body), 5);
	memcpy(two, "\x00\x00\x00\x40", 4);
	memcpy(two + 4, body, 64);
	memcpy(two + 68, big, 4);
	pair_open(&p, cctx, sctx, 64, BIG_OUT, 65536);
	raw_record(&p, two, sizeof(two));
	assert_int_equal(p.serr, IHALA_EFRAMESIZE);
	expect_frame(p.s, body, 64);
	expect_no_frame(p.s);
	pair_free(&p);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

/* Many frames at once: decryption pauses at max_frame + 16 KiB and resumes as they are taken. */
/* Small frames written together share TLS records: 100 frames of 10 bytes leave as one
 * record (1 400 bytes of plaintext), not 100 records of 22 bytes' overhead each. */
static void
test_small_frames_share_records(void **state)
{
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("moh");
	static uint8_t buf[65536];
	uint8_t data[10];
	struct pair p;
	size_t n, total = 0;
	int i;

	(void)state;
	pair_open(&p, cctx, sctx, MAXF, BIG_OUT, 65536);
	for (i = 0; i < 100; i++) {
		fill(data, sizeof(data), (uint32_t)i);
		assert_int_equal(channel_write_frame(p.c, data, sizeof(data)), 0);
	}
	assert_true(channel_pending_out(p.c) >= 100 * (4 + sizeof(data)));
	do {
		assert_int_equal(channel_take_out(p.c, buf, sizeof(buf), &n), 0);
		assert_int_equal(channel_feed(p.s, buf, n), 0);
		total += n;
	} while (n > 0);
	assert_true(total <= 100 * (4 + sizeof(data)) + 32);
	for (i = 0; i < 100; i++) {
		fill(data, sizeof(data), (uint32_t)i);
		expect_frame(p.s, data, sizeof(data));
	}
	expect_no_frame(p.s);
	pair_free(&p);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

static void
test_many_frames_throttled(void **state)
{
	const size_t maxf = 1000;
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("moh");
	uint8_t data[1000];
	struct pair p;
	int i;

	(void)state;
	pair_open(&p, cctx, sctx, maxf, BIG_OUT, 65536);
	for (i = 0; i < 200; i++) {
		fill(data, sizeof(data), (uint32_t)i);
		assert_int_equal(channel_write_frame(p.c, data, sizeof(data)), 0);
	}
	/* One feed of all of it (about 200 KB). */
	shuttle(&p, 65536);
	assert_int_equal(p.serr, 0);
	for (i = 0; i < 200; i++) {
		fill(data, sizeof(data), (uint32_t)i);
		expect_frame(p.s, data, sizeof(data));
	}
	expect_no_frame(p.s);
	assert_int_equal(channel_state(p.s), CHANNEL_OPEN);
	pair_free(&p);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

static void
test_frame_too_large(void **state)
{
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("moh");
	static uint8_t data[100000], chunk[17000];
	struct channel *s = NULL, *c = NULL;
	size_t n;
	int ferr = 0;

	(void)state;
	/* The server accepts 1 KiB, the client would send 100 KB. */
	assert_int_equal(channel_new(sctx, 1, NULL, 1024, BIG_OUT, &s), 0);
	assert_int_equal(channel_new(cctx, 0, "localhost", sizeof(data), BIG_OUT, &c), 0);
	while (move_bytes(c, s, 65536, &ferr) + move_bytes(s, c, 65536, &ferr) > 0) {
	}
	assert_int_equal(ferr, 0);
	assert_int_equal(channel_state(s), CHANNEL_OPEN);

	/* The sender refuses more than its own maximum. */
	assert_int_equal(channel_write_frame(s, data, 1025), IHALA_EFRAMESIZE);
	fill(data, sizeof(data), 3);
	assert_int_equal(channel_write_frame(c, data, sizeof(data)), 0);
	/* The first TLS record alone (header + 16 KiB) is enough to refuse it. */
	assert_int_equal(channel_take_out(c, chunk, sizeof(chunk), &n), 0);
	assert_int_equal(n, sizeof(chunk));
	assert_int_equal(channel_feed(s, chunk, n), IHALA_EFRAMESIZE);
	/* Input is refused for good, but TLS is intact: the state stays open. */
	assert_int_equal(channel_state(s), CHANNEL_OPEN);
	assert_int_equal(channel_error(s), IHALA_EFRAMESIZE);
	assert_contains(channel_error_text(s), "100000");
	expect_no_frame(s);
	assert_int_equal(channel_feed(s, chunk, 10), IHALA_EFRAMESIZE);

	/* TLS is intact: the server can still say why, and close. */
	assert_int_equal(channel_write_frame(s, (const uint8_t *)"too big", 7), 0);
	assert_int_equal(channel_close(s), 0);
	ferr = 0;
	move_bytes(s, c, 65536, &ferr);
	assert_int_equal(ferr, 0);
	expect_frame(c, (const uint8_t *)"too big", 7);
	assert_int_equal(channel_state(c), CHANNEL_CLOSED);

	channel_free(c);
	channel_free(s);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

/*
 * A refused handshake: both ends end FAILED (or CLOSED when the refusing end
 * only closed) with IHALA_EHANDSHAKE and a reason containing the given text.
 */
static void
expect_refused(SSL_CTX *cctx, SSL_CTX *sctx, const char *name, const char *server_says,
               const char *client_says)
{
	struct pair p;

	pair_new(&p, cctx, sctx, name, MAXF, BIG_OUT);
	shuttle(&p, 65536);
	/* The client may believe it is done (TLS 1.3); a frame it sends is never delivered. */
	if (channel_state(p.c) == CHANNEL_OPEN) {
		fail_msg("client still open; server: %s '%s'",
		         channel_state_name(channel_state(p.s)), channel_error_text(p.s));
	}
	if (server_says != NULL) {
		assert_int_equal(channel_state(p.s), CHANNEL_FAILED);
		assert_int_equal(channel_error(p.s), IHALA_EHANDSHAKE);
		assert_int_equal(p.serr, IHALA_EHANDSHAKE);
		assert_contains(channel_error_text(p.s), server_says);
		expect_no_frame(p.s);
	} else {
		assert_int_not_equal(channel_state(p.s), CHANNEL_OPEN);
	}
	assert_int_equal(channel_state(p.c), CHANNEL_FAILED);
	assert_int_equal(channel_error(p.c), IHALA_EHANDSHAKE);
	assert_contains(channel_error_text(p.c), client_says);
	assert_int_equal(channel_write_frame(p.c, (const uint8_t *)"x", 1), IHALA_ECLOSED);
	/* Refused stays refused. */
	assert_int_equal(channel_feed(p.c, (const uint8_t *)"\x17\x03\x03\x00\x01\x00", 6),
	                 IHALA_EHANDSHAKE);
	pair_free(&p);
}

static void
test_foreign_ca_refused(void **state)
{
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("foreign"), *cctx2;

	(void)state;
	expect_refused(cctx, sctx, "localhost", "unable to get local issuer certificate",
	               "unknown ca");
	/* A client that trusts only another CA refuses the broker itself. */
	cctx2 = client_ctx_ca("moh", "foreign-ca.pem");
	expect_refused(cctx2, sctx, "localhost", "unknown ca", "certificate verify failed");
	SSL_CTX_free(cctx2);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

static void
test_expired_refused(void **state)
{
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("expired");

	(void)state;
	expect_refused(cctx, sctx, "localhost", "certificate has expired", "certificate expired");
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

static void
test_revoked_refused(void **state)
{
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("revoked"), *nocrl = server_ctx();
	struct pair p;

	(void)state;
	expect_refused(cctx, sctx, "localhost",
	               "certificate revoked (depth 0, subject '/O=ihala test/CN=revoked')",
	               "alert certificate revoked");
	/*
	 * Proof that the CRL check is what refuses it: the same certificate
	 * passes once the flag is taken off (never done outside this test).
	 */
	assert_int_equal(
	    X509_VERIFY_PARAM_clear_flags(X509_STORE_get0_param(SSL_CTX_get_cert_store(nocrl)),
	                                  X509_V_FLAG_CRL_CHECK),
	    1);
	pair_open(&p, cctx, nocrl, MAXF, BIG_OUT, 65536);
	pair_free(&p);
	SSL_CTX_free(nocrl);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

static void
test_no_client_cert_refused(void **state)
{
	SSL_CTX *sctx = server_ctx(), *cctx;

	(void)state;
	cctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(cctx);
	assert_int_equal(SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION), 1);
	assert_int_equal(SSL_CTX_load_verify_file(cctx, pk("ca.pem")), 1);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
	assert_int_equal(SSL_CTX_set_alpn_protos(cctx, (const unsigned char *)"\x07ihala/2", 8), 0);
	expect_refused(cctx, sctx, "localhost", "peer did not return a certificate",
	               "certificate required");
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

static void
test_tls12_refused(void **state)
{
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("moh");

	(void)state;
	assert_int_equal(SSL_CTX_set_min_proto_version(cctx, TLS1_2_VERSION), 1);
	assert_int_equal(SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION), 1);
	expect_refused(cctx, sctx, "localhost", "unsupported protocol", "protocol version");
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

static void
test_wrong_server_name_refused(void **state)
{
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("moh");

	(void)state;
	expect_refused(cctx, sctx, "broker.elsewhere.example", "alert", "hostname mismatch");
	expect_refused(cctx, sctx, "127.0.0.2", "alert", "IP address mismatch");
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

static void
test_alpn_refused(void **state)
{
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("moh"), *plain;

	(void)state;
	/* The client offers another protocol. */
	assert_int_equal(SSL_CTX_set_alpn_protos(cctx, (const unsigned char *)"\x07other/1", 8), 0);
	expect_refused(cctx, sctx, "localhost", "ALPN", "no application protocol");
	/* A v1 client (before sealed parts) is told the version, not just "ALPN". */
	assert_int_equal(SSL_CTX_set_alpn_protos(cctx, (const unsigned char *)"\x07ihala/1", 8), 0);
	expect_refused(cctx, sctx, "localhost",
	               "speaks protocol ihala/1; this broker speaks only ihala/2",
	               "no application protocol");
	/* The client offers none at all. */
	assert_int_equal(SSL_CTX_set_alpn_protos(cctx, NULL, 0), 0);
	expect_refused(cctx, sctx, "localhost", "ALPN", "no application protocol");
	SSL_CTX_free(cctx);

	/* A server that does not do ALPN: the client refuses it, the server sees a close. */
	cctx = client_ctx("moh");
	plain = server_ctx();
	SSL_CTX_set_alpn_select_cb(plain, NULL, NULL);
	SSL_CTX_set_client_hello_cb(plain, NULL, NULL);
	expect_refused(cctx, plain, "localhost", NULL, "ALPN");
	SSL_CTX_free(plain);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

static void
test_backpressure(void **state)
{
	const size_t maxf = 4096;
	const size_t cap = channel_wire_size(maxf);
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("moh");
	uint8_t a[4096], b[4096];
	struct pair p;

	(void)state;
	pair_open(&p, cctx, sctx, maxf, cap, 65536);
	fill(a, sizeof(a), 1);
	fill(b, sizeof(b), 2);
	assert_int_equal(channel_write_frame(p.c, a, sizeof(a)), 0);
	assert_true(channel_pending_out(p.c) <= cap);
	/* Not drained yet: the next frame would go over the cap. */
	assert_int_equal(channel_write_frame(p.c, b, sizeof(b)), IHALA_EAGAIN);
	assert_int_equal(channel_write_frame(p.c, b, 100), IHALA_EAGAIN);
	/* Nothing of the refused frames went out. */
	shuttle(&p, 65536);
	expect_frame(p.s, a, sizeof(a));
	expect_no_frame(p.s);
	assert_int_equal(channel_pending_out(p.c), 0);
	/* Drained: the same frame now goes. */
	assert_int_equal(channel_write_frame(p.c, b, sizeof(b)), 0);
	shuttle(&p, 65536);
	expect_frame(p.s, b, sizeof(b));
	/* Small frames fill the cap too, then wait. */
	while (channel_write_frame(p.c, a, 100) == 0) {
		assert_true(channel_pending_out(p.c) <= cap);
	}
	assert_int_equal(channel_write_frame(p.c, a, 100), IHALA_EAGAIN);
	shuttle(&p, 65536);
	pair_free(&p);

	/* out_cap smaller than a frame: a frame still goes into an empty output, alone. */
	pair_open(&p, cctx, sctx, maxf, 1000, 65536);
	assert_int_equal(channel_write_frame(p.c, a, sizeof(a)), 0);
	assert_true(channel_pending_out(p.c) > 1000);
	assert_int_equal(channel_write_frame(p.c, b, 10), IHALA_EAGAIN);
	shuttle(&p, 65536);
	assert_int_equal(channel_write_frame(p.c, b, 10), 0);
	shuttle(&p, 65536);
	expect_frame(p.s, a, sizeof(a));
	expect_frame(p.s, b, 10);
	pair_free(&p);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

static void
test_garbage(void **state)
{
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("moh");
	static const char http[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
	static const uint8_t badrec[] = {
	    0x17, 0x03, 0x03, 0x00, 0x20, 1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14,
	    15,   16,   17,   18,   19,   20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
	static const uint8_t huge[] = {0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0, 0, 0};
	uint8_t junk[4096], out[65536];
	struct channel *s;
	struct pair p;
	size_t n;
	int i, rc;

	(void)state;
	/* Random bytes, an HTTP request, an oversized record header, a bad record. */
	for (i = 0; i < 20; i++) {
		assert_int_equal(channel_new(sctx, 1, NULL, MAXF, BIG_OUT, &s), 0);
		fill(junk, sizeof(junk), (uint32_t)i + 1000);
		if (i % 4 == 1) {
			junk[0] = 0x16; /* a complete handshake record of garbage */
			junk[1] = 0x03;
			junk[2] = 0x01;
			junk[3] = 0x00;
			junk[4] = 0x40;
		}
		rc = channel_feed(s, junk, sizeof(junk));
		assert_int_equal(rc, IHALA_EHANDSHAKE);
		assert_int_equal(channel_state(s), CHANNEL_FAILED);
		assert_true(channel_error_text(s)[0] != '\0');
		/* An alert may be waiting: taking it must work. */
		assert_int_equal(channel_take_out(s, out, sizeof(out), &n), 0);
		assert_int_equal(channel_feed(s, junk, 10), IHALA_EHANDSHAKE);
		assert_int_equal(channel_write_frame(s, junk, 10), IHALA_ECLOSED);
		channel_free(s);
	}
	assert_int_equal(channel_new(sctx, 1, NULL, MAXF, BIG_OUT, &s), 0);
	assert_int_equal(channel_feed(s, (const uint8_t *)http, sizeof(http) - 1),
	                 IHALA_EHANDSHAKE);
	channel_free(s);
	assert_int_equal(channel_new(sctx, 1, NULL, MAXF, BIG_OUT, &s), 0);
	assert_int_equal(channel_feed(s, huge, sizeof(huge)), IHALA_EHANDSHAKE);
	channel_free(s);
	assert_int_equal(channel_new(sctx, 1, NULL, MAXF, BIG_OUT, &s), 0);
	assert_int_equal(channel_feed(s, badrec, sizeof(badrec)), IHALA_EHANDSHAKE);
	channel_free(s);

	/* Garbage inside an open session. */
	pair_open(&p, cctx, sctx, MAXF, BIG_OUT, 65536);
	assert_int_equal(channel_feed(p.s, badrec, sizeof(badrec)), IHALA_ETLS);
	assert_int_equal(channel_state(p.s), CHANNEL_FAILED);
	assert_true(channel_error_text(p.s)[0] != '\0');
	assert_int_equal(channel_write_frame(p.s, junk, 1), IHALA_ECLOSED);
	pair_free(&p);
	/* A truncated stream (peer vanished mid-record) is not an error by itself. */
	pair_open(&p, cctx, sctx, MAXF, BIG_OUT, 65536);
	assert_int_equal(channel_write_frame(p.c, junk, 1000), 0);
	assert_int_equal(channel_take_out(p.c, out, 100, &n), 0);
	assert_int_equal(channel_feed(p.s, out, n), 0);
	expect_no_frame(p.s);
	assert_int_equal(channel_state(p.s), CHANNEL_OPEN);
	pair_free(&p);

	/* Arguments. */
	assert_int_equal(channel_feed(NULL, junk, 1), IHALA_EINVAL);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

static void
test_client_hello_detect(void **state)
{
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("moh");
	uint8_t out[65536], junk[64];
	struct channel *c;
	struct pair p;
	size_t n;

	(void)state;
	assert_int_equal(channel_new(cctx, 0, "localhost", MAXF, BIG_OUT, &c), 0);
	assert_true(channel_pending_out(c) > 0);
	assert_int_equal(channel_take_out(c, out, sizeof(out), &n), 0);
	assert_true(n > 9);
	assert_true(channel_is_client_hello(out, n));
	assert_true(channel_is_client_hello(out, 9));
	assert_false(channel_is_client_hello(out, 5));
	assert_false(channel_is_client_hello(NULL, 0));
	out[5] = 0x02; /* a ServerHello */
	assert_false(channel_is_client_hello(out, n));
	channel_free(c);

	fill(junk, sizeof(junk), 5);
	junk[0] = 0x17;
	assert_false(channel_is_client_hello(junk, sizeof(junk)));
	assert_false(channel_is_client_hello((const uint8_t *)"GET / HTTP/1.1\r\n", 16));

	/* Application data of an open session is not a ClientHello. */
	pair_open(&p, cctx, sctx, MAXF, BIG_OUT, 65536);
	assert_int_equal(channel_write_frame(p.c, (const uint8_t *)"\x16\x03\x01\x00\x10\x01", 6),
	                 0);
	assert_int_equal(channel_take_out(p.c, out, sizeof(out), &n), 0);
	assert_true(n > 0);
	assert_false(channel_is_client_hello(out, n));
	/* Nor is the server's first flight. */
	pair_free(&p);
	pair_new(&p, cctx, sctx, "localhost", MAXF, BIG_OUT);
	p.serr = 0;
	move_bytes(p.c, p.s, 65536, &p.serr);
	assert_int_equal(channel_take_out(p.s, out, sizeof(out), &n), 0);
	assert_true(n > 0);
	assert_false(channel_is_client_hello(out, n));
	pair_free(&p);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

/* Identity from odd certificates, built in memory. */
static X509 *
id_cert(const char *cn, int cnlen, const char *const *uris, const int *lens, int nuris)
{
	EVP_PKEY *k = gen_key();
	X509 *c = cert_new(k, cn, cnlen, -1, 30);

	assert_int_equal(X509_set_issuer_name(c, X509_get_subject_name(pki.ca)), 1);
	if (nuris > 0) {
		cert_san_uris(c, uris, lens, nuris);
	}
	cert_sign(c, pki.cakey);
	EVP_PKEY_free(k);
	return c;
}

static int
id_of(X509 *c, char *agency)
{
	int rc = tls_cert_identity(c, agency, ID_AGENCY_MAX + 1, NULL);

	X509_free(c);
	return rc;
}

static void
test_identity_rules(void **state)
{
	const char *u_hi[] = {"ihala:agency:hi"};
	const char *u_two[] = {"ihala:agency:hi", "ihala:agency:moh"};
	const char *u_same[] = {"ihala:agency:hi", "https://example.org/x", "ihala:agency:hi"};
	const char *u_other[] = {"https://example.org/moh"};
	const char *u_bad[] = {"ihala:agency:Mo H"};
	const char *u_nul[] = {"ihala:agency:moh\0evil"};
	const char *u_empty[] = {"ihala:agency:"};
	const int l_hi[] = {15}, l_two[] = {15, 16}, l_same[] = {15, 21, 15};
	const int l_other[] = {23}, l_bad[] = {17}, l_nul[] = {21}, l_empty[] = {13};
	char agency[ID_AGENCY_MAX + 1];
	char long_id[ID_AGENCY_MAX + 2];
	uint8_t fp[TLS_FP_LEN], want[32];
	X509 *c, *twocn;

	(void)state;
	/* The SAN URI wins over the CN. */
	assert_int_equal(id_of(id_cert("something-else", 14, u_hi, l_hi, 1), agency), 0);
	assert_string_equal(agency, "hi");
	assert_int_equal(id_of(id_cert("x", 1, u_same, l_same, 3), agency), 0);
	assert_string_equal(agency, "hi");
	/* CN when there is no ihala URI. */
	assert_int_equal(id_of(id_cert("molsa", 5, NULL, NULL, 0), agency), 0);
	assert_string_equal(agency, "molsa");
	assert_int_equal(id_of(id_cert("a_b-9", 5, u_other, l_other, 1), agency), 0);
	assert_string_equal(agency, "a_b-9");
	/* Refusals. */
	assert_int_equal(id_of(id_cert("moh", 3, u_two, l_two, 2), agency), IHALA_ECERT);
	assert_int_equal(id_of(id_cert("moh", 3, u_bad, l_bad, 1), agency), IHALA_ECERT);
	assert_int_equal(id_of(id_cert("moh", 3, u_nul, l_nul, 1), agency), IHALA_ECERT);
	assert_int_equal(id_of(id_cert("moh", 3, u_empty, l_empty, 1), agency), IHALA_ECERT);
	assert_int_equal(id_of(id_cert("moh\0evil", 8, NULL, NULL, 0), agency), IHALA_ECERT);
	assert_int_equal(id_of(id_cert("MoH", 3, NULL, NULL, 0), agency), IHALA_ECERT);
	assert_int_equal(id_of(id_cert("moh.gov", 7, NULL, NULL, 0), agency), IHALA_ECERT);
	assert_int_equal(id_of(id_cert("", 0, NULL, NULL, 0), agency), IHALA_ECERT);
	assert_int_equal(id_of(id_cert(NULL, 0, NULL, NULL, 0), agency), IHALA_ECERT);
	memset(long_id, 'a', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	assert_int_equal(id_of(id_cert(long_id, ID_AGENCY_MAX + 1, NULL, NULL, 0), agency),
	                 IHALA_ECERT);
	assert_int_equal(id_of(id_cert(long_id, ID_AGENCY_MAX, NULL, NULL, 0), agency), 0);
	assert_int_equal(strlen(agency), ID_AGENCY_MAX);
	/* Two CNs. */
	twocn = id_cert("moh", 3, NULL, NULL, 0);
	assert_int_equal(X509_NAME_add_entry_by_NID(X509_get_subject_name(twocn), NID_commonName,
	                                            V_ASN1_UTF8STRING, (const unsigned char *)"dma",
	                                            3, -1, 0),
	                 1);
	assert_int_equal(id_of(twocn, agency), IHALA_ECERT);

	/* Fingerprint: SHA-256 of the DER, and arguments. */
	c = read_cert(pk("moh.pem"));
	assert_int_equal(tls_cert_identity(c, agency, sizeof(agency), fp), 0);
	sha256_der(c, want);
	assert_memory_equal(fp, want, 32);
	assert_int_equal(tls_cert_identity(c, agency, ID_AGENCY_MAX, fp), IHALA_EINVAL);
	assert_int_equal(tls_cert_identity(NULL, agency, sizeof(agency), fp), IHALA_EINVAL);
	X509_free(c);
	c = read_cert(pk("stranger.pem"));
	assert_int_equal(tls_cert_identity(c, agency, sizeof(agency), fp), 0);
	assert_string_equal(agency, "stranger"); /* valid id; not configured is the broker's call */
	X509_free(c);
}

/* What the broker does on SIGHUP: re-verify live sessions against a fresh context. */
static void
test_reverify_on_reload(void **state)
{
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("moh"), *fresh, *other;
	struct tls_files f = {pk("foreign-ca.pem"), pk("ca.crl"), pk("broker.pem"),
	                      pk("broker.key")};
	long revoked[2];
	char err[256];
	struct pair p;
	X509 *c;

	(void)state;
	pair_open(&p, cctx, sctx, MAXF, BIG_OUT, 65536);
	assert_int_equal(tlsctx_verify_cert(sctx, channel_peer_cert(p.s),
	                                    SSL_get_peer_cert_chain(channel_ssl(p.s)), err,
	                                    sizeof(err)),
	                 0);
	/* Other certificates against the same context. */
	c = read_cert(pk("revoked.pem"));
	assert_int_equal(tlsctx_verify_cert(sctx, c, NULL, err, sizeof(err)), IHALA_EREVOKED);
	assert_contains(err, "certificate revoked");
	X509_free(c);
	c = read_cert(pk("expired.pem"));
	assert_int_equal(tlsctx_verify_cert(sctx, c, NULL, err, sizeof(err)), IHALA_ECERT);
	assert_contains(err, "expired");
	X509_free(c);
	c = read_cert(pk("foreign.pem"));
	assert_int_equal(tlsctx_verify_cert(sctx, c, NULL, err, sizeof(err)), IHALA_ECERT);
	assert_contains(err, "issuer");
	X509_free(c);
	assert_int_equal(tlsctx_verify_cert(sctx, NULL, NULL, err, sizeof(err)), IHALA_EINVAL);

	/* The CA revokes moh; the broker reloads: the live session no longer verifies. */
	revoked[0] = pki.revoked_serial;
	revoked[1] = pki.moh_serial;
	write_crl(pk("ca2.crl"), revoked, 2, 30);
	fresh = server_ctx_crl(pk("ca2.crl"));
	assert_int_equal(tlsctx_verify_cert(fresh, channel_peer_cert(p.s),
	                                    SSL_get_peer_cert_chain(channel_ssl(p.s)), err,
	                                    sizeof(err)),
	                 IHALA_EREVOKED);
	assert_contains(err, "revoked");
	/* A new moh session is refused by the fresh context; the old one still works. */
	SSL_CTX_free(sctx); /* the old session holds its own reference */
	sctx = NULL;
	assert_int_equal(channel_write_frame(p.c, (const uint8_t *)"still", 5), 0);
	shuttle(&p, 65536);
	expect_frame(p.s, (const uint8_t *)"still", 5);
	expect_refused(cctx, fresh, "localhost", "certificate revoked", "certificate revoked");

	/* A context that trusts another CA entirely refuses the session's certificate. */
	if (tlsctx_server_new(&f, &other, err, sizeof(err)) != 0) {
		fail_msg("%s", err);
	}
	assert_int_equal(tlsctx_verify_cert(other, channel_peer_cert(p.s), NULL, err, sizeof(err)),
	                 IHALA_ECERT);
	SSL_CTX_free(other);
	pair_free(&p);
	SSL_CTX_free(fresh);
	SSL_CTX_free(cctx);
}

static void
test_tlsctx_errors(void **state)
{
	struct tls_files f = {pk("ca.pem"), pk("ca.crl"), pk("broker.pem"), pk("broker.key")};
	const char *key640 = pk("key640.key");
	SSL_CTX *ctx = NULL;
	EVP_PKEY *k;
	char err[512];
	FILE *fp;

	(void)state;
	/* Missing certificate: says which file and why. */
	f.cert_file = "/nonexistent/broker.pem";
	assert_int_equal(tlsctx_server_new(&f, &ctx, err, sizeof(err)), IHALA_ECONFIG);
	assert_contains(err, "cannot load certificate '/nonexistent/broker.pem'");
	assert_contains(err, "No such file");
	assert_null(ctx);
	/* Not a certificate: OpenSSL's reason is included. */
	fp = fopen(pk("junk.pem"), "w");
	assert_non_null(fp);
	fputs("hello\n", fp);
	fclose(fp);
	f.cert_file = pk("junk.pem");
	assert_int_equal(tlsctx_server_new(&f, &ctx, err, sizeof(err)), IHALA_ECONFIG);
	assert_contains(err, "cannot load certificate '");
	assert_contains(err, "junk.pem': ");
	assert_contains(err, "no start line");
	f.cert_file = pk("broker.pem");
	/* Missing CA and CRL. */
	f.ca_file = pk("nope.pem");
	assert_int_equal(tlsctx_server_new(&f, &ctx, err, sizeof(err)), IHALA_ECONFIG);
	assert_contains(err, "cannot load CA file");
	f.ca_file = pk("ca.pem");
	f.crl_file = pk("junk.pem");
	assert_int_equal(tlsctx_server_new(&f, &ctx, err, sizeof(err)), IHALA_ECONFIG);
	assert_contains(err, "cannot load CRL");
	/* The server needs a CRL; a client may do without. */
	f.crl_file = NULL;
	assert_int_equal(tlsctx_server_new(&f, &ctx, err, sizeof(err)), IHALA_EINVAL);
	assert_contains(err, "CRL");
	f.cert_file = pk("moh.pem");
	f.key_file = pk("moh.key");
	assert_int_equal(tlsctx_client_new(&f, &ctx, err, sizeof(err)), 0);
	SSL_CTX_free(ctx);
	ctx = NULL;
	/* An expired CRL would refuse everyone: refused at load. */
	write_crl(pk("old.crl"), &pki.revoked_serial, 1, -2);
	f.crl_file = pk("old.crl");
	f.cert_file = pk("broker.pem");
	f.key_file = pk("broker.key");
	assert_int_equal(tlsctx_server_new(&f, &ctx, err, sizeof(err)), IHALA_ECONFIG);
	assert_contains(err, "expired");
	f.crl_file = pk("ca.crl");

	/* Keys readable by group or others are refused, before being read. */
	k = gen_key();
	write_key(key640, k, 0640);
	f.key_file = key640;
	assert_int_equal(tlsctx_server_new(&f, &ctx, err, sizeof(err)), IHALA_EKEYPERM);
	assert_contains(err, "chmod 600");
	assert_int_equal(chmod(key640, 0604), 0);
	assert_int_equal(tlsctx_client_new(&f, &ctx, err, sizeof(err)), IHALA_EKEYPERM);
	assert_int_equal(chmod(key640, 0400), 0);
	/* Mode fine now, but it is not broker.pem's key. */
	assert_int_equal(tlsctx_server_new(&f, &ctx, err, sizeof(err)), IHALA_ECONFIG);
	assert_contains(err, "does not match");
	EVP_PKEY_free(k);
	/* Missing key. */
	f.key_file = pk("nokey.key");
	assert_int_equal(tlsctx_server_new(&f, &ctx, err, sizeof(err)), IHALA_ECONFIG);
	assert_contains(err, "No such file");
	/* Not a key. */
	assert_int_equal(chmod(pk("junk.pem"), 0600), 0);
	f.key_file = pk("junk.pem");
	assert_int_equal(tlsctx_server_new(&f, &ctx, err, sizeof(err)), IHALA_ECONFIG);
	assert_contains(err, "cannot load private key");
	assert_null(ctx);
	/* Argument checks; err may be NULL. */
	assert_int_equal(tlsctx_server_new(NULL, &ctx, NULL, 0), IHALA_EINVAL);
	/* The error queue is left empty for the next peer. */
	assert_int_equal(ERR_peek_error(), 0);
}

/* Run config/pki/mkpki DIR (from IHALA_ROOT or the current directory); 0 when it worked. */
static int
run_mkpki(const char *dir)
{
	const char *root = getenv("IHALA_ROOT");
	char script[PATH_MAX];
	pid_t pid;
	int st;

	if (snprintf(script, sizeof(script), "%s/config/pki/mkpki",
	             root != NULL && root[0] != '\0' ? root : ".") >= (int)sizeof(script) ||
	    access(script, X_OK) != 0) {
		return -1;
	}
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(STDERR_FILENO, STDOUT_FILENO); /* keep the TAP stream clean */
		execl(script, script, "--test-fixtures", dir, (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/*
 * The dev PKI of config/pki/mkpki: IHALA_PKI as the suite runner makes it,
 * or made here when the script is at hand.
 */
static void
test_dev_pki(void **state)
{
	const char *dir = getenv("IHALA_PKI");
	const char *refused[] = {"revoked", "expired", "foreign"};
	const char *agencies[] = {"dma", "moh", "molsa", "hi", "auditor"};
	char ca[PATH_MAX], crl[PATH_MAX], crl2[PATH_MAX], bc[PATH_MAX], bk[PATH_MAX];
	char cc[PATH_MAX], ck[PATH_MAX], err[512], agency[ID_AGENCY_MAX + 1];
	SSL_CTX *sctx = NULL, *cctx = NULL, *reload = NULL;
	struct tls_files sf, cf;
	struct pair p;
	size_t i;

	(void)state;
	if (dir == NULL || dir[0] == '\0') {
		dir = pk("dev");
		if (run_mkpki(dir) != 0) {
			skip(); /* no IHALA_PKI and no config/pki/mkpki to make one */
		}
	}
	if (strlen(dir) > PATH_MAX - 64) {
		fail_msg("IHALA_PKI too long");
	}
	assert_true(snprintf(ca, sizeof(ca), "%s/ca.pem", dir) < PATH_MAX);
	assert_true(snprintf(crl, sizeof(crl), "%s/ca.crl", dir) < PATH_MAX);
	assert_true(snprintf(crl2, sizeof(crl2), "%s/ca-hi-revoked.crl", dir) < PATH_MAX);
	assert_true(snprintf(bc, sizeof(bc), "%s/broker.pem", dir) < PATH_MAX);
	assert_true(snprintf(bk, sizeof(bk), "%s/broker.key", dir) < PATH_MAX);
	sf = (struct tls_files){ca, crl, bc, bk};
	cf = (struct tls_files){ca, crl, cc, ck}; /* cc, ck filled per agency */
	if (tlsctx_server_new(&sf, &sctx, err, sizeof(err)) != 0) {
		fail_msg("dev PKI broker: %s", err);
	}
	/* Every agency connects, under its own id. */
	for (i = 0; i < sizeof(agencies) / sizeof(agencies[0]); i++) {
		assert_true(snprintf(cc, sizeof(cc), "%s/%s.pem", dir, agencies[i]) < PATH_MAX);
		assert_true(snprintf(ck, sizeof(ck), "%s/%s.key", dir, agencies[i]) < PATH_MAX);
		cctx = NULL;
		if (tlsctx_client_new(&cf, &cctx, err, sizeof(err)) != 0) {
			fail_msg("dev PKI %s: %s", agencies[i], err);
		}
		pair_open(&p, cctx, sctx, MAXF, BIG_OUT, 65536);
		assert_int_equal(tls_peer_identity(channel_ssl(p.s), agency, sizeof(agency), NULL),
		                 0);
		assert_string_equal(agency, agencies[i]);
		assert_int_equal(
		    tlsctx_verify_cert(sctx, channel_peer_cert(p.s), NULL, err, sizeof(err)), 0);
		if (strcmp(agencies[i], "hi") == 0 && access(crl2, R_OK) == 0) {
			/* Reload with the CRL that revokes hi: its live session fails. */
			sf.crl_file = crl2;
			if (tlsctx_server_new(&sf, &reload, err, sizeof(err)) != 0) {
				fail_msg("dev PKI reload: %s", err);
			}
			sf.crl_file = crl;
			assert_int_equal(tlsctx_verify_cert(reload, channel_peer_cert(p.s), NULL,
			                                    err, sizeof(err)),
			                 IHALA_EREVOKED);
			SSL_CTX_free(reload);
		}
		pair_free(&p);
		SSL_CTX_free(cctx);
	}
	/* Its test certificates are refused. */
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		assert_true(snprintf(cc, sizeof(cc), "%s/%s.pem", dir, refused[i]) < PATH_MAX);
		assert_true(snprintf(ck, sizeof(ck), "%s/%s.key", dir, refused[i]) < PATH_MAX);
		cctx = NULL;
		if (tlsctx_client_new(&cf, &cctx, err, sizeof(err)) != 0) {
			fail_msg("dev PKI %s: %s", refused[i], err);
		}
		pair_new(&p, cctx, sctx, "localhost", MAXF, BIG_OUT);
		shuttle(&p, 65536);
		assert_int_equal(channel_state(p.s), CHANNEL_FAILED);
		assert_int_equal(channel_error(p.s), IHALA_EHANDSHAKE);
		assert_int_equal(channel_state(p.c), CHANNEL_FAILED);
		assert_contains(channel_error_text(p.s), i == 0   ? "certificate revoked"
		                                         : i == 1 ? "certificate has expired"
		                                                  : "unable to get local issuer");
		pair_free(&p);
		SSL_CTX_free(cctx);
	}
	SSL_CTX_free(sctx);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_handshake_identity),
	    cmocka_unit_test(test_server_name_forms),
	    cmocka_unit_test(test_frames_both_ways),
	    cmocka_unit_test(test_large_frames),
	    cmocka_unit_test(test_byte_by_byte),
	    cmocka_unit_test(test_split_anywhere),
	    cmocka_unit_test(test_split_refusals),
	    cmocka_unit_test(test_small_frames_share_records),
	    cmocka_unit_test(test_many_frames_throttled),
	    cmocka_unit_test(test_frame_too_large),
	    cmocka_unit_test(test_foreign_ca_refused),
	    cmocka_unit_test(test_expired_refused),
	    cmocka_unit_test(test_revoked_refused),
	    cmocka_unit_test(test_no_client_cert_refused),
	    cmocka_unit_test(test_tls12_refused),
	    cmocka_unit_test(test_wrong_server_name_refused),
	    cmocka_unit_test(test_alpn_refused),
	    cmocka_unit_test(test_backpressure),
	    cmocka_unit_test(test_garbage),
	    cmocka_unit_test(test_client_hello_detect),
	    cmocka_unit_test(test_identity_rules),
	    cmocka_unit_test(test_reverify_on_reload),
	    cmocka_unit_test(test_tlsctx_errors),
	    cmocka_unit_test(test_dev_pki),
	};

	return cmocka_run_group_tests(tests, pki_setup, pki_teardown);
}
