/* handlers.c - the broker's requests: handshake end, submit, query, replay, proof, checkpoint,
 * directory. */
#include "handlers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <zmq.h>

#include "channel.h"
#include "clock.h"
#include "config.h"
#include "deliver.h"
#include "error.h"
#include "frame.h"
#include "id.h"
#include "ledger.h"
#include "log.h"
#include "merkle.h"
#include "metrics.h"
#include "policy.h"
#include "ratelog.h"
#include "refstate.h"
#include "seal.h"
#include "session.h"
#include "store.h"
#include "tlsctx.h"

#define BROKER_VERSION "ihala-broker 0.1.0"
/* Bytes a LogEntry and a Deliver frame add around an envelope (seq, time, agency ids, tags). */
#define ENTRY_OVERHEAD 512

static char *
latest_checkpoint(struct server *sv, uint64_t *size)
{
	struct store_rtxn *r;
	char *text = NULL;
	uint64_t sz = 0;

	if (store_rbegin(sv->store, &r) != 0) {
		return NULL;
	}
	if (store_checkpoint_latest(r, &sz, &text) != 0) {
		text = NULL;
		sz = 0;
	}
	store_rend(r);
	if (size != NULL) {
		*size = sz;
	}
	return text;
}

static void
send_welcome(struct server *sv, struct session *s)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__Welcome w = IHALA__V2__WELCOME__INIT;
	Ihala__V2__Limits l = IHALA__V2__LIMITS__INIT;
	char *ckpt = latest_checkpoint(sv, NULL);

	w.agency_id = s->agency;
	w.role = (Ihala__V2__Role)s->role;
	w.broker_time_ms = clock_wall_ms();
	l.max_frame_bytes = (uint32_t)sv->cfg->limits.max_frame;
	l.credit_window = (uint32_t)sv->cfg->limits.credit_window;
	l.max_inflight = (uint32_t)sv->cfg->limits.max_inflight;
	l.max_inflight_bytes = (uint32_t)sv->cfg->limits.max_inflight_bytes;
	w.limits = &l;
	w.checkpoint = ckpt != NULL ? ckpt : "";
	w.broker_version = BROKER_VERSION;
	w.protocol_version = 2;
	f.kind_case = IHALA__V2__FRAME__KIND_WELCOME;
	f.welcome = &w;
	session_send(sv, s, &f);
	free(ckpt);
}

/* Live authenticated sessions of agency `id`. */
static uint64_t
agency_sessions(struct server *sv, const char *id)
{
	struct session *s;
	uint64_t n = 0;

	for (s = sv->sessions; s != NULL; s = s->next) {
		n += s->authed && !s->dead && strcmp(s->agency, id) == 0;
	}
	return n;
}

