"""linux.seccomp: actions, errno values, argument conditions, warnings and SCMP_ACT_NOTIFY."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import struct
import threading

ARCHES = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]


def with_seccomp(bundles, script: str, seccomp: dict, **kw) -> dict:
    spec = bundles.spec(["sh", "-c", script], **kw)
    spec["linux"]["seccomp"] = seccomp
    return spec


def run(runtime, bundles, spec, **kw):
    return runtime("run", "--bundle", bundles.write(spec), runtime.new_id(), **kw)


def test_errno_with_errno_ret(runtime, bundles):
    spec = with_seccomp(bundles, "mkdir /dev/shm/a; echo rc=$?", {
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": ARCHES,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 13}]})
    p = run(runtime, bundles, spec)
    assert p.returncode == 0, p.stderr
    assert "Permission denied" in p.stderr and "rc=1" in p.stdout


def test_default_errno_and_default_errno_ret(runtime, bundles):
    # Deny everything but what sh and the runtime's last steps need; mkdir is not allowed.
    allowed = ["read", "write", "exit_group", "exit", "execve", "brk", "mmap", "munmap",
               "arch_prctl", "set_tid_address", "rt_sigaction", "rt_sigprocmask", "getpid",
               "getppid", "geteuid", "getuid", "fstat", "newfstatat", "ioctl", "close",
               "capset", "prctl", "wait4", "fcntl", "dup2", "stat", "lstat", "open",
               "openat", "rt_sigreturn", "getcwd", "prlimit64", "mprotect", "futex",
               "set_robust_list", "rseq", "getrandom", "writev", "readv", "pread64", "clone",
               "clone3", "fork", "vfork", "wait4", "waitid", "exit", "pipe", "pipe2"]
    spec = with_seccomp(bundles, "mkdir /dev/shm/d || echo denied", {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "architectures": ARCHES,
        "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]})
    p = run(runtime, bundles, spec)
    assert p.returncode == 0, p.stderr
    assert "denied" in p.stdout
    assert "Function not implemented" in p.stderr  # errno 38, ENOSYS


def test_kill_process(runtime, bundles):
    spec = with_seccomp(bundles, "echo before; exec mkdir /dev/shm/x", {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}]})
    p = run(runtime, bundles, spec)
    assert p.returncode == 128 + 31  # SIGSYS
    assert p.stdout == "before\n"


def test_argument_conditions(runtime, bundles):
    # personality(0xffffffff) only queries; deny any other value, as Docker's profile does.
    spec = with_seccomp(bundles, "linux32 true && echo changed || echo refused; "
                        "uname -m", {
                            "defaultAction": "SCMP_ACT_ALLOW",
                            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                                          "args": [{"index": 0, "value": 4294967295,
                                                    "op": "SCMP_CMP_NE"}]}]})
    p = run(runtime, bundles, spec)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["refused", "x86_64"]


def test_repeated_index_means_either(runtime, bundles):
    # Two conditions on one argument cannot both hold: they become two rules, either matches.
    spec = with_seccomp(bundles, "for a in linux32 linux64; do $a true && echo ok "
                        "|| echo refused; done", {
                            "defaultAction": "SCMP_ACT_ALLOW",
                            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                                          "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                                                   {"index": 0, "value": 0,
                                                    "op": "SCMP_CMP_EQ"}]}]})
    p = run(runtime, bundles, spec)
    assert p.stdout.split() == ["refused", "refused"], p.stderr


def test_masked_eq(runtime, bundles):
    # PER_LINUX32 (8) in the low byte is refused, PER_LINUX (0) is not.
    spec = with_seccomp(bundles, "for a in linux32 linux64; do $a true && echo ok "
                        "|| echo refused; done", {
                            "defaultAction": "SCMP_ACT_ALLOW",
                            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                                          "args": [{"index": 0, "value": 0xFF, "valueTwo": 8,
                                                    "op": "SCMP_CMP_MASKED_EQ"}]}]})
    p = run(runtime, bundles, spec)
    assert p.stdout.split() == ["refused", "ok"], p.stderr


def test_unknown_syscall_is_warned_and_skipped(runtime, bundles, tmp_path):
    spec = with_seccomp(bundles, "echo ok", {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["no_such_syscall", "mkdir"], "action": "SCMP_ACT_ERRNO"}]})
    log = tmp_path / "log.json"
    p = run(runtime, bundles, spec, log=str(log), log_format="json")
    assert p.returncode == 0 and p.stdout == "ok\n"
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert any("no_such_syscall" in r["msg"] and r["level"] == "warning" for r in recs)


def test_bad_seccomp_fields(runtime, bundles):
    for seccomp, fragment in (
        ({"defaultAction": "SCMP_ACT_BOGUS"}, "linux.seccomp.defaultAction"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_PDP11"]},
         "linux.seccomp.architectures[0]"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_BOGUS"]},
         "linux.seccomp.flags[0]"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
         "linux.seccomp.syscalls[0].args[0].index"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SORTOF"}]}]},
         "linux.seccomp.syscalls[0].args[0].op"),
        ({"defaultAction": "SCMP_ACT_NOTIFY"}, "listenerPath"),
    ):
        spec = with_seccomp(bundles, "true", seccomp)
        cid = runtime.new_id()
        p = runtime("create", "--bundle", bundles.write(spec), cid)
        assert p.returncode == 1 and fragment in p.stderr, (seccomp, p.stderr)
        assert "Traceback" not in p.stderr


def test_flags_and_log_action(runtime, bundles):
    spec = with_seccomp(bundles, "mkdir /dev/shm/x && echo ok", {
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_LOG"}]})
    p = run(runtime, bundles, spec)
    assert p.returncode == 0 and p.stdout == "ok\n", p.stderr


def test_filter_is_installed_on_the_process(runtime, bundles):
    spec = with_seccomp(bundles, "grep -E '^(Seccomp|NoNewPrivs)' /proc/self/status", {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]})
    spec["process"]["noNewPrivileges"] = False
    p = run(runtime, bundles, spec)
    fields = dict(line.split(":\t") for line in p.stdout.splitlines())
    assert fields["Seccomp"] == "2"
    assert fields["NoNewPrivs"] == "0"  # loaded with CAP_SYS_ADMIN, then dropped


def test_exec_gets_the_filter(runtime, bundles):
    spec = with_seccomp(bundles, "sleep 1000", {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 1}]})
    spec["process"]["args"] = ["sleep", "1000"]
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", bundles.write(spec), cid, check=True)
    p = runtime("exec", cid, "sh", "-c", "grep Seccomp: /proc/self/status; mkdir /dev/shm/q")
    assert "Seccomp:\t2" in p.stdout
    assert p.returncode != 0 and "Operation not permitted" in p.stderr


# struct seccomp_notif is 80 bytes, struct seccomp_notif_resp 24.
NOTIF_RECV = 0xC0502100
NOTIF_SEND = 0xC0182101


class Agent:
    """A seccomp agent: receives the notify fd and the state, answers mkdir with success."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.state: dict = {}
        self.seen: list[int] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.sock.accept()
        msg, fds, _f, _a = socket.recv_fds(conn, 65536, 1)
        conn.close()
        self.state = json.loads(msg)
        fd = fds[0]
        try:
            while True:
                buf = bytearray(80)
                try:
                    fcntl.ioctl(fd, NOTIF_RECV, buf)
                except OSError:
                    return  # every filtered process is gone
                nid, _pid, _flags, nr = struct.unpack_from("QIIi", buf)
                self.seen.append(nr)
                # pretend it worked, without doing it
                fcntl.ioctl(fd, NOTIF_SEND, bytearray(struct.pack("QqiI", nid, 0, 0, 0)))
        finally:
            os.close(fd)


def test_notify_agent_gets_fd_and_state(runtime, bundles, tmp_path):
    agent = Agent(str(tmp_path / "agent.sock"))
    spec = with_seccomp(bundles, "mkdir /dev/shm/ghost; echo rc=$?; ls /dev/shm | wc -l", {
        "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": agent.sock.getsockname(),
        "listenerMetadata": "meta-1",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]})
    cid = runtime.new_id()
    p = runtime("run", "--bundle", bundles.write(spec), cid)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["rc=0", "0"]  # mkdir "succeeded" but made nothing
    assert agent.seen, "the agent saw no notification"
    assert agent.state["metadata"] == "meta-1"
    assert agent.state["state"]["id"] == cid
    assert agent.state["fds"] == ["seccompFd"]
