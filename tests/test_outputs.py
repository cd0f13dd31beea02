"""What a run leaves behind for people: video, plots, the model card."""

import gymnasium as gym
import numpy as np
from PIL import Image

from ppokit import PPO
from ppokit.cli import main
from ppokit.gym.envs.video import record_episode
from ppokit.plots import DPI, FIGSIZE, plot_runs


def test_video_has_one_frame_per_observation(tmp_path):
    agent = PPO("CartPole-v1", {"n_envs": 2, "n_steps": 16, "minibatch_size": 16, "total_steps": 32}, verbose=False, progress_bar=False)
    path = tmp_path / "episode.mp4"
    frames = record_episode(agent, path, deterministic=True, seed=5)
    # the same episode without rendering: its length decides the frame count (start frame + one per step)
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=5)
    length, done = 0, False
    while not done:
        obs, _, terminated, truncated, _ = env.step(agent.predict(obs, deterministic=True))
        length, done = length + 1, terminated or truncated
    assert frames == length + 1
    assert path.stat().st_size > 1000
    import imageio.v2 as imageio

    reader = imageio.get_reader(path)
    assert reader.count_frames() == frames
    assert reader.get_meta_data()["size"] == (600, 400)


def _train_cli(run, seed):
    assert main(["train", "CartPole-v1", "--run-dir", str(run), "--seed", str(seed), "--no-progress", "--quiet", "total_steps=2048", "eval_episodes=2"]) == 0


def test_plot_groups_runs_into_a_png_of_the_expected_size(tmp_path):
    runs = [tmp_path / f"seed{s}" for s in (0, 1)]
    for seed, run in enumerate(runs):
        _train_cli(run, seed)
    out = plot_runs(runs, tmp_path / "curves.png")
    with Image.open(out) as image:
        image.verify()
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.size == (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))
        pixels = np.asarray(image.convert("RGB"))
    assert (pixels < 250).any()  # something was drawn
    assert main(["plot", str(runs[0]), str(runs[1]), "-o", str(tmp_path / "cli.png")]) == 0
    assert (tmp_path / "cli.png").stat().st_size > 0


def test_train_writes_plot_and_model_card(tmp_path):
    run = tmp_path / "run"
    _train_cli(run, 0)
    with Image.open(run / "curves.png") as image:
        assert image.size == (800, 500)
    card = (run / "README.md").read_text()
    assert "# PPO on CartPole-v1" in card
    assert "over 2 deterministic episodes" in card
    assert "![episodic return during training](curves.png)" in card
    assert "| `n_steps` | `32` |" in card and "| `gamma` | `0.98` |" in card


def test_eval_with_video_writes_mp4(tmp_path, capsys):
    run = tmp_path / "run"
    _train_cli(run, 0)
    assert main(["eval", str(run), "--episodes", "2", "--deterministic", "--video"]) == 0
    assert "video of one episode" in capsys.readouterr().out
    assert (run / "video.mp4").stat().st_size > 1000


def test_python_api_run_ends_with_plot_and_model_card(tmp_path):
    agent = PPO("CartPole-v1", {"n_envs": 2, "n_steps": 32, "minibatch_size": 32, "total_steps": 1024}, run_dir=tmp_path, verbose=False, progress_bar=False)
    agent.learn()
    with Image.open(tmp_path / "curves.png") as image:
        assert image.size == (800, 500)
    assert "# PPO on CartPole-v1" in (tmp_path / "README.md").read_text()
