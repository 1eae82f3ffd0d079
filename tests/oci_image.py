"""Build a single-layer OCI image archive from a rootfs directory, offline, in pure Python.

The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...)
packed in one uncompressed tar, which is what `ctr image import` and
`podman load` (oci-archive) accept:

- the layer is an uncompressed tar of the rootfs (owner root, paths relative),
  so its digest is also its diff_id;
- the config carries architecture/os, rootfs.diff_ids and config.Cmd;
- index.json names the manifest with `org.opencontainers.image.ref.name` and
  `io.containerd.image.name`, both the full reference, and gives its platform.

What the clients make of it (containerd 1.6.20, podman 4.3.1):
- `ctr image import FILE` needs no `--all-platforms`: the config's amd64/linux
  matches the default platform. It names the image after
  io.containerd.image.name, else after ref.name when that is a full reference;
  a bare tag in ref.name gives `import-<date>:<tag>` (--base-name), and with
  neither annotation it stores the blobs but creates no image.
- `podman load -i FILE` names the image after ref.name.
- `podman import ROOTFS.tar NAME` takes the plain layer tar (build_rootfs_tar).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

LAYER_MT = "application/vnd.oci.image.layer.v1.tar"
CONFIG_MT = "application/vnd.oci.image.config.v1+json"
MANIFEST_MT = "application/vnd.oci.image.manifest.v1+json"
INDEX_MT = "application/vnd.oci.image.index.v1+json"
EPOCH = 0  # fixed mtimes: the same rootfs gives the same digests


def _blob(data: bytes) -> tuple[str, int]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), len(data)


def _norm(ti: tarfile.TarInfo) -> tarfile.TarInfo:
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    ti.mtime = EPOCH
    return ti


def rootfs_tar(rootfs: str) -> bytes:
    """An uncompressed tar of rootfs, entries sorted, owned by root, no leading './'."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            rel = os.path.relpath(dirpath, rootfs)
            names = sorted(dirnames + filenames)
            for n in names:
                full = os.path.join(dirpath, n)
                arc = n if rel == "." else f"{rel}/{n}"
                ti = _norm(tf.gettarinfo(full, arcname=arc))
                if ti.isreg():
                    with open(full, "rb") as f:
                        tf.addfile(ti, f)
                else:
                    tf.addfile(ti)
    return buf.getvalue()


def image_blobs(rootfs: str, name: str, cmd: list[str] | None = None
                ) -> tuple[dict[str, bytes], bytes]:
    """The blobs (digest -> bytes) and index.json of a one-layer image of rootfs."""
    layer = rootfs_tar(rootfs)
    layer_digest, layer_size = _blob(layer)
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": cmd or ["sh"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "yacr tests/oci_image.py"}],
    }, sort_keys=True).encode()
    config_digest, config_size = _blob(config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MT,
        "config": {"mediaType": CONFIG_MT, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": LAYER_MT, "digest": layer_digest, "size": layer_size}],
    }, sort_keys=True).encode()
    manifest_digest, manifest_size = _blob(manifest)
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": INDEX_MT,
        "manifests": [{
            "mediaType": MANIFEST_MT,
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {
                "org.opencontainers.image.ref.name": name,
                "io.containerd.image.name": name,
            },
        }],
    }, sort_keys=True).encode()
    blobs = {layer_digest: layer, config_digest: config, manifest_digest: manifest}
    return blobs, index


def build_oci_archive(rootfs: str, dest: str, name: str,
                      cmd: list[str] | None = None) -> str:
    """Write an OCI image archive of rootfs to dest (a .tar), named `name`; returns dest."""
    blobs, index = image_blobs(rootfs, name, cmd)
    files: list[tuple[str, bytes]] = [
        ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
        ("index.json", index),
    ]
    for digest, data in blobs.items():
        files.append((f"blobs/sha256/{digest.split(':', 1)[1]}", data))
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tf:
        for d in ("blobs", "blobs/sha256"):
            ti = _norm(tarfile.TarInfo(d))
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            tf.addfile(ti)
        for path, data in files:
            ti = _norm(tarfile.TarInfo(path))
            ti.size = len(data)
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(data))
    return dest


def build_rootfs_tar(rootfs: str, dest: str) -> str:
    """A plain rootfs tar (for `podman import`); returns dest."""
    with open(dest, "wb") as f:
        f.write(rootfs_tar(rootfs))
    return dest


def build_wasm_archive(build_dir: str, base: str, name: str,
                       modules: tuple[str, ...] = ("hello", "probe")) -> str:
    """An OCI image archive (base/wasm-image.tar) whose rootfs holds only the sample
    modules, compiled from C into build_dir; returns its path."""
    from yacr.wasm.build import build_samples, wasm_rootfs

    mods = build_samples(build_dir)
    root = wasm_rootfs(f"{base}/wasm-rootfs", {f"{m}.wasm": mods[m] for m in modules})
    return build_oci_archive(root, f"{base}/wasm-image.tar", name)
