/* sealing.c - the node's side of sealed parts: keyring, sealing on submit, opening on delivery,
 * Unreadable answers, erasure of local copies (docs/SEALING.md, issue 16). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "client.h"
#include "error.h"
#include "frame.h"
#include "log.h"
#include "personal.h"
#include "tlsctx.h"

/* ---- keyring ---- */

/* path, or cfg->dir/path when relative; buf of size len. */
static const char *
resolve(const struct client_config *cfg, const char *path, size_t plen, char *buf, size_t len)
{
	if (path[0] == '/' || cfg->dir == NULL) {
		snprintf(buf, len, "%.*s", (int)plen, path);
	} else {
		snprintf(buf, len, "%s/%.*s", cfg->dir, (int)plen, path);
	}
	return buf;
}

struct keyload {
	struct ihala_client *c;
	int err;
};

static int
load_pair(void *arg, const char *item, size_t len)
{
	struct keyload *k = arg;
	const char *colon = memchr(item, ':', len);
	char cert[1024], key[1024], why[512];

	if (colon == NULL) {
		log_warnx("old_encryption_keys: '%.*s' is not CERT:KEY", (int)len, item);
		return k->err = IHALA_ECONFIG;
	}
	resolve(k->c->cfg, item, (size_t)(colon - item), cert, sizeof(cert));
	resolve(k->c->cfg, colon + 1, len - (size_t)(colon + 1 - item), key, sizeof(key));
	if ((k->err = seal_keyring_load(k->c->keyring, cert, key, why, sizeof(why))) != 0) {
		log_warnx("old_encryption_keys: %s", why);
		return k->err;
	}
	return 0;
}

int
sealing_init(struct ihala_client *c)
{
	const struct client_config *cfg = c->cfg;
	struct keyload kl = {c, 0};
	char why[512];
	FILE *fp;
	int err;

	if (cfg->encryption_cert == NULL || cfg->encryption_key == NULL) {
		return 0;
	}
	if ((err = seal_trust_new(cfg->ca_file, cfg->crl_file, &c->trust, why, sizeof(why))) != 0 ||
	    (err = seal_keyring_new(&c->keyring)) != 0 ||
	    (err = seal_keyring_load(c->keyring, cfg->encryption_cert, cfg->encryption_key, why,
	                             sizeof(why))) != 0) {
		log_warnx("encryption key: %s", err == IHALA_ENOMEM ? "out of memory" : why);
		goto fail;
	}
	if ((fp = fopen(cfg->encryption_cert, "r")) == NULL ||
	    (c->own_enc = PEM_read_X509(fp, NULL, NULL, NULL)) == NULL) {
		if (fp != NULL) {
			fclose(fp);
		}
		ERR_clear_error();
		log_warnx("encryption_cert '%s' cannot be read as a PEM certificate",
		          cfg->encryption_cert);
		err = IHALA_ECONFIG;
		goto fail;
	}
	fclose(fp);
	if (tls_cert_identity(c->own_enc, c->own_agency, sizeof(c->own_agency), NULL) != 0 ||
	    (err = seal_cert_check(c->trust, c->own_enc, c->own_agency, why, sizeof(why))) != 0) {
		log_warnx("encryption_cert '%s' is not a valid encryption certificate: %s",
		          cfg->encryption_cert, err != 0 ? why : "it names no agency");
		err = IHALA_ECONFIG;
		goto fail;
	}
	if (cfg->old_encryption_keys != NULL &&
	    clientconf_list(cfg->old_encryption_keys, load_pair, &kl) != 0) {
		err = kl.err != 0 ? kl.err : IHALA_ECONFIG;
		goto fail;
	}
	return 0;
fail:
	sealing_release(c);
	return err == IHALA_EKEYPERM || err == IHALA_ENOMEM ? err : IHALA_ECONFIG;
}

void
sealing_session_reset(struct ihala_client *c)
{
	while (c->n_dircache > 0) {
		X509_free(c->dircache[--c->n_dircache].cert);
	}
}

void
sealing_release(struct ihala_client *c)
{
	sealing_session_reset(c);
	seal_keyring_free(c->keyring);
	c->keyring = NULL;
	X509_free(c->own_enc);
	c->own_enc = NULL;
	seal_trust_free(c->trust);
	c->trust = NULL;
}

