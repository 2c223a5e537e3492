"""HyperSpy-free solver of the physics-guided Poisson NMF Y ≈ G·W·H.

Public: :class:`SmartNMF` (scikit-learn-style estimator) and :func:`fit_chunked` (the same fit
on a dask array, chunk by chunk, locally or on a ``dask.distributed`` cluster; also reached by
``SmartNMF.fit_transform(dask_array)``).

Private modules (one responsibility each; a chunked/lazy driver reuses them):

- :mod:`._data`: validation and compact by-pixel storage of the counts;
- :mod:`._kernels`: the fused numba pass over the counts (H step + partial sums + loss);
- :mod:`._simplex`: exact solution of the per-column surrogate with a sum constraint;
- :mod:`._updates`: D = G·W and the W step;
- :mod:`._laplacian`: the pixel graph;
- :mod:`._objective`: the objective;
- :mod:`._init`: starting points;
- :mod:`._solver`: the iteration loop and the per-chunk pass :func:`._solver.h_pass`;
- :mod:`._chunked`: the chunked driver over a dask array (imported on first use).

Nothing here imports HyperSpy or :mod:`esmpy_hs.physics`.
"""

from esmpy_hs.nmf.estimator import SmartNMF

__all__ = ["SmartNMF", "fit_chunked"]


def __getattr__(name: str):
    # fit_chunked imports dask: load it on first use only
    if name == "fit_chunked":
        from esmpy_hs.nmf._chunked import fit_chunked

        return fit_chunked
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
