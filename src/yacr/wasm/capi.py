"""yacr's compiler: a lean binding of the wasmtime C-API functions that compile a module.

Modules run in the native host (wasmhost/yacr-wasmhost.c), never in Python; Python
loads wasmtime's library only to compile, on a cache miss at `create` and in `yacr wasm
compile`. `import wasmtime` costs ~75 ms here (typing, 762 ctypes prototypes, pathlib,
platform), so yacr uses the PyPI package only as the carrier of the shared library
(`_libwasmtime.so`, the `wasm` extra) and binds the ~15 entry points below itself.

Every call goes through `_ctypes` with no argtypes: integers that are not C
ints are wrapped explicitly (pointers as c_void_p, sizes as uint64), because
an unwrapped Python int would be passed as a 32-bit int.
"""

from __future__ import annotations

import _ctypes
import _struct

from yacr.linux import sys as S

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# re-exported: yacr.wasm.engine is the light half of this module
from yacr.wasm import has_start_section  # noqa: E402
from yacr.wasm.engine import (  # noqa: E402
    INSTALL_HINT,
    LIBRARY_ENV,
    EngineError,
    Settings,
    find_library,
    library_version,
)

__all__ = [
    "INSTALL_HINT",
    "LIBRARY_ENV",
    "EngineError",
    "Settings",
    "find_library",
    "has_start_section",
    "library_version",
]


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
    """dlopen through libc as a foreign call (`_ctypes.dlopen` holds the GIL)."""
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
        p, none = _func_type(S.c_void_p), _func_type(None)

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
        self.init_cow = f("wasmtime_config_memory_init_cow_set", none)
        self.unwind = f("wasmtime_config_native_unwind_info_set", none)
        self.guard = f("wasmtime_config_memory_guard_size_set", none)
        self.growth = f("wasmtime_config_memory_reservation_for_growth_set", none)
        self.module_new = f("wasmtime_module_new", p)
        self.module_serialize = f("wasmtime_module_serialize", p)
        self.module_deserialize = f("wasmtime_module_deserialize", p)
        self.byte_vec_delete = f("wasm_byte_vec_delete", none)
        self.error_message = f("wasmtime_error_message", none)
        self.error_delete = f("wasmtime_error_delete", none)

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
    """A configured wasmtime engine, configured exactly as the host's will be."""

    def __init__(self, settings: Settings | None = None, lib: Lib | None = None) -> None:
        self.lib = lib or load()
        self.settings = settings or Settings()
        L = self.lib
        cfg = L.config_new()
        L.parallel(_ptr(cfg), _bool(self.settings.parallel))
        # the same settings the host applies (yacr.wasm.engine.Settings.config)
        for k, v in self.settings.config():
            if k.startswith("cranelift."):
                L.flag_set(_ptr(cfg), k[10:].encode(), v.encode())
            elif k == "opt_level":
                L.opt_level(_ptr(cfg), _u8(int(v)))
            elif k in ("memory_init_cow", "native_unwind_info"):
                (L.init_cow if k == "memory_init_cow" else L.unwind)(_ptr(cfg),
                                                                     _bool(v == "true"))
            elif k in ("memory_reservation", "memory_guard_size",
                       "memory_reservation_for_growth"):
                setter = {"memory_reservation": L.reservation, "memory_guard_size": L.guard,
                          "memory_reservation_for_growth": L.growth}[k]
                setter(_ptr(cfg), S.c_uint64(int(v)))
            else:
                raise EngineError(f"engine setting {k}: unknown")
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
