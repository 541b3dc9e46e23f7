/* client_ckpt.c - libihala: the broker's log checked against the checkpoints this node keeps. */
#include "client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "log.h"
#include "merkle.h"

/* ---- checkpoints: verified with a key, kept, and checked for consistency ---- */

/*
 * With a checkpoint key (cfg->checkpoint_key, or the key given to ihala_prove) the node
 * keeps the last signed checkpoint it verified in its local store. Every later one it sees
 * (in a Welcome, with a proof) must extend it: the same origin, a size not smaller, and a
 * consistency proof from the kept size to the new one that verifies between the two signed
 * roots. Anything else means the broker's log was rewritten or forked since: the node then
 * refuses to go on (ckpt_bad, for the client's life). Without a key nothing is checked.
 */

enum ckpt_rel {
	CKPT_FIRST, /* nothing kept yet */
	CKPT_SAME,  /* the kept one (same size and root) */
	CKPT_NEWER, /* larger: a consistency proof decides */
};

/* The origin (first line) of a note not verified yet: the name of a PEM key's verifier. */
static int
note_origin(const char *text, char *out, size_t outlen)
{
	const char *nl = strchr(text, '\n');
	size_t n;

	if (nl == NULL || (n = (size_t)(nl - text)) == 0 || n >= outlen) {
		return IHALA_EINVAL;
	}
	memcpy(out, text, n);
	out[n] = '\0';
	return 0;
}

/*
 * Verify the signed checkpoint `text` with `key`: the path of the broker's Ed25519 public
 * key (PEM; the verifier is named after the note's origin line, as the broker names its key
 * after its origin) or a C2SP verifier key "name+id+key". *ck on success.
 */
static int
ckpt_verify(struct ihala_client *c, const char *key, const char *text, struct checkpoint *ck)
{
	char origin[CHECKPOINT_NAME_MAX + 1];
	int is_file = access(key, F_OK) == 0;
	int err;

	if (note_origin(text, origin, sizeof(origin)) != 0) {
		return client_fail(c, IHALA_ESIGNATURE,
		                   "the broker's checkpoint is not a signed checkpoint");
	}
	if (c->ver == NULL || strcmp(c->ver_key, key) != 0 ||
	    (is_file && strcmp(checkpoint_verifier_name(c->ver), origin) != 0)) {
		struct checkpoint_verifier *v = NULL;
		char *k = strdup(key);

		if (k == NULL) {
			return IHALA_ENOMEM;
		}
		err = is_file ? checkpoint_verifier_load(key, origin, &v)
		              : checkpoint_verifier_parse(key, &v);
		if (err != 0) {
			free(k);
			return client_fail(
			    c, err == IHALA_ENOMEM ? err : IHALA_ECONFIG,
			    "cannot use checkpoint key '%s': %s (the broker's Ed25519 public "
			    "key in PEM, or a C2SP verifier key)",
			    key, ihala_strerror(err));
		}
		checkpoint_verifier_free(c->ver);
		free(c->ver_key);
		c->ver = v;
		c->ver_key = k;
	}
	err = checkpoint_open(c->ver, NULL, text, strlen(text), ck);
	if (err == IHALA_ENOMEM || err == IHALA_EINTERNAL) {
		return client_fail(c, err, "cannot verify a checkpoint: %s", ihala_strerror(err));
	}
	if (err != 0) {
		return client_fail(
		    c, IHALA_ESIGNATURE,
		    "the checkpoint of log '%s' does not verify with checkpoint key '%s': %s",
		    origin, key, ihala_strerror(err));
	}
	return 0;
}

/* The broker's log contradicts the kept checkpoint of size `size`: say so, loudly, for good. */
static int
ckpt_inconsistent(struct ihala_client *c, uint64_t size, const char *detail)
{
	c->ckpt_bad = 1;
	snprintf(c->ckpt_msg, sizeof(c->ckpt_msg),
	         "the broker's log is inconsistent with checkpoint of size %llu this node saw: "
	         "forked or rewritten history (%.200s)",
	         (unsigned long long)size, detail);
	log_security("%s", c->ckpt_msg);
	return client_fail(c, IHALA_EINCONSISTENT, "%s", c->ckpt_msg);
}

/*
 * Compare a verified checkpoint `nw` (NULL: the broker has none) with the one this node
 * kept (verified again, into *old). *rel says how they relate; IHALA_EINCONSISTENT when
 * `nw` cannot extend it.
 */
