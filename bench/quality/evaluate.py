"""Quality of a variant against the fp32 PyTorch model of the same weights, on the same real text.

The reference outputs are computed in the child before any transform touches the model, and the
variant's outputs after the timed window, so quality work never shares a clock with latency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import QualitySettings
from ..records.schema import Quality
from ..models.inputs import make_inputs, token_stream
from . import metrics

LM_CHUNK = 4  # windows per forward pass: bounds memory for 50k-vocabulary logits


@dataclass
class QualityInputs:
    task: str
    batches: list[dict[str, np.ndarray]]
    labels: list[np.ndarray] | None  # causal LMs: next-token labels, -100 where not scored
    description: dict


def quality_inputs(tokenizer: Any, task: str, vocab_size: int, q: QualitySettings) -> QualityInputs:
    if task == "encoder":
        inputs, info = make_inputs(tokenizer, "encoder", q.encoder_samples, q.encoder_seq_len, vocab_size)
        return QualityInputs(task, [inputs], None, {"samples": q.encoder_samples, "seq_len": q.encoder_seq_len,
                                                    "text": info["text"]})
    need = q.lm_window + (q.lm_windows - 1) * q.lm_stride
    ids = np.asarray(token_stream(tokenizer, need), dtype=np.int64) % vocab_size
    windows = metrics.perplexity_windows(ids.tolist(), q.lm_window, q.lm_stride, q.lm_windows)
    batches, labels = [], []
    for i in range(0, len(windows), LM_CHUNK):
        chunk = windows[i:i + LM_CHUNK]
        input_ids = np.stack([np.asarray(w[0], dtype=np.int64) for w in chunk])
        batches.append({"input_ids": input_ids, "attention_mask": np.ones_like(input_ids)})
        labels.append(np.stack([np.asarray(w[1], dtype=np.int64) for w in chunk]))
    return QualityInputs(task, batches, labels, {"windows": len(windows), "window": q.lm_window,
                                                 "stride": q.lm_stride, "scored_tokens": int(sum((l != -100).sum() for l in labels)),
                                                 "text": "pydoc_data.topics (stdlib), fixed slice from the start"})


def torch_outputs(model: Any, task: str, qin: QualityInputs) -> list[np.ndarray]:
    """Primary outputs of an (untransformed) torch model: the fp32 reference."""
    import torch

    outs = []
    extra = {"use_cache": False} if task == "causal-lm" else {}
    with torch.inference_mode():
        for batch in qin.batches:
            out = model(**{k: torch.from_numpy(v) for k, v in batch.items()}, **extra)
            primary = out.logits if task == "causal-lm" else out.last_hidden_state
            outs.append(primary.float().numpy())
    return outs


def compare(reference: list[np.ndarray], test: list[np.ndarray], qin: QualityInputs,
            q: QualitySettings, weights: str) -> Quality:
    """Quality deltas of `test` against `reference`, with the bound it is judged by.

    With random weights the numbers describe numerical drift only: the verdict says so and never reads
    "within bound", whatever the numbers are.
    """
    meaningful = weights == "real"
    result: dict[str, Any] = {"inputs": qin.description, "meaningful": meaningful}
    if not meaningful:
        result["note"] = "random weights: quality numbers describe numerical drift only, not model quality"
    if qin.task == "encoder":
        mask = qin.batches[0]["attention_mask"]
        result.update(metrics.embedding_quality(reference[0], test[0], mask))
        result["bound"] = {"metric": "cosine_mean", "min": q.cosine_min}
        ok = bool(result["cosine_mean"] >= q.cosine_min)
    else:
        result.update(_lm_quality(reference, test, qin))
        result["bound"] = {"metric": "perplexity_ratio", "max": q.ppl_ratio_max}
        ok = bool(result["perplexity_ratio"] <= q.ppl_ratio_max)
    overflowed = [k for k, v in result.items() if isinstance(v, float) and not np.isfinite(v)]
    for key in overflowed:  # a record holds numbers only; say which overflowed instead
        result[key] = None
    if overflowed:
        result["note"] = (result.get("note", "") + f" {', '.join(overflowed)} overflowed (not finite)").strip()
        ok = False
    if meaningful:
        result.update(within_bound=ok, verdict="within bound" if ok else "breaks bound")
    else:
        result.update(within_bound=None, verdict="not meaningful (random weights)")
    return Quality.model_validate(result)


def _lm_quality(reference: list[np.ndarray], test: list[np.ndarray], qin: QualityInputs) -> dict:
    totals = {"ref_nll": 0.0, "test_nll": 0.0, "kl": 0.0, "top1": 0, "count": 0}
    for ref, out, labels in zip(reference, test, qin.labels):
        for key, value in metrics.lm_comparison_sums(ref, out, labels).items():
            totals[key] += value
    count = totals["count"]
    ppl_ref, ppl = float(np.exp(totals["ref_nll"] / count)), float(np.exp(totals["test_nll"] / count))
    return {"perplexity": ppl, "perplexity_fp32": ppl_ref, "perplexity_ratio": ppl / ppl_ref,
            "kl_divergence_mean": totals["kl"] / count, "top1_agreement": totals["top1"] / count}
