"""`{model_dir}`: a folder holding a point's own weights for a server to load, built once per cache key.

The folder has what every OpenAI-compatible server reads: config.json, the tokenizer, the weights as safetensors
and the generation config. It is built from another source's model entry (`serves:`), loaded as the in-process
points load it: GGUF files dequantized (the gguf source's own cache), random weights from the same seed, packaged
and local weights as they are. So a launched server serves exactly the weights the in-process points measure.

The cache key is the entry, the seed, the weight files' fingerprint (the loaded model's provenance; a local model
re-saved in place gets a new folder) and the transformers version that saved it. `bench-served.json` beside the
weights says where they came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import ModelSpec

PROVENANCE_FILE = "bench-served.json"


def served_model_dir(spec: ModelSpec, seed: int, cache_dir: Path | None) -> tuple[Path, str, dict[str, Any]]:
    """(the folder, whether its weights are real or random, their provenance) for the model entry `spec`."""
    import transformers

    from ..cache import build_once, cache_key
    from ..models import model_sources

    if cache_dir is None:
        raise ValueError("a served model folder needs the run's cache directory")
    loaded = model_sources.get(spec.source)().load(spec, seed=seed, cache_dir=Path(cache_dir))
    provenance = {"weights": loaded.weights, **loaded.provenance}
    key = cache_key({"model": spec.model_dump(mode="json"), "seed": seed,
                     "weights": loaded.provenance.get("weights_fingerprint"),
                     "transformers": transformers.__version__})
    final = Path(cache_dir) / "served" / key

    def save(folder: Path) -> None:
        from safetensors.torch import save_model

        loaded.model.config.save_pretrained(folder)
        save_model(loaded.model, str(folder / "model.safetensors"), metadata={"format": "pt"})  # tied tensors once
        if getattr(loaded.model, "generation_config", None) is not None:
            loaded.model.generation_config.save_pretrained(folder)
        loaded.tokenizer.save_pretrained(folder)
        (folder / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, sort_keys=True, default=str),
                                              encoding="utf-8")

    hit = build_once(final, save)
    return final, loaded.weights, {**provenance, "model_dir": str(final), "model_dir_cache": "hit" if hit else "built"}
