"""Serving engines (single, static, continuous) and the session primitives they call (generate_batch, embed_batch,
continuous_batching), on tiny random GPT-2 and Llama through PyTorch and ONNX Runtime, and on fake sessions with a
known service time. No timing assertions about the machine: only lower bounds a sleep guarantees and upper bounds
many times what the work needs."""

from __future__ import annotations

import contextlib
import ctypes
import os
import time

import numpy as np
import pytest

from bench.backends import backends
from bench.errors import Unsupported
from bench.serving.engines import EngineSettings, engines
from bench.serving.loads import burst, closed_loop, open_loop
from bench.serving.metrics import serving_metrics
from bench.serving.requests import Completion, Request

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

import bench.plan  # noqa: E402,F401 - before bench.models.sources (see tests/test_ort_generate.py)
from bench.backends.onnxruntime import decoder as ort_decoder  # noqa: E402
from bench.backends.onnxruntime import export as onnx_export  # noqa: E402
from bench.backends.onnxruntime import session as ort_session  # noqa: E402
from bench.backends.onnxruntime.backend import OrtSession  # noqa: E402
from bench.backends.pytorch.compile import CompiledSession  # noqa: E402
from bench.backends.pytorch.eager import TorchSession  # noqa: E402
from bench.backends.pytorch.generate import greedy_generate  # noqa: E402
from bench.drivers import drivers  # noqa: E402
from bench.drivers.loadgen.driver import LoadGenDriver  # noqa: E402
from conftest import tiny_causal_config  # noqa: E402
from serving_fakes import PoolSystem, running  # noqa: E402
from serving_fakes import requests as pool_requests  # noqa: E402

# Llama at a wider initialisation too: more varied tokens, so equality below can fail
CONFIGS = {"gpt2": lambda: tiny_causal_config("gpt2"),
           "llama": lambda: tiny_causal_config("llama", initializer_range=0.3)}
PROMPT_LENGTHS = (5, 12, 9, 3, 7, 10)
OUTPUTS = (6, 3, 8, 1, 5, 4)
SETTINGS = EngineSettings(max_batch=4, max_wait_s=0.002, max_sequence_tokens=32)


def prompts() -> list[tuple[int, ...]]:
    rng = np.random.default_rng(0)
    return [tuple(int(t) for t in rng.integers(1, 900, n)) for n in PROMPT_LENGTHS]


def workload() -> list[Request]:
    return [Request(index=i, prompt_ids=p, output_tokens=n) for i, (p, n) in enumerate(zip(prompts(), OUTPUTS))]


@pytest.fixture(scope="module")
def models():
    out = {}
    for arch, config in CONFIGS.items():
        torch.manual_seed(0)
        out[arch] = transformers.AutoModelForCausalLM.from_config(config()).eval()
    return out


@pytest.fixture(scope="module")
def reference(models):
    """{arch: each prompt's greedy tokens alone, from the `generate` scenario's loop}."""
    out = {}
    for arch, model in models.items():
        out[arch] = [greedy_generate(model, torch.tensor([p]), torch.ones(1, len(p), dtype=torch.long), n,
                                     lambda i: None, "cpu")[0].tolist() for p, n in zip(prompts(), OUTPUTS)]
        assert len({t for row in out[arch] for t in row}) > 10  # varied tokens: equality below can fail
    return out


@pytest.fixture(scope="module")
def ort_graphs(models, tmp_path_factory):
    cache = tmp_path_factory.mktemp("onnx")
    graphs = {}
    for arch, model in models.items():
        ids = torch.from_numpy(np.random.default_rng(1).integers(1, 900, (2, 16)))
        graphs[arch], _ = ort_decoder.cached_decoder_export(model, ids, torch.ones_like(ids), {"arch": arch}, cache, 18)
    return graphs


def torch_session(model, task: str = "causal-lm", autocast=contextlib.nullcontext) -> TorchSession:
    session = TorchSession(model, {}, "cpu", task, autocast)
    session.description = None  # what a backend's `open` fills; nothing here reads it
    return session


def onnx_session(path, eos: frozenset[int] = frozenset()) -> OrtSession:
    feed = {"input_ids": np.ones((1, 4), np.int64), "attention_mask": np.ones((1, 4), np.int64)}
    return OrtSession(ort_session.make_session(path, "cpu", "all", 1, 1), feed, "cpu", eos)


def session_for(backend: str, arch: str, models, ort_graphs):
    return torch_session(models[arch]) if backend == "pytorch" else onnx_session(ort_graphs[arch])


