/* mkseeds.c - writes the seed corpora of the fuzz targets (tests/fuzz/corpus/NAME/). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "checkpoint.h"
#include "error.h"
#include "frame.h"
#include "fuzz.h"
#include "ihala.pb-c.h"
#include "log.h"
#include "merkle.h"
#include "pbjson.h"
#include "personal.h"

/*
 * mkseeds OUTDIR ROOT
 *	Writes OUTDIR/NAME/SEED for each fuzz target NAME: valid frames of every kind,
 *	envelopes of every kind with the control bytes that make the policy
 *	allow them, the JSON examples of ROOT/config/examples, the broker config example and
 *	the test config, real checkpoints and notes of the fuzz test key, and inclusion and
 *	consistency proof vectors of real trees. Deterministic: running it again writes the
 *	same files. `make fuzz-seeds` runs it into tests/fuzz/corpus.
 */

static const char *outdir;
static const char *rootdir;
static int nwritten;

/* It is a build-time tool: failure to write is fatal. */
static void
die(const char *what)
{
	fprintf(stderr, "mkseeds: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void
put2(const char *target, const char *name, const void *a, size_t alen, const void *b, size_t blen)
{
	char path[512];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", outdir, target);
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		die(path);
	}
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
	if ((fp = fopen(path, "wb")) == NULL) {
		die(path);
	}
	if ((alen > 0 && fwrite(a, 1, alen, fp) != alen) ||
	    (blen > 0 && fwrite(b, 1, blen, fp) != blen) || fclose(fp) != 0) {
		die(path);
	}
	nwritten++;
}

static void
put(const char *target, const char *name, const void *a, size_t alen)
{
	put2(target, name, a, alen, NULL, 0);
}

static uint8_t *
pack(const ProtobufCMessage *m, size_t *len)
{
	uint8_t *b;

	*len = protobuf_c_message_get_packed_size(m);
	if ((b = malloc(*len + 1)) == NULL) {
		die("pack");
	}
	protobuf_c_message_pack(m, b);
	return b;
}

static char *
slurp(const char *rel, size_t *len)
{
	char path[512];
	FILE *fp;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/%s", rootdir, rel);
	if ((fp = fopen(path, "rb")) == NULL || fseek(fp, 0, SEEK_END) != 0 ||
	    (n = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) != 0) {
		die(path);
	}
	if ((buf = malloc((size_t)n + 1)) == NULL || fread(buf, 1, (size_t)n, fp) != (size_t)n) {
		die(path);
	}
	fclose(fp);
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

/* ---- envelopes ---- */

static char *agencies_moh[] = {"moh"};
/* What the seeds' referrals carry: name, sex and birth year, governorate, functioning,
 * injury, services and reason. */
static const Ihala__V2__DataCategory cats[] = {IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_IDENTITY,
                                               IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_DEMOGRAPHICS,
                                               IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_LOCATION,
                                               IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_FUNCTIONING,
                                               IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_INJURY,
                                               IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_NEEDS};
static Ihala__V2__ServiceCode services[] = {
    IHALA__V2__SERVICE_CODE__SERVICE_CODE_PHYSICAL_REHABILITATION,
    IHALA__V2__SERVICE_CODE__SERVICE_CODE_PSYCHOSOCIAL_SUPPORT,
};

/* Fills env with a valid referral dma -> moh (pointers into static storage and `parts`). */
struct referral_parts {
	Ihala__V2__Referral ref;
	Ihala__V2__Survivor sur;
	Ihala__V2__Consent con;
	Ihala__V2__Injury inj;
	Ihala__V2__WashingtonGroup wg;
	Ihala__V2__Contact officer;
};

static void
make_referral(Ihala__V2__Envelope *env, struct referral_parts *p, const char *parent)
{
	static char *codes[] = {"T93.6"};
	static Ihala__V2__Amputation amps[] = {
	    IHALA__V2__AMPUTATION__AMPUTATION_LEG_RIGHT_BELOW_KNEE};

	ihala__v2__referral__init(&p->ref);
	ihala__v2__survivor__init(&p->sur);
	ihala__v2__consent__init(&p->con);
	ihala__v2__injury__init(&p->inj);
	ihala__v2__washington_group__init(&p->wg);
	ihala__v2__contact__init(&p->officer);
	p->inj.incident_date = "2024-03-02";
	p->inj.device_type = IHALA__V2__DEVICE_TYPE__DEVICE_TYPE_LANDMINE_AP;
	p->inj.n_injury_codes = 1;
	p->inj.injury_codes = codes;
	p->inj.n_amputations = 1;
	p->inj.amputations = amps;
	p->wg.walking = IHALA__V2__DIFFICULTY__DIFFICULTY_A_LOT;
	p->sur.case_id = "IQ-NIN-2024-0042";
	p->sur.name = "نور الهدى";
	p->sur.sex = IHALA__V2__SEX__SEX_FEMALE;
	p->sur.birth_year = 1991;
	p->sur.governorate = "Ninewa";
	p->sur.injury = &p->inj;
	p->sur.functioning = &p->wg;
	p->con.given = 1;
	p->con.given_by = IHALA__V2__CONSENT_GIVER__CONSENT_GIVER_SURVIVOR;
	p->con.date = "2024-04-01";
	p->con.n_agencies = 1;
	p->con.agencies = agencies_moh;
	p->con.n_data_covered = sizeof(cats) / sizeof(cats[0]);
	p->con.data_covered = (Ihala__V2__DataCategory *)cats;
	p->officer.name = "Layla";
	p->officer.email = "va@dma.example";
	p->ref.referral_id = "R-0001";
	p->ref.parent_referral_id = (char *)(parent != NULL ? parent : "");
	p->ref.receiving_agency = "moh";
	p->ref.priority = IHALA__V2__PRIORITY__PRIORITY_URGENT;
	p->ref.n_services = 2;
	p->ref.services = services;
	p->ref.reason = "needs a prosthesis";
	p->ref.survivor = &p->sur;
	p->ref.consent = &p->con;
	p->ref.referring_officer = &p->officer;
	p->ref.created_time_ms = 1712000000000ull;
	env->message_id = "m-0001";
	env->to = "moh";
	env->client_time_ms = 1712000000123ull;
	env->kind_case = IHALA__V2__ENVELOPE__KIND_REFERRAL;
	env->referral = &p->ref;
}

/* Envelope seeds: 4 control bytes (fuzz_envelope.c) + the envelope. Also their JSON for pbjson. */
static void
envelope_seed(const char *name, const uint8_t ctl[4], const Ihala__V2__Envelope *env)
{
	uint8_t *b;
	size_t len;
	char *json = NULL, jname[128];
	uint8_t t = 1; /* Envelope in fuzz_pbjson */

	b = pack(&env->base, &len);
	put2("envelope", name, ctl, 4, b, len);
	if (personal_kind(env)) {
		/* fuzz_personal: the clear part's length and bytes, then the Sealed content */
		uint8_t *clear = NULL, *sealed = NULL, *both, hdr[2];
		size_t clen = 0, slen = 0;

		if (personal_clear(env, NULL, &clear, &clen) != 0 ||
		    personal_split(env, "dma", &sealed, &slen) != 0 || clen > 0xffff ||
		    (both = malloc(clen + slen + 1)) == NULL) {
			errno = EINVAL;
			die("personal seed");
		}
		hdr[0] = (uint8_t)(clen >> 8);
		hdr[1] = (uint8_t)clen;
		memcpy(both, clear, clen);
		if (slen > 0) {
			memcpy(both + clen, sealed, slen);
		}
		put2("personal", name, hdr, 2, both, clen + slen);
		free(both);
		free(clear);
		free(sealed);
	}
	if (pbjson_to_string(&env->base, 0, &json) == 0) {
		snprintf(jname, sizeof(jname), "envelope-%s", name);
		put2("pbjson", jname, &t, 1, json, strlen(json));
		free(json);
	}
	free(b);
}

static void
envelopes(void)
{
	/* sender dma(0) or moh(1); bit 3 current state; byte 2 referrer dma(0), recipient moh(1) */
	static const uint8_t new_by_dma[4] = {0x00, 0x00, 0x10, 0x00};
	static const uint8_t onward_by_moh[4] = {0x11, 0x00, 0x10, 0x13};
	static const struct {
		const char *name;
		Ihala__V2__TaskStatus from, to;
		int by_referrer;
		int outcome;
		Ihala__V2__ReasonCode reason;
	} updates[] = {
	    {"accept", IHALA__V2__TASK_STATUS__TASK_STATUS_RECEIVED,
	     IHALA__V2__TASK_STATUS__TASK_STATUS_ACCEPTED, 0, 0, 0},
	    {"reject", IHALA__V2__TASK_STATUS__TASK_STATUS_REQUESTED,
	     IHALA__V2__TASK_STATUS__TASK_STATUS_DECLINED, 0, 0,
	     IHALA__V2__REASON_CODE__REASON_CODE_NO_CAPACITY},
	    {"progress", IHALA__V2__TASK_STATUS__TASK_STATUS_ACCEPTED,
	     IHALA__V2__TASK_STATUS__TASK_STATUS_IN_PROGRESS, 0, 0, 0},
	    {"hold", IHALA__V2__TASK_STATUS__TASK_STATUS_IN_PROGRESS,
	     IHALA__V2__TASK_STATUS__TASK_STATUS_ON_HOLD, 0, 0, 0},
	    {"complete", IHALA__V2__TASK_STATUS__TASK_STATUS_IN_PROGRESS,
	     IHALA__V2__TASK_STATUS__TASK_STATUS_COMPLETED, 0, 1, 0},
	    {"fail", IHALA__V2__TASK_STATUS__TASK_STATUS_ON_HOLD,
	     IHALA__V2__TASK_STATUS__TASK_STATUS_FAILED, 0, 2, 0},
	    {"cancel", IHALA__V2__TASK_STATUS__TASK_STATUS_RECEIVED,
	     IHALA__V2__TASK_STATUS__TASK_STATUS_CANCELLED, 1, 0,
	     IHALA__V2__REASON_CODE__REASON_CODE_CLIENT_DECLINED},
	    {"bad-transition", IHALA__V2__TASK_STATUS__TASK_STATUS_COMPLETED,
	     IHALA__V2__TASK_STATUS__TASK_STATUS_IN_PROGRESS, 0, 0, 0},
	};
	static Ihala__V2__ReasonCode why_not[] = {IHALA__V2__REASON_CODE__REASON_CODE_OTHER};
	Ihala__V2__Envelope env;
	struct referral_parts rp;
	Ihala__V2__StatusUpdate su;
	Ihala__V2__Outcome oc;
	Ihala__V2__Note note;
	uint8_t ctl[4];
	char name[64];
	size_t i;

	ihala__v2__envelope__init(&env);
	make_referral(&env, &rp, NULL);
	envelope_seed("referral-new", new_by_dma, &env);
	env.from = "dma";
	envelope_seed("referral-from", new_by_dma, &env);
	env.from = "";
	ihala__v2__envelope__init(&env);
	make_referral(&env, &rp, "R-0000");
	env.to = "molsa";
	rp.ref.receiving_agency = "molsa";
	agencies_moh[0] = "molsa";
	envelope_seed("referral-onward", onward_by_moh, &env);
	agencies_moh[0] = "moh";

	for (i = 0; i < sizeof(updates) / sizeof(updates[0]); i++) {
		ihala__v2__envelope__init(&env);
		ihala__v2__status_update__init(&su);
		ihala__v2__outcome__init(&oc);
		env.message_id = "m-0002";
		env.kind_case = IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE;
		env.status_update = &su;
		su.referral_id = "R-0001";
		su.status = updates[i].to;
		su.business_status = "appointment scheduled";
		su.reason_code = updates[i].reason;
		su.note = "ملاحظة";
		if (updates[i].outcome != 0) {
			oc.service_implemented = updates[i].outcome == 1;
			oc.success = updates[i].outcome == 1;
			oc.date = "2024-06-18";
			oc.n_services_delivered = 1;
			oc.services_delivered = services;
			if (updates[i].outcome == 2) {
				oc.n_not_successful_reasons = 1;
				oc.not_successful_reasons = why_not;
			}
			su.outcome = &oc;
		}
		ctl[0] = (uint8_t)((updates[i].by_referrer ? 0 : 1) | 0x08);
		ctl[1] = (uint8_t)updates[i].from;
		ctl[2] = 0x10;
		ctl[3] = 0;
		snprintf(name, sizeof(name), "status-%s", updates[i].name);
		envelope_seed(name, ctl, &env);
	}

	ihala__v2__envelope__init(&env);
	ihala__v2__outcome__init(&oc);
	env.message_id = "m-0003";
	env.to = "dma";
	env.kind_case = IHALA__V2__ENVELOPE__KIND_OUTCOME;
	env.outcome = &oc;
	oc.referral_id = "R-0001";
	oc.service_implemented = 1;
	oc.n_services_delivered = 2;
	oc.services_delivered = services;
	oc.date = "2024-06-18";
	oc.success = 1;
	oc.follow_up_needed = 1;
	oc.notes = "تم تركيب طرف صناعي";
	ctl[0] = 0x09;
	ctl[1] = IHALA__V2__TASK_STATUS__TASK_STATUS_IN_PROGRESS;
	ctl[2] = 0x10;
	ctl[3] = 0;
	envelope_seed("outcome", ctl, &env);

	ihala__v2__envelope__init(&env);
	ihala__v2__note__init(&note);
	env.message_id = "m-0004";
	env.kind_case = IHALA__V2__ENVELOPE__KIND_NOTE;
	env.note = &note;
	note.referral_id = "R-0001";
	note.text = "called the survivor; appointment confirmed";
	ctl[0] = 0x08;
	ctl[1] = IHALA__V2__TASK_STATUS__TASK_STATUS_COMPLETED;
	envelope_seed("note", ctl, &env);
}

/* ---- frames ---- */

static void
frame_seed(const char *name, const Ihala__V2__Frame *f)
{
	uint8_t *b, ctl = 0x02; /* the control byte fuzz_frame skips */
	size_t len;

	if (frame_encode(f, &b, &len) != 0) {
		fprintf(stderr, "mkseeds: frame %s does not encode\n", name);
		exit(1);
	}
	put2("frame", name, &ctl, 1, b, len);
	free(b);
}

static void
frames(const char *checkpoint_text)
{
	Ihala__V2__Frame f;
	Ihala__V2__Welcome w = IHALA__V2__WELCOME__INIT;
	Ihala__V2__Limits lim = IHALA__V2__LIMITS__INIT;
	Ihala__V2__Submit sub = IHALA__V2__SUBMIT__INIT;
	Ihala__V2__Receipt rc = IHALA__V2__RECEIPT__INIT;
	Ihala__V2__Deliver dl = IHALA__V2__DELIVER__INIT;
	Ihala__V2__DeliveryAck ack = IHALA__V2__DELIVERY_ACK__INIT;
	Ihala__V2__Query q = IHALA__V2__QUERY__INIT;
	Ihala__V2__ReferralState st = IHALA__V2__REFERRAL_STATE__INIT;
	Ihala__V2__HistoryItem hi = IHALA__V2__HISTORY_ITEM__INIT, *hip = &hi;
	Ihala__V2__ReplayRequest rr = IHALA__V2__REPLAY_REQUEST__INIT;
	Ihala__V2__LogEntries les = IHALA__V2__LOG_ENTRIES__INIT;
	Ihala__V2__LogRecord rec = IHALA__V2__LOG_RECORD__INIT, *recp = &rec;
	Ihala__V2__ProofRequest pr = IHALA__V2__PROOF_REQUEST__INIT;
	Ihala__V2__InclusionProof ip = IHALA__V2__INCLUSION_PROOF__INIT;
	Ihala__V2__ConsistencyProof cp = IHALA__V2__CONSISTENCY_PROOF__INIT;
	Ihala__V2__CheckpointRequest cr = IHALA__V2__CHECKPOINT_REQUEST__INIT;
	Ihala__V2__CheckpointNote cn = IHALA__V2__CHECKPOINT_NOTE__INIT;
	Ihala__V2__Error er = IHALA__V2__ERROR__INIT;
	Ihala__V2__LogEntry le = IHALA__V2__LOG_ENTRY__INIT, ev = IHALA__V2__LOG_ENTRY__INIT;
	Ihala__V2__BrokerEvent bev = IHALA__V2__BROKER_EVENT__INIT;
	Ihala__V2__Envelope env = IHALA__V2__ENVELOPE__INIT;
	struct referral_parts rp;
	uint8_t hash[32], *envb, *leb, *evb;
	size_t envlen, lelen, evlen;
	ProtobufCBinaryData path[3];
	int i;

	for (i = 0; i < 32; i++) {
		hash[i] = (uint8_t)(i * 7 + 1);
	}
	for (i = 0; i < 3; i++) {
		path[i].data = hash;
		path[i].len = sizeof(hash);
	}
	make_referral(&env, &rp, NULL);
	envb = pack(&env.base, &envlen);
	le.seq = 7;
	le.broker_time_ms = 1712000000456ull;
	le.sender = "dma";
	le.recipient = "moh";
	le.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_SUBMISSION;
	le.envelope.data = envb;
	le.envelope.len = envlen;
	leb = pack(&le.base, &lelen);
	ev.seq = 8;
	ev.broker_time_ms = 1712000000789ull;
	ev.sender = "moh";
	ev.recipient = "dma";
	ev.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_BROKER_STATUS;
	ev.event = &bev;
	bev.referral_id = "R-0001";
	bev.status = IHALA__V2__TASK_STATUS__TASK_STATUS_RECEIVED;
	bev.ref_seq = 7;
	bev.text = "delivered";
	evb = pack(&ev.base, &evlen);

#define FRAME(kind, field, val)                                                                    \
	do {                                                                                       \
		ihala__v2__frame__init(&f);                                                        \
		f.kind_case = IHALA__V2__FRAME__KIND_##kind;                                       \
		f.field = (val);                                                                   \
	} while (0)

	w.agency_id = "moh";
	w.role = IHALA__V2__ROLE__ROLE_MINISTRY;
	w.broker_time_ms = 1712000000000ull;
	lim.max_frame_bytes = 1048576;
	lim.credit_window = 64;
	lim.max_inflight = 256;
	w.limits = &lim;
	w.checkpoint = (char *)checkpoint_text;
	w.broker_version = "ihala-broker 0.1.0";
	w.protocol_version = 2;
	FRAME(WELCOME, welcome, &w);
	frame_seed("welcome", &f);
	sub.envelope.data = envb;
	sub.envelope.len = envlen;
	FRAME(SUBMIT, submit, &sub);
	frame_seed("submit", &f);
	rc.message_id = "m-0001";
	rc.seq = 7;
	rc.leaf_hash.data = hash;
	rc.leaf_hash.len = sizeof(hash);
	rc.status = IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED;
	FRAME(RECEIPT, receipt, &rc);
	frame_seed("receipt", &f);
	dl.seq = 7;
	dl.entry.data = leb;
	dl.entry.len = lelen;
	FRAME(DELIVER, deliver, &dl);
	frame_seed("deliver", &f);
	dl.seq = 8;
	dl.entry.data = evb;
	dl.entry.len = evlen;
	frame_seed("deliver-event", &f);
	ack.seq = 7;
	FRAME(DELIVERY_ACK, delivery_ack, &ack);
	frame_seed("delivery-ack", &f);
	q.request_id = 1;
	q.referral_id = "R-0001";
	FRAME(QUERY, query, &q);
	frame_seed("query", &f);
	st.request_id = 1;
	st.referral_id = "R-0001";
	st.referrer = "dma";
	st.recipient = "moh";
	st.status = IHALA__V2__TASK_STATUS__TASK_STATUS_RECEIVED;
	st.priority = IHALA__V2__PRIORITY__PRIORITY_URGENT;
	st.deadline_ms = 1712259200000ull;
	hi.seq = 7;
	hi.time_ms = 1712000000456ull;
	hi.agency = "dma";
	hi.status = IHALA__V2__TASK_STATUS__TASK_STATUS_REQUESTED;
	hi.what = "referral";
	st.n_history = 1;
	st.history = &hip;
	FRAME(REFERRAL_STATE, referral_state, &st);
	frame_seed("referral-state", &f);
	rr.request_id = 2;
	rr.from_seq = 1;
	rr.follow = 1;
	FRAME(REPLAY_REQUEST, replay_request, &rr);
	frame_seed("replay-request", &f);
	les.request_id = 2;
	rec.seq = 7;
	rec.entry.data = leb;
	rec.entry.len = lelen;
	les.n_records = 1;
	les.records = &recp;
	les.done = 1;
	FRAME(LOG_ENTRIES, log_entries, &les);
	frame_seed("log-entries", &f);
	pr.request_id = 3;
	pr.target_case = IHALA__V2__PROOF_REQUEST__TARGET_MESSAGE_ID;
	pr.message_id = "m-0001";
	pr.tree_size = 10;
	pr.consistency_from = 4;
	FRAME(PROOF_REQUEST, proof_request, &pr);
	frame_seed("proof-request", &f);
	ip.request_id = 3;
	ip.seq = 7;
	ip.leaf_index = 6;
	ip.tree_size = 10;
	ip.leaf_hash.data = hash;
	ip.leaf_hash.len = sizeof(hash);
	ip.n_path = 3;
	ip.path = path;
	ip.checkpoint = (char *)checkpoint_text;
	FRAME(INCLUSION_PROOF, inclusion_proof, &ip);
	frame_seed("inclusion-proof", &f);
	cp.request_id = 3;
	cp.size1 = 4;
	cp.size2 = 10;
	cp.n_path = 3;
	cp.path = path;
	cp.checkpoint = (char *)checkpoint_text;
	FRAME(CONSISTENCY_PROOF, consistency_proof, &cp);
	frame_seed("consistency-proof", &f);
	cr.request_id = 4;
	FRAME(CHECKPOINT_REQUEST, checkpoint_request, &cr);
	frame_seed("checkpoint-request", &f);
	cn.request_id = 4;
	cn.text = (char *)checkpoint_text;
	FRAME(CHECKPOINT, checkpoint, &cn);
	frame_seed("checkpoint", &f);
	er.code = IHALA__V2__ERROR_CODE__ERROR_CODE_INVALID_TRANSITION;
	er.message = "referral 'R-0001' is completed; it cannot become in-progress";
	er.request_id = 1;
	FRAME(ERROR, error, &er);
	frame_seed("error", &f);
	{
		Ihala__V2__DirectoryRequest dq = IHALA__V2__DIRECTORY_REQUEST__INIT;
		Ihala__V2__Directory dd = IHALA__V2__DIRECTORY__INIT;
		Ihala__V2__AgencyCerts ac = IHALA__V2__AGENCY_CERTS__INIT;
		Ihala__V2__AgencyCerts *acp = &ac;
		ProtobufCBinaryData der = {sizeof(hash), hash};

		dq.request_id = 5;
		dq.agency = "moh";
		FRAME(DIRECTORY_REQUEST, directory_request, &dq);
		frame_seed("directory-request", &f);
		ac.agency = "moh";
		ac.n_cert_der = 1;
		ac.cert_der = &der;
		dd.request_id = 5;
		dd.n_agencies = 1;
		dd.agencies = &acp;
		FRAME(DIRECTORY, directory, &dd);
		frame_seed("directory", &f);
	}
#undef FRAME

	free(envb);
	free(leb);
	free(evb);
}

/* ---- pbjson ---- */

static void
json_examples(void)
{
	static const struct {
		const char *file;
		uint8_t type;
	} ex[] = {
	    {"config/examples/referral.json", 0},
	    {"config/examples/outcome.json", 4},
	    {"config/examples/status.json", 5},
	};
	size_t i, len;

	for (i = 0; i < sizeof(ex) / sizeof(ex[0]); i++) {
		char *text = slurp(ex[i].file, &len), name[64];
		const char *base = strrchr(ex[i].file, '/') + 1;

		snprintf(name, sizeof(name), "example-%s", base);
		put2("pbjson", name, &ex[i].type, 1, text, len);
		free(text);
	}
	{
		/* proto names, enum numbers and full names, 64-bit strings, base64 bytes */
		static const char t1[] =
		    "\x01{\"message_id\":\"m-1\",\"to\":\"moh\",\"client_time_ms\":"
		    "\"18446744073709551615\",\"note\":{\"referral_id\":\"R-1\","
		    "\"text\":\"\\u0646\\u0648\\u0631\"}}";
		static const char t2[] = "\x06{\"submit\":{\"envelope\":\"CgNtLTESA21vaA==\"}}";
		static const char t3[] =
		    "\x06{\"submit\":{\"envelope\":{\"messageId\":\"m-2\",\"to\":"
		    "\"moh\",\"note\":{\"referralId\":\"R-1\",\"text\":\"x\"}}}}";
		static const char t4[] =
		    "\x05{\"referralId\":\"R-1\",\"status\":\"TASK_STATUS_DECLINED\","
		    "\"reasonCode\":3,\"note\":null}";
		static const char t5[] = "\x07{\"seq\":\"7\",\"kind\":\"submission\",\"envelope\":"
		                         "{\"messageId\":\"m\",\"note\":{\"referralId\":\"R\"}}}";

		put("pbjson", "proto-names", t1, sizeof(t1) - 1);
		put("pbjson", "frame-submit-base64", t2, sizeof(t2) - 1);
		put("pbjson", "frame-submit-object", t3, sizeof(t3) - 1);
		put("pbjson", "status-enum-forms", t4, sizeof(t4) - 1);
		put("pbjson", "logentry", t5, sizeof(t5) - 1);
	}
}

/* ---- config ---- */

static void
configs(void)
{
	static const char test_conf[] =
	    "[broker]\nlisten = tcp://127.0.0.1:7450\ndata_dir = data\nlog_level = debug\n"
	    "log_origin = ihala.test/log\nmap_size = 16M\nmap_size_max = 1G\nauto_grow = yes\n\n"
	    "[tls]\nca_file = pki/ca.pem\ncrl_file = pki/ca.crl\ncert_file = pki/broker.pem\n"
	    "key_file = pki/broker.key\nserver_name = localhost\n\n"
	    "[limits]\nmax_frame = 64K\nmax_sessions = 100\nmax_preauth_sessions = 10\n"
	    "handshake_timeout = 5s\nqueue_limit = 30\ncredit_window = 8\nmax_inflight = 16\n"
	    "out_cap = 1M\nidle_timeout = 10m\n\n"
	    "[commit]\nmax_batch = 64\n\n"
	    "[checkpoint]\nkey_file = pki/checkpoint.key\nevery_entries = 10\nevery_seconds = "
	    "1s\n\n"
	    "[deadlines]\nemergency = 24h\nurgent = 3d\nnormal = 14d\n\n"
	    "[agency.dma]\nrole = dma\nname = \"دائرة شؤون الألغام\"\n\n"
	    "[agency.moh]\nrole = ministry\ncn = moh\nmay_send_to = dma, molsa\n\n"
	    "[agency.molsa]\nrole = ministry\nmay_send = status, note\n\n"
	    "[agency.hi]\nrole = ngo\nfingerprint = "
	    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n\n"
	    "[agency.auditor]\nrole = auditor\n";
	static const char bad_conf[] = "[broker]\nlistn = tcp://127.0.0.1:7450\nmap_size = 12Q\n"
	                               "[agency.Bad Id]\nrole = king\n[tls]\n[tls]\n";
	size_t len;
	char *ex = slurp("config/broker.conf.example", &len);

	put("config", "broker.conf.example", ex, len);
	free(ex);
	put("config", "test.conf", test_conf, sizeof(test_conf) - 1);
	put("config", "bad.conf", bad_conf, sizeof(bad_conf) - 1);
}

/* ---- checkpoints ---- */

static struct checkpoint_signer *
fuzz_signer(void)
{
	struct checkpoint_signer *s = NULL;
	EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, fuzz_ed25519_seed,
	                                              sizeof(fuzz_ed25519_seed));

	if (pkey == NULL || checkpoint_signer_from_pkey(pkey, FUZZ_KEY_NAME, &s) != 0) {
		fprintf(stderr, "mkseeds: no signer\n");
		exit(1);
	}
	EVP_PKEY_free(pkey);
	return s;
}

static char *
checkpoints(void)
{
	struct checkpoint_signer *s = fuzz_signer();
	struct checkpoint_verifier *v = NULL;
	uint8_t root[32], m = 0;
	char *text = NULL, *vkey = NULL, *first = NULL;
	static const uint64_t sizes[] = {1, 10, 4096, 18446744073709551615ull};
	size_t i;

	merkle_empty_root(root);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char name[64];

		root[0] = (uint8_t)i;
		if (checkpoint_sign(s, FUZZ_KEY_NAME, sizes[i], root, &text) != 0) {
			fprintf(stderr, "mkseeds: cannot sign\n");
			exit(1);
		}
		snprintf(name, sizeof(name), "checkpoint-%zu", i);
		m = 0;
		put2("checkpoint", name, &m, 1, text, strlen(text));
		/* the body alone, for the body mode */
		m = 4;
		snprintf(name, sizeof(name), "body-%zu", i);
		put2("checkpoint", name, &m, 1, text, (size_t)(strstr(text, "\n\n") - text + 1));
		if (first == NULL) {
			first = text;
		} else {
			free(text);
		}
	}
	{
		/* a note with an extension line and a second, foreign signature line */
		static const char body[] =
		    FUZZ_KEY_NAME "\n3\n"
		                  "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nextension\n";
		char *ext = NULL, *two;

		if (checkpoint_note_sign(s, body, sizeof(body) - 1, &ext) != 0) {
			exit(1);
		}
		m = 1;
		put2("checkpoint", "checkpoint-extension", &m, 1, ext, strlen(ext));
		if (asprintf(&two,
		             "%s\xe2\x80\x94 other.example/log AAAAAAAAAAAAAAAAAAAAAAAAAAAA"
		             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
		             ext) < 0) {
			exit(1);
		}
		put2("checkpoint", "checkpoint-two-signatures", &m, 1, two, strlen(two));
		free(two);
		free(ext);
	}
	if (checkpoint_verifier_from_signer(s, &v) != 0 ||
	    checkpoint_verifier_string(v, &vkey) != 0) {
		exit(1);
	}
	m = 5;
	put2("checkpoint", "vkey", &m, 1, vkey, strlen(vkey));
	{
		uint8_t in[1 + 8 + 32 + sizeof(FUZZ_KEY_NAME) - 1];

		in[0] = 6;
		memset(in + 1, 0, 8);
		in[8] = 42;
		memcpy(in + 9, root, 32);
		memcpy(in + 41, FUZZ_KEY_NAME, sizeof(FUZZ_KEY_NAME) - 1);
		put("checkpoint", "sign", in, sizeof(in));
	}
	free(vkey);
	checkpoint_verifier_free(v);
	checkpoint_signer_free(s);
	return first;
}

