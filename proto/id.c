/* id.c - the one check of each id format (see id.h). */
#include "id.h"

#include <string.h>

int
id_agency_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > ID_AGENCY_MAX) {
		return 0;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
			return 0;
		}
	}
	return 1;
}

int
id_clerk_valid(const char *s)
{
	size_t n = strlen(s);

	/* the agency id's alphabet: nothing to escape in a log line, a CSV cell or a page */
	return n <= ID_CLERK_MAX && id_agency_valid(s, n);
}

int
id_valid(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > ID_MAX) {
		return 0;
	}
	for (i = 0; i < n; i++) {
		if (s[i] <= ' ' || s[i] > '~') {
			return 0;
		}
	}
	return 1;
}

size_t
id_copy(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
	return n;
}
