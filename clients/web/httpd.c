/* httpd.c - `ihala web`'s HTTP side (libmicrohttpd): login link, session, CSRF, pages. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <microhttpd.h>
#include <openssl/crypto.h>

#include "cli.h"
#include "error.h"
#include "frame.h"
#include "id.h"
#include "ihala.pb-c.h"
#include "pbjson.h"
#include "web.h"

/* A form body larger than this is refused (the new-referral form is the largest). */
#define BODY_MAX 32768
/* An event stream says something at least this often, so a dead browser is noticed. */
#define SSE_PING_S 15

static const char csp[] = "default-src 'self'; script-src 'self'; style-src 'self'; "
                          "img-src 'self'; connect-src 'self'; form-action 'self'; "
                          "frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

struct httpd {
	struct MHD_Daemon *d;
	struct web *w;
};

/* ---- a growing text buffer; a failed allocation is remembered and answered 500 ---- */

struct buf {
	char *p;
	size_t len, cap;
	int oom;
};

static void
buf_add(struct buf *b, const char *s, size_t n)
{
	char *np;
	size_t cap;

	if (b->oom) {
		return;
	}
	if (b->len + n + 1 > b->cap) {
		cap = b->cap ? b->cap : 1024;
		while (cap < b->len + n + 1) {
			cap *= 2;
		}
		if ((np = realloc(b->p, cap)) == NULL) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
buf_puts(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

/* Text into HTML (element content and quoted attribute values): & < > " ' escaped. */
static void
buf_esc(struct buf *b, const char *s)
{
	const char *run = s;

	for (; s != NULL && *s != '\0'; s++) {
		const char *rep;

		switch (*s) {
		case '&':
			rep = "&amp;";
			break;
		case '<':
			rep = "&lt;";
			break;
		case '>':
			rep = "&gt;";
			break;
		case '"':
			rep = "&quot;";
			break;
		case '\'':
			rep = "&#39;";
			break;
		default:
			continue;
		}
		buf_add(b, run, (size_t)(s - run));
		buf_puts(b, rep);
		run = s + 1;
	}
	if (run != NULL) {
		buf_puts(b, run);
	}
}

/* ---- responses ---- */

static void
secure_headers(struct MHD_Response *r)
{
	MHD_add_response_header(r, "Content-Security-Policy", csp);
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	/* not "no-referrer": a browser then sends "Origin: null" with the forms' POSTs */
	MHD_add_response_header(r, "Referrer-Policy", "same-origin");
	MHD_add_response_header(r, "Cache-Control", "no-store");
}

/* Send b (its text is taken) with status and type. */
static enum MHD_Result
send_buf(struct MHD_Connection *c, unsigned status, const char *type, struct buf *b)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (b->oom) {
		free(b->p);
		b->p = NULL;
		b->len = 0;
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		type = "text/plain; charset=utf-8";
	}
	r = MHD_create_response_from_buffer(b->len, b->p != NULL ? b->p : (char *)"",
	                                    b->p != NULL ? MHD_RESPMEM_MUST_FREE
	                                                 : MHD_RESPMEM_PERSISTENT);
	if (r == NULL) {
		free(b->p);
		return MHD_NO;
	}
	secure_headers(r);
	MHD_add_response_header(r, "Content-Type", type);
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result
send_text(struct MHD_Connection *c, unsigned status, const char *text)
{
	struct buf b = {NULL, 0, 0, 0};

	buf_puts(&b, text);
	buf_puts(&b, "\n");
	return send_buf(c, status, "text/plain; charset=utf-8", &b);
}

/* 303 to `location`, with up to one Set-Cookie. */
static enum MHD_Result
send_redirect(struct MHD_Connection *c, const char *location, const char *cookie)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	if ((r = MHD_create_response_from_buffer(0, (char *)"", MHD_RESPMEM_PERSISTENT)) == NULL) {
		return MHD_NO;
	}
	secure_headers(r);
	MHD_add_response_header(r, "Location", location);
	if (cookie != NULL) {
		MHD_add_response_header(r, "Set-Cookie", cookie);
	}
	ret = MHD_queue_response(c, MHD_HTTP_SEE_OTHER, r);
	MHD_destroy_response(r);
	return ret;
}

/* ---- language, session, form ---- */

/* The ihala_lang cookie, else the first known language of Accept-Language, else English. */
static const char *
request_lang(struct MHD_Connection *c)
{
	const char *v = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, "ihala_lang"), *l, *p;
	char tag[16];
	size_t n;

	if ((l = catalog_lang(v)) != NULL) {
		return l;
	}
	v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_LANGUAGE);
	for (p = v; p != NULL && *p != '\0';) {
		p += strspn(p, " ,");
		n = strcspn(p, "-;, ");
		if (n > 0 && n < sizeof(tag)) {
			size_t i;

			for (i = 0; i < n; i++) {
				tag[i] =
				    (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] - 'A' + 'a' : p[i]);
			}
			tag[n] = '\0';
			if ((l = catalog_lang(tag)) != NULL) {
				return l;
			}
		}
		p += strcspn(p, ",");
	}
	return "en";
}

static int
token_eq(const char *given, const char *want)
{
	return given != NULL && want[0] != '\0' && strlen(given) == WEB_TOKEN_LEN &&
	       CRYPTO_memcmp(given, want, WEB_TOKEN_LEN) == 0;
}

static int
has_session(struct web *w, struct MHD_Connection *c)
{
	const char *v = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, "ihala_session");
	int ok;

	pthread_mutex_lock(&w->mu);
	ok = token_eq(v, w->session);
	pthread_mutex_unlock(&w->mu);
	return ok;
}

static int
hexval(char ch)
{
	if (ch >= '0' && ch <= '9') {
		return ch - '0';
	}
	if (ch >= 'a' && ch <= 'f') {
		return ch - 'a' + 10;
	}
	if (ch >= 'A' && ch <= 'F') {
		return ch - 'A' + 10;
	}
	return -1;
}

/* The n-th (from 0) value of `name` in an application/x-www-form-urlencoded body, decoded
 * into out. 0, or -1 when it is absent, too long or badly encoded. */
static int
form_nth(const char *body, const char *name, size_t n, char *out, size_t outlen)
{
	size_t nl = strlen(name), o;
	const char *p = body;

	while (p != NULL && *p != '\0') {
		size_t fl = strcspn(p, "&");

		if (fl > nl && strncmp(p, name, nl) == 0 && p[nl] == '=' && n-- == 0) {
			const char *v = p + nl + 1, *end = p + fl;

			for (o = 0; v < end; v++) {
				int hi, lo;
				char ch = *v;

				if (ch == '+') {
					ch = ' ';
				} else if (ch == '%') {
					if (end - v < 3 || (hi = hexval(v[1])) < 0 ||
					    (lo = hexval(v[2])) < 0) {
						return -1;
					}
					ch = (char)(hi * 16 + lo);
					v += 2;
				}
				if (ch == '\0' || o + 1 >= outlen) {
					return -1;
				}
				out[o++] = ch;
			}
			out[o] = '\0';
			return 0;
		}
		p += fl;
		p += *p == '&';
	}
	return -1;
}

static int
form_value(const char *body, const char *name, char *out, size_t outlen)
{
	return form_nth(body, name, 0, out, outlen);
}

/* Whether the body has a field `name` at all (its value may be empty). */
static int
form_has(const char *body, const char *name)
{
	size_t nl = strlen(name);
	const char *p = body;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
			return 1;
		}
		p += strcspn(p, "&");
		p += *p == '&';
	}
	return 0;
}

/* ---- pages ---- */

/* s into buf for a URL path segment: only unreserved characters left as they are. */
static void
url_seg(const char *s, char *buf, size_t len)
{
	static const char hexd[] = "0123456789ABCDEF";
	size_t o = 0;

	for (; *s != '\0' && o + 4 < len; s++) {
		unsigned char ch = (unsigned char)*s;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			buf[o++] = (char)ch;
		} else {
			buf[o++] = '%';
			buf[o++] = hexd[ch >> 4];
			buf[o++] = hexd[ch & 15];
		}
	}
	buf[o] = '\0';
}

/* The referral's page, "/r/ID". */
static void
referral_path(const char *rid, char *buf, size_t len)
{
	char seg[3 * ID_MAX + 1];

	url_seg(rid, seg, sizeof(seg));
	snprintf(buf, len, "/r/%s", seg);
}

static void
fmt_time(uint64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	buf[0] = '\0';
	if (ms != 0 && gmtime_r(&t, &tm) != NULL) {
		strftime(buf, len, "%Y-%m-%d %H:%M UTC", &tm);
	}
}

static void
cell_text(struct buf *b, const char *cls, const char *text)
{
	buf_puts(b, "<td class=\"");
	buf_puts(b, cls);
	buf_puts(b, "\"><bdi>");
	buf_esc(b, text != NULL ? text : "");
	buf_puts(b, "</bdi></td>");
}

/* The catalog's text for PREFIX.VALUE ("status.received"), escaped. */
static void
esc_keyed(struct buf *b, const char *lang, const char *prefix, const char *value)
{
	char key[80];

	snprintf(key, sizeof(key), "%s.%s", prefix,
	         value != NULL && value[0] != '\0' ? value : "unknown");
	buf_esc(b, catalog_text(lang, key));
}

static uint64_t
row_num(json_t *row, const char *key)
{
	return (uint64_t)json_integer_value(json_object_get(row, key));
}

/* The catalog's text for PREFIX.VALUE when it has one, else VALUE itself, escaped (codes
 * the catalogs do not name yet stay readable). */
static void
esc_value(struct buf *b, const char *lang, const char *prefix, const char *value)
{
	char key[96];
	const char *t;

	snprintf(key, sizeof(key), "%s.%s", prefix, value);
	t = catalog_find(lang, key);
	buf_esc(b, t != NULL ? t : value);
}

static void
hidden(struct buf *b, const char *name, const char *value)
{
	buf_puts(b, "<input type=\"hidden\" name=\"");
	buf_puts(b, name);
	buf_puts(b, "\" value=\"");
	buf_esc(b, value);
	buf_puts(b, "\">");
}

/* A form's start: POST to action, with the session's CSRF token, the referral and the page
 * to come back to. Called with w->mu held. */
static void
form_open(struct buf *b, struct web *w, const char *action, const char *cls, const char *rid,
          const char *page)
{
	buf_puts(b, "<form method=\"post\" action=\"");
	buf_puts(b, action);
	buf_puts(b, "\" class=\"");
	buf_puts(b, cls);
	buf_puts(b, "\">");
	hidden(b, "csrf", w->csrf);
	if (rid != NULL) {
		hidden(b, "rid", rid);
	}
	if (page != NULL) {
		hidden(b, "page", page);
	}
}

