"""Runtime adapters for the benchmarks: how to invoke yacr, yacr-wasm, runc, crun and runsc.

A runtime is an argv prefix with its own --root under the session's work
directory, plus the kind of bundle it runs ("native" busybox bundles, or
"wasm" bundles from the Wasm issue's builder). Runtimes register factories in
`registry.RUNTIMES`; a factory raises Skip with the reason when its runtime
cannot run here, and the harness prints it.

crun 1.8 refuses hybrid cgroup hosts; on those it runs inside a private mount
namespace where /sys/fs/cgroup/unified is unmounted. The wrapper doing that is
a few lines of C compiled here (its own start-up cost is measured and shown),
or a shell fallback when there is no compiler.

gVisor (runsc) runs the same bundles with the flags in RUNSC_FLAGS: the ptrace
platform (KVM is not usable in every VM), no network stack (the other runtimes
get an empty network namespace too), and --oci-seccomp so that a bundle's
seccomp profile is enforced inside the sandbox rather than ignored. Each
container is a sandbox process (the Sentry), a gofer, and ptrace stubs, all in
the container's cgroup: the memory figures count them all.

Every bundle exists in two configurations, with yacr's default seccomp profile
(what `yacr spec --seccomp` writes, as containerd and podman pass one) and
without any (runc's template, as Kubernetes runs pods unless asked otherwise):
`Environment.workload(..., seccomp=...)` derives either from what a builder made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from yacr.bench import registry
from yacr.bench.registry import Skip

RUNSC_FLAGS = ("--network=none", "--platform=ptrace", "--oci-seccomp")
"""runsc's global flags in every invocation (see the module's docstring)."""

SECCOMP_CONFIGS = (("none", False), ("default profile", True))
"""The two configurations of every lifecycle figure: (label, with yacr's default
profile). The label is the figure's `param`, shown in a `seccomp` column."""

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

    def workload(self, kind: str, workload: str, seccomp: bool | None = None) -> str:
        """The bundle of a workload for a kind of runtime, built on first use; a builder's
        Skip is remembered, so it is reported once and not retried. seccomp True or
        False: the same bundle with yacr's default profile or without any profile,
        whatever the builder chose (see `with_seccomp`)."""
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
        if seccomp is None:
            return got
        vkey = (kind, f"{workload}/{'seccomp' if seccomp else 'noseccomp'}")
        if vkey not in self._bundles:
            self._bundles[vkey] = with_seccomp(got, seccomp)
        return self._bundles[vkey]  # type: ignore[return-value]


def with_seccomp(bundle: str, seccomp: bool) -> str:
    """A sibling of `bundle` (BUNDLE.seccomp or BUNDLE.noseccomp) with the same config.json
    but linux.seccomp set to yacr's default profile (`yacr spec --seccomp`'s) or removed.
    The rootfs is not copied: root.path points at the original's."""
    import json

    from yacr.bundle import write_config
    from yacr.linux.seccomp_default import default_profile
    from yacr.specgen import DEFAULT_CAPS

    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    root = spec.get("root", {})
    if root.get("path") and not os.path.isabs(root["path"]):
        root["path"] = os.path.join(bundle, root["path"])
    linux = spec.setdefault("linux", {})
    if seccomp:
        linux["seccomp"] = default_profile(DEFAULT_CAPS)
    else:
        linux.pop("seccomp", None)
    out = f"{bundle.rstrip('/')}.{'seccomp' if seccomp else 'noseccomp'}"
    write_config(out, spec)
    return out


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
                 kind: str = "native", note: str = "", flags: tuple[str, ...] = ()) -> None:
        self.name = name
        self.exe = exe
        self.prefix = prefix
        self.root = root
        self.kind = kind
        self.note = note
        self.flags = flags
        """Global flags beyond --root that every invocation gets (printed with figures)."""
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
                "note": self.note, "flags": " ".join(self.flags)}


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


@registry.runtime("runsc")
def runsc(env: Environment) -> Runtime:
    """gVisor: every container is its own sandbox (a user-space kernel, the Sentry, and a
    gofer that opens files for it), started with RUNSC_FLAGS."""
    path = shutil.which("runsc")
    if path is None:
        raise Skip("not installed (apt-get install runsc; make setup installs it)")
    root = state_root(env, "runsc")
    note = (f"gVisor with {' '.join(RUNSC_FLAGS)}: each container is a sandbox (the Sentry), "
            "a gofer and ptrace stubs, all counted in its memory figures")
    return Runtime("runsc", path, [path, "--root", root, *RUNSC_FLAGS], root, "native",
                   note, RUNSC_FLAGS)


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


def cgroup_layout() -> str:
    if _hybrid():
        return "hybrid cgroups (v1 controllers, cgroup2 at /sys/fs/cgroup/unified)"
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "cgroup v2"
    return "cgroup v1"


def machine_info() -> dict[str, object]:
    """What the figures depend on besides the runtimes: the CPU (model, how many, virtual
    or not), memory, kernel, cgroup layout, and the interpreter yacr runs on."""
    import platform

    model = ""
    vm = False
    cores: set[tuple[str, str]] = set()
    phys = core = ""
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1])
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                k, v = k.strip(), v.strip()
                if k == "model name" and not model:
                    model = v
                elif k == "flags":
                    # CPUID's hypervisor bit: the CPUs are virtual, and shared with others
                    vm = vm or "hypervisor" in v.split()
                elif k == "physical id":
                    phys = v
                elif k == "core id":
                    core = v
                elif not k and (phys or core):
                    cores.add((phys, core))
                    phys = core = ""
        if phys or core:
            cores.add((phys, core))
    except OSError:
        pass
    u = os.uname()
    return {"cpu_model": model, "cpus": os.cpu_count() or 0,
            "cores": len(cores) or os.cpu_count() or 0, "virtual": vm,
            "memory_gib": round(mem / 1024 / 1024, 1), "kernel": u.release, "arch": u.machine,
            "cgroups": cgroup_layout(),
            "python": f"{platform.python_implementation()} {platform.python_version()} "
                      f"({sys.executable})"}


def machine_description(info: dict[str, object] | None = None) -> str:
    """One line for captions and summaries: `a VM, x86_64, 2 vCPUs (MODEL), 23 GiB, Linux
    6.18, hybrid cgroups`."""
    m = info or machine_info()
    cpus = m["cpus"]
    cpu = f"{cpus} {'vCPUs' if m['virtual'] else 'CPUs'}"
    if m["cores"] and m["cores"] != cpus:
        cpu += f" on {m['cores']} cores"
    if m["cpu_model"]:
        cpu += f" ({m['cpu_model']})"
    cg = str(m["cgroups"]).split(" (")[0]
    return (f"{'a VM, ' if m['virtual'] else ''}{m['arch']}, {cpu}, "
            f"{float(m['memory_gib']):.0f} GiB, Linux {m['kernel']}, {cg}")  # type: ignore[arg-type]


def versions(env: Environment) -> dict[str, str]:
    """The version of every runtime the harness knows, available here or not,
    so that a summary names what it compared against and what it could not."""
    out = {}
    for name, factory in registry.RUNTIMES.items():
        try:
            out[name] = factory(env).version()
        except Skip:
            out[name] = "not available"
        except Exception as e:  # noqa: BLE001 - a version is information, never fatal
            out[name] = f"? ({type(e).__name__})"
    return out
