"""What each rank runs in tests/test_distributed.py (launched by torch.distributed.run; also callable in-process as a world of one).

    python -m torch.distributed.run --nproc_per_node=2 tests/distributed_worker.py CASE OUT_DIR [JSON]
"""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from envs import CrashingEnv, DictWalkEnv, FixedLengthWalkEnv  # noqa: E402

from ppokit import PPO  # noqa: E402
from ppokit.distributed import close_world, current_world  # noqa: E402
from ppokit.gym.build import build_policy_and_engine  # noqa: E402
from ppokit.gym.config import PPOConfig  # noqa: E402
from ppokit.gym.rollout import sequence_order  # noqa: E402

# one update on a fixed global batch: 64 samples, global minibatches of 16, 3 epochs
GLOBAL_SAMPLES, GLOBAL_MINIBATCH, EPOCHS = 64, 16, 3
# the masked cases: 4 actions, some invalid; the recurrent case: the 64 samples are 8 env copies x 8 steps
NUM_ACTIONS, SEQUENCE_STEPS, SEQUENCE_ENVS, SEQUENCE_MINIBATCH = 4, 8, 8, 32
# case -> (policy, engine, with action masks and sample weights)
UPDATE_CASES = {"numpy": ("mlp", "numpy", False), "torch": ("mlp", "torch", False), "masked-numpy": ("mlp", "numpy", True),
                "masked-torch": ("mlp", "torch", True), "lstm": ("lstm", "torch", True)}


def global_batch(observation_size: int = 4, seed: int = 7, masked: bool = False, state_size: int = 0) -> dict[str, np.ndarray]:
    """Time-major samples (index t * SEQUENCE_ENVS + env, for the recurrent case). ``masked``: each sample has
    an action mask (its action valid) and a weight, 0 for some samples (a NEXT_STEP env's reset step)."""
    rng = np.random.default_rng(seed)
    num_actions = NUM_ACTIONS if masked else 2
    batch = {
        "obs": rng.normal(size=(GLOBAL_SAMPLES, observation_size)).astype(np.float32),
        "actions": rng.integers(0, num_actions, size=GLOBAL_SAMPLES).astype(np.int64),
        "logprobs": np.log(rng.uniform(0.2, 0.5 if masked else 0.7, size=GLOBAL_SAMPLES)).astype(np.float32),
        "values": rng.normal(size=GLOBAL_SAMPLES).astype(np.float32),
        "advantages": rng.normal(size=GLOBAL_SAMPLES).astype(np.float32),
        "returns": rng.normal(size=GLOBAL_SAMPLES).astype(np.float32),
    }
    if masked:
        masks = rng.uniform(size=(GLOBAL_SAMPLES, num_actions)) < 0.6
        masks[np.arange(GLOBAL_SAMPLES), batch["actions"]] = True
        batch["action_masks"] = masks
        batch["mask"] = (rng.uniform(size=GLOBAL_SAMPLES) > 0.15).astype(np.float32)
    if state_size:
        batch["states"] = rng.normal(0, 0.5, size=(GLOBAL_SAMPLES, state_size)).astype(np.float32)
        starts = rng.uniform(size=GLOBAL_SAMPLES) < 0.2
        starts[:SEQUENCE_ENVS] = True  # step 0 of every copy
        batch["episode_starts"] = starts.astype(np.float32)
    return batch


def rank_rows(rank: int, world_size: int, recurrent: bool) -> np.ndarray:
    """The global sample indices rank ``rank`` holds, in its local order: every world_size-th sample, or
    (recurrent) its env copies' time-major steps, as a rank's collector lays out its own envs."""
    if not recurrent:
        return np.arange(rank, GLOBAL_SAMPLES, world_size)
    envs = SEQUENCE_ENVS // world_size
    return (np.arange(SEQUENCE_STEPS)[:, None] * SEQUENCE_ENVS + rank * envs + np.arange(envs)[None, :]).reshape(-1)


