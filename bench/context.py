"""What a transform or backend may know about the run it is part of (never the clock)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np


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
    log_path: Path | None = None  # the point's log: what the run starts (a server) logs beside it
    precision: str = "fp32"
    precision_mode: str = "cast"
    backend_options: dict = field(default_factory=dict)
    tokenizer: Any = None
    model_config: Any = None  # the transformers config: graph optimizers need head counts and sizes
    # identity of the model (its spec, seed and weight files' fingerprint) and of its torch transforms with every
    # input they declare (`Transform.cache_inputs`): the export cache is keyed on it
    model_key: dict = field(default_factory=dict)
    export_info: dict | None = None  # what the backend's export recorded (opset, cache hit)
    # loads the untransformed fp32 model afresh (transforms change theirs in place): a teacher for recovery
    load_original: Callable[[], Any] | None = None

    def calibration_batches(self, count: int) -> list[dict]:
        """`count` single-row batches of real text at the run's length, from the held-out half of the text:
        calibration never sees the windows the timed inputs or the quality check read."""
        from .models.inputs import held_out_windows

        rows, _ = held_out_windows(self.tokenizer, self.task, self.model_config.vocab_size, self.seq_len)
        if count > len(rows):
            raise ValueError(f"{count} calibration windows asked for; the held-out text has {len(rows)}")
        return [{"input_ids": row[None].numpy(), "attention_mask": np.ones((1, self.seq_len), dtype=np.int64)}
                for row in rows[:count]]
