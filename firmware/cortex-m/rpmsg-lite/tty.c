/*
 * rpmsg-lite console: announces rpmsg-tty (the host turns it into a tty, as Linux's
 * rpmsg_tty driver does) and runs the console of console.h behind it.
 */
#include "console.h"
#include "rl_app.h"

static struct console console;
static char shown[CONSOLE_OUT];

static void tty(struct rl_service *svc, uint32_t src, void *data, uint32_t len)
{
    size_t n = console_feed(&console, data, len, shown);
    for (size_t at = 0; at < n; at += RL_BUFFER_PAYLOAD_SIZE) {
        size_t part = n - at < RL_BUFFER_PAYLOAD_SIZE ? n - at : RL_BUFFER_PAYLOAD_SIZE;
        rl_app_send(svc, src, shown + at, (uint32_t)part);
    }
}

static struct rl_service services[] = {{"rpmsg-tty", tty, NULL}};

int main(void)
{
    console_init(&console, "rpmsg-lite> ");
    rl_app_run(services, 1);
    return 0;
}
