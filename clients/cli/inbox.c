/* inbox.c - `ihala inbox`: take deliveries, print or hand them to a command, ack them. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "error.h"
#include "render.h"
#include "view.h"

/* Silence that ends a run without --watch, and the wait per turn with --watch. */
#define QUIET_MS 1000

static const char inbox_usage[] =
    "usage: ihala inbox [--watch] [--exec CMD] [--count N]\n"
    "\n"
    "Take the deliveries addressed to this agency (referrals, status changes, outcomes,\n"
    "notes, and the broker's own status events) and print each as one JSON line:\n"
    "  {\"seq\":N,\"kind\":\"submission\",\"sender\":\"dma\",\"recipient\":\"moh\",\n"
    "   \"brokerTimeMs\":MS,\"envelope\":{...}}\n"
    "or, for an entry the broker made (kind \"broker-status\", ...), \"event\":{...} instead of\n"
    "\"envelope\" (the field names of the log entry, as audit replay and export write them).\n"
    "On a terminal (without --json) a row per delivery instead: seq, local time, sender,\n"
    "recipient, referral, and what it says.\n"
    "Each delivery is acknowledged to the broker once it was printed (or CMD\n"
    "succeeded); an unacknowledged one comes again on the next run.\n"
    "\n"
    "  -w, --watch          keep waiting for deliveries until SIGINT or SIGTERM\n"
    "  -e, --exec CMD       run CMD (with /bin/sh -c) per delivery, the JSON line on its\n"
    "                       standard input and IHALA_SEQ=<seq> in its environment; acknowledge\n"
    "                       only when it exits 0, else stop (the delivery comes again)\n"
    "  -n, --count N        stop after N deliveries\n"
    "  -h, --help           this help\n"
    "\n"
    "Without --watch it stops after about one second without a new delivery.\n"
    "CMD runs at least once per delivery: if this process is killed after CMD succeeded\n"
    "and before the acknowledgement was recorded, the same delivery runs again. Make CMD\n"
    "idempotent by keying on IHALA_SEQ, and act only on a complete input line.\n"
    "Exit: 0 ok, 1 CMD failed (nothing more was taken), 2 usage, 3 broker unreachable,\n"
    "4 local error.\n";

/* Run cmd with the line on its stdin; returns its wait status, or -1 (errno set). */
static int
run_exec(const char *cmd, const char *line, size_t len, uint64_t seq)
{
	char seqbuf[32];
	int fds[2], status, saved;
	pid_t pid;
	size_t off = 0;
	ssize_t n;

	if (pipe(fds) != 0) {
		return -1;
	}
	snprintf(seqbuf, sizeof(seqbuf), "%llu", (unsigned long long)seq);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		saved = errno;
		close(fds[0]);
		close(fds[1]);
		errno = saved;
		return -1;
	}
	if (pid == 0) {
		/* the child: stdin from the pipe, default signal dispositions, then the shell */
		close(fds[1]);
		if (dup2(fds[0], STDIN_FILENO) < 0) {
			_exit(127);
		}
		close(fds[0]);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		if (setenv("IHALA_SEQ", seqbuf, 1) != 0) {
			_exit(127);
		}
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(fds[0]);
	/* SIGPIPE is ignored in the tool: a command that does not read all gets EPIPE here */
	while (off < len) {
		n = write(fds[1], line + off, len - off);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			break;
		}
		off += (size_t)n;
	}
	close(fds[1]);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			return -1;
		}
	}
	return status;
}

static void
describe_status(int status, char *buf, size_t len)
{
	if (WIFEXITED(status)) {
		snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
	} else if (WIFSIGNALED(status)) {
		snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
	} else {
		snprintf(buf, len, "wait status %d", status);
	}
}

