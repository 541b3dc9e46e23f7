/* seal.c - seals and opens CMS AuthEnvelopedData parts; checks agencies' encryption certs. */
#include "seal.h"

#include "error.h"
#include "id.h"
#include "tlsctx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

struct seal_trust {
	X509_STORE *store;
};

struct seal_key {
	X509 *cert;
	EVP_PKEY *key;
};

struct seal_keyring {
	struct seal_key keys[SEAL_KEYS_MAX];
	size_t n;
};

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

/* "<what>: <OpenSSL's reasons>", the queue emptied; returns code. */
static int
ossl_failed(char *err, size_t errlen, int code, const char *what)
{
	char detail[512];

	tlsctx_errors(detail, sizeof(detail));
	seterr(err, errlen, "%s: %s", what, detail[0] != '\0' ? detail : "unknown OpenSSL error");
	return code;
}

/* errno's sentence for a file OpenSSL would only call "system lib". */
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

int
seal_trust_new(const char *ca_file, const char *crl_file, struct seal_trust **out, char *err,
               size_t errlen)
{
	struct seal_trust *t;
	X509_LOOKUP *lookup;
	char what[1100];
	int rc;

	if (ca_file == NULL || out == NULL) {
		seterr(err, errlen, "sealing needs a CA file");
		return IHALA_EINVAL;
	}
	rc = check_readable("CA file", ca_file, err, errlen);
	if (rc == 0 && crl_file != NULL) {
		rc = check_readable("CRL", crl_file, err, errlen);
	}
	if (rc != 0) {
		return rc;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		seterr(err, errlen, "out of memory");
		return IHALA_ENOMEM;
	}
	ERR_clear_error();
	t->store = X509_STORE_new();
	if (t->store == NULL) {
		rc = ossl_failed(err, errlen, IHALA_ENOMEM, "cannot make a certificate store");
		goto fail;
	}
	if (X509_STORE_load_file(t->store, ca_file) != 1) {
		snprintf(what, sizeof(what), "cannot load CA file '%s'", ca_file);
		rc = ossl_failed(err, errlen, IHALA_ECONFIG, what);
		goto fail;
	}
	if (crl_file != NULL) {
		lookup = X509_STORE_add_lookup(t->store, X509_LOOKUP_file());
		if (lookup == NULL ||
		    X509_load_crl_file(lookup, crl_file, X509_FILETYPE_PEM) <= 0) {
			snprintf(what, sizeof(what), "cannot load CRL '%s'", crl_file);
			rc = ossl_failed(err, errlen, IHALA_ECONFIG, what);
			goto fail;
		}
		X509_STORE_set_flags(t->store, X509_V_FLAG_CRL_CHECK);
	}
	*out = t;
	return 0;
fail:
	seal_trust_free(t);
	return rc;
}

void
seal_trust_free(struct seal_trust *t)
{
	if (t != NULL) {
		X509_STORE_free(t->store);
		free(t);
	}
}

/* The usage, key and naming rules; the chain is checked by the caller. */
static int
check_profile(X509 *cert, const char *agency, char *err, size_t errlen)
{
	char id[ID_AGENCY_MAX + 1], group[64];
	EVP_PKEY *pk;
	uint32_t flags;
	int rc;

	flags = X509_get_extension_flags(cert);
	if (!(flags & EXFLAG_KUSAGE) || X509_get_key_usage(cert) != X509v3_KU_KEY_AGREEMENT) {
		seterr(err, errlen,
		       "certificate for '%s' is not an encryption certificate: its keyUsage must "
		       "be keyAgreement only (a TLS certificate is not one)",
		       agency);
		return SEAL_ECERT;
	}
	if ((flags & EXFLAG_XKUSAGE) &&
	    (X509_get_extended_key_usage(cert) & (XKU_SSL_CLIENT | XKU_SSL_SERVER))) {
		seterr(err, errlen,
		       "certificate for '%s' is not an encryption certificate: it is for TLS "
		       "(extendedKeyUsage)",
		       agency);
		return SEAL_ECERT;
	}
	if (X509_check_ca(cert) != 0) {
		seterr(err, errlen,
		       "certificate for '%s' is a CA certificate, not an encryption "
		       "certificate",
		       agency);
		return SEAL_ECERT;
	}
	pk = X509_get0_pubkey(cert);
	if (pk == NULL || !EVP_PKEY_is_a(pk, "EC") ||
	    EVP_PKEY_get_group_name(pk, group, sizeof(group), NULL) != 1 ||
	    strcmp(group, "prime256v1") != 0) {
		ERR_clear_error();
		seterr(err, errlen, "certificate for '%s' does not hold a P-256 key", agency);
		return SEAL_ECERT;
	}
	rc = tls_cert_identity(cert, id, sizeof(id), NULL);
	if (rc != 0) {
		seterr(err, errlen,
		       "certificate for '%s' names no valid agency (SAN URI "
		       "ihala:agency:<id> or CN)",
		       agency);
		return SEAL_ECERT;
	}
	if (strcmp(id, agency) != 0) {
		seterr(err, errlen, "certificate for '%s' names agency '%s' instead", agency, id);
		return SEAL_ECERT;
	}
	return 0;
}

