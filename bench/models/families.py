"""Model families: what the harness knows about each transformer architecture, in one entry per family.

A family covers the `config.model_type` values that share a module layout and says everything the rest of the
harness needs from the architecture: the config fields holding its dimensions (FLOP and byte accounting),
whether it is a causal LM (task inference), whether its MLP is gated, which model type ORT's transformer
optimizer takes for its graphs, where structured pruning finds the blocks' attention and FFN projections, and
whether those projections are GPT-2's Conv1D (a Linear with its weight stored transposed) or nn.Linear.

A new architecture is one `Family` in `FAMILIES`; `family_of` is the one lookup, and an architecture with no
family is refused with the list of known model types.

ORT optimizer types were checked on graphs from `backends/onnxruntime/export.py` (TorchScript, eager attention) with ORT
1.32: BERT-class and DistilBERT graphs get Attention, SkipLayerNormalization and BiasGelu fusions; MPNet's get
no Attention fusion; ORT's `phi` optimizer raises TypeError on a transformers Phi graph (it expects the graph
of ORT's own dynamo Phi-2 exporter), while the `gpt2` optimizer fuses its LayerNorm and FastGelu.

Importing this module does not import torch or transformers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import Unsupported


@dataclass(frozen=True)
class Dims:
    """The dimensions that decide a forward pass's work."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    positions: int | None
    gated_mlp: bool

    @property
    def q_dim(self) -> int:
        """Width of the attention (queries and context): heads x head_dim (== hidden for GPT-2/BERT/Llama)."""
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


@dataclass(frozen=True)
class ConfigFields:
    """Names of the config attributes holding each dimension.

    `kv_heads` None: every query head has its own K/V. `head_dim` None: the head size is hidden / heads.
    A field the config leaves None falls back the same way (and the FFN width to 4 x hidden, GPT-2's n_inner).
    """

    hidden: str = "hidden_size"
    layers: str = "num_hidden_layers"
    heads: str = "num_attention_heads"
    kv_heads: str | None = None
    head_dim: str | None = None
    intermediate: str = "intermediate_size"
    vocab: str = "vocab_size"
    positions: str = "max_position_embeddings"


HeadQuantity = Literal["heads", "q_width", "kv_groups"]


@dataclass(frozen=True)
class PruningLayout:
    """Where structured pruning finds the parts of one transformer block, as attribute paths from the block.

    Attention projections are either separate (`q`, `k`, `v`) or one packed `[q | k | v]` projection (`qkv`,
    every head with its own K/V). `head_attrs` names the attributes of the `attention` module that its forward
    reads and that must follow a head removal: the query heads left, their width (heads x head_dim), or the
    query heads per KV group.
    """

    attention: str
    out: str
    ffn_up: tuple[str, ...]
    ffn_down: str
    q: str | None = None
    k: str | None = None
    v: str | None = None
    qkv: str | None = None
    head_attrs: dict[str, HeadQuantity] = field(default_factory=dict)

    def paths(self) -> list[str]:
        return [p for p in (self.attention, self.out, self.ffn_down, self.q, self.k, self.v, self.qkv, *self.ffn_up)
                if p is not None]


@dataclass(frozen=True)
class Family:
    """Architectures that share one module layout, and what the harness needs to know about them."""

    name: str
    model_types: frozenset[str]
    causal: bool
    gated_mlp: bool
    ort_model_type: str
    pruning: PruningLayout | None
    fields: ConfigFields = ConfigFields()
    conv1d: bool = False
    ort_note: str | None = None
    """Why `ort_model_type` is a stand-in or what it leaves unfused; None when ORT has the family's own type."""
    pruning_refusal: str | None = None
    """Why structured pruning cannot follow this family's forward (when `pruning` is None)."""

    @property
    def task(self) -> str:
        return "causal-lm" if self.causal else "encoder"

    def dims(self, config: Any) -> Dims:
        """The dimensions read from `config` by this family's field names."""
        f = self.fields

        def read(name: str | None):
            return getattr(config, name, None) if name else None

        hidden, layers, heads, vocab = read(f.hidden), read(f.layers), read(f.heads), read(f.vocab)
        if not all(isinstance(v, int) and v > 0 for v in (hidden, layers, heads, vocab)):
            raise Unsupported(f"{type(config).__name__} lacks {f.hidden}, {f.layers}, {f.heads} or {f.vocab}")
        return Dims(hidden=hidden, layers=layers, heads=heads, kv_heads=read(f.kv_heads) or heads,
                    head_dim=read(f.head_dim) or hidden // heads, intermediate=read(f.intermediate) or 4 * hidden,
                    vocab=vocab, positions=read(f.positions), gated_mlp=self.gated_mlp)


_LLAMA_FIELDS = ConfigFields(kv_heads="num_key_value_heads", head_dim="head_dim")
_LLAMA_LAYOUT = PruningLayout(
    attention="self_attn", q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj", out="self_attn.o_proj",
    head_attrs={"num_key_value_groups": "kv_groups"},  # read by repeat_kv in eager and SDPA attention
    ffn_up=("mlp.gate_proj", "mlp.up_proj"), ffn_down="mlp.down_proj")
_GPT2_OPTIMIZER_FOR_RMSNORM = ("optimize_model has no type for it; the gpt2 optimizer fuses RMSNorm only "
                               "(attention fusion needs ORT's own exporter with KV cache and GroupQueryAttention)")