static void
label_for(struct buf *b, const char *lang, const char *id, const char *key)
{
	buf_puts(b, "<label for=\"");
	buf_esc(b, id);
	buf_puts(b, "\">");
	buf_esc(b, catalog_text(lang, key));
	buf_puts(b, "</label>");
}

/* A labelled <select> of an enum's values (0 left out), the catalog's PREFIX.VALUE for each;
 * with a first empty option "choose" when `choose` is not NULL. */
static void
enum_select(struct buf *b, const char *lang, const ProtobufCEnumDescriptor *ed, const char *name,
            const char *id, const char *key, const char *prefix, const char *choose, int required,
            const char *const *only)
{
	char v[64];
	size_t i, k;

	buf_puts(b, "<div class=\"field\">");
	label_for(b, lang, id, key);
	buf_puts(b, " <select name=\"");
	buf_puts(b, name);
	buf_puts(b, "\" id=\"");
	buf_esc(b, id);
	buf_puts(b, required ? "\" required>" : "\">");
	if (choose != NULL) {
		buf_puts(b, "<option value=\"\">");
		buf_esc(b, catalog_text(lang, choose));
		buf_puts(b, "</option>");
	}
	for (i = 0; i < ed->n_values; i++) {
		if (ed->values[i].value == 0 ||
		    pbjson_enum_to_name(ed, ed->values[i].value, v, sizeof(v)) != 0) {
			continue;
		}
		if (only != NULL) {
			for (k = 0; only[k] != NULL && strcmp(only[k], v) != 0; k++) {
			}
			if (only[k] == NULL) {
				continue;
			}
		}
		buf_puts(b, "<option value=\"");
		buf_esc(b, v);
		buf_puts(b, "\">");
		esc_value(b, lang, prefix, v);
		buf_puts(b, "</option>");
	}
	buf_puts(b, "</select></div>");
}

/* A fieldset of labelled checkboxes, one per enum value (0 left out). */
static void
enum_checks(struct buf *b, const char *lang, const ProtobufCEnumDescriptor *ed, const char *name,
            const char *idp, const char *key, const char *prefix)
{
	char v[64], id[128];
	size_t i;

	buf_puts(b, "<fieldset class=\"checks\"><legend>");
	buf_esc(b, catalog_text(lang, key));
	buf_puts(b, "</legend>");
	for (i = 0; i < ed->n_values; i++) {
		if (ed->values[i].value == 0 ||
		    pbjson_enum_to_name(ed, ed->values[i].value, v, sizeof(v)) != 0) {
			continue;
		}
		snprintf(id, sizeof(id), "%s-%s", idp, v);
		buf_puts(b, "<span class=\"check\"><input type=\"checkbox\" name=\"");
		buf_puts(b, name);
		buf_puts(b, "\" value=\"");
		buf_esc(b, v);
		buf_puts(b, "\" id=\"");
		buf_esc(b, id);
		buf_puts(b, "\"> <label for=\"");
		buf_esc(b, id);
		buf_puts(b, "\">");
		esc_value(b, lang, prefix, v);
		buf_puts(b, "</label></span> ");
	}
	buf_puts(b, "</fieldset>");
}

/* A labelled text input (type "text", "date", "number") or, type "textarea", a textarea. */
static void
text_input(struct buf *b, const char *lang, const char *type, const char *name, const char *id,
           const char *key, int required, int maxlen)
{
	char n[32];

	buf_puts(b, "<div class=\"field\">");
	label_for(b, lang, id, key);
	if (strcmp(type, "textarea") == 0) {
		buf_puts(b, " <textarea name=\"");
	} else {
		buf_puts(b, " <input type=\"");
		buf_puts(b, type);
		buf_puts(b, "\" name=\"");
	}
	buf_puts(b, name);
	buf_puts(b, "\" id=\"");
	buf_esc(b, id);
	buf_puts(b, "\"");
	if (maxlen > 0) {
		snprintf(n, sizeof(n), " maxlength=\"%d\"", maxlen);
		buf_puts(b, n);
	}
	buf_puts(b, required ? " required" : "");
	buf_puts(b, strcmp(type, "textarea") == 0 ? " rows=\"3\"></textarea></div>" : "></div>");
}

static void
check_input(struct buf *b, const char *lang, const char *name, const char *id, const char *key,
            int checked)
{
	buf_puts(b, "<div class=\"field check\"><input type=\"checkbox\" name=\"");
	buf_puts(b, name);
	buf_puts(b, "\" value=\"1\" id=\"");
	buf_esc(b, id);
	buf_puts(b, checked ? "\" checked> " : "\"> ");
	label_for(b, lang, id, key);
	buf_puts(b, "</div>");
}

static void
submit_button(struct buf *b, const char *lang, const char *cls, const char *key)
{
	buf_puts(b, "<button type=\"submit\" class=\"");
	buf_puts(b, cls);
	buf_puts(b, "\">");
	buf_esc(b, catalog_text(lang, key));
	buf_puts(b, "</button></form>\n");
}

/* The decline form of one referral: a reason code (the schema's, as `ihala decline --reason`
 * takes them), the reason in words (optional); `n` makes its ids unique on the page. Called
 * with w->mu held. */
static void
render_decline(struct buf *b, struct web *w, const char *lang, const char *rid, size_t n,
               const char *page)
{
	char id[48];

	form_open(b, w, "/decline", "decline", rid, page);
	snprintf(id, sizeof(id), "decline-reason-%zu", n);
	enum_select(b, lang, &ihala__v2__reason_code__descriptor, "reason", id, "decline.reason",
	            "reason", "decline.choose", 1, NULL);
	snprintf(id, sizeof(id), "decline-text-%zu", n);
	text_input(b, lang, "text", "text", id, "decline.text", 0, 250);
	submit_button(b, lang, "decline", "decline");
}

static int
is_waiting(const char *status)
{
	return status != NULL &&
	       (strcmp(status, "requested") == 0 || strcmp(status, "received") == 0);
}

static int
is_closed(const char *status)
{
	return status != NULL &&
	       (strcmp(status, "declined") == 0 || strcmp(status, "completed") == 0 ||
	        strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0);
}

/* The table body: one row per referral, in the inbox's order (web.c). Called with w->mu
 * held. */
static void
render_rows(struct buf *b, struct web *w, const char *lang)
{
	char when[40], path[3 * ID_MAX + 8];
	json_t *row;
	size_t i;

	if (json_array_size(w->rows) == 0) {
		buf_puts(b, "<tr class=\"empty\"><td colspan=\"9\">");
		buf_esc(b, catalog_text(lang, "empty"));
		buf_puts(b, "</td></tr>\n");
		return;
	}
	json_array_foreach(w->rows, i, row)
	{
		const char *rid = json_string_value(json_object_get(row, "referralId"));
		const char *status = json_string_value(json_object_get(row, "status"));
		const char *to = json_string_value(json_object_get(row, "recipient"));
		int overdue = json_is_true(json_object_get(row, "overdue"));

		buf_puts(b, "<tr class=\"referral");
		buf_puts(b, overdue ? " overdue" : "");
		buf_puts(b, is_waiting(status) || status == NULL ? " new\"" : "\"");
		buf_puts(b, " data-referral=\"");
		buf_esc(b, rid);
		buf_puts(b, "\" data-status=\"");
		buf_esc(b, status != NULL ? status : "");
		buf_puts(b, "\"><td class=\"rid\"><a href=\"");
		referral_path(rid, path, sizeof(path));
		buf_esc(b, path);
		buf_puts(b, "\"><bdi>");
		buf_esc(b, rid);
		buf_puts(b, "</bdi></a></td>");
		cell_text(b, "name", json_string_value(json_object_get(row, "name")));
		cell_text(b, "from", json_string_value(json_object_get(row, "referrer")));
		cell_text(b, "to", to);
		buf_puts(b, "<td class=\"priority\">");
		esc_keyed(b, lang, "priority", json_string_value(json_object_get(row, "priority")));
		buf_puts(b, "</td><td class=\"status\">");
		esc_keyed(b, lang, "status", status);
		if (overdue) {
			buf_puts(b, " <span class=\"badge overdue\">");
			buf_esc(b, catalog_text(lang, "overdue"));
			buf_puts(b, "</span>");
		}
		buf_puts(b, "</td>");
		fmt_time(row_num(row, "createdMs"), when, sizeof(when));
		cell_text(b, "created", when);
		fmt_time(row_num(row, "deadlineMs"), when, sizeof(when));
		cell_text(b, "deadline", when);
		buf_puts(b, "<td class=\"action\">");
		if (to != NULL && w->agency != NULL && strcmp(to, w->agency) == 0 &&
		    is_waiting(status)) {
			form_open(b, w, "/accept", "accept", rid, NULL);
			submit_button(b, lang, "accept", "accept");
			render_decline(b, w, lang, rid, i, NULL);
		}
		buf_puts(b, "</td></tr>\n");
	}
}

static void
page_head(struct buf *b, const char *lang, const char *title)
{
	buf_puts(b, "<!DOCTYPE html>\n<html lang=\"");
	buf_esc(b, lang);
	buf_puts(b, "\" dir=\"");
	buf_puts(b, catalog_rtl(lang) ? "rtl" : "ltr");
	buf_puts(b, "\">\n<head>\n<meta charset=\"utf-8\">\n"
	            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
	            "<title>");
	buf_esc(b, title);
	buf_puts(b, "</title>\n<link rel=\"stylesheet\" href=\"/static/style.css\">\n"
	            "<script src=\"/static/app.js\" defer></script>\n</head>\n");
}

/* A page that only says why (403, 404), in the request's language. */
static enum MHD_Result
send_message(struct MHD_Connection *c, unsigned status, const char *key)
{
	const char *lang = request_lang(c);
	struct buf b = {NULL, 0, 0, 0};

	page_head(&b, lang, catalog_text(lang, "title"));
	buf_puts(&b, "<body>\n<p class=\"message err\" role=\"alert\">");
	buf_esc(&b, catalog_text(lang, key));
	buf_puts(&b, "</p>\n</body>\n</html>\n");
	return send_buf(c, status, "text/html; charset=utf-8", &b);
}

/*
 * Every page's top: <body> with the model's generation (the live updates compare it), the
 * title, the agency, the links its role has, the language switch (back to `path`), the
 * live mark, and what the last action came to (said once, then forgotten). Called with
 * w->mu held.
 */
