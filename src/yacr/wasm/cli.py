"""`yacr wasm compile FILE...`: fill the AOT cache ahead of time, as WAMR's wamrc does.

`create` then only deserializes (and verifies) the compiled module, even for
the first container of an image. A cold path: ordinary imports are fine here.
"""

from __future__ import annotations

import argparse

from yacr.errors import UsageError, YacrError
from yacr.wasm import WASM_MAGIC

TYPE_CHECKING = False
if TYPE_CHECKING:
    from yacr.log import Log


def main(args: list[str], log: Log) -> int:
    ap = argparse.ArgumentParser(prog="yacr wasm", description="Wasm tools.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compile", help="compile modules into the AOT cache")
    c.add_argument("files", nargs="+", metavar="FILE")
    c.add_argument("--rlimit-as", action="store_true",
                   help="the variant used when the container sets RLIMIT_AS (small reservation)")
    c.add_argument("--force", action="store_true", help="recompile even if cached")
    a = ap.parse_args(args)
    from yacr.wasm import capi
    from yacr.wasm.cache import Cache

    engine = capi.Engine(capi.Settings(small_reservation=a.rlimit_as, parallel=True))
    cache = Cache(engine, log=log)
    why = cache.usable()
    if why is not None:
        raise YacrError(f"wasm compile: the cache {cache.dir} cannot be used: {why}")
    for f in a.files:
        try:
            with open(f, "rb") as fh:
                wasm = fh.read()
        except OSError as e:
            raise UsageError(f"wasm compile: {f}: {e.strerror}") from None
        if wasm[:4] != WASM_MAGIC:
            raise UsageError(f"wasm compile: {f} is not a WebAssembly module (no \\0asm magic)")
        res = cache.load(wasm, f, force=a.force)
        word = {"hit": "already cached", "miss": "compiled", "recompiled": "recompiled"}
        print(f"{f}: {word.get(res.status, res.status)} -> {res.path}"
              + (f" (old entry: {res.detail})" if res.detail else ""))
    return 0
