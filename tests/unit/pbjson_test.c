/* pbjson_test.c - unit tests of the JSON <-> protobuf mapper (proto/pbjson.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "ihala.pb-c.h"
#include "pbjson.h"

#define REFERRAL_ID "3f1c9a52-7b4e-4d0a-9c61-2a8e5d7f0b13"

/* A realistic referral in canonical output form (lowerCamel keys, short
 * enum names, only non-default fields), so a round trip must give it back
 * exactly. */
static const char referral_json[] =
    "{\"referralId\": \"" REFERRAL_ID "\","
    " \"referringAgency\": \"dma\", \"receivingAgency\": \"moh\","
    " \"priority\": \"urgent\","
    " \"services\": [\"physical-rehabilitation\", \"prosthetics-orthotics\","
    "  \"psychosocial-support\"],"
    " \"reason\": \"AP landmine, right below-knee amputation\","
    " \"survivor\": {\"caseId\": \"IQ-NIN-2024-00417\", \"name\": \"نور الهدى\","
    "  \"sex\": \"female\", \"birthYear\": 1996, \"governorate\": \"Ninewa\","
    "  \"district\": \"Sinjar\", \"displacement\": \"returnee\","
    "  \"functioning\": {\"seeing\": \"none\", \"walking\": \"a-lot\", \"selfCare\": \"some\"},"
    "  \"injury\": {\"incidentDate\": \"2024-03-11\", \"deviceType\": \"landmine-ap\","
    "   \"injuryCodes\": [\"injury.lower_limb\"], \"amputations\": [\"leg-right-below-knee\"]}},"
    " \"consent\": {\"given\": true, \"givenBy\": \"survivor\", \"date\": \"2024-04-02\","
    "  \"recordedBy\": \"ڕۆژان\", \"agencies\": [\"moh\", \"hi\"],"
    "  \"dataCovered\": [\"identity\", \"injury\", \"needs\"]},"
    " \"referringOfficer\": {\"name\": \"ڕۆژان\", \"organisation\": \"DMA VA\","
    "  \"phone\": \"+964 770 000 0417\"},"
    " \"notes\": \"تحتاج إلى وسيلة نقل\","
    " \"createdTimeMs\": 1712044800000}";

/* ---- helpers ---- */

static ProtobufCMessage *
parse_ok(const ProtobufCMessageDescriptor *d, const char *text)
{
	ProtobufCMessage *m = NULL;
	char err[512];
	int rc;

	rc = pbjson_from_string(d, text, strlen(text), &m, err, sizeof(err));
	if (rc != 0) {
		print_error("unexpected error %d: %s\n", rc, err);
	}
	assert_int_equal(rc, 0);
	assert_non_null(m);
	return m;
}

static void
expect_error(const ProtobufCMessageDescriptor *d, const char *text, int code, const char *msg)
{
	ProtobufCMessage *m = (ProtobufCMessage *)&m;
	char err[512];
	int rc;

	rc = pbjson_from_string(d, text, strlen(text), &m, err, sizeof(err));
	assert_int_equal(rc, code);
	assert_null(m);
	assert_string_equal(err, msg);
}

/* JSON text -> message -> protobuf bytes -> message -> JSON. */
static json_t *
roundtrip(const ProtobufCMessageDescriptor *d, const char *text, int flags)
{
	ProtobufCMessage *m = parse_ok(d, text), *m2;
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(n + 1);
	json_t *out = NULL;

	assert_non_null(buf);
	assert_int_equal(protobuf_c_message_pack(m, buf), n);
	protobuf_c_message_free_unpacked(m, NULL);
	m2 = protobuf_c_message_unpack(d, NULL, n, buf);
	free(buf);
	assert_non_null(m2);
	assert_int_equal(pbjson_to_json(m2, flags, &out), 0);
	protobuf_c_message_free_unpacked(m2, NULL);
	return out;
}

static void
assert_roundtrip_equal(const ProtobufCMessageDescriptor *d, const char *text)
{
	json_t *want = json_loads(text, 0, NULL), *got;

	assert_non_null(want);
	got = roundtrip(d, text, 0);
	if (!json_equal(want, got)) {
		char *a = json_dumps(want, JSON_COMPACT), *b = json_dumps(got, JSON_COMPACT);

		print_error("want %s\n got %s\n", a, b);
		free(a);
		free(b);
	}
	assert_true(json_equal(want, got));
	json_decref(want);
	json_decref(got);
}

static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (f == NULL) {
		print_error("cannot open %s (tests run from the repo root)\n", path);
		fail();
	}
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* ---- a hand-made recursive message, for depth, floats and proto2 labels ---- */

struct node {
	ProtobufCMessage base;
	int32_t value;
	struct node *child;
	double ratio;
	float weight;
	size_t n_kids;
	struct node **kids;
	protobuf_c_boolean has_opt;
	int64_t opt;
	int colour;
};

static const ProtobufCMessageDescriptor node_descriptor;

static const ProtobufCEnumValue colour_values[] = {
    {"COLOR_RED", "COLOR_RED", 1},
    {"COLOR_DARK_BLUE", "COLOR_DARK_BLUE", 2},
};
static const ProtobufCEnumValueIndex colour_by_name[] = {
    {"COLOR_DARK_BLUE", 1},
    {"COLOR_RED", 0},
};
static const ProtobufCIntRange colour_ranges[] = {{1, 0}, {0, 2}};
/* Type name "Colour" does not prefix the values "COLOR_*": the common
 * prefix rule must find "COLOR_". */
static const ProtobufCEnumDescriptor colour_descriptor = {
    PROTOBUF_C__ENUM_DESCRIPTOR_MAGIC,
    "test.Colour",
    "Colour",
    "Colour",
    "test",
    2,
    colour_values,
    2,
    colour_by_name,
    1,
    colour_ranges,
    NULL,
    NULL,
    NULL,
    NULL,
};

static const ProtobufCFieldDescriptor node_fields[] = {
    {"value", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_INT32, 0, offsetof(struct node, value),
     NULL, NULL, 0, 0, NULL, NULL},
    {"child", 2, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_MESSAGE, 0, offsetof(struct node, child),
     &node_descriptor, NULL, 0, 0, NULL, NULL},
    {"ratio", 3, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_DOUBLE, 0, offsetof(struct node, ratio),
     NULL, NULL, 0, 0, NULL, NULL},
    {"weight", 4, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_FLOAT, 0, offsetof(struct node, weight),
     NULL, NULL, 0, 0, NULL, NULL},
    {"kids", 5, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_MESSAGE, offsetof(struct node, n_kids),
     offsetof(struct node, kids), &node_descriptor, NULL, 0, 0, NULL, NULL},
    {"opt", 6, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_SINT64, offsetof(struct node, has_opt),
     offsetof(struct node, opt), NULL, NULL, 0, 0, NULL, NULL},
    {"colour", 7, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_ENUM, 0, offsetof(struct node, colour),
     &colour_descriptor, NULL, 0, 0, NULL, NULL},
};
static const unsigned node_by_name[] = {1, 6, 4, 5, 2, 0, 3};
static const ProtobufCIntRange node_ranges[] = {{1, 0}, {0, 7}};

