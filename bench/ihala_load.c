/* ihala_load.c - benchmark load on the wire protocol: pipelined senders, acking recipients. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "channel.h"
#include "error.h"
#include "frame.h"
#include "ihala.pb-c.h"
#include "log.h"
#include "sealpart.h"
#include "tlsctx.h"
#include "wire.h"

/*
 * libihala's ihala_submit waits for each receipt; a broker benchmark needs many submissions in
 * flight. This tool speaks the wire protocol (docs/PROTOCOL.md) directly: a ZeroMQ DEALER per
 * session, each message one type byte and TLS bytes; inside TLS a 4-byte length and a Frame.
 *
 *   ihala_load send -b EP -P PKI -a AGENCY -t TO[,TO...] -n COUNT [-r RATE] [-s BYTES]
 *                   [-p PREFIX] [-L LATFILE] [-T SECONDS] [-W WINDOW] [-R READYFILE]
 *                   [-G GOFILE]
 *	Submit COUNT referrals round-robin to the TO agencies, up to
 *	Welcome.limits.max_inflight (or WINDOW, to test the broker's OVERLOADED refusal)
 *	without a receipt, at RATE per second (0: as fast as receipts allow). Every Deliver
 *	the sender gets (the broker's "received" statuses) is acked. LATFILE gets one
 *	submit->receipt latency in microseconds per line. READYFILE is created once the
 *	session has its Welcome; with GOFILE nothing is submitted until that file exists (so
 *	a test can act between the two).
 *   ihala_load recv -b EP -P PKI -a AGENCY [-a AGENCY...] -n COUNT [-L LATFILE] [-R READYFILE]
 *                   [-I IDLE_MS] [-T SECONDS]
 *	One session per agency; ack every Deliver at once (no local store: the bench measures the
 *	broker). Stops after COUNT deliveries in all, or IDLE_MS without one after the first.
 *	LATFILE gets one submit->delivery latency per line (from the submit time the sender wrote
 *	into the message id); READYFILE is created when every session has its Welcome.
 *   ihala_load stats LATFILE...
 *	Merge latency files: count, p50, p99, max in microseconds.
 *
 * Results go to stdout as KEY=VALUE lines; times are CLOCK_MONOTONIC microseconds, the same
 * clock in every process of the machine.
 *
 * Message ids are PREFIX-N-T: N the message number, T its submit time.
 */

#define OUT_CAP (4u * 1024 * 1024)
#define MAX_CONNS 8
#define MAX_TO 8

struct conn {
	char agency[64];
	struct wire *w;
	int welcomed;
	uint32_t max_inflight;
	uint64_t t_open_us;
	uint64_t t_hello_us; /* when the current handshake started */
	unsigned restarts;   /* handshakes started again (conn_restart) */
	int reset;           /* the broker answered the handshake with RESET: start again now */
};

/* A handshake unanswered this long is started again (conn_restart). */
#define HELLO_RETRY_US 2000000

struct lat {
	uint32_t *v;
	size_t n, cap;
};

static volatile sig_atomic_t stop_flag;

static void
on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static uint64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void
lat_add(struct lat *l, uint64_t us)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 65536;
		uint32_t *v = realloc(l->v, cap * sizeof(*v));

		if (v == NULL) {
			return;
		}
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int
lat_write(const struct lat *l, const char *path)
{
	FILE *f;
	size_t i;

	if (path == NULL) {
		return 0;
	}
	f = fopen(path, "w");
	if (f == NULL) {
		perror(path);
		return -1;
	}
	for (i = 0; i < l->n; i++) {
		fprintf(f, "%" PRIu32 "\n", l->v[i]);
	}
	return fclose(f);
}

/* ---- the session: ZeroMQ + TLS channel ---- */

static SSL_CTX *
client_ctx(const char *pki, const char *agency)
{
	char ca[512], cert[512], key[512], err[512];
	struct tls_files tf;
	SSL_CTX *ctx = NULL;

	snprintf(ca, sizeof(ca), "%s/ca.pem", pki);
	snprintf(cert, sizeof(cert), "%s/%s.pem", pki, agency);
	snprintf(key, sizeof(key), "%s/%s.key", pki, agency);
	tf.ca_file = ca;
	tf.crl_file = NULL;
	tf.cert_file = cert;
	tf.key_file = key;
	if (tlsctx_client_new(&tf, &ctx, err, sizeof(err)) != 0) {
		fprintf(stderr, "ihala_load: %s\n", err);
		return NULL;
	}
	return ctx;
}

