/* error_test.c - the C error codes (error.h/.c) and the wire ErrorCode enum agree name by name. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "ihala.pb-c.h"

#define PREFIX "ERROR_CODE_"

/* Highest wire number error.h reserves a range for (audit log: 70-89). */
#define MAX_CODE 89

static const ProtobufCEnumDescriptor *ed = &ihala__v2__error_code__descriptor;

/* Every enum value has a C code with the same number and name. */
static void
test_enum_to_c(void **state)
{
	unsigned i, j;

	(void)state;
	assert_true(ed->n_values > 0);
	for (i = 0; i < ed->n_values; i++) {
		const ProtobufCEnumValue *v = &ed->values[i];

		if (strncmp(v->name, PREFIX, strlen(PREFIX)) != 0) {
			fail_msg("enum value %s lacks the %s prefix", v->name, PREFIX);
		}
		if (v->value < 0 || v->value > MAX_CODE) {
			fail_msg("enum value %s = %d out of range", v->name, v->value);
		}
		if (!ihala_err_known(-v->value)) {
			fail_msg("%s = %d has no C code -%d", v->name, v->value, v->value);
		}
		if (strcmp(ihala_errname(-v->value), v->name + strlen(PREFIX)) != 0) {
			fail_msg("%s = %d but C code -%d is named %s", v->name, v->value, v->value,
			         ihala_errname(-v->value));
		}
		/* Numbers are unique in the enum (no allow_alias). */
		for (j = 0; j < i; j++) {
			assert_int_not_equal(ed->values[j].value, v->value);
		}
	}
}

/* Every C code has an enum value with the same number and name. */
static void
test_c_to_enum(void **state)
{
	char want[64];
	int n, count = 0;

	(void)state;
	for (n = 0; n <= MAX_CODE + 100; n++) {
		const ProtobufCEnumValue *v;

		if (!ihala_err_known(-n)) {
			assert_null(protobuf_c_enum_descriptor_get_value(ed, n));
			continue;
		}
		count++;
		assert_true(n <= MAX_CODE);
		v = protobuf_c_enum_descriptor_get_value(ed, n);
		if (v == NULL) {
			fail_msg("C code -%d (%s) is missing from ErrorCode", n, ihala_errname(-n));
		}
		snprintf(want, sizeof(want), PREFIX "%s", ihala_errname(-n));
		assert_string_equal(v->name, want);
		/* And the name finds the same number back. */
		assert_non_null(protobuf_c_enum_descriptor_get_value_by_name(ed, want));
		assert_int_equal(protobuf_c_enum_descriptor_get_value_by_name(ed, want)->value, n);
	}
	assert_int_equal(count, (int)ed->n_values);
	/* Codes are negative: no positive number names an error. */
	for (n = 1; n <= MAX_CODE + 100; n++) {
		assert_false(ihala_err_known(n));
	}
}

/* Spot checks against error.h, so a shifted table cannot pass both ways. */
static void
test_known_values(void **state)
{
	(void)state;
	assert_int_equal(IHALA__V2__ERROR_CODE__ERROR_CODE_OK, 0);
	assert_int_equal(IHALA__V2__ERROR_CODE__ERROR_CODE_BAD_FRAME, -IHALA_EBADFRAME);
	assert_int_equal(IHALA__V2__ERROR_CODE__ERROR_CODE_QUEUE_FULL, -IHALA_EQUEUEFULL);
	assert_int_equal(IHALA__V2__ERROR_CODE__ERROR_CODE_TAMPERED, -IHALA_ETAMPER);
	assert_string_equal(ihala_errname(IHALA_EQUEUEFULL), "QUEUE_FULL");
	assert_string_equal(ihala_errname(IHALA_OK), "OK");
	assert_string_equal(ihala_errname(12345), "UNKNOWN");
}

/* ihala_strerror and ihala_errname never return NULL or an empty string,
 * and every known code has its own sentence and name. */
static void
test_strerror(void **state)
{
	static const int extremes[] = {INT_MIN, INT_MIN + 1, -1000000, 1000000, INT_MAX};
	int n, m;
	size_t i;

	(void)state;
	for (n = -(MAX_CODE + 200); n <= MAX_CODE + 200; n++) {
		assert_non_null(ihala_strerror(n));
		assert_true(ihala_strerror(n)[0] != '\0');
		assert_non_null(ihala_errname(n));
		assert_true(ihala_errname(n)[0] != '\0');
		if (!ihala_err_known(n) || n == 0) {
			continue;
		}
		assert_string_not_equal(ihala_strerror(n), "unknown error");
		for (m = n + 1; m <= 0; m++) {
			if (ihala_err_known(m)) {
				assert_string_not_equal(ihala_errname(n), ihala_errname(m));
				assert_string_not_equal(ihala_strerror(n), ihala_strerror(m));
			}
		}
	}
	for (i = 0; i < sizeof(extremes) / sizeof(extremes[0]); i++) {
		assert_non_null(ihala_strerror(extremes[i]));
		assert_non_null(ihala_errname(extremes[i]));
		assert_false(ihala_err_known(extremes[i]));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_enum_to_c),
	    cmocka_unit_test(test_c_to_enum),
	    cmocka_unit_test(test_known_values),
	    cmocka_unit_test(test_strerror),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
