/* tlsctx_test.c - TLS contexts from the dev PKI of config/pki/mkpki, key secrecy, identities, CRLs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "error.h"
#include "tlsctx.h"
#include "testpki.h"

static char dir[512];

static const char *
pk(const char *name)
{
	return testpki_path(dir, name);
}

static int
setup(void **state)
{
	(void)state;
	return testpki_make("tlsctx_test", dir, sizeof(dir));
}

static int
teardown(void **state)
{
	(void)state;
	testpki_remove(dir);
	return 0;
}

static int
server_new(const char *crl, const char *name, SSL_CTX **ctx, char *err, size_t errlen)
{
	char cert[64], key[64];
	struct tls_files tf;

	snprintf(cert, sizeof(cert), "%s.pem", name);
	snprintf(key, sizeof(key), "%s.key", name);
	tf.ca_file = pk("ca.pem");
	tf.crl_file = crl != NULL ? pk(crl) : NULL;
	tf.cert_file = pk(cert);
	tf.key_file = pk(key);
	return tlsctx_server_new(&tf, ctx, err, errlen);
}

static X509 *
read_cert(const char *name)
{
	FILE *fp = fopen(pk(name), "r");
	X509 *x;

	assert_non_null(fp);
	x = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	assert_non_null(x);
	return x;
}

/* Both sides build from the PKI; the server insists on a CRL. */
static void
test_contexts(void **state)
{
	struct tls_files tf;
	SSL_CTX *ctx = NULL;
	char err[512];

	(void)state;
	assert_int_equal(server_new("ca.crl", "broker", &ctx, err, sizeof(err)), 0);
	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_3_VERSION);
	assert_true(SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
	SSL_CTX_free(ctx);
	ctx = NULL;

	tf.ca_file = pk("ca.pem");
	tf.crl_file = NULL;
	tf.cert_file = pk("dma.pem");
	tf.key_file = pk("dma.key");
	assert_int_equal(tlsctx_client_new(&tf, &ctx, err, sizeof(err)), 0);
	assert_non_null(ctx);
	assert_true(SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER);
	SSL_CTX_free(ctx);
	ctx = NULL;

	assert_int_equal(server_new(NULL, "broker", &ctx, err, sizeof(err)), IHALA_EINVAL);
	assert_non_null(strstr(err, "CRL"));
	assert_int_equal(server_new("no-such.crl", "broker", &ctx, err, sizeof(err)),
	                 IHALA_ECONFIG);
	assert_non_null(strstr(err, "no-such.crl"));
	/* a key that is not the certificate's */
	tf.ca_file = pk("ca.pem");
	tf.cert_file = pk("dma.pem");
	tf.key_file = pk("moh.key");
	assert_int_equal(tlsctx_client_new(&tf, &ctx, err, sizeof(err)), IHALA_ECONFIG);
	assert_non_null(strstr(err, "does not match"));
	assert_null(ctx);
}

/* A private key group or others may read is refused before it is read. */
static void
test_key_secrecy(void **state)
{
	static const mode_t bad[] = {0644, 0640, 0604, 0660, 0610};
	struct tls_files tf;
	SSL_CTX *ctx = NULL;
	char err[512], cmd[2048];
	size_t i;

	(void)state;
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", pk("dma.key"), pk("loose.key"));
	assert_int_equal(system(cmd), 0);
	tf.ca_file = pk("ca.pem");
	tf.crl_file = NULL;
	tf.cert_file = pk("dma.pem");
	tf.key_file = pk("loose.key");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(chmod(tf.key_file, bad[i]), 0);
		err[0] = '\0';
		assert_int_equal(tlsctx_client_new(&tf, &ctx, err, sizeof(err)), IHALA_EKEYPERM);
		assert_null(ctx);
		assert_non_null(strstr(err, "loose.key"));
		assert_non_null(strstr(err, "chmod 600"));
	}
	assert_int_equal(chmod(tf.key_file, 0600), 0);
	assert_int_equal(tlsctx_client_new(&tf, &ctx, err, sizeof(err)), 0);
	SSL_CTX_free(ctx);
	ctx = NULL;
	assert_int_equal(chmod(tf.key_file, 0400), 0);
	assert_int_equal(tlsctx_client_new(&tf, &ctx, err, sizeof(err)), 0);
	SSL_CTX_free(ctx);
	unlink(tf.key_file);
}