static void
page_top(struct buf *b, struct web *w, const char *lang, const char *title, const char *path,
         const char *page)
{
	char gen[32];
	size_t i;

	page_head(b, lang, title);
	snprintf(gen, sizeof(gen), "%llu", (unsigned long long)w->gen);
	buf_puts(b, "<body data-gen=\"");
	buf_puts(b, gen);
	buf_puts(b, "\" data-page=\"");
	buf_puts(b, page);
	buf_puts(b, "\">\n<header>\n<h1>");
	buf_esc(b, title);
	buf_puts(b, "</h1>\n<p class=\"agency\">");
	buf_esc(b, catalog_text(lang, "agency"));
	buf_puts(b, ": <bdi id=\"agency\">");
	buf_esc(b, w->agency);
	buf_puts(b, "</bdi></p>\n<nav><a href=\"/\" id=\"nav-inbox\">");
	buf_esc(b, catalog_text(lang, "nav.inbox"));
	buf_puts(b, "</a>");
	if (w->role == IHALA__V2__ROLE__ROLE_DMA) {
		buf_puts(b, " <a href=\"/new\" id=\"nav-new\">");
		buf_esc(b, catalog_text(lang, "nav.new"));
		buf_puts(b, "</a>");
	}
	if (w->role == IHALA__V2__ROLE__ROLE_AUDITOR) {
		buf_puts(b, " <a href=\"/audit\" id=\"nav-audit\">");
		buf_esc(b, catalog_text(lang, "nav.audit"));
		buf_puts(b, "</a>");
	}
	buf_puts(b, "</nav>\n<form method=\"post\" action=\"/lang\" class=\"lang\" aria-label=\"");
	buf_esc(b, catalog_text(lang, "language"));
	buf_puts(b, "\">");
	hidden(b, "csrf", w->csrf);
	hidden(b, "back", path);
	for (i = 0; web_langs[i] != NULL; i++) {
		/* each language's own name, in that language */
		buf_puts(b, "<button type=\"submit\" name=\"lang\" value=\"");
		buf_esc(b, web_langs[i]);
		buf_puts(b, "\" lang=\"");
		buf_esc(b, web_langs[i]);
		buf_puts(b, "\" id=\"lang-");
		buf_esc(b, web_langs[i]);
		buf_puts(b, "\">");
		buf_esc(b, catalog_text(web_langs[i], "language.name"));
		buf_puts(b, "</button>");
	}
	buf_puts(b, "</form>\n<p id=\"live\" class=\"off\"><span class=\"on\">");
	buf_esc(b, catalog_text(lang, "live.on"));
	buf_puts(b, "</span><span class=\"off\">");
	buf_esc(b, catalog_text(lang, "live.off"));
	buf_puts(b, "</span></p>\n</header>\n<main>\n");
	if (w->broker_down) {
		buf_puts(b, "<p class=\"message err\" id=\"broker-down\" role=\"alert\">");
		buf_esc(b, catalog_text(lang, "broker.down"));
		buf_puts(b, "</p>\n");
	}
	if (w->flash[0] != '\0') {
		buf_puts(b, w->flash_ok ? "<p class=\"message ok\" id=\"flash\" role=\"status\">"
		                        : "<p class=\"message err\" id=\"flash\" role=\"alert\">");
		buf_esc(b, w->flash);
		buf_puts(b, "</p>\n");
		w->flash[0] = '\0';
	}
}

static enum MHD_Result
page_end(struct MHD_Connection *c, struct buf *b, unsigned status)
{
	buf_puts(b, "</main>\n</body>\n</html>\n");
	return send_buf(c, status, "text/html; charset=utf-8", b);
}

static enum MHD_Result
send_inbox(struct web *w, struct MHD_Connection *c)
{
	static const char *const cols[] = {"col.referral", "col.survivor", "col.from",
	                                   "col.to",       "col.priority", "col.status",
	                                   "col.created",  "col.deadline", "col.action"};
	const char *lang = request_lang(c);
	struct buf b = {NULL, 0, 0, 0};
	size_t i;

	pthread_mutex_lock(&w->mu);
	page_top(&b, w, lang, catalog_text(lang, "title"), "/", "inbox");
	buf_puts(&b, "<table id=\"inbox\">\n<thead><tr>");
	for (i = 0; i < sizeof(cols) / sizeof(cols[0]); i++) {
		buf_puts(&b, "<th scope=\"col\">");
		buf_esc(&b, catalog_text(lang, cols[i]));
		buf_puts(&b, "</th>");
	}
	buf_puts(&b, "</tr></thead>\n<tbody id=\"rows\">\n");
	render_rows(&b, w, lang);
	pthread_mutex_unlock(&w->mu);
	buf_puts(&b, "</tbody>\n</table>\n");
	return page_end(c, &b, MHD_HTTP_OK);
}

/* ---- a referral's page ---- */

/* The catalog prefix naming the values of a field, for the fields whose values are codes. */
static const char *
value_prefix(const char *key)
{
	static const char *const map[] = {"services",     "service",     "servicesDelivered",
	                                  "service",      "dataCovered", "data",
	                                  "priority",     "priority",    "notSuccessfulReasons",
	                                  "reason",       "reasonCode",  "reason",
	                                  "sex",          "sex",         "displacement",
	                                  "displacement", "givenBy",     "giver",
	                                  "status",       "status",      NULL};
	size_t i;

	for (i = 0; map[i] != NULL; i += 2) {
		if (strcmp(key, map[i]) == 0) {
			return map[i + 1];
		}
	}
	return NULL;
}

static void esc_json(struct buf *b, const char *lang, const char *key, json_t *v, int depth);

/* An object as a definition list: each field's name from the catalog (field.KEY), its value
 * escaped; codes by their catalog names; nested objects nested. */
static void
render_dl(struct buf *b, const char *lang, json_t *obj, int depth)
{
	const char *k, *t;
	char key[96];
	json_t *v;

	buf_puts(b, "<dl>");
	json_object_foreach(obj, k, v)
	{
		snprintf(key, sizeof(key), "field.%s", k);
		t = catalog_find(lang, key);
		buf_puts(b, "<dt>");
		buf_esc(b, t != NULL ? t : k);
		buf_puts(b, "</dt><dd data-field=\"");
		buf_esc(b, k);
		buf_puts(b, "\">");
		esc_json(b, lang, k, v, depth + 1);
		buf_puts(b, "</dd>");
	}
	buf_puts(b, "</dl>");
}

static void
esc_json(struct buf *b, const char *lang, const char *key, json_t *v, int depth)
{
	const char *prefix = value_prefix(key);
	char n[32];
	json_t *it;
	size_t i;

	if (depth > 8) {
		return;
	}
	if (json_is_string(v)) {
		buf_puts(b, "<bdi>");
		if (prefix != NULL) {
			esc_value(b, lang, prefix, json_string_value(v));
		} else {
			buf_esc(b, json_string_value(v));
		}
		buf_puts(b, "</bdi>");
	} else if (json_is_integer(v)) {
		snprintf(n, sizeof(n), "%lld", (long long)json_integer_value(v));
		buf_puts(b, n);
	} else if (json_is_boolean(v)) {
		buf_esc(b, catalog_text(lang, json_is_true(v) ? "yes" : "no"));
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, it)
		{
			buf_puts(b, i > 0 ? ", " : "");
			esc_json(b, lang, key, it, depth);
		}
	} else if (json_is_object(v)) {
		render_dl(b, lang, v, depth);
	}
}

/* What one timeline item says in the clear: its texts and codes. */
static void
render_item_detail(struct buf *b, const char *lang, json_t *it)
{
	json_t *env = json_object_get(it, "envelope"), *su, *x;

	if ((su = json_object_get(env, "statusUpdate")) != NULL) {
		if ((x = json_deep_copy(su)) != NULL) {
			json_object_del(x, "referralId");
			json_object_del(x, "status"); /* the item's heading says it */
			if (json_object_size(x) > 0) {
				render_dl(b, lang, x, 0);
			}
			json_decref(x);
		}
	} else if ((x = json_object_get(env, "note")) != NULL) {
		buf_puts(b, "<p class=\"text\"><bdi>");
		buf_esc(b, json_string_value(json_object_get(x, "text")));
		buf_puts(b, "</bdi></p>");
	} else if ((x = json_object_get(env, "referral")) != NULL) {
		buf_puts(b, "<p class=\"text\">");
		esc_keyed(b, lang, "priority", json_string_value(json_object_get(x, "priority")));
		buf_puts(b, " · ");
		esc_json(b, lang, "services", json_object_get(x, "services"), 0);
		buf_puts(b, "</p>");
	} else if ((x = json_object_get(it, "event")) != NULL &&
	           json_string_value(json_object_get(x, "text")) != NULL) {
		buf_puts(b, "<p class=\"text\"><bdi>");
		buf_esc(b, json_string_value(json_object_get(x, "text")));
		buf_puts(b, "</bdi></p>");
	}
	if (json_string_value(json_object_get(it, "openError")) != NULL) {
		buf_puts(b, "<p class=\"message err\">");
		buf_esc(b, catalog_text(lang, "timeline.openError"));
		buf_puts(b, " ");
		buf_esc(b, json_string_value(json_object_get(it, "openError")));
		buf_puts(b, "</p>");
	}
}

static void
render_timeline(struct buf *b, const char *lang, json_t *tl)
{
	char when[40], seq[32];
	json_t *it;
	size_t i;

	buf_puts(b, "<ol id=\"timeline\">\n");
	json_array_foreach(tl, i, it)
	{
		const char *what = json_string_value(json_object_get(it, "what"));
		const char *status = json_string_value(json_object_get(it, "status"));
		const char *from = json_string_value(json_object_get(it, "from"));
		json_t *env = json_object_get(it, "envelope");

		if (what == NULL) {
			/* a journal line the broker's history does not have (the broker is away) */
			what = json_object_get(env, "note") != NULL           ? "note"
			       : json_object_get(env, "referral") != NULL     ? "referral"
			       : json_object_get(env, "statusUpdate") != NULL ? "status"
			                                                      : "unknown";
		}
		snprintf(seq, sizeof(seq), "%llu", (unsigned long long)row_num(it, "seq"));
		buf_puts(b, "<li class=\"event\" data-seq=\"");
		buf_puts(b, seq);
		buf_puts(b, "\" data-what=\"");
		buf_esc(b, what);
		buf_puts(b, "\" data-status=\"");
		buf_esc(b, status != NULL ? status : "");
		buf_puts(b, "\"><span class=\"when\">");
		fmt_time(row_num(it, "timeMs"), when, sizeof(when));
		buf_esc(b, when);
		buf_puts(b, "</span> <span class=\"what\">");
		esc_keyed(b, lang, "what", what);
		if (status != NULL &&
		    (strcmp(what, "status") == 0 || strcmp(what, "outcome") == 0)) {
			buf_puts(b, ": ");
			esc_keyed(b, lang, "status", status);
		}
		buf_puts(b, "</span> <span class=\"from\">");
		buf_esc(b, catalog_text(lang, "timeline.by"));
		buf_puts(b, " <bdi>");
		buf_esc(b, from != NULL && from[0] != '\0' ? from : catalog_text(lang, "broker"));
		buf_puts(b, "</bdi></span>");
		render_item_detail(b, lang, it);
		buf_puts(b, "</li>\n");
	}
	buf_puts(b, "</ol>\n");
}