/* The handshake finished: who is it, and may it be here? */
static void
session_authenticate(struct server *sv, struct session *s)
{
	const struct agency_config *ac;
	char id[ID_AGENCY_MAX + 1];
	char text[256];
	SSL *ssl = channel_ssl(s->ch);
	int err;

	/*
	 * The handshake was verified against the trust store of the context it began on. A
	 * reload since (a new CRL) does not reach it, and reload() only judges sessions already
	 * authenticated: judge this one again, now, by the context in force.
	 */
	if (SSL_get_SSL_CTX(ssl) != sv->ssl) {
		err = tlsctx_verify_cert(sv->ssl, SSL_get0_peer_certificate(ssl),
		                         SSL_get_peer_cert_chain(ssl), text, sizeof(text));
		if (err != 0) {
			log_security("session %llu: refused: certificate fails under the "
			             "configuration reloaded during its handshake: %s",
			             (unsigned long long)s->id, text);
			session_end(sv, s, err == IHALA_EREVOKED ? IHALA_EREVOKED : IHALA_ECERT,
			            text);
			return;
		}
	}
	err = tls_agency_cert_check(SSL_get0_peer_certificate(ssl), text, sizeof(text));
	if (err != 0) {
		log_security("session %llu: refused: %s", (unsigned long long)s->id, text);
		session_end(sv, s, err, text);
		return;
	}
	err = tls_peer_identity(channel_ssl(s->ch), id, sizeof(id), s->fp);
	if (err != 0) {
		log_security("session %llu: refused: certificate names no valid agency id (%s)",
		             (unsigned long long)s->id, ihala_strerror(err));
		session_end(sv, s, IHALA_EUNKNOWNAGENCY, NULL);
		return;
	}
	ac = broker_config_find_cn(sv->cfg, id);
	if (ac == NULL) {
		snprintf(text, sizeof(text), "certificate name '%s' is not a configured agency",
		         id);
		log_security("session %llu: refused: %s", (unsigned long long)s->id, text);
		session_end(sv, s, IHALA_EUNKNOWNAGENCY, text);
		return;
	}
	if (ac->fingerprint != NULL && CRYPTO_memcmp(ac->fingerprint_bin, s->fp, TLS_FP_LEN) != 0) {
		snprintf(text, sizeof(text),
		         "certificate of '%s' does not match the agency's pinned fingerprint",
		         ac->id);
		log_security("session %llu: refused: %s", (unsigned long long)s->id, text);
		session_end(sv, s, IHALA_EFINGERPRINT, text);
		return;
	}
	if (agency_sessions(sv, ac->id) >= sv->cfg->limits.max_sessions_per_agency) {
		snprintf(text, sizeof(text), "agency '%s' has %llu sessions, its limit", ac->id,
		         (unsigned long long)sv->cfg->limits.max_sessions_per_agency);
		if (ratelog_allow(sv->refusals, ac->id, clock_wall_ms())) {
			log_security("session %llu: refused: %s", (unsigned long long)s->id, text);
		}
		session_end(sv, s, IHALA_ESESSIONS, text);
		return;
	}
	snprintf(s->agency, sizeof(s->agency), "%s", ac->id);
	s->role = ac->role;
	s->authed = 1;
	sv->n_preauth--;
	metrics_session_opened(s->agency);
	s->art = agency_rt_get(sv, s->agency);
	if (s->art == NULL) {
		/* Without it nothing would ever be delivered to this session. */
		log_warnx("session %llu (%s): out of memory; closing", (unsigned long long)s->id,
		          s->agency);
		session_end(sv, s, IHALA_ENOMEM, NULL);
		return;
	}
	s->art->dirty = 1;
	log_info("session %llu: agency '%s' (%s) authenticated", (unsigned long long)s->id,
	         s->agency, broker_config_role_name(s->role));
	send_welcome(sv, s);
}

/* Answer a submission the broker will not log with a REFUSED receipt naming it. */
static void
submit_refuse(struct server *sv, struct session *s, const Ihala__V2__Envelope *env, int err,
              const char *text)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__Receipt rc = IHALA__V2__RECEIPT__INIT;

	if (ratelog_allow(sv->refusals, s->agency, clock_wall_ms())) {
		log_security("agency '%s': submission '%s' refused: %s", s->agency,
		             env != NULL ? env->message_id : "", text);
	}
	metrics_inc_receipt(IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED, err);
	rc.message_id = env != NULL ? env->message_id : "";
	rc.status = IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED;
	rc.error_code = -err;
	rc.error_message = (char *)text;
	f.kind_case = IHALA__V2__FRAME__KIND_RECEIPT;
	f.receipt = &rc;
	session_send(sv, s, &f);
}

/*
 * The sealed part against the clear one (docs/SEALING.md): Erase and Unreadable carry none;
 * otherwise Submit.sealed is present exactly when Envelope.sealed_sha256 is, within
 * SEAL_DER_MAX, and hashes to it. The broker never looks inside. 0, or the refusal with its
 * sentence in text.
 */
