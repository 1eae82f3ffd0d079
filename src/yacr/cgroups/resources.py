"""linux.resources as typed, validated classes; `update`'s flags turned into the same.

Parsing happens before anything is created, so a malformed value fails with its
JSON path and nothing to undo. The numbers keep runc's meaning of zero: for the
fields runc treats 0 as "not set" (memory sizes, CPU shares, quota and period,
real-time values, block I/O weight, pids limit), 0 is not set here either; the
kernel would read some of them as "allow nothing" (a 0-byte memory limit).
"""

from __future__ import annotations

from yacr.errors import ConfigError, UsageError
from yacr.spec import boolean, integer, obj, string

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from yacr.cgroups.devices import Rule

_I64_MIN = -(1 << 63)
_I64 = (1 << 63) - 1
_U64 = (1 << 64) - 1
_U32 = (1 << 32) - 1
_U16 = (1 << 16) - 1


def _int(d: dict[str, Any], key: str, path: str, lo: int, hi: int,
         zero_unset: bool = True) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    n = integer(v, f"{path}.{key}", lo, hi)
    return None if zero_unset and n == 0 else n


def _bool(d: dict[str, Any], key: str, path: str) -> bool | None:
    v = d.get(key)
    return None if v is None else boolean(v, f"{path}.{key}")


class Memory:
    __slots__ = ("limit", "reservation", "swap", "kernel", "kernel_tcp", "swappiness",
                 "disable_oom_killer", "use_hierarchy", "check_before_update")

    def __init__(self, d: dict[str, Any], path: str) -> None:
        self.limit = _int(d, "limit", path, -1, _I64)
        self.reservation = _int(d, "reservation", path, -1, _I64)
        self.swap = _int(d, "swap", path, -1, _I64)
        self.kernel = _int(d, "kernel", path, -1, _I64)
        self.kernel_tcp = _int(d, "kernelTCP", path, -1, _I64)
        sw = d.get("swappiness")
        # Some clients send uint64(-1) for "leave the kernel's default".
        self.swappiness = None if sw is None or sw == _U64 else integer(
            sw, f"{path}.swappiness", 0, _U64)
        self.disable_oom_killer = _bool(d, "disableOOMKiller", path)
        self.use_hierarchy = _bool(d, "useHierarchy", path)
        self.check_before_update = _bool(d, "checkBeforeUpdate", path)


class CPU:
    __slots__ = ("shares", "quota", "period", "burst", "realtime_runtime", "realtime_period",
                 "cpus", "mems", "idle")

    def __init__(self, d: dict[str, Any], path: str) -> None:
        self.shares = _int(d, "shares", path, 0, _U64)
        self.quota = _int(d, "quota", path, _I64_MIN, _I64)
        self.period = _int(d, "period", path, 0, _U64)
        self.burst = _int(d, "burst", path, 0, _U64, zero_unset=False)
        self.realtime_runtime = _int(d, "realtimeRuntime", path, _I64_MIN, _I64)
        self.realtime_period = _int(d, "realtimePeriod", path, 0, _U64)
        c, m = d.get("cpus"), d.get("mems")
        self.cpus = None if not c else string(c, f"{path}.cpus")
        self.mems = None if not m else string(m, f"{path}.mems")
        self.idle = _int(d, "idle", path, _I64_MIN, _I64, zero_unset=False)


class DeviceValue:
    """A per-device block I/O entry: weights, or a throttle rate."""

    __slots__ = ("major", "minor", "weight", "leaf_weight", "rate")

    def __init__(self, d: dict[str, Any], path: str, kind: str) -> None:
        self.major = integer(d.get("major"), f"{path}.major", 0, _U32)
        self.minor = integer(d.get("minor"), f"{path}.minor", 0, _U32)
        self.weight = self.leaf_weight = self.rate = None
        if kind == "weight":
            self.weight = _int(d, "weight", path, 0, _U16)
            self.leaf_weight = _int(d, "leafWeight", path, 0, _U16)
        else:
            self.rate = integer(d.get("rate"), f"{path}.rate", 0, _U64)

    @property
    def dev(self) -> str:
        return f"{self.major}:{self.minor}"


THROTTLES = (("throttleReadBpsDevice", "read_bps_device", "rbps"),
             ("throttleWriteBpsDevice", "write_bps_device", "wbps"),
             ("throttleReadIOPSDevice", "read_iops_device", "riops"),
             ("throttleWriteIOPSDevice", "write_iops_device", "wiops"))


class BlockIO:
    __slots__ = ("weight", "leaf_weight", "weight_device", "throttles")

    def __init__(self, d: dict[str, Any], path: str) -> None:
        self.weight = _int(d, "weight", path, 0, _U16)
        self.leaf_weight = _int(d, "leafWeight", path, 0, _U16)
        self.weight_device = _devlist(d, "weightDevice", path, "weight")
        self.throttles: dict[str, list[DeviceValue]] = {
            key: _devlist(d, key, path, "rate") for key, _v1, _v2 in THROTTLES}


def _devlist(d: dict[str, Any], key: str, path: str, kind: str) -> list[DeviceValue]:
    v = d.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise ConfigError(f"{path}.{key}: expected an array")
    return [DeviceValue(obj(x, f"{path}.{key}[{i}]"), f"{path}.{key}[{i}]", kind)
            for i, x in enumerate(v)]


