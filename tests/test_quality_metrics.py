"""bench.quality.metrics on inputs whose answers are known by hand."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from bench.quality import metrics


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_identical_logits_are_neutral(rng):
    logits = rng.normal(size=(2, 7, 13)).astype(np.float32)
    labels = rng.integers(0, 13, size=(2, 7))
    ppl = metrics.perplexity(logits, labels)
    assert metrics.perplexity(logits.copy(), labels) / ppl == 1.0
    assert metrics.mean_kl_divergence(logits, logits) == 0.0
    assert metrics.top1_agreement(logits, logits) == 1.0
    hidden = rng.normal(size=(3, 5, 8))
    q = metrics.embedding_quality(hidden, hidden, np.ones((3, 5)))
    assert q["cosine_mean"] == pytest.approx(1, abs=1e-12) and q["cosine_min"] == pytest.approx(1, abs=1e-12)


def test_perplexity_by_hand_two_tokens_three_classes():
    # position 0 predicts labels[1] = 0 with p = 1/2; position 1 predicts labels[2] = 1 with p = 1/4
    logits = np.log(np.array([[[0.5, 0.25, 0.25], [0.25, 0.25, 0.5], [1 / 3, 1 / 3, 1 / 3]]]))
    labels = np.array([[2, 0, 1]])
    expected = math.exp(-(math.log(0.5) + math.log(0.25)) / 2)  # = sqrt(8)
    assert metrics.perplexity(logits, labels) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(math.sqrt(8))
    # logits shifted by a constant per row give the same distribution
    assert metrics.perplexity(logits + 100.0, labels) == pytest.approx(expected, rel=1e-12)
    total, count = metrics.nll_sum_and_count(logits, np.array([[2, -100, 1]]))
    assert count == 1 and total == pytest.approx(-math.log(0.25))
    total, count = metrics.nll_sum_and_count(logits, labels, mask=np.array([[1, 1, 0]]))
    assert count == 1 and total == pytest.approx(-math.log(0.5))
    assert metrics.nll_sum_and_count(logits, np.full((1, 3), -100)) == (0.0, 0)
    with pytest.raises(ValueError):
        metrics.perplexity(logits, np.full((1, 3), -100))


def test_streaming_nll_adds_up_across_windows(rng):
    logits = rng.normal(size=(4, 9, 6))
    labels = rng.integers(0, 6, size=(4, 9))
    labels[1, :4] = -100
    parts = [metrics.nll_sum_and_count(logits[i:i + 1], labels[i:i + 1]) for i in range(4)]
    total, count = metrics.nll_sum_and_count(logits, labels)
    assert count == sum(c for _, c in parts) == 4 * 8 - 3
    assert total == pytest.approx(sum(t for t, _ in parts))
    assert metrics.perplexity(logits, labels) == pytest.approx(math.exp(total / count))


def test_kl_by_hand_and_stable_for_huge_logits():
    ref = np.array([[[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
    test = np.array([[[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]]])
    p = np.exp(ref[0, 1]) / np.exp(ref[0, 1]).sum()
    q = np.exp(test[0, 1]) / np.exp(test[0, 1]).sum()
    assert metrics.mean_kl_divergence(ref, test) == pytest.approx((p * np.log(p / q)).sum() / 2)
    assert metrics.mean_kl_divergence(ref, test, mask=np.array([[True, False]])) == 0.0
    huge = ref * 1e4  # a naive softmax overflows here
    kl = metrics.mean_kl_divergence(huge.astype(np.float32), (test * 1e4).astype(np.float32))
    assert np.isfinite(kl) and kl == pytest.approx(2e4 / 2, rel=1e-6)


def test_top1_agreement_with_mask():
    ref = np.array([[[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]]])
    test = np.array([[[2.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 3.0]]])
    assert metrics.top1_agreement(ref, test) == pytest.approx(2 / 3)
    assert metrics.top1_agreement(ref, test, mask=np.array([[1, 0, 1]])) == 1.0


def test_mean_pool_ignores_padding_and_cosine_by_hand():
    hidden = np.array([[[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]]])
    np.testing.assert_allclose(metrics.mean_pool(hidden, np.array([[1, 1, 0]])), [[2.0, 1.0]])
    a = np.array([[1.0, 2.0, 3.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    b = np.array([[2.0, 4.0, 6.0], [-1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    np.testing.assert_allclose(metrics.cosine_similarities(a, b), [1.0, -1.0, 1 / math.sqrt(2)])
    q = metrics.embedding_quality(hidden, -hidden, np.ones((1, 3)))
    assert q["cosine_mean"] == pytest.approx(-1) and q["cosine_min"] == pytest.approx(-1)


def test_windows_score_each_token_once_hf_style():
    ids = list(range(100))
    windows = metrics.perplexity_windows(ids, window=20, stride=10, max_windows=5)
    assert len(windows) == 5 and all(len(w) == 20 and len(l) == 20 for w, l in windows)
    assert windows[0] == (list(range(20)), list(range(20)))
    assert windows[1][0] == list(range(10, 30))
    assert windows[1][1] == [-100] * 10 + list(range(20, 30))
    # after the model's shift, every token from 1 to 59 is scored exactly once
    scored = [l for _, labels in windows for l in labels[1:] if l != -100]
    assert scored == list(range(1, 60))
    # only full windows, so the scored set never depends on the text's tail
    assert len(metrics.perplexity_windows(ids, window=30, stride=30, max_windows=10)) == 3
    assert metrics.perplexity_windows(ids, 20, 10, 5) == windows
    for window, stride in [(10, 20), (1, 1), (10, 0)]:
        with pytest.raises(ValueError):
            metrics.perplexity_windows(ids, window=window, stride=stride, max_windows=1)


def test_reference_text_is_stdlib_pydoc_in_sorted_order():
    from pydoc_data.topics import topics

    text = metrics.reference_text()
    assert 400_000 < len(text) < 600_000
    first = sorted(topics)[0]
    assert text.startswith(topics[first])
    assert metrics.text_slice(50, 1000) == text[1000:1050]
    with pytest.raises(ValueError):
        metrics.text_slice(10, len(text))


def test_metrics_import_does_not_load_torch():
    code = "import sys, bench.quality.metrics; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
