/* fuzz_frame.c - fuzz target: frame_decode on one body, framebuf on a chunked byte stream. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "frame.h"
#include "fuzz.h"
#include "log.h"

/*
 * Input: one control byte, then the bytes. The control byte picks the framebuf's max_frame
 * and the chunk sizes the stream is pushed in. The bytes are decoded as one frame body and
 * pushed as a stream of length-prefixed frames. Invariants checked:
 * - a body frame_decode accepts re-encodes to exactly as many bytes (the canonical rule of
 *   frame.h), and that encoding decodes again and re-encodes to the same bytes;
 * - the embedded Envelope / LogEntry of an accepted frame go through their decoders;
 * - framebuf returns exactly the frames a straightforward reading of the stream finds, in
 *   order, refuses the stream exactly when a prefix announces more than max_frame, and never
 *   holds more than 2 * (4 + max_frame) bytes.
 */

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_setlevel(LOG_LEVEL_ERROR);
	return 0;
}

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void
check_embedded(const Ihala__V1__Frame *f)
{
	Ihala__V1__Envelope *env = NULL;
	Ihala__V1__LogEntry *le = NULL;
	size_t i;

	switch (f->kind_case) {
	case IHALA__V1__FRAME__KIND_SUBMIT:
		if (envelope_decode(f->submit->envelope.data, f->submit->envelope.len, &env) == 0) {
			FUZZ_ASSERT(env->kind_case != IHALA__V1__ENVELOPE__KIND__NOT_SET);
			FUZZ_ASSERT(pb_check_enums(&env->base) == 0);
			FUZZ_ASSERT(pb_check_utf8(&env->base) == 0);
			envelope_free(env);
		}
		break;
	case IHALA__V1__FRAME__KIND_DELIVER:
		if (logentry_decode(f->deliver->entry.data, f->deliver->entry.len, &le) == 0) {
			FUZZ_ASSERT(pb_check_utf8(&le->base) == 0);
			logentry_free(le);
		}
		break;
	case IHALA__V1__FRAME__KIND_LOG_ENTRIES:
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
	Ihala__V1__Frame *f = NULL, *g = NULL;
	uint8_t *enc = NULL, *enc2 = NULL;
	size_t enclen = 0, enclen2 = 0;
	int err;

	err = frame_decode(body, len, FRAME_MAX_DEFAULT, &f);
	if (err != 0) {
		FUZZ_ASSERT(err < 0 && ihala_strerror(err) != NULL);
		FUZZ_ASSERT(f == NULL);
		return;
	}
	FUZZ_ASSERT(f != NULL && f->kind_case != IHALA__V1__FRAME__KIND__NOT_SET);
	FUZZ_ASSERT(pb_check_utf8(&f->base) == 0);
	pb_check_enums(&f->base);
	check_embedded(f);
	FUZZ_ASSERT(frame_encode(f, &enc, &enclen) == 0);
	FUZZ_ASSERT(enclen == FRAME_PREFIX_LEN + len);
	FUZZ_ASSERT(be32(enc) == len);
	FUZZ_ASSERT(frame_decode(enc + FRAME_PREFIX_LEN, enclen - FRAME_PREFIX_LEN,
	                         FRAME_MAX_DEFAULT, &g) == 0);
	FUZZ_ASSERT(frame_encode(g, &enc2, &enclen2) == 0);
	FUZZ_ASSERT(enclen2 == enclen && memcmp(enc, enc2, enclen) == 0);
	free(enc);
	free(enc2);
	frame_free(g);
	frame_free(f);
}

static void
check_stream(uint8_t ctl, const uint8_t *data, size_t size)
{
	static const size_t maxes[4] = {16, 100, 4096, FRAME_MAX_DEFAULT};
	size_t max_frame = maxes[ctl & 3];
	size_t chunk_base = (size_t)(ctl >> 2) + 1; /* 1..64 */
	struct framebuf *fb;
	size_t off = 0, ref = 0, ref_frames = 0, frames = 0, turn = 0;
	int ref_err = 0, err = 0;

	/* The reference reading: whole frames in order, stop at the first oversize prefix. */
	for (;;) {
		uint32_t n;

		if (size - ref < FRAME_PREFIX_LEN) {
			break;
		}
		n = be32(data + ref);
		if (n > max_frame) {
			ref_err = IHALA_EFRAMESIZE;
			break;
		}
		if (size - ref - FRAME_PREFIX_LEN < n) {
			break;
		}
		ref += FRAME_PREFIX_LEN + n;
		ref_frames++;
	}

	fb = framebuf_init(max_frame);
	FUZZ_ASSERT(fb != NULL);
	{
		/* the frames seen so far, walked again to compare with what framebuf hands out */
		size_t cmp = 0;

		while (off < size && err == 0) {
			size_t want = chunk_base * (1 + turn % 3), n;
			const uint8_t *body;
			size_t blen;
			int r;

			turn++;
			n = size - off < want ? size - off : want;
			if (n > framebuf_space(fb)) {
				n = framebuf_space(fb);
			}
			FUZZ_ASSERT(n > 0);
			err = framebuf_push(fb, data + off, n);
			if (err != 0) {
				FUZZ_ASSERT(err == IHALA_EFRAMESIZE);
				break;
			}
			off += n;
			FUZZ_ASSERT(framebuf_pending(fb) <= 2 * (FRAME_PREFIX_LEN + max_frame));
			while ((r = framebuf_next(fb, &body, &blen)) == 1) {
				uint32_t want_len = be32(data + cmp);

				FUZZ_ASSERT(frames < ref_frames);
				FUZZ_ASSERT(blen == want_len);
				FUZZ_ASSERT(memcmp(body, data + cmp + FRAME_PREFIX_LEN, blen) == 0);
				cmp += FRAME_PREFIX_LEN + blen;
				frames++;
				if (max_frame <= 4096) {
					check_body(body, blen);
				}
			}
			FUZZ_ASSERT(r == 0);
		}
		FUZZ_ASSERT(err == ref_err);
		if (err == 0) {
			FUZZ_ASSERT(frames == ref_frames);
			FUZZ_ASSERT(framebuf_pending(fb) == size - ref);
		} else {
			const uint8_t *body;
			size_t blen;

			/* sticky: the stream is dead */
			FUZZ_ASSERT(framebuf_next(fb, &body, &blen) == IHALA_EFRAMESIZE);
			FUZZ_ASSERT(framebuf_push(fb, data, 0) == IHALA_EFRAMESIZE);
			FUZZ_ASSERT(framebuf_space(fb) == 0);
		}
	}
	framebuf_release(fb);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1) {
		return 0;
	}
	check_body(data + 1, size - 1);
	check_stream(data[0], data + 1, size - 1);
	return 0;
}
