"""Agreement with NumPy references: KL multiplicative updates, objective, noiseless recovery."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment

from esmpy_hs.nmf import SmartNMF
from esmpy_hs.nmf._data import as_compact
from esmpy_hs.nmf._laplacian import grid_adjacency
from esmpy_hs.nmf._objective import objective_dense
from esmpy_hs.nmf._solver import HParams, combine, h_pass
from esmpy_hs.nmf._updates import compute_D

from .conftest import synthetic


def kl_mu_reference(Y, W, H, n_iter):
    """Lee & Seung KL multiplicative updates (H then W), Y ≈ W H, dense NumPy."""
    W = W.copy()
    H = H.copy()
    for _ in range(n_iter):
        H = H * (W.T @ (Y / (W @ H))) / W.sum(axis=0)[:, None]
        W = W * ((Y / (W @ H)) @ H.T) / H.sum(axis=1)[None, :]
    return W, H


@pytest.mark.parametrize("sparse", [False, True])
def test_identity_G_matches_numpy_kl_mu(rng, sparse):
    n, p, k = 40, 60, 3
    Y = rng.poisson(5 * rng.random((n, k)) @ rng.random((k, p))).astype(float) + 1.0
    W0 = rng.random((n, k)) + 0.1
    H0 = rng.random((k, p)) + 0.1
    Wr, Hr = kl_mu_reference(Y, W0, H0, 50)
    X = sp.csr_array(Y.T) if sparse else Y.T
    # the plain updates (momentum=0): the extrapolation is not Lee & Seung's
    est = SmartNMF(None, k, simplex=None, lambda_L=0.0, mu=0.0, max_iter=50, tol=0.0,
                   momentum=0.0, progress=False)  # fmt: skip
    Ht = est.fit_transform(X, W=W0, H=H0)
    assert est.n_iter_ == 50
    np.testing.assert_allclose(est.W_, Wr, rtol=1e-8)
    np.testing.assert_allclose(Ht.T, Hr, rtol=1e-8)
    np.testing.assert_allclose(est.components_, Wr.T, rtol=1e-8)


def test_kernel_loss_equals_dense_objective(rng):
    G, W, H = synthetic(rng, n=50, shape=(6, 7), k=3, n_peaks=6)
    Y = rng.poisson(30 * G @ W @ H)
    data = as_compact(Y.T)
    adj = grid_adjacency((6, 7))
    mu = np.array([0.1, 0.0, 0.3])
    hp = HParams(0.5, data.total * 0.5, mu, 0.2, 0.8, *adj, True, None, 1e-10, 1e-13)
    D = compute_D(G, W)
    Ht = np.ascontiguousarray(H.T)
    res = h_pass(data.chunk(0, data.n_pixels), D, D.sum(0), Ht, 0, np.empty_like(Ht), hp,
                 want_loss=True)  # fmt: skip
    F = res.loss.sum() - hp.total_scaled
    ref = objective_dense(Y, D, H, lam=0.8, mu=mu, eps_reg=0.2, adjacency=adj, inv_scale=0.5)
    assert F == pytest.approx(ref, rel=1e-11)


@pytest.mark.parametrize("dense", [False, True])
def test_chunked_pass_equals_single_pass(rng, dense):
    """A chunked driver calling h_pass per chunk and combine gets the same partial sums."""
    G, W, H = synthetic(rng, n=50, shape=(8, 9), k=3, n_peaks=6)
    Y = rng.poisson(400 * G @ W @ H)
    data = as_compact(Y.T if dense else sp.csr_array(Y.T))
    assert data.is_dense == dense
    adj = grid_adjacency((8, 9))
    hp = HParams(0.3, data.total * 0.3, np.full(3, 0.05), 0.5, 1.0, *adj, True, None, 1e-10,
                 1e-13)  # fmt: skip
    D = compute_D(G, W)
    Ht = np.ascontiguousarray(H.T)
    out1 = np.empty_like(Ht)
    full = h_pass(data.chunk(0, 72), D, D.sum(0), Ht, 0, out1, hp, want_loss=True)
    out2 = np.empty_like(Ht)
    parts = [
        h_pass(data.chunk(a, b), D, D.sum(0), Ht, a, out2[a:b], hp, want_loss=True)
        for a, b in ((0, 20), (20, 51), (51, 72))
    ]
    tot = combine(parts)
    np.testing.assert_array_equal(out1, out2)
    np.testing.assert_allclose(tot.RHt, full.RHt, rtol=1e-12)
    np.testing.assert_allclose(tot.hsum, full.hsum, rtol=1e-12)
    np.testing.assert_allclose(tot.loss, full.loss, rtol=1e-12)


def test_sparse_and_dense_storage_agree(rng):
    G, W, H = synthetic(rng, n=60, shape=(6, 6), k=3, n_peaks=5)
    X = rng.poisson(500 * (G @ W @ H).T)
    kw = dict(lambda_L=0.5, mu=0.01, shape_2d=(6, 6), max_iter=20, tol=0.0, progress=False,
              init="random", random_state=3)  # fmt: skip
    assert as_compact(X).is_dense
    a = SmartNMF(G, 3, **kw).fit(X)  # dense numpy → dense storage
    b = SmartNMF(G, 3, **kw).fit(sp.csr_array(X))
    np.testing.assert_allclose(a.W_, b.W_, rtol=1e-10)
    np.testing.assert_allclose(a.H_, b.H_, rtol=1e-10, atol=1e-14)


def spectral_angles(D_true, D_est):
    a = D_true / np.linalg.norm(D_true, axis=0)
    b = D_est / np.linalg.norm(D_est, axis=0)
    cos = np.clip(a.T @ b, -1, 1)
    r, c = linear_sum_assignment(-cos)
    return np.degrees(np.arccos(cos[r, c])), c


@pytest.mark.parametrize("simplex", ["H", "W"])
def test_noiseless_recovery_below_one_degree(rng, simplex):
    G, W, H = synthetic(rng, n=150, shape=(16, 16), k=3, n_peaks=10)
    X = (200.0 * G @ W @ H).T  # noiseless, non-integer counts
    # every phase has pure pixels and no element at 0, and nothing is regularised: the start's
    # extrapolation of minor phases (for particles never seen pure) is switched off
    est = SmartNMF(G, 3, simplex=simplex, lambda_L=0.0, mu=0.0, max_iter=3000, tol=1e-10,
                   progress=False, shape_2d=(16, 16), init_extrapolation=0.0)  # fmt: skip
    Hf = est.fit_transform(X)
    ang, _ = spectral_angles(G @ W, est.components_.T)
    assert ang.max() < 1.0, ang
    rel = np.abs(Hf @ est.components_ - X).sum() / X.sum()
    assert rel < 0.01


def test_serial_and_parallel_kernels_identical(rng, monkeypatch):
    import esmpy_hs.nmf._solver as solver

    G, W, H = synthetic(rng, n=50, shape=(8, 9), k=3, n_peaks=6)
    Y = rng.poisson(20 * G @ W @ H)
    data = as_compact(sp.csr_array(Y.T))
    hp = HParams(0.3, data.total * 0.3, np.full(3, 0.05), 0.5, 1.0, *grid_adjacency((8, 9)),
                 True, None, 1e-10, 1e-13)  # fmt: skip
    D = compute_D(G, W)
    Ht = np.ascontiguousarray(H.T)
    outs = []
    for threshold in (10**9, 0):  # serial, then parallel
        monkeypatch.setattr(solver, "SERIAL_WORK", threshold)
        out = np.empty_like(Ht)
        res = h_pass(data.chunk(0, 72), D, D.sum(0), Ht, 0, out, hp, want_loss=True)
        outs.append((out, res))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1].RHt, outs[1][1].RHt)
    np.testing.assert_array_equal(outs[0][1].loss, outs[1][1].loss)
