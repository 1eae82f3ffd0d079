"""Image size: the bytes of each bundle, as it sits on disk and as a registry would ship it.

Images are registered in `registry.IMAGES` (busybox and a static native hello
here; the Wasm hello by the Wasm issue's plugin). A bundle's size is its
config.json plus its whole rootfs, wherever root.path points: files by their
size, symlinks by their length (busybox is one binary and ~400 links). The
gzipped tar is what a registry would store. Ratios are to the busybox bundle.
"""

from __future__ import annotations

import io
import json
import os
import tarfile

from yacr.bench import registry
from yacr.bench.registry import Result, Skip

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from yacr.bench.registry import Context


def bundle_size(bundle: str) -> dict[str, int]:
    """Apparent bytes, file count and tar.gz bytes of a bundle and its rootfs."""
    config = os.path.join(bundle, "config.json")
    with open(config) as f:
        root = json.load(f)["root"]["path"]
    rootfs = root if os.path.isabs(root) else os.path.join(bundle, root)
    total = os.path.getsize(config)
    files = 1
    for top, dirs, names in os.walk(rootfs):
        for n in names + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            total += os.lstat(os.path.join(top, n)).st_size
            files += 1
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        tar.add(config, arcname="config.json")
        tar.add(rootfs, arcname="rootfs")
    return {"bytes": total, "files": files, "targz_bytes": buf.tell()}


def plot(data: dict[str, Any], out: str) -> list[str]:
    from yacr.bench import plots

    return plots.images(data, out)


@registry.scenario("images", "Image size: bundle bytes", order=50, plot=plot)
def run(ctx: Context) -> Result:
    res = Result(references=("busybox",))
    sizes = {}
    with ctx.ui.task("images: build and measure bundles", len(registry.IMAGES)) as advance:
        for name, build in registry.IMAGES.items():
            try:
                sizes[name] = bundle_size(build(ctx.env))
            except Exception as e:  # noqa: BLE001 - Skip, or a broken builder: the rest go on
                why = str(e) if isinstance(e, Skip) else f"failed: {type(e).__name__}: {e}"
                res.skipped[name] = why
                ctx.ui.print(f"  skipping image {name}: {why}")
            advance()
    if not sizes:
        raise Skip("no image could be built")
    for name, s in sizes.items():
        res.add("bundle size on disk", name, "KiB", [s["bytes"] / 1024])
    for name, s in sizes.items():
        res.add("bundle size as tar.gz", name, "KiB", [s["targz_bytes"] / 1024])
    for name, s in sizes.items():
        res.add("files in bundle", name, "", [s["files"]])
    res.raw["sizes"] = sizes
    res.notes.append("config.json plus the rootfs; files by size, symlinks by length.")
    return res
