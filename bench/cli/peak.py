"""`bench peak`: measure this machine's GEMM and bandwidth ceilings once; cached per machine."""

from __future__ import annotations

import json

from . import Command, commands
from ._common import peaks_path


@commands.register("peak")
class Peak(Command):
    help = "measure (once, then cached per machine) GEMM FLOP/s and memory bandwidth"

    def add_arguments(self, parser) -> None:
        parser.add_argument("--force", action="store_true", help="measure again even if cached")
        parser.add_argument("--seconds", type=float, default=2.0, help="seconds per measurement")

    def __call__(self, args) -> int:
        from ..hardware.machine import cpu_flags, describe_machine
        from ..hardware.peaks import load_or_measure_peaks

        machine = describe_machine()
        peaks = load_or_measure_peaks(peaks_path(machine), machine["machine_id"], force=args.force,
                                      seconds_per_test=args.seconds, cpu_flags=cpu_flags())
        print(json.dumps(peaks, indent=2))
        return 0
