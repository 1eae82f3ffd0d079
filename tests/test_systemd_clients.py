"""The clients of a production node drive yacr --systemd-cgroup: containerd's runc shim with
SystemdCgroup (ctr, and a pod through the CRI plugin, as the kubelet's systemd driver
sets it up) and podman with --cgroup-manager systemd. Each container is a transient
scope while it runs, and nothing stays in systemd or /sys/fs/cgroup afterwards.

Runs where systemd manages a pure cgroup v2 hierarchy (the VM of make test-vm); the
same clients with cgroupfs are tests/test_containerd.py, test_cri.py and test_podman.py.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from client_util import wait_for
from test_containerd import IMAGE as CTR_IMAGE
from test_containerd import containerd, ctr  # noqa: F401 - the fixtures, shared
from test_cri import CONFIG, CRI, IMAGE, pod_config, start_cri
from test_podman import IMAGE as PODMAN_IMAGE
from test_podman import Podman, podman_session  # noqa: F401
from test_systemd import show, systemd_host, units_matching

CGROUP = Path("/sys/fs/cgroup")

pytestmark = pytest.mark.skipif(not systemd_host(), reason="systemd does not manage a "
                                "pure cgroup v2 hierarchy here (see make test-vm)")


def cgroup_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cgroup").read_text().strip()


# --- containerd: ctr with the runc shim's systemd option -------------------------------------

def test_ctr_run_exec_kill_delete_in_a_scope(ctr):  # noqa: F811
    cid = ctr.new_id()
    unit = f"yacr-ctr-{cid}.scope"
    p = ctr.run("-d", "--null-io", "--runc-systemd-cgroup", "--cgroup",
                f"system.slice:yacr-ctr:{cid}", CTR_IMAGE, cid, "sleep", "1000")
    assert p.returncode == 0, p.stderr
    ctr.wait_status(cid, "RUNNING", timeout=60)
    pid, _ = ctr.task_status(cid)
    assert cgroup_of(pid) == f"0::/system.slice/{unit}"
    assert show(unit, "ActiveState", "Delegate") == {"ActiveState": "active",
                                                      "Delegate": "yes"}
    p = ctr("task", "exec", "--fifo-dir", str(ctr.d.fifo_dir), "--exec-id", "e1", cid,
            "sh", "-c", "echo from-exec; exit 4")
    assert p.returncode == 4 and p.stdout == "from-exec\n", p.stderr
    assert ctr("task", "kill", "-s", "SIGKILL", cid).returncode == 0
    ctr.wait_status(cid, "STOPPED", timeout=60)
    assert ctr("task", "delete", cid).returncode == 0
    assert ctr("container", "delete", cid).returncode == 0
    assert not units_matching(unit)
    assert not (CGROUP / "system.slice" / unit).exists()


# --- the kubelet's path: CRI with SystemdCgroup = true ----------------------------------------

class SystemdCRI(CRI):
    config = CONFIG.replace("SystemdCgroup = false", "SystemdCgroup = true")


@pytest.fixture(scope="module")
def cri_systemd():
    yield from start_cri(SystemdCRI)


def test_a_pod_in_a_slice_with_scopes_through_cri(cri_systemd):
    """cgroup_parent is the pod's slice, as the kubelet's systemd driver names it; the
    sandbox and the container are scopes in it, limited and updated through systemd."""
    cri = cri_systemd
    pb, rt = cri.pb, cri.rt
    pod_slice = f"yacrtest-pod{uuid.uuid4().hex[:8]}.slice"
    config = pod_config(cri, "sd-pod", pod_slice)
    sid = ctr_id = ""
    try:
        sid = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=config, runtime_handler="yacr"),
                               timeout=300).pod_sandbox_id
        ctr_id = rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, sandbox_config=config,
            config=pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name="work", attempt=0),
                image=pb.ImageSpec(image=IMAGE), command=["sleep", "1000"],
                log_path="work.log",
                linux=pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(
                    memory_limit_in_bytes=96 << 20, cpu_quota=50000, cpu_period=100000)))),
            timeout=300).container_id
        rt.StartContainer(pb.StartContainerRequest(container_id=ctr_id), timeout=120)
        scopes = units_matching(f"*{ctr_id}*.scope")
        assert len(scopes) == 1, scopes
        unit = scopes[0]
        props = show(unit, "Slice", "MemoryMax", "CPUQuotaPerSecUSec", "ActiveState")
        assert props == {"Slice": pod_slice, "MemoryMax": str(96 << 20),
                         "CPUQuotaPerSecUSec": "500ms", "ActiveState": "active"}
        rt.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
            container_id=ctr_id, linux=pb.LinuxContainerResources(
                memory_limit_in_bytes=128 << 20, cpu_quota=20000, cpu_period=100000)),
            timeout=120)
        assert show(unit, "MemoryMax")["MemoryMax"] == str(128 << 20)
        r = rt.ExecSync(pb.ExecSyncRequest(container_id=ctr_id, timeout=60,
                                           cmd=["sh", "-c", "echo hi; exit 3"]), timeout=120)
        assert (r.exit_code, r.stdout) == (3, b"hi\n"), r
        rt.StopContainer(pb.StopContainerRequest(container_id=ctr_id, timeout=5),
                         timeout=120)
        cri.remove_container(ctr_id, 120)
        ctr_id = ""
        cri.remove_pod(sid, 120)
        sid = ""
        assert wait_for(lambda: not units_matching(f"*{pod_slice[:-6]}*.scope"), 30)
    finally:
        if ctr_id:
            cri.remove_container(ctr_id, 120)
        if sid:
            cri.remove_pod(sid, 120)
        from test_systemd import systemctl

        systemctl("stop", pod_slice)
    assert not units_matching(pod_slice)


# --- podman with its default cgroup manager, systemd ------------------------------------------

class SystemdPodman(Podman):
    def __init__(self, base: Path) -> None:
        super().__init__(base)
        self.argv[self.argv.index("cgroupfs")] = "systemd"

    def setup(self) -> None:
        super().setup()
        self.conf.write_text(self.conf.read_text().replace('cgroup_manager = "cgroupfs"',
                                                           'cgroup_manager = "systemd"'))


@pytest.fixture
def podman_sd(podman_session):  # noqa: F811
    """The session's store and image, driven with --cgroup-manager systemd."""
    pm = SystemdPodman(podman_session.base)
    yield pm
    pm("rm", "--all", "--force", "--time", "0")


def test_podman_run_exec_stop_rm_with_systemd(podman_sd):
    p = podman_sd("run", "--rm", PODMAN_IMAGE, "sh", "-c", "cat /proc/self/cgroup")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "0::/"  # its own cgroup namespace, rooted at the scope
    name = f"sd-{uuid.uuid4().hex[:8]}"
    p = podman_sd("run", "-d", "--name", name, PODMAN_IMAGE, "sleep", "1000")
    assert p.returncode == 0, p.stderr
    cid = p.stdout.strip()
    unit = f"libpod-{cid}.scope"
    assert show(unit, "ActiveState")["ActiveState"] == "active"
    p = podman_sd("exec", name, "sh", "-c", "echo in-exec; exit 2")
    assert p.returncode == 2 and p.stdout == "in-exec\n", p.stderr
    assert podman_sd("stop", "--time", "1", name).returncode == 0
    assert podman_sd("rm", name).returncode == 0
    assert not units_matching(unit)
