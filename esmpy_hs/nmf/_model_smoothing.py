"""Smoothing the model's counts instead of the abundance shares (``smoothing="model"``).

The default smoothing prior (``smoothing="shares"``) is the Laplacian of the abundance maps,

    (λ/2) Σ_edges ‖h_p − h_q‖²,

summed over the edges p–q of the pixel grid. It is not invariant under the remixing of the
phases that the counts cannot see (abundances contracted towards their mean, spectra moved out
by as much): along that family it falls as the square of the contraction, so it pushes the
phase spectra outwards on maps where no pixel is pure (``tests/nmf/test_prior_directions.py``;
docs/validation.rst, "Which way the priors lean"). This module gives the form

    (λ/2) Σ_edges (h_p − h_q)ᵀ M (h_p − h_q),   M = Dᵀ Λ D / c,

with D = G·W the phase spectra (channels × k, scaled units), Λ = diag(1/ȳ) the inverse of the
map's mean spectrum ȳ (a fixed weight per channel: the inverse Poisson variance of a channel's
counts, ȳ floored at :data:`FLOOR` of its mean) and c fixed at the start of the fit so that the
prior there has the value of the shares' Laplacian (:meth:`ModelSmoothing.at_start`: λ and its
dose formula keep their weight against the counts; M does not change when the data and D are
scaled together). It is the squared difference of the expected counts
of neighbouring pixels, ``(D h_p − D h_q)ᵀ Λ (D h_p − D h_q) / c``: the same for every
remixing ``(D A⁻¹, A H)``, so it smooths what the counts show and leans nowhere.

**H step** (in the kernels' pass). M ⪯ ρ I with ρ the largest eigenvalue of M, so the
kernels' Laplacian surrogate with weight λρ majorises the term, once the part that the form
``λρ ‖·‖²`` leaves out is added to every pixel's linear coefficient (:func:`h_offset`)::

    e_p = −λ (ρ I − M) (L H)_p,   (L H)_p = deg_p h_p − Σ_{q∈N(p)} h_q.

The same offset serves both updates of the kernels: every pixel at once (the Laplacian
majorised per edge, L ⪯ 2 Deg) and the red-black sweep (neighbours held; xᵀMx majorised at h by
its tangent plus ρ‖x − h‖²), with (L H)_p read from the H the pass reads. Both surrogates are
exact minimisations of majorants, so F cannot rise.

**W step** (:func:`w_terms`). With S = Hᵀ L H (k × k, the new H) and P_jl = G_jᵀ Λ G_l / c ≥ 0,
the term is ½ λ wᵀ A w with A = Σ_jl S_jl ⊗ P_jl. Split S = S⁺ − S⁻ into its positive and
negative entries, A = A⁺ − A⁻ with A± ≥ 0 entry by entry. The part of A⁺ is majorised entry by
entry, ``½ wᵀA⁺w ≤ ½ Σ_i (A⁺ w̃)_i w_i² / w̃_i`` (diag(A⁺w̃ / w̃) − A⁺ ⪰ 0 for A⁺ ≥ 0); the part
of A⁻, which need not be concave, with ``w_i w_j ≥ w̃_i w̃_j (1 + log(w_i w_j / (w̃_i w̃_j)))``
(z ≥ 1 + log z), ``−½ wᵀA⁻w ≤ const − Σ_i (A⁻ w̃)_i w̃_i log w_i``. Both are equalities at w̃.
Added to the Kullback-Leibler surrogate of the W step, each entry's surrogate is
``−(num + λ (A⁻w̃) w̃) log w + den · w + ½ λ (A⁺w̃) / w̃ · w²``, minimised in closed form
(:func:`._updates.update_W`). Rows under the W simplex are not supported (one multiplier per
phase with a quadratic per entry: not built).

Both steps need G to be non-negative, which every fit checks. The fit's objective F holds
this term in place of the Laplacian (:func:`loss`), so the convergence test, the momentum's
checks and ``score`` read the objective the updates decrease.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from esmpy_hs.nmf._laplacian import edge_products, laplacian_rows
from esmpy_hs.nmf._updates import compute_D, gt_times

#: floor of ȳ, as a share of its mean over the channels (a channel that never counts gets the
#: weight of a channel at this share of the mean, not an infinite one)
FLOOR = 1e-3


@dataclass(frozen=True)
class ModelSmoothing:
    """The fixed parts of M = Dᵀ Λ D / c: ``weights`` Λ (channels, float64) and ``c`` (None
    until :meth:`at_start` fixes it)."""

    weights: np.ndarray
    c: float | None = None

    @classmethod
    def from_channel_sums(cls, channel_sums: np.ndarray, n_pixels: int,
                          scale: float) -> ModelSmoothing:  # fmt: skip
        """Λ of a map from its counts per channel (unscaled), its number of pixels and the
        fit's scale (c is fixed by :meth:`at_start`)."""
        ybar = np.asarray(channel_sums, dtype=np.float64) / (n_pixels * scale)
        if not np.all(np.isfinite(ybar)) or ybar.sum() <= 0:
            raise ValueError("the smoothing of the model's counts needs a map with counts")
        floor = FLOOR * ybar.mean()
        return cls(1.0 / np.maximum(ybar, floor))

    def at_start(self, D: np.ndarray, S0: np.ndarray) -> ModelSmoothing:
        """The same Λ with c fixed at the start: the start's spectra D (channels × k, scaled
        units) and ``S0 = H0ᵀ L H0`` of its abundances (:func:`._laplacian.gram`, k × k).

        c = tr(Dᵀ Λ D S0) / tr(S0): the prior then has the value of the shares' Laplacian at
        the start, so λ (and its dose formula) weighs it against the counts as it weighs the
        Laplacian. A start without differences between neighbours (tr S0 = 0) takes the mean
        diagonal of Dᵀ Λ D instead.
        """
        D = np.asarray(D, dtype=np.float64)
        raw = D.T @ (self.weights[:, None] * D)
        S0 = np.asarray(S0, dtype=np.float64)
        t = float(np.trace(S0))
        c = float(np.sum(raw * S0) / t) if t > 0 else float(np.mean(np.diag(raw)))
        if not (np.isfinite(c) and c > 0):
            raise ValueError("the start's phase spectra are zero: no scale for the smoothing")
        return ModelSmoothing(self.weights, c)

    def metric(self, D: np.ndarray) -> np.ndarray:
        """M = Dᵀ Λ D / c (k × k, float64) of phase spectra D (channels × k, scaled units)."""
        if self.c is None:
            raise RuntimeError("the scale c of the model's smoothing is fixed at the start")
        D = np.asarray(D, dtype=np.float64)
        M = D.T @ (self.weights[:, None] * D) / self.c
        return 0.5 * (M + M.T)


