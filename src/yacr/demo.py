"""`make demo`: build a busybox bundle and show a container's isolation through the real CLI."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid

from yacr.bundle import build_rootfs, make_bundle

SCRIPT = r"""
echo "hostname:        $(hostname)"
echo "my pid:          $$ (pid 1 means a new pid namespace)"
echo "processes:       $(ps -o pid= | wc -l) visible"
echo "uid:             $(id -u)"
echo "root is:         $(awk '$5 == "/" {print $9, $4}' /proc/self/mountinfo)"
echo "mounts:          $(awk '{print $5}' /proc/self/mountinfo | tr '\n' ' ')"
echo "capabilities:    $(grep CapEff /proc/self/status)"
echo "network links:   $(ls /sys/class/net | tr '\n' ' ')"
touch /etc/x 2>/dev/null && echo "rootfs:          writable" || echo "rootfs:          read-only"
exit 7
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--yacr", required=True)
    ap.add_argument("--build", required=True)
    a = ap.parse_args()
    rootfs = build_rootfs(os.path.join(a.build, "rootfs"))
    bundle = os.path.join(a.build, "linux")
    make_bundle(bundle, rootfs, ["sh", "-c", SCRIPT])
    root = os.path.join(a.build, "state")
    cid = f"demo-{uuid.uuid4().hex[:8]}"
    print(f"$ yacr --root {root} run --bundle {bundle} {cid}")
    sys.stdout.flush()
    rc = subprocess.run([a.yacr, "--root", root, "run", "--bundle", bundle, cid]).returncode
    print(f"exit status: {rc} (the container's own)")
    print()
    print("$ yacr features | head -3")
    out = subprocess.run([a.yacr, "features"], capture_output=True, text=True).stdout
    print("\n".join(out.splitlines()[:3]))
    print()
    from yacr.wasm.demo import run_demo

    wasm_ok = run_demo(a.yacr, a.build, root)
    return 0 if rc == 7 and wasm_ok else 1


if __name__ == "__main__":
    sys.exit(main())
