"""The house's claim, guarded: a backend, a transform, a scenario, a device and a report section are each one
piece of code that declares what it is, and run from plan to record to report with no edit to the package.

The throwaway extension below lives in a file the suite names (`extensions:`), registered with the registries'
own decorators: the plan resolves its names, the isolated child (forked from the fork server, which never saw
the file) imports it again before looking anything up, and the report builds its section.
"""

from __future__ import annotations

import sys
import textwrap

import pandas as pd
import pytest

from bench.cli import main
from bench.records.store import load_records

from conftest import TINY_BERT, tiny_suite

EXTENSION = textwrap.dedent('''
    """A throwaway engine, on a throwaway accelerator, with its own transform, scenario and report section."""
    import time

    import numpy as np
    import torch

    from bench.backends import Backend, Session, backends
    from bench.config import NoOptions
    from bench.devices import Device, devices
    from bench.hardware.work import WorkPhase
    from bench.measurement.stats import summarize
    from bench.records.schema import Loop, ScenarioResult, Throughput
    from bench.report import section
    from bench.scenarios import Scenario, scenarios
    from bench.variants import Transform, transforms


    @devices.register("toy-accelerator")
    class ToyAccelerator(Device):
        def check_precision(self, dtype, cpu_flags):
            pass


    class ToySession(Session):
        def __init__(self, model, inputs, description):
            self.model, self.inputs, self.description = model, inputs, description

        def run(self):
            with torch.inference_mode():
                self.model(**self.inputs)

        def infer(self, inputs):
            with torch.inference_mode():
                out = self.model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
            return out.last_hidden_state.float().numpy()


    @backends.register("toy-engine")
    class ToyEngine(Backend):
        stages = frozenset({"torch", "toy-artifact"})
        devices = frozenset({"toy-accelerator"})
        libraries = ("numpy",)

        def export(self, model, loaded, inputs, ctx):
            return {"model": model, "passes": []}

        def open(self, artifact, loaded, inputs, ctx):
            tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
            return ToySession(artifact["model"], tensors, self.describe(
                ctx, engine="toy", engine_version="0.0.1", properties={"passes": artifact["passes"]}))


    @transforms.register("toy-fuse")
    class ToyFuse(Transform):
        stage = "toy-artifact"  # the engine's own artifact, after its export
        kind = "graph"

        def apply(self, artifact, options, ctx):
            return {**artifact, "passes": [*artifact["passes"], "fused"]}, {}


    class HalveOptions(NoOptions):
        factor: float = 0.5


    @transforms.register("toy-halve-ffn")
    class HalveFfn(Transform):
        kind = "pruning"
        Options = HalveOptions

        def apply(self, model, options, ctx):
            return model, {"flop_scales": {"matmul": options.factor}}

        def describe(self, options):
            return f"pretends to keep {options.factor:.0%} of the FFN"


    @scenarios.register("toy-burst")
    class ToyBurst(Scenario):
        def work_phases(self, workload, options):
            return [WorkPhase("forward")]

        def run(self, session, workload, settings, options):
            samples = []
            settings.window.opened()
            for _ in range(settings.min_iterations):
                start = time.perf_counter_ns()
                session.run()
                samples.append((time.perf_counter_ns() - start) / 1e6)
            settings.window.closed()
            latency = summarize(samples)
            wall_s = sum(samples) / 1e3
            return ScenarioResult(
                latency=latency, samples_ms=samples, sufficient=True,
                throughput=Throughput(samples_per_s=len(samples) * workload.batch_size / wall_s, basis="toy"),
                loop=Loop(queries=len(samples), wall_s=wall_s, min_iterations=settings.min_iterations,
                          min_duration_s=0.0, served=workload.served(len(samples) * workload.batch_size)),
                phase_seconds={"forward": latency.p50_ms / 1e3})


    @section("toy", "Toy section: what the throwaway engine measured", order=99)
    def toy_table(df):
        rows = df[df["backend"] == "toy-engine"]
        return rows[["variant", "p50_ms", "samples_per_s"]] if not rows.empty else None
''')


@pytest.fixture
def registries_restored():
    """What the extension registers leaves with the test: later tests see the harness's own registries."""
    from bench.backends import backends
    from bench.devices import devices
    from bench.report import sections
    from bench.scenarios import scenarios
    from bench.variants import transforms

    registries = (backends, devices, sections, scenarios, transforms)
    for registry in registries:
        registry.names()  # loaded first: what is kept is the harness's own
    kept = {registry: dict(registry._items) for registry in registries}
    yield
    for registry, items in kept.items():
        registry._items.clear()
        registry._items.update(items)
    for name in [n for n in sys.modules if n.startswith("bench_extension_")]:
        del sys.modules[name]


def test_a_throwaway_backend_transform_scenario_device_and_section_run_from_plan_to_report(
        write_suite, tmp_path, registries_restored):
    (tmp_path / "toy_extension.py").write_text(EXTENSION, encoding="utf-8")
    variants = [{"name": "toy-fp32", "backend": "toy-engine"},
                {"name": "toy-halved", "backend": "toy-engine",
                 "transforms": [{"name": "toy-halve-ffn"}, {"name": "toy-fuse"}]}]
    path = write_suite(tiny_suite(models=[TINY_BERT], variants=variants, devices=["toy-accelerator"],
                                  scenarios=["toy-burst"], extensions=["toy_extension.py"],
                                  quality={"encoder_samples": 2, "encoder_seq_len": 16}))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    records = {r.config.variant.name: r for r in load_records(out)}
    assert {v: r.status for v, r in records.items()} == {"toy-fp32": "ok", "toy-halved": "ok"}, \
        [r.error for r in records.values()]
    halved = records["toy-halved"]
    assert halved.config.device == "toy-accelerator" and halved.provenance.backend.engine == "toy"
    assert halved.provenance.transforms[0]["description"] == "pretends to keep 50% of the FFN"
    assert halved.provenance.backend.properties == {"passes": ["fused"]}  # an engine's own stage ran on its artifact
    assert halved.metrics.work.matmul_param_scale == 0.5  # the transform's declared FLOP scale reached the work
    assert halved.metrics.quality.cosine_mean is not None  # compared with the fp32 reference like any variant
    # the report: the extension's own section, and the efficiency rows its scenario's declared phase gives
    toy = pd.read_csv(out / "toy.csv")
    assert sorted(toy["variant"]) == ["toy-fp32", "toy-halved"]
    assert toy.set_index("variant").loc["toy-halved", "p50_ms"] == halved.metrics.latency.p50_ms
    efficiency = pd.read_csv(out / "efficiency.csv")
    assert set(efficiency["phase"]) == {"forward"} and set(efficiency["variant"]) == {"toy-fp32", "toy-halved"}
    # `bench report` later, in a process that never ran the suite, finds the section through the records
    assert main(["report", str(out), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "toy.csv").read_text() == (out / "toy.csv").read_text()


def test_a_suite_naming_a_missing_or_broken_extension_is_refused_in_one_line(write_suite, tmp_path, capsys,
                                                                            registries_restored):
    (tmp_path / "broken.py").write_text("raise RuntimeError('half written')\n", encoding="utf-8")
    for extension, words in (("absent.py", "no such file"), ("broken.py", "RuntimeError: half written")):
        path = write_suite(tiny_suite(models=[TINY_BERT], extensions=[extension]))
        assert main(["plan", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "extensions[0]" in err[0] and words in err[0]
