"""The AOT cache: compiled (serialized) modules, so `create` verifies instead of compiling.

Compiling a hello takes ~35-50 ms; loading it compiled well under 1 ms. But a
serialized module is machine code that wasmtime maps executable after checking
only its version and configuration, never its integrity: loading a tampered
entry would run an attacker's code as the container's process. So:

- an entry is keyed by the module's sha256, the engine's version (and library
  file), yacr's engine settings and the CPU's feature flags: any change of those
  is a miss, never a wrong hit;
- the directory (default /var/cache/yacr/wasm) must be a real directory owned
  by root and writable by nobody else, and so must each entry; otherwise the
  cache is not used;
- each entry carries a keyed BLAKE2b MAC over its key and its bytes, with a
  secret only root can read (`.key`, mode 0600, made on first use). An entry that
  fails the check (bit rot, truncation, a copy from another module or machine,
  a hand edit) is reported, recompiled and replaced, never loaded.

An entry is the compiled module as wasmtime wrote it, then a 40-byte trailer (MAGIC,
MAC), so that the host can map the file itself: its code and its data segments (the
copy-on-write memory image) are then page-cache pages shared by every container of
the module. yacr verifies the entry through an fd and hands the host that very file
(see yacr.wasm.host): never a path, which could meanwhile name another file. Entries
are written once (a temporary file renamed into place), never in place. They are
readable by all (mode 0644: compiled code of a module is no secret, and a container's
process that is not root must reopen the file it is handed); the directory stays 0700.
"""

from __future__ import annotations

import _blake2
import _sha256
import posix

from yacr import fs
from yacr.wasm.engine import EngineError, Settings, find_library, library_version

TYPE_CHECKING = False
if TYPE_CHECKING:
    from yacr.log import Log
    from yacr.wasm.capi import Engine

DEFAULT_DIR = "/var/cache/yacr/wasm"
DIR_ENV = "YACR_WASM_CACHE"
MAGIC = b"YACRAOT2"  # 1: the MAC led the entry; 2: it trails it
MAC_SIZE = 32
TRAILER = len(MAGIC) + MAC_SIZE
WINDOW = 1 << 16  # bytes of an entry read (and MACed) at a time
ENTRY_MODE = 0o644
_KEY_FILE = ".key"


def cache_dir() -> str:
    env = posix.environ.get(DIR_ENV.encode())
    return env.decode() if env else DEFAULT_DIR


def cpu_id() -> str:
    """The CPU's model and feature flags, hashed: code compiled for one CPU may use
    instructions another lacks (wasmtime detects the host's features when it compiles).
    The kernel's CPU modalias lists both in one short line; /proc/cpuinfo (every CPU's
    whole block, ~0.15 ms to generate here) only where there is none."""
    try:
        with open("/sys/devices/system/cpu/modalias", "rb") as f:
            data = f.read(16384)
        if data.startswith(b"cpu:"):
            return _sha256.sha256(posix.uname().machine.encode() + b"|" +
                                  data).hexdigest()[:16]
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo", "rb") as f:
            data = f.read(65536)
    except OSError:
        return "unknown"
    model = flags = b""
    for line in data.split(b"\n"):
        k, _, v = line.partition(b":")
        k = k.strip()
        if k in (b"flags", b"Features") and not flags:
            flags = v.strip()
        elif k in (b"model name", b"CPU part") and not model:
            model = v.strip()
        if flags and model:
            break
    return _sha256.sha256(posix.uname().machine.encode() + b"|" + model + b"|" +
                          flags).hexdigest()[:16]


def module_sha256(wasm: bytes) -> str:
    return _sha256.sha256(wasm).hexdigest()


class Result:
    """What a lookup did, for logs, tests and `yacr wasm compile`; `fd` reads the verified
    compiled module (an entry of the cache, or a sealed memfd when uncached), `size` and
    `ctime` are that file's as verified."""

    __slots__ = ("fd", "size", "ctime", "status", "path", "detail")

    def __init__(self, fd: int, size: int, ctime: tuple[int, int], status: str,
                 path: str | None, detail: str = "") -> None:
        self.fd = fd
        self.size = size
        self.ctime = ctime
        self.status = status  # hit | miss | recompiled | uncached
        self.path = path
        self.detail = detail

    def close(self) -> None:
        if self.fd >= 0:
            posix.close(self.fd)
            self.fd = -1


def sealed_memfd(name: str, data: bytes) -> int:
    """A memfd holding data, sealed against any change (writes, resizing, more seals)."""
    fd = posix.memfd_create(name, posix.MFD_CLOEXEC | posix.MFD_ALLOW_SEALING)
    view = memoryview(data)
    while view:
        view = view[posix.write(fd, view):]
    import fcntl  # only when uncached: a cold path

    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK |
                fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    return fd


