"""The seccomp allowlist of a wasm container: only what wasmtime's WASI layer calls.

It is loaded after the module is compiled, linked and its WASI context built,
right before instantiation and `_start`, so that only the syscalls of running
guest code (and of the thread waiting for stop signals) need to be allowed.
The list was measured with strace over the sample modules (file I/O under the
preopened root, directory listing, clocks, randomness, sleep, stdio on a pipe
and a terminal, memory growth, traps, exit codes, signals). Anything else fails
with EPERM, which WASI reports to the module as an ordinary error (`symlink`,
for example: path_symlink is WASI, but not in the list), so a misbehaving engine
cannot reach the rest of the kernel. Docker's default profile allows over 300
syscalls, gVisor's host filter about 70, Nabla 7.

It applies to every thread (TSYNC). Turn it off for debugging with the
annotation io.github.yacr.wasm.seccomp=off (a warning says so).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from yacr.linux.seccomp import Filter
    from yacr.log import Log

SYSCALLS = (
    # stdio, and files and directories under the preopened root
    "read", "write", "pread64", "pwrite64", "lseek", "close", "openat", "openat2", "statx",
    "getdents64", "fcntl", "ioctl", "ftruncate", "fsync", "mkdirat", "unlinkat", "renameat",
    "readlinkat", "utimensat",
    # linear memory growth and the engine's allocator
    "mmap", "munmap", "mprotect", "madvise",
    # the engine's WASI worker threads (a tokio runtime made on the first WASI call), sleeps
    "rseq", "gettid", "futex", "epoll_create1", "epoll_ctl", "epoll_wait", "eventfd2",
    # traps, the stop-signal thread, randomness, exit
    "rt_sigreturn", "rt_sigprocmask", "sigaltstack", "rt_sigtimedwait", "getrandom", "exit",
    "exit_group",
)
# Optional calls a new thread makes (glibc's robust futex list, a thread's name,
# its CPU count): refused with EPERM, which their callers tolerate, rather than allowed.
REFUSED = ("set_robust_list", "prctl", "sched_getaffinity")
# Threads only: clone3's flags are out of a filter's reach, so it answers ENOSYS (glibc then
# uses clone), and clone is allowed only with CLONE_THREAD: no new process, no namespace.
CLONE_THREAD = 0x10000


def allowed_count() -> int:
    """How many syscalls a wasm container may make (clone counted, with its condition)."""
    return len(SYSCALLS) + 1


def build_filter(log: Log | None) -> Filter:
    """The compiled (not yet loaded) allowlist; anything else kills the process (SIGSYS)."""
    from yacr.linux.seccomp import Filter

    return Filter({"defaultAction": "SCMP_ACT_KILL_PROCESS",
                   "flags": ["SECCOMP_FILTER_FLAG_TSYNC"],
                   "syscalls": [{"names": list(SYSCALLS), "action": "SCMP_ACT_ALLOW"},
                                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                                 "args": [{"index": 0, "op": "SCMP_CMP_MASKED_EQ",
                                           "value": CLONE_THREAD,
                                           "valueTwo": CLONE_THREAD}]},
                                {"names": list(REFUSED), "action": "SCMP_ACT_ERRNO",
                                 "errnoRet": 1},
                                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO",
                                 "errnoRet": 38}]},
                  log, "wasm seccomp allowlist")
