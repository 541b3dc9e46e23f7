/* main.c - the ihala command-line tool: global options and subcommand dispatch. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "suggest.h"
#include "log.h"
#include "nodump.h"

#ifndef IHALA_VERSION
#define IHALA_VERSION "0.1.0"
#endif

/*
 * Exit codes (documented in usage() below and in cli.h):
 *   0 ok; 1 refused by the broker; 2 usage error or bad input; 3 broker unreachable or
 *   timed out (submissions wait in the outbox); 4 local error (store, config, TLS set-up);
 *   5 verification failure (audit).
 */

struct command {
	const char *name;
	int (*run)(struct cli *, int, char **);
	const char *summary;
};

static const struct command commands[] = {
    {"refer", cmd_refer, "submit a new referral (--to AGENCY --file REFERRAL.json)"},
    {"accept", cmd_accept, "accept a referral received"},
    {"decline", cmd_decline, "decline a referral received (--reason CODE)"},
    {"progress", cmd_progress, "report progress (in-progress, on-hold)"},
    {"outcome", cmd_outcome, "close with the outcome (--file OUTCOME.json)"},
    {"cancel", cmd_cancel, "withdraw a referral made (--reason CODE)"},
    {"note", cmd_note, "attach a note to a referral (--text TEXT)"},
    {"erase", cmd_erase, "erase a referral's sealed parts everywhere (--reason CODE)"},
    {"inbox", cmd_inbox, "take deliveries: print them or run a command on each"},
    {"status", cmd_status, "state and history of one referral"},
    {"list", cmd_list, "the referrals this node sent or received ([--state S] [--overdue])"},
    {"outbox", cmd_outbox, "send what waits in the outbox; list, retry, drop rejected messages"},
    {"directory", cmd_directory, "the encryption certificate this node seals to for AGENCY"},
    {"prove", cmd_prove, "verify that an entry is in the broker's signed log (SEQ|MESSAGE_ID)"},
    {"audit", cmd_audit, "auditors: replay, verify, prove, export, stats"},
    {"web", cmd_web, "serve this node's inbox to a browser ([--listen ADDR:PORT])"},
    {"web-user", cmd_web_user, "the clerks who may log in to 'ihala web' (add, list, remove)"},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void
usage(FILE *fp)
{
	size_t i;

	fprintf(fp,
	        "usage: ihala [--config FILE] [--timeout DURATION] [--json] [-q] COMMAND [ARGS]\n"
	        "\n"
	        "The command-line client of an ihala node: JSON on stdout, messages for people\n"
	        "on stderr. On a terminal, inbox, status, list, outbox, audit replay and the\n"
	        "receipts print for people (tables, local times) instead; --json keeps JSON.\n"
	        "\n"
	        "  -c, --config FILE        client configuration (default: $IHALA_CONFIG)\n"
	        "  -t, --timeout DURATION   connect and request timeout (500ms, 10s, 2m; default\n"
	        "                           the config's 'timeout')\n"
	        "  -j, --json               JSON lines on stdout even on a terminal\n"
	        "  -q, --quiet              only errors on stderr\n"
	        "      --clerk ID           the pseudonymous id of the clerk acting, carried in\n"
	        "                           clear by every message submitted (a-z, 0-9, _ -)\n"
	        "  -h, --help               this help\n"
	        "      --version            print the version\n"
	        "\n"
	        "Commands:\n");
	for (i = 0; i < NCOMMANDS; i++) {
		fprintf(fp, "  %-9s %s\n", commands[i].name, commands[i].summary);
	}
	fprintf(fp,
	        "\n"
	        "'ihala COMMAND --help' describes each command.\n"
	        "\n"
	        "%s",
	        cli_exit_table);
}

/* "unknown command 'acept' (did you mean 'accept'?)" */
static void
unknown_command(const char *name)
{
	const char *near = NULL;
	unsigned best = SUGGEST_FAR;
	size_t i;

	for (i = 0; i < NCOMMANDS; i++) {
		if (suggest_near(name, commands[i].name, &best)) {
			near = commands[i].name;
		}
	}
	if (near != NULL) {
		cli_warnx("unknown command '%s' (did you mean '%s'?)", name, near);
	} else {
		cli_warnx("unknown command '%s'", name);
	}
}

static const struct command *
find_command(const char *name)
{
	size_t i;

	for (i = 0; i < NCOMMANDS; i++) {
		if (strcmp(commands[i].name, name) == 0) {
			return &commands[i];
		}
	}
	return NULL;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'}, {"timeout", required_argument, NULL, 't'},
	    {"quiet", no_argument, NULL, 'q'},        {"help", no_argument, NULL, 'h'},
	    {"json", no_argument, NULL, 'j'},         {"version", no_argument, NULL, 'V'},
	    {"clerk", required_argument, NULL, 'k'},  {NULL, 0, NULL, 0},
	};
	const struct command *cmd;
	struct cli cli;
	int ch, rc;

	memset(&cli, 0, sizeof(cli));
	/* a reader that goes away is an error on write, not a silent death */
	signal(SIGPIPE, SIG_IGN);
	log_init("ihala", 1);
	log_setlevel(LOG_LEVEL_WARN);
	/* Deliveries and the local store hold survivors' data in clear: no core file of them.
	 * Not RLIMIT_CORE, which the commands run by 'inbox --exec' would inherit. */
	(void)nodump_init(0);

	opterr = 0;
	/* '+': stop at the command; its options are its own */
	while ((ch = getopt_long(argc, argv, "+:c:t:qjh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			cli.config_opt = optarg;
			break;
		case 't':
			if (conf_parse_duration(optarg, &cli.timeout_ms) != 0 ||
			    cli.timeout_ms < 1 || cli.timeout_ms > 3600000) {
				cli_warnx(
				    "invalid --timeout '%s' (a duration from 1ms to 1h: 500ms, "
				    "10s, 2m)",
				    optarg);
				return CLI_USAGE;
			}
			break;
		case 'q':
			cli.quiet = 1;
			log_setlevel(LOG_LEVEL_ERROR);
			break;
		case 'j':
			cli.json = 1;
			break;
		case 'k':
			if (!id_clerk_valid(optarg)) {
				cli_warnx(
				    "invalid --clerk '%s' (%s: a pseudonymous clerk id, never a "
				    "name)",
				    optarg, ID_CLERK_RULE);
				return CLI_USAGE;
			}
			cli.clerk = optarg;
			break;
		case 'h':
			usage(stdout);
			return CLI_OK;
		case 'V':
			printf("ihala %s\n", IHALA_VERSION);
			return CLI_OK;
		case ':':
			cli_warnx("option '%s' needs a value", argv[optind - 1]);
			fprintf(stderr, "Try 'ihala --help'.\n");
			return CLI_USAGE;
		default:
			if (optopt != 0) {
				cli_warnx("unknown option '-%c'", optopt);
			} else {
				const char *arg = argv[optind - 1], *near = NULL;
				unsigned best = SUGGEST_FAR;
				size_t i;

				for (i = 0; strncmp(arg, "--", 2) == 0 && longopts[i].name != NULL;
				     i++) {
					if (suggest_near(arg + 2, longopts[i].name, &best)) {
						near = longopts[i].name;
					}
				}
				if (near != NULL) {
					cli_warnx("unknown option '%s' (did you mean '--%s'?)", arg,
					          near);
				} else {
					cli_warnx("unknown option '%s'", arg);
				}
			}
			fprintf(stderr, "Try 'ihala --help'.\n");
			return CLI_USAGE;
		}
	}
	if (optind >= argc) {
		cli_warnx("a command is missing");
		usage(stderr);
		return CLI_USAGE;
	}
	if (strcmp(argv[optind], "help") == 0) {
		if (optind + 1 >= argc) {
			usage(stdout);
			return CLI_OK;
		}
		if ((cmd = find_command(argv[optind + 1])) == NULL) {
			unknown_command(argv[optind + 1]);
			return CLI_USAGE;
		}
		{
			char *hargv[] = {argv[optind + 1], "--help", NULL};

			return cmd->run(&cli, 2, hargv);
		}
	}
	if ((cmd = find_command(argv[optind])) == NULL) {
		unknown_command(argv[optind]);
		fprintf(stderr, "Try 'ihala --help'.\n");
		return CLI_USAGE;
	}
	cli.deliveries = cmd->run == cmd_inbox || cmd->run == cmd_web;
	rc = cmd->run(&cli, argc - optind, argv + optind);
	cli_release(&cli);
	return rc;
}
