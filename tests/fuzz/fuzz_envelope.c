/* fuzz_envelope.c - fuzz target: envelope_decode, then policy_check against fuzzed state. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "frame.h"
#include "fuzz.h"
#include "log.h"
#include "pbjson.h"
#include "policy.h"

/*
 * Input: 4 control bytes, then an encoded Envelope (what Submit.envelope carries).
 *   byte 0: bits 0-2 the sender (index into the agencies below, 5 = not configured),
 *           bit 3 the referral exists (a current state is passed), bit 4 a parent state is
 *           passed, bit 5 the current state names another referral id than the envelope
 *   byte 1: current status (any value 0..15, also ones the schema does not define)
 *   byte 2: low nibble the referrer, high nibble the recipient of the current state (two
 *           different agencies among dma, moh, molsa, hi: the states the broker can hold)
 *   byte 3: low nibble the parent's status, high nibble its recipient (any id)
 * The agency view is fixed: the five agencies of the test configs with some narrowed.
 * Invariants: a decision is a refusal with a negative code and a sentence, or an allowance
 * whose recipient is a configured agency other than the sender and whose status change is
 * one policy_transition allows; an envelope the decoder accepts survives the JSON mapping
 * (pbjson_to_string, then pbjson_from_string, packs to the same bytes).
 */

static const char *const ids[] = {"dma", "moh", "molsa", "hi", "auditor", "ghost"};
#define NIDS (sizeof(ids) / sizeof(ids[0]))

static const char *const molsa_to[] = {"dma", "moh"};

static struct policy_agency agencies[5];

static const struct policy_agency *
view_find(void *ctx, const char *id)
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

static const struct policy_view view = {view_find, NULL};

static void
set_agency(size_t i, const char *id, Ihala__V2__Role role, unsigned may_send, const char *const *to,
           size_t nto, int may_open)
{
	agencies[i].id = id;
	agencies[i].role = role;
	agencies[i].may_send = may_send;
	agencies[i].may_send_to = to;
	agencies[i].n_may_send_to = nto;
	agencies[i].may_open_cases = may_open;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const Ihala__V2__Role dma = IHALA__V2__ROLE__ROLE_DMA;
	const Ihala__V2__Role ministry = IHALA__V2__ROLE__ROLE_MINISTRY;
	const Ihala__V2__Role auditor = IHALA__V2__ROLE__ROLE_AUDITOR;

	(void)argc;
	(void)argv;
	log_setlevel(LOG_LEVEL_ERROR);
	pbjson_set_bytes_hook(pbjson_ihala_embedded);
	set_agency(0, "dma", dma, policy_role_default(dma), NULL, 0, 1);
	set_agency(1, "moh", ministry, policy_role_default(ministry), NULL, 0, 0);
	/* narrowed recipients */
	set_agency(2, "molsa", ministry, policy_role_default(ministry), molsa_to, 2, 0);
	/* an NGO the config lets open cases, but not report outcomes */
	set_agency(3, "hi", IHALA__V2__ROLE__ROLE_NGO,
	           POLICY_KIND_STATUS | POLICY_KIND_NOTE | POLICY_KIND_REFERRAL, NULL, 0, 1);
	set_agency(4, "auditor", auditor, policy_role_default(auditor), NULL, 0, 0);
	return 0;
}

