"""OCI hooks: order, namespaces, state on stdin, args/env, timeouts and failure semantics."""

from __future__ import annotations

import json
import os
import time

import pytest


def recorder(tmp_path, name: str, extra: str = "") -> dict:
    """A hook (run by the host's /bin/sh) that saves its stdin, argv, env and namespaces."""
    out = tmp_path / "hooks"
    out.mkdir(exist_ok=True)
    script = (f"cat > {out}/{name}.state; echo \"$0 $1 $HOOKVAR\" > {out}/{name}.args; "
              f"readlink /proc/self/ns/mnt > {out}/{name}.mnt; hostname > {out}/{name}.host; "
              f"echo {name} >> {out}/order; {extra}")
    return {"path": "/bin/sh", "args": ["sh", "-c", script, f"arg-{name}"],
            "env": ["HOOKVAR=v-" + name]}


def read(tmp_path, name: str, kind: str) -> str:
    return (tmp_path / "hooks" / f"{name}.{kind}").read_text()


def test_all_hooks_in_order_with_state(runtime, bundles, tmp_path):
    shared = tmp_path / "hooks"
    shared.mkdir()
    spec = bundles.spec(["true"])
    spec["hostname"] = "hooked"
    # startContainer runs inside the container: its path resolves in the rootfs, and it
    # writes into a bind-mounted host directory.
    spec["mounts"].append({"destination": "/hooks", "type": "bind", "source": str(shared),
                           "options": ["rbind"]})
    start_hook = {"path": "/bin/sh", "args": [
        "sh", "-c", "cat > /hooks/startContainer.state; hostname > /hooks/startContainer.host;"
        " echo startContainer >> /hooks/order"]}
    spec["hooks"] = {
        "prestart": [recorder(tmp_path, "prestart")],
        "createRuntime": [recorder(tmp_path, "createRuntime")],
        "createContainer": [recorder(tmp_path, "createContainer")],
        "startContainer": [start_hook],
        "poststart": [recorder(tmp_path, "poststart")],
        "poststop": [recorder(tmp_path, "poststop")],
    }
    spec["process"]["args"] = ["sh", "-c", "echo process >> /hooks/order"]
    cid = runtime.new_id()
    b = bundles.write(spec)
    runtime("create", "--bundle", b, cid, check=True)
    order = (shared / "order").read_text().split()
    assert order == ["prestart", "createRuntime", "createContainer"]
    init_pid = runtime.state(cid)["pid"]
    runtime("start", cid, check=True)
    deadline = time.monotonic() + 5
    while runtime.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    runtime("delete", cid, check=True)
    order = (shared / "order").read_text().split()
    assert order[:4] == ["prestart", "createRuntime", "createContainer", "startContainer"]
    assert set(order[4:6]) == {"process", "poststart"}
    assert order[6:] == ["poststop"]

    host_mnt = os.readlink("/proc/self/ns/mnt")
    # runtime namespace hooks
    for name in ("prestart", "createRuntime", "poststart", "poststop"):
        assert read(tmp_path, name, "mnt").strip() == host_mnt, name
        assert read(tmp_path, name, "args").split() == [f"arg-{name}", f"v-{name}"][:2] or \
            read(tmp_path, name, "args").strip().endswith(f"v-{name}")
    # container namespace hooks see the container's hostname and mount namespace
    assert read(tmp_path, "createContainer", "mnt").strip() != host_mnt
    assert read(tmp_path, "createContainer", "host").strip() == "hooked"
    assert (shared / "startContainer.host").read_text().strip() == "hooked"

    states = {n: json.loads(read(tmp_path, n, "state"))
              for n in ("prestart", "createRuntime", "createContainer", "poststart", "poststop")}
    states["startContainer"] = json.loads((shared / "startContainer.state").read_text())
    for n, st in states.items():
        assert st["id"] == cid, n
        assert st["bundle"] == b, n
        assert st["ociVersion"], n
    assert states["createRuntime"]["status"] == "created"
    assert states["createContainer"]["status"] == "created"
    assert states["createRuntime"]["pid"] == init_pid  # as the runtime sees it
    assert states["createContainer"]["pid"] == 1  # as the container sees it
    assert states["poststart"]["status"] == "running"
    assert states["poststop"]["status"] == "stopped"


