"""The escape-replay suite: one test per runc CVE (or attack class) that hit container runtimes.

Threat model (issue 4): the image's rootfs and everything that runs in the container are
hostile; config.json is trusted but may be wrong. Each test replays the attack against the
real `yacr` binary and checks a host marker that must stay untouched, so that it fails if
the protection it covers is removed. Where the attacker needs to win a race, a hook plays
the winner (it runs at the moment the race would be won) or a thread races for real.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import REPO, YACR, cgroup_dirs, mounts_mentioning
from test_console_exec import ConsoleReceiver

# --- helpers ---------------------------------------------------------------------------------


def run_ok(runtime, bundles, spec: dict, *flags: str) -> str:
    p = runtime("run", *flags, "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 0, p.stderr
    return p.stdout


def sh(bundles, script: str, **kw) -> dict:
    return bundles.spec(["sh", "-c", script], **kw)


def one_line_error(p, *fragments: str) -> str:
    """A refusal: non-zero exit, exactly one line on stderr, no traceback."""
    assert p.returncode != 0, p.stdout
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root (not followed): type, mode, owner and content hash."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            digest = ""
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                digest = os.readlink(p)
            out[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                             st.st_uid, st.st_gid, digest)
    return out


class HostMarker:
    """A host directory with a secret file: a replay passes only if it is left exactly as it
    was, and no mount of this mount namespace lands on it."""

    def __init__(self, base: Path, name: str = "host-victim") -> None:
        self.path = base / name
        self.path.mkdir()
        self.secret = uuid.uuid4().hex
        (self.path / "secret").write_text(self.secret + "\n")
        os.chmod(self.path / "secret", 0o600)
        self.before = snapshot(self.path)

    def check(self) -> None:
        assert snapshot(self.path) == self.before, f"host directory {self.path} was changed"
        assert mounts_mentioning(str(self.path)) == [], f"a mount landed on {self.path}"


def mountinfo_entries(text: str, visible_only: bool = False) -> list[tuple[str, set[str],
                                                                            str]]:
    """(mount point, per-mount options, fs type) of each /proc/<pid>/mountinfo line; with
    visible_only, only the mounts a path can reach (not covered by a later mount on the
    same point, nor under a covered one)."""
    rows = []
    for line in text.splitlines():
        if " - " not in line:
            continue
        pre, _, post = line.partition(" - ")
        f = pre.split()
        if len(f) < 6:
            continue
        rows.append((f[0], f[1], f[4].replace("\\040", " "), set(f[5].split(",")),
                     post.split()[0]))
    top = {point: mid for mid, _parent, point, _o, _t in rows}
    by_id = {r[0]: r for r in rows}

    def visible(mid: str) -> bool:
        _m, parent, point, _o, _t = by_id[mid]
        return top[point] == mid and (parent not in by_id or parent == mid
                                      or visible(parent))

    return [(point, opts, fstype) for mid, _p, point, opts, fstype in rows
            if not visible_only or visible(mid)]


def wait_for(pred, timeout: float = 10.0, step: float = 0.01):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def fd_table(pid: int) -> dict[int, tuple[str, int]]:
    """fd -> (link target, open flags) of a process, read from the host."""
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        fd = int(name)
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                flags = int(next(ln for ln in f if ln.startswith("flags:")).split()[1], 8)
        except (OSError, StopIteration):
            continue
        out[fd] = (target, flags)
    return out


def reaches_root(pid: int) -> bool:
    """Does the process's cwd lie inside its root? Walks ".." from /proc/<pid>/cwd (as the
    kernel resolves it, in the process's mount namespace) until the root or the top."""
    root = os.stat(f"/proc/{pid}/root")
    fd = os.open(f"/proc/{pid}/cwd", os.O_PATH | os.O_DIRECTORY)
    try:
        for _ in range(256):
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == (root.st_dev, root.st_ino):
                return True
            up = os.open("..", os.O_PATH | os.O_DIRECTORY, dir_fd=fd)
            up_st = os.fstat(up)
            os.close(fd)
            fd = up
            if (up_st.st_dev, up_st.st_ino) == (st.st_dev, st.st_ino):
                return False  # the top of a tree that does not hold the root
        return False
    finally:
        os.close(fd)


def private_rootfs_spec(bundles, args: list[str], readonly: bool = True) -> tuple[dict, Path]:
    rootfs = Path(bundles.private_rootfs())
    spec = bundles.spec(args)
    spec["root"] = {"path": str(rootfs), "readonly": readonly}
    return spec, rootfs


def hook(script: str) -> dict:
    return {"path": "/bin/sh", "args": ["sh", "-c", script]}


# --- CVE-2019-5736: #!/proc/self/exe ------------------------------------------------------

EVIL = r"""#!/proc/self/exe -IS
# The host's interpreter, started by the kernel from the shebang, runs this inside the
# container with the image's own loader and libraries. It takes a handle on its own
# executable and hands it to another program (busybox), which writes through it once
# nothing executes the interpreter any more (ETXTBSY until then).
import posix
posix.write(1, ("exe=" + posix.readlink("/proc/self/exe") + "\n").encode())
try:
    fd = posix.open("/proc/self/exe", posix.O_PATH)
except OSError as e:
    posix.write(1, b"result=no-handle errno=%d\n" % e.errno)
    posix._exit(0)
posix.set_inheritable(fd, True)
ATTACK = '''
n=0
while :; do
    # rewrite the first bytes with themselves: a real attack writes its payload; this
    # proves the same power and leaves the content as it was
    if dd if=/proc/self/fd/$1 of=/proc/self/fd/$1 bs=16 count=1 conv=notrunc 2>/dev/shm/err
    then echo result=WROTE; break; fi
    if grep -q busy /dev/shm/err && [ $n -lt 200 ]; then n=$((n+1)); sleep 0.005; continue; fi
    echo "result=refused $(cat /dev/shm/err | head -1)"; break
done
touch /dev/shm/done
'''
if posix.fork() == 0:
    posix.execv("/bin/busybox", ["sh", "-c", ATTACK, "sh", str(fd)])
posix.execv("/bin/busybox", ["sh", "-c", "while [ ! -e /dev/shm/done ]; do sleep 0.02; done"])
"""


