"""The container's init: the forked runtime process that becomes the container.

It runs in the child of `create`, already in the new pid (and time)
namespace, and walks through the steps of the runtime-spec lifecycle in the
order runc uses, talking to the runtime through `protocol`. Everything it will
need after pivot_root is imported before it, because the host's Python library
is out of reach afterwards. It never returns: it execs the container process
(through its handler) or exits with an error it has reported to the runtime.
"""

from __future__ import annotations

import _signal
import posix

from yacr import protocol
from yacr.cgroups import join_self, without_cgroup2
from yacr.errors import YacrError
from yacr.linux import capabilities, process
from yacr.linux import sys as S
from yacr.linux.namespaces import JOIN_ORDER

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from collections.abc import Callable
    from typing import Any, NoReturn

    from yacr.cgroups import Layout
    from yacr.container import CreateOptions
    from yacr.handlers import Handler
    from yacr.linux.namespaces import Plan
    from yacr.linux.rootfs import Rootfs
    from yacr.linux.seccomp import Program
    from yacr.log import Log
    from yacr.spec import Process, Spec

# sysctls that belong to a namespace, and which one (prefix match for the dotted ones).
_IPC_SYSCTLS = frozenset({"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                          "kernel.shmall", "kernel.shmmax", "kernel.shmmni",
                          "kernel.shm_rmid_forced"})


def sysctl_namespace(key: str) -> str | None:
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        return "ipc"
    if key.startswith("net."):
        return "network"
    if key in ("kernel.hostname", "kernel.domainname"):
        return "uts"
    return None


class InitConfig:
    """Everything init needs, prepared by the runtime before the fork."""

    __slots__ = ("cid", "spec", "bundle", "chan", "plan", "layout", "cgroup_paths",
                 "fifo_fd", "console_sock", "opts", "handler", "log", "committed", "seccomp",
                 "mount_fds", "cgroup_by_runtime", "born_in_cgroup2")

    def __init__(self, cid: str, spec: Spec, bundle: str, chan: protocol.Channel, plan: Plan,
                 layout: Layout | None, cgroup_paths: dict[str, str], fifo_fd: int,
                 console_sock: _socket.socket | None, opts: CreateOptions,
                 handler: Handler, log: Log) -> None:
        self.cid = cid
        self.spec = spec
        self.bundle = bundle
        self.chan = chan
        self.plan = plan
        self.layout = layout
        self.cgroup_paths = cgroup_paths
        self.fifo_fd = fifo_fd
        self.console_sock = console_sock
        self.opts = opts
        self.handler = handler
        self.log = log
        self.committed = False
        self.seccomp: Program | None = None
        self.mount_fds: dict[int, int] = {}  # see rootfs.mount_sources
        # the runtime puts the first child in its cgroup (systemd's scope): wait for it
        self.cgroup_by_runtime = False
        # set in the child: it was forked straight into its cgroup2 cgroup (fork_in)
        self.born_in_cgroup2 = False


def _die_on_signal(signum: int, _frame: Any) -> None:
    # As pid 1 of its namespace, init only receives signals it handles: make the common
    # termination signals work on a created (not yet started) container.
    posix._exit(128 + signum)


def error_text(e: BaseException) -> str:
    if isinstance(e, YacrError):
        return str(e)
    if isinstance(e, OSError):
        where = f" {e.filename}" if e.filename else ""
        msg = e.strerror or str(e)
        return f"{msg}{':' if where else ''}{where}"
    return f"internal error in container init: {type(e).__name__}: {e}"


def run(cfg: InitConfig) -> NoReturn:
    """The body of init; reports any failure to the runtime and exits."""
    try:
        _setup(cfg)
    except BaseException as e:  # noqa: BLE001 - init must never unwind into the runtime's code
        text = error_text(e)
        if cfg.log.debug_enabled:
            import traceback

            cfg.log.debug("init failed: " + "".join(traceback.format_exception(e, chain=True)))
        if not cfg.committed:
            try:
                cfg.chan.send(protocol.ERROR, msg=text)
            except BaseException:  # noqa: BLE001
                pass
        else:
            from yacr.log import one_line

            try:
                posix.write(2, f"yacr: {one_line(text)}\n".encode())
            except OSError:
                pass
        code = 1
        if isinstance(e, YacrError) and text.startswith("exec:"):
            code = 126 if "permission denied" in text else 127
        posix._exit(code)
    posix._exit(0)