static int
conn_open(void *zctx, SSL_CTX *ctx, const char *ep, const char *agency, struct conn *c)
{
	struct wire_opts o;
	char err[256];

	memset(c, 0, sizeof(*c));
	snprintf(c->agency, sizeof(c->agency), "%s", agency);
	memset(&o, 0, sizeof(o));
	o.endpoint = ep;
	o.ssl = ctx;
	o.server_name = "localhost";
	o.max_frame = FRAME_MAX_LIMIT;
	o.out_cap = OUT_CAP;
	o.send_timeout_ms = -1;
	o.hwm = 100000;
	/* No ZMQ_IMMEDIATE: the ClientHello waits in ZeroMQ until the TCP connection is up. */
	if (wire_open(zctx, &o, &c->w, err, sizeof(err)) != 0) {
		fprintf(stderr, "ihala_load: %s\n", err);
		return IHALA_EZMQ;
	}
	c->t_hello_us = mono_us();
	return wire_start(c->w, 0) != 0 ? IHALA_ETLS : 0;
}

/*
 * The broker forgets a half-open handshake when newer ones from the same address need its
 * place (a flood from one address: bench/attack.sh's "sessions" runs on the honest agency's
 * own loopback address), and never answers it: a node starts again, and so does this tool,
 * HELLO_RETRY_US after the last start; at once when the rest of the handshake drew a RESET
 * (the broker had forgotten it: evicted, or past handshake_timeout on a loaded machine).
 * 0, or IHALA_ETLS.
 */
static int
conn_restart(struct conn *c, uint64_t now)
{
	if (c->welcomed || (!c->reset && now - c->t_hello_us < HELLO_RETRY_US)) {
		return 0;
	}
	c->reset = 0;
	c->restarts++;
	c->t_hello_us = now;
	wire_drop(c->w);
	return wire_start(c->w, 0) != 0 ? IHALA_ETLS : 0;
}

static void
conn_close(struct conn *c)
{
	if (c->w != NULL) {
		wire_close(c->w);
		wire_free(c->w, 200);
	}
	memset(c, 0, sizeof(*c));
}

/* Pack and write one frame (not flushed); IHALA_EAGAIN when the channel's output is full. */
static int
conn_send(struct conn *c, const Ihala__V2__Frame *f)
{
	return wire_send_frame(c->w, f);
}

static int
conn_ack(struct conn *c, uint64_t seq)
{
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__DeliveryAck a = IHALA__V2__DELIVERY_ACK__INIT;

	a.seq = seq;
	f.kind_case = IHALA__V2__FRAME__KIND_DELIVERY_ACK;
	f.delivery_ack = &a;
	return conn_send(c, &f);
}

typedef void (*frame_fn)(void *arg, struct conn *c, const Ihala__V2__Frame *f);

/* Take every ZeroMQ message waiting on the socket; hand each frame to fn. Returns 0, or an
 * error when the session failed (after printing why). */
static int
conn_input(struct conn *c, frame_fn fn, void *arg)
{
	struct wire_event ev;
	int err;

	while ((err = wire_next(c->w, &ev)) == 0 && ev.kind != WIRE_NONE) {
		Ihala__V2__Frame *f;

		switch (ev.kind) {
		case WIRE_FRAME:
			break;
		case WIRE_RESET:
			if (!c->welcomed) {
				/* As a node does (clients/client.c): a RESET before this
				 * handshake heard the broker answers the last one's bytes
				 * (stale); after, the broker forgot this one: start again. */
				if (!wire_heard(c->w)) {
					continue;
				}
				c->reset = 1;
				return 0;
			}
			fprintf(stderr, "ihala_load: %s: the broker reset the session\n",
			        c->agency);
			return IHALA_ERESET;
		case WIRE_FAILED:
		case WIRE_CLOSED:
			fprintf(stderr, "ihala_load: %s: session ended: %s\n", c->agency,
			        ev.kind == WIRE_FAILED ? channel_error_text(wire_channel(c->w))
			                               : "closed by the broker");
			return ev.kind == WIRE_FAILED ? ev.err : IHALA_ECLOSED;
		default:
			continue;
		}
		f = ihala__v2__frame__unpack(NULL, ev.len, ev.data);
		if (f == NULL) {
			fprintf(stderr, "ihala_load: %s: undecodable frame\n", c->agency);
			return IHALA_EBADFRAME;
		}
		if (f->kind_case == IHALA__V2__FRAME__KIND_WELCOME) {
			c->welcomed = 1;
			c->t_open_us = mono_us();
			c->max_inflight =
			    f->welcome->limits != NULL ? f->welcome->limits->max_inflight : 1;
		} else if (f->kind_case == IHALA__V2__FRAME__KIND_ERROR) {
			fprintf(stderr, "ihala_load: %s: broker error %d: %s\n", c->agency,
			        -(int)f->error->code, f->error->message);
			if (f->error->request_id == 0) {
				ihala__v2__frame__free_unpacked(f, NULL);
				return IHALA_ECLOSED;
			}
		} else {
			fn(arg, c, f);
		}
		ihala__v2__frame__free_unpacked(f, NULL);
	}
	return err;
}

