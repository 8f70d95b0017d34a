"""The serving scenarios (`server`, `concurrency`, `sweep`) from plan to report: fake engines with known service times
over tiny models, the capacity search, failures, the same requests for every variant, retired options, the users
list, and an answer that is a capacity, never a speedup."""

from __future__ import annotations

import html
import io
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from serving_fakes import FAIL_EVERY, PADDING_PER_REQUEST, PoolSystem, StandInEngine, child_with_fakes, register_fakes

from bench.cli import main
from bench.cli._common import packaged_suites
from bench.config import load_suite
from bench.errors import ConfigError
from bench.executors import local as local_executor
from bench.measurement.timing import LoopSettings, WindowHook
from bench.models.sources import stand_in_tokenizer
from bench.plan import build_plan
from bench.records.flags import sample_flags
from bench.records.store import load_records
from bench.scenarios import Workload, scenarios
from bench.serving.engines import Engine, engines
from bench.serving.workload import NormalLength, UniformLength, build_requests
from bench.validity import min_queries

from builders import record, serving_metrics
from conftest import TINY_BERT, TINY_GPT2, figure_points, tiny_suite

TINY_LLAMA = {"name": "tiny-llama", "source": "random", "id": "smollm2-135m",
              "overrides": {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2,
                            "num_key_value_heads": 1, "intermediate_size": 64}}
P50 = {"e2e_ms": {"p50": 1000}}  # a claim 11 requests support: keeps every run short


class TwoSlotEngine(Engine):
    """Two requests at once, 2 tokens x 100 ms each: 200 ms per request up to two users; a third user makes about a
    third of the requests wait a whole service (400 ms), which the conservative p50 of 12 requests sees."""

    name = "fake-two-slots"

    def build(self, session, settings):
        return PoolSystem(capacity=2, per_token_s=0.1)


@pytest.fixture(scope="module", autouse=True)
def fakes():
    with pytest.MonkeyPatch.context() as monkeypatch:
        register_fakes(monkeypatch, TwoSlotEngine)
        yield


@pytest.fixture(scope="module")
def tokenizer():
    return stand_in_tokenizer()[0]


def run(name: str, tokenizer, task: str = "causal-lm", batch: int = 2, settings: LoopSettings | None = None,
        **options):
    cls = scenarios.get(name)
    settings = settings or LoopSettings(warmup_iterations=1, min_iterations=min_queries(0.5), min_duration_s=0.0)
    return cls().run(object(), Workload(batch, 8, tokenizer, task), settings, cls.Options(**options))


# --- end to end ---------------------------------------------------------------------------------------

