/* fuzz_channel_split.c - fuzz target: the channel's stream splitter, through real TLS. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "channel.h"
#include "error.h"
#include "fuzz.h"
#include "log.h"
#include "tlsctx.h"

/*
 * What the peer writes inside TLS is a stream of 4-byte big-endian lengths and bodies;
 * channel.c decrypts it into a buffer and splits it into frames (scan_frames, in_reserve,
 * the pause of pump_read when enough is buffered, channel_next_frame). A peer chooses every
 * byte of that stream, so the target writes arbitrary plaintext into a genuine TLS 1.3
 * session (the client's SSL, below the channel's own framing) and the server's channel
 * splits it.
 *
 * Input: 3 header bytes, then segments.
 *   [0] max_frame: MAX_FRAMES[b % 8]
 *   [1] TLS bytes fed per channel_feed(): 0 all at once, else (b & 0x7f) + 1, times 1024
 *       when b & 0x80
 *   [2] frames taken after each feed: 0 every one ready, else at most b (the rest stay
 *       buffered; decryption pauses at max_frame + 16 KiB and resumes as they are taken)
 *   segment: 1 byte r, 2 bytes n (big-endian, cut to what is left), n bytes; the n bytes
 *       are written (r & 0x3f) + 1 times, each by one SSL_write. At most STREAM_MAX bytes in
 *       all.
 * A model splits the same stream. Invariants:
 * - the frames come out in order, each equal to the model's, never a partial one;
 * - when the model meets a length over max_frame, channel_feed() answers IHALA_EFRAMESIZE
 *   (then every later call does), the channel stays open for a last frame, and every frame
 *   before that length still comes out; no frame after it;
 * - no other error: the TLS is genuine;
 * - at the end every whole frame of the stream has come out.
 * Key and certificate (Ed25519, self-signed, CN and DNS localhost, its own CA and CRL
 * issuer) are made once in memory, written to a private temp dir for tlsctx, which builds
 * the broker's and a client's contexts exactly as they are built in service.
 */

#define STREAM_MAX (512 * 1024)
static const size_t MAX_FRAMES[8] = {16, 100, 1000, 4096, 16384, 65536, 100000, 1 << 20};

static SSL_CTX *sctx, *cctx;

/* ---- set-up: a self-signed Ed25519 certificate, its key and an empty CRL ---- */

static void
write_pem(const char *dir, const char *name, int mode, int (*w)(FILE *, void *), void *obj)
{
	char path[256];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "w");
	FUZZ_ASSERT(fp != NULL);
	FUZZ_ASSERT(chmod(path, (mode_t)mode) == 0);
	FUZZ_ASSERT(w(fp, obj) == 1);
	FUZZ_ASSERT(fclose(fp) == 0);
}

static int
w_cert(FILE *fp, void *o)
{
	return PEM_write_X509(fp, o);
}

static int
w_key(FILE *fp, void *o)
{
	return PEM_write_PrivateKey(fp, o, NULL, NULL, 0, NULL, NULL);
}

static int
w_crl(FILE *fp, void *o)
{
	return PEM_write_X509_CRL(fp, o);
}

static void
add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *e;

	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	FUZZ_ASSERT(e != NULL);
	FUZZ_ASSERT(X509_add_ext(x, e, -1) == 1);
	X509_EXTENSION_free(e);
}

