# yacr: `make demo` and `make test` do all set-up on a fresh Debian machine.
PY ?= /usr/bin/python3
VENV := .venv
BUILD := build
YACR := $(VENV)/bin/yacr
STAMP := $(VENV)/.installed

.PHONY: all setup deps demo test lint bench clean

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
	@$(VENV)/bin/python3 -m compileall -q src >/dev/null

demo: setup
	@$(VENV)/bin/python3 -m yacr.demo --yacr $(abspath $(YACR)) --build $(abspath $(BUILD))/demo

test: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/python3 -m pytest -q tests

lint: setup
	$(VENV)/bin/ruff check src tests

bench: setup
	$(YACR) bench --out $(BUILD)/bench

clean:
	rm -rf $(BUILD) $(VENV)
