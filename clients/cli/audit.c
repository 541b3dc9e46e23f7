/* audit.c - `ihala audit`: auditors' view of the log (replay now; verify, prove, export,
 * stats later). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "render.h"

static const char audit_usage[] =
    "usage: ihala audit SUBCOMMAND [OPTIONS]\n"
    "\n"
    "  replay [--from N] [--to M] [--follow]   stream log entries as JSON lines\n"
    "  verify | prove | export | stats        not available yet\n"
    "\n"
    "'ihala audit SUBCOMMAND --help' describes each.\n"
    "Exit: 0 ok, 1 refused (FORBIDDEN: only auditors replay), 2 usage, 3 broker\n"
    "unreachable, 4 local error, 5 verification failure (an entry does not decode).\n";

static const char replay_usage[] =
    "usage: ihala audit replay [--from N] [--to M] [--follow]\n"
    "\n"
    "Stream the broker's log entries from seq N to seq M (inclusive) and print each as one\n"
    "JSON line: {\"seq\":N,\"entry\":{...}}, the entry as logged with the submitted envelope\n"
    "decoded in \"envelope\":{...}. Only auditors may replay.\n"
    "\n"
    "  -f, --from N         first seq (default 1)\n"
    "  -t, --to M           last seq (default: the current end)\n"
    "  -F, --follow         after the end, keep printing new entries until SIGINT/SIGTERM\n"
    "  -h, --help           this help\n"
    "\n"
    "Exit: 0 ok, 1 refused, 2 usage, 3 broker unreachable, 4 local error, 5 an entry does\n"
    "not decode.\n";

struct replay_state {
	int failed;    /* exit code when a callback stopped the replay, else 0 */
	uint64_t last; /* last seq printed */
};

static int
replay_cb(void *arg, uint64_t seq, const uint8_t *entry, size_t len)
{
	struct replay_state *rs = arg;
	json_t *j = NULL, *e = NULL;
	int err, rc = 0;

	cli_busy = 1;
	if ((err = render_entry_bytes(entry, len, &e)) != 0) {
		cli_warnx("audit replay: entry %llu does not decode: %s", (unsigned long long)seq,
		          ihala_strerror(err));
		rs->failed = err == IHALA_ENOMEM ? CLI_LOCAL : CLI_VERIFY;
		rc = 1;
		goto out;
	}
	j = json_pack("{s:I,s:o}", "seq", (json_int_t)seq, "entry", e);
	if (j == NULL || cli_print_json(j) != 0) {
		rs->failed = CLI_LOCAL;
		rc = 1;
		goto out;
	}
	rs->last = seq;
out:
	json_decref(j);
	cli_busy = 0;
	if (cli_stop) {
		rc = 1;
	}
	return rc;
}

static int
audit_replay(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"from", required_argument, NULL, 'f'},
	    {"to", required_argument, NULL, 't'},
	    {"follow", no_argument, NULL, 'F'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct replay_state rs;
	uint64_t from = 1, to = 0;
	int ch, rc, err, follow = 0;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":f:t:Fh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'f':
			if (cli_parse_u64(optarg, &from) != 0 || from == 0) {
				cli_warnx("audit replay: invalid --from '%s' (a seq, from 1)",
				          optarg);
				return CLI_USAGE;
			}
			break;
		case 't':
			if (cli_parse_u64(optarg, &to) != 0 || to == 0) {
				cli_warnx("audit replay: invalid --to '%s' (a seq, from 1)",
				          optarg);
				return CLI_USAGE;
			}
			break;
		case 'F':
			follow = 1;
			break;
		case 'h':
			fputs(replay_usage, stdout);
			return CLI_OK;
		default:
			cli_bad_option("audit replay", ch, argv);
			return CLI_USAGE;
		}
	}
	if (optind < argc) {
		cli_warnx("audit replay: unexpected argument '%s'", argv[optind]);
		return CLI_USAGE;
	}
	if (to != 0 && to < from) {
		cli_warnx("audit replay: --to %llu is before --from %llu", (unsigned long long)to,
		          (unsigned long long)from);
		return CLI_USAGE;
	}
	if (follow) {
		/* the library keeps waiting through EINTR: a signal between entries ends us */
		cli_exit_on_signal = 1;
		cli_catch_signals();
	}
	if ((rc = cli_connect(cli, 1, NULL)) != CLI_OK) {
		return rc;
	}
	memset(&rs, 0, sizeof(rs));
	err = ihala_replay(cli->client, from, to, follow, replay_cb, &rs, cli_timeout(cli));
	if (rs.failed != 0) {
		return rs.failed;
	}
	if (cli_stop) {
		return CLI_OK;
	}
	if (err != 0) {
		return cli_fail(cli, "audit replay", err);
	}
	return CLI_OK;
}

int
cmd_audit(struct cli *cli, int argc, char **argv)
{
	static const char *const later[] = {"verify", "prove", "export", "stats"};
	size_t i;

	if (argc < 2) {
		cli_warnx("audit: a subcommand is missing");
		fputs(audit_usage, stderr);
		return CLI_USAGE;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		fputs(audit_usage, stdout);
		return CLI_OK;
	}
	if (strcmp(argv[1], "replay") == 0) {
		return audit_replay(cli, argc - 1, argv + 1);
	}
	for (i = 0; i < sizeof(later) / sizeof(later[0]); i++) {
		if (strcmp(argv[1], later[i]) == 0) {
			cli_warnx("audit %s: not available yet", later[i]);
			return CLI_USAGE;
		}
	}
	cli_warnx("audit: unknown subcommand '%s'", argv[1]);
	fprintf(stderr, "Try 'ihala audit --help'.\n");
	return CLI_USAGE;
}
