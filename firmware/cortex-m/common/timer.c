#include "timer.h"

#include "soc.h"

static volatile uint32_t ticks;

void systick_handler(void) { ticks++; }

void timer_init(void)
{
    SYST_RVR = SOC_CORE_CLOCK_HZ / 1000u - 1u;
    SYST_CVR = 0;
    SYST_CSR = SYST_CSR_CLKSOURCE | SYST_CSR_TICKINT | SYST_CSR_ENABLE;
}

uint32_t timer_ms(void) { return ticks; }

void timer_delay_ms(uint32_t ms)
{
    uint32_t start = ticks;
    while ((uint32_t)(ticks - start) <= ms)
        wait_for_interrupt();
}
