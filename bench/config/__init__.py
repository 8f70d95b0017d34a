"""Suite configuration: the schema a suite file is validated against, a run point's identity, the loading of a
suite file with its one-line errors, and the cluster target syntax."""

from .loading import load_suite, parse_yaml
from .point import RunPoint
from .schema import (ACCESS_CONTEXT, Defaults, Device, Exclusion, ModelSpec, NoOptions, Precision, QualitySettings,
                     ScenarioSpec, Strict, Suite, Task, TransformSpec, VariantSpec)
from .targets import SLOT_RESOURCE, check_target

__all__ = ["ACCESS_CONTEXT", "SLOT_RESOURCE", "Defaults", "Device", "Exclusion", "ModelSpec", "NoOptions", "Precision",
           "QualitySettings", "RunPoint", "ScenarioSpec", "Strict", "Suite", "Task", "TransformSpec", "VariantSpec",
           "check_target", "load_suite", "parse_yaml"]
