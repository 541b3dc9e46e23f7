/* conf.c - one idea: the table-driven INI config parser (over libinih), with FILE:LINE errors. */
#define _GNU_SOURCE /* asprintf, vasprintf */
#include "conf.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "error.h"
#include "id.h"
#include "suggest.h"

/* Bounds on what one file may hold; far above any real config. */
#define CONF_MAX_SECTIONS 4096
#define CONF_MAX_SECTION_NAME 64

struct section_rec {
	char *name;          /* "broker", "agency.moh" */
	const char *pattern; /* the rows' section string this section takes ("agency.*") */
	int line;            /* header line; 0 while not seen in the file */
	void *base;          /* where its rows write */
	int *lines;          /* per table row: line the option was set on, 0 if not */
};

struct conf_file {
	char *path;    /* as given, for messages */
	char *dir;     /* absolute directory of the file */
	char *abspath; /* dir + "/" + the file's name */
	const struct conf_option *options;
	size_t noptions;
	struct section_rec *secs;
	size_t nsecs, capsecs;
};

#define CUR_NONE (-1) /* before any section header */
#define CUR_SKIP (-2) /* in a refused section: its options are ignored */

struct parser {
	const struct conf_spec *spec;
	struct conf_file *cf;
	struct conf_errors *errs;
	FILE *fp;
	int lineno;
	int err_line; /* last line an error was reported on */
	long cur;     /* index into cf->secs, or CUR_NONE / CUR_SKIP */
	int nomem;
};

/* ---- errors ----------------------------------------------------------- */

void
conf_errors_init(struct conf_errors *errs)
{
	memset(errs, 0, sizeof(*errs));
}

void
conf_errors_release(struct conf_errors *errs)
{
	size_t i;

	for (i = 0; i < errs->n; i++) {
		free(errs->v[i].file);
		free(errs->v[i].msg);
	}
	free(errs->v);
	conf_errors_init(errs);
}

static void
errors_vadd(struct conf_errors *errs, const char *file, int line, const char *fmt, va_list ap)
{
	struct conf_error *e;
	char *msg = NULL, *f = NULL;

	if (errs->n >= CONF_MAX_ERRORS) {
		errs->dropped++;
		return;
	}
	if (errs->n == errs->cap) {
		size_t cap = errs->cap ? errs->cap * 2 : 8;
		struct conf_error *v = realloc(errs->v, cap * sizeof(*v));

		if (v == NULL) {
			errs->dropped++;
			return;
		}
		errs->v = v;
		errs->cap = cap;
	}
	if (vasprintf(&msg, fmt, ap) < 0 || (f = strdup(file != NULL ? file : "?")) == NULL) {
		if (msg != NULL) {
			free(msg);
		}
		errs->dropped++;
		return;
	}
	e = &errs->v[errs->n++];
	e->file = f;
	e->line = line;
	e->msg = msg;
}

void
conf_errors_add(struct conf_errors *errs, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	errors_vadd(errs, file, line, fmt, ap);
	va_end(ap);
}

void
conf_errors_print(const struct conf_errors *errs, FILE *fp)
{
	size_t order[CONF_MAX_ERRORS], i, j;

	/* By line (a stable insertion sort); errors of no line (0) last. */
	for (i = 0; i < errs->n; i++) {
		unsigned key = (unsigned)errs->v[i].line - 1u;

		for (j = i; j > 0 && (unsigned)errs->v[order[j - 1]].line - 1u > key; j--) {
			order[j] = order[j - 1];
		}
		order[j] = i;
	}
	for (i = 0; i < errs->n; i++) {
		const struct conf_error *e = &errs->v[order[i]];

		fprintf(fp, "%s:%d: %s\n", e->file, e->line, e->msg);
	}
	if (errs->dropped > 0) {
		fprintf(fp, "%s:0: %zu more errors not shown\n",
		        errs->n > 0 ? errs->v[0].file : "config", errs->dropped);
	}
}

size_t
conf_errors_count(const struct conf_errors *errs)
{
	return errs->n + errs->dropped;
}

static void perr(struct parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
perr(struct parser *p, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	errors_vadd(p->errs, p->cf->path, line, fmt, ap);
	va_end(ap);
	if (line > 0) {
		p->err_line = line;
	}
}

void
conf_report(struct conf_errors *errs, const struct conf_file *cf, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	errors_vadd(errs, cf != NULL ? cf->path : "config", line, fmt, ap);
	va_end(ap);
}

/* ---- small helpers ---------------------------------------------------- */

const char *
conf_format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "TGMK";
	int i;

	for (i = 0; i < 4; i++) {
		uint64_t m = 1ULL << (10 * (4 - i));

		if (bytes != 0 && bytes % m == 0) {
			snprintf(buf, len, "%" PRIu64 "%c", bytes / m, units[i]);
			return buf;
		}
	}
	snprintf(buf, len, "%" PRIu64, bytes);
	return buf;
}