static void
node_init(ProtobufCMessage *m)
{
	memset(m, 0, sizeof(struct node));
	m->descriptor = &node_descriptor;
}

static const ProtobufCMessageDescriptor node_descriptor = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "test.Node",
    "Node",
    "Node",
    "test",
    sizeof(struct node),
    7,
    node_fields,
    node_by_name,
    1,
    node_ranges,
    node_init,
    NULL,
    NULL,
    NULL,
};

/* ---- round trips of the real messages ---- */

static void
test_referral_roundtrip(void **state)
{
	Ihala__V2__Referral *r;

	(void)state;
	r = (Ihala__V2__Referral *)parse_ok(&ihala__v2__referral__descriptor, referral_json);
	assert_string_equal(r->referral_id, REFERRAL_ID);
	assert_int_equal(r->priority, IHALA__V2__PRIORITY__PRIORITY_URGENT);
	assert_int_equal(r->n_services, 3);
	assert_int_equal(r->services[1],
	                 IHALA__V2__SERVICE_CODE__SERVICE_CODE_PROSTHETICS_ORTHOTICS);
	assert_string_equal(r->survivor->name, "نور الهدى");
	assert_int_equal(r->survivor->birth_year, 1996);
	assert_int_equal(r->survivor->functioning->walking,
	                 IHALA__V2__DIFFICULTY__DIFFICULTY_A_LOT);
	assert_int_equal(r->survivor->functioning->hearing,
	                 IHALA__V2__DIFFICULTY__DIFFICULTY_UNSPECIFIED);
	assert_int_equal(r->survivor->injury->amputations[0],
	                 IHALA__V2__AMPUTATION__AMPUTATION_LEG_RIGHT_BELOW_KNEE);
	assert_true(r->consent->given);
	assert_int_equal(r->consent->n_agencies, 2);
	assert_string_equal(r->consent->agencies[1], "hi");
	assert_string_equal(r->referring_officer->name, "ڕۆژان");
	assert_string_equal(r->parent_referral_id, "");
	assert_true(r->created_time_ms == UINT64_C(1712044800000));
	protobuf_c_message_free_unpacked(&r->base, NULL);

	assert_roundtrip_equal(&ihala__v2__referral__descriptor, referral_json);
}

static void
test_envelope_roundtrip(void **state)
{
	char *text;
	size_t n;
	Ihala__V2__Envelope *e;

	(void)state;
	n = strlen(referral_json) + 256;
	text = malloc(n);
	assert_non_null(text);
	snprintf(text, n,
	         "{\"messageId\": \"dma-2024-0417-1\", \"to\": \"moh\", \"from\": \"dma\","
	         " \"clientTimeMs\": 1712044800123, \"referral\": %s}",
	         referral_json);
	e = (Ihala__V2__Envelope *)parse_ok(&ihala__v2__envelope__descriptor, text);
	assert_int_equal(e->kind_case, IHALA__V2__ENVELOPE__KIND_REFERRAL);
	assert_string_equal(e->referral->survivor->district, "Sinjar");
	protobuf_c_message_free_unpacked(&e->base, NULL);
	assert_roundtrip_equal(&ihala__v2__envelope__descriptor, text);
	free(text);
}

static void
test_outcome_status_roundtrip(void **state)
{
	static const char outcome[] =
	    "{\"referralId\": \"" REFERRAL_ID "\", \"serviceImplemented\": true,"
	    " \"servicesDelivered\": [\"physical-rehabilitation\", \"prosthetics-orthotics\"],"
	    " \"date\": \"2024-06-18\", \"notSuccessfulReasons\": [\"client-did-not-attend\"],"
	    " \"followUpNeeded\": true, \"notes\": \"ڕۆژان: طرف صناعي\"}";
	static const char status[] =
	    "{\"referralId\": \"" REFERRAL_ID "\", \"status\": \"failed\","
	    " \"businessStatus\": \"device not fitted\", \"reasonCode\": \"client-relocated\","
	    " \"reason\": \"moved to Duhok\", \"note\": \"نور الهدى انتقلت\","
	    " \"outcome\": {\"referralId\": \"" REFERRAL_ID "\", \"date\": \"2024-06-18\","
	    "  \"notSuccessfulReasons\": [\"client-relocated\", \"other\"]}}";
	static const char env[] =
	    "{\"messageId\": \"moh-77\", \"statusUpdate\": {\"referralId\": \"r1\","
	    " \"status\": \"on-hold\", \"reasonCode\": \"waiting-time-too-long\"}}";
	Ihala__V2__StatusUpdate *s;

	(void)state;
	assert_roundtrip_equal(&ihala__v2__outcome__descriptor, outcome);
	assert_roundtrip_equal(&ihala__v2__status_update__descriptor, status);
	assert_roundtrip_equal(&ihala__v2__envelope__descriptor, env);

	s = (Ihala__V2__StatusUpdate *)parse_ok(&ihala__v2__status_update__descriptor, status);
	assert_int_equal(s->status, IHALA__V2__TASK_STATUS__TASK_STATUS_FAILED);
	assert_int_equal(s->outcome->n_not_successful_reasons, 2);
	assert_int_equal(s->outcome->not_successful_reasons[1],
	                 IHALA__V2__REASON_CODE__REASON_CODE_OTHER);
	assert_false(s->outcome->success);
	protobuf_c_message_free_unpacked(&s->base, NULL);
}