int
seal_cert_check(struct seal_trust *t, X509 *cert, const char *agency, char *err, size_t errlen)
{
	X509_STORE_CTX *sctx;
	int rc, v;

	if (t == NULL || cert == NULL || agency == NULL ||
	    !id_agency_valid(agency, strlen(agency))) {
		seterr(err, errlen, "no certificate or no valid agency id to check");
		return IHALA_EINVAL;
	}
	ERR_clear_error();
	sctx = X509_STORE_CTX_new();
	if (sctx == NULL) {
		return ossl_failed(err, errlen, IHALA_ENOMEM, "cannot verify a certificate");
	}
	if (X509_STORE_CTX_init(sctx, t->store, cert, NULL) != 1) {
		rc = ossl_failed(err, errlen, IHALA_ETLS, "cannot verify a certificate");
		goto out;
	}
	if (X509_verify_cert(sctx) != 1) {
		v = X509_STORE_CTX_get_error(sctx);
		rc = v == X509_V_ERR_CERT_REVOKED ? SEAL_EREVOKED : SEAL_ECERT;
		seterr(err, errlen, "encryption certificate for '%s' refused: %s", agency,
		       X509_verify_cert_error_string(v));
		ERR_clear_error();
		goto out;
	}
	rc = check_profile(cert, agency, err, errlen);
out:
	X509_STORE_CTX_free(sctx);
	return rc;
}

/* > 0 when a is newer than b: later notBefore, then later notAfter. */
static int
newer(X509 *a, X509 *b)
{
	int c;

	c = ASN1_TIME_compare(X509_get0_notBefore(a), X509_get0_notBefore(b));
	if (c == 0) {
		c = ASN1_TIME_compare(X509_get0_notAfter(a), X509_get0_notAfter(b));
	}
	return c;
}

int
seal_cert_pick(struct seal_trust *t, X509 *const *certs, size_t n, const char *agency, X509 **out,
               char *err, size_t errlen)
{
	X509 *best = NULL;
	size_t i;
	int rc;

	if (t == NULL || (certs == NULL && n > 0) || agency == NULL || out == NULL) {
		seterr(err, errlen, "nothing to pick from");
		return IHALA_EINVAL;
	}
	seterr(err, errlen, "no encryption certificate for '%s'", agency);
	for (i = 0; i < n; i++) {
		rc = seal_cert_check(t, certs[i], agency, err, errlen);
		if (rc == IHALA_ENOMEM || rc == IHALA_EINVAL) {
			return rc;
		}
		if (rc == 0 && (best == NULL || newer(certs[i], best) > 0)) {
			best = certs[i];
		}
	}
	if (best == NULL) {
		return SEAL_ECERT; /* err: why the last one was refused */
	}
	seterr(err, errlen, "%s", "");
	*out = best;
	return 0;
}

