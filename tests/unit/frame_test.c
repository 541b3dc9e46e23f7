/* frame_test.c - frame codec, strict decoding, UTF-8 checks and the stream splitter. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "frame.h"

/* Names in the two scripts the broker must carry intact. */
#define NAME_AR "نور الهدى"
#define NAME_CKB "ڕۆژان"

static const uint8_t hash32[32] = {
    0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
    16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
};

static const char checkpoint_text[] = "ihala.example/log\n"
                                      "42\n"
                                      "qmpTrMrwAvUXUK8Tn8qw6QJ0qJXK5bDzlEBTFxtUEQQ=\n"
                                      "\n"
                                      "\xe2\x80\x94 ihala.example/log AAAAAQ==\n";

/* Encode, decode, check the kind and that re-encoding the decoded frame
 * gives the very same bytes. Returns the decoded frame. */
static Ihala__V2__Frame *
roundtrip(const Ihala__V2__Frame *f)
{
	uint8_t *buf = NULL, *again = NULL;
	size_t len = 0, alen = 0;
	Ihala__V2__Frame *d = NULL;

	assert_int_equal(frame_encode(f, &buf, &len), 0);
	/* The body only: the channel owns the length prefix. */
	assert_int_equal(len, protobuf_c_message_get_packed_size(&f->base));
	assert_int_equal(frame_decode(buf, len, FRAME_MAX_DEFAULT, &d), 0);
	assert_non_null(d);
	assert_int_equal(d->kind_case, f->kind_case);
	assert_int_equal(frame_encode(d, &again, &alen), 0);
	assert_int_equal(alen, len);
	assert_memory_equal(again, buf, len);
	free(buf);
	free(again);
	return d;
}

/* Encode a message without prefix into a malloc'd buffer. */
static uint8_t *
pack(const ProtobufCMessage *m, size_t *len)
{
	uint8_t *buf;

	*len = protobuf_c_message_get_packed_size(m);
	buf = malloc(*len != 0 ? *len : 1);
	assert_non_null(buf);
	assert_int_equal(protobuf_c_message_pack(m, buf), *len);
	return buf;
}

/* Encode a frame body. */
static uint8_t *
frame_body(const Ihala__V2__Frame *f, size_t *len)
{
	uint8_t *buf;

	assert_int_equal(frame_encode(f, &buf, len), 0);
	return buf;
}

/* ---------------------------------------------------------------------------
 * A full referral envelope, as DMA would send it
 */

struct referral_fixture {
	Ihala__V2__Envelope env;
	Ihala__V2__Referral ref;
	Ihala__V2__Survivor surv;
	Ihala__V2__WashingtonGroup wg;
	Ihala__V2__Injury inj;
	Ihala__V2__Consent consent;
	Ihala__V2__Contact officer;
	Ihala__V2__ServiceCode services[3];
	char *injury_codes[2];
	Ihala__V2__Amputation amputations[2];
	char *agencies[2];
	Ihala__V2__DataCategory data[3];
};

static void
referral_fixture_init(struct referral_fixture *r)
{
	Ihala__V2__Envelope env = IHALA__V2__ENVELOPE__INIT;
	Ihala__V2__Referral ref = IHALA__V2__REFERRAL__INIT;
	Ihala__V2__Survivor surv = IHALA__V2__SURVIVOR__INIT;
	Ihala__V2__WashingtonGroup wg = IHALA__V2__WASHINGTON_GROUP__INIT;
	Ihala__V2__Injury inj = IHALA__V2__INJURY__INIT;
	Ihala__V2__Consent consent = IHALA__V2__CONSENT__INIT;
	Ihala__V2__Contact officer = IHALA__V2__CONTACT__INIT;

	memset(r, 0, sizeof(*r));
	r->env = env;
	r->ref = ref;
	r->surv = surv;
	r->wg = wg;
	r->inj = inj;
	r->consent = consent;
	r->officer = officer;

	r->services[0] = IHALA__V2__SERVICE_CODE__SERVICE_CODE_PHYSICAL_REHABILITATION;
	r->services[1] = IHALA__V2__SERVICE_CODE__SERVICE_CODE_PROSTHETICS_ORTHOTICS;
	r->services[2] = IHALA__V2__SERVICE_CODE__SERVICE_CODE_PSYCHOSOCIAL_SUPPORT;
	r->injury_codes[0] = "injury.leg";
	r->injury_codes[1] = "dysfunction.hearing.left";
	r->amputations[0] = IHALA__V2__AMPUTATION__AMPUTATION_LEG_LEFT_BELOW_KNEE;
	r->amputations[1] = IHALA__V2__AMPUTATION__AMPUTATION_HAND_RIGHT;
	r->agencies[0] = "moh";
	r->agencies[1] = "hi";
	r->data[0] = IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_IDENTITY;
	r->data[1] = IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_INJURY;
	r->data[2] = IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_FUNCTIONING;

	r->wg.seeing = IHALA__V2__DIFFICULTY__DIFFICULTY_NONE;
	r->wg.hearing = IHALA__V2__DIFFICULTY__DIFFICULTY_SOME;
	r->wg.walking = IHALA__V2__DIFFICULTY__DIFFICULTY_CANNOT_DO;
	r->wg.cognition = IHALA__V2__DIFFICULTY__DIFFICULTY_NONE;
	r->wg.self_care = IHALA__V2__DIFFICULTY__DIFFICULTY_A_LOT;
	r->wg.communication = IHALA__V2__DIFFICULTY__DIFFICULTY_NONE;

	r->inj.incident_date = "2023-04-17";
	r->inj.device_type = IHALA__V2__DEVICE_TYPE__DEVICE_TYPE_ERW_UXO;
	r->inj.n_injury_codes = 2;
	r->inj.injury_codes = r->injury_codes;
	r->inj.n_amputations = 2;
	r->inj.amputations = r->amputations;

	r->surv.case_id = "IQ-NIN-2023-0117";
	r->surv.name = NAME_AR;
	r->surv.sex = IHALA__V2__SEX__SEX_FEMALE;
	r->surv.birth_year = 1994;
	r->surv.governorate = "نینوى";
	r->surv.district = "Sinjar";
	r->surv.displacement = IHALA__V2__DISPLACEMENT__DISPLACEMENT_RETURNEE;
	r->surv.functioning = &r->wg;
	r->surv.injury = &r->inj;

	r->consent.given = 1;
	r->consent.given_by = IHALA__V2__CONSENT_GIVER__CONSENT_GIVER_SURVIVOR;
	r->consent.date = "2024-11-02";
	r->consent.recorded_by = NAME_CKB;
	r->consent.n_agencies = 2;
	r->consent.agencies = r->agencies;
	r->consent.n_data_covered = 3;
	r->consent.data_covered = r->data;

	r->officer.name = "Ahmed Kareem";
	r->officer.organisation = "DMA Victim Assistance";
	r->officer.phone = "+964 770 000 0000";
	r->officer.email = "va@dma.example";

	r->ref.referral_id = "R-2024-000117";
	r->ref.parent_referral_id = "";
	r->ref.referring_agency = "dma";
	r->ref.receiving_agency = "moh";
	r->ref.priority = IHALA__V2__PRIORITY__PRIORITY_URGENT;
	r->ref.n_services = 3;
	r->ref.services = r->services;
	r->ref.reason = "below-knee amputation, needs prosthesis fitting";
	r->ref.survivor = &r->surv;
	r->ref.consent = &r->consent;
	r->ref.referring_officer = &r->officer;
	r->ref.notes = "ملاحظات: prefers a female physiotherapist";
	r->ref.created_time_ms = 1730540000123ull;

	r->env.message_id = "dma-msg-000001";
	r->env.to = "moh";
	r->env.from = "dma";
	r->env.client_time_ms = 1730540000200ull;
	r->env.kind_case = IHALA__V2__ENVELOPE__KIND_REFERRAL;
	r->env.referral = &r->ref;
}

