"""cgroups on a pure v2 host, which production hosts mostly are.

On a pure v2 host (the VM of `make test-vm`: systemd, every controller) the tests run
yacr as it is. On this project's hybrid build machines every yacr call runs in a private
mount namespace with cgroup2 mounted over /sys/fs/cgroup: yacr then sees a pure v2
layout and the container's cgroup is /sys/fs/cgroup/unified/yacr/<id> as the host sees
it. That hierarchy offers no controller but hugetlb there, so checks that need another
controller are SKIPPED with the reason (pytest -ra prints it), never faked; they run in
the VM.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Runtime, cgroup_dirs, checked
from test_cgroups import (
    DEVICE_CHECK,
    EXPECTED_ALLOW_ALL,
    EXPECTED_DEVICES,
    MiB,
    block_device,
    count,
    counter_spec,
    device_results,
    device_spec,
    events_until_oom,
    wait_for,
)
from yacr.specgen import unified_host

PURE_V2 = unified_host()
UNIFIED = Path("/sys/fs/cgroup") if PURE_V2 else Path("/sys/fs/cgroup/unified")
WRAP = 'mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$@"'

pytestmark = pytest.mark.skipif(not (UNIFIED / "cgroup.controllers").exists(),
                                reason="no cgroup2 hierarchy at /sys/fs/cgroup/unified")


class V2Runtime(Runtime):
    """The real yacr; on a hybrid host each call in a private mount namespace whose
    /sys/fs/cgroup is v2."""

    def cmd(self, *args: str, log: str | None = None, log_format: str | None = None) -> list[str]:
        inner = super().cmd(*args, log=log, log_format=log_format)
        if PURE_V2:
            return inner
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", WRAP, "sh", *inner]


@pytest.fixture
def v2(tmp_path: Path):
    yield from checked(V2Runtime(tmp_path / "root"))


def controllers() -> set[str]:
    return set((UNIFIED / "cgroup.controllers").read_text().split())


def need(ctrl: str, what: str) -> None:
    if ctrl not in controllers():
        pytest.skip(f"cgroup v2 has no {ctrl} controller on this host (it offers: "
                    f"{' '.join(sorted(controllers())) or 'none'}), so {what} cannot be "
                    "checked in the kernel's files")


def v2dir(cid: str) -> Path:
    return UNIFIED / "yacr" / cid


def run_detached(rt: Runtime, bundles, spec: dict) -> str:
    cid = rt.new_id()
    p = rt("run", "-d", "--bundle", bundles.write(spec), cid)
    assert p.returncode == 0, p.stderr
    rt.state(cid)
    return cid


def test_layout_is_pure_v2(v2, bundles):
    cid = run_detached(v2, bundles, bundles.spec(["sleep", "100"]))
    pid = v2.state(cid)["pid"]
    cg = Path(f"/proc/{pid}/cgroup").read_text()
    assert f"0::/yacr/{cid}" in cg
    # no v1 hierarchy was joined: yacr saw only cgroup2
    assert not [line for line in cg.splitlines() if "/yacr" in line and not line.startswith("0:")]
    assert str(pid) in (v2dir(cid) / "cgroup.procs").read_text().split()
    assert v2("delete", "--force", cid).returncode == 0
    assert not v2dir(cid).exists()


# --- devices: the eBPF program --------------------------------------------------------------

def test_device_program_holds_inside(v2, bundles):
    from yacr.linux import sys as S

    spec = device_spec(bundles)
    spec["process"]["args"] = ["sleep", "100"]
    cid = run_detached(v2, bundles, spec)
    fd = os.open(v2dir(cid), os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert len(S.bpf_prog_query(fd, S.BPF_CGROUP_DEVICE)) == 1
    finally:
        os.close(fd)
    p = v2("exec", cid, "sh", "-c", DEVICE_CHECK)
    # The v1 devices cgroup of these processes is the host's root, which allows
    # everything: every EPERM here is the eBPF program's.
    assert device_results(p.stdout) == EXPECTED_DEVICES, p.stdout + p.stderr
    assert v2("delete", "--force", cid).returncode == 0
    p = v2("run", "--bundle", bundles.write(device_spec(bundles, [
        {"allow": True, "access": "rwm"}])), v2.new_id())
    assert device_results(p.stdout) == EXPECTED_ALLOW_ALL


def test_no_device_rules_still_means_only_the_defaults(v2, bundles):
    spec = device_spec(bundles, [])
    p = v2("run", "--bundle", bundles.write(spec), v2.new_id())
    want = dict(EXPECTED_DEVICES, **{"fuse-rw": "EPERM", "disk-r": "EPERM"})
    assert device_results(p.stdout) == want


# --- limits in the v2 files ----------------------------------------------------------------

CASES = [
    # (controller, linux.resources, {file: expected content})
    ("memory", {"unified": {"memory.high": str(48 * MiB), "memory.min": str(8 * MiB)}},
     {"memory.high": str(48 * MiB), "memory.min": str(8 * MiB)}),
    ("memory", {"memory": {"limit": 64 * MiB, "swap": 96 * MiB, "reservation": 16 * MiB}},
     {"memory.max": str(64 * MiB), "memory.swap.max": str(32 * MiB),
      "memory.low": str(16 * MiB)}),
    ("cpu", {"cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000,
                     "idle": 0}},
     {"cpu.weight": "100", "cpu.max": "50000 100000", "cpu.max.burst": "1000",
      "cpu.idle": "0"}),
    ("cpuset", {"cpu": {"cpus": "0", "mems": "0"}}, {"cpuset.cpus": "0", "cpuset.mems": "0"}),
    ("pids", {"pids": {"limit": 33}}, {"pids.max": "33"}),
    ("io", {"blockIO": {"weight": 1000}}, {"io.weight": "default 10000"}),
    ("hugetlb", {"hugepageLimits": [{"pageSize": "2MB", "limit": 6 * MiB}]},
     {"hugetlb.2MB.max": str(6 * MiB)}),
    ("hugetlb", {"unified": {"hugetlb.2MB.max": str(2 * MiB), "cgroup.max.descendants": "3"}},
     {"hugetlb.2MB.max": str(2 * MiB), "cgroup.max.descendants": "3"}),
]


@pytest.mark.parametrize("ctrl,res,files", CASES,
                         ids=[f"{c}-{'-'.join(r)}" for c, r, _f in CASES])
def test_limits_land_in_the_v2_files(v2, bundles, ctrl, res, files):
    need(ctrl, ", ".join(files))
    spec = bundles.spec(["sleep", "100"])
    spec["linux"]["resources"].update(res)
    cid = run_detached(v2, bundles, spec)
    for name, want in files.items():
        assert (v2dir(cid) / name).read_text().strip() == want, name
    assert v2("delete", "--force", cid).returncode == 0


@pytest.mark.parametrize("res,field", [
    ({"memory": {"limit": 64 * MiB}}, "linux.resources.memory"),
    ({"pids": {"limit": 5}}, "linux.resources.pids.limit"),
    ({"cpu": {"shares": 512}}, "linux.resources.cpu"),
    ({"unified": {"memory.high": "10"}}, "linux.resources.unified.memory.high"),
])
def test_a_missing_controller_is_an_error_naming_the_field(v2, bundles, res, field):
    ctrl = next(iter(res)) if "unified" not in res else "memory"
    if ctrl in controllers():
        pytest.skip(f"the {ctrl} controller is available here, so this host cannot show "
                    "the missing-controller error")
    spec = bundles.spec(["true"])
    spec["linux"]["resources"].update(res)
    cid = v2.new_id()
    p = v2("run", "--bundle", bundles.write(spec), cid)
    assert p.returncode == 1
    assert field in p.stderr and "controller is not available" in p.stderr, p.stderr
    assert not cgroup_dirs(cid)


def test_v1_only_knobs_warn_on_v2(v2, bundles, tmp_path):
    spec = bundles.spec(["true"])
    spec["linux"]["resources"].update({
        "network": {"classID": 5, "priorities": [{"name": "lo", "priority": 1}]},
        "blockIO": {"leafWeight": 100}})
    log = tmp_path / "log.json"
    p = v2("run", "--bundle", bundles.write(spec), v2.new_id(), log=str(log),
           log_format="json")
    assert p.returncode == 0, p.stderr
    msgs = " ".join(json.loads(line)["msg"] for line in log.read_text().splitlines())
    assert "network.classID: cgroup v2 has no net_cls" in msgs
    assert "leafWeight: cgroup v2 has no leaf weights" in msgs
    spec["linux"]["resources"] = {"cpu": {"realtimeRuntime": 1000}}
    p = v2("run", "--bundle", bundles.write(spec), v2.new_id())
    assert p.returncode == 1 and "realtimeRuntime: cgroup v2 has no real-time" in p.stderr


# --- operations ----------------------------------------------------------------------------

def test_pause_resume_with_cgroup_freeze(v2, bundles, tmp_path):
    cid = run_detached(v2, bundles, counter_spec(bundles, tmp_path))
    assert wait_for(lambda: count(tmp_path) > 100)
    assert v2("pause", cid).returncode == 0
    assert (v2dir(cid) / "cgroup.freeze").read_text().strip() == "1"
    assert "frozen 1" in (v2dir(cid) / "cgroup.events").read_text()
    assert v2.state(cid)["status"] == "paused"
    a = count(tmp_path)
    time.sleep(0.5)
    assert count(tmp_path) == a
    assert v2("resume", cid).returncode == 0
    assert v2.state(cid)["status"] == "running"
    assert wait_for(lambda: count(tmp_path) > a + 100)
    assert v2("pause", cid).returncode == 0
    assert v2("delete", "--force", cid).returncode == 0
    assert not v2dir(cid).exists()


def test_update_and_stats(v2, bundles):
    need("hugetlb", "hugetlb.2MB.max")
    spec = bundles.spec(["sh", "-c", "sleep 100 & sleep 100 & wait"])
    spec["linux"]["resources"]["hugepageLimits"] = [{"pageSize": "2MB", "limit": 2 * MiB}]
    cid = run_detached(v2, bundles, spec)
    p = v2("update", "--resources", "-", cid,
           input=json.dumps({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MiB}]}))
    assert p.returncode == 0, p.stderr
    assert (v2dir(cid) / "hugetlb.2MB.max").read_text().strip() == str(4 * MiB)
    p = v2("update", "--memory", "64m", cid)
    if "memory" not in controllers():
        assert p.returncode == 1 and "memory controller is not available" in p.stderr
    ev = json.loads(v2("events", "--stats", cid).stdout)
    assert ev["type"] == "stats"
    assert ev["data"]["cpu"]["usage"]["total"] > 0  # cpu.stat is a core file
    assert "2MB" in ev["data"]["hugetlb"]
    assert wait_for(lambda: len(json.loads(v2("ps", "--format", "json", cid).stdout)) == 3)
    assert v2("kill", "--all", cid, "KILL").returncode == 0
    assert wait_for(lambda: v2.state(cid)["status"] == "stopped")
    assert v2("delete", cid).returncode == 0
    assert not v2dir(cid).exists()



def test_delete_force_kills_a_forking_and_a_paused_container(v2, bundles):
    """SIGKILL for the whole cgroup goes through cgroup.kill (the kernel kills the subtree
    at once, forks in flight included): a container forking in a loop, with a process in a
    sub-cgroup of its own, and a paused one, are gone after delete --force."""
    # "0" moves the writer: the subshell goes to sub, the loop stays in the container's
    spec = bundles.spec(["sh", "-c", "mkdir /sys/fs/cgroup/sub && "
                                     "(echo 0 > /sys/fs/cgroup/sub/cgroup.procs; sleep 100) & "
                                     "while :; do sleep 100 & done"])
    spec["mounts"] = [dict(m, options=[o for o in m.get("options", []) if o != "ro"])
                      if m["destination"] == "/sys/fs/cgroup" else m for m in spec["mounts"]]
    cid = run_detached(v2, bundles, spec)
    assert wait_for(lambda: len(json.loads(v2("ps", "--format", "json", cid).stdout)) > 5,
                    timeout=60)
    assert wait_for(lambda: (v2dir(cid) / "sub").is_dir())
    paused = run_detached(v2, bundles, bundles.spec(["sleep", "100"]))
    assert v2("pause", paused).returncode == 0
    for c in (cid, paused):
        p = v2("delete", "--force", c)
        assert p.returncode == 0, p.stderr
        assert not v2dir(c).exists()


def test_io_throttles_in_io_max(v2, bundles):
    need("io", "io.max")
    ma, mi = block_device()
    spec = bundles.spec(["sleep", "100"])
    spec["linux"]["resources"]["blockIO"] = {
        "throttleReadBpsDevice": [{"major": ma, "minor": mi, "rate": 10 * MiB}],
        "throttleWriteIOPSDevice": [{"major": ma, "minor": mi, "rate": 200}]}
    cid = run_detached(v2, bundles, spec)
    assert (v2dir(cid) / "io.max").read_text().split() == [
        f"{ma}:{mi}", f"rbps={10 * MiB}", "wbps=max", "riops=max", "wiops=200"]


def test_an_oom_kill_is_an_event(v2, bundles, tmp_path):
    """memory.events counts the OOM kills; `events` turns a new one into runc's oom event."""
    need("memory", "memory.events")
    cid, lines = events_until_oom(v2, bundles, tmp_path, 64, 16 * MiB, 1, 60)  # small: TCG
    assert "oom_kill 1" in (v2dir(cid) / "memory.events").read_text() or not v2dir(cid).exists()
    assert {"type": "oom", "id": cid} in lines


