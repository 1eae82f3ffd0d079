"""The Kubernetes path: a private containerd whose CRI plugin has a `yacr` runtime handler
(what a RuntimeClass names), driven over CRI by a Python gRPC client, as the kubelet would.

The client is generated at session start from the CRI API definition vendored in
tests/cri/api.proto (runtime.v1, which containerd 1.6 serves) with grpcio-tools, the
`test` extra of pyproject.toml. The daemon gets its own root, state, sockets and CNI
directories; pods use the host network, so no CNI plugin is needed. The pause image and
the workload image are the busybox OCI archive of tests/oci_image.py, imported into the
k8s.io namespace. This machine has no CAP_SYS_RESOURCE, hence restrict_oom_score_adj.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from client_util import (
    CGROUP,
    SHIM_SOCKET_DIR,
    containerd_leftovers,
    remove_cgroup_tree,
    run,
    stop_process,
    wait_for,
)
from oci_image import build_oci_archive
from yacr.bundle import build_rootfs

REPO = Path(__file__).resolve().parent.parent
YACR = str(REPO / ".venv" / "bin" / "yacr")
PROTO = Path(__file__).resolve().parent / "cri" / "api.proto"
IMAGE = "docker.io/library/yacr-busybox:cri"
PAUSE = "docker.io/library/yacr-pause:cri"
NS = "k8s.io"
MiB = 1 << 20

pytestmark = pytest.mark.skipif(
    any(shutil.which(b) is None for b in ("containerd", "ctr", "containerd-shim-runc-v2")),
    reason="containerd is not installed (apt-get install containerd)")

CONFIG = """version = 2
root = "{b}/root"
state = "{b}/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{b}/sock"
[ttrpc]
  address = "{b}/sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "yacr"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.yacr]
      runtime_type = "io.containerd.runc.v2"
      # the pod annotations that reach each container's config.json (the wasm handler's)
      pod_annotations = ["run.oci.handler", "module.wasm.image/variant"]
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.yacr.options]
        BinaryName = "{yacr}"
        Root = "{b}/yacr-root"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{b}/cni/bin"
    conf_dir = "{b}/cni/conf"
"""


def generate_client(dest: Path):
    """api_pb2 and api_pb2_grpc from the vendored proto; None when grpcio-tools is absent."""
    try:
        from grpc_tools import protoc
    except ImportError:
        return None
    rc = protoc.main(["protoc", f"-I{PROTO.parent}", f"--python_out={dest}",
                      f"--grpc_python_out={dest}", str(PROTO)])
    assert rc == 0, "protoc failed on tests/cri/api.proto"
    sys.path.insert(0, str(dest))
    try:
        return importlib.import_module("api_pb2"), importlib.import_module("api_pb2_grpc")
    finally:
        sys.path.remove(str(dest))


class CRI:
    """The daemon, its gRPC channel and the generated CRI stubs."""

    config = CONFIG  # tests/test_systemd_clients.py runs one with SystemdCgroup = true

    def __init__(self, base: Path, pb, pb_grpc) -> None:
        self.base = base
        self.sock = str(base / "sock")
        self.pb = pb
        self.pb_grpc = pb_grpc
        self.proc: subprocess.Popen | None = None
        self.logf = None
        self.channel = None
        self.had_shim_dir = os.path.exists(SHIM_SOCKET_DIR)

    def start(self) -> None:
        import grpc

        for d in ("cni/bin", "cni/conf", "yacr-root", "logs"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        conf = self.base / "config.toml"
        conf.write_text(self.config.format(b=self.base, pause=PAUSE, yacr=YACR))
        self.logf = open(self.base / "containerd.log", "ab")
        self.proc = subprocess.Popen(["containerd", "--config", str(conf)],
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.channel = grpc.insecure_channel(f"unix://{self.sock}")
        self.rt = self.pb_grpc.RuntimeServiceStub(self.channel)
        self.img = self.pb_grpc.ImageServiceStub(self.channel)

        def ready() -> bool:
            if self.proc.poll() is not None:
                return True
            try:
                self.rt.Version(self.pb.VersionRequest(), timeout=2)
                return True
            except grpc.RpcError:
                return False

        if not wait_for(ready, 30) or self.proc.poll() is not None:
            raise AssertionError(f"containerd did not start: {self.log()[-3000:]}")

    def stop_daemon(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        stop_process(self.proc)
        if self.logf is not None:
            self.logf.close()
            self.logf = None

    def log(self) -> str:
        try:
            return (self.base / "containerd.log").read_text(errors="replace")
        except OSError:
            return ""

    def ctr(self, *args: str) -> subprocess.CompletedProcess:
        return run(["ctr", "-a", self.sock, "-n", NS, *args], timeout=120)

    def has_image(self, ref: str) -> bool:
        r = self.img.ImageStatus(self.pb.ImageStatusRequest(
            image=self.pb.ImageSpec(image=ref)), timeout=30)
        return r.image.id != ""

    def remove_container(self, cid: str, timeout: float = 60) -> None:
        self.rt.RemoveContainer(self.pb.RemoveContainerRequest(container_id=cid),
                                timeout=timeout)

    def remove_pod(self, sid: str, timeout: float = 60) -> None:
        """Stops, then removes the sandbox: the order kubelet uses, so the pause container
        goes through yacr's kill and delete as it would in a cluster."""
        self.rt.StopPodSandbox(self.pb.StopPodSandboxRequest(pod_sandbox_id=sid),
                               timeout=timeout)
        self.rt.RemovePodSandbox(self.pb.RemovePodSandboxRequest(pod_sandbox_id=sid),
                                 timeout=timeout)

    def teardown(self) -> list[str]:
        self.stop_daemon()
        return containerd_leftovers(self.base, self.sock, self.had_shim_dir, 10)


