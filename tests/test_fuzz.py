"""Property-based fuzzing of config.json, exec process files and the command line.

hypothesis mutates a valid config (wrong types, huge and negative numbers, NUL bytes and
lone surrogates in strings, deep nesting, files over the 8 MiB limit, bad uid/gid maps,
duplicate rlimits, namespace paths of the wrong type...) and drives the real CLI, which
must, for every input:

* succeed, or fail with exactly one line on stderr and a non-zero exit status, never a
  traceback nor an "internal error";
* leave nothing behind: no state directory, cgroup, mount or process once the container
  (if one was created) is deleted.

Invalid configs fail in `create` before anything is forked, so most examples cost one
interpreter start (~30 ms). `make test` runs a short deterministic pass; `make fuzz` runs
for FUZZ_SECONDS (YACR_FUZZ_SECONDS) with fresh random inputs and prints how many it tried.

The host is protected from the inputs themselves: values that would name host objects
(hook programs, the rootfs path, namespace files, cgroup paths) are drawn from safe sets,
since config.json is trusted by design and a fuzzer must not join the host's namespaces.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from conftest import BUILD, CGROUP, Runtime, cgroup_dirs, mounts_mentioning
from yacr.bundle import busybox_spec

SECONDS = float(os.environ.get("YACR_FUZZ_SECONDS", "0"))  # 0: the short run of make test
SHORT = {"config": 150, "process": 40, "cli": 100}
SHARE = {"config": 0.6, "process": 0.15, "cli": 0.25}  # of SECONDS, in a long run
REPORT = BUILD / "fuzz-report.json"
FAILED = BUILD / "fuzz-failures"
MAX = 8 * 1024 * 1024


PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> None:
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl")


# --- the environment: one private rootfs, root, namespace holder, per module ---------------

class Env:
    def __init__(self, base: Path, rootfs: str) -> None:
        self.base = base
        self.rootfs = str(base / "rootfs")
        subprocess.run(["cp", "-a", rootfs, self.rootfs], check=True)
        self.rt = Runtime(base / "root")
        self.env = dict(os.environ)
        self.bundle = base / "bundle"
        self.bundle.mkdir()
        self.volume = base / "volume"
        self.volume.mkdir()
        # namespaces of a process of our own, never the host's: joining the host's mount or
        # uts namespace with a fuzzed config could rename or remount the host
        self.holder = subprocess.Popen(["unshare", "--mount", "--uts", "--ipc", "--net",
                                        "--propagation", "private", "sleep", "100000"])
        me = os.readlink("/proc/self/ns/mnt")
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{self.holder.pid}/ns/mnt") == me:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        self.counts: dict[str, int] = {}
        # orphans of yacr (a leaked init, hook...) become our children: cheap to census
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        self.before: set[int] = set()  # children of other tests (a containerd, ...)
        self.before = set(_leftover_children(self, set()))

    def close(self) -> None:
        _prctl(PR_SET_CHILD_SUBREAPER, 0)
        self.holder.kill()
        self.holder.wait()


@pytest.fixture(scope="module")
def env(rootfs, tmp_path_factory):
    e = Env(tmp_path_factory.mktemp("fuzz"), rootfs)
    started = time.monotonic()
    yield e
    e.close()
    problems = e.rt.cleanup()
    assert not problems, problems
    if SECONDS:
        total = sum(e.counts.values())
        text = ", ".join(f"{k} {v}" for k, v in e.counts.items())
        took = time.monotonic() - started
        print(f"\nfuzz: {total} inputs tried ({text}) in {took:.0f} s, no failure")
        REPORT.parent.mkdir(exist_ok=True)
        REPORT.write_text(json.dumps({"seconds": round(took), "inputs": e.counts,
                                      "total": total}) + "\n")


def fuzz(env: Env, name: str, strategy, body) -> None:
    """Run body over the strategy: SHORT[name] derandomized examples, or new random ones
    until this target's share of SECONDS is spent."""
    count = [0]
    db = None if not SECONDS else DirectoryBasedExampleDatabase(str(BUILD / "hypothesis"))

    @settings(max_examples=SHORT[name] if not SECONDS else 30, deadline=None,
              derandomize=not SECONDS, database=db, print_blob=True,
              suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
    @given(strategy)
    def prop(x) -> None:
        count[0] += 1
        body(x)

    if not SECONDS:
        prop()
    else:
        end = time.monotonic() + SECONDS * SHARE[name]
        while time.monotonic() < end:
            prop()
    env.counts[name] = count[0]


# --- invariants ---------------------------------------------------------------------------

def yacr(env: Env, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        r = subprocess.run(env.rt.cmd(*args), stdout=out, stderr=err, timeout=timeout,
                           env=env.env, cwd=env.base, stdin=subprocess.DEVNULL)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(r.args, r.returncode,
                                           out.read().decode(errors="replace"),
                                           err.read().decode(errors="replace"))


# A warning record on stderr (there is no --log to take it), or with --debug a debug one:
# one line of its own, msg JSON-quoted; runc prints its records the same way. The error is
# the one other line.
WARNING = re.compile(r'time="[^"]*" level=(warning|debug|info) msg=".*"')


def check_outcome(p: subprocess.CompletedProcess) -> None:
    blob = p.stdout + p.stderr
    assert "Traceback" not in blob, blob
    assert "internal error" not in p.stderr, p.stderr
    if p.returncode != 0:
        lines = [ln for ln in p.stderr.splitlines()
                 if ln.strip() and not WARNING.fullmatch(ln)]
        assert len(lines) == 1, p.stderr
        assert lines[0].startswith("yacr: "), p.stderr


def _leftover_children(env: Env, keep: set[int]) -> list[int]:
    """Our children, other than the namespace holder and `keep`: with this process a child
    subreaper, whatever yacr leaves running (orphaned init, hooks, their children) lands
    here. Zombies are reaped first (only ever ones of processes yacr started)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
    out = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            continue
    return [p for p in out if p != env.holder.pid and p not in keep and p not in env.before]


def _describe(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")[:100]
            with open(f"/proc/{pid}/status") as f:
                ppid = next(ln for ln in f if ln.startswith("PPid:")).split()[1]
            out.append(f"{pid} ppid={ppid} {cmd!r}")
        except (OSError, StopIteration):
            out.append(f"{pid} (gone)")
    return out


def check_no_leak(env: Env, ids: list[str], keep: set[int] = frozenset(),
                  keep_ids: set[str] = frozenset()) -> None:
    root = env.rt.root
    if root.exists():
        for name in os.listdir(root):
            if name in keep_ids or name == ".seccomp":  # the compiled-profile cache
                continue
            # what a successful command created: delete it, which must work
            d = yacr(env, "delete", "--force", name)
            assert d.returncode == 0, d.stderr
        left = [n for n in os.listdir(root) if n not in keep_ids and n != ".seccomp"]
        assert left == [], f"state left: {left}"
    for cid in ids:
        assert cgroup_dirs(cid) == [], f"cgroup left for {cid}"
    fuzz_cg = [p for p in CGROUP.glob("*/yacr-fuzz/*")] if CGROUP.is_dir() else []
    assert fuzz_cg == [], f"cgroups left: {fuzz_cg}"
    deadline = time.monotonic() + 3
    while _leftover_children(env, keep) and time.monotonic() < deadline:
        time.sleep(0.02)
    left = _leftover_children(env, keep)
    assert left == [], f"processes left: {_describe(left)}"
    assert mounts_mentioning(env.rootfs) == [], "mounts left"


# --- config.json ----------------------------------------------------------------------------

def _text(max_size: int = 12):
    # any code point, lone surrogates and NUL included
    return st.text(st.characters(blacklist_categories=()), max_size=max_size)


SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(2 ** 70), 2 ** 70),
    st.sampled_from([0, -1, 1, 2 ** 31, 2 ** 32, 2 ** 32 - 1, 2 ** 63, 2 ** 64, -(2 ** 63) - 1,
                     10 ** 30, 65534, 4294967295]),
    st.floats(), st.sampled_from([0.5, 1e308, -0.0, 3.0]),
    _text(), st.sampled_from(["", "\0", "a\0b", "x" * 5000, "/", "..", "../../..", "\ud800",
                              "CAP_SYS_ADMIN", "RLIMIT_NOFILE", "pid", "bind", "tmpfs"]),
)
VALUES = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=4)
                      | st.dictionaries(_text(8), kids, max_size=4), max_leaves=12)

# Where to put a value: the fields of the spec, existing or optional.
FIELDS = """ociVersion root root.path root.readonly process process.terminal
process.consoleSize process.consoleSize.height process.user process.user.uid process.user.gid
process.user.umask process.user.additionalGids process.args process.args[0] process.env
process.env[0] process.cwd process.capabilities process.capabilities.bounding
process.capabilities.effective process.capabilities.ambient process.rlimits process.rlimits[0]
process.rlimits[0].type process.rlimits[0].soft process.rlimits[0].hard
process.noNewPrivileges process.apparmorProfile process.oomScoreAdj process.selinuxLabel
process.ioPriority process.ioPriority.class process.scheduler process.scheduler.policy
process.scheduler.nice hostname domainname mounts mounts[0] mounts[0].destination
mounts[0].type mounts[0].source mounts[0].options mounts[1].options mounts[7]
mounts[0].uidMappings hooks hooks.prestart hooks.createRuntime hooks.createContainer
hooks.startContainer hooks.poststart hooks.poststop annotations annotations.x linux
linux.namespaces linux.namespaces[0] linux.namespaces[0].type linux.namespaces[0].path
linux.uidMappings linux.gidMappings linux.devices linux.devices[0] linux.cgroupsPath
linux.resources linux.resources.memory linux.resources.memory.limit
linux.resources.memory.swap linux.resources.cpu linux.resources.cpu.shares
linux.resources.cpu.quota linux.resources.cpu.cpus linux.resources.pids
linux.resources.pids.limit linux.resources.devices linux.resources.devices[0]
linux.resources.blockIO linux.resources.hugepageLimits linux.resources.unified
linux.rootfsPropagation linux.seccomp linux.seccomp.defaultAction linux.seccomp.architectures
linux.seccomp.syscalls linux.seccomp.syscalls[0] linux.seccomp.flags linux.sysctl
linux.sysctl.x linux.maskedPaths linux.readonlyPaths linux.mountLabel linux.timeOffsets
linux.timeOffsets.monotonic linux.personality linux.intelRdt""".split()


def _set(doc: dict, path: str, value) -> None:
    parts = []
    for p in path.split("."):
        if "[" in p:
            name, idx = p[:-1].split("[")
            parts += [name, int(idx)]
        else:
            parts.append(p)
    cur = doc
    for i, key in enumerate(parts):
        last = i == len(parts) - 1
        nxt = None if last else ({} if isinstance(parts[i + 1], str) else [])
        if isinstance(key, int):
            if not isinstance(cur, list):
                return
            if key >= len(cur):
                cur.append(value if last else nxt)
                key = len(cur) - 1
            elif last:
                cur[key] = value
        else:
            if not isinstance(cur, dict):
                return
            if last:
                cur[key] = value
            elif not isinstance(cur.get(key), (dict, list)):
                cur[key] = nxt
        if not last:
            cur = cur[key]


def id_maps():
    entry = st.fixed_dictionaries({}, optional={
        "containerID": st.one_of(st.integers(-5, 2 ** 33), SCALARS),
        "hostID": st.one_of(st.integers(-5, 2 ** 33), SCALARS),
        "size": st.one_of(st.integers(-5, 2 ** 33), st.just(0), SCALARS)})
    return st.lists(entry, max_size=4)


def rlimits():
    entry = st.fixed_dictionaries({"type": st.sampled_from(["RLIMIT_NOFILE", "RLIMIT_CORE",
                                                            "RLIMIT_FLY", "", "rlimit_nofile"])
                                   | SCALARS},
                                  optional={"soft": st.integers(-1, 2 ** 65) | SCALARS,
                                            "hard": st.integers(-1, 2 ** 65) | SCALARS})
    return st.lists(entry, max_size=4)


@st.composite
def configs(draw, env: Env):
    """(config text or bytes, the id): a mutated spec, or raw malformed JSON."""
    kind = draw(st.sampled_from(["mutate"] * 12 + ["maps", "rlimits", "namespaces"] * 2
                                + ["deep", "huge", "raw"]))
    spec = busybox_spec(env.rootfs, ["true"], readonly=False)
    if kind == "raw":
        raw = draw(st.one_of(st.binary(max_size=64), st.sampled_from([
            b"", b"{", b"\xef\xbb\xbf{}", b"null", b"[]", b'{"ociVersion": NaN}',
            b'{"a": 1} {"b": 2}', b'{"root": {"path": "\\ud800"}}', b"\x00" * 10,
            json.dumps(spec).encode()[:200]])))
        return raw
    if kind == "deep":
        depth = draw(st.sampled_from([50, 900, 1000, 5000, 100_000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        where = draw(st.sampled_from(["annotations", "linux.resources", "process.env"]))
        _set(spec, where, "@DEEP@")
        text = json.dumps(spec)
        return text.replace('"@DEEP@"', opener * depth + "1" + closer * depth).encode()
    if kind == "huge":
        size = draw(st.sampled_from([MAX - 4096, MAX + 1, MAX + 4096, 3 * MAX]))
        text = json.dumps(spec)
        pad = max(size - len(text) - 20, 0)
        spec["annotations"] = {"pad": "p" * pad}
        return json.dumps(spec).encode()
    if kind == "maps":
        if draw(st.booleans()):
            spec["linux"]["namespaces"].append({"type": "user"})
        if draw(st.booleans()):
            spec["linux"]["uidMappings"] = draw(id_maps())
        if draw(st.booleans()):
            spec["linux"]["gidMappings"] = draw(id_maps())
    elif kind == "rlimits":
        spec["process"]["rlimits"] = draw(rlimits())
    elif kind == "namespaces":
        types = ["pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time", "net", ""]
        paths = [f"/proc/{env.holder.pid}/ns/{n}" for n in ("net", "uts", "ipc", "mnt")] + [
            "/dev/null", "/etc/hostname", "/", "/nonexistent", "relative/ns", "", None,
            f"/proc/{env.holder.pid}/ns"]
        ns = draw(st.lists(st.fixed_dictionaries(
            {"type": st.sampled_from(types) | SCALARS},
            optional={"path": st.sampled_from(paths) | SCALARS}), max_size=6))
        spec["linux"]["namespaces"] = ns
    for _ in range(draw(st.integers(1 if kind == "mutate" else 0, 4))):
        _set(spec, draw(st.sampled_from(FIELDS)), draw(VALUES))
    _make_safe(spec, env)
    return json.dumps(spec).encode()


def _make_safe(spec: dict, env: Env) -> None:
    """Keep fuzzed values from naming host objects (see the module's docstring)."""
    if not isinstance(spec, dict):
        return
    root = spec.get("root")
    if isinstance(root, dict) and isinstance(root.get("path"), str) and \
            root["path"] not in (env.rootfs, "", "\0", "nonexistent"):
        root["path"] = env.rootfs
    hooks = spec.get("hooks")
    if isinstance(hooks, dict):
        for lst in hooks.values():
            for h in lst if isinstance(lst, list) else ():
                if isinstance(h, dict) and isinstance(h.get("path"), str) and \
                        h["path"] not in ("/bin/true", "/bin/false", "relative", ""):
                    h["path"] = "/nonexistent-hook"
    linux = spec.get("linux")
    if not isinstance(linux, dict):
        return
    cp = linux.get("cgroupsPath")
    if isinstance(cp, str) and cp:
        linux["cgroupsPath"] = f"/yacr-fuzz/{uuid.uuid4().hex[:8]}/{cp.lstrip('/')}"
    for ns in linux.get("namespaces") or [] if isinstance(linux.get("namespaces"), list) \
            else []:
        if isinstance(ns, dict) and isinstance(ns.get("path"), str) and \
                ns["path"].startswith("/proc/") and \
                not ns["path"].startswith(f"/proc/{env.holder.pid}/"):
            ns["path"] = "/nonexistent-ns"
    for m in spec.get("mounts") or [] if isinstance(spec.get("mounts"), list) else []:
        # sources the image cannot abuse: a bind of the host's / is harmless in the
        # container's mount namespace, not in the host's (a config without one)
        if isinstance(m, dict) and isinstance(m.get("source"), str) and \
                m["source"].startswith("/") and m["source"] not in ("/sys", "/proc"):
            m["source"] = str(env.volume)


def test_fuzz_config_create(env):
    """create with a fuzzed config.json: one clear line or a container that deletes clean."""
    def body(data: bytes) -> None:
        (env.bundle / "config.json").write_bytes(data)
        cid = f"fz-{uuid.uuid4().hex[:10]}"
        env.rt.ids.add(cid)
        p = yacr(env, "create", "--bundle", str(env.bundle), cid)
        try:
            check_outcome(p)
            if p.returncode == 0:
                assert json.loads(yacr(env, "state", cid).stdout)["status"] == "created"
            check_no_leak(env, [cid])
        except AssertionError:
            # the input, for the report (hypothesis shrinks it and prints the smallest)
            FAILED.mkdir(parents=True, exist_ok=True)
            (FAILED / f"{cid}.json").write_bytes(data[:1 << 20])
            (FAILED / f"{cid}.err").write_text(p.stderr)
            raise

    fuzz(env, "config", configs(env), body)


# --- exec --process ---------------------------------------------------------------------------

@st.composite
def process_files(draw):
    proc = {"args": ["true"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=40))
    fields = ["terminal", "user", "user.uid", "user.gid", "user.additionalGids", "user.umask",
              "args", "args[0]", "args[1]", "env", "env[0]", "cwd", "capabilities",
              "capabilities.bounding", "capabilities.ambient", "rlimits", "rlimits[0]",
              "noNewPrivileges", "oomScoreAdj", "ioPriority", "scheduler", "consoleSize",
              "apparmorProfile", "selinuxLabel"]
    for _ in range(draw(st.integers(1, 3))):
        _set(proc, draw(st.sampled_from(fields)), draw(VALUES))
    if draw(st.booleans()):
        proc["rlimits"] = draw(rlimits())
    return json.dumps(proc).encode()


def _sleeper(env: Env, name: str) -> tuple[str, int]:
    """A running busybox `sleep` container to exec into: its id and init's pid."""
    cid = f"fz-{name}-{uuid.uuid4().hex[:8]}"
    env.rt.ids.add(cid)
    b = env.base / f"{name}-bundle"
    b.mkdir()
    (b / "config.json").write_text(json.dumps(busybox_spec(env.rootfs, ["sleep", "100000"],
                                                           readonly=False)))
    assert yacr(env, "run", "-d", "--bundle", str(b), cid).returncode == 0
    return cid, json.loads(yacr(env, "state", cid).stdout)["pid"]


def test_fuzz_exec_process_file(env):
    cid, init = _sleeper(env, "exec")
    pf = env.base / "process.json"

    def body(data: bytes) -> None:
        pf.write_bytes(data)
        p = yacr(env, "exec", "--process", str(pf), cid, timeout=30)
        # the program's own output and exit status pass through; yacr's errors are its lines
        assert "Traceback" not in p.stderr + p.stdout
        ours = [ln for ln in p.stderr.splitlines() if ln.startswith("yacr: ")]
        assert len(ours) <= 1, p.stderr
        assert not ours or p.returncode != 0
        assert "internal error" not in p.stderr, p.stderr
        check_no_leak(env, [], keep={init}, keep_ids={cid})

    try:
        fuzz(env, "process", process_files(), body)
    finally:
        yacr(env, "delete", "--force", cid)


# --- the command line -------------------------------------------------------------------------

COMMANDS = ["create", "start", "run", "state", "kill", "delete", "list", "spec", "features",
            "exec", "ps", "pause", "resume", "update", "events", "checkpoint", "restore",
            "help", "", "bogus", "--help", "-v"]
FLAGS = ["--bundle", "-b", "--console-socket", "--pid-file", "--no-pivot", "--no-new-keyring",
         "--preserve-fds", "--detach", "-d", "--keep", "--all", "-a", "--force", "-f",
         "--format", "--quiet", "-q", "--rootless", "--process", "-p", "--tty", "-t", "--env",
         "-e", "--cwd", "--user", "-u", "--additional-gids", "-g", "--cap", "-c",
         "--no-new-privs", "--apparmor", "--process-label", "--cgroup", "--ignore-paused",
         "--resources", "-r", "--memory", "--memory-swap", "--cpu-shares", "--cpu-quota",
         "--cpu-period", "--cpuset-cpus", "--pids-limit", "--blkio-weight", "--stats",
         "--interval", "--image-path", "--help", "-h", "--bogus", "-", "--", "---x"]
GLOBAL = ["--debug", "--log-format", "--systemd-cgroup", "--rootless", "--criu", "--version"]


@st.composite
def argvs(draw, env: Env, existing: str):
    def word():
        return draw(st.one_of(
            st.sampled_from([existing, "fz-missing", "", "-1", "0", "9", "KILL", "SIGRTMAX-1",
                             "2147483648", "99999999999999999999", "1e3", "true", "json",
                             "table", str(env.bundle), "x" * 300, "../etc", "a b", "1:1",
                             "CAP_SYS_ADMIN", "-", "5s", "0s", "=", "ä"]),
            _text(10).filter(lambda s: "\0" not in s and not _surrogates(s))))

    argv: list[str] = []
    for _ in range(draw(st.integers(0, 2))):
        g = draw(st.sampled_from(GLOBAL))
        argv.append(g if g not in ("--log-format", "--criu", "--rootless")
                    else f"{g}={word()}")
    cmd = draw(st.sampled_from(COMMANDS))
    if cmd:
        argv.append(cmd)
    for _ in range(draw(st.integers(0, 5))):
        choice = draw(st.integers(0, 3))
        if choice == 0:
            argv.append(draw(st.sampled_from(FLAGS)))
        elif choice == 1:
            argv.append(f"{draw(st.sampled_from(FLAGS))}={word()}")
        else:
            argv.append(word())
    if cmd == "events":
        argv.insert(argv.index("events") + 1, "--stats")  # no endless stream
    if cmd == "exec" and "--detach" not in argv and "-d" not in argv:
        argv.insert(argv.index("exec") + 1, "--detach")  # never wait on a sleeping program
    return argv


def _init_of(env: Env, cid: str) -> int | None:
    """The live init of a container, from its state file (cheaper than `yacr state`)."""
    try:
        pid = json.loads((env.rt.root / cid / "state.json").read_text())["pid"]
        with open(f"/proc/{pid}/stat") as f:
            return pid if f.read().rsplit(")", 1)[1].split()[0] not in "ZX" else None
    except (OSError, ValueError, KeyError):
        return None


def _surrogates(s: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in s)


def test_fuzz_cli(env):
    existing = f"fz-cli-{uuid.uuid4().hex[:8]}"
    env.rt.ids.add(existing)
    config = json.dumps(busybox_spec(env.rootfs, ["true"], readonly=False)).encode()
    (env.bundle / "config.json").write_bytes(config)

    def body(argv: list[str]) -> None:
        # `yacr spec` (in the working directory or --bundle) writes the default config: an
        # interactive sh on a terminal, which a later `run` would rightly wait on forever
        (env.base / "config.json").unlink(missing_ok=True)
        cfg = env.bundle / "config.json"
        if not cfg.exists() or cfg.read_bytes() != config:
            cfg.write_bytes(config)
        # a created container to act on, made again when the previous example ended it
        init = _init_of(env, existing)
        if init is None:
            yacr(env, "delete", "--force", existing)
            c = yacr(env, "create", "--bundle", str(env.bundle), existing)
            assert c.returncode == 0, c.stderr
            init = _init_of(env, existing)
        p = yacr(env, *argv, timeout=30)
        check_outcome(p)
        check_no_leak(env, [], keep={init}, keep_ids={existing})

    try:
        fuzz(env, "cli", argvs(env, existing), body)
    finally:
        yacr(env, "delete", "--force", existing)


# --- what the fuzzer found, kept as fixed examples -------------------------------------------

@pytest.mark.parametrize("odd", ["\n", "\x1e", "\x85", "\u2028", "\udc80"])
def test_line_boundaries_in_quoted_values_stay_on_one_line(env, odd):
    """Errors quote config values verbatim. `make fuzz` found a sysctl key holding \\x1e (a
    line boundary to Python, a newline does the same): the one-line error became two. Every
    unprintable character is now escaped, in create's errors and in init's."""
    spec = busybox_spec(env.rootfs, ["true"], readonly=False)
    spec["linux"]["sysctl"] = {f"kernel.a{odd}b": None}
    (env.bundle / "config.json").write_text(json.dumps(spec))
    cid = f"fz-odd-{uuid.uuid4().hex[:8]}"
    env.rt.ids.add(cid)
    p = yacr(env, "create", "--bundle", str(env.bundle), cid)
    check_outcome(p)
    assert p.returncode == 1 and "linux.sysctl.kernel.a" in p.stderr
    assert repr(odd)[1:-1] in p.stderr
    # a program that does not exist, named with the same character: init reports it
    spec = busybox_spec(env.rootfs, [f"/bin/no{odd}such"], readonly=False)
    (env.bundle / "config.json").write_text(json.dumps(spec))
    p = yacr(env, "run", "--bundle", str(env.bundle), cid)
    check_outcome(p)
    assert p.returncode != 0 and repr(odd)[1:-1] in p.stderr, p.stderr
    check_no_leak(env, [cid])


def test_process_file_that_is_not_an_object(env):
    """`make fuzz` found `exec --process` with a file holding just `0`: an internal error
    (AttributeError) instead of a one-line refusal."""
    cid, init = _sleeper(env, "pobj")
    pf = env.base / "pobj.json"
    try:
        for text, kind in (("0", "a number"), ("[]", "an array"), ('"sh"', "a string"),
                           ("null", "null"), ("true", "a boolean")):
            pf.write_text(text)
            p = yacr(env, "exec", "--process", str(pf), cid)
            check_outcome(p)
            # 255: exec's own failure, as runc's (the process's statuses stay theirs)
            assert p.returncode == 255 and "--process file" in p.stderr, p.stderr
            assert f"expected an object, got {kind}" in p.stderr, p.stderr
        check_no_leak(env, [], keep={init}, keep_ids={cid})
    finally:
        yacr(env, "delete", "--force", cid)
