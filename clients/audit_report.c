/* audit_report.c - auditors' library, reading the log: CSV rows, referral statistics. */
#include "audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "frame.h"
#include "log.h"
#include "pbjson.h"

#define TS(x) IHALA__V2__TASK_STATUS__TASK_STATUS_##x
#define KIND(x) IHALA__V2__ENTRY_KIND__ENTRY_KIND_##x

/* ---- what an entry is about ---- */

struct facts {
	const char *message_id;
	const char *referral_id;
	int status;   /* TaskStatus, 0 when the entry sets none */
	int priority; /* Priority, 0 when none */
	const Ihala__V2__ServiceCode *services;
	size_t n_services;
	const Ihala__V2__Outcome *outcome;
	const char *clerk_id; /* Envelope.clerk_id, NULL or "" when none */
};

static void
facts_of(const Ihala__V2__LogEntry *e, const Ihala__V2__Envelope *env, struct facts *f)
{
	memset(f, 0, sizeof(*f));
	if (env != NULL) {
		f->message_id = env->message_id;
		f->clerk_id = env->clerk_id;
		switch (env->kind_case) {
		case IHALA__V2__ENVELOPE__KIND_REFERRAL:
			f->referral_id = env->referral->referral_id;
			f->status = TS(REQUESTED);
			f->priority = env->referral->priority;
			f->services = env->referral->services;
			f->n_services = env->referral->n_services;
			break;
		case IHALA__V2__ENVELOPE__KIND_STATUS_UPDATE:
			f->referral_id = env->status_update->referral_id;
			f->status = env->status_update->status;
			f->outcome = env->status_update->outcome;
			break;
		case IHALA__V2__ENVELOPE__KIND_OUTCOME:
			f->referral_id = env->outcome->referral_id;
			f->outcome = env->outcome;
			break;
		case IHALA__V2__ENVELOPE__KIND_NOTE:
			f->referral_id = env->note->referral_id;
			break;
		case IHALA__V2__ENVELOPE__KIND_ERASE:
			f->referral_id = env->erase->referral_id;
			break;
		case IHALA__V2__ENVELOPE__KIND_UNREADABLE:
			f->referral_id = env->unreadable->referral_id;
			break;
		default:
			break;
		}
		if (f->outcome != NULL) {
			f->services = f->outcome->services_delivered;
			f->n_services = f->outcome->n_services_delivered;
		}
	} else if (e->event != NULL) {
		f->referral_id = e->event->referral_id;
		f->status = e->event->status;
	}
}

/* Decode an entry and, for a submission, its envelope (NULL when it does not decode). */
static int
decode(const uint8_t *buf, size_t len, Ihala__V2__LogEntry **e, Ihala__V2__Envelope **env)
{
	int err;

	*env = NULL;
	if ((err = logentry_decode(buf, len, e)) != 0) {
		return err;
	}
	if ((*e)->kind == KIND(SUBMISSION) &&
	    envelope_decode((*e)->envelope.data, (*e)->envelope.len, env) != 0) {
		*env = NULL;
	}
	return 0;
}

static const char *
enum_name(const ProtobufCEnumDescriptor *d, int v, char *buf, size_t len)
{
	if (v == 0) {
		return "";
	}
	if (pbjson_enum_to_name(d, v, buf, len) != 0) {
		snprintf(buf, len, "%d", v);
	}
	return buf;
}

/* ---- CSV ---- */

static int
csv_field(FILE *fp, const char *s, int last)
{
	const char *p;

	if (s == NULL) {
		s = "";
	}
	if (strpbrk(s, ",\"\r\n") == NULL) {
		fputs(s, fp);
	} else {
		fputc('"', fp);
		for (p = s; *p != '\0'; p++) {
			if (*p == '"') {
				fputc('"', fp);
			}
			fputc(*p, fp);
		}
		fputc('"', fp);
	}
	fputs(last ? "\r\n" : ",", fp);
	return ferror(fp) ? IHALA_EIO : 0;
}

int
audit_csv_header(FILE *fp)
{
	fputs("seq,time,sender,recipient,kind,message_id,referral_id,status,priority,services,"
	      "clerk_id\r\n",
	      fp);
	return ferror(fp) ? IHALA_EIO : 0;
}

