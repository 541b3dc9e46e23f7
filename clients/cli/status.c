/* status.c - `ihala status` and `ihala list`: a referral's state and whole history, the
 * node's referrals; the node's journal of what it sent and received fills in the details. */
#define _GNU_SOURCE /* strptime, timegm */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "render.h"
#include "error.h"
#include "pbjson.h"
#include "suggest.h"
#include "table.h"
#include "view.h"

static const char status_usage[] =
    "usage: ihala status REFERRAL_ID\n"
    "\n"
    "Ask the broker for the current state and the history of a referral this agency is\n"
    "party to (auditors: any referral), and print it as JSON on stdout:\n"
    "  {\"referralId\":..,\"referrer\":..,\"recipient\":..,\"status\":\"accepted\",\n"
    "   "
    "\"priority\":..,\"deadlineMs\":..,\"history\":[{\"seq\":..,\"brokerTimeMs\":..,\"sender\":..,"
    "\n"
    "   \"status\":..,\"what\":..,\"envelope\":{...}},...]}\n"
    "A history item this node sent or took from its inbox carries what was said: the\n"
    "\"envelope\" (decline reason and text, note, business status, outcome) or the broker's\n"
    "\"event\", from the node's journal (items of other nodes, or from before the journal\n"
    "existed, have none).\n"
    "\n"
    "  -h, --help           this help\n"
    "\n"
    "Exit: 0 ok, 1 refused (UNKNOWN_REFERRAL, NOT_PARTY), 2 usage, 3 broker unreachable,\n"
    "4 local error.\n";

/* ---- the same names as the log entries (inbox, audit replay and export) ---- */

/* A copy of obj (borrowed) with its keys renamed by the pairs of names (old, new, ...,
 * NULL), in the same order; NULL when out of memory. */
