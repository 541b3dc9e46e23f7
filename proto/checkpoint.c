/* checkpoint.c - C2SP signed-note checkpoints: Ed25519 signing and strict verification. */
#define _GNU_SOURCE /* memmem */
#include "checkpoint.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "base64.h"
#include "error.h"
#include "hex.h"
#include "log.h"
#include "pemkey.h"

#define ED25519_PUB_LEN 32
#define ED25519_SIG_LEN 64
#define KEYID_LEN 4
#define ALG_ED25519 0x01
/* "— " : U+2014 EM DASH in UTF-8, then a space. */
#define SIG_PREFIX "\xe2\x80\x94 "
#define SIG_PREFIX_LEN 4
/* C2SP asks verifiers to accept at least 16; more is a note built to waste our time. */
#define MAX_SIG_LINES 100
/* Canonical base64 of a hash, without the NUL. */
#define B64_HASH_LEN 44

/* A note key: both signer and verifier are one of these. */
struct note_key {
	EVP_PKEY *pkey;
	char name[CHECKPOINT_NAME_MAX + 1];
	uint8_t id[KEYID_LEN];
	uint8_t pub[ED25519_PUB_LEN];
};

struct checkpoint_signer {
	struct note_key k;
};

struct checkpoint_verifier {
	struct note_key k;
};

/* ---- text rules ---- */

/* Valid UTF-8 without ASCII control characters; '\n' allowed when nl is set. */
static int
text_ok(const char *str, size_t len, int nl)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, k, n;
	uint32_t cp, min;

	while (i < len) {
		unsigned c = s[i];

		if (c < 0x80) {
			if ((c < 0x20 && !(nl && c == '\n')) || c == 0x7f) {
				return 0;
			}
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			n = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return 0;
		}
		if (len - i - 1 < n) {
			return 0;
		}
		for (k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80) {
				return 0;
			}
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
			return 0;
		}
		i += n + 1;
	}
	return 1;
}

static int
origin_ok(const char *s, size_t len)
{
	return len > 0 && len <= CHECKPOINT_NAME_MAX && text_ok(s, len, 0);
}

static int
name_ok(const char *s, size_t len)
{
	return origin_ok(s, len) && memchr(s, ' ', len) == NULL && memchr(s, '+', len) == NULL;
}

/* ---- keys ---- */

static int
key_id(const char *name, const uint8_t pub[ED25519_PUB_LEN], uint8_t id[KEYID_LEN])
{
	uint8_t buf[CHECKPOINT_NAME_MAX + 2 + ED25519_PUB_LEN], md[32];
	size_t n = strlen(name);

	memcpy(buf, name, n);
	buf[n] = '\n';
	buf[n + 1] = ALG_ED25519;
	memcpy(buf + n + 2, pub, ED25519_PUB_LEN);
	if (EVP_Digest(buf, n + 2 + ED25519_PUB_LEN, md, NULL, EVP_sha256(), NULL) != 1) {
		return IHALA_EINTERNAL;
	}
	memcpy(id, md, KEYID_LEN);
	return 0;
}

/* Fill k from an Ed25519 key; takes a reference on pkey only on success. */
static int
key_init(struct note_key *k, EVP_PKEY *pkey, const char *name)
{
	size_t publen = ED25519_PUB_LEN, n;
	int err;

	if (name == NULL || !name_ok(name, (n = strlen(name)))) {
		return IHALA_EINVAL;
	}
	if (pkey == NULL || !EVP_PKEY_is_a(pkey, "ED25519") ||
	    EVP_PKEY_get_raw_public_key(pkey, k->pub, &publen) != 1 || publen != ED25519_PUB_LEN) {
		return IHALA_EINVAL;
	}
	memcpy(k->name, name, n + 1);
	if ((err = key_id(k->name, k->pub, k->id)) != 0) {
		return err;
	}
	if (EVP_PKEY_up_ref(pkey) != 1) {
		return IHALA_EINTERNAL;
	}
	k->pkey = pkey;
	return 0;
}

