"""The closed-form H step of pixels without counts (issue 18) gives the Newton solver's answer.

A pixel without counts has a zero Jensen numerator, so its surrogate is a quadratic on the
simplex: :func:`esmpy_hs.nmf._kernels._project_empty` solves it exactly (a projection) instead
of the safeguarded Newton iteration of :func:`esmpy_hs.nmf._simplex.solve_column`. Both must give
the same minimiser to the Newton tolerance, with fixed entries, binding floors and any q.
"""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.nmf._data import as_compact
from esmpy_hs.nmf._kernels import _project_empty, _update_pixel
from esmpy_hs.nmf._laplacian import grid_adjacency, grid_colouring
from esmpy_hs.nmf._simplex import solve_column
from esmpy_hs.nmf._solver import HParams, h_pass


def _surrogate(x, beta, q):
    return float(np.sum(beta * x + q * x * x))


@pytest.mark.parametrize("k", [2, 3, 5])
def test_closed_form_equals_newton(k):
    rng = np.random.default_rng(k)
    eps = 1e-12
    nfloor = 0
    for _ in range(3000):
        beta = rng.normal(size=k) * rng.choice([0.01, 1.0, 100.0])
        q = float(rng.choice([1e-3, 0.3, 30.0, 240.0]))
        c = np.zeros(k)
        free = np.ones(k, dtype=np.bool_)
        total = 1.0
        if k > 2 and rng.random() < 0.3:  # one fixed entry
            free[1] = False
            total = 1.0 - 0.2
        h = np.full(k, 0.2)  # the fixed entry's value; the free ones on the simplex, as in the pass
        h[free] = total * rng.dirichlet(np.ones(int(free.sum())))
        fast, slow = h.copy(), h.copy()
        assert _project_empty(c, beta, q, free, total, eps, fast)
        solve_column(c, beta, q, free, total, eps, True, 1e-10, slow)
        np.testing.assert_allclose(fast[free], slow[free], rtol=0, atol=5e-10)
        assert fast[~free] == pytest.approx(h[~free])  # fixed entries untouched
        assert fast[free].sum() == pytest.approx(total, abs=1e-14)
        assert np.all(fast[free] >= eps)
        nfloor += int(np.any(fast[free] == eps))
        # and it is the minimum: no feasible move along the simplex lowers the surrogate
        f0 = _surrogate(fast[free], beta[free], q)
        for _ in range(5):
            d = rng.normal(size=int(free.sum()))
            d -= d.mean()
            for step in (1e-3, 1e-6):
                y = fast[free] + step * d
                if np.all(y >= eps):
                    assert _surrogate(y, beta[free], q) >= f0 - 1e-12 * max(1.0, abs(f0))
    assert nfloor > 100  # the floors were exercised


def test_not_applied_with_counts():
    c = np.array([0.0, 1e-300, 0.0])
    out = np.array([0.2, 0.3, 0.5])
    assert not _project_empty(c, np.ones(3), 1.0, np.ones(3, np.bool_), 1.0, 1e-12, out)
    assert list(out) == [0.2, 0.3, 0.5]  # nothing written


@pytest.mark.parametrize("seq", [False, True])
def test_update_pixel_of_an_empty_pixel_matches_newton(seq):
    """Inside the per-pixel update (its c, β and q as the pass builds them, neighbours and the
    log prior included): the answer of the Newton solver on the same surrogate."""
    rng = np.random.default_rng(1)
    shape, k = (9, 11), 3
    ip, ix = grid_adjacency(shape)
    Ht = rng.dirichlet(np.ones(k), shape[0] * shape[1])
    mu = np.array([0.1, 0.0, 0.3])
    colsum = rng.random(k) + 0.5
    a = np.zeros(k)
    c, beta, hn = np.empty(k), np.empty(k), np.empty(k)
    free = np.empty(k, dtype=np.bool_)
    for lam in (0.5, 60.0):
        for p in range(Ht.shape[0]):
            h = Ht[p].copy()
            _update_pixel(p, p, h, a, colsum, mu, np.full(k, 0.2), lam, ip, ix, Ht, True,
                          np.empty((0, k)), 1e-12, 1e-10, c, beta, free, hn, seq,
                          np.empty((0, k)), (0,) * k)  # fmt: skip
            deg = ip[p + 1] - ip[p]
            q = (0.5 if seq else 1.0) * lam * deg
            ref = h.copy()
            solve_column(c, beta, q, free, 1.0, 1e-12, True, 1e-10, ref)
            np.testing.assert_allclose(hn, ref, rtol=0, atol=5e-10)


def test_sparse_and_dense_pass_agree_at_low_dose():
    """Empty pixels take the same path in the sparse and the dense pass (identical H)."""
    rng = np.random.default_rng(3)
    shape, n, k = (16, 16), 40, 3
    p = shape[0] * shape[1]
    D = np.ascontiguousarray(rng.random((n, k)) / n)
    Ht = np.ascontiguousarray(rng.dirichlet(np.ones(k), p))
    Y = rng.poisson(0.8 * (D @ Ht.T))  # about half the pixels empty
    assert 0.2 < np.mean(Y.sum(axis=0) == 0) < 0.8
    adj = grid_adjacency(shape)
    hp = HParams(1.0, float(Y.sum()), np.zeros(k), 1.0, 60.0, *adj, True, None, 1e-12, 1e-10,
                 grid_colouring(shape))  # fmt: skip
    sparse = as_compact(Y.T.astype(np.uint16))
    assert sparse.dense is None
    dense_rows = np.ascontiguousarray(Y.T.astype(np.uint16))
    out = []
    for chunk in (sparse.chunk(0, p), ("dense", dense_rows)):
        H1 = np.empty_like(Ht)
        r = h_pass(chunk, D, D.sum(axis=0), Ht, 0, H1, hp, want_loss=True)
        out.append((H1, r))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1].RHt, out[1][1].RHt)
