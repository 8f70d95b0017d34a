"""The torch.compile backend on a tiny model: compiled outputs, compile time apart, counters recorded."""

from __future__ import annotations

import numpy as np
import pytest

from bench.cli import main
from bench.validity import min_queries
from bench.records.store import load_records

from conftest import FAST_DEFAULTS, TINY_BERT, tiny_suite

pytest.importorskip("torch._inductor")


@pytest.mark.slow
def test_compiled_points_record_compile_time_counters_and_match_eager(write_suite, tmp_path):
    path = write_suite(tiny_suite(models=[TINY_BERT], variants=["fp32", "compile"], scenarios=["single-stream"],
                                  defaults={**FAST_DEFAULTS, "min_iterations": min_queries(0.5)},
                                  quality={"encoder_samples": 2, "encoder_seq_len": 16}))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    recs = {r.config.variant.name: r for r in load_records(out)}
    compiled = recs["compile"]
    assert compiled.status == "ok", compiled.error
    info = compiled.provenance.backend.compiled
    assert info.compile_s > 0 and info.calls_ms and info.at_open.graphs >= 1
    assert info.recompiled_in_traffic == 0  # static shapes: nothing compiles inside the timed window
    assert info.after_traffic.frames_compiled == info.at_open.frames_compiled
    assert info.at_end.frames_compiled >= info.after_traffic.frames_compiled
    assert info.settings["freezing"] is True and info.settings["mode"] == "default"
    assert compiled.metrics.quality.cosine_mean == pytest.approx(1.0, abs=1e-4)  # compiled == eager numerics
    assert compiled.phases.transform_s >= info.compile_s  # compilation is outside the scenario's window
    assert np.isfinite(compiled.metrics.latency.p50_ms)
