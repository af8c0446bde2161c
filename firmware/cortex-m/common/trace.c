#include "trace.h"

#include <string.h>

char trace_buffer[TRACE_SIZE];
static size_t trace_used;

void trace_write(const char *data, size_t len)
{
    size_t room = TRACE_SIZE - 1u - trace_used;
    if (len > room)
        len = room;
    trace_buffer[trace_used + len] = '\0'; /* terminated before the text grows */
    memcpy(&trace_buffer[trace_used], data, len);
    trace_used += len;
}

void trace_puts(const char *text) { trace_write(text, strlen(text)); }
