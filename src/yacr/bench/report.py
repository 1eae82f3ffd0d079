"""Benchmark outputs: results.json and results.csv for machines, summary.md and tables for people.

Everything here works from the JSON form of the results, so `yacr bench
--report-only` can redraw tables, plots and the summary from a results.json
without measuring again. Ratios are computed here, once, for every scenario:
each measurement's median divided by the reference series' median for the
same metric and N (runc and crun for runtimes; busybox for images).
"""

from __future__ import annotations

import csv
import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from yacr.bench.registry import Result
    from yacr.bench.ui import UI

FORMAT = 2
"""results.json layout version (1: the lifecycle-only harness)."""


def to_json(res: Result) -> dict[str, Any]:
    """A scenario's Result as JSON, with stats and ratios filled in."""
    ms = []
    for m in res.measurements:
        ms.append({"metric": m.metric, "series": m.series, "param": m.param, "unit": m.unit,
                   "note": m.note, "versus": m.versus, **m.stats(), "samples": m.samples})
    for m, src in zip(ms, res.measurements, strict=True):
        m["ratios"] = {}
        for ref in res.references if src.ratios else ():
            r = find(ms, m["versus"] or m["metric"], ref, m["param"])
            # a ratio of a negative (noise around zero) or zero figure means nothing
            if r and ref != m["series"] and (r.get("median") or 0) > 0 and \
                    (m.get("median") or 0) > 0:
                m["ratios"][ref] = m["median"] / r["median"]
    return {"status": "ok", "references": list(res.references), "notes": res.notes,
            "skipped": res.skipped, "measurements": ms, "raw": res.raw,
            "param_label": res.param_label}


def find(ms: list[dict[str, Any]], metric: str, series: str,
         param: Any = None) -> dict[str, Any] | None:
    for m in ms:
        if m["metric"] == metric and m["series"] == series and m["param"] == param:
            return m
    return None


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    if unit == "":
        return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"
    if unit == "KiB":
        return f"{v:,.0f} KiB" if v >= 10 else f"{v:.1f} KiB"
    digits = 2 if abs(v) < 10 else 1 if abs(v) < 1000 else 0
    return f"{v:,.{digits}f} {unit}"


def spread(m: dict[str, Any]) -> str:
    if m.get("n", 0) < 2:
        return "—"
    u = m["unit"]
    return f"{fmt(m['q1'], u)} \u2013 {fmt(m['q3'], u)}"


def ratio(v: float | None) -> str:
    """Two decimals; two significant digits below 0.01 (0.0048x, not 0.00x)."""
    if v is None:
        return ""
    return f"{v:.2g}\u00d7" if 0 < v < 0.01 else f"{v:.2f}\u00d7"


