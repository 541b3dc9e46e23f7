/* metrics.c - Prometheus text metrics: C11 atomic counters, scraped over libmicrohttpd. */
#include "metrics.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "clock.h"
#include "config.h"
#include "error.h"
#include "ihala.pb-c.h"
#include "log.h"
#include "store.h"

#if MHD_VERSION < 0x00097002
typedef int mhd_result;
#else
typedef enum MHD_Result mhd_result;
#endif

/* Agencies ever seen: removed ones keep their slot (their sessions may still close). */
#define MAX_SLOTS (2 * BROKER_MAX_AGENCIES)
#define SLOT_ID_MAX 64
#define N_CODES 128 /* error codes are 1..127 in absolute value */
#define N_STATUS 4  /* ReceiptStatus values */
#define MAX_BUCKETS 16
#define HTTP_CONNECTIONS 8
#define HTTP_TIMEOUT_S 10

struct slot {
	char id[SLOT_ID_MAX]; /* written once, before the slot is published */
	_Atomic int configured;
	_Atomic int64_t sessions;
};

struct hist {
	const char *name;
	const char *help;
	const double *bounds; /* upper bounds, ascending, in observed units */
	size_t nb;
	double scale;                             /* exported value = observed * scale */
	_Atomic uint64_t bucket[MAX_BUCKETS + 1]; /* non-cumulative; the last is +Inf */
	_Atomic uint64_t sum;
};

static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};
/* Nanoseconds: 100us .. 2.5s. */
static const double commit_bounds[] = {1e5,   2.5e5, 5e5, 1e6,   2.5e6, 5e6,  1e7,
                                       2.5e7, 5e7,   1e8, 2.5e8, 1e9,   2.5e9};

static struct {
	struct slot slots[MAX_SLOTS];
	_Atomic size_t nslots;

	_Atomic uint64_t submissions;
	_Atomic uint64_t receipts[N_STATUS];
	_Atomic uint64_t refusals[N_CODES];
	_Atomic uint64_t deliveries;
	_Atomic uint64_t acks;
	_Atomic uint64_t overdue;
	_Atomic uint64_t erasures;
	_Atomic uint64_t reloads[2]; /* applied, refused */
	_Atomic uint64_t ckpt_size;
	_Atomic uint64_t ckpt_ms;   /* 0: none signed by this process */
	_Atomic int64_t crl_next_s; /* 0: no CRL with a nextUpdate */
	struct hist batch;
	struct hist commit;

	/* main thread */
	struct MHD_Daemon *daemon;
	struct store *store;
	uint64_t start_s;
} M = {
    .batch = {"ihala_commit_batch_size",
              "Requests per group commit.",
              batch_bounds,
              sizeof(batch_bounds) / sizeof(batch_bounds[0]),
              1.0,
              {0},
              0},
    .commit = {"ihala_commit_duration_seconds",
               "Time of the synchronous LMDB commit of a batch.",
               commit_bounds,
               sizeof(commit_bounds) / sizeof(commit_bounds[0]),
               1e-9,
               {0},
               0},
};

#define INC(x) atomic_fetch_add_explicit(&(x), 1, memory_order_relaxed)
#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

/* ---- agencies (written by the main thread only) ---- */

static struct slot *
slot_find(const char *id, int create)
{
	size_t n = atomic_load_explicit(&M.nslots, memory_order_relaxed), i;
	struct slot *s;

	for (i = 0; i < n; i++) {
		if (strcmp(M.slots[i].id, id) == 0) {
			return &M.slots[i];
		}
	}
	if (!create || n >= MAX_SLOTS || strlen(id) >= SLOT_ID_MAX) {
		return NULL;
	}
	s = &M.slots[n];
	snprintf(s->id, sizeof(s->id), "%s", id);
	atomic_store_explicit(&s->configured, 0, memory_order_relaxed);
	atomic_store_explicit(&s->sessions, 0, memory_order_relaxed);
	/* Publish: a scrape that sees the new count sees the id written above. */
	atomic_store_explicit(&M.nslots, n + 1, memory_order_release);
	return s;
}

