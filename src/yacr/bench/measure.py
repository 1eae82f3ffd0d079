"""How the harness times, measures and cleans up: the primitives every scenario shares.

- `spawn` runs one runtime invocation with posix_spawn and wait4: wall time
  from just before the spawn to the reap, user and system CPU from the
  child's rusage (CPU, unlike peak RSS, is not inherited from this Python
  process). stdin/stdout go to /dev/null and stderr to a file, never a pipe:
  a created container's init keeps the runtime's stdio open.
- `interleave` runs each runtime once per round, rotating who goes first,
  after warm-up rounds, so slow drifts of a noisy machine hit every runtime
  alike.
- `Tracker` remembers every container a scenario made and force-deletes what
  is left, even on errors or Ctrl-C; `leaks` checks state dirs, cgroups,
  mounts and processes afterwards.
- `attributed` finds the processes that belong to a runtime's containers
  (by the session's ids in their cgroup paths, or the runtime's --root in
  their command line) and reads their memory two ways from smaps_rollup:
  PSS (each page split between the processes that map it) and private pages
  (Private_Clean + Private_Dirty: pages no other process maps).
- `become_reaper`: the harness is the subreaper of every process it starts, as
  containerd's shim is, so a container's processes are reaped as soon as they
  exit (see `become_reaper`).
"""

from __future__ import annotations

import os
import select
import statistics
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from yacr.bench.registry import Context
    from yacr.bench.runtimes import Environment, Runtime


class BenchError(RuntimeError):
    """A runtime invocation failed where the benchmark needs it to succeed."""


class Run:
    __slots__ = ("rc", "sys_ms", "user_ms", "wall_ms")

    def __init__(self, wall_ms: float, user_ms: float, sys_ms: float, rc: int) -> None:
        self.wall_ms = wall_ms
        self.user_ms = user_ms
        self.sys_ms = sys_ms
        self.rc = rc

    @property
    def cpu_ms(self) -> float:
        return self.user_ms + self.sys_ms


def _log_path(env: Environment, cmd: list[str]) -> str:
    return os.path.join(env.work, "logs", f"{os.getpid()}-{os.path.basename(cmd[0])}.log")


def null_files(env: Environment) -> tuple[str, str]:
    """(an empty file, a file that takes whatever is written) in the bench's work
    directory, made once: what the runtimes get for stdin and stdout."""
    d = os.path.join(env.work, "logs")
    empty, sink = os.path.join(d, "stdin.empty"), os.path.join(d, "stdout.sink")
    if not os.path.exists(sink):
        os.makedirs(d, exist_ok=True)
        for path in (empty, sink):
            with open(path, "w"):
                pass
    return empty, sink


def spawn(env: Environment, cmd: list[str], check: bool = True, timeout: float = 120,
          log: str | None = None, extra_env: dict[str, str] | None = None) -> Run:
    """Run cmd to completion (with extra_env added to the environment); its stderr goes to
    `log` (a file, truncated first)."""
    import threading

    log = log or _log_path(env, cmd) + f".{threading.get_ident()}"
    os.makedirs(os.path.dirname(log), exist_ok=True)
    # stdin and stdout are files of the bench's, not the host's /dev/null: gVisor's sandbox
    # fchowns the stdio it is handed to its own user (nobody), and did so to /dev/null
    empty, sink = null_files(env)
    fa = [(os.POSIX_SPAWN_OPEN, 0, empty, os.O_RDONLY, 0),
          (os.POSIX_SPAWN_OPEN, 1, sink, os.O_WRONLY | os.O_APPEND, 0),
          (os.POSIX_SPAWN_OPEN, 2, log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)]
    t0 = time.perf_counter()
    environ = {**os.environ, **extra_env} if extra_env else os.environ
    pid = os.posix_spawnp(cmd[0], cmd, environ, file_actions=fa)
    try:
        pfd = os.pidfd_open(pid)
    except OSError:
        pfd = -1
    if pfd >= 0:
        try:
            p = select.poll()
            p.register(pfd, select.POLLIN)
            if not p.poll(timeout * 1000):
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise BenchError(f"{' '.join(cmd)}: no answer in {timeout:.0f} s")
        finally:
            os.close(pfd)
    _, status, ru = os.wait4(pid, 0)
    t1 = time.perf_counter()
    rc = os.waitstatus_to_exitcode(status)
    r = Run((t1 - t0) * 1000, ru.ru_utime * 1000, ru.ru_stime * 1000, rc)
    if check and rc != 0:
        raise BenchError(f"{' '.join(cmd)} exited {rc}: {tail(log)}")
    return r


def tail(path: str, n: int = 600) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - n))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""


def wait_exit(pid: int, timeout: float = 30) -> float:
    """Wait for a process that is not our child to exit (a container's init, reparented);
    returns the ms waited. containerd's shim learns of the exit as a subreaper; a pidfd
    sees the same moment without making this process everyone's reaper."""
    t0 = time.perf_counter()
    try:
        pfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return (time.perf_counter() - t0) * 1000
    try:
        p = select.poll()
        p.register(pfd, select.POLLIN)
        if not p.poll(timeout * 1000):
            raise BenchError(f"process {pid} still running after {timeout:.0f} s")
    finally:
        os.close(pfd)
    return (time.perf_counter() - t0) * 1000


