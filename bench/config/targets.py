"""The node kinds a suite's `targets` name on a Ray cluster, and the slot that keeps one point per node."""

from __future__ import annotations

SLOT_RESOURCE = "bench_slot"  # one per cluster node: a point holds its node's slot, so points never share a node


def check_target(target: str) -> str:
    """A node kind: a Ray resource name (`h100`) or a node label `key=value` (`ray.io/accelerator-type=H100`)."""
    name, eq, value = target.partition("=")
    if not name or (eq and not value) or "=" in value or any(c.isspace() for c in target):
        raise ValueError(f"target {target!r} is neither a resource name nor one key=value label")
    if target == SLOT_RESOURCE:
        raise ValueError(f"{SLOT_RESOURCE!r} is on every node; leave `targets` out to run on any node")
    return target
