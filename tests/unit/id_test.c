/* id_test.c - proto/id: the agency id and the referral/case/message id formats, at their edges. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "id.h"

static int
agency(const char *s)
{
	return id_agency_valid(s, strlen(s));
}

static void
test_agency_id(void **state)
{
	char s[ID_AGENCY_MAX + 2];
	int c;

	(void)state;
	assert_true(agency("moh"));
	assert_true(agency("a"));
	assert_true(agency("hi_2-x"));
	assert_true(agency("0"));
	assert_false(agency(""));
	assert_false(agency("MOH"));
	assert_false(agency("mo h"));
	assert_false(agency("moh."));
	assert_false(agency("moh/x"));
	assert_false(agency("\xd9\x88")); /* not ASCII */
	/* exactly ID_AGENCY_MAX characters, then one more */
	memset(s, 'a', sizeof(s));
	s[ID_AGENCY_MAX] = '\0';
	assert_true(agency(s));
	s[ID_AGENCY_MAX] = 'a';
	s[ID_AGENCY_MAX + 1] = '\0';
	assert_false(agency(s));
	/* a length that covers an embedded NUL (a certificate field) */
	assert_false(id_agency_valid("mo\0h", 4));
	assert_true(id_agency_valid("mo\0h", 2));
	/* every byte: only a-z, 0-9, '_' and '-' */
	for (c = 1; c < 256; c++) {
		char one = (char)c;
		int want = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';

		assert_int_equal(id_agency_valid(&one, 1), want);
	}
	assert_string_equal(ID_AGENCY_RULE, "1..32 characters of a-z, 0-9, '_' and '-'");
}

static void
test_id(void **state)
{
	char s[ID_MAX + 2];
	int c;

	(void)state;
	assert_true(id_valid("r1"));
	assert_true(id_valid("REF-2026/001:a~b"));
	assert_true(id_valid("!"));
	assert_false(id_valid(""));
	assert_false(id_valid("r 1"));
	assert_false(id_valid("r1\n"));
	assert_false(id_valid("r\x7f"));
	assert_false(id_valid("\xd9\x88"));
	memset(s, 'x', sizeof(s));
	s[ID_MAX] = '\0';
	assert_true(id_valid(s));
	s[ID_MAX] = 'x';
	s[ID_MAX + 1] = '\0';
	assert_false(id_valid(s));
	for (c = 1; c < 256; c++) {
		char one[2] = {(char)c, '\0'};

		assert_int_equal(id_valid(one), c > ' ' && c <= '~');
	}
}

/* id_copy cuts to the buffer and always terminates, as snprintf "%s" does. */
static void
test_id_copy(void **state)
{
	char b[4];

	(void)state;
	assert_int_equal(id_copy(b, sizeof(b), "ab"), 2);
	assert_string_equal(b, "ab");
	assert_int_equal(id_copy(b, sizeof(b), "abc"), 3);
	assert_string_equal(b, "abc");
	assert_int_equal(id_copy(b, sizeof(b), "abcdef"), 3);
	assert_string_equal(b, "abc");
	assert_int_equal(id_copy(b, sizeof(b), ""), 0);
	assert_string_equal(b, "");
	assert_int_equal(id_copy(b, 1, "x"), 0);
	assert_string_equal(b, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_agency_id),
	    cmocka_unit_test(test_id),
	    cmocka_unit_test(test_id_copy),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
