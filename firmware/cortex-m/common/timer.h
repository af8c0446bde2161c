/* Time from SysTick: a millisecond count, and delays that wait in WFI instead of
 * spinning (the tick runs at 1 kHz only while one does). Not for use in interrupt
 * handlers. */
#ifndef AMPLINK_TIMER_H
#define AMPLINK_TIMER_H

#include <stdint.h>

void timer_init(void);
uint32_t timer_ms(void);         /* milliseconds since timer_init() */
void timer_delay_ms(uint32_t ms); /* at least ms milliseconds, idle meanwhile */

#endif