int
audit_csv_row(FILE *fp, uint64_t seq, const uint8_t *entry, size_t len)
{
	Ihala__V2__LogEntry *e = NULL;
	Ihala__V2__Envelope *env = NULL;
	struct facts f;
	char num[24], when[40], kind[64], status[64], prio[64], svc[1024];
	size_t i, used = 0;
	struct tm tm;
	time_t t;
	int err;

	if ((err = decode(entry, len, &e, &env)) != 0) {
		return err;
	}
	facts_of(e, env, &f);
	snprintf(num, sizeof(num), "%llu", (unsigned long long)seq);
	t = (time_t)(e->broker_time_ms / 1000);
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + strlen(when), sizeof(when) - strlen(when), ".%03uZ",
	         (unsigned)(e->broker_time_ms % 1000));
	svc[0] = '\0';
	for (i = 0; i < f.n_services && used + 1 < sizeof(svc); i++) {
		char name[64];

		used += (size_t)snprintf(svc + used, sizeof(svc) - used, "%s%s", i ? ";" : "",
		                         enum_name(&ihala__v2__service_code__descriptor,
		                                   (int)f.services[i], name, sizeof(name)));
	}
	if ((err = csv_field(fp, num, 0)) == 0 && (err = csv_field(fp, when, 0)) == 0 &&
	    (err = csv_field(fp, e->sender, 0)) == 0 &&
	    (err = csv_field(fp, e->recipient, 0)) == 0 &&
	    (err = csv_field(
	         fp,
	         enum_name(&ihala__v2__entry_kind__descriptor, (int)e->kind, kind, sizeof(kind)),
	         0)) == 0 &&
	    (err = csv_field(fp, f.message_id, 0)) == 0 &&
	    (err = csv_field(fp, f.referral_id, 0)) == 0 &&
	    (err = csv_field(
	         fp,
	         enum_name(&ihala__v2__task_status__descriptor, f.status, status, sizeof(status)),
	         0)) == 0 &&
	    (err = csv_field(
	         fp, enum_name(&ihala__v2__priority__descriptor, f.priority, prio, sizeof(prio)),
	         0)) == 0) {
		if ((err = csv_field(fp, svc, 0)) == 0) {
			err = csv_field(fp, f.clerk_id, 1);
		}
	}
	envelope_free(env);
	logentry_free(e);
	return err;
}

/* ---- statistics ---- */

#define NSTATUS 10  /* TaskStatus values counted: UNSPECIFIED .. CANCELLED */
#define NSERVICE 32 /* ServiceCode values kept in a bit mask */

struct ref {
	char *id;
	unsigned from, to; /* agency indexes */
	int status;
	int overdue;
	uint32_t requested; /* ServiceCode bit mask */
	uint32_t delivered; /* of the last outcome */
	int has_outcome, implemented, success;
	uint64_t t_created, t_accepted, t_completed; /* broker ms; 0: not yet */
};

struct audit_stats {
	uint64_t entries, first_ms, last_ms;
	uint64_t by_kind[8];
	uint64_t other_kind;
	char **agency;
	size_t n_agency, cap_agency;
	struct ref *refs;
	size_t n_refs, cap_refs;
	size_t *slot; /* open addressing: index + 1 into refs, 0 empty */
	size_t n_slot;
};

int
audit_stats_new(struct audit_stats **out)
{
	*out = calloc(1, sizeof(**out));
	return *out != NULL ? 0 : IHALA_ENOMEM;
}

void
audit_stats_free(struct audit_stats *st)
{
	size_t i;

	if (st == NULL) {
		return;
	}
	for (i = 0; i < st->n_refs; i++) {
		free(st->refs[i].id);
	}
	for (i = 0; i < st->n_agency; i++) {
		free(st->agency[i]);
	}
	free(st->agency);
	free(st->refs);
	free(st->slot);
	free(st);
}

static uint64_t
hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s != '\0'; s++) {
		h = (h ^ (uint8_t)*s) * 1099511628211ULL;
	}
	return h;
}

static int
agency_index(struct audit_stats *st, const char *name, unsigned *out)
{
	size_t i;

	for (i = 0; i < st->n_agency; i++) {
		if (strcmp(st->agency[i], name) == 0) {
			*out = (unsigned)i;
			return 0;
		}
	}
	if (st->n_agency == st->cap_agency) {
		size_t cap = st->cap_agency ? st->cap_agency * 2 : 16;
		char **v = realloc(st->agency, cap * sizeof(*v));

		if (v == NULL) {
			return IHALA_ENOMEM;
		}
		st->agency = v;
		st->cap_agency = cap;
	}
	if ((st->agency[st->n_agency] = strdup(name)) == NULL) {
		return IHALA_ENOMEM;
	}
	*out = (unsigned)st->n_agency++;
	return 0;
}