/* The shipped examples are what `ihala refer/outcome/progress --file` read. */
static void
test_example_files(void **state)
{
	char err[512], *text;
	size_t len;
	ProtobufCMessage *m;
	Ihala__V2__Referral *r;
	Ihala__V2__Outcome *o;
	Ihala__V2__StatusUpdate *s;
	json_t *j;

	(void)state;
	text = read_file("config/examples/referral.json", &len);
	assert_int_equal(
	    pbjson_from_string(&ihala__v2__referral__descriptor, text, len, &m, err, sizeof(err)),
	    0);
	r = (Ihala__V2__Referral *)m;
	assert_string_equal(r->receiving_agency, "moh");
	assert_string_equal(r->referring_agency, "dma");
	assert_int_equal(r->n_services, 3);
	assert_int_equal(r->services[0],
	                 IHALA__V2__SERVICE_CODE__SERVICE_CODE_PHYSICAL_REHABILITATION);
	assert_int_equal(r->services[2],
	                 IHALA__V2__SERVICE_CODE__SERVICE_CODE_PSYCHOSOCIAL_SUPPORT);
	assert_string_equal(r->survivor->governorate, "Ninewa");
	assert_string_equal(r->survivor->district, "Sinjar");
	assert_int_equal(r->survivor->injury->device_type,
	                 IHALA__V2__DEVICE_TYPE__DEVICE_TYPE_LANDMINE_AP);
	assert_int_equal(r->survivor->injury->amputations[0],
	                 IHALA__V2__AMPUTATION__AMPUTATION_LEG_RIGHT_BELOW_KNEE);
	assert_int_equal(r->consent->given_by, IHALA__V2__CONSENT_GIVER__CONSENT_GIVER_SURVIVOR);
	assert_int_equal(r->consent->n_agencies, 2);
	assert_string_equal(r->consent->agencies[0], "moh");
	assert_string_equal(r->consent->agencies[1], "hi");
	assert_true((unsigned char)r->survivor->name[0] >= 0xd8); /* Arabic script */
	assert_true((unsigned char)r->notes[0] >= 0xd8);
	/* the file is in canonical form: it comes back unchanged */
	assert_int_equal(pbjson_to_json(m, 0, &j), 0);
	{
		json_t *want = json_loadb(text, len, 0, NULL);

		assert_true(json_equal(want, j));
		json_decref(want);
	}
	json_decref(j);
	protobuf_c_message_free_unpacked(m, NULL);
	free(text);

	text = read_file("config/examples/outcome.json", &len);
	assert_int_equal(
	    pbjson_from_string(&ihala__v2__outcome__descriptor, text, len, &m, err, sizeof(err)),
	    0);
	o = (Ihala__V2__Outcome *)m;
	/* The example names no referral: `ihala outcome R` does. */
	assert_string_equal(o->referral_id, "");
	assert_true(o->service_implemented && o->success && o->follow_up_needed);
	assert_int_equal(o->n_services_delivered, 2);
	protobuf_c_message_free_unpacked(m, NULL);
	free(text);

	text = read_file("config/examples/status.json", &len);
	assert_int_equal(pbjson_from_string(&ihala__v2__status_update__descriptor, text, len, &m,
	                                    err, sizeof(err)),
	                 0);
	s = (Ihala__V2__StatusUpdate *)m;
	assert_string_equal(s->referral_id, REFERRAL_ID);
	assert_int_equal(s->status, IHALA__V2__TASK_STATUS__TASK_STATUS_IN_PROGRESS);
	protobuf_c_message_free_unpacked(m, NULL);
	free(text);
}

/* ---- enums ---- */

static void
test_enum_forms(void **state)
{
	static const char *const forms[] = {
	    "\"in-progress\"",
	    "\"in_progress\"",
	    "\"IN-PROGRESS\"",
	    "\"TASK_STATUS_IN_PROGRESS\"",
	    "\"task-status-in-progress\"",
	    "5",
	};
	char text[256], name[64];
	size_t i;
	int v;
	Ihala__V2__StatusUpdate *s;
	json_t *j;

	(void)state;
	for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		snprintf(text, sizeof(text), "{\"referralId\": \"r\", \"status\": %s}", forms[i]);
		s = (Ihala__V2__StatusUpdate *)parse_ok(&ihala__v2__status_update__descriptor,
		                                        text);
		assert_int_equal(s->status, IHALA__V2__TASK_STATUS__TASK_STATUS_IN_PROGRESS);
		assert_int_equal(pbjson_to_json(&s->base, 0, &j), 0);
		assert_string_equal(json_string_value(json_object_get(j, "status")), "in-progress");
		json_decref(j);
		protobuf_c_message_free_unpacked(&s->base, NULL);
	}

	assert_int_equal(
	    pbjson_enum_to_name(&ihala__v2__task_status__descriptor, 6, name, sizeof(name)), 0);
	assert_string_equal(name, "on-hold");
	assert_int_equal(
	    pbjson_enum_to_name(&ihala__v2__error_code__descriptor, 20, name, sizeof(name)), 0);
	assert_string_equal(name, "bad-frame");
	assert_int_equal(
	    pbjson_enum_to_name(&ihala__v2__error_code__descriptor, 0, name, sizeof(name)), 0);
	assert_string_equal(name, "ok");
	assert_int_equal(
	    pbjson_enum_to_name(&ihala__v2__error_code__descriptor, 99, name, sizeof(name)),
	    IHALA_ENOTFOUND);
	assert_int_equal(pbjson_enum_to_name(&ihala__v2__task_status__descriptor, 5, name, 4),
	                 IHALA_EINVAL);
	assert_int_equal(
	    pbjson_enum_from_name(&ihala__v2__reason_code__descriptor, "client-did-not-attend", &v),
	    0);
	assert_int_equal(v, 22);
	assert_int_equal(pbjson_enum_from_name(&ihala__v2__priority__descriptor, "asap", &v),
	                 IHALA_ENOTFOUND);
	assert_int_equal(pbjson_enum_from_name(&ihala__v2__priority__descriptor, "", &v),
	                 IHALA_ENOTFOUND);
	/* prefix from the common prefix when the type name does not match */
	assert_int_equal(pbjson_enum_to_name(&colour_descriptor, 2, name, sizeof(name)), 0);
	assert_string_equal(name, "dark-blue");
	assert_int_equal(pbjson_enum_from_name(&colour_descriptor, "red", &v), 0);
	assert_int_equal(v, 1);

	expect_error(&ihala__v2__referral__descriptor, "{\"priority\": \"asap\"}", IHALA_EJSON,
	             "referral.priority: unknown value \"asap\""
	             " (expected one of: emergency, urgent, normal)");
	expect_error(
	    &ihala__v2__referral__descriptor, "{\"priority\": 7}", IHALA_EJSON,
	    "referral.priority: unknown value 7 (expected one of: emergency, urgent, normal)");
	expect_error(&ihala__v2__referral__descriptor, "{\"priority\": true}", IHALA_EJSON,
	             "referral.priority: expected an enum name or number, got true");
	expect_error(&ihala__v2__referral__descriptor, "{\"services\": [\"legal\", \"surgery\"]}",
	             IHALA_EJSON,
	             "referral.services[1]: unknown value \"surgery\" (expected one of: "
	             "emergency-medical, ongoing-medical, physical-rehabilitation, "
	             "prosthetics-orthotics, assistive-devices, psychosocial-support, "
	             "social-protection, economic-inclusion, education, legal, other)");
	/* the prefix alone is not a value name */
	expect_error(
	    &ihala__v2__survivor__descriptor, "{\"sex\": \"SEX_\"}", IHALA_EJSON,
	    "survivor.sex: unknown value \"SEX_\" (expected one of: female, male, unknown)");
}

/* ---- numbers ---- */

