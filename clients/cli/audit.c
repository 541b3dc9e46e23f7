/* audit.c - `ihala audit`: auditors' view of the log: replay, verify, prove, export, stats. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "checkpoint.h"
#include "cli.h"
#include "suggest.h"
#include "conf.h"
#include "error.h"
#include "hex.h"
#include "log.h"
#include "render.h"
#include "view.h"

static const char audit_usage[] =
    "usage: ihala audit SUBCOMMAND [OPTIONS]\n"
    "\n"
    "  replay [--from N] [--to M] [--follow]   stream log entries as JSON lines\n"
    "  verify [--db DIR] [--key PUB.pem]      recompute the tree, check every checkpoint\n"
    "  prove SEQ|MESSAGE_ID                   verify one entry's inclusion proof\n"
    "  export --format jsonl|csv [--db DIR]   the whole log as JSON lines or CSV\n"
    "  stats [--db DIR]                       referral statistics rebuilt from the log\n"
    "\n"
    "Without --db they ask the broker (auditors only); with --db DIR they read a copy of the\n"
    "broker store made with 'ihala-broker --backup DIR' on the broker's host (no broker\n"
    "needed; the copy holds every entry and is written mode 0600: keep it private).\n"
    "'ihala audit SUBCOMMAND --help' describes each.\n"
    "Exit: 0 ok, 1 refused (FORBIDDEN: only auditors replay), 2 usage, 3 broker unreachable,\n"
    "4 local error, 5 verification failure (the log does not verify, an entry does not\n"
    "decode, a proof or checkpoint does not verify).\n";

static const char replay_usage[] =
    "usage: ihala audit replay [--from N] [--to M] [--follow]\n"
    "\n"
    "Stream the broker's log entries from seq N to seq M (inclusive) and print each as one\n"
    "JSON line: {\"seq\":N,\"entry\":{...}}, the entry as logged with the submitted envelope\n"
    "decoded in \"envelope\":{...}. Only auditors may replay. On a terminal (without --json)\n"
    "a row per entry for people instead: seq, local time, sender, recipient, referral, what.\n"
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
	int human;     /* rows for people (a terminal) */
	int rows;
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
	if (rs->human) {
		/* the entry has the inbox line's names: seq, kind, sender, recipient, brokerTimeMs
		 */
		err = view_inbox_row(e, rs->rows++ == 0);
		json_decref(e);
		if (err != 0) {
			rs->failed = CLI_LOCAL;
			rc = 1;
			goto out;
		}
		rs->last = seq;
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
			cli_bad_option("audit replay", ch, argv, longopts);
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
	rs.human = cli_human(cli);
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

/* ---- shared by verify, export and stats ---- */

static const char verify_usage[] =
    "usage: ihala audit verify [--db DIR] [--key PUB.pem] [--origin NAME]\n"
    "\n"
    "Recompute the broker's RFC 6962 Merkle tree from the whole log and check the signed\n"
    "checkpoints against it. Prints on stdout one JSON line\n"
    "  {\"entries\":N,\"root\":HEX,\"checkpoints\":C,\"origin\":..,\"lastCheckpointSize\":S}\n"
    "and on stderr \"verified N entries, root HEX\" and a line about the checkpoints (not\n"
    "with -q); or names the FIRST problem on stderr (\"seq 17: entry does not match its\n"
    "leaf hash\", \"seq 9 missing (log jumps from 8 to 10)\", \"checkpoint at size 20: root\n"
    "does not match the log\").\n"
    "\n"
    "With --db DIR (offline: a copy of the broker store made with 'ihala-broker --backup DIR',\n"
    "no broker and no config needed when --key is given): seqs from 1 without gaps, each\n"
    "entry's own seq, every leaf hash against the stored tree, and every stored checkpoint:\n"
    "signature, origin, root, and the stored tree nodes proofs are built from. Successive\n"
    "checkpoints are consistent with each other because all their roots come from the one\n"
    "recomputed tree, so no consistency proofs are needed.\n"
    "Without --db (online, auditors only): the log is replayed through the broker and the\n"
    "broker's latest signed checkpoint is checked against the recomputed tree (a large log\n"
    "needs a larger --timeout).\n"
    "\n"
    "  -d, --db DIR            verify a copy of the broker store instead of asking the broker\n"
    "  -k, --key PUB.pem       the broker's checkpoint public key (PEM, or a C2SP verifier\n"
    "                          key); default: checkpoint_key of the config\n"
    "  -o, --origin NAME       the log origin every checkpoint must name (default: the\n"
    "                          first checkpoint's)\n"
    "  -h, --help              this help\n"
    "\n"
    "Exit: 0 verified, 1 refused (only auditors replay), 2 usage (no key), 3 broker\n"
    "unreachable, 4 local error (cannot read the copy), 5 verification failure: the log does\n"
    "not verify (the first bad seq or checkpoint is named) or the broker's checkpoint does not.\n";

static const char export_usage[] =
    "usage: ihala audit export --format jsonl|csv [--db DIR]\n"
    "\n"
    "Write the whole log on stdout, in seq order.\n"
    "jsonl: one {\"seq\":N,\"entry\":{...}} per line, as 'ihala audit replay' prints them.\n"
    "csv: RFC 4180 (UTF-8, CRLF, quoted where needed) with the header\n"
    "  seq,time,sender,recipient,kind,message_id,referral_id,status,priority,services\n"
    "  time in UTC (ISO 8601, ms); services separated by ';'; empty cells where the entry\n"
    "  has nothing.\n"
    "\n"
    "  -f, --format FORMAT     jsonl or csv (required)\n"
    "  -d, --db DIR            read a copy of the broker store (made by 'ihala-broker --backup\n"
    "                          DIR') instead of asking the broker\n"
    "  -h, --help              this help\n"
    "\n"
    "Exit: 0 ok, 1 refused (only auditors replay), 2 usage, 3 broker unreachable, 4 local\n"
    "error, 5 an entry does not decode.\n";

static const char stats_usage[] =
    "usage: ihala audit stats [--db DIR]\n"
    "\n"
    "Rebuild every referral's lifecycle from the log and print one JSON object: entries by\n"
    "kind; referrals by status and by agency pair; median and 90th percentile time from a\n"
    "referral to its first accepted and completed status (ms, nearest rank); referrals the\n"
    "broker marked overdue (and of those still open); outcomes by service (the last outcome\n"
    "of each referral).\n"
    "\n"
    "  -d, --db DIR            read a copy of the broker store (made by 'ihala-broker --backup\n"
    "                          DIR') instead of asking the broker\n"
    "  -h, --help              this help\n"
    "\n"
    "Exit: 0 ok, 1 refused (only auditors replay), 2 usage, 3 broker unreachable, 4 local\n"
    "error, 5 an entry does not decode.\n";

/* The config without opening the node (offline commands need no data dir lock, no TLS):
 * NULL in cli->cfg when none is named. Returns CLI_OK or the exit code (reason printed). */
static int
load_config_only(struct cli *cli)
{
	struct conf_errors errs;
	const char *path;
	int err;

	if (cli->cfg != NULL || (path = clientconf_locate(cli->config_opt)) == NULL) {
		return CLI_OK;
	}
	conf_errors_init(&errs);
	err = clientconf_load(path, &cli->cfg, &errs);
	if (err != 0) {
		conf_errors_print(&errs, stderr);
		conf_errors_release(&errs);
		return CLI_LOCAL;
	}
	conf_errors_release(&errs);
	return CLI_OK;
}

/* --key, else the config's checkpoint_key; NULL (reason printed) when neither. */
static const char *
pick_key(struct cli *cli, const char *cmd, const char *key)
{
	if (key != NULL) {
		return key;
	}
	if (load_config_only(cli) == CLI_OK && cli->cfg != NULL &&
	    cli->cfg->checkpoint_key != NULL) {
		return cli->cfg->checkpoint_key;
	}
	cli_warnx("%s: a key is needed to check the checkpoints' signatures: use --key PUB.pem "
	          "or set checkpoint_key in the config",
	          cmd);
	return NULL;
}

/* getopt for the three commands: --db, --key, --origin, --format as `allowed` says. */
struct audit_opts {
	const char *db, *key, *origin, *format;
};

static int
parse_opts(int argc, char **argv, const char *cmd, const char *usage, const char *allowed,
           struct audit_opts *o)
{
	static const struct option longopts[] = {
	    {"db", required_argument, NULL, 'd'},     {"key", required_argument, NULL, 'k'},
	    {"origin", required_argument, NULL, 'o'}, {"format", required_argument, NULL, 'f'},
	    {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	int ch;

	memset(o, 0, sizeof(*o));
	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":d:k:o:f:h", longopts, NULL)) != -1) {
		if (ch != 'h' && ch != ':' && ch != '?' && strchr(allowed, ch) == NULL) {
			cli_warnx("%s: unknown option '%s'", cmd, argv[optind - 1]);
			fprintf(stderr, "Try 'ihala %s --help'.\n", cmd);
			return CLI_USAGE;
		}
		switch (ch) {
		case 'd':
			o->db = optarg;
			break;
		case 'k':
			o->key = optarg;
			break;
		case 'o':
			o->origin = optarg;
			break;
		case 'f':
			o->format = optarg;
			break;
		case 'h':
			fputs(usage, stdout);
			return -1;
		default:
			cli_bad_option(cmd, ch, argv, longopts);
			return CLI_USAGE;
		}
	}
	if (optind < argc) {
		cli_warnx("%s: unexpected argument '%s'", cmd, argv[optind]);
		return CLI_USAGE;
	}
	return CLI_OK;
}