/* ---- the referral ---- */

static const char *const NAMES[] = {"نور الهدى خلف حسن", "Layla Ahmed Saleh", "ئاراس کەریم"};
static const char *const GOVS[] = {"Ninewa", "Anbar", "Salah al-Din", "Duhok", "Basra"};

struct refmsg {
	char msgid[64], rid[64], caseid[64];
	char *agencies[MAX_TO];
	char *notes;
	Ihala__V2__ServiceCode svc[3];
	Ihala__V2__DataCategory data[8];
	Ihala__V2__Amputation amp[1];
	char *codes[2];
	Ihala__V2__WashingtonGroup wg;
	Ihala__V2__Injury inj;
	Ihala__V2__Survivor sur;
	Ihala__V2__Consent con;
	Ihala__V2__Contact off;
	Ihala__V2__Referral ref;
	Ihala__V2__Envelope env;
	/* v2: the personal fields travel sealed. The clear part is `ref` without them; the
	 * sealed part, one per recipient agency, is sealed once (see ref_seal). */
	Ihala__V2__Referral pers;
	Ihala__V2__Sealed sl;
	uint8_t *sealed[MAX_TO];
	size_t sealed_len[MAX_TO];
	uint8_t sha[MAX_TO][32];
	size_t cur; /* index of the current recipient in agencies[] */
};

/* The CMS wrapping of a sealed part to two recipients: sealed size minus content size. */
static size_t sealed_overhead;

/* A referral like config/examples/referral.json; notes are padded so the encoded envelope is
 * about `size` bytes. */
