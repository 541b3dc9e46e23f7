/* clock.c - the clocks (see clock.h). */
#include "clock.h"

#include <time.h>

static uint64_t
ms_of(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t
clock_wall_ms(void)
{
	return ms_of(CLOCK_REALTIME);
}

uint64_t
clock_mono_ms(void)
{
	return ms_of(CLOCK_MONOTONIC);
}

uint64_t
clock_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
