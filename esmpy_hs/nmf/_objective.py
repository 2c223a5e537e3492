"""The objective F(W, H) (scaled units).

    F = D_KL(Y' ‖ D H) + (λ/2) tr(H Δ Hᵀ) + Σ_kp μ_k log(H_kp + ε_reg),   D = G·W,  Y' = Y / scale

with ``D_KL(Y'‖M) = Σ Y' log(Y'/M) − Y' + M``; with the prior on the counts
(``sparsity_on="counts"``, :mod:`._prior`) its last term is ``Σ_kp μ_k log(r_k H_kp + ε_reg)``,
``r_k = (1ᵀ D)_k / s̄`` (s̄ the mean pixel counts, scaled units). The solver gets F from the
loss parts of the fused kernel pass (:func:`assemble`); :func:`objective_dense` is a plain NumPy
evaluation for tests and small problems.
"""

from __future__ import annotations

import numpy as np

from esmpy_hs.nmf._laplacian import laplacian_energy


def assemble(loss_parts: np.ndarray, total_scaled: float) -> float:
    """F from the summed loss parts of a kernel pass and ``Σ Y'``."""
    lp = np.asarray(loss_parts, dtype=np.float64)
    return float(lp[0] + lp[1] + lp[2] + lp[3] - total_scaled)


def objective_dense(
    Y: np.ndarray,
    D: np.ndarray,
    H: np.ndarray,
    *,
    lam: float = 0.0,
    mu=0.0,
    eps_reg: float = 1.0,
    adjacency: tuple[np.ndarray, np.ndarray] | None = None,
    inv_scale: float = 1.0,
    sparsity_on: str = "share",
    mean_counts: float | None = None,
    metric: np.ndarray | None = None,
) -> float:
    """F evaluated densely with NumPy (Y: channels × pixels, D: channels × k, H: k × pixels).

    ``sparsity_on="counts"``: the prior on the counts, with ``mean_counts`` s̄ (scaled units;
    None: the mean pixel counts of ``Y · inv_scale``). ``metric`` (k × k): the smoothing
    prior is ``(λ/2) Σ_edges (h_p − h_q)ᵀ M (h_p − h_q)`` with this M (the smoothing of the
    model's counts, :mod:`._model_smoothing`) instead of the Laplacian of the shares.
    """
    Ys = np.asarray(Y, dtype=np.float64) * inv_scale
    M = np.asarray(D, dtype=np.float64) @ np.asarray(H, dtype=np.float64)
    nz = Ys > 0
    kl = float(np.sum(Ys[nz] * np.log(Ys[nz] / np.maximum(M[nz], 1e-30))) - Ys.sum() + M.sum())
    mu = np.broadcast_to(np.asarray(mu, dtype=np.float64), (H.shape[0],))
    r = np.ones(H.shape[0])
    if sparsity_on == "counts":
        sbar = Ys.sum() / Ys.shape[1] if mean_counts is None else float(mean_counts)
        r = np.asarray(D, dtype=np.float64).sum(axis=0) / sbar
    reg = float(np.sum(mu[:, None] * np.log(r[:, None] * np.asarray(H, dtype=np.float64)
                                            + eps_reg)))  # fmt: skip
    if lam > 0:
        if adjacency is None:
            raise ValueError("λ > 0 needs the pixel graph (adjacency)")
        if metric is None:
            reg += 0.5 * lam * laplacian_energy(np.asarray(H).T, *adjacency)
        else:
            from esmpy_hs.nmf._laplacian import gram

            reg += 0.5 * lam * float(np.sum(np.asarray(metric) * gram(np.asarray(H).T,
                                                                      *adjacency)))  # fmt: skip
    return kl + reg