static void
check_referral(const Ihala__V2__Envelope *e)
{
	const Ihala__V2__Referral *ref;

	assert_string_equal(e->message_id, "dma-msg-000001");
	assert_string_equal(e->to, "moh");
	assert_string_equal(e->from, "dma");
	assert_true(e->client_time_ms == 1730540000200ull);
	assert_int_equal(e->kind_case, IHALA__V2__ENVELOPE__KIND_REFERRAL);
	ref = e->referral;
	assert_string_equal(ref->referral_id, "R-2024-000117");
	assert_string_equal(ref->parent_referral_id, "");
	assert_string_equal(ref->referring_agency, "dma");
	assert_string_equal(ref->receiving_agency, "moh");
	assert_int_equal(ref->priority, IHALA__V2__PRIORITY__PRIORITY_URGENT);
	assert_int_equal(ref->n_services, 3);
	assert_int_equal(ref->services[1],
	                 IHALA__V2__SERVICE_CODE__SERVICE_CODE_PROSTHETICS_ORTHOTICS);
	assert_string_equal(ref->reason, "below-knee amputation, needs prosthesis fitting");
	assert_string_equal(ref->notes, "ملاحظات: prefers a female physiotherapist");
	assert_true(ref->created_time_ms == 1730540000123ull);

	assert_non_null(ref->survivor);
	assert_string_equal(ref->survivor->case_id, "IQ-NIN-2023-0117");
	assert_string_equal(ref->survivor->name, NAME_AR);
	assert_int_equal(ref->survivor->sex, IHALA__V2__SEX__SEX_FEMALE);
	assert_int_equal(ref->survivor->birth_year, 1994);
	assert_string_equal(ref->survivor->governorate, "نینوى");
	assert_string_equal(ref->survivor->district, "Sinjar");
	assert_int_equal(ref->survivor->displacement,
	                 IHALA__V2__DISPLACEMENT__DISPLACEMENT_RETURNEE);
	assert_non_null(ref->survivor->functioning);
	assert_int_equal(ref->survivor->functioning->walking,
	                 IHALA__V2__DIFFICULTY__DIFFICULTY_CANNOT_DO);
	assert_int_equal(ref->survivor->functioning->self_care,
	                 IHALA__V2__DIFFICULTY__DIFFICULTY_A_LOT);
	assert_non_null(ref->survivor->injury);
	assert_string_equal(ref->survivor->injury->incident_date, "2023-04-17");
	assert_int_equal(ref->survivor->injury->device_type,
	                 IHALA__V2__DEVICE_TYPE__DEVICE_TYPE_ERW_UXO);
	assert_int_equal(ref->survivor->injury->n_injury_codes, 2);
	assert_string_equal(ref->survivor->injury->injury_codes[1], "dysfunction.hearing.left");
	assert_int_equal(ref->survivor->injury->n_amputations, 2);
	assert_int_equal(ref->survivor->injury->amputations[0],
	                 IHALA__V2__AMPUTATION__AMPUTATION_LEG_LEFT_BELOW_KNEE);

	assert_non_null(ref->consent);
	assert_true(ref->consent->given);
	assert_int_equal(ref->consent->given_by, IHALA__V2__CONSENT_GIVER__CONSENT_GIVER_SURVIVOR);
	assert_string_equal(ref->consent->date, "2024-11-02");
	assert_string_equal(ref->consent->recorded_by, NAME_CKB);
	assert_int_equal(ref->consent->n_agencies, 2);
	assert_string_equal(ref->consent->agencies[0], "moh");
	assert_string_equal(ref->consent->agencies[1], "hi");
	assert_int_equal(ref->consent->n_data_covered, 3);
	assert_int_equal(ref->consent->data_covered[2],
	                 IHALA__V2__DATA_CATEGORY__DATA_CATEGORY_FUNCTIONING);

	assert_non_null(ref->referring_officer);
	assert_string_equal(ref->referring_officer->name, "Ahmed Kareem");
	assert_string_equal(ref->referring_officer->organisation, "DMA Victim Assistance");
	assert_string_equal(ref->referring_officer->phone, "+964 770 000 0000");
	assert_string_equal(ref->referring_officer->email, "va@dma.example");
}

/* ---------------------------------------------------------------------------
 * Round trips, one per Frame kind
 */

static void
rt_welcome(void)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT, *d;
	Ihala__V2__Welcome w = IHALA__V2__WELCOME__INIT;
	Ihala__V2__Limits l = IHALA__V2__LIMITS__INIT;

	l.max_frame_bytes = 1048576;
	l.credit_window = 64;
	l.max_inflight = 32;
	w.agency_id = "moh";
	w.role = IHALA__V2__ROLE__ROLE_MINISTRY;
	w.broker_time_ms = 1732700000123ull;
	w.limits = &l;
	w.checkpoint = (char *)checkpoint_text;
	w.broker_version = "ihala-broker 0.1.0";
	w.protocol_version = 2;
	f.kind_case = IHALA__V2__FRAME__KIND_WELCOME;
	f.welcome = &w;

	d = roundtrip(&f);
	assert_string_equal(d->welcome->agency_id, "moh");
	assert_int_equal(d->welcome->role, IHALA__V2__ROLE__ROLE_MINISTRY);
	assert_true(d->welcome->broker_time_ms == 1732700000123ull);
	assert_non_null(d->welcome->limits);
	assert_int_equal(d->welcome->limits->max_frame_bytes, 1048576);
	assert_int_equal(d->welcome->limits->credit_window, 64);
	assert_int_equal(d->welcome->limits->max_inflight, 32);
	assert_string_equal(d->welcome->checkpoint, checkpoint_text);
	assert_string_equal(d->welcome->broker_version, "ihala-broker 0.1.0");
	assert_int_equal(d->welcome->protocol_version, 2);
	frame_free(d);
}

static void
rt_submit(void)
{
	struct referral_fixture r;
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT, *d;
	Ihala__V2__Submit s = IHALA__V2__SUBMIT__INIT;
	Ihala__V2__Envelope *e = NULL;
	uint8_t *env;
	size_t envlen;

	referral_fixture_init(&r);
	env = pack(&r.env.base, &envlen);
	s.envelope.data = env;
	s.envelope.len = envlen;
	f.kind_case = IHALA__V2__FRAME__KIND_SUBMIT;
	f.submit = &s;

	d = roundtrip(&f);
	/* The envelope bytes arrive exactly as the client encoded them. */
	assert_int_equal(d->submit->envelope.len, envlen);
	assert_memory_equal(d->submit->envelope.data, env, envlen);
	assert_int_equal(envelope_decode(d->submit->envelope.data, d->submit->envelope.len, &e), 0);
	check_referral(e);
	envelope_free(e);
	frame_free(d);
	free(env);
}

static void
rt_receipt(void)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT, *d;
	Ihala__V2__Receipt r = IHALA__V2__RECEIPT__INIT;

	r.message_id = "dma-msg-000001";
	r.seq = 4242;
	r.leaf_hash.data = (uint8_t *)hash32;
	r.leaf_hash.len = sizeof(hash32);
	r.status = IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED;
	r.error_code = -IHALA_EQUEUEFULL;
	r.error_message = "recipient's queue is full; retry later";
	f.kind_case = IHALA__V2__FRAME__KIND_RECEIPT;
	f.receipt = &r;

	d = roundtrip(&f);
	assert_string_equal(d->receipt->message_id, "dma-msg-000001");
	assert_true(d->receipt->seq == 4242);
	assert_int_equal(d->receipt->leaf_hash.len, 32);
	assert_memory_equal(d->receipt->leaf_hash.data, hash32, 32);
	assert_int_equal(d->receipt->status, IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED);
	assert_int_equal(d->receipt->error_code, 52);
	assert_string_equal(d->receipt->error_message, "recipient's queue is full; retry later");
	frame_free(d);
}

