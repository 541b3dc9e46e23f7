/* audit.c - `ihala audit`: auditors' view of the log: replay, verify, prove, export, stats. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "base64.h"
#include "checkpoint.h"
#include "cli.h"
#include "suggest.h"
#include "conf.h"
#include "error.h"
#include "frame.h"
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
    "decoded in \"envelope\":{...}: the clear part only. An entry with a sealed part (the\n"
    "survivor's personal data, which no auditor can open) shows the SHA-256 the log commits\n"
    "to, \"sealedSha256\":HEX, and \"erased\":true once the part was erased (when the\n"
    "broker says); an erasure entry names who erased, why, and the seqs erased. Only\n"
    "auditors may replay. On a terminal (without --json) a row per entry for people\n"
    "instead: seq, local time, sender, recipient, referral, what ('sealed sha256:HEX').\n"
    "\n"
    "  -f, --from N         first seq (default 1)\n"
    "  -t, --to M           last seq (default: the current end)\n"
    "  -F, --follow         after the end, keep printing new entries until SIGINT/SIGTERM\n"
    "  -h, --help           this help\n"
    "\n"
    "Exit: 0 ok, 1 refused, 2 usage, 3 broker unreachable, 4 local error, 5 an entry does\n"
    "not decode.\n";

/* ---- entries with their sealed parts ---- */

#ifdef IHALA_HAVE_REPLAY_RECORDS
/* Records from the broker with LogRecord.sealed: a part is known stored or not (erased). */
struct records {
	audit_record_cb cb;
	void *arg;
};

static int
records_sealed(void *arg, uint64_t seq, const uint8_t *entry, size_t len, const uint8_t *sealed,
               size_t sealed_len)
{
	struct records *r = arg;

	return r->cb(r->arg, seq, entry, len, sealed, sealed_len, 1);
}

static int
replay_records(struct cli *cli, uint64_t from, uint64_t to, int follow, audit_record_cb cb,
               void *arg)
{
	struct records r = {cb, arg};

	return ihala_replay_records(cli->client, from, to, follow, records_sealed, &r,
	                            cli_timeout(cli));
}
#else
/*
 * Records from the broker through a libihala whose ihala_replay passes the entries
 * (LogRecord.entry) but not LogRecord.sealed: a replay cannot tell a part stored from one
 * erased, known 0. A libihala defining IHALA_HAVE_REPLAY_RECORDS (ihala_replay_records)
 * makes it 1, and replay marks erased entries as the offline walk does.
 */
struct records {
	audit_record_cb cb;
	void *arg;
};

static int
records_entry(void *arg, uint64_t seq, const uint8_t *entry, size_t len)
{
	struct records *r = arg;

	return r->cb(r->arg, seq, entry, len, NULL, 0, 0);
}

static int
replay_records(struct cli *cli, uint64_t from, uint64_t to, int follow, audit_record_cb cb,
               void *arg)
{
	struct records r = {cb, arg};

	return ihala_replay(cli->client, from, to, follow, records_entry, &r, cli_timeout(cli));
}
#endif

/* The entry's sealed_sha256 in hex into hex (65 bytes), "" when it commits to none. */
static void
sealed_sha_hex(const uint8_t *entry, size_t len, char hex[2 * MERKLE_HASH_LEN + 1])
{
	Ihala__V2__LogEntry *e = NULL;
	Ihala__V2__Envelope *env = NULL;

	hex[0] = '\0';
	if (logentry_decode(entry, len, &e) != 0) {
		return;
	}
	if (e->envelope.len > 0 && envelope_decode(e->envelope.data, e->envelope.len, &env) == 0 &&
	    env->sealed_sha256.len == MERKLE_HASH_LEN) {
		hex_encode(env->sealed_sha256.data, MERKLE_HASH_LEN, hex);
	}
	envelope_free(env);
	logentry_free(e);
}

/*
 * To `obj`: "sealedSha256" (hex) for an entry committing to a sealed part; when the source
 * said whether the part is stored: "erased": true when it is not, else with `carry` the part
 * itself, "sealed" (base64 of its DER: `base64 -d` gives what `openssl cms -decrypt -inform
 * DER` opens). The part is never opened here: an auditor holds no key.
 */