def start_cri(kind: type[CRI] = CRI):
    """A daemon with the images imported (a generator: yields it, then tears it down)."""
    base = Path(tempfile.mkdtemp(prefix="yacr-cri-"))
    stubs = generate_client(base)
    if stubs is None:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip("grpcio-tools is not installed (pip install -e '.[test]')")
    d = kind(base, *stubs)
    try:
        d.start()
        rootfs = build_rootfs(str(base / "rootfs"))
        for ref, cmd in ((IMAGE, ["sh"]), (PAUSE, ["sleep", "inf"])):
            tar = build_oci_archive(rootfs, str(base / "image.tar"), ref, cmd)
            p = d.ctr("image", "import", tar)
            assert p.returncode == 0, f"ctr image import failed: {p.stderr}"
        if not (d.has_image(IMAGE) and d.has_image(PAUSE)):
            # containerd 1.6's CRI plugin learns about imported images when it starts.
            d.stop_daemon()
            d.start()
        assert d.has_image(IMAGE) and d.has_image(PAUSE), d.log()[-2000:]
        yield d
    finally:
        problems = d.teardown()
    assert not problems, "; ".join(problems)


@pytest.fixture(scope="module")
def cri():
    yield from start_cri()


def yacr_state(cri: CRI, cid: str) -> dict | None:
    """yacr's own view, under the Root the handler's options give the runc.v2 shim."""
    p = run([YACR, "--root", str(cri.base / "yacr-root" / NS), "state", cid])
    return json.loads(p.stdout) if p.returncode == 0 else None


def cg_file(parent: str, cid: str, ctrl: str, name: str) -> str:
    return (CGROUP / ctrl / parent.strip("/") / cid / name).read_text().strip()


def pod_config(cri: CRI, name: str, cgroup_parent: str):
    """A pod on the host's network under cgroup_parent, as the kubelet would ask for it."""
    pb = cri.pb
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uuid.uuid4().hex, namespace="default",
                                       attempt=0),
        # no hostname: with the host's network the pod has the host's UTS namespace, where
        # a hostname cannot be set (runc refuses such a spec as yacr does)
        log_directory=str(cri.base / "logs"),
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=cgroup_parent,
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.NODE))))