const char *
conf_format_duration(uint64_t ms, char *buf, size_t len)
{
	static const struct {
		uint64_t ms;
		const char *unit;
	} u[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
	size_t i;

	if (ms == 0) {
		snprintf(buf, len, "0");
		return buf;
	}
	for (i = 0; i < sizeof(u) / sizeof(u[0]); i++) {
		if (ms % u[i].ms == 0) {
			snprintf(buf, len, "%" PRIu64 "%s", ms / u[i].ms, u[i].unit);
			return buf;
		}
	}
	snprintf(buf, len, "%" PRIu64 "ms", ms);
	return buf;
}

int
conf_valid_hostname(void *field, char *why, size_t whylen)
{
	const char *s = *(char **)field;
	size_t n = strlen(s), i;

	for (i = 0; i < n; i++) {
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '-') {
			snprintf(why, whylen, "a DNS name or an IP address is expected");
			return -1;
		}
	}
	if (n > 253) {
		snprintf(why, whylen, "at most 253 characters");
		return -1;
	}
	return 0;
}

int
conf_valid_agency_id(void *field, char *why, size_t whylen)
{
	const char *s = *(char **)field;

	if (!id_agency_valid(s, strlen(s))) {
		snprintf(why, whylen, "an agency id is " ID_AGENCY_RULE);
		return -1;
	}
	return 0;
}

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
static int
valid_utf8(const unsigned char *s)
{
	while (*s != '\0') {
		unsigned c = *s;
		int n;
		unsigned cp, min;

		if (c < 0x80) {
			s++;
			continue;
		} else if ((c & 0xE0) == 0xC0) {
			n = 1;
			cp = c & 0x1F;
			min = 0x80;
		} else if ((c & 0xF0) == 0xE0) {
			n = 2;
			cp = c & 0x0F;
			min = 0x800;
		} else if ((c & 0xF8) == 0xF0) {
			n = 3;
			cp = c & 0x07;
			min = 0x10000;
		} else {
			return 0;
		}
		s++;
		while (n-- > 0) {
			if ((*s & 0xC0) != 0x80) {
				return 0;
			}
			cp = (cp << 6) | (*s & 0x3F);
			s++;
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
			return 0;
		}
	}
	return 1;
}

static int
has_control(const char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f) {
			return 1;
		}
	}
	return 0;
}

static int
is_wild(const char *section)
{
	size_t n = strlen(section);

	return n >= 2 && section[n - 2] == '.' && section[n - 1] == '*';
}

/* For a "prefix.*" row section and a section name: the suffix, or NULL. */
static const char *
wild_suffix(const char *pattern, const char *name)
{
	size_t n = strlen(pattern) - 1; /* keeps the dot */

	if (strncmp(pattern, name, n) == 0 && name[n] != '\0') {
		return name + n;
	}
	return NULL;
}

/* ---- sections --------------------------------------------------------- */

static struct section_rec *
section_add(struct parser *p, const char *name, const char *pattern, void *base)
{
	struct conf_file *cf = p->cf;
	struct section_rec *r;

	if (cf->nsecs == cf->capsecs) {
		size_t cap = cf->capsecs ? cf->capsecs * 2 : 16;
		struct section_rec *v = realloc(cf->secs, cap * sizeof(*v));

		if (v == NULL) {
			return NULL;
		}
		cf->secs = v;
		cf->capsecs = cap;
	}
	r = &cf->secs[cf->nsecs];
	memset(r, 0, sizeof(*r));
	r->name = strdup(name);
	r->lines = calloc(cf->noptions ? cf->noptions : 1, sizeof(int));
	if (r->name == NULL || r->lines == NULL) {
		free(r->name);
		free(r->lines);
		return NULL;
	}
	r->pattern = pattern;
	r->base = base;
	cf->nsecs++;
	return r;
}

static long
section_find(const struct conf_file *cf, const char *name)
{
	size_t i;

	for (i = 0; i < cf->nsecs; i++) {
		if (strcmp(cf->secs[i].name, name) == 0) {
			return (long)i;
		}
	}
	return -1;
}

