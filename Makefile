# Two entry points for a fresh machine: `make demo` (set up, then run the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned and installed first: on a CPU-only machine this takes the CPU wheel that lies on disk,
# whereas an unpinned torch would pull several GB of CUDA packages.
TORCH := torch==2.13.0

.PHONY: demo test lint setup setup-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev,bench,quant]"
	touch $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

demo: setup
	$(BIN)/vtc demo

test: setup-dev
	$(BIN)/ruff check vtc tests benchmarks
	$(BIN)/python -m pytest -q -n 2 --durations=15

lint: setup-dev
	$(BIN)/ruff check vtc tests benchmarks
	$(BIN)/ruff format --check vtc tests benchmarks

clean:
	rm -rf $(VENV) runs
