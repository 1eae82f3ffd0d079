"""`yacr bench`: yacr measured side by side with runc, crun and gVisor, on bundles built here.

Every comparison runs the runtimes in one session, on the same bundle,
interleaved and after a warm-up, and reports medians, spread and ratios to
runc, crun and runsc beside absolute times, because the machines it runs on
are noisy; the machine itself (CPU, cores, kernel, cgroups, every runtime's
version) is recorded with every run, because the ratios move between
machines. Scenarios and runtimes plug in through `yacr.bench.registry`;
results go to --out as results.json, results.csv, PNG plots and summary.md,
and with --publish to a docs directory as BENCHMARKS.md beside its plots
(and into the README's bench block). Nothing here is imported by the
container hot path: `yacr bench` is a cold path, so argparse, json, rich and
matplotlib are fine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_RUNTIMES = "yacr,yacr-wasm,runc,crun,runsc"
QUICK_RUNS = 3
"""--quick's runs: enough for a median and quartiles; with five runtimes and two seccomp
configurations, more would double `make test`'s smoke test for figures nobody quotes."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (and yacr's exit status 1), never usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        from yacr.errors import UsageError

        raise UsageError(f"{self.prog}: {message}")


def parser(names: list[str]) -> argparse.ArgumentParser:
    ap = _Parser(
        prog="yacr bench", description=__doc__.splitlines()[0],
        epilog="Needs root, busybox-static and gcc, and hyperfine for a cross-check; runc, "
               "crun and runsc (gVisor) to compare with (make setup installs them all). "
               "`make bench` runs everything into build/bench; `make bench PUBLISH=docs` also "
               "rewrites docs/BENCHMARKS.md, docs/bench/*.png and the README's table.")
    ap.add_argument("scenario", nargs="*", help=f"scenarios to run: {', '.join(names)} "
                    "(default: all)")
    ap.add_argument("--runtimes", default=DEFAULT_RUNTIMES,
                    help=f"comma-separated runtimes (default {DEFAULT_RUNTIMES}); missing "
                    "ones are skipped with the reason")
    ap.add_argument("--runs", type=int, default=30,
                    help="timed runs per measurement, after warm-up (default 30; "
                    f"{QUICK_RUNS} with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="every scenario small (a CI smoke test, not figures to quote)")
    ap.add_argument("--max-containers", type=int, default=0, metavar="N",
                    help="cap the density ramp at N containers (default: 1500, memory "
                    "permitting)")
    ap.add_argument("--out", default="build/bench", help="output directory (default "
                    "build/bench)")
    ap.add_argument("--report-only", action="store_true",
                    help="measure nothing: redraw tables, plots and summary.md from "
                    "--out/results.json")
    ap.add_argument("--publish", default="", metavar="DIR",
                    help="also write DIR/BENCHMARKS.md and DIR/bench/*.png from this run (with "
                    "--report-only: from the run already in --out), e.g. --publish docs")
    ap.add_argument("--list", action="store_true", help="list scenarios and runtimes")
    return ap


def main(argv: list[str]) -> int:
    from yacr.bench import registry, ui
    from yacr.venv import add_site_packages

    add_site_packages()
    ui.need_extras()
    registry.load()
    order = sorted(registry.SCENARIOS.values(), key=lambda d: (d.order, d.name))
    names = [d.name for d in order]
    ap = parser(names)
    a = ap.parse_args(argv)
    unknown = [s for s in a.scenario if s not in registry.SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(names)}")
    if a.runs < 1:
        ap.error(f"--runs must be at least 1, not {a.runs}")
    if a.max_containers < 0:
        ap.error(f"--max-containers must be positive, not {a.max_containers}")
    if a.list:
        for d in order:
            print(f"{d.name:<12} {d.title}")
        print("runtimes:", ", ".join(registry.RUNTIMES))
        return 0
    out = os.path.abspath(a.out)
    if a.report_only:
        return _report_only(out, a.publish)
    if os.geteuid() != 0:
        print("yacr bench runs containers with runc and crun: run it as root", file=sys.stderr)
        return 1
    os.makedirs(out, exist_ok=True)
    runs = QUICK_RUNS if a.quick and a.runs == 30 else a.runs
    from yacr.bench import measure

    # from here on, this process measures and a parent reaps its orphans, as a shim would
    measure.become_reaper()
    wanted = [d for d in order if not a.scenario or d.name in a.scenario]
    try:
        rc = _measure(a, out, runs, wanted, argv)
    except KeyboardInterrupt:
        # the trackers and the final sweep have deleted every container by now
        print(f"interrupted; containers deleted, partial results in {out}", file=sys.stderr)
        return 130
    if a.publish:
        _publish(out, a.publish)
    return rc


def _publish(out: str, docs: str) -> None:
    from yacr.bench import report

    results = _load(out)
    for path in report.publish(results, out, os.path.abspath(docs)):
        print(f"published {path}")


def _measure(a: argparse.Namespace, out: str, runs: int, wanted: list[Any],
             argv: list[str]) -> int:
    import secrets

    from yacr.bench import measure, registry, report, runtimes
    from yacr.bench.ui import UI

    env = runtimes.Environment(os.path.join(out, "work"))
    info = runtimes.machine_info()
    results: dict[str, Any] = {
        "format": report.FORMAT, "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": runtimes.machine_description(info), "machine_info": info,
        "versions": runtimes.versions(env),
        "command": " ".join(["yacr bench", *argv]), "runs": runs, "quick": a.quick,
        "load": {"start": os.getloadavg()[0], "cpus": os.cpu_count()},
        "runtimes": {}, "skipped_runtimes": {}, "scenarios": {}}
    failed = False
    with UI() as ui:
        rts, skipped = runtimes.select(a.runtimes.split(","), env, say=ui.print)
        results["skipped_runtimes"] = skipped
        results["runtimes"] = {rt.name: rt.describe() for rt in rts}
        if not rts:
            ui.print("no runtime to measure")
            return 1
        left = measure.sweep(env, rts)
        if left:
            ui.warn(f"deleted {len(left)} containers an earlier session left in {env.work}")
        ctx = registry.Context(env, rts, runs, a.quick, ui, "yb" + secrets.token_hex(3))
        results["session"] = ctx.session
        if a.max_containers:
            ctx.cache["max_containers"] = a.max_containers
        ui.print(f"[bold]yacr bench[/] {results['machine']}; runtimes: "
                 + ", ".join(f"{rt.name} ({rt.version()})" for rt in rts))
        try:
            for d in wanted:
                ui.console.rule(f"[bold]{d.name}[/]: {d.title}")
                t0 = time.monotonic()
                try:
                    scen = report.to_json(d.run(ctx))
                except registry.Skip as e:
                    scen = {"status": "skipped", "reason": str(e)}
                except measure.BenchError as e:
                    scen = {"status": "failed", "reason": str(e)}
                    failed = True
                except Exception as e:  # noqa: BLE001 - one broken scenario (a plugin's)
                    # must not lose the others' measurements
                    ui.console.print_exception(max_frames=8)
                    scen = {"status": "failed", "reason": f"{type(e).__name__}: {e}"}
                    failed = True
                scen["title"] = d.title
                scen["seconds"] = round(time.monotonic() - t0, 1)
                results["scenarios"][d.name] = scen
                report.show(ui, d.name, scen)
        finally:
            results["load"]["end"] = os.getloadavg()[0]
            left = measure.sweep(env, rts)
            if left:
                ui.warn(f"deleted {len(left)} containers left over: {left[:5]}")
            report.write(results, out, ui)
        report.show_headline(ui, results)
        ui.print(f"results in {out}/: results.json, results.csv, summary.md, "
                 + ", ".join(p for s in results["scenarios"].values()
                             for p in s.get("plots", [])))
    return 1 if failed else 0


def _load(out: str) -> dict[str, Any]:
    """A finished run's results.json, or a one-line error saying why it cannot be read."""
    import json

    from yacr.errors import YacrError

    path = os.path.join(out, "results.json")
    try:
        with open(path) as f:
            results = json.load(f)
    except OSError as e:
        raise YacrError(f"yacr bench: cannot read {path}: {e.strerror} (run yacr bench "
                        "--out DIR first)") from None
    except ValueError as e:
        raise YacrError(f"yacr bench: {path} is not JSON: {e}") from None
    if not isinstance(results, dict) or not isinstance(results.get("scenarios"), dict):
        raise YacrError(f"yacr bench: {path} is not a yacr bench results file")
    return results


def _report_only(out: str, publish: str = "") -> int:
    from yacr.bench import report
    from yacr.bench.ui import UI

    results = _load(out)
    with UI() as ui:
        for name, scen in results["scenarios"].items():
            report.show(ui, name, scen)
        report.write(results, out, ui)
        report.show_headline(ui, results)
    if publish:
        _publish(out, publish)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
