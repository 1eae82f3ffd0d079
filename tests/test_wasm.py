"""Wasm containers: handler selection, the WASI mapping, limits, signals, the seccomp
allowlist and the AOT cache, through the real CLI.

The modules are built here from C (yacr.wasm.build) with Debian's clang and wasi-libc;
the rootfs is busybox plus the modules, so exec and compat-smart have native programs
to fall back on. Every test gets a private AOT cache directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from client_util import run_pty, wait_for
from conftest import BUILD, YACR, cgroup_dirs
from yacr.bundle import build_rootfs

pytestmark = pytest.mark.skipif(shutil.which("clang") is None,
                                reason="clang is not installed (scripts/install-deps.sh)")

WASM = {"run.oci.handler": "wasm"}


@pytest.fixture(scope="session")
def modules() -> dict[str, str]:
    from yacr.wasm.build import build_samples

    return build_samples(str(BUILD / "wasm"))


@pytest.fixture(scope="session")
def wasm_rootfs(modules) -> str:
    root = build_rootfs(str(BUILD / "wasm-rootfs"))
    for name, path in modules.items():
        shutil.copy2(path, os.path.join(root, f"{name}.wasm"))
        os.chmod(os.path.join(root, f"{name}.wasm"), 0o644)  # no exec bit needed
    with open(os.path.join(root, "etc", "motd"), "w") as f:
        f.write("motd in the rootfs\n")
    os.makedirs(os.path.join(root, "data"), exist_ok=True)
    fake = os.path.join(root, "bin", "fake.wasm")
    with open(fake, "w") as f:
        f.write("#!/bin/sh\necho native script named like a module\n")
    os.chmod(fake, 0o755)
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "aot"
    monkeypatch.setenv("YACR_WASM_CACHE", str(d))
    return d


@pytest.fixture
def wb(bundles, wasm_rootfs, cache):
    """Bundles over the wasm rootfs: wb(args, annotations=..., **spec edits)."""
    bundles.rootfs = wasm_rootfs

    def make(args: list[str], annotations: dict[str, str] | None = None, **kw) -> str:
        spec = bundles.spec(args, **kw)
        spec["annotations"] = dict(WASM if annotations is None else annotations)
        return bundles.write(spec)

    make.spec = bundles.spec  # type: ignore[attr-defined]
    make.write = bundles.write  # type: ignore[attr-defined]
    return make


# --- handler selection -------------------------------------------------------------------

@pytest.mark.parametrize("ann", [{"run.oci.handler": "wasm"},
                                 {"module.wasm.image/variant": "compat"},
                                 {"module.wasm.image/variant": "compat-smart"}])
def test_annotation_forms_run_the_module(runtime, wb, ann):
    p = runtime("run", "--bundle", wb(["/hello.wasm"], ann), runtime.new_id())
    assert p.returncode == 0, p.stderr
    assert p.stdout == "hello from wasm: /hello.wasm\n"


def test_compat_smart_runs_native_programs_natively(runtime, wb):
    ann = {"module.wasm.image/variant": "compat-smart"}
    p = runtime("run", "--bundle", wb(["sh", "-c", "echo native; exit 3"], ann),
                runtime.new_id())
    assert (p.returncode, p.stdout) == (3, "native\n")
    # the name proves nothing: a script called fake.wasm has no \0asm magic
    p = runtime("run", "--bundle", wb(["fake.wasm"], ann), runtime.new_id())
    assert (p.returncode, p.stdout) == (0, "native script named like a module\n"), p.stderr


def test_module_without_annotation_behaves_as_in_runc(runtime, wb, bundles):
    p = runtime("run", "--bundle", wb(["/hello.wasm"], {}), runtime.new_id())
    assert p.returncode != 0
    assert "hello from wasm" not in p.stdout
    assert "/hello.wasm" in p.stderr and "permission denied" in p.stderr  # no exec bit
    # with the exec bit, the kernel refuses it as runc sees it refused: no handler sniffs it
    root = bundles.private_rootfs()
    os.chmod(os.path.join(root, "hello.wasm"), 0o755)
    bundles.rootfs = root
    p = runtime("run", "--bundle", wb(["/hello.wasm"], {}), runtime.new_id())
    assert p.returncode != 0 and "hello from wasm" not in p.stdout
    assert "exec format error" in p.stderr


def test_cri_sandbox_never_gets_the_handler(runtime, wb):
    ann = {"run.oci.handler": "wasm", "io.kubernetes.cri.container-type": "sandbox"}
    p = runtime("run", "--bundle", wb(["true"], ann), runtime.new_id())
    assert p.returncode == 0, p.stderr


def test_annotated_container_needs_a_module(runtime, wb):
    p = runtime("run", "--bundle", wb(["/bin/busybox"]), runtime.new_id())
    assert p.returncode == 1
    assert "process.args[0]" in p.stderr and "no \\0asm magic" in p.stderr
    p = runtime("run", "--bundle", wb(["/nope.wasm"]), runtime.new_id())
    assert p.returncode == 1 and "not a file in the rootfs" in p.stderr


def test_unknown_handler_is_refused(runtime, wb):
    p = runtime("run", "--bundle", wb(["true"], {"run.oci.handler": "krun2"}), runtime.new_id())
    assert p.returncode == 1 and "annotations.run.oci.handler" in p.stderr


def test_missing_engine_is_a_clear_error_and_linux_containers_still_run(runtime, wb,
                                                                         monkeypatch):
    monkeypatch.setenv("YACR_WASMTIME_LIBRARY", "/nonexistent/_libwasmtime.so")
    p = runtime("run", "--bundle", wb(["/hello.wasm"]), runtime.new_id())
    assert p.returncode == 1
    assert "annotations.run.oci.handler" in p.stderr and "pip install 'yacr[wasm]'" in \
        p.stderr
    p = runtime("run", "--bundle", wb(["sh", "-c", "exit 6"], {}), runtime.new_id())
    assert p.returncode == 6


def test_uninstalled_engine_is_a_clear_error(runtime, wb, tmp_path):
    """The wasmtime package really absent: hidden under an empty directory in a private
    mount namespace, so nothing outside this test sees the change."""
    from yacr.wasm import capi

    pkg = os.path.dirname(os.path.dirname(capi.find_library()))
    empty = tmp_path / "empty"
    empty.mkdir()
    script = ('mount --bind "$1" "$2" || exit 99; shift 2; "$@"; rc=$?; '
              f'{YACR} features | grep io.github.yacr.wasm.engine >&2; exit $rc')
    cid = runtime.new_id()
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                        str(empty), pkg, *runtime.cmd("run", "--bundle", wb(["/hello.wasm"]),
                                                      cid)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stderr
    err = p.stderr.splitlines()
    assert err[0] == ("yacr: annotations.run.oci.handler: the wasm handler needs wasmtime, "
                      f"which is not installed; {capi.INSTALL_HINT}")
    assert "not installed" in err[1] and "pip install 'yacr[wasm]'" in err[1]


def test_features_list_the_handler_and_the_allowlist():
    from yacr.wasm.allowlist import allowed_count

    out = json.loads(subprocess.run([YACR, "features"], capture_output=True, text=True,
                                    check=True).stdout)
    ann = out["annotations"]
    assert "wasm" in ann["io.github.yacr.handlers"].split(",")
    assert ann["io.github.yacr.wasm.seccompAllowlist"].startswith(f"{allowed_count()} ")
    assert ann["io.github.yacr.wasm.engine"].startswith("wasmtime 50.")
    assert allowed_count() < 40


# --- the WASI mapping --------------------------------------------------------------------

def test_args_env_and_exit_code(runtime, wb):
    p = runtime("run", "--bundle", wb(["probe.wasm", "args", "two words", ""]),
                runtime.new_id())
    assert p.returncode == 0, p.stderr
    # a bare name is found on PATH in the rootfs; args[0] is the module's path there
    assert p.stdout == "argv[0]=/probe.wasm\nargv[1]=args\nargv[2]=two words\nargv[3]=\n"
    spec = wb.spec(["/probe.wasm", "env"])
    spec["annotations"] = WASM
    spec["process"]["env"] = ["PATH=/bin", "GREETING=hello world", "EMPTY="]
    p = runtime("run", "--bundle", wb.write(spec), runtime.new_id())
    assert p.returncode == 0, p.stderr
    assert sorted(p.stdout.splitlines()) == sorted(["PATH=/bin", "GREETING=hello world",
                                                    "EMPTY=", "HOME=/root"])
    for code in (0, 3, 125, 126, 200, 255):  # wasmtime alone loses codes >= 126
        p = runtime("run", "--bundle", wb(["/probe.wasm", "exit", str(code)]),
                    runtime.new_id())
        assert p.returncode == code, p.stderr


def test_root_is_preopened_with_mounts_and_cwd_is_checked(runtime, wb, tmp_path):
    host = tmp_path / "shared"
    host.mkdir()
    (host / "in.txt").write_text("from the host\n")
    spec = wb.spec(["/probe.wasm", "cat", "/etc/motd"])
    spec["annotations"] = WASM
    p = runtime("run", "--bundle", wb.write(spec), runtime.new_id())
    assert (p.returncode, p.stdout) == (0, "motd in the rootfs\n"), p.stderr
    spec["mounts"].append({"destination": "/data", "type": "bind", "source": str(host),
                           "options": ["rbind", "rw"]})
    spec["process"]["args"] = ["/probe.wasm", "cat", "/data/in.txt"]
    p = runtime("run", "--bundle", wb.write(spec), runtime.new_id())
    assert (p.returncode, p.stdout) == (0, "from the host\n"), p.stderr
    spec["process"]["args"] = ["/probe.wasm", "write", "/data/out.txt", "written by wasm"]
    p = runtime("run", "--bundle", wb.write(spec), runtime.new_id())
    assert p.returncode == 0, p.stderr
    assert (host / "out.txt").read_text() == "written by wasm"
    spec["process"]["args"] = ["/probe.wasm", "ls", "/"]
    p = runtime("run", "--bundle", wb.write(spec), runtime.new_id())
    assert {"probe.wasm", "etc", "proc", "data"} <= set(p.stdout.split())
    # the mounts of the container are what the module sees, not the host's
    spec["process"]["args"] = ["/probe.wasm", "cat", "/proc/self/cgroup"]
    p = runtime("run", "--bundle", wb.write(spec), runtime.new_id())
    assert p.returncode == 0 and p.stdout.strip(), p.stderr
    spec["process"]["cwd"] = "/etc/motd"  # a file: not a directory to start in
    p = runtime("run", "--bundle", wb.write(spec), runtime.new_id())
    assert p.returncode != 0 and "process.cwd" in p.stderr


def test_cwd_is_checked_and_relative_paths_start_at_the_root(runtime, wb):
    """WASI preview 1 has no working directory and wasi-libc starts in /: process.cwd must
    be a directory (as for runc), and a cwd other than / is warned about rather than
    ignored."""
    spec = wb.spec(["/probe.wasm", "cwd"])
    spec["annotations"] = WASM
    p = runtime("run", "--bundle", wb.write(spec), runtime.new_id())
    assert (p.returncode, p.stdout, p.stderr) == (0, "/\n", "")
    spec["process"]["cwd"] = "/etc"
    spec["process"]["args"] = ["/probe.wasm", "cat", "etc/motd"]
    p = runtime("run", "--bundle", wb.write(spec), runtime.new_id())
    assert (p.returncode, p.stdout) == (0, "motd in the rootfs\n"), p.stderr
    assert "process.cwd=/etc" in p.stderr and "warning" in p.stderr


def test_stdin_stdout_and_a_terminal(runtime, wb):
    p = runtime("run", "--bundle", wb(["/probe.wasm", "stdin"]), runtime.new_id(),
                input="piped through\n")
    assert (p.returncode, p.stdout) == (0, "piped through\n"), p.stderr
    rc, out = run_pty(runtime.cmd("run", "--bundle", wb(["/probe.wasm", "tty"], terminal=True),
                                  runtime.new_id()))
    assert rc == 0, out
    assert "stdin tty=1 stdout tty=1" in out


def test_terminal_from_the_console_socket(runtime, wb, tmp_path):
    from test_console_exec import ConsoleReceiver

    rx = ConsoleReceiver(str(tmp_path / "console.sock"))
    cid = runtime.new_id()
    runtime("create", "--bundle", wb(["/probe.wasm", "tty"], terminal=True),
            "--console-socket", rx.path, cid, check=True)
    rx.wait()
    runtime("start", cid, check=True)
    out = rx.read_until_eof()
    rx.close()
    assert "stdin tty=1 stdout tty=1" in out
    assert wait_for(lambda: runtime.state(cid)["status"] == "stopped", 5)
    runtime("delete", cid, check=True)


def test_trap_exits_non_zero_with_the_message(runtime, wb):
    p = runtime("run", "--bundle", wb(["/probe.wasm", "trap"]), runtime.new_id())
    assert p.returncode == 134
    assert "about to trap" in p.stderr
    assert "wasm trap" in p.stderr and "unreachable" in p.stderr


# --- it runs inside the container --------------------------------------------------------

def test_module_is_the_container_process(runtime, wb, tmp_path):
    cid = runtime.new_id()
    spec = wb.spec(["/probe.wasm", "sleep", "30"])
    spec["annotations"] = WASM
    spec["process"]["noNewPrivileges"] = False
    spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 321}]
    marker = tmp_path / "hook.out"
    spec["hooks"] = {"poststart": [{"path": "/bin/sh",
                                    "args": ["sh", "-c", f"cat > {marker}"]}]}
    runtime("run", "-d", "--bundle", wb.write(spec), cid, check=True)
    st = runtime.state(cid)
    pid = st["pid"]
    assert st["status"] == "running"
    assert json.loads(marker.read_text())["pid"] == pid
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    # no_new_privs is set for the allowlist (a module never execs anything)
    assert fields["NoNewPrivs"].strip() == "1"
    assert int(fields["CapEff"], 16) != (1 << 41) - 1  # the spec's capabilities, not all
    assert fields["Seccomp"].strip() == "2"
    # the module runs in yacr's native host, not in a fork of the Python runtime
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "_libwasmtime.so" in maps and "libpython" not in maps and "python3" not in maps
    assert fields["Name"].strip() == "probe.wasm"
    assert "Max open files            321" in Path(f"/proc/{pid}/limits").read_text()
    for ns in ("pid", "mnt", "uts", "ipc", "net"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
    cg = [d for d in cgroup_dirs(cid)]
    assert cg and any(str(pid) in (d / "cgroup.procs").read_text().split() for d in cg)
    runtime("kill", cid, "KILL", check=True)
    assert wait_for(lambda: runtime.state(cid)["status"] == "stopped", 5)
    runtime("delete", cid, check=True)


def test_exec_runs_a_native_program_or_says_why_not(runtime, wb):
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", wb(["/probe.wasm", "sleep", "30"]), cid, check=True)
    runtime.state(cid)
    p = runtime("exec", cid, "sh", "-c", "echo from exec; cat /proc/1/cmdline | tr '\\0' ' '")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("from exec\n")
    p = runtime("exec", cid, "/no/such/program")
    assert p.returncode != 0
    assert "wasm container" in p.stderr
    runtime("delete", "--force", cid, check=True)


# --- limits and signals ------------------------------------------------------------------

def test_memory_limit_bounds_linear_memory(runtime, wb):
    spec = wb.spec(["/probe.wasm", "grow", "100"])
    spec["annotations"] = WASM
    p = runtime("run", "--bundle", wb.write(spec), runtime.new_id())
    assert (p.returncode, p.stdout) == (0, "allocated 100 MiB\n"), p.stderr
    spec["linux"]["resources"] = {"memory": {"limit": 64 << 20}}
    p = runtime("run", "--bundle", wb.write(spec), runtime.new_id())
    # malloc returned NULL inside the guest: no OOM kill
    assert p.returncode == 3, p.stderr
    assert p.stdout.startswith("malloc failed after ")


def test_rlimit_as_uses_a_small_reservation(runtime, wb):
    spec = wb.spec(["/probe.wasm", "grow", "20"])
    spec["annotations"] = WASM
    spec["process"]["rlimits"] = [{"type": "RLIMIT_AS", "soft": 1 << 30, "hard": 1 << 30}]
    p = runtime("run", "--bundle", wb.write(spec), runtime.new_id())
    assert (p.returncode, p.stdout) == (0, "allocated 20 MiB\n"), p.stderr


@pytest.mark.parametrize("sig,code", [("TERM", 128 + signal.SIGTERM), ("KILL", None)])
def test_kill_stops_a_spinning_module_promptly(runtime, wb, sig, code):
    cid = runtime.new_id()
    runtime("create", "--bundle", wb(["/probe.wasm", "spin"]), cid, check=True)
    pid = runtime.state(cid)["pid"]
    runtime("start", cid, check=True)
    time.sleep(0.3)
    assert runtime.state(cid)["status"] == "running"
    t = time.monotonic()
    runtime("kill", cid, sig, check=True)
    assert wait_for(lambda: runtime.state(cid)["status"] == "stopped", 5)
    assert time.monotonic() - t < 2
    assert not os.path.exists(f"/proc/{pid}/exe") or \
        Path(f"/proc/{pid}/stat").read_text().split()[2] in "ZX"
    runtime("delete", cid, check=True)
    if code is not None:
        # in the foreground, the exit status says which signal stopped it
        cid = runtime.new_id()
        proc = subprocess.Popen(runtime.cmd("run", "--bundle", wb(["/probe.wasm", "spin"]),
                                            cid), stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"spinning\n"
        runtime("kill", cid, sig, check=True)
        assert proc.wait(5) == code


@pytest.mark.parametrize("how", ["pause", "stop"])
def test_a_sleeping_module_survives_pause_and_stop(runtime, wb, tmp_path, how):
    """Freezing (pause) or SIGSTOP/SIGCONT interrupts the engine's sleeping threads: an idle
    I/O thread's timed wait comes back through restart_syscall, under the allowlist, and the
    module finishes its sleep normally."""
    cid = runtime.new_id()
    out = tmp_path / "out"
    with open(out, "wb") as f:  # files, not pipes: the container keeps them open
        subprocess.run(runtime.cmd("run", "-d", "--bundle",
                                   wb(["/probe.wasm", "sleep", "2", "/etc/motd"]), cid),
                       stdout=f, stderr=f, check=True)
    assert wait_for(lambda: out.read_bytes() == b"sleeping\n", 5)
    for _ in range(3):
        if how == "pause":
            runtime("pause", cid, check=True)
            assert runtime.state(cid)["status"] == "paused"
        else:
            runtime("kill", cid, "STOP", check=True)
        time.sleep(0.2)
        runtime("resume" if how == "pause" else "kill", cid,
                *([] if how == "pause" else ["CONT"]), check=True)
        time.sleep(0.1)
    assert wait_for(lambda: runtime.state(cid)["status"] == "stopped", 10)
    assert out.read_text() == "sleeping\nslept\n"
    runtime("delete", cid, check=True)


# --- the seccomp allowlist ---------------------------------------------------------------

def test_allowlist_denies_what_the_engine_does_not_need(runtime, wb, cache):
    # normal I/O runs under the filter in every test above; a relative symlink is WASI
    # (path_symlink) but symlinkat is not in the list: the process is killed by SIGSYS
    spec = wb.spec(["/probe.wasm", "symlink", "target", "/tmp/link"], readonly=False)
    spec["annotations"] = WASM
    spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev"]})
    for _ in range(2):  # compiled with libseccomp, then loaded from the cache
        p = runtime("run", "--bundle", wb.write(spec), runtime.new_id())
        assert p.returncode == 128 + signal.SIGSYS, (p.stdout, p.stderr)
        assert "symlink made" not in p.stdout
    bpf = list(cache.glob("*.bpf"))
    assert len(bpf) == 1
    # a damaged cached program is rebuilt, never loaded
    bpf[0].write_bytes(bpf[0].read_bytes()[:-8] + b"\0" * 8)
    p = runtime("run", "--bundle", wb.write(spec), runtime.new_id())
    assert p.returncode == 128 + signal.SIGSYS and "cached program rejected" in p.stderr
    spec["annotations"] = {**WASM, "io.github.yacr.wasm.seccomp": "off"}
    p = runtime("run", "--bundle", wb.write(spec), runtime.new_id())
    assert (p.returncode, p.stdout) == (0, "symlink made\n"), p.stderr
    assert "io.github.yacr.wasm.seccomp=off" in p.stderr and "warning" in p.stderr


def test_allowlist_passes_ordinary_file_calls(runtime, wb, tmp_path):
    """Every WASI file call a program commonly makes works under the filter (write, pread,
    pwrite, seek, fsync, fdatasync, fadvise, truncate, stat, fcntl, utimes, rename, mkdir,
    rmdir, unlink, sched_yield, clock_getres, sleep), and so does listing a directory big
    enough to grow the engine's heap with brk."""
    big = tmp_path / "big"
    big.mkdir()
    for i in range(4000):
        os.close(os.open(big / f"entry-{i}", os.O_CREAT | os.O_WRONLY, 0o644))
    spec = wb.spec(["/probe.wasm", "fsops", "/tmp"])
    spec["annotations"] = WASM
    spec["mounts"] += [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                        "options": ["nosuid", "nodev"]},
                       {"destination": "/data", "type": "bind", "source": str(big),
                        "options": ["rbind", "ro"]}]
    p = runtime("run", "--bundle", wb.write(spec), runtime.new_id())
    assert (p.returncode, p.stdout) == (0, "fsops ok\n"), p.stderr
    spec["process"]["args"] = ["/probe.wasm", "ls", "/data"]
    p = runtime("run", "--bundle", wb.write(spec), runtime.new_id())
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == 4002


