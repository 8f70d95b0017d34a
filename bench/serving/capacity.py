"""Capacity: the highest load at which a run is valid with every SLO met, found by bisection.

The load is an arrival rate (open loop, to `resolution` requests/s) or a number of users (closed loop, exact). The
search assumes a run valid at some load is valid at every lower one; each probe is a full run, so the search
probes the ends of the range first and stops as soon as the answer is known.
"""

from __future__ import annotations

from typing import Callable, Literal

from ..records.serving import Capacity, Probe, Verdict


def find_capacity(run_at: Callable[[float], Verdict], low: float, high: float,
                  parameter: Literal["rate_per_s", "users"], resolution: float = 1.0,
                  max_probes: int = 12) -> Capacity:
    """Bisect [low, high] for the highest load whose run is valid. Users are integers (exact); a rate stops when
    the valid and invalid loads are within `resolution` of each other, or after `max_probes` runs."""
    integer = parameter == "users"
    if not 0 < low < high:
        raise ValueError(f"need 0 < low < high, not [{low}, {high}]")
    if integer:
        low, high, resolution = int(low), int(high), 1
    probes: list[Probe] = []

    def valid(load: float) -> bool:
        verdict = run_at(load)
        probes.append(Probe(load=load, valid=verdict.valid, reasons=verdict.reasons))
        return verdict.valid

    def answer(capacity, lowest_invalid, note=None) -> Capacity:
        return Capacity(parameter=parameter, capacity=capacity, lowest_invalid=lowest_invalid, probes=probes,
                        note=note)

    if not valid(low):
        return answer(None, low, f"even the lowest load tried ({low:g}) was not valid")
    if valid(high):
        return answer(high, None, f"the highest load tried ({high:g}) was valid: the capacity is at least that")
    while high - low > resolution:
        if len(probes) >= max_probes:
            return answer(low, high, f"stopped after {max_probes} runs: the capacity lies in [{low:g}, {high:g})")
        middle = (low + high) // 2 if integer else (low + high) / 2
        if valid(middle):
            low = middle
        else:
            high = middle
    return answer(low, high)
