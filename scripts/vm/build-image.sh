#!/bin/sh
# Build the test VM's disk image: a Debian bookworm guest with the production layout.
#
#   scripts/vm/build-image.sh OUT_DIR [DEB_CACHE_DIR]
#
# Why a VM at all: production hosts run systemd as pid 1 on a pure cgroup v2 hierarchy
# (every controller in /sys/fs/cgroup), while the machines this project is built on are
# hybrid and have no systemd. Neither a container nor a chroot can give yacr that layout:
# it needs its own kernel boot. So `make test-vm` boots this image under QEMU and runs
# the v2/systemd part of the suite in it (scripts/vm/vm.py drives it all).
#
# Why it is made this way:
# - Only Debian's packages, from the host's own apt mirror: debootstrap --variant=minbase
#   plus the list in scripts/vm/packages.txt. Nothing is downloaded from anywhere else,
#   and the guest runs the same Python (Debian's 3.11) as the host, so the project's
#   .venv, shared into the guest at the same path, works there unchanged.
# - The kernel is Debian's linux-image-amd64 (6.1): QEMU boots its vmlinuz and initrd
#   directly (-kernel/-initrd), so the image needs no partition table and no bootloader.
# - The root filesystem is an ext4 image made by `mkfs.ext4 -d` from the debootstrap
#   tree: no loop devices or mounts on the host, and the file stays sparse.
# - vm.py calls this only when the image's cache key (a hash of packages.txt, this script
#   and the guest agent) has no finished image under build/vm/; the result is built in
#   OUT_DIR.tmp and renamed to OUT_DIR at the very end, so an interrupted build never
#   looks finished.
# - Guest configuration, all of it here so it is part of the cache key: hostname, fstab,
#   multi-user as default target, cgroup v2 only (checked at boot by vm.py), no network,
#   the 9p/virtio modules, timers that would only steal CPU from the tests masked, and
#   two units of ours: yacr-project.service mounts the host's repository (virtio-9p) at
#   the path the host has it (given on the kernel command line), and yacr-agent.service
#   runs scripts/vm/agent.py, which executes the host's commands (see that file).
set -eu