static void
ref_init(struct refmsg *m, char *const *to, size_t nto, size_t size)
{
	static const char filler[] = "الناجية تحتاج إلى وسيلة نقل إلى مركز الأطراف الصناعية. ";
	size_t i, len, want, flen = strlen(filler);

	memset(m, 0, sizeof(*m));
	ihala__v2__washington_group__init(&m->wg);
	ihala__v2__injury__init(&m->inj);
	ihala__v2__survivor__init(&m->sur);
	ihala__v2__consent__init(&m->con);
	ihala__v2__contact__init(&m->off);
	ihala__v2__referral__init(&m->ref);
	ihala__v2__envelope__init(&m->env);
	m->wg.seeing = IHALA__V2__DIFFICULTY__DIFFICULTY_NONE;
	m->wg.hearing = IHALA__V2__DIFFICULTY__DIFFICULTY_SOME;
	m->wg.walking = IHALA__V2__DIFFICULTY__DIFFICULTY_A_LOT;
	m->wg.cognition = IHALA__V2__DIFFICULTY__DIFFICULTY_NONE;
	m->wg.self_care = IHALA__V2__DIFFICULTY__DIFFICULTY_SOME;
	m->wg.communication = IHALA__V2__DIFFICULTY__DIFFICULTY_NONE;
	m->codes[0] = "injury.lower_limb";
	m->codes[1] = "dysfunction.hearing.right";
	m->amp[0] = IHALA__V2__AMPUTATION__AMPUTATION_LEG_RIGHT_BELOW_KNEE;
	m->inj.incident_date = "2024-03-11";
	m->inj.device_type = IHALA__V2__DEVICE_TYPE__DEVICE_TYPE_LANDMINE_AP;
	m->inj.n_injury_codes = 2;
	m->inj.injury_codes = m->codes;
	m->inj.n_amputations = 1;
	m->inj.amputations = m->amp;
	m->sur.case_id = m->caseid;
	m->sur.sex = IHALA__V2__SEX__SEX_FEMALE;
	m->sur.birth_year = 1996;
	m->sur.district = "Sinjar";
	m->sur.displacement = IHALA__V2__DISPLACEMENT__DISPLACEMENT_RETURNEE;
	m->sur.functioning = &m->wg;
	m->sur.injury = &m->inj;
	for (i = 0; i < nto && i < MAX_TO; i++) {
		m->agencies[i] = to[i];
	}
	for (i = 0; i < 8; i++) {
		m->data[i] = (Ihala__V2__DataCategory)(i + 1);
	}
	m->con.given = 1;
	m->con.given_by = IHALA__V2__CONSENT_GIVER__CONSENT_GIVER_SURVIVOR;
	m->con.date = "2024-04-02";
	m->con.recorded_by = "DMA-VA-0231";
	m->con.n_agencies = nto < MAX_TO ? nto : MAX_TO;
	m->con.agencies = m->agencies;
	m->con.n_data_covered = 8;
	m->con.data_covered = m->data;
	m->off.name = "Layla Hassan";
	m->off.organisation =
	    "DMA Victim Assistance Department, Mosul regional office, case officer";
	m->off.phone = "+964 770 000 0417";
	m->off.email = "va-referrals@dma.example";
	m->svc[0] = IHALA__V2__SERVICE_CODE__SERVICE_CODE_PHYSICAL_REHABILITATION;
	m->svc[1] = IHALA__V2__SERVICE_CODE__SERVICE_CODE_PROSTHETICS_ORTHOTICS;
	m->svc[2] = IHALA__V2__SERVICE_CODE__SERVICE_CODE_PSYCHOSOCIAL_SUPPORT;
	ihala__v2__referral__init(&m->pers);
	ihala__v2__sealed__init(&m->sl);
	m->ref.referral_id = m->rid;
	m->ref.referring_agency = "dma";
	m->ref.priority = IHALA__V2__PRIORITY__PRIORITY_URGENT;
	m->ref.n_services = 3;
	m->ref.services = m->svc;
	m->pers.reason = "Landmine survivor with a right below-knee amputation since March 2024; "
	                 "needs a prosthesis, gait training and psychosocial support.";
	m->pers.survivor = &m->sur;
	m->ref.consent = &m->con;
	m->pers.referring_officer = &m->off;
	m->ref.created_time_ms = 1712044800000ull;
	m->env.message_id = m->msgid;
	m->env.kind_case = IHALA__V2__ENVELOPE__KIND_REFERRAL;
	m->env.referral = &m->ref;
	m->env.client_time_ms = 1712044800000ull;

	/* Typical ids, to measure; then pad the notes up to `size`. */
	snprintf(m->msgid, sizeof(m->msgid), "bench-s1-1000000-10000000000");
	snprintf(m->rid, sizeof(m->rid), "bench-s1-R1000000");
	snprintf(m->caseid, sizeof(m->caseid), "IQ-NIN-2024-1000000");
	m->sur.name = (char *)NAMES[0];
	m->sur.governorate = (char *)GOVS[0];
	m->env.to = to[0];
	m->ref.receiving_agency = to[0];
	m->pers.notes = "";
	m->sl.message_id = m->msgid;
	m->sl.referral_id = m->rid;
	m->sl.sender = "dma";
	m->sl.kind_case = IHALA__V2__SEALED__KIND_REFERRAL;
	m->sl.referral = &m->pers;
	m->env.n_data_declared = 8;
	m->env.data_declared = m->data;
	m->env.sealed_sha256.len = 32;
	m->env.sealed_sha256.data = m->sha[0];
	/* `size` is the whole submission: clear envelope, plus the sealed part, whose CMS
	 * wrapping for two recipients (about 500 bytes) is measured by sealing it empty. */
	len = ihala__v2__envelope__get_packed_size(&m->env) +
	      ihala__v2__sealed__get_packed_size(&m->sl) + sealed_overhead;
	want = size > len + 3 ? size - len - 3 : 0;
	m->notes = calloc(want + flen + 1, 1);
	if (m->notes == NULL) {
		return;
	}
	for (i = 0; i + flen <= want; i += flen) {
		memcpy(m->notes + i, filler, flen);
	}
	while (i < want) { /* ASCII to finish, so no UTF-8 sequence is cut */
		m->notes[i++] = '.';
	}
	m->pers.notes = m->notes;
}

/*
 * Seal m's personal fields once per recipient agency to[i] (and to the sender, dma), as a
 * node does. The broker never opens a sealed part and does the same work whatever it holds,
 * so every message to to[i] carries the same one (a node would refuse it: its content names
 * the template message). 0, or -1 with a message on stderr.
 */
