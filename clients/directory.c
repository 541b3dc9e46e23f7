/* directory.c - the node's side of the directory: fetch an agency's encryption certificates,
 * judge them against the node's own CA, pick the one to seal to. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "client.h"
#include "error.h"
#include "frame.h"
#include "seal.h"

void
ihala_enc_cert_release(struct ihala_enc_cert *e)
{
	if (e != NULL) {
		X509_free(e->cert);
		e->cert = NULL;
	}
}

/* Seconds since the epoch of an ASN1_TIME; 0 when it cannot be read. */
static int64_t
epoch_of(const ASN1_TIME *t)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
		return 0;
	}
	return (int64_t)timegm(&tm);
}

/* Fill the printable fields of e from e->cert. 0 or IHALA_ENOMEM. */
static int
describe(struct ihala_enc_cert *e)
{
	const ASN1_INTEGER *sn = X509_get0_serialNumber(e->cert);
	BIGNUM *bn = ASN1_INTEGER_to_BN(sn, NULL);
	char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
	unsigned int mdlen = 0;
	BIO *bio;
	int n;
	size_t i;

	BN_free(bn);
	if (hex == NULL) {
		return IHALA_ENOMEM;
	}
	for (i = 0; hex[i] != '\0' && i + 1 < sizeof(e->serial); i++) {
		e->serial[i] = (char)(hex[i] >= 'A' && hex[i] <= 'F' ? hex[i] - 'A' + 'a' : hex[i]);
	}
	e->serial[i] = '\0';
	OPENSSL_free(hex);
	if ((bio = BIO_new(BIO_s_mem())) == NULL) {
		return IHALA_ENOMEM;
	}
	X509_NAME_print_ex(bio, X509_get_subject_name(e->cert), 0,
	                   XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
	n = BIO_read(bio, e->subject, (int)sizeof(e->subject) - 1);
	e->subject[n > 0 ? n : 0] = '\0';
	BIO_free(bio);
	e->not_before = epoch_of(X509_get0_notBefore(e->cert));
	e->not_after = epoch_of(X509_get0_notAfter(e->cert));
	if (X509_digest(e->cert, EVP_sha256(), e->sha256, &mdlen) != 1 || mdlen != 32) {
		ERR_clear_error();
		return IHALA_ENOMEM;
	}
	return 0;
}

/* Ask the broker for agency's certificates. *out: the Directory frame (frame_free). */
static int
fetch(struct ihala_client *c, const char *agency, int timeout_ms, Ihala__V2__Frame **out)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__DirectoryRequest q = IHALA__V2__DIRECTORY_REQUEST__INIT;
	Ihala__V2__Frame *ans = NULL;
	int err;

	q.request_id = c->next_request++;
	q.agency = (char *)agency;
	f.kind_case = IHALA__V2__FRAME__KIND_DIRECTORY_REQUEST;
	f.directory_request = &q;
	if ((err = client_request(c, &f, q.request_id, timeout_ms, &ans)) != 0) {
		return err;
	}
	if (ans == NULL || ans->kind_case != IHALA__V2__FRAME__KIND_DIRECTORY ||
	    ans->directory->request_id != q.request_id) {
		frame_free(ans);
		return client_fail(c, IHALA_EPROTOCOL, "unexpected answer to a directory request");
	}
	*out = ans;
	return 0;
}

int
ihala_directory_pick(struct ihala_client *c, const char *agency, int timeout_ms,
                     struct ihala_enc_cert *out)
{
	const Ihala__V2__AgencyCerts *ac = NULL;
	Ihala__V2__Frame *ans = NULL;
	struct seal_trust *trust = NULL;
	X509 *certs[IHALA_DIRECTORY_CERTS_MAX], *chosen = NULL;
	char why[512], list[1024] = "";
	size_t i, n = 0, len = 0, revoked = 0;
	int err;

	memset(out, 0, sizeof(*out));
	if (agency == NULL || !id_agency_valid(agency, strlen(agency))) {
		return client_fail(c, IHALA_EINVAL, "'%s' is not an agency id (%s)",
		                   agency != NULL ? agency : "", ID_AGENCY_RULE);
	}
	/* The node's own anchors first: without them nothing the broker sends can be judged. */
	err = seal_trust_new(c->cfg->ca_file, c->cfg->crl_file, &trust, why, sizeof(why));
	if (err != 0) {
		return client_fail(c, err, "%s", why);
	}
	if ((err = fetch(c, agency, timeout_ms, &ans)) != 0) {
		goto done;
	}
	for (i = 0; i < ans->directory->n_agencies; i++) {
		if (strcmp(ans->directory->agencies[i]->agency, agency) == 0) {
			ac = ans->directory->agencies[i];
			break;
		}
	}
	if (ac == NULL || ac->n_cert_der == 0) {
		err = client_fail(c, IHALA_ECERT,
		                  "the broker's directory lists no encryption certificate for "
		                  "agency '%s'",
		                  agency);
		goto done;
	}
	if (ac->n_cert_der > IHALA_DIRECTORY_CERTS_MAX) {
		err = client_fail(c, IHALA_ECERT,
		                  "the broker's directory lists %zu encryption certificates for "
		                  "agency '%s' (at most %d are taken)",
		                  ac->n_cert_der, agency, IHALA_DIRECTORY_CERTS_MAX);
		goto done;
	}
	/* Each one judged, so that a refusal names what is wrong with every one offered. */
	for (i = 0; i < ac->n_cert_der; i++) {
		const unsigned char *p = ac->cert_der[i].data;
		X509 *x = d2i_X509(NULL, &p, (long)ac->cert_der[i].len);
		int rc;

		if (x == NULL || p != ac->cert_der[i].data + ac->cert_der[i].len) {
			X509_free(x);
			ERR_clear_error();
			snprintf(why, sizeof(why), "does not decode as an X.509 certificate");
			rc = IHALA_ECERT;
		} else {
			certs[n++] = x;
			rc = seal_cert_check(trust, x, agency, why, sizeof(why));
		}
		if (rc == IHALA_ENOMEM) {
			err = client_fail(c, rc, "%s", why);
			goto done;
		}
		revoked += rc == SEAL_EREVOKED;
		if (rc != 0 && len < sizeof(list)) {
			int w = snprintf(list + len, sizeof(list) - len, "%scertificate %zu: %s",
			                 len > 0 ? "; " : "", i + 1, why);

			len += w > 0 ? (size_t)w : 0;
		}
	}
	err = seal_cert_pick(trust, certs, n, agency, &chosen, why, sizeof(why));
	if (err != 0 || chosen == NULL) {
		err = revoked == ac->n_cert_der ? SEAL_EREVOKED : SEAL_ECERT;
		client_fail(c, err,
		            "no valid encryption certificate for agency '%s' among the %zu the "
		            "broker's directory lists: %s",
		            agency, ac->n_cert_der, list[0] != '\0' ? list : why);
		goto done;
	}
	out->cert = X509_dup(chosen);
	out->offered = ac->n_cert_der;
	if (out->cert == NULL || describe(out) != 0) {
		ihala_enc_cert_release(out);
		err = client_fail(c, IHALA_ENOMEM, "out of memory");
		goto done;
	}
	err = 0;
done:
	for (i = 0; i < n; i++) {
		X509_free(certs[i]);
	}
	frame_free(ans);
	seal_trust_free(trust);
	return err;
}
