"""The records as one table to reason over: a row per machine and point with its baseline and speedups
(frame.py), students matched to their teachers (matching.py), the efficiency figures per timed phase
(efficiency.py). The report, the claims and the exports all read it; it reads none of them."""
