/* cli.c - shared plumbing of the ihala tool: config, connecting, exit codes, JSON output. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "error.h"
#include "log.h"
#include "suggest.h"

volatile sig_atomic_t cli_stop;
volatile sig_atomic_t cli_busy;
volatile sig_atomic_t cli_exit_on_signal;

static void
on_signal(int sig)
{
	if (cli_exit_on_signal && !cli_busy) {
		_exit(0);
	}
	if (cli_stop) {
		/* the second signal: the user insists */
		_exit(128 + sig);
	}
	cli_stop = 1;
}

void
cli_catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: waits return with EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

void
cli_warnx(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("ihala: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void
cli_info(const struct cli *cli, const char *fmt, ...)
{
	va_list ap;

	if (cli->quiet) {
		return;
	}
	fflush(stdout);
	fputs("ihala: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int
cli_is_transport(int err)
{
	switch (err) {
	case IHALA_EUNREACHABLE:
	case IHALA_ETIMEDOUT:
	case IHALA_ECLOSED:
	case IHALA_ERESET:
	case IHALA_ESHUTDOWN:
	case IHALA_ESESSIONS:
	case IHALA_EOVERLOAD:
	case IHALA_EAGAIN:
		return 1;
	default:
		return 0;
	}
}

const char cli_exit_table[] =
    "Exit codes (the same for every command):\n"
    "  0  ok\n"
    "  1  refused by the broker (stderr: \"ihala: refused: CODE: sentence\")\n"
    "  2  usage error or bad input (bad JSON, unknown field, wrong type)\n"
    "  3  broker unreachable or timed out; a submission then waits in the outbox\n"
    "     and is sent on the next run\n"
    "  4  local error (store, configuration, TLS set-up)\n"
    "  5  verification failure (audit verify, audit prove, prove: the log, a proof or a\n"
    "     checkpoint does not verify; directory: no certificate offered is valid)\n"
    "  6  no space left on the disk of this node's data dir; nothing was written:\n"
    "     free some space and run the command again\n";

int
cli_exit_code(int err)
{
	if (err == 0) {
		return CLI_OK;
	}
	if (cli_is_transport(err)) {
		return CLI_UNREACHABLE;
	}
	switch (err) {
	case IHALA_EJSON:
	case IHALA_EINVAL:
		return CLI_USAGE;
	case IHALA_EPROOF:
	case IHALA_ESIGNATURE:
	case IHALA_EINCONSISTENT:
	case IHALA_ETAMPER:
		return CLI_VERIFY;
	case IHALA_ENOTFOUND:
		return CLI_REFUSED;
	case IHALA_ENOSPACE:
		return CLI_NOSPACE;
	default:
		break;
	}
	/* 40-69: the broker refused the message or request */
	if (err <= IHALA_ESCHEMA && err > IHALA_ENOTFOUND) {
		return CLI_REFUSED;
	}
	/* local failures, TLS and certificate problems, protocol bugs */
	return CLI_LOCAL;
}

int
cli_fail(const struct cli *cli, const char *what, int err)
{
	const char *detail = cli->client != NULL ? ihala_errmsg(cli->client) : "";

	if (detail == NULL || detail[0] == '\0') {
		detail = ihala_strerror(err);
	}
	if (cli_exit_code(err) == CLI_REFUSED) {
		cli_warnx("refused: %s: %s", ihala_errname(err), detail);
	} else {
		cli_warnx("%s: %s", what, detail);
	}
	return cli_exit_code(err);
}

static char captured[1024];

void
cli_capture(void)
{
	log_capture(captured, sizeof(captured));
}

const char *
cli_captured(const struct cli *cli, int err)
{
	log_capture(NULL, 0);
	if (err == 0) {
		if (captured[0] != '\0') {
			cli_info(cli, "%s", captured);
		}
		return "";
	}
	return captured[0] != '\0' ? captured : ihala_strerror(err);
}

int
cli_human(const struct cli *cli)
{
	return !cli->json && isatty(STDOUT_FILENO);
}

int
cli_timeout(const struct cli *cli)
{
	uint64_t ms = cli->timeout_ms;

	if (ms == 0 && cli->cfg != NULL) {
		ms = cli->cfg->timeout_ms;
	}
	if (ms == 0) {
		ms = 10000;
	}
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

static void
say_connecting(void *arg, const char *endpoint)
{
	cli_info(arg, "connecting to %s (retrying)", endpoint);
}

int
cli_load_config(struct cli *cli)
{
	struct conf_errors errs;
	const char *path;
	int err;

	if (cli->cfg == NULL) {
		path = clientconf_locate(cli->config_opt);
		if (path == NULL) {
			cli_warnx("no configuration: use --config FILE or set IHALA_CONFIG");
			return CLI_USAGE;
		}
		conf_errors_init(&errs);
		err = clientconf_load(path, &cli->cfg, &errs);
		if (err != 0) {
			fflush(stdout);
			conf_errors_print(&errs, stderr);
			if (conf_errors_count(&errs) == 0) {
				fprintf(stderr, "%s:0: %s\n", path, ihala_strerror(err));
			}
			conf_errors_release(&errs);
			return CLI_LOCAL;
		}
		conf_errors_release(&errs);
		if (!cli->quiet) {
			log_setlevel((enum log_level)cli->cfg->log_level);
		}
	}
	return CLI_OK;
}

int
cli_open(struct cli *cli)
{
	const char *why;
	int err, rc;

	if (cli->client != NULL) {
		return CLI_OK;
	}
	if ((rc = cli_load_config(cli)) != CLI_OK) {
		return rc;
	}
	/* the library logs why it failed (which file, which call); say it in our one line */
	cli_capture();
	err = ihala_open(cli->cfg, &cli->client);
	why = cli_captured(cli, err);
	if (err != 0) {
		cli->client = NULL;
		if (strcmp(why, ihala_strerror(err)) != 0) {
			cli_warnx("cannot open the node: %s", why);
		} else {
			cli_warnx("cannot open the node (data_dir '%s'): %s", cli->cfg->data_dir,
			          why);
		}
		return cli_exit_code(err) == CLI_UNREACHABLE ? CLI_LOCAL : cli_exit_code(err);
	}
	ihala_on_connecting(cli->client, say_connecting, cli);
	/* Only `inbox` takes the agency's deliveries; the others leave them to it (docs/ihala.1,
	 * "Several processes"). */
	if ((err = ihala_take_deliveries(cli->client, cli->deliveries)) != 0) {
		cli_warnx("%s", ihala_errmsg(cli->client));
		return CLI_LOCAL;
	}
	return CLI_OK;
}

int
cli_connect(struct cli *cli, int report, int *errp)
{
	int rc, err;

	if (errp != NULL) {
		*errp = 0;
	}
	if ((rc = cli_open(cli)) != CLI_OK) {
		return rc;
	}
	err = ihala_connect(cli->client, cli_timeout(cli));
	if (errp != NULL) {
		*errp = err;
	}
	if (err == 0) {
		return CLI_OK;
	}
	rc = cli_exit_code(err);
	if (rc == CLI_REFUSED) {
		/* the broker refused the session itself: a set-up problem on this side */
		rc = CLI_LOCAL;
	}
	if (report || rc != CLI_UNREACHABLE) {
		const char *detail = ihala_errmsg(cli->client);

		if (detail == NULL || detail[0] == '\0') {
			detail = ihala_strerror(err);
		}
		if (strstr(detail, ihala_errname(err)) != NULL) {
			cli_warnx("cannot connect to %s: %s", cli->cfg->broker, detail);
		} else {
			cli_warnx("cannot connect to %s: %s: %s", cli->cfg->broker,
			          ihala_errname(err), detail);
		}
	}
	return rc;
}

void
cli_release(struct cli *cli)
{
	ihala_close(cli->client);
	cli->client = NULL;
	clientconf_free(cli->cfg);
	cli->cfg = NULL;
}

int
cli_print_json(json_t *j)
{
	/* JSON_ENSURE_ASCII stays off: Arabic and Kurdish names are printed as they are */
	if (json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER) != 0 ||
	    fputc('\n', stdout) == EOF || fflush(stdout) != 0) {
		cli_warnx("cannot write to standard output: %s", strerror(errno));
		return -1;
	}
	return 0;
}

void
cli_bad_option(const char *cmd, int ch, char **argv, const struct option *longopts)
{
	const char *arg = argv[optind - 1], *near = NULL;
	unsigned best = SUGGEST_FAR;
	char name[64];
	size_t i;

	if (ch == ':') {
		if (optopt != 0 && strncmp(arg, "--", 2) != 0) {
			cli_warnx("%s: option '-%c' needs a value", cmd, optopt);
		} else {
			cli_warnx("%s: option '%s' needs a value", cmd, arg);
		}
	} else if (optopt != 0) {
		cli_warnx("%s: unknown option '-%c'", cmd, optopt);
	} else {
		/* "--too=moh": the name is what comes before '=' */
		if (strncmp(arg, "--", 2) == 0 && strlen(arg + 2) < sizeof(name)) {
			snprintf(name, sizeof(name), "%.*s", (int)strcspn(arg + 2, "="), arg + 2);
			for (i = 0; longopts != NULL && longopts[i].name != NULL; i++) {
				if (suggest_near(name, longopts[i].name, &best)) {
					near = longopts[i].name;
				}
			}
		}
		if (near != NULL) {
			cli_warnx("%s: unknown option '%s' (did you mean '--%s'?)", cmd, arg, near);
		} else {
			cli_warnx("%s: unknown option '%s'", cmd, arg);
		}
	}
	fprintf(stderr, "Try 'ihala %s --help'.\n", cmd);
}

int
cli_parse_u64(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (s == NULL || *s < '0' || *s > '9') {
		return -1;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0') {
		return -1;
	}
	*out = v;
	return 0;
}

int
cli_read_file(const char *path, size_t max, char **bufp, size_t *lenp)
{
	FILE *fp;
	char *buf = NULL, *nb;
	size_t len = 0, cap = 0, n;
	int saved;

	*bufp = NULL;
	*lenp = 0;
	if (strcmp(path, "-") == 0) {
		fp = stdin;
	} else if ((fp = fopen(path, "rb")) == NULL) {
		return -1;
	}
	for (;;) {
		if (len == cap) {
			if (cap > max) {
				errno = EFBIG;
				goto fail;
			}
			cap = cap == 0 ? 8192 : cap * 2;
			if (cap > max + 1) {
				cap = max + 1;
			}
			if ((nb = realloc(buf, cap + 1)) == NULL) {
				goto fail;
			}
			buf = nb;
		}
		errno = 0;
		n = fread(buf + len, 1, cap - len, fp);
		len += n;
		if (n == 0) {
			if (ferror(fp)) {
				if (errno == 0) {
					errno = EIO;
				}
				goto fail;
			}
			break;
		}
	}
	if (len > max) {
		errno = EFBIG;
		goto fail;
	}
	if (buf == NULL && (buf = malloc(1)) == NULL) {
		goto fail;
	}
	buf[len] = '\0';
	if (fp != stdin) {
		fclose(fp);
	}
	*bufp = buf;
	*lenp = len;
	return 0;
fail:
	saved = errno;
	free(buf);
	if (fp != stdin) {
		fclose(fp);
	}
	errno = saved;
	return -1;
}
