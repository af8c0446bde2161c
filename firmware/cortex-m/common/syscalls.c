/* What newlib asks of the system: output goes to the trace buffer, the heap is the
 * DTCM between .bss and the stack, and exit parks the core in WFI. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "soc.h"
#include "trace.h"

extern char __heap_start;
extern char __heap_end;

int _write(int fd, const char *data, int len)
{
    (void)fd;
    trace_write(data, (size_t)len);
    return len;
}

void *_sbrk(ptrdiff_t incr)
{
    static char *brk = &__heap_start;
    char *old = brk;
    if (incr > &__heap_end - brk) {
        errno = ENOMEM;
        return (void *)-1;
    }
    brk += incr;
    return old;
}

void _exit(int status)
{
    (void)status;
    irq_disable();
    for (;;)
        wait_for_interrupt();
}

int _close(int fd) { (void)fd; return -1; }
int _fstat(int fd, struct stat *st) { (void)fd; st->st_mode = S_IFCHR; return 0; }
int _isatty(int fd) { (void)fd; return 1; }
int _lseek(int fd, int off, int whence) { (void)fd; (void)off; (void)whence; return 0; }
int _read(int fd, char *buf, int len) { (void)fd; (void)buf; (void)len; return 0; }
int _kill(int pid, int sig) { (void)pid; (void)sig; errno = EINVAL; return -1; }
int _getpid(void) { return 1; }
