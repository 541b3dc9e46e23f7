/* tamper.c - test tool: damages copies of a broker store with raw LMDB, writes synthetic ones. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lmdb.h>

#include "checkpoint.h"
#include "error.h"
#include "ihala.pb-c.h"
#include "log.h"
#include "merkle.h"
#include "store.h"

/*
 * tamper flip DIR SEQ          flip the last byte of entry SEQ (its bytes, not its framing)
 * tamper delete DIR SEQ        delete entry SEQ
 * tamper swap DIR SEQ1 SEQ2    swap the bytes of two entries
 *	Raw LMDB edits of the `log` database (native-endian uint64 keys, MDB_INTEGERKEY) of a
 *	store COPY in DIR, behind the store's back: the tree and checkpoints stay as they were,
 *	as an attacker with write access to the file would leave them.
 * tamper untag DIR
 *	Empty the value of every queued seq in the store in DIR, as a broker from before queue
 *	tags (kind + referral id kept with each queued seq) left them.
 * tamper synth DIR COUNT KEY ORIGIN EVERY
 *	Write a new store in DIR holding COUNT entries in the broker's format (cycles of a
 *	referral, its delivery, the broker's "received", an acceptance and a completion with
 *	an outcome), the Merkle tree, and a checkpoint signed with the private key KEY under
 *	ORIGIN every EVERY entries and at the end. Prints the time it took.
 * Exit: 0 done, 1 failed (the reason on stderr), 2 usage.
 */

static int
usage(void)
{
	fprintf(stderr, "usage: tamper flip|delete DIR SEQ | swap DIR SEQ1 SEQ2 | untag DIR |\n"
	                "       synth DIR COUNT KEY ORIGIN EVERY\n");
	return 2;
}

static int
parse_u64(const char *s, uint64_t *v)
{
	char *end;

	if (s == NULL || *s < '0' || *s > '9') {
		return -1;
	}
	*v = strtoull(s, &end, 10);
	return *end == '\0' ? 0 : -1;
}

/* ---- raw LMDB edits ---- */

static int
raw_edit(const char *op, const char *dir, uint64_t a, uint64_t b)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	MDB_val k, v, k2, v2;
	uint64_t ka = a, kb = b;
	uint8_t *ca = NULL, *cb = NULL;
	int rc;

	if ((rc = mdb_env_create(&env)) != 0 || (rc = mdb_env_set_maxdbs(env, 16)) != 0 ||
	    (rc = mdb_env_open(env, dir, 0, 0600)) != 0 ||
	    (rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, "log", MDB_INTEGERKEY, &dbi)) != 0) {
		goto out;
	}
	k.mv_data = &ka;
	k.mv_size = sizeof(ka);
	if ((rc = mdb_get(txn, dbi, &k, &v)) != 0) {
		goto out;
	}
	if (strcmp(op, "flip") == 0) {
		if ((ca = malloc(v.mv_size)) == NULL) {
			rc = ENOMEM;
			goto out;
		}
		memcpy(ca, v.mv_data, v.mv_size);
		ca[v.mv_size - 1] ^= 0x01;
		v.mv_data = ca;
		rc = mdb_put(txn, dbi, &k, &v, 0);
	} else if (strcmp(op, "delete") == 0) {
		rc = mdb_del(txn, dbi, &k, NULL);
	} else {
		k2.mv_data = &kb;
		k2.mv_size = sizeof(kb);
		if ((rc = mdb_get(txn, dbi, &k2, &v2)) != 0) {
			goto out;
		}
		ca = malloc(v.mv_size);
		cb = malloc(v2.mv_size);
		if (ca == NULL || cb == NULL) {
			rc = ENOMEM;
			goto out;
		}
		memcpy(ca, v.mv_data, v.mv_size);
		memcpy(cb, v2.mv_data, v2.mv_size);
		v.mv_data = ca;
		v2.mv_data = cb;
		if ((rc = mdb_put(txn, dbi, &k, &v2, 0)) == 0) {
			rc = mdb_put(txn, dbi, &k2, &v, 0);
		}
	}
	if (rc == 0) {
		rc = mdb_txn_commit(txn);
		txn = NULL;
	}
out:
	if (rc != 0) {
		fprintf(stderr, "tamper: %s %s: %s\n", op, dir, mdb_strerror(rc));
	}
	mdb_txn_abort(txn);
	mdb_env_close(env);
	free(ca);
	free(cb);
	return rc == 0 ? 0 : 1;
}

/* Every queued seq in the store's `queue` database loses its tag (its value). The keys are
 * collected first and rewritten after: a cursor put that changes a value's size in the middle
 * of a walk garbles the walk. */
