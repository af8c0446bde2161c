/*
 * rpmsg-lite's platform layer for amplink's emulated i.MX8M Plus-like Cortex-M7: the
 * vrings of link 0 start at the shared DDR window, kicks travel on MU channel 1.
 * A kick word is the vring's notify id, as amplink's host and TI's firmware use it
 * (NXP's i.MX port shifts it left by 16 for the imx_rproc driver instead).
 */
#ifndef RPMSG_PLATFORM_H_
#define RPMSG_PLATFORM_H_

#include <stdint.h>

#include "soc.h"

#define RPMSG_MU_CHANNEL (1U)

#define VRING_ALIGN (0x1000U)
#define VRING_SIZE (0x8000U)               /* room for one 256-entry vring */
#define RL_VRING_OVERHEAD (2UL * VRING_SIZE)
#define RL_PLATFORM_VRING_BASE SOC_SHM_BASE /* where the resource table puts them */

#define RL_PLATFORM_MAX_ISR_COUNT (32U)
#define RL_GET_VQ_ID(link_id, queue_id) (((queue_id)&0x1U) | (((link_id) << 1U) & 0xFFFFFFFEU))
#define RL_GET_LINK_ID(id) (((id)&0xFFFFFFFEU) >> 1U)
#define RL_GET_Q_ID(id) ((id)&0x1U)

#define RL_PLATFORM_AMPLINK_CM7_LINK_ID (0U)
#define RL_PLATFORM_HIGHEST_LINK_ID (0U)

int32_t platform_init_interrupt(uint32_t vector_id, void *isr_data);
int32_t platform_deinit_interrupt(uint32_t vector_id);
int32_t platform_interrupt_enable(uint32_t vector_id);
int32_t platform_interrupt_disable(uint32_t vector_id);
int32_t platform_in_isr(void);
void platform_notify(uint32_t vector_id);
void platform_time_delay(uint32_t num_msec);
void platform_map_mem_region(uint32_t vrt_addr, uint32_t phy_addr, uint32_t size, uint32_t flags);
void platform_cache_all_flush_invalidate(void);
void platform_cache_disable(void);
void platform_cache_invalidate(void *data, uint32_t len);
void platform_cache_flush(void *data, uint32_t len);
uintptr_t platform_vatopa(void *addr);
void *platform_patova(uintptr_t addr);
int32_t platform_init(void);
int32_t platform_deinit(void);

#endif
