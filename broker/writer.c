/* writer.c - the single writer thread: takes requests off a PAIR socket, group-commits them. */
#include "clock.h"
#include "writer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "error.h"
#include "log.h"

struct writer {
	struct writer_params p;
	pthread_t thread;
	void *sock;
	struct ledger *ledger;
};

static void *
writer_main(void *arg)
{
	struct writer *wr = arg;
	struct wreq **batch;
	size_t cap = wr->p.max_batch > 0 ? wr->p.max_batch : 1;
	int stop = 0;
	uint64_t n_batches = 0, n_reqs = 0, n_submits = 0; /* for the summary at shutdown */

	batch = calloc(cap, sizeof(*batch));
	if (batch == NULL) {
		fatalx("writer: out of memory");
	}
	while (!stop) {
		struct wreq *r;
		size_t n = 0, i;
		int err, rc;

		/* Block for the first request, then take whatever else is waiting: everything that
		 * arrived during the previous commit shares this one (group commit). */
		rc = zmq_recv(wr->sock, &r, sizeof(r), 0);
		while (rc == sizeof(r)) {
			batch[n++] = r;
			if (n == cap || r->type == WREQ_STOP || r->type == WREQ_POLICY) {
				break;
			}
			rc = zmq_recv(wr->sock, &r, sizeof(r), ZMQ_DONTWAIT);
		}
		if (n == 0) {
			continue;
		}
		for (n_batches++, n_reqs += n, i = 0; i < n; i++) {
			n_submits += batch[i]->type == WREQ_SUBMIT;
		}
		ledger_check_room(wr->ledger);
		err = ledger_apply_batch(wr->ledger, batch, n);
		if (err != 0) {
			log_warnx("writer: commit of a batch of %zu requests failed: %s", n,
			          ihala_strerror(err));
		}
		/* STOP and POLICY end a batch: the requests before them ran under the old table. */
		r = batch[n - 1];
		if (r->type == WREQ_STOP) {
			stop = 1;
		} else if (r->type == WREQ_POLICY) {
			r->policy = ledger_swap_policy(wr->ledger, r->policy);
		}
		/* Only now, with the batch on disk, do the answers go back. The pipe has no
		 * high-water mark: a send fails only when the context is ending, and then nobody
		 * waits for the answer any more. */
		for (i = 0; i < n; i++) {
			r = batch[i];
			if (zmq_send(wr->sock, &r, sizeof(r), 0) != sizeof(r)) {
				log_warnx("writer: cannot hand an answer back: %s",
				          zmq_strerror(zmq_errno()));
				stop |= r->type == WREQ_STOP;
				wreq_free(r);
			}
		}
	}
	ledger_checkpoint_now(wr->ledger, clock_wall_ms());
	log_info("writer: %llu batches, %.1f requests and %.1f submissions per batch",
	         (unsigned long long)n_batches,
	         n_batches ? (double)n_reqs / (double)n_batches : 0.0,
	         n_batches ? (double)n_submits / (double)n_batches : 0.0);
	free(batch);
	zmq_close(wr->sock);
	return NULL;
}

int
writer_start(const struct writer_params *params, struct writer **out)
{
	struct writer *wr = calloc(1, sizeof(*wr));
	struct ledger_params lp;
	int linger = 0, err;

	if (wr == NULL) {
		return IHALA_ENOMEM;
	}
	wr->p = *params;
	wr->p.origin = NULL; /* the ledger keeps its copy */
	memset(&lp, 0, sizeof(lp));
	lp.store = params->store;
	lp.policy = params->policy;
	lp.signer = params->signer;
	lp.sign = params->sign;
	lp.sign_arg = params->sign_arg;
	lp.origin = params->origin;
	lp.ckpt_every_entries = params->ckpt_every_entries;
	lp.ckpt_every_ms = params->ckpt_every_ms;
	lp.auto_grow = params->auto_grow;
	lp.disk_reserve = params->disk_reserve;
	err = ledger_new(&lp, &wr->ledger);
	if (err != 0) {
		free(wr);
		return err;
	}
	wr->sock = zmq_socket(wr->p.zctx, ZMQ_PAIR);
	/* Unbounded pipe both ways, as the main thread's end (see server.c open_sockets). */
	if (wr->sock == NULL ||
	    zmq_setsockopt(wr->sock, ZMQ_LINGER, &linger, sizeof(linger)) != 0 ||
	    zmq_setsockopt(wr->sock, ZMQ_SNDHWM, &linger, sizeof(linger)) != 0 ||
	    zmq_setsockopt(wr->sock, ZMQ_RCVHWM, &linger, sizeof(linger)) != 0 ||
	    zmq_connect(wr->sock, wr->p.endpoint) != 0) {
		log_warnx("writer: cannot connect to %s: %s", wr->p.endpoint,
		          zmq_strerror(zmq_errno()));
		if (wr->sock != NULL) {
			zmq_close(wr->sock);
		}
		ledger_free(wr->ledger);
		free(wr);
		return IHALA_EZMQ;
	}
	if (pthread_create(&wr->thread, NULL, writer_main, wr) != 0) {
		zmq_close(wr->sock);
		ledger_free(wr->ledger);
		free(wr);
		return IHALA_EINTERNAL;
	}
	*out = wr;
	return 0;
}

void
writer_join(struct writer *w)
{
	if (w != NULL) {
		pthread_join(w->thread, NULL);
		ledger_free(w->ledger);
		free(w);
	}
}
