"""Density: N containers started one after another and left running, N up to 1500.

Seed 000's two charts, one line per runtime:
- boot time: the summed wall time of `run --detach` (busybox `sleep`) for
  the first 1, 10, 100, 500, 1000 and 1500 containers, with the spread of
  single starts in each stretch (a runtime that slows down as containers
  pile up shows it here);
- memory of N sleeping containers, read at the same points, two ways: the
  PSS of every process of the runtime's containers (runtime leftovers and
  gVisor's sandboxes and gofers included: shared pages split between the
  processes mapping them), and their private pages (Private_Clean +
  Private_Dirty: what no other process maps, what deleting one container
  gives back); both in total and per container. And the change in system
  memory used since the first start (kernel objects included, noisier).

Every busybox bundle uses one read-only rootfs, so all containers map the
same busybox file and share its pages in the page cache, as containers of
one image share its layers; a copy per bundle would make those pages private
to every container and inflate every runtime's figures alike.

Runtimes take turns, one whole ramp each, so their memory never mixes, and
each ramp is torn down (delete --force, 8 at a time) before the next. A ramp
stops early, and says so, when free memory falls under a reserve, or when the
machine's tasks near its pid limit (gVisor's sandboxes are dozens of threads
each), so the machine stays usable; 500 containers is the least the issue
asks for.
"""

from __future__ import annotations

import time

from yacr.bench import measure, registry
from yacr.bench.registry import Result

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from yacr.bench.registry import Context
    from yacr.bench.runtimes import Runtime

FULL = (1, 10, 100, 500, 1000, 1500)
QUICK = (1, 5, 10)


