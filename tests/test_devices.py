"""The device registry: a device's behaviour lives in its module, and nothing else switches on its name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bench.devices import devices, get_device

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _declared(tree: ast.Module) -> set[int]:
    """ids of the constants inside dict or set displays assigned at module or class level: declarations of which
    devices a component runs on and how (ORT's execution providers, a kernel per device)."""
    bodies = [tree.body, *(node.body for node in ast.walk(tree) if isinstance(node, ast.ClassDef))]
    found = set()
    for body in bodies:
        for statement in body:
            if isinstance(statement, (ast.Assign, ast.AnnAssign)) and statement.value is not None:
                for display in ast.walk(statement.value):
                    if isinstance(display, (ast.Dict, ast.Set)):
                        found |= {id(node) for node in ast.walk(display) if isinstance(node, ast.Constant)}
    return found


def test_no_code_outside_the_device_modules_switches_on_the_cuda_name():
    """Every `== "cuda"` branch became a call on the point's device object: the name "cuda" may appear only in
    bench/devices/ or in a module- or class-level declaration mapping devices to how a component runs there."""
    offenders = []
    for path in sorted(BENCH.rglob("*.py")):
        if path.parent.name == "devices":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        declared = _declared(tree)
        offenders += [f"{path.relative_to(BENCH.parent)}:{node.lineno}" for node in ast.walk(tree)
                      if isinstance(node, ast.Constant) and node.value == "cuda" and id(node) not in declared]
    assert not offenders, f'"cuda" outside bench/devices/ and device declarations: {offenders}'


def test_the_grep_sees_a_cuda_branch():
    """The check above would catch the branches it replaced (it is not vacuous)."""
    tree = ast.parse('def sync(device):\n    if device == "cuda":\n        pass\nPROVIDERS = {"cuda": "CUDA"}\n')
    declared = _declared(tree)
    names = [node.lineno for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and node.value == "cuda" and id(node) not in declared]
    assert names == [2]


def test_cuda_allocator_peaks_land_in_the_memory_record(monkeypatch):
    """The CUDA device's allocator peaks are Memory fields: the tracker resets them at the window's start and
    records them at its end (torch.cuda faked: this machine has no GPU)."""
    torch = pytest.importorskip("torch")
    from bench.measurement.trackers import MemoryTracker

    calls = []
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: 3 * 2**20)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda: 4 * 2**20)
    with MemoryTracker("cuda") as memory:
        assert calls == ["reset"]
    mem = memory.result(torch.nn.Linear(4, 4))
    assert mem.device_peak_allocated_bytes == 3 * 2**20 and mem.device_peak_reserved_bytes == 4 * 2**20
    with MemoryTracker("cpu") as memory:
        pass
    assert memory.result(torch.nn.Linear(4, 4)).device_peak_allocated_bytes is None


def test_each_device_declares_an_energy_meter_the_energy_module_knows():
    """A device names its meter; a name the energy module does not know would silently read nothing."""
    from bench.hardware.energy import METERS

    assert get_device("cpu").energy_meter == "rapl" and get_device("cuda").energy_meter == "nvml"
    assert {devices.get(name).energy_meter for name in devices} - {None} <= set(METERS)


def test_precision_checks_are_the_devices():
    """The precision stage asks the device: bf16 needs a native CPU instruction; TF32 is a CUDA mode only."""
    from bench.errors import Unsupported

    cpu = get_device("cpu")
    cpu.check_precision("bf16", frozenset({"amx_bf16"}))
    with pytest.raises(Unsupported, match="avx512_bf16"):
        cpu.check_precision("bf16", frozenset())
    with pytest.raises(Unsupported, match="TF32"):
        cpu.check_precision("tf32", frozenset())
