/* log.c - stderr/syslog logging with levels; errno preserved across calls. */
#include "log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static const char *log_name = "ihala";
static int log_foreground = 1;
/* Set by the main thread (a reload), read by every thread: an atomic, relaxed (a message
 * logged or not around the change is all that depends on it). */
static atomic_int log_level = LOG_LEVEL_INFO;

void
log_init(const char *name, int foreground)
{
	log_name = name;
	log_foreground = foreground;
	if (!foreground) {
		openlog(name, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	}
}

void
log_setlevel(enum log_level level)
{
	atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

enum log_level
log_getlevel(void)
{
	return (enum log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

const struct conf_choice log_level_names[] = {
    {"error", LOG_LEVEL_ERROR},
    {"warn", LOG_LEVEL_WARN},
    {"info", LOG_LEVEL_INFO},
    {"debug", LOG_LEVEL_DEBUG},
    {NULL, 0},
};

int
log_parselevel(const char *s)
{
	const struct conf_choice *c;

	for (c = log_level_names; c->name != NULL; c++) {
		if (strcmp(s, c->name) == 0) {
			return c->value;
		}
	}
	return -1;
}

size_t
log_sanitize(const char *in, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;

	if (outlen == 0) {
		return 0;
	}
	for (; *in != '\0'; in++) {
		unsigned char c = (unsigned char)*in;
		char esc[5];
		size_t k = 0;

		if (c == '\n' || c == '\r' || c == '\t') {
			esc[k++] = '\\';
			esc[k++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
		} else if (c < 0x20 || c == 0x7f) {
			esc[k++] = '\\';
			esc[k++] = 'x';
			esc[k++] = hex[c >> 4];
			esc[k++] = hex[c & 15];
		} else {
			esc[k++] = (char)c;
		}
		if (n + k >= outlen) {
			break; /* never half an escape */
		}
		memcpy(out + n, esc, k);
		n += k;
	}
	out[n] = '\0';
	return n;
}

static _Thread_local char *capture_buf;
static _Thread_local size_t capture_len;

void
log_capture(char *buf, size_t len)
{
	capture_buf = len > 0 ? buf : NULL;
	capture_len = len;
	if (capture_buf != NULL) {
		capture_buf[0] = '\0';
	}
}

static void
vlog(enum log_level level, const char *prefix, const char *suffix, const char *fmt, va_list ap)
{
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	char raw[2048], msg[2048];

	if (capture_buf != NULL && level <= LOG_LEVEL_WARN) {
		vsnprintf(raw, sizeof(raw), fmt, ap);
		log_sanitize(raw, msg, sizeof(msg));
		snprintf(capture_buf, capture_len, "%s%s%s%s", prefix, msg,
		         suffix != NULL ? ": " : "", suffix != NULL ? suffix : "");
		return;
	}
	if ((int)level > atomic_load_explicit(&log_level, memory_order_relaxed)) {
		return;
	}
	/* Whatever a peer put in the arguments (a message id, a name) is escaped here, once for
	 * every line: no peer can end a line and forge the next one. */
	vsnprintf(raw, sizeof(raw), fmt, ap);
	log_sanitize(raw, msg, sizeof(msg));
	if (log_foreground) {
		struct timespec ts;
		struct tm tm;
		char when[32];

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
		fprintf(stderr, "%s.%03ldZ %s: %s%s%s%s\n", when, ts.tv_nsec / 1000000, log_name,
		        prefix, msg, suffix != NULL ? ": " : "", suffix != NULL ? suffix : "");
		fflush(stderr);
	} else {
		syslog(prio[level], "%s%s%s%s", prefix, msg, suffix != NULL ? ": " : "",
		       suffix != NULL ? suffix : "");
	}
}

#define LOGFN(fn, level, prefix, witherrno)                                                        \
	void fn(const char *fmt, ...)                                                              \
	{                                                                                          \
		int saved = errno;                                                                 \
		va_list ap;                                                                        \
                                                                                                   \
		va_start(ap, fmt);                                                                 \
		vlog(level, prefix, witherrno ? strerror(saved) : NULL, fmt, ap);                  \
		va_end(ap);                                                                        \
		errno = saved;                                                                     \
	}

LOGFN(log_warn, LOG_LEVEL_WARN, "", 1)
LOGFN(log_warnx, LOG_LEVEL_WARN, "", 0)
LOGFN(log_info, LOG_LEVEL_INFO, "", 0)
LOGFN(log_debug, LOG_LEVEL_DEBUG, "", 0)
LOGFN(log_security, LOG_LEVEL_WARN, "security: ", 0)

void
fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LEVEL_ERROR, "fatal: ", strerror(saved), fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LEVEL_ERROR, "fatal: ", NULL, fmt, ap);
	va_end(ap);
	exit(1);
}
