/* base64_test.c - proto/base64: RFC 4648 vectors, the canonical form signed text needs, and the
 * lenient form JSON input may use. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base64.h"
#include "error.h"

/* RFC 4648 section 10. */
static const char *const vec[][2] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};
#define NVEC (sizeof(vec) / sizeof(vec[0]))

static void
test_encode_vectors(void **state)
{
	char out[16];
	size_t i;

	(void)state;
	for (i = 0; i < NVEC; i++) {
		size_t n = strlen(vec[i][0]);

		memset(out, 'x', sizeof(out));
		base64_encode((const uint8_t *)vec[i][0], n, out);
		assert_string_equal(out, vec[i][1]);
		assert_int_equal(strlen(out), BASE64_LEN(n));
	}
}

static void
test_decode_vectors(void **state)
{
	uint8_t out[8], *p;
	size_t i, n;

	(void)state;
	for (i = 1; i < NVEC; i++) {
		const char *t = vec[i][1];

		assert_int_equal(base64_decode(t, strlen(t), out, sizeof(out), &n), 0);
		assert_int_equal(n, strlen(vec[i][0]));
		assert_memory_equal(out, vec[i][0], n);
		assert_int_equal(base64_decode_lenient(t, strlen(t), &p, &n), 0);
		assert_int_equal(n, strlen(vec[i][0]));
		assert_memory_equal(p, vec[i][0], n);
		free(p);
	}
}

/* Every length, every byte value: what is encoded decodes back, strictly and leniently. */
static void
test_round_trip(void **state)
{
	uint8_t in[300], out[300], *p;
	char text[BASE64_LEN(300) + 1];
	size_t len, i, n;

	(void)state;
	for (i = 0; i < sizeof(in); i++) {
		in[i] = (uint8_t)(i * 37 + 11);
	}
	for (len = 1; len <= sizeof(in); len++) {
		base64_encode(in, len, text);
		assert_int_equal(base64_check(text, strlen(text), &n), 0);
		assert_int_equal(n, len);
		assert_int_equal(base64_decode(text, strlen(text), out, len, &n), 0);
		assert_int_equal(n, len);
		assert_memory_equal(out, in, len);
		assert_int_equal(base64_decode_lenient(text, strlen(text), &p, &n), 0);
		assert_int_equal(n, len);
		assert_memory_equal(p, in, len);
		free(p);
	}
}

/* Only the one canonical encoding passes the strict check. */
static void
test_strict_refusals(void **state)
{
	static const char *const bad[] = {
	    "",          /* nothing */
	    "Zg",        /* no padding */
	    "Zg=",       /* short padding */
	    "Zh==",      /* bits before the padding not zero */
	    "Zm9=",      /* the same, one '=' */
	    "Zm9v ",     /* a blank */
	    " Zm9v",     /* a leading blank */
	    "Zm-v",      /* URL-safe alphabet */
	    "Zm_v",      /* URL-safe alphabet */
	    "Z===",      /* three '=' */
	    "Zg==Zg==",  /* padding inside */
	    "Zm9vYmFy\n" /* a line end */
	};
	uint8_t out[16];
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(base64_check(bad[i], strlen(bad[i]), &n), IHALA_EINVAL);
		assert_int_equal(base64_decode(bad[i], strlen(bad[i]), out, sizeof(out), &n),
		                 IHALA_EINVAL);
	}
	/* more bytes than the room given */
	assert_int_equal(base64_decode("Zm9vYmFy", 8, out, 5, &n), IHALA_EINVAL);
	assert_int_equal(base64_decode("Zm9vYmFy", 8, out, 6, &n), 0);
}

static void
test_lenient(void **state)
{
	static const char *const bad[] = {"Z", "Zm9vY", "Zg=", "Z===", "Zg==Zg==", "Zm9v ", "Zm!v"};
	uint8_t *p;
	size_t i, n;

	(void)state;
	/* URL-safe and unpadded: 0xfb 0xff */
	assert_int_equal(base64_decode_lenient("-_8", 3, &p, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(p[0], 0xfb);
	assert_int_equal(p[1], 0xff);
	free(p);
	assert_int_equal(base64_decode_lenient("+/8=", 4, &p, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(p[0], 0xfb);
	free(p);
	/* unused bits are ignored */
	assert_int_equal(base64_decode_lenient("Zh", 2, &p, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(p[0], 'f');
	free(p);
	/* empty: no bytes, no allocation */
	assert_int_equal(base64_decode_lenient("", 0, &p, &n), 0);
	assert_null(p);
	assert_int_equal(n, 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(base64_decode_lenient(bad[i], strlen(bad[i]), &p, &n),
		                 IHALA_EINVAL);
		assert_null(p);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_encode_vectors), cmocka_unit_test(test_decode_vectors),
	    cmocka_unit_test(test_round_trip),     cmocka_unit_test(test_strict_refusals),
	    cmocka_unit_test(test_lenient),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
