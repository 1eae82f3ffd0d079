"""cgroups logic without containers: device rule semantics, the generated eBPF program
(checked by the kernel's verifier and by running it), v1 -> v2 conversions, parsing."""

from __future__ import annotations

import os

import pytest

from yacr.cgroups import devices, v2
from yacr.cgroups.devices import WILDCARD, Rule, Rules, access_bits, build, parse_rules
from yacr.cgroups.resources import Resources, from_update_flags, ram_in_bytes
from yacr.errors import ConfigError, UsageError, YacrError


def rule(allow: bool, t: str = "a", major: int = WILDCARD, minor: int = WILDCARD,
         access: str = "rwm") -> Rule:
    return Rule(allow, t, major, minor, access_bits(access))


def test_deny_all_then_defaults_leave_the_usual_devices():
    r = build([rule(False)], set())
    assert not r.default_allow
    for major, minor in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2),
                         (136, 4), (10, 200)):
        assert r.allows("c", major, minor, access_bits("rw")), (major, minor)
    assert not r.allows("c", 1, 11, access_bits("r"))  # /dev/kmsg
    assert not r.allows("b", 8, 0, access_bits("r"))
    assert r.allows("b", 8, 0, access_bits("m"))  # runc's "b *:* m"
    # devices.list order: the configured exceptions first, then runc's defaults
    assert r.v1_lines()[0] == ("devices.deny", "a *:* rwm")
    assert r.v1_lines()[1] == ("devices.allow", "c *:* m")


def test_rules_keep_the_configured_order_and_access():
    configured = parse_rules([{"allow": False, "access": "rwm"},
                              {"allow": True, "type": "c", "major": 10, "minor": 229,
                               "access": "rwm"},
                              {"allow": True, "type": "b", "major": 8, "minor": 20,
                               "access": "rw"}], "linux.resources.devices")
    r = build(configured, set())
    lines = [line for _f, line in r.v1_lines()[1:]]
    assert lines[:2] == ["c 10:229 rwm", "b 8:20 rw"]
    assert r.allows("b", 8, 20, access_bits("r"))
    # v1 wants one exception to cover every requested bit: rw here, m from "b *:* m"
    assert not r.allows("b", 8, 20, access_bits("rwm"))


def test_type_a_resets_and_deny_cuts_access():
    r = Rules()
    r.apply(rule(True))
    assert r.default_allow and not r.exceptions
    r.apply(rule(False, "c", 1, 11, "w"))
    assert r.allows("c", 1, 11, access_bits("r"))
    assert not r.allows("c", 1, 11, access_bits("rw"))  # a shared bit denies (v1 semantics)
    r.apply(rule(True, "c", 1, 11, "w"))
    assert r.allows("c", 1, 11, access_bits("rw"))
    r.apply(rule(False))
    assert not r.default_allow and not r.exceptions


def test_cutting_a_hole_in_a_wildcard_is_refused():
    r = Rules()
    r.apply(rule(True, "c", 136, WILDCARD, "rwm"))
    with pytest.raises(YacrError, match="wildcard"):
        r.apply(rule(False, "c", 136, 3, "r"))


def test_spec_devices_replace_a_default_of_the_same_path():
    r = build([rule(False)], {"/dev/null"})
    assert not r.allows("c", 1, 3, access_bits("r"))
    assert r.allows("c", 1, 5, access_bits("r"))


@pytest.mark.parametrize("bad,msg", [
    ([{"access": "rwm"}], r"devices\[0\]\.allow: expected a boolean"),
    ([{"allow": True, "type": "x"}], r"devices\[0\]\.type"),
    ([{"allow": True, "access": "rwx"}], r"devices\[0\]\.access"),
    ([{"allow": True, "major": "1"}], r"devices\[0\]\.major"),
])
def test_bad_device_rules_name_the_field(bad, msg):
    with pytest.raises(ConfigError, match=msg):
        parse_rules(bad, "linux.resources.devices")


