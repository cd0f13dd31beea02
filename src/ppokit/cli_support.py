"""What every command's parser shares: -h that lists the config keys, a usage error, print() for ranks other than 0."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ppokit.config_docs import plain_listing


class _KeysHelp(argparse.Action):
    """-h/--help that also lists the command's config keys (its config class is imported only when help is asked for)."""

    def __init__(self, option_strings, dest, config_class: Callable[[], type], **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="show this help, with every config key, and exit")
        self.config_class = config_class

    def __call__(self, parser, namespace, values, option_string=None):
        parser.epilog = f"{parser.epilog or ''}\n\nconfig keys (key=value, or in --config FILE), with their defaults:\n" + \
            plain_listing(self.config_class())
        parser.print_help()
        parser.exit()


def add_keys_help(parser: argparse.ArgumentParser, config_class: Callable[[], type]) -> None:
    """``config_class``: returns the command's config dataclass (a function, so that building the parser imports no front end)."""
    parser.add_argument("-h", "--help", action=_KeysHelp, config_class=config_class)


def quiet(*args, **kwargs) -> None:
    """print() for the ranks other than 0."""


def usage_error(message: str):
    from ppokit.errors import ConfigError

    return ConfigError(message)
