"""podman (through conmon) drives yacr, with private storage and state.

Every podman call gets its own --root, --runroot and --tmpdir, the vfs storage
driver, cgroupfs, the file events backend and `--runtime` yacr (an absolute
path), plus a containers.conf in the temp dir (CONTAINERS_CONF) that:
- lists yacr in runtime_supports_json, so conmon passes `--log-format=json`;
- sets the ulimits this machine allows (hard RLIMIT_NOFILE is 20000 and there
  is no CAP_SYS_RESOURCE, so podman's defaults fail under every runtime);
- sets the network to none and a private network config dir (no CNI, no netavark).
The image is the busybox OCI archive from tests/oci_image.py, `podman load`ed.
yacr gets no --root from conmon, so it keeps its state in its default root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from client_util import (
    CGROUP,
    cgroup_dirs,
    kill_pids,
    pids_mentioning,
    run,
    run_pty,
    unmount_under,
    wait_for,
)
from oci_image import build_oci_archive, build_rootfs_tar
from yacr.bundle import build_rootfs
from yacr.cli import DEFAULT_ROOT

REPO = Path(__file__).resolve().parent.parent
YACR = str(REPO / ".venv" / "bin" / "yacr")
IMAGE = "docker.io/library/yacr-busybox:test"

pytestmark = pytest.mark.skipif(
    shutil.which("podman") is None or shutil.which("conmon") is None,
    reason="podman is not installed (need podman and conmon: apt-get install podman)")


class Podman:
    """podman with private storage, state, events and config, and yacr as the runtime."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.conf = base / "containers.conf"
        self.env = dict(os.environ, CONTAINERS_CONF=str(self.conf),
                        TMPDIR=str(base / "tmp"))  # image copies go to TMPDIR (or /var/tmp)
        self.argv = ["podman", "--root", str(base / "root"), "--runroot", str(base / "runroot"),
                     "--tmpdir", str(base / "libpod"), "--storage-driver", "vfs",
                     "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                     "--network-config-dir", str(base / "net"), "--runtime", YACR]

    def setup(self) -> None:
        for d in ("tmp", "net"):
            (self.base / d).mkdir()
        self.conf.write_text("\n".join([
            "[containers]",
            'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]',
            'netns = "none"',
            "[engine]",
            'cgroup_manager = "cgroupfs"',
            'events_logger = "file"',
            'runtime = "yacr"',
            'runtime_supports_json = ["yacr"]',
            "[engine.runtimes]",
            f'yacr = ["{YACR}"]',
            "[network]",
            f'network_config_dir = "{self.base / "net"}"',
            "",
        ]))

    def __call__(self, *args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        return run(self.argv + list(args), timeout=timeout, env=self.env, **kw)

    def cmd(self, *args: str) -> list[str]:
        return self.argv + list(args)

    def teardown(self) -> list[str]:
        problems = []
        self("rm", "--all", "--force", "--time", "0")
        self("rmi", "--all", "--force")
        # conmon gets the container's paths under base on its command line.
        if not wait_for(lambda: not pids_mentioning(str(self.base)), 10):
            left = pids_mentioning(str(self.base))
            problems.append(f"processes left: {left}")
            kill_pids(left)
        mounts = unmount_under(str(self.base))
        if mounts:
            problems.append(f"mounts left: {mounts}")
        shutil.rmtree(self.base, ignore_errors=True)
        return problems


@pytest.fixture(scope="session")
def podman_session():
    base = Path(tempfile.mkdtemp(prefix="yacr-podman-"))
    pm = Podman(base)
    try:
        pm.setup()
        rootfs = build_rootfs(str(base / "rootfs"))
        archive = build_oci_archive(rootfs, str(base / "image.tar"), IMAGE)
        p = pm("load", "--input", archive)
        assert p.returncode == 0, f"podman load failed: {p.stderr}"
        assert IMAGE in p.stdout
        p = pm("images", "--format", "{{.Repository}}:{{.Tag}}")
        assert IMAGE in p.stdout.split(), p.stdout
        yield pm
    finally:
        problems = pm.teardown()
    assert not problems, "; ".join(problems)


class PodmanTest:
    """One test's podman: container names it made, and their cleanup."""

    def __init__(self, pm: Podman) -> None:
        self.pm = pm
        self.names: list[str] = []
        self.ids: list[str] = []

    def new_name(self) -> str:
        name = f"t-{uuid.uuid4().hex[:10]}"
        self.names.append(name)
        return name

    def __call__(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.pm(*args, **kw)

    def inspect(self, name: str) -> dict:
        p = self.pm("container", "inspect", name)
        assert p.returncode == 0, p.stderr
        info = json.loads(p.stdout)[0]
        if info["Id"] not in self.ids:
            self.ids.append(info["Id"])
        return info

    def cleanup(self) -> list[str]:
        problems = []
        for name in self.names:
            self.pm("rm", "--force", "--time", "0", "--ignore", name)
        left = self.pm("ps", "--all", "--format", "{{.Names}}").stdout.split()
        for name in self.names:
            if name in left:
                problems.append(f"container {name} left")
        for cid in self.ids:
            if os.path.exists(os.path.join(DEFAULT_ROOT, cid)):
                problems.append(f"yacr state of {cid} left in {DEFAULT_ROOT}")
            for cg in cgroup_dirs(f"libpod_parent/libpod-{cid}"):
                problems.append(f"cgroup left: {cg}")
        return problems


@pytest.fixture
def podman(podman_session):
    t = PodmanTest(podman_session)
    yield t
    problems = t.cleanup()
    assert not problems, "; ".join(problems)


def yacr_state(cid: str) -> dict | None:
    """The state yacr reports in its default root (conmon passes no --root)."""
    p = run([YACR, "state", cid])
    return json.loads(p.stdout) if p.returncode == 0 else None


def test_run_echo(podman):
    p = podman("run", "--rm", IMAGE, "echo", "hi")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "hi\n"


def test_run_exit_code_and_stderr(podman):
    p = podman("run", "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert p.returncode == 3, p.stderr
    assert p.stdout == "out\n"
    assert p.stderr == "err\n"


def test_run_stdin(podman):
    p = podman("run", "--rm", "-i", IMAGE, "sh", "-c", "read x; echo got $x", input="hello\n")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "got hello\n"


def test_run_sees_the_spec_podman_wrote(podman):
    """Hostname, rlimits from containers.conf, and no network namespace devices but lo."""
    name = podman.new_name()
    p = podman("run", "--name", name, "--hostname", "pmhost", IMAGE, "sh", "-c",
               "hostname; ulimit -n; ulimit -Hn; ls /sys/class/net")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["pmhost", "20000", "20000", "lo"]
    info = podman.inspect(name)
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 0
    assert podman("rm", name).returncode == 0


def test_missing_executable_is_127_and_logged_as_json(podman):
    name = podman.new_name()
    p = podman("run", "--name", name, IMAGE, "/nonexistent")
    assert p.returncode == 127, p.stderr
    # podman names the runtime it used, then the msg of yacr's JSON log line.
    assert p.stderr.startswith(f'Error: {YACR}: exec: "/nonexistent"'), p.stderr
    assert "no such file or directory" in p.stderr
    # conmon asked for --log-format=json (runtime_supports_json); podman reads one object.
    info = podman.inspect(name)
    oci_log = Path(info["ConmonPidFile"]).parent / "oci-log"
    entry = json.loads(oci_log.read_text())
    assert entry["level"] == "error" and "no such file or directory" in entry["msg"]
    assert podman("rm", name).returncode == 0


def test_not_executable_is_126(podman):
    p = podman("run", "--rm", IMAGE, "/etc/passwd")
    assert p.returncode == 126, p.stderr
    assert "permission denied" in p.stderr


def test_detached_exec_stop_rm(podman):
    name = podman.new_name()
    p = podman("run", "-d", "--name", name, IMAGE, "sleep", "1000")
    assert p.returncode == 0, p.stderr
    cid = p.stdout.strip()
    info = podman.inspect(name)
    assert info["Id"] == cid and info["State"]["Status"] == "running"
    st = yacr_state(cid)
    assert st is not None and st["status"] == "running"
    assert st["pid"] == info["State"]["Pid"]

    p = podman("exec", name, "sh", "-c", "echo exec-out; echo exec-err >&2; "
               "cat /proc/1/cmdline | tr '\\0' ' '")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "exec-out\nsleep 1000 "
    assert p.stderr == "exec-err\n"
    assert podman("exec", name, "sh", "-c", "exit 7").returncode == 7
    p = podman("exec", "-i", name, "sh", "-c", "read x; echo got $x", input="there\n")
    assert p.stdout == "got there\n"
    p = podman("exec", name, "/nonexistent")
    assert p.returncode == 127, p.stderr

    p = podman("top", name, "pid", "args")
    assert p.returncode == 0, p.stderr
    assert "sleep 1000" in p.stdout

    # sleep as pid 1 ignores SIGTERM: podman sends `kill ID 15`, then `kill ID 9`.
    p = podman("stop", "--time", "1", name)
    assert p.returncode == 0, p.stderr
    info = podman.inspect(name)
    assert info["State"]["Status"] == "exited"
    assert info["State"]["ExitCode"] == 137
    p = podman("rm", name)
    assert p.returncode == 0, p.stderr
    assert yacr_state(cid) is None
    assert name not in podman("ps", "--all", "--format", "{{.Names}}").stdout.split()


def test_kill_signal_and_wait(podman):
    name = podman.new_name()
    p = podman("run", "-d", "--name", name, IMAGE, "sh", "-c",
               "trap 'echo got-usr1; exit 9' USR1; echo ready; "
               "while :; do sleep 0.1; done")
    assert p.returncode == 0, p.stderr
    assert wait_for(lambda: "ready" in podman("logs", name).stdout, 10)
    p = podman("kill", "--signal", "USR1", name)
    assert p.returncode == 0, p.stderr
    p = podman("wait", name)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "9"
    assert podman("logs", name).stdout == "ready\ngot-usr1\n"
    assert podman("rm", name).returncode == 0


def test_pause_unpause(podman):
    name = podman.new_name()
    p = podman("run", "-d", "--name", name, IMAGE, "sleep", "1000")
    assert p.returncode == 0, p.stderr
    cid = p.stdout.strip()
    assert podman("pause", name).returncode == 0
    assert podman.inspect(name)["State"]["Status"] == "paused"
    assert yacr_state(cid)["status"] == "paused"
    assert podman("unpause", name).returncode == 0
    assert podman.inspect(name)["State"]["Status"] == "running"
    assert podman("exec", name, "true").returncode == 0
    assert podman("rm", "--force", "--time", "0", name).returncode == 0


def test_import_plain_rootfs_tar(podman_session, podman, tmp_path):
    """`podman import` of a plain rootfs tar makes an image yacr can run too."""
    tar = build_rootfs_tar(str(podman_session.base / "rootfs"), str(tmp_path / "rootfs.tar"))
    name = f"localhost/yacr-imported-{uuid.uuid4().hex[:8]}:latest"
    p = podman("import", tar, name)
    assert p.returncode == 0, p.stderr
    try:
        p = podman("run", "--rm", name, "sh", "-c", "echo imported")
        assert p.returncode == 0, p.stderr
        assert p.stdout == "imported\n"
    finally:
        assert podman("rmi", name).returncode == 0


def test_run_tty(podman_session, podman):
    rc, out = run_pty(podman_session.cmd("run", "--rm", "-t", IMAGE, "sh", "-c",
                                         "tty; [ -t 0 ] && echo stdin-is-tty; "
                                         "for i in $(seq 100); do s=$(stty size 2>&1); "
                                         "case $s in [1-9]*' '[1-9]*) break;; esac; "
                                         "sleep 0.05; done; "
                                         "echo size $s; exit 4"),
                      env=podman_session.env, rows=33, cols=77)
    assert rc == 4, out
    lines = out.replace("\r", "").splitlines()
    assert lines[0] == "/dev/pts/0"
    assert "stdin-is-tty" in lines
    assert "size 33 77" in lines  # conmon copied our window size onto yacr's console


def test_exec_tty(podman_session, podman):
    name = podman.new_name()
    p = podman("run", "-d", "--name", name, IMAGE, "sleep", "1000")
    assert p.returncode == 0, p.stderr
    rc, out = run_pty(podman_session.cmd("exec", "-t", name, "sh", "-c",
                                         "tty; [ -t 1 ] && echo out-is-tty; exit 6"),
                      env=podman_session.env)
    assert rc == 6, out
    lines = out.replace("\r", "").splitlines()
    assert lines[0].startswith("/dev/pts/")
    assert "out-is-tty" in lines
    assert podman("rm", "--force", "--time", "0", name).returncode == 0


def _cgroup_file(cid: str, ctrl: str, name: str) -> str:
    """A file of the container's cgroup as podman's cgroupfs manager places it."""
    return (CGROUP / ctrl / "libpod_parent" / f"libpod-{cid}" / name).read_text().strip()


def test_stats_no_stream(podman):
    """podman reads the cgroup yacr made and limited: usage, limit and pids show up."""
    name = podman.new_name()
    p = podman("run", "-d", "--name", name, "--memory", "96m", "--pids-limit", "50", IMAGE,
               "sh", "-c", "head -c 30000000 /dev/zero > /dev/shm/x; sleep 1000")
    assert p.returncode == 0, p.stderr
    cid = p.stdout.strip()
    assert _cgroup_file(cid, "memory", "memory.limit_in_bytes") == str(96 << 20)
    assert _cgroup_file(cid, "pids", "pids.max") == "50"

    def stats() -> dict:
        out = podman("stats", "--no-stream", "--format", "json", name)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)[0]

    assert wait_for(lambda: stats()["mem_usage"].startswith(("2", "3")), 10), stats()
    s = stats()
    assert s["name"] == name and s["mem_usage"].endswith("/ 100.7MB")  # 96 MiB
    assert int(s["pids"]) >= 1
    assert podman("rm", "--force", "--time", "0", name).returncode == 0


def test_update_changes_the_limits(podman):
    """podman update calls `yacr update --resources=FILE ID`."""
    name = podman.new_name()
    p = podman("run", "-d", "--name", name, "--memory", "64m", "--cpu-shares", "512", IMAGE,
               "sleep", "1000")
    assert p.returncode == 0, p.stderr
    cid = p.stdout.strip()
    assert _cgroup_file(cid, "cpu", "cpu.shares") == "512"
    p = podman("update", "--memory", "128m", "--memory-swap", "256m", "--cpu-shares", "300",
               "--cpu-quota", "20000", "--cpu-period", "100000", name)
    assert p.returncode == 0, p.stderr
    assert _cgroup_file(cid, "memory", "memory.limit_in_bytes") == str(128 << 20)
    assert _cgroup_file(cid, "memory", "memory.memsw.limit_in_bytes") == str(256 << 20)
    assert _cgroup_file(cid, "cpu", "cpu.shares") == "300"
    assert _cgroup_file(cid, "cpu", "cpu.cfs_quota_us") == "20000"
    assert podman("exec", name, "true").returncode == 0
    assert podman("rm", "--force", "--time", "0", name).returncode == 0


def test_top_and_pause_progress(podman):
    name = podman.new_name()
    p = podman("run", "-d", "--name", name, IMAGE, "sh", "-c",
               "sleep 1000 & sleep 1000 & wait")
    assert p.returncode == 0, p.stderr
    cid = p.stdout.strip()

    def sleepers() -> int:
        out = podman("top", name, "pid", "args").stdout.splitlines()[1:]
        return sum(1 for line in out if line.split(None, 1)[1].strip() == "sleep 1000")

    assert wait_for(lambda: sleepers() == 2, 10)
    assert podman("pause", name).returncode == 0
    assert _cgroup_file(cid, "freezer", "freezer.state") == "FROZEN"
    assert yacr_state(cid)["status"] == "paused"
    assert podman("unpause", name).returncode == 0
    assert _cgroup_file(cid, "freezer", "freezer.state") == "THAWED"
    assert podman("rm", "--force", "--time", "0", name).returncode == 0
