"""`ppokit lm sft|rm|ppo|generate|demo`: the language-model commands (same config style as `ppokit train`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ppokit.cli_support import quiet
from ppokit.config import write_run_config
from ppokit.errors import ConfigError

CONFIG_COMMANDS = {"sft", "rm", "ppo"}


def lm_config_class(command: str) -> type:
    from ppokit.lm.config import LMPPOConfig, RewardModelConfig, SFTConfig

    return {"sft": SFTConfig, "rm": RewardModelConfig, "ppo": LMPPOConfig}[command]


def add_lm_parser(sub) -> None:
    from ppokit.cli_support import add_keys_help

    lm = sub.add_parser("lm", help="RLHF of causal language models: sft, rm, ppo, generate, demo",
                        description="Supervised fine-tuning, reward modelling and PPO of Hugging Face causal LMs.")
    commands = lm.add_subparsers(dest="lm_command", metavar="LM_COMMAND")
    examples = {
        "sft": "ppokit lm sft model=runs/base data=sft.jsonl epochs=3 learning_rate=1e-4",
        "rm": "ppokit lm rm model=runs/sft/model data=preferences.jsonl padding_side=left",
        "ppo": "ppokit lm ppo policy=runs/sft/model reward_model=runs/rm/model prompts=prompts.jsonl kl_coef=0.1",
    }
    helps = {"sft": "supervised fine-tuning on (prompt, completion) rows", "rm": "train a reward model on (prompt, chosen, rejected) rows",
             "ppo": "PPO against a reward model and/or reward functions, with a KL penalty to a reference"}
    for name in ("sft", "rm", "ppo"):
        command = commands.add_parser(name, help=helps[name], description=f"{helps[name]}. Config precedence: defaults < --config FILE < key=value.",
                                      epilog=f"example: {examples[name]}", add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter)
        add_keys_help(command, lambda name=name: lm_config_class(name))
        length = "total_episodes" if name == "ppo" else "epochs"
        command.add_argument("--resume", metavar="RUN_DIR",
                             help=f"continue the run in RUN_DIR from its newest checkpoint (its config; only device=... may change, and "
                                  f"{length}=N, the new total, trains a finished run further); a finished run is left as it is")
        command.add_argument("--config", metavar="FILE", help="YAML file of config keys")
        command.add_argument("--seed", type=int, help="random seed (overrides the config)")
        command.add_argument("--run-dir", metavar="DIR", help=f"where logs, checkpoints and the model go (default: runs/lm-{name}-seedN-TIMESTAMP)")
        command.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        command.add_argument("--quiet", action="store_true", help="no per-step console summary")
        command.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, values read as YAML")
        command.set_defaults(handler=_run_trainer, trainer=name)

    gen = commands.add_parser("generate", help="sample responses from a causal LM", description="Print the responses of MODEL to prompts.")
    gen.add_argument("model", metavar="MODEL", help="a model folder, a run dir (its policy/ or model/) or a hub id")
    gen.add_argument("--prompt", action="append", default=[],
                     help="a prompt (repeatable); with a chat model, sent as a user turn through its chat template")
    gen.add_argument("--raw", action="store_true", help="send --prompt text as it is, without the chat template")
    gen.add_argument("--prompts", metavar="FILE", help="JSONL file of {\"prompt\"} rows")
    gen.add_argument("--max-new-tokens", type=int, default=32)
    gen.add_argument("--temperature", type=float, default=1.0)
    gen.add_argument("--top-k", type=int, default=0)
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--greedy", action="store_true", help="take the most likely token each step")
    gen.add_argument("--seed", type=int, default=0)
    _add_placement_arguments(gen)
    gen.set_defaults(handler=_generate)

    demo = commands.add_parser("demo", help="a built-in task end to end, offline: sort, reviews (tiny models) or instructions (a real chat model)",
                               description="sort, reviews: build a tiny model, SFT it, train a reward model on pairs ranked by the gold reward, "
                                           "run PPO, and report gold reward, reward-model score and KL before and after. instructions: GRPO makes "
                                           "SmolLM2-135M-Instruct (make real-model) follow format instructions; held-out greedy score and pass@k "
                                           "before and after. Each writes results.json and results.png.")
    demo.add_argument("task", metavar="TASK", help="sort, reviews or instructions")
    demo.add_argument("--model", help="instructions: the chat model's folder (default models/smollm2-135m-instruct)")
    demo.add_argument("--episodes", type=int, help="instructions: responses to train on (default 384)")
    demo.add_argument("--reward", choices=["model", "function"], default="model",
                      help="optimize the learned reward model (default) or the gold rule itself as a reward function")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--run-dir", metavar="DIR", help="default: runs/lm-demo-TASK-seedN-TIMESTAMP")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    _add_placement_arguments(demo)
    demo.set_defaults(handler=_demo)
    lm.set_defaults(handler=lambda args: (lm.print_help(), 2)[1])


def _add_placement_arguments(parser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--precision", default="auto",
                        help="fp32, bf16-mixed, fp16-mixed (CUDA), bf16, or auto: bf16-mixed on CUDA, fp32 elsewhere (default auto)")


def _trainer_class(name: str):
    if name == "sft":
        from ppokit.lm.sft import SFTTrainer

        return SFTTrainer
    if name == "rm":
        from ppokit.lm.reward_model import RewardModelTrainer

        return RewardModelTrainer
    from ppokit.lm.ppo import LMPPOTrainer

    return LMPPOTrainer


def _run_trainer(args) -> int:
    """Under torchrun (``torchrun --nproc_per_node=N -m ppokit lm ...``) every rank runs this: rank 0 alone prints and writes."""
    from ppokit.config import load_yaml, parse_overrides
    from ppokit.distributed import current_world
    from ppokit.lm.config import LMPPOConfig, RewardModelConfig, SFTConfig
    from ppokit.lm.device import resolve_device

    progress = False if args.no_progress else None
    trainer_class = _trainer_class(args.trainer)
    if args.resume:
        given = [flag for flag, value in [("--config", args.config), ("--seed", args.seed), ("--run-dir", args.run_dir)] if value is not None]
        if given:
            raise ConfigError(f"--resume continues a run with its saved config; do not combine it with {', '.join(given)}")
        run_dir = Path(args.resume)
        trainer = trainer_class.resume(run_dir, overrides=parse_overrides(args.overrides), progress=progress, verbose=not args.quiet)
        say = print if trainer.world.is_main else quiet
        unit = "update" if args.trainer == "ppo" else "step"
        done = trainer.num_updates if args.trainer == "ppo" else trainer.step
        if trainer.finished:  # a scheduler re-issuing the command after the run ended: leave the run as it is
            length = "total_episodes" if args.trainer == "ppo" else "epochs"
            say(f"ppokit: {run_dir} has finished ({unit} {done}); nothing to do. To train further: "
                f"ppokit lm {args.trainer} --resume {run_dir} {length}=N (the new total, more than {getattr(trainer.config, length)})")
            return 0
        say(f"ppokit: resuming lm {args.trainer} in {run_dir} at {unit} {done} from {trainer.resumed_from}")
    else:
        config_class, required = {"sft": (SFTConfig, ["model", "data"]), "rm": (RewardModelConfig, ["model", "data"]),
                                  "ppo": (LMPPOConfig, ["policy", "prompts"])}[args.trainer]
        values = load_yaml(args.config) if args.config else {}
        values.update(parse_overrides(args.overrides))
        if args.seed is not None:
            values["seed"] = args.seed
        config = config_class.from_dict(values)
        missing = [name for name in required if not getattr(config, name)]
        if missing:
            raise ConfigError(f"ppokit lm {args.trainer} needs {', '.join(f'{m}=...' for m in missing)} (see `ppokit lm {args.trainer} --help`)")
        world = current_world(resolve_device(config.device).type)
        say = print if world.is_main else quiet
        run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / f"lm-{args.trainer}-seed{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = Path(world.broadcast_json(str(run_dir)))  # rank 0's clock names it
        if world.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_run_config(run_dir, config.to_dict())
        processes = f", data parallel over {world.size} processes ({config.parallel})" if world.distributed else ""
        say(f"ppokit: lm {args.trainer}, run directory {run_dir}{processes}")
        trainer = trainer_class(config, run_dir, progress=progress, verbose=not args.quiet)
    say(f"ppokit: device {trainer.device}, precision {trainer.precision.name}")
    result = trainer.train()
    if trainer.interrupted:
        say(f"ppokit: interrupted by {trainer.interrupted}; checkpoint written. Continue with: ppokit lm {args.trainer} --resume {run_dir}", file=sys.stderr)
        return 130
    if not trainer.world.is_main:
        return 0
    if args.trainer == "sft":
        print(f"ppokit: eval loss {result['eval_loss_before']:.4f} -> {result['eval_loss']:.4f}; model saved to {run_dir / 'model'}")
    elif args.trainer == "rm":
        print(f"ppokit: held-out pairwise accuracy {result['eval_accuracy_before']:.3f} -> {result['eval_accuracy']:.3f}; model saved to {run_dir / 'model'}")
    else:
        print(f"ppokit: {result['episodes']} episodes in {result['seconds']:.1f} s, last batch score {result['final_score']:.3f}; "
              f"policy saved to {run_dir / 'policy'}")
    return 0


def _generate(args) -> int:
    import torch

    from ppokit.lm.data import load_rows, prompt_of
    from ppokit.lm.device import resolve_device
    from ppokit.lm.generation import GenerationSettings, generate
    from ppokit.lm.models import load_causal_lm, load_tokenizer
    from ppokit.lm.precision import Precision

    if not args.prompt and not args.prompts:
        raise ConfigError("ppokit lm generate needs --prompt TEXT or --prompts FILE")
    device = resolve_device(args.device)
    precision = Precision.resolve(args.precision, device)
    torch.manual_seed(args.seed)
    tokenizer = load_tokenizer(args.model)
    # a chat model answers in its format only when its template frames the text as a user turn
    as_chat = bool(args.prompt) and not args.raw and bool(getattr(tokenizer, "chat_template", None))
    if args.prompt:
        how = "as a user turn through the model's chat template (--raw sends it as it is)" if as_chat else \
            ("as it is (--raw)" if args.raw else "as it is (the tokenizer has no chat template)")
        print(f"ppokit: --prompt text sent {how}", file=sys.stderr)
    given = [[{"role": "user", "content": text}] if as_chat else text for text in args.prompt]
    prompts = given + ([prompt_of(row) for row in load_rows(args.prompts, "prompt")] if args.prompts else [])
    model = load_causal_lm(args.model, tokenizer, precision.weights_dtype).to(device)
    settings = GenerationSettings(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.greedy)
    with precision.autocast():
        responses = generate(model, tokenizer, prompts, settings)
    shown = list(args.prompt) + prompts[len(given):]
    for prompt, response in zip(shown, responses):
        print(json.dumps({"prompt": prompt, "response": response}))
    return 0


def _demo(args) -> int:
    from ppokit.lm.demo import run_demo
    from ppokit.lm.tasks import get_task

    if args.task == "instructions":
        return _real_demo(args)
    if args.model or args.episodes:
        raise ConfigError(f"--model and --episodes apply to the instructions demo, not to {args.task!r}")
    get_task(args.task)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / f"lm-demo-{args.task}-seed{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"ppokit: lm demo {args.task} (reward: {args.reward}), run directory {run_dir}")
    placement = {"device": args.device, "precision": args.precision}
    results = run_demo(args.task, run_dir, seed=args.seed, reward=args.reward, progress=False if args.no_progress else None,
                       overrides={"sft": placement, "reward_model": placement, "ppo": placement})
    rm = f", reward-model score {results['rm_before']:.3f} -> {results['rm_after']:.3f}" if results["rm_before"] is not None else ""
    print(f"ppokit: gold reward {results['gold_before']:.3f} -> {results['gold_after']:.3f}{rm}, KL {results['kl_before']:.3f} -> {results['kl']:.3f} nats "
          f"in {results['total_seconds']:.0f} s; results.json and results.png in {run_dir}")
    return 0


def _real_demo(args) -> int:
    from ppokit.lm.real_demo import DEFAULT_MODEL, run_real_demo

    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / f"lm-demo-instructions-seed{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    overrides = {"device": args.device, "precision": args.precision} | ({"total_episodes": args.episodes} if args.episodes else {})
    results = run_real_demo(run_dir, args.model or DEFAULT_MODEL, seed=args.seed, overrides=overrides, progress=False if args.no_progress else None)
    before, after = results["held_out_before"], results["held_out_after"]
    k = next(key for key in before if key.startswith("pass@"))
    print(f"| held-out prompts ({results['episodes']} episodes) | greedy score | {k} | mean sampled score | response length |")
    print("|---|---|---|---|---|")
    for name, row in (("before", before), ("after", after)):
        print(f"| {name} | {row['score']:.3f} | {row[k]:.3f} | {row['score_mean']:.3f} | {row['response_length']:.1f} |")
    for name in ("before", "after"):
        print(f"greedy completions {name} training:")
        for prompt, response in results[f"samples_{name}"][:3]:
            print(f"  {prompt[-1]['content']!r} -> {response!r}")
    print(f"ppokit: {results['episodes_per_second']:.2f} episodes/s; results.json and results.png in {run_dir}")
    return 0
