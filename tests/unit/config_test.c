/* config_test.c - the INI option-table parser, broker.conf and client.conf: values, defaults,
 * refusals. */
#define _GNU_SOURCE /* open_memstream, setenv */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clientconf.h"
#include "conf.h"
#include "config.h"
#include "error.h"
#include "log.h"

/* The Arabic names the broker must keep byte for byte. */
#define NAME_MOH "وزارة الصحة"
#define NAME_MOLSA "وزارة العمل والشؤون الاجتماعية"

struct fixture {
	char dir[256];  /* temp dir, resolved (realpath) */
	char conf[512]; /* dir/broker.conf */
	struct conf_errors errs;
	char *out; /* the printed errors of the last load */
};

/* ---- helpers ---- */

static void
write_file(const char *dir, const char *name, const char *text, mode_t mode)
{
	char path[PATH_MAX];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Placeholder PKI: the parser only needs the files to exist (keys mode 0600). */
static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char tmpl[] = "/tmp/ihala-config-test.XXXXXX";
	char pki[PATH_MAX + 8];

	char real[PATH_MAX];

	if (f == NULL || mkdtemp(tmpl) == NULL || realpath(tmpl, real) == NULL ||
	    strlen(real) >= sizeof(f->dir)) {
		free(f);
		return -1;
	}
	strcpy(f->dir, real);
	snprintf(f->conf, sizeof(f->conf), "%s/broker.conf", f->dir);
	snprintf(pki, sizeof(pki), "%s/pki", f->dir);
	conf_errors_init(&f->errs);
	if (mkdir(pki, 0755) != 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	conf_errors_release(&f->errs);
	free(f->out);
	nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void
make_pki(struct fixture *f)
{
	char pki[PATH_MAX];

	snprintf(pki, sizeof(pki), "%s/pki", f->dir);
	write_file(pki, "ca.pem", "placeholder\n", 0644);
	write_file(pki, "ca.crl", "placeholder\n", 0644);
	write_file(pki, "broker.pem", "placeholder\n", 0644);
	write_file(pki, "broker.key", "placeholder\n", 0600);
	write_file(pki, "checkpoint.key", "placeholder\n", 0600);
	write_file(pki, "moh.pem", "placeholder\n", 0644);
	write_file(pki, "moh.key", "placeholder\n", 0600);
}

/* The smallest good file: lines 1-12. */
static const char base_conf[] = "[broker]\n"                      /* 1 */
                                "data_dir = data\n"               /* 2 */
                                "[tls]\n"                         /* 3 */
                                "ca_file = pki/ca.pem\n"          /* 4 */
                                "cert_file = pki/broker.pem\n"    /* 5 */
                                "key_file = pki/broker.key\n"     /* 6 */
                                "[checkpoint]\n"                  /* 7 */
                                "key_file = pki/checkpoint.key\n" /* 8 */
                                "[agency.dma]\n"                  /* 9 */
                                "role = dma\n"                    /* 10 */
                                "[agency.moh]\n"                  /* 11 */
                                "role = ministry\n";              /* 12 */

/* Loads `text` as broker.conf; returns the code; errors printed into f->out. */
static int
load(struct fixture *f, const char *text, struct broker_config **cfg)
{
	FILE *mem;
	size_t len;
	int rc;

	make_pki(f);
	write_file(f->dir, "broker.conf", text, 0644);
	conf_errors_release(&f->errs);
	free(f->out);
	f->out = NULL;
	rc = broker_config_load(f->conf, cfg, &f->errs);
	mem = open_memstream(&f->out, &len);
	assert_non_null(mem);
	conf_errors_print(&f->errs, mem);
	fclose(mem);
	if (rc == 0) {
		assert_non_null(*cfg);
		assert_int_equal(conf_errors_count(&f->errs), 0);
	} else {
		assert_null(*cfg);
		assert_true(conf_errors_count(&f->errs) > 0);
	}
	return rc;
}

/* Loads base_conf + extra (appended) and expects a refusal. */
static void
refused(struct fixture *f, const char *text)
{
	struct broker_config *cfg = (void *)1;

	assert_int_equal(load(f, text, &cfg), IHALA_ECONFIG);
}

/* Expects exactly "CONF:LINE: msg" among the printed errors. */
static void
expect_error(struct fixture *f, int line, const char *msg)
{
	char *want = NULL;

	assert_true(asprintf(&want, "%s:%d: %s\n", f->conf, line, msg) > 0);
	if (f->out == NULL || strstr(f->out, want) == NULL) {
		fail_msg("expected error\n  %s got\n%s", want, f->out != NULL ? f->out : "(none)");
	}
	free(want);
}

static char *
concat(const char *a, const char *b)
{
	char *s = NULL;

	assert_true(asprintf(&s, "%s%s", a, b) > 0);
	return s;
}

/* ---- good files ---- */

static void
test_good_defaults(void **state)
{
	struct fixture *f = *state;
	struct broker_config *cfg = NULL;
	const struct agency_config *dma, *moh;
	char want[PATH_MAX + 32];

	assert_int_equal(load(f, base_conf, &cfg), 0);
	assert_string_equal(cfg->broker.listen, "tcp://127.0.0.1:7450");
	snprintf(want, sizeof(want), "%s/data", f->dir);
	assert_string_equal(cfg->broker.data_dir, want);
	assert_int_equal(cfg->broker.map_size, 1ULL << 30);
	assert_int_equal(cfg->broker.map_size_max, 1ULL << 40);
	assert_int_equal(cfg->broker.auto_grow, 1);
	assert_int_equal(cfg->broker.log_level, LOG_LEVEL_INFO);
	assert_string_equal(cfg->broker.log_origin, "ihala.local/log");
	assert_null(cfg->broker.user);
	assert_null(cfg->broker.metrics_listen);
	assert_null(cfg->tls.crl_file);
	assert_null(cfg->tls.server_name);
	assert_int_equal(cfg->limits.max_frame, 1 << 20);
	assert_int_equal(cfg->limits.max_sessions, 1024);
	assert_int_equal(cfg->limits.max_preauth_sessions, 64);
	assert_int_equal(cfg->limits.handshake_timeout_ms, 10000);
	assert_int_equal(cfg->limits.queue_limit, 100000);
	assert_int_equal(cfg->limits.credit_window, 64);
	assert_int_equal(cfg->limits.max_inflight, 1024);
	assert_int_equal(cfg->limits.out_cap, 4 << 20);
	assert_int_equal(cfg->limits.idle_timeout_ms, 0);
	assert_int_equal(cfg->limits.retention_ms, 0); /* never, by default */
	assert_int_equal(cfg->commit.max_batch, 1024);
	assert_int_equal(cfg->checkpoint.every_entries, 1000);
	assert_int_equal(cfg->checkpoint.every_ms, 10000);
	assert_int_equal(cfg->deadlines.emergency_ms, 24ULL * 3600 * 1000);
	assert_int_equal(cfg->deadlines.urgent_ms, 72ULL * 3600 * 1000);
	assert_int_equal(cfg->deadlines.normal_ms, 14ULL * 86400 * 1000);

	assert_int_equal(cfg->nagencies, 2);
	assert_string_equal(cfg->agencies[0].id, "dma");
	assert_string_equal(cfg->agencies[1].id, "moh");
	dma = broker_config_find_agency(cfg, "dma");
	moh = broker_config_find_agency(cfg, "moh");
	assert_ptr_equal(dma, &cfg->agencies[0]);
	assert_ptr_equal(moh, &cfg->agencies[1]);
	assert_null(broker_config_find_agency(cfg, "molsa"));
	assert_ptr_equal(broker_config_find_cn(cfg, "moh"), moh);
	assert_int_equal(dma->role, AGENCY_ROLE_DMA);
	assert_int_equal(moh->role, AGENCY_ROLE_MINISTRY);
	assert_string_equal(moh->cn, "moh");
	assert_string_equal(moh->name, "moh");
	assert_null(moh->fingerprint);
	assert_int_equal(dma->line, 9);
	assert_int_equal(moh->line, 11);
	assert_int_equal(dma->may_send_set, 0);
	assert_int_equal(dma->may_send,
	                 POLICY_KIND_REFERRAL | POLICY_KIND_STATUS | POLICY_KIND_NOTE);
	assert_int_equal(moh->may_send, POLICY_KIND_REFERRAL | POLICY_KIND_STATUS |
	                                    POLICY_KIND_OUTCOME | POLICY_KIND_NOTE);
	assert_int_equal(moh->may_send_to_any, 1);
	assert_int_equal(moh->may_send_to_count, 0);
	assert_string_equal(broker_config_role_name(AGENCY_ROLE_NGO), "ngo");
	assert_string_equal(broker_config_role_name(99), "unknown");
	broker_config_free(cfg);
}

static void
test_good_values(void **state)
{
	struct fixture *f = *state;
	struct broker_config *cfg = NULL;
	const struct agency_config *a;
	/* base_conf with its [broker] section replaced, then more */
	char *text = concat("[broker]\n"
	                    "listen = tcp://[::1]:9000\n"
	                    "metrics_listen = tcp://127.0.0.1:9750\n"
	                    "map_size = 2G\n"
	                    "map_size_max = 4G\n"
	                    "auto_grow = no\n"
	                    "log_level = debug\n"
	                    "log_origin = example.org/ihala\n"
	                    "data_dir = /tmp\n",
	                    base_conf + strlen("[broker]\ndata_dir = data\n"));
	char *more = concat(text, "name = \"" NAME_MOH "\"\n"
	                          "cn = moh.health.gov.iq\n"
	                          "fingerprint = AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:"
	                          "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\n"
	                          "may_send = status, outcome\n"
	                          "may_send_to = dma molsa\n"
	                          "[agency.molsa]\n"
	                          "role = ministry\n"
	                          "name = " NAME_MOLSA " ; a comment\n"
	                          "[agency.hi]\n"
	                          "role = ngo\n"
	                          "name = Handicap International\n"
	                          "fingerprint = 00112233445566778899aabbccddeeff0011223344"
	                          "5566778899AABBCCDDEEFF\n"
	                          "[agency.auditor]\n"
	                          "role = auditor\n"
	                          "may_send = none\n"
	                          "[limits]\n"
	                          "max_frame = 64K\n"
	                          "handshake_timeout = 500ms\n"
	                          "out_cap = 2m\n"
	                          "idle_timeout = 2d\n"
	                          "retention = 30d\n"
	                          "max_sessions: 100000\n"
	                          "[commit]\n"
	                          "max_batch = 16\n"
	                          "[deadlines]\n"
	                          "emergency = 90m\n");

	free(text);
	text = more;
	if (load(f, text, &cfg) != 0) {
		fail_msg("%s", f->out);
	}
	free(text);
	assert_string_equal(cfg->broker.listen, "tcp://[::1]:9000");
	assert_string_equal(cfg->broker.metrics_listen, "tcp://127.0.0.1:9750");
	assert_int_equal(cfg->broker.map_size, 2ULL << 30);
	assert_int_equal(cfg->broker.map_size_max, 4ULL << 30);
	assert_int_equal(cfg->broker.auto_grow, 0);
	assert_int_equal(cfg->broker.log_level, LOG_LEVEL_DEBUG);
	assert_string_equal(cfg->broker.log_origin, "example.org/ihala");
	assert_string_equal(cfg->broker.data_dir, "/tmp");
	assert_int_equal(cfg->limits.max_frame, 64 << 10);
	assert_int_equal(cfg->limits.handshake_timeout_ms, 500);
	assert_int_equal(cfg->limits.out_cap, 2 << 20);
	assert_int_equal(cfg->limits.idle_timeout_ms, 2ULL * 86400 * 1000);
	assert_int_equal(cfg->limits.retention_ms, 30ULL * 86400 * 1000);
	assert_int_equal(cfg->limits.max_sessions, 100000);
	assert_int_equal(cfg->commit.max_batch, 16);
	assert_int_equal(cfg->deadlines.emergency_ms, 90ULL * 60 * 1000);

	assert_int_equal(cfg->nagencies, 5);
	a = broker_config_find_agency(cfg, "moh");
	assert_non_null(a);
	/* UTF-8 kept byte for byte, the quotes dropped */
	assert_string_equal(a->name, NAME_MOH);
	assert_string_equal(a->cn, "moh.health.gov.iq");
	assert_ptr_equal(broker_config_find_cn(cfg, "moh.health.gov.iq"), a);
	assert_null(broker_config_find_cn(cfg, "moh"));
	assert_string_equal(a->fingerprint,
	                    "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
	assert_int_equal(a->fingerprint_bin[0], 0xab);
	assert_int_equal(a->fingerprint_bin[31], 0x89);
	assert_int_equal(a->may_send_set, 1);
	assert_int_equal(a->may_send, POLICY_KIND_STATUS | POLICY_KIND_OUTCOME);
	assert_int_equal(a->may_send_to_any, 0);
	assert_int_equal(a->may_send_to_count, 2);
	assert_string_equal(a->may_send_to[0], "dma");
	assert_string_equal(a->may_send_to[1], "molsa");

	a = broker_config_find_agency(cfg, "molsa");
	assert_string_equal(a->name, NAME_MOLSA); /* inline comment dropped */
	a = broker_config_find_agency(cfg, "hi");
	assert_int_equal(a->role, AGENCY_ROLE_NGO);
	assert_string_equal(a->fingerprint,
	                    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
	assert_int_equal(a->fingerprint_bin[31], 0xff);
	a = broker_config_find_agency(cfg, "auditor");
	assert_int_equal(a->role, AGENCY_ROLE_AUDITOR);
	assert_int_equal(a->may_send, 0);
	assert_int_equal(a->may_send_to_any, 0);
	broker_config_free(cfg);
}

/* Who may open a case is its own option: an NGO's may_send written out as its role's
 * documented default ("referral, status, outcome, note") means what leaving it out means. */
static void
test_may_open_cases(void **state)
{
	struct fixture *f = *state;
	struct broker_config *cfg = NULL;
	char *text = concat(base_conf, "[agency.hi]\n"
	                               "role = ngo\n"
	                               "may_send = referral, status, outcome, note\n"
	                               "[agency.ngo2]\n"
	                               "role = ngo\n"
	                               "[agency.ngo3]\n"
	                               "role = ngo\n"
	                               "may_open_cases = yes\n"
	                               "[agency.molsa]\n"
	                               "role = ministry\n"
	                               "may_open_cases = no\n");

	if (load(f, text, &cfg) != 0) {
		fail_msg("%s", f->out);
	}
	free(text);
	assert_int_equal(broker_config_find_agency(cfg, "dma")->may_open_cases, 1);
	assert_int_equal(broker_config_find_agency(cfg, "moh")->may_open_cases, 0);
	assert_int_equal(broker_config_find_agency(cfg, "hi")->may_open_cases, 0);
	assert_int_equal(broker_config_find_agency(cfg, "ngo2")->may_open_cases, 0);
	assert_int_equal(broker_config_find_agency(cfg, "ngo3")->may_open_cases, 1);
	assert_int_equal(broker_config_find_agency(cfg, "molsa")->may_open_cases, 0);
	broker_config_free(cfg);

	text = concat(base_conf, "may_open_cases = perhaps\n"); /* 13 */
	assert_int_not_equal(load(f, text, &cfg), 0);
	free(text);
	assert_non_null(strstr(f->out, "13"));
	assert_non_null(strstr(f->out, "expected yes or no"));
}

/* Relative paths resolve against the config file's directory, not the cwd. */
static void
test_relative_paths(void **state)
{
	struct fixture *f = *state;
	struct broker_config *cfg = NULL;
	char want[PATH_MAX + 32], cwd[PATH_MAX];

	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir("/"), 0);
	assert_int_equal(load(f, base_conf, &cfg), 0);
	assert_int_equal(chdir(cwd), 0);
	assert_string_equal(cfg->dir, f->dir);
	assert_string_equal(cfg->path, f->conf); /* absolute: f->conf is */
	snprintf(want, sizeof(want), "%s/pki/ca.pem", f->dir);
	assert_string_equal(cfg->tls.ca_file, want);
	snprintf(want, sizeof(want), "%s/pki/broker.key", f->dir);
	assert_string_equal(cfg->tls.key_file, want);
	snprintf(want, sizeof(want), "%s/pki/checkpoint.key", f->dir);
	assert_string_equal(cfg->checkpoint.key_file, want);
	broker_config_free(cfg);
	cfg = NULL;

	/* a relative config path: cfg->path comes back absolute (reloads run after chdir) */
	assert_int_equal(chdir(f->dir), 0);
	assert_int_equal(mkdir("sub", 0755), 0);
	assert_int_equal(rename("broker.conf", "sub/broker.conf"), 0);
	conf_errors_release(&f->errs);
	assert_int_equal(broker_config_load("sub/broker.conf", &cfg, &f->errs), IHALA_ECONFIG);
	assert_int_equal(chdir(cwd), 0);
	/* errors name the file as given; pki/ is not next to sub/broker.conf */
	assert_string_equal(f->errs.v[0].file, "sub/broker.conf");
	assert_int_equal(f->errs.v[0].line, 4);

	snprintf(want, sizeof(want), "%s/pki", f->dir);
	assert_int_equal(chdir(f->dir), 0);
	assert_int_equal(symlink(want, "sub/pki"), 0);
	conf_errors_release(&f->errs);
	assert_int_equal(broker_config_load("sub/broker.conf", &cfg, &f->errs), 0);
	assert_int_equal(chdir(cwd), 0);
	snprintf(want, sizeof(want), "%s/sub/broker.conf", f->dir);
	assert_string_equal(cfg->path, want);
	snprintf(want, sizeof(want), "%s/sub", f->dir);
	assert_string_equal(cfg->dir, want);
	snprintf(want, sizeof(want), "%s/sub/pki/ca.pem", f->dir);
	assert_string_equal(cfg->tls.ca_file, want);
	broker_config_free(cfg);
}

/* A file that begins with a UTF-8 BOM, has CRLF line ends, blank and comment lines. */
static void
test_syntax_accepted(void **state)
{
	struct fixture *f = *state;
	struct broker_config *cfg = NULL;
	char *text = concat("\xEF\xBB\xBF# comment\r\n"
	                    "; another\r\n"
	                    "\r\n"
	                    "  [ limits ]   # trailing comment\r\n"
	                    "\tcredit_window = 7\r\n",
	                    base_conf);

	if (load(f, text, &cfg) != 0) {
		fail_msg("%s", f->out);
	}
	assert_int_equal(cfg->limits.credit_window, 7);
	assert_int_equal(cfg->agencies[0].line, 14);
	broker_config_free(cfg);
	free(text);
}

/* ---- refusals, each with its exact FILE:LINE: message ---- */

static void
test_unknown_option(void **state)
{
	struct fixture *f = *state;
	char *text = concat(base_conf, "[limits]\n"        /* 13 */
	                               "max_sesions = 5\n" /* 14 */
	                               "credit = 3\n"      /* 15 */
	                               "[broker]x\n");     /* 16 */

	refused(f, text);
	expect_error(f, 14,
	             "unknown option 'max_sesions' in [limits] (did you mean 'max_sessions'?)");
	expect_error(f, 15, "unknown option 'credit' in [limits]");
	expect_error(f, 16, "unexpected text after section header");
	free(text);

	text = concat("[broker]\nlistn = tcp://127.0.0.1:1\n", base_conf + 9);
	refused(f, text);
	expect_error(f, 2, "unknown option 'listn' in [broker] (did you mean 'listen'?)");
	free(text);

	text = concat(base_conf, "[brokr]\nlisten = x\n[agnecy.hi]\nrole = ngo\n");
	refused(f, text);
	expect_error(f, 13, "unknown section [brokr] (did you mean [broker]?)");
	expect_error(f, 15, "unknown section [agnecy.hi] (did you mean [agency.hi]?)");
	/* options of an unknown section are not reported one by one */
	assert_null(strstr(f->out, ":14:"));
	free(text);
}

static void
test_out_of_range(void **state)
{
	struct fixture *f = *state;
	char *text = concat(base_conf, "[limits]\n"                                /* 13 */
	                               "max_sessions = 99999999\n"                 /* 14 */
	                               "max_frame = 32M\n"                         /* 15 */
	                               "handshake_timeout = 1h\n"                  /* 16 */
	                               "queue_limit = 0\n"                         /* 17 */
	                               "credit_window = 99999999999999999999999\n" /* 18 */
	                               "out_cap = 20000000T\n");                   /* 19 */

	refused(f, text);
	expect_error(f, 14, "value 99999999 for 'max_sessions' is out of range (1..100000)");
	expect_error(f, 15, "value 32M for 'max_frame' is out of range (4K..16M)");
	expect_error(f, 16, "value 1h for 'handshake_timeout' is out of range (100ms..5m)");
	expect_error(f, 17, "value 0 for 'queue_limit' is out of range (1..100000000)");
	expect_error(f, 18,
	             "value 99999999999999999999999 for 'credit_window' is out of range "
	             "(1..65536)");
	expect_error(f, 19, "value 20000000T for 'out_cap' is out of range (64K..1G)");
	free(text);
}

static void
test_bad_numbers(void **state)
{
	struct fixture *f = *state;
	char *text = concat(base_conf, "[limits]\n"               /* 13 */
	                               "max_frame = 10X\n"        /* 14 */
	                               "out_cap = 1 M\n"          /* 15 */
	                               "handshake_timeout = 10\n" /* 16 */
	                               "idle_timeout = 10x\n"     /* 17 */
	                               "max_sessions = -1\n"      /* 18 */
	                               "queue_limit = 0x10\n"     /* 19 */
	                               "credit_window = +5\n"     /* 20 */
	                               "max_inflight = 12abc\n"   /* 21 */
	                               "[broker]\n");             /* 22: duplicate */

	refused(f, text);
	expect_error(f, 14,
	             "invalid size '10X' for 'max_frame' (use a number with an optional K, "
	             "M, G or T suffix)");
	expect_error(f, 15,
	             "invalid size '1 M' for 'out_cap' (use a number with an optional K, "
	             "M, G or T suffix)");
	expect_error(f, 16,
	             "duration '10' for 'handshake_timeout' has no unit (add ms, s, m, h "
	             "or d)");
	expect_error(f, 17,
	             "invalid duration '10x' for 'idle_timeout' (use a number followed by "
	             "ms, s, m, h or d)");
	expect_error(f, 18, "invalid number '-1' for 'max_sessions'");
	expect_error(f, 19, "invalid number '0x10' for 'queue_limit'");
	expect_error(f, 20, "invalid number '+5' for 'credit_window'");
	expect_error(f, 21, "invalid number '12abc' for 'max_inflight'");
	expect_error(f, 22, "duplicate section [broker] (first at line 1)");
	free(text);

	text = concat(base_conf, "[limits]\nretention = 30\n");
	refused(f, text);
	expect_error(f, 14, "duration '30' for 'retention' has no unit (add ms, s, m, h or d)");
	free(text);
	text = concat(base_conf, "[limits]\nretention = 36501d\n");
	refused(f, text);
	expect_error(f, 14, "value 36501d for 'retention' is out of range (0..36500d)");
	free(text);

	text = concat("[broker]\nauto_grow = maybe\nlog_level = verbose\n", base_conf + 9);
	refused(f, text);
	expect_error(f, 2, "invalid boolean 'maybe' for 'auto_grow' (use yes or no)");
	expect_error(f, 3,
	             "invalid value 'verbose' for 'log_level' (expected error, warn, info or "
	             "debug)");
	free(text);
}

static void
test_endpoints(void **state)
{
	struct fixture *f = *state;
	char *text = concat("[broker]\n"
	                    "listen = udp://127.0.0.1:7450\n" /* 2 */
	                    "metrics_listen = tcp://host\n",  /* 3 */
	                    base_conf + 9);

	refused(f, text);
	expect_error(f, 2,
	             "invalid endpoint 'udp://127.0.0.1:7450' for 'listen' (expected "
	             "tcp://HOST:PORT)");
	expect_error(f, 3,
	             "invalid endpoint 'tcp://host' for 'metrics_listen' (expected "
	             "tcp://HOST:PORT)");
	free(text);

	text = concat("[broker]\n"
	              "listen = tcp://127.0.0.1:70000\n" /* 2 */
	              "metrics_listen = tcp://a b:80\n", /* 3 */
	              base_conf + 9);
	refused(f, text);
	expect_error(f, 2,
	             "invalid endpoint 'tcp://127.0.0.1:70000' for 'listen' (port must be "
	             "1..65535)");
	expect_error(f, 3,
	             "invalid endpoint 'tcp://a b:80' for 'metrics_listen' (invalid "
	             "character in host name)");
	free(text);

	text = concat("[broker]\n"
	              "listen = tcp://*:7450\n"
	              "metrics_listen = tcp://localhost:7450\n",
	              base_conf + 9);
	{
		struct broker_config *cfg = NULL;

		assert_int_equal(load(f, text, &cfg), 0);
		assert_string_equal(cfg->broker.listen, "tcp://*:7450");
		broker_config_free(cfg);
	}
	free(text);
}

static void
test_missing_file(void **state)
{
	struct fixture *f = *state;
	char msg[PATH_MAX + 128];
	char *text =
	    concat("[tls]\n"
	           "ca_file = pki/nope.pem\n"    /* 2 */
	           "cert_file = /x/broker.pem\n" /* 3 */
	           "key_file = pki\n"            /* 4: a directory */
	           "crl_file = pki/ca.crl/x\n",  /* 5 */
	           base_conf + strlen("[broker]\ndata_dir = data\n[tls]\nca_file = pki/ca.pem\n"
	                              "cert_file = pki/broker.pem\nkey_file = pki/broker.key\n"));
	refused(f, text);
	snprintf(msg, sizeof(msg), "file '%s/pki/nope.pem' for 'ca_file' does not exist", f->dir);
	expect_error(f, 2, msg);
	expect_error(f, 3, "file '/x/broker.pem' for 'cert_file' does not exist");
	snprintf(msg, sizeof(msg), "'%s/pki' for 'key_file' is not a regular file", f->dir);
	expect_error(f, 4, msg);
	snprintf(msg, sizeof(msg), "file '%s/pki/ca.crl/x' for 'crl_file' does not exist", f->dir);
	expect_error(f, 5, msg);
	free(text);

	/* the config file itself */
	{
		struct broker_config *cfg = (void *)1;
		FILE *mem;
		size_t len;
		char path[PATH_MAX + 16];

		snprintf(path, sizeof(path), "%s/absent.conf", f->dir);
		conf_errors_release(&f->errs);
		assert_int_equal(broker_config_load(path, &cfg, &f->errs), IHALA_ECONFIG);
		assert_null(cfg);
		free(f->out);
		mem = open_memstream(&f->out, &len);
		conf_errors_print(&f->errs, mem);
		fclose(mem);
		snprintf(msg, sizeof(msg),
		         "%s:0: cannot open config file: No such file or directory\n", path);
		assert_string_equal(f->out, msg);

		conf_errors_release(&f->errs);
		assert_int_equal(broker_config_load(f->dir, &cfg, &f->errs), IHALA_ECONFIG);
		assert_null(cfg);
		assert_int_equal(conf_errors_count(&f->errs), 1);
		assert_string_equal(f->errs.v[0].msg, "config file is not a regular file");
	}
}

static void
test_key_permissions(void **state)
{
	struct fixture *f = *state;
	struct broker_config *cfg = NULL;
	char key[512], msg[1024];

	/* make_pki() leaves this one alone: its mode is the test's */
	snprintf(key, sizeof(key), "%s/pki/loose.key", f->dir);
	write_file(f->dir, "pki/loose.key", "placeholder\n", 0644);
	/* build the file by hand: key_file on line 6 points at loose.key */
	{
		char text[2048];

		snprintf(text, sizeof(text),
		         "[broker]\ndata_dir = data\n[tls]\nca_file = pki/ca.pem\n"
		         "cert_file = pki/broker.pem\nkey_file = pki/loose.key\n%s",
		         base_conf +
		             strlen("[broker]\ndata_dir = data\n[tls]\nca_file = pki/ca.pem\n"
		                    "cert_file = pki/broker.pem\nkey_file = pki/broker.key\n"));
		refused(f, text);
		snprintf(msg, sizeof(msg),
		         "private key '%s' is readable by group or others (chmod 600 it)", key);
		expect_error(f, 6, msg);

		assert_int_equal(chmod(key, 0640), 0);
		refused(f, text);
		expect_error(f, 6, msg);

		assert_int_equal(chmod(key, 0604), 0);
		refused(f, text);
		expect_error(f, 6, msg);

		assert_int_equal(chmod(key, 0620), 0);
		refused(f, text);
		snprintf(msg, sizeof(msg),
		         "private key '%s' is accessible by group or others (chmod 600 it)", key);
		expect_error(f, 6, msg);

		assert_int_equal(chmod(key, 0600), 0);
		assert_int_equal(load(f, text, &cfg), 0);
		broker_config_free(cfg);
		cfg = NULL;

		assert_int_equal(chmod(key, 0400), 0);
		assert_int_equal(load(f, text, &cfg), 0);
		broker_config_free(cfg);
		cfg = NULL;

		/* a key owned by someone else (only root can make one) */
		if (geteuid() == 0) {
			assert_int_equal(chmod(key, 0600), 0);
			assert_int_equal(chown(key, 4242, 4242), 0);
			refused(f, text);
			snprintf(msg, sizeof(msg),
			         "private key '%s' is owned by uid 4242, not by root or the user "
			         "running this program (uid 0)",
			         key);
			expect_error(f, 6, msg);
		}
	}

	/* the checkpoint key gets the same check */
	{
		char text[2048];

		assert_int_equal(chmod(key, 0644), 0);
		snprintf(text, sizeof(text), "%.*s[checkpoint]\nkey_file = %s\n%s",
		         (int)(strstr(base_conf, "[checkpoint]") - base_conf), base_conf, key,
		         strstr(base_conf, "[agency.dma]"));
		refused(f, text);
		snprintf(msg, sizeof(msg),
		         "private key '%s' is readable by group or others (chmod 600 it)", key);
		expect_error(f, 8, msg);
	}
}

static void
test_duplicates(void **state)
{
	struct fixture *f = *state;
	char *text = concat(base_conf, "role = dma\n"   /* 13: duplicate option */
	                               "[agency.dma]\n" /* 14: duplicate agency */
	                               "role = ngo\n"); /* 15: ignored */

	refused(f, text);
	expect_error(f, 13, "duplicate option 'role' in [agency.moh] (first set at line 12)");
	expect_error(f, 14, "duplicate section [agency.dma] (first at line 9)");
	assert_null(strstr(f->out, ":15:"));
	free(text);

	text =
	    concat(base_conf, "[agency.molsa]\n" /* 13 */
	                      "role = ministry\n"
	                      "cn = moh\n"     /* 15 */
	                      "fingerprint = " /* 16 */
	                      "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"
	                      "[agency.hi]\n"
	                      "role = ngo\n"
	                      "fingerprint = " /* 19 */
	                      "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:"
	                      "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff\n");
	refused(f, text);
	expect_error(f, 15,
	             "agency 'molsa' has the certificate name 'moh' of agency 'moh' (each "
	             "agency needs its own)");
	expect_error(f, 19, "agency 'hi' pins the same certificate fingerprint as agency 'molsa'");
	free(text);
}

static void
test_agency_refusals(void **state)
{
	struct fixture *f = *state;
	char *long_id = NULL;
	char *text = concat(base_conf, "[agency.hi]\n"                     /* 13 */
	                               "role = charity\n"                  /* 14 */
	                               "[agency.MoH]\n"                    /* 15 */
	                               "role = ministry\n"                 /* 16 */
	                               "[agency.auditor]\n"                /* 17 */
	                               "role = auditor\n"                  /* 18 */
	                               "may_send = note\n"                 /* 19 */
	                               "may_send_to = dma\n"               /* 20 */
	                               "[agency.ngo2]\n"                   /* 21 */
	                               "role = ngo\n"                      /* 22 */
	                               "may_send = referral, gossip\n"     /* 23 */
	                               "may_send_to = mohh, dma, nobody\n" /* 24 */
	                               "fingerprint = 12:34\n"             /* 25 */
	                               "[agency.x]\n"                      /* 26: no role */
	                               "name = X\n"                        /* 27 */
	                               "[agency.]\n");                     /* 28 */

	refused(f, text);
	expect_error(f, 14,
	             "invalid value 'charity' for 'role' (expected dma, ministry, ngo or "
	             "auditor)");
	expect_error(f, 15,
	             "invalid section [agency.MoH]: an agency id is 1..32 characters of "
	             "a-z, 0-9, '_' and '-'");
	expect_error(f, 19,
	             "agency 'auditor' is an auditor and may not send messages (remove "
	             "'may_send' or set it to none)");
	expect_error(f, 20,
	             "agency 'auditor' is an auditor and may not send messages (remove "
	             "'may_send_to')");
	expect_error(f, 23,
	             "invalid value 'referral, gossip' for 'may_send': unknown message kind "
	             "'gossip' (expected referral, status, outcome, note or none)");
	expect_error(f, 24,
	             "unknown agency 'mohh' in 'may_send_to' of [agency.ngo2] (did you "
	             "mean 'moh'?)");
	expect_error(f, 24, "unknown agency 'nobody' in 'may_send_to' of [agency.ngo2]");
	expect_error(f, 25,
	             "invalid value '12:34' for 'fingerprint': expected a SHA-256 as 64 hex "
	             "digits, with or without ':' between bytes");
	expect_error(f, 26, "missing required option 'role' in [agency.x]");
	expect_error(f, 28, "unknown section [agency.]");
	free(text);

	/* an id of 33 characters */
	assert_true(asprintf(&long_id, "%s[agency.%033d]\nrole = ngo\n", base_conf, 0) > 0);
	refused(f, long_id);
	expect_error(f, 13,
	             "invalid section [agency.000000000000000000000000000000000]: an agency "
	             "id is 1..32 characters of a-z, 0-9, '_' and '-'");
	free(long_id);

	/* may_send_to "*" mixed with ids; "none" mixed with kinds */
	text = concat(base_conf, "may_send_to = *, dma\nmay_send = none note\n");
	refused(f, text);
	expect_error(f, 13,
	             "invalid value '*, dma' for 'may_send_to': '*' cannot be combined "
	             "with agency ids");
	expect_error(f, 14,
	             "invalid value 'none note' for 'may_send': 'none' cannot be combined "
	             "with message kinds");
	free(text);
}

/* ---- encryption certificates (the directory) ---- */

/* A certificate (self-signed, P-256, CN=moh): the broker only reads it, nodes judge it. */
static const char enc_pem[] = "-----BEGIN CERTIFICATE-----\n"
                              "MIIBcTCCARegAwIBAgIUFbOpsIE1u63aTlMpvpQzZHrMabUwCgYIKoZIzj0EAwIw\n"
                              "DjEMMAoGA1UEAwwDbW9oMB4XDTI2MTIwMzA2NTkyM1oXDTM2MTEzMDA2NTkyM1ow\n"
                              "DjEMMAoGA1UEAwwDbW9oMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEH0PbAaYW\n"
                              "/g4FO/mvsZTElJP4h1s07EjJEaQcZnQaJYaUVAoD9N24D9wWNsxblFYsFinDRfhb\n"
                              "48JXwuFXv1+cQKNTMFEwHQYDVR0OBBYEFDe1i+jMER2h8q6CSlMM7CSlgAAMMB8G\n"
                              "A1UdIwQYMBaAFDe1i+jMER2h8q6CSlMM7CSlgAAMMA8GA1UdEwEB/wQFMAMBAf8w\n"
                              "CgYIKoZIzj0EAwIDSAAwRQIgRhH3om2NjCIPsVYtw0kN2xeD2hK+8e640l7BeyN8\n"
                              "IlgCIQCfS8/y/r4lbCQcFzIoR41cnf5XQjSkyBmnZf9GBvpk5g==\n"
                              "-----END CERTIFICATE-----\n";
/* Its DER: 0x30 0x82 0x01 0x71, then 0x171 bytes. */
#define ENC_DER_LEN (4 + 0x171)

static void
test_encryption_cert(void **state)
{
	struct fixture *f = *state;
	struct broker_config *cfg = NULL;
	const struct agency_config *a;
	char pki[PATH_MAX], want[PATH_MAX + 32], two[2 * sizeof(enc_pem)];
	char *text;

	make_pki(f);
	snprintf(pki, sizeof(pki), "%s/pki", f->dir);
	write_file(pki, "moh-enc.crt", enc_pem, 0644);
	snprintf(two, sizeof(two), "%s%s", enc_pem, enc_pem);
	write_file(pki, "two.crt", two, 0644);

	/* not set: none; several files, one holding two certificates: three, in order */
	assert_int_equal(load(f, base_conf, &cfg), 0);
	assert_int_equal(broker_config_find_agency(cfg, "moh")->n_enc_certs, 0);
	broker_config_free(cfg);
	text = concat(base_conf, "encryption_cert = pki/moh-enc.crt  " /* 13 */
	                         "pki/two.crt\n");
	assert_int_equal(load(f, text, &cfg), 0);
	a = broker_config_find_agency(cfg, "moh");
	assert_int_equal(a->n_enc_certs, 3);
	snprintf(want, sizeof(want), "%s/pki/moh-enc.crt", f->dir);
	assert_string_equal(a->enc_certs[0].path, want);
	snprintf(want, sizeof(want), "%s/pki/two.crt", f->dir);
	assert_string_equal(a->enc_certs[2].path, want);
	assert_int_equal(a->enc_certs[0].len, ENC_DER_LEN);
	assert_int_equal(a->enc_certs[0].der[0], 0x30);
	assert_memory_equal(a->enc_certs[0].der, a->enc_certs[2].der, ENC_DER_LEN);
	assert_int_equal(broker_config_find_agency(cfg, "dma")->n_enc_certs, 0);
	broker_config_free(cfg);
	cfg = NULL;
	free(text);

	/* an absolute path */
	snprintf(want, sizeof(want), "%sencryption_cert = %s/pki/moh-enc.crt\n", base_conf, f->dir);
	assert_int_equal(load(f, want, &cfg), 0);
	assert_int_equal(broker_config_find_agency(cfg, "moh")->n_enc_certs, 1);
	broker_config_free(cfg);
}

static void
test_encryption_cert_refusals(void **state)
{
	struct fixture *f = *state;
	char pki[PATH_MAX], many[17 * sizeof(enc_pem)], *text;
	size_t i, o = 0;

	make_pki(f);
	snprintf(pki, sizeof(pki), "%s/pki", f->dir);
	write_file(pki, "moh-enc.crt", enc_pem, 0644);
	write_file(pki, "key.pem",
	           "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n", 0600);
	write_file(pki, "junk.crt", "not a certificate\n", 0644);
	write_file(pki, "empty.crt", "", 0644);
	/* a CERTIFICATE block whose bytes are not X.509 ("not x509") */
	write_file(pki, "notx509.crt",
	           "-----BEGIN CERTIFICATE-----\nbm90IHg1MDk=\n-----END CERTIFICATE-----\n", 0644);
	/* a good certificate, then a block that is not base64 */
	text = concat(enc_pem, "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");
	write_file(pki, "tail.crt", text, 0644);
	free(text);
	for (i = 0; i < 17; i++) {
		o += (size_t)snprintf(many + o, sizeof(many) - o, "%s", enc_pem);
	}
	write_file(pki, "many.crt", many, 0644);

	text = concat(base_conf, "encryption_cert = pki/key.pem\n"     /* 13 */
	                         "[agency.a1]\nrole = ngo\n"           /* 14, 15 */
	                         "encryption_cert = pki/junk.crt\n"    /* 16 */
	                         "[agency.a2]\nrole = ngo\n"           /* 17, 18 */
	                         "encryption_cert = pki/absent.crt\n"  /* 19 */
	                         "[agency.a3]\nrole = ngo\n"           /* 20, 21 */
	                         "encryption_cert = pki/notx509.crt\n" /* 22 */
	                         "[agency.a4]\nrole = ngo\n"           /* 23, 24 */
	                         "encryption_cert = pki/tail.crt\n"    /* 25 */
	                         "[agency.a5]\nrole = ngo\n"           /* 26, 27 */
	                         "encryption_cert = pki/many.crt\n"    /* 28 */
	                         "[agency.a6]\nrole = ngo\n"           /* 29, 30 */
	                         "encryption_cert = pki/empty.crt\n"   /* 31 */
	                         "[agency.a7]\nrole = ngo\n"           /* 32, 33 */
	                         "encryption_cert = \" \"\n");         /* 34 */
	refused(f, text);
	free(text);
	assert_true(asprintf(&text,
	                     "'%s/pki/key.pem' (encryption certificate of agency 'moh') holds a "
	                     "PEM 'PRIVATE KEY', not a certificate",
	                     f->dir) > 0);
	expect_error(f, 13, text);
	free(text);
	assert_true(asprintf(&text,
	                     "'%s/pki/junk.crt' (encryption certificate of agency 'a1') is not a "
	                     "PEM certificate (no '-----BEGIN CERTIFICATE-----' block)",
	                     f->dir) > 0);
	expect_error(f, 16, text);
	free(text);
	assert_true(asprintf(&text,
	                     "cannot read encryption certificate '%s/pki/absent.crt' of agency "
	                     "'a2' (check that the file exists and is readable)",
	                     f->dir) > 0);
	expect_error(f, 19, text);
	free(text);
	assert_true(asprintf(&text,
	                     "'%s/pki/notx509.crt' (encryption certificate of agency 'a3'): "
	                     "certificate 1 does not decode as X.509",
	                     f->dir) > 0);
	expect_error(f, 22, text);
	free(text);
	assert_true(asprintf(&text,
	                     "'%s/pki/tail.crt' (encryption certificate of agency 'a4'): a "
	                     "malformed PEM block after certificate 1",
	                     f->dir) > 0);
	expect_error(f, 25, text);
	free(text);
	expect_error(f, 28, "agency 'a5' lists more than 16 encryption certificates");
	assert_true(asprintf(&text,
	                     "'%s/pki/empty.crt' (encryption certificate of agency 'a6') is not a "
	                     "PEM certificate (no '-----BEGIN CERTIFICATE-----' block)",
	                     f->dir) > 0);
	expect_error(f, 31, text);
	free(text);
	expect_error(f, 34,
	             "invalid value ' ' for 'encryption_cert': expected one or more file paths "
	             "separated by spaces");
}

static void
test_missing_required(void **state)
{
	struct fixture *f = *state;
	/* no [tls] at all, [checkpoint] without its key, no agency */
	refused(f, "[broker]\n"
	           "data_dir = data\n"
	           "[checkpoint]\n" /* 3 */
	           "every_entries = 10\n");
	expect_error(f, 0, "missing required option 'ca_file' in [tls]");
	expect_error(f, 0, "missing required option 'cert_file' in [tls]");
	expect_error(f, 0, "missing required option 'key_file' in [tls]");
	expect_error(f, 3, "missing required option 'key_file' in [checkpoint]");
	expect_error(f, 0, "no agency configured (add an [agency.ID] section)");

	/* an empty value is not an absent option */
	{
		char *text = concat("[tls]\ncrl_file =\n",
		                    base_conf + strlen("[broker]\ndata_dir = data\n[tls]\n"));
		refused(f, text);
		expect_error(f, 2, "empty value for 'crl_file'");
		free(text);
	}
}

static void
test_data_dir(void **state)
{
	struct fixture *f = *state;
	char *text = concat("[broker]\ndata_dir = pki/ca.pem\n",
	                    base_conf + strlen("[broker]\ndata_dir = data\n"));
	char msg[PATH_MAX + 128];

	refused(f, text);
	snprintf(msg, sizeof(msg), "'%s/pki/ca.pem' for 'data_dir' is not a directory", f->dir);
	expect_error(f, 2, msg);
	free(text);

	text = concat("[broker]\ndata_dir = no/such/dir\n",
	              base_conf + strlen("[broker]\ndata_dir = data\n"));
	refused(f, text);
	snprintf(msg, sizeof(msg),
	         "directory '%s/no/such/dir' for 'data_dir' does not exist, nor does its parent "
	         "'%s/no/such'",
	         f->dir, f->dir);
	expect_error(f, 2, msg);
	free(text);
}

static void
test_cross_checks(void **state)
{
	struct fixture *f = *state;
	char *text = concat("[broker]\n"
	                    "data_dir = data\n"
	                    "map_size = 8G\n"                      /* 3 */
	                    "map_size_max = 2G\n"                  /* 4 */
	                    "listen = tcp://127.0.0.1:1\n"         /* 5 */
	                    "metrics_listen = tcp://127.0.0.1:1\n" /* 6 */
	                    "[limits]\n"                           /* 7 */
	                    "max_sessions = 10\n"                  /* 8 */
	                    "max_preauth_sessions = 11\n"          /* 9 */
	                    "max_frame = 8M\n"                     /* 10 */
	                    "out_cap = 4M\n"                       /* 11 */
	                    "[deadlines]\n"                        /* 12 */
	                    "emergency = 4d\n"                     /* 13 */
	                    "normal = 1d\n",                       /* 14 */
	                    base_conf + strlen("[broker]\ndata_dir = data\n"));

	refused(f, text);
	expect_error(f, 4, "'map_size_max' (2G) is smaller than 'map_size' (8G)");
	expect_error(f, 6, "'metrics_listen' is the same endpoint as 'listen'");
	expect_error(f, 9, "'max_preauth_sessions' (11) is larger than 'max_sessions' (10)");
	expect_error(f, 11,
	             "'out_cap' (4M) is smaller than 'max_frame' (8M): a frame could never "
	             "be sent");
	expect_error(f, 13, "the 'emergency' deadline (4d) is longer than the 'urgent' one (3d)");
	expect_error(f, 12, "the 'urgent' deadline (3d) is longer than the 'normal' one (1d)");
	free(text);
}

/* in_cap must hold what a client within its window may send at once. */
static void
test_in_cap_window(void **state)
{
	struct fixture *f = *state;
	char *text = concat(base_conf, "[limits]\n"                 /* 13 */
	                               "max_inflight_bytes = 12M\n" /* 14 */
	                               "in_cap = 12M\n");           /* 15 */

	refused(f, text);
	expect_error(f, 15,
	             "'in_cap' (12M) is smaller than 'max_inflight_bytes' (12M), 'max_frame' (1M) "
	             "and 64K: a client keeping within its window could be cut off");
	free(text);
}

static void
test_syntax_refusals(void **state)
{
	struct fixture *f = *state;
	char longline[400];
	char *text, *t2;

	memset(longline, 'a', sizeof(longline));
	memcpy(longline, "name = ", 7);
	longline[sizeof(longline) - 2] = '\n';
	longline[sizeof(longline) - 1] = '\0';
	text = concat("listen = tcp://127.0.0.1:1\n" /* 1: outside any section */
	              "[broker\n"                    /* 2 */
	              "[]\n"                         /* 3 */
	              "[bro ker]\n"                  /* 4 */
	              "[broker]\n"                   /* 5 */
	              "just words\n"                 /* 6 */
	              "= value\n"                    /* 7 */
	              "  continued = 1\n"            /* 8: indented is no continuation */
	              "log_origin = has space\n"     /* 9 */
	              "user = root\x01\n",           /* 10 */
	              "[tls]\nca_file = pki/ca.pem\ncert_file = pki/broker.pem\n"
	              "key_file = pki/broker.key\n[checkpoint]\nkey_file = pki/checkpoint.key\n"
	              "[agency.dma]\n" /* 17 */
	              "role = dma\n");
	t2 = concat(text, longline); /* 19 */
	free(text);
	text = concat(t2, "name = \xff\xfe\n"); /* 20 */
	free(t2);
	refused(f, text);
	expect_error(f, 1, "option 'listen' is outside of any [section]");
	expect_error(f, 2, "missing ']' in section header");
	expect_error(f, 3, "empty section name");
	expect_error(f, 4, "invalid character in section name [bro ker]");
	expect_error(f, 6, "expected 'name = value' or '[section]'");
	expect_error(f, 7, "missing option name before '='");
	expect_error(f, 8, "unknown option 'continued' in [broker]");
	expect_error(f, 9,
	             "invalid value 'has space' for 'log_origin': printable ASCII without "
	             "spaces or '+' only");
	expect_error(f, 10, "value for 'user' contains a control character");
	expect_error(f, 19, "line is too long (at most 197 bytes)");
	expect_error(f, 20, "value for 'name' is not valid UTF-8");
	free(text);

	/* a NUL byte inside a line */
	{
		char path[PATH_MAX + 16];
		FILE *fp;
		struct broker_config *cfg = (void *)1;

		make_pki(f);
		snprintf(path, sizeof(path), "%s/nul.conf", f->dir);
		fp = fopen(path, "w");
		assert_non_null(fp);
		fwrite(base_conf, 1, strlen(base_conf), fp);
		fwrite("name = a\0b\n", 1, 11, fp);
		fclose(fp);
		conf_errors_release(&f->errs);
		assert_int_equal(broker_config_load(path, &cfg, &f->errs), IHALA_ECONFIG);
		assert_int_equal(conf_errors_count(&f->errs), 1);
		assert_int_equal(f->errs.v[0].line, 13);
		assert_string_equal(f->errs.v[0].msg, "line contains a NUL byte");
	}
}

/* Many errors in one file: every one is reported, in line order. */
static void
test_several_errors(void **state)
{
	struct fixture *f = *state;
	char *text = concat(base_conf, "[limits]\n"         /* 13 */
	                               "max_frame = 1K\n"   /* 14 */
	                               "credit_windw = 4\n" /* 15 */
	                               "[commit]\n"         /* 16 */
	                               "max_batch = 0\n"    /* 17 */
	                               "[agency.hi]\n"      /* 18 */
	                               "role = nga\n");     /* 19 */
	const char *p14, *p15, *p17, *p19;

	refused(f, text);
	assert_int_equal(conf_errors_count(&f->errs), 4);
	p14 = strstr(f->out, ":14: value 1K for 'max_frame' is out of range (4K..16M)");
	p15 = strstr(f->out, ":15: unknown option 'credit_windw' in [limits] (did you mean "
	                     "'credit_window'?)");
	p17 = strstr(f->out, ":17: value 0 for 'max_batch' is out of range (1..65536)");
	p19 = strstr(f->out, ":19: invalid value 'nga' for 'role'");
	assert_non_null(p14);
	assert_non_null(p15);
	assert_non_null(p17);
	assert_non_null(p19);
	assert_true(p14 < p15 && p15 < p17 && p17 < p19);
	free(text);
}

/* Thousands of errors: the list stays bounded and says how many it dropped. */
static void
test_error_cap(void **state)
{
	struct fixture *f = *state;
	char *text = strdup(base_conf), *t2;
	int i;

	assert_non_null(text);
	for (i = 0; i < 300; i++) {
		t2 = concat(text, "bogus line\n");
		free(text);
		text = t2;
	}
	refused(f, text);
	assert_int_equal(f->errs.n, CONF_MAX_ERRORS);
	assert_int_equal(conf_errors_count(&f->errs), 300);
	assert_non_null(strstr(f->out, ":0: 200 more errors not shown\n"));
	free(text);
}

/* The user to drop privileges to must exist. */
static void
test_user(void **state)
{
	struct fixture *f = *state;
	struct broker_config *cfg = NULL;
	char *text = concat("[broker]\nuser = root\n", base_conf + strlen("[broker]\n"));

	assert_int_equal(load(f, text, &cfg), 0);
	assert_string_equal(cfg->broker.user, "root");
	broker_config_free(cfg);
	free(text);

	text = concat("[broker]\nuser = no-such-user-ihala\n", base_conf + strlen("[broker]\n"));
	refused(f, text);
	expect_error(f, 2,
	             "invalid value 'no-such-user-ihala' for 'user': no such user on this "
	             "system");
	free(text);
}

/* ---- generic helpers ---- */

static void
test_helpers(void **state)
{
	char buf[32];
	size_t n, i;
	const struct conf_option *o = broker_config_options(&n);

	(void)state;
	assert_string_equal(conf_format_size(4096, buf, sizeof(buf)), "4K");
	assert_string_equal(conf_format_size(1ULL << 40, buf, sizeof(buf)), "1T");
	assert_string_equal(conf_format_size(1000, buf, sizeof(buf)), "1000");
	assert_string_equal(conf_format_duration(0, buf, sizeof(buf)), "0");
	assert_string_equal(conf_format_duration(1500, buf, sizeof(buf)), "1500ms");
	assert_string_equal(conf_format_duration(90000, buf, sizeof(buf)), "90s");
	assert_string_equal(conf_format_duration(14ULL * 86400000, buf, sizeof(buf)), "14d");
	/* every row documents itself */
	for (i = 0; i < n; i++) {
		assert_non_null(o[i].help);
		assert_true(strlen(o[i].help) > 0);
	}
	o = clientconf_options(&n);
	assert_int_equal(n, 20);
}

/* ---- the manual page ---- */

#define DOC_MAX 128

/* Drops troff font changes and escapes ("\fB", "\-", "\&") from s, in place. */
static void
troff_plain(char *s)
{
	char *o = s;

	while (*s != '\0') {
		if (s[0] == '\\' && s[1] == 'f' && s[2] != '\0') {
			s += 3;
		} else if (s[0] == '\\' && s[1] == '&') {
			s += 2;
		} else if (s[0] == '\\' && s[1] == '-') {
			*o++ = '-';
			s += 2;
		} else {
			*o++ = *s++;
		}
	}
	*o = '\0';
}

/*
 * The options docs/ihala.conf.5 documents, as "SECTION.NAME": the tags of the .TP items
 * under BROKER.CONF's ".SS [SECTION]" headings ([agency.ID] is agency.*) and under
 * CLIENT.CONF (section client). A tag names one or more options, separated by commas,
 * each maybe followed by its default in parentheses.
 */
static size_t
manpage_options(char names[][96], size_t max)
{
	const char *root = getenv("IHALA_ROOT");
	char path[PATH_MAX], line[512], section[64] = "";
	size_t n = 0;
	int part = 0, tag = 0; /* part: 0 elsewhere, 1 BROKER.CONF, 2 CLIENT.CONF */
	FILE *fp;

	snprintf(path, sizeof(path), "%s/docs/ihala.conf.5", root != NULL ? root : ".");
	fp = fopen(path, "r");
	if (fp == NULL) {
		fail_msg("cannot open %s (set IHALA_ROOT to the source tree)", path);
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, ".SH ", 4) == 0) {
			part = strcmp(line + 4, "BROKER.CONF") == 0   ? 1
			       : strcmp(line + 4, "CLIENT.CONF") == 0 ? 2
			                                              : 0;
			snprintf(section, sizeof(section), "%s", part == 2 ? "client" : "");
			tag = 0;
		} else if (part != 0 && strncmp(line, ".SS [", 5) == 0) {
			size_t len;

			troff_plain(line);
			len = strcspn(line + 5, "]");
			assert_true(len < sizeof(section));
			memcpy(section, line + 5, len);
			section[len] = '\0';
			if (len > 3 && strcmp(section + len - 3, ".ID") == 0) {
				strcpy(section + len - 2, "*");
			}
		} else if (strcmp(line, ".TP") == 0) {
			tag = part != 0;
		} else if (tag) {
			char *p, *tok, *save = NULL;
			int depth = 0;

			tag = 0;
			if (strncmp(line, ".B ", 3) != 0) {
				continue; /* not an option item */
			}
			troff_plain(line);
			/* the defaults in parentheses go; what remains is a list of names */
			for (p = line + 3; *p != '\0'; p++) {
				depth += *p == '(';
				if (depth > 0) {
					depth -= *p == ')';
					*p = ' ';
				}
			}
			for (tok = strtok_r(line + 3, ",", &save); tok != NULL;
			     tok = strtok_r(NULL, ",", &save)) {
				char name[64];

				if (sscanf(tok, " %63s", name) != 1) {
					continue;
				}
				assert_true(n < max);
				assert_true(
				    (size_t)snprintf(names[n++], 96, "%s.%s", section, name) < 96);
			}
		}
	}
	fclose(fp);
	return n;
}

/*
 * The options docs/ihala.conf.5 lists as read at start-up only: the SECTION.NAME words
 * of the .B/.BR lines after "read at start-up only", up to the next heading or paragraph.
 */
static size_t
manpage_restart_only(char names[][96], size_t max)
{
	const char *root = getenv("IHALA_ROOT");
	char path[PATH_MAX], line[512];
	size_t n = 0;
	int on = 0;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/docs/ihala.conf.5", root != NULL ? root : ".");
	fp = fopen(path, "r");
	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp) != NULL) {
		char word[96];

		line[strcspn(line, "\n")] = '\0';
		if (strstr(line, "read at start-up only") != NULL) {
			on = 1;
		} else if (on && (strncmp(line, ".SH", 3) == 0 || strncmp(line, ".SS", 3) == 0 ||
		                  strncmp(line, ".PP", 3) == 0)) {
			on = 0;
		} else if (on && (strncmp(line, ".B ", 3) == 0 || strncmp(line, ".BR ", 4) == 0)) {
			troff_plain(line);
			if (sscanf(strchr(line, ' '), " %95[a-z_.*]", word) == 1 &&
			    strchr(word, '.') != NULL) {
				assert_true(n < max);
				snprintf(names[n++], 96, "%s", word);
			}
		}
	}
	fclose(fp);
	return n;
}