def reserve_kib() -> int:
    """Free memory to keep: 2 GiB or a tenth of the machine, whichever is more."""
    return max(2 << 20, measure.meminfo()["MemTotal"] // 10)


def tasks_left() -> tuple[int, int]:
    """(tasks that can still be created, the limit): every thread takes a pid, and the
    machine's limit is the lower of kernel.pid_max and kernel.threads-max."""
    limits = []
    for path in ("/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"):
        try:
            with open(path) as f:
                limits.append(int(f.read()))
        except (OSError, ValueError):
            pass
    try:
        with open("/proc/loadavg") as f:
            used = int(f.read().split()[3].split("/")[1])
    except (OSError, ValueError, IndexError):
        return 1 << 30, 0
    limit = min(limits) if limits else 1 << 30
    return limit - used, limit


TASK_RESERVE = 0.15
"""Share of the pid limit a ramp leaves to the rest of the machine."""


def ramp(ctx: Context, rt: Runtime, bundle: str, points: tuple[int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"points": [], "starts_ms": [], "stopped": ""}
    before, out["caches_dropped"] = measure.settled_used_kib()
    reserve = reserve_kib()
    total = 0.0
    with measure.Tracker(ctx) as tracker:
        with ctx.ui.task(f"density: {points[-1]} sleeping containers, {rt.name}",
                         points[-1]) as advance:
            left0, limit = tasks_left()
            for n in range(1, points[-1] + 1):
                if n % 10 == 1 and measure.meminfo()["MemAvailable"] < reserve:
                    out["stopped"] = (f"stopped at {n - 1} containers: less than "
                                      f"{reserve >> 20} GiB of memory left")
                    ctx.ui.warn(f"{rt.name}: {out['stopped']}")
                    break
                left = tasks_left()[0]
                # the tasks (threads) one container has taken so far, on average
                per = (left0 - left) / (n - 1) if n > 1 else 0
                if n % 10 == 1 and left < limit * TASK_RESERVE + 10 * per:
                    out["stopped"] = (f"stopped at {n - 1} containers: the machine's tasks "
                                      f"near its pid limit ({limit}; each container "
                                      f"takes ~{per:.0f} tasks; sysctl kernel.pid_max "
                                      "raises it)")
                    ctx.ui.warn(f"{rt.name}: {out['stopped']}")
                    break
                cid = ctx.cid(rt, "d")
                tracker.add(rt, cid)
                r = measure.spawn(ctx.env, rt.cmd("run", "--detach", "--bundle", bundle, cid))
                total += r.wall_ms
                out["starts_ms"].append(r.wall_ms)
                advance()
                if n in points:
                    time.sleep(0.2)
                    procs = measure.attributed(ctx, rt)
                    out["points"].append({
                        "n": n, "boot_s": total / 1000,
                        "pss_mib": sum(p.get("pss_kib", 0) for p in procs) / 1024,
                        "private_mib": sum(p.get("private_kib", 0) for p in procs) / 1024,
                        "rss_mib": sum(p.get("rss_kib", 0) for p in procs) / 1024,
                        "processes": len(procs),
                        "tasks": left0 - tasks_left()[0],
                        "used_mib": (measure.used_kib() - before) / 1024})
        t0 = time.perf_counter()
        with ctx.ui.task(f"density: delete {len(tracker.made)} containers, {rt.name}", None):
            tracker.cleanup()
        out["teardown_s"] = time.perf_counter() - t0
    out["leaks"] = {k: v for k, v in measure.leaks(ctx, rt).items() if v}
    # How far "used" is from where it started once everything is gone and the kernel has
    # settled: the noise (other work on the machine) in the system-wide figures above.
    out["used_after_teardown_mib"] = (measure.settled_used_kib()[0] - before) / 1024
    return out


def _wasm_ratios(ramps: dict[str, Any], res: Result) -> None:
    """The Wasm containers against yacr's busybox containers at each N, system-wide and per
    container (PSS, and own memory): the Wasm issue's figures."""
    w, b = ramps.get("yacr-wasm"), ramps.get("yacr")
    if not w or not b:
        return
    bn = {p["n"]: p for p in b["points"]}
    for p in w["points"]:
        q = bn.get(p["n"])
        if q is None:
            continue
        for key, series in (("used_mib", "system-wide"), ("pss_mib", "PSS"),
                            ("private_mib", "own memory")):
            if q.get(key):
                res.add("yacr-wasm / yacr busybox, sleeping containers", series, "x",
                        [p.get(key, 0) / q[key]], p["n"], ratios=False)


def plot(data: dict[str, Any], out: str) -> list[str]:
    from yacr.bench import plots

    return plots.density(data, out)


@registry.scenario("density", "Density: N sequential starts, N sleeping containers",
                   order=40, plot=plot)
def run(ctx: Context) -> Result:
    res = Result()
    pairs = ctx.with_bundles("sleep", res)
    cap = ctx.cache.get("max_containers")
    points = QUICK if ctx.quick else FULL
    if cap:
        points = tuple(p for p in points if p <= cap) or (cap,)
    ramps = {}
    for rt, bundle in pairs:
        ramps[rt.name] = ramp(ctx, rt, bundle, points)
    for name, r in ramps.items():
        for p in r["points"]:
            res.add("boot time, N sequential starts", name, "s", [p["boot_s"]], p["n"])
    for name, r in ramps.items():
        prev = 0
        for p in r["points"]:
            res.add("single start, in the stretch up to N", name, "ms",
                    r["starts_ms"][prev:p["n"]], p["n"])
            prev = p["n"]
    for name, r in ramps.items():
        for p in r["points"]:
            res.add("memory of N sleeping containers (PSS)", name, "MiB", [p["pss_mib"]],
                    p["n"])
    for name, r in ramps.items():
        for p in r["points"]:
            res.add("memory of N sleeping containers (private)", name, "MiB",
                    [p.get("private_mib", 0.0)], p["n"])
    for name, r in ramps.items():
        for p in r["points"]:
            res.add("per container (PSS)", name, "MiB", [p["pss_mib"] / p["n"]], p["n"])
    for name, r in ramps.items():
        for p in r["points"]:
            res.add("per container (private)", name, "MiB",
                    [p.get("private_mib", 0.0) / p["n"]], p["n"])
    for name, r in ramps.items():
        for p in r["points"]:
            res.add("processes per container", name, "", [p["processes"] / p["n"]], p["n"],
                    ratios=False)
    for name, r in ramps.items():
        for p in r["points"]:
            res.add("system memory used by N sleeping containers", name, "MiB",
                    [p["used_mib"]], p["n"], note="kernel included; noisy")
    _wasm_ratios(ramps, res)
    drift = ", ".join(f"{name} {r['used_after_teardown_mib']:+.0f} MiB"
                      for name, r in ramps.items())
    res.notes.append("system memory used: from a settled start (clean caches dropped, so "
                     "the memory cgroups of deleted containers are freed, then `used` still "
                     "for 0.5 s); page cache, reclaimable slab and the kernel's per-CPU "
                     "free pages excluded")
    if not all(r.get("caches_dropped") for r in ramps.values()):
        res.notes.append("the caches could not be dropped (not root): the system-wide "
                         "figures include what earlier ramps left for the kernel to free")
    res.notes.append(f"system memory used, once each ramp was deleted and the kernel "
                     f"settled (noise): {drift}")
    for name, r in ramps.items():
        if r["stopped"]:
            res.notes.append(f"{name}: {r['stopped']}")
        if r["leaks"]:
            res.notes.append(f"{name} LEFT BEHIND after delete --force: {r['leaks']}")
    res.raw = {"ramps": ramps, "points": list(points)}
    res.notes.append("boot time: summed wall time of `run --detach` of busybox `sleep`, one "
                     "after another, containers left running; memory read at the same N.")
    res.notes.append("memory: every process in the containers' cgroups or naming the "
                     "runtime's --root; PSS splits shared pages between the processes "
                     "mapping them, private = Private_Clean + Private_Dirty (pages no other "
                     "process maps). Every bundle uses one read-only busybox rootfs (one "
                     "binary in the page cache, as an image's layers are shared).")
    if "runsc" in ramps:
        res.notes.append("runsc: each container is a sandbox (the Sentry), a gofer and ptrace "
                         "stubs, all counted (see `processes per container`).")
    return res
