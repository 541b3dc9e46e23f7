/* clock.h - the time in milliseconds: the wall clock for what is recorded, a steady one for waits.
 */
#ifndef IHALA_CLOCK_H
#define IHALA_CLOCK_H

#include <stdint.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME): timestamps written to the log,
 * deadlines of referrals, and the broker's timers that compare against them. */
uint64_t clock_wall_ms(void);
/* Milliseconds of CLOCK_MONOTONIC: timeouts and waits that must not jump with the clock. */
uint64_t clock_mono_ms(void);

#endif
