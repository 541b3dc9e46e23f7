/* table.c - aligned tables for people: display widths, right-to-left cells, local times. */
#include "table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct table {
	size_t ncols, nrows, cap;
	char **cells; /* nrows * ncols, the headings first */
};

/* The next code point of s (advancing *s); invalid bytes count as one U+FFFD each. */
static uint32_t
next_cp(const char **s)
{
	const unsigned char *p = (const unsigned char *)*s;
	uint32_t c = p[0];
	size_t n = 0, i;

	if (c < 0x80) {
		n = 1;
	} else if ((c & 0xe0) == 0xc0) {
		n = 2;
		c &= 0x1f;
	} else if ((c & 0xf0) == 0xe0) {
		n = 3;
		c &= 0x0f;
	} else if ((c & 0xf8) == 0xf0) {
		n = 4;
		c &= 0x07;
	} else {
		*s += 1;
		return 0xfffd;
	}
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80) {
			*s += i;
			return 0xfffd;
		}
		c = (c << 6) | (p[i] & 0x3f);
	}
	*s += n;
	return c;
}

static int
zero_width(uint32_t c)
{
	return (c >= 0x0300 && c <= 0x036f) || (c >= 0x0483 && c <= 0x0489) ||
	       (c >= 0x0591 && c <= 0x05bd) || (c >= 0x0610 && c <= 0x061a) ||
	       (c >= 0x064b && c <= 0x065f) || c == 0x0670 || (c >= 0x06d6 && c <= 0x06dc) ||
	       (c >= 0x06df && c <= 0x06e4) || (c >= 0x06e7 && c <= 0x06e8) ||
	       (c >= 0x06ea && c <= 0x06ed) || (c >= 0x200b && c <= 0x200f) ||
	       (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069) ||
	       (c >= 0xfe00 && c <= 0xfe0f) || c == 0xfeff;
}

static int
wide(uint32_t c)
{
	return (c >= 0x1100 && c <= 0x115f) || (c >= 0x2e80 && c <= 0xa4cf) ||
	       (c >= 0xac00 && c <= 0xd7a3) || (c >= 0xf900 && c <= 0xfaff) ||
	       (c >= 0xfe30 && c <= 0xfe4f) || (c >= 0xff00 && c <= 0xff60) ||
	       (c >= 0xffe0 && c <= 0xffe6) || (c >= 0x1f300 && c <= 0x1f64f) ||
	       (c >= 0x1f900 && c <= 0x1f9ff) || (c >= 0x20000 && c <= 0x3fffd);
}

size_t
text_width(const char *s)
{
	size_t w = 0;
	uint32_t c;

	while (*s != '\0') {
		c = next_cp(&s);
		if (zero_width(c)) {
			continue;
		}
		w += wide(c) ? 2 : 1;
	}
	return w;
}

int
text_has_rtl(const char *s)
{
	uint32_t c;

	while (*s != '\0') {
		c = next_cp(&s);
		if ((c >= 0x0590 && c <= 0x08ff) || (c >= 0xfb1d && c <= 0xfdff) ||
		    (c >= 0xfe70 && c <= 0xfefc) || (c >= 0x10800 && c <= 0x10fff) ||
		    (c >= 0x1e800 && c <= 0x1efff)) {
			return 1;
		}
	}
	return 0;
}

struct table *
table_new(size_t ncols, const char *const *headings)
{
	struct table *t;

	if (ncols == 0 || ncols > TABLE_COLS || (t = calloc(1, sizeof(*t))) == NULL) {
		return NULL;
	}
	t->ncols = ncols;
	if (table_add(t, headings) != 0) {
		table_free(t);
		return NULL;
	}
	return t;
}

int
table_add(struct table *t, const char *const *cells)
{
	char **nc;
	size_t i;

	if (t->nrows == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 16;

		if ((nc = realloc(t->cells, cap * t->ncols * sizeof(*nc))) == NULL) {
			return -1;
		}
		t->cells = nc;
		t->cap = cap;
	}
	for (i = 0; i < t->ncols; i++) {
		const char *c = cells[i] != NULL ? cells[i] : "";
		char *copy = strdup(c), *p;

		if (copy == NULL) {
			while (i-- > 0) {
				free(t->cells[t->nrows * t->ncols + i]);
			}
			return -1;
		}
		/* one line per row: a newline or tab in free text becomes a space */
		for (p = copy; *p != '\0'; p++) {
			if (*p == '\n' || *p == '\r' || *p == '\t') {
				*p = ' ';
			}
		}
		t->cells[t->nrows * t->ncols + i] = copy;
	}
	t->nrows++;
	return 0;
}

static void
put_cell(FILE *fp, const char *c, size_t width, int last)
{
	size_t w = text_width(c);

	if (text_has_rtl(c)) {
		fprintf(fp, "\u2068%s\u2069", c);
	} else {
		fputs(c, fp);
	}
	if (!last) {
		fprintf(fp, "%*s", (int)((w < width ? width - w : 0) + 2), "");
	}
}

int
table_line(FILE *fp, size_t ncols, const size_t *widths, const char *const *cells)
{
	size_t i, n = ncols;

	/* no padding after the last cell that has something */
	while (n > 1 && (cells[n - 1] == NULL || cells[n - 1][0] == '\0')) {
		n--;
	}
	for (i = 0; i < n; i++) {
		put_cell(fp, cells[i] != NULL ? cells[i] : "", widths[i], i + 1 == n);
	}
	fputc('\n', fp);
	return fflush(fp) == 0 && !ferror(fp) ? 0 : -1;
}

int
table_print(const struct table *t, FILE *fp)
{
	size_t widths[TABLE_COLS] = {0}, r, i, w;

	for (r = 0; r < t->nrows; r++) {
		for (i = 0; i < t->ncols; i++) {
			w = text_width(t->cells[r * t->ncols + i]);
			if (w > widths[i]) {
				widths[i] = w;
			}
		}
	}
	for (r = 0; r < t->nrows; r++) {
		if (table_line(fp, t->ncols, widths,
		               (const char *const *)&t->cells[r * t->ncols]) != 0) {
			return -1;
		}
	}
	return 0;
}

size_t
text_cut(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n <= max) {
		return n;
	}
	/* back to the start of the character that does not fit */
	while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80) {
		max--;
	}
	return max;
}

const char *
text_isolate(const char *s, char *buf, size_t len)
{
	if (!text_has_rtl(s)) {
		return s;
	}
	if (len < 7) {
		return "";
	}
	/* cut at a whole character so that the closing PDI is always there */
	snprintf(buf, len, "\u2068%.*s\u2069", (int)text_cut(s, len - 7), s);
	return buf;
}

size_t
table_rows(const struct table *t)
{
	return t->nrows - 1;
}

void
table_free(struct table *t)
{
	size_t i;

	if (t == NULL) {
		return;
	}
	for (i = 0; i < t->nrows * t->ncols; i++) {
		free(t->cells[i]);
	}
	free(t->cells);
	free(t);
}

const char *
table_time(uint64_t ms, char *buf, size_t len)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;

	buf[0] = '\0';
	if (ms == 0 || localtime_r(&s, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%d %H:%M", &tm) == 0) {
		buf[0] = '\0';
	}
	return buf;
}
