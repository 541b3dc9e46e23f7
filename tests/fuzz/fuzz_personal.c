/* fuzz_personal.c - fuzz target: personal_merge of opened content into a clear envelope, and the
 * split/merge round trip of what it accepts (proto/personal). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "frame.h"
#include "fuzz.h"
#include "log.h"
#include "personal.h"

/*
 * Input: 2 bytes big-endian N, N bytes of an encoded clear Envelope (the log entry's), then
 * the opened sealed content (an encoded Sealed, as seal_open returns it). The sender is "dma".
 * Invariants: a refusal is a negative code with a sentence and no envelope; an accepted
 * merge is an envelope with the clear part's identity which, split again and merged into its
 * own clear part, gives the same message.
 */

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_setlevel(LOG_LEVEL_ERROR);
	return 0;
}

static uint8_t *
pack_env(const Ihala__V2__Envelope *e, size_t *len)
{
	uint8_t *b = malloc(ihala__v2__envelope__get_packed_size(e) + 1);

	FUZZ_ASSERT(b != NULL);
	*len = ihala__v2__envelope__pack(e, b);
	return b;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Ihala__V2__Envelope *clear = NULL, *merged = NULL, *clear2 = NULL, *merged2 = NULL;
	uint8_t *sealed = NULL, *cbuf = NULL, *a, *b;
	size_t n, slen = 0, clen = 0, alen, blen;
	char err[512];
	int rc;

	if (size < 2 || (n = (size_t)data[0] << 8 | data[1]) > size - 2) {
		return 0;
	}
	if (envelope_decode(data + 2, n, &clear) != 0) {
		return 0;
	}
	err[0] = '\0';
	rc = personal_merge(clear, "dma", data + 2 + n, size - 2 - n, &merged, err, sizeof(err));
	if (rc != 0) {
		FUZZ_ASSERT(rc < 0 && merged == NULL && err[0] != '\0');
		envelope_free(clear);
		return 0;
	}
	FUZZ_ASSERT(merged != NULL && personal_kind(merged));
	FUZZ_ASSERT(strcmp(merged->message_id, clear->message_id) == 0);
	FUZZ_ASSERT(merged->kind_case == clear->kind_case);
	FUZZ_ASSERT(personal_validate(merged, err, sizeof(err)) == 0);
	/* split again, merge into its own clear part: the same message */
	FUZZ_ASSERT(personal_split(merged, "dma", &sealed, &slen) == 0);
	FUZZ_ASSERT(personal_clear(merged, NULL, &cbuf, &clen) == 0);
	FUZZ_ASSERT(envelope_decode(cbuf, clen, &clear2) == 0);
	if (sealed != NULL) {
		FUZZ_ASSERT(
		    personal_merge(clear2, "dma", sealed, slen, &merged2, err, sizeof(err)) == 0);
		merged->n_data_declared = merged2->n_data_declared = 0;
		merged->sealed_sha256.len = merged2->sealed_sha256.len = 0;
		a = pack_env(merged, &alen);
		b = pack_env(merged2, &blen);
		FUZZ_ASSERT(alen == blen && memcmp(a, b, alen) == 0);
		free(a);
		free(b);
	}
	envelope_free(merged2);
	envelope_free(clear2);
	envelope_free(merged);
	envelope_free(clear);
	free(sealed);
	free(cbuf);
	return 0;
}
