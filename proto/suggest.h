/* suggest.h - "did you mean ...?": how far a mistyped name is from a known one. */
#ifndef IHALA_SUGGEST_H
#define IHALA_SUGGEST_H

/* What suggest_distance says of strings too long to compare (over 64 bytes) or far apart. */
#define SUGGEST_FAR 100u

/*
 * Edit distance (optimal string alignment: insert, delete, substitute, swap two
 * neighbours) between two short strings, ignoring ASCII case; at most SUGGEST_FAR.
 */
unsigned suggest_distance(const char *a, const char *b);

/*
 * Whether `cand` is close enough to the mistyped `typed` to suggest it (1 edit for names
 * of up to 3 characters, else 2), closer than *best, and not `typed` itself. When it is,
 * *best becomes its distance and it returns 1. Start with *best = SUGGEST_FAR.
 */
int suggest_near(const char *typed, const char *cand, unsigned *best);

#endif
