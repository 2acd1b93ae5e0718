"""Suite-wide settings that keep the tests independent of the machine's speed and load.

- Hypothesis: no deadline per example and no ``too_slow`` health check by default (both judge
  wall-clock time, which a busy machine stretches). A test's own ``@settings`` still wins for
  what it sets.
- pytest-timeout: every test without its own ``timeout`` marker gets :data:`DEFAULT_TIMEOUT_S`,
  a guard against a hang (never a speed requirement: a test that needs anywhere near that long
  on a loaded 2-core machine is a bug in itself).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

#: Seconds after which pytest-timeout fails a test that has no ``timeout`` marker of its own.
DEFAULT_TIMEOUT_S = 1200

settings.register_profile("simscale", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("simscale")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every test without a ``timeout`` marker the default hang guard (unless a timeout is
    set on the command line or in the configuration, which then applies)."""
    if config.getoption("timeout", None) or config.getini("timeout"):
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT_S))