class Resources:
    """linux.resources; an absent group is None, an absent field inside a group is None."""

    __slots__ = ("path", "memory", "cpu", "pids", "block_io", "hugepage_limits",
                 "net_class_id", "net_priorities", "rdma", "unified", "devices", "raw")

    def __init__(self, d: dict[str, Any] | None, path: str = "linux.resources") -> None:
        d = d or {}
        self.path = path
        self.raw = d
        m, c, p, b = d.get("memory"), d.get("cpu"), d.get("pids"), d.get("blockIO")
        self.memory = None if m is None else Memory(obj(m, f"{path}.memory"), f"{path}.memory")
        self.cpu = None if c is None else CPU(obj(c, f"{path}.cpu"), f"{path}.cpu")
        self.pids: int | None = None
        if p is not None:
            self.pids = _int(obj(p, f"{path}.pids"), "limit", f"{path}.pids", _I64_MIN, _I64)
        self.block_io = None if b is None else BlockIO(obj(b, f"{path}.blockIO"),
                                                        f"{path}.blockIO")
        self.hugepage_limits: list[tuple[str, int]] = []
        hp = d.get("hugepageLimits")
        if hp is not None:
            if not isinstance(hp, list):
                raise ConfigError(f"{path}.hugepageLimits: expected an array")
            for i, x in enumerate(hp):
                q = f"{path}.hugepageLimits[{i}]"
                x = obj(x, q)
                self.hugepage_limits.append((string(x.get("pageSize"), f"{q}.pageSize",
                                                    nonempty=True),
                                             integer(x.get("limit"), f"{q}.limit", 0, _U64)))
        self.net_class_id: int | None = None
        self.net_priorities: list[tuple[str, int]] = []
        n = d.get("network")
        if n is not None:
            n = obj(n, f"{path}.network")
            self.net_class_id = _int(n, "classID", f"{path}.network", 0, _U32,
                                     zero_unset=False)
            for i, x in enumerate(n.get("priorities") or []):
                q = f"{path}.network.priorities[{i}]"
                x = obj(x, q)
                self.net_priorities.append((string(x.get("name"), f"{q}.name", nonempty=True),
                                            integer(x.get("priority"), f"{q}.priority")))
        self.rdma: dict[str, tuple[int | None, int | None]] = {}
        for name, x in obj(d.get("rdma") or {}, f"{path}.rdma").items():
            q = f"{path}.rdma.{name}"
            x = obj(x, q)
            self.rdma[name] = (_int(x, "hcaHandles", q, 0, _U32, zero_unset=False),
                               _int(x, "hcaObjects", q, 0, _U32, zero_unset=False))
        self.unified: dict[str, str] = {}
        for k, v in obj(d.get("unified") or {}, f"{path}.unified").items():
            if not k or "/" in k or k in (".", ".."):
                raise ConfigError(f"{path}.unified: {k!r} is not a cgroup file name")
            self.unified[k] = string(v, f"{path}.unified.{k}")
        self.devices: list[Rule] | None = None
        if d.get("devices") is not None:
            from yacr.cgroups.devices import parse_rules

            self.devices = parse_rules(d["devices"], f"{path}.devices")


# --- `update`'s flags ----------------------------------------------------------------------

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(text: str, flag: str) -> int:
    """Sizes as docker's units.RAMInBytes reads them (runc's update): 64m, 1.5g, 512KiB,
    binary multiples; -1 means unlimited."""
    t = text.strip()
    if t == "-1":
        return -1
    low = t.lower()
    for suffix in ("ib", "b"):
        if low.endswith(suffix) and len(low) > len(suffix):
            low = low[: -len(suffix)]
            break
    unit = ""
    if low and low[-1] in "kmgtp":
        unit, low = low[-1], low[:-1]
    num = low.strip()
    try:
        value = float(num) if "." in num else int(num)
    except ValueError:
        raise UsageError(f"update: invalid value {text!r} for --{flag}") from None
    if value < 0:
        raise UsageError(f"update: invalid value {text!r} for --{flag}")
    return int(value * _UNITS[unit])


def from_update_flags(o: dict[str, Any]) -> dict[str, Any]:
    """runc update's flags as a linux.resources object (only the flags that were given)."""
    mem: dict[str, Any] = {}
    for flag, key in (("memory", "limit"), ("memory-swap", "swap"),
                      ("memory-reservation", "reservation"), ("kernel-memory", "kernel"),
                      ("kernel-memory-tcp", "kernelTCP")):
        if o.get(flag):
            mem[key] = ram_in_bytes(o[flag], flag)
    cpu: dict[str, Any] = {}
    for flag, key, signed in (("cpu-shares", "shares", False), ("cpu-share", "shares", False),
                              ("cpu-quota", "quota", True), ("cpu-period", "period", False),
                              ("cpu-burst", "burst", False),
                              ("cpu-rt-period", "realtimePeriod", False),
                              ("cpu-rt-runtime", "realtimeRuntime", True),
                              ("cpu-idle", "idle", True)):
        if o.get(flag):
            try:
                v = int(o[flag])
            except ValueError:
                raise UsageError(f"update: invalid value {o[flag]!r} for --{flag}") from None
            if v < 0 and not signed:
                raise UsageError(f"update: invalid value {o[flag]!r} for --{flag}")
            cpu[key] = v
    if o.get("cpuset-cpus"):
        cpu["cpus"] = o["cpuset-cpus"]
    if o.get("cpuset-mems"):
        cpu["mems"] = o["cpuset-mems"]
    out: dict[str, Any] = {}
    if mem:
        out["memory"] = mem
    if cpu:
        out["cpu"] = cpu
    if o.get("pids-limit") is not None:
        out["pids"] = {"limit": o["pids-limit"]}
    if o.get("blkio-weight"):
        out["blockIO"] = {"weight": o["blkio-weight"]}
    return out
