"""The container lifecycle on the runtime side: start, kill, delete, state, list, run.

`create` is in yacr.create: every other command of the lifecycle loads this module, and
none of them needs create's code (0.1 ms of their start).
"""

from __future__ import annotations

import _signal
import posix

# yacr.cgroups is imported in the functions that use it: `start`, the command between
# create and the container's program, never does (its code is 0.1 ms of every start).
from yacr import fs
from yacr.errors import NotFoundError, StateError, YacrError
from yacr.state import EXEC_FIFO, State, Store, proc_stat, write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from yacr.log import Log



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
    from yacr.create import create

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
