"""linux.seccomp compiled with libseccomp, the library every runtime uses.

The filter is built in the runtime before init is forked, so errors and
warnings (unknown syscall names are warned about and skipped) reach the user
as they do for any other field, and libseccomp is loaded while the host's
libraries are still reachable. Init only loads the prepared context, as late
as it can: right before execve.
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
EPERM = 1


class _Lib:
    """The few libseccomp entry points a filter needs."""

    def __init__(self) -> None:
        lib = S.Library(LIBRARY)
        self.init = lib.function("seccomp_init", S.c_void_p)
        self.release = lib.function("seccomp_release", S.c_int)
        self.arch_add = lib.function("seccomp_arch_add", S.c_int)
        self.arch_resolve_name = lib.function("seccomp_arch_resolve_name", S.c_uint)
        self.syscall_resolve_name = lib.function("seccomp_syscall_resolve_name", S.c_int)
        self.rule_add_array = lib.function("seccomp_rule_add_array", S.c_int)
        self.attr_set = lib.function("seccomp_attr_set", S.c_int)
        self.load = lib.function("seccomp_load", S.c_int)
        self.notify_fd = lib.function("seccomp_notify_fd", S.c_int)


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
                 "default")

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
        ctx = self.lib.init(S.c_uint(self.default))
        if not ctx:
            raise YacrError(f"{path}: libseccomp could not create a filter")
        self.ctx = S.c_void_p(ctx)
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

    def load(self) -> int:
        """Install the filter on this thread; returns the notify fd, or -1."""
        rc = self.lib.load(self.ctx)
        if rc < 0:
            raise YacrError(f"linux.seccomp: cannot load the filter: {posix.strerror(-rc)}")
        if self.uses_notify:
            fd = self.lib.notify_fd(self.ctx)
            if fd < 0:
                raise YacrError(f"linux.seccomp: no notify fd: {posix.strerror(-fd)}")
            return fd
        return -1


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
        raise YacrError(f"linux.seccomp.listenerPath {path}: {e.strerror}") from None
    finally:
        s.close()