static int
ref_seal(struct refmsg *m, const char *pki, char *const *to, size_t nto)
{
	size_t i, plen = ihala__v2__sealed__get_packed_size(&m->sl);
	uint8_t *plain = malloc(plen + 1);
	int rc = 0;

	if (plain == NULL) {
		return -1;
	}
	ihala__v2__sealed__pack(&m->sl, plain);
	for (i = 0; rc == 0 && i < nto && i < MAX_TO; i++) {
		const char *who[2] = {to[i], "dma"};

		rc = sealpart("ihala_load", pki, who, 2, plain, plen, &m->sealed[i],
		              &m->sealed_len[i], m->sha[i]);
	}
	free(plain);
	return rc;
}

static void
ref_set(struct refmsg *m, const char *prefix, uint64_t n, uint64_t t_us, char *to)
{
	snprintf(m->msgid, sizeof(m->msgid), "%s-%" PRIu64 "-%" PRIu64, prefix, n, t_us);
	snprintf(m->rid, sizeof(m->rid), "%s-R%" PRIu64, prefix, n);
	snprintf(m->caseid, sizeof(m->caseid), "IQ-%s-%" PRIu64, prefix, n);
	m->sur.name = (char *)NAMES[n % 3];
	m->sur.governorate = (char *)GOVS[n % 5];
	m->env.to = to;
	m->ref.receiving_agency = to;
	for (m->cur = 0; m->cur + 1 < MAX_TO && m->agencies[m->cur] != NULL &&
	                 strcmp(m->agencies[m->cur], to) != 0;
	     m->cur++) {
	}
	m->env.sealed_sha256.data = m->sha[m->cur];
}

/* The submit time written into a message id PREFIX-N-T; 0 when it has none. */
static uint64_t
msgid_time(const char *id)
{
	const char *p = strrchr(id, '-');

	return p != NULL ? strtoull(p + 1, NULL, 10) : 0;
}

/* ---- common options ---- */

struct opts {
	const char *ep, *pki, *prefix, *latfile, *readyfile, *gofile;
	char *agency[MAX_CONNS];
	size_t n_agency;
	char *to[MAX_TO];
	size_t n_to;
	uint64_t count;
	double rate;
	size_t size;
	long idle_ms;
	long timeout_s;
	uint32_t window; /* -W: submissions in flight, overriding the broker's max_inflight */
};

static int
parse_opts(int argc, char **argv, struct opts *o)
{
	int ch;

	memset(o, 0, sizeof(*o));
	o->prefix = "bench";
	o->size = 1024;
	o->idle_ms = 5000;
	o->timeout_s = 600;
	while ((ch = getopt(argc, argv, "b:P:a:t:n:r:s:p:L:R:I:T:W:G:")) != -1) {
		switch (ch) {
		case 'b':
			o->ep = optarg;
			break;
		case 'P':
			o->pki = optarg;
			break;
		case 'a':
			if (o->n_agency == MAX_CONNS) {
				return -1;
			}
			o->agency[o->n_agency++] = optarg;
			break;
		case 't': {
			char *save = NULL, *tok;

			for (tok = strtok_r(optarg, ",", &save); tok != NULL && o->n_to < MAX_TO;
			     tok = strtok_r(NULL, ",", &save)) {
				o->to[o->n_to++] = tok;
			}
			break;
		}
		case 'n':
			o->count = strtoull(optarg, NULL, 10);
			break;
		case 'r':
			o->rate = strtod(optarg, NULL);
			break;
		case 's':
			o->size = strtoul(optarg, NULL, 10);
			break;
		case 'p':
			o->prefix = optarg;
			break;
		case 'L':
			o->latfile = optarg;
			break;
		case 'R':
			o->readyfile = optarg;
			break;
		case 'I':
			o->idle_ms = strtol(optarg, NULL, 10);
			break;
		case 'T':
			o->timeout_s = strtol(optarg, NULL, 10);
			break;
		case 'W':
			o->window = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'G':
			o->gofile = optarg;
			break;
		default:
			return -1;
		}
	}
	if (o->ep == NULL || o->pki == NULL || o->n_agency == 0 || o->count == 0) {
		return -1;
	}
	return 0;
}

/* Create `path` (empty): a signal to the script that runs us. */
static void
touch(const char *path)
{
	FILE *f = fopen(path, "w");

	if (f != NULL) {
		fclose(f);
	}
}

/* ---- send ---- */

