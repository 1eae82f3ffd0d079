"""The container's terminal: a pty made inside the container, its master sent to the caller.

The pty comes from the container's own devpts (its /dev/ptmx), and the peer
is obtained with TIOCGPTPEER rather than by opening /dev/pts/N by name, so a
symlink planted at /dev/pts/N or /dev/console cannot redirect it
(CVE-2025-52565). The master travels over --console-socket with SCM_RIGHTS and
a non-empty payload, as containerd and conmon expect.
"""

from __future__ import annotations

import _socket
import _struct as struct  # the C module: struct.py is one more import
import posix
import stat

from yacr.errors import YacrError
from yacr.linux import sys as S

TIOCGPTPEER = 0x5441


def connect_socket(path: str) -> _socket.socket:
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise YacrError(f"--console-socket {path}: cannot connect: {e.strerror}") from None
    return s


def open_pty(rows: int, cols: int, owner: int = 0) -> tuple[int, int]:
    """(master, slave) of a new pty from the current root's /dev/ptmx, the slave owned by
    `owner` (the process's uid: its terminal is its own, as under runc); the group stays
    what devpts gives (gid=5, tty, in the usual mount options)."""
    try:
        master = posix.open("/dev/ptmx", posix.O_RDWR | posix.O_NOCTTY | posix.O_CLOEXEC)
    except OSError as e:
        raise YacrError(f"terminal: cannot open /dev/ptmx in the container: {e.strerror}") \
            from None
    slave = -1
    try:
        S.pty_unlock(master)
        slave = S.ioctl_int(master, TIOCGPTPEER, posix.O_RDWR | posix.O_NOCTTY | posix.O_CLOEXEC)
        if rows or cols:
            S.set_winsize(master, rows, cols)
        if owner:
            posix.fchown(slave, owner, -1)
    except OSError as e:
        posix.close(master)
        if slave >= 0:
            posix.close(slave)
        raise YacrError(f"terminal: cannot set up the pty: {e.strerror}") from None
    return master, slave


def send_master(sock: _socket.socket, master: int) -> None:
    try:
        sock.sendmsg([b"/dev/ptmx"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                       struct.pack("i", master))])
    except OSError as e:
        raise YacrError(f"--console-socket: cannot send the pty: {e.strerror}") from None


def bind_console(slave: int) -> None:
    """Make /dev/console the pty, replacing whatever the image put there without following it."""
    devfd = posix.open("/dev", posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
    try:
        try:
            st = posix.stat("console", dir_fd=devfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                raise YacrError("/dev/console in the container is a directory")
            posix.unlink("console", dir_fd=devfd)
        except FileNotFoundError:
            pass
        fd = posix.open("console", posix.O_CREAT | posix.O_EXCL | posix.O_WRONLY | posix.O_NOFOLLOW
                     | posix.O_CLOEXEC, 0o600, dir_fd=devfd)
        try:
            S.mount(f"/proc/self/fd/{slave}", f"/proc/self/fd/{fd}", None, S.MS_BIND)
        finally:
            posix.close(fd)
    finally:
        posix.close(devfd)


def make_controlling(slave: int) -> None:
    """The pty becomes stdio and the controlling terminal of this (session-leader) process."""
    S.ioctl_int(slave, S.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        posix.dup2(slave, fd, inheritable=True)
