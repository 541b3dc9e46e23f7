/* checkpoint_test.c - checkpoints: round trips, refusals, C2SP vectors, openssl CLI check. */
#define _GNU_SOURCE /* memmem */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "checkpoint.h"
#include "error.h"

#define ORIGIN "ihala.dma.gov.iq/log"

/* Keys made once per run with the openssl CLI in a private temp dir. */
static struct {
	char dir[64];
	char key[128], pub[128], other[128];
	struct checkpoint_signer *signer;
	struct checkpoint_verifier *verifier;
} fx;

static int
run(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(cmd)) {
		return -1;
	}
	return system(cmd);
}

static int
setup(void **state)
{
	(void)state;
	strcpy(fx.dir, "/tmp/ihala-ckpt-XXXXXX");
	if (mkdtemp(fx.dir) == NULL) {
		return -1;
	}
	snprintf(fx.key, sizeof(fx.key), "%s/key.pem", fx.dir);
	snprintf(fx.pub, sizeof(fx.pub), "%s/pub.pem", fx.dir);
	snprintf(fx.other, sizeof(fx.other), "%s/other.pem", fx.dir);
	if (run("umask 077 && openssl genpkey -algorithm ed25519 -out %s && "
	        "openssl genpkey -algorithm ed25519 -out %s && "
	        "openssl pkey -in %s -pubout -out %s",
	        fx.key, fx.other, fx.key, fx.pub) != 0 ||
	    chmod(fx.key, 0600) != 0) {
		fprintf(stderr, "# cannot make test keys with the openssl command\n");
		return -1;
	}
	if (checkpoint_key_load(fx.key, ORIGIN, &fx.signer) != 0 ||
	    checkpoint_verifier_from_signer(fx.signer, &fx.verifier) != 0) {
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	checkpoint_signer_free(fx.signer);
	checkpoint_verifier_free(fx.verifier);
	if (fx.dir[0] != '\0') {
		run("rm -rf %s", fx.dir);
	}
	return 0;
}

static void
fill_root(uint8_t root[CHECKPOINT_HASH_LEN], uint8_t seed)
{
	unsigned i;

	for (i = 0; i < CHECKPOINT_HASH_LEN; i++) {
		root[i] = (uint8_t)(seed + 7 * i);
	}
}

/* A fresh copy of `text` with the first `from` replaced by `to`. */
static char *
replace(const char *text, const char *from, const char *to)
{
	const char *at = strstr(text, from);
	size_t tl = strlen(text), fl = strlen(from), nl = strlen(to);
	char *out;

	assert_non_null(at);
	out = malloc(tl - fl + nl + 1);
	assert_non_null(out);
	memcpy(out, text, (size_t)(at - text));
	memcpy(out + (at - text), to, nl);
	memcpy(out + (at - text) + nl, at + fl, tl - (size_t)(at - text) - fl + 1);
	return out;
}

static int
open_str(const char *text, struct checkpoint *c)
{
	return checkpoint_open(fx.verifier, ORIGIN, text, strlen(text), c);
}

static void
test_round_trip(void **state)
{
	const uint64_t sizes[] = {0, 1, 1000, UINT64_MAX};
	uint8_t root[CHECKPOINT_HASH_LEN];
	struct checkpoint c;
	struct checkpoint_verifier *loaded;
	char *text, *vs1, *vs2;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		fill_root(root, (uint8_t)i);
		assert_int_equal(checkpoint_sign(fx.signer, ORIGIN, sizes[i], root, &text), 0);
		memset(&c, 0xee, sizeof(c));
		assert_int_equal(open_str(text, &c), 0);
		assert_string_equal(c.origin, ORIGIN);
		assert_true(c.size == sizes[i]);
		assert_memory_equal(c.root, root, CHECKPOINT_HASH_LEN);
		assert_int_equal(c.extensions, 0);
		/* origin not pinned: reported instead */
		assert_int_equal(checkpoint_open(fx.verifier, NULL, text, strlen(text), &c), 0);
		assert_string_equal(c.origin, ORIGIN);
		free(text);
	}
	/* exact text format */
	memset(root, 0, sizeof(root));
	assert_int_equal(checkpoint_sign(fx.signer, ORIGIN, 42, root, &text), 0);
	{
		static const char prefix[] = ORIGIN "\n42\n"
		                                    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
		                                    "\n\xe2\x80\x94 " ORIGIN " ";

		assert_int_equal(strncmp(text, prefix, strlen(prefix)), 0);
		/* then base64 of key id || signature (68 bytes) and a newline */
		assert_int_equal(strlen(text), strlen(prefix) + 92 + 1);
		assert_int_equal(text[strlen(text) - 1], '\n');
	}
	/* the public key read from PEM is the same key as the signer's */
	assert_int_equal(checkpoint_verifier_load(fx.pub, ORIGIN, &loaded), 0);
	assert_int_equal(checkpoint_open(loaded, ORIGIN, text, strlen(text), &c), 0);
	assert_int_equal(checkpoint_verifier_string(loaded, &vs1), 0);
	assert_int_equal(checkpoint_verifier_string(fx.verifier, &vs2), 0);
	assert_string_equal(vs1, vs2);
	assert_string_equal(checkpoint_verifier_name(loaded), ORIGIN);
	checkpoint_verifier_free(loaded);
	/* ... and its C2SP string parses back into a working verifier */
	assert_int_equal(checkpoint_verifier_parse(vs1, &loaded), 0);
	assert_int_equal(checkpoint_open(loaded, ORIGIN, text, strlen(text), &c), 0);
	checkpoint_verifier_free(loaded);
	free(vs1);
	free(vs2);
	free(text);
}

