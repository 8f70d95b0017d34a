"""Looking at ONNX graphs without changing them: op counts, a synthetic feed for a text model's graph, and
the comparison of two graphs' outputs that catches a wrong rewrite."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np

from ..decoder import extra_inputs


def op_counts(model_proto: Any) -> collections.Counter:
    return collections.Counter(f"{n.domain + '.' if n.domain not in ('', 'ai.onnx') else ''}{n.op_type}"
                               for n in model_proto.graph.node)


def synthetic_feed(session: Any, batch: int = 2, seq: int = 8) -> dict[str, np.ndarray]:
    """Small inputs for a text model's graph: ids < 100, the last row right-padded by a quarter (a decoder
    with a KV cache gets an empty one)."""
    rng = np.random.default_rng(0)
    feed = extra_inputs(session.get_inputs(), batch, seq)
    for i in session.get_inputs():
        if i.name in feed:
            continue
        if "mask" in i.name:
            mask = np.ones((batch, seq), dtype=np.int64)
            mask[-1, seq - max(1, seq // 4):] = 0
            feed[i.name] = mask
        elif "token_type" in i.name:
            feed[i.name] = np.zeros((batch, seq), dtype=np.int64)
        else:
            feed[i.name] = rng.integers(1, 100, (batch, seq), dtype=np.int64)
        if i.type == "tensor(int32)":
            feed[i.name] = feed[i.name].astype(np.int32)
    return feed


def cpu_session(path: Path) -> Any:
    """A one-thread CPU session to check a rewritten graph against its input (not the timed session)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def compare_graphs(path_a: Path, path_b: Path) -> float:
    """max |a - b| of the first outputs over non-padded positions, on a synthetic feed: catches a wrong fusion."""
    a, b = (cpu_session(p) for p in (path_a, path_b))
    feed = synthetic_feed(a)
    out_a, out_b = a.run(None, feed)[0], b.run(None, feed)[0]
    if out_a.shape != out_b.shape:
        return float("inf")
    mask = next((v for k, v in feed.items() if "mask" in k), None)
    if mask is not None and out_a.shape[:2] == mask.shape:
        out_a, out_b = out_a[mask.astype(bool)], out_b[mask.astype(bool)]
    return float(np.abs(out_a.astype(np.float64) - out_b).max())
