/* seal_test.c - sealed parts (proto/seal): round trips, tampering, refused certs, rotation, and
 * interoperability with the openssl command line, on the dev PKI of config/pki/mkpki.
 */
#define _GNU_SOURCE /* memmem */
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

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "error.h"
#include "seal.h"
#include "testpki.h"

static char dir[512];
static struct seal_trust *trust;
static const char survivor[] = "{\"name\":\"Zeynab Qadir-Hawrami\",\"birth_year\":1987}";

static const char *
pk(const char *name)
{
	return testpki_path(dir, name);
}

static X509 *
cert(const char *name)
{
	X509 *x = NULL;
	FILE *fp = fopen(pk(name), "r");

	assert_non_null(fp);
	x = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	assert_non_null(x);
	return x;
}

/* A keyring of the named agency encryption keys: "moh-enc" loads moh-enc.crt/.key. */
static struct seal_keyring *
keyring(const char *a, const char *b)
{
	struct seal_keyring *kr = NULL;
	char crt[128], key[128], err[512];

	assert_int_equal(seal_keyring_new(&kr), 0);
	for (const char *n = a; n != NULL; n = n == a ? b : NULL) {
		snprintf(crt, sizeof(crt), "%s.crt", n);
		snprintf(key, sizeof(key), "%s.key", n);
		if (seal_keyring_load(kr, pk(crt), pk(key), err, sizeof(err)) != 0) {
			fail_msg("keyring %s: %s", n, err);
		}
	}
	return kr;
}

static void
write_file(const char *path, const void *buf, size_t len)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(buf, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

static uint8_t *
read_file(const char *path, size_t *len)
{
	static uint8_t buf[SEAL_DER_MAX + 1];
	FILE *fp = fopen(path, "rb");

	assert_non_null(fp);
	*len = fread(buf, 1, sizeof(buf), fp);
	fclose(fp);
	return buf;
}

/* Seal survivor to the given agencies' current encryption certificates ("moh" -> moh-enc). */
static int
seal_to(const char *const *agencies, size_t n, uint8_t **der, size_t *derlen, char *err,
        size_t errlen)
{
	struct seal_recipient r[SEAL_RECIPIENTS_MAX] = {{0}};
	char name[64];
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "%s-enc.crt", agencies[i]);
		r[i].agency = agencies[i];
		r[i].cert = cert(name);
	}
	rc = seal_bytes(trust, r, n, (const uint8_t *)survivor, sizeof(survivor) - 1, der, derlen,
	                err, errlen);
	for (i = 0; i < n; i++) {
		X509_free(r[i].cert);
	}
	return rc;
}

/* 0 and the content checked when kr opens der, else the code. */
static int
opens(struct seal_keyring *kr, const uint8_t *der, size_t derlen)
{
	uint8_t *plain = NULL;
	size_t len = 0;
	char err[512];
	int rc;

	rc = seal_open(kr, der, derlen, &plain, &len, err, sizeof(err));
	if (rc != 0) {
		assert_null(plain);
		assert_true(err[0] != '\0');
		print_message("# seal_open: %s\n", err);
		return rc;
	}
	assert_int_equal(len, sizeof(survivor) - 1);
	assert_memory_equal(plain, survivor, len);
	free(plain);
	return 0;
}