static void
test_tampered(void **state)
{
	uint8_t root[CHECKPOINT_HASH_LEN];
	struct checkpoint c;
	char *text, *bad, *sig, *b64root, line[64];

	(void)state;
	fill_root(root, 9);
	assert_int_equal(checkpoint_sign(fx.signer, ORIGIN, 1234, root, &text), 0);
	assert_int_equal(open_str(text, &c), 0);

	bad = replace(text, "\n1234\n", "\n1235\n");
	assert_int_equal(open_str(bad, &c), IHALA_ESIGNATURE);
	free(bad);

	/* another root: flip one bit of the first base64 character */
	b64root = strchr(strchr(text, '\n') + 1, '\n') + 1;
	memcpy(line, b64root, 44);
	line[44] = '\0';
	{
		char to[64];

		strcpy(to, line);
		to[0] = to[0] == 'A' ? 'B' : 'A';
		bad = replace(text, line, to);
	}
	assert_int_equal(open_str(bad, &c), IHALA_ESIGNATURE);
	free(bad);

	/* another origin, whether pinned or not */
	bad = replace(text, ORIGIN "\n", "ihala.dma.gov.iq/lag\n");
	assert_int_equal(open_str(bad, &c), IHALA_ESIGNATURE);
	assert_int_equal(checkpoint_open(fx.verifier, NULL, bad, strlen(bad), &c),
	                 IHALA_ESIGNATURE);
	free(bad);
	/* a genuine checkpoint of another log, where ours is expected */
	assert_int_equal(checkpoint_sign(fx.signer, "ihala.dma.gov.iq/lag", 1234, root, &bad), 0);
	assert_int_equal(open_str(bad, &c), IHALA_EINVAL);
	assert_int_equal(checkpoint_open(fx.verifier, "ihala.dma.gov.iq/lag", bad, strlen(bad), &c),
	                 0);
	free(bad);

	/* the signature: a bit of the Ed25519 part (the key id is intact) */
	sig = strstr(text, "\xe2\x80\x94 ");
	assert_non_null(sig);
	{
		char *b64 = strrchr(sig, ' ') + 1, *copy = strdup(text);
		size_t off = (size_t)(b64 - text) + 20;

		copy[off] = copy[off] == 'A' ? 'B' : 'A';
		assert_int_equal(open_str(copy, &c), IHALA_ESIGNATURE);
		free(copy);
	}

	/* the key name on the signature line: now an unknown key, so no signature */
	bad = replace(text, "\xe2\x80\x94 " ORIGIN " ", "\xe2\x80\x94 ihala.dma.gov.iq/lag ");
	assert_int_equal(open_str(bad, &c), IHALA_ESIGNATURE);
	free(bad);
	free(text);
}

