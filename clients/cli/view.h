/* view.h - the ihala tool's views for people (on a terminal): inbox rows, a referral's state
 * and history, the list of referrals. JSON stays the machines' view (cli_human decides). */
#ifndef IHALA_VIEW_H
#define IHALA_VIEW_H

#include <jansson.h>

/* One delivery (an inbox line, borrowed) as a row; the headings first when first != 0.
 * Returns 0 or -1 (stdout failed). */
int view_inbox_row(json_t *line, int first);

/* A ReferralState as status prints it (borrowed, with history and details). 0 or -1. */
int view_status(json_t *state);

/* What one history item or inbox line (borrowed) says, in words: "referral for NAME
 * (urgent)", "declined (no-capacity): TEXT", "note: TEXT", ...; in buf (len bytes). */
const char *view_what(json_t *item, char *buf, size_t len);

#endif