static void
rt_deliver(void)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT, *d;
	Ihala__V2__Deliver dl = IHALA__V2__DELIVER__INIT;
	Ihala__V2__LogEntry le = IHALA__V2__LOG_ENTRY__INIT;
	Ihala__V2__BrokerEvent ev = IHALA__V2__BROKER_EVENT__INIT;
	Ihala__V2__LogEntry *got = NULL;
	uint8_t *entry;
	size_t entrylen;

	ev.referral_id = "R-2024-000117";
	ev.status = IHALA__V2__TASK_STATUS__TASK_STATUS_OVERDUE;
	ev.ref_seq = 17;
	ev.text = "no answer within 72 h";
	le.seq = 99;
	le.broker_time_ms = 1732700000999ull;
	le.sender = "";
	le.recipient = "dma";
	le.kind = IHALA__V2__ENTRY_KIND__ENTRY_KIND_BROKER_STATUS;
	le.event = &ev;
	entry = pack(&le.base, &entrylen);
	dl.seq = 99;
	dl.entry.data = entry;
	dl.entry.len = entrylen;
	f.kind_case = IHALA__V2__FRAME__KIND_DELIVER;
	f.deliver = &dl;

	d = roundtrip(&f);
	assert_true(d->deliver->seq == 99);
	assert_int_equal(d->deliver->entry.len, entrylen);
	assert_memory_equal(d->deliver->entry.data, entry, entrylen);
	assert_int_equal(logentry_decode(d->deliver->entry.data, d->deliver->entry.len, &got), 0);
	assert_true(got->seq == 99);
	assert_true(got->broker_time_ms == 1732700000999ull);
	assert_string_equal(got->recipient, "dma");
	assert_int_equal(got->kind, IHALA__V2__ENTRY_KIND__ENTRY_KIND_BROKER_STATUS);
	assert_non_null(got->event);
	assert_string_equal(got->event->referral_id, "R-2024-000117");
	assert_int_equal(got->event->status, IHALA__V2__TASK_STATUS__TASK_STATUS_OVERDUE);
	assert_true(got->event->ref_seq == 17);
	assert_string_equal(got->event->text, "no answer within 72 h");
	logentry_free(got);
	frame_free(d);
	free(entry);
}

static void
rt_delivery_ack(void)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT, *d;
	Ihala__V2__DeliveryAck a = IHALA__V2__DELIVERY_ACK__INIT;

	a.seq = UINT64_MAX;
	f.kind_case = IHALA__V2__FRAME__KIND_DELIVERY_ACK;
	f.delivery_ack = &a;
	d = roundtrip(&f);
	assert_true(d->delivery_ack->seq == UINT64_MAX);
	frame_free(d);
}

static void
rt_query(void)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT, *d;
	Ihala__V2__Query q = IHALA__V2__QUERY__INIT;

	q.request_id = 9;
	q.referral_id = "R-2024-000117";
	f.kind_case = IHALA__V2__FRAME__KIND_QUERY;
	f.query = &q;
	d = roundtrip(&f);
	assert_true(d->query->request_id == 9);
	assert_string_equal(d->query->referral_id, "R-2024-000117");
	frame_free(d);
}

static void
rt_referral_state(void)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT, *d;
	Ihala__V2__ReferralState rs = IHALA__V2__REFERRAL_STATE__INIT;
	Ihala__V2__HistoryItem h1 = IHALA__V2__HISTORY_ITEM__INIT;
	Ihala__V2__HistoryItem h2 = IHALA__V2__HISTORY_ITEM__INIT;
	Ihala__V2__HistoryItem *hist[2] = {&h1, &h2};

	h1.seq = 17;
	h1.time_ms = 1000;
	h1.agency = "dma";
	h1.status = IHALA__V2__TASK_STATUS__TASK_STATUS_REQUESTED;
	h1.what = "referral";
	h2.seq = 21;
	h2.time_ms = 2000;
	h2.agency = "moh";
	h2.status = IHALA__V2__TASK_STATUS__TASK_STATUS_ACCEPTED;
	h2.what = "status";
	rs.request_id = 9;
	rs.referral_id = "R-2024-000118";
	rs.parent_referral_id = "R-2024-000117";
	rs.referrer = "moh";
	rs.recipient = "hi";
	rs.status = IHALA__V2__TASK_STATUS__TASK_STATUS_ACCEPTED;
	rs.priority = IHALA__V2__PRIORITY__PRIORITY_EMERGENCY;
	rs.deadline_ms = 1000 + 24ull * 3600 * 1000;
	rs.overdue = 1;
	rs.n_history = 2;
	rs.history = hist;
	f.kind_case = IHALA__V2__FRAME__KIND_REFERRAL_STATE;
	f.referral_state = &rs;

	d = roundtrip(&f);
	assert_true(d->referral_state->request_id == 9);
	assert_string_equal(d->referral_state->referral_id, "R-2024-000118");
	assert_string_equal(d->referral_state->parent_referral_id, "R-2024-000117");
	assert_string_equal(d->referral_state->referrer, "moh");
	assert_string_equal(d->referral_state->recipient, "hi");
	assert_int_equal(d->referral_state->status, IHALA__V2__TASK_STATUS__TASK_STATUS_ACCEPTED);
	assert_int_equal(d->referral_state->priority, IHALA__V2__PRIORITY__PRIORITY_EMERGENCY);
	assert_true(d->referral_state->deadline_ms == 1000 + 24ull * 3600 * 1000);
	assert_true(d->referral_state->overdue);
	assert_int_equal(d->referral_state->n_history, 2);
	assert_true(d->referral_state->history[0]->seq == 17);
	assert_string_equal(d->referral_state->history[0]->what, "referral");
	assert_true(d->referral_state->history[1]->time_ms == 2000);
	assert_string_equal(d->referral_state->history[1]->agency, "moh");
	assert_int_equal(d->referral_state->history[1]->status,
	                 IHALA__V2__TASK_STATUS__TASK_STATUS_ACCEPTED);
	frame_free(d);
}

static void
rt_replay_request(void)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT, *d;
	Ihala__V2__ReplayRequest r = IHALA__V2__REPLAY_REQUEST__INIT;

	r.request_id = 1;
	r.from_seq = 10;
	r.to_seq = 0;
	r.follow = 1;
	f.kind_case = IHALA__V2__FRAME__KIND_REPLAY_REQUEST;
	f.replay_request = &r;
	d = roundtrip(&f);
	assert_true(d->replay_request->request_id == 1);
	assert_true(d->replay_request->from_seq == 10);
	assert_true(d->replay_request->to_seq == 0);
	assert_true(d->replay_request->follow);
	frame_free(d);
}

static void
rt_log_entries(void)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT, *d;
	Ihala__V2__LogEntries le = IHALA__V2__LOG_ENTRIES__INIT;
	Ihala__V2__LogRecord r1 = IHALA__V2__LOG_RECORD__INIT;
	Ihala__V2__LogRecord r2 = IHALA__V2__LOG_RECORD__INIT;
	Ihala__V2__LogRecord *recs[2] = {&r1, &r2};
	static const uint8_t e1[] = {0x08, 0x01}, e2[] = {0x08, 0x02, 0x10, 0x05};

	r1.seq = 1;
	r1.entry.data = (uint8_t *)e1;
	r1.entry.len = sizeof(e1);
	r2.seq = 2;
	r2.entry.data = (uint8_t *)e2;
	r2.entry.len = sizeof(e2);
	le.request_id = 3;
	le.n_records = 2;
	le.records = recs;
	le.done = 1;
	f.kind_case = IHALA__V2__FRAME__KIND_LOG_ENTRIES;
	f.log_entries = &le;
	d = roundtrip(&f);
	assert_true(d->log_entries->request_id == 3);
	assert_true(d->log_entries->done);
	assert_int_equal(d->log_entries->n_records, 2);
	assert_true(d->log_entries->records[1]->seq == 2);
	assert_int_equal(d->log_entries->records[1]->entry.len, sizeof(e2));
	assert_memory_equal(d->log_entries->records[1]->entry.data, e2, sizeof(e2));
	frame_free(d);
}