static int
listed(char names[][96], size_t n, const char *want)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (strcmp(names[i], want) == 0) {
			return 1;
		}
	}
	return 0;
}

/* ihala.conf(5) documents every option of both tables, and no other. */
static void
test_manpage_matches_tables(void **state)
{
	static char doc[DOC_MAX][96], table[DOC_MAX][96];
	const struct conf_option *o;
	size_t ndoc, ntable = 0, n, i, bad = 0;

	(void)state;
	ndoc = manpage_options(doc, DOC_MAX);
	assert_true(ndoc > 0);
	o = broker_config_options(&n);
	for (i = 0; i < n; i++) {
		snprintf(table[ntable++], 96, "%s.%s", o[i].section, o[i].name);
	}
	o = clientconf_options(&n);
	for (i = 0; i < n; i++) {
		snprintf(table[ntable++], 96, "%s.%s", o[i].section, o[i].name);
	}
	for (i = 0; i < ntable; i++) {
		if (!listed(doc, ndoc, table[i])) {
			print_error("option '%s' is in the table but not in docs/ihala.conf.5\n",
			            table[i]);
			bad++;
		}
	}
	for (i = 0; i < ndoc; i++) {
		if (!listed(table, ntable, doc[i])) {
			print_error("docs/ihala.conf.5 documents '%s', which no table has\n",
			            doc[i]);
			bad++;
		}
	}
	/* the list of the options read at start-up only is the rows without CONF_RELOAD */
	ndoc = manpage_restart_only(doc, DOC_MAX);
	assert_true(ndoc > 0);
	o = broker_config_options(&n);
	for (ntable = 0, i = 0; i < n; i++) {
		if (!(o[i].flags & CONF_RELOAD)) {
			snprintf(table[ntable++], 96, "%s.%s", o[i].section, o[i].name);
		}
	}
	for (i = 0; i < ntable; i++) {
		if (!listed(doc, ndoc, table[i])) {
			print_error("'%s' is read at start-up only but docs/ihala.conf.5 does not "
			            "list it so\n",
			            table[i]);
			bad++;
		}
	}
	for (i = 0; i < ndoc; i++) {
		if (!listed(table, ntable, doc[i])) {
			print_error("docs/ihala.conf.5 lists '%s' as read at start-up only, but a "
			            "reload applies it\n",
			            doc[i]);
			bad++;
		}
	}
	assert_int_equal(bad, 0);
}

