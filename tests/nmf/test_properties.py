"""Property tests on random small problems: monotone objective, constraints, determinism."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esmpy_hs.nmf import SmartNMF


@st.composite
def problems(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    k = draw(st.sampled_from([2, 3]))
    rows = draw(st.integers(2, 5))
    cols = draw(st.integers(2, 5))
    n = draw(st.integers(6, 14))
    p = rows * cols
    g_kind = draw(st.sampled_from(["none", "2d", "3d"]))
    m = n if g_kind == "none" else draw(st.integers(k, 6))
    if g_kind == "2d":
        G = rng.random((n, m)) ** 2
    elif g_kind == "3d":
        G = rng.random((k, n, m)) ** 2
    else:
        G = None
    mean = draw(st.sampled_from([0.3, 2.0, 20.0]))
    X = rng.poisson(mean * rng.random((p, n)) * 2).astype(np.int64)
    X[0, 0] += 1  # at least one count
    simplex = draw(st.sampled_from(["H", "W", None]))
    lam = draw(st.sampled_from([0.0, 0.7]))
    mu = draw(st.sampled_from([0.0, 0.05]))
    fixed = draw(st.sampled_from(["none", "W", "H"]))
    fixed_W = fixed_H = None
    if fixed == "W":
        fixed_W = np.full((m, k), np.nan)
        fixed_W[rng.integers(0, m), 0] = 0.0
        fixed_W[rng.integers(0, m), k - 1] = 0.1
    elif fixed == "H":
        fixed_H = np.full((k, p), np.nan)
        idx = rng.choice(p, size=max(1, p // 3), replace=False)
        fixed_H[0, idx] = rng.choice([0.0, 0.25], size=idx.size)
    return {
        "X": X, "G": G, "k": k, "shape": (rows, cols), "simplex": simplex, "lam": lam,
        "mu": mu, "fixed_W": fixed_W, "fixed_H": fixed_H, "seed": seed,
    }  # fmt: skip


def _fit(pb, max_iter=12):
    est = SmartNMF(
        pb["G"], pb["k"], lambda_L=pb["lam"], mu=pb["mu"], epsilon_reg=0.3,
        simplex=pb["simplex"], fixed_W=pb["fixed_W"], fixed_H=pb["fixed_H"], init="random",
        random_state=pb["seed"], shape_2d=pb["shape"], max_iter=max_iter, tol=0.0,
        loss_every=1, progress=False,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        H = est.fit_transform(sp.csr_array(pb["X"]))
    return est, H


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_objective_never_increases_and_constraints_hold(pb):
    est, H = _fit(pb)
    F = np.array(est.loss_history_)
    assert est.loss_iterations_ == list(range(len(F)))
    assert np.all(np.isfinite(F))
    assert np.all(np.diff(F) <= 1e-10 * np.abs(F[:-1]) + 1e-12), np.diff(F)
    assert np.all(np.isfinite(est.W_)) and np.all(np.isfinite(H))
    assert np.all(est.W_ >= 0) and np.all(H >= 0)
    if pb["simplex"] == "H":
        np.testing.assert_allclose(est.H_.sum(axis=0), 1.0, rtol=0, atol=1e-9)
    if pb["simplex"] == "W":
        np.testing.assert_allclose((est.W_ / est.scale_).sum(axis=0), 1.0, rtol=0, atol=1e-9)
    if pb["fixed_W"] is not None:
        fw = pb["fixed_W"]
        sel = ~np.isnan(fw)
        W_units = est.W_ / est.scale_ if pb["simplex"] == "W" else est.W_
        np.testing.assert_allclose(W_units[sel], fw[sel], rtol=1e-12, atol=1e-15)
    if pb["fixed_H"] is not None:
        fh = pb["fixed_H"]
        sel = ~np.isnan(fh)
        np.testing.assert_array_equal(est.H_[sel], fh[sel])


@settings(max_examples=10, deadline=None)
@given(problems())
def test_same_random_state_same_result(pb):
    a, Ha = _fit(pb, max_iter=5)
    b, Hb = _fit(pb, max_iter=5)
    np.testing.assert_array_equal(a.W_, b.W_)
    np.testing.assert_array_equal(Ha, Hb)
    assert a.loss_history_ == b.loss_history_
