"""Attack-surface measurement: the cBPF interpreter, filters read back from container
processes, and the counts for yacr's default profile, Docker's (approximated), the wasm
allowlist and a Nabla-sized allowlist."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess

import pytest

from conftest import REPO
from yacr.linux import bpf, surface
from yacr.linux import seccomp_default as d
from yacr.specgen import DEFAULT_CAPS

DOCKER = REPO / "tests" / "data" / "docker-default-approx.json"
X86_64 = bpf.AUDIT_ARCH_X86_64
# Nabla's tender allows 7 syscalls (as the Nabla project lists them)
NABLA = {"defaultAction": "SCMP_ACT_KILL_PROCESS", "architectures": ["SCMP_ARCH_X86_64"],
         "syscalls": [{"names": ["read", "write", "exit_group", "clock_gettime", "ppoll",
                                 "pwrite64", "pread64"], "action": "SCMP_ACT_ALLOW"}]}


def J(op, k, jt=0, jf=0, src=bpf.SRC_K):
    return (bpf.JMP | op | src, jt, jf, k)


def LD(off):
    return (bpf.LD | bpf.W | bpf.ABS, 0, 0, off)


def RET(k):
    return (bpf.RET | bpf.RVAL_K, 0, 0, k)


# --- the interpreter -----------------------------------------------------------------

def test_interpreter_instructions():
    data = bpf.seccomp_data(39, args=(0x1_0000_0005, 7))  # getpid; args[0] high word 1
    alu = bpf.ALU
    prog = [
        (bpf.LD | bpf.IMM, 0, 0, 6), (bpf.ST, 0, 0, 3),                      # M[3] = 6
        (bpf.LDX | bpf.W | bpf.IMM, 0, 0, 4),                               # X = 4
        (alu | bpf.ADD | bpf.SRC_X, 0, 0, 0),                               # A = 10
        (alu | bpf.MUL | bpf.SRC_K, 0, 0, 3), (alu | bpf.SUB | bpf.SRC_K, 0, 0, 2),  # 28
        (alu | bpf.DIV | bpf.SRC_K, 0, 0, 4), (alu | bpf.LSH | bpf.SRC_K, 0, 0, 2),  # 28
        (alu | bpf.RSH | bpf.SRC_K, 0, 0, 1), (alu | bpf.OR | bpf.SRC_K, 0, 0, 1),   # 15
        (alu | bpf.AND | bpf.SRC_K, 0, 0, 0xD), (alu | bpf.XOR | bpf.SRC_K, 0, 0, 0x3),  # 14
        (alu | bpf.MOD | bpf.SRC_K, 0, 0, 5),                               # A = 4
        J(bpf.JEQ, 4, 1, 0), RET(1),
        (bpf.MISC | bpf.TAX, 0, 0, 0), (bpf.LD | bpf.MEM, 0, 0, 3),         # X = 4, A = 6
        J(bpf.JGT, 0, 1, 0, bpf.SRC_X), RET(2),                             # 6 > 4
        J(bpf.JGE, 6, 1, 0), RET(3),
        J(bpf.JSET, 0x8, 0, 1), RET(4),                                     # 6 & 8 == 0
        (bpf.STX, 0, 0, 5), (bpf.LDX | bpf.MEM, 0, 0, 5), (bpf.MISC | bpf.TXA, 0, 0, 0),
        J(bpf.JEQ, 4, 1, 0), RET(5),
        (bpf.LD | bpf.W | bpf.LEN, 0, 0, 0), J(bpf.JEQ, 64, 1, 0), RET(6),
        LD(bpf.OFF_NR), J(bpf.JEQ, 39, 1, 0), RET(7),
        LD(bpf.OFF_ARGS + 4), J(bpf.JEQ, 1, 1, 0), RET(8),                  # high word
        LD(bpf.OFF_ARGS), (alu | bpf.NEG, 0, 0, 0), J(bpf.JEQ, 0xFFFFFFFB, 1, 0), RET(9),
        J(bpf.JA, 1), RET(10),
        (bpf.RET | bpf.RVAL_A, 0, 0, 0),
    ]
    ret, read = bpf.run(prog, data)
    assert ret == 0xFFFFFFFB
    assert read == {bpf.OFF_NR, bpf.OFF_ARGS, bpf.OFF_ARGS + 4} and bpf.reads_args(read)
    assert bpf.decode(bpf.encode(prog)) == prog


def test_interpreter_refuses_what_the_kernel_would():
    data = bpf.seccomp_data(0)
    for prog in ([LD(2), RET(0)],               # unaligned
                 [LD(64), RET(0)],              # past seccomp_data
                 [(bpf.LD | bpf.MEM, 0, 0, 16), RET(0)],  # no such scratch word
                 [(bpf.LD | bpf.B | bpf.IND, 0, 0, 0), RET(0)],  # not in seccomp's subset
                 [LD(0)]):                      # runs off the end
        with pytest.raises(bpf.BPFError):
            bpf.run(prog, data)
    # division by zero: the kernel's cBPF returns 0 (KILL_THREAD)
    assert bpf.run([(bpf.ALU | bpf.DIV | bpf.SRC_X, 0, 0, 0), RET(bpf.RET_ALLOW)], data)[0] == 0


def test_most_restrictive_filter_wins():
    allow, errno_, kill = RET(bpf.RET_ALLOW), RET(bpf.RET_ERRNO | 5), RET(bpf.RET_KILL_PROCESS)
    log = RET(bpf.RET_LOG)
    data = bpf.seccomp_data(0)
    assert bpf.run_all([[allow], [errno_]], data)[0] == bpf.RET_ERRNO | 5
    assert bpf.run_all([[errno_], [kill], [allow]], data)[0] == bpf.RET_KILL_PROCESS
    assert bpf.run_all([[log], [allow]], data)[0] == bpf.RET_LOG and bpf.allows(bpf.RET_LOG)


def test_interpreter_agrees_with_the_kernel():
    """A libseccomp filter with errno values and argument conditions, loaded in a child:
    the interpreter predicts what harmless syscalls really return there."""
    from yacr.linux.seccomp import Filter

    nr = {"getppid": 110, "getuid": 102, "getgid": 104, "sched_yield": 24,
          "getpgid": 121, "personality": 135, "getpriority": 140}
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 11},
                {"names": ["getuid", "getgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 12},
                {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "args": [{"index": 0, "value": 99999, "op": "SCMP_CMP_GE"}]},
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 14,
                 "args": [{"index": 0, "value": 0xFF00, "valueTwo": 0x0100,
                           "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 15,
                 "args": [{"index": 1, "value": 1 << 33, "op": "SCMP_CMP_GT"}]}]}
    calls = [("getppid", ()), ("getuid", ()), ("getgid", ()), ("sched_yield", ()),
             ("getpgid", (0,)), ("getpgid", (99999,)), ("getpgid", (1 << 40,)),
             ("personality", (0xFFFFFFFF,)), ("personality", (0x0123,)),
             ("personality", (0x0200,)), ("getpriority", (0, 1 << 34)),
             ("getpriority", (0, 5)), ("getpriority", (0, (1 << 33) + 1))]
    program = Filter(prof, None).program()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            libc.prctl(38, 1, 0, 0, 0)
            program.load()
            out = []
            for name, args in calls:
                rc = libc.syscall(ctypes.c_long(nr[name]),
                                  *[ctypes.c_ulong(a) for a in args])
                out.append(-ctypes.get_errno() if rc == -1 else 0)
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    got = json.loads(os.read(r, 65536))
    os.waitpid(pid, 0)
    os.close(r)
    prog = bpf.decode(program.bpf)
    want = []
    for name, args in calls:
        ret, _ = bpf.run(prog, bpf.seccomp_data(nr[name], args=args))
        want.append(-(ret & bpf.DATA_MASK) if bpf.action_only(ret) == bpf.RET_ERRNO else 0)
    assert got == want
    assert want == [-11, -12, -12, 0, 0, -13, -13, 0, -14, 0, -15, 0, -15]


def test_search_finds_the_arguments_a_filter_allows():
    """`allowing_args` follows a filter's comparisons of arguments (equal, above, masked
    bits) to arguments it then checks by running the filter: libseccomp's compiled rules
    and hand-written jumps alike, and nothing for rules no argument can meet."""
    from yacr.linux.seccomp import Filter

    prof = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": ["writev"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 2, "value": 0, "op": "SCMP_CMP_GT"}]},
                {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 1, "value": 0x5401, "op": "SCMP_CMP_EQ"}]},
                {"names": ["mmap"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 3, "value": 0x1, "valueTwo": 0x1,
                           "op": "SCMP_CMP_MASKED_EQ"},
                          {"index": 0, "value": 1 << 40, "op": "SCMP_CMP_GE"}]},
                {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]}
    prog = bpf.decode(Filter(prof, None).program().bpf)
    s = surface.evaluate([prog], "args")
    names = {s.table[nr] for nr in s.allowed()}
    some = {s.table[nr] for nr in s.some_args}
    assert "getpid" in names and not {"writev", "ioctl", "mmap"} & names
    assert some == {"writev", "ioctl", "mmap"}
    assert s.summary()["allowed_some_args"] == len(names) + 3
    args = surface.allowing_args([prog], 9)  # mmap
    assert args is not None and args[3] & 1 and args[0] >= 1 << 40
    assert surface.allowing_args([prog], 16)[1] == 0x5401  # ioctl
    # arg0 == 5 and then arg0 == 6: no argument gets through; arg1 & 4 set: one does
    contradiction = [LD(bpf.OFF_ARGS), J(bpf.JEQ, 5, 0, 3), LD(bpf.OFF_ARGS),
                     J(bpf.JEQ, 6, 0, 1), RET(bpf.RET_ALLOW), LD(bpf.OFF_ARGS + 8),
                     J(bpf.JSET, 4, 0, 1), RET(bpf.RET_ALLOW), RET(bpf.RET_KILL_PROCESS)]
    args = surface.allowing_args([contradiction], 0)
    assert args is not None and args[1] & 4 and args[0] != 6
    assert surface.allowing_args([contradiction[:5] + [RET(0)]], 0) is None
    # two filters: each allows, but never for the same arguments
    above, below = ([LD(bpf.OFF_ARGS), J(op, 10, 0, 1), RET(bpf.RET_ALLOW), RET(0)]
                    for op in (bpf.JGT, bpf.JGE))
    below[3], below[2] = below[2], below[3]  # arg0 < 10
    assert surface.allowing_args([above], 0) and surface.allowing_args([below], 0)
    assert surface.allowing_args([above, below], 0) is None


# --- measurements on real containers ---------------------------------------------------

def test_syscall_table_is_this_kernels():
    t = surface.syscall_table()
    assert t[0] == "read" and t[59] == "execve" and t[435] == "clone3"
    assert set(surface.BASIS_362) <= set(t) and len(surface.BASIS_362) == 362
    with open("/proc/kallsyms") as f:
        syms = {ln.split()[2] for ln in f if "__x64_sys_" in ln}
    newest = max(t)
    for nr, name in surface.NEWER_X86_64.items():
        if nr <= newest and name != "uretprobe":
            assert f"__x64_sys_{name}" in syms, name


def test_default_profile_surface(rootfs):
    s = surface.measure_profile(d.default_profile(DEFAULT_CAPS), "yacr default", rootfs)
    names = set(s.names(s.allowed()))
    expected = (set(d.ALLOWED) | {"clone", "socket", "personality"}) & set(s.table.values())
    assert names == expected
    by_name = {s.table[nr]: v for nr, v in s.verdicts.items()}
    assert by_name["mount"][0] == bpf.RET_ERRNO | 1
    assert by_name["clone3"][0] == bpf.RET_ERRNO | 38
    assert by_name["mseal"][0] == bpf.RET_ERRNO | 38  # unknown to this libseccomp
    assert {n for n, (_, dep) in by_name.items() if dep} == {"clone", "socket", "personality"}
    sm = s.summary()
    assert sm["total_362"] == 362
    assert 270 <= sm["allowed_of_362"] < 295, sm["allowed_of_362"]  # under Docker's


def test_docker_approximation_is_near_the_issues_figure(rootfs):
    prof = json.loads(DOCKER.read_text())
    s = surface.measure_profile(prof, "docker", rootfs)
    assert s.summary()["allowed_of_362"] == 295  # the issue: "about 295 of 362"
    mine = surface.measure_profile(d.default_profile(DEFAULT_CAPS), "yacr", rootfs)
    assert set(mine.allowed()) < set(s.allowed()), "yacr's default is a subset of Docker's"


@pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed")
def test_runc_installs_the_same_surface(bundles, tmp_path, rootfs):
    """The same profile loaded by runc (whose filter libseccomp builds differently and
    runc patches for ENOSYS) allows the same syscalls as when yacr loads it."""
    prof = json.loads(DOCKER.read_text())
    spec = bundles.spec(["sleep", "100"])
    spec["linux"]["seccomp"] = prof
    bundle = bundles.write(spec)
    root = str(tmp_path / "runc")
    cid = "surface-runc"
    subprocess.run(["runc", "--root", root, "run", "-d", "--bundle", bundle, cid], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60)
    try:
        st = json.loads(subprocess.run(["runc", "--root", root, "state", cid], check=True,
                                       capture_output=True, timeout=30).stdout)
        theirs = surface.measure_pid(st["pid"], "runc")
    finally:
        subprocess.run(["runc", "--root", root, "delete", "--force", cid], timeout=60)
    ours = surface.measure_profile(prof, "yacr", rootfs)
    assert theirs.names(theirs.allowed()) == ours.names(ours.allowed())


def test_measure_a_running_container_and_a_nabla_sized_profile(runtime, bundles, rootfs):
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", bundles.make(["sleep", "100"]), cid, check=True)
    pid = runtime.state(cid)["pid"]
    live = surface.measure_pid(pid)
    made = surface.measure_profile(d.default_profile(DEFAULT_CAPS), "default", rootfs)
    assert live.allowed() == made.allowed()
    # Seven syscalls: too few to exec anything, still measured (read at the execve)
    nabla = surface.measure_profile(NABLA, "nabla", rootfs)
    assert nabla.names(nabla.allowed()) == ["read", "write", "pread64", "pwrite64",
                                            "clock_gettime", "exit_group", "ppoll"]
    # syscalls newer than the newest it names answer ENOSYS (the stub), the rest die
    newest = max(nabla.allowed())
    newer = sum(1 for nr in nabla.verdicts if nr > newest)
    assert newer > 0
    assert nabla.by_action() == {"allow": 7, "errno(38)": newer,
                                 "kill_process": len(nabla.verdicts) - 7 - newer}


def test_surface_command(runtime, bundles, tmp_path, rootfs):
    (tmp_path / "nabla.json").write_text(json.dumps(NABLA))
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", bundles.make(["sleep", "100"]), cid, check=True)
    p = runtime("seccomp", "surface", "--json", "--rootfs", rootfs, "--container", cid,
                "--profile", f"Nabla-sized={tmp_path / 'nabla.json'}",
                "--profile", f"docker={DOCKER}")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    got = {m["label"]: m for m in out["measured"]}
    assert got["Nabla-sized"]["allowed"] == 7
    assert got["docker"]["allowed_of_362"] == 295
    default = got["yacr default (yacr spec --seccomp)"]
    assert got[f"container {cid}"]["allowed"] == default["allowed"]
    quoted = {q["label"] for q in out["quoted"]}
    assert "Nabla containers" in quoted and not any("gVisor" in q for q in quoted)
    table = runtime("seccomp", "surface", "--no-defaults", "--rootfs", rootfs, "--profile",
                    f"n={tmp_path / 'nabla.json'}").stdout
    assert "| n | measured | 7 | 7 | 7 | - |" in table
    assert "| Nabla containers | quoted | - | 7 | - | - |" in table
    p = runtime("seccomp", "surface", "--no-defaults", "--profile", str(tmp_path / "nope"))
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1 and "--profile" in p.stderr
    # a relative --rootfs is the caller's, not the temporary bundle's
    p = runtime("seccomp", "surface", "--no-defaults", "--rootfs",
                os.path.relpath(rootfs, tmp_path), "--profile", f"n={tmp_path / 'nabla.json'}",
                cwd=str(tmp_path))
    assert p.returncode == 0 and "| n | measured | 7 | 7 | 7 | - |" in p.stdout, p.stderr
    p = runtime("seccomp", "surface", "--rootfs", str(tmp_path / "nope"))
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1 and "--rootfs" in p.stderr
    p = runtime("seccomp", "surface", "--no-defaults", "--runsc=platform=ptrace")
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1 and "--runsc" in p.stderr


@pytest.mark.skipif(not shutil.which("runsc"), reason="runsc (gVisor) is not installed: "
                    "apt-get install runsc (make setup installs it)")
def test_gvisor_host_filters_measured(rootfs):
    """gVisor's own host filters, read back from a real sandbox as yacr's are from a
    container: the Sentry's (which runs the container's syscalls, on the ptrace platform
    without a network stack) and the gofer's (which opens files for it). The count
    replaces the quoted "about 80-96" in the attack-surface tables."""
    sentry, gofer = surface.measure_runsc(rootfs)
    assert "Sentry" in sentry.label and "--platform=ptrace" in sentry.label
    assert "gofer" in gofer.label and "--network=none" in gofer.label
    for s in (sentry, gofer):
        sm = s.summary()
        assert sm["filters"] >= 1 and sm["instructions"] > 100
        assert 30 <= sm["allowed_of_362"] <= sm["allowed_some_args_of_362"] <= 120, sm
        # every syscall the filter lets through for some arguments has a witness
        for nr in s.some_args:
            args = surface.allowing_args(s.programs, nr)
            assert args is not None
            assert bpf.allows(bpf.run_all(s.programs, bpf.seccomp_data(nr, args=args))[0])
            assert not bpf.allows(bpf.run_all(s.programs, bpf.seccomp_data(nr))[0])
        names = set(s.names(s.allowed_some()))
        assert {"read", "write", "futex", "mmap", "exit_group"} <= names
        assert not {"execve", "mount", "bpf", "init_module", "kexec_load"} & names
    sentry_names = set(sentry.names(sentry.allowed_some()))
    assert "ptrace" in sentry_names  # the ptrace platform traces the stubs
    assert not {"openat", "open", "socket"} & sentry_names  # files come from the gofer
    assert "openat" in gofer.names(gofer.allowed())
    assert sentry.summary()["allowed_of_362"] < 287  # yacr's default profile allows 287
    left = subprocess.run(["pgrep", "-f", "yacr-surface-runsc-"], capture_output=True)
    assert left.returncode == 1, left.stdout


@pytest.mark.skipif(not shutil.which("runsc"), reason="runsc (gVisor) is not installed: "
                    "apt-get install runsc (make setup installs it)")
def test_surface_command_measures_gvisor(runtime, rootfs):
    p = runtime("seccomp", "surface", "--json", "--no-defaults", "--runsc", "--rootfs",
                rootfs)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)["measured"]
    assert [m["label"].split(" (")[0] for m in got] == ["gVisor sandbox, the Sentry",
                                                        "gVisor gofer"]
    assert got[0]["allowed_some_args"] > got[0]["allowed"] > 0
    assert "mmap" in got[0]["allowed_for_some_args_only"]
