"""The log-sparsity prior on each phase's share or on its counts (``sparsity_on``).

Both forms are a sum over pixels p and phases j (scaled units, H pixels × k)::

    "share":   Σ_pj μ_j log(h_pj + ε)
    "counts":  Σ_pj μ_j log(r_j h_pj + ε),   r_j = (1ᵀ D_j) / s̄,  D = G·W

with s̄ the map's mean pixel counts (scaled units): r_j is the number of counts of a pure pixel
of phase j over that of the mean pixel, so ``r_j h_pj`` is phase j's counts in pixel p over the
mean pixel's. Under the H simplex a phase can trade its share against the scale of its spectrum
(h → h/c, W_j → c·W_j, the model D·H unchanged); the share form rewards that trade by
−μ_j log c per pixel, the counts form is unchanged by it.

The counts form is handled like the share form:

- H step (W held, r fixed): ``log(r h + ε) = log r + log(h + ε/r)``, the share form with a
  per-phase ``ε_j = ε / r_j`` (:func:`phase_eps`) and the constant ``Σ_j μ_j log r_j`` per
  pixel (:func:`log_r_constant`), which the kernels' loss parts do not hold and the caller adds;
- W step (H held): the term is concave in r_j and r_j is linear in W_j, so its tangent at the
  current W majorises it: ``(Gᵀ1)_c · (μ_j / s̄) Σ_p h_pj / (r_j h_pj + ε)`` is added to the
  denominator of W's multiplicative update (:func:`w_tangent` gives the per-phase factor, added
  to ``H 1``); the update stays the exact minimiser of a majorant, so F cannot rise.

With ``"share"`` every ``ε_j`` is ε and nothing else changes (the same arithmetic as before).
"""

from __future__ import annotations

import numpy as np

#: the forms of the prior (``sparsity_on``)
FORMS = ("share", "counts")
#: floor of r_j (a phase whose spectrum holds no counts)
_TINY_R = 1e-300


def ratios(colsum: np.ndarray, mean_counts: float) -> np.ndarray:
    """r_j = ``colsum_j / mean_counts`` (float64, floored at a tiny positive value)."""
    return np.maximum(np.asarray(colsum, dtype=np.float64) / float(mean_counts), _TINY_R)


def phase_eps(form: str, eps_reg: float, colsum: np.ndarray, mean_counts: float) -> np.ndarray:
    """The per-phase ε of the H step's kernels (float64[k]): ε everywhere for ``"share"``,
    ``ε / r_j`` for ``"counts"``."""
    k = len(colsum)
    if form != "counts":
        return np.full(k, float(eps_reg))
    return float(eps_reg) / ratios(colsum, mean_counts)


def log_r_constant(mu: np.ndarray, colsum: np.ndarray, mean_counts: float) -> float:
    """``Σ_j μ_j log r_j``: the counts form's part per pixel that the kernels leave out."""
    return float(np.dot(np.asarray(mu, dtype=np.float64), np.log(ratios(colsum, mean_counts))))


def counts_prior(Ht: np.ndarray, mu: np.ndarray, eps_reg: float, colsum: np.ndarray,
                 mean_counts: float) -> float:  # fmt: skip
    """``Σ_pj μ_j log(r_j h_pj + ε)`` of H (pixels × k) evaluated densely (NumPy)."""
    r = ratios(colsum, mean_counts)
    H = np.asarray(Ht, dtype=np.float64)
    return float((np.log(H * r[None, :] + float(eps_reg)) @ np.asarray(mu, dtype=np.float64)).sum())


def w_tangent(Ht: np.ndarray, mu: np.ndarray, eps_reg: float, colsum: np.ndarray,
              mean_counts: float) -> np.ndarray:  # fmt: skip
    """The counts form's tangent in W, per phase (k,): ``(μ_j / s̄) Σ_p h_pj / (r_j h_pj + ε)``.

    Added to ``H 1`` in the W step's denominator ``(Gᵀ1) (H 1)ᵀ`` (the derivative of the term
    with respect to ``W_cj`` is ``(Gᵀ1)_cj`` times this), at the W whose column sums of D are
    ``colsum`` and the H the step holds.
    """
    r = ratios(colsum, mean_counts)
    H = np.asarray(Ht, dtype=np.float64)
    s = (H / (H * r[None, :] + float(eps_reg))).sum(axis=0)
    return np.asarray(mu, dtype=np.float64) / float(mean_counts) * s