static void
section(struct buf *b, const char *lang, const char *id, const char *key)
{
	buf_puts(b, "<section id=\"");
	buf_puts(b, id);
	buf_puts(b, "\"><h2>");
	buf_esc(b, catalog_text(lang, key));
	buf_puts(b, "</h2>\n");
}

/* The actions the node's role in the referral allows now, each a form. Called with w->mu
 * held. */
static void
render_actions(struct buf *b, struct web *w, const char *lang, json_t *row)
{
	static const char *const progress_st[] = {"in-progress", "on-hold", NULL};
	static const char *const outcome_st[] = {"completed", "failed", NULL};
	const char *rid = json_string_value(json_object_get(row, "referralId"));
	const char *status = json_string_value(json_object_get(row, "status"));
	const char *to = json_string_value(json_object_get(row, "recipient"));
	const char *from = json_string_value(json_object_get(row, "referrer"));
	int recipient = to != NULL && strcmp(to, w->agency) == 0;
	int referrer = from != NULL && strcmp(from, w->agency) == 0;
	json_t *ags, *it;
	size_t i;

	section(b, lang, "actions", "section.actions");
	if (!recipient && !referrer) {
		buf_puts(b, "<p>");
		buf_esc(b, catalog_text(lang, "actions.none"));
		buf_puts(b, "</p></section>\n");
		return;
	}
	if (recipient && is_waiting(status)) {
		buf_puts(b, "<h3>");
		buf_esc(b, catalog_text(lang, "accept"));
		buf_puts(b, "</h3>");
		form_open(b, w, "/accept", "accept", rid, "referral");
		text_input(b, lang, "text", "note", "accept-note", "accept.note", 0, 500);
		submit_button(b, lang, "accept", "accept");
		buf_puts(b, "<h3>");
		buf_esc(b, catalog_text(lang, "decline"));
		buf_puts(b, "</h3>");
		render_decline(b, w, lang, rid, 0, "referral");
	}
	if (recipient && !is_closed(status)) {
		buf_puts(b, "<h3>");
		buf_esc(b, catalog_text(lang, "progress"));
		buf_puts(b, "</h3>");
		form_open(b, w, "/progress", "progress", rid, "referral");
		enum_select(b, lang, &ihala__v2__task_status__descriptor, "status",
		            "progress-status", "progress.status", "status", NULL, 1, progress_st);
		text_input(b, lang, "text", "businessStatus", "progress-business",
		           "progress.business", 0, 250);
		text_input(b, lang, "text", "note", "progress-note", "progress.note", 0, 500);
		enum_select(b, lang, &ihala__v2__reason_code__descriptor, "reason",
		            "progress-reason", "progress.reason", "reason", "choose.none", 0, NULL);
		submit_button(b, lang, "progress", "progress.send");

		buf_puts(b, "<h3>");
		buf_esc(b, catalog_text(lang, "outcome"));
		buf_puts(b, "</h3>");
		form_open(b, w, "/outcome", "outcome", rid, "referral");
		enum_select(b, lang, &ihala__v2__task_status__descriptor, "status",
		            "outcome-status", "outcome.status", "status", NULL, 1, outcome_st);
		check_input(b, lang, "implemented", "outcome-implemented", "outcome.implemented",
		            1);
		check_input(b, lang, "success", "outcome-success", "outcome.success", 1);
		check_input(b, lang, "followUp", "outcome-followup", "outcome.followup", 0);
		text_input(b, lang, "date", "date", "outcome-date", "outcome.date", 0, 10);
		enum_checks(b, lang, &ihala__v2__service_code__descriptor, "service",
		            "outcome-service", "outcome.services", "service");
		enum_select(b, lang, &ihala__v2__reason_code__descriptor, "reason",
		            "outcome-reason", "outcome.reason", "reason", "choose.none", 0, NULL);
		text_input(b, lang, "text", "notes", "outcome-notes", "outcome.notes", 0, 500);
		submit_button(b, lang, "outcome", "outcome.send");

		buf_puts(b, "<h3>");
		buf_esc(b, catalog_text(lang, "onward"));
		buf_puts(b, "</h3>");
		form_open(b, w, "/onward", "onward", rid, "referral");
		ags = json_object_get(json_object_get(json_object_get(row, "referral"), "consent"),
		                      "agencies");
		buf_puts(b, "<div class=\"field\">");
		label_for(b, lang, "onward-to", "onward.to");
		/* the agencies the survivor's consent names: the broker refuses any other */
		buf_puts(b, " <input type=\"text\" name=\"to\" id=\"onward-to\" required "
		            "maxlength=\"64\" list=\"onward-agencies\"><datalist "
		            "id=\"onward-agencies\">");
		json_array_foreach(ags, i, it)
		{
			if (json_is_string(it) && strcmp(json_string_value(it), w->agency) != 0) {
				buf_puts(b, "<option value=\"");
				buf_esc(b, json_string_value(it));
				buf_puts(b, "\">");
			}
		}
		buf_puts(b, "</datalist></div>");
		enum_select(b, lang, &ihala__v2__priority__descriptor, "priority",
		            "onward-priority", "onward.priority", "priority", NULL, 1, NULL);
		enum_checks(b, lang, &ihala__v2__service_code__descriptor, "service",
		            "onward-service", "onward.services", "service");
		enum_checks(b, lang, &ihala__v2__data_category__descriptor, "data", "onward-data",
		            "onward.data", "data");
		text_input(b, lang, "text", "reason", "onward-reason", "onward.reason", 0, 500);
		submit_button(b, lang, "onward", "onward.send");
	}
	buf_puts(b, "<h3>");
	buf_esc(b, catalog_text(lang, "note"));
	buf_puts(b, "</h3>");
	form_open(b, w, "/note", "note", rid, "referral");
	text_input(b, lang, "textarea", "text", "note-text", "note.text", 1, 1000);
	submit_button(b, lang, "note", "note.send");
	/* shown to the referrer too, so that a refusal can be seen: the broker decides */
	if (referrer && !recipient && !is_closed(status)) {
		buf_puts(b, "<h3>");
		buf_esc(b, catalog_text(lang, "outcome"));
		buf_puts(b, "</h3>");
		form_open(b, w, "/outcome", "outcome", rid, "referral");
		enum_select(b, lang, &ihala__v2__task_status__descriptor, "status",
		            "outcome-status", "outcome.status", "status", NULL, 1, outcome_st);
		check_input(b, lang, "implemented", "outcome-implemented", "outcome.implemented",
		            1);
		check_input(b, lang, "success", "outcome-success", "outcome.success", 1);
		text_input(b, lang, "text", "notes", "outcome-notes", "outcome.notes", 0, 500);
		submit_button(b, lang, "outcome", "outcome.send");
	}
	buf_puts(b, "</section>\n");
}

/* GET /r/ID: a referral's state, the survivor's record as this node opened it, its whole
 * history, and the forms of what this node may do. */
static enum MHD_Result
send_referral(struct web *w, struct MHD_Connection *c, const char *rid)
{
	const char *lang = request_lang(c);
	struct buf b = {NULL, 0, 0, 0};
	char path[3 * ID_MAX + 8], when[40];
	json_t *row = NULL, *it, *ref, *x;
	unsigned status = MHD_HTTP_OK;
	size_t i;

	referral_path(rid, path, sizeof(path));
	pthread_mutex_lock(&w->mu);
	json_array_foreach(w->rows, i, it)
	{
		if (strcmp(json_string_value(json_object_get(it, "referralId")), rid) == 0) {
			row = it;
			break;
		}
	}
	page_top(&b, w, lang, catalog_text(lang, "referral.title"), id_valid(rid) ? path : "/",
	         "referral");
	if (row == NULL) {
		buf_puts(&b, "<p class=\"message err\" id=\"notfound\">");
		buf_esc(&b, catalog_text(lang, "referral.unknown"));
		buf_puts(&b, "</p>\n");
		status = MHD_HTTP_NOT_FOUND;
		goto out;
	}
	buf_puts(&b, "<section id=\"summary\" data-referral=\"");
	buf_esc(&b, rid);
	buf_puts(&b, "\" data-status=\"");
	buf_esc(&b, json_string_value(json_object_get(row, "status")));
	buf_puts(&b, "\"><h2><bdi>");
	buf_esc(&b, rid);
	buf_puts(&b, "</bdi> <span class=\"status\">");
	esc_keyed(&b, lang, "status", json_string_value(json_object_get(row, "status")));
	buf_puts(&b, "</span>");
	if (json_is_true(json_object_get(row, "overdue"))) {
		buf_puts(&b, " <span class=\"badge overdue\">");
		buf_esc(&b, catalog_text(lang, "overdue"));
		buf_puts(&b, "</span>");
	}
	buf_puts(&b, "</h2><dl><dt>");
	buf_esc(&b, catalog_text(lang, "col.from"));
	buf_puts(&b, "</dt><dd><bdi>");
	buf_esc(&b, json_string_value(json_object_get(row, "referrer")));
	buf_puts(&b, "</bdi></dd><dt>");
	buf_esc(&b, catalog_text(lang, "col.to"));
	buf_puts(&b, "</dt><dd><bdi>");
	buf_esc(&b, json_string_value(json_object_get(row, "recipient")));
	buf_puts(&b, "</bdi></dd><dt>");
	buf_esc(&b, catalog_text(lang, "col.priority"));
	buf_puts(&b, "</dt><dd>");
	esc_keyed(&b, lang, "priority", json_string_value(json_object_get(row, "priority")));
	buf_puts(&b, "</dd><dt>");
	buf_esc(&b, catalog_text(lang, "col.deadline"));
	buf_puts(&b, "</dt><dd>");
	fmt_time(row_num(row, "deadlineMs"), when, sizeof(when));
	buf_esc(&b, when);
	buf_puts(&b, "</dd>");
	if ((x = json_object_get(row, "parent")) != NULL && json_string_value(x)[0] != '\0') {
		buf_puts(&b, "<dt>");
		buf_esc(&b, catalog_text(lang, "field.parentReferralId"));
		buf_puts(&b, "</dt><dd><a href=\"");
		referral_path(json_string_value(x), path, sizeof(path));
		buf_esc(&b, path);
		buf_puts(&b, "\"><bdi>");
		buf_esc(&b, json_string_value(x));
		buf_puts(&b, "</bdi></a></dd>");
	}
	buf_puts(&b, "</dl></section>\n");

	section(&b, lang, "record", "section.record");
	if ((ref = json_object_get(row, "referral")) != NULL && json_is_object(ref)) {
		render_dl(&b, lang, ref, 0);
	} else {
		buf_puts(&b, "<p>");
		buf_esc(&b, catalog_text(lang, "record.none"));
		buf_puts(&b, "</p>");
	}
	buf_puts(&b, "</section>\n");
	section(&b, lang, "history", "section.timeline");
	render_timeline(&b, lang, json_object_get(row, "timeline"));
	buf_puts(&b, "</section>\n");
	render_actions(&b, w, lang, row);
out:
	pthread_mutex_unlock(&w->mu);
	return page_end(c, &b, status);
}

