"""The native host that runs a wasm container's module, and the handoff yacr gives it.

A wasm container's init (a fork of yacr's Python runtime) does everything a native
container's init does, then, where a native init execs the container's program, it
execs wasmhost/yacr-wasmhost.c: a small C program on wasmtime's C API, ~0.7 MiB of
private memory once running, where the Python init held ~5 MiB. Python decides
everything; the host follows the handoff (see HANDOFF below and docs/WASM.md).

The host and its libraries live on the host's filesystem, which is out of reach once
init has pivoted into the container's root. So before pivot_root, init makes
read-only, detached copies (open_tree + mount_setattr) of the few directories the host
needs (its own, wasmtime's, the C library's) and of the verified compiled module, and
keeps an fd of each: a racing process of the container that reached one through
/proc/<pid>/fd could neither write through it nor climb out of it with "..". After
`start`, init execs the dynamic loader through its fd, with `/proc/self/fd/N`
directories as its only library path and no ld.so.cache; the host closes those fds
first thing. Before that exec, one more seccomp filter makes access() and faccessat()
fail with ENOENT, so the loader never finds the image's /etc/ld.so.preload (an image
could otherwise run its own code in place of the module, outside the allowlist).
That needs /proc in the container, as every container config has; one without it is
refused at `create`.
"""

from __future__ import annotations

import _struct
import posix

from yacr import fs
from yacr.errors import YacrError
from yacr.linux import sys as S

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from yacr.wasm.cache import Result

HOST_ENV = "YACR_WASM_HOST"  # another build of the host's directory (tests, development)
MANIFEST = "host.conf"
BUILD_HINT = "run `make setup` (scripts/write-wasmhost.sh builds it)"

# The handoff: a sealed memfd, whose fd number is the host's only argument. It holds
# MAGIC, then records: u32 tag, u32 length, `length` bytes, little-endian; repeated
# records keep their order. The host refuses unknown tags, bad lengths and a missing
# module or argv.
MAGIC = b"YWHOST01"
ARG = 1           # a WASI argument, argv[0] first (UTF-8, no NUL)
ENV = 2           # "NAME=VALUE" for the WASI environment
PREOPEN = 3       # "HOST\0GUEST": a directory the module sees at GUEST
MODULE = 4        # u32 fd, u32 0, u64 size, i64 ctime s, i64 ctime ns: the compiled module
CONFIG = 5        # "KEY\0VALUE": an engine setting (yacr.wasm.engine.Settings.config)
MEMORY_LIMIT = 6  # u64: bytes each linear memory may grow to
SECCOMP = 7       # the allowlist: a BPF program, loaded with TSYNC before guest code
STOP_SIGNAL = 8   # u32: a signal that ends the module, exit status 128 + signal
CLOSE_FD = 9      # u32: an fd only the dynamic loader needed; the host closes it first
EARLY = 10        # (empty) instantiate before loading the allowlist: no start function
TRAP_EXIT = 11    # u32: the exit status of a trap


def _rec(tag: int, payload: bytes) -> bytes:
    return _struct.pack("<II", tag, len(payload)) + payload


