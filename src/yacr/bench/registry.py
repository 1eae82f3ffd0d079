"""What scenarios, runtimes and bundle builders plug into `yacr bench`, and what they return.

The harness knows nothing about any one scenario: each registers itself here
with a decorator, and returns a `Result` of `Measurement`s that the report
turns into JSON, CSV, tables and plots, with ratios to the reference
runtimes computed in one place. That way a scenario added later (the Wasm
issue's, from `yacr.bench.wasm`) gets the same tables, ratios and files
without touching the harness.

A plugin module listed in PLUGINS is imported when present; a missing one is
not an error. For the Wasm issue, `src/yacr/bench/wasm.py` would do::

    from yacr.bench import registry

    @registry.workload_builder("wasm")
    def wasm_bundle(env, workload):      # "true", "sleep" or "hello" -> bundle dir
        ...                              # raise registry.Skip("why") when it cannot

    @registry.image("wasm hello")
    def wasm_hello(env):                 # -> bundle dir, measured by the image scenario
        ...

    @registry.scenario("wasm", "Wasm execution: native vs yacr-wasm", order=70)
    def wasm_exec(ctx):                  # -> registry.Result
        ...

Registering a workload builder for kind "wasm" is what turns on the
`yacr-wasm` runtime (yacr itself, fed Wasm bundles); until then it is
skipped with the reason printed.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from yacr.bench.runtimes import Environment, Runtime
    from yacr.bench.ui import UI

PLUGINS = ("yacr.bench.wasm",)
"""Modules imported if they exist; they register scenarios, runtimes and builders."""

BUILTIN = ("lifecycle", "cpu", "memory", "density", "images", "concurrency")
"""Built-in scenario modules (yacr.bench.<name>), imported by load()."""

WORKLOADS = ("true", "sleep", "hello")
"""What a workload builder must be able to build: exit 0 at once; run until killed; print
a line and exit 0. A builder may raise Skip for any of them."""


class Skip(Exception):
    """This scenario, runtime or measurement cannot run here; the message says why."""


@dataclass
class Measurement:
    """One figure: the samples of a metric for one series (a runtime, or an image).

    `param` is the scenario's variable when it has one (number of containers, ...), and
    `lower_is_better` says which way the ratios read.
    """

    metric: str
    series: str
    unit: str
    samples: list[float]
    param: int | str | None = None
    note: str = ""
    versus: str = ""
    """The metric whose reference series the ratios use, when not this one (a Wasm hello
    against runc's busybox `true`)."""
    ratios: bool = True
    """False where a ratio would mislead: figures near zero (a wait of 0.02 ms)."""

    def stats(self) -> dict[str, float]:
        s = sorted(self.samples)
        n = len(s)
        if n == 0:
            return {"n": 0}
        q1, q3 = (statistics.quantiles(s, n=4, method="inclusive")[::2] if n > 1
                  else (s[0], s[0]))
        return {"median": statistics.median(s), "q1": q1, "q3": q3, "min": s[0],
                "max": s[-1], "n": n}


@dataclass
class Result:
    """What a scenario returns: measurements, ratios' references, and anything else to keep.

    `references` are the series that ratios are taken against (runc, crun and runsc for
    runtime comparisons; an image for image sizes). `skipped` maps a series to why it did not run;
    `raw` is kept verbatim in results.json for plots and later analysis.
    """

    measurements: list[Measurement] = field(default_factory=list)
    references: tuple[str, ...] = ("runc", "crun", "runsc")
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    param_label: str = ""
    """What `param` is, as a table's column header ("N", "seccomp"); "" guesses."""

    def add(self, metric: str, series: str, unit: str, samples: list[float],
            param: int | str | None = None, note: str = "", versus: str = "",
            ratios: bool = True) -> Measurement:
        m = Measurement(metric, series, unit, [float(x) for x in samples], param, note, versus,
                        ratios)
        self.measurements.append(m)
        return m


@dataclass
class ScenarioDef:
    name: str
    title: str
    run: Callable[[Context], Result]
    order: int = 50
    plot: Callable[[dict[str, Any], str], list[str]] | None = None
    """Draws PNGs into a directory from the scenario's JSON (so `--report-only` can redraw
    them without measuring again); returns their paths."""


class Context:
    """What a scenario gets: the runtimes, the bundles, the run counts, the progress bar."""

    def __init__(self, env: Environment, runtimes: list[Runtime], runs: int, quick: bool,
                 ui: UI, session: str) -> None:
        self.env = env
        self.runtimes = runtimes
        self.runs = runs
        self.warmup = 1 if quick else 3
        self.quick = quick
        self.ui = ui
        self.session = session
        self.cache: dict[str, Any] = {}
        self._n = 0

    def cid(self, rt: Runtime, tag: str = "c") -> str:
        """A container id unique to this session and runtime: `<session>.<runtime>.<tag><n>`.

        Dots separate the parts so that leak checks can match one runtime's containers by
        prefix (`yacr` must not match `yacr-wasm`)."""
        self._n += 1
        return f"{self.prefix(rt)}{tag}{self._n}"

    def prefix(self, rt: Runtime | None = None) -> str:
        return f"{self.session}.{rt.name}." if rt else f"{self.session}."

    def bundle(self, rt: Runtime, workload: str, seccomp: bool | None = None) -> str:
        """The bundle that runs `workload` on this runtime (raises Skip if none can); with
        seccomp True or False, with yacr's default profile or without any."""
        return self.env.workload(rt.kind, workload, seccomp)

    def with_bundles(self, workload: str, result: Result, seccomp: bool | None = None
                     ) -> list[tuple[Runtime, str]]:
        """The runtimes that can run `workload`, with their bundles; the others are
        recorded in result.skipped and printed. None at all skips the scenario."""
        out = []
        for rt in self.runtimes:
            try:
                out.append((rt, self.bundle(rt, workload, seccomp)))
            except Skip as e:
                result.skipped[rt.name] = str(e)
                self.ui.print(f"  skipping {rt.name}: {e}")
        if not out:
            raise Skip(f"no runtime can run the `{workload}` workload")
        return out


SCENARIOS: dict[str, ScenarioDef] = {}
RUNTIMES: dict[str, Callable[[Environment], Runtime]] = {}
BUILDERS: dict[str, Callable[[Environment, str], str]] = {}
IMAGES: dict[str, Callable[[Environment], str]] = {}


def scenario(name: str, title: str, order: int = 50,
             plot: Callable[[dict[str, Any], str], list[str]] | None = None
             ) -> Callable[[Callable[[Context], Result]], Callable[[Context], Result]]:
    """Register a scenario; a later registration of the same name replaces the earlier
    (how a plugin replaces a placeholder)."""
    def deco(fn: Callable[[Context], Result]) -> Callable[[Context], Result]:
        SCENARIOS[name] = ScenarioDef(name, title, fn, order, plot)
        return fn
    return deco


def runtime(name: str) -> Callable[[Callable[[Environment], Runtime]],
                                   Callable[[Environment], Runtime]]:
    """Register a runtime adapter factory: env -> Runtime, raising Skip when unavailable."""
    def deco(fn: Callable[[Environment], Runtime]) -> Callable[[Environment], Runtime]:
        RUNTIMES[name] = fn
        return fn
    return deco


def workload_builder(kind: str) -> Callable[[Callable[[Environment, str], str]],
                                            Callable[[Environment, str], str]]:
    """Register how bundles of a kind ("native", "wasm") are built for a workload."""
    def deco(fn: Callable[[Environment, str], str]) -> Callable[[Environment, str], str]:
        BUILDERS[kind] = fn
        return fn
    return deco


def image(name: str) -> Callable[[Callable[[Environment], str]], Callable[[Environment], str]]:
    """Register an image (a bundle directory) whose size the image scenario reports."""
    def deco(fn: Callable[[Environment], str]) -> Callable[[Environment], str]:
        IMAGES[name] = fn
        return fn
    return deco


def _wasm_placeholder(ctx: Context) -> Result:
    raise Skip("provided by the Wasm issue's plugin (yacr.bench.wasm), not there yet")


_loaded = False


def load(warn: Callable[[str], None] = print) -> None:
    """Import the built-in scenarios, then the plugins that exist."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    from yacr.bench import runtimes  # noqa: F401  (registers yacr, yacr-wasm, runc, crun)

    for mod in BUILTIN:
        importlib.import_module(f"yacr.bench.{mod}")
    scenario("wasm", "Wasm execution: native vs yacr-wasm", order=70)(_wasm_placeholder)
    for mod in PLUGINS:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                warn(f"plugin {mod} not loaded: {e}")
        except Exception as e:  # noqa: BLE001 - a broken plugin must not stop the others
            warn(f"plugin {mod} not loaded: {type(e).__name__}: {e}")
