# yacr: `make demo` and `make test` do all set-up on a fresh Debian machine.
PY ?= /usr/bin/python3
VENV := .venv
BUILD := build
YACR := $(VENV)/bin/yacr
STAMP := $(VENV)/.installed

.PHONY: all setup deps demo test test-vm lint bench fuzz clean

all: setup

deps:
	@./scripts/install-deps.sh

$(STAMP): pyproject.toml
	@./scripts/install-deps.sh
	@test -x $(VENV)/bin/python3 || $(PY) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[test,bench]'
	@$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[wasm]'
	@touch $(STAMP)

setup: deps $(STAMP)
	@./scripts/write-launcher.sh $(VENV) src
	@./scripts/write-wasmhost.sh $(VENV)
	@$(VENV)/bin/python3 -m compileall -q src >/dev/null

demo: setup
	@$(VENV)/bin/python3 -m yacr.demo --yacr $(abspath $(YACR)) --build $(abspath $(BUILD))/demo

test: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/python3 -m pytest -q tests

# The production layout (systemd as pid 1, pure cgroup v2), which this machine does not
# have: boot a Debian guest under QEMU (KVM if it works here, else TCG) and run the tests
# listed in tests/vm/SUITE inside it, with this venv shared at the same path. The image is
# built from Debian's packages on first use and cached in build/vm. The last line of
# output is `N passed, M failed`; the exit status is pytest's. See scripts/vm/vm.py.
# TEST_VM_ARGS go to pytest, e.g. make test-vm TEST_VM_ARGS="-k kill -x".
TEST_VM_ARGS ?=
test-vm: setup
	@./scripts/install-deps.sh vm
	@$(PY) scripts/vm/vm.py test $(TEST_VM_ARGS)

# Long fuzzing: hypothesis drives the CLI for FUZZ_SECONDS (new random inputs; failures are
# kept in build/hypothesis and replayed first next time), then atheris fuzzes config
# validation in-process for ATHERIS_SECONDS when it installs. Both print how many inputs
# they tried; build/fuzz-report.json keeps the hypothesis counts.
FUZZ_SECONDS ?= 1200
ATHERIS_SECONDS ?= 300
fuzz: setup
	@$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[test,fuzz]' \
		|| echo "atheris did not install: hypothesis only"
	@# pip just rewrote .venv/bin/yacr as its console script: the compiled launcher back
	@./scripts/write-launcher.sh $(VENV) src
	@./scripts/write-wasmhost.sh $(VENV)
	YACR_FUZZ_SECONDS=$(FUZZ_SECONDS) $(VENV)/bin/python3 -m pytest -q -s tests/test_fuzz.py
	@if $(VENV)/bin/python3 -c 'import atheris' 2>/dev/null; then \
		cd $(BUILD) && ../$(VENV)/bin/python3 ../tests/fuzz_atheris.py \
			-max_total_time=$(ATHERIS_SECONDS) -rss_limit_mb=4096 >atheris.log 2>&1; \
		rc=$$?; grep -E '^Done|ERROR|Error|Traceback' atheris.log; \
		echo "atheris: full log in $(BUILD)/atheris.log"; exit $$rc; fi

lint: setup
	$(VENV)/bin/ruff check src tests

# Every benchmark scenario into build/bench (results.json/.csv, PNGs, summary.md) for yacr,
# yacr-wasm, runc, crun and gVisor (runsc), 25 minutes on 2 vCPUs. `make bench PUBLISH=docs`
# also rewrites docs/BENCHMARKS.md, docs/bench/*.png and the README's bench block from that
# run, so they show this machine's latest figures; `yacr bench --report-only --out
# build/bench --publish docs` republishes a finished run.
bench: setup
	$(YACR) bench --out $(BUILD)/bench $(if $(PUBLISH),--publish $(PUBLISH))

clean:
	rm -rf $(BUILD) $(VENV)