def _state(cfg: InitConfig, status: str, pid: int) -> dict[str, Any]:
    return {"ociVersion": cfg.spec.oci_version, "id": cfg.cid, "status": status, "pid": pid,
            "bundle": cfg.bundle, "annotations": cfg.spec.annotations}


def _setup(cfg: InitConfig) -> None:
    # The rootfs code runs only here, in init: imported by init itself (before it can
    # leave the host's mount namespace), it is never part of the runtime's memory (0.2 MiB
    # of every create's peak) nor copied at its fork.
    from yacr.linux import rootfs

    spec = cfg.spec
    # Without a process (the spec allows it) the container is created all the same, and
    # `start` refuses; init then only keeps the namespaces alive.
    proc: Process | None = spec.process
    # Whatever init imports must be imported before pivot_root, when the host's Python
    # library is still reachable; what only some containers need is imported only for them.
    if proc is not None and proc.terminal:
        from yacr.linux import console
    if spec.hooks:
        from yacr.hooks import run_hooks
    if cfg.log.debug_enabled:
        import traceback  # noqa: F401 - run() formats a failure with it, maybe after pivot
    S.prctl(S.PR_SET_PDEATHSIG, 9)
    S.close_inherited(3 + cfg.opts.preserve_fds)
    # runc's step names lead yacr's debug lines where the step is the same, so logs (and
    # runc's own tests) read alike
    cfg.log.debug("child process in init(): joining the container's cgroups and namespaces")
    userns = "user" in cfg.plan.types
    if not userns:
        # Until execve, this process is the runtime's interpreter: keep other processes (of
        # the container too) from reaching it through /proc/<pid>/{exe,mem,fd}
        # (CVE-2019-5736). In a user namespace it would also lock init out of its own
        # /proc/self/fd, which the mounts below use: there it happens after them.
        S.prctl(S.PR_SET_DUMPABLE, 0)
    # Modes of what init creates (device nodes, mount points) are exactly the configured ones.
    posix.umask(0)
    for sig in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT,
                _signal.SIGUSR1, _signal.SIGUSR2):
        _signal.signal(sig, _die_on_signal)
    posix.setsid()

    plan = cfg.plan
    if not userns:  # with one, the helper did these (see run_userns_helper)
        _join_by_path(plan)
        # The runtime made the cgroups (with their limits) before forking: join them
        # first, then unshare, so that a new cgroup namespace is rooted at the container's
        # cgroup.
        join_cgroups(cfg)
    S.unshare(plan.unshare & ~(S.CLONE_NEWPID | S.CLONE_NEWTIME | S.CLONE_NEWUSER))

    if not cfg.opts.no_new_keyring:
        # A session keyring of its own, so the container cannot read the caller's keys.
        S.join_session_keyring(f"_ses.{cfg.cid}"[:255])
    # Names first, so createRuntime and createContainer hooks already see them.
    if spec.hostname is not None:
        if "uts" not in plan.types:
            raise YacrError("hostname: requires a uts namespace")
        S.sethostname(spec.hostname)
    if spec.domainname is not None:
        if "uts" not in plan.types:
            raise YacrError("domainname: requires a uts namespace")
        S.setdomainname(spec.domainname)
    if "mount" in plan.join and not userns:
        S.setns(plan.join["mount"], 0)
    plan.close()

    # The rootfs is built in the new or joined mount namespace, as runc does; without a
    # mount namespace in the config it is built in the host's, under the rootfs only, and
    # delete unmounts it (see container.destroy).
    root = rootfs.Rootfs(spec.root_path, cfg.log, host_ns="mount" not in plan.types,
                         sources=cfg.mount_fds)
    root.prepare(spec, cfg.bundle, cfg.layout, cfg.cgroup_paths, "cgroup" in plan.types
                 and bool(plan.unshare & S.CLONE_NEWCGROUP))
    if proc is not None:
        _make_cwd(root, proc.cwd)

    if spec.hooks.get("prestart") or spec.hooks.get("createRuntime"):
        cfg.chan.send(protocol.CREATE_HOOKS)
        cfg.chan.recv(protocol.HOOKS_DONE)
    if spec.hooks.get("createContainer"):
        run_hooks("createContainer", spec.hooks["createContainer"],
                  _state(cfg, "created", posix.getpid()))

    if proc is not None:
        cfg.handler.before_pivot()
    root.pivot(cfg.opts.no_pivot, spec.linux.rootfs_propagation)
    posix.umask(0o022)

    master = slave = -1
    if proc is not None and proc.terminal:
        master, slave = console.open_pty(proc.console_height, proc.console_width,
                                         proc.user.uid)
        if cfg.console_sock is not None:
            console.send_master(cfg.console_sock, master)
            cfg.console_sock.close()
        else:
            cfg.chan.send(protocol.PTY_MASTER, fds=[master])
        posix.close(master)
        console.bind_console(slave)
        console.make_controlling(slave)
        posix.close(slave)

    rootfs.finish(root, spec.root_readonly)
    _apply_sysctls(spec.linux.sysctl, plan.types)
    rootfs.readonly_paths(spec.linux.readonly_paths)
    rootfs.mask_paths(spec.linux.masked_paths)

    if proc is None:
        if userns:
            S.prctl(S.PR_SET_DUMPABLE, 0)
        cfg.chan.send(protocol.READY)
        _commit(cfg)
        while True:  # until delete kills us: start refuses to release a process-less init
            _signal.pause()
    if proc.oom_score_adj is not None:
        process.set_oom_score_adj(proc.oom_score_adj)
    if spec.linux.personality is not None:
        process.set_personality(spec.linux.personality)
    if proc.io_priority is not None:
        process.set_io_priority(*proc.io_priority)
    if proc.scheduler is not None:
        _set_scheduler(proc)

    filt = cfg.seccomp
    if filt is not None and filt.uses_notify:
        # The agent must hold the notify fd before the container runs: load now, while the
        # runtime (which can reach listenerPath on the host) still waits for us.
        fd = filt.load()
        cfg.chan.send(protocol.SECCOMP_FD, fds=[fd])
        posix.close(fd)
        cfg.chan.recv(protocol.SECCOMP_DONE)
        filt = None
    path, env, last_step = finish_process(proc, cfg.handler, cfg.log, filt)

    if userns:
        S.prctl(S.PR_SET_DUMPABLE, 0)
    cfg.chan.send(protocol.READY)
    _commit(cfg)

    # Wait for `start`: it writes one byte into the exec FIFO.
    while True:
        try:
            if posix.read(cfg.fifo_fd, 1):
                break
        except InterruptedError:
            continue
    posix.close(cfg.fifo_fd)
    for sig in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT,
                _signal.SIGUSR1, _signal.SIGUSR2):
        _signal.signal(sig, _signal.SIG_DFL)
    S.close_range_cloexec(3 + cfg.opts.preserve_fds)
    # The seccomp filter (and the final capabilities) before startContainer hooks: they
    # run in the container, so they are confined exactly as its process will be, and they
    # inherit nothing of the runtime's but stdio.
    last_step()
    if spec.hooks.get("startContainer"):
        try:
            run_hooks("startContainer", spec.hooks["startContainer"],
                      _state(cfg, "created", posix.getpid()))
        except YacrError as e:
            from yacr.log import one_line

            posix.write(2, f"yacr: {one_line(str(e))}\n".encode())
            posix._exit(1)
    try:
        cfg.handler.run(path, proc.args, env)
    except OSError as e:
        raise YacrError(f'exec: "{proc.args[0]}": {(e.strerror or "error").lower()}') from None


