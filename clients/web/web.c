/* web.c - `ihala web`: the clerk's inbox in a browser, served by the node itself (issue 18). */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "accounts.h"
#include "audit.h"
#include "cli.h"
#include "clock.h"
#include "error.h"
#include "hex.h"
#include "merkle.h"
#include "pbjson.h"
#include "render.h"
#include "sessions.h"
#include "web.h"

/* The node loop's wait for a delivery per turn: how long an accept waits to be sent. */
#define TURN_MS 250
/* Referrals still waiting for an answer are asked of the broker again this often, so that
 * "overdue" and answers given by another process of the node show. */
#define REFRESH_MS 30000

static const char web_usage[] =
    "usage: ihala web [--listen ADDRESS:PORT]\n"
    "\n"
    "Serve this node's referrals to a browser: the inbox (those it received and sent, new\n"
    "ones first, then by priority and deadline, overdue ones marked, new ones shown as they\n"
    "come); each referral's page (its whole history, the survivor's record as this node\n"
    "opened it, and the actions its role allows: accept, decline with a reason, progress,\n"
    "outcome, note, onward referral); for DMA a new-referral form with the consent record;\n"
    "for auditors the log's size, its last verified checkpoint, Verify (as 'ihala audit\n"
    "verify' online, with the config's checkpoint_key) and the newest entries' clear parts.\n"
    "Every refusal of the broker is shown in its words.\n"
    "On loopback it prints a link that works once: opening it starts a session (clerk id\n"
    "'local'). Clerks made with 'ihala web-user add NAME' log in with their name and\n"
    "password at /login; what they do carries their pseudonymous clerk id.\n"
    "This process takes the node's deliveries, as 'ihala inbox' does (one at a time).\n"
    "\n"
    "  -l, --listen ADDRESS:PORT  where to listen (default 127.0.0.1:0, any free port);\n"
    "                             beyond loopback (127.0.0.0/8, [::1]) only with HTTPS (the\n"
    "                             config's [web] cert_file and key_file) and at least one\n"
    "                             clerk account\n"
    "  -h, --help                 this help\n"
    "\n"
    "With [web] cert_file and key_file the pages are served over HTTPS (TLS 1.3 or 1.2).\n"
    "Stops on SIGINT or SIGTERM.\n"
    "Exit: 0 ok, 2 usage (also a --listen address beyond loopback without HTTPS or clerk\n"
    "accounts), 3 broker unreachable, 4 local error (another process takes the deliveries,\n"
    "the address is in use, the accounts file or the certificate cannot be read).\n";

int
web_token(char *buf, size_t len)
{
	unsigned char raw[WEB_TOKEN_LEN / 2];

	if (len <= WEB_TOKEN_LEN || RAND_bytes(raw, sizeof(raw)) != 1) {
		return -1;
	}
	hex_encode(raw, sizeof(raw), buf);
	buf[WEB_TOKEN_LEN] = '\0';
	return 0;
}

/*
 * ADDRESS:PORT: an IPv4 address, [IPv6] or "localhost", and a port 0..65535.
 * 0, or -1 (nothing printed).
 */
static int
parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *sl, int *loopback)
{
	char host[64];
	const char *colon, *h;
	uint64_t port;
	size_t hl;

	memset(ss, 0, sizeof(*ss));
	if ((colon = strrchr(s, ':')) == NULL || cli_parse_u64(colon + 1, &port) != 0 ||
	    port > 65535) {
		return -1;
	}
	h = s;
	hl = (size_t)(colon - s);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(host)) {
		return -1;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	if (strcmp(host, "localhost") == 0) {
		snprintf(host, sizeof(host), "127.0.0.1");
	}
	if (s[0] == '[') {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1) {
			return -1;
		}
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		*sl = sizeof(*a6);
		*loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &a4->sin_addr) != 1) {
			return -1;
		}
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		*sl = sizeof(*a4);
		*loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
	}
	return 0;
}