int
seal_bytes(struct seal_trust *t, const struct seal_recipient *r, size_t n, const uint8_t *plain,
           size_t len, uint8_t **der, size_t *derlen, char *err, size_t errlen)
{
	CMS_ContentInfo *cms = NULL;
	CMS_RecipientInfo *ri;
	EVP_PKEY_CTX *pctx;
	unsigned char *p;
	uint8_t *buf = NULL;
	BIO *in = NULL;
	size_t i;
	int rc, dlen;

	if (t == NULL || r == NULL || der == NULL || derlen == NULL || (plain == NULL && len > 0)) {
		seterr(err, errlen, "nothing to seal");
		return IHALA_EINVAL;
	}
	if (n == 0 || n > SEAL_RECIPIENTS_MAX) {
		seterr(err, errlen, "a sealed part needs 1..%d recipients, not %zu",
		       SEAL_RECIPIENTS_MAX, n);
		return IHALA_EINVAL;
	}
	if (len > SEAL_PLAIN_MAX) {
		seterr(err, errlen, "content of %zu bytes is over the %u bytes a sealed part holds",
		       len, SEAL_PLAIN_MAX);
		return SEAL_ETOOLARGE;
	}
	for (i = 0; i < n; i++) {
		rc = seal_cert_check(t, r[i].cert, r[i].agency != NULL ? r[i].agency : "", err,
		                     errlen);
		if (rc != 0) {
			return rc;
		}
	}
	ERR_clear_error();
	cms = CMS_AuthEnvelopedData_create(EVP_aes_256_gcm());
	if (cms == NULL) {
		rc = ossl_failed(err, errlen, IHALA_ETLS, "cannot make an AuthEnvelopedData");
		goto fail;
	}
	/* The ciphertext goes inside the structure (created detached, as CMS_encrypt knows). */
	if (CMS_set_detached(cms, 0) != 1) {
		rc = ossl_failed(err, errlen, IHALA_ETLS, "cannot make an AuthEnvelopedData");
		goto fail;
	}
	for (i = 0; i < n; i++) {
		ri = CMS_add1_recipient_cert(cms, r[i].cert, CMS_KEY_PARAM);
		if (ri == NULL || CMS_RecipientInfo_type(ri) != CMS_RECIPINFO_AGREE) {
			rc = ossl_failed(err, errlen, IHALA_ETLS, "cannot add a recipient");
			goto fail;
		}
		/* RFC 5753 with SHA-256 in the KDF (OpenSSL's default is SHA-1). */
		pctx = CMS_RecipientInfo_get0_pkey_ctx(ri);
		if (pctx == NULL || EVP_PKEY_CTX_set_ecdh_kdf_md(pctx, EVP_sha256()) <= 0) {
			rc = ossl_failed(err, errlen, IHALA_ETLS, "cannot set the ECDH KDF");
			goto fail;
		}
	}
	in = BIO_new_mem_buf(len > 0 ? (const void *)plain : (const void *)"", (int)len);
	if (in == NULL) {
		rc = ossl_failed(err, errlen, IHALA_ENOMEM, "cannot seal");
		goto fail;
	}
	if (CMS_final(cms, in, NULL, CMS_BINARY) != 1) {
		rc = ossl_failed(err, errlen, IHALA_ETLS, "cannot seal");
		goto fail;
	}
	dlen = i2d_CMS_ContentInfo(cms, NULL);
	if (dlen <= 0) {
		rc = ossl_failed(err, errlen, IHALA_ETLS, "cannot encode the sealed part");
		goto fail;
	}
	buf = malloc((size_t)dlen);
	if (buf == NULL) {
		seterr(err, errlen, "out of memory");
		rc = IHALA_ENOMEM;
		goto fail;
	}
	p = buf;
	if (i2d_CMS_ContentInfo(cms, &p) != dlen) {
		rc = ossl_failed(err, errlen, IHALA_ETLS, "cannot encode the sealed part");
		goto fail;
	}
	*der = buf;
	*derlen = (size_t)dlen;
	buf = NULL;
	rc = 0;
fail:
	free(buf);
	BIO_free(in);
	CMS_ContentInfo_free(cms);
	return rc;
}

int
seal_keyring_new(struct seal_keyring **out)
{
	if (out == NULL) {
		return IHALA_EINVAL;
	}
	*out = calloc(1, sizeof(**out));
	return *out != NULL ? 0 : IHALA_ENOMEM;
}

void
seal_keyring_free(struct seal_keyring *kr)
{
	size_t i;

	if (kr == NULL) {
		return;
	}
	for (i = 0; i < kr->n; i++) {
		X509_free(kr->keys[i].cert);
		EVP_PKEY_free(kr->keys[i].key);
	}
	free(kr);
}

