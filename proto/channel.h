/* channel.h - one TLS 1.3 session over memory buffers, carrying length-prefixed frames. */
#ifndef IHALA_CHANNEL_H
#define IHALA_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

/*
 * A channel does not own a socket. The caller's loop (broker: one channel per
 * ROUTER routing id; client: one per connection) feeds it the TLS bytes that
 * arrived (channel_feed), takes out the TLS bytes to send (channel_take_out),
 * and exchanges application frames with it (channel_next_frame,
 * channel_write_frame). Inside TLS a frame is a 4-byte big-endian length and
 * that many body bytes.
 *
 * On the wire (docs/PROTOCOL.md) each ZeroMQ message is one type byte and
 * its payload: CHANNEL_MSG_TLS + TLS bytes, or CHANNEL_MSG_RESET (broker to
 * client: no TLS session for this connection, start a new handshake). The
 * channel itself never sees the type byte.
 *
 * After every call that may have produced output (channel_new for a client,
 * channel_feed, channel_next_frame, channel_write_frame, channel_close),
 * the caller sends everything channel_take_out() gives: handshake messages,
 * alerts and close_notify come out that way too.
 *
 * A channel is used by one thread at a time. Every call clears this thread's
 * OpenSSL error queue first, so one peer's errors never show in another's.
 */

#define CHANNEL_MSG_TLS 0x01
#define CHANNEL_MSG_RESET 0x02
/* Broker to client, empty: "are you still there?" (a send fails when the connection is gone);
 * the client ignores it. */
#define CHANNEL_MSG_PROBE 0x03

/* Bytes of the big-endian length before every frame inside TLS: the channel alone adds and
 * strips it (frame_encode gives the body only). */
#define CHANNEL_FRAME_PREFIX 4

/* Upper bound accepted for max_frame. */
#define CHANNEL_MAX_FRAME_LIMIT (1u << 30)

enum channel_state {
	CHANNEL_HANDSHAKING, /* TLS handshake in progress */
	CHANNEL_OPEN,        /* handshake done, peer certificate verified, ALPN agreed */
	CHANNEL_FAILED,      /* see channel_error() and channel_error_text() */
	CHANNEL_CLOSED,      /* close_notify sent or received, or channel_close() */
};

struct channel;

/*
 * Create a channel on ctx (from tlsctx_server_new/tlsctx_client_new; the
 * channel takes its own reference, so the caller may free ctx at any time).
 * is_server: 1 for the broker side, 0 for a client. server_name: client
 * only, required: the DNS name or IP address the broker's certificate must
 * match (also sent as SNI when it is a name); borrowed for the call; ignored
 * by a server (may be NULL).
 * max_frame: largest frame body accepted or sent, 1..CHANNEL_MAX_FRAME_LIMIT.
 * out_cap: most TLS output bytes held for the caller before
 * channel_write_frame() answers IHALA_EAGAIN (> 0). A frame written while
 * nothing is pending is always accepted, so a frame can always be written
 * once the output is drained: the output exceeds out_cap only by that one
 * frame, when it alone is larger (see channel_wire_size()).
 * A client channel has its ClientHello ready in the output on return.
 * Returns 0 and *out (release with channel_free), or IHALA_EINVAL,
 * IHALA_ENOMEM, IHALA_ETLS.
 */
int channel_new(SSL_CTX *ctx, int is_server, const char *server_name, size_t max_frame,
                size_t out_cap, struct channel **out);

/* Free the channel and its TLS session (sends nothing); NULL is fine. */
void channel_free(struct channel *ch);

/*
 * Push TLS bytes received from the peer (borrowed; copied before return).
 * Drives the handshake, then decrypts application data into whole frames.
 * Returns 0 (also when the peer closed cleanly: channel_state() is then
 * CHANNEL_CLOSED) or an error, which later calls return again:
 *   IHALA_EHANDSHAKE  handshake refused, by us or by the peer (under TLS 1.3 a
 *                     client learns only after its own handshake finished that
 *                     the server refused its certificate); CHANNEL_FAILED;
 *   IHALA_EFRAMESIZE  the peer announced a frame larger than max_frame (found
 *                     from its length prefix, before its body is buffered).
 *                     No more input is taken, but TLS is intact and the
 *                     channel stays CHANNEL_OPEN: the caller may still write
 *                     a last frame (an Error) and channel_close();
 *   IHALA_ETLS        any other TLS failure (bad record, unexpected alert);
 *                     CHANNEL_FAILED;
 *   IHALA_ENOMEM      CHANNEL_FAILED.
 * channel_error_text() then says why. Frames completed before a failure or
 * a close stay available to channel_next_frame().
 * Decryption stops while max_frame + 16 KiB of undelivered frames are
 * buffered; channel_next_frame() resumes it. Call channel_next_frame() until
 * it returns 0 after every feed.
 */
