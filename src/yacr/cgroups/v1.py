"""The cgroup v1 manager: one directory per controller hierarchy, runc's file names.

Values go where runc writes them, so tools that read v1 files (runtime-tools,
cAdvisor, podman) see what they expect. Knobs the kernel has dropped are warned
about and skipped rather than failing the container, because configs written for
older kernels still carry them: kernel memory limits (memory.kmem.limit_in_bytes
is accepted but ignored since Linux 6.x, which is checked by reading it back),
non-hierarchical memory accounting, and CFQ's leaf weights.
"""

from __future__ import annotations

from yacr.cgroups.manager import Manager, Write, exists, hugepage_file_size, join, read
from yacr.errors import YacrError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from yacr.cgroups.devices import Rules
    from yacr.cgroups.resources import Resources
    from yacr.log import Log


class V1Manager(Manager):
    name = "v1"

    def __init__(self, dirs: dict[str, str], log: Log | None) -> None:
        super().__init__(log)
        self.dirs = dirs
        # A hierarchy may carry several controllers ("cpu,cpuacct", "net_cls,net_prio").
        self.by_ctrl = {c: p for key, p in dirs.items() for c in key.split(",")}

    def has(self, controller: str) -> bool:
        return controller in self.by_ctrl

    def controller_dir(self, controller: str, field: str) -> str:
        return self.dir(controller, field)

    def dir(self, controller: str, field: str) -> str:
        d = self.by_ctrl.get(controller)
        if d is None:
            raise YacrError(f"{field}: this host has no {controller} cgroup controller "
                            "mounted, so the limit cannot be enforced")
        return d

    def plan_group(self, group: str, res: Resources, update: bool) -> list[Write]:
        return getattr(self, "_" + group)(res, update)

    def apply_devices(self, rules: Rules) -> None:
        from yacr.cgroups import devices

        devices.apply_v1(rules, self.dir("devices", "linux.resources.devices"))

    def stats(self) -> dict[str, object]:
        from yacr.cgroups.stats import v1_stats

        return v1_stats(self.by_ctrl)

    # --- groups -------------------------------------------------------------------------
    def _memory(self, res: Resources, update: bool) -> list[Write]:
        m = res.memory
        if m is None:
            return []
        p = res.path + ".memory"
        if all(v is None for v in (m.limit, m.reservation, m.swap, m.kernel, m.kernel_tcp,
                                   m.swappiness, m.disable_oom_killer, m.use_hierarchy)):
            return []
        d = self.dir("memory", p)
        has = lambda f: exists(join(d, f))  # noqa: E731
        out: list[Write] = []
        limit, swap = m.limit, m.swap
        if limit == -1 and swap is None and has("memory.memsw.limit_in_bytes"):
            swap = -1  # runc: an unlimited memory limit lifts the memory+swap limit too
        if update and m.check_before_update and limit is not None and limit > 0:
            usage = int(read(join(d, "memory.usage_in_bytes")))
            if limit < usage:
                raise YacrError(f"{p}.limit: {limit} is below the container's current memory "
                                f"usage ({usage}), and checkBeforeUpdate is set")
        if limit is not None:
            out.append(Write(d, "memory.limit_in_bytes", str(limit), f"{p}.limit", defer=True))
        if swap is not None:
            if has("memory.memsw.limit_in_bytes"):
                out.append(Write(d, "memory.memsw.limit_in_bytes", str(swap), f"{p}.swap",
                                 defer=True))
            else:
                self.warn(f"{p}.swap: swap accounting is off in this kernel "
                          "(no memory.memsw.limit_in_bytes); ignored")
        if m.reservation is not None:
            out.append(Write(d, "memory.soft_limit_in_bytes", str(m.reservation),
                             f"{p}.reservation"))
        for val, f, field in ((m.kernel, "memory.kmem.limit_in_bytes", "kernel"),
                              (m.kernel_tcp, "memory.kmem.tcp.limit_in_bytes", "kernelTCP")):
            if val is None:
                continue
            if has(f):
                out.append(Write(d, f, str(val), f"{p}.{field}", verify=True))
            else:
                self.warn(f"{p}.{field}: this kernel has no {f} (removed); ignored")
        if m.swappiness is not None:
            out.append(Write(d, "memory.swappiness", str(m.swappiness), f"{p}.swappiness"))
        if m.disable_oom_killer is not None:
            out.append(Write(d, "memory.oom_control", "1" if m.disable_oom_killer else "0",
                             f"{p}.disableOOMKiller", shown=m.disable_oom_killer))
        if m.use_hierarchy is True:
            out.append(Write(d, "memory.use_hierarchy", "1", f"{p}.useHierarchy", shown=True))
        elif m.use_hierarchy is False:
            self.warn(f"{p}.useHierarchy: false is not supported: the kernel removed "
                      "non-hierarchical memory accounting; ignored")
        return out

    def _cpu(self, res: Resources, update: bool) -> list[Write]:
        c = res.cpu
        if c is None:
            return []
        p = res.path + ".cpu"
        items = ((c.shares, "cpu.shares", "shares", False),
                 (c.period, "cpu.cfs_period_us", "period", True),
                 (None if c.quota is None else max(c.quota, -1), "cpu.cfs_quota_us", "quota",
                  True),
                 (c.burst, "cpu.cfs_burst_us", "burst", False),
                 (c.realtime_period, "cpu.rt_period_us", "realtimePeriod", True),
                 (c.realtime_runtime, "cpu.rt_runtime_us", "realtimeRuntime", True),
                 (c.idle, "cpu.idle", "idle", False))
        if all(v is None for v, *_ in items):
            return []
        d = self.dir("cpu", p)
        return [Write(d, f, str(v), f"{p}.{field}", defer=defer)
                for v, f, field, defer in items if v is not None]

    def _io(self, res: Resources, update: bool) -> list[Write]:
        b = res.block_io
        if b is None:
            return []
        from yacr.cgroups.resources import THROTTLES

        p = res.path + ".blockIO"
        if (b.weight is None and b.leaf_weight is None and not b.weight_device
                and not any(b.throttles.values())):
            return []
        d = self.dir("blkio", p)
        has = lambda f: exists(join(d, f))  # noqa: E731
        weight_file = next((f for f in ("blkio.weight", "blkio.bfq.weight") if has(f)), None)
        out: list[Write] = []
        if b.weight is not None or any(w.weight is not None for w in b.weight_device):
            if weight_file is None:
                field = f"{p}.weight" if b.weight is not None else f"{p}.weightDevice"
                raise YacrError(f"{field}: this kernel has no proportional block I/O weight "
                                "(neither blkio.weight nor blkio.bfq.weight: the BFQ I/O "
                                "scheduler is not in use)")
        if b.weight is not None:
            out.append(Write(d, str(weight_file), str(b.weight), f"{p}.weight"))
        if b.leaf_weight is not None:
            if has("blkio.leaf_weight"):
                out.append(Write(d, "blkio.leaf_weight", str(b.leaf_weight),
                                 f"{p}.leafWeight"))
            else:
                self.warn(f"{p}.leafWeight: this kernel has no blkio.leaf_weight (removed "
                          "with the CFQ scheduler); ignored")
        for i, w in enumerate(b.weight_device):
            q = f"{p}.weightDevice[{i}]"
            if w.weight is not None:
                out.append(Write(d, f"{weight_file}_device", f"{w.dev} {w.weight}",
                                 f"{q}.weight", shown=w.weight, key=w.dev))
            if w.leaf_weight is not None:
                if has("blkio.leaf_weight_device"):
                    out.append(Write(d, "blkio.leaf_weight_device", f"{w.dev} {w.leaf_weight}",
                                     f"{q}.leafWeight", shown=w.leaf_weight, key=w.dev))
                else:
                    self.warn(f"{q}.leafWeight: this kernel has no blkio.leaf_weight_device "
                              "(removed with the CFQ scheduler); ignored")
        for key, v1name, _v2 in THROTTLES:
            for i, t in enumerate(b.throttles[key]):
                out.append(Write(d, "blkio.throttle." + v1name, f"{t.dev} {t.rate}",
                                 f"{p}.{key}[{i}]", shown=f"{t.dev} {t.rate}", key=t.dev,
                                 reset=f"{t.dev} 0"))
        return out

    def _hugetlb(self, res: Resources, update: bool) -> list[Write]:
        if not res.hugepage_limits:
            return []
        d = self.dir("hugetlb", res.path + ".hugepageLimits")
        out = []
        for i, (size, limit) in enumerate(res.hugepage_limits):
            q = f"{res.path}.hugepageLimits[{i}]"
            hugepage_file_size(size, f"{q}.pageSize")
            out.append(Write(d, f"hugetlb.{size}.limit_in_bytes", str(limit), f"{q}.limit"))
            if exists(join(d, f"hugetlb.{size}.rsvd.limit_in_bytes")):
                out.append(Write(d, f"hugetlb.{size}.rsvd.limit_in_bytes", str(limit),
                                 f"{q}.limit"))
        return out

    def _net_cls(self, res: Resources, update: bool) -> list[Write]:
        if res.net_class_id is None:
            return []
        p = res.path + ".network.classID"
        return [Write(self.dir("net_cls", p), "net_cls.classid", str(res.net_class_id), p)]

    def _net_prio(self, res: Resources, update: bool) -> list[Write]:
        out = []
        for i, (name, prio) in enumerate(res.net_priorities):
            p = f"{res.path}.network.priorities[{i}]"
            out.append(Write(self.dir("net_prio", p), "net_prio.ifpriomap", f"{name} {prio}",
                             p, key=name))
        return out

    def _rdma(self, res: Resources, update: bool) -> list[Write]:
        return rdma_writes(res, lambda field: self.dir("rdma", field))

    def _unified(self, res: Resources, update: bool) -> list[Write]:
        if res.unified:
            raise YacrError(f"{res.path}.unified: cgroup v2 settings cannot be applied: this "
                            "host has only cgroup v1")
        return []


def rdma_writes(res: Resources, where: Callable[[str], str]) -> list[Write]:
    """rdma.max lines, the same on v1 and v2: `DEVICE hca_handle=N hca_object=M`."""
    out = []
    for dev, (handles, objects) in res.rdma.items():
        field = f"{res.path}.rdma.{dev}"
        line = (f"{dev} hca_handle={'max' if handles is None else handles} "
                f"hca_object={'max' if objects is None else objects}")
        out.append(Write(where(field), "rdma.max", line, field, key=dev))
    return out
