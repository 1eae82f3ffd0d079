"""Device access rules: linux.resources.devices as the kernel enforces them, on v1 and v2.

cgroup v1 has a devices controller that takes rules one line at a time
(devices.allow / devices.deny). cgroup v2 has none: access is decided by an eBPF
program of type BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup, which the
runtime must write itself. Both are driven from one model, `Rules`, which
replays the configured rules with v1's semantics (a rule of type "a" resets the
whole list; later rules add to or cut from the exceptions of the default), so a
container gets the same access on either version:

- v1 is given the final state, not the raw list: a reset to the default, then the
  exceptions in the order they were first configured (devices.list shows them in
  that order, and the runtime-spec asks for the listed order);
- v2 gets a program that checks the same exceptions and returns the default.

runc appends a fixed set of allowed devices after the configured rules (mknod of
anything, and null, zero, full, random, urandom, tty, console, ptmx, pts and
net/tun), so the usual `{"allow": false, "access": "rwm"}` still leaves a usable
/dev; yacr does the same, because images and tools expect it.
"""

from __future__ import annotations

import _struct as struct  # the C module: struct.py is one more import
import posix

from yacr.errors import ConfigError, YacrError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

WILDCARD = -1
_ACCESS_BITS = {"m": 1, "r": 2, "w": 4}  # the kernel's BPF_DEVCG_ACC_* values
_TYPE_BPF = {"b": 1, "c": 2}  # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR

# (path or "", type, major, minor, access): runc's AllowedDevices, in its order.
DEFAULT_ALLOWED: tuple[tuple[str, str, int, int, str], ...] = (
    ("", "c", WILDCARD, WILDCARD, "m"),
    ("", "b", WILDCARD, WILDCARD, "m"),
    ("/dev/null", "c", 1, 3, "rwm"),
    ("/dev/random", "c", 1, 8, "rwm"),
    ("/dev/full", "c", 1, 7, "rwm"),
    ("/dev/tty", "c", 5, 0, "rwm"),
    ("/dev/zero", "c", 1, 5, "rwm"),
    ("/dev/urandom", "c", 1, 9, "rwm"),
    ("/dev/console", "c", 5, 1, "rwm"),
    ("", "c", 136, WILDCARD, "rwm"),  # /dev/pts/*
    ("", "c", 5, 2, "rwm"),  # /dev/ptmx
    ("", "c", 10, 200, "rwm"),  # /dev/net/tun, kept by runc for compatibility
)


def access_bits(access: str) -> int:
    bits = 0
    for ch in access:
        bits |= _ACCESS_BITS[ch]
    return bits


def access_text(bits: int) -> str:
    return "".join(ch for ch in "rwm" if bits & _ACCESS_BITS[ch])


class Rule:
    """One configured rule: allow or deny `access` to type/major/minor (-1: any)."""

    __slots__ = ("allow", "type", "major", "minor", "access")

    def __init__(self, allow: bool, type: str, major: int, minor: int, access: int) -> None:
        self.allow = allow
        self.type = type
        self.major = major
        self.minor = minor
        self.access = access

    def __repr__(self) -> str:
        return (f"Rule({'allow' if self.allow else 'deny'} {self.type} "
                f"{_num(self.major)}:{_num(self.minor)} {access_text(self.access)})")


def _num(n: int) -> str:
    return "*" if n == WILDCARD else str(n)


def parse_rules(items: Any, path: str) -> list[Rule]:
    """linux.resources.devices as Rules; each error names the entry's JSON path."""
    from yacr.spec import boolean, integer, string

    if not isinstance(items, list):
        raise ConfigError(f"{path}: expected an array")
    out: list[Rule] = []
    for i, d in enumerate(items):
        p = f"{path}[{i}]"
        if not isinstance(d, dict):
            raise ConfigError(f"{p}: expected an object")
        allow = boolean(d.get("allow"), f"{p}.allow")
        t = d.get("type")
        t = "a" if t is None else string(t, f"{p}.type")
        if t not in ("a", "b", "c"):
            raise ConfigError(f"{p}.type: {t!r} is not a, b or c")
        nums = []
        for key in ("major", "minor"):
            v = d.get(key)
            nums.append(WILDCARD if v is None or v == -1
                        else integer(v, f"{p}.{key}", 0, (1 << 32) - 1))
        acc = d.get("access")
        acc = "rwm" if acc is None else string(acc, f"{p}.access")
        # "a" is accepted and grants nothing, as runc does on cgroup v1 ("rwa" is in its tests)
        if not acc or any(ch not in _ACCESS_BITS and ch != "a" for ch in acc):
            raise ConfigError(f"{p}.access: {acc!r} must be a combination of r, w and m")
        bits = access_bits(acc.replace("a", ""))
        if bits:  # "a" alone grants (or denies) nothing: no rule, not an empty one
            out.append(Rule(allow, t, nums[0], nums[1], bits))
    return out