def test_allowlist_is_small_and_compiles():
    from yacr.wasm.allowlist import SYSCALLS, build_filter

    f = build_filter(None)
    assert f.rules >= len(SYSCALLS)
    for dangerous in ("execve", "execveat", "fork", "vfork", "ptrace", "mount", "socket",
                      "connect", "bpf", "unshare", "setns", "kill", "symlinkat", "chmod"):
        assert dangerous not in SYSCALLS


# --- the AOT cache -----------------------------------------------------------------------

def _cache_status(p: subprocess.CompletedProcess) -> str:
    for line in p.stderr.splitlines():
        if "wasm module" in line and ": cache " in line:
            return line.split(": cache ", 1)[1].split()[0]
    raise AssertionError(f"no cache line in {p.stderr!r}")


def test_cache_miss_hit_and_corrupt_entry(runtime, wb, cache):
    b = wb(["/hello.wasm"])
    p = runtime("--debug", "run", "--bundle", b, runtime.new_id())
    assert p.returncode == 0 and _cache_status(p) == "miss", p.stderr
    assert oct(cache.stat().st_mode & 0o777) == "0o700"
    entries = list(cache.glob("*.cwasm"))
    # readable by all, so that a host running as the container's user can map the file it
    # is handed; the directory keeps everyone else out
    assert len(entries) == 1 and entries[0].stat().st_mode & 0o777 == 0o644
    p = runtime("--debug", "run", "--bundle", b, runtime.new_id())
    assert p.returncode == 0 and _cache_status(p) == "hit", p.stderr
    # flip one byte of the compiled code: detected, recompiled, replaced
    data = bytearray(entries[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    entries[0].write_bytes(bytes(data))
    p = runtime("--debug", "run", "--bundle", b, runtime.new_id())
    assert p.returncode == 0 and p.stdout == "hello from wasm: /hello.wasm\n", p.stderr
    assert _cache_status(p) == "recompiled"
    assert "integrity check failed" in p.stderr
    p = runtime("--debug", "run", "--bundle", b, runtime.new_id())
    assert _cache_status(p) == "hit"
    # truncated entries and entries others may write are not trusted either
    entries[0].write_bytes(entries[0].read_bytes()[:100])
    p = runtime("--debug", "run", "--bundle", b, runtime.new_id())
    assert _cache_status(p) == "recompiled" and p.returncode == 0
    os.chmod(entries[0], 0o666)
    p = runtime("--debug", "run", "--bundle", b, runtime.new_id())
    assert _cache_status(p) == "recompiled" and "owned and writable by root only" in p.stderr


def test_cache_entry_of_another_module_is_rejected(cache, modules):
    from yacr.wasm import capi
    from yacr.wasm.cache import Cache, module_sha256

    c = Cache(capi.Engine(), str(cache))
    hello = Path(modules["hello"]).read_bytes()
    probe = Path(modules["probe"]).read_bytes()
    assert c.load(hello).status == "miss" and c.load(probe).status == "miss"
    # swap the two entries' files: each is intact, but bound to the other module
    a = c.entry_path(c.ident(module_sha256(hello)))
    b = c.entry_path(c.ident(module_sha256(probe)))
    da, db = Path(a).read_bytes(), Path(b).read_bytes()
    Path(a).write_bytes(db)
    Path(b).write_bytes(da)
    r = c.load(hello)
    assert r.status == "recompiled" and "integrity" in r.detail
    os.chmod(cache, 0o777)
    r = c.load(hello)
    assert r.status == "uncached" and "writable by others" in r.detail
    os.chmod(cache, 0o700)


def test_only_root_uses_the_cache(cache, modules, tmp_path):
    # nobody may fill it (or read it: entries are root's, mode 0600)
    p = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                        YACR, "wasm", "compile", modules["hello"]],
                       capture_output=True, text=True)
    assert p.returncode == 1
    assert p.stderr == (f"yacr: wasm compile: the cache {cache} cannot be used: only root "
                        "uses the compiled-module cache\n")
    assert not cache.exists()
    # a directory that someone else owns is not trusted, even by root
    from yacr.wasm import capi
    from yacr.wasm.cache import Cache

    cache.mkdir(mode=0o700)
    os.chown(cache, 65534, 65534)
    r = Cache(capi.Engine(), str(cache)).load(Path(modules["hello"]).read_bytes())
    assert r.status == "uncached" and "owner 65534" in r.detail
    assert os.listdir(cache) == []


