"""`ppokit train`, `ppokit eval`, `ppokit plot`, `ppokit presets`, `ppokit envs`: the Gymnasium front end's commands."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import yaml

from ppokit.cli_support import add_keys_help, quiet, usage_error
from ppokit.config import update_run_config, write_run_config


def ppo_config_class() -> type:
    from ppokit.gym.config import PPOConfig

    return PPOConfig


def add_gym_parsers(sub) -> None:
    train = sub.add_parser(
        "train",
        help="train a policy on a Gymnasium environment",
        description="Train PPO on ENV_ID. Config precedence: defaults < preset < --config FILE < key=value overrides < flags.",
        epilog="examples: ppokit train CartPole-v1 --seed 1 learning_rate=1e-3 n_envs=16;  ppokit train --resume runs/CartPole-v1-seed1-...",
        add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_keys_help(train, ppo_config_class)
    train.add_argument("env_id", metavar="ENV_ID", nargs="?", help="a registered Gymnasium id, e.g. CartPole-v1 (or module:Id)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its newest checkpoint (its config, schedules and logs)")
    train.add_argument("--preset", metavar="NAME", help="hyperparameter preset (default: the preset named ENV_ID if there is one; see `ppokit presets`)")
    train.add_argument("--no-preset", action="store_true", help="start from ppokit's defaults even if ENV_ID has a preset")
    train.add_argument("--config", metavar="FILE", help="YAML file of config keys, applied over the preset")
    train.add_argument("--seed", type=int, help="random seed (overrides the config)")
    train.add_argument("--total-steps", type=int, metavar="N",
                       help="environment steps to train for (overrides the config); with --resume, the run's new total, to train a run further")
    train.add_argument("--run-dir", metavar="DIR", help="where logs and the model go (default: runs/ENV_ID-seedN-TIMESTAMP)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument("--quiet", action="store_true", help="no per-update console summary")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, values read as YAML")
    train.set_defaults(handler=_train)

    evaluate = sub.add_parser("eval", help="evaluate a trained model",
                              description="Run a saved model for N episodes; prints mean and std and writes them to a file of their own in RUN_DIR, "
                                          "named by the settings (eval-N-deterministic-seedS.json); the run's eval.json from training is left as it is.")
    evaluate.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (or any folder holding model.safetensors and model.json)")
    evaluate.add_argument("--episodes", type=int, default=20, metavar="N", help="episodes to run (default 20)")
    evaluate.add_argument("--deterministic", action="store_true", help="take the most likely action instead of sampling")
    evaluate.add_argument("--seed", type=int, help="seed of the evaluation envs (default: the run's seed + 10000)")
    evaluate.add_argument("--video", action="store_true", help="also record one episode to RUN_DIR/video.mp4 (rgb_array rendering)")
    evaluate.add_argument("overrides", nargs="*", metavar="key=SPEC",
                          help="module=package.module:Factory and/or features_extractor=package.module:Class: the code a model trained "
                               "with your own network needs (a saved model never imports code by itself)")
    evaluate.set_defaults(handler=_eval)

    plot = sub.add_parser("plot", help="plot learning curves of runs",
                          description="Episodic return against steps; runs of the same env (and preset) are drawn as mean and min-max band over seeds.")
    plot.add_argument("run_dirs", metavar="RUN_DIR", nargs="+", help="run directories (each with progress.csv)")
    plot.add_argument("-o", "--output", metavar="FILE", default="curves.png", help="PNG to write (default curves.png)")
    plot.add_argument("--title", help="plot title")
    plot.set_defaults(handler=_plot)

    presets = sub.add_parser("presets", help="list the shipped hyperparameter presets", description="List the shipped presets with the env each was tuned for.")
    presets.add_argument("name", nargs="?", help="show one preset's values")
    presets.set_defaults(handler=_presets)

    envs = sub.add_parser("envs", help="list registered Gymnasium environment ids", description="List the environment ids registered with Gymnasium.")
    envs.add_argument("filter", nargs="?", default="", help="only ids containing this text")
    envs.set_defaults(handler=_envs)


def resolve_train_config(env_id: str, preset: str | None, no_preset: bool, config_file: str | None, overrides: list[str], seed: int | None,
                         total_steps: int | None):
    """Merge defaults < preset < config file < overrides < flags into one validated PPOConfig."""
    from ppokit.config import load_yaml, parse_overrides
    from ppokit.gym.presets import AUTO_PRESET, resolve_config, resolve_preset_name

    preset_name = resolve_preset_name(env_id, preset if preset is not None else (None if no_preset else AUTO_PRESET))
    values: dict = {}
    if config_file is not None:
        values.update(load_yaml(config_file))
    values.update(parse_overrides(overrides))
    if seed is not None:
        values["seed"] = seed
    if total_steps is not None:
        values["total_steps"] = total_steps
    return resolve_config(env_id, values, preset_name), preset_name


def _train(args) -> int:
    from ppokit.distributed import current_world
    from ppokit.gym.agent import PPO
    from ppokit.gym.envs.make import check_env_id

    world = current_world()  # data parallel under torchrun: rank 0 alone prints and writes
    say = print if world.is_main else quiet
    progress = False if args.no_progress else None
    if args.resume:
        flags = [("ENV_ID", args.env_id), ("--preset", args.preset), ("--no-preset", args.no_preset), ("--config", args.config),
                 ("--seed", args.seed), ("--run-dir", args.run_dir), ("key=value", args.overrides)]
        given = [flag for flag, value in flags if value]
        if given:
            raise usage_error(f"--resume continues a run with its saved config (only --total-steps, the new total, may be given); "
                               f"do not combine it with {', '.join(given)}")
        run_dir = Path(args.resume)
        agent = PPO.load(run_dir, run_dir=run_dir, progress_bar=progress, verbose=not args.quiet)
        if args.total_steps is not None:
            agent.extend_to(args.total_steps)
            _record_new_total(run_dir, args.total_steps, world)
        elif agent.finished:  # a scheduler re-issuing the command after the run ended: leave the run as it is
            say(f"ppokit: {run_dir} has finished (update {agent.num_updates}, step {agent.global_step:,}); nothing to do. "
                f"To train further: ppokit train --resume {run_dir} --total-steps N (the new total, more than {agent.global_step:,})")
            agent.close()
            return 0
        say(f"ppokit: resuming {run_dir} at update {agent.num_updates} (step {agent.global_step:,}) from {agent.resumed_from}")
    else:
        if not args.env_id:
            raise usage_error("ppokit train needs ENV_ID (or --resume RUN_DIR)")
        check_env_id(args.env_id)
        config, preset_name = resolve_train_config(args.env_id, args.preset, args.no_preset, args.config, args.overrides, args.seed, args.total_steps)
        run_name = f"{args.env_id.replace(':', '_').replace('/', '_')}-seed{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = Path(world.broadcast_json(str(Path(args.run_dir) if args.run_dir else Path("runs") / run_name)))  # rank 0's clock names it
        if world.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_run_config(run_dir, {"env_id": args.env_id, "preset": preset_name, **config.to_dict()})
        processes = f", data parallel over {world.size} processes" if world.distributed else ""
        preset_note = preset_name or "none, defaults"
        say(f"ppokit: training PPO on {args.env_id} (preset: {preset_note}) for {config.total_steps:,} steps, seed {config.seed}{processes}")
        say(f"ppokit: run directory {run_dir}")
        agent = PPO(args.env_id, config, run_dir=run_dir, progress_bar=progress, verbose=not args.quiet)

    started = time.perf_counter()
    try:
        agent.learn()
    finally:
        agent.save(run_dir)
        agent.close()
    if agent.interrupted:
        if world.is_main:
            print(f"ppokit: interrupted by {agent.interrupted}; checkpoint written. Continue with: ppokit train --resume {run_dir}", file=sys.stderr)
        return 130
    if not world.is_main:
        return 0
    seconds = time.perf_counter() - started
    result = _finish_run(agent, run_dir)
    print(f"ppokit: trained {agent.global_step:,} steps in {seconds:.1f} s")
    print(f"ppokit: evaluation over {result['episodes']} deterministic episodes: mean return {result['mean_return']:.2f} +- {result['std_return']:.2f}")
    print(f"ppokit: run saved to {run_dir} (model, checkpoints, progress.csv, TensorBoard events, eval.json, curves.png, README.md)")
    return 0


def _record_new_total(run_dir: Path, total_steps: int, world) -> None:
    """The run dir's config.yaml says what the run trains for: a run trained further gets its new total."""
    if world.is_main:
        update_run_config(run_dir, total_steps=total_steps)