int
checkpoint_signer_from_pkey(EVP_PKEY *pkey, const char *name, struct checkpoint_signer **out)
{
	struct checkpoint_signer *s;
	size_t len = 0;
	int err;

	*out = NULL;
	if (pkey == NULL || EVP_PKEY_get_raw_private_key(pkey, NULL, &len) != 1) {
		return IHALA_EINVAL;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		return IHALA_ENOMEM;
	}
	if ((err = key_init(&s->k, pkey, name)) != 0) {
		free(s);
		return err;
	}
	*out = s;
	return 0;
}

void
checkpoint_signer_free(struct checkpoint_signer *s)
{
	if (s != NULL) {
		EVP_PKEY_free(s->k.pkey);
		free(s);
	}
}

int
checkpoint_key_load(const char *pem_path, const char *name, struct checkpoint_signer **out)
{
	EVP_PKEY *pkey = NULL;
	struct stat st;
	FILE *fp = NULL;
	int fd, err;

	*out = NULL;
	if ((fd = open(pem_path, O_RDONLY | O_CLOEXEC)) == -1) {
		log_warn("checkpoint key '%s'", pem_path);
		return IHALA_EIO;
	}
	/* Checked on the open descriptor, so the file read is the file checked. */
	if (fstat(fd, &st) == -1) {
		log_warn("checkpoint key '%s'", pem_path);
		err = IHALA_EIO;
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		log_warnx("checkpoint key '%s' is not a regular file", pem_path);
		err = IHALA_ECONFIG;
		goto fail;
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		log_security("checkpoint key '%s' is accessible by group or others (chmod 600 it)",
		             pem_path);
		err = IHALA_EKEYPERM;
		goto fail;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		log_security("checkpoint key '%s' is owned by uid %u, not by us (chown it)",
		             pem_path, (unsigned)st.st_uid);
		err = IHALA_EKEYPERM;
		goto fail;
	}
	if ((fp = fdopen(fd, "r")) == NULL) {
		log_warn("checkpoint key '%s'", pem_path);
		err = IHALA_EIO;
		goto fail;
	}
	fd = -1;
	pkey = PEM_read_PrivateKey(fp, NULL, pem_no_passphrase, NULL);
	if (pkey == NULL || !EVP_PKEY_is_a(pkey, "ED25519")) {
		ERR_clear_error();
		log_warnx("checkpoint key '%s' is not an unencrypted Ed25519 private key in PEM "
		          "(make one with: openssl genpkey -algorithm ed25519)",
		          pem_path);
		err = IHALA_ECONFIG;
		goto fail;
	}
	if ((err = checkpoint_signer_from_pkey(pkey, name, out)) == IHALA_EINVAL) {
		log_warnx("checkpoint key '%s': cannot use key name '%s'", pem_path,
		          name != NULL ? name : "(null)");
	}
fail:
	EVP_PKEY_free(pkey);
	if (fp != NULL) {
		fclose(fp);
	}
	if (fd != -1) {
		close(fd);
	}
	return err;
}

static int
verifier_new(EVP_PKEY *pkey, const char *name, struct checkpoint_verifier **out)
{
	struct checkpoint_verifier *v;
	int err;

	if ((v = calloc(1, sizeof(*v))) == NULL) {
		return IHALA_ENOMEM;
	}
	if ((err = key_init(&v->k, pkey, name)) != 0) {
		free(v);
		return err;
	}
	*out = v;
	return 0;
}

/* The verifier holds a public-only key, never the signer's private one. */
int
checkpoint_verifier_from_signer(const struct checkpoint_signer *s, struct checkpoint_verifier **out)
{
	EVP_PKEY *pub;
	int err;

	*out = NULL;
	pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, s->k.pub, ED25519_PUB_LEN);
	if (pub == NULL) {
		return IHALA_EINTERNAL;
	}
	err = verifier_new(pub, s->k.name, out);
	EVP_PKEY_free(pub);
	return err;
}

int
checkpoint_verifier_load(const char *pem_path, const char *name, struct checkpoint_verifier **out)
{
	EVP_PKEY *pkey;
	FILE *fp;
	int err;

	*out = NULL;
	if ((fp = fopen(pem_path, "re")) == NULL) {
		log_warn("checkpoint public key '%s'", pem_path);
		return IHALA_EIO;
	}
	pkey = PEM_read_PUBKEY(fp, NULL, pem_no_passphrase, NULL);
	fclose(fp);
	if (pkey == NULL || !EVP_PKEY_is_a(pkey, "ED25519")) {
		ERR_clear_error();
		log_warnx("checkpoint public key '%s' is not an Ed25519 public key in PEM",
		          pem_path);
		EVP_PKEY_free(pkey);
		return IHALA_ECONFIG;
	}
	err = verifier_new(pkey, name, out);
	EVP_PKEY_free(pkey);
	return err;
}

