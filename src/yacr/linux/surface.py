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
are allowed for some arguments and not others. A second count, "allowed for some
arguments", searches the program's paths for arguments that get the syscall through
(`allowing_args`, each found set checked by running the filter on it): what a caller
who picks its arguments can reach. It
matters for filters that check arguments everywhere, as gVisor's host filter does (its
mmap, ioctl or futex rules each allow a few argument values, and refuse zeros).

Two denominators: every number in the running kernel's x86_64 table (names from
libseccomp's seccomp_syscall_resolve_num_arch, and from NEWER for the calls this
libseccomp does not know yet), and the 362 syscalls of the table Docker's figure
"about 295 of 362" was counted on (0-334 and 424-450, Linux 5.17-6.4), so that figure
and ours compare like for like.

gVisor has no profile to load: its sandbox (the Sentry) and its gofer install their own
host filters when they start. `measure_runsc` runs a busybox container under runsc with
the given flags and reads both back, the same way.

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
    from collections.abc import Iterator
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
# (gVisor's "about 80-96" was one of them; `measure_runsc` measures it now.)
ANCHORS = [
    ("Docker default profile (the issue's figure)", "about 295 of 362",
     "moby/profiles/seccomp/default.json, default capabilities, x86_64"),
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


# --- allowed for some arguments -----------------------------------------------------------

MAX_PATHS = 20_000
"""Paths followed per syscall before the search for arguments gives up."""

class _Word:
    """What one path knows of a word the caller picks (masked): it equals `eq`, is none
    of `ne`, lies in [lo, hi], has the bits of `clear` clear, and some bit of each mask
    in `anyof` set. Immutable: each branch of a path gets its own."""

    __slots__ = ("anyof", "clear", "eq", "hi", "lo", "ne")

    def __init__(self, eq: int | None = None, ne: frozenset[int] = frozenset(), lo: int = 0,
                 hi: int = bpf.U32, clear: int = 0, anyof: tuple[int, ...] = ()) -> None:
        self.eq, self.ne, self.lo, self.hi = eq, ne, lo, hi
        self.clear, self.anyof = clear, anyof

    def but(self, **kw: Any) -> _Word:
        w = _Word(self.eq, self.ne, self.lo, self.hi, self.clear, self.anyof)
        for k, v in kw.items():
            setattr(w, k, v)
        return w

    def ok(self, v: int) -> bool:
        return (self.lo <= v <= self.hi and v not in self.ne and not v & self.clear
                and all(v & m for m in self.anyof) and (self.eq is None or v == self.eq))

    def pick(self, mask: int) -> int | None:
        """A value meeting all of it (within mask), or None if none was found."""
        if self.eq is not None:
            return self.eq if self.ok(self.eq) else None
        base = self.lo
        for m in self.anyof:
            if not base & m:
                base |= m & -m  # the lowest bit of each mask that must have one set
        for v in (base, self.lo, *range(self.lo + 1, self.lo + 64), self.hi):
            v &= mask
            if self.ok(v):
                return v
        return None


class _Paths:
    """Bookkeeping of one search: how many paths were followed."""

    def __init__(self) -> None:
        self.count = 0


def allowing_args(filters: list[list[bpf.Insn]], nr: int,
                  arch: int = bpf.AUDIT_ARCH_X86_64) -> tuple[int, ...] | None:
    """Arguments for which every filter allows `nr`, or None if none were found.

    Each filter's paths to ALLOW (or LOG) are followed with the arguments unknown: where
    the program compares a word of an argument (or the instruction pointer), both ways
    are taken, each with what it implies for that word (equal or not, above or below,
    bits set or clear), and a path is dropped when no value is left for a word. Each
    path that reaches ALLOW gives candidate arguments, and a candidate counts only once
    the filters, run for real on it (`bpf.run_all`), allow the call: a witness, never a
    guess. Bounded by MAX_PATHS paths per filter."""
    for prog in filters:
        paths = _Paths()
        for words in _explore(prog, 0, None, None, (None,) * bpf.MEMWORDS, {}, nr, arch,
                              paths):
            args = _witness(words)
            if args is None:
                continue
            ret, _ = bpf.run_all(filters, bpf.seccomp_data(nr, arch, args[0], args[1:]))
            if bpf.allows(ret):
                return args[1:]
    return None


def _witness(words: dict[tuple[int, int], _Word]) -> tuple[int, ...] | None:
    """(instruction pointer, six arguments) meeting a path's constraints; other bits 0."""
    got: dict[int, int] = {}
    for (off, mask), w in sorted(words.items(), key=lambda kv: -bin(kv[0][1]).count("1")):
        v = w.pick(mask)
        if v is None:
            return None
        got[off] = (got.get(off, 0) & ~mask | v) & bpf.U32

    def u64(off: int) -> int:
        return got.get(off, 0) | got.get(off + 4, 0) << 32

    return tuple(u64(bpf.OFF_IP + 8 * i) for i in range(7))


def _branches(w: _Word, op: int, k: int, mask: int) -> tuple[_Word | None, _Word | None]:
    """The word as the jump's true and false branches know it (None: no value left)."""
    if op == bpf.JEQ:
        t = w.but(eq=k) if k & ~mask & bpf.U32 == 0 and w.ok(k) else None
        f = w.but(ne=w.ne | {k}) if w.eq != k else None
    elif op in (bpf.JGT, bpf.JGE):
        first = k + 1 if op == bpf.JGT else k  # true: value >= first
        t = w.but(lo=max(w.lo, first)) if first <= min(w.hi, mask) else None
        f = w.but(hi=min(w.hi, first - 1)) if first - 1 >= w.lo else None
    else:  # JSET
        t = w.but(anyof=(*w.anyof, k & mask)) if k & mask else None
        f = w.but(clear=w.clear | k)
    for x in (t, f):
        if x is not None and x.eq is not None and not x.ok(x.eq):
            return (None if x is t else t), (None if x is f else f)
    return t, f


def _explore(prog: list[bpf.Insn], pc: int, a: Any, x: Any, mem: tuple[Any, ...],
             words: dict[tuple[int, int], _Word], nr: int, arch: int,
             paths: _Paths) -> Iterator[dict[tuple[int, int], _Word]]:
    """The paths from pc that reach ALLOW or LOG, as what they know of each word. A value
    in A, X or a scratch word is an int when known, (offset, mask) for a word of
    seccomp_data the caller picks ANDed with mask, None for anything else (compared
    both ways, knowing nothing)."""
    while paths.count <= MAX_PATHS:
        if pc >= len(prog):
            return  # the kernel would have refused such a program
        code, jt, jf, k = prog[pc]
        pc += 1
        cls = code & 0x07
        if cls == bpf.RET:
            paths.count += 1
            rv = code & 0x18
            ret = a if rv == bpf.RVAL_A else x if rv == bpf.RVAL_X else k
            if isinstance(ret, int) and bpf.allows(ret):
                yield words
            return
        if cls in (bpf.LD, bpf.LDX):
            mode = code & 0xE0
            val: Any = None
            if mode == bpf.ABS:
                val = nr & bpf.U32 if k == bpf.OFF_NR else arch if k == bpf.OFF_ARCH \
                    else (k, bpf.U32)
            elif mode == bpf.IMM:
                val = k
            elif mode == bpf.MEM and k < bpf.MEMWORDS:
                val = mem[k]
            elif mode == bpf.LEN:
                val = bpf.DATA_SIZE
            if cls == bpf.LD:
                a = val
            else:
                x = val
        elif cls in (bpf.ST, bpf.STX):
            if k < bpf.MEMWORDS:
                mem = mem[:k] + (a if cls == bpf.ST else x,) + mem[k + 1:]
        elif cls == bpf.ALU:
            op = code & 0xF0
            src = x if code & bpf.SRC_X else k
            if isinstance(a, int) and (isinstance(src, int) or op == bpf.NEG):
                if op == bpf.NEG:
                    a = -a & bpf.U32
                elif op in (bpf.DIV, bpf.MOD) and src == 0:
                    paths.count += 1
                    return  # the kernel's cBPF returns 0 (kill)
                else:
                    a = bpf._alu(op, a, src, pc - 1)
            elif op == bpf.AND and isinstance(a, tuple) and isinstance(src, int):
                a = (a[0], a[1] & src)  # a masked word: `arg & MASK == V` stays precise
            else:
                a = None
        elif cls == bpf.JMP:
            op = code & 0xF0
            if op == bpf.JA:
                pc += k
                continue
            src = x if code & bpf.SRC_X else k
            if isinstance(a, int) and isinstance(src, int):
                cond = (a == src if op == bpf.JEQ else a > src if op == bpf.JGT
                        else a >= src if op == bpf.JGE else bool(a & src))
                pc += jt if cond else jf
                continue
            if isinstance(a, tuple) and isinstance(src, int) and op != bpf.JA:
                t, f = _branches(words.get(a, _Word()), op, src, a[1])
                if t is not None:
                    yield from _explore(prog, pc + jt, a, x, mem, {**words, a: t}, nr, arch,
                                        paths)
                if f is None:
                    return
                words = {**words, a: f}
                pc += jf
                continue
            # a comparison of values the path does not follow: both ways
            yield from _explore(prog, pc + jt, a, x, mem, words, nr, arch, paths)
            pc += jf
        elif code & 0xF8 == bpf.TAX:
            x = a
        elif code & 0xF8 == bpf.TXA:
            a = x


# --- evaluation ---------------------------------------------------------------------------

@dataclass
class Surface:
    """The verdict of a set of filters for every syscall of a table."""

    label: str
    table: dict[int, str]
    verdicts: dict[int, tuple[int, bool]] = field(default_factory=dict)  # nr -> (ret, args)
    filters: int = 0
    instructions: int = 0
    programs: list[list[bpf.Insn]] = field(default_factory=list)
    """The filters themselves, newest first, as read back."""
    some_args: set[int] = field(default_factory=set)
    """Syscalls refused with arguments zero that some arguments get through
    (`allowing_args` found them)."""

    def allowed(self, basis: frozenset[int] | None = None) -> list[int]:
        return sorted(nr for nr, (ret, _) in self.verdicts.items()
                      if bpf.allows(ret) and (basis is None or nr in basis))

    def allowed_some(self, basis: frozenset[int] | None = None) -> list[int]:
        """Allowed for some arguments: with zero arguments, or by some path of every
        filter when the arguments are the caller's to pick."""
        return sorted(nr for nr in set(self.allowed()) | self.some_args
                      if basis is None or nr in basis)

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
            "allowed_some_args": len(self.allowed_some()),
            "allowed_for_some_args_only": self.names(sorted(self.some_args)),
            "allowed_some_args_of_362": len(self.allowed_some(BASIS_362)),
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
                instructions=sum(len(f) for f in filters), programs=filters)
    for nr in sorted(table):
        ret, read = bpf.run_all(filters, bpf.seccomp_data(nr))
        s.verdicts[nr] = (ret, bpf.reads_args(read))
        if not bpf.allows(ret) and bpf.reads_args(read) and \
                allowing_args(filters, nr) is not None:
            s.some_args.add(nr)
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
        _run_or_fail(base + ["create", "--pid-file", pidfile, "--bundle", bundle, cid],
                     f"{label}: the container did not start", os.path.join(tmp, "err"),
                     timeout)
        try:
            with open(pidfile) as f:
                pid = int(f.read())
            filters = _filters_at_exec(pid, base + ["start", cid], timeout)
        finally:
            subprocess.run(base + ["delete", "--force", cid], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=timeout)
    return evaluate(filters, label)


