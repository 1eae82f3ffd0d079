"""A lean binding of the few wasmtime C-API functions a container run needs.

`import wasmtime` costs ~75 ms here (typing, 762 ctypes prototypes, pathlib,
platform), more than a whole crun container start. The engine itself lives in
the shared library that the PyPI package bundles (`_libwasmtime.so`); loading
it costs ~1 ms (dlopen is called as a foreign function, so it runs without the
GIL, in a thread), and binding only the ~40 entry points below costs ~0.1 ms.
So yacr uses the PyPI package only as the carrier of that library (the `wasm`
extra) and never imports its Python code on the container path.

Every call goes through `_ctypes` with no argtypes: integers that are not C
ints are wrapped explicitly (pointers as c_void_p, sizes as uint64), because
an unwrapped Python int would be passed as a 32-bit int.
"""

from __future__ import annotations

import _ctypes
import _struct
import posix
import sys

from yacr.errors import YacrError
from yacr.linux import sys as S

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

INSTALL_HINT = ("install the wasm extra into yacr's environment: `make setup`, or "
                "pip install 'yacr[wasm]' (PyPI wasmtime==50.0.1)")
LIBRARY_ENV = "YACR_WASMTIME_LIBRARY"
_LIBNAME = "_libwasmtime.so"


class EngineError(YacrError):
    """wasmtime refused something (a bad module, an incompatible serialized artifact, ...)."""


def _simple(name: str, code: str) -> type:
    return type(name, (_ctypes._SimpleCData,), {"_type_": code})


_i64 = _simple("c_int64", "q")
_bool = _simple("c_bool", "?")
_u8 = _simple("c_uint8", "B")
_ARRAYS: dict[int, type] = {}


def _chars(n: int) -> type:
    """The C type char[n] (cached: making a ctypes type costs ~160k instructions)."""
    t = _ARRAYS.get(n)
    if t is None:
        t = type("_chars", (_ctypes.Array,), {"_type_": S.c_char, "_length_": max(n, 1)})
        _ARRAYS[n] = t
    return t


def _buf(n: int) -> Any:
    return _chars(n)()


def _ptr(v: int | None) -> Any:
    return S.c_void_p(v)


def _read(addr: int, n: int) -> bytes:
    """n bytes at a C address, copied into Python."""
    if n == 0:
        return b""
    return bytes(_chars(n).from_address(addr))


def _cstring_array(items: list[bytes]) -> tuple[Any, Any]:
    """(storage, char*[]) for a C array of strings; keep both alive during the call."""
    blob = b"".join(s + b"\0" for s in items)
    store = _chars(len(blob)).from_buffer_copy(blob or b"\0")
    base = _ctypes.addressof(store)
    addrs, off = [], 0
    for s in items:
        addrs.append(base + off)
        off += len(s) + 1
    packed = _struct.pack(f"{len(addrs)}Q", *addrs) if addrs else b"\0" * 8
    return store, _chars(len(packed)).from_buffer_copy(packed)


# --- finding the library -----------------------------------------------------------------

def _machine() -> str:
    m = posix.uname().machine
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m.lower(), m)


def find_library() -> str:
    """The bundled _libwasmtime.so of the PyPI wasmtime package, without importing it.

    The launcher runs Python with -S, so site-packages is not on sys.path: look there
    by hand (the venv's, then the system's), after sys.path itself.
    """
    env = posix.environ.get(LIBRARY_ENV.encode())
    if env is not None:
        path = env.decode()
        if not posix.access(path, posix.R_OK):
            raise EngineError(f"{LIBRARY_ENV}={path}: no such library; {INSTALL_HINT}")
        return path
    sub = f"wasmtime/linux-{_machine()}/{_LIBNAME}"
    ver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    dirs = [p for p in sys.path if p]
    from yacr.venv import site_packages

    dirs += site_packages()
    for prefix in (sys.prefix, sys.base_prefix):
        dirs.append(f"{prefix}/lib/{ver}/site-packages")
    dirs += [f"/usr/local/lib/{ver}/dist-packages", "/usr/lib/python3/dist-packages"]
    for d in dirs:
        cand = f"{d}/{sub}"
        if posix.access(cand, posix.R_OK):
            return cand
    raise EngineError(f"the wasm handler needs wasmtime, which is not installed; {INSTALL_HINT}")


