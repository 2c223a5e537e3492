"""The loss of the compiled pass equals F evaluated densely with NumPy (Σ y log(y/m) with one
logarithm per count), whatever the counts (the running product of ratios takes counts 1–7 as
powers, larger ones and extreme ratios as logarithms)."""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.nmf._data import as_compact
from esmpy_hs.nmf._laplacian import empty_adjacency
from esmpy_hs.nmf._objective import objective_dense
from esmpy_hs.nmf._solver import HParams, evaluate_loss, h_pass


@pytest.mark.parametrize("dense", [False, True])
def test_kernel_loss_equals_the_dense_objective(dense):
    rng = np.random.default_rng(5)
    n, p, k = 40, 300, 3
    G = rng.random((n, 6)) + 0.01
    W = rng.random((6, k))
    Ht = rng.dirichlet(np.ones(k), p)
    m = (G @ W) @ Ht.T  # channels × pixels
    Y = rng.poisson(m * rng.choice([0.5, 3.0, 12.0], size=(1, p))).astype(np.float64)
    # ratios far outside 2^±100: counts where the model is ~0, and a model far above the count
    G[0] = 1e-45
    Y[0, :10] = rng.integers(1, 8, size=10)
    G[1] = 1e42
    Y[1, :10] = rng.integers(1, 8, size=10)
    if not dense:
        Y[:, 20:] *= rng.random((n, p - 20)) < 0.3  # mostly empty: stored sparse
    data = as_compact(Y.T.astype(np.uint16))
    assert (data.dense is not None) == dense
    counts = Y[Y > 0]
    assert {1, 2, 3, 4, 5, 6, 7} <= set(counts.astype(int)) and counts.max() > 7
    ip, ix = empty_adjacency(p)
    hp = HParams(inv_scale=1.0, total_scaled=float(Y.sum()), mu=np.zeros(k), eps_reg=1.0,
                 lam=0.0, adj_indptr=ip, adj_indices=ix, simplex=True, fixed_Ht=None,
                 eps=1e-12, rtol=1e-9)  # fmt: skip
    Ht = np.ascontiguousarray(Ht)
    D = np.ascontiguousarray(G @ W)
    # the part of the counts alone, Σ y log(y / m) (F's other parts would hide an error here)
    part = h_pass(data.chunk(0, p), D, D.sum(axis=0), Ht, 0, Ht, hp, update_h=False,
                  accumulate=False, want_loss=True).loss[0]  # fmt: skip
    M = np.maximum(D @ Ht.T, 1e-30)
    nz = Y > 0
    assert part == pytest.approx(float(np.sum(Y[nz] * np.log(Y[nz] / M[nz]))), rel=1e-12)
    F = evaluate_loss(data, G, W, Ht, hp)
    assert F == pytest.approx(objective_dense(Y, D, Ht.T), rel=1e-12)
