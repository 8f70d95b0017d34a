"""Model benchmarks inside your own pytest suite, timed and stored by pytest-benchmark.

    def test_minilm_bf16(bench_point):
        bench_point("configs/cpu-quantization.yaml", "minilm-l6 · pytorch · cpu · bf16 · single-stream · b8 s128")

    def test_tiny_gpt2(bench_point):
        bench_point(spec={"models": [{"name": "tiny", "source": "random", "id": "gpt2",
                                      "overrides": {"n_layer": 2, "n_embd": 64, "n_head": 2}}],
                          "variants": ["bf16"], "batch_sizes": [1], "seq_lens": [32]})

`bench_point(suite, point)` takes a suite file (or a packaged suite's name) and one of its points, by point id
or label (`bench plan SUITE` lists them; a suite of one point needs none); `bench_point(spec=...)` takes a suite
written inline that expands to one point. The point is prepared as `bench run`'s child prepares it (model
load, the transform pipeline bench/variants/pipeline.py `prepare`, the backend's session) in the test's
process and warmed up as the suite says; then `benchmark.pedantic(session.run)` times one query per round, as
many rounds as the suite's min_iterations and min_duration_s ask for. pytest-benchmark's storage
(--benchmark-save, --benchmark-json), compare and histograms work unchanged; the point's provenance is in
`benchmark.extra_info`.

Unlike `bench run`: the point runs in the test's process, not a fresh one (imports and earlier tests are
around it), only single-stream points are timed (one query at a time, what `session.run` is), and quality is
not measured. A point that cannot run here (no CUDA) is skipped, as `bench run` records it `unsupported`.

Installed as the `pytest11` entry point `bench.pytest_plugin`; in a checkout that is not installed, load it
with `pytest -p bench.pytest_plugin`.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

CACHE_DIR = Path(".cache") / "bench"  # where `bench run` caches exported models, so both share them


def resolve_point(suite: str | Path | None = None, point: str | None = None, spec: dict | None = None):
    """The RunPoint named by a suite file and a point id or label, or by an inline suite of one point."""
    from pydantic import ValidationError

    from .cli._common import load_plan
    from .config import Suite
    from .plan import build_plan

    from .errors import ConfigError

    if (suite is None) == (spec is None):
        pytest.fail("bench_point: give a suite file (and a point), or spec=, not both", pytrace=False)
    try:
        plan = (build_plan(Suite.model_validate({"name": "pytest", **spec}), "bench_point(spec=...)") if spec is not None
                else load_plan(str(suite))[1])
    except (ConfigError, ValidationError) as exc:
        pytest.fail(f"bench_point: {exc}", pytrace=False)
    found = [p for p in plan.points if point in (None, p.point_id, p.label)]
    if len(found) != 1:
        listing = "\n  ".join(f"{p.point_id}  {p.label}" for p in plan.points)
        wanted = f"point {point!r}" if point else "one point (the suite has several: name one)"
        pytest.fail(f"bench_point: {wanted} not found; the points:\n  {listing}", pytrace=False)
    if found[0].scenario.name != "single-stream":
        pytest.fail(f"bench_point times one query at a time (single-stream); {found[0].label} is "
                    f"{found[0].scenario.name}: measure it with `bench run`", pytrace=False)
    return found[0]


def _rounds(settings, seconds_per_query: float | None) -> int:
    """The suite's minimum query count, or more where its minimum duration asks for more (within its maximum)."""
    if not seconds_per_query:
        return settings.min_iterations
    wanted = max(settings.min_iterations, math.ceil(settings.min_duration_s / seconds_per_query))
    return max(1, min(wanted, math.ceil(settings.max_duration_s / seconds_per_query)))


def _provenance(point, loaded, prepared, intra: int, input_info: dict) -> dict:
    from .hardware.machine import describe_machine
    from .records.harness import current_harness

    return {"point_id": point.point_id, "label": point.label, "model": point.model.name,
            "source": point.model.source, "weights": loaded.weights, "backend": point.backend,
            "device": point.device, "variant": point.variant.name, "precision": point.variant.precision,
            "transforms": [t.description for t in prepared.applied], "batch_size": point.batch_size,
            "seq_len": point.seq_len, "inputs": input_info, "threads": {"intra_op": intra},
            "session": prepared.session.describe().model_dump(mode="json"),
            "machine_id": describe_machine()["machine_id"],
            "harness": current_harness().label, "process": "the pytest process (bench run: a fresh one per point)",
            "quality": "not measured here (bench run measures it)"}


def _benchmark_fixture(request):
    try:
        return request.getfixturevalue("benchmark")
    except pytest.FixtureLookupError:
        pytest.fail("bench_point needs pytest-benchmark: pip install pytest-benchmark", pytrace=False)


@pytest.fixture
def bench_point(request):
    """Call it with (suite, point) or spec=...: prepares the point and times `session.run` through
    `benchmark.pedantic`; returns the RunPoint."""
    import torch

    benchmark = _benchmark_fixture(request)
    threads = torch.get_num_threads()

    def run(suite: str | Path | None = None, point: str | None = None, *, spec: dict | None = None,
            cache_dir: str | Path = CACHE_DIR):
        from .backends import backends
        from .devices import get_device
        from .errors import Unsupported
        from .hardware.machine import default_threads
        from .measurement.timing import warm_up
        from .isolation.child import load_point, run_context
        from .variants.pipeline import prepare

        run_point = resolve_point(suite, point, spec)
        s = run_point.settings
        intra = s.intra_op_threads or default_threads()
        torch.set_num_threads(intra)
        torch.manual_seed(s.seed)
        unavailable = get_device(run_point.device).unavailable()
        if unavailable:
            pytest.skip(unavailable)
        try:
            source, loaded, inputs, input_info = load_point(run_point, cache_dir)
            prepared = prepare(loaded, run_point.variant, backends.get(run_point.backend)(), inputs,
                               run_context(run_point, source, loaded, intra, cache_dir))
        except Unsupported as exc:
            pytest.skip(f"unsupported here: {exc}")
        benchmark.extra_info.update(_provenance(run_point, loaded, prepared, intra, input_info))
        count, ns = (0, 0) if benchmark.disabled else warm_up(prepared.session.run, s.warmup_iterations, s.warmup_s)
        benchmark.pedantic(prepared.session.run, rounds=_rounds(s, ns / count / 1e9 if count else None))
        return run_point

    yield run
    torch.set_num_threads(threads)
