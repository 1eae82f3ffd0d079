"""What the wasm path knows about the engine without loading it: where wasmtime's library
is, its version, and the engine's configuration.

The configuration is decided here, once, as a list of settings: yacr's compiler
(yacr.wasm.capi, on a cache miss and in `yacr wasm compile`) applies it to the engine
that compiles a module, and the host (wasmhost/yacr-wasmhost.c) applies the very same
list, handed over verbatim, to the engine that loads it. wasmtime refuses compiled
code made under another configuration, and the list is part of the cache key.

Nothing here loads the 29 MB library: a container whose module is in the cache never
maps it in the runtime at all, only in the host.
"""

from __future__ import annotations

import posix
import sys

from yacr.errors import YacrError

INSTALL_HINT = ("install the wasm extra into yacr's environment: `make setup`, or "
                "pip install 'yacr[wasm]' (PyPI wasmtime==50.0.1)")
LIBRARY_ENV = "YACR_WASMTIME_LIBRARY"
LIBNAME = "_libwasmtime.so"


class EngineError(YacrError):
    """wasmtime refused something (a bad module, an incompatible serialized artifact, ...)."""


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
    sub = f"wasmtime/linux-{_machine()}/{LIBNAME}"
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


class Settings:
    """The engine configuration; part of the AOT cache key (wasmtime rejects artifacts
    compiled under another configuration, and so do we, before even trying).

    - Cranelift at opt level `speed`, no epoch or fuel checks (10-50% of guest time here):
      a container is stopped by a signal, which the host turns into an exit.
    - Spectre mitigations on heap and table bounds checks off: with the default 4 GiB
      reservation plus guard pages there are no heap bounds checks to harden, and a
      container's module runs alone in its process, so there is no other tenant's data
      in the address space to leak.
    - Copy-on-write memory images (wasmtime's default, said explicitly): the host maps
      the module's data segments from the compiled file itself, so containers of one
      module share those pages until they write them.
    - `small_reservation` when RLIMIT_AS is set: each linear memory reserves 64 MiB of
      address space instead of 4 GiB + guard, so instantiation fits under the limit
      (bounds checks become explicit, which costs some speed).
    """

    __slots__ = ("small_reservation", "parallel")

    VERSION = 2

    def __init__(self, small_reservation: bool = False, parallel: bool = False) -> None:
        self.small_reservation = small_reservation
        # Compilation threads must not exist when the runtime forks init (a compile in the
        # child then deadlocked): only `yacr wasm compile` may use them. Not part of the
        # key: it changes how fast code is made, not the code.
        self.parallel = parallel

    def config(self) -> list[tuple[str, str]]:
        """The settings, as (key, value) in the host's handoff vocabulary (docs/WASM.md)."""
        out = [("opt_level", "1"),  # WASMTIME_OPT_LEVEL_SPEED
               ("cranelift.enable_heap_access_spectre_mitigation", "false"),
               ("cranelift.enable_table_access_spectre_mitigation", "false"),
               ("memory_init_cow", "true")]
        if self.small_reservation:
            out += [("memory_reservation", str(64 << 20)), ("memory_guard_size", str(64 << 10)),
                    ("memory_reservation_for_growth", "0")]
        return out

    def key(self) -> str:
        return f"v{self.VERSION}," + ",".join(f"{k}={v}" for k, v in self.config())