class Handoff:
    """The records, built in order."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts = [MAGIC]

    def add(self, tag: int, payload: bytes = b"") -> None:
        self.parts.append(_rec(tag, payload))

    def u32(self, tag: int, v: int) -> None:
        self.add(tag, _struct.pack("<I", v))

    def text(self, tag: int, s: str, field: str) -> None:
        b = s.encode()
        if b"\0" in b:
            raise YacrError(f"{field}: contains a NUL byte")
        self.add(tag, b)

    def pair(self, tag: int, a: str, b: str) -> None:
        self.add(tag, a.encode() + b"\0" + b.encode())

    def module(self, res: Result, fd: int) -> None:
        self.add(MODULE, _struct.pack("<IIQqq", fd, 0, res.size, *res.ctime))

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def sealed(data: bytes) -> int:
    """The handoff in a memfd sealed against change (the host reads it as handed)."""
    from yacr.wasm.cache import sealed_memfd

    return sealed_memfd("yacr-wasm-handoff", data)


class HostFiles:
    """Where the built host is, and what it needs from the host's filesystem: the dynamic
    loader, and the directories of the libraries it links (from host.conf, written by
    scripts/write-wasmhost.sh with the loader's own view of them)."""

    __slots__ = ("dir", "binary", "loader_dir", "loader", "lib_dirs")

    def __init__(self, d: str) -> None:
        self.dir = d
        self.binary = "yacr-wasmhost"
        self.loader_dir = self.loader = ""
        self.lib_dirs: list[str] = []
        try:
            with open(fs.join(d, MANIFEST)) as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise YacrError(f"the wasm host is not built ({d}/{MANIFEST}: {e.strerror}); "
                            f"{BUILD_HINT}") from None
        for line in lines:
            key, _, value = line.partition(" ")
            if key == "loader":
                self.loader_dir, _, self.loader = value.rpartition("/")
            elif key == "libdir":
                self.lib_dirs.append(value)
        if not self.loader or not posix.access(fs.join(d, self.binary), posix.X_OK):
            raise YacrError(f"the wasm host in {d} is incomplete; {BUILD_HINT}")


def find() -> HostFiles:
    env = posix.environ.get(HOST_ENV.encode())
    if env:
        return HostFiles(env.decode())
    from yacr.venv import venvs

    for v in venvs():
        d = f"{v}/share/yacr/wasmhost"
        if posix.access(d, posix.F_OK):
            return HostFiles(d)
    raise YacrError(f"the wasm host is not built; {BUILD_HINT}")


def readonly_view(path: str = "", fd: int = -100) -> int:
    """A detached, read-only copy of the mount at path (or of the file or directory fd
    is open on), rooted there: an O_PATH fd through which nothing can be written and
    nothing above it reached."""
    tree = S.open_tree(fd, path, S.OPEN_TREE_CLONE | (S.AT_EMPTY_PATH if not path else 0))
    try:
        S.mount_setattr(tree, "", S.AT_EMPTY_PATH, S.MOUNT_ATTR_RDONLY | S.MOUNT_ATTR_NOSUID |
                        S.MOUNT_ATTR_NODEV, 0)
    except BaseException:
        posix.close(tree)
        raise
    return tree


# --- the loader's filter ----------------------------------------------------------------

_ARCH = {"x86_64": (0xC000003E, (21, 269, 439)), "aarch64": (0xC00000B7, (48, 439))}
_ENOENT = 2


def loader_filter() -> bytes:
    """A classic BPF program: access, faccessat and faccessat2 fail with ENOENT, all else
    passes (the allowlist, stacked on it later, is what confines the module). glibc's
    loader checks for /etc/ld.so.preload with access() before opening it."""
    machine = posix.uname().machine
    if machine not in _ARCH:
        raise YacrError(f"the wasm host is not supported on {machine}")
    arch, nrs = _ARCH[machine]
    n = len(nrs)
    ins = [(0x20, 0, 0, 4),               # A = seccomp_data.arch
           (0x15, 0, n + 1, arch),        # another ABI: allow
           (0x20, 0, 0, 0)]               # A = seccomp_data.nr
    for i, nr in enumerate(nrs):
        ins.append((0x15, n - i, 0, nr))  # jump to ENOENT
    ins += [(0x06, 0, 0, 0x7FFF0000),     # SECCOMP_RET_ALLOW
            (0x06, 0, 0, 0x00050000 | _ENOENT)]  # SECCOMP_RET_ERRNO | ENOENT
    return b"".join(_struct.pack("<HBBI", *i) for i in ins)


def exec_host(files: HostFiles, views: dict[str, int], lib_dirs: list[str], handoff_fd: int,
              env: dict[str, str]) -> NoReturn:
    """Replace init with the host: the dynamic loader, through its read-only view, loads the
    host and its libraries from the views only. Every fd the host gets was listed in the
    handoff (its own fd is its argument)."""
    for fd in (handoff_fd, *views.values()):
        posix.set_inheritable(fd, True)
    libpath = ":".join(f"/proc/self/fd/{views[d]}" for d in lib_dirs)
    argv = [files.binary, "--inhibit-cache", "--library-path", libpath, "--argv0",
            files.binary, f"/proc/self/fd/{views[files.dir]}/{files.binary}", str(handoff_fd)]
    loader = posix.open(files.loader, posix.O_PATH | posix.O_CLOEXEC,
                        dir_fd=views[files.loader_dir])
    # no_new_privs: the loader filter needs it (or CAP_SYS_ADMIN), and the allowlist too
    S.prctl(S.PR_SET_NO_NEW_PRIVS, 1)
    try:
        S.seccomp_set_filter(0, loader_filter())
    except OSError as e:
        raise YacrError(f"wasm host: cannot load the loader's filter: {e.strerror}") from None
    posix.execve(loader, argv, env)
    raise AssertionError("execve returned")
