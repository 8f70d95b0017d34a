"""Serving cost from an hourly machine price and a measured rate."""

from __future__ import annotations


def cost_per_million(hourly_price_usd: float, items_per_second: float) -> float | None:
    """$ per million inferences (or tokens) at a sustained `items_per_second`: price / 3600 / rate x 1e6.

    None when the rate is zero or missing (nothing was served, so there is no cost per item).
    """
    if hourly_price_usd is None or hourly_price_usd < 0:
        raise ValueError(f"hourly price must be >= 0, not {hourly_price_usd!r}")
    if not items_per_second or items_per_second <= 0:
        return None
    return hourly_price_usd / 3600.0 / items_per_second * 1e6
