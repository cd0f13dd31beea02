"""Does it solve? Presets must reach published-level returns within their step budgets."""

import gymnasium as gym
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



def _frozen_lake_success_probability(agent, horizon: int = 100) -> float:
    """Exact chance that the greedy policy reaches FrozenLake's goal within its 100-step limit, from the
    env's transition table: a deterministic measure, unlike a sampled success rate."""
    transitions = gym.make("FrozenLake-v1").unwrapped.P
    policy = [int(agent.predict(np.array([state]), deterministic=True)[0]) for state in range(len(transitions))]
    value = [0.0] * len(transitions)
    for _ in range(horizon):
        value = [sum(p * (reward + (0.0 if done else value[nxt])) for p, nxt, reward, done in transitions[s][policy[s]]) for s in range(len(transitions))]
    return value[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_frozen_lake_preset_reaches_a_near_optimal_policy_in_100k_steps(seed):
    """Discrete observations (one-hot), sparse reward, slippery moves. The best stationary policy reaches
    the goal with probability 0.740 within the time limit."""
    agent = PPO("FrozenLake-v1", {"total_steps": 100_000, "seed": seed}, verbose=False, progress_bar=False)
    agent.learn()
    assert _frozen_lake_success_probability(agent) >= 0.70


@pytest.mark.parametrize("seed", [0, 1])
def test_cliff_walking_preset_walks_to_the_goal_in_100k_steps(seed):
    """-1 a step, -100 and back to the start at the cliff, no time limit of its own (the preset ends episodes at
    100 steps). The shortest path along the cliff scores -13, the path one row above it -17; a policy that never
    reaches the goal scores -100 or less."""
    assert _train_and_evaluate("CliffWalking-v1", seed) >= -17


def test_taxi_preset_delivers_passengers_for_two_of_three_seeds():
    """500 discrete states, -1 a step, -10 for a wrong pickup or drop-off, +20 for a delivery, 200 steps at most;
    trained and evaluated under the action mask Taxi's info gives. The optimal policy averages about 8, a policy
    that never delivers -200 or less."""
    results = [_train_and_evaluate("Taxi-v4", seed) for seed in (0, 1, 2)]
    assert sum(r >= 5 for r in results) >= 2, results
