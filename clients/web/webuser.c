/* webuser.c - `ihala web-user`: add, change, list and remove the clerks of `ihala web`. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "accounts.h"
#include "cli.h"
#include "datadir.h"
#include "web.h"

static const char webuser_usage[] =
    "usage: ihala web-user add NAME [--password-stdin]\n"
    "       ihala web-user passwd NAME [--password-stdin]\n"
    "       ihala web-user list\n"
    "       ihala web-user remove NAME\n"
    "\n"
    "The clerks who may log in to 'ihala web' with a name and a password (needed to listen\n"
    "on an address that is not loopback). Kept in the node's data dir, file web-users (mode\n"
    "0600): the name, a random pseudonymous clerk id, and an argon2id hash of the password;\n"
    "never the password. The messages a clerk sends from the pages carry the clerk id, not\n"
    "the name. A running 'ihala web' reads the file at each login.\n"
    "\n"
    "  add NAME        a new clerk; NAME is " ACCOUNTS_NAME_RULE "\n"
    "  passwd NAME     a new password for NAME (the clerk id stays); NAME's open sessions end\n"
    "  list            one JSON line per clerk: {\"name\":..,\"clerkId\":..}\n"
    "  remove NAME     NAME may no longer log in; NAME's open sessions end too\n"
    "  --password-stdin  read the password from the first line of standard input; else it is\n"
    "                  asked twice on the terminal, not echoed. 10..1024 bytes.\n"
    "  -h, --help      this help\n"
    "\n"
    "Exit: 0 ok, 2 usage (a bad name or password, no such clerk, exists already),\n"
    "4 local error (the file cannot be read or written).\n";

/* One line of fp into buf (its end and a \r cut). Its length, or -1 (nothing, or too long). */
static ssize_t
read_line(FILE *fp, char *buf, size_t len)
{
	size_t n;

	if (fgets(buf, (int)len, fp) == NULL) {
		return -1;
	}
	n = strlen(buf);
	if (n > 0 && buf[n - 1] == '\n') {
		buf[--n] = '\0';
	} else if (!feof(fp)) {
		return -1;
	}
	if (n > 0 && buf[n - 1] == '\r') {
		buf[--n] = '\0';
	}
	return (ssize_t)n;
}

/* Ask on the terminal without echo. Its length, or -1. */
static ssize_t
ask(FILE *tty, const char *prompt, char *buf, size_t len)
{
	struct termios old, quiet;
	ssize_t n;

	fputs(prompt, stderr);
	fflush(stderr);
	if (tcgetattr(fileno(tty), &old) != 0) {
		return -1;
	}
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	(void)tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
	n = read_line(tty, buf, len);
	(void)tcsetattr(fileno(tty), TCSAFLUSH, &old);
	fputs("\n", stderr);
	return n;
}

/* The password into buf (ACCOUNTS_PASSWORD_MAX + 2 bytes). Its length, or -1 (said why). */
static ssize_t
get_password(int from_stdin, char *buf, size_t len)
{
	char again[ACCOUNTS_PASSWORD_MAX + 2];
	ssize_t n;
	FILE *tty;

	if (from_stdin) {
		if ((n = read_line(stdin, buf, len)) < 0) {
			cli_warnx("web-user: no password on standard input (one line, at most %d "
			          "bytes)",
			          ACCOUNTS_PASSWORD_MAX);
		}
		return n;
	}
	if (!isatty(STDIN_FILENO) || (tty = fopen("/dev/tty", "r+e")) == NULL) {
		cli_warnx("web-user: no terminal to ask the password on: use --password-stdin");
		return -1;
	}
	n = ask(tty, "Password: ", buf, len);
	if (n >= 0 && (ask(tty, "Again: ", again, sizeof(again)) != n ||
	               memcmp(buf, again, (size_t)n) != 0)) {
		cli_warnx("web-user: the two passwords differ; nothing changed");
		n = -1;
	} else if (n < 0) {
		cli_warnx("web-user: no password read");
	}
	OPENSSL_cleanse(again, sizeof(again));
	fclose(tty);
	return n;
}

