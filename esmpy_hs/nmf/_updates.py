"""The W step (after the reduce over pixel chunks) and the phase spectra D = G·W.

G may be

- ``None``: the identity (plain KL-NMF; W is channels × k and D = W),
- 2-D, channels × m: one G for all phases, D = G W,
- 3-D, k × channels × m: one G per phase, ``D[:, j] = G[j] @ W[:, j]``.

The multiplicative W step of the Kullback-Leibler surrogate is, with ``RHt = R Hᵀ`` (channels ×
k) and ``hsum = H 1`` (k)::

    num = W ⊙ (Gᵀ RHt)          (3-D: num[:, j] = W[:, j] ⊙ (G[j]ᵀ RHt[:, j]))
    den = (Gᵀ 1) hsumᵀ          (3-D: den[:, j] = (G[j]ᵀ 1) hsum[j])
    W ← max(num / (den + ν), ε)

with ν = 0 on rows outside the W simplex and, under the W simplex, one multiplier per phase
chosen so the free simplex rows of each column sum to ``1 − Σ(fixed simplex entries)``. This is
the exact minimiser of the (separable) majorising surrogate over the constraint set, so the
objective cannot increase. Fixed entries are not updated. Entries whose surrogate is flat (an
all-zero column of G, or a phase with ``H 1 = 0``) keep their value.
"""

from __future__ import annotations

import numpy as np

from esmpy_hs.nmf._simplex import solve_columns

#: the per-phase products of a 3-D G (:func:`compute_D`, :func:`gt_times`) and the column sums
#: of D (:func:`colsums`) as batched matrix products (BLAS) instead of ``einsum`` and a NumPy
#: reduction along the long axis: 3× less time each in the loop (tens of µs per iteration,
#: issue 18); the same sums in another order (differences of a few units in the last place).
#: False: the NumPy forms before (for same-process baselines).
BATCHED_PRODUCTS = True


def compute_D(G: np.ndarray | None, W: np.ndarray, dtype=None) -> np.ndarray:
    """Phase spectra D (channels × k, C-contiguous) from G (None, 2-D or 3-D) and W."""
    dtype = W.dtype if dtype is None else dtype
    if G is None:
        D = W
    elif G.ndim == 2:
        D = G @ W
    elif BATCHED_PRODUCTS:
        # (k, n, m) @ (k, m, 1): one matrix-vector product per phase
        D = np.matmul(G, np.asarray(W).T[:, :, None])[:, :, 0].T
    else:
        D = np.einsum("jnm,mj->nj", G, W)
    return np.ascontiguousarray(D, dtype=dtype)


_ONES: dict[int, np.ndarray] = {}


def colsums(D: np.ndarray) -> np.ndarray:
    """``1ᵀ D`` (k,), float64, of D (channels × k)."""
    if BATCHED_PRODUCTS and D.dtype == np.float64:
        ones = _ONES.get(D.shape[0])
        if ones is None:
            ones = _ONES.setdefault(D.shape[0], np.ones(D.shape[0]))
            ones.flags.writeable = False
        return ones @ D
    return D.sum(axis=0, dtype=np.float64)


def g_colsums(G: np.ndarray | None, n_rows: int, k: int) -> np.ndarray:
    """``Gᵀ 1`` broadcast to the shape of W (rows × k), float64."""
    if G is None:
        return np.ones((n_rows, k))
    if G.ndim == 2:
        return np.repeat(G.sum(axis=0, dtype=np.float64)[:, None], k, axis=1)
    return np.ascontiguousarray(G.sum(axis=1, dtype=np.float64).T)


def gt_times(G: np.ndarray | None, RHt: np.ndarray) -> np.ndarray:
    """``Gᵀ (R Hᵀ)`` (rows of W × k), float64; per phase for a 3-D G."""
    RHt = np.asarray(RHt, dtype=np.float64)
    if G is None:
        return RHt.copy()
    if G.ndim == 2:
        return G.T.astype(np.float64, copy=False) @ RHt
    if BATCHED_PRODUCTS and G.dtype == np.float64:
        # (k, 1, n) @ (k, n, m): one vector-matrix product per phase
        return np.matmul(RHt.T[:, None, :], G)[:, 0, :].T
    return np.einsum("jnm,nj->mj", G, RHt, dtype=np.float64)


