"""The `ray` executor: every point on a node of its target kind, one point per node at a time, records home.

executor.py is the driver's side (survey, placement, submission, failures); node.py is what runs in a Ray task
on a node (its description, the point's child, the raylet watch).
"""
