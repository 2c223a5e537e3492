"""The coarse-to-fine start at low dose (esmpy_hs.nmf._coarse, issue 18)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import esmpy_hs.nmf._plan as plan_module
from esmpy_hs.nmf import SmartNMF
from esmpy_hs.nmf._blocksum import block_sums
from esmpy_hs.nmf._coarse import (
    binned_counts,
    block_of,
    coarse_shape,
    levels,
    prolong,
    restrict,
)
from esmpy_hs.nmf._data import as_compact

from .conftest import interrupted_pass, peaks_G

SHAPE = (64, 64)


def smooth_map(rng, shape=SHAPE, k=3) -> np.ndarray:
    """k × pixels abundances on the simplex: three regions with soft borders."""
    r, c = np.mgrid[0 : shape[0], 0 : shape[1]] / shape[0]
    logits = np.stack([4 * np.sin(3 * r), 4 * np.cos(2.5 * c + r), 3 * (r - c)])[:k]
    H = np.exp(logits - logits.max(axis=0))
    return (H / H.sum(axis=0)).reshape(k, -1)


def low_dose(rng, dose=1.0):
    G = peaks_G(200, 10)
    m = G.shape[1]
    W = np.zeros((m, 3))
    for j in range(3):
        W[:10, j] = rng.gamma(0.5, size=10) + 0.02
        W[:10, j] /= W[:10, j].sum()
        W[10:, j] = (0.1, 0.05)
    H = smooth_map(rng)
    M = G @ W @ H
    return G, rng.poisson(dose * M / M.sum(axis=0).mean())


def test_levels_follow_lambda_and_grid():
    assert levels((512, 512), 60.0) == [16, 8, 4, 2]
    assert levels((64, 64), 60.0) == [4, 2]  # the binned grid keeps ≥ 16 pixels a side
    assert levels((512, 512), 10.0) == [4, 2]
    assert levels((512, 512), 0.5) == []
    assert levels((4096,), 60.0) == [] and levels(None, 60.0) == []


def test_binning_restriction_and_interpolation(rng):
    shape = (7, 10)  # border blocks cut at b = 4
    b = 4
    cs = coarse_shape(shape, b)
    block = block_of(shape, b)
    nb = cs[0] * cs[1]
    assert cs == (2, 3) and block.max() == nb - 1
    X = rng.poisson(0.7, size=(70, 30))
    cnt = np.bincount(block, minlength=nb)
    data = binned_counts([block_sums(as_compact(X), block)], nb, (b * b) / cnt, 30, np.float64)
    A = sp.csr_array((np.ones(70), (block, np.arange(70))), shape=(nb, 70))
    expect = (A @ X) * ((b * b) / cnt)[:, None]
    np.testing.assert_allclose(data.to_dense().T, expect)
    # the same from the sums over 2 × 2 blocks (one read of the data for every level)
    f2 = coarse_shape(shape, 2)
    n2 = f2[0] * f2[1]
    sums = binned_counts([block_sums(as_compact(X), block_of(shape, 2))], n2, np.ones(n2), 30,
                         np.float64)  # fmt: skip
    again = binned_counts([block_sums(sums, block_of(f2, 2))], nb, (b * b) / cnt, 30, np.float64)
    np.testing.assert_allclose(again.to_dense(), data.to_dense())
    # a constant map stays constant; simplex vectors stay on the simplex
    Hc = rng.dirichlet(np.ones(3), size=nb)
    Hf = prolong(Hc, cs, shape, b)
    np.testing.assert_allclose(Hf.sum(axis=1), 1.0)
    assert Hf.min() >= Hc.min() - 1e-15 and Hf.max() <= Hc.max() + 1e-15
    np.testing.assert_allclose(prolong(np.full((nb, 3), 0.25), cs, shape, b), 0.25)
    # a field linear in the row index, away from the borders, is interpolated exactly
    rows = np.repeat(np.arange(16.0), 16)[:, None]
    c16 = restrict(rows, block_of((16, 16), 2), 64)
    back = prolong(c16, (8, 8), (16, 16), 2).reshape(16, 16)
    np.testing.assert_allclose(back[1:-1], np.repeat(np.arange(1.0, 15.0), 16).reshape(14, 16))


def fit(G, X, **kw):
    params = dict(shape_2d=SHAPE, progress=False, random_state=0)
    params.update(kw)
    return SmartNMF(G, 3, **params).fit(X)


def test_chosen_only_at_low_dose_with_w_held(rng, monkeypatch):
    G, Y = low_dose(rng)
    est = fit(G, Y.T, max_iter=30)
    assert est.spectra_from_ == "blocks" and est.lambda_L_ >= plan_module.RED_BLACK_LAMBDA
    assert [b for b, _ in est.coarse_iter_] == [4, 2]
    assert fit(G, Y.T, max_iter=30, spectra_from="pixels").coarse_iter_ == []  # W moves
    assert fit(G, Y.T, max_iter=30, lambda_L=1.0).coarse_iter_ == []  # λ below red-black
    lam = 0.5 * (plan_module.RED_BLACK_LAMBDA + plan_module.COARSE_TO_FINE_LAMBDA)
    est = fit(G, Y.T, max_iter=30, lambda_L=lam)  # red-black, λ below the coarse start's
    assert est.plan_.hp.colour is not None and est.coarse_iter_ == []
    G2, Y2 = low_dose(rng, dose=300.0)
    assert fit(G2, Y2.T, max_iter=30).coarse_iter_ == []  # spectra from the pixels
    monkeypatch.setattr(plan_module, "COARSE_TO_FINE", False)
    assert fit(G, Y.T, max_iter=30).coarse_iter_ == []


def test_same_answer_as_the_warm_up_start(rng, monkeypatch):
    """Run to a tight tolerance, both starts end at the same minimum of F (W held); the
    coarse-to-fine start needs fewer full-resolution iterations to get there."""
    G, Y = low_dose(rng)
    kw = dict(tol=1e-10, angle_tol=0.0, max_iter=3000)
    fits = {}
    for on in (False, True):
        monkeypatch.setattr(plan_module, "COARSE_TO_FINE", on)
        est = fit(G, Y.T, **kw)
        F = np.asarray(est.loss_history_)
        assert np.all(np.diff(F) <= 1e-12 * np.abs(F[:-1]))  # the main loop stays monotone
        fits[on] = est
    a, b = fits[False], fits[True]
    np.testing.assert_array_equal(a.components_, b.components_)  # W held: the start's
    assert b.loss_history_[-1] == pytest.approx(a.loss_history_[-1], rel=1e-7)
    np.testing.assert_allclose(b.H_, a.H_, atol=3e-3)
    assert b.n_iter_ < a.n_iter_


def test_chunked_and_in_memory_agree(rng):
    da = pytest.importorskip("dask.array")
    G, Y = low_dose(rng)
    mem = fit(G, Y.T, max_iter=60)
    lazy = fit(G, da.from_array(Y.T, chunks=(1000, Y.shape[0])), max_iter=60)
    assert lazy.coarse_iter_ == mem.coarse_iter_
    np.testing.assert_allclose(lazy.H_, mem.H_, atol=1e-9)


def test_interrupt_during_the_coarse_start(rng, monkeypatch):
    """An interrupt in a coarse level ends the fit on the start's abundances (a feasible
    iterate, no iterations counted), as an interrupt of the warm-up does."""
    import esmpy_hs.nmf._coarse as coarse_module

    G, Y = low_dose(rng)

    monkeypatch.setattr(coarse_module, "memory_pass", interrupted_pass)
    est = fit(G, Y.T, max_iter=30)
    assert est.stop_reason_ == "interrupted" and est.n_iter_ == 0 and est.coarse_iter_ == []
    np.testing.assert_allclose(est.H_.sum(axis=0), 1.0)
    assert np.all(est.H_ > 0)
