"""Lifecycle: `run` of busybox `true`, timed by hyperfine, and the peak RSS of each runtime."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import tempfile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from yacr.bench.runtimes import Environment, Runtime


def hyperfine(commands: dict[str, list[str]], runs: int, warmup: int = 3) -> dict[str, Any]:
    """One hyperfine session over all commands; returns name -> timing in ms."""
    import shlex

    if shutil.which("hyperfine") is None:
        raise SystemExit("hyperfine is not installed (apt-get install hyperfine)")
    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        argv = ["hyperfine", "-N", "--style", "basic", "--warmup", str(warmup), "--runs",
                str(runs), "--export-json", tmp.name]
        for name, cmd in commands.items():
            argv += ["-n", name, " ".join(shlex.quote(c) for c in cmd)]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        data = json.load(open(tmp.name))
    out = {}
    for r in data["results"]:
        t = [x * 1000 for x in r["times"]]
        out[r["command"]] = {"median_ms": statistics.median(t), "mean_ms": r["mean"] * 1000,
                             "stddev_ms": (r["stddev"] or 0) * 1000, "min_ms": min(t),
                             "max_ms": max(t), "runs": len(t),
                             "user_ms": r["user"] * 1000, "system_ms": r["system"] * 1000}
    return out


def peak_rss_kib(env: Environment, cmd: list[str], runs: int) -> float | None:
    """Median of the runtime process's peak RSS (ru_maxrss of wait4, from a small parent)."""
    from yacr.bench.runtimes import _PEAKRSS_C, compiled_helper

    helper = compiled_helper(env, "peakrss", _PEAKRSS_C)
    if helper is None:
        return None
    vals = []
    for _ in range(runs):
        p = subprocess.run([helper, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr.strip()}")
        vals.append(int(p.stderr.strip().splitlines()[-1].split()[1]))
    return statistics.median(vals)


def run(rts: list[Runtime], env: Environment, runs: int) -> dict[str, Any]:
    bundle = env.bundle("true", ["true"])
    cmds = {rt.name: rt.cmd("run", "--bundle", bundle, f"bench-{rt.name}") for rt in rts}
    wrappers = {rt.name: rt.prefix[: rt.prefix.index(rt.exe)] for rt in rts
                if rt.prefix[0] != rt.exe and rt.name != "yacr"}
    for name, w in wrappers.items():
        if w:
            cmds[f"{name}-wrapper-only"] = [*w, "/bin/true"]
    times = hyperfine(cmds, runs)
    rss = {rt.name: peak_rss_kib(env, cmds[rt.name], min(runs, 10)) for rt in rts}
    res: dict[str, Any] = {"run_true": times, "peak_rss_kib": rss,
                           "versions": {rt.name: rt.version() for rt in rts},
                           "notes": {rt.name: rt.note for rt in rts if rt.note}}
    y = times.get("yacr", {}).get("median_ms")
    ratios = {}
    for other in ("runc", "crun"):
        if y and other in times:
            ratios[f"yacr/{other}"] = y / times[other]["median_ms"]
            if other in rss and "yacr" in rss:
                ratios[f"rss yacr/{other}"] = rss["yacr"] / rss[other]
    res["ratios"] = ratios
    print(f"{'runtime':<20}{'median ms':>10}{'mean ± sd':>16}{'peak RSS MiB':>14}")
    for name, t in times.items():
        r = rss.get(name)
        print(f"{name:<20}{t['median_ms']:>10.1f}{t['mean_ms']:>9.1f} ± {t['stddev_ms']:<4.1f}"
              f"{(r / 1024 if r else 0):>14.1f}")
    for k, v in ratios.items():
        print(f"  {k}: {v:.2f}x")
    return res
