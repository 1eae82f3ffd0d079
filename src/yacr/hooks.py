"""OCI hooks: run each with the container state on stdin, honouring its timeout.

Hooks are forked and exec'd here (no subprocess import on the hot path). Each
dies with the process that runs it (parent-death signal) and leads its own
process group, so a runtime killed in the middle of a hook leaves delete
--force what to end. A hook's stdout and stderr are captured so that a failing
hook's own words reach the user in the one-line error.
"""

from __future__ import annotations

import _signal
import posix
import select
import time

from yacr import fs, jsonio
from yacr.errors import YacrError
from yacr.linux import sys as S

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from yacr.spec import Hook

_OUTPUT_CAP = 4096


class HookError(YacrError):
    pass


def run_hooks(kind: str, hooks: list[Hook], state: dict[str, Any],
              on_spawn: Callable[[int], None] | None = None) -> None:
    """Run the hooks of one kind in order; the first failure raises HookError.

    on_spawn(pid) is called as each hook starts (its pid is also its process group)."""
    if not hooks:
        return
    payload = jsonio.dumps(state).encode()
    for i, h in enumerate(hooks):
        run_hook(kind, i, h.path, h.args, h.env, h.timeout, payload, on_spawn)


def run_hook_dicts(kind: str, hooks: list[dict[str, Any]], state: dict[str, Any],
                   warn: Callable[[str], None] | None = None) -> None:
    """The same, for hooks kept in a container's saved state as plain dicts.

    With `warn`, a failing hook is reported there and the next hooks still run (the spec's
    rule for poststop); without it the first failure raises.
    """
    if not hooks:
        return
    payload = jsonio.dumps(state).encode()
    for i, h in enumerate(hooks):
        try:
            run_hook(kind, i, h["path"], h.get("args") or [h["path"]], h.get("env"),
                     h.get("timeout"), payload)
        except HookError as e:
            if warn is None:
                raise
            warn(str(e))


def run_hook(kind: str, index: int, path: str, args: list[str], env: list[str] | None,
             timeout: int | None, payload: bytes,
             on_spawn: Callable[[int], None] | None = None) -> None:
    """One hook; env None (the config has none) passes the runtime's own environment on,
    PATH included, as runc and crun do. Errors start with runc's "error running hook"."""
    in_r, in_w = posix.pipe2(posix.O_CLOEXEC)
    out_r, out_w = posix.pipe2(posix.O_CLOEXEC)
    envmap: dict[str, str] | dict[bytes, bytes] = posix.environ if env is None else {}
    for e in env or ():
        k, _, v = e.partition("=")
        envmap[k] = v  # type: ignore[index]
    what = f"error running hook #{index} ({kind}: {path})"
    try:
        pid = _spawn(path, args or [path], envmap, in_r, out_w, on_spawn)
    except OSError as e:
        for fd in (in_r, in_w, out_r, out_w):
            posix.close(fd)
        raise HookError(f"{what}: {e.strerror}") from None
    posix.close(in_r)
    posix.close(out_w)
    output = _feed_and_wait(pid, in_w, out_r, payload, timeout)
    if output is None:
        raise HookError(f"{what}: timed out after {timeout}s")
    status, text = output
    if status != 0:
        if status > 0:
            why = f"exit status {status}"
        else:
            name = _signal.strsignal(-status) or f"signal {-status}"
            why = f"signal: {name.lower()} (signal {-status})"
        detail = text.decode("utf-8", "replace").strip().replace("\n", " ")
        raise HookError(f"{what}: {why}" + (f": {detail}" if detail else ""))


def _spawn(path: str, args: list[str], env: dict[str, str] | dict[bytes, bytes], stdin: int,
           out: int,
           on_spawn: Callable[[int], None] | None) -> int:
    """fork + execve of a hook that dies with us and leads its own process group; an exec
    failure comes back as OSError, as from posix_spawn. The hook execs only once on_spawn
    has returned (the runtime recorded it), so nothing it starts can go unrecorded."""
    err_r, err_w = posix.pipe2(posix.O_CLOEXEC)
    go_r, go_w = posix.pipe2(posix.O_CLOEXEC)
    parent = posix.getpid()
    pid = posix.fork()
    if pid == 0:
        try:
            S.prctl(S.PR_SET_PDEATHSIG, 9)
            if posix.getppid() != parent:
                posix._exit(127)  # we already lost our parent: too late for the signal
            posix.setpgid(0, 0)
            posix.close(go_w)
            if not posix.read(go_r, 1):
                posix._exit(127)  # the runtime died before it recorded us
            posix.dup2(stdin, 0)
            posix.dup2(out, 1)
            posix.dup2(out, 2)
            for sig in (1, 2, 3, 13, 15):
                _signal.signal(sig, _signal.SIG_DFL)
            posix.execve(path, args, env)
        except OSError as e:
            posix.write(err_w, str(e.errno).encode())
        finally:
            posix._exit(127)
    posix.close(err_w)
    posix.close(go_r)
    try:
        try:
            if on_spawn is not None:
                on_spawn(pid)
            posix.write(go_w, b"g")
        finally:
            posix.close(go_w)
        data = posix.read(err_r, 16)  # EOF: execve succeeded (err_w was close-on-exec)
    finally:
        posix.close(err_r)
    if data:
        posix.waitpid(pid, 0)
        code = int(data)
        raise OSError(code, posix.strerror(code), path)
    return pid


def _feed_and_wait(pid: int, in_w: int, out_r: int, payload: bytes,
                   timeout: int | None) -> tuple[int, bytes] | None:
    """Write stdin, drain stdout/stderr, wait; None on timeout (the hook is killed)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pidfd = posix.pidfd_open(pid)
    posix.set_blocking(in_w, False)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.register(out_r, select.POLLIN)
    if payload:
        poller.register(in_w, select.POLLOUT)
    else:
        posix.close(in_w)
        in_w = -1
    captured = bytearray()
    exited = False
    try:
        while True:
            wait_ms = None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    posix.killpg(pid, 9)  # with what it started
                    posix.waitpid(pid, 0)
                    return None
                wait_ms = int(left * 1000) + 1
            for fd, _ev in poller.poll(wait_ms):
                if fd == in_w:
                    try:
                        n = posix.write(in_w, payload)
                        payload = payload[n:]
                    except BlockingIOError:
                        pass
                    except BrokenPipeError:
                        payload = b""  # the hook does not read its stdin: fine
                    if not payload:
                        poller.unregister(in_w)
                        posix.close(in_w)
                        in_w = -1
                elif fd == out_r:
                    chunk = posix.read(out_r, 65536)
                    if not chunk:
                        poller.unregister(out_r)
                    elif len(captured) < _OUTPUT_CAP:
                        captured += chunk[: _OUTPUT_CAP - len(captured)]
                elif fd == pidfd:
                    exited = True
            if exited:
                break
        # Collect what the hook wrote just before it exited, without waiting on any
        # daemon it left behind holding the pipe open.
        for chunk in fs.read_leftovers(out_r):
            if len(captured) < _OUTPUT_CAP:
                captured += chunk[: _OUTPUT_CAP - len(captured)]
        _, status = posix.waitpid(pid, 0)
        return posix.waitstatus_to_exitcode(status), bytes(captured)
    finally:
        posix.close(pidfd)
        posix.close(out_r)
        if in_w >= 0:
            posix.close(in_w)
