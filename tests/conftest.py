"""Shared fixtures: the real yacr CLI, a busybox rootfs, bundles, and leak checks.

Every test gets its own --root and unique container ids. At teardown the
runtime fixture force-deletes whatever the test left and then fails the test
if a state directory, cgroup, mount or container process survived.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from yacr.bundle import build_rootfs, busybox_spec  # noqa: E402

YACR = str(REPO / ".venv" / "bin" / "yacr")
# the Python side of the launcher, for tests that run it under their own interpreter flags
YACR_SCRIPT = str(REPO / ".venv" / "share" / "yacr" / "yacr.pyc")
BUILD = REPO / "build"
CGROUP = Path("/sys/fs/cgroup")


def importtime(args: list[str], launcher: list[str]) -> tuple[int, str, str, list[str]]:
    """Run a yacr command under -X importtime: its exit status, stdout, stderr, and every
    module in the order its import completed (files, not pipes: a created container's
    init keeps the runtime's stdio open)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run([sys.executable, "-IS", "-X", "importtime", *launcher, *args],
                           stdout=out, stderr=err, timeout=60)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    mods = [ln.rsplit("|", 1)[1].strip() for ln in stderr.splitlines()
            if ln.startswith("import time:") and "|" in ln]
    return p.returncode, stdout, stderr, mods


@pytest.fixture(scope="session", autouse=True)
def fresh_boot_bundle() -> None:
    """Rebuild the launcher's start-up bundle and script: edited sources would make them
    stale (and unused, so every start slower than it should be)."""
    bundle = REPO / ".venv" / "share" / "yacr" / "boot.bundle"
    if bundle.parent.is_dir():
        subprocess.run([sys.executable, "-m", "yacr.boot", str(bundle), str(REPO / "src"),
                        YACR_SCRIPT], check=True, capture_output=True)


@pytest.fixture(scope="session")
def rootfs() -> str:
    """A shared read-only busybox rootfs (containers get root.readonly)."""
    return build_rootfs(str(BUILD / "test-rootfs"))


def cgroup_dirs(cid: str) -> list[Path]:
    """Every cgroup directory of a container id under the default parent, any hierarchy."""
    out = []
    for h in CGROUP.iterdir():
        p = h / "yacr" / cid
        if p.exists():
            out.append(p)
    return out


def mounts_mentioning(text: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if text in line]


class Runtime:
    """Runs the real `yacr` binary against a private --root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ids: set[str] = set()
        self.pids: set[int] = set()

    def containers_left(self) -> list[str]:
        """Container state directories under the root; `.seccomp` (compiled seccomp
        programs shared by all containers of the root, see linux.seccomp) is not one."""
        if not self.root.exists():
            return []
        return [n for n in os.listdir(self.root) if n != ".seccomp"]

    def new_id(self, prefix: str = "t") -> str:
        cid = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.ids.add(cid)
        return cid

    def cmd(self, *args: str, log: str | None = None, log_format: str | None = None) -> list[str]:
        c = [YACR, "--root", str(self.root)]
        if log:
            c += ["--log", log]
        if log_format:
            c += ["--log-format", log_format]
        return c + list(args)

    def __call__(self, *args: str, check: bool = False, timeout: float = 60,
                 input: str | None = None, log: str | None = None,
                 log_format: str | None = None, **kw: object) -> subprocess.CompletedProcess:
        # Files, not pipes: a created container's init holds the runtime's stdio open,
        # so reading a pipe to EOF would wait for the container.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            r = subprocess.run(self.cmd(*args, log=log, log_format=log_format), stdout=out,
                               stderr=err, timeout=timeout,
                               input=input.encode() if input is not None else None, **kw)  # type: ignore[call-overload]
            out.seek(0)
            err.seek(0)
            p = subprocess.CompletedProcess(r.args, r.returncode,
                                            out.read().decode(errors="replace"),
                                            err.read().decode(errors="replace"))
        if check and p.returncode != 0:
            raise AssertionError(f"yacr {' '.join(args)} failed ({p.returncode}): {p.stderr}")
        return p

    def state(self, cid: str) -> dict:
        p = self("state", cid, check=True)
        st = json.loads(p.stdout)
        if st.get("pid"):
            self.pids.add(st["pid"])
        return st

    def cleanup(self) -> list[str]:
        problems = []
        if self.root.exists():
            for name in self.containers_left():
                # through cmd(): a subclass's way of running yacr (a private mount
                # namespace with another cgroup layout) is also how its containers go
                subprocess.run(self.cmd("delete", "--force", name), capture_output=True,
                               timeout=60)
            left = self.containers_left()
            if left:
                problems.append(f"state left after delete --force: {left}")
        for cid in self.ids:
            for d in cgroup_dirs(cid):
                problems.append(f"cgroup left: {d}")
                _remove_cgroup(d)
        deadline = time.monotonic() + 5
        for pid in self.pids:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _alive(pid):
                problems.append(f"container process {pid} still alive")
        return problems


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


def _remove_cgroup(d: Path) -> None:
    for sub in sorted(d.rglob("*"), reverse=True):
        if sub.is_dir():
            try:
                sub.rmdir()
            except OSError:
                pass
    try:
        d.rmdir()
    except OSError:
        pass


@pytest.fixture
def runtime(tmp_path: Path):
    yield from checked(Runtime(tmp_path / "root"))


def checked(rt: Runtime) -> Iterator[Runtime]:
    """A fixture's body for a runtime of any kind: hands it to the test, then removes what
    the test's containers left and fails the test if there was anything to remove."""
    yield rt
    problems = rt.cleanup()
    shutil.rmtree(rt.root, ignore_errors=True)
    assert not problems, "; ".join(problems)


class Bundles:
    """Makes bundles in the test's tmp dir; `spec` may be edited before write()."""

    def __init__(self, base: Path, rootfs: str) -> None:
        self.base = base
        self.rootfs = rootfs
        self.n = 0

    def spec(self, args: list[str], **kw: object) -> dict:
        return busybox_spec(self.rootfs, args, **kw)  # type: ignore[arg-type]

    def write(self, spec: dict, name: str | None = None) -> str:
        self.n += 1
        d = self.base / (name or f"bundle{self.n}")
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(spec, indent=2))
        return str(d)

    def make(self, args: list[str], **kw: object) -> str:
        return self.write(self.spec(args, **kw))

    def private_rootfs(self) -> str:
        """A writable copy of the rootfs, for tests that change files inside it."""
        self.n += 1
        d = self.base / f"rootfs{self.n}"
        subprocess.run(["cp", "-a", self.rootfs, str(d)], check=True)
        return str(d)


@pytest.fixture
def bundles(tmp_path: Path, rootfs: str) -> Bundles:
    return Bundles(tmp_path, rootfs)