/* ---- verify ---- */

/* The result on stdout: {"entries","root","checkpoints","origin","lastCheckpointSize"}. */
static int
verify_json(uint64_t entries, const char *root, uint64_t checkpoints, const char *origin,
            uint64_t last)
{
	json_t *j = json_object();
	int rc;

	if (j == NULL) {
		return -1;
	}
	json_object_set_new(j, "entries", json_integer((json_int_t)entries));
	json_object_set_new(j, "root", json_string(root));
	json_object_set_new(j, "checkpoints", json_integer((json_int_t)checkpoints));
	if (origin != NULL) {
		json_object_set_new(j, "origin", json_string(origin));
		json_object_set_new(j, "lastCheckpointSize", json_integer((json_int_t)last));
	}
	rc = cli_print_json(j);
	json_decref(j);
	return rc;
}

static int
verify_offline(struct cli *cli, const struct audit_opts *o, const char *key)
{
	struct audit_verify_result res;
	char root[2 * MERKLE_HASH_LEN + 1];
	const char *why;
	int err;

	cli_capture();
	err = audit_verify_store(o->db, key, o->origin, &res);
	why = cli_captured(cli, err == IHALA_ETAMPER ? 0 : err);
	if (err == IHALA_ETAMPER) {
		cli_warnx("audit verify: %s", res.problem);
		cli_info(cli, "audit verify: %llu entries verified before it",
		         (unsigned long long)res.entries);
		return CLI_VERIFY;
	}
	if (err != 0) {
		cli_warnx("audit verify: cannot verify the store copy in '%s': %s", o->db, why);
		return CLI_LOCAL;
	}
	hex_encode(res.root, MERKLE_HASH_LEN, root);
	if (verify_json(res.entries, root, res.checkpoints,
	                res.checkpoints != 0 ? res.origin : NULL, res.last_checkpoint) != 0) {
		return CLI_LOCAL;
	}
	cli_info(cli, "verified %llu entries, root %s", (unsigned long long)res.entries, root);
	if (res.checkpoints == 0) {
		cli_info(cli, "no signed checkpoint in the store: signatures not checked");
	} else {
		cli_info(cli,
		         "verified %llu checkpoints of '%s' (the last at size %llu): signatures "
		         "valid, roots match the log; consistency between successive checkpoints "
		         "follows from recomputing one tree",
		         (unsigned long long)res.checkpoints, res.origin,
		         (unsigned long long)res.last_checkpoint);
	}
	cli_info(cli, "audit verify: %llu entries in %.3f s (%.0f entries/s)",
	         (unsigned long long)res.entries, res.seconds,
	         res.seconds > 0 ? (double)res.entries / res.seconds : 0.0);
	return CLI_OK;
}

