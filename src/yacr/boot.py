"""Start-up of the hot commands: the modules a container start needs, from one bundle.

Python's import machinery costs ~0.2 million instructions per module (finders, stats,
reading and checking each .pyc), ~6 million for the ~25 modules `yacr run` imports,
a quarter of what our own imports cost. `make setup` compiles those modules into one
file next to the launcher; for `create`, `run` and `exec` the launcher loads them from
it in the order a normal import completes them, so each module's dependencies are in
place before its body runs, and the other lifecycle commands (start, state, kill,
delete...) load the prefix they need. The OPTIONAL modules (the seccomp compiler, what
a wasm container adds, and the rootfs code only init runs) are served from it only if
imported. Anything not in the bundle still imports normally.

The bundle is used only when it is current: the same Python (bytecode magic) and,
for every bundled module, the same source size and mtime. Otherwise, or if anything
fails while loading, the modules load the usual way: slower, never different.

The launcher's script is this module itself, compiled into a .pyc that ends in a call of
launch() (write_entry): Python runs it without the import machinery ever looking for
yacr.boot. A copy older than boot.py hands over to boot.py's own code.
"""

# No `from __future__ import annotations` here: this module is imported on every start,
# and that statement imports the __future__ module (forward references are quoted).
import gc
import marshal
import posix
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import CodeType

# Completion order of the imports of `yacr run` (tests/test_boot.py keeps it honest).
BUNDLED = (
    "yacr", "yacr.fs", "yacr.errors", "yacr.jsonio", "yacr.log", "yacr.cli", "yacr.state",
    "yacr.container", "yacr.cgroups", "yacr.create", "yacr.handlers", "yacr.protocol",
    "yacr.linux", "yacr.linux.sys", "yacr.linux.capabilities", "yacr.linux.process",
    "yacr.linux.namespaces", "yacr.init", "yacr.spec", "yacr.handlers.native",
    "yacr.cgroups.resources", "yacr.cgroups.devices", "yacr.linux.seccomp", "yacr.linux.bpf",
    "yacr.cgroups.manager", "yacr.cgroups.v1", "yacr.cgroups.v2", "yacr.linux.mounts",
    "yacr.linux.rootfs", "yacr.waiter",
)
HOT_COMMANDS = frozenset({"create", "run", "exec"})
# The other lifecycle commands need only the first modules of the list (cli, state,
# container and what those import: not create's code), so they load just that prefix of
# the bundle; what one of them imports beyond it (the cgroup code for delete, kill,
# pause) comes from the bundle when imported.
LIGHT_COMMANDS = frozenset({"start", "state", "kill", "delete", "list", "pause", "resume",
                            "ps"})
LIGHT = BUNDLED[:BUNDLED.index("yacr.container") + 1]
# What a wasm container's create imports on top (the handler, the engine's settings, the
# host's handoff, the cache and its allowlist), in completion order.
WASM = ("yacr.wasm", "yacr.handlers.wasm", "yacr.wasm.engine", "yacr.wasm.host",
        "yacr.wasm.cache", "yacr.venv", "yacr.wasm.allowlist")
# What init alone runs: imported by init after the fork, so the runtime never holds it.
INIT_ONLY = ("yacr.linux.mounts", "yacr.linux.rootfs")
# Served only when imported: what many containers never need, and what only init needs
# (see preload).
OPTIONAL = frozenset({"yacr.linux.seccomp", "yacr.linux.bpf", *INIT_ONLY, *WASM})
_VALUE_FLAGS = frozenset({"--root", "-root", "--log", "-log", "--log-format", "-log-format",
                          "--criu", "-criu", "--rootless", "-rootless"})
_FORMAT = 4  # an index, then each module's code on its own (see build)


def command_of(argv: list[str]) -> str:
    """The subcommand in a yacr command line (global flags come first, as in runc)."""
    return _scan(argv)[0]


def _scan(argv: list[str]) -> tuple[str, bool]:
    """The subcommand, and whether the global flags ask for --debug."""
    debug = False
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-"):
            return a, debug
        if a in _VALUE_FLAGS:
            i += 1
        elif a.lstrip("-").startswith("debug") and not a.endswith("=false"):
            debug = True
        i += 1
    return "", debug


