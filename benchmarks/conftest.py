"""Shared by the benchmarks in this folder: their options, and their verdicts printed at the end of the session
(pytest captures what a test prints) beside pytest-benchmark's own table.

    python -m pytest benchmarks/ --benchmark-only
"""

from __future__ import annotations

import pytest

VERDICTS = pytest.StashKey[list]()


def pytest_addoption(parser) -> None:
    group = parser.getgroup("bench benchmarks")
    group.addoption("--fidelity-rounds", type=int, default=5,
                    help="fidelity: harness runs, each followed by a block of bare-loop queries (default 5)")
    group.addoption("--fidelity-iterations", type=int, default=64,
                    help="fidelity: timed queries per harness run and per bare-loop block (default 64)")


def pytest_configure(config) -> None:
    config.stash[VERDICTS] = []


@pytest.fixture
def verdict(request):
    """`verdict(line)`: a line for the session's end, where it is printed whatever the capture."""
    return request.config.stash[VERDICTS].append


def pytest_terminal_summary(terminalreporter, config) -> None:
    lines = config.stash.get(VERDICTS, [])
    if lines:
        terminalreporter.section("bench verdicts")
        for line in lines:
            terminalreporter.write_line(line)