static int
setup(void **state)
{
	char err[512];

	(void)state;
	if (testpki_make("seal_test", dir, sizeof(dir)) != 0) {
		return -1;
	}
	if (seal_trust_new(pk("ca.pem"), NULL, &trust, err, sizeof(err)) != 0) {
		fprintf(stderr, "seal_trust_new: %s\n", err);
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	seal_trust_free(trust);
	testpki_remove(dir);
	return 0;
}

static void
test_one_recipient(void **state)
{
	static const char *const to[] = {"moh"};
	struct seal_keyring *kr = keyring("moh-enc", NULL);
	uint8_t *der = NULL;
	size_t derlen = 0;
	char err[512];

	(void)state;
	assert_int_equal(seal_to(to, 1, &der, &derlen, err, sizeof(err)), 0);
	assert_true(derlen > sizeof(survivor));
	/* The name is nowhere in clear in the sealed part. */
	assert_null(memmem(der, derlen, "Zeynab", 6));
	assert_int_equal(opens(kr, der, derlen), 0);
	free(der);
	seal_keyring_free(kr);
}

/* Receiver, sender and custodian each open; an agency that is none of them cannot. */
static void
test_three_recipients(void **state)
{
	static const char *const to[] = {"molsa", "moh", "hi"};
	struct seal_keyring *molsa = keyring("molsa-enc", NULL), *moh = keyring("moh-enc", NULL),
	                    *hi = keyring("hi-enc", NULL), *dma = keyring("dma-enc", NULL);
	uint8_t *der = NULL;
	size_t derlen = 0;
	char err[512];

	(void)state;
	assert_int_equal(seal_to(to, 3, &der, &derlen, err, sizeof(err)), 0);
	assert_int_equal(opens(molsa, der, derlen), 0);
	assert_int_equal(opens(moh, der, derlen), 0);
	assert_int_equal(opens(hi, der, derlen), 0);
	assert_int_equal(opens(dma, der, derlen), SEAL_ENOTRECIPIENT);
	free(der);
	seal_keyring_free(molsa);
	seal_keyring_free(moh);
	seal_keyring_free(hi);
	seal_keyring_free(dma);
}

/* A flipped byte of the ciphertext or of the tag fails GCM authentication. */
static void
test_tampered(void **state)
{
	static const char *const to[] = {"moh"};
	struct seal_keyring *kr = keyring("moh-enc", NULL);
	uint8_t *der = NULL;
	size_t derlen = 0;
	char err[512];

	(void)state;
	assert_int_equal(seal_to(to, 1, &der, &derlen, err, sizeof(err)), 0);
	/* The DER ends with the mac: OCTET STRING of 16 bytes, right after the ciphertext. */
	assert_true(derlen > 18 + sizeof(survivor));
	assert_int_equal(der[derlen - 18], 0x04);
	assert_int_equal(der[derlen - 17], 0x10);
	der[derlen - 19] ^= 0x01; /* last byte of the ciphertext */
	assert_int_equal(opens(kr, der, derlen), SEAL_EAUTH);
	der[derlen - 19] ^= 0x01;
	assert_int_equal(opens(kr, der, derlen), 0);
	der[derlen - 19 - sizeof(survivor) / 2] ^= 0x80; /* one in the middle */
	assert_int_equal(opens(kr, der, derlen), SEAL_EAUTH);
	der[derlen - 19 - sizeof(survivor) / 2] ^= 0x80;
	der[derlen - 1] ^= 0x01; /* the tag */
	assert_int_equal(opens(kr, der, derlen), SEAL_EAUTH);
	free(der);
	seal_keyring_free(kr);
}

static void
test_malformed(void **state)
{
	static const char *const to[] = {"moh"};
	struct seal_keyring *kr = keyring("moh-enc", NULL);
	uint8_t *der = NULL, *big, *plain = NULL;
	size_t derlen = 0, len;
	char err[512];

	(void)state;
	assert_int_equal(seal_to(to, 1, &der, &derlen, err, sizeof(err)), 0);
	assert_int_equal(opens(kr, der, 0), SEAL_EMALFORMED);
	assert_int_equal(opens(kr, der, derlen - 1), SEAL_EMALFORMED);
	assert_int_equal(opens(kr, (const uint8_t *)"garbage", 7), SEAL_EMALFORMED);
	big = calloc(1, derlen + 1);
	assert_non_null(big);
	memcpy(big, der, derlen); /* one trailing byte */
	assert_int_equal(opens(kr, big, derlen + 1), SEAL_EMALFORMED);
	free(big);
	big = calloc(1, SEAL_DER_MAX + 1);
	assert_non_null(big);
	assert_int_equal(seal_open(kr, big, SEAL_DER_MAX + 1, &plain, &len, err, sizeof(err)),
	                 SEAL_ETOOLARGE);
	free(big);
	free(der);
	seal_keyring_free(kr);
}

/* Foreign CA, another agency, digitalSignature, the TLS certificate, expired: all refused. */
static void
test_refused_certs(void **state)
{
	static const struct {
		const char *file;
		int rc;
	} bad[] = {
	    {"foreign-enc.crt", SEAL_ECERT},     {"dma-enc.crt", SEAL_ECERT},
	    {"moh-enc-sig.crt", SEAL_ECERT},     {"moh.pem", SEAL_ECERT},
	    {"moh-enc-expired.crt", SEAL_ECERT}, {"ca.pem", SEAL_ECERT},
	};
	struct seal_recipient r[2];
	uint8_t *der = NULL;
	size_t derlen = 0, i;
	char err[512];
	X509 *x;

	(void)state;
	x = cert("moh-enc.crt");
	assert_int_equal(seal_cert_check(trust, x, "moh", err, sizeof(err)), 0);
	assert_int_equal(seal_cert_check(trust, x, "dma", err, sizeof(err)), SEAL_ECERT);
	assert_non_null(strstr(err, "names agency 'moh'"));
	r[0].agency = "moh";
	r[0].cert = x;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r[1].agency = "moh";
		r[1].cert = cert(bad[i].file);
		assert_int_equal(seal_cert_check(trust, r[1].cert, "moh", err, sizeof(err)),
		                 bad[i].rc);
		print_message("# %s: %s\n", bad[i].file, err);
		/* Nothing is sealed when one recipient's certificate is refused. */
		der = NULL;
		assert_int_equal(seal_bytes(trust, r, 2, (const uint8_t *)survivor,
		                            sizeof(survivor) - 1, &der, &derlen, err, sizeof(err)),
		                 bad[i].rc);
		assert_null(der);
		X509_free(r[1].cert);
	}
	X509_free(x);
}