static int
ckpt_compare(struct ihala_client *c, const char *key, const struct checkpoint *nw,
             struct checkpoint *old, enum ckpt_rel *rel)
{
	char detail[CHECKPOINT_NAME_MAX * 2 + 64];
	char *text = NULL;
	int err;

	memset(old, 0, sizeof(*old));
	*rel = CKPT_FIRST;
	err = localstore_checkpoint_get(c->ls, &text);
	if (err == IHALA_ENOTFOUND) {
		return 0;
	}
	if (err != 0) {
		return client_fail(c, err, "cannot read the checkpoint this node kept: %s",
		                   ihala_strerror(err));
	}
	err = ckpt_verify(c, key, text, old);
	free(text);
	if (err != 0) {
		return client_fail(
		    c, err,
		    "the checkpoint this node kept does not verify with checkpoint key '%s' "
		    "(was the key changed?)",
		    key);
	}
	if (nw == NULL) {
		return ckpt_inconsistent(c, old->size, "the broker has no signed checkpoint");
	}
	if (strcmp(old->origin, nw->origin) != 0) {
		snprintf(detail, sizeof(detail), "the broker now signs log '%s', not '%s'",
		         nw->origin, old->origin);
		return ckpt_inconsistent(c, old->size, detail);
	}
	if (nw->size < old->size) {
		/* Most often a store restored from an older copy: say so, with both sizes. */
		snprintf(detail, sizeof(detail),
		         "the broker's checkpoint has size %llu: its log lost the entries after "
		         "that, as when its store is rolled back to an older copy",
		         (unsigned long long)nw->size);
		return ckpt_inconsistent(c, old->size, detail);
	}
	if (nw->size == old->size) {
		if (memcmp(nw->root, old->root, CHECKPOINT_HASH_LEN) != 0) {
			return ckpt_inconsistent(c, old->size,
			                         "the broker signed another root for that size");
		}
		*rel = CKPT_SAME;
		return 0;
	}
	*rel = CKPT_NEWER;
	return 0;
}

/* Check the broker's consistency proof from the kept checkpoint `old` to the newer `nw`. */
static int
ckpt_check_proof(struct ihala_client *c, const struct checkpoint *old, const struct checkpoint *nw,
                 const Ihala__V2__ConsistencyProof *cp)
{
	uint8_t path[MERKLE_MAX_PATH][MERKLE_HASH_LEN];
	char detail[128];
	size_t i;
	int err;

	snprintf(detail, sizeof(detail),
	         "no valid consistency proof from it to the broker's checkpoint of size %llu",
	         (unsigned long long)nw->size);
	if (cp->size1 != old->size || cp->size2 != nw->size || cp->n_path > MERKLE_MAX_PATH) {
		return ckpt_inconsistent(c, old->size, detail);
	}
	for (i = 0; i < cp->n_path; i++) {
		if (cp->path[i].len != MERKLE_HASH_LEN) {
			return ckpt_inconsistent(c, old->size, detail);
		}
		memcpy(path[i], cp->path[i].data, MERKLE_HASH_LEN);
	}
	err = merkle_verify_consistency(old->size, nw->size, old->root, nw->root,
	                                (const uint8_t(*)[MERKLE_HASH_LEN])path, cp->n_path);
	if (err == IHALA_EPROOF) {
		return ckpt_inconsistent(c, old->size, detail);
	}
	if (err != 0) {
		return client_fail(c, err, "cannot check a consistency proof: %s",
		                   ihala_strerror(err));
	}
	return 0;
}

static int
ckpt_keep(struct ihala_client *c, const char *text)
{
	int err = localstore_checkpoint_put(c->ls, text);

	if (err != 0) {
		return client_fail(c, err, "cannot keep the broker's checkpoint: %s",
		                   ihala_strerror(err));
	}
	return 0;
}

/*
 * A Welcome came (state OPEN) and a checkpoint key is configured: check its checkpoint
 * before anything goes out. 0: the session may go on now. 1: not yet (state VERIFYING, a
 * consistency proof was asked for; ckpt_gate_answer decides) or not at all (state NONE,
 * c->refused says why).
 */
