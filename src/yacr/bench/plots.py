"""PNG plots of the results, for people: one file per scenario (two for density).

Every plot works from a scenario's JSON, labels its axes with units, has a
legend or labelled bars, and says in a caption when and where it was
measured. Bars are medians; error bars span the interquartile range. Each
runtime keeps one colour in every plot. `bars` draws any scenario generically
(what a plugin's scenario gets unless it brings its own plot).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

COLORS = {"yacr": "#1f77b4", "yacr-wasm": "#9467bd", "runc": "#ff7f0e", "crun": "#2ca02c",
          "runsc": "#d62728"}
_OTHER = ["#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
CONFIGS = ("none", "default profile")
"""The lifecycle's seccomp configurations, in the order bars are drawn (the second
hatched)."""
CAPTION = ""
"""When and where: set by the report before plotting, drawn under every figure."""


def color(series: str) -> str:
    series = series.split("\n")[0]  # "yacr-wasm\nhello" keeps yacr-wasm's colour
    if series not in COLORS:
        COLORS[series] = _OTHER[(len(COLORS) - 5) % len(_OTHER)]
    return COLORS[series]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.spines.top": False,
                         "axes.spines.right": False, "figure.dpi": 110})
    return plt


def _ms(scen: dict[str, Any], metric: str, param: Any = None) -> list[dict[str, Any]]:
    return [m for m in scen["measurements"] if m["metric"] == metric and m["param"] == param]


def _save(fig: Any, out: str, name: str, title: str) -> str:
    fig.suptitle(title, fontsize=13, fontweight="bold")
    if CAPTION:
        fig.text(0.01, 0.01, CAPTION, fontsize=8, color="#555555", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    path = os.path.join(out, name)
    fig.savefig(path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    _shrink(path)
    return path


def _shrink(path: str) -> None:
    """Rewrite a PNG with a 256-colour palette: a third of the bytes for flat-coloured
    charts, so the published plots stay small in the repository."""
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as im:
        small = im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def _label(m: dict[str, Any], digits: int = 1) -> str:
    from yacr.bench.report import fmt

    text = fmt(m["median"], m["unit"])
    rs = [f"{v:.2f}\u00d7 {r}" for r, v in m.get("ratios", {}).items()
          if r.split()[0] in ("runc", "crun", "runsc")]
    return text + ("\n" + "\n".join(rs) if rs else "")


def _bar_panel(ax: Any, ms: list[dict[str, Any]], title: str, ylabel: str,
               ratios: bool = True) -> None:
    """One bar per series: median, IQR whiskers, value (and ratios) written above."""
    if not ms:
        ax.set_visible(False)
        return
    xs = range(len(ms))
    med = [m["median"] for m in ms]
    lo = [m["median"] - m.get("q1", m["median"]) for m in ms]
    hi = [m.get("q3", m["median"]) - m["median"] for m in ms]
    ax.bar(xs, med, color=[color(m["series"]) for m in ms], width=0.6,
           yerr=[lo, hi] if any(m.get("n", 0) > 1 for m in ms) else None, capsize=4,
           ecolor="#333333")
    top = max(m.get("q3", m["median"]) for m in ms)
    for x, m in zip(xs, ms, strict=True):
        text = _label(m) if ratios else _label({**m, "ratios": {}})
        ax.text(x, max(m.get("q3", m["median"]), m["median"]) + top * 0.02, text,
                ha="center", va="bottom", fontsize=8.5)
    ax.set_xticks(list(xs), [m["series"] for m in ms])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_ylim(0, top * 1.45)
    ax.grid(axis="y", alpha=0.3)


def _config_bars(ax: Any, scen: dict[str, Any], metric: str, title: str, ylabel: str,
                 extra: str = "") -> None:
    """One group per series, one bar per seccomp configuration (none solid, the default
    profile hatched), median with IQR whiskers, the median and its ratio to runc above.
    `extra`: a second metric drawn as more groups (the Wasm hello, labelled so)."""
    from matplotlib.patches import Patch

    from yacr.bench.report import fmt

    ms = [m for m in scen["measurements"] if m["metric"] == metric]
    ms += [{**m, "series": f"{m['series']}\nWasm hello"} for m in scen["measurements"]
           if extra and m["metric"] == extra]
    series = list(dict.fromkeys(m["series"] for m in ms))
    if not series:
        ax.set_visible(False)
        return
    w = 0.38
    top = max(m.get("q3", m["median"]) for m in ms)
    for si, s in enumerate(series):
        for ci, config in enumerate(CONFIGS):
            m = next((x for x in ms if x["series"] == s and x["param"] == config), None)
            if not m:
                continue
            x = si + (ci - 0.5) * w
            ax.bar(x, m["median"], w * 0.92, color=color(s), hatch="//" if ci else None,
                   edgecolor="white", alpha=0.65 if ci else 1.0,
                   yerr=[[m["median"] - m.get("q1", m["median"])],
                         [m.get("q3", m["median"]) - m["median"]]] if m.get("n", 0) > 1
                   else None, capsize=2, ecolor="#333333")
            r = m.get("ratios", {}).get("runc")
            text = fmt(m["median"], "") + (f"\n{r:.2f}\u00d7 runc" if r else "")
            ax.text(x, max(m["median"], m.get("q3", 0)) + top * 0.02, text, ha="center",
                    va="bottom", fontsize=6.5)
    ax.set_xticks(range(len(series)), series, fontsize=8.5)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.set_ylim(0, top * 1.3)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(handles=[Patch(facecolor="#777777", label="seccomp: none"),
                       Patch(facecolor="#777777", alpha=0.65, hatch="//", edgecolor="white",
                             label="seccomp: default profile")],
              loc="upper left", fontsize=8)


def lifecycle(scen: dict[str, Any], out: str) -> list[str]:
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(18, 6.2))
    _config_bars(a, scen, "run of true", "run of busybox true (and a Wasm hello), runtimes and "
                 "configurations interleaved", "wall time per container (ms)",
                 extra="run of hello")
    steps = ("create", "start", "wait", "delete")
    totals = [m for m in scen["measurements"] if m["metric"] == "create+start+wait+delete"]
    series = list(dict.fromkeys(m["series"] for m in totals))
    if series:
        from matplotlib.patches import Patch

        shades = {"create": 1.0, "start": 0.7, "wait": 0.45, "delete": 0.25}
        w = 0.38
        top = 0.0
        for si, s in enumerate(series):
            for ci, config in enumerate(CONFIGS):
                tot = next((m for m in totals if m["series"] == s and m["param"] == config),
                           None)
                if not tot:
                    continue
                x = si + (ci - 0.5) * w
                bottom = 0.0
                for step in steps:
                    m = next((m for m in scen["measurements"] if m["metric"] == step and
                              m["series"] == s and m["param"] == config), None)
                    v = m["median"] if m else 0.0
                    b.bar(x, v, w * 0.92, bottom=bottom, color=color(s), alpha=shades[step],
                          hatch="//" if ci else None, edgecolor="white")
                    bottom += v
                top = max(top, bottom)
                r = tot.get("ratios", {}).get("runc")
                b.text(x, bottom * 1.01, f"{tot['median']:.0f}"
                       + (f"\n{r:.2f}\u00d7 runc" if r else ""), ha="center", va="bottom",
                       fontsize=7)
        b.set_xticks(range(len(series)), series, fontsize=8.5)
        b.set_ylim(0, top * 1.3)
        b.set_ylabel("wall time per container, medians of each step (ms)")
        b.set_title("create, start, wait, delete as separate invocations (containerd); "
                    "hatched: default seccomp profile", fontsize=10)
        b.grid(axis="y", alpha=0.3)
        b.legend(handles=[Patch(facecolor="#777777", alpha=shades[s], label=s) for s in steps],
                 title="steps, darkest first\n(label: median of totals)", loc="upper left",
                 fontsize=8, title_fontsize=8)
    else:
        b.set_visible(False)
    return [_save(fig, out, "lifecycle.png",
                  "Lifecycle: time per container, with no seccomp profile and with the default "
                  "one (median; whiskers: interquartile range)")]


def cpu(scen: dict[str, Any], out: str) -> list[str]:
    plt = _plt()
    from matplotlib.patches import Patch

    groups = [("run of true", "run of busybox true\n(runtime + container)"),
              ("create+start+delete", "create + start + delete\n(runtime only)")]
    series = list(dict.fromkeys(m["series"] for m in _ms_all(scen, "run of true: user+sys")))
    fig, ax = plt.subplots(figsize=(13, 5.6))
    bars = [(s, c) for s in series for c in CONFIGS]
    w = 0.85 / max(1, len(bars))
    top = 0.0
    for gi, (g, _) in enumerate(groups):
        for bi, (s, config) in enumerate(bars):
            def get(metric: str, s: str = s, config: str = config) -> dict[str, Any] | None:
                return next((m for m in _ms_all(scen, metric)
                             if m["series"] == s and m["param"] == config), None)
            u, sy, tot = get(f"{g}: user"), get(f"{g}: sys"), get(f"{g}: user+sys")
            if not (u and sy and tot):
                continue
            x = gi + (bi - (len(bars) - 1) / 2) * w
            hatch = "//" if config != CONFIGS[0] else None
            ax.bar(x, u["median"], w * 0.9, color=color(s), hatch=hatch, edgecolor="white")
            ax.bar(x, sy["median"], w * 0.9, bottom=u["median"], color=color(s), alpha=0.45,
                   hatch=hatch, edgecolor="white")
            h = u["median"] + sy["median"]
            top = max(top, h)
            ax.text(x, h * 1.02, f"{tot['median']:.0f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(groups)), [t for _, t in groups])
    ax.set_ylabel("CPU time per container, user + system (ms)")
    ax.set_ylim(0, top * 1.3 if top else 1)
    ax.grid(axis="y", alpha=0.3)
    handles = [Patch(color=color(s), label=s) for s in series]
    handles += [Patch(facecolor="#999999", label="user"),
                Patch(facecolor="#999999", alpha=0.45, label="system"),
                Patch(facecolor="#999999", hatch="//", edgecolor="white",
                      label="default seccomp profile")]
    ax.legend(handles=handles, loc="upper right", fontsize=8, ncol=2)
    return [_save(fig, out, "cpu.png", "CPU per container start (medians; label: user+sys ms; "
                  "each runtime: no seccomp profile, then the default one hatched)")]


def _pss_private(ax: Any, scen: dict[str, Any], what: str, title: str) -> None:
    """Per series, PSS (solid) and private pages (hatched) per container."""
    from yacr.bench.report import fmt

    pss = _ms(scen, f"PSS per {what}")
    if not pss:
        ax.set_visible(False)
        return
    priv = {m["series"]: m for m in _ms(scen, f"private per {what}")}
    top = max([m["median"] for m in pss] + [m["median"] for m in priv.values()] + [0.01])
    for i, m in enumerate(pss):
        for j, (mm, hatch) in enumerate(((m, None), (priv.get(m["series"]), "//"))):
            if not mm:
                continue
            x = i + (j - 0.5) * 0.38
            ax.bar(x, mm["median"], 0.36, color=color(m["series"]), hatch=hatch,
                   edgecolor="white", alpha=0.65 if hatch else 1.0)
            ax.text(x, mm["median"] + top * 0.02, fmt(mm["median"], ""), ha="center",
                    va="bottom", fontsize=7.5)
    ax.set_xticks(range(len(pss)), [m["series"] for m in pss], fontsize=8.5)
    ax.set_ylabel("MiB per container: PSS (solid), private (hatched)")
    ax.set_title(title, fontsize=10)
    ax.set_ylim(0, top * 1.3)
    ax.grid(axis="y", alpha=0.3)


def memory(scen: dict[str, Any], out: str) -> list[str]:
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.4))
    _bar_panel(axes[0], _ms(scen, "peak RSS of create"), "peak RSS of the runtime's create",
               "peak RSS (MiB)")
    _pss_private(axes[1], scen, "created container",
                 "per created, not started container")
    _pss_private(axes[2], scen, "running container", "per running container (busybox sleep)")
    return [_save(fig, out, "memory.png",
                  "Memory (median; whiskers: interquartile range). PSS splits shared pages; "
                  "private: pages no other process maps")]


def density(scen: dict[str, Any], out: str) -> list[str]:
    plt = _plt()
    ramps = scen.get("raw", {}).get("ramps", {})
    paths = []
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name, r in ramps.items():
        ns = [p["n"] for p in r["points"]]
        last = r["points"][-1] if r["points"] else None
        ax.plot(ns, [p["boot_s"] for p in r["points"]], marker="o", color=color(name),
                label=f"{name} ({last['boot_s']:.1f} s for {last['n']})" if last else name)
    ax.set_xlabel("containers started one after another (N)")
    ax.set_ylabel("total boot time of the N starts (s)")
    ax.set_xticks(_ticks(scen))
    ax.grid(alpha=0.3)
    ax.legend(title="runtime")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    paths.append(_save(fig, out, "density-boot.png",
                       "Density: boot time of N sequential run --detach (busybox sleep)"))

    paths.append(density_memory(scen, out, ramps))
    return paths


MARKERS = ("o", "s", "^", "D", "v", "P")


def density_memory(scen: dict[str, Any], out: str, ramps: dict[str, Any]) -> str:
    """Two panels, one line per runtime in each: the PSS of the containers' processes (log
    scale: a Wasm engine per container is 100x a busybox `sleep`), and system memory used
    (kernel objects included, linear, zoomed past a runtime far above the others).
    Runtimes whose lines coincide (the same busybox `sleep`) get distinct markers and are
    named in the panel, so no line hides another unnoticed."""
    from yacr.bench.report import fmt

    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(15, 5.8))
    names = [n for n, r in ramps.items() if r["points"]]
    last = {n: ramps[n]["points"][-1] for n in names}
    for i, n in enumerate(names):
        pts = ramps[n]["points"]
        ns = [p["n"] for p in pts]
        a.plot(ns, [max(p["pss_mib"], 0.01) for p in pts], marker=MARKERS[i % len(MARKERS)],
               markersize=max(3, 9 - 1.5 * i), linewidth=max(0.8, 2.4 - 0.4 * i),
               color=color(n), label=f"{n}: {fmt(last[n]['pss_mib'], 'MiB')} PSS, "
               f"{fmt(last[n].get('private_mib', 0), 'MiB')} private at {last[n]['n']}")
        if all("private_mib" in p for p in pts):
            a.plot(ns, [max(p["private_mib"], 0.01) for p in pts], linestyle="--",
                   linewidth=1.2, color=color(n))
    a.set_yscale("log")
    a.set_ylabel("memory of the containers' processes (MiB, log scale)")
    same = _coinciding(names, ramps, "pss_mib")
    a.set_title("PSS (solid) and private pages (dashed) of the containers' processes"
                + (f"\n{', '.join(same)}: lines coincide (the same busybox sleep)"
                   if len(same) > 1 else ""), fontsize=10)
    a.legend(title="runtime: at the largest N", fontsize=8.5, title_fontsize=8.5,
             loc="lower right")

    peaks = sorted(((max(p["used_mib"] for p in ramps[n]["points"]), n) for n in names),
                   reverse=True)
    far = len(peaks) > 1 and peaks[0][0] > 4 * max(peaks[1][0], 1)
    for i, n in enumerate(names):
        pts = ramps[n]["points"]
        off = far and n == peaks[0][1]
        b.plot([p["n"] for p in pts], [p["used_mib"] for p in pts],
               marker=MARKERS[i % len(MARKERS)], markersize=7, color=color(n),
               label=f"{n}: {last[n]['used_mib']:,.0f} MiB at {last[n]['n']}"
                     + (" (off the scale)" if off else ""))
    if far:
        lo = min(min(p["used_mib"] for p in ramps[n]["points"]) for n in names)
        b.set_ylim(min(0, lo * 1.1), peaks[1][0] * 1.3)
    b.axhline(0, color="#999999", linewidth=0.8)
    b.set_ylabel("system memory used since the first start (MiB)")
    b.set_title("system-wide, kernel objects included (noisy: other work on the machine)",
                fontsize=10)
    b.legend(title="runtime: at the largest N", fontsize=8.5, title_fontsize=8.5,
             loc="upper center")
    for ax in (a, b):
        ax.set_xlabel("sleeping containers running at once (N)")
        ax.set_xticks(_ticks(scen))
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
    return _save(fig, out, "density-memory.png", "Density: memory of N sleeping containers")


def _coinciding(names: list[str], ramps: dict[str, Any], key: str) -> list[str]:
    """The runtimes whose figures stay within 5% of the first such runtime's at every N."""
    for i, n in enumerate(names):
        ref = [p[key] for p in ramps[n]["points"]]
        group = [n] + [m for m in names[i + 1:]
                       if len(ramps[m]["points"]) == len(ref) and
                       all(abs(p[key] - r) <= 0.05 * max(abs(r), 0.01)
                           for p, r in zip(ramps[m]["points"], ref, strict=True))]
        if len(group) > 1:
            return group
    return []


