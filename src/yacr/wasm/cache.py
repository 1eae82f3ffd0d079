"""The AOT cache: compiled (serialized) modules, so `create` deserializes instead of compiling.

Deserializing a hello takes ~0.4 ms against ~35-50 ms to compile it. But a
serialized module is machine code that wasmtime maps executable after checking
only its version and configuration, never its integrity: loading a tampered
entry would run an attacker's code as the container's init. So:

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
"""

from __future__ import annotations

import _blake2
import _sha256
import posix

from yacr import fs
from yacr.wasm.capi import Engine, EngineError, library_version

TYPE_CHECKING = False
if TYPE_CHECKING:
    from yacr.log import Log
    from yacr.wasm.capi import Module

DEFAULT_DIR = "/var/cache/yacr/wasm"
DIR_ENV = "YACR_WASM_CACHE"
MAGIC = b"YACRAOT1"
MAC_SIZE = 32
_KEY_FILE = ".key"


def cache_dir() -> str:
    env = posix.environ.get(DIR_ENV.encode())
    return env.decode() if env else DEFAULT_DIR


def cpu_id() -> str:
    """The CPU's feature flags, hashed: code compiled for one CPU may use instructions
    another lacks (wasmtime detects the host's features when it compiles)."""
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
    """What a lookup did, for logs, tests and `yacr wasm compile`."""

    __slots__ = ("module", "status", "path", "detail")

    def __init__(self, module: Module, status: str, path: str | None, detail: str = "") -> None:
        self.module = module
        self.status = status  # hit | miss | recompiled | uncached
        self.path = path
        self.detail = detail


class Cache:
    __slots__ = ("dir", "engine", "log", "_secret", "_engine_id")

    def __init__(self, engine: Engine, directory: str | None = None,
                 log: Log | None = None) -> None:
        self.dir = directory or cache_dir()
        self.engine = engine
        self.log = log
        self._secret: bytes | None = None
        self._engine_id: str | None = None

    # --- keys and trust --------------------------------------------------------------
    def ident(self, wasm_sha: str) -> str:
        if self._engine_id is None:
            self._engine_id = (f"wasmtime={library_version(self.engine.lib.path)};"
                               f"{self.engine.settings.key()};cpu={cpu_id()}")
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

    def _mac(self, ident: str, payload: bytes) -> bytes:
        h = _blake2.blake2b(key=self.secret(), digest_size=MAC_SIZE)
        h.update(ident.encode() + b"\0")
        h.update(payload)
        return h.digest()

    # --- lookups ---------------------------------------------------------------------
    def read_entry(self, ident: str, suffix: str = ".cwasm") -> tuple[bytes | None, str]:
        """(payload, "") for a verified entry; (None, why) for a missing or bad one."""
        path = self.entry_path(ident, suffix)
        try:
            fd = posix.open(path, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
        except FileNotFoundError:
            return None, ""
        except OSError as e:
            return None, f"cannot open: {e.strerror}"
        try:
            st = posix.fstat(fd)
            if st.st_uid != 0 or st.st_mode & 0o022 or (st.st_mode & 0o170000) != 0o100000:
                return None, "not a regular file owned and writable by root only"
            chunks = []
            while True:
                b = posix.read(fd, 1 << 20)
                if not b:
                    break
                chunks.append(b)
        finally:
            posix.close(fd)
        data = b"".join(chunks)
        head = len(MAGIC) + MAC_SIZE
        if len(data) < head or data[:len(MAGIC)] != MAGIC:
            return None, "bad header"
        payload = data[head:]
        if data[len(MAGIC):head] != self._mac(ident, payload):
            return None, "integrity check failed (corrupt or tampered)"
        return payload, ""

    def write_entry(self, ident: str, payload: bytes, suffix: str = ".cwasm") -> str:
        path = self.entry_path(ident, suffix)
        tmp = f"{path}.{posix.getpid()}.tmp"
        fd = posix.open(tmp, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_CLOEXEC |
                        posix.O_NOFOLLOW, 0o600)
        try:
            data = MAGIC + self._mac(ident, payload) + payload
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
        """The compiled module for these bytes: from the cache when a verified entry
        exists, else compiled now and stored."""
        why = self.usable()
        if why is not None:
            if self.log is not None:
                self.log.debug(f"wasm cache not used: {why}")
            return Result(self.engine.compile(wasm, what), "uncached", None, why)
        ident = self.ident(module_sha256(wasm))
        path = self.entry_path(ident)
        bad = ""
        if not force:
            payload, bad = self.read_entry(ident)
            if payload is not None:
                try:
                    return Result(self.engine.deserialize(payload), "hit", path)
                except EngineError as e:
                    bad = str(e)
            if bad and self.log is not None:
                self.log.warn(f"wasm cache: entry {path} rejected ({bad}); recompiling")
        module = self.engine.compile(wasm, what)
        try:
            self.write_entry(ident, module.serialize())
        except OSError as e:
            if self.log is not None:
                self.log.warn(f"wasm cache: cannot write {path}: {e.strerror}")
            return Result(module, "uncached", None, e.strerror or "")
        return Result(module, "recompiled" if bad else "miss", path, bad)
