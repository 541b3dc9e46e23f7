/* conf.h - table-driven INI config parser (over libinih) with FILE:LINE errors. */
#ifndef IHALA_CONF_H
#define IHALA_CONF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/*
 * A program describes its options in one table, one row per option; conf_parse()
 * reads a file with libinih, converts and checks every value against its row
 * and writes it into the program's struct at the row's offset. Every error is
 * collected (not only the first) as "FILE:LINE: message", where FILE is the
 * path as the caller gave it and LINE is 0 for errors that belong to no line.
 *
 * File syntax (what libinih reads, narrowed):
 *   [section]                 a section header; each section at most once
 *   name = value              also "name: value"; leading and trailing spaces dropped
 *   # comment, ; comment      whole-line comments; " ; text" after a value too
 * A value wrapped in double quotes loses them ("  x " keeps its inner spaces).
 * Lines longer than CONF_MAX_LINE bytes, continuation lines and non-UTF-8 or
 * control characters in values are refused. Relative paths are resolved
 * against the directory of the config file.
 */

/* Longest accepted line, in bytes, without the line end (libinih's buffer). */
#define CONF_MAX_LINE 197
/* Errors kept per parse; the rest are counted and summarised in one line. */
#define CONF_MAX_ERRORS 100

enum conf_type {
	CONF_STRING,    /* char *: UTF-8 text without control characters */
	CONF_PATH_FILE, /* char *: absolute path of an existing readable regular file */
	CONF_PATH_DIR,  /* char *: absolute path of an existing directory (see CONF_CREATE) */
	CONF_UINT,      /* uint64_t: decimal, min..max */
	CONF_SIZE,      /* uint64_t bytes: decimal with an optional K, M, G or T suffix (x1024) */
	CONF_DURATION,  /* uint64_t milliseconds: decimal with ms, s, m, h or d ("0" alone is 0) */
	CONF_BOOL,      /* int 0/1: yes/no, true/false, on/off, 1/0 */
	CONF_ENUM,      /* int: the value of the matching choice */
	CONF_ENDPOINT,  /* char *: tcp://HOST:PORT, HOST a name, IPv4, [IPv6] or '*' */
};

/* Row flags. */
#define CONF_REQUIRED 0x01 /* an error when the option is absent */
#define CONF_SECRET 0x02   /* PATH_FILE holding a private key: refused when mode & 077 */
/* PATH_DIR the program may create: a missing dir whose parent exists is fine */
#define CONF_CREATE 0x04
/* A reload (SIGHUP) applies a new value; a row without it is read at start-up only. */
#define CONF_RELOAD 0x08

struct conf_choice {
	const char *name;
	int value;
};

/*
 * Validator: called after the value was converted and stored in `field` (a
 * pointer to the struct member: char **, uint64_t *, int *). It may rewrite the
 * stored value (e.g. normalise it; strings must stay malloc'd and owned by the
 * struct). Returns 0 when valid; otherwise -1 with a short reason in `why`,
 * reported as "invalid value 'V' for 'NAME': WHY".
 */
typedef int (*conf_validator)(void *field, char *why, size_t whylen);

struct conf_option {
	const char *section; /* "broker", or "agency.*": every section "agency.X" */
	const char *name;
	enum conf_type type;
	unsigned flags;    /* CONF_REQUIRED | CONF_SECRET | CONF_CREATE | CONF_RELOAD */
	const char *def;   /* default, written as in a file; NULL: none */
	uint64_t min, max; /* UINT, SIZE (bytes), DURATION (ms) bounds */
	const struct conf_choice *choices; /* ENUM: terminated by a {NULL, 0} row */
	conf_validator validate;           /* NULL: none */
	size_t offset;                     /* of the member in the section's struct */
	const char *help;                  /* one line for people */
};

/*
 * What to parse. Rows of fixed sections write into `base`. A section matching
 * a "prefix.*" row section calls open_section(user, section, suffix, why,
 * whylen) when its header is read; it returns the struct that section's rows
 * write into (owned by the caller, and it must stay valid, not move, until
 * conf_parse returns), or NULL with a reason in `why` (then the section is
 * reported as "invalid section [S]: WHY" and its options are skipped).
 */
struct conf_spec {
	const struct conf_option *options;
	size_t noptions;
	void *base;
	void *(*open_section)(void *user, const char *section, const char *suffix, char *why,
	                      size_t whylen);
	void *user;
	unsigned flags; /* CONF_SPEC_SECRETS_KEPT or 0 */
};

