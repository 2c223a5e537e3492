"""The loop's work moved out of passes of its own (issue 18): the extrapolation of H made by the
pass that updates H (``Hy_out``), the objective at a second D in a pass that evaluates it
(``D2``), and the batched products of a 3-D G — each against the computation it replaces, and
whole fits with the module switches on and off."""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.nmf import SmartNMF, _kernels, _solver, _updates
from esmpy_hs.nmf._laplacian import grid_adjacency, grid_colouring
from esmpy_hs.nmf._solver import HParams, h_pass, n_blocks, sweep

from .conftest import pass_data, synthetic

SHAPE = (16, 18)


def _hp(Y, k: int, lam: float, red_black: bool) -> HParams:
    adj = grid_adjacency(SHAPE)
    colour = grid_colouring(SHAPE) if red_black else None
    return HParams(1.0, float(Y.total), np.full(k, 0.1), 1.0, lam, *adj, True, None, 1e-12,
                   1e-10, colour)  # fmt: skip


@pytest.mark.parametrize("red_black", [False, True])
@pytest.mark.parametrize("dose", [2.0, 200.0])
def test_the_pass_extrapolates_as_the_separate_kernel(red_black, dose):
    D, Ht, Y = pass_data(1, dose, SHAPE)
    k = D.shape[1]
    hp = _hp(Y, k, 20.0 if red_black else 0.5, red_black)
    run = _solver.memory_pass(Y, hp)
    beta = 0.7
    plain = np.empty_like(Ht)
    r0 = sweep(run, hp, D, D.sum(axis=0), Ht, plain, update_h=True, accumulate=True,
               want_loss=False)  # fmt: skip
    fused, Hy = np.empty_like(Ht), np.full_like(Ht, np.nan)
    r1 = sweep(run, hp, D, D.sum(axis=0), Ht, fused, update_h=True, accumulate=True,
               want_loss=False, Hy_out=Hy, beta=beta)  # fmt: skip
    # the update itself is untouched
    np.testing.assert_array_equal(fused, plain)
    np.testing.assert_array_equal(r1.RHt, r0.RHt)
    ref = np.empty_like(Ht)
    _kernels.extrapolate_simplex(plain, Ht, beta, hp.eps, n_blocks(Ht.shape[0]), ref)
    # every row written (both colours of a sweep), as the separate kernel to the last unit
    # (the helper is compiled with the pass's fast-math flags)
    np.testing.assert_allclose(Hy, ref, rtol=0, atol=1e-15)
    np.testing.assert_allclose(Hy.sum(axis=1), 1.0, rtol=0, atol=1e-14)
    # and it moved: the extrapolation is not the update
    assert np.abs(Hy - plain).max() > 1e-4


def test_the_fused_extrapolation_refuses_fixed_entries():
    D, Ht, Y = pass_data(2, 50.0, SHAPE)
    hp = _hp(Y, 3, 0.5, False)
    hp.fixed_Ht = np.full(Ht.shape, np.nan)
    with pytest.raises(ValueError, match="fused extrapolation"):
        h_pass(Y.chunk(0, Y.n_pixels), D, D.sum(axis=0), Ht, 0, np.empty_like(Ht), hp,
               Hy_out=np.empty_like(Ht), beta=0.5)  # fmt: skip


