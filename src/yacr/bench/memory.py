"""Memory: what a runtime costs while it works, and what it leaves resident per container.

- Peak RSS during `create`: ru_maxrss of the runtime process and the children
  it reaped, read by a small C parent (a child of this Python process would
  inherit its high-water mark).
- Resident per created-but-not-started container: K containers are created,
  then every process that belongs to them is found (their cgroups, or a
  command line naming the runtime's --root) and its PSS summed per container.
  This is where a runtime that keeps an interpreter waiting for `start` pays.
- Per running container: K containers running busybox `sleep`, the same count.
  PSS shares pages between the processes that map them, so a binary mapped by
  every container is counted once overall rather than once per container.

What the kernel holds per container (namespaces, cgroups, mounts, page tables)
is only visible system-wide, and 20 containers are lost in the noise of a
shared machine: the density scenario reads it over 500 to 1500 containers.
"""

from __future__ import annotations

import os
import time

from yacr.bench import measure, registry
from yacr.bench.registry import Result

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from yacr.bench.registry import Context
    from yacr.bench.runtimes import Runtime


KEYS = ("pss", "private", "rss", "procs")


def per_container(ctx: Context, rt: Runtime, cids: list[str]) -> dict[str, list[float]]:
    """PSS, private pages and RSS (MiB) and process count per container, from one scan
    of /proc."""
    procs = measure.attributed(ctx, rt)
    by: dict[str, dict[str, float]] = {c: dict.fromkeys(KEYS, 0.0) for c in cids}
    for p in procs:
        if p["cid"] in by:
            b = by[p["cid"]]
            for k in ("pss", "private", "rss"):
                b[k] += p.get(f"{k}_kib", 0) / 1024
            b["procs"] += 1
    return {k: [by[c][k] for c in cids] for k in KEYS}


def resident(ctx: Context, rt: Runtime, bundle: str, k: int, start: bool,
             tracker: measure.Tracker) -> dict[str, Any]:
    """Create (and maybe start) k containers, measure them, delete them."""
    label = "running" if start else "created"
    cids = []
    with ctx.ui.task(f"memory: {k} {label} containers, {rt.name}", k) as advance:
        for _ in range(k):
            cid = ctx.cid(rt, "m")
            tracker.add(rt, cid)
            if start:
                measure.spawn(ctx.env, rt.cmd("run", "--detach", "--bundle", bundle, cid))
            else:
                measure.spawn(ctx.env, rt.cmd("create", "--bundle", bundle, cid))
            cids.append(cid)
            advance()
    time.sleep(0.5)  # let the last container settle (exec, page faults) before reading
    got: dict[str, Any] = per_container(ctx, rt, cids)
    tracker.cleanup()
    return got


def plot(data: dict[str, Any], out: str) -> list[str]:
    from yacr.bench import plots

    return plots.memory(data, out)


@registry.scenario("memory", "Memory: peak RSS of create, resident per container",
                   order=30, plot=plot)
def run(ctx: Context) -> Result:
    res = Result()
    pairs = ctx.with_bundles("sleep", res)
    runs = min(ctx.runs, 3 if ctx.quick else 10)
    k = 3 if ctx.quick else 20
    with measure.Tracker(ctx) as tracker:

        def peak(rt: Runtime, bundle: str) -> dict[str, float]:
            cid = ctx.cid(rt, "p")
            tracker.add(rt, cid)
            v = measure.peak_rss_kib(ctx.env, rt.cmd("create", "--bundle", bundle, cid))
            measure.spawn(ctx.env, rt.cmd("delete", "--force", cid))
            tracker.done(cid)
            return {"peak": v / 1024}

        jobs = {rt.name: (lambda rt=rt, b=b: peak(rt, b)) for rt, b in pairs}
        got = measure.interleave(ctx, jobs, runs, 1, "memory: peak RSS of create")
        for name, f in got.items():
            res.add("peak RSS of create", name, "MiB", f["peak"])

        created = {rt.name: resident(ctx, rt, b, k, False, tracker) for rt, b in pairs}
        running = {rt.name: resident(ctx, rt, b, k, True, tracker) for rt, b in pairs}
    for what, data in (("created container", created), ("running container", running)):
        for name, d in data.items():
            res.add(f"PSS per {what}", name, "MiB", d["pss"])
        for name, d in data.items():
            res.add(f"private per {what}", name, "MiB", d["private"])
        for name, d in data.items():
            res.add(f"RSS per {what}", name, "MiB", d["rss"])
        for name, d in data.items():
            res.add(f"processes per {what}", name, "", d["procs"], ratios=False)
    res.raw["containers"] = k
    res.notes.append(f"peak RSS of create: median of {runs}; resident: {k} containers per "
                     "runtime, every process in their cgroups or naming the runtime's --root, "
                     "per container: PSS (shared pages split between the processes mapping "
                     "them), private (Private_Clean + Private_Dirty of smaps_rollup: pages no "
                     "other process maps), RSS.")
    res.notes.append("created = `create` done, `start` not yet; running = busybox `sleep` "
                     "(yacr-wasm: probe.wasm sleep). "
                     "Bundles carry yacr's default seccomp profile; all share one read-only "
                     "busybox rootfs, as containers of one image share its layers.")
    if any(rt.name == "runsc" for rt, _ in pairs):
        res.notes.append("runsc: a container is its sandbox (the Sentry), its gofer and its "
                         "ptrace stubs, all in the container's cgroup and all counted.")
    if os.geteuid() != 0:
        res.notes.append("not run as root: other users' processes could not be read")
    return res
