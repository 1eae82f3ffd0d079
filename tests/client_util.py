"""Helpers for the containerd and podman tests: run a client, run it on a pty, clean up.

Output goes to temporary files, not pipes: a process the client leaves behind
(a shim, conmon, a container) could hold a pipe open and make a read hang.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import time
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
# containerd 1.6 puts shim sockets here whatever --state says
SHIM_SOCKET_DIR = "/run/containerd/s"


def run(cmd: list[str], *, timeout: float = 60, input: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run cmd; stdout and stderr as text. Stdin is /dev/null unless input is given."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        r = subprocess.run(cmd, stdout=out, stderr=err, timeout=timeout, env=env,
                           input=input.encode() if input is not None else None,
                           stdin=subprocess.DEVNULL if input is None else None)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, r.returncode,
                                           out.read().decode(errors="replace"),
                                           err.read().decode(errors="replace"))


def run_pty(cmd: list[str], *, timeout: float = 60, env: dict[str, str] | None = None,
            rows: int = 24, cols: int = 80) -> tuple[int, str]:
    """Run cmd with a new pty (rows x cols) as its stdin, stdout and stderr.

    Returns the exit status and everything written to the terminal.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    try:
        p = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env,
                             start_new_session=True)
    finally:
        os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                p.kill()
                p.wait()
                raise AssertionError(f"{cmd} timed out; output so far: {bytes(out)!r}")
            done = p.poll() is not None
            r, _, _ = select.select([master], [], [], 0.05 if done else 0.2)
            if r:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: no slave fd is open any more
                    data = b""
                if data:
                    out += data
                    continue
                if done:
                    break
            elif done:
                break
    finally:
        os.close(master)
    return p.wait(), out.decode(errors="replace")


def wait_for(pred, timeout: float = 10, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def mounts_under(path: str) -> list[str]:
    """Mount points at or below path, deepest first."""
    prefix = path.rstrip("/") + "/"
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(prefix):
                points.append(mp)
    return sorted(points, key=len, reverse=True)


def unmount_under(path: str) -> list[str]:
    """Lazily unmount everything at or below path; returns what was mounted."""
    found = mounts_under(path)
    for mp in found:
        subprocess.run(["umount", "-l", mp], capture_output=True)
    return found


def pids_mentioning(text: str) -> list[int]:
    """Processes whose command line contains text (never this process)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            out.append(int(d))
    return out


def kill_pids(pids: list[int], timeout: float = 5) -> None:
    """SIGTERM, then SIGKILL after timeout, the given processes (ones the tests started)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if wait_for(lambda: not any(alive(p) for p in pids), timeout):
            return


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


def cgroup_dirs(rel: str) -> list[Path]:
    """The directories of cgroup path rel (e.g. "ns/id") in every hierarchy."""
    rel = rel.strip("/")
    return [h / rel for h in CGROUP.iterdir() if (h / rel).is_dir()]


def remove_cgroup_tree(rel: str) -> None:
    """rmdir cgroup path rel and its empty sub-cgroups in every hierarchy."""
    for d in cgroup_dirs(rel):
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(str(p)),
                          reverse=True):
            try:
                sub.rmdir()
            except OSError:
                pass
        try:
            d.rmdir()
        except OSError:
            pass


def stop_process(proc: subprocess.Popen | None) -> None:
    """A daemon the tests started: SIGTERM, then SIGKILL if it is still there after 15 s."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def containerd_leftovers(base: Path, sock: str, had_shim_dir: bool,
                         grace: float) -> list[str]:
    """After a private containerd stopped: what its shims (started with `-address SOCK`;
    they exit once their tasks are deleted) and mounts left, as problems; both are ended
    and everything under base removed, with the shim socket directory if the daemon made
    it."""
    problems = []
    if not wait_for(lambda: not pids_mentioning(sock), grace):
        left = pids_mentioning(sock)
        problems.append(f"processes of the daemon left: {left}")
        kill_pids(left)
    mounts = unmount_under(str(base))
    if mounts:
        problems.append(f"mounts left: {mounts}")
    shutil.rmtree(base, ignore_errors=True)
    if not had_shim_dir:
        for d in (SHIM_SOCKET_DIR, os.path.dirname(SHIM_SOCKET_DIR)):
            try:
                os.rmdir(d)
            except OSError:
                break
    return problems
