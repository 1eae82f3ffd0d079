"""Attack surface of a seccomp filter: how many syscalls a container process can make.

Measured the same way for every profile, from what the kernel holds rather than from a
profile's JSON: the filters installed on a container process are read back with
ptrace(PTRACE_SECCOMP_GET_FILTER), and the cBPF programs are run (linux/bpf.py) for
every syscall number of the x86_64 table, with arch = AUDIT_ARCH_X86_64 and all
arguments zero. A syscall counts as allowed when the verdict is ALLOW or LOG.

Arguments: a rule that looks at arguments (clone's namespace flags, socket's address
family, personality's value) is counted by its answer for zero arguments, which is the
common, harmless call (clone(0) is a plain fork, socket(0) AF_UNSPEC, personality(0)
PER_LINUX). Such syscalls are also listed apart, as "argument-dependent", since they
are allowed for some arguments and not others.

Two denominators: every number in the running kernel's x86_64 table (names from
libseccomp's seccomp_syscall_resolve_num_arch, and from NEWER for the calls this
libseccomp does not know yet), and the 362 syscalls of the table Docker's figure
"about 295 of 362" was counted on (0-334 and 424-450, Linux 5.17-6.4), so that figure
and ours compare like for like.

Reading filters needs CAP_SYS_ADMIN and an unconfined caller (the kernel refuses a
tracer that is itself under seccomp).
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from yacr import jsonio
from yacr.errors import YacrError
from yacr.linux import bpf

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# x86_64 syscalls newer than Debian 12's libseccomp (2.5.4 with its table up to 456),
# from the kernel's arch/x86/entry/syscalls/syscall_64.tbl.
NEWER_X86_64 = {335: "uretprobe", 457: "statmount", 458: "listmount",
                459: "lsm_get_self_attr", 460: "lsm_set_self_attr", 461: "lsm_list_modules",
                462: "mseal", 463: "setxattrat", 464: "getxattrat", 465: "listxattrat",
                466: "removexattrat", 467: "open_tree_attr", 468: "file_getattr",
                469: "file_setattr"}
# The table of Linux 5.17 to 6.4: the basis of the "about 295 of 362".
BASIS_362 = frozenset(range(0, 335)) | frozenset(range(424, 451))
MAX_NR = 1024

# Figures we cannot measure here, quoted as the issue (and their projects) give them.
ANCHORS = [
    ("Docker default profile (the issue's figure)", "about 295 of 362",
     "moby/profiles/seccomp/default.json, default capabilities, x86_64"),
    ("gVisor host filter (runsc)", "about 80-96",
     "the Sentry's own host syscall filter; varies with platform and options"),
    ("Nabla containers", "7", "solo5 tender: read, write, exit_group, clock_gettime, "
     "ppoll, pwrite64, pread64"),
]

PTRACE_CONT = 7
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_SECCOMP_GET_FILTER = 0x420C
PTRACE_SYSCALL = 24
PTRACE_O_TRACESYSGOOD = 0x1
PTRACE_O_EXITKILL = 0x100000
PTRACE_EVENT_STOP = 128
SIGTRAP = 5
WALL = 0x40000000


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.restype = ctypes.c_long
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    return libc


def _libseccomp() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError as e:
        raise YacrError(f"libseccomp is not available ({e}); install libseccomp2") from None
    lib.seccomp_syscall_resolve_num_arch.restype = ctypes.c_void_p
    lib.seccomp_syscall_resolve_num_arch.argtypes = [ctypes.c_uint32, ctypes.c_int]
    return lib


def syscall_table(arch: int = bpf.AUDIT_ARCH_X86_64) -> dict[int, str]:
    """Number -> name for every syscall libseccomp knows on arch (plus NEWER on x86_64)."""
    lib = _libseccomp()
    free = ctypes.CDLL(None).free
    free.argtypes = [ctypes.c_void_p]
    out: dict[int, str] = {}
    for nr in range(MAX_NR):
        p = lib.seccomp_syscall_resolve_num_arch(arch, nr)
        if p:
            out[nr] = ctypes.string_at(p).decode()
            free(p)
    if arch == bpf.AUDIT_ARCH_X86_64:
        for nr, name in NEWER_X86_64.items():
            out.setdefault(nr, name)
    return out


def syscall_name(nr: int, arch: int = bpf.AUDIT_ARCH_X86_64,
                 newer: bool = True) -> str | None:
    """One syscall's name as libseccomp knows it (x32 numbers carry X32_SYSCALL_BIT);
    with `newer`, also the names of NEWER_X86_64, which libseccomp cannot compile."""
    lib = _libseccomp()
    p = lib.seccomp_syscall_resolve_num_arch(arch, nr)
    if not p:
        return NEWER_X86_64.get(nr) if newer and arch == bpf.AUDIT_ARCH_X86_64 else None
    name = ctypes.string_at(p).decode()
    free = ctypes.CDLL(None).free
    free.argtypes = [ctypes.c_void_p]
    free(p)
    return name


def syscall_number(name: str, arch: int = bpf.AUDIT_ARCH_X86_64) -> int | None:
    """A syscall's number on arch, None where it does not exist."""
    lib = _libseccomp()
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    nr = lib.seccomp_syscall_resolve_name_arch(arch, name.encode())
    return None if nr < 0 else nr