/* ---- sealing on submit ---- */

/* What sealing adds at most to the content (CMS structure, one key agreement per recipient):
 * for the size a message will have before it is sealed. */
#define SEAL_OVERHEAD (512u + 256u * SEAL_RECIPIENTS_MAX)

/* The agency's certificate to seal to: this session's pick, else the directory's. */
static int
recipient_cert(struct ihala_client *c, const char *agency, int timeout_ms, X509 **out)
{
	struct ihala_enc_cert e;
	size_t i;
	int err;

	for (i = 0; i < c->n_dircache; i++) {
		if (strcmp(c->dircache[i].agency, agency) == 0) {
			*out = c->dircache[i].cert;
			return 0;
		}
	}
	if ((err = ihala_directory_pick(c, agency, timeout_ms, &e)) != 0) {
		return err; /* errmsg names the agency and what is wrong */
	}
	if (c->n_dircache == DIRCACHE_MAX) {
		X509_free(c->dircache[0].cert);
		c->dircache[0] = c->dircache[--c->n_dircache];
	}
	snprintf(c->dircache[c->n_dircache].agency, sizeof(c->dircache[0].agency), "%s", agency);
	c->dircache[c->n_dircache].cert = e.cert;
	*out = c->dircache[c->n_dircache++].cert;
	return 0;
}

/*
 * The other party of env's referral, who receives it: env->to when set (the broker refuses a
 * `to` that is not the other party, so a wrong one is never delivered), a referral's
 * receiving_agency, else the broker's own record of the referral (a query): the party that is
 * not `self`.
 */
static int
other_party(struct ihala_client *c, const Ihala__V2__Envelope *env, const char *self,
            int timeout_ms, char *out, size_t len)
{
	Ihala__V2__ReferralState *st = NULL;
	const char *rid = personal_referral_id(env);
	int err;

	if (env->to != NULL && env->to[0] != '\0') {
		snprintf(out, len, "%s", env->to);
		return 0;
	}
	if (env->kind_case == IHALA__V2__ENVELOPE__KIND_REFERRAL &&
	    env->referral->receiving_agency[0] != '\0') {
		snprintf(out, len, "%s", env->referral->receiving_agency);
		return 0;
	}
	if (env->kind_case == IHALA__V2__ENVELOPE__KIND_REFERRAL) {
		return client_fail(c, IHALA_ESCHEMA, "a referral needs a recipient ('to')");
	}
	if ((err = ihala_query(c, rid, timeout_ms, &st)) != 0) {
		char why[512];

		snprintf(why, sizeof(why), "%s", ihala_errmsg(c));
		return client_fail(c, err,
		                   "cannot tell who receives message %s (to seal it): the broker "
		                   "said: %s",
		                   env->message_id, why);
	}
	snprintf(out, len, "%s", strcmp(st->referrer, self) == 0 ? st->recipient : st->referrer);
	ihala_state_free(st);
	return 0;
}

struct recipients {
	struct seal_recipient r[SEAL_RECIPIENTS_MAX];
	char names[SEAL_RECIPIENTS_MAX][ID_AGENCY_MAX + 1];
	size_t n;
};

static int
has_recipient(const struct recipients *rs, const char *agency)
{
	size_t i;

	for (i = 0; i < rs->n; i++) {
		if (strcmp(rs->names[i], agency) == 0) {
			return 1;
		}
	}
	return 0;
}

struct custodian_walk {
	struct ihala_client *c;
	struct recipients *rs;
	int timeout_ms;
	int err;
};

static int
add_custodian(void *arg, const char *item, size_t len)
{
	struct custodian_walk *w = arg;
	struct recipients *rs = w->rs;
	char agency[ID_AGENCY_MAX + 1];
	X509 *x;

	snprintf(agency, sizeof(agency), "%.*s", (int)len, item);
	if (has_recipient(rs, agency) || rs->n == SEAL_RECIPIENTS_MAX) {
		return 0;
	}
	if ((w->err = recipient_cert(w->c, agency, w->timeout_ms, &x)) != 0) {
		return w->err;
	}
	snprintf(rs->names[rs->n], sizeof(rs->names[0]), "%s", agency);
	rs->r[rs->n].agency = rs->names[rs->n];
	rs->r[rs->n].cert = x;
	rs->n++;
	return 0;
}

