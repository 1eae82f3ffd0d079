"""Container state on disk: one directory per container under --root.

The directory is created with mkdir, which is atomic, so a duplicate id is
refused without touching the existing container. Every operation holds an
flock on the directory, so concurrent creates, starts and deletes of one id
are serialized. state.json is written to a temporary name and renamed over.
The status is never trusted from disk: it is derived from the init process
(alive, same start time, not a zombie), the exec FIFO and the freezer.
"""

from __future__ import annotations

import fcntl
import posix

from yacr import OCI_VERSION, fs, jsonio
from yacr.errors import NotFoundError, UsageError, YacrError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

STATE_FILE = "state.json"
CONFIG_COPY = "config.json"
EXEC_FIFO = "exec.fifo"
MAX_ID_BYTES = 1024
# state.json holds the config's annotations and hooks: it may be as large as config.json
# (8 MiB); read whole, or a container would look broken and delete --force would leak it
MAX_STATE_BYTES = 64 * 1024 * 1024
_ID_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_ID_REST = _ID_FIRST | frozenset("_.+-")


def validate_id(cid: str) -> None:
    """Refuse an id before anything is touched: ^[A-Za-z0-9][A-Za-z0-9_.+-]*$, <= 1024 bytes."""
    if not cid:
        raise UsageError("container id must not be empty")
    if len(cid.encode("utf-8", "surrogateescape")) > MAX_ID_BYTES:
        raise UsageError(f"invalid container id: longer than {MAX_ID_BYTES} bytes")
    if cid[0] not in _ID_FIRST or not all(c in _ID_REST for c in cid):
        shown = cid if len(cid) <= 64 else cid[:64] + "..."
        raise UsageError(f"invalid container id {shown!r}: ids must match "
                         "^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def dir_name(cid: str) -> str:
    """The directory (and cgroup) name of an id; ids too long for a file name are hashed."""
    if len(cid) <= 200:
        return cid
    import hashlib

    # "~" cannot start a valid id, so a hashed name never collides with a real one.
    return "~" + hashlib.sha256(cid.encode()).hexdigest()


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a pid, or None if it does not exist."""
    try:
        data = fs.read_file(f"/proc/{pid}/stat")
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2:].split()
    return rest[0].decode(), int(rest[19])


class State:
    """What a container's directory records; `status()` derives the live status."""

    __slots__ = ("id", "pid", "start_time", "bundle", "rootfs", "created", "owner",
                 "annotations", "phase", "cgroups", "own_pidns", "hooks", "creator",
                 "handler", "dirfd", "path", "extra")

    def __init__(self, cid: str, path: str) -> None:
        self.id = cid
        self.path = path
        self.pid = 0
        self.start_time = 0
        self.bundle = ""
        self.rootfs = ""
        self.created = ""
        self.owner = ""
        self.annotations: dict[str, str] = {}
        self.phase = "creating"
        self.cgroups: dict[str, str] = {}
        self.own_pidns = True
        self.hooks: dict[str, list[dict[str, Any]]] = {}
        self.creator: tuple[int, int] = (0, 0)
        self.handler = "native"
        self.dirfd = -1
        self.extra: dict[str, Any] = {}

    # --- persistence -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"ociVersion": OCI_VERSION, "id": self.id, "pid": self.pid,
                "startTime": self.start_time, "bundle": self.bundle, "rootfs": self.rootfs,
                "created": self.created, "owner": self.owner, "annotations": self.annotations,
                "phase": self.phase, "cgroups": self.cgroups, "ownPidns": self.own_pidns,
                "hooks": self.hooks, "creator": list(self.creator), "handler": self.handler,
                "extra": self.extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: str) -> State:
        s = cls(d["id"], path)
        s.pid = d.get("pid", 0)
        s.start_time = d.get("startTime", 0)
        s.bundle = d.get("bundle", "")
        s.rootfs = d.get("rootfs", "")
        s.created = d.get("created", "")
        s.owner = d.get("owner", "")
        s.annotations = d.get("annotations") or {}
        s.phase = d.get("phase", "created")
        s.cgroups = d.get("cgroups") or {}
        s.own_pidns = d.get("ownPidns", True)
        s.hooks = d.get("hooks") or {}
        c = d.get("creator") or (0, 0)
        s.creator = (c[0], c[1])
        s.handler = d.get("handler", "native")
        s.extra = d.get("extra") or {}
        return s

    def save(self) -> None:
        write_atomic(self.path, STATE_FILE, jsonio.dumps(self.to_dict()).encode())

    # --- live status --------------------------------------------------------------------
    def init_alive(self) -> bool:
        if self.pid <= 0:
            return False
        st = proc_stat(self.pid)
        return st is not None and st[1] == self.start_time and st[0] not in "ZX"

    def creator_alive(self) -> bool:
        pid, start = self.creator
        if pid <= 0:
            return False
        st = proc_stat(pid)
        return st is not None and st[1] == start and st[0] not in "ZX"

    def status(self) -> str:
        if self.phase == "creating":
            # A create still under way; if its runtime died, the container is broken: stopped.
            return "creating" if self.creator_alive() else "stopped"
        if not self.init_alive():
            return "stopped"
        if fs.exists(fs.join(self.path, EXEC_FIFO)):
            return "created"
        from yacr.cgroups import is_frozen

        if is_frozen(self.cgroups):
            return "paused"
        return "running"

    def oci_state(self, status: str | None = None) -> dict[str, Any]:
        """The runtime-spec state, in runc's shape (plus rootfs, created, owner)."""
        st = status or self.status()
        return {"ociVersion": OCI_VERSION, "id": self.id,
                "pid": self.pid if st not in ("stopped",) else 0, "status": st,
                "bundle": self.bundle, "rootfs": self.rootfs, "created": self.created,
                "owner": self.owner, "annotations": self.annotations}