CGNS_C = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <unistd.h>
/* cgns: print the cgroup2 line of /proc/self/cgroup, enter a new cgroup namespace, print
 * it again */
static void show(void) {
    char buf[256];
    FILE *f = fopen("/proc/self/cgroup", "r");
    while (f && fgets(buf, sizeof buf, f))
        if (buf[0] == '0' && buf[1] == ':') fputs(buf, stdout);
    if (f) fclose(f);
}
int main(void) {
    show();
    if (unshare(CLONE_NEWCGROUP) != 0) { perror("unshare"); return 1; }
    show();
    return 0;
}
"""


def test_nested_cgroup_namespaces(v2, bundles, tmp_path):
    """A container with its own cgroup namespace makes a sub-cgroup, moves into it and
    makes a cgroup namespace of its own there (what systemd or a runtime inside a
    container does): each namespace is rooted where it was made."""
    import shutil

    cc = shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler for the cgroup namespace helper")
    (tmp_path / "cgns.c").write_text(CGNS_C)
    subprocess.run([cc, "-O1", "-static", "-o", str(tmp_path / "cgns"),
                    str(tmp_path / "cgns.c")], check=True, capture_output=True, timeout=120)
    spec = bundles.spec(["sh", "-c", "mkdir /sys/fs/cgroup/inner && "
                                     "echo $$ > /sys/fs/cgroup/inner/cgroup.procs && "
                                     "exec /helper/cgns"])
    spec["mounts"] = [dict(m, options=[o for o in m.get("options", []) if o != "ro"])
                      if m["destination"] == "/sys/fs/cgroup" else m for m in spec["mounts"]]
    spec["mounts"].append({"destination": "/helper", "type": "bind", "source": str(tmp_path),
                           "options": ["rbind", "ro"]})
    for caps in spec["process"]["capabilities"].values():
        caps.append("CAP_SYS_ADMIN")  # unshare(CLONE_NEWCGROUP) needs it
    spec["linux"].pop("seccomp", None)
    p = v2("run", "--bundle", bundles.write(spec), v2.new_id())
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0::/inner", "0::/"]


def test_a_child_is_born_in_its_cgroup2_cgroup_or_joins_it_later(tmp_path):
    """fork_in: clone3 with CLONE_INTO_CGROUP puts the child in the cgroup from its first
    instruction (no migration, no RCU grace period); a cgroup that takes no processes
    (a domain controller enabled for its children) makes it a plain fork instead."""
    from yacr.cgroups import fork_in

    parent = UNIFIED / f"yacr-fork-{os.getpid()}"
    leaf = parent / "leaf"
    leaf.mkdir(parents=True)
    try:
        for target, want_born in ((leaf, True), (parent, False)):
            if not want_born:
                (parent / "cgroup.subtree_control").write_text("+hugetlb")
            r, w = os.pipe()
            pid, born = fork_in({"": str(target)})
            if pid == 0:
                line = next(x for x in Path("/proc/self/cgroup").read_text().splitlines()
                        if x.startswith("0::"))
                os.write(w, line.encode())
                os._exit(0)
            os.close(w)
            where = os.read(r, 4096).decode()
            os.close(r)
            os.waitpid(pid, 0)
            assert born is want_born
            if born:
                assert where.endswith(str(target.relative_to(UNIFIED)))
            else:
                assert not where.endswith(str(target.relative_to(UNIFIED)))
    finally:
        (parent / "cgroup.subtree_control").write_text("-hugetlb")
        leaf.rmdir()
        parent.rmdir()
