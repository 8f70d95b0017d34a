"""recover-distill on tiny BERT, GPT-2 and Llama: the loss falls, the seed fixes the result, the training text is
disjoint from what the harness evaluates, the weights are cached, and a suite shows quality before and after."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from bench.cli import main
from bench.config import QualitySettings
from bench.context import RunContext
from bench.models.inputs import make_inputs
from bench.models.sources import stand_in_tokenizer
from bench.models.text import reference_text
from bench.quality.evaluate import quality_inputs
from bench.records.store import load_records
from bench.models.inputs import held_out_windows
from bench.variants import recovery, transforms
from bench.variants.pruning.structured import structured_prune

from conftest import TINY_BERT, TINY_GPT2, tiny_suite

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# A larger init than the default 0.02, so that removing half the FFN neurons visibly moves the outputs and
# there is something to recover; with the default the pruned tiny model is already within noise of the original.
INIT = 0.2
FAST = {"steps": 30, "lr": 1e-3, "seq_len": 32}


def original(family: str):
    torch.manual_seed(0)
    if family == "bert":
        return transformers.BertModel(transformers.BertConfig(
            num_hidden_layers=2, hidden_size=64, num_attention_heads=2, intermediate_size=128, vocab_size=1000,
            initializer_range=INIT)).eval()
    if family == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_layer=2, n_embd=64, n_head=2, vocab_size=1000, initializer_range=INIT)).eval()
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
        vocab_size=1000, initializer_range=INIT)).eval()


class Teacher:
    """ctx.load_original for a model built in the test: a fresh copy each call, and a count of the calls."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self):
        self.calls += 1
        return copy.deepcopy(self.model)


def context(family: str, teacher: Teacher, cache_dir, seed: int = 0) -> RunContext:
    tokenizer, _ = stand_in_tokenizer()
    return RunContext(device="cpu", task="encoder" if family == "bert" else "causal-lm", batch_size=2, seq_len=16,
                      seed=seed, intra_op_threads=1, inter_op_threads=1, cpu_flags=frozenset(), cache_dir=cache_dir,
                      tokenizer=tokenizer, model_config=teacher.model.config,
                      model_key={"model": family, "seed": seed, "torch_transforms": [{"name": "prune-structured"}]},
                      load_original=teacher)


def pruned(model):
    return structured_prune(copy.deepcopy(model), head_fraction=0.0, ffn_fraction=0.5)[0]


def recover(student, ctx, **options):
    cls = transforms.get("recover-distill")
    return cls().apply(student, cls.Options(**{**FAST, **options}), ctx)


def loss_on(student, teacher, task: str, windows) -> float:
    """The distillation loss on fixed windows, so before and after compare on the same data."""
    batch = {"input_ids": windows, "attention_mask": torch.ones_like(windows)}
    extra = {"use_cache": False} if task == "causal-lm" else {}
    with torch.no_grad():
        return recovery.distillation_loss(task, student(**batch, **extra), teacher(**batch, **extra), 2.0).item()


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_distillation_lowers_the_loss_and_leaves_an_inference_model(family, tmp_path):
    teacher = Teacher(original(family))
    ctx = context(family, teacher, tmp_path)
    windows, _ = held_out_windows(ctx.tokenizer, ctx.task, 1000, FAST["seq_len"])
    fixed = windows[-8:]  # held back by no one, but the same before and after
    student = pruned(teacher.model)
    before = loss_on(student, teacher.model, ctx.task, fixed)
    model, info = recover(student, ctx)
    after = loss_on(model, teacher.model, ctx.task, fixed)
    assert after < 0.85 * before, (before, after)  # BERT and GPT-2 fall to about a third, Llama by a fifth
    assert info["steps"] == FAST["steps"] and not info["cache_hit"] and teacher.calls == 1
    assert info["loss_final"] < info["loss_first"] and info["train_s"] > 0 and info["options"]["lr"] == FAST["lr"]
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_recovery_is_reproducible_from_the_seed(tmp_path):
    teacher = Teacher(original("gpt2"))
    runs = [recover(pruned(teacher.model), context("gpt2", teacher, tmp_path / str(i), seed=seed), steps=5)
            for i, seed in enumerate([0, 0, 1])]
    (a, info_a), (b, info_b), (c, _) = runs
    assert info_a["loss_curve"] == info_b["loss_curve"]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_training_text_is_disjoint_from_the_quality_and_timed_text(family, tmp_path):
    teacher = Teacher(original(family))
    ctx = context(family, teacher, tmp_path)
    _, info = recover(pruned(teacher.model), ctx, steps=1)
    trained, evaluated = info["training_text"]["chars"], info["evaluation_text"]["chars"]
    assert evaluated[0] == 0 and evaluated[1] <= trained[0] < trained[1] == len(reference_text())
    # the recorded evaluation range really holds every token the quality check and the timed batch read
    tok = ctx.tokenizer
    prefix = np.asarray(tok(reference_text()[:evaluated[1]], add_special_tokens=False)["input_ids"]) % 1000
    qin = quality_inputs(tok, ctx.task, 1000, QualitySettings())
    timed, _ = make_inputs(tok, ctx.task, ctx.batch_size, ctx.seq_len, 1000)
    for ids in [np.concatenate([b["input_ids"] for b in qin.batches]), timed["input_ids"]]:
        body = (ids[:, 1:-1] if ctx.task == "encoder" else ids).reshape(-1)  # encoder windows are [CLS] ... [SEP]
        assert np.array_equal(body, prefix[:body.size])


