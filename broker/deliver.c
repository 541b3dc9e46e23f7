/* deliver.c - the broker's delivery scheduler: queued entries to recipients, acks, replays. */
#include "deliver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "clock.h"
#include "config.h"
#include "error.h"
#include "ledger.h"
#include "log.h"
#include "metrics.h"
#include "session.h"
#include "store.h"

#define REPLAY_BATCH 256
#define MAX_ACKS_PENDING 1024 /* per agency: acks handed to the writer and not logged yet */

struct agency_rt *
agency_rt_get(struct server *sv, const char *id)
{
	struct agency_rt *a;

	for (a = sv->agencies; a != NULL; a = a->next) {
		if (strcmp(a->id, id) == 0) {
			return a;
		}
	}
	a = calloc(1, sizeof(*a));
	if (a == NULL) {
		return NULL;
	}
	snprintf(a->id, sizeof(a->id), "%s", id);
	a->next = sv->agencies;
	sv->agencies = a;
	return a;
}

struct collect {
	uint64_t seqs[MAX_WINDOW];
	size_t n;
	size_t max;
};

static int
collect_cb(void *arg, uint64_t seq)
{
	struct collect *c = arg;

	c->seqs[c->n++] = seq;
	return c->n >= c->max ? 1 : 0;
}

static void
agency_pick_deliverer(struct server *sv, struct agency_rt *a)
{
	struct session *s;

	if (a->deliverer != NULL) {
		return;
	}
	for (s = sv->sessions; s != NULL; s = s->next) {
		if (s->authed && !s->dead && s->art == a && s->role != AGENCY_ROLE_AUDITOR) {
			a->deliverer = s;
			a->next_seq = 0;
			a->n_inflight = 0;
			return;
		}
	}
}

/* Send queued entries to the agency's session while the credit window and output allow. */
void
agency_pump(struct server *sv, struct agency_rt *a)
{
	size_t window = sv->cfg->limits.credit_window;
	struct store_rtxn *r = NULL;
	struct collect c;
	struct session *s;
	size_t i;

	a->dirty = 0;
	agency_pick_deliverer(sv, a);
	s = a->deliverer;
	if (s == NULL || s->dead || window > MAX_WINDOW) {
		window = window > MAX_WINDOW ? MAX_WINDOW : window;
		if (s == NULL || s->dead) {
			return;
		}
	}
	/* Acks free credit at once, but each is a request for the writer: a recipient faster
	 * than the writer would queue them without bound (memory). Pause at MAX_ACKS_PENDING. */
	if (a->n_inflight >= window || s->wire_len > 0 || a->acks_pending >= MAX_ACKS_PENDING) {
		return;
	}
	if (store_rbegin(sv->store, &r) != 0) {
		return;
	}
	c.n = 0;
	c.max = window - a->n_inflight;
	if (c.max > MAX_ACKS_PENDING - a->acks_pending) {
		c.max = MAX_ACKS_PENDING - a->acks_pending;
	}
	if (store_queue_iter(r, a->id, a->next_seq, collect_cb, &c) != 0) {
		c.n = 0;
	}
	for (i = 0; i < c.n; i++) {
		Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
		Ihala__V2__Deliver d = IHALA__V2__DELIVER__INIT;
		const void *data, *sdata;
		size_t len, slen;
		int err;

		if (store_log_get(r, c.seqs[i], &data, &len) != 0) {
			log_warnx("queue of '%s' names seq %llu, which is not in the log", a->id,
			          (unsigned long long)c.seqs[i]);
			a->next_seq = c.seqs[i] + 1;
			continue;
		}
		d.seq = c.seqs[i];
		d.entry.data = (uint8_t *)data;
		d.entry.len = len;
		/* Its sealed part, if it has one still (none once erased). */
		if (store_sealed_get(r, d.seq, &sdata, &slen) == 0) {
			d.sealed.data = (uint8_t *)sdata;
			d.sealed.len = slen;
		}
		f.kind_case = IHALA__V2__FRAME__KIND_DELIVER;
		f.deliver = &d;
		err = session_send(sv, s, &f);
		if (err == IHALA_EAGAIN) {
			a->dirty = 1; /* back-pressure: resume when the output drains */
			break;
		}
		if (err != 0) {
			break;
		}
		a->inflight[a->n_inflight++] = d.seq;
		a->next_seq = d.seq + 1;
		metrics_inc_deliveries();
	}
	store_rend(r);
}

/* Hand the session's gathered acks to the writer (one request for all of them). */
void
acks_send(struct server *sv, struct session *s)
{
	struct wreq *r = s->acks;
	struct agency_rt *a = s->art;

	if (r == NULL) {
		return;
	}
	s->acks = NULL;
	if (sv->stopping) {
		/* The writer has its STOP: these acks would never be logged. Their entries stay
		 * queued and are delivered again after the restart (at least once). */
		wreq_free(r);
		return;
	}
	r->now_ms = clock_wall_ms();
	if (server_to_writer(sv, r) != 0) {
		wreq_free(r); /* their entries stay queued and are delivered again */
		return;
	}
	if (a != NULL) {
		a->acks_pending += r->n_acks;
	}
}

