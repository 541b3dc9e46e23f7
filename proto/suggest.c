/* suggest.c - edit distance for "did you mean" hints (see suggest.h). */
#include "suggest.h"

#include <ctype.h>
#include <string.h>

#define SUGGEST_MAX_LEN 64

unsigned
suggest_distance(const char *a, const char *b)
{
	unsigned d[SUGGEST_MAX_LEN + 1][SUGGEST_MAX_LEN + 1];
	size_t la = strlen(a), lb = strlen(b), i, j;

	if (la > SUGGEST_MAX_LEN || lb > SUGGEST_MAX_LEN) {
		return SUGGEST_FAR;
	}
	for (i = 0; i <= la; i++) {
		d[i][0] = (unsigned)i;
	}
	for (j = 0; j <= lb; j++) {
		d[0][j] = (unsigned)j;
	}
	for (i = 1; i <= la; i++) {
		for (j = 1; j <= lb; j++) {
			unsigned cost =
			    tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
			unsigned v = d[i - 1][j] + 1;

			if (d[i][j - 1] + 1 < v) {
				v = d[i][j - 1] + 1;
			}
			if (d[i - 1][j - 1] + cost < v) {
				v = d[i - 1][j - 1] + cost;
			}
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < v) {
				v = d[i - 2][j - 2] + 1;
			}
			d[i][j] = v;
		}
	}
	return d[la][lb] > SUGGEST_FAR ? SUGGEST_FAR : d[la][lb];
}

int
suggest_near(const char *typed, const char *cand, unsigned *best)
{
	unsigned limit = strlen(typed) <= 3 ? 1 : 2;
	unsigned d = suggest_distance(typed, cand);

	/* d is 0 for a name that differs only in case */
	if (d <= limit && d < *best && strcmp(typed, cand) != 0) {
		*best = d;
		return 1;
	}
	return 0;
}
