/* submit.c - the submitting subcommands: refer, accept, decline, progress, outcome, cancel,
 * note, erase; and outbox. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "clock.h"
#include "consent.h"
#include "error.h"
#include "frame.h"
#include "jsonpos.h"
#include "pbjson.h"
#include "suggest.h"
#include "render.h"

/* Options a submitting subcommand may take; each command allows a subset. */
enum {
	O_TO = 1 << 0,
	O_FILE = 1 << 1,
	O_MSGID = 1 << 2,
	O_NOTE = 1 << 3,
	O_REASON = 1 << 4,
	O_TEXT = 1 << 5,
	O_STATUS = 1 << 6,
	O_BSTATUS = 1 << 7,
};

struct opt_row {
	unsigned bit;
	struct option opt;
};

static const struct opt_row opt_rows[] = {
    {O_TO, {"to", required_argument, NULL, 't'}},
    {O_FILE, {"file", required_argument, NULL, 'f'}},
    {O_MSGID, {"message-id", required_argument, NULL, 'm'}},
    {O_NOTE, {"note", required_argument, NULL, 'n'}},
    {O_REASON, {"reason", required_argument, NULL, 'r'}},
    {O_TEXT, {"text", required_argument, NULL, 'x'}},
    {O_STATUS, {"status", required_argument, NULL, 's'}},
    {O_BSTATUS, {"business-status", required_argument, NULL, 'b'}},
};
#define NROWS (sizeof(opt_rows) / sizeof(opt_rows[0]))

struct sub_args {
	const char *referral_id;
	const char *to;
	const char *file;
	const char *message_id;
	const char *note;
	const char *reason;
	const char *text;
	const char *status;
	const char *business_status;
};

struct sub_cmd {
	const char *name;
	unsigned opts;
	int needs_id; /* takes REFERRAL_ID */
	const char *usage;
	const int *reasons; /* the reason codes --reason takes; NULL: every one */
	size_t nreasons;
};

#define COMMON_HELP                                                                                \
	"      --message-id ID  idempotency key (1..64 printable ASCII; default: a random one).\n" \
	"                       Re-running with the same id and content is answered "              \
	"'duplicate'.\n"                                                                           \
	"  -h, --help           this help\n"                                                       \
	"\n"                                                                                       \
	"Prints the broker's receipt as JSON on stdout:\n"                                         \
	"  "                                                                                       \
	"{\"messageId\":..,\"seq\":..,\"leafHash\":\"<hex>\",\"status\":\"accepted\"|"             \
	"\"duplicate\"}\n"                                                                         \
	"(on a terminal, without --json: the same fields one a line, for people)\n"                \
	"Exit: 0 ok, 1 refused, 2 usage or bad input, 3 broker unreachable (the message waits\n"   \
	"in the outbox and goes with the next run), 4 local error.\n"

static const struct sub_cmd cmd_refer_def = {
    "refer",
    O_TO | O_FILE | O_MSGID,
    0,
    "usage: ihala refer --to AGENCY --file REFERRAL.json [--message-id ID]\n"
    "\n"
    "Submit a new referral. The file holds one Referral as JSON (field names in camelCase or\n"
    "snake_case, enums by short name: \"urgent\", \"physical-rehabilitation\"); '-' reads\n"
    "standard input. Before anything is sent or queued, every problem of the file (schema,\n"
    "required fields, consent not given, not naming the recipient or not covering a data\n"
    "category the file carries, receivingAgency other\n"
    "than --to) is named at once as\n"
    "FILE:LINE:COLUMN: FIELD ..., exit 2. The broker checks the rest (consent must cover\n"
    "the recipient, ...).\n"
    "\n"
    "  -t, --to AGENCY      receiving agency (may be left out when the file sets\n"
    "                       receivingAgency)\n"
    "  -f, --file FILE      the referral (JSON)\n" COMMON_HELP,
    NULL,
    0,
};

static const struct sub_cmd cmd_accept_def = {
    "accept",
    O_NOTE | O_MSGID,
    1,
    "usage: ihala accept REFERRAL_ID [--note TEXT] [--message-id ID]\n"
    "\n"
    "Accept a referral this agency received (status accepted).\n"
    "\n"
    "  -n, --note TEXT      a note for the referrer\n" COMMON_HELP,
    NULL,
    0,
};

static const struct sub_cmd cmd_decline_def = {
    "decline",
    O_REASON | O_TEXT | O_MSGID,
    1,
    "usage: ihala decline REFERRAL_ID --reason CODE [--text TEXT] [--message-id ID]\n"
    "\n"
    "Decline a referral this agency received (status declined).\n"
    "\n"
    "  -r, --reason CODE    why (required, see below)\n"
    "  -x, --text TEXT      the reason in words\n" COMMON_HELP,
    NULL,
    0,
};

