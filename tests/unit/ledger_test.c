/* ledger_test.c - unit tests of broker/ledger.c against a real LMDB store in a temporary dir. */
#define _GNU_SOURCE /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "audit.h"
#include "checkpoint.h"
#include "error.h"
#include "frame.h"
#include "ihala.pb-c.h"
#include "ledger.h"
#include "log.h"
#include "refstate.h"
#include "store.h"

#define S(x) IHALA__V2__TASK_STATUS__TASK_STATUS_##x
#define ROLE(x) IHALA__V2__ROLE__ROLE_##x
#define RS(x) IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_##x
#define T0 1700000000000ull /* the tests' clock */
#define URGENT_MS 60000ull  /* deadline of an urgent referral in these tests */

/* ------------------------------------------------------------------------------------------ */
/* The agency table: a dma that refers, a ministry that answers.                               */

static const struct policy_agency agencies[] = {
    {"dma", ROLE(DMA), POLICY_KIND_REFERRAL | POLICY_KIND_STATUS | POLICY_KIND_NOTE, NULL, 0, 1},
    {"moh", ROLE(MINISTRY), POLICY_KIND_ALL, NULL, 0, 0},
    {"hi", ROLE(NGO), POLICY_KIND_ALL, NULL, 0, 0},
};

static const struct policy_agency *
fake_find(void *ctx, const char *id)
{
	size_t i;

	(void)ctx;
	for (i = 0; i < sizeof(agencies) / sizeof(agencies[0]); i++) {
		if (strcmp(agencies[i].id, id) == 0) {
			return &agencies[i];
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* A fresh store and ledger per test.                                                          */

struct fx {
	char dir[64];
	struct store *store;
	struct writer_policy pol;
	struct checkpoint_signer *signer;
	struct ledger *lg;
};

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Open a store of `mapsize` bytes (0: default) and a ledger over it, queue limit `qlimit`. */
static struct fx *
fx_open(size_t mapsize, size_t qlimit, int with_signer)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	struct ledger_params lp;

	assert_non_null(fx);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/ledger_test.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	assert_int_equal(store_open(fx->dir, mapsize, 0, &fx->store), 0);
	fx->pol.view.find = fake_find;
	fx->pol.queue_limit = qlimit;
	fx->pol.deadline_ms[0] = 3 * URGENT_MS;
	fx->pol.deadline_ms[IHALA__V2__PRIORITY__PRIORITY_EMERGENCY] = URGENT_MS / 2;
	fx->pol.deadline_ms[IHALA__V2__PRIORITY__PRIORITY_URGENT] = URGENT_MS;
	fx->pol.deadline_ms[IHALA__V2__PRIORITY__PRIORITY_NORMAL] = 3 * URGENT_MS;
	if (with_signer) {
		EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");

		assert_non_null(pkey);
		assert_int_equal(checkpoint_signer_from_pkey(pkey, "ledger.test/log", &fx->signer),
		                 0);
		EVP_PKEY_free(pkey);
	}
	memset(&lp, 0, sizeof(lp));
	lp.store = fx->store;
	lp.policy = &fx->pol;
	lp.signer = fx->signer;
	lp.origin = "ledger.test/log";
	lp.ckpt_every_entries = 1;              /* due at every batch that follows new entries */
	lp.ckpt_every_ms = 24ull * 3600 * 1000; /* never by time within a test */
	assert_int_equal(ledger_new(&lp, &fx->lg), 0);
	return fx;
}

static void
fx_close(struct fx *fx)
{
	ledger_free(fx->lg);
	store_close(fx->store);
	checkpoint_signer_free(fx->signer);
	assert_int_equal(nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
	free(fx);
}

/* A broker restart: the ledger and store closed and opened again on the same directory, the
 * store with a map of `mapsize` bytes (0: default). */
static void
fx_reopen(struct fx *fx, size_t mapsize)
{
	struct ledger_params lp;

	ledger_free(fx->lg);
	store_close(fx->store);
	assert_int_equal(store_open(fx->dir, mapsize, 0, &fx->store), 0);
	memset(&lp, 0, sizeof(lp));
	lp.store = fx->store;
	lp.policy = &fx->pol;
	lp.signer = fx->signer;
	lp.origin = "ledger.test/log";
	lp.ckpt_every_entries = 1;
	lp.ckpt_every_ms = 24ull * 3600 * 1000;
	assert_int_equal(ledger_new(&lp, &fx->lg), 0);
}

/* ------------------------------------------------------------------------------------------ */
/* Envelopes and requests.                                                                     */

struct msg {
	Ihala__V2__Envelope env;
	Ihala__V2__Referral ref;
	Ihala__V2__Survivor surv;
	Ihala__V2__Consent consent;
	char *consent_agencies[2];
	Ihala__V2__DataCategory consent_data[1];
	Ihala__V2__ServiceCode services[1];
	Ihala__V2__StatusUpdate su;
	Ihala__V2__Note note;
	Ihala__V2__Erase erase;
	Ihala__V2__Unreadable unr;
};

/* A complete, valid urgent referral `rid` from dma to moh, message id `mid`. */
static void
msg_referral(struct msg *m, const char *mid, const char *rid)
{
	memset(m, 0, sizeof(*m));
	ihala__v2__envelope__init(&m->env);
	ihala__v2__referral__init(&m->ref);
	ihala__v2__survivor__init(&m->surv);
	ihala__v2__consent__init(&m->consent);
	m->env.message_id = (char *)mid;
	m->env.to = "moh";
	m->env.kind_case = IHALA__V2__ENVELOPE__KIND_REFERRAL;
	m->env.referral = &m->ref;
	m->ref.referral_id = (char *)rid;
	m->ref.referring_agency = "dma";
	m->ref.receiving_agency = "moh";
	m->ref.priority = IHALA__V2__PRIORITY__PRIORITY_URGENT;
	m->services[0] = IHALA__V2__SERVICE_CODE__SERVICE_CODE_PROSTHETICS_ORTHOTICS;
	m->ref.n_services = 1;
	m->ref.services = m->services;
	m->surv.case_id = "IQ-NIN-000123"; /* sealed in v2: not in the clear part */
	m->consent.given = 1;
	m->consent.given_by = IHALA__V2__CONSENT_GIVER__CONSENT_GIVER_SURVIVOR;
	m->consent.date = "2025-03-01";
	m->consent_agencies[0] = "moh";
	m->consent.n_agencies = 1;
	m->consent.agencies = m->consent_agencies;
	m->consent_data[0] = IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_NEEDS; /* its services */
	m->consent.n_data_covered = 1;
	m->consent.data_covered = m->consent_data;
	m->ref.consent = &m->consent;
}

/* moh's status `status` of referral `rid`, message id `mid`. */
static void
msg_status(struct msg *m, const char *mid, const char *rid, Ihala__V2__TaskStatus status)
{
	memset(m, 0, sizeof(*m));
	ihala__v2__envelope__init(&m->env);
	ihala__v2__status_update__init(&m->su);
	m->env.message_id = (char *)mid;
	m->env.kind_case = IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE;
	m->env.status_update = &m->su;
	m->su.referral_id = (char *)rid;
	m->su.status = status;
}

/* A note `text` on referral `rid`, message id `mid`. */
static void
msg_note(struct msg *m, const char *mid, const char *rid, const char *text)
{
	memset(m, 0, sizeof(*m));
	ihala__v2__envelope__init(&m->env);
	ihala__v2__note__init(&m->note);
	m->env.message_id = (char *)mid;
	m->env.kind_case = IHALA__V2__ENVELOPE__KIND_NOTE;
	m->env.note = &m->note;
	m->note.referral_id = (char *)rid;
	(void)text; /* a note's text is sealed (protocol v2): never in the clear part */
}

/* An Erase of referral `rid` with `reason`, message id `mid`. */
static void
msg_erase(struct msg *m, const char *mid, const char *rid, Ihala__V2__ReasonCode reason)
{
	memset(m, 0, sizeof(*m));
	ihala__v2__envelope__init(&m->env);
	ihala__v2__erase__init(&m->erase);
	m->env.message_id = (char *)mid;
	m->env.kind_case = IHALA__V2__ENVELOPE__KIND_ERASE;
	m->env.erase = &m->erase;
	m->erase.referral_id = (char *)rid;
	m->erase.reason_code = reason;
}

/* An Unreadable of entry `seq` of referral `rid`, code SEAL_AUTH_FAILED, message id `mid`. */
static void
msg_unreadable(struct msg *m, const char *mid, const char *rid, uint64_t seq)
{
	memset(m, 0, sizeof(*m));
	ihala__v2__envelope__init(&m->env);
	ihala__v2__unreadable__init(&m->unr);
	m->env.message_id = (char *)mid;
	m->env.kind_case = IHALA__V2__ENVELOPE__KIND_UNREADABLE;
	m->env.unreadable = &m->unr;
	m->unr.referral_id = (char *)rid;
	m->unr.ref_seq = seq;
	m->unr.code = IHALA__V2__ERROR_CODE__ERROR_CODE_SEAL_AUTH_FAILED;
	m->unr.detail = "the GCM tag does not verify";
}

/* A submission of `m` by `agency` at time `t` with a sealed part of len bytes (0: none),
 * bytes and decoded envelope as the server makes them: in one block (wreq_new_submit), the
 * envelope decoded into the request's arena. */
static struct wreq *
submit_req_n(const char *agency, const struct msg *m, uint64_t t, const void *sealed, size_t slen)
{
	size_t len = ihala__v2__envelope__get_packed_size(&m->env);
	struct wreq *r = wreq_new_submit(len, slen);

	assert_non_null(r);
	assert_int_equal(r->type, WREQ_SUBMIT);
	assert_int_equal(r->env_len, len);
	assert_int_equal(r->sealed_len, slen);
	assert_true(slen > 0 ? r->sealed != NULL : r->sealed == NULL);
	ihala__v2__envelope__pack(&m->env, r->env_bytes);
	if (slen > 0) {
		memcpy(r->sealed, sealed, slen);
	}
	assert_int_equal(envelope_decode_in(r->env_bytes, len, &r->arena, &r->env), 0);
	/* an envelope a node makes fits the room the request has for it */
	assert_null(r->arena.more);
	snprintf(r->agency, sizeof(r->agency), "%s", agency);
	r->now_ms = t;
	return r;
}

static struct wreq *
submit_req(const char *agency, const struct msg *m, uint64_t t)
{
	return submit_req_n(agency, m, t, NULL, 0);
}

/* The same with a sealed part `sealed` (len bytes), its SHA-256 in the envelope as a node
 * puts it (the server checked it before the writer sees it). */
static struct wreq *
submit_req_sealed(const char *agency, struct msg *m, uint64_t t, const void *sealed, size_t len)
{
	static uint8_t md[32];

	assert_int_equal(EVP_Digest(sealed, len, md, NULL, EVP_sha256(), NULL), 1);
	m->env.sealed_sha256.data = md;
	m->env.sealed_sha256.len = sizeof(md);
	return submit_req_n(agency, m, t, sealed, len);
}

/* The sealed part stored for `seq` as a string compare: 1 when it is `want` (len bytes), 0
 * when there is none. */
static int
sealed_is(struct fx *fx, uint64_t seq, const void *want, size_t len)
{
	struct store_rtxn *r;
	const void *data;
	size_t dlen;
	int err, same = 0;

	assert_int_equal(store_rbegin(fx->store, &r), 0);
	err = store_sealed_get(r, seq, &data, &dlen);
	if (err == 0) {
		assert_int_equal(dlen, len);
		same = memcmp(data, want, len) == 0;
		assert_true(same);
	} else {
		assert_int_equal(err, IHALA_ENOTFOUND);
	}
	store_rend(r);
	return err == 0;
}

static struct wreq *
tick_req(uint64_t t)
{
	struct wreq *r = wreq_new(WREQ_TICK);

	assert_non_null(r);
	r->now_ms = t;
	return r;
}

/* An ack by `agency` of seqs first .. first + n - 1, as one request. */
static struct wreq *
ack_req(const char *agency, uint64_t first, size_t n, uint64_t t)
{
	struct wreq *r = wreq_new(WREQ_ACK);
	size_t i;

	assert_non_null(r);
	assert_true(n <= WREQ_MAX_ACKS);
	snprintf(r->agency, sizeof(r->agency), "%s", agency);
	for (i = 0; i < n; i++) {
		r->acks[r->n_acks++] = first + i;
	}
	r->now_ms = t;
	return r;
}

/* The writer's state cache: hits (unpacks avoided) so far. */
static uint64_t
state_hits(struct fx *fx)
{
	struct refstate_cache_stats cs;

	ledger_state_stats(fx->lg, &cs);
	return cs.hits;
}

/* Every state the writer's cache holds is the record committed in the store; returns how
 * many it holds. */
static size_t
states_check(struct fx *fx)
{
	size_t n = 0;

	assert_int_equal(ledger_state_check(fx->lg, &n), 0);
	return n;
}

/* Apply one request as a batch of its own; the ledger's return must be 0. */
static void
apply1(struct fx *fx, struct wreq *r)
{
	assert_int_equal(ledger_apply_batch(fx->lg, &r, 1), 0);
}

/* Submit `m` by `agency` alone in a batch; the request is returned for its results. */
static struct wreq *
submit1(struct fx *fx, const char *agency, const struct msg *m, uint64_t t)
{
	struct wreq *r = submit_req(agency, m, t);

	apply1(fx, r);
	return r;
}

static uint64_t
log_last(struct fx *fx)
{
	struct store_rtxn *r;
	uint64_t last = 0;

	assert_int_equal(store_rbegin(fx->store, &r), 0);
	assert_int_equal(store_log_last(r, &last), 0);
	store_rend(r);
	return last;
}

static size_t
queued(struct fx *fx, const char *agency)
{
	struct store_rtxn *r;
	size_t n = 0;
	int err;

	assert_int_equal(store_rbegin(fx->store, &r), 0);
	err = store_queue_count(r, agency, &n);
	store_rend(r);
	if (err == IHALA_ENOTFOUND) {
		return 0;
	}
	assert_int_equal(err, 0);
	return n;
}

/* The state of `rid` with its whole history, as a Query answers it (caller frees with
 * ihala__v2__referral_state__free_unpacked). */
static Ihala__V2__ReferralState *
state_of(struct fx *fx, const char *rid)
{
	struct store_rtxn *r;
	Ihala__V2__ReferralState *st = NULL;

	assert_int_equal(store_rbegin(fx->store, &r), 0);
	assert_int_equal(refstate_load(r, rid, &st), 0);
	assert_int_equal(refstate_load_history(r, st), 0);
	store_rend(r);
	assert_non_null(st);
	return st;
}

/* Key and value bytes the store has been given by puts so far. */
static uint64_t
put_bytes(struct fx *fx)
{
	struct store_stats st;

	assert_int_equal(store_stat(fx->store, &st), 0);
	return st.put_bytes;
}

/* 1 when the meta key printf(fmt, ...) is stored. */
static int __attribute__((format(printf, 2, 3))) meta_has(struct fx *fx, const char *fmt, ...)
{
	struct store_rtxn *r;
	const void *v;
	char key[256];
	va_list ap;
	size_t len;
	int err;

	va_start(ap, fmt);
	vsnprintf(key, sizeof(key), fmt, ap);
	va_end(ap);
	assert_int_equal(store_rbegin(fx->store, &r), 0);
	err = store_meta_get(r, key, &v, &len);
	store_rend(r);
	assert_true(err == 0 || err == IHALA_ENOTFOUND);
	return err == 0;
}

/* Tree nodes read back from the store so far. */
static uint64_t
tree_gets(struct fx *fx)
{
	struct store_stats st;

	assert_int_equal(store_stat(fx->store, &st), 0);
	return st.tree_gets;
}

/* Size of the latest stored checkpoint, 0 when there is none. */
static uint64_t
checkpoint_size(struct fx *fx)
{
	struct store_rtxn *r;
	uint64_t size = 0;
	char *text = NULL;

	assert_int_equal(store_rbegin(fx->store, &r), 0);
	if (store_checkpoint_latest(r, &size, &text) != 0) {
		size = 0;
	}
	store_rend(r);
	free(text);
	return size;
}

/* ------------------------------------------------------------------------------------------ */
/* Tests.                                                                                      */

/* A new referral is logged, queued for its recipient, and has a state. */
static void
test_submit_accepted(void **state)
{
	struct fx *fx = fx_open(0, 100, 0);
	Ihala__V2__ReferralState *st;
	struct msg m;
	struct wreq *r;

	(void)state;
	msg_referral(&m, "m-1", "R-1");
	r = submit1(fx, "dma", &m, T0);
	assert_int_equal(r->err, 0);
	assert_int_equal(r->status, RS(ACCEPTED));
	assert_int_equal(r->seq, 1);
	assert_int_equal(r->n_notify, 1);
	assert_string_equal(r->notify[0], "moh");
	assert_int_equal(log_last(fx), 1);
	assert_int_equal(queued(fx, "moh"), 1);
	st = state_of(fx, "R-1");
	assert_int_equal(st->status, S(REQUESTED));
	assert_string_equal(st->referrer, "dma");
	assert_string_equal(st->recipient, "moh");
	assert_int_equal(st->deadline_ms, T0 + URGENT_MS);
	ihala__v2__referral_state__free_unpacked(st, NULL);
	wreq_free(r);
	/* the meta keys the ledger builds by hand, byte for byte as the format says */
	assert_true(meta_has(fx, "deadline:%020llu:R-1", (unsigned long long)(T0 + URGENT_MS)));
	assert_true(meta_has(fx, "qshare:moh:dma"));
	fx_close(fx);
}

/* The same message again (same sender, id and bytes): DUPLICATE with the original seq and
 * leaf, nothing logged or queued a second time. */
static void
test_duplicate(void **state)
{
	struct fx *fx = fx_open(0, 100, 0);
	struct wreq *first, *again, *other;
	struct msg m, m2;

	(void)state;
	msg_referral(&m, "m-1", "R-1");
	first = submit1(fx, "dma", &m, T0);
	assert_int_equal(first->status, RS(ACCEPTED));
	msg_referral(&m2, "m-2", "R-2");
	other = submit1(fx, "dma", &m2, T0 + 1);
	assert_int_equal(other->seq, 2);

	again = submit1(fx, "dma", &m, T0 + 2);
	assert_int_equal(again->err, 0);
	assert_int_equal(again->status, RS(DUPLICATE));
	assert_int_equal(again->seq, first->seq);
	assert_memory_equal(again->leaf, first->leaf, MERKLE_HASH_LEN);
	assert_int_equal(again->n_notify, 0);
	assert_int_equal(log_last(fx), 2);
	assert_int_equal(queued(fx, "moh"), 2);
	wreq_free(first);
	wreq_free(other);
	wreq_free(again);
	fx_close(fx);
}

/* A sealed part is stored beside its entry, in the same batch, keyed by the entry's seq; an
 * entry without one has none; a refused submission leaves none; a duplicate adds none. The
 * log entry holds the clear envelope only (with the hash). */
static void
test_sealed_stored(void **state)
{
	static const char sealed[] = "0\x80 a CMS AuthEnvelopedData, opaque to the broker";
	static const char other[] = "another sealed part";
	struct fx *fx = fx_open(0, 100, 0);
	struct store_rtxn *rt;
	const void *data;
	size_t len;
	struct wreq *r;
	struct msg m;

	(void)state;
	msg_referral(&m, "m-1", "R-1");
	r = submit1(fx, "dma", &m, T0); /* none */
	assert_int_equal(r->status, RS(ACCEPTED));
	assert_false(sealed_is(fx, r->seq, NULL, 0));
	wreq_free(r);

	msg_referral(&m, "m-2", "R-2");
	r = submit_req_sealed("dma", &m, T0 + 1, sealed, sizeof(sealed));
	apply1(fx, r);
	assert_int_equal(r->status, RS(ACCEPTED));
	assert_int_equal(r->seq, 2);
	assert_true(sealed_is(fx, 2, sealed, sizeof(sealed)));
	/* the entry itself holds the hash, never the sealed bytes */
	assert_int_equal(store_rbegin(fx->store, &rt), 0);
	assert_int_equal(store_log_get(rt, 2, &data, &len), 0);
	assert_null(memmem(data, len, "opaque", 6));
	store_rend(rt);
	wreq_free(r);

	/* the same again: DUPLICATE, the first sealed part kept */
	r = submit_req_sealed("dma", &m, T0 + 2, sealed, sizeof(sealed));
	apply1(fx, r);
	assert_int_equal(r->status, RS(DUPLICATE));
	assert_int_equal(r->seq, 2);
	assert_true(sealed_is(fx, 2, sealed, sizeof(sealed)));
	wreq_free(r);

	/* refused (a note on a referral that does not exist): nothing at the next seq */
	msg_note(&m, "m-3", "R-none", "");
	r = submit_req_sealed("dma", &m, T0 + 3, other, sizeof(other));
	apply1(fx, r);
	assert_int_equal(r->err, IHALA_ENOREFERRAL);
	wreq_free(r);
	assert_false(sealed_is(fx, 3, NULL, 0));

	/* a note with one on R-2: at its own seq */
	msg_note(&m, "m-4", "R-2", "");
	r = submit_req_sealed("dma", &m, T0 + 4, other, sizeof(other));
	apply1(fx, r);
	assert_int_equal(r->status, RS(ACCEPTED));
	assert_int_equal(r->seq, 3);
	assert_true(sealed_is(fx, 3, other, sizeof(other)));
	assert_true(sealed_is(fx, 2, sealed, sizeof(sealed)));
	wreq_free(r);
	fx_close(fx);
}

/* referral_bytes counts the sealed part too: it is stored like the envelope. */
static void
test_sealed_counts_in_referral_bytes(void **state)
{
	struct fx *fx = fx_open(0, 100, 0);
	static char big[3000];
	struct wreq *r;
	struct msg m;
	size_t env_len;

	(void)state;
	memset(big, 'x', sizeof(big));
	msg_referral(&m, "m-1", "R-1");
	r = submit_req_sealed("dma", &m, T0, big, sizeof(big));
	env_len = r->env_len;
	fx->pol.referral_bytes = env_len + sizeof(big) - 1; /* one byte short */
	apply1(fx, r);
	assert_int_equal(r->err, IHALA_EQUOTA);
	wreq_free(r);
	fx->pol.referral_bytes = env_len + sizeof(big);
	r = submit_req_sealed("dma", &m, T0, big, sizeof(big));
	apply1(fx, r);
	assert_int_equal(r->status, RS(ACCEPTED));
	wreq_free(r);
	fx_close(fx);
}

/* The log entry at `seq`, decoded (free with logentry_free). */
static Ihala__V2__LogEntry *
entry_at(struct fx *fx, uint64_t seq)
{
	struct store_rtxn *rt;
	Ihala__V2__LogEntry *e = NULL;
	const void *data;
	size_t len;

	assert_int_equal(store_rbegin(fx->store, &rt), 0);
	assert_int_equal(store_log_get(rt, seq, &data, &len), 0);
	assert_int_equal(logentry_decode(data, len, &e), 0);
	store_rend(rt);
	return e;
}

/* Submit `m` by `agency` with sealed part `sealed` (a string) alone in a batch: the status
 * (and err) are checked by the caller; returns the request. */
static struct wreq *
submit_s(struct fx *fx, const char *agency, struct msg *m, uint64_t t, const char *sealed)
{
	struct wreq *r = sealed != NULL ? submit_req_sealed(agency, m, t, sealed, strlen(sealed))
	                                : submit_req(agency, m, t);

	apply1(fx, r);
	return r;
}

/* Expect `r` accepted at seq `seq` (0: any), and free it. */
static void
accepted(struct wreq *r, uint64_t seq)
{
	if (r->status != RS(ACCEPTED)) {
		fail_msg("refused (%d): %s", r->err, r->text);
	}
	if (seq != 0) {
		assert_int_equal(r->seq, seq);
	}
	wreq_free(r);
}

/* Expect `r` refused with `err` and a sentence holding `words`, and free it. */
static void
refused(struct wreq *r, int err, const char *words)
{
	assert_int_equal(r->status, RS(REFUSED));
	assert_int_equal(r->err, err);
	if (strstr(r->text, words) == NULL) {
		fail_msg("'%s' does not say '%s'", r->text, words);
	}
	wreq_free(r);
}

/* A referral R-p (dma to moh, consent moh and hi), accepted; a note on it; an onward
 * referral R-c (moh to hi) and a note on that; another referral R-o. Seqs: R-p 1 (sealed),
 * accepted 2, note 3 (sealed), R-c 4 (sealed), note 5 (sealed), R-o 6 (sealed). */
static void
erase_setup(struct fx *fx)
{
	struct msg m;

	msg_referral(&m, "m-1", "R-p");
	m.consent_agencies[1] = "hi";
	m.consent.n_agencies = 2;
	accepted(submit_s(fx, "dma", &m, T0, "sealed R-p"), 1);
	msg_status(&m, "m-2", "R-p", S(ACCEPTED));
	accepted(submit_s(fx, "moh", &m, T0, NULL), 2);
	msg_note(&m, "m-3", "R-p", "");
	accepted(submit_s(fx, "moh", &m, T0, "sealed note on R-p"), 3);
	msg_referral(&m, "m-4", "R-c");
	m.env.to = "hi";
	m.ref.referring_agency = "moh";
	m.ref.receiving_agency = "hi";
	m.ref.parent_referral_id = "R-p";
	m.consent_agencies[0] = "hi";
	accepted(submit_s(fx, "moh", &m, T0, "sealed R-c"), 4);
	msg_note(&m, "m-5", "R-c", "");
	accepted(submit_s(fx, "hi", &m, T0, "sealed note on R-c"), 5);
	msg_referral(&m, "m-6", "R-o");
	accepted(submit_s(fx, "dma", &m, T0, "sealed R-o"), 6);
}

/*
 * Erase (issue 16): only the referrer, with a reason, once. The referral's and its onward
 * referrals' sealed rows go; the Erase is logged and receipted, and one ERASURE entry per
 * party (dma, moh, hi) is logged and queued to it, naming the root, the erased seqs and the
 * reason. Both referrals are marked erased: a sealed part on them, an onward referral of
 * them, a second Erase: ERASED. Another referral is untouched.
 */
static void
test_erase(void **state)
{
	static const char *const parties[] = {"dma", "moh", "hi"};
	static const uint64_t erased[] = {1, 3, 4, 5};
	struct fx *fx = fx_open(0, 100, 0);
	Ihala__V2__ReferralState *st;
	Ihala__V2__LogEntry *e;
	size_t i, q[3];
	struct wreq *r;
	struct msg m;

	(void)state;
	erase_setup(fx);
	for (i = 0; i < 3; i++) {
		q[i] = queued(fx, parties[i]);
	}
	msg_erase(&m, "e-1", "R-p", IHALA__V2__REASON_CODE__REASON_CODE_CONSENT_WITHDRAWN);
	refused(submit_s(fx, "moh", &m, T0 + 1, NULL), IHALA_EFORBIDDEN,
	        "only the referring agency of referral 'R-p' may erase it");
	refused(submit_s(fx, "hi", &m, T0 + 1, NULL), IHALA_ENOREFERRAL,
	        "no referral 'R-p' that agency 'hi' is a party to");
	msg_erase(&m, "e-1", "R-p", IHALA__V2__REASON_CODE__REASON_CODE_UNSPECIFIED);
	refused(submit_s(fx, "dma", &m, T0 + 1, NULL), IHALA_ESCHEMA, "needs reason_code");
	msg_erase(&m, "e-1", "R-p", IHALA__V2__REASON_CODE__REASON_CODE_NO_CAPACITY);
	refused(submit_s(fx, "dma", &m, T0 + 1, NULL), IHALA_ESCHEMA, "needs reason_code");
	assert_int_equal(log_last(fx), 6);

	msg_erase(&m, "e-1", "R-p", IHALA__V2__REASON_CODE__REASON_CODE_CONSENT_WITHDRAWN);
	r = submit_s(fx, "dma", &m, T0 + 2, NULL);
	assert_int_equal(r->n_notify, 3);
	accepted(r, 7);
	e = entry_at(fx, 7);
	assert_int_equal(e->kind, IHALA__V2__ENTRY_KIND__ENTRY_KIND_SUBMISSION);
	assert_string_equal(e->sender, "dma");
	assert_string_equal(e->recipient, "");
	logentry_free(e);
	assert_int_equal(log_last(fx), 10);
	for (i = 0; i < 3; i++) {
		e = entry_at(fx, 8 + i);
		assert_int_equal(e->kind, IHALA__V2__ENTRY_KIND__ENTRY_KIND_ERASURE);
		assert_string_equal(e->sender, "dma");
		assert_string_equal(e->recipient, parties[i]);
		assert_non_null(e->event);
		assert_string_equal(e->event->referral_id, "R-p");
		assert_int_equal(e->event->ref_seq, 7);
		assert_int_equal(e->event->reason_code,
		                 IHALA__V2__REASON_CODE__REASON_CODE_CONSENT_WITHDRAWN);
		assert_int_equal(e->event->n_erased_seqs, 4);
		assert_memory_equal(e->event->erased_seqs, erased, sizeof(erased));
		logentry_free(e);
		assert_int_equal(queued(fx, parties[i]), q[i] + 1);
	}
	for (i = 1; i <= 5; i++) {
		assert_false(sealed_is(fx, i, NULL, 0));
	}
	assert_true(sealed_is(fx, 6, "sealed R-o", strlen("sealed R-o")));
	st = state_of(fx, "R-p");
	assert_true(st->erased);
	assert_string_equal(st->history[st->n_history - 1]->what, "erased");
	assert_int_equal(st->history[st->n_history - 1]->seq, 7);
	ihala__v2__referral_state__free_unpacked(st, NULL);
	st = state_of(fx, "R-c");
	assert_true(st->erased);
	ihala__v2__referral_state__free_unpacked(st, NULL);
	st = state_of(fx, "R-o");
	assert_false(st->erased);
	ihala__v2__referral_state__free_unpacked(st, NULL);
	states_check(fx);

	/* after: once only; no sealed part on them; no onward referral of them */
	msg_erase(&m, "e-2", "R-p", IHALA__V2__REASON_CODE__REASON_CODE_OTHER);
	refused(submit_s(fx, "dma", &m, T0 + 3, NULL), IHALA_EERASED,
	        "referral 'R-p' was already erased");
	msg_note(&m, "m-7", "R-c", "");
	refused(submit_s(fx, "hi", &m, T0 + 3, "a new sealed note"), IHALA_EERASED,
	        "referral 'R-c' was erased");
	msg_note(&m, "m-7", "R-c", ""); /* the same without: the workflow goes on in clear */
	accepted(submit_s(fx, "hi", &m, T0 + 3, NULL), 11);
	msg_referral(&m, "m-8", "R-c2");
	m.env.to = "hi";
	m.ref.referring_agency = "moh";
	m.ref.receiving_agency = "hi";
	m.ref.parent_referral_id = "R-p";
	m.consent_agencies[0] = "hi";
	refused(submit_s(fx, "moh", &m, T0 + 3, NULL), IHALA_EERASED,
	        "parent referral 'R-p' was erased");
	/* a duplicate of the Erase is answered DUPLICATE, as any */
	msg_erase(&m, "e-1", "R-p", IHALA__V2__REASON_CODE__REASON_CODE_CONSENT_WITHDRAWN);
	r = submit_s(fx, "dma", &m, T0 + 4, NULL);
	assert_int_equal(r->status, RS(DUPLICATE));
	assert_int_equal(r->seq, 7);
	wreq_free(r);
	fx_close(fx);
}

/* The referrer of an onward referral erases it alone: the parent keeps its sealed parts; the
 * parties are moh and hi only. */
static void
test_erase_onward_only(void **state)
{
	struct fx *fx = fx_open(0, 100, 0);
	Ihala__V2__LogEntry *e;
	struct msg m;

	(void)state;
	erase_setup(fx);
	msg_erase(&m, "e-1", "R-c", IHALA__V2__REASON_CODE__REASON_CODE_ENTERED_IN_ERROR);
	refused(submit_s(fx, "dma", &m, T0 + 1, NULL), IHALA_ENOREFERRAL,
	        "no referral 'R-c' that agency 'dma' is a party to");
	accepted(submit_s(fx, "moh", &m, T0 + 1, NULL), 7);
	assert_int_equal(log_last(fx), 9);
	e = entry_at(fx, 8);
	assert_string_equal(e->recipient, "moh");
	assert_int_equal(e->event->n_erased_seqs, 2);
	assert_int_equal(e->event->erased_seqs[0], 4);
	assert_int_equal(e->event->erased_seqs[1], 5);
	logentry_free(e);
	e = entry_at(fx, 9);
	assert_string_equal(e->recipient, "hi");
	logentry_free(e);
	assert_true(sealed_is(fx, 1, "sealed R-p", strlen("sealed R-p")));
	assert_true(sealed_is(fx, 3, "sealed note on R-p", strlen("sealed note on R-p")));
	assert_false(sealed_is(fx, 4, NULL, 0));
	fx_close(fx);
}

/* An erasure's ERASURE entries and what the log's sealed parts say of them. */
struct erase_audit {
	struct audit_sealed s;
	int err;
};

static int
erase_audit_cb(void *arg, uint64_t seq, const uint8_t *entry, size_t len, const uint8_t *sealed,
               size_t sealed_len, int known)
{
	struct erase_audit *a = arg;

	if (a->err == 0) {
		a->err = audit_sealed_push(&a->s, seq, entry, len, sealed, sealed_len, known);
	}
	return 0;
}

/* More onward referrals than an erasure's walk holds at once (ERASE_MAX_REFERRALS, 4096 with
 * the root): R-p (dma to moh, seq 1) and its 4097 onward referrals R-c0000 .. R-c4096 (moh to
 * hi, seqs 3 .. 4099), each with a sealed part. An Erase of R-p must either erase every one
 * of them (sealed rows gone, marked erased, every seq named to each party by the ERASURE
 * entries, however many) or be refused, erasing nothing; never erase some and leave the rest
 * with their sealed parts (as past the cap, in byte order: R-c4095, R-c4096). Either way the
 * store's sealed parts agree with its log (audit_sealed: a missing part is one an ERASURE
 * entry names). */
#define CAP_CHILDREN 4097
#define CAP_BATCH 256

static void
test_erase_past_walk_cap(void **state)
{
	static const char *const parties[] = {"dma", "moh", "hi"};
	struct fx *fx = fx_open(0, 2 * CAP_CHILDREN, 0);
	struct wreq *batch[CAP_BATCH];
	uint8_t *named[3];
	uint64_t last, seq, erase_seq = CAP_CHILDREN + 3;
	struct erase_audit a;
	Ihala__V2__ReferralState *st;
	struct wreq *r;
	struct msg m;
	char rid[16], mid[16], sealed[32];
	size_t i, j, n, p;
	int refused_it;

	(void)state;
	msg_referral(&m, "m-p", "R-p");
	m.consent_agencies[1] = "hi";
	m.consent.n_agencies = 2;
	accepted(submit_s(fx, "dma", &m, T0, "sealed R-p"), 1);
	msg_status(&m, "m-a", "R-p", S(ACCEPTED));
	accepted(submit_s(fx, "moh", &m, T0, NULL), 2);
	for (i = 0; i < CAP_CHILDREN; i += n) {
		n = CAP_CHILDREN - i < CAP_BATCH ? CAP_CHILDREN - i : CAP_BATCH;
		for (j = 0; j < n; j++) {
			snprintf(rid, sizeof(rid), "R-c%04zu", i + j);
			snprintf(mid, sizeof(mid), "m-c%04zu", i + j);
			snprintf(sealed, sizeof(sealed), "sealed %s", rid);
			msg_referral(&m, mid, rid);
			m.env.to = "hi";
			m.ref.referring_agency = "moh";
			m.ref.receiving_agency = "hi";
			m.ref.parent_referral_id = "R-p";
			m.consent_agencies[0] = "hi";
			batch[j] = submit_req_sealed("moh", &m, T0, sealed, strlen(sealed));
		}
		assert_int_equal(ledger_apply_batch(fx->lg, batch, n), 0);
		for (j = 0; j < n; j++) {
			accepted(batch[j], 3 + i + j);
		}
	}
	assert_int_equal(log_last(fx), erase_seq - 1);

	msg_erase(&m, "e-1", "R-p", IHALA__V2__REASON_CODE__REASON_CODE_CONSENT_WITHDRAWN);
	r = submit_s(fx, "dma", &m, T0 + 1, NULL);
	refused_it = r->status == RS(REFUSED);
	if (refused_it) {
		/* a clear refusal that logs nothing */
		assert_int_not_equal(r->err, 0);
		assert_non_null(strstr(r->text, "R-p"));
		wreq_free(r);
		assert_int_equal(log_last(fx), erase_seq - 1);
	} else {
		accepted(r, erase_seq);
	}
	last = log_last(fx);
	/* the seqs each party's ERASURE entries name */
	for (p = 0; p < 3; p++) {
		named[p] = calloc(erase_seq, 1);
		assert_non_null(named[p]);
	}
	for (seq = erase_seq + 1; seq <= last; seq++) {
		Ihala__V2__LogEntry *e = entry_at(fx, seq);

		assert_int_equal(e->kind, IHALA__V2__ENTRY_KIND__ENTRY_KIND_ERASURE);
		assert_string_equal(e->event->referral_id, "R-p");
		for (p = 0; p < 3 && strcmp(e->recipient, parties[p]) != 0; p++) {
		}
		assert_true(p < 3);
		for (j = 0; j < e->event->n_erased_seqs; j++) {
			assert_true(e->event->erased_seqs[j] < erase_seq);
			named[p][e->event->erased_seqs[j]] = 1;
		}
		logentry_free(e);
	}
	/* every referral of the tree erased, or none */
	for (i = 0; i <= CAP_CHILDREN; i++) {
		uint64_t s = i == 0 ? 1 : 2 + i;

		if (i == 0) {
			snprintf(rid, sizeof(rid), "R-p");
		} else {
			snprintf(rid, sizeof(rid), "R-c%04zu", i - 1);
		}
		snprintf(sealed, sizeof(sealed), "sealed %s", rid);
		if (sealed_is(fx, s, sealed, strlen(sealed)) != refused_it) {
			fail_msg("%s (seq %llu): sealed part %s", rid, (unsigned long long)s,
			         refused_it ? "erased by a refused Erase" : "left by its Erase");
		}
		st = state_of(fx, rid);
		if (st->erased == refused_it) {
			fail_msg("%s: %s", rid, refused_it ? "erased" : "not marked erased");
		}
		ihala__v2__referral_state__free_unpacked(st, NULL);
		for (p = 0; p < 3; p++) {
			if (named[p][s] == refused_it) {
				fail_msg("%s (seq %llu): %s to '%s'", rid, (unsigned long long)s,
				         refused_it ? "named erased" : "not named erased",
				         parties[p]);
			}
		}
	}
	for (p = 0; p < 3; p++) {
		free(named[p]);
	}
	/* the store's sealed parts against its log, as an auditor's copy is verified */
	ledger_free(fx->lg);
	store_close(fx->store);
	fx->lg = NULL;
	fx->store = NULL;
	memset(&a, 0, sizeof(a));
	audit_sealed_init(&a.s);
	assert_int_equal(audit_store_walk_records(fx->dir, erase_audit_cb, &a), 0);
	assert_int_equal(a.err, 0);
	assert_int_equal(audit_sealed_finish(&a.s), 0);
	assert_int_equal(a.s.sealed, CAP_CHILDREN + 1);
	assert_int_equal(a.s.erased, refused_it ? 0 : CAP_CHILDREN + 1);
	audit_sealed_release(&a.s);
	fx_close(fx);
}

/* Unreadable: only the recipient of a submission that had a sealed part; routed (queued) to
 * that submission's sender, logged as a submission with its referral's history. */
static void
test_unreadable(void **state)
{
	struct fx *fx = fx_open(0, 100, 0);
	Ihala__V2__ReferralState *st;
	Ihala__V2__LogEntry *e;
	struct wreq *r;
	struct msg m;
	size_t q;

	(void)state;
	erase_setup(fx);
	msg_unreadable(&m, "u-1", "R-p", 1);
	refused(submit_s(fx, "hi", &m, T0 + 1, NULL), IHALA_ENOTPARTY,
	        "no submission at seq 1 was delivered to agency 'hi'");
	refused(submit_s(fx, "dma", &m, T0 + 1, NULL), IHALA_ENOTPARTY,
	        "no submission at seq 1 was delivered to agency 'dma'");
	msg_unreadable(&m, "u-1", "R-p", 99);
	refused(submit_s(fx, "moh", &m, T0 + 1, NULL), IHALA_ENOTPARTY, "seq 99");
	msg_unreadable(&m, "u-1", "R-p", 2); /* moh's own accept, to dma: not moh's to read */
	refused(submit_s(fx, "dma", &m, T0 + 1, NULL), IHALA_ESCHEMA,
	        "the submission at seq 2 had no sealed part");
	msg_unreadable(&m, "u-1", "R-o", 1);
	refused(submit_s(fx, "moh", &m, T0 + 1, NULL), IHALA_ESCHEMA,
	        "is about referral 'R-p', not 'R-o'");
	msg_unreadable(&m, "u-1", "R-p", 0);
	refused(submit_s(fx, "moh", &m, T0 + 1, NULL), IHALA_ESCHEMA, "ref_seq");
	msg_unreadable(&m, "u-1", "R-p", 1);
	m.unr.code = IHALA__V2__ERROR_CODE__ERROR_CODE_TAMPERED;
	refused(submit_s(fx, "moh", &m, T0 + 1, NULL), IHALA_ESCHEMA, "SEAL_NOT_RECIPIENT");
	assert_int_equal(log_last(fx), 6);

	q = queued(fx, "dma");
	msg_unreadable(&m, "u-1", "R-p", 1);
	r = submit_s(fx, "moh", &m, T0 + 2, NULL);
	assert_int_equal(r->n_notify, 1);
	assert_string_equal(r->notify[0], "dma");
	accepted(r, 7);
	assert_int_equal(queued(fx, "dma"), q + 1);
	e = entry_at(fx, 7);
	assert_string_equal(e->sender, "moh");
	assert_string_equal(e->recipient, "dma");
	logentry_free(e);
	st = state_of(fx, "R-p");
	assert_string_equal(st->history[st->n_history - 1]->what, "unreadable");
	assert_int_equal(st->status, S(ACCEPTED));
	ihala__v2__referral_state__free_unpacked(st, NULL);
	/* hi could not read moh's onward referral R-c (seq 4): to moh */
	msg_unreadable(&m, "u-2", "", 4);
	r = submit_s(fx, "hi", &m, T0 + 2, NULL);
	assert_string_equal(r->notify[0], "moh");
	accepted(r, 8);
	fx_close(fx);
}

/* Retention: a referral closed (declined) is erased when the period ends, by the broker
 * (sender "", RETENTION_EXPIRED, ref_seq 0), at the first tick after it; an open one never. */
static void
test_retention(void **state)
{
	struct fx *fx = fx_open(0, 100, 0);
	Ihala__V2__LogEntry *e;
	Ihala__V2__ReferralState *st;
	struct wreq *r;
	struct msg m;

	(void)state;
	fx->pol.retention_ms = 10000;
	msg_referral(&m, "m-1", "R-1");
	accepted(submit_s(fx, "dma", &m, T0, "sealed R-1"), 1);
	msg_referral(&m, "m-2", "R-2");
	accepted(submit_s(fx, "dma", &m, T0, "sealed R-2"), 2); /* stays open */
	msg_status(&m, "m-3", "R-1", S(DECLINED));
	m.su.reason_code = IHALA__V2__REASON_CODE__REASON_CODE_NO_CAPACITY;
	accepted(submit_s(fx, "moh", &m, T0 + 1000, NULL), 3);
	assert_true(meta_has(fx, "retention:%020llu:R-1", (unsigned long long)(T0 + 11000)));

	r = tick_req(T0 + 10999);
	apply1(fx, r);
	wreq_free(r);
	assert_int_equal(log_last(fx), 3);
	assert_true(sealed_is(fx, 1, "sealed R-1", strlen("sealed R-1")));

	r = tick_req(T0 + 11000);
	apply1(fx, r);
	assert_int_equal(r->n_notify, 2);
	wreq_free(r);
	assert_int_equal(log_last(fx), 5);
	e = entry_at(fx, 4);
	assert_int_equal(e->kind, IHALA__V2__ENTRY_KIND__ENTRY_KIND_ERASURE);
	assert_string_equal(e->sender, "");
	assert_string_equal(e->recipient, "dma");
	assert_int_equal(e->event->reason_code,
	                 IHALA__V2__REASON_CODE__REASON_CODE_RETENTION_EXPIRED);
	assert_int_equal(e->event->ref_seq, 0);
	assert_int_equal(e->event->n_erased_seqs, 1);
	assert_int_equal(e->event->erased_seqs[0], 1);
	logentry_free(e);
	e = entry_at(fx, 5);
	assert_string_equal(e->recipient, "moh");
	logentry_free(e);
	assert_false(sealed_is(fx, 1, NULL, 0));
	assert_true(sealed_is(fx, 2, "sealed R-2", strlen("sealed R-2")));
	assert_false(meta_has(fx, "retention:%020llu:R-1", (unsigned long long)(T0 + 11000)));
	st = state_of(fx, "R-1");
	assert_true(st->erased);
	assert_int_equal(st->history[st->n_history - 1]->seq, 4);
	ihala__v2__referral_state__free_unpacked(st, NULL);

	/* a later tick (before R-2's deadline): nothing more */
	r = tick_req(T0 + URGENT_MS - 1);
	apply1(fx, r);
	wreq_free(r);
	assert_int_equal(log_last(fx), 5);

	/* closed, then erased by its referrer before its period ends: the period erases
	 * nothing more and logs nothing */
	msg_referral(&m, "m-4", "R-3");
	accepted(submit_s(fx, "dma", &m, T0 + 20000, "sealed R-3"), 6);
	msg_status(&m, "m-5", "R-3", S(DECLINED));
	m.su.reason_code = IHALA__V2__REASON_CODE__REASON_CODE_NO_CAPACITY;
	accepted(submit_s(fx, "moh", &m, T0 + 20000, NULL), 7);
	msg_erase(&m, "m-6", "R-3", IHALA__V2__REASON_CODE__REASON_CODE_ENTERED_IN_ERROR);
	accepted(submit_s(fx, "dma", &m, T0 + 20001, NULL), 8);
	assert_int_equal(log_last(fx), 10);
	r = tick_req(T0 + 30000);
	apply1(fx, r);
	assert_int_equal(r->n_notify, 0);
	wreq_free(r);
	assert_int_equal(log_last(fx), 10);
	assert_false(meta_has(fx, "retention:%020llu:R-3", (unsigned long long)(T0 + 30000)));
	fx_close(fx);
}

/* The same message id with different content: MESSAGE_ID_CONFLICT, not DUPLICATE (a sender
 * told DUPLICATE deletes its message from the outbox, and the new content would be lost). */
static void
test_msgid_conflict(void **state)
{
	struct fx *fx = fx_open(0, 100, 0);
	struct wreq *first, *clash;
	struct msg m, m2;

	(void)state;
	msg_referral(&m, "m-1", "R-1");
	first = submit1(fx, "dma", &m, T0);
	assert_int_equal(first->status, RS(ACCEPTED));
	msg_referral(&m2, "m-1", "R-2"); /* same id, another referral */
	clash = submit1(fx, "dma", &m2, T0 + 1);
	assert_int_equal(clash->err, IHALA_EMSGID);
	assert_int_equal(clash->status, RS(REFUSED));
	assert_non_null(strstr(clash->text, "m-1"));
	assert_int_equal(log_last(fx), 1);
	assert_int_equal(queued(fx, "moh"), 1);
	wreq_free(first);
	wreq_free(clash);

	/* The same id from another sender is another message. */
	msg_status(&m2, "m-1", "R-1", S(ACCEPTED));
	clash = submit1(fx, "moh", &m2, T0 + 2);
	assert_int_equal(clash->err, 0);
	assert_int_equal(clash->status, RS(ACCEPTED));
	wreq_free(clash);
	fx_close(fx);
}

/* A queue limit of N: N entries are accepted, the next one is refused with QUEUE_FULL; an
 * ack makes room again. */
static void
test_queue_full(void **state)
{
	enum { LIMIT = 3 };
	struct fx *fx = fx_open(0, LIMIT, 0);
	struct wreq *r;
	struct msg m;
	char mid[16], rid[16];
	int i;

	(void)state;
	for (i = 0; i < LIMIT; i++) {
		snprintf(mid, sizeof(mid), "m-%d", i);
		snprintf(rid, sizeof(rid), "R-%d", i);
		msg_referral(&m, mid, rid);
		r = submit1(fx, "dma", &m, T0 + (uint64_t)i);
		assert_int_equal(r->err, 0);
		assert_int_equal(r->status, RS(ACCEPTED));
		wreq_free(r);
	}
	assert_int_equal(queued(fx, "moh"), LIMIT);
	msg_referral(&m, "m-full", "R-full");
	r = submit1(fx, "dma", &m, T0 + 10);
	assert_int_equal(r->err, IHALA_EQUEUEFULL);
	assert_int_equal(r->status, RS(REFUSED));
	assert_int_equal(r->n_notify, 0);
	wreq_free(r);
	assert_int_equal(log_last(fx), LIMIT);
	assert_int_equal(queued(fx, "moh"), LIMIT);

	/* moh takes one: room for one more. */
	r = wreq_new(WREQ_ACK);
	assert_non_null(r);
	snprintf(r->agency, sizeof(r->agency), "moh");
	r->acks[r->n_acks++] = 1;
	r->now_ms = T0 + 20;
	apply1(fx, r);
	assert_int_equal(r->err, 0);
	wreq_free(r);
	assert_int_equal(queued(fx, "moh"), LIMIT - 1);
	r = submit1(fx, "dma", &m, T0 + 30);
	assert_int_equal(r->status, RS(ACCEPTED));
	wreq_free(r);
	fx_close(fx);
}

/* One sender's share of a recipient's queue (queue_share), counted within a batch and across
 * batches, and given back by the recipient's acks. */
static void
test_queue_share(void **state)
{
	struct fx *fx = fx_open(0, 4, 0);
	struct wreq *batch[3], *r;
	struct msg m[3];
	char mid[16], rid[16];
	int i;

	(void)state;
	fx->pol.queue_share = 50; /* dma may hold 2 of moh's 4 places */
	for (i = 0; i < 3; i++) {
		snprintf(mid, sizeof(mid), "s-%d", i);
		snprintf(rid, sizeof(rid), "RS-%d", i);
		msg_referral(&m[i], mid, rid);
		batch[i] = submit_req("dma", &m[i], T0 + (uint64_t)i);
	}
	assert_int_equal(ledger_apply_batch(fx->lg, batch, 3), 0);
	assert_int_equal(batch[0]->status, RS(ACCEPTED));
	assert_int_equal(batch[1]->status, RS(ACCEPTED));
	assert_int_equal(batch[2]->err, IHALA_EQUEUEFULL);
	assert_non_null(strstr(batch[2]->text,
	                       "this sender's share of the recipient's queue is full "
	                       "(2 undelivered entries, 50% of queue_limit)"));
	for (i = 0; i < 3; i++) {
		wreq_free(batch[i]);
	}
	/* A batch later, still full. */
	r = submit1(fx, "dma", &m[2], T0 + 10);
	assert_int_equal(r->err, IHALA_EQUEUEFULL);
	wreq_free(r);
	/* moh takes one: room for one more of dma's, not two. */
	r = wreq_new(WREQ_ACK);
	assert_non_null(r);
	snprintf(r->agency, sizeof(r->agency), "moh");
	r->acks[r->n_acks++] = 1;
	r->now_ms = T0 + 20;
	apply1(fx, r);
	assert_int_equal(r->err, 0);
	wreq_free(r);
	r = submit1(fx, "dma", &m[2], T0 + 30);
	assert_int_equal(r->status, RS(ACCEPTED));
	wreq_free(r);
	msg_referral(&m[0], "s-3", "RS-3");
	r = submit1(fx, "dma", &m[0], T0 + 40);
	assert_int_equal(r->err, IHALA_EQUEUEFULL);
	wreq_free(r);
	fx_close(fx);
}

/* An ack of a new referral logs its delivery and marks it received; a repeated ack logs
 * nothing. */
static void
test_ack_received(void **state)
{
	struct fx *fx = fx_open(0, 100, 0);
	Ihala__V2__ReferralState *st;
	struct wreq *r;
	struct msg m;
	int i;

	(void)state;
	msg_referral(&m, "m-1", "R-1");
	r = submit1(fx, "dma", &m, T0);
	wreq_free(r);
	for (i = 0; i < 2; i++) {
		r = wreq_new(WREQ_ACK);
		assert_non_null(r);
		snprintf(r->agency, sizeof(r->agency), "moh");
		r->acks[r->n_acks++] = 1;
		r->now_ms = T0 + 5;
		apply1(fx, r);
		assert_int_equal(r->err, 0);
		wreq_free(r);
		/* the broker's "received" entry, queued for the referrer */
		assert_int_equal(log_last(fx), 2);
		assert_int_equal(queued(fx, "moh"), 0);
		assert_int_equal(queued(fx, "dma"), 1);
	}
	st = state_of(fx, "R-1");
	assert_int_equal(st->status, S(RECEIVED));
	ihala__v2__referral_state__free_unpacked(st, NULL);
	fx_close(fx);
}

/*
 * A batch whose middle request meets an LMDB error (here a map too small for its envelope):
 * the batch is done again request by request in savepoints, so only that request is refused
 * (STORE_FULL) and the others of the batch are logged.
 */
static void
test_savepoint_retry(void **state)
{
	struct fx *fx = fx_open(256 * 1024, 100, 0);
	struct wreq *batch[3];
	struct msg m;
	char *big;
	size_t i;

	(void)state;
	msg_referral(&m, "m-a", "R-a");
	batch[0] = submit_req("dma", &m, T0);
	big = malloc(1024 * 1024);
	assert_non_null(big);
	memset(big, 'x', 1024 * 1024 - 1);
	big[1024 * 1024 - 1] = '\0';
	msg_referral(&m, "m-big", "R-big");
	batch[1] = submit_req_sealed("dma", &m, T0, big, strlen(big)); /* too big for the map */
	free(big);
	msg_referral(&m, "m-c", "R-c");
	batch[2] = submit_req("dma", &m, T0);

	assert_int_equal(ledger_apply_batch(fx->lg, batch, 3), 0);
	assert_int_equal(batch[0]->err, 0);
	assert_int_equal(batch[0]->status, RS(ACCEPTED));
	assert_int_equal(batch[0]->seq, 1);
	assert_int_equal(batch[1]->err, IHALA_ESTOREFULL);
	assert_int_equal(batch[1]->status, RS(REFUSED));
	assert_int_equal(batch[1]->n_notify, 0);
	assert_int_equal(batch[2]->err, 0);
	assert_int_equal(batch[2]->status, RS(ACCEPTED));
	assert_int_equal(batch[2]->seq, 2);
	for (i = 0; i < 3; i++) {
		wreq_free(batch[i]);
	}
	assert_int_equal(log_last(fx), 2);
	assert_int_equal(queued(fx, "moh"), 2);

	/* The tree is whole after the aborted savepoint: the next entry still goes in. */
	msg_referral(&m, "m-d", "R-d");
	batch[0] = submit1(fx, "dma", &m, T0 + 1);
	assert_int_equal(batch[0]->status, RS(ACCEPTED));
	assert_int_equal(batch[0]->seq, 3);
	wreq_free(batch[0]);
	fx_close(fx);
}

/* Appending reads no tree node back from the store: the left siblings of a new leaf, and the
 * root a checkpoint signs, come from the writer's frontier, also right after a restart (it is
 * loaded when the ledger opens) and after an aborted savepoint (loaded again then). */
static void
test_append_reads_no_tree_node(void **state)
{
	struct fx *fx = fx_open(256 * 1024, 1000, 1);
	struct wreq *batch[3];
	uint64_t gets;
	char mid[32], rid[32];
	struct msg m;
	char *big;
	int i;

	(void)state;
	for (i = 0; i < 7; i++) { /* 7 leaves: the next append needs 3 left siblings */
		snprintf(mid, sizeof(mid), "m-%d", i);
		snprintf(rid, sizeof(rid), "R-%d", i);
		msg_referral(&m, mid, rid);
		wreq_free(submit1(fx, "dma", &m, T0));
	}
	assert_int_equal(log_last(fx), 7);

	fx_reopen(fx, 256 * 1024);
	gets = tree_gets(fx);
	for (i = 7; i < 20; i++) {
		snprintf(mid, sizeof(mid), "m-%d", i);
		snprintf(rid, sizeof(rid), "R-%d", i);
		msg_referral(&m, mid, rid);
		batch[0] = submit1(fx, "dma", &m, T0);
		assert_int_equal(batch[0]->status, RS(ACCEPTED));
		wreq_free(batch[0]);
	}
	assert_int_equal(log_last(fx), 20);
	assert_int_equal(checkpoint_size(fx), 19); /* signed from the frontier too */
	assert_int_equal(tree_gets(fx) - gets, 0);

	/* A request that does not fit: the batch is done again with savepoints and that one
	 * aborted, which loads the frontier again; the appends after it read nothing. */
	msg_referral(&m, "m-a", "R-a");
	batch[0] = submit_req("dma", &m, T0);
	big = malloc(1024 * 1024);
	assert_non_null(big);
	memset(big, 'x', 1024 * 1024 - 1);
	big[1024 * 1024 - 1] = '\0';
	msg_referral(&m, "m-big", "R-big");
	batch[1] = submit_req_sealed("dma", &m, T0, big, strlen(big)); /* too big for the map */
	free(big);
	msg_referral(&m, "m-c", "R-c");
	batch[2] = submit_req("dma", &m, T0);
	assert_int_equal(ledger_apply_batch(fx->lg, batch, 3), 0);
	assert_int_equal(batch[1]->err, IHALA_ESTOREFULL);
	assert_int_equal(batch[2]->status, RS(ACCEPTED));
	for (i = 0; i < 3; i++) {
		wreq_free(batch[i]);
	}
	gets = tree_gets(fx);
	msg_referral(&m, "m-d", "R-d");
	batch[0] = submit1(fx, "dma", &m, T0);
	assert_int_equal(batch[0]->status, RS(ACCEPTED));
	wreq_free(batch[0]);
	assert_int_equal(tree_gets(fx) - gets, 0);
	fx_close(fx);
}

/* A tick past a referral's deadline marks it overdue once (an entry queued for the referrer);
 * a referral answered in time, or a tick before the deadline, marks nothing. */
static void
test_overdue(void **state)
{
	struct fx *fx = fx_open(0, 100, 0);
	Ihala__V2__ReferralState *st;
	struct wreq *r;
	struct msg m;

	(void)state;
	msg_referral(&m, "m-1", "R-late");
	wreq_free(submit1(fx, "dma", &m, T0));
	msg_referral(&m, "m-2", "R-answered");
	wreq_free(submit1(fx, "dma", &m, T0));
	msg_status(&m, "s-1", "R-answered", S(ACCEPTED));
	r = submit1(fx, "moh", &m, T0 + 10);
	assert_int_equal(r->status, RS(ACCEPTED));
	wreq_free(r);
	assert_int_equal(log_last(fx), 3);

	r = tick_req(T0 + URGENT_MS - 1); /* a millisecond early */
	apply1(fx, r);
	assert_int_equal(r->n_notify, 0);
	wreq_free(r);
	assert_int_equal(log_last(fx), 3);

	r = tick_req(T0 + URGENT_MS);
	apply1(fx, r);
	assert_int_equal(r->err, 0);
	assert_int_equal(r->n_notify, 1);
	assert_string_equal(r->notify[0], "dma");
	wreq_free(r);
	assert_int_equal(log_last(fx), 4);      /* one overdue event, for R-late only */
	assert_int_equal(queued(fx, "dma"), 2); /* moh's status and the overdue event */
	st = state_of(fx, "R-late");
	assert_int_equal(st->overdue, 1);
	assert_int_equal(st->status, S(REQUESTED));
	assert_int_equal(st->history[st->n_history - 1]->status, S(OVERDUE));
	ihala__v2__referral_state__free_unpacked(st, NULL);
	st = state_of(fx, "R-answered");
	assert_int_equal(st->overdue, 0);
	ihala__v2__referral_state__free_unpacked(st, NULL);

	r = tick_req(T0 + 2 * URGENT_MS); /* once only */
	apply1(fx, r);
	wreq_free(r);
	assert_int_equal(log_last(fx), 4);
	fx_close(fx);
}

/* `n` notes by dma on `rid`, message ids "<rid>-n<i>", in batches of up to 250. */
static void
add_notes(struct fx *fx, const char *rid, int n, uint64_t t)
{
	struct wreq *batch[250];
	char mid[64];
	struct msg m;
	int i = 0, k, j;

	while (i < n) {
		for (k = 0; k < 250 && i < n; k++, i++) {
			snprintf(mid, sizeof(mid), "%s-n%d", rid, i);
			msg_note(&m, mid, rid, "called the family; visit on Monday");
			batch[k] = submit_req("dma", &m, t);
		}
		assert_int_equal(ledger_apply_batch(fx->lg, batch, (size_t)k), 0);
		for (j = 0; j < k; j++) {
			assert_int_equal(batch[j]->status, RS(ACCEPTED));
			wreq_free(batch[j]);
		}
	}
}

/* Bytes given to the store by one more note on `rid` (a batch of its own). */
static uint64_t
note_cost(struct fx *fx, const char *rid, const char *mid)
{
	uint64_t before = put_bytes(fx);
	struct wreq *r;
	struct msg m;

	msg_note(&m, mid, rid, "called the family; visit on Monday");
	r = submit1(fx, "dma", &m, T0 + 2);
	assert_int_equal(r->status, RS(ACCEPTED));
	wreq_free(r);
	return put_bytes(fx) - before;
}

/* Issue 20: adding an entry to a referral writes a bounded number of bytes to the store,
 * whatever the length of its history (it used to rewrite the whole history, ~30 bytes an
 * item, with every entry). The history a Query gets is still the whole of it, in order. */
static void
test_entry_cost_flat(void **state)
{
	struct fx *fx = fx_open(0, 1000000, 0);
	Ihala__V2__ReferralState *st;
	uint64_t short_cost, long_cost;
	struct msg m;
	size_t i;

	(void)state;
	msg_referral(&m, "m-short", "R-short");
	wreq_free(submit1(fx, "dma", &m, T0));
	msg_referral(&m, "m-long", "R-long");
	wreq_free(submit1(fx, "dma", &m, T0));
	add_notes(fx, "R-short", 10, T0 + 1);
	add_notes(fx, "R-long", 3000, T0 + 1);

	short_cost = note_cost(fx, "R-short", "last-short");
	long_cost = note_cost(fx, "R-long", "last-long");
	print_message("bytes put for one note: history of 11: %llu, of 3001: %llu\n",
	              (unsigned long long)short_cost, (unsigned long long)long_cost);
	/* The entry, its message id, queue slot and counter, the Merkle nodes it completes (up
	 * to a dozen of 40 bytes: the only part that varies), one history item, the state. */
	assert_true(short_cost < 2048);
	assert_true(long_cost < 2048);
	assert_true(long_cost < short_cost + 600);

	st = state_of(fx, "R-long");
	assert_int_equal(st->n_history, 3002);
	assert_string_equal(st->history[0]->what, "referral");
	assert_string_equal(st->history[0]->agency, "dma");
	for (i = 1; i < st->n_history; i++) {
		assert_true(st->history[i]->seq > st->history[i - 1]->seq);
		assert_string_equal(st->history[i]->what, "note");
	}
	assert_int_equal(st->history[st->n_history - 1]->seq, log_last(fx));
	ihala__v2__referral_state__free_unpacked(st, NULL);
	st = state_of(fx, "R-short");
	assert_int_equal(st->n_history, 12);
	ihala__v2__referral_state__free_unpacked(st, NULL);
	fx_close(fx);
}

/* Rewrite the state record of `rid` as a release before the consent scope wrote it. */
static void
strip_scope(struct fx *fx, const char *rid)
{
	Ihala__V2__ReferralState *raw;
	struct store_rtxn *r;
	struct store_wtxn *w;
	const void *data;
	uint8_t buf[512];
	size_t len, na, nd;

	assert_int_equal(store_rbegin(fx->store, &r), 0);
	assert_int_equal(store_referral_get(r, rid, &data, &len), 0);
	raw = ihala__v2__referral_state__unpack(NULL, len, data);
	store_rend(r);
	assert_non_null(raw);
	na = raw->n_consent_agencies;
	nd = raw->n_consent_data;
	raw->n_consent_agencies = 0;
	raw->n_consent_data = 0;
	assert_true(ihala__v2__referral_state__get_packed_size(raw) <= sizeof(buf));
	len = ihala__v2__referral_state__pack(raw, buf);
	raw->n_consent_agencies = na;
	raw->n_consent_data = nd;
	ihala__v2__referral_state__free_unpacked(raw, NULL);
	assert_int_equal(store_wbegin(fx->store, &w), 0);
	assert_int_equal(store_referral_put(w, rid, buf, len), 0);
	assert_int_equal(store_wcommit(w), 0);
}

/* The state records its consent's scope; an onward referral's consent must stay within it,
 * also when the parent's state record is from a release that did not record it (the scope is
 * then read from the parent's own submission in the log). */
static void
test_onward_consent_scope(void **state)
{
	struct fx *fx = fx_open(0, 100, 0);
	Ihala__V2__ReferralState *st;
	struct wreq *req;
	struct msg m;
	int i;

	(void)state;
	msg_referral(&m, "m-1", "R-p");
	m.consent_agencies[1] = "hi";
	m.consent.n_agencies = 2; /* consent: moh, hi; needs */
	req = submit1(fx, "dma", &m, T0);
	assert_int_equal(req->status, RS(ACCEPTED));
	wreq_free(req);
	st = state_of(fx, "R-p");
	assert_int_equal(st->n_consent_agencies, 2);
	assert_string_equal(st->consent_agencies[0], "moh");
	assert_string_equal(st->consent_agencies[1], "hi");
	assert_int_equal(st->n_consent_data, 1);
	assert_int_equal(st->consent_data[0], IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_NEEDS);
	ihala__v2__referral_state__free_unpacked(st, NULL);
	msg_status(&m, "m-2", "R-p", S(ACCEPTED));
	req = submit1(fx, "moh", &m, T0 + 1);
	assert_int_equal(req->status, RS(ACCEPTED));
	wreq_free(req);

	for (i = 0; i < 2; i++) {
		if (i == 1) {
			strip_scope(fx, "R-p");
			st = state_of(fx, "R-p");
			assert_int_equal(st->n_consent_agencies, 0);
			ihala__v2__referral_state__free_unpacked(st, NULL);
		}
		/* moh refers onward to hi, its consent naming dma too: outside the parent's */
		msg_referral(&m, i == 0 ? "m-3" : "m-5", i == 0 ? "R-c" : "R-d");
		m.env.to = "hi";
		m.ref.referring_agency = "moh";
		m.ref.receiving_agency = "hi";
		m.ref.parent_referral_id = "R-p";
		m.consent_agencies[0] = "hi";
		m.consent_agencies[1] = "dma";
		m.consent.n_agencies = 2;
		req = submit1(fx, "moh", &m, T0 + 2);
		assert_int_equal(req->status, RS(REFUSED));
		assert_int_equal(req->err, IHALA_ECONSENT);
		assert_string_equal(req->text,
		                    "the parent referral's consent does not cover agency 'dma'");
		wreq_free(req);
		/* hi alone is within it */
		m.env.message_id = i == 0 ? "m-4" : "m-6";
		m.consent.n_agencies = 1;
		req = submit1(fx, "moh", &m, T0 + 2);
		if (req->status != RS(ACCEPTED)) {
			fail_msg("refused: %s", req->text);
		}
		wreq_free(req);
	}
	fx_close(fx);
}

/* A state record from a release that kept the history inside it (a format-1 store written
 * before issue 20) still answers with its whole history; the next entry moves its items to
 * records of their own, and the history stays whole and in order. */
static void
test_history_in_state_record(void **state)
{
	struct fx *fx = fx_open(0, 100, 0);
	Ihala__V2__ReferralState old = IHALA__V2__REFERRAL_STATE__INIT, *st;
	Ihala__V2__HistoryItem it[2], *items[2];
	const char *what[2] = {"referral", "received"};
	struct store_wtxn *w;
	struct store_rtxn *r;
	struct wreq *req;
	const void *data;
	uint8_t buf[512];
	size_t len;
	struct msg m;
	int i;

	(void)state;
	/* Two entries in the log (seqs 1 and 2), which the old record's items name. */
	msg_referral(&m, "m-1", "R-a");
	wreq_free(submit1(fx, "dma", &m, T0));
	msg_referral(&m, "m-2", "R-b");
	wreq_free(submit1(fx, "dma", &m, T0));
	old.referral_id = "R-old";
	old.parent_referral_id = "";
	old.referrer = "dma";
	old.recipient = "moh";
	old.status = S(RECEIVED);
	old.priority = IHALA__V2__PRIORITY__PRIORITY_URGENT;
	old.deadline_ms = T0 + URGENT_MS;
	for (i = 0; i < 2; i++) {
		ihala__v2__history_item__init(&it[i]);
		it[i].seq = (uint64_t)i + 1;
		it[i].time_ms = T0;
		it[i].agency = i == 0 ? "dma" : "";
		it[i].status = i == 0 ? S(REQUESTED) : S(RECEIVED);
		it[i].what = (char *)what[i];
		items[i] = &it[i];
	}
	old.n_history = 2;
	old.history = items;
	assert_true(ihala__v2__referral_state__get_packed_size(&old) <= sizeof(buf));
	len = ihala__v2__referral_state__pack(&old, buf);
	assert_int_equal(store_wbegin(fx->store, &w), 0);
	assert_int_equal(store_referral_put(w, "R-old", buf, len), 0);
	assert_int_equal(store_wcommit(w), 0);

	st = state_of(fx, "R-old");
	assert_int_equal(st->n_history, 2);
	assert_string_equal(st->history[1]->what, "received");
	ihala__v2__referral_state__free_unpacked(st, NULL);

	msg_note(&m, "n-1", "R-old", "seen");
	req = submit1(fx, "dma", &m, T0 + 1);
	assert_int_equal(req->status, RS(ACCEPTED));
	assert_int_equal(req->seq, 3);
	wreq_free(req);
	st = state_of(fx, "R-old");
	assert_int_equal(st->n_history, 3);
	for (i = 0; i < 3; i++) {
		assert_int_equal(st->history[i]->seq, i + 1);
	}
	assert_string_equal(st->history[0]->what, "referral");
	assert_string_equal(st->history[1]->what, "received");
	assert_string_equal(st->history[2]->what, "note");
	assert_int_equal(st->status, S(RECEIVED));
	ihala__v2__referral_state__free_unpacked(st, NULL);
	/* The record itself now holds no item. */
	assert_int_equal(store_rbegin(fx->store, &r), 0);
	assert_int_equal(store_referral_get(r, "R-old", &data, &len), 0);
	st = ihala__v2__referral_state__unpack(NULL, len, data);
	store_rend(r);
	assert_non_null(st);
	assert_int_equal(st->n_history, 0);
	ihala__v2__referral_state__free_unpacked(st, NULL);
	fx_close(fx);
}

/* A checkpoint signed into a batch covers what was on disk when the batch began, never the
 * batch's own entries (not synced when it is signed). */
static void
test_checkpoint_not_ahead(void **state)
{
	struct fx *fx = fx_open(0, 100, 1);
	struct wreq *batch[3];
	struct msg m;
	char mid[16], rid[16];
	size_t i;

	(void)state;
	for (i = 0; i < 3; i++) {
		snprintf(mid, sizeof(mid), "m-%zu", i);
		snprintf(rid, sizeof(rid), "R-%zu", i);
		msg_referral(&m, mid, rid);
		batch[i] = submit_req("dma", &m, T0);
	}
	assert_int_equal(ledger_apply_batch(fx->lg, batch, 3), 0);
	for (i = 0; i < 3; i++) {
		assert_int_equal(batch[i]->status, RS(ACCEPTED));
		wreq_free(batch[i]);
	}
	assert_int_equal(log_last(fx), 3);
	assert_int_equal(checkpoint_size(fx), 0); /* nothing was on disk when it began */

	msg_referral(&m, "m-3", "R-3");
	wreq_free(submit1(fx, "dma", &m, T0 + 1));
	assert_int_equal(log_last(fx), 4);
	assert_int_equal(checkpoint_size(fx), 3);

	/* A tick with nothing new to log still carries the due checkpoint of size 4. */
	batch[0] = tick_req(T0 + 2);
	apply1(fx, batch[0]);
	wreq_free(batch[0]);
	assert_int_equal(log_last(fx), 4);
	assert_int_equal(checkpoint_size(fx), 4);

	/* At shutdown: everything on disk, in a transaction of its own. */
	msg_referral(&m, "m-4", "R-4");
	wreq_free(submit1(fx, "dma", &m, T0 + 3));
	assert_int_equal(checkpoint_size(fx), 4);
	ledger_checkpoint_now(fx->lg, T0 + 4);
	assert_int_equal(checkpoint_size(fx), 5);
	fx_close(fx);
}

/* A swapped table judges the next submissions; the old one comes back to the caller. */
static void
test_policy_swap(void **state)
{
	struct fx *fx = fx_open(0, 100, 0);
	struct writer_policy strict = fx->pol, *old;
	struct wreq *r;
	struct msg m;

	(void)state;
	strict.queue_limit = 0;
	old = ledger_swap_policy(fx->lg, &strict);
	assert_ptr_equal(old, &fx->pol);
	msg_referral(&m, "m-1", "R-1");
	r = submit1(fx, "dma", &m, T0);
	assert_int_equal(r->err, IHALA_EQUEUEFULL);
	wreq_free(r);
	assert_ptr_equal(ledger_swap_policy(fx->lg, old), &strict);
	r = submit1(fx, "dma", &m, T0);
	assert_int_equal(r->status, RS(ACCEPTED));
	wreq_free(r);
	fx_close(fx);
}

/* The writer keeps the states it decoded or saved: the events that follow a referral's
 * submission, in the same batch or a later one, take its state from the cache instead of
 * unpacking its record again, and what the cache holds is the committed record. */
static void
test_state_cache(void **state)
{
	struct fx *fx = fx_open(0, 100, 0);
	struct refstate_cache_stats cs;
	Ihala__V2__ReferralState *st;
	struct wreq *batch[3];
	struct msg m;
	size_t i;

	(void)state;
	msg_referral(&m, "m-1", "R-1");
	batch[0] = submit_req("dma", &m, T0);
	msg_referral(&m, "m-2", "R-2");
	batch[1] = submit_req("dma", &m, T0);
	batch[2] = ack_req("moh", 1, 1, T0 + 1); /* in the same batch */
	assert_int_equal(ledger_apply_batch(fx->lg, batch, 3), 0);
	for (i = 0; i < 3; i++) {
		assert_int_equal(batch[i]->err, 0);
		wreq_free(batch[i]);
	}
	assert_int_equal(log_last(fx), 3); /* two referrals, R-1 received */
	assert_int_equal(state_hits(fx), 1);
	assert_int_equal(states_check(fx), 2);

	/* The next batches: R-2 received, a note on taken up. */
	batch[0] = ack_req("moh", 2, 1, T0 + 2);
	apply1(fx, batch[0]);
	assert_int_equal(batch[0]->err, 0);
	wreq_free(batch[0]);
	msg_note(&m, "n-1", "R-1", "seen");
	wreq_free(submit1(fx, "moh", &m, T0 + 3));
	msg_status(&m, "s-1", "R-1", S(ACCEPTED));
	batch[0] = submit1(fx, "moh", &m, T0 + 4);
	assert_int_equal(batch[0]->status, RS(ACCEPTED));
	wreq_free(batch[0]);
	assert_int_equal(log_last(fx), 6);
	assert_int_equal(state_hits(fx), 4);
	assert_int_equal(states_check(fx), 2);
	st = state_of(fx, "R-1");
	assert_int_equal(st->status, S(ACCEPTED));
	assert_int_equal(st->n_history, 4);
	ihala__v2__referral_state__free_unpacked(st, NULL);
	st = state_of(fx, "R-2");
	assert_int_equal(st->status, S(RECEIVED));
	ihala__v2__referral_state__free_unpacked(st, NULL);
	ledger_state_stats(fx->lg, &cs);
	assert_int_equal(cs.misses, 2); /* the two new referrals, none in the store */
	assert_int_equal(cs.entries, 2);
	fx_close(fx);
}

/* The cache is bounded: past its size the least recently used states are dropped, and a
 * dropped one is read from the store again. */
static void
test_state_cache_bounded(void **state)
{
	struct fx *fx = fx_open(0, 10000, 0);
	struct refstate_cache_stats cs;
	struct wreq *batch[64];
	char mid[32], rid[32];
	struct msg m;
	size_t i, j, n;

	(void)state;
	ledger_state_stats(fx->lg, &cs);
	n = cs.cap + 64;
	for (i = 0; i < n; i += 64) {
		for (j = 0; j < 64; j++) {
			snprintf(mid, sizeof(mid), "m-%zu", i + j);
			snprintf(rid, sizeof(rid), "R-%zu", i + j);
			msg_referral(&m, mid, rid);
			batch[j] = submit_req("dma", &m, T0);
		}
		assert_int_equal(ledger_apply_batch(fx->lg, batch, 64), 0);
		for (j = 0; j < 64; j++) {
			assert_int_equal(batch[j]->status, RS(ACCEPTED));
			wreq_free(batch[j]);
		}
	}
	ledger_state_stats(fx->lg, &cs);
	assert_int_equal(cs.entries, cs.cap);
	assert_int_equal(cs.evictions, 64);
	/* R-0 (seq 1) was dropped: its ack reads the store; the newest is still there. */
	batch[0] = ack_req("moh", 1, 1, T0 + 1);
	batch[1] = ack_req("moh", n, 1, T0 + 1);
	assert_int_equal(ledger_apply_batch(fx->lg, batch, 2), 0);
	wreq_free(batch[0]);
	wreq_free(batch[1]);
	ledger_state_stats(fx->lg, &cs);
	assert_int_equal(cs.hits, 1);
	assert_int_equal(cs.misses, n + 1);
	assert_int_equal(states_check(fx), cs.cap);
	fx_close(fx);
}

/*
 * A batch that meets an LMDB error is aborted and done again in savepoints: the states it had
 * changed are gone from the store, and from the cache too. Here R-1 is marked received by an
 * ack in the first pass; a full map aborts the pass; the second pass must find R-1 requested
 * again (from the store) and mark it received once more, with its entry queued for dma.
 */
static void
test_state_cache_batch_abort(void **state)
{
	struct fx *fx = fx_open(256 * 1024, 100, 0);
	Ihala__V2__ReferralState *st;
	struct wreq *batch[2];
	struct msg m;
	char *big;

	(void)state;
	msg_referral(&m, "m-1", "R-1");
	wreq_free(submit1(fx, "dma", &m, T0));
	assert_int_equal(states_check(fx), 1);

	batch[0] = ack_req("moh", 1, 1, T0 + 1);
	big = malloc(1024 * 1024);
	assert_non_null(big);
	memset(big, 'x', 1024 * 1024 - 1);
	big[1024 * 1024 - 1] = '\0';
	msg_referral(&m, "m-big", "R-big");
	batch[1] = submit_req_sealed("dma", &m, T0 + 1, big, strlen(big));
	free(big);
	assert_int_equal(ledger_apply_batch(fx->lg, batch, 2), 0);
	assert_int_equal(batch[0]->err, 0);
	assert_int_equal(batch[1]->err, IHALA_ESTOREFULL);
	wreq_free(batch[0]);
	wreq_free(batch[1]);

	assert_int_equal(log_last(fx), 2);
	assert_int_equal(queued(fx, "dma"), 1); /* the "received" entry */
	st = state_of(fx, "R-1");
	assert_int_equal(st->status, S(RECEIVED));
	assert_int_equal(st->n_history, 2);
	ihala__v2__referral_state__free_unpacked(st, NULL);
	states_check(fx);
	fx_close(fx);
}

/*
 * An aborted savepoint: one request of WREQ_MAX_ACKS acks, in a batch redone in savepoints,
 * where the map fills up after the first acks marked their referrals received. The request
 * is refused (its savepoint aborted) while the batch commits; the states it changed are gone
 * from the cache with it, and the same acks once the map has grown mark every referral
 * received.
 */
#define SP_REFS WREQ_MAX_ACKS

static void
test_state_cache_savepoint_abort(void **state)
{
	struct fx *fx = NULL;
	struct wreq *batch[SP_REFS];
	char mid[32], rid[32], *pad;
	size_t p, i;
	struct msg m;
	int found = 0;

	(void)state;
	/* Pad the map with a referral of p note bytes, more each time, until the acks no
	 * longer fit (the first ones still do: the padding grows by less than they need; the
	 * test is seen failing without the cache's clear after an aborted savepoint). */
	for (p = 64 * 1024; p < 256 * 1024 && !found; p += 512) {
		fx = fx_open(256 * 1024, 100, 0);
		for (i = 0; i < SP_REFS; i++) {
			snprintf(mid, sizeof(mid), "m-%zu", i);
			snprintf(rid, sizeof(rid), "R-%zu", i);
			msg_referral(&m, mid, rid);
			batch[i] = submit_req("dma", &m, T0);
		}
		assert_int_equal(ledger_apply_batch(fx->lg, batch, SP_REFS), 0);
		for (i = 0; i < SP_REFS; i++) {
			assert_int_equal(batch[i]->status, RS(ACCEPTED));
			wreq_free(batch[i]);
		}
		pad = malloc(p + 1);
		assert_non_null(pad);
		memset(pad, 'x', p);
		pad[p] = '\0';
		msg_referral(&m, "m-pad", "R-pad");
		batch[0] = submit_req_sealed("dma", &m, T0, pad, p);
		apply1(fx, batch[0]);
		free(pad);
		if (batch[0]->status != RS(ACCEPTED)) {
			wreq_free(batch[0]);
			fx_close(fx);
			fx = NULL;
			break;
		}
		wreq_free(batch[0]);
		batch[0] = ack_req("moh", 1, SP_REFS, T0 + 1);
		/* Refused alone, in a batch that commits: not the edge where the batch's own
		 * commit no longer fits (that aborts the whole batch). */
		if (ledger_apply_batch(fx->lg, batch, 1) == 0 &&
		    batch[0]->err == IHALA_ESTOREFULL) {
			found = 1;
		} else {
			fx_close(fx);
			fx = NULL;
		}
		wreq_free(batch[0]);
	}
	if (!found) {
		fail_msg("no padding made the acks meet a full map");
	}
	assert_int_equal(log_last(fx), SP_REFS + 1); /* the referrals and the padding */
	states_check(fx);
	for (i = 0; i < SP_REFS; i++) {
		Ihala__V2__ReferralState *st;

		snprintf(rid, sizeof(rid), "R-%zu", i);
		st = state_of(fx, rid);
		assert_int_equal(st->status, S(REQUESTED));
		ihala__v2__referral_state__free_unpacked(st, NULL);
	}

	assert_int_equal(store_grow(fx->store, 1024 * 1024), 0);
	batch[0] = ack_req("moh", 1, SP_REFS, T0 + 2);
	apply1(fx, batch[0]);
	assert_int_equal(batch[0]->err, 0);
	wreq_free(batch[0]);
	assert_int_equal(log_last(fx), 2 * SP_REFS + 1);
	assert_int_equal(queued(fx, "dma"), SP_REFS);
	for (i = 0; i < SP_REFS; i++) {
		Ihala__V2__ReferralState *st;

		snprintf(rid, sizeof(rid), "R-%zu", i);
		st = state_of(fx, rid);
		assert_int_equal(st->status, S(RECEIVED));
		ihala__v2__referral_state__free_unpacked(st, NULL);
	}
	assert_int_equal(states_check(fx), SP_REFS);
	fx_close(fx);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_submit_accepted),
	    cmocka_unit_test(test_duplicate),
	    cmocka_unit_test(test_msgid_conflict),
	    cmocka_unit_test(test_sealed_stored),
	    cmocka_unit_test(test_sealed_counts_in_referral_bytes),
	    cmocka_unit_test(test_erase),
	    cmocka_unit_test(test_erase_onward_only),
	    cmocka_unit_test(test_erase_past_walk_cap),
	    cmocka_unit_test(test_unreadable),
	    cmocka_unit_test(test_retention),
	    cmocka_unit_test(test_queue_full),
	    cmocka_unit_test(test_queue_share),
	    cmocka_unit_test(test_ack_received),
	    cmocka_unit_test(test_savepoint_retry),
	    cmocka_unit_test(test_append_reads_no_tree_node),
	    cmocka_unit_test(test_overdue),
	    cmocka_unit_test(test_checkpoint_not_ahead),
	    cmocka_unit_test(test_policy_swap),
	    cmocka_unit_test(test_entry_cost_flat),
	    cmocka_unit_test(test_history_in_state_record),
	    cmocka_unit_test(test_onward_consent_scope),
	    cmocka_unit_test(test_state_cache),
	    cmocka_unit_test(test_state_cache_bounded),
	    cmocka_unit_test(test_state_cache_batch_abort),
	    cmocka_unit_test(test_state_cache_savepoint_abort),
	};

	log_setlevel(LOG_LEVEL_ERROR); /* refusals below warn on purpose */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
