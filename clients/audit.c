/* audit.c - auditors' library, verification: the chain checks, offline store copies, walks. */
#include "audit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "clock.h"
#include "error.h"
#include "frame.h"
#include "log.h"
#include "pbjson.h"
#include "logdb.h"

/* Reading what the entries say (CSV, statistics) is audit_report.c's. */

static double
now_s(void)
{
	return (double)clock_mono_ns() / 1e9;
}

/* ---- the chain checks ---- */

static int
varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t x = 0;
	unsigned shift;

	for (shift = 0; *p < end && shift < 64; shift += 7) {
		uint8_t b = *(*p)++;

		x |= (uint64_t)(b & 0x7f) << shift;
		if ((b & 0x80) == 0) {
			*v = x;
			return 0;
		}
	}
	return -1;
}

/*
 * One field of an encoded protobuf message at *p: its number, wire type, and its value
 * (varint) or bytes (length-delimited; pointers into buf). 0, or -1 when it does not parse
 * (groups, a length past the end, field number 0).
 */
struct wfield {
	uint64_t num;
	unsigned type;
	uint64_t v;
	const uint8_t *data;
	size_t len;
};

static int
wire_next(const uint8_t **p, const uint8_t *end, struct wfield *f)
{
	uint64_t key;

	if (varint(p, end, &key) != 0 || (key >> 3) == 0) {
		return -1;
	}
	f->num = key >> 3;
	f->type = (unsigned)(key & 7);
	switch (f->type) {
	case 0:
		return varint(p, end, &f->v);
	case 1:
	case 5: {
		size_t n = f->type == 1 ? 8 : 4;

		if ((size_t)(end - *p) < n) {
			return -1;
		}
		*p += n;
		return 0;
	}
	case 2:
		if (varint(p, end, &f->v) != 0 || f->v > (uint64_t)(end - *p)) {
			return -1;
		}
		f->data = *p;
		f->len = (size_t)f->v;
		*p += f->len;
		return 0;
	default:
		return -1;
	}
}

/*
 * The seq (field 1, varint) of an encoded LogEntry as a protobuf reader sees it: the last
 * occurrence, 0 when absent. Walks the top-level fields only; -1 when they do not parse.
 */
static int
entry_seq(const uint8_t *buf, size_t len, uint64_t *seq)
{
	const uint8_t *p = buf, *end = buf + len;
	struct wfield f;

	*seq = 0;
	while (p < end) {
		if (wire_next(&p, end, &f) != 0) {
			return -1;
		}
		if (f.num == 1 && f.type == 0) {
			*seq = f.v;
		}
	}
	return 0;
}

void
audit_chain_init(struct audit_chain *a)
{
	merkle_range_init(&a->range);
	a->next_seq = 1;
	a->problem[0] = '\0';
}

