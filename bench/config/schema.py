"""The suite's schema: the pydantic models a suite file is validated against (loading.py reads the file and turns
a validation error into one line).
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import (BaseModel, ConfigDict, Field, SerializationInfo, SerializerFunctionWrapHandler, field_validator,
                      model_serializer, model_validator)

from ..validity import min_queries
from .targets import check_target

Task = Literal["encoder", "causal-lm"]
Device = str  # a name in the device registry (bench/devices/), checked by the plan
Precision = Literal["fp32", "bf16", "fp16"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoOptions(Strict):
    """The base of every Options model (transforms, scenarios, backends, drivers): no options, an unknown key
    refused."""


class ModelSpec(Strict):
    """Where a model comes from. `source` picks a loader in `bench.models`; any other key of the entry is the
    source's own (`options`, validated by the source at plan time), split there into what the model is and how
    to reach it (`access`: credentials, headers), which is no part of the point's identity and whose values
    are never written to a record."""

    name: str = Field(description="label used in tables")
    source: str = Field(description="packaged | random | hub | local | gguf | endpoint")
    id: str | None = Field(None, description="packaged name, architecture name, hub id or path (sources that "
                                             "take one)")
    task: Task | None = Field(None, description="inferred from the architecture when omitted")
    overrides: dict[str, Any] = Field(default_factory=dict, description="config overrides (random weights)")
    revision: str | None = None
    gguf_file: str | None = None
    teacher: str | None = Field(None, description="for a distilled student: the name of its teacher model")
    options: dict[str, Any] = Field(default_factory=dict, description="the source's own keys (e.g. an endpoint's "
                                                                      "url, model and api)")
    access: dict[str, Any] = Field(default_factory=dict, description="how to reach the model (e.g. an endpoint's "
                                                                     "headers): not part of the point's identity; "
                                                                     "values never recorded")

    @model_validator(mode="before")
    @classmethod
    def _source_keys(cls, data: Any) -> Any:
        """The keys ModelSpec does not declare belong to the source: gathered into `options`."""
        if isinstance(data, dict):
            own = {k: v for k, v in data.items() if k not in cls.model_fields}
            if own:
                data = {k: v for k, v in data.items() if k in cls.model_fields}
                data["options"] = {**(data.get("options") or {}), **own}
        return data

    def source_options(self) -> dict[str, Any]:
        """Everything the source was given: `options` with `access` merged back in."""
        return _merged(self.options, self.access)

    def split_access(self, paths: frozenset[str]) -> ModelSpec:
        """This entry with the source's keys at `paths` (dotted: `launch.env`) moved from `options` to `access`."""
        options, access = _copy(self.source_options()), {}
        for path in sorted(paths):
            *parents, leaf = path.split(".")
            where, into = options, access
            for key in parents:
                if not isinstance(where.get(key), dict):
                    break
                where, into = where[key], into.setdefault(key, {})
            else:
                if leaf in where:
                    into[leaf] = where.pop(leaf)
        return self.model_copy(update={"options": options, "access": _pruned(access)})

    @model_serializer(mode="wrap")
    def _compact(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        """Empty `options` and `access` are left out (the identity of every point without them is unchanged);
        `access` values are written only where the context asks for them (`ACCESS_CONTEXT`: the point's own
        process), never to a record or a log."""
        data = handler(self)
        for key in ("options", "access"):
            if not data.get(key):
                data.pop(key, None)
        if data.get("access") and not (info.context or {}).get(ACCESS_CONTEXT_KEY):
            data["access"] = _withheld(data["access"])
        return data


ACCESS_CONTEXT_KEY = "model_access"
ACCESS_CONTEXT = {ACCESS_CONTEXT_KEY: True}   # model_dump(context=ACCESS_CONTEXT): for the point's own process
WITHHELD = "(not recorded)"


def _copy(value: Any) -> Any:
    return {k: _copy(v) for k, v in value.items()} if isinstance(value, dict) else value


def _merged(base: dict, extra: dict) -> dict:
    out = _copy(base)
    for key, value in extra.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _pruned(value: dict) -> dict:
    """Without the mappings a split left empty."""
    return {k: _pruned(v) if isinstance(v, dict) else v for k, v in value.items() if v != {}}


def _withheld(value: Any) -> Any:
    """The value's shape (mapping keys) with every leaf replaced."""
    if isinstance(value, dict):
        return {k: _withheld(v) for k, v in value.items()}
    return WITHHELD


class TransformSpec(Strict):
    """One model transform (quantization, pruning...) with its options, applied in list order."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class VariantSpec(Strict):
    """A named combination of precision and transforms; optionally pinned to one backend."""

    name: str
    backend: str | None = None
    precision: Precision = "fp32"
    precision_mode: Literal["cast", "autocast"] = "cast"
    transforms: list[TransformSpec] = Field(default_factory=list)
    backend_options: dict[str, Any] = Field(default_factory=dict)


class ScenarioSpec(Strict):
    """A scenario with options (e.g. new tokens for `generate`); validated by the scenario itself."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        """The name, with the options that tell two entries of the same scenario apart."""
        if not self.options:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in sorted(self.options.items()))})"


class Defaults(Strict):
    """Measurement settings shared by every point unless a suite overrides them."""

    warmup_iterations: int = Field(5, ge=0)
    warmup_s: float = Field(1.0, ge=0)
    min_duration_s: float = Field(5.0, ge=0)
    min_iterations: int = Field(default_factory=lambda: min_queries(0.90), ge=1,
                                description="default: the queries the early-stopping rule needs for a p90 claim (64)")
    max_duration_s: float = Field(120.0, gt=0)
    intra_op_threads: int | None = Field(None, ge=1, description="default: CPUs available to the process")
    inter_op_threads: int = Field(1, ge=1)
    timeout_s: float = Field(600.0, gt=0)
    seed: int = 0
    instability_cv: float = Field(0.10, gt=0, description="stdev/mean above this flags a run unstable")


class QualitySettings(Strict):
    """Quality against the fp32 PyTorch model, computed outside the timed window."""

    enabled: bool = True
    encoder_samples: int = Field(16, ge=1, description="text windows embedded by encoders")
    encoder_seq_len: int = Field(128, ge=3)
    lm_windows: int = Field(8, ge=1, description="perplexity windows for causal LMs")
    lm_window: int = Field(256, ge=2)
    lm_stride: int = Field(256, ge=1, description="tokens scored per window (the last `stride`)")
    cosine_min: float = Field(0.99, gt=0, le=1, description="encoder bound on mean cosine similarity")
    ppl_ratio_max: float = Field(1.05, ge=1, description="decoder bound on perplexity ratio to fp32")

    @model_validator(mode="after")
    def _stride_within_window(self) -> "QualitySettings":
        if self.lm_stride > self.lm_window:
            raise ValueError("lm_stride must not exceed lm_window")
        return self


class Exclusion(Strict):
    """Points matching every given field are dropped from the matrix."""

    model: str | None = None
    backend: str | None = None
    device: Device | None = None
    variant: str | None = None
    scenario: str | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    target: str | None = None



class Suite(Strict):
    name: str | None = None
    description: str | None = None
    models: list[ModelSpec] = Field(min_length=1)
    backends: list[str] = Field(default_factory=lambda: ["pytorch"], min_length=1)
    devices: list[Device] = Field(default_factory=lambda: ["cpu"], min_length=1)
    variants: list[Union[str, VariantSpec]] = Field(default_factory=lambda: ["fp32"], min_length=1)
    batch_sizes: list[int] = Field(default_factory=lambda: [1], min_length=1)
    seq_lens: list[int] = Field(default_factory=lambda: [128], min_length=1)
    scenarios: list[Union[str, ScenarioSpec]] = Field(default_factory=lambda: ["latency"], min_length=1)
    defaults: Defaults = Field(default_factory=Defaults)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    exclude: list[Exclusion] = Field(default_factory=list)
    targets: list[str] | None = Field(None, min_length=1,
                                      description="cluster node kinds (Ray resources or key=value labels); "
                                                  "every point runs once on each")
    extensions: list[str] = Field(default_factory=list,
                                  description="Python files (relative to the suite) or modules that register the "
                                              "suite's own backends, transforms, scenarios, devices or report "
                                              "sections; imported before anything is resolved, and in every point")

    @model_validator(mode="before")
    @classmethod
    def _singular_aliases(cls, data: Any) -> Any:
        """Accept `scenario: latency` (and friends) as a one-item list."""
        if isinstance(data, dict):
            for singular, plural in (("scenario", "scenarios"), ("backend", "backends"),
                                     ("device", "devices"), ("batch_size", "batch_sizes"),
                                     ("seq_len", "seq_lens")):
                if singular in data:
                    if plural in data:
                        raise ValueError(f"give either {singular!r} or {plural!r}, not both")
                    value = data.pop(singular)
                    data[plural] = value if isinstance(value, list) else [value]
        return data

    @field_validator("batch_sizes", "seq_lens")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        for v in values:
            if v <= 0:
                raise ValueError(f"must be a positive integer, got {v}")
        return values

    @field_validator("targets")
    @classmethod
    def _valid_targets(cls, targets: list[str] | None) -> list[str] | None:
        if targets is not None:
            for target in targets:
                check_target(target)
            dupes = sorted({t for t in targets if targets.count(t) > 1})
            if dupes:
                raise ValueError(f"targets must be unique; repeated: {', '.join(dupes)}")
        return targets

    @field_validator("models")
    @classmethod
    def _unique_model_names(cls, models: list[ModelSpec]) -> list[ModelSpec]:
        names = [m.name for m in models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)}")
        for m in models:
            if m.teacher is not None and m.teacher not in names:
                raise ValueError(f"teacher {m.teacher!r} of model {m.name!r} is not a model of this suite")
        return models