def test_hook_args_and_env(runtime, bundles, tmp_path):
    spec = bundles.spec(["true"])
    spec["hooks"] = {"prestart": [recorder(tmp_path, "p")]}
    runtime("run", "--bundle", bundles.write(spec), runtime.new_id(), check=True)
    assert read(tmp_path, "p", "args").split() == ["arg-p", "v-p"] or \
        read(tmp_path, "p", "args").split()[-1] == "v-p"


def test_hook_timeout(runtime, bundles):
    spec = bundles.spec(["true"])
    spec["hooks"] = {"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"],
                                        "timeout": 1}]}
    cid = runtime.new_id()
    t = time.monotonic()
    p = runtime("create", "--bundle", bundles.write(spec), cid)
    assert time.monotonic() - t < 10
    assert p.returncode == 1
    assert "timed out" in p.stderr
    assert runtime.containers_left() == []


@pytest.mark.parametrize("kind", ["prestart", "createContainer"])
def test_failing_create_hooks_stop_create(runtime, bundles, kind):
    spec = bundles.spec(["true"])
    spec["hooks"] = {kind: [{"path": "/bin/false"}]}
    cid = runtime.new_id()
    p = runtime("create", "--bundle", bundles.write(spec), cid)
    assert p.returncode == 1
    assert f"error running hook #0 ({kind}: /bin/false): exit status 1" in p.stderr
    assert runtime.containers_left() == []


def test_failing_poststart_only_warns(runtime, bundles, tmp_path):
    spec = bundles.spec(["sleep", "1000"])
    spec["hooks"] = {"poststart": [{"path": "/bin/false"}, recorder(tmp_path, "after")]}
    cid = runtime.new_id()
    log = tmp_path / "log.json"
    runtime("create", "--bundle", bundles.write(spec), cid, check=True)
    p = runtime("start", cid, log=str(log), log_format="json")
    assert p.returncode == 0, p.stderr
    assert runtime.state(cid)["status"] == "running"
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert any(r["level"] == "warning" and "poststart" in r["msg"] for r in recs)
    assert (tmp_path / "hooks" / "after.state").exists()


def test_poststart_runs_after_the_program_started(runtime, bundles, tmp_path):
    marker = tmp_path / "hooks"
    marker.mkdir()
    spec = bundles.spec(["sleep", "1000"])
    # the hook records the container process's command line: the program's, not init's
    spec["hooks"] = {"poststart": [{"path": "/bin/sh", "args": [
        "sh", "-c", f"pid=$(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p'); "
        f"tr '\\0' ' ' < /proc/$pid/cmdline > {marker}/cmdline"]}]}
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", bundles.write(spec), cid, check=True)
    assert (marker / "cmdline").read_text().split() == ["sleep", "1000"]


def test_failing_poststop_only_warns(runtime, bundles, tmp_path):
    spec = bundles.spec(["true"])
    spec["hooks"] = {"poststop": [{"path": "/bin/false"}, recorder(tmp_path, "second")]}
    cid = runtime.new_id()
    log = tmp_path / "log.json"
    runtime("run", "--keep", "--bundle", bundles.write(spec), cid, check=True)
    p = runtime("delete", cid, log=str(log), log_format="json")
    assert p.returncode == 0, p.stderr
    assert runtime("state", cid).returncode == 1
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert any(r["level"] == "warning" and "poststop" in r["msg"] for r in recs)
    # a warning does not stop the remaining hooks
    assert (tmp_path / "hooks" / "second.state").exists()


