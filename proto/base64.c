/* base64.c - strict and lenient base64 decoding, padded encoding (see base64.h). */
#include "base64.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "error.h"

/* The value of a standard-alphabet character, or -1. */
static int
std_value(char c)
{
	if (c >= 'A' && c <= 'Z') {
		return c - 'A';
	}
	if (c >= 'a' && c <= 'z') {
		return c - 'a' + 26;
	}
	if (c >= '0' && c <= '9') {
		return c - '0' + 52;
	}
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

void
base64_encode(const uint8_t *in, size_t n, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/*
 * EVP_DecodeBlock alone is too lenient for signed text: it skips blanks, ignores the
 * bits a canonical encoder leaves zero before the padding, and counts padding as data.
 */
int
base64_check(const char *in, size_t len, size_t *n)
{
	size_t i, pad = 0;

	if (len == 0 || len % 4 != 0 || len > (size_t)INT_MAX) {
		return IHALA_EINVAL;
	}
	while (pad < 2 && in[len - 1 - pad] == '=') {
		pad++;
	}
	for (i = 0; i < len - pad; i++) {
		if (std_value(in[i]) < 0) {
			return IHALA_EINVAL;
		}
	}
	if ((pad == 1 && (std_value(in[len - 2]) & 0x03) != 0) ||
	    (pad == 2 && (std_value(in[len - 3]) & 0x0f) != 0)) {
		return IHALA_EINVAL;
	}
	*n = len / 4 * 3 - pad;
	return 0;
}

int
base64_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *n)
{
	uint8_t last[3];
	size_t head;
	int err;

	if ((err = base64_check(in, len, n)) != 0) {
		return err;
	}
	if (*n > cap) {
		return IHALA_EINVAL;
	}
	/* All groups but the last give 3 bytes each; the last one up to 3. */
	head = len - 4;
	if ((head > 0 &&
	     EVP_DecodeBlock(out, (const unsigned char *)in, (int)head) != (int)(head / 4 * 3)) ||
	    EVP_DecodeBlock(last, (const unsigned char *)in + head, 4) != 3) {
		return IHALA_EINVAL;
	}
	memcpy(out + head / 4 * 3, last, *n - head / 4 * 3);
	return 0;
}

int
base64_decode_lenient(const char *s, size_t n, uint8_t **out, size_t *outlen)
{
	size_t end = n, padded, i;
	char *text;
	uint8_t *buf;

	*out = NULL;
	*outlen = 0;
	if (n > 0 && n % 4 == 0 && s[n - 1] == '=') {
		end--;
		if (s[n - 2] == '=') {
			end--;
		}
	}
	if (end % 4 == 1 || end > (size_t)INT_MAX - 4) {
		return IHALA_EINVAL;
	}
	if (end == 0) {
		return 0;
	}
	padded = (end + 3) / 4 * 4;
	text = malloc(padded + 1);
	if (text == NULL) {
		return IHALA_ENOMEM;
	}
	for (i = 0; i < end; i++) {
		char c = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];

		if (std_value(c) < 0) {
			free(text);
			return IHALA_EINVAL;
		}
		text[i] = c;
	}
	memset(text + end, '=', padded - end);
	text[padded] = '\0';
	buf = malloc(padded / 4 * 3);
	if (buf == NULL) {
		free(text);
		return IHALA_ENOMEM;
	}
	if (EVP_DecodeBlock(buf, (const unsigned char *)text, (int)padded) !=
	    (int)(padded / 4 * 3)) {
		free(text);
		free(buf);
		return IHALA_EINVAL;
	}
	free(text);
	*out = buf;
	*outlen = end * 3 / 4;
	return 0;
}
