/* handlers.h - the broker's requests: handshake end, submit, query, replay, proof, checkpoint. */
#ifndef IHALA_HANDLERS_H
#define IHALA_HANDLERS_H

#include <stddef.h>
#include <stdint.h>

#include "server_int.h"

/* TLS bytes arrived for session `s`: feed its channel, authenticate it once the handshake is
 * done, and handle every frame that is complete. `tls` is only read. */
void session_input(struct server *sv, struct session *s, const uint8_t *tls, size_t len);

#endif
