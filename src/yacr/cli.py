"""The `yacr` command line: runc's flags mapped onto library calls, and nothing else.

argparse is not used on purpose: it imports `re` (~14 ms), which every
container start would pay. The parser below behaves as runc's does (urfave/cli
v1.22 over Go's flag package, as Debian's runc 1.1.5 is built):

- global flags come before the command and stop at its name;
- a command's flags may come before or after its positional arguments: they are
  first moved to the front (`delete ID --force`, `kill ID KILL --all`,
  `update ID --cpuset-cpus 0`), each with the argument that follows it unless that
  argument is another of the command's flags. As in runc, this applies to boolean
  flags too, so `kill ID --all KILL` reads as `kill --all KILL ID`. An argument
  that starts with `-` but names no flag of the command stays where it is, as a
  positional argument;
- `exec` and `ps` are not reordered (their arguments after the id are the
  command to run, or ps(1)'s options): their flags stop at the first positional;
- `--` ends the flags, and what follows it is positional;
- `--flag v`, `--flag=v`, `-flag`, short aliases, booleans as `--flag` or
  `--flag=true`.

Every error becomes one line on stderr (and in --log), with a non-zero exit status.
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


HELP_FLAG = Flag("help", "bool", help="show help", aliases=("h",))

GLOBAL_FLAGS = [
    Flag("debug", "bool", help="write debug lines (to --log, else to stderr)"),
    Flag("log", "str", "", "file for warnings, errors and debug lines, created at once "
         "(default: stderr)"),
    Flag("log-format", "str", "text", "format of --log: 'text' or 'json'"),
    Flag("root", "str", DEFAULT_ROOT, "directory for container state (best on a tmpfs; for "
         "a non-root user, $XDG_RUNTIME_DIR/yacr)"),
    Flag("criu", "str", "", "path to criu (ignored: checkpoint/restore is not supported)"),
    Flag("systemd-cgroup", "bool", help="the container's cgroup is a systemd scope "
         "(cgroupsPath slice:prefix:name; pure cgroup v2 hosts)"),
    Flag("rootless", "str", "auto", "ignore cgroup permission errors ('true', 'false' or "
         "'auto')"),
    HELP_FLAG,
    Flag("version", "bool", aliases=("v",), help="print the version"),
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
    __slots__ = ("name", "summary", "args", "flags", "run", "min_args", "max_args",
                 "description", "reorder")

    def __init__(self, name: str, summary: str, args: str, flags: list[Flag],
                 run: Callable[[Context, dict[str, Any], list[str]], int], min_args: int = 1,
                 max_args: int | None = 1, description: str = "",
                 reorder: bool = True) -> None:
        self.name = name
        self.summary = summary
        self.args = args  # the positional part of the usage line
        self.flags = flags
        self.run = run
        self.min_args = min_args
        self.max_args = max_args
        self.description = description
        self.reorder = reorder

    @property
    def usage(self) -> str:
        opts = " [command options]" if self.flags else ""
        return f"yacr {self.name}{opts}{' ' + self.args if self.args else ''}"


def _flag_table(flags: list[Flag]) -> dict[str, Flag]:
    table: dict[str, Flag] = {}
    for f in flags:
        table[f.name] = f
        for a in f.aliases:
            table[a] = f
    return table


def _names_flag(arg: str, table: dict[str, Flag]) -> bool:
    """Whether arg is one of the command's flags (`-x`, `--xx`, `--xx=v`)."""
    if arg in ("-", "--") or not arg.startswith("-"):
        return False
    name = arg[2:] if arg.startswith("--") else arg[1:]
    return name.partition("=")[0] in table


def reorder_args(argv: list[str], table: dict[str, Flag]) -> list[str]:
    """The command's flags (each with the argument after it, unless that is a flag
    too) moved before the positional arguments, in their order; `--` and everything
    after it stay last, with `--` in front of every positional argument."""
    moved: list[str] = []
    rest: list[str] = []
    value_next = False
    for i, a in enumerate(argv):
        is_flag = _names_flag(a, table)
        if value_next and not is_flag:
            value_next = False
            moved.append(a)
        elif a == "--":
            return moved + ["--"] + rest + argv[i + 1:]
        elif is_flag:
            moved.append(a)
            value_next = "=" not in a
        else:
            rest.append(a)
    return moved + rest


