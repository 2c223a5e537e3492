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
- :mod:`._plan`: the parameters, checked once, resolved into a plan;
- :mod:`._solver`: the iteration loop and the per-chunk pass :func:`._solver.h_pass`;
- :mod:`._fit`: the one fit path (start, warm-up, updates) over a data source;
- :mod:`._chunked`: the data source of a dask array, chunk by chunk (imported for dask input
  only).

Nothing here imports HyperSpy or :mod:`esmpy_hs.physics`.
"""

from esmpy_hs.nmf._data import is_dask_array
from esmpy_hs.nmf.estimator import SmartNMF

__all__ = ["SmartNMF", "fit_chunked"]


def fit_chunked(X, G=None, n_components: int = 2, *, persist: str = "auto", client=None,
                W=None, H=None, **params) -> SmartNMF:  # fmt: skip
    """Fit :class:`~esmpy_hs.nmf.SmartNMF` on a dask array without loading it.

    Parameters
    ----------
    X : dask.array.Array
        Counts, pixels × channels (``channels_first=True``: channels × pixels). Blocks are
        rechunked to hold whole spectra; blocks larger than
        :data:`esmpy_hs.nmf._chunked.MAX_CHUNK_BYTES` are split.
    G, n_components, **params
        As for :class:`~esmpy_hs.nmf.SmartNMF`.
    persist : {"auto", "memory", "stream"}
        Where the compact chunks live between iterations (see :mod:`esmpy_hs.nmf._chunked`).
    client : dask.distributed.Client, None or False
        None: the default client when one is open, else dask's local scheduler. False: never a
        distributed client.
    W, H : arrays or None
        Explicit start (units of ``W_``/``H_``), overriding ``init``.

    Returns
    -------
    SmartNMF
        The fitted estimator: ``H_`` (k × pixels, NumPy), ``W_``, ``components_``,
        ``persist_``, …
    """
    if not is_dask_array(X):
        raise TypeError(f"fit_chunked needs a dask array, got {type(X).__name__}")
    est = SmartNMF(G, n_components, **params)
    est.fit_transform(X, W=W, H=H, persist=persist, client=client)
    return est
