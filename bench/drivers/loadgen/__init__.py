"""MLPerf LoadGen as the traffic driver: driver.py maps the three patterns onto LoadGen's scenarios and adapts the
system under test to LoadGen's; logs.py reads the timings back from LoadGen's logs."""
