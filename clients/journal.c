/* journal.c - libihala's view of the node's journal (what it sent and received per referral). */
#include "client.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>

int
ihala_journal_put(struct ihala_client *c, const char *referral_id, uint64_t seq, const char *json)
{
	if (c == NULL) {
		return IHALA_EINVAL;
	}
	return localstore_journal_put(c->ls, referral_id, seq, json);
}

int
ihala_journal_iter(struct ihala_client *c, const char *referral_id, ihala_journal_cb cb, void *arg)
{
	if (c == NULL) {
		return IHALA_EINVAL;
	}
	return localstore_journal_iter(c->ls, referral_id, cb, arg);
}

struct ids {
	char **v;
	size_t n, cap;
};

static int
ids_add(void *arg, const char *rid, uint64_t seq, const char *json)
{
	struct ids *ids = arg;
	char **nv;

	(void)seq;
	(void)json;
	if (ids->n > 0 && strcmp(ids->v[ids->n - 1], rid) == 0) {
		return 0; /* records come grouped by referral */
	}
	if (ids->n == ids->cap) {
		ids->cap = ids->cap ? 2 * ids->cap : 16;
		if ((nv = realloc(ids->v, ids->cap * sizeof(*nv))) == NULL) {
			return IHALA_ENOMEM;
		}
		ids->v = nv;
	}
	if ((ids->v[ids->n] = strdup(rid)) == NULL) {
		return IHALA_ENOMEM;
	}
	ids->n++;
	return 0;
}

int
ihala_journal_referrals(struct ihala_client *c, char ***ids_out, size_t *n_out)
{
	struct ids ids = {NULL, 0, 0};
	int err = ihala_journal_iter(c, NULL, ids_add, &ids);

	if (err != 0) {
		ihala_journal_referrals_free(ids.v, ids.n);
		return err;
	}
	*ids_out = ids.v;
	*n_out = ids.n;
	return 0;
}

void
ihala_journal_referrals_free(char **ids, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(ids[i]);
	}
	free(ids);
}