static void
unknown_section(struct parser *p, const char *name)
{
	const struct conf_option *o = p->spec->options;
	char hint[CONF_MAX_SECTION_NAME * 2 + 32] = "";
	unsigned best = SUGGEST_FAR;
	const char *dot = strchr(name, '.');
	size_t i;

	for (i = 0; i < p->spec->noptions; i++) {
		if (!is_wild(o[i].section)) {
			if (suggest_near(name, o[i].section, &best)) {
				snprintf(hint, sizeof(hint), " (did you mean [%s]?)", o[i].section);
			}
		} else if (dot != NULL) {
			char prefix[CONF_MAX_SECTION_NAME + 1];
			char typed[CONF_MAX_SECTION_NAME + 1];
			size_t pl = strlen(o[i].section) - 2, tl = (size_t)(dot - name);

			if (pl > CONF_MAX_SECTION_NAME || tl > CONF_MAX_SECTION_NAME) {
				continue;
			}
			memcpy(prefix, o[i].section, pl);
			prefix[pl] = '\0';
			memcpy(typed, name, tl);
			typed[tl] = '\0';
			if (suggest_near(typed, prefix, &best)) {
				snprintf(hint, sizeof(hint), " (did you mean [%s%s]?)", prefix,
				         dot);
			}
		}
	}
	perr(p, p->lineno, "unknown section [%s]%s", name, hint);
}

/* A "[name]" line: checks it and makes it the current section. */
static void
section_header(struct parser *p, const char *s)
{
	const struct conf_option *o = p->spec->options;
	const char *end = strchr(s, ']'), *a, *b, *t;
	char name[CONF_MAX_SECTION_NAME + 1];
	size_t i, len;
	long idx;

	p->cur = CUR_SKIP;
	if (end == NULL) {
		perr(p, p->lineno, "missing ']' in section header");
		return;
	}
	for (t = end + 1; *t == ' ' || *t == '\t'; t++) {
	}
	if (*t != '\0' && *t != '#' && *t != ';') {
		perr(p, p->lineno, "unexpected text after section header");
		return;
	}
	for (a = s + 1; *a == ' ' || *a == '\t'; a++) {
	}
	for (b = end; b > a && (b[-1] == ' ' || b[-1] == '\t'); b--) {
	}
	len = (size_t)(b - a);
	if (len == 0) {
		perr(p, p->lineno, "empty section name");
		return;
	}
	if (len > CONF_MAX_SECTION_NAME) {
		perr(p, p->lineno, "section name is too long (at most %d bytes)",
		     CONF_MAX_SECTION_NAME);
		return;
	}
	memcpy(name, a, len);
	name[len] = '\0';
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (!isalnum(c) && c != '.' && c != '_' && c != '-') {
			perr(p, p->lineno, "invalid character in section name [%s]", name);
			return;
		}
	}

	idx = section_find(p->cf, name);
	if (idx >= 0 && p->cf->secs[idx].line > 0) {
		perr(p, p->lineno, "duplicate section [%s] (first at line %d)", name,
		     p->cf->secs[idx].line);
		return;
	}
	if (idx >= 0) {
		/* a fixed section, made up-front */
		p->cf->secs[idx].line = p->lineno;
		p->cur = idx;
		return;
	}
	for (i = 0; i < p->spec->noptions; i++) {
		const char *suffix;
		char why[160] = "";
		void *base;
		struct section_rec *r;

		if (!is_wild(o[i].section) || (suffix = wild_suffix(o[i].section, name)) == NULL) {
			continue;
		}
		if (p->cf->nsecs >= CONF_MAX_SECTIONS) {
			perr(p, p->lineno, "too many sections (at most %d)", CONF_MAX_SECTIONS);
			return;
		}
		base = p->spec->open_section == NULL
		           ? NULL
		           : p->spec->open_section(p->spec->user, name, suffix, why, sizeof(why));
		if (base == NULL) {
			perr(p, p->lineno, "invalid section [%s]: %s", name,
			     why[0] != '\0' ? why : "not accepted");
			return;
		}
		r = section_add(p, name, o[i].section, base);
		if (r == NULL) {
			p->nomem = 1;
			return;
		}
		r->line = p->lineno;
		p->cur = (long)(p->cf->nsecs - 1);
		return;
	}
	unknown_section(p, name);
}

/* ---- the line reader handed to libinih ---------------------------------- */

/*
 * libinih passes no line number to the handler (Debian's library is built
 * without INI_HANDLER_LINENO), truncates long lines and section names, and
 * reports only the first syntax error. So this reader reads each line itself,
 * counts lines, handles section headers and refuses malformed lines (with
 * their line number), and hands libinih only clean "name = value" lines;
 * everything else becomes an empty comment line.
 */
