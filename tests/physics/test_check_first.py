"""A map's first model check with less work per new energy axis (issue #13, the check's cost on
small maps): each cheaper part gives the numbers of the part it replaces.

The parts: the Poisson fits' column norms and block scan compiled, the known elements' line
groups and absorption-edge columns built together (their peaks from the erf values of the
candidates' columns on the same axis), the escape and sum peaks in one pass with each peak
shape evaluated once, the lines' lists made when asked for, and the presence test's one-step
bounds in one compiled call. The check on the captured inputs of real fits is compared in
``benchmarks/compare_model_check.py`` (docs/validation.rst).
"""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.physics import _irls, build_G, presence
from esmpy_hs.physics import identification as idm
from tests.physics.conftest import AXIS, DET, KNOWN


def test_column_norms_and_block_scan_are_numpys(monkeypatch):
    """The compiled column norms are NumPy's for a C-contiguous matrix; a matrix of another
    layout (a refit's ``A[:, keep]``) keeps NumPy's own norms, which sum its columns in
    another order; the block scan keeps the same columns per block as the scan of the
    quotients."""
    rng = np.random.default_rng(3)
    A = rng.random((1975, 40)) * (rng.random((1975, 40)) < 0.2)
    A[:, 5] = 0.0
    ref = np.sqrt((A**2).sum(axis=0))
    ref[ref <= 0] = 1.0
    np.testing.assert_array_equal(_irls.column_norms(A), ref)
    cptr, cols, vptr, vals = _irls.pack_blocks(A, ref, _irls.BLOCK)
    for b, start in enumerate(range(0, A.shape[0], _irls.BLOCK)):
        block = A[start: start + _irls.BLOCK] / ref
        want = np.nonzero((block != 0).any(axis=0))[0]
        np.testing.assert_array_equal(cols[cptr[b]: cptr[b + 1]], want)
        np.testing.assert_array_equal(vals[vptr[b]: vptr[b + 1]], block[:, want].reshape(-1))

    keep = np.ones(A.shape[1], bool)
    keep[3:9] = False
    B = A[:, keep]  # (Fortran order)
    assert not B.flags.c_contiguous
    seen = []
    original = _irls.irls

    def spy(M, norm, *args):
        seen.append(norm.copy())
        return original(M, norm, *args)

    monkeypatch.setattr(_irls, "irls", spy)
    y = rng.poisson(B @ rng.uniform(1, 5, B.shape[1]) + 20.0).astype(float)
    idm._fit(B, np.zeros(B.shape[1], bool), y, np.full(y.size, 20.0))
    want = np.sqrt((B**2).sum(axis=0))
    want[want <= 0] = 1.0
    np.testing.assert_array_equal(seen[0], want)


def test_known_elements_prepared_together_are_the_same(fresh):
    """The line groups and edge columns of the known elements, built together (with and
    without the candidates' erf values), equal those built one element at a time."""
    cols = idm._columns(AXIS, 200.0, idm.candidate_elements(), DET)
    assert "line erf" in cols.memo
    alone = {e: (idm._line_groups(AXIS, DET, *idm._line_arrays(cols, e)),
                 idm._edge_column(AXIS, cols.continuum, e)) for e in KNOWN}  # fmt: skip
    for reuse in (True, False):
        memo = {"line_arrays": cols.memo["line_arrays"]}
        if reuse:
            memo["line erf"] = cols.memo["line erf"]
        trial = idm._Columns(cols.elements, cols.tied, cols.family, cols.continuum, cols.lines,
                             memo)  # fmt: skip
        idm._prepare_known(trial, AXIS, DET, KNOWN)
        for e in KNOWN:
            (F, strong, table), (edge, near) = alone[e]
            F2, strong2, table2 = trial.memo[("groups", e)]
            edge2, near2 = trial.memo[("edges", e)]
            np.testing.assert_array_equal(F2, F)
            np.testing.assert_array_equal(strong2, strong)
            np.testing.assert_array_equal(table2, table)
            np.testing.assert_array_equal(near2, near)
            assert (edge is None) == (edge2 is None)
            if edge is not None:
                np.testing.assert_array_equal(edge2, edge)
        assert sum(trial.memo[("groups", e)][0].shape[1] for e in KNOWN) > 2 * len(KNOWN)


def test_lines_made_when_asked_are_the_lists(fresh, monkeypatch):
    """The lines' lists made when asked for, their arrays, the candidates' main lines and the
    testable set equal those of the path that builds every list."""
    cols = idm._columns(AXIS, 200.0, idm.candidate_elements(), DET)
    monkeypatch.setattr(idm, "COMPILED", False)
    plain = idm._build_columns(AXIS, 200.0, idm.candidate_elements(), DET)
    assert isinstance(cols.lines, idm._Lines) and isinstance(plain.lines, dict)
    assert cols.lines == plain.lines and list(cols.lines) == list(plain.lines)
    for e in ("Fe", "Sm", "Ca"):
        E, w = idm._line_arrays(cols, e)
        np.testing.assert_array_equal(E, [x[1] for x in plain.lines[e]])
        np.testing.assert_array_equal(w, [x[2] for x in plain.lines[e]])
    E, owner = idm._main_lines(cols)
    want = [idm._main_line_energies(plain.lines[e]) for e in plain.elements]
    np.testing.assert_array_equal(E, np.concatenate(want))
    np.testing.assert_array_equal(owner, np.repeat(np.arange(len(want)), [w.size for w in want]))
    monkeypatch.setattr(idm, "COMPILED", True)
    assert idm._testable(cols, AXIS, DET) == idm._testable(plain, AXIS, DET)