# --- session primitives ---------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["pytorch", "onnxruntime"])
@pytest.mark.parametrize("arch", list(CONFIGS))
def test_a_request_in_a_left_padded_batch_gets_the_tokens_it_gets_alone(backend, arch, models, ort_graphs, reference):
    """And the `generate` scenario's greedy tokens: GPT-2's learned positions fail this unless each left-padded row
    counts its positions from its own first token."""
    session = session_for(backend, arch, models, ort_graphs)
    calls: list[tuple[int, int]] = []
    batch = session.generate_batch(prompts(), list(OUTPUTS), lambda row, n: calls.append((row, n)))
    alone = [session.generate_batch([p], [n], lambda row, k: None)[0] for p, n in zip(prompts(), OUTPUTS)]
    assert batch == alone == reference[arch]
    assert [sum(n for row, n in calls if row == r) for r in range(len(OUTPUTS))] == list(OUTPUTS)
    assert {n for _, n in calls} == {1}


@pytest.mark.parametrize("backend", ["pytorch", "onnxruntime"])
def test_a_row_that_stops_at_eos_ends_at_its_eos_and_the_others_run_on(backend, models, ort_graphs, reference,
                                                                        monkeypatch):
    ref = reference["llama"][2]
    cut = next(i for i, t in enumerate(ref) if i >= 2 and t not in ref[:i])  # an EOS first produced at step `cut`
    if backend == "pytorch":
        monkeypatch.setattr(models["llama"].generation_config, "eos_token_id", ref[cut])
        session = torch_session(models["llama"])
    else:
        session = onnx_session(ort_graphs["llama"], frozenset({ref[cut]}))
    stops = [False] * len(OUTPUTS)
    stops[2] = True
    got = session.generate_batch(prompts(), list(OUTPUTS), lambda row, n: None, stop_at_eos=stops)
    assert got[2] == ref[:cut + 1]
    assert [g for i, g in enumerate(got) if i != 2] == [r for i, r in enumerate(reference["llama"]) if i != 2]


def test_stopping_at_eos_without_knowing_the_eos_is_unsupported(ort_graphs):
    with pytest.raises(Unsupported, match="EOS"):
        onnx_session(ort_graphs["llama"]).generate_batch(prompts()[:2], [2, 2], lambda r, n: None,
                                                         stop_at_eos=[True, False])


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    torch.manual_seed(0)
    model = transformers.BertModel(transformers.BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2,
                                                           intermediate_size=64, vocab_size=1000)).eval()
    example = {name: torch.ones((2, 8), dtype=torch.long) for name in ("input_ids", "attention_mask")}
    path, _ = onnx_export.cached_export(model, example, "last_hidden_state", {"m": "bert"},
                                        tmp_path_factory.mktemp("bert"), 18)
    return model, path


@pytest.mark.parametrize("backend", ["pytorch", "onnxruntime"])
def test_embed_batch_pads_to_the_longest_in_one_forward_and_counts_the_padding(backend, tiny_bert):
    model, path = tiny_bert
    shapes: list[tuple] = []
    if backend == "pytorch":
        session = torch_session(model, task="encoder")
        model.register_forward_pre_hook(lambda m, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)),
                                        with_kwargs=True)
    else:
        session = onnx_session(path)
        run = session.session.run
        session.session = type("Spy", (), {"run": lambda self, out, feed: shapes.append(feed["input_ids"].shape)
                                           or run(out, feed)})()
    stats = session.embed_batch(prompts())
    assert stats == {"tokens": sum(PROMPT_LENGTHS), "padding_tokens": 6 * 12 - sum(PROMPT_LENGTHS)}
    assert shapes == [(6, 12)]


def _openmp():
    """The OpenMP runtime torch runs on (libgomp), to read a thread's own setting before torch touches it."""
    try:
        return ctypes.CDLL("libgomp.so.1", mode=os.RTLD_NOLOAD)
    except OSError:
        pytest.skip("torch runs on another OpenMP runtime than libgomp here")


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: OpenMP's default is the one thread set")
@pytest.mark.parametrize("engine", ["static", "continuous"])
def test_a_serving_thread_runs_the_model_with_the_intra_op_threads_the_point_set(engine, models):
    """A new thread starts from OpenMP's default (every core), not from torch.set_num_threads in the thread that
    opened the session: the engines' threads must apply the point's count before the model runs there."""
    openmp, model = _openmp(), models["llama"]
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    seen: list[int] = []
    try:
        system = engines.get(engine)().build(torch_session(model), SETTINGS)
        with running(system):
            hook = model.register_forward_pre_hook(lambda module, args: seen.append(openmp.omp_get_max_threads()))
            try:
                burst(system, workload()[:2])
            finally:
                hook.remove()
    finally:
        torch.set_num_threads(previous)
    assert seen and set(seen) == {1}


