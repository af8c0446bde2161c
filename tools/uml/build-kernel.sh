#!/usr/bin/env bash
# Build a User-Mode Linux kernel that can run Linux's rpmsg stack against amplink.
#
# Why: Debian's prebuilt user-mode-linux has no rpmsg support (HAS_DMA=n), so the
# conformance tests need a UML kernel built from Debian's linux-source-6.1 with the
# options in docs/linux.md. The result lives in a cache folder outside the repository
# and is reused while the configuration below is unchanged; nothing of the kernel is
# committed.
#
# Usage: tools/uml/build-kernel.sh            prints the kernel's path when done
# Env:   AMPLINK_UML_CACHE   cache folder (default: ~/.cache/amplink-uml)
#        AMPLINK_UML_JOBS    parallel make jobs (default: nproc)
set -euo pipefail

CACHE="${AMPLINK_UML_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/amplink-uml}"
JOBS="${AMPLINK_UML_JOBS:-$(nproc)}"
PACKAGES=(linux-source-6.1 build-essential bc flex bison libelf-dev xz-utils)

# The options turned on over `make ARCH=um defconfig`, and the ones turned off.
# UML_PCI_OVER_VIRTIO is only there because it is what sets HAS_DMA, which
# RPMSG_VIRTIO needs. DEVTMPFS is off because UML runs virtio callbacks in hard-IRQ
# context and devtmpfs would sleep there; the guest helper makes the nodes instead.
ENABLE=(VIRTIO_UML UML_PCI_OVER_VIRTIO RPMSG RPMSG_VIRTIO RPMSG_NS RPMSG_CHAR
        RPMSG_CTRL RPMSG_TTY HOSTFS TMPFS SLUB)
DISABLE=(DEVTMPFS SLAB)
SETVAL=("UML_PCI_OVER_VIRTIO_DEVICE_ID=1234")

log() { printf 'build-kernel: %s\n' "$*" >&2; }
. "$(dirname "$0")/../install-packages.sh"

recipe_hash() {
    printf '%s\n' "${ENABLE[@]}" -- "${DISABLE[@]}" -- "${SETVAL[@]}" "$(linux_version)" \
        | sha256sum | cut -c1-16
}

linux_version() {
    dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || echo none
}


install_packages
HASH="$(recipe_hash)"
OUT="$CACHE/linux-$HASH"
if [ -x "$OUT" ]; then
    echo "$OUT"
    exit 0
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ -x "$OUT" ]; then  # built by a concurrent run while this one waited
    echo "$OUT"
    exit 0
fi

TARBALL=$(ls /usr/src/linux-source-6.1*.tar.xz | head -n1)
SRC="$CACHE/src-$HASH"
rm -rf "$SRC" "$CACHE"/src-*.partial
log "unpacking $TARBALL"
mkdir -p "$SRC.partial"
tar -xJf "$TARBALL" -C "$SRC.partial" --strip-components=1
mv "$SRC.partial" "$SRC"

cd "$SRC"
log "configuring"
make -s ARCH=um defconfig >/dev/null
for opt in "${ENABLE[@]}"; do scripts/config --enable "$opt"; done
for opt in "${DISABLE[@]}"; do scripts/config --disable "$opt"; done
for kv in "${SETVAL[@]}"; do scripts/config --set-val "${kv%%=*}" "${kv#*=}"; done
make -s ARCH=um olddefconfig >/dev/null
for opt in "${ENABLE[@]}"; do
    grep -q "^CONFIG_$opt=y" .config || { log "CONFIG_$opt did not stick"; exit 1; }
done

log "building with $JOBS jobs (several minutes)"
make -s ARCH=um -j"$JOBS" linux >build.log 2>&1 || { tail -n 40 build.log >&2; exit 1; }
cp linux "$OUT.partial"
mv "$OUT.partial" "$OUT"
cd /
rm -rf "$SRC"
log "kernel at $OUT"
echo "$OUT"
