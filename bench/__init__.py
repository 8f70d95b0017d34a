"""A benchmark harness for model-serving hardware.

Data flows one way: config -> run plan -> isolated run -> result record -> table/report.
"""

__version__ = "0.1.0"
