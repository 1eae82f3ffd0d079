"""The wasm handler: a WASI module runs as the container's process, inside the container.

init prepares the container exactly as for a native one, and where a native init would
exec the container's program, it execs yacr's native host (yacr.wasm.host), which runs
the module. So the module runs in the container's namespaces, cgroup, rlimits,
capabilities and no_new_privs, after its hooks, and with init's pid; and a running wasm
container holds a small C process, not a fork of the Python runtime. What costs time is
done as early as possible, and everything is decided here, in Python:

- `prepare` (in the runtime, before init is forked): read the module from the rootfs,
  find the compiled code in the AOT cache (verifying it, then keeping a read-only view
  of that file) or compile it, find the host, and get the seccomp allowlist;
- `before_pivot` (in init, while the host's files are still in reach): read-only
  views of the directories the host is loaded from;
- `resolve` (in init, after pivot_root, before `start`): the handoff (args, env, the
  root preopened as `/`, the module, the engine's settings, the memory limit, the
  allowlist, the stop signals) in a sealed memfd;
- `run` (after `start`): exec the host with it.
"""

from __future__ import annotations

import _signal
import posix

from yacr import fs
from yacr.errors import YacrError
from yacr.handlers import HANDLER_ANNOTATION, VARIANT_ANNOTATION, Handler
from yacr.handlers.native import Native
from yacr.wasm import WASM_MAGIC, is_module

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from yacr.log import Log
    from yacr.spec import Spec
    from yacr.wasm.cache import Result
    from yacr.wasm.engine import Settings
    from yacr.wasm.host import HostFiles

SECCOMP_ANNOTATION = "io.github.yacr.wasm.seccomp"
SANDBOX_ANNOTATION = "io.kubernetes.cri.container-type"
# Linear memory is bounded this far below the cgroup's memory limit, which must also hold
# the host itself (the engine's library and the compiled code, when their pages are
# charged to this container: ~11 MB resident) and whatever `exec` runs in it.
RUNTIME_HEADROOM = 24 << 20
TRAP_EXIT = 134  # what wasmtime's own CLI returns for a trap (128 + SIGABRT)
# The host's own environment (not the module's: that is process.env, in the handoff).
# The engine's WASI layer makes a tokio runtime on the first call: one worker is enough for
# a single-threaded guest, and a fixed count spares the CPU-count probe (cgroup and sysfs
# reads, which the allowlist refuses).
HOST_ENV = {"TOKIO_WORKER_THREADS": "1"}
STOP_SIGNALS = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT,
                _signal.SIGUSR1, _signal.SIGUSR2)
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def annotation_key(spec: Spec) -> str:
    return HANDLER_ANNOTATION if HANDLER_ANNOTATION in spec.annotations else VARIANT_ANNOTATION


