"""The container start path imports only what it needs (PERFORMANCE-NOTES: every import is
paid by every start). A careless `import json` or `import os` fails here."""

from __future__ import annotations

from conftest import YACR_SCRIPT, importtime

FORBIDDEN = {"os", "re", "json", "typing", "dataclasses", "logging", "pathlib", "subprocess",
             "enum", "socket", "argparse", "tempfile", "shutil", "ctypes", "_collections_abc",
             "collections", "posixpath", "signal", "resource", "array", "hashlib", "selectors",
             "threading", "traceback", "warnings", "datetime", "string",
             # the D-Bus library of --systemd-cgroup, and its driver
             "jeepney", "yacr.cgroups.systemd"}


def imported(runtime, *args: str) -> set[str]:
    """Modules a yacr command imports, from the interpreter's own -X importtime report."""
    return set(importtime(["--root", str(runtime.root), *args], [YACR_SCRIPT])[3])


def test_lifecycle_commands_import_nothing_heavy(runtime, bundles):
    cid = runtime.new_id()
    b = bundles.make(["sleep", "100"])
    seen = {}
    seen["run"] = imported(runtime, "run", "--bundle", bundles.make(["true"]), runtime.new_id())
    seen["create"] = imported(runtime, "create", "--bundle", b, cid)
    seen["start"] = imported(runtime, "start", cid)
    seen["state"] = imported(runtime, "state", cid)
    seen["kill"] = imported(runtime, "kill", cid, "KILL")
    seen["delete"] = imported(runtime, "delete", "--force", cid)
    # the reports did list what was imported: our modules come from the start-up bundle
    # (all of it for run, its lifecycle prefix for state) and the launcher's script is
    # boot's own code, but what their bodies import (but for the C extensions, which the
    # bundle loads from their files) still goes through the import machinery and shows here
    assert "_socket" in seen["run"] and "fcntl" in seen["state"]
    assert "yacr.boot" not in seen["run"] and "yacr.container" not in seen["state"]
    for cmd, mods in seen.items():
        bad = sorted(mods & FORBIDDEN)
        assert not bad, f"`yacr {cmd}` imports {bad}"
