"""transformers' own continuous batching (`model.init_continuous_batching` -> ContinuousBatchingManager) as a
ServingSystem (bench/serving/requests.py): requests join and leave the running batch at every step, with paged
attention.

The manager runs its generation loop on its own thread; `submit` only queues the request there (`add_request`, which
never blocks with an unbounded input queue, transformers' default) and one dispatcher thread of ours reads the
manager's output queue and calls each request's on_token / on_done. Decoding is greedy (`do_sample=False`, no logits
processors); `ignore_eos` is transformers' `eos_token_id=-1`.

Settings are transformers' defaults except what must be sized for the run, and all of it is recorded (`describe`):
- `max_requests_per_batch` = the engine's max batch (what the static engine's batch holds);
- the KV cache (`num_blocks` of transformers' default `page_size`) holds every request in flight at its longest
  (`EngineSettings.max_sequence_tokens`, else the model's context length) above the FIFO scheduler's documented
  safety margin (15% of blocks kept free before new prefills are held back), so the cache never limits the batch
  below `max_batch`; sized explicitly, not inferred from free device memory (on a CPU that would be the host's RAM);
- `max_batch_tokens` (the tokens one step may process) = every request's longest sequence at once, at most
  transformers' default of 8192.
A model the manager cannot run (its attention, a quantized layer paged attention cannot call) is found by one probe
request when the system is built: `Unsupported` with transformers' reason.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import threading
from dataclasses import dataclass
from typing import Any

from ...errors import Unsupported
from ...models.families import context_length
from ...serving.requests import Completion, OnDone, OnToken, Request

DEFAULT_MAX_BATCH_TOKENS = 8192  # transformers' PagedAttentionMemoryHandler default
FIFO_SAFETY_MARGIN = 0.15  # transformers' FIFOScheduler default: the fraction of blocks kept free from new prefills
PROBE_TOKENS = 2
PROBE_TIMEOUT_S = 300.0
RESULT_WAIT_S = 0.5  # the dispatcher blocks this long per wait for an output, then checks whether it should end
RECORDED = ("page_size", "num_blocks", "max_batch_tokens", "max_requests_per_batch", "max_blocks_per_request",
            "allow_block_sharing", "use_async_batching", "use_cuda_graph", "scheduler_type", "safety_margin",
            "max_memory_percent", "default_compile_level", "cpu_offload_space", "max_queue_size")


@dataclass
class _Stream:
    on_token: OnToken
    on_done: OnDone
    seen: int = 0  # output tokens already reported


class TransformersContinuousBatching:
    """A ServingSystem over transformers' ContinuousBatchingManager (see the module docstring)."""

    engine = "continuous"
    max_in_flight = None  # the manager's input queue is unbounded

    def __init__(self, model: Any, settings: Any, threads: Any):
        from transformers import ContinuousBatchingConfig, GenerationConfig

        self._model, self._threads = model, threads
        longest = settings.max_sequence_tokens or context_length(model.config)
        if not longest:
            raise Unsupported("continuous batching needs the longest sequence to size its KV cache: the model's "
                              "config names no context length and the engine settings give no max_sequence_tokens")
        page_size = ContinuousBatchingConfig().page_size
        blocks = settings.max_batch * math.ceil(longest / page_size)
        self._cb_config = ContinuousBatchingConfig(
            page_size=page_size, num_blocks=math.ceil(blocks / (1 - FIFO_SAFETY_MARGIN)),
            max_batch_tokens=min(DEFAULT_MAX_BATCH_TOKENS, settings.max_batch * longest),
            max_requests_per_batch=settings.max_batch)
        named = (getattr(model.generation_config, "eos_token_id", None), model.config.eos_token_id)
        eos = next((e for e in named if e is not None), None)
        self._generation_config = GenerationConfig(do_sample=False, max_new_tokens=longest,
                                                   eos_token_id=-1 if eos is None else eos)
        self._settings = {"max_batch": settings.max_batch, "max_sequence_tokens": longest}
        self._manager: Any = None
        self._thread_hook: Any = None
        self._attention: str | None = None
        self._streams: dict[str, _Stream] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._stopped = False
        self._dispatcher: threading.Thread | None = None

    @classmethod
    def build(cls, model: Any, settings: Any, threads: Any) -> "TransformersContinuousBatching":
        """A system, not started, for a model transformers' continuous batching has just served one probe request
        on; Unsupported with the reason otherwise. `threads` (eager.IntraOpThreads) is applied in the manager's
        thread before its first forward."""
        import transformers

        if not hasattr(model, "init_continuous_batching"):
            raise Unsupported(f"{type(model).__name__} is not a transformers generation model: transformers' "
                              "continuous batching cannot serve it")
        system = cls(model, settings, threads)
        probe = Request(index=-1, prompt_ids=tuple(range(1, 9)), output_tokens=PROBE_TOKENS)
        done = threading.Event()
        got: list[Completion] = []
        try:
            system.start()
            system.submit(probe, lambda n: None, lambda c: (got.append(c), done.set()))
            answered = done.wait(PROBE_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - whatever transformers raised is the reason
            answered, got = True, [Completion(0, error=f"{type(exc).__name__}: {exc}")]
        finally:
            system.stop()
        why = (f"no answer in {PROBE_TIMEOUT_S:g} s" if not answered else got[0].error if got[0].error
               else None if got[0].output_tokens == PROBE_TOKENS
               else f"{got[0].output_tokens} tokens for the {PROBE_TOKENS} asked")
        if why:
            raise Unsupported(f"transformers {transformers.__version__} continuous batching cannot serve "
                              f"{type(model).__name__}: a probe request failed: {why}")
        return cls(model, settings, threads)

    def start(self) -> None:
        import torch

        self._thread_hook = self._model.register_forward_pre_hook(lambda module, args: self._threads.apply())
        self._manager = self._model.init_continuous_batching(generation_config=self._generation_config,
                                                             continuous_batching_config=self._cb_config)
        self._attention = self._model.config._attn_implementation
        with torch.inference_mode():  # the manager's loop runs in its caller's inference mode
            self._manager.start()
        self._dispatcher = threading.Thread(target=self._dispatch, name="continuous-dispatch", daemon=True)
        self._dispatcher.start()

    def submit(self, request: Request, on_token: OnToken, on_done: OnDone) -> None:
        if request.output_tokens < 1:
            on_done(Completion(0, error="continuous batching serves generation requests (output_tokens >= 1)"))
            return
        request_id = f"{request.index}.{next(self._ids)}"
        with self._lock:
            if self._stopped or self._manager is None:
                refused = "the system is not running"
            else:
                self._streams[request_id] = _Stream(on_token, on_done)
                refused = None
        if refused is None and self._manager.add_request(
                list(request.prompt_ids), request_id=request_id, max_new_tokens=request.output_tokens,
                streaming=True, eos_token_id=-1 if request.ignore_eos else None) is None:
            with self._lock:
                if self._streams.pop(request_id, None) is None:
                    return  # stop() has answered it already
            refused = "transformers' manager refused the request (stopping, or its loop died)"
        if refused:
            on_done(Completion(0, error=refused))

    def _dispatch(self) -> None:
        """Route each output to its request until the manager has stopped and its queue is empty."""
        manager = self._manager
        while True:
            output = manager.get_result(timeout=RESULT_WAIT_S)
            if output is None:
                if not manager.is_running():  # its loop is gone and every output it delivered has been read
                    return
                continue
            with self._lock:
                stream = self._streams.get(output.request_id)
                if stream is not None and output.is_finished():
                    del self._streams[output.request_id]
            if stream is None:
                continue
            produced = len(output.generated_tokens)
            if produced > stream.seen:
                stream.on_token(produced - stream.seen)
                stream.seen = produced
            if output.is_finished():
                stream.on_done(Completion(produced, error=output.error,
                                          info={"token_ids": tuple(output.generated_tokens)}))

    def stop(self) -> None:
        """Hard stop: the requests still running fail (transformers delivers them as failed), as do any it never
        answered; waits for both threads."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        if self._thread_hook is not None:
            self._thread_hook.remove()
        if self._manager is None:
            return
        self._manager.stop(block=True, hard_stop=True)
        if self._dispatcher is not None:  # None: the manager failed to start
            self._dispatcher.join()
        self._manager.destroy()
        with self._lock:
            left, self._streams = self._streams, {}
        for stream in left.values():
            stream.on_done(Completion(stream.seen, error="the system stopped before transformers answered"))

    def describe(self) -> dict:
        import transformers

        # transformers' resolved config once the manager exists (cache sizes as allocated), else what was asked
        config = self._manager.continuous_batching_config if self._manager is not None else self._cb_config
        return {"engine": self.engine, "implementation": "transformers.ContinuousBatchingManager",
                "transformers": transformers.__version__, "attn_implementation": self._attention,
                "greedy": True, "settings": self._settings,
                "config": {k: _plain(getattr(config, k, None)) for k in RECORDED}}


def _plain(value: Any) -> Any:
    """A config value as JSON has it."""
    if dataclasses.is_dataclass(value):
        return repr(value)
    return list(value) if isinstance(value, tuple) else value
