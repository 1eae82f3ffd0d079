"""`yacr bench --quick` as a smoke test: every output exists and parses, nothing is left behind.

Never a timing assertion: CI machines are noisy, and the figures are for
people to read (and compare in one session), not for tests to judge. What is
checked is that every figure exists for every runtime (gVisor included when
runsc is installed) and both seccomp configurations, with the machine and the
versions beside it.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import CGROUP, YACR, YACR_SCRIPT, importtime

SCENARIOS = ("lifecycle", "cpu", "memory", "density", "images", "concurrency")


# The headings of the six figures every report carries, in the summary and in the README.
SCENARIO_LABELS = (
    "`run` of busybox `true` (a Wasm `true` for yacr-wasm), no seccomp profile",
    "`run` of busybox `true` (a Wasm `true` for yacr-wasm), default seccomp profile",
    "create, start, wait, delete (containerd), no seccomp profile",
    "create, start, wait, delete (containerd), default seccomp profile",
    "peak RSS of `run`, no seccomp profile",
    "peak RSS of `run`, default seccomp profile",
)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    out = tmp_path_factory.mktemp("bench")
    null = os.stat("/dev/null")
    p = subprocess.run([YACR, "bench", "--quick", "--out", str(out)], capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    # no runtime was handed the host's /dev/null: gVisor would have chowned it to nobody
    after = os.stat("/dev/null")
    assert (after.st_uid, after.st_gid) == (null.st_uid, null.st_gid)
    return out, json.loads((out / "results.json").read_text()), p.stdout


def test_every_scenario_measured(quick):
    _, results, _ = quick
    assert results["quick"] is True and results["format"] == 2
    assert "yacr" in results["runtimes"]
    for name in SCENARIOS:
        scen = results["scenarios"][name]
        assert scen["status"] == "ok", (name, scen.get("reason"))
        assert scen["measurements"], name
        for m in scen["measurements"]:
            assert m["n"] >= 1 and m["median"] is not None, (name, m["metric"])
            assert m["q1"] <= m["median"] <= m["q3"], (name, m["metric"])
    # the Wasm scenario exists and says why it did not run (until the Wasm plugin lands)
    wasm = results["scenarios"]["wasm"]
    assert wasm["status"] in ("ok", "skipped") and (wasm["status"] == "ok" or wasm["reason"])


CONFIGS = ("none", "default profile")


def test_ratios_to_runc_crun_and_runsc_beside_absolute_times(quick):
    _, results, _ = quick
    lc = results["scenarios"]["lifecycle"]["measurements"]
    for config in CONFIGS:
        yacr = next(m for m in lc if m["metric"] == "run of true" and m["series"] == "yacr"
                    and m["param"] == config)
        for ref in ("runc", "crun", "runsc"):
            if ref in results["runtimes"]:
                ref_m = next(m for m in lc if m["metric"] == "run of true" and
                             m["series"] == ref and m["param"] == config)
                # like with like: the same seccomp configuration
                assert yacr["ratios"][ref] == pytest.approx(yacr["median"] / ref_m["median"])


def test_both_seccomp_configurations_for_every_runtime(quick):
    """Every lifecycle and CPU figure with no profile and with yacr's default profile, for
    every runtime, from bundles that differ in linux.seccomp only."""
    from yacr.linux.seccomp_default import default_profile
    from yacr.specgen import DEFAULT_CAPS

    out, results, _ = quick
    want = {(s, c) for s in results["runtimes"] for c in CONFIGS}
    lc = results["scenarios"]["lifecycle"]
    assert lc["param_label"] == "seccomp"
    for metric in ("run of true", "create+start+wait+delete", "peak RSS of run", "create",
                   "state", "start", "wait", "delete", "kill"):
        got = {(m["series"], m["param"]) for m in lc["measurements"] if m["metric"] == metric}
        assert got == want, metric
    cpu = results["scenarios"]["cpu"]["measurements"]
    for metric in ("run of true: user+sys", "create+start+delete: user+sys"):
        assert {(m["series"], m["param"]) for m in cpu if m["metric"] == metric} == want
    bundles = out / "work" / "bundles"
    on = json.loads((bundles / "true.seccomp" / "config.json").read_text())
    off = json.loads((bundles / "true.noseccomp" / "config.json").read_text())
    assert on["linux"]["seccomp"] == default_profile(DEFAULT_CAPS)
    assert "seccomp" not in off["linux"]
    on["linux"].pop("seccomp")
    assert on == off
    summary = (out / "summary.md").read_text()
    for label in SCENARIO_LABELS + ("| figure | seccomp |",
                                     "yacr ÷ runc with no seccomp profile"):
        assert label in summary, label


def test_the_machine_is_part_of_every_run(quick):
    out, results, _ = quick
    m = results["machine_info"]
    with open("/proc/cpuinfo") as f:
        model = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    assert m["cpu_model"] == model and m["cpus"] == os.cpu_count() >= m["cores"] >= 1
    assert m["kernel"] == os.uname().release and "cgroup" in m["cgroups"]
    assert results["date_utc"].endswith("Z")
    versions = results["versions"]
    assert {"yacr", "runc", "crun", "runsc"} <= set(versions)
    for name, r in results["runtimes"].items():
        assert r["version"] == versions[name] and r["version"] not in ("", "?"), name
    summary = (out / "summary.md").read_text()
    for fact in (model, m["kernel"], m["cgroups"], results["date"],
                 *[r["version"] for r in results["runtimes"].values()]):
        assert fact in summary, fact


def test_gvisor_is_a_peer(quick):
    out, results, _ = quick
    if "runsc" not in results["runtimes"]:
        pytest.skip(f"runsc: {results['skipped_runtimes'].get('runsc')}")
    rs = results["runtimes"]["runsc"]
    assert rs["flags"] == "--network=none --platform=ptrace --oci-seccomp"
    assert "--platform=ptrace" in (out / "summary.md").read_text()
    for name in ("lifecycle", "cpu", "memory", "density", "concurrency"):
        scen = results["scenarios"][name]
        assert "runsc" in {m["series"] for m in scen["measurements"]}, name
        assert "runsc" not in scen["skipped"], name
    # its sandbox and gofer (and stubs) are counted with each container; the others: one
    mem = results["scenarios"]["memory"]["measurements"]
    procs = {m["series"]: m["median"] for m in mem
             if m["metric"] == "processes per running container"}
    assert procs.pop("runsc") >= 2 and set(procs.values()) == {1}
    dens = results["scenarios"]["density"]["measurements"]
    assert all(m["median"] >= 2 for m in dens
               if m["metric"] == "processes per container" and m["series"] == "runsc")


def test_memory_per_container_both_ways(quick):
    """PSS and private pages, for every runtime; busybox bundles share one rootfs, so a
    sleeping busybox container's private pages are its stack and data, not the binary."""
    out, results, _ = quick
    mem = results["scenarios"]["memory"]["measurements"]
    dens = results["scenarios"]["density"]["measurements"]
    for metric in ("PSS per running container", "private per running container",
                   "PSS per created container", "private per created container"):
        assert {m["series"] for m in mem if m["metric"] == metric} == set(results["runtimes"])
    for metric in ("per container (PSS)", "per container (private)",
                   "memory of N sleeping containers (private)"):
        assert {m["series"] for m in dens if m["metric"] == metric} == set(results["runtimes"])
    for m in mem:
        if m["metric"] == "private per running container":
            rss = next(x for x in mem if x["metric"] == "RSS per running container"
                       and x["series"] == m["series"])
            assert 0 <= m["median"] <= rss["median"]
            if m["series"] in ("yacr", "runc", "crun"):
                assert m["median"] < 0.5, m  # a private busybox would be ~1 MiB
    roots = set()
    for cfg in (out / "work" / "bundles").glob("*/config.json"):
        spec = json.loads(cfg.read_text())
        if spec["process"]["args"][0] in ("true", "sleep", "echo"):
            roots.add(spec["root"]["path"])
    assert len(roots) == 1
    copies = [p for p in (out / "work").rglob("busybox") if p.is_file() and not p.is_symlink()]
    assert len(copies) == 1, copies


