"""Build the container's root filesystem inside its new mount namespace.

Every path inside the rootfs is resolved with openat2(RESOLVE_IN_ROOT), so a
symlink planted in the image cannot lead a mount, a device node or a mkdir out
of the rootfs (CVE-2021-30465 and its kin). Mounts then target the resolved
file descriptor through /proc/self/fd, never the path string again.
"""

from __future__ import annotations

import os
import stat

from yacr.errors import YacrError
from yacr.linux import sys as S
from yacr.linux.mounts import PROPAGATION, MountOptions, current_flags

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from yacr.cgroups import Layout
    from yacr.log import Log
    from yacr.spec import Device, Mount, Spec

DEFAULT_DEVICES = (
    # path, major, minor
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
)
DEV_LINKS = (("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"),
             ("/proc/self/fd/1", "stdout"), ("/proc/self/fd/2", "stderr"))

# Non-proc mounts under /proc that are allowed (lxcfs-style overrides); anything else
# under /proc could shadow a kernel file the runtime relies on (CVE-2019-16884).
PROC_OVERRIDES = frozenset({"/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat",
                            "/proc/swaps", "/proc/uptime", "/proc/loadavg",
                            "/proc/slabinfo", "/proc/net/dev", "/proc/sys/kernel/ns_last_pid"})


