"""What a load generator hands a system under test, and what comes back: the interface every serving piece shares.

As MLPerf LoadGen: traffic and timing know nothing of models, the system under test knows nothing of timing, and
completions come back through callbacks that take their own timestamps (time.perf_counter_ns(), at call time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol


@dataclass(frozen=True)
class Request:
    index: int                      # position in the workload: the same request across variants and machines
    prompt_ids: tuple[int, ...]     # the prompt's token ids (model tokenizer)
    output_tokens: int              # tokens asked for (0: an embedding request)
    ignore_eos: bool = True
    prompt_text: str | None = None  # the decoded prompt, for HTTP endpoints that take text


OnToken = Callable[[int], None]       # SUT calls it when new output tokens exist; argument: how many (>= 1)
OnDone = Callable[["Completion"], None]


@dataclass(frozen=True)
class Completion:
    output_tokens: int              # tokens the SUT produced for this request
    error: str | None = None        # a failed request: counted, never dropped
    info: dict = field(default_factory=dict)   # e.g. {"usage_tokens": 31, "padding_tokens": 12}


class ServingSystem(Protocol):
    """The system under test. `submit` is only called from the load generator's thread and never blocks on the work;
    callbacks may come from any of the system's threads and must be cheap; on_done is called exactly once per
    request, also on error."""

    engine: str                     # "single" | "static" | "continuous" | "endpoint" ...
    max_in_flight: int | None       # most requests it holds at once (None: unbounded)

    def start(self) -> None: ...

    def submit(self, request: Request, on_token: OnToken, on_done: OnDone) -> None: ...  # returns at once

    def stop(self) -> None: ...     # waits for its threads; idempotent

    def describe(self) -> dict: ... # implementation, version, settings: goes in the record
