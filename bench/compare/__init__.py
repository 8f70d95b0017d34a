"""Is a difference between two measurements real? The statistics (stats.py) and the pairing of records
point by point (pairs.py), shared by `bench compare` and every ratio the report shows."""