FAMILIES: tuple[Family, ...] = (
    Family(
        name="gpt2", model_types=frozenset({"gpt2"}), causal=True, gated_mlp=False, ort_model_type="gpt2",
        fields=ConfigFields(hidden="n_embd", layers="n_layer", heads="n_head", intermediate="n_inner",
                            positions="n_positions"),
        conv1d=True,
        pruning=PruningLayout(attention="attn", qkv="attn.c_attn", out="attn.c_proj",
                              head_attrs={"num_heads": "heads", "split_size": "q_width"},  # c_attn splits by split_size
                              ffn_up=("mlp.c_fc",), ffn_down="mlp.c_proj"),
    ),
    Family(
        name="bert", model_types=frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra", "ernie"}),
        causal=False, gated_mlp=False, ort_model_type="bert",
        pruning=PruningLayout(attention="attention.self", q="attention.self.query", k="attention.self.key",
                              v="attention.self.value", out="attention.output.dense",
                              head_attrs={"num_attention_heads": "heads", "all_head_size": "q_width"},
                              ffn_up=("intermediate.dense",), ffn_down="output.dense"),
    ),
    Family(
        name="distilbert", model_types=frozenset({"distilbert"}), causal=False, gated_mlp=False, ort_model_type="bert",
        fields=ConfigFields(hidden="dim", layers="n_layers", heads="n_heads", intermediate="hidden_dim"),
        pruning=PruningLayout(attention="attention", q="attention.q_lin", k="attention.k_lin", v="attention.v_lin",
                              out="attention.out_lin", head_attrs={"n_heads": "heads"},
                              ffn_up=("ffn.lin1",), ffn_down="ffn.lin2"),
    ),
    Family(
        name="mpnet", model_types=frozenset({"mpnet"}), causal=False, gated_mlp=False, ort_model_type="bert",
        ort_note="the bert optimizer fuses LayerNorm and Gelu only: MPNet's relative position bias stops its "
                 "Attention fusion",
        pruning=None,
        pruning_refusal="MPNet adds one relative position bias, shared by every layer, with one column per head",
    ),
    Family(
        name="llama",
        model_types=frozenset({"llama", "mistral", "qwen2", "granite", "olmo", "gemma", "gemma2", "smollm3"}),
        causal=True, gated_mlp=True, ort_model_type="gpt2", ort_note=_GPT2_OPTIMIZER_FOR_RMSNORM,
        fields=_LLAMA_FIELDS, pruning=_LLAMA_LAYOUT,
    ),
    Family(  # Llama's layout with per-head q/k norms; ORT has an optimizer type of its own for it
        name="qwen3", model_types=frozenset({"qwen3"}), causal=True, gated_mlp=True, ort_model_type="qwen3",
        fields=_LLAMA_FIELDS, pruning=_LLAMA_LAYOUT,
    ),
    Family(
        name="phi", model_types=frozenset({"phi"}), causal=True, gated_mlp=False, ort_model_type="gpt2",
        ort_note="ORT's phi optimizer expects its own dynamo Phi-2 export and fails on this graph; the gpt2 "
                 "optimizer fuses LayerNorm and FastGelu",
        fields=ConfigFields(kv_heads="num_key_value_heads"),
        pruning=PruningLayout(attention="self_attn", q="self_attn.q_proj", k="self_attn.k_proj",
                              v="self_attn.v_proj", out="self_attn.dense",
                              head_attrs={"num_key_value_groups": "kv_groups"}, ffn_up=("mlp.fc1",),
                              ffn_down="mlp.fc2"),
    ),
    Family(
        name="phi3", model_types=frozenset({"phi3"}), causal=True, gated_mlp=True, ort_model_type="gpt2",
        ort_note=_GPT2_OPTIMIZER_FOR_RMSNORM, fields=_LLAMA_FIELDS, pruning=None,
        pruning_refusal="Phi-3's attention splits its packed qkv_proj by the head counts of the shared config",
    ),
)


def context_length(config: Any) -> int | None:
    """The longest sequence a config's positions allow, by either name transformers gives it (any architecture,
    not only the families above); None where it names none."""
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def family_of(source: Any) -> Family:
    """The family of a transformers config, of a model (through its config), or of a `config.model_type` name."""
    if isinstance(source, str):
        model_type = source
    else:
        model_type = getattr(getattr(source, "config", source), "model_type", None)
        if not model_type:
            raise Unsupported(f"{type(source).__name__} has no transformers config with a model_type")
    by_type = {t: f for f in FAMILIES for t in f.model_types}
    if model_type not in by_type:
        raise Unsupported(f"no model family covers model_type {model_type!r} (known: {', '.join(sorted(by_type))}); "
                          "a new architecture is one Family entry in bench/models/families.py")
    return by_type[model_type]


# --- GPT-2's Conv1D: a Linear whose weight is stored (in_features, out_features) ------------------------------

def is_conv1d(module: Any) -> bool:
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "nx")


def dense_weight(module: Any):
    """The weight of a Linear or Conv1D as (out_features, in_features) (a transposed view for Conv1D)."""
    return module.weight.t() if is_conv1d(module) else module.weight


def conv1d_to_linear(model: Any) -> int:
    """Replace every Conv1D with the equivalent nn.Linear (quantizers and 2:4 kernels take Linear weights only);
    returns how many were replaced."""
    import torch

    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if is_conv1d(child):
                lin = torch.nn.Linear(child.nx, child.nf, dtype=child.weight.dtype, device=child.weight.device)
                with torch.no_grad():
                    lin.weight.copy_(child.weight.t())
                    lin.bias.copy_(child.bias)
                setattr(parent, name, lin)
                replaced += 1
    return replaced