/* A record queued while the recipients' certificates could not be had (the broker out of
 * reach): this mark, then a Submit whose sealed part is sealed to this node alone. It is
 * never sent as it is: sealing_reseal() seals it for good once the broker answers. A Submit
 * never starts with a 0 byte (no field 0). */
#define PENDING_MARK 0x00
/* A message too large once sealed, kept on the rejected list by its clear part alone: never
 * sent, refused again (TOO_LARGE) when retried. */
#define OVERSIZE_MARK 0x01

static int
pack_submit_mark(const uint8_t *env, size_t envlen, const uint8_t *sealed, size_t slen, int mark,
                 uint8_t **rec, size_t *len)
{
	Ihala__V2__Submit s = IHALA__V2__SUBMIT__INIT;
	size_t n, off = mark >= 0 ? 1 : 0;

	s.envelope.data = (uint8_t *)env;
	s.envelope.len = envlen;
	s.sealed.data = (uint8_t *)sealed;
	s.sealed.len = slen;
	n = ihala__v2__submit__get_packed_size(&s);
	if ((*rec = malloc(n + off + 1)) == NULL) {
		return IHALA_ENOMEM;
	}
	(*rec)[0] = (uint8_t)mark;
	*len = off + ihala__v2__submit__pack(&s, *rec + off);
	return 0;
}

static int
pack_submit(const uint8_t *env, size_t envlen, const uint8_t *sealed, size_t slen, uint8_t **rec,
            size_t *len)
{
	return pack_submit_mark(env, envlen, sealed, slen, -1, rec, len);
}

int
sealing_record_oversize(const void *rec, size_t len)
{
	return len > 0 && ((const uint8_t *)rec)[0] == OVERSIZE_MARK;
}

int
sealing_record_pending(const void *rec, size_t len)
{
	return len > 0 && ((const uint8_t *)rec)[0] == PENDING_MARK;
}

int
sealing_record_sealed(const void *rec, size_t len)
{
	size_t off = sealing_record_pending(rec, len) || sealing_record_oversize(rec, len) ? 1 : 0;
	Ihala__V2__Submit *s;
	int sealed;

	if (len <= off ||
	    (s = ihala__v2__submit__unpack(NULL, len - off, (const uint8_t *)rec + off)) == NULL) {
		return 0;
	}
	sealed = s->sealed.len > 0;
	ihala__v2__submit__free_unpacked(s, NULL);
	return sealed;
}

/* Errors that say "not now": the broker is out of reach or busy. */
static int
transport_error(int err)
{
	return err == IHALA_EUNREACHABLE || err == IHALA_ETIMEDOUT || err == IHALA_ECLOSED ||
	       err == IHALA_ERESET || err == IHALA_ESHUTDOWN || err == IHALA_ESESSIONS ||
	       err == IHALA_EOVERLOAD || err == IHALA_EAGAIN;
}

/* The pending record of env: its clear part and its sealed part sealed to this node alone. */
static int
pending_record(struct ihala_client *c, const Ihala__V2__Envelope *env, const uint8_t *plain,
               size_t plen, uint8_t **rec, size_t *len)
{
	struct seal_recipient self = {c->own_agency, c->own_enc};
	uint8_t *der = NULL, *clear = NULL;
	size_t dlen = 0, clen = 0;
	char why[512];
	int err;

	if ((err = seal_bytes(c->trust, &self, 1, plain, plen, &der, &dlen, why, sizeof(why))) !=
	    0) {
		return client_fail(c, err, "message %s was not sealed: %s", env->message_id, why);
	}
	if ((err = personal_clear(env, NULL, &clear, &clen)) == 0) {
		err = pack_submit_mark(clear, clen, der, dlen, PENDING_MARK, rec, len);
	}
	free(der);
	free(clear);
	if (err == 0) {
		c->seal_pending = 1;
	}
	return err;
}

