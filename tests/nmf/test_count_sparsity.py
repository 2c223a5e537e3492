"""The log-sparsity prior on each phase's counts (``sparsity_on="counts"``, issue 14)."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings

from esmpy_hs.nmf import SmartNMF, fit_chunked
from esmpy_hs.nmf._data import as_compact
from esmpy_hs.nmf._laplacian import grid_adjacency, grid_colouring
from esmpy_hs.nmf._objective import assemble, objective_dense
from esmpy_hs.nmf._plan import validate_params
from esmpy_hs.nmf._prior import w_tangent
from esmpy_hs.nmf._solver import HParams, combine, evaluate_loss, h_pass
from esmpy_hs.nmf._updates import compute_D

from .conftest import synthetic
from .test_properties import problems

SHAPE = (12, 14)


def _hp(data, k: int, form: str, *, lam: float = 0.0, simplex: bool = True, colour=None,
        mu: float = 0.3, sbar: float | None = None) -> HParams:  # fmt: skip
    adj = grid_adjacency(SHAPE)
    p = SHAPE[0] * SHAPE[1]
    sbar = data.total * 0.5 / p if sbar is None else sbar
    return HParams(0.5, data.total * 0.5, np.full(k, mu), 0.05, lam, *adj, simplex, None, 1e-12,
                   1e-10, colour, form, sbar)  # fmt: skip


def _problem(seed: int = 3, dose: float = 200.0):
    rng = np.random.default_rng(seed)
    G, W, H = synthetic(rng, n=60, shape=SHAPE, k=3, n_peaks=6, pure=False)
    Y = rng.poisson(dose * (G @ W @ H) / (G @ W @ H).sum(0).mean())
    return G, W, H, as_compact(sp.csr_array(Y.T))


def test_the_parameter_is_checked():
    params = SmartNMF().get_params()
    for form in ("share", "counts"):
        validate_params({**params, "sparsity_on": form})
    for bad in ("count", "Counts", None, 1):
        with pytest.raises(ValueError, match="sparsity_on must be 'share' or 'counts'"):
            validate_params({**params, "sparsity_on": bad})
    assert params["sparsity_on"] == "share"
    with pytest.raises(ValueError, match="sparsity_on"):
        SmartNMF(n_components=2, sparsity_on="pixels", progress=False).fit(np.ones((4, 6)))


@pytest.mark.parametrize("phase", [-1, 0, 1])
def test_counts_with_every_ratio_one_is_the_share_form_bit_for_bit(phase):
    """With every r_j = 1 (each phase's pure pixel holds the mean pixel's counts) the prior on
    the counts is the prior on the share: the kernels get the same ε and the constant Σ μ log r
    is 0, so the pass is the same to the last bit (H, R Hᵀ, H 1 and the loss parts)."""
    _, _, H, data = _problem()
    # dyadic entries whose columns sum to the same number exactly: r_j = 1 with s̄ that sum
    raw = np.random.default_rng(4).integers(1, 100, (60, 3)).astype(np.float64)
    raw[-1] += raw.sum(axis=0).max() + 1.0 - raw.sum(axis=0)
    D = np.ascontiguousarray(raw / 4096.0)
    sbar = float(D.sum(axis=0)[0])
    assert np.all(D.sum(axis=0) == sbar)
    colour = grid_colouring(SHAPE) if phase >= 0 else None
    Ht = np.ascontiguousarray(H.T)
    out = {}
    for form in ("share", "counts"):
        hp = _hp(data, 3, form, lam=0.4, colour=colour, sbar=sbar)
        Ho = Ht.copy()
        res = h_pass(data.chunk(0, data.n_pixels), D, D.sum(0), Ht.copy(), 0, Ho, hp,
                     want_loss=True, phase=phase)  # fmt: skip
        out[form] = (Ho, res.RHt, res.hsum, res.loss)
    for a, b in zip(out["share"], out["counts"], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("simplex", [False, True])
def test_the_counts_prior_is_unchanged_by_the_trade_of_share_for_scale(simplex):
    """h_j → h_j / c with D_j → c·D_j leaves the model D·H and the prior on the counts unchanged;
    the prior on the share gains −μ_j log c per pixel (for h ≫ ε), the trade issue 14 removes."""
    G, W, H, data = _problem()
    if not simplex:
        H = H * np.random.default_rng(0).uniform(0.5, 2.0, H.shape[1])[None, :]
    Ht = np.ascontiguousarray(H.T)
    c = 5.0
    W2, Ht2 = W.copy(), Ht.copy()
    W2[:, 1] *= c
    Ht2[:, 1] /= c
    p = Ht.shape[0]
    F = {}
    for form in ("share", "counts"):
        hp = _hp(data, 3, form, simplex=simplex, mu=0.3)
        F[form] = (evaluate_loss(data, G, W, Ht, hp), evaluate_loss(data, G, W2, Ht2, hp))
    a, b = F["counts"]
    assert b == pytest.approx(a, rel=1e-12, abs=1e-9)
    # the share form: the trade gains Σ_p μ (log(h + ε) − log(h/c + ε)), > 0
    gain = F["share"][0] - F["share"][1]
    h = Ht[:, 1]
    expected = 0.3 * float(np.sum(np.log(h + 0.05) - np.log(h / c + 0.05)))
    assert gain == pytest.approx(expected, rel=1e-9)
    assert expected > 0.1 * 0.3 * p * np.log(c)


def test_the_kernels_F_is_the_dense_objective():
    """F of the kernel pass (with Σ μ log r per pixel added) equals the NumPy evaluation."""
    G, W, H, data = _problem()
    hp = _hp(data, 3, "counts", lam=0.0)
    Ht = np.ascontiguousarray(H.T)
    F = evaluate_loss(data, G, W, Ht, hp)
    Y = data.to_dense()  # channels × pixels
    ref = objective_dense(Y, compute_D(G, W), H, mu=0.3, eps_reg=0.05, inv_scale=0.5,
                          sparsity_on="counts", mean_counts=hp.mean_counts)  # fmt: skip
    assert F == pytest.approx(ref, rel=1e-11)


@pytest.mark.parametrize("red_black", [False, True])
def test_the_loss_at_a_second_D_and_in_chunks(red_black):
    """The loss parts at ``D2`` (the old G's F in the pass that evaluates the new one) hold the
    prior at D2's ratios; chunks and the two colours of a sweep add up to the whole pass."""
    G, W, H, data = _problem()
    colour = grid_colouring(SHAPE) if red_black else None
    hp = _hp(data, 3, "counts", lam=20.0, colour=colour)
    D = compute_D(G, W)
    W2 = W * np.array([1.0, 1.7, 0.6])[None, :]
    D2 = compute_D(G, W2)
    Ht = np.ascontiguousarray(H.T)
    ref = evaluate_loss(data, G, W2, Ht, hp)
    phases = (0, 1) if red_black else (-1,)
    parts = []
    for ph in phases:
        for a, b in ((0, 50), (50, 111), (111, Ht.shape[0])):
            parts.append(h_pass(data.chunk(a, b), D, D.sum(0), Ht, a, np.empty((b - a, 3)), hp,
                                update_h=False, accumulate=False, want_loss=True, phase=ph,
                                D2=D2))  # fmt: skip
    tot = combine(parts)
    assert assemble(tot.loss2, hp.total_scaled) == pytest.approx(ref, rel=1e-12)
    assert assemble(tot.loss, hp.total_scaled) == pytest.approx(
        evaluate_loss(data, G, W, Ht, hp), rel=1e-12)


def test_the_w_tangent_is_the_derivative_of_the_prior():
    """The W step's added denominator is ∂/∂W of Σ μ log(r h + ε): checked by finite
    differences of the dense objective along each phase's W (a 2-D G: ∂r_j/∂W_cj = (Gᵀ1)_c/s̄)."""
    G, W, H, _ = _problem()
    Ht = np.ascontiguousarray(H.T)
    D = compute_D(G, W)
    sbar, mu, eps = 2.0, np.array([0.3, 0.1, 0.5]), 0.05
    t = w_tangent(Ht, mu, eps, D.sum(0), sbar)

    def prior(Wx):
        r = compute_D(G, Wx).sum(0) / sbar
        return float((mu[None, :] * np.log(r[None, :] * Ht + eps)).sum())

    g1 = G.sum(axis=0)
    for j in range(3):
        dW = np.zeros_like(W)
        dW[:, j] = 1e-6 * W[:, j]
        fd = (prior(W + dW) - prior(W - dW)) / 2.0
        assert fd == pytest.approx(t[j] * float(g1 @ dW[:, j]), rel=1e-6)


def _fit(pb, form: str, max_iter: int = 12):
    est = SmartNMF(
        pb["G"], pb["k"], lambda_L=pb["lam"], mu=0.3, epsilon_reg=0.05,
        simplex=pb["simplex"], fixed_W=pb["fixed_W"], fixed_H=pb["fixed_H"], init="random",
        random_state=pb["seed"], shape_2d=pb["shape"], max_iter=max_iter, tol=0.0,
        loss_every=1, progress=False, sparsity_on=form,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.fit_transform(sp.csr_array(pb["X"]))
    return est


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_objective_never_increases_with_the_prior_on_the_counts(pb):
    """The property test of the share form, with the prior on the counts (μ = 0.3, every
    constraint, G kind, λ and fixed entries of the strategy)."""
    est = _fit(pb, "counts")
    F = np.array(est.loss_history_)
    assert np.all(np.isfinite(F))
    assert np.all(np.diff(F) <= 1e-10 * np.abs(F[:-1]) + 1e-12), np.diff(F)
    assert np.all(est.W_ >= 0) and np.all(est.H_ >= 0)


@pytest.mark.parametrize("case", ["momentum", "red-black", "blocks"])
def test_default_style_fits_stay_monotone(case):
    """A 40 × 44 map through the fit path the defaults take (the "auto" start, momentum and
    its safeguard, red-black sweeps at large λ, the spectra held from the blocks): F recorded
    never rises, and the fit differs from the share form's."""
    rng = np.random.default_rng(5)
    G, W, H = synthetic(rng, shape=(40, 44), k=3, pure=False)
    M = G @ W @ H
    dose = {"momentum": 300.0, "red-black": 40.0, "blocks": 5.0}[case]
    X = np.random.default_rng(1).poisson(dose * M.T / M.sum(0).mean()).astype(float)
    kw = dict(mu=0.3, shape_2d=(40, 44), random_state=0, progress=False, max_iter=80,
              tol=0.0, loss_every=1, final_extrapolation=0.0)  # fmt: skip
    if case == "red-black":
        kw.update(lambda_L=30.0, init="random")
    fits = {}
    for form in ("share", "counts"):
        est = SmartNMF(G, 3, sparsity_on=form, **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit_transform(X)
        F = np.array(est.loss_history_)
        assert np.all(np.diff(F) <= 1e-10 * np.abs(F[:-1]) + 1e-12), np.diff(F)
        fits[form] = est
    if case == "blocks":
        assert fits["counts"].spectra_from_ == "blocks"
    assert not np.allclose(fits["counts"].H_, fits["share"].H_, rtol=1e-6, atol=1e-9)


def test_chunked_fit_gives_the_in_memory_iterates():
    G, W, H, _ = _problem()
    rng = np.random.default_rng(2)
    M = G @ W @ H
    Y = rng.poisson(150 * M.T / M.sum(0).mean()).astype(np.float64)
    kw = dict(shape_2d=SHAPE, lambda_L=0.3, max_iter=15, tol=0, progress=False, mu=0.3,
              init="random", random_state=1, sparsity_on="counts")  # fmt: skip
    ref = SmartNMF(G, 3, **kw)
    H_ref = ref.fit_transform(Y)
    est = fit_chunked(da.from_array(Y, chunks=((50, 70, 48), -1)), G, 3, client=False, **kw)
    np.testing.assert_allclose(est.H_, H_ref.T, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(est.W_, ref.W_, rtol=1e-7)
    np.testing.assert_allclose(est.loss_history_, ref.loss_history_, rtol=1e-9)
