"""cgroups on this (hybrid) host, with real containers: every limit read back from the
kernel's files, an OOM kill, a fork bomb against pids.max, pause, update, events, device
rules from inside, and no cgroup left behind, even after the runtime was SIGKILLed.

The v1 controllers are at /sys/fs/cgroup/<controller>, cgroup2 at /sys/fs/cgroup/unified
(hugetlb only). Pure v1 is tested by hiding the cgroup2 mount in a private mount
namespace; pure v2 in tests/test_cgroups_v2.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import CGROUP, YACR, cgroup_dirs

MiB = 1 << 20


def cg(cid: str, ctrl: str) -> Path:
    return CGROUP / ctrl / "yacr" / cid


def rd(cid: str, ctrl: str, name: str) -> str:
    return (cg(cid, ctrl) / name).read_text().strip()


def wait_for(pred, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def start(runtime, bundles, args: list[str], resources: dict | None = None,
          mutate=None) -> str:
    """create + start a container with the given linux.resources (merged over the deny-all)."""
    spec = bundles.spec(args)
    spec["linux"]["resources"].update(resources or {})
    if mutate:
        mutate(spec)
    cid = runtime.new_id()
    p = runtime("run", "-d", "--bundle", bundles.write(spec), cid)
    assert p.returncode == 0, p.stderr
    runtime.state(cid)
    return cid


def blkio_weight_file() -> str | None:
    """The v1 proportional weight file this kernel offers: CFQ's blkio.weight on old
    kernels, BFQ's blkio.bfq.weight when BFQ is a scheduler here, or none at all (then a
    blockIO.weight is refused, see below)."""
    for name in ("blkio.weight", "blkio.bfq.weight"):
        if (CGROUP / "blkio" / name).exists():
            return name
    return None


BLKIO_WEIGHT = blkio_weight_file()


def block_device() -> tuple[int, int]:
    """A real disk's major:minor (throttles only take whole disks)."""
    for name in sorted(os.listdir("/sys/block")):
        if name.startswith(("vd", "sd", "nvme", "xvd")):
            ma, mi = Path(f"/sys/block/{name}/dev").read_text().split(":")
            return int(ma), int(mi)
    pytest.skip("no whole block device (vd*, sd*, nvme*) to throttle on this host")


# --- every limit, read back ---------------------------------------------------------------

def test_every_v1_limit_is_in_the_kernel_files(runtime, bundles):
    ma, mi = block_device()
    res = {
        "memory": {"limit": 96 * MiB, "reservation": 48 * MiB, "swap": 128 * MiB,
                   "kernelTCP": 16 * MiB, "swappiness": 10, "disableOOMKiller": True,
                   "useHierarchy": True},
        "cpu": {"shares": 512, "quota": 30000, "period": 60000, "burst": 2000,
                "cpus": "0", "mems": "0", "idle": 0},
        "pids": {"limit": 42},
        "blockIO": {"throttleReadBpsDevice": [{"major": ma, "minor": mi, "rate": 10 * MiB}],
                    "throttleWriteBpsDevice": [{"major": ma, "minor": mi, "rate": 5 * MiB}],
                    "throttleReadIOPSDevice": [{"major": ma, "minor": mi, "rate": 300}],
                    "throttleWriteIOPSDevice": [{"major": ma, "minor": mi, "rate": 200}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 8 * MiB}],
    }
    if BLKIO_WEIGHT:
        res["blockIO"]["weight"] = 500
    cid = start(runtime, bundles, ["sleep", "100"], res)
    assert rd(cid, "memory", "memory.limit_in_bytes") == str(96 * MiB)
    assert rd(cid, "memory", "memory.soft_limit_in_bytes") == str(48 * MiB)
    assert rd(cid, "memory", "memory.memsw.limit_in_bytes") == str(128 * MiB)
    assert rd(cid, "memory", "memory.kmem.tcp.limit_in_bytes") == str(16 * MiB)
    assert rd(cid, "memory", "memory.swappiness") == "10"
    assert "oom_kill_disable 1" in rd(cid, "memory", "memory.oom_control")
    assert rd(cid, "memory", "memory.use_hierarchy") == "1"
    assert rd(cid, "cpu", "cpu.shares") == "512"
    assert rd(cid, "cpu", "cpu.cfs_quota_us") == "30000"
    assert rd(cid, "cpu", "cpu.cfs_period_us") == "60000"
    assert rd(cid, "cpu", "cpu.cfs_burst_us") == "2000"
    assert rd(cid, "cpu", "cpu.idle") == "0"
    assert rd(cid, "cpuset", "cpuset.cpus") == "0"
    assert rd(cid, "cpuset", "cpuset.mems") == "0"
    assert rd(cid, "pids", "pids.max") == "42"
    dev = f"{ma}:{mi}"
    if BLKIO_WEIGHT:
        assert rd(cid, "blkio", BLKIO_WEIGHT) == "500"
    assert rd(cid, "blkio", "blkio.throttle.read_bps_device") == f"{dev} {10 * MiB}"
    assert rd(cid, "blkio", "blkio.throttle.write_bps_device") == f"{dev} {5 * MiB}"
    assert rd(cid, "blkio", "blkio.throttle.read_iops_device") == f"{dev} 300"
    assert rd(cid, "blkio", "blkio.throttle.write_iops_device") == f"{dev} 200"
    # hugetlb has no v1 hierarchy here: it lands in the cgroup2 one, which the container joined
    assert rd(cid, "unified", "hugetlb.2MB.max") == str(8 * MiB)
    pid = runtime.state(cid)["pid"]
    assert f"0::/yacr/{cid}" in Path(f"/proc/{pid}/cgroup").read_text()
    # ... and the processes really are in every one of those cgroups
    for ctrl in ("memory", "cpu", "cpuset", "pids", "blkio", "devices", "freezer"):
        assert str(pid) in rd(cid, ctrl, "cgroup.procs").split(), ctrl
    assert runtime("delete", "--force", cid).returncode == 0