def test_uncached_module_is_handed_over_sealed(runtime, wb, cache):
    """A cache the runtime cannot trust is not used: the module is compiled for this
    container alone and handed to the host as a sealed memfd (a start function too)."""
    cache.mkdir(mode=0o700)
    os.chmod(cache, 0o777)
    p = runtime("--debug", "run", "--bundle", wb(["/start.wasm"]), runtime.new_id())
    assert (p.returncode, p.stdout) == (7, "start function ran\n"), p.stderr
    assert _cache_status(p).rstrip(":") == "uncached" and "writable by others" in p.stderr
    assert os.listdir(cache) == []


def test_wasm_compile_prefills_the_cache(runtime, wb, cache, modules):
    p = subprocess.run([YACR, "wasm", "compile", modules["hello"]], capture_output=True,
                       text=True)
    assert p.returncode == 0 and ": compiled -> " in p.stdout, p.stderr
    p = subprocess.run([YACR, "wasm", "compile", modules["hello"]], capture_output=True,
                       text=True)
    assert ": already cached -> " in p.stdout
    p = runtime("--debug", "run", "--bundle", wb(["/hello.wasm"]), runtime.new_id())
    assert p.returncode == 0 and _cache_status(p) == "hit", p.stderr
    p = subprocess.run([YACR, "wasm", "compile", "/etc/hostname"], capture_output=True,
                       text=True)
    assert p.returncode == 1 and "not a WebAssembly module" in p.stderr