def test_artefacts_in_one_pass_are_the_same(monkeypatch):
    """The escape and sum peaks from fitted line counts: the sum peaks' centres and weights
    compiled, both columns in one peak pass with each (centre, width) evaluated once, equal
    the NumPy outer sums and the two passes."""
    rng = np.random.default_rng(5)
    groups = {}
    for e, E in (("Fe", [0.705, 0.718, 6.40, 6.39, 7.06]), ("Si", [1.74, 1.84]),
                 ("Sm", [5.64, 6.21, 6.59, 1.08, 1.10]), ("Ca", [3.69, 4.01])):  # fmt: skip
        groups[e] = (np.array(E), rng.uniform(10.0, 1e5, len(E)))
    got = idm._artefacts_by_counts(AXIS, DET, groups)
    monkeypatch.setattr(idm, "COMPILED", False)
    want = idm._artefacts_by_counts(AXIS, DET, groups)
    assert got.shape == want.shape == (AXIS.size, 2)
    np.testing.assert_array_equal(got, want)
    E = np.concatenate([g[0] for g in groups.values()])
    n = np.concatenate([g[1] for g in groups.values()])
    starts = np.cumsum([0] + [g[0].size for g in groups.values()]).astype(np.int64)
    cen, w = _irls.sum_peaks(E, n, starts, 0.2, 20.0)
    els = list(groups)
    ref_c, ref_w = [], []
    for i, a in enumerate(els):
        for b in els[i:]:
            c = (groups[a][0][:, None] + groups[b][0][None, :]).ravel()
            x = (groups[a][1][:, None] * groups[b][1][None, :]).ravel()
            ok = (c > 0.2) & (c < 20.0)
            ref_c.append(c[ok])
            ref_w.append(x[ok] * (1.0 if a == b else 2.0))
    np.testing.assert_array_equal(cen, np.concatenate(ref_c))
    np.testing.assert_array_equal(w, np.concatenate(ref_w))


def test_shared_peak_shapes_are_the_same(monkeypatch):
    """Peaks of the same centre and width evaluated once: the same columns as each evaluated
    on its own, whatever the order and the columns they go to."""
    edges = AXIS.edges
    rng = np.random.default_rng(11)
    for trial in range(20):
        c = rng.uniform(0.1, 21.0, int(rng.integers(32, 300)))
        c[rng.random(c.size) < 0.4] = c[0]
        if trial % 2:
            c = np.concatenate([c, c[::-1]])
        fw = DET.fwhm(c)
        w = rng.random(c.size)
        col = rng.integers(0, 3, c.size)
        monkeypatch.setattr(idm, "COMPILED", True)
        got = idm._peaks(edges, c, fw, w, col, 3)
        monkeypatch.setattr(idm, "COMPILED", False)
        np.testing.assert_array_equal(got, idm._peaks(edges, c, fw, w, col, 3))


def test_nonzero_entries_are_numpys():
    rng = np.random.default_rng(2)
    C = rng.random((300, 17)) * (rng.random((300, 17)) < 0.3)
    i, j = np.nonzero(C)
    got = _irls.nonzero_entries(C)
    for a, b in zip(got, (i, j, C[i, j]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_compiled_presence_bounds_equal_the_per_element_steps(fresh, monkeypatch):
    """The presence test's one-step bounds in one compiled call give the statistics of the
    per-element NumPy/SciPy steps to rounding (the same amplitudes, so every refit starts
    where it did; each bound's fitted spectrum summed in another order), and the same flags,
    bounds and refits."""
    rng = np.random.default_rng(0)
    m = build_G(AXIS, 200, ["Mg", "Si", "O", "Fe", "Ca"])
    amp = np.where(np.array(m.kinds) == "element", 2e5, 1e5)
    amp[list(m.column_elements).index("Ca")] = 200.0  # a weak Ca: its bound is refitted
    y = rng.poisson(m.G @ amp).astype(float)
    listed = ["Mg", "Si", "O", "Fe", "Ca", "Zr", "Ti"]  # Zr, Ti absent
    out = {}
    for compiled in (False, True):
        monkeypatch.setattr(presence, "COMPILED_BOUNDS", compiled)
        out[compiled] = presence.listed_presence(y, AXIS, 200, listed, detector=DET)
    a, b = out[False], out[True]
    assert a["not_detected"] == b["not_detected"] and "Zr" in a["not_detected"]
    assert a["upper_bound"] == b["upper_bound"] and "Ti" in a["upper_bound"]  # (a bound)
    assert "Ca" not in a["upper_bound"] and a["statistic"]["Ca"] > a["threshold"]  # (refitted)
    for e in listed:
        assert b["statistic"][e] == pytest.approx(a["statistic"][e], rel=1e-10, abs=1e-10)
        assert b["counts"][e] == a["counts"][e]
