"""`yacr features`: what this runtime supports, in the runtime-spec features.md shape."""

from __future__ import annotations

from yacr import OCI_VERSION, __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def features() -> dict[str, Any]:
    from yacr import handlers
    from yacr.linux import capabilities, mounts
    from yacr.linux.namespaces import FLAGS
    from yacr.linux.process import apparmor_enabled, selinux_enabled
    from yacr.spec import HOOK_KINDS
    from yacr.wasm import feature_annotations as wasm_features

    opts = sorted(set(mounts.FLAGS) | set(mounts.PROPAGATION) | set(mounts.RECURSIVE)
                  | {"tmpcopyup"})
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": opts,
        "linux": {
            "namespaces": list(FLAGS),
            "capabilities": list(capabilities.NAMES),
            "cgroup": {"v1": True, "v2": True, "systemd": True, "systemdUser": False,
                       "rdma": True},
            "seccomp": {"enabled": False},
            "apparmor": {"enabled": apparmor_enabled()},
            "selinux": {"enabled": selinux_enabled()},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": True}},
        },
        "annotations": {
            "io.github.yacr.version": __version__,
            "io.github.yacr.handlers": ",".join(handlers.names()),
            **wasm_features(),
        },
    }