int
checkpoint_verifier_parse(const char *vkey, struct checkpoint_verifier **out)
{
	char name[CHECKPOINT_NAME_MAX + 1];
	uint8_t id[KEYID_LEN], raw[1 + ED25519_PUB_LEN + 2];
	const char *p1, *p2, *b64;
	EVP_PKEY *pkey;
	size_t n, i;
	int err;

	*out = NULL;
	if ((p1 = strchr(vkey, '+')) == NULL || (p2 = strchr(p1 + 1, '+')) == NULL) {
		return IHALA_EINVAL;
	}
	n = (size_t)(p1 - vkey);
	if (!name_ok(vkey, n) || p2 - p1 - 1 != 2 * KEYID_LEN) {
		return IHALA_EINVAL;
	}
	memcpy(name, vkey, n);
	name[n] = '\0';
	for (i = 0; i < KEYID_LEN; i++) {
		int hi = hex_digit(p1[1 + 2 * i]), lo = hex_digit(p1[2 + 2 * i]);

		if (hi < 0 || lo < 0) {
			return IHALA_EINVAL;
		}
		id[i] = (uint8_t)(hi << 4 | lo);
	}
	b64 = p2 + 1;
	if ((err = base64_decode(b64, strlen(b64), raw, sizeof(raw), &n)) != 0) {
		return err;
	}
	if (n != 1 + ED25519_PUB_LEN || raw[0] != ALG_ED25519) {
		return IHALA_EINVAL;
	}
	pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw + 1, ED25519_PUB_LEN);
	if (pkey == NULL) {
		ERR_clear_error();
		return IHALA_EINVAL;
	}
	err = verifier_new(pkey, name, out);
	EVP_PKEY_free(pkey);
	if (err == 0 && memcmp((*out)->k.id, id, KEYID_LEN) != 0) {
		checkpoint_verifier_free(*out);
		*out = NULL;
		return IHALA_EINVAL;
	}
	return err;
}

void
checkpoint_verifier_free(struct checkpoint_verifier *v)
{
	if (v != NULL) {
		EVP_PKEY_free(v->k.pkey);
		free(v);
	}
}

int
checkpoint_verifier_string(const struct checkpoint_verifier *v, char **out)
{
	uint8_t raw[1 + ED25519_PUB_LEN];
	char b64[B64_HASH_LEN + 4];
	size_t len;
	char *s;

	raw[0] = ALG_ED25519;
	memcpy(raw + 1, v->k.pub, ED25519_PUB_LEN);
	base64_encode(raw, sizeof(raw), b64);
	len = strlen(v->k.name) + 1 + 2 * KEYID_LEN + 1 + strlen(b64) + 1;
	if ((s = malloc(len)) == NULL) {
		return IHALA_ENOMEM;
	}
	snprintf(s, len, "%s+%02x%02x%02x%02x+%s", v->k.name, v->k.id[0], v->k.id[1], v->k.id[2],
	         v->k.id[3], b64);
	*out = s;
	return 0;
}

const char *
checkpoint_verifier_name(const struct checkpoint_verifier *v)
{
	return v->k.name;
}

/* ---- notes ---- */

/* A note body: non-empty lines of text, each ending in '\n'. */
static int
body_ok(const char *body, size_t len)
{
	return len > 0 && len <= CHECKPOINT_TEXT_MAX && body[len - 1] == '\n' && body[0] != '\n' &&
	       text_ok(body, len, 1) && memmem(body, len, "\n\n", 2) == NULL;
}

