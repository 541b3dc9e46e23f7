/* cli.h - what the ihala tool's subcommands share: context, exit codes, output helpers. */
#ifndef IHALA_CLI_H
#define IHALA_CLI_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "clientconf.h"
#include "id.h"
#include "ihala.h"

/*
 * Exit codes of the ihala tool (also printed by `ihala --help`):
 *   0  ok
 *   1  refused by the broker (policy or validation); stderr says
 *      "ihala: refused: CODE_NAME: sentence"
 *   2  usage error or bad input (bad JSON, unknown field, wrong type)
 *   3  broker unreachable or timed out (a submission then waits in the outbox)
 *   4  local error (store, configuration, TLS set-up, certificate)
 *   5  verification failure (audit verify, audit prove, prove: the log, a proof or a
 *      checkpoint does not verify; directory: no certificate offered for the agency is valid)
 *   6  no space left on the disk of the node's data dir (nothing was written)
 */
/* The table above for people, as `ihala --help` prints it (every command uses these codes;
 * docs/ihala.1 EXIT STATUS says the same). */
extern const char cli_exit_table[];

enum cli_exit {
	CLI_OK = 0,
	CLI_REFUSED = 1,
	CLI_USAGE = 2,
	CLI_UNREACHABLE = 3,
	CLI_LOCAL = 4,
	CLI_VERIFY = 5,
	CLI_NOSPACE = 6,
};

/*
 * One run of the tool. config_opt points into argv. cfg and client are owned by the struct
 * and released by cli_release(). timeout_ms is the --timeout value, or 0 when not given
 * (the config's timeout then applies: see cli_timeout()).
 */
struct cli {
	const char *config_opt;
	uint64_t timeout_ms;
	int quiet;
	int json;          /* --json: JSON on stdout even on a terminal */
	int deliveries;    /* this command takes the node's deliveries (inbox) */
	const char *clerk; /* --clerk: the clerk id the submitted messages carry, or NULL */
	struct client_config *cfg;
	struct ihala_client *client;
};

/* Load the configuration (every FILE:LINE: error printed) into cli->cfg, once. Returns CLI_OK
 * or the exit code to use. */
int cli_load_config(struct cli *cli);

/* Load the configuration (every FILE:LINE: error printed) and open the node's client.
 * Returns CLI_OK or the exit code to use (the reason was printed). */
int cli_open(struct cli *cli);

/* cli_open, then connect and wait for the broker's Welcome. Returns CLI_OK or the exit code
 * to use; with the code in *err (may be NULL) so a caller can go on when the broker is
 * merely unreachable (then the message is printed only when report != 0). */
int cli_connect(struct cli *cli, int report, int *err);

/* Close the client and free the configuration; the struct may be reused. */
void cli_release(struct cli *cli);

/* 1 when stdout is a terminal and --json was not given: inbox, status and list then print
 * for people (tables, local times) instead of JSON lines. */
int cli_human(const struct cli *cli);

/* Timeout for network calls: --timeout, else the config's, in milliseconds. */
int cli_timeout(const struct cli *cli);

/* The exit code for a library error code (0 gives CLI_OK). */
int cli_exit_code(int err);

/* 1 when err means the broker did not answer (unreachable, timeout, session lost). */
int cli_is_transport(int err);