def test_files_parse(quick):
    out, results, stdout = quick
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["scenario"] for r in rows} >= set(SCENARIOS)
    assert all(float(r["median"]) == float(r["median"]) for r in rows)
    summary = (out / "summary.md").read_text()
    assert "| figure |" in summary and "`run` of busybox `true`" in summary
    assert "Targets:" in summary
    assert "Load average (1 min) before the run" in summary
    pngs = [p for s in results["scenarios"].values() for p in s.get("plots", [])]
    assert {"lifecycle.png", "cpu.png", "memory.png", "density-boot.png",
            "density-memory.png", "images.png", "concurrency.png"} <= set(pngs)
    for p in pngs:
        data = (out / p).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, p
        assert f"({p})" in summary
    assert "Headline" in stdout


def test_nothing_left_behind(quick):
    out, results, _ = quick
    for name in results["runtimes"]:
        root = out / "work" / "state" / name
        assert not root.exists() or not [n for n in os.listdir(root) if n[0] != "."], name
    session = results["session"] + "."
    left = [str(p) for p in CGROUP.glob(f"*/**/{session}*")]
    assert not left
    with open("/proc/self/mountinfo") as f:
        assert session not in f.read()
    # no process of the session's containers (gVisor's sandboxes and gofers included), and
    # none of the state roots' runtimes, survived: the reaper reaped them all
    work = str(out / "work")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            cg = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            continue
        assert work not in cmd and session not in cg, (pid, cmd[:200])
    conc = results["scenarios"]["concurrency"]["measurements"]
    assert all(m["max"] == 0 for m in conc if m["metric"] == "leaked items after the batch")
    assert all(m["max"] == 0 for m in conc if m["metric"] == "failed of N")