def read_pid(path: str) -> int:
    with open(path) as f:
        return int(f.read().strip())


def peak_rss_kib(env: Environment, cmd: list[str]) -> float:
    """ru_maxrss of cmd and the children it reaped, read by a small C parent (KiB)."""
    from yacr.bench.runtimes import _PEAKRSS_C, compiled_helper

    helper = compiled_helper(env, "peakrss", _PEAKRSS_C)
    if helper is None:
        raise BenchError("gcc is needed to build the peak-RSS helper")
    log = _log_path(env, cmd) + ".rss"
    spawn(env, [helper, *cmd], log=log)
    with open(log) as f:
        lines = [x for x in f.read().splitlines() if x.startswith("peak-rss-kib ")]
    return float(lines[-1].split()[1])


def stats(samples: Iterable[float]) -> dict[str, float]:
    s = sorted(samples)
    if not s:
        return {"n": 0}
    q = statistics.quantiles(s, n=4, method="inclusive") if len(s) > 1 else [s[0]] * 3
    return {"median": statistics.median(s), "q1": q[0], "q3": q[2], "min": s[0],
            "max": s[-1], "n": len(s)}


def interleave(ctx: Context, jobs: dict[str, Callable[[], dict[str, float]]], runs: int,
               warmup: int, label: str) -> dict[str, dict[str, list[float]]]:
    """Run each job once per round, the first runtime of each round rotating; warm-up rounds
    are thrown away. Returns job -> field -> samples."""
    names = list(jobs)
    out: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    with ctx.ui.task(label, (warmup + runs) * len(names)) as advance:
        for i in range(warmup + runs):
            k = i % len(names) if names else 0
            for name in names[k:] + names[:k]:
                got = jobs[name]()
                if i >= warmup:
                    for field, v in got.items():
                        out[name].setdefault(field, []).append(v)
                advance()
    return out


class Tracker:
    """Every container a scenario made, so that none survives it (see `cleanup`)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.made: dict[str, tuple[Runtime, str]] = {}

    def add(self, rt: Runtime, cid: str) -> None:
        self.made[cid] = (rt, cid)

    def done(self, cid: str) -> None:
        self.made.pop(cid, None)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def cleanup(self, workers: int = 8) -> int:
        """Force-delete what is left (in parallel: 1500 one by one would take a minute)."""
        left = list(self.made.values())
        self.made.clear()
        force_delete(self.ctx.env, left, workers)
        return len(left)


def force_delete(env: Environment, items: list[tuple[Runtime, str]], workers: int = 8) -> None:
    if not items:
        return
    from concurrent.futures import ThreadPoolExecutor

    def one(item: tuple[Runtime, str]) -> None:
        rt, cid = item
        spawn(env, rt.cmd("delete", "--force", cid), check=False, timeout=60)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, items))


def sweep(env: Environment, runtimes: list[Runtime]) -> list[str]:
    """Force-delete whatever any runtime's --root still holds (an interrupted session)."""
    items = []
    for rt in runtimes:
        try:
            items += [(rt, cid) for cid in os.listdir(rt.root) if not cid.startswith(".")]
        except FileNotFoundError:
            pass
    force_delete(env, items)
    return [cid for _, cid in items]


# -- the reaper ---------------------------------------------------------------------------

PR_SET_CHILD_SUBREAPER = 36


def become_reaper() -> int | None:
    """Split this process in two: the child returns (None) and goes on to measure; the
    parent becomes the subreaper of everything the child starts, reaps each orphan the
    moment it exits, and exits with the child's status (its return value is never seen:
    it calls os._exit).

    Why: once a runtime's `create` returns, the container's processes are orphans. Under
    containerd they become the shim's children (it is their subreaper) and are reaped
    at once; here they would go to PID 1, which may reap late (this project's VMs reap
    every second or so). runsc's `delete` polls until its sandbox process is gone, so a
    late reaper would add whole seconds to gVisor's figures that no real deployment has.
    The child keeps reaping its own direct children (spawn's wait4), untouched: only
    orphans come here. Returns None (no split) if the kernel refuses a subreaper."""
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        return None
    child = os.fork()
    if child == 0:
        return None  # a fork does not inherit the subreaper attribute: the parent has it
    # Ctrl-C reaches the whole process group: the child handles it (cleans up, exits 130)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: os.kill(child, s))
    rc = 1
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid == child:
            rc = os.waitstatus_to_exitcode(status)
            rc = rc if rc >= 0 else 128 - rc
            break
    os._exit(rc)


# -- processes and memory ---------------------------------------------------------------

