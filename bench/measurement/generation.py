"""Per-request generation timing: TTFT, TPOT, inter-token latencies, end to end (vLLM/GenAI-Perf definitions)."""

from __future__ import annotations

import numpy as np

from ..records.schema import Generation, LatencySummary, Throughput
from .stats import summarize


def request_timings(start_ns: int, token_ns: list[int], end_ns: int) -> dict:
    """TTFT = first token - start; TPOT = (latency - TTFT) / (tokens - 1); ITL = gaps between tokens."""
    n = len(token_ns)
    latency = (end_ns - start_ns) / 1e9
    ttft = (token_ns[0] - start_ns) / 1e9 if n else None
    tpot = (latency - ttft) / (n - 1) if n > 1 else None
    itl = [(b - a) / 1e9 for a, b in zip(token_ns, token_ns[1:])]
    return {"ttft_s": ttft, "tpot_s": tpot, "itl_s": itl, "latency_s": latency, "tokens": n}


def _ms_summary(values_s: list[float], instability_cv: float) -> LatencySummary:
    return summarize([v * 1e3 for v in values_s], instability_cv)


def summarize_generation(requests: list[dict], batch_size: int, prompt_len: int,
                         instability_cv: float = 0.10) -> Generation:
    """Percentiles of TTFT, TPOT, ITL and end-to-end latency, plus token throughput.

    Throughput conventions: output tokens/s = batch x new tokens / mean end-to-end latency; total tokens/s
    counts prompt tokens too; decode tokens/s = batch / mean TPOT (the steady-state decode rate).
    """
    e2e = [r["latency_s"] for r in requests]
    ttft = [r["ttft_s"] for r in requests]
    tpot = [r["tpot_s"] for r in requests if r["tpot_s"] is not None]
    itl = [x for r in requests for x in r["itl_s"]]
    tokens = requests[0]["tokens"]
    mean_e2e = float(np.mean(e2e))
    tpot_ms = _ms_summary(tpot, instability_cv) if tpot else None
    return Generation(
        ttft=_ms_summary(ttft, instability_cv),
        e2e=_ms_summary(e2e, instability_cv),
        tpot=tpot_ms,
        itl=_ms_summary(itl, instability_cv) if tpot else None,
        throughput=Throughput(
            samples_per_s=batch_size / mean_e2e,
            tokens_per_s=batch_size * tokens / mean_e2e,
            output_tokens_per_s=batch_size * tokens / mean_e2e,
            total_tokens_per_s=batch_size * (prompt_len + tokens) / mean_e2e,
            requests_per_s=batch_size / mean_e2e,
            decode_tokens_per_s=batch_size / float(np.mean(tpot)) if tpot else None,
            basis="per-request volume / mean end-to-end latency"),
        new_tokens=tokens,
        prompt_tokens=prompt_len,
    )
