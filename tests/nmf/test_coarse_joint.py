"""The binned level of a joint fit on a large map (esmpy_hs.nmf._coarse.joint_level, issue 18).

The level is chosen on grids of more than COARSE_JOINT_BLOCKS blocks (a 128 × 128 grid); the
fits below lower that bound so a 64 × 64 map takes it with b = 4.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import esmpy_hs.nmf._plan as plan_module
from esmpy_hs.nmf import SmartNMF
from esmpy_hs.nmf._plan import joint_factor

from .conftest import interrupted_pass, peaks_G

SHAPE = (64, 64)


def _plan(shape, *, hold_W=False, G=True, simplex="H", fixed_Ht=None):
    s = SimpleNamespace(G=np.ones((3, 3)) if G else None, simplex=simplex, fixed_Ht=fixed_Ht,
                        shape=shape)  # fmt: skip
    return SimpleNamespace(settings=s, hold_W=hold_W)


def test_factor_follows_the_grid():
    assert plan_module.COARSE_JOINT_BLOCKS == 128 * 128
    assert joint_factor(_plan((1024, 1024))) == 8
    assert joint_factor(_plan((512, 512))) == 4
    assert joint_factor(_plan((2048, 1024))) == 16
    assert joint_factor(_plan((600, 500))) == 8  # 75 × 63 blocks at 8; 150 × 125 > 16 384 at 4
    # b = 2 would do at 256² (a 2 × 2 block costs almost the pass of its four pixels): none
    assert joint_factor(_plan((256, 256))) == 0
    assert joint_factor(_plan((128, 128))) == 0
    assert joint_factor(_plan((1024 * 1024,))) == 0  # no 2-D grid
    assert joint_factor(_plan(None)) == 0
    assert joint_factor(_plan((1024, 1024), hold_W=True)) == 0  # spectra from the blocks
    assert joint_factor(_plan((1024, 1024), G=False)) == 0
    assert joint_factor(_plan((1024, 1024), simplex="W")) == 0
    assert joint_factor(_plan((1024, 1024), fixed_Ht=np.zeros((4, 3)))) == 0


def particles(rng, dose=300.0, shape=SHAPE):
    """A matrix with two kinds of round particles thinner than the specimen (never pure)."""
    G = peaks_G(200, 10)
    W = np.zeros((G.shape[1], 3))
    W[:10, 0] = (5, 4, 1, 0.5, 3, 0.2, 0.1, 2, 1, 0.3)
    W[:10, 1] = (1, 0.5, 6, 0.2, 0.5, 4, 0.1, 0.3, 0.2, 0.1)
    W[:10, 2] = (0.5, 1, 0.2, 5, 0.3, 0.2, 4, 0.2, 3, 0.1)
    W[:10] /= W[:10].sum(axis=0)
    W[10:] = np.array([[0.1, 0.1, 0.1], [0.05, 0.05, 0.05]])
    r, c = np.mgrid[0 : shape[0], 0 : shape[1]]
    H = np.zeros((3, *shape))
    centres = [(12, 14, 1), (40, 18, 2), (22, 44, 1), (50, 50, 2), (10, 52, 2), (48, 34, 1)]
    for y, x, j in centres:
        d = np.hypot(r - y, c - x) / 7.0
        H[j] = np.maximum(H[j], 0.6 * np.clip(1 - d**2, 0, None))
    H[0] = 1 - H[1] - H[2]
    H = H.reshape(3, -1)
    M = G @ W @ H
    return G, W, H, rng.poisson(dose * M / M.sum(axis=0).mean())


def fit(G, X, **kw):
    params = dict(shape_2d=SHAPE, progress=False, random_state=0)
    params.update(kw)
    return SmartNMF(G, 3, **params).fit(X)


def _angles(A, B):
    A = A / np.linalg.norm(A, axis=0)
    B = B / np.linalg.norm(B, axis=0)
    return np.degrees(np.arccos(np.clip((A * B).sum(axis=0), -1.0, 1.0)))


def _matched(est, spectra):
    """The fit's spectra (channels × k) in the order of ``spectra``'s columns."""
    from scipy.optimize import linear_sum_assignment

    F = np.asarray(est.components_).T
    cost = np.array([[_angles(F[:, [i]], spectra[:, [j]])[0] for j in range(3)]
                     for i in range(3)])  # fmt: skip
    rows, cols = linear_sum_assignment(cost)
    out = np.empty_like(F)
    out[:, cols] = F[:, rows]
    return out


def test_joint_level_on_a_particle_map(rng, monkeypatch):
    """With the level (b = 4) the fit reports it, its full-resolution loop is monotone, it
    needs fewer full-resolution iterations, and it ends as close to the truth as the fit
    from the start alone."""
    G, W, H, Y = particles(rng)
    truth = G @ W
    fits = {}
    for on in (False, True):
        monkeypatch.setattr(plan_module, "COARSE_JOINT", on)
        monkeypatch.setattr(plan_module, "COARSE_JOINT_BLOCKS", 256)
        est = fit(G, Y.T)
        F = np.asarray(est.loss_history_)
        assert np.all(np.diff(F) <= 1e-12 * np.abs(F[:-1]))
        fits[on] = est
    off, on = fits[False], fits[True]
    assert off.coarse_iter_ == []
    assert [b for b, _ in on.coarse_iter_] == [4] and on.coarse_iter_[0][1] > 0
    assert on.n_iter_ < off.n_iter_
    a_off = _angles(_matched(off, truth), truth)
    a_on = _angles(_matched(on, truth), truth)
    # each phase within 1° of the fit without the level, or closer to the truth
    assert np.all(a_on <= a_off + 1.0), (a_on, a_off)
    np.testing.assert_allclose(on.H_.sum(axis=0), 1.0, atol=1e-6)
    assert np.mean((on.H_ - H) ** 2) <= np.mean((off.H_ - H) ** 2) + 1e-3


def test_chunked_and_in_memory_agree(rng, monkeypatch):
    da = pytest.importorskip("dask.array")
    monkeypatch.setattr(plan_module, "COARSE_JOINT_BLOCKS", 256)
    G, _, _, Y = particles(rng)
    mem = fit(G, Y.T, max_iter=60)
    lazy = fit(G, da.from_array(Y.T, chunks=(1000, Y.shape[0])), max_iter=60)
    assert lazy.coarse_iter_ == mem.coarse_iter_ and mem.coarse_iter_[0][0] == 4
    np.testing.assert_allclose(lazy.components_, mem.components_, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(lazy.H_, mem.H_, atol=1e-9)


def test_interrupt_during_the_joint_level(rng, monkeypatch):
    """An interrupt in the binned level ends the fit with a feasible iterate on the full grid
    and no full-resolution iterations counted."""
    import esmpy_hs.nmf._coarse as coarse_module

    monkeypatch.setattr(plan_module, "COARSE_JOINT_BLOCKS", 256)
    G, _, _, Y = particles(rng)

    monkeypatch.setattr(coarse_module, "memory_pass", interrupted_pass)
    est = fit(G, Y.T, max_iter=30)
    assert est.stop_reason_ == "interrupted" and est.n_iter_ == 0
    assert est.coarse_iter_ == [(4, 0)]
    assert est.H_.shape == (3, SHAPE[0] * SHAPE[1])
    np.testing.assert_allclose(est.H_.sum(axis=0), 1.0)
    assert np.all(est.H_ > 0) and np.all(np.isfinite(est.components_))
