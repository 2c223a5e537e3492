"""Compiled per-label sums of a dense map (the model check's pass over the data, issue 18).

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
