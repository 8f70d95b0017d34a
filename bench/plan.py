"""Expand a validated suite into the run plan: one fully resolved RunPoint per matrix point.

Everything that can be judged without loading a model is judged here, so a bad suite fails before
any file is written; what only the run can judge (a missing kernel, no CUDA) becomes an
`unsupported` record later.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from .backends import backends
from .config import ModelSpec, RunPoint, ScenarioSpec, Suite, VariantSpec
from .devices import devices
from .drivers import drivers
from .errors import ConfigError
from .models import Source, model_sources
from .registry import load_extensions
from .scenarios import ALIASES, RETIRED, scenarios
from .variants import transforms
from .variants.presets import PRESETS, resolve_variant


@dataclass
class Plan:
    suite: Suite
    points: list[RunPoint]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (label, reason)

    def with_serving_options(self, **options) -> "Plan":
        """The same plan with extra options on every point of a serving scenario (`--find-peak`: capacity)."""
        points = [p.model_copy(update={"scenario": p.scenario.model_copy(
                      update={"options": {**p.scenario.options, **options}})})
                  if scenarios.get(p.scenario.name).serving else p for p in self.points]
        return Plan(self.suite, points, self.skipped)


def _check_options(file: str, key: str, options_model, options: dict):
    """The validated options, or a ConfigError naming the first bad one."""
    try:
        return options_model.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        fix = "remove the key or correct its spelling" if err["type"] == "extra_forbidden" else \
            "see the option list in README.md"
        raise ConfigError(file, f"{key}.{loc}" if loc else key, err["msg"], fix) from None


def _resolve_variants(suite: Suite, file: str) -> list[VariantSpec]:
    resolved = []
    for i, entry in enumerate(suite.variants):
        key = f"variants[{i}]"
        try:
            variant = resolve_variant(entry)
        except KeyError:
            raise ConfigError(file, key, f"unknown variant {entry!r}",
                              f"use one of: {', '.join(sorted(PRESETS))}, or spell it out with name/precision/transforms") from None
        if variant.backend is not None and variant.backend not in backends:
            raise ConfigError(file, f"{key}.backend", f"unknown backend {variant.backend!r}",
                              f"use one of: {', '.join(backends.names())}")
        for j, t in enumerate(variant.transforms):
            if t.name not in transforms:
                raise ConfigError(file, f"{key}.transforms[{j}].name", f"unknown transform {t.name!r}",
                                  f"use one of: {', '.join(transforms.names())}")
            _check_options(file, f"{key}.transforms[{j}].options", transforms.get(t.name).Options, t.options)
        if variant.backend is not None:
            problem = incompatibility(variant, variant.backend)
            if problem:
                raise ConfigError(file, key, f"variant {variant.name!r} cannot run on backend {variant.backend!r}: {problem}",
                                  "pin the variant to a backend that accepts its transforms")
        resolved.append(variant)
    names = [v.name for v in resolved]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(file, "variants", f"variant names must be unique; repeated: {', '.join(dupes)}",
                          "give each variant its own name")
    return resolved


def incompatibility(variant: VariantSpec, backend: str, device: str | None = None) -> str | None:
    """Why a variant cannot run on a backend (on a device) at all (judged from declarations, not hardware)."""
    cls = backends.get(backend)
    refused = cls.refuses(variant)
    if refused:
        return refused
    if device is not None and device not in cls.devices:
        return f"{backend} does not run on {device} (it runs on {', '.join(sorted(cls.devices))})"
    for t in variant.transforms:
        stage = transforms.get(t.name).stage
        if stage not in cls.stages:
            return f"transform {t.name!r} works on {stage} models; {backend} accepts {', '.join(sorted(cls.stages))}"
    if variant.precision not in cls.precisions:
        return (f"precision {variant.precision} is not run by {backend} (it runs {', '.join(sorted(cls.precisions))}; "
                "lower precisions come from its graph transforms)")
    return None


def _resolve_scenarios(suite: Suite, file: str) -> list[ScenarioSpec]:
    out = []
    for i, entry in enumerate(suite.scenarios):
        spec = entry if isinstance(entry, ScenarioSpec) else ScenarioSpec(name=entry)
        if spec.name in RETIRED:
            raise ConfigError(file, f"scenarios[{i}]", f"scenario {spec.name!r} is retired", RETIRED[spec.name])
        if spec.name in ALIASES:
            spec = spec.model_copy(update={"name": ALIASES[spec.name]})
        if spec.name not in scenarios:
            raise ConfigError(file, f"scenarios[{i}]", f"unknown scenario {spec.name!r}",
                              f"use one of: {', '.join(scenarios.names())}")
        scenario = scenarios.get(spec.name)
        retired = scenario.retired(spec.options)
        if retired:
            option, fix = next(iter(retired.items()))
            raise ConfigError(file, f"scenarios[{i}].options.{option}", f"option `{option}` is retired", fix)
        _check_options(file, f"scenarios[{i}].options", scenario.Options, spec.options)
        driver = spec.options.get("driver")
        if driver is not None:
            problem = drivers.get(driver).missing()
            if problem:
                raise ConfigError(file, f"scenarios[{i}].options.driver", problem,
                                  drivers.get(driver).install or "see README.md")
        out += [spec.model_copy(update={"options": options}) for options in scenario.points(spec.options)]
    return out


def _resolve_models(suite: Suite, file: str) -> tuple[list[ModelSpec], dict[str, Source]]:
    """Each model entry checked by its source (its own keys validated and split into what the model is and how
    it is reached), and each entry's source."""
    models, sources = [], {}
    for i, model in enumerate(suite.models):
        if model.source not in model_sources:
            raise ConfigError(file, f"models[{i}].source", f"unknown model source {model.source!r}",
                              f"use one of: {', '.join(model_sources.names())}")
        source = model_sources.get(model.source)()
        if source.takes_id and model.id is None:
            raise ConfigError(file, f"models[{i}].id", f"a {model.source} model needs an id",
                              "give its packaged name, architecture, hub id or path")
        if not source.takes_id and model.id is not None:
            raise ConfigError(file, f"models[{i}].id", f"a {model.source} model takes no id",
                              "remove `id` (see README.md for the keys this source takes)")
        validated = _check_options(file, f"models[{i}]", source.Options, model.source_options())
        model = model.model_copy(update={"options": validated.model_dump(mode="json", exclude_unset=True),
                                         "access": {}}).split_access(source.access)
        problem = source.check(model)
        if problem:
            raise ConfigError(file, f"models[{i}].id" if source.takes_id else f"models[{i}]", *problem)
        models.append(model)
        sources[model.name] = source
    return models, sources


