"""CPU: user and system CPU time a runtime spends per container start.

Read from wait4's rusage of each invocation: the runtime process and every
child it reaped. For `run`, that includes the container's own `true` (the
same few hundred microseconds for every runtime); for the create, start and
delete of the containerd sequence it is the runtime alone, because the
container's process is not the runtime's child by then.
"""

from __future__ import annotations

from yacr.bench import registry
from yacr.bench.lifecycle import (
    CONFIG_LABEL,
    HELLO,
    WRAPPER,
    config_note,
    pairs,
    runs_of_true,
    sequence,
    split,
)
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
    res = Result(param_label=CONFIG_LABEL)
    by = pairs(ctx, "true", res)

    # the interleaved `run` of `true` of the lifecycle scenario: the same invocations
    got = {k: f for k, f in runs_of_true(ctx, by).items()
           if not split(k)[0].endswith((HELLO, WRAPPER))}
    for field, label in (("cpu", "user+sys"), ("user", "user"), ("sys", "sys")):
        for k, f in got.items():
            name, config = split(k)
            res.add(f"run of true: {label}", name, "ms", f[field], config)
    seq, _ = sequence(ctx)
    for field in ("cpu", "user", "sys"):
        label = "user+sys" if field == "cpu" else field
        for k, f in seq.items():
            name, config = split(k)
            res.add(f"create+start+delete: {label}", name, "ms",
                    f[f"create+start+delete {field}"], config)
    res.notes.append(config_note())
    res.notes.append("rusage of each invocation (wait4): the runtime and the children it "
                     "reaped; `run` includes the container's `true`, the split sequence "
                     "does not. Same invocations as the lifecycle scenario's `run of true`.")
    if any(rt.name == "runsc" for ps in by.values() for rt, _ in ps):
        res.notes.append("runsc: in `run`, the sandbox and the gofer are children runsc "
                         "reaps, so their CPU counts; in the split sequence they outlive "
                         "`create` and run the container, so, like a container's own "
                         "process, their CPU is not in the figure.")
    return res
