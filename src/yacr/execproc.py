"""`yacr exec`: start another process inside a running container.

The process joins every namespace of the container's init that differs from
the runtime's own, and its cgroup, then gets the process attributes (user,
capabilities, no_new_privs, LSM label, rlimits) of the process spec. Without
--process, that spec starts from the container's own process and the flags
override it, as runc does. The exec'd process reports a failure over a
close-on-exec socket; a clean EOF means execve succeeded.

As runc's, `exec` exits 255 when it fails itself (no such container, a paused one, a
program that is not there, a bad --pid-file, --cgroup...), so that a caller can tell
those from the exit status of the process, which `exec` returns unchanged otherwise.
"""

from __future__ import annotations

import posix

from yacr import fs, protocol
from yacr.cgroups import fork_in, join_exec, without_cgroup2
from yacr.errors import StateError, UsageError, YacrError
from yacr.linux import sys as S
from yacr.linux.namespaces import PROC_NAMES
from yacr.spec import Process, obj, read_json_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from yacr.container import Context
    from yacr.state import State

# the user namespace first: it owns the others (and is entered once the host cgroups,
# which need host privileges, are joined); the mount namespace last
_JOIN = ("user", "ipc", "uts", "network", "cgroup", "mount")


# runc's status for its own failures in `exec`, distinct from the process's statuses
EXEC_FAILED = 255