def test_report_only_redraws(quick):
    out, _, _ = quick
    (out / "summary.md").unlink()
    (out / "lifecycle.png").unlink()
    p = subprocess.run([YACR, "bench", "--report-only", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert (out / "summary.md").exists() and (out / "lifecycle.png").exists()


def test_run_of_true_interleaved_with_hyperfine_beside_it(quick):
    _, results, _ = quick
    lc = results["scenarios"]["lifecycle"]["measurements"]
    names = {m["series"] for m in lc if m["metric"] == "run of true"}
    assert names == set(results["runtimes"])
    if "hyperfine cross-check" not in results["scenarios"]["lifecycle"]["skipped"]:
        # gVisor stays out of hyperfine: it would chown the host's /dev/null (lifecycle.run)
        assert {m["series"] for m in lc if m["metric"] == "run of true, hyperfine"} == \
            names - {"runsc"}
    cpu = results["scenarios"]["cpu"]["measurements"]
    assert {m["series"] for m in cpu if m["metric"] == "run of true: user+sys"} == names


def test_wasm_geomean_row(quick):
    _, results, _ = quick
    wasm = results["scenarios"]["wasm"]
    if wasm["status"] != "ok":
        pytest.skip(wasm["reason"])
    ms = wasm["measurements"]
    g = next(m for m in ms if m["param"] == "geomean" and m["series"] == "yacr-wasm")
    assert g["ratios"]["native"] == pytest.approx(wasm["raw"]["geomean"], rel=1e-6)


def test_publish_writes_the_page_and_its_plots(quick, tmp_path):
    out, results, _ = quick
    docs = tmp_path / "docs"
    (docs / "bench").mkdir(parents=True)
    (docs / "bench" / "stale.png").write_bytes(b"old")
    p = subprocess.run([YACR, "bench", "--report-only", "--out", str(out), "--publish",
                        str(docs)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    page = (docs / "BENCHMARKS.md").read_text()
    assert "--publish docs" in page and results["date"] in page and "How to read" in page
    assert "--quick run" in page
    pngs = [q for s in results["scenarios"].values() for q in s.get("plots", [])]
    assert sorted(os.listdir(docs / "bench")) == sorted(pngs)
    for q in pngs:
        assert f"](bench/{q})" in page
        assert (docs / "bench" / q).stat().st_size < 300_000, q


def test_publish_rewrites_the_readme_block(quick, tmp_path):
    """`make bench PUBLISH=docs` puts the run's headline in the README, between its
    markers, and leaves the rest alone: the README shows the latest run."""
    out, results, _ = quick
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nbefore\n\n<!-- bench:begin: old -->\nold figures\n"
                      "<!-- bench:end -->\n\nafter\n")
    p = subprocess.run([YACR, "bench", "--report-only", "--out", str(out), "--publish",
                        str(tmp_path / "docs")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n\n<!-- bench:begin") and text.endswith("after\n")
    assert "old figures" not in text and results["date"] in text
    assert results["machine_info"]["cpu_model"] in text
    for label in SCENARIO_LABELS:
        assert label in text, label
    assert text.count("<!-- bench:begin") == 1 and text.count("<!-- bench:end -->") == 1


@pytest.mark.parametrize("args", [["nosuch"], ["--runs", "0"], ["--runs", "x"],
                                  ["--max-containers", "-1"], ["--report-only", "--out", "NONE"],
                                  ["--report-only", "--out", "BAD"], ["--runtimes"]])
def test_bad_input_is_one_line(args, tmp_path):
    (tmp_path / "results.json").write_text("{not json")
    args = [str(tmp_path / "none") if a == "NONE" else str(tmp_path) if a == "BAD" else a
            for a in args]
    p = subprocess.run([YACR, "bench", *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, (args, p.stdout, p.stderr)
    assert len(p.stderr.splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr


def test_start_path_never_imports_bench(runtime, bundles):
    """The harness is a cold path: `yacr run` must not load any of it."""
    rc, _, err, mods = importtime(["--root", str(runtime.root), "run", "--bundle",
                                   bundles.make(["true"]), runtime.new_id()], [YACR_SCRIPT])
    assert rc == 0, err
    assert "_socket" in mods  # the report lists imports
    assert not [m for m in mods if m.startswith("yacr.bench")]


def _m(metric: str, series: str, param: object, median: float, unit: str = "ms",
       runc: float | None = None) -> dict:
    return {"metric": metric, "series": series, "param": param, "unit": unit,
            "median": median, "ratios": {"runc": runc} if runc else {}}


def test_targets_give_the_floor_and_the_wasm_issue_s_ratios():
    """The targets line judges each figure on its ratio, gives the interpreter's floor for
    a missed time target (once per yacr command in the figure), and sets the Wasm
    container's figures against yacr's busybox ones from the same run."""
    from yacr.bench.report import targets

    none, default = "none", "default profile"
    life = [
        _m("interpreter start alone", "yacr", none, 6.0),
        _m("run of true", "yacr", none, 20.0, runc=20.0 / 25.0),
        _m("run of true", "runc", none, 25.0),
        _m("create+start+wait+delete", "yacr", none, 44.0, runc=44.0 / 40.0),
        _m("create+start+wait+delete", "runc", none, 40.0),
        _m("state", "yacr", none, 8.0, runc=2.0),
        _m("state", "runc", none, 4.0),
        _m("run of true", "yacr", default, 22.0, runc=0.5),
        _m("run of hello", "yacr-wasm", default, 24.2, runc=0.55),
        _m("peak RSS of run", "yacr", default, 10.0, "MiB"),
        _m("peak RSS of run", "yacr-wasm", default, 9.5, "MiB"),
    ]
    dens = [
        _m("memory of N sleeping containers (PSS)", "yacr", 1500, 75.0, "MiB"),
        _m("memory of N sleeping containers (PSS)", "yacr-wasm", 1500, 1000.0, "MiB"),
        _m("per container (private)", "yacr-wasm", 1500, 0.7, "MiB"),
        _m("system memory used by N sleeping containers", "yacr", 1500, 1000.0, "MiB"),
        _m("system memory used by N sleeping containers", "yacr-wasm", 1500, 1800.0, "MiB"),
    ]
    results = {"runtimes": {"yacr": {}, "yacr-wasm": {}, "runc": {}},
               "scenarios": {"lifecycle": {"status": "ok", "measurements": life},
                             "density": {"status": "ok", "measurements": dens}}}
    text = "\n".join(targets(results))
    assert "`run of true` **0.80\u00d7** (target ≤ 1.0\u00d7: met)" in text
    # three commands: three interpreter starts, 18 ms of runc's 40
    assert ("`create+start+wait+delete` **1.10\u00d7** (target ≤ 1.0\u00d7: not met) "
            "[3 starts of the interpreter alone: 0.45\u00d7 runc's]") in text
    assert "`state` **2.00\u00d7** (target ≤ 1.5\u00d7: not met) [the interpreter's start alone: " \
           "1.50\u00d7 runc's]" in text
    assert "`run of hello` (default) **1.10\u00d7** (target ≤ 1.05\u00d7: not met)" in text
    assert "`peak RSS of run` (default) **0.95\u00d7** (target ≤ 1.0\u00d7: met)" in text
    assert "own memory (of 1500): **0.70 MiB** (target ≤ 1 MiB: met; aim ≤ 0.5 MiB: " \
           "not met)" in text
    assert "system-wide, yacr-wasm ÷ yacr busybox: **1.80\u00d7** (target ≤ 1.25\u00d7: not met)" \
        in text
