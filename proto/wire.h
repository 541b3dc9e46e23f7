/* wire.h - a client's connection to the broker: one ZeroMQ DEALER socket carrying one channel. */
#ifndef IHALA_WIRE_H
#define IHALA_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <zmq.h>

#include "channel.h"
#include "ihala.pb-c.h"

/*
 * The client side of docs/PROTOCOL.md §2 in one place, for libihala, the probe and the load
 * generator: each ZeroMQ message is one type byte (CHANNEL_MSG_*) and its payload; the TLS
 * bytes of the current session go as CHANNEL_MSG_TLS, CHANNEL_MSG_PROBE is skipped, and
 * CHANNEL_MSG_RESET is handed to the caller, who decides whether to start a new session.
 *
 * A wire owns its socket (and the socket monitor, when asked for) and at most one channel:
 * wire_start() makes a new TLS session on the same socket, wire_drop() forgets it. It does
 * not wait by itself, except in wire_wait() and, with send_timeout_ms >= 0, in sends.
 * Nothing is flushed behind the caller's back apart from the handshake: write any number of
 * frames, then wire_flush() once, so they share TLS records and ZeroMQ messages.
 *
 * A wire is used by one thread at a time.
 */

struct wire;

struct wire_opts {
	const char *endpoint;    /* "tcp://HOST:PORT"; borrowed for wire_open() */
	SSL_CTX *ssl;            /* client context; each session takes its own reference */
	const char *server_name; /* the name the broker's certificate must match; copied */
	size_t max_frame;        /* channel_new(): largest frame body, both ways */
	size_t out_cap;          /* channel_new(): TLS output held before IHALA_EAGAIN */
	int immediate;           /* ZMQ_IMMEDIATE: queue nothing before the TCP connection is up */
	int linger_ms;           /* ZMQ_LINGER until wire_free() */
	/* < 0: sends never block; a message ZeroMQ cannot take now waits in the wire (one at a
	 * time) for the next wire_flush(). >= 0: each send waits up to this long (ZMQ_SNDTIMEO). */
	int send_timeout_ms;
	int hwm;       /* ZMQ_SNDHWM and ZMQ_RCVHWM; 0: ZeroMQ's default */
	int keepalive; /* a long-lived connection: ZeroMQ heartbeats (2 s, dead after 6 s),
	                  reconnects every 0.1..2 s, messages up to FRAME_MAX_LIMIT + 64 KiB */
	int monitor;   /* report WIRE_CONNECTED and WIRE_DISCONNECTED (socket monitor) */
};

enum wire_kind {
	WIRE_NONE,         /* nothing more now: wire_wait() */
	WIRE_FRAME,        /* data/len: one frame body of the session */
	WIRE_RESET,        /* the broker has no TLS session for this connection */
	WIRE_CONNECTED,    /* the monitor saw the TCP connection come up (a new routing id) */
	WIRE_DISCONNECTED, /* the monitor saw it go */
	WIRE_FAILED,       /* the session failed or its input was refused: err, and
	                      channel_error_text(wire_channel()) says why; told once per session */
	WIRE_CLOSED,       /* the broker closed the session (close_notify); told once */
	WIRE_RAW,          /* wire_next_raw() only: type and data/len, the payload */
};

/* data: owned by the wire, valid until the next call on it. */
struct wire_event {
	enum wire_kind kind;
	const uint8_t *data;
	size_t len;
	uint8_t type;
	int err;
};

/*
 * Create the socket with the options of `o` (borrowed for the call) on the ZeroMQ context
 * zctx, and connect it. No TLS session yet (wire_start). Returns 0 and *out (release with
 * wire_free), or IHALA_EZMQ, IHALA_EINVAL (the endpoint is refused), IHALA_ENOMEM; then
 * errtext (may be NULL) gets why.
 */
int wire_open(void *zctx, const struct wire_opts *o, struct wire **out, char *errtext,
              size_t errlen);

