#!/usr/bin/python3
"""The test VM: build its image, boot it, run commands and the VM test suite in it.

    scripts/vm/vm.py build                 the image (cached under build/vm/image-KEY)
    scripts/vm/vm.py start                 boot it in the background, wait for the agent
    scripts/vm/vm.py exec [-i] [-C DIR] [-e K=V] [-t SECONDS] CMD [ARG...]
    scripts/vm/vm.py status | log [-n N] | stop
    scripts/vm/vm.py test [PYTEST-ARG...]  what `make test-vm` runs

Why: production hosts run systemd as pid 1 on pure cgroup v2; the project's machines are
hybrid without systemd, so that layout is tested in a Debian guest under QEMU (the image:
scripts/vm/build-image.sh). This script is the only thing that starts or stops that QEMU.

How, and why that way:
- The guest sees the repository at the SAME path as the host (virtio-9p, tag "project",
  mounted by the guest's yacr-project.service from yacr.project= on the kernel command
  line), so the project's .venv (Debian's /usr/bin/python3, as in the guest) works there
  unchanged and nothing is copied in or out. The guest's build/ is its own directory, so
  its test artifacts never collide with a `make test` running on the host. 9p runs with
  cache=loose: under TCG, pytest collects the VM suite in 1.5 s with it and in 10 s with
  cache=none. loose never revalidates what the guest has cached, so every `exec` first
  has the agent drop the guest's caches (`exec --cached` skips that): each command sees
  the host's files as they are when it starts, host edits included.
- Accelerator: KVM if a probe boot reaches the agent within KVM_PROBE_SECONDS (and the
  kernel's banner is on the console within KVM_BANNER_SECONDS), else TCG. Some hosts
  have a /dev/kvm on which a stock kernel hangs before its first message (a nested,
  paravirtual KVM); a failed probe is remembered in build/vm/kvm-probe.json for that
  host kernel, QEMU and guest kernel, so that only the first boot pays for it.
  YACR_VM_ACCEL=kvm|tcg forces one (kvm also retries the probe).
- The root disk is opened snapshot=on: every boot starts from the pristine image and what
  the guest writes is thrown away with the QEMU process (QEMU keeps it in an overlay file
  that it creates in build/vm/run and unlinks at once).
- Commands go through the guest agent (scripts/vm/agent.py) on a virtio-serial port whose
  host end is a unix socket: no network in the guest. One connection at a time, so each
  `exec` holds a lock for its duration (a second one waits, and says so).
- No QEMU is ever left behind by `test`: the VM it boots dies with this process (the
  kernel's parent-death signal, even on SIGKILL), and a finally block powers it off on
  failures and Ctrl-C. `stop` powers the guest off, then quits QEMU through QMP, then
  kills the recorded pid, checking first that the pid is still our QEMU.

State lives in build/vm/run/: qemu.pid, state.json, agent.sock, qmp.sock, serial.log
(the guest's console), qemu.log, and the last test run's pytest.log and junit.xml.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import fcntl
import hashlib
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent.parent
VM_DIR = REPO / "build" / "vm"
RUN = VM_DIR / "run"
SUITE = REPO / "tests" / "vm" / "SUITE"
# what the image is made of: a change to any of these rebuilds it
IMAGE_INPUTS = ("packages.txt", "build-image.sh", "agent.py")

SMP = int(os.environ.get("YACR_VM_SMP", "2"))
MEM_MB = int(os.environ.get("YACR_VM_MEM", "4096"))
KVM_PROBE_SECONDS = 60.0
KVM_BANNER_SECONDS = 20.0  # "Linux version" comes within a second when KVM works
BOOT_SECONDS = 300.0  # TCG normally needs 10-20 s; a loaded host may need much more
TEST_TIMEOUT = float(os.environ.get("YACR_VM_TEST_TIMEOUT", "2400"))
# the production layout: every controller, enabled at the root by systemd
CONTROLLERS = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")
GUEST_JUNIT = "/tmp/yacr-vm-junit.xml"
# the QEMUs this process started, by pid: we reap them ourselves (init may be slow to)
CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class VMError(Exception):
    """A harness failure (image, boot, agent), as opposed to a test failure."""


def say(msg: str) -> None:
    """Progress to stderr, so that stdout carries only what the guest's commands print."""
    print(f"vm: {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def locked(path: Path, what: str) -> Iterator[None]:
    """An exclusive flock on path; says what it waits for when someone else holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for {what} ({path} is locked)")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


# ---------------------------------------------------------------------- the image
def image_key() -> str:
    """The hash of everything the image is made of (see IMAGE_INPUTS)."""
    h = hashlib.sha256()
    for name in IMAGE_INPUTS:
        h.update(name.encode() + b"\0" + (SCRIPTS / name).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def ensure_image() -> Path:
    """The image directory for the current key, built first if there is none.

    Older images are deleted once a new one is built: each takes ~1 GB of disk."""
    img = VM_DIR / f"image-{image_key()}"
    with locked(VM_DIR / "build.lock", "another image build"):
        if (img / "rootfs.ext4").exists():
            say(f"image: cached {img.relative_to(REPO)}")
            return img
        say(f"image: building {img.relative_to(REPO)} (Debian bookworm, a few minutes)")
        t0 = time.monotonic()
        r = subprocess.run([str(SCRIPTS / "build-image.sh"), str(img), str(VM_DIR / "debs")],
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0 or not (img / "rootfs.ext4").exists():
            raise VMError(f"image build failed (exit {r.returncode})")
        say(f"image: built in {time.monotonic() - t0:.0f} s")
        for old in VM_DIR.glob("image-*"):
            if old != img and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
    return img


# ---------------------------------------------------------------------- the agent
class Agent:
    """A connection to the guest agent (scripts/vm/agent.py), one request at a time."""

    _ids = itertools.count(1)

    def __init__(self, sock_path: Path = RUN / "agent.sock", connect_timeout: float = 5):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(connect_timeout)
        try:
            self.sock.connect(str(sock_path))
        except OSError:
            self.sock.close()
            raise
        self.buf = b""
        self.wlock = threading.Lock()
        # ends any partial line a previous, interrupted client left in the pipe
        self.sock.sendall(b"\n")

    def close(self) -> None:
        self.sock.close()

    def new_id(self) -> str:
        return f"{os.getpid()}.{next(self._ids)}.{time.monotonic_ns()}"

    def send(self, msg: dict[str, Any]) -> None:
        with self.wlock:
            self.sock.sendall((json.dumps(msg, separators=(",", ":")) + "\n").encode())

    def recv(self, rid: str, timeout: float | None) -> dict[str, Any] | None:
        """The next message for request rid; None on timeout. Others are stale: skipped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if isinstance(msg, dict) and msg.get("id") == rid:
                    return msg
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.sock.settimeout(left)
            else:
                self.sock.settimeout(None)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None
            if not data:
                raise VMError("the guest agent closed the connection (did the VM stop?)")
            self.buf += data

    def ping(self, timeout: float) -> dict[str, Any] | None:
        rid = self.new_id()
        self.send({"op": "ping", "id": rid})
        return self.recv(rid, timeout)

    def run(self, argv: list[str], *, cwd: str | None = None,
            env: dict[str, str] | None = None, stdin: bool = False,
            on_output: Callable[[str, bytes], None] | None = None,
            timeout: float | None = None, drop_caches: bool = False) -> int:
        """Run argv in the guest; output goes to on_output(stream, data) as it comes (to
        our own stdout/stderr by default). Returns the exit status (128+N for signal N,
        124 on timeout). Ctrl-C is passed on to the command: SIGINT, then SIGKILL.
        drop_caches: the guest forgets what it cached of the shared project first."""
        out = on_output or write_through
        rid = self.new_id()
        self.send({"op": "exec", "id": rid, "argv": argv, "cwd": cwd, "env": env or {},
                   "stdin": stdin, "drop_caches": drop_caches})
        if stdin:
            threading.Thread(target=self._feed_stdin, args=(rid,), daemon=True).start()
        deadline = None if timeout is None else time.monotonic() + timeout
        interrupts = 0
        while True:
            try:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                msg = self.recv(rid, left if left is None else min(left, 1.0))
                if msg is None:
                    if deadline is not None and time.monotonic() >= deadline:
                        say(f"timed out after {timeout:.0f} s: killing {argv[0]}")
                        self.send({"op": "signal", "id": rid, "signal": signal.SIGKILL})
                        self._wait_exit(rid, 30)
                        return 124
                elif "stream" in msg:
                    out(msg["stream"], base64.b64decode(msg["data"]))
                elif "exit" in msg:
                    if msg.get("error"):
                        say(msg["error"])
                    return int(msg["exit"])
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts > 2:
                    raise
                sig = signal.SIGINT if interrupts == 1 else signal.SIGKILL
                say(f"interrupted: sending {sig.name} to the guest's {argv[0]}")
                self.send({"op": "signal", "id": rid, "signal": sig})

    def _wait_exit(self, rid: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.recv(rid, deadline - time.monotonic())
            if msg is None or "exit" in msg:
                return

    def _feed_stdin(self, rid: str) -> None:
        """Our stdin to the command's, in chunks, then EOF (`vm.py exec -i`)."""
        with contextlib.suppress(OSError):
            while data := os.read(0, 16384):
                self.send({"op": "stdin", "id": rid, "data": base64.b64encode(data).decode()})
            self.send({"op": "stdin", "id": rid, "eof": True})


def write_through(stream: str, data: bytes) -> None:
    f = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
    f.write(data)
    f.flush()


@contextlib.contextmanager
def agent_session() -> Iterator[Agent]:
    """The agent, for one caller at a time (the port carries a single connection)."""
    if not running():
        raise VMError("the VM is not running (scripts/vm/vm.py start)")
    with locked(RUN / "agent.lock", "another command in the VM to finish"):
        try:
            a = Agent()
        except OSError as e:
            raise VMError(f"cannot reach the agent's socket: {e}")
        try:
            if a.ping(30) is None:
                raise VMError("the guest agent does not answer (see build/vm/run/serial.log)")
            yield a
        finally:
            a.close()


def guest_run(argv: list[str], timeout: float = 60, check: bool = True) -> tuple[int, str]:
    """Run argv in the guest and capture its output (stdout and stderr together)."""
    chunks: list[bytes] = []
    with agent_session() as a:
        rc = a.run(argv, on_output=lambda _s, d: chunks.append(d), timeout=timeout)
    text = b"".join(chunks).decode(errors="replace")
    if check and rc != 0:
        raise VMError(f"{' '.join(argv)} failed in the guest ({rc}): {text.strip()}")
    return rc, text


# ---------------------------------------------------------------------- QEMU
def read_state() -> dict[str, Any]:
    try:
        return json.loads((RUN / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def is_our_qemu(pid: int) -> bool:
    """pid is alive and is the QEMU this run directory belongs to (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        return False
    return str(RUN / "qmp.sock").encode() in cmdline


def running() -> int | None:
    """The recorded QEMU's pid when it is alive, else None."""
    pid = read_state().get("pid")
    return pid if isinstance(pid, int) and is_our_qemu(pid) else None


def kvm_usable() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def qemu_version() -> str:
    r = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True)
    return r.stdout.splitlines()[0] if r.returncode == 0 and r.stdout else "unknown"


def probe_key(img: Path) -> dict[str, str]:
    """What a KVM probe result depends on: the host's kernel, QEMU, the guest's kernel."""
    return {"host_kernel": platform.release(), "qemu": qemu_version(),
            "guest_kernel": (img / "kernel-version").read_text().strip()}


def cached_kvm_failure(img: Path) -> dict[str, Any] | None:
    try:
        probe = json.loads((VM_DIR / "kvm-probe.json").read_text())
    except (OSError, ValueError):
        return None
    if probe.get("key") == probe_key(img) and probe.get("ok") is False:
        return probe
    return None


def set_pdeathsig() -> None:
    """In QEMU's child before exec: die with the vm.py that started it (`test`)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def qpath(path: Path) -> str:
    """A path inside a QEMU option list, where a comma is written as two."""
    return str(path).replace(",", ",,")


def qemu_argv(img: Path, accel: str, cache: str) -> list[str]:
    """The QEMU command line (see the module docstring for the choices)."""
    if " " in str(REPO) or "\t" in str(REPO):
        raise VMError(f"the repository path has a blank in it, the guest cannot mount it: {REPO}")
    append = " ".join([
        "root=/dev/vda rw console=ttyS0",
        # the production layout, stated rather than left to systemd's default
        "systemd.unified_cgroup_hierarchy=1",
        # a guest panic ends QEMU (-no-reboot) instead of hanging until a timeout
        "panic=-1",
        # a throwaway test guest: CPU-bug mitigations only cost time under emulation
        "mitigations=off",
        f"yacr.project={REPO}", f"yacr.9p_cache={cache}",
    ])
    return [
        "qemu-system-x86_64", "-name", "yacr-vm",
        "-machine", f"pc,accel={accel}", "-cpu", "host" if accel == "kvm" else "max",
        "-smp", str(SMP), "-m", str(MEM_MB),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", str(img / "vmlinuz"), "-initrd", str(img / "initrd.img"),
        "-append", append,
        "-drive", f"file={qpath(img / 'rootfs.ext4')},format=raw,if=virtio,snapshot=on",
        "-virtfs", f"local,path={qpath(REPO)},mount_tag=project,security_model=passthrough,"
                   "multidevs=remap,id=project",
        "-device", "virtio-serial-pci",
        "-chardev", f"socket,id=agent,path={qpath(RUN / 'agent.sock')},server=on,wait=off",
        "-device", "virtserialport,chardev=agent,name=yacr.agent",
        "-device", "virtio-rng-pci",
        "-serial", f"file:{qpath(RUN / 'serial.log')}",
        "-qmp", f"unix:{qpath(RUN / 'qmp.sock')},server=on,wait=off",
        "-nic", "none",
    ]


def clean_run_dir(keep_logs: bool) -> None:
    """Remove the files of a VM that is gone: sockets, pid, state, snapshot overlays, and
    unless keep_logs (after a stop, to read what happened) its logs."""
    RUN.mkdir(parents=True, exist_ok=True)
    logs = ("serial.log", "qemu.log", "qemu-cmdline", "pytest.log", "junit.xml")
    for p in RUN.iterdir():
        if p.name.endswith(".lock") or (keep_logs and p.name in logs):
            continue
        if p.is_file() or p.is_socket():
            p.unlink()


def boot(img: Path, accel: str, cache: str, timeout: float, attached: bool,
         banner_timeout: float | None = None) -> float:
    """Start QEMU and wait for the agent; returns the seconds it took. Raises VMError (with
    QEMU stopped) if the agent did not answer within timeout, or if the kernel's banner
    is not on the serial console within banner_timeout."""
    clean_run_dir(keep_logs=False)
    argv = qemu_argv(img, accel, cache)
    (RUN / "qemu-cmdline").write_text(" ".join(argv) + "\n")
    env = dict(os.environ, TMPDIR=str(RUN))  # the snapshot=on overlay goes there
    t0 = time.monotonic()
    with open(RUN / "qemu.log", "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                env=env, start_new_session=True,
                                preexec_fn=set_pdeathsig if attached else None)
    CHILDREN[proc.pid] = proc
    (RUN / "qemu.pid").write_text(f"{proc.pid}\n")
    (RUN / "state.json").write_text(json.dumps({
        "pid": proc.pid, "accel": accel, "image": img.name, "9p_cache": cache,
        "started": time.time(), "attached": attached}) + "\n")
    deadline = t0 + timeout
    banner = False
    while time.monotonic() < deadline:
        if banner_timeout is not None and not banner:
            with contextlib.suppress(OSError):
                banner = b"Linux version" in (RUN / "serial.log").read_bytes()
            if not banner and time.monotonic() - t0 > banner_timeout:
                kill_qemu(proc.pid, proc)
                raise VMError(f"no kernel banner on the console within {banner_timeout:.0f} s "
                              f"under {accel}: {serial_tail()!r}")
        if proc.poll() is not None:
            tail = (RUN / "qemu.log").read_text(errors="replace").strip()[-2000:]
            raise VMError(f"QEMU ({accel}) exited with {proc.returncode}: {tail}")
        try:
            a = Agent(connect_timeout=1)
        except OSError:
            time.sleep(0.2)
            continue
        try:
            if a.ping(1.0) is not None:
                return time.monotonic() - t0
        except (OSError, VMError):
            time.sleep(0.2)
        finally:
            a.close()
    kill_qemu(proc.pid, proc)
    raise VMError(f"no answer from the guest agent within {timeout:.0f} s under {accel}; "
                  f"the console ended with {serial_tail()!r}")


def serial_tail(n: int = 200) -> str:
    """The last characters of the guest's console, for error messages."""
    try:
        return (RUN / "serial.log").read_bytes()[-n:].decode(errors="replace").strip()
    except OSError:
        return ""


def start(accel: str | None = None, cache: str | None = None, attached: bool = False) -> str:
    """Boot the VM unless it runs; returns the accelerator it runs under."""
    accel = accel or os.environ.get("YACR_VM_ACCEL", "auto")
    cache = cache or os.environ.get("YACR_VM_9P_CACHE", "loose")
    if accel not in ("auto", "kvm", "tcg"):
        raise VMError(f"YACR_VM_ACCEL must be auto, kvm or tcg, not {accel!r}")
    with locked(RUN / "vm.lock", "another vm.py start/stop"):
        if (pid := running()) is not None:
            st = read_state()
            say(f"already running (pid {pid}, {st.get('accel', '?').upper()})")
            return str(st.get("accel", "?"))
        img = ensure_image()
        used = None
        if accel in ("auto", "kvm") and not kvm_usable():
            say("KVM: /dev/kvm is not usable here")
            if accel == "kvm":
                raise VMError("YACR_VM_ACCEL=kvm, but /dev/kvm is not usable")
        elif accel == "auto" and (failed := cached_kvm_failure(img)) is not None:
            say(f"KVM: skipped, its probe boot failed here on {failed.get('when', '?')} "
                f"(remembered in {VM_DIR / 'kvm-probe.json'}; YACR_VM_ACCEL=kvm retries)")
        else:
            say(f"KVM: probe boot (the agent must answer within {KVM_PROBE_SECONDS:.0f} s)")
            try:
                took = boot(img, "kvm", cache, KVM_PROBE_SECONDS, attached,
                            banner_timeout=KVM_BANNER_SECONDS)
                used = "kvm"
                ok, why = True, f"agent ready in {took:.1f} s"
            except VMError as e:
                ok, why = False, str(e)
                say(f"KVM: probe failed: {why.splitlines()[0]}")
            (VM_DIR / "kvm-probe.json").write_text(json.dumps({
                "key": probe_key(img), "ok": ok, "why": why,
                "when": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1) + "\n")
            if not ok and accel == "kvm":
                raise VMError("YACR_VM_ACCEL=kvm, but the KVM boot failed")
        if used is None:
            say("booting under TCG (emulation: slower, but works everywhere)")
            took = boot(img, "tcg", cache, BOOT_SECONDS, attached)
            used = "tcg"
        say(f"guest ready in {took:.1f} s under {used.upper()} (9p cache={cache})")
    check_guest()
    return used


def check_guest() -> None:
    """The guest must have the layout it is for: fail loudly rather than test the wrong
    thing. Also says what it found."""
    # is-system-running --wait: the agent answers before the boot has finished, and the
    # tests should not share the CPUs with the rest of it
    _, out = guest_run(["sh", "-c",
                        "stat -fc %T /sys/fs/cgroup; cat /sys/fs/cgroup/cgroup.controllers; "
                        "cat /proc/1/comm; timeout 120 systemctl is-system-running --wait; "
                        "cat /run/yacr-project 2>/dev/null || echo none; uname -r"],
                       timeout=150)
    fs, ctrls, init, sysstate, project, kernel = (out.splitlines() + [""] * 6)[:6]
    missing = [c for c in CONTROLLERS if c not in ctrls.split()]
    problems = []
    if fs != "cgroup2fs":
        problems.append(f"/sys/fs/cgroup is {fs}, not cgroup2")
    if missing:
        problems.append(f"cgroup2 lacks {' '.join(missing)}")
    if init != "systemd":
        problems.append(f"pid 1 is {init}, not systemd")
    if project != str(REPO):
        problems.append(f"the project is not mounted at {REPO} (see the guest's "
                        "`journalctl -u yacr-project`)")
    say(f"guest: kernel {kernel}, pid 1 {init} ({sysstate}), {fs} [{ctrls}], "
        f"project {project}")
    if problems:
        raise VMError("the guest is not the production layout: " + "; ".join(problems))
    if sysstate != "running":
        _, failed = guest_run(["systemctl", "--failed", "--no-legend", "--plain"], check=False)
        say(f"warning: the guest's systemd is {sysstate}: {' '.join(failed.split()) or '?'}")


def wait_gone(pid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    """Wait for pid to end (reaping it when it is our child); True once it has. A QEMU
    started by an earlier vm.py is reaped by init: wait a moment for that too, so that
    no <defunct> entry is left when this returns."""
    proc = proc or CHILDREN.get(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return True
        if proc is None and not is_our_qemu(pid):
            reaped = time.monotonic() + 3
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < reaped:
                time.sleep(0.05)
            return True
        time.sleep(0.1)
    return False


def qmp(command: str) -> None:
    """One QMP command to QEMU (quit, system_powerdown)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(RUN / "qmp.sock"))
        f = s.makefile("rwb")
        f.readline()  # greeting
        for cmd in ("qmp_capabilities", command):
            f.write(json.dumps({"execute": cmd}).encode() + b"\n")
            f.flush()
            f.readline()


def kill_qemu(pid: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    """QMP quit, then SIGTERM, then SIGKILL: the pid is gone when this returns."""
    proc = proc or CHILDREN.get(pid)
    with contextlib.suppress(OSError):
        qmp("quit")
    if wait_gone(pid, proc, 5):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc is None and not is_our_qemu(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if wait_gone(pid, proc, 10):
            return
    raise VMError(f"QEMU (pid {pid}) survived SIGKILL")


def stop() -> None:
    """Power the guest off (so its filesystems and units stop cleanly), then make sure
    that no QEMU is left, whatever state it was in.

    Through the agent when it answers at once; through ACPI (QMP system_powerdown) when
    a command holds the agent; with QMP quit when the guest is not up (a boot that was
    interrupted has nothing to shut down). Then QMP quit, SIGTERM, SIGKILL if needed."""
    with locked(RUN / "vm.lock", "another vm.py start/stop"):
        pid = running()
        if pid is None:
            say("not running")
            clean_run_dir(keep_logs=True)
            return
        t0 = time.monotonic()
        how = power_off()
        if how == "quit":
            kill_qemu(pid)
            say("QEMU quit (the guest was not answering)")
        elif wait_gone(pid, None, 60):
            say(f"powered off ({how}) in {time.monotonic() - t0:.1f} s")
        else:
            say(f"the guest did not power off ({how}) within 60 s: quitting QEMU")
            kill_qemu(pid)
        clean_run_dir(keep_logs=True)


def power_off() -> str:
    """Ask the guest to power off; returns how it was asked ("quit": it was not)."""
    with open(RUN / "agent.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with contextlib.suppress(OSError):
                qmp("system_powerdown")
                return "ACPI, a command was running"
            return "quit"
        try:
            a = Agent(connect_timeout=2)
        except OSError:
            return "quit"
        try:
            if a.ping(3) is None:
                return "quit"
            a.run(["systemctl", "poweroff", "--no-block"], timeout=20,
                  on_output=lambda _s, _d: None)
            return "systemctl poweroff"
        except (OSError, VMError):
            return "quit"
        finally:
            a.close()


# ---------------------------------------------------------------------- the test suite
def suite_paths() -> list[str]:
    """tests/vm/SUITE: pytest paths or node ids, one a line, `#` comments."""
    out = []
    for line in SUITE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def junit_counts(xml: str) -> tuple[int, int, int]:
    """(passed, failed, skipped) from pytest's JUnit XML; errors count as failed."""
    root = ET.fromstring(xml)
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    tests = failures = errors = skipped = 0
    for s in suites:
        tests += int(s.get("tests", 0))
        failures += int(s.get("failures", 0))
        errors += int(s.get("errors", 0))
        skipped += int(s.get("skipped", 0))
    return tests - failures - errors - skipped, failures + errors, skipped


def run_suite(extra: list[str]) -> tuple[int, tuple[int, int, int] | None]:
    """pytest on the SUITE inside the guest with the project's venv, as root. Returns its
    exit status and the counts from its JUnit XML (kept in build/vm/run/)."""
    py = str(REPO / ".venv" / "bin" / "python3")
    argv = [py, "-m", "pytest", "-p", "no:cacheprovider", "--junitxml", GUEST_JUNIT,
            "--durations=10", *suite_paths(), *extra]
    say("in the guest: " + " ".join(argv[2:]))
    t0 = time.monotonic()
    guest_run(["rm", "-f", GUEST_JUNIT])
    with open(RUN / "pytest.log", "wb") as log, agent_session() as a:

        def tee(stream: str, data: bytes) -> None:
            log.write(data)
            write_through(stream, data)

        rc = a.run(argv, on_output=tee, timeout=TEST_TIMEOUT, drop_caches=True)
    say(f"pytest exited {rc} after {time.monotonic() - t0:.0f} s")
    code, xml = guest_run(["cat", GUEST_JUNIT], check=False)
    if code != 0:
        say("pytest wrote no JUnit XML: no counts")
        return rc, None
    (RUN / "junit.xml").write_text(xml)
    try:
        return rc, junit_counts(xml)
    except (ET.ParseError, ValueError) as e:
        say(f"unreadable JUnit XML: {e}")
        return rc, None


def cmd_test(extra: list[str]) -> int:
    """`make test-vm`: build/boot, run the suite, power off; the last line is the counts.

    A VM already started with `vm.py start` is used as it is and left running."""
    t0 = time.monotonic()
    counts: tuple[int, int, int] | None = None
    rc = 2
    ours = running() is None
    try:
        if ours:
            accel = start(attached=True)
        else:
            accel = str(read_state().get("accel", "?"))
            say("using the VM that `vm.py start` started; it stays up afterwards")
            check_guest()
        say(f"accelerator: {accel.upper()}")
        rc, counts = run_suite(extra)
    except VMError as e:
        say(f"error: {e}")
    except KeyboardInterrupt:
        say("interrupted")
        rc = 130
    finally:
        if ours:
            try:
                stop()
            except (OSError, VMError) as e:
                say(f"stopping the VM: {e}")
                if (pid := running()) is not None:
                    kill_qemu(pid)
    say(f"make test-vm took {time.monotonic() - t0:.0f} s; logs in {RUN.relative_to(REPO)}/")
    passed, failed, skipped = counts or (0, 0, 0)
    if counts is None and rc == 0:
        rc = 2
    print(f"{skipped} skipped", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    return rc


# ---------------------------------------------------------------------- the CLI
def cmd_status() -> int:
    pid = running()
    if pid is None:
        print("not running")
        return 1
    st = read_state()
    up = time.time() - float(st.get("started", time.time()))
    print(f"running: pid {pid}, {str(st.get('accel')).upper()}, {st.get('image')}, "
          f"9p cache={st.get('9p_cache')}, up {up:.0f} s")
    try:
        with agent_session() as a:
            pong = a.ping(5) or {}
        print(f"agent: answers (guest uptime {pong.get('uptime')} s, "
              f"project {pong.get('project')})")
    except VMError as e:
        print(f"agent: {e}")
        return 1
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise VMError("exec: no command given")
    env = {}
    for kv in args.env:
        k, sep, v = kv.partition("=")
        if not sep:
            raise VMError(f"exec: -e wants NAME=VALUE, not {kv!r}")
        env[k] = v
    with agent_session() as a:
        rc = a.run(argv, cwd=args.cwd or str(REPO), env=env, stdin=args.interactive,
                   timeout=args.timeout, drop_caches=not args.cached)
    if rc != 0 or args.verbose:
        say(f"exit status {rc}")
    return rc


def cmd_log(lines: int) -> int:
    path = RUN / "serial.log"
    if not path.exists():
        print("no serial log (the VM has not run)")
        return 1
    text = path.read_text(errors="replace").splitlines()
    print("\n".join(text[-lines:]))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build the guest image if its cache key has none")
    sp = sub.add_parser("start", help="boot the VM in the background, wait for its agent")
    sp.add_argument("--accel", choices=("auto", "kvm", "tcg"), help="default: auto")
    sp.add_argument("--9p-cache", dest="cache", choices=("none", "loose", "mmap"),
                    help="9p cache mode of the shared project (default: loose)")
    sub.add_parser("stop", help="power the VM off; no QEMU is left")
    sub.add_parser("status", help="is the VM running, does its agent answer")
    lp = sub.add_parser("log", help="the end of the guest's serial console")
    lp.add_argument("-n", type=int, default=40)
    ep = sub.add_parser("exec", help="run a command in the VM (cwd: the project)")
    ep.add_argument("-i", "--interactive", action="store_true", help="pass our stdin on")
    ep.add_argument("-C", "--cwd", help=f"working directory (default {REPO})")
    ep.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE")
    ep.add_argument("-t", "--timeout", type=float, help="kill it after this many seconds")
    ep.add_argument("-v", "--verbose", action="store_true", help="always say the status")
    ep.add_argument("--cached", action="store_true",
                    help="keep the guest's caches of the project (faster; may be stale)")
    ep.add_argument("argv", nargs=argparse.REMAINDER, metavar="CMD [ARG...]")
    tp = sub.add_parser("test", help="boot, run tests/vm/SUITE, stop (make test-vm)")
    tp.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="PYTEST-ARG")
    # `test -x -k kill`: options after `test` are pytest's, which argparse cannot know
    args, unknown = p.parse_known_args()
    if unknown and args.cmd != "test":
        p.error(f"unrecognized arguments: {' '.join(unknown)}")

    # SIGTERM/SIGHUP (CI's end, a closed terminal) unwind like Ctrl-C: finally blocks run
    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)
    try:
        if args.cmd == "build":
            ensure_image()
            return 0
        if args.cmd == "start":
            start(args.accel, args.cache)
            return 0
        if args.cmd == "stop":
            stop()
            return 0
        if args.cmd == "status":
            return cmd_status()
        if args.cmd == "log":
            return cmd_log(args.n)
        if args.cmd == "exec":
            return cmd_exec(args)
        return cmd_test(unknown + args.pytest_args)
    except VMError as e:
        say(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `vm.py exec ... | head`
        return 141


if __name__ == "__main__":
    sys.exit(main())
