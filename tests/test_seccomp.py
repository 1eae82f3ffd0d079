"""linux.seccomp: actions, errno values, argument conditions, warnings and SCMP_ACT_NOTIFY."""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import threading

import pytest

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


# --- actions and ABIs the shell cannot show: a small static C probe ------------------------

PROBE_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char path[] = "/dev/shm/probe";
static volatile int sig_code = -1, sig_nr = -1;

static long int80(long nr, long a, long b) {
    long rc;
    __asm__ volatile("int $0x80" : "=a"(rc) : "a"(nr), "b"(a), "c"(b) : "memory");
    return rc;
}

static void on_sigsys(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)uc;
    sig_code = si->si_code;
    sig_nr = si->si_syscall;
}

static void *thread_main(void *arg) {
    (void)arg;
    syscall(SYS_mkdir, path, 0700);
    printf("thread survived\n");
    fflush(stdout);
    return NULL;
}

static void show(const char *what, long rc) {
    printf("%s=%ld\n", what, rc == -1 ? -(long)errno : rc);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *m = argv[i];
        if (!strcmp(m, "hello")) printf("hello\n");
        else if (!strcmp(m, "pause")) pause();
        else if (!strcmp(m, "mkdir64")) show(m, syscall(SYS_mkdir, path, 0700));
        else if (!strcmp(m, "mkdir32")) printf("%s=%ld\n", m, int80(39, (long)path, 0700));
        else if (!strcmp(m, "getpid32")) printf("%s=%ld\n", m, int80(20, 0, 0) > 0 ? 1L : 0L);
        else if (!strcmp(m, "mkdirx32")) show(m, syscall(0x40000000L | SYS_mkdir, path, 0700));
        else if (!strncmp(m, "sys:", 4)) show(m, syscall(atol(m + 4), 0, 0, 0));
        else if (!strncmp(m, "sys32:", 6)) {
            long rc = int80(atol(m + 6), 0, 0);
            printf("%s=%ld\n", m, rc);
        }
        else if (!strcmp(m, "trap")) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = on_sigsys;
            sa.sa_flags = SA_SIGINFO;
            sigaction(SIGSYS, &sa, NULL);
            syscall(SYS_mkdir, path, 0700);
            printf("trap code=%d nr=%d\n", sig_code, sig_nr);
        } else if (!strcmp(m, "thread")) {
            pthread_t t;
            pthread_create(&t, NULL, thread_main, NULL);
            pthread_join(t, NULL);
            printf("main survived\n");
        }
        fflush(stdout);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory) -> str:
    """A directory holding the probe, compiled static (the rootfs has no libc) and non-PIE
    (int 0x80 takes 32-bit pointers: its strings must sit below 4 GiB)."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler for the seccomp probe")
    d = tmp_path_factory.mktemp("probe")
    (d / "probe.c").write_text(PROBE_C)
    subprocess.run([cc, "-O1", "-static", "-no-pie", "-pthread", "-o", str(d / "probe"),
                    str(d / "probe.c")], check=True, capture_output=True, timeout=120)
    return str(d)


def probe_spec(bundles, probe_dir: str, modes: list[str], seccomp: dict) -> dict:
    spec = bundles.spec(["/rodata/probe", *modes])
    spec["mounts"].append({"destination": "/rodata", "type": "bind", "source": probe_dir,
                           "options": ["rbind", "ro"]})
    spec["linux"]["seccomp"] = seccomp
    return spec


def deny_mkdir(action: str, arches: list[str] | None = None, **rule) -> dict:
    prof = {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": action, **rule}]}
    if arches is not None:
        prof["architectures"] = arches
    return prof


def test_every_x86_abi_is_filtered_by_name(runtime, bundles, probe_dir):
    """One rule by name covers the x86_64, i386 (int 0x80, mkdir is 39 there) and x32
    (number | 0x40000000, refused even though this kernel has no x32) entry points."""
    spec = probe_spec(bundles, probe_dir, ["mkdir64", "mkdir32", "mkdirx32", "getpid32"],
                      deny_mkdir("SCMP_ACT_ERRNO", ARCHES, errnoRet=13))
    p = run(runtime, bundles, spec)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["mkdir64=-13", "mkdir32=-13", "mkdirx32=-13", "getpid32=1"]


@pytest.mark.parametrize("mode", ["getpid32", "mkdirx32"])
def test_an_abi_the_profile_does_not_name_is_no_way_around_it(runtime, bundles, probe_dir,
                                                               mode):
    """With only x86_64 listed, a syscall through another ABI kills the process, whatever
    its number: a filter written for x86_64 numbers must not judge i386 numbers."""
    spec = probe_spec(bundles, probe_dir, ["hello", mode, "hello"],
                      deny_mkdir("SCMP_ACT_ERRNO", ["SCMP_ARCH_X86_64"]))
    p = run(runtime, bundles, spec)
    assert p.returncode == 128 + 31, (p.returncode, p.stdout, p.stderr)
    assert p.stdout == "hello\n"


def test_syscalls_newer_than_the_profile_get_enosys(runtime, bundles, probe_dir):
    """A profile with an errno default answers ENOSYS, not its EPERM, for every syscall
    numbered above the highest it names (per ABI), so libc falls back as it does on an
    older kernel; a syscall the profile knew but did not allow keeps the default."""
    from yacr.linux.seccomp_default import default_profile
    from yacr.linux.surface import syscall_number

    allowed = next(r["names"] for r in default_profile()["syscalls"]
                   if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args"))
    assert "acct" not in allowed and "reboot" not in allowed
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ARCHES,
               "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]}
    acct = syscall_number("acct")
    spec = probe_spec(bundles, probe_dir, ["sys:1000", f"sys:{acct}", "sys32:1000",
                                           "sys32:51"], profile)  # 51: acct on i386
    p = run(runtime, bundles, spec)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["sys:1000=-38", f"sys:{acct}=-1", "sys32:1000=-38",
                                "sys32:51=-1"]


@pytest.mark.parametrize("default,stub", [("SCMP_ACT_ALLOW", False), ("SCMP_ACT_LOG", False),
                                          ("SCMP_ACT_TRACE", False), ("SCMP_ACT_NOTIFY", False),
                                          ("SCMP_ACT_ERRNO", True), ("SCMP_ACT_KILL", True),
                                          ("SCMP_ACT_TRAP", True)])
def test_the_stub_is_added_only_where_a_default_refuses(default, stub):
    """A default that lets syscalls through (ALLOW, LOG) leaves libseccomp's program as it
    is: the kernel itself answers ENOSYS. So do TRACE and NOTIFY, whose tracer or agent
    sees every syscall and answers the ones it does not know."""
    from yacr.linux import bpf
    from yacr.linux.seccomp import Filter

    prof = {"defaultAction": default, "architectures": ARCHES, "listenerPath": "/agent",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    if default == "SCMP_ACT_ERRNO":
        prof["syscalls"][0]["action"] = "SCMP_ACT_ALLOW"
    raw = Filter(prof, None).export()
    prog = Filter(prof, None).program().bpf
    assert (prog != raw) is stub
    assert prog.endswith(raw)
    verdict, _ = bpf.run(bpf.decode(prog), bpf.seccomp_data(1000))
    assert (verdict == 0x00050000 | 38) is stub


def test_trap_delivers_sigsys_with_the_syscall(runtime, bundles, probe_dir):
    p = run(runtime, bundles, probe_spec(bundles, probe_dir, ["trap", "hello"],
                                         deny_mkdir("SCMP_ACT_TRAP", ARCHES)))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[:2] == ["trap code=1 nr=83", "hello"]  # SYS_SECCOMP


def test_trace_without_a_tracer_fails_with_enosys(runtime, bundles, probe_dir):
    spec = probe_spec(bundles, probe_dir, ["mkdir64"],
                      deny_mkdir("SCMP_ACT_TRACE", ARCHES, errnoRet=7))
    p = run(runtime, bundles, spec)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "mkdir64=-38\n"


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"])
def test_kill_thread_kills_only_the_calling_thread(runtime, bundles, probe_dir, action):
    p = run(runtime, bundles, probe_spec(bundles, probe_dir, ["thread"],
                                         deny_mkdir(action, ARCHES)))
    assert p.returncode == 0, p.stderr
    assert p.stdout == "main survived\n"


def test_kill_process_kills_every_thread(runtime, bundles, probe_dir):
    p = run(runtime, bundles, probe_spec(bundles, probe_dir, ["hello", "thread"],
                                         deny_mkdir("SCMP_ACT_KILL_PROCESS", ARCHES)))
    assert p.returncode == 128 + 31
    assert p.stdout == "hello\n"


# What the runtime does in init and exec before execve. Loaded any earlier, the filter
# would kill the runtime itself; the probe makes none of these calls (it reads its stack
# limit with prlimit64 but sets nothing).
RUNTIME_SYSCALLS = ["openat2", "close_range", "mount", "umount2", "pivot_root", "setns",
                    "unshare", "chroot", "chdir", "fchdir", "getcwd", "setgroups", "setuid",
                    "setgid", "setresuid", "setresgid", "capset", "capget", "prctl",
                    "setrlimit", "open_tree", "move_mount", "mount_setattr", "fsopen",
                    "fsconfig", "fsmount", "sethostname", "setdomainname", "fstatfs",
                    "statfs", "sched_setscheduler", "ioprio_set", "personality", "umask",
                    "keyctl", "setsid", "ioctl", "dup2", "dup3", "fcntl", "socket",
                    "connect", "sendmsg", "recvmsg", "getdents64", "openat", "open", "close",
                    "read"]


def test_filter_loads_after_everything_the_runtime_does(runtime, bundles, probe_dir):
    """A profile that kills on openat2, close_range, mount, getcwd, capset... still runs
    its program, in init and in exec: the filter is the last thing before execve."""
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ARCHES, "syscalls": [
        {"names": RUNTIME_SYSCALLS, "action": "SCMP_ACT_KILL_PROCESS"},
        # prlimit64 that sets a limit (new_limit != NULL)
        {"names": ["prlimit64"], "action": "SCMP_ACT_KILL_PROCESS",
         "args": [{"index": 2, "value": 0, "op": "SCMP_CMP_NE"}]}]}
    spec = probe_spec(bundles, probe_dir, ["hello"], prof)
    spec["process"]["cwd"] = "/rodata"
    spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1000, "soft": 900}]
    p = run(runtime, bundles, spec)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "hello\n"
    # exec: the same profile, joined namespaces, a cwd, rlimits and the fd sweep
    spec["process"]["args"] = ["/rodata/probe", "pause"]
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", bundles.write(spec), cid, check=True)
    p = runtime("exec", "--cwd", "/rodata", cid, "/rodata/probe", "hello")
    assert (p.returncode, p.stdout) == (0, "hello\n"), p.stderr


OPERATOR_CASES = {  # op: (value, valueTwo) of the condition
    "SCMP_CMP_NE": (1 << 33, 0), "SCMP_CMP_LT": (1 << 33, 0), "SCMP_CMP_LE": (1 << 33, 0),
    "SCMP_CMP_EQ": (1 << 33, 0), "SCMP_CMP_GE": (1 << 33, 0), "SCMP_CMP_GT": (1 << 33, 0),
    "SCMP_CMP_MASKED_EQ": (0xFF0000000F, 0x0500000003)}


def _holds(op: str, arg: int, value: int, two: int) -> bool:
    return {"SCMP_CMP_NE": arg != value, "SCMP_CMP_LT": arg < value,
            "SCMP_CMP_LE": arg <= value, "SCMP_CMP_EQ": arg == value,
            "SCMP_CMP_GE": arg >= value, "SCMP_CMP_GT": arg > value,
            "SCMP_CMP_MASKED_EQ": arg & value == two}[op]


@pytest.mark.parametrize("op", sorted(OPERATOR_CASES))
def test_every_operator_in_the_kernel(op):
    """Each operator compiled by yacr and loaded in a child: getpgid(arg) is refused with
    errno 77 exactly when the condition holds, for 64-bit arguments either side of it."""
    from yacr.linux.seccomp import Filter

    value, two = OPERATOR_CASES[op]
    cond = {"index": 0, "value": value, "op": op}
    if op == "SCMP_CMP_MASKED_EQ":
        cond["valueTwo"] = two
    prog = Filter({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                   "syscalls": [{"names": ["getpgid"], "action": "SCMP_ACT_ERRNO",
                                 "errnoRet": 77, "args": [cond]}]}, None).program()
    args = [0, 3, (1 << 33) - 1, 1 << 33, (1 << 33) + 1, 0x0500000003, 0x1505000013,
            1 << 63, (1 << 64) - 1]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
            prog.load()
            out = []
            for a in args:
                rc = libc.syscall(ctypes.c_long(121), ctypes.c_ulong(a))
                out.append(rc == -1 and ctypes.get_errno() == 77)
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    got = json.loads(os.read(r, 65536))
    os.close(r)
    os.waitpid(pid, 0)
    assert got == [_holds(op, a, value, two) for a in args]


# --- the compiled-program cache (linux.seccomp.compile_profile) ----------------------------

DENY_MKDIR = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ARCHES,
              "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                            "errnoRet": 13},
                           {"names": ["no_such_syscall_anywhere"], "action": "SCMP_ACT_KILL"}]}


def _entries(runtime) -> list[str]:
    d = runtime.root / ".seccomp"
    return sorted(os.listdir(d)) if d.exists() else []


def _allow_all_bpf() -> bytes:
    return struct.pack("HBBI", 0x06, 0, 0, 0x7FFF0000)  # BPF_RET|BPF_K SECCOMP_RET_ALLOW


def _mkdir_denied(runtime, bundles) -> tuple[bool, str]:
    p = run(runtime, bundles, with_seccomp(bundles, "mkdir /dev/shm/a; echo rc=$?", DENY_MKDIR))
    assert p.returncode == 0, p.stderr
    return "rc=1" in p.stdout, p.stderr


def test_cache_hit_is_used_and_replays_warnings(runtime, bundles):
    """The first run compiles and stores the program; the second loads the stored one
    (proved by swapping in a valid entry for a different program) and warns as the
    first did."""
    denied, err = _mkdir_denied(runtime, bundles)
    assert denied and "no_such_syscall_anywhere" in err
    [name] = _entries(runtime)
    path = runtime.root / ".seccomp" / name
    head, _, bpf = path.read_bytes().partition(b"\n")
    assert len(bpf) % 8 == 0 and len(bpf) > 8
    denied, err = _mkdir_denied(runtime, bundles)
    assert denied and "no_such_syscall_anywhere" in err  # same warning, from the entry
    # a well-formed entry for another program is what the next run loads
    meta = json.loads(head)
    allow = _allow_all_bpf()
    meta["sha256"] = hashlib.sha256(allow).hexdigest()
    path.write_bytes(json.dumps(meta).encode() + b"\n" + allow)
    denied, _ = _mkdir_denied(runtime, bundles)
    assert not denied


@pytest.mark.parametrize("damage", ["digest", "truncated", "mode", "symlink", "garbage"])
def test_cache_entry_that_fails_a_check_is_compiled_again(runtime, bundles, tmp_path, damage):
    assert _mkdir_denied(runtime, bundles)[0]
    [name] = _entries(runtime)
    path = runtime.root / ".seccomp" / name
    head, _, bpf = path.read_bytes().partition(b"\n")
    if damage == "digest":  # another program under the old digest
        path.write_bytes(head + b"\n" + _allow_all_bpf())
    elif damage == "truncated":
        path.write_bytes(head + b"\n" + bpf[:-3])
    elif damage == "mode":  # others could have written it
        meta = json.loads(head)
        meta["sha256"] = hashlib.sha256(_allow_all_bpf()).hexdigest()
        path.write_bytes(json.dumps(meta).encode() + b"\n" + _allow_all_bpf())
        path.chmod(0o666)
    elif damage == "symlink":
        target = tmp_path / "elsewhere"
        meta = json.loads(head)
        meta["sha256"] = hashlib.sha256(_allow_all_bpf()).hexdigest()
        target.write_bytes(json.dumps(meta).encode() + b"\n" + _allow_all_bpf())
        path.unlink()
        path.symlink_to(target)
    else:
        path.write_bytes(b"\0garbage")
    assert _mkdir_denied(runtime, bundles)[0], damage
    # and the entry was replaced by a good one
    assert not path.is_symlink() and path.stat().st_mode & 0o077 == 0
    good = path.read_bytes().partition(b"\n")[2]
    assert len(good) > 8 and good != _allow_all_bpf()
