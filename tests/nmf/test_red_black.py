"""The red-black sweep of the H step, and the compiled compaction of large integer inputs."""

from __future__ import annotations

import numpy as np
import pytest

import esmpy_hs.nmf._plan as plan_module
from esmpy_hs.nmf import SmartNMF, _data
from esmpy_hs.nmf._data import as_compact
from esmpy_hs.nmf._laplacian import grid_adjacency, grid_colouring
from esmpy_hs.nmf._objective import objective_dense
from esmpy_hs.nmf._simplex import solve_column
from esmpy_hs.nmf._solver import HParams, h_pass, sweep
from esmpy_hs.nmf._updates import compute_D

from .conftest import synthetic

SHAPE = (6, 7)


def problem(rng, dose=3.0):
    G, W, H = synthetic(rng, n=50, shape=SHAPE, k=3, n_peaks=6)
    Y = rng.poisson(dose * G @ W @ H)
    data = as_compact(Y.T)
    adj = grid_adjacency(SHAPE)
    mu = np.array([0.1, 0.0, 0.3])
    hp = HParams(0.5, data.total * 0.5, mu, 0.2, 0.8, *adj, True, None, 1e-10, 1e-13,
                 grid_colouring(SHAPE))  # fmt: skip
    H0 = 0.6 * H + 0.4 * rng.dirichlet(np.ones(3), size=H.shape[1]).T  # away from the data
    return G, W, Y, data, hp, np.ascontiguousarray(H0.T), mu


def memory_run(data, hp):
    chunk = data.chunk(0, data.n_pixels)

    def run(D, colsum, Ht, Ht_out, *, update_h, accumulate, want_loss, phase=-1):
        out = Ht if Ht_out is None else Ht_out
        return h_pass(chunk, D, colsum, Ht, 0, out, hp, update_h=update_h,
                      accumulate=accumulate, want_loss=want_loss, phase=phase)  # fmt: skip

    return run


def test_red_black_only_where_the_laplacian_dominates():
    assert plan_module.colouring((4, 5), plan_module.RED_BLACK_LAMBDA) is not None
    assert plan_module.colouring((4, 5), 0.5 * plan_module.RED_BLACK_LAMBDA) is None
    assert plan_module.colouring(None, 100.0) is None


def test_colouring_is_proper():
    ip, ix = grid_adjacency((5, 4))
    col = grid_colouring((5, 4))
    src = np.repeat(np.arange(20), np.diff(ip))
    assert np.all(col[src] != col[ix]) and set(col) == {0, 1}
    assert list(grid_colouring((5,))) == [0, 1, 0, 1, 0]


def test_sweep_loss_is_the_objective_of_the_entering_iterate(rng):
    G, W, Y, data, hp, Ht, mu = problem(rng)
    D = compute_D(G, W)
    res = sweep(memory_run(data, hp), hp, D, D.sum(0), Ht, np.empty_like(Ht), update_h=True,
                accumulate=True, want_loss=True)  # fmt: skip
    F = res.loss.sum() - hp.total_scaled
    ref = objective_dense(Y, D, Ht.T, lam=0.8, mu=mu, eps_reg=0.2,
                          adjacency=(hp.adj_indptr, hp.adj_indices), inv_scale=0.5)  # fmt: skip
    assert F == pytest.approx(ref, rel=1e-11)


