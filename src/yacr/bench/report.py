"""Benchmark outputs: results.json and results.csv for machines, summary.md for people."""

from __future__ import annotations

import csv
import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def write(results: dict[str, Any], out: str) -> None:
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    rows = []
    for scen, data in results["scenarios"].items():
        for metric, per_rt in data.items():
            if not isinstance(per_rt, dict):
                continue
            for rt, val in per_rt.items():
                if isinstance(val, dict):
                    for k, v in val.items():
                        rows.append((scen, metric, rt, k, v))
                else:
                    rows.append((scen, metric, rt, "", val))
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scenario", "metric", "runtime", "field", "value"])
        w.writerows(rows)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(markdown(results))


def markdown(results: dict[str, Any]) -> str:
    lines = [f"Measured {results['date']} on {results['machine']}, "
             f"{results['runs']} runs per figure.", ""]
    lc = results["scenarios"].get("lifecycle")
    if lc:
        lines += ["| runtime | `run` of busybox `true`, median | mean ± sd | peak RSS |",
                  "|---|---|---|---|"]
        for name, t in lc["run_true"].items():
            rss = lc["peak_rss_kib"].get(name)
            rss_s = f"{rss / 1024:.1f} MiB" if rss else "—"
            ver = lc["versions"].get(name, "")
            label = f"{name} ({ver})" if ver else name
            lines.append(f"| {label} | {t['median_ms']:.1f} ms | {t['mean_ms']:.1f} ± "
                         f"{t['stddev_ms']:.1f} ms | {rss_s} |")
        lines.append("")
        for k, v in lc["ratios"].items():
            lines.append(f"- {k}: **{v:.2f}x**")
        for name, note in lc.get("notes", {}).items():
            lines.append(f"- {name} runs {note}; `{name}-wrapper-only` is that wrapper alone.")
        lines.append("")
    return "\n".join(lines) + "\n"
