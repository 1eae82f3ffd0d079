"""The `yacr` command line: runc's flags mapped onto library calls, and nothing else.

argparse is not used on purpose: it imports `re` (~14 ms), which every
container start would pay. The parser below follows Go's flag package as runc
(urfave/cli) does: `--flag v`, `--flag=v`, `-flag`, short aliases, booleans
as `--flag` or `--flag=true`, and flags end at the first positional argument.
Every error becomes one line on stderr (and in --log), with exit status 1.
"""

from __future__ import annotations

import posix
import sys

from yacr import __version__, fs
from yacr.errors import UsageError, YacrError
from yacr.log import Log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from yacr.container import Context

DEFAULT_ROOT = "/run/yacr"


class Flag:
    __slots__ = ("name", "aliases", "kind", "default", "help", "multi")

    def __init__(self, name: str, kind: str = "bool", default: Any = None, help: str = "",
                 aliases: tuple[str, ...] = (), multi: bool = False) -> None:
        self.name = name
        self.aliases = aliases
        self.kind = kind  # bool | str | int
        self.default = (False if kind == "bool" else None) if default is None else default
        self.help = help
        self.multi = multi


GLOBAL_FLAGS = [
    Flag("root", "str", DEFAULT_ROOT, "directory for container state"),
    Flag("log", "str", "", "log file (warnings and errors)"),
    Flag("log-format", "str", "text", "log format: text or json"),
    Flag("debug", "bool", help="log debug messages"),
    Flag("systemd-cgroup", "bool", help="use systemd to manage cgroups"),
    Flag("criu", "str", "", "path to criu (checkpoint/restore is not supported)"),
    Flag("rootless", "str", "auto", "ignore cgroup permission errors (true, false, auto)"),
    Flag("version", "bool", aliases=("v",), help="print the version"),
    Flag("help", "bool", aliases=("h",), help="show help"),
]

CREATE_FLAGS = [
    Flag("bundle", "str", ".", "path to the bundle directory", aliases=("b",)),
    Flag("console-socket", "str", "", "unix socket that receives the pty master"),
    Flag("pid-file", "str", "", "file to write the init pid to"),
    Flag("no-pivot", "bool", help="use MS_MOVE and chroot instead of pivot_root"),
    Flag("no-new-keyring", "bool", help="do not create a new session keyring"),
    Flag("preserve-fds", "int", 0, "pass N extra file descriptors (3..3+N-1)"),
]

EXEC_FLAGS = [
    Flag("process", "str", "", "path to a process.json", aliases=("p",)),
    Flag("tty", "bool", help="allocate a pseudo-TTY", aliases=("t",)),
    Flag("console-socket", "str", "", "unix socket that receives the pty master"),
    Flag("detach", "bool", help="detach from the process", aliases=("d",)),
    Flag("pid-file", "str", "", "file to write the process pid to"),
    Flag("env", "str", help="set an environment variable K=V", aliases=("e",), multi=True),
    Flag("cwd", "str", "", "working directory in the container"),
    Flag("user", "str", "", "UID[:GID]", aliases=("u",)),
    Flag("additional-gids", "str", help="additional gid", aliases=("g",), multi=True),
    Flag("cap", "str", help="add a capability", aliases=("c",), multi=True),
    Flag("no-new-privs", "bool", help="set no_new_privs"),
    Flag("apparmor", "str", "", "AppArmor profile"),
    Flag("process-label", "str", "", "SELinux label"),
    Flag("preserve-fds", "int", 0, "pass N extra file descriptors"),
    Flag("cgroup", "str", help="sub-cgroup to join", multi=True),
    Flag("ignore-paused", "bool", help="allow exec in a paused container"),
]


class Command:
    __slots__ = ("name", "summary", "usage", "flags", "run", "min_args", "max_args")

    def __init__(self, name: str, summary: str, usage: str, flags: list[Flag],
                 run: Callable[[Context, dict[str, Any], list[str]], int], min_args: int = 1,
                 max_args: int | None = 1) -> None:
        self.name = name
        self.summary = summary
        self.usage = usage
        self.flags = flags
        self.run = run
        self.min_args = min_args
        self.max_args = max_args


