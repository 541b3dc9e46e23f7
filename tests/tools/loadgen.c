/* loadgen.c - test driver: submits numbered referrals through libihala and checks the log. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clientconf.h"
#include "frame.h"
#include "ihala.h"
#include "log.h"
#include "store.h"

/*
 * loadgen submit CONFIG TO COUNT PREFIX RECEIPTS
 *	Submit COUNT referrals to TO with message ids PREFIX-0 ... and append "msgid seq" to
 *	RECEIPTS for each receipt. Keeps going through broker outages (the outbox holds what
 *	has no receipt yet) until every message has its receipt (40 tries of 3 s each).
 * loadgen queue CONFIG TO COUNT PREFIX BYTES
 *	Put COUNT referrals (as submit, each with a reason of BYTES characters) in the outbox
 *	without waiting for the broker (it is meant to be down): the outbox a node builds up.
 * loadgen flush CONFIG TIMEOUT_MS
 *	Connect and wait until the outbox is empty; prints "# outbox: N left". 0 when empty.
 * loadgen drain CONFIG COUNT IDLE_MS OUT
 *	Take deliveries (COUNT, or all until IDLE_MS of silence when COUNT is 0), write
 *	"seq msgid" lines to OUT and ack each.
 * loadgen check DATA_DIR RECEIPTS SENDER
 *	Read the broker's store (read-only, works while the broker runs): every receipted
 *	message must be in the log exactly once, at its receipted seq. Prints the counts.
 */

static int
submit_all(const char *cfgpath, const char *to, long count, const char *prefix, const char *rpath,
           long pad)
{
	struct client_config *cfg = NULL;
	struct conf_errors errs;
	struct ihala_client *c = NULL;
	FILE *rf;
	char *reason = NULL;
	long i, done = 0, refused = 0;
	int err;

	conf_errors_init(&errs);
	if (clientconf_load(cfgpath, &cfg, &errs) != 0) {
		conf_errors_print(&errs, stderr);
		return 2;
	}
	conf_errors_release(&errs);
	if (ihala_open(cfg, &c) != 0) {
		fprintf(stderr, "loadgen: cannot open the client\n");
		return 2;
	}
	rf = rpath != NULL ? fopen(rpath, "a") : NULL;
	if (rpath != NULL && rf == NULL) {
		perror(rpath);
		return 2;
	}
	if (pad > 0 && (reason = malloc((size_t)pad + 1)) != NULL) {
		memset(reason, 'x', (size_t)pad);
		reason[pad] = '\0';
	}
	for (i = 0; i < count; i++) {
		Ihala__V2__Envelope env = IHALA__V2__ENVELOPE__INIT;
		Ihala__V2__Referral ref = IHALA__V2__REFERRAL__INIT;
		Ihala__V2__Survivor sur = IHALA__V2__SURVIVOR__INIT;
		Ihala__V2__Consent con = IHALA__V2__CONSENT__INIT;
		Ihala__V2__ServiceCode svc =
		    IHALA__V2__SERVICE_CODE__SERVICE_CODE_PHYSICAL_REHABILITATION;
		char *agencies[1];
		Ihala__V2__DataCategory data[2] = {IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_IDENTITY,
		                                   IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_NEEDS};
		char msgid[64], rid[64], caseid[64];
		struct ihala_receipt rc;
		int tries = 0;

		snprintf(msgid, sizeof(msgid), "%s-%ld", prefix, i);
		snprintf(rid, sizeof(rid), "%s-R%ld", prefix, i);
		snprintf(caseid, sizeof(caseid), "CASE-%s-%ld", prefix, i);
		agencies[0] = (char *)to;
		sur.case_id = caseid;
		sur.name = "نور الهدى";
		con.given = 1;
		con.n_agencies = 1;
		con.agencies = agencies;
		con.n_data_covered = 2; /* the name; the services and reason */
		con.data_covered = data;
		ref.referral_id = rid;
		ref.receiving_agency = (char *)to;
		ref.priority = IHALA__V2__PRIORITY__PRIORITY_NORMAL;
		ref.n_services = 1;
		ref.services = &svc;
		ref.survivor = &sur;
		ref.consent = &con;
		ref.reason = reason != NULL ? reason : "load test";
		env.message_id = msgid;
		env.to = (char *)to;
		env.kind_case = IHALA__V2__ENVELOPE__KIND_REFERRAL;
		env.referral = &ref;
		if (pad >= 0 && rpath == NULL) {
			/* queue: into the outbox, the broker unreachable */
			err = ihala_submit(c, &env, 0, &rc);
			done += err == IHALA_ETIMEDOUT || err == IHALA_EUNREACHABLE;
			continue;
		}
		for (;;) {
			err = ihala_submit(c, &env, 3000, &rc);
			if (err == 0 ||
			    rc.status == IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED) {
				break;
			}
			if (++tries > 40) {
				fprintf(stderr, "loadgen: %s: no receipt after %d tries: %s\n",
				        msgid, tries, ihala_errmsg(c));
				break;
			}
		}
		if (err == 0) {
			fprintf(rf, "%s %" PRIu64 "\n", msgid, rc.seq);
			fflush(rf);
			done++;
		} else if (rc.status == IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED) {
			fprintf(stderr, "loadgen: %s refused: %s\n", msgid, rc.text);
			refused++;
		}
	}
	if (rf != NULL) {
		fclose(rf);
	}
	free(reason);
	ihala_close(c);
	clientconf_free(cfg);
	printf("# counts: %s %ld, %s %ld, refused %ld\n", rpath != NULL ? "submitted" : "queued",
	       count, rpath != NULL ? "receipted" : "kept", done, refused);
	return done == count ? 0 : 1;
}