def test_start_section_detection():
    from yacr.wasm.capi import has_start_section

    header = b"\0asm\x01\0\0\0"
    # type section (1): one func type () -> (); func section (3); start (8); code (10)
    body = (b"\x01\x04\x01\x60\x00\x00" b"\x03\x02\x01\x00" b"\x08\x01\x00"
            b"\x0a\x04\x01\x02\x00\x0b")
    assert has_start_section(header + body)
    assert not has_start_section(header + body.replace(b"\x08\x01\x00", b""))


def test_native_containers_import_nothing_of_wasm(runtime, bundles):
    from test_imports import imported

    mods = imported(runtime, "run", "--bundle", bundles.make(["true"]), runtime.new_id())
    assert "_socket" in mods  # the report lists what was imported
    assert not {m for m in mods if m.startswith(("yacr.wasm", "yacr.handlers.wasm"))}


def test_start_function_runs_after_start_under_the_allowlist(runtime, wb):
    cid = runtime.new_id()
    runtime("create", "--bundle", wb(["/start.wasm"]), cid, check=True)
    time.sleep(0.2)  # created: the start function must not have run yet
    assert runtime.state(cid)["status"] == "created"
    p = runtime("start", cid)
    assert p.returncode == 0, p.stderr
    assert wait_for(lambda: runtime.state(cid)["status"] == "stopped", 5)
    runtime("delete", cid, check=True)
    p = runtime("run", "--bundle", wb(["/start.wasm"]), runtime.new_id())
    assert (p.returncode, p.stdout) == (7, "start function ran\n"), p.stderr
