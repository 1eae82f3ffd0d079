"""Isolation properties, checked from inside the container with busybox tools."""

from __future__ import annotations

import json
import os
import stat

import pytest


def run_in(runtime, bundles, spec: dict) -> str:
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 0, p.stderr
    return p.stdout


def sh(bundles, script: str, **kw) -> dict:
    return bundles.spec(["sh", "-c", script], **kw)


def test_pid_uts_hostname_domainname(runtime, bundles):
    spec = sh(bundles, "echo $$; hostname; cat /proc/sys/kernel/domainname")
    spec["hostname"] = "box1"
    spec["domainname"] = "example.org"
    out = run_in(runtime, bundles, spec).split()
    assert out == ["1", "box1", "example.org"]


def test_namespaces_differ_from_host(runtime, bundles):
    spec = sh(bundles, "for n in pid net ipc uts mnt cgroup; do readlink /proc/self/ns/$n; done")
    inside = run_in(runtime, bundles, spec).split()
    host = [os.readlink(f"/proc/self/ns/{n}") for n in ("pid", "net", "ipc", "uts", "mnt",
                                                          "cgroup")]
    for a, b in zip(inside, host, strict=True):
        assert a != b


def test_shared_namespace_when_not_listed(runtime, bundles):
    spec = sh(bundles, "readlink /proc/self/ns/net; readlink /proc/self/ns/ipc")
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                   if n["type"] not in ("network", "ipc")]
    net, ipc = run_in(runtime, bundles, spec).split()
    assert net == os.readlink("/proc/self/ns/net")
    assert ipc == os.readlink("/proc/self/ns/ipc")


def test_join_namespace_by_path(runtime, bundles):
    a = runtime.new_id("a")
    runtime("run", "-d", "--bundle", bundles.make(["sleep", "1000"]), a, check=True)
    pid = runtime.state(a)["pid"]
    spec = sh(bundles, "readlink /proc/self/ns/net; readlink /proc/self/ns/uts; hostname")
    for n in spec["linux"]["namespaces"]:
        if n["type"] == "network":
            n["path"] = f"/proc/{pid}/ns/net"
        if n["type"] == "uts":
            n["path"] = f"/proc/{pid}/ns/uts"
    spec.pop("hostname")
    net, uts, host = run_in(runtime, bundles, spec).split()
    assert net == os.readlink(f"/proc/{pid}/ns/net")
    assert uts == os.readlink(f"/proc/{pid}/ns/uts")
    assert host == "yacr"


def test_network_namespace_has_only_loopback(runtime, bundles):
    out = run_in(runtime, bundles, sh(bundles, "ls /sys/class/net"))
    assert out.split() == ["lo"]


def test_time_namespace_offsets(runtime, bundles):
    spec = sh(bundles, "cut -d. -f1 /proc/uptime; readlink /proc/self/ns/time")
    spec["linux"]["namespaces"].append({"type": "time"})
    spec["linux"]["timeOffsets"] = {"boottime": {"secs": 864000, "nanosecs": 0}}
    up, ns = run_in(runtime, bundles, spec).split()
    with open("/proc/uptime") as f:
        host_up = float(f.read().split()[0])
    assert int(up) >= host_up + 864000 - 5
    assert ns != os.readlink("/proc/self/ns/time")


def test_cgroup_namespace_root(runtime, bundles):
    out = run_in(runtime, bundles, sh(bundles, "cat /proc/self/cgroup"))
    for line in out.splitlines():
        assert line.split(":", 2)[2] == "/", line


