"""Pruning transforms: structured (heads and FFN neurons), depth (whole blocks) and unstructured (zeroed weights).
layout.py finds a model's blocks and removes units from them; ranking.py says which units matter least."""