def fdpath(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


class Rootfs:
    """The rootfs being assembled: its path on the host and a dirfd to resolve within it."""

    __slots__ = ("path", "fd", "log")

    def __init__(self, path: str, log: Log) -> None:
        self.path = path
        self.log = log
        self.fd = -1

    # --- resolution inside the root -------------------------------------------------------
    def open_in(self, path: str, flags: int = os.O_PATH) -> int:
        """Open path inside the rootfs; symlinks resolve as if the rootfs were /."""
        return S.openat2(self.fd, path.lstrip("/") or ".", flags, S.RESOLVE_IN_ROOT)

    def ensure(self, path: str, directory: bool, mode: int = 0o755, _depth: int = 0) -> int:
        """Create path (and missing parents) inside the rootfs and return an O_PATH fd to it.

        A dangling symlink on the way is followed the way the kernel would inside the
        rootfs (absolute targets start at the rootfs), and its target is created there.
        """
        if _depth > 40:
            raise YacrError(f"{path}: too many levels of symbolic links in the rootfs")
        rel = os.path.normpath("/" + path).lstrip("/")
        if not rel:
            return os.dup(self.fd)
        try:
            return self.open_in(rel)
        except FileNotFoundError:
            pass
        parent, _, name = rel.rpartition("/")
        pfd = self.ensure(parent, True, _depth=_depth + 1)
        try:
            try:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None and stat.S_ISLNK(st.st_mode):
                target = os.readlink(name, dir_fd=pfd)
                joined = target if target.startswith("/") else f"{parent}/{target}"
                return self.ensure(joined, directory, mode, _depth + 1)
            # pfd is an O_PATH fd to a resolved directory: *at calls create inside it.
            if directory:
                try:
                    os.mkdir(name, mode, dir_fd=pfd)
                except FileExistsError:
                    pass
            else:
                try:
                    fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC
                                 | os.O_NOFOLLOW, 0o644, dir_fd=pfd)
                    os.close(fd)
                except FileExistsError:
                    pass
            return self.open_in(rel)
        finally:
            os.close(pfd)

    # --- the whole preparation -----------------------------------------------------------
    def prepare(self, spec: Spec, bundle: str, layout: Layout | None,
                cgroup_paths: dict[str, str], cgroupns: bool,
                before_cgroup_mount: Callable[[], None] | None = None) -> None:
        """Everything before pivot_root: propagation, the rootfs bind, mounts, devices.

        before_cgroup_mount runs before the first cgroup mount: init must be in its cgroup
        (and cgroup namespace) by then, but need not be for the mounts before it.
        """
        # By default the host's mounts reach the container but not the other way round.
        S.mount(None, "/", None,
                PROPAGATION.get(spec.linux.rootfs_propagation, S.MS_SLAVE | S.MS_REC))
        if spec.linux.rootfs_propagation in ("shared", "rshared"):
            # pivot_root refuses a new root whose parent mount is shared; after the default
            # rslave above no mount is shared any more.
            _make_parent_private(self.path)
        S.mount(self.path, self.path, None, S.MS_BIND | S.MS_REC)
        self.fd = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        for i, m in enumerate(spec.mounts):
            if m.type == "cgroup" and before_cgroup_mount is not None:
                before_cgroup_mount()
            try:
                self.mount(m, bundle, layout, cgroup_paths, cgroupns)
            except YacrError:
                raise
            except OSError as e:
                raise YacrError(f"mounts[{i}] ({m.type or 'bind'} on {m.destination}): "
                                f"{e.strerror}") from e
        if not any(m.destination == "/dev" and MountOptions(m.options).is_bind
                   for m in spec.mounts):
            self.create_devices(spec.linux.devices,
                                has_pts=any(m.destination == "/dev/pts" for m in spec.mounts))

    def mount(self, m: Mount, bundle: str, layout: Layout | None,
              cgroup_paths: dict[str, str], cgroupns: bool) -> None:
        opts = MountOptions(m.options)
        kind = m.type or ("bind" if opts.is_bind else "")
        dest = os.path.normpath(m.destination)
        if kind == "bind" or opts.is_bind:
            self._bind(m, opts, dest, bundle)
            return
        _check_proc_destination(kind, dest)
        if kind == "cgroup":
            self._cgroup(dest, opts, layout, cgroup_paths, cgroupns)
            return
        fd = self.ensure(dest, True)
        under = -1
        try:
            _check_not_symlinked_proc(fd, kind, dest)
            if "tmpcopyup" in opts.extra and kind == "tmpfs":
                # An fd opened before the mount keeps reaching the directory underneath.
                under = self.open_in(dest, os.O_RDONLY | os.O_DIRECTORY)
            S.mount(m.source or kind, fdpath(fd), kind, opts.flags & ~S.MS_BIND,
                    opts.data or None)
        finally:
            os.close(fd)
        if under >= 0:
            top = self.open_in(dest, os.O_RDONLY | os.O_DIRECTORY)
            try:
                copy_tree(under, top)
            finally:
                os.close(top)
                os.close(under)
        self._after(dest, opts)

    def _bind(self, m: Mount, opts: MountOptions, dest: str, bundle: str) -> None:
        src = m.source if m.source.startswith("/") else os.path.join(bundle, m.source)
        try:
            st = os.stat(src)
        except OSError as e:
            raise YacrError(f"bind mount source {src} for {dest}: {e.strerror}") from None
        _check_proc_destination("bind", dest)
        fd = self.ensure(dest, stat.S_ISDIR(st.st_mode))
        try:
            S.mount(src, fdpath(fd), None, S.MS_BIND | (opts.flags & S.MS_REC))
        finally:
            os.close(fd)
        extra = opts.flags & ~(S.MS_BIND | S.MS_REC | S.MS_REMOUNT)
        if extra:
            # Keep what the source mount already had: those flags may be locked.
            fd = self.open_in(dest)
            try:
                keep = current_flags(fdpath(fd)) & (S.MS_NOSUID | S.MS_NODEV | S.MS_NOEXEC)
            finally:
                os.close(fd)
            self._remount_bind(dest, extra | keep)
        self._after(dest, opts)

    def _remount_bind(self, dest: str, flags: int) -> None:
        """Flags on a bind mount need a remount of the new mount, reached by a fresh fd
        (an fd opened before the mount still names the directory underneath)."""
        fd = self.open_in(dest)
        try:
            S.mount(None, fdpath(fd), None, S.MS_BIND | S.MS_REMOUNT | flags)
        finally:
            os.close(fd)

    def _after(self, dest: str, opts: MountOptions) -> None:
        if not opts.propagation and not opts.needs_attr:
            return
        fd = self.open_in(dest)
        try:
            for p in opts.propagation:
                S.mount(None, fdpath(fd), None, p)
            if opts.needs_attr:
                S.mount_setattr(fd, "", S.AT_EMPTY_PATH | S.AT_RECURSIVE,
                                opts.attr_set, opts.attr_clr)
        finally:
            os.close(fd)

    def _cgroup(self, dest: str, opts: MountOptions, layout: Layout | None,
                cgroup_paths: dict[str, str], cgroupns: bool) -> None:
        """Mount the container's own cgroup hierarchies at dest, in the host's layout."""
        ro = opts.flags & S.MS_RDONLY
        base = (opts.flags & ~(S.MS_RDONLY | S.MS_BIND | S.MS_REC)) | S.MS_NOSUID | S.MS_NODEV \
            | S.MS_NOEXEC
        if layout is None or not layout.hierarchies:
            return
        if layout.mode == "v2":
            fd = self.ensure(dest, True)
            try:
                if cgroupns:
                    S.mount("cgroup2", fdpath(fd), "cgroup2", base | ro)
                else:
                    S.mount(cgroup_paths[""], fdpath(fd), None, S.MS_BIND | S.MS_REC)
                    self._remount_bind(dest, base | ro)
            finally:
                os.close(fd)
            return
        fd = self.ensure(dest, True)
        try:
            S.mount("tmpfs", fdpath(fd), "tmpfs", base, "mode=755")
        finally:
            os.close(fd)
        for h in layout.hierarchies:
            if h.key not in cgroup_paths:
                continue  # a hierarchy the container does not join (see cgroups.resolve_paths)
            name = os.path.basename(h.mountpoint)
            sub = self.ensure(f"{dest}/{name}", True)
            try:
                if cgroupns:
                    if h.v2:
                        S.mount("cgroup2", fdpath(sub), "cgroup2", base | ro)
                    else:
                        S.mount("cgroup", fdpath(sub), "cgroup", base | ro, h.key)
                else:
                    S.mount(cgroup_paths[h.key], fdpath(sub), None, S.MS_BIND | S.MS_REC)
                    self._remount_bind(f"{dest}/{name}", base | ro)
            finally:
                os.close(sub)
            # Joint mounts (cpu,cpuacct) are reached by each name, as on the host.
            if "," in h.key and not h.key.startswith("name="):
                for alias in h.key.split(","):
                    if alias != name:
                        lfd = self.open_in(dest)
                        try:
                            os.symlink(name, alias, dir_fd=lfd)
                        except FileExistsError:
                            pass
                        finally:
                            os.close(lfd)
        if ro:
            fd = self.open_in(dest)
            try:
                S.mount(None, fdpath(fd), None, S.MS_REMOUNT | base | S.MS_RDONLY, "mode=755")
            finally:
                os.close(fd)

    # --- /dev ----------------------------------------------------------------------------
    def create_devices(self, devices: list[Device], has_pts: bool) -> None:
        dev = self.ensure("/dev", True)
        os.close(dev)
        wanted: dict[str, tuple[str, int, int, int, int, int]] = {}
        for path, major, minor in DEFAULT_DEVICES:
            wanted[path] = ("c", major, minor, 0o666, 0, 0)
        for d in devices:
            wanted[os.path.normpath(d.path)] = (d.type, d.major, d.minor, d.file_mode, d.uid,
                                                d.gid)
        for path, (kind, major, minor, mode, uid, gid) in wanted.items():
            self._mknod(path, kind, major, minor, mode, uid, gid)
        devfd = self.open_in("/dev", os.O_PATH | os.O_DIRECTORY)
        try:
            for target, name in DEV_LINKS:
                try:
                    os.symlink(target, name, dir_fd=devfd)
                except FileExistsError:
                    pass
            if os.path.exists("/proc/kcore"):
                try:
                    os.symlink("/proc/kcore", "core", dir_fd=devfd)
                except FileExistsError:
                    pass
            if has_pts:
                try:
                    os.unlink("ptmx", dir_fd=devfd)
                except FileNotFoundError:
                    pass
                os.symlink("pts/ptmx", "ptmx", dir_fd=devfd)
        finally:
            os.close(devfd)

    def _mknod(self, path: str, kind: str, major: int, minor: int, mode: int,
               uid: int, gid: int) -> None:
        parent, name = os.path.split(path)
        pfd = self.ensure(parent, True)
        try:
            try:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                # Whatever the image put there (a symlink, a file) is replaced, never followed.
                if stat.S_ISDIR(st.st_mode):
                    raise YacrError(f"linux.devices: {path} is a directory in the rootfs")
                os.unlink(name, dir_fd=pfd)
            except FileNotFoundError:
                pass
            fmt = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK,
                   "p": stat.S_IFIFO}[kind]
            try:
                os.mknod(name, fmt | (mode & 0o7777), os.makedev(major, minor), dir_fd=pfd)
            except OSError as e:
                raise YacrError(f"cannot create device {path}: {e.strerror}") from None
            os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)

    # --- switching root ------------------------------------------------------------------
    def pivot(self, no_pivot: bool, propagation: str = "") -> None:
        self._switch_root(no_pivot)
        if propagation:
            S.mount(None, "/", None, PROPAGATION[propagation])

    def _switch_root(self, no_pivot: bool) -> None:
        if no_pivot:
            os.chdir(self.path)
            S.mount(self.path, "/", None, S.MS_MOVE)
            os.chroot(".")
            os.chdir("/")
            return
        old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        new = os.open(self.path, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fchdir(new)
            # pivot_root(".", ".") stacks the old root under the new one; detach it at once.
            S.pivot_root(".", ".")
            os.fchdir(old)
            S.mount(None, ".", None, S.MS_SLAVE | S.MS_REC)
            S.umount2(".", S.MNT_DETACH)
            os.chdir("/")
        finally:
            os.close(old)
            os.close(new)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def copy_tree(src: int, dst: int) -> None:
    """Copy a directory's contents between two dirfds, never following symlinks
    (tmpcopyup: the image's files under a fresh tmpfs)."""
    for e in os.scandir(src):
        st = e.stat(follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(e.name, stat.S_IMODE(mode), dir_fd=dst)
            a = os.open(e.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                        dir_fd=src)
            b = os.open(e.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                        dir_fd=dst)
            try:
                copy_tree(a, b)
            finally:
                os.close(a)
                os.close(b)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(e.name, dir_fd=src), e.name, dir_fd=dst)
        elif stat.S_ISREG(mode):
            a = os.open(e.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src)
            b = os.open(e.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                        | os.O_CLOEXEC, stat.S_IMODE(mode), dir_fd=dst)
            try:
                off = 0
                while off < st.st_size:
                    n = os.sendfile(b, a, off, st.st_size - off)
                    if n <= 0:
                        break
                    off += n
            finally:
                os.close(a)
                os.close(b)
        else:
            os.mknod(e.name, mode, st.st_rdev, dir_fd=dst)
        os.chown(e.name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)


def _make_parent_private(path: str) -> None:
    """pivot_root refuses a new root whose parent mount is shared: make that mount private."""
    mp = _mountpoint_of(path)
    S.mount(None, mp, None, S.MS_PRIVATE)


def _mountpoint_of(path: str) -> str:
    best = "/"
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            mp = line.split(b" ", 5)[4].decode("utf-8", "surrogateescape")
            mp = mp.replace("\\040", " ")
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) > len(best):
                best = mp
    return best


