"""The start's refinement on binned blocks (step 4 of :mod:`esmpy_hs.nmf._init`) works on a
bounded number of blocks: on a large grid W is refined on a subset of the blocks that keeps
every cluster, then all the blocks' abundances are refitted with W held; a grid within the
bound takes the same path as before."""

from __future__ import annotations

import numpy as np
import pytest

import esmpy_hs.nmf._init as init_module
from esmpy_hs.nmf._data import as_compact
from esmpy_hs.nmf._solver import WParams
from esmpy_hs.nmf._solver import solve as _solve

ROWS = COLS = 96
N_CH = 64
K = 3


def _truth():
    """Three spectra (Gaussian peaks on a slope) and maps: two grains and small particles."""
    e = np.arange(N_CH)
    peaks = [(10, 40), (25, 50), (55, 18)]
    W = np.column_stack([
        0.2 + np.exp(-0.5 * ((e - a) / 2.0) ** 2) + 0.6 * np.exp(-0.5 * ((e - c) / 2.0) ** 2)
        for a, c in peaks
    ])  # fmt: skip
    W /= W.sum(axis=0, keepdims=True)
    r, c = np.mgrid[:ROWS, :COLS]
    H = np.zeros((K, ROWS, COLS))
    H[0] = c < COLS // 2
    H[1] = c >= COLS // 2
    for r0, c0 in [(12, 12), (40, 70), (70, 30), (80, 80), (20, 60)]:  # 7-px particles
        inside = (r - r0) ** 2 + (c - c0) ** 2 <= 12
        H[:, inside] = 0.0
        H[2, inside] = 1.0
    return W, H.reshape(K, -1)


def _start(monkeypatch, max_blocks: int, dose: float = 200.0):
    W, H = _truth()
    rng = np.random.default_rng(0)
    X = rng.poisson(dose * (W @ H).T).astype(np.uint16)
    data = as_compact(X)
    calls = []

    def recording(bdata, *args, **kwargs):
        calls.append((bdata.n_pixels, kwargs.get("update_W_", True), kwargs["max_iter"]))
        return _solve(bdata, *args, **kwargs)

    monkeypatch.setattr(init_module, "solve", recording)
    monkeypatch.setattr(init_module, "MAX_REFINE_BLOCKS", max_blocks)
    wp = WParams(False, np.ones(N_CH, dtype=bool), None, 1e-10, 1e-13)
    scale = data.total / (data.n_pixels * K)
    W0, Ht0 = init_module.auto_init(data, None, K, scale=scale, shape=(ROWS, COLS),
                                    simplex_H=True, wp=wp, dtype=np.float64)  # fmt: skip
    return W, H, W0, Ht0, calls


def _angles(W_true, W_fit):
    """Angle (degrees) of each true spectrum with its closest fitted one."""
    a = W_true / np.linalg.norm(W_true, axis=0)
    b = W_fit / np.linalg.norm(W_fit, axis=0)
    return np.degrees(np.arccos(np.clip((a.T @ b).max(axis=1), -1, 1)))


def test_the_subset_keeps_small_clusters_and_thins_large_ones():
    f = init_module.refine_subset
    labels = np.repeat([0, 1, 2, -1], [5000, 3000, 40, 3])
    assert f(labels, labels.size) is None  # within the bound: all blocks, as before
    chosen = f(labels, 4096)
    assert chosen.size <= 4096 and chosen.size > 4000
    assert np.all(np.diff(chosen) > 0)
    kept = np.bincount(labels[chosen] + 1, minlength=4)
    assert kept[3] == 40 and kept[0] == 3  # the small clusters whole
    assert abs(int(kept[1]) - int(kept[2])) <= 1  # the large ones thinned alike
    # evenly spread over each large cluster's blocks, not its first ones
    first = chosen[labels[chosen] == 0]
    assert first.min() < 5 and first.max() > 4990


def test_a_grid_within_the_bound_is_refined_once_on_its_blocks(monkeypatch):
    """576 binned blocks (b = 4): one refinement of W and H on all of them, whatever the
    bound above 576, with the same result."""
    _, _, W_a, Ht_a, calls_a = _start(monkeypatch, 4096)
    assert calls_a == [((ROWS // 4) * (COLS // 4), True, 100)]
    _, _, W_b, Ht_b, calls_b = _start(monkeypatch, 576)
    assert calls_b == calls_a
    np.testing.assert_array_equal(W_a, W_b)
    np.testing.assert_array_equal(Ht_a, Ht_b)


def test_a_large_grid_refines_w_on_at_most_the_bound(monkeypatch):
    """With the bound at 100 W is refined on at most 100 of the 24 × 24 blocks, then the 576
    blocks' abundances with W held; the spectra are as close to the truth as those of the
    refinement on all blocks, and the abundances still locate the particles."""
    W, H, W_all, _, _ = _start(monkeypatch, 4096)
    _, _, W_grp, Ht_grp, calls = _start(monkeypatch, 100)
    assert len(calls) == 2 and 50 < calls[0][0] <= 100 and calls[0][1:] == (True, 100)
    assert calls[1] == (576, False, init_module.H_REFIT_ITER)
    a_all, a_grp = _angles(W, W_all), _angles(W, W_grp)
    assert a_grp.max() <= max(a_all.max() + 1.0, 2.0), (a_all, a_grp)
    # the particle phase's abundance is high on the particles, low on the grains
    j = int(np.argmax((W / np.linalg.norm(W, axis=0))[:, 2] @ (W_grp / np.linalg.norm(W_grp,
                                                                                        axis=0))))
    on = H[2] > 0.5
    assert Ht_grp[on, j].mean() > 3 * Ht_grp[~on, j].mean()


@pytest.mark.parametrize("mu", [None, np.zeros(K)])
def test_the_blocks_mode_is_never_grouped(monkeypatch, mu):
    """When the refinement is the spectra estimate (``mu`` given: spectra from the blocks) it
    runs on all the blocks; only the start the full-resolution fit follows is grouped."""
    W, H = _truth()
    X = np.random.default_rng(1).poisson(200.0 * (W @ H).T).astype(np.uint16)
    data = as_compact(X)
    calls = []
    monkeypatch.setattr(init_module, "solve",
                        lambda d, *a, **kw: calls.append(d.n_pixels) or _solve(d, *a, **kw))
    monkeypatch.setattr(init_module, "MAX_REFINE_BLOCKS", 100)
    wp = WParams(False, np.ones(N_CH, dtype=bool), None, 1e-10, 1e-13)
    init_module.auto_init(data, None, K, scale=data.total / (data.n_pixels * K),
                          shape=(ROWS, COLS), simplex_H=True, wp=wp, dtype=np.float64, mu=mu)
    assert len(calls) == (2 if mu is None else 1) and calls[-1] == 576
