"""Inputs are generated with temporaries that do not grow with the run (issue #13), and the
chunking changes no number: service draws in chunks equal one draw of all, and the NHPP
inversion over blocks of pieces equals it over all pieces at once."""

from __future__ import annotations

import numpy as np
import pytest

from simscale.simulator import runner
from simscale.simulator.workloads import pwl


def test_chunked_service_draws_are_the_same_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    def transform(u: np.ndarray) -> np.ndarray:
        return -np.log1p(-u) * 0.05

    want = transform(np.random.default_rng(7).random(10_001))
    monkeypatch.setattr(runner, "DRAW_CHUNK", 97)
    got = runner._chunked_draws(np.random.default_rng(7), 10_001, transform)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", range(6))
def test_blockwise_inversion_is_the_same_numbers(seed: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3000, 8000))  # many pieces: the vectorised path
    t0 = np.arange(k, dtype=float)
    r0 = rng.uniform(0.0, 40.0, k)
    r1 = r0 if seed % 2 else rng.uniform(0.0, 40.0, k)
    r0[rng.random(k) < 0.1] = 0.0  # empty seconds too
    whole = pwl.invert_counted(t0, t0 + 1.0, r0, r1, float(k), np.random.default_rng(seed))
    monkeypatch.setattr(pwl, "_BLOCK", 257)
    blocks = pwl.invert_counted(t0, t0 + 1.0, r0, r1, float(k), np.random.default_rng(seed))
    np.testing.assert_array_equal(blocks[0], whole[0])
    np.testing.assert_array_equal(blocks[1], whole[1])
    assert len(whole[0]) > 1000
