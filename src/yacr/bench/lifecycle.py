"""Lifecycle: `run` of busybox `true`, and the create/start/wait/delete sequence containerd uses.

Every figure here is measured twice, side by side: with no seccomp profile in
the bundle (runc's template, how Kubernetes runs pods unless asked otherwise)
and with yacr's default profile (`yacr spec --seccomp`, as containerd and podman
pass one). Which one a runtime wins can flip between the two: runc and crun
compile a profile on every start, yacr reads its cached program. Each figure's
`param` is the configuration, shown in a `seccomp` column.

`run` of `true` is the README's headline. It is timed with the runtimes and
both configurations interleaved round by round (the first one rotating) after
warm-up rounds, so that load from elsewhere on a shared machine falls on every
series alike; a Wasm hello and crun's namespace wrapper alone take part in the
same rounds. The same invocations give the CPU scenario its user and system
time. One hyperfine session over the same commands (-N, each command's runs
back to back) is kept beside it as a cross-check. Then the peak RSS of each
`run`, from a small C parent.

containerd does not call `run`: its shim calls create, start, (waits for the
exit), and delete, each a separate runtime process. That sequence is timed
per step, interleaved across runtimes; the wait is the time from `start`
returning to the container's exit, seen through a pidfd (for gVisor, the
sandbox's exit, which follows its container's). `state` of the created
container, and `kill` of a running busybox `sleep`, are timed in the same
rounds: the other commands a shim calls.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

from yacr.bench import measure, registry
from yacr.bench.registry import Result, Skip
from yacr.bench.runtimes import SECCOMP_CONFIGS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from yacr.bench.registry import Context
    from yacr.bench.runtimes import Runtime

STEPS = ("create", "state", "start", "wait", "delete", "kill")
"""What the sequence times: `state` of the created container, and `kill` (SIGKILL) of a
running `sleep` container, beside containerd's four steps."""
SEQUENCE = "create+start+wait+delete"
FLOOR = "interpreter start alone"
"""yacr's interpreter started as the launcher starts it, running nothing: the floor under
every yacr command, timed in yacr's rounds of the sequence."""
CONFIG_LABEL = "seccomp"
WRAPPER = "-wrapper-only"
HELLO = "-hello"

Pairs = dict  # seccomp configuration -> [(Runtime, bundle)]


def key(name: str, config: str) -> str:
    """How a series is named in one interleaved session that mixes both configurations."""
    return f"{name}|{config}"


def split(k: str) -> tuple[str, str]:
    name, _, config = k.rpartition("|")
    return name, config


def pairs(ctx: Context, workload: str, res: Result) -> Pairs:
    """Per seccomp configuration, the runtimes that can run `workload` and their bundles."""
    return {label: ctx.with_bundles(workload, res, on) for label, on in SECCOMP_CONFIGS}


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
    """The create/state/start/wait/delete and kill samples per runtime and configuration
    (keyed by `key`), wall and CPU per step; measured once per session and shared with
    the CPU scenario."""
    if "sequence" in ctx.cache:
        return ctx.cache["sequence"]
    res = Result()
    true = pairs(ctx, "true", res)
    sleep = pairs(ctx, "sleep", res)
    pids = os.path.join(ctx.env.work, "pids")
    os.makedirs(pids, exist_ok=True)
    with measure.Tracker(ctx) as tracker:

        def create(rt: Runtime, bundle: str, tag: str) -> tuple[str, int, measure.Run]:
            cid = ctx.cid(rt, tag)
            pidfile = os.path.join(pids, cid)
            tracker.add(rt, cid)
            c = measure.spawn(ctx.env, rt.cmd("create", "--bundle", bundle, "--pid-file",
                                              pidfile, cid))
            pid = measure.read_pid(pidfile)
            os.unlink(pidfile)
            return cid, pid, c

        def job(rt: Runtime, bundle: str, sleeper: str | None, floor: bool) -> dict[str, float]:
            cid, pid, c = create(rt, bundle, "s")
            st = measure.spawn(ctx.env, rt.cmd("state", cid))
            s = measure.spawn(ctx.env, rt.cmd("start", cid))
            w = measure.wait_exit(pid)
            d = measure.spawn(ctx.env, rt.cmd("delete", cid))
            tracker.done(cid)
            got = {"create": c.wall_ms, "state": st.wall_ms, "start": s.wall_ms, "wait": w,
                   "delete": d.wall_ms, SEQUENCE: c.wall_ms + s.wall_ms + w + d.wall_ms,
                   "create cpu": c.cpu_ms, "start cpu": s.cpu_ms, "delete cpu": d.cpu_ms,
                   "create+start+delete cpu": c.cpu_ms + s.cpu_ms + d.cpu_ms,
                   "create+start+delete user": c.user_ms + s.user_ms + d.user_ms,
                   "create+start+delete sys": c.sys_ms + s.sys_ms + d.sys_ms}
            if sleeper:
                cid, pid, _ = create(rt, sleeper, "k")
                measure.spawn(ctx.env, rt.cmd("start", cid))
                k = measure.spawn(ctx.env, rt.cmd("kill", cid, "KILL"))
                measure.wait_exit(pid)
                measure.spawn(ctx.env, rt.cmd("delete", cid))
                tracker.done(cid)
                got["kill"] = k.wall_ms
            if floor:
                got[FLOOR] = measure.spawn(ctx.env, interpreter_alone(),
                                           extra_env=LAUNCHER_ENV).wall_ms
            return got

        jobs = {}
        for config, ps in true.items():
            sleepers = {rt.name: b for rt, b in sleep.get(config, [])}
            for rt, b in ps:
                z = sleepers.get(rt.name)
                floor = rt.name == "yacr" and config == SECCOMP_CONFIGS[0][0]
                jobs[key(rt.name, config)] = (lambda rt=rt, b=b, z=z, f=floor: job(rt, b, z, f))
        got = measure.interleave(ctx, jobs, ctx.runs, ctx.warmup,
                                 "lifecycle: create, state, start, wait, delete; kill")
    ctx.cache["sequence"] = (got, res.skipped)
    return got, res.skipped