static int
untag(const char *dir)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_dbi dbi;
	MDB_val k, v, empty = {0, NULL};
	uint8_t **keys = NULL;
	size_t *lens = NULL, n = 0, cap = 0, i;
	int rc;

	if ((rc = mdb_env_create(&env)) != 0 || (rc = mdb_env_set_maxdbs(env, 16)) != 0 ||
	    (rc = mdb_env_open(env, dir, 0, 0600)) != 0 ||
	    (rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, "queue", 0, &dbi)) != 0 ||
	    (rc = mdb_cursor_open(txn, dbi, &cur)) != 0) {
		goto out;
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (v.mv_size == 0) {
			continue;
		}
		if (n == cap) {
			size_t c = cap ? cap * 2 : 64;
			uint8_t **nk = realloc(keys, c * sizeof(*nk));
			size_t *nl = nk != NULL ? realloc(lens, c * sizeof(*nl)) : NULL;

			if (nk != NULL) {
				keys = nk;
			}
			if (nl == NULL) {
				rc = ENOMEM;
				break;
			}
			lens = nl;
			cap = c;
		}
		if ((keys[n] = malloc(k.mv_size)) == NULL) {
			rc = ENOMEM;
			break;
		}
		memcpy(keys[n], k.mv_data, k.mv_size);
		lens[n++] = k.mv_size;
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND) {
		rc = 0;
		for (i = 0; i < n && rc == 0; i++) {
			k.mv_data = keys[i];
			k.mv_size = lens[i];
			rc = mdb_put(txn, dbi, &k, &empty, 0);
		}
		if (rc == 0) {
			rc = mdb_txn_commit(txn);
			txn = NULL;
		}
	}
out:
	if (rc != 0) {
		fprintf(stderr, "tamper: untag %s: %s\n", dir, mdb_strerror(rc));
	} else {
		printf("# untag: %zu queued seqs lost their tag\n", n);
	}
	mdb_txn_abort(txn);
	mdb_env_close(env);
	for (i = 0; i < n; i++) {
		free(keys[i]);
	}
	free(keys);
	free(lens);
	return rc == 0 ? 0 : 1;
}

/* ---- synthetic stores ---- */

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

/* Entry number i (0-based) of the synthetic log, encoded with seq = i + 1. */
static int
synth_entry(uint64_t i, uint64_t t, uint8_t **buf, size_t *len)
{
	Ihala__V2__LogEntry e = IHALA__V2__LOG_ENTRY__INIT;
	Ihala__V2__Envelope env = IHALA__V2__ENVELOPE__INIT;
	Ihala__V2__Referral ref = IHALA__V2__REFERRAL__INIT;
	Ihala__V2__Survivor sur = IHALA__V2__SURVIVOR__INIT;
	Ihala__V2__Consent con = IHALA__V2__CONSENT__INIT;
	Ihala__V2__StatusUpdate su = IHALA__V2__STATUS_UPDATE__INIT;
	Ihala__V2__Outcome oc = IHALA__V2__OUTCOME__INIT;
	Ihala__V2__BrokerEvent ev = IHALA__V2__BROKER_EVENT__INIT;
	Ihala__V2__ServiceCode svc[2] = {
	    IHALA__V2__SERVICE_CODE__SERVICE_CODE_PROSTHETICS_ORTHOTICS,
	    IHALA__V2__SERVICE_CODE__SERVICE_CODE_PHYSICAL_REHABILITATION};
	char *agencies[1] = {"moh"};
	/* what the synthetic referral carries: name, birth year, governorate, needs */
	static const Ihala__V2__DataCategory cats[] = {
	    IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_IDENTITY,
	    IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_DEMOGRAPHICS,
	    IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_LOCATION,
	    IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_NEEDS};
	char msgid[48], rid[48], caseid[48];
	uint8_t *eb = NULL;
	uint64_t cyc = i / 5;
	int step = (int)(i % 5);

	snprintf(rid, sizeof(rid), "SYN-R%" PRIu64, cyc);
	snprintf(msgid, sizeof(msgid), "syn-%" PRIu64, i);
	snprintf(caseid, sizeof(caseid), "IQ-NIN-%06" PRIu64, cyc);
	e.seq = i + 1;
	e.broker_time_ms = t;
	env.message_id = msgid;
	switch (step) {
	case 0:
		sur.case_id = caseid;
		sur.name = "نور الهدى خلف حسن";
		sur.birth_year = 1990 + (uint32_t)(cyc % 20);
		sur.governorate = "Nineveh";
		con.given = 1;
		con.date = "2024-04-02";
		con.n_agencies = 1;
		con.agencies = agencies;
		con.n_data_covered = sizeof(cats) / sizeof(cats[0]);
		con.data_covered = (Ihala__V2__DataCategory *)cats;
		ref.referral_id = rid;
		ref.receiving_agency = "moh";
		ref.priority = IHALA__V2__PRIORITY__PRIORITY_NORMAL;
		ref.n_services = 2;
		ref.services = svc;
		ref.survivor = &sur;
		ref.consent = &con;
		ref.reason = "below-knee amputation, needs a prosthesis and rehabilitation";
		env.to = "moh";
		env.kind_case = IHALA__V2__ENVELOPE__KIND_REFERRAL;
		env.referral = &ref;
		e.sender = "dma";
		e.recipient = "moh";
		break;
	case 1:
		ev.referral_id = rid;
		ev.ref_seq = i;
		ev.text = "delivered";
		e.sender = "moh";
		e.recipient = "";
		e.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_DELIVERY;
		e.event = &ev;
		break;
	case 2:
		ev.referral_id = rid;
		ev.status = IHALA__V2__TASK_STATUS__TASK_STATUS_RECEIVED;
		ev.ref_seq = i - 1;
		ev.text = "received";
		e.sender = "";
		e.recipient = "dma";
		e.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_BROKER_STATUS;
		e.event = &ev;
		break;
	default:
		su.referral_id = rid;
		su.status = step == 3 ? IHALA__V2__TASK_STATUS__TASK_STATUS_ACCEPTED
		                      : IHALA__V2__TASK_STATUS__TASK_STATUS_COMPLETED;
		if (step == 4) {
			oc.service_implemented = 1;
			oc.success = 1;
			oc.n_services_delivered = 1;
			oc.services_delivered = svc;
			oc.date = "2024-05-01";
			su.outcome = &oc;
		}
		env.to = "dma";
		env.kind_case = IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE;
		env.status_update = &su;
		e.sender = "moh";
		e.recipient = "dma";
		break;
	}
	if (e.event == NULL) {
		e.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_SUBMISSION;
		e.envelope.len = ihala__v2__envelope__get_packed_size(&env);
		if ((eb = malloc(e.envelope.len)) == NULL) {
			return IHALA_ENOMEM;
		}
		ihala__v2__envelope__pack(&env, eb);
		e.envelope.data = eb;
	}
	*len = ihala__v2__log_entry__get_packed_size(&e);
	if ((*buf = malloc(*len)) == NULL) {
		free(eb);
		return IHALA_ENOMEM;
	}
	ihala__v2__log_entry__pack(&e, *buf);
	free(eb);
	return 0;
}