DOCKER_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
               "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
               "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")


def _host_interpreter_files() -> list[str]:
    """Files whose change would mean the host's interpreter (or yacr) was overwritten."""
    files = {os.path.realpath(sys.executable), os.path.realpath(YACR)}
    share = REPO / ".venv" / "share" / "yacr"
    if share.is_dir():
        files.update(str(p) for p in share.iterdir() if p.is_file())
    if os.path.isdir("/run/yacr-exe"):
        files.update(os.path.join("/run/yacr-exe", n) for n in os.listdir("/run/yacr-exe"))
    return sorted(f for f in files if os.path.isfile(f))


def _hashes(files: list[str]) -> dict[str, tuple[int, str]]:
    """Inode and content hash of each file."""
    out = {}
    for f in files:
        with open(f, "rb") as fh:
            out[f] = (os.fstat(fh.fileno()).st_ino, hashlib.sha256(fh.read()).hexdigest())
    return out


def _overwritten(before: dict[str, tuple[int, str]]) -> list[str]:
    """Files whose content changed in place. A file replaced by rename (a new inode) was
    rewritten on the host: another pytest session in the same checkout rebuilds
    boot.bundle that way, and a container writing through a handle keeps the inode."""
    after = _hashes(list(before))
    return [f for f, (ino, digest) in before.items()
            if after[f][0] == ino and after[f][1] != digest]


def _rootfs_with_loader(bundles) -> Path:
    """A busybox rootfs that also carries the host interpreter's loader and shared libraries
    (found with ldd) and the few stdlib files it needs to start, as a real image would."""
    rootfs = Path(bundles.private_rootfs())
    exe = os.path.realpath(sys.executable)
    out = subprocess.run(["ldd", exe], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) > parts.index("=>") + 1 and \
                parts[parts.index("=>") + 1].startswith("/"):
            libs.append(parts[parts.index("=>") + 1])
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])  # the loader
    assert any("ld-linux" in lib or "/ld-" in lib for lib in libs), out
    for lib in libs:
        dest = rootfs / lib.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(lib), dest)
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    stdlib = rootfs / "usr" / "lib" / ver
    (stdlib / "encodings").mkdir(parents=True)
    (stdlib / "lib-dynload").mkdir()
    (stdlib / "os.py").write_text("")  # the landmark that tells Python where its prefix is
    src = Path(os.__file__).parent / "encodings"
    for name in ("__init__.py", "aliases.py", "utf_8.py"):
        shutil.copy2(src / name, stdlib / "encodings" / name)
    (rootfs / "evil").write_text(EVIL)
    os.chmod(rootfs / "evil", 0o755)
    return rootfs


@pytest.mark.parametrize("via", ["init", "exec"])
def test_cve_2019_5736_proc_self_exe(runtime, bundles, via):
    """The container's program is `#!/proc/self/exe`: the kernel runs whatever executable
    started it, which for yacr is the Python interpreter the runtime runs on. The attacker
    keeps a handle on it and writes through it once the runtime has exited."""
    rootfs = _rootfs_with_loader(bundles)
    files = _host_interpreter_files()
    before = _hashes(files)
    spec = bundles.spec(["/evil"] if via == "init" else ["sleep", "100"])
    spec["root"]["path"] = str(rootfs)
    # Docker's default capabilities: with CAP_DAC_OVERRIDE, file modes stop nobody
    spec["process"]["capabilities"] = {k: list(DOCKER_CAPS) for k in
                                       ("bounding", "effective", "permitted")}
    cid = runtime.new_id()
    with open(bundles.base / "out", "w+") as out:
        if via == "init":
            subprocess.run(runtime.cmd("create", "--bundle", bundles.write(spec), cid),
                           stdout=out, stderr=subprocess.STDOUT, check=True, timeout=30)
            pid = runtime.state(cid)["pid"]
            runtime("start", cid, check=True)
        else:
            runtime("run", "-d", "--bundle", bundles.write(spec), cid, check=True)
            pidfile = bundles.base / "exec.pid"
            subprocess.run(runtime.cmd("exec", "-d", "--pid-file", str(pidfile), cid, "/evil"),
                           stdout=out, stderr=subprocess.STDOUT, check=True, timeout=30)
            pid = int(pidfile.read_text())
        # the attacker's loop ends within a few seconds, whatever happens
        wait_for(lambda: "result=" in Path(out.name).read_text(), timeout=15)
        text = Path(out.name).read_text()
    if via == "init":
        wait_for(lambda: runtime.state(cid)["status"] == "stopped", timeout=10)
    else:
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=10)
    assert "exe=" in text, text  # the host interpreter did start inside the container
    result = text.split("result=", 1)[1].split()[0]
    assert result != "WROTE", f"the container wrote through the runtime's executable: {text}"
    # ETXTBSY only means another process still executed the file: no protection at all.
    assert result in ("refused", "no-handle"), text
    if "busy" in text.lower():
        # Only "text file busy" (ETXTBSY: some process still executes the file) stood in
        # the way, which is no protection once that process is gone, unless the file is
        # read-only where the container reached it (the kernel checks ETXTBSY first; other
        # yacr processes, or this very pytest, may execute the same interpreter file).
        probe = runtime.new_id()
        runtime("create", "--bundle", bundles.make(["true"]), probe, check=True)
        assert _exe_unwritable(runtime.state(probe)["pid"]), text
    assert not _overwritten(before)