def _finish_run(agent, run_dir: Path) -> dict:
    """Evaluate, write eval.json and add the result to the model card (learn() wrote the plot and card)."""
    from ppokit.gym.evaluate import evaluate_policy
    from ppokit.model_card import write_model_card

    returns = evaluate_policy(agent, episodes=agent.config.eval_episodes, deterministic=True)
    result = _write_eval(run_dir / "eval.json", returns, deterministic=True)
    write_model_card(run_dir)
    return result


def _eval(args) -> int:
    from ppokit.gym.agent import PPO
    from ppokit.gym.evaluate import EVAL_SEED_OFFSET, evaluate_policy

    if args.episodes < 1:
        raise usage_error(f"--episodes must be at least 1, got {args.episodes}")
    imports = _eval_imports(args.overrides)
    agent = PPO.load(args.run_dir, progress_bar=False, **imports)
    if agent.env_id is None:
        raise usage_error(f"{args.run_dir} was trained on an env factory, not a registered id; "
                           "evaluate it from Python with ppokit.gym.evaluate.evaluate_policy")
    seed = args.seed if args.seed is not None else agent.config.seed + EVAL_SEED_OFFSET
    returns = evaluate_policy(agent, episodes=args.episodes, deterministic=args.deterministic, seed=seed)
    mode = "deterministic" if args.deterministic else "stochastic"
    # the run's eval.json is the record the model card quotes: a later evaluation never replaces it
    path = Path(args.run_dir) / f"eval-{args.episodes}-{mode}-seed{seed}.json"
    result = _write_eval(path, returns, deterministic=args.deterministic)
    print(f"{agent.env_id}: mean return {result['mean_return']:.2f} +- {result['std_return']:.2f} over {len(returns)} {mode} episodes (seed {seed}); "
          f"written to {path}")
    if args.video:
        from ppokit.gym.envs.video import record_episode

        path = Path(args.run_dir) / "video.mp4"
        frames = record_episode(agent, path, deterministic=args.deterministic, seed=args.seed)
        print(f"video of one episode ({frames} frames): {path}")
    return 0