/* Rotation: the newest valid certificate is picked; an old key still opens old parts. */
static void
test_rotation(void **state)
{
	static const char *const files[] = {"moh-enc-expired.crt", "moh-enc-old.crt", "moh-enc.crt",
	                                    "moh-enc-sig.crt", "dma-enc.crt"};
	X509 *certs[5], *best = NULL, *cur;
	struct seal_keyring *both, *newonly;
	struct seal_recipient r;
	uint8_t *old = NULL, *cnew = NULL;
	size_t oldlen = 0, newlen = 0, i;
	char err[512];

	(void)state;
	for (i = 0; i < 5; i++) {
		certs[i] = cert(files[i]);
	}
	cur = cert("moh-enc.crt");
	assert_int_equal(seal_cert_pick(trust, certs, 5, "moh", &best, err, sizeof(err)), 0);
	assert_int_equal(X509_cmp(best, cur), 0);
	/* In another order too. */
	assert_int_equal(seal_cert_pick(trust, certs + 1, 2, "moh", &best, err, sizeof(err)), 0);
	assert_int_equal(X509_cmp(best, cur), 0);
	assert_int_equal(seal_cert_pick(trust, certs, 2, "moh", &best, err, sizeof(err)), 0);
	assert_ptr_equal(best, certs[1]);
	assert_int_equal(seal_cert_pick(trust, certs + 3, 2, "moh", &best, err, sizeof(err)),
	                 SEAL_ECERT);

	/* A part sealed to the old certificate, another to the new one. */
	r.agency = "moh";
	r.cert = certs[1];
	assert_int_equal(seal_bytes(trust, &r, 1, (const uint8_t *)survivor, sizeof(survivor) - 1,
	                            &old, &oldlen, err, sizeof(err)),
	                 0);
	r.cert = cur;
	assert_int_equal(seal_bytes(trust, &r, 1, (const uint8_t *)survivor, sizeof(survivor) - 1,
	                            &cnew, &newlen, err, sizeof(err)),
	                 0);
	both = keyring("moh-enc", "moh-enc-old");
	newonly = keyring("moh-enc", NULL);
	assert_int_equal(opens(both, old, oldlen), 0);
	assert_int_equal(opens(both, cnew, newlen), 0);
	assert_int_equal(opens(newonly, cnew, newlen), 0);
	assert_int_equal(opens(newonly, old, oldlen), SEAL_ENOTRECIPIENT);
	seal_keyring_free(both);
	seal_keyring_free(newonly);
	free(old);
	free(cnew);
	X509_free(cur);
	for (i = 0; i < 5; i++) {
		X509_free(certs[i]);
	}
}

