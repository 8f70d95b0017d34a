"""Suite configuration: a YAML file validated by pydantic.

Every failure becomes a `ConfigError` that names the file, the key and the fix, so the CLI can
print one line and exit 2 before anything is written.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .measurement.validity import min_queries

Task = Literal["encoder", "causal-lm"]
Device = str  # a name in the device registry (bench/devices/), checked by the plan
Precision = Literal["fp32", "bf16", "fp16"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(Strict):
    """Where a model comes from. `source` picks a loader in `bench.models`."""

    name: str = Field(description="label used in tables")
    source: str = Field(description="packaged | random | hub | local | gguf")
    id: str = Field(description="packaged name, architecture name, hub id or path")
    task: Task | None = Field(None, description="inferred from the architecture when omitted")
    overrides: dict[str, Any] = Field(default_factory=dict, description="config overrides (random weights)")
    revision: str | None = None
    gguf_file: str | None = None
    teacher: str | None = Field(None, description="for a distilled student: the name of its teacher model")


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


SLOT_RESOURCE = "bench_slot"  # one per cluster node: a point holds its node's slot, so points never share a node


def check_target(target: str) -> str:
    """A node kind: a Ray resource name (`h100`) or a node label `key=value` (`ray.io/accelerator-type=H100`)."""
    name, eq, value = target.partition("=")
    if not name or (eq and not value) or "=" in value or any(c.isspace() for c in target):
        raise ValueError(f"target {target!r} is neither a resource name nor one key=value label")
    if target == SLOT_RESOURCE:
        raise ValueError(f"{SLOT_RESOURCE!r} is on every node; leave `targets` out to run on any node")
    return target


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


class RunPoint(Strict):
    """The fully resolved config of one isolated run; its hash identifies the point for resume."""

    suite: str
    model: ModelSpec
    task: str | None
    weights: str
    backend: str
    device: str
    variant: VariantSpec
    scenario: ScenarioSpec
    batch_size: int
    seq_len: int
    settings: Defaults
    quality: QualitySettings = QualitySettings()
    target: str | None = Field(None, description="the node kind a cluster runs this point on (suite `targets`)")

    @property
    def point_id(self) -> str:
        """sha256 of the config minus the suite name; a field left at None is left out, so adding an
        optional field (such as `target`) keeps the ids of existing points."""
        identity = self.model_dump(mode="json", exclude={"suite"})
        identity = {k: v for k, v in identity.items() if v is not None}
        blob = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        on = f" · on {self.target}" if self.target else ""
        return (f"{self.model.name} · {self.backend} · {self.device} · {self.variant.name} · "
                f"{self.scenario.label} · b{self.batch_size} s{self.seq_len}{on}")


_FIXES = {
    "extra_forbidden": "remove the key or correct its spelling",
    "missing": "add the key",
    "greater_than": "use a larger value",
    "greater_than_equal": "use a larger value",
    "too_short": "list at least one entry",
    "literal_error": "use one of the allowed values",
}


def _key_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "VariantSpec", "ScenarioSpec"):  # union branch names, not keys
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _config_error(path: str, exc: ValidationError) -> ConfigError:
    errors = exc.errors()
    # For `str | VariantSpec`, pydantic reports both branches; the object branch is more useful.
    err = next((e for e in errors if {"VariantSpec", "ScenarioSpec"} & set(map(str, e["loc"]))), errors[0])
    kind = err["type"]
    fix = _FIXES.get(kind, "see README.md for the suite schema")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        fix = f"give a value of the expected type ({err['msg'].lower()})"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ConfigError(path, _key_path(err["loc"]), err["msg"] + more, fix)


class DuplicateKey(Exception):
    """A mapping gives one key more than once; `marks` are where each occurrence starts."""

    def __init__(self, key_path: str, marks: list):
        super().__init__(key_path)
        self.key_path, self.marks = key_path, marks

    def places(self) -> str:
        """Each occurrence's line, and its column where two share a line (flow style)."""
        lines = [m.line + 1 for m in self.marks]
        if len(set(lines)) == len(lines):
            return ", ".join(f"line {line}" for line in lines)
        return ", ".join(f"line {m.line + 1} column {m.column + 1}" for m in self.marks)


class UniqueKeySafeLoader(yaml.SafeLoader):
    """The safe loader (plain values only: Python tags still raise), refusing a key given twice in one mapping,
    at any depth, block or flow style: PyYAML would keep the last one without a word."""

    def construct_document(self, node):
        self._refuse_duplicate_keys(node, "", set())
        return super().construct_document(node)

    def _refuse_duplicate_keys(self, node, path: str, seen: set[int]) -> None:
        if id(node) in seen:  # an alias of a node already walked (or a recursive one)
            return
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._refuse_duplicate_keys(item, f"{path}[{i}]", seen)
        elif isinstance(node, yaml.MappingNode):
            marks: dict[Any, list] = {}
            children = []
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<` merges may be overridden by the mapping's own keys, as YAML intends
                key = self.construct_object(key_node)  # equal as PyYAML judges them: `1` and `0x1` are one key
                marks.setdefault(key, []).append(key_node.start_mark)
                children.append((f"{path}.{key}" if path else str(key), key, value_node))
            for child_path, key, _ in children:
                if len(marks[key]) > 1:
                    raise DuplicateKey(child_path, marks[key])
            for child_path, _, value_node in children:
                self._refuse_duplicate_keys(value_node, child_path, seen)


def parse_yaml(path: Path) -> Any:
    """Read YAML with the safe loader: tags that construct Python objects raise, run nothing, and a key given
    twice is refused rather than silently reduced to its last value."""
    if not path.exists():
        raise ConfigError(str(path), "(file)", "suite file not found", "check the path, or run `bench run` for the default suite")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "(file)", f"cannot read: {exc}", "make the file readable UTF-8 text") from None
    try:
        return yaml.load(text, Loader=UniqueKeySafeLoader)  # noqa: S506 (a SafeLoader subclass)
    except DuplicateKey as exc:
        raise ConfigError(str(path), exc.key_path, f"key given {len(exc.marks)} times ({exc.places()})",
                          "keep one of them: YAML would silently use the last") from None
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise ConfigError(str(path), where, f"unsupported YAML tag ({exc.problem})",
                          "remove the tag: suites hold plain values only") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(str(path), where, f"invalid YAML: {problem}", "fix the YAML syntax at that position") from None


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    data = parse_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(str(path), "(top level)", "a suite must be a mapping of keys to values",
                          "start from bench/suites/quickstart.yaml")
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        raise _config_error(str(path), exc) from None
    if suite.name is None:
        suite.name = path.stem
    return suite
