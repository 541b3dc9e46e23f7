/* channel.c - a TLS 1.3 session over OpenSSL memory BIOs, framing messages by length. */
#include "channel.h"

#include "endian.h"
#include "error.h"
#include "tlsctx.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

/* Most plaintext in one TLS record, and what we decrypt per SSL_read. */
#define RECORD_MAX 16384
/* TLS 1.3 record overhead: 5 header + 1 inner type + 16 AEAD tag, rounded up. */
#define RECORD_OVERHEAD 32

struct channel {
	SSL *ssl;
	BIO *rbio; /* TLS bytes in; owned by ssl */
	BIO *wbio; /* TLS bytes out; owned by ssl */
	enum channel_state state;
	int is_server;
	int err;       /* the error that failed the channel */
	int in_dead;   /* input refused (frame too large); TLS still fine for writing */
	int got_data;  /* the peer has sent application data */
	int throttled; /* decryption paused: enough frames buffered */
	size_t max_frame;
	size_t out_cap;
	size_t in_limit; /* undelivered plaintext at which decryption pauses */
	/* Frames written but not yet sealed: many small frames share one TLS record (and one
	 * ZeroMQ message) instead of paying a record each. Sealed when full, before any output
	 * is taken and before close_notify. */
	uint8_t *out_plain; /* RECORD_MAX bytes once the first frame is written */
	size_t out_plain_len;
	/* Decrypted bytes: [in_off, in_scan) whole frames, [in_scan, in_len) partial. */
	uint8_t *in;
	size_t in_cap, in_len, in_off, in_scan;
	char errtext[512];
	char badcert[200]; /* which certificate failed verification */
};

/*
 * tls_dead: the TLS session is unusable (state FAILED). Otherwise only the
 * input is refused from now on: the channel stays OPEN for a last frame and
 * close_notify.
 */
static void fail(struct channel *ch, int err, int tls_dead, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
fail(struct channel *ch, int err, int tls_dead, const char *fmt, ...)
{
	va_list ap;

	if (tls_dead) {
		ch->state = CHANNEL_FAILED;
	} else {
		ch->in_dead = 1;
	}
	ch->err = err;
	ch->throttled = 0;
	va_start(ap, fmt);
	vsnprintf(ch->errtext, sizeof(ch->errtext), fmt, ap);
	va_end(ap);
	ERR_clear_error();
}

/* Remember which certificate of the peer's chain failed, for the error text. */
static int
verify_note(int ok, X509_STORE_CTX *sctx)
{
	struct channel *ch;
	char subject[160];
	X509 *cert;
	SSL *ssl;

	if (ok) {
		return ok;
	}
	ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
	ch = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
	if (ch == NULL || ch->badcert[0] != '\0') {
		return ok;
	}
	cert = X509_STORE_CTX_get_current_cert(sctx);
	subject[0] = '\0';
	if (cert != NULL) {
		/* Escapes control characters: the subject is the peer's to choose. */
		X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
	}
	snprintf(ch->badcert, sizeof(ch->badcert), " (depth %d, subject '%s')",
	         X509_STORE_CTX_get_error_depth(sctx), subject);
	return ok;
}

/*
 * Record why OpenSSL failed: our callback's refusal, our verification
 * result, else the error queue (which holds the alert the peer sent).
 */
static void
fail_ssl(struct channel *ch, int err)
{
	char detail[400];
	const char *refusal;
	long v;

	refusal = tlsctx_refusal(ch->ssl);
	v = SSL_get_verify_result(ch->ssl);
	tlsctx_errors(detail, sizeof(detail));
	if (refusal != NULL) {
		fail(ch, err, 1, "%s", refusal);
	} else if (v != X509_V_OK) {
		fail(ch, err, 1, "certificate verify failed: %s%s",
		     X509_verify_cert_error_string(v), ch->badcert);
	} else if (detail[0] != '\0') {
		fail(ch, err, 1, "%s", detail);
	} else {
		fail(ch, err, 1, "TLS failure with no reason given");
	}
}

/* Is the first queued OpenSSL error an alert the peer sent us? */
static int
peer_alert_queued(void)
{
	unsigned long e = ERR_peek_error();

	return ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) >= SSL_AD_REASON_OFFSET;
}