def parse_flags(argv: list[str], flags: list[Flag], where: str,
                reorder: bool = False) -> tuple[dict[str, Any], list[str]]:
    """Go's flag parsing: flags until the first positional argument or `--`; with reorder,
    the command's flags are first moved in front of the positional ones (reorder_args)."""
    table = _flag_table(flags)
    if reorder:
        argv = reorder_args(argv, table)
    values: dict[str, Any] = {f.name: ([] if f.multi else f.default) for f in flags}
    i = 0
    n = len(argv)
    while i < n:
        a = argv[i]
        if len(a) < 2 or a[0] != "-":
            break
        i += 1
        if a == "--":
            break
        body = a[2:] if a[1] == "-" else a[1:]
        if not body or body[0] in "-=":
            raise UsageError(f"{where}: bad flag syntax: {a}")
        name, eq, val = body.partition("=")
        f = table.get(name)
        if f is None:
            raise UsageError(f"{where}: flag provided but not defined: -{name}")
        if f.kind == "bool":
            if eq:
                if val in ("true", "1", "t", "T", "TRUE", "True"):
                    values[f.name] = True
                elif val in ("false", "0", "f", "F", "FALSE", "False"):
                    values[f.name] = False
                else:
                    raise UsageError(f"{where}: invalid boolean value {val!r} for --{f.name}")
            else:
                values[f.name] = True
            continue
        if not eq:
            if i >= n:
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
    return values, argv[i:]


# --- commands ----------------------------------------------------------------------------

def _create_options(o: dict[str, Any]) -> Any:
    from yacr.container import CreateOptions

    return CreateOptions(console_socket=o["console-socket"] or None,
                         pid_file=o["pid-file"] or None, no_pivot=o["no-pivot"],
                         no_new_keyring=o["no-new-keyring"], preserve_fds=o["preserve-fds"])