def _run_or_fail(cmd: list[str], what: str, err_path: str, timeout: float,
                 stdin: Any = subprocess.DEVNULL, stdout: Any = subprocess.DEVNULL) -> None:
    """Run a runtime's command with its stderr in a file, never a pipe (the container's
    processes keep what they inherit open); a failure raises with its last line."""
    with open(err_path, "w+") as err:
        rc = subprocess.run(cmd, stdin=stdin, stdout=stdout, stderr=err,
                            timeout=timeout).returncode
        if rc != 0:
            err.seek(0)
            msg = err.read().strip().splitlines()
            raise YacrError(f"{what}: {msg[-1] if msg else rc}")


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


# --- gVisor's own host filters --------------------------------------------------------------

RUNSC_FLAGS = ("--network=none", "--platform=ptrace")
"""What `yacr bench` runs runsc with (no network stack to set up; ptrace works in any VM,
where KVM may not): the host filters depend on both, so they go in every label."""


def runsc_version(runsc: str = "runsc") -> str:
    try:
        out = subprocess.run([runsc, "--version"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    first = out.splitlines()[0] if out else "?"
    return first.removeprefix("runsc version ").strip()


def _seccomp_mode(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Seccomp:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def _runsc_processes(root: str) -> dict[int, str]:
    """pid -> argv[0] of every process runsc started under this --root (runsc-sandbox,
    runsc-gofer: each gets `--root=ROOT` on its command line)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if f"--root={root}" in argv:
            out[int(d)] = argv[0]
    return out


def measure_runsc(rootfs: str | None = None, flags: tuple[str, ...] = RUNSC_FLAGS,
                  runsc: str = "runsc", timeout: float = 30) -> list[Surface]:
    """gVisor's host filters, read back from a running sandbox: the Sentry's
    (runsc-sandbox, the process that runs the container's syscalls) and the gofer's (the
    process that opens files for it). A busybox `sleep` runs under `runsc FLAGS run
    --detach`; both filters are read once the sandbox holds one, then it is deleted."""
    import shutil

    from yacr.bundle import build_rootfs, busybox_spec, write_config

    exe = shutil.which(runsc)
    if exe is None:
        raise YacrError("runsc is not installed (apt-get install runsc)")
    what = f"runsc {runsc_version(exe)}, {' '.join(flags)}"
    with tempfile.TemporaryDirectory(prefix="yacr-surface-runsc-") as tmp:
        if rootfs is None:
            rootfs = build_rootfs(os.path.join(tmp, "rootfs"))
        spec = busybox_spec(rootfs, ["sleep", "1000000"], seccomp=False)
        spec["ociVersion"] = "1.0.2"
        bundle = os.path.join(tmp, "bundle")
        write_config(bundle, spec)
        root = os.path.join(tmp, "state")
        base = [exe, f"--root={root}", *flags]
        cid = f"surface-runsc-{os.getpid()}"
        try:
            # stdio are files of our own, never the host's /dev/null: the sandbox fchowns
            # the stdio it is handed to its user (nobody); and not pipes: it keeps them open
            with open(os.path.join(tmp, "in"), "w+") as empty, \
                    open(os.path.join(tmp, "out"), "w") as out:
                _run_or_fail([*base, "run", "--detach", "--bundle", bundle, cid],
                             "runsc did not run the container", os.path.join(tmp, "err"),
                             timeout, stdin=empty, stdout=out)
            st = subprocess.run([*base, "state", cid], capture_output=True, text=True,
                                timeout=timeout)
            try:
                sandbox = int(jsonio.loads(st.stdout)["pid"])
            except (YacrError, ValueError, KeyError, TypeError):
                raise YacrError(f"runsc state {cid}: no pid in {st.stdout[:200]!r}") from None
            gofer = next((p for p, n in _runsc_processes(root).items()
                          if n == "runsc-gofer"), None)
            # the Sentry installs its filter as the container starts: wait until it has
            deadline = time.monotonic() + timeout
            while _seccomp_mode(sandbox) != 2:
                if time.monotonic() > deadline:
                    raise YacrError(f"runsc sandbox {sandbox} never installed a filter")
                time.sleep(0.01)
            out = [evaluate(read_filters(sandbox), f"gVisor sandbox, the Sentry ({what})")]
            if gofer is not None and _seccomp_mode(gofer) == 2:
                out.append(evaluate(read_filters(gofer), f"gVisor gofer ({what})"))
            return out
        except subprocess.TimeoutExpired as e:
            raise YacrError(f"runsc {' '.join(flags)}: no answer in {e.timeout:.0f} s") \
                from None
        finally:
            try:
                subprocess.run([*base, "delete", "--force", cid], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
            # a sandbox that never answered has no state for delete to find: its
            # processes name this private --root, and nothing else does
            for pid in _runsc_processes(root):
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass


# --- the report ---------------------------------------------------------------------------

def report(surfaces: list[Surface]) -> str:
    """A markdown table of the measured surfaces, then the quoted anchors."""
    total = max((len(s.verdicts) for s in surfaces), default=0)
    lines = [f"| profile | source | allowed of {total} (this kernel's x86_64 table) | "
             "allowed of 362 (Docker's basis) | allowed of 362 for some arguments | "
             "argument-dependent |",
             "|---|---|---|---|---|---|"]
    for s in surfaces:
        sm = s.summary()
        dep = ", ".join(sm["argument_dependent"]) or "-"
        lines.append(f"| {s.label} | measured | {sm['allowed']} | {sm['allowed_of_362']} | "
                     f"{sm['allowed_some_args_of_362']} | {dep} |")
    for name, figure, _src in ANCHORS:
        lines.append(f"| {name} | quoted | - | {figure} | - | - |")
    return "\n".join(lines) + "\n"
