"""The seccomp allowlist of a wasm container: only what wasmtime's WASI layer calls.

The host (yacr.wasm.host) loads it after the module is loaded, linked, its WASI
context built and (unless it has a start function) instantiated, right before
`_start`, so that only the syscalls of running guest code need to be allowed.
The list was measured with strace over the sample modules (file I/O under the
preopened root, directory listing, clocks, randomness, sleep, stdio on a pipe
and a terminal, memory growth, traps, exit codes, signals). Anything else kills
the whole process with SIGSYS (exit status 159), rather than failing softly: a
call outside the list means the engine does something it was never measured
doing (`symlink`, for example: path_symlink is WASI, but symlinkat is not in the
list), so it cannot reach the rest of the kernel. Only a few optional calls
that new threads make answer EPERM, and clone3 ENOSYS (see REFUSED).
Docker's default profile allows over 300 syscalls, gVisor's host filter about
70, Nabla 7.

It applies to every thread (TSYNC). Turn it off for debugging with the
annotation io.github.yacr.wasm.seccomp=off (a warning says so).
"""

from __future__ import annotations

import _sha256
import posix

TYPE_CHECKING = False
if TYPE_CHECKING:
    from yacr.linux.seccomp import Filter
    from yacr.log import Log
    from yacr.wasm.cache import Cache

WHAT = "wasm seccomp allowlist"
SYSCALLS = (
    # stdio, and files and directories under the preopened root (openat2 with RESOLVE_BENEATH,
    # openat for reopening a directory relative to its fd), fd_sync and fd_datasync
    "read", "write", "pread64", "pwrite64", "close", "openat", "openat2", "statx",
    "getdents64", "fcntl", "ioctl", "ftruncate", "fsync", "fdatasync", "mkdirat", "unlinkat",
    "renameat", "readlinkat", "utimensat",
    # linear memory growth and the engine's allocator (glibc's main arena grows with brk:
    # listing a directory of a few thousand entries needs it)
    "brk", "mmap", "munmap", "mprotect", "madvise",
    # the engine's WASI worker threads (a tokio runtime made on the first WASI call), sleeps
    "futex", "epoll_create1", "epoll_ctl", "epoll_wait", "eventfd2",
    # traps, signals (a sleep interrupted by the freezer or a tracer resumes through
    # restart_syscall; glibc sets its thread signals up when the engine starts its first
    # thread, the WASI I/O worker, at the module's first WASI call), randomness,
    # clock_res_get (clock_time_get goes through the vDSO), exit
    "rt_sigreturn", "restart_syscall", "rt_sigprocmask", "sigaltstack", "rt_sigaction",
    "getrandom", "clock_getres", "exit", "exit_group",
)
# Optional calls, refused with EPERM, which their callers tolerate, rather than allowed: what
# a new thread makes (glibc's robust futex list, a thread's name, its CPU count, which
# TOKIO_WORKER_THREADS spares), gettid, and lseek: the engine keeps file
# positions itself (fd_seek and fd_tell make no syscall, fd_read and fd_write use pread and
# pwrite), and only a CPU-count probe would read a file with std's lseek.
REFUSED = ("set_robust_list", "prctl", "sched_getaffinity", "gettid", "lseek")
# Skipped, and reported as done (seccomp's errno 0 is a success): advice (fd_advise), and a
# new thread's rseq registration, which glibc treats as fatal if it fails; unregistered, the
# area keeps its "no CPU id" value and sched_getcpu asks the vDSO instead.
IGNORED = ("fadvise64", "rseq")
# Threads only: clone3's flags are out of a filter's reach, so it answers ENOSYS (glibc then
# uses clone), and clone is allowed only with CLONE_THREAD: no new process, no namespace.
CLONE_THREAD = 0x10000
# A module with a start function is instantiated under the filter (instantiating runs guest
# code). In yacr's Python init that took memfd_create (the memory image was copied into
# one); the host maps the image from the compiled module's own file, so nothing more.
FOR_INSTANTIATION: tuple[str, ...] = ()


def allowed_count() -> int:
    """How many syscalls a wasm container may make (clone counted, with its condition)."""
    return len(SYSCALLS) + 1


def build_filter(log: Log | None, instantiate: bool = False) -> Filter:
    """The compiled (not yet loaded) allowlist; anything else kills the process (SIGSYS)."""
    from yacr.linux.seccomp import Filter

    return Filter({"defaultAction": "SCMP_ACT_KILL_PROCESS",
                   "flags": ["SECCOMP_FILTER_FLAG_TSYNC"],
                   "syscalls": [{"names": list(SYSCALLS) + (list(FOR_INSTANTIATION)
                                                                 if instantiate else []),
                                 "action": "SCMP_ACT_ALLOW"},
                                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                                 "args": [{"index": 0, "op": "SCMP_CMP_MASKED_EQ",
                                           "value": CLONE_THREAD,
                                           "valueTwo": CLONE_THREAD}]},
                                {"names": list(REFUSED), "action": "SCMP_ACT_ERRNO",
                                 "errnoRet": 1},
                                {"names": list(IGNORED), "action": "SCMP_ACT_ERRNO",
                                 "errnoRet": 0},
                                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO",
                                 "errnoRet": 38}]},
                  log, WHAT)


# --- the compiled program, cached ----------------------------------------------------------
# Compiling the rules with libseccomp costs ~0.5-1 ms (loading it, resolving 40 names),
# every time, for a program that never changes: the BPF it exports is kept in the AOT
# cache (with the same MAC as compiled modules) and loaded with seccomp(2) directly.

def ident(instantiate: bool = False) -> str:
    rules = repr((SYSCALLS, REFUSED, IGNORED, CLONE_THREAD, "kill_process", "tsync",
                  FOR_INSTANTIATION if instantiate else ()))
    return (f"seccomp-bpf;{posix.uname().machine};fmt2;"
            + _sha256.sha256(rules.encode()).hexdigest())


def program(cache: Cache | None, log: Log | None, instantiate: bool = False) -> bytes:
    """The allowlist as a BPF program for the host to load (with TSYNC): from the cache
    when a verified copy is there, else compiled with libseccomp now (and stored). On a
    hit, yacr.linux.seccomp (~2 ms of imports) is never loaded."""
    key = ident(instantiate)
    usable = cache is not None and cache.usable() is None
    if usable:
        payload, bad = cache.read_entry(key, ".bpf")  # type: ignore[union-attr]
        if payload is not None and payload and len(payload) % 8 == 0:
            return payload
        if bad and log is not None:
            log.warn(f"wasm seccomp allowlist: cached program rejected ({bad}); rebuilt")
    bpf = build_filter(log, instantiate).export()
    if usable:
        try:
            cache.write_entry(key, bpf, ".bpf")  # type: ignore[union-attr]
        except OSError as e:
            if log is not None:
                log.warn(f"wasm seccomp allowlist: cannot cache it: {e.strerror}")
    return bpf
