/*
 * remoteproc operations of the emulated Cortex-M7 as an OpenAMP remote: a kick is the
 * vring's notify id written to the MU (amplink's host reads it as Linux's K3/OMAP
 * drivers do), skipped while the previous one is unread; the MU interrupt records
 * that the host kicked; memory is flat.
 */
#include <metal/alloc.h>
#include <metal/atomic.h>
#include <metal/io.h>
#include <openamp/remoteproc.h>

#include "mu.h"
#include "platform_info.h"
#include "soc.h"

static struct remoteproc_priv *kicked_rproc;

void mu_irq_handler(void)
{
    while (mu_pending(KICK_MU_CHANNEL)) {
        uint32_t word = mu_receive(KICK_MU_CHANNEL);
        if (word < MU_WORD_PROTOCOL_FIRST && kicked_rproc)
            atomic_store(&kicked_rproc->nokick, 0);
        else if (word == MU_WORD_ECHO_REQUEST)
            mu_send(KICK_MU_CHANNEL, MU_WORD_ECHO_REPLY);
    }
}

static struct remoteproc *proc_init(struct remoteproc *rproc, const struct remoteproc_ops *ops,
                                    void *arg)
{
    struct remoteproc_priv *priv = arg;
    (void)ops;
    if (!rproc || !priv)
        return NULL;
    atomic_store(&priv->nokick, 1);
    kicked_rproc = priv;
    rproc->priv = priv;
    MU->cr = 0;
    mu_rx_interrupt(KICK_MU_CHANNEL, 1);
    nvic_set_priority(SOC_MU_IRQ, 3u << 4);
    nvic_enable(SOC_MU_IRQ);
    return rproc;
}

static void proc_remove(struct remoteproc *rproc)
{
    (void)rproc;
    nvic_disable(SOC_MU_IRQ);
    mu_rx_interrupt(KICK_MU_CHANNEL, 0);
    kicked_rproc = NULL;
}

/* Device, physical and virtual addresses are the same on this core. */
static void *proc_mmap(struct remoteproc *rproc, metal_phys_addr_t *pa, metal_phys_addr_t *da,
                       size_t size, unsigned int attribute, struct metal_io_region **io)
{
    struct remoteproc_mem *mem;
    struct metal_io_region *region;
    metal_phys_addr_t addr = *pa != METAL_BAD_PHYS ? *pa : *da;

    if (addr == METAL_BAD_PHYS)
        return NULL;
    mem = metal_allocate_memory(sizeof(*mem));
    region = metal_allocate_memory(sizeof(*region));
    if (!mem || !region) {
        metal_free_memory(mem);
        metal_free_memory(region);
        return NULL;
    }
    remoteproc_init_mem(mem, NULL, addr, addr, size, region);
    metal_io_init(region, (void *)addr, &mem->pa, size, sizeof(metal_phys_addr_t) << 3, attribute,
                  NULL);
    remoteproc_add_mem(rproc, mem);
    *pa = addr;
    *da = addr;
    if (io)
        *io = region;
    return metal_io_phys_to_virt(region, addr);
}

static int proc_notify(struct remoteproc *rproc, uint32_t id)
{
    (void)rproc;
    mu_kick(KICK_MU_CHANNEL, id);
    return 0;
}

const struct remoteproc_ops amplink_cm7_proc_ops = {
    .init = proc_init,
    .remove = proc_remove,
    .mmap = proc_mmap,
    .notify = proc_notify,
};