static int
synth(const char *dir, uint64_t count, const char *key, const char *origin, uint64_t every)
{
	struct checkpoint_signer *sg = NULL;
	struct store *s = NULL;
	struct store_wtxn *w = NULL;
	uint8_t leaf[MERKLE_HASH_LEN], root[MERKLE_HASH_LEN];
	struct timespec t0, t1;
	uint64_t i = 0, seq, t = 1714000000000ULL;
	int err;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if ((err = checkpoint_key_load(key, origin, &sg)) != 0 ||
	    (err = store_open(dir, (size_t)(count * 1536 + (64u << 20)), 0, &s)) != 0) {
		goto out;
	}
	while (i < count && err == 0) {
		uint64_t end = i + 4096 < count ? i + 4096 : count;

		if ((err = store_wbegin(s, &w)) != 0) {
			break;
		}
		for (; i < end && err == 0; i++) {
			uint8_t *buf = NULL;
			size_t len;

			t += 1000 + (i % 7) * 60000; /* minutes apart, unevenly */
			if ((err = synth_entry(i, t, &buf, &len)) == 0 &&
			    (err = store_log_append(w, buf, len, &seq)) == 0 &&
			    (err = merkle_leaf_hash(buf, len, leaf)) == 0) {
				err = merkle_append(&tops, w, seq - 1, leaf);
			}
			free(buf);
			if (err == 0 && (seq % every == 0 || seq == count)) {
				char *text = NULL;

				if ((err = merkle_root(&tops, w, seq, root)) == 0 &&
				    (err = checkpoint_sign(sg, origin, seq, root, &text)) == 0) {
					err = store_checkpoint_put(w, seq, text);
				}
				free(text);
			}
		}
		if (err == 0) {
			err = store_wcommit(w);
		} else {
			store_wabort(w);
		}
		w = NULL;
	}
out:
	clock_gettime(CLOCK_MONOTONIC, &t1);
	store_close(s);
	checkpoint_signer_free(sg);
	if (err != 0) {
		fprintf(stderr, "tamper: synth %s: %s\n", dir, ihala_strerror(err));
		return 1;
	}
	printf("# synth: %" PRIu64 " entries in %.2f s\n", count,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	return 0;
}

int
main(int argc, char **argv)
{
	uint64_t a = 0, b = 0, every = 0;

	log_init("tamper", 1);
	if (argc == 4 && (strcmp(argv[1], "flip") == 0 || strcmp(argv[1], "delete") == 0) &&
	    parse_u64(argv[3], &a) == 0) {
		return raw_edit(argv[1], argv[2], a, 0);
	}
	if (argc == 5 && strcmp(argv[1], "swap") == 0 && parse_u64(argv[3], &a) == 0 &&
	    parse_u64(argv[4], &b) == 0) {
		return raw_edit(argv[1], argv[2], a, b);
	}
	if (argc == 3 && strcmp(argv[1], "untag") == 0) {
		return untag(argv[2]);
	}
	if (argc == 7 && strcmp(argv[1], "synth") == 0 && parse_u64(argv[3], &a) == 0 &&
	    parse_u64(argv[6], &every) == 0 && every > 0) {
		return synth(argv[2], a, argv[4], argv[5], every);
	}
	return usage();
}
