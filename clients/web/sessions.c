/* sessions.c - `ihala web`'s browser sessions with idle expiry, and the failed-login throttle. */
#include "sessions.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "hex.h"

struct session {
	char token[SESSIONS_TOKEN_LEN + 1]; /* "" when the slot is free */
	char csrf[SESSIONS_TOKEN_LEN + 1];
	char clerk_id[ID_CLERK_MAX + 1];
	char stamp[SESSIONS_STAMP_LEN + 1]; /* the password's at login (web-user passwd ends it) */
	uint64_t last_ms;
};

struct addr_fails {
	char addr[64]; /* "" when the slot is free */
	unsigned fails;
	uint64_t last_ms;
};

struct sessions {
	pthread_mutex_t mu;
	uint64_t idle_ms;
	struct session v[SESSIONS_MAX];
	struct addr_fails a[SESSIONS_ADDRS_MAX];
};

struct sessions *
sessions_new(uint64_t idle_ms)
{
	struct sessions *s = calloc(1, sizeof(*s));

	if (s != NULL) {
		pthread_mutex_init(&s->mu, NULL);
		s->idle_ms = idle_ms;
	}
	return s;
}

void
sessions_free(struct sessions *s)
{
	if (s == NULL) {
		return;
	}
	pthread_mutex_destroy(&s->mu);
	OPENSSL_cleanse(s, sizeof(*s));
	free(s);
}

static int
token(char *buf)
{
	unsigned char raw[SESSIONS_TOKEN_LEN / 2];

	if (RAND_bytes(raw, sizeof(raw)) != 1) {
		return -1;
	}
	hex_encode(raw, sizeof(raw), buf);
	return 0;
}

static int
expired(const struct sessions *s, const struct session *e, uint64_t now_ms)
{
	return e->token[0] == '\0' || now_ms - e->last_ms >= s->idle_ms;
}

int
sessions_open(struct sessions *s, const char *clerk_id, const char *stamp, uint64_t now_ms,
              char *tok, char *csrf)
{
	struct session *e = NULL;
	size_t i;
	int rc = -1;

	pthread_mutex_lock(&s->mu);
	for (i = 0; i < SESSIONS_MAX; i++) {
		if (expired(s, &s->v[i], now_ms)) {
			e = &s->v[i];
			break;
		}
		if (e == NULL || s->v[i].last_ms < e->last_ms) {
			e = &s->v[i]; /* the least recently used, if none is free */
		}
	}
	memset(e, 0, sizeof(*e));
	if (token(e->token) == 0 && token(e->csrf) == 0) {
		snprintf(e->clerk_id, sizeof(e->clerk_id), "%s", clerk_id);
		snprintf(e->stamp, sizeof(e->stamp), "%s", stamp);
		e->last_ms = now_ms;
		memcpy(tok, e->token, sizeof(e->token));
		memcpy(csrf, e->csrf, sizeof(e->csrf));
		rc = 0;
	} else {
		memset(e, 0, sizeof(*e));
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* The live session of tok, or NULL; one past its idle time is ended. Called with mu held. */
static struct session *
lookup(struct sessions *s, const char *tok, uint64_t now_ms)
{
	size_t i;

	if (tok == NULL || strlen(tok) != SESSIONS_TOKEN_LEN) {
		return NULL;
	}
	for (i = 0; i < SESSIONS_MAX; i++) {
		struct session *e = &s->v[i];

		if (e->token[0] != '\0' && CRYPTO_memcmp(e->token, tok, SESSIONS_TOKEN_LEN) == 0) {
			if (expired(s, e, now_ms)) {
				memset(e, 0, sizeof(*e));
				return NULL;
			}
			return e;
		}
	}
	return NULL;
}

int
sessions_find(struct sessions *s, const char *tok, uint64_t now_ms, char *csrf, char *clerk_id,
              char *stamp)
{
	struct session *e;

	pthread_mutex_lock(&s->mu);
	if ((e = lookup(s, tok, now_ms)) != NULL) {
		e->last_ms = now_ms;
		memcpy(csrf, e->csrf, sizeof(e->csrf));
		memcpy(clerk_id, e->clerk_id, sizeof(e->clerk_id));
		memcpy(stamp, e->stamp, sizeof(e->stamp));
	}
	pthread_mutex_unlock(&s->mu);
	return e != NULL;
}

void
sessions_close(struct sessions *s, const char *tok)
{
	struct session *e;

	pthread_mutex_lock(&s->mu);
	if ((e = lookup(s, tok, 0)) != NULL) {
		memset(e, 0, sizeof(*e));
	}
	pthread_mutex_unlock(&s->mu);
}

size_t
sessions_count(struct sessions *s, uint64_t now_ms)
{
	size_t i, n = 0;

	pthread_mutex_lock(&s->mu);
	for (i = 0; i < SESSIONS_MAX; i++) {
		n += !expired(s, &s->v[i], now_ms);
	}
	pthread_mutex_unlock(&s->mu);
	return n;
}

/* addr's entry, or NULL (create: a free or the oldest one, reset). Called with mu held. */
static struct addr_fails *
addr_entry(struct sessions *s, const char *addr, int create)
{
	struct addr_fails *old = NULL;
	size_t i;

	for (i = 0; i < SESSIONS_ADDRS_MAX; i++) {
		if (strcmp(s->a[i].addr, addr) == 0 && addr[0] != '\0') {
			return &s->a[i];
		}
		if (old == NULL || s->a[i].addr[0] == '\0' ||
		    (old->addr[0] != '\0' && s->a[i].last_ms < old->last_ms)) {
			old = &s->a[i];
		}
	}
	if (!create) {
		return NULL;
	}
	memset(old, 0, sizeof(*old));
	snprintf(old->addr, sizeof(old->addr), "%s", addr);
	return old;
}

uint64_t
sessions_throttled(struct sessions *s, const char *addr, uint64_t now_ms)
{
	struct addr_fails *f;
	uint64_t wait = 0;

	pthread_mutex_lock(&s->mu);
	f = addr_entry(s, addr, 0);
	if (f != NULL && f->fails >= SESSIONS_FAILS_MAX) {
		if (now_ms - f->last_ms < SESSIONS_LOCK_MS) {
			wait = SESSIONS_LOCK_MS - (now_ms - f->last_ms);
		} else {
			/* waited: one more try before the next wait */
			f->fails = SESSIONS_FAILS_MAX - 1;
		}
	}
	pthread_mutex_unlock(&s->mu);
	return wait;
}

void
sessions_login_failed(struct sessions *s, const char *addr, uint64_t now_ms)
{
	struct addr_fails *f;

	pthread_mutex_lock(&s->mu);
	f = addr_entry(s, addr, 1);
	f->fails++;
	f->last_ms = now_ms;
	pthread_mutex_unlock(&s->mu);
}

void
sessions_login_ok(struct sessions *s, const char *addr)
{
	struct addr_fails *f;

	pthread_mutex_lock(&s->mu);
	if ((f = addr_entry(s, addr, 0)) != NULL) {
		memset(f, 0, sizeof(*f));
	}
	pthread_mutex_unlock(&s->mu);
}
