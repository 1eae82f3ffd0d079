"""linux.seccomp compiled with libseccomp, the library every runtime uses.

The filter is compiled in the runtime before init is forked, so errors and
warnings (unknown syscall names are warned about and skipped) reach the user
as they do for any other field, and libseccomp is loaded while the host's
libraries are still reachable. libseccomp's output, a classic BPF program, is
what init installs with one seccomp() call, as late as it can: right before
execve.

Compiling Docker's style of profile (some 480 rules over three ABIs) costs ~18 ms,
as much as the rest of a container start, and every runtime pays it on every start.
The program depends only on the profile, so it is kept in a cache under the state
root, keyed by the profile's text, the kernel and yacr's version, and checked (owner,
mode, digest) before use; an entry that fails a check is compiled again.
"""

from __future__ import annotations

import posix

from yacr.errors import ConfigError, YacrError
from yacr.linux import sys as S

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from yacr.log import Log

LIBRARY = "libseccomp.so.2"

ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_NOTIFY = 0x7FC00000
ACT_ERRNO = 0x00050000
ACT_TRACE = 0x7FF00000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000

ACTIONS = {
    "SCMP_ACT_KILL": ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": ACT_TRAP,
    "SCMP_ACT_ERRNO": ACT_ERRNO,
    "SCMP_ACT_TRACE": ACT_TRACE,
    "SCMP_ACT_ALLOW": ACT_ALLOW,
    "SCMP_ACT_LOG": ACT_LOG,
    "SCMP_ACT_NOTIFY": ACT_NOTIFY,
}
OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
       "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
# filter attributes (enum scmp_filter_attr)
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": _ATTR_CTL_TSYNC, "SECCOMP_FILTER_FLAG_LOG": _ATTR_CTL_LOG,
         "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _ATTR_CTL_SSB}
# the same flags as the kernel's seccomp() takes them
KERNEL_FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}
_FLAG_NEW_LISTENER = 8
_FLAG_TSYNC_ESRCH = 16  # TSYNC together with NEW_LISTENER needs it
EPERM = 1
# Part of every cache key: bumped whenever the program made from a profile changes (2: the
# ENOSYS stub), so an entry written by an older yacr of the same version is not reused.
CACHE_FORMAT = 2


class _Lib:
    """The few libseccomp entry points a filter needs."""

    def __init__(self) -> None:
        lib = S.Library(LIBRARY)
        self.init = lib.function("seccomp_init", S.c_void_p)
        self.release = lib.function("seccomp_release", S.c_int)
        self.arch_add = lib.function("seccomp_arch_add", S.c_int)
        self.arch_native = lib.function("seccomp_arch_native", S.c_uint)
        self.arch_resolve_name = lib.function("seccomp_arch_resolve_name", S.c_uint)
        self.syscall_resolve_name = lib.function("seccomp_syscall_resolve_name", S.c_int)
        self.syscall_resolve_name_arch = lib.function("seccomp_syscall_resolve_name_arch",
                                                      S.c_int)
        self.rule_add_array = lib.function("seccomp_rule_add_array", S.c_int)
        self.attr_set = lib.function("seccomp_attr_set", S.c_int)
        self.export_bpf = lib.function("seccomp_export_bpf", S.c_int)


def _action(name: Any, errno_ret: Any, path: str) -> int:
    from yacr.spec import integer, string

    act = string(name, path)
    if act not in ACTIONS:
        raise ConfigError(f"{path}: unknown action {act!r}")
    base = ACTIONS[act]
    if base in (ACT_ERRNO, ACT_TRACE):
        ret = EPERM if errno_ret is None else integer(errno_ret, path.rsplit(".", 1)[0] +
                                                     ".errnoRet", 0, 0xFFFF)
        if base == ACT_TRACE and errno_ret is None:
            ret = EPERM
        return base | ret
    return base


