"""cgroup managers: one interface, a v1, a v2 and a hybrid implementation, and a factory.

A manager turns typed resources (yacr.cgroups.resources) into writes of kernel
files and carries them out. The writes are planned first and executed by one
routine, so every manager gets the same guarantees:

- an error names the spec field and the value the kernel refused;
- `update` reads each file before writing it, and when a later write fails the
  earlier ones are written back, so a live container never keeps half an update
  (create needs no such undo: its cleanup removes the whole cgroup);
- a write the kernel refuses with EINVAL only because of the order (a memory limit
  above the current memory+swap limit, a CFS period shorter than the current
  quota allows) is retried once after the others.

The factory picks the implementation from the container's cgroup paths (see
yacr.cgroups): key "" is a pure v2 host; v1 controller keys, plus "unified" on
hybrid hosts, where every resource group goes to its v1 hierarchy if the host has
one and to the cgroup2 hierarchy otherwise (hugetlb on this kind of machine).
`--systemd-cgroup` has no manager: these hosts run no systemd to talk to, and a
manager that cannot be tested against a real systemd is not offered.
"""

from __future__ import annotations

import posix

from yacr.errors import YacrError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from yacr.cgroups.devices import Rules
    from yacr.cgroups.resources import Resources
    from yacr.log import Log

# Resource groups, and their controller under v1 and v2.
GROUPS: tuple[tuple[str, str, str], ...] = (
    ("memory", "memory", "memory"), ("cpu", "cpu", "cpu"), ("cpuset", "cpuset", "cpuset"),
    ("pids", "pids", "pids"), ("io", "blkio", "io"), ("hugetlb", "hugetlb", "hugetlb"),
    ("net_cls", "net_cls", ""), ("net_prio", "net_prio", ""), ("rdma", "rdma", "rdma"),
    ("unified", "", "*"), ("devices", "devices", "*"))


class Write:
    """One planned write: value into dir/file, for the spec field `field`.

    `key` marks files holding one line per device or interface (the line to restore
    on undo starts with it; `reset` is written when there was none). `defer` allows a
    retry after the other writes on EINVAL. `verify` reads the value back and warns
    when the kernel silently ignored it (kernel memory limits on Linux 6.x).
    """

    __slots__ = ("dir", "file", "value", "field", "shown", "key", "reset", "defer",
                 "verify", "undo")

    def __init__(self, dir: str, file: str, value: str, field: str, shown: object = None,
                 key: str | None = None, reset: str | None = None, defer: bool = False,
                 verify: bool = False) -> None:
        self.dir = dir
        self.file = file
        self.value = value
        self.field = field
        self.shown = value if shown is None else shown
        self.key = key
        self.reset = reset
        self.defer = defer
        self.verify = verify
        self.undo: str | None = None

    @property
    def path(self) -> str:
        return join(self.dir, self.file)

    def __repr__(self) -> str:
        return f"Write({self.file}={self.value!r} for {self.field})"


# Small path and file helpers on `posix`: the modules create uses never import `os`
# (with python -S nothing else loads it, and its import is a measurable part of a start).

def join(a: str, b: str) -> str:
    return a.rstrip("/") + "/" + b


def dirname(path: str) -> str:
    head = path[: path.rfind("/")]
    return head or "/"


def exists(path: str) -> bool:
    try:
        posix.stat(path)
    except OSError:
        return False
    return True


def read(path: str) -> str:
    """A kernel file's text in one read(2) (cgroup files are far below 64 KiB)."""
    fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        return posix.read(fd, 1 << 16).decode()
    finally:
        posix.close(fd)


def write_file(path: str, value: str) -> None:
    """One write(2), as cgroup files want a value per write."""
    fd = posix.open(path, posix.O_WRONLY | posix.O_CLOEXEC)
    try:
        posix.write(fd, value.encode())
    finally:
        posix.close(fd)