def test_realtime_and_relative_paths(runtime, bundles):
    """cpu.rt_* need budget in every ancestor, which /yacr lacks: a top-level path has it
    (as runtime-tools uses). A relative cgroupsPath lands under this process's cgroup."""
    top = f"yacr-rt-{os.getpid()}-{time.monotonic_ns()}"

    def abs_path(spec):
        spec["linux"]["cgroupsPath"] = "/" + top

    cid = start(runtime, bundles, ["sleep", "100"],
                {"cpu": {"realtimePeriod": 1000000, "realtimeRuntime": 950000}}, abs_path)
    try:
        assert (CGROUP / "cpu" / top / "cpu.rt_period_us").read_text().strip() == "1000000"
        assert (CGROUP / "cpu" / top / "cpu.rt_runtime_us").read_text().strip() == "950000"
    finally:
        assert runtime("delete", "--force", cid).returncode == 0
    assert not any((CGROUP / h / top).exists() for h in os.listdir(CGROUP))

    rel = f"yacr-rel-{os.getpid()}/{time.monotonic_ns()}"

    def rel_path(spec):
        spec["linux"]["cgroupsPath"] = rel

    cid = start(runtime, bundles, ["sleep", "100"], {"pids": {"limit": 7}}, rel_path)
    own = next(line.split(":", 2)[2] for line in Path("/proc/self/cgroup").read_text()
               .splitlines() if line.split(":")[1] == "pids")
    d = CGROUP / "pids" / own.strip("/") / rel
    assert (d / "pids.max").read_text().strip() == "7"
    assert runtime("delete", "--force", cid).returncode == 0
    assert not d.exists() and not d.parent.exists()


def test_kernel_memory_and_removed_knobs_warn_and_skip(runtime, bundles, tmp_path):
    spec = bundles.spec(["true"])
    spec["linux"]["resources"]["memory"] = {"limit": 64 * MiB, "kernel": 32 * MiB,
                                            "useHierarchy": False}
    spec["linux"]["resources"]["blockIO"] = {"leafWeight": 300}
    log = tmp_path / "log.json"
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id(), log=str(log),
                log_format="json")
    assert p.returncode == 0, p.stderr
    warnings = [json.loads(line)["msg"] for line in log.read_text().splitlines()]
    assert any("memory.kernel" in w and "ignores memory.kmem.limit_in_bytes" in w
               for w in warnings), warnings
    assert any("useHierarchy" in w for w in warnings), warnings
    assert any("leafWeight" in w for w in warnings), warnings
    assert p.stderr == ""  # with --log, a successful command is silent on stderr


