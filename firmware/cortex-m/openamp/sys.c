/*
 * libmetal's generic system on amplink's emulated Cortex-M7: the machine functions
 * lib/system/generic leaves to a port (see its template). Interrupt masking is
 * PRIMASK, vectors are NVIC lines, caches are off, memory is mapped 1:1, and the
 * default poll waits for an interrupt.
 */
#include <metal/io.h>
#include <metal/sys.h>
#include <metal/utilities.h>

#include "soc.h"

void sys_irq_restore_enable(unsigned int flags) { irq_restore(flags); }

unsigned int sys_irq_save_disable(void) { return irq_save(); }

void sys_irq_enable(unsigned int vector) { nvic_enable(vector); }

void sys_irq_disable(unsigned int vector) { nvic_disable(vector); }

void metal_machine_cache_flush(void *addr, unsigned int len)
{
    metal_unused(addr);
    metal_unused(len);
}

void metal_machine_cache_invalidate(void *addr, unsigned int len)
{
    metal_unused(addr);
    metal_unused(len);
}

void metal_generic_default_poll(void) { wait_for_interrupt(); }

void *metal_machine_io_mem_map(void *va, metal_phys_addr_t pa, size_t size, unsigned int flags)
{
    metal_unused(pa);
    metal_unused(size);
    metal_unused(flags);
    return va;
}