/* A CRL of the federation CA revoking the certificate in file `revoke`, written to path. */
static void
make_crl(const char *revoke, const char *path)
{
	X509 *ca = cert("ca.pem"), *x = cert(revoke);
	X509_REVOKED *rev = X509_REVOKED_new();
	X509_CRL *crl = X509_CRL_new();
	ASN1_TIME *now = ASN1_TIME_adj(NULL, time(NULL), 0, 0);
	ASN1_TIME *next = ASN1_TIME_adj(NULL, time(NULL), 1, 0);
	EVP_PKEY *key;
	FILE *fp;

	fp = fopen(pk("ca.key"), "r");
	assert_non_null(fp);
	key = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	fclose(fp);
	assert_non_null(key);
	assert_true(rev != NULL && crl != NULL && now != NULL && next != NULL);
	assert_int_equal(X509_CRL_set_version(crl, X509_CRL_VERSION_2), 1);
	assert_int_equal(X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)), 1);
	assert_int_equal(X509_CRL_set1_lastUpdate(crl, now), 1);
	assert_int_equal(X509_CRL_set1_nextUpdate(crl, next), 1);
	assert_int_equal(X509_REVOKED_set_serialNumber(rev, X509_get_serialNumber(x)), 1);
	assert_int_equal(X509_REVOKED_set_revocationDate(rev, now), 1);
	assert_int_equal(X509_CRL_add0_revoked(crl, rev), 1);
	assert_int_equal(X509_CRL_sort(crl), 1);
	assert_true(X509_CRL_sign(crl, key, EVP_sha256()) > 0);
	fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(PEM_write_X509_CRL(fp, crl), 1);
	assert_int_equal(fclose(fp), 0);
	X509_CRL_free(crl);
	ASN1_TIME_free(now);
	ASN1_TIME_free(next);
	EVP_PKEY_free(key);
	X509_free(x);
	X509_free(ca);
}

/* With the CA's CRL loaded, a revoked encryption certificate is never sealed to. */
static void
test_revoked(void **state)
{
	struct seal_trust *t = NULL;
	struct seal_recipient r;
	X509 *certs[2], *best = NULL;
	uint8_t *der = NULL;
	size_t derlen = 0;
	char err[512];

	(void)state;
	make_crl("moh-enc-old.crt", pk("enc.crl"));
	assert_int_equal(seal_trust_new(pk("ca.pem"), pk("missing.crl"), &t, err, sizeof(err)),
	                 IHALA_ECONFIG);
	assert_int_equal(seal_trust_new(pk("ca.pem"), pk("enc.crl"), &t, err, sizeof(err)), 0);
	certs[0] = cert("moh-enc-old.crt");
	certs[1] = cert("moh-enc.crt");
	assert_int_equal(seal_cert_check(t, certs[0], "moh", err, sizeof(err)), SEAL_EREVOKED);
	print_message("# %s\n", err);
	assert_int_equal(seal_cert_check(t, certs[1], "moh", err, sizeof(err)), 0);
	/* Without the CRL the same certificate passes. */
	assert_int_equal(seal_cert_check(trust, certs[0], "moh", err, sizeof(err)), 0);
	assert_int_equal(seal_cert_pick(t, certs, 1, "moh", &best, err, sizeof(err)), SEAL_ECERT);
	assert_int_equal(seal_cert_pick(t, certs, 2, "moh", &best, err, sizeof(err)), 0);
	assert_ptr_equal(best, certs[1]);
	r.agency = "moh";
	r.cert = certs[0];
	assert_int_equal(seal_bytes(t, &r, 1, (const uint8_t *)survivor, sizeof(survivor) - 1, &der,
	                            &derlen, err, sizeof(err)),
	                 SEAL_EREVOKED);
	assert_null(der);
	X509_free(certs[0]);
	X509_free(certs[1]);
	seal_trust_free(t);
}

static void
test_keyring_load(void **state)
{
	struct seal_keyring *kr = NULL;
	char err[512], cmd[2048];

	(void)state;
	assert_int_equal(seal_keyring_new(&kr), 0);
	assert_int_equal(
	    seal_keyring_load(kr, pk("moh-enc.crt"), pk("dma-enc.key"), err, sizeof(err)),
	    IHALA_ECONFIG);
	print_message("# %s\n", err);
	assert_int_equal(
	    seal_keyring_load(kr, pk("moh-enc.crt"), pk("missing.key"), err, sizeof(err)),
	    IHALA_ECONFIG);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && chmod 644 '%s'", pk("moh-enc.key"),
	         pk("open.key"), pk("open.key"));
	assert_int_equal(system(cmd), 0);
	assert_int_equal(seal_keyring_load(kr, pk("moh-enc.crt"), pk("open.key"), err, sizeof(err)),
	                 IHALA_EKEYPERM);
	print_message("# %s\n", err);
	assert_int_equal(
	    seal_keyring_load(kr, pk("moh-enc.crt"), pk("moh-enc.key"), err, sizeof(err)), 0);
	seal_keyring_free(kr);
}

