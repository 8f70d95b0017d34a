"""Backends turn a prepared model into a Session: the system under test. Each engine is one package here
(`pytorch/`, `onnxruntime/`) holding everything it needs, its graph transforms included.

A backend only exports and opens; the transform pipeline (`variants/pipeline.py`) decides what is done
to the model. A Session knows nothing of timing: `run()` executes one query on inputs prepared beforehand
and returns only when the work is complete (on a device with a queue, after synchronising), so any clock
around it is honest. Every session describes itself in one typed form (`SessionDescription`), which the
record keeps as `provenance.backend`.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import numpy as np

from ..records.schema import SessionDescription
from ..registry import Registry


class Session:
    description: SessionDescription  # set by the backend that opened it
    # the only engines (bench/serving/engines) that serve requests on this session; None: any of them
    engines: ClassVar[tuple[str, ...] | None] = None

    def describe(self) -> SessionDescription:
        """What ran the model, read when the record is written (a session may add what it learnt since opening)."""
        return self.description

    def run(self) -> None:
        """One query on the prepared inputs, complete on return."""
        raise NotImplementedError

    def close(self) -> None:
        """Called once when the point is done with the session, also after a failure: what the session started
        (a server) stops here. Raising fails the point (a server that died while in use)."""

    def traffic_done(self) -> None:
        """Called once, right after the scenario's timed traffic and before the quality check: a session may
        note its state there (a compiled model, whether it recompiled inside the timed window)."""

    def infer(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The primary output (logits or last hidden state) as float32 numpy, for quality checks."""
        raise NotImplementedError

    def run_rows(self, rows: int) -> None:
        """One query on the first `rows` rows of the prepared batch (dynamic batching), complete on return."""
        from ..errors import Unsupported

        raise Unsupported(f"{type(self).__name__} cannot run partial batches")

    def generate(self, new_tokens: int, on_token: Callable[[int], None], rows: int | None = None) -> None:
        """Greedy generation of exactly `new_tokens` on the prepared prompt (first `rows` rows), reporting each token."""
        from ..errors import Unsupported

        raise Unsupported(f"{type(self).__name__} does not implement generation")


class Backend:
    """Base for registered backends.

    `stages`: the transform stages it accepts; `precisions`: the float precisions it runs; `devices`: the
    registered devices it runs on (all three judged at plan time); `libraries`: the distributions whose versions
    matter to its figures (recorded in the machine description); `Options`: its `backend_options`;
    `reference`: it is the reference implementation, whose fp32 points without transforms are every speedup's
    baseline (PyTorch eager: the quality check's reference outputs are its outputs too); `holds_model`: the model
    runs in this process, so the transform pipeline prepares it and its quality, memory and work are measured here
    (False: it runs elsewhere, e.g. a server, and `open` gets what reaches it); `engines`: the only engines that
    serve requests on its sessions (None: any), and where set, only scenarios that send requests run on it.
    """

    stages: ClassVar[frozenset[str]] = frozenset({"torch"})
    precisions: ClassVar[frozenset[str]] = frozenset({"fp32", "bf16", "fp16"})
    devices: ClassVar[frozenset[str]] = frozenset({"cpu"})
    libraries: ClassVar[tuple[str, ...]] = ()
    Options: ClassVar[Any] = None
    reference: ClassVar[bool] = False
    # how the engine runs a precision itself (OpenVINO: its inference precision hint); None: the pipeline's
    # precision stage casts or autocasts the torch model
    precision_api: ClassVar[str | None] = None
    holds_model: ClassVar[bool] = True
    engines: ClassVar[tuple[str, ...] | None] = None

    @classmethod
    def refuses(cls, variant: Any) -> str | None:
        """Why this backend cannot run `variant` at all, beyond its stages and precisions (None: it can)."""
        return None

    def export(self, model: Any, loaded: Any, inputs: dict[str, np.ndarray], ctx: Any) -> Any:
        """The artifact graph-stage transforms work on (default: the torch model itself)."""
        return model

    def open(self, artifact: Any, loaded: Any, inputs: dict[str, np.ndarray], ctx: Any) -> Session:
        raise NotImplementedError

    def describe(self, ctx: Any, **fields: Any) -> SessionDescription:
        """The session description with what every backend shares filled from the point and this declaration."""
        return SessionDescription(device=ctx.device, precision=ctx.precision, reference=self.reference, **fields)


backends: Registry[type[Backend]] = Registry("backend", "bench.backends", "bench.endpoints")


def declared_libraries() -> tuple[str, ...]:
    """Every distribution a registered backend declares, for the machine description (hardware/machine.py)."""
    return tuple(sorted({library for name in backends for library in backends.get(name).libraries}))
