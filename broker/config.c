/* config.c - the broker's option table, loading broker.conf and cross-checking it. */
#define _GNU_SOURCE /* asprintf */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <pwd.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "error.h"
#include "hex.h"
#include "id.h"
#include "log.h"
#include "suggest.h"

#define KB (1024ULL)
#define MB (1024ULL * KB)
#define GB (1024ULL * MB)
#define TB (1024ULL * GB)
#define SEC (1000ULL)
#define MIN (60ULL * SEC)
#define HOUR (60ULL * MIN)
#define DAY (24ULL * HOUR)

#define B(f) offsetof(struct broker_config, f)
#define A(f) offsetof(struct agency_config, f)

static const struct conf_choice roles[] = {
    {"dma", AGENCY_ROLE_DMA},
    {"ministry", AGENCY_ROLE_MINISTRY},
    {"ngo", AGENCY_ROLE_NGO},
    {"auditor", AGENCY_ROLE_AUDITOR},
    {NULL, 0},
};

static const struct {
	const char *name;
	unsigned bit;
} kinds[] = {
    {"referral", POLICY_KIND_REFERRAL},
    {"status", POLICY_KIND_STATUS},
    {"outcome", POLICY_KIND_OUTCOME},
    {"note", POLICY_KIND_NOTE},
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

/* ---- validators ---------------------------------------------------------- */

static int
v_user(void *field, char *why, size_t len)
{
	const char *u = *(char **)field;

	if (getpwnam(u) == NULL) {
		snprintf(why, len, "no such user on this system");
		return -1;
	}
	return 0;
}

/* C2SP signed-note origin / key name: printable ASCII, no spaces, no '+'. */
static int
v_origin(void *field, char *why, size_t len)
{
	const char *s = *(char **)field;
	size_t n = strlen(s), i;

	if (n > 255) {
		snprintf(why, len, "at most 255 characters");
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (s[i] <= ' ' || s[i] > '~' || s[i] == '+') {
			snprintf(why, len, "printable ASCII without spaces or '+' only");
			return -1;
		}
	}
	return 0;
}

static int
v_cn(void *field, char *why, size_t len)
{
	if (strlen(*(char **)field) > 64) {
		snprintf(why, len, "a certificate CN has at most 64 characters");
		return -1;
	}
	return 0;
}

/* 64 hex digits, or 32 pairs separated by ':'; rewritten as 64 lowercase hex. */
static int
v_fingerprint(void *field, char *why, size_t len)
{
	char *s = *(char **)field;
	size_t n = strlen(s), i, o = 0;
	int colons = strchr(s, ':') != NULL;

	if ((!colons && n != 64) || (colons && n != 95)) {
		snprintf(why, len,
		         "expected a SHA-256 as 64 hex digits, with or without ':' "
		         "between bytes");
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (colons && i % 3 == 2) {
			if (s[i] != ':') {
				snprintf(why, len, "expected ':' between every two hex digits");
				return -1;
			}
			continue;
		}
		if (hex_digit((unsigned char)s[i]) < 0) {
			snprintf(why, len, "'%c' is not a hex digit", s[i]);
			return -1;
		}
		s[o++] = (char)tolower((unsigned char)s[i]);
	}
	s[o] = '\0';
	return 0;
}

/* Splits a list on commas and blanks; calls fn per token (copied, NUL-ended). */
static int
each_token(const char *s, int (*fn)(const char *tok, void *arg), void *arg)
{
	char tok[128];

	while (*s != '\0') {
		size_t n = 0;

		while (*s == ',' || *s == ' ' || *s == '\t') {
			s++;
		}
		while (s[n] != '\0' && s[n] != ',' && s[n] != ' ' && s[n] != '\t') {
			n++;
		}
		if (n == 0) {
			break;
		}
		if (n >= sizeof(tok)) {
			n = sizeof(tok) - 1;
		}
		memcpy(tok, s, n);
		tok[n] = '\0';
		if (fn(tok, arg) != 0) {
			return -1;
		}
		s += n;
		while (*s != '\0' && *s != ',' && *s != ' ' && *s != '\t') {
			s++;
		}
	}
	return 0;
}

struct kinds_acc {
	unsigned bits;
	int none, count;
	char *why;
	size_t len;
};

static int
kind_token(const char *tok, void *arg)
{
	struct kinds_acc *k = arg;
	size_t i;

	k->count++;
	if (strcmp(tok, "none") == 0) {
		k->none = 1;
		return 0;
	}
	for (i = 0; i < NKINDS; i++) {
		if (strcmp(tok, kinds[i].name) == 0) {
			k->bits |= kinds[i].bit;
			return 0;
		}
	}
	snprintf(k->why, k->len,
	         "unknown message kind '%s' (expected referral, status, outcome, note or none)",
	         tok);
	return -1;
}

static int
parse_kinds(const char *s, unsigned *bits, char *why, size_t len)
{
	struct kinds_acc k = {0, 0, 0, why, len};

	if (each_token(s, kind_token, &k) != 0) {
		return -1;
	}
	if (k.count == 0) {
		snprintf(why, len, "empty list");
		return -1;
	}
	if (k.none && k.count > 1) {
		snprintf(why, len, "'none' cannot be combined with message kinds");
		return -1;
	}
	*bits = k.bits;
	return 0;
}

static int
v_may_send(void *field, char *why, size_t len)
{
	unsigned bits;

	return parse_kinds(*(char **)field, &bits, why, len);
}

static int
parse_yesno(const char *s, int *out)
{
	if (strcmp(s, "yes") == 0 || strcmp(s, "true") == 0 || strcmp(s, "on") == 0 ||
	    strcmp(s, "1") == 0) {
		*out = 1;
		return 0;
	}
	if (strcmp(s, "no") == 0 || strcmp(s, "false") == 0 || strcmp(s, "off") == 0 ||
	    strcmp(s, "0") == 0) {
		*out = 0;
		return 0;
	}
	return -1;
}

static int
v_yesno(void *field, char *why, size_t len)
{
	int v;

	if (parse_yesno(*(char **)field, &v) != 0) {
		snprintf(why, len, "expected yes or no");
		return -1;
	}
	return 0;
}

struct ids_acc {
	int star, count;
	char *why;
	size_t len;
};

static int
id_token(const char *tok, void *arg)
{
	struct ids_acc *a = arg;

	a->count++;
	if (strcmp(tok, "*") == 0) {
		a->star = 1;
		return 0;
	}
	if (!id_agency_valid(tok, strlen(tok))) {
		snprintf(a->why, a->len, "'%s' is not an agency id ([a-z0-9_-], 1..%d characters)",
		         tok, ID_AGENCY_MAX);
		return -1;
	}
	return 0;
}

static int
v_may_send_to(void *field, char *why, size_t len)
{
	struct ids_acc a = {0, 0, why, len};

	if (each_token(*(char **)field, id_token, &a) != 0) {
		return -1;
	}
	if (a.count == 0) {
		snprintf(why, len, "empty list");
		return -1;
	}
	if (a.star && a.count > 1) {
		snprintf(why, len, "'*' cannot be combined with agency ids");
		return -1;
	}
	return 0;
}

/* A list of paths separated by blanks: at least one. */
static int
v_paths(void *field, char *why, size_t len)
{
	const char *s = *(char **)field;

	if (s[strspn(s, " \t")] == '\0') {
		snprintf(why, len, "expected one or more file paths separated by spaces");
		return -1;
	}
	return 0;
}

/* ---- the table ------------------------------------------------------------ */

static const struct conf_option options[] = {
    /* section, name, type, flags, default, min, max, choices, validator, offset, help */
    {"broker", "listen", CONF_ENDPOINT, 0, "tcp://127.0.0.1:7450", 0, 0, NULL, NULL,
     B(broker.listen), "ZeroMQ ROUTER endpoint the broker binds"},
    {"broker", "data_dir", CONF_PATH_DIR, CONF_CREATE, "/var/lib/ihala", 0, 0, NULL, NULL,
     B(broker.data_dir), "LMDB directory (created at start-up when missing)"},
    {"broker", "map_size", CONF_SIZE, 0, "1G", 1 * MB, 1 * TB, NULL, NULL, B(broker.map_size),
     "initial LMDB map size"},
    {"broker", "map_size_max", CONF_SIZE, 0, "1T", 1 * MB, 1 * TB, NULL, NULL,
     B(broker.map_size_max), "largest map size auto_grow may reach"},
    {"broker", "auto_grow", CONF_BOOL, 0, "yes", 0, 0, NULL, NULL, B(broker.auto_grow),
     "grow the LMDB map when it is full"},
    {"broker", "disk_reserve", CONF_SIZE, 0, "64M", 0, 1 * TB, NULL, NULL, B(broker.disk_reserve),
     "free space kept under data_dir: submissions are refused below it (0: off)"},
    {"broker", "log_level", CONF_ENUM, CONF_RELOAD, "info", 0, 0, log_level_names, NULL,
     B(broker.log_level), "error, warn, info or debug"},
    {"broker", "log_origin", CONF_STRING, 0, "ihala.local/log", 0, 0, NULL, v_origin,
     B(broker.log_origin), "origin line of signed checkpoints"},
    {"broker", "user", CONF_STRING, 0, NULL, 0, 0, NULL, v_user, B(broker.user),
     "user to drop privileges to after start-up"},
    {"broker", "metrics_listen", CONF_ENDPOINT, 0, NULL, 0, 0, NULL, NULL, B(broker.metrics_listen),
     "Prometheus text metrics endpoint (off when unset)"},

    {"tls", "ca_file", CONF_PATH_FILE, CONF_REQUIRED | CONF_RELOAD, NULL, 0, 0, NULL, NULL,
     B(tls.ca_file), "federation CA certificate (PEM)"},
    {"tls", "crl_file", CONF_PATH_FILE, CONF_RELOAD, NULL, 0, 0, NULL, NULL, B(tls.crl_file),
     "certificate revocation list (PEM), reloaded on SIGHUP"},
    {"tls", "crl_warn_before", CONF_DURATION, CONF_RELOAD, "7d", 0, 365 * DAY, NULL, NULL,
     B(tls.crl_warn_before_ms), "warn this long before the CRL's nextUpdate (0: never)"},
    {"tls", "cert_file", CONF_PATH_FILE, CONF_REQUIRED | CONF_RELOAD, NULL, 0, 0, NULL, NULL,
     B(tls.cert_file), "broker certificate (PEM)"},
    {"tls", "key_file", CONF_PATH_FILE, CONF_REQUIRED | CONF_SECRET | CONF_RELOAD, NULL, 0, 0, NULL,
     NULL, B(tls.key_file), "broker private key (PEM, mode 0600)"},
    {"tls", "server_name", CONF_STRING, CONF_RELOAD, NULL, 0, 0, NULL, conf_valid_hostname,
     B(tls.server_name), "name in the broker certificate clients verify (documentation)"},

    {"limits", "max_frame", CONF_SIZE, 0, "1M", 4 * KB, 16 * MB, NULL, NULL, B(limits.max_frame),
     "largest frame either side may send"},
    {"limits", "max_sessions", CONF_UINT, CONF_RELOAD, "1024", 1, 100000, NULL, NULL,
     B(limits.max_sessions), "sessions at once"},
    {"limits", "max_sessions_per_agency", CONF_UINT, CONF_RELOAD, "64", 1, 100000, NULL, NULL,
     B(limits.max_sessions_per_agency), "of those, authenticated as one agency"},
    {"limits", "max_preauth_sessions", CONF_UINT, CONF_RELOAD, "64", 1, 100000, NULL, NULL,
     B(limits.max_preauth_sessions), "sessions still in the TLS handshake at once"},
    {"limits", "max_preauth_per_address", CONF_UINT, CONF_RELOAD, "32", 1, 100000, NULL, NULL,
     B(limits.max_preauth_per_address),
     "of those, from one IP address (the oldest makes way for a new one)"},
    {"limits", "handshake_timeout", CONF_DURATION, CONF_RELOAD, "10s", 100, 5 * MIN, NULL, NULL,
     B(limits.handshake_timeout_ms), "time allowed to complete the handshake"},
    {"limits", "queue_limit", CONF_UINT, CONF_RELOAD, "100000", 1, 100000000, NULL, NULL,
     B(limits.queue_limit), "undelivered entries per agency before QUEUE_FULL"},
    {"limits", "queue_share", CONF_UINT, CONF_RELOAD, "50", 1, 100, NULL, NULL,
     B(limits.queue_share), "percent of a recipient's queue_limit one sender may fill"},
    {"limits", "referral_rate", CONF_UINT, CONF_RELOAD, "600", 0, 100000000, NULL, NULL,
     B(limits.referral_rate), "messages on one referral per minute (0: no limit)"},
    {"limits", "referral_bytes", CONF_SIZE, CONF_RELOAD, "64M", 0, 1024 * GB, NULL, NULL,
     B(limits.referral_bytes), "message bytes logged on one referral in all (0: no limit)"},
    {"limits", "credit_window", CONF_UINT, CONF_RELOAD, "64", 1, 65536, NULL, NULL,
     B(limits.credit_window), "deliveries sent before waiting for acks"},
    {"limits", "max_inflight", CONF_UINT, CONF_RELOAD, "1024", 1, 65536, NULL, NULL,
     B(limits.max_inflight), "submissions a client may have without receipt"},
    {"limits", "max_inflight_bytes", CONF_SIZE, CONF_RELOAD, "8M", 64 * KB, 1 * GB, NULL, NULL,
     B(limits.max_inflight_bytes), "bytes of submissions a session may have without receipt"},
    {"limits", "out_cap", CONF_SIZE, CONF_RELOAD, "4M", 64 * KB, 1 * GB, NULL, NULL,
     B(limits.out_cap), "TLS output buffered per session before back-pressure"},
    {"limits", "in_cap", CONF_SIZE, CONF_RELOAD, "16M", 128 * KB, 1 * GB, NULL, NULL,
     B(limits.in_cap),
     "TLS input queued per session: past it a session still in its handshake is ended"},
    {"limits", "idle_timeout", CONF_DURATION, CONF_RELOAD, "0", 0, 30 * DAY, NULL, NULL,
     B(limits.idle_timeout_ms), "close sessions idle this long (0: never)"},
    {"limits", "retention", CONF_DURATION, CONF_RELOAD, "0", 0, 100 * 365 * DAY, NULL, NULL,
     B(limits.retention_ms),
     "erase a referral's sealed parts this long after it closes (0: never)"},

    {"commit", "max_batch", CONF_UINT, 0, "1024", 1, 65536, NULL, NULL, B(commit.max_batch),
     "submissions per group commit"},

    {"checkpoint", "key_file", CONF_PATH_FILE, CONF_REQUIRED | CONF_SECRET, NULL, 0, 0, NULL, NULL,
     B(checkpoint.key_file), "Ed25519 checkpoint signing key (PEM, mode 0600)"},
    {"checkpoint", "every_entries", CONF_UINT, 0, "1000", 1, 10000000, NULL, NULL,
     B(checkpoint.every_entries), "sign a checkpoint after this many entries"},
    {"checkpoint", "every_seconds", CONF_DURATION, 0, "10s", 1 * SEC, 1 * DAY, NULL, NULL,
     B(checkpoint.every_ms), "... or after this much time"},

    {"deadlines", "emergency", CONF_DURATION, CONF_RELOAD, "24h", 1 * MIN, 365 * DAY, NULL, NULL,
     B(deadlines.emergency_ms), "response deadline of emergency referrals"},
    {"deadlines", "urgent", CONF_DURATION, CONF_RELOAD, "72h", 1 * MIN, 365 * DAY, NULL, NULL,
     B(deadlines.urgent_ms), "response deadline of urgent referrals"},
    {"deadlines", "normal", CONF_DURATION, CONF_RELOAD, "14d", 1 * MIN, 365 * DAY, NULL, NULL,
     B(deadlines.normal_ms), "response deadline of normal referrals"},

    {"agency.*", "role", CONF_ENUM, CONF_REQUIRED | CONF_RELOAD, NULL, 0, 0, roles, NULL, A(role),
     "dma, ministry, ngo or auditor"},
    {"agency.*", "cn", CONF_STRING, CONF_RELOAD, NULL, 0, 0, NULL, v_cn, A(cn),
     "certificate CN (default: the agency id)"},
    {"agency.*", "fingerprint", CONF_STRING, CONF_RELOAD, NULL, 0, 0, NULL, v_fingerprint,
     A(fingerprint), "pinned SHA-256 of the agency certificate"},
    {"agency.*", "name", CONF_STRING, CONF_RELOAD, NULL, 0, 0, NULL, NULL, A(name),
     "display name (UTF-8; default: the agency id)"},
    {"agency.*", "may_send", CONF_STRING, CONF_RELOAD, NULL, 0, 0, NULL, v_may_send,
     A(may_send_text), "message kinds it may send (default: its role's)"},
    {"agency.*", "may_open_cases", CONF_STRING, CONF_RELOAD, NULL, 0, 0, NULL, v_yesno,
     A(may_open_cases_text),
     "may send referrals without a parent (default: yes for dma, no for the others)"},
    {"agency.*", "may_send_to", CONF_STRING, CONF_RELOAD, NULL, 0, 0, NULL, v_may_send_to,
     A(may_send_to_text), "agencies it may address, or * (the default)"},
    {"agency.*", "encryption_cert", CONF_STRING, CONF_RELOAD, NULL, 0, 0, NULL, v_paths,
     A(encryption_cert_text),
     "its encryption certificate files (PEM), several during a rotation (the directory)"},
};
#define NOPTIONS (sizeof(options) / sizeof(options[0]))

const struct conf_option *
broker_config_options(size_t *n)
{
	*n = NOPTIONS;
	return options;
}

size_t
broker_config_warn_restart_only(const struct broker_config *old, const struct broker_config *cfg)
{
	size_t i, n = 0;

	for (i = 0; i < NOPTIONS; i++) {
		const struct conf_option *o = &options[i];

		/* [agency.*] rows are all CONF_RELOAD (config_test checks it) */
		if ((o->flags & CONF_RELOAD) || strchr(o->section, '*') != NULL ||
		    conf_equal(o, old, cfg)) {
			continue;
		}
		log_warnx("reload: '%s.%s' changed; the new value takes effect at the next start",
		          o->section, o->name);
		n++;
	}
	return n;
}

const char *
broker_config_role_name(int role)
{
	const struct conf_choice *c;

	for (c = roles; c->name != NULL; c++) {
		if (c->value == role) {
			return c->name;
		}
	}
	return "unknown";
}

unsigned
broker_config_role_sends(int role)
{
	return policy_role_default((Ihala__V2__Role)role);
}

/* ---- loading ---------------------------------------------------------------- */

struct loadctx {
	struct agency_config **tmp; /* one allocation each while parsing: bases must not move */
	size_t n, cap;
};

static void *
open_agency(void *user, const char *section, const char *suffix, char *why, size_t len)
{
	struct loadctx *ctx = user;
	struct agency_config *a;

	(void)section;
	if (!id_agency_valid(suffix, strlen(suffix))) {
		snprintf(why, len, "an agency id is " ID_AGENCY_RULE);
		return NULL;
	}
	if (ctx->n >= BROKER_MAX_AGENCIES) {
		snprintf(why, len, "too many agencies (at most %d)", BROKER_MAX_AGENCIES);
		return NULL;
	}
	if (ctx->n == ctx->cap) {
		size_t cap = ctx->cap ? ctx->cap * 2 : 16;
		struct agency_config **v = realloc(ctx->tmp, cap * sizeof(*v));

		if (v == NULL) {
			snprintf(why, len, "out of memory");
			return NULL;
		}
		ctx->tmp = v;
		ctx->cap = cap;
	}
	a = calloc(1, sizeof(*a));
	if (a == NULL || (a->id = strdup(suffix)) == NULL) {
		free(a);
		snprintf(why, len, "out of memory");
		return NULL;
	}
	ctx->tmp[ctx->n++] = a;
	return a;
}

static void
agency_release(struct agency_config *a)
{
	size_t i;

	conf_release(options, NOPTIONS, "agency.*", a);
	for (i = 0; i < a->may_send_to_count; i++) {
		free(a->may_send_to[i]);
	}
	free(a->may_send_to);
	for (i = 0; i < a->n_enc_certs; i++) {
		free(a->enc_certs[i].path);
		free(a->enc_certs[i].der);
	}
	free(a->enc_certs);
	free(a->id);
}

void
broker_config_free(struct broker_config *cfg)
{
	size_t i;

	if (cfg == NULL) {
		return;
	}
	conf_release(options, NOPTIONS, NULL, cfg);
	for (i = 0; i < cfg->nagencies; i++) {
		agency_release(&cfg->agencies[i]);
	}
	free(cfg->agencies);
	free(cfg->path);
	free(cfg->dir);
	free(cfg);
}

const struct agency_config *
broker_config_find_agency(const struct broker_config *cfg, const char *id)
{
	size_t i;

	for (i = 0; i < cfg->nagencies; i++) {
		if (strcmp(cfg->agencies[i].id, id) == 0) {
			return &cfg->agencies[i];
		}
	}
	return NULL;
}

const struct agency_config *
broker_config_find_cn(const struct broker_config *cfg, const char *cn)
{
	size_t i;

	for (i = 0; i < cfg->nagencies; i++) {
		if (cfg->agencies[i].cn != NULL && strcmp(cfg->agencies[i].cn, cn) == 0) {
			return &cfg->agencies[i];
		}
	}
	return NULL;
}

struct to_acc {
	const struct broker_config *cfg;
	struct agency_config *a;
	struct conf_errors *errs;
	const struct conf_file *cf;
	int line;
	int nomem;
};

static int
to_token(const char *tok, void *arg)
{
	struct to_acc *t = arg;
	struct agency_config *a = t->a;
	char hint[64] = "";
	unsigned best = SUGGEST_FAR;
	size_t i;
	char **v;

	if (strcmp(tok, "*") == 0) {
		a->may_send_to_any = 1;
		return 0;
	}
	if (broker_config_find_agency(t->cfg, tok) == NULL) {
		for (i = 0; i < t->cfg->nagencies; i++) {
			if (suggest_near(tok, t->cfg->agencies[i].id, &best)) {
				snprintf(hint, sizeof(hint), " (did you mean '%s'?)",
				         t->cfg->agencies[i].id);
			}
		}
		conf_report(t->errs, t->cf, t->line,
		            "unknown agency '%s' in 'may_send_to' of [agency.%s]%s", tok, a->id,
		            hint);
		return 0; /* go on: report every unknown id */
	}
	for (i = 0; i < a->may_send_to_count; i++) {
		if (strcmp(a->may_send_to[i], tok) == 0) {
			return 0;
		}
	}
	v = realloc(a->may_send_to, (a->may_send_to_count + 1) * sizeof(*v));
	if (v == NULL) {
		t->nomem = 1;
		return -1;
	}
	a->may_send_to = v;
	if ((v[a->may_send_to_count] = strdup(tok)) == NULL) {
		t->nomem = 1;
		return -1;
	}
	a->may_send_to_count++;
	return 0;
}

/*
 * Reads the certificates of one encryption_cert file of agency a (every PEM block of it must
 * be a CERTIFICATE that decodes, and there must be one at least) and appends them to
 * a->enc_certs. A refusal is reported at `line`; returns 0, or IHALA_ENOMEM.
 */
static int
load_enc_file(struct agency_config *a, const char *path, const struct conf_file *cf, int line,
              struct conf_errors *errs)
{
	BIO *bio;
	char *name = NULL, *header = NULL;
	unsigned char *data = NULL;
	long dlen;
	size_t found = 0;
	int rc = 0;

	ERR_clear_error();
	if ((bio = BIO_new_file(path, "r")) == NULL) {
		conf_report(errs, cf, line,
		            "cannot read encryption certificate '%s' of agency '%s' (check that "
		            "the file exists and is readable)",
		            path, a->id);
		ERR_clear_error();
		return 0;
	}
	while (PEM_read_bio(bio, &name, &header, &data, &dlen) == 1) {
		const unsigned char *p = data;
		X509 *x = NULL;
		struct agency_enc_cert *v;

		if (strcmp(name, "CERTIFICATE") != 0) {
			conf_report(
			    errs, cf, line,
			    "'%s' (encryption certificate of agency '%s') holds a PEM '%s', "
			    "not a certificate",
			    path, a->id, name);
			goto done;
		}
		if (dlen <= 0 || (x = d2i_X509(NULL, &p, dlen)) == NULL || p != data + dlen) {
			X509_free(x);
			conf_report(errs, cf, line,
			            "'%s' (encryption certificate of agency '%s'): certificate %zu "
			            "does not decode as X.509",
			            path, a->id, found + 1);
			goto done;
		}
		X509_free(x);
		if (a->n_enc_certs >= AGENCY_ENC_CERTS_MAX) {
			conf_report(errs, cf, line,
			            "agency '%s' lists more than %d encryption certificates", a->id,
			            AGENCY_ENC_CERTS_MAX);
			goto done;
		}
		v = realloc(a->enc_certs, (a->n_enc_certs + 1) * sizeof(*v));
		if (v == NULL) {
			rc = IHALA_ENOMEM;
			goto done;
		}
		a->enc_certs = v;
		v += a->n_enc_certs;
		if ((v->path = strdup(path)) == NULL) {
			rc = IHALA_ENOMEM;
			goto done;
		}
		v->der = data;
		v->len = (size_t)dlen;
		data = NULL;
		a->n_enc_certs++;
		found++;
		OPENSSL_free(name);
		OPENSSL_free(header);
		name = header = NULL;
	}
	if (found == 0) {
		conf_report(errs, cf, line,
		            "'%s' (encryption certificate of agency '%s') is not a PEM certificate "
		            "(no '-----BEGIN CERTIFICATE-----' block)",
		            path, a->id);
	} else if (ERR_GET_REASON(ERR_peek_last_error()) != PEM_R_NO_START_LINE) {
		conf_report(errs, cf, line,
		            "'%s' (encryption certificate of agency '%s'): a malformed PEM block "
		            "after certificate %zu",
		            path, a->id, found);
	}
done:
	OPENSSL_free(name);
	OPENSSL_free(header);
	OPENSSL_free(data);
	BIO_free(bio);
	ERR_clear_error();
	return rc;
}

/* Every file of a's encryption_cert, relative paths against the config file's directory. */
static int
load_enc_certs(struct agency_config *a, const struct conf_file *cf, struct conf_errors *errs)
{
	const char *s = a->encryption_cert_text;
	char sec[16 + ID_AGENCY_MAX];
	int line, rc;

	snprintf(sec, sizeof(sec), "agency.%s", a->id);
	line = conf_line(cf, sec, "encryption_cert");
	while (*s != '\0') {
		size_t n;
		char *path;

		s += strspn(s, " \t");
		if ((n = strcspn(s, " \t")) == 0) {
			break;
		}
		if (s[0] == '/') {
			path = strndup(s, n);
		} else if (asprintf(&path, "%s/%.*s", conf_dir(cf), (int)n, s) < 0) {
			path = NULL;
		}
		if (path == NULL) {
			return IHALA_ENOMEM;
		}
		rc = load_enc_file(a, path, cf, line, errs);
		free(path);
		if (rc != 0) {
			return rc;
		}
		s += n;
	}
	return 0;
}

/* Defaults that depend on other values, and checks across options and agencies. */
static int
finish_agencies(struct broker_config *cfg, const struct conf_file *cf, struct conf_errors *errs)
{
	char sec[16 + ID_AGENCY_MAX];
	size_t i, j;

	if (cfg->nagencies == 0) {
		conf_report(errs, cf, 0, "no agency configured (add an [agency.ID] section)");
		return 0;
	}
	for (i = 0; i < cfg->nagencies; i++) {
		struct agency_config *a = &cfg->agencies[i];

		snprintf(sec, sizeof(sec), "agency.%s", a->id);
		a->line = conf_line(cf, sec, NULL);
		if (a->cn == NULL && (a->cn = strdup(a->id)) == NULL) {
			return IHALA_ENOMEM;
		}
		if (a->name == NULL && (a->name = strdup(a->id)) == NULL) {
			return IHALA_ENOMEM;
		}
		if (a->encryption_cert_text != NULL && load_enc_certs(a, cf, errs) != 0) {
			return IHALA_ENOMEM;
		}
		if (a->fingerprint != NULL && strlen(a->fingerprint) == 64) {
			for (j = 0; j < 32; j++) {
				int hi = hex_digit((unsigned char)a->fingerprint[2 * j]);
				int lo = hex_digit((unsigned char)a->fingerprint[2 * j + 1]);

				if (hi < 0 || lo < 0) {
					/* not hex: the validator reported it */
					memset(a->fingerprint_bin, 0, sizeof(a->fingerprint_bin));
					break;
				}
				a->fingerprint_bin[j] = (unsigned char)(hi << 4 | lo);
			}
		}
		if (a->may_send_text != NULL) {
			char why[160];

			a->may_send_set = 1;
			if (parse_kinds(a->may_send_text, &a->may_send, why, sizeof(why)) != 0) {
				a->may_send = 0; /* already reported by the validator */
			}
		} else {
			a->may_send = broker_config_role_sends(a->role);
		}
		/* Its own option: never derived from may_send, so that writing out a role's
		 * documented may_send default changes nothing. */
		a->may_open_cases = a->role == AGENCY_ROLE_DMA;
		if (a->may_open_cases_text != NULL &&
		    parse_yesno(a->may_open_cases_text, &a->may_open_cases) != 0) {
			a->may_open_cases = 0; /* already reported by the validator */
		}
		if (a->role == AGENCY_ROLE_AUDITOR && a->may_send != 0) {
			conf_report(errs, cf, conf_line(cf, sec, "may_send"),
			            "agency '%s' is an auditor and may not send messages (remove "
			            "'may_send' or set it to none)",
			            a->id);
		}
		if (a->role == AGENCY_ROLE_AUDITOR && a->may_send_to_text != NULL) {
			conf_report(errs, cf, conf_line(cf, sec, "may_send_to"),
			            "agency '%s' is an auditor and may not send messages (remove "
			            "'may_send_to')",
			            a->id);
		}
		for (j = 0; j < i; j++) {
			const struct agency_config *b = &cfg->agencies[j];

			if (strcmp(a->cn, b->cn) == 0) {
				conf_report(
				    errs, cf, conf_line(cf, sec, "cn"),
				    "agency '%s' has the certificate name '%s' of agency '%s' "
				    "(each agency needs its own)",
				    a->id, a->cn, b->id);
			}
			if (a->fingerprint != NULL && b->fingerprint != NULL &&
			    strcmp(a->fingerprint, b->fingerprint) == 0) {
				conf_report(errs, cf, conf_line(cf, sec, "fingerprint"),
				            "agency '%s' pins the same certificate fingerprint as "
				            "agency '%s'",
				            a->id, b->id);
			}
		}
	}
	/* may_send_to names agencies: checked once all are known. */
	for (i = 0; i < cfg->nagencies; i++) {
		struct agency_config *a = &cfg->agencies[i];
		struct to_acc t = {cfg, a, errs, cf, 0, 0};

		snprintf(sec, sizeof(sec), "agency.%s", a->id);
		if (a->may_send_to_text == NULL) {
			a->may_send_to_any = a->role != AGENCY_ROLE_AUDITOR;
			continue;
		}
		t.line = conf_line(cf, sec, "may_send_to");
		if (each_token(a->may_send_to_text, to_token, &t) != 0 && t.nomem) {
			return IHALA_ENOMEM;
		}
	}
	return 0;
}

/* Whether a tcp:// endpoint to bind names every interface ('*', 0.0.0.0, ::). */
static int
every_interface(const char *ep)
{
	char host[64];
	const char *h, *colon;
	size_t hl;
	struct in_addr a4;
	struct in6_addr a6;

	if (ep == NULL || strncmp(ep, "tcp://", 6) != 0) {
		return 0;
	}
	h = ep + 6;
	colon = strrchr(h, ':');
	if (colon == NULL) {
		return 0;
	}
	hl = (size_t)(colon - h);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(host)) {
		return 0;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	if (strcmp(host, "*") == 0) {
		return 1;
	}
	if (inet_pton(AF_INET, host, &a4) == 1) {
		return a4.s_addr == htonl(INADDR_ANY);
	}
	return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_UNSPECIFIED(&a6);
}

/* What is allowed but most likely a mistake: said at -n, at start and at each reload. */
static void
warnings(const struct broker_config *cfg, const struct conf_file *cf)
{
	if (every_interface(cfg->broker.listen)) {
		log_warnx("%s:%d: warning: 'listen = %s' takes connections on every network "
		          "interface; name the address agencies reach (tcp://ADDRESS:PORT) unless "
		          "every interface is meant",
		          conf_path(cf), conf_line(cf, "broker", "listen"), cfg->broker.listen);
	}
	if (every_interface(cfg->broker.metrics_listen)) {
		log_warnx("%s:%d: warning: 'metrics_listen = %s' serves the metrics, without "
		          "authentication, on every network interface; bind it to 127.0.0.1 or an "
		          "internal address",
		          conf_path(cf), conf_line(cf, "broker", "metrics_listen"),
		          cfg->broker.metrics_listen);
	}
}

static void
cross_checks(const struct broker_config *cfg, const struct conf_file *cf, struct conf_errors *errs)
{
	char a[32], b[32];

	if (cfg->broker.map_size != 0 && cfg->broker.map_size_max != 0 &&
	    cfg->broker.map_size_max < cfg->broker.map_size) {
		conf_report(errs, cf, conf_line(cf, "broker", "map_size_max"),
		            "'map_size_max' (%s) is smaller than 'map_size' (%s)",
		            conf_format_size(cfg->broker.map_size_max, a, sizeof(a)),
		            conf_format_size(cfg->broker.map_size, b, sizeof(b)));
	}
	if (cfg->broker.listen != NULL && cfg->broker.metrics_listen != NULL &&
	    strcmp(cfg->broker.listen, cfg->broker.metrics_listen) == 0) {
		conf_report(errs, cf, conf_line(cf, "broker", "metrics_listen"),
		            "'metrics_listen' is the same endpoint as 'listen'");
	}
	if (cfg->limits.max_sessions != 0 && cfg->limits.max_preauth_sessions != 0 &&
	    cfg->limits.max_preauth_sessions > cfg->limits.max_sessions) {
		conf_report(errs, cf, conf_line(cf, "limits", "max_preauth_sessions"),
		            "'max_preauth_sessions' (%llu) is larger than 'max_sessions' (%llu)",
		            (unsigned long long)cfg->limits.max_preauth_sessions,
		            (unsigned long long)cfg->limits.max_sessions);
	}
	if (cfg->limits.out_cap != 0 && cfg->limits.max_frame != 0 &&
	    cfg->limits.out_cap < cfg->limits.max_frame) {
		conf_report(errs, cf, conf_line(cf, "limits", "out_cap"),
		            "'out_cap' (%s) is smaller than 'max_frame' (%s): a frame could never "
		            "be sent",
		            conf_format_size(cfg->limits.out_cap, a, sizeof(a)),
		            conf_format_size(cfg->limits.max_frame, b, sizeof(b)));
	}
	if (cfg->limits.in_cap != 0 && cfg->limits.max_frame != 0 &&
	    cfg->limits.in_cap < cfg->limits.max_frame + 64 * KB) {
		conf_report(errs, cf, conf_line(cf, "limits", "in_cap"),
		            "'in_cap' (%s) is smaller than 'max_frame' (%s) and 64K: a frame could "
		            "never be received",
		            conf_format_size(cfg->limits.in_cap, a, sizeof(a)),
		            conf_format_size(cfg->limits.max_frame, b, sizeof(b)));
	} else if (cfg->limits.in_cap != 0 && cfg->limits.max_inflight_bytes != 0 &&
	           cfg->limits.in_cap <
	               cfg->limits.max_inflight_bytes + cfg->limits.max_frame + 64 * KB) {
		char c[32];

		/* A client keeps within max_inflight_bytes (Welcome tells it); its input waiting
		 * here is never more than that and one frame, which in_cap must hold. */
		conf_report(errs, cf, conf_line(cf, "limits", "in_cap"),
		            "'in_cap' (%s) is smaller than 'max_inflight_bytes' (%s), 'max_frame' "
		            "(%s) and 64K: a client keeping within its window could be cut off",
		            conf_format_size(cfg->limits.in_cap, a, sizeof(a)),
		            conf_format_size(cfg->limits.max_inflight_bytes, b, sizeof(b)),
		            conf_format_size(cfg->limits.max_frame, c, sizeof(c)));
	}
	if (cfg->deadlines.emergency_ms != 0 && cfg->deadlines.urgent_ms != 0 &&
	    cfg->deadlines.emergency_ms > cfg->deadlines.urgent_ms) {
		conf_report(errs, cf, conf_line(cf, "deadlines", "emergency"),
		            "the 'emergency' deadline (%s) is longer than the 'urgent' one (%s)",
		            conf_format_duration(cfg->deadlines.emergency_ms, a, sizeof(a)),
		            conf_format_duration(cfg->deadlines.urgent_ms, b, sizeof(b)));
	}
	if (cfg->deadlines.urgent_ms != 0 && cfg->deadlines.normal_ms != 0 &&
	    cfg->deadlines.urgent_ms > cfg->deadlines.normal_ms) {
		conf_report(errs, cf, conf_line(cf, "deadlines", "urgent"),
		            "the 'urgent' deadline (%s) is longer than the 'normal' one (%s)",
		            conf_format_duration(cfg->deadlines.urgent_ms, a, sizeof(a)),
		            conf_format_duration(cfg->deadlines.normal_ms, b, sizeof(b)));
	}
	if (cfg->tls.key_file != NULL && cfg->checkpoint.key_file != NULL &&
	    strcmp(cfg->tls.key_file, cfg->checkpoint.key_file) == 0) {
		conf_report(errs, cf, conf_line(cf, "checkpoint", "key_file"),
		            "the checkpoint key must not be the TLS key '%s'", cfg->tls.key_file);
	}
}

int
broker_config_load(const char *path, struct broker_config **out, struct conf_errors *errs)
{
	return broker_config_reload(path, 0, out, errs);
}

int
broker_config_reload(const char *path, int keys_kept, struct broker_config **out,
                     struct conf_errors *errs)
{
	struct broker_config *cfg;
	struct conf_file *cf = NULL;
	struct loadctx ctx = {NULL, 0, 0};
	struct conf_spec spec;
	size_t before = conf_errors_count(errs), i;
	int rc, nomem_reported = 0;

	*out = NULL;
	if ((cfg = calloc(1, sizeof(*cfg))) == NULL) {
		rc = IHALA_ENOMEM;
		goto fail;
	}
	memset(&spec, 0, sizeof(spec));
	spec.options = options;
	spec.noptions = NOPTIONS;
	spec.base = cfg;
	spec.open_section = open_agency;
	spec.user = &ctx;
	spec.flags = keys_kept ? CONF_SPEC_SECRETS_KEPT : 0;

	rc = conf_parse(path, &spec, &cf, errs);
	nomem_reported = rc == IHALA_ENOMEM;
	/* The agencies move into one array now that the parser is done with them. */
	if (ctx.n > 0) {
		cfg->agencies = calloc(ctx.n, sizeof(*cfg->agencies));
		if (cfg->agencies == NULL) {
			for (i = 0; i < ctx.n; i++) {
				agency_release(ctx.tmp[i]);
				free(ctx.tmp[i]);
			}
			ctx.n = 0;
			rc = IHALA_ENOMEM;
			goto fail;
		}
		for (i = 0; i < ctx.n; i++) {
			cfg->agencies[i] = *ctx.tmp[i];
			free(ctx.tmp[i]);
		}
		cfg->nagencies = ctx.n;
		ctx.n = 0;
	}
	if (rc == IHALA_ENOMEM || cf == NULL) {
		/* not readable: nothing more to check */
		rc = rc == IHALA_ENOMEM ? rc : IHALA_ECONFIG;
		goto fail;
	}
	if ((cfg->dir = strdup(conf_dir(cf))) == NULL ||
	    (cfg->path = strdup(conf_abspath(cf))) == NULL) {
		rc = IHALA_ENOMEM;
		goto fail;
	}
	rc = finish_agencies(cfg, cf, errs);
	if (rc != 0) {
		goto fail;
	}
	cross_checks(cfg, cf, errs);
	if (conf_errors_count(errs) != before) {
		rc = IHALA_ECONFIG;
		goto fail;
	}
	warnings(cfg, cf);
	conf_file_free(cf);
	free(ctx.tmp);
	*out = cfg;
	return 0;

fail:
	for (i = 0; i < ctx.n; i++) {
		agency_release(ctx.tmp[i]);
		free(ctx.tmp[i]);
	}
	free(ctx.tmp);
	conf_file_free(cf);
	broker_config_free(cfg);
	if (rc == IHALA_ENOMEM && !nomem_reported) {
		conf_errors_add(errs, path, 0, "out of memory");
	}
	return rc != 0 ? rc : IHALA_ECONFIG;
}
