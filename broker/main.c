/* main.c - ihala-broker: command line, configuration check, start-up. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "config.h"
#include "server.h"
#include "error.h"
#include "log.h"
#include "logdb.h"
#include "checkpoint.h"
#include "nodump.h"

#ifndef IHALA_VERSION
#define IHALA_VERSION "0.1.0"
#endif

#define DEFAULT_CONFIG "/etc/ihala/broker.conf"

/* Exit codes (documented in --help). */
#define EXIT_OK 0
#define EXIT_REFUSED 1
#define EXIT_USAGE 2

static void
usage(FILE *fp)
{
	fprintf(fp,
	        "usage: ihala-broker [-dn] [-c FILE]\n"
	        "       ihala-broker --backup DIR [-c FILE]\n"
	        "       ihala-broker --verifier-key [-c FILE]\n"
	        "\n"
	        "  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
	        "  -n, --check         check the configuration, print 'configuration OK', exit\n"
	        "  -d, --foreground    stay in the foreground and log to stderr\n"
	        "      --backup DIR    write a consistent, compacted copy of the store to\n"
	        "                      DIR/data.mdb and exit; safe while the broker runs\n"
	        "      --verifier-key  print the C2SP verifier key of the checkpoint key\n"
	        "                      (NAME+KEYID+BASE64, the name is log_origin) and exit;\n"
	        "                      give it to the nodes and auditors (checkpoint_key)\n"
	        "  -h, --help          this help\n"
	        "      --version       print the version\n"
	        "\n"
	        "Exit codes: 0 ok, 1 configuration refused or start-up failed, 2 usage.\n"
	        "Configuration errors are printed as FILE:LINE: message.\n");
}

/*
 * Loads and checks the configuration. On success returns it (caller frees);
 * otherwise prints every error on stderr as FILE:LINE: message and returns NULL.
 */
static struct broker_config *
load_config(const char *path)
{
	struct conf_errors errs;
	struct broker_config *cfg = NULL;

	conf_errors_init(&errs);
	if (broker_config_load(path, &cfg, &errs) != 0) {
		conf_errors_print(&errs, stderr);
		if (conf_errors_count(&errs) == 0) {
			fprintf(stderr, "%s:0: configuration refused\n", path);
		}
		cfg = NULL;
	}
	conf_errors_release(&errs);
	return cfg;
}

/* --backup: reads the live store through a read-only open (no lock taken: the running
 * broker goes on), copies it, and re-opens the copy to prove it reads. */
static int
backup(const struct broker_config *cfg, const char *dir)
{
	struct logdb *s = NULL;
	struct logdb_txn t;
	struct logdb_stats st;
	char copy[4096];
	int err;

	err = logdb_open(cfg->broker.data_dir, &s);
	if (err != 0) {
		fprintf(stderr, "ihala-broker: cannot open the store '%s' read-only: %s\n",
		        cfg->broker.data_dir, ihala_strerror(err));
		return EXIT_REFUSED;
	}
	err = logdb_backup(s, dir);
	logdb_close(s);
	s = NULL;
	if (err != 0) {
		fprintf(stderr, "ihala-broker: backup of '%s' into '%s' failed: %s\n",
		        cfg->broker.data_dir, dir, ihala_strerror(err));
		return EXIT_REFUSED;
	}
	err = logdb_open(dir, &s);
	if (err == 0 && (err = logdb_begin(s, &t)) == 0) {
		err = logdb_stat(&t, &st);
		logdb_end(&t);
	}
	logdb_close(s);
	if (err != 0) {
		fprintf(stderr, "ihala-broker: the backup in '%s' does not read back: %s\n", dir,
		        ihala_strerror(err));
		return EXIT_REFUSED;
	}
	snprintf(copy, sizeof(copy), "%s/data.mdb", dir);
	printf("backup %s: %llu entries, last seq %llu\n", copy, (unsigned long long)st.entries,
	       (unsigned long long)st.last_seq);
	return EXIT_OK;
}

/* --verifier-key: the public side of [checkpoint] key_file in C2SP vkey form, on stdout. */
static int
print_verifier_key(const struct broker_config *cfg)
{
	struct checkpoint_signer *signer = NULL;
	struct checkpoint_verifier *v = NULL;
	char *vkey = NULL;
	int err;

	err = checkpoint_key_load(cfg->checkpoint.key_file, cfg->broker.log_origin, &signer);
	if (err != 0) {
		fprintf(stderr, "ihala-broker: cannot load checkpoint key '%s': %s\n",
		        cfg->checkpoint.key_file, ihala_strerror(err));
		return EXIT_REFUSED;
	}
	err = checkpoint_verifier_from_signer(signer, &v);
	if (err == 0) {
		err = checkpoint_verifier_string(v, &vkey);
	}
	if (err == 0) {
		printf("%s\n", vkey);
	} else {
		fprintf(stderr, "ihala-broker: cannot derive the verifier key: %s\n",
		        ihala_strerror(err));
	}
	free(vkey);
	checkpoint_verifier_free(v);
	checkpoint_signer_free(signer);
	return err == 0 ? EXIT_OK : EXIT_REFUSED;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'}, {"check", no_argument, NULL, 'n'},
	    {"foreground", no_argument, NULL, 'd'},   {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},      {"backup", required_argument, NULL, 'B'},
	    {"verifier-key", no_argument, NULL, 'K'}, {NULL, 0, NULL, 0},
	};
	const char *path = DEFAULT_CONFIG;
	const char *backup_dir = NULL;
	struct broker_config *cfg;
	int ch, check = 0, foreground = 0, vkey = 0;

	while ((ch = getopt_long(argc, argv, "c:dhn", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'd':
			foreground = 1;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'n':
			check = 1;
			break;
		case 'B':
			backup_dir = optarg;
			break;
		case 'K':
			vkey = 1;
			break;
		case 'V':
			printf("ihala-broker %s\n", IHALA_VERSION);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "ihala-broker: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}

	log_init("ihala-broker", 1);
	/* The broker's memory holds survivors' data and the keys: no core file of it, and no
	 * peeking by another process of its user. Before daemon() and any thread. */
	(void)nodump_init(NODUMP_LIMIT_CORE);
	cfg = load_config(path);
	if (cfg == NULL) {
		return EXIT_REFUSED;
	}
	if (check) {
		printf("configuration OK\n");
		broker_config_free(cfg);
		return EXIT_OK;
	}
	if (vkey) {
		ch = print_verifier_key(cfg);
		broker_config_free(cfg);
		return ch;
	}
	if (backup_dir != NULL) {
		ch = backup(cfg, backup_dir);
		broker_config_free(cfg);
		return ch;
	}
	if (!foreground) {
		/* Detach and log to syslog; the store is opened after the fork (LMDB caveat). */
		if (daemon(0, 0) != 0) {
			fprintf(stderr, "ihala-broker: cannot daemonize: %s\n", strerror(errno));
			broker_config_free(cfg);
			return EXIT_REFUSED;
		}
		log_init("ihala-broker", 0);
	}
	/*
	 * Keep freed memory rather than hand it back at once: by default glibc trims a heap (and
	 * its threads' heaps) whenever 128 KiB at its top are free, so the next burst of frames
	 * faults the same pages in again (page faults were 9% of the main thread's samples). Up to
	 * 8 MiB per heap stays with the broker; everything above goes back as before.
	 */
	(void)mallopt(M_TRIM_THRESHOLD, 8 * 1024 * 1024);
	/* server_run takes cfg over. */
	return server_run(cfg) == 0 ? EXIT_OK : EXIT_REFUSED;
}