static void
test_int64(void **state)
{
	Ihala__V2__Receipt *r;
	json_t *j;
	char *s;

	(void)state;
	r = (Ihala__V2__Receipt *)parse_ok(
	    &ihala__v2__receipt__descriptor,
	    "{\"seq\": \"18446744073709551615\", \"errorCode\": \"-40\"}");
	assert_true(r->seq == UINT64_MAX);
	assert_int_equal(r->error_code, -40);
	assert_int_equal(pbjson_to_string(&r->base, 0, &s), 0);
	assert_string_equal(s, "{\"seq\":\"18446744073709551615\",\"errorCode\":-40}");
	free(s);
	protobuf_c_message_free_unpacked(&r->base, NULL);

	/* up to 2^53 as numbers, beyond as strings, or always with the flag */
	r = (Ihala__V2__Receipt *)parse_ok(&ihala__v2__receipt__descriptor,
	                                   "{\"seq\": 9007199254740992}");
	assert_int_equal(pbjson_to_string(&r->base, 0, &s), 0);
	assert_string_equal(s, "{\"seq\":9007199254740992}");
	free(s);
	assert_int_equal(pbjson_to_string(&r->base, PBJSON_INT64_STRINGS, &s), 0);
	assert_string_equal(s, "{\"seq\":\"9007199254740992\"}");
	free(s);
	r->seq++;
	assert_int_equal(pbjson_to_string(&r->base, 0, &s), 0);
	assert_string_equal(s, "{\"seq\":\"9007199254740993\"}");
	free(s);
	protobuf_c_message_free_unpacked(&r->base, NULL);

	j = roundtrip(&ihala__v2__envelope__descriptor, "{\"clientTimeMs\": \"1712044800123\"}", 0);
	assert_true(json_integer_value(json_object_get(j, "clientTimeMs")) == 1712044800123LL);
	json_decref(j);

	expect_error(&ihala__v2__receipt__descriptor, "{\"seq\": -1}", IHALA_EJSON,
	             "receipt.seq: value -1 is out of range for uint64");
	expect_error(&ihala__v2__receipt__descriptor, "{\"seq\": \"-5\"}", IHALA_EJSON,
	             "receipt.seq: value -5 is out of range for uint64");
	expect_error(&ihala__v2__receipt__descriptor, "{\"seq\": \"18446744073709551616\"}",
	             IHALA_EJSON,
	             "receipt.seq: value 18446744073709551616 is out of range for uint64");
	expect_error(&ihala__v2__receipt__descriptor, "{\"seq\": \"12a\"}", IHALA_EJSON,
	             "receipt.seq: expected an integer, got string \"12a\"");
	expect_error(&ihala__v2__receipt__descriptor, "{\"seq\": \" 12\"}", IHALA_EJSON,
	             "receipt.seq: expected an integer, got string \" 12\"");
	expect_error(&ihala__v2__receipt__descriptor, "{\"seq\": \"\"}", IHALA_EJSON,
	             "receipt.seq: expected an integer, got string \"\"");
	expect_error(&ihala__v2__receipt__descriptor, "{\"errorCode\": 2147483648}", IHALA_EJSON,
	             "receipt.errorCode: value 2147483648 is out of range for int32");
	expect_error(&ihala__v2__receipt__descriptor, "{\"errorCode\": \"-2147483649\"}",
	             IHALA_EJSON, "receipt.errorCode: value -2147483649 is out of range for int32");
	expect_error(&ihala__v2__welcome__descriptor, "{\"protocolVersion\": 4294967296}",
	             IHALA_EJSON,
	             "welcome.protocolVersion: value 4294967296 is out of range for uint32");
	expect_error(&ihala__v2__receipt__descriptor, "{\"errorCode\": 1.5}", IHALA_EJSON,
	             "receipt.errorCode: expected an integer, got number 1.5");
	expect_error(&ihala__v2__receipt__descriptor, "{\"errorCode\": 0.1}", IHALA_EJSON,
	             "receipt.errorCode: expected an integer, got number 0.1");
}

static void
test_int32_forms(void **state)
{
	Ihala__V2__Survivor *s;

	(void)state;
	s = (Ihala__V2__Survivor *)parse_ok(&ihala__v2__survivor__descriptor,
	                                    "{\"birthYear\": 1996.0}");
	assert_int_equal(s->birth_year, 1996);
	protobuf_c_message_free_unpacked(&s->base, NULL);
	s = (Ihala__V2__Survivor *)parse_ok(&ihala__v2__survivor__descriptor,
	                                    "{\"birth_year\": \"4294967295\"}");
	assert_int_equal(s->birth_year, UINT32_MAX);
	protobuf_c_message_free_unpacked(&s->base, NULL);
}

/* float and double, on the hand-made descriptor */
static void
test_floats(void **state)
{
	struct node *n;
	json_t *j;
	char *s;

	(void)state;
	n = (struct node *)parse_ok(&node_descriptor,
	                            "{\"ratio\": \"-Infinity\", \"weight\": 0.5, \"value\": -3}");
	assert_true(n->ratio < 0 && n->ratio * 0 != 0);
	assert_true(n->weight == 0.5f);
	assert_int_equal(pbjson_to_string(&n->base, 0, &s), 0);
	assert_string_equal(s, "{\"value\":-3,\"ratio\":\"-Infinity\",\"weight\":0.5}");
	free(s);
	protobuf_c_message_free_unpacked(&n->base, NULL);

	n = (struct node *)parse_ok(&node_descriptor, "{\"ratio\": \"NaN\", \"weight\": \"2.25\"}");
	assert_true(n->ratio != n->ratio);
	assert_true(n->weight == 2.25f);
	assert_int_equal(pbjson_to_json(&n->base, 0, &j), 0);
	assert_string_equal(json_string_value(json_object_get(j, "ratio")), "NaN");
	json_decref(j);
	protobuf_c_message_free_unpacked(&n->base, NULL);

	j = roundtrip(&node_descriptor, "{\"ratio\": 0.1, \"weight\": 3}", 0);
	assert_true(json_real_value(json_object_get(j, "ratio")) == 0.1);
	assert_true(json_real_value(json_object_get(j, "weight")) == 3.0);
	json_decref(j);

	expect_error(&node_descriptor, "{\"weight\": 1e39}", IHALA_EJSON,
	             "node.weight: value 1e+39 is out of range for float");
	expect_error(&node_descriptor, "{\"ratio\": \"fast\"}", IHALA_EJSON,
	             "node.ratio: expected a number, got string \"fast\"");
	expect_error(&node_descriptor, "{\"ratio\": \"0x10\"}", IHALA_EJSON,
	             "node.ratio: expected a number, got string \"0x10\"");
	expect_error(&node_descriptor, "{\"ratio\": [1]}", IHALA_EJSON,
	             "node.ratio: expected a number, got an array");
}

/* proto2-style optional with has_: written when set, even when zero */
static void
test_optional_presence(void **state)
{
	struct node *n;
	char *s;

	(void)state;
	n = (struct node *)parse_ok(&node_descriptor, "{\"opt\": 0, \"colour\": \"dark-blue\"}");
	assert_true(n->has_opt);
	assert_int_equal(n->colour, 2);
	assert_int_equal(pbjson_to_string(&n->base, 0, &s), 0);
	assert_string_equal(s, "{\"opt\":0,\"colour\":\"dark-blue\"}");
	free(s);
	n->has_opt = 0;
	assert_int_equal(pbjson_to_string(&n->base, 0, &s), 0);
	assert_string_equal(s, "{\"colour\":\"dark-blue\"}");
	free(s);
	protobuf_c_message_free_unpacked(&n->base, NULL);
}

