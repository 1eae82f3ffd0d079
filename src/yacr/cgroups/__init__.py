"""cgroups: find the host's layout once, and place a container in its cgroup.

A container's cgroup is a set of directories, one per mounted hierarchy: on
pure v2 a single one (key ""), on v1 one per controller hierarchy (keys are
the controllers, e.g. "memory", "cpu", "name=systemd"), and on hybrid hosts
the v1 ones plus the cgroup2 hierarchy (key "unified"). The set is stored in
the container's state, so kill, delete and status checks work on plain paths
without detecting the layout again.
"""

from __future__ import annotations

import posix
import time

from yacr import fs
from yacr.errors import YacrError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from yacr.cgroups.resources import Resources
    from yacr.log import Log
    from yacr.spec import Spec

CGROUP_ROOT = "/sys/fs/cgroup"
DEFAULT_PARENT = "/yacr"
V2_KEYS = ("", "unified")
"""The keys of a container's cgroup paths that name a cgroup2 cgroup: "" on a pure v2
host, "unified" for the cgroup2 hierarchy of a hybrid one; the others are v1 hierarchies."""


def cgroup2_dir(paths: dict[str, str]) -> str:
    """The cgroup2 cgroup among paths, or "" when they are all v1."""
    return paths.get("") or paths.get("unified") or ""


class Hierarchy:
    """One mounted cgroup hierarchy: its key, mount point, fs type and mount options."""

    __slots__ = ("key", "mountpoint", "root", "v2", "options")

    def __init__(self, key: str, mountpoint: str, root: str, v2: bool, options: str) -> None:
        self.key = key
        self.mountpoint = mountpoint
        self.root = root
        self.v2 = v2
        self.options = options


class Layout:
    """The host's cgroup layout: "v2", "v1" or "hybrid", with its hierarchies."""

    __slots__ = ("mode", "hierarchies")

    def __init__(self, mode: str, hierarchies: list[Hierarchy]) -> None:
        self.mode = mode
        self.hierarchies = hierarchies


def detect_layout(mountinfo: str = "/proc/self/mountinfo") -> Layout:
    hier: list[Hierarchy] = []
    unified_at: Hierarchy | None = None
    for line in fs.read_file(mountinfo).decode("utf-8", "surrogateescape").splitlines():
        if " - cgroup" not in line:
            continue
        pre, _, post = line.partition(" - ")
        fields = pre.split()
        fstype, _src, superopts = (post.split() + ["", ""])[:3]
        root, mnt = fields[3], fs.unescape_mountinfo(fields[4])
        if fstype == "cgroup2":
            h = Hierarchy("", mnt, root, True, superopts)
            if mnt == CGROUP_ROOT:
                return Layout("v2", [h])
            if mnt == CGROUP_ROOT + "/unified":
                unified_at = h
        elif fstype == "cgroup":
            ctrls = [o for o in superopts.split(",")
                     if o not in ("rw", "ro", "relatime", "noprefix", "clone_children",
                                  "xattr") and not o.startswith("release_agent")]
            key = ",".join(ctrls)
            if any(h.key == key for h in hier):
                continue  # the same hierarchy mounted twice
            hier.append(Hierarchy(key, mnt, root, False, superopts))
    if unified_at is not None:
        unified_at.key = "unified"
        return Layout("hybrid" if hier else "v2", hier + [unified_at])
    if not hier:
        return Layout("none", [])
    return Layout("v1", hier)


def own_cgroup(key: str, v2: bool) -> str:
    """This process's cgroup in one hierarchy, for cgroupsPath values relative to it."""
    for line in fs.read_file("/proc/self/cgroup").decode().splitlines():
        _hid, ctrls, path = line.split(":", 2)
        if v2 and ctrls == "":
            return path
        if not v2 and key and set(ctrls.split(",")) == set(key.split(",")):
            return path
    return "/"