def _ticks(scen: dict[str, Any]) -> list[int]:
    """The ramp's N as x ticks, minus those that would print on top of their neighbour
    (1 and 10 on an axis that goes to 1500)."""
    points = scen.get("raw", {}).get("points", [])
    out: list[int] = []
    for p in points:
        if not out or p - out[-1] >= points[-1] / 25:
            out.append(p)
    return out


def images(scen: dict[str, Any], out: str) -> list[str]:
    plt = _plt()
    disk = _ms(scen, "bundle size on disk")
    gz = {m["series"]: m for m in _ms(scen, "bundle size as tar.gz")}
    names = [m["series"] for m in disk]
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.9 * len(names)))
    y = range(len(names))
    ax.barh([i + 0.2 for i in y], [m["median"] for m in disk], 0.38, color="#4c72b0",
            label="on disk (config.json + rootfs)")
    ax.barh([i - 0.2 for i in y], [gz[n]["median"] for n in names], 0.38, color="#dd8452",
            label="as tar.gz")
    from yacr.bench.report import fmt

    for i, m in enumerate(disk):
        r = m["ratios"].get("busybox")
        extra = f"  ({r:.3f}\u00d7 busybox)" if r is not None else ""
        ax.text(m["median"] * 1.1, i + 0.2, fmt(m["median"], "KiB") + extra, va="center",
                fontsize=8)
        g = gz[m["series"]]
        ax.text(g["median"] * 1.1, i - 0.2, fmt(g["median"], "KiB"), va="center", fontsize=8)
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(right=max(m["median"] for m in disk) * 8)
    ax.set_xlabel("bundle size (KiB, log scale)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    skipped = scen.get("skipped", {})
    if skipped:
        ax.set_title("not built: " + "; ".join(skipped), fontsize=8, color="#777777")
    return [_save(fig, out, "images.png", "Image size: bytes of each bundle")]


def concurrency(scen: dict[str, Any], out: str) -> list[str]:
    plt = _plt()
    ms = _ms_all(scen, "wall time, N parallel")
    ns = sorted({m["param"] for m in ms})
    series = list(dict.fromkeys(m["series"] for m in ms))
    fig, ax = plt.subplots(figsize=(9, 5.2))
    w = 0.8 / max(1, len(series))
    top = max((m.get("q3", m["median"]) for m in ms), default=1)
    for si, s in enumerate(series):
        for ni, n in enumerate(ns):
            m = next((x for x in ms if x["series"] == s and x["param"] == n), None)
            if not m:
                continue
            x = ni + (si - (len(series) - 1) / 2) * w
            ax.bar(x, m["median"], w * 0.9, color=color(s), label=s if ni == 0 else None,
                   yerr=[[m["median"] - m["q1"]], [m["q3"] - m["median"]]]
                   if m.get("n", 0) > 1 else None, capsize=3)
            fails = next((f for f in _ms(scen, "failed of N", n) if f["series"] == s), None)
            note = f"\n{fails['max']:.0f} failed" if fails and fails.get("max") else ""
            leaks = next((f for f in _ms(scen, "leaked items after the batch", n)
                          if f["series"] == s), None)
            note += f"\n{leaks['max']:.0f} leaked" if leaks and leaks.get("max") else ""
            ax.text(x, max(m["median"], m.get("q3", 0)) + top * 0.02, _label(m) + note,
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(ns)), [f"N = {n} at once" for n in ns])
    ax.set_ylabel("wall time until all N are deleted (s)")
    ax.set_ylim(0, top * 1.45)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="runtime", loc="upper left")
    return [_save(fig, out, "concurrency.png",
                  "Concurrency: N parallel create+start+wait+delete (median of rounds)")]