@pytest.mark.parametrize("res,msg", [
    ({"cpu": {"cpus": "99"}}, r"linux\.resources\.cpu\.cpus: the kernel rejected '99'"),
    ({"memory": {"limit": 64 * MiB, "swap": 32 * MiB}},
     r"linux\.resources\.memory\.swap: the kernel rejected 33554432"),
    ({"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]},
     r"hugepageLimits\[0\]\.pageSize: '3MB' is not a huge page size"),
    ({"blockIO": {"weight": 5000}},
     rf"linux\.resources\.blockIO\.weight: the kernel rejected 5000 \({BLKIO_WEIGHT}"
     if BLKIO_WEIGHT else
     r"linux\.resources\.blockIO\.weight: this kernel has no proportional block I/O weight"),
    ({"network": {"classID": 17}}, r"network\.classID: this host has no net_cls"),
    ({"rdma": {"mlx5_0": {"hcaHandles": 3}}},
     r"rdma\.mlx5_0: the rdma controller is not available"),
    ({"unified": {"memory.high": "1000000"}},
     r"unified\.memory\.high: the memory controller is not available"),
    ({"pids": {"limit": "ten"}}, r"linux\.resources\.pids\.limit: expected an integer"),
])
def test_a_refused_value_names_the_field_and_leaves_nothing(runtime, bundles, res, msg):
    import re

    spec = bundles.spec(["true"])
    spec["linux"]["resources"].update(res)
    cid = runtime.new_id()
    p = runtime("create", "--bundle", bundles.write(spec), cid)
    assert p.returncode == 1
    assert re.search(msg, p.stderr), p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert runtime("state", cid).returncode != 0
    assert not cgroup_dirs(cid)


# --- the limits hold --------------------------------------------------------------------------

def test_a_64mib_limit_oom_kills_a_200mib_toucher(runtime, bundles):
    spec = bundles.spec(["sh", "-c", "x=$(head -c 209715200 /dev/zero | tr '\\0' a); "
                                     "echo survived ${#x}"])
    spec["linux"]["resources"]["memory"] = {"limit": 64 * MiB, "swap": 64 * MiB}
    cid = runtime.new_id()
    assert runtime("create", "--bundle", bundles.write(spec), cid).returncode == 0
    assert runtime("start", cid).returncode == 0
    runtime.state(cid)  # records the pid for the leak check
    assert wait_for(lambda: runtime.state(cid)["status"] == "stopped", 30)
    oom = rd(cid, "memory", "memory.oom_control")
    assert "oom_kill 0" not in oom, oom  # the kernel's OOM killer acted in this cgroup
    assert int(rd(cid, "memory", "memory.max_usage_in_bytes")) <= 64 * MiB
    assert runtime("delete", cid).returncode == 0
    assert not cgroup_dirs(cid)
    # run in the foreground: the shell itself is the process the killer picks, 128+9
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 137, (p.returncode, p.stdout, p.stderr)
    assert "survived" not in p.stdout


def test_pids_max_stops_a_fork_bomb(runtime, bundles):
    bomb = "b() { b | b & }; b; sleep 100"
    cid = start(runtime, bundles, ["sh", "-c", bomb], {"pids": {"limit": 32}})
    # the bomb reaches the limit and the kernel refuses its forks (pids.events counts each);
    # sampling pids.current alone misses the peak on a loaded machine, as the bomb's
    # shells die as fast as they fork
    refused = lambda: int(rd(cid, "pids", "pids.events").split()[1])  # noqa: E731
    assert wait_for(lambda: refused() > 0, 30), rd(cid, "pids", "pids.current")
    for _ in range(20):
        assert int(rd(cid, "pids", "pids.current")) <= 32
        time.sleep(0.05)
    assert runtime("kill", "--all", cid, "KILL").returncode == 0
    assert wait_for(lambda: int(rd(cid, "pids", "pids.current")) == 0, 15)
    assert runtime("delete", "--force", cid).returncode == 0
    assert not cgroup_dirs(cid)


def counter_spec(bundles, tmp_path: Path) -> dict:
    """A container that appends to /out/n as fast as it can: progress is the file's size."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    spec = bundles.spec(["sh", "-c", "while :; do echo . >> /out/n; done"])
    spec["mounts"].append({"destination": "/out", "type": "bind", "source": str(out),
                           "options": ["rbind", "rw"]})
    return spec


def count(tmp_path: Path) -> int:
    try:
        return (tmp_path / "out" / "n").stat().st_size // 2
    except FileNotFoundError:
        return 0


def test_pause_stops_progress_and_resume_restarts_it(runtime, bundles, tmp_path):
    cid = runtime.new_id()
    assert runtime("run", "-d", "--bundle", bundles.write(counter_spec(bundles, tmp_path)),
                   cid).returncode == 0
    runtime.state(cid)
    assert wait_for(lambda: count(tmp_path) > 100)
    assert runtime("pause", cid).returncode == 0
    assert runtime.state(cid)["status"] == "paused"
    assert rd(cid, "freezer", "freezer.state") == "FROZEN"
    a = count(tmp_path)
    time.sleep(0.5)
    assert count(tmp_path) == a
    p = runtime("pause", cid)
    assert p.returncode == 1 and "not running" in p.stderr
    assert runtime("resume", cid).returncode == 0
    assert runtime.state(cid)["status"] == "running"
    assert wait_for(lambda: count(tmp_path) > a + 100)
    assert runtime("resume", cid).returncode == 1
    # a paused container is killed and deleted all the same
    assert runtime("pause", cid).returncode == 0
    assert runtime("delete", "--force", cid).returncode == 0
    assert not cgroup_dirs(cid)


# --- update ---------------------------------------------------------------------------------------

def test_update_flags_change_live_limits(runtime, bundles):
    cid = start(runtime, bundles, ["sleep", "100"],
                {"memory": {"limit": 64 * MiB, "swap": 64 * MiB}, "pids": {"limit": 10},
                 "cpu": {"shares": 1024}})
    p = runtime("update", "--memory", "256m", "--memory-swap", "512m",
                "--memory-reservation", "128m", "--cpu-shares", "300", "--cpu-quota", "25000",
                "--cpu-period", "50000", "--cpuset-cpus", "1", "--cpuset-mems", "0",
                "--pids-limit", "77", cid)
    assert p.returncode == 0, p.stderr
    assert rd(cid, "memory", "memory.limit_in_bytes") == str(256 * MiB)
    assert rd(cid, "memory", "memory.memsw.limit_in_bytes") == str(512 * MiB)
    assert rd(cid, "memory", "memory.soft_limit_in_bytes") == str(128 * MiB)
    assert rd(cid, "cpu", "cpu.shares") == "300"
    assert rd(cid, "cpu", "cpu.cfs_quota_us") == "25000"
    assert rd(cid, "cpu", "cpu.cfs_period_us") == "50000"
    assert rd(cid, "cpuset", "cpuset.cpus") == "1"
    assert rd(cid, "pids", "pids.max") == "77"
    # lowering memory below memory+swap needs the limit first, raising it swap first
    assert runtime("update", "--memory", "32m", "--memory-swap", "32m", cid).returncode == 0
    assert rd(cid, "memory", "memory.memsw.limit_in_bytes") == str(32 * MiB)
    assert runtime("update", "--memory", "1g", "--memory-swap", "-1", cid).returncode == 0
    assert rd(cid, "memory", "memory.limit_in_bytes") == str(1 << 30)
    assert runtime("update", "--pids-limit", "-1", cid).returncode == 0
    assert rd(cid, "pids", "pids.max") == "max"


def test_update_resources_from_stdin_and_file(runtime, bundles, tmp_path):
    cid = start(runtime, bundles, ["sleep", "100"], {"pids": {"limit": 10}})
    p = runtime("update", "--resources", "-", cid,
                input=json.dumps({"pids": {"limit": 20}, "cpu": {"quota": 10000}}))
    assert p.returncode == 0, p.stderr
    assert rd(cid, "pids", "pids.max") == "20"
    assert rd(cid, "cpu", "cpu.cfs_quota_us") == "10000"
    f = tmp_path / "res.json"
    f.write_text(json.dumps({"pids": {"limit": 30},
                             "hugepageLimits": []}))
    p = runtime("--log-format=json", "update", f"--resources={f}", cid)
    assert p.returncode == 0, p.stderr
    assert rd(cid, "pids", "pids.max") == "30"


def test_a_refused_update_changes_nothing(runtime, bundles):
    cid = start(runtime, bundles, ["sleep", "100"], {"pids": {"limit": 10},
                                                     "cpu": {"shares": 1024},
                                                     "memory": {"limit": 10 * MiB,
                                                                "swap": 10 * MiB}})
    bad = {"pids": {"limit": 55}, "cpu": {"shares": 700, "cpus": "99"}}
    p = runtime("update", "--resources", "-", cid, input=json.dumps(bad))
    assert p.returncode == 1
    assert "resources.cpu.cpus: the kernel rejected '99'" in p.stderr, p.stderr
    assert rd(cid, "pids", "pids.max") == "10"  # written, then restored
    assert rd(cid, "cpu", "cpu.shares") == "1024"
    p = runtime("update", "--memory", "1g", cid)  # above the memory+swap limit of 10 MiB
    assert p.returncode == 1
    assert "resources.memory.limit: the kernel rejected 1073741824" in p.stderr, p.stderr
    assert "set swap too" in p.stderr
    p = runtime("update", "--memory", "lots", cid)
    assert p.returncode == 1 and "--memory" in p.stderr
    p = runtime("update", "--resources", "-", cid, input="{not json")
    assert p.returncode == 1 and "not valid JSON" in p.stderr


def test_update_check_before_update_refuses_a_limit_below_usage(runtime, bundles):
    # tmpfs pages stay charged to the cgroup (a shell variable would not keep them)
    cid = start(runtime, bundles, ["sh", "-c", "head -c 30000000 /dev/zero > /dev/shm/x;"
                                               " sleep 100"],
                {"memory": {"limit": 256 * MiB}})
    assert wait_for(lambda: int(rd(cid, "memory", "memory.usage_in_bytes")) > 20 * MiB)
    p = runtime("update", "--resources", "-", cid,
                input=json.dumps({"memory": {"limit": 4 * MiB, "checkBeforeUpdate": True}}))
    assert p.returncode == 1
    assert "below the container's current memory usage" in p.stderr, p.stderr
    assert rd(cid, "memory", "memory.limit_in_bytes") == str(256 * MiB)


def test_update_of_a_stopped_container_fails(runtime, bundles):
    cid = runtime.new_id()
    assert runtime("run", "--keep", "--bundle", bundles.make(["true"]), cid).returncode == 0
    p = runtime("update", "--pids-limit", "5", cid)
    assert p.returncode == 1 and "stopped" in p.stderr


# --- events and ps -----------------------------------------------------------------------------

def alloc_spec(bundles, tmp_path: Path, mib: int, limit: int | None = None,
               hold: bool = True) -> dict:
    """Waits for /out/go, then allocates mib MiB: held in tmpfs (charged to the container's
    cgroup), or passing through a shell command substitution (a peak, for the OOM killer)."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    alloc = (f"head -c {mib * MiB} /dev/zero > /dev/shm/x" if hold
             else f"x=$(head -c {mib * MiB} /dev/zero | tr '\\0' a)")
    spec = bundles.spec(["sh", "-c", "while [ ! -e /out/go ]; do sleep 0.05; done; "
                                     f"{alloc}; echo held > /out/held; sleep 100"])
    spec["mounts"].append({"destination": "/out", "type": "bind", "source": str(out),
                           "options": ["rbind", "rw"]})
    if limit:
        spec["linux"]["resources"]["memory"] = {"limit": limit, "swap": limit}
    return spec


