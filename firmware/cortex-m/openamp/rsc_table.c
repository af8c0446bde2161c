/*
 * The resource table of the OpenAMP images, in .resource_table: one rpmsg vdev whose
 * vrings the host places (FW_RSC_U32_ADDR_ANY; Linux writes their addresses before
 * the core starts), and trace0, where libmetal's log and printf go.
 */
#include <openamp/remoteproc.h>
#include <openamp/rpmsg_virtio.h>
#include <stddef.h>

#include "rsc_table.h"
#include "trace.h"

#define VRING_ALIGN 0x1000
#define VRING_NUM 256
#define VIRTIO_ID_RPMSG_ 7

struct openamp_rsc_table {
    unsigned int version;
    unsigned int num;
    unsigned int reserved[2];
    unsigned int offset[2];
    struct fw_rsc_vdev vdev;
    struct fw_rsc_vdev_vring vring0;
    struct fw_rsc_vdev_vring vring1;
    struct fw_rsc_trace trace;
} __attribute__((packed));

__attribute__((section(".resource_table"), used)) struct openamp_rsc_table resource_table = {
    .version = 1,
    .num = 2,
    .offset = {
        offsetof(struct openamp_rsc_table, vdev),
        offsetof(struct openamp_rsc_table, trace),
    },
    .vdev = {RSC_VDEV, VIRTIO_ID_RPMSG_, 0, 1 << VIRTIO_RPMSG_F_NS, 0, 0, 0, 2, {0, 0}},
    .vring0 = {FW_RSC_U32_ADDR_ANY, VRING_ALIGN, VRING_NUM, 0, 0},
    .vring1 = {FW_RSC_U32_ADDR_ANY, VRING_ALIGN, VRING_NUM, 1, 0},
    .trace = {RSC_TRACE, (uint32_t)trace_buffer, TRACE_SIZE, 0, "trace0"},
};

void *get_resource_table(int rsc_id, int *len)
{
    (void)rsc_id;
    *len = sizeof(resource_table);
    return &resource_table;
}