/* ---- reload ---- */

/* Calls broker_config_warn_restart_only with stderr (where the log goes) caught in *out. */
static size_t
restart_warnings(struct fixture *f, const struct broker_config *old,
                 const struct broker_config *cfg, char **out)
{
	char path[PATH_MAX];
	size_t n, len = 0;
	int saved, fd;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/stderr.txt", f->dir);
	fflush(stderr);
	saved = dup(2);
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	assert_true(saved >= 0 && fd >= 0);
	assert_int_equal(dup2(fd, 2), 2);
	close(fd);
	n = broker_config_warn_restart_only(old, cfg);
	fflush(stderr);
	assert_int_equal(dup2(saved, 2), 2);
	close(saved);
	fp = fopen(path, "r");
	assert_non_null(fp);
	*out = calloc(1, 8192);
	assert_non_null(*out);
	len = fread(*out, 1, 8191, fp);
	(*out)[len] = '\0';
	fclose(fp);
	return n;
}

/* Restart-only options changed on a reload are named; what a reload applies is not. */
static void
test_reload_restart_only(void **state)
{
	struct fixture *f = *state;
	struct broker_config *old = NULL, *cfg = NULL;
	static const char changed[] = "[broker]\n"
	                              "data_dir = data\n"
	                              "map_size = 2G\n"
	                              "log_level = debug\n"
	                              "[tls]\n"
	                              "ca_file = pki/ca.pem\n"
	                              "crl_file = pki/ca.crl\n"
	                              "cert_file = pki/broker.pem\n"
	                              "key_file = pki/broker.key\n"
	                              "[limits]\n"
	                              "queue_limit = 5\n"
	                              "[commit]\n"
	                              "max_batch = 16\n"
	                              "[checkpoint]\n"
	                              "key_file = pki/checkpoint.key\n"
	                              "every_entries = 10\n"
	                              "every_seconds = 5s\n"
	                              "[deadlines]\n"
	                              "normal = 20d\n"
	                              "[agency.dma]\n"
	                              "role = dma\n"
	                              "[agency.moh]\n"
	                              "role = ngo\n";
	static const char *const named[] = {"'broker.map_size'", "'commit.max_batch'",
	                                    "'checkpoint.every_entries'",
	                                    "'checkpoint.every_seconds'"};
	static const char *const not_named[] = {"log_level", "crl_file", "queue_limit", "normal",
	                                        "role",      "data_dir", "key_file"};
	char *out = NULL;
	size_t i;

	log_init("config_test", 1);
	assert_int_equal(load(f, base_conf, &old), 0);
	assert_int_equal(load(f, changed, &cfg), 0);
	assert_int_equal(restart_warnings(f, old, old, &out), 0);
	assert_string_equal(out, "");
	free(out);
	assert_int_equal(restart_warnings(f, old, cfg, &out), 4);
	for (i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
		if (strstr(out, named[i]) == NULL) {
			fail_msg("reload warnings do not name %s:\n%s", named[i], out);
		}
	}
	for (i = 0; i < sizeof(not_named) / sizeof(not_named[0]); i++) {
		if (strstr(out, not_named[i]) != NULL) {
			fail_msg("reload warnings name %s:\n%s", not_named[i], out);
		}
	}
	assert_non_null(strstr(out, "reload: 'broker.map_size' changed; the new value takes "
	                            "effect at the next start"));
	free(out);
	broker_config_free(old);
	broker_config_free(cfg);
}