int
seal_keyring_add(struct seal_keyring *kr, X509 *cert, EVP_PKEY *key, char *err, size_t errlen)
{
	if (kr == NULL || cert == NULL || key == NULL) {
		seterr(err, errlen, "no key or certificate to add");
		return IHALA_EINVAL;
	}
	if (kr->n >= SEAL_KEYS_MAX) {
		seterr(err, errlen, "too many encryption keys (at most %d)", SEAL_KEYS_MAX);
		return IHALA_EINVAL;
	}
	ERR_clear_error();
	if (X509_check_private_key(cert, key) != 1) {
		ERR_clear_error();
		seterr(err, errlen, "encryption key does not match its certificate");
		return IHALA_EINVAL;
	}
	if (X509_up_ref(cert) != 1) {
		return ossl_failed(err, errlen, IHALA_ETLS, "cannot add a key");
	}
	if (EVP_PKEY_up_ref(key) != 1) {
		X509_free(cert);
		return ossl_failed(err, errlen, IHALA_ETLS, "cannot add a key");
	}
	kr->keys[kr->n].cert = cert;
	kr->keys[kr->n].key = key;
	kr->n++;
	return 0;
}

/* Never prompt for a passphrase: encrypted keys are refused. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* The mode is checked on the open descriptor (no race with a chmod). */
static int
load_key(const char *path, EVP_PKEY **out, char *err, size_t errlen)
{
	char what[1100];
	struct stat st;
	FILE *fp;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0) {
		seterr(err, errlen, "cannot load encryption key '%s': %s", path, strerror(errno));
		if (fd >= 0) {
			close(fd);
		}
		return IHALA_ECONFIG;
	}
	if (!S_ISREG(st.st_mode)) {
		seterr(err, errlen, "cannot load encryption key '%s': not a regular file", path);
		close(fd);
		return IHALA_ECONFIG;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		seterr(err, errlen,
		       "encryption key '%s' is accessible by group or others (mode %04o): chmod "
		       "600 it",
		       path, (unsigned)(st.st_mode & 07777));
		close(fd);
		return IHALA_EKEYPERM;
	}
	fp = fdopen(fd, "r");
	if (fp == NULL) {
		seterr(err, errlen, "cannot load encryption key '%s': %s", path, strerror(errno));
		close(fd);
		return IHALA_ENOMEM;
	}
	ERR_clear_error();
	*out = PEM_read_PrivateKey(fp, NULL, no_passphrase, NULL);
	fclose(fp);
	if (*out == NULL) {
		snprintf(what, sizeof(what), "cannot load encryption key '%s'", path);
		return ossl_failed(err, errlen, IHALA_ECONFIG, what);
	}
	return 0;
}

static int
load_cert(const char *path, X509 **out, char *err, size_t errlen)
{
	char what[1100];
	BIO *bio;
	int rc;

	rc = check_readable("encryption certificate", path, err, errlen);
	if (rc != 0) {
		return rc;
	}
	ERR_clear_error();
	bio = BIO_new_file(path, "r");
	*out = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	if (*out == NULL) {
		snprintf(what, sizeof(what), "cannot load encryption certificate '%s'", path);
		return ossl_failed(err, errlen, IHALA_ECONFIG, what);
	}
	return 0;
}

int
seal_keyring_load(struct seal_keyring *kr, const char *cert_file, const char *key_file, char *err,
                  size_t errlen)
{
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	int rc;

	if (kr == NULL || cert_file == NULL || key_file == NULL) {
		seterr(err, errlen, "an encryption key needs a certificate and a key file");
		return IHALA_EINVAL;
	}
	rc = load_cert(cert_file, &cert, err, errlen);
	if (rc == 0) {
		rc = load_key(key_file, &key, err, errlen);
	}
	if (rc == 0) {
		rc = seal_keyring_add(kr, cert, key, err, errlen);
		if (rc == IHALA_EINVAL && kr->n < SEAL_KEYS_MAX) {
			seterr(err, errlen, "encryption key '%s' does not match certificate '%s'",
			       key_file, cert_file);
			rc = IHALA_ECONFIG;
		}
	}
	EVP_PKEY_free(key);
	X509_free(cert);
	return rc;
}

/* 1 when cert is named by one of the key-agreement recipients of cms. */
static int
is_recipient(CMS_ContentInfo *cms, X509 *cert)
{
	STACK_OF(CMS_RecipientInfo) * ris;
	STACK_OF(CMS_RecipientEncryptedKey) * reks;
	CMS_RecipientInfo *ri;
	int i, j;

	ris = CMS_get0_RecipientInfos(cms);
	for (i = 0; i < sk_CMS_RecipientInfo_num(ris); i++) {
		ri = sk_CMS_RecipientInfo_value(ris, i);
		if (CMS_RecipientInfo_type(ri) != CMS_RECIPINFO_AGREE) {
			continue;
		}
		reks = CMS_RecipientInfo_kari_get0_reks(ri);
		for (j = 0; j < sk_CMS_RecipientEncryptedKey_num(reks); j++) {
			if (CMS_RecipientEncryptedKey_cert_cmp(
			        sk_CMS_RecipientEncryptedKey_value(reks, j), cert) == 0) {
				return 1;
			}
		}
	}
	ERR_clear_error();
	return 0;
}

