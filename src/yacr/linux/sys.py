"""The one place that talks to libc and raw syscalls that Python's os module lacks.

Python 3.11 has no unshare, setns, mount, pivot_root, capset or openat2. Every
other module goes through these thin wrappers, so a reader can audit all the
kernel interfaces yacr touches in one file, and errors always come back as
OSError with errno set (the CLI turns them into one-line messages).

It binds libc's syscall(2) through `_ctypes` directly: `import ctypes` costs ~2.5 ms of
class-building on every container start, for conveniences this module does not need.
Arguments are wrapped as C longs, and kernel structures are packed with `struct`.
"""

from __future__ import annotations

import _ctypes
import _struct as struct  # the C module: struct.py is one more import
import posix

from yacr import fs


class _long(_ctypes._SimpleCData):
    _type_ = "l"


# The other C types are made on first use (S.c_int, ...): each costs ~160k instructions to
# create, and only seccomp, capget and bpf need them.
_LAZY_TYPES = {"c_int": "i", "c_uint": "I", "c_uint64": "Q", "c_void_p": "P", "c_char": "c"}


def __getattr__(name: str) -> type:
    code = _LAZY_TYPES.get(name)
    if code is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    t = type(name, (_ctypes._SimpleCData,), {"_type_": code})
    globals()[name] = t
    return t


class Library:
    """A shared library opened with dlopen (None: the process itself, so libc)."""

    def __init__(self, name: str | None) -> None:
        try:
            self._handle = _ctypes.dlopen(name, 0)
        except OSError as e:
            raise OSError(2, f"cannot load {name}: {e}") from None

    def function(self, name: str, restype: type, keep_gil: bool = False) -> _ctypes.CFuncPtr:
        """A C function of this library returning restype; errno is captured after calls.
        keep_gil: the interpreter's lock stays held across the call (Python's own C API,
        and the clone3 below, which must not let the lock change hands mid-fork)."""
        flags = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        if keep_gil:
            flags |= _ctypes.FUNCFLAG_PYTHONAPI
        cls = type(f"fn_{name}", (_ctypes.CFuncPtr,), {"_flags_": flags,
                                                        "_restype_": restype})
        return cls((name, self))


_LIBC = Library(None)
_raw_syscall = _LIBC.function("syscall", _long)


def _arg(a: int | bytes | str | object | None) -> object:
    if a is None:
        return None
    if isinstance(a, int):
        return _long(a if a < (1 << 63) else a - (1 << 64))
    if isinstance(a, str):
        return fs.fsencode(a)
    return a


def _syscall(nr: int, *args: int | bytes | str | object | None) -> int:
    """syscall(nr, args...) with every int passed as a C long (the kernel's register width)."""
    return _raw_syscall(_long(nr), *[_arg(a) for a in args])


def get_errno() -> int:
    return _ctypes.get_errno()


def _buffer(size: int) -> _ctypes.Array:
    """A writable C buffer for the kernel to fill; bytes(buf) reads it back."""
    return type("_buf", (_ctypes.Array,), {"_type_": __getattr__("c_char"),
                                           "_length_": size})()


# Syscall numbers. Calls added after Linux 5.0 share one number on every
# architecture; the older ones differ, so they are tabled per machine.
_MACHINE = posix.uname().machine
_X86_64 = {"pivot_root": 155, "capget": 125, "capset": 126, "keyctl": 250, "mount": 165,
           "umount2": 166, "unshare": 272, "setns": 308, "sethostname": 170,
           "setdomainname": 171, "prctl": 157, "prlimit64": 302, "personality": 135,
           "ioprio_set": 251, "ioctl": 16, "seccomp": 317}
_AARCH64 = {"pivot_root": 41, "capget": 90, "capset": 91, "keyctl": 219, "mount": 40,
            "umount2": 39, "unshare": 97, "setns": 268, "sethostname": 161,
            "setdomainname": 162, "prctl": 167, "prlimit64": 261, "personality": 92,
            "ioprio_set": 30, "ioctl": 29, "seccomp": 277}
_NRS = {"x86_64": _X86_64, "aarch64": _AARCH64}.get(_MACHINE, _X86_64)
NR_PIVOT_ROOT = _NRS["pivot_root"]
NR_MOUNT = _NRS["mount"]
NR_UMOUNT2 = _NRS["umount2"]
NR_UNSHARE = _NRS["unshare"]
NR_SETNS = _NRS["setns"]
NR_SETHOSTNAME = _NRS["sethostname"]
NR_SETDOMAINNAME = _NRS["setdomainname"]
NR_PRCTL = _NRS["prctl"]
NR_PRLIMIT64 = _NRS["prlimit64"]
NR_PERSONALITY = _NRS["personality"]
NR_IOPRIO_SET = _NRS["ioprio_set"]
NR_IOCTL = _NRS["ioctl"]
NR_CAPGET = _NRS["capget"]
NR_CAPSET = _NRS["capset"]
NR_KEYCTL = _NRS["keyctl"]
NR_CLONE3 = 435
NR_OPEN_TREE = 428
NR_MOVE_MOUNT = 429
NR_CLOSE_RANGE = 436
NR_OPENAT2 = 437
NR_MOUNT_SETATTR = 442