struct online_verify {
	struct audit_chain chain;
	uint64_t want;                    /* the checkpoint's size */
	uint8_t root_at[MERKLE_HASH_LEN]; /* the recomputed root at that size */
	int failed;                       /* an exit code when the walk stopped */
};

static int
online_cb(void *arg, uint64_t seq, const uint8_t *entry, size_t len)
{
	struct online_verify *ov = arg;
	int err = audit_chain_push(&ov->chain, seq, entry, len, NULL);

	if (err != 0) {
		ov->failed = err == IHALA_ETAMPER ? CLI_VERIFY : CLI_LOCAL;
		return 1;
	}
	if (merkle_range_size(&ov->chain.range) == ov->want &&
	    merkle_range_root(&ov->chain.range, ov->root_at) != 0) {
		ov->failed = CLI_LOCAL;
		return 1;
	}
	return cli_stop ? 1 : 0;
}

static int
verify_online(struct cli *cli, const struct audit_opts *o, const char *key)
{
	char name[CHECKPOINT_NAME_MAX + 1], root[2 * MERKLE_HASH_LEN + 1];
	struct checkpoint_verifier *v = NULL;
	const Ihala__V2__Welcome *w;
	struct online_verify *ov = NULL;
	struct checkpoint ck;
	const char *text, *nl, *why;
	uint8_t r[MERKLE_HASH_LEN];
	int rc, err;

	if ((rc = cli_connect(cli, 1, NULL)) != CLI_OK) {
		return rc;
	}
	w = ihala_welcome(cli->client);
	text = w != NULL ? w->checkpoint : "";
	if (text[0] == '\0') {
		cli_warnx("audit verify: the broker has signed no checkpoint yet; retry in a few "
		          "seconds");
		return CLI_REFUSED;
	}
	nl = strchr(text, '\n');
	if (nl == NULL || nl == text || (size_t)(nl - text) > CHECKPOINT_NAME_MAX) {
		cli_warnx("audit verify: the broker's checkpoint is not a signed checkpoint");
		return CLI_VERIFY;
	}
	memcpy(name, text, (size_t)(nl - text));
	name[nl - text] = '\0';
	cli_capture();
	err = audit_verifier_load(key, name, &v);
	if ((why = cli_captured(cli, err))[0] != '\0') {
		cli_warnx("audit verify: cannot use checkpoint key '%s': %s", key, why);
		return CLI_LOCAL;
	}
	err = checkpoint_open(v, o->origin != NULL ? o->origin : name, text, strlen(text), &ck);
	checkpoint_verifier_free(v);
	if (err != 0) {
		cli_warnx(
		    "audit verify: the broker's checkpoint of '%s' does not verify with '%s': %s",
		    name, key, ihala_strerror(err));
		return CLI_VERIFY;
	}
	if ((ov = calloc(1, sizeof(*ov))) == NULL) {
		return CLI_LOCAL;
	}
	audit_chain_init(&ov->chain);
	ov->want = ck.size;
	if (ck.size == 0 && merkle_empty_root(ov->root_at) != 0) {
		free(ov);
		return CLI_LOCAL;
	}
	err = ihala_replay(cli->client, 1, 0, 0, online_cb, ov, cli_timeout(cli));
	rc = CLI_OK;
	if (ov->failed != 0) {
		if (ov->chain.problem[0] != '\0') {
			cli_warnx("audit verify: %s", ov->chain.problem);
		}
		rc = ov->failed;
	} else if (err != 0) {
		rc = cli_fail(cli, "audit verify", err);
	} else if (merkle_range_size(&ov->chain.range) < ck.size) {
		cli_warnx("audit verify: seq %llu missing: the broker's checkpoint of size %llu "
		          "covers it (the log ends at %llu)",
		          (unsigned long long)(merkle_range_size(&ov->chain.range) + 1),
		          (unsigned long long)ck.size,
		          (unsigned long long)merkle_range_size(&ov->chain.range));
		rc = CLI_VERIFY;
	} else if (memcmp(ov->root_at, ck.root, MERKLE_HASH_LEN) != 0) {
		cli_warnx("audit verify: checkpoint at size %llu: root does not match the log",
		          (unsigned long long)ck.size);
		rc = CLI_VERIFY;
	} else if (merkle_range_root(&ov->chain.range, r) != 0) {
		rc = CLI_LOCAL;
	} else {
		hex_encode(r, MERKLE_HASH_LEN, root);
		if (verify_json(merkle_range_size(&ov->chain.range), root, 1, ck.origin, ck.size) !=
		    0) {
			rc = CLI_LOCAL;
		}
		cli_info(cli, "verified %llu entries, root %s",
		         (unsigned long long)merkle_range_size(&ov->chain.range), root);
		cli_info(cli,
		         "verified the broker's latest checkpoint of '%s' (size %llu): signature "
		         "valid, root matches the log",
		         ck.origin, (unsigned long long)ck.size);
	}
	free(ov);
	return rc;
}

