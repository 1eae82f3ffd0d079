"""`yacr bench --quick` as a smoke test: every output exists and parses, nothing is left behind.

Never a timing assertion: CI machines are noisy, and the figures are for
people to read (and compare in one session), not for tests to judge.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import CGROUP, YACR, YACR_SCRIPT

SCENARIOS = ("lifecycle", "cpu", "memory", "density", "images", "concurrency")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    out = tmp_path_factory.mktemp("bench")
    p = subprocess.run([YACR, "bench", "--quick", "--out", str(out)], capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
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


def test_ratios_to_runc_and_crun_beside_absolute_times(quick):
    _, results, _ = quick
    lc = results["scenarios"]["lifecycle"]["measurements"]
    yacr = next(m for m in lc if m["metric"] == "run of true" and m["series"] == "yacr")
    for ref in ("runc", "crun"):
        if ref in results["runtimes"]:
            assert yacr["ratios"][ref] > 0


def test_files_parse(quick):
    out, results, stdout = quick
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["scenario"] for r in rows} >= set(SCENARIOS)
    assert all(float(r["median"]) == float(r["median"]) for r in rows)
    summary = (out / "summary.md").read_text()
    assert "| figure |" in summary and "`run` of `true`" in summary and "Targets:" in summary
    assert "Load average (1 min) at the start and the end" in summary
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
        assert {m["series"] for m in lc if m["metric"] == "run of true, hyperfine"} == names
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


def test_start_path_never_imports_bench(runtime, bundles):
    """The harness is a cold path: `yacr run` must not load any of it."""
    cmd = [sys.executable, "-IS", "-X", "importtime", YACR_SCRIPT, "--root",
           str(runtime.root), "run", "--bundle", bundles.make(["true"]), runtime.new_id()]
    with tempfile.TemporaryFile() as err:
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=err, timeout=60, check=True)
        err.seek(0)
        report = err.read().decode()
    assert "yacr.boot" in report
    assert "yacr.bench" not in report
