"""Where a profile was measured: CPU, cores, memory, GPU, platform, Python, library versions.

The fingerprint is cheap to take (it reads ``/proc`` and package metadata and never imports
torch), because :func:`simscale.profiler.schema.load_profile` compares the profile's machine with
this one every time a profile is loaded.
"""

from __future__ import annotations

import datetime as _dt
import functools
import glob
import os
import platform
import sys
from importlib import metadata

from simscale.profiler.schema import MachineFingerprint

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
    }


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
