#include "faults.h"

#include <string.h>

#include "soc.h"

static int is(const char *command, size_t len, const char *name)
{
    return len == strlen(name) && memcmp(command, name, len) == 0;
}

int fault_is_demo_message(const void *data, size_t len)
{
    return len == sizeof(FAULT_DEMO_MESSAGE) - 1 && memcmp(data, FAULT_DEMO_MESSAGE, len) == 0;
}

/* The used ring's index in a split vring (virtio 1.x, 2.7): after the descriptor
 * table and the available ring, at the next multiple of align, behind used->flags. */
static volatile uint16_t *vring_used_idx(uintptr_t vring, uint32_t num, uint32_t align)
{
    uint32_t used = 16u * num + 6u + 2u * num;
    used = (used + align - 1u) & ~(align - 1u);
    return (volatile uint16_t *)(vring + used + 2u);
}

int fault_run(const char *command, size_t len, uintptr_t vring0, uint32_t num, uint32_t align)
{
    if (is(command, len, "unmapped-write")) {
        *(volatile uint32_t *)SOC_UNMAPPED_ADDR = 0xdeadbeefu;
    } else if (is(command, len, "unmapped-read")) {
        (void)*(volatile uint32_t *)(SOC_UNMAPPED_ADDR + 0x10u);
    } else if (is(command, len, "undefined")) {
        __asm volatile("udf #0x42");
    } else if (is(command, len, "lockup")) {
        /* An exception whose frame cannot be pushed: the stack points nowhere. */
        __asm volatile("msr msp, %0\n\tsvc #0" ::"r"(SOC_UNMAPPED_ADDR + 0x100u) : "memory");
    } else if (is(command, len, "spin")) {
        irq_disable();
        for (;;) {
        }
    } else if (is(command, len, "scribble")) {
        volatile uint16_t *idx = vring_used_idx(vring0, num, align);
        *idx = (uint16_t)(*idx + 0x7000u); /* far past anything the host posted */
        return 1;
    }
    return 0;
}
