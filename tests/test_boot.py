"""The start-up bundle (yacr.boot): it must hold what `run` imports, in an order that works,
and must never be used when it no longer matches the sources."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conftest import REPO, YACR_SCRIPT, importtime

SRC = str(REPO / "src")
BUNDLE = str(REPO / ".venv" / "share" / "yacr" / "boot.bundle")


def import_report(args: list[str], launcher: list[str]) -> list[str]:
    """yacr modules in the order their import completed."""
    return [m for m in importtime(args, launcher)[3] if m.startswith("yacr")]


def test_bundle_lists_what_run_imports(runtime, bundles):
    from yacr.boot import BUNDLED

    plain = ["-c", f"import sys; sys.path.insert(0, {SRC!r}); from yacr.cli import main; "
             "main(sys.argv[1:])"]
    order = import_report(["--root", str(runtime.root), "run", "--bundle",
                           bundles.make(["true"]), runtime.new_id()], plain)
    assert "yacr.container" in order
    assert tuple(order) == BUNDLED


def test_launcher_loads_run_from_the_bundle(runtime, bundles):
    from yacr.boot import OPTIONAL

    rc, _, err, mods = importtime(["--root", str(runtime.root), "run", "--bundle",
                                   bundles.make(["true"]), runtime.new_id()], [YACR_SCRIPT])
    assert rc == 0, err
    assert "_socket" in mods  # the report works: a built-in module yacr needs is in it
    # nothing of yacr goes through the import machinery, not even the bootstrap (the
    # launcher's script is its compiled code), but for what the bundle's own finder serves
    order = [m for m in mods if m.startswith("yacr")]
    assert set(order) <= OPTIONAL, order


def test_debug_runs_without_the_bundle(runtime, bundles, tmp_path):
    """--debug logs tracebacks: its modules come from their sources, with line tables (the
    bundle's code has none)."""
    order = import_report(["--root", str(runtime.root), "--debug", "--log",
                           str(tmp_path / "log"), "run", "--bundle",
                           bundles.make(["true"]), runtime.new_id()], [YACR_SCRIPT])
    assert "yacr.container" in order and "yacr.init" in order


def test_stale_launcher_script_hands_over_to_boot_py(tmp_path):
    """The launcher's script is a copy of boot.py's code: once boot.py changes, the copy
    must not decide anything, boot.py's own code does."""
    src = tmp_path / "src"
    shutil.copytree(SRC, src, ignore=shutil.ignore_patterns("__pycache__"))
    bundle, entry = tmp_path / "b", tmp_path / "yacr.pyc"
    subprocess.run([sys.executable, "-m", "yacr.boot", str(bundle), str(src), str(entry)],
                   check=True, capture_output=True, cwd=src)

    def loaded() -> list[str]:
        return import_report(["--root", str(tmp_path / "root"), "list"], [str(entry)])

    assert "yacr.boot" not in loaded()
    boot = src / "yacr" / "boot.py"
    boot.write_text(boot.read_text() + "\n")
    assert "yacr.boot" in loaded()


def test_stale_bundle_is_not_used(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(SRC, src, ignore=shutil.ignore_patterns("__pycache__"))
    bundle = tmp_path / "b"
    code = (f"import sys; sys.path.insert(0, {str(src)!r}); import yacr.boot as b; "
            f"b.build({str(bundle)!r}, {str(src)!r}); "
            f"print(b.preload({str(bundle)!r}, ['--root', '/x', 'run', 'id']))")
    assert subprocess.run([sys.executable, "-IS", "-c", code], capture_output=True,
                          text=True).stdout.strip() == "True"
    (src / "yacr" / "state.py").write_text((src / "yacr" / "state.py").read_text() + "\n")
    code = (f"import sys; sys.path.insert(0, {str(src)!r}); import yacr.boot as b; "
            f"print(b.preload({str(bundle)!r}, ['--root', '/x', 'run', 'id']), "
            f"'yacr.state' in sys.modules)")
    out = subprocess.run([sys.executable, "-IS", "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_cold_commands_skip_the_bundle():
    from yacr.boot import command_of

    assert command_of(["--root", "/r", "--log", "l", "--debug", "run", "x"]) == "run"
    assert command_of(["--root=/r", "state", "x"]) == "state"
    assert command_of(["--log-format", "json", "create", "--bundle", "b", "x"]) == "create"
    assert command_of(["--version"]) == ""


def test_optional_modules_load_only_when_imported(runtime, bundles):
    """A container without a seccomp profile never runs the seccomp modules; one with a
    profile gets them from the bundle when create imports them (and no fd of the bundle
    stays open for a container's init to inherit: tests/test_security.py's census)."""
    spec = bundles.spec(["true"])
    spec["linux"].pop("seccomp")
    plain = import_report(["--root", str(runtime.root), "run", "--bundle",
                           bundles.write(spec), runtime.new_id()], [YACR_SCRIPT])
    assert "yacr.linux.seccomp" not in plain and "yacr.linux.bpf" not in plain
    with_profile = import_report(["--root", str(runtime.root), "run", "--bundle",
                                  bundles.make(["true"]), runtime.new_id()], [YACR_SCRIPT])
    assert "yacr.linux.seccomp" in with_profile  # imported when create compiles the filter
    assert "yacr.container" not in with_profile


def test_bundle_loads_c_extensions_from_their_files(runtime):
    """The C extensions the bundled modules import (_json, _ctypes) come from the files
    the bundle names, not from a search of the standard library; one that will not load
    is left to the module's own import statement."""
    rc, out, err, mods = importtime(["--root", str(runtime.root), "list", "--format", "json"],
                                    [YACR_SCRIPT])
    assert rc == 0 and out.strip() == "[]", err
    assert "fcntl" in mods and "_json" not in mods  # the report works; _json was loaded
    code = (f"import sys, _json; sys.path.insert(0, {SRC!r}); from yacr.boot import "
            "_load_extensions as load; sys.modules.pop('_json'); "
            "print(load((('_nope', '/nonexistent.so'), ('_json', _json.__file__))), "
            "'_nope' in sys.modules)")
    out = subprocess.run([sys.executable, "-IS", "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == ["['_json']", "False"], out.stderr


def test_the_interpreter_maps_no_locale_files(runtime, bundles):
    """The launcher starts the interpreter with LC_ALL=C: no locale archive or LC_CTYPE file
    is mapped (0.15 MiB of every command). init, a fork of the runtime still waiting for
    `start`, shows the runtime's mappings."""
    cid = runtime.new_id()
    env = dict(os.environ, LANG="C.UTF-8", LC_ALL="C.UTF-8")
    runtime("create", "--bundle", bundles.make(["true"]), cid, check=True, env=env)
    maps = open(f"/proc/{runtime.state(cid)['pid']}/maps").read()
    runtime("delete", "--force", cid, check=True)
    assert "python" in maps  # init is still the runtime's interpreter
    assert "/usr/lib/locale/" not in maps, maps


def test_light_commands_get_the_rest_from_the_bundle(runtime, bundles):
    """`start` loads only the bundle's lifecycle prefix, without the cgroup code; `delete`
    imports that code when it needs it, and gets it from the bundle, not from the sources."""
    cid = runtime.new_id()
    runtime("create", "--bundle", bundles.make(["true"]), cid, check=True)

    def loaders(*args: str) -> dict[str, str]:
        p = subprocess.run([sys.executable, "-IS", "-v", YACR_SCRIPT, "--root",
                            str(runtime.root), *args], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, p.stderr[-2000:]
        out = {}
        for line in p.stderr.splitlines():
            if line.startswith("import 'yacr") and " # " in line:
                out[line.split("'")[1]] = line.split(" # ", 1)[1]
        return out

    assert "yacr.cgroups" not in loaders("start", cid)
    seen = loaders("delete", cid)
    assert "_Bundle" in seen.get("yacr.cgroups", ""), seen
    assert not [m for m, how in seen.items() if "SourceFileLoader" in how], seen


def test_a_stale_module_beyond_the_prefix_is_not_served(tmp_path):
    """A light command's prefix is checked when it loads; a module it imports later is
    checked then, and one edited since the bundle was built comes from its source."""
    src = tmp_path / "src"
    shutil.copytree(SRC, src, ignore=shutil.ignore_patterns("__pycache__"))
    bundle = tmp_path / "b"
    subprocess.run([sys.executable, "-m", "yacr.boot", str(bundle), str(src)], check=True,
                   capture_output=True, cwd=src)
    code = (f"import sys; sys.path.insert(0, {str(src)!r}); import yacr.boot as b; "
            f"print(b.preload({str(bundle)!r}, ['state', 'x'])); import yacr.cgroups as c; "
            "print(type(c.__spec__.loader).__name__)")

    def run() -> list[str]:
        p = subprocess.run([sys.executable, "-IS", "-c", code], capture_output=True, text=True)
        return p.stdout.split()

    assert run() == ["True", "_Bundle"]
    cg = src / "yacr" / "cgroups" / "__init__.py"
    cg.write_text(cg.read_text() + "\n")
    assert run() == ["True", "SourceFileLoader"]
