/* inq.h - what one session sent and the loop has not processed yet, held in our memory. */
#ifndef IHALA_INQ_H
#define IHALA_INQ_H

#include <stddef.h>
#include <stdint.h>

#include <zmq.h>

/*
 * The broker takes every message off its ROUTER socket each turn of its loop, and never lets
 * ZeroMQ's receive queue fill (see open_sockets() in server.c for why): what a session sent
 * waits here instead, in arrival order, up to a byte cap the caller chooses, and is processed
 * a bounded amount per turn.
 */
struct inq;

/* A new empty queue in *out (free with inq_free). 0 or IHALA_ENOMEM. */
int inq_new(struct inq **out);

/* Every message still queued is dropped; q may be NULL. */
void inq_free(struct inq *q);

/*
 * Move the content of m to the tail of q (m is left empty and must still be closed by the
 * caller) unless the queue would then hold more than cap bytes: IHALA_EOVERLOAD, and m is
 * left as it was. IHALA_ENOMEM when no memory.
 */
int inq_push(struct inq *q, zmq_msg_t *m, size_t cap);

/* The oldest message: 1 with *data and *len (valid until inq_pop or inq_free), 0 if empty. */
int inq_peek(const struct inq *q, const uint8_t **data, size_t *len);

/* Drop the oldest message (nothing when empty). */
void inq_pop(struct inq *q);

/* Bytes queued now. */
size_t inq_bytes(const struct inq *q);

/* Drop every message. */
void inq_clear(struct inq *q);

#endif
