"""CPU: user and system CPU time a runtime spends per container start.

Read from wait4's rusage of each invocation: the runtime process and every
child it reaped. For `run`, that includes the container's own `true` (the
same few hundred microseconds for every runtime); for the create, start and
delete of the containerd sequence it is the runtime alone, because the
container's process is not the runtime's child by then.
"""

from __future__ import annotations

from yacr.bench import measure, registry
from yacr.bench.lifecycle import sequence
from yacr.bench.registry import Result, Skip

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from yacr.bench.registry import Context
    from yacr.bench.runtimes import Runtime


def plot(data: dict[str, Any], out: str) -> list[str]:
    from yacr.bench import plots

    return plots.cpu(data, out)


@registry.scenario("cpu", "CPU: user+sys time per container start", order=20, plot=plot)
def run(ctx: Context) -> Result:
    res = Result()
    pairs = ctx.with_bundles("true", res)
    if not pairs:
        raise Skip("no runtime can run the `true` workload")

    def job(rt: Runtime, bundle: str) -> dict[str, float]:
        r = measure.spawn(ctx.env, rt.cmd("run", "--bundle", bundle, ctx.cid(rt, "cpu")))
        return {"user": r.user_ms, "sys": r.sys_ms, "cpu": r.cpu_ms}

    jobs = {rt.name: (lambda rt=rt, b=b: job(rt, b)) for rt, b in pairs}
    got = measure.interleave(ctx, jobs, ctx.runs, ctx.warmup, "cpu: run of true")
    for name, f in got.items():
        res.add("run of true: user+sys", name, "ms", f["cpu"])
    for name, f in got.items():
        res.add("run of true: user", name, "ms", f["user"])
    for name, f in got.items():
        res.add("run of true: sys", name, "ms", f["sys"])
    seq, _ = sequence(ctx)
    for field in ("cpu", "user", "sys"):
        for name, f in seq.items():
            label = "user+sys" if field == "cpu" else field
            res.add(f"create+start+delete: {label}", name, "ms",
                    f[f"create+start+delete {field}"])
    res.notes.append("rusage of each invocation (wait4): the runtime and the children it "
                     "reaped; `run` includes the container's `true`, the split sequence "
                     "does not.")
    return res
