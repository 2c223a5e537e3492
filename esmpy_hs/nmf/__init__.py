"""HyperSpy-free solver of the physics-guided Poisson NMF Y ≈ G·W·H.

Public: :class:`SmartNMF` (scikit-learn-style estimator).

Private modules (one responsibility each; a chunked/lazy driver reuses them):

- :mod:`._data`: validation and compact by-pixel storage of the counts;
- :mod:`._kernels`: the fused numba pass over the counts (H step + partial sums + loss);
- :mod:`._simplex`: exact solution of the per-column surrogate with a sum constraint;
- :mod:`._updates`: D = G·W and the W step;
- :mod:`._laplacian`: the pixel graph;
- :mod:`._objective`: the objective;
- :mod:`._init`: starting points;
- :mod:`._solver`: the iteration loop and the per-chunk pass :func:`._solver.h_pass`.

Nothing here imports HyperSpy or :mod:`esmpy_hs.physics`.
"""

from esmpy_hs.nmf.estimator import SmartNMF

__all__ = ["SmartNMF"]