def _exe_unwritable(pid: int) -> bool:
    """Is the executable of pid out of anyone's reach for writing: on a read-only mount
    where /proc/<pid>/exe leads (a read-only bind or a detached read-only mount), or a
    memfd sealed against writes?"""
    if os.statvfs(f"/proc/{pid}/exe").f_flag & os.ST_RDONLY:
        return True
    import fcntl

    fd = os.open(f"/proc/{pid}/exe", os.O_RDONLY)
    try:
        return bool(fcntl.fcntl(fd, 1034) & 0x0008)  # F_GET_SEALS & F_SEAL_WRITE
    except OSError:
        return False
    finally:
        os.close(fd)


def test_cve_2019_5736_init_exe_is_unwritable(runtime, bundles):
    """While created, init still runs the runtime's interpreter: whatever file that is,
    /proc/<init>/exe must not lead to a way of writing it."""
    cid = runtime.new_id()
    runtime("create", "--bundle", bundles.make(["true"]), cid, check=True)
    assert _exe_unwritable(runtime.state(cid)["pid"]), \
        "init's executable is neither on a read-only mount nor a sealed memfd"


def test_cve_2019_5736_init_exe_is_not_a_host_path(runtime, bundles):
    """init runs the interpreter through a read-only mount attached nowhere (the launcher's
    open_tree clone): /proc/<init>/exe names no host file."""
    cid = runtime.new_id()
    runtime("create", "--bundle", bundles.make(["true"]), cid, check=True)
    pid = runtime.state(cid)["pid"]
    target = os.readlink(f"/proc/{pid}/exe")
    assert not (os.path.exists(target)
                and os.path.samestat(os.stat(target), os.stat(f"/proc/{pid}/exe"))), target


def test_cve_2019_5736_init_is_not_dumpable(runtime, bundles):
    """A process exec'd into a created container (same uid, same capabilities as init)
    cannot reach init's executable, memory or fds through /proc/1."""
    cid = runtime.new_id()
    runtime("create", "--bundle", bundles.make(["true"]), cid, check=True)
    p = runtime("exec", cid, "sh", "-c", "readlink /proc/1/exe || echo denied-exe; "
                "ls /proc/1/fd/ >/dev/null 2>&1 && readlink /proc/1/fd/0 || echo denied-fd; "
                "head -c1 /proc/1/mem >/dev/null 2>&1 || echo denied-mem")
    assert p.stdout.split() == ["denied-exe", "denied-fd", "denied-mem"], p.stdout + p.stderr


# --- the caller's PATH chooses no code ------------------------------------------------------


