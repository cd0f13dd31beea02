"""Does it solve? Presets must reach published-level returns within their step budgets."""

import numpy as np
import pytest

from ppokit import PPO
from ppokit.gym.evaluate import evaluate_policy
from ppokit.gym.presets import load_preset

pytestmark = pytest.mark.learning


def _train_and_evaluate(env_id: str, seed: int, **overrides) -> float:
    config = load_preset(env_id)[1] | {"seed": seed} | overrides
    agent = PPO(env_id, config, verbose=False, progress_bar=False)
    agent.learn()
    returns = evaluate_policy(agent, episodes=20, deterministic=True)
    agent.close()
    return float(np.mean(returns))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cartpole_solved_within_preset_budget(seed):
    assert load_preset("CartPole-v1")[1]["total_steps"] <= 100_000
    assert _train_and_evaluate("CartPole-v1", seed) >= 475


def test_pendulum_reaches_minus_250_for_two_of_three_seeds():
    results = [_train_and_evaluate("Pendulum-v1", seed) for seed in (0, 1, 2)]
    assert sum(r >= -250 for r in results) >= 2, results


def test_cartpole_solved_by_the_torch_reference_engine_too():
    assert _train_and_evaluate("CartPole-v1", 0, engine="torch") >= 475
