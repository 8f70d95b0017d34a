"""Decoders on ONNX Runtime with a KV cache: export with past-key-value inputs and outputs, verify against
PyTorch token by token, and greedy generation that keeps the cache in ORT-owned buffers.

Why written here rather than taken from a library (checked with torch 2.13 / transformers 5.23 / ORT 1.32):
optimum-onnx 0.1.0 pins transformers < 4.58; ORT's own converters (onnxruntime.transformers.models.gpt2 and
.llama) pass past key values as tuples, which transformers 5 no longer accepts; onnxruntime-genai's model
builder has no GPT-2 and rebuilds the graph from checkpoint weights, so torch-stage transforms (pruning,
structured removal) would silently be lost. Here the transformed torch model itself is traced.

The graph is one "merged" decoder for prefill and decode (names as ORT's and optimum's exporters use):

* inputs: `input_ids` [batch, seq], `attention_mask` [batch, past + seq], `position_ids` [batch, seq] (each
  token's position in its own row: a left-padded row counts from its first real token, which GPT-2's learned
  positions need), `logit_positions` [kept] (the
  sequence positions whose logits are computed, transformers' tensor `logits_to_keep`: every position for
  perplexity, the last for generation, so prefill is not charged the LM head per prompt token, as in
  `torch_generate`), and `past_key_values.{i}.key|value` [batch, kv_heads, past, head_dim] (past = 0 for
  prefill; GQA models carry only their kv heads);
* outputs: `logits` [batch, kept, vocab] and `present.{i}.key|value` [batch, kv_heads, past + seq, head_dim].

Unpadded prompts take positions past length + arange, the model's own default, as in `torch_generate`; a batch of
prompts of different lengths (the serving engines) is left-padded with each row's own positions. Traced with a
non-empty past: `DynamicLayer.get_seq_length` answers a Python 0 for an empty
cache, which a trace would bake in; a traced non-empty past runs at past 0 too (checked by the tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ...errors import Unsupported
from ...models.families import context_length
from .export import GraphSpec, cached_graph, evaluating, export_graph
from .session import PROVIDERS

PAST, PRESENT = "past_key_values", "present"
POSITION_IDS, LOGIT_POSITIONS = "position_ids", "logit_positions"
VERIFY_TOKENS = 16  # greedy tokens compared with PyTorch once per export
NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def is_decoder_graph(input_names) -> bool:
    return any(n.startswith(PAST + ".") for n in input_names)


def _past_layout(graph_inputs) -> dict[str, tuple[int, int, Any]]:
    """{past input name: (kv heads, head dim, numpy dtype)} from ORT's input descriptions."""
    return {i.name: (i.shape[1], i.shape[3], NUMPY_TYPES[i.type]) for i in graph_inputs
            if i.name.startswith(PAST + ".")}


def extra_inputs(graph_inputs, batch: int, seq: int) -> dict[str, np.ndarray]:
    """What a decoder graph takes besides input_ids and attention_mask for one full-sequence forward: an
    empty KV cache, positions from 0 and logits at every position ({} for any other graph)."""
    extra = {name: np.zeros((batch, heads, 0, dim), dtype) for name, (heads, dim, dtype) in
             _past_layout(graph_inputs).items()}
    if extra:
        extra[LOGIT_POSITIONS] = np.arange(seq, dtype=np.int64)
        if POSITION_IDS in {i.name for i in graph_inputs}:
            extra[POSITION_IDS] = np.broadcast_to(np.arange(seq, dtype=np.int64), (batch, seq)).copy()
    return extra


# --- export --------------------------------------------------------------------------------------

def _module(model: Any, layers: int):
    """A module taking (input_ids, attention_mask, position_ids, logit_positions, *past) and returning
    (logits, *present)."""
    import torch
    from transformers import DynamicCache

    class WithPast(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args):
            input_ids, attention_mask, position_ids, logit_positions, *past = args
            cache = DynamicCache([(past[2 * i], past[2 * i + 1]) for i in range(layers)], config=self.model.config)
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             past_key_values=cache, use_cache=True, logits_to_keep=logit_positions)
            return (out.logits, *[t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)])

    return WithPast().eval()


