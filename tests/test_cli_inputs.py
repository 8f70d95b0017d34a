"""Command-line inputs judged before anything runs: --peaks files and --price-per-hour against the machines a
run will use. Each refusal is one line, exit 2, nothing written."""

from __future__ import annotations

import pytest

from bench.cli import main
from bench.records.store import append_record

from builders import record
from conftest import TINY_BERT, tiny_suite


def files_under(folder) -> set:
    return {p for p in folder.rglob("*") if p.is_file()}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "fix:" in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("command", ["report", "export"])
def test_a_missing_peaks_file_is_refused(command, tmp_path, capsys):
    """Defect: `--peaks FILE` naming no file was ignored, and the report went on without the ceilings asked for."""
    results = tmp_path / "results"
    append_record(results, record())
    before = files_under(results)
    assert main([command, str(results), "--peaks", str(tmp_path / "nope.json")]) == 2
    err = one_line_error(capsys)
    assert "nope.json" in err and "not found" in err
    assert files_under(results) == before


CORRUPT_PEAKS = {"not_json": "{machine_id: x", "not_an_object": "[1, 2]", "no_machine_id": '{"devices": {}}'}


@pytest.mark.parametrize("case", sorted(CORRUPT_PEAKS))
@pytest.mark.parametrize("given", [True, False], ids=["given", "found"])
def test_a_corrupt_peaks_file_is_one_line_naming_it(case, given, tmp_path, capsys):
    """Defect: a peaks.json that is not what `bench peak` writes, given or found beside the results, ended
    `bench report` with a traceback."""
    results = tmp_path / "results"
    append_record(results, record())
    peaks = (tmp_path if given else results) / "peaks.json"
    peaks.write_text(CORRUPT_PEAKS[case])
    before = files_under(results)
    assert main(["report", str(results)] + (["--peaks", str(peaks)] if given else [])) == 2
    assert str(peaks) in one_line_error(capsys)
    assert files_under(results) == before


def test_run_refuses_a_corrupt_peaks_file_before_running(write_suite, tmp_path, capsys):
    """Defect: `bench run` read peaks.json only for the report, after every point had run, and died there."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "peaks.json").write_text("{machine_id: x")
    path = write_suite(tiny_suite(models=[TINY_BERT]))
    assert main(["run", str(path), "--out", str(out)]) == 2
    assert str(out / "peaks.json") in one_line_error(capsys)
    assert files_under(out) == {out / "peaks.json"}


@pytest.fixture
def two_machine_cluster(monkeypatch):
    """A Ray executor that surveys two nodes of different machines (kinds kind_a and kind_b) without a cluster,
    and a suite runner that fails the test if anything runs."""
    from bench.executors.ray.executor import Node, Ray
    from bench import runner

    nodes = [Node("a" * 16, "host-a/aaaa", {"bench_slot": 1, "kind_a": 1}, {}, {"machine_id": "machine-a"}),
             Node("b" * 16, "host-b/bbbb", {"bench_slot": 1, "kind_b": 1}, {}, {"machine_id": "machine-b"})]
    monkeypatch.setattr(Ray, "nodes", lambda self: nodes)
    monkeypatch.setattr(Ray, "missing", classmethod(lambda cls: None))

    def ran(*args, **kwargs):
        raise AssertionError("the suite ran before --price-per-hour was judged")

    monkeypatch.setattr(runner, "run_plan", ran)


@pytest.mark.parametrize("targets, words", [(["kind_a", "kind_b"], "2 targets (kind_a, kind_b)"),
                                            (None, "2 machines (machine-a, machine-b)")])
def test_price_per_hour_on_a_run_over_several_machines_is_refused_before_it_runs(
        targets, words, two_machine_cluster, write_suite, tmp_path, capsys):
    """Defect: --price-per-hour names one machine's price, but a Ray run over several targets (or a cluster of
    several machines) was refused only when the report was built, after the whole suite had run."""
    path = write_suite(tiny_suite(models=[TINY_BERT], **({"targets": targets} if targets else {})))
    out = tmp_path / "out"
    assert main(["run", str(path), "--executor", "ray", "--price-per-hour", "2.5", "--out", str(out)]) == 2
    err = one_line_error(capsys)
    assert "--price-per-hour" in err and words in err and "--price MACHINE=USD_PER_HOUR" in err
    assert not out.exists()


def test_price_per_hour_on_a_run_on_one_machine_kind_is_accepted(two_machine_cluster, write_suite, tmp_path):
    path = write_suite(tiny_suite(models=[TINY_BERT], targets=["kind_a"]))
    with pytest.raises(AssertionError, match="the suite ran"):
        main(["run", str(path), "--executor", "ray", "--price-per-hour", "2.5", "--out", str(tmp_path / "out")])