def resolve_paths(layout: Layout, cgroups_path: str, cid_dir: str) -> dict[str, str]:
    """The directory of each hierarchy that cgroupsPath names.

    On hybrid hosts that includes the cgroup2 hierarchy, whatever the resources: tools
    read a container's cgroup from the `0::` line of /proc/PID/cgroup (runc joins it too).
    """
    if ":" in cgroups_path and not cgroups_path.startswith("/"):
        raise YacrError(f"linux.cgroupsPath: {cgroups_path!r} is a systemd path "
                        "(slice:prefix:name); use --systemd-cgroup")
    if ".." in cgroups_path.split("/"):
        raise YacrError(f"linux.cgroupsPath: {cgroups_path!r} must not contain '..'")
    out: dict[str, str] = {}
    for h in layout.hierarchies:
        if not cgroups_path:
            inner = f"{DEFAULT_PARENT}/{cid_dir}"
        elif cgroups_path.startswith("/"):
            inner = cgroups_path
        else:
            inner = fs.join(own_cgroup(h.key, h.v2), cgroups_path)
        inner = fs.normpath("/" + inner.strip("/"))
        if h.root not in ("/", "") and inner.startswith(h.root):
            inner = inner[len(h.root):] or "/"
        out[h.key] = fs.normpath(h.mountpoint + inner)
    return out


def missing(paths: dict[str, str]) -> list[str]:
    """The directories create() will make: recorded in the state first, so that a runtime
    killed half-way still leaves delete --force the list of what to remove."""
    out: list[str] = []
    for path in paths.values():
        p = path
        while p not in ("/", "") and not fs.isdir(p):
            out.append(p)
            p = fs.dirname(p)
    return out


def create(paths: dict[str, str], todo: list[str] | None = None) -> list[str]:
    """mkdir every level that is missing; returns what was made, for delete to remove.

    todo is what missing() found just before (parents after their children): the
    directories are then made without looking again."""
    made: list[str] = []
    if todo is None:
        for key, path in paths.items():
            _mkdirs(path, key, made)
        _fill_cpusets(paths)
        return made
    keys = {path: key for key, path in paths.items()}
    for path in reversed(todo):
        try:
            posix.mkdir(path, 0o755)
        except FileExistsError:
            continue
        except FileNotFoundError:
            # a parent vanished meanwhile (another container's delete): make the chain
            _mkdirs(path, keys.get(path, _key_of(path, paths)), made)
            continue
        except OSError as e:
            raise YacrError(f"cannot create cgroup {path}: {e.strerror}") from None
        made.append(path)
        key = keys.get(path) or _key_of(path, paths)
        if "cpuset" in key.split(","):
            _clone_children(path)
    _fill_cpusets(paths)
    return made


def _key_of(path: str, paths: dict[str, str]) -> str:
    for key, leaf in paths.items():
        if leaf.startswith(path + "/") or leaf == path:
            return key
    return ""


def _mkdirs(path: str, key: str, made: list[str]) -> None:
    if fs.isdir(path):
        return
    parent = fs.dirname(path)
    _mkdirs(parent, key, made)
    try:
        posix.mkdir(path, 0o755)
    except FileExistsError:
        return
    except OSError as e:
        raise YacrError(f"cannot create cgroup {path}: {e.strerror}") from None
    made.append(path)
    if "cpuset" in key.split(","):
        _clone_children(path)


def _clone_children(path: str) -> None:
    """Set cgroup.clone_children on a cpuset yacr made: the kernel then copies its
    cpuset.cpus and cpuset.mems into every cgroup made under it later (the containers under
    yacr's own parent), so those start usable without a copy of ours."""
    try:
        fs.write_file(fs.join(path, "cgroup.clone_children"), b"1")
    except OSError as e:
        raise YacrError(f"cannot initialise cpuset {path}: {e.strerror}") from None


def _fill_cpusets(paths: dict[str, str]) -> None:
    for key, path in paths.items():
        if "cpuset" in key.split(","):
            fill_cpuset(path)


