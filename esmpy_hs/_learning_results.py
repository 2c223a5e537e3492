"""Read a signal's decomposition results as NumPy arrays (shared by plotting and metrics)."""

from __future__ import annotations

import numpy as np


def as_numpy(x) -> np.ndarray:
    """A NumPy array from a NumPy or dask array (computing the latter)."""
    if hasattr(x, "compute"):
        x = x.compute()
    return np.asarray(x)


def decomposition_arrays(signal) -> tuple[np.ndarray, np.ndarray]:
    """``(factors, loadings)`` of ``signal.learning_results`` as float64 arrays.

    factors are channels × k, loadings pixels × k.

    Raises
    ------
    ValueError
        If the signal has no decomposition results.
    """
    lr = getattr(signal, "learning_results", None)
    factors = getattr(lr, "factors", None)
    loadings = getattr(lr, "loadings", None)
    if factors is None or loadings is None:
        raise ValueError(
            "the signal has no decomposition results (learning_results.factors/loadings): run "
            "s.decomposition(algorithm='smart_nmf', output_dimension=k) first"
        )
    return as_numpy(factors).astype(np.float64), as_numpy(loadings).astype(np.float64)
