/* audit.h - auditors' library: verify the log (offline store copies, replays), CSV, statistics. */
#ifndef IHALA_AUDIT_H
#define IHALA_AUDIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "checkpoint.h"
#include "ihala.h"

#include "merkle.h"

/* audit.c owns verification (chain checks, store copies, walks); audit_report.c owns
 * reading entries (CSV rows, statistics). */

/*
 * Everything here reads log entries exactly as the broker stored them (LogEntry bytes, the
 * Merkle leaf data) and takes them either from a copy of the broker's store (made with
 * `mdb_copy` or `ihala-broker --backup`, read with proto/logdb.h: never the live store's
 * directory while the broker writes) or from a replay through the broker (ihala_replay).
 * Errors: 0 or a negative code from error.h; content problems of the log are IHALA_ETAMPER
 * with a sentence naming the first bad seq or checkpoint.
 */

/* Longest problem sentence, NUL included. */
#define AUDIT_PROBLEM_MAX 256

/*
 * The checks every verifier makes on the entries in order, offline or online: seqs
 * contiguous from 1, each entry's own seq field equal to its position, leaf hashes, and the
 * tree recomputed in O(log n) memory. Caller-owned, nothing allocated and nothing to
 * release: declare one, audit_chain_init, then push every entry. Read `problem` (empty
 * while all is well) and use merkle_range_root / merkle_range_size on `range`; write
 * nothing.
 */
struct audit_chain {
	struct merkle_range range;
	uint64_t next_seq;
	char problem[AUDIT_PROBLEM_MAX];
};

void audit_chain_init(struct audit_chain *a);

/*
 * The entry stored under `seq` (len bytes, only read during the call). 0 when it is the
 * next one and well-formed, with its leaf hash in `leaf` (may be NULL); IHALA_ETAMPER with
 * a->problem set ("seq 9 missing (log jumps from 8 to 10)", "seq 9: entry says seq 10",
 * "seq 9: entry does not decode"), after which every push fails the same way;
 * IHALA_ENOMEM or IHALA_EINTERNAL when hashing fails. The entry is not decoded: its seq is
 * read from the top-level protobuf fields without allocating.
 */
int audit_chain_push(struct audit_chain *a, uint64_t seq, const uint8_t *entry, size_t len,
                     uint8_t leaf[MERKLE_HASH_LEN]);

/*
 * A verifier of the broker's checkpoint key: `key` is the path of its Ed25519 public key
 * (PEM; then the verifier is named `name`, the log origin, because the broker names its key
 * after its origin) or a C2SP verifier key string "name+id+key". *out: the caller frees it
 * with checkpoint_verifier_free. IHALA_EIO / IHALA_ECONFIG for an unusable key.
 */
int audit_verifier_load(const char *key, const char *name, struct checkpoint_verifier **out);

struct audit_verify_result {
	uint64_t entries;              /* entries verified (the whole log when it verifies) */
	uint8_t root[MERKLE_HASH_LEN]; /* the root recomputed over them */
	uint64_t checkpoints;          /* stored checkpoints verified */
	uint64_t last_checkpoint;      /* size of the largest one, 0 when none */
	char origin[CHECKPOINT_NAME_MAX + 1]; /* their origin, "" when none */
	double seconds;                       /* time the walk took */
	uint64_t erasures;                    /* ERASURE entries */
	uint64_t sealed;                      /* entries committing to a sealed part */
	uint64_t erased;                      /* of those, whose sealed part was erased */
	char problem[AUDIT_PROBLEM_MAX];      /* the first problem, "" when none */
	int parts_known; /* online: 0 when the replay could not say which sealed parts it holds */
};

/*
 * Verify a copy of the broker store in directory `dir` (holding data.mdb), opened
 * read-only, in one pass in seq order: the chain checks above; each entry's leaf hash
 * against the stored level-0 tree node; and each stored checkpoint, when the walk reaches
 * its size: its signature with `key` (see audit_verifier_load), its origin (equal to
 * `origin` when not NULL, else the same in every checkpoint), its root against the
 * recomputed one, and the stored tree nodes the broker builds proofs from against it too.
 * Successive checkpoints are then consistent with each other because their roots all come
 * from one recomputed tree. Checkpoints beyond the end of the log and leaves stored beyond
 * it are problems too.
 *
 * 0 when everything verifies; IHALA_ETAMPER with res->problem naming the FIRST problem
 * ("seq 17: entry does not match its leaf hash", "checkpoint at size 20: root does not
 * match the log"), res->entries then counting the entries that verified before it; else the
 * error of opening the store (IHALA_EIO, IHALA_EVERSION, IHALA_ESTORE; logged) or the key.
 */
int audit_verify_store(const char *dir, const char *key, const char *origin,
                       struct audit_verify_result *res);

/*
 * Call cb for every entry of the store copy in `dir` in seq order, until it returns
 * non-zero (then 0 is returned: the callback keeps its own state). Entry bytes are valid
 * during the call only. Opening or read errors as for audit_verify_store.
 */
