"""A classic-BPF interpreter for seccomp filters, to measure what an installed filter allows.

A filter read back from the kernel (PTRACE_SECCOMP_GET_FILTER) is a cBPF program over
struct seccomp_data. Running it here for every syscall number gives the verdict the
kernel would give, whoever compiled the filter (libseccomp, runc's patched filters,
gVisor's, hand-written ones), which is the point: the count comes from what is
installed, not from reading a profile's JSON. Nothing in Python's ecosystem interprets
cBPF, and the seccomp subset is small (the kernel's seccomp_check_filter lists it):
LD/LDX W ABS, IMM, MEM and LEN; ST, STX; ALU with K or X; JA, JEQ, JGT, JGE, JSET;
RET K or A; TAX, TXA.

Each run also says which parts of seccomp_data the verdict read, so a caller can tell
a syscall that is allowed whatever its arguments from one allowed only for some.
"""

from __future__ import annotations

import _struct as struct

from yacr.errors import YacrError

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6];
DATA_SIZE = 64
OFF_NR, OFF_ARCH, OFF_IP, OFF_ARGS = 0, 4, 8, 16

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
X32_SYSCALL_BIT = 0x40000000

# return values (SECCOMP_RET_ACTION_FULL is the top 16 bits)
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000
ACTION_FULL = 0xFFFF0000
DATA_MASK = 0x0000FFFF
ACTION_NAMES = {RET_KILL_PROCESS: "kill_process", RET_KILL_THREAD: "kill_thread",
                RET_TRAP: "trap", RET_ERRNO: "errno", RET_USER_NOTIF: "user_notif",
                RET_TRACE: "trace", RET_LOG: "log", RET_ALLOW: "allow"}

# instruction classes and fields (linux/bpf_common.h)
LD, LDX, ST, STX, ALU, JMP, RET, MISC = range(8)
W, H, B = 0x00, 0x08, 0x10
IMM, ABS, IND, MEM, LEN, MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR = (0x00, 0x10, 0x20, 0x30, 0x40, 0x50,
                                                        0x60, 0x70, 0x80, 0x90, 0xA0)
JA, JEQ, JGT, JGE, JSET = 0x00, 0x10, 0x20, 0x30, 0x40
SRC_K, SRC_X = 0x00, 0x08
RVAL_K, RVAL_X, RVAL_A = 0x00, 0x08, 0x10
TAX, TXA = 0x00, 0x80
MEMWORDS = 16
U32 = 0xFFFFFFFF

Insn = tuple[int, int, int, int]  # code, jt, jf, k


class BPFError(YacrError):
    """The program is not a valid seccomp filter (the kernel would have refused it)."""


def decode(raw: bytes) -> list[Insn]:
    """struct sock_filter[] (native byte order) to (code, jt, jf, k) tuples."""
    if len(raw) % 8:
        raise BPFError(f"a cBPF program is a multiple of 8 bytes, not {len(raw)}")
    return [struct.unpack_from("=HBBI", raw, i) for i in range(0, len(raw), 8)]


def encode(prog: list[Insn]) -> bytes:
    return b"".join(struct.pack("=HBBI", *insn) for insn in prog)


def seccomp_data(nr: int, arch: int = AUDIT_ARCH_X86_64, ip: int = 0,
                 args: tuple[int, ...] = (0, 0, 0, 0, 0, 0)) -> bytes:
    """The struct the kernel hands a filter (little-endian, as on x86)."""
    a = tuple(args) + (0,) * (6 - len(args))
    return struct.pack("<iIQ6Q", nr, arch, ip, *a)


