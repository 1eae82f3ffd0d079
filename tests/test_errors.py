"""Bad input: a clear one-line error naming the field, non-zero exit, nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest


def assert_clean_error(p, *fragments: str) -> None:
    assert p.returncode != 0
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def assert_nothing_left(runtime, cid: str | None = None) -> None:
    from conftest import cgroup_dirs

    if runtime.root.exists():
        assert runtime.containers_left() == []
    if cid:
        assert cgroup_dirs(cid) == []


@pytest.mark.parametrize("cid", ["", "-x", ".x", "a/b", "a b", "a:b", "ä", "x" * 1025,
                                 "../etc"])
def test_invalid_ids(runtime, bundles, cid):
    p = runtime("create", "--bundle", bundles.make(["true"]), cid)
    assert_clean_error(p, "id")
    assert_nothing_left(runtime)


def test_long_valid_id(runtime, bundles):
    cid = "a" * 1024
    runtime.ids.add(cid)
    runtime("create", "--bundle", bundles.make(["true"]), cid, check=True)
    assert runtime.state(cid)["id"] == cid
    assert runtime("list", "-q").stdout.split() == [cid]
    runtime("delete", cid, check=True)
    assert_nothing_left(runtime)


def test_duplicate_id_leaves_the_first_alone(runtime, bundles):
    cid = runtime.new_id()
    runtime("create", "--bundle", bundles.make(["true"]), cid, check=True)
    first = runtime.state(cid)
    p = runtime("create", "--bundle", bundles.make(["true"]), cid)
    assert_clean_error(p, "already exists")
    again = runtime.state(cid)
    assert again["status"] == "created" and again["pid"] == first["pid"]
    runtime("delete", cid, check=True)


def test_missing_bundle_and_config(runtime, tmp_path):
    cid = runtime.new_id()
    assert_clean_error(runtime("create", "--bundle", str(tmp_path / "nope"), cid), "nope")
    assert_clean_error(runtime("create", "--bundle", str(tmp_path), cid), "config.json")
    assert_nothing_left(runtime, cid)


@pytest.mark.parametrize("text,fragment", [
    ("{", "not valid JSON"),
    ("[]", "expected an object"),
    ('{"ociVersion": "1.0.0"}', "root"),
    ("{\"ociVersion\": \"1\", \"root\": {\"path\": \"rootfs\"}} trailing", "extra data"),
    ("\xff", "not valid JSON"),
])
def test_malformed_config(runtime, tmp_path, text, fragment):
    (tmp_path / "config.json").write_bytes(text.encode("latin-1"))
    cid = runtime.new_id()
    assert_clean_error(runtime("create", "--bundle", str(tmp_path), cid), fragment)
    assert_nothing_left(runtime, cid)


def _edit(spec: dict, path: str, value: object) -> None:
    keys = path.split(".")
    cur = spec
    for k in keys[:-1]:
        cur = cur[int(k)] if isinstance(cur, list) else cur.setdefault(k, {})
    if value is _DELETE:
        del cur[keys[-1]]
    else:
        cur[keys[-1]] = value


_DELETE = object()


@pytest.mark.parametrize("path,value,fragment", [
    ("process.args", "true", "process.args: expected an array"),
    ("process.args", [], "process.args"),
    ("process.args", [1], "process.args[0]"),
    ("process.cwd", "tmp", "process.cwd"),
    ("process.cwd", _DELETE, "process.cwd: is required"),
    ("process.user.uid", "0", "process.user.uid: expected an integer"),
    ("process.user.uid", -1, "process.user.uid"),
    ("process.env", ["A=\u0000"], "process.env[0]: contains a NUL byte"),
    ("process.terminal", "yes", "process.terminal: expected a boolean"),
    ("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1},
                         {"type": "RLIMIT_NOFILE", "soft": 2, "hard": 2}],
     "duplicate rlimit"),
    ("process.rlimits", [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}], "RLIMIT_BOGUS"),
    ("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 5, "hard": 1}], "soft limit"),
    ("process.oomScoreAdj", 5000, "process.oomScoreAdj"),
    ("ociVersion", 1, "ociVersion"),
    ("root.path", "does-not-exist", "root.path"),
    ("mounts", {}, "mounts: expected an array"),
    ("mounts.0.destination", 7, "mounts[0].destination"),
    ("linux.namespaces", [{"type": "bogus"}], "unknown namespace type"),
    ("linux.namespaces", [{"type": "pid"}, {"type": "pid"}], "duplicate namespace"),
    ("linux.namespaces", [{"type": "mount"}, {"type": "user"}], "needs uidMappings"),
    ("linux.namespaces", [{"type": "mount"}, {"type": "network", "path": "/nope"}],
     "linux.namespaces[1].path"),
    ("linux.namespaces", [{"type": "mount"}, {"type": "network",
                                              "path": "/proc/self/ns/ipc"}],
     "is not a network namespace"),
    ("linux.namespaces", [{"type": "mount"}, {"type": "network", "path": "/etc/passwd"}],
     "is not a namespace"),
    ("linux.devices", [{"type": "x", "path": "/dev/x"}], "linux.devices[0].type"),
    ("linux.devices", [{"type": "c", "path": "/", "major": 1, "minor": 3}],
     "linux.devices[0].path"),
    ("linux.devices", [{"type": "c", "path": "dev/null", "major": 1, "minor": 3}],
     "linux.devices[0].path"),
    ("linux.sysctl", {"kernel.hostname": "x"}, "linux.sysctl.kernel.hostname"),
    ("linux.sysctl", {"kernel.domainname": "x"}, "'domainname' field"),
    ("linux.rootfsPropagation", "sideways", "linux.rootfsPropagation"),
    ("hooks.prestart", [{"path": "relative"}], "hooks.prestart[0].path"),
    ("hooks.poststop", [{"path": "/bin/true", "timeout": 0}], "hooks.poststop[0].timeout"),
    ("annotations", {"k": 1}, "annotations.k"),
    ("linux.cgroupsPath", "machine.slice:yacr:x", "systemd"),
    ("linux.cgroupsPath", "/a/../../b", "must not contain"),
    ("hostname", ["x"], "hostname"),
])
def test_wrong_fields(runtime, bundles, path, value, fragment):
    spec = bundles.spec(["true"])
    _edit(spec, path, value)
    cid = runtime.new_id()
    p = runtime("create", "--bundle", bundles.write(spec), cid)
    assert_clean_error(p, fragment)
    assert_nothing_left(runtime, cid)


def test_hostname_without_uts_namespace(runtime, bundles):
    spec = bundles.spec(["true"])
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "uts"]
    cid = runtime.new_id()
    assert_clean_error(runtime("create", "--bundle", bundles.write(spec), cid), "uts")
    assert_nothing_left(runtime, cid)


def test_missing_binary_uses_runc_wording(runtime, bundles):
    cid = runtime.new_id()
    p = runtime("create", "--bundle", bundles.make(["no-such-program"]), cid)
    assert_clean_error(p, 'exec: "no-such-program": executable file not found in $PATH')
    p = runtime("create", "--bundle", bundles.make(["/bin/nope"]), cid)
    assert_clean_error(p, "no such file or directory")
    p = runtime("create", "--bundle", bundles.make(["/etc/passwd"]), cid)
    assert_clean_error(p, "permission denied")
    assert_nothing_left(runtime, cid)


def test_a_cwd_that_cannot_be_made(runtime, bundles):
    """A missing cwd is created (tests/test_process.py); one under a file cannot be."""
    spec = bundles.spec(["true"])
    spec["process"]["cwd"] = "/etc/passwd/sub"
    cid = runtime.new_id()
    assert_clean_error(runtime("create", "--bundle", bundles.write(spec), cid),
                       "process.cwd", "/etc/passwd/sub")
    assert_nothing_left(runtime, cid)


def test_operations_on_unknown_ids(runtime):
    for args in (["start", "ghost"], ["state", "ghost"], ["kill", "ghost"], ["delete", "ghost"],
                 ["exec", "ghost", "true"], ["ps", "ghost"], ["pause", "ghost"]):
        assert_clean_error(runtime(*args), "does not exist")


def test_wrong_state_operations(runtime, bundles):
    cid = runtime.new_id()
    runtime("create", "--bundle", bundles.make(["sleep", "1000"]), cid, check=True)
    assert_clean_error(runtime("resume", cid), "not paused")
    runtime("start", cid, check=True)
    assert_clean_error(runtime("start", cid), "running")
    assert_clean_error(runtime("delete", cid), "not stopped")
    runtime("kill", cid, "KILL", check=True)
    time.sleep(0.2)
    assert_clean_error(runtime("start", cid), "stopped")
    assert_clean_error(runtime("exec", cid, "true"), "stopped")
    runtime("delete", cid, check=True)


def test_cli_usage_errors(runtime):
    assert_clean_error(runtime("create"), "missing container id")
    assert_clean_error(runtime("frobnicate", "x"), "unknown command")
    assert_clean_error(runtime("create", "--nope", "x"), "flag provided but not defined")
    assert_clean_error(runtime("create", "--preserve-fds", "x", "c"), "--preserve-fds")
    # as runc: the container is looked up before the signal is read
    assert_clean_error(runtime("kill", "a", "NOTASIGNAL"), "does not exist")
    assert_clean_error(runtime("list", "--format", "xml"), "format")
    p = subprocess.run([*runtime.cmd("state", "x")[:3], "--log-format", "yaml", "state", "x"],
                       capture_output=True, text=True)
    assert_clean_error(p, "--log-format")


def test_error_goes_to_json_log(runtime, tmp_path):
    log = tmp_path / "log.json"
    p = runtime("delete", "ghost", log=str(log), log_format="json")
    assert p.returncode == 1
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    assert recs[-1]["level"] == "error"
    assert "does not exist" in recs[-1]["msg"]
    assert recs[-1]["time"].endswith("Z") and "T" in recs[-1]["time"]
    text = tmp_path / "log.txt"
    runtime("delete", "ghost", log=str(text))
    assert 'level=error msg="container does not exist' in text.read_text()


def test_success_prints_nothing_on_stderr(runtime, bundles):
    cid = runtime.new_id()
    for args in (("create", "--bundle", bundles.make(["sleep", "10"]), cid), ("start", cid),
                 ("state", cid), ("kill", cid, "9"), ("delete", "--force", cid)):
        p = runtime(*args)
        assert p.returncode == 0 and p.stderr == "", (args, p.stderr)


def test_oversized_config(runtime, tmp_path):
    (tmp_path / "config.json").write_text('{"x": "' + "a" * (9 * 1024 * 1024) + '"}')
    assert_clean_error(runtime("create", "--bundle", str(tmp_path), runtime.new_id()),
                       "larger than")


def test_deeply_nested_config(runtime, tmp_path):
    (tmp_path / "config.json").write_text("[" * 100000 + "]" * 100000)
    assert_clean_error(runtime("create", "--bundle", str(tmp_path), runtime.new_id()),
                       "config.json")


def test_failing_create_runtime_hook_cleans_up(runtime, bundles, tmp_path):
    spec = bundles.spec(["true"])
    spec["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c",
                                                                    "echo broken >&2; exit 3"]}]}
    cid = runtime.new_id()
    p = runtime("create", "--bundle", bundles.write(spec), cid)
    assert_clean_error(p, "error running hook #0 (createRuntime: /bin/sh)", "exit status 3",
                       "broken")
    assert_nothing_left(runtime, cid)


def test_sigkill_during_create_leaves_only_what_delete_force_removes(runtime, bundles,
                                                                     tmp_path):
    marker = tmp_path / "in-hook"
    spec = bundles.spec(["true"])
    spec["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": [
        "sh", "-c", f"cat > {marker}.state; touch {marker}; sleep 100"]}]}
    cid = runtime.new_id()
    proc = subprocess.Popen(runtime.cmd("create", "--bundle", bundles.write(spec), cid),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marker.exists()
    init_pid = json.loads(open(f"{marker}.state").read())["pid"]
    assert init_pid > 0
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # init dies with its runtime (parent-death signal)
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{init_pid}") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runtime.state(cid)["status"] == "stopped"
    runtime("delete", "--force", cid, check=True)
    assert_nothing_left(runtime, cid)
    # the id can be reused
    runtime("run", "--bundle", bundles.make(["true"]), cid, check=True)
    subprocess.run(["pkill", "-f", f"touch {marker}; sleep 100"])
    assert not os.path.exists(f"/proc/{init_pid}/stat") or \
        open(f"/proc/{init_pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"


# --- validation as runc does it (issue 11) ---------------------------------------------------

def test_device_access_with_a_as_runc_takes_it(runtime, bundles):
    spec = bundles.spec(["sh", "-c", "head -c1 /dev/kmsg >/dev/null 2>&1 && echo read; "
                         "echo done > /dev/null && echo null"])
    spec["linux"]["resources"]["devices"] = [
        {"allow": False, "access": "rwm"},
        {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "rwa"}]
    spec["linux"]["devices"] = [{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11}]
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 0 and p.stdout == "null\n", p.stderr
    # "a" alone grants nothing: the rule is dropped, not written as an empty one
    spec["linux"]["resources"]["devices"][1] = {"allow": True, "type": "c", "major": 1,
                                                "minor": 11, "access": "a"}
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 0 and p.stdout == "null\n", p.stderr
    spec["linux"]["resources"]["devices"][1]["access"] = "rwx"
    cid = runtime.new_id()
    assert_clean_error(runtime("run", "--bundle", bundles.write(spec), cid),
                       "linux.resources.devices[1].access")
    assert_nothing_left(runtime, cid)


def _notify(bundles, names: list[str], listener: str) -> dict:
    spec = bundles.spec(["true"])
    spec["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": listener,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"},
                     {"names": names, "action": "SCMP_ACT_NOTIFY"}]}
    return spec


def test_notify_on_write_is_refused(runtime, bundles, tmp_path):
    cid = runtime.new_id()
    spec = _notify(bundles, ["mkdir", "write"], str(tmp_path / "agent.sock"))
    p = runtime("run", "--bundle", bundles.write(spec), cid)
    assert_clean_error(p, "linux.seccomp.syscalls[1].names[1]",
                       "SCMP_ACT_NOTIFY cannot be used for the write syscall")
    assert_nothing_left(runtime, cid)


def test_notify_without_an_agent(runtime, bundles, tmp_path):
    cid = runtime.new_id()
    spec = _notify(bundles, ["mkdir"], str(tmp_path / "nobody-listens.sock"))
    p = runtime("run", "--bundle", bundles.write(spec), cid)
    assert_clean_error(p, "failed to connect with seccomp agent", "nobody-listens.sock")
    assert_nothing_left(runtime, cid)


@pytest.mark.parametrize("key,field", [("kernel.hostname", "hostname"),
                                       ("kernel/domainname", "domainname")])
def test_sysctls_that_have_a_field_are_refused(runtime, bundles, key, field):
    spec = bundles.spec(["true"])
    spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", key: "x"}
    cid = runtime.new_id()
    p = runtime("create", "--bundle", bundles.write(spec), cid)
    assert_clean_error(p, f"linux.sysctl.{key}", f"'{field}' field")
    assert_nothing_left(runtime, cid)


def test_device_outside_dev(runtime, bundles):
    spec = bundles.spec(["sh", "-c", "echo x > /my/devs/null && ls -l /my/devs/null"])
    spec["root"]["path"] = bundles.private_rootfs()
    spec["linux"]["devices"] = [{"path": "/my/devs/null", "type": "c", "major": 1,
                                 "minor": 3, "fileMode": 0o666}]
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("crw-rw-rw-") and "1,   3" in p.stdout


# --- JSON syntax errors ---------------------------------------------------------------------

def test_json_errors_give_line_and_column(runtime, bundles, tmp_path):
    (tmp_path / "config.json").write_text('{\n  "ociVersion": "1.0.2",\n  "root": {"path" '
                                          '"rootfs"}\n}\n')
    cid = runtime.new_id()
    p = runtime("create", "--bundle", str(tmp_path), cid)
    assert_clean_error(p, "config.json is not valid JSON", "line 3, column 19")
    assert "offset" not in p.stderr
    assert_nothing_left(runtime, cid)

    run = runtime.new_id()
    runtime("run", "-d", "--bundle", bundles.make(["sleep", "1000"]), run, check=True)
    runtime.state(run)
    proc = tmp_path / "process.json"
    proc.write_text('{"args": ["true"],\n "cwd": "/",\n "env": ["A=1",]}')
    p = runtime("exec", "--process", str(proc), run)
    assert_clean_error(p, str(proc), "line 3, column 16")
    runtime("delete", "--force", run, check=True)
