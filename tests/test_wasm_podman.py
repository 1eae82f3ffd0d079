"""A wasm container through podman (and conmon): `podman run --annotation` picks the wasm
handler, on an image whose rootfs is only the modules (built here from C), next to the
busybox image the podman tests load."""

from __future__ import annotations

import shutil

import pytest

from client_util import wait_for
from conftest import BUILD
from oci_image import build_wasm_archive
from test_podman import podman, podman_session, yacr_state  # noqa: F401 - the fixtures

pytestmark = pytest.mark.skipif(
    any(shutil.which(b) is None for b in ("podman", "conmon", "clang")),
    reason="needs podman, conmon and clang (apt-get install podman clang)")

WASM_IMAGE = "docker.io/library/yacr-wasm:podman"


@pytest.fixture(scope="module")
def wasm_image(podman_session):  # noqa: F811 - the fixture imported above
    archive = build_wasm_archive(str(BUILD / "wasm"), str(podman_session.base), WASM_IMAGE)
    p = podman_session("load", "--input", archive)
    assert p.returncode == 0, f"podman load failed: {p.stderr}"
    yield WASM_IMAGE
    p = podman_session("rmi", "--force", WASM_IMAGE)
    assert p.returncode == 0, p.stderr


def test_podman_runs_a_module_with_each_annotation(podman, wasm_image):  # noqa: F811
    p = podman("run", "--rm", "--annotation", "run.oci.handler=wasm", wasm_image,
               "/hello.wasm")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "hello from wasm: /hello.wasm\n"
    # args, env and exit status come from podman's spec
    p = podman("run", "--rm", "--annotation", "module.wasm.image/variant=compat",
               "--env", "GREETING=hi", wasm_image, "/probe.wasm", "env")
    assert p.returncode == 0, p.stderr
    env = p.stdout.splitlines()
    assert "GREETING=hi" in env and "container=podman" in env, env
    p = podman("run", "--rm", "--annotation", "run.oci.handler=wasm", wasm_image,
               "/probe.wasm", "args", "a b")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "argv[0]=/probe.wasm\nargv[1]=args\nargv[2]=a b\n"
    p = podman("run", "--rm", "--annotation", "module.wasm.image/variant=compat-smart",
               wasm_image, "/probe.wasm", "exit", "7")
    assert p.returncode == 7, p.stderr


def test_podman_stops_a_spinning_module(podman, wasm_image):  # noqa: F811
    """podman stop sends SIGTERM: the module stops at once, not after the 10 s grace."""
    name = podman.new_name()
    p = podman("run", "-d", "--name", name, "--annotation", "run.oci.handler=wasm",
               wasm_image, "/probe.wasm", "spin")
    assert p.returncode == 0, p.stderr
    cid = p.stdout.strip()
    assert wait_for(lambda: podman.inspect(name)["State"]["Status"] == "running", 10)
    state = yacr_state(cid)
    assert state is not None and state["status"] == "running"
    assert state["annotations"]["run.oci.handler"] == "wasm"
    p = podman("stop", "--time", "10", name, timeout=8)
    assert p.returncode == 0, p.stderr
    info = podman.inspect(name)
    assert info["State"]["Status"] == "exited"
    assert info["State"]["ExitCode"] == 128 + 15
    assert podman("rm", name).returncode == 0
    assert yacr_state(cid) is None
