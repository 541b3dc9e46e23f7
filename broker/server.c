/* server.c - the broker's event loop: ROUTER, writer and signal input, timers, reload, start-up. */
#include "server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <zmq.h>

#include "agency_table.h"
#include "channel.h"
#include "checkpoint.h"
#include "clock.h"
#include "config.h"
#include "conns.h"
#include "crlwatch.h"
#include "deliver.h"
#include "error.h"
#include "handlers.h"
#include "inq.h"
#include "log.h"
#include "metrics.h"
#include "priv.h"
#include "ratelog.h"
#include "server_int.h"
#include "session.h"
#include "signer.h"
#include "store.h"
#include "tlsctx.h"
#include "writer.h"

#define WRITER_ENDPOINT "inproc://ihala-writer"
#define TICK_MS 1000
#define SHUTDOWN_FLUSH_MS 3000
/* A deliverer silent this long with deliveries unacked is probed (see timers()). */
#define PROBE_MS 1000
/* Refusals of one agency logged in full: one per this interval, the rest counted. */
#define REFUSAL_LOG_MS 10000
/* Messages taken off the ROUTER in one turn at most (the rest wait for the next turn), and
 * bytes of one session's queued input processed in one turn at most. */
#define DRAIN_MAX 65536
#define INPUT_TURN_BYTES (256 * 1024)

/* ---- input from clients ---- */

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
		s->created_ms = s->last_ms = clock_wall_ms();
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
			             (unsigned long long)s->id,
			             s->authed ? s->agency : "unauthenticated",
			             (unsigned long long)sv->cfg->limits.in_cap);
			inq_clear(s->inq);
			session_end(sv, s, IHALA_EOVERLOAD,
			            "input arrives faster than it is served");
		}
	}
	zmq_msg_close(&m);
}

/* Handshake work (sessions not yet authenticated) a turn may do before it serves the
 * agencies' sessions again: a handshake costs the broker a signature and a key exchange, and
 * a burst of them must not stand between an agency and its receipts. */
#define HANDSHAKE_TURN_NS (2u * 1000u * 1000u)

/* One session's queued input, up to INPUT_TURN_BYTES; 1 when some is left for a later turn. */
static int
session_turn(struct server *sv, struct session *s)
{
	const uint8_t *p;
	size_t len, done = 0;

	if (s->backlog && !s->dead) {
		session_pump(sv, s);
	}
	while (!s->dead && !s->backlog && done < INPUT_TURN_BYTES && inq_peek(s->inq, &p, &len)) {
		session_input(sv, s, p + 1, len - 1);
		inq_pop(s->inq);
		done += len;
	}
	if (s->dead) {
		inq_clear(s->inq);
	}
	return (s->backlog && !s->dead) || inq_bytes(s->inq) > 0;
}

/*
 * Each session's queued input, a bounded share per turn so that none starves the others:
 * first the authenticated sessions', then handshakes, oldest first, until HANDSHAKE_TURN_NS
 * is spent (the rest wait for the next turn, which comes at once). Sessions are listed
 * newest first, so without this a flood of new connections was served before every agency.
 */
