/* prove.c - `ihala prove` (also `ihala audit prove`): fetch and verify an inclusion proof. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "clock.h"
#include "error.h"
#include "hex.h"

static const char prove_usage[] =
    "usage: ihala prove [OPTIONS] SEQ|MESSAGE_ID\n"
    "       ihala audit prove [OPTIONS] SEQ|MESSAGE_ID\n"
    "\n"
    "Ask the broker for the inclusion proof of one log entry and verify it here, against the\n"
    "broker's signed checkpoint: the checkpoint's Ed25519 signature (with the broker's key),\n"
    "its consistency with the last checkpoint this node kept (which it then replaces), and\n"
    "the audit path from the entry's leaf hash to the signed root. Prints\n"
    "{\"seq\",\"treeSize\",\"leafHash\",\"root\",\"verified\":true}.\n"
    "\n"
    "An argument of digits only is a seq; anything else is the message id of one of this\n"
    "agency's own submissions.\n"
    "\n"
    "  -k, --key PUB.pem       the broker's checkpoint public key (PEM, or a C2SP verifier\n"
    "                          key); default: checkpoint_key of the config\n"
    "  -m, --message-id ID     prove this agency's submission ID (an id of digits only)\n"
    "  -w, --wait              a fresh entry is covered by the next checkpoint: retry until\n"
    "                          one covers it, up to --timeout\n"
    "  -h, --help              this help\n"
    "\n"
    "Exit: 0 verified, 1 refused (NOT_FOUND: no such entry, a seq beyond the end of the log,\n"
    "or no checkpoint covers it yet),\n"
    "2 usage, 3 broker unreachable, 4 local error (no checkpoint key configured),\n"
    "5 verification failed (bad signature, bad proof, or a log inconsistent with the\n"
    "checkpoint this node kept).\n";

int
cmd_prove(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"key", required_argument, NULL, 'k'},
	    {"message-id", required_argument, NULL, 'm'},
	    {"wait", no_argument, NULL, 'w'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *key = NULL, *msgid = NULL;
	char leaf[2 * MERKLE_HASH_LEN + 1], root[2 * MERKLE_HASH_LEN + 1];
	struct ihala_proof p;
	uint64_t seq = 0, deadline;
	json_t *j;
	int ch, rc, err, wait = 0;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":k:m:wh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'k':
			key = optarg;
			break;
		case 'm':
			msgid = optarg;
			break;
		case 'w':
			wait = 1;
			break;
		case 'h':
			fputs(prove_usage, stdout);
			return CLI_OK;
		default:
			cli_bad_option("prove", ch, argv, longopts);
			return CLI_USAGE;
		}
	}
	if (msgid == NULL) {
		if (optind >= argc) {
			cli_warnx("prove: a SEQ or a MESSAGE_ID is needed");
			fprintf(stderr, "Try 'ihala prove --help'.\n");
			return CLI_USAGE;
		}
		if (strspn(argv[optind], "0123456789") == strlen(argv[optind])) {
			if (cli_parse_u64(argv[optind], &seq) != 0 || seq == 0) {
				cli_warnx("prove: invalid seq '%s' (from 1)", argv[optind]);
				return CLI_USAGE;
			}
		} else {
			msgid = argv[optind];
		}
		optind++;
	}
	if (optind < argc) {
		cli_warnx("prove: unexpected argument '%s'", argv[optind]);
		return CLI_USAGE;
	}
	if (msgid != NULL && !id_valid(msgid)) {
		cli_warnx("prove: invalid message id '%s' (1..64 printable ASCII characters, no "
		          "space)",
		          msgid);
		return CLI_USAGE;
	}
	if ((rc = cli_connect(cli, 1, NULL)) != CLI_OK) {
		return rc;
	}
	deadline = clock_mono_ms() + (uint64_t)cli_timeout(cli);
	for (;;) {
		err = ihala_prove(cli->client, seq, msgid, key, cli_timeout(cli), &p);
		if (!(wait && err == IHALA_ENOTFOUND && clock_mono_ms() + 300 < deadline)) {
			break;
		}
		nanosleep(&(struct timespec){0, 300 * 1000000L}, NULL);
	}
	if (err != 0) {
		return cli_fail(cli, "prove", err);
	}
	hex_encode(p.leaf_hash, MERKLE_HASH_LEN, leaf);
	hex_encode(p.root, MERKLE_HASH_LEN, root);
	j = json_pack("{s:I,s:I,s:s,s:s,s:b}", "seq", (json_int_t)p.seq, "treeSize",
	              (json_int_t)p.tree_size, "leafHash", leaf, "root", root, "verified", 1);
	free(p.checkpoint);
	if (j == NULL || cli_print_json(j) != 0) {
		json_decref(j);
		return CLI_LOCAL;
	}
	json_decref(j);
	return CLI_OK;
}
