"""containerd drives yacr: `ctr` against a private containerd, with yacr as the runc binary.

The session starts its own containerd (--config in a temp dir: its own root,
state, gRPC and ttrpc sockets; CRI and the snapshotters that are not needed are
off), imports a one-layer busybox OCI archive built by tests/oci_image.py, and
runs every container through the runc.v2 shim with `--runc-binary` yacr and a
private `--runc-root` and `--fifo-dir`. At teardown it stops the daemon by pid
and removes its mounts, cgroups and directories.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from client_util import (
    SHIM_SOCKET_DIR,
    cgroup_dirs,
    containerd_leftovers,
    mounts_under,
    remove_cgroup_tree,
    run,
    run_pty,
    stop_process,
    wait_for,
)
from oci_image import build_oci_archive
from yacr.bundle import build_rootfs

REPO = Path(__file__).resolve().parent.parent
YACR = str(REPO / ".venv" / "bin" / "yacr")
IMAGE = "docker.io/library/yacr-busybox:test"
BINARIES = ("containerd", "ctr", "containerd-shim-runc-v2")

pytestmark = pytest.mark.skipif(
    any(shutil.which(b) is None for b in BINARIES),
    reason="containerd is not installed (need containerd, ctr and containerd-shim-runc-v2: "
           "apt-get install containerd)")

# Plugins a private daemon does not need; CRI would also want CNI and /var/lib.
DISABLED = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt",
            "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
            "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
            "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]


class Containerd:
    """A private containerd daemon and the paths `ctr run` needs to stay inside base."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.sock = str(base / "sock")
        self.ns = f"yacr-{uuid.uuid4().hex[:8]}"
        self.runc_root = base / "runc-root"
        self.fifo_dir = base / "fifo"
        self.proc: subprocess.Popen | None = None
        self.had_shim_dir = os.path.exists(SHIM_SOCKET_DIR)
        self.logf = None

    def write_config(self) -> str:
        b = self.base
        text = "\n".join([
            "version = 2",
            f'root = "{b / "root"}"',
            f'state = "{b / "state"}"',
            "disabled_plugins = [" + ", ".join(f'"{p}"' for p in DISABLED) + "]",
            "[grpc]",
            f'  address = "{self.sock}"',
            "[ttrpc]",
            f'  address = "{self.sock}.ttrpc"',
            "[debug]",
            '  address = ""',
            "[metrics]",
            '  address = ""',
            "",
        ])
        path = b / "config.toml"
        path.write_text(text)
        return str(path)

    def start(self) -> None:
        for d in (self.runc_root, self.fifo_dir):
            d.mkdir(parents=True)
        config = self.write_config()
        self.logf = open(self.base / "containerd.log", "wb")
        self.proc = subprocess.Popen(["containerd", "--config", config], stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        ok = wait_for(lambda: self.proc.poll() is not None or
                      (os.path.exists(self.sock) and self.ctr("version").returncode == 0), 30)
        if not ok or self.proc.poll() is not None:
            raise AssertionError(f"containerd did not start: {self.log()[-3000:]}")

    def log(self) -> str:
        try:
            return (self.base / "containerd.log").read_text(errors="replace")
        except OSError:
            return ""

    def ctr(self, *args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        return run(["ctr", "-a", self.sock, "-n", self.ns, *args], timeout=timeout, **kw)

    def ctr_cmd(self, *args: str) -> list[str]:
        return ["ctr", "-a", self.sock, "-n", self.ns, *args]

    def run_args(self) -> list[str]:
        """`ctr run` with yacr as the runtime binary and private runtime root and fifo dir."""
        return ["run", "--runc-binary", YACR, "--runc-root", str(self.runc_root),
                "--fifo-dir", str(self.fifo_dir)]

    def stop(self) -> list[str]:
        """Stop the daemon (by pid), then remove what it and its shims left."""
        problems = []
        stop_process(self.proc)
        if self.logf is not None:
            self.logf.close()
        # "copy shim log ... file already closed" is a benign race on shim exit
        # (containerd/containerd#5130).
        errors = [line for line in self.log().splitlines()
                  if "level=error" in line and "copy shim log" not in line]
        if errors:
            problems.append("containerd logged errors:\n" + "\n".join(errors))
        problems += containerd_leftovers(self.base, self.sock, self.had_shim_dir, 5)
        remove_cgroup_tree(self.ns)  # once the shims, and their tasks, are gone
        return problems


@pytest.fixture(scope="session")
def containerd():
    base = Path(tempfile.mkdtemp(prefix="yacr-ctrd-"))
    d = Containerd(base)
    try:
        d.start()
        rootfs = build_rootfs(str(base / "rootfs"))
        archive = build_oci_archive(rootfs, str(base / "image.tar"), IMAGE)
        p = d.ctr("image", "import", archive)
        assert p.returncode == 0, f"ctr image import failed: {p.stderr}"
        assert IMAGE in d.ctr("image", "ls", "-q").stdout.split()
        yield d
        p = d.ctr("image", "rm", IMAGE)
        assert p.returncode == 0, p.stderr
    finally:
        problems = d.stop()
    assert not problems, "; ".join(problems)


class Ctr:
    """One test's view of the daemon: new container ids, and cleanup of them."""

    def __init__(self, d: Containerd) -> None:
        self.d = d
        self.ids: list[str] = []

    def new_id(self) -> str:
        cid = f"t-{uuid.uuid4().hex[:10]}"
        self.ids.append(cid)
        return cid

    def __call__(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.d.ctr(*args, **kw)

    def run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        """`ctr run [args]` with yacr: args are run flags, then IMAGE ID CMD..."""
        return self.d.ctr(*self.d.run_args(), *args, **kw)

    def task_status(self, cid: str) -> tuple[int, str] | None:
        """(pid, STATUS) from `ctr task ls`, or None if there is no task."""
        p = self.d.ctr("task", "ls")
        assert p.returncode == 0, p.stderr
        for line in p.stdout.splitlines()[1:]:
            f = line.split()
            if f and f[0] == cid:
                return int(f[1]), f[2]
        return None

    def wait_status(self, cid: str, status: str, timeout: float = 10) -> None:
        assert wait_for(lambda: (self.task_status(cid) or (0, ""))[1] == status, timeout), \
            f"task {cid} is {self.task_status(cid)}, not {status}"

    def yacr_state(self, cid: str) -> dict | None:
        """The state yacr itself reports under the shim's --root (runc-root/namespace)."""
        p = run([YACR, "--root", str(self.d.runc_root / self.d.ns), "state", cid])
        return json.loads(p.stdout) if p.returncode == 0 else None

    def cleanup(self) -> list[str]:
        problems = []
        for cid in self.ids:
            if self.task_status(cid) is not None:
                self.d.ctr("task", "kill", "-a", "-s", "SIGKILL", cid)
                wait_for(lambda c=cid: (self.task_status(c) or (0, "STOPPED"))[1] == "STOPPED",
                         10)
                self.d.ctr("task", "delete", "-f", cid)
            self.d.ctr("container", "delete", cid)
        containers = self.d.ctr("container", "ls", "-q").stdout.split()
        for cid in self.ids:
            if cid in containers:
                problems.append(f"container {cid} left")
            if (self.d.runc_root / self.d.ns / cid).exists():
                problems.append(f"yacr state of {cid} left")
            for cg in cgroup_dirs(f"{self.d.ns}/{cid}"):
                problems.append(f"cgroup left: {cg}")
                remove_cgroup_tree(f"{self.d.ns}/{cid}")
            mounts = mounts_under(str(self.d.base / "state"))
            if any(cid in m for m in mounts):
                problems.append(f"mounts of {cid} left: {mounts}")
        return problems


@pytest.fixture
def ctr(containerd):
    c = Ctr(containerd)
    yield c
    problems = c.cleanup()
    assert not problems, "; ".join(problems)


def test_run_echo(ctr):
    cid = ctr.new_id()
    p = ctr.run("--rm", IMAGE, cid, "echo", "hi")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "hi\n"
    assert cid not in ctr("container", "ls", "-q").stdout.split()


def test_run_exit_code_and_stderr(ctr):
    p = ctr.run("--rm", IMAGE, ctr.new_id(), "sh", "-c", "echo out; echo err >&2; exit 3")
    assert p.returncode == 3
    assert p.stdout == "out\n"
    assert "err\n" in p.stderr


def test_run_stdin(ctr):
    p = ctr.run("--rm", IMAGE, ctr.new_id(), "sh", "-c", "read x; echo got $x",
                input="hello\n")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "got hello\n"


def test_run_missing_binary_reports_the_runtime_error(ctr):
    p = ctr.run("--rm", IMAGE, ctr.new_id(), "/nonexistent")
    assert p.returncode != 0
    assert "no such file or directory" in p.stderr, p.stderr


def test_detached_exec_kill_delete(ctr):
    cid = ctr.new_id()
    p = ctr.run("-d", "--null-io", IMAGE, cid, "sh", "-c",
                "trap 'exit 0' TERM; while :; do sleep 0.1; done")
    assert p.returncode == 0, p.stderr
    ctr.wait_status(cid, "RUNNING")
    pid, _ = ctr.task_status(cid)
    st = ctr.yacr_state(cid)
    assert st is not None and st["status"] == "running" and st["pid"] == pid

    p = ctr("task", "exec", "--fifo-dir", str(ctr.d.fifo_dir), "--exec-id", "e1", cid,
            "sh", "-c", "echo exec-out; echo exec-err >&2; cat /proc/1/cmdline | tr '\\0' ' '")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("exec-out\nsh -c trap")
    assert "exec-err" in p.stderr
    p = ctr("task", "exec", "--fifo-dir", str(ctr.d.fifo_dir), "--exec-id", "e2", cid,
            "sh", "-c", "exit 5")
    assert p.returncode == 5

    p = ctr("task", "kill", cid)  # SIGTERM; the trap exits 0
    assert p.returncode == 0, p.stderr
    ctr.wait_status(cid, "STOPPED")
    assert ctr.yacr_state(cid)["status"] == "stopped"
    p = ctr("task", "delete", cid)
    assert p.returncode == 0, p.stderr
    assert ctr.task_status(cid) is None
    assert ctr.yacr_state(cid) is None
    p = ctr("container", "delete", cid)
    assert p.returncode == 0, p.stderr
    assert cid not in ctr("container", "ls", "-q").stdout.split()


def test_task_ps_lists_the_pids(ctr):
    cid = ctr.new_id()
    p = ctr.run("-d", "--null-io", IMAGE, cid, "sh", "-c", "sleep 1000 & sleep 1000 & wait")
    assert p.returncode == 0, p.stderr
    ctr.wait_status(cid, "RUNNING")
    init, _ = ctr.task_status(cid)

    def pids() -> list[int]:
        out = ctr("task", "ps", cid)
        assert out.returncode == 0, out.stderr
        return sorted(int(line.split()[0]) for line in out.stdout.splitlines()[1:])

    assert wait_for(lambda: len(pids()) == 3, 10), pids()
    got = pids()
    assert init in got
    for pid in got:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[0] in (b"sh", b"sleep")

    p = ctr("task", "kill", "-a", "-s", "SIGKILL", cid)
    assert p.returncode == 0, p.stderr
    ctr.wait_status(cid, "STOPPED")
    p = ctr("task", "delete", cid)
    assert p.returncode == 0, p.stderr
    assert "exit code 137" in p.stderr  # 128 + SIGKILL, reported by the shim
    assert ctr("container", "delete", cid).returncode == 0


def test_pause_resume(ctr):
    cid = ctr.new_id()
    p = ctr.run("-d", "--null-io", IMAGE, cid, "sleep", "1000")
    assert p.returncode == 0, p.stderr
    ctr.wait_status(cid, "RUNNING")
    assert ctr("task", "pause", cid).returncode == 0
    ctr.wait_status(cid, "PAUSED")
    assert ctr.yacr_state(cid)["status"] == "paused"
    assert ctr("task", "resume", cid).returncode == 0
    ctr.wait_status(cid, "RUNNING")
    assert ctr("task", "kill", "-s", "SIGKILL", cid).returncode == 0
    ctr.wait_status(cid, "STOPPED")
    assert ctr("task", "delete", cid).returncode == 0
    assert ctr("container", "delete", cid).returncode == 0


def test_run_tty(containerd, ctr):
    cid = ctr.new_id()
    rc, out = run_pty(containerd.ctr_cmd(*containerd.run_args(), "--rm", "-t", IMAGE, cid,
                                         "sh", "-c", "tty; [ -t 0 ] && echo stdin-is-tty; "
                                         # ctr resizes the console just after start
                                         "for i in $(seq 100); do s=$(stty size 2>&1); "
                                         "case $s in [1-9]*' '[1-9]*) break;; esac; "
                                         "sleep 0.05; done; "
                                         "echo size $s; exit 4"), timeout=60, rows=33, cols=77)
    assert rc == 4, out
    lines = out.replace("\r", "").splitlines()
    assert lines[0] == "/dev/pts/0"  # the container's own devpts, set up by yacr
    assert "stdin-is-tty" in lines
    assert "size 33 77" in lines  # ctr copied our window size onto yacr's console


def test_exec_tty_in_a_detached_container(containerd, ctr):
    cid = ctr.new_id()
    p = ctr.run("-d", "--null-io", IMAGE, cid, "sleep", "1000")
    assert p.returncode == 0, p.stderr
    ctr.wait_status(cid, "RUNNING")
    rc, out = run_pty(containerd.ctr_cmd("task", "exec", "-t", "--fifo-dir",
                                         str(containerd.fifo_dir), "--exec-id", "tty1", cid,
                                         "sh", "-c", "tty; [ -t 1 ] && echo out-is-tty; exit 6"),
                      timeout=60)
    assert rc == 6, out
    assert "/dev/pts/" in out
    assert "out-is-tty" in out
    assert ctr("task", "kill", "-s", "SIGKILL", cid).returncode == 0
    ctr.wait_status(cid, "STOPPED")
    assert ctr("task", "delete", cid).returncode == 0
    assert ctr("container", "delete", cid).returncode == 0


def test_limits_metrics_and_pause_stops_progress(ctr):
    """ctr's resource flags reach the cgroup through yacr; the shim reads metrics from it;
    a paused task makes no progress."""
    cid = ctr.new_id()
    p = ctr.run("-d", "--null-io", "--memory-limit", str(96 << 20), "--cpu-shares", "512",
                "--cpu-quota", "50000", "--cpu-period", "100000", IMAGE, cid, "sh", "-c",
                "head -c 30000000 /dev/zero > /dev/shm/x; i=0; "
                "while :; do i=$((i+1)); echo $i > /dev/shm/n; done")
    assert p.returncode == 0, p.stderr
    ctr.wait_status(cid, "RUNNING")
    cg = [d for d in cgroup_dirs(f"{ctr.d.ns}/{cid}")]
    by_ctrl = {d.parent.parent.name: d for d in cg}
    assert (by_ctrl["memory"] / "memory.limit_in_bytes").read_text().strip() == str(96 << 20)
    assert (by_ctrl["cpu"] / "cpu.shares").read_text().strip() == "512"
    assert (by_ctrl["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "50000"

    def metrics() -> dict:
        out = ctr("task", "metrics", "--format", "json", cid)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    assert wait_for(lambda: metrics()["memory"]["usage"]["usage"] > 25 << 20, 10), metrics()
    assert metrics()["memory"]["usage"]["limit"] == 96 << 20
    assert metrics()["pids"]["current"] >= 1

    pid, _ = ctr.task_status(cid)
    counter = Path(f"/proc/{pid}/root/dev/shm/n")  # the container's tmpfs, seen from here

    def progress() -> str:
        for _ in range(100):
            text = counter.read_text().strip()
            if text:  # not caught between truncate and write
                return text
            time.sleep(0.01)
        raise AssertionError("no counter")

    assert ctr("task", "pause", cid).returncode == 0
    ctr.wait_status(cid, "PAUSED")
    assert (by_ctrl["freezer"] / "freezer.state").read_text().strip() == "FROZEN"
    frozen_at = counter.read_text()
    time.sleep(0.5)
    assert counter.read_text() == frozen_at
    assert ctr("task", "resume", cid).returncode == 0
    ctr.wait_status(cid, "RUNNING")
    a = progress()
    assert wait_for(lambda: progress() != a, 10)
    assert ctr("task", "kill", "-s", "SIGKILL", cid).returncode == 0
    ctr.wait_status(cid, "STOPPED")
    assert ctr("task", "delete", cid).returncode == 0
    assert ctr("container", "delete", cid).returncode == 0
    assert not cgroup_dirs(f"{ctr.d.ns}/{cid}")
