"""Count splitting and held-out Poisson scores (HyperSpy- and physics-free).

Thinning: keep each of the ``y`` counts of an entry independently with probability ``p``. The kept
counts are Binomial(y, p); when y ~ Poisson(m), the kept and the left counts are *independent*
Poisson variables with means ``p·m`` and ``(1 − p)·m`` (the thinning property of the Poisson
process). With ``p = ½`` a map becomes two independent maps of the same expected counts, each half
the dose, whose sum is the original map. A model fitted on one half predicts the expected counts
of the other; the deviance of the other half's counts under it is an honest (held-out) measure of
how well the model describes the map, which does not improve just because the model has more
parameters.

Everything here works on counts pixels × channels: a NumPy array (any integer-valued array, of any
shape, for :func:`split_counts`), a SciPy sparse matrix or a
:class:`esmpy_hs.nmf._data.CompactCounts`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from esmpy_hs.nmf._data import CompactCounts, as_compact

#: pixels handled at a time by :func:`poisson_deviance` (bounds the temporaries)
_BLOCK = 4096


def _thin(values: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    v = np.asarray(values)
    if v.size and (np.any(v < 0) or not np.all(np.isfinite(v)) or np.any(v != np.round(v))):
        raise ValueError("count splitting needs non-negative integer counts")
    kept = rng.binomial(v.astype(np.int64), p)
    return kept.astype(v.dtype if np.issubdtype(v.dtype, np.integer) else np.int64, copy=False)


def split_counts(X: Any, random_state: Any = None, p: float = 0.5) -> tuple[Any, Any]:
    """Split counts in two by binomial thinning.

    Parameters
    ----------
    X : ndarray, scipy.sparse matrix/array or CompactCounts
        Non-negative integer counts (a float array must hold whole numbers).
    random_state : None, int or numpy.random.Generator
        Seed of the thinning.
    p : float, default 0.5
        Probability that a count goes to the first part.

    Returns
    -------
    (A, B)
        Counts of the same kind as ``X`` (an integer array for an array input, the same sparse
        format, or CompactCounts) with ``A + B == X``. When ``X`` is Poisson with mean ``m``, A
        and B are independent Poisson with means ``p·m`` and ``(1 − p)·m``.

    Raises
    ------
    ValueError
        Counts that are negative, not finite or not whole numbers; ``p`` outside (0, 1).
    """
    if not 0.0 < float(p) < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    rng = np.random.default_rng(random_state)
    if isinstance(X, CompactCounts):
        if X.dense is not None:
            A = _thin(X.dense, p, rng)
            B = X.dense.astype(A.dtype) - A
            return as_compact(A), as_compact(B)
        A = _thin(X.counts, p, rng)
        B = X.counts.astype(A.dtype) - A
        shape = (X.n_pixels, X.n_channels)
        mk = lambda c: as_compact(sp.csr_array((c, X.indices.astype(np.int64), X.indptr),  # noqa: E731
                                               shape=shape))  # fmt: skip
        return mk(A), mk(B)
    if sp.issparse(X):
        Xc = X.tocsr() if hasattr(X, "tocsr") else sp.csr_array(X)
        A = Xc.copy()
        A.data = _thin(Xc.data, p, rng)
        B = Xc.copy()
        B.data = Xc.data.astype(A.data.dtype) - A.data
        A.eliminate_zeros()
        B.eliminate_zeros()
        return A, B
    X = np.asarray(X)
    A = _thin(X, p, rng)
    return A, X.astype(A.dtype) - A


def bin_pixels(X: np.ndarray, shape: tuple[int, ...], b: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Sum b × b blocks of pixels (b² along a line); incomplete edge blocks are left out.

    The linear model is unchanged by binning: a block's expected counts are the phase spectra
    times the block's summed abundances. Under the per-pixel sum constraint of H every block must
    hold the same number of pixels, hence the cropping.

    Parameters
    ----------
    X : ndarray, shape (pixels, channels)
        Counts, pixels in the row-major order of ``shape``.
    shape : (rows, cols) or (n,)
        Pixel grid.
    b : int
        Block size (1: no binning).

    Returns
    -------
    (binned counts, binned grid)
    """
    b = int(b)
    shape = tuple(int(s) for s in shape)
    X = np.asarray(X)
    if b <= 1:
        return X, shape
    n = X.shape[1]
    if len(shape) == 1:
        L = b * b
        m = shape[0] // L
        return X[: m * L].reshape(m, L, n).sum(axis=1), (m,)
    rows, cols = shape
    r, c = rows // b, cols // b
    cube = X.reshape(rows, cols, n)[: r * b, : c * b]
    out = cube.reshape(r, b, c, b, n).sum(axis=(1, 3))
    return out.reshape(r * c, n), (r, c)


