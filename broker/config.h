/* config.h - the broker's configuration: struct broker_config, loaded from broker.conf. */
#ifndef IHALA_BROKER_CONFIG_H
#define IHALA_BROKER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "policy.h"

/* Roles: proto Role's values, under the names the config uses. */
enum agency_role {
	AGENCY_ROLE_DMA = IHALA__V2__ROLE__ROLE_DMA,
	AGENCY_ROLE_MINISTRY = IHALA__V2__ROLE__ROLE_MINISTRY,
	AGENCY_ROLE_NGO = IHALA__V2__ROLE__ROLE_NGO,
	AGENCY_ROLE_AUDITOR = IHALA__V2__ROLE__ROLE_AUDITOR,
};

#define BROKER_MAX_AGENCIES 1024
/* Most encryption certificates one agency lists (encryption_cert), all files together. */
#define AGENCY_ENC_CERTS_MAX 16

/* One encryption certificate of an agency, as read from its file (the broker does not judge
 * it: nodes do, docs/SEALING.md). Owned by the agency_config. */
struct agency_enc_cert {
	char *path;         /* absolute path of the file it came from */
	unsigned char *der; /* the certificate, DER */
	size_t len;
};

/* One [agency.ID] section. Every string is owned by the broker_config. */
struct agency_config {
	char *id;          /* the ID of [agency.ID] */
	int role;          /* enum agency_role */
	char *cn;          /* certificate CN (or SAN URI ihala:agency:CN); defaults to id */
	char *fingerprint; /* pinned SHA-256 of the certificate (DER): 64 lowercase
	                      hex digits; NULL when not pinned */
	unsigned char fingerprint_bin[32]; /* the same, binary; all zero when not pinned */
	char *name;                        /* display name (UTF-8); defaults to id */
	unsigned may_send;                 /* POLICY_KIND_* bits: the override, else the role's */
	int may_send_set;                  /* 1 when the config overrides the role default */
	int may_open_cases;                /* may refer without a parent: may_open_cases, else 1
	                                      for dma and 0 for the others (never may_send) */
	int may_send_to_any;               /* 1: may address any agency ("*", the default) */
	char **may_send_to;                /* else: these agency ids (all configured) */
	size_t may_send_to_count;
	int line; /* line of the section header, for messages */
	/* raw option text, as read (kept for reload diagnostics) */
	char *may_send_text;
	char *may_open_cases_text;
	char *may_send_to_text;
	char *encryption_cert_text; /* encryption_cert: paths, as written */
	/* the certificates of those files, in file order (the directory, DirectoryRequest) */
	struct agency_enc_cert *enc_certs;
	size_t n_enc_certs;
};

/*
 * The whole file. Durations are in milliseconds (fields named *_ms), sizes in
 * bytes. Strings are owned by the struct and live until broker_config_free();
 * optional ones are NULL when not set. Paths are absolute (relative ones in
 * the file are resolved against the file's directory).
 */
struct broker_config {
	char *path; /* the config file's absolute path (for reloads after a chdir) */
	char *dir;  /* its absolute directory */

	struct {
		char *listen;          /* tcp://HOST:PORT, default tcp://127.0.0.1:7450 */
		char *data_dir;        /* LMDB directory; may not exist yet (its parent does) */
		uint64_t map_size;     /* initial LMDB map size, default 1G */
		uint64_t map_size_max; /* auto_grow stops here, default 1T (>= map_size) */
		int auto_grow;         /* grow the map when full, default yes */
		uint64_t disk_reserve; /* submissions refused below this much free space, 64M */
		int log_level;         /* enum log_level, default info */
		char *log_origin;      /* checkpoint origin line, default "ihala.local/log" */
		char *user;            /* user to drop privileges to; NULL: keep */
		char *metrics_listen;  /* tcp://HOST:PORT for Prometheus text; NULL: off */
	} broker;

	struct {
		char *ca_file;  /* federation CA (PEM), required */
		char *crl_file; /* CRL (PEM); NULL: no revocation list */
		uint64_t
		    crl_warn_before_ms; /* warn before the CRL's nextUpdate, default 7d; 0: never */
		char *cert_file;        /* broker certificate (PEM), required */
		char *key_file;         /* broker private key (PEM, mode 0600), required */
		char *server_name; /* the name clients verify (documentation only); may be NULL */
	} tls;