int
checkpoint_note_sign(const struct checkpoint_signer *s, const char *body, size_t len,
                     char **text_out)
{
	uint8_t blob[KEYID_LEN + ED25519_SIG_LEN];
	char b64[BASE64_LEN(sizeof(blob)) + 1];
	size_t siglen = ED25519_SIG_LEN, namelen = strlen(s->k.name), total;
	EVP_MD_CTX *ctx = NULL;
	char *text, *p;
	int err = IHALA_EINTERNAL;

	*text_out = NULL;
	if (!body_ok(body, len)) {
		return IHALA_EINVAL;
	}
	total = len + 1 + SIG_PREFIX_LEN + namelen + 1 + BASE64_LEN(sizeof(blob)) + 1;
	if (total > CHECKPOINT_TEXT_MAX) {
		return IHALA_ETOOLARGE;
	}
	if ((ctx = EVP_MD_CTX_new()) == NULL) {
		return IHALA_ENOMEM;
	}
	/* PureEdDSA: one shot, no digest (the MD must be NULL). */
	if (EVP_DigestSignInit(ctx, NULL, NULL, NULL, s->k.pkey) != 1 ||
	    EVP_DigestSign(ctx, blob + KEYID_LEN, &siglen, (const unsigned char *)body, len) != 1 ||
	    siglen != ED25519_SIG_LEN) {
		goto fail;
	}
	memcpy(blob, s->k.id, KEYID_LEN);
	base64_encode(blob, sizeof(blob), b64);
	if ((text = malloc(total + 1)) == NULL) {
		err = IHALA_ENOMEM;
		goto fail;
	}
	p = text;
	memcpy(p, body, len);
	p += len;
	*p++ = '\n';
	memcpy(p, SIG_PREFIX, SIG_PREFIX_LEN);
	p += SIG_PREFIX_LEN;
	memcpy(p, s->k.name, namelen);
	p += namelen;
	*p++ = ' ';
	memcpy(p, b64, BASE64_LEN(sizeof(blob)));
	p += BASE64_LEN(sizeof(blob));
	*p++ = '\n';
	*p = '\0';
	*text_out = text;
	err = 0;
fail:
	EVP_MD_CTX_free(ctx);
	return err;
}

int
checkpoint_sign(const struct checkpoint_signer *s, const char *origin, uint64_t size,
                const uint8_t root[CHECKPOINT_HASH_LEN], char **text_out)
{
	char body[CHECKPOINT_NAME_MAX + 1 + 20 + 1 + B64_HASH_LEN + 2];
	char b64[B64_HASH_LEN + 1];
	int n;

	*text_out = NULL;
	if (origin == NULL || !origin_ok(origin, strlen(origin))) {
		return IHALA_EINVAL;
	}
	base64_encode(root, CHECKPOINT_HASH_LEN, b64);
	n = snprintf(body, sizeof(body), "%s\n%" PRIu64 "\n%s\n", origin, size, b64);
	if (n < 0 || (size_t)n >= sizeof(body)) {
		return IHALA_EINTERNAL;
	}
	return checkpoint_note_sign(s, body, (size_t)n, text_out);
}

/*
 * One signature line, "— name base64\n", any key's. *known is set when it
 * names v's key (name and key id): that one must verify. The others are only
 * checked for form, whatever their type or length.
 */
static int
sig_line(const struct checkpoint_verifier *v, const char *line, size_t len, const char *body,
         size_t body_len, int *known)
{
	uint8_t blob[KEYID_LEN + ED25519_SIG_LEN];
	const char *sp, *b64;
	size_t namelen, b64len, n;
	EVP_MD_CTX *ctx;
	int ok;

	*known = 0;
	if (len < SIG_PREFIX_LEN || memcmp(line, SIG_PREFIX, SIG_PREFIX_LEN) != 0) {
		return IHALA_EINVAL;
	}
	line += SIG_PREFIX_LEN;
	len -= SIG_PREFIX_LEN;
	if ((sp = memchr(line, ' ', len)) == NULL) {
		return IHALA_EINVAL;
	}
	namelen = (size_t)(sp - line);
	b64 = sp + 1;
	b64len = len - namelen - 1;
	if (!name_ok(line, namelen) || base64_check(b64, b64len, &n) != 0 || n <= KEYID_LEN) {
		return IHALA_EINVAL;
	}
	if (namelen != strlen(v->k.name) || memcmp(line, v->k.name, namelen) != 0) {
		return 0;
	}
	/* The first 8 characters hold the key id whole and never padding here. */
	if (EVP_DecodeBlock(blob, (const unsigned char *)b64, 8) != 6 ||
	    memcmp(blob, v->k.id, KEYID_LEN) != 0) {
		return 0;
	}
	*known = 1;
	if (n != sizeof(blob) || base64_decode(b64, b64len, blob, sizeof(blob), &n) != 0) {
		return IHALA_ESIGNATURE;
	}
	if ((ctx = EVP_MD_CTX_new()) == NULL) {
		return IHALA_ENOMEM;
	}
	/* 1 is the only success; 0 and negative values are failures. */
	ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, v->k.pkey) == 1 &&
	     EVP_DigestVerify(ctx, blob + KEYID_LEN, ED25519_SIG_LEN, (const unsigned char *)body,
	                      body_len) == 1;
	EVP_MD_CTX_free(ctx);
	if (!ok) {
		/* Leave no error behind for the TLS code sharing this thread's queue. */
		ERR_clear_error();
		return IHALA_ESIGNATURE;
	}
	return 0;
}

