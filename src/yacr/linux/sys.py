"""The one place that talks to libc and raw syscalls that Python's os module lacks.

Python 3.11 has no unshare, setns, mount, pivot_root, capset or openat2. Every
other module goes through these thin wrappers, so a reader can audit all the
kernel interfaces yacr touches in one file, and errors always come back as
OSError with errno set (the CLI turns them into one-line messages).
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

# Syscall numbers. Calls added after Linux 5.0 share one number on every
# architecture; the older ones differ, so they are tabled per machine.
_MACHINE = os.uname().machine
_OLD_NRS = {
    "x86_64": {"pivot_root": 155, "capget": 125, "capset": 126, "keyctl": 250},
    "aarch64": {"pivot_root": 41, "capget": 90, "capset": 91, "keyctl": 219},
}.get(_MACHINE, {"pivot_root": 155, "capget": 125, "capset": 126, "keyctl": 250})
NR_PIVOT_ROOT = _OLD_NRS["pivot_root"]
NR_CAPGET = _OLD_NRS["capget"]
NR_CAPSET = _OLD_NRS["capset"]
NR_KEYCTL = _OLD_NRS["keyctl"]
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

_mount = _libc.mount
_mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                   ctypes.c_char_p]
_umount2 = _libc.umount2
_umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_unshare = _libc.unshare
_unshare.argtypes = [ctypes.c_int]
_setns = _libc.setns
_setns.argtypes = [ctypes.c_int, ctypes.c_int]
_sethostname = _libc.sethostname
_sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_setdomainname = _libc.setdomainname
_setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_ioctl = _libc.ioctl


def _check(ret: int, what: str, path: str | bytes | None = None) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        if path is not None:
            raise OSError(err, f"{what}: {os.strerror(err)}", os.fsdecode(path))
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _b(s: str | bytes | None) -> bytes | None:
    if s is None or isinstance(s, bytes):
        return s
    return os.fsencode(s)


def mount(source: str | bytes | None, target: str | bytes, fstype: str | bytes | None,
          flags: int, data: str | bytes | None = None) -> None:
    _check(_mount(_b(source), _b(target), _b(fstype), flags, _b(data)), "mount", target)


def umount2(target: str | bytes, flags: int = 0) -> None:
    _check(_umount2(_b(target), flags), "umount", target)


def unshare(flags: int) -> None:
    _check(_unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_setns(fd, nstype), "setns")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_syscall(NR_PIVOT_ROOT, _b(new_root), _b(put_old)), "pivot_root", new_root)


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_sethostname(raw, len(raw)), "sethostname")


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_setdomainname(raw, len(raw)), "setdomainname")


def prctl(option: int, a2: int = 0, a3: int = 0, a4: int = 0, a5: int = 0) -> int:
    return _check(_prctl(option, a2, a3, a4, a5), "prctl")


def ioctl_int(fd: int, request: int, arg: int = 0) -> int:
    return _check(_ioctl(fd, ctypes.c_ulong(request), ctypes.c_long(arg)), "ioctl")


def ioctl_ptr(fd: int, request: int, buf: ctypes.Array | ctypes.Structure) -> int:
    return _check(_ioctl(fd, ctypes.c_ulong(request), ctypes.byref(buf)), "ioctl")


def ns_type(fd: int) -> int:
    """The CLONE_NEW* type of a namespace fd, so a wrong `path` is caught before setns."""
    return ioctl_int(fd, NS_GET_NSTYPE)


def close_range_cloexec(first: int) -> None:
    """Mark every fd >= first close-on-exec: nothing of the runtime leaks past execve."""
    _check(_syscall(436, ctypes.c_uint(first), ctypes.c_uint(0xFFFFFFFF),
                    ctypes.c_uint(CLOSE_RANGE_CLOEXEC)), "close_range")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str | bytes, flags: int, resolve: int, mode: int = 0) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    return _check(_syscall(NR_OPENAT2, dirfd, _b(path), ctypes.byref(how), ctypes.sizeof(how)),
                  "openat2", path)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def mount_setattr(dirfd: int, path: str, flags: int, attr_set: int, attr_clr: int,
                  propagation: int = 0, userns_fd: int = 0) -> None:
    attr = _MountAttr(attr_set, attr_clr, propagation, userns_fd)
    _check(_syscall(NR_MOUNT_SETATTR, dirfd, _b(path), ctypes.c_uint(flags), ctypes.byref(attr),
                    ctypes.sizeof(attr)), "mount_setattr", path)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_CAP_V3 = 0x20080522


def capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _CapHeader(_CAP_V3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_syscall(NR_CAPSET, ctypes.byref(hdr), ctypes.byref(data)), "capset")


def capget(pid: int = 0) -> tuple[int, int, int]:
    hdr = _CapHeader(_CAP_V3, pid)
    data = (_CapData * 2)()
    _check(_syscall(NR_CAPGET, ctypes.byref(hdr), ctypes.byref(data)), "capget")
    eff = data[0].effective | (data[1].effective << 32)
    per = data[0].permitted | (data[1].permitted << 32)
    inh = data[0].inheritable | (data[1].inheritable << 32)
    return eff, per, inh


def join_session_keyring(name: str) -> None:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING): a new session keyring for this process."""
    ret = _syscall(NR_KEYCTL, 1, name.encode())
    if ret < 0 and ctypes.get_errno() not in (38,):  # ENOSYS: kernel without keys
        _check(ret, "keyctl(JOIN_SESSION_KEYRING)")


class _Rlimit(ctypes.Structure):
    _fields_ = [("cur", ctypes.c_uint64), ("max", ctypes.c_uint64)]


def setrlimit(resource: int, soft: int, hard: int) -> None:
    """prlimit(2) on this process; 2**64-1 is RLIM_INFINITY."""
    new = _Rlimit(soft, hard)
    _check(_libc.prlimit(0, resource, ctypes.byref(new), None), "prlimit")


class Winsize(ctypes.Structure):
    _fields_ = [("ws_row", ctypes.c_ushort), ("ws_col", ctypes.c_ushort),
                ("ws_xpixel", ctypes.c_ushort), ("ws_ypixel", ctypes.c_ushort)]


def set_winsize(fd: int, rows: int, cols: int) -> None:
    ioctl_ptr(fd, TIOCSWINSZ, Winsize(rows, cols, 0, 0))


def pty_number(fd: int) -> int:
    n = ctypes.c_uint(0)
    ioctl_ptr(fd, TIOCGPTN, n)
    return n.value


def pty_unlock(fd: int) -> None:
    zero = ctypes.c_int(0)
    ioctl_ptr(fd, TIOCSPTLCK, zero)
