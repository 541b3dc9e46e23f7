/* ratelog.c - per-agency rate limit on refusal log lines, with the count of those held back. */
#include "ratelog.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "tlsctx.h"

struct rl_agency {
	char id[ID_AGENCY_MAX + 1];
	uint64_t start_ms; /* when the current interval began (its first line was written) */
	uint64_t held;     /* refusals counted, not written, in this interval */
	struct rl_agency *next;
};

struct ratelog {
	uint64_t interval_ms;
	struct rl_agency *agencies;
};

int
ratelog_new(uint64_t interval_ms, struct ratelog **out)
{
	*out = calloc(1, sizeof(**out));
	if (*out == NULL) {
		return IHALA_ENOMEM;
	}
	(*out)->interval_ms = interval_ms > 0 ? interval_ms : 1;
	return 0;
}

static void
flush_one(struct ratelog *rl, struct rl_agency *a, uint64_t now_ms)
{
	if (a->held > 0) {
		log_security("agency '%s': %llu more refusals in the last %llu ms (refusals are "
		             "logged one per agency every %llu ms)",
		             a->id, (unsigned long long)a->held,
		             (unsigned long long)(now_ms - a->start_ms),
		             (unsigned long long)rl->interval_ms);
		a->held = 0;
	}
}

void
ratelog_free(struct ratelog *rl)
{
	struct rl_agency *a;

	if (rl == NULL) {
		return;
	}
	while ((a = rl->agencies) != NULL) {
		rl->agencies = a->next;
		flush_one(rl, a, a->start_ms + rl->interval_ms);
		free(a);
	}
	free(rl);
}

int
ratelog_allow(struct ratelog *rl, const char *agency, uint64_t now_ms)
{
	struct rl_agency *a;

	for (a = rl->agencies; a != NULL; a = a->next) {
		if (strncmp(a->id, agency, sizeof(a->id)) == 0) {
			break;
		}
	}
	if (a == NULL) {
		a = calloc(1, sizeof(*a));
		if (a == NULL) {
			return 1;
		}
		strncpy(a->id, agency, sizeof(a->id) - 1);
		a->next = rl->agencies;
		rl->agencies = a;
	} else if (now_ms - a->start_ms < rl->interval_ms) {
		a->held++;
		return 0;
	}
	flush_one(rl, a, now_ms);
	a->start_ms = now_ms;
	return 1;
}

void
ratelog_flush(struct ratelog *rl, uint64_t now_ms)
{
	struct rl_agency *a;

	for (a = rl->agencies; a != NULL; a = a->next) {
		if (a->held > 0 && now_ms - a->start_ms >= rl->interval_ms) {
			flush_one(rl, a, now_ms);
		}
	}
}