static void
rt_proof_request(void)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT, *d;
	Ihala__V2__ProofRequest p = IHALA__V2__PROOF_REQUEST__INIT;

	p.request_id = 4;
	p.target_case = IHALA__V2__PROOF_REQUEST__TARGET_SEQ;
	p.seq = 77;
	p.tree_size = 100;
	p.consistency_from = 50;
	f.kind_case = IHALA__V2__FRAME__KIND_PROOF_REQUEST;
	f.proof_request = &p;
	d = roundtrip(&f);
	assert_true(d->proof_request->request_id == 4);
	assert_int_equal(d->proof_request->target_case, IHALA__V2__PROOF_REQUEST__TARGET_SEQ);
	assert_true(d->proof_request->seq == 77);
	assert_true(d->proof_request->tree_size == 100);
	assert_true(d->proof_request->consistency_from == 50);
	frame_free(d);

	/* The other target, and seq 0 as a set oneof case. */
	p.target_case = IHALA__V2__PROOF_REQUEST__TARGET_MESSAGE_ID;
	p.message_id = "dma-msg-000001";
	p.consistency_from = 0;
	d = roundtrip(&f);
	assert_int_equal(d->proof_request->target_case,
	                 IHALA__V2__PROOF_REQUEST__TARGET_MESSAGE_ID);
	assert_string_equal(d->proof_request->message_id, "dma-msg-000001");
	assert_true(d->proof_request->consistency_from == 0);
	frame_free(d);

	p.target_case = IHALA__V2__PROOF_REQUEST__TARGET_SEQ;
	p.seq = 0;
	d = roundtrip(&f);
	assert_int_equal(d->proof_request->target_case, IHALA__V2__PROOF_REQUEST__TARGET_SEQ);
	assert_true(d->proof_request->seq == 0);
	frame_free(d);
}

static void
rt_inclusion_proof(void)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT, *d;
	Ihala__V2__InclusionProof p = IHALA__V2__INCLUSION_PROOF__INIT;
	ProtobufCBinaryData path[3];
	size_t i;

	for (i = 0; i < 3; i++) {
		path[i].data = (uint8_t *)hash32 + i;
		path[i].len = 32 - i;
	}
	p.request_id = 4;
	p.seq = 77;
	p.leaf_index = 76;
	p.tree_size = 100;
	p.leaf_hash.data = (uint8_t *)hash32;
	p.leaf_hash.len = 32;
	p.n_path = 3;
	p.path = path;
	p.checkpoint = (char *)checkpoint_text;
	f.kind_case = IHALA__V2__FRAME__KIND_INCLUSION_PROOF;
	f.inclusion_proof = &p;
	d = roundtrip(&f);
	assert_true(d->inclusion_proof->request_id == 4);
	assert_true(d->inclusion_proof->seq == 77);
	assert_true(d->inclusion_proof->leaf_index == 76);
	assert_true(d->inclusion_proof->tree_size == 100);
	assert_memory_equal(d->inclusion_proof->leaf_hash.data, hash32, 32);
	assert_int_equal(d->inclusion_proof->n_path, 3);
	for (i = 0; i < 3; i++) {
		assert_int_equal(d->inclusion_proof->path[i].len, 32 - i);
		assert_memory_equal(d->inclusion_proof->path[i].data, hash32 + i, 32 - i);
	}
	assert_string_equal(d->inclusion_proof->checkpoint, checkpoint_text);
	frame_free(d);
}

static void
rt_consistency_proof(void)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT, *d;
	Ihala__V2__ConsistencyProof p = IHALA__V2__CONSISTENCY_PROOF__INIT;
	ProtobufCBinaryData path[2] = {{32, (uint8_t *)hash32}, {32, (uint8_t *)hash32}};

	p.request_id = 4;
	p.size1 = 50;
	p.size2 = 100;
	p.n_path = 2;
	p.path = path;
	p.checkpoint = (char *)checkpoint_text;
	f.kind_case = IHALA__V2__FRAME__KIND_CONSISTENCY_PROOF;
	f.consistency_proof = &p;
	d = roundtrip(&f);
	assert_true(d->consistency_proof->request_id == 4);
	assert_true(d->consistency_proof->size1 == 50);
	assert_true(d->consistency_proof->size2 == 100);
	assert_int_equal(d->consistency_proof->n_path, 2);
	assert_memory_equal(d->consistency_proof->path[1].data, hash32, 32);
	assert_string_equal(d->consistency_proof->checkpoint, checkpoint_text);
	frame_free(d);
}

static void
rt_checkpoint_request(void)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT, *d;
	Ihala__V2__CheckpointRequest c = IHALA__V2__CHECKPOINT_REQUEST__INIT;

	c.request_id = 12345;
	f.kind_case = IHALA__V2__FRAME__KIND_CHECKPOINT_REQUEST;
	f.checkpoint_request = &c;
	d = roundtrip(&f);
	assert_true(d->checkpoint_request->request_id == 12345);
	frame_free(d);

	/* An all-default message is still a frame of that kind. */
	c.request_id = 0;
	d = roundtrip(&f);
	assert_true(d->checkpoint_request->request_id == 0);
	frame_free(d);
}

static void
rt_checkpoint(void)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT, *d;
	Ihala__V2__CheckpointNote c = IHALA__V2__CHECKPOINT_NOTE__INIT;

	c.request_id = 12345;
	c.text = (char *)checkpoint_text;
	f.kind_case = IHALA__V2__FRAME__KIND_CHECKPOINT;
	f.checkpoint = &c;
	d = roundtrip(&f);
	assert_true(d->checkpoint->request_id == 12345);
	assert_string_equal(d->checkpoint->text, checkpoint_text);
	frame_free(d);
}

static void
rt_error(void)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT, *d;
	Ihala__V2__Error e = IHALA__V2__ERROR__INIT;

	e.code = IHALA__V2__ERROR_CODE__ERROR_CODE_INVALID_TRANSITION;
	e.message = "status change not allowed: 'completed' -> 'accepted'";
	e.request_id = 3;
	f.kind_case = IHALA__V2__FRAME__KIND_ERROR;
	f.error = &e;
	d = roundtrip(&f);
	assert_int_equal(d->error->code, -IHALA_ETRANSITION);
	assert_string_equal(d->error->message,
	                    "status change not allowed: 'completed' -> 'accepted'");
	assert_true(d->error->request_id == 3);
	frame_free(d);
}

static void
rt_directory_request(void)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT, *d;
	Ihala__V2__DirectoryRequest q = IHALA__V2__DIRECTORY_REQUEST__INIT;

	q.request_id = 77;
	q.agency = "moh";
	f.kind_case = IHALA__V2__FRAME__KIND_DIRECTORY_REQUEST;
	f.directory_request = &q;
	d = roundtrip(&f);
	assert_true(d->directory_request->request_id == 77);
	assert_string_equal(d->directory_request->agency, "moh");
	frame_free(d);
}

