#!/bin/sh
# Install the Debian packages yacr's demo, tests and benchmarks need, if any is missing.
# Idempotent and quiet when everything is there: `make` calls it every time.
set -eu
PKGS="gcc libc6-dev uidmap busybox-static runc crun hyperfine containerd podman libseccomp2 strace iproute2 util-linux procps"
# gVisor (runsc), a peer of runc and crun in `yacr bench` and in `yacr seccomp surface`
PKGS="$PKGS runsc"
# wasm: the toolchain that builds yacr's sample and benchmark modules from C
PKGS="$PKGS clang lld wasi-libc libclang-rt-14-dev-wasm32"
# `install-deps.sh vm` (make test-vm): what builds and boots the pure-cgroup-v2 test VM
# (scripts/vm/): QEMU, debootstrap for the guest's root filesystem, mkfs.ext4 -d for its
# image. Only on request: `make test` and `make demo` do not need a hypervisor.
if [ "${1:-}" = vm ]; then
    PKGS="$PKGS qemu-system-x86 debootstrap e2fsprogs debian-archive-keyring"
fi
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