struct sender {
	uint64_t receipted, refused, acked;
	uint64_t inflight;
	uint64_t t_last_us;
	struct lat lat;
	int acks_failed;
};

static void
sender_frame(void *arg, struct conn *c, const Ihala__V2__Frame *f)
{
	struct sender *s = arg;
	uint64_t now = mono_us();

	if (f->kind_case == IHALA__V2__FRAME__KIND_RECEIPT) {
		const Ihala__V2__Receipt *r = f->receipt;
		uint64_t t = msgid_time(r->message_id);

		s->inflight--;
		s->t_last_us = now;
		if (r->status == IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED) {
			if (s->refused++ < 3) {
				fprintf(stderr, "ihala_load: '%s' refused: %s\n", r->message_id,
				        r->error_message);
			}
			return;
		}
		s->receipted++;
		if (t != 0 && now >= t) {
			lat_add(&s->lat, now - t);
		}
	} else if (f->kind_case == IHALA__V2__FRAME__KIND_DELIVER) {
		if (conn_ack(c, f->deliver->seq) == 0) {
			s->acked++;
		} else {
			s->acks_failed++;
		}
	}
}

static int
cmd_send(struct opts *o)
{
	struct sender s;
	struct refmsg m;
	struct conn c;
	SSL_CTX *ctx;
	void *zctx;
	uint8_t *env = NULL;
	size_t envcap = 0, envlen = 0, sublen = 0;
	uint64_t next = 0, t0 = 0, t_end, last_us = 0;
	int err = 0, ready = 0;

	if (o->n_to == 0) {
		fprintf(stderr, "ihala_load: send needs -t TO\n");
		return 2;
	}
	memset(&s, 0, sizeof(s));
	ctx = client_ctx(o->pki, o->agency[0]);
	zctx = zmq_ctx_new();
	if (ctx == NULL || zctx == NULL || conn_open(zctx, ctx, o->ep, o->agency[0], &c) != 0) {
		return 2;
	}
	if (sealed_overhead == 0) {
		/* Measure the CMS wrapping once: seal an empty template. */
		ref_init(&m, o->to, 1, 0);
		if (ref_seal(&m, o->pki, o->to, 1) != 0) {
			return 2;
		}
		sealed_overhead = m.sealed_len[0] - ihala__v2__sealed__get_packed_size(&m.sl);
		free(m.sealed[0]);
		free(m.notes);
	}
	ref_init(&m, o->to, o->n_to, o->size);
	if (ref_seal(&m, o->pki, o->to, o->n_to) != 0) {
		return 2;
	}
	t_end = mono_us() + (uint64_t)o->timeout_s * 1000000;
	while (!stop_flag && s.receipted + s.refused < o->count) {
		uint64_t now = mono_us();
		long timeout = 100;

		if (now > t_end) {
			fprintf(stderr,
			        "ihala_load: send: timed out with %" PRIu64 " of %" PRIu64
			        " receipted\n",
			        s.receipted, o->count);
			err = IHALA_ETIMEDOUT;
			break;
		}
		if ((err = conn_restart(&c, now)) != 0) {
			break;
		}
		if (c.welcomed && o->readyfile != NULL && !ready) {
			touch(o->readyfile);
			ready = 1;
		}
		if (c.welcomed && o->gofile != NULL && access(o->gofile, F_OK) != 0) {
			/* -G: the session is up; the first submission waits for GOFILE */
			timeout = 10;
			goto poll;
		}
		if (c.welcomed && t0 == 0) {
			t0 = now;
		}
		while (c.welcomed && next < o->count &&
		       s.inflight < (o->window > 0 ? o->window : c.max_inflight)) {
			Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
			Ihala__V2__Submit sub = IHALA__V2__SUBMIT__INIT;

			if (o->rate > 0) {
				uint64_t due = t0 + (uint64_t)((double)next * 1e6 / o->rate);

				if (due > now) {
					uint64_t wait = due - now;

					timeout = (long)((wait + 999) / 1000);
					break;
				}
			}
			now = mono_us();
			ref_set(&m, o->prefix, next, now, o->to[next % o->n_to]);
			envlen = ihala__v2__envelope__get_packed_size(&m.env);
			if (envlen > envcap) {
				free(env);
				envcap = envlen * 2;
				env = malloc(envcap);
				if (env == NULL) {
					return 2;
				}
			}
			ihala__v2__envelope__pack(&m.env, env);
			sub.envelope.data = env;
			sub.envelope.len = envlen;
			sub.sealed.data = m.sealed[m.cur];
			sub.sealed.len = m.sealed_len[m.cur];
			/* what a peer must carry for the same referral: both parts */
			sublen = ihala__v2__submit__get_packed_size(&sub);
			f.kind_case = IHALA__V2__FRAME__KIND_SUBMIT;
			f.submit = &sub;
			if (conn_send(&c, &f) != 0) {
				timeout = 1;
				break;
			}
			last_us = now;
			next++;
			s.inflight++;
		}
	poll:
		wire_flush(c.w);
		if (wire_wait(c.w, timeout) < 0) {
			err = IHALA_EZMQ;
			break;
		}
		err = conn_input(&c, sender_frame, &s);
		if (err != 0) {
			break;
		}
	}
	printf("sent=%" PRIu64 "\nreceipted=%" PRIu64 "\nrefused=%" PRIu64 "\nacked=%" PRIu64
	       "\nenvelope_bytes=%zu\nsubmit_bytes=%zu\nt_first_us=%" PRIu64
	       "\nt_last_send_us=%" PRIu64 "\nt_last_us=%" PRIu64 "\nmax_inflight=%" PRIu32
	       "\nhandshake_restarts=%u\n",
	       next, s.receipted, s.refused, s.acked, envlen, sublen, t0, last_us, s.t_last_us,
	       c.max_inflight, c.restarts);
	lat_write(&s.lat, o->latfile);
	free(s.lat.v);
	conn_close(&c);
	zmq_ctx_term(zctx);
	SSL_CTX_free(ctx);
	free(env);
	free(m.notes);
	for (size_t k = 0; k < MAX_TO; k++) {
		free(m.sealed[k]);
	}
	return err == 0 && s.refused == 0 ? 0 : 1;
}

