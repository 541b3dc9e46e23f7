/* httpd.c - `ihala web`'s HTTP side (libmicrohttpd): login link, session, CSRF, dispatch. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>

#include "accounts.h"
#include "cli.h"
#include "clock.h"
#include "error.h"
#include "frame.h"
#include "id.h"
#include "ihala.pb-c.h"
#include "pbjson.h"
#include "sessions.h"
#include "web.h"
#include "webhttp.h"

/* A form body larger than this is refused (the new-referral form is the largest). */
#define BODY_MAX 32768
/* An event stream says something at least this often, so a dead browser is noticed. */
#define SSE_PING_S 15

static const char csp[] = "default-src 'self'; script-src 'self'; style-src 'self'; "
                          "img-src 'self'; connect-src 'self'; form-action 'self'; "
                          "frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/* HTTPS: TLS 1.3, else 1.2; AEAD ciphers and ECDHE only; the server's order. */
#define TLS_PRIORITIES                                                                             \
	"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:"        \
	"+CHACHA20-POLY1305:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:%SERVER_PRECEDENCE"

struct httpd {
	struct MHD_Daemon *d;
	struct web *w;
};

/* The request's session, found by has_session (each connection has its own thread:
 * MHD_USE_THREAD_PER_CONNECTION): its CSRF token, which the forms carry, and its clerk id,
 * which the answers carry. */
static __thread struct {
	char csrf[WEB_TOKEN_LEN + 1];
	char clerk[ID_CLERK_MAX + 1];
	char stamp[SESSIONS_STAMP_LEN + 1];
} cur;

const char *
web_cur_csrf(void)
{
	return cur.csrf;
}

const char *
web_cur_clerk(void)
{
	return cur.clerk;
}

/* ---- a growing text buffer; a failed allocation is remembered and answered 500 ---- */

void
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

void
buf_puts(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

/* Text into HTML (element content and quoted attribute values): & < > " ' escaped. */
void
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

/* Served over HTTPS (set once by httpd_start): browsers are told to keep to it. */
static int serving_tls;

static void
secure_headers(struct MHD_Response *r)
{
	if (serving_tls) {
		MHD_add_response_header(r, "Strict-Transport-Security", "max-age=31536000");
	}
	MHD_add_response_header(r, "Content-Security-Policy", csp);
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	/* not "no-referrer": a browser then sends "Origin: null" with the forms' POSTs */
	MHD_add_response_header(r, "Referrer-Policy", "same-origin");
	MHD_add_response_header(r, "Cache-Control", "no-store");
}

/* Send b (its text is taken) with status and type. */
enum MHD_Result
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

enum MHD_Result
send_text(struct MHD_Connection *c, unsigned status, const char *text)
{
	struct buf b = {NULL, 0, 0, 0};

	buf_puts(&b, text);
	buf_puts(&b, "\n");
	return send_buf(c, status, "text/plain; charset=utf-8", &b);
}

/* 303 to `location`, with up to one Set-Cookie. */
enum MHD_Result
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
const char *
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
	struct account *acc;
	struct accounts a;
	char why[512], stamp[ACCOUNTS_STAMP_LEN + 1];
	int ok;

	memset(&cur, 0, sizeof(cur));
	if (!sessions_find(w->sessions, v, clock_mono_ms(), cur.csrf, cur.clerk, cur.stamp)) {
		return 0;
	}
	if (strcmp(cur.clerk, ACCOUNTS_LOCAL_CLERK) == 0) {
		return 1;
	}
	/* a clerk removed (web-user remove), or given a new password (web-user passwd), is out at
	 * once, with every session */
	if (accounts_load(w->users_path, &a, why, sizeof(why)) != 0) {
		cli_warnx("web: %s", why);
		ok = 0;
	} else {
		if ((ok = (acc = accounts_find_clerk(&a, cur.clerk)) != NULL)) {
			accounts_stamp(acc, stamp);
			ok = strcmp(stamp, cur.stamp) == 0;
		}
		accounts_release(&a);
	}
	if (!ok) {
		sessions_close(w->sessions, v);
		memset(&cur, 0, sizeof(cur));
	}
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
int
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

int
form_value(const char *body, const char *name, char *out, size_t outlen)
{
	return form_nth(body, name, 0, out, outlen);
}

/* Whether the body has a field `name` at all (its value may be empty). */
int
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

/* A new session of `clerk` (its cookie, Secure under TLS), and to the inbox. */
static enum MHD_Result
start_session(struct web *w, struct MHD_Connection *c, const char *clerk, const char *stamp)
{
	char cookie[160], tok[WEB_TOKEN_LEN + 1], csrf[WEB_TOKEN_LEN + 1];

	if (sessions_open(w->sessions, clerk, stamp, clock_mono_ms(), tok, csrf) != 0) {
		return send_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "no randomness for a session");
	}
	snprintf(cookie, sizeof(cookie), "ihala_session=%s; Path=/; HttpOnly; SameSite=Strict%s",
	         tok, w->tls ? "; Secure" : "");
	return send_redirect(c, "/", cookie);
}

