"""The typed model of config.json (OCI runtime-spec 1.2), with its validator.

config.json is parsed once, here, into plain classes; every other module works
on typed attributes and never on raw dicts. A bad value is reported with its
JSON path (`process.user.uid: expected an integer, got "x"`), so users find it
at once. Unknown fields are kept in `raw` and ignored, as the spec requires.
Plain classes with __slots__ rather than dataclasses: the dataclasses import
alone costs ~30 ms, more than a whole crun container start.
"""

from __future__ import annotations

import posix

from yacr import fs, jsonio
from yacr.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_CONFIG_BYTES = 8 * 1024 * 1024
"""config.json larger than this is refused before it is parsed (documented in the README)."""

_U32 = (1 << 32) - 1
_U64 = (1 << 64) - 1
_I64 = (1 << 63) - 1

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
PROPAGATIONS = ("shared", "slave", "private", "unbindable",
                "rshared", "rslave", "rprivate", "runbindable")
RLIMITS = ("RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE",
           "RLIMIT_LOCKS", "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE",
           "RLIMIT_NPROC", "RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING",
           "RLIMIT_STACK")
# sysctls that config.json has a field for (runc refuses them the same way)
_SYSCTL_FIELDS = {"kernel.hostname": "hostname", "kernel.domainname": "domainname"}
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer",
              "poststart", "poststop")


