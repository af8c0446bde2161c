#!/usr/bin/env bash
# Build the Cortex-M firmware images that amplink's emulated cores run: rpmsg-lite
# and OpenAMP (libmetal, open-amp, openamp-system-reference's rpmsg-echo) from their
# pinned upstream sources, with amplink's porting layers and applications
# (firmware/cortex-m). Nothing of the upstream code is in the repository: the sources
# come from ../shared/peers (or $AMPLINK_PEERS) when the pinned archives are there,
# else they are downloaded from GitHub at the pinned revisions and checked.
#
# The result is a folder of ELF images in a cache outside the repository, named after a
# hash of everything that goes into it and reused while that is unchanged; amplink
# finds the newest complete one (amplink.remoteproc.firmware_path).
#
# Usage: tools/firmware/build.sh           builds if needed, prints the folder
#        tools/firmware/build.sh --where   prints the folder if it is built, else fails
# Env:   AMPLINK_FIRMWARE_CACHE   cache folder (default: ~/.cache/amplink-firmware)
#        AMPLINK_PEERS            folder with the pinned archives (default: ../shared/peers)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SRC="$ROOT/firmware/cortex-m"
CACHE="${AMPLINK_FIRMWARE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/amplink-firmware}"
PEERS="${AMPLINK_PEERS:-$ROOT/../shared/peers}"
# gdb-multiarch is not for the build: the tests attach it to a core and read core dumps
PACKAGES=(gcc-arm-none-eabi libnewlib-arm-none-eabi cmake make gdb-multiarch)

# name | archive | sha256 of the archive | sha256 of its extracted tree | GitHub archive URL
# The tree hash (every file's sha256, sorted by path) is what a download must match:
# GitHub's generated archives differ in packaging from the pinned ones, not in content.
SOURCES=(
  "rpmsg-lite|rpmsg-lite-5.4.0.tar.gz|b85f66283b514dbb69cad0668f41a47e1c263c321b696830a37a73c3cbd1b731|439c3e4ad7b8987770d2aeb65f562ea45265189daa5c258cfaba6dd4478cc8fe|https://github.com/nxp-mcuxpresso/rpmsg-lite/archive/refs/tags/v5.4.0.tar.gz"
  "libmetal|libmetal-bd97c9a.tar.gz|0fdd7c68704f334ffca9bcb930f5b8d77efd91e3525401b6980129a839dc5255|b99f58dc59c52eb3bbb94b974fed9ec1c43d95ab461e3280f3ba13debfb97d66|https://github.com/OpenAMP/libmetal/archive/bd97c9a28a236a3af41c424aa1eabaa38bd5831d.tar.gz"
  "open-amp|open-amp-23d4c5d.tar.gz|f6eb2197699395a40500438cc0c4d43ee0668c6ca51b7c5c08a3dfaf422d1716|665101e55d3e3f847e4d9735f416cbded7158d5de83dc5aef42e646c19ac7bd0|https://github.com/OpenAMP/open-amp/archive/23d4c5d7a5c5dd08b74d4ba828243988592337cb.tar.gz"
  "openamp-system-reference|openamp-system-reference-843ec10.tar.gz|01d6dafdbe662430602556082a569e30ef0c7f38842f5ee4d24b44b4137ba7c0|0c14001432679c52ba7b757db5835affcb173e1fa4dd2a450ca125a716e0d164|https://github.com/OpenAMP/openamp-system-reference/archive/843ec100a54e73429694dbcfe7d91640f6378402.tar.gz"
)
CFLAGS_CM7="-mcpu=cortex-m7 -mthumb -mfloat-abi=soft -O2 -g -ffunction-sections -fdata-sections"

log() { printf 'build-firmware: %s\n' "$*" >&2; }
# shellcheck source=../lib/apt.sh
source "$(dirname "$0")/../lib/apt.sh"

tree_hash() {
    (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) \
        | sha256sum | cut -d' ' -f1
}