@pytest.mark.parametrize("red_black", [False, True])
@pytest.mark.parametrize("dense", [False, True])
def test_the_loss_at_a_second_D_is_the_loss_pass_there(red_black, dense):
    D, Ht, Y = pass_data(3, 30.0, SHAPE)
    k = D.shape[1]
    hp = _hp(Y, k, 20.0 if red_black else 0.5, red_black)
    D2 = np.ascontiguousarray(D * np.linspace(0.8, 1.3, D.shape[0])[:, None])
    chunk = ("dense", np.ascontiguousarray(Y.to_dense(np.float64).T.astype(np.uint16))) \
        if dense else Y.chunk(0, Y.n_pixels)  # fmt: skip

    def run(D_, Ht_, Ht_out, *, update_h, accumulate, want_loss, phase=-1, **kw):
        out = Ht_ if Ht_out is None else Ht_out
        return h_pass(chunk, D_, D_.sum(axis=0), Ht_, 0, out, hp, update_h=update_h,
                      accumulate=accumulate, want_loss=want_loss, phase=phase, **kw)  # fmt: skip

    def at(D_):
        return run(D_, Ht, None, update_h=False, accumulate=False, want_loss=True).loss

    res = sweep(lambda D_, c, H_, o, **kw: run(D_, H_, o, **kw), hp, D, D.sum(axis=0), Ht,
                np.empty_like(Ht), update_h=True, accumulate=True, want_loss=True,
                D2=D2)  # fmt: skip
    assert np.all(np.isfinite(res.loss2))
    np.testing.assert_allclose(res.loss, at(D), rtol=1e-12)
    np.testing.assert_allclose(res.loss2, at(D2), rtol=1e-12)
    assert abs(res.loss2[0] - res.loss[0]) > 1e-3 * abs(res.loss[0])  # D2 does differ


def test_batched_products_match_einsum(monkeypatch):
    rng = np.random.default_rng(5)
    G = rng.random((3, 200, 9))
    W = rng.random((9, 3))
    R = rng.random((200, 3))
    new = (_updates.compute_D(G, W), _updates.gt_times(G, R), _updates.colsums(G[0] @ W))
    monkeypatch.setattr(_updates, "BATCHED_PRODUCTS", False)
    old = (_updates.compute_D(G, W), _updates.gt_times(G, R), _updates.colsums(G[0] @ W))
    for a, b in zip(new, old, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    assert new[0].flags.c_contiguous


SWITCHES = [(_solver, "FUSED_EXTRAPOLATION"), (_solver, "FOLD_CLOSING_LOSS"),
            (_updates, "BATCHED_PRODUCTS")]  # fmt: skip


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(11)
    G, W, H = synthetic(rng, shape=SHAPE, k=3, pure=False)
    G3 = np.stack([G, G * 1.05, G * 0.95])
    X = rng.poisson(150.0 * (G @ W @ H).T)
    return G3, X


def _refresh(G3):
    """A callback that replaces G every 10 iterations with a slightly other one (F changes with
    it, as with the absorption refresh)."""

    def cb(est, it, W, H):
        if it % 10:
            return None
        f = 1.0 + 0.02 * np.sin(it / 10.0 + np.arange(3))
        return G3 * f[:, None, None]

    return cb


@pytest.mark.parametrize("spectra_from", ["pixels", "blocks"])
@pytest.mark.parametrize("momentum_max", [1.0, 3.0])
def test_fits_with_and_without_the_switches_agree(problem, monkeypatch, spectra_from,
                                                   momentum_max):  # fmt: skip
    G3, X = problem
    # β up to 3 makes extrapolations rise F at some epochs' ends: the return path runs too
    monkeypatch.setattr(_solver, "MOMENTUM_MAX", momentum_max)
    fits = []
    for on in (False, True):
        for mod, name in SWITCHES:
            monkeypatch.setattr(mod, name, on)
        est = SmartNMF(G3, 3, shape_2d=SHAPE, max_iter=400, tol=1e-7, progress=False,
                       callback=_refresh(G3), spectra_from=spectra_from)  # fmt: skip
        fits.append(est.fit(X))
    old, new = fits
    assert new.n_iter_ == old.n_iter_
    assert new.n_restarts_ == old.n_restarts_
    assert new.stop_reason_ == old.stop_reason_
    assert new.loss_iterations_ == old.loss_iterations_
    np.testing.assert_allclose(new.loss_history_, old.loss_history_, rtol=1e-10)
    np.testing.assert_allclose(new.W_, old.W_, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(new.H_, old.H_, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(new.G_, old.G_)
    if momentum_max == 3.0 and spectra_from == "pixels":
        assert new.n_restarts_ > 0  # the return path was exercised
    assert new.n_iter_ > 20  # several epochs of G