/* "ihala: " + message on stderr, newline added. Always printed. */
void cli_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same, but only without -q. */
void cli_info(const struct cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "ihala: WHAT: sentence" for a library error, with the client's detail when it has one.
 * Returns the exit code for err. */
int cli_fail(const struct cli *cli, const char *what, int err);

/*
 * Say what a library call failed on: cli_capture() before it keeps the warning the library
 * logs (which file, which call, errno) instead of writing it; cli_captured() after it ends
 * that and returns the text to print for err (the warning, else ihala_strerror(err); a
 * static buffer, valid until the next cli_capture). With err 0 a kept warning is printed
 * (cli_info) and "" returned.
 */
void cli_capture(void);
const char *cli_captured(const struct cli *cli, int err);

/* Write j (borrowed) as one compact UTF-8 line (no \u escapes) on stdout and flush.
 * Returns 0, or -1 when stdout failed (reported on stderr). */
int cli_print_json(json_t *j);

/* Report a getopt_long failure of subcommand `cmd` (ch is ':' or '?', optstring started with
 * ':'), with the nearest of its longopts for a mistyped one ("did you mean '--to'?"), and
 * point to --help. */
struct option;
void cli_bad_option(const char *cmd, int ch, char **argv, const struct option *longopts);

/* Strict parsers for option values; return 0 or -1 (nothing printed). */
int cli_parse_u64(const char *s, uint64_t *out);

/* Read a whole file ("-": standard input) of at most max bytes into a malloc'd buffer
 * (NUL-terminated; *len excludes the NUL). Returns 0 or -1 with errno set (EFBIG when too
 * large). The caller frees *buf. */
int cli_read_file(const char *path, size_t max, char **buf, size_t *len);

/* Subcommands: argv[0] is the subcommand's name; each returns an exit code. */
int cmd_refer(struct cli *cli, int argc, char **argv);
int cmd_accept(struct cli *cli, int argc, char **argv);
int cmd_decline(struct cli *cli, int argc, char **argv);
int cmd_progress(struct cli *cli, int argc, char **argv);
int cmd_outcome(struct cli *cli, int argc, char **argv);
int cmd_cancel(struct cli *cli, int argc, char **argv);
int cmd_note(struct cli *cli, int argc, char **argv);
/* `ihala erase REFERRAL --reason CODE`: an Erase envelope (submit.c). */
int cmd_erase(struct cli *cli, int argc, char **argv);
int cmd_outbox(struct cli *cli, int argc, char **argv);
int cmd_inbox(struct cli *cli, int argc, char **argv);
int cmd_status(struct cli *cli, int argc, char **argv);
int cmd_list(struct cli *cli, int argc, char **argv);
/* `ihala web` (clients/web/web.c): takes the node's deliveries, as inbox does. */
int cmd_web(struct cli *cli, int argc, char **argv);
/* `ihala web-user add|passwd|list|remove` (clients/web/webuser.c): web clerk accounts. */
int cmd_web_user(struct cli *cli, int argc, char **argv);

/* Keep `line` (borrowed: an inbox line, or {"seq","kind","sender","recipient","envelope"} of a sent
 * envelope) in the node's journal under its referral id and `seq`, for status and list.
 * A line naming no referral is skipped; a failure is only warned about. */
void cli_journal(struct cli *cli, uint64_t seq, json_t *line);
int cmd_audit(struct cli *cli, int argc, char **argv);
/* `ihala audit verify` online, for the auditor's page (clients/cli/audit.c): fills res
 * (entries, root, last_checkpoint = the broker's checkpoint size, origin, problem).
 * Returns a CLI exit code (CLI_OK verified, CLI_VERIFY with res->problem, ...). */
struct audit_verify_result;
int cli_audit_verify_online(struct cli *cli, const char *key, const char *origin,
                            struct audit_verify_result *res);
int cmd_prove(struct cli *cli, int argc, char **argv);
int cmd_directory(struct cli *cli, int argc, char **argv);

/*
 * Signals. cli_catch_signals() installs SIGINT/SIGTERM handlers that set cli_stop (without
 * SA_RESTART); a second signal exits at once. When cli_exit_on_signal is set, a signal that
 * comes while cli_busy is 0 exits with status 0 at once (for waits the library does not
 * let a signal end); while cli_busy is 1 (a line is being written) it only sets cli_stop.
 */
extern volatile sig_atomic_t cli_stop;
extern volatile sig_atomic_t cli_busy;
extern volatile sig_atomic_t cli_exit_on_signal;
void cli_catch_signals(void);

#endif
