"""A wasm container through containerd: `ctr run --runc-binary yacr` with the handler
annotation, on an OCI image whose rootfs is only the module (built here from C)."""

from __future__ import annotations

import shutil

import pytest

from conftest import BUILD
from oci_image import build_oci_archive
from test_containerd import BINARIES, containerd, ctr  # noqa: F401 - the private daemon

pytestmark = pytest.mark.skipif(
    any(shutil.which(b) is None for b in (*BINARIES, "clang")),
    reason="needs containerd (ctr, containerd-shim-runc-v2) and clang")

WASM_IMAGE = "docker.io/library/yacr-wasm:test"


@pytest.fixture(scope="module")
def wasm_image(containerd):  # noqa: F811 - the fixture imported above
    from yacr.wasm.build import build_samples, wasm_rootfs

    mods = build_samples(str(BUILD / "wasm"))
    root = wasm_rootfs(str(containerd.base / "wasm-rootfs"),
                       {"hello.wasm": mods["hello"], "probe.wasm": mods["probe"]})
    archive = build_oci_archive(root, str(containerd.base / "wasm-image.tar"), WASM_IMAGE)
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
