"""Runtime adapters for the benchmarks: how to invoke yacr, yacr-wasm, runc and crun.

A runtime is an argv prefix with its own --root under the session's work
directory, plus the kind of bundle it runs ("native" busybox bundles, or
"wasm" bundles from the Wasm issue's builder). Runtimes register factories in
`registry.RUNTIMES`; a factory raises Skip with the reason when its runtime
cannot run here, and the harness prints it.

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

from yacr.bench import registry
from yacr.bench.registry import Skip

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

_HELLO_C = r"""
#include <unistd.h>
int main(void) { write(1, "hello\n", 6); return 0; }
"""


def compiled_helper(env: Environment, name: str, source: str, *flags: str) -> str | None:
    """Compile one of the small C helpers into the work directory (None without gcc)."""
    exe = os.path.join(env.work, name)
    if not os.path.exists(exe):
        if shutil.which("gcc") is None:
            return None
        src = exe + ".c"
        with open(src, "w") as f:
            f.write(source)
        subprocess.run(["gcc", "-O2", *flags, "-o", exe + ".tmp", src], check=True,
                       capture_output=True)
        os.rename(exe + ".tmp", exe)
    return exe


class Environment:
    """Where bundles, state roots and helpers of one benchmark session live.

    Bundles are built once per session and shared by every runtime and container: all
    are read-only (root.readonly), so 1500 containers can share one rootfs."""

    def __init__(self, work: str) -> None:
        self.work = work
        os.makedirs(work, exist_ok=True)
        self._rootfs: str | None = None
        self._bundles: dict[tuple[str, str], str | Skip] = {}

    @property
    def rootfs(self) -> str:
        if self._rootfs is None:
            from yacr.bundle import build_rootfs

            self._rootfs = build_rootfs(os.path.join(self.work, "rootfs"))
        return self._rootfs

    def bundle(self, name: str, args: list[str], rootfs: str | None = None) -> str:
        """A busybox bundle (or one on another rootfs) running args, with no terminal."""
        from yacr.bundle import busybox_spec, write_config

        path = os.path.join(self.work, "bundles", name)
        spec = busybox_spec(rootfs or self.rootfs, args)
        # One bundle for every runtime: crun 1.8 refuses spec versions newer than it knows.
        spec["ociVersion"] = "1.0.2"
        write_config(path, spec)
        return path

    def workload(self, kind: str, workload: str) -> str:
        """The bundle of a workload for a kind of runtime, built on first use; a builder's
        Skip is remembered, so it is reported once and not retried."""
        key = (kind, workload)
        if key not in self._bundles:
            builder = registry.BUILDERS.get(kind)
            try:
                if builder is None:
                    raise Skip(f"no bundle builder for {kind} workloads")
                self._bundles[key] = builder(self, workload)
            except Skip as e:
                self._bundles[key] = e
            except Exception as e:  # noqa: BLE001 - a broken builder skips its runtime only
                self._bundles[key] = Skip(f"building the {kind} {workload!r} bundle failed: "
                                          f"{type(e).__name__}: {e}")
        got = self._bundles[key]
        if isinstance(got, Skip):
            raise got
        return got


NATIVE_ARGS = {"true": ["true"], "sleep": ["sleep", "1000000"], "hello": ["echo", "hello"]}


@registry.workload_builder("native")
def native_bundle(env: Environment, workload: str) -> str:
    """busybox bundles: what runc and crun are compared on."""
    if workload not in NATIVE_ARGS:
        raise Skip(f"no native {workload!r} workload")
    return env.bundle(workload, NATIVE_ARGS[workload])


@registry.image("busybox")
def busybox_image(env: Environment) -> str:
    """The busybox bundle every native scenario runs (one binary plus applet links)."""
    return native_bundle(env, "true")


@registry.image("static hello")
def static_hello_image(env: Environment) -> str:
    """A bundle holding only a statically linked C hello (gcc -static): the smallest
    native image, the natural counterpart of a Wasm hello."""
    exe = compiled_helper(env, "hello-static", _HELLO_C, "-static", "-s")
    if exe is None:
        raise Skip("gcc is not installed (apt-get install gcc libc6-dev)")
    rootfs = os.path.join(env.work, "hello-rootfs")
    for d in ("dev", "proc", "sys", "tmp"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    shutil.copy2(exe, os.path.join(rootfs, "hello"))
    return env.bundle("static-hello", ["/hello"], rootfs=rootfs)


@registry.image("wasm hello")
def wasm_hello_placeholder(env: Environment) -> str:
    raise Skip("no Wasm hello builder yet (the Wasm issue registers one in "
               "yacr.bench.wasm)")


class Runtime:
    """One runtime: its executable, the argv prefix that runs it with its own --root, and
    the kind of bundles it runs."""

    def __init__(self, name: str, exe: str, prefix: list[str], root: str,
                 kind: str = "native", note: str = "") -> None:
        self.name = name
        self.exe = exe
        self.prefix = prefix
        self.root = root
        self.kind = kind
        self.note = note
        self._version: str | None = None

    def cmd(self, *args: str) -> list[str]:
        return self.prefix + list(args)

    def wrapper(self) -> list[str]:
        """What runs before the runtime itself (crun's namespace wrapper), if anything."""
        return self.prefix[: self.prefix.index(self.exe)] if self.exe in self.prefix else []

    def version(self) -> str:
        if self._version is None:
            try:
                v = subprocess.run([self.exe, "--version"], capture_output=True, text=True,
                                   timeout=10)
                self._version = v.stdout.splitlines()[0] if v.stdout else "?"
            except (OSError, subprocess.TimeoutExpired):
                self._version = "?"
        return self._version

    def describe(self) -> dict[str, str]:
        return {"exe": self.exe, "version": self.version(), "kind": self.kind,
                "note": self.note}


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


def state_root(env: Environment, name: str) -> str:
    return os.path.join(env.work, "state", name)


def _yacr(env: Environment, name: str, kind: str) -> Runtime:
    root = state_root(env, name)
    exe = yacr_cli()
    prefix = [exe] if exe else [sys.executable, "-m", "yacr"]
    return Runtime(name, exe or sys.executable, prefix + ["--root", root], root, kind)


@registry.runtime("yacr")
def yacr_native(env: Environment) -> Runtime:
    return _yacr(env, "yacr", "native")


@registry.runtime("yacr-wasm")
def yacr_wasm(env: Environment) -> Runtime:
    """yacr running Wasm bundles: available once a "wasm" bundle builder is registered."""
    if "wasm" not in registry.BUILDERS:
        raise Skip("no Wasm bundle builder yet (the Wasm issue adds it in yacr.bench.wasm)")
    return _yacr(env, "yacr-wasm", "wasm")


def _installed(env: Environment, name: str) -> Runtime:
    path = shutil.which(name)
    if path is None:
        raise Skip(f"not installed (apt-get install {name})")
    root = state_root(env, name)
    wrap = crun_wrapper(env) if name == "crun" else []
    note = "in a private mount namespace without the cgroup2 mount (crun 1.8 refuses " \
        "hybrid hosts)" if wrap else ""
    return Runtime(name, path, wrap + [path, "--root", root], root, "native", note)


@registry.runtime("runc")
def runc(env: Environment) -> Runtime:
    return _installed(env, "runc")


@registry.runtime("crun")
def crun(env: Environment) -> Runtime:
    return _installed(env, "crun")


def select(names: list[str], env: Environment, say: object = print
           ) -> tuple[list[Runtime], dict[str, str]]:
    """The runtimes asked for that can run here, and why the others cannot."""
    out: list[Runtime] = []
    skipped: dict[str, str] = {}
    for n in (x.strip() for x in names):
        if not n:
            continue
        factory = registry.RUNTIMES.get(n)
        try:
            if factory is None:
                raise Skip(f"unknown runtime (known: {', '.join(registry.RUNTIMES)})")
            rt = factory(env)
            os.makedirs(rt.root, exist_ok=True)
            out.append(rt)
        except Skip as e:
            skipped[n] = str(e)
            say(f"skipping {n}: {e}")  # type: ignore[operator]
    return out, skipped


def machine_description() -> str:
    cpus = os.cpu_count()
    mem = 0
    model = ""
    vm = False
    try:
        with open("/proc/meminfo") as f:
            mem = round(int(f.readline().split()[1]) / 1024 / 1024)
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    # CPUID's hypervisor bit: the CPUs are virtual, and shared with others
                    vm = " hypervisor" in line
                    break
    except OSError:
        pass
    u = os.uname()
    cg = "hybrid cgroups" if _hybrid() else (
        "cgroup v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "cgroup v1")
    cpu = f"{cpus} {'vCPUs' if vm else 'CPUs'}" + (f" ({model})" if model else "")
    return f"{'a VM, ' if vm else ''}{u.machine}, {cpu}, {mem} GiB, Linux {u.release}, {cg}"