# What the launcher sets in the interpreter's environment (launcher/yacr-launch.c).
LAUNCHER_ENV = {"LC_ALL": "C"}


def interpreter_alone() -> list[str]:
    """The command line yacr's launcher gives the interpreter (in LAUNCHER_ENV), with `pass`
    for the script: what no change to yacr's own code can make cheaper."""
    import sys

    return [os.path.realpath(sys.executable), "-IS", "-X", "frozen_modules=on", "-c", "pass"]


def commands(ctx: Context, by: Pairs) -> dict[str, list[str]]:
    """What `run of true` times, keyed by `key`: each runtime's `run` of `true` in each
    configuration (the id is appended per run), crun's namespace wrapper alone (once),
    and a Wasm runtime's hello (the Wasm issue's target: a Wasm hello against runc's
    busybox `true`, in the same rounds)."""
    if "run commands" in ctx.cache:
        return ctx.cache["run commands"]
    cmds = {}
    for config, ps in by.items():
        cmds.update({key(rt.name, config): rt.cmd("run", "--bundle", b) for rt, b in ps})
    first = next(iter(by.values()), [])
    for rt, _ in first:
        if rt.wrapper():
            cmds[key(f"{rt.name}{WRAPPER}", SECCOMP_CONFIGS[0][0])] = [*rt.wrapper(),
                                                                       "/bin/true"]
    for (config, on), ps in zip(SECCOMP_CONFIGS, by.values(), strict=True):
        for rt, _ in ps:
            if rt.kind != "native":
                try:
                    cmds[key(f"{rt.name}{HELLO}", config)] = rt.cmd(
                        "run", "--bundle", ctx.bundle(rt, "hello", on))
                except Skip as e:
                    ctx.ui.print(f"  no hello for {rt.name}: {e}")
    ctx.cache["run commands"] = cmds
    return cmds


def runtimes_by(by: Pairs) -> dict[str, Runtime]:
    return {rt.name: rt for ps in by.values() for rt, _ in ps}


def runtime_of(k: str, rts: dict[str, Runtime]) -> Runtime | None:
    name = split(k)[0]
    return None if name.endswith(WRAPPER) else rts[name.removesuffix(HELLO)]


def runs_of_true(ctx: Context, by: Pairs) -> dict[str, dict[str, list[float]]]:
    """Wall, user and system ms of every command of `commands`, interleaved; measured once
    per session and shared with the CPU scenario."""
    if "run" in ctx.cache:
        return ctx.cache["run"]
    cmds = commands(ctx, by)
    rts = runtimes_by(by)

    def job(k: str) -> dict[str, float]:
        cmd = cmds[k]
        rt = runtime_of(k, rts)
        if rt is not None:
            cmd = [*cmd, ctx.cid(rt, "run")]
        r = measure.spawn(ctx.env, cmd)
        return {"wall": r.wall_ms, "user": r.user_ms, "sys": r.sys_ms, "cpu": r.cpu_ms}

    jobs = {k: (lambda k=k: job(k)) for k in cmds}
    got = measure.interleave(ctx, jobs, ctx.runs, ctx.warmup, "lifecycle: run of true")
    ctx.cache["run"] = got
    return got


def plot(data: dict[str, Any], out: str) -> list[str]:
    from yacr.bench import plots

    return plots.lifecycle(data, out)


