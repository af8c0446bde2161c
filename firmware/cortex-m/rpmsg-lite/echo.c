/*
 * rpmsg-lite echo: announces rpmsg-openamp-demo-channel and sends every message back
 * to its sender, as OpenAMP's rpmsg-echo demo does. The demo's fault message instead
 * makes the core write to unmapped memory. Built with AMPLINK_FAULTS it also offers
 * amplink-faults, whose messages name a fault to run (faults.h).
 */
#include <stdlib.h>
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
/* "busy N": N iterations of a two-instruction loop, then the answer "busy done" (the
 * host times the emulator's instruction rate with it). */
static int busy(struct rl_service *svc, uint32_t src, const char *data, uint32_t len)
{
    char number[16];
    if (len < 6 || len - 5 >= sizeof(number) || memcmp(data, "busy ", 5) != 0)
        return 0;
    memcpy(number, data + 5, len - 5);
    number[len - 5] = '\0';
    uint32_t n = (uint32_t)strtoul(number, NULL, 10);
    if (n)
        __asm volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n)::"cc");
    rl_app_send(svc, src, "busy done", 9);
    return 1;
}

static void fault(struct rl_service *svc, uint32_t src, void *data, uint32_t len)
{
    if (busy(svc, src, data, len))
        return;
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
