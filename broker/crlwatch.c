/* crlwatch.c - the CRL's nextUpdate in the metrics, and a warning before it locks out every
 * agency (past it, OpenSSL fails every handshake's CRL check). */
#include "crlwatch.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "tlsctx.h"

static struct {
	int64_t next_s; /* 0: no CRL with a nextUpdate */
	uint64_t warn_before_ms;
	uint64_t warned_ms; /* last warning; 0: none since the last update */
	int expired_said;
	char path[512];
} W;

/* "2 d 3 h", "5 h 12 m", "40 s": what is left, for people. */
static void
format_left(uint64_t ms, char *buf, size_t len)
{
	uint64_t s = ms / 1000;

	if (s >= 86400) {
		snprintf(buf, len, "%llu d %llu h", (unsigned long long)(s / 86400),
		         (unsigned long long)(s % 86400 / 3600));
	} else if (s >= 3600) {
		snprintf(buf, len, "%llu h %llu m", (unsigned long long)(s / 3600),
		         (unsigned long long)(s % 3600 / 60));
	} else {
		snprintf(buf, len, "%llu s", (unsigned long long)s);
	}
}

static void
check(uint64_t now_ms, int force)
{
	char when[32], left[32];
	struct tm tm;
	time_t t;
	uint64_t next_ms;

	if (W.next_s <= 0) {
		return;
	}
	next_ms = (uint64_t)W.next_s * 1000;
	t = (time_t)W.next_s;
	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
		snprintf(when, sizeof(when), "%lld", (long long)W.next_s);
	}
	if (now_ms >= next_ms) {
		if (!W.expired_said) {
			W.expired_said = 1;
			log_security(
			    "CRL '%s' expired at %s (its nextUpdate): every new handshake now "
			    "fails; issue a fresh CRL and reload (SIGHUP)",
			    W.path, when);
		}
		return;
	}
	if (W.warn_before_ms == 0 || next_ms - now_ms > W.warn_before_ms) {
		return;
	}
	if (!force && W.warned_ms != 0 && now_ms - W.warned_ms < CRLWATCH_REPEAT_MS) {
		return;
	}
	W.warned_ms = now_ms;
	format_left(next_ms - now_ms, left, sizeof(left));
	log_warnx("warning: CRL '%s' expires in %s (nextUpdate %s): issue a fresh CRL and reload "
	          "(SIGHUP) before then, or every agency's handshake will fail",
	          W.path, left, when);
}

void
crlwatch_update(SSL_CTX *ctx, const char *path, uint64_t warn_before_ms, uint64_t now_ms)
{
	int64_t next = 0;

	if (path == NULL || tlsctx_crl_next_update(ctx, &next) != 0) {
		next = 0;
	}
	W.next_s = next;
	W.warn_before_ms = warn_before_ms;
	W.warned_ms = 0;
	W.expired_said = 0;
	snprintf(W.path, sizeof(W.path), "%s", path != NULL ? path : "");
	metrics_set_crl_next_update(next);
	check(now_ms, 1);
}

void
crlwatch_tick(uint64_t now_ms)
{
	check(now_ms, 0);
}