/* ---- DMA's new referral ---- */

/* GET /new: the new-referral form, with the survivor's consent record. */
static enum MHD_Result
send_new(struct web *w, struct MHD_Connection *c)
{
	const char *lang = request_lang(c);
	struct buf b = {NULL, 0, 0, 0};

	pthread_mutex_lock(&w->mu);
	page_top(&b, w, lang, catalog_text(lang, "new.title"), "/new", "new");
	if (w->role != IHALA__V2__ROLE__ROLE_DMA) {
		buf_puts(&b, "<p class=\"message err\">");
		buf_esc(&b, catalog_text(lang, "new.notdma"));
		buf_puts(&b, "</p>\n");
	}
	form_open(&b, w, "/refer", "refer", NULL, NULL);
	buf_puts(&b, "<fieldset><legend>");
	buf_esc(&b, catalog_text(lang, "section.referral"));
	buf_puts(&b, "</legend>");
	text_input(&b, lang, "text", "rid", "new-rid", "new.rid", 0, 64);
	text_input(&b, lang, "text", "to", "new-to", "new.to", 1, 64);
	enum_select(&b, lang, &ihala__v2__priority__descriptor, "priority", "new-priority",
	            "col.priority", "priority", "choose.one", 1, NULL);
	enum_checks(&b, lang, &ihala__v2__service_code__descriptor, "service", "new-service",
	            "new.services", "service");
	text_input(&b, lang, "textarea", "reason", "new-reason", "new.reason", 0, 1000);
	buf_puts(&b, "</fieldset><fieldset><legend>");
	buf_esc(&b, catalog_text(lang, "new.survivor"));
	buf_puts(&b, "</legend>");
	text_input(&b, lang, "text", "caseId", "new-case", "field.caseId", 1, 64);
	text_input(&b, lang, "text", "name", "new-name", "field.name", 0, 200);
	enum_select(&b, lang, &ihala__v2__sex__descriptor, "sex", "new-sex", "field.sex", "sex",
	            "choose.none", 0, NULL);
	text_input(&b, lang, "number", "birthYear", "new-birthyear", "field.birthYear", 0, 4);
	text_input(&b, lang, "text", "governorate", "new-governorate", "field.governorate", 0, 100);
	text_input(&b, lang, "text", "district", "new-district", "field.district", 0, 100);
	enum_select(&b, lang, &ihala__v2__displacement__descriptor, "displacement",
	            "new-displacement", "field.displacement", "displacement", "choose.none", 0,
	            NULL);
	buf_puts(&b, "</fieldset><fieldset><legend>");
	buf_esc(&b, catalog_text(lang, "field.consent"));
	buf_puts(&b, "</legend>");
	check_input(&b, lang, "given", "new-given", "new.given", 0);
	enum_select(&b, lang, &ihala__v2__consent_giver__descriptor, "givenBy", "new-givenby",
	            "field.givenBy", "giver", "choose.one", 1, NULL);
	text_input(&b, lang, "date", "date", "new-date", "new.date", 1, 10);
	text_input(&b, lang, "text", "recordedBy", "new-recordedby", "field.recordedBy", 1, 200);
	text_input(&b, lang, "text", "agencies", "new-agencies", "new.agencies", 0, 500);
	enum_checks(&b, lang, &ihala__v2__data_category__descriptor, "data", "new-data", "new.data",
	            "data");
	buf_puts(&b, "</fieldset>");
	submit_button(&b, lang, "refer", "new.send");
	pthread_mutex_unlock(&w->mu);
	return page_end(c, &b, MHD_HTTP_OK);
}

/* ---- the auditor's page ---- */

/* GET /audit: the log's size, its last verified checkpoint, Verify, and the newest entries'
 * clear parts (as the last verify read them). */
static enum MHD_Result
send_audit(struct web *w, struct MHD_Connection *c)
{
	const char *lang = request_lang(c);
	struct buf b = {NULL, 0, 0, 0};
	char n[32], when[40];
	json_t *a, *it, *env, *x;
	size_t i;

	pthread_mutex_lock(&w->mu);
	page_top(&b, w, lang, catalog_text(lang, "audit.title"), "/audit", "audit");
	a = w->audit;
	buf_puts(&b, "<section id=\"verify\">");
	if (a == NULL) {
		buf_puts(&b, "<p id=\"audit-never\">");
		buf_esc(&b, catalog_text(lang, "audit.never"));
		buf_puts(&b, "</p>");
	} else {
		buf_puts(&b, json_is_true(json_object_get(a, "ok"))
		                 ? "<p class=\"message ok\" id=\"audit-result\" data-ok=\"1\">"
		                 : "<p class=\"message err\" id=\"audit-result\" data-ok=\"0\">");
		buf_esc(&b,
		        catalog_text(lang, json_is_true(json_object_get(a, "ok")) ? "audit.ok"
		                                                                  : "audit.bad"));
		buf_puts(&b, " <bdi>");
		buf_esc(&b, json_string_value(json_object_get(a, "problem")));
		buf_puts(&b, "</bdi></p><dl><dt>");
		buf_esc(&b, catalog_text(lang, "audit.size"));
		snprintf(n, sizeof(n), "%llu", (unsigned long long)row_num(a, "size"));
		buf_puts(&b, "</dt><dd id=\"audit-size\">");
		buf_puts(&b, n);
		buf_puts(&b, "</dd><dt>");
		buf_esc(&b, catalog_text(lang, "audit.checkpoint"));
		snprintf(n, sizeof(n), "%llu", (unsigned long long)row_num(a, "checkpointSize"));
		buf_puts(&b, "</dt><dd id=\"audit-checkpoint\">");
		buf_puts(&b, n);
		buf_puts(&b, " <bdi>");
		buf_esc(&b, json_string_value(json_object_get(a, "origin")));
		buf_puts(&b, "</bdi></dd><dt>");
		buf_esc(&b, catalog_text(lang, "audit.root"));
		buf_puts(&b, "</dt><dd class=\"hash\">");
		buf_esc(&b, json_string_value(json_object_get(a, "root")));
		buf_puts(&b, "</dd><dt>");
		buf_esc(&b, catalog_text(lang, "audit.when"));
		buf_puts(&b, "</dt><dd>");
		fmt_time(row_num(a, "timeMs"), when, sizeof(when));
		buf_esc(&b, when);
		buf_puts(&b, "</dd></dl>");
	}
	form_open(&b, w, "/verify", "verify", NULL, NULL);
	submit_button(&b, lang, "verify", "audit.verify");
	buf_puts(&b, "</section>\n");
	section(&b, lang, "entries", "audit.entries");
	buf_puts(&b, "<table id=\"log\"><thead><tr>");
	{
		static const char *const cols[] = {"col.seq",  "col.time", "col.kind",
		                                   "col.from", "col.to",   "col.content"};

		for (i = 0; i < sizeof(cols) / sizeof(cols[0]); i++) {
			buf_puts(&b, "<th scope=\"col\">");
			buf_esc(&b, catalog_text(lang, cols[i]));
			buf_puts(&b, "</th>");
		}
	}
	buf_puts(&b, "</tr></thead><tbody>\n");
	/* newest first */
	for (i = json_array_size(json_object_get(a, "log")); i-- > 0;) {
		it = json_array_get(json_object_get(a, "log"), i);
		snprintf(n, sizeof(n), "%llu", (unsigned long long)row_num(it, "seq"));
		buf_puts(&b, "<tr class=\"entry\" data-seq=\"");
		buf_puts(&b, n);
		buf_puts(&b, "\"><td>");
		buf_puts(&b, n);
		buf_puts(&b, "</td>");
		fmt_time(row_num(it, "brokerTimeMs"), when, sizeof(when));
		cell_text(&b, "time", when);
		buf_puts(&b, "<td>");
		esc_value(&b, lang, "kind", json_string_value(json_object_get(it, "kind")));
		buf_puts(&b, "</td>");
		cell_text(&b, "from", json_string_value(json_object_get(it, "sender")));
		cell_text(&b, "to", json_string_value(json_object_get(it, "recipient")));
		buf_puts(&b, "<td class=\"content\">");
		env = json_object_get(it, "envelope");
		x = env != NULL ? env : json_object_get(it, "event");
		if (x != NULL) {
			render_dl(&b, lang, x, 0);
		}
		buf_puts(&b, "</td></tr>\n");
	}
	buf_puts(&b, "</tbody></table></section>\n");
	pthread_mutex_unlock(&w->mu);
	return page_end(c, &b, MHD_HTTP_OK);
}

static enum MHD_Result
send_rows(struct web *w, struct MHD_Connection *c)
{
	const char *lang = request_lang(c);
	struct buf b = {NULL, 0, 0, 0};

	pthread_mutex_lock(&w->mu);
	render_rows(&b, w, lang);
	pthread_mutex_unlock(&w->mu);
	return send_buf(c, MHD_HTTP_OK, "text/html; charset=utf-8", &b);
}

/* ---- server-sent events: "change" with the model's generation, when it changes ---- */

struct sse {
	struct web *w;
	uint64_t seen;
	int hello;
};

static ssize_t
sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct sse *s = cls;
	struct web *w = s->w;
	struct timespec until;
	int n;

	(void)pos;
	pthread_mutex_lock(&w->mu);
	if (!s->hello) {
		/* the generation now: a page rendered before a change it missed reloads */
		s->hello = 1;
		s->seen = w->gen;
		n = snprintf(buf, max, "retry: 2000\nevent: change\ndata: %llu\n\n",
		             (unsigned long long)s->seen);
		pthread_mutex_unlock(&w->mu);
		return n;
	}
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += SSE_PING_S;
	while (!w->stopping && w->gen == s->seen) {
		if (pthread_cond_timedwait(&w->changed, &w->mu, &until) == ETIMEDOUT) {
			break;
		}
	}
	if (w->stopping) {
		pthread_mutex_unlock(&w->mu);
		return MHD_CONTENT_READER_END_OF_STREAM;
	}
	if (w->gen != s->seen) {
		s->seen = w->gen;
		n = snprintf(buf, max, "event: change\ndata: %llu\n\n",
		             (unsigned long long)s->seen);
	} else {
		n = snprintf(buf, max, ": ping\n\n");
	}
	pthread_mutex_unlock(&w->mu);
	return n;
}

