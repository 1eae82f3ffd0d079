"""Start-up of the hot commands: the modules a container start needs, from one bundle.

Python's import machinery costs ~0.2 million instructions per module (finders, stats,
reading and checking each .pyc), ~6 million for the ~25 modules `yacr run` imports,
a quarter of what our own imports cost. `make setup` compiles those modules into one
marshal file next to the launcher; for `create`, `run` and `exec` the launcher loads
them from it in the order a normal import completes them, so each module's
dependencies are in place before its body runs. Anything not in the bundle still
imports normally.

The bundle is used only when it is current: the same Python (bytecode magic) and,
for every bundled module, the same source size and mtime. Otherwise, or if anything
fails while loading, the modules load the usual way: slower, never different.
"""

from __future__ import annotations

import marshal
import posix
import sys

# Completion order of the imports of `yacr run` (tests/test_boot.py keeps it honest).
BUNDLED = (
    "yacr", "yacr.fs", "yacr.errors", "yacr.jsonio", "yacr.log", "yacr.cli", "yacr.cgroups",
    "yacr.state", "yacr.container", "yacr.handlers", "yacr.protocol", "yacr.linux",
    "yacr.linux.sys", "yacr.linux.capabilities", "yacr.linux.process", "yacr.linux.mounts",
    "yacr.linux.rootfs", "yacr.linux.namespaces", "yacr.init", "yacr.spec",
    "yacr.handlers.native", "yacr.cgroups.resources", "yacr.cgroups.devices",
    "yacr.linux.seccomp", "yacr.linux.bpf", "yacr.cgroups.manager", "yacr.cgroups.v1",
    "yacr.cgroups.v2", "yacr.waiter",
)
HOT_COMMANDS = frozenset({"create", "run", "exec"})
# The other lifecycle commands need only the first modules of the list (cli, state,
# container and what those import), so they load just that prefix of the bundle.
LIGHT_COMMANDS = frozenset({"start", "state", "kill", "delete", "list", "pause", "resume",
                            "ps"})
LIGHT = BUNDLED[:BUNDLED.index("yacr.container") + 1]
_VALUE_FLAGS = frozenset({"--root", "-root", "--log", "-log", "--log-format", "-log-format",
                          "--criu", "-criu", "--rootless", "-rootless"})
_FORMAT = 2  # 2: each module's code marshalled on its own, so a prefix loads alone


def command_of(argv: list[str]) -> str:
    """The subcommand in a yacr command line (global flags come first, as in runc)."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-"):
            return a
        if a in _VALUE_FLAGS:
            i += 1
        i += 1
    return ""


def _magic() -> bytes:
    # importlib.util would cost more than the bundle saves; its frozen core is loaded anyway
    return sys.modules["_frozen_importlib_external"].MAGIC_NUMBER


def build(out: str, src_root: str) -> int:
    """Compile BUNDLED into out; returns how many modules it holds."""
    entries = []
    for name in BUNDLED:
        rel = name.replace(".", "/")
        is_pkg = posix.access(f"{src_root}/{rel}/__init__.py", posix.F_OK)
        path = f"{src_root}/{rel}/__init__.py" if is_pkg else f"{src_root}/{rel}.py"
        with open(path, "rb") as f:
            source = f.read()
        st = posix.stat(path)
        # optimize=2 drops docstrings (a third of the bundle, and of its memory); yacr uses
        # neither __doc__ nor assert on these modules
        code = compile(source, path, "exec", dont_inherit=True, optimize=2)
        entries.append((name, is_pkg, path, st.st_mtime_ns, st.st_size,
                        marshal.dumps(code)))
    data = marshal.dumps((_FORMAT, _magic(), entries))
    tmp = f"{out}.{posix.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    posix.rename(tmp, out)
    return len(entries)


def preload(bundle: str, argv: list[str]) -> bool:
    """Load the bundled modules for a hot command (or their light prefix for the other
    lifecycle commands); False (and nothing changed) otherwise."""
    command = command_of(argv)
    if command in HOT_COMMANDS:
        count = len(BUNDLED)
    elif command in LIGHT_COMMANDS:
        count = len(LIGHT)
    else:
        return False
    try:
        with open(bundle, "rb") as f:
            fmt, magic, entries = marshal.loads(f.read())
    except (OSError, ValueError, EOFError, TypeError):
        return False
    if fmt != _FORMAT or magic != _magic():
        return False
    entries = entries[:count]
    for _name, _pkg, path, mtime, size, _code in entries:
        try:
            st = posix.stat(path)
        except OSError:
            return False
        if st.st_mtime_ns != mtime or st.st_size != size:
            return False
    added = []
    module_type = type(sys)
    try:
        for name, is_pkg, path, _mtime, _size, code in entries:
            if name in sys.modules:
                continue
            mod = module_type(name)
            mod.__file__ = path
            if is_pkg:
                mod.__path__ = [path.rpartition("/")[0]]
                mod.__package__ = name
            else:
                mod.__package__ = name.rpartition(".")[0]
            sys.modules[name] = mod
            added.append(name)
            exec(marshal.loads(code), mod.__dict__)
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, mod)
    except BaseException:  # noqa: BLE001 - fall back to the ordinary imports
        for name in added:
            sys.modules.pop(name, None)
        return False
    return True


if __name__ == "__main__":
    # python -m yacr.boot OUT SRC: (re)build the bundle
    n = build(sys.argv[1], sys.argv[2])
    sys.stdout.write(f"bundled {n} modules into {sys.argv[1]}\n")
