"""The handler registry: what finally replaces the container's init (execve, or a Wasm engine).

A handler is chosen per container, from annotations first (crun's and youki's
conventions), then by asking each handler. Handlers are imported lazily, so a
native container never pays for an engine it does not use.
"""

from __future__ import annotations

from yacr.errors import YacrError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from yacr.log import Log
    from yacr.spec import Spec

HANDLER_ANNOTATION = "run.oci.handler"
VARIANT_ANNOTATION = "module.wasm.image/variant"


class Handler:
    """Base of every handler: resolve the entrypoint before start, replace init after it."""

    name = "native"
    aliases: tuple[str, ...] = ()

    def prepare(self, spec: Spec, log: Log | None = None) -> None:
        """In the runtime, before init is forked: load or compile whatever is needed."""

    def before_pivot(self) -> None:
        """In init, before pivot_root: the last moment the host's files are in reach."""

    def resolve(self, arg0: str, env: dict[str, str], cwd: str) -> str:
        """Inside the container, before waiting for start: the path that `run` will use."""
        raise NotImplementedError

    def run(self, path: str, args: list[str], env: dict[str, str]) -> None:
        """Replace the init process; never returns on success."""
        raise NotImplementedError


def select(spec: Spec) -> Handler:
    ann = spec.annotations
    wanted = ann.get(HANDLER_ANNOTATION)
    variant = ann.get(VARIANT_ANNOTATION)
    if wanted is None and variant in ("compat", "compat-smart"):
        wanted = "wasm" if variant == "compat" else None
        if variant == "compat-smart":
            wanted = "wasm-smart"
    if wanted in (None, "", "native"):
        from yacr.handlers.native import Native

        return Native()
    if wanted in ("wasm", "wasm-smart", "wasmtime"):
        from yacr.handlers import wasm

        return wasm.select(spec, "wasm-smart" if wanted == "wasm-smart" else "wasm")
    raise YacrError(f"annotations.{HANDLER_ANNOTATION}: unknown handler {wanted!r}")


def select_for_exec(state: object) -> Handler:
    """exec always runs a native program from the rootfs, whatever init was."""
    if getattr(state, "handler", "native") == "wasm":
        from yacr.handlers.wasm import NativeExec

        return NativeExec()
    from yacr.handlers.native import Native

    return Native()


def names() -> list[str]:
    return ["native", "wasm"]