int
cmd_inbox(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"watch", no_argument, NULL, 'w'},
	    {"exec", required_argument, NULL, 'e'},
	    {"count", required_argument, NULL, 'n'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct ihala_delivery d;
	const char *exec = NULL;
	uint64_t count = 0, taken = 0;
	int ch, rc, err, watch = 0, reported = 0, human = cli_human(cli);

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":we:n:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'w':
			watch = 1;
			break;
		case 'e':
			exec = optarg;
			break;
		case 'n':
			if (cli_parse_u64(optarg, &count) != 0 || count == 0) {
				cli_warnx("inbox: invalid --count '%s' (a positive number)",
				          optarg);
				return CLI_USAGE;
			}
			break;
		case 'h':
			fputs(inbox_usage, stdout);
			return CLI_OK;
		default:
			cli_bad_option("inbox", ch, argv, longopts);
			return CLI_USAGE;
		}
	}
	if (optind < argc) {
		cli_warnx("inbox: unexpected argument '%s'", argv[optind]);
		fprintf(stderr, "Try 'ihala inbox --help'.\n");
		return CLI_USAGE;
	}
	if (exec != NULL && exec[0] == '\0') {
		cli_warnx("inbox: --exec needs a command");
		return CLI_USAGE;
	}
	if (watch) {
		cli_catch_signals();
	}
	if ((rc = cli_connect(cli, 1, NULL)) != CLI_OK) {
		return rc;
	}
	while (!cli_stop && (count == 0 || taken < count)) {
		json_t *j = NULL;
		char *line = NULL;

		memset(&d, 0, sizeof(d));
		err = ihala_next_delivery(cli->client, QUIET_MS, &d);
		if (err == IHALA_ETIMEDOUT) {
			if (watch) {
				continue;
			}
			break;
		}
		if (err != 0) {
			if (watch && cli_is_transport(err)) {
				/* the library reconnects on the next call; say so once */
				if (!reported) {
					cli_warnx("inbox: %s; still trying",
					          ihala_errmsg(cli->client));
					reported = 1;
				}
				continue;
			}
			return cli_fail(cli, "inbox", err);
		}
		reported = 0;
		if ((err = render_delivery(&d, &j)) != 0) {
			cli_warnx(
			    "inbox: delivery %llu cannot be shown: %s; it is not acknowledged",
			    (unsigned long long)d.seq, ihala_strerror(err));
			ihala_delivery_release(&d);
			return cli_exit_code(err) == CLI_USAGE ? CLI_LOCAL : cli_exit_code(err);
		}
		/* kept before it is shown: status shows its details later */
		cli_journal(cli, d.seq, j);
		if (exec == NULL) {
			rc = human ? view_inbox_row(j, taken == 0) : cli_print_json(j);
			json_decref(j);
			if (rc != 0) {
				ihala_delivery_release(&d);
				return CLI_LOCAL;
			}
		} else {
			char how[64], *nl;
			int status;

			/* the same line as on stdout, newline-terminated for line readers */
			line = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
			json_decref(j);
			if (line == NULL || (nl = realloc(line, strlen(line) + 2)) == NULL) {
				free(line);
				ihala_delivery_release(&d);
				return cli_fail(cli, "inbox", IHALA_ENOMEM);
			}
			line = nl;
			strcat(line, "\n");
			status = run_exec(exec, line, strlen(line), d.seq);
			if (status < 0) {
				cli_warnx("inbox: cannot run '%s': %s", exec, strerror(errno));
				free(line);
				ihala_delivery_release(&d);
				return CLI_LOCAL;
			}
			free(line);
			if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
				describe_status(status, how, sizeof(how));
				cli_warnx(
				    "inbox: '%s' failed (%s) for delivery %llu; not acknowledged: "
				    "it comes again on the next run",
				    exec, how, (unsigned long long)d.seq);
				ihala_delivery_release(&d);
				return CLI_REFUSED;
			}
		}
		err = ihala_ack(cli->client, d.seq);
		ihala_delivery_release(&d);
		if (err != 0) {
			return cli_fail(cli, "inbox", err);
		}
		taken++;
	}
	return CLI_OK;
}