def stats(runtime, cid: str) -> dict:
    p = runtime("events", "--stats", cid)
    assert p.returncode == 0, p.stderr
    ev = json.loads(p.stdout)
    assert ev["type"] == "stats" and ev["id"] == cid
    return ev["data"]


def test_events_stats_move_when_the_container_allocates(runtime, bundles, tmp_path):
    cid = runtime.new_id()
    spec = alloc_spec(bundles, tmp_path, 40)
    spec["linux"]["resources"]["pids"] = {"limit": 100}
    assert runtime("run", "-d", "--bundle", bundles.write(spec), cid).returncode == 0
    runtime.state(cid)
    before = stats(runtime, cid)
    assert set(before) >= {"cpu", "cpuset", "memory", "pids", "blkio", "hugetlb"}
    assert before["pids"] == {"current": 2, "limit": 100} or before["pids"]["limit"] == 100
    (tmp_path / "out" / "go").touch()
    assert wait_for(lambda: (tmp_path / "out" / "held").exists(), 20)
    after = stats(runtime, cid)
    assert after["memory"]["usage"]["usage"] > before["memory"]["usage"]["usage"] + 30 * MiB
    assert after["memory"]["usage"]["max"] >= after["memory"]["usage"]["usage"]
    assert after["cpu"]["usage"]["total"] > before["cpu"]["usage"]["total"]
    assert after["pids"]["current"] >= 1


