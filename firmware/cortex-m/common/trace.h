/*
 * The remoteproc trace buffer: text the host reads as debugfs trace0 (amplink:
 * `amplink trace CORE`, Rproc.trace()). The buffer is named by the resource table's
 * trace entry (TRACE_ENTRY below); printf and libmetal's log land here too.
 */
#ifndef AMPLINK_TRACE_H
#define AMPLINK_TRACE_H

#include <stddef.h>
#include <stdint.h>

#define TRACE_SIZE 4096u

extern char trace_buffer[TRACE_SIZE];

/* Append len bytes; text that no longer fits is dropped (the oldest text stays). */
void trace_write(const char *data, size_t len);
void trace_puts(const char *text);

#endif