static enum MHD_Result
send_events(struct web *w, struct MHD_Connection *c)
{
	struct MHD_Response *r;
	struct sse *s;
	enum MHD_Result ret;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		return MHD_NO;
	}
	s->w = w;
	if ((r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 1024, sse_read, s, free)) ==
	    NULL) {
		free(s);
		return MHD_NO;
	}
	secure_headers(r);
	MHD_add_response_header(r, "Content-Type", "text/event-stream; charset=utf-8");
	ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

/* ---- actions ---- */

static enum MHD_Result
do_login(struct web *w, struct MHD_Connection *c)
{
	const char *tok = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token");
	char cookie[128];
	int ok;

	pthread_mutex_lock(&w->mu);
	ok = !w->login_used && token_eq(tok, w->login_token);
	if (ok) {
		/* once: a link seen later (history, a shoulder) opens nothing */
		w->login_used = 1;
		ok = web_token(w->session, sizeof(w->session)) == 0 &&
		     web_token(w->csrf, sizeof(w->csrf)) == 0;
		snprintf(cookie, sizeof(cookie),
		         "ihala_session=%s; Path=/; HttpOnly; SameSite=Strict", w->session);
	}
	pthread_mutex_unlock(&w->mu);
	if (!ok) {
		cli_warnx("web: security: a login link that is wrong or was used already was "
		          "refused");
		return send_message(c, MHD_HTTP_FORBIDDEN, "login.bad");
	}
	return send_redirect(c, "/", cookie);
}

static void
set_flash(struct web *w, int ok, const char *key, const char *lang, const char *detail)
{
	/* a long broker sentence is cut, never the page */
	if (snprintf(w->flash, sizeof(w->flash), "%s %s", catalog_text(lang, key), detail) < 0) {
		w->flash[0] = '\0';
	}
	w->flash_ok = ok;
}

/*
 * Ask the node loop for a job (it is the only thread with the client) and wait for it; then
 * say what it came to on the next page (flash: `okkey` and the referral id, or the broker's
 * refusal in words) and send the browser to `back` (`back_fail` when it was not done, NULL:
 * `back` too). `env` (the envelope as JSON, SUBMIT) is taken.
 */
static enum MHD_Result
job_run(struct web *w, struct MHD_Connection *c, enum web_job_kind kind, json_t *env,
        const char *rid, const char *okkey, const char *back, const char *back_fail)
{
	const char *lang = request_lang(c);
	struct timespec until;
	int err;

	if (kind == WEB_JOB_SUBMIT && env == NULL) {
		return send_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
	}
	pthread_mutex_lock(&w->mu);
	if (w->job.state == WEB_JOB_DONE) {
		w->job.state = WEB_JOB_NONE; /* the answer of a page that stopped waiting */
	}
	if (w->job.state != WEB_JOB_NONE) {
		set_flash(w, 0, "busy", lang, "");
		pthread_mutex_unlock(&w->mu);
		json_decref(env);
		return send_redirect(c, back, NULL);
	}
	w->job.state = WEB_JOB_PENDING;
	w->job.kind = kind;
	json_decref(w->job.envelope);
	w->job.envelope = env;
	snprintf(w->job.rid, sizeof(w->job.rid), "%s", rid != NULL ? rid : "");
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += w->job_timeout_ms / 1000 + 1;
	if (kind == WEB_JOB_VERIFY) {
		until.tv_sec += 60; /* a replay of the whole log */
	}
	while (!w->stopping && w->job.state != WEB_JOB_DONE) {
		if (pthread_cond_timedwait(&w->job_cv, &w->mu, &until) == ETIMEDOUT) {
			break;
		}
	}
	err = IHALA_ETIMEDOUT;
	if (w->job.state == WEB_JOB_DONE) {
		err = w->job.err;
		w->job.state = WEB_JOB_NONE;
		if (err == 0) {
			set_flash(w, 1, okkey, lang, w->job.text);
		} else if (kind == WEB_JOB_VERIFY) {
			set_flash(w, 0, "verify.failed", lang, w->job.text);
		} else if (cli_is_transport(err)) {
			set_flash(w, 0, "unreachable", lang, w->job.text);
		} else if (cli_exit_code(err) == CLI_REFUSED) {
			set_flash(w, 0, "refused", lang, w->job.text);
		} else {
			set_flash(w, 0, "failed", lang, w->job.text);
		}
	} else {
		set_flash(w, 0, "busy", lang, "");
	}
	pthread_mutex_unlock(&w->mu);
	return send_redirect(c, err != 0 && back_fail != NULL ? back_fail : back, NULL);
}

/* ---- the actions' forms: each makes the envelope `ihala` would send ---- */

/* A free text field: "" when absent; -1 when too long or not UTF-8. */
static int
form_text(const char *body, const char *name, char *out, size_t len)
{
	out[0] = '\0';
	if (!form_has(body, name)) {
		return 0;
	}
	if (form_value(body, name, out, len) != 0 ||
	    !pb_utf8_valid((const uint8_t *)out, strlen(out))) {
		return -1;
	}
	return 0;
}

/* Set key to the text when it is not empty. */
static void
set_text(json_t *o, const char *key, const char *text)
{
	if (text[0] != '\0') {
		json_object_set_new(o, key, json_string(text));
	}
}

/* The enum values named by every `name` field (JSON names, checked against ed), as an array;
 * NULL when one is not a value of ed. */
static json_t *
form_enums(const char *body, const char *name, const ProtobufCEnumDescriptor *ed)
{
	json_t *a = json_array();
	char v[64];
	size_t i;
	int x;

	for (i = 0; a != NULL && form_nth(body, name, i, v, sizeof(v)) == 0; i++) {
		if (pbjson_enum_from_name(ed, v, &x) != 0 || x == 0) {
			json_decref(a);
			return NULL;
		}
		json_array_append_new(a, json_string(v));
	}
	return a;
}

/* One enum value of field `name`: 1 with its name in out, 0 when absent or empty, -1 when
 * it is not a value of ed. */
static int
form_enum(const char *body, const char *name, const ProtobufCEnumDescriptor *ed, char *out,
          size_t len)
{
	int x;

	if (form_value(body, name, out, len) != 0 || out[0] == '\0') {
		return 0;
	}
	return pbjson_enum_from_name(ed, out, &x) == 0 && x != 0 ? 1 : -1;
}

/* Where an action's page goes back to: the referral's page when it was sent from there. */
static void
form_back(const char *body, const char *rid, char *back, size_t len)
{
	char page[16];

	if (form_value(body, "page", page, sizeof(page)) == 0 && strcmp(page, "referral") == 0) {
		referral_path(rid, back, len);
	} else {
		snprintf(back, len, "/");
	}
}

static enum MHD_Result
bad_request(struct MHD_Connection *c, const char *why)
{
	char text[256];

	snprintf(text, sizeof(text), "bad request: %s", why);
	return send_text(c, MHD_HTTP_BAD_REQUEST, text);
}

/* {"statusUpdate": {"referralId": rid, "status": status}} with its object in *su. */
static json_t *
status_update(const char *rid, const char *status, json_t **su)
{
	json_t *env = json_object();

	*su = json_object();
	if (env == NULL || *su == NULL) {
		json_decref(env);
		json_decref(*su);
		return NULL;
	}
	json_object_set_new(*su, "referralId", json_string(rid));
	json_object_set_new(*su, "status", json_string(status));
	json_object_set_new(env, "statusUpdate", *su);
	return env;
}

/* POST /accept: `ihala accept RID [--note TEXT]`. */
static enum MHD_Result
do_accept(struct web *w, struct MHD_Connection *c, const char *body, const char *rid)
{
	char note[WEB_REASON_TEXT_MAX], back[3 * ID_MAX + 8];
	json_t *env, *su;

	if (form_text(body, "note", note, sizeof(note)) != 0) {
		return bad_request(c, "the note is too long or not UTF-8");
	}
	form_back(body, rid, back, sizeof(back));
	if ((env = status_update(rid, "accepted", &su)) != NULL) {
		set_text(su, "note", note);
	}
	return job_run(w, c, WEB_JOB_SUBMIT, env, rid, "accepted", back, NULL);
}

/* POST /decline: `ihala decline RID --reason CODE [--text TEXT]`. */
static enum MHD_Result
do_decline(struct web *w, struct MHD_Connection *c, const char *body, const char *rid)
{
	char code[64], text[WEB_REASON_TEXT_MAX], back[3 * ID_MAX + 8];
	json_t *env, *su;

	if (form_enum(body, "reason", &ihala__v2__reason_code__descriptor, code, sizeof(code)) !=
	    1) {
		return bad_request(c, "no valid reason code");
	}
	if (form_text(body, "text", text, sizeof(text)) != 0) {
		return bad_request(c, "the reason in words is too long or not UTF-8");
	}
	form_back(body, rid, back, sizeof(back));
	if ((env = status_update(rid, "declined", &su)) != NULL) {
		json_object_set_new(su, "reasonCode", json_string(code));
		set_text(su, "reason", text);
	}
	return job_run(w, c, WEB_JOB_SUBMIT, env, rid, "declined", back, NULL);
}

/* POST /progress: `ihala progress RID [--status in-progress|on-hold] [--business-status
 * TEXT] [--note TEXT] [--reason CODE] [--text TEXT]`. */
static enum MHD_Result
do_progress(struct web *w, struct MHD_Connection *c, const char *body, const char *rid)
{
	char st[32], code[64], bs[WEB_REASON_TEXT_MAX], note[WEB_REASON_TEXT_MAX],
	    text[WEB_REASON_TEXT_MAX], back[3 * ID_MAX + 8];
	json_t *env, *su;
	int r;

	if (form_value(body, "status", st, sizeof(st)) != 0 ||
	    (strcmp(st, "in-progress") != 0 && strcmp(st, "on-hold") != 0)) {
		return bad_request(c, "the status must be in-progress or on-hold");
	}
	if ((r = form_enum(body, "reason", &ihala__v2__reason_code__descriptor, code,
	                   sizeof(code))) < 0) {
		return bad_request(c, "no valid reason code");
	}
	if (form_text(body, "businessStatus", bs, sizeof(bs)) != 0 ||
	    form_text(body, "note", note, sizeof(note)) != 0 ||
	    form_text(body, "text", text, sizeof(text)) != 0) {
		return bad_request(c, "a text is too long or not UTF-8");
	}
	form_back(body, rid, back, sizeof(back));
	if ((env = status_update(rid, st, &su)) != NULL) {
		set_text(su, "businessStatus", bs);
		set_text(su, "note", note);
		set_text(su, "reason", text);
		if (r == 1) {
			json_object_set_new(su, "reasonCode", json_string(code));
		}
	}
	return job_run(w, c, WEB_JOB_SUBMIT, env, rid, "progressed", back, NULL);
}

