"""Capability names, and applying the five sets to the process about to exec."""

from __future__ import annotations

from yacr import fs
from yacr.linux import sys as S

TYPE_CHECKING = False
if TYPE_CHECKING:
    from yacr.log import Log

NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
BY_NAME = {n: i for i, n in enumerate(NAMES)}
CAP_SYS_ADMIN = 1 << BY_NAME["CAP_SYS_ADMIN"]


def last_cap() -> int:
    try:
        return int(fs.read_file("/proc/sys/kernel/cap_last_cap"))
    except OSError:
        return len(NAMES) - 1


def to_mask(names: list[str], field: str, last: int, log: Log | None) -> int:
    """A bit mask of the named capabilities; unknown ones are warned about and skipped."""
    mask = 0
    for n in names:
        key = n.upper()
        if not key.startswith("CAP_"):
            key = "CAP_" + key
        bit = BY_NAME.get(key)
        if bit is None or bit > last:
            if log is not None:
                log.warn(f"{field}: unknown or unsupported capability {n!r} skipped")
            continue
        mask |= 1 << bit
    return mask


class CapSets:
    """The resolved masks of one process, computed before any privilege is dropped."""

    __slots__ = ("bounding", "effective", "inheritable", "permitted", "ambient", "last")

    def __init__(self, caps: dict[str, list[str]], log: Log | None, path: str) -> None:
        self.last = last_cap()
        self.bounding = to_mask(caps.get("bounding", []), f"{path}.bounding", self.last, log)
        self.effective = to_mask(caps.get("effective", []), f"{path}.effective", self.last, log)
        self.inheritable = to_mask(caps.get("inheritable", []), f"{path}.inheritable",
                                   self.last, log)
        self.permitted = to_mask(caps.get("permitted", []), f"{path}.permitted", self.last, log)
        self.ambient = to_mask(caps.get("ambient", []), f"{path}.ambient", self.last, log)
        self._skip_ungrantable(log, path)

    def _skip_ungrantable(self, log: Log | None, path: str) -> None:
        """The runtime-spec: capabilities that cannot be granted are warned about, and the
        runtime should not fail (a VM or a nested runtime without CAP_SYS_RESOURCE, say).
        What this process does not hold, in its permitted and bounding sets, it cannot
        hand on: capset would refuse the whole call."""
        held = S.capget()[1]
        for cap in range(self.last + 1):
            if held & (1 << cap):
                try:
                    if S.prctl(S.PR_CAPBSET_READ, cap) != 1:
                        held &= ~(1 << cap)
                except OSError:
                    pass
        wanted = self.effective | self.permitted | self.inheritable | self.ambient
        missing = wanted & ~held
        if not missing:
            return
        if log is not None:
            names = ", ".join(NAMES[c] if c < len(NAMES) else str(c)
                              for c in range(self.last + 1) if missing & (1 << c))
            log.warn(f"{path}: {names} cannot be granted (the runtime itself does not hold "
                     "it); skipped")
        self.effective &= held
        self.permitted &= held
        self.inheritable &= held
        self.ambient &= held

    def drop_bounding(self) -> None:
        """Needs CAP_SETPCAP, so it runs before the user switch."""
        for cap in range(self.last + 1):
            if not self.bounding & (1 << cap):
                S.prctl(S.PR_CAPBSET_DROP, cap)

    def apply(self, extra: int = 0) -> None:
        """After the user switch: set the three thread sets, then raise the ambient ones.

        `extra` keeps more capabilities effective and permitted for now (CAP_SYS_ADMIN until
        the seccomp filter is loaded); a second apply() without it drops them.
        """
        S.capset(self.effective | extra, self.permitted | extra, self.inheritable)
        S.prctl(S.PR_CAP_AMBIENT, S.PR_CAP_AMBIENT_CLEAR_ALL)
        for cap in range(self.last + 1):
            if self.ambient & (1 << cap):
                try:
                    S.prctl(S.PR_CAP_AMBIENT, S.PR_CAP_AMBIENT_RAISE, cap)
                except OSError:
                    # The kernel refuses an ambient cap not in permitted and inheritable; the
                    # spec leaves this to the runtime, runc ignores it too.
                    pass
