"""Command line entry point: `ppokit COMMAND`. Each front end's commands live with it: gym/cli.py (train, eval, plot,
presets, envs), lm/cli.py (lm ...), tune/command.py (tune); `ppokit keys` is here."""

from __future__ import annotations

import argparse
import os
import sys

from ppokit.errors import PPOKitError


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    # key=value overrides may sit anywhere after ENV_ID, even after flags, which argparse's
    # positional handling cannot express: collect them from the leftovers.
    args, extras = parser.parse_known_args(argv)
    overrides = [e for e in extras if "=" in e and not e.startswith("-")]
    unknown = [e for e in extras if e not in overrides]
    takes_overrides = hasattr(args, "overrides")
    if unknown or (overrides and not takes_overrides):
        parser.error(f"unrecognized arguments: {' '.join(unknown or overrides)}")
    if takes_overrides:
        args.overrides = list(args.overrides) + overrides
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from ppokit.distributed import close_world, launched_world_size

    # under torchrun every rank runs this; the rank goes into its error messages
    where = f" (rank {os.environ.get('RANK', '?')} of {launched_world_size()})" if launched_world_size() > 1 else ""
    finished = False
    try:
        status = args.handler(args)
        finished = True
        return status
    except PPOKitError as exc:
        print(f"ppokit: error{where}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ppokit: interrupted{where}", file=sys.stderr)
        return 130
    finally:
        close_world(finished)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppokit", description="Proximal Policy Optimization for Gymnasium environments and language models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from ppokit.gym.cli import add_gym_parsers

    add_gym_parsers(sub)

    keys = sub.add_parser("keys", help="list the config keys of a command, with defaults and meanings",
                          description="Every config key of `ppokit train` (train) or `ppokit lm sft|rm|ppo` (sft, rm, ppo): its default and meaning.")
    keys.add_argument("command_name", metavar="COMMAND", choices=["train", "sft", "rm", "ppo"], help="train, sft, rm or ppo")
    keys.add_argument("--markdown", action="store_true", help="as a markdown table (the README's)")
    keys.set_defaults(handler=_keys)

    from ppokit.lm.cli import add_lm_parser
    from ppokit.tune.command import add_tune_parser

    add_tune_parser(sub)
    add_lm_parser(sub)
    return parser


def _keys(args) -> int:
    from ppokit.config_docs import markdown_table, plain_listing
    from ppokit.config_keys import config_classes

    cls = config_classes()[args.command_name]
    print(markdown_table(cls) if args.markdown else plain_listing(cls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