/* ---- merkle ---- */

#define TREE_MAX 64
static uint8_t nodes[8][TREE_MAX][32];

static int
get_node(void *ctx, unsigned level, uint64_t index, uint8_t out[32])
{
	(void)ctx;
	if (level >= 8 || index >= TREE_MAX) {
		return IHALA_ENOTFOUND;
	}
	memcpy(out, nodes[level][index], 32);
	return 0;
}

static int
put_node(void *ctx, unsigned level, uint64_t index, const uint8_t hash[32])
{
	(void)ctx;
	memcpy(nodes[level][index], hash, 32);
	return 0;
}

static void
be64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static void
proofs(void)
{
	static const struct merkle_store_ops ops = {get_node, put_node};
	static const struct {
		uint64_t n, index, size1;
	} vec[] = {{1, 0, 1}, {2, 1, 1},   {3, 2, 2},   {7, 3, 4},
	           {8, 5, 3}, {13, 12, 6}, {64, 33, 63}};
	uint8_t path[MERKLE_MAX_PATH][32], buf[1 + 24 + 96 + MERKLE_MAX_PATH * 32];
	uint64_t i;
	size_t k, plen;

	for (i = 0; i < TREE_MAX; i++) {
		uint8_t leaf[32], d[8];

		be64(d, i);
		merkle_leaf_hash(d, sizeof(d), leaf);
		if (merkle_append(&ops, NULL, i, leaf) != 0) {
			exit(1);
		}
	}
	for (k = 0; k < sizeof(vec) / sizeof(vec[0]); k++) {
		char name[64];
		uint8_t r1[32], r2[32];

		/* raw inclusion: index, size, size2 (= size), leaf, root, root2, path */
		if (merkle_inclusion_proof(&ops, NULL, vec[k].index, vec[k].n, path, &plen) != 0 ||
		    merkle_root(&ops, NULL, vec[k].n, r2) != 0 ||
		    merkle_root(&ops, NULL, vec[k].size1, r1) != 0) {
			exit(1);
		}
		buf[0] = 0;
		be64(buf + 1, vec[k].index);
		be64(buf + 9, vec[k].n);
		be64(buf + 17, vec[k].n);
		get_node(NULL, 0, vec[k].index, buf + 25);
		memcpy(buf + 57, r2, 32);
		memcpy(buf + 89, r2, 32);
		memcpy(buf + 121, path, plen * 32);
		snprintf(name, sizeof(name), "inclusion-%llu-%llu",
		         (unsigned long long)vec[k].index, (unsigned long long)vec[k].n);
		put("merkle", name, buf, 121 + plen * 32);
		/* raw consistency: size1 in "size", n in "size2", root1 in "root" */
		if (merkle_consistency_proof(&ops, NULL, vec[k].size1, vec[k].n, path, &plen) !=
		    0) {
			exit(1);
		}
		be64(buf + 1, 0);
		be64(buf + 9, vec[k].size1);
		be64(buf + 17, vec[k].n);
		memcpy(buf + 57, r1, 32);
		memcpy(buf + 89, r2, 32);
		memcpy(buf + 121, path, plen * 32);
		snprintf(name, sizeof(name), "consistency-%llu-%llu",
		         (unsigned long long)vec[k].size1, (unsigned long long)vec[k].n);
		put("merkle", name, buf, 121 + plen * 32);
		/* tree mode with the same sizes */
		buf[0] = 1;
		buf[1] = (uint8_t)((vec[k].n - 1) >> 8);
		buf[2] = (uint8_t)(vec[k].n - 1);
		buf[3] = 0;
		buf[4] = (uint8_t)vec[k].index;
		buf[5] = 0;
		buf[6] = (uint8_t)(vec[k].size1 - 1);
		buf[7] = (uint8_t)k;
		buf[8] = (uint8_t)(k * 37);
		memcpy(buf + 9, "seed", 4);
		snprintf(name, sizeof(name), "tree-%llu", (unsigned long long)vec[k].n);
		put("merkle", name, buf, 13);
	}
	{
		/* sizes at the edge of the range */
		memset(buf, 0xff, sizeof(buf));
		buf[0] = 0;
		put("merkle", "raw-max-sizes", buf, 121 + 64 * 32);
		buf[0] = 1;
		put("merkle", "tree-max", buf, 40);
	}
}