def _magic() -> bytes:
    # importlib.util would cost more than the bundle saves; its frozen core is loaded anyway
    return sys.modules["_frozen_importlib_external"].MAGIC_NUMBER


def build(out: str, src_root: str) -> int:
    """Compile BUNDLED and WASM into out; returns how many modules it holds.

    The file is an 8-byte length, a marshalled index (format, bytecode magic, and per
    module: name, is-package, source path, its mtime and size, where its code lies, and
    the extension modules it imports with their files), then each module's marshalled
    code: a command reads the index and then only the code it runs, one module at a
    time, so its peak memory never holds the bundle twice.
    """
    index = []
    blobs = []
    offset = 0
    for name in BUNDLED + WASM:
        rel = name.replace(".", "/")
        is_pkg = posix.access(f"{src_root}/{rel}/__init__.py", posix.F_OK)
        path = f"{src_root}/{rel}/__init__.py" if is_pkg else f"{src_root}/{rel}.py"
        with open(path, "rb") as f:
            source = f.read()
        st = posix.stat(path)
        blob = marshal.dumps(_compile(source, path))
        index.append((name, is_pkg, path, st.st_mtime_ns, st.st_size, offset, len(blob),
                      _extensions(source, path)))
        blobs.append(blob)
        offset += len(blob)
    head = marshal.dumps((_FORMAT, _magic(), index))
    tmp = f"{out}.{posix.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(len(head).to_bytes(8, "little") + head)
        for blob in blobs:
            f.write(blob)
    posix.rename(tmp, out)
    return len(index)


def _extensions(source: bytes, path: str) -> tuple[tuple[str, str], ...]:
    """The C extension modules (shared objects) a module's body imports, with their files.

    preload loads them from those files itself: found through the import system, each
    costs a search of the standard library's directories (~0.1 ms, half of loading
    `_json`)."""
    import ast
    import importlib.machinery
    import importlib.util

    out = []
    for node in ast.parse(source, path).body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                spec = importlib.util.find_spec(alias.name)
                if spec is not None and spec.origin and spec.origin.endswith(
                        tuple(importlib.machinery.EXTENSION_SUFFIXES)):
                    out.append((alias.name, spec.origin))
    return tuple(out)


def _compile(source: bytes, path: str) -> object:
    """A module's code for the bundle, as the import system would compile it, but for
    three things that cost every command and change nothing it does:
    - optimize=2 drops the docstrings (a third of the bundle, and of its memory; yacr
      uses neither __doc__ nor assert in these modules);
    - a `from __future__ import ...` becomes the compiler flag it stands for instead of
      an import of the `__future__` module at run time (a search of the standard
      library's directory, ~0.3 ms per command);
    - no line tables (0.1 MiB of every command's memory): only a traceback reads them,
      and a user never sees one; with --debug, which logs them, the bundle is not used.
    """
    import __future__

    import ast

    tree = ast.parse(source, path)
    flags = 0
    body = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            for alias in node.names:
                flags |= getattr(__future__, alias.name).compiler_flag
        else:
            body.append(node)
    tree.body = body
    return _without_lines(compile(tree, path, "exec", flags=flags, dont_inherit=True,
                                  optimize=2))


def _without_lines(code: "CodeType") -> "CodeType":
    consts = tuple(_without_lines(c) if isinstance(c, type(code)) else c
                   for c in code.co_consts)
    return code.replace(co_linetable=b"", co_consts=consts)


def write_entry(out: str, bundle: str, src_root: str) -> None:
    """Write the launcher's script as compiled code: this module, ending in a call of
    launch(bundle, src_root, the mtime and size of this module's source).

    Python runs a .pyc given as its script without compiling anything or looking up
    yacr.boot through the import machinery (finders, stats, reads: ~0.3 ms per command).
    """
    import ast

    path = f"{src_root}/yacr/boot.py"
    with open(path, "rb") as f:
        source = f.read()
    st = posix.stat(path)
    tree = ast.parse(source, path)
    # everything but the `if __name__ == "__main__":` block (the builder's command line)
    tree.body = [n for n in tree.body if not (isinstance(n, ast.If)
                                               and isinstance(n.test, ast.Compare)
                                               and getattr(n.test.left, "id", "") == "__name__")]
    call = f"launch({bundle!r}, {src_root!r}, ({st.st_mtime_ns}, {st.st_size}))"
    tree.body += ast.parse(call).body
    code = compile(tree, path, "exec", dont_inherit=True, optimize=2)
    # a .pyc: the magic, flags 0 (checked by timestamp), a timestamp and size Python does
    # not check for a script (built_from above does), the code
    tmp = f"{out}.{posix.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(_magic() + bytes(12) + marshal.dumps(code))
    posix.rename(tmp, out)


