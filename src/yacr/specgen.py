"""`yacr spec`: runc's default config.json, for a busybox-style rootfs.

Scripts, tests (runc's own suite among them) and people edit what `runc spec` writes
and expect it field for field: the same namespaces (a cgroup namespace only on pure
cgroup v2 hosts), capabilities
(ambient included), mounts and paths, and no seccomp profile. yacr departs from it only
in its name (the hostname) and the runtime-spec version it implements, and masks one
more path (/sys/devices/virtual/powercap: RAPL energy counters leak what other
containers compute, CVE-2020-8694). `--seccomp` adds yacr's default profile (Docker's
style; see linux/seccomp_default.py), which containerd, podman and Kubernetes would
otherwise supply.
"""

from __future__ import annotations

import os

from yacr import OCI_VERSION, jsonio
from yacr.errors import YacrError
from yacr.linux.seccomp_default import default_profile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
          "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
          "/proc/scsi", "/sys/devices/virtual/powercap"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def default_spec(rootless: bool = False, seccomp: bool = False,
                 cgroupns: bool = False) -> dict[str, Any]:
    """runc's template; with seccomp, yacr's default profile; with cgroupns, a cgroup
    namespace too (what the project's own tests and benchmarks run)."""
    caps = list(DEFAULT_CAPS)
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted",
                                                     "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "yacr",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": list(MASKED),
            "readonlyPaths": list(READONLY),
        },
    }
    lx = spec["linux"]
    if seccomp:
        lx["seccomp"] = default_profile(caps)
    if cgroupns:
        lx["namespaces"].append({"type": "cgroup"})
    if rootless:
        uid, gid = os.getuid(), os.getgid()
        lx["namespaces"] = [{"type": t} for t in ("pid", "ipc", "uts", "mount")] + \
            ([{"type": "cgroup"}] if cgroupns else []) + [{"type": "user"}]
        lx["uidMappings"] = _rootless_maps(uid, "/etc/subuid")
        lx["gidMappings"] = _rootless_maps(gid, "/etc/subgid")
        lx.pop("resources")
        for m in spec["mounts"]:
            if m["destination"] == "/dev/pts":
                m["options"] = [o for o in m["options"] if o != "gid=5"]
            if m["destination"] == "/sys":
                m.update({"type": "none", "source": "/sys",
                          "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})
        spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/sys/fs/cgroup"]
    return spec


def _rootless_maps(own: int, subids: str) -> list[dict[str, int]]:
    """Container root is the user; with a range in /etc/subuid (subgid), ids 1.. map there
    too (through newuidmap/newgidmap), as podman does."""
    maps = [{"containerID": 0, "hostID": own, "size": 1}]
    import pwd

    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        name = ""
    try:
        with open(subids) as f:
            for line in f:
                who, _, rest = line.strip().partition(":")
                if who in (name, str(os.getuid())):
                    start, _, count = rest.partition(":")
                    maps.append({"containerID": 1, "hostID": int(start), "size": int(count)})
                    break
    except (OSError, ValueError):
        pass
    return maps


def unified_host() -> bool:
    """Whether /sys/fs/cgroup is a cgroup2 mount (a pure v2 host): there runc's template
    has a cgroup namespace too, so yacr's does."""
    from yacr.linux import sys as S

    try:
        fd = os.open("/sys/fs/cgroup", os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return S.fstatfs_type(fd) == 0x63677270  # CGROUP2_SUPER_MAGIC
    finally:
        os.close(fd)


def write_spec(bundle: str, rootless: bool = False, seccomp: bool = False) -> None:
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise YacrError(f"{path} exists; remove it first")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise YacrError(f"cannot write {path}: {e.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(jsonio.dumps(default_spec(rootless, seccomp, unified_host()), indent=2)
                + "\n")