int
cmd_web_user(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"password-stdin", no_argument, NULL, 'p'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	char path[PATH_MAX], why[512], pw[ACCOUNTS_PASSWORD_MAX + 2];
	const char *verb, *name = NULL;
	struct accounts a;
	ssize_t pwlen;
	size_t i;
	int ch, rc, from_stdin = 0, lockfd = -1, changes;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			from_stdin = 1;
			break;
		case 'h':
			fputs(webuser_usage, stdout);
			return CLI_OK;
		default:
			cli_bad_option("web-user", ch, argv, longopts);
			return CLI_USAGE;
		}
	}
	if (optind >= argc) {
		cli_warnx("web-user: say add, passwd, list or remove");
		fprintf(stderr, "Try 'ihala web-user --help'.\n");
		return CLI_USAGE;
	}
	verb = argv[optind++];
	changes = strcmp(verb, "list") != 0;
	if (strcmp(verb, "add") != 0 && strcmp(verb, "passwd") != 0 && strcmp(verb, "list") != 0 &&
	    strcmp(verb, "remove") != 0) {
		cli_warnx("web-user: unknown action '%s' (add, passwd, list or remove)", verb);
		return CLI_USAGE;
	}
	if (changes) {
		if (optind >= argc) {
			cli_warnx("web-user: %s needs a NAME", verb);
			return CLI_USAGE;
		}
		name = argv[optind++];
		if (!accounts_name_valid(name)) {
			cli_warnx("web-user: invalid name '%s' (%s)", name, ACCOUNTS_NAME_RULE);
			return CLI_USAGE;
		}
	}
	if (optind < argc) {
		cli_warnx("web-user: unexpected argument '%s'", argv[optind]);
		return CLI_USAGE;
	}
	if ((rc = cli_load_config(cli)) != CLI_OK) {
		return rc;
	}
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", cli->cfg->data_dir, ACCOUNTS_FILE) >=
	    sizeof(path)) {
		cli_warnx("web-user: data_dir '%s' is too long", cli->cfg->data_dir);
		return CLI_LOCAL;
	}
	if (changes) {
		/* one writer at a time: two adds at once both kept */
		if (datadir_prepare("node", cli->cfg->data_dir, DATADIR_CREATE) != 0 ||
		    datadir_lock_mode("web users", cli->cfg->data_dir, ACCOUNTS_FILE ".lock", 0,
		                      &lockfd) != 0) {
			cli_warnx("web-user: '%s' cannot be locked (another web-user runs?)", path);
			return CLI_LOCAL;
		}
	}
	if (accounts_load(path, &a, why, sizeof(why)) != 0) {
		cli_warnx("web-user: %s", why);
		rc = CLI_LOCAL;
		goto out;
	}
	rc = CLI_OK;
	if (strcmp(verb, "list") == 0) {
		for (i = 0; i < a.n && rc == CLI_OK; i++) {
			json_t *j = json_pack("{s:s, s:s}", "name", a.v[i].name, "clerkId",
			                      a.v[i].clerk_id);

			if (j == NULL || cli_print_json(j) != 0) {
				rc = CLI_LOCAL;
			}
			json_decref(j);
		}
	} else if (strcmp(verb, "remove") == 0) {
		if (accounts_remove(&a, name) != 0) {
			cli_warnx("web-user: there is no account '%s'", name);
			rc = CLI_USAGE;
		}
	} else {
		int create = strcmp(verb, "add") == 0;

		if (create && accounts_find(&a, name) != NULL) {
			cli_warnx("web-user: '%s' exists already (web-user passwd changes its "
			          "password)",
			          name);
			rc = CLI_USAGE;
		} else if (!create && accounts_find(&a, name) == NULL) {
			cli_warnx("web-user: there is no account '%s'", name);
			rc = CLI_USAGE;
		} else if ((pwlen = get_password(from_stdin, pw, sizeof(pw))) < 0) {
			rc = CLI_USAGE;
		} else if (accounts_set(&a, name, pw, (size_t)pwlen, create, why, sizeof(why)) !=
		           0) {
			cli_warnx("web-user: %s", why);
			rc = CLI_USAGE;
		}
		OPENSSL_cleanse(pw, sizeof(pw));
	}
	if (rc == CLI_OK && changes) {
		if (accounts_save(path, &a, why, sizeof(why)) != 0) {
			cli_warnx("web-user: %s", why);
			rc = CLI_LOCAL;
		} else {
			const struct account *acc = accounts_find(&a, name);

			cli_info(cli, "web-user: %s %s%s%s", name,
			         strcmp(verb, "remove") == 0
			             ? "removed"
			             : (strcmp(verb, "add") == 0 ? "added, clerk id "
			                                         : "has a new password, clerk id "),
			         acc != NULL ? acc->clerk_id : "", "");
		}
	}
	accounts_release(&a);
out:
	if (lockfd >= 0) {
		close(lockfd);
	}
	return rc;
}
