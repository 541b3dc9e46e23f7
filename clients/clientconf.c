/* clientconf.c - the client's option table and loading client.conf. */
#include "clientconf.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "id.h"
#include "log.h"

int
clientconf_list(const char *list, int (*cb)(void *arg, const char *item, size_t len), void *arg)
{
	const char *p = list;
	int rc;

	while (p != NULL && *p != '\0') {
		size_t n = strcspn(p, ",");
		const char *q = p, *end = p + n;

		while (q < end && *q == ' ') {
			q++;
		}
		while (end > q && end[-1] == ' ') {
			end--;
		}
		if ((rc = cb(arg, q, (size_t)(end - q))) != 0) {
			return rc;
		}
		p += n;
		if (*p == ',') {
			p++;
		}
	}
	return 0;
}

struct count {
	size_t n;
	char *why;
	size_t whylen;
};

static int
custodian_ok(void *arg, const char *item, size_t len)
{
	struct count *c = arg;

	if (!id_agency_valid(item, len)) {
		snprintf(c->why, c->whylen, "'%.*s' is not an agency id (%s)", (int)len, item,
		         ID_AGENCY_RULE);
		return -1;
	}
	c->n++;
	return 0;
}

/* custodians = id[,id...] */
static int
valid_custodians(void *field, char *why, size_t whylen)
{
	struct count c = {0, why, whylen};

	if (clientconf_list(*(char **)field, custodian_ok, &c) != 0) {
		return -1;
	}
	if (c.n == 0 || c.n > CLIENTCONF_CUSTODIANS_MAX) {
		snprintf(why, whylen, "expected 1..%d agency ids separated by commas",
		         CLIENTCONF_CUSTODIANS_MAX);
		return -1;
	}
	return 0;
}

static int
keypair_ok(void *arg, const char *item, size_t len)
{
	struct count *c = arg;
	const char *colon = memchr(item, ':', len);

	if (colon == NULL || colon == item || colon == item + len - 1 ||
	    memchr(colon + 1, ':', len - (size_t)(colon + 1 - item)) != NULL) {
		snprintf(c->why, c->whylen, "'%.*s' is not CERT:KEY", (int)len, item);
		return -1;
	}
	c->n++;
	return 0;
}

/* old_encryption_keys = CERT:KEY[,CERT:KEY...] (the files are read when the node opens) */
static int
valid_keypairs(void *field, char *why, size_t whylen)
{
	struct count c = {0, why, whylen};

	if (clientconf_list(*(char **)field, keypair_ok, &c) != 0) {
		return -1;
	}
	if (c.n == 0 || c.n > CLIENTCONF_OLD_KEYS_MAX) {
		snprintf(why, whylen, "expected 1..%d CERT:KEY pairs separated by commas",
		         CLIENTCONF_OLD_KEYS_MAX);
		return -1;
	}
	return 0;
}

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
    {"client", "sent_keep", CONF_DURATION, 0, "7d", 0, 366 * 24 * 3600 * 1000ULL, NULL, NULL,
     C(sent_keep_ms),
     "how long a sent message is kept after its receipt, to be sent again as the same bytes"},
    {"client", "checkpoint_key", CONF_PATH_FILE, 0, NULL, 0, 0, NULL, NULL, C(checkpoint_key),
     "the broker's checkpoint public key (PEM): verify checkpoints, detect a rewritten log"},
    {"client", "log_level", CONF_ENUM, 0, "warn", 0, 0, log_level_names, NULL, C(log_level),
     "error, warn, info or debug"},
    {"client", "encryption_cert", CONF_PATH_FILE, 0, NULL, 0, 0, NULL, NULL, C(encryption_cert),
     "this agency's encryption certificate (PEM): sealed parts are sealed to it too"},
    {"client", "encryption_key", CONF_PATH_FILE, CONF_SECRET, NULL, 0, 0, NULL, NULL,
     C(encryption_key), "its private key (PEM, mode 0600): opens sealed parts"},
    {"client", "old_encryption_keys", CONF_STRING, 0, NULL, 0, 0, NULL, valid_keypairs,
     C(old_encryption_keys), "older CERT:KEY pairs still opening older sealed parts"},
    {"client", "custodians", CONF_STRING, 0, NULL, 0, 0, NULL, valid_custodians, C(custodians),
     "agencies every sealed part is also sealed to"},
    {"web", "cert_file", CONF_PATH_FILE, 0, NULL, 0, 0, NULL, NULL, C(web_cert_file),
     "ihala web's HTTPS certificate chain (PEM): needed to listen beyond loopback"},
    {"web", "key_file", CONF_PATH_FILE, CONF_SECRET, NULL, 0, 0, NULL, NULL, C(web_key_file),
     "its private key (PEM, mode 0600)"},
    {"web", "server_name", CONF_STRING, 0, NULL, 0, 0, NULL, conf_valid_hostname,
     C(web_server_name),
     "the host name clerks open (the Host the pages answer besides the "
     "address)"},
    {"web", "idle_timeout", CONF_DURATION, 0, "30m", 60000, 86400000, NULL, NULL, C(web_idle_ms),
     "a clerk's session ends after this long without a request"},
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
	if (rc == 0 && (cfg->encryption_cert == NULL) != (cfg->encryption_key == NULL)) {
		conf_errors_add(errs, path, 0,
		                "encryption_cert and encryption_key go together: set both or none");
		rc = IHALA_ECONFIG;
	}
	if (rc == 0 && (cfg->web_cert_file == NULL) != (cfg->web_key_file == NULL)) {
		conf_errors_add(errs, path, 0,
		                "[web] cert_file and key_file go together: set both or none");
		rc = IHALA_ECONFIG;
	}
	if (rc == 0 && cfg->old_encryption_keys != NULL && cfg->encryption_key == NULL) {
		conf_errors_add(errs, path, 0,
		                "old_encryption_keys needs encryption_cert and "
		                "encryption_key");
		rc = IHALA_ECONFIG;
	}
	if (rc != 0) {
		clientconf_free(cfg);
		return rc;
	}
	*out = cfg;
	return 0;
}
