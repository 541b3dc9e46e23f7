/* journal.c - libihala's view of the node's journal (what it sent and received per referral). */
#include "client.h"
#include "error.h"

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