void
handle_ack(struct server *sv, struct session *s, uint64_t seq)
{
	struct agency_rt *a = s->art;
	size_t i;

	if (a != NULL && a->deliverer == s) {
		for (i = 0; i < a->n_inflight; i++) {
			if (a->inflight[i] == seq) {
				a->inflight[i] = a->inflight[--a->n_inflight];
				a->dirty = 1;
				break;
			}
		}
	}
	metrics_inc_acks();
	if (s->acks == NULL) {
		if ((s->acks = wreq_new(WREQ_ACK)) == NULL) {
			/* Not logged: the entry stays queued, and is delivered again to the
			 * agency's next session (at least once). */
			log_warnx("agency '%s': ack of seq %llu dropped: out of memory", s->agency,
			          (unsigned long long)seq);
			return;
		}
		s->acks->session_id = s->id;
		snprintf(s->acks->agency, sizeof(s->acks->agency), "%s", s->agency);
	}
	s->acks->acks[s->acks->n_acks++] = seq;
	if (s->acks->n_acks == WREQ_MAX_ACKS) {
		acks_send(sv, s);
	}
}

void
replay_stop(struct server *sv, struct session *s)
{
	if (s->replaying && s->replay_follow) {
		sv->replay_followers--;
	}
	s->replaying = 0;
}

void
replay_pump(struct server *sv, struct session *s)
{
	struct store_rtxn *r = NULL;
	struct store_log_iter *it = NULL;
	Ihala__V2__LogRecord recs[REPLAY_BATCH];
	Ihala__V2__LogRecord *ptrs[REPLAY_BATCH];

	while (s->replaying && !s->dead && s->wire_len == 0) {
		Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
		Ihala__V2__LogEntries le = IHALA__V2__LOG_ENTRIES__INIT;
		size_t n = 0, bytes = 0;
		uint64_t seq, last = 0;
		const void *data;
		size_t len;
		int err;

		if (store_rbegin(sv->store, &r) != 0) {
			return; /* tried again at the loop's next turn */
		}
		err = store_log_last(r, &last);
		if (s->replay_to != 0 && last > s->replay_to) {
			last = s->replay_to;
		}
		if (err == 0 && s->replay_next <= last &&
		    (err = store_log_iter_begin(r, s->replay_next, &it)) == 0) {
			while (n < REPLAY_BATCH && bytes < sv->cfg->limits.max_frame / 2 &&
			       (err = store_log_iter_next(it, &seq, &data, &len)) == 0 &&
			       seq <= last) {
				const void *sdata = NULL;
				size_t slen = 0;

				/* With its sealed part (ciphertext; none once erased). */
				if (store_sealed_get(r, seq, &sdata, &slen) != 0) {
					sdata = NULL;
					slen = 0;
				}
				/* An entry with its sealed part fits a frame alone (the submit
				 * checked it), not always beside others: it starts the next one. */
				if (n > 0 &&
				    bytes + len + slen + 32 > sv->cfg->limits.max_frame - 64) {
					break;
				}
				ihala__v2__log_record__init(&recs[n]);
				recs[n].seq = seq;
				recs[n].entry.data = (uint8_t *)data;
				recs[n].entry.len = len;
				recs[n].sealed.data = (uint8_t *)sdata;
				recs[n].sealed.len = slen;
				ptrs[n] = &recs[n];
				bytes += len + slen + 32;
				n++;
			}
			store_log_iter_end(it);
			if (err == IHALA_ENOTFOUND) {
				err = 0; /* the end of the log */
			}
		}
		if (err != 0) {
			/* Never a "done" for a replay the store could not read to its end. */
			store_rend(r);
			replay_stop(sv, s);
			send_error(sv, s, err, s->replay_req, "cannot read the log for the replay");
			return;
		}
		le.request_id = s->replay_req;
		le.n_records = n;
		le.records = ptrs;
		le.done = !s->replay_follow && (n == 0 || recs[n - 1].seq >= last);
		if (n == 0 && !le.done) {
			store_rend(r);
			return; /* following: wait for new commits */
		}
		f.kind_case = IHALA__V2__FRAME__KIND_LOG_ENTRIES;
		f.log_entries = &le;
		err = session_send(sv, s, &f);
		store_rend(r);
		if (err == IHALA_EAGAIN) {
			return;
		}
		if (err != 0) {
			replay_stop(sv, s);
			return;
		}
		if (n > 0) {
			s->replay_next = recs[n - 1].seq + 1;
		}
		if (le.done) {
			replay_stop(sv, s);
		}
	}
}