class Rules:
    """The devices state a list of rules leaves, computed as the v1 kernel would.

    `default_allow` is what happens to a device no exception names; `exceptions` maps
    (type, major, minor) to access bits, in the order the exceptions first appeared.
    """

    __slots__ = ("default_allow", "exceptions")

    def __init__(self) -> None:
        # A runtime's container starts from "deny everything", as runc's does: rules add
        # access on top, and with no rules at all only the default devices are usable.
        self.default_allow = False
        self.exceptions: dict[tuple[str, int, int], int] = {}

    def apply(self, rule: Rule) -> None:
        if rule.type == "a":
            # What the v1 kernel does with any rule of type "a": reset to allow or deny all.
            self.default_allow = rule.allow
            self.exceptions = {}
            return
        key = (rule.type, rule.major, rule.minor)
        if rule.allow != self.default_allow:
            self.exceptions[key] = self.exceptions.get(key, 0) | rule.access
            return
        # A rule that agrees with the default removes access from an exception. v1
        # only removes exact matches: cutting a device out of a wildcard exception is
        # silently ignored there, which would leave access the user meant to remove.
        for wild in ((rule.type, WILDCARD, rule.minor), (rule.type, rule.major, WILDCARD),
                     (rule.type, WILDCARD, WILDCARD)):
            if wild != key and self.exceptions.get(wild, 0) & rule.access:
                raise YacrError(
                    f"linux.resources.devices: {rule!r} would cut a hole in the wildcard "
                    f"exception {wild[0]} {_num(wild[1])}:{_num(wild[2])}, which the "
                    "kernel's device rules cannot express")
        left = self.exceptions.get(key, 0) & ~rule.access
        if left:
            self.exceptions[key] = left
        else:
            self.exceptions.pop(key, None)

    def allows(self, type: str, major: int, minor: int, access: int) -> bool:
        """What the kernel will answer; used by tests and by the BPF program's generator."""
        if self.default_allow:
            for (t, ma, mi), acc in self.exceptions.items():
                if _match(t, ma, mi, type, major, minor) and acc & access:
                    return False
            return True
        for (t, ma, mi), acc in self.exceptions.items():
            if _match(t, ma, mi, type, major, minor) and access & ~acc == 0:
                return True
        return False

    def v1_lines(self) -> list[tuple[str, str]]:
        """(file, line) writes that put a fresh v1 devices cgroup in this state."""
        out = [("devices.allow" if self.default_allow else "devices.deny", "a *:* rwm")]
        target = "devices.deny" if self.default_allow else "devices.allow"
        for (t, ma, mi), acc in self.exceptions.items():
            out.append((target, f"{t} {_num(ma)}:{_num(mi)} {access_text(acc)}"))
        return out


def _match(t: str, ma: int, mi: int, type: str, major: int, minor: int) -> bool:
    return t == type and ma in (WILDCARD, major) and mi in (WILDCARD, minor)


def build(configured: list[Rule], spec_device_paths: set[str]) -> Rules:
    """The configured rules followed by runc's default allowed devices.

    A default whose path the config's linux.devices redefines is left out, as runc
    does: that device may be a different node now.
    """
    rules = Rules()
    for r in configured:
        rules.apply(r)
    for path, t, ma, mi, acc in DEFAULT_ALLOWED:
        if path and path in spec_device_paths:
            continue
        rules.apply(Rule(True, t, ma, mi, access_bits(acc)))
    return rules


# --- cgroup v1 -------------------------------------------------------------------------------

def apply_v1(rules: Rules, cgroup: str) -> None:
    """Write the rules into a v1 devices cgroup, one rule per write(2) as the kernel wants."""
    fds: dict[str, int] = {}
    try:
        for name, line in rules.v1_lines():
            fd = fds.get(name)
            if fd is None:
                fd = fds[name] = posix.open(cgroup + "/" + name, posix.O_WRONLY | posix.O_CLOEXEC)
            try:
                posix.write(fd, line.encode())
            except OSError as e:
                raise YacrError(f"linux.resources.devices: the kernel rejected {line!r} "
                                f"({name}: {e.strerror})") from None
    except OSError as e:
        raise YacrError(f"linux.resources.devices: cannot open {e.filename}: "
                        f"{e.strerror}") from None
    finally:
        for fd in fds.values():
            posix.close(fd)


