/* agency_table.c - the writer's copy of the configured agencies, in the policy's terms. */
#include "agency_table.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "policy.h"

struct policy_table {
	struct writer_policy wp;
	struct policy_agency *a;
	size_t n;
};

static const struct policy_agency *
table_find(void *ctx, const char *id)
{
	struct policy_table *t = ctx;
	size_t i;

	for (i = 0; i < t->n; i++) {
		if (strcmp(t->a[i].id, id) == 0) {
			return &t->a[i];
		}
	}
	return NULL;
}

static void
table_release(struct writer_policy *wp)
{
	struct policy_table *t = (struct policy_table *)wp;
	size_t i, j;

	if (t == NULL) {
		return;
	}
	for (i = 0; i < t->n; i++) {
		free((char *)t->a[i].id);
		for (j = 0; j < t->a[i].n_may_send_to; j++) {
			free((char *)t->a[i].may_send_to[j]);
		}
		free((char **)t->a[i].may_send_to);
	}
	free(t->a);
	free(t);
}

struct writer_policy *
agency_table_new(const struct broker_config *cfg)
{
	struct policy_table *t = calloc(1, sizeof(*t));
	size_t i, j;

	if (t == NULL || (t->a = calloc(cfg->nagencies + 1, sizeof(*t->a))) == NULL) {
		free(t);
		return NULL;
	}
	t->wp.view.find = table_find;
	t->wp.view.ctx = t;
	t->wp.release = table_release;
	t->wp.queue_limit = cfg->limits.queue_limit;
	t->wp.queue_share = cfg->limits.queue_share;
	t->wp.referral_rate = cfg->limits.referral_rate;
	t->wp.referral_bytes = cfg->limits.referral_bytes;
	t->wp.retention_ms = cfg->limits.retention_ms;
	t->wp.deadline_ms[IHALA__V2__PRIORITY__PRIORITY_EMERGENCY] = cfg->deadlines.emergency_ms;
	t->wp.deadline_ms[IHALA__V2__PRIORITY__PRIORITY_URGENT] = cfg->deadlines.urgent_ms;
	t->wp.deadline_ms[IHALA__V2__PRIORITY__PRIORITY_NORMAL] = cfg->deadlines.normal_ms;
	t->wp.deadline_ms[0] = cfg->deadlines.normal_ms;
	for (i = 0; i < cfg->nagencies; i++) {
		const struct agency_config *ac = &cfg->agencies[i];
		struct policy_agency *pa = &t->a[t->n++];

		if ((pa->id = strdup(ac->id)) == NULL) {
			goto fail;
		}
		pa->role = (Ihala__V2__Role)ac->role;
		pa->may_send = ac->may_send;
		pa->may_open_cases = ac->may_open_cases;
		/* A list that cannot be copied must not become "any agency" (NULL). */
		if (!ac->may_send_to_any) {
			const char **to = calloc(ac->may_send_to_count + 1, sizeof(*to));

			if (to == NULL) {
				goto fail;
			}
			pa->may_send_to = to;
			pa->n_may_send_to = ac->may_send_to_count;
			for (j = 0; j < ac->may_send_to_count; j++) {
				if ((to[j] = strdup(ac->may_send_to[j])) == NULL) {
					goto fail;
				}
			}
		}
	}
	return &t->wp;
fail:
	table_release(&t->wp);
	return NULL;
}
