"""Rootless: an unprivileged user with subuid/subgid ranges runs containers with
`yacr spec --rootless`; state goes under $XDG_RUNTIME_DIR; cgroups are skipped, warned."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import YACR

USER = "yacr-rootless"


@pytest.fixture(scope="module")
def rootless_user():
    """A throwaway user with a subordinate id range (useradd adds one), removed afterwards."""
    if shutil.which("newuidmap") is None or shutil.which("runuser") is None:
        pytest.skip("newuidmap (package uidmap) or runuser is missing")
    created = False
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "-M", "-s", "/bin/sh", USER], check=True)
        created = True
        pw = pwd.getpwnam(USER)
    if not any(line.startswith(f"{USER}:") for line in open("/etc/subuid")):
        for f in ("/etc/subuid", "/etc/subgid"):
            with open(f, "a") as fh:
                fh.write(f"{USER}:300000:65536\n")
    yield pw
    if created:
        subprocess.run(["userdel", USER], check=False)
        for f in ("/etc/subuid", "/etc/subgid"):
            lines = [ln for ln in open(f) if not ln.startswith(f"{USER}:")]
            with open(f, "w") as fh:
                fh.writelines(lines)


class Rootless:
    def __init__(self, pw, base) -> None:
        self.pw = pw
        self.base = base
        self.xdg = base / "xdg"
        self.xdg.mkdir(mode=0o700)
        os.chown(self.xdg, pw.pw_uid, pw.pw_gid)

    def __call__(self, *args: str, cwd: str | None = None) -> subprocess.CompletedProcess:
        cmd = ["runuser", "-u", USER, "--", "env", f"XDG_RUNTIME_DIR={self.xdg}", YACR, *args]
        with open(self.base / "out", "w+") as out, open(self.base / "err", "w+") as err:
            r = subprocess.run(cmd, stdout=out, stderr=err, cwd=cwd, timeout=60)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(cmd, r.returncode, out.read(), err.read())


@pytest.fixture
def rootless(rootless_user, tmp_path, rootfs):
    # the user must reach its bundle: open up the test's directories on the way
    for d in [tmp_path, *tmp_path.parents][:3]:
        d.chmod(d.stat().st_mode | 0o711)
    rl = Rootless(rootless_user, tmp_path)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    subprocess.run(["cp", "-a", rootfs, str(bundle / "rootfs")], check=True)
    subprocess.run(["chown", "-R", f"{rootless_user.pw_uid}:{rootless_user.pw_gid}",
                    str(bundle)], check=True)
    rl.bundle = bundle  # type: ignore[attr-defined]
    ids: list[str] = []
    rl.ids = ids  # type: ignore[attr-defined]
    yield rl
    for cid in ids:
        rl("delete", "--force", cid)
    left = [p for p in (rl.xdg / "yacr").iterdir() if p.name != ".seccomp"] \
        if (rl.xdg / "yacr").exists() else []
    assert left == [], f"rootless state left: {left}"


def write_config(rl, args: list[str]) -> None:
    p = rl("spec", "--rootless", cwd=str(rl.bundle))
    assert p.returncode == 0, p.stderr
    cfg = json.loads((rl.bundle / "config.json").read_text())
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = args
    (rl.bundle / "config.json").write_text(json.dumps(cfg))


def test_rootless_run(rootless, rootless_user):
    write_config(rootless, ["sh", "-c", "id -u; cat /proc/self/uid_map; echo $$"])
    cid = f"rl-{uuid.uuid4().hex[:10]}"
    rootless.ids.append(cid)
    p = rootless("--log", str(rootless.xdg / "log"), "run", "--bundle", str(rootless.bundle),
                 cid)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "0"
    assert lines[1].split() == ["0", str(rootless_user.pw_uid), "1"]
    assert lines[2].split()[0] == "1" and lines[2].split()[2] == "65536"  # newuidmap's range
    assert lines[3] == "1"
    assert "without cgroups" in (rootless.xdg / "log").read_text()


def test_rootless_lifecycle_and_state_dir(rootless, rootless_user):
    write_config(rootless, ["sleep", "1000"])
    cid = f"rl-{uuid.uuid4().hex[:10]}"
    rootless.ids.append(cid)
    assert rootless("create", "--bundle", str(rootless.bundle), cid).returncode == 0
    assert (rootless.xdg / "yacr" / cid / "state.json").exists()
    assert rootless("start", cid).returncode == 0
    st = json.loads(rootless("state", cid).stdout)
    assert st["status"] == "running"
    with open(f"/proc/{st['pid']}/status") as f:
        uid_line = next(line for line in f if line.startswith("Uid:"))
    assert uid_line.split()[1] == str(rootless_user.pw_uid)  # container root = the user
    assert rootless("kill", cid, "KILL").returncode == 0
    deadline = time.monotonic() + 5
    while json.loads(rootless("state", cid).stdout)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert rootless("delete", cid).returncode == 0
    assert not (rootless.xdg / "yacr" / cid).exists()
