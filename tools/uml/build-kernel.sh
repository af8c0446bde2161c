#!/usr/bin/env bash
# Build a User-Mode Linux kernel that can run Linux's rpmsg stack against amplink.
#
# Why: Debian's prebuilt user-mode-linux has no rpmsg support (HAS_DMA=n), so the
# conformance tests need a UML kernel built from Debian's linux-source-6.1 with the
# options in docs/linux.md. The result lives in a cache folder outside the repository
# and is reused while the recipe below is unchanged; nothing of the kernel is
# committed.
#
# The build copy of UML's arch code (never the rpmsg drivers) is changed in three
# places, the patches beside this script and one size:
#
# * The host's FP registers. UML saves and restores its processes' registers with
#   PTRACE_GETREGSET/SETREGSET(NT_X86_XSTATE) into a buffer whose size is fixed at build
#   time (2,696 bytes in 6.1, and still in 6.12), and the host refuses a SETREGSET that
#   does not cover its whole XSAVE area: on a CPU with AMX (about 11 KB) every guest
#   panicked with "ptrace set fp regs failed, errno = 14". The buffer is FP_BYTES, at
#   least 12 KiB (every x86 CPU known today fits) and larger if this host needs more;
#   xstate-size-check.patch makes a kernel that meets a host with a larger area stop
#   at boot with a one-line message instead of panicking later. The kernel stack grows
#   with the buffer: UML keeps a copy of it in each stack's thread_info, and the signal
#   handlers put up to two more on the interrupt stack.
# * virtio-uml-callbacks-in-process-context.patch: virtio_uml runs virtqueue callbacks
#   from a workqueue, as remoteproc's platform drivers do, instead of in its hard-IRQ
#   handler, where virtio_rpmsg_bus's name-service callback slept ("scheduling while
#   atomic") and hung in 3 of 44 runs of the Linux suite.
#
# Usage: tools/uml/build-kernel.sh            prints the kernel's path when done
# Env:   AMPLINK_UML_CACHE   cache folder (default: ~/.cache/amplink-uml)
#        AMPLINK_UML_JOBS    parallel make jobs (default: nproc)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${AMPLINK_UML_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/amplink-uml}"
JOBS="${AMPLINK_UML_JOBS:-$(nproc)}"
SOURCE_PACKAGE=linux-source-6.1
PACKAGES=("$SOURCE_PACKAGE" build-essential bc flex bison libelf-dev xz-utils)
PATCHES=("$HERE"/*.patch)
MIN_FP_BYTES=12288

# The options turned on over `make ARCH=um defconfig`, and the ones turned off.
# UML_PCI_OVER_VIRTIO is only there because it is what sets HAS_DMA, which
# RPMSG_VIRTIO needs. DEVTMPFS is off: the guest's init makes the device nodes from
# uevents (devtmpfs slept in the hard-IRQ callbacks before the patch above).
ENABLE=(VIRTIO_UML UML_PCI_OVER_VIRTIO RPMSG RPMSG_VIRTIO RPMSG_NS RPMSG_CHAR
        RPMSG_CTRL RPMSG_TTY HOSTFS TMPFS SLUB)
DISABLE=(DEVTMPFS SLAB)
SETVAL=("UML_PCI_OVER_VIRTIO_DEVICE_ID=1234")

log() { printf 'build-kernel: %s\n' "$*" >&2; }

# The kernel of this recipe is the cache's "current" one (amplink.uml.boot boots it
# when nothing else is named), whatever older recipes left beside it.
done_with() {
    ln -sfn "$(basename "$1")" "$CACHE/current"
    echo "$1"
    exit 0
}

recipe_hash() {
    { printf '%s\n' "${ENABLE[@]}" -- "${DISABLE[@]}" -- "${SETVAL[@]}" -- "$FP_BYTES" \
        "$(linux_version)"; cat "${PATCHES[@]}"; } | sha256sum | cut -c1-16
}

linux_version() {
    dpkg-query -W -f='${Version}' "$SOURCE_PACKAGE" 2>/dev/null || echo none
}

# The size of this host's XSAVE area for the features its kernel enabled
# (CPUID leaf 0xD, sub-leaf 0, EBX): what PTRACE_SETREGSET(NT_X86_XSTATE) must cover.
host_xsave_bytes() {
    local probe
    probe="$(mktemp)"
    printf '%s\n' '#include <cpuid.h>' '#include <stdio.h>' \
        'int main(void) { unsigned a, b, c, d;' \
        '  if (!__get_cpuid_count(0xd, 0, &a, &b, &c, &d)) return 1;' \
        '  printf("%u\n", b); return 0; }' | gcc -x c -o "$probe" - && "$probe"
    rm -f "$probe"
}

# FP_BYTES: MIN_FP_BYTES, or the host's area rounded up to 4 KiB when that is larger.
# STACK_ORDER: the smallest order whose stack holds the thread_info copy, two pt_regs
# copies on the interrupt stack and another buffer's worth for the host's signal
# frames, plus 16 KiB for call chains (UML's default of order 2 leaves about 10 KiB).
size_fp_buffer() {
    local host
    host="$(host_xsave_bytes)"
    FP_BYTES=$(( (host + 4095) / 4096 * 4096 ))
    if [ "$FP_BYTES" -lt "$MIN_FP_BYTES" ]; then FP_BYTES=$MIN_FP_BYTES; fi
    STACK_ORDER=2
    while [ $(( 4096 << STACK_ORDER )) -lt $(( 4 * FP_BYTES + 16384 )) ]; do
        STACK_ORDER=$(( STACK_ORDER + 1 ))
    done
    SETVAL+=("KERNEL_STACK_ORDER=$STACK_ORDER")
    log "host XSAVE area: $host bytes; FP register buffer: $FP_BYTES bytes," \
        "kernel stacks: $(( 4 << STACK_ORDER )) KiB"
}

# shellcheck source=../lib/apt.sh
source "$HERE/../lib/apt.sh"
install_packages "${PACKAGES[@]}"
size_fp_buffer
HASH="$(recipe_hash)"
OUT="$CACHE/linux-$HASH"
if [ -x "$OUT" ]; then
    done_with "$OUT"
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ -x "$OUT" ]; then  # built by a concurrent run while this one waited
    done_with "$OUT"
fi

TARBALL=$(ls /usr/src/"$SOURCE_PACKAGE".tar.xz)
SRC="$CACHE/src-$HASH"
rm -rf "$SRC" "$CACHE"/src-*.partial
log "unpacking $TARBALL"
mkdir -p "$SRC.partial"
tar -xJf "$TARBALL" -C "$SRC.partial" --strip-components=1
mv "$SRC.partial" "$SRC"

cd "$SRC"
log "sizing the FP register buffer to $FP_BYTES bytes"
OFFSETS=arch/x86/um/user-offsets.c
grep -q 'DEFINE_LONGS(HOST_FP_SIZE, 2696);' "$OFFSETS" \
    || { log "$OFFSETS has no 2696-byte HOST_FP_SIZE to resize"; exit 1; }
sed -i "s/DEFINE_LONGS(HOST_FP_SIZE, 2696);/DEFINE_LONGS(HOST_FP_SIZE, $FP_BYTES);/" "$OFFSETS"
for p in "${PATCHES[@]}"; do
    patch -p1 --forward --quiet <"$p" || { log "$p does not apply"; exit 1; }
done
log "configuring"
make -s ARCH=um defconfig >/dev/null
for opt in "${ENABLE[@]}"; do scripts/config --enable "$opt"; done
for opt in "${DISABLE[@]}"; do scripts/config --disable "$opt"; done
for kv in "${SETVAL[@]}"; do scripts/config --set-val "${kv%%=*}" "${kv#*=}"; done
make -s ARCH=um olddefconfig >/dev/null
for opt in "${ENABLE[@]}"; do
    grep -q "^CONFIG_$opt=y" .config || { log "CONFIG_$opt did not stick"; exit 1; }
done
for kv in "${SETVAL[@]}"; do
    grep -q "^CONFIG_$kv\$" .config || { log "CONFIG_$kv did not stick"; exit 1; }
done

log "building with $JOBS jobs (several minutes)"
make -s ARCH=um -j"$JOBS" linux >build.log 2>&1 || { tail -n 40 build.log >&2; exit 1; }
cp linux "$OUT.partial"
mv "$OUT.partial" "$OUT"
cd /
rm -rf "$SRC"
log "kernel at $OUT"
done_with "$OUT"
