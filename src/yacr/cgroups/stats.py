"""Container statistics from the kernel's cgroup files, in the shape of runc's `events`.

containerd, podman and monitoring tools parse `runc events --stats` as runc's
types.Stats, so the field names, the units (nanoseconds of CPU, bytes of memory)
and the omitted-when-zero fields follow it. v1 reads one file per controller
hierarchy; v2 reads the single cgroup directory.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_U64_MAX = (1 << 64) - 1
_USER_HZ = 100  # cpuacct.stat counts in USER_HZ ticks


def _read(d: str | None, name: str) -> str | None:
    if d is None:
        return None
    try:
        with open(os.path.join(d, name)) as f:
            return f.read()
    except OSError:
        return None


def _int(d: str | None, name: str) -> int:
    text = _read(d, name)
    if text is None:
        return 0
    t = text.strip()
    if t == "max":
        return _U64_MAX
    try:
        return int(t)
    except ValueError:
        return 0


def _kv(d: str | None, name: str) -> dict[str, int]:
    """A `key value` per line file (memory.stat, cpu.stat, memory.events)."""
    out: dict[str, int] = {}
    for line in (_read(d, name) or "").splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            continue
    return out


def _cpu_list(text: str | None) -> list[int]:
    """"0-3,8" -> [0, 1, 2, 3, 8]."""
    out: list[int] = []
    for part in (text or "").strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            out += range(int(lo), int(hi or lo) + 1)
        except ValueError:
            continue
    return out


def _nonzero(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    """Drop the keys runc marks omitempty when they are zero or empty."""
    for k in keys:
        if not d.get(k):
            d.pop(k, None)
    return d


def _mem_entry(limit: int, usage: int, peak: int, failcnt: int) -> dict[str, Any]:
    return _nonzero({"limit": limit, "usage": usage, "max": peak, "failcnt": failcnt},
                    "usage", "max")


def _empty() -> dict[str, Any]:
    return {"cpu": {"usage": {"kernel": 0, "user": 0}, "throttling": {}},
            "cpuset": {}, "memory": {}, "pids": {}, "blkio": {}, "hugetlb": {},
            "intel_rdt": {}, "network_interfaces": None}


def _cpuset(d: str | None, s: dict[str, Any], v2: bool) -> None:
    if d is None:
        return
    eff = ".effective" if v2 else ""
    cs = {"cpus": _cpu_list(_read(d, f"cpuset.cpus{eff}")),
          "mems": _cpu_list(_read(d, f"cpuset.mems{eff}"))}
    if not v2:
        for k in ("cpu_exclusive", "mem_hardwall", "mem_exclusive", "memory_migrate",
                  "memory_spread_page", "memory_spread_slab", "memory_pressure",
                  "sched_load_balance", "sched_relax_domain_level"):
            cs[k] = _int(d, f"cpuset.{k}")
    s["cpuset"] = _nonzero(cs, "cpus", "mems")


def _blkio_v1(d: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if d is None:
        return out
    for key, names in (("ioServiceBytesRecursive", ("blkio.io_service_bytes_recursive",
                                                    "blkio.throttle.io_service_bytes_recursive")),
                       ("ioServicedRecursive", ("blkio.io_serviced_recursive",
                                                "blkio.throttle.io_serviced_recursive"))):
        for n in names:
            text = _read(d, n)
            if text is None:
                continue
            entries = []
            for line in text.splitlines():
                f = line.split()
                if len(f) != 3 or ":" not in f[0]:
                    continue
                ma, mi = f[0].split(":")
                entries.append(_nonzero({"major": int(ma), "minor": int(mi), "op": f[1],
                                         "value": int(f[2])}, "major", "minor", "op", "value"))
            if entries:
                out[key] = entries
            break
    return out


def v1_stats(dirs: dict[str, str]) -> dict[str, Any]:
    """Stats from v1 hierarchies (controller name -> the container's directory)."""
    s = _empty()
    acct = dirs.get("cpuacct")
    usage: dict[str, Any] = {"total": _int(acct, "cpuacct.usage")}
    for key, name in (("percpu", "cpuacct.usage_percpu"),
                      ("percpu_kernel", "cpuacct.usage_percpu_sys"),
                      ("percpu_user", "cpuacct.usage_percpu_user")):
        usage[key] = [int(x) for x in (_read(acct, name) or "").split()]
    ticks = _kv(acct, "cpuacct.stat")
    usage["kernel"] = ticks.get("system", 0) * 1_000_000_000 // _USER_HZ
    usage["user"] = ticks.get("user", 0) * 1_000_000_000 // _USER_HZ
    cs = _kv(dirs.get("cpu"), "cpu.stat")
    s["cpu"] = {"usage": _nonzero(usage, "total", "percpu", "percpu_kernel", "percpu_user"),
                "throttling": _nonzero({"periods": cs.get("nr_periods", 0),
                                        "throttledPeriods": cs.get("nr_throttled", 0),
                                        "throttledTime": cs.get("throttled_time", 0)},
                                       "periods", "throttledPeriods", "throttledTime")}
    _cpuset(dirs.get("cpuset"), s, False)
    md = dirs.get("memory")
    if md is not None:
        raw = _kv(md, "memory.stat")
        mem: dict[str, Any] = {"cache": raw.get("cache", 0)}
        for key, pre in (("usage", "memory"), ("swap", "memory.memsw"),
                         ("kernel", "memory.kmem"), ("kernelTCP", "memory.kmem.tcp")):
            mem[key] = _mem_entry(_int(md, f"{pre}.limit_in_bytes"),
                                  _int(md, f"{pre}.usage_in_bytes"),
                                  _int(md, f"{pre}.max_usage_in_bytes"),
                                  _int(md, f"{pre}.failcnt"))
        mem["raw"] = raw
        s["memory"] = _nonzero(mem, "cache", "raw")
    pd = dirs.get("pids")
    if pd is not None:
        lim = _int(pd, "pids.max")
        s["pids"] = _nonzero({"current": _int(pd, "pids.current"),
                              "limit": 0 if lim == _U64_MAX else lim}, "current", "limit")
    s["blkio"] = _blkio_v1(dirs.get("blkio"))
    hd = dirs.get("hugetlb")
    if hd is not None:
        from yacr.cgroups.manager import hugepage_sizes

        for size in hugepage_sizes():
            s["hugetlb"][size] = _nonzero(
                {"usage": _int(hd, f"hugetlb.{size}.usage_in_bytes"),
                 "max": _int(hd, f"hugetlb.{size}.max_usage_in_bytes"),
                 "failcnt": _int(hd, f"hugetlb.{size}.failcnt")}, "usage", "max")
    return s


def v2_stats(d: str) -> dict[str, Any]:
    """Stats from one cgroup v2 directory; files of controllers not enabled are skipped."""
    s = _empty()
    cs = _kv(d, "cpu.stat")  # a core file: present even without the cpu controller
    s["cpu"] = {"usage": _nonzero({"total": cs.get("usage_usec", 0) * 1000,
                                   "kernel": cs.get("system_usec", 0) * 1000,
                                   "user": cs.get("user_usec", 0) * 1000}, "total"),
                "throttling": _nonzero({"periods": cs.get("nr_periods", 0),
                                        "throttledPeriods": cs.get("nr_throttled", 0),
                                        "throttledTime": cs.get("throttled_usec", 0) * 1000},
                                       "periods", "throttledPeriods", "throttledTime")}
    if os.path.exists(os.path.join(d, "cpuset.cpus.effective")):
        _cpuset(d, s, True)
    if os.path.exists(os.path.join(d, "memory.current")):
        raw = _kv(d, "memory.stat")
        ev = _kv(d, "memory.events")
        cur = _int(d, "memory.current")
        lim = _int(d, "memory.max")
        swap_cur = _int(d, "memory.swap.current")
        swap_lim = _int(d, "memory.swap.max")
        s["memory"] = _nonzero({
            "cache": raw.get("file", 0),
            "usage": _mem_entry(lim, cur, _int(d, "memory.peak"), ev.get("max", 0)),
            "swap": _mem_entry(_U64_MAX if _U64_MAX in (lim, swap_lim) else lim + swap_lim,
                               cur + swap_cur, 0, 0),
            "kernel": _mem_entry(0, raw.get("kernel", 0), 0, 0),
            "kernelTCP": _mem_entry(0, raw.get("sock", 0), 0, 0),
            "raw": raw}, "cache", "raw")
    if os.path.exists(os.path.join(d, "pids.current")):
        lim = _int(d, "pids.max")
        s["pids"] = _nonzero({"current": _int(d, "pids.current"),
                              "limit": 0 if lim == _U64_MAX else lim}, "current", "limit")
    text = _read(d, "io.stat")
    if text:
        by_bytes, by_ios = [], []
        for line in text.splitlines():
            f = line.split()
            if not f or ":" not in f[0]:
                continue
            ma, mi = (int(x) for x in f[0].split(":"))
            kv = dict(x.split("=", 1) for x in f[1:] if "=" in x)
            for op, b, n in (("Read", "rbytes", "rios"), ("Write", "wbytes", "wios")):
                by_bytes.append({"major": ma, "minor": mi, "op": op, "value": int(kv.get(b, 0))})
                by_ios.append({"major": ma, "minor": mi, "op": op, "value": int(kv.get(n, 0))})
        s["blkio"] = _nonzero({"ioServiceBytesRecursive": by_bytes,
                               "ioServicedRecursive": by_ios},
                              "ioServiceBytesRecursive", "ioServicedRecursive")
    from yacr.cgroups.manager import hugepage_sizes

    for size in hugepage_sizes():
        if os.path.exists(os.path.join(d, f"hugetlb.{size}.current")):
            s["hugetlb"][size] = _nonzero(
                {"usage": _int(d, f"hugetlb.{size}.current"),
                 "failcnt": _kv(d, f"hugetlb.{size}.events").get("max", 0)}, "usage")
    return s
