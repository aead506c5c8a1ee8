# `make demo` and `make test` each create .venv when missing and install what they need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# one pytest worker per core, at most 4 (each holds its own tiny models); a test file stays on one worker
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)

.PHONY: demo test bench lint install clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build on a CPU machine.
$(STAMP): pyproject.toml $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/r1tune quickstart --out runs/quickstart

# system packages the suite needs (headless Chromium for the report test), installed when missing
test: $(STAMP)
	sh scripts/install-test-deps.sh
	$(BIN)/ruff check src tests bench tools
	$(BIN)/python -m pytest tests -n $(TEST_WORKERS) --dist loadfile

bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/whole_run.py  # issue 20: a whole short run, exec to exit
	$(BIN)/python bench/grpo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools

clean:
	rm -rf runs .pytest_cache bench/out
