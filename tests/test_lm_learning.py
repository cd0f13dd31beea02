"""The RLHF pipeline end to end on the built-in sort and reviews tasks (slow: real SFT, reward model and PPO).

Bars, on held-out prompts with responses sampled at temperature 1:
- sort: the SFT policy's mean gold reward is about 0.78 (imperfect demonstrations); PPO against the
  learned reward model lifts it by at least 0.08 and to at least 0.85 (runs over seeds 0-3 reached
  0.90-0.95), with KL to the SFT policy under 2 nats per response; against the gold rule as a reward
  function, by at least 0.1 and to at least 0.9 (seeds 0-2 reached 0.929, 0.967 and 0.964).
- the reward model ranks held-out pairs clearly above chance (accuracy >= 0.75).
- reviews: gold sentiment from about 0 to at least 0.8, KL under 3 nats.
"""

import json

import pytest

from ppokit.lm.demo import run_demo

pytestmark = pytest.mark.learning


@pytest.fixture(scope="module")
def sort_with_reward_model(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("sort_rm")
    return run_dir, run_demo("sort", run_dir, seed=0, reward="model", progress=False, verbose=False)


def test_reward_model_beats_chance_on_held_out_pairs(sort_with_reward_model):
    _, results = sort_with_reward_model
    assert results["rm_eval_accuracy"] >= 0.75


def test_ppo_against_the_learned_reward_raises_gold_reward_within_a_kl_bound(sort_with_reward_model):
    run_dir, results = sort_with_reward_model
    assert 0.7 <= results["gold_before"] <= 0.88
    assert results["gold_after"] >= max(0.85, results["gold_before"] + 0.08)
    assert results["rm_after"] > results["rm_before"]
    assert results["kl_before"] == pytest.approx(0.0, abs=1e-6)  # before PPO the policy is the reference
    assert 0.0 < results["kl"] < 2.0
    written = json.loads((run_dir / "results.json").read_text())
    assert {"gold_before", "gold_after", "rm_before", "rm_after", "kl"} <= set(written)
    assert (run_dir / "results.png").stat().st_size > 10_000
    assert (run_dir / "ppo" / "policy" / "model.safetensors").is_file()


def test_ppo_with_a_rule_based_reward_function(tmp_path):
    results = run_demo("sort", tmp_path, seed=0, reward="function", progress=False, verbose=False)
    # seeds 0-2 reach 0.929, 0.967, 0.964 from about 0.79 (the bar the issue states: from ~0.7 to >= 0.9)
    assert results["gold_after"] >= max(0.9, results["gold_before"] + 0.1)
    assert 0.0 < results["kl"] < 2.0


def test_reviews_demo_makes_reviews_positive(tmp_path):
    results = run_demo("reviews", tmp_path, seed=0, reward="model", progress=False, verbose=False)
    assert -0.3 <= results["gold_before"] <= 0.3
    assert results["gold_after"] >= 0.8
    assert 0.0 < results["kl"] < 3.0