int
sealing_record(struct ihala_client *c, Ihala__V2__Envelope *env, int timeout_ms, uint8_t **rec,
               size_t *len)
{
	const Ihala__V2__Welcome *w = ihala_welcome(c);
	uint8_t *plain = NULL, *der = NULL, *clear = NULL, hash[32];
	size_t plen = 0, dlen = 0, clen = 0;
	struct recipients rs;
	char why[512], other[ID_AGENCY_MAX + 1];
	const char *self;
	X509 *x;
	int err;

	*rec = NULL;
	*len = 0;
	if (!personal_kind(env)) {
		/* Erase, Unreadable: nothing personal, no sealed part. */
		clen = ihala__v2__envelope__get_packed_size(env);
		if ((clear = malloc(clen > 0 ? clen : 1)) == NULL) {
			return IHALA_ENOMEM;
		}
		ihala__v2__envelope__pack(env, clear);
		err = pack_submit(clear, clen, NULL, 0, rec, len);
		free(clear);
		return err;
	}
	if ((err = personal_validate(env, why, sizeof(why))) != 0) {
		/* The broker's sentence for the same check before it moved here: nothing was
		 * queued. */
		return client_fail(c, err, "%s", why);
	}
	self = c->own_agency[0] != '\0' ? c->own_agency
	       : w != NULL              ? w->agency_id
	       : c->cfg->agency != NULL ? c->cfg->agency
	                                : "";
	if ((err = personal_split(env, self, &plain, &plen)) != 0) {
		return client_fail(c, err, "message %s: %s", env->message_id, ihala_strerror(err));
	}
	if (plain == NULL) {
		/* No personal field set: the clear part alone. */
		if ((err = personal_clear(env, NULL, &clear, &clen)) == 0) {
			err = pack_submit(clear, clen, NULL, 0, rec, len);
		}
		free(clear);
		return err;
	}
	/* Too large to be sent: said now, before any request, and kept on the rejected list
	 * (its clear part only) as an oversized message always was. */
	if ((err = personal_clear(env, NULL, &clear, &clen)) != 0) {
		goto out;
	}
	if (plen > SEAL_PLAIN_MAX || clen + plen + SEAL_OVERHEAD > ihala_max_frame(c)) {
		size_t est = clen + plen + SEAL_OVERHEAD;

		err = pack_submit_mark(clear, clen, NULL, 0, OVERSIZE_MARK, rec, len);
		if (err == 0 && plen > SEAL_PLAIN_MAX) {
			err = client_fail(c, IHALA_ETOOLARGE,
			                  "message %s has %zu bytes of personal fields, over the "
			                  "%u bytes a sealed part holds; nothing was queued "
			                  "(shorten long texts or lists)",
			                  env->message_id, plen, SEAL_PLAIN_MAX);
		} else if (err == 0) {
			err = client_fail(
			    c, IHALA_ETOOLARGE,
			    "message %s is %zu bytes encoded, over the broker's limit of "
			    "%zu bytes per frame; nothing was queued (shorten long texts "
			    "or lists)",
			    env->message_id, est, ihala_max_frame(c));
		}
		goto out;
	}
	free(clear);
	clear = NULL;
	if (c->keyring == NULL) {
		err = client_fail(
		    c, IHALA_ECONFIG,
		    "message %s has personal fields and this node has no encryption "
		    "key to seal them with: set encryption_cert and encryption_key in "
		    "%s",
		    env->message_id, c->cfg->path != NULL ? c->cfg->path : "client.conf");
		goto out;
	}
	/* Recipients: the other party (who receives it), ourselves, the custodians. The broker
	 * offers certificates; this node judges every one against its own CA. */
	memset(&rs, 0, sizeof(rs));
	if ((err = other_party(c, env, self, timeout_ms, other, sizeof(other))) != 0) {
		goto offline;
	}
	w = ihala_welcome(c);
	if (w != NULL && strcmp(w->agency_id, self) != 0) {
		err =
		    client_fail(c, IHALA_ECONFIG,
		                "encryption_cert names agency '%s' but this node is '%s': set the "
		                "agency's own encryption certificate",
		                self, w->agency_id);
		goto out;
	}
	if ((err = recipient_cert(c, other, timeout_ms, &x)) == IHALA_ENOTFOUND) {
		/* The broker's refusal of the same message, before anything is queued. */
		err = client_fail(c, IHALA_ERECIPIENT, "recipient '%s' is not a configured agency",
		                  other);
		goto out;
	}
	if (err != 0) {
		goto offline;
	}
	snprintf(rs.names[0], sizeof(rs.names[0]), "%s", other);
	rs.r[0].agency = rs.names[0];
	rs.r[0].cert = x;
	snprintf(rs.names[1], sizeof(rs.names[1]), "%s", self);
	rs.r[1].agency = rs.names[1];
	rs.r[1].cert = c->own_enc;
	rs.n = strcmp(other, self) == 0 ? 1 : 2;
	if (c->cfg->custodians != NULL) {
		struct custodian_walk cw = {c, &rs, timeout_ms, 0};

		if (clientconf_list(c->cfg->custodians, add_custodian, &cw) != 0) {
			if (transport_error(cw.err)) {
				err = cw.err;
				goto offline;
			}
			snprintf(why, sizeof(why), "%s", ihala_errmsg(c));
			err = client_fail(c, cw.err != 0 ? cw.err : IHALA_ECONFIG,
			                  "message %s was not queued: custodian: %s",
			                  env->message_id, why);
			goto out;
		}
	}
	if ((err = seal_bytes(c->trust, rs.r, rs.n, plain, plen, &der, &dlen, why, sizeof(why))) !=
	    0) {
		err = client_fail(c, err, "message %s was not sealed: %s", env->message_id, why);
		goto out;
	}
	if (EVP_Digest(der, dlen, hash, NULL, EVP_sha256(), NULL) != 1) {
		ERR_clear_error();
		err = client_fail(c, IHALA_ETLS, "cannot hash the sealed part");
		goto out;
	}
	if ((err = personal_clear(env, hash, &clear, &clen)) == 0) {
		err = pack_submit(clear, clen, der, dlen, rec, len);
	}
	goto out;
offline:
	if (transport_error(err)) {
		/* Queued all the same, sealed to this node alone until the broker answers. */
		char said[512];

		snprintf(said, sizeof(said), "%s", ihala_errmsg(c));
		err = pending_record(c, env, plain, plen, rec, len);
		if (err == 0) {
			client_fail(c, IHALA_EUNREACHABLE, "%s", said);
		}
	} else if (err != IHALA_ENOTFOUND) {
		snprintf(why, sizeof(why), "%s", ihala_errmsg(c));
		err = client_fail(c, err, "message %s was not queued: %s", env->message_id, why);
	}
out:
	if (plain != NULL) {
		OPENSSL_cleanse(plain, plen);
	}
	free(plain);
	free(der);
	free(clear);
	return err;
}

