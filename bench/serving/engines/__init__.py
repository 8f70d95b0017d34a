"""Engines: the batching inside the system under test. An engine turns a model session (bench/backends) into a
`ServingSystem` that takes requests (requests.py); the load generator (loads.py) never knows which one it drives.

- `single`: one request at a time, in arrival order.
- `static`: waits up to `max_wait_s` for up to `max_batch` requests; the batch runs and finishes together.
- `continuous`: iteration-level scheduling: requests join and leave the running batch at every step (the
  session's own implementation, e.g. transformers' continuous batching for PyTorch decoders).

An engine that cannot serve a session raises `Unsupported` with the reason: the point's record says so. Where only a
batch can tell (the single and static engines call the session's primitives per batch), the batch's requests fail
with the reason (`Completion.error` "Unsupported: ...") and the system's `unsupported` holds the first one, so the
scenario can record the point as unsupported rather than as failed requests.

Every system answers each request exactly once (on_done), also when the session raises: that batch's requests fail
with the error and the system goes on serving. A generated request's `Completion.info` holds its `token_ids` (what
an HTTP front end returns as text; not for the record); the batching engines add `batch_size`, `padding_tokens`
(the request's padded slots in its batch) and `batch_started_ns` (perf_counter_ns when its batch began).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from ...records.schema import Frozen
from ...registry import Registry
from ..requests import ServingSystem


class EngineSettings(Frozen):
    max_batch: int = Field(1, ge=1, description="most requests one step of the engine serves (the suite's batch size)")
    max_wait_s: float = Field(0.005, ge=0, description="static: longest wait for a fuller batch")
    max_sequence_tokens: int | None = Field(
        None, ge=1, description="continuous: longest prompt + output of any request, which sizes its KV cache "
                                "(None: the model's context length)")


class Engine:
    """Base for registered engines; `build` returns a system that is not started yet."""

    name: ClassVar[str]

    def build(self, session: Any, settings: EngineSettings) -> ServingSystem:
        raise NotImplementedError


engines: Registry[type[Engine]] = Registry("engine", "bench.serving.engines", "bench.endpoints")