def update_W(
    W: np.ndarray,
    G: np.ndarray | None,
    RHt: np.ndarray,
    hsum: np.ndarray,
    *,
    Gt1: np.ndarray,
    simplex: bool,
    simplex_rows: np.ndarray,
    fixed: np.ndarray | None,
    eps: float,
    rtol: float = 1e-13,
    smooth: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """One multiplicative W step; returns the new W (same dtype as ``W``).

    Parameters
    ----------
    W : ndarray (rows × k)
        Current W (scaled units).
    G : None, 2-D or 3-D ndarray
        See the module docstring.
    RHt : ndarray (channels × k)
        ``R Hᵀ`` summed over all pixel chunks, computed with the current H.
    hsum : ndarray (k,)
        ``H 1`` of the current H.
    Gt1 : ndarray (rows × k)
        :func:`g_colsums` of G (precomputed; changes only when G does).
    simplex : bool
        Impose the W simplex on ``simplex_rows``.
    simplex_rows : bool ndarray (rows,)
        Rows taking part in the W simplex.
    fixed : ndarray (rows × k) or None
        Fixed entries (NaN = free).
    eps : float
        Lower bound of free entries.
    rtol : float
        Tolerance of the simplex sums.
    smooth : (quad, lin) of ndarrays (rows × k), or None
        The smoothing of the model's counts (:func:`._model_smoothing.w_terms`): every entry's
        surrogate gains ``½ (quad / w̃) w² − lin · w̃ · log w`` (w̃ the current W), minimised
        with the rest in closed form. Not under the W simplex.
    """
    Wf = W.astype(np.float64)
    num = Wf * gt_times(G, RHt)
    den = Gt1 * np.asarray(hsum, dtype=np.float64)[None, :]
    if smooth is not None:
        if simplex and np.any(simplex_rows):
            raise ValueError("the smoothing of the model's counts does not support the W simplex")
        quad, lin = smooth
        out = _smoothed_entries(num + lin * Wf, den, quad / np.maximum(Wf, 1e-300), Wf, eps)
        if fixed is not None:
            free = np.isnan(fixed)
            out[~free] = fixed[~free]
        return out.astype(W.dtype, copy=False)
    free = np.ones(W.shape, dtype=bool) if fixed is None else np.isnan(fixed)
    out = Wf.copy()
    k = W.shape[1]
    rows = np.asarray(simplex_rows, dtype=bool)
    if simplex and rows.any():
        fixed_sum = np.zeros(k) if fixed is None else np.nansum(np.where(free, 0.0, fixed)[rows], 0)
        total = 1.0 - fixed_sum
        sub = np.ascontiguousarray(out[rows])
        solve_columns(
            np.ascontiguousarray(num[rows]),
            np.ascontiguousarray(den[rows]),
            np.zeros(k),
            np.ascontiguousarray(free[rows]),
            total,
            eps,
            True,
            rtol,
            sub,
        )
        out[rows] = sub
        other = ~rows
    else:
        other = np.ones(W.shape[0], dtype=bool)
    if other.any():
        n_o = num[other]
        d_o = den[other]
        f_o = free[other]
        o_o = out[other]
        ok = f_o & (d_o > 0)
        o_o[ok] = np.maximum(n_o[ok] / d_o[ok], eps)
        out[other] = o_o
    if fixed is not None:
        out[~free] = fixed[~free]
    return out.astype(W.dtype, copy=False)


def _smoothed_entries(c: np.ndarray, b: np.ndarray, a: np.ndarray, old: np.ndarray,
                      eps: float) -> np.ndarray:  # fmt: skip
    """The minimiser over w ≥ ε of ``−c log w + b w + ½ a w²`` entry by entry (c, a ≥ 0; b
    real): the positive root of ``a w² + b w − c = 0`` (``c / b`` where a = 0), written to avoid
    cancellation. An entry without a minimiser (a = 0 and b ≤ 0: a zero column of G, a phase
    without abundance) keeps ``old``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        disc = np.sqrt(b * b + 4.0 * a * c)
        root = np.where(b > 0, 2.0 * c / (b + disc), (disc - b) / (2.0 * a))
    flat = (a <= 0) & (b <= 0)
    return np.where(flat, old, np.maximum(np.where(np.isfinite(root), root, eps), eps))
