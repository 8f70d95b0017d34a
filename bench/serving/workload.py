"""Workloads: the same requests for every variant and machine, drawn from a seed before any clock starts.

Prompt and output lengths follow a length spec: an int (fixed), `{mean, stdev, min, max}` (a seeded normal, rounded
and clipped) or `{min, max}` (seeded uniform integers). Prompts are windows of real English text
(bench.models.text) cut at seeded offsets to each request's drawn length, in the model's own token ids.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

import numpy as np
from pydantic import AfterValidator, Field, model_validator

from ..models.inputs import token_stream
from ..records.schema import Frozen
from .requests import Request

POOL_TOKENS = 16384  # prompts are cut from this many tokens of text: well inside the text's first half, which
# calibration and recovery training never read (bench.models.inputs.HELD_OUT_FROM)

# Each draw has its own random stream, so changing the output spec leaves prompts (and the reverse) unchanged.
_PROMPT_LENGTHS, _OUTPUT_LENGTHS, _OFFSETS = 0, 1, 2


class _Bounded(Frozen):
    min: int = Field(ge=0)
    max: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> "_Bounded":
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class NormalLength(_Bounded):
    """Seeded normal lengths, rounded to integers and clipped to [min, max]."""

    mean: float
    stdev: float = Field(ge=0)


class UniformLength(_Bounded):
    """Seeded integers drawn uniformly from [min, max], both included."""


LengthSpec = Union[Annotated[int, Field(ge=0)], NormalLength, UniformLength]


def shortest(spec: LengthSpec) -> int:
    return spec if isinstance(spec, int) else spec.min


def longest(spec: LengthSpec) -> int:
    return spec if isinstance(spec, int) else spec.max


def _prompt_not_empty(spec: LengthSpec) -> LengthSpec:
    if shortest(spec) < 1:
        raise ValueError("a prompt needs at least one token")
    return spec


PromptLength = Annotated[LengthSpec, AfterValidator(_prompt_not_empty)]
OutputLength = LengthSpec  # 0 output tokens: an embedding request


def draw_lengths(spec: LengthSpec, count: int, rng: np.random.Generator) -> list[int]:
    """`count` lengths following `spec`."""
    if isinstance(spec, int):
        return [spec] * count
    if isinstance(spec, NormalLength):
        drawn = np.rint(rng.normal(spec.mean, spec.stdev, count))
        return [int(x) for x in np.clip(drawn, spec.min, spec.max)]
    return [int(x) for x in rng.integers(spec.min, spec.max, count, endpoint=True)]


def build_requests(tokenizer: Any, count: int, prompt_tokens: PromptLength, output_tokens: OutputLength, seed: int,
                   ignore_eos: bool = True) -> list[Request]:
    """`count` requests whose prompts are windows of the reference text at seeded offsets.

    Depends only on the tokenizer's vocabulary, the specs, `count` and `seed`. Prompt ids are the text's own
    tokens, without special tokens (an engine adds BOS where its model wants one); `prompt_text` is their
    decoding, which an HTTP server tokenizes again (a window cut mid-word may then count a token more or less).
    """
    if count < 1:
        raise ValueError(f"count must be positive, not {count}")
    _prompt_not_empty(prompt_tokens)
    pool = token_stream(tokenizer, max(POOL_TOKENS, 2 * longest(prompt_tokens)))
    prompt_lengths = draw_lengths(prompt_tokens, count, np.random.default_rng((seed, _PROMPT_LENGTHS)))
    output_lengths = draw_lengths(output_tokens, count, np.random.default_rng((seed, _OUTPUT_LENGTHS)))
    offset_rng = np.random.default_rng((seed, _OFFSETS))
    requests = []
    for index, (prompt_length, output_length) in enumerate(zip(prompt_lengths, output_lengths)):
        start = int(offset_rng.integers(0, len(pool) - prompt_length, endpoint=True))
        ids = tuple(pool[start:start + prompt_length])
        requests.append(Request(index=index, prompt_ids=ids, output_tokens=output_length, ignore_eos=ignore_eos,
                                prompt_text=tokenizer.decode(list(ids))))
    return requests