int
ihala_record_envelope(const void *rec, size_t len, Ihala__V2__Envelope **env)
{
	Ihala__V2__Submit *s;
	int err;

	if (sealing_record_pending(rec, len) || sealing_record_oversize(rec, len)) {
		rec = (const uint8_t *)rec + 1;
		len--;
	}
	s = ihala__v2__submit__unpack(NULL, len, rec);
	if (s == NULL) {
		return IHALA_EBADFRAME;
	}
	err = envelope_decode(s->envelope.data, s->envelope.len, env);
	ihala__v2__submit__free_unpacked(s, NULL);
	return err;
}

/* ---- pending records sealed for good ---- */

#define RESEAL_BATCH 32

struct pending {
	char id[RESEAL_BATCH][ID_MAX + 1];
	uint8_t *rec[RESEAL_BATCH];
	size_t len[RESEAL_BATCH];
	size_t n;
};

static int
collect_pending(void *arg, const char *message_id, const void *env, size_t len)
{
	struct pending *p = arg;

	if (!sealing_record_pending(env, len)) {
		return 0;
	}
	if (p->n == RESEAL_BATCH || (p->rec[p->n] = malloc(len)) == NULL) {
		return 1;
	}
	memcpy(p->rec[p->n], env, len);
	p->len[p->n] = len;
	snprintf(p->id[p->n], sizeof(p->id[0]), "%s", message_id);
	p->n++;
	return 0;
}

/* The full envelope of a record (pending or not): its clear part and the sealed part opened
 * with our own key (we are always one of its recipients). */
