"""The model check's compiled Poisson fits (``esmpy_hs.physics._irls``, issue #13, its cost):
the same problems as the NumPy/SciPy steps, solved to rounding, and the fallback to those
steps when a compiled solve fails."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import nnls

from esmpy_hs.physics import EnergyAxis, _irls, build_G
from esmpy_hs.physics import identification as idm

AXIS = EnergyAxis(0.255, 0.01, 1975)


def _kkt(M, b, signed, x, rtol=1e-9):
    """The optimality conditions of min ½xᵀMx − bᵀx, x ≥ 0 off ``signed``: feasible, the
    gradient 0 on the free and positive entries and ≥ 0 on those at 0."""
    g = M @ x - b
    tol = rtol * (np.abs(M).max() * np.abs(x).max() + np.abs(b).max())
    on = signed | (x > 0)
    assert np.all(x[~signed] >= 0)
    assert np.all(np.abs(g[on]) <= tol), np.abs(g[on]).max() / tol
    assert np.all(g[~on] >= -tol)


@pytest.mark.parametrize("frac_signed", [0.0, 0.3, 1.0])
def test_compiled_nnls_solves_the_problem(frac_signed):
    """Random problems, free columns none, some or all, with a right, a wrong and no guess:
    the compiled active set meets the optimality conditions and agrees with SciPy's NNLS on
    the problem without free columns."""
    rng = np.random.default_rng(7)
    for _ in range(15):
        n, p = 120, 25
        A = rng.normal(size=(n, p)) * rng.uniform(0.1, 10.0, p)  # unequal column scales
        y = A @ np.where(rng.random(p) < 0.5, rng.uniform(0, 2, p), -1.0) + rng.normal(size=n)
        signed = rng.random(p) < frac_signed
        M, b = A.T @ A, y @ A
        for guess in (None, rng.random(p) < 0.5, np.ones(p, bool)):
            out = np.empty(p)
            ok = _irls.gram_nnls(M, b, signed, 0.0, np.zeros(p, bool) if guess is None
                                 else guess, guess is not None, out)  # fmt: skip
            assert ok
            _kkt(M, b, signed, out)
            if frac_signed == 0.0:
                ref, _ = nnls(A, y)
                np.testing.assert_allclose(out, ref, rtol=1e-7, atol=1e-9 * np.abs(ref).max())


def test_compiled_fit_equals_the_numpy_fit(monkeypatch):
    """A check-sized Poisson fit (element columns, continuum, signed derivatives): the same
    amplitudes and μ, to rounding, from no start and from a start."""
    rng = np.random.default_rng(2)
    m = build_G(AXIS, 200, ["Mg", "Si", "O", "Fe", "Ca"])
    amp = np.where(np.array(m.kinds) == "element", 2e5, 1e5)
    y = rng.poisson(m.G @ amp).astype(float)
    A = np.concatenate([m.G, idm._derivatives(m.G[:, :5], AXIS.scale)], axis=1)
    signed = np.arange(A.shape[1]) >= m.G.shape[1]
    offset = 0.05 * y
    out = {}
    for compiled in (False, True):
        monkeypatch.setattr(idm, "COMPILED", compiled)
        a, mu = idm._fit(A, signed, y, offset)
        a2, mu2 = idm._fit(A, signed, y, offset, a0=a * 1.1, n_iter=3)
        out[compiled] = (a, mu, a2, mu2)
    for k in range(4):
        ref, got = out[False][k], out[True][k]
        np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-9 * np.abs(ref).max())


def test_a_failed_compiled_solve_falls_back_to_scipy(monkeypatch):
    """When a compiled solve reports a failure, the NumPy/SciPy steps give the answer."""
    rng = np.random.default_rng(4)
    A = rng.uniform(0.0, 1.0, size=(300, 12))
    y = rng.poisson(A @ rng.uniform(1, 50, 12)).astype(float)
    signed = np.zeros(12, bool)
    monkeypatch.setattr(idm, "COMPILED", False)
    ref = idm._fit(A, signed, y, np.zeros_like(y))
    M, b = A.T @ A, y @ A
    ref_step = idm._gram_nnls(M, b, signed)
    monkeypatch.setattr(idm, "COMPILED", True)
    monkeypatch.setattr(_irls, "irls", lambda *a: (np.zeros(12), np.zeros(300), False))
    monkeypatch.setattr(_irls, "gram_nnls", lambda *a: False)
    got = idm._fit(A, signed, y, np.zeros_like(y))
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_array_equal(idm._gram_nnls(M, b, signed), ref_step)


def test_compiled_peaks_and_screen_are_the_same_numbers(monkeypatch):
    """The candidates' columns (their peaks, tied columns and families), the screen's
    amplitudes and gains and a family's derivatives, compiled and in NumPy: bit-identical
    (only correctly rounded operations, summed in the same order; erf and log stay in SciPy
    and NumPy)."""
    from esmpy_hs.physics import Detector

    ax = EnergyAxis(0.2553, 0.01001, 1980)
    det = Detector(resolution_mnka=131.0)
    rng = np.random.default_rng(0)
    out = {}
    for compiled in (False, True):
        monkeypatch.setattr(idm, "COMPILED", compiled)
        cols = idm._build_columns(ax, 200.0, idm.candidate_elements(), det)
        mu = cols.continuum.sum(axis=1) * 1e6 + 5.0
        ca = cols.tied[:, cols.elements.index("Ca")]
        y = rng.poisson(mu + 3e4 * ca / ca.sum()).astype(float)
        rng = np.random.default_rng(0)
        out[compiled] = (cols.tied, *idm._screen(y, mu, cols.tied))
        out[compiled] += (idm._derivatives(cols.family["Fe"], ax.scale),)
        out[compiled] += tuple(cols.family[e] for e in cols.elements)  # copied when asked for
        assert cols.tied.flags.c_contiguous
        assert "Fe" in cols.family and "He" not in cols.family  # (He: no line on the axis)
    for old, new in zip(out[False], out[True], strict=True):
        np.testing.assert_array_equal(new, old)
    assert out[True][2][cols.elements.index("Ca")] > 100  # a gain that is not 0
    assert out[True][3].shape == (ax.size, 2 * cols.family["Fe"].shape[1])


def test_vectorised_mass_attenuation_is_the_same(monkeypatch):
    """μ/ρ through xraylib's NumPy binding (from ``VECTOR_MIN`` energies on) and one call per
    energy: the same C function, the same values, edges and the clipped ends included."""
    from esmpy_hs.physics import attenuation

    if attenuation._xrl_np is None:  # pragma: no cover - it comes with xraylib's wheels
        pytest.skip("xraylib_np not installed")
    rng = np.random.default_rng(1)
    E = np.concatenate([rng.uniform(0.05, 900.0, 500), np.linspace(0.1, 30.0, 400),
                        [0.1, 800.0, 1.8389, 1.839]])  # fmt: skip
    for z in (1, 6, 13, 14, 26, 47, 79, 92):
        monkeypatch.setattr(attenuation, "VECTOR_MIN", 64)
        vec = attenuation.element_mass_attenuation(z, E.reshape(4, -1))
        monkeypatch.setattr(attenuation, "VECTOR_MIN", 10**9)
        one = attenuation.element_mass_attenuation(z, E.reshape(4, -1))
        assert vec.shape == one.shape == (4, E.size // 4)
        np.testing.assert_array_equal(vec, one)
