/* base64.h - base64 (RFC 4648) over OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock. */
#ifndef IHALA_BASE64_H
#define IHALA_BASE64_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

/* Characters of the padded encoding of n bytes, without the NUL. */
#define BASE64_LEN(n) ((((n) + 2) / 3) * 4)
/* The most bytes base64_encode takes (OpenSSL counts in int). */
#define BASE64_MAX_IN ((size_t)INT_MAX / 4 * 3)

/* Writes BASE64_LEN(n) characters (standard alphabet, padded) and a NUL to `out`;
 * n <= BASE64_MAX_IN. */
void base64_encode(const uint8_t *in, size_t n, char *out);

/*
 * Signed text wants exactly one encoding of each value: standard alphabet, padded, no
 * blanks, and the bits before the padding zero. base64_check: 0 and the decoded size in
 * *n when the `len` characters at `in` are that encoding, else IHALA_EINVAL.
 * base64_decode: the same check, then the bytes into `out` (room for `cap`); IHALA_EINVAL
 * also when they are more than `cap`.
 */
int base64_check(const char *in, size_t len, size_t *n);
int base64_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *n);

/*
 * What people and other programs write (JSON bytes fields): the standard or the URL-safe
 * alphabet, padded or not, unused bits ignored. Returns 0 with *out malloc'd (the caller
 * frees it; NULL when there are no bytes) and its size in *outlen; IHALA_EINVAL when the
 * text is not base64; IHALA_ENOMEM.
 */
int base64_decode_lenient(const char *s, size_t n, uint8_t **out, size_t *outlen);

#endif
