/*
 * rpmsg-lite echo: announces rpmsg-openamp-demo-channel and sends every message back
 * to its sender, as OpenAMP's rpmsg-echo demo does. The demo's fault message instead
 * makes the core write to unmapped memory. Built with AMPLINK_FAULTS it also offers
 * amplink-faults, whose messages name a fault to run (faults.h).
 */
#include <string.h>

#include "faults.h"
#include "rl_app.h"
#include "rpmsg_platform.h"

static void echo(struct rl_service *svc, uint32_t src, void *data, uint32_t len)
{
    if (fault_is_demo_message(data, len))
        fault_run("unmapped-write", strlen("unmapped-write"), 0, 0, 1);
    rl_app_send(svc, src, data, len);
}

#ifdef AMPLINK_FAULTS
static void fault(struct rl_service *svc, uint32_t src, void *data, uint32_t len)
{
    (void)svc, (void)src;
    if (fault_run(data, len, RL_PLATFORM_VRING_BASE, RL_BUFFER_COUNT, VRING_ALIGN))
        rl_app_kick_host();
}
#endif

static struct rl_service services[] = {
    {"rpmsg-openamp-demo-channel", echo, NULL},
#ifdef AMPLINK_FAULTS
    {"amplink-faults", fault, NULL},
#endif
};

int main(void)
{
    rl_app_run(services, sizeof(services) / sizeof(services[0]));
    return 0;
}
