"""README.md's "Using it by hand" runs as written, the way a newcomer types it."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from conftest import REPO, cgroup_dirs

IDS = ("c0", "c1", "c2")


def readme_block(section: str) -> str:
    """The first ```sh block after the heading `## section`."""
    text = (REPO / "README.md").read_text()
    rest = text[text.index(f"## {section}\n"):]
    start = rest.index("```sh\n") + len("```sh\n")
    return rest[start:rest.index("```", start)]


def test_using_it_by_hand(tmp_path: Path):
    block = readme_block("Using it by hand")
    assert "yacr run -d" in block and "yacr exec" in block  # the right block
    # The README is typed in the checkout: here, a directory whose .venv is the checkout's
    # (so that build/mybundle is not made in the real one).
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    (tmp_path / "readme.sh").write_text(block)
    # The ids are the README's, so the state goes to a private /run/yacr (a mount namespace
    # of its own) and whatever the commands leave is deleted there before it goes away.
    cleanup = "; ".join(f"yacr delete --force {c} >/dev/null 2>&1" for c in IDS)
    wrapper = ("mkdir -p /run/yacr && mount -t tmpfs -o mode=0711 yacr /run/yacr && "
               f"trap '{cleanup}' EXIT && set -e -x && . ./readme.sh")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # a fresh shell
    with tempfile.TemporaryFile() as out:
        # what the newcomer types into the container's shell at `yacr run c0`
        p = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c",
                            wrapper], cwd=tmp_path, env=env, stdout=out,
                           stderr=subprocess.STDOUT, timeout=300,
                           input=b"echo hello from $(hostname); exit\n")
        out.seek(0)
        text = out.read().decode(errors="replace")
    assert p.returncode == 0, text
    # the shell ran what was typed (the line itself is echoed by the terminal, with its $)
    assert re.search(r"^hello from [^$\s]+\s*$", text, re.M), text
    assert '"status": "running"' in text, text
    assert "sleep 1000" in text, text  # exec's ps saw the container's process
    for cid in IDS:
        assert cgroup_dirs(cid) == [], cid
