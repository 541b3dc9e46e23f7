/* view.c - the ihala tool's output for people: inbox rows, status, words for what was said. */
#include "view.h"

#include <stdio.h>
#include <string.h>

#include "table.h"

static const char *
str(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s != NULL ? s : "";
}

/* Append to buf (at *off) with printf; truncates quietly. */
static void
add(char *buf, size_t len, size_t *off, const char *fmt, const char *a, const char *b)
{
	int n;

	if (*off >= len) {
		return;
	}
	n = snprintf(buf + *off, len - *off, fmt, a, b);
	if (n > 0 && (size_t)n >= len - *off) {
		/* cut: end at a whole character (an isolate's PDI may then be lost, but the
		 * table isolates the whole cell) */
		n = (int)text_cut(buf + *off, len - *off - 1);
		buf[*off + (size_t)n] = '\0';
	}
	if (n > 0) {
		*off += (size_t)n;
	}
}

const char *
view_what(json_t *item, char *buf, size_t len)
{
	json_t *env = json_object_get(item, "envelope"), *ev = json_object_get(item, "event");
	json_t *r, *su, *note, *o;
	char iso[256]; /* a right-to-left piece, cut to keep its row readable */
	size_t off = 0;

	buf[0] = '\0';
	if ((r = json_object_get(env, "referral")) != NULL) {
		json_t *sv = json_object_get(r, "survivor");

		if (sv == NULL) {
			/* the clear part only (an auditor's view, or a part not opened) */
			add(buf, len, &off, "referral%s%s", "", "");
		} else {
			add(buf, len, &off, "referral for %s%s",
			    text_isolate(str(sv, "name")[0] != '\0' ? str(sv, "name")
			                                            : str(sv, "caseId"),
			                 iso, sizeof(iso)),
			    "");
		}
		if (str(r, "priority")[0] != '\0') {
			add(buf, len, &off, " (%s)%s", str(r, "priority"), "");
		}
		if (str(r, "parentReferralId")[0] != '\0') {
			add(buf, len, &off, ", onward from %s%s", str(r, "parentReferralId"), "");
		}
	} else if ((su = json_object_get(env, "statusUpdate")) != NULL) {
		add(buf, len, &off, "%s%s", str(su, "status"), "");
		if (str(su, "reasonCode")[0] != '\0') {
			add(buf, len, &off, " (%s)%s", str(su, "reasonCode"), "");
		}
		if (str(su, "reason")[0] != '\0') {
			add(buf, len, &off, ": %s%s",
			    text_isolate(str(su, "reason"), iso, sizeof(iso)), "");
		}
		if (str(su, "businessStatus")[0] != '\0') {
			add(buf, len, &off, ", %s%s",
			    text_isolate(str(su, "businessStatus"), iso, sizeof(iso)), "");
		}
		if ((o = json_object_get(su, "outcome")) != NULL) {
			add(buf, len, &off, ", with the outcome%s%s", "", "");
		}
		if (str(su, "note")[0] != '\0') {
			add(buf, len, &off, "; note: %s%s",
			    text_isolate(str(su, "note"), iso, sizeof(iso)), "");
		}
	} else if ((note = json_object_get(env, "note")) != NULL) {
		add(buf, len, &off, "note: %s%s", text_isolate(str(note, "text"), iso, sizeof(iso)),
		    "");
	} else if ((o = json_object_get(env, "outcome")) != NULL) {
		add(buf, len, &off, "outcome%s%s", "", "");
	} else if ((o = json_object_get(env, "erase")) != NULL) {
		add(buf, len, &off, "erase (%s)%s", str(o, "reasonCode"), "");
	} else if ((o = json_object_get(env, "unreadable")) != NULL) {
		add(buf, len, &off, "unreadable: seq %s%s",
		    json_is_integer(json_object_get(o, "refSeq")) ? "" : str(o, "refSeq"), "");
		if (json_is_integer(json_object_get(o, "refSeq"))) {
			char n[24];

			snprintf(n, sizeof(n), "%lld",
			         (long long)json_integer_value(json_object_get(o, "refSeq")));
			add(buf, len, &off, "%s%s", n, "");
		}
		add(buf, len, &off, " (%s)%s", str(o, "code"), "");
	} else if (ev != NULL && strcmp(str(item, "kind"), "erasure") == 0) {
		json_t *seqs = json_object_get(ev, "erasedSeqs"), *q;
		size_t i;

		add(buf, len, &off, "erasure (%s) by %s, sealed parts of seqs",
		    str(ev, "reasonCode"),
		    str(item, "sender")[0] != '\0' ? str(item, "sender")
		                                   : "the broker (retention)");
		json_array_foreach(seqs, i, q)
		{
			char n[24];

			snprintf(n, sizeof(n), "%s%lld", i > 0 ? "," : " ",
			         (long long)(json_is_integer(q) ? json_integer_value(q) : 0));
			add(buf, len, &off, "%s%s", n, "");
		}
	} else if (ev != NULL && str(ev, "status")[0] == '\0' &&
	           json_is_integer(json_object_get(ev, "refSeq"))) {
		/* a delivery the recipient acked (audit replay) */
		char n[24];

		snprintf(n, sizeof(n), "%lld",
		         (long long)json_integer_value(json_object_get(ev, "refSeq")));
		add(buf, len, &off, "%s of seq %s",
		    str(item, "kind")[0] != '\0' ? str(item, "kind") : "event", n);
	} else if (ev != NULL) {
		add(buf, len, &off, "%s (by the broker)%s", str(ev, "status"), "");
	} else if (str(item, "what")[0] != '\0' &&
	           strcmp(str(item, "what"), str(item, "status")) != 0) {
		/* a history item without its details: what kind of message it was */
		add(buf, len, &off, "%s%s", str(item, "what"), "");
	}
	/* a delivery whose sealed part this node could not open (inbox: "openError") */
	if (str(item, "openError")[0] != '\0') {
		add(buf, len, &off, "; sealed part not opened: %s%s", str(item, "openError"), "");
	}
	/* audit replay: what the entry commits to, never what it says */
	if (str(item, "sealedSha256")[0] != '\0') {
		add(buf, len, &off, "; sealed sha256:%s%s", str(item, "sealedSha256"),
		    json_is_true(json_object_get(item, "erased")) ? " (erased)" : "");
	}
	return buf;
}

