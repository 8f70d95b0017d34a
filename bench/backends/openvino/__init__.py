"""The OpenVINO engine, in one package: the torch model converted to OpenVINO IR once per cache key
(`convert`), compiled sessions on the OpenVINO device of the point's device (`backend`), and NNCF post-training
int8 quantization of the IR (`transforms`, found by the transform registry).

Nothing here imports openvino or nncf at import time: the fork server loads every registry, and a library that
starts threads at import must not be in a process that forks.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ...errors import Unsupported

INSTALL = 'pip install -e ".[openvino]"'


def require(name: str) -> ModuleType:
    """Import `name` (openvino, nncf) when a point needs it; Unsupported with the install command where it is
    missing, so a suite run without the extra records why its OpenVINO points did not run."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise Unsupported(f"{name} is not installed ({exc}): {INSTALL}") from None