int
seal_open(struct seal_keyring *kr, const uint8_t *der, size_t derlen, uint8_t **plain,
          size_t *plainlen, char *err, size_t errlen)
{
	CMS_ContentInfo *cms = NULL;
	const unsigned char *p = der;
	const ASN1_OBJECT *ct;
	struct seal_key *k = NULL;
	char *data, detail[512];
	BIO *out = NULL;
	size_t i;
	long n;
	int rc;

	if (kr == NULL || der == NULL || plain == NULL || plainlen == NULL) {
		seterr(err, errlen, "nothing to open");
		return IHALA_EINVAL;
	}
	if (derlen > SEAL_DER_MAX) {
		seterr(err, errlen, "sealed part of %zu bytes is over the %u bytes allowed", derlen,
		       SEAL_DER_MAX);
		return SEAL_ETOOLARGE;
	}
	ERR_clear_error();
	if (derlen > 0) {
		cms = d2i_CMS_ContentInfo(NULL, &p, (long)derlen);
	}
	if (cms == NULL || p != der + derlen) {
		ERR_clear_error();
		seterr(err, errlen, "sealed part is not one DER CMS structure");
		rc = SEAL_EMALFORMED;
		goto out;
	}
	/* An EnvelopedData (CBC, no tag) could be altered unseen: only the AEAD form. */
	if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_id_smime_ct_authEnvelopedData) {
		seterr(err, errlen, "sealed part is not a CMS AuthEnvelopedData");
		rc = SEAL_EMALFORMED;
		goto out;
	}
	ct = CMS_get0_eContentType(cms);
	if (ct == NULL || OBJ_obj2nid(ct) != NID_pkcs7_data) {
		ERR_clear_error();
		seterr(err, errlen, "sealed part does not hold id-data content");
		rc = SEAL_EMALFORMED;
		goto out;
	}
	for (i = 0; i < kr->n && k == NULL; i++) {
		if (is_recipient(cms, kr->keys[i].cert)) {
			k = &kr->keys[i];
		}
	}
	if (k == NULL) {
		seterr(err, errlen,
		       "none of our %zu encryption key(s) is a recipient of this "
		       "sealed part",
		       kr->n);
		rc = SEAL_ENOTRECIPIENT;
		goto out;
	}
	out = BIO_new(BIO_s_mem());
	if (out == NULL) {
		rc = ossl_failed(err, errlen, IHALA_ENOMEM, "cannot open the sealed part");
		goto out;
	}
	/* The tag is checked at the end: what was written to out before is dropped. */
	if (CMS_decrypt(cms, k->key, k->cert, NULL, out, CMS_BINARY) != 1) {
		/* A tag mismatch leaves nothing on OpenSSL's queue: say it ourselves. */
		tlsctx_errors(detail, sizeof(detail));
		seterr(err, errlen,
		       "sealed part does not authenticate (altered, or not for this "
		       "key): %s",
		       detail[0] != '\0' ? detail : "AES-GCM tag does not match");
		rc = SEAL_EAUTH;
		goto out;
	}
	n = BIO_get_mem_data(out, &data);
	if (n < 0 || (size_t)n > SEAL_PLAIN_MAX) {
		seterr(err, errlen, "opened content is over the %u bytes a sealed part holds",
		       SEAL_PLAIN_MAX);
		rc = SEAL_ETOOLARGE;
		goto out;
	}
	*plain = malloc(n > 0 ? (size_t)n : 1);
	if (*plain == NULL) {
		seterr(err, errlen, "out of memory");
		rc = IHALA_ENOMEM;
		goto out;
	}
	if (n > 0) {
		memcpy(*plain, data, (size_t)n);
	}
	*plainlen = (size_t)n;
	rc = 0;
out:
	if (out != NULL) {
		n = BIO_get_mem_data(out, &data);
		if (n > 0) {
			OPENSSL_cleanse(data, (size_t)n);
		}
		BIO_free(out);
	}
	CMS_ContentInfo_free(cms);
	return rc;
}
