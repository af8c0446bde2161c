/*
 * The legacy_apps machine layer for amplink's emulated Cortex-M7: what
 * openamp-system-reference's applications call (platform_info_common.h), over the
 * MU kick of amplink_cm7_rproc.c and the resource table of rsc_table.c.
 */
#ifndef PLATFORM_INFO_H_
#define PLATFORM_INFO_H_

#include <metal/atomic.h>
#include <openamp/remoteproc.h>

#include "platform_info_common.h"

#define KICK_MU_CHANNEL 1u /* the MU data channel of vring kicks, both ways */

struct remoteproc_priv {
    atomic_int nokick; /* cleared by the MU interrupt: the host kicked */
};

extern const struct remoteproc_ops amplink_cm7_proc_ops;

#endif