static void
rt_directory(void)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT, *d;
	Ihala__V2__Directory dir = IHALA__V2__DIRECTORY__INIT;
	Ihala__V2__AgencyCerts a = IHALA__V2__AGENCY_CERTS__INIT, b = IHALA__V2__AGENCY_CERTS__INIT;
	Ihala__V2__AgencyCerts *v[2] = {&a, &b};
	ProtobufCBinaryData certs[2] = {{3, (uint8_t *)"\x30\x01\x00"}, {2, (uint8_t *)"\x30\x00"}};

	a.agency = "moh";
	a.n_cert_der = 2;
	a.cert_der = certs;
	b.agency = "molsa"; /* none configured */
	dir.request_id = 78;
	dir.n_agencies = 2;
	dir.agencies = v;
	f.kind_case = IHALA__V2__FRAME__KIND_DIRECTORY;
	f.directory = &dir;
	d = roundtrip(&f);
	assert_true(d->directory->request_id == 78);
	assert_int_equal(d->directory->n_agencies, 2);
	assert_string_equal(d->directory->agencies[0]->agency, "moh");
	assert_int_equal(d->directory->agencies[0]->n_cert_der, 2);
	assert_memory_equal(d->directory->agencies[0]->cert_der[1].data, "\x30\x00", 2);
	assert_int_equal(d->directory->agencies[1]->n_cert_der, 0);
	frame_free(d);
}

struct rt_case {
	Ihala__V2__Frame__KindCase kind;
	void (*run)(void);
};

static const struct rt_case rt_cases[] = {
    {IHALA__V2__FRAME__KIND_WELCOME, rt_welcome},
    {IHALA__V2__FRAME__KIND_SUBMIT, rt_submit},
    {IHALA__V2__FRAME__KIND_RECEIPT, rt_receipt},
    {IHALA__V2__FRAME__KIND_DELIVER, rt_deliver},
    {IHALA__V2__FRAME__KIND_DELIVERY_ACK, rt_delivery_ack},
    {IHALA__V2__FRAME__KIND_QUERY, rt_query},
    {IHALA__V2__FRAME__KIND_REFERRAL_STATE, rt_referral_state},
    {IHALA__V2__FRAME__KIND_REPLAY_REQUEST, rt_replay_request},
    {IHALA__V2__FRAME__KIND_LOG_ENTRIES, rt_log_entries},
    {IHALA__V2__FRAME__KIND_PROOF_REQUEST, rt_proof_request},
    {IHALA__V2__FRAME__KIND_INCLUSION_PROOF, rt_inclusion_proof},
    {IHALA__V2__FRAME__KIND_CONSISTENCY_PROOF, rt_consistency_proof},
    {IHALA__V2__FRAME__KIND_CHECKPOINT_REQUEST, rt_checkpoint_request},
    {IHALA__V2__FRAME__KIND_CHECKPOINT, rt_checkpoint},
    {IHALA__V2__FRAME__KIND_ERROR, rt_error},
    {IHALA__V2__FRAME__KIND_DIRECTORY_REQUEST, rt_directory_request},
    {IHALA__V2__FRAME__KIND_DIRECTORY, rt_directory},
};

static void
test_roundtrip_every_kind(void **state)
{
	const ProtobufCMessageDescriptor *d = &ihala__v2__frame__descriptor;
	unsigned i, k;

	(void)state;
	/* The table covers every case of Frame.kind the schema has. */
	for (i = 0; i < d->n_fields; i++) {
		for (k = 0; k < sizeof(rt_cases) / sizeof(rt_cases[0]); k++) {
			if ((unsigned)rt_cases[k].kind == d->fields[i].id) {
				break;
			}
		}
		if (k == sizeof(rt_cases) / sizeof(rt_cases[0])) {
			fail_msg("Frame.%s has no round-trip test", d->fields[i].name);
		}
	}
	assert_int_equal(d->n_fields, sizeof(rt_cases) / sizeof(rt_cases[0]));
	for (k = 0; k < sizeof(rt_cases) / sizeof(rt_cases[0]); k++) {
		rt_cases[k].run();
	}
}

/* The other envelope kinds survive Submit bytes too. */
static void
test_envelope_kinds(void **state)
{
	Ihala__V2__Envelope env = IHALA__V2__ENVELOPE__INIT, *e = NULL;
	Ihala__V2__StatusUpdate su = IHALA__V2__STATUS_UPDATE__INIT;
	Ihala__V2__Outcome oc = IHALA__V2__OUTCOME__INIT;
	Ihala__V2__Note note = IHALA__V2__NOTE__INIT;
	Ihala__V2__ServiceCode delivered[1] = {
	    IHALA__V2__SERVICE_CODE__SERVICE_CODE_PHYSICAL_REHABILITATION};
	Ihala__V2__ReasonCode why[2] = {IHALA__V2__REASON_CODE__REASON_CODE_CLIENT_RELOCATED,
	                                IHALA__V2__REASON_CODE__REASON_CODE_OTHER};
	uint8_t *buf;
	size_t len;

	(void)state;
	oc.referral_id = "R-2024-000117";
	oc.service_implemented = 1;
	oc.n_services_delivered = 1;
	oc.services_delivered = delivered;
	oc.date = "2024-12-01";
	oc.success = 0;
	oc.n_not_successful_reasons = 2;
	oc.not_successful_reasons = why;
	oc.follow_up_needed = 1;
	oc.notes = "moved to Erbil";
	su.referral_id = "R-2024-000117";
	su.status = IHALA__V2__TASK_STATUS__TASK_STATUS_FAILED;
	su.business_status = "session 3 of 10 attended";
	su.reason_code = IHALA__V2__REASON_CODE__REASON_CODE_CLIENT_RELOCATED;
	su.reason = "relocated";
	su.note = NAME_CKB;
	su.outcome = &oc;
	env.message_id = "moh-0007";
	env.kind_case = IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE;
	env.status_update = &su;

	buf = pack(&env.base, &len);
	assert_int_equal(envelope_decode(buf, len, &e), 0);
	assert_int_equal(e->kind_case, IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE);
	assert_string_equal(e->to, "");
	assert_int_equal(e->status_update->status, IHALA__V2__TASK_STATUS__TASK_STATUS_FAILED);
	assert_string_equal(e->status_update->business_status, "session 3 of 10 attended");
	assert_int_equal(e->status_update->reason_code,
	                 IHALA__V2__REASON_CODE__REASON_CODE_CLIENT_RELOCATED);
	assert_string_equal(e->status_update->note, NAME_CKB);
	assert_non_null(e->status_update->outcome);
	assert_true(e->status_update->outcome->service_implemented);
	assert_false(e->status_update->outcome->success);
	assert_true(e->status_update->outcome->follow_up_needed);
	assert_string_equal(e->status_update->outcome->date, "2024-12-01");
	assert_int_equal(e->status_update->outcome->n_not_successful_reasons, 2);
	assert_int_equal(e->status_update->outcome->not_successful_reasons[1],
	                 IHALA__V2__REASON_CODE__REASON_CODE_OTHER);
	assert_string_equal(e->status_update->outcome->notes, "moved to Erbil");
	envelope_free(e);
	free(buf);

	env.kind_case = IHALA__V2__ENVELOPE__KIND_OUTCOME;
	env.outcome = &oc;
	buf = pack(&env.base, &len);
	assert_int_equal(envelope_decode(buf, len, &e), 0);
	assert_int_equal(e->kind_case, IHALA__V2__ENVELOPE__KIND_OUTCOME);
	assert_int_equal(e->outcome->services_delivered[0],
	                 IHALA__V2__SERVICE_CODE__SERVICE_CODE_PHYSICAL_REHABILITATION);
	envelope_free(e);
	free(buf);

	note.referral_id = "R-2024-000117";
	note.text = NAME_AR " — " NAME_CKB;
	env.kind_case = IHALA__V2__ENVELOPE__KIND_NOTE;
	env.note = &note;
	buf = pack(&env.base, &len);
	assert_int_equal(envelope_decode(buf, len, &e), 0);
	assert_int_equal(e->kind_case, IHALA__V2__ENVELOPE__KIND_NOTE);
	assert_string_equal(e->note->text, NAME_AR " — " NAME_CKB);
	envelope_free(e);
	free(buf);
}