/* The referral an inbox line is about. */
static const char *
referral_of(json_t *line)
{
	static const char *kinds[] = {"referral", "statusUpdate", "outcome", "note"};
	json_t *env = json_object_get(line, "envelope");
	size_t i;

	for (i = 0; env != NULL && i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		const char *rid = str(json_object_get(env, kinds[i]), "referralId");

		if (rid[0] != '\0') {
			return rid;
		}
	}
	return str(json_object_get(line, "event"), "referralId");
}

int
view_inbox_row(json_t *line, int first)
{
	static const size_t widths[] = {5, 16, 6, 6, 14, 0};
	static const char *const heads[] = {"SEQ", "TIME", "FROM", "TO", "REFERRAL", "WHAT"};
	char seq[24], when[32], what[2048];
	const char *from = str(line, "sender");
	const char *cells[6];

	if (first && table_line(stdout, 6, widths, heads) != 0) {
		return -1;
	}
	snprintf(seq, sizeof(seq), "%lld",
	         (long long)json_integer_value(json_object_get(line, "seq")));
	cells[0] = seq;
	cells[1] = table_time((uint64_t)json_integer_value(json_object_get(line, "brokerTimeMs")),
	                      when, sizeof(when));
	cells[2] = from[0] != '\0' ? from : "broker";
	cells[3] = str(line, "recipient");
	cells[4] = referral_of(line);
	cells[5] = view_what(line, what, sizeof(what));
	return table_line(stdout, 6, widths, cells);
}

int
view_status(json_t *st)
{
	static const char *const heads[] = {"SEQ", "TIME", "BY", "STATUS", "WHAT"};
	json_t *hist = json_object_get(st, "history"), *it;
	char when[32], seq[24], what[2048], line[256];
	const char *cells[5];
	struct table *t;
	size_t i;
	int rc;

	printf("Referral   %s\n", str(st, "referralId"));
	printf("From       %s to %s\n", str(st, "referrer"), str(st, "recipient"));
	printf("Status     %s\n", str(st, "status"));
	printf("Priority   %s\n", str(st, "priority"));
	table_time((uint64_t)json_integer_value(json_object_get(st, "deadlineMs")), when,
	           sizeof(when));
	if (when[0] != '\0') {
		snprintf(line, sizeof(line), "%s%s", when,
		         json_is_true(json_object_get(st, "overdue")) ? " (overdue)" : "");
		printf("Deadline   %s\n", line);
	}
	putchar('\n');
	if ((t = table_new(5, heads)) == NULL) {
		return -1;
	}
	json_array_foreach(hist, i, it)
	{
		snprintf(seq, sizeof(seq), "%lld",
		         (long long)json_integer_value(json_object_get(it, "seq")));
		cells[0] = seq;
		cells[1] =
		    table_time((uint64_t)json_integer_value(json_object_get(it, "brokerTimeMs")),
		               when, sizeof(when));
		cells[2] = str(it, "sender")[0] != '\0' ? str(it, "sender") : "broker";
		cells[3] = str(it, "status");
		cells[4] = view_what(it, what, sizeof(what));
		if (table_add(t, cells) != 0) {
			table_free(t);
			return -1;
		}
	}
	rc = table_print(t, stdout);
	table_free(t);
	return rc;
}
