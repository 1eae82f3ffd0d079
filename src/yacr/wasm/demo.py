"""The wasm part of `make demo`: a WASI module built here from C, run as a container."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from yacr.bundle import busybox_spec, write_config


def run_demo(yacr: str, build: str, state_root: str) -> bool:
    """Build hello.wasm, a rootfs holding only it, and run it with the handler annotation;
    True if it printed its greeting and exited 0."""
    from yacr.wasm.build import sample, wasm_rootfs

    module = sample("hello", os.path.join(build, "wasm"))
    rootfs = wasm_rootfs(os.path.join(build, "wasm-rootfs"), {"hello.wasm": module})
    bundle = os.path.join(build, "wasm")
    spec = busybox_spec(rootfs, ["/hello.wasm", "from", "a", "container"])
    spec["annotations"] = {"run.oci.handler": "wasm"}
    write_config(bundle, spec)
    size = os.path.getsize(module)
    cid = f"demo-wasm-{uuid.uuid4().hex[:8]}"
    print(f"$ yacr --root {state_root} run --bundle {bundle} {cid}   "
          f"# annotation run.oci.handler=wasm, rootfs = hello.wasm ({size} bytes) only")
    sys.stdout.flush()
    p = subprocess.run([yacr, "--root", state_root, "run", "--bundle", bundle, cid],
                       capture_output=True, text=True)
    sys.stdout.write(p.stdout)
    sys.stderr.write(p.stderr)
    print(f"exit status: {p.returncode}")
    feats = subprocess.run([yacr, "features"], capture_output=True, text=True).stdout
    for line in feats.splitlines():
        if "io.github.yacr.wasm" in line or "io.github.yacr.handlers" in line:
            print(line.strip().rstrip(","))
    return p.returncode == 0 and p.stdout.startswith("hello from wasm")
