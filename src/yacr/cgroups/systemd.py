"""--systemd-cgroup: the container's cgroup is a transient scope that systemd owns.

On a host where systemd manages cgroup v2 (Kubernetes nodes with the systemd driver,
podman's default), a runtime must not make cgroups behind systemd's back: it asks
systemd, over D-Bus, for a transient scope unit that holds the container's init
(StartTransientUnit), with Delegate=yes so that the cgroup below the scope is the
runtime's (and the container's) to write. linux.cgroupsPath then reads
"slice:prefix:name" as runc reads it: the unit is "prefix-name.scope" in "slice"
(system.slice when empty).

What systemd can express is handed to it as unit properties (memory, CPU weight and
quota, cpusets, tasks, I/O weights, the device policy), so a `systemctl daemon-reload`
or a later property change does not silently undo the container's limits; the rest, and
the exact values, are written to the delegated cgroup by the v2 manager afterwards, as
for the cgroupfs driver. Device rules are enforced by yacr's own eBPF program as
everywhere; systemd's DeviceAllow list mirrors what an allow-list can say.

The D-Bus wire protocol is jeepney's (a pure-Python, maintained D-Bus library), imported
only here: a container without --systemd-cgroup never loads it. Only pure cgroup v2 is
supported: on v1 or hybrid hosts the driver cannot be tested here, so it is refused.
"""

from __future__ import annotations

import posix
import time

from yacr import fs
from yacr.errors import ConfigError, YacrError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from yacr.cgroups import Layout
    from yacr.cgroups.devices import Rules
    from yacr.cgroups.resources import Resources

CGROUP_ROOT = "/sys/fs/cgroup"
DEFAULT_SLICE = "system.slice"
DEFAULT_PREFIX = "yacr"
JOB_TIMEOUT = 30.0  # seconds systemd may take to start or stop a unit
_MANAGER_PATH = "/org/freedesktop/systemd1"
_MANAGER = "org.freedesktop.systemd1.Manager"
_SYSTEMD = "org.freedesktop.systemd1"
_UINT64_MAX = (1 << 64) - 1


class SystemdError(YacrError):
    """systemd refused, or could not be reached."""


# --- names -----------------------------------------------------------------------------------

def parse_path(cgroups_path: str, cid: str) -> tuple[str, str]:
    """(slice, unit) from linux.cgroupsPath in runc's "slice:prefix:name" form; an empty
    path is the default slice and "yacr-<id>.scope"."""
    if not cgroups_path:
        return DEFAULT_SLICE, f"{DEFAULT_PREFIX}-{cid}.scope"
    parts = cgroups_path.split(":")
    if len(parts) != 3:
        raise ConfigError(f"linux.cgroupsPath: {cgroups_path!r} is not of the form "
                          "slice:prefix:name, which --systemd-cgroup needs")
    slice_, prefix, name = parts
    if not name:
        raise ConfigError(f"linux.cgroupsPath: {cgroups_path!r} has no name (slice:prefix:name)")
    if name.endswith(".slice"):
        raise ConfigError(f"linux.cgroupsPath: {cgroups_path!r} names a slice; yacr runs "
                          "containers in scopes only (prefix-name.scope)")
    unit = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
    if "/" in unit or unit.startswith("."):
        raise ConfigError(f"linux.cgroupsPath: {cgroups_path!r} makes an invalid unit name "
                          f"{unit!r}")
    slice_ = slice_ or DEFAULT_SLICE
    expand_slice(slice_)  # validated here, before anything is asked of systemd
    return slice_, unit