static int
add_sealed(json_t *obj, const uint8_t *entry, size_t len, const uint8_t *sealed, size_t sealed_len,
           int known, int carry)
{
	char hex[2 * MERKLE_HASH_LEN + 1], *b64;
	int rc = 0;

	sealed_sha_hex(entry, len, hex);
	if (hex[0] == '\0') {
		return 0;
	}
	if (json_object_set_new(obj, "sealedSha256", json_string(hex)) != 0) {
		return -1;
	}
	if (!known) {
		return 0;
	}
	if (sealed == NULL) {
		return json_object_set_new(obj, "erased", json_true());
	}
	if (!carry) {
		return 0;
	}
	if (sealed_len > BASE64_MAX_IN || (b64 = malloc(BASE64_LEN(sealed_len) + 1)) == NULL) {
		return -1;
	}
	base64_encode(sealed, sealed_len, b64);
	rc = json_object_set_new(obj, "sealed", json_string(b64));
	free(b64);
	return rc;
}

struct replay_state {
	int failed;    /* exit code when a callback stopped the replay, else 0 */
	uint64_t last; /* last seq printed */
	int human;     /* rows for people (a terminal) */
	int rows;
};

static int
replay_cb(void *arg, uint64_t seq, const uint8_t *entry, size_t len, const uint8_t *sealed,
          size_t sealed_len, int known)
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
		err = add_sealed(e, entry, len, sealed, sealed_len, known, 0) != 0
		          ? -1
		          : view_inbox_row(e, rs->rows++ == 0);
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
	if (j == NULL || add_sealed(j, entry, len, sealed, sealed_len, known, 0) != 0 ||
	    cli_print_json(j) != 0) {
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
	err = replay_records(cli, from, to, follow, replay_cb, &rs);
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
    "usage: ihala audit export --format jsonl|csv [--db DIR [--sealed-dir OUT]]\n"
    "\n"
    "Write the whole log on stdout, in seq order.\n"
    "jsonl: one {\"seq\":N,\"entry\":{...}} per line, as 'ihala audit replay' prints them;\n"
    "  an entry with a sealed part adds \"sealedSha256\":HEX and, read from a store copy\n"
    "  (--db), the part itself as \"sealed\":BASE64 (the DER of a CMS AuthEnvelopedData:\n"
    "  only its recipients open it, with 'openssl cms -decrypt -inform DER -recip CRT\n"
    "  -inkey KEY'), or \"erased\":true once it was erased.\n"
    "csv: RFC 4180 (UTF-8, CRLF, quoted where needed) with the header\n"
    "  seq,time,sender,recipient,kind,message_id,referral_id,status,priority,services,\n"
    "  clerk_id\n"
    "  time in UTC (ISO 8601, ms); services separated by ';'; clerk_id the pseudonymous\n"
    "  clerk who acted (Envelope.clerk_id); empty cells where the entry has nothing.\n"
    "\n"
    "  -f, --format FORMAT     jsonl or csv (required)\n"
    "  -d, --db DIR            read a copy of the broker store (made by 'ihala-broker --backup\n"
    "                          DIR') instead of asking the broker\n"
    "  -s, --sealed-dir OUT    also write each sealed part as OUT/SEQ.der (an existing\n"
    "                          directory; jsonl with --db only)\n"
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
	const char *db, *key, *origin, *format, *sealed_dir;
};

static int
parse_opts(int argc, char **argv, const char *cmd, const char *usage, const char *allowed,
           struct audit_opts *o)
{
	static const struct option longopts[] = {
	    {"db", required_argument, NULL, 'd'},
	    {"key", required_argument, NULL, 'k'},
	    {"origin", required_argument, NULL, 'o'},
	    {"format", required_argument, NULL, 'f'},
	    {"sealed-dir", required_argument, NULL, 's'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int ch;

	memset(o, 0, sizeof(*o));
	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":d:k:o:f:s:h", longopts, NULL)) != -1) {
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
		case 's':
			o->sealed_dir = optarg;
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
            uint64_t last, const struct audit_sealed *sl)
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
	json_object_set_new(j, "erasures", json_integer((json_int_t)sl->erasures));
	json_object_set_new(j, "sealedEntries", json_integer((json_int_t)sl->sealed));
	json_object_set_new(j, "sealedErased", json_integer((json_int_t)sl->erased));
	rc = cli_print_json(j);
	json_decref(j);
	return rc;
}