static int
sealed_check(const Ihala__V2__Envelope *env, const ProtobufCBinaryData *sealed, char *text,
             size_t cap)
{
	uint8_t md[MERKLE_HASH_LEN];

	if (env->kind_case == IHALA__V2__ENVELOPE__KIND_ERASE ||
	    env->kind_case == IHALA__V2__ENVELOPE__KIND_UNREADABLE) {
		if (sealed->len > 0 || env->sealed_sha256.len > 0 || env->n_data_declared > 0) {
			snprintf(text, cap,
			         "an %s carries no sealed part (sealed, sealed_sha256 and "
			         "data_declared must be empty)",
			         env->kind_case == IHALA__V2__ENVELOPE__KIND_ERASE ? "erase"
			                                                           : "unreadable");
			return IHALA_ESCHEMA;
		}
		return 0;
	}
	if (sealed->len > SEAL_DER_MAX) {
		snprintf(text, cap, "sealed part of %zu bytes is over the limit of %u bytes",
		         sealed->len, (unsigned)SEAL_DER_MAX);
		return IHALA_ETOOLARGE;
	}
	if (sealed->len == 0 && env->sealed_sha256.len == 0) {
		return 0;
	}
	if (sealed->len == 0) {
		snprintf(text, cap,
		         "the envelope has a sealed_sha256 but the submission carries no "
		         "sealed part");
		return IHALA_ESEALHASH;
	}
	if (env->sealed_sha256.len != 32) {
		snprintf(text, cap,
		         "the submission carries a sealed part but the envelope's sealed_sha256 is "
		         "%zu bytes, not the 32 of its SHA-256",
		         env->sealed_sha256.len);
		return IHALA_ESEALHASH;
	}
	/* Not EVP_Digest: its fetch and context cost 0.4 us per sealed part of 850 bytes, as
	 * much again as the hash itself (SHA-NI). */
	if (merkle_sha256(sealed->data, sealed->len, md) != 0) {
		snprintf(text, cap, "cannot hash the sealed part; retry later");
		return IHALA_EINTERNAL;
	}
	if (CRYPTO_memcmp(md, env->sealed_sha256.data, 32) != 0) {
		snprintf(
		    text, cap,
		    "the sealed part's SHA-256 is not the envelope's sealed_sha256 (the sealed "
		    "part was changed or belongs to another message)");
		return IHALA_ESEALHASH;
	}
	return 0;
}

