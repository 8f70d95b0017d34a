"""`bench env`: this machine's description as JSON."""

from __future__ import annotations

import json

from . import Command, commands


@commands.register("env")
class Env(Command):
    help = "print this machine's description as JSON"

    def __call__(self, args) -> int:
        from ..executors import this_machine

        print(json.dumps(this_machine(), indent=2))
        return 0