/* ---------------------------------------------------------------------------
 * Refusals
 */

/* The fixture's envelope (*env, *envlen bytes; free it) and, returned, a Submit frame body
 * carrying it (*len bytes; free it). */
static uint8_t *
submit_body(uint8_t **env, size_t *envlen, size_t *len)
{
	struct referral_fixture r;
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__Submit s = IHALA__V2__SUBMIT__INIT;

	referral_fixture_init(&r);
	*env = pack(&r.env.base, envlen);
	s.envelope.data = *env;
	s.envelope.len = *envlen;
	f.kind_case = IHALA__V2__FRAME__KIND_SUBMIT;
	f.submit = &s;
	return frame_body(&f, len);
}

static void
test_truncated(void **state)
{
	Ihala__V2__Frame *d = NULL;
	Ihala__V2__Envelope *e = NULL;
	uint8_t *body, *env;
	size_t len, envlen, cut;

	(void)state;
	body = submit_body(&env, &envlen, &len);
	assert_int_equal(frame_decode(body, len, FRAME_MAX_DEFAULT, &d), 0);
	frame_free(d);
	d = NULL;
	/* Every strict prefix of the body is refused. */
	for (cut = 0; cut < len; cut++) {
		int rc = frame_decode(body, cut, FRAME_MAX_DEFAULT, &d);

		assert_true(rc == IHALA_EBADFRAME || (cut == 0 && rc == IHALA_EUNKNOWNFRAME));
		assert_null(d);
	}
	/* Every strict prefix of the envelope too (one cut is the empty
	 * envelope, which has no kind). */
	for (cut = 0; cut < envlen; cut++) {
		int rc = envelope_decode(env, cut, &e);

		assert_true(rc == IHALA_EBADFRAME || rc == IHALA_ESCHEMA);
		assert_null(e);
	}
	free(body);
	free(env);
}

/* ---------------------------------------------------------------------------
 * The decoding arena
 */

/* Decoding into an arena gives the message a malloc'd decode gives, whether it fits the
 * caller's buffer or spills into blocks of the arena's own; reset lets the next reuse it. */
static void
test_arena_decode(void **state)
{
	static const size_t caps[] = {8192, 600, 64, 0};
	Ihala__V2__Frame *d = NULL, *da = NULL;
	Ihala__V2__Envelope *e = NULL, *ea = NULL;
	_Alignas(16) uint8_t room[8192 + 15];
	uint8_t *body, *env, *b1, *b2;
	size_t len, envlen, n1, n2, i, k;

	(void)state;
	body = submit_body(&env, &envlen, &len);
	assert_int_equal(frame_decode(body, len, FRAME_MAX_DEFAULT, &d), 0);
	assert_int_equal(envelope_decode(env, envlen, &e), 0);
	b1 = pack(&e->base, &n1);
	for (i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		struct pb_arena a;

		/* an odd start: the arena aligns what it hands out */
		pb_arena_init(&a, caps[i] > 0 ? room + 1 : NULL, caps[i]);
		for (k = 0; k < 2; k++) { /* the second time after a reset */
			assert_int_equal(envelope_decode_in(env, envlen, &a, &ea), 0);
			assert_int_equal((uintptr_t)ea % 16, 0);
			assert_int_equal((uintptr_t)ea->referral % 16, 0);
			b2 = pack(&ea->base, &n2);
			assert_int_equal(n1, n2);
			assert_memory_equal(b1, b2, n1);
			free(b2);
			assert_string_equal(ea->referral->survivor->name, NAME_AR);
			assert_true(pb_arena_used(&a) > envlen);
			if (caps[i] == 8192) {
				/* a full referral fits a submission's room for it */
				assert_true(pb_arena_used(&a) <= 2 * envlen + 1024);
				assert_null(a.more);
			} else {
				assert_non_null(a.more);
			}
			assert_int_equal(frame_decode_in(body, len, FRAME_MAX_DEFAULT, &a, &da), 0);
			assert_int_equal(da->kind_case, IHALA__V2__FRAME__KIND_SUBMIT);
			assert_int_equal(da->submit->envelope.len, envlen);
			assert_memory_equal(da->submit->envelope.data, env, envlen);
			pb_arena_reset(&a);
			assert_int_equal(pb_arena_used(&a), 0);
			assert_null(a.more);
		}
	}
	free(b1);
	envelope_free(e);
	frame_free(d);
	free(body);
	free(env);
}

/* Refusals are the same into an arena, and leave nothing behind but the arena's (the
 * sanitizer build sees a leak). */
static void
test_arena_refusals(void **state)
{
	struct referral_fixture r;
	Ihala__V2__Envelope *e = NULL;
	Ihala__V2__Frame *d = NULL;
	_Alignas(16) uint8_t room[512];
	struct pb_arena a;
	uint8_t *env, *bad;
	size_t envlen, cut;

	(void)state;
	referral_fixture_init(&r);
	env = pack(&r.env.base, &envlen);
	pb_arena_init(&a, room, sizeof(room));
	for (cut = 0; cut < envlen; cut++) {
		int rc = envelope_decode(env, cut, &e), rca = envelope_decode_in(env, cut, &a, &e);

		assert_int_equal(rc, rca);
		assert_true(rca == IHALA_EBADFRAME || rca == IHALA_ESCHEMA);
		assert_null(e);
		pb_arena_reset(&a);
	}
	/* a non-canonical copy: the same field twice */
	bad = malloc(envlen * 2);
	assert_non_null(bad);
	memcpy(bad, env, envlen);
	memcpy(bad + envlen, env, envlen);
	assert_int_equal(envelope_decode_in(bad, envlen * 2, &a, &e), IHALA_EBADFRAME);
	assert_null(e);
	/* an envelope is no frame */
	cut = (size_t)frame_decode(bad, envlen, FRAME_MAX_DEFAULT, &d);
	assert_true((int)cut < 0);
	assert_int_equal(frame_decode_in(bad, envlen, FRAME_MAX_DEFAULT, &a, &d), (int)cut);
	assert_int_equal(frame_decode_in(bad, envlen, 4, &a, &d), IHALA_EFRAMESIZE);
	assert_null(d);
	pb_arena_release(&a);
	free(bad);
	free(env);
}