/* A length-prefixed frame of `n` bytes of `fill` at b; returns its size. */
static size_t
split_frame(uint8_t *b, size_t n, uint8_t fill)
{
	b[0] = (uint8_t)(n >> 24);
	b[1] = (uint8_t)(n >> 16);
	b[2] = (uint8_t)(n >> 8);
	b[3] = (uint8_t)n;
	memset(b + 4, fill, n);
	return 4 + n;
}

/* A segment of fuzz_channel_split: written `reps` times; returns its size. */
static size_t
split_segment(uint8_t *b, unsigned reps, const uint8_t *p, size_t n)
{
	b[0] = (uint8_t)(reps - 1);
	b[1] = (uint8_t)(n >> 8);
	b[2] = (uint8_t)n;
	memmove(b + 3, p, n);
	return 3 + n;
}

/* Seeds of fuzz_channel_split: header (max_frame index, feed chunk, frames per feed), then
 * segments of the plaintext stream. max_frame index 0: 16, 1: 100, 2: 1000. */
static void
channel_splits(void)
{
	static uint8_t in[8192], st[4096];
	static const size_t lens[] = {0, 1, 5, 300, 1000};
	size_t n, k, i;

	/* frames of every size up to max_frame, one write */
	for (k = 0, i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		k += split_frame(st + k, lens[i], (uint8_t)('a' + i));
	}
	in[0] = 2, in[1] = 0, in[2] = 0;
	n = 3 + split_segment(in + 3, 1, st, k);
	put("channel_split", "frames-whole", in, n);
	/* the same fed 2 bytes at a time, one frame taken per feed */
	in[1] = 1, in[2] = 1;
	put("channel_split", "frames-bytewise", in, n);
	/* the same written in pieces cut inside a length and inside a body */
	in[1] = 0, in[2] = 0;
	n = 3;
	n += split_segment(in + n, 1, st, 2);
	n += split_segment(in + n, 1, st + 2, 9);
	n += split_segment(in + n, 1, st + 11, k - 11);
	put("channel_split", "frames-pieces", in, n);
	/* exactly max_frame (16), then one byte more: refused, nothing after it comes out */
	k = split_frame(st, 16, 'x');
	k += split_frame(st + k, 17, 'y');
	k += split_frame(st + k, 3, 'z');
	in[0] = 0, in[1] = 0, in[2] = 0;
	n = 3 + split_segment(in + 3, 1, st, k);
	put("channel_split", "oversize", in, n);
	/* a length too large for any max_frame */
	memset(st, 0xff, 8);
	in[0] = 7;
	n = 3 + split_segment(in + 3, 1, st, 8);
	put("channel_split", "oversize-huge", in, n);
	/* a frame cut short at the end: never delivered */
	k = split_frame(st, 50, 'p');
	in[0] = 1;
	n = 3 + split_segment(in + 3, 1, st, k - 7);
	put("channel_split", "partial-tail", in, n);
	/* 16 writes of 4 frames of 1000 bytes, one frame taken per write: the frames pile up,
	 * decryption pauses at max_frame + 16 KiB buffered, the buffer is compacted, and it all
	 * comes out at the end */
	for (k = 0, i = 0; i < 4; i++) {
		k += split_frame(st + k, 1000, (uint8_t)('t' + i));
	}
	in[0] = 2, in[1] = 0x80 | 15, in[2] = 1;
	n = 3 + split_segment(in + 3, 16, st, k);
	put("channel_split", "throttle", in, n);
	/* the same fed 100 bytes at a time: records arrive in pieces */
	in[1] = 99;
	put("channel_split", "throttle-pieces", in, n);
}

