/* outbox.c - `ihala outbox`: what waits to be sent and what the broker refused, retry, drop. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "error.h"
#include "frame.h"
#include "localstore.h"
#include "table.h"

static const char outbox_usage[] =
    "usage: ihala outbox [--json] [--retry MESSAGE_ID | --drop MESSAGE_ID]\n"
    "\n"
    "Try to send what waits in this node's outbox (submitted while the broker was\n"
    "unreachable, or without a receipt yet), then list what still waits and what was\n"
    "rejected. A message the broker refused for good (too large, schema, forbidden, ...)\n"
    "leaves the outbox at once for the rejected list, with its reason, so it never holds\n"
    "up the messages behind it.\n"
    "\n"
    "The first line is {\"waiting\":N,\"sent\":N,\"left\":N} (waiting before the run, sent,\n"
    "left waiting), then one line per message: {\"messageId\",\"state\":\"waiting\"|\"rejected\",\n"
    "\"kind\",\"referralId\",\"bytes\"} and, for a rejected one, \"error\", \"reason\" and\n"
    "\"rejectedTimeMs\". JSON when stdout is not a terminal or with --json, else a table (local\n"
    "times).\n"
    "\n"
    "      --retry MESSAGE_ID  put a rejected message back into the outbox and send it\n"
    "      --drop MESSAGE_ID   forget a rejected or waiting message (nothing is sent)\n"
    "      --json              JSON lines even on a terminal\n"
    "  -h, --help              this help\n"
    "\n"
    "Exit: 0 nothing left waiting, 1 a retried message was refused again, 2 usage or no\n"
    "such message, 3 broker unreachable or messages still waiting, 4 local error.\n";

struct listing {
	int json;
	int failed;
	struct table *table; /* for people */
};

static const char *
kind_name(const Ihala__V2__Envelope *e)
{
	switch (e->kind_case) {
	case IHALA__V2__ENVELOPE__KIND_REFERRAL:
		return "referral";
	case IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE:
		return "status";
	case IHALA__V2__ENVELOPE__KIND_OUTCOME:
		return "outcome";
	case IHALA__V2__ENVELOPE__KIND_NOTE:
		return "note";
	default:
		return "unknown";
	}
}

static const char *
referral_of(const Ihala__V2__Envelope *e)
{
	const char *r = NULL;

	switch (e->kind_case) {
	case IHALA__V2__ENVELOPE__KIND_REFERRAL:
		r = e->referral->referral_id;
		break;
	case IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE:
		r = e->status_update->referral_id;
		break;
	case IHALA__V2__ENVELOPE__KIND_OUTCOME:
		r = e->outcome->referral_id;
		break;
	case IHALA__V2__ENVELOPE__KIND_NOTE:
		r = e->note->referral_id;
		break;
	default:
		break;
	}
	return r != NULL ? r : "";
}

/* One message, as a JSON line or a table row. reason NULL: a waiting one. */
static void
print_row(struct listing *l, const char *id, const void *env, size_t len, int code,
          const char *reason, size_t reason_len, uint64_t time_ms)
{
	Ihala__V2__Envelope *e = NULL;
	const char *kind = "unknown", *rid = "";

	/* A record is the Submit as queued: the clear part (and the sealed part). */
	if (ihala_record_envelope(env, len, &e) == 0) {
		kind = kind_name(e);
		rid = referral_of(e);
	}
	if (l->json) {
		json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:I}", "messageId", id, "state",
		                      reason != NULL ? "rejected" : "waiting", "kind", kind,
		                      "referralId", rid, "bytes", (json_int_t)len);

		if (j != NULL && reason != NULL) {
			json_object_set_new(j, "error", json_string(ihala_errname(code)));
			json_object_set_new(j, "reason", json_stringn(reason, reason_len));
			json_object_set_new(j, "rejectedTimeMs", json_integer((json_int_t)time_ms));
		}
		if (j == NULL || cli_print_json(j) != 0) {
			l->failed = 1;
		}
		json_decref(j);
	} else {
		char when[32], why[1024];
		const char *cells[6];

		cells[0] = reason != NULL ? "rejected" : "waiting";
		cells[1] = id;
		cells[2] = kind;
		cells[3] = rid;
		cells[4] = reason != NULL ? table_time(time_ms, when, sizeof(when)) : "";
		if (reason != NULL) {
			snprintf(why, sizeof(why), "%s: %.*s", ihala_errname(code), (int)reason_len,
			         reason);
		}
		cells[5] = reason != NULL ? why : "";
		if (table_add(l->table, cells) != 0) {
			l->failed = 1;
		}
	}
	envelope_free(e);
}

static int
waiting_cb(void *arg, const char *id, const void *env, size_t len)
{
	print_row(arg, id, env, len, 0, NULL, 0, 0);
	return 0;
}

static int
rejected_cb(void *arg, const struct localstore_rejected *r)
{
	print_row(arg, r->message_id, r->env, r->env_len, r->code, r->text, r->text_len,
	          r->time_ms);
	return 0;
}

/* Is `id` on the rejected list (again)? */
struct find {
	const char *id;
	int found;
	char reason[300];
};