def events_until_oom(rt, bundles, tmp_path: Path, mib: int, limit: int, min_stats: int,
                     timeout: float) -> tuple[str, list[dict]]:
    """Streams `events` while the container outgrows its memory limit; returns its id and
    the events seen. Shared by the hybrid and the pure v2 layout, which count OOM kills in
    different files, so each caller checks the kernel's own counter itself."""
    cid = rt.new_id()
    spec = alloc_spec(bundles, tmp_path, mib, limit=limit, hold=False)
    assert rt("run", "-d", "--bundle", bundles.write(spec), cid).returncode == 0
    rt.state(cid)
    out = tmp_path / "events.out"
    with open(out, "wb") as f:
        ev = subprocess.Popen(rt.cmd("events", "--interval", "200ms", cid), stdout=f,
                              stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: out.read_text().count('"stats"') >= min_stats, timeout), \
            out.read_text()
        (tmp_path / "out" / "go").touch()
        assert wait_for(lambda: '"type":"oom"' in out.read_text(), timeout), out.read_text()
        rt("kill", cid, "KILL")  # if the OOM killer has not stopped it already
        ev.wait(timeout)  # events ends when the container has stopped
    finally:
        if ev.poll() is None:
            ev.kill()
            ev.wait()
    return cid, [json.loads(line) for line in out.read_text().splitlines()]


def test_events_stream_stats_and_an_oom(runtime, bundles, tmp_path):
    cid, lines = events_until_oom(runtime, bundles, tmp_path, 200, 64 * MiB, 2, 20)
    assert {"type": "oom", "id": cid} in lines
    assert all(e["id"] == cid for e in lines)


def test_events_of_a_stopped_container_fails(runtime, bundles):
    cid = runtime.new_id()
    assert runtime("run", "--keep", "--bundle", bundles.make(["true"]), cid).returncode == 0
    p = runtime("events", "--stats", cid)
    assert p.returncode == 1 and "not running" in p.stderr
    assert runtime("events", "--interval", "soon", cid).returncode == 1


def test_ps_json_lists_every_process(runtime, bundles):
    cid = start(runtime, bundles, ["sh", "-c", "sleep 100 & sleep 100 & wait"])
    assert wait_for(lambda: len(json.loads(runtime("ps", "--format", "json", cid).stdout))
                    == 3)
    pids = json.loads(runtime("ps", "--format", "json", cid).stdout)
    assert runtime.state(cid)["pid"] in pids
    assert sorted(pids) == sorted(int(x) for x in rd(cid, "pids", "cgroup.procs").split())
    p = runtime("ps", cid, "-o", "pid,comm")
    assert p.returncode == 0 and p.stdout.split()[:2] == ["PID", "COMMAND"]
    assert p.stdout.count("sleep") == 2
    assert runtime("kill", "--all", cid, "9").returncode == 0
    assert wait_for(lambda: runtime.state(cid)["status"] == "stopped")
    assert runtime("ps", "--format", "json", cid).stdout.strip() == "null"


# --- devices -------------------------------------------------------------------------------------

DEVICE_CHECK = """
try() {
  if out=$( (eval "$2") 2>&1 ); then echo "$1 ok"
  else case $out in *"not permitted"*) echo "$1 EPERM";; *) echo "$1 other";; esac; fi
}
try null-rw ': < /dev/null && : > /dev/null'
try zero-r 'head -c1 /dev/zero >/dev/null'
try urandom-r 'head -c1 /dev/urandom >/dev/null'
try random-r 'head -c1 /dev/random >/dev/null'
try full-r 'head -c1 /dev/full >/dev/null'
try ptmx-rw 'exec 3<>/dev/ptmx'
try tty-r 'exec 3</dev/tty'
try fuse-rw 'exec 3<>/dev/fuse'
try loop-r 'exec 3</dev/loopctl'
try disk-r 'exec 3</dev/disk0'
try disk-w 'exec 3>/dev/disk0'
try mknod 'mknod /tmp/n c 1 3 && : > /tmp/n'
"""