# --- the engines on fake sessions ---------------------------------------------------------------------

FAIL = 13  # a prompt starting with this token makes the fake session raise


class FakeSession:
    """Generates `step_s` per step (every row one token per step, until its own length); its token ids are the
    prompt's first id repeated. Raises `error` for a batch holding a prompt that starts with FAIL."""

    def __init__(self, step_s: float = 0.002, error: Exception = RuntimeError("boom")):
        self.step_s, self.error = step_s, error
        self.batches: list[list[int]] = []  # the first prompt id of each request, per batch

    def generate_batch(self, prompts, output_tokens, on_token, stop_at_eos=None):
        self.batches.append([p[0] for p in prompts])
        if any(p[0] == FAIL for p in prompts):
            raise self.error
        for step in range(max(output_tokens)):
            time.sleep(self.step_s)
            for row, wanted in enumerate(output_tokens):
                if step < wanted:
                    on_token(row, 1)
        return [[p[0]] * n for p, n in zip(prompts, output_tokens)]

    def embed_batch(self, prompts):
        self.batches.append([p[0] for p in prompts])
        return {}


def fake_requests(count: int, fail=(), output_tokens=lambda i: 3) -> list[Request]:
    return [Request(index=i, prompt_ids=(FAIL if i in fail else 100 + i, 1, 2), output_tokens=output_tokens(i))
            for i in range(count)]


def test_static_batches_hold_at_most_max_batch_form_under_load_and_finish_together():
    session = FakeSession()
    with running(engines.get("static")().build(session, EngineSettings(max_batch=4, max_wait_s=0.5))) as system:
        result = burst(system, fake_requests(10, output_tokens=lambda i: i % 3 + 1))
    assert session.batches == [[100, 101, 102, 103], [104, 105, 106, 107], [108, 109]]
    assert [t.info["batch_size"] for t in result.timings] == [4] * 8 + [2] * 2
    assert all(t.ok and t.output_tokens == t.index % 3 + 1 and t.info["token_ids"] == (100 + t.index,) * t.output_tokens
               for t in result.timings)
    for batch in (result.timings[:4], result.timings[4:8], result.timings[8:]):
        # every request of a batch completes when its longest does, after every token of the batch
        assert min(t.done_ns for t in batch) >= max(at for t in batch for at, _ in t.token_ns)
    assert max(t.done_ns for t in result.timings[:4]) <= min(t.info["batch_started_ns"] for t in result.timings[4:])


def test_static_waits_up_to_max_wait_for_a_fuller_batch_and_not_once_it_is_full():
    session = FakeSession()
    with running(engines.get("static")().build(session, EngineSettings(max_batch=4, max_wait_s=0.2))) as system:
        alone = burst(system, fake_requests(1)).timings[0]
    assert alone.info["batch_started_ns"] - alone.sent_ns >= 0.19e9  # waited for company that never came
    with running(engines.get("static")().build(session, EngineSettings(max_batch=4, max_wait_s=30.0))) as system:
        full = burst(system, fake_requests(4)).timings
    assert all(t.info["batch_started_ns"] - t.sent_ns < 10e9 for t in full)  # a full batch goes at once
    assert session.batches[-1] == [100, 101, 102, 103]


def test_single_serves_one_request_at_a_time_in_arrival_order():
    session = FakeSession()
    with running(engines.get("single")().build(session, EngineSettings(max_batch=8, max_wait_s=1.0))) as system:
        result = closed_loop(system, fake_requests(6), users=3)
    assert session.batches == [[100 + i] for i in range(6)]
    assert all(t.ok and t.info["batch_size"] == 1 for t in result.timings)


@pytest.mark.parametrize("engine, failed", [("single", {2}), ("static", {0, 1, 2})])
def test_a_session_error_fails_its_batch_once_and_the_engine_serves_on(engine, failed):
    session = FakeSession()
    settings = EngineSettings(max_batch=3, max_wait_s=0.5)
    with running(engines.get(engine)().build(session, settings)) as system:
        result = burst(system, fake_requests(6, fail={2}))
    assert {t.index for t in result.timings if not t.ok} == failed
    assert all(t.error == "RuntimeError: boom" and t.output_tokens == 0 for t in result.timings if not t.ok)
    assert all(t.ok and t.output_tokens == 3 for t in result.timings if t.index not in failed)
    assert serving_metrics(result, engine).failed_requests == len(failed)


