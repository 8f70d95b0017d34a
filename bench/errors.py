"""Exceptions that carry meaning for the runner and the CLI."""

from __future__ import annotations


class BenchError(Exception):
    """Base class for the harness's own errors."""


class ConfigError(BenchError):
    """Bad input: printed as one line naming the file, the key and the fix; exit status 2."""

    def __init__(self, file: str, key: str, problem: str, fix: str):
        self.file, self.key, self.problem, self.fix = file, key, problem, fix
        super().__init__(f"{file}: {key}: {problem} (fix: {fix})")


class Unsupported(BenchError):
    """This hardware or software stack cannot run the point; it becomes an `unsupported` record."""
