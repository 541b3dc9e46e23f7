/* server.c - the broker's event loop: TLS sessions over a ZeroMQ ROUTER, dispatch, delivery. */
#include "server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <zmq.h>

#include "channel.h"
#include "checkpoint.h"
#include "config.h"
#include "conns.h"
#include "error.h"
#include "frame.h"
#include "inq.h"
#include "log.h"
#include "merkle.h"
#include "metrics.h"
#include "policy.h"
#include "priv.h"
#include "ratelog.h"
#include "store.h"
#include "tlsctx.h"
#include "writer.h"

#define BROKER_VERSION "ihala-broker 0.1.0"
#define WRITER_ENDPOINT "inproc://ihala-writer"
#define WIRE_CHUNK (64 * 1024)
#define REPLAY_BATCH 256
#define TICK_MS 1000
#define SHUTDOWN_FLUSH_MS 3000
#define MAX_WINDOW 1024
#define MAX_ACKS_PENDING 1024 /* per agency: acks handed to the writer and not logged yet */
/* A deliverer silent this long with deliveries unacked is probed (see timers()). */
#define PROBE_MS 1000
/* Bytes a LogEntry and a Deliver frame add around an envelope (seq, time, agency ids, tags). */
#define ENTRY_OVERHEAD 512
/* Refusals of one agency logged in full: one per this interval, the rest counted. */
#define REFUSAL_LOG_MS 10000
/* Messages taken off the ROUTER in one turn at most (the rest wait for the next turn), and
 * bytes of one session's queued input processed in one turn at most. */
#define DRAIN_MAX 65536
#define INPUT_TURN_BYTES (256 * 1024)

struct session;

/* Delivery state of one agency: entries go to one of its sessions at a time. */
struct agency_rt {
	char id[TLS_AGENCY_MAX + 1];
	struct session *deliverer;
	uint64_t next_seq;	/* next queue position to look at */
	uint64_t inflight[MAX_WINDOW];
	size_t n_inflight;
	size_t acks_pending;	/* acks handed to the writer and not logged yet */
	int dirty;		/* new entries may be queued */
	struct agency_rt *next;
};

struct session {
	uint64_t id; /* unique for the broker's life, routes writer answers */
	struct wreq *acks; /* acks received this turn, not yet handed to the writer */
	uint8_t rid[256];
	size_t rid_len;
	struct channel *ch;
	struct inq *inq; /* received, not processed yet (see sessions_input()) */
	int authed;
	int dead;     /* peer gone or closed: free at the end of the iteration */
	int closing;  /* flush what is pending, then free */
	char agency[TLS_AGENCY_MAX + 1];
	int role;
	uint8_t fp[TLS_FP_LEN];
	char addr[64];	   /* the peer's IP address, as ZeroMQ gives it */
	int fd;		   /* its connection (conns.h), with conn_gen */
	uint64_t conn_gen;
	uint64_t created_ms;
	uint64_t last_ms;
	uint64_t probe_ms; /* when it was last probed */
	size_t inflight_submits;
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

struct server {
	struct broker_config *cfg;
	SSL_CTX *ssl;
	struct store *store;
	struct checkpoint_signer *signer;
	void *zctx;
	void *router;
	void *wpair;
	struct writer *writer;
	struct writer_policy *policy;
	int sigfd;

	struct conns *conns;
	struct ratelog *refusals; /* security: lines about refusals, per agency */
	size_t n_evicted;	/* half-open handshakes evicted since evict_log_ms */
	size_t n_reaped;	/* silent connections closed since evict_log_ms */
	uint64_t evict_log_ms;
	struct session *sessions;
	size_t n_sessions;
	size_t n_preauth;
	uint64_t next_session_id;
	struct agency_rt *agencies;
	uint8_t *wirebuf;