static void
test_garbage(void **state)
{
	static const uint8_t g1[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	static const uint8_t g2[] = {0x0a, 0x05, 0x01}; /* length past the end */
	static const uint8_t g3[] = {0x0f};             /* wire type 7 */
	static const uint8_t g4[] = {0x00, 0x00};       /* field number 0 */
	static const uint8_t g5[] = {0x08, 0x01};       /* Frame has no field 1 varint */
	Ihala__V2__Frame *d = NULL;
	unsigned seed = 12345, i, j, accepted = 0;

	(void)state;
	assert_int_equal(frame_decode(g1, sizeof(g1), FRAME_MAX_DEFAULT, &d), IHALA_EBADFRAME);
	assert_int_equal(frame_decode(g2, sizeof(g2), FRAME_MAX_DEFAULT, &d), IHALA_EBADFRAME);
	assert_int_equal(frame_decode(g3, sizeof(g3), FRAME_MAX_DEFAULT, &d), IHALA_EBADFRAME);
	assert_int_equal(frame_decode(g4, sizeof(g4), FRAME_MAX_DEFAULT, &d), IHALA_EBADFRAME);
	assert_int_equal(frame_decode(g5, sizeof(g5), FRAME_MAX_DEFAULT, &d), IHALA_EBADFRAME);
	assert_null(d);

	/* Random bytes: never a crash, and anything accepted is canonical. */
	for (i = 0; i < 20000; i++) {
		uint8_t buf[48];
		size_t n;
		int rc;

		seed = seed * 1103515245u + 12345u;
		n = (seed >> 16) % sizeof(buf);
		for (j = 0; j < n; j++) {
			seed = seed * 1103515245u + 12345u;
			buf[j] = (uint8_t)(seed >> 16);
		}
		/* Half of them start like a real frame, to get past the first byte. */
		if (n >= 2 && (i & 1)) {
			buf[0] = (uint8_t)((1 + (seed >> 8) % 15) << 3 | 2);
			buf[1] = (uint8_t)(n - 2);
		}
		rc = frame_decode(buf, n, FRAME_MAX_DEFAULT, &d);
		if (rc == 0) {
			uint8_t *again;
			size_t alen;

			accepted++;
			assert_int_equal(frame_encode(d, &again, &alen), 0);
			assert_int_equal(alen, n);
			assert_memory_equal(again, buf, n);
			free(again);
			frame_free(d);
			d = NULL;
		} else {
			assert_true(rc == IHALA_EBADFRAME || rc == IHALA_EUNKNOWNFRAME ||
			            rc == IHALA_EUTF8);
			assert_null(d);
		}
	}
	/* The generator does reach valid frames, so the check above runs. */
	assert_true(accepted > 0);
}

static void
test_oversize(void **state)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT, *d = NULL;
	Ihala__V2__Error e = IHALA__V2__ERROR__INIT;
	uint8_t *body;
	size_t len;

	(void)state;
	e.code = IHALA__V2__ERROR_CODE__ERROR_CODE_PROTOCOL;
	e.message = "0123456789012345678901234567890123456789";
	f.kind_case = IHALA__V2__FRAME__KIND_ERROR;
	f.error = &e;
	body = frame_body(&f, &len);
	assert_int_equal(frame_decode(body, len, len, &d), 0);
	frame_free(d);
	d = NULL;
	assert_int_equal(frame_decode(body, len, len - 1, &d), IHALA_EFRAMESIZE);
	assert_null(d);
	assert_int_equal(frame_decode(body, len, 0, &d), IHALA_EINVAL);
	assert_int_equal(frame_decode(body, len, FRAME_MAX_LIMIT + 1, &d), IHALA_EINVAL);
	free(body);
}

static void
test_no_kind(void **state)
{
	/* An unknown kind (field 40, from a later version), empty. */
	static const uint8_t future[] = {0xc2, 0x02, 0x00};
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT, *d = NULL;
	uint8_t *out = NULL;
	size_t outlen;

	(void)state;
	assert_int_equal(frame_decode((const uint8_t *)"", 0, FRAME_MAX_DEFAULT, &d),
	                 IHALA_EUNKNOWNFRAME);
	assert_int_equal(frame_decode(future, sizeof(future), FRAME_MAX_DEFAULT, &d),
	                 IHALA_EUNKNOWNFRAME);
	assert_null(d);
	/* Nor does the encoder produce one. */
	assert_int_equal(frame_encode(&f, &out, &outlen), IHALA_EINVAL);
	f.kind_case = IHALA__V2__FRAME__KIND_WELCOME;
	f.welcome = NULL;
	assert_int_equal(frame_encode(&f, &out, &outlen), IHALA_EINVAL);
	assert_null(out);
}

static void
test_trailing_and_noncanonical(void **state)
{
	/* DeliveryAck{seq = 1}: 2a 02 08 01 */
	static const uint8_t ok[] = {0x2a, 0x02, 0x08, 0x01};
	/* ...followed by an unknown field 99 = 1 */
	static const uint8_t unknown[] = {0x2a, 0x02, 0x08, 0x01, 0x98, 0x06, 0x01};
	/* ...with the unknown field inside the DeliveryAck */
	static const uint8_t unknown_in[] = {0x2a, 0x05, 0x08, 0x01, 0x98, 0x06, 0x01};
	/* ...followed by a second copy of itself (merged by protobuf) */
	static const uint8_t twice[] = {0x2a, 0x02, 0x08, 0x01, 0x2a, 0x02, 0x08, 0x02};
	/* ...followed by a second kind (the oneof would silently switch) */
	static const uint8_t two_kinds[] = {0x2a, 0x02, 0x08, 0x01, 0x6a, 0x02, 0x08, 0x01};
	/* ...followed by a stray byte */
	static const uint8_t stray[] = {0x2a, 0x02, 0x08, 0x01, 0x00};
	/* seq = 0 written explicitly (proto3 omits defaults) */
	static const uint8_t explicit_default[] = {0x2a, 0x02, 0x08, 0x00};
	/* seq = 1 as a two-byte varint */
	static const uint8_t long_varint[] = {0x2a, 0x03, 0x08, 0x81, 0x00};
	/* Query{request_id = 1, referral_id = "a\0b"}: C would read "a" */
	static const uint8_t nul_in_string[] = {0x32, 0x07, 0x08, 0x01, 0x12,
	                                        0x03, 0x61, 0x00, 0x62};
	Ihala__V2__Frame *d = NULL;

	(void)state;
	assert_int_equal(frame_decode(ok, sizeof(ok), FRAME_MAX_DEFAULT, &d), 0);
	assert_int_equal(d->kind_case, IHALA__V2__FRAME__KIND_DELIVERY_ACK);
	assert_true(d->delivery_ack->seq == 1);
	frame_free(d);
	d = NULL;

	assert_int_equal(frame_decode(unknown, sizeof(unknown), FRAME_MAX_DEFAULT, &d),
	                 IHALA_EBADFRAME);
	assert_int_equal(frame_decode(unknown_in, sizeof(unknown_in), FRAME_MAX_DEFAULT, &d),
	                 IHALA_EBADFRAME);
	assert_int_equal(frame_decode(twice, sizeof(twice), FRAME_MAX_DEFAULT, &d),
	                 IHALA_EBADFRAME);
	assert_int_equal(frame_decode(two_kinds, sizeof(two_kinds), FRAME_MAX_DEFAULT, &d),
	                 IHALA_EBADFRAME);
	assert_int_equal(frame_decode(stray, sizeof(stray), FRAME_MAX_DEFAULT, &d),
	                 IHALA_EBADFRAME);
	assert_int_equal(
	    frame_decode(explicit_default, sizeof(explicit_default), FRAME_MAX_DEFAULT, &d),
	    IHALA_EBADFRAME);
	assert_int_equal(frame_decode(long_varint, sizeof(long_varint), FRAME_MAX_DEFAULT, &d),
	                 IHALA_EBADFRAME);
	assert_int_equal(frame_decode(nul_in_string, sizeof(nul_in_string), FRAME_MAX_DEFAULT, &d),
	                 IHALA_EBADFRAME);
	assert_null(d);
}

static void
test_envelope_refusals(void **state)
{
	struct referral_fixture r;
	Ihala__V2__Envelope empty = IHALA__V2__ENVELOPE__INIT, *e = NULL;
	uint8_t *buf, *longer;
	size_t len;

	(void)state;
	/* No kind. */
	empty.message_id = "m1";
	buf = pack(&empty.base, &len);
	assert_int_equal(envelope_decode(buf, len, &e), IHALA_ESCHEMA);
	free(buf);

	/* An enum value the schema does not define, deep inside. */
	referral_fixture_init(&r);
	r.inj.device_type = (Ihala__V2__DeviceType)99;
	buf = pack(&r.env.base, &len);
	assert_int_equal(envelope_decode(buf, len, &e), IHALA_ESCHEMA);
	free(buf);
	referral_fixture_init(&r);
	r.data[1] = (Ihala__V2__DataCategory)1000;
	buf = pack(&r.env.base, &len);
	assert_int_equal(envelope_decode(buf, len, &e), IHALA_ESCHEMA);
	free(buf);

	/* Invalid UTF-8 in the survivor's name. */
	referral_fixture_init(&r);
	r.surv.name = "\xd9\x86\xd9"; /* Arabic noon, then a cut sequence */
	buf = pack(&r.env.base, &len);
	assert_int_equal(envelope_decode(buf, len, &e), IHALA_EUTF8);
	free(buf);

	/* Trailing unknown field. */
	referral_fixture_init(&r);
	buf = pack(&r.env.base, &len);
	longer = malloc(len + 3);
	assert_non_null(longer);
	memcpy(longer, buf, len);
	longer[len] = 0x98; /* field 99, varint */
	longer[len + 1] = 0x06;
	longer[len + 2] = 0x01;
	assert_int_equal(envelope_decode(longer, len + 3, &e), IHALA_EBADFRAME);
	assert_int_equal(envelope_decode(buf, len, &e), 0);
	check_referral(e);
	envelope_free(e);
	free(longer);
	free(buf);
}