static void
test_wrong_key(void **state)
{
	struct checkpoint_signer *other;
	struct checkpoint_verifier *ov;
	uint8_t root[CHECKPOINT_HASH_LEN];
	struct checkpoint c;
	char *text, *mine, *both, *dup;

	(void)state;
	fill_root(root, 3);
	assert_int_equal(checkpoint_key_load(fx.other, ORIGIN, &other), 0);
	assert_int_equal(checkpoint_verifier_from_signer(other, &ov), 0);
	/* same name, other key: different key id, so not our signature */
	assert_int_equal(checkpoint_sign(other, ORIGIN, 5, root, &text), 0);
	assert_int_equal(open_str(text, &c), IHALA_ESIGNATURE);
	assert_int_equal(checkpoint_open(ov, ORIGIN, text, strlen(text), &c), 0);

	/* a note signed by both: each verifier finds its own line, ignores the other */
	assert_int_equal(checkpoint_sign(fx.signer, ORIGIN, 5, root, &mine), 0);
	both = malloc(strlen(mine) + strlen(text));
	assert_non_null(both);
	strcpy(both, mine);
	strcat(both, strstr(text, "\n\n") + 2);
	assert_int_equal(open_str(both, &c), 0);
	assert_int_equal(checkpoint_open(ov, ORIGIN, both, strlen(both), &c), 0);

	/* our name and key id over the other key's signature: a known key that
	 * fails rejects the note, even next to a good line of ours */
	{
		uint8_t ours[72], theirs[72];
		char line[160];
		size_t n;

		assert_int_equal(EVP_DecodeBlock(ours, (unsigned char *)strrchr(mine, ' ') + 1, 92),
		                 69);
		assert_int_equal(
		    EVP_DecodeBlock(theirs, (unsigned char *)strrchr(text, ' ') + 1, 92), 69);
		memcpy(ours + 4, theirs + 4, 64);
		n = (size_t)snprintf(line, sizeof(line), "\xe2\x80\x94 " ORIGIN " ");
		EVP_EncodeBlock((unsigned char *)line + n, ours, 68);
		strcat(line, "\n");
		dup = malloc(strlen(mine) + strlen(line) + 1);
		assert_non_null(dup);
		strcpy(dup, mine);
		strcat(dup, line);
		assert_int_equal(open_str(dup, &c), IHALA_ESIGNATURE);
		free(dup);
	}

	/* a second, broken signature line by our key rejects the note */
	dup = malloc(strlen(both) + strlen(mine) + 1);
	assert_non_null(dup);
	strcpy(dup, both);
	strcat(dup, strstr(mine, "\n\n") + 2);
	assert_int_equal(open_str(dup, &c), 0); /* same good signature twice is fine */
	{
		char *last = strrchr(dup, ' ') + 30;

		*last = *last == 'A' ? 'B' : 'A';
	}
	assert_int_equal(open_str(dup, &c), IHALA_ESIGNATURE);
	free(dup);
	free(both);
	free(mine);
	free(text);
	checkpoint_verifier_free(ov);
	checkpoint_signer_free(other);
}