def test_every_load_pattern_from_plan_to_report_on_tiny_llama_gpt2_and_bert(write_suite, tmp_path, monkeypatch,
                                                                             saved_figures, capsys):
    real = local_executor.run_isolated
    monkeypatch.setattr(local_executor, "run_isolated",
                        lambda *args, **kwargs: real(*args, **kwargs, target=child_with_fakes))
    common = {"engine": "fake-pool", "output_tokens": 3, "slo": P50}
    path = write_suite(tiny_suite(
        models=[TINY_LLAMA, TINY_GPT2, TINY_BERT], quality={"enabled": False},
        scenarios=[{"name": "server", "options": {"engine": "fake-pool", "rate_qps": 200, "slo": P50}},
                   {"name": "concurrency", "options": {**common, "users": [1, 2]}},
                   {"name": "sweep", "options": {**common, "rates": 2}}],
        exclude=[{"model": "tiny-bert", "scenario": "concurrency"}, {"model": "tiny-bert", "scenario": "sweep"},
                 {"model": "tiny-gpt2", "scenario": "server"}, {"model": "tiny-llama", "scenario": "server"}],
        defaults={"warmup_iterations": 1, "warmup_s": 0, "min_iterations": min_queries(0.5), "min_duration_s": 0.2,
                  "intra_op_threads": 1, "timeout_s": 120}))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    recs = load_records(out)
    assert len(recs) == 1 + 2 * 3 and all(r.status == "ok" for r in recs), [r.error for r in recs]
    by = {(r.config.model.name, r.config.scenario.name, r.config.scenario.options.get("users")): r for r in recs}
    for r in recs:
        m = r.metrics
        assert m.serving.engine == "fake-pool" and m.sufficient == m.verdict.valid
        assert m.serving.requests >= min_queries(0.5) and m.serving.failed_requests == 0
        assert m.latency is None and not m.samples_ms  # never a latency to take a ratio of
        assert r.provenance.engine["implementation"] == "tests.serving_fakes.PoolSystem"
        assert r.provenance.workload.requests == m.serving.requests and len(r.provenance.workload.digest) == 16
        assert m.loop.served.samples == m.serving.requests and m.phase_seconds == {}
    bert = by["tiny-bert", "server", None].metrics
    assert bert.serving.load.pattern == "open-loop" and bert.serving.load.rate_per_s == 200
    assert bert.serving.output_tokens == 0 and bert.serving.ttft_ms.count == 0  # embeddings: E2E only
    assert bert.padding.padding_tokens == PADDING_PER_REQUEST * bert.serving.requests
    assert bert.loop.served.tokens_counted == "input tokens processed"
    for model in ("tiny-llama", "tiny-gpt2"):
        for users in (1, 2):
            m = by[model, "concurrency", users].metrics
            assert m.serving.load.pattern == "closed-loop" and m.serving.load.users == users
            assert m.serving.output_tokens == 3 * m.serving.requests and m.serving.tpot_ms.count > 0
        sweep = by[model, "sweep", None].metrics
        assert [level.kind for level in sweep.sweep] == ["synchronous", "throughput", "rate", "rate"]
        assert sweep.serving == sweep.sweep[1].metrics and sweep.serving.load.pattern == "burst"
        assert sweep.capacity.method == "sweep levels"
        assert [p.load for p in sweep.capacity.probes] == [level.metrics.load.rate_per_s for level in sweep.sweep[2:]]
    # the report: the answer is a capacity per variant and engine; every run is on the curve; no speedup anywhere
    answer = pd.read_csv(out / "serving-answer.csv")
    assert len(answer) == len(recs) and set(answer["engine"]) == {"fake-pool"}
    assert not (out / "best.csv").exists()
    runs = pd.read_csv(out / "serving.csv")
    assert sorted(runs["requests"]) == sorted(r.metrics.serving.requests for r in recs)
    levels = pd.read_csv(out / "serving-levels.csv")
    assert sorted(levels["run"].unique()) == ["sweep: rate", "sweep: synchronous", "sweep: throughput"]
    (curve, _), = [(f, p) for f, p in saved_figures if p.name == "throughput-latency.png"]
    expected = [(level.metrics.tpot_ms.p99, level.metrics.output_tokens_per_s)
                for r in recs if r.metrics.sweep for level in r.metrics.sweep if not level.metrics.stop_reason]
    expected += [(r.metrics.serving.tpot_ms.p99, r.metrics.serving.output_tokens_per_s)
                 for r in recs if r.config.scenario.name == "concurrency"]
    tpot_panel = [p for line in curve.axes[0].get_lines() if line.get_marker() == "o"
                  for p in zip(line.get_xdata(), line.get_ydata())]
    np.testing.assert_allclose(sorted(tpot_panel), sorted(expected))
    assert {p.name for _, p in saved_figures} >= {"serving-pareto-tiny-llama.png", "serving-pareto-tiny-gpt2.png"}
    printed = capsys.readouterr().out
    assert "capacity at SLO" in printed and "vs fp32" not in printed


# --- requests, sizing, energy -----------------------------------------------------------------------------

def test_fewer_requests_are_the_first_of_more(tokenizer):
    """A point's runs of different lengths send the first n of one seeded sequence."""
    specs = (UniformLength(min=4, max=40), NormalLength(mean=8, stdev=3, min=1, max=16))
    assert build_requests(tokenizer, 700, *specs, seed=4)[:64] == build_requests(tokenizer, 64, *specs, seed=4)