/* The login form (name, password), with a message (a catalog key) or none. */
static enum MHD_Result
send_login(struct web *w, struct MHD_Connection *c, unsigned status, const char *key)
{
	const char *lang = request_lang(c);
	struct buf b = {NULL, 0, 0, 0};

	page_head(&b, lang, catalog_text(lang, "login.title"));
	buf_puts(&b, "<body>\n<main class=\"login\">\n<h1>");
	buf_esc(&b, catalog_text(lang, "login.title"));
	buf_puts(&b, "</h1>\n");
	if (key != NULL) {
		buf_puts(&b, "<p class=\"message err\" id=\"flash\" role=\"alert\">");
		buf_esc(&b, catalog_text(lang, key));
		buf_puts(&b, "</p>\n");
	}
	buf_puts(&b, "<form method=\"post\" action=\"/login\" class=\"login\">"
	             "<input type=\"hidden\" name=\"csrf\" value=\"");
	buf_esc(&b, w->login_form);
	buf_puts(&b, "\"><p><label>");
	buf_esc(&b, catalog_text(lang, "login.name"));
	buf_puts(&b, " <input type=\"text\" name=\"name\" autocomplete=\"username\" "
	             "maxlength=\"32\" required autofocus dir=\"ltr\"></label></p><p><label>");
	buf_esc(&b, catalog_text(lang, "login.password"));
	buf_puts(&b, " <input type=\"password\" name=\"password\" "
	             "autocomplete=\"current-password\" maxlength=\"1024\" required></label></p>"
	             "<p><button type=\"submit\">");
	buf_esc(&b, catalog_text(lang, "login.submit"));
	buf_puts(&b, "</button></p></form>\n</main>\n</body>\n</html>\n");
	return send_buf(c, status, "text/html; charset=utf-8", &b);
}

/* GET /login: ?token= the one-time link (loopback), else the form when there are accounts. */
static enum MHD_Result
do_login(struct web *w, struct MHD_Connection *c)
{
	const char *tok = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token");
	int ok;

	if (tok == NULL && w->accounts) {
		return send_login(w, c, MHD_HTTP_OK, NULL);
	}
	pthread_mutex_lock(&w->mu);
	ok = !w->login_used && token_eq(tok, w->login_token);
	if (ok) {
		/* once: a link seen later (history, a shoulder) opens nothing */
		w->login_used = 1;
	}
	pthread_mutex_unlock(&w->mu);
	if (!ok) {
		cli_warnx("web: security: a login link that is wrong or was used already was "
		          "refused");
		return send_message(c, MHD_HTTP_FORBIDDEN, "login.bad");
	}
	return start_session(w, c, ACCOUNTS_LOCAL_CLERK, "");
}

/* POST /logout: the session ends, its cookie is dropped, and back to the login form. */
static enum MHD_Result
do_logout(struct web *w, struct MHD_Connection *c, const char *body, const char *unused)
{
	char cookie[128];

	(void)body;
	(void)unused;
	sessions_close(w->sessions,
	               MHD_lookup_connection_value(c, MHD_COOKIE_KIND, "ihala_session"));
	snprintf(cookie, sizeof(cookie),
	         "ihala_session=; Path=/; Max-Age=0; HttpOnly; "
	         "SameSite=Strict%s",
	         w->tls ? "; Secure" : "");
	return send_redirect(c, w->accounts ? "/login" : "/", cookie);
}

/* The client's address as text, for the failed-login throttle and the log. */
static void
client_addr(struct MHD_Connection *c, char *buf, size_t len)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;

	snprintf(buf, len, "?");
	if (sa != NULL && sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, buf,
		          (socklen_t)len);
	} else if (sa != NULL && sa->sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
		          buf, (socklen_t)len);
	}
}

static int origin_ok(struct web *w, struct MHD_Connection *c);

/* POST /login: a clerk's name and password. One refusal for a wrong name and a wrong
 * password; each costs a second, and an address that failed too often waits. */
