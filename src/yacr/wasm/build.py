"""Build yacr's own Wasm modules from C with Debian's toolchain (clang, lld, wasi-libc).

The sample modules used by the tests, the demo and the benchmarks, and the
shootout programs, are compiled here from the sources beside this file: no
prebuilt binary comes from elsewhere. scripts/install-deps.sh installs the
toolchain (clang, lld, wasi-libc, libclang-rt-14-dev-wasm32). Debian's wasi-libc
lives in /usr/include/wasm32-wasi and /usr/lib/wasm32-wasi, which clang finds
for --target=wasm32-wasi without a --sysroot.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from yacr.errors import YacrError

SOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sources")
SAMPLES = ("hello", "probe", "start")
# Wasm features every engine of the last years supports (wasmtime enables them by default):
# bulk memory turns memcpy/memmove/memset into single instructions the engine runs natively,
# SIMD lets clang vectorize as gcc does with SSE2 on the native side. Only for code that
# does not touch errno: with bulk memory clang 14 makes wasi-libc's errno thread-local,
# which it cannot lower for WASI.
WASM_FEATURES = ("-mbulk-memory", "-msimd128")
TOOLCHAIN_HINT = "apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32 " \
                 "(scripts/install-deps.sh does it)"


def clang() -> str:
    for name in ("clang", "clang-14"):
        path = shutil.which(name)
        if path:
            return path
    raise YacrError(f"building wasm modules needs clang: {TOOLCHAIN_HINT}")


def compile_wasm(src: str, out: str, opt: str = "-O2", extra: tuple[str, ...] = (),
                 features: tuple[str, ...] = ()) -> str:
    """One C file to a wasm32-wasi command module; rebuilt only when the source is newer."""
    if _fresh(src, out):
        return out
    os.makedirs(os.path.dirname(out), exist_ok=True)
    cmd = [clang(), "--target=wasm32-wasi", opt, *features, "-Wl,--strip-all", "-o",
           out + ".tmp", src, *extra]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise YacrError(f"clang failed on {src}: {p.stderr.strip()[-500:]} ({TOOLCHAIN_HINT})")
    os.replace(out + ".tmp", out)
    return out


def compile_native(src: str, out: str, cc: str = "gcc", opt: str = "-O2",
                   static: bool = False, extra: tuple[str, ...] = ()) -> str:
    if _fresh(src, out):
        return out
    os.makedirs(os.path.dirname(out), exist_ok=True)
    cmd = [cc, opt, *(["-static"] if static else []), "-o", out + ".tmp", src, *extra]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise YacrError(f"{cc} failed on {src}: {p.stderr.strip()[-500:]}")
    os.replace(out + ".tmp", out)
    return out


def _fresh(src: str, out: str) -> bool:
    try:
        return os.stat(out).st_mtime_ns >= os.stat(src).st_mtime_ns
    except OSError:
        return False


def compile_wat(src: str, out: str) -> str:
    """Hand-written WAT to a binary module, with the wat2wasm of the wasmtime package (the
    wasm extra; a cold path, so importing it is fine)."""
    if _fresh(src, out):
        return out
    try:
        from wasmtime import wat2wasm
    except ImportError:
        raise YacrError("compiling WAT needs the wasmtime package (pip install "
                        "'yacr[wasm]')") from None
    with open(src) as f:
        data = wat2wasm(f.read())
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".tmp", "wb") as f:
        f.write(data)
    os.replace(out + ".tmp", out)
    return out


def sample(name: str, out_dir: str) -> str:
    """Path of a built sample module (hello, probe: C; start: WAT) under out_dir."""
    wat = os.path.join(SOURCES, "samples", f"{name}.wat")
    if os.path.exists(wat):
        return compile_wat(wat, os.path.join(out_dir, f"{name}.wasm"))
    return compile_wasm(os.path.join(SOURCES, "samples", f"{name}.c"),
                        os.path.join(out_dir, f"{name}.wasm"))


def build_samples(out_dir: str) -> dict[str, str]:
    return {n: sample(n, out_dir) for n in SAMPLES}


def wasm_rootfs(dest: str, modules: dict[str, str]) -> str:
    """A rootfs that holds only the given modules (name -> built path) at its top, plus
    the empty directories a runtime mounts on: a wasm image needs nothing else."""
    for d in ("dev", "proc", "sys", "tmp", "etc"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    for name, path in modules.items():
        target = os.path.join(dest, name)
        if not _fresh(path, target):
            shutil.copy2(path, target)
    return dest
