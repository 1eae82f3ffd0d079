"""A wasm container through containerd: `ctr run --runc-binary yacr` with the handler
annotation, on an OCI image whose rootfs is only the module (built here from C)."""

from __future__ import annotations

import shutil
import uuid

import pytest

from client_util import wait_for
from conftest import BUILD
from oci_image import build_wasm_archive
from test_containerd import BINARIES, containerd, ctr  # noqa: F401 - the private daemon
from test_cri import cri  # noqa: F401 - the private daemon with a CRI `yacr` handler

pytestmark = pytest.mark.skipif(
    any(shutil.which(b) is None for b in (*BINARIES, "clang")),
    reason="needs containerd (ctr, containerd-shim-runc-v2) and clang")

WASM_IMAGE = "docker.io/library/yacr-wasm:test"


@pytest.fixture(scope="module")
def wasm_image(containerd):  # noqa: F811 - the fixture imported above
    archive = build_wasm_archive(str(BUILD / "wasm"), str(containerd.base), WASM_IMAGE)
    p = containerd.ctr("image", "import", archive)
    assert p.returncode == 0, f"ctr image import failed: {p.stderr}"
    yield WASM_IMAGE
    p = containerd.ctr("image", "rm", WASM_IMAGE)
    assert p.returncode == 0, p.stderr


def test_ctr_runs_a_wasm_module_with_the_annotation(ctr, wasm_image):  # noqa: F811
    p = ctr.run("--rm", "--annotation", "run.oci.handler=wasm", wasm_image, ctr.new_id(),
                "/hello.wasm")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "hello from wasm: /hello.wasm\n"
    p = ctr.run("--rm", "--annotation", "module.wasm.image/variant=compat", wasm_image,
                ctr.new_id(), "/probe.wasm", "exit", "9")
    assert p.returncode == 9, p.stderr


def test_ctr_kills_a_running_module(ctr, wasm_image):  # noqa: F811
    cid = ctr.new_id()
    p = ctr.run("-d", "--null-io", "--annotation", "run.oci.handler=wasm", wasm_image, cid,
                "/probe.wasm", "spin")
    assert p.returncode == 0, p.stderr
    ctr.wait_status(cid, "RUNNING")
    p = ctr("task", "kill", "-s", "SIGTERM", cid)
    assert p.returncode == 0, p.stderr
    ctr.wait_status(cid, "STOPPED", timeout=5)
    ctr("task", "delete", cid)


# --- Kubernetes: a pod whose containers are picked by compat-smart ---------------------------

CRI_WASM_IMAGE = "docker.io/library/yacr-wasm:cri"


def test_cri_pod_mixes_wasm_and_native_containers(cri, tmp_path):  # noqa: F811
    """What a RuntimeClass pod gets: the pod annotation module.wasm.image/variant=compat-smart
    (passed through by the handler's pod_annotations) makes the module a wasm container and
    leaves the pause container and a busybox sidecar native, in one pod."""
    from test_cri import IMAGE

    pb, rt = cri.pb, cri.rt
    tar = build_wasm_archive(str(BUILD / "wasm"), str(tmp_path), CRI_WASM_IMAGE, ("probe",))
    p = cri.ctr("image", "import", tar)
    assert p.returncode == 0, p.stderr
    if not cri.has_image(CRI_WASM_IMAGE):
        cri.stop_daemon()  # containerd 1.6's CRI plugin learns imported images at start
        cri.start()
    assert cri.has_image(CRI_WASM_IMAGE)

    logs = tmp_path / "logs"
    logs.mkdir()
    sandbox = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="wasm-pod", uid=uuid.uuid4().hex,
                                       namespace="default", attempt=0),
        annotations={"module.wasm.image/variant": "compat-smart"},
        log_directory=str(logs),
        linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.NODE))))
    sid = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=sandbox, runtime_handler="yacr"),
                           timeout=120).pod_sandbox_id
    made = []
    try:
        for name, image, cmd in (("wasm", CRI_WASM_IMAGE, ["/probe.wasm", "exit", "7"]),
                                 ("native", IMAGE, ["sh", "-c", "echo native; exit 5"])):
            cid = rt.CreateContainer(pb.CreateContainerRequest(
                pod_sandbox_id=sid, sandbox_config=sandbox,
                config=pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name, attempt=0),
                                          image=pb.ImageSpec(image=image), command=cmd,
                                          log_path=f"{name}.log")),
                timeout=120).container_id
            made.append(cid)
            rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=60)

        def status(cid):
            return rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid),
                                      timeout=30).status

        assert wait_for(lambda: all(status(c).state == pb.CONTAINER_EXITED for c in made), 30)
        # 7: the module ran (the image has no shell); 5: the sidecar ran natively
        assert [status(c).exit_code for c in made] == [7, 5]
        assert "native" in (logs / "native.log").read_text()
    finally:
        for cid in made:
            cri.remove_container(cid)
        cri.remove_pod(sid)
        cri.img.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=CRI_WASM_IMAGE)),
                            timeout=60)
