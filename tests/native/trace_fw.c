/* A native remote core: an x86-64 executable with a .resource_table.
 *
 * amplink runs it as the core process with the arguments the Python core gets
 * (--region-fd, --table-da, ...).  It maps device memory, finds its trace buffer
 * through the loaded resource table, writes a line there and waits to be reset.
 * Build: gcc -O1 -no-pie -Wl,--section-start=.trace=0x800000 trace_fw.c -o trace_fw
 */
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define TRACE_DA 0x800000u
#define TRACE_LEN 256u
#define RSC_TRACE 2u

struct fw_rsc_trace {
	uint32_t type, da, len, reserved;
	char name[32];
};

struct resource_table {
	uint32_t ver, num, reserved[2];
	uint32_t offset[1];
	struct fw_rsc_trace trace;
};

__attribute__((section(".resource_table"), used))
const struct resource_table resource_table = {
	1, 1, {0, 0}, {offsetof(struct resource_table, trace)},
	{RSC_TRACE, TRACE_DA, TRACE_LEN, 0, "trace0"},
};

/* The buffer itself, at TRACE_DA (see the build line): loaded with the image. */
__attribute__((section(".trace"), used)) char trace_buffer[TRACE_LEN] = {1};

static long arg(int argc, char **argv, const char *name)
{
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], name))
			return strtol(argv[i + 1], NULL, 0);
	return -1;
}

int main(int argc, char **argv)
{
	struct stat st;
	long fd = arg(argc, argv, "--region-fd");
	long table_da = arg(argc, argv, "--table-da");

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (fd < 0 || table_da < 0 || fstat((int)fd, &st))
		return 2;
	uint8_t *mem = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, 0);
	if (mem == MAP_FAILED)
		return 2;
	const struct resource_table *t = (const void *)(mem + table_da);
	for (uint32_t i = 0; i < t->num; i++) {
		const struct fw_rsc_trace *e = (const void *)((const uint8_t *)t + t->offset[i]);
		if (e->type == RSC_TRACE && e->da + e->len <= (uint64_t)st.st_size) {
			const char msg[] = "native core up\n";
			memcpy(mem + e->da, msg, sizeof(msg));
		}
	}
	for (;;)
		pause();
}