def wasm(scen: dict[str, Any], out: str) -> list[str]:
    """The shootout: compute time per program, native and yacr-wasm side by side, and below
    it the ratio per program with the geomean, the figure the Wasm issue aims at."""
    plt = _plt()
    ms = _ms_all(scen, "shootout compute time")
    series = list(dict.fromkeys(m["series"] for m in ms))
    progs = list(dict.fromkeys(m["param"] for m in ms))
    if len(series) != 2 or not progs:
        return bars(scen, out, "wasm")
    ref, other = (series if "native" == series[0] else series[::-1])
    fig, (a, b) = plt.subplots(2, 1, figsize=(13, 8.5), sharex=True,
                               gridspec_kw={"height_ratios": [3, 2]})
    w = 0.4
    for si, s in enumerate((ref, other)):
        xs, ys, lo, hi = [], [], [], []
        for pi, p in enumerate(progs):
            m = next((x for x in ms if x["series"] == s and x["param"] == p), None)
            if m:
                xs.append(pi + (si - 0.5) * w)
                ys.append(m["median"])
                lo.append(m["median"] - m.get("q1", m["median"]))
                hi.append(m.get("q3", m["median"]) - m["median"])
        a.bar(xs, ys, w * 0.9, color=color(s), yerr=[lo, hi], capsize=2, ecolor="#333333",
              label=f"{s} ({'gcc -O3' if s == ref else 'clang wasm32-wasi -O3, wasmtime'})")
    a.set_ylabel("compute time per program (ms)")
    a.set_title("each program times its own compute loop (container start-up not included); "
                "median, whiskers: interquartile range", fontsize=9.5)
    a.grid(axis="y", alpha=0.3)
    a.legend(fontsize=8.5, loc="upper left")
    rat = []
    for p in progs:
        m = next((x for x in ms if x["series"] == other and x["param"] == p), None)
        rat.append(m["ratios"].get(ref) if m else None)
    cols = ["#444444" if p == "geomean" else color(other) for p in progs]
    top = max([r for r in rat if r] or [1])
    b.bar(range(len(progs)), [r or 0 for r in rat], 0.6, color=cols)
    for i, r in enumerate(rat):
        if r:
            # above the bar, on white: ratios near 1 would sit on the 1x line
            b.text(i, r + top * 0.03, f"{r:.2f}\u00d7", ha="center", va="bottom", fontsize=8,
                   bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.6})
    b.axhline(1, color="#333333", linewidth=1, linestyle="--", label="1\u00d7: as fast as native")
    b.legend(fontsize=8.5, loc="upper right")
    b.set_ylabel(f"{other} \u00f7 {ref} (\u00d7, lower is faster)")
    b.set_ylim(0, top * 1.25)
    b.grid(axis="y", alpha=0.3)
    b.set_xticks(range(len(progs)), [str(p) for p in progs], rotation=30, ha="right")
    b.set_xlabel("shootout program (geomean: of the medians, so its ratio is the geomean of "
                 "the ratios)")
    return [_save(fig, out, "wasm.png", scen.get("title", "Wasm execution"))]


