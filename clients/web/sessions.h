/* sessions.h - `ihala web`'s browser sessions (one per clerk login) and failed-login throttle. */
#ifndef IHALA_SESSIONS_H
#define IHALA_SESSIONS_H

#include <stddef.h>
#include <stdint.h>

#include "id.h"

/* Sessions at once; a new one past this ends the least recently used. */
#define SESSIONS_MAX 64
/* Tokens: 64 hex digits (as WEB_TOKEN_LEN). */
#define SESSIONS_TOKEN_LEN 64
/* A session's stamp of its account's password (ACCOUNTS_STAMP_LEN): at most this long. */
#define SESSIONS_STAMP_LEN 64
/* Failed logins from one address before it must wait SESSIONS_LOCK_MS. */
#define SESSIONS_FAILS_MAX 5
#define SESSIONS_LOCK_MS 60000
/* Addresses remembered by the throttle (the oldest forgotten first). */
#define SESSIONS_ADDRS_MAX 256

/* Opaque; its own lock: every function may be called from any thread. */
struct sessions;

/* A table whose sessions end after idle_ms without a request. NULL when out of memory. */
struct sessions *sessions_new(uint64_t idle_ms);
void sessions_free(struct sessions *s);

/*
 * A new session of clerk_id (an id_clerk_valid one), logged in with the password whose stamp
 * is `stamp` (at most SESSIONS_STAMP_LEN characters, copied; "" for none): its cookie token
 * and its CSRF token into token and csrf (SESSIONS_TOKEN_LEN + 1 bytes each). 0, or -1 (no
 * randomness).
 */
int sessions_open(struct sessions *s, const char *clerk_id, const char *stamp, uint64_t now_ms,
                  char *token, char *csrf);

/*
 * The session of cookie `token` (may be NULL): 1, its CSRF token, clerk id and stamp copied into
 * csrf (SESSIONS_TOKEN_LEN + 1), clerk_id (ID_CLERK_MAX + 1) and stamp (SESSIONS_STAMP_LEN + 1),
 * and its idle time restarted; 0 when there is none or it was idle too long (then it is ended).
 * Constant-time on the token.
 */
int sessions_find(struct sessions *s, const char *token, uint64_t now_ms, char *csrf,
                  char *clerk_id, char *stamp);

/* End the session of `token`, if any (logout). */
void sessions_close(struct sessions *s, const char *token);

/* Sessions alive (for tests). */
size_t sessions_count(struct sessions *s, uint64_t now_ms);

/* Throttle of failed logins per client address (text): the milliseconds `addr` must still
 * wait before it may try again, 0 when it may now. */
uint64_t sessions_throttled(struct sessions *s, const char *addr, uint64_t now_ms);
/* A failed login from addr (counts toward SESSIONS_FAILS_MAX); a successful one forgets it. */
void sessions_login_failed(struct sessions *s, const char *addr, uint64_t now_ms);
void sessions_login_ok(struct sessions *s, const char *addr);

#endif