def test_unsupported_in_a_batch_fails_its_requests_with_the_reason_and_the_system_names_it():
    session = FakeSession(error=Unsupported("no kernel for this"))
    with running(engines.get("static")().build(session, SETTINGS)) as system:
        result = burst(system, fake_requests(2, fail={0}))
    assert all(t.error == "Unsupported: no kernel for this" for t in result.timings)
    assert system.unsupported == "no kernel for this"


def test_stop_fails_the_waiting_requests_once_and_refuses_new_ones():
    done: list[tuple[int, Completion]] = []
    system = engines.get("single")().build(FakeSession(step_s=0.05), SETTINGS)
    system.start()
    for request in fake_requests(4):
        system.submit(request, lambda n: None, lambda c, i=request.index: done.append((i, c)))
    time.sleep(0.02)  # the first request is being served
    system.stop()
    system.stop()  # idempotent
    system.submit(fake_requests(5)[4], lambda n: None, lambda c: done.append((4, c)))
    assert sorted(i for i, _ in done) == [0, 1, 2, 3, 4]
    assert dict(done)[0].error is None
    assert all("stopped" in c.error or "not running" in c.error for i, c in done if i)


# --- every engine on tiny models, under every load ----------------------------------------------------

LOADS = {"open-loop": lambda system, reqs: open_loop(system, reqs, rate=200, seed=1, deadline_s=120),
         "closed-loop": lambda system, reqs: closed_loop(system, reqs, users=3, deadline_s=120),
         "burst": lambda system, reqs: burst(system, reqs, deadline_s=120)}


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_every_engine_gives_every_request_its_greedy_tokens_under_every_load(arch, models, reference):
    session = torch_session(models[arch])
    for engine in ("single", "static", "continuous"):
        system = engines.get(engine)().build(session, SETTINGS)
        for load, send in LOADS.items():
            with running(system):
                result = send(system, workload())
            assert all(t.ok for t in result.timings), (engine, load, [t.error for t in result.timings])
            got = [list(t.info["token_ids"]) for t in result.timings]
            assert got == reference[arch], (engine, load)
            assert [t.output_tokens for t in result.timings] == list(OUTPUTS)
            assert [sum(n for _, n in t.token_ns) for t in result.timings] == list(OUTPUTS)
            system = engines.get(engine)().build(session, SETTINGS)  # a stopped system is not started again


def test_onnxruntime_serves_requests_through_the_static_engine(models, ort_graphs, reference):
    with running(engines.get("static")().build(onnx_session(ort_graphs["gpt2"]), SETTINGS)) as system:
        result = burst(system, workload())
    assert [list(t.info["token_ids"]) for t in result.timings] == reference["gpt2"]
    assert max(t.info["batch_size"] for t in result.timings) == SETTINGS.max_batch


def test_continuous_describes_the_implementation_that_served(models):
    system = engines.get("continuous")().build(torch_session(models["llama"]), SETTINGS)
    with running(system):
        burst(system, workload())
    described = system.describe()
    assert described["implementation"] == "transformers.ContinuousBatchingManager"
    assert described["transformers"] == transformers.__version__
    config = described["config"]
    assert config["max_requests_per_batch"] == SETTINGS.max_batch and config["num_blocks"] >= SETTINGS.max_batch
    assert config["max_batch_tokens"] == SETTINGS.max_batch * SETTINGS.max_sequence_tokens


def _flex_attention_llama():
    config = CONFIGS["llama"]()
    return transformers.AutoModelForCausalLM.from_config(config, attn_implementation="flex_attention").eval()


@pytest.mark.parametrize("variant, reason", [
    ("onnxruntime", "no continuous batching"),
    ("torch-compile", "not the compiled graph"),
    ("encoder", "serves causal LMs"),
    ("autocast", "autocast"),
    ("flex-attention", "flex_attention is not supported for continuous batching"),
])
def test_a_session_continuous_batching_cannot_serve_is_unsupported_with_the_reason(variant, reason, models,
                                                                                   ort_graphs, tiny_bert):
    model = models["llama"]
    session = {
        "onnxruntime": lambda: onnx_session(ort_graphs["llama"]),
        "torch-compile": lambda: CompiledSession(torch_session(model), model, dynamic=False),
        "encoder": lambda: torch_session(tiny_bert[0], task="encoder"),
        "autocast": lambda: torch_session(model, autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16)),
        "flex-attention": lambda: torch_session(_flex_attention_llama()),
    }[variant]()
    with pytest.raises(Unsupported, match=reason):
        engines.get("continuous")().build(session, SETTINGS)


