/* log.h - small logging API (after OpenBSD relayd's log.c): stderr or syslog. */
#ifndef IHALA_LOG_H
#define IHALA_LOG_H

#include <stdarg.h>
#include <stddef.h>

#include "conf.h"

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN = 1,
	LOG_LEVEL_INFO = 2,
	LOG_LEVEL_DEBUG = 3,
};

/*
 * log_init: foreground != 0 logs to stderr, otherwise to syslog under
 * `name` (the pointer is kept: pass a string with static storage).
 * May be called again to switch. Before any call, logs go to stderr at
 * LOG_LEVEL_INFO under the name "ihala".
 */
void log_init(const char *name, int foreground);
void log_setlevel(enum log_level level);
enum log_level log_getlevel(void);
/* The level names "error", "warn", "info", "debug" and their enum log_level values, as
 * the choices of a config ENUM row (ended by {NULL, 0}). */
extern const struct conf_choice log_level_names[];
/* The level of a name of log_level_names; -1 when unknown. */
int log_parselevel(const char *s);

/*
 * Copy `in` to `out` (outlen bytes, NUL included) with newline, carriage return and tab
 * written as \n \r \t and other control characters (below 0x20, and 0x7f) as \xHH, so that
 * the text stays on one line; truncated at a whole character. Returns the length written.
 * Every log function below applies it to the whole formatted line.
 */
size_t log_sanitize(const char *in, char *out, size_t outlen);

/*
 * While buf is set (len > 0), this thread's warnings and errors are not written: the text of
 * the last one (without time or name) is kept in buf, NUL-terminated, for a caller that says
 * in one line of its own what failed (the ihala tool). log_capture(NULL, 0) ends it. buf is
 * borrowed until then; it is emptied at the start.
 */
void log_capture(char *buf, size_t len);

/* All of these preserve errno. log_warn and fatal append strerror(errno). */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A security event (refused certificate, refused message): marked
 * "security:" so operators can grep and alert on it. Logged at warn. */
void log_security(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Start-up failures and broken invariants only; never for peer input. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