def library_version(lib_path: str) -> str:
    """wasmtime's version, from the package's dist-info beside it (no import needed), plus
    the library's size and mtime, so a reinstall never reuses stale compiled code."""
    pkg_parent = lib_path.rsplit("/", 3)[0]
    version = "unknown"
    try:
        for name in posix.listdir(pkg_parent):
            if name.startswith("wasmtime-") and name.endswith(".dist-info"):
                version = name[len("wasmtime-"):-len(".dist-info")]
                break
    except OSError:
        pass
    st = posix.stat(lib_path)
    return f"{version}/{st.st_size}/{st.st_mtime_ns}"


# --- the engine's configuration ----------------------------------------------------------

class Settings:
    """The engine configuration; part of the AOT cache key (wasmtime rejects artifacts
    compiled under another configuration, and so do we, before even trying).

    - Cranelift at opt level `speed`, no epoch or fuel checks (10-50% of guest time here):
      a container is stopped by a signal, which a thread turns into an exit.
    - Spectre mitigations on heap and table bounds checks off: with the default 4 GiB
      reservation plus guard pages there are no heap bounds checks to harden, and a
      container's module runs alone in its process, so there is no other tenant's data
      in the address space to leak.
    - `small_reservation` when RLIMIT_AS is set: each linear memory reserves 64 MiB of
      address space instead of 4 GiB + guard, so instantiation fits under the limit
      (bounds checks become explicit, which costs some speed).
    """

    __slots__ = ("small_reservation", "parallel")

    VERSION = 1

    def __init__(self, small_reservation: bool = False, parallel: bool = False) -> None:
        self.small_reservation = small_reservation
        # Compilation threads must not exist when the runtime forks init (a compile in the
        # child then deadlocked): only `yacr wasm compile` may use them.
        self.parallel = parallel

    def key(self) -> str:
        return f"v{self.VERSION},res={'64M' if self.small_reservation else 'default'}"


# --- the binding -------------------------------------------------------------------------

class _Handle:
    """A dlopen handle in the shape CFuncPtr((name, library)) expects."""

    __slots__ = ("_handle",)

    def __init__(self, handle: int) -> None:
        self._handle = handle


_FUNC_TYPES: dict[Any, type] = {}


def _func_type(restype: Any) -> type:
    """One CFuncPtr class per return type: making a class costs ~160k instructions, so
    binding 35 functions with one class each (what S.Library.function does) would cost
    more than loading the 29 MB library."""
    t = _FUNC_TYPES.get(restype)
    if t is None:
        t = type("wasmtime_fn", (_ctypes.CFuncPtr,), {
            "_flags_": _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO,
            "_restype_": restype})
        _FUNC_TYPES[restype] = t
    return t


def _dlopen(path: str) -> _Handle:
    """dlopen through libc as a foreign call, which releases the GIL (`_ctypes.dlopen`
    holds it), so the library can load in a thread while create goes on."""
    libc = S.Library(None)
    fn = _func_type(S.c_void_p)(("dlopen", libc))
    handle = fn(path.encode(), S.c_int(2))  # RTLD_NOW: resolve now, not in the guest's path
    if not handle:
        err = _func_type(S.c_void_p)(("dlerror", libc))()
        why = _read(err, 512).split(b"\0", 1)[0].decode(errors="replace") if err else "?"
        raise OSError(2, why)
    return _Handle(handle)


