"""Batches of prompts of different lengths for the serving primitives (`Session.generate_batch`, `embed_batch`):
the padding, the positions and the per-row bookkeeping every backend shares (numpy only).

Decoders are left-padded, so every row's next token is at the last position and one decode step serves them all;
the padded slots are masked and each row's positions count its own tokens from 0, as the same prompt alone would
(GPT-2's learned positions need them explicitly: transformers' default is the slot index). Encoders are right-padded
to the longest prompt: one forward, and the padded slots are the batch's waste.
"""

from __future__ import annotations

from typing import Any, Callable, Collection, Sequence

import numpy as np

PAD_ID = 0  # any id: padded slots are masked


def _lengths(prompts: Sequence[Sequence[int]]) -> list[int]:
    lengths = [len(p) for p in prompts]
    if not lengths or min(lengths) < 1:
        raise ValueError("a batch needs at least one prompt, each of at least one token")
    return lengths


def left_pad(prompts: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input_ids, attention_mask, position_ids), each [rows, longest] int64, prompts aligned to the right."""
    lengths = _lengths(prompts)
    longest = max(lengths)
    ids = np.full((len(prompts), longest), PAD_ID, dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, (prompt, length) in enumerate(zip(prompts, lengths)):
        ids[row, longest - length:] = prompt
        mask[row, longest - length:] = 1
    return ids, mask, np.clip(mask.cumsum(1) - 1, 0, None)


def right_pad(prompts: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray, dict]:
    """(input_ids, attention_mask, {"tokens": real tokens, "padding_tokens": padded slots})."""
    lengths = _lengths(prompts)
    longest = max(lengths)
    ids = np.full((len(prompts), longest), PAD_ID, dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, (prompt, length) in enumerate(zip(prompts, lengths)):
        ids[row, :length] = prompt
        mask[row, :length] = 1
    return ids, mask, {"tokens": sum(lengths), "padding_tokens": len(prompts) * longest - sum(lengths)}


class Rows:
    """Which rows of a generating batch still want tokens. Row i takes `output_tokens[i]` tokens, or fewer when
    `stop_at_eos[i]` and it produced one of `eos_token_ids`; each token is reported as on_token(i, 1) as it is
    taken. The batch decodes until no row wants more (the longest one)."""

    def __init__(self, output_tokens: Sequence[int], on_token: Callable[[int, int], None],
                 stop_at_eos: Sequence[bool] | None = None, eos_token_ids: Collection[int] = ()):
        if min(output_tokens) < 1:
            raise ValueError("every row of a generating batch asks for at least one token")
        if stop_at_eos is not None and any(stop_at_eos) and not eos_token_ids:
            from ..errors import Unsupported

            raise Unsupported("requests that stop at EOS (ignore_eos false) need the model's EOS token, which this "
                              "session does not know")
        self.wanted = list(output_tokens)
        self.stop_at_eos = list(stop_at_eos) if stop_at_eos is not None else [False] * len(self.wanted)
        self.eos_token_ids = frozenset(eos_token_ids)
        self.on_token = on_token
        self.tokens: list[list[int]] = [[] for _ in self.wanted]
        self._live = [True] * len(self.wanted)

    @property
    def most(self) -> int:
        """The most steps the batch may decode."""
        return max(self.wanted)

    def take(self, next_tokens: Sequence[int]) -> bool:
        """Give each live row its next token (one per row, in row order); whether any row wants another."""
        for row, token in enumerate(next_tokens):
            if not self._live[row]:
                continue
            token = int(token)
            self.tokens[row].append(token)
            self.on_token(row, 1)
            if len(self.tokens[row]) == self.wanted[row] or (self.stop_at_eos[row] and token in self.eos_token_ids):
                self._live[row] = False
        return any(self._live)


def eos_token_ids(config: Any) -> frozenset[int]:
    """The EOS token ids a transformers config (or generation config) names: one id, a list of them, or none."""
    eos = getattr(config, "eos_token_id", None)
    if eos is None:
        return frozenset()
    return frozenset(int(e) for e in eos) if isinstance(eos, (list, tuple)) else frozenset({int(eos)})