static int
sessions_input(struct server *sv)
{
	struct session *s;
	size_t n = 0, i;
	uint64_t t0;
	int more = 0;

	for (s = sv->sessions; s != NULL; s = s->next) {
		if (!s->authed && !s->dead && (s->backlog || inq_bytes(s->inq) > 0)) {
			if (n == sv->hs_cap) {
				size_t cap = sv->hs_cap > 0 ? 2 * sv->hs_cap : 64;
				struct session **l = realloc(sv->hs_list, cap * sizeof(*l));

				if (l == NULL) {
					/* no room to defer it: served at once, as before */
					more |= session_turn(sv, s);
					continue;
				}
				sv->hs_list = l;
				sv->hs_cap = cap;
			}
			sv->hs_list[n++] = s;
		} else {
			more |= session_turn(sv, s);
		}
	}
	t0 = clock_mono_ns();
	for (i = n; i > 0; i--) {
		s = sv->hs_list[i - 1];
		if (clock_mono_ns() - t0 >= HANDSHAKE_TURN_NS) {
			more = 1;
			break;
		}
		more |= session_turn(sv, s);
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
				Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
				Ihala__V2__Receipt rc = IHALA__V2__RECEIPT__INIT;
				size_t b = r->env_len + r->sealed_len;

				s->inflight_submits--;
				s->inflight_bytes -= b < s->inflight_bytes ? b : s->inflight_bytes;
				rc.message_id = r->env->message_id;
				rc.seq = r->seq;
				rc.status = r->status;
				if (r->err == 0) {
					rc.leaf_hash.data = r->leaf;
					rc.leaf_hash.len = MERKLE_HASH_LEN;
				} else {
					rc.error_code = -r->err;
					rc.error_message = r->text;
					if (ratelog_allow(sv->refusals, r->agency,
					                  clock_wall_ms())) {
						log_security(
						    "agency '%s': message '%s' refused: %s (%s)",
						    r->agency, r->env->message_id, r->text,
						    ihala_errname(r->err));
					}
				}
				if (r->status ==
				    IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_ACCEPTED) {
					log_debug("agency '%s': message '%s' logged at seq %llu",
					          r->agency, r->env->message_id,
					          (unsigned long long)r->seq);
				} else if (r->status ==
				           IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_DUPLICATE) {
					log_debug("agency '%s': message '%s' again: a duplicate of "
					          "seq %llu",
					          r->agency, r->env->message_id,
					          (unsigned long long)r->seq);
				}
				f.kind_case = IHALA__V2__FRAME__KIND_RECEIPT;
				f.receipt = &rc;
				if (!s->dead) {
					session_send(sv, s, &f);
				}
			}
			break;
		case WREQ_ACK:
			a = agency_rt_get(sv, r->agency);
			if (a != NULL) {
				a->acks_pending -=
				    r->n_acks < a->acks_pending ? r->n_acks : a->acks_pending;
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
	uint64_t t = clock_wall_ms();
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
	crlwatch_tick(t);
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
			sv->last_tick_ms = t;
			if (server_to_writer(sv, r) == 0) {
				sv->tick_outstanding = 1;
			} else {
				wreq_free(r); /* the next tick comes in TICK_MS */
			}
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
		log_warnx("%s:0: %zu more errors not shown",
		          errs->n > 0 ? errs->v[0].file : "config", errs->dropped);
	}
}

/*
 * The TLS context of a reload. After dropping root (keys_kept) the CA file and the CRL are
 * read again, and the certificate and key stay those read at start: the user cannot read the
 * key, and a CRL must not wait for a restart because of it. A new certificate or key is then
 * named as needing a restart.
 */
static int
reload_ssl(struct server *sv, const struct broker_config *cfg, SSL_CTX **out, char *why,
           size_t whylen)
{
	const struct broker_config *old = sv->cfg;
	struct tls_files tf;
	X509 *cert = NULL;
	FILE *fp;
	int rc;

	memset(&tf, 0, sizeof(tf));
	tf.ca_file = cfg->tls.ca_file;
	tf.crl_file = cfg->tls.crl_file;
	if (!sv->keys_kept) {
		tf.cert_file = cfg->tls.cert_file;
		tf.key_file = cfg->tls.key_file;
		return tlsctx_server_new(&tf, out, why, whylen);
	}
	rc = tlsctx_server_renew(&tf, sv->ssl, out, why, whylen);
	if (rc != 0) {
		return rc;
	}
	if ((fp = fopen(cfg->tls.cert_file, "re")) != NULL) {
		cert = PEM_read_X509(fp, NULL, NULL, NULL);
		fclose(fp);
		ERR_clear_error();
	}
	if (strcmp(old->tls.cert_file, cfg->tls.cert_file) != 0 ||
	    strcmp(old->tls.key_file, cfg->tls.key_file) != 0 ||
	    (cert != NULL && X509_cmp(cert, SSL_CTX_get0_certificate(sv->ssl)) != 0)) {
		log_warnx("reload: the broker's TLS certificate or key changed; running as user "
		          "'%s', the broker keeps those read at start (only root reads the key): "
		          "the new ones take effect at the next start",
		          cfg->broker.user != NULL ? cfg->broker.user : "?");
	}
	X509_free(cert);
	return 0;
}

