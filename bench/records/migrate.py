"""Read records of earlier schema versions as the current one.

Version 1 (bench 0.1, plain dicts) differs from 2 in:
  * the harness version: v1 kept the git commit under `machine.project`; v2 has `harness`;
  * scenarios: v1's `latency` and `throughput` timed the same single-stream loop; v2 calls it
    `single-stream` (the point id is recomputed from the renamed config);
  * quality: v2 adds a `verdict`, and random-weight quality is never "within bound";
  * work: v2 records the compute precision its transforms declare; v1 records get the rule v1 used;
  * the private `_wall_s`/`_queries` keys some v1 scenarios leaked are dropped.
"""

from __future__ import annotations

import copy

V1_SCENARIOS = {"latency": "single-stream", "throughput": "single-stream"}
V1_INT8_TRANSFORMS = ("int8-dynamic", "int8-static")


def migrate(data: dict) -> dict:
    version = data.get("schema_version")
    if version == 1:
        return _v1_to_v2(data)
    raise ValueError(f"unknown schema_version {version!r}")


def _v1_to_v2(old: dict) -> dict:
    from ..config import RunPoint

    rec = copy.deepcopy(old)
    rec["schema_version"] = 2
    machine = rec.get("machine") or {}
    project = machine.pop("project", None) or {}
    rec["harness"] = {"version": "0.1.0", "commit": project.get("commit"), "dirty": project.get("dirty"),
                      "source_digest": "unknown (schema 1)"}
    config = rec["config"]
    scenario = config["scenario"]
    scenario["name"] = V1_SCENARIOS.get(scenario["name"], scenario["name"])
    rec["point_id"] = RunPoint.model_validate(config).point_id
    metrics = rec.get("metrics") or {}
    for private in [k for k in metrics if k.startswith("_")]:
        metrics.pop(private)
    quality = metrics.get("quality")
    if quality:
        if not quality.get("meaningful", True):
            quality.pop("within_bound", None)  # v1 said "within bound" for random weights (a defect)
        quality["verdict"] = _verdict(quality)
    work = metrics.get("work")
    if work:
        names = " ".join(t["name"] for t in config["variant"]["transforms"])
        work["compute_precision"] = "int8" if any(n in names for n in V1_INT8_TRANSFORMS) else work["precision"]
    if metrics.get("loop"):
        metrics["loop"].setdefault("driver", "bench")
    validity = (metrics.get("server") or {}).get("validity")
    if validity:
        validity.setdefault("tolerance", 0)
    rec["provenance"] = rec.get("provenance") or {"weights": config.get("weights")}
    return rec


def _verdict(quality: dict) -> str:
    if quality.get("error"):
        return "error"
    if not quality.get("meaningful", True):
        return "not meaningful (random weights)"
    return "within bound" if quality.get("within_bound") else "breaks bound"

