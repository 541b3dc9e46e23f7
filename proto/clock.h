/* clock.h - the clocks: the wall clock for what is recorded, a steady one for waits and timing. */
#ifndef IHALA_CLOCK_H
#define IHALA_CLOCK_H

#include <stdint.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME): timestamps written to the log,
 * deadlines of referrals, and the broker's timers that compare against them. */
uint64_t clock_wall_ms(void);
/* Milliseconds of CLOCK_MONOTONIC: timeouts and waits that must not jump with the clock. */
uint64_t clock_mono_ms(void);
/* Nanoseconds of CLOCK_MONOTONIC: timing what takes less than a millisecond. */
uint64_t clock_mono_ns(void);

#endif
