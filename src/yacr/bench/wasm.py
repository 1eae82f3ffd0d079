"""Wasm in `yacr bench`: wasm bundles for the shared scenarios, and the shootout table.

What the harness gets from this module (through `yacr.bench.registry`, when present):

- a workload builder for kind "wasm": bundles running `true`, `sleep` and `hello`
  as WASI modules, so the lifecycle, density (1..1500 sequential starts, N parallel
  sleeping instances and their memory) and image scenarios measure `yacr-wasm`
  side by side with yacr, runc and crun;
- the image "wasm hello": a rootfs holding only hello.wasm;
- the scenario "wasm": seed 003's execution table, the 14 shootout programs
  compiled with gcc (native) and with clang to wasm32-wasi, each timing its own
  compute loop, reported per program as yacr-wasm/native and as a geomean.

Without the harness (or to reproduce docs/WASM.md's figures by hand) the same
functions run standalone: `python -m yacr.bench.wasm boot|shootout|charged [--runs N]`
(charged: the memory each of N sleeping containers is charged in its own cgroup,
busybox against wasm, the figure a shared machine's noise does not reach).

The wasm bundles carry no linux.seccomp profile: the engine's own allowlist
(yacr.wasm.allowlist, 39 syscalls) confines the container instead of the
default profile's ~300 rules; a profile in a user's spec is still applied.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SHOOTOUT = ("base64", "fib2", "gimli", "heapsort", "matrix", "memmove", "nestedloop",
            "nestedloop2", "nestedloop3", "random", "seqhash", "sieve", "strchr", "switch2")
WASM_ARGS = {"true": ["/true.wasm"], "sleep": ["/probe.wasm", "sleep", "1000000"],
             "hello": ["/hello.wasm"]}
ANNOTATIONS = {"run.oci.handler": "wasm"}
OPT = "-O3"


def _sources() -> str:
    from yacr.wasm.build import SOURCES

    return SOURCES


def build_modules(work: str) -> dict[str, str]:
    """hello.wasm, probe.wasm and true.wasm (an empty main), built under work/wasm."""
    from yacr.wasm.build import build_samples, compile_wasm

    out = os.path.join(work, "wasm")
    mods = build_samples(out)
    true_c = os.path.join(out, "true.c")
    if not os.path.exists(true_c):
        with open(true_c, "w") as f:
            f.write("int main(void) { return 0; }\n")
    mods["true"] = compile_wasm(true_c, os.path.join(out, "true.wasm"))
    return mods


def wasm_rootfs(work: str, modules: dict[str, str], name: str = "wasm-rootfs") -> str:
    from yacr.wasm.build import wasm_rootfs as make

    return make(os.path.join(work, name), {f"{n}.wasm": p for n, p in modules.items()})


def wasm_bundle_at(path: str, rootfs: str, args: list[str]) -> str:
    """A bundle like the native benchmark bundles (yacr's default spec, ociVersion 1.0.2),
    with the handler annotation and without the default seccomp profile."""
    from yacr.bundle import busybox_spec, write_config

    spec = busybox_spec(rootfs, args)
    spec["ociVersion"] = "1.0.2"
    spec["annotations"] = dict(ANNOTATIONS)
    spec.get("linux", {}).pop("seccomp", None)
    write_config(path, spec)
    return path


def wasm_bundle(env: Any, workload: str) -> str:
    """The harness's workload builder for kind "wasm" (env: bench.runtimes.Environment)."""
    if workload not in WASM_ARGS:
        raise _skip(f"no wasm {workload!r} workload")
    try:
        mods = build_modules(env.work)
    except Exception as e:  # noqa: BLE001 - no toolchain: the harness skips, says why
        raise _skip(str(e)) from None
    rootfs = wasm_rootfs(env.work, mods)
    return wasm_bundle_at(os.path.join(env.work, "bundles", f"wasm-{workload}"), rootfs,
                          WASM_ARGS[workload])


def wasm_hello_image(env: Any) -> str:
    """The image "wasm hello": a rootfs holding only hello.wasm (and empty mount points)."""
    try:
        mods = build_modules(env.work)
    except Exception as e:  # noqa: BLE001
        raise _skip(str(e)) from None
    rootfs = wasm_rootfs(env.work, {"hello": mods["hello"]}, "wasm-hello-rootfs")
    return wasm_bundle_at(os.path.join(env.work, "bundles", "wasm-hello-image"), rootfs,
                          ["/hello.wasm"])


def _skip(msg: str) -> Exception:
    try:
        from yacr.bench.registry import Skip
    except ImportError:
        return RuntimeError(msg)
    return Skip(msg)


# --- the shootout ------------------------------------------------------------------------

def compile_shootout(work: str, names: tuple[str, ...] = SHOOTOUT) -> dict[str, tuple[str, str]]:
    """name -> (native executable, wasm module): gcc -O3, and clang --target=wasm32-wasi -O3
    with bulk memory and SIMD, from the same source."""
    from yacr.wasm.build import WASM_FEATURES, compile_native, compile_wasm

    src = os.path.join(_sources(), "shootout")
    out = os.path.join(work, "shootout")
    progs = {}
    for n in names:
        c = os.path.join(src, f"{n}.c")
        progs[n] = (compile_native(c, os.path.join(out, n), "gcc", OPT),
                    compile_wasm(c, os.path.join(out, f"{n}.wasm"), OPT,
                                 features=WASM_FEATURES))
    return progs


def _ms(output: str) -> float:
    for tok in output.split():
        if tok.startswith("ms="):
            return float(tok[3:])
    raise RuntimeError(f"no timing in {output!r}")


def run_shootout(yacr_cmd: list[str], work: str, runs: int = 3,
                 names: tuple[str, ...] = SHOOTOUT, say: Any = print) -> dict[str, Any]:
    """Time every program natively and as a yacr wasm container (yacr_cmd: the yacr argv
    prefix, with its --root). The figure is each program's own compute time, so the
    container's start-up is not in it (end-to-end times are kept beside it)."""
    from yacr.wasm.build import WASM_FEATURES

    progs = compile_shootout(work, names)
    rootfs = wasm_rootfs(work, {n: w for n, (_, w) in progs.items()}, "shootout-rootfs")
    rows: dict[str, Any] = {}
    for n, (native, _wasm) in progs.items():
        b = wasm_bundle_at(os.path.join(work, "bundles", f"shootout-{n}"), rootfs,
                           [f"/{n}.wasm"])
        nat, was, e2e = [], [], []
        checks = set()
        for i in range(runs + 1):  # the first run of each warms the caches; not counted
            p = subprocess.run([native], capture_output=True, text=True, check=True)
            t = time.perf_counter()
            q = subprocess.run([*yacr_cmd, "run", "--bundle", b,
                                f"shootout-{n}-{uuid.uuid4().hex[:6]}"],
                               capture_output=True, text=True)
            t = time.perf_counter() - t
            if q.returncode != 0:
                raise RuntimeError(f"{n}: yacr run failed ({q.returncode}): {q.stderr}")
            checks.add(p.stdout.split()[1])
            checks.add(q.stdout.split()[1])
            if i:
                nat.append(_ms(p.stdout))
                was.append(_ms(q.stdout))
                e2e.append(t * 1000)
        if len(checks) != 1:
            raise RuntimeError(f"{n}: native and wasm disagree: {sorted(checks)}")
        ratio = statistics.median(was) / statistics.median(nat)
        rows[n] = {"native_ms": nat, "wasm_ms": was, "wasm_run_ms": e2e, "ratio": ratio}
        say(f"  {n:<12} native {statistics.median(nat):8.1f} ms   yacr-wasm "
            f"{statistics.median(was):8.1f} ms   {ratio:5.2f}x")
    geo = math.exp(sum(math.log(r["ratio"]) for r in rows.values()) / len(rows))
    say(f"  geomean yacr-wasm/native: {geo:.2f}x  (aim <= 1.3x)")
    return {"programs": rows, "geomean": geo, "native": f"gcc {OPT}",
            "wasm": f"clang --target=wasm32-wasi {OPT} {' '.join(WASM_FEATURES)}, wasmtime "
                    "(yacr.wasm.capi.Settings)"}


# --- boot time side by side --------------------------------------------------------------

FLOOR = "yacr floor (interpreter + imports)"


def boot_compare(yacr: str, work: str, runs: int = 50, with_crun: bool = True,
                 say: Any = print) -> dict[str, Any]:
    """One hyperfine session: yacr-wasm hello, yacr native `true`, runc `true` (and crun
    `true`), on yacr's default spec; plus the wasm hello with the default seccomp profile
    kept, and yacr's floor (a hot command that starts no container: `create --help`), for
    the record. Returns name -> median ms, and the ratios."""
    from yacr.bundle import build_rootfs, busybox_spec, write_config

    if shutil.which("hyperfine") is None:
        raise RuntimeError("hyperfine is not installed (scripts/install-deps.sh)")
    mods = build_modules(work)
    rootfs = wasm_rootfs(work, mods)
    hello = wasm_bundle_at(os.path.join(work, "bundles", "boot-wasm-hello"), rootfs,
                           ["/hello.wasm"])
    spec = busybox_spec(rootfs, ["/hello.wasm"])
    spec["ociVersion"] = "1.0.2"
    spec["annotations"] = dict(ANNOTATIONS)
    hello_sc = os.path.join(work, "bundles", "boot-wasm-hello-seccomp")
    write_config(hello_sc, spec)
    bb = build_rootfs(os.path.join(work, "rootfs"))
    spec = busybox_spec(bb, ["true"])
    spec["ociVersion"] = "1.0.2"
    true_b = os.path.join(work, "bundles", "boot-true")
    write_config(true_b, spec)
    subprocess.run([yacr, "wasm", "compile", *mods.values()], check=True,
                   capture_output=True)
    st = os.path.join(work, "state")
    cmds = {"yacr-wasm hello": f"{yacr} --root {st}/w run --bundle {hello} bw",
            "yacr-wasm hello +default seccomp": f"{yacr} --root {st}/ws run --bundle "
                                                f"{hello_sc} bws",
            "yacr true": f"{yacr} --root {st}/y run --bundle {true_b} by",
            "runc true": f"runc --root {st}/r run --bundle {true_b} br",
            # what every `run` pays before any container work: the interpreter, the
            # launcher and the modules of a container start (the bundle), and the CLI
            FLOOR: f"{yacr} create --help"}
    if with_crun and shutil.which("crun"):
        wrap = _crun_wrapper(work)
        cmds["crun true"] = " ".join([*wrap, "crun", "--root", f"{st}/c", "run", "--bundle",
                                      true_b, "bc"])
    out = os.path.join(work, "boot.json")
    argv = ["hyperfine", "-N", "--style", "basic", "--warmup", "5", "--runs", str(runs),
            "--export-json", out]
    for name, c in cmds.items():
        argv += ["-n", name, c]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        data = json.load(f)
    med = {r["command"]: statistics.median(r["times"]) * 1000 for r in data["results"]}
    cpu = {r["command"]: (r["user"] + r["system"]) * 1000 for r in data["results"]}
    inter = interleaved({k: c.split() for k, c in cmds.items()}, runs)
    res: dict[str, Any] = {"median_ms": med, "cpu_ms": cpu, "interleaved_median_ms": inter,
                           "command": argv, "ratios": {}}
    res["ratios"][f"{FLOOR} / runc true"] = med[FLOOR] / med["runc true"]
    for ref in ("runc true", "crun true", "yacr true"):
        if ref in med:
            res["ratios"][f"yacr-wasm hello / {ref}"] = med["yacr-wasm hello"] / med[ref]
            res["ratios"][f"interleaved: yacr-wasm hello / {ref}"] = \
                inter["yacr-wasm hello"] / inter[ref]
            res["ratios"][f"cpu: yacr-wasm hello / {ref}"] = cpu["yacr-wasm hello"] / cpu[ref]
    say(f"  {'':<34} {'hyperfine':>9} {'interleaved':>11} {'user+sys':>9}")
    for name, m in med.items():
        say(f"  {name:<34} {m:6.1f} ms {inter[name]:8.1f} ms {cpu[name]:6.1f} ms")
    for k, v in res["ratios"].items():
        say(f"  {k}: {v:.2f}x")
    return res


def interleaved(cmds: dict[str, list[str]], rounds: int) -> dict[str, float]:
    """Median wall time of each command, run one after the other round by round (in a
    rotating order), so that load from elsewhere falls on all of them alike; hyperfine
    runs each command's runs back to back, which a busy machine skews."""
    names = list(cmds)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds + 2):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            t = time.perf_counter()
            subprocess.run(cmds[n], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if r >= 2:  # two warm-up rounds
                times[n].append((time.perf_counter() - t) * 1000)
    return {n: statistics.median(v) for n, v in times.items()}


def _crun_wrapper(work: str) -> list[str]:
    """crun 1.8 refuses hybrid cgroup hosts: the harness's wrapper hides cgroup2."""
    try:
        from yacr.bench.runtimes import Environment, crun_wrapper

        return crun_wrapper(Environment(work))
    except (ImportError, AttributeError):
        return []


# --- memory charged per container ------------------------------------------------------

def charged(yacr: str, work: str, k: int = 100, say: Any = print) -> dict[str, Any]:
    """k sleeping containers of each kind (busybox `sleep`, probe.wasm sleep), then the
    memory charged to each one's own memory cgroup (v1 memory.usage_in_bytes: its pages and
    the kernel objects made for it: page tables, namespaces, mounts, tasks). Medians per
    container. Unlike the system-wide figure, other work on a shared machine does not leak
    into it; what it leaves out is what is charged elsewhere (the cgroups themselves)."""
    from yacr.bundle import build_rootfs, busybox_spec, write_config

    mods = build_modules(work)
    kinds = {"busybox sleep": None, "yacr-wasm sleep": None}
    spec = busybox_spec(build_rootfs(os.path.join(work, "rootfs")), ["sleep", "1000000"])
    kinds["busybox sleep"] = os.path.join(work, "bundles", "charged-busybox")
    write_config(kinds["busybox sleep"], spec)
    kinds["yacr-wasm sleep"] = wasm_bundle_at(os.path.join(work, "bundles", "charged-wasm"),
                                              wasm_rootfs(work, mods), WASM_ARGS["sleep"])
    subprocess.run([yacr, "wasm", "compile", mods["probe"]], check=True, capture_output=True)
    out: dict[str, Any] = {}
    for name, bundle in kinds.items():
        root = os.path.join(work, "state", "charged")
        ids = [f"charged-{uuid.uuid4().hex[:8]}" for _ in range(k)]
        try:
            for c in ids:
                subprocess.run([yacr, "--root", root, "run", "-d", "--bundle", bundle, c],
                               check=True, stdout=subprocess.DEVNULL)
            time.sleep(1)
            use, kmem = [], []
            for c in ids:
                d = f"/sys/fs/cgroup/memory/yacr/{c}"
                with open(f"{d}/memory.usage_in_bytes") as f:
                    use.append(int(f.read()) / 1024)
                with open(f"{d}/memory.kmem.usage_in_bytes") as f:
                    kmem.append(int(f.read()) / 1024)
        finally:
            for c in ids:
                subprocess.run([yacr, "--root", root, "delete", "--force", c],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out[name] = {"charged_kib": statistics.median(use), "kernel_kib": statistics.median(kmem)}
        say(f"  {name:<16} charged {out[name]['charged_kib']:7.0f} KiB per container "
            f"(kernel {out[name]['kernel_kib']:.0f} KiB), median of {k}")
    r = out["yacr-wasm sleep"]["charged_kib"] / out["busybox sleep"]["charged_kib"]
    out["ratio"] = r
    say(f"  yacr-wasm / busybox, charged per container: {r:.2f}x")
    return out


# --- registration with the harness -------------------------------------------------------

def _register() -> None:
    try:
        from yacr.bench import registry
    except ImportError:
        return  # an older harness without a registry: the standalone main still works
    if not hasattr(registry, "workload_builder"):
        return
    registry.workload_builder("wasm")(wasm_bundle)
    registry.image("wasm hello")(wasm_hello_image)

    def scenario(ctx: Any) -> Any:
        res = registry.Result(references=("native",))
        rts = [rt for rt in ctx.runtimes if getattr(rt, "kind", "") == "wasm"] or \
              [rt for rt in ctx.runtimes if rt.name.startswith("yacr")]
        if not rts:
            raise registry.Skip("needs yacr (or yacr-wasm) among --runtimes")
        names = SHOOTOUT[:4] if ctx.quick else SHOOTOUT
        data = run_shootout(rts[0].cmd(), ctx.env.work, 1 if ctx.quick else 3, names,
                            say=getattr(ctx.ui, "print", print))
        for n, row in data["programs"].items():
            res.add("shootout compute time", "native", "ms", row["native_ms"], n)
            res.add("shootout compute time", "yacr-wasm", "ms", row["wasm_ms"], n)
        # the geomean of the medians: its ratio is the geomean of the per-program ratios
        for series, key in (("native", "native_ms"), ("yacr-wasm", "wasm_ms")):
            meds = [statistics.median(row[key]) for row in data["programs"].values()]
            res.add("shootout compute time", series, "ms",
                    [math.exp(sum(map(math.log, meds)) / len(meds))], "geomean")
        res.notes.append(f"geomean yacr-wasm/native {data['geomean']:.2f}x "
                         f"({data['native']} vs {data['wasm']})")
        res.raw = data
        return res

    registry.scenario("wasm", "Wasm execution: shootout, native (gcc) vs yacr-wasm",
                      order=70)(scenario)


_register()


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m yacr.bench.wasm")
    ap.add_argument("what", choices=("boot", "shootout", "charged"))
    ap.add_argument("--runs", type=int, default=0)
    ap.add_argument("--yacr", default=os.path.join(os.path.dirname(sys.executable), "yacr"))
    ap.add_argument("--work", default="build/bench-wasm")
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    work = os.path.abspath(a.work)
    os.makedirs(work, exist_ok=True)
    if a.what == "boot":
        res = boot_compare(a.yacr, work, a.runs or 50)
    elif a.what == "charged":
        res = charged(a.yacr, work, a.runs or 100)
    else:
        res = run_shootout([a.yacr, "--root", os.path.join(work, "state", "shootout")],
                           work, a.runs or 3)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
