/* webhttp.h - what httpd.c (server, session, dispatch), pages.c (HTML) and actions.c (the
 * forms' POSTs) of `ihala web` share. Internal to clients/web. */
#ifndef IHALA_WEBHTTP_H
#define IHALA_WEBHTTP_H

#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "web.h"

/* A growing text buffer; a failed allocation is remembered (oom) and answered 500 by
 * send_buf. Start it as {NULL, 0, 0, 0}; send_buf takes p. */
struct buf {
	char *p;
	size_t len, cap;
	int oom;
};

void buf_add(struct buf *b, const char *s, size_t n);
void buf_puts(struct buf *b, const char *s);
/* Text into HTML (element content and quoted attribute values): & < > " ' escaped. */
void buf_esc(struct buf *b, const char *s);

/* Responses, with the security headers (strict CSP, nosniff, no framing, no-store). */
enum MHD_Result send_buf(struct MHD_Connection *c, unsigned status, const char *type,
                         struct buf *b);
enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *text);
/* 303 to `location` (a path of this server), with up to one Set-Cookie. */
enum MHD_Result send_redirect(struct MHD_Connection *c, const char *location, const char *cookie);

/* The request's session (httpd.c's has_session found it for this thread): its CSRF token,
 * which every form carries, and its clerk id, which every action carries. "" before. */
const char *web_cur_csrf(void);
const char *web_cur_clerk(void);

/* The request's language: its cookie, else Accept-Language, else "en". */
const char *request_lang(struct MHD_Connection *c);

/* Form bodies (application/x-www-form-urlencoded): the n-th value of `name` decoded into out
 * (0, or -1 when absent, too long or badly encoded); the first; whether it is there. */
int form_nth(const char *body, const char *name, size_t n, char *out, size_t outlen);
int form_value(const char *body, const char *name, char *out, size_t outlen);
int form_has(const char *body, const char *name);

/* ---- pages.c: each GET page; the ones with the model take w->mu themselves ---- */

/* A page's <!doctype>, <html lang dir> and <head> with its title, in `lang`. */
void page_head(struct buf *b, const char *lang, const char *title);
/* A page that only says why (403, 404), in the request's language. */
enum MHD_Result send_message(struct MHD_Connection *c, unsigned status, const char *key);
enum MHD_Result send_inbox(struct web *w, struct MHD_Connection *c);
/* The inbox's table body alone, for its live updates. */
enum MHD_Result send_rows(struct web *w, struct MHD_Connection *c);
enum MHD_Result send_referral(struct web *w, struct MHD_Connection *c, const char *rid);
enum MHD_Result send_new(struct web *w, struct MHD_Connection *c, const char *body);
enum MHD_Result send_audit(struct web *w, struct MHD_Connection *c);
/* The referral's page, "/r/ID" with ID percent-encoded, into buf. */
void referral_path(const char *rid, char *buf, size_t len);

/* ---- actions.c: the POSTs past post_allowed (httpd.c); rid is checked when the action is
 * on a referral, else "" ---- */

/* 400 with "bad request: " and why. */
enum MHD_Result bad_request(struct MHD_Connection *c, const char *why);
/* What the next page says once: the catalog's `key` and detail. Called with w->mu held. */
void set_flash(struct web *w, int ok, const char *key, const char *lang, const char *detail);
enum MHD_Result do_accept(struct web *w, struct MHD_Connection *c, const char *body,
                          const char *rid);
enum MHD_Result do_decline(struct web *w, struct MHD_Connection *c, const char *body,
                           const char *rid);
enum MHD_Result do_progress(struct web *w, struct MHD_Connection *c, const char *body,
                            const char *rid);
enum MHD_Result do_outcome(struct web *w, struct MHD_Connection *c, const char *body,
                           const char *rid);
enum MHD_Result do_note(struct web *w, struct MHD_Connection *c, const char *body, const char *rid);
enum MHD_Result do_onward(struct web *w, struct MHD_Connection *c, const char *body,
                          const char *rid);
enum MHD_Result do_refer(struct web *w, struct MHD_Connection *c, const char *body,
                         const char *rid);
enum MHD_Result do_verify(struct web *w, struct MHD_Connection *c, const char *body,
                          const char *rid);

#endif