def test_backends_declare_the_engines_they_serve_for_the_plan():
    assert backends.get("pytorch").engine_refusal("continuous", "causal-lm") is None
    assert backends.get("pytorch").engine_refusal("static", "encoder") is None
    assert "causal LMs" in backends.get("pytorch").engine_refusal("continuous", "encoder")
    assert "continuous" in backends.get("onnxruntime").engine_refusal("continuous", "causal-lm")
    assert backends.get("onnxruntime").engine_refusal("static", "causal-lm") is None
    assert "not wired" in backends.get("torch-compile").engine_refusal("static", "causal-lm")
    assert backends.get("torch-compile").engine_refusal("static", "encoder") is None


# --- LoadGen driving the engines ------------------------------------------------------------------------

needs_loadgen = pytest.mark.skipif(LoadGenDriver.missing() is not None, reason=f"{LoadGenDriver.missing()}")


@needs_loadgen
@pytest.mark.parametrize("pattern", ["open-loop", "burst"])
def test_loadgen_drives_the_static_engine_end_to_end(pattern, models, reference):
    driver = LoadGenDriver()
    with running(engines.get("static")().build(torch_session(models["llama"]), SETTINGS)) as system:
        if pattern == "open-loop":
            result = driver.open_loop(system, workload(), rate=100, seed=2, deadline_s=120)
        else:
            result = driver.burst(system, workload(), deadline_s=120)
    assert result.load.pattern == pattern and result.stop_reason is None
    assert [list(t.info["token_ids"]) for t in result.timings] == reference["llama"]
    for t in result.timings:
        first = t.token_ns[0][0]
        assert t.scheduled_ns <= first <= t.done_ns and t.scheduled_ns <= t.sent_ns <= t.done_ns + 1
        assert sum(n for _, n in t.token_ns) == t.output_tokens
    metrics = serving_metrics(result, "static")
    assert metrics.failed_requests == 0 and metrics.output_tokens == sum(OUTPUTS)


def test_drivers_declare_their_patterns_for_the_plan():
    assert drivers.get("bench").pattern_refusal("closed-loop") is None
    assert drivers.get("bench").pattern_refusal("open-loop", "gamma") is None
    assert "closed loop" in drivers.get("loadgen").pattern_refusal("closed-loop")
    assert "Poisson" in drivers.get("loadgen").pattern_refusal("open-loop", "gamma")
    assert drivers.get("loadgen").pattern_refusal("burst") is None


@needs_loadgen
def test_loadgen_refuses_a_closed_loop_and_bursty_arrivals():
    with pytest.raises(Unsupported, match="closed loop"):
        LoadGenDriver().closed_loop(PoolSystem(), pool_requests(3), users=2)
    with pytest.raises(Unsupported, match="Poisson"):
        LoadGenDriver().open_loop(PoolSystem(), pool_requests(3), rate=10, seed=0, distribution="gamma")


@needs_loadgen
def test_loadgen_open_loop_stops_an_over_saturated_run_and_counts_the_unserved():
    with running(PoolSystem(capacity=1, per_token_s=0.02)) as system:  # 25 requests/s at most, sent 400/s
        result = LoadGenDriver().open_loop(system, pool_requests(40), rate=400, seed=0, max_backlog=4)
    assert result.stop_reason.startswith("over-saturated")
    unserved = [t for t in result.timings if not t.served]
    assert unserved and all("unserved" in t.error for t in unserved)
    assert all(t.ok for t in result.timings if t.served)


@needs_loadgen
def test_loadgen_deadline_fails_a_request_the_system_never_answers():
    with running(PoolSystem(capacity=4, silent={1})) as system:
        result = LoadGenDriver().burst(system, pool_requests(4), deadline_s=0.5)
    assert [t.ok for t in result.timings] == [True, False, True, True]
    assert "deadline" in result.timings[1].error and result.stop_reason == "the 0.5 s deadline passed"


@needs_loadgen
def test_loadgen_times_are_loadgens_own_from_the_scheduled_arrival():
    """A fake with a known per-token time: LoadGen's E2E and TTFT hold at least what the system took."""
    with running(PoolSystem(capacity=4, per_token_s=0.005)) as system:
        result = LoadGenDriver().open_loop(system, pool_requests(8, output_tokens=3), rate=50, seed=0)
    for t in result.timings:
        assert t.token_ns[0][0] - t.scheduled_ns >= 5e6 and t.done_ns - t.scheduled_ns >= 15e6
        assert t.sent_ns >= t.scheduled_ns