RULESETS = {
    "deny-all+defaults": build([rule(False)], set()),
    "allow-all-but-kmsg-write": build([rule(True), rule(False, "c", 1, 11, "w")], set()),
    "big-numbers": build([rule(False), rule(True, "b", 4095, (1 << 20) - 1, "r")], set()),
}


@pytest.mark.parametrize("name", sorted(RULESETS))
def test_the_kernel_verifier_accepts_the_device_program(name):
    """BPF_PROG_LOAD runs the verifier: an invalid program fails here, not in a container."""
    from yacr.linux import sys as S

    prog = devices.bpf_program(RULESETS[name])
    assert prog is not None and len(prog) % 8 == 0
    fd = S.bpf_prog_load(S.BPF_PROG_TYPE_CGROUP_DEVICE, prog, name=b"yacr_test")
    os.close(fd)


def test_allow_all_needs_no_program():
    assert devices.bpf_program(build([rule(True)], set())) is None


def test_cpu_shares_to_weight_is_runcs():
    assert v2.cpu_weight(2) == 1
    assert v2.cpu_weight(1024) == 100
    assert v2.cpu_weight(262144) == 10000
    assert v2.cpu_weight(512) < 100 < v2.cpu_weight(2048)


def test_blkio_weight_to_io_weight_is_runcs():
    assert v2.io_weight(10) == 1
    assert v2.io_weight(1000) == 10000
    assert v2.io_weight(500) == 1 + 490 * 9999 // 990


@pytest.mark.parametrize("swap,limit,want", [
    (0, -1, -1), (-1, 64, -1), (0, 64, None), (128, 64, 64), (64, 64, 0), (100, -1, 100)])
def test_swap_is_memory_plus_swap_in_the_spec(swap, limit, want):
    assert v2.swap_max(swap, limit, "f") == want


def test_swap_below_memory_is_an_error():
    with pytest.raises(YacrError, match=r"memory\.swap: 32 is below the memory limit 64"):
        v2.swap_max(32, 64, "linux.resources.memory.swap")
    with pytest.raises(YacrError, match="needs a memory limit"):
        v2.swap_max(32, 0, "linux.resources.memory.swap")


def test_resources_parse_and_name_bad_fields():
    r = Resources({"memory": {"limit": 0, "swap": 10}, "cpu": {"shares": 0, "cpus": ""},
                   "pids": {"limit": -1}, "unified": {"memory.high": "5"}})
    assert r.memory is not None and r.memory.limit is None and r.memory.swap == 10
    assert r.cpu is not None and r.cpu.shares is None and r.cpu.cpus is None
    assert r.pids == -1 and r.unified == {"memory.high": "5"}
    for raw, msg in (({"memory": {"limit": "1g"}}, r"linux\.resources\.memory\.limit"),
                     ({"cpu": {"quota": 1.5}}, r"linux\.resources\.cpu\.quota"),
                     ({"blockIO": {"weightDevice": [{"major": 8}]}},
                      r"blockIO\.weightDevice\[0\]\.minor"),
                     ({"hugepageLimits": [{"limit": 1}]}, r"hugepageLimits\[0\]\.pageSize"),
                     ({"unified": {"../x": "1"}}, r"unified"),
                     ({"memory": {"swap": -2}}, r"memory\.swap")):
        with pytest.raises(ConfigError, match=msg):
            Resources(raw)


def test_update_flags_become_resources():
    o = {"memory": "64m", "memory-swap": "-1", "cpu-quota": "-1", "cpu-period": "100000",
         "cpuset-cpus": "0", "pids-limit": 20, "blkio-weight": 0, "cpu-shares": "512"}
    assert from_update_flags(o) == {
        "memory": {"limit": 64 << 20, "swap": -1},
        "cpu": {"shares": 512, "quota": -1, "period": 100000, "cpus": "0"},
        "pids": {"limit": 20}}
    assert ram_in_bytes("1.5g", "memory") == 3 << 29
    assert ram_in_bytes("512KiB", "memory") == 512 << 10
    assert ram_in_bytes("100", "memory") == 100
    with pytest.raises(UsageError, match="--memory"):
        ram_in_bytes("lots", "memory")
