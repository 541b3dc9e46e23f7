/* directory.c - `ihala directory AGENCY`: the encryption certificate this node seals to. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "error.h"
#include "hex.h"
#include "seal.h"
#include "table.h"

static const char directory_usage[] =
    "usage: ihala directory AGENCY\n"
    "\n"
    "Ask the broker's directory for AGENCY's encryption certificates and show the one this\n"
    "node would seal to: the newest that chains to this node's own CA ('ca_file', and\n"
    "'crl_file' when set), is valid now, is for key agreement only, and names AGENCY. The\n"
    "broker vouches for none of them: a certificate it substitutes (another agency's,\n"
    "another CA's, expired, revoked, a signing one) is refused here, with what is wrong.\n"
    "Prints {\"agency\",\"subject\",\"serial\",\"notBefore\",\"notAfter\",\"sha256\",\"offered\"}\n"
    "(times in UTC, \"offered\": how many the directory lists), or for people on a terminal.\n"
    "\n"
    "  -h, --help           this help\n"
    "\n"
    "Exit: 0 a valid certificate, 1 refused (NOT_FOUND: the broker knows no such agency),\n"
    "2 usage, 3 broker unreachable, 4 local error (CA file or CRL unusable),\n"
    "5 no certificate the directory lists for AGENCY is valid here (stderr says why, for each).\n";

/* "2026-12-03T06:50:18Z" */
static const char *
utc(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
		snprintf(buf, len, "?");
	}
	return buf;
}

int
cmd_directory(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct ihala_enc_cert e;
	char nb[32], na[32], fp[2 * 32 + 1];
	const char *agency;
	json_t *j;
	int ch, rc, err;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'h':
			fputs(directory_usage, stdout);
			return CLI_OK;
		default:
			cli_bad_option("directory", ch, argv, longopts);
			return CLI_USAGE;
		}
	}
	if (optind >= argc) {
		cli_warnx("directory: an AGENCY is needed");
		fprintf(stderr, "Try 'ihala directory --help'.\n");
		return CLI_USAGE;
	}
	agency = argv[optind++];
	if (optind < argc) {
		cli_warnx("directory: unexpected argument '%s'", argv[optind]);
		return CLI_USAGE;
	}
	if (!id_agency_valid(agency, strlen(agency))) {
		cli_warnx("directory: '%s' is not an agency id (%s)", agency, ID_AGENCY_RULE);
		return CLI_USAGE;
	}
	if ((rc = cli_connect(cli, 1, NULL)) != CLI_OK) {
		return rc;
	}
	err = ihala_directory_pick(cli->client, agency, cli_timeout(cli), &e);
	if (err == SEAL_ECERT || err == SEAL_EREVOKED) {
		/* Not the broker's refusal: this node refuses what the broker offered. */
		cli_warnx("directory: %s", ihala_errmsg(cli->client));
		return CLI_VERIFY;
	}
	if (err != 0) {
		return cli_fail(cli, "directory", err);
	}
	hex_encode(e.sha256, sizeof(e.sha256), fp);
	utc(e.not_before, nb, sizeof(nb));
	utc(e.not_after, na, sizeof(na));
	if (cli_human(cli)) {
		printf("agency:      %s\n"
		       "subject:     %s\n"
		       "serial:      %s\n"
		       "valid:       %s .. %s\n"
		       "sha256:      %s\n"
		       "offered:     %zu\n",
		       agency, e.subject, e.serial, nb, na, fp, e.offered);
		rc = fflush(stdout) == 0 ? CLI_OK : CLI_LOCAL;
		ihala_enc_cert_release(&e);
		return rc;
	}
	j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:I}", "agency", agency, "subject", e.subject,
	              "serial", e.serial, "notBefore", nb, "notAfter", na, "sha256", fp, "offered",
	              (json_int_t)e.offered);
	ihala_enc_cert_release(&e);
	rc = j != NULL && cli_print_json(j) == 0 ? CLI_OK : CLI_LOCAL;
	json_decref(j);
	return rc;
}
