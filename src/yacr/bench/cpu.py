"""CPU: user and system CPU time a runtime spends per container start.

Read from wait4's rusage of each invocation: the runtime process and every
child it reaped. For `run`, that includes the container's own `true` (the
same few hundred microseconds for every runtime); for the create, start and
delete of the containerd sequence it is the runtime alone, because the
container's process is not the runtime's child by then.
"""

from __future__ import annotations

from yacr.bench import registry
from yacr.bench.lifecycle import HELLO, WRAPPER, runs_of_true, sequence
from yacr.bench.registry import Result

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from yacr.bench.registry import Context


def plot(data: dict[str, Any], out: str) -> list[str]:
    from yacr.bench import plots

    return plots.cpu(data, out)


@registry.scenario("cpu", "CPU: user+sys time per container start", order=20, plot=plot)
def run(ctx: Context) -> Result:
    res = Result()
    pairs = ctx.with_bundles("true", res)

    # the interleaved `run` of `true` of the lifecycle scenario: the same invocations
    got = {n: f for n, f in runs_of_true(ctx, pairs).items()
           if not n.endswith((HELLO, WRAPPER))}
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
                     "does not. Same invocations as the lifecycle scenario's `run of true`.")
    return res
