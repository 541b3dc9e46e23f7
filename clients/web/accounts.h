/* accounts.h - `ihala web`'s clerk accounts: names, pseudonymous clerk ids, argon2id hashes. */
#ifndef IHALA_ACCOUNTS_H
#define IHALA_ACCOUNTS_H

#include <stddef.h>

#include "id.h"

/*
 * The file, in the node's data dir, mode 0600 (a group- or world-readable one is refused),
 * written whole to a temporary file, synced, then renamed over:
 *
 *   # ihala web users v1: NAME CLERK_ID ARGON2ID_HASH
 *   layla c-5b0e5c1f0a3d9e72 $argon2id$v=19$m=19456,t=2,p=1$SALT$HASH
 *
 * NAME is what the clerk types at the login form and never leaves the node; CLERK_ID is what
 * the messages carry (Envelope.clerk_id), chosen at random when the account is made.
 */
#define ACCOUNTS_FILE "web-users"
/* A name: 1..ACCOUNTS_NAME_MAX characters of a-z, 0-9, '.', '_' and '-', a letter or a digit
 * first. */
#define ACCOUNTS_NAME_MAX 32
#define ACCOUNTS_NAME_RULE                                                                         \
	"1..32 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or a digit"
/* Passwords: ACCOUNTS_PASSWORD_MIN..ACCOUNTS_PASSWORD_MAX bytes. */
#define ACCOUNTS_PASSWORD_MIN 10
#define ACCOUNTS_PASSWORD_MAX 1024
/* Accounts in one file. */
#define ACCOUNTS_MAX 1000
/* The clerk id of the loopback one-time link (no account). */
#define ACCOUNTS_LOCAL_CLERK "local"

struct account {
	char name[ACCOUNTS_NAME_MAX + 1];
	char clerk_id[ID_CLERK_MAX + 1];
	char *hash; /* argon2id encoded, owned */
};

/* The accounts of one file; plain data, owned by whoever declared it (accounts_release). */
struct accounts {
	struct account *v;
	size_t n;
};

/* 1 when `name` follows ACCOUNTS_NAME_RULE, else 0. */
int accounts_name_valid(const char *name);

/*
 * Read `path` into `a` (which it initialises). A missing file is no accounts. Returns 0, or
 * -1 with the reason in `why` ("PATH:LINE: ...", a mode open to group or others, a bad line).
 */
int accounts_load(const char *path, struct accounts *a, char *why, size_t whylen);

/* Write `a` to `path` (mode 0600, synced, renamed over). 0, or -1 with the reason in `why`. */
int accounts_save(const char *path, const struct accounts *a, char *why, size_t whylen);

void accounts_release(struct accounts *a);

/* The account named `name`, or NULL. Borrowed from `a`. */
struct account *accounts_find(const struct accounts *a, const char *name);
/* The account whose clerk id is `clerk_id`, or NULL. Borrowed from `a`. */
struct account *accounts_find_clerk(const struct accounts *a, const char *clerk_id);

/*
 * Set the password of `name` (pw, pwlen bytes): a new account with a new random clerk id when
 * there is none (`create` must be 1), else a new hash for the existing one (`create` 0; its
 * clerk id kept). 0, or -1 with the reason in `why` (a bad name or password, exists already,
 * no such account, too many, hashing failed).
 */
int accounts_set(struct accounts *a, const char *name, const char *pw, size_t pwlen, int create,
                 char *why, size_t whylen);

/* A stamp of acc's password: 64 hex digits (SHA-256 of its hash) into stamp
 * (ACCOUNTS_STAMP_LEN + 1 bytes); a new password (web-user passwd) has another one. */
#define ACCOUNTS_STAMP_LEN 64
void accounts_stamp(const struct account *acc, char *stamp);

/* Remove `name`. 0, or -1 when there is no such account. */
int accounts_remove(struct accounts *a, const char *name);

/*
 * Whether `pw` is the password of `name`: 1 (and its clerk id copied into clerk_id, of
 * ID_CLERK_MAX + 1 bytes), else 0. An unknown name costs a hash too (timing tells nothing).
 */
int accounts_verify(const struct accounts *a, const char *name, const char *pw, size_t pwlen,
                    char *clerk_id);

#endif