static void
handle_submit(struct server *sv, struct session *s, const Ihala__V2__Submit *sub)
{
	Ihala__V2__Envelope *env = NULL;
	struct wreq *r;
	char text[256];
	size_t total = sub->envelope.len + sub->sealed.len;
	int err;

	metrics_inc_submissions();
	/* The request first, in one block, so that the envelope decodes into it: no malloc per
	 * field, and none per request beyond this one. */
	r = wreq_new_submit(sub->envelope.len, sub->sealed.len);
	if (r == NULL) {
		if (envelope_decode(sub->envelope.data, sub->envelope.len, &env) != 0) {
			env = NULL;
		}
		submit_refuse(sv, s, env, IHALA_EOVERLOAD,
		              "the broker is short of memory; retry later");
		envelope_free(env);
		return;
	}
	/* Decode first, so that every refusal names the message it refuses. */
	err = envelope_decode_in(sub->envelope.data, sub->envelope.len, &r->arena, &env);
	snprintf(text, sizeof(text), "envelope: %s", ihala_strerror(err));
	if (err == 0 && total + ENTRY_OVERHEAD > sv->cfg->limits.max_frame) {
		/* Logged entries travel in Deliver frames, with their sealed part: leave room for
		 * the wrapping. */
		err = IHALA_ETOOLARGE;
		snprintf(text, sizeof(text),
		         "envelope and sealed part of %zu bytes are over the limit of %llu bytes",
		         total, (unsigned long long)(sv->cfg->limits.max_frame - ENTRY_OVERHEAD));
	} else if (err == 0 && (err = sealed_check(env, &sub->sealed, text, sizeof(text))) != 0) {
		/* the sentence is in text */
	} else if (err == 0 && sv->stopping) {
		err = IHALA_ESHUTDOWN;
		snprintf(text, sizeof(text), "%s", ihala_strerror(err));
	} else if (err == 0 && s->inflight_submits >= sv->cfg->limits.max_inflight) {
		err = IHALA_EOVERLOAD;
		snprintf(text, sizeof(text), "more than %llu submissions without receipts",
		         (unsigned long long)sv->cfg->limits.max_inflight);
	} else if (err == 0 && s->inflight_submits > 0 &&
	           s->inflight_bytes + total > sv->cfg->limits.max_inflight_bytes) {
		/* Its share of the broker's memory: one submission at a time always fits. */
		err = IHALA_EOVERLOAD;
		snprintf(text, sizeof(text),
		         "more than %llu bytes of submissions without receipts "
		         "(max_inflight_bytes); retry when receipts come",
		         (unsigned long long)sv->cfg->limits.max_inflight_bytes);
	}
	if (err != 0) {
		submit_refuse(sv, s, env, err, text);
		wreq_free(r); /* and env with it */
		return;
	}
	memcpy(r->env_bytes, sub->envelope.data, sub->envelope.len);
	if (sub->sealed.len > 0) {
		memcpy(r->sealed, sub->sealed.data, sub->sealed.len);
	}
	r->env = env;
	r->session_id = s->id;
	snprintf(r->agency, sizeof(r->agency), "%s", s->agency);
	r->now_ms = clock_wall_ms();
	if (server_to_writer(sv, r) != 0) {
		/* Not the writer's: answered here, and not counted as waiting for a receipt. */
		submit_refuse(sv, s, env, IHALA_EOVERLOAD,
		              "the broker cannot take the message now; retry later");
		wreq_free(r);
		return;
	}
	s->inflight_submits++;
	s->inflight_bytes += total;
}

static void
handle_query(struct server *sv, struct session *s, const Ihala__V2__Query *q)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__ReferralState *st = NULL;
	struct store_rtxn *r;
	int err;

	if (!id_valid(q->referral_id)) {
		send_error(sv, s, IHALA_EINVAL, q->request_id,
		           "the query names no valid referral id");
		return;
	}
	err = store_rbegin(sv->store, &r);
	if (err != 0) {
		send_error(sv, s, err, q->request_id, NULL);
		return;
	}
	/* The state record, then its history: one record per item. */
	err = refstate_load(r, q->referral_id, &st);
	if (err == 0) {
		err = refstate_load_history(r, st);
	}
	store_rend(r);
	/* A referral the caller is not party to is refused (and logged as a security event). */
	if (err == 0 && policy_may_read(s->agency, (Ihala__V2__Role)s->role, st) != 0) {
		if (ratelog_allow(sv->refusals, s->agency, clock_wall_ms())) {
			log_security("agency '%s' asked for referral '%s' it is not a party to",
			             s->agency, q->referral_id);
		}
		err = IHALA_ENOTFOUND;
	}
	if (err != 0) {
		char text[256];

		/* Unknown and not a party get one answer, so no stranger learns which ids exist
		 * (the same words as the writer's refusals). */
		if (err == IHALA_ENOTFOUND) {
			err = IHALA_ENOREFERRAL;
			snprintf(text, sizeof(text),
			         "no referral '%s' that agency '%s' is a party to", q->referral_id,
			         s->agency);
		} else {
			snprintf(text, sizeof(text), "referral '%s': %s", q->referral_id,
			         ihala_strerror(err));
		}
		send_error(sv, s, err, q->request_id, text);
	} else {
		st->request_id = q->request_id;
		/* the broker's bookkeeping (referral_bytes, referral_rate) */
		st->bytes_logged = 0;
		st->rate_window_ms = 0;
		st->rate_count = 0;
		f.kind_case = IHALA__V2__FRAME__KIND_REFERRAL_STATE;
		f.referral_state = st;
		session_send(sv, s, &f);
	}
	if (st != NULL) {
		ihala__v2__referral_state__free_unpacked(st, NULL);
	}
}

