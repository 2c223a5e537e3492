"""Compiled per-label sums of a map, dense or compacted by pixel (the model check's pass over
the data, issues 13 and 18).

One read of the map, in its own dtype (no float64 copy of row blocks): every pixel's row is
added to the sums of its label in each labelling. Integer counts are summed exactly (float64
holds every integer below 2**53).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _add_rows(X, rows, out):  # pragma: no cover - compiled
    """``out[rows[j, p]] += X[p]`` for every pixel p and labelling j (rows: the labels with
    their labelling's offset); zeros skipped (at a few counts per pixel almost every entry)."""
    n, m = X.shape
    nl = rows.shape[0]
    for p in range(n):
        for c in range(m):
            v = X[p, c]
            if v != 0:
                for j in range(nl):
                    out[rows[j, p], c] += v


def label_sums(X: np.ndarray, rows: np.ndarray, total: int) -> np.ndarray:
    """(total, channels) float64: the rows of ``X`` (pixels × channels, any real dtype, any
    strides) summed by the labels ``rows`` (labellings × pixels, values in ``0 … total − 1``)."""
    out = np.zeros((total, X.shape[1]))
    if X.dtype == np.bool_:
        X = X.view(np.uint8)
    _add_rows(X, np.ascontiguousarray(rows, dtype=np.int64), out)
    return out


@njit(cache=True)
def _add_nonzeros(indptr, indices, counts, rows, out):  # pragma: no cover - compiled
    """:func:`_add_rows` on counts stored by pixel (``indptr``, ``indices``, ``counts``): the
    same additions in the same order (pixel by pixel, channels ascending, zeros absent)."""
    n = indptr.shape[0] - 1
    nl = rows.shape[0]
    for p in range(n):
        for t in range(indptr[p], indptr[p + 1]):
            c = indices[t]
            v = counts[t]
            for j in range(nl):
                out[rows[j, p], c] += v


def label_sums_compact(indptr: np.ndarray, indices: np.ndarray, counts: np.ndarray,
                       rows: np.ndarray, total: int, n_channels: int) -> np.ndarray:  # fmt: skip
    """:func:`label_sums` of counts stored by pixel (``indptr`` (pixels + 1,), ``indices`` and
    ``counts`` of the nonzeros, channels ascending within a pixel): one pass over the nonzeros
    instead of the dense map; the same sums to the last digit."""
    out = np.zeros((total, n_channels))
    _add_nonzeros(indptr, indices, counts, np.ascontiguousarray(rows, dtype=np.int64), out)
    return out
