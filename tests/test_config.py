"""Suite validation, matrix expansion and every kind of bad input the CLI must refuse in one line."""

from __future__ import annotations

import pytest

from bench.cli import main
from bench.config import load_suite
from bench.errors import ConfigError
from bench.plan import build_plan

from conftest import TINY_GPT2, tiny_suite


def plan_of(write_suite, data):
    path = write_suite(data)
    return build_plan(load_suite(path), path)


def test_cartesian_expansion_and_exclusion(write_suite):
    plan = plan_of(write_suite, tiny_suite(variants=["fp32", "bf16"], batch_sizes=[1, 4], seq_lens=[8, 16],
                                           exclude=[{"model": "tiny-bert", "batch_size": 4}]))
    # 2 models x 2 variants x 2 batches x 2 lengths = 16, minus tiny-bert at batch 4 (2 variants x 2 lengths)
    assert len(plan.points) == 12
    assert not any(p.model.name == "tiny-bert" and p.batch_size == 4 for p in plan.points)
    assert len({p.point_id for p in plan.points}) == 12


def test_point_ids_are_stable_and_depend_on_config(write_suite):
    a = plan_of(write_suite, tiny_suite())
    b = plan_of(write_suite, tiny_suite())
    c = plan_of(write_suite, tiny_suite(seq_lens=[32]))
    assert [p.point_id for p in a.points] == [p.point_id for p in b.points]
    assert not {p.point_id for p in a.points} & {p.point_id for p in c.points}


def test_defaults_and_singular_aliases(write_suite):
    plan = plan_of(write_suite, {"models": [TINY_GPT2], "scenario": "offline", "batch_size": 3})
    (point,) = plan.points
    assert point.scenario.name == "offline" and point.batch_size == 3
    assert point.settings.min_iterations == 64  # enough for a p90 claim by default
    assert point.backend == "pytorch" and point.device == "cpu" and point.variant.name == "fp32"


def test_weights_and_task_known_at_plan_time(write_suite):
    plan = plan_of(write_suite, tiny_suite())
    by_name = {p.model.name: p for p in plan.points}
    assert by_name["tiny-gpt2"].weights == "random" and by_name["tiny-gpt2"].task == "causal-lm"
    assert by_name["tiny-bert"].task == "encoder"


def test_plan_command_prints_matrix(write_suite, capsys):
    path = write_suite(tiny_suite())
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "2 point(s)" in out and "tiny-gpt2" in out