def _add_runs(res: Result, metric: str, times: dict[str, list[float]]) -> None:
    """`run of true` (and the hello, and the wrapper) as measurements, per configuration."""
    for k, t in times.items():
        name, config = split(k)
        if not name.endswith((WRAPPER, HELLO)):
            res.add(metric, name, "ms", t, config)
    for k, t in times.items():
        name, config = split(k)
        if name.endswith(HELLO):
            res.add(metric.replace("run of true", "run of hello"), name.removesuffix(HELLO),
                    "ms", t, config, note="ratios to the references' `run` of busybox `true`",
                    versus=metric)
    for k, t in times.items():
        name, config = split(k)
        if name.endswith(WRAPPER) and metric == "run of true":
            res.add("namespace wrapper alone", name.removesuffix(WRAPPER), "ms", t, config,
                    note="runs /bin/true")


def config_note() -> str:
    return ("seccomp `none`: the bundle has no linux.seccomp (runc's template, as Kubernetes "
            "runs pods unless asked); `default profile`: yacr's default profile, the one "
            "`yacr spec --seccomp` writes (Docker's style, as containerd and podman pass "
            "one). The same bundle otherwise; every configuration of every runtime takes "
            "part in the same interleaved rounds.")


@registry.scenario("lifecycle", "Lifecycle: `run` of `true`, and create/start/wait/delete",
                   order=10, plot=plot)
def run(ctx: Context) -> Result:
    res = Result(param_label=CONFIG_LABEL)
    by = pairs(ctx, "true", res)
    got = runs_of_true(ctx, by)
    _add_runs(res, "run of true", {k: f["wall"] for k, f in got.items()})
    cmds = commands(ctx, by)
    rts = runtimes_by(by)
    hf = {}
    for k, c in cmds.items():
        rt = runtime_of(k, rts)
        if rt is not None and rt.name == "runsc":
            # hyperfine gives its commands the host's /dev/null as stdin, and gVisor's
            # sandbox fchowns its stdio to its own user: runsc stays out of the cross-check
            continue
        hf[k] = [*c, ctx.cid(rt, "hf")] if rt is not None else c
    try:
        with ctx.ui.task(f"lifecycle: hyperfine cross-check ({ctx.runs} runs x {len(hf)})",
                         None):
            times = hyperfine(hf, ctx.runs, ctx.warmup)
        _add_runs(res, "run of true, hyperfine", {n: t["times_ms"] for n, t in times.items()
                                                 if not split(n)[0].endswith(WRAPPER)})
        res.raw["hyperfine"] = {k: {f: v for f, v in t.items() if f != "times_ms"}
                                for k, t in times.items()}
    except Skip as e:
        res.skipped["hyperfine cross-check"] = str(e)
    rss_runs = min(ctx.runs, 3 if ctx.quick else 10)
    rss: dict[tuple[str, str], list[float]] = {}
    n = sum(len(ps) for ps in by.values())
    with ctx.ui.task("lifecycle: peak RSS of run", rss_runs * n) as advance:
        for _ in range(rss_runs):
            for config, ps in by.items():
                for rt, _b in ps:
                    cmd = [*cmds[key(rt.name, config)], ctx.cid(rt, "rss")]
                    rss.setdefault((rt.name, config), []).append(
                        measure.peak_rss_kib(ctx.env, cmd) / 1024)
                    advance()
    for (name, config), v in rss.items():
        res.add("peak RSS of run", name, "MiB", v, config)

    seq, _ = sequence(ctx)
    for step in (*STEPS, SEQUENCE, FLOOR):
        for k, fields in seq.items():
            if step in fields:
                name, config = split(k)
                # the wait is ~0 for runtimes whose start returns after the exec, and the
                # floor is compared with each command in the targets: no ratio
                res.add(step, name, "ms", fields[step], config,
                        ratios=step not in ("wait", FLOOR))
    res.notes.append(config_note())
    res.notes.append("run of true: runtimes interleaved round by round after warm-up, wall time "
                     "from spawn to reap; `run of true, hyperfine`: the same commands in one "
                     "hyperfine session (-N), each command's runs back to back (a cross-check; "
                     "a busy machine skews it). Peak RSS: ru_maxrss of the runtime and the "
                     "children it reaped (the largest one process, not a sum).")
    res.notes.append("create, start, wait, delete: separate invocations as containerd's shim "
                     "makes them, runtimes interleaved round by round; wait = from start "
                     "returning to the container's exit (pidfd). state: of the created "
                     "container; kill: SIGKILL to a running busybox `sleep`, in the same "
                     "rounds. The harness reaps every container process at once, as "
                     "containerd's shim does (it is their subreaper): runsc's delete waits "
                     "for its sandbox process to be reaped.")
    res.notes.append(f"{FLOOR}: `LC_ALL=C {' '.join(interpreter_alone()[1:])}` on yacr's "
                     "interpreter (the launcher's environment and flags), "
                     "timed in yacr's rounds of the sequence: the floor under every yacr "
                     "command, which starts that interpreter before any of yacr's code runs.")
    for rt in rts.values():
        if rt.note:
            extra = ("; `namespace wrapper alone` is the wrapper's own cost, included in its "
                     "figures" if rt.wrapper() else "")
            res.notes.append(f"{rt.name} runs {rt.note}{extra}.")
    return res