/* ---- recv ---- */

struct receiver {
	uint64_t delivered, other;
	uint64_t t_first_us, t_last_us;
	struct lat lat;
	int want_lat;
	int ack_failed;
};

static void
receiver_frame(void *arg, struct conn *c, const Ihala__V2__Frame *f)
{
	struct receiver *r = arg;
	Ihala__V2__LogEntry *e;
	uint64_t now = mono_us();

	if (f->kind_case != IHALA__V2__FRAME__KIND_DELIVER) {
		return;
	}
	if (conn_ack(c, f->deliver->seq) != 0) {
		r->ack_failed++;
	}
	if (r->t_first_us == 0) {
		r->t_first_us = now;
	}
	r->t_last_us = now;
	e = ihala__v2__log_entry__unpack(NULL, f->deliver->entry.len, f->deliver->entry.data);
	if (e == NULL || e->kind != IHALA__V2__ENTRY_KIND__ENTRY_KIND_SUBMISSION) {
		r->other++;
	} else {
		r->delivered++;
		if (r->want_lat) {
			Ihala__V2__Envelope *env =
			    ihala__v2__envelope__unpack(NULL, e->envelope.len, e->envelope.data);
			uint64_t t = env != NULL ? msgid_time(env->message_id) : 0;

			if (t != 0 && now >= t) {
				lat_add(&r->lat, now - t);
			}
			if (env != NULL) {
				ihala__v2__envelope__free_unpacked(env, NULL);
			}
		}
	}
	if (e != NULL) {
		ihala__v2__log_entry__free_unpacked(e, NULL);
	}
}

