/* envsubmit.c - test driver: submit one Envelope given as JSON (what the ihala CLI cannot send). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clientconf.h"
#include "ihala.h"
#include "pbjson.h"

/*
 * envsubmit CONFIG FILE.json
 *	Read one Envelope as JSON (pbjson names: "messageId", "statusUpdate", ...), submit it
 *	through libihala as the node of CONFIG, and print one line:
 *	  "accepted SEQ" or "duplicate SEQ"   (exit 0)
 *	  "refused CODE: sentence"            (exit 1)
 *	Exit 2 for bad arguments or input, 3 when no receipt came, 4 for a local failure.
 *	The ihala CLI only builds well-formed envelopes (e.g. "completed" always with an outcome);
 *	the broker must refuse the others itself, and this is how the tests send them.
 */

#define ENV_MAX_INPUT (1024 * 1024)
#define TIMEOUT_MS 5000

static char *
read_all(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf = NULL;
	size_t n;

	if (fp == NULL) {
		perror(path);
		return NULL;
	}
	buf = malloc(ENV_MAX_INPUT + 1);
	if (buf == NULL) {
		fclose(fp);
		return NULL;
	}
	n = fread(buf, 1, ENV_MAX_INPUT + 1, fp);
	if (ferror(fp) || n > ENV_MAX_INPUT) {
		fprintf(stderr, "envsubmit: cannot read '%s' (or larger than %d bytes)\n", path,
		        ENV_MAX_INPUT);
		free(buf);
		fclose(fp);
		return NULL;
	}
	fclose(fp);
	buf[n] = '\0';
	*len = n;
	return buf;
}

int
main(int argc, char **argv)
{
	struct client_config *cfg = NULL;
	struct conf_errors errs;
	struct ihala_client *c = NULL;
	ProtobufCMessage *m = NULL;
	Ihala__V2__Envelope *env;
	struct ihala_receipt rc;
	char err[512];
	char *text = NULL;
	size_t len = 0;
	int e, code = 4;

	if (argc != 3) {
		fprintf(stderr, "usage: envsubmit CONFIG ENVELOPE.json\n");
		return 2;
	}
	text = read_all(argv[2], &len);
	if (text == NULL) {
		return 2;
	}
	if (pbjson_from_string(&ihala__v2__envelope__descriptor, text, len, &m, err, sizeof(err)) !=
	    0) {
		fprintf(stderr, "envsubmit: %s: %s\n", argv[2], err);
		free(text);
		return 2;
	}
	free(text);
	env = (Ihala__V2__Envelope *)m;
	if (env->message_id == NULL || env->message_id[0] == '\0') {
		/* ours, not the client's: the message is freed with free_unpacked below */
		char id[ID_MAX + 1];

		ihala_new_message_id(id, sizeof(id));
		if (env->message_id != NULL && env->message_id != protobuf_c_empty_string) {
			free(env->message_id);
		}
		env->message_id = strdup(id);
		if (env->message_id == NULL) {
			goto out;
		}
	}
	conf_errors_init(&errs);
	if (clientconf_load(argv[1], &cfg, &errs) != 0) {
		conf_errors_print(&errs, stderr);
		conf_errors_release(&errs);
		code = 2;
		goto out;
	}
	conf_errors_release(&errs);
	if (ihala_open(cfg, &c) != 0) {
		fprintf(stderr, "envsubmit: cannot open the client\n");
		goto out;
	}
	if ((e = ihala_connect(c, TIMEOUT_MS)) != 0) {
		fprintf(stderr, "envsubmit: cannot connect: %s\n", ihala_errmsg(c));
		code = 3;
		goto out;
	}
	memset(&rc, 0, sizeof(rc));
	e = ihala_submit(c, env, TIMEOUT_MS, &rc);
	if (e == 0) {
		printf("%s %llu\n",
		       rc.status == IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_DUPLICATE
		           ? "duplicate"
		           : "accepted",
		       (unsigned long long)rc.seq);
		code = 0;
	} else if (rc.status == IHALA__V2__RECEIPT_STATUS__RECEIPT_STATUS_REFUSED) {
		printf("refused %s: %s\n", ihala_errname(e),
		       rc.text[0] != '\0' ? rc.text : ihala_strerror(e));
		code = 1;
	} else {
		fprintf(stderr, "envsubmit: no receipt: %s\n", ihala_errmsg(c));
		code = 3;
	}
out:
	ihala_close(c);
	clientconf_free(cfg);
	protobuf_c_message_free_unpacked(m, NULL);
	return code;
}