def join_cgroups(cfg: InitConfig) -> None:
    """Into the container's cgroups: by itself (those it was not born in), or, when
    systemd makes the cgroup around this process, by waiting until the runtime says it is
    there."""
    if cfg.cgroup_by_runtime:
        cfg.chan.recv(protocol.CGROUP_READY)
    elif cfg.born_in_cgroup2:
        join_self(without_cgroup2(cfg.cgroup_paths))
    else:
        join_self(cfg.cgroup_paths)


def _join_by_path(plan: Plan) -> None:
    """setns into the namespaces given by path, but pid and time (the runtime chose those
    for init's children) and mount (last, once nothing else needs host paths)."""
    for kind in JOIN_ORDER:
        if kind in plan.join and kind not in ("pid", "time", "mount", "user"):
            S.setns(plan.join[kind], 0)


def run_userns_helper(cfg: InitConfig) -> NoReturn:
    """The runtime's helper child when the container has a user namespace: it does what
    needs host privileges (cgroups, joining namespaces by path), enters the user namespace,
    lets the runtime write the maps, enters the pid and time namespaces and forks init.
    Then it waits to be killed at commit: init's parent-death signal is on it."""
    try:
        S.prctl(S.PR_SET_PDEATHSIG, 9)
        plan = cfg.plan
        join_cgroups(cfg)
        if "user" in plan.join:
            # joined first: the namespaces it owns can then be joined too
            S.setns(plan.join["user"], S.CLONE_NEWUSER)
            _join_by_path(plan)
        else:
            # joined while still privileged on the host, then the new user namespace
            _join_by_path(plan)
            S.unshare(S.CLONE_NEWUSER)
        if "mount" in plan.join:
            S.setns(plan.join["mount"], 0)
        cfg.chan.send(protocol.USERNS_READY)
        cfg.chan.recv(protocol.MAPS_DONE)
        try:
            posix.setresgid(0, 0, 0)
            posix.setresuid(0, 0, 0)
        except OSError:
            raise YacrError("linux.uidMappings: container ids 0 (root) must be mapped") from None
        for kind, flag in (("pid", S.CLONE_NEWPID), ("time", S.CLONE_NEWTIME)):
            if kind in plan.join:
                S.setns(plan.join[kind], flag)
            elif plan.unshare & flag:
                S.unshare(flag)
                if kind == "time" and cfg.spec.linux.time_offsets:
                    from yacr.create import _write_time_offsets

                    _write_time_offsets(cfg.spec.linux.time_offsets)
        r, w = posix.pipe2(posix.O_CLOEXEC)
        pid = posix.fork()
        if pid == 0:
            posix.close(w)
            posix.read(r, 1)  # not before the runtime knows this pid
            posix.close(r)
            run(cfg)
        posix.close(r)
        cfg.chan.send(protocol.INIT_PID, pid=pid)
        posix.write(w, b"1")
        posix.close(w)
        cfg.chan.close()
        while True:
            _signal.pause()
    except BaseException as e:  # noqa: BLE001 - report, never unwind into the runtime's code
        try:
            cfg.chan.send(protocol.ERROR, msg=error_text(e))
        except BaseException:  # noqa: BLE001
            pass
        posix._exit(1)