static int
cmd_recv(struct opts *o)
{
	struct conn c[MAX_CONNS];
	SSL_CTX *ctx[MAX_CONNS];
	zmq_pollitem_t it[MAX_CONNS];
	struct receiver r;
	void *zctx = zmq_ctx_new();
	uint64_t t_end, t_open = 0;
	size_t i, n = o->n_agency;
	int err = 0, ready = 0;
	unsigned restarts;

	memset(&r, 0, sizeof(r));
	r.want_lat = o->latfile != NULL;
	for (i = 0; i < n; i++) {
		ctx[i] = client_ctx(o->pki, o->agency[i]);
		if (ctx[i] == NULL || zctx == NULL ||
		    conn_open(zctx, ctx[i], o->ep, o->agency[i], &c[i]) != 0) {
			return 2;
		}
	}
	t_end = mono_us() + (uint64_t)o->timeout_s * 1000000;
	while (!stop_flag && r.delivered < o->count) {
		uint64_t now = mono_us();
		long timeout = 100;
		int all = 1;

		if (now > t_end) {
			fprintf(stderr,
			        "ihala_load: recv: timed out with %" PRIu64 " of %" PRIu64
			        " delivered\n",
			        r.delivered, o->count);
			err = IHALA_ETIMEDOUT;
			break;
		}
		if (r.t_last_us != 0 && now - r.t_last_us > (uint64_t)o->idle_ms * 1000) {
			break;
		}
		for (i = 0; i < n; i++) {
			if ((err = conn_restart(&c[i], now)) != 0) {
				break;
			}
			all &= c[i].welcomed;
			wire_flush(c[i].w);
			if (wire_held(c[i].w)) {
				timeout = 1;
			}
			it[i].socket = wire_socket(c[i].w);
			it[i].events = ZMQ_POLLIN;
		}
		if (err != 0) {
			break;
		}
		if (all && !ready) {
			ready = 1;
			t_open = now;
			if (o->readyfile != NULL) {
				touch(o->readyfile);
			}
		}
		if (zmq_poll(it, (int)n, timeout) < 0 && zmq_errno() != EINTR) {
			err = IHALA_EZMQ;
			break;
		}
		for (i = 0; i < n && err == 0; i++) {
			if (it[i].revents & ZMQ_POLLIN) {
				err = conn_input(&c[i], receiver_frame, &r);
			}
		}
		if (err != 0) {
			break;
		}
	}
	for (i = 0; i < n; i++) {
		wire_flush(c[i].w);
	}
	for (i = 0, restarts = 0; i < n; i++) {
		restarts += c[i].restarts;
	}
	printf("delivered=%" PRIu64 "\nother=%" PRIu64 "\nt_open_us=%" PRIu64
	       "\nt_first_us=%" PRIu64 "\nt_last_us=%" PRIu64 "\nhandshake_restarts=%u\n",
	       r.delivered, r.other, t_open, r.t_first_us, r.t_last_us, restarts);
	lat_write(&r.lat, o->latfile);
	free(r.lat.v);
	for (i = 0; i < n; i++) {
		conn_close(&c[i]);
		SSL_CTX_free(ctx[i]);
	}
	zmq_ctx_term(zctx);
	return err == 0 ? 0 : 1;
}

/* ---- stats ---- */

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static int
cmd_stats(int argc, char **argv)
{
	struct lat l = {0};
	double sum = 0;
	int i;

	for (i = 0; i < argc; i++) {
		FILE *f = fopen(argv[i], "r");
		unsigned long v;

		if (f == NULL) {
			perror(argv[i]);
			return 2;
		}
		while (fscanf(f, "%lu", &v) == 1) {
			lat_add(&l, v);
			sum += (double)v;
		}
		fclose(f);
	}
	if (l.n == 0) {
		printf("count=0\n");
		return 1;
	}
	qsort(l.v, l.n, sizeof(l.v[0]), cmp_u32);
	printf("count=%zu\np50_us=%" PRIu32 "\np99_us=%" PRIu32 "\nmax_us=%" PRIu32
	       "\nmean_us=%.0f\n",
	       l.n, l.v[(l.n - 1) / 2], l.v[(size_t)((double)(l.n - 1) * 0.99)], l.v[l.n - 1],
	       sum / (double)l.n);
	free(l.v);
	return 0;
}

static void
usage(void)
{
	fprintf(stderr,
	        "usage: ihala_load send -b EP -P PKI -a AGENCY -t TO[,TO..] -n COUNT [-r RATE] "
	        "[-s BYTES] [-p PREFIX] [-L LATFILE] [-T SECONDS] [-W WINDOW] [-R READYFILE] "
	        "[-G GOFILE]\n"
	        "       ihala_load recv -b EP -P PKI -a AGENCY [-a AGENCY..] -n COUNT [-L LATFILE] "
	        "[-R READYFILE] [-I IDLE_MS] [-T SECONDS]\n"
	        "       ihala_load stats LATFILE...\n");
}

int
main(int argc, char **argv)
{
	struct opts o;

	log_setlevel(LOG_LEVEL_WARN);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	if (argc >= 2 && strcmp(argv[1], "stats") == 0) {
		return cmd_stats(argc - 2, argv + 2);
	}
	if (argc < 2 || parse_opts(argc - 1, argv + 1, &o) != 0) {
		usage();
		return 2;
	}
	if (strcmp(argv[1], "send") == 0) {
		return cmd_send(&o);
	}
	if (strcmp(argv[1], "recv") == 0) {
		return cmd_recv(&o);
	}
	usage();
	return 2;
}