def _resolve_exclusions(suite: Suite, file: str, variants: list[VariantSpec],
                        scenario_specs: list[ScenarioSpec], paired: dict[str, str]) -> list[dict]:
    """Each rule's given fields, scenario aliases resolved as in `scenarios`. A rule naming what the suite does
    not have would match nothing without a word, so the points it was meant to drop would run: refused."""
    has = {"model": [m.name for m in suite.models],
           "backend": list(dict.fromkeys([*suite.backends, *(v.backend for v in variants if v.backend),
                                          *paired.values()])),
           "device": suite.devices, "variant": [v.name for v in variants],
           "scenario": list(dict.fromkeys(s.name for s in scenario_specs)),
           "batch_size": suite.batch_sizes, "seq_len": suite.seq_lens, "target": suite.targets or []}
    rules = []
    for i, rule in enumerate(suite.exclude):
        given = rule.model_dump(exclude_none=True)
        if not given:
            raise ConfigError(file, f"exclude[{i}]", "the rule names no field, so it matches nothing",
                              f"name at least one of {', '.join(has)}, or remove the rule")
        if "scenario" in given:
            given["scenario"] = ALIASES.get(given["scenario"], given["scenario"])
        for key, value in given.items():
            if value not in has[key]:
                known = ", ".join(map(str, has[key]))
                raise ConfigError(file, f"exclude[{i}].{key}",
                                  f"{key} {value!r} is not in this suite, so the rule matches nothing",
                                  f"use one of the suite's: {known}" if known else
                                  f"remove `{key}` from the rule (the suite names no {key}s)")
        rules.append(given)
    return rules


def _excluded(rules: list[dict], point: RunPoint) -> bool:
    values = {"model": point.model.name, "backend": point.backend, "device": point.device,
              "variant": point.variant.name, "scenario": point.scenario.name,
              "batch_size": point.batch_size, "seq_len": point.seq_len, "target": point.target}
    return any(all(values[k] == v for k, v in rule.items()) for rule in rules)


def _load_extensions(suite: Suite, file: str) -> None:
    """The suite's own extensions, before any of its names is resolved; a failure is the suite's input error."""
    for i, entry in enumerate(suite.extensions):
        if entry.endswith(".py") and not Path(entry).is_file():
            raise ConfigError(file, f"extensions[{i}]", f"no such file {entry}",
                              "give a Python file's path relative to the suite, or a module name")
        try:
            load_extensions([entry])
        except Exception as exc:  # noqa: BLE001 - whatever the extension raised, one line names it
            raise ConfigError(file, f"extensions[{i}]", f"importing {entry} failed: {type(exc).__name__}: {exc}",
                              "fix the extension (run it with python to see the traceback)") from None


