"""Runtime adapters for the benchmarks: how to invoke yacr, runc and crun on one bundle.

crun 1.8 refuses hybrid cgroup hosts; on those it runs inside a private mount
namespace where /sys/fs/cgroup/unified is unmounted. The wrapper doing that is
a few lines of C compiled here (its own start-up cost is measured and shown),
or a shell fallback when there is no compiler.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

_WRAPPER_C = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <sys/mount.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    if (unshare(CLONE_NEWNS) < 0) { perror("unshare"); return 125; }
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) { perror("mount"); return 125; }
    umount2("/sys/fs/cgroup/unified", MNT_DETACH);
    execvp(argv[1], argv + 1);
    perror("exec");
    return 127;
}
"""


# Peak RSS must be read from a parent that is itself small: a process spawned by this Python
# process inherits its high-water mark (the kernel carries it across vfork and exec).
_PEAKRSS_C = r"""
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    pid_t pid = fork();
    if (pid == 0) { execvp(argv[1], argv + 1); _exit(127); }
    int status; struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) return 126;
    fprintf(stderr, "peak-rss-kib %ld\n", ru.ru_maxrss);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
"""


def compiled_helper(env: Environment, name: str, source: str) -> str | None:
    """Compile one of the small C helpers into the work directory (None without gcc)."""
    exe = os.path.join(env.work, name)
    if not os.path.exists(exe):
        if shutil.which("gcc") is None:
            return None
        src = exe + ".c"
        with open(src, "w") as f:
            f.write(source)
        subprocess.run(["gcc", "-O2", "-o", exe, src], check=True)
    return exe


class Environment:
    """Where bundles, state roots and helpers of one benchmark session live."""

    def __init__(self, work: str) -> None:
        self.work = work
        os.makedirs(work, exist_ok=True)
        self._rootfs: str | None = None

    @property
    def rootfs(self) -> str:
        if self._rootfs is None:
            from yacr.bundle import build_rootfs

            self._rootfs = build_rootfs(os.path.join(self.work, "rootfs"))
        return self._rootfs

    def bundle(self, name: str, args: list[str], **kw: object) -> str:

        from yacr.bundle import busybox_spec, write_config

        path = os.path.join(self.work, "bundles", name)
        spec = busybox_spec(self.rootfs, args, **kw)  # type: ignore[arg-type]
        # One bundle for every runtime: crun 1.8 refuses spec versions newer than it knows.
        spec["ociVersion"] = "1.0.2"
        write_config(path, spec)
        return path


class Runtime:
    """One runtime: its executable, and the argv prefix that runs it with its own --root."""

    def __init__(self, name: str, exe: str, prefix: list[str], note: str = "") -> None:
        self.name = name
        self.exe = exe
        self.prefix = prefix
        self.note = note

    def cmd(self, *args: str) -> list[str]:
        return self.prefix + list(args)

    def version(self) -> str:
        try:
            v = subprocess.run([self.exe, "--version"], capture_output=True, text=True,
                               timeout=10)
            return v.stdout.splitlines()[0] if v.stdout else "?"
        except (OSError, subprocess.TimeoutExpired):
            return "?"


def _hybrid() -> bool:
    return os.path.exists("/sys/fs/cgroup/unified/cgroup.controllers") and \
        not os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def crun_wrapper(env: Environment) -> list[str]:
    if not _hybrid():
        return []
    exe = compiled_helper(env, "nounified", _WRAPPER_C)
    if exe:
        return [exe]
    return ["unshare", "-m", "sh", "-c",
            'umount /sys/fs/cgroup/unified; exec "$@"', "sh"]


def yacr_cli() -> str:
    """The yacr front-end that started us (it says so in YACR_CLI), else the launcher next
    to this interpreter (.venv/bin/yacr), else "" for `python -m yacr`."""
    cand = os.environ.get("YACR_CLI", "")
    if cand and os.path.exists(cand):
        return cand
    cand = os.path.join(os.path.dirname(sys.executable), "yacr")
    return cand if os.path.exists(cand) else ""


def select(names: list[str], env: Environment) -> list[Runtime]:
    out: list[Runtime] = []
    for n in names:
        n = n.strip()
        root = os.path.join(env.work, "state", n)
        if n == "yacr":
            exe = yacr_cli()
            prefix = [exe] if exe else [sys.executable, "-m", "yacr"]
            out.append(Runtime("yacr", exe or sys.executable, prefix + ["--root", root]))
        elif n in ("runc", "crun"):
            path = shutil.which(n)
            if path is None:
                print(f"skipping {n}: not installed (apt-get install {n})")
                continue
            wrap = crun_wrapper(env) if n == "crun" else []
            note = "in a private mount namespace without the cgroup2 mount" if wrap else ""
            out.append(Runtime(n, path, wrap + [path, "--root", root], note))
        else:
            print(f"skipping {n}: unknown runtime")
    return out


def machine_description() -> str:
    cpus = os.cpu_count()
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024 // 1024
    except OSError:
        pass
    u = os.uname()
    return f"{u.machine}, {cpus} CPUs, {mem} GiB, Linux {u.release}"


