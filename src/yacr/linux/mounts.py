"""Mount options (config.json `options`) turned into mount(2) flags, data and attributes.

Options split four ways: flags that mount(2) takes, propagation changes made
with a second mount(2), recursive attributes applied with mount_setattr(2)
(the `r*` forms), and everything else, passed to the filesystem as data.
"""

from __future__ import annotations

from yacr.linux import sys as S

# option -> (clear?, flag)
FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, S.MS_SYNCHRONOUS),
    "atime": (True, S.MS_NOATIME),
    "bind": (False, S.MS_BIND),
    "defaults": (False, 0),
    "dev": (True, S.MS_NODEV),
    "diratime": (True, S.MS_NODIRATIME),
    "dirsync": (False, S.MS_DIRSYNC),
    "exec": (True, S.MS_NOEXEC),
    "iversion": (False, S.MS_I_VERSION),
    "lazytime": (False, S.MS_LAZYTIME),
    "loud": (True, S.MS_SILENT),
    "mand": (False, S.MS_MANDLOCK),
    "noatime": (False, S.MS_NOATIME),
    "nodev": (False, S.MS_NODEV),
    "nodiratime": (False, S.MS_NODIRATIME),
    "noexec": (False, S.MS_NOEXEC),
    "noiversion": (True, S.MS_I_VERSION),
    "nolazytime": (True, S.MS_LAZYTIME),
    "nomand": (True, S.MS_MANDLOCK),
    "norelatime": (True, S.MS_RELATIME),
    "nostrictatime": (True, S.MS_STRICTATIME),
    "nosuid": (False, S.MS_NOSUID),
    "nosymfollow": (False, S.MS_NOSYMFOLLOW),
    "rbind": (False, S.MS_BIND | S.MS_REC),
    "relatime": (False, S.MS_RELATIME),
    "remount": (False, S.MS_REMOUNT),
    "ro": (False, S.MS_RDONLY),
    "rw": (True, S.MS_RDONLY),
    "silent": (False, S.MS_SILENT),
    "strictatime": (False, S.MS_STRICTATIME),
    "suid": (True, S.MS_NOSUID),
    "symfollow": (True, S.MS_NOSYMFOLLOW),
    "sync": (False, S.MS_SYNCHRONOUS),
}

PROPAGATION: dict[str, int] = {
    "private": S.MS_PRIVATE,
    "rprivate": S.MS_PRIVATE | S.MS_REC,
    "shared": S.MS_SHARED,
    "rshared": S.MS_SHARED | S.MS_REC,
    "slave": S.MS_SLAVE,
    "rslave": S.MS_SLAVE | S.MS_REC,
    "unbindable": S.MS_UNBINDABLE,
    "runbindable": S.MS_UNBINDABLE | S.MS_REC,
}

# recursive option -> (clear?, MOUNT_ATTR_*)
RECURSIVE: dict[str, tuple[bool, int]] = {
    "rro": (False, S.MOUNT_ATTR_RDONLY),
    "rrw": (True, S.MOUNT_ATTR_RDONLY),
    "rnosuid": (False, S.MOUNT_ATTR_NOSUID),
    "rsuid": (True, S.MOUNT_ATTR_NOSUID),
    "rnodev": (False, S.MOUNT_ATTR_NODEV),
    "rdev": (True, S.MOUNT_ATTR_NODEV),
    "rnoexec": (False, S.MOUNT_ATTR_NOEXEC),
    "rexec": (True, S.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, S.MOUNT_ATTR_NODIRATIME),
    "rdiratime": (True, S.MOUNT_ATTR_NODIRATIME),
    "rnosymfollow": (False, S.MOUNT_ATTR_NOSYMFOLLOW),
    "rsymfollow": (True, S.MOUNT_ATTR_NOSYMFOLLOW),
    # atime modes are one field: setting one means clearing the whole field first
    "rrelatime": (False, S.MOUNT_ATTR_RELATIME),
    "rnoatime": (False, S.MOUNT_ATTR_NOATIME),
    "rstrictatime": (False, S.MOUNT_ATTR_STRICTATIME),
    "ratime": (False, -1),
    "rnorelatime": (False, -1),
    "rnostrictatime": (False, -1),
}

# Options that only yacr interprets, never passed to the kernel.
RUNTIME_ONLY = frozenset({"idmap", "ridmap", "tmpcopyup"})


class MountOptions:
    __slots__ = ("flags", "propagation", "attr_set", "attr_clr", "data", "extra")

    def __init__(self, options: list[str]) -> None:
        self.flags = 0
        self.propagation: list[int] = []
        self.attr_set = 0
        self.attr_clr = 0
        data: list[str] = []
        self.extra: set[str] = set()
        for o in options:
            if o in FLAGS:
                clear, flag = FLAGS[o]
                if clear:
                    self.flags &= ~flag
                else:
                    self.flags |= flag
            elif o in PROPAGATION:
                self.propagation.append(PROPAGATION[o])
            elif o in RECURSIVE:
                clear, attr = RECURSIVE[o]
                if attr == -1:
                    self.attr_clr |= S.MOUNT_ATTR__ATIME
                elif attr in (S.MOUNT_ATTR_RELATIME, S.MOUNT_ATTR_NOATIME,
                              S.MOUNT_ATTR_STRICTATIME):
                    self.attr_clr |= S.MOUNT_ATTR__ATIME
                    self.attr_set |= attr
                elif clear:
                    self.attr_clr |= attr
                    self.attr_set &= ~attr
                else:
                    self.attr_set |= attr
                    self.attr_clr &= ~attr
            elif o in RUNTIME_ONLY:
                self.extra.add(o)
            else:
                data.append(o)
        self.data = ",".join(data)

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & S.MS_BIND)

    @property
    def needs_attr(self) -> bool:
        return bool(self.attr_set or self.attr_clr)


# statvfs f_flag bits (ST_*) mapped to the mount(2) flags a bind remount must keep.
_ST_TO_MS = ((1, S.MS_RDONLY), (2, S.MS_NOSUID), (4, S.MS_NODEV), (8, S.MS_NOEXEC),
             (16, S.MS_SYNCHRONOUS), (64, S.MS_MANDLOCK), (1024, S.MS_NOATIME),
             (2048, S.MS_NODIRATIME), (4096, S.MS_RELATIME), (8192, S.MS_NOSYMFOLLOW))


def current_flags(path: str) -> int:
    """The per-mount flags of the mount at path, to carry over into a bind remount."""
    import posix

    f = posix.statvfs(path).f_flag
    out = 0
    for st, ms in _ST_TO_MS:
        if f & st:
            out |= ms
    return out