/* fuzz_audit: log entries as an auditor reads them (hand-encoded where protobuf-c would not
 * write them so: a kind given twice, erased_seqs unpacked over two events). */
static void
audits(void)
{
	static const uint8_t unpacked[] = {0x08, 0x03, 0x28, 0x06, 0x3a, 0x02,
	                                   0x30, 0x01, 0x3a, 0x02, 0x30, 0x02};
	Ihala__V2__LogEntry e = IHALA__V2__LOG_ENTRY__INIT;
	Ihala__V2__BrokerEvent ev = IHALA__V2__BROKER_EVENT__INIT;
	Ihala__V2__Envelope env = IHALA__V2__ENVELOPE__INIT;
	uint64_t seqs[] = {1, 2};
	uint8_t sha[32], twice[128], *b, *eb;
	size_t n, en, i;

	for (i = 0; i < sizeof(sha); i++) {
		sha[i] = (uint8_t)i;
	}
	put("audit", "erasure-unpacked-two-events", unpacked, sizeof(unpacked));
	e.seq = 4;
	e.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_ERASURE;
	ev.referral_id = "r1";
	ev.erased_seqs = seqs;
	ev.n_erased_seqs = 2;
	e.event = &ev;
	b = pack(&e.base, &n);
	put("audit", "erasure-packed", b, n);
	free(b);
	env.message_id = "m1";
	env.sealed_sha256.data = sha;
	env.sealed_sha256.len = sizeof(sha);
	eb = pack(&env.base, &en);
	ihala__v2__log_entry__init(&e);
	e.seq = 1;
	e.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_SUBMISSION;
	e.envelope.data = eb;
	e.envelope.len = en;
	b = pack(&e.base, &n);
	put("audit", "submission-sealed", b, n);
	free(b);
	/* the same envelope under kind ERASURE then SUBMISSION: the last kind counts */
	if (en + 8 <= sizeof(twice)) {
		size_t k = 0;

		twice[k++] = 0x08;
		twice[k++] = 0x05;
		twice[k++] = 0x28;
		twice[k++] = 0x06;
		twice[k++] = 0x28;
		twice[k++] = 0x01;
		twice[k++] = 0x32;
		twice[k++] = (uint8_t)en;
		memcpy(twice + k, eb, en);
		put("audit", "kind-twice-last-wins", twice, k + en);
	}
	free(eb);
	env.message_id = "m2";
	env.sealed_sha256.data = NULL;
	env.sealed_sha256.len = 0;
	eb = pack(&env.base, &en);
	e.seq = 2;
	e.envelope.data = eb;
	e.envelope.len = en;
	b = pack(&e.base, &n);
	put("audit", "submission-clear", b, n);
	free(b);
	free(eb);
}

int
main(int argc, char **argv)
{
	char *cp;

	if (argc != 3) {
		fprintf(stderr, "usage: mkseeds OUTDIR ROOT\n");
		return 2;
	}
	outdir = argv[1];
	rootdir = argv[2];
	log_setlevel(LOG_LEVEL_ERROR);
	pbjson_set_bytes_hook(pbjson_ihala_embedded);
	if (mkdir(outdir, 0755) != 0 && errno != EEXIST) {
		die(outdir);
	}
	cp = checkpoints();
	frames(cp);
	envelopes();
	json_examples();
	configs();
	proofs();
	channel_splits();
	audits();
	free(cp);
	printf("mkseeds: %d seeds written to %s\n", nwritten, outdir);
	return 0;
}
