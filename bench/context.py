"""What a transform or backend may know about the run it is part of (never the clock)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunContext:
    device: str
    task: str
    batch_size: int
    seq_len: int
    seed: int
    intra_op_threads: int
    inter_op_threads: int
    cpu_flags: frozenset[str]
    cache_dir: Path
    tokenizer: Any = None
    model_config: Any = None  # the transformers config: graph optimizers need head counts and sizes
    model_key: dict = field(default_factory=dict)  # identity of the model and its torch transforms (export cache)
