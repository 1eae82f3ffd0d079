"""WebAssembly support: the engine binding, the AOT cache and the seccomp allowlist.

Nothing here is imported for a native container: the wasm handler pulls these
modules in only when a container's annotations (or its entrypoint, for
compat-smart) make it a wasm container.
"""

from __future__ import annotations

import posix

WASM_MAGIC = b"\0asm"


def is_module(fd: int) -> bool:
    """Whether the open file starts with the `\\0asm` magic (the name alone proves
    nothing); the fd is closed."""
    try:
        return posix.read(fd, 4) == WASM_MAGIC
    except OSError:
        return False
    finally:
        posix.close(fd)


def feature_annotations() -> dict[str, str]:
    """What `yacr features` says about wasm: the engine, the allowlist's size, the cache."""
    from yacr.wasm import allowlist, cache, capi

    try:
        lib = capi.find_library()
        engine = "wasmtime " + capi.library_version(lib).split("/", 1)[0]
    except capi.EngineError:
        engine = f"not installed ({capi.INSTALL_HINT})"
    return {
        "io.github.yacr.wasm.engine": engine,
        "io.github.yacr.wasm.selectedBy": "run.oci.handler=wasm, module.wasm.image/variant="
                                          "compat|compat-smart",
        "io.github.yacr.wasm.seccompAllowlist": f"{allowlist.allowed_count()} syscalls "
                                                f"(+{len(allowlist.FOR_INSTANTIATION)} for "
                                                "modules with a start function; off with "
                                                "io.github.yacr.wasm.seccomp=off)",
        "io.github.yacr.wasm.cache": cache.cache_dir(),
    }
