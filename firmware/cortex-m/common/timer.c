#include "timer.h"

#include "soc.h"

/* The tick is slow while nothing waits (a quiet core takes few interrupts) and 1 ms
 * while a delay runs. */
#define IDLE_TICK_MS 10u

static volatile uint32_t ms;
static volatile uint32_t tick_ms;

void systick_handler(void) { ms += tick_ms; }

static void tick_every(uint32_t period_ms)
{
    SYST_CSR = 0;
    tick_ms = period_ms;
    SYST_RVR = SOC_CORE_CLOCK_HZ / 1000u * period_ms - 1u;
    SYST_CVR = 0;
    SYST_CSR = SYST_CSR_CLKSOURCE | SYST_CSR_TICKINT | SYST_CSR_ENABLE;
}

void timer_init(void) { tick_every(IDLE_TICK_MS); }

uint32_t timer_ms(void) { return ms; }

void timer_delay_ms(uint32_t delay)
{
    tick_every(1);
    uint32_t start = ms;
    while ((uint32_t)(ms - start) <= delay)
        wait_for_interrupt();
    tick_every(IDLE_TICK_MS);
}
