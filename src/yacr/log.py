"""The --log file, in the two formats containerd and podman read back.

containerd takes the last `{"level":"error",...}` line of the file as the
error of a failed call, and Go must be able to parse its `time`, so the time is
RFC 3339 in UTC. go-runc reads stdout and stderr together, so a successful
command must print nothing on stderr: warnings go to the log file when one is
given, and to stderr only when there is none.
"""

from __future__ import annotations

import posix
import sys
import time

from yacr import jsonio

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

    def hold(self) -> None:
        """Open the log file now and keep it: a forked init still reaches it after
        pivot_root, when the path no longer resolves (the fd is closed on exec)."""
        if self.path and self.fd < 0:
            try:
                self.fd = posix.open(self.path, posix.O_WRONLY | posix.O_APPEND | posix.O_CREAT
                                  | posix.O_CLOEXEC, 0o644)
            except OSError:
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

    def info(self, msg: str) -> None:
        if self.debug_enabled:
            self._emit("info", msg)

    def debug(self, msg: str) -> None:
        if self.debug_enabled:
            self._emit("debug", msg)

    def _emit(self, level: str, msg: str) -> None:
        line = self._line(level, msg)
        if not self._write_file(line):
            try:
                sys.stderr.write(line)
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
