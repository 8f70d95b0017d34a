"""`bench serve`: one of the harness's variants as an OpenAI-compatible server (bench/serve/)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import ConfigError
from . import Command, commands
from ._common import suite_path

ENGINES = "single | static | continuous (bench/serving/engines)"


@commands.register("serve")
class Serve(Command):
    help = ("serve a suite point (or a model, variant and backend) as an OpenAI-compatible server: /v1/completions, "
            "/v1/chat/completions, /v1/embeddings, /v1/models, /health, /metrics")

    def add_arguments(self, parser) -> None:
        parser.add_argument("suite", nargs="?", help="a suite YAML or packaged suite name; its point --point is served")
        parser.add_argument("--point", help="the point's label or id, as `bench plan` prints it (default: the "
                                            "suite's only model, variant, backend, device and batch size)")
        parser.add_argument("--model", help="instead of a suite: SOURCE:ID (random:gpt2, packaged:smollm2-135m, "
                                            "local:DIR, ...)")
        parser.add_argument("--model-dir", help="instead of a suite: a saved model folder (the same as --model "
                                                "local:DIR; what a launched endpoint's {model_dir} holds)")
        parser.add_argument("--variant", default="fp32", help="with --model: a variant preset (default: fp32)")
        parser.add_argument("--backend", default="pytorch", help="with --model: the backend (default: pytorch)")
        parser.add_argument("--device", default="cpu", help="with --model: the device (default: cpu)")
        parser.add_argument("--max-batch", type=int, default=8, help="with --model: most requests one engine step "
                                                                     "serves (a suite point: its batch size)")
        parser.add_argument("--seq-len", type=int, default=128, help="with --model: the length the model is prepared "
                                                                     "at (exports and calibration)")
        parser.add_argument("--engine", default="static", help=f"the batching: {ENGINES} (default: static)")
        parser.add_argument("--max-wait-ms", type=float, default=5.0, help="static: longest wait for a fuller batch")
        parser.add_argument("--max-model-len", type=int, help="the longest prompt + output served (longer ones are "
                                                              "refused); sizes the continuous engine's KV cache "
                                                              "(default: the model's context length)")
        parser.add_argument("--served-model-name", help="the name requests give as `model` (default: the model's)")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--threads", type=int, help="intra-op threads (default: the point's, else every CPU)")
        parser.add_argument("--cache-dir", help="where builds are cached (default: .cache/bench)")

    def __call__(self, args) -> int:
        from ..hardware.machine import default_threads
        from ..isolation.child import set_thread_env

        set_thread_env(args.threads or default_threads())   # before numpy loads with the plan
        from pydantic import ValidationError

        from ..config import Suite, load_suite
        from ..errors import Unsupported
        from ..plan import build_plan

        if sum(x is not None for x in (args.suite, args.model, args.model_dir)) != 1:
            raise ConfigError("bench serve", "arguments", "give one of: a suite (with --point), --model or --model-dir",
                              "e.g. bench serve --model-dir ./tiny --engine static --port 8000")
        try:
            import fastapi  # noqa: F401
            import uvicorn  # noqa: F401
        except ImportError:
            raise ConfigError("bench serve", "fastapi", "bench serve needs FastAPI and uvicorn",
                              'pip install -e ".[serve]"') from None
        from ..serve.variant import build_served, flag_suite, pick_point

        if args.suite is not None:
            where = str(suite_path(args.suite))
            suite = load_suite(where)
        else:
            model = args.model or f"local:{args.model_dir}"
            where = "--model"
            try:
                suite = Suite.model_validate(flag_suite(model, args.variant, args.backend, args.device,
                                                        args.max_batch, args.seq_len))
            except ValidationError as exc:
                raise ConfigError(where, model, exc.errors()[0]["msg"], "see bench serve --help") from None
        plan = build_plan(suite, where)
        point = pick_point(plan.points, plan.skipped, args.point, where)
        cache = Path(args.cache_dir) if args.cache_dir else Path(".cache") / "bench"
        try:
            served = build_served(point, args.engine, args.max_wait_ms / 1e3, cache, args.served_model_name,
                                  args.threads, args.max_model_len)
        except Unsupported as exc:
            print(f"unsupported: {exc}", file=sys.stderr)
            return 1
        return serve_forever(served, args.host, args.port)


def serve_forever(served, host: str, port: int) -> int:
    import uvicorn

    from ..serve.app import create_app

    print(f"bench serve: {served.name} ({served.describe.get('point')}) with the {served.describe.get('engine')} "
          f"engine on http://{host}:{port}", flush=True)
    uvicorn.run(create_app(served), host=host, port=port, log_level="warning", access_log=False)
    return 0
