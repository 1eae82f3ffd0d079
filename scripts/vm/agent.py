"""The test VM's guest agent: runs the host's commands and streams back their output.

Installed in the guest image by scripts/vm/build-image.sh and started by
yacr-agent.service. The host's end is scripts/vm/vm.py (`vm.py exec`, `vm.py test`).

Why an agent on a virtio-serial port: the VM has no network on purpose (nothing in the
tests needs one, and none is one less thing to configure and trust), and the serial
console is for the boot log. A virtio-serial port is a private byte pipe between QEMU's
unix socket on the host and /dev/virtio-ports/yacr.agent here, ready as soon as udev
has run, with no addresses, keys or daemons to set up. This file is stdlib-only, for the
guest's /usr/bin/python3, so it never depends on the shared project being mounted.

Protocol: JSON objects, one per line, both ways. Binary data is base64.

  host -> guest
    {"op": "ping", "id": I}
    {"op": "exec", "id": I, "argv": [...], "cwd": DIR?, "env": {K: V}?, "stdin": BOOL?,
     "drop_caches": BOOL?}
    {"op": "stdin", "id": I, "data": B64} / {"op": "stdin", "id": I, "eof": true}
    {"op": "signal", "id": I, "signal": N}       (to the command's process group)
  guest -> host
    {"id": I, "pong": true, "boot_id": S, "uptime": F, "project": DIR}
    {"id": I, "stream": "stdout" | "stderr", "data": B64}
    {"id": I, "exit": RC, "signal": N?, "error": MSG?}

"drop_caches" empties the guest's page, dentry and inode caches first. The project is
shared with 9p cache=loose, which is several times faster than cache=none under emulation
but never revalidates what it has cached: dropping the caches before a command makes it
see the host's files as they are now (edits included), and its own run stays fast.

A command runs in its own session (so a signal reaches everything it started), as root,
by default in the project directory with the project's .venv/bin first on PATH. It is
finished when its process exits, not when its output pipes close: `yacr run -d` leaves a
container holding them open. Output still buffered then is drained for a moment first;
after that, whatever still holds the pipes gets them read and discarded (closing them
would kill a detached container with SIGPIPE at its next write).

The port carries one host connection at a time (vm.py serialises its users with a lock).
When the host end goes away mid-command the output has nowhere to go, so the agent kills
what is still running rather than leave it behind. Replies carry the request's id; the
host ignores any reply left over from an earlier connection.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import select
import selectors
import signal
import subprocess
import sys
import time
from typing import Any, BinaryIO

PORT = "/dev/virtio-ports/yacr.agent"
PROJECT_FILE = "/run/yacr-project"  # written by yacr-mount-project
DRAIN_SECONDS = 0.2  # after a command exits: how long to wait for output still in flight
WRITE_TIMEOUT = 30.0  # a host that reads nothing for this long is treated as gone
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def log(msg: str) -> None:
    """To the journal (stderr of the service): the host sees it with `journalctl`."""
    print(msg, file=sys.stderr, flush=True)


def project_dir() -> str | None:
    """Where yacr-project.service mounted the host's repository, if it did."""
    try:
        with open(PROJECT_FILE) as f:
            return f.read().strip() or None
    except OSError:
        return None


def base_env() -> dict[str, str]:
    """The environment of a command: a root login's, plus the project's venv first on PATH
    (so `pytest`, `yacr`, `ruff` are the project's) and VIRTUAL_ENV, as an activated venv
    would have it."""
    env = {"HOME": "/root", "USER": "root", "LOGNAME": "root", "SHELL": "/bin/bash",
           "LANG": "C.UTF-8", "TERM": "dumb", "PATH": BASE_PATH}
    proj = project_dir()
    if proj:
        venv = os.path.join(proj, ".venv")
        env["PATH"] = f"{venv}/bin:{BASE_PATH}"
        env["VIRTUAL_ENV"] = venv
    return env


class Command:
    """One running command: its process, its output pipes, and where its exit stands."""

    def __init__(self, rid: Any, proc: subprocess.Popen[bytes]) -> None:
        self.rid = rid
        self.proc = proc
        self.pidfd = os.pidfd_open(proc.pid)
        self.pipes: dict[int, tuple[str, BinaryIO]] = {}  # fd: (stream name, file)
        for stream, f in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            assert f is not None
            os.set_blocking(f.fileno(), False)
            self.pipes[f.fileno()] = (stream, f)
        self.stdin_buf = b""  # host data not yet taken by the command
        self.stdin_eof = False
        if proc.stdin is not None:
            os.set_blocking(proc.stdin.fileno(), False)
        self.exited_at: float | None = None
        self.status: int | None = None

    def kill(self, sig: int) -> None:
        """Signal the command's whole process group (it runs in its own session)."""
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass


