"""User namespaces: id maps written by the runtime, root in the container is not root on
the host, devices bound where mknod is refused, exec joins the user namespace."""

from __future__ import annotations

import os

MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def userns_spec(bundles, script: str) -> dict:
    spec = bundles.spec(["sh", "-c", script])
    spec["linux"]["namespaces"].append({"type": "user"})
    spec["linux"]["uidMappings"] = MAP
    spec["linux"]["gidMappings"] = MAP
    return spec


def test_maps_and_root_inside(runtime, bundles):
    spec = userns_spec(bundles, "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; "
                       "readlink /proc/self/ns/user")
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 0, p.stderr
    out = p.stdout.split("\n")
    assert out[0] == "0" and out[1] == "0"
    assert out[2].split() == ["0", "100000", "65536"]
    assert out[3].split() == ["0", "100000", "65536"]
    assert out[4] != os.readlink("/proc/self/ns/user")


def test_container_root_is_unprivileged_on_the_host(runtime, bundles):
    spec = userns_spec(bundles, "sleep 1000")
    spec["process"]["args"] = ["sleep", "1000"]
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", bundles.write(spec), cid, check=True)
    pid = runtime.state(cid)["pid"]
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    assert fields["Uid"].split() == ["100000"] * 4
    assert fields["Gid"].split() == ["100000"] * 4
    # exec joins the same user namespace, as root of it
    p = runtime("exec", cid, "sh", "-c", "id -u; readlink /proc/self/ns/user")
    assert p.returncode == 0, p.stderr
    uid, ns = p.stdout.split()
    assert uid == "0" and ns == os.readlink(f"/proc/{pid}/ns/user")


def test_devices_are_bound_where_mknod_is_refused(runtime, bundles):
    spec = userns_spec(bundles, "echo x > /dev/null && head -c 4 /dev/zero | wc -c; "
                       "grep ' /dev/null ' /proc/self/mountinfo | wc -l")
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["4", "1"]  # usable, and a bind mount of the host's node


def reachable(tmp_path) -> None:
    """Let the container's root (host uid 100000) walk down to the test's own rootfs copy,
    which must be reachable by path for pivot_root (as under runc)."""
    for d in [tmp_path, *tmp_path.parents][:3]:
        d.chmod(d.stat().st_mode | 0o711)


