/* clientconf.h - a node's client.conf ([client] section): where the broker is, which identity. */
#ifndef IHALA_CLIENTCONF_H
#define IHALA_CLIENTCONF_H

#include <stdint.h>

#include "conf.h"

/*
 * Strings are owned by the struct until clientconf_free(); optional ones are
 * NULL when not set. Paths are absolute (relative ones in the file are
 * resolved against the file's directory).
 */
struct client_config {
	char *path;            /* the config file's absolute path */
	char *dir;             /* its absolute directory */
	char *broker;          /* tcp://HOST:PORT, default tcp://127.0.0.1:7450 */
	char *server_name;     /* name the broker certificate must carry, default localhost */
	char *ca_file;         /* federation CA (PEM), required */
	char *crl_file;        /* its CRL (PEM); NULL: none. Encryption certificates are checked
	                          against it (directory) */
	char *cert_file;       /* this agency's certificate (PEM), required */
	char *key_file;        /* its private key (PEM, mode 0600), required */
	char *data_dir;        /* local outbox/inbox LMDB directory, required; may not exist yet
	                          (its parent does) */
	char *agency;          /* own agency id, informational (the broker decides); may be NULL */
	uint64_t timeout_ms;   /* connect / request timeout, default 10s */
	uint64_t sent_keep_ms; /* how long a sent message's record is kept after its receipt, so
	                          that it can be sent again as the same bytes; default 7 days,
	                          0: until the receipt */
	char *checkpoint_key; /* the broker's Ed25519 checkpoint public key (PEM); NULL: checkpoints
	                         are not verified nor checked for consistency */
	int log_level;        /* enum log_level, default warn */
	/* Sealed parts (docs/SEALING.md). NULL when not set; a node without them can neither
	 * seal nor open (an auditor's node needs none). */
	char *encryption_cert;     /* own newest encryption certificate (PEM) */
	char *encryption_key;      /* its private key (PEM, mode 0600) */
	char *old_encryption_keys; /* "CERT:KEY[,CERT:KEY...]": older keys still opening older
	                              parts (rotation); relative paths against `dir` */
	char *custodians;          /* "id[,id...]": agencies every sealed part is also sealed to */
	/* [web]: `ihala web`. NULL when not set. */
	char *web_cert_file;   /* HTTPS certificate chain (PEM); with web_key_file, or neither */
	char *web_key_file;    /* its private key (PEM, mode 0600) */
	char *web_server_name; /* the host name clerks open, besides the listening address */
	uint64_t web_idle_ms;  /* session idle timeout, default 30m */
};

/* Most custodians, and most old encryption keys (with the current one, SEAL_KEYS_MAX). */
#define CLIENTCONF_CUSTODIANS_MAX 8
#define CLIENTCONF_OLD_KEYS_MAX 15

/*
 * Split a comma-separated list in place-free fashion: calls cb for each item (trimmed of
 * spaces, not empty), with its text and length; a non-zero return stops and is returned.
 */
int clientconf_list(const char *list, int (*cb)(void *arg, const char *item, size_t len),
                    void *arg);

/*
 * The config file to use: `option` (from --config) when not NULL, else the
 * IHALA_CONFIG environment variable when set and not empty, else NULL (the
 * caller says "use --config FILE or set IHALA_CONFIG"). The result points
 * into `option` or the environment.
 */
const char *clientconf_locate(const char *option);

/*
 * clientconf_load: reads and checks `path`. On success returns 0 and *out
 * holds a new config (free with clientconf_free). On failure *out is NULL,
 * every problem was appended to `errs` ("FILE:LINE: message"), and it
 * returns IHALA_ECONFIG (or IHALA_ENOMEM).
 */
int clientconf_load(const char *path, struct client_config **out, struct conf_errors *errs);
void clientconf_free(struct client_config *cfg);

/* The option table, for documentation and tests. */
const struct conf_option *clientconf_options(size_t *n);

#endif