def expand_slice(slice_: str) -> str:
    """The cgroup path of a slice: "a-b.slice" lives at /a.slice/a-b.slice (systemd's
    rule: each dash is one level down); "-.slice" is the root."""
    what = f"linux.cgroupsPath: invalid slice name {slice_!r}"
    if not slice_.endswith(".slice") or slice_ == ".slice" or "/" in slice_:
        raise ConfigError(f"{what} (a slice name ends in .slice and has no '/')")
    stem = slice_[: -len(".slice")]
    if stem == "-":
        return "/"
    path, prefix = "", ""
    for part in stem.split("-"):
        if not part:
            raise ConfigError(f"{what} (empty component between dashes)")
        path += f"/{prefix}{part}.slice"
        prefix += part + "-"
    return path


def cgroup_dir(slice_: str, unit: str) -> str:
    return fs.normpath(CGROUP_ROOT + expand_slice(slice_) + "/" + unit)


def check_host(layout: Layout) -> None:
    """The driver needs a pure v2 host where systemd runs as the system manager."""
    if posix.geteuid() != 0:
        raise YacrError("--systemd-cgroup: only root's containers use the system manager; "
                        "rootless containers are not supported with it")
    if layout.mode != "v2":
        raise YacrError(f"--systemd-cgroup: this host's cgroups are {layout.mode}; yacr "
                        "drives systemd on pure cgroup v2 hosts only (the layout it is "
                        "tested on); drop the flag to use cgroupfs")
    if not fs.isdir("/run/systemd/system"):
        raise YacrError("--systemd-cgroup: systemd is not running on this host (no "
                        "/run/systemd/system); drop the flag to use cgroupfs")
    from yacr.venv import add_site_packages

    add_site_packages()
    try:
        import jeepney  # noqa: F401
    except ImportError:
        raise YacrError("--systemd-cgroup needs the jeepney D-Bus library, which is not "
                        "installed (make setup installs it)") from None


# --- properties ------------------------------------------------------------------------------

def _prop(name: str, sig: str, value: Any) -> tuple[str, tuple[str, Any]]:
    return (name, (sig, value))


