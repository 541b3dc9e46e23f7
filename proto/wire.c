/* wire.c - a client's connection to the broker: one ZeroMQ DEALER socket carrying one channel. */
#include "wire.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "error.h"
#include "frame.h"

/* Most TLS bytes per ZeroMQ message. */
#define WIRE_CHUNK (64 * 1024)

struct wire {
	void *sock;
	void *mon; /* PAIR on the socket monitor, or NULL */
	int connected;
	int blocking; /* sends wait up to ZMQ_SNDTIMEO */
	int linger_ms;
	char *server_name;
	SSL_CTX *ssl;
	size_t max_frame, out_cap;
	struct channel *ch;
	int feed_err; /* the session's first input error, told as WIRE_FAILED */
	int told;     /* its failure or close was told */
	int heard;    /* the session was fed at least one TLS message from the broker */
	/* the message being built or held back: type byte + up to WIRE_CHUNK bytes */
	uint8_t *out;
	size_t out_len;
	zmq_msg_t in; /* the last message received, while in_live */
	int in_live;
};

static int say(char *errtext, size_t errlen, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
say(char *errtext, size_t errlen, int err, const char *fmt, ...)
{
	va_list ap;

	if (errtext != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(errtext, errlen, fmt, ap);
		va_end(ap);
	}
	return err;
}

static int
monitor_open(void *zctx, struct wire *w)
{
	static unsigned seq;
	char ep[80];

	snprintf(ep, sizeof(ep), "inproc://ihala-wire-mon-%p-%u", (void *)w,
	         __atomic_fetch_add(&seq, 1, __ATOMIC_RELAXED));
	if (zmq_socket_monitor(w->sock, ep, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) != 0) {
		return -1;
	}
	w->mon = zmq_socket(zctx, ZMQ_PAIR);
	return w->mon != NULL && zmq_connect(w->mon, ep) == 0 ? 0 : -1;
}

int
wire_open(void *zctx, const struct wire_opts *o, struct wire **out, char *errtext, size_t errlen)
{
	struct wire *w = calloc(1, sizeof(*w));
	int one = 1, zero = 0;

	if (w == NULL || (w->out = malloc(WIRE_CHUNK + 1)) == NULL ||
	    (w->server_name = strdup(o->server_name)) == NULL) {
		wire_free(w, 0);
		return say(errtext, errlen, IHALA_ENOMEM, "out of memory");
	}
	w->ssl = o->ssl;
	w->max_frame = o->max_frame;
	w->out_cap = o->out_cap;
	w->linger_ms = o->linger_ms;
	w->blocking = o->send_timeout_ms >= 0;
	w->sock = zmq_socket(zctx, ZMQ_DEALER);
	if (w->sock == NULL) {
		wire_free(w, 0);
		return say(errtext, errlen, IHALA_EZMQ, "cannot create a ZeroMQ socket: %s",
		           zmq_strerror(zmq_errno()));
	}
	/* Never ZMQ_ROUTING_ID: each connection is a fresh routing id and a fresh TLS session. */
	zmq_setsockopt(w->sock, ZMQ_LINGER, &zero, sizeof(zero));
	if (o->immediate) {
		zmq_setsockopt(w->sock, ZMQ_IMMEDIATE, &one, sizeof(one));
	}
	if (w->blocking) {
		zmq_setsockopt(w->sock, ZMQ_SNDTIMEO, &o->send_timeout_ms,
		               sizeof(o->send_timeout_ms));
	}
	if (o->hwm > 0) {
		zmq_setsockopt(w->sock, ZMQ_SNDHWM, &o->hwm, sizeof(o->hwm));
		zmq_setsockopt(w->sock, ZMQ_RCVHWM, &o->hwm, sizeof(o->hwm));
	}
	if (o->keepalive) {
		int ivl = 2000, ttl = 6000, tmo = 6000, rivl = 100, rmax = 2000;
		int64_t maxmsg = (int64_t)FRAME_MAX_LIMIT + 64 * 1024;

		zmq_setsockopt(w->sock, ZMQ_HEARTBEAT_IVL, &ivl, sizeof(ivl));
		zmq_setsockopt(w->sock, ZMQ_HEARTBEAT_TTL, &ttl, sizeof(ttl));
		zmq_setsockopt(w->sock, ZMQ_HEARTBEAT_TIMEOUT, &tmo, sizeof(tmo));
		zmq_setsockopt(w->sock, ZMQ_RECONNECT_IVL, &rivl, sizeof(rivl));
		zmq_setsockopt(w->sock, ZMQ_RECONNECT_IVL_MAX, &rmax, sizeof(rmax));
		zmq_setsockopt(w->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
	}
	if (o->monitor && monitor_open(zctx, w) != 0) {
		wire_free(w, 0);
		return say(errtext, errlen, IHALA_EZMQ, "cannot monitor the socket: %s",
		           zmq_strerror(zmq_errno()));
	}
	if (zmq_connect(w->sock, o->endpoint) != 0) {
		int e = zmq_errno();

		wire_free(w, 0);
		return say(errtext, errlen, IHALA_EINVAL, "cannot connect to '%s': %s", o->endpoint,
		           zmq_strerror(e));
	}
	zmq_setsockopt(w->sock, ZMQ_LINGER, &w->linger_ms, sizeof(w->linger_ms));
	*out = w;
	return 0;
}

void
wire_free(struct wire *w, int linger_ms)
{
	int zero = 0;

	if (w == NULL) {
		return;
	}
	channel_free(w->ch);
	if (w->in_live) {
		zmq_msg_close(&w->in);
	}
	if (w->mon != NULL) {
		zmq_socket_monitor(w->sock, NULL, 0);
		zmq_setsockopt(w->mon, ZMQ_LINGER, &zero, sizeof(zero));
		zmq_close(w->mon);
	}
	if (w->sock != NULL) {
		if (linger_ms >= 0) {
			zmq_setsockopt(w->sock, ZMQ_LINGER, &linger_ms, sizeof(linger_ms));
		}
		zmq_close(w->sock);
	}
	free(w->server_name);
	free(w->out);
	free(w);
}

/* Send w->out; keep it when a non-blocking send cannot go now. */
static int
send_out(struct wire *w)
{
	if (zmq_send(w->sock, w->out, w->out_len, w->blocking ? 0 : ZMQ_DONTWAIT) < 0) {
		if (zmq_errno() != EAGAIN && zmq_errno() != EINTR) {
			return IHALA_EZMQ;
		}
		return w->blocking ? IHALA_ETIMEDOUT : IHALA_EAGAIN;
	}
	w->out_len = 0;
	return 0;
}

int
wire_flush(struct wire *w)
{
	int err;

	for (;;) {
		if (w->out_len == 0) {
			size_t n = 0;

			if (w->ch == NULL || channel_pending_out(w->ch) == 0) {
				return 0;
			}
			w->out[0] = CHANNEL_MSG_TLS;
			channel_take_out(w->ch, w->out + 1, WIRE_CHUNK, &n);
			w->out_len = n + 1;
		}
		if ((err = send_out(w)) != 0) {
			return err;
		}
	}
}

int
wire_msg_init(zmq_msg_t *m, uint8_t type, const uint8_t *data, size_t len)
{
	if (zmq_msg_init_size(m, len + 1) != 0) {
		return IHALA_ENOMEM;
	}
	((uint8_t *)zmq_msg_data(m))[0] = type;
	if (len > 0) {
		memcpy((uint8_t *)zmq_msg_data(m) + 1, data, len);
	}
	return 0;
}

int
wire_send_raw(struct wire *w, uint8_t type, const uint8_t *data, size_t len)
{
	zmq_msg_t m;

	if (wire_msg_init(&m, type, data, len) != 0) {
		return IHALA_ENOMEM;
	}
	if (zmq_msg_send(&m, w->sock, w->blocking ? 0 : ZMQ_DONTWAIT) < 0) {
		int e = zmq_errno();

		zmq_msg_close(&m);
		if (e != EAGAIN && e != EINTR) {
			return IHALA_EZMQ;
		}
		return w->blocking ? IHALA_ETIMEDOUT : IHALA_EAGAIN;
	}
	return 0;
}

void
wire_drop(struct wire *w)
{
	channel_free(w->ch);
	w->ch = NULL;
	w->out_len = 0;
	w->feed_err = 0;
	w->told = 0;
	w->heard = 0;
}

int
wire_start(struct wire *w, int hold)
{
	int err;

	wire_drop(w);
	err = channel_new(w->ssl, 0, w->server_name, w->max_frame, w->out_cap, &w->ch);
	if (err != 0 || hold) {
		return err;
	}
	err = wire_flush(w);
	return err == IHALA_EAGAIN ? 0 : err;
}

void
wire_close(struct wire *w)
{
	if (w->ch != NULL && channel_state(w->ch) == CHANNEL_OPEN) {
		channel_close(w->ch);
		wire_flush(w);
	}
}

int
wire_heard(const struct wire *w)
{
	return w->ch != NULL && w->heard;
}

struct channel *
wire_channel(const struct wire *w)
{
	return w->ch;
}

void *
wire_socket(const struct wire *w)
{
	return w->sock;
}

int
wire_connected(const struct wire *w)
{
	return w->connected;
}

int
wire_held(const struct wire *w)
{
	return w->out_len > 0;
}

int
wire_send_body(struct wire *w, const uint8_t *body, size_t len)
{
	int err;

	if (w->ch == NULL) {
		return IHALA_ECLOSED;
	}
	err = channel_write_frame(w->ch, body, len);
	if (err == IHALA_EAGAIN) {
		wire_flush(w);
		err = channel_write_frame(w->ch, body, len);
	}
	return err;
}

int
wire_send_frame(struct wire *w, const Ihala__V2__Frame *f)
{
	uint8_t *buf;
	size_t len;
	int err;

	if (w->ch == NULL) {
		return IHALA_ECLOSED;
	}
	if ((err = frame_encode(f, &buf, &len)) != 0) {
		return err;
	}
	err = wire_send_body(w, buf, len);
	free(buf);
	return err;
}

int
wire_wait(struct wire *w, long timeout_ms)
{
	zmq_pollitem_t it[2];
	int n;

	it[0].socket = w->sock;
	it[0].events = ZMQ_POLLIN;
	it[1].socket = w->mon;
	it[1].events = ZMQ_POLLIN;
	if (w->out_len > 0 && timeout_ms > 1) {
		timeout_ms = 1; /* then wire_flush again */
	}
	n = zmq_poll(it, w->mon != NULL ? 2 : 1, timeout_ms);
	if (n < 0) {
		return zmq_errno() == EINTR ? 0 : IHALA_EZMQ;
	}
	return n > 0;
}

/* One monitor event: 1 with *kind, 0 for an event of no interest, -1 when none is waiting. */
static int
monitor_event(struct wire *w, enum wire_kind *kind)
{
	zmq_msg_t ev, addr;
	uint16_t event = 0;
	int got = 0;

	zmq_msg_init(&ev);
	if (zmq_msg_recv(&ev, w->mon, ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(&ev);
		return -1;
	}
	if (zmq_msg_size(&ev) >= sizeof(event)) {
		memcpy(&event, zmq_msg_data(&ev), sizeof(event));
	}
	zmq_msg_close(&ev);
	zmq_msg_init(&addr);
	zmq_msg_recv(&addr, w->mon, 0); /* the endpoint part */
	zmq_msg_close(&addr);
	if (event == ZMQ_EVENT_CONNECTED) {
		w->connected = 1;
		*kind = WIRE_CONNECTED;
		got = 1;
	} else if (event == ZMQ_EVENT_DISCONNECTED) {
		w->connected = 0;
		*kind = WIRE_DISCONNECTED;
		got = 1;
	}
	return got;
}

int
wire_next_raw(struct wire *w, struct wire_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	if (w->in_live) {
		zmq_msg_close(&w->in);
		w->in_live = 0;
	}
	if (w->mon != NULL) {
		enum wire_kind k;
		int got;

		while ((got = monitor_event(w, &k)) >= 0) {
			if (got) {
				ev->kind = k;
				return 0;
			}
		}
	}
	for (;;) {
		const uint8_t *p;
		size_t len;

		zmq_msg_init(&w->in);
		if (zmq_msg_recv(&w->in, w->sock, ZMQ_DONTWAIT) < 0) {
			int e = zmq_errno();

			zmq_msg_close(&w->in);
			ev->kind = WIRE_NONE;
			return e == EAGAIN || e == EINTR ? 0 : IHALA_EZMQ;
		}
		p = zmq_msg_data(&w->in);
		len = zmq_msg_size(&w->in);
		if (len == 0 || p[0] == CHANNEL_MSG_PROBE) {
			/* "Still there?": the send itself told the broker. */
			zmq_msg_close(&w->in);
			continue;
		}
		w->in_live = 1;
		ev->kind = WIRE_RAW;
		ev->type = p[0];
		ev->data = p + 1;
		ev->len = len - 1;
		return 0;
	}
}

int
wire_next(struct wire *w, struct wire_event *ev)
{
	int rc;

	for (;;) {
		if (w->ch != NULL) {
			const uint8_t *body;
			size_t len;

			rc = channel_next_frame(w->ch, &body, &len);
			if (rc == 1) {
				memset(ev, 0, sizeof(*ev));
				ev->kind = WIRE_FRAME;
				ev->data = body;
				ev->len = len;
				return 0;
			}
			if (rc < 0 && w->feed_err == 0) {
				w->feed_err = rc;
			}
			if (!w->told &&
			    (w->feed_err != 0 || channel_state(w->ch) == CHANNEL_FAILED ||
			     channel_state(w->ch) == CHANNEL_CLOSED)) {
				memset(ev, 0, sizeof(*ev));
				w->told = 1;
				ev->err = w->feed_err != 0 ? w->feed_err : channel_error(w->ch);
				ev->kind = ev->err != 0 ? WIRE_FAILED : WIRE_CLOSED;
				return 0;
			}
		}
		/* The answers to what came (handshake, and what the caller wrote for the frames
		 * it took) leave together, before the next message is taken. */
		rc = wire_flush(w);
		if (rc != 0 && rc != IHALA_EAGAIN) {
			return rc;
		}
		if ((rc = wire_next_raw(w, ev)) != 0 || ev->kind != WIRE_RAW) {
			return rc;
		}
		if (ev->type == CHANNEL_MSG_RESET) {
			ev->kind = WIRE_RESET;
			return 0;
		}
		if (ev->type != CHANNEL_MSG_TLS || w->ch == NULL) {
			continue; /* nothing this client knows, or no session for it */
		}
		w->heard = 1;
		rc = channel_feed(w->ch, ev->data, ev->len);
		if (rc != 0 && w->feed_err == 0) {
			w->feed_err = rc;
		}
	}
}
