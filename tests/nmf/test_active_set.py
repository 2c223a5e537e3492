"""The active set of the H step (:data:`._solver.ACTIVE_SET`, issue 18, third round): pixels
whose last update moved their abundances by less than a share of the movement rule's tolerance
are held between full sweeps.

A held pixel keeps its H (and its extrapolation) exactly and enters ``R Hᵀ`` and ``H 1`` as any
pixel; the pixels that move are updated exactly as without the active set; a pass with held
pixels still decreases F (the H step's majoriser separates per pixel); a whole fit ends within
the movement rule's stated quality (0.2°, 1e-4 map MSE) of the fit without it.
"""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.nmf import SmartNMF, _solver
from esmpy_hs.nmf import _plan as plan_module
from esmpy_hs.nmf._laplacian import grid_adjacency
from esmpy_hs.nmf._solver import HParams, evaluate_loss, h_pass

from .conftest import pass_data, synthetic

SHAPE = (16, 18)


def _hp(Y, k: int, lam: float) -> HParams:
    return HParams(1.0, float(Y.total), np.full(k, 0.1), 1.0, lam, *grid_adjacency(SHAPE),
                   True, None, 1e-12, 1e-10)  # fmt: skip


@pytest.mark.parametrize("dose", [3.0, 300.0])
def test_held_pixels_are_kept_and_the_others_updated_as_before(dose):
    D, Ht, Y = pass_data(11, dose, SHAPE)
    assert Y.is_dense == (dose > 100)  # both kernels: the sparse and the dense pass
    k = D.shape[1]
    hp = _hp(Y, k, 0.5)
    chunk = Y.chunk(0, Y.n_pixels)
    colsum = D.sum(axis=0)
    ref = np.empty_like(Ht)
    Hy_ref = np.empty_like(Ht)
    r_ref = h_pass(chunk, D, colsum, Ht, 0, ref, hp, Hy_out=Hy_ref, beta=0.5)
    # tracking alone (skip_tol 0): the same update, the moves recorded
    moved = np.full(Ht.shape[0], np.inf)
    out = np.empty_like(Ht)
    r = h_pass(chunk, D, colsum, Ht, 0, out, hp, moved=moved, skip_tol=0.0)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(r.RHt, r_ref.RHt)
    np.testing.assert_array_equal(moved, np.abs(ref - Ht).max(axis=1))
    # half the pixels held
    rng = np.random.default_rng(3)
    held = rng.random(Ht.shape[0]) < 0.5
    moved = np.where(held, 1e-7, 1.0)
    out = np.empty_like(Ht)
    Hy = np.empty_like(Ht)
    r = h_pass(chunk, D, colsum, Ht, 0, out, hp, Hy_out=Hy, beta=0.5, moved=moved,
               skip_tol=1e-6)  # fmt: skip
    np.testing.assert_array_equal(out[held], Ht[held])
    np.testing.assert_array_equal(Hy[held], Ht[held])
    np.testing.assert_array_equal(out[~held], ref[~held])
    np.testing.assert_array_equal(Hy[~held], Hy_ref[~held])
    np.testing.assert_array_equal(moved[held], 1e-7)
    np.testing.assert_array_equal(moved[~held], np.abs(ref - Ht).max(axis=1)[~held])
    # R Hᵀ and H 1 of the new H, every pixel included
    Yd = Y.to_dense(np.float64)  # channels × pixels
    np.testing.assert_allclose(r.RHt, (Yd / np.maximum(D @ out.T, 1e-30)) @ out, rtol=1e-12)
    np.testing.assert_allclose(r.hsum, out.sum(axis=0), rtol=1e-12)
    # the objective decreases (W held): with and without the held pixels
    F0 = evaluate_loss(Y, None, D, Ht, hp)
    assert evaluate_loss(Y, None, D, ref, hp) < F0
    assert evaluate_loss(Y, None, D, out, hp) < F0
    # a pass that computes the loss holds nothing (its ratio sweep adds in another order than
    # the plain pass's: compared with a pass with the loss)
    out = np.empty_like(Ht)
    h_pass(chunk, D, colsum, Ht, 0, out, hp, want_loss=True, moved=np.where(held, 1e-7, 1.0),
           skip_tol=1e-6)  # fmt: skip
    ref_loss = np.empty_like(Ht)
    h_pass(chunk, D, colsum, Ht, 0, ref_loss, hp, want_loss=True)
    np.testing.assert_array_equal(out, ref_loss)