	struct {
		uint64_t max_frame;    /* bytes, default 1M (4K..16M) */
		uint64_t max_sessions; /* default 1024 */
		uint64_t
		    max_sessions_per_agency; /* of those, authenticated as one agency, default 64 */
		uint64_t max_preauth_sessions;    /* default 64 (<= max_sessions) */
		uint64_t max_preauth_per_address; /* of those, from one IP address, default 32 */
		uint64_t handshake_timeout_ms;    /* default 10s */
		uint64_t queue_limit;        /* undelivered entries per agency, default 100000 */
		uint64_t queue_share;        /* percent of it one sender may fill, default 50 */
		uint64_t referral_rate;      /* messages per referral per minute, default 600 */
		uint64_t referral_bytes;     /* envelope bytes per referral, default 64M */
		uint64_t max_inflight_bytes; /* Submit envelope bytes in flight per session */
		uint64_t credit_window;      /* Deliver frames in flight per session, default 64 */
		uint64_t max_inflight;       /* Submit frames in flight per session, default 256 */
		uint64_t out_cap;            /* TLS output bytes buffered per session, default 4M */
		uint64_t in_cap;             /* TLS input bytes queued per session, default 16M */
		uint64_t idle_timeout_ms;    /* 0: never (the default) */
		/* sealed parts of a referral erased this long after it reached a terminal
		 * status; 0: never (the default) */
		uint64_t retention_ms;
	} limits;

	struct {
		uint64_t max_batch; /* submissions per commit, default 1024 */
	} commit;

	struct {
		char *key_file;         /* Ed25519 private key (PEM, mode 0600), required */
		uint64_t every_entries; /* sign after this many entries, default 1000 */
		uint64_t every_ms;      /* ... or this much time (option every_seconds), 10s */
	} checkpoint;

	struct {
		uint64_t emergency_ms; /* default 24h */
		uint64_t urgent_ms;    /* default 72h */
		uint64_t normal_ms;    /* default 14d */
	} deadlines;

	struct agency_config *agencies; /* in file order */
	size_t nagencies;
};

/*
 * broker_config_load: reads and checks `path`. On success returns 0 and
 * *out holds a new config (free with broker_config_free). On failure *out is
 * NULL, every problem found was appended to `errs` as FILE:LINE: message
 * (print them with conf_errors_print), and it returns IHALA_ECONFIG (or
 * IHALA_ENOMEM).
 */
int broker_config_load(const char *path, struct broker_config **out, struct conf_errors *errs);
/*
 * The same for a reload after dropping root (keys_kept 1): the private key files (tls.key_file,
 * checkpoint.key_file) are not opened, only their paths taken: the broker keeps the keys it
 * read at start-up, and a changed path is named by broker_config_warn_restart_only.
 */
int broker_config_reload(const char *path, int keys_kept, struct broker_config **out,
                         struct conf_errors *errs);
void broker_config_free(struct broker_config *cfg);

/* The agency with that id / certificate CN, or NULL. Valid while cfg lives. */
const struct agency_config *broker_config_find_agency(const struct broker_config *cfg,
                                                      const char *id);
const struct agency_config *broker_config_find_cn(const struct broker_config *cfg, const char *cn);
/* "dma", "ministry", "ngo", "auditor"; "unknown" otherwise. Static storage. */
const char *broker_config_role_name(int role);
/* The message kinds a role may send by default (POLICY_KIND_* bits): policy_role_default. */
unsigned broker_config_role_sends(int role);

/* The option table, for documentation and tests. */
const struct conf_option *broker_config_options(size_t *n);

/*
 * On a reload: logs a warning naming each option read at start-up only (a row without
 * CONF_RELOAD) whose value differs between the configuration in force `old` and the new
 * one `cfg`, as "reload: 'SECTION.NAME' changed; ...". Returns how many it named.
 */
size_t broker_config_warn_restart_only(const struct broker_config *old,
                                       const struct broker_config *cfg);

#endif