def device_spec(bundles, rules: list[dict] | None = None) -> dict:
    """Nodes for fuse, loop-control and a block device, and rules that allow fuse rw, the
    block device read-only, and loop-control rw only to take it back."""
    if not os.path.exists("/dev/loop0"):
        pytest.skip("no /dev/loop0 to open")
    ma, mi = 7, 0  # a loop device: opening it needs nothing but the device rules
    spec = bundles.spec(["sh", "-c", DEVICE_CHECK])
    for caps in spec["process"]["capabilities"].values():
        caps.append("CAP_MKNOD")  # the node is the rules' business, the mknod(2) the cap's
    spec["root"]["readonly"] = False
    spec["root"]["path"] = bundles.private_rootfs()
    spec["linux"]["devices"] = [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600},
        {"path": "/dev/loopctl", "type": "c", "major": 10, "minor": 237, "fileMode": 0o600},
        {"path": "/dev/disk0", "type": "b", "major": ma, "minor": mi, "fileMode": 0o600}]
    spec["linux"]["resources"]["devices"] = rules if rules is not None else [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
        {"allow": True, "type": "b", "major": ma, "minor": mi, "access": "r"},
        {"allow": True, "type": "c", "major": 10, "minor": 237, "access": "rw"},
        {"allow": False, "type": "c", "major": 10, "minor": 237, "access": "rw"}]
    return spec


# tty: no controlling terminal (ENXIO), which shows the device rules let the open through.
EXPECTED_DEVICES = {"null-rw": "ok", "zero-r": "ok", "urandom-r": "ok", "random-r": "ok",
                    "full-r": "ok", "ptmx-rw": "ok", "tty-r": "other", "fuse-rw": "ok",
                    "loop-r": "EPERM", "disk-r": "ok", "disk-w": "EPERM", "mknod": "ok"}
# With every device allowed, the same opens succeed: the EPERMs above are the rules'.
EXPECTED_ALLOW_ALL = dict(EXPECTED_DEVICES, **{"loop-r": "ok", "disk-w": "ok"})


def device_results(stdout: str) -> dict[str, str]:
    return dict(line.split() for line in stdout.splitlines() if line.strip())


def test_device_rules_hold_inside_v1(runtime, bundles):
    spec = device_spec(bundles)
    cid = runtime.new_id()
    p = runtime("run", "--keep", "--bundle", bundles.write(spec), cid)
    assert p.returncode == 0, p.stderr
    assert device_results(p.stdout) == EXPECTED_DEVICES
    lst = rd(cid, "devices", "devices.list").splitlines()
    assert lst[0] == "c 10:229 rw" and "c 10:237 rw" not in lst  # granted, then taken back
    assert "c 1:3 rwm" in lst
    assert runtime("delete", cid).returncode == 0
    p = runtime("run", "--bundle", bundles.write(device_spec(bundles, [
        {"allow": True, "access": "rwm"}])), runtime.new_id())
    assert device_results(p.stdout) == EXPECTED_ALLOW_ALL


def test_exec_is_held_by_the_same_device_rules(runtime, bundles):
    spec = device_spec(bundles)
    spec["process"]["args"] = ["sleep", "100"]
    cid = runtime.new_id()
    assert runtime("run", "-d", "--bundle", bundles.write(spec), cid).returncode == 0
    runtime.state(cid)
    p = runtime("exec", cid, "sh", "-c", DEVICE_CHECK)
    assert device_results(p.stdout) == EXPECTED_DEVICES


def test_hybrid_host_container_and_exec_join_the_cgroup2_hierarchy(runtime, bundles):
    """On a hybrid host the container's cgroup is also in the cgroup2 hierarchy, whatever
    its resources: the `0::` line of /proc/PID/cgroup is what tools read (runc's exec
    test compares it between init and an exec'd process)."""
    cid = start(runtime, bundles, ["sleep", "100"])
    pid = runtime.state(cid)["pid"]
    init_line = Path(f"/proc/{pid}/cgroup").read_text().splitlines()[-1]
    assert init_line == f"0::/yacr/{cid}"
    p = runtime("exec", cid, "cat", "/proc/self/cgroup")
    assert p.returncode == 0, p.stderr
    # the container has a cgroup namespace: inside, its own cgroup is the root
    assert p.stdout.splitlines()[-1] == "0::/"
    assert str(pid) in rd(cid, "unified", "cgroup.procs").split()
    p = runtime("exec", "-d", "--pid-file", str(Path(bundles.base) / "exec.pid"), cid,
                "sleep", "100")
    assert p.returncode == 0, p.stderr
    exec_pid = (Path(bundles.base) / "exec.pid").read_text()
    assert Path(f"/proc/{exec_pid}/cgroup").read_text().splitlines()[-1] == init_line


# --- cgroups that exist before the container -------------------------------------------------

@pytest.fixture
def own_cgroup_path():
    """A top-level cgroupsPath of the test's own, removed (in every hierarchy) afterwards."""
    name = f"yacr-test-{uuid.uuid4().hex[:10]}"
    yield name
    for h in CGROUP.iterdir():
        d = h / name
        if d.is_dir():
            if (d / "freezer.state").exists():
                (d / "freezer.state").write_text("THAWED")
            for sub in sorted(d.glob("**/"), key=lambda x: len(x.parts), reverse=True):
                sub.rmdir()


