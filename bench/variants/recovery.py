"""Recovery for pruned models: a short, seeded knowledge-distillation fine-tune against the fp32 original.

Structured pruning makes a smaller dense model whose outputs drift (MiniLM with half its FFN neurons removed:
embedding cosine 0.71). `recover-distill` trains the pruned model to reproduce the untransformed fp32 model
(the teacher, `ctx.load_original()`) on text the harness never evaluates: the second half of the reference
text, while the quality check and the timed batch read the token stream from its start. Both character ranges
are recorded, so a reader can check they are disjoint.

The recovered weights are cached like exports, keyed by everything that made the model it starts from and by
the recovery's options, so a suite pays for one recovery however many points (or int8 variants) reuse it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from ..cache import build_once, cache_key
from ..config import NoOptions
from . import Transform, transforms

# A step of 8 x 128 tokens costs SmolLM2-135M about 7x what it costs MiniLM, so the budget is per task. On 2 CPU
# cores shared with other work (load average 4.8) MiniLM's 60 steps took 195 s and lifted its embedding cosine at
# 50% FFN removed from 0.71 to 0.92; SmolLM2 took about 28 s a step in a 3-step probe (load 3-4).
DEFAULT_STEPS = {"encoder": 60, "causal-lm": 20}
WEIGHTS, FIGURES = "state_dict.pt", "training.json"
CURVE_POINTS = 10  # losses recorded along the run, besides the first and the last


@transforms.register("recover-distill")
class RecoverDistill(Transform):
    """Distil the fp32 original into the (pruned) model: last-hidden-state MSE plus pooled-embedding cosine for
    encoders, temperature-softened next-token KL for causal LMs. AdamW, linear decay, dropout off."""

    kind = "recovery"

    class Options(NoOptions):
        steps: int | None = Field(None, ge=1, description=f"optimizer steps; default {DEFAULT_STEPS} by task")
        lr: float = Field(2e-4, gt=0, description="AdamW peak learning rate, decayed linearly to zero")
        batch_size: int = Field(8, ge=1, description="training windows per step")
        seq_len: int = Field(128, ge=4, description="tokens per training window")
        temperature: float = Field(2.0, gt=0, description="causal LMs: softening of both next-token distributions")

    def apply(self, model, options, ctx):
        import torch

        steps = options.steps or DEFAULT_STEPS[ctx.task]
        start_weights = weights_digest(model)
        # the digest names the starting model exactly: activation ranking depends on calibration windows that
        # move with batch size and sequence length, which the model key does not name
        key = cache_key({"model": ctx.model_key, "start_weights": start_weights, "seed": ctx.seed,
                         "options": {**options.model_dump(), "steps": steps}})
        folder = Path(ctx.cache_dir) / "recovered" / key

        def build(tmp: Path) -> None:
            figures = recover(model, ctx, options.model_copy(update={"steps": steps}))
            torch.save(model.state_dict(), tmp / WEIGHTS)
            (tmp / FIGURES).write_text(json.dumps({**figures, "start_weights": start_weights}, indent=1))

        hit = build_once(folder, build)
        if hit:
            model.load_state_dict(torch.load(folder / WEIGHTS, weights_only=True))
        model.eval().requires_grad_(False)
        return_freed_memory()
        return model, {"cache_hit": hit, "cache_key": key, **json.loads((folder / FIGURES).read_text())}

    def describe(self, options):
        steps = f"{options.steps} steps" if options.steps else "default steps"
        return f"distilled from fp32 ({steps} of {options.batch_size}x{options.seq_len}, lr {options.lr:g})"


def weights_digest(model: Any) -> str:
    """A short hash of every tensor in the state dict (name, dtype, shape, bytes)."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:20]


def recover(model: Any, ctx: Any, options: Any) -> dict:
    """Distil `ctx.load_original()` into `model` in place; return what was done (data, losses, time)."""
    started = time.perf_counter()
    teacher = ctx.load_original()
    from ..models.inputs import held_out_windows

    windows, training_text = held_out_windows(ctx.tokenizer, ctx.task, ctx.model_config.vocab_size, options.seq_len)
    evaluation_text = evaluated_text(ctx.tokenizer, ctx.task, ctx.batch_size, ctx.seq_len, training_text["chars"][0])
    load_1m = os.getloadavg()[0]
    figures = distill(model, teacher, windows, ctx.task, options, ctx.seed)
    return {"teacher": "the fp32 original (same weights, untransformed)", "options": options.model_dump(),
            **figures, "wall_s": time.perf_counter() - started, "load_average_1m_at_start": load_1m,
            "training_text": training_text, "evaluation_text": evaluation_text}