def _commit(cfg: InitConfig) -> None:
    """The runtime saved the state: from now on init outlives it."""
    cfg.chan.recv(protocol.COMMIT)
    S.prctl(S.PR_SET_PDEATHSIG, 0)
    cfg.log.debug("init: closing the pipe to signal completion; waiting for start")
    cfg.chan.send(protocol.COMMITTED)
    cfg.committed = True
    cfg.chan.close()


def finish_process(proc: Process, handler: Handler, log: Log,
                   filt: Program | None = None) -> tuple[str, dict[str, str], Callable[[], None]]:
    """The last steps before exec, shared by init and `exec`: user, groups, capabilities,
    no_new_privs, LSM label, cwd, the program's path, rlimits.

    Returns (path, env, last_step); last_step runs right before execve and loads the seccomp
    filter, so that as few of the runtime's own syscalls as possible run under it. Without
    no_new_privs, loading a filter needs CAP_SYS_ADMIN: it is kept effective until then.
    """
    user = process.UserInfo(proc.user.uid, proc.user.gid, proc.user.additional_gids)
    env = process.env_map(proc.env)
    env.setdefault("HOME", user.home)
    if proc.user.umask is not None:
        posix.umask(proc.user.umask)
    process.apply_lsm_on_exec(proc)
    # The working directory is entered while still privileged, as runc does, so that a
    # directory only root may enter still works for another user; a refusal is tried again
    # as that user (a directory only the container's user may enter, e.g. a volume).
    entered = _enter_cwd(proc.cwd, PermissionError)
    keep = capabilities.CAP_SYS_ADMIN if filt is not None and not proc.no_new_privileges else 0
    caps = None
    if proc.capabilities is not None:
        caps = capabilities.CapSets(proc.capabilities, log, "process.capabilities")
        caps.drop_bounding()
    S.prctl(S.PR_SET_KEEPCAPS, 1)
    user.switch()
    S.prctl(S.PR_SET_KEEPCAPS, 0)
    if caps is not None:
        caps.apply(keep)
    elif keep and proc.user.uid != 0:
        S.capset(keep, keep, 0)
    if not entered:
        _enter_cwd(proc.cwd)
    if proc.no_new_privileges:
        S.prctl(S.PR_SET_NO_NEW_PRIVS, 1)
    try:
        # glibc's getcwd fails (ENOENT) when the directory is outside the root, as a cwd of
        # /proc/self/fd/N on a host directory would be (CVE-2024-21626).
        posix.getcwd()
    except OSError:
        raise YacrError(f"process.cwd: {proc.cwd} is outside the container's root") from None
    path = handler.resolve(proc.args[0], env, proc.cwd)
    process.set_rlimits(proc)

    def last_step() -> None:
        if filt is not None:
            filt.load()
        if keep:
            if caps is not None:
                caps.apply()
            elif proc.user.uid != 0:
                S.capset(0, 0, 0)

    return path, env, last_step