def cpu_bits(spec: str, field: str) -> bytes:
    """A cpuset list ("0-3,5") as systemd's AllowedCPUs byte mask (bit n: CPU n)."""
    mask = 0
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise ConfigError(f"{field}: {spec!r} is not a list of ranges") from None
        if a > b or b > 8191:
            raise ConfigError(f"{field}: {spec!r} has an invalid range {part!r}")
        for n in range(a, b + 1):
            mask |= 1 << n
    return mask.to_bytes((mask.bit_length() + 7) // 8 or 1, "little")


def quota_per_sec(quota: int, period: int) -> int:
    """CPUQuotaPerSecUSec for a CFS quota/period, rounded up to systemd's 10 ms steps
    (it stores a percentage), so that the cpu.max written afterwards is never above what
    systemd would set itself."""
    if quota <= 0:
        return _UINT64_MAX
    usec = quota * 1_000_000 // period
    return -(-usec // 10_000) * 10_000


def device_allow(rules: Rules) -> list[tuple[str, str]] | None:
    """DeviceAllow entries for the rules' final state, or None for "every device" (an
    allow-all default, which an allow-list cannot narrow: yacr's eBPF program does)."""
    from yacr.cgroups.devices import WILDCARD, access_text

    if rules.default_allow:
        return None
    names = _proc_devices()
    out = []
    for (kind, major, minor), acc in rules.exceptions.items():
        word = "char" if kind == "c" else "block"
        if major == WILDCARD:
            node = f"{word}-*"
        elif minor == WILDCARD:
            name = names.get((kind, major))
            if name is None:
                continue  # no driver name for it: the eBPF program still allows it
            node = f"{word}-{name}"
        else:
            node = f"/dev/{word}/{major}:{minor}"
        out.append((node, access_text(acc)))
    return out


def _proc_devices() -> dict[tuple[str, int], str]:
    out: dict[tuple[str, int], str] = {}
    kind = ""
    try:
        text = fs.read_file("/proc/devices").decode()
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith("Character"):
            kind = "c"
        elif line.startswith("Block"):
            kind = "b"
        else:
            f = line.split()
            if len(f) == 2 and f[0].isdigit():
                out[(kind, int(f[0]))] = f[1]
    return out


def resource_properties(res: Resources, rules: Rules | None) -> list[Any]:
    """Unit properties for what systemd itself can set (see the module docstring)."""
    from yacr.cgroups.v2 import cpu_weight, io_weight, swap_max

    props: list[Any] = []
    m = res.memory
    if m is not None:
        if m.limit is not None and m.limit != 0:
            props.append(_prop("MemoryMax", "t", _UINT64_MAX if m.limit < 0 else m.limit))
        if m.reservation:
            props.append(_prop("MemoryLow", "t", _UINT64_MAX if m.reservation < 0
                               else m.reservation))
        if m.swap is not None:
            swap = swap_max(m.swap, m.limit or 0, f"{res.path}.memory.swap")
            if swap is not None:
                props.append(_prop("MemorySwapMax", "t", _UINT64_MAX if swap < 0 else swap))
    c = res.cpu
    if c is not None:
        if c.shares:
            props.append(_prop("CPUWeight", "t", cpu_weight(c.shares)))
        if c.quota is not None or c.period:
            period = c.period or 100_000
            props.append(_prop("CPUQuotaPeriodUSec", "t", period))
            props.append(_prop("CPUQuotaPerSecUSec", "t",
                               quota_per_sec(c.quota if c.quota is not None else -1, period)))
        if c.cpus:
            props.append(_prop("AllowedCPUs", "ay", cpu_bits(c.cpus, f"{res.path}.cpu.cpus")))
        if c.mems:
            props.append(_prop("AllowedMemoryNodes", "ay",
                               cpu_bits(c.mems, f"{res.path}.cpu.mems")))
    if res.pids is not None and res.pids != 0:
        props.append(_prop("TasksMax", "t", _UINT64_MAX if res.pids < 0 else res.pids))
    b = res.block_io
    if b is not None:
        if b.weight:
            props.append(_prop("IOWeight", "t", io_weight(b.weight)))
        weights = [(f"/dev/block/{d.dev}", io_weight(d.weight)) for d in b.weight_device
                   if d.weight]
        if weights:
            props.append(_prop("IODeviceWeight", "a(st)", weights))
    for key, name in (("memory.high", "MemoryHigh"), ("memory.low", "MemoryLow"),
                      ("memory.min", "MemoryMin"), ("memory.max", "MemoryMax"),
                      ("memory.swap.max", "MemorySwapMax"), ("pids.max", "TasksMax")):
        v = res.unified.get(key)
        if v is not None:
            v = v.strip()
            if v != "max" and not v.isdigit():
                raise ConfigError(f"{res.path}.unified.{key}: {v!r} is not a number or max")
            props.append(_prop(name, "t", _UINT64_MAX if v == "max" else int(v)))
    if rules is not None:
        allow = device_allow(rules)
        if allow is not None:
            props.append(_prop("DevicePolicy", "s", "strict"))
            props.append(_prop("DeviceAllow", "a(ss)", allow))
    return props


# --- the bus ---------------------------------------------------------------------------------

class Bus:
    """A connection to the system bus and calls on systemd's manager object."""

    def __init__(self) -> None:
        from yacr.venv import add_site_packages

        add_site_packages()
        from jeepney.io.blocking import open_dbus_connection

        try:
            self.conn = open_dbus_connection(bus="SYSTEM")
        except (OSError, ValueError) as e:
            raise SystemdError(f"--systemd-cgroup: cannot reach the system bus: {e}") \
                from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Bus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, signature: str, *args: Any) -> tuple[Any, ...]:
        from jeepney import DBusAddress, new_method_call
        from jeepney.wrappers import DBusErrorResponse, unwrap_msg

        addr = DBusAddress(_MANAGER_PATH, bus_name=_SYSTEMD, interface=_MANAGER)
        try:
            reply = self.conn.send_and_get_reply(new_method_call(addr, method, signature,
                                                                 args), timeout=JOB_TIMEOUT)
            return unwrap_msg(reply)
        except DBusErrorResponse as e:
            raise SystemdError(_dbus_error(method, e)) from None
        except (OSError, TimeoutError) as e:
            raise SystemdError(f"systemd {method}: {e or 'no answer'}") from None

    def run_job(self, method: str, signature: str, *args: Any) -> None:
        """Call a method that queues a job and wait until systemd reports it finished
        (JobRemoved); a result other than "done" is an error."""
        from jeepney import MatchRule, message_bus
        from jeepney.io.blocking import Proxy

        rule = MatchRule(type="signal", interface=_MANAGER, member="JobRemoved",
                         path=_MANAGER_PATH)
        Proxy(message_bus, self.conn).AddMatch(rule)
        with self.conn.filter(rule) as queue:
            self.call("Subscribe", "")
            (job,) = self.call(method, signature, *args)[:1]
            deadline = time.monotonic() + JOB_TIMEOUT
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemdError(f"systemd {method} of {args[0]}: the job did not "
                                       f"finish within {JOB_TIMEOUT:.0f} s")
                msg = self.conn.recv_until_filtered(queue, timeout=left)
                _id, path, unit, result = msg.body
                if path == job:
                    if result != "done":
                        raise SystemdError(f"systemd {method} of {unit}: the job ended "
                                           f"with {result!r} (see journalctl -u {unit})")
                    return


def _dbus_error(method: str, e: Any) -> str:
    name = getattr(e, "name", "") or ""
    detail = " ".join(str(x) for x in (getattr(e, "data", ()) or ())) or str(e)
    return f"systemd refused {method}: {detail} ({name.rsplit('.', 1)[-1] or 'error'})"


def start_scope(slice_: str, unit: str, pid: int, props: list[Any], cid: str) -> None:
    """StartTransientUnit for the container's scope, holding pid, and wait for it."""
    base = [_prop("Description", "s", f"yacr container {cid}"),
            _prop("Slice", "s", slice_),
            _prop("Delegate", "b", True),
            _prop("PIDs", "au", [pid]),
            _prop("MemoryAccounting", "b", True), _prop("CPUAccounting", "b", True),
            _prop("IOAccounting", "b", True), _prop("TasksAccounting", "b", True),
            _prop("DefaultDependencies", "b", False)]
    with Bus() as bus:
        try:
            bus.run_job("StartTransientUnit", "ssa(sv)a(sa(sv))", unit, "replace",
                        base + props, [])
        except SystemdError as e:
            if "UnitExists" in str(e):
                raise SystemdError(f"linux.cgroupsPath: systemd already has a unit {unit} "
                                   "(another container uses this cgroupsPath)") from None
            raise SystemdError(f"linux.cgroupsPath: {e}") from None


def set_properties(unit: str, props: list[Any]) -> None:
    """`update`: the unit's properties change with the files (runtime only, as runc)."""
    if not props:
        return
    with Bus() as bus:
        bus.call("SetUnitProperties", "sba(sv)", unit, True, props)


def stop_scope(unit: str, undoing: bool = False) -> None:
    """StopUnit, and forget a failed unit, so that nothing of the container stays in
    systemd; a unit that is already gone (its last process exited) is fine. `undoing`: a
    failed create's cleanup, where a bus that cannot be reached also means that no unit
    was started (the error that matters has been reported)."""
    try:
        bus = Bus()
    except YacrError:
        if undoing:
            return
        raise
    with bus:
        try:
            bus.run_job("StopUnit", "ss", unit, "replace")
        except SystemdError as e:
            # gone already; or, undoing, a name systemd refused: it never started
            if "NoSuchUnit" not in str(e) and not (undoing and "InvalidArgs" in str(e)):
                raise
        try:
            bus.call("ResetFailedUnit", "s", unit)
        except SystemdError:
            pass  # not failed, or gone: nothing to forget