static int
pending_full(struct ihala_client *c, const uint8_t *rec, size_t len, Ihala__V2__Envelope **full,
             char *why, size_t whylen)
{
	size_t off = sealing_record_pending(rec, len) ? 1 : 0;
	Ihala__V2__Submit *s = ihala__v2__submit__unpack(NULL, len - off, rec + off);
	Ihala__V2__Envelope *clear = NULL;
	uint8_t *plain = NULL;
	size_t plen = 0;
	int err;

	if (s != NULL && s->sealed.len == 0) {
		/* nothing sealed: the clear part is the whole message */
		err = envelope_decode(s->envelope.data, s->envelope.len, full);
		ihala__v2__submit__free_unpacked(s, NULL);
		return err;
	}
	if (c->keyring == NULL) {
		ihala__v2__submit__free_unpacked(s, NULL);
		return IHALA_ECONFIG;
	}
	if (s == NULL) {
		snprintf(why, whylen, "the outbox record does not decode (damaged)");
		return IHALA_ESTORE;
	}
	if ((err = envelope_decode(s->envelope.data, s->envelope.len, &clear)) != 0) {
		snprintf(why, whylen, "the outbox record's envelope does not decode (damaged)");
		err = IHALA_ESTORE;
	} else if ((err = seal_open(c->keyring, s->sealed.data, s->sealed.len, &plain, &plen, why,
	                            whylen)) == 0) {
		err = personal_merge(clear, c->own_agency, plain, plen, full, why, whylen);
		OPENSSL_cleanse(plain, plen);
		free(plain);
	}
	envelope_free(clear);
	ihala__v2__submit__free_unpacked(s, NULL);
	return err;
}

/* 1 when a and b are the same message: their clear parts without the derived fields, and
 * their personal fields, encode the same. */
static int
same_message(const Ihala__V2__Envelope *a, const Ihala__V2__Envelope *b, const char *self)
{
	uint8_t *ca = NULL, *cb = NULL, *sa = NULL, *sb = NULL;
	size_t cal = 0, cbl = 0, sal = 0, sbl = 0;
	int same = 0;

	if (personal_kind(a) != personal_kind(b)) {
		return 0;
	}
	if (!personal_kind(a)) {
		ca = malloc(ihala__v2__envelope__get_packed_size(a) + 1);
		cb = malloc(ihala__v2__envelope__get_packed_size(b) + 1);
		if (ca != NULL && cb != NULL) {
			cal = ihala__v2__envelope__pack(a, ca);
			cbl = ihala__v2__envelope__pack(b, cb);
			same = cal == cbl && memcmp(ca, cb, cal) == 0;
		}
	} else if (personal_clear(a, NULL, &ca, &cal) == 0 &&
	           personal_clear(b, NULL, &cb, &cbl) == 0 &&
	           personal_split(a, self, &sa, &sal) == 0 &&
	           personal_split(b, self, &sb, &sbl) == 0) {
		same = cal == cbl && memcmp(ca, cb, cal) == 0 && sal == sbl &&
		       (sal == 0 || memcmp(sa, sb, sal) == 0);
	}
	if (sa != NULL) {
		OPENSSL_cleanse(sa, sal);
	}
	if (sb != NULL) {
		OPENSSL_cleanse(sb, sbl);
	}
	free(ca);
	free(cb);
	free(sa);
	free(sb);
	return same;
}

int
sealing_reuse(struct ihala_client *c, const Ihala__V2__Envelope *env, uint8_t **rec, size_t *len)
{
	Ihala__V2__Envelope *old = NULL;
	void *r = NULL;
	size_t rlen = 0;
	char why[512];
	int same;

	if (localstore_outbox_get(c->ls, env->message_id, &r, &rlen) != 0 &&
	    localstore_sent_get(c->ls, env->message_id, &r, &rlen, NULL) != 0) {
		return IHALA_ENOTFOUND;
	}
	if (rlen == 0 || pending_full(c, r, rlen, &old, why, sizeof(why)) != 0) {
		free(r);
		return IHALA_ENOTFOUND;
	}
	same = same_message(env, old, c->own_agency);
	envelope_free(old);
	if (!same) {
		free(r);
		return IHALA_ENOTFOUND; /* sealed anew: the broker says MESSAGE_ID_CONFLICT */
	}
	*rec = r;
	*len = rlen;
	return 0;
}