class Lib:
    """The entry points of _libwasmtime.so that yacr uses, bound by name."""

    def __init__(self, path: str) -> None:
        try:
            lib = _dlopen(path)
        except OSError as e:
            raise EngineError(f"cannot load wasmtime's library {path}: {e.strerror}; "
                              f"{INSTALL_HINT}") from None
        self.path = path
        p, b, none = _func_type(S.c_void_p), _func_type(_bool), _func_type(None)

        def f(name: str, kind: type) -> Any:
            try:
                return kind((name, lib))
            except AttributeError:
                raise EngineError(f"{path} has no {name}: not the wasmtime version yacr "
                                  f"needs; {INSTALL_HINT}") from None

        self.config_new = f("wasm_config_new", p)
        self.engine_new = f("wasm_engine_new_with_config", p)
        self.opt_level = f("wasmtime_config_cranelift_opt_level_set", none)
        self.flag_set = f("wasmtime_config_cranelift_flag_set", none)
        self.parallel = f("wasmtime_config_parallel_compilation_set", none)
        self.reservation = f("wasmtime_config_memory_reservation_set", none)
        self.guard = f("wasmtime_config_memory_guard_size_set", none)
        self.growth = f("wasmtime_config_memory_reservation_for_growth_set", none)
        self.module_new = f("wasmtime_module_new", p)
        self.module_serialize = f("wasmtime_module_serialize", p)
        self.module_deserialize = f("wasmtime_module_deserialize", p)
        self.byte_vec_delete = f("wasm_byte_vec_delete", none)
        self.error_message = f("wasmtime_error_message", none)
        self.error_exit_status = f("wasmtime_error_exit_status", b)
        self.error_delete = f("wasmtime_error_delete", none)
        self.trap_message = f("wasm_trap_message", none)
        self.store_new = f("wasmtime_store_new", p)
        self.store_context = f("wasmtime_store_context", p)
        self.store_limiter = f("wasmtime_store_limiter", none)
        self.wasi_new = f("wasi_config_new", p)
        self.wasi_argv = f("wasi_config_set_argv", b)
        self.wasi_env = f("wasi_config_set_env", b)
        self.wasi_stdin = f("wasi_config_inherit_stdin", none)
        self.wasi_stdout = f("wasi_config_inherit_stdout", none)
        self.wasi_stderr = f("wasi_config_inherit_stderr", none)
        self.wasi_preopen = f("wasi_config_preopen_dir", b)
        self.set_wasi = f("wasmtime_context_set_wasi", p)
        self.linker_new = f("wasmtime_linker_new", p)
        self.define_wasi = f("wasmtime_linker_define_wasi", p)
        self.instantiate_pre = f("wasmtime_linker_instantiate_pre", p)
        self.pre_instantiate = f("wasmtime_instance_pre_instantiate", p)
        self.export_get = f("wasmtime_instance_export_get", b)
        self.func_call = f("wasmtime_func_call", p)
        self.allow_shadowing = f("wasmtime_linker_allow_shadowing", none)
        self.define_func = f("wasmtime_linker_define_func", p)
        self.valtype_new = f("wasm_valtype_new", p)
        self.valtype_vec_new = f("wasm_valtype_vec_new", none)
        self.valtype_vec_empty = f("wasm_valtype_vec_new_empty", none)
        self.functype_new = f("wasm_functype_new", p)
        self.functype_delete = f("wasm_functype_delete", none)

    # errors ---------------------------------------------------------------------------
    def _vec_text(self, fill: Any, obj: int) -> str:
        vec = _buf(16)
        fill(_ptr(obj), vec)
        size, data = _struct.unpack("QQ", bytes(vec))
        raw = _read(data, size) if data else b""
        self.byte_vec_delete(vec)
        return raw.rstrip(b"\0").decode(errors="replace")

    def error_text(self, err: int) -> str:
        return self._vec_text(self.error_message, err)

    def trap_text(self, trap: int) -> str:
        return self._vec_text(self.trap_message, trap)

    def check(self, err: int | None, what: str) -> None:
        if err:
            msg = self.error_text(err)
            self.error_delete(_ptr(err))
            raise EngineError(f"{what}: {msg.splitlines()[0] if msg else 'failed'}")


_LIB: Lib | None = None


def load(path: str | None = None) -> Lib:
    """The library, loaded once per process (init inherits the runtime's copy)."""
    global _LIB
    if _LIB is None or (path is not None and _LIB.path != path):
        _LIB = Lib(path or find_library())
    return _LIB


class Engine:
    """A configured wasmtime engine. Created in the runtime before init is forked, so the
    library and the compiled code are in init's memory after pivot_root."""

    def __init__(self, settings: Settings | None = None, lib: Lib | None = None) -> None:
        self.lib = lib or load()
        self.settings = settings or Settings()
        L = self.lib
        cfg = L.config_new()
        L.opt_level(_ptr(cfg), _u8(1))  # WASMTIME_OPT_LEVEL_SPEED
        L.flag_set(_ptr(cfg), b"enable_heap_access_spectre_mitigation", b"false")
        L.flag_set(_ptr(cfg), b"enable_table_access_spectre_mitigation", b"false")
        L.parallel(_ptr(cfg), _bool(self.settings.parallel))
        if self.settings.small_reservation:
            L.reservation(_ptr(cfg), S.c_uint64(64 << 20))
            L.guard(_ptr(cfg), S.c_uint64(64 << 10))
            L.growth(_ptr(cfg), S.c_uint64(0))
        self.ptr = L.engine_new(_ptr(cfg))  # takes ownership of cfg
        if not self.ptr:
            raise EngineError("wasmtime could not create an engine")

    def compile(self, wasm: bytes, what: str = "module") -> Module:
        out = _buf(8)
        self.lib.check(self.lib.module_new(_ptr(self.ptr), wasm, S.c_uint64(len(wasm)), out),
                       f"{what}: not a valid WebAssembly module")
        return Module(self, _struct.unpack("P", bytes(out))[0])

    def deserialize(self, data: bytes) -> Module:
        """Load compiled code. The caller vouches for it (see yacr.wasm.cache): wasmtime
        checks its version and configuration, not its integrity."""
        out = _buf(8)
        self.lib.check(self.lib.module_deserialize(_ptr(self.ptr), data,
                                                   S.c_uint64(len(data)), out),
                       "compiled module")
        return Module(self, _struct.unpack("P", bytes(out))[0])