def _enter_cwd(cwd: str, retry_on: type[OSError] | tuple[()] = ()) -> bool:
    """chdir to process.cwd; False when the error is one to try again later (retry_on)."""
    try:
        posix.chdir(cwd)
    except retry_on:
        return False
    except OSError as e:
        raise YacrError(f"process.cwd: cannot enter {cwd}: {e.strerror}") from None
    return True


def _make_cwd(root: Rootfs, cwd: str) -> None:
    """A missing process.cwd is created (0755, root's), as runc and crun do: once the
    mounts are in place (it may be inside one), before the root is made read-only, and
    resolved inside the rootfs like every other path init creates (an image's symlink to
    /anywhere leads to /anywhere in the rootfs)."""
    try:
        posix.close(root.ensure(cwd, True))
    except OSError as e:
        raise YacrError(f"process.cwd: cannot create {cwd}: {e.strerror}") from None


def _apply_sysctls(sysctl: dict[str, str], ns_types: set[str]) -> None:
    for key, value in sysctl.items():
        ns = sysctl_namespace(key)
        if ns is None or ns not in ns_types:
            raise YacrError(f"linux.sysctl: {key} is not in a separate kernel namespace of "
                            "this container")
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            process.write_procfs(path, value)
        except OSError as e:
            raise YacrError(f"linux.sysctl: cannot set {key}={value}: {e.strerror}") from None


def _set_scheduler(proc: Process) -> None:
    sc = proc.scheduler
    if sc is None:
        return
    try:
        if sc.policy in (1, 2):
            posix.sched_setscheduler(0, sc.policy, posix.sched_param(sc.priority))
        else:
            posix.sched_setscheduler(0, sc.policy, posix.sched_param(0))
            posix.setpriority(posix.PRIO_PROCESS, 0, sc.nice)
    except OSError as e:
        raise YacrError(f"process.scheduler: {e.strerror}") from None