int
sealing_reseal(struct ihala_client *c, int timeout_ms)
{
	struct pending p;
	size_t i;
	int err = 0;

	if (!c->seal_pending || c->resealing || c->keyring == NULL) {
		return 0;
	}
	c->resealing = 1;
	memset(&p, 0, sizeof(p));
	if ((err = localstore_outbox_iter(c->ls, collect_pending, &p)) < 0) {
		goto done;
	}
	err = 0;
	if (p.n == 0) {
		c->seal_pending = 0;
	}
	for (i = 0; i < p.n && err == 0; i++) {
		Ihala__V2__Envelope *full = NULL;
		uint8_t *rec = NULL;
		size_t len = 0;
		char why[512];
		int rc;

		rc = pending_full(c, p.rec[i], p.len[i], &full, why, sizeof(why));
		if (rc == 0) {
			rc = sealing_record(c, full, timeout_ms, &rec, &len);
			snprintf(why, sizeof(why), "%s", ihala_errmsg(c));
		}
		if (rc == 0 && !sealing_record_pending(rec, len)) {
			rc = localstore_outbox_replace(c->ls, p.id[i], rec, len);
			if (rc != 0) {
				err = client_fail(c, rc, "cannot store sealed message %s: %s",
				                  p.id[i], ihala_strerror(rc));
			}
		} else if (rc == 0 || transport_error(rc)) {
			err = rc == 0 ? IHALA_EUNREACHABLE : rc; /* still out of reach: later */
		} else if (rc == IHALA_ENOMEM) {
			err = rc;
		} else {
			/* Refused for good (no valid certificate, not a party...): it leaves the
			 * outbox for the rejected list, still sealed to this node alone. */
			client_refuse(c, p.id[i], rc, why);
		}
		free(rec);
		envelope_free(full);
	}
done:
	for (i = 0; i < p.n; i++) {
		free(p.rec[i]);
	}
	c->resealing = 0;
	return err;
}

/* ---- opening on delivery ---- */

/* The wire code of seal_open()'s refusals. */
static int
open_code(int err)
{
	switch (err) {
	case SEAL_ENOTRECIPIENT:
		return IHALA_ESEALRECIP;
	case SEAL_EAUTH:
		return IHALA_ESEALAUTH;
	case IHALA_ENOMEM:
		return IHALA_ENOMEM;
	default: /* SEAL_EMALFORMED, SEAL_ETOOLARGE, IHALA_EINVAL */
		return IHALA_ESEALFORM;
	}
}

/* Tell the sender (through the broker) that entry d->seq could not be read: an Unreadable,
 * queued in the outbox under an id made from the seq, so a repeat is the same message. */
static void
unreadable(struct ihala_client *c, const struct ihala_delivery *d, int code, const char *why)
{
	Ihala__V2__Envelope e = IHALA__V2__ENVELOPE__INIT;
	Ihala__V2__Unreadable u = IHALA__V2__UNREADABLE__INIT;
	char id[ID_MAX + 1];
	uint8_t *env = NULL, *rec = NULL;
	size_t elen, rlen;
	int err;

	snprintf(id, sizeof(id), "unreadable-%llu", (unsigned long long)d->seq);
	e.message_id = id;
	e.kind_case = IHALA__V2__ENVELOPE__KIND_UNREADABLE;
	e.unreadable = &u;
	u.referral_id = (char *)personal_referral_id(d->envelope);
	u.ref_seq = d->seq;
	u.code = (Ihala__V2__ErrorCode)-code;
	u.detail = (char *)why;
	elen = ihala__v2__envelope__get_packed_size(&e);
	if ((env = malloc(elen)) == NULL) {
		log_warnx("cannot answer entry %llu as unreadable: out of memory",
		          (unsigned long long)d->seq);
		return;
	}
	ihala__v2__envelope__pack(&e, env);
	if ((err = pack_submit(env, elen, NULL, 0, &rec, &rlen)) == 0) {
		err = localstore_outbox_put(c->ls, id, rec, rlen);
	}
	if (err != 0 && err != IHALA_EMSGID) {
		log_warnx("cannot queue the unreadable answer to entry %llu: %s",
		          (unsigned long long)d->seq, ihala_strerror(err));
	} else if (err == 0) {
		client_outbox_pump(c);
	}
	free(env);
	free(rec);
}

