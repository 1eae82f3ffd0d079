"""Process attributes applied just before execve: rlimits, user, groups, LSM labels, exe lookup.

The error texts for a missing or non-executable program keep runc's wording,
because podman maps "executable file not found in $PATH" and "no such file or
directory" to exit code 127 and "permission denied" to 126.
"""

from __future__ import annotations

import posix
import stat

from yacr import fs
from yacr.errors import YacrError
from yacr.linux import sys as S

TYPE_CHECKING = False
if TYPE_CHECKING:
    from yacr.spec import Process

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# Linux's RLIMIT_* numbers (the same on every architecture yacr runs on). The `resource`
# module would do, but it is a shared library to load on every start; ctypes is loaded anyway.
RLIMIT_NUMBERS = {"RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
                  "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
                  "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10,
                  "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
                  "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15}


def set_rlimits(proc: Process) -> None:
    for r in proc.rlimits:
        try:
            S.setrlimit(RLIMIT_NUMBERS[r.type], r.soft, r.hard)
        except OSError as e:
            raise YacrError(f"process.rlimits: cannot set {r.type} to soft={r.soft} "
                            f"hard={r.hard}: {e.strerror}") from None


def env_map(env: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in env:
        k, sep, v = e.partition("=")
        if sep:
            out[k] = v
    return out


def lookup_executable(arg0: str, env: dict[str, str], cwd: str) -> str:
    """Find the program the way execvp would, inside the (already entered) container root."""
    if "/" in arg0:
        path = arg0 if arg0.startswith("/") else fs.join(cwd, arg0)
        try:
            st = posix.stat(path)
        except OSError as e:
            raise YacrError(f'exec: "{arg0}": stat {arg0}: {_lower(e.strerror)}') from None
        if stat.S_ISDIR(st.st_mode):
            raise YacrError(f'exec: "{arg0}": is a directory')
        if not posix.access(path, posix.X_OK):
            raise YacrError(f'exec: "{arg0}": permission denied')
        return path
    for d in env.get("PATH", DEFAULT_PATH).split(":"):
        d = d or "."
        cand = fs.join(d if d.startswith("/") else fs.join(cwd, d), arg0)
        try:
            st = posix.stat(cand)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and posix.access(cand, posix.X_OK):
            return cand
    raise YacrError(f'exec: "{arg0}": executable file not found in $PATH')


def _lower(s: str | None) -> str:
    return (s or "error").lower()


class UserInfo:
    """The user the process runs as, with what the container's /etc/passwd and /etc/group add."""

    __slots__ = ("uid", "gid", "groups", "home")

    def __init__(self, uid: int, gid: int, additional: list[int] | None) -> None:
        self.uid = uid
        self.gid = gid
        self.home = "/"
        name = None
        try:
            for line in fs.read_file("/etc/passwd").decode("utf-8", "replace").splitlines():
                parts = line.split(":")
                if len(parts) >= 6 and parts[2] == str(uid):
                    name, self.home = parts[0], parts[5] or "/"
                    break
        except OSError:
            pass
        groups: list[int] = []
        if name is not None:
            try:
                for line in fs.read_file("/etc/group").decode("utf-8", "replace").splitlines():
                    parts = line.split(":")
                    if len(parts) >= 4 and name in parts[3].split(","):
                        try:
                            groups.append(int(parts[2]))
                        except ValueError:
                            pass
            except OSError:
                pass
        for g in additional or ():
            if g not in groups:
                groups.append(g)
        self.groups = groups

    def switch(self) -> None:
        """setgroups, then gid, then uid: the order that still has the privilege for each."""
        try:
            posix.setgroups(self.groups)
        except OSError as e:
            raise YacrError(f"cannot set supplementary groups {self.groups}: {e.strerror}") \
                from None
        try:
            posix.setresgid(self.gid, self.gid, self.gid)
            posix.setresuid(self.uid, self.uid, self.uid)
        except OSError as e:
            raise YacrError(f"cannot switch to uid {self.uid} gid {self.gid}: {e.strerror}") \
                from None


PROC_SUPER_MAGIC = 0x9FA0


def write_procfs(path: str, data: str) -> None:
    """One write to a procfs file, through a handle checked (fstatfs) to be on procfs: a
    mount over /proc or a masked file would otherwise swallow what the runtime sets there,
    silently (CVE-2019-16884). Raises OSError."""
    fd = posix.open(path, posix.O_WRONLY | posix.O_CLOEXEC)
    try:
        if S.fstatfs_type(fd) != PROC_SUPER_MAGIC:
            raise OSError(18, f"{path} is not on procfs")  # EXDEV, with our own words
        posix.write(fd, data.encode())
    finally:
        posix.close(fd)


def set_oom_score_adj(value: int) -> None:
    try:
        write_procfs("/proc/self/oom_score_adj", str(value))
    except OSError as e:
        raise YacrError(f"process.oomScoreAdj: cannot set {value}: {e.strerror}") from None


def apparmor_enabled() -> bool:
    try:
        return fs.read_file("/sys/module/apparmor/parameters/enabled").strip() == b"Y"
    except OSError:
        return False


def selinux_enabled() -> bool:
    return fs.exists("/sys/fs/selinux/enforce")


def check_lsm(proc: Process) -> None:
    """Fail early, in create, when a label is requested and the host has no such LSM."""
    if proc.apparmor_profile and not apparmor_enabled():
        raise YacrError(f"process.apparmorProfile: {proc.apparmor_profile!r} requested but "
                        "AppArmor is not enabled on this host")
    if proc.selinux_label and not selinux_enabled():
        raise YacrError(f"process.selinuxLabel: {proc.selinux_label!r} requested but SELinux "
                        "is not enabled on this host")


def apply_lsm_on_exec(proc: Process) -> None:
    """Labels take effect at execve; written through /proc/thread-self of the container."""
    if proc.apparmor_profile:
        _write_attr("apparmor/exec", f"exec {proc.apparmor_profile}", "process.apparmorProfile",
                    "exec")
    if proc.selinux_label:
        _write_attr("exec", proc.selinux_label, "process.selinuxLabel", None)


def _write_attr(name: str, value: str, field: str, fallback: str | None) -> None:
    path = f"/proc/thread-self/attr/{name}"
    if fallback and not fs.exists(path):
        path = f"/proc/thread-self/attr/{fallback}"
    try:
        write_procfs(path, value)
    except OSError as e:
        raise YacrError(f"{field}: cannot apply {value!r}: {e.strerror}") from None


def set_io_priority(cls: int, prio: int) -> None:
    try:
        S.ioprio_set(cls, prio)
    except OSError as e:
        raise YacrError(f"process.ioPriority: {e.strerror}") from None


def set_personality(persona: int) -> None:
    try:
        S.personality(persona)
    except OSError as e:
        raise YacrError(f"linux.personality: {e.strerror}") from None
