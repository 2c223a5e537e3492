"""The second round of issue 18's pass work: the simplex solve of the H step compiled for the
pass's k (:data:`._kernels.UNROLLED_SIMPLEX`, :func:`._simplex.solve_free_simplex`; with
:data:`._kernels.FREE_SIMPLEX_PATH`, issue 18's third round, in a path of its own), the
counts of the ratio sweep taken two at a time (:data:`._kernels.PAIRED_COUNTS`) and the
blocks' ``R Hᵀ`` summed in compiled code (:data:`._solver.COMPILED_BLOCK_SUM`) — each against
the computation it replaces.

The first two are read when the kernels compile; the whole fits with them off are compared in
``benchmarks/bench_128.py --switch pass`` (a second compiled copy of the kernels costs a minute
of compilation, too much for the suite); here the pieces are checked against references.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from esmpy_hs.nmf import SmartNMF, _kernels, _solver
from esmpy_hs.nmf._laplacian import grid_adjacency
from esmpy_hs.nmf._simplex import solve_column, solve_free_simplex
from esmpy_hs.nmf._solver import HParams, h_pass

from .conftest import pass_data, synthetic

SHAPE = (16, 18)


def _problems(seed: int, k: int, n: int):
    """Random surrogates of the H step: c ≥ 0 (some zero), β of both signs, q = 0 or > 0,
    starts on and off the simplex."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        c = rng.random(k) * 10.0 ** rng.uniform(-4, 3)
        c[rng.random(k) < 0.15] = 0.0
        beta = rng.random(k) + rng.choice([0.0, 1.0]) * rng.normal(0, 2, k)
        q = 0.0 if rng.random() < 0.3 else 10.0 ** rng.uniform(-3, 2)
        start = rng.dirichlet(np.ones(k)) if rng.random() < 0.7 else rng.random(k)
        yield c, beta, q, start


@pytest.mark.parametrize("k", [2, 3, 5])
def test_the_unrolled_solve_is_solve_column_to_the_last_unit(k):
    """The answer of solve_column (the same steps; the two compiled functions round a few
    operations differently, interpreted they agree bit for bit); only the degenerate case of
    q = 0 is declined (left to solve_column, ``out`` untouched).

    The bound is the solvers' own tolerance, not a count of units in the last place: both stop
    their Newton steps once the sum is within 1e-10 of 1, and a rounding that differs can end
    them one step apart. On the development machine they agree bit for bit in every case; a
    fresh install of CI (another numba/LLVM build) gave up to 7 units in the last place."""
    applied = 0
    rng = np.random.default_rng(k + 100)
    for c, beta, q, start in _problems(k, k, 400):
        ans = start.copy()
        solve_column(c, beta, q, np.ones(k, bool), 1.0, 1e-10, True, 1e-10, ans)
        # from the random start and from next to the answer (a late iteration)
        near = np.maximum(ans * (1.0 + 1e-9 * rng.normal(size=k)), 1e-10)
        for x0 in (start, near / near.sum()):
            ref = x0.copy()
            solve_column(c, beta, q, np.ones(k, bool), 1.0, 1e-10, True, 1e-10, ref)
            out = x0.copy()
            if solve_free_simplex(c, beta, q, 1.0, 1e-10, 1e-10, out, (0,) * k):
                applied += 1
                np.testing.assert_allclose(out, ref, rtol=1e-9, atol=0.0)
            else:
                assert q == 0.0
                np.testing.assert_array_equal(out, x0)
    assert applied > 500


