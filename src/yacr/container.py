"""The container lifecycle on the runtime side: create, start, kill, delete, state, list, run.

`create` forks the already-loaded CLI process into the container's init
(no interpreter re-exec), then drives it through the protocol in `protocol`.
Until the state is committed, init dies with the runtime (parent-death
signal), and whatever create made (state directory, cgroups) is recorded in
state.json before it is made, so `delete --force` can always undo a create
that was killed half-way.
"""

from __future__ import annotations

import _signal
import posix

# yacr.cgroups is imported in the functions that use it: `start`, the command between
# create and the container's program, never does (its code is 0.1 ms of every start).
from yacr import fs
from yacr.errors import NotFoundError, StateError, YacrError
from yacr.log import rfc3339_now
from yacr.state import CONFIG_COPY, EXEC_FIFO, State, Store, dir_name, proc_stat, write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from yacr import protocol
    from yacr.log import Log


# The longest the runtime waits for one message from a container's init during create
# (init's createContainer hooks included); the cgroup's freezer is checked every second.
INIT_TIMEOUT = 600


class Context:
    """The global flags of one command."""

    __slots__ = ("root", "log", "systemd_cgroup")

    def __init__(self, root: str, log: Log, systemd_cgroup: bool = False) -> None:
        self.root = root
        self.log = log
        self.systemd_cgroup = systemd_cgroup

    @property
    def store(self) -> Store:
        return Store(self.root)

    @property
    def seccomp_cache(self) -> str:
        """Compiled seccomp programs (see linux.seccomp), beside the containers' state: as
        private as the state itself, and a dot name that `list` skips."""
        return self.root + "/.seccomp"


class CreateOptions:
    """create's (and run's) flags, as runc spells them."""

    __slots__ = ("console_socket", "pid_file", "no_pivot", "no_new_keyring", "preserve_fds")

    def __init__(self, console_socket: str | None = None, pid_file: str | None = None,
                 no_pivot: bool = False, no_new_keyring: bool = False,
                 preserve_fds: int = 0) -> None:
        self.console_socket = console_socket
        self.pid_file = pid_file
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.preserve_fds = preserve_fds


class Created:
    """What `create` hands to `run`: the init pid (our child) and, for a terminal, the pty."""

    __slots__ = ("state", "pid", "pty_master")

    def __init__(self, state: State, pid: int, pty_master: int) -> None:
        self.state = state
        self.pid = pid
        self.pty_master = pty_master


def _hook_state(st: State, status: str, pid: int | None = None) -> dict[str, Any]:
    return {"ociVersion": st.to_dict()["ociVersion"], "id": st.id, "status": status,
            "pid": st.pid if pid is None else pid, "bundle": st.bundle,
            "annotations": st.annotations}


def write_pid_file(path: str, pid: int) -> None:
    """Digits only, no newline (containerd's Atoi rejects one); renamed into place."""
    path = fs.abspath(path)
    try:
        write_atomic(fs.dirname(path), fs.basename(path), str(pid).encode(), 0o644)
    except OSError as e:
        raise YacrError(f"--pid-file {path}: {e.strerror}") from None