# Namespace clone flags.
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount(2) flags.
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_I_VERSION = 1 << 23
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

# mount_setattr(2) attributes, for recursive options.
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_NOSYMFOLLOW = 0x200000
AT_RECURSIVE = 0x8000
AT_EMPTY_PATH = 0x1000

# openat2(2) resolve flags.
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

# prctl(2) options.
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_CHILD_SUBREAPER = 36

CLOSE_RANGE_CLOEXEC = 1 << 2

NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3)
TIOCSCTTY = 0x540E
TIOCSWINSZ = 0x5414
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431

def _check(ret: int, what: str, path: str | bytes | None = None) -> int:
    if ret < 0:
        err = _ctypes.get_errno()
        if path is not None:
            raise OSError(err, f"{what}: {posix.strerror(err)}", fs.fsdecode(path))
        raise OSError(err, f"{what}: {posix.strerror(err)}")
    return ret


def _b(s: str | bytes | None) -> bytes | None:
    if s is None or isinstance(s, bytes):
        return s
    return fs.fsencode(s)


def mount(source: str | bytes | None, target: str | bytes, fstype: str | bytes | None,
          flags: int, data: str | bytes | None = None) -> None:
    _check(_syscall(NR_MOUNT, _b(source), _b(target), _b(fstype), flags, _b(data)), "mount",
           target)


def umount2(target: str | bytes, flags: int = 0) -> None:
    _check(_syscall(NR_UMOUNT2, _b(target), flags), "umount", target)


def unshare(flags: int) -> None:
    _check(_syscall(NR_UNSHARE, flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_syscall(NR_SETNS, fd, nstype), "setns")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_syscall(NR_PIVOT_ROOT, _b(new_root), _b(put_old)), "pivot_root", new_root)


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_syscall(NR_SETHOSTNAME, raw, len(raw)), "sethostname")


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_syscall(NR_SETDOMAINNAME, raw, len(raw)), "setdomainname")


def prctl(option: int, a2: int = 0, a3: int = 0, a4: int = 0, a5: int = 0) -> int:
    return _check(_syscall(NR_PRCTL, option, a2, a3, a4, a5), "prctl")


def ioctl_int(fd: int, request: int, arg: int = 0) -> int:
    return _check(_syscall(NR_IOCTL, fd, request, arg), "ioctl")


def ioctl_buf(fd: int, request: int, buf: bytes | _ctypes.Array) -> int:
    return _check(_syscall(NR_IOCTL, fd, request, buf), "ioctl")


def ns_type(fd: int) -> int:
    """The CLONE_NEW* type of a namespace fd, so a wrong `path` is caught before setns."""
    return ioctl_int(fd, NS_GET_NSTYPE)


def close_range_cloexec(first: int) -> None:
    """Mark every fd >= first close-on-exec: nothing of the runtime leaks past execve."""
    _check(_syscall(NR_CLOSE_RANGE, first, 0xFFFFFFFF, CLOSE_RANGE_CLOEXEC), "close_range")


NR_FSTATFS = {"x86_64": 138, "aarch64": 44}.get(_MACHINE, 138)


def fstatfs_type(fd: int) -> int:
    """The filesystem's magic number (f_type) of an open file."""
    buf = _buffer(120)  # struct statfs; f_type is its first field, a long
    _check(_syscall(NR_FSTATFS, fd, buf), "fstatfs")
    return struct.unpack_from("q", bytes(buf))[0]


def close_inherited(first: int) -> None:
    """Close every fd >= first that is not close-on-exec: what yacr's caller left open (yacr
    opens its own fds close-on-exec), which a process entering the container must not hold
    (CVE-2024-21626: a leaked directory fd as cwd, or through /proc/<pid>/fd)."""
    for name in posix.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= first:
            try:
                if posix.get_inheritable(fd):
                    posix.close(fd)
            except OSError:
                pass  # the listing's own fd, closed by now


OPEN_TREE_CLONE = 1
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
MOUNT_ATTR_IDMAP = 0x100000


def open_tree(dirfd: int, path: str, flags: int) -> int:
    """A detached copy (OPEN_TREE_CLONE) of the mount at path, as an fd."""
    return _check(_syscall(NR_OPEN_TREE, dirfd, _b(path), flags | posix.O_CLOEXEC),
                  "open_tree", path)