def test_the_same_requests_reach_every_variant_engine_and_pattern(tokenizer):
    """The record's workload digest is a digest of the requests: equal across engines and patterns at one seed,
    different at another."""
    options = {"requests": 24, "output_tokens": {"min": 1, "max": 4}, "prompt_tokens": {"min": 2, "max": 8}}
    served = [run("concurrency", tokenizer, engine="fake-pool", users=2, **options),
              run("concurrency", tokenizer, engine="fake-failing", users=1, **options),
              run("server", tokenizer, engine="fake-pool", rate_qps=500, **options)]
    digests = {r.provenance.workload.digest for r in served}
    assert len(digests) == 1 and all(r.provenance.workload.requests == 24 for r in served)
    other = run("concurrency", tokenizer, engine="fake-pool", users=2, seed=9, **options)
    assert other.provenance.workload.digest not in digests


class Window(WindowHook):
    def __init__(self):
        self.edges: list[str] = []

    def opened(self):
        self.edges.append("opened")

    def closed(self):
        self.edges.append("closed")


@pytest.mark.parametrize("name, options", [("server", {"rate_qps": 300, "capacity": True,
                                                      "capacity_range": [100, 400], "capacity_probes": 3}),
                                           ("concurrency", {"users": 2, "capacity": True, "capacity_range": [1, 3]}),
                                           ("sweep", {"rates": 1})])
def test_only_the_main_run_is_the_timed_window_and_it_declares_its_volume(tokenizer, name, options):
    window = Window()
    settings = LoopSettings(warmup_iterations=1, min_iterations=11, min_duration_s=0.0, window=window)
    result = run(name, tokenizer, settings=settings, engine="fake-pool", output_tokens=2, **options)
    assert window.edges == ["opened", "closed"]  # warm-up, levels and probes outside
    m = result.serving
    assert result.loop.served.samples == m.requests - m.failed_requests
    assert result.loop.served.tokens == m.output_tokens == 2 * result.loop.served.samples
    assert result.loop.served.tokens_counted == "output tokens generated" and result.loop.wall_s == m.duration_s


# --- capacity, failures, validity ---------------------------------------------------------------------------

def test_users_capacity_is_exact_on_a_system_with_known_latencies(tokenizer):
    result = run("concurrency", tokenizer, engine="fake-two-slots", users=1, output_tokens=2, requests=12,
                 slo={"e2e_ms": {"p50": 300}}, capacity=True, capacity_range=[1, 6])
    capacity = result.capacity
    assert capacity.parameter == "users" and capacity.capacity == 2 and capacity.lowest_invalid == 3
    assert all(p.metrics is not None and p.metrics.load.users == p.load for p in capacity.probes)
    assert [p.valid for p in capacity.probes if p.load == 3] == [False]
    assert all(any(reason.startswith("e2e_ms p50") for reason in p.reasons) for p in capacity.probes if not p.valid)


def test_failed_requests_are_counted_and_fail_the_run(tokenizer):
    result = run("concurrency", tokenizer, engine="fake-failing", users=2, output_tokens=2, requests=20)
    m = result.serving
    assert m.requests == 20 and m.failed_requests == math.ceil(20 / FAIL_EVERY) and m.unserved_requests == 0
    assert m.requests_per_s * m.duration_s == pytest.approx(20 - m.failed_requests)
    assert not result.verdict.valid and not result.verdict.checks["no_failures"] and not result.sufficient
    assert sample_flags(result) == ["failed requests"]


def test_an_over_saturated_sweep_rate_stops_early_and_says_so(tokenizer):
    result = run("sweep", tokenizer, engine="fake-pool", rates=1, output_tokens=2, max_backlog=1, requests=40)
    (rate,) = [level for level in result.sweep if level.kind == "rate"]
    assert rate.metrics.over_saturated and rate.metrics.unserved_requests > 0 and not rate.verdict.valid
    assert "over-saturated" in rate.metrics.stop_reason