class Agent:
    """The event loop: the port, every command's pipes and pidfd, in one selector."""

    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.port = -1
        self.connected = False
        self.inbuf = b""
        self.commands: dict[Any, Command] = {}
        self.orphans: dict[int, BinaryIO] = {}  # pipes of finished commands, still held
        with open("/proc/sys/kernel/random/boot_id") as f:
            self.boot_id = f.read().strip()

    # ------------------------------------------------------------------ the port
    def open_port(self) -> None:
        """Wait for the virtio-serial port (udev creates it early in boot) and open it."""
        while True:
            try:
                self.port = os.open(PORT, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
                break
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.EBUSY):
                    raise
                time.sleep(0.2)
        log(f"agent: listening on {PORT}")

    def host_connected(self) -> bool:
        """The port reports POLLHUP while no host has QEMU's socket open."""
        p = select.poll()
        p.register(self.port, select.POLLIN)
        return not any(ev & select.POLLHUP for _, ev in p.poll(0))

    def send(self, msg: dict[str, Any]) -> None:
        """Write one reply line; if the host stops reading, drop the connection's state."""
        if not self.connected:
            return
        data = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
        deadline = time.monotonic() + WRITE_TIMEOUT
        p = select.poll()
        p.register(self.port, select.POLLOUT)
        while data:
            try:
                n = os.write(self.port, data)
                data = data[n:]
                continue
            except BlockingIOError:
                pass
            except OSError as e:
                log(f"agent: write failed: {e}")
                self.disconnected()
                return
            left = deadline - time.monotonic()
            if left <= 0 or not self.host_connected():
                self.disconnected()
                return
            p.poll(min(left, 0.5) * 1000)

    def disconnected(self) -> None:
        """The host went away: kill what it was running, forget any partial request."""
        if self.connected:
            log("agent: host disconnected")
        self.connected = False
        self.inbuf = b""
        for cmd in list(self.commands.values()):
            cmd.kill(signal.SIGKILL)
            self.finish(cmd, report=False)

    def read_port(self) -> None:
        """Read what the host sent and act on every complete line."""
        try:
            data = os.read(self.port, 65536)
        except BlockingIOError:
            return
        if not data:  # no host on the other end
            self.disconnected()
            return
        self.connected = True
        self.inbuf += data
        while b"\n" in self.inbuf:
            line, self.inbuf = self.inbuf.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                log(f"agent: ignoring a malformed line ({len(line)} bytes)")
                continue
            if isinstance(msg, dict):
                self.handle(msg)

    # ------------------------------------------------------------------ requests
    def handle(self, msg: dict[str, Any]) -> None:
        op, rid = msg.get("op"), msg.get("id")
        if op == "ping":
            with open("/proc/uptime") as f:
                uptime = float(f.read().split()[0])
            self.send({"id": rid, "pong": True, "boot_id": self.boot_id, "uptime": uptime,
                       "project": project_dir()})
        elif op == "exec":
            self.start(rid, msg)
        elif op == "stdin":
            self.stdin(rid, msg)
        elif op == "signal":
            cmd = self.commands.get(rid)
            if cmd is not None:
                cmd.kill(int(msg.get("signal", signal.SIGTERM)))
        else:
            self.send({"id": rid, "exit": 127, "error": f"unknown op {op!r}"})

    def start(self, rid: Any, msg: dict[str, Any]) -> None:
        """Start a command; a failure to start is reported as its exit (127, with why)."""
        if rid in self.commands:
            self.send({"id": rid, "exit": 127, "error": "duplicate request id"})
            return
        env = base_env()
        env.update({str(k): str(v) for k, v in (msg.get("env") or {}).items()})
        cwd = msg.get("cwd") or project_dir() or "/root"
        if msg.get("drop_caches"):
            try:
                with open("/proc/sys/vm/drop_caches", "w") as f:
                    f.write("3\n")
            except OSError as e:
                log(f"agent: cannot drop caches: {e}")
        try:
            proc = subprocess.Popen(
                [str(a) for a in msg["argv"]], cwd=cwd, env=env,
                stdin=subprocess.PIPE if msg.get("stdin") else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except (OSError, KeyError, TypeError, ValueError) as e:
            self.send({"id": rid, "exit": 127, "error": f"cannot run {msg.get('argv')}: {e}"})
            return
        cmd = Command(rid, proc)
        self.commands[rid] = cmd
        for fd in cmd.pipes:
            self.sel.register(fd, selectors.EVENT_READ, ("pipe", cmd))
        self.sel.register(cmd.pidfd, selectors.EVENT_READ, ("exit", cmd))

    def stdin(self, rid: Any, msg: dict[str, Any]) -> None:
        """Queue host data for the command's stdin; written as the pipe takes it, so a
        command that does not read its stdin never blocks the agent."""
        cmd = self.commands.get(rid)
        if cmd is None or cmd.proc.stdin is None or cmd.stdin_eof:
            return
        if msg.get("data"):
            cmd.stdin_buf += base64.b64decode(msg["data"])
        if msg.get("eof"):
            cmd.stdin_eof = True
        self.write_stdin(cmd)

    def write_stdin(self, cmd: Command) -> None:
        """Write what the pipe takes now; wait for EVENT_WRITE for the rest."""
        f = cmd.proc.stdin
        if f is None or f.closed:
            return
        fd = f.fileno()
        try:
            while cmd.stdin_buf:
                n = os.write(fd, cmd.stdin_buf)
                cmd.stdin_buf = cmd.stdin_buf[n:]
        except BlockingIOError:
            pass
        except OSError:  # the command closed its stdin or exited: drop it, like a shell
            cmd.stdin_buf = b""
            cmd.stdin_eof = True
        registered = fd in self.sel.get_map()
        if cmd.stdin_buf and not registered:
            self.sel.register(fd, selectors.EVENT_WRITE, ("stdin", cmd))
        elif not cmd.stdin_buf:
            if registered:
                self.sel.unregister(fd)
            if cmd.stdin_eof:
                f.close()

    # ------------------------------------------------------------------ commands
    def read_pipe(self, cmd: Command, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not data:
            self.sel.unregister(fd)
            cmd.pipes.pop(fd)[1].close()
            return
        self.send({"id": cmd.rid, "stream": cmd.pipes[fd][0],
                   "data": base64.b64encode(data).decode()})

    def read_orphan(self, fd: int) -> None:
        """Output of a finished command's leftovers: read and dropped until they close."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not data:
            self.sel.unregister(fd)
            self.orphans.pop(fd).close()

    def exited(self, cmd: Command) -> None:
        """The process is gone: reap it, then give its output DRAIN_SECONDS to arrive."""
        self.sel.unregister(cmd.pidfd)
        os.close(cmd.pidfd)
        cmd.status = cmd.proc.wait()
        cmd.exited_at = time.monotonic()

    def finish(self, cmd: Command, report: bool = True) -> None:
        """Close what is left of the command and (unless the host is gone) report its exit.
        The pipes may still be held by something it started (a detached container):
        they become orphans, drained until closed."""
        for fd, (_, f) in cmd.pipes.items():
            self.sel.modify(fd, selectors.EVENT_READ, ("orphan", None))
            self.orphans[fd] = f
        cmd.pipes.clear()
        if cmd.exited_at is None:  # killed on disconnect: reap it here
            self.sel.unregister(cmd.pidfd)
            os.close(cmd.pidfd)
            try:
                cmd.status = cmd.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # stuck in the kernel: subprocess reaps later
                log(f"agent: pid {cmd.proc.pid} did not die of SIGKILL within 10 s")
        f = cmd.proc.stdin
        if f is not None and not f.closed:
            if f.fileno() in self.sel.get_map():
                self.sel.unregister(f.fileno())
            try:
                f.close()
            except OSError:
                pass
        self.commands.pop(cmd.rid, None)
        if report:
            st = cmd.status if cmd.status is not None else 255
            msg: dict[str, Any] = {"id": cmd.rid, "exit": st if st >= 0 else 128 - st}
            if st < 0:
                msg["signal"] = -st
            self.send(msg)

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        self.open_port()
        self.sel.register(self.port, selectors.EVENT_READ, ("port", None))
        port_registered = True
        while True:
            # with no host, the port polls as readable (POLLHUP) all the time: take it out
            # of the selector and look again every 100 ms instead of spinning
            timeout = None
            if not port_registered:
                timeout = 0.1
            if any(c.exited_at is not None for c in self.commands.values()):
                timeout = 0.02
            for key, _ in self.sel.select(timeout):
                kind, cmd = key.data
                if kind == "port":
                    self.read_port()
                elif kind == "pipe" and key.fd in cmd.pipes:
                    self.read_pipe(cmd, key.fd)
                elif kind == "orphan":
                    self.read_orphan(key.fd)
                elif kind == "stdin":
                    self.write_stdin(cmd)
                elif kind == "exit":
                    self.exited(cmd)
            if port_registered and not self.connected and not self.host_connected():
                self.sel.unregister(self.port)
                port_registered = False
            elif not port_registered and self.host_connected():
                self.sel.register(self.port, selectors.EVENT_READ, ("port", None))
                port_registered = True
            now = time.monotonic()
            for cmd in list(self.commands.values()):
                if cmd.exited_at is not None and (
                        not cmd.pipes or now - cmd.exited_at > DRAIN_SECONDS):
                    self.finish(cmd)


def main() -> None:
    # the agent's own children are killed by it, never by a stray SIGPIPE
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    Agent().run()


if __name__ == "__main__":
    main()