def _create(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    from yacr.create import create

    create(ctx, args[0], o["bundle"], _create_options(o))
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

    container.kill(ctx, args[0], args[1] if len(args) > 1 else "SIGTERM", o["all"])
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

    argv = _split_args(o["args"]) if o["args"] else None
    specgen.write_spec(o["bundle"], rootless=o["rootless"], seccomp=o["seccomp"])
    if argv or o["no-terminal"]:
        _edit_spec_process(o["bundle"], argv, o["no-terminal"])
    return 0


def _split_args(text: str) -> list[str]:
    """`spec --args 'CMD ARG...'` split as a shell would (quotes and backslashes)."""
    import shlex

    try:
        argv = shlex.split(text)
    except ValueError as e:
        raise UsageError(f"spec: --args {text!r}: {e}") from None
    if not argv:
        raise UsageError("spec: --args must name a program to run")
    return argv


def _edit_spec_process(bundle: str, argv: list[str] | None, no_terminal: bool) -> None:
    """yacr's own `spec --args` and `--no-terminal`: the two edits a first container
    needs (a program that keeps running, no console socket), without jq."""
    from yacr import jsonio
    from yacr.state import write_atomic

    path = fs.join(fs.abspath(bundle), "config.json")
    try:
        with open(path, "rb") as f:
            spec = jsonio.loads(f.read())
    except (OSError, ValueError) as e:
        raise YacrError(f"spec: cannot read back {path}: {e}") from None
    proc = spec.setdefault("process", {})
    if argv:
        proc["args"] = argv
    if no_terminal:
        proc["terminal"] = False
    write_atomic(fs.dirname(path), "config.json",
                 (jsonio.dumps(spec, indent=2) + "\n").encode(), 0o644)


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


_ID_HELP = 'Where "<container-id>" is the name of the container (see yacr list).'

COMMANDS: dict[str, Command] = {c.name: c for c in [
    Command("checkpoint", "not supported: checkpointing needs CRIU", "<container-id>",
            [Flag("image-path", "str", ""), Flag("work-path", "str", ""),
             Flag("leave-running", "bool")], _unsupported, 0, None,
            "yacr does not checkpoint or restore containers; the flags are accepted so that\n"
            "the error says so."),
    Command("create", "create a container: its process waits for yacr start", "<container-id>",
            CREATE_FLAGS, _create, description=_ID_HELP + "\n\nThe bundle (--bundle, "
            "default: the current directory) holds config.json and the\nroot filesystem."),
    Command("delete", "delete a stopped container: its cgroups, state and what is left of it",
            "<container-id>",
            [Flag("force", "bool", help="kill (SIGKILL) and delete the container even if it "
                  "runs", aliases=("f",))], _delete, description=_ID_HELP),
    Command("events", "print a container's stats and OOM events (JSON)", "<container-id>",
            [Flag("stats", "bool", help="print the stats once and exit"),
             Flag("interval", "str", "5s", "time between stats events")], _events),
    Command("exec", "run another process in a running container",
            "<container-id> <command> [command options]", EXEC_FLAGS, _exec, 1, None,
            _ID_HELP + "\nThe flags come before the id: what follows the id is the command "
            "and its\narguments.", reorder=False),
    Command("kill", "send a signal (default: SIGTERM) to a container's init process",
            "<container-id> [signal]",
            [Flag("all", "bool", help="send the signal to every process of the container",
                  aliases=("a",))], _kill, 1, 2,
            _ID_HELP + "\nThe signal is a name (KILL, SIGKILL) or a number; 0 only checks "
            "that the\ncontainer is alive."),
    Command("list", "list the containers under --root", "",
            [Flag("format", "str", "table", "table or json", aliases=("f",)),
             Flag("quiet", "bool", help="only print ids", aliases=("q",))], _list, 0, 0),
    Command("pause", "freeze every process of a container", "<container-id>", [], _pause,
            description=_ID_HELP),
    Command("ps", "list a container's processes", "<container-id> [ps options]",
            [Flag("format", "str", "table", "table or json", aliases=("f",))], _ps, 1, None,
            "The flags come before the id; what follows the id goes to ps(1).", reorder=False),
    Command("restore", "not supported: restoring needs CRIU", "<container-id>",
            [Flag("image-path", "str", ""), Flag("work-path", "str", ""),
             Flag("bundle", "str", "", aliases=("b",)), Flag("no-subreaper", "bool"),
             Flag("detach", "bool", aliases=("d",)), Flag("pid-file", "str", ""),
             Flag("console-socket", "str", "")], _unsupported, 0, None),
    Command("resume", "thaw a paused container", "<container-id>", [], _resume,
            description=_ID_HELP),
    Command("run", "create and start a container (in the foreground unless --detach)",
            "<container-id>",
            CREATE_FLAGS + [Flag("detach", "bool", help="detach from the container",
                                 aliases=("d",)),
                            Flag("keep", "bool", help="do not delete the container after exit")],
            _run, description=_ID_HELP + "\n\nIn the foreground the exit status is the "
            "container's. A shell without a terminal\nis pid 1 and ignores SIGTERM and "
            "Ctrl-C: stop it with yacr kill <container-id> KILL."),
    Command("spec", "write runc's default config.json (runs `sh` on a terminal)", "",
            [Flag("bundle", "str", ".", "where to write config.json", aliases=("b",)),
             Flag("rootless", "bool", help="a config for rootless containers"),
             Flag("seccomp", "bool", help="yacr's own: add yacr's default seccomp profile "
                  "(Docker's style)"),
             Flag("args", "str", "", "yacr's own: the process to run instead of sh, split "
                  "as a shell would ('sleep 1000')"),
             Flag("no-terminal", "bool", help="yacr's own: process.terminal false (no "
                  "--console-socket needed)")], _spec, 0, 0),
    Command("start", "start the process of a created container", "<container-id>", [], _start,
            description=_ID_HELP),
    Command("state", "print a container's state (JSON)", "<container-id>", [], _state,
            description=_ID_HELP),
    Command("update", "change a container's resource limits", "<container-id>", UPDATE_FLAGS,
            _update, description="With --resources, the limits come from that JSON file "
            "(linux.resources of\nconfig.json; - for stdin) and the other flags are ignored."),
    Command("features", "print the runtime's features (JSON)", "", [], _features, 0, 0),
    Command("bench", "yacr's own: benchmark yacr against runc and crun (see yacr bench --help)",
            "[SCENARIO...]", [], _bench, 0, None),
    Command("wasm", "yacr's own: compile Wasm modules into the AOT cache", "compile FILE...",
            [], _wasm, 0, None),
    Command("seccomp", "yacr's own: count the syscalls a seccomp profile or a container "
            "allows", "surface [options]", [], _seccomp, 0, None),
    Command("profile", "yacr's own: run a container once and write the minimal seccomp "
            "profile for it", "[options] <container-id>", [], _profile, 0, None),
]}
# cold commands with their own parsers (argparse is fine there)
_OWN_PARSER = ("bench", "wasm", "seccomp", "profile")

_ABOUT = """\
yacr runs containers packaged as OCI bundles (a config.json and a root filesystem),
Linux ones and WebAssembly modules, and takes runc's command line: containerd, podman
and Kubernetes drive it in place of runc. Each container is a child of the process that
runs yacr, so ordinary process supervisors manage it.

To run a container from the bundle in the current directory:

    # yacr run [ -b bundle ] <container-id>

The id is your name for the container, unique under --root."""


def _help(cmd: Command | None = None) -> str:
    if cmd is None:
        lines = ["NAME:",
                 "   yacr - Open Container Initiative runtime, runc-compatible (Linux and Wasm)",
                 "", _ABOUT, "", "USAGE:",
                 "   yacr [global options] command [command options] [arguments...]", "",
                 "VERSION:", "   " + _version_text().replace("yacr version ", "", 1).rstrip(),
                 "", "COMMANDS:"]
        width = max(len(c) for c in COMMANDS) + 2
        for c in COMMANDS.values():
            lines.append(f"   {c.name:<{width}}{c.summary}")
        lines.append(f"   {'help, h':<{width}}show the commands, or one command's help")
        lines += ["", "GLOBAL OPTIONS:"] + _flag_lines(GLOBAL_FLAGS)
        return "\n".join(lines) + "\n"
    lines = ["NAME:", f"   yacr {cmd.name} - {cmd.summary}", "", "USAGE:", f"   {cmd.usage}"]
    if cmd.description:
        lines += ["", cmd.description]
    if cmd.flags:
        lines += ["", "OPTIONS:"] + _flag_lines(cmd.flags)
    return "\n".join(lines) + "\n"


def _flag_lines(flags: list[Flag]) -> list[str]:
    cells = []
    for f in flags:
        arg = "" if f.kind == "bool" else " value"
        names = ", ".join([f"--{f.name}{arg}"] + [f"-{a}{arg}" for a in f.aliases])
        text = f.help
        if f.kind == "str" and f.default:
            text += f' (default: "{f.default}")'
        elif f.kind == "int" and f.default is not None:
            text += f" (default: {f.default})"
        cells.append((names, text))
    width = max(len(n) for n, _ in cells) + 2
    return [f"   {n:<{width}}{t}".rstrip() for n, t in cells]


def _version_text() -> str:
    from yacr import OCI_VERSION

    return f"yacr version {__version__}\ncommit: {_commit()}\nspec: {OCI_VERSION}\n"


def _commit() -> str:
    """The git commit of the checkout yacr runs from (with -dirty for local changes), or
    what is known instead. Only --version and --help ask (two git calls)."""
    import os
    import subprocess

    here = fs.dirname(fs.abspath(__file__))  # .../src/yacr
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", here, *args], capture_output=True, text=True,
                              env=env, timeout=10, check=True).stdout.strip()
    try:
        top = git("rev-parse", "--show-toplevel")
        # an installed copy may sit in another project's checkout: only ours counts
        if not os.path.samefile(fs.join(top, "src", "yacr", "cli.py"), __file__):
            raise OSError
        return git("describe", "--always", "--dirty", "--tags", "--abbrev=12")
    except (OSError, subprocess.SubprocessError):
        return "unknown (yacr does not run from a git checkout)"


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


