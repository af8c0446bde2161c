/*
 * The emulated SoC these images are built for: an i.MX8M Plus-like Cortex-M7 as
 * amplink's emulated core platform presents it (examples/imx8mp-cm7.toml describes the
 * same addresses for the host side). Only what the firmware touches is here.
 *
 *   0x0000_0000  ITCM, 128 KiB: vector table, code, read-only data
 *   0x2000_0000  DTCM, 128 KiB: resource table, data, heap, stack, trace buffer
 *   0x3000_0000..0x3fff_ffff   peripherals; the MU's side B at 0x30ab_0000
 *   0x5500_0000  shared DDR, 1 MiB: vrings and rpmsg buffers, placed by the host
 *   0xe000_0000  System Control Space (NVIC, SysTick, SCB) of the core itself
 */
#ifndef AMPLINK_SOC_H
#define AMPLINK_SOC_H

#include <stdint.h>

#define SOC_CORE_CLOCK_HZ 800000000u /* what SysTick counts (the board's clock_hz) */

#define SOC_SHM_BASE 0x55000000u /* the shared DDR window */
#define SOC_SHM_SIZE 0x00100000u

#define SOC_MU_B_BASE 0x30ab0000u
#define SOC_MU_IRQ 97u     /* the MU's interrupt line at the core's NVIC */
#define SOC_NUM_IRQS 128u  /* external interrupts in the vector table */

#define SOC_UNMAPPED_ADDR 0x60000000u /* nothing is mapped here: touching it is a fault */

/* -- System Control Space (ARMv7-M) ------------------------------------------------ */
#define SCS_REG(off) (*(volatile uint32_t *)(0xe000e000u + (off)))
#define SYST_CSR SCS_REG(0x010)
#define SYST_RVR SCS_REG(0x014)
#define SYST_CVR SCS_REG(0x018)
#define NVIC_ISER(n) SCS_REG(0x100 + 4 * (n))
#define NVIC_ICER(n) SCS_REG(0x180 + 4 * (n))
#define NVIC_IPR_BYTE(irq) (*(volatile uint8_t *)(0xe000e400u + (irq)))
#define SCB_ICSR SCS_REG(0xd04)
#define SCB_VTOR SCS_REG(0xd08)

#define SYST_CSR_ENABLE (1u << 0)
#define SYST_CSR_TICKINT (1u << 1)
#define SYST_CSR_CLKSOURCE (1u << 2)
#define SCB_ICSR_VECTACTIVE 0x1ffu

static inline void nvic_enable(uint32_t irq) { NVIC_ISER(irq / 32) = 1u << (irq % 32); }
static inline void nvic_disable(uint32_t irq) { NVIC_ICER(irq / 32) = 1u << (irq % 32); }
static inline void nvic_set_priority(uint32_t irq, uint8_t prio) { NVIC_IPR_BYTE(irq) = prio; }

static inline void irq_disable(void) { __asm volatile("cpsid i" ::: "memory"); }
static inline void irq_enable(void) { __asm volatile("cpsie i" ::: "memory"); }
static inline void wait_for_interrupt(void) { __asm volatile("dsb\n\twfi" ::: "memory"); }

static inline uint32_t irq_save(void)
{
    uint32_t primask;
    __asm volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask)::"memory");
    return primask;
}

static inline void irq_restore(uint32_t primask)
{
    __asm volatile("msr primask, %0" ::"r"(primask) : "memory");
}

#endif
