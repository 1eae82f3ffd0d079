"""`exec --cgroup [CONTROLLER[,CONTROLLER...]:]PATH`: an exec'd process in a sub-cgroup of
its container, on this hybrid host, on pure v1 (cgroup2 hidden) and on pure v2 (cgroup2
mounted over /sys/fs/cgroup in a private mount namespace), with real containers.

Also the cgroup2 fallback: a cgroup that enables a domain controller for its children
takes no process itself (EBUSY), so once init moved to a sub-cgroup and enabled one, an
exec'd process joins init's cgroup instead, unless --cgroup asked for a place. hugetlb,
the one controller of this host's cgroup2, is a domain controller: enough to test it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from conftest import CGROUP, Runtime, cgroup_dirs, checked
from test_cgroups import in_pure_v1
from test_cgroups_v2 import UNIFIED, V2Runtime
from yacr.cgroups import subcgroups
from yacr.errors import UsageError, YacrError


def run_sleeper(rt: Runtime, bundles) -> tuple[str, int]:
    cid = rt.new_id()
    p = rt("run", "-d", "--bundle", bundles.make(["sleep", "1000"]), cid)
    assert p.returncode == 0, p.stderr
    return cid, rt.state(cid)["pid"]


def exec_detached(rt: Runtime, tmp_path: Path, cid: str, *flags: str) -> dict[str, str]:
    """exec -d sleep with flags; returns the process's /proc/PID/cgroup as the host reads
    it, {hierarchy: path} ("" for the cgroup2 line)."""
    pidfile = tmp_path / f"exec-{uuid.uuid4().hex[:8]}.pid"
    p = rt("exec", "-d", "--pid-file", str(pidfile), *flags, cid, "sleep", "1000")
    assert p.returncode == 0, p.stderr
    pid = int(pidfile.read_text())
    rt.pids.add(pid)
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _n, ctrls, path = line.split(":", 2)
        out[ctrls] = path
    return out


def refused(rt: Runtime, cid: str, init_pid: int, args: list[str], msg: str) -> None:
    """exec --cgroup ARGS fails as exec's own error: 255, one line naming what is wrong,
    and nothing started in the container."""
    before = container_pids(init_pid)
    cmd = ["exec"]
    for a in args:
        cmd += ["--cgroup", a]
    p = rt(*cmd, cid, "true")
    assert p.returncode == 255, (args, p.returncode, p.stderr)
    assert msg in p.stderr and len(p.stderr.splitlines()) == 1, (args, p.stderr)
    assert "Traceback" not in p.stderr
    assert container_pids(init_pid) == before


def container_pids(init_pid: int) -> set[int]:
    """init and its descendants (exec'd processes are init's siblings: the runtime's
    children, so the container's pid namespace is the place to look)."""
    ns = Path(f"/proc/{init_pid}/ns/pid").readlink()
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "ns" / "pid").readlink() == ns:
                    out.add(int(d.name))
            except OSError:
                continue
    return out


# --- the arguments, without a host ----------------------------------------------------------

def fake_paths(tmp_path: Path, *keys: str) -> dict[str, str]:
    """A container's cgroup paths as directories under tmp_path."""
    out = {}
    for k in keys:
        d = tmp_path / (k or "v2").replace(",", "_") / "ct"
        d.mkdir(parents=True)
        out[k] = str(d)
    return out


def test_parse_follows_runc_forms():
    assert subcgroups.parse(["sub"]) == {"": ("sub", "sub")}
    assert subcgroups.parse(["cpu,cpuacct:a", "memory:/b"]) == {
        "cpu": ("a", "cpu,cpuacct:a"), "cpuacct": ("a", "cpu,cpuacct:a"),
        "memory": ("/b", "memory:/b")}
    for bad, msg in ((["a", "memory:b"], "missing <controller>: prefix"),
                     (["cpu:a:b"], "invalid --cgroup argument: cpu:a:b"),
                     ([":a"], "empty controller name"),
                     (["cpu:a", "cpu,memory:b"], "controller cpu is given more than once")):
        with pytest.raises(UsageError, match=msg):
            subcgroups.parse(bad)


