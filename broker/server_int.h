/* server_int.h - the broker loop's shared state: server, sessions, agencies (private to broker). */
#ifndef IHALA_SERVER_INT_H
#define IHALA_SERVER_INT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>

#include "clock.h"
#include "frame.h"
#include "tlsctx.h"

/*
 * One thread (the main one) owns everything here: server.c's loop, and the session,
 * delivery and request modules it calls. The writer thread sees none of it; it gets
 * `struct wreq` pointers over the PAIR socket (writer.h).
 */

#define MAX_WINDOW 1024 /* largest credit window of a deliverer */

struct session;
struct broker_config;
struct store;
struct signer;
struct writer;
struct writer_policy;
struct wreq;
struct channel;

/* Delivery state of one agency: entries go to one of its sessions at a time. */
struct agency_rt {
	char id[ID_AGENCY_MAX + 1];
	struct session *deliverer;
	uint64_t next_seq; /* next queue position to look at */
	uint64_t inflight[MAX_WINDOW];
	size_t n_inflight;
	size_t acks_pending; /* acks handed to the writer and not logged yet */
	int dirty;           /* new entries may be queued */
	struct agency_rt *next;
};

struct session {
	uint64_t id;       /* unique for the broker's life, routes writer answers */
	struct wreq *acks; /* acks received this turn, not yet handed to the writer */
	uint8_t rid[256];
	size_t rid_len;
	struct channel *ch;
	struct inq *inq; /* received, not processed yet (see sessions_input()) */
	int authed;
	int dead;    /* peer gone or closed: free at the end of the iteration */
	int backlog; /* its channel may hold frames not served yet (turn budget spent) */
	int closing; /* flush what is pending, then free */
	char agency[ID_AGENCY_MAX + 1];
	int role;
	uint8_t fp[TLS_FP_LEN];
	char addr[64]; /* the peer's IP address, as ZeroMQ gives it */
	int fd;        /* its connection (conns.h), with conn_gen */
	uint64_t conn_gen;
	uint64_t created_ms;
	uint64_t last_ms;
	uint64_t probe_ms; /* when it was last probed */
	size_t inflight_submits;
	size_t inflight_bytes; /* their envelopes' bytes */
	struct agency_rt *art;

	/* TLS bytes taken from the channel but refused by ZeroMQ (EAGAIN): sent first. */
	uint8_t *wire;
	size_t wire_len;

	/* replay (auditors) */
	int replaying;
	int replay_follow;
	uint64_t replay_req;
	uint64_t replay_next;
	uint64_t replay_to;

	struct session *next;
};

/* Frames decode into the server's arena (frame_decode_in), emptied after each one. */
#define FRAME_ARENA_BYTES 16384

struct server {
	struct broker_config *cfg;
	struct pb_arena frame_arena;
	int frame_arena_busy; /* a frame is being handled in it */
	/* sessions_input's list of handshakes to serve this turn (hs_cap slots, grown) */
	struct session **hs_list;
	size_t hs_cap;
	_Alignas(16) uint8_t frame_arena_buf[FRAME_ARENA_BYTES];
	SSL_CTX *ssl;
	struct store *store;
	struct signer *signer; /* the checkpoint key's process (signer.h) */
	int signer_lost;       /* it died: stopping, exit status 1 */
	void *zctx;
	void *router;
	void *wpair;
	struct writer *writer;
	struct writer_policy *policy;
	int sigfd;
	/* Root was dropped at start: reloads keep the TLS certificate and key read before (only
	 * root can read the key) and re-read the rest. */
	int keys_kept;

	struct conns *conns;
	struct ratelog *refusals; /* security: lines about refusals, per agency */
	size_t n_evicted;         /* half-open handshakes evicted since evict_log_ms */
	size_t n_reaped;          /* silent connections closed since evict_log_ms */
	uint64_t evict_log_ms;
	struct session *sessions;
	size_t n_sessions;
	size_t n_preauth;
	uint64_t next_session_id;
	struct agency_rt *agencies;
	uint8_t *wirebuf;

	int stopping;       /* SIGTERM seen */
	int writer_stopped; /* WREQ_STOP came back */
	uint64_t stop_ms;
	int tick_outstanding;
	uint64_t last_tick_ms;
	int replay_followers;
	uint64_t last_sweep_ms; /* see sessions_sweep() */
};

/* Hand request `r` to the writer thread, which owns it from then on. IHALA_EZMQ when the
 * pipe refused it (logged): `r` is still the caller's. */
int server_to_writer(struct server *sv, struct wreq *r);

#endif
