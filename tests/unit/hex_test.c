/* hex_test.c - proto/hex: digit values at the edges of each range, encoding. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "hex.h"

static void
test_digit(void **state)
{
	(void)state;
	assert_int_equal(hex_digit('0'), 0);
	assert_int_equal(hex_digit('9'), 9);
	assert_int_equal(hex_digit('a'), 10);
	assert_int_equal(hex_digit('f'), 15);
	assert_int_equal(hex_digit('A'), 10);
	assert_int_equal(hex_digit('F'), 15);
	assert_int_equal(hex_digit('/'), -1);
	assert_int_equal(hex_digit(':'), -1);
	assert_int_equal(hex_digit('g'), -1);
	assert_int_equal(hex_digit('G'), -1);
	assert_int_equal(hex_digit('`'), -1);
	assert_int_equal(hex_digit('@'), -1);
	assert_int_equal(hex_digit('\0'), -1);
	assert_int_equal(hex_digit(-48), -1); /* a signed char past 0x7f */
}

static void
test_encode(void **state)
{
	const uint8_t b[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
	char out[2 * sizeof(b) + 1];

	(void)state;
	memset(out, 'x', sizeof(out));
	hex_encode(b, sizeof(b), out);
	assert_string_equal(out, "00017f80abff");
	hex_encode(b, 0, out);
	assert_string_equal(out, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_digit),
	    cmocka_unit_test(test_encode),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