int channel_feed(struct channel *ch, const uint8_t *tls_in, size_t len);

/*
 * Next complete frame received: returns 1 and sets *body and *len (body
 * owned by the channel, valid until the next channel_feed(),
 * channel_next_frame() or channel_free() on this channel), 0 when none is
 * complete yet, or a negative error as channel_feed() would return it when
 * resuming decryption fails.
 */
int channel_next_frame(struct channel *ch, const uint8_t **body, size_t *len);

/*
 * Send one frame (body borrowed, copied into TLS before return; len may be 0).
 * Returns 0, or:
 *   IHALA_EAGAIN     output is pending and it plus this frame would exceed
 *                    out_cap: nothing was written; drain the output with
 *                    channel_take_out() and retry the same frame later;
 *   IHALA_EFRAMESIZE len > max_frame;
 *   IHALA_EPROTOCOL  handshake not finished yet;
 *   IHALA_ECLOSED    channel closed or failed;
 *   IHALA_ETLS       TLS failure (channel now CHANNEL_FAILED).
 */
int channel_write_frame(struct channel *ch, const uint8_t *body, size_t len);

/* Most TLS bytes a frame body of len bytes can take on the wire. */
size_t channel_wire_size(size_t len);

/* Number of TLS bytes waiting to be sent. */
size_t channel_pending_out(const struct channel *ch);

/*
 * Move up to cap pending TLS bytes into the caller's buf; *n gets the count
 * (0 when nothing is pending). Wrap each chunk as one CHANNEL_MSG_TLS
 * message. Works in every state (a failed channel may still have an alert to
 * send). Returns 0 or IHALA_EINVAL.
 */
int channel_take_out(struct channel *ch, uint8_t *buf, size_t cap, size_t *n);

enum channel_state channel_state(const struct channel *ch);
/* "handshaking", "open", "failed", "closed"; static storage. */
const char *channel_state_name(enum channel_state st);

/* The error that failed the channel or refused its input (0 if none). */
int channel_error(const struct channel *ch);

/*
 * Why the channel failed, for people: the verification error ("certificate
 * revoked", "unable to get local issuer certificate", "certificate has
 * expired", "hostname mismatch"), the alert the peer sent ("tlsv1 alert
 * unknown ca", "sslv3 alert certificate revoked", "tlsv1 alert protocol
 * version"), or our own refusal. "" when it did not fail. Owned by the
 * channel, valid until channel_free().
 */
const char *channel_error_text(const struct channel *ch);

/*
 * The peer's certificate, or NULL before the handshake sent it. Borrowed:
 * valid until channel_free(); X509_up_ref() it to keep it longer. Verified
 * only when channel_state() has been CHANNEL_OPEN.
 */
X509 *channel_peer_cert(const struct channel *ch);

/* The TLS session (borrowed, valid until channel_free()): for
 * tls_peer_identity() and SSL_get_peer_cert_chain(). Do not do I/O on it. */
SSL *channel_ssl(const struct channel *ch);

/* 1 when both sides agreed on ALPN TLSCTX_ALPN, else 0. */
int channel_alpn_ok(const struct channel *ch);

/*
 * Close: sends close_notify (to be taken out) when the TLS session is up,
 * then the channel is CHANNEL_CLOSED. Idempotent; always returns 0.
 */
int channel_close(struct channel *ch);

/*
 * 1 when tls (the payload of a CHANNEL_MSG_TLS message, without the type
 * byte) starts with a TLS handshake record holding a ClientHello: record
 * type 0x16, version 3.x, handshake type 0x01 at byte 5. The broker answers
 * anything else from an unknown routing id with CHANNEL_MSG_RESET.
 */
int channel_is_client_hello(const uint8_t *tls, size_t len);

#endif
