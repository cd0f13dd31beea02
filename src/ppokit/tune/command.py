"""`ppokit tune ENV_ID`: the command line of a study, its worker processes, and its outputs."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from ppokit.errors import ConfigError

DEFAULT_TRIALS = 50


def add_tune_parser(sub) -> None:
    tune = sub.add_parser(
        "tune", help="search hyperparameters for an env with Optuna",
        description="Tune PPO's keys on ENV_ID with Optuna (pip install 'ppokit[tune]'): TPE sampling, a median pruner on periodic "
                    "evaluations, a study in a database that several workers share. Writes trials.csv, best.yaml (a --config file), "
                    "history.png and importance.png to the study folder. Running the same command again continues the study.",
        epilog="examples: ppokit tune Acrobot-v1 --no-preset --trials 30 --total-steps 100000;  "
               "two machines on one study: ppokit tune Acrobot-v1 --storage postgresql://user@host/db --study acrobot (on each)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    tune.add_argument("env_id", metavar="ENV_ID", nargs="?", help="a registered Gymnasium id")
    tune.add_argument("--trials", type=int, default=DEFAULT_TRIALS, metavar="N",
                      help=f"trials the study should hold, from every worker (default {DEFAULT_TRIALS}); a study that has them runs no more")
    tune.add_argument("--timeout", type=float, metavar="S", help="stop starting trials after S seconds")
    tune.add_argument("--storage", metavar="URL", help="an SQLAlchemy URL the workers share (default: sqlite:///STUDY_DIR/tune.db)")
    tune.add_argument("--study", metavar="NAME", help="the study's name in the storage (default: tune-ENV_ID)")
    tune.add_argument("--study-dir", metavar="DIR", help="where the outputs go (default: runs/tune-ENV_ID)")
    tune.add_argument("--n-jobs", type=int, default=1, metavar="K", help="worker processes on this machine (default 1)")
    tune.add_argument("--search-space", metavar="FILE", help="a YAML search space (default: the shipped one; `ppokit tune --print-space` shows it)")
    tune.add_argument("--preset", metavar="NAME", help="the base config's preset (default: the one named like ENV_ID, if any)")
    tune.add_argument("--no-preset", action="store_true", help="start each trial from ppokit's defaults")
    tune.add_argument("--config", metavar="FILE", help="YAML of config keys applied over the preset, under the sampled keys")
    tune.add_argument("--total-steps", type=int, metavar="N", help="env steps per run of a trial (default: the base config's total_steps)")
    tune.add_argument("--eval-episodes", type=int, default=10, metavar="E", help="deterministic episodes per evaluation (default 10)")
    tune.add_argument("--evaluations", type=int, default=10, metavar="K", help="evaluations per run, at even points of its training (default 10)")
    tune.add_argument("--seeds", type=int, default=1, metavar="S", help="runs per trial, seeds 0..S-1; the score is their mean (default 1)")
    tune.add_argument("--sampler-seed", type=int, metavar="N", help="seed of the TPE sampler (a worker process k takes N + k)")
    tune.add_argument("--print-space", action="store_true", help="print the default search space and exit")
    tune.add_argument("overrides", nargs="*", metavar="key=value", help="base config keys, values read as YAML")
    tune.set_defaults(handler=run_tune)
    tune.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # a process started by --n-jobs: trials only, no outputs


def run_tune(args) -> int:
    from ppokit.tune.search_space import DEFAULT_SEARCH_SPACE

    if args.print_space:
        print(DEFAULT_SEARCH_SPACE.read_text(), end="")
        return 0
    if args.env_id is None:
        raise ConfigError("ppokit tune needs an ENV_ID (e.g. ppokit tune Acrobot-v1 --no-preset --trials 30)")
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("ppokit tune needs Optuna: pip install 'ppokit[tune]'") from None
    from ppokit.tune.report import write_report
    from ppokit.tune.study import default_storage, open_study, run_trials

    settings = _settings(args)
    study_dir = Path(args.study_dir or f"runs/tune-{args.env_id.replace('/', '-')}")
    study_dir.mkdir(parents=True, exist_ok=True)
    storage = args.storage or default_storage(study_dir)
    name = args.study or f"tune-{args.env_id.replace('/', '-')}"
    study = open_study(storage, name, args.sampler_seed)
    if args.worker:
        run_trials(study, settings, args.trials, args.timeout)
        return 0
    (study_dir / "study.json").write_text(json.dumps({"env_id": settings.env_id, "study": name, "storage": storage, "preset": settings.preset_name,
                                                      "seeds": settings.seeds, "total_steps": settings.total_steps, "eval_episodes": settings.eval_episodes,
                                                      "evaluations": settings.evaluations, "search_space": args.search_space or "default",
                                                      "base": settings.base}, indent=2) + "\n")
    print(f"ppokit: tuning {settings.env_id} ({'preset ' + settings.preset_name if settings.preset_name else 'no preset'}), study {name!r} in {storage}: "
          f"{args.trials} trials of {len(settings.seeds)} run(s) x {settings.total_steps:,} steps, {len(settings.dimensions)} keys sampled, "
          f"{args.n_jobs} worker process(es)", flush=True)
    workers = [_start_worker(args, storage, name, k) for k in range(1, args.n_jobs)]
    status = 0
    try:
        run_trials(study, settings, args.trials, args.timeout, announce=True)
    except KeyboardInterrupt:
        status = 130
    finally:
        for worker in workers:
            worker.wait()
    summary = write_report(study, settings, study_dir)
    if status == 130:
        summary += "; interrupted: run the same command again to continue the study"
    print(f"ppokit: {summary}")
    return status


def _settings(args):
    from ppokit.gym.cli import resolve_train_config
    from ppokit.gym.envs.make import check_env_id
    from ppokit.tune.search_space import FIXED_KEYS, load_search_space
    from ppokit.tune.study import TuneSettings

    check_env_id(args.env_id)
    for flag, value in (("--trials", args.trials), ("--n-jobs", args.n_jobs), ("--seeds", args.seeds), ("--eval-episodes", args.eval_episodes),
                        ("--evaluations", args.evaluations)):
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    config, preset_name = resolve_train_config(args.env_id, args.preset, args.no_preset, args.config, list(args.overrides), None, args.total_steps)
    base = {key: value for key, value in config.to_dict().items() if key not in FIXED_KEYS}
    return TuneSettings(env_id=args.env_id, base=base, dimensions=load_search_space(args.search_space), seeds=list(range(args.seeds)),
                        total_steps=config.total_steps, eval_episodes=args.eval_episodes, evaluations=args.evaluations, preset_name=preset_name)


def _start_worker(args, storage: str, name: str, index: int) -> subprocess.Popen:
    """Another process on the same study (the same command with --worker): it runs trials and writes nothing else."""
    command = [sys.executable, "-m", "ppokit", "tune", args.env_id, "--worker", "--storage", storage, "--study", name, "--trials", str(args.trials),
               "--eval-episodes", str(args.eval_episodes), "--evaluations", str(args.evaluations), "--seeds", str(args.seeds)]
    for flag, value in (("--timeout", args.timeout), ("--search-space", args.search_space), ("--preset", args.preset), ("--config", args.config),
                        ("--total-steps", args.total_steps), ("--study-dir", args.study_dir),
                        ("--sampler-seed", None if args.sampler_seed is None else args.sampler_seed + index)):
        if value is not None:
            command += [flag, str(value)]
    if args.no_preset:
        command.append("--no-preset")
    return subprocess.Popen(command + list(args.overrides))