# --- reading filters back ------------------------------------------------------------------

def _ptrace(libc: ctypes.CDLL, req: int, pid: int, addr: int = 0,
            data: Any = None) -> int:
    rc = libc.ptrace(req, pid, ctypes.c_void_p(addr), data)
    if rc == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return rc


def _filters_of_stopped(libc: ctypes.CDLL, pid: int) -> list[list[bpf.Insn]]:
    """Every filter of a tracee we hold stopped, newest first (index 0 is the newest)."""
    out = []
    for index in range(64):
        try:
            n = _ptrace(libc, PTRACE_SECCOMP_GET_FILTER, pid, index, None)
        except OSError as e:
            if e.errno == errno.ENOENT:  # no more filters
                return out
            if e.errno == errno.EINVAL and index == 0:  # seccomp is off: no filter at all
                return out
            if e.errno == errno.EMEDIUMTYPE:
                raise YacrError(f"pid {pid}: seccomp is in strict mode, there is no filter "
                                "to read") from None
            if e.errno in (errno.EACCES, errno.EPERM):
                raise YacrError(f"pid {pid}: reading seccomp filters needs CAP_SYS_ADMIN "
                                "and a caller that is not itself under seccomp") from None
            raise YacrError(f"pid {pid}: PTRACE_SECCOMP_GET_FILTER: {e.strerror}") from None
        buf = ctypes.create_string_buffer(8 * n)
        _ptrace(libc, PTRACE_SECCOMP_GET_FILTER, pid, index, buf)
        out.append(bpf.decode(buf.raw[: 8 * n]))
    return out


def _wait_stop(pid: int, deadline: float) -> tuple[int, int]:
    """The tracee's next stop: (stop signal, ptrace event); raises if it exits."""
    while True:
        try:
            wpid, status = os.waitpid(pid, os.WNOHANG | WALL)
        except ChildProcessError:
            raise YacrError(f"pid {pid} is gone") from None
        if wpid == pid:
            if os.WIFSTOPPED(status):
                return os.WSTOPSIG(status), status >> 16
            raise YacrError(f"pid {pid} exited before its seccomp filter could be read")
        if time.monotonic() > deadline:
            raise YacrError(f"pid {pid} did not stop for the tracer in time")
        time.sleep(0.001)


def read_filters(pid: int, timeout: float = 10) -> list[list[bpf.Insn]]:
    """The seccomp filters installed on a running process, newest first."""
    libc = _libc()
    try:
        _ptrace(libc, PTRACE_SEIZE, pid)
    except OSError as e:
        raise YacrError(f"pid {pid}: cannot attach to read its seccomp filters: "
                        f"{e.strerror}") from None
    try:
        _ptrace(libc, PTRACE_INTERRUPT, pid)
        deadline = time.monotonic() + timeout
        while True:
            sig, event = _wait_stop(pid, deadline)
            if event == PTRACE_EVENT_STOP:
                break  # the interrupt's stop (or a group stop): it holds still
            # a signal on its way: let it through, then stop it again
            _ptrace(libc, PTRACE_CONT, pid, 0, ctypes.c_void_p(sig))
            _ptrace(libc, PTRACE_INTERRUPT, pid)
        return _filters_of_stopped(libc, pid)
    finally:
        try:
            _ptrace(libc, PTRACE_DETACH, pid)
        except OSError:
            pass