FALLBACK = {"wasm": wasm}
"""Plots for scenarios that bring none of their own (the Wasm plugin's), by name."""


def _ms_all(scen: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    return [m for m in scen["measurements"] if m["metric"] == metric]


def bars(scen: dict[str, Any], out: str, name: str) -> list[str]:
    """Any scenario: one panel per metric (at most six). Metrics without N get a bar per
    series; metrics with N (a count, a program) get groups of bars, one group per N, and
    a log scale when the values span more than two decades."""
    plt = _plt()
    metrics = list(dict.fromkeys(m["metric"] for m in scen["measurements"]))[:6]
    if not metrics:
        return []
    grouped = [mt for mt in metrics if any(m["param"] is not None
                                           for m in _ms_all(scen, mt))]
    cols = 1 if grouped else min(3, len(metrics))
    rows_ = (len(metrics) + cols - 1) // cols
    width = 13 if grouped else 4.6 * cols
    fig, axes = plt.subplots(rows_, cols, figsize=(width, 4.8 * rows_), squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        ms = _ms_all(scen, metric)
        unit = ms[0]["unit"]
        ylabel = f"{metric} ({unit})" if unit else metric
        if metric not in grouped:
            _bar_panel(ax, ms, metric, ylabel)
            continue
        params = list(dict.fromkeys(m["param"] for m in ms))
        series = list(dict.fromkeys(m["series"] for m in ms))
        w = 0.8 / len(series)
        for si, s in enumerate(series):
            xs, ys = [], []
            for pi, p in enumerate(params):
                m = next((x for x in ms if x["series"] == s and x["param"] == p), None)
                if m:
                    xs.append(pi + (si - (len(series) - 1) / 2) * w)
                    ys.append(m["median"])
                    rs = [f"{v:.2f}\u00d7" for v in m.get("ratios", {}).values()]
                    if rs:
                        ax.text(xs[-1], ys[-1], rs[0], ha="center", va="bottom", fontsize=7)
            ax.bar(xs, ys, w * 0.9, color=color(s), label=s)
        vals = [m["median"] for m in ms if m["median"] and m["median"] > 0]
        if vals and max(vals) / min(vals) > 100:
            ax.set_yscale("log")
        ax.set_xticks(range(len(params)), [str(p) for p in params],
                      rotation=30 if len(params) > 6 else 0, ha="right" if len(params) > 6
                      else "center")
        ax.set_ylabel(ylabel)
        ax.set_title(metric + (f" (labels: ratio to {', '.join(scen['references'])})"
                               if scen.get("references") else ""))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(title="series", fontsize=8)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    if scen.get("notes"):
        # a plugin's summary line (the shootout's geomean) belongs on its figure
        fig.text(0.5, 0.9, scen["notes"][0], ha="center", fontsize=9, color="#333333")
    return [_save(fig, out, f"{name}.png", scen.get("title", name))]
