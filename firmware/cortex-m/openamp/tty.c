/*
 * OpenAMP console: announces rpmsg-tty through open-amp's rpmsg API (the host turns
 * it into a tty) and runs the console of console.h, on the same machine layer as
 * OpenAMP's rpmsg-echo.
 */
#include <metal/log.h>
#include <openamp/open_amp.h>

#include "console.h"
#include "platform_info.h"

static struct rpmsg_endpoint ept;
static struct console console;
static char shown[CONSOLE_OUT];

static int on_message(struct rpmsg_endpoint *e, void *data, size_t len, uint32_t src, void *priv)
{
    (void)src, (void)priv;
    size_t n = console_feed(&console, data, len, shown);
    size_t mtu = (size_t)rpmsg_get_tx_buffer_size(e);
    for (size_t at = 0; at < n; at += mtu) {
        if (rpmsg_send(e, shown + at, (int)(n - at < mtu ? n - at : mtu)) < 0)
            metal_err("console: rpmsg_send failed\n");
    }
    return RPMSG_SUCCESS;
}

int main(void)
{
    void *platform;
    struct rpmsg_device *rdev;

    if (platform_init(0, NULL, &platform))
        return -1;
    rdev = platform_create_rpmsg_vdev(platform, 0, VIRTIO_DEV_DEVICE, NULL, NULL);
    if (!rdev)
        return -1;
    console_init(&console, "openamp> ");
    if (rpmsg_create_ept(&ept, rdev, "rpmsg-tty", RPMSG_ADDR_ANY, RPMSG_ADDR_ANY, on_message,
                         NULL))
        return -1;
    metal_info("openamp: rpmsg-tty at address %u\n", (unsigned int)ept.addr);
    for (;;)
        platform_poll(platform);
}