def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def attributed(ctx: Context, rt: Runtime) -> list[dict[str, Any]]:
    """The live processes of this runtime's containers in this session, and their memory.

    A process counts when its cgroup path holds one of the runtime's container ids, or
    its command line names the runtime's --root (a runtime process that stayed behind,
    e.g. a created container's init before it execs; gVisor's sandbox and gofer, which
    are in the container's cgroup anyway). PSS splits shared pages between the
    processes that map them, so a sum of PSS counts each page once; private pages are
    those no other process maps (a page a container shares with nothing but itself is
    private to each of its processes only if one process maps it)."""
    prefix = "/" + ctx.prefix(rt)
    # spaced: .../state/yacr must not match .../state/yacr-wasm
    roots = (f" {rt.root} ", f" --root={rt.root} ")
    me = os.getpid()
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        cg = _read(f"/proc/{d}/cgroup")
        cmd = _read(f"/proc/{d}/cmdline").replace("\0", " ")
        if prefix not in cg and not any(r in f" {cmd}" for r in roots):
            continue
        roll = _read(f"/proc/{d}/smaps_rollup")
        mem = {}
        for line in roll.splitlines():
            k, _, v = line.partition(":")
            if k in ("Rss", "Pss"):
                mem[k.lower() + "_kib"] = int(v.split()[0])
            elif k in ("Private_Clean", "Private_Dirty"):  # a process's own pages
                mem["private_kib"] = mem.get("private_kib", 0) + int(v.split()[0])
        if not mem:  # a zombie, or gone since listdir
            continue
        found.append({"pid": int(d), "cmd": cmd.strip()[:120], "cid": _cid(cg, cmd, prefix),
                      **mem})
    return found


def _cid(cg: str, cmd: str, prefix: str) -> str:
    """The container id a process belongs to: from its cgroup path, else the first
    argument of its command line that is one of the session's ids ("" if neither)."""
    i = cg.find(prefix)
    if i >= 0:
        j = i + 1
        while j < len(cg) and cg[j] not in "/\n":
            j += 1
        return cg[i + 1:j]
    for arg in cmd.split():
        if arg.startswith(prefix[1:]):
            return arg
    return ""


def meminfo() -> dict[str, int]:
    out = {}
    for line in _read("/proc/meminfo").splitlines():
        k, _, v = line.partition(":")
        out[k] = int(v.split()[0])
    return out


def percpu_free_kib() -> int:
    """Free pages the kernel keeps in its per-CPU lists, which MemFree leaves out.

    Since Linux 6.7 those lists grow with the rate of frees: deleting 1500 containers
    left ~600 MiB in them here, which `free` counts as used until some later allocation
    takes them back, in the middle of the next ramp."""
    total = 0
    for line in _read("/proc/zoneinfo").splitlines():
        key, _, value = line.strip().partition(":")
        if key == "count":
            total += int(value)
    return total * (os.sysconf("SC_PAGE_SIZE") // 1024)


def used_kib() -> int:
    """System memory in use: kernel objects (namespaces, cgroups, page tables, mounts)
    included; page cache, reclaimable slab and the per-CPU free lists excluded."""
    m = meminfo()
    return m["MemTotal"] - m["MemFree"] - m.get("Buffers", 0) - m.get("Cached", 0) - \
        m.get("SReclaimable", 0) - percpu_free_kib()


def settled_used_kib(timeout: float = 60.0) -> tuple[int, bool]:
    """System memory in use once the kernel has freed what deleted containers left.

    A deleted memory cgroup lingers, with its per-CPU statistics, for as long as page
    cache or slab objects charged to it stay cached: hundreds of MiB after a ramp of 1500,
    freed at the kernel's leisure, often in the middle of the next runtime's ramp (which
    then looks cheaper than it is). Dropping the clean caches lets those cgroups go, so
    every ramp starts from the same clean state; then wait for `used` to stop moving.
    Returns (used KiB, whether the caches could be dropped: root only)."""
    dropped = False
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
        dropped = True
    except OSError:
        pass
    deadline = time.monotonic() + timeout
    last = used_kib()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = used_kib()
        if abs(now - last) < 1024:
            return now, dropped
        last = now
    return last, dropped


# -- leaks ---------------------------------------------------------------------------------

def leaks(ctx: Context, rt: Runtime) -> dict[str, list[str]]:
    """What this runtime left behind of this session's containers: state dirs under its
    --root, cgroup directories named by the ids, mounts naming them, live processes."""
    prefix = ctx.prefix(rt)
    out: dict[str, list[str]] = {}
    try:
        # dot names are runtime-wide caches (yacr's compiled seccomp programs), not state
        out["state"] = sorted(n for n in os.listdir(rt.root) if not n.startswith("."))
    except FileNotFoundError:
        out["state"] = []
    cgs = []
    for top, dirs, _files in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            if d.startswith(prefix):
                cgs.append(os.path.join(top, d))
        dirs[:] = [d for d in dirs if not d.startswith(prefix)]
    out["cgroups"] = cgs
    out["mounts"] = [line.split()[4] for line in _read("/proc/self/mountinfo").splitlines()
                     if prefix in line]
    out["processes"] = [f"{p['pid']} {p['cmd']}" for p in attributed(ctx, rt)]
    return out