def test_resolve_on_v2_paths(tmp_path):
    """Pure v2 (key ""): one hierarchy, so only the controller-less form, and every path
    stays inside the container's cgroup."""
    paths = fake_paths(tmp_path, "")
    base = paths[""]
    (Path(base) / "a" / "b").mkdir(parents=True)
    assert subcgroups.resolve(paths, ["a/b"]) == ({"": base + "/a/b"}, True)
    assert subcgroups.resolve(paths, ["/a"]) == ({"": base + "/a"}, True)  # / is the container
    assert subcgroups.resolve(paths, ["/"]) == ({"": base}, True)
    assert subcgroups.resolve(paths, ["a/b/../.."]) == ({"": base}, True)
    for arg, msg in (("..", r"\.\. is not a sub cgroup path"),
                     ("a/../../ct2", "is not a sub cgroup path"),
                     ("/../../..", "is not a sub cgroup path"),
                     ("nope", r"nope/cgroup\.procs: no such file or directory"),
                     ("memory:a", "unknown controller memory .*without a controller")):
        with pytest.raises(YacrError, match=msg):
            subcgroups.resolve(paths, [arg])
    (Path(base) / "file").write_text("")
    with pytest.raises(YacrError, match="not a directory"):
        subcgroups.resolve(paths, ["file"])


def test_resolve_on_hybrid_and_comounted_paths(tmp_path):
    """v1 keys may hold several controllers (cpu,cpuacct mounted together); a controller
    moves its whole hierarchy, and two paths for one hierarchy are refused. The cgroup2
    part of a hybrid host moves only with the controller-less form."""
    paths = fake_paths(tmp_path, "cpu,cpuacct", "memory", "name=systemd", "unified")
    for d in paths.values():
        (Path(d) / "s").mkdir()
    got, every = subcgroups.resolve(paths, ["cpuacct:s", "name=systemd:s"])
    assert not every
    assert got == dict(paths, **{"cpu,cpuacct": paths["cpu,cpuacct"] + "/s",
                                 "name=systemd": paths["name=systemd"] + "/s"})
    got, every = subcgroups.resolve(paths, ["s"])
    assert every and got == {k: v + "/s" for k, v in paths.items()}
    with pytest.raises(YacrError, match="shares its hierarchy"):
        subcgroups.resolve(paths, ["cpu:s", "cpuacct:/"])
    assert subcgroups.resolve(paths, ["cpu:s", "cpuacct:s/."])[0]["cpu,cpuacct"].endswith("/s")
    with pytest.raises(YacrError, match="unknown controller unified"):
        subcgroups.resolve(paths, ["unified:s"])
    with pytest.raises(YacrError, match="has no cgroup"):
        subcgroups.resolve({}, ["s"])


# --- this hybrid host ------------------------------------------------------------------------

def test_exec_cgroup_on_the_hybrid_host(runtime, bundles, tmp_path):
    cid, init = run_sleeper(runtime, bundles)
    top = f"/yacr/{cid}"
    v1 = {d.parent.parent.name: d for d in cgroup_dirs(cid) if d.parent.parent.name != "unified"}
    # without --cgroup, or with "/", the container's own cgroup everywhere
    for flags in ((), ("--cgroup", "/")):
        assert set(exec_detached(runtime, tmp_path, cid, *flags).values()) == {top}
    for arg, msg in (("..", " .. is not a sub cgroup path"),
                     ("sub/../../other", "is not a sub cgroup path"),
                     ("nonexistent", "/nonexistent/cgroup.procs: no such file or directory"),
                     ("cpu:nonexistent", "/nonexistent/cgroup.procs: no such file"),
                     ("whaaat:/", "unknown controller whaaat"),
                     ("cpu:a:b", "invalid --cgroup argument")):
        refused(runtime, cid, init, [arg], msg)
    refused(runtime, cid, init, ["a", "memory:b"], "missing <controller>: prefix")
    # per controller: the named hierarchies move, the others (cgroup2 too) stay
    (v1["memory"] / "submem").mkdir()
    (v1["cpu"] / "subcpu").mkdir()
    (v1["cpuacct"] / "subcpu").mkdir()
    got = exec_detached(runtime, tmp_path, cid, "--cgroup", "memory:submem",
                        "--cgroup", "cpu,cpuacct:subcpu")
    assert got["memory"] == top + "/submem"
    assert got["cpu"] == got["cpuacct"] == top + "/subcpu"
    assert got["pids"] == got["name=systemd"] == got[""] == top
    # without a controller: every hierarchy of the container, the cgroup2 one included,
    # so the sub-cgroup must exist there too
    for d in v1.values():
        (d / "sub").mkdir()
    refused(runtime, cid, init, ["sub"], f"/sys/fs/cgroup/unified{top}/sub/cgroup.procs")
    (CGROUP / "unified" / "yacr" / cid / "sub").mkdir()
    got = exec_detached(runtime, tmp_path, cid, "--cgroup", "sub")
    assert set(got.values()) == {top + "/sub"}, got


