"""The message protocol between the runtime and the container's init (and exec'd processes).

Every message is one datagram on a SOCK_SEQPACKET socketpair: a JSON object
with a "type" and its fields, plus optional file descriptors passed with
SCM_RIGHTS. Each side states which types it expects next; anything else is a
protocol error, so a confused or hostile peer is caught instead of obeyed.
Init reports failures with an "error" message whose text the runtime shows
the user as its own one-line error. `_socket` is used directly: the `socket`
module costs ~10 ms of imports on every container start.

The exchange during create (runtime = R, init = I):

    (R made the cgroups and their limits before forking I; I joins them first thing)
    With --systemd-cgroup systemd makes the cgroup around a process, so R places the
    first child (I, or H below) itself, and that child waits first thing for:
    R -> I  cgroup-ready         I (or H) is in its cgroup, whose limits are applied
    With a user namespace, a helper H (R's child) comes first and forks I:
    H -> R  userns-ready         H joined the cgroups and entered the user namespace
    R -> H  maps-done            R wrote H's uid_map and gid_map
    H -> R  init-pid {pid}       H entered the pid namespace and forked I, which goes on
    I -> R  create-hooks         namespaces and mounts are ready: run prestart
                                 and createRuntime hooks (pid as R sees it); only when
                                 the config has such hooks (both sides read it)
    R -> I  hooks-done
    I -> R  pty-master [fd]      a terminal without --console-socket (run in the foreground)
    I -> R  seccomp-fd [fd]      SCMP_ACT_NOTIFY: R hands the fd to the listenerPath agent
    R -> I  seccomp-done
    I -> R  ready                everything is applied; I waits for start
    R -> I  commit               R has saved the state; I detaches from R
    I -> R  committed            (I cleared its parent-death signal)
    I -> R  error {msg}          at any point instead of the next message

During exec, the process P to be exec'd reports `error` or closes its end
(close-on-exec) when execve succeeds.
"""

from __future__ import annotations

import _socket
import _struct as struct  # the C module: struct.py is one more import

from yacr import jsonio
from yacr.errors import YacrError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

CGROUP_READY = "cgroup-ready"
USERNS_READY = "userns-ready"
MAPS_DONE = "maps-done"
INIT_PID = "init-pid"
CREATE_HOOKS = "create-hooks"
HOOKS_DONE = "hooks-done"
READY = "ready"
COMMIT = "commit"
COMMITTED = "committed"
ERROR = "error"
PTY_MASTER = "pty-master"
SECCOMP_FD = "seccomp-fd"
SECCOMP_DONE = "seccomp-done"
EOF = "eof"

_MAX_MSG = 65536
_MAX_FDS = 4


class ProtocolError(YacrError):
    """The peer sent something out of order, or went away."""


class Channel:
    """One end of the runtime/init socketpair."""

    __slots__ = ("sock", "peer", "idle")

    def __init__(self, sock: _socket.socket, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        self.idle: Callable[[], None] | None = None

    def watch(self, idle: Callable[[], None], every: float = 1.0) -> None:
        """While recv waits, call idle() every `every` seconds; it raises to give up (the
        peer is stuck: frozen, or past a deadline). The socket goes into timeout mode,
        which the peer's end does not share."""
        self.idle = idle
        self.sock.settimeout(every)

    @staticmethod
    def pair() -> tuple[Channel, Channel]:
        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
        return Channel(a, "init"), Channel(b, "runtime")

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def send(self, kind: str, fds: list[int] | None = None, **fields: Any) -> None:
        fields["type"] = kind
        data = jsonio.dumps(fields).encode()
        try:
            if fds:
                self.sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                            struct.pack(f"{len(fds)}i", *fds))])
            else:
                self.sock.send(data)
        except OSError as e:
            self._raise_queued_error()
            raise ProtocolError(f"lost contact with {self.peer}: {e.strerror}") from None

    def _raise_queued_error(self) -> None:
        """The peer may have failed and gone, leaving its error message queued: that
        message, not the broken pipe or the reset, is what the user needs to read. (A
        reset is reported once, before the queued messages.)"""
        for _ in range(4):
            try:
                data = self.sock.recv(_MAX_MSG, _socket.MSG_DONTWAIT)
            except ConnectionResetError:
                continue
            except OSError:
                return
            if not data:
                return
            try:
                msg = jsonio.loads(data)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("type") == ERROR:
                raise YacrError(str(msg.get("msg", "unknown error")))

    def recv(self, *expect: str, eof_ok: bool = False) -> tuple[dict[str, Any], list[int]]:
        """The next message, which must be one of `expect` (or an error, raised here).

        With eof_ok, the peer closing its end is an answer too: ({"type": EOF}, []).
        """
        while True:
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(
                    _MAX_MSG, _socket.CMSG_SPACE(_MAX_FDS * 4))
                break
            except InterruptedError:
                continue
            except TimeoutError:
                if self.idle is None:
                    raise
                self.idle()
                continue
            except OSError as e:
                self._raise_queued_error()
                raise ProtocolError(f"lost contact with {self.peer}: {e.strerror}") from None
        fds: list[int] = []
        for level, typ, payload in anc:
            if level == _socket.SOL_SOCKET and typ == _socket.SCM_RIGHTS:
                n = len(payload) // 4
                fds.extend(struct.unpack(f"{n}i", payload[: n * 4]))
        if not data:
            if eof_ok and not fds:
                return {"type": EOF}, []
            raise ProtocolError(f"{self.peer} exited unexpectedly")
        try:
            msg = jsonio.loads(data)
            kind = msg["type"]
        except (ValueError, KeyError, TypeError):
            raise ProtocolError(f"malformed message from {self.peer}") from None
        if kind == ERROR:
            raise YacrError(str(msg.get("msg", "unknown error")))
        if kind not in expect:
            raise ProtocolError(f"unexpected message {kind!r} from {self.peer}, "
                                f"expected {' or '.join(expect)}")
        return msg, fds