/* The erasures line on stderr (not with -q). */
static void
verify_erasures(const struct cli *cli, uint64_t entries, const struct audit_sealed *sl)
{
	cli_info(cli,
	         "audit verify: %llu entries, %llu erasure entries, %llu sealed parts erased (of "
	         "%llu entries with a sealed part%s)",
	         (unsigned long long)entries, (unsigned long long)sl->erasures,
	         (unsigned long long)sl->erased, (unsigned long long)sl->sealed,
	         sl->known ? ""
	                   : "; the seqs erasure entries name: the broker's replay does not say "
	                     "which parts it still holds");
}

static int
verify_offline(struct cli *cli, const struct audit_opts *o, const char *key)
{
	struct audit_verify_result res;
	struct audit_sealed sl;
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
	audit_sealed_init(&sl);
	sl.erasures = res.erasures;
	sl.sealed = res.sealed;
	sl.erased = res.erased;
	if (verify_json(res.entries, root, res.checkpoints,
	                res.checkpoints != 0 ? res.origin : NULL, res.last_checkpoint, &sl) != 0) {
		return CLI_LOCAL;
	}
	cli_info(cli, "verified %llu entries, root %s", (unsigned long long)res.entries, root);
	verify_erasures(cli, res.entries, &sl);
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
	struct audit_sealed sealed;
	uint64_t want;                    /* the checkpoint's size */
	uint8_t root_at[MERKLE_HASH_LEN]; /* the recomputed root at that size */
	int failed;                       /* an exit code when the walk stopped */
};

static int
online_cb(void *arg, uint64_t seq, const uint8_t *entry, size_t len, const uint8_t *sealed,
          size_t sealed_len, int known)
{
	struct online_verify *ov = arg;
	int err = audit_chain_push(&ov->chain, seq, entry, len, NULL);

	if (err != 0) {
		ov->failed = err == IHALA_ETAMPER ? CLI_VERIFY : CLI_LOCAL;
		return 1;
	}
	err = audit_sealed_push(&ov->sealed, seq, entry, len, sealed, sealed_len, known);
	if (err != 0) {
		if (err == IHALA_ETAMPER) {
			memcpy(ov->chain.problem, ov->sealed.problem, sizeof(ov->chain.problem));
		} else if (err != IHALA_ENOMEM) {
			snprintf(ov->chain.problem, sizeof(ov->chain.problem),
			         "seq %llu: entry does not decode", (unsigned long long)seq);
		}
		ov->failed = err == IHALA_ENOMEM ? CLI_LOCAL : CLI_VERIFY;
		return 1;
	}
	if (merkle_range_size(&ov->chain.range) == ov->want &&
	    merkle_range_root(&ov->chain.range, ov->root_at) != 0) {
		ov->failed = CLI_LOCAL;
		return 1;
	}
	return cli_stop ? 1 : 0;
}

/* res->problem as printf says (a long detail is cut). */
static void problem(struct audit_verify_result *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
problem(struct audit_verify_result *res, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vsnprintf(res->problem, sizeof(res->problem), fmt, ap) < 0) {
		res->problem[0] = '\0';
	}
	va_end(ap);
}

/*
 * The online verify, for `ihala audit verify` and the auditor's page of `ihala web`: the
 * client is connected already; nothing is printed but the library's warnings (cli_capture
 * keeps none here). res->problem names what did not verify or what failed.
 */
int
cli_audit_verify_online(struct cli *cli, const char *key, const char *origin,
                        struct audit_verify_result *res)
{
	char name[CHECKPOINT_NAME_MAX + 1];
	struct checkpoint_verifier *v = NULL;
	const Ihala__V2__Welcome *w;
	struct online_verify *ov = NULL;
	struct checkpoint ck;
	const char *text, *nl, *why;
	int rc, err;

