"""`yacr profile`: run a container once, record the syscalls it makes, write the minimal profile.

The recording uses the seccomp user-notification path yacr already has for
SCMP_ACT_NOTIFY (linux.seccomp.listenerPath): the container runs under a filter whose
default action is NOTIFY, the runtime hands the listener fd to the agent at
listenerPath, and the agent here, in the `yacr profile` process, receives every
notification, records (arch, nr) and answers SECCOMP_USER_NOTIF_FLAG_CONTINUE (Linux
5.5+), so the kernel runs the syscall as if no filter were there. No audit log (which
SECCOMP_RET_LOG needs, and which is unreadable without auditd), no eBPF, no ptrace.

What a recorded profile holds, and why:

- the syscalls of the workload: everything notified from the first execve on, per
  listener (one per container process tree: init's, and one for each `yacr exec` run
  while recording). Before that execve the only process under the filter is yacr's own
  init finishing its set-up, which a real (non-NOTIFY) profile never sees: yacr loads
  such a filter at its last step, right before execve;
- what yacr's last step needs after loading the filter: execve (and, without
  noNewPrivileges, capset and prctl, which drop the CAP_SYS_ADMIN kept for loading), and
  write and exit_group to report a failed execve;
- HANDOFF: the syscalls the recorder filter must allow without notifying. Init loads a
  NOTIFY filter and then sends its listener fd to the runtime with sendmsg; notified, that
  sendmsg would wait for an agent that cannot have the fd yet, forever. The allocator
  calls are there for the same window. These cannot be observed, so they are always in
  the profile (the workload almost always makes them anyway).

The profile's default action is ERRNO(EPERM); its architectures are those the workload
used (so a program recorded as x86_64 cannot switch to the 32-bit ABIs later).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from yacr.errors import YacrError
from yacr.linux import bpf

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# struct seccomp_notif is 80 bytes, struct seccomp_notif_resp 24 (linux/seccomp.h).
NOTIF_RECV = 0xC0502100  # SECCOMP_IOCTL_NOTIF_RECV
NOTIF_SEND = 0xC0182101  # SECCOMP_IOCTL_NOTIF_SEND
FLAG_CONTINUE = 1  # SECCOMP_USER_NOTIF_FLAG_CONTINUE

HANDOFF = ("sendmsg", "brk", "mmap", "munmap")
LAST_STEP = ("execve", "write", "exit_group")
LAST_STEP_KEEPING_CAPS = ("capset", "prctl")
RECORD_ARCHES = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
SCMP_ARCH = {bpf.AUDIT_ARCH_X86_64: "SCMP_ARCH_X86_64", bpf.AUDIT_ARCH_I386: "SCMP_ARCH_X86"}
EXECS = ("execve", "execveat")
AUDIT_ARCH_X32 = 0x4000003E  # libseccomp's token for x32 (AUDIT_ARCH_X86_64 without 64BIT)


def recording_profile(listener_path: str) -> dict[str, Any]:
    """The linux.seccomp section a recording run uses."""
    return {"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": listener_path,
            "listenerMetadata": "yacr-profile", "architectures": list(RECORD_ARCHES),
            "syscalls": [{"names": list(HANDOFF), "action": "SCMP_ACT_ALLOW"}]}


@dataclass
class Listener:
    """One listener fd (one filtered process tree) and what it saw, in order."""

    fd: int
    state: dict[str, Any]
    calls: list[tuple[int, int, int]] = field(default_factory=list)  # (pid, arch, nr)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def serve(self) -> None:
        try:
            poller = select.poll()
            poller.register(self.fd, select.POLLIN)
            while True:
                events = poller.poll(1000)
                if not events:
                    continue
                if not events[0][1] & select.POLLIN:
                    return  # POLLHUP: every process under the filter is gone
                buf = bytearray(80)  # the kernel wants it zeroed, every time
                try:
                    fcntl.ioctl(self.fd, NOTIF_RECV, buf)
                except OSError as e:
                    if e.errno in (errno.EINTR, errno.ENOENT):
                        continue  # the caller died before we read its notification
                    return
                nid, pid, _flags, nr, arch = struct.unpack_from("=QIIiI", buf)
                with self.lock:
                    self.calls.append((pid, arch, nr))
                resp = bytearray(struct.pack("=QqiI", nid, 0, 0, FLAG_CONTINUE))
                try:
                    fcntl.ioctl(self.fd, NOTIF_SEND, resp)
                except OSError as e:
                    if e.errno != errno.ENOENT:  # ENOENT: the caller was killed meanwhile
                        raise
        finally:
            os.close(self.fd)


class Recorder:
    """The listenerPath agent: accepts each listener fd the runtime sends and records."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.bind(path)
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.listeners: list[Listener] = []
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                conn.settimeout(5)
                msg, fds, _f, _a = socket.recv_fds(conn, 1 << 20, 4)
            except OSError as e:
                self.errors.append(f"listener connection: {e}")
                continue
            finally:
                conn.close()
            if len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                self.errors.append("a listener connection came without exactly one fd")
                continue
            try:
                state = json.loads(msg)
            except ValueError:
                state = {}
            lst = Listener(fds[0], state)
            t = threading.Thread(target=lst.serve, daemon=True)
            self.listeners.append(lst)
            self.threads.append(t)
            t.start()

    def stop(self, timeout: float = 10) -> None:
        """Stop accepting, and wait for every listener to see its processes gone."""
        self.stopping.set()
        self.acceptor.join(timeout)
        self.sock.close()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self.threads):
            raise YacrError("yacr profile: processes of the container still run under the "
                            "recording filter")


