/* session.h - the broker's session table and its wire: send, flush, errors, end, reap. */
#ifndef IHALA_SESSION_H
#define IHALA_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "ihala.pb-c.h"
#include "server_int.h"

/* The live session with ZeroMQ routing id `rid`, or NULL. Borrowed from the table. */
struct session *session_by_rid(struct server *sv, const uint8_t *rid, size_t len);
/* The session with id `id` (dead ones too, until reaped), or NULL. */
struct session *session_by_id(struct server *sv, uint64_t id);

/* Send raw bytes as one ZeroMQ message of `type` (CHANNEL_MSG_*) to the session's routing id.
 * IHALA_EAGAIN when ZeroMQ cannot take it now, IHALA_ECLOSED when the peer is gone. */
int wire_send(struct server *sv, struct session *s, uint8_t type, const uint8_t *data, size_t len);
/* Push the channel's TLS output to ZeroMQ; keep what ZeroMQ cannot take now. */
void session_flush(struct server *sv, struct session *s);
/* Encode one frame into the session's channel (sent at the loop's next flush). IHALA_EAGAIN
 * when the session's output is full. `f` is only read. */
int session_send(struct server *sv, struct session *s, const Ihala__V2__Frame *f);
/* Send an Error frame (`text` NULL: the code's own sentence). */
void send_error(struct server *sv, struct session *s, int code, uint64_t request_id,
                const char *text);
/* End a session: optional last Error (code != 0), close_notify, flush; freed when reaped. */
void session_end(struct server *sv, struct session *s, int code, const char *text);
/* Free `s`, already unlinked from the table; its unacked deliveries go to the agency's next
 * session. */
void session_free(struct server *sv, struct session *s);
/* Unlink and free every dead session. */
void sessions_reap(struct server *sv);
/* Is the peer still there? A PROBE; a peer that is gone is marked dead. */
void session_probe(struct server *sv, struct session *s, uint64_t t);
/* At max_sessions: probe every authenticated session (at most once a second) and reap. */
void sessions_sweep(struct server *sv);

#endif
