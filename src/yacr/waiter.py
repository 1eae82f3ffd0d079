"""The foreground side of `yacr run`: forward signals, relay a terminal, return the exit code.

Only `run` without --detach stays between the caller and the container; the
exit status it returns is the container's, 128+N when signal N killed it.
"""

from __future__ import annotations

import _signal
import posix
import select

from yacr import fs

FORWARDED = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1,
             _signal.SIGUSR2, _signal.SIGWINCH, _signal.SIGCONT)


def forward_signals(pid: int, pty_master: int = -1) -> None:
    """From now on the signals a foreground caller sends us go to the container's process.
    `run` calls this before it releases init: a SIGTERM arriving between the release and
    the wait would otherwise end yacr and leave the container running."""
    def forward(signum: int, _frame: object) -> None:
        if signum == _signal.SIGWINCH and pty_master >= 0:
            _copy_winsize(0, pty_master)
            return
        try:
            posix.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in FORWARDED:
        _signal.signal(sig, forward)


def wait_foreground(pid: int, pty_master: int = -1) -> int:
    forward_signals(pid, pty_master)
    if pty_master >= 0:
        _relay(pid, pty_master)
    while True:
        try:
            _, status = posix.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            return 255
    for sig in FORWARDED:
        _signal.signal(sig, _signal.SIG_DFL)
    code = posix.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _copy_winsize(src: int, dst: int) -> None:
    import fcntl
    import termios

    try:
        ws = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, ws)
    except OSError:
        pass


def _relay(pid: int, master: int) -> None:
    """Copy stdin to the pty and the pty to stdout until the container exits."""
    import termios

    saved = None
    if posix.isatty(0):
        saved = termios.tcgetattr(0)
        raw = termios.tcgetattr(0)
        raw[0] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP
                    | termios.IXON)
        raw[1] &= ~termios.OPOST
        raw[2] |= termios.CS8
        raw[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
        termios.tcsetattr(0, termios.TCSAFLUSH, raw)
        _copy_winsize(0, master)
    pidfd = posix.pidfd_open(pid)
    poller = select.poll()
    poller.register(master, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    stdin_open = True
    try:
        poller.register(0, select.POLLIN)
    except (OSError, ValueError):
        stdin_open = False
    try:
        done = False
        while not done:
            try:
                events = poller.poll()
            except InterruptedError:
                continue
            for fd, ev in events:
                if fd == master:
                    try:
                        data = posix.read(master, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        poller.unregister(master)
                        done = True
                    else:
                        _write_all(1, data)
                elif fd == 0 and stdin_open:
                    data = posix.read(0, 65536) if ev & (select.POLLIN | select.POLLHUP) else b""
                    if not data:
                        poller.unregister(0)
                        stdin_open = False
                        _write_all(master, b"\x04")
                    else:
                        _write_all(master, data)
                elif fd == pidfd:
                    # Drain what the container wrote last, then stop.
                    for data in fs.read_leftovers(master):
                        _write_all(1, data)
                    done = True
    finally:
        posix.close(pidfd)
        posix.close(master)
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            n = posix.write(fd, data)
        except InterruptedError:
            continue
        except OSError:
            return
        data = data[n:]
