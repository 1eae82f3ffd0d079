"""User namespaces: writing a process's id maps, as root or through newuidmap/newgidmap.

Root writes /proc/<pid>/uid_map and gid_map itself, any ranges. An unprivileged runtime
(rootless) may write only a map of its own ids, after denying setgroups; anything more
goes through the setuid helpers of the uidmap package, which check /etc/subuid and
/etc/subgid.
"""

from __future__ import annotations

import posix

from yacr import fs
from yacr.errors import YacrError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from yacr.spec import IDMap


def write_maps(pid: int, uids: list[IDMap], gids: list[IDMap]) -> None:
    if posix.geteuid() == 0:
        _write(pid, "gid_map", gids, "linux.gidMappings")
        _write(pid, "uid_map", uids, "linux.uidMappings")
        return
    me_u, me_g = posix.geteuid(), posix.getegid()
    if _only_self(uids, me_u) and _only_self(gids, me_g):
        # The one map an unprivileged process may write, once setgroups is denied.
        fs.write_file(f"/proc/{pid}/setgroups", "deny")
        _write(pid, "gid_map", gids, "linux.gidMappings")
        _write(pid, "uid_map", uids, "linux.uidMappings")
        return
    _helper("newgidmap", pid, gids, "linux.gidMappings")
    _helper("newuidmap", pid, uids, "linux.uidMappings")


def _only_self(maps: list[IDMap], me: int) -> bool:
    return len(maps) == 1 and maps[0].size == 1 and maps[0].host_id == me


def _write(pid: int, name: str, maps: list[IDMap], field: str) -> None:
    try:
        fs.write_file(f"/proc/{pid}/{name}", "".join(m.line() for m in maps))
    except OSError as e:
        raise YacrError(f"{field}: the kernel refused the map: {e.strerror}") from None


def _helper(tool: str, pid: int, maps: list[IDMap], field: str) -> None:
    """newuidmap PID ID HOSTID COUNT... (setuid root, checks /etc/subuid)."""
    import subprocess

    args = [tool, str(pid)]
    for m in maps:
        args += [str(m.container_id), str(m.host_id), str(m.size)]
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise YacrError(f"{field}: {tool} is needed to map these ids without root "
                        "(apt-get install uidmap)") from None
    if p.returncode != 0:
        raise YacrError(f"{field}: {tool} refused the map: {p.stderr.strip()}")
