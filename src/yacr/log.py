"""The --log file, in the two formats containerd and podman read back.

containerd takes the last `{"level":"error",...}` line of the file as the
error of a failed call, and Go must be able to parse its `time`, so the time is
RFC 3339 in UTC. go-runc reads stdout and stderr together, so a successful
command must print nothing on stderr: warnings go to the log file when one is
given, and to stderr only when there is none.

The file is opened (created) as soon as the command line is read, even if nothing
is ever logged: containerd and podman open it afterwards and expect it to exist.
The fd is kept close-on-exec, so processes forked on the way to the container
(its init, an exec'd process) write their lines to the same file after they have
changed their root, and nothing of it reaches the container's program.

--debug lines (logrus's `time="..." level=debug msg="..."`, or JSON) cost nothing
when --debug is off: `debug(fmt, *args)` formats only when it is on, so callers
pass the pieces instead of an f-string.
"""

from __future__ import annotations

import posix
import sys
import time

from yacr import jsonio
from yacr.errors import YacrError

_LEVELS = {"debug": 0, "info": 1, "warning": 2, "error": 3}


def rfc3339_now() -> str:
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def one_line(msg: str) -> str:
    """msg with every unprintable character escaped (\\n, \\x1e, \\u2028...): errors quote
    config values verbatim, and a newline or another line boundary in a sysctl key or an
    argument must not split the one-line error that callers parse."""
    if msg.isprintable():
        return msg
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in msg)


class Log:
    """Where a command's warnings and errors go; passed down, never global."""

    __slots__ = ("path", "json", "debug_enabled", "fd")

    def __init__(self, path: str | None = None, fmt: str = "text", debug: bool = False) -> None:
        self.path = path
        self.json = fmt == "json"
        self.debug_enabled = debug
        self.fd = -1

    def open(self) -> None:
        """Open (create) the --log file and keep it; an error names the file. The CLI calls
        this once the flags are read, so the file exists even when nothing is logged."""
        if self.path and self.fd < 0:
            try:
                self.fd = posix.open(self.path, posix.O_WRONLY | posix.O_APPEND | posix.O_CREAT
                                     | posix.O_CLOEXEC, 0o644)
            except OSError as e:
                from yacr.errors import UsageError

                path, self.path = self.path, None  # the error itself goes to stderr only
                raise UsageError(f"--log {path}: {e.strerror}") from None

    def hold(self) -> None:
        """Make sure the log file is open, before forking a process that must keep writing
        to it after pivot_root, when the path no longer resolves (the fd is closed on
        exec). Without --log, lines go to the process's own stderr."""
        if self.path and self.fd < 0:
            try:
                self.open()
            except YacrError:
                self.fd = -1

    def _line(self, level: str, msg: str) -> str:
        if self.json:
            return jsonio.dumps({"level": level, "msg": msg, "time": rfc3339_now()}) + "\n"
        return f"time=\"{rfc3339_now()}\" level={level} msg={jsonio.dumps(msg)}\n"

    def _write_file(self, line: str) -> bool:
        if self.fd >= 0:
            try:
                posix.write(self.fd, line.encode("utf-8", "replace"))
                return True
            except OSError:
                return False
        if not self.path:
            return False
        try:
            fd = posix.open(self.path, posix.O_WRONLY | posix.O_APPEND | posix.O_CREAT
                            | posix.O_CLOEXEC, 0o644)
        except OSError:
            return False
        try:
            posix.write(fd, line.encode("utf-8", "replace"))
        finally:
            posix.close(fd)
        return True

    def error(self, msg: str) -> None:
        """An error always reaches stderr as one plain line, and the log file as a record."""
        self._write_file(self._line("error", msg))
        try:
            sys.stderr.write(f"yacr: {one_line(msg)}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def warn(self, msg: str) -> None:
        self._emit("warning", msg)

    def info(self, msg: str, *args: object) -> None:
        if self.debug_enabled:
            self._emit("info", msg % args if args else msg)

    def debug(self, msg: str, *args: object) -> None:
        """A --debug line; with args, msg is a %-format applied only when --debug is on."""
        if self.debug_enabled:
            self._emit("debug", msg % args if args else msg)

    def _emit(self, level: str, msg: str) -> None:
        line = self._line(level, msg)
        if not self._write_file(line):
            try:
                sys.stderr.write(line)
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