int
checkpoint_note_open(const struct checkpoint_verifier *v, const char *text, size_t len,
                     const char **body, size_t *body_len)
{
	const char *sep, *line, *end, *nl;
	size_t blen;
	int err, known, verified = 0, lines = 0;

	if (len > CHECKPOINT_TEXT_MAX) {
		return IHALA_ETOOLARGE;
	}
	if (len == 0 || text[len - 1] != '\n' || !text_ok(text, len, 1)) {
		return IHALA_EINVAL;
	}
	/* The body ends at the first blank line; it has no blank line itself. */
	if ((sep = memmem(text, len, "\n\n", 2)) == NULL) {
		return IHALA_EINVAL;
	}
	blen = (size_t)(sep - text) + 1;
	if (!body_ok(text, blen)) {
		return IHALA_EINVAL;
	}
	end = text + len;
	for (line = sep + 2; line < end; line = nl + 1) {
		nl = memchr(line, '\n', (size_t)(end - line));
		if (++lines > MAX_SIG_LINES) {
			return IHALA_EINVAL;
		}
		if ((err = sig_line(v, line, (size_t)(nl - line), text, blen, &known)) != 0) {
			return err;
		}
		verified |= known;
	}
	if (lines == 0) {
		return IHALA_EINVAL;
	}
	if (!verified) {
		return IHALA_ESIGNATURE;
	}
	*body = text;
	*body_len = blen;
	return 0;
}

/* Decimal without sign, blank or leading zero, fitting 64 bits. */
static int
parse_size(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0 || len > 20 || (len > 1 && s[0] == '0')) {
		return IHALA_EINVAL;
	}
	for (i = 0; i < len; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (d > 9 || v > (UINT64_MAX - d) / 10) {
			return IHALA_EINVAL;
		}
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int
checkpoint_open(const struct checkpoint_verifier *v, const char *origin, const char *text,
                size_t len, struct checkpoint *out)
{
	struct checkpoint c;
	const char *body, *line[3], *end, *p;
	size_t body_len, linelen[3], rootlen;
	unsigned i;
	int err;

	if ((err = checkpoint_note_open(v, text, len, &body, &body_len)) != 0) {
		return err;
	}
	memset(&c, 0, sizeof(c));
	end = body + body_len;
	p = body;
	for (i = 0; i < 3; i++) {
		const char *nl = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;

		if (nl == NULL) {
			return IHALA_EINVAL; /* fewer than three lines */
		}
		line[i] = p;
		linelen[i] = (size_t)(nl - p);
		p = nl + 1;
	}
	/* Whatever follows is extension lines, non-empty by body_ok. */
	for (; p < end; p = (const char *)memchr(p, '\n', (size_t)(end - p)) + 1) {
		c.extensions++;
	}
	if (!origin_ok(line[0], linelen[0])) {
		return IHALA_EINVAL;
	}
	memcpy(c.origin, line[0], linelen[0]);
	if (origin != NULL && strcmp(c.origin, origin) != 0) {
		return IHALA_EINVAL;
	}
	if ((err = parse_size(line[1], linelen[1], &c.size)) != 0) {
		return err;
	}
	if (linelen[2] != B64_HASH_LEN ||
	    base64_decode(line[2], linelen[2], c.root, sizeof(c.root), &rootlen) != 0 ||
	    rootlen != CHECKPOINT_HASH_LEN) {
		return IHALA_EINVAL;
	}
	*out = c;
	return 0;
}
