/* jsonpos.c - line and column of a field in JSON text; removing a bad field from a JSON tree. */
#include "jsonpos.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARTS 40
#define MAX_DEPTH 64

/* One element of a path: a key (pointer into the path, length) or an array index. */
struct part {
	const char *key;
	size_t keylen;
	size_t index;
	int is_index;
};

/* Split path into parts; returns the count, or -1 when it is malformed or too deep. */
static int
split(const char *path, struct part *parts)
{
	const char *p = path;
	int n = 0;

	while (*p != '\0') {
		if (n == MAX_PARTS) {
			return -1;
		}
		if (*p == '[') {
			char *end;

			parts[n].is_index = 1;
			parts[n].key = NULL;
			parts[n].keylen = 0;
			if (!isdigit((unsigned char)p[1])) {
				return -1;
			}
			parts[n].index = strtoul(p + 1, &end, 10);
			if (*end != ']') {
				return -1;
			}
			p = end + 1;
		} else {
			if (*p == '.') {
				p++;
			}
			parts[n].is_index = 0;
			parts[n].key = p;
			while (*p != '\0' && *p != '.' && *p != '[') {
				p++;
			}
			parts[n].keylen = (size_t)(p - parts[n].key);
			if (parts[n].keylen == 0) {
				return -1;
			}
		}
		n++;
	}
	return n;
}

struct scan {
	const char *p, *end;
};

static void
skip_ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) {
		s->p++;
	}
}

/* At '"': past the closing quote. */
static int
skip_string(struct scan *s)
{
	s->p++;
	while (s->p < s->end) {
		if (*s->p == '\\') {
			s->p += 2;
		} else if (*s->p == '"') {
			s->p++;
			return 0;
		} else {
			s->p++;
		}
	}
	return -1;
}

static int
skip_value(struct scan *s, int depth)
{
	char close;

	skip_ws(s);
	if (s->p >= s->end || depth > MAX_DEPTH) {
		return -1;
	}
	if (*s->p == '"') {
		return skip_string(s);
	}
	if (*s->p == '{' || *s->p == '[') {
		close = *s->p == '{' ? '}' : ']';
		s->p++;
		skip_ws(s);
		if (s->p < s->end && *s->p == close) {
			s->p++;
			return 0;
		}
		for (;;) {
			if (close == '}') {
				skip_ws(s);
				if (s->p >= s->end || *s->p != '"' || skip_string(s) != 0) {
					return -1;
				}
				skip_ws(s);
				if (s->p >= s->end || *s->p != ':') {
					return -1;
				}
				s->p++;
			}
			if (skip_value(s, depth + 1) != 0) {
				return -1;
			}
			skip_ws(s);
			if (s->p >= s->end) {
				return -1;
			}
			if (*s->p == close) {
				s->p++;
				return 0;
			}
			if (*s->p != ',') {
				return -1;
			}
			s->p++;
		}
	}
	/* a number or a literal */
	{
		const char *start = s->p;

		while (s->p < s->end && strchr(",}] \t\r\n", *s->p) == NULL) {
			s->p++;
		}
		return s->p > start ? 0 : -1;
	}
}

/* The key as written (between the quotes, escapes left as they are) names part. */
static int
key_matches(const char *k, size_t klen, const struct part *part)
{
	size_t i = 0, j = 0;

	if (klen == part->keylen && memcmp(k, part->key, klen) == 0) {
		return 1;
	}
	/* case_id and caseId: '_' and case ignored */
	for (;;) {
		while (i < klen && k[i] == '_') {
			i++;
		}
		while (j < part->keylen && part->key[j] == '_') {
			j++;
		}
		if (i == klen || j == part->keylen) {
			return i == klen && j == part->keylen;
		}
		if (tolower((unsigned char)k[i]) != tolower((unsigned char)part->key[j])) {
			return 0;
		}
		i++;
		j++;
	}
}

static void
position(const char *text, const char *at, int *line, int *col)
{
	const char *p;

	*line = 1;
	*col = 1;
	for (p = text; p < at; p++) {
		if (*p == '\n') {
			(*line)++;
			*col = 1;
		} else if (((unsigned char)*p & 0xc0) != 0x80) {
			(*col)++;
		}
	}
}

int
jsonpos_find(const char *text, size_t len, const char *path, int *line, int *col)
{
	struct part parts[MAX_PARTS];
	struct scan s = {text, text + len};
	const char *deepest, *kstart = NULL, *kend;
	int n, i, found;

	*line = 1;
	*col = 1;
	if ((n = split(path, parts)) < 0) {
		return -1;
	}
	skip_ws(&s);
	deepest = s.p;
	for (i = 0; i < n; i++) {
		found = 0;
		if (parts[i].is_index) {
			size_t k = 0;

			if (s.p >= s.end || *s.p != '[') {
				break;
			}
			s.p++;
			skip_ws(&s);
			while (s.p < s.end && *s.p != ']') {
				if (k == parts[i].index) {
					found = 1;
					break;
				}
				if (skip_value(&s, 0) != 0) {
					return -1;
				}
				skip_ws(&s);
				if (s.p < s.end && *s.p == ',') {
					s.p++;
					skip_ws(&s);
				}
				k++;
			}
			if (!found) {
				break;
			}
			deepest = s.p;
			continue;
		}
		if (s.p >= s.end || *s.p != '{') {
			break;
		}
		s.p++;
		for (;;) {
			skip_ws(&s);
			if (s.p >= s.end || *s.p != '"') {
				break;
			}
			kstart = s.p;
			if (skip_string(&s) != 0) {
				return -1;
			}
			kend = s.p - 1;
			skip_ws(&s);
			if (s.p >= s.end || *s.p != ':') {
				return -1;
			}
			s.p++;
			skip_ws(&s);
			if (key_matches(kstart + 1, (size_t)(kend - kstart - 1), &parts[i])) {
				found = 1;
				break;
			}
			if (skip_value(&s, 0) != 0) {
				return -1;
			}
			skip_ws(&s);
			if (s.p < s.end && *s.p == ',') {
				s.p++;
			}
		}
		if (!found) {
			break;
		}
		if (i == n - 1) {
			deepest = kstart;
		} else {
			deepest = s.p;
		}
	}
	position(text, deepest, line, col);
	return i == n ? 1 : 0;
}

int
jsonpos_remove(json_t *root, const char *path)
{
	struct part parts[MAX_PARTS];
	json_t *parent = root, *v;
	char key[256];
	int n, i, last;

	if ((n = split(path, parts)) <= 0) {
		return -1;
	}
	/* an item goes with its whole array */
	last = n - 1;
	while (last >= 0 && parts[last].is_index) {
		last--;
	}
	if (last < 0) {
		return -1;
	}
	for (i = 0; i <= last; i++) {
		if (parts[i].is_index) {
			parent = json_array_get(parent, parts[i].index);
			continue;
		}
		if (!json_is_object(parent) || parts[i].keylen >= sizeof(key)) {
			return -1;
		}
		memcpy(key, parts[i].key, parts[i].keylen);
		key[parts[i].keylen] = '\0';
		if (i == last) {
			return json_object_del(parent, key) == 0 ? 0 : -1;
		}
		if ((v = json_object_get(parent, key)) == NULL) {
			return -1;
		}
		parent = v;
	}
	return -1;
}
