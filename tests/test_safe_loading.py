"""Loading refuses anything that is not a ppokit model or checkpoint, and never runs code from a file."""

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from envs import FixedLengthWalkEnv

from ppokit import PPO
from ppokit.checkpoint import list_checkpoints
from ppokit.errors import CheckpointError


class _Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def run_dir(tmp_path):
    config = {"n_envs": 2, "n_steps": 16, "minibatch_size": 16, "total_steps": 64, "tensorboard": False}
    agent = PPO(lambda: FixedLengthWalkEnv(16), config, run_dir=tmp_path / "run", verbose=False, progress_bar=False)
    agent.learn()
    agent.save(tmp_path / "run")
    return tmp_path / "run"


def _checkpoint(run_dir):
    return list_checkpoints(run_dir)[-1]


@pytest.mark.parametrize("kind", ["model", "checkpoint"])
def test_pickle_payload_is_refused_and_never_executed(run_dir, tmp_path, kind):
    marker = tmp_path / "code-ran"
    folder = run_dir if kind == "model" else _checkpoint(run_dir)
    weights = folder / ("model.safetensors" if kind == "model" else "checkpoint.safetensors")
    weights.write_bytes(pickle.dumps(_Payload(marker)))
    if kind == "model":
        shutil.rmtree(run_dir / "checkpoints")  # so the run folder loads as a model folder
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        PPO.load(folder, env=lambda: FixedLengthWalkEnv(16))
    assert not marker.exists()
    # the metadata file holding a pickle is refused as well
    (folder / ("model.json" if kind == "model" else "checkpoint.json")).write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match="not valid JSON"):
        PPO.load(folder, env=lambda: FixedLengthWalkEnv(16))
    assert not marker.exists()


def test_truncated_checkpoint_is_refused(run_dir):
    weights = _checkpoint(run_dir) / "checkpoint.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        PPO.load(run_dir, env=lambda: FixedLengthWalkEnv(16))


def test_checkpoint_with_wrong_shapes_is_refused(run_dir):
    meta_path = _checkpoint(run_dir) / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["hidden_sizes"] = [8, 8]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"has shape .* expected"):
        PPO.load(run_dir, env=lambda: FixedLengthWalkEnv(16))


def test_newer_format_version_is_refused(run_dir):
    meta_path = _checkpoint(run_dir) / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="format version 99 is newer"):
        PPO.load(run_dir, env=lambda: FixedLengthWalkEnv(16))


def test_file_from_another_program_is_refused(run_dir):
    meta_path = _checkpoint(run_dir) / "checkpoint.json"
    meta_path.write_text(json.dumps({"format": "pt", "version": 1}))
    with pytest.raises(CheckpointError, match="not a ppokit checkpoint"):
        PPO.load(run_dir, env=lambda: FixedLengthWalkEnv(16))


def test_missing_ppokit_version_is_refused(run_dir):
    meta_path = _checkpoint(run_dir) / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    del meta["ppokit_version"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="ppokit version"):
        PPO.load(run_dir, env=lambda: FixedLengthWalkEnv(16))


@pytest.mark.parametrize("kind", ["mlp", "cnn", "multi_input", "lstm"])
def test_models_saved_by_format_version_1_load_and_act_as_they_did(kind):
    """Written by ppokit at 8822530, before networks were built from parts (tests/data/format1/make_models.py)."""
    folder = Path(__file__).parent / "data" / "format1" / kind
    expected = json.loads((folder / "expected.json").read_text())
    agent = PPO.load(folder)
    assert agent.policy_kind == kind
    raw = expected["observations"]
    batch = {key: np.array(value, dtype=agent.observation_space[key].dtype) for key, value in raw.items()} if isinstance(raw, dict) \
        else np.array(raw, dtype=agent.observation_space.dtype)
    obs = agent.policy.prepare(batch)
    state = agent.policy.initial_state(len(expected["actions"])) if agent.policy.recurrent else None
    actions, next_state = agent.policy.act(obs, np.random.default_rng(0), deterministic=True, state=state)
    np.testing.assert_allclose(np.asarray(actions), np.array(expected["actions"]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(agent.policy.value(obs, state)), np.array(expected["values"]), rtol=1e-5, atol=1e-6)
    if expected["next_state"] is not None:
        np.testing.assert_allclose(np.asarray(next_state), np.array(expected["next_state"]), rtol=1e-5, atol=1e-6)
