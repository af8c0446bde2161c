#!/usr/bin/env bash
# Build OpenAMP's linux-machine demo applications (rpmsg-echo, rpmsg-echo-ping,
# rpmsg-nocopy-*, rpmsg-sample-*, matrix_multiply*) from the pinned, unmodified upstream
# sources, so that amplink can be tested against them (make test-openamp).
#
# Sources: the archives in $AMPLINK_PEERS, else <repo>/../shared/peers, else downloaded
# from the pinned upstream archives; every archive is checked against its sha256 below.
# The one change to the build copy: libmetal's Linux init treats a failed platform-bus
# scan as non-fatal (upstream libmetal issue #297: without platform devices it aborts and
# the demos hang). The result lives in a cache folder outside the repository, keyed by
# the archives' hashes and this recipe; nothing of it is committed.
#
# Usage: tools/openamp/build-demos.sh       prints the install prefix (bin/, lib/) when done
# Env:   AMPLINK_PEERS          folder with the pinned archives
#        AMPLINK_OPENAMP_CACHE  cache folder (default: ~/.cache/amplink-openamp)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${AMPLINK_OPENAMP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/amplink-openamp}"
PEERS="${AMPLINK_PEERS:-$REPO/../shared/peers}"
PACKAGES=(cmake gcc make libc6-dev libsysfs-dev)
RECIPE=1  # bump when the build steps below change

# archive  sha256  upstream URL
ARCHIVES=(
  "libmetal-bd97c9a.tar.gz 0fdd7c68704f334ffca9bcb930f5b8d77efd91e3525401b6980129a839dc5255 https://github.com/OpenAMP/libmetal/archive/bd97c9a28a236a3af41c424aa1eabaa38bd5831d.tar.gz"
  "open-amp-23d4c5d.tar.gz f6eb2197699395a40500438cc0c4d43ee0668c6ca51b7c5c08a3dfaf422d1716 https://github.com/OpenAMP/open-amp/archive/23d4c5d7a5c5dd08b74d4ba828243988592337cb.tar.gz"
  "openamp-system-reference-843ec10.tar.gz 01d6dafdbe662430602556082a569e30ef0c7f38842f5ee4d24b44b4137ba7c0 https://github.com/OpenAMP/openamp-system-reference/archive/843ec100a54e73429694dbcfe7d91640f6378402.tar.gz"
)

log() { printf 'build-demos: %s\n' "$*" >&2; }


recipe_hash() {
    { for a in "${ARCHIVES[@]}"; do echo "$a"; done; echo "$RECIPE"; } | sha256sum | cut -c1-16
}

# fetch NAME SHA URL DEST: the archive from the peers folder or upstream, checked.
fetch() {
    local name=$1 sha=$2 url=$3 dest=$4
    if [ -f "$PEERS/$name" ]; then
        cp "$PEERS/$name" "$dest"
    else
        command -v curl >/dev/null || install_packages curl ca-certificates
        log "downloading $url"
        curl -fsSL --retry 2 -o "$dest" "$url"
    fi
    if ! echo "$sha  $dest" | sha256sum -c --status; then
        log "$name does not match its pinned sha256 $sha; refusing to build it"
        exit 1
    fi
}

unpack() {  # unpack ARCHIVE DIR: the archive's single top folder becomes DIR
    mkdir -p "$2"
    tar -xzf "$1" -C "$2" --strip-components=1
}

# shellcheck source=../lib/apt.sh
source "$(dirname "$0")/../lib/apt.sh"
install_packages "${PACKAGES[@]}"
HASH="$(recipe_hash)"
OUT="$CACHE/$HASH"
if [ -x "$OUT/bin/rpmsg-echo-shared" ]; then
    echo "$OUT"
    exit 0
fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ -x "$OUT/bin/rpmsg-echo-shared" ]; then  # built by a concurrent run while this one waited
    echo "$OUT"
    exit 0
