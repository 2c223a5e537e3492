"""The dose-dependent choices: λ from the data scale, and spectra from binned blocks at low dose."""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.nmf import SmartNMF
from esmpy_hs.nmf._solver import WParams, hold_spectra
from esmpy_hs.nmf.estimator import DEFAULT_LAMBDA, LAMBDA_COUNTS, LOW_DOSE_COUNTS

from .conftest import synthetic

SHAPE = (32, 36)


def counts(dose: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    G, W, H = synthetic(rng, n=120, shape=SHAPE, k=3, pure=True)
    H = 0.7 * H + 0.3 * rng.dirichlet(np.ones(3), size=H.shape[1]).T
    D = G @ W
    lam = D @ H
    Y = rng.poisson(lam * dose / lam.sum(axis=0).mean()).T.astype(np.uint16)
    return G, W, Y


def fit(Y, G, **kw):
    kw = {"shape_2d": SHAPE, "progress": False, "max_iter": 40, "tol": 0.0, **kw}
    est = SmartNMF(G, 3, **kw)
    est.fit(Y)
    return est


@pytest.mark.parametrize("dose", [12.0, 1000.0])
def test_lambda_follows_the_dose(dose):
    G, _, Y = counts(dose)
    est = fit(Y, G, max_iter=2)
    assert est.lambda_L_ == pytest.approx(max(DEFAULT_LAMBDA, LAMBDA_COUNTS / est.scale_))
    if dose < 100:
        assert est.lambda_L_ > 20 * DEFAULT_LAMBDA  # 12 counts/px, k = 3: λ = 20 / 4 = 5
    else:
        assert est.lambda_L_ == DEFAULT_LAMBDA  # 20 / 333 < 0.1: the floor
    # an explicit λ is kept; no grid means no smoothing
    assert fit(Y, G, max_iter=2, lambda_L=0.3).lambda_L_ == 0.3
    assert fit(Y, G, max_iter=2, shape_2d=None).lambda_L_ == 0.0


def test_transform_uses_the_fitted_lambda():
    G, _, Y = counts(12.0)
    est = fit(Y, G, max_iter=5)
    H1 = est.transform(Y)
    est2 = fit(Y, G, max_iter=5, lambda_L=est.lambda_L_)
    np.testing.assert_allclose(H1, est2.transform(Y), rtol=1e-12, atol=1e-14)


def test_auto_mode_switches_at_low_dose():
    G, _, Y_low = counts(LOW_DOSE_COUNTS / 5)
    _, _, Y_high = counts(LOW_DOSE_COUNTS * 3)
    assert fit(Y_low, G, max_iter=2).spectra_from_ == "blocks"
    assert fit(Y_high, G, max_iter=2).spectra_from_ == "pixels"
    # the binned start needs the grid and init="auto"
    assert fit(Y_low, G, max_iter=2, shape_2d=None).spectra_from_ == "pixels"
    assert fit(Y_low, G, max_iter=2, init="random", random_state=0).spectra_from_ == "pixels"
    assert fit(Y_low, G, max_iter=2, spectra_from="pixels").spectra_from_ == "pixels"
    assert fit(Y_high, G, max_iter=2, spectra_from="blocks").spectra_from_ == "blocks"


def test_blocks_mode_holds_the_spectra_and_fits_the_maps():
    G, _, Y = counts(15.0)
    short = fit(Y, G, max_iter=3)
    long = fit(Y, G, max_iter=60)
    assert short.spectra_from_ == long.spectra_from_ == "blocks"
    np.testing.assert_array_equal(short.W_, long.W_)
    assert np.abs(short.H_ - long.H_).max() > 1e-3  # the maps moved
    F = long.loss_history_
    assert np.all(np.diff(F) <= 1e-10 * np.abs(F[:-1]))  # H-only updates still descend


def test_blocks_mode_keeps_the_spectra_when_the_callback_replaces_G():
    G, _, Y = counts(15.0)
    rng = np.random.default_rng(1)
    factors = rng.uniform(0.7, 1.3, size=G.shape[1])

    def cb(est, it, W, H):
        return G * factors[None, :] if it == 5 else None

    est = fit(Y, G, max_iter=10, callback=cb)
    ref = fit(Y, G, max_iter=10)
    assert est.spectra_from_ == "blocks"
    np.testing.assert_allclose(est.G_, G * factors[None, :])
    # same spectra, re-expressed on the new G
    np.testing.assert_allclose(est.components_, ref.components_, rtol=1e-6)
    # (entries at the lower bound eps — extrapolated to zero — stay at eps)
    above = ref.W_ > 1e-6 * ref.W_.max()
    np.testing.assert_allclose(est.W_[above], (ref.W_ / factors[:, None])[above], rtol=1e-12)


@pytest.mark.parametrize("three_d", [False, True])
def test_hold_spectra_is_exact_for_scaled_columns(three_d):
    rng = np.random.default_rng(2)
    G = rng.uniform(0, 1, (50, 6))
    W = rng.uniform(0.1, 1, (6, 3))
    f = rng.uniform(0.5, 2.0, (3, 6))
    if three_d:
        G_old = np.stack([G] * 3)
        G_new = G_old * f[:, None, :]
        D_old = np.einsum("jnm,mj->nj", G_old, W)
    else:
        G_old, G_new = G, G * f[0][None, :]
        D_old = G @ W
    wp = WParams(False, np.zeros(6, dtype=bool), None, 1e-10, 1e-13)
    Wn = hold_spectra(G_old, G_new, W, wp)
    D_new = np.einsum("jnm,mj->nj", G_new, Wn) if three_d else G_new @ Wn
    np.testing.assert_allclose(D_new, D_old, rtol=1e-12)


def test_errors():
    G, _, Y = counts(15.0)
    with pytest.raises(ValueError, match="spectra_from must be"):
        fit(Y, G, spectra_from="binned")
    with pytest.raises(ValueError, match="init='auto' and the pixel grid"):
        fit(Y, G, spectra_from="blocks", init="random")
    with pytest.raises(ValueError, match="init='auto' and the pixel grid"):
        fit(Y, G, spectra_from="blocks", shape_2d=None)
    with pytest.raises(ValueError, match="lambda_L must be"):
        fit(Y, G, lambda_L=float("inf"))