/* The rows' reload flags say what the server does with a new value on SIGHUP. */
static void
test_reload_flags(void **state)
{
	static const char *const restart_only[] = {"broker.listen",
	                                           "broker.data_dir",
	                                           "broker.map_size",
	                                           "broker.map_size_max",
	                                           "broker.auto_grow",
	                                           "broker.disk_reserve",
	                                           "broker.log_origin",
	                                           "broker.user",
	                                           "broker.metrics_listen",
	                                           "limits.max_frame",
	                                           "commit.max_batch",
	                                           "checkpoint.key_file",
	                                           "checkpoint.every_entries",
	                                           "checkpoint.every_seconds"};
	const struct conf_option *o;
	size_t n, i, j;
	char name[128];

	(void)state;
	o = broker_config_options(&n);
	for (i = 0; i < n; i++) {
		int restart = 0;

		snprintf(name, sizeof(name), "%s.%s", o[i].section, o[i].name);
		for (j = 0; j < sizeof(restart_only) / sizeof(restart_only[0]); j++) {
			restart |= strcmp(name, restart_only[j]) == 0;
		}
		if (restart == ((o[i].flags & CONF_RELOAD) != 0)) {
			fail_msg("'%s' is %s", name,
			         restart ? "read at start-up only but flagged CONF_RELOAD"
			                 : "applied by a reload but not flagged CONF_RELOAD");
		}
	}
}

