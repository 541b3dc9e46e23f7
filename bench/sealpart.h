/* sealpart.h - the bench tools' sealed parts: seal bytes to agencies' encryption certificates. */
#ifndef IHALA_BENCH_SEALPART_H
#define IHALA_BENCH_SEALPART_H

#include <stdio.h>
#include <stdlib.h>

#include <openssl/pem.h>
#include <openssl/sha.h>

#include "seal.h"

#define SEALPART_MAX 4

/*
 * Seal len bytes to agencies who[0..n-1] with their encryption certificates PKI/AGENCY-enc.crt,
 * as a node does (the certificates checked against PKI/ca.pem). *der: new, free(); sha: its
 * SHA-256. 0, or -1 with a message on stderr naming `tool`.
 */
static int
sealpart(const char *tool, const char *pki, const char *const *who, size_t n, const uint8_t *plain,
         size_t len, uint8_t **der, size_t *derlen, uint8_t sha[32])
{
	struct seal_recipient r[SEALPART_MAX];
	struct seal_trust *t = NULL;
	char path[512], err[512];
	size_t k;
	int rc = -1;

	snprintf(path, sizeof(path), "%s/ca.pem", pki);
	if (n == 0 || n > SEALPART_MAX || seal_trust_new(path, NULL, &t, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: %s\n", tool, n == 0 || n > SEALPART_MAX ? "recipients" : err);
		return -1;
	}
	for (k = 0; k < n; k++) {
		FILE *fp;

		snprintf(path, sizeof(path), "%s/%s-enc.crt", pki, who[k]);
		r[k].agency = who[k];
		fp = fopen(path, "r");
		r[k].cert = fp != NULL ? PEM_read_X509(fp, NULL, NULL, NULL) : NULL;
		if (fp != NULL) {
			fclose(fp);
		}
		if (r[k].cert == NULL) {
			fprintf(stderr, "%s: cannot read %s\n", tool, path);
			n = k;
			goto out;
		}
	}
	if (seal_bytes(t, r, n, plain, len, der, derlen, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: sealing to %s: %s\n", tool, who[0], err);
		goto out;
	}
	SHA256(*der, *derlen, sha);
	rc = 0;
out:
	for (k = 0; k < n; k++) {
		X509_free(r[k].cert);
	}
	seal_trust_free(t);
	return rc;
}

#endif