# --- cgroup v2: the eBPF program ---------------------------------------------------------------
#
# The program gets a struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
# in r1, where access_type is (access << 16) | type, and returns 1 to allow, 0 to deny.
# Registers: r2 = type, r3 = access, r4 = major, r5 = minor, r1 scratch.

def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | (src << 4), off, imm)


_LDX_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W
_MOV32_X = 0xBC  # BPF_ALU | BPF_MOV | BPF_X
_AND32_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
_RSH32_K = 0x74  # BPF_ALU | BPF_RSH | BPF_K
_MOV64_K = 0xB7  # BPF_ALU64 | BPF_MOV | BPF_K
# 32-bit compares (BPF_JMP32): every value is a u32, so an immediate of 2**31 or more
# still compares right, where a 64-bit compare would sign-extend it.
_JNE_K = 0x56  # BPF_JMP32 | BPF_JNE | BPF_K
_JNE_X = 0x5E  # BPF_JMP32 | BPF_JNE | BPF_X
_JEQ_K = 0x16  # BPF_JMP32 | BPF_JEQ | BPF_K
_EXIT = 0x95  # BPF_JMP | BPF_EXIT


def bpf_program(rules: Rules) -> bytes | None:
    """The BPF_PROG_TYPE_CGROUP_DEVICE program for rules; None when everything is allowed.

    Each exception becomes one block that jumps to the next block as soon as a field
    does not match, and otherwise returns its verdict. An allow exception must cover
    every requested access bit (v1's whitelist semantics); a deny exception matches
    when it shares any bit with the request (v1's blacklist semantics).
    """
    if rules.default_allow and not rules.exceptions:
        return None
    prog = [
        _insn(_LDX_W, 2, 1, 0),  # r2 = ctx->access_type
        _insn(_MOV32_X, 3, 2),  # r3 = r2
        _insn(_AND32_K, 2, imm=0xFFFF),  # r2 = type
        _insn(_RSH32_K, 3, imm=16),  # r3 = access
        _insn(_LDX_W, 4, 1, 4),  # r4 = ctx->major
        _insn(_LDX_W, 5, 1, 8),  # r5 = ctx->minor
    ]
    verdict = 0 if rules.default_allow else 1
    for (t, ma, mi), acc in rules.exceptions.items():
        block: list[tuple[int, int, int, int]] = [(_JNE_K, 2, 0, _TYPE_BPF[t])]
        if verdict:  # allow: the request must be a subset of acc
            block += [(_MOV32_X, 1, 3, 0), (_AND32_K, 1, 0, acc), (_JNE_X, 1, 3, 0)]
        else:  # deny: any shared bit
            block += [(_MOV32_X, 1, 3, 0), (_AND32_K, 1, 0, acc), (_JEQ_K, 1, 0, 0)]
        if ma != WILDCARD:
            block.append((_JNE_K, 4, 0, ma))
        if mi != WILDCARD:
            block.append((_JNE_K, 5, 0, mi))
        n = len(block) + 2  # the block, then r0 = verdict; exit
        for i, (code, dst, src, imm) in enumerate(block):
            jump = code in (_JNE_K, _JNE_X, _JEQ_K)
            prog.append(_insn(code, dst, src, n - i - 1 if jump else 0,
                              imm if imm < (1 << 31) else imm - (1 << 32)))
        prog += [_insn(_MOV64_K, 0, imm=verdict), _insn(_EXIT)]
    prog += [_insn(_MOV64_K, 0, imm=0 if verdict else 1), _insn(_EXIT)]
    return b"".join(prog)


def apply_v2(rules: Rules, cgroup: str) -> None:
    """Load the program and attach it to the cgroup (BPF_F_ALLOW_MULTI, as runc does, so
    programs a parent cgroup has keep running too). The attachment keeps the program
    alive after our fd is closed, until the cgroup is removed."""
    from yacr.linux import sys as S

    prog = bpf_program(rules)
    if prog is None:
        return
    try:
        pfd = S.bpf_prog_load(S.BPF_PROG_TYPE_CGROUP_DEVICE, prog, name=b"yacr_devices")
    except OSError as e:
        raise YacrError(f"linux.resources.devices: the kernel refused the device program: "
                        f"{e.strerror}") from None
    try:
        cfd = posix.open(cgroup, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
        try:
            S.bpf_prog_attach(cfd, pfd, S.BPF_CGROUP_DEVICE, S.BPF_F_ALLOW_MULTI)
        finally:
            posix.close(cfd)
    except OSError as e:
        raise YacrError(f"linux.resources.devices: cannot attach the device program to "
                        f"{cgroup}: {e.strerror}") from None
    finally:
        posix.close(pfd)