def test_host_files_stay_out_of_reach(runtime, bundles, tmp_path):
    """A host-root file bound into the container is not writable by the container's root."""
    reachable(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    victim.chmod(0o644)
    spec = userns_spec(bundles, "echo owned > /victim 2>/dev/null && echo wrote || echo refused")
    spec["mounts"].append({"destination": "/victim", "type": "bind", "source": str(victim),
                           "options": ["bind"]})
    rootfs = bundles.private_rootfs()
    open(os.path.join(rootfs, "victim"), "w").close()  # the container's root cannot create it
    spec["root"]["path"] = rootfs
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.stdout.strip() == "refused", p.stderr
    assert victim.read_text() == "untouched\n"


def test_join_user_namespace_by_path(runtime, bundles):
    a = runtime.new_id("a")
    spec = userns_spec(bundles, "sleep 1000")
    spec["process"]["args"] = ["sleep", "1000"]
    runtime("run", "-d", "--bundle", bundles.write(spec), a, check=True)
    pid = runtime.state(a)["pid"]
    spec2 = bundles.spec(["sh", "-c", "readlink /proc/self/ns/user; id -u"])
    spec2["linux"]["namespaces"].append({"type": "user", "path": f"/proc/{pid}/ns/user"})
    p = runtime("run", "--bundle", bundles.write(spec2), runtime.new_id())
    assert p.returncode == 0, p.stderr
    ns, uid = p.stdout.split()
    assert ns == os.readlink(f"/proc/{pid}/ns/user") and uid == "0"


def test_mapping_errors(runtime, bundles):
    spec = bundles.spec(["true"])
    spec["linux"]["uidMappings"] = MAP
    spec["linux"]["gidMappings"] = MAP
    p = runtime("create", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 1 and "linux.uidMappings" in p.stderr and "user namespace" in p.stderr
    spec = bundles.spec(["true"])
    spec["linux"]["namespaces"].append({"type": "user"})
    p = runtime("create", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 1 and "linux.uidMappings" in p.stderr
    spec = userns_spec(bundles, "true")
    spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 10},
                                    {"containerID": 5, "hostID": 200000, "size": 10}]
    p = runtime("create", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 1 and "linux.uidMappings[1]" in p.stderr and "overlaps" in p.stderr
    spec = userns_spec(bundles, "true")
    spec["linux"]["uidMappings"] = [{"containerID": 1, "hostID": 100000, "size": 10}]
    p = runtime("create", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 1 and "root" in p.stderr
    assert "Traceback" not in p.stderr


def test_idmapped_bind_mount(runtime, bundles, tmp_path):
    """Files owned by host uid 1000 show up as root through the idmapped mount, and what
    root writes there lands as 1000 on the disk."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("x\n")
    os.chown(data / "f", 1000, 1000)
    os.chown(data, 1000, 1000)
    spec = bundles.spec(["sh", "-c", "stat -c '%u %g' /data/f; touch /data/new"])
    spec["root"]["path"] = bundles.private_rootfs()
    # as in a uid_map: ids on the filesystem (containerID side) show as hostID ids
    one = [{"containerID": 1000, "hostID": 0, "size": 1}]
    spec["mounts"].append({"destination": "/data", "type": "bind", "source": str(data),
                           "options": ["bind", "idmap"], "uidMappings": one,
                           "gidMappings": one})
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0", "0"]
    st = (data / "new").stat()
    assert (st.st_uid, st.st_gid) == (1000, 1000)


def test_idmapped_mount_errors(runtime, bundles):
    spec = bundles.spec(["true"])
    one = [{"containerID": 0, "hostID": 1000, "size": 1}]
    spec["mounts"].append({"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                           "uidMappings": one, "gidMappings": one})
    p = runtime("create", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 1 and "need a bind mount" in p.stderr


def test_bind_sources_the_mapped_root_cannot_reach(runtime, bundles, tmp_path):
    """Sources under directories only the host's root may traverse (pytest's tmp dirs are
    0700): the runtime opens them on the host before the user namespace exists and init
    binds them from those fds, as runc does. Two of them (runc once broke on the second),
    and an exec afterwards."""
    for n in (1, 2):
        d = tmp_path / f"inaccessible-{n}" / "dir"
        d.mkdir(parents=True)
        (d / "foo.txt").write_text(f"{n}\n")
        (tmp_path / f"inaccessible-{n}").chmod(0o700)
    reachable(tmp_path)
    spec = userns_spec(bundles, "cat /tmp/mount-1/foo.txt /tmp/mount-2/foo.txt; sleep 100")
    spec["mounts"] += [{"destination": f"/tmp/mount-{n}", "type": "bind", "options": ["bind"],
                        "source": str(tmp_path / f"inaccessible-{n}" / "dir")} for n in (1, 2)]
    spec["root"]["path"] = bundles.private_rootfs()
    cid = runtime.new_id()
    p = runtime("run", "-d", "--bundle", bundles.write(spec), cid)
    assert p.returncode == 0, p.stderr
    p = runtime("exec", cid, "cat", "/tmp/mount-1/foo.txt", "/tmp/mount-2/foo.txt")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["1", "2"]


def test_a_missing_bind_source_in_a_user_namespace_is_a_clear_error(runtime, bundles, tmp_path):
    spec = userns_spec(bundles, "true")
    spec["mounts"].append({"destination": "/x", "type": "bind", "options": ["bind"],
                           "source": str(tmp_path / "missing")})
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and f"{tmp_path}/missing" in p.stderr, p.stderr
    assert runtime.containers_left() == []


def test_idmapped_source_through_a_symlink_in_a_user_namespace(runtime, bundles, tmp_path):
    """crun's case: an idmapped bind whose source path is a symlink to the directory, out of
    the mapped root's reach: the runtime resolves and opens it on the host, init learns
    from the detached mount itself that it is a directory."""
    real = tmp_path / "real"
    real.mkdir()
    (real / "f").write_text("x\n")
    os.chown(real / "f", 1000, 1000)
    (tmp_path / "link").symlink_to(real)
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    (hidden / "link").symlink_to(real)
    reachable(tmp_path)
    os.chown(real, 1000, 1000)
    real.chmod(0o700)
    spec = userns_spec(bundles, "stat -c '%u %g' /data/f")
    spec["root"]["path"] = bundles.private_rootfs()
    # on the disk 1000; through the mount host 100000, which is the container's root
    idmap = [{"containerID": 1000, "hostID": 100000, "size": 1}]
    spec["mounts"].append({"destination": "/data", "type": "bind", "options": ["bind", "idmap"],
                           "source": str(hidden / "link"), "uidMappings": idmap,
                           "gidMappings": idmap})
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id())
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0", "0"]