def _tname(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    return "an object"


def _fail(path: str, msg: str) -> ConfigError:
    return ConfigError(f"{path}: {msg}")


def obj(v: Any, path: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _fail(path, f"expected an object, got {_tname(v)}")
    return v


def string(v: Any, path: str, *, nonempty: bool = False) -> str:
    if not isinstance(v, str):
        raise _fail(path, f"expected a string, got {_tname(v)}")
    if "\0" in v:
        raise _fail(path, "contains a NUL byte")
    if nonempty and not v:
        raise _fail(path, "must not be empty")
    return v


def integer(v: Any, path: str, lo: int = 0, hi: int = _U32) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        else:
            raise _fail(path, f"expected an integer, got {_tname(v)}")
    if v < lo or v > hi:
        raise _fail(path, f"{v} is out of range [{lo}, {hi}]")
    return v


def boolean(v: Any, path: str) -> bool:
    if not isinstance(v, bool):
        raise _fail(path, f"expected a boolean, got {_tname(v)}")
    return v


def objects(v: Any, path: str, make: Any, unique: str = "", what: str = "") -> list[Any]:
    """An array of objects, each built by make(dict, its path); None is an empty array.

    With `unique`, two items with the same value of that attribute are an error naming
    the second one (the kernel or the runtime would silently keep only one of them).
    """
    if v is None:
        return []
    if not isinstance(v, list):
        raise _fail(path, f"expected an array, got {_tname(v)}")
    out = [make(obj(x, f"{path}[{i}]"), f"{path}[{i}]") for i, x in enumerate(v)]
    if unique:
        seen: set[Any] = set()
        for i, item in enumerate(out):
            key = getattr(item, unique)
            if key in seen:
                raise _fail(f"{path}[{i}].{unique}", f"duplicate {what or unique} {key!r}")
            seen.add(key)
    return out


def str_list(v: Any, path: str) -> list[str]:
    if not isinstance(v, list):
        raise _fail(path, f"expected an array of strings, got {_tname(v)}")
    return [string(x, f"{path}[{i}]") for i, x in enumerate(v)]


def abs_path(v: Any, path: str) -> str:
    s = string(v, path, nonempty=True)
    if not s.startswith("/"):
        raise _fail(path, f"{s!r} must be an absolute path")
    return s


def _opt(d: dict[str, Any], key: str) -> Any:
    """A field that is absent or null means "not set" in the spec."""
    return d.get(key)


class User:
    __slots__ = ("uid", "gid", "umask", "additional_gids")

    def __init__(self, d: dict[str, Any], path: str) -> None:
        self.uid = integer(d.get("uid", 0), f"{path}.uid")
        self.gid = integer(d.get("gid", 0), f"{path}.gid")
        um = _opt(d, "umask")
        self.umask = None if um is None else integer(um, f"{path}.umask", 0, 0o7777)
        ag = _opt(d, "additionalGids")
        if ag is None:
            self.additional_gids: list[int] | None = None
        else:
            if not isinstance(ag, list):
                raise _fail(f"{path}.additionalGids", f"expected an array, got {_tname(ag)}")
            self.additional_gids = [integer(g, f"{path}.additionalGids[{i}]")
                                    for i, g in enumerate(ag)]


class Rlimit:
    __slots__ = ("type", "soft", "hard")

    def __init__(self, d: dict[str, Any], path: str) -> None:
        self.type = string(d.get("type"), f"{path}.type")
        if self.type not in RLIMITS:
            raise _fail(f"{path}.type", f"unknown rlimit {self.type!r}")
        self.soft = integer(d.get("soft"), f"{path}.soft", 0, _U64)
        self.hard = integer(d.get("hard"), f"{path}.hard", 0, _U64)
        if self.soft > self.hard:
            raise _fail(path, f"soft limit {self.soft} is above the hard limit {self.hard}")


CAP_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")


class Process:
    """process in config.json, and also the process file of `exec --process`."""

    __slots__ = ("terminal", "console_height", "console_width", "user", "args", "env", "cwd",
                 "capabilities", "rlimits", "no_new_privileges", "apparmor_profile",
                 "oom_score_adj", "selinux_label", "io_priority", "scheduler", "raw")

    def __init__(self, d: dict[str, Any], path: str = "process") -> None:
        self.raw = d
        t = _opt(d, "terminal")
        self.terminal = False if t is None else boolean(t, f"{path}.terminal")
        self.console_height = self.console_width = 0
        cs = _opt(d, "consoleSize")
        if cs is not None:
            cs = obj(cs, f"{path}.consoleSize")
            self.console_height = integer(cs.get("height", 0), f"{path}.consoleSize.height")
            self.console_width = integer(cs.get("width", 0), f"{path}.consoleSize.width")
        u = _opt(d, "user")
        self.user = User(obj(u, f"{path}.user") if u is not None else {}, f"{path}.user")
        a = _opt(d, "args")
        if a is None:
            raise _fail(f"{path}.args", "is required")
        self.args = str_list(a, f"{path}.args")
        if not self.args or not self.args[0]:
            raise _fail(f"{path}.args", "must name a program to run")
        e = _opt(d, "env")
        self.env = [] if e is None else str_list(e, f"{path}.env")
        c = _opt(d, "cwd")
        if c is None:
            raise _fail(f"{path}.cwd", "is required")
        self.cwd = abs_path(c, f"{path}.cwd")
        caps = _opt(d, "capabilities")
        self.capabilities: dict[str, list[str]] | None = None
        if caps is not None:
            caps = obj(caps, f"{path}.capabilities")
            self.capabilities = {}
            for k in CAP_SETS:
                v = _opt(caps, k)
                self.capabilities[k] = [] if v is None else str_list(v, f"{path}.capabilities.{k}")
        self.rlimits: list[Rlimit] = objects(_opt(d, "rlimits"), f"{path}.rlimits", Rlimit,
                                             unique="type", what="rlimit")
        n = _opt(d, "noNewPrivileges")
        self.no_new_privileges = False if n is None else boolean(n, f"{path}.noNewPrivileges")
        ap = _opt(d, "apparmorProfile")
        self.apparmor_profile = "" if ap is None else string(ap, f"{path}.apparmorProfile")
        sl = _opt(d, "selinuxLabel")
        self.selinux_label = "" if sl is None else string(sl, f"{path}.selinuxLabel")
        o = _opt(d, "oomScoreAdj")
        self.oom_score_adj = None if o is None else integer(o, f"{path}.oomScoreAdj", -1000, 1000)
        io = _opt(d, "ioPriority")
        self.io_priority: tuple[int, int] | None = None
        if io is not None:
            io = obj(io, f"{path}.ioPriority")
            cls = string(io.get("class"), f"{path}.ioPriority.class")
            classes = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
            if cls not in classes:
                raise _fail(f"{path}.ioPriority.class", f"unknown class {cls!r}")
            prio = integer(io.get("priority", 0), f"{path}.ioPriority.priority", 0, 7)
            self.io_priority = (classes[cls], prio)
        sc = _opt(d, "scheduler")
        self.scheduler = None if sc is None else Scheduler(obj(sc, f"{path}.scheduler"),
                                                           f"{path}.scheduler")


class Scheduler:
    __slots__ = ("policy", "nice", "priority")
    POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3,
                "SCHED_IDLE": 5}

    def __init__(self, d: dict[str, Any], path: str) -> None:
        pol = string(d.get("policy"), f"{path}.policy")
        if pol not in self.POLICIES:
            raise _fail(f"{path}.policy", f"unsupported policy {pol!r}")
        self.policy = self.POLICIES[pol]
        self.nice = integer(d.get("nice", 0), f"{path}.nice", -20, 19)
        self.priority = integer(d.get("priority", 0), f"{path}.priority", 0, 99)


class Mount:
    __slots__ = ("destination", "type", "source", "options", "uid_mappings", "gid_mappings")

    def __init__(self, d: dict[str, Any], path: str) -> None:
        dest = string(d.get("destination"), f"{path}.destination", nonempty=True)
        # Relative destinations are allowed for old configs and mean relative to "/".
        self.destination = dest if dest.startswith("/") else "/" + dest
        t = _opt(d, "type")
        self.type = "" if t is None else string(t, f"{path}.type")
        s = _opt(d, "source")
        self.source = "" if s is None else string(s, f"{path}.source")
        o = _opt(d, "options")
        self.options = [] if o is None else str_list(o, f"{path}.options")
        self.uid_mappings = id_maps(_opt(d, "uidMappings"), f"{path}.uidMappings")
        self.gid_mappings = id_maps(_opt(d, "gidMappings"), f"{path}.gidMappings")
        if bool(self.uid_mappings) != bool(self.gid_mappings):
            raise _fail(path, "uidMappings and gidMappings go together")
        if self.uid_mappings and not ({"bind", "rbind"} & set(self.options)
                                      or self.type == "bind"):
            raise _fail(path, "idmapped mounts (uidMappings/gidMappings) need a bind mount")

    @property
    def idmapped(self) -> bool:
        return bool(self.uid_mappings)


class IDMap:
    """One line of a uid_map or gid_map: container ids [cid, cid+size) are host ids
    [hid, hid+size)."""

    __slots__ = ("container_id", "host_id", "size")

    def __init__(self, d: dict[str, Any], path: str) -> None:
        self.container_id = integer(d.get("containerID"), f"{path}.containerID")
        self.host_id = integer(d.get("hostID"), f"{path}.hostID")
        self.size = integer(d.get("size"), f"{path}.size", 1, _U32)

    def line(self) -> str:
        return f"{self.container_id} {self.host_id} {self.size}\n"

    def to_host(self, cid: int) -> int | None:
        if self.container_id <= cid < self.container_id + self.size:
            return self.host_id + cid - self.container_id
        return None


def id_maps(v: Any, path: str) -> list[IDMap]:
    """A uidMappings/gidMappings list; overlapping ranges are refused, as the kernel would."""
    maps: list[IDMap] = objects(v, path, IDMap)
    if len(maps) > 340:
        raise _fail(path, "more than 340 ranges (the kernel's limit)")
    for i, a in enumerate(maps):
        for b in maps[:i]:
            if a.container_id < b.container_id + b.size and \
                    b.container_id < a.container_id + a.size:
                raise _fail(f"{path}[{i}]", "container id range overlaps another mapping")
            if a.host_id < b.host_id + b.size and b.host_id < a.host_id + a.size:
                raise _fail(f"{path}[{i}]", "host id range overlaps another mapping")
    return maps


class Hook:
    __slots__ = ("path", "args", "env", "timeout")

    def __init__(self, d: dict[str, Any], path: str) -> None:
        self.path = abs_path(d.get("path"), f"{path}.path")
        a = _opt(d, "args")
        self.args = [self.path] if a is None else str_list(a, f"{path}.args")
        if not self.args:
            self.args = [self.path]
        e = _opt(d, "env")
        # absent: the hook inherits the runtime's environment, as under runc and crun
        self.env = None if e is None else str_list(e, f"{path}.env")
        t = _opt(d, "timeout")
        self.timeout = None if t is None else integer(t, f"{path}.timeout", 1, _U32)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "args": self.args}
        if self.env is not None:
            d["env"] = self.env
        if self.timeout is not None:
            d["timeout"] = self.timeout
        return d


