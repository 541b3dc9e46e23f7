/* inq.c - a session's received ZeroMQ messages, queued in our memory up to a byte cap. */
#include "inq.h"

#include <stdlib.h>

#include "error.h"

struct inq_node {
	zmq_msg_t m;
	struct inq_node *next;
};

struct inq {
	struct inq_node *head;
	struct inq_node *tail;
	size_t bytes;
};

int
inq_new(struct inq **out)
{
	*out = calloc(1, sizeof(**out));
	return *out == NULL ? IHALA_ENOMEM : 0;
}

void
inq_clear(struct inq *q)
{
	while (q->head != NULL) {
		inq_pop(q);
	}
}

void
inq_free(struct inq *q)
{
	if (q == NULL) {
		return;
	}
	inq_clear(q);
	free(q);
}

int
inq_push(struct inq *q, zmq_msg_t *m, size_t cap)
{
	size_t len = zmq_msg_size(m);
	struct inq_node *n;

	if (len > cap || q->bytes > cap - len) {
		return IHALA_EOVERLOAD;
	}
	n = malloc(sizeof(*n));
	if (n == NULL) {
		return IHALA_ENOMEM;
	}
	n->next = NULL;
	zmq_msg_init(&n->m);
	zmq_msg_move(&n->m, m); /* no copy: the new node takes the message's buffer */
	if (q->tail != NULL) {
		q->tail->next = n;
	} else {
		q->head = n;
	}
	q->tail = n;
	q->bytes += len;
	return 0;
}

int
inq_peek(const struct inq *q, const uint8_t **data, size_t *len)
{
	if (q->head == NULL) {
		return 0;
	}
	*data = zmq_msg_data((zmq_msg_t *)&q->head->m);
	*len = zmq_msg_size((zmq_msg_t *)&q->head->m);
	return 1;
}

void
inq_pop(struct inq *q)
{
	struct inq_node *n = q->head;

	if (n == NULL) {
		return;
	}
	q->head = n->next;
	if (q->head == NULL) {
		q->tail = NULL;
	}
	q->bytes -= zmq_msg_size(&n->m);
	zmq_msg_close(&n->m);
	free(n);
}

size_t
inq_bytes(const struct inq *q)
{
	return q->bytes;
}
