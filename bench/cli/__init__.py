"""Command line: one module per `bench` command, registered by name.

Adding a command is one module in this package with a class registered in `commands`. Bad input ends
with one line on stderr naming the file, the key and the fix, and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import ClassVar

from ..errors import ConfigError
from ..registry import Registry

EXIT_BAD_INPUT = 2


class Command:
    """Base for registered commands: `help`, the arguments it takes, and what it does."""

    help: ClassVar[str] = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare this command's arguments."""

    def __call__(self, args: argparse.Namespace) -> int:
        raise NotImplementedError


commands: Registry[type[Command]] = Registry("command", "bench.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="Inference benchmarks you can publish.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in commands.names():
        command = commands.get(name)()
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help))
        sub.choices[name].set_defaults(func=command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: records written so far are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
