"""Writes the format-version-1 models that tests/test_safe_loading.py loads: run once with ppokit at 8822530 (the last
commit before policies were built from parts) on the path, e.g.

    git worktree add /tmp/ppokit-8822530 8822530
    PYTHONPATH=/tmp/ppokit-8822530/src python tests/data/format1/make_models.py

Each model's weights are its initial ones plus noise (so that a fresh network cannot pass for a loaded one); beside
it, expected.json holds observations and what the policy made of them then: deterministic actions, values and, for
the LSTM, the next memory.
"""

import json
from pathlib import Path

import gymnasium as gym
import numpy as np

from ppokit import PPO

HERE = Path(__file__).resolve().parent
IMAGE = gym.spaces.Box(0, 255, (36, 36, 1), dtype=np.uint8)  # the smallest frame the Nature CNN takes
VECTOR = gym.spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)
MODELS = {
    "mlp": (VECTOR, gym.spaces.Discrete(3), {"policy": "mlp", "hidden_sizes": [8]}),
    "cnn": (IMAGE, gym.spaces.Discrete(3), {"policy": "cnn", "normalize_obs": False}),
    "multi_input": (gym.spaces.Dict({"frame": IMAGE, "speed": VECTOR}), gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32),
                    {"policy": "multi_input", "hidden_sizes": [8], "normalize_obs": False}),
    "lstm": (VECTOR, gym.spaces.Discrete(3), {"policy": "lstm", "hidden_sizes": [8], "lstm_hidden_size": 8}),
}


def main() -> None:
    rng = np.random.default_rng(0)
    for name, (observation_space, action_space, config) in MODELS.items():
        agent = PPO(None, config | {"seed": 1}, preset=None, spaces=(observation_space, action_space), verbose=False)
        weights = agent.policy.state_dict()
        agent.policy.load_state_dict({key: (value + rng.normal(0.0, 0.05, value.shape)).astype(value.dtype)
                                      if value.dtype.kind == "f" else value for key, value in weights.items()})
        agent.save(HERE / name)
        observation_space.seed(2)
        raw = [observation_space.sample() for _ in range(5)]
        batch = {key: np.stack([o[key] for o in raw]) for key in raw[0]} if isinstance(observation_space, gym.spaces.Dict) else np.stack(raw)
        obs = agent.policy.prepare(batch)
        state = agent.policy.initial_state(5) if agent.policy.recurrent else None
        actions, next_state = agent.policy.act(obs, np.random.default_rng(0), deterministic=True, state=state)
        expected = {"observations": {k: v.tolist() for k, v in batch.items()} if isinstance(batch, dict) else batch.tolist(),
                    "actions": np.asarray(actions).tolist(), "values": np.asarray(agent.policy.value(obs, state)).tolist(),
                    "next_state": None if next_state is None else np.asarray(next_state).tolist()}
        (HERE / name / "expected.json").write_text(json.dumps(expected))
        print(name, "written")


if __name__ == "__main__":
    main()
