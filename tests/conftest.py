"""Shared fixtures: tiny models built from configs, written as suites, so tests stay fast and offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_GPT2 = {"name": "tiny-gpt2", "source": "random", "id": "gpt2",
             "overrides": {"n_layer": 2, "n_embd": 32, "n_head": 2, "n_positions": 256}}
TINY_BERT = {"name": "tiny-bert", "source": "random", "id": "bert-base-uncased",
             "overrides": {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2,
                           "intermediate_size": 64}}
def tiny_causal_config(arch: str, **overrides):
    """A tiny random GPT-2 or Llama (GQA: 2 kv heads for 4 query heads) config. GPT-2 at a wider initialisation:
    at the default 0.02 a tiny random GPT-2 repeats one token, and a test of token equality could not fail."""
    import transformers

    if arch == "gpt2":
        return transformers.GPT2Config(**{"n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 256,
                                          "initializer_range": 0.3, **overrides})
    return transformers.LlamaConfig(**{"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
                                       "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 1000,
                                       "max_position_embeddings": 256, **overrides})


FAST_DEFAULTS = {"warmup_iterations": 1, "warmup_s": 0.0, "min_iterations": 5, "min_duration_s": 0.0,
                 "timeout_s": 120, "intra_op_threads": 1}


def tiny_suite(**overrides) -> dict:
    suite = {"name": "tiny", "models": [TINY_GPT2, TINY_BERT], "variants": ["fp32"],
             "batch_sizes": [2], "seq_lens": [16], "defaults": dict(FAST_DEFAULTS)}
    suite.update(overrides)
    return suite


@pytest.fixture
def write_suite(tmp_path: Path):
    def write(data, name: str = "suite.yaml") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
        return path

    return write


@pytest.fixture
def saved_figures(monkeypatch):
    """Every matplotlib figure saved during the test, with its path, so tests assert what a plot shows
    (points, labels, lines) rather than only that a file exists."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    saved: list[tuple[Figure, Path]] = []
    real = Figure.savefig

    def capture(self, fname, *args, **kwargs):
        saved.append((self, Path(fname)))
        return real(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", capture)
    return saved


def figure_texts(fig) -> list[str]:
    """Titles, axis labels, annotations and legend entries (the axes' and the figure's) of a figure."""
    texts = []
    for ax in fig.axes:
        texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()] + [t.get_text() for t in ax.texts]
        legend = ax.get_legend()
        if legend:
            texts += [t.get_text() for t in legend.get_texts()]
    return texts + [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def figure_points(fig) -> list[tuple[float, float]]:
    """Every (x, y) drawn as a marker (lines with a marker style) on the figure's axes."""
    points = []
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_marker() not in (None, "", "None", " "):
                points += list(zip(line.get_xdata(), line.get_ydata()))
    return points