class Module:
    __slots__ = ("engine", "ptr")

    def __init__(self, engine: Engine, ptr: int) -> None:
        self.engine = engine
        self.ptr = ptr

    def serialize(self) -> bytes:
        L = self.engine.lib
        vec = _buf(16)
        L.check(L.module_serialize(_ptr(self.ptr), vec), "serialize")
        size, data = _struct.unpack("QQ", bytes(vec))
        raw = _read(data, size)
        L.byte_vec_delete(vec)
        return raw


TRAP_EXIT = 134  # what wasmtime's own CLI returns for a trap (128 + SIGABRT)


def has_start_section(wasm: bytes) -> bool:
    """Whether the module has a start function (section 8), which instantiation runs."""
    i = 8
    n = len(wasm)
    while i < n:
        sid = wasm[i]
        i += 1
        size = shift = 0
        while i < n:
            b = wasm[i]
            i += 1
            size |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if sid == 8:
            return True
        i += size
    return False


# wasmtime_func_callback_t: (env, caller, args, nargs, results, nresults) -> wasm_trap_t*
_CALLBACK: Any = None


def _callback_type() -> Any:
    global _CALLBACK
    if _CALLBACK is None:
        p, u64 = S.c_void_p, S.c_uint64
        _CALLBACK = type("wasmtime_callback", (_ctypes.CFuncPtr,), {
            "_flags_": _ctypes.FUNCFLAG_CDECL, "_restype_": p,
            "_argtypes_": (p, p, p, u64, p, u64)})
    return _CALLBACK


def _proc_exit(env: Any, caller: Any, args: Any, nargs: int, results: Any,
               nresults: int) -> None:
    # wasmtime_val_t: kind (u8), then the value at offset 8
    code = _struct.unpack("I", _read(args + 8, 4))[0] if args and nargs else 1
    posix._exit(code & 0xFF)


def _define_proc_exit(L: Lib, linker: int) -> Any:
    """WASI's proc_exit, replaced so that every code reaches the container's exit status:
    wasmtime's own turns codes >= 126 into an error without the code. The module flushed
    its own buffers before calling it, so exiting at once loses nothing."""
    L.allow_shadowing(_ptr(linker), _bool(True))
    params, results = _buf(16), _buf(16)
    vt = _chars(8).from_buffer_copy(_struct.pack("P", L.valtype_new(_u8(0))))  # i32
    L.valtype_vec_new(params, S.c_uint64(1), vt)
    L.valtype_vec_empty(results)
    ft = L.functype_new(params, results)  # takes ownership of both vectors
    cb = _callback_type()(_proc_exit)
    try:
        L.check(L.define_func(_ptr(linker), b"wasi_snapshot_preview1", S.c_uint64(22),
                              b"proc_exit", S.c_uint64(9), _ptr(ft), cb, None, None),
                "proc_exit")
    finally:
        L.functype_delete(_ptr(ft))
    return cb


class Linked:
    """The module linked against WASI (wasmtime's InstancePre): engine-level, so it is made
    in the runtime before the fork, in parallel with the rest of `create`."""

    __slots__ = ("module", "linker", "pre", "_exit_cb")

    def __init__(self, module: Module) -> None:
        L = module.engine.lib
        self.module = module
        self.linker = L.linker_new(_ptr(module.engine.ptr))
        L.check(L.define_wasi(_ptr(self.linker)), "WASI")
        self._exit_cb = _define_proc_exit(L, self.linker)
        out = _buf(8)
        L.check(L.instantiate_pre(_ptr(self.linker), _ptr(module.ptr), out),
                "the module's imports")
        self.pre = _struct.unpack("P", bytes(out))[0]


