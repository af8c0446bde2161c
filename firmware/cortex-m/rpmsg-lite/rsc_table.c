/*
 * The resource table of the rpmsg-lite images, in .resource_table as NXP's firmware
 * has it: one rpmsg vdev whose two vrings are at the fixed addresses rpmsg-lite
 * computes from RL_PLATFORM_VRING_BASE (the host only allocates the buffers), and
 * trace0. AMPLINK_WATCHDOG_MS adds amplink's features entry asking for a watchdog.
 */
#include <stddef.h>

#include "rpmsg_default_config.h"
#include "rpmsg_platform.h"
#include "rsc_types.h"
#include "trace.h"

#ifdef AMPLINK_WATCHDOG_MS
#define ENTRIES 3
#else
#define ENTRIES 2
#endif

struct rpmsg_lite_rsc_table {
    uint32_t version;
    uint32_t num;
    uint32_t reserved[2];
    uint32_t offset[ENTRIES];
    struct rsc_vdev vdev;
    struct rsc_vring vring[2];
    struct rsc_trace trace;
#ifdef AMPLINK_WATCHDOG_MS
    struct rsc_amplink_features features;
#endif
} __attribute__((packed));

__attribute__((section(".resource_table"), used)) struct rpmsg_lite_rsc_table resource_table = {
    .version = 1,
    .num = ENTRIES,
    .offset = {
        offsetof(struct rpmsg_lite_rsc_table, vdev),
        offsetof(struct rpmsg_lite_rsc_table, trace),
#ifdef AMPLINK_WATCHDOG_MS
        offsetof(struct rpmsg_lite_rsc_table, features),
#endif
    },
    .vdev = {
        .type = RSC_TYPE_VDEV,
        .id = VIRTIO_ID_RPMSG,
        .dfeatures = 1u << VIRTIO_RPMSG_F_NS,
        .num_of_vrings = 2,
    },
    .vring = {
        {RL_PLATFORM_VRING_BASE, VRING_ALIGN, RL_BUFFER_COUNT, 0, 0},
        {RL_PLATFORM_VRING_BASE + VRING_SIZE, VRING_ALIGN, RL_BUFFER_COUNT, 1, 0},
    },
    .trace = {
        .type = RSC_TYPE_TRACE,
        .da = (uint32_t)trace_buffer,
        .len = TRACE_SIZE,
        .name = "trace0",
    },
#ifdef AMPLINK_WATCHDOG_MS
    .features = {
        .type = RSC_TYPE_AMPLINK_FEATURES,
        .version = 1,
        .features = AMPLINK_F_WATCHDOG,
        .watchdog_ms = AMPLINK_WATCHDOG_MS,
    },
#endif
};
