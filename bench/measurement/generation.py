"""Per-token timing of generation: the clock side of `greedy_generate(..., on_token=...)`.

The SUT reports "token i exists" through `on_token(i)`; `GenerationTimer` stamps it with
`time.perf_counter_ns`. From the stamps, per request (one generate call over a batch):

- TTFT  = t(token 0) - t(start). Start is stamped immediately before the SUT is called, so TTFT
          includes the prefill forward and the first argmax.
- E2E   = t(last token) - t(start).
- TPOT  = (E2E - TTFT) / (tokens - 1): mean decode-step time; None when tokens == 1.
- ITL   = [t(token i) - t(token i-1) for i >= 1]: every inter-token gap (mean(ITL) == TPOT).
- Throughput conventions (all per generate call, every sequence of the batch counted):
  output_tokens_per_s = batch * tokens / E2E,
  total_tokens_per_s  = batch * (prompt_tokens + tokens) / E2E  (prompt tokens counted once, as
                        processed by the prefill, plus generated tokens, over the whole call),
  decode_tokens_per_s = batch / TPOT (decode phase only; None when tokens == 1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np


@dataclass
class GenerationRecord:
    """Raw stamps of one generate call; all derived figures are properties (seconds)."""

    start_ns: int
    token_ns: list[int]
    prompt_tokens: int = 0
    batch_size: int = 1

    @property
    def tokens(self) -> int:
        return len(self.token_ns)

    @property
    def ttft_s(self) -> float:
        return (self.token_ns[0] - self.start_ns) / 1e9

    @property
    def e2e_s(self) -> float:
        return (self.token_ns[-1] - self.start_ns) / 1e9

    @property
    def tpot_s(self) -> float | None:
        if self.tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.tokens - 1)

    @property
    def itl_s(self) -> list[float]:
        t = self.token_ns
        return [(t[i] - t[i - 1]) / 1e9 for i in range(1, len(t))]

    @property
    def output_tokens_per_s(self) -> float:
        return self.batch_size * self.tokens / self.e2e_s

    @property
    def total_tokens_per_s(self) -> float:
        return self.batch_size * (self.prompt_tokens + self.tokens) / self.e2e_s

    @property
    def decode_tokens_per_s(self) -> float | None:
        tpot = self.tpot_s
        return None if tpot is None or tpot <= 0 else self.batch_size / tpot

    def as_dict(self) -> dict:
        return {"tokens": self.tokens, "prompt_tokens": self.prompt_tokens, "batch_size": self.batch_size,
                "ttft_s": self.ttft_s, "tpot_s": self.tpot_s, "e2e_s": self.e2e_s, "itl_s": self.itl_s,
                "output_tokens_per_s": self.output_tokens_per_s,
                "total_tokens_per_s": self.total_tokens_per_s,
                "decode_tokens_per_s": self.decode_tokens_per_s}


@dataclass
class GenerationTimer:
    """Stamps one generate call: `start()`, pass `on_token` to the SUT, then `finish()`.

    `on_token` only appends a timestamp (no allocation beyond the list append), so its cost in the
    decode loop is negligible. The timer is reusable: `start()` clears previous stamps.
    """

    clock: Callable[[], int] = time.perf_counter_ns
    start_ns: int | None = None
    token_ns: list[int] = field(default_factory=list)

    def start(self) -> None:
        self.token_ns = []
        self.start_ns = self.clock()

    def on_token(self, i: int) -> None:
        self.token_ns.append(self.clock())

    def finish(self, prompt_tokens: int = 0, batch_size: int = 1) -> GenerationRecord:
        if self.start_ns is None or not self.token_ns:
            raise RuntimeError("GenerationTimer.finish() before start() or before any token was reported")
        return GenerationRecord(self.start_ns, list(self.token_ns), prompt_tokens, batch_size)

    def time(self, generate: Callable[[Callable[[int], None]], object], prompt_tokens: int = 0,
             batch_size: int = 1) -> GenerationRecord:
        """Convenience: `generate(on_token)` between start() and finish()."""
        self.start()
        generate(self.on_token)
        return self.finish(prompt_tokens, batch_size)


def _dist_ms(values_s: Iterable[float | None]) -> dict | None:
    x = np.asarray([v for v in values_s if v is not None], dtype=np.float64) * 1e3
    if x.size == 0:
        return None
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(x.mean()),
            "min": float(x.min()), "max": float(x.max()), "count": int(x.size)}


def summarize_generation(requests: list[GenerationRecord], batch_size: int | None = None) -> dict:
    """Distributions (ms: p50/p90/p99/mean/min/max/count) of TTFT, TPOT, ITL (pooled over requests)
    and E2E, plus throughput of the whole set of back-to-back generate calls.

    `batch_size` overrides each record's own batch size (sequences per generate call).
    Throughputs are totals over totals (sum of tokens / sum of E2E), not means of per-call rates:
      output_tokens_per_s = batch * sum(tokens) / sum(E2E)
      total_tokens_per_s  = batch * sum(prompt_tokens + tokens) / sum(E2E)
      decode_tokens_per_s = batch * sum(tokens - 1) / sum(E2E - TTFT)   (None if no call has 2+ tokens)
    TPOT excludes calls with a single token (undefined); `tpot_ms` is None if all are such.
    """
    if not requests:
        return {"requests": 0}
    bs = [batch_size or r.batch_size for r in requests]
    e2e = sum(r.e2e_s for r in requests)
    out_tok = sum(b * r.tokens for b, r in zip(bs, requests))
    all_tok = sum(b * (r.prompt_tokens + r.tokens) for b, r in zip(bs, requests))
    dec_time = sum(r.e2e_s - r.ttft_s for r in requests if r.tokens > 1)
    dec_tok = sum(b * (r.tokens - 1) for b, r in zip(bs, requests) if r.tokens > 1)
    tokens = sorted({r.tokens for r in requests})
    return {
        "requests": len(requests),
        "batch_size": bs[0] if len(set(bs)) == 1 else bs,
        "new_tokens": tokens[0] if len(tokens) == 1 else tokens,
        "prompt_tokens": requests[0].prompt_tokens,
        "ttft_ms": _dist_ms(r.ttft_s for r in requests),
        "tpot_ms": _dist_ms(r.tpot_s for r in requests),
        "itl_ms": _dist_ms(v for r in requests for v in r.itl_s),
        "e2e_ms": _dist_ms(r.e2e_s for r in requests),
        "output_tokens_per_s": out_tok / e2e if e2e > 0 else None,
        "total_tokens_per_s": all_tok / e2e if e2e > 0 else None,
        "decode_tokens_per_s": dec_tok / dec_time if dec_tok and dec_time > 0 else None,
        "throughput_convention": "tokens of every sequence in the batch; total = prompt + generated; "
                                 "over the summed end-to-end time of back-to-back calls",
    }
