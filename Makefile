# Two entry points for a fresh machine: `make demo` (set up, then run the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned and installed first: on a CPU-only machine this takes the CPU wheel that lies on disk,
# whereas an unpinned torch would pull several GB of CUDA packages.
TORCH := torch==2.13.0
# Exact versions of every dependency that the test suite last passed with (`make constraints` refreshes it).
CONSTRAINTS := constraints.txt

.PHONY: demo test compare lint bench results setup setup-dev constraints clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) $(TORCH)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e ".[fast]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml $(CONSTRAINTS)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e ".[fast,dev,bench,quant]"
	touch $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

demo: setup
	$(BIN)/vtc demo

# Issue #15's comparison: 9 methods adapted from the shipped base at 1/4 and 1/8, 3 seeds (within 30 minutes).
compare: setup
	$(BIN)/vtc compare --out runs/compare_quick
	$(call keep_comparison,runs/compare_quick,compare_quick)

test: setup-dev
	$(BIN)/ruff check vtc tests benchmarks tools
	$(BIN)/python -m pytest -q -n 2 --durations=15

# Every measured figure of the README, on this machine: `bench` the speed tables (about an hour), `results` those and
# the comparisons (hours). Each JSON is written beside its place and moved there once complete.
RESULTS := docs/results
COMPARE_RUN := runs/compare_results
SHAPE_PREFILL := --frames 64 --threads 2 --repeats 3 --compressors mambamia stac tome avgpool2d --fractions 0.25 0.125 --json
into = > $(RESULTS)/$(1).tmp && mv $(RESULTS)/$(1).tmp $(RESULTS)/$(1)
# A comparison's tables and plot, from its run folder $(1) to $(RESULTS)/$(2).
keep_comparison = mkdir -p $(RESULTS)/$(2) && cp $(1)/compare.json $(1)/compare.md $(1)/accuracy_vs_tokens.png $(RESULTS)/$(2)/
bench: setup-dev
	$(BIN)/vtc bench scan --json $(call into,bench_scan.json)
	$(BIN)/vtc bench prefill --threads 2 --repeats 1 --budget 1600 --json $(call into,bench_prefill.json)
	$(BIN)/vtc bench prefill --shape llava-onevision-0.5b --layers-measured 2 $(SHAPE_PREFILL) $(call into,bench_prefill_llava_onevision_0.5b.json)
	$(BIN)/vtc bench prefill --shape qwen2.5-vl-3b --layers-measured 1 $(SHAPE_PREFILL) $(call into,bench_prefill_qwen2.5_vl_3b.json)
	$(BIN)/vtc bench scaling --threads 2 --out $(RESULTS)/bench_scaling.png --json $(call into,bench_scaling.json)
	$(BIN)/vtc bench streaming --threads 2 --json $(call into,bench_streaming.json)

results: bench
	$(MAKE) compare
	$(BIN)/vtc compare --preset patch --out runs/compare_patch
	$(call keep_comparison,runs/compare_patch,compare_patch)
	$(BIN)/vtc compare --preset long --out runs/compare_long
	$(call keep_comparison,runs/compare_long,compare_long)
	$(BIN)/vtc compare --preset needle --out runs/compare_needle
	$(call keep_comparison,runs/compare_needle,compare_needle)
	$(BIN)/vtc compare --preset scratch --budgets 0.25 0.125 0.03125 --out $(COMPARE_RUN)
	$(call keep_comparison,$(COMPARE_RUN),compare)
	$(BIN)/python benchmarks/stac_target_slot.py $(COMPARE_RUN) > $(RESULTS)/compare/stac_target_slot.jsonl
	$(BIN)/vtc demo --out runs/demo
	mkdir -p $(RESULTS)/demo && cp runs/demo/compare.json runs/demo/compare.md runs/demo/accuracy_vs_tokens.png runs/demo/timeline.png $(RESULTS)/demo/

# Rewrite the pins of constraints.txt from what the venv holds now (its leading comment lines are kept).
constraints: $(BIN)/python
	{ grep '^#' $(CONSTRAINTS) || true; \
	  $(BIN)/pip freeze --exclude-editable --exclude vtc | sed -E 's/^([^=]+==[^+]+)\+.*$$/\1/'; } > $(CONSTRAINTS).tmp
	mv $(CONSTRAINTS).tmp $(CONSTRAINTS)

lint: setup-dev
	$(BIN)/ruff check vtc tests benchmarks tools
	$(BIN)/ruff format --check vtc tests benchmarks tools

clean:
	rm -rf $(VENV) runs
