/* fuzz_checkpoint.c - fuzz target: the signed-note / checkpoint parser (checkpoint_open). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "checkpoint.h"
#include "error.h"
#include "fuzz.h"
#include "log.h"

/*
 * Input: one mode byte, then text. The verifier is the fixed test key of fuzz.h.
 *  mode 0-3 ("open"): the text is a signed note given to checkpoint_note_open and
 *    checkpoint_open (with and without an expected origin). What they accept must be what
 *    the header promises: a body inside the text ending in '\n', an origin of 1..255 bytes.
 *    Forging a signature is out of reach, so the seeds are real checkpoints of that key and
 *    the fuzzer explores the note and signature-line syntax around them.
 *  mode 4 ("body"): the text is a note body; if checkpoint_note_sign accepts it, the note
 *    must open and give that body back, and if the body parses as a checkpoint without
 *    extension lines, checkpoint_sign of what was parsed must give the very same note
 *    (Ed25519 is deterministic). This reaches the body parser with every fuzzed body.
 *  mode 5 ("vkey"): the text is a C2SP verifier key; one checkpoint_verifier_parse accepts
 *    prints back with the same name and key id, and that string reads back to itself.
 *  mode 6-7 ("sign"): origin, size and root taken from the text; a checkpoint
 *    checkpoint_sign makes must open to the same values.
 */

static struct checkpoint_signer *signer;
static struct checkpoint_verifier *verifier;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	EVP_PKEY *pkey;

	(void)argc;
	(void)argv;
	log_setlevel(LOG_LEVEL_ERROR);
	pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, fuzz_ed25519_seed,
	                                    sizeof(fuzz_ed25519_seed));
	FUZZ_ASSERT(pkey != NULL);
	FUZZ_ASSERT(checkpoint_signer_from_pkey(pkey, FUZZ_KEY_NAME, &signer) == 0);
	EVP_PKEY_free(pkey);
	FUZZ_ASSERT(checkpoint_verifier_from_signer(signer, &verifier) == 0);
	return 0;
}

static void
open_mode(const char *text, size_t len)
{
	struct checkpoint c, c2;
	const char *body;
	size_t blen;
	int err;

	err = checkpoint_note_open(verifier, text, len, &body, &blen);
	if (err == 0) {
		FUZZ_ASSERT(len <= CHECKPOINT_TEXT_MAX);
		FUZZ_ASSERT(body >= text && blen > 0 && body + blen <= text + len);
		FUZZ_ASSERT(body[blen - 1] == '\n');
	}
	memset(&c, 0xa5, sizeof(c));
	err = checkpoint_open(verifier, NULL, text, len, &c);
	if (err != 0) {
		FUZZ_ASSERT(err < 0);
		return;
	}
	FUZZ_ASSERT(memchr(c.origin, '\0', sizeof(c.origin)) != NULL);
	FUZZ_ASSERT(c.origin[0] != '\0');
	FUZZ_ASSERT(checkpoint_open(verifier, c.origin, text, len, &c2) == 0);
	FUZZ_ASSERT(c2.size == c.size && memcmp(c2.root, c.root, sizeof(c.root)) == 0);
	FUZZ_ASSERT(checkpoint_open(verifier, "not-the-origin", text, len, &c2) != 0 ||
	            strcmp(c.origin, "not-the-origin") == 0);
}

static void
body_mode(const char *body, size_t len)
{
	struct checkpoint c;
	char *text = NULL, *again = NULL;
	const char *b;
	size_t blen;

	if (checkpoint_note_sign(signer, body, len, &text) != 0) {
		FUZZ_ASSERT(text == NULL);
		return;
	}
	FUZZ_ASSERT(checkpoint_note_open(verifier, text, strlen(text), &b, &blen) == 0);
	FUZZ_ASSERT(blen == len && memcmp(b, body, len) == 0);
	if (checkpoint_open(verifier, NULL, text, strlen(text), &c) == 0 && c.extensions == 0) {
		FUZZ_ASSERT(checkpoint_sign(signer, c.origin, c.size, c.root, &again) == 0);
		FUZZ_ASSERT(strcmp(again, text) == 0);
		free(again);
	}
	free(text);
}

static void
vkey_mode(const char *s)
{
	struct checkpoint_verifier *v = NULL, *v2 = NULL;
	char *back = NULL, *back2 = NULL;
	const char *plus = strchr(s, '+');

	if (checkpoint_verifier_parse(s, &v) != 0) {
		return;
	}
	FUZZ_ASSERT(plus != NULL);
	FUZZ_ASSERT(checkpoint_verifier_string(v, &back) == 0);
	/* the same name and key id (hex in any case, as Go's note package reads it) */
	FUZZ_ASSERT(strlen(checkpoint_verifier_name(v)) == (size_t)(plus - s));
	FUZZ_ASSERT(strncmp(back, s, (size_t)(plus - s) + 1) == 0);
	FUZZ_ASSERT(strncasecmp(back + (plus - s), plus, 10) == 0);
	/* and what it prints reads back to itself */
	FUZZ_ASSERT(checkpoint_verifier_parse(back, &v2) == 0);
	FUZZ_ASSERT(checkpoint_verifier_string(v2, &back2) == 0);
	FUZZ_ASSERT(strcmp(back, back2) == 0);
	free(back);
	free(back2);
	checkpoint_verifier_free(v);
	checkpoint_verifier_free(v2);
}

static void
sign_mode(const uint8_t *data, size_t size)
{
	struct checkpoint c;
	uint8_t root[CHECKPOINT_HASH_LEN];
	char origin[CHECKPOINT_NAME_MAX + 16], *text = NULL;
	uint64_t tsize = 0;
	size_t olen, i;

	if (size < 8 + CHECKPOINT_HASH_LEN) {
		return;
	}
	for (i = 0; i < 8; i++) {
		tsize = tsize << 8 | data[i];
	}
	memcpy(root, data + 8, sizeof(root));
	data += 8 + sizeof(root);
	size -= 8 + sizeof(root);
	olen = size < sizeof(origin) - 1 ? size : sizeof(origin) - 1;
	memcpy(origin, data, olen);
	origin[olen] = '\0';
	if (checkpoint_sign(signer, origin, tsize, root, &text) != 0) {
		FUZZ_ASSERT(text == NULL);
		return;
	}
	FUZZ_ASSERT(checkpoint_open(verifier, origin, text, strlen(text), &c) == 0);
	FUZZ_ASSERT(c.size == tsize && memcmp(c.root, root, sizeof(root)) == 0);
	FUZZ_ASSERT(strcmp(c.origin, origin) == 0 && c.extensions == 0);
	free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size < 1) {
		return 0;
	}
	switch (data[0] & 7) {
	case 4:
		body_mode((const char *)data + 1, size - 1);
		break;
	case 5:
		/* a C string: the parser's contract */
		s = malloc(size);
		FUZZ_ASSERT(s != NULL);
		memcpy(s, data + 1, size - 1);
		s[size - 1] = '\0';
		vkey_mode(s);
		free(s);
		break;
	case 6:
	case 7:
		sign_mode(data + 1, size - 1);
		break;
	default:
		open_mode((const char *)data + 1, size - 1);
		break;
	}
	return 0;
}
