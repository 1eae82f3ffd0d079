"""Build the container's root filesystem inside its new mount namespace.

Every path inside the rootfs is resolved with openat2(RESOLVE_IN_ROOT), so a
symlink planted in the image cannot lead a mount, a device node or a mkdir out
of the rootfs (CVE-2021-30465 and its kin). Mounts then target the resolved
file descriptor through /proc/self/fd, never the path string again.
"""

from __future__ import annotations

import posix
import stat

from yacr import fs
from yacr.errors import YacrError
from yacr.linux import sys as S
from yacr.linux.mounts import PROPAGATION, MountOptions, current_flags
from yacr.linux.process import PROC_SUPER_MAGIC

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

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


_NEW_FILE = posix.O_CREAT | posix.O_EXCL | posix.O_WRONLY | posix.O_CLOEXEC | posix.O_NOFOLLOW
_SUBDIR = posix.O_RDONLY | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC


def fdpath(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


class Rootfs:
    """The rootfs being assembled: its path on the host and a dirfd to resolve within it."""

    __slots__ = ("path", "fd", "log", "host_ns", "sources", "dev_readonly", "own_pidns")

    def __init__(self, path: str, log: Log, host_ns: bool = False,
                 sources: dict[int, int] | None = None) -> None:
        self.path = path
        self.log = log
        self.fd = -1
        self.host_ns = host_ns
        # bind sources the runtime opened on the host, by id() of their Mount: detached
        # idmapped mounts, and in a user namespace every bind source (see mount_sources)
        self.sources = sources or {}
        # a read-only /dev tmpfs is mounted writable, filled, and made read-only at the
        # very end (finish), once devices, /dev/pts and /dev/console are in place
        self.dev_readonly = False
        self.own_pidns = True

    # --- resolution inside the root -------------------------------------------------------
    def open_in(self, path: str, flags: int = posix.O_PATH) -> int:
        """Open path inside the rootfs; symlinks resolve as if the rootfs were /."""
        return open_in_root(self.fd, path, flags)

    def ensure(self, path: str, directory: bool, mode: int = 0o755, _depth: int = 0) -> int:
        """Create path (and missing parents) inside the rootfs and return an O_PATH fd to it.

        A dangling symlink on the way is followed the way the kernel would inside the
        rootfs (absolute targets start at the rootfs), and its target is created there.
        """
        if _depth > 40:
            raise YacrError(f"{path}: too many levels of symbolic links in the rootfs")
        rel = fs.normpath("/" + path).lstrip("/")
        if not rel:
            return posix.dup(self.fd)
        try:
            return self.open_in(rel)
        except FileNotFoundError:
            pass
        parent, _, name = rel.rpartition("/")
        pfd = self.ensure(parent, True, _depth=_depth + 1)
        try:
            try:
                st = posix.stat(name, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None and stat.S_ISLNK(st.st_mode):
                target = posix.readlink(name, dir_fd=pfd)
                joined = target if target.startswith("/") else f"{parent}/{target}"
                return self.ensure(joined, directory, mode, _depth + 1)
            # pfd is an O_PATH fd to a resolved directory: *at calls create inside it.
            if directory:
                try:
                    posix.mkdir(name, mode, dir_fd=pfd)
                except FileExistsError:
                    pass
            else:
                try:
                    fd = posix.open(name, _NEW_FILE, 0o644, dir_fd=pfd)
                    posix.close(fd)
                except FileExistsError:
                    pass
            return self.open_in(rel)
        finally:
            posix.close(pfd)

    # --- the whole preparation -----------------------------------------------------------
    def prepare(self, spec: Spec, bundle: str, layout: Layout | None,
                cgroup_paths: dict[str, str], cgroupns: bool) -> None:
        """Everything before pivot_root: propagation, the rootfs bind, mounts, devices."""
        prop = spec.linux.rootfs_propagation
        self.own_pidns = any(n.type == "pid" and not n.path for n in spec.linux.namespaces)
        if self.host_ns:
            # No mount namespace of its own (as runc allows): never touch the host's root
            # propagation; keep what is mounted under the rootfs from spreading to peers.
            S.mount(self.path, self.path, None, S.MS_BIND | S.MS_REC)
            S.mount(None, self.path, None, S.MS_PRIVATE | S.MS_REC)
        else:
            # By default the host's mounts reach the container but not the other way round.
            # An unbindable root could not be bind-mounted onto itself: pivot() applies it.
            first = S.MS_SLAVE | S.MS_REC if prop in ("", "unbindable", "runbindable") \
                else PROPAGATION[prop]
            S.mount(None, "/", None, first)
            if prop in ("shared", "rshared"):
                # pivot_root refuses a new root whose parent mount is shared; after the
                # default rslave above no mount is shared any more.
                _make_parent_private(self.path)
            S.mount(self.path, self.path, None, S.MS_BIND | S.MS_REC)
        self.fd = posix.open(self.path, posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
        for i, m in enumerate(spec.mounts):
            try:
                self.mount(m, bundle, layout, cgroup_paths, cgroupns)
            except YacrError:
                raise
            except OSError as e:
                raise YacrError(f"mounts[{i}] ({m.type or 'bind'} on {m.destination}): "
                                f"{e.strerror}") from e
        if _host_cgroups_exposed(spec.mounts):
            self._readonly_cgroups()
        if not any(m.destination == "/dev" and MountOptions(m.options).is_bind
                   for m in spec.mounts):
            self.create_devices(spec.linux.devices,
                                has_pts=any(m.destination == "/dev/pts" for m in spec.mounts))

    def mount(self, m: Mount, bundle: str, layout: Layout | None,
              cgroup_paths: dict[str, str], cgroupns: bool) -> None:
        opts = MountOptions(m.options)
        kind = m.type or ("bind" if opts.is_bind else "")
        dest = fs.normpath(m.destination)
        if kind == "bind" or opts.is_bind:
            self._bind(m, opts, dest, bundle)
            return
        _check_proc_destination(kind, dest)
        if kind == "cgroup":
            self._cgroup(dest, opts, layout, cgroup_paths, cgroupns)
            return
        fd = self._mountpoint(dest, True, kind)
        under = -1
        flags = opts.flags & ~S.MS_BIND
        if dest == "/dev" and flags & S.MS_RDONLY:
            flags &= ~S.MS_RDONLY
            self.dev_readonly = True
        try:
            _check_not_symlinked_proc(fd, kind, dest)
            if "tmpcopyup" in opts.extra and kind == "tmpfs":
                # An fd opened before the mount keeps reaching the directory underneath.
                under = self.open_in(dest, posix.O_RDONLY | posix.O_DIRECTORY)
            S.mount(m.source or kind, fdpath(fd), kind, flags, opts.data or None)
        finally:
            posix.close(fd)
        if under >= 0:
            top = self.open_in(dest, posix.O_RDONLY | posix.O_DIRECTORY)
            try:
                copy_tree(under, top)
            finally:
                posix.close(top)
                posix.close(under)
        self._after(dest, opts)

    def _bind(self, m: Mount, opts: MountOptions, dest: str, bundle: str) -> None:
        """A bind mount: from the source's path, or from the detached copy of it the runtime
        made on the host (idmapped mounts, and every bind of a container in a user
        namespace: see mount_sources), which is put in place with move_mount."""
        src = m.source if m.source.startswith("/") else fs.join(bundle, m.source)
        tree = self.sources.pop(id(m), -1)
        try:
            if tree >= 0:
                handle = tree
            elif m.idmapped:
                raise YacrError(f"{dest}: the idmapped mount was not prepared")
            else:
                try:
                    handle = posix.open(src, posix.O_PATH | posix.O_CLOEXEC)
                except OSError as e:
                    raise YacrError(f"bind mount source {src} for {dest}: {e.strerror}") \
                        from None
            try:
                self._bind_handle(opts, dest, handle, tree >= 0)
            finally:
                if handle != tree:
                    posix.close(handle)
        finally:
            if tree >= 0:
                posix.close(tree)

    def _bind_handle(self, opts: MountOptions, dest: str, handle: int, detached: bool) -> None:
        kind = "bind"
        if dest == "/proc" and S.fstatfs_type(handle) == PROC_SUPER_MAGIC:
            if self.own_pidns:
                raise YacrError("/proc: a bind of a procfs shows the processes of another pid "
                                "namespace; with a pid namespace of its own, mount proc")
            kind = "proc"  # the host's procfs, bound (rootless with the host's pid namespace)
        _check_proc_destination(kind, dest)
        fd = self._mountpoint(dest, stat.S_ISDIR(posix.fstat(handle).st_mode), kind)
        try:
            if detached:
                S.move_mount(handle, fd)
            else:
                S.mount(fdpath(handle), fdpath(fd), None, S.MS_BIND | (opts.flags & S.MS_REC))
        finally:
            posix.close(fd)
        extra = opts.flags & ~(S.MS_BIND | S.MS_REC | S.MS_REMOUNT)
        if extra:
            # Keep what the source mount already had: those flags may be locked.
            fd = self.open_in(dest)
            try:
                keep = current_flags(fdpath(fd)) & (S.MS_NOSUID | S.MS_NODEV | S.MS_NOEXEC)
            finally:
                posix.close(fd)
            self._remount_bind(dest, extra | keep)
        self._after(dest, opts)

    def _mountpoint(self, dest: str, directory: bool, kind: str) -> int:
        """ensure() for a mount destination, with the checks that need the rootfs: proc and
        sysfs, and whatever goes on /proc or /sys, never through a symlink of the image;
        nothing but proc on the /proc that dest really resolves to (CVE-2019-16884 and its
        symlinked return, CVE-2023-27561)."""
        if kind in ("proc", "sysfs") or dest in ("/proc", "/sys"):
            self._refuse_symlinks(dest, kind)
        fd = self.ensure(dest, directory)
        try:
            _check_proc_destination(kind, self._in_root(fd))
        except BaseException:
            posix.close(fd)
            raise
        return fd

    def _refuse_symlinks(self, dest: str, kind: str) -> None:
        cur = posix.dup(self.fd)
        try:
            for comp in [c for c in dest.split("/") if c]:
                try:
                    nxt = posix.open(comp, posix.O_PATH | posix.O_NOFOLLOW | posix.O_CLOEXEC,
                                     dir_fd=cur)
                except FileNotFoundError:
                    return  # ensure() makes the rest, as directories
                posix.close(cur)
                cur = nxt
                if stat.S_ISLNK(posix.fstat(cur).st_mode):
                    # runc's words first: scripts match them
                    raise YacrError(f"{dest}: {kind or 'a filesystem'} must be mounted on "
                                    "ordinary directory; this is a symlink in the rootfs, "
                                    "which is never followed")
        finally:
            posix.close(cur)

    def _in_root(self, fd: int) -> str:
        """The path fd is open on, as seen from the rootfs (from the kernel's names of both)."""
        root = posix.readlink(fdpath(self.fd)).rstrip("/")
        path = posix.readlink(fdpath(fd))
        if path == root:
            return "/"
        return path[len(root):] if path.startswith(root + "/") else path

    def _readonly_cgroups(self) -> None:
        """A bind of the host's /sys brings its cgroup mounts along, and "ro" only covers the
        top mount: make every mount at /sys/fs/cgroup read-only, recursively, so that the
        container cannot write the host's cgroups (CVE-2023-25809)."""
        try:
            cg = self.open_in("/sys/fs/cgroup")
        except OSError:
            return
        try:
            up = self.open_in("/sys/fs")
            try:
                if posix.fstat(cg).st_dev == posix.fstat(up).st_dev:
                    return  # not a mount of its own: no cgroup mount came along
            finally:
                posix.close(up)
            S.mount_setattr(cg, "", S.AT_EMPTY_PATH | S.AT_RECURSIVE, S.MOUNT_ATTR_RDONLY, 0)
        finally:
            posix.close(cg)

    def _remount_bind(self, dest: str, flags: int) -> None:
        """Flags on a bind mount need a remount of the new mount, reached by a fresh fd
        (an fd opened before the mount still names the directory underneath)."""
        fd = self.open_in(dest)
        try:
            S.mount(None, fdpath(fd), None, S.MS_BIND | S.MS_REMOUNT | flags)
        finally:
            posix.close(fd)

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
            posix.close(fd)

    def _cgroup(self, dest: str, opts: MountOptions, layout: Layout | None,
                cgroup_paths: dict[str, str], cgroupns: bool) -> None:
        """Mount the container's own cgroup hierarchies at dest, in the host's layout."""
        ro = opts.flags & S.MS_RDONLY
        base = (opts.flags & ~(S.MS_RDONLY | S.MS_BIND | S.MS_REC)) | S.MS_NOSUID | S.MS_NODEV \
            | S.MS_NOEXEC
        if layout is None or not layout.hierarchies:
            return
        if layout.mode == "v2":
            fd = self._mountpoint(dest, True, "cgroup")
            try:
                if cgroupns:
                    S.mount("cgroup2", fdpath(fd), "cgroup2", base | ro)
                else:
                    S.mount(cgroup_paths[""], fdpath(fd), None, S.MS_BIND | S.MS_REC)
                    self._remount_bind(dest, base | ro)
            finally:
                posix.close(fd)
            return
        fd = self._mountpoint(dest, True, "cgroup")
        try:
            S.mount("tmpfs", fdpath(fd), "tmpfs", base, "mode=755")
        finally:
            posix.close(fd)
        for h in layout.hierarchies:
            if h.key not in cgroup_paths:
                continue  # a hierarchy the container does not join (see cgroups.resolve_paths)
            name = fs.basename(h.mountpoint)
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
                posix.close(sub)
            # Joint mounts (cpu,cpuacct) are reached by each name, as on the host.
            if "," in h.key and not h.key.startswith("name="):
                for alias in h.key.split(","):
                    if alias != name:
                        lfd = self.open_in(dest)
                        try:
                            posix.symlink(name, alias, dir_fd=lfd)
                        except FileExistsError:
                            pass
                        finally:
                            posix.close(lfd)
        if ro:
            fd = self.open_in(dest)
            try:
                S.mount(None, fdpath(fd), None, S.MS_REMOUNT | base | S.MS_RDONLY, "mode=755")
            finally:
                posix.close(fd)

    # --- /dev ----------------------------------------------------------------------------
    def create_devices(self, devices: list[Device], has_pts: bool) -> None:
        dev = self.ensure("/dev", True)
        posix.close(dev)
        wanted: dict[str, tuple[str, int, int, int, int, int]] = {}
        for path, major, minor in DEFAULT_DEVICES:
            wanted[path] = ("c", major, minor, 0o666, 0, 0)
        for d in devices:
            wanted[fs.normpath(d.path)] = (d.type, d.major, d.minor, d.file_mode, d.uid,
                                                d.gid)
        for path, (kind, major, minor, mode, uid, gid) in wanted.items():
            self._mknod(path, kind, major, minor, mode, uid, gid)
        devfd = self.open_in("/dev", posix.O_PATH | posix.O_DIRECTORY)
        try:
            for target, name in DEV_LINKS:
                try:
                    posix.symlink(target, name, dir_fd=devfd)
                except FileExistsError:
                    pass
            if fs.exists("/proc/kcore"):
                try:
                    posix.symlink("/proc/kcore", "core", dir_fd=devfd)
                except FileExistsError:
                    pass
            if has_pts:
                try:
                    posix.unlink("ptmx", dir_fd=devfd)
                except FileNotFoundError:
                    pass
                posix.symlink("pts/ptmx", "ptmx", dir_fd=devfd)
        finally:
            posix.close(devfd)

    def _mknod(self, path: str, kind: str, major: int, minor: int, mode: int,
               uid: int, gid: int) -> None:
        parent, name = fs.split(path)
        pfd = self.ensure(parent, True)
        try:
            try:
                st = posix.stat(name, dir_fd=pfd, follow_symlinks=False)
                # Whatever the image put there (a symlink, a file) is replaced, never followed.
                if stat.S_ISDIR(st.st_mode):
                    raise YacrError(f"linux.devices: {path} is a directory in the rootfs")
                posix.unlink(name, dir_fd=pfd)
            except FileNotFoundError:
                pass
            fmt = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK,
                   "p": stat.S_IFIFO}[kind]
            try:
                posix.mknod(name, fmt | (mode & 0o7777), posix.makedev(major, minor), dir_fd=pfd)
            except PermissionError:
                # In a user namespace mknod is not allowed: bind the host's node instead.
                self._bind_host_device(path, pfd, name)
                return
            except OSError as e:
                raise YacrError(f"cannot create device {path}: {e.strerror}") from None
            posix.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        finally:
            posix.close(pfd)

    def _bind_host_device(self, path: str, pfd: int, name: str) -> None:
        try:
            host = posix.stat(path)
        except OSError:
            raise YacrError(f"linux.devices: cannot create {path} (mknod is not allowed in "
                            "a user namespace) and the host has no such device to bind") \
                from None
        if not (stat.S_ISCHR(host.st_mode) or stat.S_ISBLK(host.st_mode)):
            raise YacrError(f"linux.devices: {path} on the host is not a device node")
        fd = posix.open(name, _NEW_FILE, 0o644, dir_fd=pfd)
        posix.close(fd)
        target = posix.open(name, posix.O_PATH | posix.O_NOFOLLOW | posix.O_CLOEXEC, dir_fd=pfd)
        try:
            S.mount(path, fdpath(target), None, S.MS_BIND)
        finally:
            posix.close(target)

    # --- switching root ------------------------------------------------------------------
    def pivot(self, no_pivot: bool, propagation: str = "") -> None:
        if self.host_ns:
            # In the host's mount namespace the only safe switch is chroot: pivot_root or
            # MS_MOVE would change the host's own root.
            posix.chroot(self.path)
            posix.chdir("/")
            if self.fd >= 0:
                posix.close(self.fd)
                self.fd = -1
            return
        self._switch_root(no_pivot)
        if propagation:
            S.mount(None, "/", None, PROPAGATION[propagation])

    def _switch_root(self, no_pivot: bool) -> None:
        if no_pivot:
            _hide_host_pseudo_filesystems(self.path)
            posix.chdir(self.path)
            S.mount(self.path, "/", None, S.MS_MOVE)
            posix.chroot(".")
            posix.chdir("/")
            return
        old = posix.open("/", posix.O_DIRECTORY | posix.O_RDONLY | posix.O_CLOEXEC)
        new = posix.open(self.path, posix.O_DIRECTORY | posix.O_RDONLY | posix.O_CLOEXEC)
        try:
            posix.fchdir(new)
            # pivot_root(".", ".") stacks the old root under the new one; detach it at once.
            S.pivot_root(".", ".")
            posix.fchdir(old)
            S.mount(None, ".", None, S.MS_SLAVE | S.MS_REC)
            S.umount2(".", S.MNT_DETACH)
            posix.chdir("/")
        finally:
            posix.close(old)
            posix.close(new)
        if self.fd >= 0:
            posix.close(self.fd)
            self.fd = -1


def mount_sources(mounts: list[Mount], bundle: str, all_binds: bool) -> dict[int, int]:
    """Detached copies (open_tree) of bind sources, by id() of their Mount, made on the host
    before init is forked: the idmapped mounts (linux/idmap.py), and with all_binds (a
    container in a user namespace, created by root) every other bind source (runc's
    "mount fds"), since its mapped root may be unable to traverse the directories that
    lead to them. A detached mount can be
    attached in another mount namespace (a plain fd could not be bound from there). init
    inherits them by fork; the caller closes its copies after forking."""
    out: dict[int, int] = {}
    try:
        for i, m in enumerate(mounts):
            if m.idmapped:
                from yacr.linux import idmap

                out[id(m)] = idmap.prepare(m, bundle, f"mounts[{i}]")
            elif all_binds and (m.type == "bind" or MountOptions(m.options).is_bind):
                src = m.source if m.source.startswith("/") else fs.join(bundle, m.source)
                rec = S.AT_RECURSIVE if MountOptions(m.options).flags & S.MS_REC else 0
                try:
                    out[id(m)] = S.open_tree(-100, src, S.OPEN_TREE_CLONE | rec)
                except OSError as e:
                    raise YacrError(f"bind mount source {src} for {m.destination}: "
                                    f"{e.strerror}") from None
    except BaseException:
        for fd in out.values():
            posix.close(fd)
        raise
    return out


def finish(root: Rootfs, readonly: bool) -> None:
    """After pivot_root and the console: the root, and a /dev asked to be read-only, become
    read-only (runc's finalizeRootfs); nothing is created in them after this."""
    if root.dev_readonly:
        remount_readonly("/dev")
    if readonly:
        remount_readonly("/")


def open_in_root(rootfd: int, path: str, flags: int = posix.O_PATH) -> int:
    """openat2(RESOLVE_IN_ROOT), or the same walk done here where the kernel (before 5.6)
    or a sandbox such as valgrind lacks openat2."""
    try:
        return S.openat2(rootfd, path.lstrip("/") or ".", flags, S.RESOLVE_IN_ROOT)
    except OSError as e:
        if e.errno != 38:  # ENOSYS
            raise
    return walk_in_root(rootfd, path, flags)


def walk_in_root(rootfd: int, path: str, flags: int) -> int:
    """Resolve path one component at a time from rootfd, never above it: ".." stops at the
    root, and a symlink's target is resolved again from the root (absolute) or from its
    directory (relative), as RESOLVE_IN_ROOT does."""
    parts = [p for p in path.split("/") if p and p != "."]
    dirs = [posix.dup(rootfd)]
    links = 0
    try:
        while parts:
            comp = parts.pop(0)
            if comp == "..":
                if len(dirs) > 1:
                    posix.close(dirs.pop())
                continue
            fd = posix.open(comp, posix.O_PATH | posix.O_NOFOLLOW | posix.O_CLOEXEC,
                            dir_fd=dirs[-1])
            if stat.S_ISLNK(posix.fstat(fd).st_mode):
                posix.close(fd)
                links += 1
                if links > 40:
                    raise OSError(40, "Too many levels of symbolic links", path)
                target = posix.readlink(comp, dir_fd=dirs[-1])
                if target.startswith("/"):
                    while len(dirs) > 1:
                        posix.close(dirs.pop())
                parts = [p for p in target.split("/") if p and p != "."] + parts
                continue
            if parts and not stat.S_ISDIR(posix.fstat(fd).st_mode):
                posix.close(fd)
                raise OSError(20, "Not a directory", path)
            dirs.append(fd)
        last = dirs[-1]
        if flags & ~posix.O_CLOEXEC == posix.O_PATH:
            return posix.dup(last)
        # Reopen the resolved file with the wanted flags through its fd, not its name.
        return posix.open(fdpath(last), flags | posix.O_CLOEXEC)
    finally:
        for fd in dirs:
            posix.close(fd)


def copy_tree(src: int, dst: int) -> None:
    """Copy a directory's contents between two dirfds, never following symlinks
    (tmpcopyup: the image's files under a fresh tmpfs)."""
    for e in posix.scandir(src):
        st = e.stat(follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            posix.mkdir(e.name, stat.S_IMODE(mode), dir_fd=dst)
            a = posix.open(e.name, _SUBDIR, dir_fd=src)
            b = posix.open(e.name, _SUBDIR, dir_fd=dst)
            try:
                copy_tree(a, b)
            finally:
                posix.close(a)
                posix.close(b)
        elif stat.S_ISLNK(mode):
            posix.symlink(posix.readlink(e.name, dir_fd=src), e.name, dir_fd=dst)
        elif stat.S_ISREG(mode):
            a = posix.open(e.name, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC, dir_fd=src)
            b = posix.open(e.name, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_NOFOLLOW
                        | posix.O_CLOEXEC, stat.S_IMODE(mode), dir_fd=dst)
            try:
                off = 0
                while off < st.st_size:
                    n = posix.sendfile(b, a, off, st.st_size - off)
                    if n <= 0:
                        break
                    off += n
            finally:
                posix.close(a)
                posix.close(b)
        else:
            posix.mknod(e.name, mode, st.st_rdev, dir_fd=dst)
        posix.chown(e.name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)


def _hide_host_pseudo_filesystems(rootfs: str) -> None:
    """Before --no-pivot's MS_MOVE and chroot: unmount the host's whole proc and sysfs
    mounts in this mount namespace, or cover them with a tmpfs where they cannot be
    unmounted.

    chroot leaves the old root's mounts in the namespace, out of sight but not out of
    reach: the kernel lets a process that makes a user, mount and pid namespace mount a
    fresh procfs or sysfs as long as a full, uncovered one is visible in its mount
    namespace, and that fresh one has none of maskedPaths and readonlyPaths. Each mount
    is made a slave first, so that the unmount cannot travel back to the host.
    """
    inside = rootfs.rstrip("/") + "/"
    targets = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            pre, _, post = line.decode("utf-8", "surrogateescape").partition(" - ")
            fields = pre.split(" ")
            fstype = post.split(" ", 1)[0]
            mp = fs.unescape_mountinfo(fields[4])
            if fstype in ("proc", "sysfs") and fields[3] == "/" and \
                    not (mp + "/").startswith(inside):
                targets.append(mp)
    for mp in reversed(targets):  # the deepest (latest) first
        try:
            S.mount(None, mp, None, S.MS_SLAVE | S.MS_REC)
        except FileNotFoundError:
            continue  # went with a mount above it
        try:
            S.umount2(mp, S.MNT_DETACH)
        except OSError as e:
            if e.errno not in (1, 22):  # EPERM, EINVAL: locked or busy, cover it instead
                raise YacrError(f"--no-pivot: cannot unmount the host's {mp}: "
                                f"{e.strerror}") from None
            S.mount("tmpfs", mp, "tmpfs", S.MS_NOSUID | S.MS_NODEV | S.MS_NOEXEC, "size=0")


def _make_parent_private(path: str) -> None:
    """pivot_root refuses a new root whose parent mount is shared: make that mount private."""
    mp = _mountpoint_of(path)
    S.mount(None, mp, None, S.MS_PRIVATE)


def _mountpoint_of(path: str) -> str:
    best = "/"
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            mp = fs.unescape_mountinfo(line.split(b" ", 5)[4].decode("utf-8",
                                                                     "surrogateescape"))
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) > len(best):
                best = mp
    return best


def _host_cgroups_exposed(mounts: list[Mount]) -> bool:
    """Does a bind mount leave the host's /sys/fs/cgroup in the container (the last mount on
    /sys, /sys/fs or /sys/fs/cgroup is a bind; a sysfs or cgroup mount there covers it)?"""
    exposed = False
    for m in mounts:
        if fs.normpath(m.destination) in ("/sys", "/sys/fs", "/sys/fs/cgroup"):
            exposed = m.type == "bind" or MountOptions(m.options).is_bind
    return exposed


def _check_proc_destination(kind: str, dest: str) -> None:
    """proc goes only on /proc, and only lxcfs-style files may be mounted under it."""
    if dest == "/proc" and kind != "proc":
        raise YacrError(f"{dest}: only a proc filesystem may be mounted on /proc, not {kind}")
    if dest.startswith("/proc/") and dest not in PROC_OVERRIDES:
        raise YacrError(f"{dest}: mounting {kind} under /proc is not allowed")


def _check_not_symlinked_proc(fd: int, kind: str, dest: str) -> None:
    if kind in ("proc", "sysfs"):
        st = posix.fstat(fd)
        if not stat.S_ISDIR(st.st_mode):
            raise YacrError(f"{dest}: {kind} mount destination is not a directory")


def remount_readonly(path: str) -> None:
    S.mount(None, path, None, S.MS_BIND | S.MS_REMOUNT | S.MS_RDONLY | current_flags(path))


def mask_paths(paths: list[str]) -> None:
    """Hide paths (after pivot_root): /dev/null over files, a read-only tmpfs over dirs."""
    if not paths:
        return
    null = posix.open("/dev/null", posix.O_PATH | posix.O_NOFOLLOW | posix.O_CLOEXEC)
    try:
        st = posix.fstat(null)
        # The image may make /dev/null a symlink or a file (CVE-2025-31133): use only the
        # real device, through its fd.
        if not stat.S_ISCHR(st.st_mode) or posix.major(st.st_rdev) != 1 or \
                posix.minor(st.st_rdev) != 3:
            raise YacrError("/dev/null in the container is not the null device; cannot mask")
        for fd, target in _existing(paths):
            if stat.S_ISDIR(posix.fstat(fd).st_mode):
                S.mount("tmpfs", target, "tmpfs", S.MS_RDONLY, None)
            else:
                S.mount(_target(null, "/dev/null"), target, None, S.MS_BIND)
    finally:
        posix.close(null)


def readonly_paths(paths: list[str]) -> None:
    for _fd, target in _existing(paths):
        S.mount(target, target, None, S.MS_BIND | S.MS_REC)


def _existing(paths: list[str]) -> Iterator[tuple[int, str]]:
    """(O_PATH fd, its mount target) for each path that exists, the fd open only while
    the caller handles it: masking and read-only binds act on what was opened, never on
    a path the container could swap for a symlink in between; a missing path is fine, as
    the spec says."""
    for p in paths:
        try:
            fd = posix.open(p, posix.O_PATH | posix.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            continue
        try:
            yield fd, _target(fd, p)
        finally:
            posix.close(fd)
        remount_readonly(p)


def _target(fd: int, fallback: str) -> str:
    """The fd's magic link when this mount namespace has a procfs, else the path itself."""
    p = fdpath(fd)
    return p if fs.exists(p) else fallback