def test_container_is_in_its_cgroup(runtime, bundles):
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", bundles.make(["sleep", "1000"]), cid, check=True)
    pid = runtime.state(cid)["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    v1 = [ln for ln in lines if ln.split(":")[1] and ln.split(":")[1] != ""]
    assert v1, lines
    for ln in v1:
        assert ln.endswith(f"/yacr/{cid}"), ln
    runtime("delete", "--force", cid, check=True)
    from conftest import cgroup_dirs

    assert cgroup_dirs(cid) == []


def test_custom_cgroups_path(runtime, bundles):
    cid = runtime.new_id()
    spec = bundles.spec(["sleep", "1000"])
    path = f"/yacr-test/{cid}/inner"
    spec["linux"]["cgroupsPath"] = path
    runtime("run", "-d", "--bundle", bundles.write(spec), cid, check=True)
    pid = runtime.state(cid)["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        assert any(ln.endswith(":" + path) for ln in f.read().splitlines())
    assert os.path.isdir(f"/sys/fs/cgroup/pids{path}")
    runtime("delete", "--force", cid, check=True)
    assert not os.path.exists(f"/sys/fs/cgroup/pids{path}")
    assert not os.path.exists(f"/sys/fs/cgroup/pids/yacr-test/{cid}")


def test_rootfs_readonly(runtime, bundles):
    out = run_in(runtime, bundles, sh(bundles, "touch /x 2>/dev/null && echo rw || echo ro"))
    assert out.strip() == "ro"
    spec = sh(bundles, "touch /x && echo rw")
    spec["root"] = {"path": bundles.private_rootfs(), "readonly": False}
    assert run_in(runtime, bundles, spec).strip() == "rw"


def test_host_mounts_invisible_and_root_is_rootfs(runtime, bundles):
    out = run_in(runtime, bundles, sh(bundles, "cat /proc/self/mountinfo"))
    dests = [ln.split()[4] for ln in out.splitlines()]
    assert "/" in dests
    assert "/work" not in dests and "/tmp" not in dests
    assert not any(d.startswith("/work") for d in dests)


def test_mounts_tmpfs_options_and_bind(runtime, bundles, tmp_path):
    host = tmp_path / "shared"
    host.mkdir()
    (host / "file").write_text("from-host\n")
    spec = sh(bundles, "grep ' /scratch ' /proc/self/mountinfo; cat /data/file; "
              "touch /data/new 2>/dev/null && echo data-rw; touch /rodata/x 2>/dev/null "
              "|| echo rodata-ro; stat -c %a /scratch")
    spec["mounts"] += [
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "noexec", "mode=1770", "size=1m"]},
        {"destination": "/data", "type": "bind", "source": str(host), "options": ["rbind"]},
        {"destination": "/rodata", "type": "none", "source": str(host),
         "options": ["bind", "ro"]},
    ]
    out = run_in(runtime, bundles, spec).splitlines()
    mi = out[0].split()
    assert "nosuid" in mi[5] and "nodev" in mi[5] and "noexec" in mi[5]
    assert "size=1024k" in out[0]
    assert out[1] == "from-host"
    assert "data-rw" in out
    assert "rodata-ro" in out
    assert out[-1] == "1770"
    assert (host / "new").exists()


def test_bind_mount_file_and_relative_destination(runtime, bundles, tmp_path):
    f = tmp_path / "hello.txt"
    f.write_text("hi-file\n")
    spec = sh(bundles, "cat /etc/hello.txt; cat /rel/hello.txt")
    spec["root"]["path"] = bundles.private_rootfs()  # mount points get created in the rootfs
    spec["mounts"] += [
        {"destination": "/etc/hello.txt", "type": "bind", "source": str(f), "options": ["bind"]},
        {"destination": "rel/hello.txt", "type": "bind", "source": str(f), "options": ["bind"]},
    ]
    assert run_in(runtime, bundles, spec).split() == ["hi-file", "hi-file"]


def test_mount_destination_symlink_cannot_escape(runtime, bundles, tmp_path):
    """A symlink in the image pointing at a host path must resolve inside the rootfs."""
    rootfs = bundles.private_rootfs()
    victim = tmp_path / "victim"
    victim.mkdir()
    os.symlink(str(victim), os.path.join(rootfs, "escape"))
    spec = sh(bundles, "ls /escape")
    spec["root"]["path"] = rootfs
    spec["mounts"].append({"destination": "/escape", "type": "tmpfs", "source": "tmpfs"})
    run_in(runtime, bundles, spec)
    # The tmpfs went on <rootfs>/<victim path>, never on the host directory.
    assert os.path.isdir(os.path.join(rootfs, str(victim).lstrip("/")))
    assert not any(str(victim) in ln.split()[4] for ln in open("/proc/self/mountinfo"))


def test_default_devices_and_links(runtime, bundles):
    out = run_in(runtime, bundles, sh(
        bundles, "for d in null zero full random urandom tty; do stat -c '%n %t %T %a' /dev/$d; "
        "done; for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done"))
    lines = out.splitlines()
    expected = {"/dev/null": ("1", "3"), "/dev/zero": ("1", "5"), "/dev/full": ("1", "7"),
                "/dev/random": ("1", "8"), "/dev/urandom": ("1", "9"), "/dev/tty": ("5", "0")}
    for ln in lines[:6]:
        name, major, minor, mode = ln.split()
        assert (str(int(major, 16)), str(int(minor, 16))) == expected[name]
        assert mode == "666"
    assert lines[6:] == ["/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1",
                         "/proc/self/fd/2", "pts/ptmx"]


