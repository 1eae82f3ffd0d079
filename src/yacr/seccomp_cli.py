"""`yacr seccomp surface` and `yacr profile`: measuring and recording seccomp profiles.

Cold commands with their own argparse parsers (as `yacr bench`): nothing here is
imported when a container starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from yacr.errors import UsageError, YacrError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from yacr.container import Context
    from yacr.linux.surface import Surface


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 1, like every yacr error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _yacr(ctx: Context) -> list[str]:
    """yacr again, with this command's global flags."""
    from yacr.linux.surface import yacr_command

    cmd = yacr_command() + ["--root", ctx.root]
    if ctx.log.path:
        cmd += ["--log", ctx.log.path, "--log-format", "json" if ctx.log.json else "text"]
    if ctx.log.debug_enabled:
        cmd.append("--debug")
    return cmd


# --- yacr seccomp surface ---------------------------------------------------------------

def wasm_allowlist_profile() -> dict | None:
    """The wasm handler's allowlist as an OCI profile, if this build has the handler:
    `yacr.wasm.allowlist.profile()` when it offers one, else its SYSCALLS as build_filter
    compiles them (EPERM for the rest)."""
    try:
        from yacr.wasm import allowlist
    except ImportError:
        return None
    prof = getattr(allowlist, "profile", None)
    if callable(prof):
        return prof()
    names = getattr(allowlist, "SYSCALLS", None)
    if not names:
        return None
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "syscalls": [{"names": list(names), "action": "SCMP_ACT_ALLOW"}]}


def _labelled(value: str, flag: str) -> tuple[str, str]:
    label, eq, rest = value.partition("=")
    if not eq:
        return rest or value, value
    if not label or not rest:
        raise UsageError(f"{flag}: expected LABEL=VALUE, got {value!r}")
    return label, rest


def _load_profile(path: str, flag: str) -> dict:
    from yacr.spec import read_json_file

    data = read_json_file(path, f"{flag} file")
    if isinstance(data, dict) and isinstance(data.get("linux"), dict) and \
            "seccomp" in data["linux"]:
        data = data["linux"]["seccomp"]  # a whole config.json
    if not isinstance(data, dict):
        raise YacrError(f"{flag} {path}: expected a linux.seccomp object or a config.json")
    return data


def surface_main(ctx: Context, argv: list[str]) -> int:
    from yacr import container
    from yacr.linux import surface
    from yacr.linux.seccomp_default import default_profile
    from yacr.specgen import DEFAULT_CAPS

    p = _Parser(prog="yacr seccomp surface",
                description="Count the x86_64 syscalls a seccomp filter allows, read back from "
                "a container process (PTRACE_SECCOMP_GET_FILTER) and evaluated for every "
                "syscall number, with arguments zero and for some arguments. Without "
                "arguments: yacr's default profile, the wasm allowlist if this build has "
                "it, and gVisor's host filters (its sandbox and gofer) if runsc is "
                "installed.")
    p.add_argument("--profile", action="append", default=[], metavar="[LABEL=]FILE",
                   help="a linux.seccomp JSON object (or a config.json) to load on a busybox "
                   "container and measure")
    p.add_argument("--pid", action="append", default=[], metavar="[LABEL=]PID",
                   help="measure a running process's filters")
    p.add_argument("--container", action="append", default=[], metavar="ID",
                   help="measure a running yacr container's init")
    p.add_argument("--runsc", nargs="?", const=" ".join(surface.RUNSC_FLAGS), default=None,
                   metavar="FLAGS",
                   help="measure gVisor's host filters: run busybox under runsc with FLAGS "
                   f"(default --runsc='{' '.join(surface.RUNSC_FLAGS)}', as yacr bench) and "
                   "read back the filters of its sandbox and gofer")
    p.add_argument("--no-defaults", action="store_true",
                   help="do not measure yacr's default profile, the wasm allowlist and "
                   "gVisor (unless --runsc)")
    p.add_argument("--rootfs", default=None, help="busybox rootfs for the measuring container")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--names", action="store_true", help="list the allowed syscalls too")
    o = p.parse_args(argv)
    if os.geteuid() != 0:
        raise YacrError("yacr seccomp surface: reading seccomp filters needs root")
    if o.rootfs is not None:
        # the measuring bundle lives in a temporary directory: a relative path would
        # resolve there
        if not os.path.isdir(o.rootfs):
            raise UsageError(f"--rootfs: {o.rootfs} is not a directory")
        o.rootfs = os.path.abspath(o.rootfs)

    surfaces: list[Surface] = []
    if not o.no_defaults:
        surfaces.append(surface.measure_profile(default_profile(DEFAULT_CAPS),
                                                "yacr default (yacr spec --seccomp)", o.rootfs))
        wasm = wasm_allowlist_profile()
        if wasm is not None:
            surfaces.append(surface.measure_profile(wasm, "yacr wasm allowlist", o.rootfs))
    runsc_flags = o.runsc
    if runsc_flags is None and not o.no_defaults:
        import shutil

        if shutil.which("runsc"):
            runsc_flags = " ".join(surface.RUNSC_FLAGS)
        else:
            sys.stderr.write("yacr seccomp surface: gVisor not measured: runsc is not "
                             "installed (apt-get install runsc)\n")
    if runsc_flags is not None:
        import shlex

        try:
            flags = tuple(shlex.split(runsc_flags))
        except ValueError as e:
            raise UsageError(f"--runsc: {e}") from None
        if any(not f.startswith("-") for f in flags):
            raise UsageError(f"--runsc: expected runsc's global flags, got {runsc_flags!r}")
        surfaces += surface.measure_runsc(o.rootfs, flags)
    for value in o.profile:
        label, path = _labelled(value, "--profile")
        surfaces.append(surface.measure_profile(_load_profile(path, "--profile"), label,
                                                o.rootfs))
    for value in o.pid:
        label, pid = _labelled(value, "--pid")
        try:
            n = int(pid)
        except ValueError:
            raise UsageError(f"--pid: {pid!r} is not a process id") from None
        surfaces.append(surface.measure_pid(n, label if label != pid else f"pid {n}"))
    for cid in o.container:
        st = container.state_of(ctx, cid)
        if not st.get("pid") or st.get("status") not in ("running", "paused"):
            raise YacrError(f"--container {cid}: not running")
        surfaces.append(surface.measure_pid(int(st["pid"]), f"container {cid}"))
    if o.json:
        out = []
        for s in surfaces:
            sm = s.summary()
            if not o.names:
                sm.pop("allowed_names")
            out.append(sm)
        sys.stdout.write(json.dumps({"measured": out, "quoted": [
            {"label": a, "figure": f, "source": src} for a, f, src in surface.ANCHORS]},
            indent=2) + "\n")
        return 0
    sys.stdout.write(surface.report(surfaces))
    if o.names:
        for s in surfaces:
            sys.stdout.write(f"\n{s.label}: {' '.join(s.names(s.allowed()))}\n")
            if s.some_args:
                sys.stdout.write(f"  and for some arguments: "
                                 f"{' '.join(s.names(sorted(s.some_args)))}\n")
    return 0