def rows(scen: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The long table of a scenario: metric, N (or seccomp), series, median, IQR, n,
    ratios."""
    refs = scen["references"]
    has_n = any(m["param"] is not None for m in scen["measurements"])
    cols = ["metric", *([scen.get("param_label") or "N"] if has_n else []), "series",
            "median", "IQR (q1 \u2013 q3)", "n", *[f"vs {r}" for r in refs]]
    out = []
    last = None
    for m in scen["measurements"]:
        key = (m["metric"], m["param"])
        label = m["metric"] if key != last else ""
        n = str(m["param"]) if m["param"] is not None and key != last else ""
        last = key
        out.append([label, *([n] if has_n else []), m["series"], fmt(m.get("median"), m["unit"]),
                    spread(m), str(m.get("n", 0)), *[ratio(m["ratios"].get(r)) for r in refs]])
    return cols, out


# -- headline ----------------------------------------------------------------------------

def _largest_common(scen: dict[str, Any], metric: str) -> Any:
    """The largest N every series reached for a metric (density ramps may stop early).
    Series whose ramp stopped early (memory or pids ran out: gVisor's sandboxes are
    larger) do not hold the others back; they are shown at their own largest N."""
    per: dict[str, set[Any]] = {}
    for m in scen["measurements"]:
        if m["metric"] == metric:
            per.setdefault(m["series"], set()).add(m["param"])
    stopped = {n for n, r in scen.get("raw", {}).get("ramps", {}).items() if r.get("stopped")}
    full = [v for k, v in per.items() if k not in stopped] or list(per.values())
    common = set.intersection(*full) if full else set()
    return max(common) if common else None


def _at_most(scen: dict[str, Any], metric: str, series: str, n: Any) -> dict[str, Any] | None:
    """A series' figure at N, or at its largest N below it (a ramp that stopped early)."""
    ms = [m for m in scen["measurements"] if m["metric"] == metric and m["series"] == series
          and isinstance(m["param"], int) and m["param"] <= n]
    return max(ms, key=lambda m: m["param"]) if ms else None


NONE, DEFAULT = "none", "default profile"

HEADLINE = [
    ("lifecycle", "run of true", NONE,
     "`run` of busybox `true` (a Wasm `true` for yacr-wasm), no seccomp profile"),
    ("lifecycle", "run of true", DEFAULT,
     "`run` of busybox `true` (a Wasm `true` for yacr-wasm), default seccomp profile"),
    ("lifecycle", "run of hello", NONE, "`run` of a Wasm hello (ratios: to busybox `true`), "
     "no seccomp profile"),
    ("lifecycle", "run of hello", DEFAULT, "`run` of a Wasm hello (ratios: to busybox `true`), "
     "default seccomp profile"),
    ("lifecycle", "create+start+wait+delete", NONE,
     "create, start, wait, delete (containerd), no seccomp profile"),
    ("lifecycle", "create+start+wait+delete", DEFAULT,
     "create, start, wait, delete (containerd), default seccomp profile"),
    ("lifecycle", "peak RSS of run", NONE, "peak RSS of `run`, no seccomp profile"),
    ("lifecycle", "peak RSS of run", DEFAULT, "peak RSS of `run`, default seccomp profile"),
    ("cpu", "run of true: user+sys", NONE, "CPU (user+sys) per `run`, no seccomp profile"),
    ("cpu", "run of true: user+sys", DEFAULT, "CPU (user+sys) per `run`, default seccomp profile"),
    ("memory", "peak RSS of create", None, "peak RSS of `create`"),
    ("memory", "PSS per created container", None, "resident per created container (PSS)"),
    ("memory", "private per running container", None,
     "per running `sleep` container (private pages)"),
    ("density", "boot time, N sequential starts", "max", "boot time, {n} sequential starts"),
    ("density", "memory of N sleeping containers (PSS)", "max",
     "memory of {n} sleeping containers (PSS)"),
    ("density", "per container (private)", "max",
     "per container of {n} sleeping (private pages)"),
    ("density", "system memory used by N sleeping containers", "max",
     "system memory used by {n} sleeping containers"),
    ("concurrency", "wall time, N parallel", "max", "{n} parallel create+start+wait+delete"),
]
"""The headline: (scenario, metric, param or "max" for the largest N, label)."""

README_ROWS = {(m, p) for _s, m, p, _l in HEADLINE if m in (
    "run of true", "create+start+wait+delete", "peak RSS of run")} | {
    ("per container (private)", "max"), ("boot time, N sequential starts", "max"),
    ("wall time, N parallel", "max")}
"""The headline rows the README shows (`readme_block`): both seccomp rows of `run`, the
containerd sequence and peak RSS, and one row each of density and concurrency (the Wasm
hello has its own section in the README)."""

REFERENCES = ("runc", "crun", "runsc")


def headline(results: dict[str, Any], rows: set[tuple[str, Any]] | None = None,
             ratio_of: tuple[str, ...] = ("yacr", "yacr-wasm")
             ) -> tuple[list[str], list[list[str]]]:
    """The key figures, one row each, runtimes side by side, and the ratios of the series
    in `ratio_of` to runc, crun and runsc (`rows`: only those (metric, param) rows)."""
    series = list(results.get("runtimes", {}))
    ratio_cols = [(s, r) for s in ratio_of if s in series for r in REFERENCES if r in series]
    cols = ["figure", *series, *[f"{s} ÷ {r}" for s, r in ratio_cols]]
    out = []
    for scen_name, metric, param, label in HEADLINE:
        if rows is not None and (metric, param) not in rows:
            continue
        scen = results["scenarios"].get(scen_name)
        if not scen or scen.get("status") != "ok":
            continue
        p = _largest_common(scen, metric) if param == "max" else param
        ms = {s: find(scen["measurements"], metric, s, p) for s in series}
        if param == "max" and p is not None:
            for s in series:  # a ramp that stopped early: its figure at its own largest N
                if ms[s] is None and (m := _at_most(scen, metric, s, p)):
                    ms[s] = {**m, "ratios": {}, "at": m["param"]}
        if not any(ms.values()):
            continue
        row = [label.format(n=p)]
        for s in series:
            m = ms[s]
            row.append((fmt(m["median"], m["unit"]) + (f" (at {m['at']})" if "at" in m else ""))
                       if m else "—")
        for s, r in ratio_cols:
            row.append(ratio(ms[s]["ratios"].get(r)) if ms[s] else "")
        out.append(row)
    return cols, out


# -- targets -------------------------------------------------------------------------------

HOT_PATH = [("run of true", 1.0), ("create+start+wait+delete", 1.0), ("start", 1.5),
            ("state", 1.5), ("kill", 1.5), ("delete", 1.5), ("peak RSS of run", 1.0)]
"""Issue 14's targets for yacr ÷ runc with no seccomp profile."""
STARTS = {"create+start+wait+delete": 3}
"""yacr commands, so interpreter starts, in a figure (the default is one)."""


def targets(results: dict[str, Any]) -> list[str]:
    """The figures the issues target, one line each, with the target and whether this run
    meets it: what a reader checks the README's claims against."""
    out = []
    scen = results["scenarios"].get("lifecycle", {})
    if scen.get("status") == "ok":
        ms = scen["measurements"]
        hot = []
        floor = find(ms, "interpreter start alone", "yacr", NONE)
        for metric, limit in HOT_PATH:
            y = find(ms, metric, "yacr", NONE)
            r = y and y["ratios"].get("runc")
            if r:
                hot.append(f"`{metric}` {_verdict(r, limit)}"
                           + _floor(floor, find(ms, metric, "runc", NONE), r, limit,
                                    STARTS.get(metric, 1)))
        if hot:
            out.append("yacr ÷ runc with no seccomp profile: " + "; ".join(hot))
        y = find(ms, "run of true", "yacr", DEFAULT)
        r = y and y["ratios"].get("runc")
        if r:
            out.append("yacr ÷ runc, `run` of busybox `true` with the default seccomp profile: "
                       + _verdict(r, 0.75))
        for config in (NONE, DEFAULT):
            w = find(ms, "run of hello", "yacr-wasm", config)
            r = w and w["ratios"].get("runc")
            if r:
                out.append("yacr-wasm `run` of a Wasm hello ÷ runc `run` of busybox `true`, "
                           f"{'no seccomp profile' if config == NONE else 'default profile'} "
                           f"for both: {_verdict(r, 0.5)}")
        # the Wasm issue's own targets: against yacr's busybox containers, same run
        wasm = []
        for metric, wmetric, limit in (("run of true", "run of hello", 1.05),
                                       ("peak RSS of run", "peak RSS of run", 1.0)):
            for config in (NONE, DEFAULT):
                r = _of(find(ms, wmetric, "yacr-wasm", config),
                        find(ms, metric, "yacr", config))
                if r:
                    wasm.append(f"`{wmetric}` ({'no profile' if config == NONE else 'default'}"
                                f") {_verdict(r, limit)}")
        if wasm:
            out.append("yacr-wasm ÷ yacr's busybox `true`: " + "; ".join(wasm))
    scen = results["scenarios"].get("density", {})
    if scen.get("status") == "ok":
        metric = "memory of N sleeping containers (PSS)"
        n = _largest_common(scen, metric)
        parts = []
        for s in results.get("runtimes", {}):
            pss = find(scen["measurements"], metric, s, n) or (
                n is not None and _at_most(scen, metric, s, n))
            if not pss:
                continue
            at = pss["param"]
            priv = find(scen["measurements"], "memory of N sleeping containers (private)", s,
                        at)
            used = find(scen["measurements"], "system memory used by N sleeping containers",
                        s, at)
            parts.append(f"{s} {fmt(pss['median'], 'MiB')} PSS"
                         + (f" / {fmt(priv['median'], 'MiB')} private" if priv else "")
                         + (f" / {fmt(used['median'], 'MiB')} system" if used else "")
                         + (f" (at {at})" if at != n else ""))
        if parts and n:
            out.append(f"memory of {n} idle (sleeping) containers: " + "; ".join(parts)
                       + ("" if n >= 500 else " (fewer than the 500 the issue asks for)"))
        own = find(scen["measurements"], "per container (private)", "yacr-wasm", n)
        r = _of(find(scen["measurements"], "system memory used by N sleeping containers",
                     "yacr-wasm", n),
                find(scen["measurements"], "system memory used by N sleeping containers",
                     "yacr", n))
        if own and n:
            out.append(f"a sleeping Wasm container's own memory (of {n}): "
                       f"**{fmt(own['median'], 'MiB')}** (target ≤ 1 MiB: "
                       f"{'met' if own['median'] <= 1.0 else 'not met'}; aim ≤ 0.5 MiB: "
                       f"{'met' if own['median'] <= 0.5 else 'not met'})"
                       + (f"; system-wide, yacr-wasm ÷ yacr busybox: {_verdict(r, 1.25)}"
                          if r else ""))
    scen = results["scenarios"].get("wasm", {})
    if scen.get("status") == "ok":
        g = find(scen["measurements"], "shootout compute time", "yacr-wasm", "geomean")
        r = g and g["ratios"].get("native")
        if r:
            programs = len({m["param"] for m in scen["measurements"]}) - 1
            out.append(f"Wasm shootout, yacr-wasm ÷ native, geomean of {programs} programs: "
                       + _verdict(r, 1.3, "aim"))
    return out


def _of(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    """The ratio of two medians of one run, when both exist and the divisor is positive."""
    if not a or not b or not b.get("median") or b["median"] <= 0 or a.get("median") is None:
        return None
    return a["median"] / b["median"]


def _floor(floor: dict[str, Any] | None, runc: dict[str, Any] | None, r: float,
           limit: float, starts: int = 1) -> str:
    """For a missed time target: what yacr's interpreter costs alone (once per yacr
    command in the figure) against runc's figure, the part of the ratio no change to
    yacr's code can remove."""
    if round(r, 2) <= limit or not floor or not runc or runc.get("unit") != "ms" \
            or not runc.get("median"):
        return ""
    what = "the interpreter's start alone" if starts == 1 else \
        f"{starts} starts of the interpreter alone"
    return f" [{what}: {starts * floor['median'] / runc['median']:.2f}\u00d7 runc's]"


def _verdict(r: float, limit: float, what: str = "target") -> str:
    """Judged on the ratio as printed (1.004 reads 1.00x, which meets <= 1.0x)."""
    met = round(r, 2) <= limit
    return f"**{r:.2f}\u00d7** ({what} ≤ {limit}\u00d7: {'met' if met else 'not met'})"


# -- writers -------------------------------------------------------------------------------

def write(results: dict[str, Any], out: str, ui: UI | None = None) -> list[str]:
    """results.json, results.csv, the PNGs and summary.md; returns the files written."""
    from yacr.bench import plots, registry

    plots.CAPTION = f"{results['date']} · {results['machine']} · `{results['command']}`"
    written = []
    for name, scen in results["scenarios"].items():
        scen["plots"] = []
        d = registry.SCENARIOS.get(name)
        if scen.get("status") == "ok" and scen.get("measurements"):
            draw = d.plot if d and d.plot else plots.FALLBACK.get(
                name, lambda s, o, n=name: plots.bars(s, o, n))
            try:
                scen["plots"] = [os.path.basename(p) for p in draw(scen, out)]
            except Exception as e:  # noqa: BLE001 - a plot must not lose the measurements
                if ui:
                    ui.warn(f"plot of {name} failed: {type(e).__name__}: {e}")
        written += [os.path.join(out, p) for p in scen["plots"]]
    path = os.path.join(out, "results.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    written.append(path)
    path = os.path.join(out, "results.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scenario", "metric", "N", "series", "unit", "median", "q1", "q3", "min",
                    "max", "n", *[f"vs_{r}" for r in CSV_REFS]])
        for sname, scen in results["scenarios"].items():
            for m in scen.get("measurements", []):
                w.writerow([sname, m["metric"], "" if m["param"] is None else m["param"],
                            m["series"], m["unit"],
                            *[_num(m.get(k)) for k in ("median", "q1", "q3", "min", "max")],
                            m.get("n", 0),
                            *[_num(m["ratios"].get(r)) for r in CSV_REFS]])
    written.append(path)
    path = os.path.join(out, "summary.md")
    with open(path, "w") as f:
        f.write(markdown(results))
    written.append(path)
    return written


CSV_REFS = ("runc", "crun", "runsc", "busybox", "native")
"""The references with a ratio column in results.csv (runtimes, images, the shootout)."""


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.6g}"


def _md_table(cols: list[str], rows: list[list[str]]) -> list[str]:
    right = ["---:" if i else "---" for i in range(len(cols))]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(right) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return lines


def describe_runtimes(results: dict[str, Any]) -> str:
    """`yacr (yacr version 0.1.0), ..., runsc (runsc version X; --network=none ...)`."""
    parts = []
    for name, r in results.get("runtimes", {}).items():
        v = r.get("version", "")
        extra = [x for x in (v if v and v != "?" else "", r.get("flags", "")) if x]
        parts.append(f"{name} ({'; '.join(extra)})" if extra else name)
    return ", ".join(parts)


def describe_machine(results: dict[str, Any]) -> list[str]:
    """The machine the figures come from, one fact per item: CPU model and count, memory,
    kernel, cgroup layout, the interpreter yacr ran on (older results: one line)."""
    m = results.get("machine_info")
    if not m:
        return [results.get("machine", "?")]
    cpus = f"{m['cpus']} {'virtual CPUs (a VM)' if m.get('virtual') else 'CPUs'}"
    if m.get("cores") and m["cores"] != m["cpus"]:
        cpus += f", {m['cores']} cores"
    return [f"CPU: {m.get('cpu_model') or '?'}, {cpus}",
            f"memory: {float(m.get('memory_gib', 0)):.0f} GiB",
            f"kernel: Linux {m.get('kernel', '?')} ({m.get('arch', '?')})",
            f"cgroups: {m.get('cgroups', '?')}",
            f"Python (yacr's interpreter): {m.get('python', '?')}"]


def machine_paragraph(results: dict[str, Any]) -> list[str]:
    """When, where and with what: the lines every summary starts with."""
    lines = [f"Measured with `{results['command']}` on {results['date']}"
             + (f" ({results['date_utc']})" if results.get("date_utc") else "") + ".", "",
             "Machine: " + "; ".join(describe_machine(results)) + ".", "",
             f"Runtimes: {describe_runtimes(results)}."]
    missing = {n: v for n, v in results.get("versions", {}).items()
               if n not in results.get("runtimes", {})}
    for name, r in results.get("runtimes", {}).items():
        if r.get("note"):
            lines.append(f"{name} runs {r['note']}.")
    for name, why in results.get("skipped_runtimes", {}).items():
        lines.append(f"Skipped {name}: {why}.")
        missing.pop(name, None)
    if missing:
        lines.append("Not in this run: " + ", ".join(f"{n} ({v})" for n, v in missing.items())
                     + ".")
    load = results.get("load", {})
    if load.get("start") is not None and load.get("end") is not None:
        # other work on the machine is what makes one session's figures move: say how much
        # (the end's figure holds the benchmark's own ramps: only the start's tells of
        # other work)
        lines.append(f"Load average (1 min) before the run: {load['start']:.1f} on "
                     f"{load.get('cpus', '?')} CPUs"
                     + (" (other work, or work that just ended, was running)"
                        if load["start"] >= 1 else " (an otherwise idle machine)")
                     + f"; at the end: {load['end']:.1f} (the benchmark's own ramps "
                     "included).")
    return lines


RATIOS_HELP = (
    "How to read the ratios: a ratio is this run's median of one series divided by the median "
    "of the reference series for the same figure (and the same N), both measured in the same "
    "session (repeated timings with the runtimes interleaved round by round; density ramps "
    "one runtime after another). Below 1\u00d7 the series needs less time or "
    "memory than the reference; 0.75\u00d7 means 25% less. Absolute times move by ±10% or more "
    "from one session to the next on a shared machine, and the ratios move between machines "
    "too (a faster CPU shortens an interpreter's start more than a Go binary's; a seccomp "
    "profile costs runc and crun a compilation on every start): read them with the machine "
    "they come from. Small cells under a median give the interquartile range (q1\u2013q3) "
    "of its samples.")


def wide_rows(scen: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """A scenario as one row per figure (and N): the series side by side, each median with
    its interquartile range, then each other series' ratios to the references."""
    refs = scen["references"]
    ms = scen["measurements"]
    series = list(dict.fromkeys(m["series"] for m in ms))
    others = [s for s in series if s not in refs]
    pairs = [(s, r) for s in others for r in refs
             if any(m["series"] == s and r in m["ratios"] for m in ms)]
    has_n = any(m["param"] is not None for m in ms)
    counts = all(isinstance(m["param"], int) for m in ms if m["param"] is not None)
    label = scen.get("param_label") or ("N" if counts else "case")
    cols = ["figure", *([label] if has_n else []), *series,
            *[f"{s} ÷ {r}" for s, r in pairs]]
    keys = list(dict.fromkeys((m["metric"], m["param"]) for m in ms))
    out = []
    last = None
    for metric, param in keys:
        row = [metric if metric != last else ""]
        last = metric
        if has_n:
            row.append("" if param is None else str(param))
        for s in series:
            m = find(ms, metric, s, param)
            row.append(_cell(m) if m else "")
        for s, r in pairs:
            m = find(ms, metric, s, param)
            row.append(ratio(m["ratios"].get(r)) if m else "")
        out.append(row)
    return cols, out


def _cell(m: dict[str, Any]) -> str:
    text = fmt(m.get("median"), m["unit"])
    if m.get("n", 0) > 1 and m.get("q1") is not None and m["q3"] > m["q1"]:
        lo, hi = fmt(m["q1"], ""), fmt(m["q3"], "")
        if m["unit"] not in ("", "KiB"):
            lo, hi = fmt(m["q1"], "x")[:-2], fmt(m["q3"], "x")[:-2]
        text += f" <sub>{lo}\u2013{hi}</sub>"
    return text


def markdown(results: dict[str, Any], images: str = "", heading: str = "###") -> str:
    """summary.md (and the body of a published BENCHMARKS.md): how it was measured, the
    targets, the headline table, then every scenario with its plots (`images` prefixes
    their paths)."""
    lines = machine_paragraph(results)
    if results.get("note"):
        lines.append(results["note"])
    if results.get("quick"):
        lines.append("**--quick run: small samples for a smoke test, not figures to quote.**")
    lines += ["", RATIOS_HELP, ""]
    tg = targets(results)
    if tg:
        lines += ["Targets:", "", *[f"- {t}" for t in tg], ""]
    cols, hrows = headline(results)
    if hrows:
        lines += ["Headline, medians; ratios below 1 mean yacr needs less:", "",
                  *_md_table(cols, hrows), ""]
    for name, scen in results["scenarios"].items():
        # a scenario reusing another's measurements (cpu) took no time of its own
        took = f" ({scen['seconds']:.0f} s)" if (scen.get("seconds") or 0) >= 1 else ""
        lines.append(f"{heading} {scen.get('title', name)}{took}")
        lines.append("")
        if scen.get("status") != "ok":
            lines += [f"{scen.get('status')}: {scen.get('reason', '')}", ""]
            continue
        for p in scen.get("plots", []):
            lines += [f"![{name}]({images}{p})", ""]
        lines += _md_table(*wide_rows(scen))
        lines.append("")
        for what, why in scen.get("skipped", {}).items():
            lines.append(f"- skipped {what}: {why}")
        for n in scen.get("notes", []):
            lines.append(f"- {n}")
        lines.append("")
    return "\n".join(lines) + "\n"


PUBLISHED = "BENCHMARKS.md"
"""The page `--publish DIR` writes into DIR, beside DIR/bench/*.png."""


def publish(results: dict[str, Any], out: str, docs: str) -> list[str]:
    """Copy the plots of a run in `out` to docs/bench/ and write docs/BENCHMARKS.md around
    its summary, so the published page is regenerated from any later run by one command
    (`yacr bench --report-only --out DIR --publish docs`) and never edited by hand."""
    import shutil

    dest = os.path.join(docs, "bench")
    os.makedirs(dest, exist_ok=True)
    pngs = [p for s in results["scenarios"].values() for p in s.get("plots", [])]
    for old in os.listdir(dest):
        if old.endswith(".png") and old not in pngs:
            os.unlink(os.path.join(dest, old))
    written = []
    for p in pngs:
        shutil.copyfile(os.path.join(out, p), os.path.join(dest, p))
        written.append(os.path.join(dest, p))
    page = [
        "# Benchmarks",
        "",
        "<!-- Generated by `yacr bench --publish`; do not edit: re-run it instead. -->",
        "",
        "yacr side by side with runc, crun and gVisor (runsc), and yacr running Wasm "
        "modules, every scenario of `yacr bench` from one session of it: start-up time "
        "with and without a seccomp profile, CPU, memory, density up to 1500 containers, "
        "image size, concurrency and Wasm execution. The figures are this machine's: "
        "`make bench PUBLISH=docs` rewrites this page (and the README's table) from a "
        "fresh run on the machine at hand.",
        "",
        "To reproduce on your machine, as root (see `yacr bench --help` for scenarios, "
        "`--runtimes`, `--runs` and `--quick`):",
        "",
        "```sh",
        "make bench                  # every scenario into build/bench: results.json, "
        "results.csv, PNGs, summary.md",
        "make bench PUBLISH=docs     # the same, then rewrites this page and docs/bench/*.png",
        ".venv/bin/yacr bench --report-only --out build/bench --publish docs  "
        "# republish a finished run",
        "```",
        "",
        markdown(results, images="bench/", heading="##"),
    ]
    path = os.path.join(docs, PUBLISHED)
    with open(path, "w") as f:
        f.write("\n".join(page))
    written.append(path)
    readme = os.path.join(os.path.dirname(docs.rstrip("/")), "README.md")
    if update_readme(readme, results):
        written.append(readme)
    return written


README_BEGIN = "<!-- bench:begin"
README_END = "<!-- bench:end -->"


def readme_block(results: dict[str, Any]) -> str:
    """What the README shows of a run, between its bench markers: when and where, the
    runtimes, the headline rows it keeps (README_ROWS), and the targets."""
    lines = [f"{README_BEGIN}: written by `make bench PUBLISH=docs` from its run; do not "
             "edit -->", "", *machine_paragraph(results), ""]
    if results.get("quick"):
        lines += ["**--quick run: small samples for a smoke test, not figures to quote.**", ""]
    cols, hrows = headline(results, README_ROWS, ratio_of=("yacr",))
    lines += ["Medians; a ratio is yacr's median divided by the other runtime's, same "
              "session, same seccomp configuration:", "", *_md_table(cols, hrows), ""]
    tg = targets(results)
    if tg:
        lines += ["Targets, from the same run:", "", *[f"- {t}" for t in tg], ""]
    lines.append(README_END)
    return "\n".join(lines)


def update_readme(path: str, results: dict[str, Any]) -> bool:
    """Replace the block between the README's bench markers with this run's; False when
    there is no README or it has no markers (a --publish into some other directory)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return False
    a = text.find(README_BEGIN)
    b = text.find(README_END, a)
    if a < 0 or b < 0:
        return False
    new = text[:a] + readme_block(results) + text[b + len(README_END):]
    if new != text:
        with open(path, "w") as f:
            f.write(new)
    return True


def show(ui: UI, name: str, scen: dict[str, Any]) -> None:
    """A scenario's table on the terminal."""
    from rich.markup import escape

    if scen.get("status") != "ok":
        ui.print(f"[yellow]{name}: {scen.get('status')}[/]: {escape(scen.get('reason', ''))}")
        return
    cols, rs = rows(scen)
    ui.table(scen.get("title", name), cols, rs, right=set(range(1, len(cols))) - {
        cols.index("series")})
    for what, why in scen.get("skipped", {}).items():
        ui.print(f"  [yellow]skipped {escape(what)}[/]: {escape(why)}")
    for n in scen.get("notes", []):
        ui.print(f"  [dim]{escape(n)}[/]")


def show_headline(ui: UI, results: dict[str, Any]) -> None:
    from rich.markup import escape

    cols, rs = headline(results)
    if rs:
        ui.table("Headline (medians)", cols, rs, right=set(range(1, len(cols))), sections=False)
    for t in targets(results):
        ui.print("  " + escape(t.replace("**", "")))