fi

WORK="$CACHE/work-$HASH"
rm -rf "$WORK" "$OUT.partial"
mkdir -p "$WORK"
for a in "${ARCHIVES[@]}"; do
    read -r name sha url <<<"$a"
    fetch "$name" "$sha" "$url" "$WORK/$name"
done
unpack "$WORK/libmetal-bd97c9a.tar.gz" "$WORK/libmetal"
unpack "$WORK/open-amp-23d4c5d.tar.gz" "$WORK/open-amp"
unpack "$WORK/openamp-system-reference-843ec10.tar.gz" "$WORK/system-reference"

# The build copy's one change: a failed platform-bus scan is logged, not fatal.
INIT="$WORK/libmetal/lib/system/linux/init.c"
perl -0pi -e 's/(result = metal_linux_bus_init\(\);\n\tif \(result < 0\))\n\t\treturn result;/$1\n\t\tmetal_log(METAL_LOG_WARNING, "no platform bus (non-fatal in amplink'"'"'s build)\\n");/' "$INIT"
grep -q "non-fatal in amplink" "$INIT" || { log "could not patch $INIT"; exit 1; }

PREFIX="$OUT.partial"
JOBS="$(nproc)"
CMAKE=(cmake -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PREFIX" -Wno-dev)
log "building libmetal"
"${CMAKE[@]}" -S "$WORK/libmetal" -B "$WORK/build-libmetal" -DWITH_DOC=OFF -DWITH_TESTS=OFF \
    -DWITH_EXAMPLES=OFF >"$WORK/libmetal.log" 2>&1
make -C "$WORK/build-libmetal" -j"$JOBS" install >>"$WORK/libmetal.log" 2>&1 \
    || { tail -30 "$WORK/libmetal.log" >&2; exit 1; }
log "building open-amp"
"${CMAKE[@]}" -S "$WORK/open-amp" -B "$WORK/build-open-amp" -DWITH_DOC=OFF \
    -DCMAKE_INCLUDE_PATH="$PREFIX/include" -DCMAKE_LIBRARY_PATH="$PREFIX/lib" \
    >"$WORK/open-amp.log" 2>&1
make -C "$WORK/build-open-amp" -j"$JOBS" install >>"$WORK/open-amp.log" 2>&1 \
    || { tail -30 "$WORK/open-amp.log" >&2; exit 1; }
# The echo and matrix demos build one role per configuration: the remotes (virtio
# device) by default, the hosts (virtio driver: rpmsg-echo-ping, matrix_multiply) with
# the device role off. The nocopy and sample pairs come with both.
for role in device driver; do
    log "building the legacy demo applications ($role role)"
    flags=(-DWITH_APPS=ON -DWITH_PROXY=OFF)
    [ "$role" = driver ] && flags+=(-DWITH_VIRTIO_DEVICE=OFF)
    "${CMAKE[@]}" -S "$WORK/system-reference/examples/legacy_apps" -B "$WORK/build-apps-$role" \
        "${flags[@]}" -DCMAKE_INCLUDE_PATH="$PREFIX/include" -DCMAKE_LIBRARY_PATH="$PREFIX/lib" \
        >"$WORK/apps-$role.log" 2>&1
    make -C "$WORK/build-apps-$role" -j"$JOBS" install >>"$WORK/apps-$role.log" 2>&1 \
        || { tail -30 "$WORK/apps-$role.log" >&2; exit 1; }
done
for app in rpmsg-echo rpmsg-echo-ping rpmsg-nocopy-echo rpmsg-nocopy-ping rpmsg-sample-ping \
    matrix_multiplyd matrix_multiply; do
    [ -x "$PREFIX/bin/$app-shared" ] || { log "$app was not built (see $WORK/apps-*.log)"; exit 1; }
done
mv "$PREFIX" "$OUT"
rm -rf "$WORK"
echo "$OUT"