static char *
reader(char *str, int num, void *stream)
{
	struct parser *p = stream;
	char buf[CONF_MAX_LINE + 2];
	size_t len = 0, i;
	int c, nul = 0, toolong = 0;
	char *s;

	if (num < 4) {
		return NULL;
	}
	c = getc(p->fp);
	if (c == EOF) {
		return NULL;
	}
	for (; c != EOF && c != '\n'; c = getc(p->fp)) {
		if (c == '\0') {
			nul = 1;
		}
		if (len < sizeof(buf) - 1) {
			buf[len++] = (char)c;
		} else {
			toolong = 1;
		}
	}
	buf[len] = '\0';
	p->lineno++;
	if (len > 0 && buf[len - 1] == '\r') {
		buf[--len] = '\0';
	}
	s = buf;
	if (p->lineno == 1 && len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
		s += 3;
	}
	while (*s == ' ' || *s == '\t') {
		s++;
	}
	/* Reported problems and non-option lines go to libinih as comments. */
	memcpy(str, "#\n", 3);
	if (nul) {
		perr(p, p->lineno, "line contains a NUL byte");
		return str;
	}
	len = strlen(s);
	if (toolong || len > CONF_MAX_LINE || len + 3 > (size_t)num) {
		perr(p, p->lineno, "line is too long (at most %d bytes)",
		     CONF_MAX_LINE < num - 3 ? CONF_MAX_LINE : num - 3);
		return str;
	}
	if (*s == '\0' || *s == '#' || *s == ';') {
		return str;
	}
	if (*s == '[') {
		section_header(p, s);
		return str;
	}
	/* As libinih splits: at the first '=' or ':', unless a " ;" comment comes first. */
	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] == '=' || s[i] == ':') {
			break;
		}
		if (s[i] == ';' && i > 0 && isspace((unsigned char)s[i - 1])) {
			i = len;
			break;
		}
	}
	if (i >= len) {
		perr(p, p->lineno, "expected 'name = value' or '[section]'");
		return str;
	}
	memcpy(str, s, len);
	str[len] = '\n';
	str[len + 1] = '\0';
	return str;
}

/* ---- values ----------------------------------------------------------- */

static int
parse_digits(const char *s, uint64_t *out, const char **end)
{
	char *e;
	unsigned long long v;

	if (!isdigit((unsigned char)*s)) {
		return -1;
	}
	errno = 0;
	v = strtoull(s, &e, 10);
	if (errno == ERANGE) {
		return 1; /* too large */
	}
	if (errno != 0 || e == s) {
		return -1;
	}
	*out = v;
	*end = e;
	return 0;
}

static int
mul_check(uint64_t *v, uint64_t m)
{
	if (*v > UINT64_MAX / m) {
		return 1;
	}
	*v *= m;
	return 0;
}

static void
range_error(struct parser *p, int line, const struct conf_option *o, const char *text)
{
	char a[32], b[32];

	switch (o->type) {
	case CONF_SIZE:
		conf_format_size(o->min, a, sizeof(a));
		conf_format_size(o->max, b, sizeof(b));
		break;
	case CONF_DURATION:
		conf_format_duration(o->min, a, sizeof(a));
		conf_format_duration(o->max, b, sizeof(b));
		break;
	default:
		snprintf(a, sizeof(a), "%" PRIu64, o->min);
		snprintf(b, sizeof(b), "%" PRIu64, o->max);
		break;
	}
	perr(p, line, "value %s for '%s' is out of range (%s..%s)", text, o->name, a, b);
}

/* 0 parsed, -1 malformed, 1 out of range (of uint64) */
static int
parse_size(const char *s, uint64_t *out)
{
	const char *e;
	uint64_t v;
	int r = parse_digits(s, &v, &e);

	if (r != 0) {
		return r;
	}
	if (*e != '\0') {
		int shift;

		switch (toupper((unsigned char)*e)) {
		case 'K':
			shift = 10;
			break;
		case 'M':
			shift = 20;
			break;
		case 'G':
			shift = 30;
			break;
		case 'T':
			shift = 40;
			break;
		default:
			return -1;
		}
		if (e[1] != '\0') {
			return -1;
		}
		if (mul_check(&v, 1ULL << shift)) {
			return 1;
		}
	}
	*out = v;
	return 0;
}

int
conf_parse_duration(const char *s, uint64_t *out)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} u[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
	const char *e;
	uint64_t v;
	size_t i;
	int r = parse_digits(s, &v, &e);

	if (r != 0) {
		return r;
	}
	if (*e == '\0') {
		if (v == 0) {
			*out = 0;
			return 0;
		}
		return -2;
	}
	for (i = 0; i < sizeof(u) / sizeof(u[0]); i++) {
		if (strcmp(e, u[i].unit) == 0) {
			if (mul_check(&v, u[i].ms)) {
				return 1;
			}
			*out = v;
			return 0;
		}
	}
	return -1;
}