static const struct sub_cmd cmd_progress_def = {
    "progress",
    O_STATUS | O_BSTATUS | O_NOTE | O_REASON | O_TEXT | O_MSGID,
    1,
    "usage: ihala progress REFERRAL_ID [--status in-progress|on-hold]\n"
    "                      [--business-status TEXT] [--note TEXT] [--reason CODE] [--text TEXT]\n"
    "\n"
    "Report progress on an accepted referral.\n"
    "\n"
    "  -s, --status STATUS  in-progress (default) or on-hold\n"
    "  -b, --business-status TEXT  domain detail (\"appointment scheduled\", \"device fitted\")\n"
    "  -n, --note TEXT      a note for the referrer\n"
    "  -r, --reason CODE    why, for on-hold (see below)\n"
    "  -x, --text TEXT      the reason in words\n" COMMON_HELP,
    NULL,
    0,
};

static const struct sub_cmd cmd_outcome_def = {
    "outcome",
    O_FILE | O_STATUS | O_NOTE | O_MSGID,
    1,
    "usage: ihala outcome REFERRAL_ID --file OUTCOME.json [--status completed|failed]\n"
    "                     [--note TEXT] [--message-id ID]\n"
    "\n"
    "Close a referral with the service outcome (status completed or failed). The file holds\n"
    "one Outcome as JSON; '-' reads standard input.\n"
    "\n"
    "  -f, --file FILE      the outcome (JSON)\n"
    "  -s, --status STATUS  completed (default) or failed\n"
    "  -n, --note TEXT      a note for the referrer\n" COMMON_HELP,
    NULL,
    0,
};

static const struct sub_cmd cmd_cancel_def = {
    "cancel",
    O_REASON | O_TEXT | O_MSGID,
    1,
    "usage: ihala cancel REFERRAL_ID --reason CODE [--text TEXT] [--message-id ID]\n"
    "\n"
    "Withdraw a referral this agency made (status cancelled).\n"
    "\n"
    "  -r, --reason CODE    why (required, see below)\n"
    "  -x, --text TEXT      the reason in words\n" COMMON_HELP,
    NULL,
    0,
};

static const struct sub_cmd cmd_note_def = {
    "note",
    O_TEXT | O_MSGID,
    1,
    "usage: ihala note REFERRAL_ID --text TEXT [--message-id ID]\n"
    "\n"
    "Attach a free note to a referral; it goes to the other party.\n"
    "\n"
    "  -x, --text TEXT      the note (required)\n" COMMON_HELP,
    NULL,
    0,
};

/* The reasons an erasure may give (the broker's own, RETENTION_EXPIRED, is not one). */
static const int erase_reasons[] = {
    IHALA__V2__REASON_CODE__REASON_CODE_CONSENT_WITHDRAWN,
    IHALA__V2__REASON_CODE__REASON_CODE_ENTERED_IN_ERROR,
    IHALA__V2__REASON_CODE__REASON_CODE_OTHER,
};

static const struct sub_cmd cmd_erase_def = {
    "erase",
    O_REASON | O_MSGID,
    1,
    "usage: ihala erase REFERRAL_ID --reason CODE [--message-id ID]\n"
    "\n"
    "Erase the sealed parts of a referral this agency made (the survivor's personal data:\n"
    "identity, contact, injuries, free texts) and of its onward referrals, at the broker and\n"
    "at every party's node, for example when the survivor withdraws consent. The log keeps\n"
    "every entry's clear part and the SHA-256 of its sealed part, so 'ihala audit verify'\n"
    "still passes and the audit can still prove what was sent, when and by whom; the broker\n"
    "logs one erasure entry per party. Only the referring agency may erase; it cannot be\n"
    "undone, and the broker refuses later messages with a sealed part on the referral\n"
    "(ERASED).\n"
    "\n"
    "  -r, --reason CODE    why (required, see below)\n" COMMON_HELP,
    erase_reasons,
    sizeof(erase_reasons) / sizeof(erase_reasons[0]),
};

static void
sub_usage(const struct sub_cmd *cmd, FILE *fp)
{
	const ProtobufCEnumDescriptor *ed = &ihala__v2__reason_code__descriptor;
	char name[64];
	size_t i, col;
	int first;

	fputs(cmd->usage, fp);
	if (!(cmd->opts & O_REASON)) {
		return;
	}
	/* from the schema, so the list cannot drift from what the broker knows */
	fputs("\nCODE is a reason code:", fp);
	col = 22;
	for (i = 0, first = 1; i < (cmd->reasons != NULL ? cmd->nreasons : ed->n_values); i++) {
		int v = cmd->reasons != NULL ? cmd->reasons[i] : ed->values[i].value;

		if (v == 0 || pbjson_enum_to_name(ed, v, name, sizeof(name)) != 0) {
			continue;
		}
		if (!first) {
			fputc(',', fp);
		}
		first = 0;
		if (col + strlen(name) + 2 > 88) {
			fputs("\n ", fp);
			col = 1;
		}
		fprintf(fp, " %s", name);
		col += strlen(name) + 2;
	}
	fputs("\n('_' works as well as '-', in any case.)\n", fp);
}

