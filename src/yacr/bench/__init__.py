"""`yacr bench`: yacr measured side by side with runc and crun, on bundles built here.

Every comparison runs the runtimes in one session, on the same bundle, and
reports ratios beside absolute times, because the machines it runs on are
noisy. Scenarios register themselves in SCENARIOS; runtimes are adapters in
`runtimes`. Nothing here is imported by the container hot path.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _scenarios() -> dict[str, Any]:
    from yacr.bench import lifecycle

    return {"lifecycle": lifecycle.run}


def main(argv: list[str]) -> int:
    scenarios = _scenarios()
    ap = argparse.ArgumentParser(prog="yacr bench", description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="*", help=f"scenarios: {', '.join(scenarios)} (all)")
    ap.add_argument("--runtimes", default="yacr,runc,crun",
                    help="comma-separated: yacr, runc, crun")
    ap.add_argument("--runs", type=int, default=30, help="runs per measurement (default 30)")
    ap.add_argument("--quick", action="store_true", help="few runs, for CI smoke tests")
    ap.add_argument("--out", default="build/bench", help="output directory")
    a = ap.parse_args(argv)
    unknown = [s for s in a.scenario if s not in scenarios]
    if unknown:
        ap.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(scenarios)}")
    from yacr.bench import report, runtimes

    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    env = runtimes.Environment(os.path.join(out, "work"))
    rts = runtimes.select(a.runtimes.split(","), env)
    runs = 5 if a.quick else a.runs
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                               "machine": runtimes.machine_description(),
                               "runs": runs, "quick": a.quick, "scenarios": {}}
    for name in a.scenario or list(scenarios):
        print(f"== {name}", flush=True)
        results["scenarios"][name] = scenarios[name](rts, env, runs)
    report.write(results, out)
    print(f"results in {out}/ (results.json, results.csv, summary.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