def test_failing_start_container_hook(runtime, bundles):
    spec = bundles.spec(["sleep", "1000"])
    spec["hooks"] = {"startContainer": [{"path": "/bin/false"}]}
    cid = runtime.new_id()
    p = runtime("run", "--bundle", bundles.write(spec), cid)
    assert p.returncode != 0
    assert "startContainer" in p.stderr


def test_start_container_hooks_run_under_the_seccomp_filter(runtime, bundles, tmp_path):
    """A startContainer hook runs in the container once it is set up, so the container's
    filter confines it: a KILL rule for mkdir ends the hook (runc's "bad system call"),
    and with it the start."""
    marker = tmp_path / "made"
    spec = bundles.spec(["true"])
    spec["mounts"].append({"destination": "/out", "type": "bind", "source": str(tmp_path),
                           "options": ["rbind"]})
    spec["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]}
    spec["hooks"] = {"startContainer": [{"path": "/bin/sh",
                                         "args": ["sh", "-c", "mkdir /out/made"]}]}
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode != 0
    assert "error running hook #0 (startContainer: /bin/sh)" in p.stderr, p.stderr
    assert "bad system call" in p.stderr, p.stderr
    assert not marker.exists()


def test_start_container_hooks_inherit_only_stdio(runtime, bundles, tmp_path):
    """Nothing of the runtime's (its socket, the exec FIFO, the log) reaches the hook."""
    spec = bundles.spec(["true"])
    spec["mounts"].append({"destination": "/out", "type": "bind", "source": str(tmp_path),
                           "options": ["rbind"]})
    spec["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": [
        "sh", "-c", "ls /proc/self/fd > /out/fds"]}]}
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id(),
                log=str(tmp_path / "log.json"))
    assert p.returncode == 0, p.stderr
    # 0, 1, 2 and the directory ls itself is reading
    assert len((tmp_path / "fds").read_text().split()) == 4, (tmp_path / "fds").read_text()


def test_hooks_without_env_get_the_runtimes_environment(runtime, bundles, tmp_path):
    """No "env": the runtime's environment, PATH included (runc, crun); "env": [] is an
    empty environment."""
    out = tmp_path / "env"
    out.mkdir()
    spec = bundles.spec(["true"])
    spec["hooks"] = {
        "prestart": [{"path": "/bin/sh", "args": ["sh", "-c", f"env > {out}/inherited"]},
                     {"path": "/bin/sh", "args": ["sh", "-c", f"env > {out}/empty"],
                      "env": []}],
        "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", f"env > {out}/poststop"]}]}
    env = dict(os.environ, PATH="/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin:/hook-path",
               YACR_HOOK_MARK="from-the-runtime")
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id(), env=env)
    assert p.returncode == 0, p.stderr
    for name in ("inherited", "poststop"):
        lines = (out / name).read_text().splitlines()
        assert "YACR_HOOK_MARK=from-the-runtime" in lines, name
        assert any(x.startswith("PATH=") and x.endswith(":/hook-path") for x in lines), name
    assert "YACR_HOOK_MARK" not in (out / "empty").read_text()


@pytest.mark.parametrize("lc_all", [None, "de_DE.UTF-8", ""])
def test_hooks_inherit_the_callers_locale(runtime, bundles, tmp_path, lc_all):
    """The launcher starts the interpreter with LC_ALL=C (no locale files to map); what yacr
    starts still gets the caller's LC_ALL, set, empty or absent, and nothing of the swap."""
    out = tmp_path / "env"
    spec = bundles.spec(["true"])
    spec["hooks"] = {"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", f"env > {out}"]}]}
    env = {k: v for k, v in os.environ.items() if k != "LC_ALL"}
    if lc_all is not None:
        env["LC_ALL"] = lc_all
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id(), env=env)
    assert p.returncode == 0, p.stderr
    lines = out.read_text().splitlines()
    got = [x for x in lines if x.startswith(("LC_ALL=", "YACR_LC_ALL="))]
    assert got == ([] if lc_all is None else [f"LC_ALL={lc_all}"])
    assert len(lines) > 3  # the rest of the caller's environment is there too