def launch(bundle: str, src_root: str, built_from: tuple[int, int] | None = None) -> None:
    """The launcher's script: load the bundle (for a lifecycle command), then run the CLI.

    built_from: the (mtime, size) of this module's source when write_entry copied its
    code; a copy that no longer matches the source hands over to the source's own code.
    """
    _restore_locale()
    sys.path.insert(0, src_root)
    if built_from is not None and not _unchanged(f"{src_root}/yacr/boot.py", *built_from):
        from yacr import boot

        boot.launch(bundle, src_root)
        return
    # The cyclic garbage collector would run about ten times while the bundle's modules
    # are made (0.7 ms of a create), finding nothing to free: they live as long as the
    # command. Once loaded they are set aside for good (gc.freeze), so that collections
    # later, in the runtime and in init's fork, do not walk them again.
    gc.disable()
    try:
        preload(bundle, sys.argv[1:])
    finally:
        gc.freeze()
        gc.enable()
    from yacr.cli import entrypoint

    entrypoint()


def preload(bundle: str, argv: list[str]) -> bool:
    """Load the bundled modules for a hot command (or their light prefix for the other
    lifecycle commands); False (and nothing changed) otherwise.

    They run here, in the order a normal import completes them, all but the OPTIONAL
    ones: a finder put first on sys.meta_path hands those to the import system only if
    something imports them (a container without a seccomp profile never loads the
    seccomp modules, nor their memory: peak RSS is one of the figures yacr is judged on).
    """
    command, debug = _scan(argv)
    if debug:
        return False  # the ordinary imports: tracebacks in the log with their lines
    if command in HOT_COMMANDS:
        count = len(BUNDLED) + len(WASM)
    elif command in LIGHT_COMMANDS:
        count = len(LIGHT)
    else:
        return False
    try:
        fd = posix.open(bundle, posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return False
    try:
        finder = _open(fd, count, bundle)
        if finder is None or not finder.run_eager():
            return False
    finally:
        # no fd of a host file stays open: a container's init is a fork of this process
        posix.close(fd)
    if finder.entries:
        sys.meta_path.insert(0, finder)
    return True


def _open(fd: int, count: int, bundle: str) -> "_Bundle | None":
    try:
        n = int.from_bytes(posix.pread(fd, 8, 0), "little")
        fmt, magic, index = marshal.loads(posix.pread(fd, n, 8))
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if fmt != _FORMAT or magic != _magic():
        return None
    for e in index[:count]:
        if not _unchanged(*e[2:5]):
            return None
    return _Bundle(bundle, fd, 8 + n, index, count)


def _unchanged(path: str, mtime_ns: int, size: int) -> bool:
    """Whether a source is still the one its code was compiled from (a bundled module's,
    or boot.py's for the launcher's copy of it)."""
    try:
        st = posix.stat(path)
    except OSError:
        return False
    return st.st_mtime_ns == mtime_ns and st.st_size == size


class _Bundle:
    """The bundle: runs the first `count` of its modules but the OPTIONAL ones (from the fd
    preload opened), and is the import system's finder and loader for the others (a light
    command's modules beyond its prefix, and the OPTIONAL ones), read (opening the bundle
    again: no fd is kept) and run when first imported. Those are imported by the runtime,
    or by init before it leaves the host's mount namespace, never after pivot_root, where
    the bundle's path is out of reach (a failed read falls back to the ordinary import)."""

    def __init__(self, path: str, fd: int, base: int, index: list[tuple], count: int) -> None:
        self.path = path
        self.fd = fd
        st = posix.fstat(fd)
        self.identity = (st.st_dev, st.st_ino)  # a rebuilt bundle is another file
        self.base = base
        self.index = index[:count]
        self.entries = {e[0]: e for e in index[count:]}
        self.entries.update((e[0], e) for e in self.index if e[0] in OPTIONAL)
        self.checked = {e[0] for e in self.index}  # their sources were found current

    def code(self, e: tuple, fd: int) -> object:
        return marshal.loads(posix.pread(fd, e[6], self.base + e[5]))

    def run_eager(self) -> bool:
        added = []
        module_type = type(sys)
        try:
            for e in self.index:
                name, is_pkg, path = e[0], e[1], e[2]
                if name in sys.modules or name in OPTIONAL:
                    continue
                mod = module_type(name)
                mod.__file__ = path
                if is_pkg:
                    mod.__path__ = [path.rpartition("/")[0]]
                    mod.__package__ = name
                else:
                    mod.__package__ = name.rpartition(".")[0]
                added.extend(_load_extensions(e[7]))
                sys.modules[name] = mod
                added.append(name)
                exec(self.code(e, self.fd), mod.__dict__)
                parent, _, child = name.rpartition(".")
                if parent:
                    setattr(sys.modules[parent], child, mod)
        except BaseException:  # noqa: BLE001 - fall back to the ordinary imports
            for name in added:
                sys.modules.pop(name, None)
            return False
        return True

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        e = self.entries.get(name)
        if e is None or (name not in self.checked and not _unchanged(*e[2:5])):
            return None
        try:
            st = posix.stat(self.path)
        except OSError:
            return None
        if (st.st_dev, st.st_ino) != self.identity:
            return None
        spec = sys.modules["_frozen_importlib"].ModuleSpec(name, self, origin=e[2],
                                                           is_package=e[1])
        spec.has_location = True
        if e[1]:  # a package: its other submodules still import from its directory
            spec.submodule_search_locations = [e[2].rpartition("/")[0]]
        return spec

    def create_module(self, spec: object) -> None:
        return None  # the default module object

    def exec_module(self, module: object) -> None:
        e = self.entries[module.__name__]  # type: ignore[attr-defined]
        _load_extensions(e[7])
        fd = posix.open(self.path, posix.O_RDONLY | posix.O_CLOEXEC)
        try:
            code = self.code(e, fd)
        finally:
            posix.close(fd)
        exec(code, module.__dict__)  # type: ignore[attr-defined]


def _restore_locale() -> None:
    """Put the caller's LC_ALL back: the launcher started the interpreter in the C locale
    and kept the caller's value in $YACR_LC_ALL (see launcher/yacr-launch.c), so that what
    yacr starts (a hook) inherits the caller's environment, not the launcher's."""
    env = posix.environ
    saved = env.pop(b"YACR_LC_ALL", None)
    if saved is None:
        return  # not started by the launcher: the environment is the caller's
    posix.unsetenv(b"YACR_LC_ALL")
    if saved.startswith(b"+"):
        env[b"LC_ALL"] = saved[1:]
        posix.putenv(b"LC_ALL", saved[1:])
    else:
        env.pop(b"LC_ALL", None)
        posix.unsetenv(b"LC_ALL")


def _load_extensions(extensions: tuple[tuple[str, str], ...]) -> list[str]:
    """Load the C extension modules a bundled module imports, from the files the bundle
    names (see _extensions); returns the names it added to sys.modules. One that will not
    load is left to the module's own import statement, through the import system."""
    added = []
    imp = sys.modules["_imp"]
    for name, origin in extensions:
        if name in sys.modules:
            continue
        spec = sys.modules["_frozen_importlib"].ModuleSpec(name, None, origin=origin)
        try:
            mod = imp.create_dynamic(spec)
            mod.__file__ = origin
            mod.__spec__ = spec
            sys.modules[name] = mod
            imp.exec_dynamic(mod)
        except (ImportError, OSError):
            sys.modules.pop(name, None)
            continue
        added.append(name)
    return added


if __name__ == "__main__":
    # python -m yacr.boot BUNDLE SRC [ENTRY]: (re)build the bundle, and the launcher's script
    n = build(sys.argv[1], sys.argv[2])
    if len(sys.argv) > 3:
        write_entry(sys.argv[3], sys.argv[1], sys.argv[2])
    sys.stdout.write(f"bundled {n} modules into {sys.argv[1]}\n")
