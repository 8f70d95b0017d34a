"""Quality metrics on known inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.config import QualitySettings
from bench.quality import metrics
from bench.quality.evaluate import QualityInputs, compare


def test_identical_outputs_give_neutral_metrics():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 6, 11))
    labels = rng.integers(0, 11, size=(2, 6))
    assert metrics.mean_kl_divergence(logits, logits) == pytest.approx(0, abs=1e-12)
    assert metrics.top1_agreement(logits, logits) == 1.0
    hidden = rng.normal(size=(3, 5, 8))
    q = metrics.embedding_quality(hidden, hidden, np.ones((3, 5)))
    assert q["cosine_mean"] == pytest.approx(1) and q["cosine_min"] == pytest.approx(1)
    qin = QualityInputs("causal-lm", [{"input_ids": labels}], [labels], {})
    result = compare([logits], [logits], qin, QualitySettings(), "real")
    assert result.perplexity_ratio == pytest.approx(1) and result.kl_divergence_mean == pytest.approx(0, abs=1e-12)
    assert result.top1_agreement == 1 and result.within_bound and result.meaningful
    assert result.verdict == "within bound"


def test_perplexity_by_hand():
    # Two predictions over 3 classes; the scored next tokens have probabilities 1/2 and 1/4.
    logits = np.log(np.array([[[0.5, 0.25, 0.25], [0.25, 0.25, 0.5], [1 / 3, 1 / 3, 1 / 3]]]))
    labels = np.array([[2, 0, 1]])  # position 0 predicts labels[1]=0 (p=.5), position 1 predicts labels[2]=1 (p=.25)
    assert metrics.perplexity(logits, labels) == pytest.approx(math.exp(-(math.log(0.5) + math.log(0.25)) / 2))
    total, count = metrics.nll_sum_and_count(logits, np.array([[2, -100, 1]]))
    assert count == 1 and total == pytest.approx(-math.log(0.25))


def test_kl_and_agreement_detect_change():
    ref = np.array([[[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
    test = np.array([[[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]]])
    assert metrics.top1_agreement(ref, test) == 0.5
    p = np.exp(ref[0, 1]) / np.exp(ref[0, 1]).sum()
    q = np.exp(test[0, 1]) / np.exp(test[0, 1]).sum()
    assert metrics.mean_kl_divergence(ref, test) == pytest.approx((p * np.log(p / q)).sum() / 2)


def test_cosine_of_scaled_and_opposite_embeddings():
    a = np.array([[1.0, 2.0, 3.0], [1.0, 0.0, 0.0]])
    b = np.array([[2.0, 4.0, 6.0], [-1.0, 0.0, 0.0]])
    np.testing.assert_allclose(metrics.cosine_similarities(a, b), [1.0, -1.0])


def test_perplexity_windows_score_each_token_once():
    ids = list(range(100))
    windows = metrics.perplexity_windows(ids, window=20, stride=10, max_windows=5)
    assert len(windows) == 5 and all(len(w[0]) == 20 for w in windows)
    assert windows[0][1] == list(range(20))
    assert windows[1][1][:10] == [-100] * 10 and windows[1][1][10:] == list(range(20, 30))
    with pytest.raises(ValueError):
        metrics.perplexity_windows(ids, window=10, stride=20, max_windows=1)


def test_random_weights_mark_quality_not_meaningful():
    hidden = np.ones((1, 4, 3))
    qin = QualityInputs("encoder", [{"attention_mask": np.ones((1, 4))}], None, {})
    result = compare([hidden], [hidden * 0.5], qin, QualitySettings(), "random")
    assert not result.meaningful and "random" in result.note
    assert result.cosine_mean == pytest.approx(1)
    # numbers inside the bound, yet random weights: the verdict never reads "within bound"
    assert result.verdict == "not meaningful (random weights)" and result.within_bound is None


def test_fused_lm_sums_match_the_separate_metrics():
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(2, 9, 50)).astype(np.float32)
    test = (ref + rng.normal(scale=0.3, size=ref.shape)).astype(np.float32)
    labels = rng.integers(0, 50, size=(2, 9))
    labels[1, :4] = -100
    sums = metrics.lm_comparison_sums(ref, test, labels)
    mask = metrics.prediction_mask(labels)
    ref_total, count = metrics.nll_sum_and_count(ref, labels)
    test_total, _ = metrics.nll_sum_and_count(test, labels)
    assert sums["count"] == count == int(mask.sum())
    assert sums["ref_nll"] == pytest.approx(ref_total) and sums["test_nll"] == pytest.approx(test_total)
    assert sums["kl"] / count == pytest.approx(metrics.mean_kl_divergence(ref, test, mask))
    assert sums["top1"] / count == pytest.approx(metrics.top1_agreement(ref, test, mask))
    assert sums["kl"] > 0 and metrics.lm_comparison_sums(ref, ref, labels)["kl"] == 0.0
