/* fuzz_config.c - fuzz target: the broker's config parser (broker_config_load on a temp file). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "fuzz.h"
#include "id.h"
#include "log.h"

/*
 * Input: the text of a broker.conf. It is written to broker.conf in a private temp dir that
 * also holds the files config/broker.conf.example names (pki/ca.pem, pki/ca.crl,
 * pki/broker.pem, pki/broker.key and pki/checkpoint.key mode 0600, all empty: the loader
 * checks paths and modes, not contents), so inputs derived from the example get past the
 * path checks into the cross-checks. Invariants: failure means at least one "FILE:LINE:"
 * error and no config; success means a config that keeps the documented bounds and finds
 * each of its agencies by id and CN.
 */

static char dir[64];
static char conf[128];
static FILE *devnull;

static void
rm_tree(void)
{
	static const char *const files[] = {"broker.conf",    "pki/ca.pem",
	                                    "pki/ca.crl",     "pki/broker.pem",
	                                    "pki/broker.key", "pki/checkpoint.key"};
	char p[192];
	size_t i;

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
		unlink(p);
	}
	snprintf(p, sizeof(p), "%s/pki", dir);
	rmdir(p);
	snprintf(p, sizeof(p), "%s/data", dir);
	rmdir(p);
	rmdir(dir);
}

static void
touch(const char *name, mode_t mode)
{
	char p[192];
	int fd;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
	FUZZ_ASSERT(fd >= 0);
	FUZZ_ASSERT(fchmod(fd, mode) == 0);
	close(fd);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char p[192];

	(void)argc;
	(void)argv;
	log_setlevel(LOG_LEVEL_ERROR);
	snprintf(dir, sizeof(dir), "/tmp/ihala-fuzz-config.XXXXXX");
	FUZZ_ASSERT(mkdtemp(dir) != NULL);
	snprintf(p, sizeof(p), "%s/pki", dir);
	FUZZ_ASSERT(mkdir(p, 0700) == 0);
	snprintf(p, sizeof(p), "%s/data", dir);
	FUZZ_ASSERT(mkdir(p, 0700) == 0);
	touch("pki/ca.pem", 0644);
	touch("pki/ca.crl", 0644);
	touch("pki/broker.pem", 0644);
	touch("pki/broker.key", 0600);
	touch("pki/checkpoint.key", 0600);
	snprintf(conf, sizeof(conf), "%s/broker.conf", dir);
	devnull = fopen("/dev/null", "w");
	FUZZ_ASSERT(devnull != NULL);
	atexit(rm_tree);
	return 0;
}

static void
check_config(const struct broker_config *cfg)
{
	size_t i;

	FUZZ_ASSERT(cfg->path != NULL && cfg->dir != NULL);
	FUZZ_ASSERT(cfg->broker.listen != NULL && cfg->broker.data_dir != NULL);
	FUZZ_ASSERT(cfg->broker.data_dir[0] == '/');
	FUZZ_ASSERT(cfg->broker.map_size <= cfg->broker.map_size_max);
	FUZZ_ASSERT(cfg->tls.ca_file != NULL && cfg->tls.cert_file != NULL &&
	            cfg->tls.key_file != NULL && cfg->checkpoint.key_file != NULL);
	FUZZ_ASSERT(cfg->limits.max_preauth_sessions <= cfg->limits.max_sessions);
	FUZZ_ASSERT(cfg->nagencies <= BROKER_MAX_AGENCIES);
	for (i = 0; i < cfg->nagencies; i++) {
		const struct agency_config *a = &cfg->agencies[i];
		size_t n = strlen(a->id);

		FUZZ_ASSERT(n >= 1 && n <= ID_AGENCY_MAX);
		FUZZ_ASSERT(strspn(a->id, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n);
		FUZZ_ASSERT(a->role >= AGENCY_ROLE_DMA && a->role <= AGENCY_ROLE_AUDITOR);
		FUZZ_ASSERT(broker_config_find_agency(cfg, a->id) == a);
		FUZZ_ASSERT(a->cn != NULL && broker_config_find_cn(cfg, a->cn) != NULL);
		FUZZ_ASSERT(a->name != NULL);
		FUZZ_ASSERT(a->may_send_to_any || a->may_send_to_count == 0 ||
		            a->may_send_to != NULL);
		if (a->fingerprint != NULL) {
			FUZZ_ASSERT(strlen(a->fingerprint) == 64);
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct broker_config *cfg = NULL;
	struct conf_errors errs;
	FILE *fp;
	int rc;

	fp = fopen(conf, "w");
	FUZZ_ASSERT(fp != NULL);
	FUZZ_ASSERT(fwrite(data, 1, size, fp) == size);
	FUZZ_ASSERT(fclose(fp) == 0);

	conf_errors_init(&errs);
	rc = broker_config_load(conf, &cfg, &errs);
	if (rc != 0) {
		size_t i;

		FUZZ_ASSERT(rc == IHALA_ECONFIG || rc == IHALA_ENOMEM);
		FUZZ_ASSERT(cfg == NULL);
		FUZZ_ASSERT(conf_errors_count(&errs) > 0 || rc == IHALA_ENOMEM);
		for (i = 0; i < errs.n; i++) {
			FUZZ_ASSERT(errs.v[i].file != NULL && errs.v[i].msg != NULL);
			FUZZ_ASSERT(errs.v[i].line >= 0);
		}
		conf_errors_print(&errs, devnull);
	} else {
		FUZZ_ASSERT(cfg != NULL && conf_errors_count(&errs) == 0);
		check_config(cfg);
		broker_config_free(cfg);
	}
	conf_errors_release(&errs);
	return 0;
}