/* ---- bytes ---- */

static void
test_bytes(void **state)
{
	Ihala__V2__Receipt *r;
	Ihala__V2__InclusionProof *p;
	char *s;
	size_t i;

	(void)state;
	/* 32 bytes 0x00..0x1f, standard alphabet with padding */
	r = (Ihala__V2__Receipt *)parse_ok(
	    &ihala__v2__receipt__descriptor,
	    "{\"leafHash\": \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"}");
	assert_int_equal(r->leaf_hash.len, 32);
	for (i = 0; i < 32; i++) {
		assert_int_equal(r->leaf_hash.data[i], i);
	}
	assert_int_equal(pbjson_to_string(&r->base, 0, &s), 0);
	assert_string_equal(s, "{\"leafHash\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"}");
	free(s);
	protobuf_c_message_free_unpacked(&r->base, NULL);

	/* URL-safe alphabet, no padding; repeated bytes; empty bytes */
	p = (Ihala__V2__InclusionProof *)parse_ok(&ihala__v2__inclusion_proof__descriptor,
	                                          "{\"path\": [\"-_8\", \"\", \"YQ\", \"YWI=\"]}");
	assert_int_equal(p->n_path, 4);
	assert_int_equal(p->path[0].len, 2);
	assert_int_equal(p->path[0].data[0], 0xfb);
	assert_int_equal(p->path[0].data[1], 0xff);
	assert_int_equal(p->path[1].len, 0);
	assert_int_equal(p->path[2].len, 1);
	assert_int_equal(p->path[2].data[0], 'a');
	assert_int_equal(p->path[3].len, 2);
	assert_int_equal(pbjson_to_string(&p->base, 0, &s), 0);
	assert_string_equal(s, "{\"path\":[\"+/8=\",\"\",\"YQ==\",\"YWI=\"]}");
	free(s);
	protobuf_c_message_free_unpacked(&p->base, NULL);

	expect_error(&ihala__v2__receipt__descriptor, "{\"leafHash\": \"not base64!\"}",
	             IHALA_EJSON, "receipt.leafHash: invalid base64");
	expect_error(&ihala__v2__receipt__descriptor, "{\"leafHash\": \"QUJDR\"}", IHALA_EJSON,
	             "receipt.leafHash: invalid base64");
	expect_error(&ihala__v2__receipt__descriptor, "{\"leafHash\": \"Q===\"}", IHALA_EJSON,
	             "receipt.leafHash: invalid base64");
	expect_error(&ihala__v2__receipt__descriptor, "{\"leafHash\": 12}", IHALA_EJSON,
	             "receipt.leafHash: expected a base64 string, got number 12");
	expect_error(&ihala__v2__inclusion_proof__descriptor, "{\"path\": [\"YQ\", \"a=b=\"]}",
	             IHALA_EJSON, "inclusionProof.path[1]: invalid base64");
}

/* Submit.envelope and LogEntry.envelope hold an encoded Envelope. */
static const ProtobufCMessageDescriptor *
envelope_hook(const ProtobufCMessageDescriptor *msg, const ProtobufCFieldDescriptor *field)
{
	if ((msg == &ihala__v2__submit__descriptor || msg == &ihala__v2__log_entry__descriptor) &&
	    strcmp(field->name, "envelope") == 0) {
		return &ihala__v2__envelope__descriptor;
	}
	return NULL;
}

static void
test_embedded_bytes(void **state)
{
	static const char submit[] = "{\"envelope\": {\"messageId\": \"m1\", \"to\": \"moh\","
	                             " \"note\": {\"referralId\": \"r1\", \"text\": \"ڕۆژان\"}}}";
	Ihala__V2__Submit *s;
	Ihala__V2__Envelope *e;
	ProtobufCMessage *m;
	json_t *j, *want;
	char err[256];

	(void)state;
	/* without the hook an object is not bytes */
	expect_error(&ihala__v2__submit__descriptor, submit, IHALA_EJSON,
	             "submit.envelope: expected a base64 string, got an object");

	pbjson_set_bytes_hook(envelope_hook);
	s = (Ihala__V2__Submit *)parse_ok(&ihala__v2__submit__descriptor, submit);
	e = ihala__v2__envelope__unpack(NULL, s->envelope.len, s->envelope.data);
	assert_non_null(e);
	assert_int_equal(e->kind_case, IHALA__V2__ENVELOPE__KIND_NOTE);
	assert_string_equal(e->note->text, "ڕۆژان");
	ihala__v2__envelope__free_unpacked(e, NULL);

	/* rendered decoded only when asked */
	assert_int_equal(pbjson_to_json(&s->base, PBJSON_EMBEDDED, &j), 0);
	want = json_loads(submit, 0, NULL);
	assert_true(json_equal(j, want));
	json_decref(j);
	assert_int_equal(pbjson_to_json(&s->base, 0, &j), 0);
	assert_true(json_is_string(json_object_get(j, "envelope")));
	/* and the base64 form reads back to the same bytes */
	assert_int_equal(pbjson_from_json(&ihala__v2__submit__descriptor, j, &m, err, sizeof(err)),
	                 0);
	assert_int_equal(((Ihala__V2__Submit *)m)->envelope.len, s->envelope.len);
	assert_memory_equal(((Ihala__V2__Submit *)m)->envelope.data, s->envelope.data,
	                    s->envelope.len);
	protobuf_c_message_free_unpacked(m, NULL);
	json_decref(j);

	/* bytes that do not decode fall back to base64 */
	free(s->envelope.data);
	s->envelope.data = malloc(2);
	assert_non_null(s->envelope.data);
	s->envelope.data[0] = 0xff;
	s->envelope.data[1] = 0xff;
	s->envelope.len = 2;
	assert_int_equal(pbjson_to_json(&s->base, PBJSON_EMBEDDED, &j), 0);
	assert_string_equal(json_string_value(json_object_get(j, "envelope")), "//8=");
	json_decref(j);
	protobuf_c_message_free_unpacked(&s->base, NULL);

	/* errors inside the embedded message keep their path */
	expect_error(&ihala__v2__submit__descriptor, "{\"envelope\": {\"note\": {\"txt\": \"x\"}}}",
	             IHALA_EJSON, "submit.envelope.note.txt: unknown field (did you mean 'text'?)");
	pbjson_set_bytes_hook(NULL);
	json_decref(want);
}