# --- evaluation ---------------------------------------------------------------------------

@dataclass
class Surface:
    """The verdict of a set of filters for every syscall of a table."""

    label: str
    table: dict[int, str]
    verdicts: dict[int, tuple[int, bool]] = field(default_factory=dict)  # nr -> (ret, args)
    filters: int = 0
    instructions: int = 0

    def allowed(self, basis: frozenset[int] | None = None) -> list[int]:
        return sorted(nr for nr, (ret, _) in self.verdicts.items()
                      if bpf.allows(ret) and (basis is None or nr in basis))

    def arg_dependent(self) -> list[int]:
        return sorted(nr for nr, (_, dep) in self.verdicts.items() if dep)

    def by_action(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for ret, _ in self.verdicts.values():
            key = bpf.action_name(ret)
            if bpf.action_only(ret) == bpf.RET_ERRNO:
                key = f"errno({ret & bpf.DATA_MASK})"
            out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items()))

    def names(self, nrs: list[int]) -> list[str]:
        return [self.table.get(nr, f"nr{nr}") for nr in nrs]

    def summary(self) -> dict[str, Any]:
        allowed = self.allowed()
        basis = [nr for nr in BASIS_362 if nr in self.verdicts]
        return {
            "label": self.label,
            "allowed": len(allowed),
            "total": len(self.verdicts),
            "allowed_of_362": len(self.allowed(BASIS_362)),
            "total_362": len(basis),
            "argument_dependent": self.names(self.arg_dependent()),
            "by_action": self.by_action(),
            "filters": self.filters,
            "instructions": self.instructions,
            "allowed_names": self.names(allowed),
        }


def evaluate(filters: list[list[bpf.Insn]], label: str,
             table: dict[int, str] | None = None) -> Surface:
    """Run the filters for every syscall of the x86_64 table, arguments zero."""
    if table is None:
        table = syscall_table()
    s = Surface(label, table, filters=len(filters),
                instructions=sum(len(f) for f in filters))
    for nr in sorted(table):
        ret, read = bpf.run_all(filters, bpf.seccomp_data(nr))
        s.verdicts[nr] = (ret, bpf.reads_args(read))
    return s


def measure_pid(pid: int, label: str | None = None) -> Surface:
    """The surface of a running process, from the filters the kernel holds for it."""
    return evaluate(read_filters(pid), label or f"pid {pid}")


# --- measuring a profile on a real container -----------------------------------------------

def yacr_command() -> list[str]:
    """How to start yacr again: the front-end that started us, the launcher next to this
    interpreter, else this interpreter with our sources."""
    cli = os.environ.get("YACR_CLI", "")
    if cli and os.access(cli, os.X_OK):
        return [cli]
    beside = os.path.join(os.path.dirname(sys.executable), "yacr")
    if os.access(beside, os.X_OK):
        return [beside]
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {src!r}); "
            "from yacr.cli import entrypoint; entrypoint()"]


def _uses_notify(profile: dict[str, Any]) -> bool:
    if profile.get("defaultAction") == "SCMP_ACT_NOTIFY":
        return True
    return any(isinstance(r, dict) and r.get("action") == "SCMP_ACT_NOTIFY"
               for r in profile.get("syscalls") or [])