static int
audit_verify(struct cli *cli, int argc, char **argv)
{
	struct audit_opts o;
	const char *key;
	int rc;

	if ((rc = parse_opts(argc, argv, "audit verify", verify_usage, "dko", &o)) != CLI_OK) {
		return rc < 0 ? CLI_OK : rc;
	}
	if ((key = pick_key(cli, "audit verify", o.key)) == NULL) {
		return CLI_USAGE;
	}
	return o.db != NULL ? verify_offline(cli, &o, key) : verify_online(cli, &o, key);
}

/* ---- export and stats: one walk, offline or through the broker ---- */

enum walk_kind {
	WALK_JSONL,
	WALK_CSV,
	WALK_STATS,
};

struct walk {
	enum walk_kind kind;
	struct audit_stats *stats;
	int failed; /* an exit code when a callback stopped the walk */
};

static int
walk_cb(void *arg, uint64_t seq, const uint8_t *entry, size_t len)
{
	struct walk *wk = arg;
	json_t *j = NULL, *e = NULL;
	int err = 0;

	switch (wk->kind) {
	case WALK_JSONL:
		if ((err = render_entry_bytes(entry, len, &e)) == 0) {
			j = json_pack("{s:I,s:o}", "seq", (json_int_t)seq, "entry", e);
			if (j == NULL || cli_print_json(j) != 0) {
				wk->failed = CLI_LOCAL;
			}
			json_decref(j);
		}
		break;
	case WALK_CSV:
		err = audit_csv_row(stdout, seq, entry, len);
		if (err == IHALA_EIO) {
			cli_warnx("cannot write to standard output");
			wk->failed = CLI_LOCAL;
			err = 0;
		}
		break;
	case WALK_STATS:
		err = audit_stats_add(wk->stats, seq, entry, len);
		break;
	}
	if (err != 0) {
		cli_warnx("entry %llu does not decode: %s", (unsigned long long)seq,
		          ihala_strerror(err));
		wk->failed = err == IHALA_ENOMEM ? CLI_LOCAL : CLI_VERIFY;
	}
	return wk->failed != 0 || cli_stop;
}

