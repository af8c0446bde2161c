#include "console.h"

#include <stdio.h>
#include <string.h>

#include "timer.h"
#include "trace.h"

#define HELP "commands: help, uptime, stats, echo TEXT"

void console_init(struct console *c, const char *prompt)
{
    memset(c, 0, sizeof(*c));
    c->prompt = prompt;
}

static size_t put(char *out, size_t at, const char *text)
{
    size_t n = strlen(text);
    if (at + n > CONSOLE_OUT)
        n = CONSOLE_OUT - at;
    memcpy(out + at, text, n);
    return at + n;
}

static size_t run(struct console *c, char *out, size_t at)
{
    char answer[CONSOLE_LINE + 64];
    const char *cmd = c->line;
    c->lines++;
    if (strcmp(cmd, "help") == 0)
        snprintf(answer, sizeof(answer), "%s", HELP);
    else if (strcmp(cmd, "uptime") == 0)
        snprintf(answer, sizeof(answer), "up %lu ms", (unsigned long)timer_ms());
    else if (strcmp(cmd, "stats") == 0)
        snprintf(answer, sizeof(answer), "commands: %lu", (unsigned long)c->lines);
    else if (strncmp(cmd, "echo ", 5) == 0)
        snprintf(answer, sizeof(answer), "%s", cmd + 5);
    else
        snprintf(answer, sizeof(answer), "unknown command '%s'; %s", cmd, HELP);
    trace_puts("console: ");
    trace_puts(cmd);
    trace_puts("\n");
    at = put(out, at, answer);
    return put(out, at, "\r\n");
}

size_t console_feed(struct console *c, const uint8_t *data, size_t len, char *out)
{
    size_t at = 0;
    for (size_t i = 0; i < len && at < CONSOLE_OUT; i++) {
        uint8_t byte = data[i];
        if (byte == '\r' || byte == '\n') {
            at = put(out, at, "\r\n");
            c->line[c->used] = '\0';
            if (c->used)
                at = run(c, out, at);
            c->used = 0;
            at = put(out, at, c->prompt);
        } else if (byte == 0x08 || byte == 0x7f) {
            if (c->used) {
                c->used--;
                at = put(out, at, "\b \b");
            }
        } else if (c->used < CONSOLE_LINE - 1u) {
            c->line[c->used++] = (char)byte;
            out[at++] = (char)byte;
        }
    }
    return at;
}
