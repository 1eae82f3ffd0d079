"""`exec --cgroup`: the sub-cgroups of the container that an exec'd process joins.

The flag takes runc's form, `[CONTROLLER[,CONTROLLER...]:]PATH`, and may be repeated.
PATH is relative to the container's own cgroup (a leading `/` names that cgroup too) and
must stay inside it; the sub-cgroup must exist already (the exec never creates one).

- Without a controller, PATH applies to every hierarchy the container is in, and then it
  must be the only --cgroup. That is the one form on a pure v2 host. On a hybrid host it
  covers the cgroup2 hierarchy too, as runc's does, so the sub-cgroup must exist there.
- With controllers, each names a v1 hierarchy of the container (`cpu`, `memory`,
  `name=systemd`...; co-mounted controllers such as cpu,cpuacct share one). Hierarchies
  that no --cgroup names, and the cgroup2 one of a hybrid host, stay at the container's
  cgroup. A pure v2 host has no controller hierarchies: a controller is unknown there.

Everything is checked here, before the runtime forks anything, and each error names the
--cgroup argument it comes from.
"""

from __future__ import annotations

from yacr import fs
from yacr.cgroups import V2_KEYS
from yacr.errors import UsageError, YacrError


def parse(args: list[str]) -> dict[str, tuple[str, str]]:
    """The --cgroup arguments as {controller: (path, argument)}; "" stands for every
    hierarchy (the controller-less form)."""
    out: dict[str, tuple[str, str]] = {}
    for arg in args:
        parts = arg.split(":")
        if len(parts) > 2:
            raise UsageError(f"invalid --cgroup argument: {arg} (the form is "
                             "[CONTROLLER[,CONTROLLER...]:]PATH)")
        if len(parts) == 1:
            if len(args) != 1:
                raise UsageError(f"invalid --cgroup argument: {arg} (missing <controller>: "
                                 "prefix; a path without one must be the only --cgroup)")
            out[""] = (arg, arg)
            continue
        for ctrl in parts[0].split(","):
            if not ctrl:
                raise UsageError(f"invalid --cgroup argument: {arg} (empty controller name)")
            if ctrl in out:
                raise UsageError(f"invalid --cgroup argument: {arg} (controller {ctrl} is "
                                 "given more than once)")
            out[ctrl] = (parts[1], arg)
    return out


def _below(base: str, sub: str, arg: str) -> str:
    path = fs.normpath(base + "/" + sub)
    if path != base and not path.startswith(base.rstrip("/") + "/"):
        raise YacrError(f"--cgroup {arg}: {sub} is not a sub cgroup path (it leads out of "
                        "the container's cgroup)")
    return path


def resolve(paths: dict[str, str], args: list[str]) -> tuple[dict[str, str], bool]:
    """The container's cgroup paths (as in its state) with the --cgroup sub-cgroups in
    place of the hierarchies they name, and whether one path was given for all of them
    (then the process must go there and nowhere else: see cgroups.join_exec)."""
    subs = parse(args)
    every = "" in subs
    if not paths:
        raise YacrError(f"--cgroup {args[0]}: the container has no cgroup (it runs without "
                        "them)")
    out = dict(paths)
    chosen: dict[str, str] = {}  # hierarchy key -> the --cgroup argument that moved it
    if "" in subs:
        sub, arg = subs.pop("")
        for key, base in paths.items():
            out[key] = _below(base, sub, arg)
            chosen[key] = arg
    for ctrl, (sub, arg) in subs.items():
        key = next((k for k in paths if k not in V2_KEYS and ctrl in k.split(",")), None)
        if key is None:
            known = sorted({c for k in paths if k not in V2_KEYS for c in k.split(",")})
            where = (f"the container's v1 controllers are {', '.join(known)}" if known else
                     "this host's cgroup v2 has no per-controller hierarchy: give the path "
                     "without a controller")
            raise YacrError(f"--cgroup {arg}: unknown controller {ctrl} ({where})")
        path = _below(paths[key], sub, arg)
        if key in chosen and out[key] != path:
            raise YacrError(f"--cgroup {arg}: controller {ctrl} shares its hierarchy ({key}) "
                            f"with --cgroup {chosen[key]}, which names another path")
        out[key] = path
        chosen[key] = arg
    for key, arg in chosen.items():
        path = out[key]
        if not fs.isdir(path):
            why = "not a directory" if fs.exists(path) else "no such file or directory"
            raise YacrError(f"--cgroup {arg}: {path} is not a cgroup of the container: "
                            f"error adding pid to {path}/cgroup.procs: {why}")
    return out, every
