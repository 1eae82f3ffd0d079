"""The native handler: execve the program from the container's rootfs."""

from __future__ import annotations

import posix

from yacr.handlers import Handler
from yacr.linux.process import lookup_executable


class Native(Handler):
    name = "native"
    aliases = ("default",)

    def resolve(self, arg0: str, env: dict[str, str], cwd: str) -> str:
        return lookup_executable(arg0, env, cwd)

    def run(self, path: str, args: list[str], env: dict[str, str]) -> None:
        posix.execve(path, args, env)
