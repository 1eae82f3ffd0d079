"""`yacr profile`: record a container's syscalls through seccomp user notification and
write the minimal profile; the profile runs the same workload and denies the rest."""

from __future__ import annotations

import json
import subprocess
import time

from yacr.linux import recorder, surface

WORKLOAD = ("echo hello > /dev/shm/f; cat /dev/shm/f; ls / > /dev/null; "
            "sleep 0.1; echo done")


def profile(runtime, bundle: str, out, *extra: str, **kw):
    return runtime("profile", "--bundle", bundle, "--output", str(out), *extra,
                   runtime.new_id(), **kw)


def with_profile(bundles, spec: dict, prof: dict, args: list[str] | None = None) -> str:
    spec = json.loads(json.dumps(spec))
    spec["linux"]["seccomp"] = prof
    if args is not None:
        spec["process"]["args"] = args
    return bundles.write(spec)


def test_recorded_profile_runs_the_workload_and_denies_the_rest(runtime, bundles, tmp_path,
                                                                rootfs):
    spec = bundles.spec(["sh", "-c", WORKLOAD])
    out = tmp_path / "seccomp.json"
    p = profile(runtime, bundles.write(spec), out)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "hello\ndone\n"  # the recording run is the workload's own run
    assert "the profile allows" in p.stderr and "Traceback" not in p.stderr
    prof = json.loads(out.read_text())
    names = prof["syscalls"][0]["names"]
    assert prof["defaultAction"] == "SCMP_ACT_ERRNO" and prof["defaultErrnoRet"] == 1
    assert prof["architectures"] == ["SCMP_ARCH_X86_64"]  # only the ABI the workload used
    assert {"execve", "write", "exit_group", "clone", "wait4"} <= set(names)
    assert "mkdir" not in names and "mkdirat" not in names and "mount" not in names
    # nothing of yacr's own set-up before execve (file opening, mounts, capabilities...)
    # except what its last step needs
    assert "capset" not in names and "pivot_root" not in names and "setns" not in names
    assert len(names) < 60

    # the same workload runs the same under the recorded profile
    p = runtime("run", "--bundle", with_profile(bundles, spec, prof), runtime.new_id())
    assert p.returncode == 0 and p.stdout == "hello\ndone\n", p.stderr
    # something outside it is denied, with EPERM; without the profile it works
    other = ["sh", "-c", "mkdir /dev/shm/d && echo made || echo refused"]
    p = runtime("run", "--bundle", with_profile(bundles, spec, prof, other), runtime.new_id())
    assert p.stdout == "refused\n" and "Operation not permitted" in p.stderr
    spec["process"]["args"] = other
    spec["linux"].pop("seccomp")
    assert runtime("run", "--bundle", bundles.write(spec), runtime.new_id()).stdout == "made\n"

    # its surface, measured like every other profile: exactly its names
    s = surface.measure_profile(prof, "recorded", rootfs)
    assert set(s.names(s.allowed())) == set(names)


def test_without_no_new_privileges_the_last_step_keeps_what_it_needs(runtime, bundles,
                                                                     tmp_path):
    """Without no_new_privs yacr keeps CAP_SYS_ADMIN to load the filter and drops it after
    (capset, prctl): the profile allows that, and the container starts under it."""
    spec = bundles.spec(["grep", "-E", "^(Seccomp|CapEff):", "/proc/self/status"])
    spec["process"]["noNewPrivileges"] = False
    out = tmp_path / "p.json"
    cfg = tmp_path / "config.json"
    p = profile(runtime, bundles.write(spec), out, "--write-config", str(cfg))
    assert p.returncode == 0, p.stderr
    assert dict(ln.split(":\t") for ln in p.stdout.splitlines())["Seccomp"] == "2"
    prof = json.loads(out.read_text())
    assert {"capset", "prctl"} <= set(prof["syscalls"][0]["names"])
    assert json.loads(cfg.read_text())["linux"]["seccomp"] == prof
    p = runtime("run", "--bundle", with_profile(bundles, spec, prof), runtime.new_id())
    assert p.returncode == 0, p.stderr
    fields = dict(ln.split(":\t") for ln in p.stdout.splitlines())
    assert fields == {"Seccomp": "2", "CapEff": "0000000020000420"}  # CAP_SYS_ADMIN dropped


def test_timeout_and_exec_are_recorded(runtime, bundles, tmp_path):
    """A long-running container is stopped after --timeout; a `yacr exec` into it while
    it is recorded gets its own listener, and its syscalls are in the profile too."""
    out = tmp_path / "p.json"
    cid = runtime.new_id()
    bundle = bundles.make(["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"])
    proc = subprocess.Popen(runtime.cmd("profile", "--bundle", bundle, "--output", str(out),
                                        "--timeout", "3", cid),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(200):
            if runtime("state", cid).returncode == 0:
                break
            time.sleep(0.02)
        e = runtime("exec", cid, "sh", "-c", "mkdir /dev/shm/x && echo made")
        assert e.returncode == 0 and e.stdout == "made\n", e.stderr
        _out, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr  # it got SIGTERM after the timeout, and exited
    names = json.loads(out.read_text())["syscalls"][0]["names"]
    assert "clock_nanosleep" in names or "nanosleep" in names
    assert "mkdir" in names or "mkdirat" in names  # from the exec'd process


def test_recording_pieces():
    rp = recorder.recording_profile("/run/x.sock")
    assert rp["defaultAction"] == "SCMP_ACT_NOTIFY" and rp["listenerPath"] == "/run/x.sock"
    assert rp["syscalls"][0]["names"] == list(recorder.HANDOFF)
    rec = recorder.Recording()
    x86_64, i386 = 0xC000003E, 0x40000003
    rec.counts = {(x86_64, 1): 3, (x86_64, 60): 1, (i386, 4): 1, (x86_64, 999): 1}
    names, unnamed = rec.names()
    assert names == {"write": 4, "exit": 1} and unnamed == ["999 (arch 0xc000003e)"]
    assert rec.architectures() == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    prof = recorder.minimal_profile(rec, no_new_privileges=True)
    assert set(prof["syscalls"][0]["names"]) == ({"write", "exit"} | set(recorder.LAST_STEP)
                                                 | set(recorder.HANDOFF))


def test_profile_errors(runtime, tmp_path):
    p = runtime("profile", "--bundle", str(tmp_path / "nope"), runtime.new_id())
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1 and "config.json" in p.stderr
    p = runtime("profile", "--timeout", "-1", "x")
    assert p.returncode == 1 and "--timeout" in p.stderr
    p = runtime("profile")
    assert p.returncode == 1 and "Traceback" not in p.stderr