BAD_INPUTS = {
    "unparsable": ("models: [unclosed\n", "line", "YAML"),
    "python_tag": ("models: !!python/object/apply:os.system ['touch PWNED']\n", "line 1", "tag"),
    "unknown_key": (tiny_suite(bogus_key=1), "bogus_key", "remove the key"),
    "unknown_nested_key": (tiny_suite(defaults={"warmup_iterationz": 3}), "defaults.warmup_iterationz", "spelling"),
    "wrong_type": (tiny_suite(batch_sizes=["eight"]), "batch_sizes[0]", "expected type"),
    "unknown_source": (tiny_suite(models=[{**TINY_GPT2, "source": "nowhere"}]), "models[0].source", "use one of"),
    "unknown_architecture": (tiny_suite(models=[{**TINY_GPT2, "id": "gpt5"}]), "models[0].id", "use one of"),
    "missing_local_model": (tiny_suite(models=[{"name": "m", "source": "local", "id": "/no/such/dir"}]),
                            "models[0].id", "path"),
    "unknown_backend": (tiny_suite(backends=["tensorflow"]), "backends[0]", "use one of"),
    "unknown_scenario": (tiny_suite(scenarios=["marathon"]), "scenarios[0]", "use one of"),
    "unknown_variant": (tiny_suite(variants=["fp7"]), "variants[0]", "use one of"),
    "zero_batch": (tiny_suite(batch_sizes=[0]), "batch_sizes", "positive"),
    "negative_seq": (tiny_suite(seq_lens=[-5]), "seq_lens", "positive"),
    "not_a_mapping": ("- just\n- a list\n", "top level", "mapping"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
@pytest.mark.parametrize("command", ["plan", "run"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, command, write_suite, tmp_path, capsys):
    data, key, fix_words = BAD_INPUTS[case]
    path = write_suite(data)
    out_dir = tmp_path / "out"
    argv = [command, str(path)] + (["--out", str(out_dir)] if command == "run" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and str(path) in err
    assert key in err and fix_words.lower() in err.lower(), err
    assert "Traceback" not in err
    assert not out_dir.exists()
    assert not (tmp_path / "PWNED").exists() and not (path.parent.parent / "PWNED").exists()


def test_missing_suite_file(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert main(["run", str(missing), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "nope.yaml" in err and "not found" in err and not (tmp_path / "out").exists()


def test_unreadable_suite_file(write_suite, capsys):
    path = write_suite("")
    path.write_bytes(b"\xff\xfe\x00bad")
    assert main(["plan", str(path)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_config_error_names_file_key_and_fix(write_suite):
    path = write_suite(tiny_suite(seq_lens=[0]))
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    assert info.value.file == str(path) and info.value.key == "seq_lens" and info.value.fix


def test_default_suite_plans_offline():
    assert main(["plan"]) == 0


def test_latency_is_an_alias_and_throughput_is_refused_with_the_fix(write_suite, capsys):
    (point,) = plan_of(write_suite, {"models": [TINY_GPT2], "scenario": "latency"}).points
    assert point.scenario.name == "single-stream"
    path = write_suite({"models": [TINY_GPT2], "scenario": "throughput"})
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "scenarios[0]" in err and "offline" in err and "single-stream" in err


def test_backend_precision_and_options_are_judged_at_plan_time(write_suite, capsys):
    plan = plan_of(write_suite, {"models": [TINY_GPT2], "backends": ["onnxruntime"], "variants": ["bf16"]})
    assert not plan.points and "precision bf16 is not run by onnxruntime" in plan.skipped[0][1]
    bad = {"name": "o", "backend": "onnxruntime", "backend_options": {"graph_level": "all"}}
    path = write_suite({"models": [TINY_GPT2], "variants": [bad]})
    assert main(["plan", str(path)]) == 2
    assert "backend_options.graph_level" in capsys.readouterr().err


DUPLICATE_KEYS = {
    "block": ("models: [{name: m, source: random, id: gpt2}]\ndefaults:\n  warmup_iterations: 1\n"
              "  min_iterations: 5\n  warmup_iterations: 2\n", "defaults.warmup_iterations", "line 3, line 5"),
    "flow": ("models: [{name: m, source: random, id: gpt2}]\n"
             "defaults: {warmup_iterations: 1, min_iterations: 5, warmup_iterations: 2}\n",
             "defaults.warmup_iterations", "line 2 column 12, line 2 column 53"),
    "in_a_list": ("models:\n  - name: m\n    source: random\n    id: gpt2\n    name: n\n", "models[0].name",
                  "line 2, line 5"),
    "top_level": ("name: a\nmodels: [{name: m, source: random, id: gpt2}]\nname: b\n", "name", "line 1, line 3"),
}


@pytest.mark.parametrize("case", sorted(DUPLICATE_KEYS))
def test_a_key_given_twice_is_refused_with_each_line(case, write_suite, tmp_path, capsys):
    """Defect: PyYAML keeps the last of two equal keys, so `warmup_iterations: 1, ..., warmup_iterations: 2`
    ran with 2 without a word."""
    text, key, places = DUPLICATE_KEYS[case]
    path = write_suite(text)
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    assert info.value.key == key and places in info.value.problem and "keep one" in info.value.fix
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and not (tmp_path / "out").exists()


def test_a_machine_given_twice_in_a_prices_file_is_refused(tmp_path, capsys):
    prices = tmp_path / "prices.yaml"
    prices.write_text("machine-a: 3.6\nmachine-b: 1.0\nmachine-a: 2.0\n")
    assert main(["report", str(tmp_path), "--prices", str(prices)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{prices}: machine-a: key given 2 times (line 1, line 3)" in err


def test_equal_keys_spelled_differently_are_one_key_and_merges_may_be_overridden(write_suite):
    from bench.config import parse_yaml

    with pytest.raises(ConfigError) as info:
        parse_yaml(write_suite("sizes: {1: a, 0x1: b}\n"))
    assert info.value.key == "sizes.1"
    base = "base: &base {warmup_iterations: 1, min_iterations: 5}\ndefaults:\n  <<: *base\n  warmup_iterations: 2\n"
    assert parse_yaml(write_suite(base))["defaults"] == {"warmup_iterations": 2, "min_iterations": 5}
    assert parse_yaml(write_suite("a: {1: x, '1': y}\n"))["a"] == {1: "x", "1": "y"}


def test_an_exclusion_naming_a_scenario_alias_drops_its_points(write_suite):
    """Defect: `exclude: [{scenario: latency}]` matched nothing: the points carry the resolved name."""
    plan = plan_of(write_suite, tiny_suite(scenarios=["latency", "offline"],
                                           exclude=[{"model": "tiny-bert", "scenario": "latency"}]))
    assert sorted((p.model.name, p.scenario.name) for p in plan.points) == [
        ("tiny-bert", "offline"), ("tiny-gpt2", "offline"), ("tiny-gpt2", "single-stream")]


UNKNOWN_IN_EXCLUDE = {
    "model": ({"model": "tiny-t5"}, "exclude[1].model", "tiny-gpt2, tiny-bert"),
    "variant": ({"variant": "bf16"}, "exclude[1].variant", "fp32"),
    "backend": ({"backend": "onnxruntime"}, "exclude[1].backend", "pytorch"),
    "scenario": ({"scenario": "offline"}, "exclude[1].scenario", "single-stream"),
    "device": ({"device": "cuda"}, "exclude[1].device", "cpu"),
    "target": ({"target": "h100"}, "exclude[1].target", "remove"),
    "batch_size": ({"batch_size": 4}, "exclude[1].batch_size", "2"),
    "seq_len": ({"seq_len": 32, "model": "tiny-bert"}, "exclude[1].seq_len", "16"),
    "nothing": ({}, "exclude[1]", "name at least one"),
}


@pytest.mark.parametrize("case", sorted(UNKNOWN_IN_EXCLUDE))
def test_an_exclusion_naming_what_the_suite_lacks_is_refused(case, write_suite, capsys):
    """Defect: a rule naming a model, variant, backend, scenario, device or target the suite does not have
    matched nothing and said nothing, so the points it was meant to drop ran."""
    rule, key, fix_words = UNKNOWN_IN_EXCLUDE[case]
    path = write_suite(tiny_suite(exclude=[{"model": "tiny-bert", "batch_size": 2}, rule]))
    with pytest.raises(ConfigError) as info:
        build_plan(load_suite(path), path)
    assert info.value.key == key and fix_words in info.value.fix, info.value
    assert main(["plan", str(path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_device_not_in_the_registry_is_refused_with_the_known_ones(write_suite, capsys):
    """Devices are a registry (bench/devices/), not a closed list in the schema: a name no module registers is
    refused in one line that names the registered devices."""
    path = write_suite(tiny_suite(devices=["cpu", "xpu"]))
    with pytest.raises(ConfigError) as info:
        build_plan(load_suite(path), path)
    assert info.value.key == "devices[1]" and "'xpu'" in info.value.problem
    assert "cpu, cuda" in info.value.fix
    assert main(["plan", str(path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_backend_is_planned_only_on_the_devices_it_declares(write_suite, monkeypatch):
    """The plan judges backend x device from the backend's declaration: a pair it does not declare is skipped
    with the reason, as other incompatibilities are, before any model loads."""
    from bench.backends import backends

    monkeypatch.setattr(backends.get("onnxruntime"), "devices", frozenset({"cpu"}))
    plan = plan_of(write_suite, tiny_suite(models=[TINY_GPT2], backends=["pytorch", "onnxruntime"],
                                           devices=["cpu", "cuda"]))
    assert sorted((p.backend, p.device) for p in plan.points) == [
        ("onnxruntime", "cpu"), ("pytorch", "cpu"), ("pytorch", "cuda")]
    ((label, reason),) = plan.skipped
    assert "onnxruntime" in label and "cuda" in label
    assert reason == "onnxruntime does not run on cuda (it runs on cpu)"
