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


def feature_annotations() -> dict[str, str]:
    """What `yacr features` says about wasm: the engine, the allowlist's size, the cache."""
    from yacr.wasm import allowlist, cache
    from yacr.wasm import engine as E

    try:
        lib = E.find_library()
        engine = "wasmtime " + E.library_version(lib).split("/", 1)[0]
    except E.EngineError:
        engine = f"not installed ({E.INSTALL_HINT})"
    return {
        "io.github.yacr.wasm.engine": engine,
        "io.github.yacr.wasm.selectedBy": "run.oci.handler=wasm, module.wasm.image/variant="
                                          "compat|compat-smart",
        "io.github.yacr.wasm.seccompAllowlist": f"{allowlist.allowed_count()} syscalls "
                                                "(the same for modules with a start "
                                                "function; off with "
                                                "io.github.yacr.wasm.seccomp=off)",
        "io.github.yacr.wasm.cache": cache.cache_dir(),
    }