def move_mount(from_fd: int, to_fd: int) -> None:
    """Attach a detached mount (from_fd) on the file to_fd is open on (an O_PATH fd: a
    /proc/self/fd path would name the magic link itself, which move_mount does not
    follow)."""
    _check(_syscall(NR_MOVE_MOUNT, from_fd, b"", to_fd, b"",
                    MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH), "move_mount")


def openat2(dirfd: int, path: str | bytes, flags: int, resolve: int, mode: int = 0) -> int:
    how = struct.pack("QQQ", flags | posix.O_CLOEXEC, mode, resolve)  # struct open_how
    return _check(_syscall(NR_OPENAT2, dirfd, _b(path), how, len(how)), "openat2", path)


def mount_setattr(dirfd: int, path: str, flags: int, attr_set: int, attr_clr: int,
                  propagation: int = 0, userns_fd: int = 0) -> None:
    attr = struct.pack("QQQQ", attr_set, attr_clr, propagation, userns_fd)  # struct mount_attr
    _check(_syscall(NR_MOUNT_SETATTR, dirfd, _b(path), flags, attr, len(attr)),
           "mount_setattr", path)


_CAP_V3 = 0x20080522


def capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = struct.pack("Ii", _CAP_V3, 0)
    lo, hi = 0xFFFFFFFF, 32
    data = struct.pack("6I", effective & lo, permitted & lo, inheritable & lo,
                       effective >> hi, permitted >> hi, inheritable >> hi)
    _check(_syscall(NR_CAPSET, hdr, data), "capset")


def capget(pid: int = 0) -> tuple[int, int, int]:
    hdr = struct.pack("Ii", _CAP_V3, pid)
    buf = _buffer(24)
    _check(_syscall(NR_CAPGET, hdr, buf), "capget")
    e0, p0, i0, e1, p1, i1 = struct.unpack("6I", bytes(buf))
    return e0 | e1 << 32, p0 | p1 << 32, i0 | i1 << 32


def join_session_keyring(name: str) -> None:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING): a new session keyring for this process."""
    ret = _syscall(NR_KEYCTL, 1, name.encode())
    if ret < 0 and get_errno() != 38:  # ENOSYS: a kernel without keys
        _check(ret, "keyctl(JOIN_SESSION_KEYRING)")


def setrlimit(resource: int, soft: int, hard: int) -> None:
    """prlimit64(2) on this process; 2**64-1 is RLIM_INFINITY."""
    new = struct.pack("QQ", soft, hard)
    _check(_syscall(NR_PRLIMIT64, 0, resource, new, None), "prlimit")


def personality(persona: int) -> None:
    _check(_syscall(NR_PERSONALITY, persona), "personality")


def ioprio_set(cls: int, prio: int) -> None:
    _check(_syscall(NR_IOPRIO_SET, 1, 0, (cls << 13) | prio), "ioprio_set")  # this process


def set_winsize(fd: int, rows: int, cols: int) -> None:
    ioctl_buf(fd, TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def pty_unlock(fd: int) -> None:
    ioctl_buf(fd, TIOCSPTLCK, struct.pack("i", 0))


# --- bpf(2), for cgroup v2 device programs (see yacr.cgroups.devices) ---------------------
NR_BPF = {"x86_64": 321, "aarch64": 280}.get(_MACHINE, 321)
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2


def _cbuf(data: bytes) -> _ctypes.Array:
    """A C copy of data whose address can go inside a kernel structure (bpf_attr)."""
    t = type("_cbuf", (_ctypes.Array,), {"_type_": __getattr__("c_char"),
                                         "_length_": max(len(data), 1)})
    return t.from_buffer_copy(data.ljust(max(len(data), 1), b"\0"))


def bpf_prog_load(prog_type: int, insns: bytes, license: bytes = b"Apache",
                  name: bytes = b"") -> int:
    """BPF_PROG_LOAD; returns the program fd. A rejected program raises OSError whose
    message carries the verifier's log, the only place the kernel says what is wrong."""
    code = _cbuf(insns)
    lic = _cbuf(license + b"\0")
    for log_size in (0, 1 << 16):
        log = _buffer(log_size) if log_size else None
        attr = struct.pack("=IIQQIIQII16sII", prog_type, len(insns) // 8,
                           _ctypes.addressof(code), _ctypes.addressof(lic),
                           1 if log_size else 0, log_size,
                           _ctypes.addressof(log) if log is not None else 0, 0, 0,
                           name[:15], 0, 0)
        fd = _syscall(NR_BPF, BPF_PROG_LOAD, attr, len(attr))
        if fd >= 0:
            return fd
        err = _ctypes.get_errno()
        if err not in (13, 22) or log_size:  # EACCES/EINVAL: ask again for the log
            text = bytes(log).split(b"\0", 1)[0].decode(errors="replace").strip() \
                if log is not None else ""
            why = [ln for ln in text.splitlines() if not ln.startswith("processed ")][-1:]
            from posix import strerror

            raise OSError(err, f"bpf(BPF_PROG_LOAD): {strerror(err)}"
                          + (f": {why[0]}" if why else ""))
    raise AssertionError("unreachable")