static void
handle_replay(struct server *sv, struct session *s, const Ihala__V2__ReplayRequest *q)
{
	if (s->role != AGENCY_ROLE_AUDITOR) {
		log_security("agency '%s' asked to replay the log; only auditors may", s->agency);
		send_error(sv, s, IHALA_EFORBIDDEN, q->request_id,
		           "only auditors may replay the log");
		return;
	}
	replay_stop(sv, s);
	s->replaying = 1;
	s->replay_req = q->request_id;
	s->replay_next = q->from_seq == 0 ? 1 : q->from_seq;
	s->replay_to = q->to_seq;
	s->replay_follow = q->follow;
	if (s->replay_follow) {
		sv->replay_followers++;
	}
	replay_pump(sv, s);
}

static int
send_checkpoint(struct server *sv, struct session *s, uint64_t request_id)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__CheckpointNote cn = IHALA__V2__CHECKPOINT_NOTE__INIT;
	char *text = latest_checkpoint(sv, NULL);

	if (text == NULL) {
		send_error(sv, s, IHALA_ENOTFOUND, request_id, "no checkpoint has been signed yet");
		return 0;
	}
	cn.request_id = request_id;
	cn.text = text;
	f.kind_case = IHALA__V2__FRAME__KIND_CHECKPOINT;
	f.checkpoint = &cn;
	session_send(sv, s, &f);
	free(text);
	return 0;
}

/*
 * The directory: the encryption certificates the configuration lists for one agency (or every
 * agency), to any authenticated agency. The broker vouches for none of them (nodes check each
 * against their own CA), so it tells nothing that is not public within the federation.
 */
static void
handle_directory(struct server *sv, struct session *s, const Ihala__V2__DirectoryRequest *q)
{
	const struct broker_config *cfg = sv->cfg;
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__Directory d = IHALA__V2__DIRECTORY__INIT;
	Ihala__V2__AgencyCerts *ac = NULL, **acp = NULL;
	ProtobufCBinaryData *bd = NULL;
	size_t i, j, n = 0, nb = 0, first = 0, last = cfg->nagencies;
	char msg[160];

	if (q->agency[0] != '\0') {
		const struct agency_config *a = broker_config_find_agency(cfg, q->agency);

		if (!id_agency_valid(q->agency, strlen(q->agency))) {
			/* not echoed: it may be anything */
			send_error(sv, s, IHALA_EINVAL, q->request_id,
			           "the agency asked about is not an agency id (" ID_AGENCY_RULE
			           ")");
			return;
		}
		if (a == NULL) {
			snprintf(msg, sizeof(msg), "no agency '%s' is configured at the broker",
			         q->agency);
			send_error(sv, s, IHALA_ENOTFOUND, q->request_id, msg);
			return;
		}
		first = (size_t)(a - cfg->agencies);
		last = first + 1;
	}
	for (i = first; i < last; i++) {
		nb += cfg->agencies[i].n_enc_certs;
	}
	ac = calloc(last - first, sizeof(*ac));
	acp = calloc(last - first, sizeof(*acp));
	bd = calloc(nb > 0 ? nb : 1, sizeof(*bd));
	if (ac == NULL || acp == NULL || bd == NULL) {
		send_error(sv, s, IHALA_ENOMEM, q->request_id, NULL);
		goto done;
	}
	nb = 0;
	for (i = first; i < last; i++, n++) {
		const struct agency_config *a = &cfg->agencies[i];

		ihala__v2__agency_certs__init(&ac[n]);
		ac[n].agency = a->id;
		ac[n].n_cert_der = a->n_enc_certs;
		ac[n].cert_der = &bd[nb];
		for (j = 0; j < a->n_enc_certs; j++, nb++) {
			bd[nb].data = a->enc_certs[j].der;
			bd[nb].len = a->enc_certs[j].len;
		}
		acp[n] = &ac[n];
	}
	d.request_id = q->request_id;
	d.n_agencies = n;
	d.agencies = acp;
	f.kind_case = IHALA__V2__FRAME__KIND_DIRECTORY;
	f.directory = &d;
	if (ihala__v2__frame__get_packed_size(&f) > cfg->limits.max_frame) {
		send_error(sv, s, IHALA_ETOOLARGE, q->request_id,
		           "the whole directory is over the frame limit; ask one agency at a time");
		goto done;
	}
	session_send(sv, s, &f);
done:
	free(bd);
	free(acp);
	free(ac);
}

