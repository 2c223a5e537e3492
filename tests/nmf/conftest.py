"""Shared small problems for the solver tests (k ∈ {2, 3} only, to bound numba compilation)."""

from __future__ import annotations

import numpy as np
import pytest


def peaks_G(n: int, n_peaks: int, *, continuum: bool = True) -> np.ndarray:
    """Gaussian peaks (+ two smooth continuum columns), columns normalised to unit sum."""
    ch = np.arange(n, dtype=float)
    centres = np.linspace(0.08 * n, 0.92 * n, n_peaks)
    cols = [np.exp(-0.5 * ((ch - c) / (0.012 * n + 1.0)) ** 2) for c in centres]
    if continuum:
        cols += [np.exp(-ch / (0.3 * n)), ch / n * np.exp(-ch / (0.5 * n))]
    G = np.stack(cols, axis=1)
    return G / G.sum(axis=0)


def synthetic(
    rng: np.random.Generator,
    *,
    n: int = 120,
    shape: tuple[int, int] = (12, 14),
    k: int = 3,
    n_peaks: int = 10,
    pure: bool = True,
):
    """Known G, W (m × k) and H (k × p, columns on the simplex, with pure pixels)."""
    G = peaks_G(n, n_peaks)
    m = G.shape[1]
    W = np.zeros((m, k))
    for j in range(k):
        W[:n_peaks, j] = rng.gamma(0.5, size=n_peaks) + 0.02
        W[:n_peaks, j] /= W[:n_peaks, j].sum()
        W[n_peaks:, j] = (0.1, 0.05)
    p = shape[0] * shape[1]
    H = rng.dirichlet(np.full(k, 0.4), size=p).T
    if pure:
        for j in range(k):
            H[:, j] = 0.0
            H[j, j] = 1.0
    return G, W, H


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def pass_data(seed: int, dose: float, shape: tuple[int, int], k: int = 3, n: int = 60):
    """Random (D channels × k, H pixels × k on the simplex, compact Poisson counts of D·Hᵀ at
    ``dose``) for the tests of a single pass."""
    from esmpy_hs.nmf._data import as_compact

    rng = np.random.default_rng(seed)
    p = shape[0] * shape[1]
    D = np.ascontiguousarray(rng.random((n, k)) / n)
    Ht = np.ascontiguousarray(rng.dirichlet(np.full(k, 0.5), p))
    Y = rng.poisson(dose * (D @ Ht.T)).astype(np.uint16)
    return D, Ht, as_compact(Y.T)


def interrupted_pass(data, hp):
    """A stand-in for ``memory_pass`` whose pass raises KeyboardInterrupt (Ctrl-C)."""

    def run(*args, **kwargs):
        raise KeyboardInterrupt

    return run