def _pairing_problem(model: ModelSpec, variant: VariantSpec, paired: str | None) -> str | None:
    """Why a variant pinned to one backend cannot run a model whose source runs on another."""
    if paired and variant.backend and variant.backend != paired:
        return f"variant {variant.name!r} is pinned to {variant.backend}; {model.name!r} runs on {paired} only"
    return None


def _as_run_on(backend: str, scenario: ScenarioSpec, task: str | None) -> tuple[ScenarioSpec, str | None]:
    """The scenario as it runs on `backend`, and why it cannot: a serving scenario gets its engine (the backend's
    default where the suite names none, so the point says which served it), judged against the engines the backend
    declares; a backend that holds no model here (an endpoint) runs serving scenarios only."""
    cls = backends.get(backend)
    if not scenarios.get(scenario.name).serving:
        return scenario, None if cls.holds_model else (
            f"{backend} serves requests only; scenario {scenario.name!r} does not send requests")
    engine = scenario.options.get("engine") or cls.default_engine()
    if engine is None:
        return scenario, f"{backend} serves requests with no engine"
    scenario = scenario.model_copy(update={"options": {**scenario.options, "engine": engine}})
    return scenario, cls.engine_refusal(engine, task)


def build_plan(suite: Suite, file: str | Path) -> Plan:
    file = str(file)
    _load_extensions(suite, file)
    models, sources = _resolve_models(suite, file)
    paired = {name: source.backend for name, source in sources.items() if source.backend}
    paired_backends = {source.backend for source in map(model_sources.get, model_sources.names()) if source.backend}
    for i, name in enumerate(suite.backends):
        if name not in backends:
            raise ConfigError(file, f"backends[{i}]", f"unknown backend {name!r}",
                              f"use one of: {', '.join(b for b in backends.names() if b not in paired_backends)}")
        if name in paired_backends:
            raise ConfigError(file, f"backends[{i}]", f"backend {name!r} runs only the models of a source that names "
                              "it, never the suite's other models", f"remove {name!r} from backends: the models of "
                              "its source run on it by themselves")
    for i, name in enumerate(suite.devices):
        if name not in devices:
            raise ConfigError(file, f"devices[{i}]", f"unknown device {name!r}",
                              f"use one of: {', '.join(devices.names())} (a new one is a module in bench/devices/)")
    variants = _resolve_variants(suite, file)
    scenario_specs = _resolve_scenarios(suite, file)
    exclusions = _resolve_exclusions(suite, file, variants, scenario_specs, paired)

    points, skipped = [], []
    for model, variant, device, scenario, batch, seq, target in itertools.product(
            models, variants, suite.devices, scenario_specs, suite.batch_sizes, suite.seq_lens,
            suite.targets or [None]):
        source = sources[model.name]
        task, weights = source.task(model), source.weights_of(model)
        candidates = [paired[model.name]] if model.name in paired else [variant.backend or b for b in suite.backends]
        for backend in dict.fromkeys(candidates):
            run_as, engine_problem = _as_run_on(backend, scenario, task)
            point = RunPoint(suite=suite.name or "suite", model=model, task=task, weights=weights,
                             backend=backend, device=device, variant=variant, scenario=run_as,
                             batch_size=batch, seq_len=seq, settings=suite.defaults,
                             quality=suite.quality, target=target, extensions=suite.extensions or None)
            if _excluded(exclusions, point):
                continue
            options_model = backends.get(backend).Options
            if variant.backend_options and options_model is not None:
                _check_options(file, f"variant {variant.name!r}.backend_options", options_model, variant.backend_options)
            elif variant.backend_options:
                raise ConfigError(file, f"variant {variant.name!r}.backend_options", f"{backend} takes no backend_options",
                                  "remove backend_options, or pin the variant to a backend that takes them")
            reason = (_pairing_problem(model, variant, paired.get(model.name))
                      or incompatibility(variant, backend, device) or engine_problem)
            scenario_cls = scenarios.get(scenario.name)
            served = scenario_cls.tasks
            if reason is None and served is not None and task is not None and task not in served:
                reason = f"scenario {scenario.name!r} serves {', '.join(sorted(served))} models, not {task}"
            if reason is None:
                reason = scenario_cls.unsupported(scenario_cls.Options.model_validate(scenario.options), task)
            if reason:
                skipped.append((point.label, reason))
                continue
            points.append(point)
    return Plan(suite=suite, points=points, skipped=skipped)
