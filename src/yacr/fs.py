"""Paths and small files on `posix` alone.

The modules a container start runs never import `os`: with -S nothing else
imports it, and its import (posixpath, stat, _collections_abc for os.environ)
is ~5 million instructions, a quarter of the interpreter's own start-up. They
call `posix` (the C core of os) directly and use these helpers for the few
os.path functions they need. The semantics are those of os.path for POSIX
paths; only str paths are handled.
"""

from __future__ import annotations

import posix

_S_IFMT = 0o170000
_S_IFDIR = 0o040000


def fsencode(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def fsdecode(path: str | bytes) -> str:
    return path if isinstance(path, str) else path.decode("utf-8", "surrogateescape")


def join(a: str, *parts: str) -> str:
    path = a
    for b in parts:
        if b.startswith("/"):
            path = b
        elif not path or path.endswith("/"):
            path += b
        else:
            path += "/" + b
    return path


def split(path: str) -> tuple[str, str]:
    i = path.rfind("/") + 1
    head, tail = path[:i], path[i:]
    if head and head != "/" * len(head):
        head = head.rstrip("/")
    return head, tail


def dirname(path: str) -> str:
    return split(path)[0]


def basename(path: str) -> str:
    return path[path.rfind("/") + 1:]


def normpath(path: str) -> str:
    if not path:
        return "."
    initial = 1 if path.startswith("/") else 0
    if initial and path.startswith("//") and not path.startswith("///"):
        initial = 2
    out: list[str] = []
    for comp in path.split("/"):
        if comp in ("", "."):
            continue
        if comp != ".." or (not initial and not out) or (out and out[-1] == ".."):
            out.append(comp)
        elif out:
            out.pop()
    result = "/".join(out)
    if initial:
        result = "/" * initial + result
    return result or "."


def abspath(path: str) -> str:
    if not path.startswith("/"):
        path = join(posix.getcwd(), path)
    return normpath(path)


def exists(path: str) -> bool:
    try:
        posix.stat(path)
    except (OSError, ValueError):
        return False
    return True


def isdir(path: str) -> bool:
    try:
        return posix.stat(path).st_mode & _S_IFMT == _S_IFDIR
    except (OSError, ValueError):
        return False


def makedirs(path: str, mode: int = 0o777) -> None:
    """mkdir -p."""
    try:
        posix.mkdir(path, mode)
    except FileExistsError:
        if not isdir(path):
            raise
    except FileNotFoundError:
        parent = dirname(path)
        if not parent or parent == path:
            raise
        makedirs(parent, mode)
        try:
            posix.mkdir(path, mode)
        except FileExistsError:
            pass


def read_file(path: str, limit: int = 1 << 20) -> bytes:
    """A small (kernel) file read with three syscalls: open() would add fstat, an isatty
    ioctl and a seek, on every /proc and cgroup file the runtime touches."""
    fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        chunks = []
        while True:
            b = posix.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
            limit -= len(b)
            if limit <= 0:
                break
        return b"".join(chunks)
    finally:
        posix.close(fd)


def write_file(path: str, data: str | bytes) -> None:
    """One write(2) to a (kernel) file, as /proc and cgroup files expect."""
    fd = posix.open(path, posix.O_WRONLY | posix.O_CLOEXEC)
    try:
        posix.write(fd, data.encode() if isinstance(data, str) else data)
    finally:
        posix.close(fd)


def read_leftovers(fd: int) -> list[bytes]:
    """What a pipe or pty holds right now, without waiting for more.

    The writer has exited, but a daemon it left behind (a hook's) may still hold the
    write end open, so reading until EOF could block forever. A pty master reports EIO
    once its slave is gone: that ends it too.
    """
    posix.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = posix.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return chunks


def unescape_mountinfo(field: str) -> str:
    """A path field of /proc/self/mountinfo: the kernel writes space, tab, newline and
    backslash as octal escapes."""
    if "\\" not in field:
        return field
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))
