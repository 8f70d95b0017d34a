"""Serving benchmarks: requests, load patterns and metrics that know nothing of models (see SERVING.md)."""
