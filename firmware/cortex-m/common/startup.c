/*
 * Reset and the vector table. remoteproc loaded every segment where it was linked
 * (.data included) and zero-filled .bss, as Linux's ELF loader does, so reset only
 * points VTOR at the table, starts the tick and calls main().
 */
#include <stdint.h>
#include <stdlib.h>

#include "soc.h"
#include "timer.h"

extern uint32_t __stack_top;
extern int main(void);

void reset_handler(void);
void default_handler(void);

/* Handlers a firmware defines when it uses the interrupt; unused ones end in
 * default_handler. */
void nmi_handler(void) __attribute__((weak, alias("default_handler")));
void hardfault_handler(void) __attribute__((weak, alias("default_handler")));
void svc_handler(void) __attribute__((weak, alias("default_handler")));
void pendsv_handler(void) __attribute__((weak, alias("default_handler")));
void systick_handler(void) __attribute__((weak, alias("default_handler")));
void mu_irq_handler(void) __attribute__((weak, alias("default_handler")));

typedef void (*vector_t)(void);

__attribute__((section(".isr_vector"), used)) const vector_t vector_table[16 + SOC_NUM_IRQS] = {
    [0] = (vector_t)&__stack_top,
    [1] = reset_handler,
    [2] = nmi_handler,
    [3] = hardfault_handler,
    [4] = default_handler, /* MemManage */
    [5] = default_handler, /* BusFault */
    [6] = default_handler, /* UsageFault */
    [11] = svc_handler,
    [12] = default_handler, /* DebugMonitor */
    [14] = pendsv_handler,
    [15] = systick_handler,
    [16 + SOC_MU_IRQ] = mu_irq_handler,
};

void reset_handler(void)
{
    SCB_VTOR = (uint32_t)vector_table;
    timer_init();
    exit(main());
}

/* An exception nobody handles: stop here, waiting (a debugger shows where). */
void default_handler(void)
{
    for (;;)
        wait_for_interrupt();
}
