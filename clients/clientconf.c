/* clientconf.c - the client's option table and loading client.conf. */
#include "clientconf.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"

#define C(f) offsetof(struct client_config, f)

static const struct conf_option options[] = {
    {"client", "broker", CONF_ENDPOINT, 0, "tcp://127.0.0.1:7450", 0, 0, NULL, NULL, C(broker),
     "broker endpoint"},
    {"client", "server_name", CONF_STRING, 0, "localhost", 0, 0, NULL, conf_valid_hostname,
     C(server_name), "name the broker certificate must carry"},
    {"client", "ca_file", CONF_PATH_FILE, CONF_REQUIRED, NULL, 0, 0, NULL, NULL, C(ca_file),
     "federation CA certificate (PEM)"},
    {"client", "crl_file", CONF_PATH_FILE, 0, NULL, 0, 0, NULL, NULL, C(crl_file),
     "the federation CA's revocation list (PEM): no sealing to a revoked certificate"},
    {"client", "cert_file", CONF_PATH_FILE, CONF_REQUIRED, NULL, 0, 0, NULL, NULL, C(cert_file),
     "this agency's certificate (PEM)"},
    {"client", "key_file", CONF_PATH_FILE, CONF_REQUIRED | CONF_SECRET, NULL, 0, 0, NULL, NULL,
     C(key_file), "this agency's private key (PEM, mode 0600)"},
    {"client", "data_dir", CONF_PATH_DIR, CONF_REQUIRED | CONF_CREATE, NULL, 0, 0, NULL, NULL,
     C(data_dir), "local outbox and inbox (created when missing)"},
    {"client", "agency", CONF_STRING, 0, NULL, 0, 0, NULL, conf_valid_agency_id, C(agency),
     "own agency id (informational)"},
    {"client", "timeout", CONF_DURATION, 0, "10s", 100, 3600000, NULL, NULL, C(timeout_ms),
     "connect and request timeout"},
    {"client", "checkpoint_key", CONF_PATH_FILE, 0, NULL, 0, 0, NULL, NULL, C(checkpoint_key),
     "the broker's checkpoint public key (PEM): verify checkpoints, detect a rewritten log"},
    {"client", "log_level", CONF_ENUM, 0, "warn", 0, 0, log_level_names, NULL, C(log_level),
     "error, warn, info or debug"},
};
#define NOPTIONS (sizeof(options) / sizeof(options[0]))

const struct conf_option *
clientconf_options(size_t *n)
{
	*n = NOPTIONS;
	return options;
}

const char *
clientconf_locate(const char *option)
{
	const char *env;

	if (option != NULL) {
		return option;
	}
	env = getenv("IHALA_CONFIG");
	if (env != NULL && env[0] != '\0') {
		return env;
	}
	return NULL;
}

void
clientconf_free(struct client_config *cfg)
{
	if (cfg == NULL) {
		return;
	}
	conf_release(options, NOPTIONS, NULL, cfg);
	free(cfg->path);
	free(cfg->dir);
	free(cfg);
}

int
clientconf_load(const char *path, struct client_config **out, struct conf_errors *errs)
{
	struct client_config *cfg;
	struct conf_file *cf = NULL;
	struct conf_spec spec;
	int rc;

	*out = NULL;
	if ((cfg = calloc(1, sizeof(*cfg))) == NULL) {
		conf_errors_add(errs, path, 0, "out of memory");
		return IHALA_ENOMEM;
	}
	memset(&spec, 0, sizeof(spec));
	spec.options = options;
	spec.noptions = NOPTIONS;
	spec.base = cfg;
	rc = conf_parse(path, &spec, &cf, errs);
	if (rc == 0 && ((cfg->dir = strdup(conf_dir(cf))) == NULL ||
	                (cfg->path = strdup(conf_abspath(cf))) == NULL)) {
		conf_errors_add(errs, path, 0, "out of memory");
		rc = IHALA_ENOMEM;
	}
	conf_file_free(cf);
	if (rc != 0) {
		clientconf_free(cfg);
		return rc;
	}
	*out = cfg;
	return 0;
}
