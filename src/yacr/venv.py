"""The virtual environment yacr runs from, for the optional packages installed in it
(wasmtime's engine library, jeepney for --systemd-cgroup, rich and matplotlib for bench).

The front-end starts Python with -I -S from a sealed copy of the interpreter (see
launcher/yacr-launch.c), so site.py never ran: sys.prefix is not the venv and its
site-packages is not on sys.path. The commands that need a package from it find the
venv here, from the interpreter, the launcher script and $YACR_CLI, as the directory
holding a pyvenv.cfg.
"""

from __future__ import annotations

import posix
import sys


def venvs() -> list[str]:
    out = []
    starts = [sys.executable, sys.argv[0] if sys.argv else ""]
    cli = posix.environ.get(b"YACR_CLI")
    if cli:
        starts.append(cli.decode())
    for start in starts:
        d = start
        for _ in range(4):
            d = d.rpartition("/")[0]
            if not d:
                break
            if d not in out and posix.access(f"{d}/pyvenv.cfg", posix.F_OK):
                out.append(d)
                break
    return out


def site_packages() -> list[str]:
    ver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return [f"{v}/lib/{ver}/site-packages" for v in venvs()]


def add_site_packages() -> None:
    """Put the venv's site-packages on sys.path (with its .pth files), once."""
    import site

    for sp in site_packages():
        if sp not in sys.path and posix.access(sp, posix.F_OK):
            site.addsitedir(sp)