/*
 * Whether the session's agency may have a proof of the entry at `seq`: auditors of any, others
 * of the entries they sent or that were queued for them, and of the delivery of one of those.
 * 1 yes, 0 no (also when there is no such entry: the caller answers both alike).
 */
static int
entry_party(struct server *sv, struct session *s, struct store_rtxn *r, uint64_t seq)
{
	Ihala__V2__LogEntry *e = NULL;
	const void *data;
	size_t len;
	uint64_t ref = 0;
	int party = 0;

	if (s->role == AGENCY_ROLE_AUDITOR) {
		return 1;
	}
	(void)sv;
	if (store_log_get(r, seq, &data, &len) != 0 || logentry_decode(data, len, &e) != 0) {
		return 0;
	}
	party = strcmp(e->sender, s->agency) == 0 || strcmp(e->recipient, s->agency) == 0;
	if (!party && e->kind == IHALA__V2__ENTRY_KIND__ENTRY_KIND_DELIVERY && e->event != NULL) {
		ref = e->event->ref_seq;
	}
	logentry_free(e);
	if (ref != 0 && ref < seq) {
		party = entry_party(sv, s, r, ref);
	}
	return party;
}

static void
handle_proof(struct server *sv, struct session *s, const Ihala__V2__ProofRequest *q)
{
	uint8_t path[MERKLE_MAX_PATH][MERKLE_HASH_LEN];
	uint8_t *pp[MERKLE_MAX_PATH];
	uint8_t leaf[MERKLE_HASH_LEN];
	ProtobufCBinaryData bd[MERKLE_MAX_PATH];
	struct store_rtxn *r = NULL;
	char *text = NULL;
	char msg[256];
	uint64_t size = 0, seq = 0;
	size_t pathlen, i;
	int err;

	(void)pp;
	/* The request is judged before the store: its answer must not depend on the moment. */
	if (q->consistency_from == 0 &&
	    q->target_case != IHALA__V2__PROOF_REQUEST__TARGET_MESSAGE_ID &&
	    (q->target_case != IHALA__V2__PROOF_REQUEST__TARGET_SEQ || q->seq == 0)) {
		send_error(sv, s, IHALA_EINVAL,
		           q->request_id, /* INVALID_ARGUMENT, PROTOCOL.md §6 */
		           "a proof request needs a seq, a message id or consistency_from");
		return;
	}
	err = store_rbegin(sv->store, &r);
	if (err != 0) {
		send_error(sv, s, err, q->request_id, NULL);
		return;
	}
	if (q->tree_size != 0) {
		size = q->tree_size;
		err = store_checkpoint_get(r, size, &text);
	} else {
		err = store_checkpoint_latest(r, &size, &text);
	}
	if (err != 0) {
		snprintf(msg, sizeof(msg), "no signed checkpoint%s yet; retry in a few seconds",
		         q->tree_size != 0 ? " of that tree size" : "");
		err = IHALA_ENOTFOUND;
		goto fail;
	}
	if (q->target_case == IHALA__V2__PROOF_REQUEST__TARGET_MESSAGE_ID) {
		err = store_msgid_get(r, s->agency, q->message_id, &seq);
		if (err != 0) {
			snprintf(msg, sizeof(msg), "no submission of '%s' has message id '%s'",
			         s->agency, q->message_id);
			goto fail;
		}
	} else if (q->target_case == IHALA__V2__PROOF_REQUEST__TARGET_SEQ) {
		seq = q->seq;
	}
	if (seq != 0) {
		Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
		Ihala__V2__InclusionProof ip = IHALA__V2__INCLUSION_PROOF__INIT;

		if (seq > size || !entry_party(sv, s, r, seq)) {
			uint64_t last = 0;

			(void)store_log_last(r, &last);
			if (seq <= last && entry_party(sv, s, r, seq)) {
				snprintf(msg, sizeof(msg),
				         "seq %llu is not covered by the checkpoint of size %llu "
				         "yet; retry in a few seconds",
				         (unsigned long long)seq, (unsigned long long)size);
			} else {
				/* Past the log, or an entry the asker is not party to: one answer,
				 * so no agency learns what others' entries are (the log's size is
				 * no secret: every checkpoint says it). */
				snprintf(
				    msg, sizeof(msg),
				    "no entry at seq %llu that agency '%s' may see (the log holds "
				    "%llu entries)",
				    (unsigned long long)seq, s->agency, (unsigned long long)last);
			}
			err = IHALA_ENOTFOUND;
			goto fail;
		}
		err = store_tree_get(r, 0, seq - 1, leaf);
		if (err == 0) {
			err = merkle_inclusion_proof(&ledger_tree_rops, r, seq - 1, size, path,
			                             &pathlen);
		}
		if (err != 0) {
			snprintf(msg, sizeof(msg), "cannot build the proof: %s",
			         ihala_strerror(err));
			goto fail;
		}
		for (i = 0; i < pathlen; i++) {
			bd[i].data = path[i];
			bd[i].len = MERKLE_HASH_LEN;
		}
		ip.request_id = q->request_id;
		ip.seq = seq;
		ip.leaf_index = seq - 1;
		ip.tree_size = size;
		ip.leaf_hash.data = leaf;
		ip.leaf_hash.len = MERKLE_HASH_LEN;
		ip.n_path = pathlen;
		ip.path = bd;
		ip.checkpoint = text;
		f.kind_case = IHALA__V2__FRAME__KIND_INCLUSION_PROOF;
		f.inclusion_proof = &ip;
		session_send(sv, s, &f);
	}
	if (q->consistency_from != 0) {
		Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
		Ihala__V2__ConsistencyProof cp = IHALA__V2__CONSISTENCY_PROOF__INIT;

		err = merkle_consistency_proof(&ledger_tree_rops, r, q->consistency_from, size,
		                               path, &pathlen);
		if (err != 0) {
			snprintf(msg, sizeof(msg), "no consistency proof from size %llu to %llu",
			         (unsigned long long)q->consistency_from, (unsigned long long)size);
			goto fail;
		}
		for (i = 0; i < pathlen; i++) {
			bd[i].data = path[i];
			bd[i].len = MERKLE_HASH_LEN;
		}
		cp.request_id = q->request_id;
		cp.size1 = q->consistency_from;
		cp.size2 = size;
		cp.n_path = pathlen;
		cp.path = bd;
		cp.checkpoint = text;
		f.kind_case = IHALA__V2__FRAME__KIND_CONSISTENCY_PROOF;
		f.consistency_proof = &cp;
		session_send(sv, s, &f);
	}
	store_rend(r);
	free(text);
	return;
fail:
	store_rend(r);
	free(text);
	send_error(sv, s, err, q->request_id, msg);
}