def measure_profile(profile: dict[str, Any], label: str, rootfs: str | None = None,
                    timeout: float = 30) -> Surface:
    """Load `profile` (an OCI linux.seccomp section) on a real yacr container and measure
    what the kernel then holds for its process.

    The container (busybox `true`, default spec) is created, its init is traced, and the
    filter is read at the init's first syscall after yacr loaded it (its execve): this
    works even for a profile too tight to run anything. Needs root. Used by `yacr seccomp surface`,
    the tests, and any handler that wants its own allowlist measured.
    """
    from yacr.bundle import build_rootfs, busybox_spec

    if not isinstance(profile, dict):
        raise YacrError(f"{label}: a seccomp profile is a JSON object")
    if _uses_notify(profile):
        raise YacrError(f"{label}: SCMP_ACT_NOTIFY profiles need their agent; measure a "
                        "running container with --pid instead")
    yacr = yacr_command()
    with tempfile.TemporaryDirectory(prefix="yacr-surface-") as tmp:
        if rootfs is None:
            rootfs = build_rootfs(os.path.join(tmp, "rootfs"))
        spec = busybox_spec(rootfs, ["true"])
        spec["linux"]["seccomp"] = profile
        bundle = os.path.join(tmp, "bundle")
        os.mkdir(bundle)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            f.write(jsonio.dumps(spec))
        base = yacr + ["--root", os.path.join(tmp, "state")]
        cid = f"surface-{os.getpid()}"
        pidfile = os.path.join(tmp, "pid")
        with open(os.path.join(tmp, "err"), "w+") as err:
            rc = subprocess.run(base + ["create", "--pid-file", pidfile, "--bundle", bundle,
                                        cid], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err,
                                timeout=timeout).returncode
            if rc != 0:
                err.seek(0)
                msg = err.read().strip().splitlines()
                raise YacrError(f"{label}: the container did not start: "
                                f"{msg[-1] if msg else rc}")
        try:
            with open(pidfile) as f:
                pid = int(f.read())
            filters = _filters_at_exec(pid, base + ["start", cid], timeout)
        finally:
            subprocess.run(base + ["delete", "--force", cid], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=timeout)
    return evaluate(filters, label)


def _filters_at_exec(pid: int, start: list[str], timeout: float) -> list[list[bpf.Insn]]:
    """Trace a created container's init through `start`, a syscall at a time, and return
    the filters it holds once it holds more than before: at its next syscall after yacr
    loaded them (the execve, normally). A syscall-entry stop comes before seccomp decides,
    so this works even when the filter is about to kill the process (the exit stop is too
    late: the kernel no longer shows the filters then)."""
    libc = _libc()
    opts = PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL
    try:
        _ptrace(libc, PTRACE_SEIZE, pid, 0, ctypes.c_void_p(opts))
    except OSError as e:
        raise YacrError(f"pid {pid}: cannot attach: {e.strerror}") from None
    starter = None
    try:
        _ptrace(libc, PTRACE_INTERRUPT, pid)
        deadline = time.monotonic() + timeout
        sig, event = _wait_stop(pid, deadline)
        before = len(_filters_of_stopped(libc, pid))
        starter = subprocess.Popen(start, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        while True:
            # event and syscall stops are ours; a signal-delivery stop passes its signal on
            ours = event or sig in (SIGTRAP, SIGTRAP | 0x80)
            _ptrace(libc, PTRACE_SYSCALL, pid, 0, ctypes.c_void_p(0 if ours else sig))
            sig, event = _wait_stop(pid, deadline)
            if sig == SIGTRAP | 0x80:
                filters = _filters_of_stopped(libc, pid)
                if len(filters) > before:
                    return filters[: len(filters) - before]
    finally:
        try:
            _ptrace(libc, PTRACE_DETACH, pid)
        except OSError:
            pass
        if starter is not None:
            try:
                starter.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                starter.kill()
                starter.wait()


# --- the report ---------------------------------------------------------------------------

def report(surfaces: list[Surface]) -> str:
    """A markdown table of the measured surfaces, then the quoted anchors."""
    total = max((len(s.verdicts) for s in surfaces), default=0)
    lines = [f"| profile | source | allowed of {total} (this kernel's x86_64 table) | "
             "allowed of 362 (Docker's basis) | argument-dependent |",
             "|---|---|---|---|---|"]
    for s in surfaces:
        sm = s.summary()
        dep = ", ".join(sm["argument_dependent"]) or "-"
        lines.append(f"| {s.label} | measured | {sm['allowed']} | {sm['allowed_of_362']} | "
                     f"{dep} |")
    for name, figure, _src in ANCHORS:
        lines.append(f"| {name} | quoted | - | {figure} | - |")
    return "\n".join(lines) + "\n"
