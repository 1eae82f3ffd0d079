#!/bin/sh
# Install the Debian packages yacr's demo, tests and benchmarks need, if any is missing.
# Idempotent and quiet when everything is there: `make` calls it every time.
set -eu
PKGS="gcc libc6-dev uidmap busybox-static runc crun hyperfine containerd podman libseccomp2 strace iproute2 util-linux procps"
# wasm: the toolchain that builds yacr's sample and benchmark modules from C
PKGS="$PKGS clang lld wasi-libc libclang-rt-14-dev-wasm32"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends $missing >/dev/null
fi