def evaluated_text(tokenizer: Any, task: str, batch_size: int, seq_len: int, training_start: int) -> dict:
    """The characters the quality check (at its default settings) and the timed batch read: a prefix of the token
    stream. Raises if that prefix would reach the training text."""
    from ..config import QualitySettings
    from ..models.text import reference_text

    q = QualitySettings()
    quality = q.encoder_samples * q.encoder_seq_len if task == "encoder" else q.lm_window + (q.lm_windows - 1) * q.lm_stride
    timed = batch_size * seq_len
    held_out = tokenizer(reference_text()[:training_start], add_special_tokens=False, return_offsets_mapping=True)
    offsets = held_out["offset_mapping"]
    read = max(quality, timed)
    if read > len(offsets):
        raise ValueError(f"the evaluation reads {read} tokens, more than the {len(offsets)} before the training text")
    return {"chars": [0, offsets[read - 1][1]], "tokens": read, "quality_tokens": quality, "quality_settings": "defaults",
            "timed_tokens": timed,
            # a suite's own quality settings stay clear of the training text while they read fewer tokens than this
            "held_out_tokens": len(offsets)}


def distill(student: Any, teacher: Any, windows: Any, task: str, options: Any, seed: int) -> dict:
    """AdamW on the distillation loss, data order from a seeded generator; the student ends in eval mode with
    requires_grad off."""
    import torch

    device = next(student.parameters()).device
    teacher.to(device).eval().requires_grad_(False)
    student.eval().requires_grad_(True)  # eval mode: dropout off, the student should match, not regularise
    # fused: one kernel for all parameters; on CPU about 20x faster than the default (MiniLM: 0.02 s, not 0.5 s)
    optimizer = torch.optim.AdamW(student.parameters(), lr=options.lr, fused=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / options.steps)
    order = _window_order(len(windows), options.batch_size * options.steps, seed)
    extra = {"use_cache": False} if task == "causal-lm" else {}
    losses = []
    train_started = time.perf_counter()
    for step in range(options.steps):
        ids = windows[order[step * options.batch_size:(step + 1) * options.batch_size]].to(device)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), **extra}
        with torch.no_grad():
            target = teacher(**batch)
        loss = distillation_loss(task, student(**batch), target, options.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    train_s = time.perf_counter() - train_started
    optimizer.zero_grad(set_to_none=True)
    student.eval().requires_grad_(False)
    every = max(1, options.steps // CURVE_POINTS)
    return {"steps": options.steps, "loss_first": losses[0], "loss_final": losses[-1],
            "loss_curve": {str(s + 1): losses[s] for s in range(0, options.steps, every)},
            "train_s": train_s, "threads": torch.get_num_threads(), "distinct_windows": len(set(order.tolist())),
            "schedule": "AdamW, linear decay to 0", "seed": seed}


def return_freed_memory() -> None:
    """Hand the heap the training freed back to the OS (glibc keeps it otherwise: MiniLM's process stayed 280 MB
    larger), so the peak RSS measured next in this process is the model's, not the training's residue."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    except (AttributeError, OSError):  # not glibc: nothing to trim
        pass


def _window_order(count: int, needed: int, seed: int) -> Any:
    """Seeded permutations of the window indices, one after another until `needed` are drawn."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    epochs = -(-needed // count)
    return torch.cat([torch.randperm(count, generator=generator) for _ in range(epochs)])[:needed]


def distillation_loss(task: str, student_out: Any, teacher_out: Any, temperature: float) -> Any:
    """Causal LMs: KL(teacher || student) of next-token distributions at `temperature`, scaled by T^2 so the
    gradient keeps its size. Encoders: last-hidden-state MSE relative to the teacher's mean square, plus
    1 - cosine of the mean-pooled embeddings (the quality metric; training windows carry no padding)."""
    import torch.nn.functional as F

    if task == "causal-lm":
        student_logp = F.log_softmax(student_out.logits.flatten(0, 1) / temperature, dim=-1)
        teacher_logp = F.log_softmax(teacher_out.logits.flatten(0, 1) / temperature, dim=-1)
        return F.kl_div(student_logp, teacher_logp, log_target=True, reduction="batchmean") * temperature ** 2
    student_h, teacher_h = student_out.last_hidden_state, teacher_out.last_hidden_state
    mse = (student_h - teacher_h).pow(2).mean() / teacher_h.pow(2).mean()
    cosine = F.cosine_similarity(student_h.mean(dim=1), teacher_h.mean(dim=1), dim=-1)
    return mse + (1 - cosine).mean()
