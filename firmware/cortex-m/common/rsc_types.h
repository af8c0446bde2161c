/*
 * Resource table entries as Linux's remoteproc reads them (include/linux/
 * remoteproc.h's ABI: little-endian, packed), for firmware whose stack does not
 * define them (rpmsg-lite). The OpenAMP images use open-amp's own definitions.
 */
#ifndef AMPLINK_RSC_TYPES_H
#define AMPLINK_RSC_TYPES_H

#include <stdint.h>

#define RSC_TYPE_CARVEOUT 0u
#define RSC_TYPE_DEVMEM 1u
#define RSC_TYPE_TRACE 2u
#define RSC_TYPE_VDEV 3u
#define RSC_ADDR_ANY 0xffffffffu

#define VIRTIO_ID_RPMSG 7u
#define VIRTIO_RPMSG_F_NS 0u

/* amplink's features entry (a vendor resource, see amplink.wire.protocol). */
#define RSC_TYPE_AMPLINK_FEATURES 128u
#define AMPLINK_F_GRACEFUL_SHUTDOWN (1u << 0)
#define AMPLINK_F_WATCHDOG (1u << 1)

struct rsc_vring {
    uint32_t da;
    uint32_t align;
    uint32_t num;
    uint32_t notifyid;
    uint32_t pa;
} __attribute__((packed));

struct rsc_vdev {
    uint32_t type;
    uint32_t id;
    uint32_t notifyid;
    uint32_t dfeatures;
    uint32_t gfeatures;
    uint32_t config_len;
    uint8_t status;
    uint8_t num_of_vrings;
    uint8_t reserved[2];
} __attribute__((packed));

struct rsc_trace {
    uint32_t type;
    uint32_t da;
    uint32_t len;
    uint32_t reserved;
    char name[32];
} __attribute__((packed));

struct rsc_amplink_features {
    uint32_t type;
    uint32_t version;
    uint32_t features;
    uint32_t watchdog_ms;
    uint32_t reserved;
} __attribute__((packed));

#endif
