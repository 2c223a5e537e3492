"""The cheaper path of the identification's tests (issue #13, the model check's cost,
``identification.FAST_PATH``): each of its parts gives what the path before it gives.

The parts: the score screen (a candidate whose score at the current fit is ≤ 0 gains exactly 0,
so its Newton steps are skipped), the NNLS step started from a guessed set of positive
amplitudes (taken only when the optimality conditions hold), the Poisson fit on the matrix's
nonzero row blocks, the peak builder and the lines' neighbourhoods in one pass. The test on a
fitted map is in ``tests/signals/test_model_check.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.physics import Detector, EnergyAxis, build_G
from esmpy_hs.physics import identification as idm

AXIS = EnergyAxis(0.255, 0.01, 1975)


@pytest.fixture
def both_paths(monkeypatch):
    """Runs ``f`` with ``FAST_PATH`` off, then on; returns both results."""

    def run(f):
        out = []
        for fast in (False, True):
            monkeypatch.setattr(idm, "FAST_PATH", fast)
            out.append(f())
        return out

    return run


def _spectrum(seed: int = 0, missing: float = 0.0):
    """Counts of Mg, Si, O, Fe and the continuum at 200 kV (plus ``missing`` counts of Ca),
    and the model without Ca as the "explained" part."""
    rng = np.random.default_rng(seed)
    m = build_G(AXIS, 200, ["Mg", "Si", "O", "Fe"])
    amp = np.where(np.array(m.kinds) == "element", 2e5, 1e5)
    mu = m.G @ amp
    if missing:
        ca = build_G(AXIS, 200, ["Ca"], continuum=False).G[:, 0]
        mu_true = mu + missing * ca / ca.sum()
    else:
        mu_true = mu
    return rng.poisson(mu_true).astype(float), mu


def test_score_screen_gives_the_newton_screen_gains(both_paths):
    """Gains and amplitudes of every candidate equal with and without the score screen; the
    candidates with a score ≤ 0 (gain 0 by concavity) are a good part of them."""
    y, mu = _spectrum(1, missing=3e3)
    cols = idm._build_columns(AXIS, 200.0, idm.candidate_elements(), Detector())
    C = cols.tied
    (b0, g0), (b1, g1) = both_paths(lambda: idm._screen(y, mu, C))
    np.testing.assert_allclose(g1, g0, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(b1, b0, rtol=1e-12, atol=1e-12)
    score = (C * (y / mu - 1.0)[:, None]).sum(axis=0)
    assert np.all(g1[score <= 0] == 0.0) and np.sum(score <= 0) >= 10
    assert g1[cols.elements.index("Ca")] > 100  # the missing element is not screened out


@pytest.mark.parametrize("compiled", [False, True])
def test_nnls_from_a_guessed_support_equals_the_full_nnls(both_paths, monkeypatch, compiled):
    """Random strictly convex problems with free and non-negative columns: the step started
    from the right support, a wrong one or an empty one gives the full NNLS's solution (the
    SciPy path's; the compiled active set, ``identification.COMPILED``, to rounding)."""
    monkeypatch.setattr(idm, "COMPILED", compiled)
    rng = np.random.default_rng(3)
    for _ in range(20):
        n, p = 200, 30
        A = rng.normal(size=(n, p))
        y = A @ np.where(rng.random(p) < 0.5, rng.uniform(0, 2, p), -1.0) + rng.normal(size=n)
        w = rng.uniform(0.5, 2.0, n)
        signed = rng.random(p) < 0.3
        M, b = (A * w[:, None]).T @ A, (y * w) @ A
        monkeypatch.setattr(idm, "FAST_PATH", False)
        ref = idm._gram_nnls(M, b, signed)  # the SciPy path's full NNLS
        guesses = [(ref > 0) & ~signed, rng.random(p) < 0.5, np.zeros(p, bool)]
        for guess in guesses:
            old, new = both_paths(lambda g=guess, M=M, b=b, s=signed: idm._gram_nnls(
                M, b, s, passive=g))
            np.testing.assert_allclose(new, ref, rtol=1e-8, atol=1e-10 * np.abs(ref).max())
            np.testing.assert_array_equal(old, ref)  # the old path ignores the guess


def test_block_fit_equals_the_dense_fit(both_paths):
    """The Poisson fit over the matrix's nonzero row blocks: the same amplitudes and μ."""
    y, _ = _spectrum(2)
    m = build_G(AXIS, 200, ["Mg", "Si", "O", "Fe"])
    A = np.concatenate([m.G, idm._derivatives(m.G[:, 2:], AXIS.scale)], axis=1)
    signed = np.arange(A.shape[1]) >= m.G.shape[1]
    (a0, mu0), (a1, mu1) = both_paths(lambda: idm._fit(A, signed, y, np.zeros_like(y)))
    np.testing.assert_allclose(mu1, mu0, rtol=1e-9)
    np.testing.assert_allclose(a1, a0, rtol=1e-7, atol=1e-9 * np.abs(a0).max())


def test_peaks_and_neighbourhoods_are_the_same_numbers(both_paths):
    ax = EnergyAxis(0.213, 0.0101, 1900)
    det = Detector(resolution_mnka=128.0)
    old, new = both_paths(lambda: idm._build_columns(ax, 200.0, idm.candidate_elements(), det))
    np.testing.assert_array_equal(new.tied, old.tied)
    # the columns from each element's kept line arrays: the same elements, families, lines
    assert new.elements == old.elements and new.lines == old.lines
    for e in old.elements:
        np.testing.assert_array_equal(new.family[e], old.family[e])
    np.testing.assert_array_equal(new.continuum, old.continuum)
    (n0, r0), (n1, r1) = both_paths(lambda: idm._neighbourhoods(old, ax, det))
    np.testing.assert_array_equal(n1, n0)
    np.testing.assert_array_equal(r1, r0)
