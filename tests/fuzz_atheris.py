"""Coverage-guided fuzzing (atheris, libFuzzer) of what create does with config.json before
it forks: read the JSON, validate the spec, plan the namespaces, parse the resources.

Run by `make fuzz` when atheris is installed (pip install -e '.[fuzz]'); libFuzzer flags
pass through, e.g. `python3 tests/fuzz_atheris.py -max_total_time=600`. The invariant: any
input is accepted or refused with a YacrError (a one-line message), never another exception.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

with atheris.instrument_imports():
    from yacr import cgroups, jsonio  # noqa: F401 - instrumented with the rest
    from yacr import spec as specmod
    from yacr.errors import YacrError
    from yacr.linux import namespaces

SEED = (b'{"ociVersion":"1.2.0","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/",'
        b'"rlimits":[{"type":"RLIMIT_NOFILE","soft":1,"hard":2}],"user":{"uid":0,"gid":0}},'
        b'"mounts":[{"destination":"/proc","type":"proc"}],"linux":{"namespaces":[{"type":'
        b'"pid"},{"type":"user"}],"uidMappings":[{"containerID":0,"hostID":1000,"size":1}],'
        b'"resources":{"memory":{"limit":1}},"sysctl":{"net.x":"1"}}}')


def one_input(data: bytes) -> None:
    try:
        if len(data) > specmod.MAX_CONFIG_BYTES:
            return
        spec = specmod.Spec(specmod.parse_json(data, "config.json"), "/nonexistent-bundle")
        cgroups.parse_resources(spec.linux.resources)
        plan = namespaces.plan(spec.linux)  # opens only the paths the input names
        plan.close()
    except YacrError as e:
        msg = str(e)
        assert msg and "\n" not in msg, repr(msg)


def main() -> None:
    corpus = Path(__file__).resolve().parent.parent / "build" / "atheris-corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    (corpus / "seed.json").write_bytes(SEED)
    atheris.Setup(sys.argv + [str(corpus)], one_input)
    atheris.Fuzz()  # libFuzzer ends with "Done N runs in S second(s)"


if __name__ == "__main__":
    main()