def test_config_devices(runtime, bundles):
    spec = sh(bundles, "stat -c '%F %t %T %a %u %g' /dev/mydev /dev/sub/blk /dev/fifo")
    spec["linux"]["devices"] = [
        {"path": "/dev/mydev", "type": "c", "major": 1, "minor": 3, "fileMode": 0o620,
         "uid": 1000, "gid": 5},
        {"path": "/dev/sub/blk", "type": "b", "major": 7, "minor": 0, "fileMode": 0o600},
        {"path": "/dev/fifo", "type": "p"},
    ]
    lines = run_in(runtime, bundles, spec).splitlines()
    assert lines[0] == "character special file 1 3 620 1000 5"
    assert lines[1] == "block special file 7 0 600 0 0"
    assert lines[2].startswith("fifo")


def test_masked_and_readonly_paths(runtime, bundles):
    spec = sh(bundles, "cat /proc/timer_list 2>&1 | wc -c; ls /sys/firmware | wc -l; "
              "echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo sys-rw || echo sys-ro; "
              "grep ' /proc/keys ' /proc/self/mountinfo | wc -l; cat /proc/keys | wc -c")
    out = run_in(runtime, bundles, spec).split()
    assert out[0] == "0"
    assert out[1] == "0"
    assert out[2] == "sys-ro"
    assert out[3] == "1"
    assert out[4] == "0"


def test_sysctl_namespaced(runtime, bundles):
    spec = sh(bundles, "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni")
    spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"}
    spec["linux"]["readonlyPaths"] = []
    assert run_in(runtime, bundles, spec).split() == ["1", "1234"]


def test_sysctl_not_namespaced_is_refused(runtime, bundles):
    spec = bundles.spec(["true"])
    spec["linux"]["sysctl"] = {"kernel.pid_max": "100000"}
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 1
    assert "kernel.pid_max" in p.stderr


def test_process_args_env_cwd(runtime, bundles):
    spec = bundles.spec(["sh", "-c", 'echo "$0|$1|$FOO|$HOME|$(pwd)"', "a b", "c"])
    spec["process"]["env"].append("FOO=bar baz")
    spec["process"]["cwd"] = "/tmp"
    assert run_in(runtime, bundles, spec).strip() == "a b|c|bar baz|/root|/tmp"


def test_process_user_groups_umask(runtime, bundles):
    spec = sh(bundles, "id -u; id -g; id -G; umask; echo $HOME")
    spec["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 44],
                               "umask": 0o027}
    out = run_in(runtime, bundles, spec).split("\n")
    assert out[0] == "1000" and out[1] == "1000"
    # /etc/group lists tester in "users" (100); additionalGids add 5 and 44
    assert sorted(int(g) for g in out[2].split()) == [5, 44, 100, 1000]
    assert out[3] == "0027"
    assert out[4] == "/home/tester"


def _caps(out: str) -> dict[str, int]:
    return {ln.split(":")[0]: int(ln.split()[1], 16) for ln in out.splitlines()
            if ln.startswith("Cap")}


def test_capabilities_all_five_sets(runtime, bundles):
    spec = sh(bundles, "grep Cap /proc/self/status")
    spec["process"]["capabilities"] = {
        "bounding": ["CAP_NET_ADMIN", "CAP_KILL", "CAP_CHOWN"],
        "effective": ["CAP_KILL", "CAP_CHOWN"],
        "permitted": ["CAP_KILL", "CAP_CHOWN"],
        "inheritable": ["CAP_KILL"],
        "ambient": ["CAP_KILL"],
    }
    caps = _caps(run_in(runtime, bundles, spec))
    kill, chown, netadmin = 1 << 5, 1 << 0, 1 << 12
    assert caps["CapBnd"] == kill | chown | netadmin
    # sh is exec'd from a non-root-caps file: the ambient cap survives exec into the new image
    assert caps["CapAmb"] == kill
    assert caps["CapInh"] == kill
    assert caps["CapEff"] & kill


def test_unknown_capability_is_warned_and_skipped(runtime, bundles, tmp_path):
    spec = sh(bundles, "grep CapBnd /proc/self/status")
    spec["process"]["capabilities"] = {k: ["CAP_KILL", "CAP_FLY_TO_MOON"]
                                       for k in ("bounding", "effective", "permitted")}
    log = tmp_path / "log.json"
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id(), log=str(log),
                log_format="json")
    assert p.returncode == 0, p.stderr
    assert int(p.stdout.split()[1], 16) == 1 << 5
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(r["level"] == "warning" and "CAP_FLY_TO_MOON" in r["msg"] for r in records)


def _host_bounding() -> int:
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1], 16) for ln in f if ln.startswith("CapBnd"))


