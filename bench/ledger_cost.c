/* ledger_cost.c - the writer's work per referral, deterministic: the ledger alone, fixed batches.
 *
 *   ledger_cost [-n REFERRALS] [-k BATCH] [-s ENVELOPE_BYTES] DIR
 *
 * The broker's ledger (broker/ledger.c) over a fresh store in DIR (which must not exist; it is
 * removed at the end), without threads, sockets or TLS: REFERRALS referrals (default 2000)
 * from dma to moh, submitted BATCH at a time (default 64, at most 64), each batch followed by
 * moh's acks of them and dma's acks of the 'received' events these log, as in the benchmark's
 * 1-sender run (three log entries per referral: the submission, 'received' with moh's
 * delivery, the delivery of 'received' to dma). Prints KEY=VALUE lines: CPU time, bytes handed to
 * LMDB and pages used per referral, tree nodes read back. Run it under
 * `valgrind --tool=callgrind --toggle-collect=ledger_apply_batch` for instructions per
 * referral, which do not depend on the machine's other work nor on how the commits happen to
 * batch (the broker's batches follow the load). No checkpoints are signed (no key).
 */
#define _GNU_SOURCE /* nftw */
#include <ftw.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "error.h"
#include "frame.h"
#include "ihala.pb-c.h"
#include "ledger.h"
#include "log.h"
#include "store.h"

#define ROLE(x) IHALA__V2__ROLE__ROLE_##x

static const struct policy_agency agencies[] = {
    {"dma", ROLE(DMA), POLICY_KIND_REFERRAL | POLICY_KIND_STATUS | POLICY_KIND_NOTE, NULL, 0, 1},
    {"moh", ROLE(MINISTRY), POLICY_KIND_ALL, NULL, 0, 0},
};

static const struct policy_agency *
find(void *ctx, const char *id)
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

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static double
cpu_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A referral `i` from dma to moh of about `size` bytes: its clear part and a sealed part (opaque
 * bytes here: the broker never opens one) making up the rest, its SHA-256 in the envelope. */
static struct wreq *
submit_req(unsigned i, size_t size, uint64_t now)
{
	Ihala__V2__Envelope env = IHALA__V2__ENVELOPE__INIT;
	Ihala__V2__Referral ref = IHALA__V2__REFERRAL__INIT;
	Ihala__V2__Consent con = IHALA__V2__CONSENT__INIT;
	Ihala__V2__ServiceCode svc[1] = {
	    IHALA__V2__SERVICE_CODE__SERVICE_CODE_PROSTHETICS_ORTHOTICS};
	Ihala__V2__DataCategory cat[1] = {IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_NEEDS};
	char *to[1] = {"moh"};
	char mid[32], rid[32];
	struct wreq *r = wreq_new(WREQ_SUBMIT);
	size_t len;
	uint8_t md[32];

	if (r == NULL) {
		fprintf(stderr, "ledger_cost: out of memory\n");
		exit(1);
	}
	snprintf(mid, sizeof(mid), "m-%08u", i);
	snprintf(rid, sizeof(rid), "REF-2026-%08u", i);
	env.message_id = mid;
	env.to = "moh";
	env.kind_case = IHALA__V2__ENVELOPE__KIND_REFERRAL;
	env.referral = &ref;
	ref.referral_id = rid;
	ref.referring_agency = "dma";
	ref.receiving_agency = "moh";
	ref.priority = IHALA__V2__PRIORITY__PRIORITY_URGENT;
	ref.n_services = 1;
	ref.services = svc;
	con.given = 1;
	con.given_by = IHALA__V2__CONSENT_GIVER__CONSENT_GIVER_SURVIVOR;
	con.date = "2025-03-01";
	con.n_agencies = 1;
	con.agencies = to;
	con.n_data_covered = 1;
	con.data_covered = cat;
	ref.consent = &con;
	env.n_data_declared = 1;
	env.data_declared = cat;
	env.sealed_sha256.data = md;
	env.sealed_sha256.len = sizeof(md);
	len = ihala__v2__envelope__get_packed_size(&env);
	r->sealed_len = size > len ? size - len : 1;
	if ((r->sealed = malloc(r->sealed_len)) == NULL) {
		fprintf(stderr, "ledger_cost: out of memory\n");
		exit(1);
	}
	memset(r->sealed, 0x5a, r->sealed_len);
	SHA256(r->sealed, r->sealed_len, md);
	if ((r->env_bytes = malloc(len)) == NULL) {
		fprintf(stderr, "ledger_cost: out of memory\n");
		exit(1);
	}
	ihala__v2__envelope__pack(&env, r->env_bytes);
	r->env_len = len;
	if (envelope_decode(r->env_bytes, len, &r->env) != 0) {
		fprintf(stderr, "ledger_cost: the envelope does not decode (a bug)\n");
		exit(1);
	}
	snprintf(r->agency, sizeof(r->agency), "dma");
	r->now_ms = now;
	return r;
}