static int chain_problem(struct audit_chain *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
chain_problem(struct audit_chain *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(a->problem, sizeof(a->problem), fmt, ap);
	va_end(ap);
	return IHALA_ETAMPER;
}

int
audit_chain_push(struct audit_chain *a, uint64_t seq, const uint8_t *entry, size_t len,
                 uint8_t leaf[MERKLE_HASH_LEN])
{
	uint8_t lh[MERKLE_HASH_LEN];
	uint64_t own;
	int err;

	if (a->problem[0] != '\0') {
		return IHALA_ETAMPER;
	}
	if (seq > a->next_seq) {
		if (a->next_seq == 1) {
			return chain_problem(a, "seq 1 missing (log starts at %llu)",
			                     (unsigned long long)seq);
		}
		if (seq == a->next_seq + 1) {
			return chain_problem(a, "seq %llu missing (log jumps from %llu to %llu)",
			                     (unsigned long long)a->next_seq,
			                     (unsigned long long)(a->next_seq - 1),
			                     (unsigned long long)seq);
		}
		return chain_problem(a, "seq %llu to %llu missing (log jumps from %llu to %llu)",
		                     (unsigned long long)a->next_seq, (unsigned long long)(seq - 1),
		                     (unsigned long long)(a->next_seq - 1),
		                     (unsigned long long)seq);
	}
	if (seq < a->next_seq) {
		return chain_problem(a, "seq %llu: out of order (after seq %llu)",
		                     (unsigned long long)seq,
		                     (unsigned long long)(a->next_seq - 1));
	}
	if (entry_seq(entry, len, &own) != 0) {
		return chain_problem(a, "seq %llu: entry does not decode", (unsigned long long)seq);
	}
	if (own != seq) {
		return chain_problem(a, "seq %llu: entry says seq %llu", (unsigned long long)seq,
		                     (unsigned long long)own);
	}
	if ((err = merkle_leaf_hash(entry, len, lh)) != 0 ||
	    (err = merkle_range_push(&a->range, lh)) != 0) {
		return err;
	}
	if (leaf != NULL) {
		memcpy(leaf, lh, MERKLE_HASH_LEN);
	}
	a->next_seq++;
	return 0;
}

/* ---- offline: a copy of the broker store ---- */

int
audit_verifier_load(const char *key, const char *name, struct checkpoint_verifier **out)
{
	*out = NULL;
	if (key == NULL || key[0] == '\0') {
		return IHALA_EINVAL;
	}
	if (access(key, F_OK) == 0) {
		return checkpoint_verifier_load(key, name, out);
	}
	if (strchr(key, '+') != NULL && checkpoint_verifier_parse(key, out) == 0) {
		return 0;
	}
	log_warnx("checkpoint key '%s': no such file, nor a C2SP verifier key", key);
	return IHALA_EIO;
}

static const struct merkle_store_ops stored_tree = {logdb_tree_node, NULL};

struct sizes {
	uint64_t *v;
	size_t n, cap;
};

static int
collect_size(void *arg, uint64_t size, const char *text, size_t len)
{
	struct sizes *s = arg;

	(void)text;
	(void)len;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		uint64_t *v = realloc(s->v, cap * sizeof(*v));

		if (v == NULL) {
			return IHALA_ENOMEM;
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = size;
	return 0;
}

struct vctx {
	struct logdb_txn *r;
	const char *key;
	const char *origin; /* expected, or NULL */
	struct checkpoint_verifier *ver;
	struct audit_verify_result *res;
};

static int res_problem(struct audit_verify_result *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
res_problem(struct audit_verify_result *res, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(res->problem, sizeof(res->problem), fmt, ap);
	va_end(ap);
	return IHALA_ETAMPER;
}

/* The stored checkpoint of `size`, reached by the walk: `root` is the recomputed root. */
static int
check_checkpoint(struct vctx *v, uint64_t size, const uint8_t root[MERKLE_HASH_LEN])
{
	char name[CHECKPOINT_NAME_MAX + 1];
	uint8_t sroot[MERKLE_HASH_LEN];
	struct checkpoint ck;
	const char *nl;
	char *text = NULL;
	size_t n;
	int err;

	if ((err = logdb_checkpoint_get(v->r, size, &text)) != 0) {
		return err;
	}
	/* The broker's key is named after its origin: take the name from the note's first
	 * line, then demand that every checkpoint says the same origin. */
	nl = strchr(text, '\n');
	n = nl != NULL ? (size_t)(nl - text) : 0;
	if (n == 0 || n > CHECKPOINT_NAME_MAX) {
		free(text);
		return res_problem(v->res, "checkpoint at size %llu: not a signed checkpoint",
		                   (unsigned long long)size);
	}
	memcpy(name, text, n);
	name[n] = '\0';
	if (v->origin != NULL && strcmp(name, v->origin) != 0) {
		free(text);
		return res_problem(v->res, "checkpoint at size %llu: origin '%s', not '%s'",
		                   (unsigned long long)size, name, v->origin);
	}
	if (v->ver == NULL) {
		if ((err = audit_verifier_load(v->key, name, &v->ver)) != 0) {
			free(text);
			return err;
		}
		v->origin = checkpoint_verifier_name(v->ver);
		if (strcmp(name, v->origin) != 0) {
			free(text);
			return res_problem(v->res,
			                   "checkpoint at size %llu: origin '%s', but the key is "
			                   "named '%s'",
			                   (unsigned long long)size, name, v->origin);
		}
		snprintf(v->res->origin, sizeof(v->res->origin), "%s", name);
	}
	err = checkpoint_open(v->ver, v->origin, text, strlen(text), &ck);
	free(text);
	if (err == IHALA_ENOMEM || err == IHALA_EINTERNAL) {
		return err;
	}
	if (err != 0) {
		return res_problem(v->res,
		                   "checkpoint at size %llu: signature does not verify with '%s'",
		                   (unsigned long long)size, v->key);
	}
	if (ck.size != size) {
		return res_problem(v->res, "checkpoint at size %llu: it says size %llu",
		                   (unsigned long long)size, (unsigned long long)ck.size);
	}
	if (memcmp(ck.root, root, MERKLE_HASH_LEN) != 0) {
		return res_problem(v->res, "checkpoint at size %llu: root does not match the log",
		                   (unsigned long long)size);
	}
	/* The broker builds its proofs from the stored interior nodes: they must agree too. */
	err = merkle_root(&stored_tree, v->r, size, sroot);
	if (err == IHALA_ENOTFOUND || (err == 0 && memcmp(sroot, root, MERKLE_HASH_LEN) != 0)) {
		return res_problem(
		    v->res, "checkpoint at size %llu: the stored tree nodes do not match the log",
		    (unsigned long long)size);
	}
	if (err != 0) {
		return err;
	}
	v->res->checkpoints++;
	v->res->last_checkpoint = size;
	return 0;
}

/* ---- sealed parts ---- */

/* The sealed part stored for seq (logdb's "sealed" database), *sealed NULL when none. */
static int
sealed_get(const struct logdb_txn *r, uint64_t seq, const uint8_t **sealed, size_t *len)
{
	const void *data;
	int err;

	*sealed = NULL;
	*len = 0;
	err = logdb_sealed_get(r, seq, &data, len);
	if (err == IHALA_ENOTFOUND) {
		*len = 0;
		return 0;
	}
	if (err == 0 && *len > 0) {
		*sealed = data;
	}
	return err;
}

void
audit_sealed_init(struct audit_sealed *s)
{
	memset(s, 0, sizeof(*s));
	s->known = 1;
}

void
audit_sealed_release(struct audit_sealed *s)
{
	free(s->missing);
	free(s->named);
	audit_sealed_init(s);
}

static int
seqs_add(uint64_t **v, uint64_t *n, uint64_t *cap, uint64_t seq)
{
	uint64_t *nv;

	if (*n == *cap) {
		uint64_t ncap = *cap != 0 ? *cap * 2 : 64;

		if ((nv = realloc(*v, ncap * sizeof(**v))) == NULL) {
			return IHALA_ENOMEM;
		}
		*v = nv;
		*cap = ncap;
	}
	(*v)[(*n)++] = seq;
	return 0;
}

static int sealed_problem(struct audit_sealed *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
sealed_problem(struct audit_sealed *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->problem, sizeof(s->problem), fmt, ap);
	va_end(ap);
	return IHALA_ETAMPER;
}

/* The erased_seqs (BrokerEvent field 6, packed or not) of an ERASURE entry's every event
 * (LogEntry field 7: a reader merges repeated occurrences) into s->named. */
static int
erased_seqs_add(struct audit_sealed *s, const uint8_t *entry, size_t len)
{
	const uint8_t *p = entry, *end = entry + len;
	struct wfield f, g;
	int err;

	while (p < end) {
		const uint8_t *q, *qend;

		if (wire_next(&p, end, &f) != 0) {
			return IHALA_EBADFRAME;
		}
		if (f.num != 7 || f.type != 2) {
			continue;
		}
		for (q = f.data, qend = f.data + f.len; q < qend;) {
			if (wire_next(&q, qend, &g) != 0) {
				return IHALA_EBADFRAME;
			}
			if (g.num == 6 && g.type == 0 &&
			    (err = seqs_add(&s->named, &s->nnamed, &s->capnamed, g.v)) != 0) {
				return err;
			}
			if (g.num == 6 && g.type == 2) {
				const uint8_t *r = g.data, *rend = g.data + g.len;
				uint64_t v;

				while (r < rend) {
					if (varint(&r, rend, &v) != 0) {
						return IHALA_EBADFRAME;
					}
					if ((err = seqs_add(&s->named, &s->nnamed, &s->capnamed,
					                    v)) != 0) {
						return err;
					}
				}
			}
		}
	}
	return 0;
}

/*
 * The entry's fields read in place, as a protobuf reader sees them (the last of a repeated
 * scalar), without decoding it: a verify of a million entries spent most of its time
 * unpacking each entry and its envelope into allocated messages for these three fields.
 */
int
audit_sealed_push(struct audit_sealed *s, uint64_t seq, const uint8_t *entry, size_t len,
                  const uint8_t *sealed, size_t sealed_len, int known)
{
	const uint8_t *p, *end, *env = NULL, *sha = NULL;
	size_t envlen = 0, shalen = 0;
	uint64_t kind = 0;
	struct wfield f;
	uint8_t h[SHA256_DIGEST_LENGTH];
	int err;

	if (!known) {
		s->known = 0;
	}
	if (entry == NULL) {
		if (len != 0) {
			return IHALA_EINVAL;
		}
		entry = (const uint8_t *)"";
	}
	for (p = entry, end = entry + len; p < end;) {
		if (wire_next(&p, end, &f) != 0) {
			return IHALA_EBADFRAME;
		}
		if (f.num == 5 && f.type == 0) {
			kind = f.v;
		} else if (f.num == 6 && f.type == 2) {
			env = f.data;
			envlen = f.len;
		}
	}
	if (kind == IHALA__V2__ENTRY_KIND__ENTRY_KIND_ERASURE) {
		s->erasures++;
		if ((err = erased_seqs_add(s, entry, len)) != 0) {
			return err;
		}
	}
	/* Envelope.sealed_sha256 (field 5); an envelope that does not parse commits to none */
	if (kind != IHALA__V2__ENTRY_KIND__ENTRY_KIND_SUBMISSION || env == NULL) {
		envlen = 0;
		env = (const uint8_t *)"";
	}
	for (p = env, end = env + envlen; p < end;) {
		if (wire_next(&p, end, &f) != 0) {
			sha = NULL;
			shalen = 0;
			break;
		}
		if (f.num == 5 && f.type == 2) {
			sha = f.data;
			shalen = f.len;
		}
	}
	if (shalen > 0) {
		s->sealed++;
		if (!known) {
			return 0;
		}
		if (sealed == NULL) {
			return seqs_add(&s->missing, &s->nmissing, &s->capmissing, seq);
		}
		s->present++;
		if ((err = merkle_sha256(sealed, sealed_len, h)) != 0) {
			return err;
		}
		if (shalen != sizeof(h) || memcmp(sha, h, sizeof(h)) != 0) {
			return sealed_problem(
			    s, "seq %llu: sealed part does not match its sealed_sha256",
			    (unsigned long long)seq);
		}
		return 0;
	}
	if (known && sealed != NULL) {
		return sealed_problem(s,
		                      "seq %llu: a sealed part is stored for an entry that commits "
		                      "to none",
		                      (unsigned long long)seq);
	}
	return 0;
}

static int
u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int
audit_sealed_finish(struct audit_sealed *s)
{
	uint64_t i, j, n = 0;

	if (s->nnamed > 1) { /* qsort's array must not be NULL, even for 0 elements */
		qsort(s->named, s->nnamed, sizeof(*s->named), u64_cmp);
	}
	for (i = 0; i < s->nnamed; i++) {
		if (i == 0 || s->named[i] != s->named[i - 1]) {
			s->named[n++] = s->named[i];
		}
	}
	s->nnamed = n;
	if (!s->known) {
		s->erased = s->nnamed;
		return 0;
	}
	/* missing comes in seq order */
	for (i = j = 0; i < s->nmissing; i++) {
		while (j < s->nnamed && s->named[j] < s->missing[i]) {
			j++;
		}
		if (j == s->nnamed || s->named[j] != s->missing[i]) {
			return sealed_problem(s,
			                      "seq %llu: sealed part missing but no erasure entry "
			                      "names it",
			                      (unsigned long long)s->missing[i]);
		}
	}
	s->erased = s->nmissing;
	return 0;
}

int
audit_verify_store(const char *dir, const char *key, const char *origin,
                   struct audit_verify_result *res)
{
	struct logdb *db = NULL;
	struct logdb_txn r = {NULL, NULL, NULL};
	struct logdb_log_iter it = {NULL, NULL, 0, 0}, sit = {NULL, NULL, 0, 0};
	struct audit_chain *a = NULL;
	struct sizes sz = {NULL, 0, 0};
	struct audit_sealed sl;
	const void *sealed = NULL;
	size_t sealed_len = 0;
	uint64_t sseq = 0;
	int sealed_end = 0;
	struct vctx v;
	uint8_t leaf[MERKLE_HASH_LEN], stored[MERKLE_HASH_LEN], root[MERKLE_HASH_LEN];
	const void *data;
	size_t len, k = 0;
	uint64_t seq;
	double t0 = now_s();
	int err;

	memset(res, 0, sizeof(*res));
	memset(&v, 0, sizeof(v));
	audit_sealed_init(&sl);
	if (key == NULL) {
		return IHALA_EINVAL;
	}
	if ((a = malloc(sizeof(*a))) == NULL) {
		return IHALA_ENOMEM;
	}
	audit_chain_init(a);
	if ((err = logdb_open(dir, &db)) != 0 || (err = logdb_begin(db, &r)) != 0) {
		goto out;
	}
	v.r = &r;
	v.key = key;
	v.origin = origin;
	v.res = res;
	if ((err = logdb_checkpoint_iter(&r, 0, collect_size, &sz)) != 0 ||
	    (err = logdb_log_iter_begin(&r, 1, &it)) != 0 ||
	    (err = logdb_sealed_iter_begin(&r, 1, &sit)) != 0) {
		goto out;
	}
	for (;;) {
		/* the checkpoint of the size reached now, if any (size 0 included); sizes come
		 * sorted and unique, so none is skipped */
		if (k < sz.n && sz.v[k] == merkle_range_size(&a->range)) {
			if ((err = merkle_range_root(&a->range, root)) != 0 ||
			    (err = check_checkpoint(&v, sz.v[k], root)) != 0) {
				goto out;
			}
			k++;
		}
		err = logdb_log_iter_next(&it, &seq, &data, &len);
		if (err == IHALA_ENOTFOUND) {
			err = 0;
			break;
		}
		if (err != 0) {
			goto out;
		}
		if ((err = audit_chain_push(a, seq, data, len, leaf)) != 0) {
			if (err == IHALA_ETAMPER) {
				memcpy(res->problem, a->problem, sizeof(res->problem));
			}
			goto out;
		}
		err = logdb_tree_get(&r, 0, seq - 1, stored);
		if (err == IHALA_ENOTFOUND) {
			err = res_problem(res, "seq %llu: no leaf hash stored for it",
			                  (unsigned long long)seq);
			goto out;
		}
		if (err != 0) {
			goto out;
		}
		if (memcmp(leaf, stored, MERKLE_HASH_LEN) != 0) {
			err = res_problem(res, "seq %llu: entry does not match its leaf hash",
			                  (unsigned long long)seq);
			goto out;
		}
		/* the sealed parts walked beside the log (both in seq order): no lookup each */
		while (!sealed_end && sseq < seq) {
			err = logdb_log_iter_next(&sit, &sseq, &sealed, &sealed_len);
			if (err == IHALA_ENOTFOUND) {
				sealed_end = 1;
				err = 0;
			} else if (err != 0) {
				goto out;
			}
		}
		err =
		    audit_sealed_push(&sl, seq, data, len,
		                      !sealed_end && sseq == seq && sealed_len > 0 ? sealed : NULL,
		                      !sealed_end && sseq == seq ? sealed_len : 0, 1);
		if (err != 0) {
			if (err == IHALA_ETAMPER) {
				memcpy(res->problem, sl.problem, sizeof(res->problem));
			} else if (err == IHALA_EBADFRAME || err == IHALA_EUTF8) {
				err = res_problem(res, "seq %llu: entry does not decode",
				                  (unsigned long long)seq);
			}
			goto out;
		}
		res->entries = seq;
	}
	if ((err = audit_sealed_finish(&sl)) != 0) {
		memcpy(res->problem, sl.problem, sizeof(res->problem));
		goto out;
	}
	res->erasures = sl.erasures;
	res->sealed = sl.sealed;
	res->erased = sl.erased;
	/* The end of the log: nothing may have been signed or hashed beyond it. */
	res->entries = merkle_range_size(&a->range);
	if (k < sz.n) {
		err = res_problem(
		    res,
		    "seq %llu missing: a checkpoint of size %llu covers it (log ends at "
		    "%llu)",
		    (unsigned long long)(res->entries + 1), (unsigned long long)sz.v[k],
		    (unsigned long long)res->entries);
		goto out;
	}
	err = logdb_tree_get(&r, 0, res->entries, stored);
	if (err == 0) {
		err = res_problem(res, "seq %llu missing: the tree has its leaf (log ends at %llu)",
		                  (unsigned long long)(res->entries + 1),
		                  (unsigned long long)res->entries);
		goto out;
	}
	if (err != IHALA_ENOTFOUND) {
		goto out;
	}
	err = merkle_range_root(&a->range, res->root);
out:
	res->seconds = now_s() - t0;
	logdb_log_iter_end(&it);
	logdb_log_iter_end(&sit);
	logdb_end(&r);
	logdb_close(db);
	checkpoint_verifier_free(v.ver);
	audit_sealed_release(&sl);
	free(sz.v);
	free(a);
	return err;
}

struct entry_walk {
	ihala_entry_cb cb;
	void *arg;
};

static int
entry_only(void *arg, uint64_t seq, const uint8_t *entry, size_t len, const uint8_t *sealed,
           size_t sealed_len, int known)
{
	struct entry_walk *w = arg;

	(void)sealed;
	(void)sealed_len;
	(void)known;
	return w->cb(w->arg, seq, entry, len);
}

int
audit_store_walk(const char *dir, ihala_entry_cb cb, void *arg)
{
	struct entry_walk w = {cb, arg};

	return audit_store_walk_records(dir, entry_only, &w);
}

int
audit_store_walk_records(const char *dir, audit_record_cb cb, void *arg)
{
	const uint8_t *sealed;
	size_t sealed_len;
	struct logdb *db = NULL;
	struct logdb_txn r = {NULL, NULL, NULL};
	struct logdb_log_iter it = {NULL, NULL, 0, 0};
	const void *data;
	size_t len;
	uint64_t seq;
	int err;

	if ((err = logdb_open(dir, &db)) != 0 || (err = logdb_begin(db, &r)) != 0 ||
	    (err = logdb_log_iter_begin(&r, 1, &it)) != 0) {
		goto out;
	}
	while ((err = logdb_log_iter_next(&it, &seq, &data, &len)) == 0) {
		if ((err = sealed_get(&r, seq, &sealed, &sealed_len)) != 0) {
			break;
		}
		if (cb(arg, seq, data, len, sealed, sealed_len, 1) != 0) {
			break;
		}
	}
	if (err == IHALA_ENOTFOUND) {
		err = 0;
	}
out:
	logdb_log_iter_end(&it);
	logdb_end(&r);
	logdb_close(db);
	return err;
}