/* The agency id comes from the SAN URI ihala:agency:ID, else the CN; the fingerprint is the
 * SHA-256 of the DER. */
static void
test_identity(void **state)
{
	static const char *const agencies[] = {"dma", "moh", "molsa", "hi", "auditor"};
	uint8_t fp[TLS_FP_LEN], want[TLS_FP_LEN], *der = NULL;
	char agency[ID_AGENCY_MAX + 1], name[32];
	unsigned int n = 0;
	int len;
	size_t i;
	X509 *x;

	(void)state;
	for (i = 0; i < sizeof(agencies) / sizeof(agencies[0]); i++) {
		snprintf(name, sizeof(name), "%s.pem", agencies[i]);
		x = read_cert(name);
		assert_int_equal(tls_cert_identity(x, agency, sizeof(agency), fp), 0);
		assert_string_equal(agency, agencies[i]);
		len = i2d_X509(x, &der);
		assert_true(len > 0);
		assert_int_equal(EVP_Digest(der, (size_t)len, want, &n, EVP_sha256(), NULL), 1);
		assert_int_equal(n, TLS_FP_LEN);
		assert_memory_equal(fp, want, TLS_FP_LEN);
		OPENSSL_free(der);
		der = NULL;
		X509_free(x);
	}
	/* moh-alt: the same agency, another certificate, another fingerprint */
	x = read_cert("moh-alt.pem");
	assert_int_equal(tls_cert_identity(x, agency, sizeof(agency), want), 0);
	assert_string_equal(agency, "moh");
	X509_free(x);
	x = read_cert("moh.pem");
	assert_int_equal(tls_cert_identity(x, agency, sizeof(agency), fp), 0);
	assert_memory_not_equal(fp, want, TLS_FP_LEN);
	/* a buffer too small for the longest id */
	assert_int_equal(tls_cert_identity(x, agency, ID_AGENCY_MAX, NULL), IHALA_EINVAL);
	X509_free(x);
	/* no SAN URI: the CN */
	x = read_cert("broker.pem");
	assert_int_equal(tls_cert_identity(x, agency, sizeof(agency), NULL), 0);
	assert_string_equal(agency, "broker");
	X509_free(x);
}

/* The server context checks the CRL: revoked is refused as revoked, hi only with the CRL
 * that lists it; expired and foreign certificates are refused too. */
static void
test_crl(void **state)
{
	SSL_CTX *ctx = NULL, *ctx2 = NULL;
	char err[512];
	X509 *x;

	(void)state;
	assert_int_equal(server_new("ca.crl", "broker", &ctx, err, sizeof(err)), 0);
	assert_int_equal(server_new("ca-hi-revoked.crl", "broker", &ctx2, err, sizeof(err)), 0);

	x = read_cert("dma.pem");
	assert_int_equal(tlsctx_verify_cert(ctx, x, NULL, err, sizeof(err)), 0);
	assert_int_equal(tlsctx_verify_cert(ctx2, x, NULL, err, sizeof(err)), 0);
	X509_free(x);

	x = read_cert("revoked.pem");
	assert_int_equal(tlsctx_verify_cert(ctx, x, NULL, err, sizeof(err)), IHALA_EREVOKED);
	assert_string_equal(err, "certificate revoked");
	X509_free(x);

	x = read_cert("hi.pem");
	assert_int_equal(tlsctx_verify_cert(ctx, x, NULL, err, sizeof(err)), 0);
	assert_int_equal(tlsctx_verify_cert(ctx2, x, NULL, err, sizeof(err)), IHALA_EREVOKED);
	X509_free(x);

	x = read_cert("expired.pem");
	assert_int_equal(tlsctx_verify_cert(ctx, x, NULL, err, sizeof(err)), IHALA_ECERT);
	assert_non_null(strstr(err, "expired"));
	X509_free(x);

	x = read_cert("foreign.pem");
	assert_int_equal(tlsctx_verify_cert(ctx, x, NULL, err, sizeof(err)), IHALA_ECERT);
	X509_free(x);

	assert_int_equal(tlsctx_verify_cert(ctx, NULL, NULL, err, sizeof(err)), IHALA_EINVAL);
	SSL_CTX_free(ctx);
	SSL_CTX_free(ctx2);
}

