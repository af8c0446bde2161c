/*
 * A small console, the same as amplink's Python demo firmware offers on rpmsg-tty:
 * typed characters are echoed; a line (ended by CR or LF) runs a command: help,
 * uptime, stats, echo TEXT. Pure: bytes in, bytes out.
 */
#ifndef AMPLINK_CONSOLE_H
#define AMPLINK_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

#define CONSOLE_LINE 128u
#define CONSOLE_OUT 640u /* enough for one feed of a full message (496 B) */

struct console {
    const char *prompt;
    char line[CONSOLE_LINE];
    size_t used;
    uint32_t lines; /* commands run so far (what "stats" shows) */
};

void console_init(struct console *c, const char *prompt);

/* Take len typed bytes; write what the terminal shows to out (at most CONSOLE_OUT
 * bytes) and return its length. */
size_t console_feed(struct console *c, const uint8_t *data, size_t len, char *out);

#endif
