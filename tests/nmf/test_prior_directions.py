"""The direction the counts cannot see under the H simplex, and how each prior leans along it.

Contracting every abundance map towards the mean abundance m, H' = A H with
A = αI + (1 − α) m 1ᵀ (0 < α < 1), keeps H' on the simplex, and the spectra
D' = D A⁻¹ = (D − (1 − α) D m 1ᵀ) / α (every phase moved away from the mean spectrum by 1/α)
give the same model D' H' = D H: the Kullback-Leibler part of F cannot tell the two apart as
long as D' ≥ 0. Along this family the Laplacian part falls as α² (the contracted maps are
smoother), so λ > 0 pushes every spectrum outwards until one of its channels reaches zero, and
the log-sparsity part rises (small shares grow), so μ > 0 pushes the other way
(docs/validation.rst, "Which way the priors lean").
"""

from __future__ import annotations

import numpy as np

from esmpy_hs.nmf._laplacian import grid_adjacency
from esmpy_hs.nmf._objective import objective_dense

SHAPE = (12, 10)


def _problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    k, n = 3, 40
    D = rng.uniform(0.5, 2.0, size=(n, k))  # strictly positive spectra: room to move outwards
    H = rng.dirichlet(np.full(k, 0.3), size=SHAPE[0] * SHAPE[1]).T  # sparse-ish shares
    Y = rng.poisson(50 * D @ H).astype(float)
    return Y, D, H


def _contract(D, H, alpha):
    k = H.shape[0]
    m = H.mean(axis=1)
    A = alpha * np.eye(k) + (1 - alpha) * np.outer(m, np.ones(k))
    return D @ np.linalg.inv(A), A @ H


def test_the_contraction_leaves_the_model_and_the_simplex_unchanged():
    Y, D, H = _problem()
    D2, H2 = _contract(D, H, 0.9)
    np.testing.assert_allclose(D2 @ H2, D @ H, rtol=1e-12)
    np.testing.assert_allclose(H2.sum(axis=0), 1.0, rtol=1e-12)
    assert H2.min() >= 0 and D2.min() >= 0
    # the spectra moved away from their mean spectrum by 1/α
    Dm = D @ H.mean(axis=1)
    np.testing.assert_allclose(D2 - Dm[:, None], (D - Dm[:, None]) / 0.9, rtol=1e-10)
    Ys = Y / 50
    kl = objective_dense(Ys, D, H)
    np.testing.assert_allclose(objective_dense(Ys, D2, H2), kl, rtol=1e-12)


def test_the_laplacian_falls_as_alpha_squared_and_the_sparsity_prior_rises():
    Y, D, H = _problem(1)
    Ys = Y / 50
    adj = grid_adjacency(SHAPE)
    kl = objective_dense(Ys, D, H)
    lap = objective_dense(Ys, D, H, lam=1.0, adjacency=adj) - kl
    log_prior = objective_dense(Ys, D, H, mu=1.0, eps_reg=1e-3) - kl
    assert lap > 0
    for alpha in (0.95, 0.8, 0.6):
        D2, H2 = _contract(D, H, alpha)
        kl2 = objective_dense(Ys, D2, H2)
        np.testing.assert_allclose(kl2, kl, rtol=1e-12)
        lap2 = objective_dense(Ys, D2, H2, lam=1.0, adjacency=adj) - kl2
        np.testing.assert_allclose(lap2, alpha**2 * lap, rtol=1e-10)
        # contracting the maps raises the small shares: the log-sparsity prior opposes it
        assert objective_dense(Ys, D2, H2, mu=1.0, eps_reg=1e-3) - kl2 > log_prior