def poisson_deviance(X: Any, components: np.ndarray, H: np.ndarray) -> float:
    """Poisson deviance per count of counts X under the model ``Hᵀ · components``.

    ``2 Σ [y log(y / m) − y + m] / Σ y`` over all pixels and channels, with m the model's
    expected counts (the same for both halves of a split when fitted on one of them).

    Parameters
    ----------
    X : ndarray, scipy.sparse or CompactCounts
        Counts, pixels × channels.
    components : ndarray, shape (k, channels)
        Phase spectra, counts per pixel of pure phase.
    H : ndarray, shape (k, pixels)
        Abundances.

    Returns
    -------
    float
        Deviance per count (dimensionless; 0 for a perfect model of noiseless data).
    """
    data = X if isinstance(X, CompactCounts) else as_compact(X)
    C = np.ascontiguousarray(np.asarray(components, dtype=np.float64).T)  # channels × k
    Ht = np.ascontiguousarray(np.asarray(H, dtype=np.float64).T)  # pixels × k
    if C.shape[0] != data.n_channels or Ht.shape[0] != data.n_pixels or C.shape[1] != Ht.shape[1]:
        raise ValueError(
            f"counts {data.n_pixels} × {data.n_channels}, components {components.shape} and H "
            f"{H.shape} do not match"
        )
    total = float(data.total)
    if not total > 0:
        raise ValueError("the held-out counts are empty")
    model_total = float(Ht.sum(axis=0) @ C.sum(axis=0))
    ylogym = 0.0
    for a in range(0, data.n_pixels, _BLOCK):
        z = min(a + _BLOCK, data.n_pixels)
        if data.dense is not None:
            y = np.asarray(data.dense[a:z], dtype=np.float64)
            m = Ht[a:z] @ C.T
            nz = y > 0
            y, m = y[nz], m[nz]
        else:
            lo, hi = int(data.indptr[a]), int(data.indptr[z])
            pix = np.repeat(np.arange(a, z), np.diff(data.indptr[a : z + 1]))
            ch = data.indices[lo:hi].astype(np.int64)
            y = data.counts[lo:hi].astype(np.float64)
            m = np.einsum("ij,ij->i", C[ch], Ht[pix])
        ylogym += float(np.sum(y * np.log(y / np.maximum(m, 1e-300))))
    return 2.0 * (ylogym - total + model_total) / total


def window_sums(X: Any, windows: np.ndarray) -> CompactCounts:
    """Counts summed over groups of channels (energy windows).

    Sums of Poisson counts are Poisson: the deviance of window sums is an honest held-out score
    at a coarser energy resolution (see :func:`heldout_curve`).

    Parameters
    ----------
    X : ndarray, scipy.sparse or CompactCounts
        Counts, pixels × channels.
    windows : array of int, shape (channels,)
        Window index 0 … n_windows − 1 of every channel.

    Returns
    -------
    CompactCounts
        Pixels × n_windows.
    """
    data = X if isinstance(X, CompactCounts) else as_compact(X)
    P = window_matrix(windows, data.n_channels)
    if data.dense is not None:
        summed = np.asarray(data.dense, dtype=np.int64) @ P.toarray().astype(np.int64)
        return as_compact(summed)
    A = sp.csr_array((data.counts.astype(np.int64), data.indices.astype(np.int64), data.indptr),
                     shape=(data.n_pixels, data.n_channels))  # fmt: skip
    return as_compact(sp.csr_array(A @ P.astype(np.int64)))


def window_matrix(windows: np.ndarray, n_channels: int) -> sp.csr_array:
    """Channels × windows 0/1 matrix of a channel → window assignment (checked)."""
    w = np.asarray(windows)
    if w.shape != (n_channels,) or w.dtype.kind not in "iu" or (w.size and w.min() < 0):
        raise ValueError(
            f"windows must give a window index ≥ 0 for each of the {n_channels} channels"
        )
    n = int(w.max()) + 1 if w.size else 0
    return sp.csr_array((np.ones(n_channels), (np.arange(n_channels), w)),
                        shape=(n_channels, n))  # fmt: skip