static void
session_frame(struct server *sv, struct session *s, const uint8_t *body, size_t len)
{
	Ihala__V2__Frame *f = NULL;
	/* the server's arena, unless a frame is already in it (a handler that handles another) */
	struct pb_arena *a = sv->frame_arena_busy ? NULL : &sv->frame_arena;
	int err;

	err = frame_decode_in(body, len, sv->cfg->limits.max_frame, a, &f);
	if (err != 0) {
		if (a != NULL) {
			pb_arena_reset(a);
		}
		char text[128];

		snprintf(text, sizeof(text), "frame of %zu bytes: %s", len, ihala_strerror(err));
		log_security("session %llu (%s): %s; closing", (unsigned long long)s->id, s->agency,
		             text);
		session_end(sv, s, err, text);
		return;
	}
	sv->frame_arena_busy = a != NULL;
	switch (f->kind_case) {
	case IHALA__V2__FRAME__KIND_SUBMIT:
		handle_submit(sv, s, f->submit);
		break;
	case IHALA__V2__FRAME__KIND_DELIVERY_ACK:
		handle_ack(sv, s, f->delivery_ack->seq);
		break;
	case IHALA__V2__FRAME__KIND_QUERY:
		handle_query(sv, s, f->query);
		break;
	case IHALA__V2__FRAME__KIND_REPLAY_REQUEST:
		handle_replay(sv, s, f->replay_request);
		break;
	case IHALA__V2__FRAME__KIND_PROOF_REQUEST:
		handle_proof(sv, s, f->proof_request);
		break;
	case IHALA__V2__FRAME__KIND_CHECKPOINT_REQUEST:
		send_checkpoint(sv, s, f->checkpoint_request->request_id);
		break;
	case IHALA__V2__FRAME__KIND_DIRECTORY_REQUEST:
		handle_directory(sv, s, f->directory_request);
		break;
	default:
		log_security("session %llu (%s): a client may not send frame type %d; closing",
		             (unsigned long long)s->id, s->agency, (int)f->kind_case);
		session_end(sv, s, IHALA_EPROTOCOL, "a client may not send this frame type");
		break;
	}
	if (a != NULL) {
		sv->frame_arena_busy = 0;
		pb_arena_reset(a);
	} else {
		frame_free(f);
	}
}