@dataclass
class Recording:
    """What the workload called: per architecture, syscall numbers and how often."""

    counts: dict[tuple[int, int], int] = field(default_factory=dict)  # (arch, nr) -> calls
    setup_calls: int = 0  # notifications before execve: yacr's own init, not the workload
    processes: set[int] = field(default_factory=set)

    @classmethod
    def from_listeners(cls, listeners: list[Listener]) -> Recording:
        rec = cls()
        from yacr.linux.surface import syscall_number

        exec_nrs: dict[int, set[int | None]] = {}
        for lst in listeners:
            started = False
            with lst.lock:
                calls = list(lst.calls)
            for pid, arch, nr in calls:
                if not started:
                    if arch not in exec_nrs:
                        exec_nrs[arch] = {syscall_number(n, arch) for n in EXECS}
                    if nr in exec_nrs[arch]:
                        started = True
                    else:
                        rec.setup_calls += 1
                        continue
                rec.counts[(arch, nr)] = rec.counts.get((arch, nr), 0) + 1
                rec.processes.add(pid)
        return rec

    def names(self) -> tuple[dict[str, int], list[str]]:
        """({name: calls}, [numbers the host's libseccomp has no name for, so that no
        profile can allow them])."""
        from yacr.linux.surface import syscall_name

        out: dict[str, int] = {}
        unnamed = []
        for (arch, nr), n in sorted(self.counts.items()):
            if arch == bpf.AUDIT_ARCH_X86_64 and nr & bpf.X32_SYSCALL_BIT:
                name = syscall_name(nr, AUDIT_ARCH_X32, False) or syscall_name(
                    nr & ~bpf.X32_SYSCALL_BIT, AUDIT_ARCH_X32, False)
            else:
                name = syscall_name(nr, arch, False)
            if name is None:
                unnamed.append(f"{nr} (arch {arch:#x})")
                continue
            out[name] = out.get(name, 0) + n
        return out, unnamed

    def architectures(self) -> list[str]:
        arches = {SCMP_ARCH.get(a, "") for a, nr in self.counts}
        if any(a == bpf.AUDIT_ARCH_X86_64 and nr & bpf.X32_SYSCALL_BIT
               for a, nr in self.counts):
            arches.add("SCMP_ARCH_X32")
        arches.discard("")
        native = "SCMP_ARCH_X86_64"
        return [native] + sorted(arches - {native})


def minimal_profile(rec: Recording, no_new_privileges: bool) -> dict[str, Any]:
    """An OCI linux.seccomp section allowing exactly what the recording needs."""
    called, _unnamed = rec.names()
    names = set(called) | set(LAST_STEP) | set(HANDOFF)
    if not no_new_privileges:
        names |= set(LAST_STEP_KEEPING_CAPS)
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "architectures": rec.architectures(),
            "syscalls": [{"names": sorted(names), "action": "SCMP_ACT_ALLOW"}]}


def record_run(yacr: list[str], bundle: str, cid: str,
               timeout: float | None = None) -> tuple[int, Recording, dict[str, Any]]:
    """Run the bundle's container once under the recording filter, in the foreground.

    `yacr` is the command line that starts yacr with its global flags. Returns the
    container's exit status, the recording, and the bundle's config.
    """
    import subprocess
    import tempfile

    from yacr.spec import read_json_file

    cfg_path = os.path.join(bundle, "config.json")
    cfg = read_json_file(cfg_path, "config.json")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("process"), dict):
        raise YacrError(f"{cfg_path}: process: a container to profile needs a process")
    root = cfg.get("root")
    if not isinstance(root, dict) or not isinstance(root.get("path"), str):
        raise YacrError(f"{cfg_path}: root.path: expected a string")
    spec = json.loads(json.dumps(cfg))
    spec["root"]["path"] = os.path.join(os.path.abspath(bundle), root["path"])
    with tempfile.TemporaryDirectory(prefix="yacr-profile-") as tmp:
        sock = os.path.join(tmp, "agent.sock")
        spec.setdefault("linux", {})["seccomp"] = recording_profile(sock)
        rec_bundle = os.path.join(tmp, "bundle")
        os.mkdir(rec_bundle)
        with open(os.path.join(rec_bundle, "config.json"), "w") as f:
            json.dump(spec, f)
        recorder = Recorder(sock)
        try:
            proc = subprocess.Popen(yacr + ["run", "--bundle", rec_bundle, cid])
            try:
                rc = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                rc = _stop(yacr, cid, proc)
            except BaseException:
                _stop(yacr, cid, proc)
                raise
        finally:
            recorder.stop()
    if recorder.errors:
        raise YacrError(f"yacr profile: {recorder.errors[0]}")
    if not recorder.listeners:
        raise YacrError("yacr profile: the runtime never handed the recorder a listener "
                        "(did the container start?)")
    return rc, Recording.from_listeners(recorder.listeners), cfg


def _stop(yacr: list[str], cid: str, proc: Any) -> int:
    """End a recorded container that outlived --timeout: TERM, then KILL."""
    import subprocess

    for sig in ("TERM", "KILL"):
        subprocess.run(yacr + ["kill", "--all", cid, sig], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30)
        try:
            return int(proc.wait(5))
        except subprocess.TimeoutExpired:
            continue
    proc.kill()
    return int(proc.wait())