/* The files of CONF_SECRET rows are not opened (a broker re-reading its configuration after
 * dropping root cannot read them): only their paths are taken. The caller keeps the keys it
 * read at start-up. */
#define CONF_SPEC_SECRETS_KEPT 0x01

/* The errors of one parse; plain data, owned by whoever declared it. */
struct conf_error {
	char *file;
	int line;
	char *msg;
};

struct conf_errors {
	struct conf_error *v;
	size_t n, cap;
	size_t dropped; /* errors beyond CONF_MAX_ERRORS, or lost to out-of-memory */
};

/* The parsed file's positions, for the caller's cross-checks. Opaque. */
struct conf_file;

/* conf_errors_init: empty list. conf_errors_release: frees what it holds (list reusable). */
void conf_errors_init(struct conf_errors *errs);
void conf_errors_release(struct conf_errors *errs);
/* Adds "FILE:LINE: message"; `file` is copied. Never fails (counts drops). */
void conf_errors_add(struct conf_errors *errs, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Writes every error as one "FILE:LINE: message" line to `fp`, by line (line 0 last). */
void conf_errors_print(const struct conf_errors *errs, FILE *fp);
/* Number of errors, dropped ones included. */
size_t conf_errors_count(const struct conf_errors *errs);

/*
 * conf_parse: reads `path` against `spec`: applies defaults to the options the
 * file leaves out (fixed sections, and every opened prefix section), and
 * appends every problem to `errs`. Values may have been written into the
 * structs even on failure: the caller frees them (conf_release) either way.
 * On return *out (when out != NULL) holds the file's positions for
 * conf_line()/conf_report(); free it with conf_file_free(). It is NULL when
 * the file could not be opened.
 * Returns 0 when there was no error, IHALA_ECONFIG when errors were added,
 * IHALA_ENOMEM.
 */
int conf_parse(const char *path, const struct conf_spec *spec, struct conf_file **out,
               struct conf_errors *errs);

/* Line of option `name` in `section` ("agency.moh"); when absent, the line of
 * the section header; when that is absent too, 0. name NULL: the section line. */
int conf_line(const struct conf_file *cf, const char *section, const char *name);
/* The config file's absolute directory (relative paths are resolved against it). */
const char *conf_dir(const struct conf_file *cf);
/* The file name as given to conf_parse, for error messages. */
const char *conf_path(const struct conf_file *cf);
/* The file's absolute path (its directory resolved), valid after a chdir(). */
const char *conf_abspath(const struct conf_file *cf);
/* Adds an error at `line` of the parsed file. */
void conf_report(struct conf_errors *errs, const struct conf_file *cf, int line, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));
void conf_file_free(struct conf_file *cf);

/*
 * conf_release: frees the strings the rows of `section` hold in `base` and
 * sets them to NULL. section NULL: every row of a fixed section (no '*');
 * otherwise the rows whose section is exactly that string ("agency.*").
 */
void conf_release(const struct conf_option *options, size_t noptions, const char *section,
                  void *base);

/*
 * conf_equal: 1 when row `o` holds the same value in the structs `a` and `b` (two parses
 * of one table; strings compared by content, two NULLs equal), else 0.
 */
int conf_equal(const struct conf_option *o, const void *a, const void *b);

/*
 * Helpers for validators and cross-checks. conf_format_size/duration write
 * the shortest exact form ("1M", "90s", "2ms") into buf.
 */
const char *conf_format_size(uint64_t bytes, char *buf, size_t len);
const char *conf_format_duration(uint64_t ms, char *buf, size_t len);
/*
 * The one duration syntax, of config files and command lines: digits and a unit, ms, s, m,
 * h or d ("0" alone is 0). *ms is set on success only. Returns 0, -1 when malformed, -2
 * when the unit is missing, 1 when the value does not fit in 64 bits (of milliseconds).
 * conf_format_duration's output parses back to the same value.
 */
int conf_parse_duration(const char *s, uint64_t *ms);
/*
 * Validators more than one table uses (see conf_validator): a DNS name or an IP
 * address of at most 253 characters; an agency id (id.h).
 */
int conf_valid_hostname(void *field, char *why, size_t whylen);
int conf_valid_agency_id(void *field, char *why, size_t whylen);

#endif