int
ckpt_gate_welcome(struct ihala_client *c)
{
	const char *key = c->cfg->checkpoint_key;
	const char *text = c->welcome->welcome->checkpoint;
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__ProofRequest q = IHALA__V2__PROOF_REQUEST__INIT;
	struct checkpoint nw, old;
	enum ckpt_rel rel = CKPT_FIRST;
	int err;

	if (text == NULL || text[0] == '\0') {
		err = ckpt_compare(c, key, NULL, &old, &rel);
	} else if ((err = ckpt_verify(c, key, text, &nw)) == 0) {
		err = ckpt_compare(c, key, &nw, &old, &rel);
		if (err == 0 && rel == CKPT_FIRST) {
			err = ckpt_keep(c, text);
		}
	}
	if (err == 0 && rel == CKPT_NEWER) {
		q.request_id = c->next_request++;
		q.tree_size = nw.size;
		q.consistency_from = old.size;
		f.kind_case = IHALA__V2__FRAME__KIND_PROOF_REQUEST;
		f.proof_request = &q;
		if ((c->gate_text = strdup(text)) == NULL) {
			err = IHALA_ENOMEM;
		} else if ((err = client_send_frame(c, &f)) == 0) {
			c->gate_request = q.request_id;
			c->gate_old = old;
			c->gate_new = nw;
			c->state = SESS_VERIFYING;
			return 1;
		}
		client_fail(c, err, "cannot ask the broker for a consistency proof: %s",
		            ihala_strerror(err));
	}
	if (err != 0) {
		c->state = SESS_NONE;
		c->refused = err;
		return 1;
	}
	return 0;
}

/* The answer to gate_welcome's proof request: open the session, or refuse it. */
void
ckpt_gate_answer(struct ihala_client *c, const Ihala__V2__Frame *f)
{
	int err;

	c->gate_request = 0;
	if (f->kind_case == IHALA__V2__FRAME__KIND_ERROR) {
		err = f->error->code != 0 ? -(int)f->error->code : IHALA_EPROTOCOL;
		client_fail(
		    c, err,
		    "the broker cannot prove that its log extends the checkpoint of size %llu this "
		    "node saw: %s",
		    (unsigned long long)c->gate_old.size, f->error->message);
	} else {
		err = ckpt_check_proof(c, &c->gate_old, &c->gate_new, f->consistency_proof);
		if (err == 0) {
			err = ckpt_keep(c, c->gate_text);
		}
	}
	free(c->gate_text);
	c->gate_text = NULL;
	if (err != 0) {
		c->state = SESS_NONE;
		c->refused = err;
		while (c->n_held > 0) {
			frame_free(c->held[--c->n_held]);
		}
		return;
	}
	if (c->state == SESS_VERIFYING) {
		size_t i;

		c->state = SESS_OPEN;
		log_debug("the broker's checkpoint of size %llu extends the one of size %llu this "
		          "node kept (%zu deliveries held meanwhile)",
		          (unsigned long long)c->gate_new.size,
		          (unsigned long long)c->gate_old.size, c->n_held);
		for (i = 0; i < c->n_held; i++) {
			client_on_deliver(c, c->held[i]->deliver);
			frame_free(c->held[i]);
		}
		c->n_held = 0;
		client_resend_outbox(c);
	}
}

void
ckpt_release(struct ihala_client *c)
{
	checkpoint_verifier_free(c->ver);
	c->ver = NULL;
	free(c->ver_key);
	c->ver_key = NULL;
}

