"""Build OCI bundles from the host's busybox-static, offline: for the demo, tests and benchmarks.

A rootfs is busybox plus one symlink per applet, a minimal /etc, and the
usual empty mount points. Bundles are cheap to make, so every test gets its
own config.json, and those that write into the rootfs get their own copy.
"""

from __future__ import annotations

import os
import shutil

from yacr import jsonio
from yacr.errors import YacrError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
tester:x:1000:1000:tester:/home/tester:/bin/sh
"""
GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
tty:x:5:
users:x:100:tester
nogroup:x:65534:
tester:x:1000:
"""


def find_busybox() -> str:
    for p in BUSYBOX_CANDIDATES:
        if os.path.exists(p):
            return p
    raise YacrError("busybox is not installed (apt-get install busybox-static)")


def build_rootfs(dest: str, busybox: str | None = None) -> str:
    """Make (or refresh) a busybox rootfs at dest; returns dest."""
    bb = busybox or find_busybox()
    for d in ("bin", "dev", "etc", "proc", "sys", "tmp", "root", "home/tester", "var/run",
              "usr/bin", "sbin"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    target = os.path.join(dest, "bin", "busybox")
    if not os.path.exists(target):
        shutil.copy2(bb, target)
    import subprocess

    applets = subprocess.run([bb, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        if a == "busybox":
            continue
        link = os.path.join(dest, "bin", a)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    for name, text in (("passwd", PASSWD), ("group", GROUP), ("hostname", "yacr\n")):
        with open(os.path.join(dest, "etc", name), "w") as f:
            f.write(text)
    return dest


def write_config(bundle: str, spec: dict[str, Any]) -> str:
    os.makedirs(bundle, exist_ok=True)
    path = os.path.join(bundle, "config.json")
    with open(path, "w") as f:
        f.write(jsonio.dumps(spec, indent=2) + "\n")
    return path


def busybox_spec(rootfs: str, args: list[str], *, terminal: bool = False,
                 readonly: bool = True, cgroupns: bool = True,
                 seccomp: bool = True) -> dict[str, Any]:
    """`yacr spec --seccomp`'s config with a cgroup namespace (what containerd and podman
    hand a runtime), pointed at rootfs and running args."""
    from yacr.specgen import default_spec

    spec = default_spec(seccomp=seccomp, cgroupns=cgroupns)
    spec["root"] = {"path": rootfs, "readonly": readonly}
    spec["process"]["args"] = args
    spec["process"]["terminal"] = terminal
    return spec


def make_bundle(bundle: str, rootfs: str, args: list[str], **kw: Any) -> dict[str, Any]:
    spec = busybox_spec(rootfs, args, **kw)
    write_config(bundle, spec)
    return spec
