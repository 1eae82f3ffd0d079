"""The container's process as runc sets it up: its working directory (created when
missing, entered before privileges are dropped) and its terminal's owner."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def private_spec(bundles, args: list[str]) -> tuple[dict, Path]:
    """A spec on a writable copy of the rootfs (these tests change files in it)."""
    rootfs = Path(bundles.private_rootfs())
    spec = bundles.spec(args)
    spec["root"] = {"path": str(rootfs), "readonly": True}
    return spec, rootfs


# --- process.cwd ------------------------------------------------------------------------------

def test_a_missing_cwd_is_created(runtime, bundles):
    """As runc and crun: mkdir -p, 0755, root's, before the root is made read-only."""
    spec, rootfs = private_spec(bundles, ["pwd"])
    spec["process"]["cwd"] = "/work/deep/dir"
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 0, p.stderr
    assert p.stdout == "/work/deep/dir\n"
    made = rootfs / "work" / "deep" / "dir"
    st = made.stat()
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755 and st.st_uid == 0


def test_a_missing_cwd_is_created_inside_the_root_whatever_its_symlinks(runtime, bundles,
                                                                       tmp_path):
    """An image's symlink to an absolute host path leads to that path inside the rootfs:
    the directory is made there, never on the host."""
    host = tmp_path / "host-target"
    spec, rootfs = private_spec(bundles, ["pwd"])
    (rootfs / "link").symlink_to(str(host))
    spec["process"]["cwd"] = "/link/sub"
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 0, p.stderr
    assert not host.exists()
    assert (rootfs / str(host).lstrip("/") / "sub").is_dir()


def test_a_cwd_only_root_may_enter_works_for_another_user(runtime, bundles):
    """process.cwd is entered before the user is switched (runc's order), so a directory
    that only root may enter is the cwd of a process running as 1000, in run and exec."""
    spec, rootfs = private_spec(bundles, ["sh", "-c", "pwd; id -u; sleep 100"])
    secret = rootfs / "secret"
    secret.mkdir(mode=0o700)
    spec["process"]["cwd"] = "/secret"
    spec["process"]["user"] = {"uid": 1000, "gid": 1000}
    cid = runtime.new_id()
    p = runtime("run", "-d", "--bundle", bundles.write(spec), cid)
    assert p.returncode == 0, p.stderr
    p = runtime("exec", "--user", "1000", "--cwd", "/secret", cid, "sh", "-c",
                "pwd; id -u; ls . >/dev/null 2>&1 || echo cannot-list")
    assert p.returncode == 0, p.stderr
    # it is the cwd, and still closed to the user itself
    assert p.stdout.split() == ["/secret", "1000", "cannot-list"]


def test_exec_as_root_without_dac_capabilities_into_a_users_private_cwd(runtime, bundles):
    """runc's case: the container runs as 42 in its private /root; an exec as uid 0 whose
    capabilities lack CAP_DAC_OVERRIDE still enters it, before dropping them."""
    spec, rootfs = private_spec(bundles, ["sleep", "100"])
    os.chown(rootfs / "root", 42, 0)
    os.chmod(rootfs / "root", 0o700)
    spec["process"]["cwd"] = "/root"
    spec["process"]["user"] = {"uid": 42, "gid": 0}
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    spec["process"]["capabilities"] = {k: caps for k in ("bounding", "effective",
                                                         "permitted", "ambient")}
    cid = runtime.new_id()
    p = runtime("run", "-d", "--bundle", bundles.write(spec), cid)
    assert p.returncode == 0, p.stderr
    p = runtime("exec", "--user", "0", cid, "pwd")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "/root\n"


def test_a_cwd_that_is_not_a_directory_is_a_clear_error(runtime, bundles):
    spec, rootfs = private_spec(bundles, ["true"])
    (rootfs / "afile").write_text("x")
    spec["process"]["cwd"] = "/afile"
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and "process.cwd" in p.stderr and "/afile" in p.stderr
    assert runtime.containers_left() == []


# --- the terminal's owner ---------------------------------------------------------------------

TTY_OWNER = "stat -c %u:%g $(tty)"


def test_the_terminal_belongs_to_the_process_user(runtime, bundles):
    """terminal: true with a non-root user: the pty is that user's (it can chmod it,
    mesg works), the group is devpts' gid=5 (tty), as under runc."""
    spec = bundles.spec(["sh", "-c", TTY_OWNER], terminal=True)
    spec["process"]["user"] = {"uid": 1000, "gid": 100}
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "1000:5"


def test_an_exec_terminal_belongs_to_the_exec_user(runtime, bundles):
    cid = runtime.new_id()
    p = runtime("run", "-d", "--bundle", bundles.make(["sleep", "100"]), cid)
    assert p.returncode == 0, p.stderr
    for user, owner in (("1000:100", "1000:5"), ("0", "0:5")):
        p = runtime("exec", "-t", "--user", user, cid, "sh", "-c", TTY_OWNER)
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == owner
