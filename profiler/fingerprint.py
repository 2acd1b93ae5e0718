"""Where a profile was measured: CPU (model name; family, model number, stepping and flags in
``cpu``), cores, memory, GPU, platform, Python, library versions. (How fast the machine was,
``speed``, is measured by :mod:`simscale.profiler.speed`.)

The fingerprint is cheap to take (it reads ``/proc`` and package metadata and never imports
torch), because :func:`simscale.profiler.schema.load_profile` compares the profile's machine with
this one every time a profile is loaded.
"""

from __future__ import annotations

import datetime as _dt
import functools
import glob
import hashlib
import os
import platform
import re
import sys
from importlib import metadata

from simscale.profiler.schema import CpuInfo, MachineFingerprint

#: Libraries whose versions change measured latencies; ``name in the fingerprint -> distribution``.
LIBRARIES: dict[str, str] = {
    "torch": "torch",
    "torchvision": "torchvision",
    "xgboost": "xgboost",
    "sklearn": "scikit-learn",
    "numpy": "numpy",
    "scipy": "scipy",
}


def machine_fingerprint(include_libraries: bool = True) -> MachineFingerprint:
    """Describe this machine now.

    ``cpu_model`` comes from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere), ``cores`` is
    the number of logical CPUs, ``memory_mb`` the physical memory in MiB, ``gpu`` the name of the
    first NVIDIA GPU (``None`` when there is none), ``date`` the current UTC time (ISO 8601).
    With ``include_libraries`` the installed versions of :data:`LIBRARIES` are added (libraries
    that are not installed are left out).
    """
    static = _static_fingerprint()
    return MachineFingerprint(
        cpu_model=static["cpu_model"],
        cores=static["cores"],
        memory_mb=static["memory_mb"],
        gpu=static["gpu"],
        platform=static["platform"],
        python=static["python"],
        libraries=library_versions() if include_libraries else {},
        date=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        cpu=static["cpu"],
    )


def library_versions() -> dict[str, str]:
    """Installed versions of :data:`LIBRARIES` (from package metadata; nothing is imported)."""
    versions = {}
    for name, dist in LIBRARIES.items():
        try:
            versions[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


@functools.lru_cache(maxsize=1)
def _static_fingerprint() -> dict:
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count() or 1,
        "memory_mb": round(memory_bytes() / 2**20, 1),
        "gpu": gpu_name(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu": cpu_info(),
    }


#: the vector-instruction flags :func:`cpu_info` lists by name (x86 and Arm); BLAS kernels and
#: torch pick their code paths by these, so two CPUs that differ here differ in speed
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
              "amx_tile", "asimd", "sve", "sve2")


def cpu_info(cpuinfo_path: str = "/proc/cpuinfo") -> CpuInfo:
    """The CPU's family, model number, stepping and flags from the first processor of
    ``cpuinfo_path`` (Linux: ``flags``; Arm: ``Features`` and ``CPU part`` / ``CPU variant``
    as model number and stepping). Without that file, family, model and stepping are parsed
    from ``platform.processor()`` (``Intel64 Family 6 Model 158 Stepping 10`` on Windows) and
    the flags stay unknown."""
    fields: dict[str, str] = {}
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    if fields:
                        break  # the first processor is enough
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        proc = platform.processor()
        found = {k.lower(): v for k, v in re.findall(r"(Family|Model|Stepping)\s+(\w+)", proc)}
        return CpuInfo(family=found.get("family") or platform.machine() or None,
                       model_number=found.get("model"), stepping=found.get("stepping"))
    flags = sorted(set((fields.get("flags") or fields.get("features") or "").split()))
    return CpuInfo(
        family=fields.get("cpu family") or fields.get("cpu architecture"),
        model_number=fields.get("model") or fields.get("cpu part"),
        stepping=fields.get("stepping") or fields.get("cpu variant"),
        flags_sha256=hashlib.sha256(" ".join(flags).encode()).hexdigest()[:16] if flags
        else None,
        flags_count=len(flags) if flags else None,
        simd=[f for f in SIMD_FLAGS if f in flags],
    )


def cpu_model() -> str:
    """The CPU's model name (``model name`` in ``/proc/cpuinfo`` on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def memory_bytes() -> int:
    """Physical memory of the machine in bytes."""
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # psutil missing or unsupported platform
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def gpu_name() -> str | None:
    """Name of the first NVIDIA GPU, or ``None``.

    Read from the driver's ``/proc`` files so that torch need not be imported; when torch is
    already imported in this process its CUDA runtime is asked instead.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                return str(torch.cuda.get_device_name(0))
            return None
        except Exception:
            pass
    for info in sorted(glob.glob("/proc/driver/nvidia/gpus/*/information")):
        try:
            with open(info, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    key, _, value = line.partition(":")
                    if key.strip() == "Model":
                        return value.strip()
        except OSError:
            continue
    return None