/* Close the socket (with linger_ms, or the wire's linger when < 0) and free everything,
 * without a close_notify (wire_close first for that). NULL is fine. */
void wire_free(struct wire *w, int linger_ms);

/*
 * A new TLS session (the old one is dropped with any output not yet sent). Its ClientHello
 * is flushed, unless hold (then channel_take_out(wire_channel()) gets it). Returns 0, or the
 * error of channel_new() or of the flush (IHALA_ETIMEDOUT, IHALA_EZMQ; not IHALA_EAGAIN).
 */
int wire_start(struct wire *w, int hold);

/* Forget the TLS session and the output not yet sent. */
void wire_drop(struct wire *w);

/* Send close_notify when the session is open, and flush. */
void wire_close(struct wire *w);

/* 1 once the current session has been fed a TLS message from the broker (0 with none). */
int wire_heard(const struct wire *w);

/* The current session, or NULL (borrowed: valid until wire_start, wire_drop, wire_free). */
struct channel *wire_channel(const struct wire *w);

/* The socket, for zmq_poll() over several wires (borrowed). */
void *wire_socket(const struct wire *w);

/* 1 while the monitor says the TCP connection is up (always 0 without a monitor). */
int wire_connected(const struct wire *w);

/* 1 while a message waits for ZeroMQ to take it (send_timeout_ms < 0). */
int wire_held(const struct wire *w);

/*
 * Encode f and write it into the session (not flushed). When the session's output is full,
 * flush and try once more. Returns 0, IHALA_EAGAIN (still full: flush later and send again),
 * IHALA_ECLOSED (no session), or an error of frame_encode / channel_write_frame.
 */
int wire_send_frame(struct wire *w, const Ihala__V2__Frame *f);

/* The same for a frame body given as bytes (borrowed), sent as is. */
int wire_send_body(struct wire *w, const uint8_t *body, size_t len);

/*
 * Move the session's output into ZeroMQ, a CHANNEL_MSG_TLS message per 64 KiB. Returns 0
 * when all of it went, IHALA_EAGAIN when a message waits in the wire (non-blocking sends),
 * IHALA_ETIMEDOUT or IHALA_EZMQ (blocking sends).
 */
int wire_flush(struct wire *w);

/* One ZeroMQ message of the protocol (either side, the broker's ROUTER too): the type byte
 * and a copy of the payload. 0, or IHALA_ENOMEM (then m is not initialised). */
int wire_msg_init(zmq_msg_t *m, uint8_t type, const uint8_t *data, size_t len);

/* One message of our choosing: type byte and payload (borrowed), not through the session.
 * Same sending rules and returns as wire_flush. */
int wire_send_raw(struct wire *w, uint8_t type, const uint8_t *data, size_t len);

/*
 * Wait up to timeout_ms for something to read on the socket or the monitor (at most 1 ms
 * while a message is held). Returns 1 when there is, 0 on timeout or a signal, IHALA_EZMQ.
 */
int wire_wait(struct wire *w, long timeout_ms);

/*
 * The next event, without waiting: the session's frames in order, then its failure or
 * close, then what the next message brings (TLS bytes are fed to the session). Before a
 * message is taken, the session's output is flushed (as far as ZeroMQ takes it): the
 * handshake's answers and what the caller wrote for the frames it took leave together.
 * WIRE_NONE when nothing more is there now.
 * Returns 0 with *ev filled, or a local error (IHALA_EZMQ; with blocking sends, the flush's
 * IHALA_ETIMEDOUT).
 */
int wire_next(struct wire *w, struct wire_event *ev);

/* The next event of the socket as it came, without the session: WIRE_CONNECTED,
 * WIRE_DISCONNECTED, WIRE_RAW (CHANNEL_MSG_PROBE is skipped) or WIRE_NONE. */
int wire_next_raw(struct wire *w, struct wire_event *ev);

#endif