void
sealing_open_delivery(struct ihala_client *c, struct ihala_delivery *d)
{
	Ihala__V2__Envelope *merged = NULL;
	const Ihala__V2__Envelope *e = d->envelope;
	uint8_t *plain = NULL, hash[32];
	size_t plen = 0;
	char why[512];
	int err;

	if (d->log == NULL || d->log->kind != IHALA__V2__ENTRY_KIND__ENTRY_KIND_SUBMISSION ||
	    e == NULL || (e->sealed_sha256.len == 0 && d->sealed_len == 0)) {
		return; /* nothing sealed */
	}
	if (d->sealed_len == 0) {
		d->open_err = IHALA_EERASED; /* the log committed to one; it is gone */
		return;
	}
	if (!personal_kind(e)) {
		err = IHALA_ESEALCONTENT;
		snprintf(why, sizeof(why),
		         "a sealed part on a message kind without personal fields");
		goto refuse;
	}
	if (EVP_Digest(d->sealed, d->sealed_len, hash, NULL, EVP_sha256(), NULL) != 1 ||
	    e->sealed_sha256.len != sizeof(hash) ||
	    memcmp(hash, e->sealed_sha256.data, sizeof(hash)) != 0) {
		ERR_clear_error();
		err = IHALA_ESEALBIND;
		snprintf(
		    why, sizeof(why),
		    "the sealed part is not the one the log entry committed to (sealed_sha256)");
		goto refuse;
	}
	if (c->keyring == NULL) {
		log_warnx("entry %llu has a sealed part and this node has no encryption key "
		          "(encryption_cert, encryption_key): it cannot be opened",
		          (unsigned long long)d->seq);
		d->open_err = IHALA_ECONFIG;
		return;
	}
	if ((err = seal_open(c->keyring, d->sealed, d->sealed_len, &plain, &plen, why,
	                     sizeof(why))) != 0) {
		err = open_code(err);
		goto refuse;
	}
	err = personal_merge(e, d->log->sender, plain, plen, &merged, why, sizeof(why));
	OPENSSL_cleanse(plain, plen);
	free(plain);
	if (err != 0) {
		goto refuse;
	}
	envelope_free(d->envelope);
	d->envelope = merged;
	return;
refuse:
	d->open_err = err;
	if (err == IHALA_ENOMEM) {
		return; /* ours, not the sender's: it is opened again on the next read */
	}
	log_security("entry %llu from '%s' cannot be read: %s: %s; the sender is told",
	             (unsigned long long)d->seq, d->log->sender, ihala_errname(err), why);
	unreadable(c, d, err, why);
}

struct rejected_of {
	const char *rid;
	char (*ids)[ID_MAX + 1];
	size_t n, cap;
};

static int
rejected_of_cb(void *arg, const struct localstore_rejected *r)
{
	struct rejected_of *ro = arg;
	Ihala__V2__Envelope *e = NULL;

	if (ihala_record_envelope(r->env, r->env_len, &e) == 0 && personal_kind(e) &&
	    strcmp(personal_referral_id(e), ro->rid) == 0 && ro->n < ro->cap) {
		snprintf(ro->ids[ro->n++], sizeof(ro->ids[0]), "%s", r->message_id);
	}
	envelope_free(e);
	return 0;
}

/* The rejected list's messages about referral rid: refused, they still hold its sealed part. */
static void
erase_rejected(struct ihala_client *c, const char *rid)
{
	char ids[64][ID_MAX + 1];
	struct rejected_of ro = {rid, ids, 0, 64};
	size_t i;

	if (rid[0] == '\0' || localstore_rejected_iter(c->ls, rejected_of_cb, &ro) != 0) {
		return;
	}
	for (i = 0; i < ro.n; i++) {
		localstore_rejected_del(c->ls, ids[i]);
	}
}

int
sealing_erasure(struct ihala_client *c, const Ihala__V2__LogEntry *le)
{
	size_t n = 0;
	int err;

	if (le->kind != IHALA__V2__ENTRY_KIND__ENTRY_KIND_ERASURE || le->event == NULL) {
		return 0;
	}
	err = localstore_erase_seqs(c->ls, le->event->erased_seqs, le->event->n_erased_seqs, &n);
	if (err != 0) {
		return client_fail(c, err, "cannot erase the local copies of referral '%s': %s",
		                   le->event->referral_id, ihala_strerror(err));
	}
	erase_rejected(c, le->event->referral_id);
	log_info("erasure of referral '%s': %zu local sealed copies deleted",
	         le->event->referral_id, n);
	return 0;
}