def rank_orders(world_size: int, recurrent: bool = False, seed: int = 11) -> list[list[np.ndarray]]:
    """orders[epoch][rank]: each rank's order of its own samples (recurrent: whole env sequences)."""
    rng = np.random.default_rng(seed)
    if recurrent:
        return [[sequence_order(rng, SEQUENCE_STEPS, SEQUENCE_ENVS // world_size) for _ in range(world_size)] for _ in range(EPOCHS)]
    local = GLOBAL_SAMPLES // world_size
    return [[rng.permutation(local) for _ in range(world_size)] for _ in range(EPOCHS)]


def single_process_order(orders_for_epoch: list[np.ndarray], local_minibatch: int, recurrent: bool = False) -> np.ndarray:
    """The one-process permutation whose minibatch m is the union of every rank's minibatch m."""
    world_size = len(orders_for_epoch)
    parts = []
    for start in range(0, GLOBAL_SAMPLES // world_size, local_minibatch):
        for rank, order in enumerate(orders_for_epoch):
            parts.append(rank_rows(rank, world_size, recurrent)[order[start : start + local_minibatch]])  # local index -> global index
    return np.concatenate(parts)


def one_update(case: str, split_over: int, update: bool = True) -> np.ndarray:
    """The weights after one update: by this process's share of the batch (under torchrun), or by one
    process on the whole batch in the order the ``split_over`` ranks would take it (``update=False``: the initial weights)."""
    import gymnasium as gym

    world = current_world()
    kind, engine, masked = UPDATE_CASES[case]
    recurrent = kind == "lstm"
    minibatch = SEQUENCE_MINIBATCH if recurrent else GLOBAL_MINIBATCH
    config = PPOConfig.from_dict({"engine": engine, "policy": kind, "n_epochs": EPOCHS, "minibatch_size": minibatch, "target_kl": None,
                                  "max_grad_norm": 0.5, "lstm_hidden_size": 8, "n_steps": SEQUENCE_STEPS, "n_envs": SEQUENCE_ENVS})
    spaces = (gym.spaces.Box(-10, 10, (4,), np.float32), gym.spaces.Discrete(NUM_ACTIONS if masked else 2))
    policy, trainer = build_policy_and_engine(kind, engine, *spaces, config, np.random.SeedSequence(0), world=world)
    batch = global_batch(masked=masked, state_size=policy.state_size if recurrent else 0)
    orders = rank_orders(split_over, recurrent)
    local_minibatch = minibatch // split_over
    if not update:
        return flat_weights(policy)
    if world.distributed:
        rows = rank_rows(world.rank, world.size, recurrent)
        samples = {name: array[rows] for name, array in batch.items()}
        trainer.update(samples, config.update_settings(minibatch_size=local_minibatch), lambda epoch: orders[epoch][world.rank])
    else:
        trainer.update(batch, config.update_settings(), lambda epoch: single_process_order(orders[epoch], local_minibatch, recurrent))
    return flat_weights(policy)


def lm_group_update(spec: dict, update: bool = True) -> np.ndarray:
    """One language-model update of a group estimator on a fixed batch of 8 responses (4 prompts x 2 samples, unequal
    lengths, some without EOS), each rank on its whole groups; the policy's weights after it, flattened."""
    import random

    import torch

    from ppokit.lm.config import LMPPOConfig
    from ppokit.lm.parallel import rank_share
    from ppokit.lm.ppo import LMPPOTrainer
    from ppokit.lm.rollout import Responses

    world = current_world()
    config = LMPPOConfig.from_dict(spec["config"])
    trainer = LMPPOTrainer(config, reward=lambda prompt, response: 0.0, prompts=spec["prompts"], progress=False, verbose=False)
    rng, tokenizer = random.Random(3), trainer.tokenizer
    digits = [tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)]
    indices = [i for i in range(4) for _ in range(2)]
    responses = [[rng.choice(digits) for _ in range(rng.randint(1, 6))] + ([tokenizer.eos_token_id] if row % 3 else []) for row in range(8)]
    batch = Responses(indices, [trainer.prompts[i] for i in indices], [trainer.prompt_ids[i] for i in indices], responses,
                      [tokenizer.decode(r) for r in responses], torch.tensor([bool(row % 3) for row in range(8)]),
                      torch.tensor([0.1 * rng.randint(0, 10) for _ in range(8)]))
    rollout = trainer._padded(batch.take(rank_share(list(range(8)), world)))
    layout = trainer.plan_first_epoch(len(rollout))
    with torch.no_grad():
        trainer.score(rollout, layout)
        trainer.advantages(rollout)
    if update:
        trainer.update(rollout)
    return np.concatenate([p.detach().double().numpy().ravel() for _, p in sorted(trainer.policy.named_parameters())])


def flat_weights(policy) -> np.ndarray:
    """Every array of the policy's state (weights, log-std, normalizer statistics), flattened in name order."""
    state = policy.state_dict()
    return np.concatenate([np.asarray(state[name], dtype=np.float64).ravel() for name in sorted(state)])


def _crashing_on_rank_1():
    return CrashingEnv(crash_at=60 if os.environ.get("RANK") == "1" else 10**9)


def _walk():
    return FixedLengthWalkEnv(length=16)


def train(out: Path, spec: dict) -> None:
    """Train (or resume) and write this rank's final weights and counters."""
    world = current_world()
    env = {"walk": _walk, "dict-walk": DictWalkEnv, "crash": _crashing_on_rank_1}.get(spec["env"], spec["env"])
    if spec.get("hang_rank") == world.rank:
        time.sleep(3600)  # a rank that never reaches the first exchange
    if spec.get("resume"):
        agent = PPO.load(spec["resume"], env=env, run_dir=spec.get("run_dir"), verbose=False, progress_bar=False)
    else:
        agent = PPO(env, spec["config"], run_dir=spec.get("run_dir"), verbose=False, progress_bar=False)
    agent.learn()
    np.save(out / f"weights-rank{world.rank}.npy", flat_weights(agent.policy))  # weights and normalizer statistics
    (out / f"counters-rank{world.rank}.json").write_text(json.dumps({"global_step": agent.global_step, "num_updates": agent.num_updates,
                                                                     "world_size": world.size}))


def main() -> None:
    case, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    world = current_world()
    finished = False
    try:
        if case in UPDATE_CASES:
            weights = one_update(case, world.size)
            np.save(out / f"weights-rank{world.rank}.npy", weights)
        elif case == "lm-group-update":
            np.save(out / f"weights-rank{world.rank}.npy", lm_group_update(json.loads(sys.argv[3])))
        elif case == "train":
            with world.failing():
                train(out, json.loads(sys.argv[3]))
        else:
            raise SystemExit(f"unknown case {case!r}")
        finished = True
    finally:
        close_world(finished)


if __name__ == "__main__":
    main()