def fill_cpuset(path: str) -> None:
    """Make a v1 cpuset usable: no task can join a cpuset whose cpuset.cpus or cpuset.mems
    is empty (ENOSPC), and a new cgroup starts empty unless its parent has clone_children.

    Every empty level, from the highest one down to path, gets the values of the nearest
    ancestor that has them, as runc does (a parent that was made empty by someone else, a
    Kubernetes pod's cgroup made with mkdir -p, is filled too). A level that has one of
    the two keeps it and hands it down. A cpuset's CPUs are a subset of its parent's, so
    the walk up stops at the first level that has both (usually path itself: two reads).
    """
    empty: list[tuple[str, bytes, bytes]] = []
    d = path
    try:
        while True:
            cpus = fs.read_file(fs.join(d, "cpuset.cpus")).strip()
            mems = fs.read_file(fs.join(d, "cpuset.mems")).strip()
            if cpus and mems:
                break
            empty.append((d, cpus, mems))
            parent = fs.dirname(d)
            if parent == d:
                raise YacrError(f"cannot initialise cpuset {path}: no ancestor has "
                                "cpuset.cpus and cpuset.mems")
            d = parent
        for d, own_cpus, own_mems in reversed(empty):
            if own_cpus:
                cpus = own_cpus
            else:
                fs.write_file(fs.join(d, "cpuset.cpus"), cpus)
            if own_mems:
                mems = own_mems
            else:
                fs.write_file(fs.join(d, "cpuset.mems"), mems)
    except OSError as e:
        raise YacrError(f"cannot initialise cpuset {d}: {e.strerror}") from None


def fork_in(paths: dict[str, str]) -> tuple[int, bool]:
    """posix.fork, the child born in the cgroup2 part of paths when there is one (see
    linux.sys.fork_into_cgroup: it spares the kernel's RCU grace period of a move, 7-25
    ms per container start). Returns (pid, born there); when the kernel refuses, it is a
    plain fork and the child joins as usual."""
    v2 = cgroup2_dir(paths)
    if v2:
        from yacr.linux import sys as S

        try:
            return S.fork_into_cgroup(v2), True
        except OSError:
            pass  # an old kernel, or a cgroup that takes no processes (EBUSY)
    return posix.fork(), False


def without_cgroup2(paths: dict[str, str]) -> dict[str, str]:
    """The v1 part of paths: what a child born in the cgroup2 one still has to join."""
    return {k: p for k, p in paths.items() if k not in V2_KEYS}


def join_self(paths: dict[str, str]) -> None:
    """Move the calling (single-threaded) process into the container's cgroup.

    On v1 hierarchies it writes "0" to `tasks`: the kernel moves the caller alone without
    taking the global threadgroup lock, which saves an RCU grace period per start.
    cgroup2 has no such path, so there it writes "0" to cgroup.procs.
    """
    for key, path in paths.items():
        target = fs.join(path, "cgroup.procs" if key in V2_KEYS else "tasks")
        try:
            _write_self(target)
        except OSError as e:
            raise YacrError(f"cannot join cgroup {path}: {e.strerror}") from None


def join_exec(paths: dict[str, str], init_pid: int) -> None:
    """Move the calling (single-threaded) exec'd process into paths, as join_self does.

    A cgroup2 cgroup that enables a domain controller for its children takes no process
    itself (EBUSY): that is the container's own cgroup once its init moved to a sub-cgroup
    and enabled, say, memory there. Then, as runc does, the process joins the cgroup2
    cgroup init is in, provided it lies inside the container's. yacr does this on the
    cgroup2 hierarchy of hybrid hosts too (runc only on pure v2 ones). init_pid 0 turns
    the fallback off: `exec --cgroup PATH` asked for one place and gets that or an error.
    Runs on the host's /proc and before the container's cgroup namespace is entered.
    """
    for key, path in paths.items():
        v2 = key in V2_KEYS
        target = fs.join(path, "cgroup.procs" if v2 else "tasks")
        try:
            _write_self(target)
            continue
        except OSError as e:
            err = e
        if v2 and err.errno == 16 and init_pid:  # EBUSY
            alt = _init_cgroup2_dir(key, path, init_pid)
            if alt:
                target = fs.join(alt, "cgroup.procs")
                try:
                    _write_self(target)
                    continue
                except OSError as e:
                    err = e
        hint = " (its cpuset.cpus or cpuset.mems is empty)" if err.errno == 28 else ""
        raise YacrError(f"cannot join cgroup {path}: error adding pid {_host_pid()} to "
                        f"cgroups: {target}: {(err.strerror or str(err)).lower()}{hint}"
                        ) from None


