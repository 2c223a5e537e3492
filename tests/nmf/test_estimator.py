"""The scikit-learn-style API of SmartNMF."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from esmpy_hs.nmf import SmartNMF

from .conftest import synthetic

SHAPE = (10, 12)


@pytest.fixture
def problem(rng):
    G, W, H = synthetic(rng, n=100, shape=SHAPE, k=3, n_peaks=8)
    X = rng.poisson(300 * (G @ W @ H).T)
    return G, W, H, X


def test_attributes_and_units(problem):
    G, _, _, X = problem
    est = SmartNMF(G, 3, shape_2d=SHAPE, mu=0.01, max_iter=200, progress=False)
    Hf = est.fit_transform(sp.csr_array(X))
    p, n = X.shape
    assert Hf.shape == (p, 3)
    assert est.H_.shape == (3, p) and est.W_.shape == (G.shape[1], 3)
    assert est.components_.shape == (3, n)
    np.testing.assert_allclose(G @ est.W_, est.components_.T, rtol=1e-12)
    np.testing.assert_allclose(est.H_.sum(axis=0), 1.0, atol=1e-9)
    # counts units: the model reproduces the data's totals
    model = Hf @ est.components_
    assert model.sum() == pytest.approx(X.sum(), rel=1e-3)
    assert np.abs(model - X).sum() / X.sum() < 0.5
    assert not hasattr(est, "mean_")
    assert est.stop_reason_ in ("converged", "max_iter")
    assert est.n_iter_ <= 200
    assert len(est.loss_history_) == len(est.loss_iterations_)
    # F of the returned fit: after the main loop H is refitted with the spectra held (at their
    # bound when a phase moved; F jumps there), which from the loop's last iterate only lowers F
    if np.any(est.final_shift_ > 0):
        assert np.isfinite(est.reconstruction_err_)
    else:
        assert est.reconstruction_err_ <= est.loss_history_[-1] * (1 + 1e-12)
    assert np.all(np.diff(est.loss_history_) <= 1e-10 * np.abs(est.loss_history_[1:]))


def test_get_set_params_roundtrip():
    est = SmartNMF(None, 3, lambda_L=0.5, mu=[0.1, 0.2, 0.3])
    params = est.get_params()
    assert params["n_components"] == 3 and params["lambda_L"] == 0.5
    assert params["simplex"] == "H" and params["init"] == "auto"
    est.set_params(max_iter=7, simplex="W")
    assert est.max_iter == 7 and est.simplex == "W"
    clone = SmartNMF(**est.get_params())
    assert clone.get_params()["max_iter"] == 7


def test_compacted_counts_give_the_array_s_fit(problem):
    """Counts the caller compacted (the signal layer does, to read them again for the model
    check) are the same source as the array: the same iterates to the last digit."""
    from esmpy_hs.nmf._data import as_compact

    G, _, _, X = problem
    kw = dict(shape_2d=SHAPE, max_iter=30, tol=0.0, progress=False)
    a = SmartNMF(G, 3, **kw).fit_transform(X)
    compact = as_compact(X)
    b = SmartNMF(G, 3, **kw).fit_transform(compact)
    assert np.array_equal(a, b)
    # non-integer counts compacted at another float type than the fit's are refused
    Xf = X + 0.5
    with pytest.raises(ValueError, match="compacted counts hold float32 values"):
        SmartNMF(G, 3, **kw).fit_transform(as_compact(Xf, float_dtype=np.float32))
    assert np.array_equal(SmartNMF(G, 3, **kw).fit_transform(as_compact(Xf)),
                          SmartNMF(G, 3, **kw).fit_transform(Xf))  # fmt: skip


def test_channels_first_and_sparse_give_same_result(problem):
    G, _, _, X = problem
    kw = dict(shape_2d=SHAPE, max_iter=30, tol=0.0, progress=False)
    a = SmartNMF(G, 3, **kw).fit_transform(X)
    b = SmartNMF(G, 3, channels_first=True, **kw).fit_transform(np.ascontiguousarray(X.T))
    c = SmartNMF(G, 3, channels_first=True, **kw).fit_transform(sp.csc_array(X.T))
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-12)


def test_auto_init_is_deterministic_and_good(problem):
    G, W, _, X = problem
    # the abundances of this problem are i.i.d. per pixel: no spatial prior (λ = 0)
    kw = dict(shape_2d=SHAPE, lambda_L=0.0, max_iter=300, progress=False)
    a = SmartNMF(G, 3, **kw).fit(X)
    b = SmartNMF(G, 3, **kw).fit(X)
    np.testing.assert_array_equal(a.W_, b.W_)
    D, Dt = a.components_.T, G @ W
    cos = (Dt / np.linalg.norm(Dt, axis=0)).T @ (D / np.linalg.norm(D, axis=0))
    ang = np.degrees(np.arccos(np.clip(cos.max(axis=1), -1, 1)))
    assert ang.max() < 5.0, ang


def test_3d_G_and_callback_replaces_G(problem):
    G, _, _, X = problem
    G3 = np.stack([G, G * 1.1, G * 0.9])
    calls = []

    def cb(est, it, W, H):
        calls.append((it, W.shape, H.shape))
        assert isinstance(est, SmartNMF)
        if it == 4:
            return np.stack([G, G, G])
        return None

    est = SmartNMF(G3, 3, shape_2d=SHAPE, max_iter=8, tol=0.0, callback=cb, callback_every=2,
                   progress=False, loss_every=1)  # fmt: skip
    est.fit(X)
    assert [c[0] for c in calls] == [2, 4, 6, 8]
    assert calls[0][1] == (G.shape[1], 3) and calls[0][2] == (3, X.shape[0])
    np.testing.assert_array_equal(est.G_, np.stack([G, G, G]))
    D = np.einsum("jnm,mj->nj", est.G_, est.W_)
    np.testing.assert_allclose(D, est.components_.T, rtol=1e-12)


def test_converges_while_callback_refreshes_G(problem):
    """A refresh of G every few iterations must not keep the convergence test from firing."""
    G, _, _, X = problem
    est = SmartNMF(G, 3, shape_2d=SHAPE, max_iter=2000, tol=1e-6, loss_every=5,
                   callback=lambda e, it, W, H: G.copy(), callback_every=5,
                   progress=False)  # fmt: skip
    est.fit(X)
    assert est.stop_reason_ == "converged"
    assert est.n_iter_ < 2000
    assert est.loss_iterations_[-1] == est.n_iter_


def test_callback_with_wrong_G_shape_raises(problem):
    G, _, _, X = problem
    est = SmartNMF(G, 3, max_iter=3, callback=lambda *a: G[:, :2], progress=False)
    with pytest.raises(ValueError, match="callback returned G of shape"):
        est.fit(X)


def test_keyboard_interrupt_keeps_last_iterate(problem):
    G, _, _, X = problem

    def cb(est, it, W, H):
        if it == 3:
            raise KeyboardInterrupt

    est = SmartNMF(G, 3, max_iter=50, tol=0.0, callback=cb, progress=False)
    H = est.fit_transform(X)
    assert est.stop_reason_ == "interrupted"
    assert est.n_iter_ == 3
    assert np.all(np.isfinite(H)) and np.all(np.isfinite(est.W_))


def test_transform_holds_W(problem):
    G, _, _, X = problem
    est = SmartNMF(G, 3, shape_2d=SHAPE, lambda_L=1.0, max_iter=100, progress=False).fit(X)
    W = est.W_.copy()
    H2 = est.transform(X)
    np.testing.assert_array_equal(est.W_, W)
    assert H2.shape == (X.shape[0], 3)
    np.testing.assert_allclose(H2.sum(axis=1), 1.0, atol=1e-9)
    # the fitted H is (close to) a fixed point of the H updates with W held
    assert np.abs(H2 - est.H_.T).max() < 0.05
    # a subset of pixels: no grid known → an explicit λ > 0 must be given a grid
    with pytest.raises(ValueError, match="grid"):
        est.transform(X[:7])
    est0 = SmartNMF(G, 3, lambda_L=0.0, max_iter=50, progress=False).fit(X)
    assert est0.transform(X[:7]).shape == (7, 3)


def test_float32_and_init_forms(problem):
    G, _, _, X = problem
    Xs = sp.csr_array(X)
    a = SmartNMF(G, 3, dtype="float32", shape_2d=SHAPE, max_iter=50, progress=False).fit(Xs)
    b = SmartNMF(G, 3, dtype="float64", shape_2d=SHAPE, max_iter=50, progress=False).fit(Xs)
    np.testing.assert_allclose(a.components_, b.components_, rtol=2e-3, atol=1e-3)
    np.testing.assert_allclose(a.H_.sum(axis=0), 1.0, atol=1e-5)
    W0, H0 = b.W_, b.H_
    c = SmartNMF(G, 3, init={"W": W0, "H": H0}, max_iter=0, progress=False).fit(X)
    np.testing.assert_allclose(c.W_, W0, rtol=1e-12)
    d = SmartNMF(G, 3, init="random", random_state=0, max_iter=5, progress=False).fit(X)
    assert d.n_iter_ == 5


def test_progress_bar_runs(problem, capsys):
    G, _, _, X = problem
    SmartNMF(G, 3, max_iter=3, progress=True).fit(X)
