"""The cgroup v2 manager: one directory, controllers enabled from the top down.

A controller's files exist in a cgroup only when every ancestor lists it in
cgroup.subtree_control, so `prepare` enables, level by level, what each parent
offers (as runc does: `update` and `events` may need controllers the config did
not). Spec values written for v1 are converted the way runc converts them:

- cpu.shares -> cpu.weight with runc's current quadratic fit, which maps the
  v1 default 1024 to the v2 default 100 (2 -> 1, 262144 -> 10000);
- memory.swap is memory+swap in the spec, and swap alone in memory.swap.max;
- blkio weights 10..1000 -> io.weight 1..10000, unless BFQ's io.bfq.weight takes
  them as they are.

What v2 has no file for (kernel memory, swappiness, the OOM killer switch, leaf
weights, net_cls/net_prio) is warned about and skipped, as runc ignores it; a
real-time CPU budget cannot be granted at all, so it is an error. A value for a
controller the hierarchy does not offer is an error naming the field.
"""

from __future__ import annotations

from yacr.cgroups.manager import (
    Manager,
    Write,
    dirname,
    exists,
    hugepage_file_size,
    join,
    read,
    write_file,
)
from yacr.errors import YacrError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from yacr.cgroups.devices import Rules
    from yacr.cgroups.resources import Resources
    from yacr.log import Log


def cpu_weight(shares: int) -> int:
    """runc's conversion of cpu.shares (2..262144) to cpu.weight (1..10000)."""
    import math

    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    lg = math.log2(shares)
    return math.ceil(10 ** ((lg * lg + 125 * lg) / 612.0 - 7.0 / 34.0))


def io_weight(blkio_weight: int) -> int:
    """runc's conversion of a blkio weight (10..1000) to io.weight (1..10000)."""
    return 1 + (blkio_weight - 10) * 9999 // 990


def swap_max(swap: int, limit: int, field: str) -> int | None:
    """memory.swap.max from the spec's memory+swap (runc's rules); None: leave it alone."""
    if limit == -1 and swap == 0:
        return -1  # unlimited memory and no swap given: lift the swap limit too
    if swap in (-1, 0):
        return swap or None
    if limit == -1:
        return swap
    if limit == 0:
        raise YacrError(f"{field}: a swap limit needs a memory limit (swap is memory+swap)")
    if swap < limit:
        raise YacrError(f"{field}: {swap} is below the memory limit {limit} (the spec's swap "
                        "is memory+swap)")
    return swap - limit