def test_a_frozen_cgroup_is_refused_not_waited_on(runtime, bundles, own_cgroup_path):
    """create into a cgroup someone froze would leave init in the refrigerator and the
    runtime waiting for it: refused at once (runc's words), and nothing is left."""
    frozen = CGROUP / "freezer" / own_cgroup_path
    frozen.mkdir()
    (frozen / "freezer.state").write_text("FROZEN")
    spec = bundles.spec(["true"])
    spec["linux"]["cgroupsPath"] = "/" + own_cgroup_path
    for cmd in (["run", "-d"], ["create"]):
        cid = runtime.new_id()
        t = time.monotonic()
        p = runtime(*cmd, "--bundle", bundles.write(spec), cid, timeout=30)
        assert time.monotonic() - t < 10
        assert p.returncode == 1
        assert "container's cgroup unexpectedly frozen" in p.stderr, p.stderr
        assert runtime.containers_left() == []
    assert frozen.is_dir()  # not the runtime's to remove: it existed before


def test_a_cgroup_frozen_during_create_fails_create(runtime, bundles, own_cgroup_path,
                                                    tmp_path):
    """Frozen while init waits for the prestart hooks to end: the runtime notices within a
    second, kills init (thawing it, or it would never die) and removes what it made."""
    spec = bundles.spec(["true"])
    spec["linux"]["cgroupsPath"] = "/" + own_cgroup_path
    state = CGROUP / "freezer" / own_cgroup_path / "freezer.state"
    spec["hooks"] = {"prestart": [{"path": "/bin/sh",
                                   "args": ["sh", "-c", f"echo FROZEN > {state}"]}]}
    cid = runtime.new_id()
    p = runtime("create", "--bundle", bundles.write(spec), cid, timeout=30)
    assert p.returncode == 1
    assert "container's cgroup unexpectedly frozen" in p.stderr, p.stderr
    assert runtime.containers_left() == []
    assert not any((h / own_cgroup_path).exists() for h in CGROUP.iterdir())


def test_a_shared_cgroup_is_used_with_a_warning(runtime, bundles, own_cgroup_path):
    spec = bundles.spec(["sleep", "100"])
    spec["linux"]["cgroupsPath"] = "/" + own_cgroup_path
    b = bundles.write(spec)
    first, second = runtime.new_id(), runtime.new_id()
    p = runtime("run", "-d", "--bundle", b, first)
    assert p.returncode == 0 and "not empty" not in p.stderr, p.stderr
    p = runtime("run", "-d", "--bundle", b, second)
    assert p.returncode == 0, p.stderr
    assert "container's cgroup is not empty" in p.stderr, p.stderr
    procs = (CGROUP / "pids" / own_cgroup_path / "cgroup.procs").read_text().split()
    assert {str(runtime.state(c)["pid"]) for c in (first, second)} <= set(procs)
    # the second delete leaves the cgroup its first user made and still uses
    assert runtime("delete", "--force", second).returncode == 0
    assert (CGROUP / "pids" / own_cgroup_path).is_dir()
    assert runtime("delete", "--force", first).returncode == 0
    assert not (CGROUP / "pids" / own_cgroup_path).exists()


def test_delete_removes_a_cgroup_that_existed_before_once_it_is_empty(runtime, bundles,
                                                                      own_cgroup_path):
    """As runc: the container's cgroup goes with it even if someone made it beforehand
    (a failed create leaves such a cgroup alone, see the frozen case above)."""
    pre = CGROUP / "pids" / own_cgroup_path
    pre.mkdir()
    spec = bundles.spec(["sleep", "100"])
    spec["linux"]["cgroupsPath"] = "/" + own_cgroup_path
    cid = runtime.new_id()
    assert runtime("run", "-d", "--bundle", bundles.write(spec), cid).returncode == 0
    assert str(runtime.state(cid)["pid"]) in (pre / "cgroup.procs").read_text().split()
    assert runtime("delete", "--force", cid).returncode == 0
    assert not any((h / own_cgroup_path).exists() for h in CGROUP.iterdir())


def test_empty_cpusets_above_the_container_are_filled_from_the_nearest_ancestor(
        runtime, bundles, own_cgroup_path):
    """A parent made by someone else (a pod's cgroup, made with mkdir -p) starts with empty
    cpuset.cpus and cpuset.mems, and no task can join a cpuset under it (ENOSPC). Every
    empty level, up to the nearest ancestor that has both, is filled from above; a level
    that has one of them keeps it and hands it down."""
    root = CGROUP / "cpuset"
    top = root / own_cgroup_path
    pod = top / "pod"
    pod.mkdir(parents=True)
    assert (top / "cpuset.cpus").read_text().strip() == ""  # the root has no clone_children
    first_cpu = root.joinpath("cpuset.cpus").read_text().strip().split(",")[0].split("-")[0]
    (top / "cpuset.cpus").write_text(first_cpu)  # chosen CPUs, memory nodes left empty
    mems = root.joinpath("cpuset.mems").read_text().strip()
    spec = bundles.spec(["sleep", "100"])
    spec["linux"]["cgroupsPath"] = f"/{own_cgroup_path}/pod/ct"
    cid = runtime.new_id()
    p = runtime("run", "-d", "--bundle", bundles.write(spec), cid)
    assert p.returncode == 0, p.stderr
    pid = runtime.state(cid)["pid"]
    for level in (top, pod, pod / "ct"):
        assert (level / "cpuset.cpus").read_text().strip() == first_cpu, level
        assert (level / "cpuset.mems").read_text().strip() == mems, level
    assert str(pid) in (pod / "ct" / "cgroup.procs").read_text().split()
    assert runtime("delete", "--force", cid).returncode == 0
    assert pod.is_dir() and not (pod / "ct").exists()  # only what yacr made is removed


