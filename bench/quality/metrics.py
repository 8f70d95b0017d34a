"""Label-free quality metrics (numpy only): perplexity, KL divergence, top-1 agreement, cosine similarity."""

from __future__ import annotations

import numpy as np

IGNORE = -100


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def nll_sum_and_count(logits: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """Summed negative log-likelihood of labels[:, 1:] under logits[:, :-1], ignoring -100 labels."""
    pred, target = logits[:, :-1], labels[:, 1:]
    mask = target != IGNORE
    if not mask.any():
        return 0.0, 0
    logp = _log_softmax(pred[mask])
    picked = logp[np.arange(len(logp)), target[mask]]
    return float(-picked.sum()), int(mask.sum())


def perplexity(logits: np.ndarray, labels: np.ndarray) -> float:
    total, count = nll_sum_and_count(logits, labels)
    if count == 0:
        raise ValueError("no scored tokens")
    return float(np.exp(total / count))


def _positions(logits: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return np.ones(logits.shape[:-1], dtype=bool) if mask is None else mask.astype(bool)


def mean_kl_divergence(ref_logits: np.ndarray, test_logits: np.ndarray, mask: np.ndarray | None = None) -> float:
    """KL(P_ref || P_test) of the next-token distributions, averaged over the masked positions."""
    m = _positions(ref_logits, mask)
    lp, lq = _log_softmax(ref_logits[m]), _log_softmax(test_logits[m])
    return float((np.exp(lp) * (lp - lq)).sum(axis=-1).mean())


def top1_agreement(ref_logits: np.ndarray, test_logits: np.ndarray, mask: np.ndarray | None = None) -> float:
    m = _positions(ref_logits, mask)
    return float((ref_logits[m].argmax(-1) == test_logits[m].argmax(-1)).mean())


def prediction_mask(labels: np.ndarray) -> np.ndarray:
    """Positions whose next token is scored: position t predicts labels[t + 1]."""
    mask = np.zeros(labels.shape, dtype=bool)
    mask[:, :-1] = labels[:, 1:] != IGNORE
    return mask


def mean_pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    w = attention_mask[..., None].astype(np.float64)
    return (hidden.astype(np.float64) * w).sum(axis=1) / np.clip(w.sum(axis=1), 1e-9, None)


def cosine_similarities(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    num = (ref * test).sum(-1)
    den = np.linalg.norm(ref, axis=-1) * np.linalg.norm(test, axis=-1)
    return num / np.clip(den, 1e-12, None)


def embedding_quality(ref_hidden: np.ndarray, test_hidden: np.ndarray, attention_mask: np.ndarray) -> dict:
    cos = cosine_similarities(mean_pool(ref_hidden, attention_mask), mean_pool(test_hidden, attention_mask))
    return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}


def perplexity_windows(token_ids: list[int], window: int, stride: int, max_windows: int) -> list[tuple[list[int], list[int]]]:
    """Fixed sliding windows: each scores only its last `stride` tokens (labels -100 elsewhere), HF-style.

    The first window scores all its tokens after the first; later windows keep `window - stride` tokens of
    context. Deterministic for a given token list.
    """
    if stride > window:
        raise ValueError("stride must not exceed window")
    out = []
    for i in range(max_windows):
        start = i * stride
        ids = token_ids[start:start + window]
        if len(ids) < window:
            break
        labels = list(ids) if i == 0 else [IGNORE] * (window - stride) + list(ids[window - stride:])
        out.append((list(ids), labels))
    return out
