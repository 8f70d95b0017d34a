"""What an OpenAI-compatible server says it is, for the record: its version, models and `server` header."""

from __future__ import annotations

from collections.abc import Mapping

import httpx


def server_identity(url: str, headers: Mapping[str, str] | None = None, timeout_s: float = 5.0) -> dict:
    """`{"version", "models", "owned_by", "header"}` from GET /version (vLLM, SGLang), GET /v1/models and the
    responses' `server` header; None (or []) for what the server does not say. Never raises: an identity is
    a note in the record, not a reason to stop."""
    identity: dict = {"version": None, "models": [], "owned_by": [], "header": None}
    # trust_env=False: no proxy and no netrc credentials picked up from the environment
    with httpx.Client(base_url=url, headers=dict(headers or {}), timeout=timeout_s, trust_env=False) as client:
        version = _get_json(client, "/version", identity)
        if isinstance(version, dict) and version.get("version") is not None:
            identity["version"] = str(version["version"])
        models = _get_json(client, "/v1/models", identity)
        entries = models.get("data") if isinstance(models, dict) else None
        if isinstance(entries, list):
            entries = [entry for entry in entries if isinstance(entry, dict)]
            identity["models"] = [str(entry.get("id")) for entry in entries]
            identity["owned_by"] = sorted({str(entry["owned_by"]) for entry in entries if entry.get("owned_by")})
    return identity


def _get_json(client: httpx.Client, path: str, identity: dict):
    try:
        response = client.get(path)
    except httpx.HTTPError:
        return None
    identity["header"] = identity["header"] or response.headers.get("server")
    if not response.is_success:
        return None
    try:
        return response.json()
    except ValueError:
        return None
