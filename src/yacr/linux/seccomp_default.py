"""yacr's default seccomp profile, in Docker's spirit: allow what containers use, deny the rest.

`yacr spec --seccomp` writes it into config.json, so it is an ordinary OCI linux.seccomp section
that any runtime can load, and it is compiled like any other (linux/seccomp.py).

How denials answer matters as much as what is denied:

- A syscall the profile decided against (it is named in DENIED) fails with EPERM, as
  in Docker: the program is told it may not, and says so.
- A syscall the profile has never heard of (one newer than this list, or than the host's
  libseccomp) fails with ENOSYS, the default action. libc and programs treat ENOSYS as
  "this kernel is too old" and fall back to an older call (glibc's fchmodat for
  fchmodat2, libmount for statmount...); EPERM there would be a hard failure. Docker
  gets this from runc, which patches the compiled filter to answer ENOSYS for syscalls
  above the newest one it knows; in a plain OCI profile the same effect needs the
  default to be ENOSYS and the deliberate denials listed.
- clone3 gets ENOSYS on purpose: its flags are in memory that seccomp cannot read, so
  the namespace flags cannot be filtered as clone's are; glibc then falls back to clone.
- Argument filters: clone with a namespace flag and socket(AF_VSOCK) get EPERM;
  personality with a value other than the five Docker allows gets ENOSYS (a range of
  values cannot be denied in one rule), which `setarch -R` and gdb report as a warning.

The lists cover every syscall libseccomp 2.5.4 (Debian 12) names on x86_64, x86 and x32
(tests/test_seccomp_default.py checks that nothing it knows falls to the default by
accident). Names newer than that (statmount, listmount, mseal, lsm_*, *xattrat,
file_getattr/setattr, uretprobe) are left out on purpose: the host's libseccomp would
warn about them on every start, and they get ENOSYS, which is what a fallback wants.

Like Docker, capabilities unlock syscalls: a syscall that only does anything with a
capability (mount needs CAP_SYS_ADMIN) is allowed when the process's bounding set has
it, and denied otherwise, so the kernel's capability check is not the only gate.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

ARCHITECTURES = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
EPERM = 1
ENOSYS = 38

# Allowed unconditionally (names of all three ABIs; each applies where it exists).
ALLOWED: tuple[str, ...] = (
    # files and directories
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
    "preadv2", "pwritev2", "open", "openat", "openat2", "creat", "close", "close_range",
    "lseek", "_llseek", "dup", "dup2", "dup3", "fcntl", "fcntl64", "flock", "fsync",
    "fdatasync", "sync", "syncfs", "sync_file_range", "truncate", "truncate64", "ftruncate",
    "ftruncate64", "fallocate", "fadvise64", "fadvise64_64", "readahead", "sendfile",
    "sendfile64", "splice", "tee", "vmsplice", "copy_file_range", "stat", "stat64", "fstat",
    "fstat64", "lstat", "lstat64", "newfstatat", "fstatat64", "statx", "statfs", "statfs64",
    "fstatfs", "fstatfs64", "access", "faccessat", "faccessat2", "getdents", "getdents64",
    "getcwd", "chdir", "fchdir", "rename", "renameat", "renameat2", "mkdir", "mkdirat",
    "rmdir", "link", "linkat", "unlink", "unlinkat", "symlink", "symlinkat", "readlink",
    "readlinkat", "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "chown32", "fchown",
    "fchown32", "lchown", "lchown32", "fchownat", "umask", "utime", "utimes", "utimensat",
    "utimensat_time64", "futimesat", "mknod", "mknodat", "ioctl", "cachestat",
    "name_to_handle_at",
    "getxattr", "lgetxattr", "fgetxattr", "setxattr", "lsetxattr", "fsetxattr", "listxattr",
    "llistxattr", "flistxattr", "removexattr", "lremovexattr", "fremovexattr",
    "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
    # pipes, polling, event and timer descriptors
    "pipe", "pipe2", "poll", "ppoll", "ppoll_time64", "select", "_newselect", "pselect6",
    "pselect6_time64", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait",
    "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "signalfd", "signalfd4",
    "timerfd_create", "timerfd_settime", "timerfd_settime64", "timerfd_gettime",
    "timerfd_gettime64",
    # memory
    "brk", "mmap", "mmap2", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync",
    "mlock", "mlock2", "munlock", "mlockall", "munlockall", "membarrier", "memfd_create",
    "pkey_alloc", "pkey_free", "pkey_mprotect", "map_shadow_stack",
    # processes, threads, signals
    "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid", "waitpid",
    "kill", "tkill", "tgkill", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
    "rt_sigsuspend", "rt_sigpending", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "sigreturn", "sigprocmask",
    "pause", "restart_syscall", "pidfd_open", "pidfd_send_signal", "getpid", "getppid",
    "gettid", "getpgid", "setpgid", "getpgrp", "getsid", "setsid", "set_tid_address",
    "set_robust_list", "get_robust_list", "rseq", "arch_prctl", "set_thread_area",
    "get_thread_area", "prctl", "seccomp", "futex", "futex_time64", "futex_waitv",
    "futex_wake", "futex_wait", "futex_requeue", "capget", "capset",
    # debugging one's own processes: the kernel's ptrace checks apply (Docker allows these
    # since kernel 4.8, where seccomp can no longer be bypassed with ptrace)
    "ptrace", "process_vm_readv", "process_vm_writev",
    # credentials (the user namespace, or lack of capabilities, bounds them)
    "getuid", "getuid32", "geteuid", "geteuid32", "getgid", "getgid32", "getegid",
    "getegid32", "getresuid", "getresuid32", "getresgid", "getresgid32", "getgroups",
    "getgroups32", "setuid", "setuid32", "setgid", "setgid32", "setreuid", "setreuid32",
    "setregid", "setregid32", "setresuid", "setresuid32", "setresgid", "setresgid32",
    "setgroups", "setgroups32", "setfsuid", "setfsuid32", "setfsgid", "setfsgid32",
    # time (reading; adjtimex and clock_adjtime only read without CAP_SYS_TIME)
    "nanosleep", "clock_nanosleep", "clock_nanosleep_time64", "clock_gettime",
    "clock_gettime64", "clock_getres", "clock_getres_time64", "gettimeofday", "time",
    "times", "alarm", "getitimer", "setitimer", "timer_create", "timer_settime",
    "timer_settime64", "timer_gettime", "timer_gettime64", "timer_getoverrun",
    "timer_delete", "adjtimex", "clock_adjtime", "clock_adjtime64",
    # limits, scheduling, system information
    "getrlimit", "ugetrlimit", "setrlimit", "prlimit64", "getrusage", "getpriority",
    "setpriority", "nice", "sched_yield", "sched_getaffinity", "sched_setaffinity",
    "sched_getparam", "sched_setparam", "sched_getscheduler", "sched_setscheduler",
    "sched_get_priority_max", "sched_get_priority_min", "sched_rr_get_interval",
    "sched_rr_get_interval_time64", "sched_getattr", "sched_setattr", "ioprio_get",
    "ioprio_set", "getcpu", "sysinfo", "uname", "getrandom",
    # sockets (socket itself is conditional, below)
    "socketpair", "bind", "listen", "accept", "accept4", "connect", "getsockname",
    "getpeername", "getsockopt", "setsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg",
    "sendmmsg", "recvmmsg", "recvmmsg_time64", "send", "recv", "shutdown", "socketcall",
    # System V and POSIX IPC (the container's IPC namespace)
    "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop",
    "semtimedop_time64", "semctl", "msgget", "msgsnd", "msgrcv", "msgctl", "ipc", "mq_open",
    "mq_unlink", "mq_timedsend", "mq_timedsend_time64", "mq_timedreceive",
    "mq_timedreceive_time64", "mq_notify", "mq_getsetattr",
    # asynchronous I/O (io_uring is denied, below)
    "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
    "io_pgetevents_time64",
    # unprivileged sandboxing of oneself
    "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
)

# Allowed only for some argument values (the rest is EPERM).
CLONE_NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
AF_VSOCK = 40
# personality: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and 0xffffffff (query)
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# Denied with EPERM, unless a capability below unlocks them. Why, by group:
DENIED: tuple[str, ...] = (
    # the mount table and filesystems: the runtime set them up; the new mount API too
    "mount", "umount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount",
    "fspick", "open_tree", "move_mount", "mount_setattr", "swapon", "swapoff", "quotactl",
    "quotactl_fd", "nfsservctl",
    # new namespaces and joining others (clone's namespace flags are filtered above)
    "unshare", "setns",
    # the kernel itself: modules, kexec, reboot, global accounting and logs
    "init_module", "finit_module", "delete_module", "create_module", "query_module",
    "get_kernel_syms", "kexec_load", "kexec_file_load", "reboot", "acct", "syslog",
    "_sysctl", "sysfs", "ustat", "uselib", "lookup_dcookie", "vhangup",
    # host-global state: the clock, the host name outside a UTS namespace
    "settimeofday", "stime", "clock_settime", "clock_settime64", "sethostname",
    "setdomainname",
    # large attack surfaces with a history of container escapes
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "keyctl", "add_key", "request_key", "open_by_handle_at",
    "fanotify_init", "fanotify_mark",
    # hardware access and old x86 modes
    "iopl", "ioperm", "modify_ldt", "vm86", "vm86old", "pciconfig_iobase",
    "pciconfig_read", "pciconfig_write",
    # other processes' memory and descriptors (needs CAP_SYS_PTRACE)
    "kcmp", "pidfd_getfd", "process_madvise", "process_mrelease",
    # NUMA placement (needs CAP_SYS_NICE)
    "get_mempolicy", "set_mempolicy", "mbind", "migrate_pages", "move_pages",
    "set_mempolicy_home_node",
    # little-used or obsolete: nothing in a container should need them
    "memfd_secret", "remap_file_pages", "epoll_ctl_old", "epoll_wait_old", "afs_syscall",
    "tuxcall", "security", "vserver", "getpmsg", "putpmsg", "break", "ftime", "gtty", "stty",
    "lock", "mpx", "prof", "profil", "ulimit", "idle", "readdir", "oldstat", "oldfstat",
    "oldlstat", "olduname", "oldolduname", "signal", "sigaction", "sigpending",
    "sigsuspend", "sgetmask", "ssetmask", "bdflush", "sys_debug_setcontext",
    "subpage_prot", "spu_create", "spu_run", "switch_endian",
)

# Syscalls a capability in the bounding set unlocks (as Docker's profile does).
BY_CAPABILITY: dict[str, tuple[str, ...]] = {
    "CAP_SYS_ADMIN": ("mount", "umount", "umount2", "unshare", "setns", "sethostname",
                      "setdomainname", "fsopen", "fsconfig", "fsmount", "fspick", "open_tree",
                      "move_mount", "mount_setattr", "quotactl", "quotactl_fd",
                      "lookup_dcookie", "fanotify_init", "fanotify_mark", "bpf",
                      "perf_event_open", "syslog"),
    "CAP_SYS_CHROOT": ("chroot",),
    "CAP_SYS_MODULE": ("init_module", "finit_module", "delete_module"),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": ("kcmp", "pidfd_getfd", "process_madvise", "userfaultfd"),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_settime64"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": ("get_mempolicy", "set_mempolicy", "mbind", "set_mempolicy_home_node"),
    "CAP_SYSLOG": ("syslog",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
}


def default_profile(capabilities: Iterable[str] = ()) -> dict[str, Any]:
    """The linux.seccomp section for a process whose bounding set is `capabilities`."""
    caps = set(capabilities)
    allowed = list(ALLOWED)
    unlocked: set[str] = set()
    for cap, names in BY_CAPABILITY.items():
        if cap in caps:
            unlocked.update(names)
    allowed += sorted(unlocked)
    denied = [n for n in dict.fromkeys(DENIED) if n not in unlocked]
    admin = "CAP_SYS_ADMIN" in caps
    rules: list[dict[str, Any]] = [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]
    if admin:
        rules.append({"names": ["clone", "clone3"], "action": "SCMP_ACT_ALLOW"})
    else:
        rules += [
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0,
                       "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
        ]
        # the complement answers EPERM, not the default ENOSYS: one rule per flag, since
        # "(flags & mask) != 0" is not one comparison
        rules += [{"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
                   "args": [{"index": 0, "value": bit, "valueTwo": bit,
                             "op": "SCMP_CMP_MASKED_EQ"}]}
                  for bit in _bits(CLONE_NAMESPACE_FLAGS)]
    rules += [
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}]},
        {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
         "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_EQ"}]},
    ]
    rules += [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": p, "op": "SCMP_CMP_EQ"}]} for p in PERSONALITIES]
    if denied:
        rules.append({"names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM})
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": ENOSYS,
            "architectures": list(ARCHITECTURES), "syscalls": rules}


def _bits(mask: int) -> list[int]:
    return [1 << i for i in range(64) if mask >> i & 1]