@pytest.mark.parametrize("userns", [False, True], ids=["host-userns", "own-userns"])
def test_capability_the_runtime_lacks_is_warned_and_skipped(runtime, bundles, tmp_path,
                                                             userns):
    """runtime-spec: a capability that cannot be granted is a warning, not a failure. This
    host's bounding set lacks some (CAP_SYS_RESOURCE on these VMs): ask for all of them."""
    from yacr.linux.capabilities import NAMES

    held = _host_bounding()
    lacking = [n for i, n in enumerate(NAMES) if not held & (1 << i)
               and os.path.exists("/proc/sys/kernel/cap_last_cap")
               and i <= int(open("/proc/sys/kernel/cap_last_cap").read())]
    if not lacking:
        pytest.skip("this host's bounding set holds every capability: none to lack")
    spec = sh(bundles, "grep CapEff /proc/self/status")
    spec["process"]["capabilities"] = {k: ["CAP_KILL", *lacking]
                                       for k in ("bounding", "effective", "permitted")}
    if userns:
        spec["linux"]["namespaces"].append({"type": "user"})
        spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    log = tmp_path / "log.json"
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id(), log=str(log),
                log_format="json")
    assert p.returncode == 0, p.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()]
    warned = any(r["level"] == "warning" and lacking[0] in r["msg"] and "cannot be granted"
                 in r["msg"] for r in records)
    eff = int(p.stdout.split()[1], 16)
    if userns:
        # inside its own user namespace init holds every capability (over what that
        # namespace owns), so they are all granted there
        want = (1 << 5) | sum(1 << NAMES.index(n) for n in lacking)
        assert eff == want and not warned, (hex(eff), records)
    else:
        assert eff == 1 << 5 and warned, (hex(eff), records)  # CAP_KILL only


