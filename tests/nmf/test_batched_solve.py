"""The fourth round of issue 18's pass work: the surrogates of a stripe's pixels solved together
(:data:`._kernels.BATCHED_SOLVE`, :func:`._simplex.solve_free_simplex_rows`,
:func:`._kernels._sparse_block_free`) and the sweeps' flat rows (:data:`._kernels.FLAT_ROWS`),
each against the computation it replaces.

Both switches are read when the kernels compile; here the pieces are compared with the
functions they replace, which stay compiled (the one-row solver; the per-pixel block of the
sparse pass, which the passes with the loss and those with fixed entries still take). Whole fits
before and after: ``benchmarks/bench_128.py --switch kernels --baseline 52be320``.
"""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.nmf import _kernels
from esmpy_hs.nmf._laplacian import grid_adjacency, grid_colouring
from esmpy_hs.nmf._simplex import solve_free_simplex, solve_free_simplex_rows
from esmpy_hs.nmf._solver import n_blocks

from .conftest import pass_data
from .test_pass_switches import _problems

SHAPE = (16, 18)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_the_rows_are_the_one_row_solver(k):
    """Every row gets :func:`solve_free_simplex`'s answer (to the solvers' tolerance: two
    compiled functions may round a few operations differently, see
    test_pass_switches.py), is declined exactly where it declines (the row left as it was),
    and the rows past ``n`` are not touched."""
    problems = list(_problems(k + 40, k, 300))
    C = np.array([p[0] for p in problems])
    B = np.array([p[1] for p in problems])
    Q = np.array([p[2] for p in problems])
    start = np.array([p[3] for p in problems])
    n = len(problems) - 5
    out = start.copy()
    ok = np.zeros(len(problems), dtype=bool)
    solve_free_simplex_rows(C, B, Q, n, 1e-10, 1e-10, out, ok, np.empty((5, len(problems))),
                            (0,) * k)  # fmt: skip
    np.testing.assert_array_equal(out[n:], start[n:])
    applied = 0
    for row in range(n):
        ref = start[row].copy()
        if solve_free_simplex(C[row], B[row], Q[row], 1.0, 1e-10, 1e-10, ref, (0,) * k):
            applied += 1
            assert ok[row]
            np.testing.assert_allclose(out[row], ref, rtol=1e-9, atol=0.0)
            assert abs(out[row].sum() - 1.0) < 1e-12
        else:
            assert not ok[row]
            np.testing.assert_array_equal(out[row], start[row])
    assert applied > 200 and applied < n  # both kinds of row


def _blocks(block, common: tuple, nb: int, n: int, k: int):
    """Every block of a pass through ``block`` (its own arguments in ``common``), serially."""
    acc = np.empty((nb, n, k))
    hsum = np.empty((nb, k))
    loss = np.empty((nb, 4))
    for b in range(nb):
        block(b, nb, *common(acc[b], hsum[b], loss[b]))
    return acc.sum(axis=0), hsum.sum(axis=0)


@pytest.mark.parametrize(
    ("lam", "phase", "held", "offset"),
    [(0.5, -1, False, False), (0.5, -1, True, False), (0.0, -1, False, False),
     (3.0, 0, False, False), (3.0, 1, True, False), (0.5, -1, False, True)],
)  # fmt: skip
def test_the_batched_block_is_the_per_pixel_block(lam, phase, held, offset):
    """:func:`._kernels._sparse_block_free` against :func:`._kernels._sparse_block` on the
    same pass (H simplex, no fixed entries, no loss): the new H, its extrapolation, the
    pixels' moves, ``R Hᵀ`` and ``H 1``; with the Laplacian and without (q = 0, where the
    one-row solver declines some pixels), a red-black phase, held pixels, pixels without
    counts, a per-pixel offset of the linear coefficient (the smoothing of the model's
    counts). The same arithmetic; the sums over a pixel's counts may be associated another way
    (fast-math), so to a few units in the last place."""
    D, Ht, Y = pass_data(23, 3.0, SHAPE)
    assert not Y.is_dense
    _, indptr, indices, counts = Y.chunk(0, Y.n_pixels)
    assert (np.diff(indptr) == 0).any()  # pixels without counts
    k = D.shape[1]
    n = D.shape[0]
    p = Ht.shape[0]
    adj_indptr, adj_indices = grid_adjacency(SHAPE)
    colour = grid_colouring(SHAPE) if phase >= 0 else np.zeros(0, np.uint8)
    rng = np.random.default_rng(5)
    moved = rng.random(p) * 2e-5 * held  # about half below skip_tol when held
    skip_tol = 1e-5 if held else 0.0
    nb = n_blocks(p)
    mu = np.full(k, 0.1)
    eps_k = np.ones(k)  # the prior's ε per phase
    colsum = D.sum(axis=0)
    off = 0.2 * (rng.random((p, k)) - 0.5) if offset else np.empty((0, k))
    outs = {}
    for name in ("per_pixel", "batched"):
        Ht_out = np.full_like(Ht, np.nan)
        Hy = np.full_like(Ht, np.nan)
        mv = moved.copy()
        if name == "per_pixel":
            def common(acc, hsum, loss, Ht_out=Ht_out, Hy=Hy, mv=mv):
                return (p, indptr, indices, counts, D, colsum, Ht, 0, Ht_out, 1.0, mu, eps_k, lam,
                        adj_indptr, adj_indices, colour, phase, True, np.empty((0, k)), 1e-12,
                        1e-10, True, True, False, acc, hsum, loss, (0,) * k, Hy, 0.7,
                        np.empty((0, k)), colsum, mv, skip_tol, off)  # fmt: skip

            block = _kernels._sparse_block
        else:
            def common(acc, hsum, loss, Ht_out=Ht_out, Hy=Hy, mv=mv):
                return (p, indptr, indices, counts, D, colsum, Ht, 0, Ht_out, 1.0, mu, eps_k, lam,
                        adj_indptr, adj_indices, colour, phase, 1e-12, 1e-10, True, acc, hsum,
                        loss, (0,) * k, Hy, 0.7, mv, skip_tol, off)  # fmt: skip

            block = _kernels._sparse_block_free
        RHt, hsum = _blocks(block, common, nb, n, k)
        outs[name] = (Ht_out, Hy, mv, RHt, hsum)
    ref, new = outs["per_pixel"], outs["batched"]
    for a, b in zip(ref, new, strict=True):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)
    updated = ~np.isnan(ref[1][:, 0])  # rows the pass extrapolated (its colour, not held)
    if held:
        kept = moved < skip_tol
        if phase >= 0:
            kept &= colour == phase
        np.testing.assert_array_equal(new[0][kept], Ht[kept])  # held: kept exactly
        assert kept.any() and updated.any()
    else:
        assert updated.sum() == (p if phase < 0 else (colour == phase).sum())
