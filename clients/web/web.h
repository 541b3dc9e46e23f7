/* web.h - `ihala web`: what the node loop (web.c) and the HTTP server (httpd.c) share. */
#ifndef IHALA_WEB_H
#define IHALA_WEB_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "id.h"

/* Random tokens (login link, session, CSRF): 32 bytes from RAND_bytes, as 64 hex digits. */
#define WEB_TOKEN_LEN 64
/* The broker's sentence of a refusal, or what else the accept came to, for the clerk. */
#define WEB_FLASH_MAX 512

/* A free text a form may send (reason, note, business status), bytes with its NUL. */
#define WEB_REASON_TEXT_MAX 1024
/* Log entries the auditor's page shows (the newest). */
#define WEB_AUDIT_ENTRIES 200

/* What a page asks of the node loop (the only thread using the client): a job. One at a
 * time; the page waits for it (WEB_JOB_DONE) or gives up after job_timeout_ms. */
enum web_job_state {
	WEB_JOB_NONE = 0,
	WEB_JOB_PENDING,
	WEB_JOB_DONE,
};

enum web_job_kind {
	WEB_JOB_SUBMIT =
	    1,          /* submit `envelope` (accept, decline, progress, outcome, note, refer) */
	WEB_JOB_VERIFY, /* the auditor's verify of the whole log, as `ihala audit verify` */
};

struct web_job {
	enum web_job_state state;
	enum web_job_kind kind;
	/* SUBMIT: the envelope as pbjson writes it, without messageId (the node loop gives it
	 * one); set by the page, taken (json_decref) by the node loop */
	json_t *envelope;
	char rid[ID_MAX + 1];         /* the referral it is about, "" when none */
	char clerk[ID_CLERK_MAX + 1]; /* who asked: the envelope's clerk_id */
	int err;                      /* what it came to: 0, or a code from error.h */
	char text[WEB_FLASH_MAX];
};

/*
 * One `ihala web` run. Everything below `mu` is guarded by it. `rows` (a JSON array of
 * referral objects, in the inbox's order: web.c row_cmp) is changed only by the node loop
 * and read by the server's threads, both under `mu`. `gen` grows with every change and
 * `changed` is broadcast; the server's event streams wait on it.
 */
struct web {
	/* set before the server starts, read-only after */
	const char *agency; /* the node's agency id (the config's, borrowed) */
	char host[80];      /* "127.0.0.1:PORT": the only Host header served */
	char host_alt[80];  /* "localhost:PORT" (loopback only), else "" */
	int job_timeout_ms; /* how long a page waits for the node loop's answer */

	pthread_mutex_t mu;
	pthread_cond_t changed;
	pthread_cond_t job_cv;
	int stopping;
	uint64_t gen;
	json_t *rows;
	int broker_down; /* the last call to the broker failed for transport */

	/* the one-time login link (loopback only; "" when there is none) */
	char login_token[WEB_TOKEN_LEN + 1];
	int login_used;
	/* set before the server starts (web.c), read-only after: HTTPS, the clerk accounts */
	int tls;              /* HTTPS: cookies Secure, Origin https:// */
	const char *tls_cert; /* PEM chain and key (owned by web.c), when tls */
	const char *tls_key;
	const char *users_path;             /* the data dir's web-users (clients/web/accounts.h) */
	int accounts;                       /* the login form is offered */
	char login_form[WEB_TOKEN_LEN + 1]; /* the login form's token (no session yet) */
	struct sessions *sessions;          /* every clerk's session; its own lock */
	pthread_mutex_t hash_mu; /* one argon2id verify at a time (19 MiB of memory each) */
	char flash[WEB_FLASH_MAX];
	int flash_ok;

	struct web_job job;

	int role; /* an Ihala__V2__Role, from the broker's Welcome; 0 until it came */
	/* the auditor's page: the last verify's result ({"ok", "entries", "checkpointSize",
	 * "origin", "root", "problem", "timeMs"}) and the newest log entries' clear parts, or
	 * NULL before the first verify; set by the node loop */
	json_t *audit;
};

/* A fresh random token of WEB_TOKEN_LEN hex digits into buf (> WEB_TOKEN_LEN bytes).
 * Returns 0, or -1 when the random generator failed. */
int web_token(char *buf, size_t len);

/* Start the HTTP server on the listening socket fd (taken over). Returns the daemon
 * (opaque) or NULL (logged). httpd_stop stops it; call after setting w->stopping. */
struct httpd;
struct httpd *httpd_start(struct web *w, int fd);
void httpd_stop(struct httpd *h);

/* ---- message catalogs (catalog.c): clients/web/i18n/LANG.json, embedded at build ---- */

/* The languages, in the order of the page's switch; NULL-terminated. */
extern const char *const web_langs[];

/* Load every catalog. 0, or -1 (a message was printed) when one is missing or bad. */
int catalog_load(void);
void catalog_free(void);

/* The known language of `lang` ("en", "ar", "ckb"), else NULL. */
const char *catalog_lang(const char *lang);

/* The text of `key` in `lang`, else in English, else the key itself (never NULL; owned by
 * the catalog, valid until catalog_free). */
const char *catalog_text(const char *lang, const char *key);

/* The text of `key` in `lang`, else in English, else NULL. */
const char *catalog_find(const char *lang, const char *key);

/* 1 for a right-to-left language (ar, ckb). */
int catalog_rtl(const char *lang);

/* Embedded files (build/gen/web_assets.c, made by clients/web/embed.sh): name relative to
 * clients/web ("static/app.js", "i18n/ar.json"). NULL when there is none. */
struct web_asset {
	const char *name;
	const unsigned char *data;
	size_t len;
};
extern const struct web_asset web_assets[];
const struct web_asset *web_asset_find(const char *name);

#endif