static int
find_cb(void *arg, const struct localstore_rejected *r)
{
	struct find *f = arg;

	if (strcmp(r->message_id, f->id) != 0) {
		return 0;
	}
	f->found = 1;
	snprintf(f->reason, sizeof(f->reason), "%s: %.*s", ihala_errname(r->code), (int)r->text_len,
	         r->text);
	return 1;
}

/* --drop: a rejected message, else a waiting one. */
static int
drop(struct cli *cli, const char *id)
{
	struct localstore *ls = ihala_store(cli->client);
	int err = localstore_rejected_del(ls, id);

	if (err == IHALA_ENOTFOUND) {
		err = localstore_outbox_del(ls, id);
	}
	if (err == IHALA_ENOTFOUND || err == IHALA_EINVAL) {
		cli_warnx("outbox: no message '%s' waits or was rejected (see 'ihala outbox')", id);
		return CLI_USAGE;
	}
	if (err != 0) {
		return cli_fail(cli, "outbox", err);
	}
	cli_info(cli, "message %s dropped", id);
	return CLI_OK;
}

int
cmd_outbox(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {"json", no_argument, NULL, 'j'},
	    {"retry", required_argument, NULL, 'r'},
	    {"drop", required_argument, NULL, 'd'},
	    {NULL, 0, NULL, 0},
	};
	const char *retry = NULL, *dropid = NULL;
	struct listing l;
	size_t before = 0, left = 0, nrej = 0;
	json_t *j;
	int ch, rc, err, json = !cli_human(cli);

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'h':
			fputs(outbox_usage, stdout);
			return CLI_OK;
		case 'j':
			json = 1;
			break;
		case 'r':
			retry = optarg;
			break;
		case 'd':
			dropid = optarg;
			break;
		default:
			cli_bad_option("outbox", ch, argv, longopts);
			return CLI_USAGE;
		}
	}
	if (optind < argc) {
		cli_warnx("outbox: unexpected argument '%s'", argv[optind]);
		return CLI_USAGE;
	}
	if (retry != NULL && dropid != NULL) {
		cli_warnx("outbox: --retry and --drop go one at a time");
		return CLI_USAGE;
	}
	if ((rc = cli_open(cli)) != CLI_OK) {
		return rc;
	}
	if (dropid != NULL) {
		return drop(cli, dropid);
	}
	if (retry != NULL) {
		err = localstore_rejected_retry(ihala_store(cli->client), retry);
		if (err == IHALA_ENOTFOUND || err == IHALA_EINVAL) {
			cli_warnx("outbox: no rejected message '%s' (see 'ihala outbox')", retry);
			return CLI_USAGE;
		}
		if (err != 0) {
			return cli_fail(cli, "outbox", err);
		}
		cli_info(cli, "message %s is back in the outbox", retry);
	}
	if ((err = ihala_outbox_count(cli->client, &before)) != 0) {
		return cli_fail(cli, "outbox", err);
	}
	cli_info(cli, "%zu message(s) wait in the outbox", before);
	left = before;
	err = 0;
	if (before > 0) {
		err = ihala_flush_outbox(cli->client, cli_timeout(cli), &left);
		if (err != 0 && ihala_outbox_count(cli->client, &left) != 0) {
			left = before;
		}
	}
	localstore_rejected_count(ihala_store(cli->client), &nrej);
	memset(&l, 0, sizeof(l));
	l.json = json;
	if (json) {
		j = json_pack("{s:I,s:I,s:I}", "waiting", (json_int_t)before, "sent",
		              (json_int_t)(before - left), "left", (json_int_t)left);
		if (j == NULL || cli_print_json(j) != 0) {
			json_decref(j);
			return CLI_LOCAL;
		}
		json_decref(j);
	} else {
		printf("waiting %zu, sent %zu, left %zu, rejected %zu\n", before, before - left,
		       left, nrej);
	}
	if (!json) {
		static const char *const heads[] = {"STATE",    "MESSAGE ID", "KIND",
		                                    "REFERRAL", "REJECTED",   "REASON"};

		if ((l.table = table_new(6, heads)) == NULL) {
			return cli_fail(cli, "outbox", IHALA_ENOMEM);
		}
	}
	localstore_outbox_iter(ihala_store(cli->client), waiting_cb, &l);
	localstore_rejected_iter(ihala_store(cli->client), rejected_cb, &l);
	if (l.table != NULL && table_rows(l.table) > 0 && table_print(l.table, stdout) != 0) {
		l.failed = 1;
	}
	table_free(l.table);
	if (fflush(stdout) != 0 || l.failed) {
		return CLI_LOCAL;
	}
	if (err != 0) {
		if (cli_is_transport(err)) {
			cli_warnx("broker unreachable; %zu message(s) stay in the outbox: %s", left,
			          ihala_errmsg(cli->client));
			return CLI_UNREACHABLE;
		}
		return cli_fail(cli, "outbox", err);
	}
	if (nrej > 0) {
		cli_info(
		    cli,
		    "%zu message(s) were rejected: fix and submit them again, or 'ihala outbox "
		    "--retry ID' / '--drop ID'",
		    nrej);
	}
	if (retry != NULL) {
		struct find f = {retry, 0, {0}};

		localstore_rejected_iter(ihala_store(cli->client), find_cb, &f);
		if (f.found) {
			cli_warnx("refused: %s", f.reason);
			return CLI_REFUSED;
		}
	}
	return CLI_OK;
}