def run(prog: list[Insn], data: bytes) -> tuple[int, set[int]]:
    """Run a filter on one seccomp_data: (32-bit return value, offsets of the words read)."""
    a = x = 0
    mem = [0] * MEMWORDS
    read: set[int] = set()
    pc = 0
    n = len(prog)
    steps = 0
    while True:
        if pc >= n:
            raise BPFError(f"the program runs off its end at instruction {pc}")
        steps += 1
        if steps > 4 * n + 16:  # jumps only go forward; this cannot happen in a valid filter
            raise BPFError("the program does not terminate")
        code, jt, jf, k = prog[pc]
        pc += 1
        cls = code & 0x07
        if cls == RET:
            rv = code & 0x18
            return (a if rv == RVAL_A else x if rv == RVAL_X else k) & U32, read
        if cls in (LD, LDX):
            mode, size = code & 0xE0, code & 0x18
            if mode == ABS and size == W:
                if k % 4 or k + 4 > len(data):
                    raise BPFError(f"instruction {pc - 1}: load at offset {k} is out of "
                                   "seccomp_data or unaligned")
                val = struct.unpack_from("=I", data, k)[0]
                read.add(k)
            elif mode == IMM:
                val = k
            elif mode == MEM:
                if k >= MEMWORDS:
                    raise BPFError(f"instruction {pc - 1}: scratch word {k} does not exist")
                val = mem[k]
            elif mode == LEN:
                val = DATA_SIZE
            else:
                raise BPFError(f"instruction {pc - 1}: load {code:#06x} is not allowed in "
                               "seccomp filters")
            if cls == LD:
                a = val
            else:
                x = val
        elif cls in (ST, STX):
            if k >= MEMWORDS:
                raise BPFError(f"instruction {pc - 1}: scratch word {k} does not exist")
            mem[k] = a if cls == ST else x
        elif cls == ALU:
            op = code & 0xF0
            src = x if code & SRC_X else k
            if op == NEG:
                a = -a & U32
            elif op in (DIV, MOD) and src == 0:
                return 0, read  # the kernel's cBPF returns 0 (kill) on division by zero
            else:
                a = _alu(op, a, src, pc - 1)
        elif cls == JMP:
            op = code & 0xF0
            if op == JA:
                pc += k
            else:
                src = x if code & SRC_X else k
                if op == JEQ:
                    cond = a == src
                elif op == JGT:
                    cond = a > src
                elif op == JGE:
                    cond = a >= src
                elif op == JSET:
                    cond = bool(a & src)
                else:
                    raise BPFError(f"instruction {pc - 1}: jump {code:#06x} is unknown")
                pc += jt if cond else jf
        else:  # MISC
            if code & 0xF8 == TAX:
                x = a
            elif code & 0xF8 == TXA:
                a = x
            else:
                raise BPFError(f"instruction {pc - 1}: {code:#06x} is unknown")


def _alu(op: int, a: int, src: int, where: int) -> int:
    if op == ADD:
        return (a + src) & U32
    if op == SUB:
        return (a - src) & U32
    if op == MUL:
        return (a * src) & U32
    if op == DIV:
        return a // src
    if op == MOD:
        return a % src
    if op == OR:
        return a | src
    if op == AND:
        return a & src
    if op == XOR:
        return a ^ src
    if op == LSH:
        return (a << (src & 31)) & U32 if src < 32 else 0
    if op == RSH:
        return a >> src if src < 32 else 0
    raise BPFError(f"instruction {where}: ALU operation {op:#x} is unknown")


def action_only(ret: int) -> int:
    return ret & ACTION_FULL


def _precedence(ret: int) -> int:
    """The kernel compares actions as signed 32-bit numbers: lower wins (KILL_PROCESS
    is negative, ALLOW the highest)."""
    act = action_only(ret)
    return act - (1 << 32) if act & 0x80000000 else act


def run_all(filters: list[list[Insn]], data: bytes) -> tuple[int, set[int]]:
    """Every installed filter runs; the kernel keeps the most restrictive answer."""
    ret = RET_ALLOW
    read: set[int] = set()
    for prog in filters:
        r, rd = run(prog, data)
        read |= rd
        if _precedence(r) < _precedence(ret):
            ret = r
    return ret, read


def action_name(ret: int) -> str:
    return ACTION_NAMES.get(action_only(ret), f"unknown({action_only(ret):#x})")


def allows(ret: int) -> bool:
    """The syscall runs: ALLOW, or LOG (allowed and logged)."""
    return action_only(ret) in (RET_ALLOW, RET_LOG)


def reads_args(read: set[int]) -> bool:
    """The verdict looked at the arguments (or the instruction pointer)."""
    return any(off >= OFF_IP for off in read)
