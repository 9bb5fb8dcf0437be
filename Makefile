# Tessel: every target installs what it needs first (a .venv from pyproject.toml).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MODEL  ?= gpt2

.PHONY: setup test sim compile bench sweep clean

setup: $(STAMP)

# Re-installs only when pyproject.toml changes; a no-op otherwise.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

ARCH   ?= systolic-128
TARGET ?= systolic

sim: setup
	$(BIN)/tessel sim --model $(MODEL) --target $(TARGET) --arch $(ARCH) --phase prefill --seq 128
	@echo
	$(BIN)/tessel sim --model $(MODEL) --target $(TARGET) --arch $(ARCH) --phase decode --kv 128

compile: setup
	@mkdir -p out
	$(BIN)/tessel compile --model $(MODEL) --target $(TARGET) --arch $(ARCH) -o $(or $(OUT),out/$(MODEL).tbin)

bench: setup
	$(BIN)/python -m tessel.bench

sweep: setup
	@echo "make sweep: no sweep runner yet (arrives with the sweeps issue)"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
