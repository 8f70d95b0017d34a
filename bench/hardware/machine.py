"""The machine description stored with every record: enough to tell two machines' results apart.

Gathered in the parent without importing torch: /proc, psutil, importlib.metadata and nvidia-smi.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import psutil

INTERESTING_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                     "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16", "sve", "neon")
CORE_LIBRARIES = ("numpy", "transformers", "accelerate", "gguf", "bench")  # what loads models for any backend


def _cpuinfo() -> dict[str, str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    return info


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    info = _cpuinfo()
    return frozenset((info.get("flags") or info.get("Features") or "").split())


def _gpus() -> list[dict]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,compute_cap",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in out.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            gpus.append({"name": parts[0], "memory_mib": int(float(parts[1])) if parts[1] else None,
                         "driver": parts[2], "compute_capability": parts[3] if len(parts) > 3 else None})
    return gpus


def _git_commit() -> dict:
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None}
    if commit.returncode != 0:
        return {"commit": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def _versions(libraries: tuple[str, ...]) -> dict[str, str | None]:
    out = {}
    for lib in dict.fromkeys((*CORE_LIBRARIES, *libraries)):
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            continue
    return out


@lru_cache(maxsize=4)
def describe_machine(libraries: tuple[str, ...] = ()) -> dict:
    """This machine; `libraries` are the distributions the registered backends declare
    (bench.backends.declared_libraries), whose versions it records beside the core ones. The caller passes them:
    the machine description sits below the backends."""
    info = _cpuinfo()
    flags = cpu_flags()
    model = info.get("model name") or info.get("Hardware") or platform.processor() or "unknown CPU"
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count()
    gpus = _gpus()
    desc = {
        "cpu": {
            "model": model,
            "flags": sorted(f for f in INTERESTING_FLAGS if f in flags),
            "logical_cores": psutil.cpu_count(logical=True),
            "physical_cores": psutil.cpu_count(logical=False),
            "available_cores": available,
        },
        "memory_bytes": psutil.virtual_memory().total,
        "gpus": gpus,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": _versions(libraries),
        "project": _git_commit(),
    }
    desc["machine_id"] = machine_id(desc)
    return desc


def machine_id(desc: dict) -> str:
    """A stable, readable directory name: CPU model, cores and GPU, plus a short hash of the rest."""
    cpu = desc["cpu"]
    gpu = desc["gpus"][0]["name"] if desc["gpus"] else "nogpu"
    words = f"{cpu['model']} {cpu['available_cores']}c {gpu}"
    slug = re.sub(r"[^a-z0-9]+", "-", words.lower()).strip("-")[:60]
    digest = hashlib.sha256(f"{words}|{desc['memory_bytes'] // 2**30}".encode()).hexdigest()[:6]
    return f"{slug}-{digest}"


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