/* Ours opened by `openssl cms -decrypt`, and theirs (from `openssl cms -encrypt`) by ours. */
static void
test_openssl_cli(void **state)
{
	static const char *const to[] = {"molsa", "moh"};
	struct seal_keyring *kr = keyring("moh-enc", NULL);
	uint8_t *der = NULL, *in;
	size_t derlen = 0, len;
	char err[512], cmd[4096];

	(void)state;
	assert_int_equal(seal_to(to, 2, &der, &derlen, err, sizeof(err)), 0);
	write_file(pk("sealed.der"), der, derlen);
	free(der);
	snprintf(cmd, sizeof(cmd),
	         "openssl cms -decrypt -inform DER -in '%s' -recip '%s' -inkey '%s' -out '%s'",
	         pk("sealed.der"), pk("moh-enc.crt"), pk("moh-enc.key"), pk("opened.txt"));
	assert_int_equal(system(cmd), 0);
	/* What it is, as openssl reads it: AES-256-GCM, ECDH with the SHA-256 KDF, two kari. */
	snprintf(cmd, sizeof(cmd),
	         "openssl cms -cmsout -print -inform DER -in '%s' >'%s' && "
	         "grep -q 'contentType: id-smime-ct-authEnvelopedData' '%s' && "
	         "grep -q 'algorithm: aes-256-gcm' '%s' && "
	         "test $(grep -c 'dhSinglePass-stdDH-sha256kdf-scheme' '%s') = 2 && "
	         "test $(grep -c 'd.kari:' '%s') = 2",
	         pk("sealed.der"), pk("sealed.txt"), pk("sealed.txt"), pk("sealed.txt"),
	         pk("sealed.txt"), pk("sealed.txt"));
	assert_int_equal(system(cmd), 0);
	in = read_file(pk("opened.txt"), &len);
	assert_int_equal(len, sizeof(survivor) - 1);
	assert_memory_equal(in, survivor, len);
	/* A non-recipient's key does not open it. */
	snprintf(cmd, sizeof(cmd),
	         "openssl cms -decrypt -inform DER -in '%s' -recip '%s' -inkey '%s' -out '%s' "
	         "2>/dev/null",
	         pk("sealed.der"), pk("dma-enc.crt"), pk("dma-enc.key"), pk("opened2.txt"));
	assert_int_not_equal(system(cmd), 0);

	/* Sealed by the openssl command line: with the SHA-256 KDF and its default SHA-1 one. */
	write_file(pk("plain.txt"), survivor, sizeof(survivor) - 1);
	for (int kdf = 0; kdf < 2; kdf++) {
		snprintf(cmd, sizeof(cmd),
		         "openssl cms -encrypt -aes-256-gcm -binary -in '%s' -outform DER -out "
		         "'%s' -recip '%s' %s -recip '%s'",
		         pk("plain.txt"), pk("theirs.der"), pk("hi-enc.crt"),
		         kdf == 0 ? "-keyopt ecdh_kdf_md:sha256" : "", pk("moh-enc.crt"));
		assert_int_equal(system(cmd), 0);
		in = read_file(pk("theirs.der"), &len);
		assert_int_equal(opens(kr, in, len), 0);
	}
	/* An unauthenticated EnvelopedData (AES-CBC) is refused. */
	snprintf(cmd, sizeof(cmd),
	         "openssl cms -encrypt -aes-256-cbc -binary -in '%s' -outform DER -out '%s' "
	         "-recip '%s'",
	         pk("plain.txt"), pk("cbc.der"), pk("moh-enc.crt"));
	assert_int_equal(system(cmd), 0);
	in = read_file(pk("cbc.der"), &len);
	assert_int_equal(opens(kr, in, len), SEAL_EMALFORMED);
	seal_keyring_free(kr);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_one_recipient), cmocka_unit_test(test_three_recipients),
	    cmocka_unit_test(test_tampered),      cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_refused_certs), cmocka_unit_test(test_rotation),
	    cmocka_unit_test(test_revoked),       cmocka_unit_test(test_keyring_load),
	    cmocka_unit_test(test_openssl_cli),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
