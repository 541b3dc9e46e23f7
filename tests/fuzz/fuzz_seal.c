/* fuzz_seal.c - fuzz target: seal_open on hostile sealed parts, with a fixed test key. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/pem.h>

#include "error.h"
#include "fuzz.h"
#include "seal.h"

/*
 * Input: the bytes of one sealed part, as a node receives it from the broker. The keyring
 * holds the test key below (a self-signed "fuzz-seal" certificate, serial 1, keyUsage
 * keyAgreement; never used anywhere else). seal_open may refuse anything, but must not crash
 * or read outside the input, must give a known error code with a sentence and no content when
 * it refuses, and content within SEAL_PLAIN_MAX when it opens.
 *
 * The seeds in corpus/seal are not made by mkseeds (sealing draws a fresh key and IV): they
 * were made once with the openssl command line, recipient fuzz-seal ("c.pem") and sometimes
 * a second certificate ("c2.pem", CN other):
 *   openssl cms -encrypt -binary -outform DER -aes-256-gcm -in p.txt -out two-recipients-
 *     sha256kdf -recip c.pem -keyopt ecdh_kdf_md:sha256 -recip c2.pem
 *   ... -aes-256-gcm -recip c.pem (sha1kdf), -recip c2.pem (not-recipient), -aes-256-cbc
 *   (enveloped-cbc), an empty p.txt (empty-content), and sha1kdf with its last byte flipped
 *   (tampered-tag).
 */

static const char test_key[] = "-----BEGIN PRIVATE KEY-----\n"
                               "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgRNTmcIZ8mK3aJgwK\n"
                               "vrHl2sKvWGt4mzf1M6BWVQdN73qhRANCAASMsU0KRzsRYM9n2ahPzkrSIMUh0uxa\n"
                               "utezY+1Fbq9kn6gINNtLE+ZkzO3KVLCHr+pHTYPuDqGBgdyvBeEcj4Y/\n"
                               "-----END PRIVATE KEY-----\n";

static const char test_cert[] = "-----BEGIN CERTIFICATE-----\n"
                                "MIIBeTCCAR+gAwIBAgIBATAKBggqhkjOPQQDAjAUMRIwEAYDVQQDDAlmdXp6LXNl\n"
                                "YWwwIBcNMjYxMjAyMTYwNDQ0WhgPMjEyNjExMDgxNjA0NDRaMBQxEjAQBgNVBAMM\n"
                                "CWZ1enotc2VhbDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABIyxTQpHOxFgz2fZ\n"
                                "qE/OStIgxSHS7Fq617Nj7UVur2SfqAg020sT5mTM7cpUsIev6kdNg+4OoYGB3K8F\n"
                                "4RyPhj+jYDBeMB0GA1UdDgQWBBRggKu7Y/Si63OHA1IYkne27kjJNTAfBgNVHSME\n"
                                "GDAWgBRggKu7Y/Si63OHA1IYkne27kjJNTAOBgNVHQ8BAf8EBAMCAwgwDAYDVR0T\n"
                                "AQH/BAIwADAKBggqhkjOPQQDAgNIADBFAiEAu8HNW2vdDnaMhPfYBMIA7X8iGtjF\n"
                                "VYOTAK0zrSYSWAQCIAtnmtsQj/MoH4U4biuHdn68fzTf0U6tVcWT/Kf+wetz\n"
                                "-----END CERTIFICATE-----\n";

static struct seal_keyring *kr;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	EVP_PKEY *key;
	X509 *cert;
	BIO *b;

	(void)argc;
	(void)argv;
	b = BIO_new_mem_buf(test_key, -1);
	key = b != NULL ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	b = BIO_new_mem_buf(test_cert, -1);
	cert = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	FUZZ_ASSERT(key != NULL && cert != NULL);
	FUZZ_ASSERT(seal_keyring_new(&kr) == 0);
	FUZZ_ASSERT(seal_keyring_add(kr, cert, key, NULL, 0) == 0);
	EVP_PKEY_free(key);
	X509_free(cert);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *plain = NULL;
	size_t len = 0;
	char err[512];
	int rc;

	err[0] = '\0';
	rc = seal_open(kr, size > 0 ? data : (const uint8_t *)"", size, &plain, &len, err,
	               sizeof(err));
	if (rc != 0) {
		FUZZ_ASSERT(rc < 0 && ihala_err_known(rc));
		FUZZ_ASSERT(plain == NULL && err[0] != '\0');
		return 0;
	}
	FUZZ_ASSERT(plain != NULL && len <= SEAL_PLAIN_MAX && len < size);
	free(plain);
	return 0;
}
