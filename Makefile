# Tessel: every target installs what it needs first (a .venv from pyproject.toml).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MODEL  ?= gpt2
# Tests keep compiled bytecode (pytest's rewritten test modules, the project's modules) between
# runs even where the environment sets PYTHONDONTWRITEBYTECODE: every pytest worker otherwise
# compiles all of them again on every run (5.6 s of collection against 3.0 s cached).
PYTEST := PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest

.PHONY: setup rtl-tools test test-fast rtl-test sim sim-target serve compile bench sweep clean

setup: $(STAMP)

# The RTL testbenches need Icarus Verilog; install it with apt-get when it is missing.
rtl-tools:
	@command -v iverilog >/dev/null 2>&1 || { echo "installing Icarus Verilog (apt-get)"; \
	  (apt-get update -qq && apt-get install -y -qq iverilog) >/dev/null || \
	  { echo "error: Icarus Verilog is missing and apt-get could not install it (run as root)"; exit 1; }; }

# Re-installs only when pyproject.toml changes; a no-op otherwise.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# The whole suite: two pytest workers for everything but the RTL testbenches (8.7 min on the
# 2-core machine, against 19 in one process), then the testbenches in one process (about 1 min;
# their Icarus builds share rtl_models/build, one directory per model and parameters).
test: setup rtl-tools
	$(PYTEST) -q -n 2 -m "not rtl"
	$(PYTEST) -q -m rtl

# The fast tier for the edit loop (under 30 s on 2 cores, two pytest workers): everything but
# the end-to-end (`slow`) and RTL (`rtl`) tests, which `make test` runs too.
test-fast: setup
	$(PYTEST) -q -n 2 -m "not slow and not rtl"

# The RTL cross-checks alone; WAVES=1 also writes waveforms.
rtl-test: setup rtl-tools
	$(PYTEST) -q -m rtl

TARGET ?= systolic
# ARCH: a preset or .toml file; left empty, tessel uses the target's default preset.
ARCH_ARG = $(if $(ARCH),--arch $(ARCH))

# Every target side by side (a column each, default presets, GPU ratios against a T4).
# PIM runs one GEMV per prompt token, so its column is in the decode table only.
sim: setup
	$(BIN)/tessel compare --model $(MODEL) --targets systolic,dataflow --phase prefill --seq 128
	@echo
	$(BIN)/tessel compare --model $(MODEL) --targets systolic,pim,dataflow --phase decode --kv 128

# One target's full report: make sim-target TARGET=pim ARCH=aim-32ch
sim-target: setup
	$(BIN)/tessel sim --model $(MODEL) --target $(TARGET) $(ARCH_ARG) --phase decode --kv 128

# The shipped trace through Sarathi-Serve's scheduler on one target (or TARGET=gpu ARCH=gpu-...):
# make serve MODEL=llama-3.2-1b TARGET=dataflow [OUT=DIR]. Cache lengths are bucketed to 64
# tokens and a simulated target prices steps by their parts; the run reports the error of both
# on 4 of its steps simulated whole at exact lengths (docs/serving.md).
serve: setup
	$(BIN)/tessel serve --model $(MODEL) --target $(TARGET) $(ARCH_ARG) \
		--trace examples/traces/synthetic-200.csv --kv-bucket 64 $(if $(OUT),--out $(OUT))

compile: setup
	@mkdir -p out
	$(BIN)/tessel compile --model $(MODEL) --target $(TARGET) $(ARCH_ARG) -o $(or $(OUT),out/$(MODEL).tbin)

bench: setup
	$(BIN)/python -m tessel.bench

# make sweep SPEC=sweeps/<file>.toml [WORKERS=N | DASK=tcp://host:port | DASK=local:N] [OUT=DIR]
sweep: setup
	@test -n "$(SPEC)" || { echo "usage: make sweep SPEC=sweeps/<file>.toml [WORKERS=N] [DASK=ADDRESS|local:N] [OUT=DIR]"; exit 2; }
	$(BIN)/tessel sweep $(SPEC) $(if $(WORKERS),--workers $(WORKERS)) $(if $(DASK),--dask $(DASK)) $(if $(OUT),--out $(OUT))

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