def bpf_prog_attach(target_fd: int, prog_fd: int, attach_type: int, flags: int = 0) -> None:
    attr = struct.pack("=IIIII", target_fd, prog_fd, attach_type, flags, 0)
    _check(_syscall(NR_BPF, BPF_PROG_ATTACH, attr, len(attr)), "bpf(BPF_PROG_ATTACH)")


def bpf_prog_detach(target_fd: int, prog_fd: int, attach_type: int) -> None:
    attr = struct.pack("=IIIII", target_fd, prog_fd, attach_type, 0, 0)
    _check(_syscall(NR_BPF, BPF_PROG_DETACH, attr, len(attr)), "bpf(BPF_PROG_DETACH)")


def bpf_prog_query(target_fd: int, attach_type: int, max_progs: int = 64) -> list[int]:
    """The ids of the programs attached to a cgroup (BPF_PROG_QUERY), for inspection."""
    ids = _buffer(4 * max_progs)
    attr = _cbuf(struct.pack("=IIIIQI4x", target_fd, attach_type, 0, 0,
                             _ctypes.addressof(ids), max_progs))
    _check(_syscall(NR_BPF, BPF_PROG_QUERY, attr, len(bytes(attr))), "bpf(BPF_PROG_QUERY)")
    count = struct.unpack_from("=I", bytes(attr), 24)[0]
    return list(struct.unpack_from(f"={count}I", bytes(ids)))


SECCOMP_SET_MODE_FILTER = 1


def seccomp_set_filter(flags: int, insns: bytes) -> int:
    """seccomp(SECCOMP_SET_MODE_FILTER) with a classic BPF program (8-byte instructions);
    returns the kernel's answer (a listener fd with SECCOMP_FILTER_FLAG_NEW_LISTENER)."""
    code = _cbuf(insns)
    prog = struct.pack("HxxxxxxQ", len(insns) // 8, _ctypes.addressof(code))  # sock_fprog
    return _check(_syscall(_NRS["seccomp"], SECCOMP_SET_MODE_FILTER, flags, prog),
                  "seccomp")


# --- fork into a cgroup ------------------------------------------------------------------

CLONE_INTO_CGROUP = 0x200000000
_SIGCHLD = 17


def fork_into_cgroup(cgroup2_dir: str) -> int:
    """fork(), the child born in the cgroup2 cgroup at cgroup2_dir (clone3 with
    CLONE_INTO_CGROUP, Linux 5.7+): as posix.fork, 0 in the child, its pid in the parent.

    Moving a process into a cgroup2 cgroup afterwards (a write to cgroup.procs) makes the
    kernel wait for an RCU grace period, 7-25 ms on these machines, on every container
    start; a child born there costs nothing more than a fork. The interpreter is told
    about the fork as os.fork tells it (PyOS_BeforeFork and the AfterFork calls), with its
    lock held throughout. glibc is not told: the child's cached thread id stays its
    parent's until it forks or execs, which only matters to pthread_kill and raise, which
    the single-threaded runtime and init do not use. Raises OSError (ENOSYS on old
    kernels, EBUSY for a cgroup that takes no processes): the caller then forks and moves
    the child the usual way.
    """
    api = _python_api()
    fd = posix.open(cgroup2_dir, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
    try:
        # struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
        # stack_size, tls, set_tid, set_tid_size, cgroup
        args = struct.pack("=11Q", CLONE_INTO_CGROUP, 0, 0, 0, _SIGCHLD, 0, 0, 0, 0, 0, fd)
        api["PyOS_BeforeFork"]()
        # the kernel only reads the arguments: the bytes object itself is the buffer
        pid = api["clone3"](_long(NR_CLONE3), args, _long(len(args)))
        if pid == 0:
            api["PyOS_AfterFork_Child"]()
            return 0
        err = get_errno()
        api["PyOS_AfterFork_Parent"]()
    finally:
        posix.close(fd)
    if pid < 0:
        raise OSError(err, posix.strerror(err), "clone3")
    return pid


_API: dict[str, _ctypes.CFuncPtr] = {}


def _python_api() -> dict[str, _ctypes.CFuncPtr]:
    if not _API:
        me = Library(None)
        for name in ("PyOS_BeforeFork", "PyOS_AfterFork_Parent", "PyOS_AfterFork_Child"):
            _API[name] = me.function(name, None, keep_gil=True)
        _API["clone3"] = me.function("syscall", _long, keep_gil=True)
    return _API