static void
make_contexts(void)
{
	char dir[] = "/tmp/ihala-fuzz-channel.XXXXXX", path[4][256];
	struct tls_files f;
	EVP_PKEY *key;
	X509_NAME *name;
	X509_CRL *crl;
	X509 *x;
	char err[512];
	size_t i;

	key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	FUZZ_ASSERT(key != NULL);
	x = X509_new();
	FUZZ_ASSERT(x != NULL && X509_set_version(x, 2) == 1);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 365 * 50);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
	                           -1, 0);
	X509_set_issuer_name(x, name);
	X509_set_pubkey(x, key);
	add_ext(x, NID_basic_constraints, "critical,CA:TRUE");
	add_ext(x, NID_key_usage, "critical,digitalSignature,keyCertSign,cRLSign");
	add_ext(x, NID_subject_alt_name, "DNS:localhost");
	FUZZ_ASSERT(X509_sign(x, key, NULL) > 0);

	crl = X509_CRL_new();
	FUZZ_ASSERT(crl != NULL && X509_CRL_set_version(crl, 1) == 1);
	X509_CRL_set_issuer_name(crl, name);
	{
		ASN1_TIME *t0 = X509_gmtime_adj(NULL, -3600);
		ASN1_TIME *t1 = X509_gmtime_adj(NULL, 3600L * 24 * 365 * 50);

		X509_CRL_set1_lastUpdate(crl, t0);
		X509_CRL_set1_nextUpdate(crl, t1);
		ASN1_TIME_free(t0);
		ASN1_TIME_free(t1);
	}
	FUZZ_ASSERT(X509_CRL_sign(crl, key, NULL) > 0);

	FUZZ_ASSERT(mkdtemp(dir) != NULL);
	write_pem(dir, "cert.pem", 0644, w_cert, x);
	write_pem(dir, "key.pem", 0600, w_key, key);
	write_pem(dir, "crl.pem", 0644, w_crl, crl);
	snprintf(path[0], sizeof(path[0]), "%s/cert.pem", dir);
	snprintf(path[1], sizeof(path[1]), "%s/key.pem", dir);
	snprintf(path[2], sizeof(path[2]), "%s/crl.pem", dir);
	f.ca_file = path[0];
	f.cert_file = path[0];
	f.key_file = path[1];
	f.crl_file = path[2];
	if (tlsctx_server_new(&f, &sctx, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_channel_split: server context: %s\n", err);
		abort();
	}
	f.crl_file = NULL;
	if (tlsctx_client_new(&f, &cctx, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_channel_split: client context: %s\n", err);
		abort();
	}
	for (i = 0; i < 3; i++) {
		unlink(path[i]);
	}
	rmdir(dir);
	X509_CRL_free(crl);
	X509_free(x);
	EVP_PKEY_free(key);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_setlevel(LOG_LEVEL_ERROR);
	make_contexts();
	return 0;
}

/* ---- one session ---- */

struct run {
	struct channel *srv, *cli;
	size_t max_frame, chunk, take;
	/* the model: the stream written so far, and how far its whole frames reach */
	uint8_t *stream;
	size_t len, scan, nframes, oversize_at; /* oversize_at: offset of a length > max_frame */
	int oversize;
	/* what came out of the channel */
	size_t got, got_frames;
	int err;
};

/* Move what `from` has to send into `to`, in chunks of `chunk` bytes (0: all at once); the
 * last error channel_feed() gave, or 0. */
static int
shuttle(struct channel *from, struct channel *to, size_t chunk)
{
	static uint8_t buf[64 * 1024];
	size_t n, off, c;
	int rc = 0, rc2;

	for (;;) {
		FUZZ_ASSERT(channel_take_out(from, buf, sizeof(buf), &n) == 0);
		if (n == 0) {
			return rc;
		}
		for (off = 0; off < n; off += c) {
			c = chunk == 0 || chunk > n - off ? n - off : chunk;
			rc2 = channel_feed(to, buf + off, c);
			if (rc2 != 0) {
				rc = rc2;
			}
		}
	}
}

/* Advance the model over the whole frames of the stream written so far. */
static void
model_scan(struct run *r)
{
	uint32_t flen;

	while (!r->oversize && r->len - r->scan >= CHANNEL_FRAME_PREFIX) {
		flen = (uint32_t)r->stream[r->scan] << 24 | (uint32_t)r->stream[r->scan + 1] << 16 |
		       (uint32_t)r->stream[r->scan + 2] << 8 | r->stream[r->scan + 3];
		if (flen > r->max_frame) {
			r->oversize = 1;
			r->oversize_at = r->scan;
			return;
		}
		if (r->len - r->scan - CHANNEL_FRAME_PREFIX < flen) {
			return;
		}
		r->scan += CHANNEL_FRAME_PREFIX + flen;
		r->nframes++;
	}
}

/* Take up to `max` frames (0: all that are ready); each must be the model's next. */
static void
take_frames(struct run *r, size_t max)
{
	const uint8_t *body;
	size_t len, n = 0;
	uint32_t flen;
	int rc;

	while (max == 0 || n < max) {
		rc = channel_next_frame(r->srv, &body, &len);
		if (rc == 0) {
			return;
		}
		if (rc < 0) {
			FUZZ_ASSERT(rc == IHALA_EFRAMESIZE);
			r->err = rc;
			return;
		}
		/* the model's next frame starts at r->got */
		FUZZ_ASSERT(r->got + CHANNEL_FRAME_PREFIX <= r->len);
		flen = (uint32_t)r->stream[r->got] << 24 | (uint32_t)r->stream[r->got + 1] << 16 |
		       (uint32_t)r->stream[r->got + 2] << 8 | r->stream[r->got + 3];
		FUZZ_ASSERT(flen <= r->max_frame);
		FUZZ_ASSERT(len == flen);
		FUZZ_ASSERT(r->got + CHANNEL_FRAME_PREFIX + len <= r->len);
		FUZZ_ASSERT(len == 0 ||
		            memcmp(body, r->stream + r->got + CHANNEL_FRAME_PREFIX, len) == 0);
		FUZZ_ASSERT(!r->oversize || r->got < r->oversize_at);
		r->got += CHANNEL_FRAME_PREFIX + len;
		r->got_frames++;
		n++;
	}
}

static void
fed(struct run *r, int rc)
{
	if (rc != 0) {
		FUZZ_ASSERT(rc == IHALA_EFRAMESIZE);
		r->err = rc;
	}
	FUZZ_ASSERT(channel_state(r->srv) == CHANNEL_OPEN);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run r;
	size_t off, n, i, reps;
	int rc;

	if (size < 3) {
		return 0;
	}
	memset(&r, 0, sizeof(r));
	r.max_frame = MAX_FRAMES[data[0] % 8];
	r.chunk = data[1] == 0 ? 0 : ((size_t)(data[1] & 0x7f) + 1) * (data[1] & 0x80 ? 1024 : 1);
	r.take = data[2];
	r.stream = malloc(STREAM_MAX);
	FUZZ_ASSERT(r.stream != NULL);
	FUZZ_ASSERT(channel_new(sctx, 1, NULL, r.max_frame, 1 << 20, &r.srv) == 0);
	FUZZ_ASSERT(channel_new(cctx, 0, "localhost", r.max_frame, 1 << 20, &r.cli) == 0);
	/* The handshake: client flight, server flight, client Finished. */
	for (i = 0; i < 4 &&
	            (channel_state(r.srv) != CHANNEL_OPEN || channel_state(r.cli) != CHANNEL_OPEN);
	     i++) {
		FUZZ_ASSERT(shuttle(r.cli, r.srv, 0) == 0);
		FUZZ_ASSERT(shuttle(r.srv, r.cli, 0) == 0);
	}
	FUZZ_ASSERT(channel_state(r.srv) == CHANNEL_OPEN && channel_state(r.cli) == CHANNEL_OPEN);

	off = 3;
	while (off + 3 <= size && r.len < STREAM_MAX) {
		reps = (size_t)(data[off] & 0x3f) + 1;
		n = (size_t)data[off + 1] << 8 | data[off + 2];
		off += 3;
		if (n > size - off) {
			n = size - off;
		}
		for (i = 0; i < reps && r.len + n <= STREAM_MAX; i++) {
			size_t w = 0;

			if (n > 0) {
				FUZZ_ASSERT(SSL_write_ex(channel_ssl(r.cli), data + off, n, &w) ==
				            1);
				FUZZ_ASSERT(w == n);
				memcpy(r.stream + r.len, data + off, n);
				r.len += n;
			}
			model_scan(&r);
			rc = shuttle(r.cli, r.srv, r.chunk);
			fed(&r, rc);
			take_frames(&r, r.take);
		}
		off += n;
	}
	/* The end: everything whole comes out. */
	take_frames(&r, 0);
	model_scan(&r);
	FUZZ_ASSERT(r.got_frames == r.nframes);
	FUZZ_ASSERT(r.got == r.scan);
	if (r.oversize) {
		FUZZ_ASSERT(r.err == IHALA_EFRAMESIZE);
		FUZZ_ASSERT(channel_error(r.srv) == IHALA_EFRAMESIZE);
		FUZZ_ASSERT(channel_feed(r.srv, NULL, 0) == IHALA_EFRAMESIZE);
		/* still open for a last frame (the Error) and close_notify */
		FUZZ_ASSERT(channel_write_frame(r.srv, (const uint8_t *)"x", 1) == 0);
	} else {
		FUZZ_ASSERT(r.err == 0 && channel_error(r.srv) == 0);
	}
	FUZZ_ASSERT(channel_state(r.srv) == CHANNEL_OPEN);
	channel_free(r.cli);
	channel_free(r.srv);
	free(r.stream);
	return 0;
}