static struct ref *
ref_find(const struct audit_stats *st, const char *id)
{
	size_t i;

	if (st->n_slot == 0 || id == NULL) {
		return NULL;
	}
	for (i = hash_str(id) & (st->n_slot - 1); st->slot[i] != 0;
	     i = (i + 1) & (st->n_slot - 1)) {
		if (strcmp(st->refs[st->slot[i] - 1].id, id) == 0) {
			return &st->refs[st->slot[i] - 1];
		}
	}
	return NULL;
}

static int
rehash(struct audit_stats *st, size_t n_slot)
{
	size_t *slot = calloc(n_slot, sizeof(*slot));
	size_t r, i;

	if (slot == NULL) {
		return IHALA_ENOMEM;
	}
	for (r = 0; r < st->n_refs; r++) {
		for (i = hash_str(st->refs[r].id) & (n_slot - 1); slot[i] != 0;
		     i = (i + 1) & (n_slot - 1)) {
		}
		slot[i] = r + 1;
	}
	free(st->slot);
	st->slot = slot;
	st->n_slot = n_slot;
	return 0;
}

/* A new referral (the id is not known yet). */
static int
ref_add(struct audit_stats *st, const char *id, struct ref **out)
{
	struct ref *r;
	size_t i;
	int err;

	if ((st->n_refs + 1) * 2 > st->n_slot &&
	    (err = rehash(st, st->n_slot ? st->n_slot * 2 : 1024)) != 0) {
		return err;
	}
	if (st->n_refs == st->cap_refs) {
		size_t cap = st->cap_refs ? st->cap_refs * 2 : 256;
		struct ref *v = realloc(st->refs, cap * sizeof(*v));

		if (v == NULL) {
			return IHALA_ENOMEM;
		}
		st->refs = v;
		st->cap_refs = cap;
	}
	r = &st->refs[st->n_refs];
	memset(r, 0, sizeof(*r));
	if ((r->id = strdup(id)) == NULL) {
		return IHALA_ENOMEM;
	}
	for (i = hash_str(id) & (st->n_slot - 1); st->slot[i] != 0;
	     i = (i + 1) & (st->n_slot - 1)) {
	}
	st->slot[i] = ++st->n_refs;
	*out = r;
	return 0;
}

static uint32_t
service_mask(const Ihala__V2__ServiceCode *v, size_t n)
{
	uint32_t m = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if ((unsigned)v[i] < NSERVICE) {
			m |= (uint32_t)1 << (unsigned)v[i];
		}
	}
	return m;
}

static int
stats_referral(struct audit_stats *st, const Ihala__V2__LogEntry *e, const Ihala__V2__Referral *rf)
{
	struct ref *r;
	int err;

	if (rf->referral_id == NULL || rf->referral_id[0] == '\0' ||
	    ref_find(st, rf->referral_id) != NULL) {
		return 0; /* the broker never logs a second referral of one id */
	}
	if ((err = ref_add(st, rf->referral_id, &r)) != 0 ||
	    (err = agency_index(st, e->sender, &r->from)) != 0 ||
	    (err = agency_index(st, e->recipient, &r->to)) != 0) {
		return err;
	}
	r->status = TS(REQUESTED);
	r->requested = service_mask(rf->services, rf->n_services);
	r->t_created = e->broker_time_ms;
	return 0;
}

static void
stats_outcome(struct ref *r, const Ihala__V2__Outcome *o)
{
	r->has_outcome = 1;
	r->implemented = o->service_implemented;
	r->success = o->success;
	r->delivered = service_mask(o->services_delivered, o->n_services_delivered);
}

static void
stats_status(struct ref *r, int status, uint64_t t)
{
	if (status == TS(OVERDUE)) {
		r->overdue = 1;
		return;
	}
	if (status <= 0 || status >= NSTATUS) {
		return;
	}
	r->status = status;
	if (status == TS(ACCEPTED) && r->t_accepted == 0) {
		r->t_accepted = t;
	}
	if (status == TS(COMPLETED) && r->t_completed == 0) {
		r->t_completed = t;
	}
}

