/* ratelog.h - refusal lines in the log: per agency, the first of each interval, then a count. */
#ifndef IHALA_RATELOG_H
#define IHALA_RATELOG_H

#include <stdint.h>

/*
 * A misbehaving agency can be refused thousands of times a second; a security: line for each
 * would flood the log and hide everything else. Each agency gets one line in full per
 * interval; what follows in that interval is only counted, and ratelog_flush() writes one
 * line with the count when the interval is over.
 */
struct ratelog;

/* interval_ms > 0. 0 or IHALA_ENOMEM. */
int ratelog_new(uint64_t interval_ms, struct ratelog **out);

/* Writes the pending counts first (as ratelog_flush at the end of time); rl may be NULL. */
void ratelog_free(struct ratelog *rl);

/*
 * A refusal of `agency` (copied; "" for none) happens now: 1 when its line is to be written,
 * 0 when it is only counted. On no memory it answers 1 (the line is written).
 */
int ratelog_allow(struct ratelog *rl, const char *agency, uint64_t now_ms);

/* For each agency whose interval has ended with refusals not written, one security: line
 * with their count. */
void ratelog_flush(struct ratelog *rl, uint64_t now_ms);

#endif