/* A refused reload leaves the configuration in force as it was: a security event, counted. */
static void
reload_refused(const char *why)
{
	log_security("reload refused: the configuration in force is unchanged (%s)", why);
	metrics_inc_reload(1);
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
	char why[512];

	log_info("SIGHUP: reloading %s", sv->cfg->path);
	conf_errors_init(&errs);
	if (broker_config_reload(sv->cfg->path, sv->keys_kept, &cfg, &errs) != 0) {
		log_conf_errors(&errs);
		conf_errors_release(&errs);
		reload_refused("errors in the file, listed above");
		return;
	}
	conf_errors_release(&errs);
	pol = NULL;
	r = NULL;
	if (reload_ssl(sv, cfg, &ssl, why, sizeof(why)) != 0) {
		goto refused;
	}
	snprintf(why, sizeof(why), "out of memory, or the writer unreachable");
	if ((pol = agency_table_new(cfg)) == NULL || (r = wreq_new(WREQ_POLICY)) == NULL) {
		goto refused;
	}
	r->policy = pol;
	if (server_to_writer(sv, r) != 0) {
		goto refused;
	}
	sv->policy = pol; /* the writer's from now on; the old one comes back to be freed */
	SSL_CTX_free(sv->ssl);
	sv->ssl = ssl;
	crlwatch_update(ssl, cfg->tls.crl_file, cfg->tls.crl_warn_before_ms, clock_wall_ms());
	/* Options a reload cannot apply: said instead of pretended. */
	broker_config_warn_restart_only(sv->cfg, cfg);
	broker_config_free(sv->cfg);
	sv->cfg = cfg;
	metrics_set_agencies(cfg);
	log_setlevel((enum log_level)cfg->broker.log_level);

	/* Live sessions are judged again: revoked certificates and removed agencies go. */
	for (s = sv->sessions; s != NULL; s = s->next) {
		const struct agency_config *ac;
		int err;

		if (!s->authed || s->dead) {
			continue;
		}
		err = tlsctx_verify_cert(ssl, channel_peer_cert(s->ch),
		                         SSL_get_peer_cert_chain(channel_ssl(s->ch)), why,
		                         sizeof(why));
		if (err != 0) {
			log_security(
			    "reload: closing session %llu of '%s': certificate now fails: %s",
			    (unsigned long long)s->id, s->agency, why);
			session_end(sv, s, err == IHALA_EREVOKED ? IHALA_EREVOKED : IHALA_ECERT,
			            why);
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
	metrics_inc_reload(0);
	log_info("reload done: %zu agencies", cfg->nagencies);
	return;
refused:
	reload_refused(why);
	wreq_free(r);
	if (pol != NULL) {
		pol->release(pol);
	}
	SSL_CTX_free(ssl);
	broker_config_free(cfg);
}

static void
signals_input(struct server *sv)
{
	struct signalfd_siginfo si;
	char why[128];

	while (read(sv->sigfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGCHLD) {
			if (sv->signer_lost || !signer_exited(sv->signer, why, sizeof(why))) {
				continue;
			}
			/* No checkpoint could be signed any more: stop, and say why. */
			log_warnx(
			    "the checkpoint signer process (pid %ld) %s: stopping (restart the "
			    "broker; without the signer no checkpoint can be signed)",
			    (long)signer_pid(sv->signer), why);
			sv->signer_lost = 1;
		}
		if (si.ssi_signo == SIGHUP) {
			reload(sv);
		} else if (!sv->stopping) {
			struct wreq *r = wreq_new(WREQ_STOP);
			struct session *s;

			log_info("signal %u: stopping (finishing the commit in flight)",
			         si.ssi_signo);
			/* Acks already taken are logged before the stop. */
			for (s = sv->sessions; s != NULL; s = s->next) {
				acks_send(sv, s);
			}
			/* No zmq_unbind() here: it also drops every connection accepted on the
			 * endpoint, and with them the receipts of the commit in flight and the
			 * sessions' last words. New handshakes are refused while stopping. */
			if (r == NULL || server_to_writer(sv, r) != 0) {
				log_warnx("signal %u: cannot stop the writer; still serving (send "
				          "the signal again)",
				          si.ssi_signo);
				wreq_free(r);
				continue;
			}
			sv->stopping = 1;
			sv->stop_ms = clock_wall_ms();
		}
	}
}

/* ---- start-up and loop ---- */

int
server_to_writer(struct server *sv, struct wreq *r)
{
	/* The pipe has no high-water mark: a blocking send fails only when ZeroMQ cannot
	 * queue the message at all (out of memory, the context ending). */
	if (zmq_send(sv->wpair, &r, sizeof(r), 0) != sizeof(r)) {
		log_warnx("cannot hand a request to the writer: %s", zmq_strerror(zmq_errno()));
		return IHALA_EZMQ;
	}
	return 0;
}

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
	if (zmq_bind(sv->wpair, WRITER_ENDPOINT) != 0 ||
	    conns_new(sv->zctx, sv->router, &sv->conns) != 0 ||
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
			if (!pending || clock_wall_ms() - sv->stop_ms > SHUTDOWN_FLUSH_MS) {
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
	pb_arena_init(&sv.frame_arena, sv.frame_arena_buf, sizeof(sv.frame_arena_buf));
	sv.sigfd = -1;
	log_setlevel((enum log_level)cfg->broker.log_level);

	/* Signals arrive on a descriptor the loop polls; blocked before any thread starts. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGCHLD); /* the signer process's end */
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sv.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sv.sigfd < 0) {
		log_warn("signalfd");
		err = IHALA_EIO;
		goto out;
	}
	/* The checkpoint key is read by its own process, forked first: before any thread,
	 * store, TLS context or network input exists here (signer.h). */
	err = signer_start(cfg->checkpoint.key_file, cfg->broker.log_origin, cfg->broker.user,
	                   sv.sigfd, &sv.signer);
	if (err != 0) {
		log_warnx("cannot load checkpoint key '%s': %s", cfg->checkpoint.key_file,
		          ihala_strerror(err));
		goto out;
	}
	err = make_ssl(cfg, &sv.ssl);
	if (err != 0) {
		goto out;
	}
	crlwatch_update(sv.ssl, cfg->tls.crl_file, cfg->tls.crl_warn_before_ms, clock_wall_ms());
	if (cfg->broker.auto_grow) {
		flags |= STORE_AUTO_GROW;
	}
	err = store_open(cfg->broker.data_dir, cfg->broker.map_size, (unsigned)flags, &sv.store);
	if (err != 0) {
		log_warnx("cannot open store '%s': %s", cfg->broker.data_dir, ihala_strerror(err));
		goto out;
	}
	store_set_max_mapsize(sv.store, cfg->broker.map_size_max);
	sv.policy = agency_table_new(cfg);
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
	sv.keys_kept = cfg->broker.user != NULL && geteuid() == 0;
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
	wp.sign = signer_sign_cb;
	wp.sign_arg = sv.signer;
	wp.origin = cfg->broker.log_origin;
	wp.ckpt_every_entries = cfg->checkpoint.every_entries;
	wp.ckpt_every_ms = cfg->checkpoint.every_ms;
	wp.auto_grow = cfg->broker.auto_grow;
	wp.disk_reserve = cfg->broker.disk_reserve;
	err = writer_start(&wp, &sv.writer);
	if (err != 0) {
		goto out;
	}
	log_info("listening on %s (store %s, %zu agencies)", cfg->broker.listen,
	         cfg->broker.data_dir, cfg->nagencies);
	serve(&sv);
	writer_join(sv.writer);
	sv.writer = NULL;
	if (sv.signer_lost) {
		log_warnx("stopped: the checkpoint signer process is gone");
		err = IHALA_EINTERNAL;
	} else {
		log_info("stopped cleanly");
		err = 0;
	}
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
	free(sv.hs_list);
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
	signer_stop(sv.signer); /* after the writer's last checkpoint */
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