class Filter:
    """A compiled (not yet loaded) seccomp filter."""

    __slots__ = ("lib", "ctx", "uses_notify", "listener_path", "listener_metadata", "rules",
                 "default", "kernel_flags", "arches", "names")

    def __init__(self, cfg: dict[str, Any], log: Log | None, path: str = "linux.seccomp") -> None:
        from yacr.spec import integer, obj, str_list, string

        try:
            self.lib = _Lib()
        except OSError as e:
            raise YacrError(f"{path}: libseccomp is not available ({e.strerror}); "
                            "install libseccomp2") from None
        self.default = _action(cfg.get("defaultAction"), cfg.get("defaultErrnoRet"),
                               f"{path}.defaultAction")
        self.uses_notify = self.default == ACT_NOTIFY
        lp = cfg.get("listenerPath")
        self.listener_path = "" if lp is None else string(lp, f"{path}.listenerPath")
        lm = cfg.get("listenerMetadata")
        self.listener_metadata = "" if lm is None else string(lm, f"{path}.listenerMetadata")
        self.rules = 0
        self.kernel_flags = 0
        self.arches: list[int] = []  # libseccomp arch tokens, the native one first
        self.names: set[str] = set()  # every syscall a rule names, for the ENOSYS stub
        ctx = self.lib.init(S.c_uint(self.default))
        if not ctx:
            raise YacrError(f"{path}: libseccomp could not create a filter")
        self.ctx = S.c_void_p(ctx)
        self.arches.append(self.lib.arch_native())
        try:
            # no_new_privs is the runtime's decision (process.noNewPrivileges), not libseccomp's.
            self._attr(_ATTR_CTL_NNP, 0, path)
            for i, a in enumerate(str_list(cfg.get("architectures") or [],
                                           f"{path}.architectures")):
                self._add_arch(a, f"{path}.architectures[{i}]")
            for i, f in enumerate(str_list(cfg.get("flags") or [], f"{path}.flags")):
                if f not in FLAGS:
                    raise ConfigError(f"{path}.flags[{i}]: {f!r} is not supported by "
                                      "libseccomp here")
                self._attr(FLAGS[f], 1, f"{path}.flags[{i}]")
                self.kernel_flags |= KERNEL_FLAGS[f]
            sc = cfg.get("syscalls")
            if sc is not None and not isinstance(sc, list):
                raise ConfigError(f"{path}.syscalls: expected an array")
            for i, rule in enumerate(sc or []):
                rp = f"{path}.syscalls[{i}]"
                rule = obj(rule, rp)
                names = str_list(rule.get("names") or [], f"{rp}.names")
                action = _action(rule.get("action"), rule.get("errnoRet"), f"{rp}.action")
                if action & 0xFFFF0000 == ACT_NOTIFY:
                    self.uses_notify = True
                conds = self._conditions(rule.get("args"), rp, integer, obj, string)
                self.names.update(names)
                for j, name in enumerate(names):
                    self._add_rule(name, action, conds, f"{rp}.names[{j}]", log)
            if self.uses_notify and not self.listener_path:
                raise ConfigError(f"{path}.listenerPath: SCMP_ACT_NOTIFY needs a listener")
        except BaseException:
            self.lib.release(self.ctx)
            raise

    def _attr(self, attr: int, value: int, path: str) -> None:
        rc = self.lib.attr_set(self.ctx, S.c_int(attr), S.c_uint(value))
        if rc < 0:
            raise YacrError(f"{path}: libseccomp refused it: {posix.strerror(-rc)}")

    def _add_arch(self, name: str, path: str) -> None:
        if not name.startswith("SCMP_ARCH_"):
            raise ConfigError(f"{path}: unknown architecture {name!r}")
        token = self.lib.arch_resolve_name(name[len("SCMP_ARCH_"):].lower().encode())
        if token == 0:
            raise ConfigError(f"{path}: unknown architecture {name!r}")
        rc = self.lib.arch_add(self.ctx, S.c_uint(token))
        if rc < 0 and -rc != 17:  # EEXIST: the native one is already there
            raise YacrError(f"{path}: cannot add {name}: {posix.strerror(-rc)}")
        if token not in self.arches:
            self.arches.append(token)

    @staticmethod
    def _conditions(args: Any, rp: str, integer: Any, obj: Any, string: Any) -> list[bytes]:
        import struct

        if args is None:
            return []
        if not isinstance(args, list):
            raise ConfigError(f"{rp}.args: expected an array")
        out = []
        for k, a in enumerate(args):
            ap = f"{rp}.args[{k}]"
            a = obj(a, ap)
            index = integer(a.get("index"), f"{ap}.index", 0, 5)
            op = string(a.get("op"), f"{ap}.op")
            if op not in OPS:
                raise ConfigError(f"{ap}.op: unknown operator {op!r}")
            value = integer(a.get("value", 0), f"{ap}.value", 0, (1 << 64) - 1)
            two = integer(a.get("valueTwo", 0), f"{ap}.valueTwo", 0, (1 << 64) - 1)
            out.append((index, struct.pack("IIQQ", index, OPS[op], value, two)))
        return out  # type: ignore[return-value]

    def _add_rule(self, name: str, action: int, conds: list[Any], path: str,
                  log: Log | None) -> None:
        nr = self.lib.syscall_resolve_name(name.encode())
        if nr == -1:  # __NR_SCMP_ERROR
            if log is not None:
                log.warn(f"{path}: unknown syscall {name!r} skipped")
            return
        if action == self.default:
            return  # libseccomp refuses rules that only repeat the default
        indexes = [i for i, _ in conds]
        if len(set(indexes)) == len(indexes):
            groups = [[c for _, c in conds]]
        else:
            # libseccomp cannot AND two conditions on one argument: one rule each (as runc).
            groups = [[c] for _, c in conds]
        for group in groups:
            arr = b"".join(group)
            rc = self.lib.rule_add_array(self.ctx, S.c_uint(action), S.c_int(nr),
                                         S.c_uint(len(group)), arr if group else None)
            if rc < 0:
                raise YacrError(f"{path}: cannot add a rule for {name}: {posix.strerror(-rc)}")
            self.rules += 1

    def export(self) -> bytes:
        """The classic BPF program libseccomp generates for this filter; the context is
        released (a Filter is compiled once)."""
        r, w = posix.pipe()
        try:
            # A pipe holds 64 KiB before export would block: plenty for ~8000
            # instructions; a larger program is an error rather than a hang.
            posix.set_blocking(w, False)
            rc = self.lib.export_bpf(self.ctx, S.c_int(w))
            posix.close(w)
            w = -1
            if rc < 0:
                raise YacrError(f"linux.seccomp: cannot compile the filter: "
                                f"{posix.strerror(-rc)}")
            chunks = []
            while chunk := posix.read(r, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            posix.close(r)
            if w >= 0:
                posix.close(w)
            self.lib.release(self.ctx)


    def last_syscalls(self) -> dict[int, int]:
        """For each architecture of the filter, the highest syscall number a rule names
        there (x32 numbers keep their 0x40000000 bit); architectures where no rule
        resolves are left out."""
        out: dict[int, int] = {}
        for arch in self.arches:
            best = -1
            for name in self.names:
                nr = self.lib.syscall_resolve_name_arch(S.c_uint(arch), name.encode())
                best = max(best, nr)
            if best >= 0:
                out[arch] = best
        return out

    def program(self) -> Program:
        """The loadable program: libseccomp's, behind an ENOSYS stub unless the default
        action lets syscalls through anyway (see enosys_stub). TRACE and NOTIFY defaults
        count as letting through: their tracer or agent sees every syscall and answers
        the unknown ones itself (runc stubs NOTIFY defaults too; yacr's own recorder,
        `yacr profile`, needs to see every call)."""
        last = {} if self.default & 0xFFFF0000 in (ACT_ALLOW, ACT_LOG, ACT_TRACE, ACT_NOTIFY) \
            else self.last_syscalls()
        bpf = self.export()
        return Program(enosys_stub(last) + bpf if last else bpf, self.kernel_flags,
                       self.uses_notify, self.listener_path, self.listener_metadata)


# The ENOSYS stub. A profile lists the syscalls its author knew; a newer one (a new kernel,
# a new libc) then meets the default action, typically EPERM. libc reads EPERM as "refused"
# and gives up, where ENOSYS would make it fall back to the old call (clone3 -> clone,
# faccessat2 -> faccessat, statx -> fstatat...). So, as runc does, every syscall numbered
# above the highest one the profile names (per architecture) answers ENOSYS before the
# profile is consulted; those the profile knew but did not list still get its default.
_AUDIT_ARCH_X86_64 = 0xC000003E
_SCMP_ARCH_X32 = 0x4000003E  # libseccomp's token; the kernel reports x32 as x86_64
_X32_BIT = 0x40000000
_ENOSYS = 38
# cBPF opcodes (linux/filter.h): load word at absolute offset; jumps against a constant
_LD_ABS, _JEQ, _JGT, _JSET, _JA, _RET = 0x20, 0x15, 0x25, 0x45, 0x05, 0x06
_OFF_NR, _OFF_ARCH = 0, 4


def enosys_stub(last: dict[int, int]) -> bytes:
    """cBPF that answers ENOSYS for a syscall above `last[arch]` and otherwise jumps to the
    instruction right after itself, where the profile's program goes.

    Layout: load the arch; one section per audit arch (compare it, load the number, branch
    to ENOSYS or to the profile); a jump to the profile for any other arch; the ENOSYS
    return. Jumps name labels, resolved once every position is known; all go forward over
    a few instructions, well within cBPF's 8-bit offsets.
    """
    from yacr.linux.bpf import encode

    by_audit: dict[int, dict[str, int]] = {}
    for arch, nr in last.items():
        if arch == _SCMP_ARCH_X32:
            by_audit.setdefault(_AUDIT_ARCH_X86_64, {})["x32"] = nr
        else:
            by_audit.setdefault(arch, {})["main"] = nr
    code: list[tuple[int, int, str | None, str | None]] = []
    labels: dict[str, int] = {}

    def emit(op: int, k: int = 0, jt: str | None = None, jf: str | None = None) -> None:
        code.append((op, k, jt, jf))

    emit(_LD_ABS, _OFF_ARCH)
    for i, (audit, maxes) in enumerate(by_audit.items()):
        emit(_JEQ, audit, None, f"next{i}")
        emit(_LD_ABS, _OFF_NR)
        if audit == _AUDIT_ARCH_X86_64:
            # x32 numbers carry bit 30: they meet the x32 bound, or the profile if none
            emit(_JSET, _X32_BIT, f"x32-{i}" if "x32" in maxes else "filter")
            if "main" in maxes:
                emit(_JGT, maxes["main"], "enosys", "filter")
            else:
                emit(_JA, 0, "filter")
            if "x32" in maxes:
                labels[f"x32-{i}"] = len(code)
                emit(_JGT, maxes["x32"], "enosys", "filter")
        else:
            emit(_JGT, maxes["main"], "enosys", "filter")
        labels[f"next{i}"] = len(code)
    emit(_JA, 0, "filter")
    labels["enosys"] = len(code)
    emit(_RET, 0x00050000 | _ENOSYS)
    labels["filter"] = len(code)

    def offset(label: str | None, pc: int) -> int:
        return 0 if label is None else labels[label] - (pc + 1)

    out = []
    for pc, (op, k, jt, jf) in enumerate(code):
        if op == _JA:
            out.append((op, 0, 0, offset(jt, pc)))
        else:
            out.append((op, offset(jt, pc), offset(jf, pc), k))
    return encode(out)


class Program:
    """A compiled seccomp filter, ready for one seccomp() call right before execve."""

    __slots__ = ("bpf", "flags", "uses_notify", "listener_path", "listener_metadata", "what")

    def __init__(self, bpf: bytes, flags: int, uses_notify: bool = False,
                 listener_path: str = "", listener_metadata: str = "",
                 what: str = "linux.seccomp") -> None:
        if not bpf or len(bpf) % 8:
            raise YacrError(f"{what}: damaged BPF program")
        self.what = what
        self.bpf = bpf
        self.flags = flags
        self.uses_notify = uses_notify
        self.listener_path = listener_path
        self.listener_metadata = listener_metadata

    def load(self) -> int:
        """Install the filter on this thread; returns the notify fd, or -1.

        no_new_privs is not set here: it is process.noNewPrivileges' business, and
        without it the kernel demands CAP_SYS_ADMIN, as it does of libseccomp's load.
        """
        flags = self.flags
        if self.uses_notify:
            flags |= _FLAG_NEW_LISTENER | (_FLAG_TSYNC_ESRCH if flags & 1 else 0)
        try:
            rc = S.seccomp_set_filter(flags, self.bpf)
        except OSError as e:
            raise YacrError(f"{self.what}: cannot load the filter: {e.strerror}") from None
        if self.uses_notify:
            return rc
        if rc:  # TSYNC: the id of a thread that could not take the filter
            raise YacrError(f"{self.what}: cannot load the filter: thread {rc} could not be "
                            "synchronized")
        return -1


class _Recorder:
    """Passes warnings on to the log and keeps them for the cache entry, so that a cached
    profile warns exactly as a compiled one does."""

    def __init__(self, log: Log | None) -> None:
        self.log = log
        self.seen: list[str] = []

    def warn(self, msg: str) -> None:
        self.seen.append(msg)
        if self.log is not None:
            self.log.warn(msg)


def check_notify(cfg: dict[str, Any], path: str = "linux.seccomp") -> None:
    """SCMP_ACT_NOTIFY is refused for `write`, as runc refuses it: init still writes (its
    --log and --debug lines, error reports) between loading the filter and execve, and
    each of those writes would wait for the agent's answer, before the agent even holds
    the notify fd for the first of them. Checked before the cache, so a profile cached
    by an older yacr is refused too."""
    rules = cfg.get("syscalls")
    if not isinstance(rules, list):
        return
    for i, rule in enumerate(rules):
        if isinstance(rule, dict) and rule.get("action") == "SCMP_ACT_NOTIFY":
            names = rule.get("names")
            if isinstance(names, list) and "write" in names:
                raise ConfigError(f"{path}.syscalls[{i}].names[{names.index('write')}]: "
                                  "SCMP_ACT_NOTIFY cannot be used for the write syscall")


def compile_profile(cfg: dict[str, Any], log: Log | None, cache_dir: str = "",
                    path: str = "linux.seccomp") -> Program:
    """cfg (an OCI linux.seccomp object) as a loadable Program, from the cache when an
    intact entry for the same profile is there."""
    from yacr import jsonio

    check_notify(cfg, path)
    key = ""
    if cache_dir:
        import _sha256

        uname = posix.uname()
        from yacr import __version__

        text = jsonio.dumps([cfg, uname.release, uname.machine, __version__, CACHE_FORMAT])
        key = _sha256.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        cached = _cache_read(cache_dir, key, cfg, log)
        if cached is not None:
            return cached
    rec = _Recorder(log)
    filt = Filter(cfg, rec, path)  # type: ignore[arg-type]
    prog = filt.program()
    if cache_dir:
        _cache_write(cache_dir, key, prog, rec.seen)
    return prog


def _cache_read(cache_dir: str, key: str, cfg: dict[str, Any], log: Log | None
                ) -> Program | None:
    """The entry for key if it is ours, not writable by others and intact; else None."""
    import _sha256

    from yacr import jsonio

    try:
        fd = posix.open(f"{cache_dir}/{key}", posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = posix.fstat(fd)
        if st.st_uid != posix.geteuid() or st.st_mode & 0o022 or st.st_size > 1 << 20:
            return None
        data = posix.read(fd, st.st_size + 1)
    finally:
        posix.close(fd)
    head, sep, bpf = data.partition(b"\n")
    try:
        meta = jsonio.loads(head)
        ok = (sep and meta["key"] == key and len(bpf) % 8 == 0 and bpf
              and meta["sha256"] == _sha256.sha256(bpf).hexdigest())
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        return None
    for msg in meta.get("warnings", []):
        if log is not None:
            log.warn(msg)
    lp, lm = cfg.get("listenerPath"), cfg.get("listenerMetadata")
    return Program(bpf, int(meta["flags"]), bool(meta["notify"]), lp or "", lm or "")


def _cache_write(cache_dir: str, key: str, prog: Program, warnings: list[str]) -> None:
    """Best effort: a cache that cannot be written only costs the next start the compile."""
    import _sha256

    from yacr import fs, jsonio

    head = jsonio.dumps({"key": key, "flags": prog.flags, "notify": prog.uses_notify,
                         "warnings": warnings, "sha256": _sha256.sha256(prog.bpf).hexdigest()})
    tmp = f"{cache_dir}/.{key}.{posix.getpid()}"
    try:
        fs.makedirs(cache_dir, 0o700)
        fd = posix.open(tmp, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_CLOEXEC,
                        0o600)
        try:
            posix.write(fd, head.encode() + b"\n" + prog.bpf)
        finally:
            posix.close(fd)
        posix.rename(tmp, f"{cache_dir}/{key}")
    except OSError:
        try:
            posix.unlink(tmp)
        except OSError:
            pass


def send_to_listener(path: str, notify_fd: int, state: dict[str, Any], metadata: str) -> None:
    """Hand the notify fd and the container state to the agent at listenerPath (SCM_RIGHTS)."""
    import _socket
    import struct

    from yacr import jsonio

    st = dict(state)
    payload = {"ociVersion": st.get("ociVersion", ""), "fds": ["seccompFd"], "pid": st["pid"],
               "metadata": metadata, "state": st}
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        s.connect(path)
        s.sendmsg([jsonio.dumps(payload).encode()],
                  [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", notify_fd))])
    except OSError as e:
        raise YacrError(f"failed to connect with seccomp agent at linux.seccomp.listenerPath "
                        f"{path}: {e.strerror}") from None
    finally:
        s.close()