/* tcp://HOST:PORT; returns NULL when valid, else the reason. */
static const char *
check_endpoint(const char *s)
{
	const char *h, *colon, *q;
	uint64_t port;
	const char *e;
	size_t hl;

	if (strncmp(s, "tcp://", 6) != 0) {
		return "expected tcp://HOST:PORT";
	}
	h = s + 6;
	if (*h == '[') {
		const char *close = strchr(h, ']');

		if (close == NULL || close == h + 1 || close[1] != ':') {
			return "expected tcp://[IPV6]:PORT";
		}
		for (q = h + 1; q < close; q++) {
			if (!isxdigit((unsigned char)*q) && *q != ':' && *q != '.') {
				return "invalid IPv6 address";
			}
		}
		colon = close + 1;
	} else {
		colon = strrchr(h, ':');
		if (colon == NULL || colon == h) {
			return "expected tcp://HOST:PORT";
		}
		hl = (size_t)(colon - h);
		if (hl > 253) {
			return "host name is too long";
		}
		if (!(hl == 1 && *h == '*')) {
			for (q = h; q < colon; q++) {
				if (!isalnum((unsigned char)*q) && *q != '.' && *q != '-') {
					return "invalid character in host name";
				}
			}
		}
	}
	if (parse_digits(colon + 1, &port, &e) != 0 || *e != '\0') {
		return "expected a port number after ':'";
	}
	if (port < 1 || port > 65535) {
		return "port must be 1..65535";
	}
	return NULL;
}

static char *
resolve_path(const struct conf_file *cf, const char *v)
{
	char *out;

	if (v[0] == '/') {
		return strdup(v);
	}
	if (asprintf(&out, "%s/%s", cf->dir, v) < 0) {
		return NULL;
	}
	return out;
}

/* Checks a file path; reports and returns -1 when refused. */
static int
check_file(struct parser *p, int line, const struct conf_option *o, const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd < 0) {
		if (errno == ENOENT || errno == ENOTDIR) {
			perr(p, line, "file '%s' for '%s' does not exist", path, o->name);
		} else if (errno == EACCES) {
			perr(p, line, "file '%s' for '%s' is not readable (check its permissions)",
			     path, o->name);
		} else {
			perr(p, line, "cannot open file '%s' for '%s': %s", path, o->name,
			     strerror(errno));
		}
		return -1;
	}
	if (fstat(fd, &st) != 0) {
		perr(p, line, "cannot stat file '%s' for '%s': %s", path, o->name, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	if (!S_ISREG(st.st_mode)) {
		perr(p, line, "'%s' for '%s' is not a regular file", path, o->name);
		return -1;
	}
	if (o->flags & CONF_SECRET) {
		if (st.st_mode & (S_IRGRP | S_IROTH)) {
			perr(p, line,
			     "private key '%s' is readable by group or others (chmod 600 it)",
			     path);
			return -1;
		}
		if (st.st_mode & (S_IRWXG | S_IRWXO)) {
			perr(p, line,
			     "private key '%s' is accessible by group or others (chmod 600 it)",
			     path);
			return -1;
		}
		if (st.st_uid != 0 && st.st_uid != geteuid()) {
			perr(p, line,
			     "private key '%s' is owned by uid %u, not by root or the user running "
			     "this program (uid %u)",
			     path, (unsigned)st.st_uid, (unsigned)geteuid());
			return -1;
		}
	}
	return 0;
}

static int
check_dir(struct parser *p, int line, const struct conf_option *o, const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		if ((errno == ENOENT) && (o->flags & CONF_CREATE)) {
			char *parent = strdup(path), *slash;

			if (parent == NULL) {
				p->nomem = 1;
				return -1;
			}
			slash = strrchr(parent, '/');
			if (slash == parent) {
				slash[1] = '\0';
			} else if (slash != NULL) {
				*slash = '\0';
			}
			if (stat(parent, &st) == 0 && S_ISDIR(st.st_mode)) {
				free(parent);
				return 0; /* made at start-up */
			}
			perr(p, line,
			     "directory '%s' for '%s' does not exist, nor does its parent '%s'",
			     path, o->name, parent);
			free(parent);
			return -1;
		}
		if (errno == ENOENT || errno == ENOTDIR) {
			perr(p, line, "directory '%s' for '%s' does not exist", path, o->name);
		} else {
			perr(p, line, "cannot access directory '%s' for '%s': %s", path, o->name,
			     strerror(errno));
		}
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		perr(p, line, "'%s' for '%s' is not a directory", path, o->name);
		return -1;
	}
	return 0;
}

static int
set_string(struct parser *p, void *field, char *s)
{
	char **dst = field;

	if (s == NULL) {
		p->nomem = 1;
		return -1;
	}
	free(*dst);
	*dst = s;
	return 0;
}

/*
 * Converts `text` for row `o` and stores it in `base`. Reports and returns
 * -1 when refused (the field is then left as it was).
 */
