/* conns.c - the broker's TCP connections as ZeroMQ's monitor reports them; closing silent ones. */
#include "conns.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <zmq.h>

#include "error.h"

struct conn_ent {
	uint64_t gen; /* 0: no connection on this descriptor */
	uint64_t accepted_ms;
	int session; /* a session started on it */
};

struct conns {
	void *mon;
	struct conn_ent *ents; /* indexed by descriptor */
	size_t n_ents;
	size_t open;
	uint64_t next_gen;
};

static struct conn_ent *
ent(struct conns *c, int fd)
{
	if (fd < 0) {
		return NULL;
	}
	if ((size_t)fd >= c->n_ents) {
		size_t n = c->n_ents == 0 ? 1024 : c->n_ents;
		struct conn_ent *e;

		while (n <= (size_t)fd) {
			n *= 2;
		}
		e = realloc(c->ents, n * sizeof(*e));
		if (e == NULL) {
			return NULL;
		}
		memset(e + c->n_ents, 0, (n - c->n_ents) * sizeof(*e));
		c->ents = e;
		c->n_ents = n;
	}
	return &c->ents[fd];
}

int
conns_new(void *zctx, void *router, struct conns **out)
{
	static unsigned seq;
	struct conns *c = calloc(1, sizeof(*c));
	char ep[64];
	int zero = 0;

	*out = NULL;
	if (c == NULL) {
		return IHALA_ENOMEM;
	}
	snprintf(ep, sizeof(ep), "inproc://ihala-conns-%u", seq++);
	if (zmq_socket_monitor(
	        router, ep, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CLOSED) != 0 ||
	    (c->mon = zmq_socket(zctx, ZMQ_PAIR)) == NULL) {
		free(c);
		return IHALA_EZMQ;
	}
	/* No high-water mark: a dropped event would leave a connection's entry wrong. */
	zmq_setsockopt(c->mon, ZMQ_RCVHWM, &zero, sizeof(zero));
	zmq_setsockopt(c->mon, ZMQ_LINGER, &zero, sizeof(zero));
	if (zmq_connect(c->mon, ep) != 0) {
		zmq_close(c->mon);
		free(c);
		return IHALA_EZMQ;
	}
	*out = c;
	return 0;
}

void
conns_free(struct conns *c)
{
	if (c == NULL) {
		return;
	}
	zmq_close(c->mon);
	free(c->ents);
	free(c);
}

void
conns_events(struct conns *c, uint64_t now_ms)
{
	uint8_t head[6];
	zmq_msg_t addr;
	uint16_t event;
	uint32_t value;
	struct conn_ent *e;
	int more = 0;
	size_t ml = sizeof(more);

	for (;;) {
		int n = zmq_recv(c->mon, head, sizeof(head), ZMQ_DONTWAIT);

		if (n < 0) {
			return;
		}
		zmq_msg_init(&addr); /* the second part names the endpoint: not needed */
		ml = sizeof(more);
		if (zmq_getsockopt(c->mon, ZMQ_RCVMORE, &more, &ml) == 0 && more) {
			zmq_msg_recv(&addr, c->mon, 0);
		}
		zmq_msg_close(&addr);
		if (n != (int)sizeof(head)) {
			continue;
		}
		memcpy(&event, head, sizeof(event));
		memcpy(&value, head + 2, sizeof(value));
		e = ent(c, (int)value);
		if (e == NULL) {
			continue;
		}
		if (event == ZMQ_EVENT_ACCEPTED) {
			if (e->gen == 0) {
				c->open++;
			}
			e->gen = ++c->next_gen;
			e->accepted_ms = now_ms;
			e->session = 0;
		} else if (e->gen != 0) {
			e->gen = 0;
			c->open--;
		}
	}
}

uint64_t
conns_session(struct conns *c, int fd, uint64_t now_ms)
{
	struct conn_ent *e;

	conns_events(c, now_ms);
	e = ent(c, fd);
	if (e == NULL || e->gen == 0) {
		return 0;
	}
	e->session = 1;
	return e->gen;
}

void
conns_release(struct conns *c, int fd, uint64_t gen, uint64_t now_ms)
{
	struct conn_ent *e = ent(c, fd);

	if (e != NULL && gen != 0 && e->gen == gen) {
		e->session = 0;
		e->accepted_ms = now_ms;
	}
}

int
conns_close(struct conns *c, int fd, uint64_t gen)
{
	struct conn_ent *e = ent(c, fd);

	if (e == NULL || gen == 0 || e->gen != gen) {
		return 0;
	}
	shutdown(fd, SHUT_RDWR);
	/* Forget it now: its disconnect event follows, and must not count twice. */
	e->gen = 0;
	c->open--;
	return 1;
}

size_t
conns_reap(struct conns *c, uint64_t now_ms, uint64_t timeout_ms)
{
	size_t fd, n = 0;

	conns_events(c, now_ms);
	for (fd = 0; fd < c->n_ents; fd++) {
		struct conn_ent *e = &c->ents[fd];

		if (e->gen != 0 && !e->session && now_ms - e->accepted_ms > timeout_ms) {
			n += (size_t)conns_close(c, (int)fd, e->gen);
		}
	}
	return n;
}

size_t
conns_count(const struct conns *c)
{
	return c->open;
}
