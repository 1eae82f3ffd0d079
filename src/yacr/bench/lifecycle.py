"""Lifecycle: `run` of busybox `true`, and the create/start/wait/delete sequence containerd uses.

`run` of `true` is the README's headline. It is timed with the runtimes
interleaved round by round (the first one rotating) after warm-up rounds, so
that load from elsewhere on a shared machine falls on every runtime alike;
a Wasm hello and crun's namespace wrapper alone take part in the same rounds.
The same invocations give the CPU scenario its user and system time. One
hyperfine session over the same commands (-N, each command's runs back to
back) is kept beside it as a cross-check, and is how the README's figures
were first measured. Then the peak RSS of each `run`, from a small C parent.

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


def commands(ctx: Context, pairs: list[tuple[Runtime, str]]) -> dict[str, list[str]]:
    """What `run of true` times: each runtime's `run` of `true` (the id is appended per run),
    crun's namespace wrapper alone, and a Wasm runtime's hello (the Wasm issue's target:
    a Wasm hello against runc's busybox `true`, in the same rounds)."""
    if "run commands" in ctx.cache:
        return ctx.cache["run commands"]
    cmds = {rt.name: rt.cmd("run", "--bundle", b) for rt, b in pairs}
    for rt, _ in pairs:
        if rt.wrapper():
            cmds[f"{rt.name}{WRAPPER}"] = [*rt.wrapper(), "/bin/true"]
    for rt, _ in pairs:
        if rt.kind != "native":
            try:
                cmds[f"{rt.name}{HELLO}"] = rt.cmd("run", "--bundle", ctx.bundle(rt, "hello"))
            except Skip as e:
                ctx.ui.print(f"  no hello for {rt.name}: {e}")
    ctx.cache["run commands"] = cmds
    return cmds


WRAPPER = "-wrapper-only"
HELLO = "-hello"


def runtimes_by(pairs: list[tuple[Runtime, str]]) -> dict[str, Runtime]:
    return {rt.name: rt for rt, _ in pairs}


def runs_of_true(ctx: Context, pairs: list[tuple[Runtime, str]]
                 ) -> dict[str, dict[str, list[float]]]:
    """Wall, user and system ms of every command of `commands`, interleaved; measured once
    per session and shared with the CPU scenario."""
    if "run" in ctx.cache:
        return ctx.cache["run"]
    cmds = commands(ctx, pairs)
    runtimes = runtimes_by(pairs)

    def job(name: str) -> dict[str, float]:
        cmd = cmds[name]
        if not name.endswith(WRAPPER):
            rt = runtimes[name.removesuffix(HELLO)]
            cmd = [*cmd, ctx.cid(rt, "run")]
        r = measure.spawn(ctx.env, cmd)
        return {"wall": r.wall_ms, "user": r.user_ms, "sys": r.sys_ms, "cpu": r.cpu_ms}

    jobs = {name: (lambda n=name: job(n)) for name in cmds}
    got = measure.interleave(ctx, jobs, ctx.runs, ctx.warmup, "lifecycle: run of true")
    ctx.cache["run"] = got
    return got


def plot(data: dict[str, Any], out: str) -> list[str]:
    from yacr.bench import plots

    return plots.lifecycle(data, out)


def _add_runs(res: Result, metric: str, times: dict[str, list[float]], note: str = "") -> None:
    for name, t in times.items():
        if name.endswith(WRAPPER):
            continue
        if name.endswith(HELLO):
            continue
        res.add(metric, name, "ms", t, note=note)
    for name, t in times.items():
        if name.endswith(HELLO):
            res.add(metric.replace("run of true", "run of hello"), name.removesuffix(HELLO),
                    "ms", t, note="ratios to the references' `run` of busybox `true`",
                    versus=metric)
    for name, t in times.items():
        if name.endswith(WRAPPER) and metric == "run of true":
            res.add("namespace wrapper alone", name.removesuffix(WRAPPER), "ms", t,
                    note="runs /bin/true")


@registry.scenario("lifecycle", "Lifecycle: `run` of `true`, and create/start/wait/delete",
                   order=10, plot=plot)
def run(ctx: Context) -> Result:
    res = Result()
    pairs = ctx.with_bundles("true", res)
    got = runs_of_true(ctx, pairs)
    _add_runs(res, "run of true", {n: f["wall"] for n, f in got.items()})
    cmds = commands(ctx, pairs)
    hf = {n: [*c, ctx.cid(runtimes_by(pairs)[n.removesuffix(HELLO)], "hf")]
          if not n.endswith(WRAPPER) else c for n, c in cmds.items()}
    try:
        with ctx.ui.task(f"lifecycle: hyperfine cross-check ({ctx.runs} runs x {len(hf)})",
                         None):
            times = hyperfine(hf, ctx.runs, ctx.warmup)
        _add_runs(res, "run of true, hyperfine", {n: t["times_ms"] for n, t in times.items()
                                                 if not n.endswith(WRAPPER)})
        res.raw["hyperfine"] = {k: {f: v for f, v in t.items() if f != "times_ms"}
                                for k, t in times.items()}
    except Skip as e:
        res.skipped["hyperfine cross-check"] = str(e)
    rss_runs = min(ctx.runs, 3 if ctx.quick else 10)
    rss: dict[str, list[float]] = {}
    with ctx.ui.task("lifecycle: peak RSS of run", rss_runs * len(pairs)) as advance:
        for _ in range(rss_runs):
            for rt, _b in pairs:
                rss.setdefault(rt.name, []).append(
                    measure.peak_rss_kib(ctx.env, [*cmds[rt.name], ctx.cid(rt, "rss")]) / 1024)
                advance()
    for name, v in rss.items():
        res.add("peak RSS of run", name, "MiB", v)

    got, _ = sequence(ctx)
    for step in (*STEPS, SEQUENCE):
        for name, fields in got.items():
            # the wait is ~0 for runtimes whose start returns after the exec: no ratio
            res.add(step, name, "ms", fields[step], ratios=step != "wait")
    res.notes.append("run of true: runtimes interleaved round by round after warm-up, wall time "
                     "from spawn to reap; `run of true, hyperfine`: the same commands in one "
                     "hyperfine session (-N), each command's runs back to back (a cross-check; "
                     "a busy machine skews it). Peak RSS: ru_maxrss of the runtime and the "
                     "children it reaped.")
    res.notes.append("create, start, wait, delete: separate invocations as containerd's shim "
                     "makes them, runtimes interleaved round by round; wait = from start "
                     "returning to the container's exit (pidfd).")
    for rt, _ in pairs:
        if rt.note:
            res.notes.append(f"{rt.name} runs {rt.note}; `namespace wrapper alone` is the "
                             "wrapper's own cost, included in its figures.")
    return res