	memset(res, 0, sizeof(*res));
	w = ihala_welcome(cli->client);
	text = w != NULL ? w->checkpoint : "";
	if (text[0] == '\0') {
		problem(res, "the broker has signed no checkpoint yet; retry in a few seconds");
		return CLI_REFUSED;
	}
	nl = strchr(text, '\n');
	if (nl == NULL || nl == text || (size_t)(nl - text) > CHECKPOINT_NAME_MAX) {
		problem(res, "the broker's checkpoint is not a signed checkpoint");
		return CLI_VERIFY;
	}
	memcpy(name, text, (size_t)(nl - text));
	name[nl - text] = '\0';
	cli_capture();
	err = audit_verifier_load(key, name, &v);
	if ((why = cli_captured(cli, err))[0] != '\0') {
		problem(res, "cannot use checkpoint key '%s': %s", key, why);
		return CLI_LOCAL;
	}
	err = checkpoint_open(v, origin != NULL ? origin : name, text, strlen(text), &ck);
	checkpoint_verifier_free(v);
	if (err != 0) {
		problem(res, "the broker's checkpoint of '%s' does not verify with '%s': %s", name,
		        key, ihala_strerror(err));
		return CLI_VERIFY;
	}
	if ((ov = calloc(1, sizeof(*ov))) == NULL) {
		return CLI_LOCAL;
	}
	audit_chain_init(&ov->chain);
	audit_sealed_init(&ov->sealed);
	ov->want = ck.size;
	if (ck.size == 0 && merkle_empty_root(ov->root_at) != 0) {
		free(ov);
		return CLI_LOCAL;
	}
	err = replay_records(cli, 1, 0, 0, online_cb, ov);
	rc = CLI_OK;
	if (ov->failed == 0 && err == 0 && audit_sealed_finish(&ov->sealed) != 0) {
		memcpy(ov->chain.problem, ov->sealed.problem, sizeof(ov->chain.problem));
		ov->failed = CLI_VERIFY;
	}
	res->entries = merkle_range_size(&ov->chain.range);
	if (ov->failed != 0) {
		memcpy(res->problem, ov->chain.problem, sizeof(res->problem));
		rc = ov->failed;
	} else if (err != 0) {
		problem(res, "%s", ihala_errmsg(cli->client));
		if (res->problem[0] == '\0') {
			problem(res, "%s", ihala_strerror(err));
		}
		rc = err; /* negative: the caller reports it (see verify_online) */
	} else if (res->entries < ck.size) {
		problem(res,
		        "seq %llu missing: the broker's checkpoint of size %llu covers it (the log "
		        "ends at %llu)",
		        (unsigned long long)(res->entries + 1), (unsigned long long)ck.size,
		        (unsigned long long)res->entries);
		rc = CLI_VERIFY;
	} else if (memcmp(ov->root_at, ck.root, MERKLE_HASH_LEN) != 0) {
		problem(res, "checkpoint at size %llu: root does not match the log",
		        (unsigned long long)ck.size);
		rc = CLI_VERIFY;
	} else if (merkle_range_root(&ov->chain.range, res->root) != 0) {
		rc = CLI_LOCAL;
	} else {
		res->checkpoints = 1;
		res->last_checkpoint = ck.size;
		snprintf(res->origin, sizeof(res->origin), "%s", ck.origin);
		res->erasures = ov->sealed.erasures;
		res->sealed = ov->sealed.sealed;
		res->erased = ov->sealed.erased;
		res->problem[0] = '\0';
	}
	res->parts_known = ov->sealed.known;
	audit_sealed_release(&ov->sealed);
	free(ov);
	return rc;
}