static json_t *
renamed(json_t *obj, const char *const *names)
{
	json_t *out = json_object(), *v;
	const char *k, *nk;
	size_t i;

	if (out == NULL) {
		return NULL;
	}
	json_object_foreach(obj, k, v)
	{
		nk = k;
		for (i = 0; names[i] != NULL; i += 2) {
			if (strcmp(k, names[i]) == 0) {
				nk = names[i + 1];
				break;
			}
		}
		if (json_object_set(out, nk, v) != 0) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

/* The history items of a ReferralState say "brokerTimeMs" and "sender", as log entries do. */
static void
history_names(json_t *state)
{
	static const char *const names[] = {"timeMs", "brokerTimeMs", "agency", "sender", NULL};
	json_t *hist = json_object_get(state, "history"), *it, *n;
	size_t i;

	json_array_foreach(hist, i, it)
	{
		if ((n = renamed(it, names)) != NULL) {
			json_array_set_new(hist, i, n);
		}
	}
}

/* ---- the journal ---- */

void
cli_journal(struct cli *cli, uint64_t seq, json_t *line)
{
	const char *rid = render_line_referral(line);
	char *text;
	int err;

	if (rid == NULL || seq == 0 || cli->client == NULL) {
		return;
	}
	if ((text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL) {
		return;
	}
	if ((err = ihala_journal_put(cli->client, rid, seq, text)) != 0) {
		cli_warnx("cannot keep seq %llu in the node's journal: %s", (unsigned long long)seq,
		          ihala_strerror(err));
	}
	free(text);
}

/* history item seq -> the journal's "envelope" / "event" */
static int
detail_cb(void *arg, const char *rid, uint64_t seq, const char *json)
{
	json_t *hist = arg, *it, *rec, *v;
	size_t i;

	(void)rid;
	json_array_foreach(hist, i, it)
	{
		if (json_integer_value(json_object_get(it, "seq")) != (json_int_t)seq) {
			continue;
		}
		if ((rec = json_loads(json, 0, NULL)) == NULL) {
			return 0;
		}
		if ((v = json_object_get(rec, "envelope")) != NULL) {
			json_object_set(it, "envelope", v);
		} else if ((v = json_object_get(rec, "event")) != NULL) {
			json_object_set(it, "event", v);
		}
		json_decref(rec);
		break;
	}
	return 0;
}

static void
add_details(struct cli *cli, const char *rid, json_t *state)
{
	json_t *hist = json_object_get(state, "history");
	int err;

	if (json_is_array(hist) &&
	    (err = ihala_journal_iter(cli->client, rid, detail_cb, hist)) != 0) {
		cli_warnx("status: the node's journal cannot be read: %s", ihala_strerror(err));
	}
}

int
cmd_status(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	Ihala__V2__ReferralState *st = NULL;
	const char *rid;
	json_t *j = NULL;
	int ch, rc, err;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (ch == 'h') {
			fputs(status_usage, stdout);
			return CLI_OK;
		}
		cli_bad_option("status", ch, argv, longopts);
		return CLI_USAGE;
	}
	if (optind >= argc) {
		cli_warnx("status: REFERRAL_ID is missing");
		fprintf(stderr, "Try 'ihala status --help'.\n");
		return CLI_USAGE;
	}
	rid = argv[optind++];
	if (optind < argc) {
		cli_warnx("status: unexpected argument '%s'", argv[optind]);
		return CLI_USAGE;
	}
	if (!id_valid(rid)) {
		cli_warnx("status: invalid referral id '%s' (1..64 printable ASCII characters, no "
		          "spaces)",
		          rid);
		return CLI_USAGE;
	}
	if ((rc = cli_connect(cli, 1, NULL)) != CLI_OK) {
		return rc;
	}
	if ((err = ihala_query(cli->client, rid, cli_timeout(cli), &st)) != 0) {
		return cli_fail(cli, "status", err);
	}
	err = pbjson_to_json(&st->base, 0, &j);
	ihala_state_free(st);
	if (err != 0) {
		return cli_fail(cli, "status", err);
	}
	/* the request id is this session's bookkeeping, not part of the referral */
	json_object_del(j, "requestId");
	history_names(j);
	add_details(cli, rid, j);
	if (cli_human(cli)) {
		rc = view_status(j) == 0 ? CLI_OK : CLI_LOCAL;
	} else {
		rc = cli_print_json(j) == 0 ? CLI_OK : CLI_LOCAL;
	}
	json_decref(j);
	return rc;
}

/* ---- list ---- */

static const char list_usage[] =
    "usage: ihala list [--state STATE] [--overdue] [--since DATE]\n"
    "\n"
    "The referrals this node sent or took from its inbox (its journal), each asked of the\n"
    "broker and printed as one JSON line, in referral id order:\n"
    "  {\"referralId\":..,\"referrer\":..,\"recipient\":..,\"status\":..,\"priority\":..,\n"
    "   \"deadlineMs\":..,\"overdue\":..,\"createdMs\":..,\"lastSeq\":..}\n"
    "\n"
    "  -s, --state STATE    only those in STATE (requested, received, accepted, declined,\n"
    "                       in-progress, on-hold, completed, failed, cancelled)\n"
    "  -o, --overdue        only those past their response deadline\n"
    "  -S, --since DATE     only those created at or after DATE (YYYY-MM-DD, UTC, or epoch ms)\n"
    "  -h, --help           this help\n"
    "\n"
    "Exit: 0 ok (also when none matches), 2 usage, 3 broker unreachable, 4 local error.\n";

/* DATE: YYYY-MM-DD (UTC midnight) or epoch milliseconds. */
static int
parse_since(const char *s, uint64_t *ms)
{
	struct tm tm;
	char *end;
	unsigned long long v;

	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%d", &tm);
	if (end != NULL && *end == '\0') {
		*ms = (uint64_t)timegm(&tm) * 1000u;
		return 0;
	}
	if (s[0] < '0' || s[0] > '9') {
		return -1;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0') {
		return -1;
	}
	*ms = v;
	return 0;
}

static const char *const list_heads[] = {"REFERRAL", "STATUS",  "PRIORITY", "FROM",
                                         "TO",       "CREATED", "DEADLINE", ""};

/* One referral of list as a table row (for people). 0 or -1. */
static int
list_row(struct table *t, json_t *j)
{
	char created[32], deadline[32];
	const char *cells[8];

	cells[0] = json_string_value(json_object_get(j, "referralId"));
	cells[1] = json_string_value(json_object_get(j, "status"));
	cells[2] = json_string_value(json_object_get(j, "priority"));
	cells[3] = json_string_value(json_object_get(j, "referrer"));
	cells[4] = json_string_value(json_object_get(j, "recipient"));
	cells[5] = table_time((uint64_t)json_integer_value(json_object_get(j, "createdMs")),
	                      created, sizeof(created));
	cells[6] = table_time((uint64_t)json_integer_value(json_object_get(j, "deadlineMs")),
	                      deadline, sizeof(deadline));
	cells[7] = json_is_true(json_object_get(j, "overdue")) ? "overdue" : "";
	return table_add(t, cells);
}

int
cmd_list(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"state", required_argument, NULL, 's'},
	    {"overdue", no_argument, NULL, 'o'},
	    {"since", required_argument, NULL, 'S'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *state = NULL;
	struct table *tbl = NULL;
	char **ids = NULL;
	uint64_t since = 0;
	int ch, rc, err, overdue = 0;
	size_t i, n = 0;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":s:oS:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			state = optarg;
			break;
		case 'o':
			overdue = 1;
			break;
		case 'S':
			if (parse_since(optarg, &since) != 0) {
				cli_warnx("list: invalid --since '%s' (YYYY-MM-DD or epoch "
				          "milliseconds)",
				          optarg);
				return CLI_USAGE;
			}
			break;
		case 'h':
			fputs(list_usage, stdout);
			return CLI_OK;
		default:
			cli_bad_option("list", ch, argv, longopts);
			return CLI_USAGE;
		}
	}
	if (optind < argc) {
		cli_warnx("list: unexpected argument '%s'", argv[optind]);
		return CLI_USAGE;
	}
	if (state != NULL && strcmp(state, "rejected") == 0) {
		state = "declined"; /* the state's name before 0.2 */
	}
	if (state != NULL) {
		const ProtobufCEnumValue *ev = NULL;
		char name[64];

		/* "in-progress" -> TASK_STATUS_IN_PROGRESS */
		if (strlen(state) < 40) {
			snprintf(name, sizeof(name), "TASK_STATUS_%s", state);
			for (i = 0; name[i] != '\0'; i++) {
				name[i] = name[i] == '-' ? '_'
				                         : (char)(name[i] >= 'a' && name[i] <= 'z'
				                                      ? name[i] - 'a' + 'A'
				                                      : name[i]);
			}
			ev = protobuf_c_enum_descriptor_get_value_by_name(
			    &ihala__v2__task_status__descriptor, name);
		}
		if (ev == NULL || ev->value == 0 || strcmp(state, "overdue") == 0) {
			const ProtobufCEnumDescriptor *ed = &ihala__v2__task_status__descriptor;
			unsigned best = SUGGEST_FAR;
			char cand[64], near[64] = "";

			for (i = 0; i < ed->n_values; i++) {
				if (pbjson_enum_to_name(ed, ed->values[i].value, cand,
				                        sizeof(cand)) == 0 &&
				    suggest_near(state, cand, &best)) {
					snprintf(near, sizeof(near), "%s", cand);
				}
			}
			if (near[0] != '\0') {
				cli_warnx("list: unknown state '%s' (did you mean '%s'?)", state,
				          near);
			} else {
				cli_warnx("list: unknown state '%s' (requested, received, "
				          "accepted, declined, in-progress, on-hold, completed, "
				          "failed, cancelled)",
				          state);
			}
			return CLI_USAGE;
		}
	}
	if ((rc = cli_connect(cli, 1, NULL)) != CLI_OK) {
		return rc;
	}
	if (cli_human(cli) && (tbl = table_new(8, list_heads)) == NULL) {
		return cli_fail(cli, "list", IHALA_ENOMEM);
	}
	if ((err = ihala_journal_referrals(cli->client, &ids, &n)) != 0) {
		rc = cli_fail(cli, "list", err);
		goto out;
	}
	for (i = 0; i < n && rc == CLI_OK; i++) {
		Ihala__V2__ReferralState *st = NULL;
		json_t *j = NULL, *h, *first, *last;
		uint64_t created;
		const char *sname;

		if ((err = ihala_query(cli->client, ids[i], cli_timeout(cli), &st)) != 0) {
			if (cli_exit_code(err) == CLI_REFUSED) {
				continue; /* e.g. a referral refused by the broker: it has none */
			}
			rc = cli_fail(cli, "list", err);
			break;
		}
		err = pbjson_to_json(&st->base, 0, &j);
		ihala_state_free(st);
		if (err != 0) {
			rc = cli_fail(cli, "list", err);
			break;
		}
		h = json_object_get(j, "history");
		first = json_array_get(h, 0);
		last = json_array_get(h, json_array_size(h) - 1);
		created = (uint64_t)json_integer_value(json_object_get(first, "timeMs"));
		/* createdMs is the broker time of the referral's first entry */
		sname = json_string_value(json_object_get(j, "status"));
		if ((state == NULL || (sname != NULL && strcmp(sname, state) == 0)) &&
		    (!overdue || json_is_true(json_object_get(j, "overdue"))) && created >= since) {
			json_object_set_new(j, "createdMs", json_integer((json_int_t)created));
			json_object_set(j, "lastSeq", json_object_get(last, "seq"));
			json_object_del(j, "requestId");
			json_object_del(j, "history");
			if (json_object_get(j, "overdue") == NULL) {
				json_object_set_new(j, "overdue", json_false());
			}
			if (tbl != NULL) {
				if (list_row(tbl, j) != 0) {
					rc = cli_fail(cli, "list", IHALA_ENOMEM);
				}
			} else if (cli_print_json(j) != 0) {
				rc = CLI_LOCAL;
			}
		}
		json_decref(j);
	}
	if (tbl != NULL && rc == CLI_OK && table_print(tbl, stdout) != 0) {
		rc = CLI_LOCAL;
	}
out:
	table_free(tbl);
	ihala_journal_referrals_free(ids, n);
	return rc;
}