/* TLS bytes arrived for a session. */
void
session_pump(struct server *sv, struct session *s)
{
	const uint8_t *body;
	size_t blen;
	int n = 0;

	while (s->authed && !s->dead && n < SESSION_TURN_FRAMES &&
	       channel_next_frame(s->ch, &body, &blen) == 1) {
		session_frame(sv, s, body, blen);
		n++;
	}
	s->backlog = n == SESSION_TURN_FRAMES && s->authed && !s->dead;
}

void
session_input(struct server *sv, struct session *s, const uint8_t *tls, size_t len)
{
	const uint8_t *body;
	size_t blen;
	int err, rc;

	s->last_ms = clock_wall_ms();
	err = channel_feed(s->ch, tls, len);
	session_flush(sv, s);
	if (err == IHALA_EHANDSHAKE || (err != 0 && !s->authed)) {
		log_security("session %llu: TLS handshake refused: %s", (unsigned long long)s->id,
		             channel_error_text(s->ch));
		s->dead = 1;
		return;
	}
	if (!s->authed && channel_state(s->ch) == CHANNEL_OPEN) {
		session_authenticate(sv, s);
	}
	if (err == 0 && channel_state(s->ch) == CHANNEL_OPEN) {
		/* The usual case: a bounded share now, the rest in later turns. */
		session_pump(sv, s);
		return;
	}
	/* The channel failed or was closed: what it completed before is served now. */
	while (s->authed && !s->dead && (rc = channel_next_frame(s->ch, &body, &blen)) == 1) {
		session_frame(sv, s, body, blen);
	}
	s->backlog = 0;
	if (err == IHALA_EFRAMESIZE && !s->dead) {
		log_security("session %llu (%s): frame larger than %llu bytes; closing",
		             (unsigned long long)s->id, s->agency,
		             (unsigned long long)sv->cfg->limits.max_frame);
		session_end(sv, s, IHALA_EFRAMESIZE, NULL);
	} else if (err != 0 && !s->dead) {
		log_warnx("session %llu (%s): %s", (unsigned long long)s->id, s->agency,
		          channel_error_text(s->ch));
		s->dead = 1;
	} else if (channel_state(s->ch) == CHANNEL_CLOSED && !s->dead) {
		log_debug("session %llu (%s): closed by peer", (unsigned long long)s->id,
		          s->agency);
		s->dead = 1;
	}
}