def test_path_does_not_choose_the_standard_library(tmp_path):
    """yacr runs as root with -I, yet Python derives its prefix (the standard library, and
    the site-packages where the wasm engine's library is looked for) from its executable's
    path, which it searches in PATH when argv[0] has no slash (seen: pyenv's bin first on
    PATH gave Debian's interpreter pyenv's stdlib). A directory on the caller's PATH holding
    bin/python3 and lib/python3.X/ must not be able to feed yacr its code."""
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    fake = tmp_path / "fake"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "python3").write_text("#!/bin/sh\nexit 99\n")
    (fake / "bin" / "python3").chmod(0o755)
    stdlib = fake / "lib" / ver
    (stdlib / "encodings").mkdir(parents=True)
    marker = tmp_path / "hijacked"
    touch = ("import posix\n"
             f"posix.close(posix.open({str(marker)!r}, posix.O_CREAT | posix.O_WRONLY))\n")
    (stdlib / "os.py").write_text(touch)
    (stdlib / "encodings" / "__init__.py").write_text(touch)
    env = dict(os.environ, PATH=f"{fake / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    p = subprocess.run([YACR, "--version"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and "yacr version" in p.stdout, p.stdout + p.stderr
    assert not marker.exists(), "yacr imported a standard library found through PATH"


# --- CVE-2024-21626: leaked fds and a cwd of /proc/self/fd/N ------------------------------

def _spawn_with_fds(cmd: list[str], fds: dict[int, int], **kw) -> subprocess.Popen:
    """Start cmd with extra fds at fixed numbers, *inheritable* (as a careless caller would
    leave them)."""
    def place() -> None:
        for n, src in fds.items():
            os.dup2(src, n, inheritable=True)

    return subprocess.Popen(cmd, close_fds=False, preexec_fn=place, **kw)


def test_cve_2024_21626_fd_census_after_create(runtime, bundles, tmp_path):
    """Created init holds only 0-2, the preserved fds and the documented ones (the exec FIFO,
    the --log file), even when the caller leaves extra inheritable fds open, among them one
    on a host directory (the runc bug leaked /sys/fs/cgroup)."""
    host_dir = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    preserved = os.open("/dev/null", os.O_RDONLY)
    log = tmp_path / "yacr.log"
    cid = runtime.new_id()
    try:
        p = _spawn_with_fds(runtime.cmd("create", "--preserve-fds", "1", "--bundle",
                                        bundles.make(["sleep", "100"]), cid, log=str(log)),
                            {3: preserved, 7: host_dir, 12: host_dir},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert p.wait(timeout=30) == 0
    finally:
        os.close(host_dir)
        os.close(preserved)
    pid = runtime.state(cid)["pid"]
    table = fd_table(pid)
    extra = {fd: t for fd, t in table.items() if fd > 3}
    documented = {str(runtime.root / cid / "exec.fifo"), str(log)}
    assert {t for t, _ in extra.values()} <= documented, table
    for fd, (target, flags) in extra.items():
        assert flags & os.O_CLOEXEC, (fd, target)
    assert table[3][0] == "/dev/null"
    runtime("start", cid, check=True)
    wait_for(lambda: os.readlink(f"/proc/{pid}/exe").endswith("busybox"))
    assert sorted(fd_table(pid)) == [0, 1, 2, 3]


def test_cve_2024_21626_fd_census_during_exec(runtime, bundles, tmp_path):
    """The exec'd process, caught in the container right before execve (it blocks reading
    the image's /etc/passwd, a FIFO), holds nothing that leads to the host; after execve
    it holds only 0-2 and the preserved fd."""
    spec, rootfs = private_rootfs_spec(bundles, ["sleep", "100"])
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", bundles.write(spec), cid, check=True)
    init = runtime.state(cid)["pid"]
    passwd = (rootfs / "etc" / "passwd").read_text()
    (rootfs / "etc" / "passwd").unlink()
    os.mkfifo(rootfs / "etc" / "passwd")
    host_dir = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    preserved = os.open("/dev/null", os.O_RDONLY)
    pidfile = tmp_path / "exec.pid"
    try:
        p = _spawn_with_fds(runtime.cmd("exec", "-d", "--preserve-fds", "1", "--pid-file",
                                        str(pidfile), cid, "sleep", "100"),
                            {3: preserved, 9: host_dir},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        os.close(host_dir)
        os.close(preserved)

    def blocked_child() -> int | None:
        # the exec'd process is the child of the `yacr exec` process (p.pid: sh exec'd it)
        try:
            with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            return None
        for kid in kids:
            try:
                with open(f"/proc/{kid}/wchan") as f:
                    if "partner" in f.read():  # wait_for_partner: opening a FIFO
                        return kid
            except OSError:
                continue
        return None

    child = wait_for(blocked_child, timeout=10)
    try:
        assert child, "the exec'd process did not stop at /etc/passwd"
        table = fd_table(child)
        own_ns = {os.readlink(f"/proc/{init}/ns/{n}") for n in os.listdir(f"/proc/{init}/ns")}
        for fd, (target, _flags) in table.items():
            if fd in (0, 1, 2, 3):
                continue
            # sockets and pipes to the runtime, the container's own namespaces: fine;
            # anything on the host's filesystems or another namespace is a way out
            assert target.startswith(("socket:", "pipe:", "anon_inode:")) or \
                target in own_ns, (fd, target)
    finally:
        with open(f"/proc/{init}/root/etc/passwd", "w") as f:
            f.write(passwd)
    assert p.wait(timeout=30) == 0
    epid = int(pidfile.read_text())
    runtime.pids.add(epid)
    wait_for(lambda: os.readlink(f"/proc/{epid}/exe").endswith("busybox"))
    assert sorted(fd_table(epid)) == [0, 1, 2, 3]


@pytest.mark.parametrize("via", ["create", "exec"])
def test_cve_2024_21626_cwd_proc_self_fd(runtime, bundles, tmp_path, via):
    """cwd = /proc/self/fd/N for every fd the process could hold, with a host directory
    among the caller's fds (preserved or not): refused, or the cwd lies inside the root."""
    marker = HostMarker(tmp_path)
    running = None
    if via == "exec":
        running = runtime.new_id()
        runtime("run", "-d", "--bundle", bundles.make(["sleep", "100"]), running, check=True)
    for n in range(3, 16):
        host_dir = os.open(str(marker.path), os.O_RDONLY | os.O_DIRECTORY)
        cid = runtime.new_id()
        pidfile = tmp_path / f"pid{n}"
        try:
            if via == "create":
                spec = bundles.spec(["sleep", "100"])
                spec["process"]["cwd"] = f"/proc/self/fd/{n}"
                cmd = runtime.cmd("create", "--preserve-fds", "1", "--pid-file", str(pidfile),
                                  "--bundle", bundles.write(spec), cid)
            else:
                cmd = runtime.cmd("exec", "-d", "--preserve-fds", "1", "--cwd",
                                  f"/proc/self/fd/{n}", "--pid-file", str(pidfile), running,
                                  "sleep", "100")
            # stderr to a file: a created init keeps the runtime's stderr open
            with open(tmp_path / "err", "w+") as errf:
                p = _spawn_with_fds(cmd, {3: host_dir, 7: host_dir},
                                    stdout=subprocess.DEVNULL, stderr=errf)
                rc = p.wait(timeout=30)
                errf.seek(0)
                err = errf.read()
        finally:
            os.close(host_dir)
        assert "Traceback" not in err
        if rc != 0:
            assert len(err.strip().splitlines()) == 1, err
            continue
        pid = int(pidfile.read_text())
        runtime.pids.add(pid)
        assert reaches_root(pid), f"cwd /proc/self/fd/{n} is outside the container's root"
        if via == "create":
            runtime("delete", "--force", cid, check=True)
        else:
            os.kill(pid, signal.SIGKILL)
    marker.check()


# --- CVE-2022-29162: exec --cap, and exec --user ------------------------------------------

def _caps(text: str) -> dict[str, int]:
    return {ln.split(":")[0]: int(ln.split()[1], 16) for ln in text.splitlines()
            if ln.startswith("Cap")}


def test_cve_2022_29162_exec_cap_never_inheritable(runtime, bundles):
    """exec --cap adds to bounding, effective and permitted only; the inheritable and
    ambient sets stay empty, for root and for another user, so a program exec'd later
    (with file capabilities in the image) cannot pick the capability up."""
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", bundles.make(["sleep", "100"]), cid, check=True)
    net_raw, dac = 1 << 13, 1 << 1
    for user in ("0", "1000"):
        p = runtime("exec", "--user", user, "--cap", "CAP_NET_RAW", "--cap",
                    "CAP_DAC_OVERRIDE", cid, "cat", "/proc/self/status")
        assert p.returncode == 0, p.stderr
        caps = _caps(p.stdout)
        assert caps["CapBnd"] & net_raw and caps["CapBnd"] & dac
        assert caps["CapInh"] == 0 and caps["CapAmb"] == 0, caps
        if user == "0":
            assert caps["CapEff"] & net_raw and caps["CapPrm"] & net_raw


def test_exec_user_1_runs_as_uid_1(runtime, bundles):
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", bundles.make(["sleep", "100"]), cid, check=True)
    p = runtime("exec", "--user", "1", cid, "cat", "/proc/self/status")
    assert p.returncode == 0, p.stderr
    status = dict(ln.split(":", 1) for ln in p.stdout.splitlines() if ":" in ln)
    assert status["Uid"].split() == ["1", "1", "1", "1"]
    assert status["Gid"].split() == ["0", "0", "0", "0"]
    assert _caps(p.stdout)["CapEff"] == 0  # a non-root user keeps no capability


# --- procfs and sysfs ----------------------------------------------------------------------

@pytest.mark.parametrize("no_pivot", [False, True])
@pytest.mark.parametrize("fstype", ["proc", "sysfs"])
def test_no_fresh_proc_or_sysfs_from_a_nested_user_namespace(runtime, bundles, no_pivot,
                                                               fstype):
    """With --no-pivot, chroot left the host's full /proc and /sys mounted (out of sight)
    in the container's mount namespace, and the kernel lets the owner of a new user, mount
    and pid namespace mount a fresh procfs or sysfs while such a full one is visible: a
    /proc without maskedPaths. runc's replay (CAP_SETFCAP lets unshare -r write a uid map
    for root); the mount must fail as it does under pivot_root."""
    target = "/proc" if fstype == "proc" else "/sys"
    spec = bundles.spec(["unshare", "-mrpf", "sh", "-c",
                         f"mount -t {fstype} none {target} && echo MOUNTED"])
    spec["linux"].pop("seccomp", None)  # runc's default spec has none; ours refuses unshare
    caps = spec["process"]["capabilities"]
    for kind in ("bounding", "permitted"):
        caps[kind] = sorted(set(caps[kind]) | {"CAP_SETFCAP"})
    args = ["run", "--bundle", bundles.write(spec), runtime.new_id()]
    p = runtime(*(args[:1] + ["--no-pivot"] + args[1:] if no_pivot else args))
    assert "MOUNTED" not in p.stdout, p.stdout
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "mount: permission denied" in p.stderr, p.stderr


@pytest.mark.parametrize("name,target", [
    ("proc", "abs-host"), ("proc", "relative"), ("sys", "abs-host"), ("sys", "relative"),
])
def test_rootfs_proc_or_sys_symlink_refused(runtime, bundles, tmp_path, name, target):
    """An image whose /proc or /sys is a symlink (runc: CVE-2019-19921's kin) is refused:
    proc or sysfs mounted through it would land where the image chose."""
    marker = HostMarker(tmp_path)
    spec, rootfs = private_rootfs_spec(bundles, ["true"])
    (rootfs / name).rmdir()
    (rootfs / "elsewhere").mkdir()
    os.symlink(str(marker.path) if target == "abs-host" else "elsewhere", rootfs / name)
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    one_line_error(p, f"/{name}")
    marker.check()
    assert list((rootfs / "elsewhere").iterdir()) == []


MARKER_ATTR = "unconfined-by-the-image"


@pytest.mark.parametrize("dest,kind", [
    ("/proc", "tmpfs"),
    ("/proc", "bind"),
    ("/proc/self/attr", "bind"),
    ("/proc/sys", "tmpfs"),
    ("/proc/../proc/sys/kernel", "bind"),
    ("proc/self", "bind"),
    ("/vol", "bind"),        # /vol is a symlink to /proc in the image (CVE-2023-27561)
    ("/vol/self", "tmpfs"),
    ("/vol2/sys", "tmpfs"),  # /vol2 -> ../../proc
])
def test_cve_2019_16884_non_proc_mount_on_proc_refused(runtime, bundles, tmp_path, dest,
                                                       kind):
    """A non-proc mount at or under /proc would let files the runtime writes through
    (LSM labels, sysctls, oom_score_adj) be fakes: refused, also when the destination
    reaches /proc through a symlink planted in the image."""
    fake = tmp_path / "fakeproc"
    (fake / "self" / "attr").mkdir(parents=True)
    (fake / "self" / "attr" / "exec").write_text(MARKER_ATTR)
    spec, rootfs = private_rootfs_spec(bundles, ["true"])
    os.symlink("/proc", rootfs / "vol")
    os.symlink("../../proc", rootfs / "vol2")
    m = {"destination": dest, "type": kind, "source": str(fake) if kind == "bind" else "tmpfs"}
    if kind == "bind":
        m["options"] = ["rbind"]
    spec["mounts"].append(m)
    before = snapshot(fake)
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    one_line_error(p, "proc")
    assert snapshot(fake) == before


def test_procfs_writes_go_to_procfs_only(runtime, bundles):
    """oomScoreAdj is written through a handle checked to be procfs: when /proc/self/
    oom_score_adj is something else (here masked with /dev/null by a wrong config), the
    write is refused instead of vanishing into /dev/null."""
    spec = sh(bundles, "cat /proc/self/oom_score_adj")
    spec["process"]["oomScoreAdj"] = 500
    spec["linux"]["maskedPaths"].append("/proc/self/oom_score_adj")
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    if p.returncode == 0:
        assert p.stdout.strip() == "500"
    else:
        one_line_error(p, "oomScoreAdj")


def test_procfs_write_helper_checks_the_filesystem(tmp_path):
    """The helper every procfs write of the runtime goes through (sysctls, oom_score_adj,
    LSM attributes) refuses a file that is not on procfs."""
    from yacr.linux.process import write_procfs

    f = tmp_path / "oom_score_adj"
    f.write_text("0")
    with pytest.raises(OSError, match="not on procfs"):
        write_procfs(str(f), "500")
    assert f.read_text() == "0"
    with open("/proc/self/comm") as fh:
        comm = fh.read().strip()
    write_procfs("/proc/self/comm", "yacr-procfs")  # the real thing passes
    with open("/proc/self/comm") as fh:
        assert fh.read().strip() == "yacr-procfs"
    write_procfs("/proc/self/comm", comm)


# --- symlinks in the rootfs never lead outside it -----------------------------------------

@pytest.mark.parametrize("link", ["absolute", "relative-climb", "intermediate"])
@pytest.mark.parametrize("kind", ["tmpfs", "bind"])
def test_cve_2021_30465_mount_destination_symlink(runtime, bundles, tmp_path, link, kind):
    """A mount destination that is (or passes through) a symlink to a host directory is
    resolved inside the rootfs: the host directory gets no mount and no new entry."""
    marker = HostMarker(tmp_path)
    src = tmp_path / "volume"
    src.mkdir()
    (src / "from-volume").write_text("v")
    spec, rootfs = private_rootfs_spec(bundles, ["cat", "/proc/self/mountinfo"])
    if link == "absolute":
        os.symlink(str(marker.path), rootfs / "vol-link")
        dest = "/vol-link/sub"
    elif link == "relative-climb":
        os.symlink("../../../../../../../../.." + str(marker.path), rootfs / "vol-link")
        dest = "/vol-link/sub"
    else:
        (rootfs / "a").mkdir()
        os.symlink(str(marker.path.parent), rootfs / "a" / "up")
        dest = f"/a/up/{marker.path.name}/sub"
    m = {"destination": dest, "type": kind, "source": str(src) if kind == "bind" else "tmpfs"}
    if kind == "bind":
        m["options"] = ["bind"]
    spec["mounts"].append(m)
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert "Traceback" not in p.stderr
    marker.check()
    if p.returncode == 0:
        # the mount is in the container, under the rootfs's own version of the path
        points = [e[0] for e in mountinfo_entries(p.stdout)]
        assert any(pt.endswith("/sub") for pt in points), p.stdout
        assert str(marker.path) + "/sub" in points, points


def _renameat2_exchange() -> callable:
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.renameat2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]

    def exchange(a: str, b: str) -> None:
        if fn(-100, a.encode(), -100, b.encode(), 2) != 0:  # AT_FDCWD, RENAME_EXCHANGE
            raise OSError(ctypes.get_errno(), "renameat2")

    return exchange


@pytest.mark.parametrize("mntns", [True, False], ids=["mount-ns", "no-mount-ns"])
def test_cve_2021_30465_cve_2024_45310_symlink_swap_race(runtime, bundles, tmp_path, mntns):
    """While containers are created, a thread keeps swapping a mount destination between a
    directory and a symlink to a host directory (what a second container sharing the
    volume does). No mount reaches the host directory and nothing is created in it
    (CVE-2024-45310: runc's mkdir of missing destinations followed the swapped link)."""
    marker = HostMarker(tmp_path)
    spec, rootfs = private_rootfs_spec(bundles, ["true"])
    (rootfs / "dst").mkdir()
    os.symlink(str(marker.path), rootfs / "dst.alt")
    src = tmp_path / "volume"
    src.mkdir()
    spec["mounts"] += [
        {"destination": "/dst/tmp", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/dst/new/deeper", "type": "bind", "source": str(src),
         "options": ["bind"]},
    ]
    if not mntns:
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                       if n["type"] not in ("mount", "cgroup")]
    bundle = bundles.write(spec)
    exchange = _renameat2_exchange()
    stop = threading.Event()
    swaps = [0]

    def flip() -> None:
        a, b = str(rootfs / "dst"), str(rootfs / "dst.alt")
        while not stop.is_set():
            try:
                exchange(a, b)
            except OSError:
                # without a mount namespace the rootfs is briefly a mount point (EXDEV) or
                # read-only (EROFS) on the host: keep racing once it is released
                time.sleep(0.001)
                continue
            swaps[0] += 1

    t = threading.Thread(target=flip, daemon=True)
    t.start()
    try:
        for _ in range(RACE_ROUNDS):
            p = runtime("run", "--bundle", bundle, runtime.new_id())
            assert "Traceback" not in p.stderr
            marker.check()
    finally:
        stop.set()
        t.join()
    assert swaps[0] > RACE_ROUNDS
    assert mounts_mentioning(str(rootfs)) == []
    marker.check()


RACE_ROUNDS = 25


@pytest.mark.parametrize("devmount", [True, False], ids=["dev-tmpfs", "image-dev"])
@pytest.mark.parametrize("link", ["absolute", "relative-climb"])
def test_dev_symlink_to_host_directory(runtime, bundles, tmp_path, devmount, link):
    """/dev in the image is a symlink to a host directory: the /dev mounts and device nodes
    stay inside the rootfs (or the container is refused); the host directory is untouched."""
    marker = HostMarker(tmp_path)
    spec, rootfs = private_rootfs_spec(bundles, ["sh", "-c", "ls /dev"])
    (rootfs / "dev").rmdir()
    target = str(marker.path) if link == "absolute" else "../../../../../.." + str(marker.path)
    os.symlink(target, rootfs / "dev")
    if not devmount:
        spec["mounts"] = [m for m in spec["mounts"] if not m["destination"].startswith("/dev")]
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert "Traceback" not in p.stderr
    if p.returncode != 0:
        one_line_error(p)
    else:
        assert "null" in p.stdout.split()
    marker.check()


@pytest.mark.parametrize("plant", ["symlink", "regular-file", "other-device", "bind-procfs"])
def test_cve_2025_31133_dev_null_replaced_while_masking(runtime, bundles, tmp_path, plant):
    """Right before masking (a createContainer hook plays the container that wins the
    race), /dev/null is replaced. Masking must never bind the replacement over the masked
    paths: the container is refused, or every masked file is the real null device."""
    spec = sh(bundles, "for p in /proc/kcore /proc/timer_list /proc/sched_debug; do "
              "[ -e $p ] && stat -c '%n %F %t:%T' $p; done; "
              "grep -c kernel/hostname /proc/self/mountinfo; true")
    root = spec["root"]["path"]
    null = f"{root}/dev/null"
    scripts = {
        "symlink": f"rm -f {null} && ln -s /proc/sys/kernel/hostname {null}",
        "regular-file": f"rm -f {null} && echo secret > {null}",
        "other-device": f"rm -f {null} && mknod -m 666 {null} c 1 5",
        "bind-procfs": f"mount --bind /proc/sys/kernel/hostname {null}",
    }
    spec["hooks"] = {"createContainer": [hook(scripts[plant])]}
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert "Traceback" not in p.stderr
    if p.returncode != 0:
        one_line_error(p, "/dev/null")
        return
    lines = p.stdout.splitlines()
    assert lines[-1] == "0", p.stdout  # hostname file mounted nowhere
    for ln in lines[:-1]:
        assert ln.endswith("character special file 1:3"), ln


@pytest.mark.parametrize("plant", ["console-symlink-file", "console-symlink-procfs",
                                   "pts-symlinks"])
def test_cve_2025_52565_console_and_pts_symlinks(runtime, bundles, tmp_path, plant):
    """With a terminal, /dev/console (or every /dev/pts/N name) is a symlink planted by the
    container: the pty is never bound over, nor opened through, what the links point to."""
    spec, rootfs = private_rootfs_spec(bundles, ["sh", "-c", "stat -c '%F %t' /dev/console; "
                                                 "cat /etc/victim; grep -c -e victim -e "
                                                 "kernel/hostname /proc/self/mountinfo"],
                                       readonly=False)
    spec["process"]["terminal"] = True
    (rootfs / "etc" / "victim").write_text("victim-content\n")
    root = str(rootfs)
    scripts = {
        "console-symlink-file": f"ln -sf /etc/victim {root}/dev/console",
        "console-symlink-procfs": f"ln -sf /proc/sys/kernel/hostname {root}/dev/console",
        # the real devpts moves aside; /dev/pts becomes a directory of symlinks to the
        # victim, plus a ptmx that still leads to the real devpts
        "pts-symlinks": f"mkdir -p {root}/run/realpts && mount --move {root}/dev/pts "
                        f"{root}/run/realpts && mount -t tmpfs tmpfs {root}/dev/pts && "
                        f"for i in $(seq 0 63); do ln -s /etc/victim {root}/dev/pts/$i; "
                        f"done && ln -s /run/realpts/ptmx {root}/dev/pts/ptmx",
    }
    spec["hooks"] = {"createContainer": [hook(scripts[plant])]}
    rx = ConsoleReceiver(str(tmp_path / "console.sock"))
    cid = runtime.new_id()
    p = runtime("create", "--console-socket", rx.path, "--bundle", bundles.write(spec), cid)
    assert "Traceback" not in p.stderr
    if p.returncode != 0:
        one_line_error(p)
        rx.sock.close()
    else:
        runtime("start", cid, check=True)
        raw = rx.read_until_eof()
        rx.close()
        out = raw.replace("\r", "").splitlines()
        assert out[0].startswith("character special file"), out
        assert out[1] == "victim-content", out
        assert out[2] == "0", out  # neither the victim nor a procfs file became a mount
    assert (rootfs / "etc" / "victim").read_text() == "victim-content\n"


# --- CVE-2023-25809: /sys/fs/cgroup is read-only in every /sys configuration ---------------

SYS_VARIANTS = {
    "sysfs-ro": {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]},
    "sysfs-rw": {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev"]},
    "rbind-ro": {"destination": "/sys", "type": "bind", "source": "/sys",
                 "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]},
    "rbind-rw": {"destination": "/sys", "type": "bind", "source": "/sys",
                 "options": ["rbind", "nosuid", "noexec", "nodev"]},
    "bind-ro": {"destination": "/sys", "type": "bind", "source": "/sys",
                "options": ["bind", "nosuid", "noexec", "nodev", "ro"]},
}
CGROUP_MOUNT = {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}


@pytest.mark.parametrize("cgroupns", [True, False], ids=["cgroupns", "host-cgroupns"])
@pytest.mark.parametrize("cgmount", [True, False], ids=["cgroup-mount", "no-cgroup-mount"])
@pytest.mark.parametrize("sys_kind", list(SYS_VARIANTS))
def test_cve_2023_25809_sys_fs_cgroup_read_only(runtime, bundles, sys_kind, cgmount, cgroupns):
    """Whatever /sys is (sysfs ro/rw, a recursive or plain bind of the host's /sys, ro or
    rw), with or without a cgroup mount and a cgroup namespace: every mount at or under
    /sys/fs/cgroup is read-only in the container, and none of it is writable."""
    # (busybox's `test -w` is always true for root: open an existing file for appending,
    # which writes nothing, instead)
    spec = sh(bundles, "cat /proc/self/mountinfo; echo ---; for m in $(awk '{print $5}' "
              "/proc/self/mountinfo | grep '^/sys/fs/cgroup'); do [ -f $m/cgroup.procs ] && "
              "(: >> $m/cgroup.procs) 2>/dev/null && echo W $m; done; true", cgroupns=cgroupns)
    spec["mounts"] = [m for m in spec["mounts"] if not m["destination"].startswith("/sys")]
    spec["mounts"].append(SYS_VARIANTS[sys_kind])
    if cgmount:
        spec["mounts"].append(CGROUP_MOUNT)
    out = run_ok(runtime, bundles, spec)
    info, _, writable = out.partition("---")
    for point, opts, fstype in mountinfo_entries(info, visible_only=True):
        if point == "/sys/fs/cgroup" or point.startswith("/sys/fs/cgroup/") or \
                (point.startswith("/sys") and fstype in ("cgroup", "cgroup2")):
            assert "ro" in opts, (point, opts, fstype)
    assert writable.split() == [], writable


# --- a runtime SIGKILLed during create; concurrent creates ----------------------------------

def _marked_processes(token: str) -> list[int]:
    out = []
    needle = f"YACR_TEST_TOKEN={token}".encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle not in f.read():
                    continue
            with open(f"/proc/{name}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in "ZX":
                    continue
        except OSError:
            continue
        out.append(int(name))
    return out


def _describe(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode()[:80]
            with open(f"/proc/{pid}/status") as f:
                st = {k: v.strip() for k, v in (ln.split(":", 1) for ln in f)}
            out.append(f"{pid} ppid={st['PPid']} {st['State']} {cmd!r}")
        except OSError:
            out.append(f"{pid} (gone)")
    return out


def test_sigkill_during_create_100_times(runtime, bundles, tmp_path):
    """yacr is SIGKILLed at a random point of create (a createRuntime hook blocks, so the
    points include "inside the hook"), 100 times with the same id: each time delete --force
    leaves no process, cgroup, mount, FIFO or state, and the id is free again."""
    rootfs = bundles.private_rootfs()
    token = uuid.uuid4().hex
    hookpid = tmp_path / "hook.pid"
    spec = bundles.spec(["true"])
    spec["root"]["path"] = rootfs
    # the hook's own child (sleep) outlives the hook's shell unless its group is ended
    spec["hooks"] = {"createRuntime": [{"path": "/bin/sh", "env": [f"YACR_TEST_TOKEN={token}"],
                                        "args": ["sh", "-c", f"echo $$ > {hookpid}; sleep 60; "
                                                 "true"]}]}
    bundle = bundles.write(spec)
    env = dict(os.environ, YACR_TEST_TOKEN=token)
    cid = runtime.new_id()
    rng = random.Random(4)
    # how long create takes to reach the hook, to spread the kills over the whole of it
    t0 = time.monotonic()
    p = subprocess.Popen(runtime.cmd("create", "--bundle", bundle, cid), env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(hookpid.exists, timeout=10)
    reach = time.monotonic() - t0
    kills = []
    for i in range(101):
        if i:
            hookpid.unlink(missing_ok=True)
            p = subprocess.Popen(runtime.cmd("create", "--bundle", bundle, cid), env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            delay = rng.uniform(0, reach * 1.3)
            time.sleep(delay)
            kills.append(delay)
        p.kill()
        p.wait()
        d = runtime("delete", "--force", cid)
        assert d.returncode == 0, d.stderr
        # init and the hook (and its child) carry the token in their environment
        left = wait_for(lambda: not _marked_processes(token), timeout=2) or \
            _marked_processes(token)
        assert left is True, f"round {i} (kill after {kills[-1] if kills else 0:.3f}s): " \
            f"processes left: {_describe(left)}"
        assert not (runtime.root / cid).exists(), f"round {i}: state left"
        assert cgroup_dirs(cid) == [], f"round {i}: cgroups left"
        assert mounts_mentioning(rootfs) == [], f"round {i}: mounts left"
    assert min(kills) < reach * 0.3 and max(kills) > reach
    runtime("run", "--bundle", bundles.make(["true"]), cid, check=True)  # the id is free