def _write_self(target: str) -> None:
    fd = posix.open(target, posix.O_WRONLY | posix.O_CLOEXEC)
    try:
        posix.write(fd, b"0")
    finally:
        posix.close(fd)


def _init_cgroup2_dir(key: str, container: str, init_pid: int) -> str | None:
    """The directory of init's cgroup2 cgroup, when it is the container's or below it."""
    mount = CGROUP_ROOT if key == "" else CGROUP_ROOT + "/unified"
    try:
        text = fs.read_file(f"/proc/{init_pid}/cgroup").decode("utf-8", "surrogateescape")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("0::"):
            d = fs.normpath(mount + "/" + line[3:])
            if d == container or d.startswith(container.rstrip("/") + "/"):
                return d
    return None


def _host_pid() -> str:
    """The caller's pid as the host sees it (the exec'd process is already a member of the
    container's pid namespace, where getpid() answers another number)."""
    try:
        return posix.readlink("/proc/self")
    except OSError:
        return str(posix.getpid())


def add_pid(paths: dict[str, str], pid: int) -> None:
    data = str(pid).encode()
    for path in paths.values():
        try:
            fd = posix.open(fs.join(path, "cgroup.procs"), posix.O_WRONLY | posix.O_CLOEXEC)
            try:
                posix.write(fd, data)
            finally:
                posix.close(fd)
        except OSError as e:
            raise YacrError(f"cannot join cgroup {path}: {e.strerror}") from None


def pids(paths: dict[str, str]) -> list[int]:
    """Every process in the container's cgroup, in any hierarchy."""
    seen: set[int] = set()
    for path in paths.values():
        try:
            seen.update(int(x) for x in fs.read_file(fs.join(path, "cgroup.procs")).split())
        except (OSError, ValueError):
            continue
    return sorted(seen)


def signal_all(paths: dict[str, str], sig: int) -> None:
    """Send sig to every process in the cgroup.

    SIGKILL goes through cgroup2's cgroup.kill where the kernel has it (5.14+): it kills
    the whole subtree at once, processes forking at that moment and frozen ones included.
    Otherwise the cgroup is frozen while each process is signalled, so nothing forks past
    the loop."""
    if sig == 9:
        v2 = cgroup2_dir(paths)
        if v2:
            try:
                _write(fs.join(v2, "cgroup.kill"), "1")
                return
            except YacrError:
                pass  # no cgroup.kill (an older kernel, or a v1 path): one by one
    frozen = freeze(paths, True) if sig == 9 else False
    try:
        for pid in pids(paths):
            try:
                posix.kill(pid, sig)
            except ProcessLookupError:
                pass
    finally:
        if frozen:
            freeze(paths, False)


def freeze(paths: dict[str, str], frozen: bool) -> bool:
    """Freeze or thaw the cgroup (v1 freezer or v2 cgroup.freeze); False if there is neither."""
    fz = paths.get("freezer")
    if fz:
        target = "FROZEN" if frozen else "THAWED"
        _write(fs.join(fz, "freezer.state"), target)
        if frozen:
            for _ in range(1000):
                if fs.read_file(fs.join(fz, "freezer.state")).strip() == b"FROZEN":
                    break
                time.sleep(0.001)
        return True
    v2 = paths.get("") or None
    if v2 is None and "freezer" not in paths and "unified" in paths:
        v2 = paths["unified"] if fs.exists(fs.join(paths["unified"],
                                                             "cgroup.freeze")) else None
    if v2:
        try:
            _write(fs.join(v2, "cgroup.freeze"), "1" if frozen else "0")
        except YacrError:
            return False
        if frozen:
            # cgroup.freeze only asks; cgroup.events says "frozen 1" once every task stopped.
            for _ in range(1000):
                try:
                    if b"frozen 1" in fs.read_file(fs.join(v2, "cgroup.events")):
                        break
                except OSError:
                    break
                time.sleep(0.001)
        return True
    return False