def exec_cli(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    try:
        return _exec_cli(ctx, o, args)
    except YacrError as e:
        e.exit_code = EXEC_FAILED
        raise
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        err = YacrError(f"exec: {e.strerror or e}{where}")
        err.exit_code = EXEC_FAILED
        raise err from None


def _exec_cli(ctx: Context, o: dict[str, Any], args: list[str]) -> int:
    cid, cmd = args[0], args[1:]
    st = ctx.store.load(cid, lock=False)
    status = st.status()
    if status == "stopped":
        raise StateError("cannot exec in a stopped container")
    if status == "paused" and not o["ignore-paused"]:
        raise StateError("cannot exec in a paused container (use --ignore-paused)")
    if status == "creating":
        raise StateError("cannot exec in a container that is being created")
    if o["process"]:
        proc = Process(obj(read_json_file(o["process"], "--process file"), "--process file"),
                       "process")
    else:
        if not cmd:
            raise UsageError("exec: missing the command to run (or --process FILE)")
        proc = Process(_process_from_flags(st, o, cmd), "process")
    console_socket = o["console-socket"] or None
    if proc.terminal and console_socket is None and o["detach"]:
        raise UsageError("exec: a terminal with --detach needs --console-socket")
    pid_file = o["pid-file"] or None
    if pid_file:
        # checked before anything runs: the process would be killed again after it started
        pid_file = fs.abspath(pid_file)
        if not fs.isdir(fs.dirname(pid_file)):
            raise YacrError(f"--pid-file {pid_file}: no such directory {fs.dirname(pid_file)}")
    cgroup_paths, fallback = st.cgroups, True
    if o["cgroup"]:
        from yacr.cgroups import subcgroups

        cgroup_paths, every = subcgroups.resolve(st.cgroups, o["cgroup"])
        fallback = not every
    return exec_process(ctx, st, proc, console_socket=console_socket, pid_file=pid_file,
                        detach=o["detach"], preserve_fds=o["preserve-fds"],
                        cgroup_paths=cgroup_paths, cgroup_fallback=fallback)


def container_config(st: State) -> dict[str, Any]:
    """The container's config.json as it was at create (the copy in its state directory)."""
    from yacr import jsonio
    from yacr.state import CONFIG_COPY

    try:
        with open(fs.join(st.path, CONFIG_COPY), "rb") as f:
            cfg = jsonio.loads(f.read())
    except (OSError, ValueError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _process_from_flags(st: State, o: dict[str, Any], cmd: list[str]) -> dict[str, Any]:
    base = dict(container_config(st).get("process") or {})
    base["args"] = cmd
    base["terminal"] = bool(o["tty"])
    env = list(base.get("env") or [])
    for e in o["env"]:
        key = e.partition("=")[0]
        env = [x for x in env if x.partition("=")[0] != key] + [e]
    base["env"] = env
    if o["cwd"]:
        base["cwd"] = o["cwd"]
    base.setdefault("cwd", "/")
    if o["user"]:
        uid, _, gid = o["user"].partition(":")
        try:
            base["user"] = {"uid": int(uid), "gid": int(gid) if gid else 0}
        except ValueError:
            raise UsageError(f"exec: --user {o['user']!r}: expected UID[:GID]") from None
    if o["additional-gids"]:
        user = dict(base.get("user") or {})
        try:
            user["additionalGids"] = [int(g) for g in o["additional-gids"]]
        except ValueError:
            raise UsageError("exec: --additional-gids expects numbers") from None
        base["user"] = user
    if o["cap"]:
        caps = {k: list(v) for k, v in (base.get("capabilities") or {}).items()}
        # Only bounding, effective and permitted grow (CVE-2022-29162): inheritable and
        # ambient would hand the capability to programs exec'd by this one.
        for c in o["cap"]:
            for k in ("bounding", "effective", "permitted"):
                caps.setdefault(k, [])
                if c not in caps[k]:
                    caps[k].append(c)
        base["capabilities"] = caps
    if o["no-new-privs"]:
        base["noNewPrivileges"] = True
    if o["apparmor"]:
        base["apparmorProfile"] = o["apparmor"]
    if o["process-label"]:
        base["selinuxLabel"] = o["process-label"]
    return base


def exec_process(ctx: Context, st: State, proc: Process, *, console_socket: str | None = None,
                 pid_file: str | None = None, detach: bool = False,
                 preserve_fds: int = 0, cgroup_paths: dict[str, str] | None = None,
                 cgroup_fallback: bool = True) -> int:
    """Run proc in the container; cgroup_paths replaces the container's cgroups (exec
    --cgroup), and cgroup_fallback lets a cgroup2 join that fails with EBUSY go to init's
    cgroup instead (see cgroups.join_exec)."""
    from yacr import handlers
    from yacr.container import write_pid_file
    from yacr.create import receive_fds
    from yacr.init import error_text, finish_process
    from yacr.linux.console import connect_socket
    from yacr.linux.process import check_lsm

    check_lsm(proc)
    handler = handlers.select_for_exec(st)
    filt = None
    seccomp_cfg = (container_config(st).get("linux") or {}).get("seccomp")
    if seccomp_cfg is not None:
        from yacr.linux.seccomp import compile_profile

        # exec'd processes are confined like the container's own process
        filt = compile_profile(seccomp_cfg, ctx.log, ctx.seccomp_cache)
    init_pid = st.pid
    nsfds: dict[str, int] = {}
    try:
        for kind, name in PROC_NAMES.items():
            try:
                if posix.stat(f"/proc/{init_pid}/ns/{name}").st_ino == \
                        posix.stat(f"/proc/self/ns/{name}").st_ino:
                    continue
                nsfds[kind] = posix.open(f"/proc/{init_pid}/ns/{name}",
                                         posix.O_RDONLY | posix.O_CLOEXEC)
            except FileNotFoundError:
                if kind in ("time",):
                    continue
                raise StateError("container not running") from None
        if not st.init_alive():
            raise StateError("container not running")
        csock = connect_socket(console_socket) if proc.terminal and console_socket else None
        chan, child_chan = protocol.Channel.pair()
        join = _Join(st.cgroups if cgroup_paths is None else cgroup_paths,
                     st.pid if cgroup_fallback else 0)
        ctx.log.hold()  # the child writes its debug lines here from inside the container
        restore: list[tuple[int, int]] = []
        try:
            for kind, flag in (("pid", S.CLONE_NEWPID), ("time", S.CLONE_NEWTIME)):
                if kind in nsfds:
                    own = posix.open(f"/proc/self/ns/{kind}_for_children",
                                     posix.O_RDONLY | posix.O_CLOEXEC)
                    restore.append((own, flag))
                    S.setns(nsfds[kind], flag)
            if ctx.log.debug_enabled:
                ctx.log.debug(f"nsexec container setup: forking the exec'd process into the "
                              f"cgroups and namespaces of container {st.id} (init pid "
                              f"{init_pid})")
            pid, born = fork_in(join.paths)
            if pid == 0:
                if born:
                    join.paths = without_cgroup2(join.paths)
                chan.close()
                for fd, _flag in restore:  # the runtime's own namespaces stay out
                    posix.close(fd)
                try:
                    _child(join, proc, nsfds, csock, child_chan, handler, preserve_fds, ctx,
                           finish_process, filt)
                except BaseException as e:  # noqa: BLE001 - report, never unwind
                    try:
                        child_chan.send(protocol.ERROR, msg=error_text(e))
                    except BaseException:  # noqa: BLE001
                        pass
                    posix._exit(127 if "exec:" in error_text(e) else 1)
                posix._exit(0)
        finally:
            for fd, flag in restore:
                S.setns(fd, flag)
                posix.close(fd)
        child_chan.close()
        if csock is not None:
            csock.close()
    finally:
        for fd in nsfds.values():
            posix.close(fd)
    try:
        # the socket closes on execve: then the program runs
        pty_master = receive_fds(chan, protocol.EOF, filt, st, "running")
    except YacrError:
        try:
            posix.waitpid(pid, 0)
        except ChildProcessError:
            pass
        raise
    finally:
        chan.close()
    if pid_file:
        try:
            write_pid_file(pid_file, pid)
        except YacrError:
            # the caller cannot know the process: it must not outlive the failed exec
            _kill_and_reap(pid, pty_master)
            raise
    if detach:
        return 0
    from yacr.waiter import wait_foreground

    return wait_foreground(pid, pty_master)


class _Join:
    """Where the exec'd process goes: cgroup paths, and init's pid for the cgroup2 EBUSY
    fallback (0: none)."""

    __slots__ = ("paths", "init_pid")

    def __init__(self, paths: dict[str, str], init_pid: int) -> None:
        self.paths = paths
        self.init_pid = init_pid


def _kill_and_reap(pid: int, pty_master: int) -> None:
    try:
        posix.kill(pid, 9)
        posix.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
    if pty_master >= 0:
        posix.close(pty_master)


def _child(join: _Join, proc: Process, nsfds: dict[str, int], csock: Any,
           chan: protocol.Channel, handler: Any, preserve_fds: int, ctx: Context,
           finish: Any, filt: Any) -> None:
    from yacr.linux import console

    S.prctl(S.PR_SET_PDEATHSIG, 9)
    S.close_inherited(3 + preserve_fds)
    S.prctl(S.PR_SET_DUMPABLE, 0)  # as init: not reachable through /proc until execve
    log = ctx.log
    if log.debug_enabled and log.fd < 0:
        # No --log: debug lines go to the runtime's stderr, which a terminal replaces
        # below; a copy (close-on-exec, as posix.dup makes it) keeps it reachable.
        try:
            log.fd = posix.dup(2)
        except OSError:
            log.debug_enabled = False  # no stderr to write to
    log.debug("child process in init(): the forked exec child joins the container's "
              "cgroups and namespaces")
    join_exec(join.paths, join.init_pid)
    for kind in _JOIN:
        if kind in nsfds:
            S.setns(nsfds[kind], 0)
            if kind == "user":
                # the namespace's root, as init is (exec'd processes then switch users)
                posix.setresgid(0, 0, 0)
                posix.setresuid(0, 0, 0)
    if "mount" in nsfds:
        posix.chdir("/")
    if proc.terminal:
        posix.setsid()
        master, slave = console.open_pty(proc.console_height, proc.console_width,
                                         proc.user.uid)
        if csock is not None:
            console.send_master(csock, master)
            csock.close()
        else:
            chan.send(protocol.PTY_MASTER, fds=[master])
        posix.close(master)
        console.make_controlling(slave)
        posix.close(slave)
    if proc.oom_score_adj is not None:
        from yacr.linux.process import set_oom_score_adj

        set_oom_score_adj(proc.oom_score_adj)
    if filt is not None and filt.uses_notify:
        fd = filt.load()
        chan.send(protocol.SECCOMP_FD, fds=[fd])
        posix.close(fd)
        chan.recv(protocol.SECCOMP_DONE)
        filt = None
    path, env, last_step = finish(proc, handler, ctx.log, filt)
    S.prctl(S.PR_SET_PDEATHSIG, 0)
    S.close_range_cloexec(3 + preserve_fds)
    if log.debug_enabled:
        log.debug(f"setns_init: about to exec {path} (pid {posix.getpid()} in the container)")
    last_step()
    try:
        handler.run(path, proc.args, env)
    except OSError as e:
        raise YacrError(f'exec: "{proc.args[0]}": {(e.strerror or "error").lower()}') from None
