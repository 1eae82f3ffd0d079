"""Terminals over --console-socket, and `yacr exec` with its flags."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

from conftest import CGROUP


class ConsoleReceiver:
    """The caller's side of --console-socket: accepts one connection, keeps the pty master."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.master: int | None = None
        self.payload = b""
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
            self.payload = msg
            self.master = fds[0]

    def wait(self, timeout: float = 10) -> int:
        self.thread.join(timeout)
        assert self.master is not None, "no pty master received"
        return self.master

    def read_until_eof(self, timeout: float = 10) -> str:
        master = self.wait()
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO once the slave side is closed everywhere
                break
            if not chunk:
                break
            out += chunk
        return out.decode(errors="replace")

    def close(self) -> None:
        if self.master is not None:
            os.close(self.master)
        self.sock.close()


def test_console_socket_with_create_start(runtime, bundles, tmp_path):
    rx = ConsoleReceiver(str(tmp_path / "console.sock"))
    spec = bundles.spec(["sh", "-c", "tty; stty size; echo term=$TERM; ls -l /dev/console"],
                        terminal=True)
    spec["process"]["consoleSize"] = {"height": 40, "width": 100}
    cid = runtime.new_id()
    runtime("create", "--bundle", bundles.write(spec), "--console-socket", rx.path, cid,
            check=True)
    rx.wait()
    assert rx.payload  # a non-empty payload travels with the fd
    runtime("start", cid, check=True)
    out = rx.read_until_eof()
    rx.close()
    lines = [ln.strip() for ln in out.splitlines()]
    assert lines[0].startswith("/dev/pts/"), out
    assert lines[1] == "40 100"
    assert lines[2] == "term=xterm"
    assert lines[3].startswith("c")  # /dev/console is the pty, a character device


def test_terminal_needs_console_socket_when_detached(runtime, bundles):
    p = runtime("create", "--bundle", bundles.make(["true"], terminal=True), runtime.new_id())
    assert p.returncode == 1 and "console-socket" in p.stderr
    assert runtime.containers_left() == []


def test_run_with_terminal_relays_the_pty(runtime, bundles):
    spec = bundles.spec(["sh", "-c", "tty; exit 4"], terminal=True)
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 4
    assert "/dev/pts/" in p.stdout


def _running_container(runtime, bundles, **kw) -> str:
    cid = runtime.new_id()
    spec = bundles.spec(["sleep", "1000"])
    spec["process"]["env"].append("BASE=1")
    spec.update(kw)
    runtime("run", "-d", "--bundle", bundles.write(spec), cid, check=True)
    runtime.state(cid)
    return cid


def test_exec_joins_namespaces_and_cgroup(runtime, bundles):
    cid = _running_container(runtime, bundles)
    pid = runtime.state(cid)["pid"]
    p = runtime("exec", cid, "sh", "-c", "echo $$; for n in pid net ipc uts mnt cgroup; "
                "do readlink /proc/self/ns/$n; done; cat /proc/self/cgroup")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] != "1"
    for i, n in enumerate(("pid", "net", "ipc", "uts", "mnt", "cgroup"), start=1):
        assert lines[i] == os.readlink(f"/proc/{pid}/ns/{n}"), n
    assert all(ln.endswith(":/") for ln in lines[7:])


def test_exec_flags(runtime, bundles):
    cid = _running_container(runtime, bundles)
    p = runtime("exec", "--user", "1000:100", "--cwd", "/tmp", "-e", "FOO=bar", "--env",
                "BASE=2", cid, "sh", "-c", "id -u; id -g; pwd; echo $FOO $BASE")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["1000", "100", "/tmp", "bar", "2"]
    p = runtime("exec", "--user", "1", cid, "id", "-u")
    assert p.stdout.strip() == "1"
    assert runtime("exec", cid, "sh", "-c", "exit 7").returncode == 7


def test_exec_cap_only_bounding_effective_permitted(runtime, bundles):
    """CVE-2022-29162: exec --cap must not fill the inheritable or ambient sets."""
    cid = _running_container(runtime, bundles)
    p = runtime("exec", "--cap", "CAP_SYS_ADMIN", cid, "grep", "Cap", "/proc/self/status")
    caps = {ln.split(":")[0]: int(ln.split()[1], 16) for ln in p.stdout.splitlines()}
    sys_admin = 1 << 21
    assert caps["CapBnd"] & sys_admin
    assert caps["CapEff"] & sys_admin
    assert caps["CapPrm"] & sys_admin
    assert caps["CapInh"] == 0
    assert caps["CapAmb"] == 0


def test_exec_process_file_and_detach(runtime, bundles, tmp_path):
    cid = _running_container(runtime, bundles)
    proc = {"args": ["sh", "-c", "echo $X > /dev/shm/out; sleep 1000"], "cwd": "/",
            "env": ["X=from-process-file", "PATH=/bin"], "user": {"uid": 0, "gid": 0}}
    pf = tmp_path / "process.json"
    pf.write_text(json.dumps(proc))
    pidfile = tmp_path / "exec.pid"
    p = runtime("exec", "--process", str(pf), "--detach", "--pid-file", str(pidfile), cid)
    assert p.returncode == 0, p.stderr
    raw = pidfile.read_bytes()
    assert raw.isdigit()
    epid = int(raw)
    runtime.pids.add(epid)
    with open(f"/proc/{epid}/cmdline", "rb") as f:
        # busybox sh execs its last command in place
        assert f.read().split(b"\0")[0] in (b"sh", b"sleep")
    time.sleep(0.2)
    out = runtime("exec", cid, "cat", "/dev/shm/out").stdout
    assert out.strip() == "from-process-file"
    procs = json.loads(runtime("ps", "--format", "json", cid, check=True).stdout)
    assert epid in procs


