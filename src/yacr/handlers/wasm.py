"""The wasm handler: a WASI module runs as the container's process, inside the container.

The module replaces init exactly where a native program would be exec'd, so it
runs in the container's namespaces, cgroup, rlimits, capabilities and
no_new_privs, after its hooks, and with init's pid. What costs time is done
as early as possible:

- `prepare` (in the runtime, before init is forked): load wasmtime's library,
  read the module from the rootfs, and compile it or deserialize it from the
  AOT cache; build the seccomp allowlist. After the fork init has all of it in
  memory, so nothing needs the host's files after pivot_root.
- `resolve` (in init, after pivot_root, before `start`): the WASI context
  (args, env, the container root preopened as `/`, inherited stdio), the store
  with its memory limit, and the linked module, ready to instantiate.
- `run` (after `start`): a thread that turns TERM/INT/HUP/QUIT/USR1/USR2 into an
  exit, the allowlist, then instantiate and `_start`; the exit status is the
  module's.
"""

from __future__ import annotations

import _signal
import _thread
import posix

from yacr import fs
from yacr.errors import YacrError
from yacr.handlers import HANDLER_ANNOTATION, VARIANT_ANNOTATION, Handler
from yacr.handlers.native import Native
from yacr.linux import sys as S
from yacr.wasm import WASM_MAGIC, is_module

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from yacr.linux.seccomp import Program
    from yacr.log import Log
    from yacr.spec import Spec
    from yacr.wasm.capi import Linked, Prepared

SECCOMP_ANNOTATION = "io.github.yacr.wasm.seccomp"
SANDBOX_ANNOTATION = "io.kubernetes.cri.container-type"
# Linear memory is bounded this far below the cgroup's memory limit, which must also hold
# init itself (the interpreter and the engine: ~18-24 MB resident here).
RUNTIME_HEADROOM = 24 << 20
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
        self.linked: Linked | None = None
        self.guest_path = ""
        self.args: list[str] = []
        self.memory: int | None = None
        self.filter: Program | None = None
        self.prepared: Prepared | None = None
        self.cache_status = ""
        self.early = False
        self.error = ""
        self._done: Any = None

    def prepare(self, spec: Spec, log: Log | None = None) -> None:
        """Check what can fail cheaply now (the module, the engine's presence), then load
        the engine, the compiled module and the allowlist in a thread while `create` goes
        on (the library loads and the module deserializes without the GIL); the thread is
        joined before init is forked (an at-fork hook), and resolve() reports its errors."""
        from yacr.wasm import capi

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
        try:
            lib_path = capi.find_library()
        except capi.EngineError as e:
            raise YacrError(f"annotations.{self.key}: {e}") from None
        self.args = list(proc.args)
        self.memory = memory_bound(spec)
        self.early = not capi.has_start_section(wasm)
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
        # imported here, not in the thread: an import holds the GIL, the loading does not
        from yacr.wasm import allowlist, cache  # noqa: F401

        self._done = _thread.allocate_lock()
        self._done.acquire()
        posix.register_at_fork(before=self.wait)
        _thread.start_new_thread(self._load, (wasm, lib_path, small, want_filter,
                                              f"process.args[0] {proc.args[0]}", log))
        posix.sched_yield()  # releases the GIL: the thread starts dlopen now, not in 5 ms

    def _load(self, wasm: bytes, lib_path: str, small: bool, want_filter: bool, what: str,
              log: Log | None) -> None:
        from yacr.wasm import capi
        from yacr.wasm.cache import Cache

        try:
            engine = capi.Engine(capi.Settings(small_reservation=small), capi.load(lib_path))
            cache = Cache(engine, log=log)
            res = cache.load(wasm, what)
            self.cache_status = res.status
            if log is not None:
                log.debug(f"wasm module {self.guest_path}: cache {res.status}"
                          + (f" ({res.path})" if res.path else "")
                          + (f": {res.detail}" if res.detail else ""))
            self.linked = capi.Linked(res.module)
            if want_filter:
                from yacr.wasm.allowlist import program

                self.filter = program(cache, log, instantiate=not self.early)
        except capi.EngineError as e:
            self.error = f"annotations.{self.key}: {e}"
        except YacrError as e:
            self.error = str(e)
        except BaseException as e:  # noqa: BLE001 - reported by resolve(), in init
            self.error = f"wasm: {type(e).__name__}: {e}"
        finally:
            self._done.release()

    def wait(self) -> None:
        """Until the loading thread is done (also the at-fork hook: no thread may be
        running when the runtime forks)."""
        if self._done is not None:
            self._done.acquire()
            self._done.release()

    def resolve(self, arg0: str, env: dict[str, str], cwd: str) -> str:
        from yacr.wasm.capi import EngineError, Prepared

        self.wait()
        if self.error:
            raise YacrError(self.error)
        if self.linked is None:
            raise YacrError(f"annotations.{self.key}: the module was not loaded")
        argv = [self.guest_path] + self.args[1:]
        try:
            self.prepared = Prepared(self.linked, argv, env, [("/", "/")], self.memory)
        except EngineError as e:
            raise YacrError(f"process.args[0] {arg0}: {e}") from None
        if self.early and self.prepared.instantiate() is not None:
            raise YacrError(f"process.args[0] {arg0}: the module cannot be instantiated")
        return self.guest_path

    def run(self, path: str, args: list[str], env: dict[str, str]) -> None:
        prepared = self.prepared
        if prepared is None:
            raise YacrError("wasm: the module was not prepared")
        # Python handlers never run while wasm code runs, and pid 1 ignores signals it has
        # no handler for: block them here and let a thread wait for them and exit.
        sigs = set(STOP_SIGNALS)
        # The engine's WASI layer makes a tokio runtime on the first call: one worker is
        # enough for a single-threaded guest, and a fixed count spares the CPU-count probe
        # (cgroup and sysfs reads, which the allowlist refuses). This is init's own
        # environment, not the module's (that is process.env, given to WASI).
        posix.putenv(b"TOKIO_WORKER_THREADS", b"1")
        _signal.pthread_sigmask(_signal.SIG_BLOCK, sigs)
        ready = _thread.allocate_lock()
        ready.acquire()
        _thread.start_new_thread(_exit_on_signal, (sigs, ready))
        # The thread's start-up (its gettid, its rseq area) happens before the allowlist,
        # which can then leave those calls out.
        ready.acquire()
        if self.filter is not None:
            # A wasm process never execs, so no_new_privs costs it nothing, and it lets the
            # filter load without CAP_SYS_ADMIN.
            S.prctl(S.PR_SET_NO_NEW_PRIVS, 1)
            self.filter.load()
        posix._exit(prepared.run())


def _exit_on_signal(sigs: set[int], ready: Any) -> None:
    ready.release()
    sig = _signal.sigwait(sigs)
    posix._exit(128 + sig)


class NativeExec(Native):
    """exec into a wasm container: a native program from its rootfs, if it has one."""

    def resolve(self, arg0: str, env: dict[str, str], cwd: str) -> str:
        try:
            return super().resolve(arg0, env, cwd)
        except YacrError as e:
            raise YacrError(f"{e} (this is a wasm container: exec runs native programs "
                            "from its rootfs, and its module cannot be exec'd)") from None
