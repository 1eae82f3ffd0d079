"""Namespace types, and the fds of namespaces to join, checked before anything is changed."""

from __future__ import annotations

import posix

from yacr import fs
from yacr.errors import YacrError
from yacr.linux import sys as S

TYPE_CHECKING = False
if TYPE_CHECKING:
    from yacr.spec import Linux

FLAGS = {
    "pid": S.CLONE_NEWPID,
    "network": S.CLONE_NEWNET,
    "mount": S.CLONE_NEWNS,
    "ipc": S.CLONE_NEWIPC,
    "uts": S.CLONE_NEWUTS,
    "user": S.CLONE_NEWUSER,
    "cgroup": S.CLONE_NEWCGROUP,
    "time": S.CLONE_NEWTIME,
}
# /proc/<pid>/ns/<name> for each type.
PROC_NAMES = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
              "user": "user", "cgroup": "cgroup", "time": "time"}
# setns order when joining: the mount namespace last, since it changes how paths resolve.
JOIN_ORDER = ("user", "ipc", "uts", "network", "cgroup", "pid", "time", "mount")


class Plan:
    """What init must do with namespaces: flags to unshare, fds to join."""

    __slots__ = ("unshare", "join", "types")

    def __init__(self) -> None:
        self.unshare = 0
        self.join: dict[str, int] = {}
        self.types: set[str] = set()

    def close(self) -> None:
        for fd in self.join.values():
            try:
                posix.close(fd)
            except OSError:
                pass
        self.join.clear()


def plan(linux: Linux) -> Plan:
    p = Plan()
    try:
        for i, ns in enumerate(linux.namespaces):
            if ns.type == "time" and not fs.exists("/proc/self/ns/time"):
                raise YacrError(f"linux.namespaces[{i}]: this kernel has no time namespace")
            p.types.add(ns.type)
            if ns.path is None:
                p.unshare |= FLAGS[ns.type]
                continue
            try:
                fd = posix.open(ns.path, posix.O_RDONLY | posix.O_CLOEXEC)
            except OSError as e:
                raise YacrError(f"linux.namespaces[{i}].path: cannot open {ns.path}: "
                                f"{e.strerror}") from None
            p.join[ns.type] = fd
            try:
                kind = S.ns_type(fd)
            except OSError:
                raise YacrError(f"linux.namespaces[{i}].path: {ns.path} is not a namespace") \
                    from None
            if kind != FLAGS[ns.type]:
                raise YacrError(f"linux.namespaces[{i}].path: {ns.path} is not a {ns.type} "
                                "namespace")
        if linux.time_offsets and not (p.unshare & S.CLONE_NEWTIME):
            raise YacrError("linux.timeOffsets: requires a new time namespace")
    except BaseException:
        p.close()
        raise
    return p