/* The audit view: a LogRecord holds a LogEntry that holds an Envelope. */
static void
test_ihala_hook(void **state)
{
	static const char record[] =
	    "{\"seq\": 7, \"entry\": {\"seq\": 7, \"brokerTimeMs\": 1712044801000,"
	    " \"sender\": \"dma\", \"recipient\": \"moh\", \"kind\": \"submission\","
	    " \"envelope\": {\"messageId\": \"m1\", \"to\": \"moh\","
	    "  \"note\": {\"referralId\": \"r1\", \"text\": \"نور الهدى\"}}}}";
	Ihala__V2__LogRecord *r;
	Ihala__V2__LogEntry *e;
	json_t *j, *want;

	(void)state;
	pbjson_set_bytes_hook(pbjson_ihala_embedded);
	r = (Ihala__V2__LogRecord *)parse_ok(&ihala__v2__log_record__descriptor, record);
	e = ihala__v2__log_entry__unpack(NULL, r->entry.len, r->entry.data);
	assert_non_null(e);
	assert_int_equal(e->kind, IHALA__V2__ENTRY_KIND__ENTRY_KIND_SUBMISSION);
	assert_true(e->envelope.len > 0);
	ihala__v2__log_entry__free_unpacked(e, NULL);
	assert_int_equal(pbjson_to_json(&r->base, PBJSON_EMBEDDED, &j), 0);
	want = json_loads(record, 0, NULL);
	assert_true(json_equal(j, want));
	json_decref(j);
	json_decref(want);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	assert_null(pbjson_ihala_embedded(&ihala__v2__receipt__descriptor,
	                                  &ihala__v2__receipt__descriptor.fields[2]));
	pbjson_set_bytes_hook(NULL);
}

/* ---- structural errors ---- */

static void
test_oneof(void **state)
{
	(void)state;
	expect_error(
	    &ihala__v2__envelope__descriptor,
	    "{\"referral\": {\"referralId\": \"a\"}, \"outcome\": {\"referralId\": \"a\"}}",
	    IHALA_EJSON,
	    "envelope: fields 'referral' and 'outcome' of the same oneof are both set");
	expect_error(&ihala__v2__proof_request__descriptor, "{\"seq\": 0, \"messageId\": \"m\"}",
	             IHALA_EJSON,
	             "proofRequest: fields 'seq' and 'messageId' of the same oneof are both set");
}

static void
test_oneof_default_value(void **state)
{
	Ihala__V2__ProofRequest *p;
	json_t *j;

	(void)state;
	/* a oneof member set to its default is still set, and written */
	p = (Ihala__V2__ProofRequest *)parse_ok(&ihala__v2__proof_request__descriptor,
	                                        "{\"seq\": 0, \"messageId\": null}");
	assert_int_equal(p->target_case, IHALA__V2__PROOF_REQUEST__TARGET_SEQ);
	protobuf_c_message_free_unpacked(&p->base, NULL);
	j = roundtrip(&ihala__v2__proof_request__descriptor, "{\"seq\": 0}", 0);
	assert_non_null(json_object_get(j, "seq"));
	json_decref(j);
	j = roundtrip(&ihala__v2__proof_request__descriptor, "{\"messageId\": \"\"}", 0);
	assert_string_equal(json_string_value(json_object_get(j, "messageId")), "");
	json_decref(j);
}

static void
test_unknown_field(void **state)
{
	Ihala__V2__Survivor *s;

	(void)state;
	expect_error(&ihala__v2__referral__descriptor, "{\"survivr\": {}}", IHALA_EJSON,
	             "referral.survivr: unknown field (did you mean 'survivor'?)");
	expect_error(&ihala__v2__referral__descriptor, "{\"survivor\": {\"birthyear\": 1990}}",
	             IHALA_EJSON,
	             "referral.survivor.birthyear: unknown field (did you mean 'birthYear'?)");
	expect_error(&ihala__v2__referral__descriptor, "{\"survivor\": {\"birth_yaer\": 1990}}",
	             IHALA_EJSON,
	             "referral.survivor.birth_yaer: unknown field (did you mean 'birthYear'?)");
	expect_error(&ihala__v2__referral__descriptor, "{\"colour\": \"red\"}", IHALA_EJSON,
	             "referral.colour: unknown field");
	/* control characters in a key are not echoed raw */
	expect_error(&ihala__v2__referral__descriptor, "{\"a\\nb\": 1}", IHALA_EJSON,
	             "referral.a?b: unknown field");
	/* snake_case is accepted, but not together with the camelCase name */
	s = (Ihala__V2__Survivor *)parse_ok(&ihala__v2__survivor__descriptor,
	                                    "{\"case_id\": \"c1\", \"birth_year\": 1990}");
	assert_string_equal(s->case_id, "c1");
	protobuf_c_message_free_unpacked(&s->base, NULL);
	expect_error(&ihala__v2__survivor__descriptor,
	             "{\"birthYear\": 1990, \"birth_year\": 1991}", IHALA_EJSON,
	             "survivor.birth_year: field given twice (as 'birthYear' and 'birth_year')");
}

static void
test_wrong_type(void **state)
{
	(void)state;
	expect_error(&ihala__v2__referral__descriptor, "{\"survivor\": {\"birthYear\": \"abc\"}}",
	             IHALA_EJSON,
	             "referral.survivor.birthYear: expected an integer, got string \"abc\"");
	expect_error(&ihala__v2__referral__descriptor, "{\"referralId\": 17}", IHALA_EJSON,
	             "referral.referralId: expected a string, got number 17");
	expect_error(&ihala__v2__referral__descriptor, "{\"consent\": {\"given\": \"yes\"}}",
	             IHALA_EJSON,
	             "referral.consent.given: expected true or false, got string \"yes\"");
	expect_error(&ihala__v2__referral__descriptor, "{\"consent\": {\"given\": 1}}", IHALA_EJSON,
	             "referral.consent.given: expected true or false, got number 1");
	expect_error(&ihala__v2__referral__descriptor, "{\"survivor\": \"IQ-1\"}", IHALA_EJSON,
	             "referral.survivor: expected an object, got string \"IQ-1\"");
	expect_error(&ihala__v2__referral__descriptor, "{\"services\": \"legal\"}", IHALA_EJSON,
	             "referral.services: expected an array, got string \"legal\"");
	expect_error(&ihala__v2__referral__descriptor,
	             "{\"consent\": {\"agencies\": [\"moh\", null]}}", IHALA_EJSON,
	             "referral.consent.agencies[1]: expected a string, got null");
	expect_error(&ihala__v2__referral_state__descriptor, "{\"history\": [{}, [] ]}",
	             IHALA_EJSON, "referralState.history[1]: expected an object, got an array");
	expect_error(&ihala__v2__envelope__descriptor,
	             "{\"referral\": {\"survivor\": {\"injury\": {\"amputations\":"
	             " [\"leg-right-below-knee\", \"tail\"]}}}}",
	             IHALA_EJSON,
	             "envelope.referral.survivor.injury.amputations[1]: unknown value \"tail\""
	             " (expected one of: arm-left-above-elbow, arm-left-below-elbow, hand-left,"
	             " arm-right-above-elbow, arm-right-below-elbow, hand-right,"
	             " leg-left-above-knee, leg-left-below-knee, foot-left, leg-right-above-knee,"
	             " leg-right-below-knee, foot-right)");
	/* long values are cut in the message */
	expect_error(
	    &ihala__v2__survivor__descriptor,
	    "{\"sex\": "
	    "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
	    IHALA_EJSON,
	    "survivor.sex: unknown value "
	    "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\""
	    " (expected one of: female, male, unknown)");
}