/* POST /outcome: `ihala outcome RID --file OUTCOME.json [--status completed|failed]
 * [--note TEXT]`, the Outcome from the form's fields. */
static enum MHD_Result
do_outcome(struct web *w, struct MHD_Connection *c, const char *body, const char *rid)
{
	char st[32], code[64], date[16], notes[WEB_REASON_TEXT_MAX], note[WEB_REASON_TEXT_MAX],
	    back[3 * ID_MAX + 8];
	json_t *env, *su, *oc, *svc;
	int r;

	if (form_value(body, "status", st, sizeof(st)) != 0 ||
	    (strcmp(st, "completed") != 0 && strcmp(st, "failed") != 0)) {
		return bad_request(c, "the status must be completed or failed");
	}
	if ((r = form_enum(body, "reason", &ihala__v2__reason_code__descriptor, code,
	                   sizeof(code))) < 0) {
		return bad_request(c, "no valid reason code");
	}
	if (form_text(body, "date", date, sizeof(date)) != 0 ||
	    form_text(body, "notes", notes, sizeof(notes)) != 0 ||
	    form_text(body, "note", note, sizeof(note)) != 0) {
		return bad_request(c, "a text is too long or not UTF-8");
	}
	if ((svc = form_enums(body, "service", &ihala__v2__service_code__descriptor)) == NULL) {
		return bad_request(c, "not a service code");
	}
	form_back(body, rid, back, sizeof(back));
	if ((env = status_update(rid, st, &su)) != NULL && (oc = json_object()) != NULL) {
		json_object_set_new(oc, "serviceImplemented",
		                    json_boolean(form_has(body, "implemented")));
		json_object_set_new(oc, "success", json_boolean(form_has(body, "success")));
		json_object_set_new(oc, "followUpNeeded", json_boolean(form_has(body, "followUp")));
		json_object_set(oc, "servicesDelivered", svc);
		set_text(oc, "date", date);
		set_text(oc, "notes", notes);
		if (r == 1) {
			json_object_set_new(oc, "notSuccessfulReasons", json_pack("[s]", code));
		}
		json_object_set_new(su, "outcome", oc);
		set_text(su, "note", note);
	}
	json_decref(svc);
	return job_run(w, c, WEB_JOB_SUBMIT, env, rid, "outcome.sent", back, NULL);
}

/* POST /note: `ihala note RID --text TEXT`. */
static enum MHD_Result
do_note(struct web *w, struct MHD_Connection *c, const char *body, const char *rid)
{
	char text[WEB_REASON_TEXT_MAX], back[3 * ID_MAX + 8];
	json_t *env;

	if (form_text(body, "text", text, sizeof(text)) != 0 || text[0] == '\0') {
		return bad_request(c, "the note is empty, too long or not UTF-8");
	}
	form_back(body, rid, back, sizeof(back));
	env = json_pack("{s:{s:s,s:s}}", "note", "referralId", rid, "text", text);
	return job_run(w, c, WEB_JOB_SUBMIT, env, rid, "noted", back, NULL);
}

/* A fresh referral id: "R-" and 16 hex digits. */
static void
new_referral_id(char *buf, size_t len)
{
	char tok[WEB_TOKEN_LEN + 1];

	if (web_token(tok, sizeof(tok)) != 0) {
		snprintf(tok, sizeof(tok), "%llx", (unsigned long long)time(NULL));
	}
	snprintf(buf, len, "R-%.16s", tok);
}

/* Which data categories each survivor field is (proto/consent.c's table, by JSON name): an
 * onward referral carries only those its consent covers. */
static const struct {
	const char *field, *category;
} survivor_fields[] = {
    {"name", "identity"},
    {"sex", "demographics"},
    {"birthYear", "demographics"},
    {"governorate", "location"},
    {"district", "location"},
    {"displacement", "displacement"},
    {"washingtonGroup", "functioning"},
    {"injury", "injury"},
    {"contact", "contact"},
};

static int
has_string(json_t *a, const char *v)
{
	json_t *it;
	size_t i;

	json_array_foreach(a, i, it)
	{
		if (json_is_string(it) && strcmp(json_string_value(it), v) == 0) {
			return 1;
		}
	}
	return 0;
}

/*
 * POST /onward: an onward referral (`ihala refer` of a referral whose parentReferralId is
 * RID) to agency `to`, with the services and data categories chosen: the survivor's fields
 * of those categories copied from the referral this node holds, the consent narrowed to
 * them and to `to` (the broker checks it lies within the parent's).
 */
static enum MHD_Result
do_onward(struct web *w, struct MHD_Connection *c, const char *body, const char *rid)
{
	char to[ID_MAX + 1], prio[32], reason[WEB_REASON_TEXT_MAX], nrid[ID_MAX + 1],
	    back[3 * ID_MAX + 8];
	json_t *svc, *cats, *row = NULL, *it, *parent, *psurv, *pcons, *env = NULL, *ref, *surv,
	                    *cons;
	size_t i;

	if (form_value(body, "to", to, sizeof(to)) != 0 || !id_agency_valid(to, strlen(to))) {
		return bad_request(c, "no valid agency to refer to");
	}
	if (form_enum(body, "priority", &ihala__v2__priority__descriptor, prio, sizeof(prio)) !=
	    1) {
		return bad_request(c, "no valid priority");
	}
	if (form_text(body, "reason", reason, sizeof(reason)) != 0) {
		return bad_request(c, "the reason is too long or not UTF-8");
	}
	if ((svc = form_enums(body, "service", &ihala__v2__service_code__descriptor)) == NULL) {
		return bad_request(c, "not a service code");
	}
	if ((cats = form_enums(body, "data", &ihala__v2__data_category__descriptor)) == NULL) {
		json_decref(svc);
		return bad_request(c, "not a data category");
	}
	new_referral_id(nrid, sizeof(nrid));
	referral_path(rid, back, sizeof(back));
	pthread_mutex_lock(&w->mu);
	json_array_foreach(w->rows, i, it)
	{
		if (strcmp(json_string_value(json_object_get(it, "referralId")), rid) == 0) {
			row = it;
			break;
		}
	}
	parent = json_object_get(row, "referral");
	psurv = json_object_get(parent, "survivor");
	pcons = json_object_get(parent, "consent");
	if (json_is_object(psurv) && (surv = json_object()) != NULL) {
		json_object_set(surv, "caseId", json_object_get(psurv, "caseId"));
		for (i = 0; i < sizeof(survivor_fields) / sizeof(survivor_fields[0]); i++) {
			json_t *v = json_object_get(psurv, survivor_fields[i].field);

			if (v != NULL && has_string(cats, survivor_fields[i].category)) {
				json_object_set(surv, survivor_fields[i].field, v);
			}
		}
		cons =
		    json_pack("{s:b,s:[s],s:O}", "given", 1, "agencies", to, "dataCovered", cats);
		if (cons != NULL) {
			json_object_set(cons, "givenBy", json_object_get(pcons, "givenBy"));
			json_object_set(cons, "date", json_object_get(pcons, "date"));
			json_object_set(cons, "recordedBy", json_object_get(pcons, "recordedBy"));
		}
		ref = json_pack("{s:s,s:s,s:s,s:s,s:O,s:o,s:o}", "referralId", nrid,
		                "parentReferralId", rid, "receivingAgency", to, "priority", prio,
		                "services", svc, "survivor", surv, "consent", cons);
		if (ref != NULL && reason[0] != '\0' && has_string(cats, "needs")) {
			json_object_set_new(ref, "reason", json_string(reason));
		}
		env = json_pack("{s:s,s:o}", "to", to, "referral", ref);
	}
	pthread_mutex_unlock(&w->mu);
	json_decref(svc);
	json_decref(cats);
	if (env == NULL) {
		set_flash(w, 0, "onward.norecord", request_lang(c), rid);
		return send_redirect(c, back, NULL);
	}
	return job_run(w, c, WEB_JOB_SUBMIT, env, nrid, "referred", back, NULL);
}

/* POST /refer (DMA's new-referral form): `ihala refer --to AGENCY --file REFERRAL.json`. */
static enum MHD_Result
do_refer(struct web *w, struct MHD_Connection *c, const char *body, const char *unused)
{
	char rid[ID_MAX + 1], to[ID_MAX + 1], prio[32], v[64], reason[WEB_REASON_TEXT_MAX],
	    text[256], agencies[1024], back[3 * ID_MAX + 8];
	static const char *const surv_text[] = {"caseId", "name", "governorate", "district"};
	json_t *svc, *cats, *ag, *surv, *cons, *ref, *env;
	char *tok, *save = NULL;
	uint64_t year;
	size_t i;

	(void)unused;
	if (form_value(body, "rid", rid, sizeof(rid)) != 0 || rid[0] == '\0') {
		new_referral_id(rid, sizeof(rid));
	} else if (!id_valid(rid)) {
		return bad_request(c, "the referral id must be 1 to 64 printable ASCII characters");
	}
	if (form_value(body, "to", to, sizeof(to)) != 0 || !id_agency_valid(to, strlen(to))) {
		return bad_request(c, "no valid agency to refer to");
	}
	if (form_enum(body, "priority", &ihala__v2__priority__descriptor, prio, sizeof(prio)) !=
	    1) {
		return bad_request(c, "no valid priority");
	}
	if (form_text(body, "reason", reason, sizeof(reason)) != 0 ||
	    form_text(body, "agencies", agencies, sizeof(agencies)) != 0) {
		return bad_request(c, "a text is too long or not UTF-8");
	}
	if ((surv = json_object()) == NULL || (ag = json_array()) == NULL) {
		json_decref(surv);
		return send_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
	}
	for (i = 0; i < sizeof(surv_text) / sizeof(surv_text[0]); i++) {
		if (form_text(body, surv_text[i], text, sizeof(text)) != 0) {
			json_decref(surv);
			json_decref(ag);
			return bad_request(c, "a text is too long or not UTF-8");
		}
		set_text(surv, surv_text[i], text);
	}
	if (form_enum(body, "sex", &ihala__v2__sex__descriptor, v, sizeof(v)) == 1) {
		json_object_set_new(surv, "sex", json_string(v));
	}
	if (form_enum(body, "displacement", &ihala__v2__displacement__descriptor, v, sizeof(v)) ==
	    1) {
		json_object_set_new(surv, "displacement", json_string(v));
	}
	if (form_value(body, "birthYear", v, sizeof(v)) == 0 && v[0] != '\0') {
		if (cli_parse_u64(v, &year) != 0 || year < 1900 || year > 2100) {
			json_decref(surv);
			json_decref(ag);
			return bad_request(c, "the birth year is not a year");
		}
		json_object_set_new(surv, "birthYear", json_integer((json_int_t)year));
	}
	/* the agencies the consent covers: the recipient, and those written (comma or space
	 * separated) */
	json_array_append_new(ag, json_string(to));
	for (tok = strtok_r(agencies, ", ", &save); tok != NULL;
	     tok = strtok_r(NULL, ", ", &save)) {
		if (!id_agency_valid(tok, strlen(tok))) {
			json_decref(surv);
			json_decref(ag);
			return bad_request(c, "the consent names an agency id that is none");
		}
		if (!has_string(ag, tok)) {
			json_array_append_new(ag, json_string(tok));
		}
	}
	svc = form_enums(body, "service", &ihala__v2__service_code__descriptor);
	cats = form_enums(body, "data", &ihala__v2__data_category__descriptor);
	if (svc == NULL || cats == NULL) {
		json_decref(svc);
		json_decref(cats);
		json_decref(surv);
		json_decref(ag);
		return bad_request(c, "not a service code or data category");
	}
	cons = json_pack("{s:b,s:o,s:o}", "given", form_has(body, "given"), "agencies", ag,
	                 "dataCovered", cats);
	if (cons != NULL) {
		if (form_enum(body, "givenBy", &ihala__v2__consent_giver__descriptor, v,
		              sizeof(v)) == 1) {
			json_object_set_new(cons, "givenBy", json_string(v));
		}
		if (form_text(body, "date", text, sizeof(text)) == 0) {
			set_text(cons, "date", text);
		}
		if (form_text(body, "recordedBy", text, sizeof(text)) == 0) {
			set_text(cons, "recordedBy", text);
		}
	}
	ref = json_pack("{s:s,s:s,s:s,s:o,s:o,s:o}", "referralId", rid, "receivingAgency", to,
	                "priority", prio, "services", svc, "survivor", surv, "consent", cons);
	if (ref != NULL) {
		set_text(ref, "reason", reason);
	}
	env = json_pack("{s:s,s:o}", "to", to, "referral", ref);
	referral_path(rid, back, sizeof(back));
	/* refused: the form again, with the broker's sentence (there is no referral to show) */
	return job_run(w, c, WEB_JOB_SUBMIT, env, rid, "referred", back, "/new");
}

