/*
 * platform_info.c of the legacy_apps machine layer for amplink's emulated Cortex-M7:
 * libmetal is initialised with its log going to the trace buffer, the remoteproc
 * instance gets the resource table and the shared DDR window (where the host puts
 * vrings and buffers), and platform_poll() waits in WFI for the MU's kick.
 */
#include <metal/atomic.h>
#include <metal/sys.h>
#include <openamp/remoteproc.h>
#include <openamp/rpmsg_virtio.h>

#include "platform_info.h"
#include "rsc_table.h"
#include "soc.h"

static struct remoteproc_priv rproc_priv;
static struct remoteproc rproc_inst;

int platform_init(int argc, char *argv[], void **platform)
{
    struct metal_init_params params = METAL_INIT_DEFAULTS;
    metal_phys_addr_t pa;
    void *table;
    int len, ret;

    (void)argc, (void)argv;
    if (!platform)
        return -EINVAL;
    metal_init(&params); /* its default log handler prints to stderr: trace0 */
    if (!remoteproc_init(&rproc_inst, &amplink_cm7_proc_ops, &rproc_priv))
        return -EINVAL;
    table = get_resource_table(0, &len);
    pa = (metal_phys_addr_t)(uintptr_t)table;
    remoteproc_mmap(&rproc_inst, &pa, NULL, (size_t)len, 0, &rproc_inst.rsc_io);
    pa = SOC_SHM_BASE;
    remoteproc_mmap(&rproc_inst, &pa, NULL, SOC_SHM_SIZE, 0, NULL);
    ret = remoteproc_set_rsc_table(&rproc_inst, table, (size_t)len);
    if (ret) {
        metal_err("cannot use the resource table: %d\n", ret);
        remoteproc_remove(&rproc_inst);
        return ret;
    }
    *platform = &rproc_inst;
    return 0;
}

struct rpmsg_device *platform_create_rpmsg_vdev(void *platform, unsigned int vdev_index,
                                                unsigned int role,
                                                void (*rst_cb)(struct virtio_device *vdev),
                                                rpmsg_ns_bind_cb ns_bind_cb)
{
    struct remoteproc *rproc = platform;
    struct rpmsg_virtio_device *rpvdev;
    struct metal_io_region *shbuf_io;
    struct virtio_device *vdev;

    rpvdev = metal_allocate_memory(sizeof(*rpvdev));
    if (!rpvdev)
        return NULL;
    shbuf_io = remoteproc_get_io_with_pa(rproc, SOC_SHM_BASE);
    vdev = shbuf_io ? remoteproc_create_virtio(rproc, vdev_index, role, rst_cb) : NULL;
    if (!vdev) {
        metal_err("cannot create the rpmsg virtio device\n");
        metal_free_memory(rpvdev);
        return NULL;
    }
    /* The device role uses the host's buffers: no pool of its own. */
    if (rpmsg_init_vdev(rpvdev, vdev, ns_bind_cb, shbuf_io, NULL)) {
        metal_err("cannot initialise rpmsg on the virtio device\n");
        remoteproc_remove_virtio(rproc, vdev);
        metal_free_memory(rpvdev);
        return NULL;
    }
    return rpmsg_virtio_get_rpmsg_device(rpvdev);
}

int platform_poll(void *platform)
{
    struct remoteproc *rproc = platform;
    struct remoteproc_priv *priv = rproc->priv;

    for (;;) {
        uint32_t saved = irq_save();
        if (atomic_exchange(&priv->nokick, 1) == 0) { /* the host kicked */
            irq_restore(saved);
            return remoteproc_get_notification(rproc, RSC_NOTIFY_ID_ANY);
        }
        wait_for_interrupt(); /* a pending interrupt ends it even while masked */
        irq_restore(saved);
    }
}

void platform_release_rpmsg_vdev(struct rpmsg_device *rpdev, void *platform)
{
    struct rpmsg_virtio_device *rpvdev = metal_container_of(rpdev, struct rpmsg_virtio_device, rdev);
    struct virtio_device *vdev = rpvdev->vdev;

    rpmsg_deinit_vdev(rpvdev);
    remoteproc_remove_virtio(platform, vdev);
    metal_free_memory(rpvdev);
}

void platform_cleanup(void *platform)
{
    if (platform)
        remoteproc_remove(platform);
    metal_finish();
}
