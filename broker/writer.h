/* writer.h - the broker's single writer thread: a ledger fed through a PAIR socket. */
#ifndef IHALA_WRITER_H
#define IHALA_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "ledger.h"

struct store;
struct checkpoint_signer;

/*
 * The main thread sends `struct wreq *` pointers (ledger.h) over an inproc PAIR socket; the
 * writer takes everything that is waiting (up to max_batch), applies it as one batch of the
 * ledger (one LMDB write transaction, committed with sync), and only then sends every request
 * back with its result. Ownership of a request passes with the pointer: the writer owns it
 * between receive and send-back, the main thread otherwise.
 */

/* What the writer needs; every pointer borrowed for the thread's life (policy swapped by
 * WREQ_POLICY). */
struct writer_params {
	struct store *store;
	void *zctx;           /* ZeroMQ context shared with the main thread */
	const char *endpoint; /* inproc endpoint the main thread bound (PAIR) */
	struct writer_policy *policy;
	size_t max_batch;
	struct checkpoint_signer *signer; /* NULL: no checkpoints (unless sign is set) */
	/* As ledger_params.sign (the broker's signer process); NULL: `signer`. */
	int (*sign)(void *arg, const char *origin, uint64_t size, const uint8_t root[32],
	            char **text_out);
	void *sign_arg;
	const char *origin; /* copied by writer_start (up to 255 bytes) */
	uint64_t ckpt_every_entries;
	uint64_t ckpt_every_ms;
	int auto_grow;         /* grow the map instead of refusing when it is nearly full */
	uint64_t disk_reserve; /* as ledger_params.disk_reserve */
};

struct writer;

/* Start the thread; it connects to params->endpoint. */
int writer_start(const struct writer_params *params, struct writer **out);
/* Join the thread (after WREQ_STOP came back) and free. */
void writer_join(struct writer *w);

#endif