/* Connect and wait for every receipt of the outbox. */
static int
flush(const char *cfgpath, long timeout_ms)
{
	struct client_config *cfg = NULL;
	struct conf_errors errs;
	struct ihala_client *c = NULL;
	size_t left = 0;
	int err;

	conf_errors_init(&errs);
	if (clientconf_load(cfgpath, &cfg, &errs) != 0) {
		conf_errors_print(&errs, stderr);
		return 2;
	}
	conf_errors_release(&errs);
	if (ihala_open(cfg, &c) != 0) {
		return 2;
	}
	err = ihala_flush_outbox(c, (int)timeout_ms, &left);
	if (err != 0) {
		fprintf(stderr, "loadgen: %s\n", ihala_errmsg(c));
	}
	ihala_close(c);
	clientconf_free(cfg);
	printf("# outbox: %zu left\n", left);
	return left == 0 ? 0 : 1;
}

/* Take deliveries until `count` arrived or `idle_ms` pass without one; ack each after writing
 * "seq msgid" to OUT (msgid "-" for broker-made entries). */
static int
drain(const char *cfgpath, long count, long idle_ms, const char *opath)
{
	struct client_config *cfg = NULL;
	struct conf_errors errs;
	struct ihala_client *c = NULL;
	FILE *of;
	long got = 0;
	int err = 0;

	conf_errors_init(&errs);
	if (clientconf_load(cfgpath, &cfg, &errs) != 0) {
		conf_errors_print(&errs, stderr);
		return 2;
	}
	conf_errors_release(&errs);
	if (ihala_open(cfg, &c) != 0) {
		return 2;
	}
	of = fopen(opath, "a");
	if (of == NULL) {
		perror(opath);
		return 2;
	}
	while (count <= 0 || got < count) {
		struct ihala_delivery d;

		err = ihala_next_delivery(c, (int)idle_ms, &d);
		if (err != 0) {
			break;
		}
		fprintf(of, "%" PRIu64 " %s\n", d.seq,
		        d.envelope != NULL ? d.envelope->message_id : "-");
		fflush(of);
		ihala_ack(c, d.seq);
		ihala_delivery_release(&d);
		got++;
	}
	fclose(of);
	if (err != 0 && err != IHALA_ETIMEDOUT) {
		fprintf(stderr, "loadgen: drain: %s\n", ihala_errmsg(c));
	}
	ihala_close(c);
	clientconf_free(cfg);
	printf("# counts: %ld deliveries taken\n", got);
	return err == 0 || err == IHALA_ETIMEDOUT ? 0 : 1;
}

struct logged {
	char *msgid;
	uint64_t seq;
};

static int
logged_cmp(const void *a, const void *b)
{
	return strcmp(((const struct logged *)a)->msgid, ((const struct logged *)b)->msgid);
}

/* One pass over the log (the sender's submissions, sorted by message id), then a binary search
 * per receipt: the power-cut loops check thousands of receipts after every cycle. */