def _example(model: Any, input_ids: Any) -> tuple:
    """Export arguments from the prompt (unpadded): its first half as a real past, its second half as input,
    at least two rows and two tokens each, so neither exporter specialises a dynamic axis to 0 or 1."""
    import torch

    rows, length = max(2, input_ids.shape[0]), max(4, input_ids.shape[1])
    ids = input_ids.repeat((rows + input_ids.shape[0] - 1) // input_ids.shape[0], 1)[:rows]
    ids = ids.repeat(1, (length + ids.shape[1] - 1) // ids.shape[1])[:, :length]
    mask = torch.ones_like(ids)
    split = length // 2
    with torch.no_grad():
        cache = model(input_ids=ids[:, :split], attention_mask=mask[:, :split], use_cache=True).past_key_values
    past = [t for layer in cache.layers for t in (layer.keys, layer.values)]
    positions = torch.arange(split, length).expand(rows, -1).contiguous()
    return (ids[:, split:], mask, positions, torch.arange(length - split), *past)


def decoder_spec(model: Any, input_ids: Any) -> GraphSpec:
    args = _example(model, input_ids)
    layers = (len(args) - 4) // 2
    past = [f"{PAST}.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    present = [f"{PRESENT}.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "total"},
            POSITION_IDS: {0: "batch", 1: "seq"}, LOGIT_POSITIONS: {0: "kept"}, "logits": {0: "batch", 1: "kept"},
            **{n: {0: "batch", 2: "past"} for n in past}, **{n: {0: "batch", 2: "total"} for n in present}}
    return GraphSpec(module=_module(model, layers), args=args,
                     input_names=["input_ids", "attention_mask", POSITION_IDS, LOGIT_POSITIONS, *past],
                     output_names=["logits", *present], axes=axes,
                     bounds={"batch": (1, 4096), "seq": (1, 8192), "total": (2, 16384), "kept": (1, 8192),
                             "past": (1, 8192)})


def verify_greedy(model: Any, session: Any, input_ids: Any, attention_mask: Any, new_tokens: int) -> dict:
    """ORT's KV-cache decoding against PyTorch on the same prompt, `new_tokens` greedy steps.

    PyTorch's tokens come from `torch_generate.greedy_generate`; its reference logits from one cache-free
    forward over prompt + tokens. ORT is fed PyTorch's tokens (teacher forcing), so every step's logits are
    compared even after a near-tie flips a token; its own argmax at each step equals free-running greedy
    decoding up to the first mismatch, which is where `greedy_tokens_identical` would turn false.
    """
    import torch

    from ..pytorch.generate import greedy_generate as torch_greedy

    limit = context_length(model.config)
    new_tokens = min(new_tokens, limit - input_ids.shape[1]) if limit else new_tokens
    if new_tokens < 1:
        return {"skipped": f"the prompt ({input_ids.shape[1]} tokens) fills the model's {limit} positions"}
    tokens = torch_greedy(model, input_ids, attention_mask, new_tokens, lambda i: None, "cpu")
    full = torch.cat([input_ids, tokens], 1)
    with torch.inference_mode():
        ref = model(input_ids=full, attention_mask=torch.ones_like(full), use_cache=False).logits
    prompt = input_ids.shape[1]
    ref = ref[:, prompt - 1:prompt - 1 + new_tokens].float().numpy()
    decoder = CachedDecoder(session, "cpu")
    got = [decoder.prefill(input_ids.numpy(), attention_mask.numpy())]
    got += [decoder.step(tokens[:, i:i + 1].numpy()) for i in range(new_tokens - 1)]
    got = np.stack(got, 1)
    ours, theirs = got.argmax(-1), tokens.numpy()
    mismatch = np.argwhere(ours != theirs)
    found = {"new_tokens": new_tokens, "rows": int(input_ids.shape[0]), "prompt_tokens": prompt,
             "greedy_tokens_identical": not len(mismatch), "max_abs_logit_diff": float(np.abs(got - ref).max())}
    if len(mismatch):
        row, step = (int(x) for x in mismatch[0])
        top2 = np.sort(ref[row, step])[-2:]
        found["first_mismatch"] = {"row": row, "step": step, "torch_top2_margin": float(top2[1] - top2[0])}
    return found


def export_decoder(model: Any, input_ids: Any, attention_mask: Any, path: Path, opset: int,
                   exporter: str = "auto") -> dict:
    """Export the KV-cache decoder graph to `path`; it must match PyTorch on the export example (every output)
    and over `VERIFY_TOKENS` greedy steps on the prompt (logits within 1e-3 relative); what was found is returned."""
    import onnxruntime as ort
    import torch

    with evaluating(model):
        spec = decoder_spec(model, input_ids)
        with torch.no_grad():
            ref = [t.float().numpy() for t in spec.module(*spec.args)]
        tolerance = 1e-3 * max(1.0, float(np.abs(ref[0]).max()))

        def check(raw: Path) -> tuple[bool, dict]:
            session = ort.InferenceSession(str(raw), providers=["CPUExecutionProvider"])
            got = session.run(None, {n: a.numpy() for n, a in zip(spec.input_names, spec.args)})
            diff = max(float(np.abs(g - r).max()) if g.shape == r.shape else float("inf") for g, r in zip(got, ref))
            greedy = verify_greedy(model, session, input_ids, attention_mask, VERIFY_TOKENS)
            agrees = diff <= tolerance and greedy.get("max_abs_logit_diff", 0.0) <= tolerance
            return agrees, {"max_abs_diff_vs_torch": diff, "tolerance": tolerance, "greedy_vs_torch": greedy}

        info = export_graph(model, spec, path, opset, check, exporter)
    return {**info, "graph": "decoder with past key values", "inputs": spec.input_names,
            "outputs": spec.output_names}


def cached_decoder_export(model: Any, input_ids: Any, attention_mask: Any, key_parts: dict, cache_dir: Path,
                          opset: int) -> tuple[Path, bool]:
    return cached_graph({**key_parts, "graph": "decoder-with-past-and-positions"}, cache_dir, opset,
                        lambda path: export_decoder(model, input_ids, attention_mask, path, opset))


# --- generation ------------------------------------------------------------------------------------

class CachedDecoder:
    """Prefill, then one token per step, on a decoder graph through IO binding.

    Each step's `present.*` outputs stay where ORT allocated them (host memory on CPU, device memory on
    CUDA) and are bound as the next step's `past_key_values.*` inputs, so the cache never passes through
    numpy; only the token ids, the mask and the last position's logits cross. The graph's Concat still copies
    the cache into each new `present` (as transformers' DynamicCache does with torch.cat).
    """

    def __init__(self, session: Any, provider: str):
        self.session, self.device = session, PROVIDERS[provider].ort_device
        self._layout = _past_layout(session.get_inputs())
        self._takes_positions = POSITION_IDS in {i.name for i in session.get_inputs()}
        self._outputs = [o.name for o in session.get_outputs()]
        self._binding = session.io_binding()
        self._past: dict[str, Any] = {}
        self._mask = np.zeros((0, 0), np.int64)
        self._positions = np.zeros((0, 1), np.int64)

    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray,
                position_ids: np.ndarray | None = None) -> np.ndarray:
        """Logits [batch, vocab] of the prompt's last position; the cache now holds the prompt. `position_ids`
        None: 0..seq-1 in every row (an unpadded batch)."""
        from onnxruntime import OrtValue

        batch, seq = input_ids.shape
        default = np.broadcast_to(np.arange(seq, dtype=np.int64), (batch, seq))
        if position_ids is None:
            position_ids = default
        elif not self._takes_positions and not np.array_equal(position_ids, default):
            raise Unsupported("this decoder graph takes no position_ids (an export from before they were an input): "
                              "in a left-padded batch its rows would be at the wrong positions; export it again")
        self._past = {name: OrtValue.ortvalue_from_shape_and_type((batch, heads, 0, dim), dtype, self.device, 0)
                      for name, (heads, dim, dtype) in self._layout.items()}
        self._mask = np.ascontiguousarray(attention_mask, dtype=np.int64)
        self._positions = np.ascontiguousarray(position_ids, dtype=np.int64)
        return self._run(input_ids, np.array([seq - 1], dtype=np.int64))

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Logits [batch, vocab] after appending `tokens` [batch, 1] to the cache."""
        self._mask = np.concatenate([self._mask, np.ones((len(self._mask), 1), np.int64)], 1)
        self._positions = self._positions[:, -1:] + 1
        return self._run(tokens, np.zeros(1, dtype=np.int64))

    def _run(self, input_ids: np.ndarray, logit_positions: np.ndarray) -> np.ndarray:
        binding = self._binding
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(input_ids, dtype=np.int64))
        binding.bind_cpu_input("attention_mask", self._mask)
        if self._takes_positions:
            binding.bind_cpu_input(POSITION_IDS, self._positions)
        binding.bind_cpu_input(LOGIT_POSITIONS, logit_positions)
        for name, value in self._past.items():
            binding.bind_ortvalue_input(name, value)
        binding.clear_binding_outputs()  # fresh outputs each step: the cache grows
        for name in self._outputs:  # logits to the host for argmax, the cache where the provider computes
            binding.bind_output(name, "cpu" if name == "logits" else self.device)
        self.session.run_with_iobinding(binding)
        outputs = dict(zip(self._outputs, binding.get_outputs()))
        self._past = {name: outputs[PRESENT + name[len(PAST):]] for name in self._layout}
        return outputs["logits"].numpy()[:, -1]


def greedy_steps(decoder: CachedDecoder, input_ids: np.ndarray, attention_mask: np.ndarray,
                 position_ids: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Each step's greedy tokens [batch], computed when asked for: stop iterating and no further step runs."""
    tokens = decoder.prefill(input_ids, attention_mask, position_ids).argmax(-1)
    while True:
        yield tokens
        tokens = decoder.step(tokens[:, None]).argmax(-1)


def greedy_generate(decoder: CachedDecoder, input_ids: np.ndarray, attention_mask: np.ndarray, new_tokens: int,
                    on_token: Callable[[int], None]) -> np.ndarray:
    """Exactly `new_tokens` greedy tokens per row (no EOS stop), reporting token i as soon as it exists."""
    tokens = np.empty((len(input_ids), new_tokens), dtype=np.int64)
    for i, step in zip(range(new_tokens), greedy_steps(decoder, input_ids, attention_mask)):
        tokens[:, i] = step
        on_token(i)
    return tokens