def _no_help_topic(name: str) -> UsageError:
    e = UsageError(f"No help topic for '{name}': unknown command; see yacr --help")
    e.exit_code = 3  # as runc
    return e


def _main(argv: list[str], log: Log) -> int:
    g, rest = parse_flags(argv, GLOBAL_FLAGS, "yacr")
    if g["log-format"] not in ("text", "json"):
        raise UsageError(f"--log-format: invalid value {g['log-format']!r} (text or json)")
    log.json = g["log-format"] == "json"
    log.debug_enabled = g["debug"]
    log.path = g["log"] or None
    log.open()  # created now, even if nothing is logged: containerd and podman read it
    if g["version"]:
        sys.stdout.write(_version_text())
        return 0
    if g["help"] or not rest:
        # as runc: the help, and success (a failure would owe stderr its one-line reason)
        sys.stdout.write(_help())
        return 0
    name, args = rest[0], rest[1:]
    if name in ("help", "h"):
        if args and args[0] in ("-h", "--help", "-help"):
            args = []
        if args and args[0] not in COMMANDS:
            raise _no_help_topic(args[0])
        sys.stdout.write(_help(COMMANDS[args[0]] if args else None))
        return 0
    cmd = COMMANDS.get(name)
    if cmd is None:
        raise _no_help_topic(name)
    if name in _OWN_PARSER:
        from yacr.container import Context

        return cmd.run(Context(fs.abspath(g["root"]), log), {}, args)
    o, pos = parse_flags(args, cmd.flags + [HELP_FLAG], name, reorder=cmd.reorder)
    if o["help"]:
        sys.stdout.write(_help(cmd))
        return 0
    if len(pos) < cmd.min_args:
        raise UsageError(f"{name}: missing container id; usage: {cmd.usage}"
                         if cmd.min_args == 1 else f"{name}: usage: {cmd.usage}")
    if cmd.max_args is not None and len(pos) > cmd.max_args:
        raise UsageError(f"{name}: unexpected argument {pos[cmd.max_args]!r}; usage: "
                         f"{cmd.usage}")
    from yacr.container import Context

    root = g["root"]
    if root == DEFAULT_ROOT and posix.geteuid() != 0:
        root = rootless_root()
    if not root:
        raise UsageError("--root must not be empty")
    ctx = Context(fs.abspath(root), log, g["systemd-cgroup"])
    log.debug("yacr %s: %s %s (root %s)", __version__, name, pos, ctx.root)
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