/* Bind and listen; w->host gets "ADDRESS:PORT" with the port bound. The fd, or -1. */
static int
open_listener(struct web *w, const struct sockaddr_storage *ss, socklen_t sl, const char *spec,
              const char *server_name)
{
	struct sockaddr_storage got;
	socklen_t gl = sizeof(got);
	char addr[INET6_ADDRSTRLEN];
	int fd, on = 1, port;

	if ((fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		cli_warnx("web: socket: %s", strerror(errno));
		return -1;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (bind(fd, (const struct sockaddr *)ss, sl) != 0 || listen(fd, 64) != 0 ||
	    getsockname(fd, (struct sockaddr *)&got, &gl) != 0) {
		cli_warnx("web: cannot listen on '%s': %s", spec, strerror(errno));
		close(fd);
		return -1;
	}
	if (got.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&got;

		inet_ntop(AF_INET6, &a6->sin6_addr, addr, sizeof(addr));
		port = ntohs(a6->sin6_port);
		snprintf(w->host, sizeof(w->host), "[%s]:%d", addr, port);
	} else {
		const struct sockaddr_in *a4 = (const struct sockaddr_in *)&got;

		inet_ntop(AF_INET, &a4->sin_addr, addr, sizeof(addr));
		port = ntohs(a4->sin_port);
		snprintf(w->host, sizeof(w->host), "%s:%d", addr, port);
	}
	/* the other name the pages answer to: the config's server_name, else localhost */
	snprintf(w->host_alt, sizeof(w->host_alt), "%s:%d",
	         server_name != NULL ? server_name : "localhost", port);
	return fd;
}

/* ---- the model: one JSON object per referral, in the inbox's order (row_cmp) ---- */

/* A JSON number or a string of digits (pbjson writes 64-bit integers either way). */
static uint64_t
num(json_t *v)
{
	if (json_is_integer(v)) {
		return (uint64_t)json_integer_value(v);
	}
	if (json_is_string(v)) {
		return strtoull(json_string_value(v), NULL, 10);
	}
	return 0;
}

static void
set_str(json_t *row, const char *key, json_t *v)
{
	if (json_is_string(v)) {
		json_object_set_new(row, key, json_string(json_string_value(v)));
	}
}

/* The referral's journal: every line (seq order), and its own record (who sent it to whom,
 * and the referral, opened). */
struct found {
	json_t *referral;
	json_t *line;
	json_t *lines;
};

static int
find_referral(void *arg, const char *rid, uint64_t seq, const char *json)
{
	struct found *f = arg;
	json_t *line, *r;

	(void)rid;
	(void)seq;
	if ((line = json_loads(json, 0, NULL)) == NULL) {
		return 0;
	}
	r = json_object_get(json_object_get(line, "envelope"), "referral");
	if (f->referral == NULL && json_is_object(r)) {
		f->referral = json_incref(r);
		f->line = json_incref(line);
	}
	if (f->lines != NULL) {
		json_array_append(f->lines, line);
	}
	json_decref(line);
	return 0;
}

/* The journal's line of `seq`, else NULL (borrowed). */
static json_t *
line_of(json_t *lines, uint64_t seq)
{
	json_t *it;
	size_t i;

	json_array_foreach(lines, i, it)
	{
		if (num(json_object_get(it, "seq")) == seq) {
			return it;
		}
	}
	return NULL;
}

static int
by_seq(const void *a, const void *b)
{
	uint64_t x = num(json_object_get(*(json_t *const *)a, "seq")),
	         y = num(json_object_get(*(json_t *const *)b, "seq"));

	return x < y ? -1 : x > y;
}

/* What a journal line tells of a timeline item: its kind, the envelope or event (as the node
 * opened it) and why it could not be opened, if so. */
static void
item_details(json_t *item, json_t *l)
{
	set_str(item, "kind", json_object_get(l, "kind"));
	if (json_object_get(l, "envelope") != NULL) {
		json_object_set(item, "envelope", json_object_get(l, "envelope"));
	}
	if (json_object_get(l, "event") != NULL) {
		json_object_set(item, "event", json_object_get(l, "event"));
	}
	set_str(item, "openError", json_object_get(l, "openError"));
}

/*
 * The referral's timeline: the broker's history (`hist`, may be NULL when it could not be
 * asked), each item with what the node's journal says of it (its envelope, opened, or the
 * broker's event), and the journal's lines the history does not have; in seq order. Items:
 * {"seq", "timeMs", "from", "what", "status", "kind", "envelope" | "event" | "openError"}.
 */
static json_t *
timeline(json_t *hist, json_t *lines)
{
	json_t *out = json_array(), *it, *l, *item;
	size_t i, n;
	json_t **vec;

	if (out == NULL) {
		return NULL;
	}
	json_array_foreach(hist, i, it)
	{
		if ((item = json_object()) == NULL) {
			continue;
		}
		json_object_set_new(item, "seq",
		                    json_integer((json_int_t)num(json_object_get(it, "seq"))));
		json_object_set_new(item, "timeMs",
		                    json_integer((json_int_t)num(json_object_get(it, "timeMs"))));
		set_str(item, "from", json_object_get(it, "agency"));
		set_str(item, "what", json_object_get(it, "what"));
		set_str(item, "status", json_object_get(it, "status"));
		if ((l = line_of(lines, num(json_object_get(it, "seq")))) != NULL) {
			item_details(item, l);
		}
		json_array_append_new(out, item);
	}
	json_array_foreach(lines, i, l)
	{
		uint64_t seq = num(json_object_get(l, "seq"));
		size_t k;
		int seen = 0;

		json_array_foreach(hist, k, it)
		{
			if (num(json_object_get(it, "seq")) == seq) {
				seen = 1;
				break;
			}
		}
		if (seen || (item = json_object()) == NULL) {
			continue;
		}
		json_object_set_new(item, "seq", json_integer((json_int_t)seq));
		json_object_set_new(
		    item, "timeMs",
		    json_integer((json_int_t)num(json_object_get(l, "brokerTimeMs"))));
		set_str(item, "from", json_object_get(l, "sender"));
		item_details(item, l);
		json_array_append_new(out, item);
	}
	/* seq order (jansson has no sort) */
	n = json_array_size(out);
	if (n > 1 && (vec = calloc(n, sizeof(*vec))) != NULL) {
		for (i = 0; i < n; i++) {
			vec[i] = json_incref(json_array_get(out, i));
		}
		qsort(vec, n, sizeof(*vec), by_seq);
		json_array_clear(out);
		for (i = 0; i < n; i++) {
			json_array_append_new(out, vec[i]);
		}
		free(vec);
	}
	return out;
}

/* Still waiting for this node's or the other's answer: what the clerk looks at first. */
static int
row_new(json_t *row)
{
	const char *s = json_string_value(json_object_get(row, "status"));

	return s == NULL || strcmp(s, "requested") == 0 || strcmp(s, "received") == 0;
}

static int
row_prio(json_t *row)
{
	const char *p = json_string_value(json_object_get(row, "priority"));

	if (p == NULL) {
		return 3;
	}
	return strcmp(p, "emergency") == 0 ? 0 : strcmp(p, "urgent") == 0 ? 1 : 2;
}

/* The inbox's order: new referrals first, then by priority, then the nearest deadline (none
 * last), then the newest. < 0 when a comes before b. */
static int
row_cmp(json_t *a, json_t *b)
{
	uint64_t da = num(json_object_get(a, "deadlineMs")),
	         db = num(json_object_get(b, "deadlineMs"));
	uint64_t ca = num(json_object_get(a, "createdMs")),
	         cb = num(json_object_get(b, "createdMs"));
	uint64_t sa = num(json_object_get(a, "lastSeq")), sb = num(json_object_get(b, "lastSeq"));

	if (row_new(a) != row_new(b)) {
		return row_new(a) ? -1 : 1;
	}
	if (row_prio(a) != row_prio(b)) {
		return row_prio(a) - row_prio(b);
	}
	if (da != db) {
		return da == 0 ? 1 : db == 0 ? -1 : da < db ? -1 : 1;
	}
	if (ca != cb) {
		return ca > cb ? -1 : 1;
	}
	return sa == sb ? 0 : sa > sb ? -1 : 1;
}

/* Insert or replace `row` (taken) in w->rows, in the inbox's order (row_cmp). */
static void
model_put(struct web *w, json_t *row)
{
	const char *rid = json_string_value(json_object_get(row, "referralId"));
	json_t *it;
	size_t i, at;

	pthread_mutex_lock(&w->mu);
	json_array_foreach(w->rows, i, it)
	{
		if (strcmp(json_string_value(json_object_get(it, "referralId")), rid) == 0) {
			if (json_equal(it, row)) {
				/* nothing new: the pages are not told */
				pthread_mutex_unlock(&w->mu);
				json_decref(row);
				return;
			}
			json_array_remove(w->rows, i);
			break;
		}
	}
	at = json_array_size(w->rows);
	json_array_foreach(w->rows, i, it)
	{
		if (row_cmp(row, it) < 0) {
			at = i;
			break;
		}
	}
	json_array_insert_new(w->rows, at, row);
	w->gen++;
	pthread_cond_broadcast(&w->changed);
	pthread_mutex_unlock(&w->mu);
}

static int
model_has(struct web *w, const char *rid)
{
	json_t *it;
	size_t i;
	int has = 0;

	pthread_mutex_lock(&w->mu);
	json_array_foreach(w->rows, i, it)
	{
		if (strcmp(json_string_value(json_object_get(it, "referralId")), rid) == 0) {
			has = 1;
			break;
		}
	}
	pthread_mutex_unlock(&w->mu);
	return has;
}

static void
set_broker_down(struct web *w, int down)
{
	pthread_mutex_lock(&w->mu);
	w->broker_down = down;
	pthread_mutex_unlock(&w->mu);
}

/*
 * Ask the broker for one referral's state, add what the journal says of it (the survivor's
 * name is in the referral only this node kept) and put it in the model. A referral the broker
 * does not know (refused when it was sent) is left out; when the broker cannot be reached (or
 * `ask` is 0) a referral already shown is left as it is. Returns 1 when the broker could not be
 * reached, else 0.
 */
static int
refresh_one(struct web *w, struct cli *cli, const char *rid, int ask)
{
	Ihala__V2__ReferralState *st = NULL;
	struct found f = {NULL, NULL, json_array()};
	json_t *row, *j = NULL, *h, *surv, *tl;
	int err;

	if ((row = json_object()) == NULL) {
		return 0;
	}
	json_object_set_new(row, "referralId", json_string(rid));
	(void)ihala_journal_iter(cli->client, rid, find_referral, &f);
	if (f.referral != NULL) {
		surv = json_object_get(f.referral, "survivor");
		set_str(row, "name", json_object_get(surv, "name"));
		set_str(row, "caseId", json_object_get(surv, "caseId"));
		set_str(row, "priority", json_object_get(f.referral, "priority"));
		set_str(row, "referrer", json_object_get(f.line, "sender"));
		set_str(row, "recipient", json_object_get(f.line, "recipient"));
		set_str(row, "parent", json_object_get(f.referral, "parentReferralId"));
		/* the survivor's record as this node opened it, for the referral's page */
		json_object_set(row, "referral", f.referral);
		json_object_set_new(
		    row, "createdMs",
		    json_integer((json_int_t)num(json_object_get(f.line, "brokerTimeMs"))));
		json_object_set_new(row, "lastSeq",
		                    json_integer((json_int_t)num(json_object_get(f.line, "seq"))));
	}
	err = ask ? ihala_query(cli->client, rid, cli_timeout(cli), &st) : IHALA_EUNREACHABLE;
	if (err == 0 && pbjson_to_json(&st->base, 0, &j) == 0) {
		set_broker_down(w, 0);
		set_str(row, "referrer", json_object_get(j, "referrer"));
		set_str(row, "recipient", json_object_get(j, "recipient"));
		set_str(row, "status", json_object_get(j, "status"));
		set_str(row, "priority", json_object_get(j, "priority"));
		json_object_set_new(
		    row, "deadlineMs",
		    json_integer((json_int_t)num(json_object_get(j, "deadlineMs"))));
		json_object_set_new(row, "overdue",
		                    json_boolean(json_is_true(json_object_get(j, "overdue"))));
		h = json_object_get(j, "history");
		json_object_set_new(
		    row, "createdMs",
		    json_integer((json_int_t)num(json_object_get(json_array_get(h, 0), "timeMs"))));
		json_object_set_new(row, "lastSeq",
		                    json_integer((json_int_t)num(json_object_get(
		                        json_array_get(h, json_array_size(h) - 1), "seq"))));
		set_str(row, "parent", json_object_get(j, "parentReferralId"));
		if ((tl = timeline(h, f.lines)) != NULL) {
			json_object_set_new(row, "timeline", tl);
		}
		json_decref(j);
		model_put(w, row);
	} else if (err != 0 && cli_is_transport(err)) {
		set_broker_down(w, 1);
		if (!model_has(w, rid)) {
			if ((tl = timeline(NULL, f.lines)) != NULL) {
				json_object_set_new(row, "timeline", tl);
			}
			model_put(w, row);
		} else {
			json_decref(row);
		}
	} else {
		json_decref(row);
	}
	ihala_state_free(st);
	json_decref(f.referral);
	json_decref(f.line);
	json_decref(f.lines);
	return err != 0 && cli_is_transport(err);
}

/* Whether a shown referral still waits for an answer (it may turn overdue, or be answered
 * by another process of the node). */
static int
waiting(struct web *w, const char *rid)
{
	const char *s = NULL;
	json_t *it;
	size_t i;

	pthread_mutex_lock(&w->mu);
	json_array_foreach(w->rows, i, it)
	{
		if (strcmp(json_string_value(json_object_get(it, "referralId")), rid) == 0) {
			s = json_string_value(json_object_get(it, "status"));
			break;
		}
	}
	pthread_mutex_unlock(&w->mu);
	return s == NULL || strcmp(s, "requested") == 0 || strcmp(s, "received") == 0;
}

/* Every referral of the journal (all: at start), or those still waiting for an answer. */
static void
refresh_all(struct web *w, struct cli *cli, int all)
{
	char **ids = NULL;
	size_t i, n = 0;
	int err, ask = 1;

	if ((err = ihala_journal_referrals(cli->client, &ids, &n)) != 0) {
		cli_warnx("web: the node's journal cannot be read: %s", ihala_strerror(err));
	}
	for (i = 0; i < n && !cli_stop; i++) {
		if (all || waiting(w, ids[i])) {
			/* once the broker did not answer, not one timeout per referral: what the
			 * journal says is shown, the next turn asks again */
			if (refresh_one(w, cli, ids[i], ask)) {
				ask = 0;
			}
		}
	}
	ihala_journal_referrals_free(ids, n);
}

/* ---- what a page asks: a job ---- */

/* Submit the page's envelope (JSON, borrowed) as `ihala accept`, `decline`, `progress`,
 * `outcome`, `note` or `refer` would: libihala checks and seals it, the journal keeps it.
 * Fills text (the referral id, or why not) and returns 0 or a code from error.h. */
static int
job_submit(struct web *w, struct cli *cli, json_t *ej, const char *rid, const char *clerk,
           char *text, size_t tl)
{
	ProtobufCMessage *m = NULL;
	Ihala__V2__Envelope *env;
	struct ihala_receipt rcpt;
	char id[ID_MAX + 1], why[256];
	json_t *line, *e = NULL;
	int err;

	if ((err = pbjson_from_json(&ihala__v2__envelope__descriptor, ej, &m, why, sizeof(why))) !=
	    0) {
		snprintf(text, tl, "%s", why);
		return err;
	}
	env = (Ihala__V2__Envelope *)m;
	ihala_new_message_id(id, sizeof(id));
	if (env->message_id != NULL && env->message_id != protobuf_c_empty_string) {
		free(env->message_id);
	}
	if ((env->message_id = strdup(id)) == NULL) {
		env->message_id = (char *)protobuf_c_empty_string;
		protobuf_c_message_free_unpacked(m, NULL);
		return IHALA_ENOMEM;
	}
	env->client_time_ms = clock_wall_ms();
	/* who did it, by pseudonym: the page's clerk, never what the form said */
	if (env->clerk_id != NULL && env->clerk_id != protobuf_c_empty_string) {
		free(env->clerk_id);
	}
	env->clerk_id = (char *)protobuf_c_empty_string;
	if (id_clerk_valid(clerk) && (env->clerk_id = strdup(clerk)) == NULL) {
		env->clerk_id = (char *)protobuf_c_empty_string;
		protobuf_c_message_free_unpacked(m, NULL);
		return IHALA_ENOMEM;
	}
	memset(&rcpt, 0, sizeof(rcpt));
	err = ihala_submit(cli->client, env, cli_timeout(cli), &rcpt);
	if (err == 0) {
		snprintf(text, tl, "%s", rid);
		/* the journal line `ihala` keeps of what it sent (submit.c's journal_sent) */
		if ((line = json_object()) != NULL && pbjson_to_json(&env->base, 0, &e) == 0) {
			json_object_set_new(line, "seq", json_integer((json_int_t)rcpt.seq));
			json_object_set_new(line, "kind", json_string("submission"));
			json_object_set_new(line, "sender", json_string(cli->cfg->agency));
			json_object_set_new(line, "recipient",
			                    json_string(env->to != NULL ? env->to : ""));
			json_object_set_new(line, "envelope", e);
			cli_journal(cli, rcpt.seq, line);
		}
		json_decref(line);
		cli_info(cli, "web: sent %s on %s (seq %llu)",
		         env->kind_case == IHALA__V2__ENVELOPE__KIND_NOTE       ? "a note"
		         : env->kind_case == IHALA__V2__ENVELOPE__KIND_REFERRAL ? "a referral"
		                                                                : "a status update",
		         rid, (unsigned long long)rcpt.seq);
		(void)refresh_one(w, cli, rid, 1);
	} else if (rcpt.status == IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED) {
		snprintf(text, tl, "%s: %s", ihala_errname(err),
		         rcpt.text[0] != '\0' ? rcpt.text : ihala_strerror(err));
		cli_warnx("web: on %s: refused: %s", rid, text);
	} else if (cli_is_transport(err)) {
		snprintf(text, tl, "%s", rid);
		set_broker_down(w, 1);
	} else {
		snprintf(text, tl, "%s", ihala_errmsg(cli->client));
		if (text[0] == '\0') {
			snprintf(text, tl, "%s: %s", ihala_errname(err), ihala_strerror(err));
		}
		cli_warnx("web: on %s: %s", rid, text);
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return err;
}

/* The newest log entries' clear parts, for the auditor's page (a ring of the last ones). */
struct tail {
	json_t *entries;
	uint64_t size;
};

static int
tail_cb(void *arg, uint64_t seq, const uint8_t *entry, size_t len)
{
	struct tail *t = arg;
	json_t *j = NULL, *e;

	t->size = seq;
	if (render_entry_bytes(entry, len, &j) != 0) {
		return cli_stop ? 1 : 0;
	}
	/* the clear part only: what the sealed part commits to is its hash */
	if ((e = json_object_get(j, "envelope")) != NULL) {
		json_object_del(e, "sealed");
	}
	json_array_append_new(t->entries, j);
	if (json_array_size(t->entries) > WEB_AUDIT_ENTRIES) {
		json_array_remove(t->entries, 0);
	}
	return cli_stop ? 1 : 0;
}

/* The auditor's Verify: `ihala audit verify` as it runs online, then the log's newest
 * entries. The result goes to w->audit. */
static int
job_verify(struct web *w, struct cli *cli, char *text, size_t tl)
{
	struct audit_verify_result res;
	struct tail t = {json_array(), 0};
	char root[2 * MERKLE_HASH_LEN + 1];
	json_t *a;
	int rc, err;

	if (cli->cfg->checkpoint_key == NULL) {
		snprintf(text, tl,
		         "no checkpoint_key in the node's config: the checkpoints' "
		         "signatures cannot be checked");
		json_decref(t.entries);
		return IHALA_ECONFIG;
	}
	if ((err = ihala_connect(cli->client, cli_timeout(cli))) != 0) {
		snprintf(text, tl, "%s", ihala_errmsg(cli->client));
		json_decref(t.entries);
		return err;
	}
	rc = cli_audit_verify_online(cli, cli->cfg->checkpoint_key, NULL, &res);
	err = rc < 0 ? rc : rc == CLI_OK ? 0 : IHALA_ETAMPER;
	snprintf(text, tl, "%s", res.problem);
	hex_encode(res.root, MERKLE_HASH_LEN, root);
	if (rc >= 0 && rc != CLI_OK && rc != CLI_VERIFY) {
		err = IHALA_EINTERNAL;
	}
	(void)ihala_replay(
	    cli->client, res.entries > WEB_AUDIT_ENTRIES ? res.entries - WEB_AUDIT_ENTRIES + 1 : 1,
	    0, 0, tail_cb, &t, cli_timeout(cli));
	if ((a = json_object()) != NULL) {
		json_object_set_new(a, "ok", json_boolean(rc == CLI_OK));
		json_object_set_new(a, "entries", json_integer((json_int_t)res.entries));
		json_object_set_new(
		    a, "size",
		    json_integer((json_int_t)(t.size > res.entries ? t.size : res.entries)));
		json_object_set_new(a, "checkpointSize",
		                    json_integer((json_int_t)res.last_checkpoint));
		json_object_set_new(a, "origin", json_string(res.origin));
		json_object_set_new(a, "root", json_string(rc == CLI_OK ? root : ""));
		json_object_set_new(a, "problem", json_string(res.problem));
		json_object_set_new(a, "timeMs", json_integer((json_int_t)clock_wall_ms()));
		json_object_set_new(a, "log", t.entries);
		t.entries = NULL;
		pthread_mutex_lock(&w->mu);
		json_decref(w->audit);
		w->audit = a;
		w->gen++;
		pthread_cond_broadcast(&w->changed);
		pthread_mutex_unlock(&w->mu);
	}
	json_decref(t.entries);
	if (rc == CLI_OK) {
		cli_info(cli, "web: verified %llu entries, checkpoint of size %llu",
		         (unsigned long long)res.entries, (unsigned long long)res.last_checkpoint);
	} else {
		cli_warnx("web: audit verify: %s", res.problem);
	}
	return err;
}

static void
run_job(struct web *w, struct cli *cli)
{
	char rid[ID_MAX + 1], clerk[ID_CLERK_MAX + 1], text[WEB_FLASH_MAX];
	enum web_job_kind kind;
	json_t *env;
	int err;

	pthread_mutex_lock(&w->mu);
	if (w->job.state != WEB_JOB_PENDING) {
		pthread_mutex_unlock(&w->mu);
		return;
	}
	kind = w->job.kind;
	env = w->job.envelope;
	w->job.envelope = NULL;
	snprintf(rid, sizeof(rid), "%s", w->job.rid);
	snprintf(clerk, sizeof(clerk), "%s", w->job.clerk);
	pthread_mutex_unlock(&w->mu);

	text[0] = '\0';
	if (kind == WEB_JOB_SUBMIT && env != NULL) {
		err = job_submit(w, cli, env, rid, clerk, text, sizeof(text));
	} else if (kind == WEB_JOB_VERIFY) {
		err = job_verify(w, cli, text, sizeof(text));
	} else {
		err = IHALA_EINTERNAL;
	}
	json_decref(env);
	pthread_mutex_lock(&w->mu);
	w->job.state = WEB_JOB_DONE;
	w->job.err = err;
	snprintf(w->job.text, sizeof(w->job.text), "%s", text);
	pthread_cond_broadcast(&w->job_cv);
	pthread_mutex_unlock(&w->mu);
}

/* The agency's role, once the broker said it. */
static void
note_role(struct web *w, struct cli *cli)
{
	const Ihala__V2__Welcome *wel;

	if (w->role != 0 || cli->client == NULL || (wel = ihala_welcome(cli->client)) == NULL) {
		return;
	}
	pthread_mutex_lock(&w->mu);
	w->role = (int)wel->role;
	w->gen++;
	pthread_cond_broadcast(&w->changed);
	pthread_mutex_unlock(&w->mu);
}

/* ---- the command ---- */

/* Take one delivery if one comes within TURN_MS: keep it in the journal, acknowledge it,
 * show its referral. CLI_OK, or the exit code to stop with. */
static int
take_delivery(struct web *w, struct cli *cli, int *reported)
{
	struct ihala_delivery d;
	const char *r;
	char *rid = NULL;
	json_t *j = NULL;
	int err;

	memset(&d, 0, sizeof(d));
	err = ihala_next_delivery(cli->client, TURN_MS, &d);
	if (err == IHALA_ETIMEDOUT) {
		return CLI_OK;
	}
	if (err != 0 && cli_stop) {
		return CLI_OK; /* SIGINT or SIGTERM ended the wait: a normal stop */
	}
	if (err != 0) {
		if (cli_is_transport(err)) {
			if (!*reported) {
				cli_warnx("web: %s; still trying", ihala_errmsg(cli->client));
				*reported = 1;
				set_broker_down(w, 1);
			}
			/* the library reconnects on the next call; not in a busy loop */
			usleep(TURN_MS * 1000);
			return CLI_OK;
		}
		return cli_fail(cli, "web", err);
	}
	if (*reported) {
		*reported = 0;
		set_broker_down(w, 0);
	}
	if ((err = render_delivery(&d, &j)) != 0) {
		cli_warnx("web: delivery %llu cannot be shown: %s; it is not acknowledged",
		          (unsigned long long)d.seq, ihala_strerror(err));
		ihala_delivery_release(&d);
		return CLI_LOCAL;
	}
	cli_journal(cli, d.seq, j);
	if ((r = render_line_referral(j)) != NULL) {
		rid = strdup(r);
	}
	json_decref(j);
	err = ihala_ack(cli->client, d.seq);
	ihala_delivery_release(&d);
	if (err != 0) {
		free(rid);
		return cli_fail(cli, "web", err);
	}
	if (rid != NULL) {
		(void)refresh_one(w, cli, rid, 1);
		free(rid);
	}
	return CLI_OK;
}

int
cmd_web(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct sockaddr_storage ss;
	socklen_t sl = 0;
	const char *listen_spec = "127.0.0.1:0";
	struct httpd *httpd = NULL;
	struct web w;
	struct accounts acc;
	char users[4096], why[512], *cert = NULL, *key = NULL;
	size_t certlen = 0, keylen = 0, naccounts;
	uint64_t last_refresh, refresh_ms = REFRESH_MS;
	int ch, rc, fd, loopback = 0, reported = 0, audited = 0;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":l:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'l':
			listen_spec = optarg;
			break;
		case 'h':
			fputs(web_usage, stdout);
			return CLI_OK;
		default:
			cli_bad_option("web", ch, argv, longopts);
			return CLI_USAGE;
		}
	}
	if (optind < argc) {
		cli_warnx("web: unexpected argument '%s'", argv[optind]);
		fprintf(stderr, "Try 'ihala web --help'.\n");
		return CLI_USAGE;
	}
	if (parse_listen(listen_spec, &ss, &sl, &loopback) != 0) {
		cli_warnx("web: invalid --listen '%s' (ADDRESS:PORT: 127.0.0.1:8080, [::1]:8080)",
		          listen_spec);
		return CLI_USAGE;
	}
	if ((rc = cli_load_config(cli)) != CLI_OK) {
		return rc;
	}
	if (!loopback && cli->cfg->web_cert_file == NULL) {
		/* the pages show survivors' data and the session cookie is the clerk's key */
		cli_warnx(
		    "web: refusing to listen on '%s' without TLS: the pages carry survivors' "
		    "data; set [web] cert_file and key_file in %s (and add clerks with 'ihala "
		    "web-user add NAME'), or listen on loopback (127.0.0.1, [::1]) and reach it "
		    "through an SSH tunnel",
		    listen_spec, cli->cfg->path);
		return CLI_USAGE;
	}
	if ((size_t)snprintf(users, sizeof(users), "%s/%s", cli->cfg->data_dir, ACCOUNTS_FILE) >=
	    sizeof(users)) {
		cli_warnx("web: data_dir '%s' is too long", cli->cfg->data_dir);
		return CLI_LOCAL;
	}
	if (accounts_load(users, &acc, why, sizeof(why)) != 0) {
		cli_warnx("web: %s", why);
		return CLI_LOCAL;
	}
	naccounts = acc.n;
	accounts_release(&acc);
	if (!loopback && naccounts == 0) {
		/* beyond loopback nobody gets the one-time link: a clerk logs in by name */
		cli_warnx("web: refusing to listen on '%s' without clerk accounts: add one with "
		          "'ihala web-user add NAME' (they log in with a name and a password)",
		          listen_spec);
		return CLI_USAGE;
	}
	if (cli->cfg->web_cert_file != NULL &&
	    (cli_read_file(cli->cfg->web_cert_file, 1 << 20, &cert, &certlen) != 0 ||
	     cli_read_file(cli->cfg->web_key_file, 1 << 20, &key, &keylen) != 0)) {
		cli_warnx("web: cannot read [web] cert_file '%s' or key_file '%s': %s",
		          cli->cfg->web_cert_file, cli->cfg->web_key_file, strerror(errno));
		rc = CLI_LOCAL;
		goto free_pem;
	}
	if (catalog_load() != 0) {
		rc = CLI_LOCAL;
		goto free_pem;
	}

	memset(&w, 0, sizeof(w));
	pthread_mutex_init(&w.mu, NULL);
	pthread_mutex_init(&w.hash_mu, NULL);
	pthread_cond_init(&w.changed, NULL);
	pthread_cond_init(&w.job_cv, NULL);
	fd = -1;
	w.tls = cert != NULL;
	w.tls_cert = cert;
	w.tls_key = key;
	w.users_path = users;
	w.accounts = naccounts > 0;
	if ((w.rows = json_array()) == NULL ||
	    (w.sessions = sessions_new(cli->cfg->web_idle_ms)) == NULL ||
	    web_token(w.login_form, sizeof(w.login_form)) != 0 ||
	    (loopback && web_token(w.login_token, sizeof(w.login_token)) != 0)) {
		cli_warnx("web: out of memory or randomness");
		rc = CLI_LOCAL;
		goto out;
	}

	cli_catch_signals();
	rc = cli_connect(cli, 0, NULL);
	if (rc == CLI_UNREACHABLE) {
		cli_warnx("web: %s; still trying", ihala_errmsg(cli->client));
		w.broker_down = reported = 1;
	} else if (rc != CLI_OK) {
		goto out;
	}
	rc = CLI_OK;
	w.agency = cli->cfg->agency;
	w.job_timeout_ms = cli_timeout(cli) + 5000;
	if ((fd = open_listener(&w, &ss, sl, listen_spec, cli->cfg->web_server_name)) < 0) {
		rc = CLI_LOCAL;
		goto out;
	}
	refresh_all(&w, cli, 1);
	if ((httpd = httpd_start(&w, fd)) == NULL) {
		cli_warnx("web: the HTTP server did not start");
		rc = CLI_LOCAL;
		goto out;
	}
	fd = -1; /* the server's now */
	if (loopback) {
		/* the link is the key to the node's data: stdout only, for the clerk who ran us */
		printf("%s://%s/login?token=%s\n", w.tls ? "https" : "http", w.host, w.login_token);
		cli_info(
		    cli,
		    "web: serving the inbox of '%s' on %s://%s/; open the link above (it works "
		    "once)%s",
		    w.agency, w.tls ? "https" : "http", w.host,
		    w.accounts ? ", or log in as a clerk at /login" : "");
	} else {
		printf("https://%s/login\n",
		       cli->cfg->web_server_name != NULL ? w.host_alt : w.host);
		cli_info(cli, "web: serving the inbox of '%s' on https://%s/; clerks log in there",
		         w.agency, w.host);
	}
	fflush(stdout);

	last_refresh = clock_wall_ms();
	{
		/* for tests: a shorter wait before "overdue" shows */
		const char *e = getenv("IHALA_WEB_REFRESH_MS");
		uint64_t v;

		if (e != NULL && cli_parse_u64(e, &v) == 0 && v >= 100 && v <= 3600000) {
			refresh_ms = v;
		}
	}
	while (!cli_stop && rc == CLI_OK) {
		rc = take_delivery(&w, cli, &reported);
		note_role(&w, cli);
		if (w.role == IHALA__V2__ROLE__ROLE_AUDITOR && !audited) {
			/* the auditor's page shows the log's size and checkpoint from the start */
			char text[WEB_FLASH_MAX];

			audited = 1;
			(void)job_verify(&w, cli, text, sizeof(text));
		}
		run_job(&w, cli);
		if (clock_wall_ms() - last_refresh >= refresh_ms) {
			refresh_all(&w, cli, 0);
			last_refresh = clock_wall_ms();
		}
	}
out:
	pthread_mutex_lock(&w.mu);
	w.stopping = 1;
	pthread_cond_broadcast(&w.changed);
	pthread_cond_broadcast(&w.job_cv);
	pthread_mutex_unlock(&w.mu);
	httpd_stop(httpd);
	if (fd >= 0) {
		close(fd);
	}
	json_decref(w.rows);
	sessions_free(w.sessions);
	json_decref(w.audit);
	json_decref(w.job.envelope);
	catalog_free();
	pthread_cond_destroy(&w.job_cv);
	pthread_cond_destroy(&w.changed);
	pthread_mutex_destroy(&w.hash_mu);
	pthread_mutex_destroy(&w.mu);
free_pem:
	if (key != NULL) {
		OPENSSL_cleanse(key, keylen);
	}
	free(key);
	free(cert);
	return rc;
}