# --- the plan -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("option, value, fix", [
    ("batching", "dynamic", "engine: static"),
    ("batching", "single", "engine: single"),
    ("latency_bound_ms", 130, "slo: {e2e_ms: {p99: 130}}"),
    ("percentile", 0.9, "slo: {e2e_ms: {p90: 130}}"),
    ("new_tokens", 16, "output_tokens: 16"),
    ("ttft_bound_ms", 2000, "slo: {ttft_ms: {p99: 2000}}"),
    ("tpot_bound_ms", 200, "slo: {tpot_ms: {p99: 200}}"),
    ("find_peak", True, "capacity: true"),
    ("peak_low_qps", 1, "capacity_range"),
    ("peak_iterations", 6, "capacity_probes: 6"),
])
def test_old_server_options_are_refused_with_the_fix(write_suite, capsys, option, value, fix):
    path = write_suite(tiny_suite(scenarios=[{"name": "server", "options": {option: value}}]))
    with pytest.raises(ConfigError) as info:
        build_plan(load_suite(path), path)
    assert info.value.key == f"scenarios[0].options.{option}" and "retired" in info.value.problem
    assert fix in info.value.fix
    assert main(["plan", str(path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_users_list_is_one_point_per_value(write_suite):
    path = write_suite(tiny_suite(models=[TINY_GPT2], scenarios=[
        {"name": "concurrency", "options": {"engine": "fake-pool", "users": [1, 4, 16]}}]))
    plan = build_plan(load_suite(path), path)
    assert [p.scenario.options["users"] for p in plan.points] == [1, 4, 16]
    assert len({p.point_id for p in plan.points}) == 3
    assert all(f"users={u}" in p.label for p, u in zip(plan.points, (1, 4, 16)))


def test_an_unknown_engine_and_an_encoder_asked_for_output_tokens_are_judged_at_plan_time(write_suite):
    path = write_suite(tiny_suite(scenarios=[{"name": "server", "options": {"engine": "warp-drive"}}]))
    with pytest.raises(ConfigError) as info:
        build_plan(load_suite(path), path)
    assert info.value.key == "scenarios[0].options.engine" and "warp-drive" in info.value.problem
    path = write_suite(tiny_suite(scenarios=[{"name": "server", "options": {"engine": "fake-pool",
                                                                           "output_tokens": 4}}]), "enc.yaml")
    plan = build_plan(load_suite(path), path)
    assert [p.model.name for p in plan.points] == ["tiny-gpt2"]
    assert "embedding" in dict(plan.skipped)[next(label for label, _ in plan.skipped if "tiny-bert" in label)]


@pytest.fixture
def stand_in_engines(monkeypatch):
    """The engines the shipped suite names, where this branch does not have them yet."""
    for name in ("single", "static", "continuous"):
        if name not in engines:
            monkeypatch.setitem(engines._items, name, StandInEngine)


def test_the_shipped_serving_suite_expands_users_and_capacity(stand_in_engines):
    path = packaged_suites()["serving"]
    plan = build_plan(load_suite(path), path)
    points = [(p.model.name, p.variant.name, p.scenario.name, p.scenario.options.get("engine"),
               p.scenario.options.get("users"), p.scenario.options.get("capacity", False)) for p in plan.points]
    for variant in ("fp32", "bf16", "torch-int8-dynamic"):
        for engine in ("static", "continuous"):
            assert {u for m, v, s, e, u, c in points if (m, v, e, c) == ("smollm2-135m", variant, engine, False)} \
                == {1, 4}
        assert ("smollm2-135m", variant, "concurrency", "continuous", 2, True) in points
        assert ("minilm-l6", variant, "server", "static", None, False) in points
    assert len(points) == 18 and not plan.skipped
    found = plan.with_serving_options(capacity=True)
    assert all(p.scenario.options["capacity"] is True for p in found.points)


# --- the answer -----------------------------------------------------------------------------------------

def test_an_overloaded_serving_point_is_answered_by_its_capacity_never_a_speedup(tmp_path, capsys):
    """fp32 at 4 users meets the SLO; int8 is measured at 16 users, past its capacity: its latency is its queue.
    Neither gets a speedup; the answer is each one's capacity, and the overloaded one has none."""
    from rich.console import Console

    from bench.analysis.frame import records_frame
    from bench.report.answer import best_variants
    from bench.report.serving import serving_answer
    from bench.report.terminal import print_summary

    fp32 = record(scenario="concurrency", options={"users": 4}, metrics=serving_metrics(users=4, done=8.0, p99=90.0))
    int8 = record(scenario="concurrency", options={"users": 16}, variant="int8", transforms=[{"name": "int8-dynamic"}],
                  metrics=serving_metrics(users=16, done=9.0, p99=400.0, checks={"slo": False}, estimate_ms=420.0))
    df = records_frame([fp32, int8])
    assert df["serving"].all() and df["speedup_p50"].isna().all() and df["throughput_ratio"].isna().all()
    assert best_variants(df) is None
    answer = serving_answer(df).set_index("variant")
    assert answer.loc["fp32", "capacity"] == 4 and answer.loc["fp32", "note"].startswith("at least")
    assert pd.isna(answer.loc["int8", "capacity"])
    out = io.StringIO()
    print_summary(Console(file=out, width=120), df, [tmp_path / "report.html"])
    printed = out.getvalue()
    assert ">= 4 users" in printed and "none within the SLO" in printed and "x [" not in printed


def test_a_long_variant_and_no_capacity_leave_the_notes_readable_in_120_columns(tmp_path):
    """Defect: `bench run serving` printed "over the SL" for torch-int8-dynamic: only the variant folded, and the
    notes column took what was left. Now the widest foldable columns give way until the notes have NOTES_MIN."""
    from rich.console import Console

    from bench.analysis.frame import records_frame
    from bench.report.terminal import print_summary

    slow = record(scenario="concurrency", model="smollm2-135m", options={"users": 4}, variant="torch-int8-dynamic",
                  transforms=[{"name": "int8-dynamic"}],
                  metrics=serving_metrics(users=4, done=9.0, p99=400.0, checks={"slo": False}, estimate_ms=420.0))
    out = io.StringIO()
    print_summary(Console(file=out, width=120), records_frame([slow]), [tmp_path / "report.html"])
    lines = out.getvalue().splitlines()
    assert max(map(len, lines)) <= 120
    row = next(line for line in lines if line.startswith("smollm2-135m"))
    assert "none within the SLO" in row and "over the SLO" in row


def test_the_terminal_orders_loads_as_numbers():
    from rich.console import Console

    from bench.analysis.frame import records_frame
    from bench.report.terminal import print_summary

    points = [record(scenario="concurrency", options={"users": users}, session=f"s{users}",
                     metrics=serving_metrics(users=users, done=8.0, p99=90.0)) for users in (32, 8, 1)]
    out = io.StringIO()
    print_summary(Console(file=out, width=120), records_frame(points), [])
    headings = [line for line in out.getvalue().splitlines() if line.startswith("scenario:")]
    assert [h.rpartition("users=")[2] for h in headings] == ["1)", "8)", "32)"]


def test_the_page_answers_a_serving_only_report_with_capacities(tmp_path):
    """Defect: a report of serving points only opened with "The answer: No point was measured." (the answer was
    the speedups' alone); now each served model gets its capacities first."""
    from bench.analysis.frame import records_frame
    from bench.report.page import render_page

    kept = record(scenario="concurrency", options={"users": 4, "slo": {"ttft_ms": {"p50": 500}}},
                  metrics=serving_metrics(users=4, done=8.0, p99=90.0))
    over = record(scenario="concurrency", options={"users": 16}, variant="int8", transforms=[{"name": "int8-dynamic"}],
                  metrics=serving_metrics(users=16, done=9.0, p99=400.0, checks={"slo": False}, estimate_ms=420.0))
    page = render_page(records_frame([kept, over]), [])
    answer = html.unescape(page.split("id='answer'")[1].split("id='provenance'")[0])
    assert "No point was measured" not in answer
    assert ">= 4 users" in answer and "none within the SLO" in answer and "within ttft p50 <= 500 ms" in answer


def test_capacity_across_processes_has_a_t_interval_and_one_process_says_n1():
    from bench.analysis.frame import records_frame
    from bench.report.serving import serving_answer

    search = lambda capacity: {"parameter": "users", "capacity": capacity, "lowest_invalid": capacity + 1,  # noqa
                               "probes": [{"load": capacity, "valid": True, "reasons": []}]}
    repeated = [record(scenario="concurrency", options={"users": 2}, session=f"s{i}",
                       metrics=serving_metrics(users=2, capacity=search(c))) for i, c in enumerate((6, 8, 7))]
    once = record(scenario="concurrency", options={"users": 2}, variant="bf16", precision="bf16",
                  metrics=serving_metrics(users=2, capacity=search(5)))
    answer = serving_answer(records_frame([*repeated, once])).set_index("variant")
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert answer.loc["fp32", "capacity"] == 7 and answer.loc["fp32", "processes"] == 3
    assert answer.loc["fp32", "capacity_ci_low"] == pytest.approx(7 - half)
    assert answer.loc["fp32", "capacity_ci_high"] == pytest.approx(7 + half)
    assert answer.loc["bf16", "note"] == "n=1" and pd.isna(answer.loc["bf16", "capacity_ci_low"])


def test_a_v3_server_record_reads_as_a_v4_serving_record(tmp_path):
    from bench.records.migrate import migrate
    from bench.records.schema import Record

    old = record(scenario="server", options={"rate_qps": 20, "batching": "dynamic", "latency_bound_ms": 130,
                                             "percentile": 0.9}).model_dump(mode="json")
    old["schema_version"] = 3
    old["metrics"].update(batching={"policy": "dynamic", "max_batch_size": 8}, sufficient=False)
    old["metrics"]["server"] = {
        "target_qps": 20.0, "requests": 98, "scheduled_requests": 100, "duration_s": 5.0,
        "latency_ms": {"p50": 20.0, "p90": 40.0, "p99": 60.0}, "queue_ms_p99": 1.0, "mean_batch_size": 2.0,
        "completed_samples_per_s": 19.6, "goodput_requests_per_s": 19.0, "good_fraction": 0.97,
        "bounds_ms": {"latency": 130.0}, "validity": {
            "valid": False, "checks": {"min_duration": True, "min_queries": True, "latency_bound": True,
                                       "all_served": False},
            "reasons": ["overloaded: 2 of 100 requests unserved at the deadline"], "percentile": 0.9,
            "confidence": 0.99, "tolerance": 1, "conservative_percentile_s": 0.045}}
    old["metrics"]["peak"] = {"rate_qps": 25.0, "criterion": "x", "history": [
        {"rate_qps": 25.0, "meets_bound": True, "p99_ms": 50.0, "completed_samples_per_s": 25.0, "reasons": []},
        {"rate_qps": 37.5, "meets_bound": False, "p99_ms": 500.0, "completed_samples_per_s": 30.0,
         "reasons": ["over"]}]}
    rec = Record.model_validate(migrate(old))
    m = rec.metrics
    assert m.serving.engine == "static" and m.serving.load.rate_per_s == 20.0
    assert (m.serving.requests, m.serving.failed_requests, m.serving.e2e_ms.p90) == (100, 2, 40.0)
    assert not m.verdict.valid and m.verdict.checks["served"] is False and m.verdict.checks["slo"] is True
    (check,) = m.verdict.slo
    assert (check.metric, check.percentile, check.bound_ms, check.estimate_ms) == ("e2e_ms", "p90", 130.0, 45.0)
    assert m.capacity.capacity == 25.0 and m.capacity.lowest_invalid == 37.5
    assert sample_flags(m) == ["unserved requests"]


def test_machines_are_compared_by_capacity_at_the_slo():
    from bench.analysis.frame import records_frame
    from bench.report.hardware import hardware_table
    from bench.report.serving import serving_hardware

    search = lambda capacity: {"parameter": "users", "capacity": capacity, "lowest_invalid": capacity + 1,  # noqa
                               "probes": [{"load": capacity, "valid": True, "reasons": []}]}
    recs = [record(scenario="concurrency", options={"users": 2}, machine=machine, session=f"{machine}{i}",
                   metrics=serving_metrics(users=2, capacity=search(capacity)))
            for machine, capacities in (("big", (16, 17, 16)), ("small", (4, 4, 5))) for i, capacity in
            enumerate(capacities)]
    df = records_frame(recs)
    (row,) = serving_hardware(df).to_dict("records")
    assert row["best"] == "big" and row["runner_up"] == "small" and row["verdict"] == "higher"
    assert row["big capacity"] == pytest.approx(49 / 3) and row["small capacity"] == pytest.approx(13 / 3)
    assert hardware_table(df) is None  # the latency comparison has no serving point