int audit_store_walk(const char *dir, ihala_entry_cb cb, void *arg);

/* ---- sealed parts and erasures (issue 16, docs/SEALING.md) ---- */

/*
 * A walk's callback with each entry's sealed part: `sealed` (sealed_len bytes, valid during
 * the call) is the part stored for seq, NULL when none is stored (never had one, or
 * erased); `known` is 0 when the source cannot say (then sealed is NULL too).
 */
typedef int (*audit_record_cb)(void *arg, uint64_t seq, const uint8_t *entry, size_t len,
                               const uint8_t *sealed, size_t sealed_len, int known);

/* audit_store_walk with the sealed parts the copy holds (known is always 1). */
int audit_store_walk_records(const char *dir, audit_record_cb cb, void *arg);

/*
 * What a verifier counts and checks of sealed parts, pushed every entry in seq order:
 * ERASURE entries and the seqs they name; entries committing to a sealed part
 * (Envelope.sealed_sha256); when the part is known: that a stored part hashes to the
 * entry's sealed_sha256, that a part is not stored for an entry that commits to none, and
 * (at finish) that every part missing was named by an ERASURE entry (a part deleted
 * without a logged erasure is a problem). The caller declares one, inits it, and releases
 * it (the seq lists are heap).
 */
struct audit_sealed {
	uint64_t erasures; /* ERASURE entries */
	uint64_t sealed;   /* entries committing to a sealed part */
	uint64_t present;  /* of those, whose part is stored (when known) */
	uint64_t erased;   /* sealed parts erased: missing parts (known), else the distinct
	                    * seqs ERASURE entries name */
	int known;         /* every push knew the sealed part */
	uint64_t *missing, nmissing, capmissing; /* seqs whose part is missing */
	uint64_t *named, nnamed, capnamed;       /* seqs ERASURE entries named */
	char problem[AUDIT_PROBLEM_MAX];
};

void audit_sealed_init(struct audit_sealed *s);
/* 0; IHALA_ETAMPER with s->problem ("seq 7: sealed part does not match its sealed_sha256");
 * IHALA_EBADFRAME when the entry does not decode; IHALA_ENOMEM. */
int audit_sealed_push(struct audit_sealed *s, uint64_t seq, const uint8_t *entry, size_t len,
                      const uint8_t *sealed, size_t sealed_len, int known);
/* After the last push: fills s->erased; IHALA_ETAMPER when a missing part was never named by
 * an ERASURE entry ("seq 7: sealed part missing but no erasure entry names it"). */
int audit_sealed_finish(struct audit_sealed *s);
void audit_sealed_release(struct audit_sealed *s);

/* ---- CSV (RFC 4180: CRLF line ends, fields quoted when they hold , " CR or LF) ---- */

/* "seq,time,sender,recipient,kind,message_id,referral_id,status,priority,services,clerk_id". */
int audit_csv_header(FILE *fp);

/*
 * One row for an entry: time in UTC ISO 8601 with milliseconds, kind/status/priority and
 * services (separated by ';') as pbjson names them ("submission", "in-progress",
 * "prosthetics-orthotics"); empty cells where the entry has nothing. IHALA_EBADFRAME /
 * IHALA_EUTF8 when the entry does not decode (a submitted envelope that does not decode
 * leaves its cells empty instead), IHALA_EIO when writing fails.
 */
int audit_csv_row(FILE *fp, uint64_t seq, const uint8_t *entry, size_t len);

/* ---- referral statistics rebuilt from the log ---- */

struct audit_stats;

int audit_stats_new(struct audit_stats **out);
void audit_stats_free(struct audit_stats *st);

/*
 * Add the next entry (in seq order). Referrals are rebuilt from the entries: created by a
 * submitted Referral, moved by status updates and broker-made statuses, marked overdue by
 * the broker, closed with outcomes. IHALA_EBADFRAME when the entry does not decode,
 * IHALA_ENOMEM.
 */
int audit_stats_add(struct audit_stats *st, uint64_t seq, const uint8_t *entry, size_t len);

/*
 * The statistics as a new JSON object (the caller owns it):
 *   entries, firstTime, lastTime (broker ms), entriesByKind {kind: n},
 *   referrals, byStatus {status: n for every status},
 *   byAgencyPair [{from, to, referrals, byStatus {status: n, non-zero only}}] sorted,
 *   timeToAccept / timeToComplete {count, medianMs, p90Ms} from the referral's entry to
 *     its first accepted / completed status (nearest-rank percentiles; null when count 0),
 *   overdue {marked: referrals the broker marked overdue, open: of those still requested
 *     or received},
 *   outcomesByService {service: {outcomes, implemented, successful, unsuccessful}} over
 *     the last outcome of each referral, by the services delivered (the services requested
 *     when it names none).
 */
int audit_stats_json(const struct audit_stats *st, json_t **out);

#endif
