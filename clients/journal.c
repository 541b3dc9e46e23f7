/* journal.c - libihala's view of the node's journal (what it sent and received per referral). */
#include "client.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "log.h"

/*
 * The journal's records carry the details of what the node sent and received, personal fields
 * included, so each is sealed to the node's own encryption certificate (the store keeps no
 * personal data in clear) and opened on read. A node without an encryption key sends and
 * reads no personal fields: its records stay clear JSON (a record starting with '{').
 */

int
ihala_journal_put(struct ihala_client *c, const char *referral_id, uint64_t seq, const char *json)
{
	struct seal_recipient self;
	uint8_t *der = NULL;
	size_t dlen = 0;
	char why[512];
	int err;

	if (c == NULL || json == NULL) {
		return IHALA_EINVAL;
	}
	if (c->keyring == NULL) {
		return localstore_journal_put(c->ls, referral_id, seq, json);
	}
	self.agency = c->own_agency;
	self.cert = c->own_enc;
	if ((err = seal_bytes(c->trust, &self, 1, (const uint8_t *)json, strlen(json), &der, &dlen,
	                      why, sizeof(why))) != 0) {
		return client_fail(c, err, "cannot seal the journal record: %s", why);
	}
	err = localstore_journal_put_bytes(c->ls, referral_id, seq, der, dlen);
	free(der);
	return err;
}

struct opener {
	struct ihala_client *c;
	ihala_journal_cb cb;
	void *arg;
};

static int
open_record(void *arg, const char *rid, uint64_t seq, const void *data, size_t len)
{
	struct opener *o = arg;
	uint8_t *plain = NULL;
	size_t plen = 0;
	char why[512], *text;
	int err;

	if (len > 0 && ((const char *)data)[0] == '{') {
		return o->cb(o->arg, rid, seq, data); /* clear (no key) */
	}
	if (o->c->keyring == NULL ||
	    seal_open(o->c->keyring, data, len, &plain, &plen, why, sizeof(why)) != 0) {
		log_warnx("journal record %s/%llu cannot be opened%s%s: skipped", rid,
		          (unsigned long long)seq,
		          o->c->keyring == NULL ? " (no encryption key)" : ": ",
		          o->c->keyring == NULL ? "" : why);
		return 0;
	}
	if ((text = malloc(plen + 1)) == NULL) {
		OPENSSL_cleanse(plain, plen);
		free(plain);
		return IHALA_ENOMEM;
	}
	memcpy(text, plain, plen);
	text[plen] = '\0';
	OPENSSL_cleanse(plain, plen);
	free(plain);
	err = o->cb(o->arg, rid, seq, text);
	OPENSSL_cleanse(text, plen);
	free(text);
	return err;
}

int
ihala_journal_iter(struct ihala_client *c, const char *referral_id, ihala_journal_cb cb, void *arg)
{
	struct opener o = {c, cb, arg};

	if (c == NULL || cb == NULL) {
		return IHALA_EINVAL;
	}
	return localstore_journal_iter_bytes(c->ls, referral_id, open_record, &o);
}

struct ids {
	char **v;
	size_t n, cap;
};

static int
ids_add(void *arg, const char *rid, uint64_t seq, const void *data, size_t len)
{
	struct ids *ids = arg;
	char **nv;

	(void)seq;
	(void)data;
	(void)len;
	if (ids->n > 0 && strcmp(ids->v[ids->n - 1], rid) == 0) {
		return 0; /* records come grouped by referral */
	}
	if (ids->n == ids->cap) {
		ids->cap = ids->cap ? 2 * ids->cap : 16;
		if ((nv = realloc(ids->v, ids->cap * sizeof(*nv))) == NULL) {
			return IHALA_ENOMEM;
		}
		ids->v = nv;
	}
	if ((ids->v[ids->n] = strdup(rid)) == NULL) {
		return IHALA_ENOMEM;
	}
	ids->n++;
	return 0;
}

int
ihala_journal_referrals(struct ihala_client *c, char ***ids_out, size_t *n_out)
{
	struct ids ids = {NULL, 0, 0};
	/* Only the keys: nothing to open. */
	int err =
	    c != NULL ? localstore_journal_iter_bytes(c->ls, NULL, ids_add, &ids) : IHALA_EINVAL;

	if (err != 0) {
		ihala_journal_referrals_free(ids.v, ids.n);
		return err;
	}
	*ids_out = ids.v;
	*n_out = ids.n;
	return 0;
}

void
ihala_journal_referrals_free(char **ids, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(ids[i]);
	}
	free(ids);
}
