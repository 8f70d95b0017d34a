"""Backends turn a loaded model and a variant into a Session: the system under test.

A Session knows nothing of timing. `run()` executes one query on inputs prepared beforehand and
returns only when the work is complete (on CUDA, after synchronising), so any clock around it is honest.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import numpy as np

from ..registry import Registry


class Session:
    info: dict

    def run(self) -> None:
        """One query on the prepared inputs, complete on return."""
        raise NotImplementedError

    def infer(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The primary output (logits or last hidden state) as float32 numpy, for quality checks."""
        raise NotImplementedError

    def run_rows(self, rows: int) -> None:
        """One query on the first `rows` rows of the prepared batch (dynamic batching), complete on return."""
        from ..errors import Unsupported

        raise Unsupported(f"{type(self).__name__} cannot run partial batches")

    def generate(self, new_tokens: int, on_token: Callable[[int], None], rows: int | None = None) -> None:
        """Greedy generation of exactly `new_tokens` on the prepared prompt (first `rows` rows), reporting each token."""
        from ..errors import Unsupported

        raise Unsupported(f"{type(self).__name__} does not implement generation")


class Backend:
    """Base for registered backends; `stages` lists the transform stages it accepts."""

    stages: ClassVar[frozenset[str]] = frozenset({"torch"})

    def prepare(self, loaded: Any, variant: Any, device: str, inputs: dict[str, np.ndarray],
                ctx: Any) -> Session:
        raise NotImplementedError


backends: Registry[type[Backend]] = Registry("backend", "bench.backends")