static int
set_value(struct parser *p, void *base, const struct conf_option *o, const char *text, int line)
{
	void *field = (char *)base + o->offset;
	char tmp[CONF_MAX_LINE + 1];
	size_t len = strlen(text);
	uint64_t v = 0;
	int r;

	if (len >= 2 && len - 2 < sizeof(tmp) && text[0] == '"' && text[len - 1] == '"') {
		memcpy(tmp, text + 1, len - 2);
		tmp[len - 2] = '\0';
		text = tmp;
	}
	if (!valid_utf8((const unsigned char *)text)) {
		perr(p, line, "value for '%s' is not valid UTF-8", o->name);
		return -1;
	}
	if (has_control(text)) {
		perr(p, line, "value for '%s' contains a control character", o->name);
		return -1;
	}
	if (text[0] == '\0') {
		perr(p, line, "empty value for '%s'", o->name);
		return -1;
	}

	switch (o->type) {
	case CONF_STRING:
		if (set_string(p, field, strdup(text)) != 0) {
			return -1;
		}
		break;
	case CONF_PATH_FILE:
	case CONF_PATH_DIR: {
		char *path = resolve_path(p->cf, text);

		if (path == NULL) {
			p->nomem = 1;
			return -1;
		}
		if (strlen(path) >= PATH_MAX) {
			perr(p, line, "path '%s' for '%s' is too long", text, o->name);
			free(path);
			return -1;
		}
		if ((o->flags & CONF_SECRET) && (p->spec->flags & CONF_SPEC_SECRETS_KEPT)) {
			r = 0;
		} else {
			r = o->type == CONF_PATH_FILE ? check_file(p, line, o, path)
			                              : check_dir(p, line, o, path);
		}
		if (r != 0) {
			free(path);
			return -1;
		}
		if (set_string(p, field, path) != 0) {
			return -1;
		}
		break;
	}
	case CONF_UINT: {
		const char *e;

		r = parse_digits(text, &v, &e);
		if (r == 0 && *e != '\0') {
			r = -1;
		}
		if (r < 0) {
			perr(p, line, "invalid number '%s' for '%s'", text, o->name);
			return -1;
		}
		if (r > 0 || v < o->min || v > o->max) {
			range_error(p, line, o, text);
			return -1;
		}
		*(uint64_t *)field = v;
		break;
	}
	case CONF_SIZE:
		r = parse_size(text, &v);
		if (r < 0) {
			perr(p, line,
			     "invalid size '%s' for '%s' (use a number with an optional K, M, G or "
			     "T "
			     "suffix)",
			     text, o->name);
			return -1;
		}
		if (r > 0 || v < o->min || v > o->max) {
			range_error(p, line, o, text);
			return -1;
		}
		*(uint64_t *)field = v;
		break;
	case CONF_DURATION:
		r = conf_parse_duration(text, &v);
		if (r == -2) {
			perr(p, line, "duration '%s' for '%s' has no unit (add ms, s, m, h or d)",
			     text, o->name);
			return -1;
		}
		if (r < 0) {
			perr(p, line,
			     "invalid duration '%s' for '%s' (use a number followed by ms, s, m, h "
			     "or d)",
			     text, o->name);
			return -1;
		}
		if (r > 0 || v < o->min || v > o->max) {
			range_error(p, line, o, text);
			return -1;
		}
		*(uint64_t *)field = v;
		break;
	case CONF_BOOL:
		if (strcmp(text, "yes") == 0 || strcmp(text, "true") == 0 ||
		    strcmp(text, "on") == 0 || strcmp(text, "1") == 0) {
			*(int *)field = 1;
		} else if (strcmp(text, "no") == 0 || strcmp(text, "false") == 0 ||
		           strcmp(text, "off") == 0 || strcmp(text, "0") == 0) {
			*(int *)field = 0;
		} else {
			perr(p, line, "invalid boolean '%s' for '%s' (use yes or no)", text,
			     o->name);
			return -1;
		}
		break;
	case CONF_ENUM: {
		const struct conf_choice *c;
		char list[256] = "";
		size_t n = 0, k = 0;

		for (c = o->choices; c != NULL && c->name != NULL; c++) {
			if (strcmp(c->name, text) == 0) {
				*(int *)field = c->value;
				goto validate;
			}
			n++;
		}
		for (c = o->choices; c != NULL && c->name != NULL; c++, k++) {
			size_t used = strlen(list);

			snprintf(list + used, sizeof(list) - used, "%s%s",
			         k == 0 ? "" : (k + 1 == n ? " or " : ", "), c->name);
		}
		perr(p, line, "invalid value '%s' for '%s' (expected %s)", text, o->name, list);
		return -1;
	}
	case CONF_ENDPOINT: {
		const char *why = check_endpoint(text);

		if (why != NULL) {
			perr(p, line, "invalid endpoint '%s' for '%s' (%s)", text, o->name, why);
			return -1;
		}
		if (set_string(p, field, strdup(text)) != 0) {
			return -1;
		}
		break;
	}
	default:
		perr(p, line, "option '%s' has an unknown type (a bug)", o->name);
		return -1;
	}
validate:
	if (o->validate != NULL) {
		char why[200] = "";

		if (o->validate(field, why, sizeof(why)) != 0) {
			perr(p, line, "invalid value '%s' for '%s': %s", text, o->name,
			     why[0] != '\0' ? why : "refused");
			return -1;
		}
	}
	return 0;
}