# --- cleanup -------------------------------------------------------------------------------

def test_delete_removes_every_cgroup(runtime, bundles):
    cid = start(runtime, bundles, ["sh", "-c", "sleep 100 & sleep 100"],
                {"hugepageLimits": [{"pageSize": "2MB", "limit": 0}]})
    dirs = cgroup_dirs(cid)
    assert {d.parent.parent.name for d in dirs} >= {"memory", "cpu", "pids", "devices",
                                                     "freezer", "unified"}
    assert runtime("delete", "--force", cid).returncode == 0
    assert not cgroup_dirs(cid)


def test_delete_force_after_the_runtime_was_sigkilled(runtime, bundles):
    """`yacr run` killed with SIGKILL leaves a running container and its state: delete
    --force must still find and remove every cgroup."""
    spec = bundles.spec(["sh", "-c", "sleep 100 & sleep 100"])
    spec["linux"]["resources"]["pids"] = {"limit": 20}
    cid = runtime.new_id()
    with open(os.devnull, "wb") as null:
        fg = subprocess.Popen(runtime.cmd("run", "--bundle", bundles.write(spec), cid),
                              stdin=subprocess.DEVNULL, stdout=null, stderr=null)
    try:
        assert wait_for(lambda: runtime("state", cid).returncode == 0
                        and runtime.state(cid)["status"] == "running", 10)
        fg.send_signal(signal.SIGKILL)
        fg.wait()
        assert runtime.state(cid)["status"] == "running"
        assert cgroup_dirs(cid)
        p = runtime("delete", "--force", cid)
        assert p.returncode == 0, p.stderr
        assert not cgroup_dirs(cid)
        assert runtime("state", cid).returncode == 1
    finally:
        if fg.poll() is None:
            fg.kill()
            fg.wait()


def test_delete_force_after_the_runtime_was_sigkilled_during_create(runtime, bundles,
                                                                    tmp_path):
    """Killed in a createRuntime hook: init dies with it, the state says `creating` with a
    dead creator (stopped), and delete --force removes the cgroups create had made."""
    marker = tmp_path / "in-hook"
    spec = bundles.spec(["true"])
    spec["hooks"] = {"createRuntime": [{"path": "/bin/sh",
                                        "args": ["sh", "-c", f"touch {marker}; sleep 100"]}]}
    cid = runtime.new_id()
    with open(os.devnull, "wb") as null:
        cr = subprocess.Popen(runtime.cmd("create", "--bundle", bundles.write(spec), cid),
                              stdin=subprocess.DEVNULL, stdout=null, stderr=null,
                              start_new_session=True)
    try:
        assert wait_for(marker.exists, 10)
        assert cgroup_dirs(cid)
        os.killpg(cr.pid, signal.SIGKILL)  # the runtime and its hook
        cr.wait()
        assert runtime.state(cid)["status"] == "stopped"
        p = runtime("delete", "--force", cid)
        assert p.returncode == 0, p.stderr
        assert not cgroup_dirs(cid)
    finally:
        if cr.poll() is None:
            os.killpg(cr.pid, signal.SIGKILL)
            cr.wait()


# --- layouts --------------------------------------------------------------------------------------

def in_pure_v1(*args: str) -> list[str]:
    """Run yacr with the cgroup2 mount hidden: the host then looks pure v1."""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            'umount /sys/fs/cgroup/unified && exec "$@"', "sh", YACR, *args]


def test_pure_v1_host(runtime, bundles):
    cid = runtime.new_id()
    root = str(runtime.root)
    spec = bundles.spec(["sleep", "100"])
    spec["linux"]["resources"]["pids"] = {"limit": 9}
    b = bundles.write(spec)
    # stdio to files: a detached container's init keeps the runtime's stdio open
    p = subprocess.run(in_pure_v1("--root", root, "run", "-d", "--bundle", b, cid),
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30)
    assert p.returncode == 0
    st = json.loads(subprocess.run(in_pure_v1("--root", root, "state", cid),
                                   capture_output=True, text=True).stdout)
    runtime.pids.add(st["pid"])
    assert rd(cid, "pids", "pids.max") == "9"
    assert "0::/yacr" not in Path(f"/proc/{st['pid']}/cgroup").read_text()
    assert subprocess.run(in_pure_v1("--root", root, "delete", "--force", cid)).returncode == 0
    # on pure v1, v2 keys and hugetlb (no v1 hierarchy here) are errors that say why
    for res, msg in (({"unified": {"pids.max": "5"}}, "this host has only cgroup v1"),
                     ({"hugepageLimits": [{"pageSize": "2MB", "limit": 0}]},
                      "no hugetlb cgroup controller")):
        spec = bundles.spec(["true"])
        spec["linux"]["resources"].update(res)
        p = subprocess.run(in_pure_v1("--root", root, "run", "--bundle", bundles.write(spec),
                                      runtime.new_id()), capture_output=True, text=True)
        assert p.returncode == 1 and msg in p.stderr, p.stderr


def test_systemd_cgroup_flag_is_a_clear_error(runtime, bundles):
    p = runtime("--systemd-cgroup", "create", "--bundle", bundles.make(["true"]),
                runtime.new_id())
    assert p.returncode == 1 and "systemd" in p.stderr