void
metrics_set_agencies(const struct broker_config *cfg)
{
	size_t n = atomic_load_explicit(&M.nslots, memory_order_relaxed), i;
	struct slot *s;

	for (i = 0; i < n; i++) {
		atomic_store_explicit(&M.slots[i].configured,
		                      broker_config_find_agency(cfg, M.slots[i].id) != NULL,
		                      memory_order_relaxed);
	}
	for (i = 0; i < cfg->nagencies; i++) {
		s = slot_find(cfg->agencies[i].id, 1);
		if (s != NULL) {
			atomic_store_explicit(&s->configured, 1, memory_order_relaxed);
		}
	}
}

void
metrics_session_opened(const char *agency)
{
	struct slot *s = agency != NULL ? slot_find(agency, 1) : NULL;

	if (s != NULL) {
		atomic_fetch_add_explicit(&s->sessions, 1, memory_order_relaxed);
	}
}

void
metrics_session_closed(const char *agency)
{
	struct slot *s = agency != NULL ? slot_find(agency, 0) : NULL;

	if (s != NULL) {
		atomic_fetch_sub_explicit(&s->sessions, 1, memory_order_relaxed);
	}
}

/* ---- counters ---- */

void
metrics_inc_submissions(void)
{
	INC(M.submissions);
}

void
metrics_inc_receipt(int status, int err)
{
	if (status >= 0 && status < N_STATUS) {
		INC(M.receipts[status]);
	}
	if (err < 0 && err > -N_CODES) {
		INC(M.refusals[-err]);
	}
}

void
metrics_inc_deliveries(void)
{
	INC(M.deliveries);
}

void
metrics_inc_acks(void)
{
	INC(M.acks);
}

void
metrics_inc_overdue(void)
{
	INC(M.overdue);
}

void
metrics_inc_erasures(void)
{
	INC(M.erasures);
}

void
metrics_inc_reload(int refused)
{
	INC(M.reloads[refused ? 1 : 0]);
}

static void
hist_observe(struct hist *h, uint64_t v)
{
	size_t i;

	for (i = 0; i < h->nb && (double)v > h->bounds[i]; i++) {
	}
	INC(h->bucket[i]);
	atomic_fetch_add_explicit(&h->sum, v, memory_order_relaxed);
}

void
metrics_observe_commit(size_t batch, uint64_t ns)
{
	hist_observe(&M.batch, batch);
	hist_observe(&M.commit, ns);
}

void
metrics_observe_checkpoint(uint64_t size, uint64_t when_ms)
{
	atomic_store_explicit(&M.ckpt_size, size, memory_order_relaxed);
	atomic_store_explicit(&M.ckpt_ms, when_ms, memory_order_relaxed);
}

void
metrics_set_crl_next_update(int64_t when_s)
{
	atomic_store_explicit(&M.crl_next_s, when_s, memory_order_relaxed);
}

void
metrics_reset(void)
{
	size_t i;

	atomic_store(&M.nslots, 0);
	M.submissions = 0;
	M.deliveries = 0;
	M.acks = 0;
	M.overdue = 0;
	M.erasures = 0;
	M.reloads[0] = M.reloads[1] = 0;
	M.ckpt_size = 0;
	M.ckpt_ms = 0;
	M.crl_next_s = 0;
	for (i = 0; i < N_STATUS; i++) {
		M.receipts[i] = 0;
	}
	for (i = 0; i < N_CODES; i++) {
		M.refusals[i] = 0;
	}
	for (i = 0; i <= MAX_BUCKETS; i++) {
		M.batch.bucket[i] = 0;
		M.commit.bucket[i] = 0;
	}
	M.batch.sum = 0;
	M.commit.sum = 0;
}

/* ---- rendering ---- */

struct buf {
	char *p;
	size_t len, cap;
	int err;
};

static void bprintf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
bprintf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->err) {
		return;
	}
	for (;;) {
		size_t room = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->p != NULL ? b->p + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->err = IHALA_EINTERNAL;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		{
			size_t cap = b->cap ? b->cap * 2 : 4096;
			char *p;

			while (cap - b->len <= (size_t)n) {
				cap *= 2;
			}
			p = realloc(b->p, cap);
			if (p == NULL) {
				b->err = IHALA_ENOMEM;
				return;
			}
			b->p = p;
			b->cap = cap;
		}
	}
}