def parse_flags(argv: list[str], flags: list[Flag], where: str,
                stop_at_positional: bool = True) -> tuple[dict[str, Any], list[str]]:
    table: dict[str, Flag] = {}
    for f in flags:
        table[f.name] = f
        for a in f.aliases:
            table[a] = f
    values: dict[str, Any] = {f.name: ([] if f.multi else f.default) for f in flags}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a == "--":
            rest.extend(argv[i:])
            break
        if len(a) < 2 or not a.startswith("-"):
            rest.append(a)
            if stop_at_positional:
                rest.extend(argv[i:])
                break
            continue
        body = a.lstrip("-")
        name, eq, val = body.partition("=")
        f = table.get(name)
        if f is None:
            raise UsageError(f"{where}: flag provided but not defined: {a.split('=')[0]}")
        if f.kind == "bool":
            if eq:
                if val.lower() in ("true", "1", "t"):
                    values[f.name] = True
                elif val.lower() in ("false", "0", "f"):
                    values[f.name] = False
                else:
                    raise UsageError(f"{where}: invalid boolean value {val!r} for --{f.name}")
            else:
                values[f.name] = True
            continue
        if not eq:
            if i >= len(argv):
                raise UsageError(f"{where}: flag needs an argument: --{f.name}")
            val = argv[i]
            i += 1
        if f.kind == "int":
            try:
                v: Any = int(val)
            except ValueError:
                raise UsageError(f"{where}: invalid value {val!r} for --{f.name}: "
                                 "expected an integer") from None
        else:
            v = val
        if f.multi:
            values[f.name].append(v)
        else:
            values[f.name] = v
    return values, rest


# --- commands ----------------------------------------------------------------------------

def _create_options(o: dict[str, Any]) -> Any:
    from yacr.container import CreateOptions

    return CreateOptions(console_socket=o["console-socket"] or None,
                         pid_file=o["pid-file"] or None, no_pivot=o["no-pivot"],
                         no_new_keyring=o["no-new-keyring"], preserve_fds=o["preserve-fds"])