class Cache:
    __slots__ = ("dir", "settings", "lib_path", "log", "_engine", "_secret", "_engine_id")

    def __init__(self, engine: Engine | Settings | None = None, directory: str | None = None,
                 log: Log | None = None, lib_path: str | None = None) -> None:
        """engine: the compiler to use on a miss, or only its Settings (the compiler is then
        loaded the first time a module must be compiled)."""
        self.dir = directory or cache_dir()
        self._engine = None if engine is None or isinstance(engine, Settings) else engine
        if self._engine is not None:
            self.settings = self._engine.settings
            self.lib_path = self._engine.lib.path
        else:
            self.settings = engine if isinstance(engine, Settings) else Settings()
            self.lib_path = lib_path or find_library()
        self.log = log
        self._secret: bytes | None = None
        self._engine_id: str | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from yacr.wasm import capi

            self._engine = capi.Engine(self.settings, capi.load(self.lib_path))
        return self._engine

    # --- keys and trust --------------------------------------------------------------
    def ident(self, wasm_sha: str) -> str:
        if self._engine_id is None:
            self._engine_id = (f"wasmtime={library_version(self.lib_path)};"
                               f"{self.settings.key()};cpu={cpu_id()}")
        return f"{wasm_sha};{self._engine_id}"

    def entry_path(self, ident: str, suffix: str = ".cwasm") -> str:
        return fs.join(self.dir, _sha256.sha256(ident.encode()).hexdigest() + suffix)

    def usable(self, create: bool = True) -> str | None:
        """None if the cache directory can be trusted (creating it if asked), else why not."""
        if posix.geteuid() != 0:
            return "only root uses the compiled-module cache"
        try:
            st = posix.lstat(self.dir)
        except FileNotFoundError:
            if not create:
                return "no cache directory"
            try:
                fs.makedirs(fs.dirname(self.dir), 0o755)
                posix.mkdir(self.dir, 0o700)
            except FileExistsError:
                pass
            except OSError as e:
                return f"cannot create {self.dir}: {e.strerror}"
            st = posix.lstat(self.dir)
        if (st.st_mode & 0o170000) != 0o040000:
            return f"{self.dir} is not a directory"
        if st.st_uid != 0 or st.st_mode & 0o022:
            return f"{self.dir} is writable by others than root (owner {st.st_uid}, " \
                   f"mode {st.st_mode & 0o7777:o})"
        return None

    def secret(self) -> bytes:
        if self._secret is None:
            path = fs.join(self.dir, _KEY_FILE)
            try:
                fd = posix.open(path, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
            except FileNotFoundError:
                fd = -1
            if fd < 0:
                key = posix.urandom(32)
                tmp = f"{path}.{posix.getpid()}"
                wfd = posix.open(tmp, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL |
                                 posix.O_CLOEXEC, 0o600)
                try:
                    posix.write(wfd, key)
                finally:
                    posix.close(wfd)
                try:
                    posix.link(tmp, path)  # first writer wins; others read its key
                except FileExistsError:
                    pass
                finally:
                    posix.unlink(tmp)
                fd = posix.open(path, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
            try:
                st = posix.fstat(fd)
                if st.st_uid != 0 or st.st_mode & 0o077:
                    raise EngineError(f"{path}: the cache key must be root's, mode 0600")
                key = posix.read(fd, 64)
            finally:
                posix.close(fd)
            if len(key) != 32:
                raise EngineError(f"{path}: damaged cache key (remove the cache directory)")
            self._secret = key
        return self._secret

    def _mac(self, ident: str) -> _blake2.blake2b:
        """The entry's MAC, bound to its key, before its bytes are fed in: the writer gives
        them at once, the reader a window at a time."""
        h = _blake2.blake2b(key=self.secret(), digest_size=MAC_SIZE)
        h.update(ident.encode() + b"\0")
        return h

    # --- lookups ---------------------------------------------------------------------
    def open_entry(self, ident: str, suffix: str = ".cwasm", payload: bool = False
                   ) -> tuple[int, bytes | None, posix.stat_result | None, str]:
        """(fd, payload or None, stat, "") for a verified entry, the fd still open on it;
        (-1, None, None, why) for a missing (why is "") or bad one.

        The entry is checked as it is read, a window at a time, and its bytes are kept
        only when the caller asks for them: the host maps the file itself, so holding a
        compiled module (and a copy of it) in the runtime would only raise `create`'s
        peak memory by twice the module's size."""
        path = self.entry_path(ident, suffix)
        try:
            fd = posix.open(path, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
        except FileNotFoundError:
            return -1, None, None, ""
        except OSError as e:
            return -1, None, None, f"cannot open: {e.strerror}"
        try:
            st = posix.fstat(fd)
            if st.st_uid != 0 or st.st_mode & 0o022 or (st.st_mode & 0o170000) != 0o100000:
                posix.close(fd)
                return -1, None, None, "not a regular file owned and writable by root only"
            why, data = self._verify(fd, ident, st.st_size, payload)
            if not why and posix.fstat(fd).st_ctime_ns != st.st_ctime_ns:
                why = "changed while it was read"
        except BaseException:
            posix.close(fd)
            raise
        if why:
            posix.close(fd)
            return -1, None, None, why
        return fd, data, st, ""

    def _verify(self, fd: int, ident: str, size: int, keep: bool) -> tuple[str, bytes | None]:
        """("", bytes or None) when the entry's MAC matches its key and bytes; (why, None)
        otherwise. A file that is shorter than its stat said has changed under us."""
        body = size - TRAILER
        if body < 0:
            return "bad trailer", None
        trailer = posix.pread(fd, TRAILER, body)
        if len(trailer) != TRAILER or trailer[:-MAC_SIZE] != MAGIC:
            return "bad trailer", None
        h = self._mac(ident)
        window = memoryview(bytearray(min(body, WINDOW) or 1))
        kept = []
        offset = 0
        while offset < body:
            n = posix.preadv(fd, [window[:min(WINDOW, body - offset)]], offset)
            if n <= 0:
                return "changed while it was read", None
            h.update(window[:n])
            if keep:
                kept.append(bytes(window[:n]))
            offset += n
        if h.digest() != trailer[-MAC_SIZE:]:
            return "integrity check failed (corrupt or tampered)", None
        return "", b"".join(kept) if keep else None

    def read_entry(self, ident: str, suffix: str = ".cwasm") -> tuple[bytes | None, str]:
        """(payload, "") for a verified entry; (None, why) for a missing or bad one."""
        fd, payload, _, why = self.open_entry(ident, suffix, payload=True)
        if fd >= 0:
            posix.close(fd)
        return payload, why

    def write_entry(self, ident: str, payload: bytes, suffix: str = ".cwasm") -> str:
        path = self.entry_path(ident, suffix)
        tmp = f"{path}.{posix.getpid()}.tmp"
        fd = posix.open(tmp, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_CLOEXEC |
                        posix.O_NOFOLLOW, ENTRY_MODE)
        try:
            posix.fchmod(fd, ENTRY_MODE)  # whatever the umask
            mac = self._mac(ident)
            mac.update(payload)
            data = payload + MAGIC + mac.digest()
            view = memoryview(data)
            while view:
                n = posix.write(fd, view)
                view = view[n:]
        except BaseException:
            posix.close(fd)
            posix.unlink(tmp)
            raise
        posix.close(fd)
        posix.rename(tmp, path)
        return path

    def load(self, wasm: bytes, what: str = "module", force: bool = False) -> Result:
        """The compiled module for these bytes, as an fd of verified bytes: a cache entry
        when a verified one exists (or once it is compiled and stored), else a sealed
        memfd of freshly compiled code."""
        why = self.usable()
        if why is not None:
            if self.log is not None:
                self.log.debug(f"wasm cache not used: {why}")
            return self._uncached(self.engine.compile(wasm, what).serialize(), why)
        ident = self.ident(module_sha256(wasm))
        path = self.entry_path(ident)
        bad = ""
        if not force:
            fd, _, st, bad = self.open_entry(ident)
            if fd >= 0 and st is not None:
                return Result(fd, st.st_size, _ctime(st), "hit", path)
            if bad and self.log is not None:
                self.log.warn(f"wasm cache: entry {path} rejected ({bad}); recompiling")
        code = self.engine.compile(wasm, what).serialize()
        try:
            self.write_entry(ident, code)
        except OSError as e:
            if self.log is not None:
                self.log.warn(f"wasm cache: cannot write {path}: {e.strerror}")
            return self._uncached(code, e.strerror or "")
        fd, _, st, why = self.open_entry(ident)
        if fd < 0 or st is None:
            return self._uncached(code, f"cannot read back {path}: {why}")
        return Result(fd, st.st_size, _ctime(st), "recompiled" if bad else "miss", path, bad)

    def _uncached(self, code: bytes, why: str) -> Result:
        fd = sealed_memfd("yacr-wasm-module", code)
        st = posix.fstat(fd)
        return Result(fd, st.st_size, _ctime(st), "uncached", None, why)


def _ctime(st: posix.stat_result) -> tuple[int, int]:
    return st.st_ctime_ns // 1_000_000_000, st.st_ctime_ns % 1_000_000_000
