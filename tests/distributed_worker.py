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

from envs import CrashingEnv, FixedLengthWalkEnv  # noqa: E402

from ppokit import PPO  # noqa: E402
from ppokit.distributed import close_world, current_world  # noqa: E402
from ppokit.gym.agent import build_policy_and_engine  # noqa: E402
from ppokit.gym.config import PPOConfig  # noqa: E402

# one update on a fixed global batch: 64 samples, global minibatches of 16, 3 epochs
GLOBAL_SAMPLES, GLOBAL_MINIBATCH, EPOCHS = 64, 16, 3


def global_batch(observation_size: int = 4, seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "obs": rng.normal(size=(GLOBAL_SAMPLES, observation_size)).astype(np.float32),
        "actions": rng.integers(0, 2, size=GLOBAL_SAMPLES).astype(np.int64),
        "logprobs": np.log(rng.uniform(0.3, 0.7, size=GLOBAL_SAMPLES)).astype(np.float32),
        "values": rng.normal(size=GLOBAL_SAMPLES).astype(np.float32),
        "advantages": rng.normal(size=GLOBAL_SAMPLES).astype(np.float32),
        "returns": rng.normal(size=GLOBAL_SAMPLES).astype(np.float32),
    }


def rank_orders(world_size: int, seed: int = 11) -> list[list[np.ndarray]]:
    """orders[epoch][rank]: each rank's permutation of its own samples (global sample i lives on rank i % world_size)."""
    rng = np.random.default_rng(seed)
    local = GLOBAL_SAMPLES // world_size
    return [[rng.permutation(local) for _ in range(world_size)] for _ in range(EPOCHS)]


def single_process_order(orders_for_epoch: list[np.ndarray]) -> np.ndarray:
    """The one-process permutation whose minibatch m is the union of every rank's minibatch m."""
    world_size = len(orders_for_epoch)
    local_minibatch = GLOBAL_MINIBATCH // world_size
    parts = []
    for start in range(0, GLOBAL_SAMPLES // world_size, local_minibatch):
        for rank, order in enumerate(orders_for_epoch):
            parts.append(order[start : start + local_minibatch] * world_size + rank)  # local index -> global index
    return np.concatenate(parts)


def one_update(engine: str, split_over: int) -> np.ndarray:
    """The weights after one update: by this process's share of the batch (under torchrun), or by one
    process on the whole batch in the order the ``split_over`` ranks would take it."""
    import gymnasium as gym

    world = current_world()
    config = PPOConfig.from_dict({"engine": engine, "n_epochs": EPOCHS, "minibatch_size": GLOBAL_MINIBATCH, "target_kl": None, "max_grad_norm": 0.5})
    spaces = (gym.spaces.Box(-10, 10, (4,), np.float32), gym.spaces.Discrete(2))
    policy, trainer = build_policy_and_engine("mlp", engine, *spaces, config, np.random.SeedSequence(0), world=world)
    batch = global_batch()
    orders = rank_orders(split_over)
    if world.distributed:
        samples = {name: array[world.rank :: world.size] for name, array in batch.items()}
        settings = config.update_settings(minibatch_size=GLOBAL_MINIBATCH // world.size)
        trainer.update(samples, settings, lambda epoch: orders[epoch][world.rank])
    else:
        trainer.update(batch, config.update_settings(), lambda epoch: single_process_order(orders[epoch]))
    return policy.params.flat.copy()


def _crashing_on_rank_1():
    return CrashingEnv(crash_at=60 if os.environ.get("RANK") == "1" else 10**9)


def _walk():
    return FixedLengthWalkEnv(length=16)


def train(out: Path, spec: dict) -> None:
    """Train (or resume) and write this rank's final weights and counters."""
    world = current_world()
    env = {"walk": _walk, "crash": _crashing_on_rank_1}.get(spec["env"], spec["env"])
    if spec.get("hang_rank") == world.rank:
        time.sleep(3600)  # a rank that never reaches the first exchange
    if spec.get("resume"):
        agent = PPO.load(spec["resume"], env=env, run_dir=spec.get("run_dir"), verbose=False, progress_bar=False)
    else:
        agent = PPO(env, spec["config"], run_dir=spec.get("run_dir"), verbose=False, progress_bar=False)
    agent.learn()
    state = agent.policy.state_dict()  # weights and normalizer statistics
    np.save(out / f"weights-rank{world.rank}.npy", np.concatenate([np.asarray(state[name], dtype=np.float64).ravel() for name in sorted(state)]))
    (out / f"counters-rank{world.rank}.json").write_text(json.dumps({"global_step": agent.global_step, "num_updates": agent.num_updates,
                                                                     "world_size": world.size}))


def main() -> None:
    case, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    world = current_world()
    finished = False
    try:
        if case in ("numpy", "torch"):
            weights = one_update(case, world.size)
            np.save(out / f"weights-rank{world.rank}.npy", weights)
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