/* One duration syntax for files and command lines: what is formatted parses back. */
static void
test_duration_round_trip(void **state)
{
	static const uint64_t ms[] = {0,
	                              1,
	                              2,
	                              999,
	                              1000,
	                              1500,
	                              59999,
	                              60000,
	                              90000,
	                              3600000,
	                              5400000,
	                              86400000,
	                              14ULL * 86400000,
	                              86400001,
	                              (1ULL << 40) + 1,
	                              UINT64_MAX / 86400000 * 86400000,
	                              UINT64_MAX};
	char buf[32];
	uint64_t v;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
		v = 12345;
		conf_format_duration(ms[i], buf, sizeof(buf));
		assert_int_equal(conf_parse_duration(buf, &v), 0);
		assert_true(v == ms[i]);
	}
	assert_int_equal(conf_parse_duration("10s", &v), 0);
	assert_int_equal(v, 10000);
	assert_int_equal(conf_parse_duration("2ms", &v), 0);
	assert_int_equal(v, 2);
	assert_int_equal(conf_parse_duration("3m", &v), 0);
	assert_int_equal(v, 180000);
	assert_int_equal(conf_parse_duration("2h", &v), 0);
	assert_int_equal(v, 7200000);
	assert_int_equal(conf_parse_duration("14d", &v), 0);
	assert_true(v == 14ULL * 86400000);
	assert_int_equal(conf_parse_duration("0", &v), 0);
	assert_int_equal(v, 0);
	/* a bare number has no unit, whether in a file or after --timeout */
	v = 7;
	assert_int_equal(conf_parse_duration("5", &v), -2);
	assert_int_equal(v, 7);
	assert_int_equal(conf_parse_duration("5x", &v), -1);
	assert_int_equal(conf_parse_duration("5 s", &v), -1);
	assert_int_equal(conf_parse_duration("5S", &v), -1);
	assert_int_equal(conf_parse_duration("s", &v), -1);
	assert_int_equal(conf_parse_duration("-1s", &v), -1);
	assert_int_equal(conf_parse_duration("", &v), -1);
	assert_int_equal(conf_parse_duration("18446744073709551615ms", &v), 0);
	assert_true(v == UINT64_MAX);
	v = 7;
	assert_int_equal(conf_parse_duration("18446744073709551615s", &v), 1);
	assert_int_equal(conf_parse_duration("99999999999999999999ms", &v), 1);
	assert_int_equal(v, 7);
}

