"""Concurrency: N containers going through create, start, wait and delete all at once.

What a node sees when a deployment scales up: N runtime invocations racing
for the same --root, cgroup parents and kernel locks. The batch's wall time
is from releasing N threads together to the last delete, for N = 50 and 200,
runtimes taking turns batch by batch. Then nothing may be left: no state
directory under --root, no cgroup directory, mount or process naming the
batch's containers. Failures and leaks are reported, never hidden; leftovers
are force-deleted afterwards so the next batch starts clean.
"""

from __future__ import annotations

import os
import threading
import time

from yacr.bench import measure, registry
from yacr.bench.registry import Result

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from yacr.bench.registry import Context
    from yacr.bench.runtimes import Runtime

FULL = (50, 200)
QUICK = (5, 20)


def batch(ctx: Context, rt: Runtime, bundle: str, n: int) -> dict[str, Any]:
    """N threads, one container each, released together; returns the wall time, the
    failures and the leaks."""
    pids = os.path.join(ctx.env.work, "pids")
    os.makedirs(pids, exist_ok=True)
    cids = [ctx.cid(rt, f"n{n}x") for _ in range(n)]
    errors: list[str] = []
    failed: list[str] = []
    gate = threading.Barrier(n + 1)
    lock = threading.Lock()

    def one(cid: str) -> None:
        pidfile = os.path.join(pids, cid)
        gate.wait()
        try:
            measure.spawn(ctx.env, rt.cmd("create", "--bundle", bundle, "--pid-file", pidfile,
                                          cid), timeout=300)
            pid = measure.read_pid(pidfile)
            measure.spawn(ctx.env, rt.cmd("start", cid), timeout=300)
            measure.wait_exit(pid, timeout=300)
            measure.spawn(ctx.env, rt.cmd("delete", cid), timeout=300)
        except (measure.BenchError, OSError, ValueError) as e:
            with lock:
                errors.append(f"{cid}: {e}")
                failed.append(cid)
        finally:
            try:
                os.unlink(pidfile)
            except OSError:
                pass

    threads = [threading.Thread(target=one, args=(c,), daemon=True) for c in cids]
    for t in threads:
        t.start()
    gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    # A failed sequence stopped half-way (its delete never ran): force-delete those first,
    # so that what the check finds is what a completed delete left behind. Earlier
    # batches left nothing (or were cleaned), so whatever is there is this batch's.
    measure.force_delete(ctx.env, [(rt, c) for c in failed])
    leaked = {k: v for k, v in measure.leaks(ctx, rt).items() if v}
    if leaked:
        measure.force_delete(ctx.env, [(rt, c) for c in cids])
    return {"wall_s": wall, "errors": errors, "leaks": leaked}


def plot(data: dict[str, Any], out: str) -> list[str]:
    from yacr.bench import plots

    return plots.concurrency(data, out)


@registry.scenario("concurrency", "Concurrency: N parallel create+start+wait+delete",
                   order=60, plot=plot)
def run(ctx: Context) -> Result:
    res = Result()
    pairs = ctx.with_bundles("true", res)
    sizes = QUICK if ctx.quick else FULL
    rounds = 1 if ctx.quick else 3
    got: dict[int, dict[str, list[dict[str, Any]]]] = {n: {} for n in sizes}
    with ctx.ui.task("concurrency: parallel batches",
                     sum(sizes) * rounds * len(pairs)) as advance:
        for n in sizes:
            for i in range(rounds):
                k = i % len(pairs)
                for rt, bundle in pairs[k:] + pairs[:k]:
                    b = batch(ctx, rt, bundle, n)
                    got[n].setdefault(rt.name, []).append(b)
                    advance(n)
                    if b["errors"]:
                        ctx.ui.warn(f"{rt.name}, {n} parallel: {len(b['errors'])} failed, "
                                    f"e.g. {b['errors'][0][:300]}")
                    if b["leaks"]:
                        ctx.ui.warn(f"{rt.name}, {n} parallel: left behind {b['leaks']}")
    for n in sizes:
        for name, bs in got[n].items():
            res.add("wall time, N parallel", name, "s", [b["wall_s"] for b in bs], n)
    for n in sizes:
        for name, bs in got[n].items():
            res.add("failed of N", name, "", [len(b["errors"]) for b in bs], n)
    for n in sizes:
        for name, bs in got[n].items():
            res.add("leaked items after the batch", name, "",
                    [sum(len(v) for v in b["leaks"].values()) for b in bs], n)
    res.raw = {"batches": {str(n): v for n, v in got.items()}, "rounds": rounds}
    bad = [(n, name) for n in sizes for name, bs in got[n].items()
           if any(b["leaks"] for b in bs)]
    res.notes.append(f"{rounds} round(s) per N, runtimes taking turns; after each batch the "
                     "--root, every cgroup hierarchy, the mount table and /proc are checked "
                     "for the batch's containers.")
    res.notes.append("leaks: none" if not bad else
                     "LEAKS: " + ", ".join(f"{name} at N={n}" for n, name in bad))
    return res
