/* audit_test.c - clients/audit.c: offline store verification and its refusals, sealed parts and
 * erasures, CSV, statistics. */
#define _GNU_SOURCE /* nftw */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "audit.h"
#include "checkpoint.h"
#include "error.h"
#include "log.h"
#include "merkle.h"
#include "store.h"

#define ORIGIN "audit.test/log"
#define TS(x) IHALA__V2__TASK_STATUS__TASK_STATUS_##x
#define SVC(x) IHALA__V2__SERVICE_CODE__SERVICE_CODE_##x

static char root[64];
static char pub_pem[128], other_pem[128];
static struct checkpoint_signer *signer;

static const char *
tpath(const char *name)
{
	static char buf[8][256];
	static int next;
	char *p = buf[next++ % 8];

	snprintf(p, sizeof(buf[0]), "%s/%s", root, name);
	return p;
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
write_pub(EVP_PKEY *k, const char *path)
{
	FILE *fp = fopen(path, "w");
	int ok;

	if (fp == NULL) {
		return -1;
	}
	ok = PEM_write_PUBKEY(fp, k);
	fclose(fp);
	return ok == 1 ? 0 : -1;
}

static int
group_setup(void **state)
{
	EVP_PKEY *k, *other;
	int rc;

	(void)state;
	log_setlevel(LOG_LEVEL_ERROR);
	snprintf(root, sizeof(root), "/tmp/audit_test.XXXXXX");
	if (mkdtemp(root) == NULL) {
		return -1;
	}
	snprintf(pub_pem, sizeof(pub_pem), "%s/checkpoint.pub", root);
	snprintf(other_pem, sizeof(other_pem), "%s/other.pub", root);
	k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	other = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	rc = k == NULL || other == NULL || write_pub(k, pub_pem) != 0 ||
	     write_pub(other, other_pem) != 0 ||
	     checkpoint_signer_from_pkey(k, ORIGIN, &signer) != 0;
	EVP_PKEY_free(k);
	EVP_PKEY_free(other);
	return rc ? -1 : 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	checkpoint_signer_free(signer);
	return nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- building logs the way the broker writes them ---- */

static int
tget(void *ctx, unsigned level, uint64_t index, uint8_t out[MERKLE_HASH_LEN])
{
	return store_tree_get(store_wread(ctx), level, index, out);
}

static int
tput(void *ctx, unsigned level, uint64_t index, const uint8_t hash[MERKLE_HASH_LEN])
{
	return store_tree_put(ctx, level, index, hash);
}

static const struct merkle_store_ops tops = {tget, tput};

static int
rget(void *ctx, unsigned level, uint64_t index, uint8_t out[MERKLE_HASH_LEN])
{
	return store_tree_get(ctx, level, index, out);
}

static const struct merkle_store_ops rops = {rget, NULL};

/* Encode `e` with the next seq, append it, hash it into the tree. */
static uint64_t
add(struct store_wtxn *w, Ihala__V2__LogEntry *e)
{
	uint8_t leaf[MERKLE_HASH_LEN];
	uint64_t last, seq;
	uint8_t *buf;
	size_t len;

	assert_int_equal(store_log_last(store_wread(w), &last), 0);
	e->seq = last + 1;
	len = ihala__v2__log_entry__get_packed_size(e);
	buf = malloc(len);
	assert_non_null(buf);
	ihala__v2__log_entry__pack(e, buf);
	assert_int_equal(store_log_append(w, buf, len, &seq), 0);
	assert_int_equal(seq, e->seq);
	assert_int_equal(merkle_leaf_hash(buf, len, leaf), 0);
	assert_int_equal(merkle_append(&tops, w, seq - 1, leaf), 0);
	free(buf);
	return seq;
}

/* A submission entry carrying `env`. */
static uint64_t
add_env(struct store_wtxn *w, uint64_t t, const char *from, const char *to,
        Ihala__V2__Envelope *env)
{
	Ihala__V2__LogEntry e = IHALA__V2__LOG_ENTRY__INIT;
	uint8_t buf[4096];
	size_t len = ihala__v2__envelope__get_packed_size(env);

	assert_true(len <= sizeof(buf));
	ihala__v2__envelope__pack(env, buf);
	e.broker_time_ms = t;
	e.sender = (char *)from;
	e.recipient = (char *)to;
	e.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_SUBMISSION;
	e.envelope.data = buf;
	e.envelope.len = len;
	return add(w, &e);
}

static uint64_t
add_referral(struct store_wtxn *w, uint64_t t, const char *msgid, const char *rid, const char *from,
             const char *to, Ihala__V2__ServiceCode svc)
{
	Ihala__V2__Envelope env = IHALA__V2__ENVELOPE__INIT;
	Ihala__V2__Referral ref = IHALA__V2__REFERRAL__INIT;
	Ihala__V2__Survivor sur = IHALA__V2__SURVIVOR__INIT;

	sur.case_id = "IQ-1";
	ref.referral_id = (char *)rid;
	ref.priority = IHALA__V2__PRIORITY__PRIORITY_URGENT;
	ref.n_services = 1;
	ref.services = &svc;
	ref.survivor = &sur;
	env.message_id = (char *)msgid;
	env.kind_case = IHALA__V2__ENVELOPE__KIND_REFERRAL;
	env.referral = &ref;
	return add_env(w, t, from, to, &env);
}

static uint64_t
add_status(struct store_wtxn *w, uint64_t t, const char *rid, const char *from, const char *to,
           Ihala__V2__TaskStatus st, Ihala__V2__Outcome *oc)
{
	Ihala__V2__Envelope env = IHALA__V2__ENVELOPE__INIT;
	Ihala__V2__StatusUpdate su = IHALA__V2__STATUS_UPDATE__INIT;
	char msgid[64];

	snprintf(msgid, sizeof(msgid), "st-%s-%d", rid, (int)st);
	su.referral_id = (char *)rid;
	su.status = st;
	su.outcome = oc;
	env.message_id = msgid;
	env.kind_case = IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE;
	env.status_update = &su;
	return add_env(w, t, from, to, &env);
}

static uint64_t
add_event(struct store_wtxn *w, uint64_t t, Ihala__V2__EntryKind kind, const char *rid,
          const char *from, const char *to, Ihala__V2__TaskStatus st)
{
	Ihala__V2__LogEntry e = IHALA__V2__LOG_ENTRY__INIT;
	Ihala__V2__BrokerEvent ev = IHALA__V2__BROKER_EVENT__INIT;

	ev.referral_id = (char *)rid;
	ev.status = st;
	ev.text = "event";
	e.broker_time_ms = t;
	e.sender = (char *)from;
	e.recipient = (char *)to;
	e.kind = kind;
	e.event = &ev;
	return add(w, &e);
}

/* Sign the current tree at `size` (or over `bogus` when not NULL) and store it. */
static void
sign_at(struct store_wtxn *w, uint64_t size, const uint8_t *bogus)
{
	uint8_t r[MERKLE_HASH_LEN];
	char *text = NULL;

	assert_int_equal(merkle_root(&tops, w, size, r), 0);
	assert_int_equal(checkpoint_sign(signer, ORIGIN, size, bogus != NULL ? bogus : r, &text),
	                 0);
	assert_int_equal(store_checkpoint_put(w, size, text), 0);
	free(text);
}

/* A store of `n` entries (cycles of referral, delivery, received, accepted), checkpoints
 * every 10 entries; returns its directory. */
static const char *
make_log(const char *name, int n, const uint8_t *bogus_at_20)
{
	const char *dir = tpath(name);
	struct store *s = NULL;
	struct store_wtxn *w;
	char rid[32], msgid[32];
	uint64_t seq = 0;
	int i;

	assert_int_equal(store_open(dir, 0, 0, &s), 0);
	assert_int_equal(store_wbegin(s, &w), 0);
	for (i = 0; i < n; i++) {
		snprintf(rid, sizeof(rid), "R%d", i / 4);
		snprintf(msgid, sizeof(msgid), "m%d", i);
		switch (i % 4) {
		case 0:
			seq = add_referral(w, 1000 + (uint64_t)i, msgid, rid, "dma", "moh",
			                   SVC(PROSTHETICS_ORTHOTICS));
			break;
		case 1:
			seq = add_event(w, 1000 + (uint64_t)i,
			                IHALA__V2__ENTRY_KIND__ENTRY_KIND_DELIVERY, rid, "moh", "",
			                TS(UNSPECIFIED));
			break;
		case 2:
			seq = add_event(w, 1000 + (uint64_t)i,
			                IHALA__V2__ENTRY_KIND__ENTRY_KIND_BROKER_STATUS, rid, "",
			                "dma", TS(RECEIVED));
			break;
		default:
			seq = add_status(w, 1000 + (uint64_t)i, rid, "moh", "dma", TS(ACCEPTED),
			                 NULL);
			break;
		}
		if (seq % 10 == 0) {
			sign_at(w, seq, seq == 20 ? bogus_at_20 : NULL);
		}
	}
	assert_int_equal(store_wcommit(w), 0);
	store_close(s);
	return dir;
}

/* A copy of `src` in `name` (mdb_copy's compacting copy, as an auditor gets it). */
static const char *
copy_of(const char *src, const char *name)
{
	const char *dir = tpath(name);
	MDB_env *env;

	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
	assert_int_equal(mdb_env_open(env, src, MDB_RDONLY, 0600), 0);
	assert_int_equal(mdb_env_copy2(env, dir, MDB_CP_COMPACT), 0);
	mdb_env_close(env);
	return dir;
}

/* Raw LMDB edits behind the store's back: op 'f' flips the last byte of log entry a, 'd'
 * deletes it, 's' swaps entries a and b, 't' deletes tree node (level b, index a), 'n'
 * rewrites tree node (level b, index a). */
static void
raw(const char *dir, int op, uint64_t a, uint64_t b)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k, v, k2, v2;
	uint64_t ka = a, kb = b;
	uint8_t tk[9], c1[8192], c2[8192];
	int i;

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
	assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	if (op == 't' || op == 'n') {
		uint64_t pos;

		/* "node": the big-endian postorder position of (level b, index a) */
		assert_int_equal(mdb_dbi_open(txn, "node", 0, &dbi), 0);
		assert_int_equal(logdb_node_pos((unsigned)b, a, &pos), 0);
		for (i = 0; i < 8; i++) {
			tk[i] = (uint8_t)(pos >> (56 - 8 * i));
		}
		k.mv_data = tk;
		k.mv_size = 8;
		if (op == 't') {
			assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
		} else {
			memset(c1, 0x5a, 32);
			v.mv_data = c1;
			v.mv_size = 32;
			assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
		}
		assert_int_equal(mdb_txn_commit(txn), 0);
		mdb_env_close(env);
		return;
	}
	assert_int_equal(mdb_dbi_open(txn, "log", MDB_INTEGERKEY, &dbi), 0);
	k.mv_data = &ka;
	k.mv_size = sizeof(ka);
	assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
	assert_true(v.mv_size <= sizeof(c1));
	memcpy(c1, v.mv_data, v.mv_size);
	if (op == 'f') {
		c1[v.mv_size - 1] ^= 1;
		v.mv_data = c1;
		assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	} else if (op == 'd') {
		assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
	} else {
		k2.mv_data = &kb;
		k2.mv_size = sizeof(kb);
		assert_int_equal(mdb_get(txn, dbi, &k2, &v2), 0);
		memcpy(c2, v2.mv_data, v2.mv_size);
		v.mv_data = c1;
		v2.mv_data = c2;
		assert_int_equal(mdb_put(txn, dbi, &k, &v2, 0), 0);
		assert_int_equal(mdb_put(txn, dbi, &k2, &v, 0), 0);
	}
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

/* audit_verify_store on `dir` refuses with exactly `problem`. */
static void
assert_problem(const char *dir, const char *key, const char *origin, const char *problem)
{
	struct audit_verify_result res;

	assert_int_equal(audit_verify_store(dir, key, origin, &res), IHALA_ETAMPER);
	assert_string_equal(res.problem, problem);
}

/* ---- tests ---- */

static void
test_verify_intact(void **state)
{
	const char *dir = make_log("intact", 35, NULL);
	struct audit_verify_result res;
	struct store *s;
	struct store_rtxn *r;
	uint8_t want[MERKLE_HASH_LEN];

	(void)state;
	assert_int_equal(audit_verify_store(dir, pub_pem, NULL, &res), 0);
	assert_int_equal(res.entries, 35);
	assert_int_equal(res.checkpoints, 3);
	assert_int_equal(res.last_checkpoint, 30);
	assert_string_equal(res.origin, ORIGIN);
	assert_string_equal(res.problem, "");
	/* the root is the RFC 6962 root of all 35 entries, as the broker's tree says */
	assert_int_equal(store_open(dir, 0, STORE_RDONLY, &s), 0);
	assert_int_equal(store_rbegin(s, &r), 0);
	assert_int_equal(merkle_root(&rops, r, 35, want), 0);
	store_rend(r);
	store_close(s);
	assert_memory_equal(res.root, want, MERKLE_HASH_LEN);
	/* with the expected origin too, and from an mdb_copy */
	assert_int_equal(audit_verify_store(copy_of(dir, "intact-copy"), pub_pem, ORIGIN, &res), 0);
	assert_int_equal(res.entries, 35);
}

static void
test_verify_empty(void **state)
{
	const char *dir = tpath("empty");
	struct audit_verify_result res;
	struct store *s;
	uint8_t empty[MERKLE_HASH_LEN];

	(void)state;
	assert_int_equal(store_open(dir, 0, 0, &s), 0);
	store_close(s);
	assert_int_equal(audit_verify_store(dir, pub_pem, NULL, &res), 0);
	assert_int_equal(res.entries, 0);
	assert_int_equal(res.checkpoints, 0);
	assert_int_equal(merkle_empty_root(empty), 0);
	assert_memory_equal(res.root, empty, MERKLE_HASH_LEN);
}

static void
test_verify_tampered_entries(void **state)
{
	const char *src = make_log("src", 35, NULL);
	const char *d;

	(void)state;
	d = copy_of(src, "flip");
	raw(d, 'f', 17, 0);
	assert_problem(d, pub_pem, NULL, "seq 17: entry does not match its leaf hash");
	d = copy_of(src, "del");
	raw(d, 'd', 9, 0);
	assert_problem(d, pub_pem, NULL, "seq 9 missing (log jumps from 8 to 10)");
	d = copy_of(src, "del1");
	raw(d, 'd', 1, 0);
	assert_problem(d, pub_pem, NULL, "seq 1 missing (log starts at 2)");
	d = copy_of(src, "swap");
	raw(d, 's', 12, 14);
	assert_problem(d, pub_pem, NULL, "seq 12: entry says seq 14");
	/* the last entry gone: the tree (and a checkpoint, when one covers it) still has it */
	d = copy_of(src, "dellast");
	raw(d, 'd', 35, 0);
	assert_problem(d, pub_pem, NULL, "seq 35 missing: the tree has its leaf (log ends at 34)");
	d = copy_of(src, "del30");
	raw(d, 'd', 34, 0);
	raw(d, 'd', 35, 0);
	raw(d, 'd', 33, 0);
	raw(d, 'd', 32, 0);
	raw(d, 'd', 31, 0);
	raw(d, 'd', 30, 0);
	assert_problem(d, pub_pem, NULL,
	               "seq 30 missing: a checkpoint of size 30 covers it (log ends at 29)");
}

static void
test_verify_tampered_tree_and_checkpoints(void **state)
{
	uint8_t bogus[MERKLE_HASH_LEN];
	const char *src = make_log("src2", 35, NULL);
	const char *d;

	(void)state;
	d = copy_of(src, "noleaf");
	raw(d, 't', 4, 0); /* the leaf of seq 5 */
	assert_problem(d, pub_pem, NULL, "seq 5: no leaf hash stored for it");
	d = copy_of(src, "node");
	raw(d, 'n', 0, 3); /* level 3, index 0: leaves 0..7, read for the root of 10 */
	assert_problem(d, pub_pem, NULL,
	               "checkpoint at size 10: the stored tree nodes do not match the log");
	memset(bogus, 7, sizeof(bogus));
	d = make_log("bogus", 25, bogus);
	assert_problem(d, pub_pem, NULL, "checkpoint at size 20: root does not match the log");
}

static void
test_verify_keys_and_origin(void **state)
{
	const char *src = make_log("src3", 12, NULL);
	struct audit_verify_result res;
	char want[512], *vkey = NULL;
	struct checkpoint_verifier *v = NULL;

	(void)state;
	snprintf(want, sizeof(want), "checkpoint at size 10: signature does not verify with '%s'",
	         other_pem);
	assert_problem(src, other_pem, NULL, want);
	assert_problem(src, pub_pem, "other.example/log",
	               "checkpoint at size 10: origin '" ORIGIN "', not 'other.example/log'");
	/* a C2SP verifier key string works as well as the PEM file */
	assert_int_equal(checkpoint_verifier_from_signer(signer, &v), 0);
	assert_int_equal(checkpoint_verifier_string(v, &vkey), 0);
	assert_int_equal(audit_verify_store(src, vkey, NULL, &res), 0);
	assert_int_equal(res.checkpoints, 1);
	free(vkey);
	checkpoint_verifier_free(v);
	/* no such key, no such store */
	assert_int_equal(audit_verify_store(src, tpath("nokey.pem"), NULL, &res), IHALA_EIO);
	assert_int_not_equal(audit_verify_store(tpath("nostore"), pub_pem, NULL, &res), 0);
	assert_int_not_equal(audit_verify_store(tpath("nostore"), pub_pem, NULL, &res),
	                     IHALA_ETAMPER);
}

static void
test_chain(void **state)
{
	struct audit_chain a;
	uint8_t e1[] = {0x08, 0x01, 0x10, 0x05};         /* seq 1, time 5 */
	uint8_t e2[] = {0x08, 0x02, 0x1a, 0x01, 'x'};    /* seq 2, sender "x" */
	uint8_t e3bad[] = {0x08, 0x03, 0x1a, 0x09, 'x'}; /* length past the end */
	uint8_t e3dup[] = {0x08, 0x07, 0x08, 0x03};      /* seq twice: the last wins */
	uint8_t e4[] = {0x08, 0x05};
	uint8_t leaf[MERKLE_HASH_LEN], want[MERKLE_HASH_LEN];

	(void)state;
	audit_chain_init(&a);
	assert_int_equal(audit_chain_push(&a, 1, e1, sizeof(e1), leaf), 0);
	assert_int_equal(merkle_leaf_hash(e1, sizeof(e1), want), 0);
	assert_memory_equal(leaf, want, MERKLE_HASH_LEN);
	assert_int_equal(audit_chain_push(&a, 2, e2, sizeof(e2), NULL), 0);
	assert_int_equal(audit_chain_push(&a, 3, e3bad, sizeof(e3bad), NULL), IHALA_ETAMPER);
	assert_string_equal(a.problem, "seq 3: entry does not decode");
	/* a problem sticks */
	assert_int_equal(audit_chain_push(&a, 3, e3dup, sizeof(e3dup), NULL), IHALA_ETAMPER);
	assert_int_equal(merkle_range_size(&a.range), 2);

	audit_chain_init(&a);
	assert_int_equal(audit_chain_push(&a, 1, e1, sizeof(e1), NULL), 0);
	assert_int_equal(audit_chain_push(&a, 2, e2, sizeof(e2), NULL), 0);
	assert_int_equal(audit_chain_push(&a, 3, e3dup, sizeof(e3dup), NULL), 0);
	assert_int_equal(audit_chain_push(&a, 4, e4, sizeof(e4), NULL), IHALA_ETAMPER);
	assert_string_equal(a.problem, "seq 4: entry says seq 5");

	audit_chain_init(&a);
	assert_int_equal(audit_chain_push(&a, 1, e1, sizeof(e1), NULL), 0);
	assert_int_equal(audit_chain_push(&a, 1, e1, sizeof(e1), NULL), IHALA_ETAMPER);
	assert_string_equal(a.problem, "seq 1: out of order (after seq 1)");

	audit_chain_init(&a);
	assert_int_equal(audit_chain_push(&a, 1, e1, sizeof(e1), NULL), 0);
	assert_int_equal(audit_chain_push(&a, 5, e4, sizeof(e4), NULL), IHALA_ETAMPER);
	assert_string_equal(a.problem, "seq 2 to 4 missing (log jumps from 1 to 5)");

	/* an entry without a seq field says seq 0 */
	audit_chain_init(&a);
	assert_int_equal(audit_chain_push(&a, 1, (const uint8_t *)"", 0, NULL), IHALA_ETAMPER);
	assert_string_equal(a.problem, "seq 1: entry says seq 0");
}

static int
collect(void *arg, uint64_t size, const char *text, size_t len)
{
	uint64_t *v = arg;

	assert_true(len > 0);
	assert_memory_equal(text, ORIGIN "\n", strlen(ORIGIN) + 1);
	v[++v[0]] = size;
	return v[0] >= 2 && size == 20 ? 1 : 0;
}

static int
fail_cb(void *arg, uint64_t size, const char *text, size_t len)
{
	(void)arg;
	(void)size;
	(void)text;
	(void)len;
	return IHALA_EIO;
}

static void
test_checkpoint_iter(void **state)
{
	const char *dir = make_log("iter", 31, NULL);
	struct store *s;
	struct store_rtxn *r;
	uint64_t v[8];

	(void)state;
	assert_int_equal(store_open(dir, 0, STORE_RDONLY, &s), 0);
	assert_int_equal(store_rbegin(s, &r), 0);
	memset(v, 0, sizeof(v));
	assert_int_equal(store_checkpoint_iter(r, 0, collect, v), 0);
	assert_int_equal(v[0], 2); /* stopped at 20 by the callback */
	assert_int_equal(v[1], 10);
	assert_int_equal(v[2], 20);
	memset(v, 0, sizeof(v));
	assert_int_equal(store_checkpoint_iter(r, 11, collect, v), 0);
	assert_int_equal(v[0], 2);
	assert_int_equal(v[1], 20);
	assert_int_equal(v[2], 30);
	memset(v, 0, sizeof(v));
	assert_int_equal(store_checkpoint_iter(r, 31, collect, v), 0);
	assert_int_equal(v[0], 0);
	assert_int_equal(store_checkpoint_iter(r, 0, fail_cb, NULL), IHALA_EIO);
	assert_int_equal(store_checkpoint_iter(r, 0, NULL, NULL), IHALA_EINVAL);
	store_rend(r);
	store_close(s);
}

struct walked {
	uint64_t n, last;
};

static int
walk_cb(void *arg, uint64_t seq, const uint8_t *entry, size_t len)
{
	struct walked *w = arg;

	(void)entry;
	assert_true(len > 0);
	assert_int_equal(seq, w->last + 1);
	w->last = seq;
	return ++w->n == 7 ? 1 : 0;
}

static void
test_store_walk(void **state)
{
	const char *dir = make_log("walk", 12, NULL);
	struct walked w = {0, 0};

	(void)state;
	assert_int_equal(audit_store_walk(dir, walk_cb, &w), 0);
	assert_int_equal(w.n, 7); /* the callback stopped it */
	assert_int_not_equal(audit_store_walk(tpath("nowhere"), walk_cb, &w), 0);
}

/* ---- CSV ---- */

static char *
csv_of(const Ihala__V2__LogEntry *e)
{
	static char out[2048];
	uint8_t buf[4096];
	size_t len = ihala__v2__log_entry__get_packed_size(e);
	FILE *fp = fmemopen(out, sizeof(out), "w");

	assert_non_null(fp);
	ihala__v2__log_entry__pack(e, buf);
	assert_int_equal(audit_csv_row(fp, e->seq, buf, len), 0);
	fputc('\0', fp);
	fclose(fp);
	return out;
}

static void
test_csv(void **state)
{
	Ihala__V2__LogEntry e = IHALA__V2__LOG_ENTRY__INIT;
	Ihala__V2__Envelope env = IHALA__V2__ENVELOPE__INIT;
	Ihala__V2__Referral ref = IHALA__V2__REFERRAL__INIT;
	Ihala__V2__BrokerEvent ev = IHALA__V2__BROKER_EVENT__INIT;
	Ihala__V2__ServiceCode svc[2] = {SVC(PROSTHETICS_ORTHOTICS), SVC(PSYCHOSOCIAL_SUPPORT)};
	uint8_t eb[1024], bad[] = {0x0a, 0x05, 'x'};
	char hdr[256];
	FILE *fp;

	(void)state;
	fp = fmemopen(hdr, sizeof(hdr), "w");
	assert_int_equal(audit_csv_header(fp), 0);
	fputc('\0', fp);
	fclose(fp);
	assert_string_equal(hdr, "seq,time,sender,recipient,kind,message_id,referral_id,status,"
	                         "priority,services,clerk_id\r\n");

	ref.referral_id = "R-1";
	ref.priority = IHALA__V2__PRIORITY__PRIORITY_EMERGENCY;
	ref.n_services = 2;
	ref.services = svc;
	env.message_id = "a,\"b\"";
	env.kind_case = IHALA__V2__ENVELOPE__KIND_REFERRAL;
	env.referral = &ref;
	e.seq = 7;
	e.broker_time_ms = 1712052000123ULL; /* 2024-04-02T10:00:00.123Z */
	e.sender = "dma";
	e.recipient = "moh";
	e.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_SUBMISSION;
	e.envelope.len = ihala__v2__envelope__get_packed_size(&env);
	ihala__v2__envelope__pack(&env, eb);
	e.envelope.data = eb;
	assert_string_equal(csv_of(&e), "7,2024-04-02T10:00:00.123Z,dma,moh,submission,"
	                                "\"a,\"\"b\"\"\",R-1,requested,emergency,"
	                                "prosthetics-orthotics;psychosocial-support,\r\n");
	/* the clerk who acted, by pseudonym */
	env.clerk_id = "c-0123456789abcdef";
	e.envelope.len = ihala__v2__envelope__get_packed_size(&env);
	ihala__v2__envelope__pack(&env, eb);
	assert_string_equal(csv_of(&e), "7,2024-04-02T10:00:00.123Z,dma,moh,submission,"
	                                "\"a,\"\"b\"\"\",R-1,requested,emergency,"
	                                "prosthetics-orthotics;psychosocial-support,"
	                                "c-0123456789abcdef\r\n");
	/* a broker-made status: no message id, priority or services */
	ev.referral_id = "R-1";
	ev.status = TS(OVERDUE);
	e.seq = 8;
	e.sender = "";
	e.recipient = "dma";
	e.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_BROKER_STATUS;
	e.envelope.len = 0;
	e.event = &ev;
	assert_string_equal(csv_of(&e),
	                    "8,2024-04-02T10:00:00.123Z,,dma,broker-status,,R-1,overdue,,,\r\n");
	/* envelope bytes that do not decode leave their cells empty; the row is still there */
	e.seq = 9;
	e.event = NULL;
	e.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_SUBMISSION;
	e.envelope.data = bad;
	e.envelope.len = sizeof(bad);
	assert_string_equal(csv_of(&e), "9,2024-04-02T10:00:00.123Z,,dma,submission,,,,,,\r\n");
	/* entry bytes that do not decode are refused */
	fp = fmemopen(hdr, sizeof(hdr), "w");
	assert_int_equal(audit_csv_row(fp, 1, bad, sizeof(bad)), IHALA_EBADFRAME);
	fclose(fp);
}

/* ---- statistics ---- */

static json_int_t
jint(json_t *j, const char *path)
{
	char buf[128], *tok, *save = NULL;
	json_t *cur = j;

	snprintf(buf, sizeof(buf), "%s", path);
	for (tok = strtok_r(buf, ".", &save); tok != NULL && cur != NULL;
	     tok = strtok_r(NULL, ".", &save)) {
		cur = json_is_array(cur) ? json_array_get(cur, (size_t)atoi(tok))
		                         : json_object_get(cur, tok);
	}
	if (cur == NULL || !json_is_integer(cur)) {
		fail_msg("%s is not an integer", path);
	}
	return json_integer_value(cur);
}

static int
stats_cb(void *arg, uint64_t seq, const uint8_t *entry, size_t len)
{
	assert_int_equal(audit_stats_add(arg, seq, entry, len), 0);
	return 0;
}

static void
test_stats(void **state)
{
	const char *dir = tpath("stats");
	Ihala__V2__Outcome ok = IHALA__V2__OUTCOME__INIT, nok = IHALA__V2__OUTCOME__INIT;
	Ihala__V2__ServiceCode pro = SVC(PROSTHETICS_ORTHOTICS);
	struct audit_stats *st = NULL;
	struct store *s;
	struct store_wtxn *w;
	json_t *j = NULL;
	uint8_t bad[] = {0xff};

	(void)state;
	ok.service_implemented = 1;
	ok.success = 1;
	ok.n_services_delivered = 1;
	ok.services_delivered = &pro;
	assert_int_equal(store_open(dir, 0, 0, &s), 0);
	assert_int_equal(store_wbegin(s, &w), 0);
	/* R1 dma->moh: received, accepted after 4 s, completed after 10 s */
	add_referral(w, 1000, "m1", "R1", "dma", "moh", SVC(PROSTHETICS_ORTHOTICS));
	add_event(w, 1500, IHALA__V2__ENTRY_KIND__ENTRY_KIND_DELIVERY, "R1", "moh", "",
	          TS(UNSPECIFIED));
	add_event(w, 2000, IHALA__V2__ENTRY_KIND__ENTRY_KIND_BROKER_STATUS, "R1", "", "dma",
	          TS(RECEIVED));
	/* R2 dma->moh: declined */
	add_referral(w, 3000, "m2", "R2", "dma", "moh", SVC(LEGAL));
	add_status(w, 4000, "R2", "moh", "dma", TS(DECLINED), NULL);
	add_status(w, 5000, "R1", "moh", "dma", TS(ACCEPTED), NULL);
	/* R3 dma->hi: overdue, still requested */
	add_referral(w, 6000, "m3", "R3", "dma", "hi", SVC(ECONOMIC_INCLUSION));
	add_event(w, 7000, IHALA__V2__ENTRY_KIND__ENTRY_KIND_BROKER_STATUS, "R3", "", "dma",
	          TS(OVERDUE));
	/* R4 dma->hi: accepted after 2 s, failed: not implemented, services not named */
	add_referral(w, 8000, "m4", "R4", "dma", "hi", SVC(PSYCHOSOCIAL_SUPPORT));
	add_status(w, 10000, "R4", "hi", "dma", TS(ACCEPTED), NULL);
	add_status(w, 11000, "R1", "moh", "dma", TS(COMPLETED), &ok);
	add_status(w, 12000, "R4", "hi", "dma", TS(FAILED), &nok);
	/* a status of an unknown referral changes nothing */
	add_status(w, 13000, "R9", "hi", "dma", TS(ACCEPTED), NULL);
	assert_int_equal(store_wcommit(w), 0);
	store_close(s);

	assert_int_equal(audit_stats_new(&st), 0);
	assert_int_equal(audit_store_walk(dir, stats_cb, st), 0);
	assert_int_equal(audit_stats_add(st, 14, bad, sizeof(bad)), IHALA_EBADFRAME);
	assert_int_equal(audit_stats_json(st, &j), 0);
	assert_int_equal(jint(j, "entries"), 13);
	assert_int_equal(jint(j, "firstTime"), 1000);
	assert_int_equal(jint(j, "lastTime"), 13000);
	assert_int_equal(jint(j, "entriesByKind.submission"), 10);
	assert_int_equal(jint(j, "entriesByKind.delivery"), 1);
	assert_int_equal(jint(j, "entriesByKind.broker-status"), 2);
	assert_int_equal(jint(j, "referrals"), 4);
	assert_int_equal(jint(j, "byStatus.completed"), 1);
	assert_int_equal(jint(j, "byStatus.declined"), 1);
	assert_int_equal(jint(j, "byStatus.requested"), 1);
	assert_int_equal(jint(j, "byStatus.failed"), 1);
	assert_int_equal(jint(j, "byStatus.accepted"), 0);
	/* pairs sorted: dma->hi, then dma->moh */
	assert_string_equal(json_string_value(json_object_get(
	                        json_array_get(json_object_get(j, "byAgencyPair"), 0), "to")),
	                    "hi");
	assert_int_equal(jint(j, "byAgencyPair.0.referrals"), 2);
	assert_int_equal(jint(j, "byAgencyPair.0.byStatus.requested"), 1);
	assert_int_equal(jint(j, "byAgencyPair.0.byStatus.failed"), 1);
	assert_int_equal(jint(j, "byAgencyPair.1.referrals"), 2);
	assert_int_equal(jint(j, "byAgencyPair.1.byStatus.completed"), 1);
	assert_null(json_object_get(
	    json_object_get(json_array_get(json_object_get(j, "byAgencyPair"), 1), "byStatus"),
	    "requested"));
	/* accept: 4000 (R1) and 2000 (R4); nearest rank: median 2000, p90 4000 */
	assert_int_equal(jint(j, "timeToAccept.count"), 2);
	assert_int_equal(jint(j, "timeToAccept.medianMs"), 2000);
	assert_int_equal(jint(j, "timeToAccept.p90Ms"), 4000);
	assert_int_equal(jint(j, "timeToComplete.count"), 1);
	assert_int_equal(jint(j, "timeToComplete.medianMs"), 10000);
	assert_int_equal(jint(j, "overdue.marked"), 1);
	assert_int_equal(jint(j, "overdue.open"), 1);
	assert_int_equal(jint(j, "outcomesByService.prosthetics-orthotics.outcomes"), 1);
	assert_int_equal(jint(j, "outcomesByService.prosthetics-orthotics.successful"), 1);
	assert_int_equal(jint(j, "outcomesByService.psychosocial-support.outcomes"), 1);
	assert_int_equal(jint(j, "outcomesByService.psychosocial-support.implemented"), 0);
	assert_int_equal(jint(j, "outcomesByService.psychosocial-support.unsuccessful"), 1);
	assert_null(json_object_get(json_object_get(j, "outcomesByService"), "legal"));
	json_decref(j);
	audit_stats_free(st);

	/* nothing at all */
	assert_int_equal(audit_stats_new(&st), 0);
	assert_int_equal(audit_stats_json(st, &j), 0);
	assert_int_equal(jint(j, "referrals"), 0);
	assert_true(json_is_null(json_object_get(json_object_get(j, "timeToAccept"), "medianMs")));
	json_decref(j);
	audit_stats_free(st);
}

/* ---- sealed parts and erasures (audit_sealed_*) ---- */

/* A SUBMISSION entry of `seq` whose envelope commits to `part` (none when NULL), encoded into
 * buf; returns its length. */
static size_t
sealed_entry(uint8_t *buf, size_t cap, uint64_t seq, const char *part)
{
	Ihala__V2__Envelope env = IHALA__V2__ENVELOPE__INIT;
	Ihala__V2__Note note = IHALA__V2__NOTE__INIT;
	Ihala__V2__LogEntry e = IHALA__V2__LOG_ENTRY__INIT;
	uint8_t ebuf[512], h[SHA256_DIGEST_LENGTH];
	char id[32];

	snprintf(id, sizeof(id), "m%llu", (unsigned long long)seq);
	env.message_id = id;
	note.referral_id = "r1";
	env.kind_case = IHALA__V2__ENVELOPE__KIND_NOTE;
	env.note = &note;
	if (part != NULL) {
		SHA256((const uint8_t *)part, strlen(part), h);
		env.sealed_sha256.data = h;
		env.sealed_sha256.len = sizeof(h);
	}
	assert_true(ihala__v2__envelope__get_packed_size(&env) <= sizeof(ebuf));
	e.seq = seq;
	e.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_SUBMISSION;
	e.sender = "dma";
	e.recipient = "moh";
	e.envelope.len = ihala__v2__envelope__pack(&env, ebuf);
	e.envelope.data = ebuf;
	assert_true(ihala__v2__log_entry__get_packed_size(&e) <= cap);
	return ihala__v2__log_entry__pack(&e, buf);
}

/* An ERASURE entry of `seq` naming n seqs. */
static size_t
erasure_entry(uint8_t *buf, size_t cap, uint64_t seq, uint64_t *seqs, size_t n)
{
	Ihala__V2__LogEntry e = IHALA__V2__LOG_ENTRY__INIT;
	Ihala__V2__BrokerEvent ev = IHALA__V2__BROKER_EVENT__INIT;

	ev.referral_id = "r1";
	ev.erased_seqs = seqs;
	ev.n_erased_seqs = n;
	ev.reason_code = IHALA__V2__REASON_CODE__REASON_CODE_CONSENT_WITHDRAWN;
	e.seq = seq;
	e.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_ERASURE;
	e.sender = "dma";
	e.recipient = "moh";
	e.event = &ev;
	assert_true(ihala__v2__log_entry__get_packed_size(&e) <= cap);
	return ihala__v2__log_entry__pack(&e, buf);
}

/* push the entry in buf with `part` (NULL: none stored) */
static int
push(struct audit_sealed *s, uint64_t seq, const uint8_t *buf, size_t len, const char *part,
     int known)
{
	return audit_sealed_push(s, seq, buf, len, (const uint8_t *)part,
	                         part != NULL ? strlen(part) : 0, known);
}
#define PUSH(s, seq, len, part, known) push((s), (seq), buf, (len), (part), (known))

static void
test_sealed(void **state)
{
	struct audit_sealed s;
	uint8_t buf[1024];
	uint64_t named[] = {1, 2, 1};
	size_t n;

	(void)state;
	/* a part stored and matching, a part erased and named, an entry with none */
	audit_sealed_init(&s);
	n = sealed_entry(buf, sizeof(buf), 1, "part one");
	assert_int_equal(PUSH(&s, 1, n, "part one", 1), 0);
	n = sealed_entry(buf, sizeof(buf), 2, "part two");
	assert_int_equal(PUSH(&s, 2, n, NULL, 1), 0);
	n = sealed_entry(buf, sizeof(buf), 3, NULL);
	assert_int_equal(PUSH(&s, 3, n, NULL, 1), 0);
	n = erasure_entry(buf, sizeof(buf), 4, named, 3);
	assert_int_equal(PUSH(&s, 4, n, NULL, 1), 0);
	assert_int_equal(audit_sealed_finish(&s), 0);
	assert_int_equal(s.erasures, 1);
	assert_int_equal(s.sealed, 2);
	assert_int_equal(s.present, 1);
	assert_int_equal(s.erased, 1);
	audit_sealed_release(&s);

	/* a stored part that is not the one the entry commits to */
	audit_sealed_init(&s);
	n = sealed_entry(buf, sizeof(buf), 1, "part one");
	assert_int_equal(PUSH(&s, 1, n, "part 0ne", 1), IHALA_ETAMPER);
	assert_string_equal(s.problem, "seq 1: sealed part does not match its sealed_sha256");
	audit_sealed_release(&s);

	/* a part stored for an entry that commits to none */
	audit_sealed_init(&s);
	n = sealed_entry(buf, sizeof(buf), 1, NULL);
	assert_int_equal(PUSH(&s, 1, n, "stray", 1), IHALA_ETAMPER);
	assert_string_equal(s.problem,
	                    "seq 1: a sealed part is stored for an entry that commits to none");
	audit_sealed_release(&s);

	/* a part missing that no erasure entry names: deleted without a trace in the log */
	audit_sealed_init(&s);
	n = sealed_entry(buf, sizeof(buf), 1, "part one");
	assert_int_equal(PUSH(&s, 1, n, NULL, 1), 0);
	n = sealed_entry(buf, sizeof(buf), 2, "part two");
	assert_int_equal(PUSH(&s, 2, n, NULL, 1), 0);
	n = erasure_entry(buf, sizeof(buf), 3, named, 1);
	assert_int_equal(PUSH(&s, 3, n, NULL, 1), 0);
	assert_int_equal(audit_sealed_finish(&s), IHALA_ETAMPER);
	assert_string_equal(s.problem, "seq 2: sealed part missing but no erasure entry names it");
	audit_sealed_release(&s);

	/* parts unknown (a replay that does not carry them): erased = the distinct seqs named */
	audit_sealed_init(&s);
	n = sealed_entry(buf, sizeof(buf), 1, "part one");
	assert_int_equal(PUSH(&s, 1, n, NULL, 0), 0);
	n = sealed_entry(buf, sizeof(buf), 2, "part two");
	assert_int_equal(PUSH(&s, 2, n, NULL, 0), 0);
	n = erasure_entry(buf, sizeof(buf), 3, named, 3);
	assert_int_equal(PUSH(&s, 3, n, NULL, 0), 0);
	n = erasure_entry(buf, sizeof(buf), 4, named, 2);
	assert_int_equal(PUSH(&s, 4, n, NULL, 0), 0);
	assert_int_equal(audit_sealed_finish(&s), 0);
	assert_int_equal(s.erasures, 2);
	assert_int_equal(s.sealed, 2);
	assert_int_equal(s.erased, 2);
	audit_sealed_release(&s);

	/* erased_seqs unpacked, over two events: read as a protobuf reader merges them (seq 1
	 * in the first event, seq 2 in the second; kind ERASURE = 6) */
	audit_sealed_init(&s);
	n = sealed_entry(buf, sizeof(buf), 1, "part one");
	assert_int_equal(PUSH(&s, 1, n, NULL, 1), 0);
	n = sealed_entry(buf, sizeof(buf), 2, "part two");
	assert_int_equal(PUSH(&s, 2, n, NULL, 1), 0);
	{
		static const uint8_t unpacked[] = {0x08, 0x03, 0x28, 0x06, 0x3a, 0x02,
		                                   0x30, 0x01, 0x3a, 0x02, 0x30, 0x02};

		assert_int_equal(audit_sealed_push(&s, 3, unpacked, sizeof(unpacked), NULL, 0, 1),
		                 0);
	}
	assert_int_equal(audit_sealed_finish(&s), 0);
	assert_int_equal(s.erasures, 1);
	assert_int_equal(s.erased, 2);
	audit_sealed_release(&s);

	/* an entry that does not decode */
	audit_sealed_init(&s);
	buf[0] = 0xff;
	assert_int_not_equal(PUSH(&s, 1, 1, NULL, 1), 0);
	audit_sealed_release(&s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_verify_intact),
	    cmocka_unit_test(test_verify_empty),
	    cmocka_unit_test(test_verify_tampered_entries),
	    cmocka_unit_test(test_verify_tampered_tree_and_checkpoints),
	    cmocka_unit_test(test_verify_keys_and_origin),
	    cmocka_unit_test(test_chain),
	    cmocka_unit_test(test_checkpoint_iter),
	    cmocka_unit_test(test_store_walk),
	    cmocka_unit_test(test_csv),
	    cmocka_unit_test(test_stats),
	    cmocka_unit_test(test_sealed),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
