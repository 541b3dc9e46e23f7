/* fuzz_frame.c - fuzz target: frame_decode on one frame body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "frame.h"
#include "fuzz.h"
#include "log.h"

/*
 * Input: one control byte (skipped; it chose how a removed stream splitter was fed, and is
 * kept so the seeds and inputs found so far stay valid), then one frame body, decoded.
 * The length-prefixed stream is split by channel.c, tested in channel_test.c. Invariants
 * checked:
 * - a body frame_decode accepts re-encodes to exactly as many bytes (the canonical rule of
 *   frame.h), and that encoding decodes again and re-encodes to the same bytes;
 * - the embedded Envelope / LogEntry of an accepted frame go through their decoders.
 */

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_setlevel(LOG_LEVEL_ERROR);
	return 0;
}

static void
check_embedded(const Ihala__V2__Frame *f)
{
	Ihala__V2__Envelope *env = NULL;
	Ihala__V2__LogEntry *le = NULL;
	size_t i;

	switch (f->kind_case) {
	case IHALA__V2__FRAME__KIND_SUBMIT:
		if (envelope_decode(f->submit->envelope.data, f->submit->envelope.len, &env) == 0) {
			FUZZ_ASSERT(env->kind_case != IHALA__V2__ENVELOPE__KIND__NOT_SET);
			FUZZ_ASSERT(pb_check_enums(&env->base) == 0);
			FUZZ_ASSERT(pb_check_utf8(&env->base) == 0);
			envelope_free(env);
		}
		break;
	case IHALA__V2__FRAME__KIND_DELIVER:
		if (logentry_decode(f->deliver->entry.data, f->deliver->entry.len, &le) == 0) {
			FUZZ_ASSERT(pb_check_utf8(&le->base) == 0);
			logentry_free(le);
		}
		break;
	case IHALA__V2__FRAME__KIND_LOG_ENTRIES:
		for (i = 0; i < f->log_entries->n_records; i++) {
			const ProtobufCBinaryData *b = &f->log_entries->records[i]->entry;

			if (logentry_decode(b->data, b->len, &le) == 0) {
				logentry_free(le);
			}
		}
		break;
	default:
		break;
	}
}

static void
check_body(const uint8_t *body, size_t len)
{
	Ihala__V2__Frame *f = NULL, *g = NULL;
	uint8_t *enc = NULL, *enc2 = NULL;
	size_t enclen = 0, enclen2 = 0;
	int err;

	err = frame_decode(body, len, FRAME_MAX_DEFAULT, &f);
	if (err != 0) {
		FUZZ_ASSERT(err < 0 && ihala_strerror(err) != NULL);
		FUZZ_ASSERT(f == NULL);
		return;
	}
	FUZZ_ASSERT(f != NULL && f->kind_case != IHALA__V2__FRAME__KIND__NOT_SET);
	FUZZ_ASSERT(pb_check_utf8(&f->base) == 0);
	pb_check_enums(&f->base);
	check_embedded(f);
	FUZZ_ASSERT(frame_encode(f, &enc, &enclen) == 0);
	FUZZ_ASSERT(enclen == len && memcmp(enc, body, len) == 0);
	FUZZ_ASSERT(frame_decode(enc, enclen, FRAME_MAX_DEFAULT, &g) == 0);
	FUZZ_ASSERT(frame_encode(g, &enc2, &enclen2) == 0);
	FUZZ_ASSERT(enclen2 == enclen && memcmp(enc, enc2, enclen) == 0);
	free(enc);
	free(enc2);
	frame_free(g);
	frame_free(f);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1) {
		return 0;
	}
	check_body(data + 1, size - 1);
	return 0;
}
