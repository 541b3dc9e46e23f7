/* fuzz_pbjson.c - fuzz target: JSON text -> protobuf (pbjson_from_string) and back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fuzz.h"
#include "ihala.pb-c.h"
#include "log.h"
#include "pbjson.h"

/*
 * Input: one control byte, then JSON text. The low 3 bits pick the message type (Referral
 * and Envelope, the CLI's inputs, most often), bits 3-7 the output flags of the round trip.
 * Invariants: a refusal has a negative code, no message and a one-line message; an accepted
 * message written with any flags but PBJSON_EMBEDDED is read back to the same protobuf bytes;
 * with PBJSON_EMBEDDED it is written without crashing.
 */

static const ProtobufCMessageDescriptor *const types[8] = {
    &ihala__v2__referral__descriptor, &ihala__v2__envelope__descriptor,
    &ihala__v2__referral__descriptor, &ihala__v2__envelope__descriptor,
    &ihala__v2__outcome__descriptor,  &ihala__v2__status_update__descriptor,
    &ihala__v2__frame__descriptor,    &ihala__v2__log_entry__descriptor,
};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_setlevel(LOG_LEVEL_ERROR);
	pbjson_set_bytes_hook(pbjson_ihala_embedded);
	return 0;
}

static uint8_t *
pack(const ProtobufCMessage *m, size_t *len)
{
	uint8_t *b;

	*len = protobuf_c_message_get_packed_size(m);
	b = malloc(*len + 1);
	FUZZ_ASSERT(b != NULL);
	FUZZ_ASSERT(protobuf_c_message_pack(m, b) == *len);
	return b;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const ProtobufCMessageDescriptor *d;
	ProtobufCMessage *m = NULL, *back = NULL;
	char err[256], *text = NULL;
	uint8_t *a, *b;
	size_t alen, blen;
	int flags, rc;

	if (size < 1) {
		return 0;
	}
	d = types[data[0] & 7];
	flags = data[0] >> 3;
	memset(err, 'x', sizeof(err));
	rc = pbjson_from_string(d, (const char *)data + 1, size - 1, &m, err, sizeof(err));
	FUZZ_ASSERT(memchr(err, '\0', sizeof(err)) != NULL);
	if (rc != 0) {
		FUZZ_ASSERT(rc < 0 && m == NULL);
		FUZZ_ASSERT(err[0] != '\0' && strchr(err, '\n') == NULL);
		return 0;
	}
	FUZZ_ASSERT(m != NULL && m->descriptor == d);
	rc = pbjson_to_string(m, flags, &text);
	if (flags & PBJSON_EMBEDDED) {
		free(text);
		protobuf_c_message_free_unpacked(m, NULL);
		return 0;
	}
	/* from_string accepts only valid UTF-8; to_string refuses nothing else */
	FUZZ_ASSERT(rc == 0 && text != NULL);
	rc = pbjson_from_string(d, text, strlen(text), &back, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "its own output refused: %s\n%s\n", err, text);
	}
	FUZZ_ASSERT(rc == 0);
	a = pack(m, &alen);
	b = pack(back, &blen);
	FUZZ_ASSERT(alen == blen && memcmp(a, b, alen) == 0);
	free(a);
	free(b);
	free(text);
	protobuf_c_message_free_unpacked(back, NULL);
	protobuf_c_message_free_unpacked(m, NULL);
	return 0;
}