/* ---- the handler libinih calls per "name = value" ------------------------ */

static int
handler(void *user, const char *section, const char *name, const char *value)
{
	struct parser *p = user;
	const struct conf_option *o = p->spec->options;
	struct section_rec *r;
	char hint[128] = "";
	unsigned best = SUGGEST_FAR;
	size_t i;

	(void)section; /* libinih never sees headers: the reader tracks sections */
	if (p->cur == CUR_SKIP) {
		return 1;
	}
	if (p->cur == CUR_NONE) {
		perr(p, p->lineno, "option '%s' is outside of any [section]", name);
		return 1;
	}
	r = &p->cf->secs[p->cur];
	if (name[0] == '\0') {
		perr(p, p->lineno, "missing option name before '='");
		return 1;
	}
	for (i = 0; i < p->spec->noptions; i++) {
		if (strcmp(o[i].section, r->pattern) == 0 && strcmp(o[i].name, name) == 0) {
			break;
		}
	}
	if (i == p->spec->noptions) {
		for (i = 0; i < p->spec->noptions; i++) {
			if (strcmp(o[i].section, r->pattern) == 0 &&
			    suggest_near(name, o[i].name, &best)) {
				snprintf(hint, sizeof(hint), " (did you mean '%s'?)", o[i].name);
			}
		}
		perr(p, p->lineno, "unknown option '%s' in [%s]%s", name, r->name, hint);
		return 1;
	}
	if (r->lines[i] != 0) {
		perr(p, p->lineno, "duplicate option '%s' in [%s] (first set at line %d)", name,
		     r->name, r->lines[i]);
		return 1;
	}
	r->lines[i] = p->lineno;
	set_value(p, r->base, &o[i], value, p->lineno);
	return 1;
}

/* Defaults and required options, once the whole file is read. */
static void
finish_sections(struct parser *p)
{
	const struct conf_option *o = p->spec->options;
	size_t s, i;

	for (s = 0; s < p->cf->nsecs; s++) {
		struct section_rec *r = &p->cf->secs[s];

		for (i = 0; i < p->spec->noptions; i++) {
			if (strcmp(o[i].section, r->pattern) != 0 || r->lines[i] != 0) {
				continue;
			}
			if (o[i].def != NULL) {
				set_value(p, r->base, &o[i], o[i].def, r->line);
			} else if (o[i].flags & CONF_REQUIRED) {
				perr(p, r->line, "missing required option '%s' in [%s]", o[i].name,
				     r->name);
			}
		}
	}
}

static char *
dir_of(const char *path)
{
	char *copy = strdup(path), *slash, *real, *out = NULL;
	char cwd[PATH_MAX];

	if (copy == NULL) {
		return NULL;
	}
	slash = strrchr(copy, '/');
	if (slash == NULL) {
		free(copy);
		copy = strdup(".");
		if (copy == NULL) {
			return NULL;
		}
	} else if (slash == copy) {
		copy[1] = '\0';
	} else {
		*slash = '\0';
	}
	real = realpath(copy, NULL);
	if (real != NULL) {
		free(copy);
		return real;
	}
	/* Not resolvable: keep the path, made absolute. */
	if (copy[0] == '/') {
		return copy;
	}
	if (getcwd(cwd, sizeof(cwd)) != NULL && asprintf(&out, "%s/%s", cwd, copy) < 0) {
		out = NULL;
	}
	free(copy);
	return out;
}

void
conf_file_free(struct conf_file *cf)
{
	size_t i;

	if (cf == NULL) {
		return;
	}
	for (i = 0; i < cf->nsecs; i++) {
		free(cf->secs[i].name);
		free(cf->secs[i].lines);
	}
	free(cf->secs);
	free(cf->path);
	free(cf->dir);
	free(cf->abspath);
	free(cf);
}

int
conf_parse(const char *path, const struct conf_spec *spec, struct conf_file **out,
           struct conf_errors *errs)
{
	struct parser p;
	struct conf_file *cf = NULL;
	size_t before = conf_errors_count(errs), i;
	struct stat st;
	const char *base;
	int rc, ret = IHALA_ECONFIG;

	if (out != NULL) {
		*out = NULL;
	}
	memset(&p, 0, sizeof(p));
	p.spec = spec;
	p.errs = errs;
	p.cur = CUR_NONE;