def parse_hooks(v: Any, path: str = "hooks") -> dict[str, list[Hook]]:
    out: dict[str, list[Hook]] = {}
    if v is None:
        return out
    d = obj(v, path)
    for kind in HOOK_KINDS:
        lst = _opt(d, kind)
        if lst is not None:
            out[kind] = objects(lst, f"{path}.{kind}", Hook)
    return out


class Namespace:
    __slots__ = ("type", "path")

    def __init__(self, d: dict[str, Any], path: str) -> None:
        self.type = string(d.get("type"), f"{path}.type")
        if self.type not in NAMESPACE_TYPES:
            raise _fail(f"{path}.type", f"unknown namespace type {self.type!r}")
        p = _opt(d, "path")
        self.path = None if p is None or p == "" else abs_path(p, f"{path}.path")


class Device:
    __slots__ = ("type", "path", "major", "minor", "file_mode", "uid", "gid")

    def __init__(self, d: dict[str, Any], path: str) -> None:
        self.type = string(d.get("type"), f"{path}.type")
        if self.type not in ("c", "b", "u", "p"):
            raise _fail(f"{path}.type", f"unknown device type {self.type!r}")
        # Anywhere in the container, as runc allows (the node is made inside the rootfs,
        # `..` cannot climb out of it); only the root itself cannot become a device.
        self.path = abs_path(d.get("path"), f"{path}.path")
        if not fs.normpath(self.path).strip("/"):
            raise _fail(f"{path}.path", f"{self.path!r} is the container's root directory, "
                        "not a file in it")
        if self.type == "p":
            self.major = self.minor = 0
        else:
            self.major = integer(d.get("major"), f"{path}.major", 0, _I64)
            self.minor = integer(d.get("minor"), f"{path}.minor", 0, _I64)
        fm = _opt(d, "fileMode")
        self.file_mode = 0o666 if fm is None else integer(fm, f"{path}.fileMode", 0, 0o7777)
        u, g = _opt(d, "uid"), _opt(d, "gid")
        self.uid = 0 if u is None else integer(u, f"{path}.uid")
        self.gid = 0 if g is None else integer(g, f"{path}.gid")