static void
test_nulls_are_unset(void **state)
{
	Ihala__V2__Referral *r;
	json_t *j;

	(void)state;
	r = (Ihala__V2__Referral *)parse_ok(
	    &ihala__v2__referral__descriptor,
	    "{\"referralId\": null, \"survivor\": null, \"services\": null, \"priority\": null}");
	assert_string_equal(r->referral_id, "");
	assert_null(r->survivor);
	assert_int_equal(r->n_services, 0);
	assert_int_equal(pbjson_to_json(&r->base, 0, &j), 0);
	assert_int_equal(json_object_size(j), 0);
	json_decref(j);
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void
test_limits(void **state)
{
	size_t big = PBJSON_MAX_STRING + 64, i, off;
	char *text, *p;
	struct node *n;
	Ihala__V2__Note *note;

	(void)state;
	/* strings: 64 KiB is fine, one byte more is not */
	text = malloc(big);
	assert_non_null(text);
	off = (size_t)snprintf(text, big, "{\"text\": \"");
	memset(text + off, 'x', PBJSON_MAX_STRING);
	snprintf(text + off + PBJSON_MAX_STRING, big - off - PBJSON_MAX_STRING, "\"}");
	note = (Ihala__V2__Note *)parse_ok(&ihala__v2__note__descriptor, text);
	assert_int_equal(strlen(note->text), PBJSON_MAX_STRING);
	protobuf_c_message_free_unpacked(&note->base, NULL);
	off = (size_t)snprintf(text, big, "{\"text\": \"y");
	memset(text + off, 'x', PBJSON_MAX_STRING);
	snprintf(text + off + PBJSON_MAX_STRING, big - off - PBJSON_MAX_STRING, "\"}");
	expect_error(&ihala__v2__note__descriptor, text, IHALA_ETOOLARGE,
	             "note.text: string is too long (65537 bytes, at most 65536)");
	free(text);

	/* arrays: 10 000 items are fine, 10 001 are not */
	big = 32 + 4 * (PBJSON_MAX_ITEMS + 1);
	text = malloc(big);
	assert_non_null(text);
	p = text + sprintf(text, "{\"agencies\": [");
	for (i = 0; i < PBJSON_MAX_ITEMS; i++) {
		p += sprintf(p, "%s\"a\"", i > 0 ? "," : "");
	}
	strcpy(p, "]}");
	{
		Ihala__V2__Consent *c =
		    (Ihala__V2__Consent *)parse_ok(&ihala__v2__consent__descriptor, text);

		assert_int_equal(c->n_agencies, PBJSON_MAX_ITEMS);
		protobuf_c_message_free_unpacked(&c->base, NULL);
	}
	strcpy(p, ",\"a\"]}");
	expect_error(&ihala__v2__consent__descriptor, text, IHALA_ETOOLARGE,
	             "consent.agencies: too many items (10001, at most 10000)");
	free(text);

	/* nesting: 32 messages deep is fine, 33 are not */
	big = 64 + 32 * (PBJSON_MAX_DEPTH + 1);
	text = malloc(big);
	assert_non_null(text);
	p = text + sprintf(text, "{\"value\": 1");
	for (i = 1; i < PBJSON_MAX_DEPTH; i++) {
		p += sprintf(p, ", \"child\": {\"value\": %zu", i + 1);
	}
	for (i = 0; i < PBJSON_MAX_DEPTH; i++) {
		*p++ = '}';
	}
	*p = '\0';
	n = (struct node *)parse_ok(&node_descriptor, text);
	{
		struct node *k = n;

		for (i = 1; i < PBJSON_MAX_DEPTH; i++) {
			k = k->child;
		}
		assert_int_equal(k->value, PBJSON_MAX_DEPTH);
		assert_null(k->child);
		/* one more level cannot be written either */
		k->child = (struct node *)malloc(sizeof(*k));
		assert_non_null(k->child);
		node_init(&k->child->base);
		{
			json_t *j = (json_t *)&k;

			assert_int_equal(pbjson_to_json(&n->base, 0, &j), IHALA_ETOOLARGE);
			assert_null(j);
		}
	}
	protobuf_c_message_free_unpacked(&n->base, NULL);
	sprintf(text, "{\"child\": {\"value\": 1, \"kids\": [{}, {\"child\": {}}]}}");
	n = (struct node *)parse_ok(&node_descriptor, text);
	assert_int_equal(n->child->n_kids, 2);
	assert_non_null(n->child->kids[1]->child);
	protobuf_c_message_free_unpacked(&n->base, NULL);
	free(text);

	big = 64 + 32 * (PBJSON_MAX_DEPTH + 2);
	text = malloc(big);
	assert_non_null(text);
	p = text + sprintf(text, "{\"value\": 1");
	for (i = 1; i <= PBJSON_MAX_DEPTH; i++) {
		p += sprintf(p, ", \"child\": {\"value\": %zu", i + 1);
	}
	for (i = 0; i <= PBJSON_MAX_DEPTH; i++) {
		*p++ = '}';
	}
	*p = '\0';
	{
		ProtobufCMessage *m = NULL;
		char err[2048];

		assert_int_equal(
		    pbjson_from_string(&node_descriptor, text, strlen(text), &m, err, sizeof(err)),
		    IHALA_ETOOLARGE);
		assert_null(m);
		assert_non_null(strstr(err, ": nested deeper than 32 messages"));
		assert_true(strncmp(err, "node.child.child.", 17) == 0);
	}
	free(text);

	/* a string holding NUL cannot become a C string */
	{
		json_t *o = json_pack("{s:s%}", "text", "a\0b", (size_t)3);
		ProtobufCMessage *m;
		char err[256];

		assert_non_null(o);
		assert_int_equal(
		    pbjson_from_json(&ihala__v2__note__descriptor, o, &m, err, sizeof(err)),
		    IHALA_EJSON);
		assert_string_equal(err, "note.text: string contains a NUL character");
		json_decref(o);
	}

	/* whole input */
	big = PBJSON_MAX_INPUT + 1;
	text = malloc(big);
	assert_non_null(text);
	memset(text, ' ', big);
	text[0] = '{';
	text[big - 1] = '}';
	{
		ProtobufCMessage *m;
		char err[256];

		assert_int_equal(pbjson_from_string(&ihala__v2__note__descriptor, text, big, &m,
		                                    err, sizeof(err)),
		                 IHALA_ETOOLARGE);
		assert_string_equal(err, "input is too large (16777217 bytes, at most 16777216)");
	}
	free(text);
}

static void
test_syntax_and_args(void **state)
{
	ProtobufCMessage *m;
	char err[256], *out = err;
	json_t *j = json_object();

	(void)state;
	assert_int_equal(pbjson_from_string(&ihala__v2__note__descriptor, "{\"text\": }", 10, &m,
	                                    err, sizeof(err)),
	                 IHALA_EJSON);
	assert_null(m);
	assert_true(strncmp(err, "line 1, column ", 15) == 0);
	assert_int_equal(pbjson_from_string(&ihala__v2__note__descriptor,
	                                    "{\"text\": \"a\", \"text\": \"b\"}", 26, &m, err,
	                                    sizeof(err)),
	                 IHALA_EJSON);
	assert_non_null(strstr(err, "duplicate"));
	assert_int_equal(
	    pbjson_from_string(&ihala__v2__note__descriptor, "{} x", 4, &m, err, sizeof(err)),
	    IHALA_EJSON);
	expect_error(&ihala__v2__note__descriptor, "[1]", IHALA_EJSON,
	             "note: expected an object, got an array");
	/* the length given is honoured: no NUL terminator needed */
	assert_int_equal(
	    pbjson_from_string(&ihala__v2__note__descriptor, "{}garbage", 2, &m, err, sizeof(err)),
	    0);
	protobuf_c_message_free_unpacked(m, NULL);
	/* err may be NULL or tiny */
	assert_int_equal(
	    pbjson_from_string(&ihala__v2__note__descriptor, "{\"x\": 1}", 8, &m, NULL, 0),
	    IHALA_EJSON);
	assert_int_equal(
	    pbjson_from_string(&ihala__v2__note__descriptor, "{\"x\": 1}", 8, &m, err, 4),
	    IHALA_EJSON);
	assert_string_equal(err, "not");
	assert_int_equal(pbjson_from_json(NULL, j, &m, err, sizeof(err)), IHALA_EINVAL);
	assert_int_equal(pbjson_from_json(&ihala__v2__note__descriptor, NULL, &m, err, sizeof(err)),
	                 IHALA_EINVAL);
	json_decref(j);
	assert_int_equal(pbjson_to_json(NULL, 0, &j), IHALA_EINVAL);
	assert_null(j);
	assert_int_equal(pbjson_to_string(NULL, 0, &out), IHALA_EINVAL);
	assert_null(out);
}

/* ---- output ---- */

static void
test_output_forms(void **state)
{
	Ihala__V2__StatusUpdate *s;
	Ihala__V2__Referral *r;
	json_t *j;
	char *out;

	(void)state;
	s = (Ihala__V2__StatusUpdate *)parse_ok(&ihala__v2__status_update__descriptor,
	                                        "{\"referralId\": \"r1\", \"status\": \"accepted\","
	                                        " \"note\": \"ڕۆژان\"}");
	/* UTF-8 as is, not \u escapes; compact on one line */
	assert_int_equal(pbjson_to_string(&s->base, 0, &out), 0);
	assert_string_equal(out,
	                    "{\"referralId\":\"r1\",\"status\":\"accepted\",\"note\":\"ڕۆژان\"}");
	free(out);
	assert_int_equal(pbjson_to_string(&s->base, PBJSON_PRETTY | PBJSON_PROTO_NAMES, &out), 0);
	assert_string_equal(out, "{\n  \"referral_id\": \"r1\",\n  \"status\": \"accepted\",\n"
	                         "  \"note\": \"ڕۆژان\"\n}");
	free(out);
	/* defaults on request: primitives and arrays, not unset messages */
	assert_int_equal(pbjson_to_json(&s->base, PBJSON_EMIT_DEFAULTS, &j), 0);
	assert_int_equal(json_object_size(j), 6);
	assert_string_equal(json_string_value(json_object_get(j, "reasonCode")), "unspecified");
	assert_string_equal(json_string_value(json_object_get(j, "businessStatus")), "");
	assert_null(json_object_get(j, "outcome"));
	json_decref(j);
	protobuf_c_message_free_unpacked(&s->base, NULL);

	r = (Ihala__V2__Referral *)parse_ok(&ihala__v2__referral__descriptor, "{}");
	assert_int_equal(pbjson_to_json(&r->base, PBJSON_EMIT_DEFAULTS, &j), 0);
	assert_true(json_is_array(json_object_get(j, "services")));
	assert_true(json_integer_value(json_object_get(j, "createdTimeMs")) == 0);
	json_decref(j);
	/* enum numbers the schema does not know are written as numbers */
	r->priority = (Ihala__V2__Priority)42;
	assert_int_equal(pbjson_to_string(&r->base, 0, &out), 0);
	assert_string_equal(out, "{\"priority\":42}");
	free(out);
	/* strings that are not UTF-8 cannot be JSON */
	r->notes = strdup("\xff\xfe");
	assert_non_null(r->notes);
	assert_int_equal(pbjson_to_string(&r->base, 0, &out), IHALA_EUTF8);
	assert_null(out);
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* A failure half-way through must free what was built (run under ASan or
 * valgrind to see leaks); here it must at least not crash. */
static void
test_partial_failures(void **state)
{
	(void)state;
	expect_error(&ihala__v2__referral_state__descriptor,
	             "{\"referralId\": \"r\", \"history\": [{\"what\": \"a\"}, {\"what\": \"b\"},"
	             " {\"status\": \"lost\"}]}",
	             IHALA_EJSON,
	             "referralState.history[2].status: unknown value \"lost\" (expected one of:"
	             " requested, received, accepted, declined, in-progress, on-hold, completed,"
	             " failed, cancelled, overdue)");
	expect_error(&ihala__v2__inclusion_proof__descriptor,
	             "{\"leafHash\": \"YQ==\", \"path\": [\"YQ==\", \"YQ==\", 5]}", IHALA_EJSON,
	             "inclusionProof.path[2]: expected a base64 string, got number 5");
	expect_error(&ihala__v2__envelope__descriptor,
	             "{\"messageId\": \"m\", \"note\": {\"referralId\": \"r\", \"text\": 1}}",
	             IHALA_EJSON, "envelope.note.text: expected a string, got number 1");
	expect_error(&ihala__v2__frame__descriptor,
	             "{\"logEntries\": {\"records\": [{\"seq\": 1, \"entry\": \"YQ==\"},"
	             " {\"seq\": 2, \"entry\": \"!\"}]}}",
	             IHALA_EJSON, "frame.logEntries.records[1].entry: invalid base64");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_referral_roundtrip),
	    cmocka_unit_test(test_envelope_roundtrip),
	    cmocka_unit_test(test_outcome_status_roundtrip),
	    cmocka_unit_test(test_example_files),
	    cmocka_unit_test(test_enum_forms),
	    cmocka_unit_test(test_int64),
	    cmocka_unit_test(test_int32_forms),
	    cmocka_unit_test(test_floats),
	    cmocka_unit_test(test_optional_presence),
	    cmocka_unit_test(test_bytes),
	    cmocka_unit_test(test_embedded_bytes),
	    cmocka_unit_test(test_ihala_hook),
	    cmocka_unit_test(test_oneof),
	    cmocka_unit_test(test_oneof_default_value),
	    cmocka_unit_test(test_unknown_field),
	    cmocka_unit_test(test_wrong_type),
	    cmocka_unit_test(test_nulls_are_unset),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_syntax_and_args),
	    cmocka_unit_test(test_output_forms),
	    cmocka_unit_test(test_partial_failures),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