/* ---- client.conf ---- */

static int
client_load(struct fixture *f, const char *text, struct client_config **cfg)
{
	char path[PATH_MAX + 16];

	make_pki(f);
	write_file(f->dir, "client.conf", text, 0644);
	snprintf(path, sizeof(path), "%s/client.conf", f->dir);
	conf_errors_release(&f->errs);
	return clientconf_load(path, cfg, &f->errs);
}

static void
test_client_conf(void **state)
{
	struct fixture *f = *state;
	struct client_config *cfg = NULL;
	char want[PATH_MAX + 32];

	assert_int_equal(client_load(f,
	                             "[client]\n"
	                             "ca_file = pki/ca.pem\n"
	                             "cert_file = pki/moh.pem\n"
	                             "key_file = pki/moh.key\n"
	                             "data_dir = moh-data\n"
	                             "agency = moh\n",
	                             &cfg),
	                 0);
	assert_string_equal(cfg->broker, "tcp://127.0.0.1:7450");
	assert_string_equal(cfg->server_name, "localhost");
	snprintf(want, sizeof(want), "%s/pki/moh.key", f->dir);
	assert_string_equal(cfg->key_file, want);
	snprintf(want, sizeof(want), "%s/moh-data", f->dir);
	assert_string_equal(cfg->data_dir, want);
	assert_string_equal(cfg->agency, "moh");
	assert_int_equal(cfg->timeout_ms, 10000);
	assert_int_equal(cfg->sent_keep_ms, 7 * 86400000ULL);
	assert_int_equal(cfg->log_level, LOG_LEVEL_WARN);
	assert_string_equal(cfg->dir, f->dir);
	snprintf(want, sizeof(want), "%s/client.conf", f->dir);
	assert_string_equal(cfg->path, want);
	clientconf_free(cfg);
	cfg = NULL;

	assert_int_equal(client_load(f,
	                             "[client]\n"
	                             "broker = tcp://10.0.0.5:7450\n"
	                             "server_name = broker.dma.gov.iq\n"
	                             "timeout = 2m\n"
	                             "sent_keep = 0\n"
	                             "log_level = debug\n"
	                             "ca_file = pki/ca.pem\n"
	                             "cert_file = pki/moh.pem\n"
	                             "key_file = pki/moh.key\n"
	                             "data_dir = .\n",
	                             &cfg),
	                 0);
	assert_string_equal(cfg->broker, "tcp://10.0.0.5:7450");
	assert_string_equal(cfg->server_name, "broker.dma.gov.iq");
	assert_int_equal(cfg->timeout_ms, 120000);
	assert_int_equal(cfg->sent_keep_ms, 0);
	assert_int_equal(cfg->log_level, LOG_LEVEL_DEBUG);
	assert_null(cfg->agency);
	clientconf_free(cfg);
	cfg = NULL;

	/* refusals: the same parser and messages */
	assert_int_equal(chmod(strcat(strcpy(want, f->dir), "/pki/moh.key"), 0644), 0);
	assert_int_equal(client_load(f,
	                             "[client]\n"
	                             "brokr = tcp://x:1\n"      /* 2 */
	                             "key_file = pki/moh.key\n" /* 3 (make_pki reset it to 0600) */
	                             "timeout = 0\n"            /* 4 */
	                             "agency = MOH\n",          /* 5 */
	                             &cfg),
	                 IHALA_ECONFIG);
	assert_null(cfg);
	{
		char *out = NULL;
		size_t len;
		FILE *mem = open_memstream(&out, &len);

		conf_errors_print(&f->errs, mem);
		fclose(mem);
		assert_non_null(strstr(out,
		                       "client.conf:2: unknown option 'brokr' in [client] (did "
		                       "you mean 'broker'?)\n"));
		assert_non_null(strstr(out, "client.conf:4: value 0 for 'timeout' is out of range "
		                            "(100ms..1h)\n"));
		assert_non_null(strstr(out, "client.conf:5: invalid value 'MOH' for 'agency': an "
		                            "agency id is 1..32 characters of a-z, 0-9, '_' and "
		                            "'-'\n"));
		assert_non_null(
		    strstr(out, "client.conf:1: missing required option 'ca_file' in [client]\n"));
		assert_non_null(
		    strstr(out, "client.conf:1: missing required option 'data_dir' in [client]\n"));
		free(out);
	}

	/* the key check applies to the client too */
	{
		char key[PATH_MAX + 32], text[PATH_MAX + 256];

		snprintf(key, sizeof(key), "%s/loose.key", f->dir);
		write_file(f->dir, "loose.key", "x\n", 0604);
		snprintf(text, sizeof(text),
		         "[client]\nca_file = pki/ca.pem\ncert_file = pki/moh.pem\n"
		         "key_file = loose.key\ndata_dir = .\n");
		assert_int_equal(client_load(f, text, &cfg), IHALA_ECONFIG);
		assert_int_equal(conf_errors_count(&f->errs), 1);
		assert_int_equal(f->errs.v[0].line, 4);
		snprintf(text, sizeof(text),
		         "private key '%s' is readable by group or others (chmod 600 it)", key);
		assert_string_equal(f->errs.v[0].msg, text);
	}

	/* the keyring and custodians (issue 16) */
	{
		static const char base[] =
		    "[client]\nca_file = pki/ca.pem\ncert_file = pki/moh.pem\n"
		    "key_file = pki/moh.key\ndata_dir = .\n";
		char text[1024], *out = NULL;
		size_t len;
		FILE *mem;

		write_file(f->dir, "enc.crt", "placeholder\n", 0644);
		write_file(f->dir, "enc.key", "placeholder\n", 0600);
		write_file(f->dir, "loose-enc.key", "placeholder\n", 0640);
		snprintf(text, sizeof(text),
		         "%sencryption_cert = enc.crt\nencryption_key = enc.key\n"
		         "old_encryption_keys = old.crt:old.key, old2.crt:old2.key\n"
		         "custodians = dma, hi\n",
		         base);
		assert_int_equal(client_load(f, text, &cfg), 0);
		snprintf(want, sizeof(want), "%s/enc.key", f->dir);
		assert_string_equal(cfg->encryption_key, want);
		assert_string_equal(cfg->old_encryption_keys, "old.crt:old.key, old2.crt:old2.key");
		assert_string_equal(cfg->custodians, "dma, hi");
		clientconf_free(cfg);
		cfg = NULL;
		snprintf(text, sizeof(text),
		         "%sencryption_key = loose-enc.key\n" /* 6 */
		         "old_encryption_keys = old.crt\n"    /* 7 */
		         "custodians = dma, MOH!\n",          /* 8 */
		         base);
		assert_int_equal(client_load(f, text, &cfg), IHALA_ECONFIG);
		mem = open_memstream(&out, &len);
		conf_errors_print(&f->errs, mem);
		fclose(mem);
		assert_non_null(strstr(out, "client.conf:6: private key"));
		assert_non_null(strstr(out, "client.conf:7: invalid value 'old.crt' for "
		                            "'old_encryption_keys': 'old.crt' is not CERT:KEY"));
		assert_non_null(strstr(out, "client.conf:8: invalid value 'dma, MOH!' for "
		                            "'custodians': 'MOH!' is not an agency id"));
		free(out);
		out = NULL;
		/* one without the other */
		snprintf(text, sizeof(text), "%sencryption_cert = enc.crt\n", base);
		assert_int_equal(client_load(f, text, &cfg), IHALA_ECONFIG);
		mem = open_memstream(&out, &len);
		conf_errors_print(&f->errs, mem);
		fclose(mem);
		assert_non_null(strstr(out, "encryption_cert and encryption_key go together"));
		free(out);
	}

	/* where the file is looked for */
	assert_int_equal(setenv("IHALA_CONFIG", "/env/client.conf", 1), 0);
	assert_string_equal(clientconf_locate("/opt/x.conf"), "/opt/x.conf");
	assert_string_equal(clientconf_locate(NULL), "/env/client.conf");
	assert_int_equal(setenv("IHALA_CONFIG", "", 1), 0);
	assert_null(clientconf_locate(NULL));
	assert_int_equal(unsetenv("IHALA_CONFIG"), 0);
	assert_null(clientconf_locate(NULL));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_good_defaults, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_good_values, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_may_open_cases, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_relative_paths, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_syntax_accepted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_option, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_out_of_range, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_numbers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_endpoints, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_key_permissions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_duplicates, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_agency_refusals, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_encryption_cert, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_encryption_cert_refusals, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_missing_required, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_data_dir, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_in_cap_window, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cross_checks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_syntax_refusals, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_several_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_error_cap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_user, setup, teardown),
	    cmocka_unit_test(test_helpers),
	    cmocka_unit_test(test_duration_round_trip),
	    cmocka_unit_test_setup_teardown(test_reload_restart_only, setup, teardown),
	    cmocka_unit_test(test_reload_flags),
	    cmocka_unit_test(test_manpage_matches_tables),
	    cmocka_unit_test_setup_teardown(test_client_conf, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
