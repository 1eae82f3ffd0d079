"""Idmapped bind mounts (mount uidMappings/gidMappings): a detached mount with an idmap.

Setting an idmap (mount_setattr MOUNT_ATTR_IDMAP) needs privilege over the filesystem's
user namespace, which init lacks inside a user namespace of its own. So the runtime
prepares each idmapped mount before forking init, as a detached mount (open_tree) with
the mapping taken from a throwaway user namespace; init only attaches it (move_mount) at
its place among the other mounts.
"""

from __future__ import annotations

import posix

from yacr.errors import YacrError
from yacr.linux import sys as S

TYPE_CHECKING = False
if TYPE_CHECKING:
    from yacr.spec import IDMap, Mount


def userns_fd(uids: list[IDMap], gids: list[IDMap]) -> int:
    """An fd of a new user namespace with these maps (its only process is gone again)."""
    from yacr.linux.userns import write_maps

    r, w = posix.pipe2(posix.O_CLOEXEC)
    pid = posix.fork()
    if pid == 0:
        try:
            posix.close(r)
            S.unshare(S.CLONE_NEWUSER)
            posix.write(w, b"1")
            posix.read(w, 1)  # blocks: the parent kills us once it holds the namespace
        finally:
            posix._exit(0)
    posix.close(w)
    try:
        if posix.read(r, 1) != b"1":
            raise YacrError("idmapped mount: cannot create a user namespace for the mapping")
        write_maps(pid, uids, gids)
        return posix.open(f"/proc/{pid}/ns/user", posix.O_RDONLY | posix.O_CLOEXEC)
    finally:
        posix.close(r)
        posix.kill(pid, 9)
        posix.waitpid(pid, 0)


def prepare(m: Mount, bundle: str, field: str) -> int:
    """The detached, idmapped copy of the bind mount m's source."""
    from yacr import fs

    src = m.source if m.source.startswith("/") else fs.join(bundle, m.source)
    recursive = "rbind" in m.options or "ridmap" in m.options
    try:
        tree = S.open_tree(-100, src, S.OPEN_TREE_CLONE | (S.AT_RECURSIVE if recursive else 0))
    except OSError as e:
        raise YacrError(f"{field}: cannot open {src}: {e.strerror}") from None
    ns = userns_fd(m.uid_mappings, m.gid_mappings)
    try:
        S.mount_setattr(tree, "", S.AT_EMPTY_PATH | (S.AT_RECURSIVE if recursive else 0),
                        S.MOUNT_ATTR_IDMAP, 0, 0, ns)
    except OSError as e:
        posix.close(tree)
        raise YacrError(f"{field}: cannot idmap {src}: {e.strerror} (the filesystem may not "
                        "support idmapped mounts)") from None
    finally:
        posix.close(ns)
    return tree