def test_exec_falls_back_to_inits_cgroup2_cgroup_when_the_container_s_is_busy(
        runtime, bundles, tmp_path):
    cid, init = run_sleeper(runtime, bundles)
    top = f"/yacr/{cid}"
    u = CGROUP / "unified" / "yacr" / cid
    (u / "foo").mkdir()
    (u / "foo" / "cgroup.procs").write_text(str(init))
    # no domain controller enabled yet: the container's cgroup still takes processes (the
    # container has a cgroup namespace: its cgroup is / inside)
    p = runtime("exec", cid, "cat", "/proc/self/cgroup")
    assert p.stdout.splitlines()[-1] == "0::/", p.stdout
    (u / "cgroup.subtree_control").write_text("+hugetlb")
    p = runtime("exec", cid, "cat", "/proc/self/cgroup")
    assert p.stdout.splitlines()[-1] == "0::/foo", p.stdout
    got = exec_detached(runtime, tmp_path, cid)
    assert got[""] == top + "/foo" and got["memory"] == top
    # an explicit place disables the fallback
    p = runtime("exec", "--cgroup", "/", cid, "true")
    assert p.returncode == 255
    assert " to cgroups: " in p.stderr and "device or resource busy" in p.stderr, p.stderr


# --- pure v1 -----------------------------------------------------------------------------------

class V1Runtime(Runtime):
    """The real yacr, each call in a private mount namespace without the cgroup2 mount."""

    def cmd(self, *args: str, log: str | None = None, log_format: str | None = None) -> list[str]:
        inner = super().cmd(*args, log=log, log_format=log_format)
        return in_pure_v1(*inner[1:])


@pytest.fixture
def v1(tmp_path: Path):
    yield from checked(V1Runtime(tmp_path / "root"))


def test_exec_cgroup_on_pure_v1(v1, bundles, tmp_path):
    """No cgroup2 part: a controller-less path needs the sub-cgroup in the v1 hierarchies
    only."""
    cid, init = run_sleeper(v1, bundles)
    assert not (CGROUP / "unified" / "yacr" / cid).exists()
    for d in cgroup_dirs(cid):
        (d / "sub").mkdir()
    got = exec_detached(v1, tmp_path, cid, "--cgroup", "sub")
    assert got.pop("") != f"/yacr/{cid}/sub"
    assert set(got.values()) == {f"/yacr/{cid}/sub"}, got
    refused(v1, cid, init, ["nonexistent"], "/nonexistent/cgroup.procs: no such file")


# --- pure v2 -----------------------------------------------------------------------------------

@pytest.fixture
def v2(tmp_path: Path):
    if not (UNIFIED / "cgroup.controllers").exists():
        pytest.skip("no cgroup2 hierarchy at /sys/fs/cgroup/unified")
    yield from checked(V2Runtime(tmp_path / "root"))


def test_exec_cgroup_on_pure_v2(v2, bundles, tmp_path):
    cid, init = run_sleeper(v2, bundles)
    top = f"/yacr/{cid}"
    d = UNIFIED / "yacr" / cid
    refused(v2, cid, init, ["memory:/"], "unknown controller memory")
    refused(v2, cid, init, [".."], " .. is not a sub cgroup path")
    refused(v2, cid, init, ["nonexistent"], "/nonexistent/cgroup.procs: no such file")
    (d / "foo").mkdir()
    assert exec_detached(v2, tmp_path, cid, "--cgroup", "foo")[""] == top + "/foo"
    # init moves to foo and enables a domain controller: the fallback, as runc's on v2
    (d / "foo" / "cgroup.procs").write_text(str(init))
    (d / "cgroup.subtree_control").write_text("+hugetlb")
    assert exec_detached(v2, tmp_path, cid)[""] == top + "/foo"
    p = v2("exec", "--cgroup", "/", cid, "true")
    assert p.returncode == 255 and "device or resource busy" in p.stderr, p.stderr