/* The CRL's nextUpdate, as the metrics and the expiry warning read it: the file's own. */
static void
test_crl_next_update(void **state)
{
	SSL_CTX *ctx = NULL;
	X509_CRL *crl;
	FILE *fp;
	struct tm tm;
	int64_t when = 0, want;
	char err[512];

	(void)state;
	fp = fopen(pk("ca.crl"), "r");
	assert_non_null(fp);
	crl = PEM_read_X509_CRL(fp, NULL, NULL, NULL);
	fclose(fp);
	assert_non_null(crl);
	assert_int_equal(ASN1_TIME_to_tm(X509_CRL_get0_nextUpdate(crl), &tm), 1);
	want = (int64_t)timegm(&tm);
	X509_CRL_free(crl);

	assert_int_equal(server_new("ca.crl", "broker", &ctx, err, sizeof(err)), 0);
	assert_int_equal(tlsctx_crl_next_update(ctx, &when), 0);
	assert_int_equal(when, want);
	assert_true(when > (int64_t)time(NULL));
	SSL_CTX_free(ctx);
	ctx = NULL;

	/* a client context without a CRL: none */
	{
		struct tls_files tf = {pk("ca.pem"), NULL, pk("dma.pem"), pk("dma.key")};

		assert_int_equal(tlsctx_client_new(&tf, &ctx, err, sizeof(err)), 0);
	}
	when = 7;
	assert_int_equal(tlsctx_crl_next_update(ctx, &when), IHALA_EINVAL);
	assert_int_equal(when, 7);
	assert_int_equal(tlsctx_crl_next_update(NULL, &when), IHALA_EINVAL);
	SSL_CTX_free(ctx);
}

/* A renewed server context reads CA and CRL again but keeps the certificate and key of the
 * context given, without reading the key file (a broker reloading after dropping root). */
static void
test_renew(void **state)
{
	SSL_CTX *ctx = NULL, *ctx2 = NULL;
	struct tls_files tf;
	char err[512];
	X509 *x;

	(void)state;
	assert_int_equal(server_new("ca.crl", "broker", &ctx, err, sizeof(err)), 0);
	memset(&tf, 0, sizeof(tf));
	tf.ca_file = pk("ca.pem");
	tf.crl_file = pk("ca-hi-revoked.crl");
	tf.key_file = "/nonexistent/broker.key"; /* not read */
	assert_int_equal(tlsctx_server_renew(&tf, NULL, &ctx2, err, sizeof(err)), IHALA_EINVAL);
	assert_int_equal(tlsctx_server_renew(&tf, ctx, &ctx2, err, sizeof(err)), 0);
	assert_int_equal(X509_cmp(SSL_CTX_get0_certificate(ctx), SSL_CTX_get0_certificate(ctx2)),
	                 0);
	assert_int_equal(EVP_PKEY_eq(SSL_CTX_get0_privatekey(ctx), SSL_CTX_get0_privatekey(ctx2)),
	                 1);
	x = read_cert("hi.pem");
	assert_int_equal(tlsctx_verify_cert(ctx, x, NULL, err, sizeof(err)), 0);
	assert_int_equal(tlsctx_verify_cert(ctx2, x, NULL, err, sizeof(err)), IHALA_EREVOKED);
	X509_free(x);
	/* The old context may go first: the new one holds its own references. */
	SSL_CTX_free(ctx);
	assert_non_null(SSL_CTX_get0_privatekey(ctx2));
	assert_int_equal(SSL_CTX_check_private_key(ctx2), 1);
	SSL_CTX_free(ctx2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_contexts),        cmocka_unit_test(test_key_secrecy),
	    cmocka_unit_test(test_identity),        cmocka_unit_test(test_crl),
	    cmocka_unit_test(test_crl_next_update), cmocka_unit_test(test_renew),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
