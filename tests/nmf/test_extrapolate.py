"""The compiled extrapolation of H (the H simplex without fixed entries) against the NumPy steps
it replaces: ``Hn + β (Hn − H)`` then :func:`feasible_H`."""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.nmf import _kernels
from esmpy_hs.nmf._solver import feasible_H, n_blocks


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_extrapolate_simplex_matches_the_numpy_projection(k, dtype, beta):
    rng = np.random.default_rng(k)
    p, eps = 3000, 1e-10
    H = rng.dirichlet(np.full(k, 0.3), p).astype(dtype)
    Hn = rng.dirichlet(np.full(k, 0.3), p).astype(dtype)
    Hn[:50] = eps  # rows pushed far below the floor: several flooring rounds
    H[50:100, 0] = 0.9
    ref = Hn.astype(np.float64) + beta * (Hn - H.astype(np.float64))
    feasible_H(ref, True, None, eps)
    out = np.empty((p, k))
    _kernels.extrapolate_simplex(Hn, H, beta, eps, n_blocks(p), out)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-15)
    assert np.all(out >= eps)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=0, atol=1e-14)
    # the same whatever the number of blocks
    one = np.empty((p, k))
    _kernels.extrapolate_simplex(Hn, H, beta, eps, 1, one)
    np.testing.assert_array_equal(one, out)
    serial = np.empty((p, k))
    _kernels.extrapolate_simplex_serial(Hn, H, beta, 1e-10, serial)
    np.testing.assert_array_equal(serial, out)
