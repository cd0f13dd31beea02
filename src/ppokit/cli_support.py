"""What every command's parser shares: -h that lists the config keys, a usage error, print() for ranks other than 0."""

from __future__ import annotations

import argparse


class _KeysHelp(argparse.Action):
    """-h/--help that also lists the command's config keys (read from the config class only when help is asked for)."""

    def __init__(self, option_strings, dest, keys: str, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="show this help, with every config key, and exit")
        self.keys = keys

    def __call__(self, parser, namespace, values, option_string=None):
        from ppokit.config_keys import config_classes, plain_listing

        parser.epilog = f"{parser.epilog or ''}\n\nconfig keys (key=value, or in --config FILE), with their defaults:\n" + \
            plain_listing(config_classes()[self.keys])
        parser.print_help()
        parser.exit()


def add_keys_help(parser: argparse.ArgumentParser, keys: str) -> None:
    parser.add_argument("-h", "--help", action=_KeysHelp, keys=keys)


def quiet(*args, **kwargs) -> None:
    """print() for the ranks other than 0."""


def usage_error(message: str):
    from ppokit.errors import ConfigError

    return ConfigError(message)
