"""Named variants a suite can list by name instead of spelling out precision and transforms."""

from __future__ import annotations

from ..config import TransformSpec, VariantSpec


def _v(name: str, backend: str | None = None, precision: str = "fp32", mode: str = "cast",
       transforms: tuple = (), **backend_options) -> VariantSpec:
    return VariantSpec(name=name, backend=backend, precision=precision, precision_mode=mode,
                       transforms=[TransformSpec(name=t, options=o) for t, o in transforms],
                       backend_options=backend_options)


PRESETS: dict[str, VariantSpec] = {v.name: v for v in [
    _v("fp32"),
    _v("bf16", precision="bf16"),
    _v("bf16-autocast", precision="bf16", mode="autocast"),
    _v("fp16", precision="fp16"),
    _v("fp16-autocast", precision="fp16", mode="autocast"),
]}


def resolve_variant(entry: str | VariantSpec) -> VariantSpec:
    """A preset name becomes its spec; an explicit spec is returned as is."""
    if isinstance(entry, VariantSpec):
        return entry
    try:
        return PRESETS[entry].model_copy(deep=True)
    except KeyError:
        raise KeyError(entry) from None
