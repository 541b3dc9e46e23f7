/* session.c - the broker's session table and its wire: send, flush, errors, end, reap. */
#include "session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "channel.h"
#include "clock.h"
#include "deliver.h"
#include "error.h"
#include "frame.h"
#include "inq.h"
#include "log.h"
#include "metrics.h"
#include "wire.h"

#define WIRE_CHUNK (64 * 1024)

struct session *
session_by_rid(struct server *sv, const uint8_t *rid, size_t len)
{
	struct session *s;

	for (s = sv->sessions; s != NULL; s = s->next) {
		if (s->rid_len == len && memcmp(s->rid, rid, len) == 0 && !s->dead) {
			return s;
		}
	}
	return NULL;
}

struct session *
session_by_id(struct server *sv, uint64_t id)
{
	struct session *s;

	for (s = sv->sessions; s != NULL; s = s->next) {
		if (s->id == id) {
			return s;
		}
	}
	return NULL;
}

/* Send raw bytes as one ZeroMQ message of `type` to the session's routing id. */
int
wire_send(struct server *sv, struct session *s, uint8_t type, const uint8_t *data, size_t len)
{
	zmq_msg_t m;

	/* The body first: a routing id sent without its body would glue the next message to
	 * it. */
	if (wire_msg_init(&m, type, data, len) != 0) {
		return IHALA_ENOMEM;
	}
	if (zmq_send(sv->router, s->rid, s->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
		int e = zmq_errno();

		zmq_msg_close(&m);
		return e == EAGAIN ? IHALA_EAGAIN : IHALA_ECLOSED;
	}
	if (zmq_msg_send(&m, sv->router, ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(&m);
		return IHALA_ECLOSED;
	}
	return 0;
}

/* Push the channel's TLS output to ZeroMQ; keep what ZeroMQ cannot take now. */
void
session_flush(struct server *sv, struct session *s)
{
	int err;

	while (!s->dead) {
		if (s->wire_len == 0) {
			if (channel_pending_out(s->ch) == 0) {
				return;
			}
			if (s->wire == NULL && (s->wire = malloc(WIRE_CHUNK)) == NULL) {
				return;
			}
			channel_take_out(s->ch, s->wire, WIRE_CHUNK, &s->wire_len);
		}
		err = wire_send(sv, s, CHANNEL_MSG_TLS, s->wire, s->wire_len);
		if (err == IHALA_EAGAIN) {
			return; /* the peer is slow: its bytes wait here, bounded by out_cap */
		}
		if (err != 0) {
			log_debug("session %llu (%s): peer gone", (unsigned long long)s->id,
			          s->authed ? s->agency : "unauthenticated");
			s->dead = 1;
			return;
		}
		s->wire_len = 0;
	}
}

/* Encode and send one frame. IHALA_EAGAIN when the session's output is full. */
int
session_send(struct server *sv, struct session *s, const Ihala__V2__Frame *f)
{
	uint8_t *buf;
	size_t len;
	int err;

	if (s->dead) {
		return IHALA_ECLOSED;
	}
	err = frame_encode(f, &buf, &len);
	if (err != 0) {
		return err;
	}
	err = channel_write_frame(s->ch, buf, len);
	if (err == IHALA_EAGAIN) {
		session_flush(sv, s);
		err = channel_write_frame(s->ch, buf, len);
	}
	free(buf);
	/* No flush here: serve() flushes every session once per turn of its loop, so the frames
	 * of one turn (a batch of receipts, a window of deliveries) share TLS records and
	 * ZeroMQ messages. */
	return err;
}

void
send_error(struct server *sv, struct session *s, int code, uint64_t request_id, const char *text)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__Error e = IHALA__V2__ERROR__INIT;

	e.code = (Ihala__V2__ErrorCode)(-code);
	e.message = (char *)(text != NULL ? text : ihala_strerror(code));
	e.request_id = request_id;
	f.kind_case = IHALA__V2__FRAME__KIND_ERROR;
	f.error = &e;
	session_send(sv, s, &f);
}

/* End a session: optional last Error, close_notify, flush; freed after this iteration. */
void
session_end(struct server *sv, struct session *s, int code, const char *text)
{
	if (s->dead || s->closing) {
		return;
	}
	if (code != 0 && channel_state(s->ch) == CHANNEL_OPEN) {
		send_error(sv, s, code, 0, text);
	}
	channel_close(s->ch);
	session_flush(sv, s);
	s->closing = 1;
	s->dead = 1;
}

void
session_free(struct server *sv, struct session *s)
{
	acks_send(sv, s); /* acks that came before the end still count */
	if (s->art != NULL && s->art->deliverer == s) {
		/* What was sent and not acked goes again to the agency's next session. */
		s->art->deliverer = NULL;
		s->art->next_seq = 0;
		s->art->n_inflight = 0;
		s->art->dirty = 1;
	}
	if (!s->authed) {
		sv->n_preauth--;
	}
	metrics_session_closed(s->authed ? s->agency : NULL);
	if (s->replaying && s->replay_follow) {
		sv->replay_followers--;
	}
	sv->n_sessions--;
	channel_free(s->ch);
	inq_free(s->inq);
	free(s->wire);
	free(s);
}

void
sessions_reap(struct server *sv)
{
	struct session **pp = &sv->sessions;

	while (*pp != NULL) {
		struct session *s = *pp;

		if (s->dead) {
			*pp = s->next;
			/* Another session of the same agency takes over its deliveries. */
			session_free(sv, s);
		} else {
			pp = &s->next;
		}
	}
}

/*
 * Is the peer still there? A killed client vanishes without a word: ZeroMQ drops its
 * connection but tells us nothing, and a quiet session is never sent anything that could
 * fail. Its slot would stay taken (max_sessions) and, for a deliverer with its credit window
 * full, its deliveries would wait for it for ever instead of going to the agency's next
 * session. A PROBE to a routing id that is gone fails (ROUTER_MANDATORY).
 */
void
session_probe(struct server *sv, struct session *s, uint64_t t)
{
	s->probe_ms = t;
	if (wire_send(sv, s, CHANNEL_MSG_PROBE, NULL, 0) == IHALA_ECLOSED) {
		log_debug("session %llu (%s): peer gone", (unsigned long long)s->id,
		          s->authed ? s->agency : "unauthenticated");
		s->dead = 1;
	}
}

/*
 * At max_sessions: probe every authenticated session now (at most once a second) rather than
 * wait for timers() to reach the quiet ones, so that a flood of clients that connect and
 * vanish cannot lock the others out.
 */
void
sessions_sweep(struct server *sv)
{
	uint64_t t = clock_wall_ms();
	struct session *s;

	if (t - sv->last_sweep_ms < 1000) {
		return;
	}
	sv->last_sweep_ms = t;
	for (s = sv->sessions; s != NULL; s = s->next) {
		if (s->authed && !s->dead) {
			session_probe(sv, s, t);
		}
	}
	sessions_reap(sv);
}
