/* clock_test.c - proto/clock: the wall clock is the epoch's, the steady one never goes back. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "clock.h"

static void
test_wall_is_epoch_ms(void **state)
{
	uint64_t before = (uint64_t)time(NULL) * 1000, t = clock_wall_ms();
	uint64_t after = (uint64_t)time(NULL) * 1000 + 1000;

	(void)state;
	assert_true(t >= before && t <= after);
}

static void
test_mono_steady(void **state)
{
	struct timespec pause = {0, 20 * 1000 * 1000};
	uint64_t a, b;

	(void)state;
	a = clock_mono_ms();
	nanosleep(&pause, NULL);
	b = clock_mono_ms();
	assert_true(b >= a + 19 && b < a + 5000);
}

/* The nanosecond clock is the same steady clock as clock_mono_ms, in nanoseconds. */
static void
test_mono_ns(void **state)
{
	struct timespec pause = {0, 20 * 1000 * 1000};
	uint64_t ms, a, b;

	(void)state;
	a = clock_mono_ns();
	ms = clock_mono_ms();
	assert_true(a / 1000000 <= ms && ms <= a / 1000000 + 1000);
	nanosleep(&pause, NULL);
	b = clock_mono_ns();
	assert_true(b >= a + 19 * 1000 * 1000 && b < a + 5000ull * 1000 * 1000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_wall_is_epoch_ms),
	    cmocka_unit_test(test_mono_steady),
	    cmocka_unit_test(test_mono_ns),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