class V2Manager(Manager):
    name = "v2"

    def __init__(self, dir: str, log: Log | None) -> None:
        super().__init__(log)
        self.dir = dir
        self._controllers: set[str] | None = None

    def has(self, controller: str) -> bool:
        return controller in self.controllers()

    def controllers(self) -> set[str]:
        if self._controllers is None:
            try:
                self._controllers = set(read(join(self.dir, "cgroup.controllers"))
                                        .split())
            except OSError:
                self._controllers = set()
        return self._controllers

    def controller_dir(self, controller: str, field: str) -> str:
        return self.need(controller, field)

    def need(self, controller: str, field: str) -> str:
        if controller not in self.controllers():
            have = " ".join(sorted(self.controllers())) or "none"
            # "invalid configuration", as runc words a config this host cannot honour
            raise YacrError(f"invalid configuration: {field}: the {controller} controller "
                            "is not available in this host's cgroup v2 hierarchy (the "
                            f"cgroup has: {have})")
        return self.dir

    def prepare(self) -> None:
        """Enable in every ancestor's cgroup.subtree_control what it offers.

        One write per level when something is missing; a level that refuses (it has
        processes of its own, or a controller cannot be enabled there) is tried one
        controller at a time, and what stays off is reported by the field needing it.
        """
        levels = []
        p = dirname(self.dir)
        while exists(join(p, "cgroup.controllers")):
            levels.append(p)
            if p in ("/", ""):
                break
            p = dirname(p)
        for lvl in reversed(levels):
            try:
                offered = read(join(lvl, "cgroup.controllers")).split()
                enabled = set(read(join(lvl, "cgroup.subtree_control")).split())
            except OSError:
                continue
            missing = [c for c in offered if c not in enabled]
            if not missing:
                continue
            ctl = join(lvl, "cgroup.subtree_control")
            try:
                write_file(ctl, " ".join("+" + c for c in missing))
            except OSError:
                for c in missing:
                    try:
                        write_file(ctl, "+" + c)
                    except OSError:
                        pass
        self._controllers = None

    def plan_group(self, group: str, res: Resources, update: bool) -> list[Write]:
        return getattr(self, "_" + group)(res, update)

    def apply_devices(self, rules: Rules) -> None:
        from yacr.cgroups import devices

        devices.apply_v2(rules, self.dir)

    def stats(self) -> dict[str, object]:
        from yacr.cgroups.stats import v2_stats

        return v2_stats(self.dir)

    # --- groups -------------------------------------------------------------------------
    def _memory(self, res: Resources, update: bool) -> list[Write]:
        m = res.memory
        if m is None:
            return []
        p = res.path + ".memory"
        for val, field, why in (
                (m.kernel, "kernel", "cgroup v2 has no separate kernel memory limit"),
                (m.kernel_tcp, "kernelTCP", "cgroup v2 has no separate kernel TCP limit"),
                (m.swappiness, "swappiness", "cgroup v2 has no per-cgroup swappiness"),
                (m.disable_oom_killer or None, "disableOOMKiller",
                 "cgroup v2 cannot turn the OOM killer off for a cgroup"),
                (True if m.use_hierarchy is False else None, "useHierarchy",
                 "cgroup v2 is always hierarchical")):
            if val is not None:
                self.warn(f"{p}.{field}: {why}; ignored")
        if m.limit is None and m.swap is None and m.reservation is None:
            return []
        d = self.need("memory", p)
        if update and m.check_before_update and m.limit is not None and m.limit > 0:
            usage = int(read(join(d, "memory.current")))
            if m.limit < usage:
                raise YacrError(f"{p}.limit: {m.limit} is below the container's current "
                                f"memory usage ({usage}), and checkBeforeUpdate is set")
        limit = m.limit or 0
        if update and m.swap not in (None, 0, -1) and not limit:
            cur = read(join(d, "memory.max")).strip()
            limit = -1 if cur == "max" else int(cur)
        out: list[Write] = []
        sw = swap_max(m.swap or 0, limit, f"{p}.swap")
        if sw is not None:
            val = "max" if sw == -1 else str(sw)
            if exists(join(d, "memory.swap.max")):
                out.append(Write(d, "memory.swap.max", val, f"{p}.swap",
                                 shown=m.swap if m.swap else val))
            elif val not in ("max", "0"):
                raise YacrError(f"{p}.swap: this kernel has no swap accounting "
                                "(no memory.swap.max), so the swap limit cannot be set")
        if m.limit is not None:
            out.append(Write(d, "memory.max", "max" if m.limit == -1 else str(m.limit),
                             f"{p}.limit", shown=m.limit))
        if m.reservation is not None:
            out.append(Write(d, "memory.low", "max" if m.reservation == -1
                             else str(m.reservation), f"{p}.reservation", shown=m.reservation))
        return out

    def _cpu(self, res: Resources, update: bool) -> list[Write]:
        c = res.cpu
        if c is None:
            return []
        p = res.path + ".cpu"
        if c.realtime_period is not None or c.realtime_runtime is not None:
            field = "realtimeRuntime" if c.realtime_runtime is not None else "realtimePeriod"
            raise YacrError(f"{p}.{field}: cgroup v2 has no real-time CPU budget, so it "
                            "cannot be granted")
        if all(v is None for v in (c.shares, c.quota, c.period, c.burst, c.idle)):
            return []
        d = self.need("cpu", p)
        out: list[Write] = []
        if c.shares is not None:
            out.append(Write(d, "cpu.weight", str(cpu_weight(c.shares)), f"{p}.shares",
                             shown=c.shares))
        if c.quota is not None or c.period is not None:
            quota, period = c.quota, c.period
            if update and (quota is None or period is None):
                cur_q, _, cur_p = read(join(d, "cpu.max")).strip().partition(" ")
                if quota is None:
                    quota = -1 if cur_q == "max" else int(cur_q)
                if period is None:
                    period = int(cur_p or 100000)
            period = period or 100000
            q = "max" if quota is None or quota < 0 else str(quota)
            field = f"{p}.quota" if c.quota is not None else f"{p}.period"
            out.append(Write(d, "cpu.max", f"{q} {period}", field,
                             shown=f"quota {quota} period {period}"))
        if c.burst is not None:
            out.append(Write(d, "cpu.max.burst", str(c.burst), f"{p}.burst"))
        if c.idle is not None:
            out.append(Write(d, "cpu.idle", str(c.idle), f"{p}.idle"))
        return out

    def _io(self, res: Resources, update: bool) -> list[Write]:
        b = res.block_io
        if b is None:
            return []
        from yacr.cgroups.resources import THROTTLES

        p = res.path + ".blockIO"
        if b.leaf_weight is not None or any(w.leaf_weight is not None for w in b.weight_device):
            self.warn(f"{p}.leafWeight: cgroup v2 has no leaf weights; ignored")
        if (b.weight is None and not any(w.weight is not None for w in b.weight_device)
                and not any(b.throttles.values())):
            return []
        d = self.need("io", p)
        bfq = exists(join(d, "io.bfq.weight"))
        out: list[Write] = []
        if b.weight is not None:
            if bfq:
                out.append(Write(d, "io.bfq.weight", str(b.weight), f"{p}.weight"))
            else:
                out.append(Write(d, "io.weight", str(io_weight(b.weight)), f"{p}.weight",
                                 shown=b.weight))
        for i, w in enumerate(b.weight_device):
            if w.weight is not None:
                f, v = ("io.bfq.weight", w.weight) if bfq else ("io.weight", io_weight(w.weight))
                out.append(Write(d, f, f"{w.dev} {v}", f"{p}.weightDevice[{i}].weight",
                                 shown=w.weight, key=w.dev))
        for key, _v1, v2name in THROTTLES:
            for i, t in enumerate(b.throttles[key]):
                out.append(Write(d, "io.max", f"{t.dev} {v2name}={t.rate}", f"{p}.{key}[{i}]",
                                 shown=f"{t.dev} {t.rate}", key=t.dev,
                                 reset=f"{t.dev} {v2name}=max"))
        return out

    def _hugetlb(self, res: Resources, update: bool) -> list[Write]:
        if not res.hugepage_limits:
            return []
        d = self.need("hugetlb", res.path + ".hugepageLimits")
        out = []
        for i, (size, limit) in enumerate(res.hugepage_limits):
            q = f"{res.path}.hugepageLimits[{i}]"
            hugepage_file_size(size, f"{q}.pageSize")
            out.append(Write(d, f"hugetlb.{size}.max", str(limit), f"{q}.limit"))
            if exists(join(d, f"hugetlb.{size}.rsvd.max")):
                out.append(Write(d, f"hugetlb.{size}.rsvd.max", str(limit), f"{q}.limit"))
        return out

    def _net_cls(self, res: Resources, update: bool) -> list[Write]:
        if res.net_class_id is not None:
            self.warn(f"{res.path}.network.classID: cgroup v2 has no net_cls controller; "
                      "ignored")
        return []

    def _net_prio(self, res: Resources, update: bool) -> list[Write]:
        if res.net_priorities:
            self.warn(f"{res.path}.network.priorities: cgroup v2 has no net_prio controller; "
                      "ignored")
        return []

    def _rdma(self, res: Resources, update: bool) -> list[Write]:
        from yacr.cgroups.v1 import rdma_writes

        return rdma_writes(res, lambda field: self.need("rdma", field))

    def _unified(self, res: Resources, update: bool) -> list[Write]:
        out = []
        for key, value in res.unified.items():
            field = f"{res.path}.unified.{key}"
            ctrl = key.split(".", 1)[0]
            if ctrl != "cgroup":
                self.need(ctrl, field)
            if not exists(join(self.dir, key)):
                raise YacrError(f"{field}: there is no cgroup file {key!r}")
            # Multi-line values (io.max for several devices) are one write per line.
            for line in value.splitlines() or [""]:
                out.append(Write(self.dir, key, line, field, shown=repr(line),
                                 key=line.split(" ", 1)[0] if key in _KEYED else None))
        return out


_KEYED = frozenset({"io.max", "io.weight", "io.bfq.weight", "rdma.max"})
