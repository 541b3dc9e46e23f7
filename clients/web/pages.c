/* pages.c - `ihala web`'s pages as HTML: the inbox, a referral, DMA's new referral, the
 * auditor's log; every value escaped, every text from the catalogs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "accounts.h"
#include "cli.h"
#include "error.h"
#include "frame.h"
#include "id.h"
#include "ihala.pb-c.h"
#include "pbjson.h"
#include "web.h"
#include "webhttp.h"

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
void
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
	(void)w; /* the session's CSRF token is the request's */
	buf_puts(b, "<form method=\"post\" action=\"");
	buf_puts(b, action);
	buf_puts(b, "\" class=\"");
	buf_puts(b, cls);
	buf_puts(b, "\">");
	hidden(b, "csrf", web_cur_csrf());
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
/* The form a refused POST sent (its body, borrowed for one page), whose values the fields below
 * show again; NULL: empty fields. Each connection has its own thread. */
static __thread const char *refill;

/* Whether `refill` gives `name` the value `v` (one of its values, for checkboxes). */
static int
refilled(const char *name, const char *v)
{
	char got[64];
	size_t n;

	for (n = 0; refill != NULL && form_nth(refill, name, n, got, sizeof(got)) == 0; n++) {
		if (strcmp(got, v) == 0) {
			return 1;
		}
	}
	return 0;
}

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
		buf_puts(b, refilled(name, v) ? "\" selected>" : "\">");
		esc_value(b, lang, prefix, v);
		buf_puts(b, "</option>");
	}
	buf_puts(b, "</select></div>");
}

/* A fieldset of labelled checkboxes, one per enum value (0 left out); those in `refill`
 * checked. */
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
		buf_puts(b, refilled(name, v) ? "\" checked> <label for=\"" : "\"> <label for=\"");
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
	char n[32], *v = NULL;
	size_t vlen = 4096;

	if (refill != NULL && form_has(refill, name) && (v = malloc(vlen)) != NULL &&
	    form_value(refill, name, v, vlen) != 0) {
		v[0] = '\0';
	}
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
	if (strcmp(type, "textarea") == 0) {
		buf_puts(b, " rows=\"3\">");
		buf_esc(b, v != NULL ? v : "");
		buf_puts(b, "</textarea></div>");
	} else {
		if (v != NULL) {
			buf_puts(b, " value=\"");
			buf_esc(b, v);
			buf_puts(b, "\"");
		}
		buf_puts(b, "></div>");
	}
	free(v);
}

static void
check_input(struct buf *b, const char *lang, const char *name, const char *id, const char *key,
            int checked)
{
	buf_puts(b, "<div class=\"field check\"><input type=\"checkbox\" name=\"");
	buf_puts(b, name);
	buf_puts(b, "\" value=\"1\" id=\"");
	buf_esc(b, id);
	buf_puts(b,
	         checked || (refill != NULL && form_has(refill, name)) ? "\" checked> " : "\"> ");
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

void
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
enum MHD_Result
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
	hidden(b, "csrf", web_cur_csrf());
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
	buf_puts(b, "</form>\n");
	if (strcmp(web_cur_clerk(), ACCOUNTS_LOCAL_CLERK) != 0) {
		/* a clerk's own session (not the one-time link's) can be ended here */
		buf_puts(b, "<form method=\"post\" action=\"/logout\" class=\"logout\">");
		hidden(b, "csrf", web_cur_csrf());
		buf_puts(b, "<button type=\"submit\" id=\"logout\">");
		buf_esc(b, catalog_text(lang, "logout"));
		buf_puts(b, "</button></form>\n");
	}
	buf_puts(b, "<p id=\"live\" class=\"off\"><span class=\"on\">");
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

enum MHD_Result
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
enum MHD_Result
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

/* GET /new: the new-referral form, with the survivor's consent record; after a refused POST
 * /refer, with what it sent (`body`, else NULL) in its fields, escaped. */
enum MHD_Result
send_new(struct web *w, struct MHD_Connection *c, const char *body)
{
	const char *lang = request_lang(c);
	struct buf b = {NULL, 0, 0, 0};

	pthread_mutex_lock(&w->mu);
	refill = body;
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
	refill = NULL;
	pthread_mutex_unlock(&w->mu);
	return page_end(c, &b, MHD_HTTP_OK);
}

/* ---- the auditor's page ---- */

/* GET /audit: the log's size, its last verified checkpoint, Verify, and the newest entries'
 * clear parts (as the last verify read them). */
enum MHD_Result
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

enum MHD_Result
send_rows(struct web *w, struct MHD_Connection *c)
{
	const char *lang = request_lang(c);
	struct buf b = {NULL, 0, 0, 0};

	pthread_mutex_lock(&w->mu);
	render_rows(&b, w, lang);
	pthread_mutex_unlock(&w->mu);
	return send_buf(c, MHD_HTTP_OK, "text/html; charset=utf-8", &b);
}
