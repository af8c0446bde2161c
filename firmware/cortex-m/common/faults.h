/*
 * Ways to crash on purpose, for the demo and amplink's tests of the emulated core's
 * crash paths. Each call ends the firmware: the platform reports the fault.
 */
#ifndef AMPLINK_FAULTS_H
#define AMPLINK_FAULTS_H

#include <stddef.h>
#include <stdint.h>

/* What the demo sends on the echo channel to crash the core (a write to an address
 * where nothing is mapped). amplink.emu.demo_fault has the same bytes. */
#define FAULT_DEMO_MESSAGE "amplink: please fault (write to unmapped memory)"

/* Run the fault a command names: "unmapped-write", "unmapped-read", "undefined"
 * (a HardFault), "lockup", "spin" (forever, without WFI) or "scribble" (corrupt the
 * used index of vring0, the host's receive ring, which has num entries aligned to
 * align; the caller then kicks the host). Returns 1 after "scribble", 0 for an
 * unknown command; the others do not return. */
int fault_run(const char *command, size_t len, uintptr_t vring0, uint32_t num, uint32_t align);

/* Whether data is the demo's fault message. */
int fault_is_demo_message(const void *data, size_t len);

#endif