static void
head(struct buf *b, const char *name, const char *type, const char *help)
{
	bprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label values here are agency ids and error names: escape anyway (text format rules). */
static void
label_value(struct buf *b, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"') {
			bprintf(b, "\\%c", *v);
		} else if (*v == '\n') {
			bprintf(b, "\\n");
		} else {
			bprintf(b, "%c", *v);
		}
	}
}

static void
render_hist(struct buf *b, struct hist *h)
{
	uint64_t cum = 0;
	size_t i;

	head(b, h->name, "histogram", h->help);
	for (i = 0; i <= h->nb; i++) {
		cum += LOAD(h->bucket[i]);
		if (i < h->nb) {
			bprintf(b, "%s_bucket{le=\"%g\"} %llu\n", h->name, h->bounds[i] * h->scale,
			        (unsigned long long)cum);
		} else {
			bprintf(b, "%s_bucket{le=\"+Inf\"} %llu\n", h->name,
			        (unsigned long long)cum);
		}
	}
	if (h->scale == 1.0) {
		bprintf(b, "%s_sum %llu\n", h->name, (unsigned long long)LOAD(h->sum));
	} else {
		bprintf(b, "%s_sum %.9f\n", h->name, (double)LOAD(h->sum) * h->scale);
	}
	/* The count is the +Inf bucket, so the two always agree. */
	bprintf(b, "%s_count %llu\n", h->name, (unsigned long long)cum);
}

static void
render_counter(struct buf *b, const char *name, const char *help, uint64_t v)
{
	head(b, name, "counter", help);
	bprintf(b, "%s %llu\n", name, (unsigned long long)v);
}

static void
render_store(struct buf *b, size_t n)
{
	struct store_stats st;
	struct store_rtxn *r = NULL;
	uint64_t size = 0;
	char *text = NULL;
	size_t i, depth;

	if (M.store == NULL) {
		return;
	}
	head(b, "ihala_queue_depth", "gauge", "Undelivered entries queued for the agency.");
	if (store_rbegin(M.store, &r) == 0) {
		for (i = 0; i < n; i++) {
			if (!atomic_load_explicit(&M.slots[i].configured, memory_order_relaxed)) {
				continue;
			}
			if (store_queue_count(r, M.slots[i].id, &depth) != 0) {
				depth = 0; /* IHALA_ENOTFOUND: never queued */
			}
			bprintf(b, "ihala_queue_depth{agency=\"");
			label_value(b, M.slots[i].id);
			bprintf(b, "\"} %zu\n", depth);
		}
		if (store_checkpoint_latest(r, &size, &text) != 0) {
			size = 0;
		}
		free(text);
		store_rend(r);
	}
	if (store_stat(M.store, &st) == 0) {
		head(b, "ihala_log_entries", "gauge", "Entries in the audit log.");
		bprintf(b, "ihala_log_entries %llu\n", (unsigned long long)st.entries);
		head(b, "ihala_log_bytes", "gauge", "Bytes of the store's map in use.");
		bprintf(b, "ihala_log_bytes %zu\n", st.used_bytes);
		head(b, "ihala_store_map_bytes", "gauge",
		     "Current LMDB map size (the store's limit).");
		bprintf(b, "ihala_store_map_bytes %zu\n", st.map_size);
	}
	head(b, "ihala_checkpoint_size", "gauge", "Tree size of the latest signed checkpoint.");
	bprintf(b, "ihala_checkpoint_size %llu\n", (unsigned long long)size);
}