class Manager:
    """What every manager offers; `plan` is the part each cgroup version does its own way."""

    name = "none"

    def __init__(self, log: Log | None) -> None:
        self.log = log

    def warn(self, msg: str) -> None:
        if self.log is not None:
            self.log.warn(msg)

    # --- interface ----------------------------------------------------------------------
    def has(self, controller: str) -> bool:
        """Whether this manager's hierarchies include the (v1) controller."""
        return False

    def plan_group(self, group: str, res: Resources, update: bool) -> list[Write]:
        """The writes for one resource group (see GROUPS); an error if it cannot be set."""
        raise NotImplementedError

    def plan(self, res: Resources, update: bool) -> list[Write]:
        out: list[Write] = []
        for group, _c1, _c2 in GROUPS:
            if group != "devices":
                out += self.plan_group(group, res, update)
        return out

    def apply_devices(self, rules: Rules) -> None:
        raise NotImplementedError

    def stats(self) -> dict[str, object]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Anything the cgroup needs before its files can be written (v2: controllers)."""

    def controller_dir(self, controller: str, field: str) -> str:
        """The directory holding controller's files; an error naming field when the host
        lacks the controller."""
        raise NotImplementedError

    # --- shared -------------------------------------------------------------------------
    # cpuset and pids files have the same names and values in v1 and v2
    def _cpuset(self, res: Resources, update: bool) -> list[Write]:
        c = res.cpu
        if c is None or (c.cpus is None and c.mems is None):
            return []
        p = res.path + ".cpu"
        d = self.controller_dir("cpuset", p + (".cpus" if c.cpus is not None else ".mems"))
        out = []
        if c.cpus is not None:
            out.append(Write(d, "cpuset.cpus", c.cpus, f"{p}.cpus", shown=repr(c.cpus)))
        if c.mems is not None:
            out.append(Write(d, "cpuset.mems", c.mems, f"{p}.mems", shown=repr(c.mems)))
        return out

    def _pids(self, res: Resources, update: bool) -> list[Write]:
        if res.pids is None:
            return []
        p = res.path + ".pids.limit"
        return [Write(self.controller_dir("pids", p), "pids.max",
                      "max" if res.pids < 0 else str(res.pids), p, shown=res.pids)]

    def apply(self, res: Resources, update: bool = False,
              spec_device_paths: set[str] | None = None) -> None:
        """Apply res; devices too unless this is an update (runc's `update` leaves them)."""
        self.prepare()
        writes = self.plan(res, update)
        execute(writes, update, self.warn)
        if not update:
            from yacr.cgroups import devices

            self.apply_devices(devices.build(res.devices or [], spec_device_paths or set()))


def execute(writes: list[Write], update: bool, warn: Callable[[str], None]) -> None:
    """Carry out writes in order; on failure undo what an update already changed."""
    done: list[Write] = []
    queue = list(writes)
    deferred: set[int] = set()
    i = 0
    while i < len(queue):
        w = queue[i]
        i += 1
        try:
            if update and w.undo is None:
                w.undo = _old_value(w)
            write_file(w.path, w.value)
        except OSError as e:
            if e.errno == 22 and w.defer and id(w) not in deferred:
                deferred.add(id(w))
                queue.append(w)
                continue
            if update:
                _undo(done, warn)
            raise _rejected(w, e) from None
        done.append(w)
        if w.verify:
            try:
                now = read(w.path).strip()
            except OSError:
                continue
            if now != w.value.strip():
                warn(f"{w.field}: the kernel ignores {w.file} (it reads back {now}); "
                     f"{w.shown} was not applied")


_HINTS = {
    ("memory.limit_in_bytes", 22): "; it may not exceed the memory+swap limit: set swap too",
    ("memory.limit_in_bytes", 16): "; the container already uses more than that",
    ("memory.memsw.limit_in_bytes", 22): "; memory+swap may not be below the memory limit",
}


def _rejected(w: Write, e: OSError) -> YacrError:
    if e.errno == 2:
        return YacrError(f"{w.field}: cannot set {w.shown}: this kernel has no {w.file} in "
                         f"{w.dir}")
    hint = _HINTS.get((w.file, e.errno or 0), "")
    return YacrError(f"{w.field}: the kernel rejected {w.shown} ({w.file}: {e.strerror})"
                     + hint)


def _old_value(w: Write) -> str | None:
    try:
        text = read(w.path)
    except OSError:
        return None
    if w.key is None:
        if w.file == "memory.oom_control":
            for line in text.splitlines():
                if line.startswith("oom_kill_disable "):
                    return line.split()[1]
        return text.strip()
    for line in text.splitlines():
        if line.split(" ", 1)[0] == w.key:
            return line
    return w.reset


def _undo(done: list[Write], warn: Callable[[str], None]) -> None:
    for w in reversed(done):
        if w.undo is None or w.undo == "":
            continue
        try:
            write_file(w.path, w.undo)
        except OSError as e:
            warn(f"{w.field}: could not restore {w.file} to {w.undo!r}: {e.strerror}")


def hugepage_sizes() -> list[str]:
    """The host's huge page sizes as cgroup files name them (2MB, 1GB, 64KB)."""
    out = []
    try:
        names = sorted(posix.listdir("/sys/kernel/mm/hugepages"))
    except OSError:
        return out
    for n in names:
        if n.startswith("hugepages-") and n.endswith("kB"):
            kb = int(n[len("hugepages-"):-2])
            for unit, mult in (("GB", 1 << 20), ("MB", 1 << 10), ("KB", 1)):
                if kb % mult == 0:
                    out.append(f"{kb // mult}{unit}")
                    break
    return out


def hugepage_file_size(size: str, field: str) -> str:
    """size as given in hugepageLimits, checked against the host's sizes."""
    sizes = hugepage_sizes()
    if size not in sizes:
        raise YacrError(f"{field}: {size!r} is not a huge page size of this host "
                        f"(it has {', '.join(sizes) or 'none'})")
    return size


def new_manager(paths: dict[str, str], log: Log | None = None) -> Manager:
    """The manager for a container's cgroup paths (as stored in its state)."""
    # Each version's module is imported only where the host has it (a start pays for it).
    if "" in paths:
        from yacr.cgroups.v2 import V2Manager

        return V2Manager(paths[""], log)
    from yacr.cgroups.v1 import V1Manager

    v1dirs = {k: p for k, p in paths.items() if k != "unified"}
    if "unified" in paths:
        from yacr.cgroups.v2 import V2Manager

        return HybridManager(V1Manager(v1dirs, log), V2Manager(paths["unified"], log), log)
    if not v1dirs:
        raise YacrError("this host has no cgroup hierarchy mounted under /sys/fs/cgroup")
    return V1Manager(v1dirs, log)


class HybridManager(Manager):
    """v1 hierarchies for what the host mounts as v1, the cgroup2 hierarchy for the rest."""

    name = "hybrid"

    def __init__(self, v1m: Manager, v2m: Manager, log: Log | None) -> None:
        super().__init__(log)
        self.v1 = v1m
        self.v2 = v2m

    def prepare(self) -> None:
        self.v2.prepare()

    def plan(self, res: Resources, update: bool) -> list[Write]:
        out: list[Write] = []
        for group, c1, c2 in GROUPS:
            if group == "devices":
                continue
            # v1 when the host mounts the controller there, or when cgroup2 has no
            # counterpart (net_cls, net_prio): v1 then reports it missing
            m = self.v1 if c1 and (self.v1.has(c1) or not c2) else self.v2
            out += m.plan_group(group, res, update)
        return out

    def apply_devices(self, rules: Rules) -> None:
        (self.v1 if self.v1.has("devices") else self.v2).apply_devices(rules)

    def stats(self) -> dict[str, object]:
        s = self.v1.stats()
        hv = self.v2.stats().get("hugetlb")
        if hv and not s.get("hugetlb"):
            s["hugetlb"] = hv
        return s
