"""Mount configurations runc accepts that need care: a read-only /dev tmpfs, a bind of the
host's /proc for a container in the host's pid namespace."""

from __future__ import annotations


def mounts_with(spec: dict, dest: str, **changes) -> dict:
    spec["mounts"] = [dict(m, **changes) if m["destination"] == dest else m
                      for m in spec["mounts"]]
    return spec


def test_a_read_only_dev_tmpfs_is_filled_first(runtime, bundles):
    """/dev with "ro": mounted writable, its nodes, /dev/pts and /dev/console made, then
    remounted read-only; the container then finds it read-only and complete."""
    spec = bundles.spec(["sh", "-c", "grep '^tmpfs /dev ' /proc/mounts; "
                                     "ls /dev/null /dev/pts/ptmx /dev/console >/dev/null && "
                                     "echo nodes; touch /dev/new 2>/dev/null || echo refused; "
                                     "tty"], terminal=True)
    dev = next(m for m in spec["mounts"] if m["destination"] == "/dev")
    mounts_with(spec, "/dev", options=dev["options"] + ["ro"])
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[3].startswith("ro,"), lines[0]
    assert [ln.strip() for ln in lines[1:3]] == ["nodes", "refused"]
    assert lines[3].strip().startswith("/dev/pts/")


def host_proc_bind(spec: dict) -> dict:
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "pid"]
    spec["mounts"] = [{"destination": "/proc", "type": "none", "source": "/proc",
                       "options": ["rbind", "nosuid", "nodev", "noexec"]}
                      if m["type"] == "proc" else m for m in spec["mounts"]]
    return spec


def test_the_hosts_proc_bound_in_the_hosts_pid_namespace(runtime, bundles):
    """runc's rootless host-pidns case: without a pid namespace, a bind of the host's
    /proc (a procfs) goes on /proc; the masked paths still hide what they hide."""
    spec = host_proc_bind(bundles.spec(["sh", "-c", "test -d /proc/1 && echo sees-pid-1; "
                                                    "cat /proc/kcore | wc -c"]))
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["sees-pid-1", "0"]


def test_a_procfs_bind_is_refused_with_a_pid_namespace_of_its_own(runtime, bundles):
    """Another pid namespace's processes would show through it: mount proc instead."""
    spec = host_proc_bind(bundles.spec(["true"]))
    spec["linux"]["namespaces"].append({"type": "pid"})
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and "/proc: a bind of a procfs" in p.stderr, p.stderr
    assert runtime.containers_left() == []


def test_a_bind_of_something_else_on_proc_is_still_refused(runtime, bundles, tmp_path):
    spec = host_proc_bind(bundles.spec(["true"]))
    spec["mounts"] = [dict(m, source=str(tmp_path)) if m["destination"] == "/proc" else m
                      for m in spec["mounts"]]
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 1
    assert "only a proc filesystem may be mounted on /proc" in p.stderr, p.stderr