out=${1:?usage: build-image.sh OUT_DIR [DEB_CACHE_DIR]}
debs=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
mirror=${YACR_VM_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
# sparse: only the blocks the guest's files use take host disk (about 1 GB); the rest
# is room for what the tests write inside the guest (the image is opened snapshot=on, so
# those writes never reach this file)
size=${YACR_VM_IMAGE_SIZE:-8G}

tmp="$out.tmp"
root="$tmp/root"
rm -rf "$tmp"
mkdir -p "$root"

# the package list: comments and blank lines out, comma-separated for debootstrap
pkgs=$(sed -e 's/#.*//' "$here/packages.txt" | tr -s ' \t\n' '\n' | grep -v '^$' | paste -sd, -)

echo "debootstrap $suite from $mirror (minbase + $(echo "$pkgs" | tr ',' '\n' | wc -l) packages)"
set -- --variant=minbase --components=main --include="$pkgs"
if [ -n "$debs" ]; then
    # keep the downloaded .debs: a rebuild after a package-list change fetches only the
    # new ones
    mkdir -p "$debs"
    set -- "$@" --cache-dir="$(cd "$debs" && pwd)"
fi
if ! debootstrap "$@" "$suite" "$root" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
    tail -n 30 "$tmp/debootstrap.log" >&2
    [ -f "$root/debootstrap/debootstrap.log" ] && tail -n 30 "$root/debootstrap/debootstrap.log" >&2
    echo "debootstrap failed: full log in $tmp/debootstrap.log" >&2
    exit 1
fi

# ---------------------------------------------------------------- guest configuration
echo yacr-vm >"$root/etc/hostname"
cat >"$root/etc/hosts" <<'EOF'
127.0.0.1 localhost
127.0.1.1 yacr-vm
::1 localhost ip6-localhost ip6-loopback
EOF

# The root disk is /dev/vda (virtio-blk), mounted rw by the initramfs (root=/dev/vda rw):
# no fsck, since QEMU opens the image snapshot=on and it never changes after this build.
# The project share is not in fstab: its mount point is the host's path, known only at
# boot (yacr-project.service below).
cat >"$root/etc/fstab" <<'EOF'
/dev/vda  /  ext4  rw,noatime,errors=remount-ro  0  0
EOF

# systemd 252 boots pure cgroup v2 by default; vm.py also puts
# systemd.unified_cgroup_hierarchy=1 on the command line and checks the result.
ln -sf /lib/systemd/system/multi-user.target "$root/etc/systemd/system/default.target"

# virtio-9p for the project share, virtio_console for the agent's virtio-serial port.
# udev would load virtio_console by modalias anyway; 9p is loaded on first mount. Listed
# so that a missing module fails loudly at boot (systemd-modules-load) rather than later.
cat >"$root/etc/modules-load.d/yacr-vm.conf" <<'EOF'
9p
9pnet_virtio
virtio_console
EOF

# The journal in memory only: the disk is a throwaway snapshot and TCG makes I/O slow.
mkdir -p "$root/etc/systemd/journald.conf.d"
cat >"$root/etc/systemd/journald.conf.d/yacr-vm.conf" <<'EOF'
[Journal]
Storage=volatile
EOF

# Background jobs that would compete with the tests for the emulated CPUs. containerd is
# disabled, not masked: the tests start their own daemons, and may start the system one.
for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
        e2scrub_all.timer e2scrub_reap.service fstrim.timer logrotate.timer \
        podman-auto-update.timer podman-auto-update.service podman-restart.service \
        systemd-tmpfiles-clean.timer; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
chroot "$root" systemctl disable containerd.service >/dev/null 2>&1 || true

# yacr-project.service: mount the host's repository at the host's path (virtio-9p tag
# "project"), and a guest-local directory over its build/ so that what the guest's tests
# write there (rootfs trees, bundles, results) cannot collide with a `make test` running
# on the host at the same time.
cat >"$root/usr/local/sbin/yacr-mount-project" <<'EOF'
#!/bin/sh
# Mount the host's project at the path given as yacr.project=PATH on the kernel command
# line, with 9p cache mode yacr.9p_cache= (default loose; see scripts/vm/vm.py).
set -eu
path="" cache=loose
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        yacr.project=*) path=${arg#yacr.project=} ;;
        yacr.9p_cache=*) cache=${arg#yacr.9p_cache=} ;;
    esac
done
if [ -z "$path" ]; then
    echo "no yacr.project= on the kernel command line: no project shared"
    exit 0
fi
mkdir -p "$path"
mountpoint -q "$path" || mount -t 9p \
    -o "trans=virtio,version=9p2000.L,msize=512000,cache=$cache" project "$path"
mkdir -p /var/lib/yacr-vm/build
if [ -d "$path/build" ] && ! mountpoint -q "$path/build"; then
    mount --bind /var/lib/yacr-vm/build "$path/build"
fi
echo "$path" >/run/yacr-project
echo "project mounted at $path (9p, cache=$cache), build/ is guest-local"
EOF
chmod 755 "$root/usr/local/sbin/yacr-mount-project"

cat >"$root/etc/systemd/system/yacr-project.service" <<'EOF'
[Unit]
Description=Mount the host's project (virtio-9p) at the host's path
After=local-fs.target systemd-modules-load.service
Before=yacr-agent.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/yacr-mount-project

[Install]
WantedBy=multi-user.target
EOF

# yacr-agent.service: the command channel (scripts/vm/agent.py). It runs as root, like
# the tests; limits are lifted so that the tests see what a root shell would.
mkdir -p "$root/usr/local/lib/yacr-vm"
install -m 644 "$here/agent.py" "$root/usr/local/lib/yacr-vm/agent.py"
cat >"$root/etc/systemd/system/yacr-agent.service" <<'EOF'
[Unit]
Description=yacr test VM agent: runs the host's commands (virtio-serial port yacr.agent)
After=yacr-project.service
Wants=yacr-project.service

[Service]
ExecStart=/usr/bin/python3 -u /usr/local/lib/yacr-vm/agent.py
Restart=always
RestartSec=1
TasksMax=infinity
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity

[Install]
WantedBy=multi-user.target
EOF
for unit in yacr-project.service yacr-agent.service; do
    ln -sf "/etc/systemd/system/$unit" "$root/etc/systemd/system/multi-user.target.wants/$unit"
done

# ---------------------------------------------------------------- kernel and checks
kver=$(ls "$root/lib/modules" | sort -V | tail -n 1)
[ -n "$kver" ] || { echo "no kernel in the guest (linux-image-amd64)" >&2; exit 1; }
# A small initrd: only what finds and mounts the root disk (virtio-blk, ext4). Debian's
# default (MODULES=most) is 36 MB, and unpacking and probing it costs ~3 s of every boot
# under emulation; everything else loads from the root disk, as usual.
sed -i 's/^MODULES=.*/MODULES=list/' "$root/etc/initramfs-tools/initramfs.conf"
printf '%s\n' virtio_pci virtio_blk ext4 crc32c_generic >>"$root/etc/initramfs-tools/modules"
if ! chroot "$root" update-initramfs -u -k "$kver" >"$tmp/update-initramfs.log" 2>&1; then
    cat "$tmp/update-initramfs.log" >&2
    exit 1
fi
for m in 9p 9pnet_virtio virtio_console; do
    if ! find "$root/lib/modules/$kver" -name "$m.ko*" | grep -q .; then
        echo "guest kernel $kver has no $m module" >&2
        exit 1
    fi
done
# the initrd must find the root disk by itself: virtio_blk and ext4 (checked because
# the boot would only hang otherwise)
if ! chroot "$root" lsinitramfs "/boot/initrd.img-$kver" >"$tmp/initrd.list"; then
    echo "cannot list the guest's initrd" >&2
    exit 1
fi
for m in virtio_blk virtio_pci ext4; do
    grep -q "/$m.ko" "$tmp/initrd.list" || { echo "initrd has no $m" >&2; exit 1; }
done
cp "$root/boot/vmlinuz-$kver" "$tmp/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$tmp/initrd.img"
echo "$kver" >"$tmp/kernel-version"
chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' >"$tmp/manifest.txt"

# ---------------------------------------------------------------- the ext4 image
# apt's downloaded .debs are not needed in the guest
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*_Packages
truncate -s "$size" "$tmp/rootfs.ext4"
mkfs.ext4 -q -F -L yacr-vm -d "$root" "$tmp/rootfs.ext4"
rm -rf "$root"

rm -rf "$out"
mv "$tmp" "$out"
echo "image ready: $out (kernel $kver, $(du -sh "$out/rootfs.ext4" | cut -f1) used on disk)"
