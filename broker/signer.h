/* signer.h - the checkpoint signing key in a process of its own, asked over a socketpair. */
#ifndef IHALA_SIGNER_H
#define IHALA_SIGNER_H

#include <stdint.h>
#include <sys/types.h>

#include "checkpoint.h"

/*
 * Privilege separation for the checkpoint key (OpenSMTPD's model). signer_start() forks a
 * small process before the broker parses any network input (and before any thread, store or
 * TLS context exists). Only that child opens the key file: the process that talks to the
 * network never has the Ed25519 key in its memory, so a memory bug in a parser cannot read
 * it, and can at most ask the signer for signatures.
 *
 * What may be asked is as narrow as it can be: one fixed-size request, a tree head (tree
 * size, root hash). The signer builds the checkpoint body itself from its own origin, so it
 * signs nothing but a well-formed checkpoint note of its log; it refuses a request of any
 * other length, a tree size of 0, one below the largest it signed, and the same size with
 * another root (a fork of the log). The answer is one fixed-size reply: an error code, or the
 * signed note.
 *
 * The child: PR_SET_DUMPABLE 0 (no core dump, no ptrace by the broker's user),
 * PR_SET_PDEATHSIG SIGKILL, then the key is loaded (as root when started as root) and it
 * switches to `user` like the broker (priv_drop). It exits when its socket closes.
 */

struct signer;

/*
 * Fork the signer, which loads `key_file` under key name `origin` (both copied) and then
 * drops to `user` (NULL: stays). Waits for its word: 0 and *out (stop with signer_stop), or
 * the error of checkpoint_key_load / priv_drop (logged by the child), IHALA_EINTERNAL when
 * fork or socketpair fail. Call before any thread starts. close_fd: a descriptor of the
 * parent the child closes at once (-1: none).
 */
int signer_start(const char *key_file, const char *origin, const char *user, int close_fd,
                 struct signer **out);

/*
 * Ask for a signed checkpoint of (size, root); *text_out is a malloc'd NUL-terminated note
 * (caller frees). `origin` must be the signer's (IHALA_EINVAL otherwise). One caller at a
 * time (the writer thread). Errors: IHALA_EINVAL (refused by the signer, logged there),
 * IHALA_ECLOSED (the signer is gone), IHALA_ETIMEDOUT (no answer within 5 s), IHALA_ENOMEM.
 */
int signer_sign(struct signer *sg, const char *origin, uint64_t size,
                const uint8_t root[CHECKPOINT_HASH_LEN], char **text_out);

/* Same, with the shape ledger_params.sign wants (arg: the struct signer). */
int signer_sign_cb(void *arg, const char *origin, uint64_t size,
                   const uint8_t root[CHECKPOINT_HASH_LEN], char **text_out);

/* The child's pid (for SIGCHLD and the logs). */
pid_t signer_pid(const struct signer *sg);

/*
 * The child is gone (after SIGCHLD): reaps it without waiting and says how it ended into
 * why. 1 when it has exited, 0 while it still runs.
 */
int signer_exited(struct signer *sg, char *why, size_t whylen);

/* Close the socket (the child exits; SIGKILL when it has not within a second), reap the
 * child, free. NULL is fine. */
void signer_stop(struct signer *sg);

#endif