@pytest.mark.parametrize("dose", [3.0, 300.0])
def test_the_pass_is_the_reference_update(dose):
    """The pass (paired sweeps, unrolled solve) against NumPy sums and solve_column per pixel,
    at even and odd numbers of counts per pixel."""
    D, Ht, Y = pass_data(4, dose, SHAPE)
    k = D.shape[1]
    adj = grid_adjacency(SHAPE)
    lam = 0.5
    hp = HParams(1.0, float(Y.total), np.full(k, 0.1), 1.0, lam, *adj, True, None, 1e-12,
                 1e-10)  # fmt: skip
    Hn = np.empty_like(Ht)
    res = h_pass(Y.chunk(0, Y.n_pixels), D, D.sum(axis=0), Ht, 0, Hn, hp, want_loss=False)
    Yd = Y.to_dense(np.float64)  # channels × pixels
    nnz = (Yd > 0).sum(axis=0)
    assert (nnz % 2 == 0).any() and (nnz % 2 == 1).any()
    # the H step of every pixel: the surrogate's numerator from Dᵀ (y / D h), solved per pixel
    A = D.T @ (Yd / np.maximum(D @ Ht.T, 1e-30))
    indptr, indices = adj
    ref = np.empty_like(Ht)
    for p in range(Ht.shape[0]):
        nb = indices[indptr[p]:indptr[p + 1]]
        deg = nb.size
        c = Ht[p] * A[:, p]
        beta = D.sum(axis=0) + hp.mu / (Ht[p] + hp.eps_reg) - lam * (deg * Ht[p]
                                                                     + Ht[nb].sum(axis=0))
        out = Ht[p].copy()
        solve_column(c, beta, lam * deg, np.ones(k, bool), 1.0, hp.eps, True, hp.rtol, out)
        ref[p] = out
    # to the solve's tolerance (rtol 1e-10 on the sum: Dᵀ r summed in another order can stop
    # the Newton steps at another point within it; empty pixels take the closed form)
    np.testing.assert_allclose(Hn, ref, rtol=0, atol=1e-9)
    # R Hᵀ with the new H and H 1
    RHt = (Yd / np.maximum(D @ Hn.T, 1e-30)) @ Hn
    np.testing.assert_allclose(res.RHt, RHt, rtol=1e-12)
    np.testing.assert_allclose(res.hsum, Hn.sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_block_sum_is_numpys_reduction_bit_for_bit(dtype):
    rng = np.random.default_rng(7)
    acc = (rng.random((16, 301, 3)) * 10.0 ** rng.uniform(-6, 6, (16, 301, 3))).astype(dtype)
    out = np.empty((301, 3))
    _kernels.sum_blocks(acc.reshape(16, -1), out.reshape(-1))
    np.testing.assert_array_equal(out, acc.sum(axis=0, dtype=np.float64))


def test_fits_with_and_without_the_compiled_block_sum_are_identical(monkeypatch):
    rng = np.random.default_rng(12)
    G, W, H = synthetic(rng, shape=SHAPE, k=3, pure=False)
    X = rng.poisson(150.0 * (G @ W @ H).T)
    fits = []
    for on in (False, True):
        monkeypatch.setattr(_solver, "COMPILED_BLOCK_SUM", on)
        est = SmartNMF(G, 3, shape_2d=SHAPE, max_iter=200, tol=1e-7, progress=False)
        fits.append(est.fit(X))
    old, new = fits
    assert new.n_iter_ == old.n_iter_ > 20
    assert new.loss_history_ == old.loss_history_
    np.testing.assert_array_equal(new.W_, old.W_)
    np.testing.assert_array_equal(new.H_, old.H_)


@njit(fastmath=_kernels._FASTMATH)
def _both_updates(p, h, a, colsum, mu, eps_reg, lam, adj_indptr, adj_indices, Ht, eps, rtol, seq,
                  off, kt):  # fmt: skip
    """One pixel's H step by :func:`._kernels._update_free` and by
    :func:`._kernels._update_pixel` (no fixed entries, the simplex), inlined with the
    kernels' fast-math flags as in the passes."""
    k = len(kt)
    c = np.empty(k)
    beta = np.empty(k)
    free = np.ones(k, dtype=np.bool_)
    out = np.empty((2, k))
    hn = np.empty(k)
    _kernels._update_free(p, p, h, a, colsum, mu, eps_reg, lam, adj_indptr, adj_indices, Ht, eps,
                          rtol, c, beta, free, hn, seq, off, kt)  # fmt: skip
    out[0] = hn
    _kernels._update_pixel(p, p, h, a, colsum, mu, eps_reg, lam, adj_indptr, adj_indices, Ht,
                           True, np.empty((0, k)), eps, rtol, c, beta, free, hn, seq, off,
                           kt)  # fmt: skip
    out[1] = hn
    return out


@pytest.mark.parametrize("seq", [False, True])
def test_the_free_simplex_path_is_the_general_update(seq):
    """:data:`._kernels.FREE_SIMPLEX_PATH`: the default fit's H step takes a path of its own;
    on every kind of pixel (counts or none, with and without the Laplacian, degenerate q = 0
    surrogates; with and without a per-pixel offset of the linear coefficient, as the smoothing
    of the model's counts adds) it gives the general update's answer.

    The bound is the Newton solve's own tolerance (1e-10), as for the unrolled solve above, not
    a count of units in the last place: the two paths are the same arithmetic in the same order,
    but inlined under the fast-math flags (``reassoc``, ``contract``) the compiler may order and
    fuse them differently. On the development machine (Intel) they agreed bit for bit; on an AMD
    EPYC machine (2026-11-30) 45 and 59 of the 288 pixels differed, by up to 117 units in the
    last place (relative 1.6e-14). A different update (a wrong term, a missed case) differs by
    far more than 1e-10."""
    rng = np.random.default_rng(31)
    k = 3
    adj_indptr, adj_indices = grid_adjacency(SHAPE)
    Ht = np.ascontiguousarray(rng.dirichlet(np.full(k, 0.5), SHAPE[0] * SHAPE[1]))
    colsum = rng.random(k) + 0.5
    mu = np.full(k, 0.01)
    kinds = {"counts": 0, "empty": 0}
    # the offset of the model's smoothing: rows of either sign, small against colsum + μ/h
    offsets = (np.empty((0, k)), 0.3 * (rng.random(Ht.shape) - 0.5))
    for p in range(Ht.shape[0]):
        a = rng.random(k) * 10.0 ** rng.uniform(-2, 2)
        if p % 3 == 0:
            a[:] = 0.0  # no counts
        elif p % 7 == 0:
            a[rng.integers(k)] = 0.0
        lam = 0.0 if p % 5 == 0 else 10.0 ** rng.uniform(-2, 1)
        off = offsets[p % 2]
        out = _both_updates(p, Ht[p].copy(), a, colsum, mu, np.full(k, 1.0), lam, adj_indptr,
                            adj_indices, Ht, 1e-12, 1e-10, seq, off, (0,) * k)  # fmt: skip
        np.testing.assert_allclose(out[0], out[1], rtol=1e-10, atol=1e-300)
        kinds["empty" if not a.any() else "counts"] += 1
    assert min(kinds.values()) > 50