def seccomp_main(ctx: Context, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write("usage: yacr seccomp surface [--profile [LABEL=]FILE] [--pid "
                         "[LABEL=]PID] [--container ID] [--runsc[=FLAGS]] [--no-defaults] "
                         "[--json] [--names]\n"
                         "\n  surface   count the syscalls seccomp filters allow (see "
                         "yacr seccomp surface --help)\n")
        return 0 if argv else 1
    if argv[0] == "surface":
        return surface_main(ctx, argv[1:])
    raise UsageError(f"seccomp: unknown subcommand {argv[0]!r}; try yacr seccomp --help")


# --- yacr profile ---------------------------------------------------------------------

def profile_main(ctx: Context, argv: list[str]) -> int:
    from yacr.linux import recorder

    p = _Parser(prog="yacr profile",
                description="Run a container once in the foreground while recording the "
                "syscalls it makes (seccomp user notification), then write the minimal OCI "
                "seccomp profile for it: exactly those syscalls, plus what yacr's last step "
                "before execve needs; everything else fails with EPERM.")
    p.add_argument("--bundle", "-b", default=".", help="the bundle to run (default .)")
    p.add_argument("--output", "-o", default="seccomp.json",
                   help="where to write the linux.seccomp JSON (default seccomp.json; "
                   "- for stdout)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop the container (TERM, then KILL) after this long")
    p.add_argument("--write-config", default="", metavar="FILE",
                   help="also write the bundle's config.json with the profile in it to FILE")
    p.add_argument("id", help="container id for the recording run")
    o = p.parse_args(argv)
    if o.timeout is not None and o.timeout <= 0:
        raise UsageError("--timeout: must be positive")
    if os.geteuid() != 0:
        raise YacrError("yacr profile: recording needs root (the seccomp listener)")
    bundle = os.path.abspath(o.bundle)
    rc, rec, cfg = recorder.record_run(_yacr(ctx), bundle, o.id, o.timeout)
    nnp = bool(cfg.get("process", {}).get("noNewPrivileges", False))
    prof = recorder.minimal_profile(rec, nnp)
    names, unnamed = rec.names()
    text = json.dumps(prof, indent=2) + "\n"
    if o.output == "-":
        sys.stdout.write(text)
    else:
        _write(o.output, text)
    if o.write_config:
        cfg.setdefault("linux", {})["seccomp"] = prof
        _write(o.write_config, json.dumps(cfg, indent=2) + "\n")
    allowed = len(prof["syscalls"][0]["names"])
    msg = (f"yacr profile: {sum(rec.counts.values())} calls of {len(names)} syscalls from "
           f"{len(rec.processes)} processes; the profile allows {allowed}"
           f"{'' if o.output == '-' else ' (' + o.output + ')'}")
    if unnamed:
        msg += f"; no name for {', '.join(unnamed)}: left denied"
    sys.stderr.write(msg + "\n")
    return rc


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        raise YacrError(f"cannot write {path}: {e.strerror}") from None
