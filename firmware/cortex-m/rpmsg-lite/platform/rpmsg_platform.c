/* rpmsg-lite's platform layer for amplink's emulated Cortex-M7 (see rpmsg_platform.h). */
#include "rpmsg_platform.h"

#include "mu.h"
#include "rpmsg_env.h"
#include "timer.h"

#define MU_IRQ_PRIORITY (3U << 4) /* the NVIC keeps the top four bits */

static int32_t isr_users;      /* vrings whose kicks are wanted */
static int32_t irq_disables;   /* nesting of platform_interrupt_disable() */
static void *platform_lock;

int32_t platform_init_interrupt(uint32_t vector_id, void *isr_data)
{
    env_register_isr(vector_id, isr_data);
    env_lock_mutex(platform_lock);
    if (isr_users++ == 0)
        mu_rx_interrupt(RPMSG_MU_CHANNEL, 1);
    env_unlock_mutex(platform_lock);
    return 0;
}

int32_t platform_deinit_interrupt(uint32_t vector_id)
{
    env_lock_mutex(platform_lock);
    if (--isr_users == 0)
        mu_rx_interrupt(RPMSG_MU_CHANNEL, 0);
    env_unregister_isr(vector_id);
    env_unlock_mutex(platform_lock);
    return 0;
}

void platform_notify(uint32_t vector_id)
{
    env_lock_mutex(platform_lock);
    mu_kick(RPMSG_MU_CHANNEL, RL_GET_Q_ID(vector_id));
    env_unlock_mutex(platform_lock);
}

/* The MU interrupt: a notify id from the host names the vring to look at; an echo
 * request is answered; the host's other protocol words (RP_MBOX_*) mean nothing here. */
void mu_irq_handler(void)
{
    while (mu_pending(RPMSG_MU_CHANNEL)) {
        uint32_t word = mu_receive(RPMSG_MU_CHANNEL);
        if (word < RL_PLATFORM_MAX_ISR_COUNT)
            env_isr(RL_GET_VQ_ID(RL_PLATFORM_AMPLINK_CM7_LINK_ID, word));
        else if (word == MU_WORD_ECHO_REQUEST)
            mu_send(RPMSG_MU_CHANNEL, MU_WORD_ECHO_REPLY);
    }
}

void platform_time_delay(uint32_t num_msec) { timer_delay_ms(num_msec); }

int32_t platform_in_isr(void) { return (SCB_ICSR & SCB_ICSR_VECTACTIVE) != 0U ? 1 : 0; }

int32_t platform_interrupt_enable(uint32_t vector_id)
{
    (void)vector_id;
    uint32_t saved = irq_save();
    if (--irq_disables == 0)
        nvic_enable(SOC_MU_IRQ);
    irq_restore(saved);
    return 0;
}

int32_t platform_interrupt_disable(uint32_t vector_id)
{
    (void)vector_id;
    uint32_t saved = irq_save();
    if (irq_disables++ == 0)
        nvic_disable(SOC_MU_IRQ);
    irq_restore(saved);
    return 0;
}

/* Memory is flat and uncached here: device address = physical = virtual. */
void platform_map_mem_region(uint32_t vrt_addr, uint32_t phy_addr, uint32_t size, uint32_t flags)
{
    (void)vrt_addr, (void)phy_addr, (void)size, (void)flags;
}
void platform_cache_all_flush_invalidate(void) {}
void platform_cache_disable(void) {}
void platform_cache_flush(void *data, uint32_t len) { (void)data, (void)len; }
void platform_cache_invalidate(void *data, uint32_t len) { (void)data, (void)len; }
uintptr_t platform_vatopa(void *addr) { return (uintptr_t)addr; }
void *platform_patova(uintptr_t addr) { return (void *)addr; }

int32_t platform_init(void)
{
    MU->cr = 0;
    nvic_set_priority(SOC_MU_IRQ, MU_IRQ_PRIORITY);
    nvic_enable(SOC_MU_IRQ);
    return env_create_mutex(&platform_lock, 1);
}

int32_t platform_deinit(void)
{
    nvic_disable(SOC_MU_IRQ);
    env_delete_mutex(platform_lock);
    platform_lock = NULL;
    return 0;
}