class Linux:
    __slots__ = ("namespaces", "devices", "cgroups_path", "resources", "rootfs_propagation",
                 "seccomp", "sysctl", "masked_paths", "readonly_paths", "mount_label",
                 "time_offsets", "uid_mappings", "gid_mappings", "personality", "raw")

    def __init__(self, d: dict[str, Any], path: str = "linux") -> None:
        self.raw = d
        self.namespaces: list[Namespace] = objects(_opt(d, "namespaces"), f"{path}.namespaces",
                                                   Namespace, unique="type",
                                                   what="namespace")
        self.devices: list[Device] = objects(_opt(d, "devices"), f"{path}.devices", Device)
        cp = _opt(d, "cgroupsPath")
        self.cgroups_path = "" if cp is None else string(cp, f"{path}.cgroupsPath")
        r = _opt(d, "resources")
        self.resources: dict[str, Any] = {} if r is None else obj(r, f"{path}.resources")
        rp = _opt(d, "rootfsPropagation")
        self.rootfs_propagation = "" if rp is None else string(rp, f"{path}.rootfsPropagation")
        if self.rootfs_propagation and self.rootfs_propagation not in PROPAGATIONS:
            raise _fail(f"{path}.rootfsPropagation",
                        f"unknown propagation {self.rootfs_propagation!r}")
        sc = _opt(d, "seccomp")
        self.seccomp: dict[str, Any] | None = None if sc is None else obj(sc, f"{path}.seccomp")
        sy = _opt(d, "sysctl")
        self.sysctl: dict[str, str] = {}
        if sy is not None:
            for k, v in obj(sy, f"{path}.sysctl").items():
                self.sysctl[string(k, f"{path}.sysctl", nonempty=True)] = string(
                    v, f"{path}.sysctl.{k}")
                field = _SYSCTL_FIELDS.get(k.replace("/", "."))
                if field:
                    raise _fail(f"{path}.sysctl.{k}", f"not allowed, it conflicts with the "
                                f"{field!r} field of config.json: set the container's "
                                f"{field} there")
        mp = _opt(d, "maskedPaths")
        self.masked_paths = [] if mp is None else [
            abs_path(p, f"{path}.maskedPaths[{i}]")
            for i, p in enumerate(str_list(mp, f"{path}.maskedPaths"))]
        ro = _opt(d, "readonlyPaths")
        self.readonly_paths = [] if ro is None else [
            abs_path(p, f"{path}.readonlyPaths[{i}]")
            for i, p in enumerate(str_list(ro, f"{path}.readonlyPaths"))]
        ml = _opt(d, "mountLabel")
        self.mount_label = "" if ml is None else string(ml, f"{path}.mountLabel")
        self.time_offsets: dict[str, tuple[int, int]] = {}
        to = _opt(d, "timeOffsets")
        if to is not None:
            for clock, off in obj(to, f"{path}.timeOffsets").items():
                if clock not in ("monotonic", "boottime"):
                    raise _fail(f"{path}.timeOffsets", f"unknown clock {clock!r}")
                o = obj(off, f"{path}.timeOffsets.{clock}")
                self.time_offsets[clock] = (
                    integer(o.get("secs", 0), f"{path}.timeOffsets.{clock}.secs", -_I64 - 1, _I64),
                    integer(o.get("nanosecs", 0), f"{path}.timeOffsets.{clock}.nanosecs",
                            0, 999_999_999))
        self.uid_mappings = id_maps(_opt(d, "uidMappings"), f"{path}.uidMappings")
        self.gid_mappings = id_maps(_opt(d, "gidMappings"), f"{path}.gidMappings")
        userns = self.namespace("user")
        if (self.uid_mappings or self.gid_mappings) and (userns is None or userns.path):
            raise _fail(f"{path}.uidMappings" if self.uid_mappings else f"{path}.gidMappings",
                        "mappings need a new user namespace in linux.namespaces")
        if userns is not None and userns.path is None and not (
                self.uid_mappings and self.gid_mappings):
            raise _fail(f"{path}.uidMappings", "a new user namespace needs uidMappings and "
                        "gidMappings")
        pe = _opt(d, "personality")
        self.personality: int | None = None
        if pe is not None:
            pe = obj(pe, f"{path}.personality")
            dom = string(pe.get("domain"), f"{path}.personality.domain")
            if dom not in ("LINUX", "LINUX32"):
                raise _fail(f"{path}.personality.domain", f"unknown domain {dom!r}")
            self.personality = 0 if dom == "LINUX" else 0x0008

    def namespace(self, kind: str) -> Namespace | None:
        for n in self.namespaces:
            if n.type == kind:
                return n
        return None