def one_se_choice(ks: np.ndarray, scores: np.ndarray,
                  candidates: np.ndarray | None = None) -> dict[str, Any]:  # fmt: skip
    """The smallest k whose mean held-out score is within one standard error of the best.

    Parameters
    ----------
    ks : array of int, shape (K,)
        Numbers of phases, increasing.
    scores : array, shape (n_splits, K)
        Held-out deviance per count of every split and k (lower is better).
    candidates : array of bool, shape (K,), optional
        The ks that may be chosen (default: all; the first is always one): "best" is the
        candidate of lowest mean, the suggestion the smallest candidate within its SE.

    Returns
    -------
    dict
        ``k`` (the suggestion), ``best_k`` (lowest mean), ``mean`` and ``se`` (per k, the standard
        error of the mean over splits; 0 for one split) and ``se_diff`` (per k, the standard error
        of the paired difference to the best k over the same splits, the one the rule uses: the
        split noise common to all k cancels in it).
    """
    ks = np.asarray(ks)
    s = np.asarray(scores, dtype=np.float64)
    n = s.shape[0]
    mean = s.mean(axis=0)
    cand = np.ones(len(ks), dtype=bool)
    if candidates is not None:
        cand = np.array(candidates, dtype=bool)
        if cand.shape != (len(ks),):
            raise ValueError(f"candidates must have one entry per k, got shape {cand.shape}")
        cand[0] = True
    ib = int(np.argmin(np.where(cand, mean, np.inf)))
    if n > 1:
        se = s.std(axis=0, ddof=1) / np.sqrt(n)
        se_diff = (s - s[:, [ib]]).std(axis=0, ddof=1) / np.sqrt(n)
    else:
        se = np.zeros_like(mean)
        se_diff = np.zeros_like(mean)
    ok = cand & (mean - mean[ib] <= se_diff)
    choice = int(ks[int(np.argmax(ok))])
    return {"k": choice, "best_k": int(ks[ib]), "mean": mean, "se": se, "se_diff": se_diff}


#: binning of :func:`choose_bin`: the largest block size that keeps at least this many pixels
MIN_BINNED_PIXELS = 4096


def choose_bin(shape: tuple[int, ...] | None, min_pixels: int = MIN_BINNED_PIXELS) -> int:
    """The largest block size b whose binned grid keeps at least ``min_pixels`` pixels (1 when
    there is no grid or the map is small)."""
    if shape is None:
        return 1
    b = 1
    while True:
        nb = b + 1
        n = (shape[0] // nb) * (shape[1] // nb) if len(shape) == 2 else shape[0] // (nb * nb)
        if n < min_pixels:
            return b
        b = nb


def heldout_curve(
    X: np.ndarray,
    fit,
    ks,
    *,
    n_splits: int = 3,
    random_state: Any = None,
    progress: bool = False,
    desc: str = "n_phases",
    windows: np.ndarray | None = None,
) -> np.ndarray:
    """Held-out deviance per count of every split and number of phases.

    For each split, the counts are thinned in two halves A and B (:func:`split_counts`); for
    every k, ``fit(k, A)`` returns ``(components, H)`` (k × channels, k × pixels) fitted on A,
    and B is scored under that model (:func:`poisson_deviance`): both halves have the same
    expected counts.

    Parameters
    ----------
    X : ndarray, shape (pixels, channels)
        Integer counts.
    fit : callable
        ``fit(k, counts) -> (components, H)``.
    ks : sequence of int
        Numbers of phases to score.
    n_splits : int
        Independent splits (for the error bar).
    random_state : None, int or Generator
        Seed of the splits.
    progress : bool
        tqdm progress bar over the ``n_splits × len(ks)`` fits.
    windows : array of int, shape (channels,), optional
        Score the held-out counts summed over these energy windows (:func:`window_sums`;
        the fitted spectra summed alike) instead of channel by channel.

    Returns
    -------
    ndarray, shape (n_splits, len(ks))
    """
    from tqdm.auto import tqdm

    ks = [int(k) for k in ks]
    rng = np.random.default_rng(random_state)
    if windows is not None:
        n_ch = X.n_channels if isinstance(X, CompactCounts) else np.shape(X)[1]
        P = window_matrix(windows, n_ch).toarray()
    out = np.empty((int(n_splits), len(ks)))
    bar = tqdm(total=int(n_splits) * len(ks), desc=desc, disable=not progress)
    try:
        for s in range(int(n_splits)):
            A, B = split_counts(X, rng)
            B = as_compact(B) if windows is None else window_sums(B, windows)
            for j, k in enumerate(ks):
                components, H = fit(k, A)
                if windows is not None:
                    components = np.asarray(components) @ P
                out[s, j] = poisson_deviance(B, components, H)
                bar.update(1)
    finally:
        bar.close()
    return out
