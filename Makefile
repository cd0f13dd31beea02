# Every target creates .venv on first use; torch is pinned to the local CPU build by constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install train lm-demo test bench bench-lm clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(BIN)/ppokit train CartPole-v1

lm-demo: $(STAMP)
	$(BIN)/ppokit lm demo sort

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --durations=15

bench: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[bench]"
	$(BIN)/python benchmarks/bench_sb3.py
	$(BIN)/python benchmarks/bench_scaling.py

# trl 1.12.0 (the last trl with PPO) gets a venv of its own, so its pins never touch ppokit's.
bench-lm: $(STAMP)
	test -x .venv-trl/bin/python || ($(PYTHON) -m venv .venv-trl && .venv-trl/bin/pip install --quiet -c constraints.txt "trl==1.12.0")
	$(BIN)/python benchmarks/bench_trl.py

clean:
	rm -rf $(VENV) .venv-trl runs .pytest_cache