static int
verify_online(struct cli *cli, const struct audit_opts *o, const char *key)
{
	struct audit_verify_result res;
	struct audit_sealed sl;
	char root[2 * MERKLE_HASH_LEN + 1];
	int rc;

	if ((rc = cli_connect(cli, 1, NULL)) != CLI_OK) {
		return rc;
	}
	rc = cli_audit_verify_online(cli, key, o->origin, &res);
	if (rc < 0) {
		return cli_fail(cli, "audit verify", rc);
	}
	if (rc != CLI_OK) {
		if (res.problem[0] != '\0') {
			cli_warnx("audit verify: %s", res.problem);
		}
		return rc;
	}
	hex_encode(res.root, MERKLE_HASH_LEN, root);
	audit_sealed_init(&sl);
	sl.erasures = res.erasures;
	sl.sealed = res.sealed;
	sl.erased = res.erased;
	sl.known = res.parts_known;
	if (verify_json(res.entries, root, 1, res.origin, res.last_checkpoint, &sl) != 0) {
		rc = CLI_LOCAL;
	}
	cli_info(cli, "verified %llu entries, root %s", (unsigned long long)res.entries, root);
	verify_erasures(cli, res.entries, &sl);
	cli_info(cli,
	         "verified the broker's latest checkpoint of '%s' (size %llu): signature "
	         "valid, root matches the log",
	         res.origin, (unsigned long long)res.last_checkpoint);
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
	const char *sealed_dir; /* export --sealed-dir: SEQ.der written there */
	uint64_t parts;         /* sealed parts written there */
	int failed;             /* an exit code when a callback stopped the walk */
};

/* DIR/SEQ.der, mode 0600, not replacing a file. */
static int
write_part(struct walk *wk, uint64_t seq, const uint8_t *sealed, size_t len)
{
	char path[4096];
	ssize_t n;
	size_t off = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/%llu.der", wk->sealed_dir, (unsigned long long)seq);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
		cli_warnx("audit export: cannot create '%s': %s", path, strerror(errno));
		return -1;
	}
	while (off < len) {
		if ((n = write(fd, sealed + off, len - off)) < 0) {
			if (errno == EINTR) {
				continue;
			}
			cli_warnx("audit export: cannot write '%s': %s", path, strerror(errno));
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	if (close(fd) != 0) {
		cli_warnx("audit export: cannot write '%s': %s", path, strerror(errno));
		return -1;
	}
	wk->parts++;
	return 0;
}

static int
walk_cb(void *arg, uint64_t seq, const uint8_t *entry, size_t len, const uint8_t *sealed,
        size_t sealed_len, int known)
{
	struct walk *wk = arg;
	json_t *j = NULL, *e = NULL;
	int err = 0;

	switch (wk->kind) {
	case WALK_JSONL:
		if ((err = render_entry_bytes(entry, len, &e)) == 0) {
			j = json_pack("{s:I,s:o}", "seq", (json_int_t)seq, "entry", e);
			if (j == NULL ||
			    add_sealed(j, entry, len, sealed, sealed_len, known, 1) != 0 ||
			    cli_print_json(j) != 0) {
				wk->failed = CLI_LOCAL;
			}
			json_decref(j);
		}
		if (err == 0 && wk->failed == 0 && sealed != NULL && wk->sealed_dir != NULL &&
		    write_part(wk, seq, sealed, sealed_len) != 0) {
			wk->failed = CLI_LOCAL;
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
		err = audit_store_walk_records(db, walk_cb, wk);
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
	err = replay_records(cli, 1, 0, 0, walk_cb, wk);
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

	if ((rc = parse_opts(argc, argv, "audit export", export_usage, "dfs", &o)) != CLI_OK) {
		return rc < 0 ? CLI_OK : rc;
	}
	memset(&wk, 0, sizeof(wk));
	wk.sealed_dir = o.sealed_dir;
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
	if (o.sealed_dir != NULL && (wk.kind != WALK_JSONL || o.db == NULL)) {
		cli_warnx("audit export: --sealed-dir goes with --format jsonl --db DIR (the parts "
		          "are read from a copy of the broker store)");
		return CLI_USAGE;
	}
	rc = walk_log(cli, "audit export", o.db, &wk);
	if (fflush(stdout) != 0 && rc == CLI_OK) {
		cli_warnx("cannot write to standard output");
		rc = CLI_LOCAL;
	}
	if (rc == CLI_OK && o.sealed_dir != NULL) {
		cli_info(cli, "audit export: %llu sealed parts written to '%s' (SEQ.der)",
		         (unsigned long long)wk.parts, o.sealed_dir);
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
