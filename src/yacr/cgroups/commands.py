"""The cgroup commands that act on a running container: `update` and `events`.

Both work from the cgroup paths recorded in the container's state, so they need
neither the bundle nor a second look at the host's layout.

`update` takes runc's flags, or a linux.resources object from a file or stdin
(containerd's CRI sends `--resources -`, podman `--resources=FILE`), and applies
it as one change: a value the kernel refuses undoes the ones written before it.

`events` prints runc's event objects, one JSON document per line: with --stats a
single `stats` event; otherwise a `stats` event every --interval and an `oom`
event whenever the kernel's OOM killer acts in the container, until it stops.
OOMs are noticed as they happen: through an eventfd registered on
memory.oom_control (v1), or by polling memory.events for changes (v2), whose
oom_kill counter then says how many processes were killed.
"""

from __future__ import annotations

import os
import sys

from yacr.errors import StateError, UsageError, YacrError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from yacr.container import Context


def update(ctx: Context, cid: str, o: dict[str, Any]) -> None:
    from yacr import jsonio
    from yacr.cgroups.manager import new_manager
    from yacr.cgroups.resources import Resources, from_update_flags

    for flag in ("l3-cache-schema", "mem-bw-schema"):
        if o.get(flag):
            raise YacrError(f"--{flag}: Intel RDT is not supported by yacr")
    st = ctx.store.load(cid)
    status = st.status()
    if status not in ("created", "running", "paused"):
        raise StateError(f"cannot update container {cid}: it is {status}")
    if not st.cgroups:
        raise YacrError(f"container {cid} has no cgroup to update")
    if o.get("resources"):
        src = o["resources"]
        try:
            if src == "-":
                data = sys.stdin.buffer.read()
            else:
                with open(src, "rb") as f:
                    data = f.read()
        except OSError as e:
            raise YacrError(f"--resources {src}: {e.strerror}") from None
        try:
            raw = jsonio.loads(data)
        except jsonio.JSONError as e:
            raise YacrError(f"--resources {src}: not valid JSON: {e}") from None
        if not isinstance(raw, dict):
            raise YacrError(f"--resources {src}: expected a JSON object (linux.resources)")
    else:
        raw = from_update_flags(o)
    res = Resources(raw, "resources")
    new_manager(st.cgroups, ctx.log).apply(res, update=True)
    unit = st.extra.get("systemdUnit")
    if unit:
        # systemd's own record of the limits follows, or a daemon-reload would bring the
        # old ones back (the files are already changed: that part is not undone)
        from yacr.cgroups import systemd

        try:
            systemd.set_properties(unit, systemd.resource_properties(res, None))
        except YacrError as e:
            raise YacrError(f"the cgroup files were updated, but systemd's unit {unit} was "
                            f"not: {e}") from None


def parse_duration(text: str) -> float:
    """A Go duration as runc takes it: 5s, 100ms, 1m30s, 1.5s, 250us (seconds returned)."""
    units = (("ms", 1e-3), ("us", 1e-6), ("µs", 1e-6), ("ns", 1e-9), ("h", 3600.0),
             ("m", 60.0), ("s", 1.0))
    t = text.strip()
    total = 0.0
    i = 0
    if not t:
        raise UsageError("events: --interval must not be empty")
    while i < len(t):
        j = i
        while j < len(t) and (t[j].isdigit() or t[j] == "."):
            j += 1
        if j == i:
            raise UsageError(f"events: invalid --interval {text!r}")
        num = float(t[i:j])
        for name, mult in units:
            if t.startswith(name, j):
                total += num * mult
                i = j + len(name)
                break
        else:
            if j == len(t) and num == 0:
                return 0.0
            raise UsageError(f"events: invalid --interval {text!r} (say 5s or 500ms)")
    if total <= 0:
        raise UsageError(f"events: --interval must be positive, got {text!r}")
    return total


def _emit(kind: str, cid: str, data: Any = None) -> None:
    from yacr import jsonio

    ev: dict[str, Any] = {"type": kind, "id": cid}
    if data is not None:
        ev["data"] = data
    sys.stdout.write(jsonio.dumps(ev) + "\n")
    sys.stdout.flush()


def events(ctx: Context, cid: str, stats_only: bool, interval: float) -> None:
    from yacr.cgroups.manager import new_manager

    st = ctx.store.load(cid, lock=False)
    if st.status() == "stopped":
        raise StateError(f"container with id {cid} is not running")
    mgr = new_manager(st.cgroups, ctx.log)
    if stats_only:
        _emit("stats", cid, mgr.stats())
        return
    import select
    import time

    watch = OOMWatch(st.cgroups)
    poll = select.poll()
    if watch.fd >= 0:
        poll.register(watch.fd, watch.events)
    try:
        next_stats = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_stats:
                if st.status() == "stopped":
                    return
                _emit("stats", cid, mgr.stats())
                next_stats = now + interval
            timeout = max(0.0, next_stats - time.monotonic())
            if poll.poll(int(timeout * 1000) + 1) and watch.fd >= 0:
                for _ in range(watch.fired()):
                    _emit("oom", cid)
                if watch.gone():
                    return
    finally:
        watch.close()


class OOMWatch:
    """An fd that becomes ready when the container's memory cgroup hits OOM."""

    __slots__ = ("fd", "events", "v2file", "kills", "dir", "_oom_fd")

    def __init__(self, paths: dict[str, str]) -> None:
        import select

        self.fd = -1
        self._oom_fd = -1
        self.v2file = ""
        self.kills = 0
        self.events = select.POLLIN
        self.dir = paths.get("memory", "")
        if self.dir:
            # v1: register an eventfd for memory.oom_control through cgroup.event_control.
            try:
                self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
                self._oom_fd = os.open(os.path.join(self.dir, "memory.oom_control"),
                                       os.O_RDONLY | os.O_CLOEXEC)
                ctl = os.open(os.path.join(self.dir, "cgroup.event_control"),
                              os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(ctl, f"{self.fd} {self._oom_fd}".encode())
                finally:
                    os.close(ctl)
            except OSError:
                self.close()
            return
        d = paths.get("") or paths.get("unified") or ""
        path = os.path.join(d, "memory.events") if d else ""
        if path and os.path.exists(path):
            # v2: kernfs wakes poll() with POLLPRI|POLLERR when the file changes.
            self.dir = d
            self.v2file = path
            self.kills = self._v2_kills()
            self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            os.read(self.fd, 4096)
            self.events = select.POLLPRI | select.POLLERR

    def _v2_kills(self) -> int:
        try:
            with open(self.v2file) as f:
                for line in f:
                    k, _, v = line.partition(" ")
                    if k == "oom_kill":
                        return int(v)
        except (OSError, ValueError):
            pass
        return 0

    def fired(self) -> int:
        """How many OOM events happened since the last call."""
        if self.v2file:
            try:
                os.lseek(self.fd, 0, os.SEEK_SET)
                os.read(self.fd, 4096)
            except OSError:
                return 0  # the cgroup is being removed
            now = self._v2_kills()
            n, self.kills = max(0, now - self.kills), now
            return n
        try:
            return 0 if self.gone() else os.eventfd_read(self.fd)
        except BlockingIOError:
            return 0

    def gone(self) -> bool:
        """The cgroup was removed (the kernel also signals the eventfd then)."""
        return not os.path.isdir(self.dir)

    def close(self) -> None:
        for fd in (self.fd, self._oom_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self._oom_fd = -1