static void
check_json_roundtrip(const Ihala__V2__Envelope *env)
{
	ProtobufCMessage *back = NULL;
	char *text = NULL, err[256];
	uint8_t *a, *b;
	size_t alen, blen;
	int rc;

	rc = pbjson_to_string(&env->base, 0, &text);
	FUZZ_ASSERT(rc == 0);
	rc = pbjson_from_string(&ihala__v2__envelope__descriptor, text, strlen(text), &back, err,
	                        sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "pbjson_from_string refused its own output: %s\n%s\n", err, text);
	}
	FUZZ_ASSERT(rc == 0);
	alen = protobuf_c_message_get_packed_size(&env->base);
	blen = protobuf_c_message_get_packed_size(back);
	FUZZ_ASSERT(alen == blen);
	a = malloc(alen + 1);
	b = malloc(blen + 1);
	FUZZ_ASSERT(a != NULL && b != NULL);
	protobuf_c_message_pack(&env->base, a);
	protobuf_c_message_pack(back, b);
	FUZZ_ASSERT(memcmp(a, b, alen) == 0);
	free(a);
	free(b);
	protobuf_c_message_free_unpacked(back, NULL);
	free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Ihala__V2__Envelope *env = NULL;
	Ihala__V2__ReferralState cur = IHALA__V2__REFERRAL_STATE__INIT;
	Ihala__V2__ReferralState parent = IHALA__V2__REFERRAL_STATE__INIT;
	struct policy_decision d;
	const char *sender, *rid;
	int err;

	if (size < 4) {
		return 0;
	}
	err = envelope_decode(data + 4, size - 4, &env);
	if (err != 0) {
		FUZZ_ASSERT(err < 0 && env == NULL);
		return 0;
	}
	FUZZ_ASSERT(env->kind_case != IHALA__V2__ENVELOPE__KIND__NOT_SET);
	check_json_roundtrip(env);

	sender = ids[(data[0] & 7) % NIDS];
	rid = policy_referral_id(env);
	cur.referral_id = (char *)((data[0] & 0x20) || rid == NULL ? "other-id" : rid);
	cur.status = (Ihala__V2__TaskStatus)(data[1] & 15);
	/* a state the broker can hold: two different agencies that may send and receive */
	cur.referrer = (char *)ids[(data[2] & 15) % 4];
	cur.recipient = (char *)ids[((data[2] & 15) % 4 + 1 + (data[2] >> 4) % 3) % 4];
	cur.priority = IHALA__V2__PRIORITY__PRIORITY_NORMAL;
	parent.referral_id = "parent-id";
	parent.status = (Ihala__V2__TaskStatus)(data[3] & 15);
	parent.referrer = "dma";
	parent.recipient = (char *)ids[(data[3] >> 4) % NIDS];

	err = policy_check(&view, sender, env, (data[0] & 0x08) ? &cur : NULL,
	                   (data[0] & 0x10) ? &parent : NULL, &d);
	FUZZ_ASSERT(err == d.err);
	FUZZ_ASSERT(memchr(d.text, '\0', sizeof(d.text)) != NULL);
	FUZZ_ASSERT(memchr(d.recipient, '\0', sizeof(d.recipient)) != NULL);
	if (err != 0) {
		FUZZ_ASSERT(err < 0 && d.text[0] != '\0');
		FUZZ_ASSERT(strcmp(ihala_strerror(err), "") != 0);
	} else {
		const struct policy_agency *me = view_find(NULL, sender);

		FUZZ_ASSERT(me != NULL && me->role != IHALA__V2__ROLE__ROLE_AUDITOR);
		FUZZ_ASSERT(view_find(NULL, d.recipient) != NULL);
		FUZZ_ASSERT(strcmp(d.recipient, sender) != 0);
		FUZZ_ASSERT((me->may_send & d.kind) != 0);
		if (env->kind_case == IHALA__V2__ENVELOPE__KIND_REFERRAL) {
			FUZZ_ASSERT(!(data[0] & 0x08));
			FUZZ_ASSERT(d.new_status == IHALA__V2__TASK_STATUS__TASK_STATUS_REQUESTED);
		} else {
			/* only a party of an existing referral acts on it, and not after the end */
			FUZZ_ASSERT(data[0] & 0x08);
			FUZZ_ASSERT(strcmp(cur.referrer, sender) == 0 ||
			            strcmp(cur.recipient, sender) == 0);
		}
		if (env->kind_case == IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE) {
			enum policy_party who = strcmp(cur.referrer, sender) == 0
			                            ? POLICY_PARTY_REFERRER
			                            : POLICY_PARTY_RECIPIENT;

			FUZZ_ASSERT(d.new_status == env->status_update->status);
			FUZZ_ASSERT(!policy_is_terminal(cur.status));
			FUZZ_ASSERT(policy_transition(who, cur.status, d.new_status,
			                              env->status_update->outcome != NULL) == 0);
		}
	}
	FUZZ_ASSERT(policy_status_name((Ihala__V2__TaskStatus)(data[1] & 15)) != NULL);
	envelope_free(env);
	return 0;
}