int
audit_stats_add(struct audit_stats *st, uint64_t seq, const uint8_t *entry, size_t len)
{
	Ihala__V2__LogEntry *e = NULL;
	Ihala__V2__Envelope *env = NULL;
	struct facts f;
	struct ref *r;
	int err;

	(void)seq;
	if ((err = decode(entry, len, &e, &env)) != 0) {
		return err;
	}
	if (st->entries == 0) {
		st->first_ms = e->broker_time_ms;
	}
	st->entries++;
	st->last_ms = e->broker_time_ms;
	if ((unsigned)e->kind < sizeof(st->by_kind) / sizeof(st->by_kind[0])) {
		st->by_kind[e->kind]++;
	} else {
		st->other_kind++;
	}
	facts_of(e, env, &f);
	if (env != NULL && env->kind_case == IHALA__V2__ENVELOPE__KIND_REFERRAL) {
		err = stats_referral(st, e, env->referral);
	} else if ((r = ref_find(st, f.referral_id)) != NULL) {
		if (e->kind == KIND(SUBMISSION) || e->kind == KIND(BROKER_STATUS)) {
			stats_status(r, f.status, e->broker_time_ms);
		}
		if (f.outcome != NULL) {
			stats_outcome(r, f.outcome);
		}
	}
	envelope_free(env);
	logentry_free(e);
	return err;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile p (0 < p <= 100) of n sorted values. */
static uint64_t
percentile(const uint64_t *v, size_t n, unsigned p)
{
	size_t rank = (n * p + 99) / 100;

	return v[rank > 0 ? rank - 1 : 0];
}

static int
set(json_t *obj, const char *key, json_t *v)
{
	return v == NULL || json_object_set_new(obj, key, v) != 0 ? IHALA_ENOMEM : 0;
}

static json_t *
durations(const struct audit_stats *st, int completed)
{
	uint64_t *v = malloc((st->n_refs ? st->n_refs : 1) * sizeof(*v));
	size_t i, n = 0;
	json_t *j;

	if (v == NULL) {
		return NULL;
	}
	for (i = 0; i < st->n_refs; i++) {
		const struct ref *r = &st->refs[i];
		uint64_t t = completed ? r->t_completed : r->t_accepted;

		if (t != 0) {
			v[n++] = t >= r->t_created ? t - r->t_created : 0;
		}
	}
	qsort(v, n, sizeof(*v), cmp_u64);
	if (n == 0) {
		j = json_pack("{s:i,s:n,s:n}", "count", 0, "medianMs", "p90Ms");
	} else {
		j = json_pack("{s:I,s:I,s:I}", "count", (json_int_t)n, "medianMs",
		              (json_int_t)percentile(v, n, 50), "p90Ms",
		              (json_int_t)percentile(v, n, 90));
	}
	free(v);
	return j;
}

static json_t *
status_counts(const uint64_t *c, int all)
{
	json_t *j = json_object();
	char name[64];
	int s;

	for (s = 1; j != NULL && s < NSTATUS; s++) {
		if ((all || c[s] != 0) &&
		    set(j, enum_name(&ihala__v2__task_status__descriptor, s, name, sizeof(name)),
		        json_integer((json_int_t)c[s])) != 0) {
			json_decref(j);
			return NULL;
		}
	}
	return j;
}

struct pair {
	unsigned from, to;
	uint64_t n;
	uint64_t by[NSTATUS];
};

static int
cmp_pair(const struct pair *x, const struct pair *y, char **ag)
{
	int c = strcmp(ag[x->from], ag[y->from]);

	return c != 0 ? c : strcmp(ag[x->to], ag[y->to]);
}

/* Agency pairs are few (agencies squared at most): an insertion sort does. */
static void
sort_pairs(struct pair *p, size_t n, char **ag)
{
	size_t i, j;

	for (i = 1; i < n; i++) {
		struct pair t = p[i];

		for (j = i; j > 0 && cmp_pair(&p[j - 1], &t, ag) > 0; j--) {
			p[j] = p[j - 1];
		}
		p[j] = t;
	}
}

static json_t *
pairs_json(const struct audit_stats *st)
{
	struct pair *p = calloc(st->n_refs ? st->n_refs : 1, sizeof(*p));
	json_t *arr = json_array();
	size_t i, j, n = 0;

	if (p == NULL || arr == NULL) {
		goto fail;
	}
	for (i = 0; i < st->n_refs; i++) {
		const struct ref *r = &st->refs[i];

		for (j = 0; j < n && (p[j].from != r->from || p[j].to != r->to); j++) {
		}
		if (j == n) {
			p[n].from = r->from;
			p[n].to = r->to;
			n++;
		}
		p[j].n++;
		p[j].by[r->status]++;
	}
	sort_pairs(p, n, st->agency);
	for (i = 0; i < n; i++) {
		json_t *o = json_pack("{s:s,s:s,s:I,s:o*}", "from", st->agency[p[i].from], "to",
		                      st->agency[p[i].to], "referrals", (json_int_t)p[i].n,
		                      "byStatus", status_counts(p[i].by, 0));

		if (o == NULL || json_array_append_new(arr, o) != 0) {
			goto fail;
		}
	}
	free(p);
	return arr;
fail:
	free(p);
	json_decref(arr);
	return NULL;
}

static json_t *
outcomes_json(const struct audit_stats *st)
{
	uint64_t c[NSERVICE][4];
	json_t *j = json_object();
	char name[64];
	size_t i;
	unsigned s;

	memset(c, 0, sizeof(c));
	for (i = 0; i < st->n_refs; i++) {
		const struct ref *r = &st->refs[i];
		uint32_t m = r->delivered != 0 ? r->delivered : r->requested;

		if (!r->has_outcome) {
			continue;
		}
		for (s = 0; s < NSERVICE; s++) {
			if (m & ((uint32_t)1 << s)) {
				c[s][0]++;
				c[s][1] += r->implemented != 0;
				c[s][2] += r->success != 0;
				c[s][3] += r->success == 0;
			}
		}
	}
	for (s = 0; j != NULL && s < NSERVICE; s++) {
		if (c[s][0] == 0) {
			continue;
		}
		if (set(j,
		        enum_name(&ihala__v2__service_code__descriptor, (int)s, name, sizeof(name)),
		        json_pack("{s:I,s:I,s:I,s:I}", "outcomes", (json_int_t)c[s][0],
		                  "implemented", (json_int_t)c[s][1], "successful",
		                  (json_int_t)c[s][2], "unsuccessful", (json_int_t)c[s][3])) != 0) {
			json_decref(j);
			return NULL;
		}
	}
	return j;
}

int
audit_stats_json(const struct audit_stats *st, json_t **out)
{
	uint64_t by[NSTATUS];
	uint64_t marked = 0, open = 0;
	json_t *j = NULL, *kinds = NULL;
	char name[64];
	size_t i;
	int err = 0;

	*out = NULL;
	memset(by, 0, sizeof(by));
	for (i = 0; i < st->n_refs; i++) {
		const struct ref *r = &st->refs[i];

		by[r->status]++;
		if (r->overdue) {
			marked++;
			open += r->status == TS(REQUESTED) || r->status == TS(RECEIVED);
		}
	}
	if ((kinds = json_object()) == NULL) {
		return IHALA_ENOMEM;
	}
	for (i = 1; i < sizeof(st->by_kind) / sizeof(st->by_kind[0]) && err == 0; i++) {
		if (st->by_kind[i] != 0) {
			err = set(kinds,
			          enum_name(&ihala__v2__entry_kind__descriptor, (int)i, name,
			                    sizeof(name)),
			          json_integer((json_int_t)st->by_kind[i]));
		}
	}
	if (err == 0 && (st->by_kind[0] != 0 || st->other_kind != 0)) {
		err = set(kinds, "other",
		          json_integer((json_int_t)(st->by_kind[0] + st->other_kind)));
	}
	if (err != 0) {
		json_decref(kinds);
		return err;
	}
	j = json_pack("{s:I,s:I,s:I,s:o,s:I,s:o*,s:o*,s:o*,s:o*,s:{s:I,s:I},s:o*}", "entries",
	              (json_int_t)st->entries, "firstTime", (json_int_t)st->first_ms, "lastTime",
	              (json_int_t)st->last_ms, "entriesByKind", kinds, "referrals",
	              (json_int_t)st->n_refs, "byStatus", status_counts(by, 1), "byAgencyPair",
	              pairs_json(st), "timeToAccept", durations(st, 0), "timeToComplete",
	              durations(st, 1), "overdue", "marked", (json_int_t)marked, "open",
	              (json_int_t)open, "outcomesByService", outcomes_json(st));
	if (j == NULL) {
		return IHALA_ENOMEM;
	}
	/* "o*" drops a NULL (out of memory) silently: demand every key. */
	if (json_object_size(j) != 11) {
		json_decref(j);
		return IHALA_ENOMEM;
	}
	*out = j;
	return 0;
}
