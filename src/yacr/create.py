"""`create` on the runtime side: it forks the already-loaded CLI process into the
container's init (no interpreter re-exec), then drives it through the protocol in
`protocol`.

Until the state is committed, init dies with the runtime (parent-death signal), and
whatever create made (state directory, cgroups) is recorded in state.json before it is
made, so `delete --force` can always undo a create that was killed half-way.
"""

from __future__ import annotations

import posix

from yacr import cgroups, fs
from yacr.container import (
    Context,
    Created,
    CreateOptions,
    _hook_state,
    _own_cgroups,
    _stop_unit,
    _unmount_host_rootfs,
    write_pid_file,
)
from yacr.errors import YacrError
from yacr.log import rfc3339_now
from yacr.state import CONFIG_COPY, EXEC_FIFO, State, dir_name, proc_stat, write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from yacr import protocol


# The longest the runtime waits for one message from a container's init during create
# (init's createContainer hooks included); the cgroup's freezer is checked every second.
INIT_TIMEOUT = 600


def create(ctx: Context, cid: str, bundle: str, opts: CreateOptions,
           detach: bool = True) -> Created:
    from yacr import handlers, init, protocol
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
    from yacr import protocol
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
