/* status.c - `ihala status`: the state and history of one referral, as JSON. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "pbjson.h"

static const char status_usage[] =
    "usage: ihala status REFERRAL_ID\n"
    "\n"
    "Ask the broker for the current state and the history of a referral this agency is\n"
    "party to (auditors: any referral), and print it as JSON on stdout:\n"
    "  {\"referralId\":..,\"referrer\":..,\"recipient\":..,\"status\":\"accepted\",\n"
    "   \"priority\":..,\"deadlineMs\":..,\"history\":[{\"seq\":..,\"timeMs\":..,\"agency\":..,\n"
    "   \"status\":..,\"what\":..},...]}\n"
    "\n"
    "  -h, --help           this help\n"
    "\n"
    "Exit: 0 ok, 1 refused (UNKNOWN_REFERRAL, NOT_PARTY), 2 usage, 3 broker unreachable,\n"
    "4 local error.\n";

int
cmd_status(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	Ihala__V1__ReferralState *st = NULL;
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
		cli_bad_option("status", ch, argv);
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
	rc = cli_print_json(j) == 0 ? CLI_OK : CLI_LOCAL;
	json_decref(j);
	return rc;
}