recipe_hash() {
    {
        printf '%s\n' "${SOURCES[@]}" "$CFLAGS_CM7"
        cat "$0"
        (cd "$SRC" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
        arm-none-eabi-gcc --version 2>/dev/null | head -n1 || echo "no compiler"
    } | sha256sum | cut -c1-16
}

# Unpack one source into $2/<name>: the pinned archive if it is there and intact, else
# GitHub's archive of the same revision, accepted only if its tree hash matches.
unpack() {
    local name archive sum tree url dest="$2/$1"
    for entry in "${SOURCES[@]}"; do
        IFS='|' read -r name archive sum tree url <<<"$entry"
        [ "$name" = "$1" ] && break
    done
    local file="$PEERS/$archive"
    if [ -f "$file" ] && echo "$sum  $file" | sha256sum -c --status; then
        log "$name: pinned archive $file"
    else
        file="$CACHE/downloads/$archive"
        if [ ! -f "$file" ]; then
            command -v curl >/dev/null || install_packages curl ca-certificates
            log "$name: downloading $url"
            mkdir -p "$CACHE/downloads"
            curl -fsSL "$url" -o "$file.partial"
            mv "$file.partial" "$file"
        fi
    fi
    mkdir -p "$dest"
    tar -xzf "$file" -C "$dest" --strip-components=1
    local got
    got="$(tree_hash "$dest")"
    if [ "$got" != "$tree" ]; then
        log "$name: the sources in $file are not the pinned revision (tree $got, want $tree)"
        exit 1
    fi
}

cmake_lib() {  # folder, install prefix, extra options...
    local src="$1" prefix="$2"
    shift 2
    cmake -S "$src" -B "$src/build" -DCMAKE_SYSTEM_PROCESSOR=arm -DMACHINE=amplink_cm7 \
        -DCROSS_PREFIX=arm-none-eabi- -DCMAKE_C_FLAGS="$CFLAGS_CM7 $PREFIX_MAP" \
        -DCMAKE_INCLUDE_PATH="$prefix/include" -DCMAKE_LIBRARY_PATH="$prefix/lib" \
        -DCMAKE_INSTALL_PREFIX="$prefix" "$@" >"$src/build.log" 2>&1 \
        || { tail -n 30 "$src/build.log" >&2; exit 1; }
    make -C "$src/build" -j"$(nproc)" install >>"$src/build.log" 2>&1 \
        || { tail -n 30 "$src/build.log" >&2; exit 1; }
}

if [ "${1:-}" = "--where" ]; then
    OUT="$CACHE/$(recipe_hash)"
    [ -f "$OUT/.complete" ] && { echo "$OUT"; exit 0; }
    log "not built: run make firmware"
    exit 1
fi

install_packages "${PACKAGES[@]}"
OUT="$CACHE/$(recipe_hash)"
if [ -f "$OUT/.complete" ]; then
    echo "$OUT"
    exit 0
fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ -f "$OUT/.complete" ]; then  # built by a concurrent run while this one waited
    echo "$OUT"
    exit 0
fi

WORK="$(mktemp -d "$CACHE/work.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
# the same images whatever the temporary folder's and the checkout's names (__FILE__ in
# assertions, debug info)
PREFIX_MAP="-ffile-prefix-map=$WORK=/upstream -ffile-prefix-map=$ROOT=/amplink"
for name in rpmsg-lite libmetal open-amp openamp-system-reference; do
    unpack "$name" "$WORK"
done
log "building libmetal (generic system) and open-amp for the Cortex-M7"
cmake_lib "$WORK/libmetal" "$WORK/install" \
    -DCMAKE_TOOLCHAIN_FILE="$WORK/libmetal/cmake/platforms/cross-generic-gcc.cmake" -DWITH_DOC=OFF
cmake_lib "$WORK/open-amp" "$WORK/install" \
    -DCMAKE_TOOLCHAIN_FILE="$WORK/open-amp/cmake/platforms/cross_generic_gcc.cmake" \
    -DWITH_VIRTIO_DRIVER=OFF -DWITH_PROXY=OFF
log "building the images"
rm -rf "$OUT"
mkdir -p "$OUT"
make -C "$SRC" -j"$(nproc)" RPMSG_LITE="$WORK/rpmsg-lite" OPENAMP="$WORK/install" \
    LEGACY_APPS="$WORK/openamp-system-reference/examples/legacy_apps" OUT="$OUT" \
    EXTRA_CFLAGS="$PREFIX_MAP" \
    >"$WORK/images.log" 2>&1 || { tail -n 40 "$WORK/images.log" >&2; exit 1; }
touch "$OUT/.complete"
# keep the four newest builds (other worktrees may use an older one), drop the rest
ls -dt "$CACHE"/[0-9a-f]*/ 2>/dev/null | grep -E '/[0-9a-f]{16}/$' | tail -n +5 | xargs -r rm -rf
log "firmware in $OUT"
echo "$OUT"