static void
usage(void)
{
	fprintf(stderr, "usage: ledger_cost [-n REFERRALS] [-k BATCH] [-s ENVELOPE_BYTES] DIR\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	struct writer_policy pol;
	struct ledger_params lp;
	struct store_stats st0, st1;
	struct store *s = NULL;
	struct ledger *lg = NULL;
	struct wreq **batch, *ack;
	unsigned n = 2000, k = 64, i, done = 0;
	size_t size = 1019;
	uint64_t now = 1700000000000ull;
	double t0, t = 0;
	int c;

	while ((c = getopt(argc, argv, "n:k:s:h")) != -1) {
		switch (c) {
		case 'n':
			n = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'k':
			k = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 's':
			size = strtoul(optarg, NULL, 10);
			break;
		default:
			usage();
		}
	}
	if (optind + 1 != argc || n == 0 || k == 0 || k > WREQ_MAX_ACKS) {
		usage();
	}
	log_init("ledger_cost", 1);
	log_setlevel(LOG_LEVEL_WARN);
	if (store_open(argv[optind], 0, 0, &s) != 0) {
		fprintf(stderr, "ledger_cost: cannot open a store in '%s'\n", argv[optind]);
		return 1;
	}
	memset(&pol, 0, sizeof(pol));
	pol.view.find = find;
	pol.queue_limit = 10000000;
	for (i = 0; i < 4; i++) {
		pol.deadline_ms[i] = 3600000;
	}
	memset(&lp, 0, sizeof(lp));
	lp.store = s;
	lp.policy = &pol;
	lp.origin = "ledger.cost/log";
	if (ledger_new(&lp, &lg) != 0 || (batch = calloc(k, sizeof(*batch))) == NULL ||
	    store_stat(s, &st0) != 0) {
		fprintf(stderr, "ledger_cost: cannot start\n");
		return 1;
	}
	while (done < n) {
		unsigned m = n - done < k ? n - done : k;

		for (i = 0; i < m; i++) {
			batch[i] = submit_req(done + i, size, now);
		}
		if ((ack = wreq_new(WREQ_ACK)) == NULL) {
			return 1;
		}
		t0 = cpu_s();
		if (ledger_apply_batch(lg, batch, m) != 0) {
			fprintf(stderr, "ledger_cost: a batch failed\n");
			return 1;
		}
		t += cpu_s() - t0;
		snprintf(ack->agency, sizeof(ack->agency), "moh");
		ack->now_ms = now + 1;
		for (i = 0; i < m; i++) {
			if (batch[i]->err != 0) {
				fprintf(stderr, "ledger_cost: refused: %s\n", batch[i]->text);
				return 1;
			}
			ack->acks[ack->n_acks++] = batch[i]->seq;
			wreq_free(batch[i]);
		}
		t0 = cpu_s();
		if (ledger_apply_batch(lg, &ack, 1) != 0 || ack->err != 0) {
			fprintf(stderr, "ledger_cost: an ack failed: %s\n", ack->text);
			return 1;
		}
		t += cpu_s() - t0;
		wreq_free(ack);
		/* dma takes the 'received' events, the last m entries */
		if (store_stat(s, &st1) != 0 || st1.last_seq < m ||
		    (ack = wreq_new(WREQ_ACK)) == NULL) {
			return 1;
		}
		snprintf(ack->agency, sizeof(ack->agency), "dma");
		ack->now_ms = now + 2;
		for (i = 0; i < m; i++) {
			ack->acks[ack->n_acks++] = st1.last_seq - m + 1 + i;
		}
		t0 = cpu_s();
		if (ledger_apply_batch(lg, &ack, 1) != 0 || ack->err != 0) {
			fprintf(stderr, "ledger_cost: an ack failed: %s\n", ack->text);
			return 1;
		}
		t += cpu_s() - t0;
		wreq_free(ack);
		done += m;
		now += 10;
	}
	if (store_stat(s, &st1) != 0) {
		return 1;
	}
	printf("referrals=%u\nbatch=%u\nlog_entries=%llu\n", n, k, (unsigned long long)st1.entries);
	printf("cpu_us_per_referral=%.2f\n", t * 1e6 / n);
	printf("put_bytes_per_referral=%.1f\n", (double)(st1.put_bytes - st0.put_bytes) / n);
	printf("used_bytes_per_referral=%.1f\n", (double)st1.used_bytes / n);
	printf("tree_gets=%llu\n", (unsigned long long)(st1.tree_gets - st0.tree_gets));
	ledger_free(lg);
	store_close(s);
	free(batch);
	nftw(argv[optind], rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