def create(ctx: Context, cid: str, bundle: str, opts: CreateOptions,
           detach: bool = True) -> Created:
    from yacr import cgroups, handlers, init, protocol
    from yacr import spec as specmod
    from yacr.linux import namespaces
    from yacr.linux.process import check_lsm
    from yacr.state import validate_id

    validate_id(cid)
    bundle = fs.abspath(bundle)
    if not fs.isdir(bundle):
        raise YacrError(f"--bundle {bundle}: no such directory")
    log = ctx.log
    spec = specmod.load_bundle(bundle)
    proc = spec.process
    log.debug("config loaded: %s/config.json, rootfs %s, process %s", bundle, spec.root_path,
              proc.args if proc is not None else "none (create only)")
    if proc is not None and proc.terminal and opts.console_socket is None and detach:
        raise YacrError("process.terminal is true but no --console-socket was given (set "
                        "process.terminal to false, e.g. with yacr spec --no-terminal, or "
                        "run in the foreground)")
    if opts.preserve_fds < 0:
        raise YacrError("--preserve-fds must not be negative")
    handler = handlers.select(spec)
    handler.prepare(spec, ctx.log)
    if proc is not None:
        check_lsm(proc)
    layout = cgroups.detect_layout()
    res = cgroups.parse_resources(spec.linux.resources)
    unit: tuple[str, str] | None = None  # (slice, scope) with --systemd-cgroup
    if ctx.systemd_cgroup:
        from yacr.cgroups import systemd

        systemd.check_host(layout)
        unit = systemd.parse_path(spec.linux.cgroups_path, cid)
        paths = {"": systemd.cgroup_dir(*unit)}
    else:
        paths = cgroups.resolve_paths(layout, spec.linux.cgroups_path, dir_name(cid))
    filt = None
    if spec.linux.seccomp is not None:
        from yacr.linux.seccomp import compile_profile

        filt = compile_profile(spec.linux.seccomp, ctx.log, ctx.seccomp_cache)
        log.debug("seccomp filter ready: %d BPF instructions", len(filt.bpf) // 8)
    plan = namespaces.plan(spec.linux)

    st = ctx.store.create(cid)
    pid = helper = 0
    made: list[str] = []
    pty_master = -1
    try:
        st.bundle = bundle
        st.rootfs = spec.root_path
        st.created = rfc3339_now()
        st.annotations = spec.annotations
        st.cgroups = paths
        st.own_pidns = "pid" in plan.types and "pid" not in plan.join
        st.hooks = {k: [h.to_dict() for h in spec.hooks.get(k, [])]
                    for k in ("poststart", "poststop") if spec.hooks.get(k)}
        st.handler = handler.name
        me = proc_stat(posix.getpid())
        st.creator = (posix.getpid(), me[1] if me else 0)
        if unit is not None:
            # systemd makes the scope's cgroup (and its slices); what the container adds
            # below it is removed with it
            made = list(paths.values())
            st.extra["systemdUnit"] = unit[1]
        else:
            made = cgroups.missing(paths)
        st.extra["cgroupsMade"] = made
        if proc is None:
            st.extra["noProcess"] = True
        if "mount" not in plan.types:
            # init mounts in the host's namespace, under the rootfs: delete must unmount
            st.extra["hostRootfs"] = spec.root_path

        fifo = fs.join(st.path, EXEC_FIFO)
        posix.mkfifo(fifo, 0o600)
        fifo_fd = posix.open(fifo, posix.O_RDWR | posix.O_CLOEXEC)
        chan, init_chan = protocol.Channel.pair()
        csock = None
        if proc is not None and proc.terminal and opts.console_socket is not None:
            from yacr.linux.console import connect_socket

            csock = connect_socket(opts.console_socket)
        # The state (with the cgroups about to be made) is saved first, so a runtime killed
        # from here on leaves delete --force what to remove. The cgroups and their limits
        # (device rules included: they govern init's mknod too) are in place before the
        # fork: done after it, in parallel with init, they measured no faster, because every
        # page either process writes then gets copied, and both may share one CPU.
        st.save()
        place = None
        if unit is None:
            paths = _make_cgroups(ctx, st, paths, made)
            _check_cgroup_usable(ctx, paths, made)
            cgroups.apply_resources(paths, res, spec, ctx.log)
            if log.debug_enabled:
                log.debug("cgroups made and limits applied: %s",
                          " ".join(sorted(paths.values())) or "none")
        else:
            place = _systemd_placer(ctx, cid, unit, paths, res, spec, chan)
        chan.watch(_watch_init(paths))
        write_atomic(st.path, CONFIG_COPY, spec.source)
        ctx.log.hold()
        cfg = init.InitConfig(cid, spec, bundle, init_chan, plan, layout, paths, fifo_fd, csock,
                              opts, handler, ctx.log)
        cfg.seccomp = filt
        cfg.cgroup_by_runtime = place is not None
        userns = "user" in plan.types
        # A rootless runtime neither needs (its container's root is itself) nor may make
        # detached copies of bind sources: see mount_sources.
        detach_binds = userns and posix.geteuid() == 0
        if detach_binds or any(m.idmapped for m in spec.mounts):
            from yacr.linux.rootfs import mount_sources

            cfg.mount_fds = mount_sources(spec.mounts, bundle, detach_binds)
        if log.debug_enabled:
            log.debug("nsexec container setup: forking init into the container's namespaces "
                      "(new: %s; joined: %s)%s",
                      " ".join(sorted(plan.types - set(plan.join))) or "none",
                      " ".join(sorted(plan.join)) or "none",
                      ", through a helper that enters the user namespace first"
                      if userns else "")
        if userns:
            pid, helper = _fork_with_userns(plan, spec, cfg, chan, st.dirfd, place)
        else:
            pid = _fork_into_namespaces(plan, spec.linux.time_offsets, cfg, chan, st.dirfd,
                                        place)
        init_chan.close()
        posix.close(fifo_fd)
        for fd in cfg.mount_fds.values():
            posix.close(fd)
        if csock is not None:
            csock.close()
        plan.close()

        info = proc_stat(pid)
        st.pid = pid
        st.start_time = info[1] if info else 0
        if spec.hooks.get("prestart") or spec.hooks.get("createRuntime"):
            from yacr.hooks import run_hooks

            chan.recv(protocol.CREATE_HOOKS)
            # The environment exists (lifecycle step 2 is over): the spec calls that created.
            hs = _hook_state(st, "created")

            def record(hook: int) -> None:
                # Were we killed now, the hook would die with us, but not what it started:
                # delete --force ends its process group.
                info = proc_stat(hook)
                st.extra["hookGroup"] = [hook, info[1] if info else 0]
                st.save()

            run_hooks("prestart", spec.hooks.get("prestart", []), hs, record)
            run_hooks("createRuntime", spec.hooks.get("createRuntime", []), hs, record)
            log.debug("hooks run: prestart and createRuntime")
            st.extra.pop("hookGroup", None)
            chan.send(protocol.HOOKS_DONE)
        pty_master = receive_fds(chan, protocol.READY, filt, st, "creating")
        st.phase = "created"
        st.save()
        log.debug("state saved: container %s created, init pid %d", cid, pid)
        if opts.pid_file:
            write_pid_file(opts.pid_file, pid)
        chan.send(protocol.COMMIT)
        chan.recv(protocol.COMMITTED)
        chan.close()
        if helper:
            # init no longer needs its parent: let it go; init becomes our child (we are a
            # subreaper), and the caller's when we exit.
            _end_helper(helper)
    except BaseException:
        if helper:
            _end_helper(helper)
        plan.close()
        if pty_master >= 0:
            posix.close(pty_master)
        _undo_create(ctx, st, pid, made)
        raise
    return Created(st, pid, pty_master)


def _systemd_placer(ctx: Context, cid: str, unit: tuple[str, str], paths: dict[str, str],
                    res: Any, spec: Any, chan: protocol.Channel) -> Callable[[int], None]:
    """What create does right after forking the container's first process, with
    --systemd-cgroup: systemd's transient scope around it (with the limits systemd knows),
    the limits written to the delegated cgroup, then the go-ahead."""
    from yacr import cgroups, protocol
    from yacr.cgroups import devices, systemd

    rules = devices.build(res.devices or [], {d.path for d in spec.linux.devices})
    props = systemd.resource_properties(res, rules)

    def place(pid: int) -> None:
        systemd.start_scope(unit[0], unit[1], pid, props, cid)
        cgroups.apply_resources(paths, res, spec, ctx.log)
        ctx.log.debug("systemd scope %s started in %s; limits applied", unit[1], unit[0])
        chan.send(protocol.CGROUP_READY)

    return place


def _make_cgroups(ctx: Context, st: State, paths: dict[str, str],
                  made: list[str]) -> dict[str, str]:
    """Create the cgroups; a user without the right to (rootless, no delegation) runs the
    container without them, warned."""
    from yacr import cgroups

    try:
        cgroups.create(paths, made)
    except YacrError as e:
        if posix.geteuid() == 0:
            raise
        ctx.log.warn(f"{e}; running without cgroups (they are not delegated to this user)")
        for path in reversed(made):
            try:
                posix.rmdir(path)
            except OSError:
                pass
        st.cgroups = {}
        st.extra["cgroupsMade"] = []
        st.save()
        return {}
    return paths


def _check_cgroup_usable(ctx: Context, paths: dict[str, str], made: list[str]) -> None:
    """A cgroup that existed before the container: a frozen one would stop init at its
    first step (and create with it), so it is refused, as runc does; one with processes in
    it is shared with something else, which runc allows with a warning."""
    from yacr import cgroups

    if not paths or set(made) >= set(paths.values()):
        return  # every leaf is new: nothing in it, and frozen only through a parent
    if cgroups.frozen_now(paths):
        raise YacrError("container's cgroup unexpectedly frozen (thaw it, or choose "
                        "another linux.cgroupsPath)")
    others = cgroups.pids(paths)
    if others:
        ctx.log.warn(f"container's cgroup is not empty: {len(others)} process(es) already "
                     f"in {sorted(paths.values())[0]}")


def _watch_init(paths: dict[str, str]) -> Callable[[], None]:
    """What the runtime checks while it waits for init: a cgroup frozen under it would
    leave init in the refrigerator and the runtime waiting forever; and no step of init's
    set-up may take longer than INIT_TIMEOUT."""
    import time

    from yacr import cgroups

    deadline = time.monotonic() + INIT_TIMEOUT

    def idle() -> None:
        if paths and cgroups.frozen_now(paths):
            raise YacrError("container's cgroup unexpectedly frozen while the container "
                            "was being created")
        if time.monotonic() > deadline:
            raise YacrError(f"container init did not finish its set-up within "
                            f"{INIT_TIMEOUT} s")
    return idle


def receive_fds(chan: protocol.Channel, done: str, filt: Any, st: State,
                status: str) -> int:
    """Serve the fds a process on its way to execve hands back (create's init, exec's
    child), until `done` arrives (EOF: its end of the socket closed on execve).

    The terminal's master comes back to us; a seccomp notify fd goes straight to the
    listener, and the process waits for SECCOMP_DONE so that no syscall is trapped before
    an agent can answer it. Returns the pty master, or -1.
    """
    from yacr import protocol

    pty_master = -1
    while True:
        msg, fds = chan.recv(done, protocol.PTY_MASTER, protocol.SECCOMP_FD,
                             eof_ok=done == protocol.EOF)
        if msg["type"] == done:
            return pty_master
        if not fds:
            raise protocol.ProtocolError(f"{msg['type']} arrived without its fd")
        if msg["type"] == protocol.PTY_MASTER:
            pty_master = fds[0]
        else:
            _hand_to_listener(filt, fds[0], _hook_state(st, status))
            chan.send(protocol.SECCOMP_DONE)


def _hand_to_listener(filt: Any, fd: int, state: dict[str, Any]) -> None:
    from yacr.linux.seccomp import send_to_listener

    try:
        send_to_listener(filt.listener_path, fd, state, filt.listener_metadata)
    finally:
        posix.close(fd)


def _fork_into_namespaces(plan: Any, offsets: dict[str, tuple[int, int]], cfg: Any,
                          chan: protocol.Channel, lock_fd: int,
                          place: Callable[[int], None] | None = None) -> int:
    """Fork init into its pid and time namespaces, which only a parent can choose for a
    child; place(pid), if given, puts init in its cgroup (see _systemd_placer)."""
    from yacr import init
    from yacr.linux import sys as S

    restore: list[tuple[int, int]] = []
    try:
        for kind, flag, procname in (("pid", S.CLONE_NEWPID, "pid"),
                                     ("time", S.CLONE_NEWTIME, "time")):
            if kind in plan.join or plan.unshare & flag:
                own = posix.open(f"/proc/self/ns/{procname}_for_children",
                                 posix.O_RDONLY | posix.O_CLOEXEC)
                restore.append((own, flag))
                if kind in plan.join:
                    S.setns(plan.join[kind], flag)
                else:
                    S.unshare(flag)
                    if kind == "time" and offsets:
                        _write_time_offsets(offsets)
        pid, born = _fork_child(cfg)
        if pid == 0:
            # The state lock is the runtime's: init must not keep it alive after create,
            # nor hold the runtime's own namespaces in the container.
            posix.close(lock_fd)
            chan.close()
            for fd, _flag in restore:
                posix.close(fd)
            cfg.born_in_cgroup2 = born
            init.run(cfg)
    finally:
        for fd, flag in restore:
            try:
                S.setns(fd, flag)
            finally:
                posix.close(fd)
    if place is not None:
        try:
            place(pid)
        except BaseException:
            _end_helper(pid)
            raise
    return pid


def _fork_child(cfg: Any) -> tuple[int, bool]:
    """Fork the container's first process, born in its cgroup2 cgroup where there is one
    and the runtime does not place it itself (systemd's scope exists only around it)."""
    from yacr import cgroups

    if cfg.cgroup_by_runtime:
        return posix.fork(), False
    return cgroups.fork_in(cfg.cgroup_paths)


def _fork_with_userns(plan: Any, spec: Any, cfg: Any, chan: protocol.Channel,
                      lock_fd: int, place: Callable[[int], None] | None = None
                      ) -> tuple[int, int]:
    """Fork init inside a user namespace: returns (init pid, helper pid).

    The user namespace must exist before every other namespace, so that it owns them
    (proc, for one, can only be mounted by a capable owner of the pid namespace). Only a
    child can enter one, so a helper child joins the cgroups (while it is still host
    root), enters the user namespace, waits for us to write its id maps, enters the pid
    and time namespaces and forks init. The helper stays until commit: init's parent-
    death signal is on it, and its own on us, so a killed runtime still takes init along.
    """
    from yacr import init, protocol
    from yacr.linux import sys as S

    S.prctl(S.PR_SET_CHILD_SUBREAPER, 1)
    helper, born = _fork_child(cfg)
    if helper == 0:
        posix.close(lock_fd)
        chan.close()
        cfg.born_in_cgroup2 = born
        init.run_userns_helper(cfg)
    try:
        if place is not None:
            place(helper)  # init, its child, inherits the cgroup
        chan.recv(protocol.USERNS_READY)
        if "user" not in plan.join:
            from yacr.linux import userns

            userns.write_maps(helper, spec.linux.uid_mappings, spec.linux.gid_mappings)
        chan.send(protocol.MAPS_DONE)
        msg, _ = chan.recv(protocol.INIT_PID)
        return int(msg["pid"]), helper
    except BaseException:
        _end_helper(helper)
        raise


def _end_helper(pid: int) -> None:
    try:
        posix.kill(pid, 9)
        posix.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _write_time_offsets(offsets: dict[str, tuple[int, int]]) -> None:
    lines = "".join(f"{clock} {secs} {ns}\n" for clock, (secs, ns) in offsets.items())
    try:
        with open("/proc/self/timens_offsets", "w") as f:
            f.write(lines)
    except OSError as e:
        raise YacrError(f"linux.timeOffsets: {e.strerror}") from None


def _undo_create(ctx: Context, st: State, pid: int, made: list[str]) -> None:
    """Leave nothing behind after a failed create: process, cgroups, state directory."""
    from yacr import cgroups

    if pid > 0:
        try:
            posix.kill(pid, 9)
        except ProcessLookupError:
            pass
        if st.cgroups and cgroups.frozen_now(st.cgroups):
            cgroups.freeze(st.cgroups, False)  # a frozen init never dies of its SIGKILL
        try:
            posix.waitpid(pid, 0)
        except ChildProcessError:
            pass
    try:
        if st.cgroups:
            own = _own_cgroups(st)
            if own:
                cgroups.signal_all(own, 9)
            _stop_unit(st, undoing=True)
            cgroups.destroy(st.cgroups, made)
    except YacrError as e:
        ctx.log.warn(str(e))
    _unmount_host_rootfs(st)
    ctx.store.remove(st)


def _unmount_host_rootfs(st: State) -> None:
    """A container without a mount namespace left its mounts under the rootfs on the host."""
    path = st.extra.get("hostRootfs")
    if not path:
        return
    from yacr.linux import sys as S  # its ctypes set-up costs ~1 ms: only when needed

    try:
        S.umount2(path, S.MNT_DETACH)
    except OSError:
        pass  # not mounted: create failed before the rootfs bind


def start(ctx: Context, cid: str) -> None:
    st = ctx.store.load(cid)
    status = st.status()
    if status != "created":
        raise StateError(f"cannot start a container that is {status}"
                         if status != "stopped" else "cannot start a container that has stopped")
    _check_startable(st)
    _release(st)
    ctx.log.debug("start released: init (pid %d) of %s runs its process", st.pid, cid)
    _poststart(ctx, st)


def _poststart(ctx: Context, st: State) -> None:
    """poststart hooks run once the user's program runs; runtime-spec 1.2: a failing one is
    a warning, and the rest of the hooks and the lifecycle go on."""
    if st.hooks.get("poststart"):
        from yacr.hooks import run_hook_dicts

        _wait_for_exec(st)
        run_hook_dicts("poststart", st.hooks["poststart"], _hook_state(st, "running"),
                       warn=ctx.log.warn)
        ctx.log.debug("hooks run: poststart")


def _wait_for_exec(st: State, timeout: float = 5.0) -> None:
    """Until init has replaced itself with the container's program (its executable is no
    longer this interpreter), or has died."""
    import time

    try:
        me = posix.readlink("/proc/self/exe")
    except OSError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # the new executable is in place before its arguments are (mid-execve)
            if posix.readlink(f"/proc/{st.pid}/exe") != me and \
                    fs.read_file(f"/proc/{st.pid}/cmdline", 1):
                return
        except OSError:
            return  # gone, or a zombie
        if not st.init_alive():
            return
        time.sleep(0.0005)


def _check_startable(st: State) -> None:
    if st.extra.get("noProcess"):
        raise StateError("cannot start a container without a process (config.json has no "
                         "process)")


def _release(st: State) -> None:
    fifo = fs.join(st.path, EXEC_FIFO)
    try:
        fd = posix.open(fifo, posix.O_WRONLY | posix.O_NONBLOCK | posix.O_CLOEXEC)
    except OSError:
        # ENXIO: nobody holds the FIFO for reading any more, so init is gone.
        raise StateError("cannot start a container that has stopped") from None
    try:
        posix.write(fd, b"0")
    finally:
        posix.close(fd)
    posix.unlink(fifo)


def parse_signal(text: str, allow_zero: bool = False) -> int:
    """A signal by number, name (KILL, SIGKILL) or real-time offset (RTMIN+3, SIGRTMAX-1);
    with allow_zero, 0 too (kill's "is it alive?")."""
    t = text.strip().upper()
    if t.isdigit():
        n = int(t)
        if 0 < n < _signal.NSIG or (n == 0 and allow_zero):
            return n
        raise YacrError(f"invalid signal {text!r}")
    if not t.startswith("SIG"):
        t = "SIG" + t
    for base_name, sign in (("SIGRTMIN", 1), ("SIGRTMAX", -1)):
        if t.startswith(base_name):
            base = getattr(_signal, base_name)
            rest = t[len(base_name):]
            if not rest:
                return base
            if rest[0] in "+-" and rest[1:].isdigit() and (rest[0] == "+") == (sign > 0):
                n = base + sign * int(rest[1:])
                if _signal.SIGRTMIN <= n <= _signal.SIGRTMAX:
                    return n
            raise YacrError(f"invalid signal {text!r}")
    n = getattr(_signal, t, None)
    if isinstance(n, int) and not t.startswith("SIG_"):
        return n
    raise YacrError(f"invalid signal {text!r}")


def _pidfd_for(st: State) -> int | None:
    """A pidfd for init only if the pid still names the process we started."""
    if st.pid <= 0:
        return None
    try:
        fd = posix.pidfd_open(st.pid)
    except OSError:
        return None
    if not st.init_alive():
        posix.close(fd)
        return None
    return fd


def _kill_init(st: State, sig: int) -> bool:
    fd = _pidfd_for(st)
    if fd is None:
        return False
    try:
        _signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        posix.close(fd)


def kill(ctx: Context, cid: str, sig: int | str, all_procs: bool = False) -> None:
    """Signal init (or with all_procs every process of the container's cgroup). Signal 0
    sends nothing: it succeeds when the container is alive, as kill(2) does. A signal
    given as text is read once the container is found (an unknown id is the error then,
    as with runc)."""
    from yacr import cgroups

    st = ctx.store.load(cid, lock=False)
    if isinstance(sig, str):
        sig = parse_signal(sig, allow_zero=True)
    status = st.status()
    ctx.log.debug("kill %s (%s, init pid %d): signal %d to %s", cid, status, st.pid, sig,
                  "every process" if all_procs else "init")
    if all_procs:
        if status == "stopped" and not cgroups.pids(st.cgroups):
            return
        if st.cgroups:
            cgroups.signal_all(st.cgroups, sig)
        else:
            _kill_init(st, sig)
        if sig == 9 and status == "paused":
            cgroups.freeze(st.cgroups, False)
        return
    if status not in ("created", "running", "paused") or not _kill_init(st, sig):
        raise StateError(_not_running(cid, st.status() if status != "creating" else status))
    if sig == 9 and status == "paused":
        cgroups.freeze(st.cgroups, False)


def _not_running(cid: str, status: str) -> str:
    """kill's error. containerd matches "container not running" (a process that already
    finished), so the words stay; the rest says what to do."""
    if status == "creating":
        return (f"container not running: container {cid} is still being created (or its "
                f"create was interrupted: remove it with yacr delete --force {cid})")
    return (f"container not running: container {cid} has stopped, there is nothing to "
            f"signal; remove it with yacr delete {cid}")


def delete(ctx: Context, cid: str, force: bool = False) -> None:
    try:
        st = ctx.store.load(cid)
    except NotFoundError:
        if force:
            return
        raise
    status = st.status()
    if not force:
        if status in ("running", "paused"):
            raise StateError(f"cannot delete container {cid} that is not stopped: {status}")
        if status == "creating":
            raise StateError(f"cannot delete container {cid} while it is being created")
    destroy(ctx, st, run_poststop=st.phase != "creating")


def destroy(ctx: Context, st: State, run_poststop: bool = True, reaped: bool = False) -> None:
    """Kill what is left, remove the cgroups and the state, then run poststop hooks.

    `reaped`: the caller already waited for init (run in the foreground), so there is no
    process to signal first; any straggler is still killed when its cgroup will not go.
    """
    from yacr import cgroups

    _end_hook_group(st)
    if not reaped:
        fd = _pidfd_for(st)
        init_gone = fd is None and st.pid > 0  # (no pid: a create killed before it knew)
        if fd is not None:
            import select

            try:
                _signal.pidfd_send_signal(fd, 9)
            except ProcessLookupError:
                pass
            if st.cgroups:
                cgroups.freeze(st.cgroups, False)
            p = select.poll()
            p.register(fd, select.POLLIN)
            init_gone = bool(p.poll(5000))
            posix.close(fd)
        own = _own_cgroups(st)
        # In a pid namespace of its own, init's exit took every other process of the
        # container with it (the kernel ends them before init's exit completes): there is
        # nothing to look for (a read of cgroup.procs per hierarchy, 0.2 ms on v1 hosts).
        # Anything else still in a cgroup is killed when that cgroup will not go.
        if own and not (st.own_pidns and init_gone) and cgroups.pids(own):
            cgroups.signal_all(own, 9)
    if st.cgroups:
        _stop_unit(st)
        made = st.extra.get("cgroupsMade", [])
        cgroups.destroy(st.cgroups, made)
        # A cgroup that existed before the container goes too once it is empty, as under
        # runc (a failed create leaves it: it may be someone else's, frozen or shared)
        for leaf in set(st.cgroups.values()) - set(made):
            try:
                posix.rmdir(leaf)
            except OSError:
                pass  # still in use, or gone
    _unmount_host_rootfs(st)
    ctx.store.remove(st)
    ctx.log.debug("deleted %s: processes ended, cgroups and state removed", st.id)
    if run_poststop and st.hooks.get("poststop"):
        from yacr.hooks import run_hook_dicts

        run_hook_dicts("poststop", st.hooks["poststop"], _hook_state(st, "stopped", 0),
                       warn=ctx.log.warn)
        ctx.log.debug("hooks run: poststop")


def _stop_unit(st: State, undoing: bool = False) -> None:
    """With --systemd-cgroup, the container's scope goes (and nothing of it stays listed
    in systemd) before its cgroup directory is removed."""
    unit = st.extra.get("systemdUnit")
    if unit:
        from yacr.cgroups import systemd

        systemd.stop_scope(unit, undoing)


def _own_cgroups(st: State) -> dict[str, str]:
    """The container's cgroups that it made itself: every process in them is the
    container's, to be killed with it. A cgroup that existed before (shared with another
    container, or frozen and refused) is left to whoever else is in it."""
    made = set(st.extra.get("cgroupsMade", []))
    return {k: p for k, p in st.cgroups.items() if p in made}


def _end_hook_group(st: State) -> None:
    """What a hook of a killed create left running (its process group), unless the pid
    names another process by now."""
    group = st.extra.get("hookGroup")
    if not group:
        return
    pid, start = group
    info = proc_stat(pid)
    if info is not None and info[1] != start:
        return
    try:
        posix.killpg(pid, 9)
    except (ProcessLookupError, PermissionError):
        pass


def state_of(ctx: Context, cid: str) -> dict[str, Any]:
    st = ctx.store.load(cid, lock=False)
    return st.oci_state()


def list_states(ctx: Context) -> list[dict[str, Any]]:
    out = []
    for cid in ctx.store.list_ids():
        try:
            st = ctx.store.load(cid, lock=False)
        except YacrError:
            continue
        out.append(st.oci_state())
    return out


def run(ctx: Context, cid: str, bundle: str, opts: CreateOptions, detach: bool = False,
        keep: bool = False) -> int:
    """create + start, and unless detached, wait for the container and delete it."""
    created = create(ctx, cid, bundle, opts, detach=detach)
    st = created.state
    if not detach:
        from yacr.waiter import forward_signals

        forward_signals(created.pid, created.pty_master)
    try:
        _check_startable(st)
        _release(st)
        ctx.log.debug("start released: init (pid %d) of %s runs its process", created.pid, cid)
        _poststart(ctx, st)
    except BaseException:
        _kill_init(st, 9)
        _reap(created.pid)
        destroy(ctx, st)
        raise
    if detach:
        return 0
    from yacr.waiter import wait_foreground

    # Let go of the container's lock while it runs: pause, update, exec and friends from
    # other invocations take it, and must not wait for the container to exit.
    posix.close(st.dirfd)
    st.dirfd = -1
    code = wait_foreground(created.pid, created.pty_master)
    ctx.log.debug("container %s exited with status %d", cid, code)
    if not keep:
        try:
            again = ctx.store.load(cid)
        except NotFoundError:
            return code  # someone ran delete --force meanwhile
        if again.created == st.created:  # not a new container that took the id since
            destroy(ctx, again, reaped=True)
    return code


def _reap(pid: int) -> None:
    try:
        posix.waitpid(pid, 0)
    except ChildProcessError:
        pass


def pause(ctx: Context, cid: str, frozen: bool) -> None:
    from yacr import cgroups

    st = ctx.store.load(cid)
    status = st.status()
    if frozen and status != "running":
        raise StateError(f"cannot pause a container that is {status}: container not running")
    if not frozen and status != "paused":
        raise StateError(f"cannot resume a container that is {status}: container not paused")
    if not cgroups.freeze(st.cgroups, frozen):
        raise YacrError("this host has no cgroup freezer, so containers cannot be paused")


def ps_table(pids: list[int], ps_args: list[str]) -> None:
    """runc's table: ps(1) output filtered to the container's processes."""
    import subprocess
    import sys

    try:
        out = subprocess.run(["ps"] + (ps_args or ["-ef"]), capture_output=True, check=True,
                             text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise YacrError(f"ps: {e}") from None
    lines = out.splitlines()
    if not lines:
        return
    header = lines[0]
    cols = header.split()
    if "PID" not in cols:
        raise YacrError("ps: the output has no PID column")
    idx = cols.index("PID")
    wanted = set(pids)
    sys.stdout.write(header + "\n")
    for line in lines[1:]:
        fields = line.split()
        try:
            if int(fields[idx]) in wanted:
                sys.stdout.write(line + "\n")
        except (IndexError, ValueError):
            continue