static int
check_log(const char *dir, const char *rpath, const char *sender)
{
	struct store *s = NULL;
	struct store_rtxn *r = NULL;
	struct logged *subs = NULL;
	size_t n_subs = 0, cap = 0, i;
	FILE *rf;
	char line[256];
	long receipts = 0, bad = 0;
	uint64_t last = 0, seq;

	if (store_open(dir, 0, STORE_RDONLY, &s) != 0 || store_rbegin(s, &r) != 0) {
		fprintf(stderr, "loadgen: cannot read the store %s\n", dir);
		return 2;
	}
	store_log_last(r, &last);
	for (seq = 1; seq <= last; seq++) {
		const void *data;
		size_t len;
		Ihala__V2__LogEntry *e = NULL;
		Ihala__V2__Envelope *env = NULL;

		if (store_log_get(r, seq, &data, &len) != 0 ||
		    logentry_decode(data, len, &e) != 0) {
			continue;
		}
		if (e->kind == IHALA__V2__ENTRY_KIND__ENTRY_KIND_SUBMISSION &&
		    strcmp(e->sender, sender) == 0 &&
		    envelope_decode(e->envelope.data, e->envelope.len, &env) == 0) {
			if (n_subs == cap) {
				cap = cap ? cap * 2 : 1024;
				if ((subs = realloc(subs, cap * sizeof(*subs))) == NULL) {
					fprintf(stderr, "loadgen: out of memory\n");
					return 2;
				}
			}
			subs[n_subs].msgid = strdup(env->message_id);
			subs[n_subs].seq = seq;
			if (subs[n_subs].msgid == NULL) {
				fprintf(stderr, "loadgen: out of memory\n");
				return 2;
			}
			n_subs++;
		}
		envelope_free(env);
		logentry_free(e);
	}
	store_rend(r);
	store_close(s);
	if (n_subs > 0) {
		qsort(subs, n_subs, sizeof(*subs), logged_cmp);
	}
	rf = fopen(rpath, "r");
	if (rf == NULL) {
		perror(rpath);
		return 2;
	}
	while (fgets(line, sizeof(line), rf) != NULL) {
		char msgid[128];
		unsigned long long rseq;
		struct logged key = {msgid, 0}, *hit;
		uint64_t found = 0, n = 0;

		if (sscanf(line, "%127s %llu", msgid, &rseq) != 2) {
			continue;
		}
		receipts++;
		/* Exactly once: every log entry of this sender with this message id. */
		hit = n_subs > 0 ? bsearch(&key, subs, n_subs, sizeof(*subs), logged_cmp) : NULL;
		if (hit != NULL) {
			while (hit > subs && strcmp(hit[-1].msgid, msgid) == 0) {
				hit--;
			}
			for (; hit < subs + n_subs && strcmp(hit->msgid, msgid) == 0; hit++) {
				n++;
				found = hit->seq;
			}
		}
		if (n != 1 || found != rseq) {
			fprintf(
			    stderr,
			    "loadgen: %s receipted at seq %llu found %llu time(s) (last at %llu)\n",
			    msgid, rseq, (unsigned long long)n, (unsigned long long)found);
			bad++;
		}
	}
	fclose(rf);
	for (i = 0; i < n_subs; i++) {
		free(subs[i].msgid);
	}
	free(subs);
	printf("# counts: %ld receipts checked, %llu log entries, %ld not exactly once\n", receipts,
	       (unsigned long long)last, bad);
	return bad == 0 && receipts > 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
	log_setlevel(LOG_LEVEL_WARN);
	if (argc == 7 && strcmp(argv[1], "submit") == 0) {
		return submit_all(argv[2], argv[3], strtol(argv[4], NULL, 10), argv[5], argv[6],
		                  -1);
	}
	if (argc == 7 && strcmp(argv[1], "queue") == 0) {
		return submit_all(argv[2], argv[3], strtol(argv[4], NULL, 10), argv[5], NULL,
		                  strtol(argv[6], NULL, 10));
	}
	if (argc == 4 && strcmp(argv[1], "flush") == 0) {
		return flush(argv[2], strtol(argv[3], NULL, 10));
	}
	if (argc == 6 && strcmp(argv[1], "drain") == 0) {
		return drain(argv[2], strtol(argv[3], NULL, 10), strtol(argv[4], NULL, 10),
		             argv[5]);
	}
	if (argc == 5 && strcmp(argv[1], "check") == 0) {
		return check_log(argv[2], argv[3], argv[4]);
	}
	fprintf(stderr, "usage: loadgen submit CONFIG TO COUNT PREFIX RECEIPTS\n"
	                "       loadgen queue CONFIG TO COUNT PREFIX BYTES\n"
	                "       loadgen flush CONFIG TIMEOUT_MS\n"
	                "       loadgen drain CONFIG COUNT IDLE_MS OUT\n"
	                "       loadgen check DATA_DIR RECEIPTS SENDER\n");
	return 2;
}