def _eval_imports(items: list[str]) -> dict[str, str]:
    imports = {}
    for item in items:
        key, sep, spec = item.partition("=")
        if not sep or key not in ("module", "features_extractor") or ":" not in spec:
            raise usage_error(f"eval takes module=package.module:Factory and features_extractor=package.module:Class, got {item!r}")
        imports[key] = spec
    return imports


def _plot(args) -> int:
    from ppokit.plots import plot_runs

    path = plot_runs([Path(d) for d in args.run_dirs], Path(args.output), title=args.title)
    print(f"plot written to {path}")
    return 0


def _write_eval(path: Path, returns: list[float], deterministic: bool) -> dict:
    result = {
        "episodes": len(returns),
        "deterministic": deterministic,
        "mean_return": statistics.fmean(returns),
        "std_return": statistics.pstdev(returns) if len(returns) > 1 else 0.0,
        "returns": returns,
    }
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _presets(args) -> int:
    from ppokit.gym.presets import list_presets, load_preset

    if args.name:
        env_id, values = load_preset(args.name)
        print(yaml.safe_dump({"env_id": env_id, **values}, sort_keys=False), end="")
        return 0
    presets = list_presets()
    name_width = max(len(name) for name in presets)
    env_width = max(len(str(data.get("env_id", "?"))) for data in presets.values())
    for name, data in presets.items():
        print(f"{name:{name_width}s}  env {str(data.get('env_id', '?')):{env_width}s} {data.get('total_steps', '?'):>10} steps  {data.get('notes', '')}")
    return 0


def _envs(args) -> int:
    import gymnasium as gym

    for env_id in sorted(gym.registry):
        if args.filter.lower() in env_id.lower():
            print(env_id)
    return 0