static int
walk_log(struct cli *cli, const char *cmd, const char *db, struct walk *wk)
{
	const char *why;
	int rc, err;

	if (db != NULL) {
		cli_capture();
		err = audit_store_walk(db, walk_cb, wk);
		why = cli_captured(cli, wk->failed != 0 ? 0 : err);
		if (wk->failed != 0) {
			return wk->failed;
		}
		if (err != 0) {
			cli_warnx("%s: cannot read the store copy in '%s': %s", cmd, db, why);
			return CLI_LOCAL;
		}
		return CLI_OK;
	}
	if ((rc = cli_connect(cli, 1, NULL)) != CLI_OK) {
		return rc;
	}
	err = ihala_replay(cli->client, 1, 0, 0, walk_cb, wk, cli_timeout(cli));
	if (wk->failed != 0) {
		return wk->failed;
	}
	if (err != 0) {
		return cli_fail(cli, cmd, err);
	}
	return CLI_OK;
}

static int
audit_export(struct cli *cli, int argc, char **argv)
{
	struct audit_opts o;
	struct walk wk;
	int rc;

	if ((rc = parse_opts(argc, argv, "audit export", export_usage, "df", &o)) != CLI_OK) {
		return rc < 0 ? CLI_OK : rc;
	}
	memset(&wk, 0, sizeof(wk));
	if (o.format == NULL) {
		cli_warnx("audit export: --format jsonl|csv is required");
		return CLI_USAGE;
	}
	if (strcmp(o.format, "jsonl") == 0) {
		wk.kind = WALK_JSONL;
	} else if (strcmp(o.format, "csv") == 0) {
		wk.kind = WALK_CSV;
	} else {
		cli_warnx("audit export: invalid --format '%s' (one of: jsonl csv)", o.format);
		return CLI_USAGE;
	}
	if (wk.kind == WALK_CSV && audit_csv_header(stdout) != 0) {
		return CLI_LOCAL;
	}
	rc = walk_log(cli, "audit export", o.db, &wk);
	if (fflush(stdout) != 0 && rc == CLI_OK) {
		cli_warnx("cannot write to standard output");
		rc = CLI_LOCAL;
	}
	return rc;
}