def _check_proc_destination(kind: str, dest: str) -> None:
    """proc goes only on /proc, and only lxcfs-style files may be mounted under it."""
    if dest == "/proc" and kind != "proc":
        raise YacrError(f"{dest}: only a proc filesystem may be mounted on /proc, not {kind}")
    if dest.startswith("/proc/") and dest not in PROC_OVERRIDES:
        raise YacrError(f"{dest}: mounting {kind} under /proc is not allowed")


def _check_not_symlinked_proc(fd: int, kind: str, dest: str) -> None:
    if kind in ("proc", "sysfs"):
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode):
            raise YacrError(f"{dest}: {kind} mount destination is not a directory")


def remount_readonly(path: str) -> None:
    S.mount(None, path, None, S.MS_BIND | S.MS_REMOUNT | S.MS_RDONLY | current_flags(path))


def mask_paths(paths: list[str]) -> None:
    """Hide paths (after pivot_root): /dev/null over files, a read-only tmpfs over dirs."""
    if not paths:
        return
    null = os.open("/dev/null", os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(null)
        # The image may make /dev/null a symlink or a file (CVE-2025-31133): use only the
        # real device, through its fd.
        if not stat.S_ISCHR(st.st_mode) or os.major(st.st_rdev) != 1 or \
                os.minor(st.st_rdev) != 3:
            raise YacrError("/dev/null in the container is not the null device; cannot mask")
        for p in paths:
            try:
                fd = os.open(p, os.O_PATH | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                target = _target(fd, p)
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    S.mount("tmpfs", target, "tmpfs", S.MS_RDONLY, None)
                else:
                    S.mount(_target(null, "/dev/null"), target, None, S.MS_BIND)
            finally:
                os.close(fd)
    finally:
        os.close(null)


def readonly_paths(paths: list[str]) -> None:
    for p in paths:
        try:
            fd = os.open(p, os.O_PATH | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            continue
        try:
            target = _target(fd, p)
            S.mount(target, target, None, S.MS_BIND | S.MS_REC)
        finally:
            os.close(fd)
        remount_readonly(p)


def _target(fd: int, fallback: str) -> str:
    """The fd's magic link when this mount namespace has a procfs, else the path itself."""
    p = fdpath(fd)
    return p if os.path.exists(p) else fallback
