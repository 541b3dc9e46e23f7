/* handlers.h - the broker's requests: handshake end, submit, query, replay, proof, checkpoint. */
#ifndef IHALA_HANDLERS_H
#define IHALA_HANDLERS_H

#include <stddef.h>
#include <stdint.h>

#include "server_int.h"

/* Frames of one session served in one turn of the loop at most: one TLS record can carry
 * thousands of small requests, and each costs a store read and an answer. */
#define SESSION_TURN_FRAMES 64

/* TLS bytes arrived for session `s`: feed its channel, authenticate it once the handshake is
 * done, and handle up to SESSION_TURN_FRAMES complete frames; s->backlog is set when more
 * may wait (serve them with session_pump before feeding more). `tls` is only read. */
void session_input(struct server *sv, struct session *s, const uint8_t *tls, size_t len);

/* Serve up to SESSION_TURN_FRAMES frames already in the session's channel; s->backlog is
 * set again when more may wait. */
void session_pump(struct server *sv, struct session *s);

#endif