/* Parse argv for `cmd`. Returns -1 to go on, else the exit code (help printed, or usage). */
static int
sub_parse(const struct sub_cmd *cmd, int argc, char **argv, struct sub_args *a)
{
	struct option longopts[NROWS + 2];
	char shortopts[3 * NROWS + 3];
	size_t n = 0, s = 0, i;
	int ch;

	memset(a, 0, sizeof(*a));
	shortopts[s++] = ':'; /* a missing value returns ':' */
	for (i = 0; i < NROWS; i++) {
		if (cmd->opts & opt_rows[i].bit) {
			longopts[n++] = opt_rows[i].opt;
			shortopts[s++] = (char)opt_rows[i].opt.val;
			shortopts[s++] = ':';
		}
	}
	longopts[n++] = (struct option){"help", no_argument, NULL, 'h'};
	longopts[n] = (struct option){NULL, 0, NULL, 0};
	shortopts[s++] = 'h';
	shortopts[s] = '\0';

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		switch (ch) {
		case 't':
			a->to = optarg;
			break;
		case 'f':
			a->file = optarg;
			break;
		case 'm':
			a->message_id = optarg;
			break;
		case 'n':
			a->note = optarg;
			break;
		case 'r':
			a->reason = optarg;
			break;
		case 'x':
			a->text = optarg;
			break;
		case 's':
			a->status = optarg;
			break;
		case 'b':
			a->business_status = optarg;
			break;
		case 'h':
			sub_usage(cmd, stdout);
			return CLI_OK;
		default:
			cli_bad_option(cmd->name, ch, argv, longopts);
			return CLI_USAGE;
		}
	}
	if (cmd->needs_id) {
		if (optind >= argc) {
			cli_warnx("%s: REFERRAL_ID is missing", cmd->name);
			fprintf(stderr, "Try 'ihala %s --help'.\n", cmd->name);
			return CLI_USAGE;
		}
		a->referral_id = argv[optind++];
		if (!id_valid(a->referral_id)) {
			cli_warnx(
			    "%s: invalid referral id '%s' (1..64 printable ASCII characters, no "
			    "spaces)",
			    cmd->name, a->referral_id);
			return CLI_USAGE;
		}
	}
	if (optind < argc) {
		cli_warnx("%s: unexpected argument '%s'", cmd->name, argv[optind]);
		fprintf(stderr, "Try 'ihala %s --help'.\n", cmd->name);
		return CLI_USAGE;
	}
	if (a->message_id != NULL && !id_valid(a->message_id)) {
		cli_warnx(
		    "%s: invalid message id '%s' (1..64 printable ASCII characters, no spaces)",
		    cmd->name, a->message_id);
		return CLI_USAGE;
	}
	/* free text goes on the wire as protobuf strings: UTF-8 only */
	{
		const char *texts[] = {a->note, a->text, a->business_status};
		const char *names[] = {"--note", "--text", "--business-status"};

		for (i = 0; i < 3; i++) {
			if (texts[i] != NULL &&
			    !pb_utf8_valid((const uint8_t *)texts[i], strlen(texts[i]))) {
				cli_warnx("%s: %s is not valid UTF-8", cmd->name, names[i]);
				return CLI_USAGE;
			}
		}
	}
	return -1;
}

/* Map an enum option value with pbjson's rules; prints the choices when it is not one. */
static int
parse_enum(const char *cmd, const char *opt, const ProtobufCEnumDescriptor *ed, const char *s,
           const int *allowed, size_t nallowed, int *out)
{
	char name[64];
	size_t i;
	int v;

	if (pbjson_enum_from_name(ed, s, &v) == 0 && v != 0) {
		if (allowed == NULL) {
			*out = v;
			return 0;
		}
		for (i = 0; i < nallowed; i++) {
			if (allowed[i] == v) {
				*out = v;
				return 0;
			}
		}
	}
	fflush(stdout);
	fprintf(stderr, "ihala: %s: invalid %s '%s' (one of:", cmd, opt, s);
	for (i = 0; i < (allowed != NULL ? nallowed : ed->n_values); i++) {
		int val = allowed != NULL ? allowed[i] : ed->values[i].value;

		if (val != 0 && pbjson_enum_to_name(ed, val, name, sizeof(name)) == 0) {
			fprintf(stderr, " %s", name);
		}
	}
	fprintf(stderr, ")\n");
	return -1;
}

static int
parse_reason(const struct sub_cmd *def, const char *s, Ihala__V2__ReasonCode *out)
{
	int v;

	if (parse_enum(def->name, "reason", &ihala__v2__reason_code__descriptor, s, def->reasons,
	               def->nreasons, &v) != 0) {
		return -1;
	}
	*out = (Ihala__V2__ReasonCode)v;
	return 0;
}

/*
 * An input file being read: every problem found in it is printed at once, as
 * "CMD: FILE:LINE:COLUMN: FIELD ...", FIELD named as the file writes it.
 */
struct input {
	const char *cmd;
	const char *name; /* the file as given, "<stdin>" for '-' */
	char *text;
	size_t len;
	int problems;
	/* the first problems, printed in file order by input_verdict */
	struct problem {
		int line, col, order;
		char msg[512];
	} kept[32];
	/* fields taken out after a problem, so later checks do not report them again */
	char removed[16][128];
	int nremoved;
};