	if ((cf = calloc(1, sizeof(*cf))) == NULL || (cf->path = strdup(path)) == NULL ||
	    (cf->dir = dir_of(path)) == NULL) {
		ret = IHALA_ENOMEM;
		goto fail;
	}
	base = strrchr(path, '/');
	base = base != NULL ? base + 1 : path;
	if (asprintf(&cf->abspath, "%s%s%s", cf->dir, strcmp(cf->dir, "/") == 0 ? "" : "/", base) <
	    0) {
		cf->abspath = NULL;
		ret = IHALA_ENOMEM;
		goto fail;
	}
	cf->options = spec->options;
	cf->noptions = spec->noptions;
	p.cf = cf;

	/* The fixed sections exist whether the file names them or not. */
	for (i = 0; i < spec->noptions; i++) {
		const char *sec = spec->options[i].section;

		if (!is_wild(sec) && section_find(cf, sec) < 0 &&
		    section_add(&p, sec, sec, spec->base) == NULL) {
			ret = IHALA_ENOMEM;
			goto fail;
		}
	}

	p.fp = fopen(path, "re");
	if (p.fp == NULL) {
		conf_errors_add(errs, path, 0, "cannot open config file: %s", strerror(errno));
		goto fail;
	}
	if (fstat(fileno(p.fp), &st) != 0 || !S_ISREG(st.st_mode)) {
		conf_errors_add(errs, path, 0, "config file is not a regular file");
		goto fail;
	}
	rc = ini_parse_stream(reader, &p, handler, &p);
	if (rc == -2) {
		p.nomem = 1;
	} else if (rc > 0 && p.err_line != rc && !p.nomem) {
		perr(&p, rc, "syntax error");
	}
	if (ferror(p.fp)) {
		perr(&p, 0, "cannot read config file: %s", strerror(errno));
	}
	fclose(p.fp);
	p.fp = NULL;
	finish_sections(&p);
	if (p.nomem) {
		ret = IHALA_ENOMEM;
		conf_errors_add(errs, path, 0, "out of memory");
	} else if (conf_errors_count(errs) == before) {
		ret = 0;
	}
	if (out != NULL) {
		*out = cf;
	} else {
		conf_file_free(cf);
	}
	return ret;

fail:
	if (p.fp != NULL) {
		fclose(p.fp);
	}
	conf_file_free(cf);
	return ret;
}

/* ---- queries after the parse ------------------------------------------ */

int
conf_line(const struct conf_file *cf, const char *section, const char *name)
{
	long idx;
	const struct section_rec *r;
	size_t i;

	if (cf == NULL || (idx = section_find(cf, section)) < 0) {
		return 0;
	}
	r = &cf->secs[idx];
	if (name != NULL) {
		for (i = 0; i < cf->noptions; i++) {
			if (strcmp(cf->options[i].section, r->pattern) == 0 &&
			    strcmp(cf->options[i].name, name) == 0 && r->lines[i] != 0) {
				return r->lines[i];
			}
		}
	}
	return r->line;
}

const char *
conf_dir(const struct conf_file *cf)
{
	return cf->dir;
}

const char *
conf_path(const struct conf_file *cf)
{
	return cf->path;
}

const char *
conf_abspath(const struct conf_file *cf)
{
	return cf->abspath;
}

int
conf_equal(const struct conf_option *o, const void *a, const void *b)
{
	const char *fa = (const char *)a + o->offset, *fb = (const char *)b + o->offset;

	switch (o->type) {
	case CONF_STRING:
	case CONF_PATH_FILE:
	case CONF_PATH_DIR:
	case CONF_ENDPOINT: {
		const char *sa = *(char *const *)(const void *)fa;
		const char *sb = *(char *const *)(const void *)fb;

		return sa == NULL || sb == NULL ? sa == sb : strcmp(sa, sb) == 0;
	}
	case CONF_UINT:
	case CONF_SIZE:
	case CONF_DURATION:
		return *(const uint64_t *)(const void *)fa == *(const uint64_t *)(const void *)fb;
	case CONF_BOOL:
	case CONF_ENUM:
		return *(const int *)(const void *)fa == *(const int *)(const void *)fb;
	}
	return 0;
}

void
conf_release(const struct conf_option *options, size_t noptions, const char *section, void *base)
{
	size_t i;

	if (base == NULL) {
		return;
	}
	for (i = 0; i < noptions; i++) {
		const struct conf_option *o = &options[i];
		char **field;

		if (section == NULL ? is_wild(o->section) : strcmp(o->section, section) != 0) {
			continue;
		}
		switch (o->type) {
		case CONF_STRING:
		case CONF_PATH_FILE:
		case CONF_PATH_DIR:
		case CONF_ENDPOINT:
			field = (char **)((char *)base + o->offset);
			free(*field);
			*field = NULL;
			break;
		default:
			break;
		}
	}
}
