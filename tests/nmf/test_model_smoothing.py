"""The smoothing of the model's counts (``smoothing="model"``, :mod:`.nmf._model_smoothing`).

What is checked:

- the prior does not change under the remixing the counts cannot see (the contraction of
  ``test_prior_directions``), where the Laplacian of the shares falls as α²;
- the F the fit records is the dense objective with this prior (the kernels' loss parts and the
  Python part added in ``h_pass``), for every pixel at once and for red-black sweeps;
- every update decreases F (the H step's offset majoriser and the W step's closed form), with
  and without the W step, for 2-D and 3-D G, with fixed W entries;
- the parameter is checked before any data is read.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from esmpy_hs.nmf._laplacian import gram, grid_adjacency
from esmpy_hs.nmf._model_smoothing import ModelSmoothing, loss
from esmpy_hs.nmf._objective import objective_dense
from esmpy_hs.nmf.estimator import SmartNMF

SHAPE = (12, 10)


def _map(seed: int = 0, k: int = 3, n: int = 40, dose: float = 30.0):
    """A map where no pixel is pure: smooth abundances on a floor of 0.15, spectra that
    overlap."""
    rng = np.random.default_rng(seed)
    G = rng.uniform(0.0, 1.0, size=(n, 6)) ** 3
    W = rng.uniform(0.1, 1.0, size=(6, k))
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    maps = [np.ones(SHAPE)] + [
        np.exp(-((yy - rng.uniform(2, 10)) ** 2 + (xx - rng.uniform(2, 8)) ** 2) / 12.0)
        for _ in range(k - 1)
    ]
    H = 0.15 + np.stack(maps).reshape(k, -1)
    H /= H.sum(axis=0)
    Y = rng.poisson(dose * (G @ W) @ H / (G @ W).sum(axis=0).mean())
    return Y.T.astype(np.uint16), G, W, H


def test_the_prior_does_not_change_under_the_remixing_the_counts_cannot_see():
    _, G, W, H = _map(1)
    D = G @ W
    adj = grid_adjacency(SHAPE)
    sm = ModelSmoothing(weights=1.0 / (D @ H).mean(axis=1), c=3.0)
    k = H.shape[0]
    m = H.mean(axis=1)
    for alpha in (0.9, 0.7):
        A = alpha * np.eye(k) + (1 - alpha) * np.outer(m, np.ones(k))
        D2, H2 = D @ np.linalg.inv(A), A @ H
        assert D2.min() >= 0  # a remixing the counts allow
        before = gram(H.T, *adj)
        after = gram(H2.T, *adj)
        # the shares' Laplacian falls as α² ...
        np.testing.assert_allclose(np.trace(after), alpha**2 * np.trace(before), rtol=1e-10)
        # ... the model's does not move
        f0 = loss(1.0, sm.metric(D), H.T, *adj, 0, H.shape[1], None, 0.25)
        f1 = loss(1.0, sm.metric(D2), H2.T, *adj, 0, H.shape[1], None, 0.25)
        np.testing.assert_allclose(f1, f0, rtol=1e-10)
        assert f0 > 0


@pytest.mark.parametrize("lam", [0.5, 20.0])  # 20: red-black sweeps (RED_BLACK_LAMBDA = 10)
def test_the_recorded_objective_is_the_dense_one_and_every_update_lowers_it(lam):
    X, G, _, _ = _map(2)
    est = SmartNMF(n_components=3, G=G, shape_2d=SHAPE, smoothing="model", lambda_L=lam,
                   mu=0.01, max_iter=60, tol=0.0, loss_every=1, momentum=0.0, init="random",
                   random_state=0, progress=False)  # fmt: skip
    Hf = est.fit_transform(X)
    assert (est.plan_.hp.colour is not None) == (lam >= 10)
    F = np.asarray(est.loss_history_)
    assert len(F) > 50
    # every recorded step goes down (to rounding: 1e-12 of F)
    assert np.all(np.diff(F) <= 1e-12 * np.abs(F[1:])), np.diff(F).max()
    assert F[0] - F[-1] > 1e-3 * abs(F[-1])
    # the last F is the dense objective of the result with the model's smoothing
    scale = est.scale_
    D = est.components_.T / scale
    sm = est.plan_.hp.model
    ref = objective_dense(X.T, D, Hf.T, lam=lam, mu=0.01, eps_reg=est.epsilon_reg,
                          adjacency=grid_adjacency(SHAPE), inv_scale=1.0 / scale,
                          metric=sm.metric(D))  # fmt: skip
    np.testing.assert_allclose(F[-1], ref, rtol=1e-9)
    np.testing.assert_allclose(-est.score(X), ref, rtol=1e-9)


def test_a_3d_g_fixed_entries_and_the_default_loop_keep_the_descent():
    X, G, _, _ = _map(3)
    G3 = np.stack([G, 0.9 * G, 1.1 * G])  # one G per phase
    fixed = np.full((6, 3), np.nan)
    fixed[0, 0] = 0.2  # a fixed W entry (in the units of the fit)
    est = SmartNMF(n_components=3, G=G3, shape_2d=SHAPE, smoothing="model", lambda_L=2.0,
                   mu=0.0, max_iter=80, tol=0.0, loss_every=1, momentum=0.0, init="random",
                   fixed_W=fixed, random_state=1, progress=False)  # fmt: skip
    est.fit(X)
    F = np.asarray(est.loss_history_)
    assert np.all(np.diff(F) <= 1e-12 * np.abs(F[1:])), np.diff(F).max()
    assert est.W_[0, 0] == pytest.approx(0.2)
    # the default loop (momentum, the movement rule, the final move) runs to the end
    est = SmartNMF(n_components=3, G=G, shape_2d=SHAPE, smoothing="model", random_state=0,
                   progress=False)  # fmt: skip
    H = est.fit_transform(X)
    assert np.all(np.isfinite(H)) and np.allclose(H.sum(axis=1), 1.0)
    assert est.stop_reason_ in ("converged", "max_iter")


def test_without_lambda_the_two_forms_are_the_same_fit():
    X, G, _, _ = _map(4)
    kw = dict(n_components=3, G=G, shape_2d=SHAPE, lambda_L=0.0, max_iter=40, tol=0.0,
              init="random", random_state=0, progress=False)  # fmt: skip
    a = SmartNMF(smoothing="shares", **kw).fit_transform(X)
    b = SmartNMF(smoothing="model", **kw).fit_transform(X)
    np.testing.assert_array_equal(a, b)


def test_the_parameter_is_checked_before_the_data():
    X, G, _, _ = _map(5)
    with pytest.raises(ValueError, match="smoothing must be 'shares' or 'model'"):
        SmartNMF(n_components=3, smoothing="counts", progress=False).fit(X)
    with pytest.raises(ValueError, match="simplex='H' or None"):
        SmartNMF(n_components=3, G=G, simplex="W", smoothing="model", progress=False).fit(X)
    with pytest.raises(ValueError, match="in-memory fits"):
        SmartNMF(n_components=3, G=G, shape_2d=SHAPE, smoothing="model",
                 progress=False).fit(da.from_array(X, chunks=(40, 40)))  # fmt: skip


def test_the_scale_is_fixed_at_the_start_and_the_metric_is_dimensionless():
    """At the start the prior has the value of the shares' Laplacian (tr(M S0) = tr(S0)); M
    does not change when the counts and the spectra are scaled together; the fit keeps the c
    of its start."""
    rng = np.random.default_rng(6)
    k, n = 3, 30
    D = rng.uniform(0.0, 1.0, size=(n, k))
    H0 = rng.dirichlet(np.ones(k), size=SHAPE[0] * SHAPE[1])
    S0 = gram(H0, *grid_adjacency(SHAPE))
    ybar = D @ np.full(k, 1.0 / k)
    sm = ModelSmoothing.from_channel_sums(ybar * 50 * 7.0, 50, 7.0).at_start(D, S0)
    np.testing.assert_allclose(np.sum(sm.metric(D) * S0), np.trace(S0), rtol=1e-12)
    sm4 = ModelSmoothing.from_channel_sums(ybar * 50 * 7.0 * 4, 50, 7.0).at_start(4 * D, S0)
    np.testing.assert_allclose(sm4.metric(4 * D), sm.metric(D), rtol=1e-12)
    # a start without neighbour differences: M's mean diagonal is 1
    flat = ModelSmoothing.from_channel_sums(ybar, 1, 1.0).at_start(D, np.zeros((k, k)))
    np.testing.assert_allclose(np.trace(flat.metric(D)), k, rtol=1e-12)
    with pytest.raises(RuntimeError, match="fixed at the start"):
        ModelSmoothing.from_channel_sums(ybar, 1, 1.0).metric(D)
    X, G, _, _ = _map(6)
    est = SmartNMF(n_components=3, G=G, shape_2d=SHAPE, smoothing="model", init="random",
                   max_iter=5, random_state=0, progress=False).fit(X)  # fmt: skip
    assert est.plan_.hp.model.c > 0


def test_the_w_step_alone_never_raises_the_smoothing():
    """The W step's majoriser of ½ λ wᵀ A w (A = S ⊗ P) holds for any S = Hᵀ L H, whose
    negative entries make a part that is not concave: with the Kullback-Leibler part switched
    off (R Hᵀ = 0, H 1 = 0) the step can only lower the smoothing term. 300 random draws, 2-D
    and 3-D G."""
    from esmpy_hs.nmf._model_smoothing import w_terms
    from esmpy_hs.nmf._updates import compute_D, g_colsums, update_W

    rng = np.random.default_rng(7)
    k, n, m = 3, 25, 6
    adj = grid_adjacency((6, 5))
    for draw in range(300):
        G = rng.uniform(0, 1, (n, m)) ** 2
        if draw % 2:
            G = np.stack([G * rng.uniform(0.5, 1.5, (1, m)) for _ in range(k)])
        W = rng.uniform(0.05, 1.0, (m, k))
        H = rng.dirichlet(np.full(k, 0.7), 30)
        S = gram(H, *adj)
        sm = ModelSmoothing(weights=rng.uniform(0.5, 2.0, n), c=1.0)
        lam = 10.0 ** rng.uniform(-1, 1)

        W2 = update_W(W, G, np.zeros((n, k)), np.zeros(k), Gt1=g_colsums(G, m, k),
                      simplex=False, simplex_rows=np.zeros(m, bool), fixed=None, eps=1e-12,
                      smooth=w_terms(sm, lam, G, W, S))  # fmt: skip
        before, after = (0.5 * lam * float(np.sum(sm.metric(compute_D(G, X)) * S))
                         for X in (W, W2))  # fmt: skip
        assert after <= before * (1 + 1e-12), draw
        assert not np.allclose(W2, W)  # the step moved