/* Push bytes into the read BIO, which copies them. */
static int
push_in(struct channel *ch, const uint8_t *p, size_t len)
{
	int chunk, n;

	while (len > 0) {
		chunk = len > (size_t)INT_MAX ? INT_MAX : (int)len;
		n = BIO_write(ch->rbio, p, chunk);
		if (n <= 0) {
			fail(ch, IHALA_ENOMEM, 1, "out of memory buffering TLS input");
			return ch->err;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
alpn_agreed(SSL *ssl)
{
	const unsigned char *p = NULL;
	unsigned int n = 0;

	SSL_get0_alpn_selected(ssl, &p, &n);
	return p != NULL && n == sizeof(TLSCTX_ALPN) - 1 && memcmp(p, TLSCTX_ALPN, n) == 0;
}

/* Checks once the handshake is done; OpenSSL has verified the chain already. */
static int
handshake_done(struct channel *ch)
{
	const char *why = NULL;

	if (SSL_version(ch->ssl) != TLS1_3_VERSION) {
		why = "negotiated a protocol older than TLS 1.3";
	} else if (SSL_get0_peer_certificate(ch->ssl) == NULL) {
		why = "peer sent no certificate";
	} else if (SSL_get_verify_result(ch->ssl) != X509_V_OK) {
		why = X509_verify_cert_error_string(SSL_get_verify_result(ch->ssl));
	} else if (!alpn_agreed(ch->ssl)) {
		why = "peer did not agree on ALPN protocol '" TLSCTX_ALPN "'";
	}
	if (why != NULL) {
		/* Tell the peer we are gone rather than leave it waiting. */
		ERR_clear_error();
		SSL_shutdown(ch->ssl);
		fail(ch, IHALA_EHANDSHAKE, 1, "%s", why);
		return ch->err;
	}
	ch->state = CHANNEL_OPEN;
	return 0;
}

static int
drive_handshake(struct channel *ch)
{
	int r;

	ERR_clear_error();
	r = SSL_do_handshake(ch->ssl);
	if (r == 1) {
		return handshake_done(ch);
	}
	switch (SSL_get_error(ch->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		fail(ch, IHALA_EHANDSHAKE, 1, "peer closed the connection during the handshake");
		return ch->err;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0) {
			fail(ch, IHALA_EHANDSHAKE, 1, "TLS stream ended during the handshake");
			return ch->err;
		}
		fail_ssl(ch, IHALA_EHANDSHAKE);
		return ch->err;
	default:
		fail_ssl(ch, IHALA_EHANDSHAKE);
		return ch->err;
	}
}

/* Advance in_scan over whole frames; refuse a too long one from its header. */
static int
scan_frames(struct channel *ch)
{
	uint32_t flen;

	while (ch->in_len - ch->in_scan >= CHANNEL_FRAME_PREFIX) {
		flen = be32dec(ch->in + ch->in_scan);
		if (flen > ch->max_frame) {
			fail(ch, IHALA_EFRAMESIZE, 0,
			     "peer sent a frame of %lu bytes, more than the maximum of %zu",
			     (unsigned long)flen, ch->max_frame);
			return ch->err;
		}
		if (ch->in_len - ch->in_scan - CHANNEL_FRAME_PREFIX < flen) {
			break;
		}
		ch->in_scan += CHANNEL_FRAME_PREFIX + flen;
	}
	return 0;
}

/* Make room for `need` more bytes at in_len, within in_limit. */
static int
in_reserve(struct channel *ch, size_t need)
{
	size_t want, ncap;
	uint8_t *p;

	if (ch->in_cap - ch->in_len >= need) {
		return 0;
	}
	if (ch->in_off > 0) {
		memmove(ch->in, ch->in + ch->in_off, ch->in_len - ch->in_off);
		ch->in_len -= ch->in_off;
		ch->in_scan -= ch->in_off;
		ch->in_off = 0;
		if (ch->in_cap - ch->in_len >= need) {
			return 0;
		}
	}
	want = ch->in_len + need;
	ncap = ch->in_cap > 0 ? ch->in_cap : RECORD_MAX + CHANNEL_FRAME_PREFIX;
	while (ncap < want) {
		ncap = ncap > ch->in_limit / 2 ? ch->in_limit : ncap * 2;
	}
	p = realloc(ch->in, ncap);
	if (p == NULL) {
		fail(ch, IHALA_ENOMEM, 1, "out of memory buffering %zu bytes of frames", ncap);
		return ch->err;
	}
	ch->in = p;
	ch->in_cap = ncap;
	return 0;
}

/* Decrypt until OpenSSL wants more input, the peer closes, or enough is buffered. */
static int
pump_read(struct channel *ch)
{
	size_t avail, need, n;
	int r, rc;

	while (ch->state == CHANNEL_OPEN && !ch->in_dead) {
		avail = ch->in_len - ch->in_off;
		if (avail >= ch->in_limit) {
			ch->throttled = 1;
			return 0;
		}
		ch->throttled = 0;
		need = ch->in_limit - avail;
		if (need > RECORD_MAX) {
			need = RECORD_MAX;
		}
		rc = in_reserve(ch, need);
		if (rc != 0) {
			return rc;
		}
		ERR_clear_error();
		r = SSL_read_ex(ch->ssl, ch->in + ch->in_len, need, &n);
		if (r == 1) {
			ch->got_data = 1;
			ch->in_len += n;
			rc = scan_frames(ch);
			if (rc != 0) {
				return rc;
			}
			continue;
		}
		switch (SSL_get_error(ch->ssl, r)) {
		case SSL_ERROR_WANT_READ:
			return 0;
		case SSL_ERROR_ZERO_RETURN:
			/* Clean close by the peer: answer with our close_notify. */
			ERR_clear_error();
			SSL_shutdown(ch->ssl);
			ERR_clear_error();
			ch->state = CHANNEL_CLOSED;
			return 0;
		case SSL_ERROR_SYSCALL:
			if (ERR_peek_error() == 0) {
				fail(ch, IHALA_ETLS, 1, "TLS stream ended without close_notify");
				return ch->err;
			}
			fail_ssl(ch, IHALA_ETLS);
			return ch->err;
		default:
			/*
			 * Under TLS 1.3 the server judges a client's certificate
			 * after the client's handshake finished: a fatal alert
			 * before any application data is the handshake failing.
			 */
			fail_ssl(ch, !ch->got_data && peer_alert_queued() ? IHALA_EHANDSHAKE
			                                                  : IHALA_ETLS);
			return ch->err;
		}
	}
	return 0;
}

int
channel_new(SSL_CTX *ctx, int is_server, const char *server_name, size_t max_frame, size_t out_cap,
            struct channel **out)
{
	struct channel *ch = NULL;
	X509_VERIFY_PARAM *param;
	int rc;

	if (ctx == NULL || out == NULL || max_frame == 0 || max_frame > CHANNEL_MAX_FRAME_LIMIT ||
	    out_cap == 0 || (!is_server && (server_name == NULL || server_name[0] == '\0'))) {
		return IHALA_EINVAL;
	}
	ch = calloc(1, sizeof(*ch));
	if (ch == NULL) {
		return IHALA_ENOMEM;
	}
	ch->is_server = is_server ? 1 : 0;
	ch->state = CHANNEL_HANDSHAKING;
	ch->max_frame = max_frame;
	ch->out_cap = out_cap;
	ch->in_limit = CHANNEL_FRAME_PREFIX + max_frame + RECORD_MAX;

	ERR_clear_error();
	ch->ssl = SSL_new(ctx);
	if (ch->ssl == NULL) {
		rc = IHALA_ENOMEM;
		goto fail;
	}
	ch->rbio = BIO_new(BIO_s_mem());
	ch->wbio = BIO_new(BIO_s_mem());
	if (ch->rbio == NULL || ch->wbio == NULL) {
		BIO_free(ch->rbio);
		BIO_free(ch->wbio);
		ch->rbio = ch->wbio = NULL;
		rc = IHALA_ENOMEM;
		goto fail;
	}
	/* An empty input BIO means "retry later" (SSL_ERROR_WANT_READ), not EOF. */
	BIO_set_mem_eof_return(ch->rbio, -1);
	SSL_set_bio(ch->ssl, ch->rbio, ch->wbio);
	SSL_set_app_data(ch->ssl, ch);
	SSL_set_verify(ch->ssl, SSL_get_verify_mode(ch->ssl), verify_note);

	if (is_server) {
		SSL_set_accept_state(ch->ssl);
	} else {
		SSL_set_connect_state(ch->ssl);
		param = SSL_get0_param(ch->ssl);
		X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (X509_VERIFY_PARAM_set1_ip_asc(param, server_name) != 1) {
			/* A name, not an address: check it and send it as SNI. */
			if (SSL_set1_host(ch->ssl, server_name) != 1 ||
			    SSL_set_tlsext_host_name(ch->ssl, server_name) != 1) {
				rc = IHALA_EINVAL;
				goto fail;
			}
		}
		ERR_clear_error();
		/* Produce the ClientHello now. */
		rc = drive_handshake(ch);
		if (rc != 0) {
			rc = IHALA_ETLS;
			goto fail;
		}
	}
	ERR_clear_error();
	*out = ch;
	return 0;
fail:
	ERR_clear_error();
	channel_free(ch);
	return rc;
}

void
channel_free(struct channel *ch)
{
	if (ch == NULL) {
		return;
	}
	SSL_free(ch->ssl); /* frees both BIOs */
	free(ch->in);
	free(ch->out_plain);
	free(ch);
}

int
channel_feed(struct channel *ch, const uint8_t *tls_in, size_t len)
{
	int rc;

	if (ch == NULL || (tls_in == NULL && len > 0)) {
		return IHALA_EINVAL;
	}
	if (ch->state == CHANNEL_FAILED || ch->in_dead) {
		return ch->err;
	}
	if (ch->state == CHANNEL_CLOSED) {
		return 0; /* late bytes after a close are of no interest */
	}
	rc = push_in(ch, tls_in, len);
	if (rc != 0) {
		return rc;
	}
	if (ch->state == CHANNEL_HANDSHAKING) {
		rc = drive_handshake(ch);
		if (rc != 0 || ch->state != CHANNEL_OPEN) {
			return rc;
		}
	}
	return pump_read(ch);
}

int
channel_next_frame(struct channel *ch, const uint8_t **body, size_t *len)
{
	uint32_t flen;
	int rc;

	if (ch == NULL || body == NULL || len == NULL) {
		return IHALA_EINVAL;
	}
	if (ch->in_off == ch->in_scan && ch->throttled && ch->state == CHANNEL_OPEN &&
	    !ch->in_dead) {
		rc = pump_read(ch);
		if (rc != 0 && ch->in_off == ch->in_scan) {
			return rc;
		}
	}
	if (ch->in_off == ch->in_scan) {
		return 0;
	}
	flen = be32dec(ch->in + ch->in_off);
	*body = ch->in + ch->in_off + CHANNEL_FRAME_PREFIX;
	*len = flen;
	ch->in_off += CHANNEL_FRAME_PREFIX + flen;
	if (ch->in_off == ch->in_len) {
		/* Empty: start over at the front; the body stays where it is. */
		ch->in_off = ch->in_scan = ch->in_len = 0;
	}
	return 1;
}

size_t
channel_wire_size(size_t len)
{
	size_t n, records;

	if (len > SIZE_MAX / 2) {
		return SIZE_MAX;
	}
	n = len + CHANNEL_FRAME_PREFIX;
	/* One record for the header and the start of the body, then full ones. */
	records = n / RECORD_MAX + 2;
	return n + records * RECORD_OVERHEAD;
}

static int
write_all(struct channel *ch, const uint8_t *p, size_t len)
{
	size_t n;
	int r;

	while (len > 0) {
		ERR_clear_error();
		r = SSL_write_ex(ch->ssl, p, len, &n);
		if (r != 1) {
			/* Memory BIOs never block, so this is fatal. */
			fail_ssl(ch, IHALA_ETLS);
			return ch->err;
		}
		p += n;
		len -= n;
	}
	return 0;
}

/* Encrypt the staged frames into one record (nothing when none are staged). */
static int
seal(struct channel *ch)
{
	size_t n = ch->out_plain_len;

	if (n == 0) {
		return 0;
	}
	ch->out_plain_len = 0;
	if (ch->state != CHANNEL_OPEN) {
		return 0; /* a failed channel sends nothing more but its alert */
	}
	return write_all(ch, ch->out_plain, n);
}

/* Append plaintext to the staged record, sealing each time it fills. */
static int
stage(struct channel *ch, const uint8_t *p, size_t len)
{
	int rc;

	while (len > 0) {
		size_t room = RECORD_MAX - ch->out_plain_len, k;

		if (ch->out_plain_len == 0 && len >= RECORD_MAX) {
			/* Whole records of a large body go to TLS without the copy. */
			k = len - len % RECORD_MAX;
			if ((rc = write_all(ch, p, k)) != 0) {
				return rc;
			}
		} else {
			k = len < room ? len : room;
			memcpy(ch->out_plain + ch->out_plain_len, p, k);
			ch->out_plain_len += k;
			if (ch->out_plain_len == RECORD_MAX && (rc = seal(ch)) != 0) {
				return rc;
			}
		}
		p += k;
		len -= k;
	}
	return 0;
}

int
channel_write_frame(struct channel *ch, const uint8_t *body, size_t len)
{
	uint8_t hdr[CHANNEL_FRAME_PREFIX];
	size_t pending;
	int rc;

	if (ch == NULL || (body == NULL && len > 0)) {
		return IHALA_EINVAL;
	}
	switch (ch->state) {
	case CHANNEL_HANDSHAKING:
		return IHALA_EPROTOCOL;
	case CHANNEL_CLOSED:
	case CHANNEL_FAILED:
		return IHALA_ECLOSED;
	case CHANNEL_OPEN:
		break;
	}
	if (len > ch->max_frame) {
		return IHALA_EFRAMESIZE;
	}
	/* Into an empty output a frame always goes, so a frame larger than out_cap can pass. */
	pending = channel_pending_out(ch);
	if (pending > 0 && pending + channel_wire_size(len) > ch->out_cap) {
		return IHALA_EAGAIN;
	}
	if (ch->out_plain == NULL && (ch->out_plain = malloc(RECORD_MAX)) == NULL) {
		return IHALA_ENOMEM;
	}
	be32enc(hdr, (uint32_t)len);
	rc = stage(ch, hdr, CHANNEL_FRAME_PREFIX);
	if (rc == 0 && len > 0) {
		rc = stage(ch, body, len);
	}
	return rc;
}

size_t
channel_pending_out(const struct channel *ch)
{
	if (ch == NULL) {
		return 0;
	}
	return BIO_ctrl_pending(ch->wbio) +
	       (ch->out_plain_len > 0 ? ch->out_plain_len + RECORD_OVERHEAD : 0);
}

int
channel_take_out(struct channel *ch, uint8_t *buf, size_t cap, size_t *n)
{
	int chunk, r;

	if (ch == NULL || buf == NULL || n == NULL) {
		return IHALA_EINVAL;
	}
	*n = 0;
	if (cap == 0) {
		return 0;
	}
	(void)seal(ch); /* a failure fails the channel; its alert is in the output */
	chunk = cap > (size_t)INT_MAX ? INT_MAX : (int)cap;
	r = BIO_read(ch->wbio, buf, chunk);
	if (r > 0) {
		*n = (size_t)r;
	}
	return 0;
}

enum channel_state
channel_state(const struct channel *ch)
{
	return ch->state;
}

const char *
channel_state_name(enum channel_state st)
{
	switch (st) {
	case CHANNEL_HANDSHAKING:
		return "handshaking";
	case CHANNEL_OPEN:
		return "open";
	case CHANNEL_FAILED:
		return "failed";
	case CHANNEL_CLOSED:
		return "closed";
	}
	return "unknown";
}

int
channel_error(const struct channel *ch)
{
	return ch->err;
}

const char *
channel_error_text(const struct channel *ch)
{
	return ch->errtext;
}

X509 *
channel_peer_cert(const struct channel *ch)
{
	return SSL_get0_peer_certificate(ch->ssl);
}

SSL *
channel_ssl(const struct channel *ch)
{
	return ch->ssl;
}

int
channel_alpn_ok(const struct channel *ch)
{
	return alpn_agreed(ch->ssl);
}

int
channel_close(struct channel *ch)
{
	if (ch == NULL || ch->state == CHANNEL_CLOSED) {
		return 0;
	}
	if (ch->state == CHANNEL_OPEN) {
		(void)seal(ch); /* frames written before the close go before close_notify */
		ERR_clear_error();
		SSL_shutdown(ch->ssl);
		ERR_clear_error();
	}
	ch->state = CHANNEL_CLOSED;
	ch->throttled = 0;
	return 0;
}

int
channel_is_client_hello(const uint8_t *tls, size_t len)
{
	size_t reclen;

	/* record: type(1) version(2) length(2); handshake: type(1) length(3) */
	if (tls == NULL || len < 9) {
		return 0;
	}
	reclen = (size_t)tls[3] << 8 | tls[4];
	return tls[0] == 0x16 && tls[1] == 0x03 && reclen >= 4 && reclen <= RECORD_MAX &&
	       tls[5] == 0x01;
}
