"""yacr's default seccomp profile (`yacr spec --seccomp`): what it allows, how it denies,
and that the busybox containers of every other test run under it."""

from __future__ import annotations

import ctypes
import json

from yacr.linux import seccomp_default as d
from yacr.specgen import DEFAULT_CAPS, default_spec


def run(runtime, bundles, spec):
    return runtime("run", "--bundle", bundles.write(spec), runtime.new_id())


def test_spec_writes_the_default_profile(runtime, tmp_path):
    runtime("spec", "--seccomp", "--bundle", str(tmp_path), check=True)
    sc = json.loads((tmp_path / "config.json").read_text())["linux"]["seccomp"]
    assert sc["defaultAction"] == "SCMP_ACT_ERRNO" and sc["defaultErrnoRet"] == 38
    assert sc["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert sc == d.default_profile(DEFAULT_CAPS)
    assert default_spec(seccomp=True)["linux"]["seccomp"] == sc


def test_lists_name_every_known_syscall_once():
    """Every syscall the host's libseccomp knows, on each of the three ABIs, is either
    allowed or deliberately denied: none falls to the ENOSYS default by oversight, and
    no name is unknown (each would be a warning on every container start)."""
    from yacr.linux import surface

    lib = ctypes.CDLL("libseccomp.so.2")
    gated = {n for names in d.BY_CAPABILITY.values() for n in names}
    named = set(d.ALLOWED) | set(d.DENIED) | {"clone", "clone3", "socket", "personality"}
    assert not set(d.ALLOWED) & set(d.DENIED)
    assert len(d.DENIED) == len(set(d.DENIED)) and len(d.ALLOWED) == len(set(d.ALLOWED))
    assert gated <= set(d.DENIED), "a capability unlocks only what is otherwise denied"
    unknown = [n for n in named if lib.seccomp_syscall_resolve_name(n.encode()) == -1]
    assert not unknown
    for arch in (0xC000003E, 0x40000003, 0x4000003E):  # x86_64, x86, x32
        known = set(surface.syscall_table(arch).values()) - set(surface.NEWER_X86_64.values())
        assert known <= named, sorted(known - named)


def test_busybox_runs_without_warnings(runtime, bundles, tmp_path):
    log = tmp_path / "log.json"
    spec = bundles.spec(["sh", "-c", "echo a > /dev/shm/f; cat /dev/shm/f; ls / | wc -l; "
                         "sleep 0; id -u; grep Seccomp: /proc/self/status"])
    assert "seccomp" in spec["linux"]
    p = runtime("run", "--bundle", bundles.write(spec), runtime.new_id(), log=str(log),
                log_format="json")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[0] == "a" and p.stdout.split()[-1] == "2"
    assert not log.exists() or "warning" not in log.read_text()


def test_new_user_namespace_is_denied_with_eperm(runtime, bundles):
    # Without the profile, root in the container may make a user namespace (no capability
    # needed); the profile denies unshare and clone's namespace flags, with EPERM.
    spec = bundles.spec(["sh", "-c", "unshare -U true && echo made || echo refused"])
    p = run(runtime, bundles, spec)
    assert p.stdout.strip() == "refused" and "Operation not permitted" in p.stderr
    spec["linux"].pop("seccomp")
    p = run(runtime, bundles, spec)
    assert p.stdout.strip() == "made", p.stderr


def test_capabilities_unlock_their_syscalls(runtime, bundles):
    """mount with CAP_SYS_ADMIN: denied by a profile made for the default capabilities,
    allowed by the profile made for the container's own."""
    spec = bundles.spec(["sh", "-c", "mount -t tmpfs none /tmp && echo mounted || echo no"])
    caps = spec["process"]["capabilities"]
    for k in ("bounding", "effective", "permitted"):
        caps[k].append("CAP_SYS_ADMIN")
    p = run(runtime, bundles, spec)
    assert p.stdout.strip() == "no" and "permission denied" in p.stderr  # EPERM
    spec["linux"]["seccomp"] = d.default_profile(caps["bounding"])
    p = run(runtime, bundles, spec)
    assert p.stdout.strip() == "mounted", p.stderr


def test_personality_values(runtime, bundles):
    # PER_LINUX32 is one of the allowed values: linux32 works, uname says so
    p = run(runtime, bundles, bundles.spec(["linux32", "uname", "-m"]))
    assert p.returncode == 0 and p.stdout.strip() == "i686", p.stderr
