"""Lifecycle: `run` of busybox `true`, and the create/start/wait/delete sequence containerd uses.

`run` of `true` is the README's headline. It is timed exactly as it always
was, so figures stay comparable from one release to the next: one hyperfine
session over every runtime (-N, warm-up, medians), then the peak RSS of each
`run` from a small C parent. crun's namespace wrapper is timed alone in the
same session, so its share of crun's figure is visible.

containerd does not call `run`: its shim calls create, start, (waits for the
exit), and delete, each a separate runtime process. That sequence is timed
per step, interleaved across runtimes; the wait is the time from `start`
returning to the container's exit, seen through a pidfd.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

from yacr.bench import measure, registry
from yacr.bench.registry import Result, Skip

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from yacr.bench.registry import Context
    from yacr.bench.runtimes import Runtime

STEPS = ("create", "start", "wait", "delete")
SEQUENCE = "create+start+wait+delete"


def hyperfine(commands: dict[str, list[str]], runs: int, warmup: int = 3) -> dict[str, Any]:
    """One hyperfine session over all commands; returns name -> timing in ms."""
    import shlex
    import statistics

    if shutil.which("hyperfine") is None:
        raise Skip("hyperfine is not installed (apt-get install hyperfine)")
    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        argv = ["hyperfine", "-N", "--style", "basic", "--warmup", str(warmup), "--runs",
                str(runs), "--export-json", tmp.name]
        for name, cmd in commands.items():
            argv += ["-n", name, " ".join(shlex.quote(c) for c in cmd)]
        p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise measure.BenchError(f"hyperfine failed: {p.stderr.strip()[-800:]}")
        with open(tmp.name) as f:
            data = json.load(f)
    out = {}
    for r in data["results"]:
        t = [x * 1000 for x in r["times"]]
        out[r["command"]] = {"times_ms": t, "median_ms": statistics.median(t),
                             "mean_ms": r["mean"] * 1000, "stddev_ms": (r["stddev"] or 0) * 1000,
                             "user_ms": r["user"] * 1000, "system_ms": r["system"] * 1000}
    return out


def sequence(ctx: Context) -> tuple[dict[str, dict[str, list[float]]], dict[str, str]]:
    """The create/start/wait/delete samples per runtime (wall and CPU per step), measured
    once per session and shared with the CPU scenario."""
    if "sequence" in ctx.cache:
        return ctx.cache["sequence"]
    res = Result()
    pairs = ctx.with_bundles("true", res)
    pids = os.path.join(ctx.env.work, "pids")
    os.makedirs(pids, exist_ok=True)
    with measure.Tracker(ctx) as tracker:

        def job(rt: Runtime, bundle: str) -> dict[str, float]:
            cid = ctx.cid(rt, "s")
            pidfile = os.path.join(pids, cid)
            tracker.add(rt, cid)
            c = measure.spawn(ctx.env, rt.cmd("create", "--bundle", bundle, "--pid-file",
                                              pidfile, cid))
            pid = measure.read_pid(pidfile)
            s = measure.spawn(ctx.env, rt.cmd("start", cid))
            w = measure.wait_exit(pid)
            d = measure.spawn(ctx.env, rt.cmd("delete", cid))
            tracker.done(cid)
            os.unlink(pidfile)
            return {"create": c.wall_ms, "start": s.wall_ms, "wait": w, "delete": d.wall_ms,
                    SEQUENCE: c.wall_ms + s.wall_ms + w + d.wall_ms,
                    "create cpu": c.cpu_ms, "start cpu": s.cpu_ms, "delete cpu": d.cpu_ms,
                    "create+start+delete cpu": c.cpu_ms + s.cpu_ms + d.cpu_ms,
                    "create+start+delete user": c.user_ms + s.user_ms + d.user_ms,
                    "create+start+delete sys": c.sys_ms + s.sys_ms + d.sys_ms}

        jobs = {rt.name: (lambda rt=rt, b=b: job(rt, b)) for rt, b in pairs}
        got = measure.interleave(ctx, jobs, ctx.runs, ctx.warmup,
                                 "lifecycle: create, start, wait, delete")
    ctx.cache["sequence"] = (got, res.skipped)
    return got, res.skipped


def plot(data: dict[str, Any], out: str) -> list[str]:
    from yacr.bench import plots

    return plots.lifecycle(data, out)


@registry.scenario("lifecycle", "Lifecycle: `run` of `true`, and create/start/wait/delete",
                   order=10, plot=plot)
def run(ctx: Context) -> Result:
    res = Result()
    pairs = ctx.with_bundles("true", res)
    if not pairs:
        raise Skip("no runtime can run the `true` workload")
    cmds = {rt.name: rt.cmd("run", "--bundle", b, ctx.cid(rt, "run")) for rt, b in pairs}
    for rt, _ in pairs:
        if rt.wrapper():
            cmds[f"{rt.name}-wrapper-only"] = [*rt.wrapper(), "/bin/true"]
    # The Wasm issue's target: a Wasm hello-world `run` against runc's busybox `true`, in the
    # same hyperfine session.
    for rt, _ in pairs:
        if rt.kind != "native":
            try:
                cmds[f"{rt.name}-hello"] = rt.cmd("run", "--bundle", ctx.bundle(rt, "hello"),
                                                  ctx.cid(rt, "hello"))
            except Skip as e:
                ctx.ui.print(f"  no hello for {rt.name}: {e}")
    runs = ctx.runs
    with ctx.ui.task(f"lifecycle: hyperfine, run of true ({runs} runs x {len(cmds)})", None):
        times = hyperfine(cmds, runs, ctx.warmup)
    for name, t in times.items():
        if name.endswith("-wrapper-only"):
            res.add("namespace wrapper alone", name.removesuffix("-wrapper-only"), "ms",
                    t["times_ms"], note="runs /bin/true")
        elif name.endswith("-hello"):
            res.add("run of hello", name.removesuffix("-hello"), "ms", t["times_ms"],
                    note="ratios to the references' `run` of busybox `true`",
                    versus="run of true")
        else:
            res.add("run of true", name, "ms", t["times_ms"])
    rss_runs = min(runs, 3 if ctx.quick else 10)
    rss: dict[str, list[float]] = {}
    with ctx.ui.task("lifecycle: peak RSS of run", rss_runs * len(pairs)) as advance:
        for _ in range(rss_runs):
            for rt, _b in pairs:
                rss.setdefault(rt.name, []).append(
                    measure.peak_rss_kib(ctx.env, cmds[rt.name]) / 1024)
                advance()
    for name, v in rss.items():
        res.add("peak RSS of run", name, "MiB", v)
    res.raw["hyperfine"] = {k: {f: v for f, v in t.items() if f != "times_ms"}
                            for k, t in times.items()}

    got, _ = sequence(ctx)
    for step in (*STEPS, SEQUENCE):
        for name, fields in got.items():
            # the wait is ~0 for runtimes whose start returns after the exec: no ratio
            res.add(step, name, "ms", fields[step], ratios=step != "wait")
    res.notes.append("run of true: one hyperfine session (-N), medians; peak RSS: ru_maxrss of "
                     "the runtime and the children it reaped.")
    res.notes.append("create, start, wait, delete: separate invocations as containerd's shim "
                     "makes them, runtimes interleaved round by round; wait = from start "
                     "returning to the container's exit (pidfd).")
    for rt, _ in pairs:
        if rt.note:
            res.notes.append(f"{rt.name} runs {rt.note}; `namespace wrapper alone` is the "
                             "wrapper's own cost, included in its figures.")
    return res
