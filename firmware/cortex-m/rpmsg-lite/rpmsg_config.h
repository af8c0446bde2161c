/* rpmsg-lite's configuration for the amplink images (included by
 * rpmsg_default_config.h): Linux's buffer geometry, 256 buffers per direction. */
#ifndef RPMSG_CONFIG_H_
#define RPMSG_CONFIG_H_

#define RL_BUFFER_PAYLOAD_SIZE (496U)
#define RL_BUFFER_COUNT (256U)
#define RL_API_HAS_ZEROCOPY (1)
#define RL_USE_STATIC_API (0)
#define RL_MS_PER_INTERVAL (1)

#endif