def test_each_colour_solves_its_pixels_with_the_neighbours_held(rng):
    """Pixel by pixel, the sweep's result is the exact minimiser of the surrogate with the
    Laplacian taken exactly (q = λ·deg/2) around the neighbours' current values: colour 0
    around the entering H, colour 1 around colour 0's new values."""
    G, W, Y, data, hp, Ht, mu = problem(rng)
    D = compute_D(G, W)
    out = np.empty_like(Ht)
    sweep(memory_run(data, hp), hp, D, D.sum(0), Ht, out, update_h=True, accumulate=False,
          want_loss=False)  # fmt: skip
    col = hp.colour
    mixed = np.where(col[:, None] == 0, out, Ht)  # what colour 1 sees
    Yd = Y * hp.inv_scale
    for p in range(Ht.shape[0]):
        nb = hp.adj_indices[hp.adj_indptr[p] : hp.adj_indptr[p + 1]]
        around = Ht if col[p] == 0 else mixed
        h = Ht[p]
        a = D.T @ (Yd[:, p] / np.maximum(D @ h, 1e-30))
        c = h * a
        beta = D.sum(0) + mu / (h + 0.2) - 0.8 * around[nb].sum(axis=0)
        x = h.copy()
        solve_column(c, beta, 0.5 * 0.8 * len(nb), np.ones(3, bool), 1.0, 1e-10, True, 1e-13, x)
        np.testing.assert_allclose(out[p], x, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize(("dose", "lam", "ratio"), [(1.0, None, 0.75), (30.0, 10.0, 1.0)])
def test_red_black_descends_and_needs_fewer_iterations(rng, dose, lam, ratio, monkeypatch):
    """Both updates descend to the same minimum (W held); red-black gets there in fewer
    iterations than the simultaneous update, by most where the Laplacian dominates (low
    dose: λ = 60 by default at 1 count per pixel)."""
    G, W, H = synthetic(rng, n=60, shape=(24, 24), k=3, n_peaks=6)
    Y = rng.poisson(dose * (G @ W @ H) / (G @ W @ H).sum(axis=0).mean())
    kw = dict(shape_2d=(24, 24), max_iter=4000, tol=1e-11, angle_tol=0.0, momentum=0.0,
              progress=False, fixed_W=W, init="random", random_state=1,
              lambda_L=lam)  # fmt: skip
    fits = {}
    for rb in (True, False):
        monkeypatch.setattr(plan_module, "RED_BLACK", rb)
        est = SmartNMF(G, 3, **kw).fit(Y.T)
        F = np.asarray(est.loss_history_)
        assert np.all(np.diff(F) <= 1e-12 * np.abs(F[:-1]))
        fits[rb] = est
    assert fits[True].plan_.hp.colour is not None and fits[False].plan_.hp.colour is None
    assert fits[True].reconstruction_err_ == pytest.approx(fits[False].reconstruction_err_,
                                                           rel=1e-7)  # fmt: skip
    np.testing.assert_allclose(fits[True].H_, fits[False].H_, atol=2e-3)
    assert fits[True].n_iter_ < ratio * fits[False].n_iter_


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int64])
@pytest.mark.parametrize("channels_first", [False, True])
def test_compiled_compaction_equals_numpy(rng, monkeypatch, dtype, channels_first):
    X = rng.poisson(0.3, size=(300, 70)).astype(dtype)
    X[3, 5] = 200
    if dtype == np.int64:
        X[7, 1] = 70_000  # above uint16: float counts
    Xin = np.ascontiguousarray(X.T) if channels_first else X
    monkeypatch.setattr(_data, "_COMPILED_SIZE", 0)
    a = as_compact(Xin, channels_first=channels_first)
    monkeypatch.setattr(_data, "_COMPILED_SIZE", 1 << 62)
    b = as_compact(Xin, channels_first=channels_first)
    for f in ("indptr", "indices", "counts", "pixel_sums", "channel_sums"):
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and np.array_equal(x, y), f
    assert (a.total, a.ylogy) == (b.total, b.ylogy)
    dense = rng.poisson(3.0, size=(50, 40)).astype(dtype)  # > half nonzero: dense storage
    monkeypatch.setattr(_data, "_COMPILED_SIZE", 0)
    assert np.array_equal(as_compact(dense).dense, dense)


def test_compiled_compaction_refuses_negative_counts(monkeypatch):
    monkeypatch.setattr(_data, "_COMPILED_SIZE", 0)
    X = np.zeros((20, 30), dtype=np.int32)
    X[4, 4] = -3
    with pytest.raises(ValueError, match="1 negative value"):
        as_compact(X)