class Prepared:
    """A module linked against WASI in its own store, ready to instantiate and run.

    Everything up to here happens before `start`; `run` only instantiates (which can run
    the module's start function, so it must wait for `start`) and calls `_start`.
    """

    __slots__ = ("lib", "store", "context", "pre", "_keep", "instance")

    def __init__(self, linked: Linked, argv: list[str], env: dict[str, str],
                 preopens: list[tuple[str, str]], memory_limit: int | None) -> None:
        self.instance: Any = None
        module = linked.module
        L = self.lib = module.engine.lib
        self.store = L.store_new(_ptr(module.engine.ptr), None, None)
        self.context = L.store_context(_ptr(self.store))
        if memory_limit is not None:
            # bytes of linear memory per memory; -1 keeps wasmtime's defaults
            L.store_limiter(_ptr(self.store), _i64(memory_limit), _i64(-1), _i64(-1),
                            _i64(-1), _i64(-1))
        wasi = L.wasi_new()
        enc = [a.encode() for a in argv]
        keep_a = _cstring_array(enc)
        if not L.wasi_argv(_ptr(wasi), S.c_uint64(len(enc)), keep_a[1]):
            raise EngineError("process.args: wasmtime refused the arguments")
        names = [k.encode() for k in env]
        values = [v.encode() for v in env.values()]
        keep_n, keep_v = _cstring_array(names), _cstring_array(values)
        if not L.wasi_env(_ptr(wasi), S.c_uint64(len(names)), keep_n[1], keep_v[1]):
            raise EngineError("process.env: wasmtime refused the environment")
        L.wasi_stdin(_ptr(wasi))
        L.wasi_stdout(_ptr(wasi))
        L.wasi_stderr(_ptr(wasi))
        for host, guest in preopens:
            if not L.wasi_preopen(_ptr(wasi), host.encode(), guest.encode(), _bool(True)):
                raise EngineError(f"cannot preopen {host} as {guest} for the module")
        L.check(L.set_wasi(_ptr(self.context), _ptr(wasi)), "WASI")  # takes ownership
        self.pre = linked.pre
        self._keep = (keep_a, keep_n, keep_v, linked)

    def instantiate(self, stderr: int = 2) -> int | None:
        """Make the instance (linear memory, tables, the memory image): None on success,
        else the exit status. Only runs guest code if the module has a start function, so
        for other modules it is done before `start` (and before the seccomp allowlist)."""
        if self.instance is not None:
            return None
        inst = _buf(16)
        trap = _buf(8)
        err = self.lib.pre_instantiate(_ptr(self.pre), _ptr(self.context), inst, trap)
        code = self._outcome(err, trap, stderr)
        if code is None:
            self.instance = inst
        return code

    def run(self, stderr: int = 2) -> int:
        """Call `_start` (instantiating first if not done yet); returns the exit status
        (proc_exit's code, 0 when main returns, TRAP_EXIT with the message on stderr for a
        trap)."""
        L = self.lib
        code = self.instantiate(stderr)
        if code is not None:
            return code
        inst = self.instance
        trap = _buf(8)
        ext = _buf(32)  # wasmtime_extern_t: kind (u8), then the union at offset 8
        if not L.export_get(_ptr(self.context), inst, b"_start", S.c_uint64(6), ext) or \
                bytes(ext)[0] != 0:
            _say(stderr, "the module exports no _start function (not a WASI command)")
            return 1
        func = _ctypes.addressof(ext) + 8
        err = L.func_call(_ptr(self.context), _ptr(func), None, S.c_uint64(0), None,
                          S.c_uint64(0), trap)
        code = self._outcome(err, trap, stderr)
        return 0 if code is None else code

    def _outcome(self, err: int | None, trap: Any, stderr: int) -> int | None:
        L = self.lib
        if err:
            status = _buf(4)
            if L.error_exit_status(_ptr(err), status):
                code = _struct.unpack("i", bytes(status))[0]
                L.error_delete(_ptr(err))
                return code & 0xFF
            msg = L.error_text(err)
            L.error_delete(_ptr(err))
            _say(stderr, msg)
            return 1
        t = _struct.unpack("P", bytes(trap))[0]
        if t:
            _say(stderr, "wasm trap: " + L.trap_text(t))
            return TRAP_EXIT
        return None


def _say(fd: int, msg: str) -> None:
    try:
        posix.write(fd, (msg.rstrip("\n") + "\n").encode(errors="replace"))
    except OSError:
        pass