/* POST /verify: the auditor's `ihala audit verify`. */
static enum MHD_Result
do_verify(struct web *w, struct MHD_Connection *c, const char *body, const char *unused)
{
	(void)body;
	(void)unused;
	return job_run(w, c, WEB_JOB_VERIFY, NULL, "", "verified", "/audit", NULL);
}

/* POST /lang: the clerk's language, then back to the page it was chosen on ("back": a path
 * of this server, nothing else). */
static enum MHD_Result
do_lang(struct web *w, struct MHD_Connection *c, const char *body, const char *unused)
{
	char v[16], cookie[128], back[3 * ID_MAX + 8];
	const char *lang;

	(void)w;
	(void)unused;
	if (form_value(body, "lang", v, sizeof(v)) != 0 || (lang = catalog_lang(v)) == NULL) {
		return send_text(c, MHD_HTTP_BAD_REQUEST, "bad request: unknown language");
	}
	if (form_value(body, "back", back, sizeof(back)) != 0 || back[0] != '/' || back[1] == '/' ||
	    strspn(back, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                 "0123456789/%._~-") != strlen(back)) {
		snprintf(back, sizeof(back), "/");
	}
	/* the clerk's choice, kept by this browser for a year */
	snprintf(cookie, sizeof(cookie),
	         "ihala_lang=%s; Path=/; Max-Age=31536000; HttpOnly; SameSite=Strict", lang);
	return send_redirect(c, back, cookie);
}

/*
 * What every POST must show before it is done: the session's cookie, a body within
 * BODY_MAX, the session's CSRF token, and (when the browser says one) this server's own
 * Origin. 1 when it may go on; else 0 with the refusal queued in *ret.
 */
static int
post_allowed(struct web *w, struct MHD_Connection *c, const char *url, const struct buf *body,
             enum MHD_Result *ret)
{
	const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
	char tok[WEB_TOKEN_LEN + 2];
	int ok;

	if (!has_session(w, c)) {
		*ret = send_message(c, MHD_HTTP_FORBIDDEN, "session.none");
		return 0;
	}
	if (body->oom) {
		*ret = send_text(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
		return 0;
	}
	ok = origin == NULL ||
	     (strncmp(origin, "http://", 7) == 0 &&
	      (strcasecmp(origin + 7, w->host) == 0 || strcasecmp(origin + 7, w->host_alt) == 0));
	if (ok) {
		ok = form_value(body->p != NULL ? body->p : "", "csrf", tok, sizeof(tok)) == 0;
	}
	if (ok) {
		pthread_mutex_lock(&w->mu);
		ok = token_eq(tok, w->csrf);
		pthread_mutex_unlock(&w->mu);
	}
	if (!ok) {
		cli_warnx("web: security: a POST %s without this session's CSRF token (or from "
		          "another origin) was refused",
		          url);
		*ret = send_message(c, MHD_HTTP_FORBIDDEN, "csrf.bad");
	}
	return ok;
}

static enum MHD_Result
send_asset(struct MHD_Connection *c, const char *url)
{
	const struct web_asset *a = web_asset_find(url + 1);
	const char *type;
	struct MHD_Response *r;
	enum MHD_Result ret;
	size_t n = strlen(url);

	if (a == NULL) {
		return send_message(c, MHD_HTTP_NOT_FOUND, "notfound");
	}
	type = n > 3 && strcmp(url + n - 3, ".js") == 0 ? "text/javascript; charset=utf-8"
	                                                : "text/css; charset=utf-8";
	r = MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
	if (r == NULL) {
		return MHD_NO;
	}
	secure_headers(r);
	MHD_add_response_header(r, "Content-Type", type);
	ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

/* ---- dispatch ---- */

/* The POST actions: those on one referral get its id, checked ("rid"). */
static const struct action {
	const char *url;
	int on_referral;
	enum MHD_Result (*fn)(struct web *w, struct MHD_Connection *c, const char *body,
	                      const char *rid);
} actions[] = {
    {"/accept", 1, do_accept},   {"/decline", 1, do_decline}, {"/progress", 1, do_progress},
    {"/outcome", 1, do_outcome}, {"/note", 1, do_note},       {"/onward", 1, do_onward},
    {"/refer", 0, do_refer},     {"/verify", 0, do_verify},   {"/lang", 0, do_lang},
};

/* ---- dispatch ---- */

/* Per request: the body of a POST as it comes. */
struct req {
	struct buf body;
	int too_big;
};

static enum MHD_Result
do_post(struct web *w, struct MHD_Connection *c, const char *url, struct req *rq)
{
	const struct action *a = NULL;
	const char *body;
	char rid[ID_MAX + 1];
	enum MHD_Result ret;
	size_t i;

	for (i = 0; i < sizeof(actions) / sizeof(actions[0]); i++) {
		if (strcmp(url, actions[i].url) == 0) {
			a = &actions[i];
			break;
		}
	}
	if (a == NULL) {
		return send_message(c, MHD_HTTP_NOT_FOUND, "notfound");
	}
	if (!post_allowed(w, c, url, &rq->body, &ret)) {
		return ret;
	}
	body = rq->body.p != NULL ? rq->body.p : "";
	rid[0] = '\0';
	if (a->on_referral && (form_value(body, "rid", rid, sizeof(rid)) != 0 || !id_valid(rid))) {
		return bad_request(c, "no valid referral id");
	}
	return a->fn(w, c, body, rid);
}

static void
completed(void *cls, struct MHD_Connection *c, void **ctx, enum MHD_RequestTerminationCode toe)
{
	struct req *rq = *ctx;

	(void)cls;
	(void)c;
	(void)toe;
	if (rq != NULL) {
		free(rq->body.p);
		free(rq);
		*ctx = NULL;
	}
}

static enum MHD_Result
handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
       const char *version, const char *upload, size_t *upload_size, void **ctx)
{
	struct web *w = cls;
	const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
	struct req *rq = *ctx;
	int post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;

	(void)version;
	if (post && rq == NULL) {
		if ((rq = calloc(1, sizeof(*rq))) == NULL) {
			return MHD_NO;
		}
		*ctx = rq;
		return MHD_YES;
	}
	if (post && *upload_size > 0) {
		if (rq->body.len + *upload_size > BODY_MAX) {
			rq->too_big = 1;
		} else {
			buf_add(&rq->body, upload, *upload_size);
		}
		*upload_size = 0;
		return MHD_YES;
	}
	/* another name for this address (DNS rebinding) is not us */
	if (host == NULL ||
	    (strcasecmp(host, w->host) != 0 && strcasecmp(host, w->host_alt) != 0)) {
		return send_text(c, MHD_HTTP_FORBIDDEN, "forbidden: unexpected Host");
	}
	if (!post && strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
	    strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
		return send_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed");
	}
	if (!post && strncmp(url, "/static/", 8) == 0) {
		return send_asset(c, url);
	}
	if (!post && strcmp(url, "/favicon.ico") == 0) {
		struct buf none = {NULL, 0, 0, 0};

		return send_buf(c, MHD_HTTP_NO_CONTENT, "text/plain", &none);
	}
	if (!post && strcmp(url, "/login") == 0) {
		return do_login(w, c);
	}
	if (!post) {
		if (!has_session(w, c)) {
			return send_message(c, MHD_HTTP_FORBIDDEN, "session.none");
		}
		if (strcmp(url, "/") == 0) {
			return send_inbox(w, c);
		}
		if (strcmp(url, "/rows") == 0) {
			return send_rows(w, c);
		}
		if (strcmp(url, "/events") == 0) {
			return send_events(w, c);
		}
		if (strncmp(url, "/r/", 3) == 0) {
			return send_referral(w, c, url + 3);
		}
		if (strcmp(url, "/new") == 0) {
			return send_new(w, c);
		}
		if (strcmp(url, "/audit") == 0) {
			return send_audit(w, c);
		}
		return send_message(c, MHD_HTTP_NOT_FOUND, "notfound");
	}
	if (rq->too_big) {
		rq->body.oom = 1; /* refused as too large by post_allowed */
	}
	return do_post(w, c, url, rq);
}

struct httpd *
httpd_start(struct web *w, int fd)
{
	struct httpd *h;

	if ((h = calloc(1, sizeof(*h))) == NULL) {
		return NULL;
	}
	h->w = w;
	h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
	                        NULL, NULL, handle, w, MHD_OPTION_LISTEN_SOCKET, fd,
	                        MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
	                        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
	                        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
	if (h->d == NULL) {
		free(h);
		return NULL;
	}
	return h;
}

void
httpd_stop(struct httpd *h)
{
	if (h == NULL) {
		return;
	}
	MHD_stop_daemon(h->d);
	free(h);
}