int
metrics_render(char **out, size_t *len)
{
	static const char *status_names[N_STATUS] = {"unspecified", "accepted", "duplicate",
	                                             "refused"};
	struct buf b = {NULL, 0, 0, 0};
	size_t n = atomic_load_explicit(&M.nslots, memory_order_acquire), i;
	uint64_t ck;

	*out = NULL;
	*len = 0;
	head(&b, "ihala_sessions", "gauge", "Authenticated sessions of the agency.");
	for (i = 0; i < n; i++) {
		int64_t v = atomic_load_explicit(&M.slots[i].sessions, memory_order_relaxed);

		if (v == 0 && !atomic_load_explicit(&M.slots[i].configured, memory_order_relaxed)) {
			continue;
		}
		bprintf(&b, "ihala_sessions{agency=\"");
		label_value(&b, M.slots[i].id);
		bprintf(&b, "\"} %lld\n", (long long)v);
	}
	render_store(&b, n);
	render_counter(&b, "ihala_submissions_total", "Submit frames received.",
	               LOAD(M.submissions));
	head(&b, "ihala_receipts_total", "counter", "Receipts sent, by status.");
	for (i = 1; i < N_STATUS; i++) {
		bprintf(&b, "ihala_receipts_total{status=\"%s\"} %llu\n", status_names[i],
		        (unsigned long long)LOAD(M.receipts[i]));
	}
	head(&b, "ihala_refusals_total", "counter", "Refused submissions, by error code.");
	for (i = 1; i < N_CODES; i++) {
		uint64_t v = LOAD(M.refusals[i]);

		if (v != 0) {
			bprintf(&b, "ihala_refusals_total{code=\"");
			label_value(&b, ihala_errname(-(int)i));
			bprintf(&b, "\"} %llu\n", (unsigned long long)v);
		}
	}
	render_counter(&b, "ihala_deliveries_total", "Deliver frames sent (redeliveries included).",
	               LOAD(M.deliveries));
	render_counter(&b, "ihala_delivery_acks_total", "Delivery acks received.", LOAD(M.acks));
	render_counter(&b, "ihala_overdue_referrals_total", "Referrals marked overdue.",
	               LOAD(M.overdue));
	render_counter(&b, "ihala_erasures_total",
	               "Erasures of sealed parts (by a referrer, or the retention period).",
	               LOAD(M.erasures));
	head(&b, "ihala_reloads_total", "counter", "SIGHUP reloads, applied or refused.");
	bprintf(&b, "ihala_reloads_total{result=\"applied\"} %llu\n",
	        (unsigned long long)LOAD(M.reloads[0]));
	bprintf(&b, "ihala_reloads_total{result=\"refused\"} %llu\n",
	        (unsigned long long)LOAD(M.reloads[1]));
	render_hist(&b, &M.batch);
	render_hist(&b, &M.commit);
	ck = LOAD(M.ckpt_ms);
	if (ck != 0) {
		uint64_t now = clock_wall_ms();

		head(&b, "ihala_checkpoint_age_seconds", "gauge",
		     "Seconds since this process last signed a checkpoint.");
		bprintf(&b, "ihala_checkpoint_age_seconds %.3f\n",
		        now > ck ? (double)(now - ck) / 1000.0 : 0.0);
		head(&b, "ihala_checkpoint_signed_size", "gauge",
		     "Tree size of the checkpoint this process signed last.");
		bprintf(&b, "ihala_checkpoint_signed_size %llu\n",
		        (unsigned long long)LOAD(M.ckpt_size));
	}
	if (LOAD(M.crl_next_s) != 0) {
		head(&b, "ihala_crl_next_update_seconds", "gauge",
		     "nextUpdate of the CRL in force (Unix time): past it every handshake fails.");
		bprintf(&b, "ihala_crl_next_update_seconds %lld\n", (long long)LOAD(M.crl_next_s));
	}
	if (M.start_s != 0) {
		head(&b, "ihala_start_time_seconds", "gauge",
		     "Start of the metrics endpoint (Unix time).");
		bprintf(&b, "ihala_start_time_seconds %llu\n", (unsigned long long)M.start_s);
	}
	if (b.err != 0) {
		free(b.p);
		return b.err;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

/* ---- HTTP ---- */

static mhd_result
reply(struct MHD_Connection *c, unsigned code, char *body, size_t len, int owned)
{
	struct MHD_Response *resp;
	mhd_result rc;

	resp = owned ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
	             : MHD_create_response_from_buffer(len, body, MHD_RESPMEM_PERSISTENT);
	if (resp == NULL) {
		if (owned) {
			free(body);
		}
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
	                        code == MHD_HTTP_OK ? "text/plain; version=0.0.4; charset=utf-8"
	                                            : "text/plain; charset=utf-8");
	if (code == MHD_HTTP_METHOD_NOT_ALLOWED) {
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	}
	rc = MHD_queue_response(c, code, resp);
	MHD_destroy_response(resp);
	return rc;
}

static mhd_result
on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
           const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	static char not_allowed[] = "only GET and HEAD\n";
	static char not_found[] = "not found; the metrics are at /metrics\n";
	static char failed[] = "cannot render the metrics\n";
	char *body;
	size_t len;

	(void)cls;
	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)con_cls;
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, not_allowed, strlen(not_allowed), 0);
	}
	if (strcmp(url, "/metrics") != 0) {
		return reply(c, MHD_HTTP_NOT_FOUND, not_found, strlen(not_found), 0);
	}
	if (metrics_render(&body, &len) != 0) {
		return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, failed, strlen(failed), 0);
	}
	return reply(c, MHD_HTTP_OK, body, len, 1);
}

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n > 0 && msg[n - 1] == '\n') {
		msg[--n] = '\0';
	}
	log_warnx("metrics: %s", msg);
}