int
ihala_prove(struct ihala_client *c, uint64_t seq, const char *message_id, const char *verifier_key,
            int timeout_ms, struct ihala_proof *p)
{
	const char *key = verifier_key != NULL ? verifier_key : c->cfg->checkpoint_key;
	Ihala__V2__Frame f = IHALA__V2__FRAME__INIT;
	Ihala__V2__ProofRequest q = IHALA__V2__PROOF_REQUEST__INIT;
	Ihala__V2__Frame *ans = NULL, *cans = NULL;
	const Ihala__V2__InclusionProof *ip;
	uint8_t path[MERKLE_MAX_PATH][MERKLE_HASH_LEN];
	struct checkpoint ck, old;
	enum ckpt_rel rel;
	size_t i;
	int err;

	memset(p, 0, sizeof(*p));
	c->errmsg[0] = '\0';
	if (key == NULL) {
		return client_fail(
		    c, IHALA_ECONFIG,
		    "no key to verify the broker's checkpoint with: set checkpoint_key in the "
		    "client config to the broker's checkpoint public key (PEM)");
	}
	if (seq == 0 && (message_id == NULL || message_id[0] == '\0')) {
		return client_fail(c, IHALA_EINVAL, "a seq or a message id is needed");
	}
	q.request_id = c->next_request++;
	if (seq != 0) {
		q.target_case = IHALA__V2__PROOF_REQUEST__TARGET_SEQ;
		q.seq = seq;
	} else {
		q.target_case = IHALA__V2__PROOF_REQUEST__TARGET_MESSAGE_ID;
		q.message_id = (char *)message_id;
	}
	f.kind_case = IHALA__V2__FRAME__KIND_PROOF_REQUEST;
	f.proof_request = &q;
	if ((err = client_request(c, &f, q.request_id, timeout_ms, &ans)) != 0) {
		return err;
	}
	if (ans == NULL || ans->kind_case != IHALA__V2__FRAME__KIND_INCLUSION_PROOF) {
		err = client_fail(c, IHALA_EPROTOCOL, "unexpected answer to a proof request");
		goto out;
	}
	ip = ans->inclusion_proof;
	if (ip->seq == 0 || (seq != 0 && ip->seq != seq) || ip->leaf_index != ip->seq - 1 ||
	    ip->leaf_hash.len != MERKLE_HASH_LEN || ip->n_path > MERKLE_MAX_PATH) {
		err = client_fail(c, IHALA_EPROOF, "the broker's inclusion proof is malformed");
		goto out;
	}
	for (i = 0; i < ip->n_path; i++) {
		if (ip->path[i].len != MERKLE_HASH_LEN) {
			err = client_fail(c, IHALA_EPROOF,
			                  "the broker's inclusion proof is malformed");
			goto out;
		}
		memcpy(path[i], ip->path[i].data, MERKLE_HASH_LEN);
	}
	/* (size, root) only from the signed checkpoint, never from the proof's own fields. */
	if ((err = ckpt_verify(c, key, ip->checkpoint, &ck)) != 0) {
		goto out;
	}
	if (ck.size != ip->tree_size) {
		err = client_fail(
		    c, IHALA_EPROOF,
		    "the proof is for tree size %llu but its checkpoint is of size %llu",
		    (unsigned long long)ip->tree_size, (unsigned long long)ck.size);
		goto out;
	}
	if ((err = ckpt_compare(c, key, &ck, &old, &rel)) != 0) {
		goto out;
	}
	if (rel == CKPT_NEWER) {
		Ihala__V2__Frame cf = IHALA__V2__FRAME__INIT;
		Ihala__V2__ProofRequest cq = IHALA__V2__PROOF_REQUEST__INIT;

		cq.request_id = c->next_request++;
		cq.tree_size = ck.size;
		cq.consistency_from = old.size;
		cf.kind_case = IHALA__V2__FRAME__KIND_PROOF_REQUEST;
		cf.proof_request = &cq;
		err = client_request(c, &cf, cq.request_id, timeout_ms, &cans);
		if (err == 0 &&
		    (cans == NULL || cans->kind_case != IHALA__V2__FRAME__KIND_CONSISTENCY_PROOF)) {
			err = client_fail(c, IHALA_EPROTOCOL,
			                  "unexpected answer to a consistency request");
		}
		if (err == 0) {
			err = ckpt_check_proof(c, &old, &ck, cans->consistency_proof);
		}
	}
	if (err == 0 && rel != CKPT_SAME) {
		err = ckpt_keep(c, ip->checkpoint);
	}
	if (err != 0) {
		goto out;
	}
	err = merkle_verify_inclusion(ip->leaf_index, ck.size, ip->leaf_hash.data,
	                              (const uint8_t(*)[MERKLE_HASH_LEN])path, ip->n_path, ck.root);
	if (err != 0) {
		err = client_fail(
		    c, err,
		    "the inclusion proof of seq %llu does not verify against the signed "
		    "checkpoint of size %llu",
		    (unsigned long long)ip->seq, (unsigned long long)ck.size);
		goto out;
	}
	if ((p->checkpoint = strdup(ip->checkpoint)) == NULL) {
		err = IHALA_ENOMEM;
		goto out;
	}
	p->seq = ip->seq;
	p->tree_size = ck.size;
	memcpy(p->leaf_hash, ip->leaf_hash.data, MERKLE_HASH_LEN);
	memcpy(p->root, ck.root, MERKLE_HASH_LEN);
	p->path_len = ip->n_path;
out:
	frame_free(ans);
	frame_free(cans);
	return err;
}