class Spec:
    __slots__ = ("oci_version", "root_path", "root_readonly", "process", "hostname",
                 "domainname", "mounts", "hooks", "annotations", "linux", "raw", "source")

    def __init__(self, d: Any, bundle: str) -> None:
        d = obj(d, "config.json")
        self.raw = d
        self.source = b""  # the file as read, kept as the container's copy
        self.oci_version = string(d.get("ociVersion"), "ociVersion", nonempty=True)
        root = _opt(d, "root")
        if root is None:
            raise _fail("root", "is required")
        root = obj(root, "root")
        rp = string(root.get("path"), "root.path", nonempty=True)
        self.root_path = fs.normpath(fs.join(bundle, rp))
        ro = _opt(root, "readonly")
        self.root_readonly = False if ro is None else boolean(ro, "root.readonly")
        p = _opt(d, "process")
        self.process = None if p is None else Process(obj(p, "process"))
        h = _opt(d, "hostname")
        self.hostname = None if h is None else string(h, "hostname")
        dn = _opt(d, "domainname")
        self.domainname = None if dn is None else string(dn, "domainname")
        m = _opt(d, "mounts")
        self.mounts: list[Mount] = objects(m, "mounts", Mount)
        self.hooks = parse_hooks(_opt(d, "hooks"))
        a = _opt(d, "annotations")
        self.annotations: dict[str, str] = {}
        if a is not None:
            for k, v in obj(a, "annotations").items():
                if not k:
                    raise _fail("annotations", "keys must not be empty")
                self.annotations[k] = string(v, f"annotations.{k}")
        lx = _opt(d, "linux")
        self.linux = Linux(obj(lx, "linux") if lx is not None else {})


def read_bytes(path: str, what: str) -> bytes:
    """Read a file with a size cap, so a huge or endless file is refused cheaply."""
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except OSError as e:
        raise ConfigError(f"cannot open {what} {path}: {e.strerror}") from None
    try:
        data = posix.read(fd, MAX_CONFIG_BYTES + 1)
        chunks = [data]
        total = len(data)
        while data and total <= MAX_CONFIG_BYTES:
            data = posix.read(fd, MAX_CONFIG_BYTES + 1 - total)
            chunks.append(data)
            total += len(data)
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory") from None
    finally:
        posix.close(fd)
    if total > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what} is larger than {MAX_CONFIG_BYTES} bytes")
    return b"".join(chunks)


def parse_json(data: bytes, what: str) -> Any:
    try:
        return jsonio.loads(data)
    except jsonio.JSONError as e:
        raise ConfigError(f"{what} is not valid JSON: {e}") from None


def read_json_file(path: str, what: str) -> Any:
    return parse_json(read_bytes(path, what), f"{what} {path}")


def load_bundle(bundle: str) -> Spec:
    """Load and validate BUNDLE/config.json; the rootfs must exist as a directory."""
    path = fs.join(bundle, "config.json")
    data = read_bytes(path, "config.json")
    spec = Spec(parse_json(data, path), bundle)
    spec.source = data
    if not fs.isdir(spec.root_path):
        raise ConfigError(f"root.path: rootfs {spec.root_path} does not exist or is not a "
                          "directory")
    return spec