def test_red_black_phases_hold_their_own_pixels():
    D, Ht, Y = pass_data(12, 2.0, SHAPE)
    k = D.shape[1]
    from esmpy_hs.nmf._laplacian import grid_colouring

    hp = _hp(Y, k, 30.0)
    hp.colour = grid_colouring(SHAPE)
    held = np.random.default_rng(5).random(Ht.shape[0]) < 0.5
    moved = np.where(held, 0.0, 1.0)
    out = Ht.copy()
    r = _solver.sweep(_solver.memory_pass(Y, hp), hp, D, D.sum(axis=0), Ht, out, update_h=True,
                      accumulate=True, want_loss=False, moved=moved, skip_tol=1e-9)
    np.testing.assert_array_equal(out[held], Ht[held])
    assert np.all(out[~held] != Ht[~held])
    F0 = evaluate_loss(Y, None, D, Ht, hp)
    assert evaluate_loss(Y, None, D, out, hp) < F0
    assert r.hsum == pytest.approx(out.sum(axis=0), rel=1e-12)


def _angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    c = np.einsum("kn,kn->k", a, b) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


def test_fits_with_and_without_the_active_set(monkeypatch):
    """A default fit holds pixels (most of them late in the fit) and ends within the movement
    rule's quality of the fit without the active set; with the movement rule off nothing is
    held (the objective rule asks for every pixel's convergence), nor with red-black sweeps or
    W held."""
    rng = np.random.default_rng(21)
    shape = (32, 32)
    G, W, H = synthetic(rng, shape=shape, k=3)
    X = rng.poisson(300.0 * (G @ W @ H).T)
    held = []
    orig = _solver.h_pass

    def spy(*args, moved=None, skip_tol=0.0, **kwargs):
        if moved is not None and skip_tol > 0:
            held.append(float(np.mean(moved < skip_tol)))
        return orig(*args, moved=moved, skip_tol=skip_tol, **kwargs)

    monkeypatch.setattr(_solver, "h_pass", spy)
    fits = {}
    for on in (False, True):
        monkeypatch.setattr(_solver, "ACTIVE_SET", on)
        held.clear()
        fits[on] = SmartNMF(G, 3, shape_2d=shape, progress=False).fit(X)
        assert bool(held) == on
    assert max(held) > 0.3 and np.mean(held) > 0.1
    off, on = fits[False], fits[True]
    assert on.stop_reason_ == off.stop_reason_ == "converged"
    F = np.asarray(on.loss_history_)  # the safeguard keeps every recorded F below the one before
    assert F.size > 5 and np.all(np.diff(F) <= 1e-12 * np.abs(F[:-1]))
    assert _angles(on.components_, off.components_).max() < 0.2
    assert ((on.H_ - off.H_) ** 2).mean(axis=1).max() < 1e-4
    held.clear()
    SmartNMF(G, 3, shape_2d=shape, progress=False, angle_tol=0.0, max_iter=50).fit(X)
    assert held == []
    # nor with red-black sweeps, nor with W held (at low dose the movement rule then needed
    # many more iterations)
    est = SmartNMF(G, 3, shape_2d=shape, progress=False, max_iter=50,
                   lambda_L=2.0 * plan_module.RED_BLACK_LAMBDA).fit(X)  # fmt: skip
    assert est.plan_.hp.colour is not None and held == []
    est = SmartNMF(G, 3, shape_2d=shape, progress=False, max_iter=50,
                   spectra_from="blocks").fit(X)  # fmt: skip
    assert est.spectra_from_ == "blocks" and est.n_iter_ > 5 and held == []


def test_the_movement_rules_view_of_the_bound_moves_the_same_spectra():
    """The movement rule's view (:class:`._fit._BoundView`) reads only W: the moved abundances
    it used to compute and drop are left out, the spectra and the moves are the same."""
    from esmpy_hs.nmf import _fit

    rng = np.random.default_rng(4)
    shape = (24, 24)
    G, W, H = synthetic(rng, shape=shape, k=3, pure=False)
    X = rng.poisson(200.0 * (G @ W @ H).T)
    est = SmartNMF(G, 3, shape_2d=shape, progress=False, max_iter=20).fit(X)
    plan = est.plan_
    # minor phases seen only mixed half and half with the dominant one, each lacking some of
    # its elements: their bound is a move of β = 1, inside the bounds of the final move
    m = W.shape[0]
    W0 = np.empty((m, 3))
    W0[:, 0] = 0.5 + rng.random(m)
    for j in (1, 2):
        true = 0.5 + rng.random(m)
        true[rng.random(m) < 0.3] = 0.0
        W0[:, j] = 0.5 * true + 0.5 * W0[:, 0]
    Ht = np.ascontiguousarray(rng.dirichlet([4.0, 1.0, 1.0], shape[0] * shape[1]))
    full = _fit._bound_move(plan, W0, Ht)
    view = _fit._bound_move(plan, W0, Ht, abundances=False)
    assert full is not None and view is not None
    np.testing.assert_array_equal(view[0], full[0])
    np.testing.assert_array_equal(view[2], full[2])
    assert full[1].shape == Ht.shape and view[1].shape[0] == 1
    np.testing.assert_array_equal(_fit._BoundView(plan)(W0, Ht)[0], full[0])