static int
audit_stats(struct cli *cli, int argc, char **argv)
{
	struct audit_opts o;
	struct walk wk;
	json_t *j = NULL;
	int rc;

	if ((rc = parse_opts(argc, argv, "audit stats", stats_usage, "d", &o)) != CLI_OK) {
		return rc < 0 ? CLI_OK : rc;
	}
	memset(&wk, 0, sizeof(wk));
	wk.kind = WALK_STATS;
	if (audit_stats_new(&wk.stats) != 0) {
		return CLI_LOCAL;
	}
	rc = walk_log(cli, "audit stats", o.db, &wk);
	if (rc == CLI_OK && (audit_stats_json(wk.stats, &j) != 0 || cli_print_json(j) != 0)) {
		rc = CLI_LOCAL;
	}
	json_decref(j);
	audit_stats_free(wk.stats);
	return rc;
}

int
cmd_audit(struct cli *cli, int argc, char **argv)
{
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
	if (strcmp(argv[1], "verify") == 0) {
		return audit_verify(cli, argc - 1, argv + 1);
	}
	if (strcmp(argv[1], "prove") == 0) {
		return cmd_prove(cli, argc - 1, argv + 1);
	}
	if (strcmp(argv[1], "export") == 0) {
		return audit_export(cli, argc - 1, argv + 1);
	}
	if (strcmp(argv[1], "stats") == 0) {
		return audit_stats(cli, argc - 1, argv + 1);
	}
	{
		static const char *subs[] = {"replay", "verify", "prove", "export", "stats"};
		const char *near = NULL;
		unsigned best = SUGGEST_FAR;
		size_t i;

		for (i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
			if (suggest_near(argv[1], subs[i], &best)) {
				near = subs[i];
			}
		}
		if (near != NULL) {
			cli_warnx("audit: unknown subcommand '%s' (did you mean '%s'?)", argv[1],
			          near);
		} else {
			cli_warnx("audit: unknown subcommand '%s'", argv[1]);
		}
	}
	fprintf(stderr, "Try 'ihala audit --help'.\n");
	return CLI_USAGE;
}