/* Every one of these must be refused, whatever the signature. */
static void
test_malformed(void **state)
{
	uint8_t root[CHECKPOINT_HASH_LEN];
	struct checkpoint c;
	char *text, *body_end, *sigline, *t;
	size_t i;

	(void)state;
	fill_root(root, 1);
	assert_int_equal(checkpoint_sign(fx.signer, ORIGIN, 77, root, &text), 0);
	body_end = strstr(text, "\n\n");
	sigline = body_end + 2;

	/* note-level damage, found before any signature is checked */
	struct {
		const char *from, *to;
	} cases[] = {
	    /* CRLF line ends, a tab */
	    {"\n77\n", "\r\n77\r\n"},
	    {"\n77\n", "\n\t77\n"},
	    /* signature line: ASCII dash, missing space, double space, no name, '+' */
	    {"\n\n\xe2\x80\x94 ", "\n\n- "},
	    {"\n\n\xe2\x80\x94 ", "\n\n\xe2\x80\x94"},
	    {"\n\n\xe2\x80\x94 ", "\n\n\xe2\x80\x94  "},
	    {"\n\n\xe2\x80\x94 " ORIGIN, "\n\n\xe2\x80\x94 "},
	    {"\n\n\xe2\x80\x94 " ORIGIN " ", "\n\n\xe2\x80\x94 " ORIGIN "  "},
	    {"\n\n\xe2\x80\x94 " ORIGIN " ", "\n\n\xe2\x80\x94 " ORIGIN "+x "},
	    /* no blank line between body and signatures; two blank lines */
	    {"\n\n\xe2\x80\x94", "\n\xe2\x80\x94"},
	    {"\n\n\xe2\x80\x94", "\n\n\n\xe2\x80\x94"},
	    /* an empty first line; a blank line inside the body */
	    {ORIGIN "\n77", "\n" ORIGIN "\n77"},
	    {"\n77\n", "\n\n77\n"},
	};

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int err;

		t = replace(text, cases[i].from, cases[i].to);
		err = open_str(t, &c);
		if (err != IHALA_EINVAL) {
			print_error("note case %zu: got %d\n", i, err);
		}
		assert_int_equal(err, IHALA_EINVAL);
		free(t);
	}

	/* body-level damage, validly signed so that only the checkpoint parser can refuse it */
	{
		const char *good = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
		const char *bodies[][2] = {
		    {"077", NULL},
		    {"+77", NULL},
		    {"-77", NULL},
		    {" 77", NULL},
		    {"77 ", NULL},
		    {"7 7", NULL},
		    {"0x4d", NULL},
		    {"00", NULL},
		    {"18446744073709551616", NULL},
		    {"99999999999999999999", NULL},
		    {"123456789012345678901", NULL},
		    {"7", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},   /* 43 chars */
		    {"7", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},  /* 33 bytes */
		    {"7", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB="},  /* stray bits */
		    {"7", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="},  /* 31 bytes */
		    {"7", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA-="},  /* url alphabet */
		    {"7", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA A="},  /* blank */
		    {"7", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}, /* 45 chars */
		    {"7", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
		    {"7", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=x"},
		};
		char body[256], *signed_text;

		/* the control: the same construction with good fields opens */
		snprintf(body, sizeof(body), ORIGIN "\n7\n%s\n", good);
		assert_int_equal(checkpoint_note_sign(fx.signer, body, strlen(body), &signed_text),
		                 0);
		assert_int_equal(open_str(signed_text, &c), 0);
		free(signed_text);
		for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
			int err;

			snprintf(body, sizeof(body), ORIGIN "\n%s\n%s\n", bodies[i][0],
			         bodies[i][1] ? bodies[i][1] : good);
			assert_int_equal(
			    checkpoint_note_sign(fx.signer, body, strlen(body), &signed_text), 0);
			err = open_str(signed_text, &c);
			if (err != IHALA_EINVAL) {
				print_error("body case %zu: got %d\n", i, err);
			}
			assert_int_equal(err, IHALA_EINVAL);
			free(signed_text);
		}
	}

	/* missing lines: body of one or two lines (signed, so only the parse can refuse) */
	{
		char *one, *two;
		struct checkpoint_verifier *v = fx.verifier;

		assert_int_equal(
		    checkpoint_note_sign(fx.signer, ORIGIN "\n", strlen(ORIGIN) + 1, &one), 0);
		assert_int_equal(
		    checkpoint_note_sign(fx.signer, ORIGIN "\n77\n", strlen(ORIGIN) + 4, &two), 0);
		assert_int_equal(checkpoint_open(v, ORIGIN, one, strlen(one), &c), IHALA_EINVAL);
		assert_int_equal(checkpoint_open(v, ORIGIN, two, strlen(two), &c), IHALA_EINVAL);
		free(one);
		free(two);
	}

	/* no signature line; a truncated last line; trailing garbage */
	t = strndup(text, (size_t)(sigline - text));
	assert_int_equal(open_str(t, &c), IHALA_EINVAL);
	free(t);
	t = strndup(text, strlen(text) - 1);
	assert_int_equal(open_str(t, &c), IHALA_EINVAL);
	free(t);
	t = malloc(strlen(text) + 8);
	assert_non_null(t);
	strcpy(t, text);
	strcat(t, "junk");
	assert_int_equal(open_str(t, &c), IHALA_EINVAL);
	strcpy(t, text);
	strcat(t, "\n");
	assert_int_equal(open_str(t, &c), IHALA_EINVAL);
	free(t);

	/* an embedded NUL (len covers it), a control character, bad UTF-8 */
	t = strdup(text);
	assert_non_null(t);
	t[3] = '\0';
	assert_int_equal(checkpoint_open(fx.verifier, NULL, t, strlen(text), &c), IHALA_EINVAL);
	t[3] = '\t';
	assert_int_equal(checkpoint_open(fx.verifier, NULL, t, strlen(text), &c), IHALA_EINVAL);
	t[3] = (char)0xc0;
	assert_int_equal(checkpoint_open(fx.verifier, NULL, t, strlen(text), &c), IHALA_EINVAL);
	free(t);
	assert_int_equal(checkpoint_open(fx.verifier, NULL, "", 0, &c), IHALA_EINVAL);

	/* too large, before anything else is looked at */
	t = malloc(CHECKPOINT_TEXT_MAX + 2);
	assert_non_null(t);
	memset(t, 'a', CHECKPOINT_TEXT_MAX + 1);
	t[CHECKPOINT_TEXT_MAX + 1] = '\0';
	memcpy(t, text, strlen(text));
	assert_int_equal(checkpoint_open(fx.verifier, NULL, t, CHECKPOINT_TEXT_MAX + 1, &c),
	                 IHALA_ETOOLARGE);
	free(t);

	/* more signature lines than we read */
	t = malloc(strlen(text) + 101 * strlen(sigline) + 1);
	assert_non_null(t);
	strcpy(t, text);
	for (i = 0; i < 100; i++) {
		strcat(t, sigline);
	}
	assert_int_equal(open_str(t, &c), IHALA_EINVAL);
	free(t);
	free(text);
}

/* Signed extension lines are allowed, counted and not interpreted; the size bounds. */
static void
test_extensions_and_bounds(void **state)
{
	const char body[] =
	    ORIGIN "\n18446744073709551615\n"
	           "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nfoo bar\n\xce\xb1\n";
	uint8_t zero[CHECKPOINT_HASH_LEN] = {0};
	struct checkpoint c;
	char *text, longname[CHECKPOINT_NAME_MAX + 2];

	(void)state;
	assert_int_equal(checkpoint_note_sign(fx.signer, body, strlen(body), &text), 0);
	assert_int_equal(open_str(text, &c), 0);
	assert_true(c.size == UINT64_MAX);
	assert_memory_equal(c.root, zero, CHECKPOINT_HASH_LEN);
	assert_int_equal(c.extensions, 2);
	free(text);

	/* signing refuses what it could not write back */
	assert_int_equal(checkpoint_sign(fx.signer, "", 1, zero, &text), IHALA_EINVAL);
	assert_null(text);
	assert_int_equal(checkpoint_sign(fx.signer, "a\nb", 1, zero, &text), IHALA_EINVAL);
	assert_int_equal(checkpoint_sign(fx.signer, "a\tb", 1, zero, &text), IHALA_EINVAL);
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(checkpoint_sign(fx.signer, longname, 1, zero, &text), IHALA_EINVAL);
	longname[CHECKPOINT_NAME_MAX] = '\0';
	assert_int_equal(checkpoint_sign(fx.signer, longname, 1, zero, &text), 0);
	assert_int_equal(checkpoint_open(fx.verifier, longname, text, strlen(text), &c), 0);
	assert_string_equal(c.origin, longname);
	free(text);
	assert_int_equal(checkpoint_note_sign(fx.signer, "a\n\nb\n", 5, &text), IHALA_EINVAL);
	assert_int_equal(checkpoint_note_sign(fx.signer, "a", 1, &text), IHALA_EINVAL);
	assert_int_equal(checkpoint_note_sign(fx.signer, "\n", 1, &text), IHALA_EINVAL);
}

static void
test_key_files(void **state)
{
	struct checkpoint_signer *s = NULL;
	struct checkpoint_verifier *v = NULL;
	char path[160];

	(void)state;
	assert_int_equal(chmod(fx.key, 0640), 0);
	assert_int_equal(checkpoint_key_load(fx.key, ORIGIN, &s), IHALA_EKEYPERM);
	assert_null(s);
	assert_int_equal(chmod(fx.key, 0604), 0);
	assert_int_equal(checkpoint_key_load(fx.key, ORIGIN, &s), IHALA_EKEYPERM);
	assert_int_equal(chmod(fx.key, 0620), 0);
	assert_int_equal(checkpoint_key_load(fx.key, ORIGIN, &s), IHALA_EKEYPERM);
	assert_int_equal(chmod(fx.key, 0400), 0);
	assert_int_equal(checkpoint_key_load(fx.key, ORIGIN, &s), 0);
	checkpoint_signer_free(s);
	assert_int_equal(chmod(fx.key, 0600), 0);

	/* bad key names */
	assert_int_equal(checkpoint_key_load(fx.key, "a b", &s), IHALA_EINVAL);
	assert_int_equal(checkpoint_key_load(fx.key, "a+b", &s), IHALA_EINVAL);
	assert_int_equal(checkpoint_key_load(fx.key, "", &s), IHALA_EINVAL);

	snprintf(path, sizeof(path), "%s/missing.pem", fx.dir);
	assert_int_equal(checkpoint_key_load(path, ORIGIN, &s), IHALA_EIO);
	/* a public key, an EC key, an encrypted key, a directory are not usable */
	snprintf(path, sizeof(path), "%s/pubcopy.pem", fx.dir);
	assert_int_equal(run("cp %s %s && chmod 600 %s", fx.pub, path, path), 0);
	assert_int_equal(checkpoint_key_load(path, ORIGIN, &s), IHALA_ECONFIG);
	snprintf(path, sizeof(path), "%s/ec.pem", fx.dir);
	assert_int_equal(run("umask 077 && openssl genpkey -algorithm EC -pkeyopt "
	                     "ec_paramgen_curve:P-256 -out %s",
	                     path),
	                 0);
	assert_int_equal(checkpoint_key_load(path, ORIGIN, &s), IHALA_ECONFIG);
	snprintf(path, sizeof(path), "%s/enc.pem", fx.dir);
	assert_int_equal(run("umask 077 && openssl genpkey -algorithm ed25519 -aes256 -pass "
	                     "pass:secret -out %s </dev/null",
	                     path),
	                 0);
	assert_int_equal(checkpoint_key_load(path, ORIGIN, &s), IHALA_ECONFIG);
	assert_int_equal(chmod(fx.dir, 0700), 0);
	assert_int_equal(checkpoint_key_load(fx.dir, ORIGIN, &s), IHALA_ECONFIG);
	assert_null(s);

	/* public keys: a private key file or garbage is not one */
	assert_int_equal(checkpoint_verifier_load(fx.key, ORIGIN, &v), IHALA_ECONFIG);
	snprintf(path, sizeof(path), "%s/ec.pem", fx.dir);
	assert_int_equal(checkpoint_verifier_load(path, ORIGIN, &v), IHALA_ECONFIG);
	assert_int_equal(checkpoint_verifier_load(fx.pub, "bad name", &v), IHALA_EINVAL);
	assert_null(v);

	/* a signer needs the private half */
	{
		EVP_PKEY *pub = NULL;
		FILE *fp = fopen(fx.pub, "r");

		assert_non_null(fp);
		pub = PEM_read_PUBKEY(fp, NULL, NULL, NULL);
		fclose(fp);
		assert_non_null(pub);
		assert_int_equal(checkpoint_signer_from_pkey(pub, ORIGIN, &s), IHALA_EINVAL);
		EVP_PKEY_free(pub);
	}
}

/* ---- published vectors (audit-log notes 2.3) ---- */

static void
test_vectors(void **state)
{
	static const char pn_text[] = "If you think cryptography is the answer to your problem,\n"
	                              "then you don't know what your problem is.\n";
	static const char pn_sig[] =
	    "\xe2\x80\x94 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcEl"
	    "ZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
	static const char pn_vkey[] =
	    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
	static const char ex_vkey[] =
	    "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
	static const char ex_note[] = "This is an example message.\n\n\xe2\x80\x94 example.com/foo "
	                              "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZ"
	                              "XsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
	static const uint8_t seed[32] = {
	    0x81, 0x0a, 0x14, 0x02, 0xd5, 0x14, 0x6c, 0x8d, 0x84, 0xf2, 0x44,
	    0x33, 0x30, 0xf5, 0x40, 0x80, 0xeb, 0xf9, 0x8e, 0xe1, 0x7d, 0x9c,
	    0x74, 0xf6, 0x25, 0x2f, 0xc5, 0xd5, 0xc7, 0x28, 0x31, 0x73,
	};
	struct checkpoint_signer *s;
	struct checkpoint_verifier *v, *pv;
	const char *body;
	size_t body_len;
	struct checkpoint c;
	EVP_PKEY *pkey;
	char *text, *vs, want[512];

	(void)state;
	/* Ed25519 is deterministic: the Go sumdb/note example, byte for byte */
	pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof(seed));
	assert_non_null(pkey);
	assert_int_equal(checkpoint_signer_from_pkey(pkey, "PeterNeumann", &s), 0);
	EVP_PKEY_free(pkey);
	assert_int_equal(checkpoint_note_sign(s, pn_text, strlen(pn_text), &text), 0);
	snprintf(want, sizeof(want), "%s\n%s", pn_text, pn_sig);
	assert_string_equal(text, want);
	assert_int_equal(checkpoint_verifier_from_signer(s, &v), 0);
	assert_int_equal(checkpoint_verifier_string(v, &vs), 0);
	assert_string_equal(vs, pn_vkey);
	free(vs);
	assert_int_equal(checkpoint_verifier_parse(pn_vkey, &pv), 0);
	assert_int_equal(checkpoint_note_open(pv, text, strlen(text), &body, &body_len), 0);
	assert_int_equal(body_len, strlen(pn_text));
	assert_ptr_equal(body, text);
	/* a generic note is not a checkpoint */
	assert_int_equal(checkpoint_open(pv, NULL, text, strlen(text), &c), IHALA_EINVAL);
	checkpoint_verifier_free(pv);
	checkpoint_verifier_free(v);
	checkpoint_signer_free(s);
	free(text);

	/* the C2SP signed-note example verifies; PeterNeumann's key finds nothing there */
	assert_int_equal(checkpoint_verifier_parse(ex_vkey, &v), 0);
	assert_string_equal(checkpoint_verifier_name(v), "example.com/foo");
	assert_int_equal(checkpoint_note_open(v, ex_note, strlen(ex_note), &body, &body_len), 0);
	assert_int_equal(body_len, strlen("This is an example message.\n"));
	checkpoint_verifier_free(v);
	assert_int_equal(checkpoint_verifier_parse(pn_vkey, &v), 0);
	assert_int_equal(checkpoint_note_open(v, ex_note, strlen(ex_note), &body, &body_len),
	                 IHALA_ESIGNATURE);
	checkpoint_verifier_free(v);

	/* verifier key strings that must be refused */
	{
		const char *bad[] = {
		    "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
		    "example.com/bar+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
		    "example.com/foo+530d903+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
		    "example.com/foo+530d903g+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
		    "example.com/foo+530d903a+AukyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
		    "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2",
		    "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k=",
		    "example.com/foo+530d903a+ AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
		    "example.com/foo+530d903a",
		    "example.com/foo",
		    "+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
		    "example com+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
		};
		size_t i;

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			v = (struct checkpoint_verifier *)1;
			if (checkpoint_verifier_parse(bad[i], &v) == 0) {
				print_error("accepted verifier key '%s'\n", bad[i]);
				fail();
			}
			assert_null(v);
		}
	}
}

/* ---- independent check with the openssl command ---- */

static int
write_file(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "w");
	int ok = fp != NULL && fwrite(data, 1, len, fp) == len;

	if (fp != NULL && fclose(fp) != 0) {
		ok = 0;
	}
	return ok ? 0 : -1;
}

static void
test_openssl_cli(void **state)
{
	uint8_t root[CHECKPOINT_HASH_LEN], blob[72];
	char body_path[160], sig_path[160], cmd_sig[160], *text, *b64, *sep, *note;
	struct checkpoint c;
	size_t body_len;
	FILE *fp;

	(void)state;
	fill_root(root, 0x5a);
	assert_int_equal(checkpoint_sign(fx.signer, ORIGIN, 987654321, root, &text), 0);
	sep = strstr(text, "\n\n");
	body_len = (size_t)(sep - text) + 1;
	b64 = strrchr(text, ' ') + 1;
	assert_int_equal(strlen(b64), 93);
	assert_int_equal(EVP_DecodeBlock(blob, (unsigned char *)b64, 92), 69);
	snprintf(body_path, sizeof(body_path), "%s/body", fx.dir);
	snprintf(sig_path, sizeof(sig_path), "%s/sig", fx.dir);
	assert_int_equal(write_file(body_path, text, body_len), 0);
	assert_int_equal(write_file(sig_path, blob + 4, 64), 0);
	assert_int_equal(run("openssl pkeyutl -verify -pubin -inkey %s -rawin -in %s -sigfile %s "
	                     ">/dev/null",
	                     fx.pub, body_path, sig_path),
	                 0);
	/* and the test can fail: the same signature over another body does not verify */
	assert_int_equal(write_file(body_path, text, body_len - 2), 0);
	assert_true(run("openssl pkeyutl -verify -pubin -inkey %s -rawin -in %s -sigfile %s "
	                ">/dev/null 2>&1",
	                fx.pub, body_path, sig_path) != 0);

	/* the other way round: a note signed by the openssl command opens */
	assert_int_equal(write_file(body_path, text, body_len), 0);
	snprintf(cmd_sig, sizeof(cmd_sig), "%s/cli.sig", fx.dir);
	assert_int_equal(run("openssl pkeyutl -sign -inkey %s -rawin -in %s -out %s", fx.key,
	                     body_path, cmd_sig),
	                 0);
	fp = fopen(cmd_sig, "r");
	assert_non_null(fp);
	assert_int_equal(fread(blob + 4, 1, 64, fp), 64);
	fclose(fp);
	/* key id from our line: the first 4 decoded bytes */
	note = malloc(body_len + 256);
	assert_non_null(note);
	memcpy(note, text, body_len);
	memcpy(note + body_len, "\n\xe2\x80\x94 " ORIGIN " ", 5 + strlen(ORIGIN) + 1);
	EVP_EncodeBlock((unsigned char *)note + body_len + 5 + strlen(ORIGIN) + 1, blob, 68);
	strcat(note, "\n");
	assert_int_equal(open_str(note, &c), 0);
	assert_true(c.size == 987654321);
	assert_memory_equal(c.root, root, CHECKPOINT_HASH_LEN);
	free(note);
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_tampered),
	    cmocka_unit_test(test_wrong_key),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_extensions_and_bounds),
	    cmocka_unit_test(test_key_files),
	    cmocka_unit_test(test_vectors),
	    cmocka_unit_test(test_openssl_cli),
	};

	return cmocka_run_group_tests_name("checkpoint", tests, setup, teardown);
}
