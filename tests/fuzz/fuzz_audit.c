/* fuzz_audit.c - fuzz target: the auditor's in-place read of a log entry against protobuf-c. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "error.h"
#include "fuzz.h"
#include "ihala.pb-c.h"

/*
 * Input: one encoded LogEntry, as an auditor reads it from a store it does not trust.
 * audit_sealed_push reads the entry's kind, its envelope's sealed_sha256 and its events'
 * erased_seqs in place (a wire scan, no decoding). It must not crash or read outside the
 * input, and wherever protobuf-c decodes the entry without unknown fields (as the broker's
 * strict decoding requires; protobuf-c keeps even a field numbered 0, which the scan refuses as
 * the encoding rules do) it must agree with it: an ERASURE counts
 * once and names exactly the seqs protobuf-c gives, in order; a SUBMISSION whose envelope
 * protobuf-c decodes commits to a sealed part exactly when that envelope's sealed_sha256 is
 * not empty; nothing else counts. A sealed part is pushed beside it (the input's last 8 bytes,
 * `known` on), so that the hash comparison runs too.
 */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Ihala__V2__LogEntry *e;
	Ihala__V2__Envelope *env = NULL;
	struct audit_sealed s;
	const uint8_t *part = size >= 8 ? data + size - 8 : NULL;
	int err;
	size_t i;

	audit_sealed_init(&s);
	err = audit_sealed_push(&s, 1, data, size, part, part != NULL ? 8 : 0, 1);
	FUZZ_ASSERT(err == 0 || err == IHALA_EBADFRAME || err == IHALA_ETAMPER ||
	            err == IHALA_ENOMEM);
	FUZZ_ASSERT(err != IHALA_ETAMPER || s.problem[0] != '\0');
	e = ihala__v2__log_entry__unpack(NULL, size, data);
	if (e != NULL && (e->base.n_unknown_fields > 0 ||
	                  (e->event != NULL && e->event->base.n_unknown_fields > 0))) {
		ihala__v2__log_entry__free_unpacked(e, NULL);
		e = NULL;
	}
	if (e != NULL) {
		/* what protobuf-c reads, the scan reads (a tamper finding is not a parse error) */
		FUZZ_ASSERT(err != IHALA_EBADFRAME);
		if (e->kind == IHALA__V2__ENTRY_KIND__ENTRY_KIND_ERASURE) {
			size_t n = e->event != NULL ? e->event->n_erased_seqs : 0;

			FUZZ_ASSERT(s.erasures == 1);
			FUZZ_ASSERT(s.nnamed == n);
			for (i = 0; i < n; i++) {
				FUZZ_ASSERT(s.named[i] == e->event->erased_seqs[i]);
			}
		} else {
			FUZZ_ASSERT(s.erasures == 0 && s.nnamed == 0);
		}
		if (e->kind == IHALA__V2__ENTRY_KIND__ENTRY_KIND_SUBMISSION) {
			env = ihala__v2__envelope__unpack(NULL, e->envelope.len, e->envelope.data);
		}
		if (env != NULL && env->base.n_unknown_fields == 0) {
			FUZZ_ASSERT(s.sealed == (env->sealed_sha256.len > 0));
		} else if (e->kind != IHALA__V2__ENTRY_KIND__ENTRY_KIND_SUBMISSION) {
			FUZZ_ASSERT(s.sealed == 0);
		}
		if (env != NULL) {
			ihala__v2__envelope__free_unpacked(env, NULL);
		}
		ihala__v2__log_entry__free_unpacked(e, NULL);
	}
	audit_sealed_release(&s);
	return 0;
}