static enum MHD_Result
do_password(struct web *w, struct MHD_Connection *c, const char *body)
{
	char name[ACCOUNTS_NAME_MAX + 2], pw[ACCOUNTS_PASSWORD_MAX + 2], tok[WEB_TOKEN_LEN + 2],
	    addr[INET6_ADDRSTRLEN + 1], clerk[ID_CLERK_MAX + 1], why[512],
	    stamp[ACCOUNTS_STAMP_LEN + 1];
	struct accounts a;
	uint64_t wait;
	int ok = 0;

	if (!w->accounts) {
		return send_message(c, MHD_HTTP_NOT_FOUND, "notfound");
	}
	if (!origin_ok(w, c) || form_value(body, "csrf", tok, sizeof(tok)) != 0 ||
	    !token_eq(tok, w->login_form)) {
		cli_warnx("web: security: a login without the login form's token was refused");
		return send_message(c, MHD_HTTP_FORBIDDEN, "csrf.bad");
	}
	client_addr(c, addr, sizeof(addr));
	if ((wait = sessions_throttled(w->sessions, addr, clock_mono_ms())) > 0) {
		cli_warnx("web: security: a login from %s was refused: too many failed attempts "
		          "(%llu s to wait)",
		          addr, (unsigned long long)(wait + 999) / 1000);
		return send_login(w, c, MHD_HTTP_TOO_MANY_REQUESTS, "login.throttled");
	}
	if (form_value(body, "name", name, sizeof(name)) != 0 ||
	    form_value(body, "password", pw, sizeof(pw)) != 0) {
		name[0] = '\0';
		pw[0] = '\0';
	}
	/* read at each login: web-user add and remove apply at once */
	pthread_mutex_lock(&w->hash_mu);
	if (accounts_load(w->users_path, &a, why, sizeof(why)) != 0) {
		cli_warnx("web: %s", why);
	} else {
		ok = name[0] != '\0' && accounts_verify(&a, name, pw, strlen(pw), clerk);
		if (ok) {
			accounts_stamp(accounts_find(&a, name), stamp);
		}
		accounts_release(&a);
	}
	pthread_mutex_unlock(&w->hash_mu);
	OPENSSL_cleanse(pw, sizeof(pw));
	if (!ok) {
		sessions_login_failed(w->sessions, addr, clock_mono_ms());
		cli_warnx("web: security: a failed login from %s", addr);
		sleep(1);
		return send_login(w, c, MHD_HTTP_FORBIDDEN, "login.failed");
	}
	sessions_login_ok(w->sessions, addr);
	cli_warnx("web: clerk %s logged in from %s", clerk, addr);
	return start_session(w, c, clerk, stamp);
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
	         "ihala_lang=%s; Path=/; Max-Age=31536000; HttpOnly; SameSite=Strict%s", lang,
	         w->tls ? "; Secure" : "");
	return send_redirect(c, back, cookie);
}

/* The Origin the browser says, if it says one, is this server. */
static int
origin_ok(struct web *w, struct MHD_Connection *c)
{
	const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
	const char *scheme = w->tls ? "https://" : "http://";
	size_t n = strlen(scheme);

	return origin == NULL ||
	       (strncmp(origin, scheme, n) == 0 &&
	        (strcasecmp(origin + n, w->host) == 0 || strcasecmp(origin + n, w->host_alt) == 0));
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
	ok = origin_ok(w, c) &&
	     form_value(body->p != NULL ? body->p : "", "csrf", tok, sizeof(tok)) == 0 &&
	     token_eq(tok, cur.csrf);
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
    {"/logout", 0, do_logout},
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
	if (strcmp(url, "/login") == 0) {
		if (!post) {
			return do_login(w, c);
		}
		if (rq->too_big || rq->body.oom) {
			return send_text(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
		}
		return do_password(w, c, rq->body.p != NULL ? rq->body.p : "");
	}
	if (!has_session(w, c)) {
		if (w->accounts && !post && strcmp(url, "/") == 0) {
			return send_redirect(c, "/login", NULL);
		}
		return send_message(c, MHD_HTTP_FORBIDDEN, "session.none");
	}
	if (!post) {
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
			return send_new(w, c, NULL);
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
	if (w->tls && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
		cli_warnx("web: this libmicrohttpd was built without TLS");
		free(h);
		return NULL;
	}
	serving_tls = w->tls;
	if (w->tls) {
		h->d = MHD_start_daemon(
		    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_TLS,
		    0, NULL, NULL, handle, w, MHD_OPTION_LISTEN_SOCKET, fd,
		    MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_CONNECTION_TIMEOUT,
		    (unsigned)120, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
		    MHD_OPTION_HTTPS_MEM_KEY, w->tls_key, MHD_OPTION_HTTPS_MEM_CERT, w->tls_cert,
		    MHD_OPTION_HTTPS_PRIORITIES, TLS_PRIORITIES, MHD_OPTION_END);
	} else {
		h->d = MHD_start_daemon(
		    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL,
		    handle, w, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT,
		    (unsigned)64, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
		    MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
	}
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
