"""Count splitting (binomial thinning) and the held-out scores of esmpy_hs.nmf._split."""

import numpy as np
import pytest
import scipy.sparse as sp

from esmpy_hs.nmf._data import as_compact
from esmpy_hs.nmf._split import (
    bin_pixels,
    choose_bin,
    one_se_choice,
    poisson_deviance,
    split_counts,
    window_sums,
)


def test_halves_are_independent_poisson_with_half_the_mean():
    # 200 000 entries of known means from 0.5 to 40 counts
    rng = np.random.default_rng(1)
    m = rng.choice([0.5, 3.0, 40.0], size=(2000, 100))
    X = rng.poisson(m)
    A, B = split_counts(X, random_state=2)
    assert np.array_equal(A + B, X)
    assert A.min() >= 0 and B.min() >= 0
    for mean in (0.5, 3.0, 40.0):
        sel = m == mean
        n = sel.sum()
        for half in (A, B):
            v = half[sel].astype(float)
            # mean m/2 within 4 standard errors; Poisson: variance = mean (within 5 %)
            assert abs(v.mean() - mean / 2) < 4 * np.sqrt(mean / 2 / n)
            assert v.var() == pytest.approx(mean / 2, rel=0.05)
        # independence: the correlation of the two halves is 0 within 4/√n (a split of the
        # counts that were drawn, e.g. X // 2, would be strongly correlated)
        r = np.corrcoef(A[sel], B[sel])[0, 1]
        assert abs(r) < 4 / np.sqrt(n)
    # the naive halving fails the same test (the test can fail)
    sel = m == 40.0
    assert np.corrcoef((X // 2)[sel], (X - X // 2)[sel])[0, 1] > 0.9


def test_split_is_reproducible_and_p_sets_the_share():
    X = np.random.default_rng(0).poisson(10.0, size=(300, 50))
    A1, _ = split_counts(X, random_state=5)
    A2, _ = split_counts(X, random_state=5)
    assert np.array_equal(A1, A2)
    A3, B3 = split_counts(X, random_state=5, p=0.2)
    assert A3.sum() / X.sum() == pytest.approx(0.2, abs=0.01)
    assert np.array_equal(A3 + B3, X)


def test_split_sparse_and_compact_sum_to_the_original():
    X = np.random.default_rng(3).poisson(0.3, size=(400, 200))
    S = sp.csr_array(X)
    A, B = split_counts(S, random_state=1)
    assert sp.issparse(A) and np.array_equal((A + B).toarray(), X)
    C = as_compact(X)
    Ac, Bc = split_counts(C, random_state=1)
    assert Ac.total + Bc.total == C.total
    assert np.array_equal(Ac.to_dense() + Bc.to_dense(), C.to_dense())
    Cd = as_compact(np.random.default_rng(3).poisson(30.0, size=(50, 20)))
    assert Cd.is_dense
    Ad, Bd = split_counts(Cd, random_state=1)
    assert np.array_equal(Ad.to_dense() + Bd.to_dense(), Cd.to_dense())


@pytest.mark.parametrize("bad", [np.array([[1.5, 2.0]]), np.array([[-1, 2]]), np.array([[np.nan]])])
def test_split_refuses_what_is_not_counts(bad):
    with pytest.raises(ValueError, match="integer counts"):
        split_counts(bad)
    with pytest.raises(ValueError, match="p must be"):
        split_counts(np.ones((2, 2), dtype=int), p=1.0)


def test_bin_pixels_sums_blocks_and_crops_edges():
    X = np.arange(5 * 6 * 3).reshape(30, 3)
    Xb, shape = bin_pixels(X, (5, 6), 2)
    assert shape == (2, 3)
    cube = X.reshape(5, 6, 3)
    assert np.array_equal(Xb[0], cube[0:2, 0:2].sum(axis=(0, 1)))
    assert np.array_equal(Xb[5], cube[2:4, 4:6].sum(axis=(0, 1)))
    Xl, sl = bin_pixels(X, (30,), 2)
    assert sl == (7,) and np.array_equal(Xl[1], X[4:8].sum(axis=0))
    assert choose_bin((128, 128), 1024) == 4
    assert choose_bin((32, 32), 1024) == 1
    assert choose_bin(None) == 1


def test_poisson_deviance_matches_the_formula():
    rng = np.random.default_rng(4)
    C = rng.uniform(0.1, 2.0, size=(2, 30))
    H = rng.dirichlet([1, 1], size=500).T
    M = H.T @ C
    Y = rng.poisson(M)
    ratio = np.where(Y > 0, Y / M, 1.0)
    expected = 2 * np.sum(Y * np.log(ratio) - Y + M) / Y.sum()
    for form in (Y, sp.csr_array(Y), as_compact(Y)):
        assert poisson_deviance(form, C, H) == pytest.approx(expected, rel=1e-10)
    # dense storage of high counts
    Y2 = rng.poisson(M * 100)
    ratio = np.where(Y2 > 0, Y2 / (M * 100), 1.0)
    expected2 = 2 * np.sum(Y2 * np.log(ratio) - Y2 + M * 100) / Y2.sum()
    assert poisson_deviance(Y2, C * 100, H) == pytest.approx(expected2, rel=1e-10)
    with pytest.raises(ValueError, match="do not match"):
        poisson_deviance(Y, C[:, :-1], H)


def test_one_se_rule():
    ks = np.arange(1, 6)
    base = np.array([1.0, 0.5, 0.30, 0.2999, 0.301])
    noise = np.array([[0.0], [0.01], [-0.01]])  # split noise common to every k
    jitter = np.array([[0, 0, 0, 0.0002, 0], [0, 0, 0, -0.0002, 0], [0, 0, 0, 0.0001, 0]])
    out = one_se_choice(ks, base + noise + jitter)
    assert out["best_k"] == 4
    assert out["k"] == 3  # 3 is within the paired SE of 4
    # a clear improvement at 4 is kept
    base2 = base.copy()
    base2[3] = 0.25
    assert one_se_choice(ks, base2 + noise + jitter)["k"] == 4
    # one split: the minimum
    assert one_se_choice(ks, base[None])["k"] == 4


def test_one_se_rule_among_candidates():
    ks = np.arange(1, 6)
    base = np.array([1.0, 0.5, 0.30, 0.25, 0.20])
    noise = np.array([[0.0], [0.01], [-0.01]])
    # without candidates the lowest, 5; with 4 and 5 left out, 3; k = 1 is always a candidate
    assert one_se_choice(ks, base + noise)["k"] == 5
    out = one_se_choice(ks, base + noise, candidates=[True, True, True, False, False])
    assert out["k"] == 3 and out["best_k"] == 3
    # a candidate beyond a non-candidate is still one
    assert one_se_choice(ks, base + noise, candidates=[False, False, True, False, True])["k"] == 5
    assert one_se_choice(ks, base + noise, candidates=[False] * 5)["k"] == 1
    with pytest.raises(ValueError, match="one entry per k"):
        one_se_choice(ks, base + noise, candidates=[True, False])


def test_window_sums_keep_poisson_counts_and_deviance():
    rng = np.random.default_rng(3)
    H = rng.dirichlet(np.ones(2), size=50).T  # 2 × 50
    C = rng.uniform(0.5, 5.0, size=(2, 12))
    Y = rng.poisson(H.T @ C)
    windows = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4, 4])
    S = window_sums(Y, windows)
    P = np.zeros((12, 5))
    P[np.arange(12), windows] = 1
    assert np.array_equal(S.to_dense().T, Y @ P)
    assert np.array_equal(window_sums(sp.csr_array(Y), windows).to_dense().T, Y @ P)
    assert poisson_deviance(S, C @ P, H) == pytest.approx(poisson_deviance(Y @ P, C @ P, H))
    with pytest.raises(ValueError, match="window index"):
        window_sums(Y, windows[:-1])