def _create(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    from yacr import container

    container.create(ctx, args[0], o["bundle"], _create_options(o))
    return 0


def _run(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    from yacr import container

    return container.run(ctx, args[0], o["bundle"], _create_options(o), detach=o["detach"],
                         keep=o["keep"])


def _start(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    from yacr import container

    container.start(ctx, args[0])
    return 0


def _state(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    from yacr import container, jsonio

    sys.stdout.write(jsonio.dumps(container.state_of(ctx, args[0]), indent=2) + "\n")
    return 0


def _kill(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    from yacr import container

    sig = container.parse_signal(args[1] if len(args) > 1 else "SIGTERM")
    container.kill(ctx, args[0], sig, o["all"])
    return 0


def _delete(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    from yacr import container

    container.delete(ctx, args[0], o["force"])
    return 0


def _list(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    from yacr import container, jsonio

    states = container.list_states(ctx)
    if o["quiet"]:
        for s in states:
            sys.stdout.write(s["id"] + "\n")
        return 0
    fmt = o["format"]
    if fmt == "json":
        sys.stdout.write(jsonio.dumps(states) + "\n")
        return 0
    if fmt != "table":
        raise UsageError(f"list: invalid --format {fmt!r} (table or json)")
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    for s in states:
        rows.append((s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"],
                     s["owner"] or "root"))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for r in rows:
        sys.stdout.write("   ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() + "\n")
    return 0


def _spec(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    from yacr import specgen

    specgen.write_spec(o["bundle"], rootless=o["rootless"], seccomp=o["seccomp"])
    return 0


def _features(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    from yacr import features, jsonio

    sys.stdout.write(jsonio.dumps(features.features(), indent=2) + "\n")
    return 0


def _exec(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    from yacr import execproc

    return execproc.exec_cli(ctx, o, args)


def _ps(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    from yacr import container, jsonio

    st = ctx.store.load(args[0], lock=False)
    from yacr import cgroups

    pids = cgroups.pids(st.cgroups) if st.cgroups else ([st.pid] if st.init_alive() else [])
    if o["format"] == "json":
        sys.stdout.write(jsonio.dumps(pids or None) + "\n")
        return 0
    if o["format"] != "table":
        raise UsageError(f"ps: invalid --format {o['format']!r} (table or json)")
    container.ps_table(pids, args[1:])
    return 0


def _pause(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    from yacr import container

    container.pause(ctx, args[0], True)
    return 0


def _resume(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    from yacr import container

    container.pause(ctx, args[0], False)
    return 0


def _update(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    from yacr.cgroups import commands

    commands.update(ctx, args[0], o)
    return 0


def _events(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    from yacr.cgroups import commands

    commands.events(ctx, args[0], o["stats"], commands.parse_duration(o["interval"]))
    return 0


UPDATE_FLAGS = [
    Flag("resources", "str", "", "linux.resources JSON from FILE, or - for stdin",
         aliases=("r",)),
    Flag("memory", "str", "", "memory limit (bytes, or 64m, 1g; -1 for none)"),
    Flag("memory-swap", "str", "", "memory+swap limit (-1 for unlimited swap)"),
    Flag("memory-reservation", "str", "", "memory soft limit"),
    Flag("kernel-memory", "str", "", "(obsolete) kernel memory limit"),
    Flag("kernel-memory-tcp", "str", "", "(obsolete) kernel TCP buffer limit"),
    Flag("cpu-shares", "str", "", "CPU shares (relative weight)", aliases=("cpu-share",)),
    Flag("cpu-quota", "str", "", "CFS quota in microseconds per period (-1: none)"),
    Flag("cpu-period", "str", "", "CFS period in microseconds"),
    Flag("cpu-burst", "str", "", "CFS burst in microseconds"),
    Flag("cpu-rt-period", "str", "", "real-time period in microseconds"),
    Flag("cpu-rt-runtime", "str", "", "real-time runtime in microseconds"),
    Flag("cpu-idle", "str", "", "1: SCHED_IDLE for the cgroup"),
    Flag("cpuset-cpus", "str", "", "CPUs to use (0-3,5)"),
    Flag("cpuset-mems", "str", "", "memory nodes to use"),
    Flag("pids-limit", "int", None, "maximum number of tasks (-1: none)"),
    Flag("blkio-weight", "int", 0, "block I/O weight (10-1000)"),
    Flag("l3-cache-schema", "str", "", "Intel RDT L3 schema (not supported)"),
    Flag("mem-bw-schema", "str", "", "Intel RDT memory bandwidth schema (not supported)"),
]


def _bench(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    from yacr.bench import main as bench_main

    return bench_main(args)


def _wasm(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    from yacr.wasm.cli import main as wasm_main

    return wasm_main(args, ctx.log)


def _seccomp(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    from yacr.seccomp_cli import seccomp_main

    return seccomp_main(ctx, args)


def _profile(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    from yacr.seccomp_cli import profile_main

    return profile_main(ctx, args)


def _unsupported(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    raise YacrError("checkpoint/restore is not supported by yacr (CRIU does not work here)")


COMMANDS: dict[str, Command] = {c.name: c for c in [
    Command("create", "create a container", "create [flags] ID", CREATE_FLAGS, _create),
    Command("start", "start a created container", "start ID", [], _start),
    Command("run", "create and start a container", "run [flags] ID",
            CREATE_FLAGS + [Flag("detach", "bool", help="detach from the container",
                                 aliases=("d",)),
                            Flag("keep", "bool", help="do not delete the container after exit")],
            _run),
    Command("state", "print the state of a container", "state ID", [], _state),
    Command("kill", "send a signal to a container", "kill [--all] ID [SIGNAL]",
            [Flag("all", "bool", help="signal every process of the container",
                  aliases=("a",))], _kill, 1, 2),
    Command("delete", "delete a container", "delete [--force] ID",
            [Flag("force", "bool", help="kill and delete a running container",
                  aliases=("f",))], _delete),
    Command("list", "list containers", "list [-q] [--format table|json]",
            [Flag("format", "str", "table", "table or json", aliases=("f",)),
             Flag("quiet", "bool", help="only print ids", aliases=("q",))], _list, 0, 0),
    Command("spec", "write a default config.json (runc's)",
            "spec [--bundle DIR] [--rootless] [--seccomp]",
            [Flag("bundle", "str", ".", "where to write config.json", aliases=("b",)),
             Flag("rootless", "bool", help="a config for rootless containers"),
             Flag("seccomp", "bool", help="add yacr's default seccomp profile")], _spec, 0, 0),
    Command("features", "print the runtime's features (JSON)", "features", [], _features, 0, 0),
    Command("exec", "run a process in a running container", "exec [flags] ID [CMD...]",
            EXEC_FLAGS, _exec, 1, None),
    Command("ps", "list a container's processes", "ps [--format table|json] ID [ps args]",
            [Flag("format", "str", "table", "table or json", aliases=("f",))], _ps, 1, None),
    Command("pause", "freeze every process of a container", "pause ID", [], _pause),
    Command("resume", "thaw a paused container", "resume ID", [], _resume),
    Command("update", "change a running container's resource limits",
            "update [--resources FILE|-] [--memory N] [--cpu-quota N] ... ID", UPDATE_FLAGS,
            _update),
    Command("events", "print a container's stats and OOM events (JSON)",
            "events [--stats] [--interval 5s] ID",
            [Flag("stats", "bool", help="print the stats once and exit"),
             Flag("interval", "str", "5s", "time between stats events")], _events),
    Command("bench", "benchmark yacr against runc and crun (see yacr bench --help)",
            "bench [SCENARIO...] [--runtimes ...] [--runs N] [--quick] [--out DIR]", [],
            _bench, 0, None),
    Command("wasm", "wasm tools: compile modules into the AOT cache",
            "wasm compile [--rlimit-as] [--force] FILE...", [], _wasm, 0, None),
    Command("seccomp", "measure seccomp profiles: allowed syscalls, read back from a container",
            "seccomp surface [--profile [LABEL=]FILE] [--pid PID] [--json]", [], _seccomp, 0,
            None),
    Command("profile", "run a container once and write the minimal seccomp profile for it",
            "profile [--bundle DIR] [--output FILE] [--timeout SECONDS] ID", [], _profile, 0,
            None),
    Command("checkpoint", "not supported", "checkpoint ID",
            [Flag("image-path", "str", ""), Flag("work-path", "str", ""),
             Flag("leave-running", "bool")], _unsupported, 0, None),
    Command("restore", "not supported", "restore ID",
            [Flag("image-path", "str", ""), Flag("work-path", "str", ""),
             Flag("bundle", "str", "", aliases=("b",)), Flag("no-subreaper", "bool"),
             Flag("detach", "bool", aliases=("d",)), Flag("pid-file", "str", ""),
             Flag("console-socket", "str", "")], _unsupported, 0, None),
]}


def _help(cmd: Command | None = None) -> str:
    if cmd is None:
        lines = ["yacr - a runc-compatible OCI container runtime (Linux containers and Wasm)",
                 "", "usage: yacr [global flags] COMMAND [flags] [args]", "", "commands:"]
        for c in COMMANDS.values():
            lines.append(f"  {c.name:<11} {c.summary}")
        lines += ["", "global flags:"]
        lines += _flag_lines(GLOBAL_FLAGS)
        return "\n".join(lines) + "\n"
    lines = [f"usage: yacr {cmd.usage}", "", cmd.summary]
    if cmd.flags:
        lines += ["", "flags:"] + _flag_lines(cmd.flags)
    return "\n".join(lines) + "\n"


def _flag_lines(flags: list[Flag]) -> list[str]:
    out = []
    for f in flags:
        names = ", ".join([f"--{f.name}"] + [f"-{a}" for a in f.aliases])
        arg = "" if f.kind == "bool" else (" N" if f.kind == "int" else " VALUE")
        dflt = f" (default {f.default})" if f.kind != "bool" and f.default not in (None, "") \
            else ""
        out.append(f"  {names + arg:<28} {f.help}{dflt}")
    return out


def rootless_root() -> str:
    """State of an unprivileged user's containers: $XDG_RUNTIME_DIR/yacr, as runc does."""
    env = posix.environ
    xdg = env.get(b"XDG_RUNTIME_DIR", b"").decode(errors="surrogateescape")
    if not xdg:
        cand = f"/run/user/{posix.geteuid()}"
        xdg = cand if fs.isdir(cand) else f"/tmp/yacr-{posix.geteuid()}"
    return fs.join(xdg, "yacr")


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    log = Log()
    try:
        return _main(argv, log)
    except YacrError as e:
        log.error(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        log.error(f"{e.strerror or e}{where}")
        return 1
    except Exception as e:  # noqa: BLE001 - the user gets one line, --debug gets the trace
        if log.debug_enabled:
            import traceback

            traceback.print_exc()
        log.error(f"internal error: {type(e).__name__}: {e}")
        return 1


def _main(argv: list[str], log: Log) -> int:
    g, rest = parse_flags(argv, GLOBAL_FLAGS, "yacr")
    log.path = g["log"] or None
    if g["log-format"] not in ("text", "json"):
        raise UsageError(f"--log-format: invalid value {g['log-format']!r} (text or json)")
    log.json = g["log-format"] == "json"
    log.debug_enabled = g["debug"]
    if g["version"]:
        from yacr import OCI_VERSION

        sys.stdout.write(f"yacr version {__version__}\nspec: {OCI_VERSION}\n")
        return 0
    if not rest:
        # as runc: the help, and success (a failure would owe stderr its one-line reason)
        sys.stdout.write(_help())
        return 0
    name, args = rest[0], rest[1:]
    if name == "help":
        sys.stdout.write(_help(COMMANDS.get(args[0]) if args else None))
        return 0
    cmd = COMMANDS.get(name)
    if cmd is None:
        raise UsageError(f"unknown command {name!r}; see yacr --help")
    if name in ("bench", "wasm", "seccomp", "profile"):
        # these have their own argparse-based parsers (cold paths: argparse is fine)
        from yacr.container import Context

        return cmd.run(Context(fs.abspath(g["root"]), log), {}, args)
    flags = cmd.flags + [Flag("help", "bool", aliases=("h",))]
    o, pos = parse_flags(args, flags, name)
    if o["help"] or g["help"]:
        sys.stdout.write(_help(cmd))
        return 0
    if len(pos) < cmd.min_args:
        raise UsageError(f"{name}: missing container id; usage: yacr {cmd.usage}"
                         if cmd.min_args == 1 else f"{name}: usage: yacr {cmd.usage}")
    if cmd.max_args is not None and len(pos) > cmd.max_args:
        raise UsageError(f"{name}: unexpected argument {pos[cmd.max_args]!r}; usage: "
                         f"yacr {cmd.usage}")
    from yacr.container import Context

    root = g["root"]
    if root == DEFAULT_ROOT and posix.geteuid() != 0:
        root = rootless_root()
    if not root:
        raise UsageError("--root must not be empty")
    ctx = Context(fs.abspath(root), log, g["systemd-cgroup"])
    return cmd.run(ctx, o, pos)


def entrypoint() -> None:
    """The console script: exit with what main returns.

    posix._exit skips interpreter finalization (~2 ms of tearing down modules that are about
    to vanish anyway); only the standard streams need flushing first.
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    posix._exit(code)