	int stopping;	    /* SIGTERM seen */
	int writer_stopped; /* WREQ_STOP came back */
	uint64_t stop_ms;
	int tick_outstanding;
	uint64_t last_tick_ms;
	int replay_followers;
	uint64_t last_sweep_ms; /* see sessions_sweep() */
};

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the writer's view of the agencies (copied, so reloads never race the writer) ---- */

struct policy_table {
	struct writer_policy wp;
	struct policy_agency *a;
	size_t n;
};

static const struct policy_agency *
table_find(void *ctx, const char *id)
{
	struct policy_table *t = ctx;
	size_t i;

	for (i = 0; i < t->n; i++) {
		if (strcmp(t->a[i].id, id) == 0) {
			return &t->a[i];
		}
	}
	return NULL;
}

static void
table_release(struct writer_policy *wp)
{
	struct policy_table *t = (struct policy_table *)wp;
	size_t i, j;

	if (t == NULL) {
		return;
	}
	for (i = 0; i < t->n; i++) {
		free((char *)t->a[i].id);
		for (j = 0; j < t->a[i].n_may_send_to; j++) {
			free((char *)t->a[i].may_send_to[j]);
		}
		free((char **)t->a[i].may_send_to);
	}
	free(t->a);
	free(t);
}

static struct writer_policy *
table_new(const struct broker_config *cfg)
{
	struct policy_table *t = calloc(1, sizeof(*t));
	size_t i, j;

	if (t == NULL || (t->a = calloc(cfg->nagencies + 1, sizeof(*t->a))) == NULL) {
		free(t);
		return NULL;
	}
	t->wp.view.find = table_find;
	t->wp.view.ctx = t;
	t->wp.release = table_release;
	t->wp.queue_limit = cfg->limits.queue_limit;
	t->wp.deadline_ms[IHALA__V1__PRIORITY__PRIORITY_EMERGENCY] = cfg->deadlines.emergency_ms;
	t->wp.deadline_ms[IHALA__V1__PRIORITY__PRIORITY_URGENT] = cfg->deadlines.urgent_ms;
	t->wp.deadline_ms[IHALA__V1__PRIORITY__PRIORITY_NORMAL] = cfg->deadlines.normal_ms;
	t->wp.deadline_ms[0] = cfg->deadlines.normal_ms;
	for (i = 0; i < cfg->nagencies; i++) {
		const struct agency_config *ac = &cfg->agencies[i];
		struct policy_agency *pa = &t->a[t->n++];

		pa->id = strdup(ac->id);
		pa->role = (Ihala__V1__Role)ac->role;
		/* AGENCY_SEND_* and POLICY_KIND_* share their bit values. */
		pa->may_send = ac->may_send;
		pa->may_open_cases = ac->may_open_cases;
		if (!ac->may_send_to_any) {
			const char **to = calloc(ac->may_send_to_count + 1, sizeof(*to));

			pa->may_send_to = to;
			pa->n_may_send_to = ac->may_send_to_count;
			for (j = 0; to != NULL && j < ac->may_send_to_count; j++) {
				to[j] = strdup(ac->may_send_to[j]);
			}
		}
	}
	return &t->wp;
}

/* ---- sessions ---- */

static struct agency_rt *
agency_rt_get(struct server *sv, const char *id)
{
	struct agency_rt *a;

	for (a = sv->agencies; a != NULL; a = a->next) {
		if (strcmp(a->id, id) == 0) {
			return a;
		}
	}
	a = calloc(1, sizeof(*a));
	if (a == NULL) {
		return NULL;
	}
	snprintf(a->id, sizeof(a->id), "%s", id);
	a->next = sv->agencies;
	sv->agencies = a;
	return a;
}

static struct session *
session_by_rid(struct server *sv, const uint8_t *rid, size_t len)
{
	struct session *s;

	for (s = sv->sessions; s != NULL; s = s->next) {
		if (s->rid_len == len && memcmp(s->rid, rid, len) == 0 && !s->dead) {
			return s;
		}
	}
	return NULL;
}

static struct session *
session_by_id(struct server *sv, uint64_t id)
{
	struct session *s;

	for (s = sv->sessions; s != NULL; s = s->next) {
		if (s->id == id) {
			return s;
		}
	}
	return NULL;
}

/* Send raw bytes as one ZeroMQ message of `type` to the session's routing id. */
static int
wire_send(struct server *sv, struct session *s, uint8_t type, const uint8_t *data, size_t len)
{
	zmq_msg_t m;

	if (zmq_send(sv->router, s->rid, s->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
		return zmq_errno() == EAGAIN ? IHALA_EAGAIN : IHALA_ECLOSED;
	}
	if (zmq_msg_init_size(&m, len + 1) != 0) {
		return IHALA_ENOMEM;
	}
	((uint8_t *)zmq_msg_data(&m))[0] = type;
	if (len > 0) {
		memcpy((uint8_t *)zmq_msg_data(&m) + 1, data, len);
	}
	if (zmq_msg_send(&m, sv->router, ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(&m);
		return IHALA_ECLOSED;
	}
	return 0;
}

/* Push the channel's TLS output to ZeroMQ; keep what ZeroMQ cannot take now. */
static void
session_flush(struct server *sv, struct session *s)
{
	int err;

	while (!s->dead) {
		if (s->wire_len == 0) {
			if (channel_pending_out(s->ch) == 0) {
				return;
			}
			if (s->wire == NULL && (s->wire = malloc(WIRE_CHUNK)) == NULL) {
				return;
			}
			channel_take_out(s->ch, s->wire, WIRE_CHUNK, &s->wire_len);
		}
		err = wire_send(sv, s, CHANNEL_MSG_TLS, s->wire, s->wire_len);
		if (err == IHALA_EAGAIN) {
			return; /* the peer is slow: its bytes wait here, bounded by out_cap */
		}
		if (err != 0) {
			log_debug("session %llu (%s): peer gone", (unsigned long long)s->id,
				  s->authed ? s->agency : "unauthenticated");
			s->dead = 1;
			return;
		}
		s->wire_len = 0;
	}
}

/* Encode and send one frame. IHALA_EAGAIN when the session's output is full. */
static int
session_send(struct server *sv, struct session *s, const Ihala__V1__Frame *f)
{
	uint8_t *buf;
	size_t len;
	int err;

	if (s->dead) {
		return IHALA_ECLOSED;
	}
	err = frame_encode(f, &buf, &len);
	if (err != 0) {
		return err;
	}
	err = channel_write_frame(s->ch, buf + FRAME_PREFIX_LEN, len - FRAME_PREFIX_LEN);
	if (err == IHALA_EAGAIN) {
		session_flush(sv, s);
		err = channel_write_frame(s->ch, buf + FRAME_PREFIX_LEN, len - FRAME_PREFIX_LEN);
	}
	free(buf);
	/* No flush here: serve() flushes every session once per turn of its loop, so the frames
	 * of one turn (a batch of receipts, a window of deliveries) share TLS records and
	 * ZeroMQ messages. */
	return err;
}

static void
send_error(struct server *sv, struct session *s, int code, uint64_t request_id, const char *text)
{
	Ihala__V1__Frame f = IHALA__V1__FRAME__INIT;
	Ihala__V1__Error e = IHALA__V1__ERROR__INIT;

	e.code = (Ihala__V1__ErrorCode)(-code);
	e.message = (char *)(text != NULL ? text : ihala_strerror(code));
	e.request_id = request_id;
	f.kind_case = IHALA__V1__FRAME__KIND_ERROR;
	f.error = &e;
	session_send(sv, s, &f);
}

/* End a session: optional last Error, close_notify, flush; freed after this iteration. */
static void
session_end(struct server *sv, struct session *s, int code, const char *text)
{
	if (s->dead || s->closing) {
		return;
	}
	if (code != 0 && channel_state(s->ch) == CHANNEL_OPEN) {
		send_error(sv, s, code, 0, text);
	}
	channel_close(s->ch);
	session_flush(sv, s);
	s->closing = 1;
	s->dead = 1;
}

static void acks_send(struct server *sv, struct session *s);

static void
session_free(struct server *sv, struct session *s)
{
	acks_send(sv, s); /* acks that came before the end still count */
	if (s->art != NULL && s->art->deliverer == s) {
		/* What was sent and not acked goes again to the agency's next session. */
		s->art->deliverer = NULL;
		s->art->next_seq = 0;
		s->art->n_inflight = 0;
		s->art->dirty = 1;
	}
	if (!s->authed) {
		sv->n_preauth--;
	}
	metrics_session_closed(s->authed ? s->agency : NULL);
	if (s->replaying && s->replay_follow) {
		sv->replay_followers--;
	}
	sv->n_sessions--;
	channel_free(s->ch);
	inq_free(s->inq);
	free(s->wire);
	free(s);
}

static void
sessions_reap(struct server *sv)
{
	struct session **pp = &sv->sessions;

	while (*pp != NULL) {
		struct session *s = *pp;

		if (s->dead) {
			*pp = s->next;
			/* Another session of the same agency takes over its deliveries. */
			session_free(sv, s);
		} else {
			pp = &s->next;
		}
	}
}

/* ---- delivery ---- */

struct collect {
	uint64_t seqs[MAX_WINDOW];
	size_t n;
	size_t max;
};

static int
collect_cb(void *arg, uint64_t seq)
{
	struct collect *c = arg;

	c->seqs[c->n++] = seq;
	return c->n >= c->max ? 1 : 0;
}

static void
agency_pick_deliverer(struct server *sv, struct agency_rt *a)
{
	struct session *s;

	if (a->deliverer != NULL) {
		return;
	}
	for (s = sv->sessions; s != NULL; s = s->next) {
		if (s->authed && !s->dead && s->art == a && s->role != AGENCY_ROLE_AUDITOR) {
			a->deliverer = s;
			a->next_seq = 0;
			a->n_inflight = 0;
			return;
		}
	}
}

/* Send queued entries to the agency's session while the credit window and output allow. */
static void
agency_pump(struct server *sv, struct agency_rt *a)
{
	size_t window = sv->cfg->limits.credit_window;
	struct store_rtxn *r = NULL;
	struct collect c;
	struct session *s;
	size_t i;

	a->dirty = 0;
	agency_pick_deliverer(sv, a);
	s = a->deliverer;
	if (s == NULL || s->dead || window > MAX_WINDOW) {
		window = window > MAX_WINDOW ? MAX_WINDOW : window;
		if (s == NULL || s->dead) {
			return;
		}
	}
	/* Acks free credit at once, but each is a request for the writer: a recipient faster
	 * than the writer would queue them without bound (memory). Pause at MAX_ACKS_PENDING. */
	if (a->n_inflight >= window || s->wire_len > 0 || a->acks_pending >= MAX_ACKS_PENDING) {
		return;
	}
	if (store_rbegin(sv->store, &r) != 0) {
		return;
	}
	c.n = 0;
	c.max = window - a->n_inflight;
	if (c.max > MAX_ACKS_PENDING - a->acks_pending) {
		c.max = MAX_ACKS_PENDING - a->acks_pending;
	}
	if (store_queue_iter(r, a->id, a->next_seq, collect_cb, &c) != 0) {
		c.n = 0;
	}
	for (i = 0; i < c.n; i++) {
		Ihala__V1__Frame f = IHALA__V1__FRAME__INIT;
		Ihala__V1__Deliver d = IHALA__V1__DELIVER__INIT;
		const void *data;
		size_t len;
		int err;

		if (store_log_get(r, c.seqs[i], &data, &len) != 0) {
			log_warnx("queue of '%s' names seq %llu, which is not in the log", a->id,
				  (unsigned long long)c.seqs[i]);
			a->next_seq = c.seqs[i] + 1;
			continue;
		}
		d.seq = c.seqs[i];
		d.entry.data = (uint8_t *)data;
		d.entry.len = len;
		f.kind_case = IHALA__V1__FRAME__KIND_DELIVER;
		f.deliver = &d;
		err = session_send(sv, s, &f);
		if (err == IHALA_EAGAIN) {
			a->dirty = 1; /* back-pressure: resume when the output drains */
			break;
		}
		if (err != 0) {
			break;
		}
		a->inflight[a->n_inflight++] = d.seq;
		a->next_seq = d.seq + 1;
		metrics_inc_deliveries();
	}
	store_rend(r);
}

/* Hand the session's gathered acks to the writer (one request for all of them). */
static void
acks_send(struct server *sv, struct session *s)
{
	struct wreq *r = s->acks;
	struct agency_rt *a = s->art;

	if (r == NULL) {
		return;
	}
	s->acks = NULL;
	if (sv->stopping) {
		/* The writer has its STOP: these acks would never be logged. Their entries stay
		 * queued and are delivered again after the restart (at least once). */
		wreq_free(r);
		return;
	}
	r->now_ms = now_ms();
	if (zmq_send(sv->wpair, &r, sizeof(r), 0) != sizeof(r)) {
		wreq_free(r);
		return;
	}
	if (a != NULL) {
		a->acks_pending += r->n_acks;
	}
}

static void
handle_ack(struct server *sv, struct session *s, uint64_t seq)
{
	struct agency_rt *a = s->art;
	size_t i;

	if (a != NULL && a->deliverer == s) {
		for (i = 0; i < a->n_inflight; i++) {
			if (a->inflight[i] == seq) {
				a->inflight[i] = a->inflight[--a->n_inflight];
				a->dirty = 1;
				break;
			}
		}
	}
	metrics_inc_acks();
	if (s->acks == NULL) {
		if ((s->acks = wreq_new(WREQ_ACK)) == NULL) {
			return;
		}
		s->acks->session_id = s->id;
		snprintf(s->acks->agency, sizeof(s->acks->agency), "%s", s->agency);
	}
	s->acks->acks[s->acks->n_acks++] = seq;
	if (s->acks->n_acks == WREQ_MAX_ACKS) {
		acks_send(sv, s);
	}
}

/* ---- requests ---- */

static char *
latest_checkpoint(struct server *sv, uint64_t *size)
{
	struct store_rtxn *r;
	char *text = NULL;
	uint64_t sz = 0;

	if (store_rbegin(sv->store, &r) != 0) {
		return NULL;
	}
	if (store_checkpoint_latest(r, &sz, &text) != 0) {
		text = NULL;
		sz = 0;
	}
	store_rend(r);
	if (size != NULL) {
		*size = sz;
	}
	return text;
}

static void
send_welcome(struct server *sv, struct session *s)
{
	Ihala__V1__Frame f = IHALA__V1__FRAME__INIT;
	Ihala__V1__Welcome w = IHALA__V1__WELCOME__INIT;
	Ihala__V1__Limits l = IHALA__V1__LIMITS__INIT;
	char *ckpt = latest_checkpoint(sv, NULL);

	w.agency_id = s->agency;
	w.role = (Ihala__V1__Role)s->role;
	w.broker_time_ms = now_ms();
	l.max_frame_bytes = (uint32_t)sv->cfg->limits.max_frame;
	l.credit_window = (uint32_t)sv->cfg->limits.credit_window;
	l.max_inflight = (uint32_t)sv->cfg->limits.max_inflight;
	w.limits = &l;
	w.checkpoint = ckpt != NULL ? ckpt : "";
	w.broker_version = BROKER_VERSION;
	w.protocol_version = 1;
	f.kind_case = IHALA__V1__FRAME__KIND_WELCOME;
	f.welcome = &w;
	session_send(sv, s, &f);
	free(ckpt);
}

/* Live authenticated sessions of agency `id`. */
static uint64_t
agency_sessions(struct server *sv, const char *id)
{
	struct session *s;
	uint64_t n = 0;

	for (s = sv->sessions; s != NULL; s = s->next) {
		n += s->authed && !s->dead && strcmp(s->agency, id) == 0;
	}
	return n;
}

/* The handshake finished: who is it, and may it be here? */
static void
session_authenticate(struct server *sv, struct session *s)
{
	const struct agency_config *ac;
	char id[TLS_AGENCY_MAX + 1];
	char text[256];
	int err;

	err = tls_agency_cert_check(SSL_get0_peer_certificate(channel_ssl(s->ch)), text,
				    sizeof(text));
	if (err != 0) {
		log_security("session %llu: refused: %s", (unsigned long long)s->id, text);
		session_end(sv, s, err, text);
		return;
	}
	err = tls_peer_identity(channel_ssl(s->ch), id, sizeof(id), s->fp);
	if (err != 0) {
		log_security("session %llu: refused: certificate names no valid agency id (%s)",
			     (unsigned long long)s->id, ihala_strerror(err));
		session_end(sv, s, IHALA_EUNKNOWNAGENCY, NULL);
		return;
	}
	ac = broker_config_find_cn(sv->cfg, id);
	if (ac == NULL) {
		snprintf(text, sizeof(text), "certificate name '%s' is not a configured agency", id);
		log_security("session %llu: refused: %s", (unsigned long long)s->id, text);
		session_end(sv, s, IHALA_EUNKNOWNAGENCY, text);
		return;
	}
	if (ac->fingerprint != NULL && CRYPTO_memcmp(ac->fingerprint_bin, s->fp, TLS_FP_LEN) != 0) {
		snprintf(text, sizeof(text),
			 "certificate of '%s' does not match the agency's pinned fingerprint", ac->id);
		log_security("session %llu: refused: %s", (unsigned long long)s->id, text);
		session_end(sv, s, IHALA_EFINGERPRINT, text);
		return;
	}
	if (agency_sessions(sv, ac->id) >= sv->cfg->limits.max_sessions_per_agency) {
		snprintf(text, sizeof(text), "agency '%s' has %llu sessions, its limit", ac->id,
			 (unsigned long long)sv->cfg->limits.max_sessions_per_agency);
		if (ratelog_allow(sv->refusals, ac->id, now_ms())) {
			log_security("session %llu: refused: %s", (unsigned long long)s->id, text);
		}
		session_end(sv, s, IHALA_ESESSIONS, text);
		return;
	}
	snprintf(s->agency, sizeof(s->agency), "%s", ac->id);
	s->role = ac->role;
	s->authed = 1;
	sv->n_preauth--;
	metrics_session_opened(s->agency);
	s->art = agency_rt_get(sv, s->agency);
	if (s->art != NULL) {
		s->art->dirty = 1;
	}
	log_info("session %llu: agency '%s' (%s) authenticated", (unsigned long long)s->id,
		 s->agency, broker_config_role_name(s->role));
	send_welcome(sv, s);
}

static void
handle_submit(struct server *sv, struct session *s, const Ihala__V1__Submit *sub)
{
	Ihala__V1__Frame f = IHALA__V1__FRAME__INIT;
	Ihala__V1__Receipt rc = IHALA__V1__RECEIPT__INIT;
	Ihala__V1__Envelope *env = NULL;
	struct wreq *r;
	char text[256];
	int err;

	metrics_inc_submissions();
	/* Decode first, so that every refusal names the message it refuses. */
	err = envelope_decode(sub->envelope.data, sub->envelope.len, &env);
	snprintf(text, sizeof(text), "envelope: %s", ihala_strerror(err));
	if (err == 0 && sub->envelope.len + ENTRY_OVERHEAD > sv->cfg->limits.max_frame) {
		/* Logged entries travel in Deliver frames: leave room for the wrapping. */
		err = IHALA_ETOOLARGE;
		snprintf(text, sizeof(text), "envelope of %zu bytes is over the limit of %llu bytes",
			 sub->envelope.len,
			 (unsigned long long)(sv->cfg->limits.max_frame - ENTRY_OVERHEAD));
	} else if (err == 0 && sv->stopping) {
		err = IHALA_ESHUTDOWN;
		snprintf(text, sizeof(text), "%s", ihala_strerror(err));
	} else if (err == 0 && s->inflight_submits >= sv->cfg->limits.max_inflight) {
		err = IHALA_EOVERLOAD;
		snprintf(text, sizeof(text), "more than %llu submissions without receipts",
			 (unsigned long long)sv->cfg->limits.max_inflight);
	}
	if (err != 0) {
		if (ratelog_allow(sv->refusals, s->agency, now_ms())) {
			log_security("agency '%s': submission '%s' refused: %s", s->agency,
				     env != NULL ? env->message_id : "", text);
		}
		metrics_inc_receipt(IHALA__V1__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED, err);
		rc.message_id = env != NULL ? env->message_id : "";
		rc.status = IHALA__V1__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED;
		rc.error_code = -err;
		rc.error_message = text;
		f.kind_case = IHALA__V1__FRAME__KIND_RECEIPT;
		f.receipt = &rc;
		session_send(sv, s, &f);
		envelope_free(env);
		return;
	}
	r = wreq_new(WREQ_SUBMIT);
	if (r == NULL || (r->env_bytes = malloc(sub->envelope.len + 1)) == NULL) {
		wreq_free(r);
		envelope_free(env);
		send_error(sv, s, IHALA_ENOMEM, 0, NULL);
		return;
	}
	memcpy(r->env_bytes, sub->envelope.data, sub->envelope.len);
	r->env_len = sub->envelope.len;
	r->env = env;
	r->session_id = s->id;
	snprintf(r->agency, sizeof(r->agency), "%s", s->agency);
	r->now_ms = now_ms();
	s->inflight_submits++;
	zmq_send(sv->wpair, &r, sizeof(r), 0);
}

static void
handle_query(struct server *sv, struct session *s, const Ihala__V1__Query *q)
{
	Ihala__V1__Frame f = IHALA__V1__FRAME__INIT;
	Ihala__V1__ReferralState *st = NULL;
	struct store_rtxn *r;
	const void *data;
	size_t len;
	int err;

	err = store_rbegin(sv->store, &r);
	if (err != 0) {
		send_error(sv, s, err, q->request_id, NULL);
		return;
	}
	err = store_referral_get(r, q->referral_id, &data, &len);
	if (err == 0) {
		st = ihala__v1__referral_state__unpack(NULL, len, data);
		err = st == NULL ? IHALA_ESTORE : 0;
	}
	store_rend(r);
	/* A referral the caller is not party to is refused (and logged as a security event). */
	if (err == 0 && policy_may_read(s->agency, (Ihala__V1__Role)s->role, st) != 0) {
		if (ratelog_allow(sv->refusals, s->agency, now_ms())) {
			log_security("agency '%s' asked for referral '%s' it is not a party to",
				     s->agency, q->referral_id);
		}
		err = IHALA_ENOTFOUND;
	}
	if (err != 0) {
		char text[256];

		/* Unknown and not a party get one answer, so no stranger learns which ids exist
		 * (the same words as the writer's refusals). */
		if (err == IHALA_ENOTFOUND) {
			err = IHALA_ENOREFERRAL;
			snprintf(text, sizeof(text), "no referral '%s' that agency '%s' is a party to",
				 q->referral_id, s->agency);
		} else {
			snprintf(text, sizeof(text), "referral '%s': %s", q->referral_id,
				 ihala_strerror(err));
		}
		send_error(sv, s, err, q->request_id, text);
	} else {
		st->request_id = q->request_id;
		f.kind_case = IHALA__V1__FRAME__KIND_REFERRAL_STATE;
		f.referral_state = st;
		session_send(sv, s, &f);
	}
	if (st != NULL) {
		ihala__v1__referral_state__free_unpacked(st, NULL);
	}
}

static void
replay_pump(struct server *sv, struct session *s)
{
	struct store_rtxn *r = NULL;
	struct store_log_iter *it = NULL;
	Ihala__V1__LogRecord recs[REPLAY_BATCH];
	Ihala__V1__LogRecord *ptrs[REPLAY_BATCH];

	while (s->replaying && !s->dead && s->wire_len == 0) {
		Ihala__V1__Frame f = IHALA__V1__FRAME__INIT;
		Ihala__V1__LogEntries le = IHALA__V1__LOG_ENTRIES__INIT;
		size_t n = 0, bytes = 0;
		uint64_t seq, last = 0;
		const void *data;
		size_t len;
		int err;

		if (store_rbegin(sv->store, &r) != 0) {
			return;
		}
		store_log_last(r, &last);
		if (s->replay_to != 0 && last > s->replay_to) {
			last = s->replay_to;
		}
		if (s->replay_next <= last && store_log_iter_begin(r, s->replay_next, &it) == 0) {
			while (n < REPLAY_BATCH && bytes < sv->cfg->limits.max_frame / 2 &&
			       store_log_iter_next(it, &seq, &data, &len) == 0 && seq <= last) {
				ihala__v1__log_record__init(&recs[n]);
				recs[n].seq = seq;
				recs[n].entry.data = (uint8_t *)data;
				recs[n].entry.len = len;
				ptrs[n] = &recs[n];
				bytes += len + 16;
				n++;
			}
			store_log_iter_end(it);
		}
		le.request_id = s->replay_req;
		le.n_records = n;
		le.records = ptrs;
		le.done = !s->replay_follow && (n == 0 || recs[n - 1].seq >= last);
		if (n == 0 && !le.done) {
			store_rend(r);
			return; /* following: wait for new commits */
		}
		f.kind_case = IHALA__V1__FRAME__KIND_LOG_ENTRIES;
		f.log_entries = &le;
		err = session_send(sv, s, &f);
		store_rend(r);
		if (err == IHALA_EAGAIN) {
			return;
		}
		if (err != 0) {
			s->replaying = 0;
			return;
		}
		if (n > 0) {
			s->replay_next = recs[n - 1].seq + 1;
		}
		if (le.done) {
			s->replaying = 0;
		}
	}
}

static void
handle_replay(struct server *sv, struct session *s, const Ihala__V1__ReplayRequest *q)
{
	if (s->role != AGENCY_ROLE_AUDITOR) {
		log_security("agency '%s' asked to replay the log; only auditors may", s->agency);
		send_error(sv, s, IHALA_EFORBIDDEN, q->request_id, "only auditors may replay the log");
		return;
	}
	if (s->replaying && s->replay_follow) {
		sv->replay_followers--;
	}
	s->replaying = 1;
	s->replay_req = q->request_id;
	s->replay_next = q->from_seq == 0 ? 1 : q->from_seq;
	s->replay_to = q->to_seq;
	s->replay_follow = q->follow;
	if (s->replay_follow) {
		sv->replay_followers++;
	}
	replay_pump(sv, s);
}

static int
send_checkpoint(struct server *sv, struct session *s, uint64_t request_id)
{
	Ihala__V1__Frame f = IHALA__V1__FRAME__INIT;
	Ihala__V1__CheckpointNote cn = IHALA__V1__CHECKPOINT_NOTE__INIT;
	char *text = latest_checkpoint(sv, NULL);

	if (text == NULL) {
		send_error(sv, s, IHALA_ENOTFOUND, request_id, "no checkpoint has been signed yet");
		return 0;
	}
	cn.request_id = request_id;
	cn.text = text;
	f.kind_case = IHALA__V1__FRAME__KIND_CHECKPOINT;
	f.checkpoint = &cn;
	session_send(sv, s, &f);
	free(text);
	return 0;
}

static void
handle_proof(struct server *sv, struct session *s, const Ihala__V1__ProofRequest *q)
{
	uint8_t path[MERKLE_MAX_PATH][MERKLE_HASH_LEN];
	uint8_t *pp[MERKLE_MAX_PATH];
	uint8_t leaf[MERKLE_HASH_LEN];
	ProtobufCBinaryData bd[MERKLE_MAX_PATH];
	struct store_rtxn *r = NULL;
	char *text = NULL;
	char msg[256];
	uint64_t size = 0, seq = 0;
	size_t pathlen, i;
	int err;

	(void)pp;
	err = store_rbegin(sv->store, &r);
	if (err != 0) {
		send_error(sv, s, err, q->request_id, NULL);
		return;
	}
	if (q->tree_size != 0) {
		size = q->tree_size;
		err = store_checkpoint_get(r, size, &text);
	} else {
		err = store_checkpoint_latest(r, &size, &text);
	}
	if (err != 0) {
		snprintf(msg, sizeof(msg), "no signed checkpoint%s yet; retry in a few seconds",
			 q->tree_size != 0 ? " of that tree size" : "");
		err = IHALA_ENOTFOUND;
		goto fail;
	}
	if (q->target_case == IHALA__V1__PROOF_REQUEST__TARGET_MESSAGE_ID) {
		err = store_msgid_get(r, s->agency, q->message_id, &seq);
		if (err != 0) {
			snprintf(msg, sizeof(msg), "no submission of '%s' has message id '%s'",
				 s->agency, q->message_id);
			goto fail;
		}
	} else if (q->target_case == IHALA__V1__PROOF_REQUEST__TARGET_SEQ) {
		seq = q->seq;
	}
	if (seq != 0) {
		Ihala__V1__Frame f = IHALA__V1__FRAME__INIT;
		Ihala__V1__InclusionProof ip = IHALA__V1__INCLUSION_PROOF__INIT;

		if (seq > size) {
			snprintf(msg, sizeof(msg),
				 "seq %llu is not covered by the checkpoint of size %llu yet; retry "
				 "in a few seconds",
				 (unsigned long long)seq, (unsigned long long)size);
			err = IHALA_ENOTFOUND;
			goto fail;
		}
		err = store_tree_get(r, 0, seq - 1, leaf);
		if (err == 0) {
			err = merkle_inclusion_proof(&writer_tree_rops, r, seq - 1, size, path,
						     &pathlen);
		}
		if (err != 0) {
			snprintf(msg, sizeof(msg), "cannot build the proof: %s", ihala_strerror(err));
			goto fail;
		}
		for (i = 0; i < pathlen; i++) {
			bd[i].data = path[i];
			bd[i].len = MERKLE_HASH_LEN;
		}
		ip.request_id = q->request_id;
		ip.seq = seq;
		ip.leaf_index = seq - 1;
		ip.tree_size = size;
		ip.leaf_hash.data = leaf;
		ip.leaf_hash.len = MERKLE_HASH_LEN;
		ip.n_path = pathlen;
		ip.path = bd;
		ip.checkpoint = text;
		f.kind_case = IHALA__V1__FRAME__KIND_INCLUSION_PROOF;
		f.inclusion_proof = &ip;
		session_send(sv, s, &f);
	}
	if (q->consistency_from != 0) {
		Ihala__V1__Frame f = IHALA__V1__FRAME__INIT;
		Ihala__V1__ConsistencyProof cp = IHALA__V1__CONSISTENCY_PROOF__INIT;

		err = merkle_consistency_proof(&writer_tree_rops, r, q->consistency_from, size, path,
					       &pathlen);
		if (err != 0) {
			snprintf(msg, sizeof(msg), "no consistency proof from size %llu to %llu",
				 (unsigned long long)q->consistency_from, (unsigned long long)size);
			goto fail;
		}
		for (i = 0; i < pathlen; i++) {
			bd[i].data = path[i];
			bd[i].len = MERKLE_HASH_LEN;
		}
		cp.request_id = q->request_id;
		cp.size1 = q->consistency_from;
		cp.size2 = size;
		cp.n_path = pathlen;
		cp.path = bd;
		cp.checkpoint = text;
		f.kind_case = IHALA__V1__FRAME__KIND_CONSISTENCY_PROOF;
		f.consistency_proof = &cp;
		session_send(sv, s, &f);
	}
	if (seq == 0 && q->consistency_from == 0) {
		snprintf(msg, sizeof(msg), "a proof request needs a seq, a message id or consistency_from");
		err = IHALA_ESCHEMA;
		goto fail;
	}
	store_rend(r);
	free(text);
	return;
fail:
	store_rend(r);
	free(text);
	send_error(sv, s, err, q->request_id, msg);
}

static void
session_frame(struct server *sv, struct session *s, const uint8_t *body, size_t len)
{
	Ihala__V1__Frame *f = NULL;
	int err;

	err = frame_decode(body, len, sv->cfg->limits.max_frame, &f);
	if (err != 0) {
		char text[128];

		snprintf(text, sizeof(text), "frame of %zu bytes: %s", len, ihala_strerror(err));
		log_security("session %llu (%s): %s; closing", (unsigned long long)s->id, s->agency,
			     text);
		session_end(sv, s, err, text);
		return;
	}
	switch (f->kind_case) {
	case IHALA__V1__FRAME__KIND_SUBMIT:
		handle_submit(sv, s, f->submit);
		break;
	case IHALA__V1__FRAME__KIND_DELIVERY_ACK:
		handle_ack(sv, s, f->delivery_ack->seq);
		break;
	case IHALA__V1__FRAME__KIND_QUERY:
		handle_query(sv, s, f->query);
		break;
	case IHALA__V1__FRAME__KIND_REPLAY_REQUEST:
		handle_replay(sv, s, f->replay_request);
		break;
	case IHALA__V1__FRAME__KIND_PROOF_REQUEST:
		handle_proof(sv, s, f->proof_request);
		break;
	case IHALA__V1__FRAME__KIND_CHECKPOINT_REQUEST:
		send_checkpoint(sv, s, f->checkpoint_request->request_id);
		break;
	default:
		log_security("session %llu (%s): a client may not send frame type %d; closing",
			     (unsigned long long)s->id, s->agency, (int)f->kind_case);
		session_end(sv, s, IHALA_EPROTOCOL, "a client may not send this frame type");
		break;
	}
	frame_free(f);
}

/* TLS bytes arrived for a session. */
static void
session_input(struct server *sv, struct session *s, const uint8_t *tls, size_t len)
{
	const uint8_t *body;
	size_t blen;
	int err, rc;

	s->last_ms = now_ms();
	err = channel_feed(s->ch, tls, len);
	session_flush(sv, s);
	if (err == IHALA_EHANDSHAKE || (err != 0 && !s->authed)) {
		log_security("session %llu: TLS handshake refused: %s", (unsigned long long)s->id,
			     channel_error_text(s->ch));
		s->dead = 1;
		return;
	}
	if (!s->authed && channel_state(s->ch) == CHANNEL_OPEN) {
		session_authenticate(sv, s);
	}
	while (s->authed && !s->dead && (rc = channel_next_frame(s->ch, &body, &blen)) == 1) {
		session_frame(sv, s, body, blen);
	}
	if (err == IHALA_EFRAMESIZE && !s->dead) {
		log_security("session %llu (%s): frame larger than %llu bytes; closing",
			     (unsigned long long)s->id, s->agency,
			     (unsigned long long)sv->cfg->limits.max_frame);
		session_end(sv, s, IHALA_EFRAMESIZE, NULL);
	} else if (err != 0 && !s->dead) {
		log_warnx("session %llu (%s): %s", (unsigned long long)s->id, s->agency,
			  channel_error_text(s->ch));
		s->dead = 1;
	} else if (channel_state(s->ch) == CHANNEL_CLOSED && !s->dead) {
		log_debug("session %llu (%s): closed by peer", (unsigned long long)s->id, s->agency);
		s->dead = 1;
	}
}

/*
 * Is the peer still there? A killed client vanishes without a word: ZeroMQ drops its
 * connection but tells us nothing, and a quiet session is never sent anything that could
 * fail. Its slot would stay taken (max_sessions) and, for a deliverer with its credit window
 * full, its deliveries would wait for it for ever instead of going to the agency's next
 * session. A PROBE to a routing id that is gone fails (ROUTER_MANDATORY).
 */
static void
session_probe(struct server *sv, struct session *s, uint64_t t)
{
	s->probe_ms = t;
	if (wire_send(sv, s, CHANNEL_MSG_PROBE, NULL, 0) == IHALA_ECLOSED) {
		log_debug("session %llu (%s): peer gone", (unsigned long long)s->id,
			  s->authed ? s->agency : "unauthenticated");
		s->dead = 1;
	}
}

/*
 * At max_sessions: probe every authenticated session now (at most once a second) rather than
 * wait for timers() to reach the quiet ones, so that a flood of clients that connect and
 * vanish cannot lock the others out.
 */
static void
sessions_sweep(struct server *sv)
{
	uint64_t t = now_ms();
	struct session *s;

	if (t - sv->last_sweep_ms < 1000) {
		return;
	}
	sv->last_sweep_ms = t;
	for (s = sv->sessions; s != NULL; s = s->next) {
		if (s->authed && !s->dead) {
			session_probe(sv, s, t);
		}
	}
	sessions_reap(sv);
}

/*
 * The oldest half-open handshake, of peer address `addr` (NULL: of any); with *n_addr the
 * number of half-open handshakes from `addr`.
 */
static struct session *
preauth_oldest(struct server *sv, const char *addr, size_t *n_addr)
{
	struct session *s, *old = NULL;

	*n_addr = 0;
	for (s = sv->sessions; s != NULL; s = s->next) {
		if (s->authed || s->dead || (addr != NULL && strcmp(s->addr, addr) != 0)) {
			continue;
		}
		(*n_addr)++;
		if (old == NULL || s->created_ms < old->created_ms) {
			old = s;
		}
	}
	return old;
}

/*
 * Room for a new handshake from `addr`: past the pre-authentication limits the oldest
 * half-open handshake (of that address, when it is the address that is over its share) makes
 * way, rather than the newcomer being turned away: a flood of stalled ClientHellos then only
 * ever evicts itself, while a handshake that completes in milliseconds is never the oldest.
 */
static void
preauth_make_room(struct server *sv, const char *addr)
{
	struct session *victim;
	size_t n_addr;

	victim = preauth_oldest(sv, addr, &n_addr);
	if (n_addr < sv->cfg->limits.max_preauth_per_address) {
		victim = NULL;
		if (sv->n_preauth >= sv->cfg->limits.max_preauth_sessions ||
		    sv->n_sessions >= sv->cfg->limits.max_sessions) {
			victim = preauth_oldest(sv, NULL, &n_addr);
		}
	}
	if (victim == NULL) {
		return;
	}
	log_debug("session %llu from %s: half-open handshake evicted by a newer one",
		  (unsigned long long)victim->id, victim->addr);
	sv->n_evicted++;
	victim->dead = 1;
	conns_close(sv->conns, victim->fd, victim->conn_gen);
	sessions_reap(sv);
}

static void
router_input(struct server *sv)
{
	uint8_t rid[256];
	zmq_msg_t m;
	int ridlen, more;
	size_t mlen;
	const uint8_t *p;
	const char *peer;
	struct session *s;

	ridlen = zmq_recv(sv->router, rid, sizeof(rid), ZMQ_DONTWAIT);
	if (ridlen < 0) {
		return;
	}
	zmq_msg_init(&m);
	if (zmq_msg_recv(&m, sv->router, ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(&m);
		return;
	}
	more = zmq_msg_more(&m);
	while (more) { /* clients send exactly one part: drop any extra */
		zmq_msg_t x;

		zmq_msg_init(&x);
		zmq_msg_recv(&x, sv->router, 0);
		more = zmq_msg_more(&x);
		zmq_msg_close(&x);
	}
	p = zmq_msg_data(&m);
	mlen = zmq_msg_size(&m);
	if (ridlen > (int)sizeof(rid) || mlen < 1 || p[0] != CHANNEL_MSG_TLS) {
		zmq_msg_close(&m);
		return;
	}
	s = session_by_rid(sv, rid, (size_t)ridlen);
	if (s == NULL) {
		struct session tmp;

		memset(&tmp, 0, sizeof(tmp));
		memcpy(tmp.rid, rid, (size_t)ridlen);
		tmp.rid_len = (size_t)ridlen;
		if (!channel_is_client_hello(p + 1, mlen - 1)) {
			/* Stale bytes of a session this broker does not know (a silent ZeroMQ
			 * reconnect, or a broker restart): tell the client to start again. */
			wire_send(sv, &tmp, CHANNEL_MSG_RESET, NULL, 0);
			zmq_msg_close(&m);
			return;
		}
		if (!sv->stopping && sv->n_sessions >= sv->cfg->limits.max_sessions) {
			sessions_sweep(sv);
		}
		peer = zmq_msg_gets(&m, "Peer-Address");
		if (!sv->stopping) {
			preauth_make_room(sv, peer != NULL ? peer : "");
		}
		if (sv->stopping || sv->n_preauth >= sv->cfg->limits.max_preauth_sessions ||
		    sv->n_sessions >= sv->cfg->limits.max_sessions) {
			log_security("handshake refused: %zu sessions, %zu unauthenticated (limits "
				     "%llu, %llu)",
				     sv->n_sessions, sv->n_preauth,
				     (unsigned long long)sv->cfg->limits.max_sessions,
				     (unsigned long long)sv->cfg->limits.max_preauth_sessions);
			zmq_msg_close(&m);
			return;
		}
		s = calloc(1, sizeof(*s));
		if (s == NULL || inq_new(&s->inq) != 0 ||
		    channel_new(sv->ssl, 1, NULL, sv->cfg->limits.max_frame,
				sv->cfg->limits.out_cap, &s->ch) != 0) {
			if (s != NULL) {
				inq_free(s->inq);
			}
			free(s);
			zmq_msg_close(&m);
			return;
		}
		memcpy(s->rid, rid, (size_t)ridlen);
		s->rid_len = (size_t)ridlen;
		s->id = ++sv->next_session_id;
		s->created_ms = s->last_ms = now_ms();
		snprintf(s->addr, sizeof(s->addr), "%s", peer != NULL ? peer : "");
		s->fd = zmq_msg_get(&m, ZMQ_SRCFD);
		s->conn_gen = conns_session(sv->conns, s->fd, s->created_ms);
		s->next = sv->sessions;
		sv->sessions = s;
		sv->n_sessions++;
		sv->n_preauth++;
	}
	if (!s->dead) {
		int err = inq_push(s->inq, &m, sv->cfg->limits.in_cap);

		if (err != 0) {
			log_security("session %llu (%s): more than %llu bytes of input waiting; "
				     "closing",
				     (unsigned long long)s->id, s->authed ? s->agency : "unauthenticated",
				     (unsigned long long)sv->cfg->limits.in_cap);
			inq_clear(s->inq);
			session_end(sv, s, IHALA_EOVERLOAD, "input arrives faster than it is served");
		}
	}
	zmq_msg_close(&m);
}

/* Each session's queued input, a bounded share per turn so that none starves the others. */
static int
sessions_input(struct server *sv)
{
	struct session *s;
	const uint8_t *p;
	size_t len, done;
	int more = 0;

	for (s = sv->sessions; s != NULL; s = s->next) {
		done = 0;
		while (!s->dead && done < INPUT_TURN_BYTES && inq_peek(s->inq, &p, &len)) {
			session_input(sv, s, p + 1, len - 1);
			inq_pop(s->inq);
			done += len;
		}
		if (s->dead) {
			inq_clear(s->inq);
		}
		more |= inq_bytes(s->inq) > 0;
	}
	return more;
}

/* ---- answers from the writer ---- */

static void
writer_input(struct server *sv)
{
	struct wreq *r;
	struct session *s;
	struct agency_rt *a;
	int i;

	while (zmq_recv(sv->wpair, &r, sizeof(r), ZMQ_DONTWAIT) == sizeof(r)) {
		for (i = 0; i < r->n_notify; i++) {
			a = agency_rt_get(sv, r->notify[i]);
			if (a != NULL) {
				a->dirty = 1;
			}
		}
		for (a = r->notify_all ? sv->agencies : NULL; a != NULL; a = a->next) {
			a->dirty = 1;
		}
		switch (r->type) {
		case WREQ_SUBMIT:
			metrics_inc_receipt((int)r->status, r->err);
			s = session_by_id(sv, r->session_id);
			if (s != NULL) {
				Ihala__V1__Frame f = IHALA__V1__FRAME__INIT;
				Ihala__V1__Receipt rc = IHALA__V1__RECEIPT__INIT;

				s->inflight_submits--;
				rc.message_id = r->env->message_id;
				rc.seq = r->seq;
				rc.status = r->status;
				if (r->err == 0) {
					rc.leaf_hash.data = r->leaf;
					rc.leaf_hash.len = MERKLE_HASH_LEN;
				} else {
					rc.error_code = -r->err;
					rc.error_message = r->text;
					if (ratelog_allow(sv->refusals, r->agency, now_ms())) {
						log_security("agency '%s': message '%s' refused: %s (%s)",
							     r->agency, r->env->message_id, r->text,
							     ihala_errname(r->err));
					}
				}
				if (r->status == IHALA__V1__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED) {
					log_debug("agency '%s': message '%s' logged at seq %llu",
						  r->agency, r->env->message_id,
						  (unsigned long long)r->seq);
				} else if (r->status ==
					   IHALA__V1__RECEIPT_STATUS__RECEIPT_STATUS_DUPLICATE) {
					log_debug("agency '%s': message '%s' again: a duplicate of "
						  "seq %llu",
						  r->agency, r->env->message_id,
						  (unsigned long long)r->seq);
				}
				f.kind_case = IHALA__V1__FRAME__KIND_RECEIPT;
				f.receipt = &rc;
				if (!s->dead) {
					session_send(sv, s, &f);
				}
			}
			break;
		case WREQ_ACK:
			a = agency_rt_get(sv, r->agency);
			if (a != NULL) {
				a->acks_pending -= r->n_acks < a->acks_pending ? r->n_acks
									: a->acks_pending;
				a->dirty = 1;
			}
			break;
		case WREQ_TICK:
			sv->tick_outstanding = 0;
			break;
		case WREQ_POLICY:
			if (r->policy != NULL) {
				struct writer_policy *old = r->policy;

				old->release(old);
			}
			break;
		case WREQ_STOP:
			sv->writer_stopped = 1;
			break;
		default:
			break;
		}
		if ((r->n_notify > 0 || r->notify_all) && sv->replay_followers > 0) {
			for (s = sv->sessions; s != NULL; s = s->next) {
				if (s->replaying && s->replay_follow) {
					replay_pump(sv, s);
				}
			}
		}
		wreq_free(r);
	}
}

/* ---- timers, signals, reload ---- */

static void
timers(struct server *sv)
{
	uint64_t t = now_ms();
	struct session *s;

	for (s = sv->sessions; s != NULL; s = s->next) {
		if (s->dead) {
			continue;
		}
		if (!s->authed && t - s->created_ms > sv->cfg->limits.handshake_timeout_ms) {
			log_security("session %llu: no complete handshake within %llu ms; dropped",
				     (unsigned long long)s->id,
				     (unsigned long long)sv->cfg->limits.handshake_timeout_ms);
			s->dead = 1;
			conns_release(sv->conns, s->fd, s->conn_gen, t);
		} else if (s->authed && sv->cfg->limits.idle_timeout_ms != 0 &&
			   t - s->last_ms > sv->cfg->limits.idle_timeout_ms) {
			log_info("session %llu (%s): idle; closed", (unsigned long long)s->id,
				 s->agency);
			session_end(sv, s, 0, NULL);
		} else if (s->wire_len == 0 && t - s->last_ms > PROBE_MS &&
			   t - s->probe_ms > PROBE_MS) {
			session_probe(sv, s, t);
		}
	}
	sv->n_reaped += conns_reap(sv->conns, t, sv->cfg->limits.handshake_timeout_ms);
	ratelog_flush(sv->refusals, t);
	if ((sv->n_evicted > 0 || sv->n_reaped > 0) && t - sv->evict_log_ms >= TICK_MS) {
		/* One line a second for what a flood does, however large. */
		log_security("last %llu ms: %zu half-open handshakes evicted by newer ones (limits "
			     "%llu, %llu per address), %zu connections closed for sending no "
			     "ClientHello within %llu ms",
			     (unsigned long long)(t - sv->evict_log_ms), sv->n_evicted,
			     (unsigned long long)sv->cfg->limits.max_preauth_sessions,
			     (unsigned long long)sv->cfg->limits.max_preauth_per_address,
			     sv->n_reaped,
			     (unsigned long long)sv->cfg->limits.handshake_timeout_ms);
		sv->n_evicted = sv->n_reaped = 0;
		sv->evict_log_ms = t;
	} else if (sv->n_evicted == 0 && sv->n_reaped == 0) {
		sv->evict_log_ms = t;
	}
	if (!sv->tick_outstanding && !sv->stopping && t - sv->last_tick_ms >= TICK_MS) {
		struct wreq *r = wreq_new(WREQ_TICK);

		if (r != NULL) {
			r->now_ms = t;
			sv->tick_outstanding = 1;
			sv->last_tick_ms = t;
			zmq_send(sv->wpair, &r, sizeof(r), 0);
		}
	}
}

static int
make_ssl(const struct broker_config *cfg, SSL_CTX **out)
{
	struct tls_files tf;
	char err[512];
	int rc;

	tf.ca_file = cfg->tls.ca_file;
	tf.crl_file = cfg->tls.crl_file;
	tf.cert_file = cfg->tls.cert_file;
	tf.key_file = cfg->tls.key_file;
	rc = tlsctx_server_new(&tf, out, err, sizeof(err));
	if (rc != 0) {
		log_warnx("%s", err);
	}
	return rc;
}

/* A refused reload's FILE:LINE: errors, through the log: stderr under -d, syslog otherwise
 * (a daemon's stderr is /dev/null). */
static void
log_conf_errors(const struct conf_errors *errs)
{
	size_t i;

	for (i = 0; i < errs->n; i++) {
		log_warnx("%s:%d: %s", errs->v[i].file, errs->v[i].line, errs->v[i].msg);
	}
	if (errs->dropped > 0) {
		log_warnx("%s:0: %zu more errors not shown", errs->n > 0 ? errs->v[0].file : "config",
			  errs->dropped);
	}
}

/* Options a reload cannot apply: say so instead of pretending. */
static void
log_restart_only(const struct broker_config *old, const struct broker_config *cfg)
{
	static const char *names[] = { "listen",	 "data_dir",	       "user",
				       "metrics_listen", "log_origin", "checkpoint key_file" };
	const char *was[] = { old->broker.listen,	  old->broker.data_dir,
			      old->broker.user,		  old->broker.metrics_listen,
			      old->broker.log_origin,	  old->checkpoint.key_file };
	const char *now[] = { cfg->broker.listen,	  cfg->broker.data_dir,
			      cfg->broker.user,		  cfg->broker.metrics_listen,
			      cfg->broker.log_origin,	  cfg->checkpoint.key_file };
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if ((was[i] == NULL) != (now[i] == NULL) ||
		    (was[i] != NULL && strcmp(was[i], now[i]) != 0)) {
			log_warnx("reload: '%s' changed; the new value takes effect at the next "
				  "start",
				  names[i]);
		}
	}
}

static void
reload(struct server *sv)
{
	struct broker_config *cfg = NULL;
	struct conf_errors errs;
	struct writer_policy *pol;
	struct session *s;
	struct wreq *r;
	SSL_CTX *ssl = NULL;

	log_info("SIGHUP: reloading %s", sv->cfg->path);
	conf_errors_init(&errs);
	if (broker_config_load(sv->cfg->path, &cfg, &errs) != 0) {
		log_conf_errors(&errs);
		conf_errors_release(&errs);
		log_warnx("reload refused: the configuration in force is unchanged");
		return;
	}
	conf_errors_release(&errs);
	if (make_ssl(cfg, &ssl) != 0 || (pol = table_new(cfg)) == NULL ||
	    (r = wreq_new(WREQ_POLICY)) == NULL) {
		log_warnx("reload refused: the configuration in force is unchanged");
		SSL_CTX_free(ssl);
		broker_config_free(cfg);
		return;
	}
	r->policy = pol;
	zmq_send(sv->wpair, &r, sizeof(r), 0);
	sv->policy = pol; /* the writer's from now on; the old one comes back to be freed */
	SSL_CTX_free(sv->ssl);
	sv->ssl = ssl;
	log_restart_only(sv->cfg, cfg);
	broker_config_free(sv->cfg);
	sv->cfg = cfg;
	metrics_set_agencies(cfg);
	log_setlevel((enum log_level)cfg->broker.log_level);

	/* Live sessions are judged again: revoked certificates and removed agencies go. */
	for (s = sv->sessions; s != NULL; s = s->next) {
		const struct agency_config *ac;
		char why[256];
		int err;

		if (!s->authed || s->dead) {
			continue;
		}
		err = tlsctx_verify_cert(ssl, channel_peer_cert(s->ch),
					 SSL_get_peer_cert_chain(channel_ssl(s->ch)), why,
					 sizeof(why));
		if (err != 0) {
			log_security("reload: closing session %llu of '%s': certificate now fails: %s",
				     (unsigned long long)s->id, s->agency, why);
			session_end(sv, s, err == IHALA_EREVOKED ? IHALA_EREVOKED : IHALA_ECERT, why);
			continue;
		}
		ac = broker_config_find_agency(cfg, s->agency);
		if (ac == NULL || (ac->fingerprint != NULL &&
				   CRYPTO_memcmp(ac->fingerprint_bin, s->fp, TLS_FP_LEN) != 0)) {
			log_security("reload: closing session %llu of '%s': agency no longer "
				     "configured for this certificate",
				     (unsigned long long)s->id, s->agency);
			session_end(sv, s, IHALA_EUNKNOWNAGENCY, NULL);
			continue;
		}
		s->role = ac->role;
	}
	log_info("reload done: %zu agencies", cfg->nagencies);
}

static void
signals_input(struct server *sv)
{
	struct signalfd_siginfo si;

	while (read(sv->sigfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			reload(sv);
		} else if (!sv->stopping) {
			struct wreq *r = wreq_new(WREQ_STOP);
			struct session *s;

			log_info("signal %u: stopping (finishing the commit in flight)",
				 si.ssi_signo);
			for (s = sv->sessions; s != NULL; s = s->next) {
				acks_send(sv, s); /* acks already taken are logged before the stop */
			}
			sv->stopping = 1;
			sv->stop_ms = now_ms();
			/* No zmq_unbind() here: it also drops every connection accepted on the
			 * endpoint, and with them the receipts of the commit in flight and the
			 * sessions' last words. New handshakes are refused while stopping. */
			if (r != NULL) {
				zmq_send(sv->wpair, &r, sizeof(r), 0);
			}
		}
	}
}

/* ---- start-up and loop ---- */

static int
open_sockets(struct server *sv)
{
	int one = 1, zero = 0, ka_idle = 15, ka_intvl = 5, ka_cnt = 3;
	int64_t maxmsg = (int64_t)sv->cfg->limits.max_frame + 64 * 1024;
	int hs = (int)sv->cfg->limits.handshake_timeout_ms;

	sv->router = zmq_socket(sv->zctx, ZMQ_ROUTER);
	sv->wpair = zmq_socket(sv->zctx, ZMQ_PAIR);
	if (sv->router == NULL || sv->wpair == NULL) {
		return IHALA_EZMQ;
	}
	zmq_setsockopt(sv->router, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
	/*
	 * libzmq 4.3.4 aborts the process (Assertion failed: !_io_error,
	 * stream_engine_base.cpp:331) when a connection's engine has stopped reading and its
	 * peer is gone: the engine stops reading when its pipe to the socket refuses a message
	 * (the receive high-water mark is reached, or the pipe was taken away); it marks the I/O
	 * error when the connection then resets (the peer closed with our answers unread, or a
	 * heartbeat we send draws a reset); and the heartbeat timer's next PING goes through
	 * out_event(), which asserts that no error was marked. So:
	 *
	 * - no receive high-water mark: a connection's pipe never refuses a message. serve()
	 *   takes every message off the socket each turn into the sessions' own queues (struct
	 *   inq), bounded by in_cap per session, and processes a bounded share per turn;
	 * - handover: a connection naming a routing id already in use takes it over. Without it
	 *   the second connection's pipe is never read, and would grow without bound;
	 * - no heartbeats of our own (ZMQ_HEARTBEAT_IVL): the connection that lost its routing
	 *   id to another keeps an engine whose pipe is gone, and nothing else can send on it.
	 *   Peers' heartbeats are still answered, and their TTL (6 s for our clients) still ends
	 *   a connection gone quiet; TCP keepalive ends the ones of peers without heartbeats, and
	 *   a session whose connection went is found by session_probe().
	 */
	zmq_setsockopt(sv->router, ZMQ_RCVHWM, &zero, sizeof(zero));
	zmq_setsockopt(sv->router, ZMQ_ROUTER_HANDOVER, &one, sizeof(one));
	zmq_setsockopt(sv->router, ZMQ_TCP_KEEPALIVE, &one, sizeof(one));
	zmq_setsockopt(sv->router, ZMQ_TCP_KEEPALIVE_IDLE, &ka_idle, sizeof(ka_idle));
	zmq_setsockopt(sv->router, ZMQ_TCP_KEEPALIVE_INTVL, &ka_intvl, sizeof(ka_intvl));
	zmq_setsockopt(sv->router, ZMQ_TCP_KEEPALIVE_CNT, &ka_cnt, sizeof(ka_cnt));
	zmq_setsockopt(sv->router, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(sv->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
	zmq_setsockopt(sv->router, ZMQ_HANDSHAKE_IVL, &hs, sizeof(hs));
	zmq_setsockopt(sv->wpair, ZMQ_LINGER, &zero, sizeof(zero));
	/* No high-water mark to the writer: both sides send blocking, so a full pipe each way
	 * would deadlock them. What is in flight is bounded by sessions * max_inflight. */
	zmq_setsockopt(sv->wpair, ZMQ_SNDHWM, &zero, sizeof(zero));
	zmq_setsockopt(sv->wpair, ZMQ_RCVHWM, &zero, sizeof(zero));
	if (zmq_bind(sv->wpair, WRITER_ENDPOINT) != 0 || conns_new(sv->zctx, sv->router, &sv->conns) != 0 ||
	    ratelog_new(REFUSAL_LOG_MS, &sv->refusals) != 0) {
		return IHALA_EZMQ;
	}
	if (zmq_bind(sv->router, sv->cfg->broker.listen) != 0) {
		log_warnx("cannot listen on %s: %s", sv->cfg->broker.listen,
			  zmq_strerror(zmq_errno()));
		return IHALA_EZMQ;
	}
	return 0;
}

static void
serve(struct server *sv)
{
	zmq_pollitem_t items[3];
	struct agency_rt *a;
	struct session *s;
	int input_left = 0;

	for (;;) {
		long timeout = input_left ? 0 : 100;

		items[0].socket = sv->router;
		items[0].events = ZMQ_POLLIN;
		items[1].socket = sv->wpair;
		items[1].events = ZMQ_POLLIN;
		items[2].socket = NULL;
		items[2].fd = sv->sigfd;
		items[2].events = ZMQ_POLLIN;
		for (s = sv->sessions; s != NULL; s = s->next) {
			if (s->wire_len > 0 && timeout > 2) {
				timeout = 2; /* a slow peer: retry its bytes soon */
			}
		}
		if (zmq_poll(items, 3, timeout) < 0 && zmq_errno() != EINTR) {
			log_warnx("zmq_poll: %s", zmq_strerror(zmq_errno()));
		}
		if (items[2].revents & ZMQ_POLLIN) {
			signals_input(sv);
		}
		if (items[1].revents & ZMQ_POLLIN) {
			writer_input(sv);
		}
		if (items[0].revents & ZMQ_POLLIN) {
			int n;

			/* Everything ZeroMQ holds, into the sessions' queues: its receive queue
			 * must never fill (see open_sockets()). */
			for (n = 0; n < DRAIN_MAX; n++) {
				int ev = 0;
				size_t evlen = sizeof(ev);

				if (zmq_getsockopt(sv->router, ZMQ_EVENTS, &ev, &evlen) != 0 ||
				    !(ev & ZMQ_POLLIN)) {
					break;
				}
				router_input(sv);
			}
		}
		input_left = sessions_input(sv);
		for (s = sv->sessions; s != NULL; s = s->next) {
			acks_send(sv, s);
		}
		for (s = sv->sessions; s != NULL; s = s->next) {
			if (s->replaying && s->wire_len == 0 && !s->dead) {
				replay_pump(sv, s);
			}
		}
		for (a = sv->agencies; a != NULL; a = a->next) {
			if (a->dirty) {
				agency_pump(sv, a);
			}
		}
		/* What this turn wrote (receipts, deliveries, replies) leaves now, together; bytes
		 * ZeroMQ refused earlier (EAGAIN) are retried first. */
		for (s = sv->sessions; s != NULL; s = s->next) {
			if (s->wire_len > 0 || channel_pending_out(s->ch) > 0) {
				session_flush(sv, s);
			}
		}
		timers(sv);
		sessions_reap(sv);
		if (sv->stopping && sv->writer_stopped) {
			int pending = 0;

			for (s = sv->sessions; s != NULL; s = s->next) {
				pending |= s->wire_len > 0 || channel_pending_out(s->ch) > 0;
			}
			if (!pending || now_ms() - sv->stop_ms > SHUTDOWN_FLUSH_MS) {
				/* Every receipt is out: end the sessions (PROTOCOL.md §3), and give
				 * ZeroMQ a bounded time to deliver that at close. */
				int linger = SHUTDOWN_FLUSH_MS;

				for (s = sv->sessions; s != NULL; s = s->next) {
					session_end(sv, s, s->authed ? IHALA_ESHUTDOWN : 0, NULL);
				}
				zmq_setsockopt(sv->router, ZMQ_LINGER, &linger, sizeof(linger));
				return;
			}
		}
	}
}

int
server_run(struct broker_config *cfg)
{
	struct server sv;
	struct writer_params wp;
	sigset_t mask;
	int err, flags = 0;

	memset(&sv, 0, sizeof(sv));
	sv.cfg = cfg;
	sv.sigfd = -1;
	log_setlevel((enum log_level)cfg->broker.log_level);

	/* Signals arrive on a descriptor the loop polls; blocked before any thread starts. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sv.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sv.sigfd < 0) {
		log_warn("signalfd");
		err = IHALA_EIO;
		goto out;
	}
	err = make_ssl(cfg, &sv.ssl);
	if (err != 0) {
		goto out;
	}
	err = checkpoint_key_load(cfg->checkpoint.key_file, cfg->broker.log_origin, &sv.signer);
	if (err != 0) {
		log_warnx("cannot load checkpoint key '%s': %s", cfg->checkpoint.key_file,
			  ihala_strerror(err));
		goto out;
	}
	if (cfg->broker.auto_grow) {
		flags |= STORE_AUTO_GROW;
	}
	err = store_open(cfg->broker.data_dir, cfg->broker.map_size, (unsigned)flags, &sv.store);
	if (err != 0) {
		log_warnx("cannot open store '%s': %s", cfg->broker.data_dir, ihala_strerror(err));
		goto out;
	}
	store_set_max_mapsize(sv.store, cfg->broker.map_size_max);
	sv.policy = table_new(cfg);
	sv.zctx = zmq_ctx_new();
	if (sv.policy == NULL || sv.zctx == NULL) {
		err = IHALA_ENOMEM;
		goto out;
	}
	err = open_sockets(&sv);
	if (err != 0) {
		goto out;
	}
	metrics_set_agencies(cfg);
	err = metrics_start(cfg->broker.metrics_listen, sv.store);
	if (err != 0) {
		goto out;
	}
	/* Store, keys and sockets are open: root is no longer needed. */
	err = priv_drop(cfg->broker.user);
	if (err != 0) {
		goto out;
	}
	memset(&wp, 0, sizeof(wp));
	wp.store = sv.store;
	wp.zctx = sv.zctx;
	wp.endpoint = WRITER_ENDPOINT;
	wp.policy = sv.policy;
	wp.max_batch = cfg->commit.max_batch;
	wp.signer = sv.signer;
	wp.origin = cfg->broker.log_origin;
	wp.ckpt_every_entries = cfg->checkpoint.every_entries;
	wp.ckpt_every_ms = cfg->checkpoint.every_ms;
	wp.auto_grow = cfg->broker.auto_grow;
	err = writer_start(&wp, &sv.writer);
	if (err != 0) {
		goto out;
	}
	log_info("listening on %s (store %s, %zu agencies)", cfg->broker.listen,
		 cfg->broker.data_dir, cfg->nagencies);
	serve(&sv);
	writer_join(sv.writer);
	sv.writer = NULL;
	log_info("stopped cleanly");
	err = 0;
out:
	while (sv.sessions != NULL) {
		struct session *s = sv.sessions;

		sv.sessions = s->next;
		session_free(&sv, s);
	}
	while (sv.agencies != NULL) {
		struct agency_rt *a = sv.agencies;

		sv.agencies = a->next;
		free(a);
	}
	conns_free(sv.conns);
	ratelog_free(sv.refusals);
	if (sv.router != NULL) {
		zmq_close(sv.router);
	}
	if (sv.wpair != NULL) {
		zmq_close(sv.wpair);
	}
	if (sv.zctx != NULL) {
		zmq_ctx_term(sv.zctx);
	}
	metrics_stop(); /* its thread reads the store */
	store_close(sv.store);
	checkpoint_signer_free(sv.signer);
	SSL_CTX_free(sv.ssl);
	if (sv.sigfd >= 0) {
		close(sv.sigfd);
	}
	if (sv.policy != NULL) {
		sv.policy->release(sv.policy);
	}
	broker_config_free(sv.cfg);
	return err;
}