/* Frames carry enum numbers they do not know (newer broker), but not bad text. */
static void
test_frame_enums_and_utf8(void **state)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT, *d = NULL;
	Ihala__V2__Welcome w = IHALA__V2__WELCOME__INIT;
	uint8_t *body;
	size_t len;

	(void)state;
	w.agency_id = "moh";
	w.role = (Ihala__V2__Role)77;
	f.kind_case = IHALA__V2__FRAME__KIND_WELCOME;
	f.welcome = &w;
	body = frame_body(&f, &len);
	assert_int_equal(frame_decode(body, len, FRAME_MAX_DEFAULT, &d), 0);
	assert_int_equal(d->welcome->role, 77);
	assert_int_equal(pb_check_enums(&d->base), IHALA_ESCHEMA);
	frame_free(d);
	d = NULL;
	free(body);

	w.role = IHALA__V2__ROLE__ROLE_NGO;
	w.agency_id = "\xed\xa0\x80"; /* a surrogate */
	body = frame_body(&f, &len);
	assert_int_equal(frame_decode(body, len, FRAME_MAX_DEFAULT, &d), IHALA_EUTF8);
	assert_null(d);
	free(body);
}

/* ---------------------------------------------------------------------------
 * UTF-8
 */

static int
utf8(const char *s)
{
	return pb_utf8_valid((const uint8_t *)s, strlen(s));
}

static void
test_utf8_valid(void **state)
{
	(void)state;
	assert_true(utf8(NAME_AR));
	assert_true(utf8(NAME_CKB));
	assert_true(utf8("Hêvî Şêxo")); /* Kurmanji, Latin script */
	assert_true(utf8(""));
	assert_true(utf8("plain ascii ~"));
	assert_true(utf8("\xc2\x80"));                          /* U+0080, smallest 2-byte */
	assert_true(utf8("\xe0\xa0\x80"));                      /* U+0800, smallest 3-byte */
	assert_true(utf8("\xed\x9f\xbf"));                      /* U+D7FF, just below surrogates */
	assert_true(utf8("\xee\x80\x80"));                      /* U+E000, just above */
	assert_true(utf8("\xef\xbf\xbf"));                      /* U+FFFF */
	assert_true(utf8("\xf0\x90\x80\x80"));                  /* U+10000, smallest 4-byte */
	assert_true(utf8("\xf0\x9f\x98\x80"));                  /* U+1F600 */
	assert_true(utf8("\xf4\x8f\xbf\xbf"));                  /* U+10FFFF, the last one */
	assert_true(pb_utf8_valid((const uint8_t *)"a\0b", 3)); /* NUL is UTF-8 */
}

static void
test_utf8_invalid(void **state)
{
	static const char *bad[] = {
	    "\x80",                     /* lone continuation */
	    "a\xbf",                    /* continuation after ASCII */
	    "\xc0\xaf",                 /* overlong '/' */
	    "\xc1\xbf",                 /* overlong U+007F */
	    "\xe0\x80\xaf",             /* overlong '/' in 3 bytes */
	    "\xe0\x9f\xbf",             /* overlong U+07FF */
	    "\xf0\x80\x80\xaf",         /* overlong '/' in 4 bytes */
	    "\xf0\x8f\xbf\xbf",         /* overlong U+FFFF */
	    "\xed\xa0\x80",             /* U+D800 high surrogate */
	    "\xed\xbf\xbf",             /* U+DFFF low surrogate */
	    "\xed\xa0\xbd\xed\xb8\x80", /* CESU-8 surrogate pair */
	    "\xf4\x90\x80\x80",         /* U+110000 */
	    "\xf5\x80\x80\x80",         /* lead byte past U+10FFFF */
	    "\xf8\x88\x80\x80\x80",     /* 5-byte form */
	    "\xfe",
	    "\xff",
	    "\xe2\x82",             /* cut euro sign */
	    "\xe2\x41\x41",         /* lead then ASCII */
	    "\xf0\x9f\x98",         /* cut emoji */
	    "\xd9\x86\xd9\x88\xd8", /* "نو" then half a letter */
	    "\xda\xd5\x86",         /* Kurdish letter with a bad continuation */
	};
	char cut[sizeof(NAME_CKB)];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (utf8(bad[i])) {
			fail_msg("accepted invalid UTF-8 #%zu", i);
		}
	}
	/* Every cut inside a multi-byte letter of a real name is refused. */
	for (i = 1; i < strlen(NAME_CKB); i++) {
		int boundary = ((unsigned char)NAME_CKB[i] & 0xc0) != 0x80;

		memcpy(cut, NAME_CKB, i);
		cut[i] = '\0';
		assert_int_equal(utf8(cut), boundary);
	}
}

static void
test_check_utf8_walk(void **state)
{
	struct referral_fixture r;
	Ihala__V2__ProofRequest p = IHALA__V2__PROOF_REQUEST__INIT;
	char *agencies[2] = {"moh", "h\xc0\xaf"};

	(void)state;
	referral_fixture_init(&r);
	assert_int_equal(pb_check_utf8(&r.env.base), 0);
	assert_int_equal(pb_check_enums(&r.env.base), 0);

	r.surv.name = "\xed\xb0\x80"; /* deep inside: envelope.referral.survivor.name */
	assert_int_equal(pb_check_utf8(&r.env.base), IHALA_EUTF8);
	r.surv.name = NAME_AR;
	r.consent.agencies = agencies; /* a repeated string, second element */
	assert_int_equal(pb_check_utf8(&r.env.base), IHALA_EUTF8);
	r.consent.agencies = r.agencies;
	r.injury_codes[1] = "\xf4\x90\x80\x80";
	assert_int_equal(pb_check_utf8(&r.env.base), IHALA_EUTF8);
	r.injury_codes[1] = "dysfunction.hearing.left";
	assert_int_equal(pb_check_utf8(&r.env.base), 0);

	/* A string in a oneof counts only while its case is set. */
	p.target_case = IHALA__V2__PROOF_REQUEST__TARGET_MESSAGE_ID;
	p.message_id = "\xff";
	assert_int_equal(pb_check_utf8(&p.base), IHALA_EUTF8);
	p.target_case = IHALA__V2__PROOF_REQUEST__TARGET_SEQ;
	p.seq = 5;
	assert_int_equal(pb_check_utf8(&p.base), 0);

	assert_int_equal(pb_check_utf8(NULL), IHALA_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip_every_kind),
	    cmocka_unit_test(test_envelope_kinds),
	    cmocka_unit_test(test_truncated),
	    cmocka_unit_test(test_garbage),
	    cmocka_unit_test(test_oversize),
	    cmocka_unit_test(test_no_kind),
	    cmocka_unit_test(test_trailing_and_noncanonical),
	    cmocka_unit_test(test_envelope_refusals),
	    cmocka_unit_test(test_arena_decode),
	    cmocka_unit_test(test_arena_refusals),
	    cmocka_unit_test(test_frame_enums_and_utf8),
	    cmocka_unit_test(test_utf8_valid),
	    cmocka_unit_test(test_utf8_invalid),
	    cmocka_unit_test(test_check_utf8_walk),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
