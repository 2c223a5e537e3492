"""The per-column surrogate solver against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from esmpy_hs.nmf._simplex import solve_column, solve_columns


def surrogate(x, c, beta, q):
    return float(np.sum(-c * np.log(x) + beta * x + q * x * x))


def brute(c, beta, q, total, eps):
    r = c.size
    res = minimize(
        lambda x: surrogate(x, c, beta, q),
        np.full(r, total / r),
        method="SLSQP",
        bounds=[(eps, total)] * r,
        constraints=[{"type": "eq", "fun": lambda x: x.sum() - total}],
        options={"ftol": 1e-14, "maxiter": 500},
    )
    return res.x


@pytest.mark.parametrize("q", [0.0, 0.7])
@pytest.mark.parametrize("seed", range(6))
def test_simplex_column_matches_brute_force(q, seed):
    rng = np.random.default_rng(seed)
    r = 4
    c = rng.random(r) * rng.choice([0.01, 1.0, 10.0])
    beta = rng.random(r) + (0.0 if q == 0 else rng.normal(0, 1, r))
    total = 0.8
    out = np.full(r, 0.2)
    solve_column(c, beta, q, np.ones(r, bool), total, 1e-10, True, 1e-13, out)
    assert out.sum() == pytest.approx(total, abs=1e-12)
    ref = brute(c, beta, q, total, 1e-10)
    assert surrogate(out, c, beta, q) <= surrogate(ref, c, beta, q) + 1e-9


def test_no_counts_from_a_start_off_the_simplex():
    """c = 0 (a pixel without counts), q > 0, a start whose entries do not sum to the total: the
    fallback start ν = −max β puts one entry at the kink of g (x = 0), where the derivative
    was 0/0; the solve must still land on the simplex at the minimum."""
    beta = np.array([0.3, -0.2, 0.1])
    q = 0.5
    out = np.array([0.9, 0.9, 0.9])
    solve_column(np.zeros(3), beta, q, np.ones(3, bool), 1.0, 1e-12, True, 1e-12, out)
    assert out.sum() == pytest.approx(1.0, abs=1e-10)
    ref = brute(np.zeros(3), beta, q, 1.0, 1e-12)
    assert surrogate(out, np.zeros(3), beta, q) <= surrogate(ref, np.zeros(3), beta, q) + 1e-9


def test_unconstrained_closed_form():
    c = np.array([1.0, 2.0, 0.0])
    beta = np.array([2.0, 1.0, 1.0])
    out = np.full(3, 0.5)
    solve_column(c, beta, 0.0, np.ones(3, bool), 1.0, 1e-10, False, 1e-13, out)
    np.testing.assert_allclose(out, [0.5, 2.0, 1e-10])


def test_degenerate_linear_case_puts_mass_on_smallest_beta():
    # empty pixel: c = 0, q = 0: the surrogate is linear, minimised at a vertex
    c = np.zeros(3)
    beta = np.array([2.0, 1.0, 3.0])
    out = np.full(3, 1 / 3)
    solve_column(c, beta, 0.0, np.ones(3, bool), 1.0, 1e-10, True, 1e-13, out)
    assert out.sum() == pytest.approx(1.0, abs=1e-15)
    assert np.argmax(out) == 1
    assert np.all(np.isfinite(out))


def test_fixed_entries_untouched_and_columns_vectorised():
    rng = np.random.default_rng(0)
    C = rng.random((5, 3))
    B = rng.random((5, 3)) + 0.5
    free = np.ones((5, 3), bool)
    free[0, 0] = False
    out = np.full((5, 3), 0.1)
    out[0, 0] = 0.3
    total = np.array([0.7, 1.0, 1.0])
    solve_columns(C, B, np.zeros(3), free, total, 1e-10, True, 1e-13, out)
    assert out[0, 0] == 0.3
    np.testing.assert_allclose(out[1:, 0].sum(), 0.7, atol=1e-13)
    np.testing.assert_allclose(out[:, 1:].sum(axis=0), 1.0, atol=1e-13)
