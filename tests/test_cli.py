"""The command line as runc's: flag order, kill 0, --debug and --log, help and version
(issue 11)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from test_errors import assert_clean_error, assert_nothing_left
from yacr import cli

CGROUP = Path("/sys/fs/cgroup")


def wait_status(runtime, cid: str, status: str, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while True:
        now = runtime.state(cid)["status"]
        if now == status or time.monotonic() > deadline:
            return now
        time.sleep(0.02)


def running(runtime, bundles, args: list[str] | None = None) -> str:
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", bundles.make(args or ["sleep", "1000"]), cid, check=True)
    runtime.state(cid)  # records the pid for the leak check
    return cid


# --- flags before or after the positional arguments ----------------------------------------

_KILL = [cli.Flag("all", "bool", aliases=("a",)), cli.HELP_FLAG]
_UPDATE = [cli.Flag("pids-limit", "int"), cli.Flag("memory", "str", ""), cli.HELP_FLAG]


@pytest.mark.parametrize("flags,argv,values,positional", [
    # what Debian's runc 1.1.5 does with these, observed from its errors and effects
    (_KILL, ["ID", "KILL", "--all"], {"all": True}, ["ID", "KILL"]),
    (_KILL, ["--all", "ID", "KILL"], {"all": True}, ["ID", "KILL"]),
    (_KILL, ["ID", "-a"], {"all": True}, ["ID"]),
    # a flag takes the argument after it along, even a boolean one: runc then signals "KILL"
    (_KILL, ["ID", "--all", "KILL"], {"all": True}, ["KILL", "ID"]),
    # an unknown flag after the id stays a positional argument (then: too many arguments)
    (_KILL, ["ID", "--bogus", "KILL"], {"all": False}, ["ID", "--bogus", "KILL"]),
    # -- ends the flags; what is before it stays positional, in front
    (_KILL, ["ID", "--", "--all"], {"all": False}, ["ID", "--all"]),
    (_KILL, ["ID", "--"], {"all": False}, ["ID"]),
    # a value that starts with - but names no flag is still the flag's value
    (_UPDATE, ["ID", "--pids-limit", "-1"], {"pids-limit": -1}, ["ID"]),
    (_UPDATE, ["ID", "--memory=1M", "--pids-limit", "7"], {"memory": "1M", "pids-limit": 7},
     ["ID"]),
])
def test_reorder_as_runc(flags, argv, values, positional):
    o, pos = cli.parse_flags(argv, flags, "t", reorder=True)
    assert pos == positional
    for k, v in values.items():
        assert o[k] == v


def test_without_reorder_flags_stop_at_the_first_positional():
    o, pos = cli.parse_flags(["-t", "ID", "sh", "-c", "echo --tty"], cli.EXEC_FLAGS, "exec")
    assert o["tty"] is True and pos == ["ID", "sh", "-c", "echo --tty"]


def test_flags_after_the_id(runtime, bundles):
    cid = running(runtime, bundles)
    assert runtime("state", cid, "--help").stdout.splitlines()[1].startswith("   yacr state")
    pids = [p for p in (CGROUP / "pids" / "yacr" / cid, CGROUP / "yacr" / cid)
            if (p / "pids.max").exists()]
    p = runtime("update", cid, "--pids-limit", "33")
    assert p.returncode == 0, p.stderr
    if pids:
        assert (pids[0] / "pids.max").read_text().strip() == "33"
    # runc's reading of `kill ID --all KILL`: signal ID to container "KILL"
    assert_clean_error(runtime("kill", cid, "--all", "KILL"), "does not exist")
    assert runtime.state(cid)["status"] == "running"
    runtime("kill", cid, "KILL", "--all", check=True)
    assert wait_status(runtime, cid, "stopped") == "stopped"
    runtime("delete", cid, "--force", check=True)
    assert_nothing_left(runtime, cid)


def test_unknown_flag_after_the_id_is_an_argument(runtime):
    assert_clean_error(runtime("state", "x", "--bogus"), "unexpected argument '--bogus'")
    assert_clean_error(runtime("state", "--bogus", "x"), "flag provided but not defined: -bogus")


def test_exec_and_ps_take_what_follows_the_id(runtime, bundles):
    cid = running(runtime, bundles)
    p = runtime("exec", cid, "echo", "--tty", "-d")
    assert p.returncode == 0 and p.stdout == "--tty -d\n", p.stderr
    p = runtime("ps", cid, "-o", "pid,comm")
    assert p.returncode == 0 and "sleep" in p.stdout and "PID" in p.stdout, p.stderr
    runtime("delete", "--force", "--", cid, check=True)


# --- kill 0, and kill of a stopped container ------------------------------------------------

def test_kill_zero_checks_that_the_container_is_alive(runtime, bundles):
    cid = running(runtime, bundles)
    assert runtime("kill", cid, "0").returncode == 0
    assert runtime.state(cid)["status"] == "running"  # nothing was sent
    runtime("kill", cid, "KILL", check=True)
    assert wait_status(runtime, cid, "stopped") == "stopped"
    p = runtime("kill", cid, "0")
    assert_clean_error(p, "container not running", cid, f"yacr delete {cid}")
    # with --all, a stopped container is not an error (runc's kill.bats)
    assert runtime("kill", "-a", cid, "0").returncode == 0
    p = runtime("kill", cid, "TERM")
    assert_clean_error(p, "container not running", f"container {cid} has stopped",
                       f"remove it with yacr delete {cid}")
    assert_clean_error(runtime("kill", cid, "NOTASIGNAL"), "invalid signal")
    assert_clean_error(runtime("kill", cid, "-1"), "invalid signal")
    runtime("delete", cid, check=True)


# --- --debug and --log ----------------------------------------------------------------------

_TEXT_DEBUG = re.compile(r'^time="[0-9T:.-]+Z" level=debug msg=".*"$')


def test_log_file_is_created_when_nothing_goes_wrong(runtime, tmp_path):
    log = tmp_path / "log.json"
    p = runtime("list", log=str(log), log_format="json")
    assert p.returncode == 0 and p.stderr == ""
    assert log.exists() and log.read_text() == ""
    p = runtime("list", log=str(tmp_path / "no" / "such" / "dir" / "log"))
    assert_clean_error(p, "--log", "No such file or directory")


def test_debug_to_stderr_without_log(runtime, bundles):
    p = runtime("--debug", "run", "--bundle", bundles.make(["echo", "hi"]), runtime.new_id())
    assert p.returncode == 0 and p.stdout == "hi\n", p.stderr
    lines = p.stderr.splitlines()
    assert lines and all(_TEXT_DEBUG.match(ln) for ln in lines), p.stderr
    text = p.stderr
    for step in ("config loaded", "cgroups made", "nsexec container setup", "state saved",
                 "start released", "deleted"):
        assert step in text, step


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_debug_to_log(runtime, bundles, tmp_path, fmt):
    log = tmp_path / "log"
    cid = runtime.new_id()
    p = runtime("--debug", "run", "-d", "--bundle", bundles.make(["sleep", "1000"]), cid,
                log=str(log), log_format=fmt)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    runtime.state(cid)
    p = runtime("--debug", "exec", cid, "true", log=str(log), log_format=fmt)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    runtime("--debug", "delete", "--force", cid, log=str(log), log_format=fmt, check=True)
    lines = log.read_text().splitlines()
    if fmt == "json":
        recs = [json.loads(ln) for ln in lines]
        assert all(r["level"] == "debug" and r["time"].endswith("Z") for r in recs)
        msgs = [r["msg"] for r in recs]
    else:
        assert all(_TEXT_DEBUG.match(ln) for ln in lines), lines
        msgs = lines
    setup = [m for m in msgs if "nsexec container setup" in m]
    assert len(setup) == 2 and "forking init" in setup[0] and "exec'd process" in setup[1]
    assert any("deleted" in m for m in msgs)


def test_debug_lines_of_the_containers_init_reach_the_log(runtime, bundles, tmp_path):
    """init writes through the fd the runtime opened: after pivot_root the path is gone."""
    log = tmp_path / "log"
    p = runtime("--debug", "run", "--bundle", bundles.make(["/no/such/program"]),
                runtime.new_id(), log=str(log), log_format="json")
    assert_clean_error(p, "/no/such/program")
    recs = [json.loads(ln) for ln in log.read_text().splitlines()]
    # the container's init reports its failure with its stack, from inside the container
    assert any(r["level"] == "debug" and "Traceback" in r["msg"] for r in recs)
    assert recs[-1]["level"] == "error" and "/no/such/program" in recs[-1]["msg"]
    assert_nothing_left(runtime)


def test_no_debug_lines_without_debug(runtime, bundles, tmp_path):
    log = tmp_path / "log"
    runtime("run", "--bundle", bundles.make(["true"]), runtime.new_id(), log=str(log),
            check=True)
    assert log.read_text() == ""


# --- help and version -----------------------------------------------------------------------

def test_help_in_runcs_layout(runtime):
    for args in (["--help"], ["-h"], ["help"], ["h"], []):
        lines = runtime(*args, check=True).stdout.splitlines()
        assert lines[0] == "NAME:" and lines[1].startswith("   yacr - "), args
        for section in ("USAGE:", "VERSION:", "COMMANDS:", "GLOBAL OPTIONS:"):
            assert section in lines, (args, section)
    out = runtime("--help", check=True).stdout
    for c in ("checkpoint", "create", "delete", "events", "exec", "kill", "list", "pause", "ps",
              "restore", "resume", "run", "spec", "start", "state", "update", "features"):
        assert re.search(rf"^   {c} +\S", out, re.M), c
    for flag in ("--debug", "--log value", "--log-format value", "--root value",
                 "--systemd-cgroup", "--version, -v"):
        assert flag in out


@pytest.mark.parametrize("cmd", ["checkpoint", "create", "delete", "events", "exec", "kill",
                                 "list", "pause", "ps", "restore", "resume", "run", "spec",
                                 "start", "state", "update", "features"])
def test_command_help_names_the_command(runtime, cmd):
    for args in ([cmd, "-h"], [cmd, "--help"], ["help", cmd]):
        lines = runtime(*args, check=True).stdout.splitlines()
        assert lines[0] == "NAME:"
        assert lines[1].startswith(f"   yacr {cmd} - "), (args, lines[1])
        assert "USAGE:" in lines


def test_help_for_an_unknown_command(runtime):
    for args in (["foo", "-h"], ["help", "foo"], ["foo"]):
        p = runtime(*args)
        assert_clean_error(p, "No help topic for 'foo'")
        assert p.returncode == 3


def test_version_three_lines(runtime):
    for flag in ("--version", "-v"):
        lines = runtime(flag, check=True).stdout.splitlines()
        assert len(lines) == 3
        assert re.fullmatch(r"yacr version \d+\.\d+\.\d+", lines[0])
        assert re.fullmatch(r"commit: \S.*", lines[1])
        assert re.fullmatch(r"spec: \d+\.\d+\.\d+", lines[2])
    commit = lines[1].split(": ", 1)[1]
    head = subprocess.run(["git", "-C", str(Path(cli.__file__).parent), "rev-parse", "HEAD"],
                          capture_output=True, text=True)
    if head.returncode == 0:
        assert head.stdout.startswith(commit.split("-")[0]) or commit.startswith("v")