def write_atomic(dirpath: str, name: str, data: bytes, mode: int = 0o600) -> None:
    tmp = fs.join(dirpath, f".{name}.{posix.getpid()}.tmp")
    fd = posix.open(tmp, posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC | posix.O_CLOEXEC, mode)
    try:
        posix.write(fd, data)
    finally:
        posix.close(fd)
    posix.rename(tmp, fs.join(dirpath, name))


class Store:
    """The --root directory: finds, creates, locks and removes container directories."""

    __slots__ = ("root",)

    def __init__(self, root: str) -> None:
        self.root = root

    def container_dir(self, cid: str) -> str:
        return fs.join(self.root, dir_name(cid))

    def create(self, cid: str) -> State:
        """Make and lock a new container directory; a duplicate id fails without side effects."""
        validate_id(cid)
        try:
            fs.makedirs(self.root, 0o711)
        except OSError as e:
            raise YacrError(f"cannot create root directory {self.root}: {e.strerror}") from None
        path = self.container_dir(cid)
        try:
            posix.mkdir(path, 0o711)
        except FileExistsError:
            raise YacrError(f"container with id {cid} already exists") from None
        except OSError as e:
            raise YacrError(f"cannot create state directory {path}: {e.strerror}") from None
        st = State(cid, path)
        st.dirfd = _lock_dir(path)
        return st

    def load(self, cid: str, lock: bool = True) -> State:
        """Load a container's state; with lock, hold its flock until the process exits."""
        validate_id(cid)
        path = self.container_dir(cid)
        dirfd = -1
        if lock:
            try:
                dirfd = _lock_dir(path)
            except FileNotFoundError:
                raise NotFoundError(cid) from None
            # A delete that held the lock before us may have removed the directory.
            if posix.fstat(dirfd).st_nlink == 0:
                posix.close(dirfd)
                raise NotFoundError(cid)
        try:
            raw = fs.read_file(fs.join(path, STATE_FILE), MAX_STATE_BYTES)
        except FileNotFoundError:
            if not fs.isdir(path):
                if dirfd >= 0:
                    posix.close(dirfd)
                raise NotFoundError(cid) from None
            # The runtime died before its first state write: an empty, broken container.
            st = State(cid, path)
            st.phase = "creating"
            st.dirfd = dirfd
            return st
        try:
            st = State.from_dict(jsonio.loads(raw), path)
        except (jsonio.JSONError, KeyError, TypeError, IndexError):
            st = State(cid, path)
            st.phase = "creating"
        st.dirfd = dirfd
        return st

    def list_ids(self) -> list[str]:
        try:
            names = posix.listdir(self.root)
        except FileNotFoundError:
            return []
        out = []
        for n in sorted(names):
            if n.startswith("~"):
                try:
                    with open(fs.join(self.root, n, STATE_FILE), "rb") as f:
                        out.append(jsonio.loads(f.read())["id"])
                except (OSError, ValueError, KeyError):
                    continue
            elif not n.startswith("."):
                out.append(n)
        return out

    def remove(self, st: State) -> None:
        """Remove the container directory; the caller holds its lock."""
        try:
            for name in posix.listdir(st.path):
                try:
                    posix.unlink(fs.join(st.path, name))
                except IsADirectoryError:
                    import shutil

                    shutil.rmtree(fs.join(st.path, name), ignore_errors=True)
            posix.rmdir(st.path)
        except FileNotFoundError:
            pass


def _lock_dir(path: str) -> int:
    fd = posix.open(path, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd
