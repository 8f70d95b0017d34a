"""Backends turn a prepared model into a Session: the system under test. Each engine is one package here
(`pytorch/`, `onnxruntime/`) holding everything it needs, its graph transforms included.

A backend only exports and opens; the transform pipeline (`variants/pipeline.py`) decides what is done
to the model. A Session knows nothing of timing: `run()` executes one query on inputs prepared beforehand
and returns only when the work is complete (on a device with a queue, after synchronising), so any clock
around it is honest. Every session describes itself in one typed form (`SessionDescription`), which the
record keeps as `provenance.backend`.

Serving (bench/serving/engines) calls three more primitives on requests' own prompts: `generate_batch` and
`embed_batch` (the single and static engines) and `continuous_batching` (the continuous engine). A backend declares
the engines it can serve (`engines`), judged at plan time; a session that finds at run time that it cannot (a graph
without what it needs, a model the library refuses) raises `Unsupported` with the reason.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

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

    def generate_batch(self, prompts: list[Sequence[int]], output_tokens: list[int],
                       on_token: Callable[[int, int], None],
                       stop_at_eos: Sequence[bool] | None = None) -> list[list[int]]:
        """Greedy decoding of prompts of different lengths in one batch (left-padded, masked, each row's own
        positions) with a KV cache: row i reports on_token(i, 1) per token until it has `output_tokens[i]` (or, where
        `stop_at_eos[i]`, its EOS); returns every row's token ids once the longest row is done."""
        from ..errors import Unsupported

        raise Unsupported(f"{type(self).__name__} does not generate batches of requests")

    def embed_batch(self, prompts: list[Sequence[int]]) -> dict:
        """One forward over the prompts right-padded to the longest, complete on return:
        {"tokens": real tokens, "padding_tokens": padded slots} (the batch's padding waste)."""
        from ..errors import Unsupported

        raise Unsupported(f"{type(self).__name__} does not run batches of requests")

    def continuous_batching(self, settings: Any) -> Any:
        """A ServingSystem (bench/serving/requests.py) that schedules requests at every decode step (settings:
        bench/serving/engines EngineSettings), not started yet."""
        from ..errors import Unsupported

        raise Unsupported(f"{type(self).__name__} has no continuous batching")


class Backend:
    """Base for registered backends.

    `stages`: the transform stages it accepts; `precisions`: the float precisions it runs; `devices`: the
    registered devices it runs on (all three judged at plan time); `libraries`: the distributions whose versions
    matter to its figures (recorded in the machine description); `Options`: its `backend_options`;
    `reference`: it is the reference implementation, whose fp32 points without transforms are every speedup's
    baseline (PyTorch eager: the quality check's reference outputs are its outputs too); `holds_model`: the model
    runs in this process, so the transform pipeline prepares it and its quality, memory and work are measured here
    (False: it runs elsewhere, e.g. a server, and `open` gets what reaches it; only scenarios that send requests
    run on it); `engines`: the serving engines (bench/serving/engines) its sessions serve, judged at plan time
    with `engine_refusal`; a serving scenario that names none gets `default_engine`.
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
    engines: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def refuses(cls, variant: Any) -> str | None:
        """Why this backend cannot run `variant` at all, beyond its stages and precisions (None: it can)."""
        return None

    @classmethod
    def default_engine(cls) -> str | None:
        """The engine a serving scenario gets where the suite names none: static batching, or the one engine a
        backend serves through (an endpoint: the server's own)."""
        if "static" in cls.engines:
            return "static"
        return next(iter(cls.engines)) if len(cls.engines) == 1 else None

    @classmethod
    def engine_refusal(cls, engine: str, task: str | None) -> str | None:
        """Why this backend's sessions cannot serve requests with `engine` for a model of `task`, or None; judged
        from declarations (the run may still find it cannot: `Unsupported`)."""
        if engine not in cls.engines:
            serves = f"it serves {', '.join(sorted(cls.engines))}" if cls.engines else "it serves no engine"
            return f"{cls.__name__} cannot serve requests with the {engine} engine ({serves})"
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