def kernel_weight(lam: float, M: np.ndarray) -> tuple[float, float]:
    """(λρ, ρ): the weight of the kernels' Laplacian form and ρ, the largest eigenvalue of M."""
    rho = float(max(np.linalg.eigvalsh(M)[-1], 0.0))
    return lam * rho, rho


def h_offset(lam: float, M: np.ndarray, rho: float, Ht: np.ndarray, adj_indptr: np.ndarray,
             adj_indices: np.ndarray, start: int, stop: int) -> np.ndarray:  # fmt: skip
    """e_p = −λ (ρ I − M)(L H)_p of pixels ``start … stop − 1`` ((stop − start) × k, float64,
    C-contiguous): the kernels' ``off`` (see the module docstring)."""
    LH = laplacian_rows(Ht, adj_indptr, adj_indices, start, stop)
    k = M.shape[0]
    return np.ascontiguousarray(-lam * (LH @ (rho * np.eye(k) - M)))


def loss(lam: float, M: np.ndarray, Ht: np.ndarray, adj_indptr: np.ndarray,
         adj_indices: np.ndarray, start: int, stop: int, counted: np.ndarray | None,
         factor: float) -> float:  # fmt: skip
    """``factor · λ Σ_{p counted} Σ_{q∈N(p)} (h_p − h_q)ᵀ M (h_p − h_q)`` over the pixels
    ``start … stop − 1`` (those of ``counted``, a mask over them, when given).

    ``factor`` 1/4 counts every edge half from each end, 1/2 every edge from its colour-0 end
    (the first half of a red-black sweep), as the kernels' Laplacian loss does: summed over the
    chunks (and the halves) it is (λ/2) Σ_edges dᵀ M d.
    """
    E = edge_products(Ht, adj_indptr, adj_indices, start, stop, counted)
    return float(factor * lam * np.sum(np.asarray(M) * E))


def w_terms(sm: ModelSmoothing, lam: float, G: np.ndarray | None, W: np.ndarray,
            S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(λ A⁺w̃, λ A⁻w̃) (rows of W × k, float64) of the W step's surrogate at W (see the module
    docstring): ``A± w̃ = Gᵀ Λ (D S±) / c`` per phase, D = G·W."""
    D = compute_D(G, W, np.float64)
    pos = np.maximum(S, 0.0)
    neg = np.maximum(-S, 0.0)
    wl = (lam / sm.c) * sm.weights[:, None]
    return gt_times(G, wl * (D @ pos)), gt_times(G, wl * (D @ neg))