def is_frozen(paths: dict[str, str]) -> bool:
    fz = paths.get("freezer")
    try:
        if fz:
            return fs.read_file(fs.join(fz, "freezer.state")).strip() == b"FROZEN"
        v2 = paths.get("")
        if v2:
            return fs.read_file(fs.join(v2, "cgroup.freeze")).strip() == b"1"
    except OSError:
        return False
    return False


def frozen_now(paths: dict[str, str]) -> bool:
    """Whether a process joining these cgroups would stop at once: frozen or freezing by
    itself or through an ancestor (v1 freezer.state is not THAWED; v2 cgroup.events says
    frozen, or cgroup.freeze asks for it)."""
    fz = paths.get("freezer")
    try:
        if fz:
            return fs.read_file(fs.join(fz, "freezer.state")).strip() != b"THAWED"
        v2 = paths.get("") or ("" if "freezer" in paths else paths.get("unified", ""))
        if v2:
            return b"frozen 1" in fs.read_file(fs.join(v2, "cgroup.events")) or \
                fs.read_file(fs.join(v2, "cgroup.freeze")).strip() == b"1"
    except OSError:
        return False
    return False


def _write(path: str, value: str) -> None:
    try:
        fd = posix.open(path, posix.O_WRONLY | posix.O_CLOEXEC)
        try:
            posix.write(fd, value.encode())
        finally:
            posix.close(fd)
    except OSError as e:
        raise YacrError(f"cannot write {value!r} to {path}: {e.strerror}") from None


def destroy(paths: dict[str, str], made: Iterable[str], timeout: float = 10.0) -> None:
    """Remove the container's cgroups, retrying while exiting processes drain out."""
    leaves = set(paths.values())
    # Only what this container made: a cgroup that existed before it is not ours to remove.
    todo = sorted(set(made), key=lambda p: p.count("/"), reverse=True)
    deadline = time.monotonic() + timeout
    delay = 0.001
    for path in todo:
        while True:
            try:
                _rmdir_tree(path)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if path not in leaves:
                    break  # a shared parent still in use by another container
                if time.monotonic() > deadline:
                    raise YacrError(f"cannot remove cgroup {path}: {e.strerror}") from None
                signal_all({"": path}, 9)
                time.sleep(delay)
                delay = min(delay * 2, 0.1)


def _rmdir_tree(path: str) -> None:
    """rmdir a cgroup and any child cgroups the container made inside it (deepest first)."""
    try:
        posix.rmdir(path)
        return
    except OSError as e:
        if e.errno not in (16, 39):  # EBUSY, ENOTEMPTY: maybe child cgroups
            raise
    for entry in posix.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            _rmdir_tree(entry.path)
    posix.rmdir(path)


# --- resources (the managers live in yacr.cgroups.manager, v1, v2) ------------------------

def parse_resources(raw: dict[str, Any] | None) -> Resources:
    """linux.resources as typed values, checked before anything is created."""
    from yacr.cgroups.resources import Resources

    return Resources(raw)


def apply_resources(paths: dict[str, str], res: Resources, spec: Spec, log: Log) -> None:
    """Apply every resource limit and the device rules to a new, still empty cgroup.

    Called between creating the cgroup and letting init join it, so the limits hold from
    the container's first instruction; on error, create's cleanup removes the cgroups.
    """
    if not paths:
        return
    from yacr.cgroups.manager import new_manager

    new_manager(paths, log).apply(res, spec_device_paths={d.path for d in spec.linux.devices})
