/* tls_ceiling.c - benchmark ceiling: ihala's TLS 1.3 channel alone, two channels in one process. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "channel.h"
#include "error.h"
#include "tlsctx.h"

/*
 *   tls_ceiling PKI COUNT SIZE
 *
 * A client channel (PKI/dma.pem) and a server channel (PKI/broker.pem) with the broker's
 * mutual TLS 1.3 contexts; the bytes go from one to the other in memory. After the handshake
 * the client writes COUNT frames of SIZE bytes and the server reads them back, in chunks of
 * 64 frames (encryption, decryption and framing: the work the broker's main thread does per
 * message, with no ZeroMQ and no store). Prints "frames_per_s=R mib_per_s=M".
 */

#define CHUNK (256 * 1024)

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Move everything `from` has for the wire into `to`. */
static int
shuttle(struct channel *from, struct channel *to, uint8_t *buf)
{
	size_t n;
	int err;

	for (;;) {
		err = channel_take_out(from, buf, CHUNK, &n);
		if (err != 0 || n == 0) {
			return err;
		}
		err = channel_feed(to, buf, n);
		if (err != 0) {
			return err;
		}
	}
}

static SSL_CTX *
ctx_new(const char *pki, const char *name, int server)
{
	char ca[512], crl[512], cert[512], key[512], err[512];
	struct tls_files tf;
	SSL_CTX *ctx = NULL;
	int rc;

	snprintf(ca, sizeof(ca), "%s/ca.pem", pki);
	snprintf(crl, sizeof(crl), "%s/ca.crl", pki);
	snprintf(cert, sizeof(cert), "%s/%s.pem", pki, name);
	snprintf(key, sizeof(key), "%s/%s.key", pki, name);
	tf.ca_file = ca;
	tf.crl_file = server ? crl : NULL;
	tf.cert_file = cert;
	tf.key_file = key;
	rc = server ? tlsctx_server_new(&tf, &ctx, err, sizeof(err))
	            : tlsctx_client_new(&tf, &ctx, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "tls_ceiling: %s\n", err);
		return NULL;
	}
	return ctx;
}

int
main(int argc, char **argv)
{
	SSL_CTX *cctx, *sctx;
	struct channel *c = NULL, *s = NULL;
	uint8_t *buf, *frame;
	uint64_t count, sent = 0, got = 0;
	size_t size;
	double t0, t1;
	int i;

	if (argc != 4) {
		fprintf(stderr, "usage: tls_ceiling PKI COUNT SIZE\n");
		return 2;
	}
	count = strtoull(argv[2], NULL, 10);
	size = strtoul(argv[3], NULL, 10);
	cctx = ctx_new(argv[1], "dma", 0);
	sctx = ctx_new(argv[1], "broker", 1);
	buf = malloc(CHUNK);
	frame = calloc(1, size ? size : 1);
	if (cctx == NULL || sctx == NULL || buf == NULL || frame == NULL ||
	    channel_new(cctx, 0, "localhost", 1u << 20, 4u << 20, &c) != 0 ||
	    channel_new(sctx, 1, NULL, 1u << 20, 4u << 20, &s) != 0) {
		return 2;
	}
	for (i = 0;
	     i < 10 && (channel_state(c) != CHANNEL_OPEN || channel_state(s) != CHANNEL_OPEN);
	     i++) {
		if (shuttle(c, s, buf) != 0 || shuttle(s, c, buf) != 0) {
			break;
		}
	}
	if (channel_state(c) != CHANNEL_OPEN || channel_state(s) != CHANNEL_OPEN) {
		fprintf(stderr, "tls_ceiling: handshake failed: %s / %s\n", channel_error_text(c),
		        channel_error_text(s));
		return 1;
	}
	t0 = now_s();
	while (got < count) {
		const uint8_t *body;
		size_t len;
		int k;

		for (k = 0; k < 64 && sent < count; k++, sent++) {
			if (channel_write_frame(c, frame, size) != 0) {
				fprintf(stderr, "tls_ceiling: write failed\n");
				return 1;
			}
		}
		if (shuttle(c, s, buf) != 0) {
			fprintf(stderr, "tls_ceiling: %s\n", channel_error_text(s));
			return 1;
		}
		while (channel_next_frame(s, &body, &len) == 1) {
			got++;
		}
	}
	t1 = now_s();
	printf("frames_per_s=%.0f mib_per_s=%.1f\n", (double)count / (t1 - t0),
	       (double)count * (double)size / (t1 - t0) / (1024.0 * 1024.0));
	channel_free(c);
	channel_free(s);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	free(buf);
	free(frame);
	return 0;
}