def test_second_application_loads_the_cached_weights_without_training(tmp_path):
    teacher = Teacher(original("bert"))
    first, info = recover(pruned(teacher.model), context("bert", teacher, tmp_path), steps=3)
    second, again = recover(pruned(teacher.model), context("bert", teacher, tmp_path), steps=3)
    assert teacher.calls == 1 and not info["cache_hit"] and again["cache_hit"]
    assert again["cache_key"] == info["cache_key"] and again["loss_curve"] == info["loss_curve"]
    assert all(torch.equal(x, y) for x, y in zip(first.state_dict().values(), second.state_dict().values()))
    assert not any(p.requires_grad for p in second.parameters())
    # another starting model (a different prune) or other options train afresh
    other_prune = structured_prune(copy.deepcopy(teacher.model), head_fraction=0.0, ffn_fraction=0.25)[0]
    _, other = recover(other_prune, context("bert", teacher, tmp_path), steps=3)
    _, longer = recover(pruned(teacher.model), context("bert", teacher, tmp_path), steps=4)
    assert not other["cache_hit"] and not longer["cache_hit"] and teacher.calls == 3


def test_suite_shows_quality_before_and_after_recovery(write_suite, tmp_path):
    prune = {"name": "prune-structured", "options": {"ffn_fraction": 0.5}}
    variants = [{"name": "pruned", "transforms": [prune]},
                {"name": "recovered", "transforms": [prune, {"name": "recover-distill", "options": FAST}]}]
    models = [{**m, "overrides": {**m["overrides"], "initializer_range": INIT}} for m in (TINY_BERT, TINY_GPT2)]
    path = write_suite(tiny_suite(models=models, variants=variants,
                                  quality={"encoder_samples": 4, "encoder_seq_len": 16, "lm_windows": 2,
                                           "lm_window": 32, "lm_stride": 32}))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    recs = load_records(out)
    assert all(r.status == "ok" for r in recs), [(r.config.variant.name, r.error) for r in recs]
    by = {(r.config.model.name, r.config.variant.name): r for r in recs}
    for model in ("tiny-bert", "tiny-gpt2"):
        applied = by[model, "recovered"].provenance.transforms
        assert [(t["name"], t["kind"]) for t in applied] == [("prune-structured", "pruning"),
                                                              ("recover-distill", "recovery")]
        assert applied[1]["steps"] == FAST["steps"] and applied[1]["cache_hit"] is False
    before, after = by["tiny-bert", "pruned"].metrics.quality, by["tiny-bert", "recovered"].metrics.quality
    assert 1 - after.cosine_mean < 0.5 * (1 - before.cosine_mean), (before.cosine_mean, after.cosine_mean)
    before, after = by["tiny-gpt2", "pruned"].metrics.quality, by["tiny-gpt2", "recovered"].metrics.quality
    assert after.kl_divergence_mean < 0.5 * before.kl_divergence_mean, (before.kl_divergence_mean,
                                                                        after.kl_divergence_mean)
