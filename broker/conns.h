/* conns.h - the broker's TCP connections as ZeroMQ reports them, to close those that never talk. */
#ifndef IHALA_CONNS_H
#define IHALA_CONNS_H

#include <stddef.h>
#include <stdint.h>

/*
 * A ROUTER socket gives no way to end one peer's connection, and a peer that connects and never
 * sends a ClientHello is never seen by the broker at all. This module watches the socket's
 * monitor (accepted, disconnected, closed, with the descriptor) and learns from each first
 * message (ZMQ_SRCFD) which connection carried it; to end a connection it shuts the socket
 * down (shutdown(2), not close(2): libzmq then reads end-of-file and closes it itself).
 * A connection is named by its descriptor and a generation, so that a descriptor reused by a
 * later connection is never shut down by mistake.
 */
struct conns;

/* Watch `router` (a ZeroMQ socket of context zctx): 0, IHALA_ENOMEM or IHALA_EZMQ. */
int conns_new(void *zctx, void *router, struct conns **out);

/* Stop watching; c may be NULL. */
void conns_free(struct conns *c);

/* Take the monitor's pending events (call before reading the router each turn). */
void conns_events(struct conns *c, uint64_t now_ms);

/*
 * A session starts on the connection of descriptor fd (from ZMQ_SRCFD; < 0: unknown): it is
 * no longer a candidate for conns_reap(). Returns the connection's generation (0: unknown).
 */
uint64_t conns_session(struct conns *c, int fd, uint64_t now_ms);

/*
 * The session on connection (fd, gen) ended before it was authenticated (its handshake timed
 * out): the connection is again a candidate for conns_reap(), its clock restarted, so that a
 * client told RESET may start a new handshake on it, and one that does not is closed.
 */
void conns_release(struct conns *c, int fd, uint64_t gen, uint64_t now_ms);

/* Shut down the connection (fd, gen) if it is still open; 1 if it was. */
int conns_close(struct conns *c, int fd, uint64_t gen);

/* Shut down connections that carried no session within timeout_ms of being accepted; returns
 * how many. */
size_t conns_reap(struct conns *c, uint64_t now_ms, uint64_t timeout_ms);

/* Connections open now, as far as the monitor has said. */
size_t conns_count(const struct conns *c);

#endif