/* tcp://HOST:PORT into a socket address; '*' is every IPv4 address. */
static int
parse_endpoint(const char *ep, struct sockaddr_storage *ss, int *v6)
{
	struct addrinfo hints, *res = NULL;
	char host[300];
	const char *h, *colon, *port;
	size_t hl;
	int rc;

	if (strncmp(ep, "tcp://", 6) != 0) {
		return IHALA_EINVAL;
	}
	h = ep + 6;
	colon = strrchr(h, ':');
	if (colon == NULL || colon == h) {
		return IHALA_EINVAL;
	}
	port = colon + 1;
	hl = (size_t)(colon - h);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(host)) {
		return IHALA_EINVAL;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if (strcmp(host, "*") == 0) {
		hints.ai_family = AF_INET;
		hints.ai_flags |= AI_PASSIVE;
		rc = getaddrinfo(NULL, port, &hints, &res);
	} else {
		hints.ai_family = AF_UNSPEC;
		rc = getaddrinfo(host, port, &hints, &res);
	}
	if (rc != 0 || res == NULL) {
		log_warnx("metrics: cannot resolve '%s': %s", ep, gai_strerror(rc));
		return IHALA_EINVAL;
	}
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*v6 = res->ai_family == AF_INET6;
	freeaddrinfo(res);
	return 0;
}

int
metrics_start(const char *endpoint, struct store *store)
{
	struct sockaddr_storage ss;
	/* poll(), not MHD's default select(): a broker with a thousand sessions holds descriptors
	 * past FD_SETSIZE, and select() cannot watch those (every scrape was dropped). */
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG;
	int v6 = 0, err;

	if (endpoint == NULL) {
		return 0;
	}
	if (M.daemon != NULL) {
		return IHALA_EINVAL;
	}
	err = parse_endpoint(endpoint, &ss, &v6);
	if (err != 0) {
		return err;
	}
	if (v6) {
		flags |= MHD_USE_IPv6;
	}
	M.store = store;
	M.start_s = clock_wall_ms() / 1000;
	/* The logger first, so that MHD never writes to stderr itself. */
	M.daemon = MHD_start_daemon(
	    flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_LISTENING_ADDRESS_REUSE,
	    (unsigned)1, MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_CONNECTIONS,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_TIMEOUT_S, MHD_OPTION_END);
	if (M.daemon == NULL) {
		log_warnx("metrics: cannot listen on %s (is the port in use?)", endpoint);
		M.store = NULL;
		return IHALA_EIO;
	}
	log_info("metrics: serving GET /metrics on %s", endpoint);
	return 0;
}

void
metrics_stop(void)
{
	if (M.daemon != NULL) {
		MHD_stop_daemon(M.daemon);
		M.daemon = NULL;
	}
	M.store = NULL;
}

int
metrics_port(void)
{
	const union MHD_DaemonInfo *di;

	if (M.daemon == NULL) {
		return 0;
	}
	di = MHD_get_daemon_info(M.daemon, MHD_DAEMON_INFO_BIND_PORT);
	return di != NULL ? (int)di->port : 0;
}