static void
input_add(struct input *in, int line, int col, const char *msg)
{
	struct problem *p;

	if ((size_t)in->problems < sizeof(in->kept) / sizeof(in->kept[0])) {
		p = &in->kept[in->problems];
		p->line = line;
		p->col = col;
		p->order = in->problems;
		snprintf(p->msg, sizeof(p->msg), "%s", msg);
	}
	in->problems++;
}

static void input_problem(struct input *in, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
input_problem(struct input *in, const char *path, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int line, col;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	jsonpos_find(in->text, in->len, path, &line, &col);
	input_add(in, line, col, msg);
}

static int
problem_cmp(const void *a, const void *b)
{
	const struct problem *x = a, *y = b;

	if (x->line != y->line) {
		return x->line < y->line ? -1 : 1;
	}
	if (x->col != y->col) {
		return x->col < y->col ? -1 : 1;
	}
	return x->order < y->order ? -1 : x->order > y->order;
}

/* 1 when path, or a field holding it, was taken out after a problem. */
static int
input_removed(const struct input *in, const char *path)
{
	size_t n;
	int i;

	for (i = 0; i < in->nremoved; i++) {
		n = strlen(in->removed[i]);
		if (strncmp(path, in->removed[i], n) == 0 &&
		    (path[n] == '\0' || path[n] == '.' || path[n] == '[')) {
			return 1;
		}
	}
	return 0;
}

/* Summary after the problems; returns the exit code for them (CLI_OK when none). */
static int
input_verdict(struct input *in)
{
	size_t i, n = (size_t)in->problems;

	if (in->problems == 0) {
		return CLI_OK;
	}
	if (n > sizeof(in->kept) / sizeof(in->kept[0])) {
		n = sizeof(in->kept) / sizeof(in->kept[0]);
	}
	qsort(in->kept, n, sizeof(in->kept[0]), problem_cmp);
	for (i = 0; i < n; i++) {
		cli_warnx("%s: %s:%d:%d: %s", in->cmd, in->name, in->kept[i].line, in->kept[i].col,
		          in->kept[i].msg);
	}
	cli_warnx("%s: %d problem(s) in '%s'; nothing was sent or queued", in->cmd, in->problems,
	          in->name);
	return CLI_USAGE;
}

static void
input_release(struct input *in)
{
	free(in->text);
	in->text = NULL;
}

/*
 * Read FILE and build a message of type d. Each value pbjson refuses is reported where it is
 * and taken out, and the rest read again, so one run names every problem (up to a bound);
 * *out is then the message without them (NULL when none could be built). Returns CLI_OK (with
 * in->problems possibly > 0: the caller adds its own checks, then input_verdict) or an exit
 * code (the file cannot be read or is not JSON).
 */
static int
load_json(struct input *in, const char *path, const ProtobufCMessageDescriptor *d,
          ProtobufCMessage **out)
{
	char err[512], fpath[256];
	json_error_t jerr;
	json_t *root;
	const char *sep, *msg, *field;
	int rc, rounds;

	*out = NULL;
	in->name = strcmp(path, "-") == 0 ? "<stdin>" : path;
	if (cli_read_file(path, PBJSON_MAX_INPUT, &in->text, &in->len) != 0) {
		int e = errno;

		cli_warnx("%s: cannot read '%s': %s", in->cmd, path,
		          e == EFBIG ? "file too large" : strerror(e));
		/* a wrong name or an oversized file is bad input; anything else is local */
		return e == ENOENT || e == EFBIG || e == EISDIR ? CLI_USAGE : CLI_LOCAL;
	}
	root = json_loadb(in->text, in->len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		char *c;

		/* jansson quotes the input near the error: keep the message one line */
		for (c = jerr.text; *c != '\0'; c++) {
			if ((unsigned char)*c < 0x20 || *c == 0x7f) {
				*c = '?';
			}
		}
		input_add(in, jerr.line, jerr.column > 0 ? jerr.column : 1, jerr.text);
		return CLI_USAGE;
	}
	for (rounds = 0; rounds < 64; rounds++) {
		rc = pbjson_from_json(d, root, out, err, sizeof(err));
		if (rc == 0) {
			break;
		}
		if (rc == IHALA_ENOMEM) {
			json_decref(root);
			cli_warnx("%s: %s: %s", in->cmd, in->name, ihala_strerror(rc));
			return CLI_LOCAL;
		}
		/* "referral.survivor.birthYear: expected ...": the root's name, then the file's */
		sep = strstr(err, ": ");
		msg = sep != NULL ? sep + 2 : err;
		snprintf(fpath, sizeof(fpath), "%.*s", sep != NULL ? (int)(sep - err) : 0, err);
		field = fpath + strcspn(fpath, ".[");
		if (*field == '.') {
			field++;
		}
		if (*field != '\0') {
			input_problem(in, field, "%s: %s", field, msg);
		} else {
			input_problem(in, "", "%s", msg);
		}
		if (*field == '\0' || jsonpos_remove(root, field) != 0) {
			break; /* nothing to take out: this problem is the last one named */
		}
		if (in->nremoved < (int)(sizeof(in->removed) / sizeof(in->removed[0]))) {
			/* an item goes with its array */
			snprintf(in->removed[in->nremoved], sizeof(in->removed[0]), "%.*s",
			         (int)strcspn(field, "["), field);
			in->nremoved++;
		}
	}
	json_decref(root);
	return CLI_OK;
}

/* The node's journal keeps what it sent, under the receipt's seq (see cli_journal). */
static void
journal_sent(struct cli *cli, const Ihala__V2__Envelope *env, uint64_t seq)
{
	json_t *line = json_object(), *e = NULL;

	if (line != NULL && pbjson_to_json(&env->base, 0, &e) == 0) {
		json_object_set_new(line, "seq", json_integer((json_int_t)seq));
		json_object_set_new(line, "kind", json_string("submission"));
		json_object_set_new(line, "sender",
		                    json_string(cli->cfg != NULL && cli->cfg->agency != NULL
		                                    ? cli->cfg->agency
		                                    : ""));
		json_object_set_new(line, "recipient", json_string(env->to != NULL ? env->to : ""));
		json_object_set_new(line, "envelope", e);
		cli_journal(cli, seq, line);
	}
	json_decref(line);
}

/* For a recipient the broker does not know: the nearest agency the referral's consent names. */
static const char *
near_agency(const Ihala__V2__Envelope *env)
{
	const Ihala__V2__Consent *c;
	const char *near = NULL;
	unsigned best = SUGGEST_FAR;
	size_t i;

	if (env->kind_case != IHALA__V2__ENVELOPE__KIND_REFERRAL || env->to == NULL ||
	    (c = env->referral->consent) == NULL) {
		return NULL;
	}
	for (i = 0; i < c->n_agencies; i++) {
		if (suggest_near(env->to, c->agencies[i], &best)) {
			near = c->agencies[i];
		}
	}
	return near;
}

/*
 * Connect, submit `env` and print the receipt. When the broker cannot be reached the
 * envelope is still written to the outbox (submit with no wait) and goes with the next run.
 */
static int
submit(struct cli *cli, const char *cmd, Ihala__V2__Envelope *env)
{
	struct ihala_receipt rcpt;
	json_t *j = NULL;
	size_t waiting = 0;
	int rc, err = 0, timeout;

	rc = cli_connect(cli, 0, &err);
	if (rc != CLI_OK && rc != CLI_UNREACHABLE) {
		return rc;
	}
	/* unreachable: put it in the outbox without waiting again */
	timeout = rc == CLI_OK ? cli_timeout(cli) : 0;
	memset(&rcpt, 0, sizeof(rcpt));
	err = ihala_submit(cli->client, env, timeout, &rcpt);
	if (err == 0) {
		journal_sent(cli, env, rcpt.seq);
		if ((err = render_receipt(&rcpt, &j)) != 0) {
			return cli_fail(cli, cmd, err);
		}
		if (cli_human(cli)) {
			/* for people: the receipt's fields one a line */
			printf("Receipt    %s\nSeq        %llu\nMessage    %s\nLeaf hash  %s\n",
			       json_string_value(json_object_get(j, "status")),
			       (unsigned long long)rcpt.seq, rcpt.message_id,
			       json_string_value(json_object_get(j, "leafHash")));
			rc = fflush(stdout) == 0 ? CLI_OK : CLI_LOCAL;
		} else {
			rc = cli_print_json(j) == 0 ? CLI_OK : CLI_LOCAL;
		}
		json_decref(j);
		return rc;
	}
	if (rcpt.status == IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED) {
		const char *near = err == IHALA_ERECIPIENT ? near_agency(env) : NULL;

		cli_warnx("refused: %s: %s%s%s%s", ihala_errname(err),
		          rcpt.text[0] != '\0' ? rcpt.text : ihala_strerror(err),
		          near != NULL ? " (did you mean '" : "", near != NULL ? near : "",
		          near != NULL ? "'?)" : "");
		return CLI_REFUSED;
	}
	if (cli_is_transport(err)) {
		if (ihala_outbox_count(cli->client, &waiting) == 0 && waiting > 0) {
			cli_warnx(
			    "broker unreachable; message %s is kept in the outbox and will be "
			    "sent on the next run",
			    env->message_id);
		} else {
			cli_warnx("broker unreachable; message %s was not sent: %s",
			          env->message_id, ihala_errmsg(cli->client));
		}
		return CLI_UNREACHABLE;
	}
	return cli_fail(cli, cmd, err);
}

/* The envelope skeleton every submitting command starts from. */
static void
envelope_prepare(const struct cli *cli, Ihala__V2__Envelope *env, const struct sub_args *a,
                 char *idbuf, size_t idlen)
{
	ihala__v2__envelope__init(env);
	if (cli->clerk != NULL) {
		env->clerk_id = (char *)cli->clerk; /* --clerk, checked by main */
	}
	if (a->message_id != NULL) {
		/* A re-run with the same id must send the same bytes (else MESSAGE_ID_CONFLICT):
		 * no client time then. */
		snprintf(idbuf, idlen, "%s", a->message_id);
	} else {
		ihala_new_message_id(idbuf, idlen);
		env->client_time_ms = clock_wall_ms();
	}
	env->message_id = idbuf;
}

/* An identifier as the broker wants it; else why not, for people. */
static const char *
id_problem(const char *v)
{
	const unsigned char *p;

	if (v == NULL || v[0] == '\0') {
		return "is required";
	}
	if (strlen(v) > 64) {
		return "is longer than 64 characters";
	}
	for (p = (const unsigned char *)v; *p != '\0'; p++) {
		if (*p >= 0x80) {
			return "must be printable ASCII: write digits as 0-9 (not Arabic-Indic or "
			       "other digits) and no letters outside A-Z, a-z";
		}
		if (*p <= 0x20 || *p == 0x7f) {
			return "must be printable ASCII without spaces";
		}
	}
	return NULL;
}

/* The broker refuses a referral without the survivor's consent, or whose consent does not
 * name the recipient `dest`: said here, before anything is queued. */
static void
consent_problems(struct input *in, const Ihala__V2__Referral *r, const char *dest)
{
	const Ihala__V2__Consent *c = r->consent;
	char names[512];
	const char *near = NULL;
	unsigned best = SUGGEST_FAR;
	size_t i, off = 0;

	if (input_removed(in, "consent")) {
		return;
	}
	if (c == NULL || !c->given) {
		input_problem(in, "consent",
		              "consent is required: the survivor's consent (\"given\": true) and "
		              "the agencies it covers");
		return;
	}
	if (dest[0] == '\0' || input_removed(in, "consent.agencies")) {
		return;
	}
	names[0] = '\0';
	for (i = 0; i < c->n_agencies; i++) {
		if (strcmp(c->agencies[i], dest) == 0) {
			return;
		}
		if (suggest_near(dest, c->agencies[i], &best)) {
			near = c->agencies[i];
		}
		if (off < sizeof(names)) {
			int n = snprintf(names + off, sizeof(names) - off, "%s%s",
			                 i > 0 ? ", " : "", c->agencies[i]);

			off += n > 0 ? (size_t)n : 0;
		}
	}
	if (near != NULL) {
		input_problem(in, "consent.agencies",
		              "consent.agencies does not name the recipient '%s' (did you mean "
		              "'%s'?)",
		              dest, near);
	} else {
		input_problem(in, "consent.agencies",
		              "consent.agencies does not name the recipient '%s' (it names: %s); "
		              "the survivor's consent must cover every agency the referral goes "
		              "to",
		              dest, c->n_agencies > 0 ? names : "none");
	}
}

/* The personal fields the referral carries must be of data categories its consent covers
 * (the broker refuses them otherwise: CONSENT_MISSING), each named where it is. */
static void
category_problems(struct input *in, const Ihala__V2__Referral *r)
{
	const Ihala__V2__Consent *c = r->consent;
	char field[64], cat[32];
	size_t i, j, k;

	if (c == NULL || !c->given || input_removed(in, "consent")) {
		return;
	}
	for (i = 0; i < consent_n_fields; i++) {
		const struct consent_field *f = &consent_fields[i];

		if (!f->carried(r) || consent_covers_category(c, f->category)) {
			continue;
		}
		/* survivor.birth_year -> survivor.birthYear, as the files write it */
		for (j = k = 0; f->name[j] != '\0' && k + 1 < sizeof(field); j++) {
			if (f->name[j] == '_' && f->name[j + 1] != '\0') {
				field[k++] = (char)toupper((unsigned char)f->name[++j]);
			} else {
				field[k++] = f->name[j];
			}
		}
		field[k] = '\0';
		snprintf(cat, sizeof(cat), "%s", consent_category_name(f->category));
		for (j = 0; cat[j] != '\0'; j++) {
			cat[j] = (char)tolower((unsigned char)cat[j]);
		}
		input_problem(in, field,
		              "%s is %s data, which consent.dataCovered does not include (add "
		              "\"%s\" if the survivor agreed to share it, or leave the field out)",
		              field, cat, cat);
	}
}

/*
 * The fields of a referral the broker requires, checked here before anything is queued, each
 * problem where it is in the file and named as the file names it (with load_json's, all at
 * once). `to` is --to, or NULL.
 */
static void
referral_problems(struct input *in, const Ihala__V2__Referral *r, const char *to)
{
	const char *why, *ra = r->receiving_agency != NULL ? r->receiving_agency : "";
	unsigned best = SUGGEST_FAR;

	if (!input_removed(in, "referralId") && (why = id_problem(r->referral_id)) != NULL) {
		input_problem(in, "referralId", "referralId %s", why);
	}
	if (!input_removed(in, "priority") &&
	    r->priority == IHALA__V2__PRIORITY__PRIORITY_UNSPECIFIED) {
		input_problem(in, "priority", "priority is required (emergency, urgent or normal)");
	}
	if (!input_removed(in, "services") && r->n_services == 0) {
		input_problem(in, "services", "services needs at least one requested service");
	}
	if (input_removed(in, "survivor.caseId")) {
		/* reported already */
	} else if (r->survivor == NULL) {
		input_problem(in, "survivor", "survivor is required (with its caseId)");
	} else if ((why = id_problem(r->survivor->case_id)) != NULL) {
		input_problem(in, "survivor.caseId", "survivor.caseId %s", why);
	}
	consent_problems(in, r, to != NULL ? to : ra);
	category_problems(in, r);
	if (input_removed(in, "receivingAgency")) {
		return;
	}
	if (ra[0] != '\0' && !id_agency_valid(ra, strlen(ra))) {
		input_problem(in, "receivingAgency", "receivingAgency '%s' is not an agency id",
		              ra);
	} else if (to == NULL && ra[0] == '\0') {
		input_problem(in, "receivingAgency",
		              "receivingAgency is missing and no --to AGENCY was given");
	} else if (to != NULL && ra[0] != '\0' && strcmp(to, ra) != 0) {
		if (suggest_near(to, ra, &best)) {
			input_problem(in, "receivingAgency",
			              "receivingAgency is '%s' but --to is '%s' (did you mean "
			              "'--to %s'?)",
			              ra, to, ra);
		} else {
			input_problem(in, "receivingAgency",
			              "receivingAgency is '%s' but --to is '%s': leave out --to, "
			              "or make them agree",
			              ra, to);
		}
	}
}

int
cmd_refer(struct cli *cli, int argc, char **argv)
{
	Ihala__V2__Envelope env;
	Ihala__V2__Referral *ref = NULL;
	ProtobufCMessage *m = NULL;
	struct input in;
	struct sub_args a;
	char id[ID_MAX + 1];
	int rc;

	if ((rc = sub_parse(&cmd_refer_def, argc, argv, &a)) >= 0) {
		return rc;
	}
	if (a.file == NULL) {
		cli_warnx("refer: --file REFERRAL.json is required");
		fprintf(stderr, "Try 'ihala refer --help'.\n");
		return CLI_USAGE;
	}
	if (a.to != NULL && !id_agency_valid(a.to, strlen(a.to))) {
		cli_warnx("refer: invalid agency id '%s'", a.to);
		return CLI_USAGE;
	}
	memset(&in, 0, sizeof(in));
	in.cmd = "refer";
	if ((rc = load_json(&in, a.file, &ihala__v2__referral__descriptor, &m)) != CLI_OK) {
		input_verdict(&in);
		goto out;
	}
	ref = (Ihala__V2__Referral *)m;
	if (ref != NULL) {
		referral_problems(&in, ref, a.to);
	}
	if ((rc = input_verdict(&in)) != CLI_OK) {
		goto out; /* nothing queued */
	}
	envelope_prepare(cli, &env, &a, id, sizeof(id));
	/* referring_agency, consent and the rest are left as given: the broker checks them */
	env.to = (char *)(a.to != NULL ? a.to : ref->receiving_agency);
	env.kind_case = IHALA__V2__ENVELOPE__KIND_REFERRAL;
	env.referral = ref;
	rc = submit(cli, "refer", &env);
out:
	input_release(&in);
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* accept, decline, progress, cancel: one StatusUpdate without an outcome. */
static int
status_command(struct cli *cli, const struct sub_cmd *def, int argc, char **argv)
{
	static const int progress_ok[] = {IHALA__V2__TASK_STATUS__TASK_STATUS_IN_PROGRESS,
	                                  IHALA__V2__TASK_STATUS__TASK_STATUS_ON_HOLD};
	Ihala__V2__Envelope env;
	Ihala__V2__StatusUpdate su = IHALA__V2__STATUS_UPDATE__INIT;
	struct sub_args a;
	char id[ID_MAX + 1];
	int rc, v;

	if ((rc = sub_parse(def, argc, argv, &a)) >= 0) {
		return rc;
	}
	su.referral_id = (char *)a.referral_id;
	if (strcmp(def->name, "accept") == 0) {
		su.status = IHALA__V2__TASK_STATUS__TASK_STATUS_ACCEPTED;
	} else if (strcmp(def->name, "decline") == 0) {
		su.status = IHALA__V2__TASK_STATUS__TASK_STATUS_DECLINED;
	} else if (strcmp(def->name, "cancel") == 0) {
		su.status = IHALA__V2__TASK_STATUS__TASK_STATUS_CANCELLED;
	} else {
		su.status = IHALA__V2__TASK_STATUS__TASK_STATUS_IN_PROGRESS;
		if (a.status != NULL) {
			if (parse_enum(def->name, "status", &ihala__v2__task_status__descriptor,
			               a.status, progress_ok, 2, &v) != 0) {
				return CLI_USAGE;
			}
			su.status = (Ihala__V2__TaskStatus)v;
		}
	}
	if ((def->opts & O_REASON) && a.reason == NULL && strcmp(def->name, "progress") != 0) {
		cli_warnx("%s: --reason CODE is required", def->name);
		fprintf(stderr, "Try 'ihala %s --help'.\n", def->name);
		return CLI_USAGE;
	}
	if (a.reason != NULL && parse_reason(def, a.reason, &su.reason_code) != 0) {
		return CLI_USAGE;
	}
	if (a.text != NULL) {
		su.reason = (char *)a.text;
	}
	if (a.note != NULL) {
		su.note = (char *)a.note;
	}
	if (a.business_status != NULL) {
		su.business_status = (char *)a.business_status;
	}
	envelope_prepare(cli, &env, &a, id, sizeof(id));
	env.kind_case = IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE;
	env.status_update = &su;
	return submit(cli, def->name, &env);
}

int
cmd_accept(struct cli *cli, int argc, char **argv)
{
	return status_command(cli, &cmd_accept_def, argc, argv);
}

int
cmd_decline(struct cli *cli, int argc, char **argv)
{
	return status_command(cli, &cmd_decline_def, argc, argv);
}

int
cmd_progress(struct cli *cli, int argc, char **argv)
{
	return status_command(cli, &cmd_progress_def, argc, argv);
}

int
cmd_cancel(struct cli *cli, int argc, char **argv)
{
	return status_command(cli, &cmd_cancel_def, argc, argv);
}

int
cmd_outcome(struct cli *cli, int argc, char **argv)
{
	static const int outcome_ok[] = {IHALA__V2__TASK_STATUS__TASK_STATUS_COMPLETED,
	                                 IHALA__V2__TASK_STATUS__TASK_STATUS_FAILED};
	Ihala__V2__Envelope env;
	Ihala__V2__StatusUpdate su = IHALA__V2__STATUS_UPDATE__INIT;
	ProtobufCMessage *m = NULL;
	struct input in;
	struct sub_args a;
	char id[ID_MAX + 1];
	int rc, v;

	if ((rc = sub_parse(&cmd_outcome_def, argc, argv, &a)) >= 0) {
		return rc;
	}
	if (a.file == NULL) {
		cli_warnx("outcome: --file OUTCOME.json is required");
		fprintf(stderr, "Try 'ihala outcome --help'.\n");
		return CLI_USAGE;
	}
	su.status = IHALA__V2__TASK_STATUS__TASK_STATUS_COMPLETED;
	if (a.status != NULL) {
		if (parse_enum("outcome", "status", &ihala__v2__task_status__descriptor, a.status,
		               outcome_ok, 2, &v) != 0) {
			return CLI_USAGE;
		}
		su.status = (Ihala__V2__TaskStatus)v;
	}
	memset(&in, 0, sizeof(in));
	in.cmd = "outcome";
	rc = load_json(&in, a.file, &ihala__v2__outcome__descriptor, &m);
	if (rc != CLI_OK) {
		input_verdict(&in);
	} else {
		rc = input_verdict(&in);
	}
	input_release(&in);
	if (rc != CLI_OK) {
		protobuf_c_message_free_unpacked(m, NULL);
		return rc;
	}
	su.referral_id = (char *)a.referral_id;
	su.outcome = (Ihala__V2__Outcome *)m;
	if (a.note != NULL) {
		su.note = (char *)a.note;
	}
	envelope_prepare(cli, &env, &a, id, sizeof(id));
	env.kind_case = IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE;
	env.status_update = &su;
	rc = submit(cli, "outcome", &env);
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

int
cmd_note(struct cli *cli, int argc, char **argv)
{
	Ihala__V2__Envelope env;
	Ihala__V2__Note note = IHALA__V2__NOTE__INIT;
	struct sub_args a;
	char id[ID_MAX + 1];
	int rc;

	if ((rc = sub_parse(&cmd_note_def, argc, argv, &a)) >= 0) {
		return rc;
	}
	if (a.text == NULL || a.text[0] == '\0') {
		cli_warnx("note: --text TEXT is required");
		fprintf(stderr, "Try 'ihala note --help'.\n");
		return CLI_USAGE;
	}
	note.referral_id = (char *)a.referral_id;
	note.text = (char *)a.text;
	envelope_prepare(cli, &env, &a, id, sizeof(id));
	env.kind_case = IHALA__V2__ENVELOPE__KIND_NOTE;
	env.note = &note;
	return submit(cli, "note", &env);
}

int
cmd_erase(struct cli *cli, int argc, char **argv)
{
	Ihala__V2__Envelope env;
	Ihala__V2__Erase er = IHALA__V2__ERASE__INIT;
	struct sub_args a;
	char id[ID_MAX + 1];
	int rc;

	if ((rc = sub_parse(&cmd_erase_def, argc, argv, &a)) >= 0) {
		return rc;
	}
	if (a.reason == NULL) {
		cli_warnx("erase: --reason CODE is required");
		fprintf(stderr, "Try 'ihala erase --help'.\n");
		return CLI_USAGE;
	}
	if (parse_reason(&cmd_erase_def, a.reason, &er.reason_code) != 0) {
		return CLI_USAGE;
	}
	er.referral_id = (char *)a.referral_id;
	envelope_prepare(cli, &env, &a, id, sizeof(id));
	/* no sealed part: an erasure carries nothing about the person */
	env.kind_case = IHALA__V2__ENVELOPE__KIND_ERASE;
	env.erase = &er;
	return submit(cli, "erase", &env);
}