def test_rlimits(runtime, bundles):
    spec = sh(bundles, "ulimit -n; ulimit -Hn; ulimit -c")
    spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654},
                                  {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
    assert run_in(runtime, bundles, spec).split() == ["321", "654", "0"]


def test_no_new_privileges_and_oom_score_adj(runtime, bundles):
    spec = sh(bundles, "grep NoNewPrivs /proc/self/status; cat /proc/self/oom_score_adj")
    spec["process"]["noNewPrivileges"] = True
    spec["process"]["oomScoreAdj"] = 500
    out = run_in(runtime, bundles, spec).split()
    assert out[1] == "1"
    assert out[2] == "500"
    spec["process"]["noNewPrivileges"] = False
    spec.pop("process")
    spec2 = sh(bundles, "grep NoNewPrivs /proc/self/status")
    spec2["process"]["noNewPrivileges"] = False
    assert run_in(runtime, bundles, spec2).split()[1] == "0"


def test_lsm_requested_but_absent(runtime, bundles):
    from yacr.linux.process import apparmor_enabled, selinux_enabled

    spec = bundles.spec(["true"])
    if not apparmor_enabled():
        spec["process"]["apparmorProfile"] = "yacr-test"
        p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
        assert p.returncode == 1 and "AppArmor" in p.stderr
    if not selinux_enabled():
        spec = bundles.spec(["true"])
        spec["process"]["selinuxLabel"] = "system_u:system_r:container_t:s0"
        p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
        assert p.returncode == 1 and "SELinux" in p.stderr
    if apparmor_enabled() and selinux_enabled():
        pytest.skip("both LSMs are enabled on this host")


def test_rootfs_propagation_and_no_pivot(runtime, bundles):
    spec = sh(bundles, "awk '$5 == \"/\" {print $0}' /proc/self/mountinfo")
    spec["linux"]["rootfsPropagation"] = "private"
    out = run_in(runtime, bundles, spec)
    assert "shared:" not in out and "master:" not in out
    spec = sh(bundles, "echo $$; ls /")
    p = runtime("run", "--no-pivot", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[0] == "1" and "bin" in p.stdout.split()


def test_cgroup_mount_is_readonly_and_container_scoped(runtime, bundles):
    spec = sh(bundles, "ls /sys/fs/cgroup; touch /sys/fs/cgroup/pids/x 2>/dev/null "
              "&& echo rw || echo ro; cat /sys/fs/cgroup/pids/cgroup.procs")
    out = run_in(runtime, bundles, spec).split()
    assert "pids" in out and "memory" in out
    assert "ro" in out
    assert out[-1] == "1" or out[-1].isdigit()


def test_no_runtime_fd_leaks_into_container(runtime, bundles):
    out = run_in(runtime, bundles, sh(bundles, "ls /proc/self/fd"))
    fds = sorted(int(x) for x in out.split())
    assert fds == [0, 1, 2, 3], fds  # 3 is ls's own directory


def test_dev_is_a_tmpfs_not_host_dev(runtime, bundles):
    out = run_in(runtime, bundles, sh(bundles, "ls /dev | wc -l; stat -f -c %T /dev"))
    n, fstype = out.split()
    assert int(n) < 30
    assert fstype == "tmpfs"
    assert stat.S_ISDIR(os.stat("/dev").st_mode)


def test_tmpcopyup_keeps_the_image_files(runtime, bundles):
    spec = sh(bundles, "ls /etc | grep -c -E '^(group|hostname|passwd)$'; stat -f -c %T /etc; "
              "touch /etc/new && echo w")
    spec["mounts"].append({"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
                           "options": ["tmpcopyup", "mode=755"]})
    out = run_in(runtime, bundles, spec).split()
    assert out == ["3", "tmpfs", "w"]


def test_join_pid_namespace_by_path(runtime, bundles):
    a = runtime.new_id("a")
    runtime("run", "-d", "--bundle", bundles.make(["sleep", "1000"]), a, check=True)
    pid = runtime.state(a)["pid"]
    spec = sh(bundles, "readlink /proc/self/ns/pid; ps -o pid,args | grep -c 'sleep 1000'")
    for n in spec["linux"]["namespaces"]:
        if n["type"] == "pid":
            n["path"] = f"/proc/{pid}/ns/pid"
    out = run_in(runtime, bundles, spec).split()
    assert out[0] == os.readlink(f"/proc/{pid}/ns/pid")
    assert int(out[1]) >= 1  # the other container's process is visible


def test_io_priority_and_scheduler(runtime, bundles):
    spec = sh(bundles, "grep -E '^(nice|policy)' /proc/self/sched 2>/dev/null | tr -s ' ';"
              "cut -d' ' -f19 /proc/self/stat")
    spec["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 0}
    spec["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 5}
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[-1] == "5"  # nice value in /proc/self/stat
    assert "policy : 3" in p.stdout or "policy" not in p.stdout


def test_walk_in_root_matches_openat2(tmp_path):
    """The fallback for kernels without openat2 resolves like RESOLVE_IN_ROOT."""
    from yacr.linux import sys as S
    from yacr.linux.rootfs import walk_in_root

    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc" / "f").write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), root / "abs")          # absolute: stays in the root
    os.symlink("../../..", root / "a" / "b" / "up")  # climbs: stops at the root
    os.symlink("b", root / "a" / "rel")
    os.symlink("/etc/f", root / "file")
    os.symlink("loop", root / "loop")
    rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        for path in ("a/b", "abs", "a/b/up/etc", "a/rel", "file", "a/rel/up/a/rel", "..",
                     "a/../../etc/f", "loop", "etc/f/x", "missing"):
            try:
                want = os.fstat(S.openat2(rootfd, path, os.O_PATH, S.RESOLVE_IN_ROOT))
                want_key = (want.st_dev, want.st_ino)
            except OSError as e:
                want_key = e.errno
            try:
                got = os.fstat(walk_in_root(rootfd, path, os.O_PATH))
                got_key = (got.st_dev, got.st_ino)
            except OSError as e:
                got_key = e.errno
            assert got_key == want_key, path
    finally:
        os.close(rootfd)


def test_join_mount_namespace_by_path(runtime, bundles):
    """The rootfs is built and pivoted into inside the joined mount namespace (as runc)."""
    import subprocess

    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep",
                               "100"])
    try:
        import time

        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{holder.pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        spec = sh(bundles, "readlink /proc/self/ns/mnt; ls /bin/busybox")
        for n in spec["linux"]["namespaces"]:
            if n["type"] == "mount":
                n["path"] = f"/proc/{holder.pid}/ns/mnt"
        out = run_in(runtime, bundles, spec).split()
        assert out == [os.readlink(f"/proc/{holder.pid}/ns/mnt"), "/bin/busybox"]
    finally:
        holder.kill()
        holder.wait()


def test_no_mount_namespace(runtime, bundles):
    """Without a mount namespace the container still gets its rootfs (chroot), and delete
    takes every mount it made on the host away again."""
    rootfs = bundles.private_rootfs()
    spec = sh(bundles, "readlink /proc/self/ns/mnt; ls /proc/self/fd >/dev/null && echo proc")
    spec["root"]["path"] = rootfs
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                   if n["type"] not in ("mount", "cgroup")]
    cid = runtime.new_id()
    p = runtime("run", "--bundle", bundles.write(spec), cid)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [os.readlink("/proc/self/ns/mnt"), "proc"]
    from conftest import mounts_mentioning

    assert mounts_mentioning(rootfs) == []