def locate_module(spec: Spec) -> tuple[str, int] | None:
    """(path in the rootfs, open fd) of process.args[0] as a file in the rootfs, resolved
    with the rootfs as / (symlinks cannot lead out); None if there is no such file.

    A name without a slash is looked up in the process's PATH, then in its cwd; the exec
    bit is not required (a module is data to the engine).
    """
    from yacr.linux.process import env_map
    from yacr.linux.rootfs import open_in_root

    proc = spec.process
    if proc is None or not proc.args:
        return None
    arg0 = proc.args[0]
    if "/" in arg0:
        cands = [arg0 if arg0.startswith("/") else fs.join(proc.cwd, arg0)]
    else:
        path = env_map(proc.env).get("PATH", _DEFAULT_PATH)
        cands = [fs.join(d if d.startswith("/") else fs.join(proc.cwd, d), arg0)
                 for d in path.split(":") if d] + [fs.join(proc.cwd, arg0)]
    try:
        root = posix.open(spec.root_path, posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
    except OSError as e:
        raise YacrError(f"root.path: cannot open {spec.root_path}: {e.strerror}") from None
    try:
        for c in cands:
            try:
                fd = open_in_root(root, c, posix.O_RDONLY | posix.O_NONBLOCK)
            except OSError:
                continue
            if (posix.fstat(fd).st_mode & 0o170000) == 0o100000:
                return fs.normpath(c), fd
            posix.close(fd)
    finally:
        posix.close(root)
    return None


def is_wasm_entrypoint(spec: Spec) -> bool:
    """compat-smart: whether process.args[0] is a Wasm module, by its magic, not its name."""
    found = locate_module(spec)
    if found is None:
        return False
    return is_module(found[1])


def select(spec: Spec, wanted: str) -> Handler:
    """The handler for a container whose annotations ask for wasm (`wanted` is wasm or
    wasm-smart): a CRI sandbox (pause) container never gets one, and wasm-smart falls back
    to native unless the entrypoint really is a module."""
    if spec.annotations.get(SANDBOX_ANNOTATION) == "sandbox":
        return Native()
    if wanted == "wasm-smart" and not is_wasm_entrypoint(spec):
        return Native()
    return Wasm(annotation_key(spec))


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        b = posix.read(fd, 1 << 20)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def memory_bound(spec: Spec) -> int | None:
    """Linear memory allowed to the module: below the cgroup memory limit, so that a
    module growing past it sees memory.grow fail (malloc returns NULL) instead of the
    whole container being OOM-killed."""
    mem = spec.linux.resources.get("memory") if spec.linux is not None else None
    limit = mem.get("limit") if isinstance(mem, dict) else None
    if not isinstance(limit, int) or limit <= 0:
        return None
    return max(limit - RUNTIME_HEADROOM, limit // 2)


class Wasm(Handler):
    name = "wasm"
    aliases = ("wasmtime", "wasm-smart")

    def __init__(self, key: str = HANDLER_ANNOTATION) -> None:
        self.key = key
        self.guest_path = ""
        self.args: list[str] = []
        self.memory: int | None = None
        self.filter: bytes | None = None
        self.module: Result | None = None
        self.settings: Settings | None = None
        self.host: HostFiles | None = None
        self.lib_dirs: list[str] = []
        self.views: dict[str, int] = {}
        self.module_fd = -1
        self.handoff_fd = -1
        self.early = False

    def prepare(self, spec: Spec, log: Log | None = None) -> None:
        """Everything that can fail, checked now, in the runtime: the module, the engine's
        presence, the host, the compiled code (from the cache, verified, or compiled now)
        and the allowlist. Errors are one line, and nothing of the container exists yet."""
        proc = spec.process
        if proc is None:
            return
        found = locate_module(spec)
        if found is None:
            raise YacrError(f"process.args[0]: {proc.args[0]!r} is not a file in the rootfs "
                            f"(annotations.{self.key} asks for a wasm module)")
        self.guest_path, fd = found
        try:
            wasm = _read_all(fd)
        finally:
            posix.close(fd)
        if wasm[:4] != WASM_MAGIC:
            raise YacrError(f"process.args[0]: {proc.args[0]} is not a WebAssembly module "
                            f"(no \\0asm magic), but annotations.{self.key} asks for wasm")
        # everything init will need after pivot_root is imported now
        from yacr.wasm import engine, has_start_section, host
        from yacr.wasm.cache import Cache

        try:
            lib_path = engine.find_library()
            self.host = host.find()
        except YacrError as e:
            raise YacrError(f"annotations.{self.key}: {e}") from None
        self.args = list(proc.args)
        self.memory = memory_bound(spec)
        self.early = not has_start_section(wasm)
        small = any(r.type == "RLIMIT_AS" for r in proc.rlimits)
        want_filter = spec.annotations.get(SECCOMP_ANNOTATION, "on") != "off"
        if not want_filter and log is not None:
            log.warn(f"annotations.{SECCOMP_ANNOTATION}=off: the wasm engine runs "
                     "without its syscall allowlist (for debugging only)")
        if fs.normpath(proc.cwd or "/") != "/" and log is not None:
            # WASI preview 1 has no working directory: wasi-libc starts every module in
            # "/" (it reads no PWD), so relative paths would silently miss process.cwd.
            log.warn(f"process.cwd={proc.cwd}: a wasm module starts in / (WASI has no "
                     "working directory); its relative paths resolve from the root")
        cache = Cache(engine.Settings(small_reservation=small), log=log, lib_path=lib_path)
        try:
            res = cache.load(wasm, f"process.args[0] {proc.args[0]}")
        except engine.EngineError as e:
            raise YacrError(str(e) if str(e).startswith("process.args[0]") else
                            f"annotations.{self.key}: {e}") from None
        self.module = res
        self.settings = cache.settings
        if res.path is None:
            self.module_fd = res.fd  # a sealed memfd: nothing can change it
        else:
            # The cache entry itself (the runtime is root: only root uses the cache),
            # through a read-only view of the very file verified, made here because a
            # file can be cloned only from the mount namespace it was opened in.
            try:
                self.module_fd = host.readonly_view(fd=res.fd)
            except OSError as e:
                raise YacrError(f"wasm host: cannot make a read-only view of {res.path}: "
                                f"{e.strerror}") from None
            res.close()
        if log is not None:
            log.debug(f"wasm module {self.guest_path}: cache {res.status}"
                      + (f" ({res.path})" if res.path else "")
                      + (f": {res.detail}" if res.detail else ""))
        # the host loads the C library's directories first, then wasmtime's
        self.lib_dirs = list(dict.fromkeys(self.host.lib_dirs + [fs.dirname(lib_path)]))
        if want_filter:
            from yacr.wasm.allowlist import program

            self.filter = program(cache, log, instantiate=not self.early)

    def before_pivot(self) -> None:
        """In init, while the host's files are reachable: a read-only view of each
        directory the host is loaded from (made here, in the container's mount namespace,
        so that a rootless container can make them too)."""
        from yacr.wasm.host import readonly_view

        files, res = self.host, self.module
        if files is None or res is None:
            return
        for d in dict.fromkeys([files.dir, files.loader_dir, *self.lib_dirs]):
            try:
                self.views[d] = readonly_view(d)
            except OSError as e:
                raise YacrError(f"wasm host: cannot make a read-only view of {d}: "
                                f"{e.strerror}") from None

    def resolve(self, arg0: str, env: dict[str, str], cwd: str) -> str:
        from yacr.wasm import host as H

        res = self.module
        if res is None or self.settings is None or self.module_fd < 0:
            raise YacrError(f"annotations.{self.key}: the module was not prepared")
        probe = f"/proc/self/fd/{self.module_fd}"
        try:
            posix.stat(probe)
        except OSError:
            raise YacrError(f"annotations.{self.key}: the wasm host needs /proc in the "
                            "container (add a proc mount at /proc to mounts)") from None
        h = H.Handoff()
        h.text(H.ARG, self.guest_path, "process.args[0]")
        for i, a in enumerate(self.args[1:], 1):
            h.text(H.ARG, a, f"process.args[{i}]")
        for k, v in env.items():
            h.text(H.ENV, f"{k}={v}", "process.env")
        h.pair(H.PREOPEN, "/", "/")
        h.module(res, self.module_fd)
        for k, v in self.settings.config():
            h.pair(H.CONFIG, k, v)
        if self.memory is not None:
            h.add(H.MEMORY_LIMIT, self.memory.to_bytes(8, "little"))
        if self.filter is not None:
            h.add(H.SECCOMP, self.filter)
        for sig in STOP_SIGNALS:
            h.u32(H.STOP_SIGNAL, sig)
        for fd in self.views.values():
            h.u32(H.CLOSE_FD, fd)
        if self.early:
            h.add(H.EARLY)
        h.u32(H.TRAP_EXIT, TRAP_EXIT)
        self.handoff_fd = H.sealed(h.bytes())
        return self.guest_path

    def run(self, path: str, args: list[str], env: dict[str, str]) -> NoReturn:
        from yacr.wasm.host import exec_host

        if self.host is None or self.handoff_fd < 0:
            raise YacrError("wasm: the module was not prepared")
        posix.set_inheritable(self.module_fd, True)
        exec_host(self.host, self.views, self.lib_dirs, self.handoff_fd, HOST_ENV)


class NativeExec(Native):
    """exec into a wasm container: a native program from its rootfs, if it has one."""

    def resolve(self, arg0: str, env: dict[str, str], cwd: str) -> str:
        try:
            return super().resolve(arg0, env, cwd)
        except YacrError as e:
            raise YacrError(f"{e} (this is a wasm container: exec runs native programs "
                            "from its rootfs, and its module cannot be exec'd)") from None
