/*
 * What the rpmsg-lite applications share: bring the link up as the remote, create
 * and announce each service's endpoint, then serve forever. Messages are held in
 * the receive callback (ISR context, as rpmsg-lite's bare-metal environment runs
 * it) and handled in the main loop, which idles in WFI.
 */
#ifndef AMPLINK_RL_APP_H
#define AMPLINK_RL_APP_H

#include <stdint.h>

#include "rpmsg_lite.h"

struct rl_service {
    const char *name;
    void (*handle)(struct rl_service *svc, uint32_t src, void *data, uint32_t len);
    struct rpmsg_lite_endpoint *ept;
};

/* Serve services[0..count) (never returns). */
void rl_app_run(struct rl_service *services, uint32_t count);

/* Send len bytes from svc's endpoint to dst, waiting for a buffer if need be. */
void rl_app_send(struct rl_service *svc, uint32_t dst, const void *data, uint32_t len);

/* Kick the host about the vring the core writes (after scribbling it on purpose). */
void rl_app_kick_host(void);

#endif
