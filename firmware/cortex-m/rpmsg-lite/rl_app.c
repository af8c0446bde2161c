#include "rl_app.h"

#include <stdio.h>

#include "rpmsg_ns.h"
#include "rpmsg_platform.h"
#include "soc.h"
#include "timer.h"
#include "trace.h"

/* Every host buffer can be held at once: the queue never overflows. */
#define HELD_MAX RL_BUFFER_COUNT

struct held {
    struct rl_service *svc;
    void *data;
    uint32_t len;
    uint32_t src;
};

static struct rpmsg_lite_instance *rl;
static struct held held[HELD_MAX];
static volatile uint32_t held_in, held_out;

static int32_t on_message(void *payload, uint32_t len, uint32_t src, void *priv)
{
    struct held *h = &held[held_in % HELD_MAX];
    h->svc = priv;
    h->data = payload;
    h->len = len;
    h->src = src;
    held_in++;
    return RL_HOLD;
}

void rl_app_send(struct rl_service *svc, uint32_t dst, const void *data, uint32_t len)
{
    for (;;) {
        uint32_t saved = irq_save();
        int32_t ret = rpmsg_lite_send(rl, svc->ept, dst, (char *)data, len, RL_DONT_BLOCK);
        irq_restore(saved);
        if (ret != RL_ERR_NO_MEM)
            return;
        timer_delay_ms(1); /* every host receive buffer is full: wait for one */
    }
}

void rl_app_kick_host(void) { platform_notify(RL_GET_VQ_ID(RL_PLATFORM_AMPLINK_CM7_LINK_ID, 0)); }

void rl_app_run(struct rl_service *services, uint32_t count)
{
    rl = rpmsg_lite_remote_init((void *)RL_PLATFORM_VRING_BASE, RL_PLATFORM_AMPLINK_CM7_LINK_ID,
                                RL_NO_FLAGS);
    trace_puts("rpmsg-lite: waiting for the host\n");
    rpmsg_lite_wait_for_link_up(rl, RL_BLOCK);
    for (uint32_t i = 0; i < count; i++) {
        services[i].ept = rpmsg_lite_create_ept(rl, RL_ADDR_ANY, on_message, &services[i]);
        rpmsg_ns_announce(rl, services[i].ept, services[i].name, (uint32_t)RL_NS_CREATE);
        printf("rpmsg-lite: %s at address %lu\n", services[i].name,
               (unsigned long)services[i].ept->addr);
    }
    for (;;) {
        irq_disable();
        while (held_out == held_in) {
            wait_for_interrupt(); /* a pending interrupt wakes it even while masked */
            irq_enable();
            irq_disable();
        }
        irq_enable();
        struct held *h = &held[held_out % HELD_MAX];
        h->svc->handle(h->svc, h->src, h->data, h->len);
        uint32_t saved = irq_save();
        rpmsg_lite_release_rx_buffer(rl, h->data);
        irq_restore(saved);
        held_out++;
    }
}
