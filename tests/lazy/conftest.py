"""Shared data for the chunked/lazy tests: one small synthetic map, fitted eagerly once."""

from __future__ import annotations

import numpy as np
import pytest

from tests.nmf.conftest import synthetic

SHAPE = (30, 34)
#: uneven pixel chunks (a chunk border inside a grid row, another on a row boundary)
CHUNKS = (100, 250, 333, 337)
CASES = {
    "H-simplex": dict(lambda_L=1.0, simplex="H", mu=0.01, epsilon_reg=0.1),
    "W-simplex": dict(lambda_L=0.5, simplex="W", mu=0.005, epsilon_reg=0.1),
}


def settings(case: str, **extra) -> dict:
    out = dict(shape_2d=SHAPE, max_iter=50, tol=0, progress=False, dtype="float64")
    out.update(CASES[case])
    out.update(extra)
    return out


@pytest.fixture(scope="session")
def problem():
    """(G, counts pixels × channels) of a 3-phase map at ≈ 200 counts per pixel."""
    rng = np.random.default_rng(7)
    G, W, H = synthetic(rng, n=120, shape=SHAPE, k=3, pure=True)
    H = 0.7 * H + 0.3 * rng.dirichlet(np.full(3, 1.0), size=H.shape[1]).T
    Y = rng.poisson(G @ W @ H * 200).T.astype(np.uint16)
    return G, Y


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())
