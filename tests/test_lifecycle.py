"""The container lifecycle through the CLI, as containerd and podman drive it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import cgroup_dirs


def wait_status(runtime, cid: str, status: str, timeout: float = 5) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = runtime.state(cid)
        if st["status"] == status or time.monotonic() > deadline:
            return st
        time.sleep(0.02)


def test_run_exit_code_and_stdio(runtime, bundles):
    b = bundles.make(["sh", "-c", "echo out; echo err >&2; exit 42"])
    p = runtime("run", "--bundle", b, runtime.new_id())
    assert p.returncode == 42
    assert p.stdout == "out\n"
    assert p.stderr == "err\n"


def test_run_stdin_is_the_containers(runtime, bundles):
    b = bundles.make(["sh", "-c", "read x; echo got $x"])
    p = runtime("run", "-b", b, runtime.new_id(), input="hello\n")
    assert p.stdout == "got hello\n"
    assert p.returncode == 0


def test_run_signal_exit_is_128_plus_signal(runtime, bundles):
    import subprocess

    cid = runtime.new_id()
    b = bundles.make(["sh", "-c", "echo ready; exec sleep 1000"])
    p = subprocess.Popen(runtime.cmd("run", "--bundle", b, cid), stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout is not None and p.stdout.readline() == "ready\n"
    runtime("kill", cid, "KILL", check=True)
    assert p.wait(timeout=10) == 128 + 9


def test_run_deletes_the_container(runtime, bundles):
    cid = runtime.new_id()
    runtime("run", "--bundle", bundles.make(["true"]), cid, check=True)
    assert runtime("state", cid).returncode == 1
    assert runtime("list", "-q").stdout == ""


def test_run_keep_leaves_a_stopped_container(runtime, bundles):
    cid = runtime.new_id()
    runtime("run", "--keep", "--bundle", bundles.make(["true"]), cid, check=True)
    assert runtime.state(cid)["status"] == "stopped"
    runtime("delete", cid, check=True)


def test_create_start_state_kill_delete(runtime, bundles, tmp_path):
    cid = runtime.new_id()
    b = bundles.make(["sleep", "1000"])
    pidfile = tmp_path / "init.pid"
    p = runtime("create", "--bundle", b, "--pid-file", str(pidfile), cid)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "" and p.stderr == ""
    st = runtime.state(cid)
    assert st["status"] == "created"
    assert st["id"] == cid
    assert st["bundle"] == b
    assert st["ociVersion"]
    raw = pidfile.read_bytes()
    assert raw.isdigit(), "pid file must be digits only, no newline"
    assert int(raw) == st["pid"]
    # init is waiting: the program has not run yet
    with open(f"/proc/{st['pid']}/cmdline", "rb") as f:
        assert b"sleep" not in f.read()
    runtime("start", cid, check=True)
    st = wait_status(runtime, cid, "running")
    assert st["status"] == "running"
    with open(f"/proc/{st['pid']}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[0] == b"sleep"
    assert runtime("start", cid).returncode != 0
    runtime("kill", cid, "KILL", check=True)
    st = wait_status(runtime, cid, "stopped")
    assert st["status"] == "stopped"
    assert st["pid"] == 0
    runtime("delete", cid, check=True)
    assert runtime("state", cid).returncode == 1


@pytest.mark.parametrize("sig", ["TERM", "SIGTERM", "15"])
def test_kill_signal_forms(runtime, bundles, sig):
    cid = runtime.new_id()
    b = bundles.make(["sh", "-c", "trap 'exit 3' TERM; while true; do sleep 0.05; done"])
    runtime("create", "--bundle", b, cid, check=True)
    runtime("start", cid, check=True)
    time.sleep(0.2)
    runtime("kill", cid, sig, check=True)
    assert wait_status(runtime, cid, "stopped")["status"] == "stopped"
    runtime("delete", cid, check=True)


def test_kill_default_is_term(runtime, bundles):
    cid = runtime.new_id()
    b = bundles.make(["sh", "-c", "trap 'exit 3' TERM; while true; do sleep 0.05; done"])
    runtime("run", "-d", "--bundle", b, cid, check=True)
    time.sleep(0.2)
    runtime("kill", cid, check=True)
    assert wait_status(runtime, cid, "stopped")["status"] == "stopped"


def test_kill_a_created_container(runtime, bundles):
    cid = runtime.new_id()
    runtime("create", "--bundle", bundles.make(["true"]), cid, check=True)
    runtime("kill", cid, "TERM", check=True)
    assert wait_status(runtime, cid, "stopped")["status"] == "stopped"
    assert runtime("start", cid).returncode != 0


def test_kill_stopped_container(runtime, bundles):
    cid = runtime.new_id()
    runtime("run", "--keep", "--bundle", bundles.make(["true"]), cid, check=True)
    p = runtime("kill", cid, "9")
    assert p.returncode == 1
    assert "container not running" in p.stderr
    assert runtime("kill", "--all", cid, "9").returncode == 0


def test_kill_all_reaches_every_process(runtime, bundles):
    cid = runtime.new_id()
    b = bundles.make(["sh", "-c", "sleep 1000 & sleep 1000 & wait"])
    b_spec = json.loads(open(os.path.join(b, "config.json")).read())
    # Share the host pid namespace so killing init alone would not kill the children.
    b_spec["linux"]["namespaces"] = [n for n in b_spec["linux"]["namespaces"]
                                     if n["type"] != "pid"]
    b = bundles.write(b_spec)
    runtime("run", "-d", "--bundle", b, cid, check=True)
    time.sleep(0.3)
    procs = json.loads(runtime("ps", "--format", "json", cid, check=True).stdout)
    assert len(procs) >= 3
    runtime.pids.update(procs)
    runtime("kill", "--all", cid, "KILL", check=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not any(os.path.exists(f"/proc/{p}") and _running(p) for p in procs):
            break
        time.sleep(0.05)
    assert not any(_running(p) for p in procs)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


def test_delete_running_needs_force(runtime, bundles):
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", bundles.make(["sleep", "1000"]), cid, check=True)
    pid = runtime.state(cid)["pid"]
    p = runtime("delete", cid)
    assert p.returncode != 0
    assert "running" in p.stderr
    runtime("delete", "--force", cid, check=True)
    assert runtime("state", cid).returncode == 1
    assert not _running(pid)


def test_delete_ends_what_outlived_init_without_a_pid_namespace(runtime, bundles):
    """In the host's pid namespace, a background process outlives the container's init:
    delete of the stopped container finds it in the container's cgroup and ends it (in a
    pid namespace of its own, the kernel ends such processes with init)."""
    cid = runtime.new_id()
    spec = bundles.spec(["sh", "-c", "sleep 1000 & exit 0"])
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                   if n["type"] != "pid"]
    runtime("run", "-d", "--bundle", bundles.write(spec), cid, check=True)
    assert wait_status(runtime, cid, "stopped")["status"] == "stopped"
    left = _in_cgroups_of(cid)
    assert left, "the background sleep should still be in the container's cgroup"
    runtime.pids.update(left)
    runtime("delete", cid, check=True)
    deadline = time.monotonic() + 5
    while any(_running(p) for p in left) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_running(p) for p in left)
    assert not _in_cgroups_of(cid) and cgroup_dirs(cid) == []


def _in_cgroups_of(cid: str) -> set[int]:
    """Live processes whose cgroup (any hierarchy, any driver) names the container's id
    (a zombie not yet reaped by its new parent still shows its last cgroup)."""
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cgroup") as f:
                    if cid in f.read() and _running(int(d)):
                        out.add(int(d))
            except OSError:
                continue
    return out


def test_delete_missing(runtime):
    p = runtime("delete", "nope")
    assert p.returncode == 1
    assert "does not exist" in p.stderr
    assert runtime("delete", "--force", "nope").returncode == 0


def test_delete_created_container_kills_init(runtime, bundles):
    cid = runtime.new_id()
    runtime("create", "--bundle", bundles.make(["true"]), cid, check=True)
    pid = runtime.state(cid)["pid"]
    runtime("delete", cid, check=True)
    time.sleep(0.1)
    assert not _running(pid)


def test_list_formats(runtime, bundles):
    a, b = runtime.new_id("a"), runtime.new_id("b")
    runtime("create", "--bundle", bundles.make(["true"]), a, check=True)
    runtime("create", "--bundle", bundles.make(["true"]), b, check=True)
    assert sorted(runtime("list", "-q").stdout.split()) == sorted([a, b])
    table = runtime("list").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"]
    assert {line.split()[0] for line in table[1:]} == {a, b}
    js = json.loads(runtime("list", "--format", "json").stdout)
    assert {s["id"]: s["status"] for s in js} == {a: "created", b: "created"}


def test_state_shape(runtime, bundles):
    cid = runtime.new_id()
    b = bundles.spec(["true"])
    b["annotations"] = {"com.example.k": "v"}
    runtime("create", "--bundle", bundles.write(b), cid, check=True)
    st = runtime.state(cid)
    for k in ("ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"):
        assert k in st
    assert st["annotations"] == {"com.example.k": "v"}
    assert st["created"].endswith("Z")


def test_pid_reuse_is_not_the_container(runtime, bundles):
    cid = runtime.new_id()
    runtime("create", "--bundle", bundles.make(["true"]), cid, check=True)
    root = runtime.root
    [name] = runtime.containers_left()
    path = root / name
    state = json.loads((path / "state.json").read_text())
    # Pretend init's pid now belongs to another process: ours.
    state["pid"] = os.getpid()
    (path / "state.json").write_text(json.dumps(state))
    assert runtime.state(cid)["status"] == "stopped"
    os.kill(state["pid"], 0)  # we are still alive: the runtime must not have signalled us
    runtime("delete", "--force", cid, check=True)


def test_run_detach_returns_and_container_runs(runtime, bundles):
    cid = runtime.new_id()
    t = time.monotonic()
    runtime("run", "--detach", "--bundle", bundles.make(["sleep", "1000"]), cid, check=True)
    assert time.monotonic() - t < 5
    assert runtime.state(cid)["status"] == "running"
    runtime("delete", "-f", cid, check=True)


def test_run_forwards_signals(runtime, bundles, tmp_path):
    cid = runtime.new_id()
    b = bundles.make(["sh", "-c", "trap 'echo got-term; exit 5' TERM; echo ready; "
                      "while true; do sleep 0.05; done"])
    import subprocess

    p = subprocess.Popen(runtime.cmd("run", "--bundle", b, cid), stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout is not None
    assert p.stdout.readline() == "ready\n"
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=10)
    assert p.returncode == 5
    assert "got-term" in out


def test_foreground_run_does_not_block_other_commands(runtime, bundles):
    """While `run` waits in the foreground, pause, resume, exec, update and state of the
    same container answer at once (they take its lock), and the run still cleans up."""
    import subprocess

    cid = runtime.new_id()
    b = bundles.make(["sh", "-c", "echo ready; while true; do sleep 0.05; done"])
    p = subprocess.Popen(runtime.cmd("run", "--bundle", b, cid), stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
        for args in (["pause", cid], ["resume", cid], ["exec", cid, "true"],
                     ["update", "--pids-limit", "50", cid]):
            r = runtime(*args, timeout=10)
            assert r.returncode == 0, (args, r.stderr)
        assert runtime.state(cid)["status"] == "running"
        assert runtime("kill", cid, "KILL", timeout=10).returncode == 0
        p.wait(timeout=10)
        assert p.returncode == 137
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert runtime.containers_left() == []


def test_delete_force_during_foreground_run(runtime, bundles):
    import subprocess

    cid = runtime.new_id()
    b = bundles.make(["sh", "-c", "echo ready; while true; do sleep 0.05; done"])
    p = subprocess.Popen(runtime.cmd("run", "--bundle", b, cid), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline() == "ready\n"
    assert runtime("delete", "--force", cid, timeout=10).returncode == 0
    _, err = p.communicate(timeout=10)
    assert p.returncode == 137 and "Traceback" not in err
    assert runtime.containers_left() == []


def test_spec_writes_a_runnable_config(runtime, tmp_path, rootfs):
    d = tmp_path / "b"
    d.mkdir()
    runtime("spec", "--bundle", str(d), check=True)
    spec = json.loads((d / "config.json").read_text())
    assert spec["process"]["args"] == ["sh"]
    assert {n["type"] for n in spec["linux"]["namespaces"]} >= {"pid", "mount", "network"}
    assert runtime("spec", "--bundle", str(d)).returncode != 0  # refuses to overwrite
    spec["root"]["path"] = rootfs
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["true"]
    (d / "config.json").write_text(json.dumps(spec))
    runtime("run", "--bundle", str(d), runtime.new_id(), check=True)


def test_spec_is_runcs_template(runtime, tmp_path):
    """What `runc spec` writes, field for field (tools and runc's own tests edit it and add
    to it), but the name, the runtime-spec version and one more masked path."""
    ours, theirs = tmp_path / "yacr", tmp_path / "runc"
    for d in (ours, theirs):
        d.mkdir()
    runtime("spec", "--bundle", str(ours), check=True)
    a = json.loads((ours / "config.json").read_text())
    subprocess.run(["runc", "spec", "--bundle", str(theirs)], check=True, capture_output=True)
    b = json.loads((theirs / "config.json").read_text())
    assert (a.pop("hostname"), b.pop("hostname")) == ("yacr", "runc")
    assert a.pop("ociVersion") != b.pop("ociVersion")
    assert a["linux"]["maskedPaths"] == b["linux"]["maskedPaths"] + \
        ["/sys/devices/virtual/powercap"]
    a["linux"].pop("maskedPaths")
    b["linux"].pop("maskedPaths")
    assert a == b
    assert "seccomp" not in a["linux"]
    # a cgroup namespace only on pure cgroup v2 hosts, as runc decides
    from yacr.specgen import unified_host

    assert any(n["type"] == "cgroup" for n in a["linux"]["namespaces"]) == unified_host()


def test_spec_seccomp_adds_the_default_profile(runtime, tmp_path):
    from yacr.linux.seccomp_default import default_profile
    from yacr.specgen import DEFAULT_CAPS

    runtime("spec", "--seccomp", "--bundle", str(tmp_path), check=True)
    spec = json.loads((tmp_path / "config.json").read_text())
    assert spec["linux"]["seccomp"] == default_profile(DEFAULT_CAPS)


def test_spec_rootless(runtime, tmp_path):
    runtime("spec", "--rootless", "--bundle", str(tmp_path), check=True)
    spec = json.loads((tmp_path / "config.json").read_text())
    assert any(n["type"] == "user" for n in spec["linux"]["namespaces"])
    assert spec["linux"]["uidMappings"]


def test_features(runtime):
    f = json.loads(runtime("features", check=True).stdout)
    assert f["ociVersionMin"] and f["ociVersionMax"]
    assert "createRuntime" in f["hooks"]
    assert "rbind" in f["mountOptions"]
    assert "pid" in f["linux"]["namespaces"]
    assert "CAP_SYS_ADMIN" in f["linux"]["capabilities"]


def test_version_and_help(runtime):
    p = runtime("--version", check=True)
    assert "yacr version" in p.stdout
    h = runtime("--help", check=True).stdout
    for c in ("create", "start", "run", "state", "kill", "delete", "list", "spec", "features",
              "exec"):
        assert c in h
    assert "--pid-file" in runtime("create", "--help", check=True).stdout


def test_flag_forms(runtime, bundles, tmp_path):
    """podman passes --x=v, containerd --x v; Go flags also accept a single dash."""
    cid = runtime.new_id()
    b = bundles.make(["true"])
    pf = tmp_path / "p"
    p = runtime("create", f"--bundle={b}", "-pid-file", str(pf), cid)
    assert p.returncode == 0, p.stderr
    assert pf.exists()
    runtime("delete", "--force=true", cid, check=True)


def test_preserve_fds(runtime, bundles, tmp_path):
    import shlex
    import subprocess

    cid = runtime.new_id()
    b = bundles.make(["sh", "-c", "cat <&3; ls /proc/self/fd"])
    data = tmp_path / "data"
    data.write_text("from-fd-3\n")
    # fd 3 is preserved; fd 7 is open in the runtime too and must not leak in.
    cmd = " ".join(shlex.quote(c) for c in runtime.cmd("run", "--preserve-fds", "1",
                                                       "--bundle", b, cid))
    p = subprocess.run(["sh", "-c", f"exec {cmd} 3<{data} 7</dev/null"], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split()
    assert lines[0] == "from-fd-3"
    fds = sorted(int(x) for x in lines[1:])
    # 0-2, the preserved 3, and ls's own directory fd
    assert 3 in fds and 7 not in fds, fds
    assert len(fds) <= 5


def test_concurrent_creates_of_one_id(runtime, bundles):
    """The state directory is made with mkdir and locked: exactly one create wins."""
    import subprocess

    cid = runtime.new_id()
    b = bundles.make(["sleep", "1000"])
    import tempfile

    # stderr to files: the winner's init keeps the runtime's stderr open
    errs = [tempfile.TemporaryFile() for _ in range(4)]
    procs = [subprocess.Popen(runtime.cmd("create", "--bundle", b, cid),
                              stdout=subprocess.DEVNULL, stderr=e) for e in errs]
    results = []
    for p, e in zip(procs, errs, strict=True):
        rc = p.wait(timeout=30)
        e.seek(0)
        results.append((rc, e.read().decode()))
        e.close()
    assert sorted(rc for rc, _ in results) == [0, 1, 1, 1]
    assert all("already exists" in err for rc, err in results if rc)
    assert runtime.state(cid)["status"] == "created"
    dels = [subprocess.Popen(runtime.cmd("delete", "--force", cid)) for _ in range(3)]
    assert [d.wait(timeout=30) for d in dels] == [0, 0, 0]
    assert runtime("state", cid).returncode == 1


def test_create_without_process_then_start_fails(runtime, bundles):
    """runtime-spec: create applies everything but process; start MUST fail without one."""
    spec = bundles.spec(["true"])
    del spec["process"]
    cid = runtime.new_id()
    runtime("create", "--bundle", bundles.write(spec), cid, check=True)
    assert runtime.state(cid)["status"] == "created"
    p = runtime("start", cid)
    assert p.returncode == 1 and "without a process" in p.stderr
    assert runtime.state(cid)["status"] == "created"
    # the namespaces exist and can be joined
    assert runtime("exec", cid, "hostname").stdout.strip() == "yacr"
    runtime("delete", cid, check=True)


def test_systemd_cgroup_flag_works_or_says_why_not(runtime, bundles):
    """On a pure cgroup v2 host run by systemd (the VM of make test-vm) --systemd-cgroup
    works (tests/test_systemd.py has the rest); anywhere else it is refused with the
    reason, and nothing is left."""
    from test_systemd import systemd_host

    cid = runtime.new_id()
    p = runtime("--systemd-cgroup", "create", "--bundle", bundles.make(["true"]), cid)
    assert "Traceback" not in p.stderr
    if systemd_host():
        assert p.returncode == 0, p.stderr
        assert runtime("--systemd-cgroup", "delete", cid).returncode == 0
    else:
        assert p.returncode == 1 and "--systemd-cgroup" in p.stderr, p.stderr
        assert "pure cgroup v2" in p.stderr or "not running" in p.stderr, p.stderr
    assert runtime.containers_left() == []


def subprocess_run(runtime, args):
    import subprocess

    return subprocess.run([*runtime.cmd()[:3], *args], capture_output=True, text=True,
                          timeout=60)


def test_session_keyring(runtime, bundles):
    """A new session keyring named after the container, unless --no-new-keyring (as runc)."""
    counts = {}
    for flag in ([], ["--no-new-keyring"]):
        cid = runtime.new_id()
        spec = bundles.spec(["sh", "-c", f"grep -c '_ses.{cid}' /proc/keys || true"])
        spec["linux"]["maskedPaths"] = []  # /proc/keys is masked by default
        p = runtime("run", *flag, "--bundle", bundles.write(spec), cid)
        assert p.returncode == 0, p.stderr
        counts[bool(flag)] = int(p.stdout.strip())
    assert counts == {False: 1, True: 0}


def test_debug_flag_logs_more(runtime, bundles, tmp_path):
    log = tmp_path / "log"
    spec = bundles.spec(["true"])
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "uts"]
    b = bundles.write(spec)  # hostname without a uts namespace: init fails
    p = subprocess_run(runtime, ["--debug", "--log", str(log), "create", "--bundle", b,
                                 runtime.new_id()])
    assert p.returncode == 1 and "uts" in p.stderr
    assert "Traceback" in log.read_text()  # the init's stack, for developers, in the log only