def test_exec_tty_over_console_socket(runtime, bundles, tmp_path):
    cid = _running_container(runtime, bundles)
    rx = ConsoleReceiver(str(tmp_path / "c.sock"))
    proc = {"args": ["sh", "-c", "tty; exit 0"], "cwd": "/", "terminal": True,
            "env": ["PATH=/bin"]}
    pf = tmp_path / "process.json"
    pf.write_text(json.dumps(proc))
    p = runtime("exec", "--process", str(pf), "--detach", "--console-socket", rx.path, cid)
    assert p.returncode == 0, p.stderr
    out = rx.read_until_eof()
    rx.close()
    assert "/dev/pts/" in out


def test_exec_missing_program(runtime, bundles):
    cid = _running_container(runtime, bundles)
    p = runtime("exec", cid, "nope")
    assert p.returncode != 0
    assert "executable file not found" in p.stderr


def test_exec_does_not_leak_runtime_fds(runtime, bundles):
    cid = _running_container(runtime, bundles)
    out = runtime("exec", cid, "ls", "/proc/self/fd").stdout.split()
    assert sorted(int(x) for x in out) == [0, 1, 2, 3]


# --- exec's own failures, and its debug lines ----------------------------------------------

def _container_pids(cid: str) -> list[str]:
    return (CGROUP / "pids" / "yacr" / cid / "cgroup.procs").read_text().split()


def test_exec_exits_255_for_its_own_failures(runtime, bundles, tmp_path):
    """A caller tells exec's own failures (255, as runc) from the process's status, which
    passes through unchanged; each failure is one line and starts nothing in the
    container. A pid file that cannot be written after the process started (its path is
    a directory) takes the process down with the exec."""
    cid = _running_container(runtime, bundles)
    assert runtime("exec", cid, "false").returncode == 1
    assert runtime("exec", cid, "sh", "-c", "exit 42").returncode == 42
    only_init = _container_pids(cid)
    for args, msg in (
            (["--pid-file", str(tmp_path / "no" / "dir" / "pid"), cid, "true"], "--pid-file"),
            (["-d", "--pid-file", str(tmp_path), cid, "sleep", "100"], "--pid-file"),
            ([cid, "no-such-binary"], "no-such-binary"),
            (["no-such-container", "true"], "does not exist"),
            ([cid], "missing the command"),
            (["--process", str(tmp_path / "none.json"), cid], "--process"),
            (["--cgroup", "..", cid, "true"], "is not a sub cgroup path")):
        p = runtime("exec", *args)
        assert p.returncode == 255, (args, p.returncode, p.stderr)
        assert msg in p.stderr and len(p.stderr.splitlines()) == 1, (args, p.stderr)
        assert _container_pids(cid) == only_init, args
    runtime("pause", cid, check=True)
    p = runtime("exec", cid, "true", timeout=20)
    assert p.returncode == 255 and "paused" in p.stderr, p.stderr
    runtime("resume", cid, check=True)
    assert runtime("exec", cid, "true").returncode == 0


EXEC_STEPS = ("nsexec container setup", "child process in init()", "setns_init: about to exec")


def _steps_in_order(text: str) -> bool:
    at = [text.find(s) for s in EXEC_STEPS]
    return -1 not in at and at == sorted(at)


def test_exec_debug_lines_on_stderr_or_in_the_log(runtime, bundles, tmp_path):
    """--debug logs exec's steps under runc's step names (runc's exec.bats greps for them):
    in the runtime before it forks, in the child as it starts, and in the child right
    before execve, from inside the container's mount namespace (the log file is held open
    across the fork); with --log they go there and not to stderr."""
    cid = _running_container(runtime, bundles)
    p = runtime("--debug", "exec", cid, "true")
    assert p.returncode == 0, p.stderr
    assert "level=debug" in p.stderr and _steps_in_order(p.stderr), p.stderr
    log = tmp_path / "exec.log"
    p = runtime("--debug", "exec", cid, "true", log=str(log))
    assert p.returncode == 0 and "level=debug" not in p.stderr, p.stderr
    assert _steps_in_order(log.read_text()), log.read_text()
    jlog = tmp_path / "exec.json"
    p = runtime("--debug", "exec", cid, "true", log=str(jlog), log_format="json")
    records = [json.loads(line) for line in jlog.read_text().splitlines()]
    steps = [r["msg"] for r in records if r["level"] == "debug"]
    assert _steps_in_order("\n".join(steps)), steps
    # no debug line without --debug
    quiet = tmp_path / "quiet.log"
    p = runtime("exec", cid, "true", log=str(quiet))
    assert "level=debug" not in p.stderr
    assert not quiet.exists() or "level=debug" not in quiet.read_text()


def test_exec_debug_lines_stay_out_of_the_terminal(runtime, bundles, tmp_path):
    """With a terminal, the child's stdio becomes the pty before its last debug line: that
    line still goes to the runtime's stderr, never into the container's terminal."""
    cid = _running_container(runtime, bundles)
    rx = ConsoleReceiver(str(tmp_path / "c.sock"))
    p = runtime("--debug", "exec", "-t", "-d", "--console-socket", rx.path, cid,
                "sh", "-c", "echo hello from the pty")
    assert p.returncode == 0, p.stderr
    out = rx.read_until_eof()
    rx.close()
    assert "hello from the pty" in out
    assert "level=debug" not in out, out
    assert _steps_in_order(p.stderr), p.stderr