def test_pod_lifecycle_through_cri(cri):
    pb, rt = cri.pb, cri.rt
    parent = f"/yacr-cri-{uuid.uuid4().hex[:8]}"
    v = rt.Version(pb.VersionRequest(), timeout=10)
    assert v.runtime_name == "containerd" and v.runtime_api_version.startswith("v1")

    sandbox_config = pod_config(cri, "yacr-pod", parent)
    sid = ""
    ctr_id = ""
    try:
        sid = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=sandbox_config,
                                                       runtime_handler="yacr"),
                               timeout=120).pod_sandbox_id
        st = yacr_state(cri, sid)
        assert st is not None and st["status"] == "running", cri.log()[-2000:]

        resources = pb.LinuxContainerResources(memory_limit_in_bytes=96 * MiB,
                                               cpu_shares=512, cpu_quota=50000,
                                               cpu_period=100000)
        ctr_id = rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, sandbox_config=sandbox_config,
            config=pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name="work", attempt=0),
                image=pb.ImageSpec(image=IMAGE),
                command=["sh", "-c", "head -c 30000000 /dev/zero > /dev/shm/x; "
                                     "exec sleep 1000"],
                log_path="work.log",
                linux=pb.LinuxContainerConfig(resources=resources))),
            timeout=120).container_id
        rt.StartContainer(pb.StartContainerRequest(container_id=ctr_id), timeout=60)
        assert yacr_state(cri, ctr_id)["status"] == "running"
        assert cg_file(parent, ctr_id, "memory", "memory.limit_in_bytes") == str(96 * MiB)
        assert cg_file(parent, ctr_id, "cpu", "cpu.shares") == "512"
        assert cg_file(parent, ctr_id, "cpu", "cpu.cfs_quota_us") == "50000"

        r = rt.ExecSync(pb.ExecSyncRequest(container_id=ctr_id, timeout=30,
                                           cmd=["sh", "-c", "echo hi; hostname; exit 3"]),
                        timeout=60)
        assert r.exit_code == 3, r
        assert r.stdout.split() == [b"hi", socket.gethostname().encode()], r

        # kubelet's in-place resize and CPU manager: `yacr update --resources -`
        rt.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
            container_id=ctr_id, linux=pb.LinuxContainerResources(
                memory_limit_in_bytes=128 * MiB, cpu_shares=256, cpu_quota=20000,
                cpu_period=100000, cpuset_cpus="0")), timeout=60)
        assert cg_file(parent, ctr_id, "memory", "memory.limit_in_bytes") == str(128 * MiB)
        assert cg_file(parent, ctr_id, "cpu", "cpu.shares") == "256"
        assert cg_file(parent, ctr_id, "cpu", "cpu.cfs_quota_us") == "20000"
        assert cg_file(parent, ctr_id, "cpuset", "cpuset.cpus") == "0"

        def stats():
            return rt.ContainerStats(pb.ContainerStatsRequest(container_id=ctr_id),
                                     timeout=30).stats

        assert wait_for(lambda: stats().memory.working_set_bytes.value > 25 * MiB, 15), \
            stats()
        assert stats().cpu.usage_core_nano_seconds.value > 0

        rt.StopContainer(pb.StopContainerRequest(container_id=ctr_id, timeout=5), timeout=60)
        status = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=ctr_id),
                                    timeout=30).status
        # 128 + SIGTERM: stopped by StopContainer's signal, not by its SIGKILL fallback
        assert status.state == pb.CONTAINER_EXITED and status.exit_code == 143, status
        cri.remove_container(ctr_id)
        assert yacr_state(cri, ctr_id) is None
        ctr_id = ""
        cri.remove_pod(sid)
        assert yacr_state(cri, sid) is None
        sid = ""
        left = [d for d in (CGROUP.iterdir()) if (d / parent.strip("/")).exists()
                and any(p.is_dir() for p in (d / parent.strip("/")).iterdir())]
        assert not left, f"container cgroups left under {parent}: {left}"
    finally:
        if ctr_id:
            cri.remove_container(ctr_id)
        if sid:
            cri.remove_pod(sid)
        time.sleep(0.1)
        remove_cgroup_tree(parent)
