"""A map's first model check, eighth part (issue #13, the check's cost on small maps): each
cheaper part gives the numbers of the part it replaces, bit for bit.

The parts: the candidates' lines selected from all elements' lines joined, the fit's μ/ρ at
the channels handed to the absorption-edge columns, the edge columns and the lines'
neighbourhoods of all elements in one compiled pass, the presence test's normal-equation
blocks from its packed matrix and its refits on the kept columns taken in C order, and the
model's matrix extended from the one built before. The check on the captured inputs of real
fits is compared in ``benchmarks/compare_model_check.py`` (docs/validation.rst).
"""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.physics import EnergyAxis, Specimen, _irls, build_G, presence
from esmpy_hs.physics import identification as idm
from esmpy_hs.physics._elements import atomic_number
from esmpy_hs.physics.attenuation import elements_mass_attenuation
from tests.physics.conftest import AXIS, DET, KNOWN


@pytest.mark.parametrize(("axis", "e0"), [(AXIS, 200.0), (EnergyAxis(0.1, 0.02, 600), 15.0),
                                          (EnergyAxis(3.0, 0.005, 300), 5.0)])  # fmt: skip
def test_lines_from_the_joined_table_give_the_same_columns(fresh, monkeypatch, axis, e0):
    """The lines in the window, their columns (highest family and the rest) and their erf
    values, selected from all elements' lines joined, are those of the loop over elements,
    on axes that cut families off at either end and at a beam energy that leaves elements
    without lines."""
    built = {}
    for joined in (False, True):
        monkeypatch.setattr(idm, "LINE_TABLE", joined)
        built[joined] = idm._build_columns(axis, e0, idm.candidate_elements(), DET)
    a, b = built[False], built[True]
    assert a.elements == b.elements and len(a.elements) > 20
    np.testing.assert_array_equal(a.tied, b.tied)
    for e in a.elements:
        np.testing.assert_array_equal(a.family[e], b.family[e])
        assert a.lines[e] == b.lines[e]
    for x, y in zip(a.memo["line erf"][:4], b.memo["line erf"][:4], strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.memo["line erf"][4] == b.memo["line erf"][4]


def test_handed_attenuation_gives_the_same_edge_columns(fresh, monkeypatch):
    """μ/ρ handed over for the axis's exact channel energies gives the edge columns computed
    here; rows for other energies are not taken (a slightly different axis)."""
    cols = idm._columns(AXIS, 200.0, idm.candidate_elements(), DET)
    mu = elements_mass_attenuation([atomic_number(e) for e in KNOWN], AXIS.energies)
    want = {e: idm._edge_column(AXIS, cols.continuum, e) for e in KNOWN}
    shifted = EnergyAxis(AXIS.offset + 1e-9, AXIS.scale, AXIS.size)
    for energies, taken in ((AXIS.energies, True), (shifted.energies, False)):
        idm.hand_attenuation(energies, {e: 2.0 * mu[k] if not taken else mu[k]
                                        for k, e in enumerate(KNOWN)})  # fmt: skip
        assert bool(idm._handed_attenuation(AXIS, KNOWN)) == taken
        trial = idm._Columns(cols.elements, cols.tied, cols.family, cols.continuum, cols.lines,
                             {"line_arrays": cols.memo["line_arrays"]})  # fmt: skip
        idm._prepare_known(trial, AXIS, DET, KNOWN)
        for e in KNOWN:
            edge, near = trial.memo[("edges", e)]
            np.testing.assert_array_equal(edge, want[e][0])
            np.testing.assert_array_equal(near, want[e][1])
    idm.hand_attenuation(None)
    assert not idm._handed_attenuation(AXIS, KNOWN)


def test_the_check_hands_over_the_fit_attenuation_only_when_it_absorbs(fresh):
    """The fit's μ/ρ tables are handed over when its model absorbs (their values are μ/ρ at
    the channels), not when they are zeros; and forgotten after the check."""
    from esmpy_hs.signals import _model_check as mc

    thick = build_G(AXIS, 200, ["Fe", "O", "Si"], detector=DET,
                    specimen=Specimen(thickness=100.0, density=4.0))  # fmt: skip
    mc._hand_fit_attenuation(thick)
    rows = idm._handed_attenuation(AXIS, ["Fe", "O", "Si", "Ca"])
    assert sorted(rows) == ["Fe", "O", "Si"]
    mu = elements_mass_attenuation([atomic_number(e) for e in ("Fe", "O", "Si")],
                                   AXIS.energies)  # fmt: skip
    for k, e in enumerate(("Fe", "O", "Si")):
        np.testing.assert_array_equal(rows[e], mu[k])
    idm.hand_attenuation(None)
    thin = build_G(AXIS, 200, ["Fe", "O", "Si"], detector=DET)
    mc._hand_fit_attenuation(thin)
    assert not idm._handed_attenuation(AXIS, ["Fe", "O", "Si"])


def test_edge_columns_together_are_each_elements(fresh):
    """The edge columns of many elements in one pass equal each element's own, on axes where
    edges fall near either end."""
    for axis in (AXIS, EnergyAxis(0.1, 0.02, 600), EnergyAxis(0.05, 0.005, 4045)):
        cols = idm._build_columns(axis, 200.0, idm.candidate_elements(), DET)
        mu = elements_mass_attenuation([atomic_number(e) for e in cols.elements],
                                       axis.energies)  # fmt: skip
        got = idm._edge_columns(axis, cols.continuum, list(mu))
        for k, e in enumerate(cols.elements):
            edge, near = idm._edge_column(axis, cols.continuum, e, mu[k])
            assert (got[k][0] is None) == (edge is None)
            if edge is not None:
                np.testing.assert_array_equal(got[k][0], edge)
            np.testing.assert_array_equal(got[k][1], near)
    assert idm._edge_columns(AXIS, cols.continuum, []) == []


def test_compiled_neighbourhoods_are_numpys(fresh, monkeypatch):
    for axis in (AXIS, EnergyAxis(0.1, 0.02, 600)):
        cols = idm._build_columns(axis, 200.0, idm.candidate_elements(), DET)
        got = idm._neighbourhoods(cols, axis, DET)
        monkeypatch.setattr(idm, "COMPILED", False)
        want = idm._neighbourhoods(cols, axis, DET)
        monkeypatch.setattr(idm, "COMPILED", True)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)
        assert got[0].any() and got[1].any()


def test_blocks_from_the_packed_matrix_are_the_same():
    """The normal equations' blocks taken from the packed matrix equal those of ``A / norm``,
    and so do the normal equations."""
    rng = np.random.default_rng(4)
    A = rng.random((1975, 60)) * (rng.random((1975, 60)) < 0.2)
    A[:, 7] = 0.0
    A[300:700, 9] = rng.random(400)
    norm = _irls.column_norms(A)
    a = idm._BlockMatrix(A / norm)
    b = idm._BlockMatrix.from_packed(*A.shape, *_irls.pack_blocks(A, norm, _irls.BLOCK))
    assert len(a.parts) == len(b.parts)
    for p, q in zip(a.parts, b.parts, strict=True):
        assert p[:2] == q[:2]
        for x, y in zip(p[2:], q[2:], strict=True):
            np.testing.assert_array_equal(x, y)
    sw, v = rng.uniform(0.1, 1.0, 1975), rng.normal(size=1975)
    for x, y in zip(a.normal(sw, v), b.normal(sw, v), strict=True):
        np.testing.assert_array_equal(x, y)


def test_taken_refits_use_the_same_matrix_and_norms(fresh, monkeypatch):
    """The presence test's refits on the kept columns in C order, with NumPy's norms of
    ``A[:, keep]``, give the same statistics as the refits on ``A[:, keep]``."""
    rng = np.random.default_rng(0)
    A = rng.random((1980, 50)) * (rng.random((1980, 50)) < 0.3)
    keep = np.ones(50, dtype=bool)
    keep[[3, 11, 12]] = False
    want = np.sqrt((A[:, keep] ** 2).sum(axis=0))
    np.testing.assert_array_equal(np.sqrt((np.asfortranarray(A) ** 2).sum(axis=0))[keep], want)
    m = build_G(AXIS, 200, ["Mg", "Si", "O", "Fe", "Ca"])
    amp = np.where(np.array(m.kinds) == "element", 2e5, 1e5)
    amp[list(m.column_elements).index("Ca")] = 200.0  # a weak Ca: its bound is refitted
    y = rng.poisson(m.G @ amp).astype(float)
    listed = ["Mg", "Si", "O", "Fe", "Ca", "Zr", "Ti"]
    out = {}
    for taken in (False, True):
        monkeypatch.setattr(presence, "TAKEN_REFITS", taken)
        out[taken] = presence.listed_presence(y, AXIS, 200, listed, detector=DET)
    a, b = out[False], out[True]
    assert "Ca" not in a["upper_bound"] and a["statistic"]["Ca"] > a["threshold"]  # (refitted)
    for k in ("statistic", "counts", "not_detected", "upper_bound"):
        assert a[k] == b[k]


def test_matrix_extended_from_the_last_is_the_same(fresh, monkeypatch):
    """The model's matrix after an element is added or the artefacts replaced, copied in part
    from the matrix before, equals the matrix of its blocks."""
    rng = np.random.default_rng(1)
    m = build_G(AXIS, 200, ["Mg", "Si", "O", "Fe"])
    y = rng.poisson(m.G @ np.full(m.G.shape[1], 1e5)).astype(float)
    cols = idm._columns(AXIS, 200.0, idm.candidate_elements(), DET)
    state = idm._State(y, np.zeros_like(y), cols, AXIS, DET, None)
    for e in ("Mg", "Si", "O"):
        state.add(e)
    state.fit()  # (a matrix, then the artefacts appended: one from the other)
    state.add("Fe")  # (the artefacts dropped, Fe's blocks appended)
    for _ in range(2):
        A = state.matrix()[0]
        np.testing.assert_array_equal(A, np.concatenate([b[0] for b in state.blocks], axis=1))
        assert A.flags.c_contiguous
        state.fit()


def _normal_scalar(n, p, block, cptr, cols, vptr, vals, sw, v):
    """The normal equations as the scalar loops before the unsigned indices (plain Python
    floats: the same correctly rounded operations in the same order)."""
    M = [[0.0] * p for _ in range(p)]
    rhs = [0.0] * p
    for b in range(cptr.size - 1):
        c = int(cptr[b + 1] - cptr[b])
        if c == 0:
            continue
        c0, start = int(cptr[b]), b * block
        rows = min(block, n - start)
        G = [[0.0] * c for _ in range(c)]
        s = [0.0] * c
        B = [[0.0] * c for _ in range(rows)]
        for r in range(rows):
            for t in range(c):
                a = float(vals[vptr[b] + r * c + t])
                B[r][t] = a * float(sw[start + r])
                s[t] += float(v[start + r]) * a
        r = 0
        while r + 4 <= rows:
            for i in range(c):
                b0, b1, b2, b3 = B[r][i], B[r + 1][i], B[r + 2][i], B[r + 3][i]
                if b0 == 0.0 and b1 == 0.0 and b2 == 0.0 and b3 == 0.0:
                    continue
                for j in range(c):
                    G[i][j] += (b0 * B[r][j] + b1 * B[r + 1][j] + b2 * B[r + 2][j]
                                + b3 * B[r + 3][j])  # fmt: skip
            r += 4
        while r < rows:
            for i in range(c):
                if B[r][i] != 0.0:
                    for j in range(c):
                        G[i][j] += B[r][i] * B[r][j]
            r += 1
        for i in range(c):
            ci = int(cols[c0 + i])
            rhs[ci] += s[i]
            for j in range(c):
                M[ci][int(cols[c0 + j])] += G[i][j]
    return np.array(M), np.array(rhs)


def test_vectorised_normal_equations_and_elimination_are_the_scalar_loops():
    """The IRLS step's normal equations and the elimination of the free columns, their inner
    loops on unsigned indices (so that they vectorise), give the numbers of the scalar loops
    (elementwise operations in the same order, no fused multiply-add)."""
    rng = np.random.default_rng(7)
    n, p = 301, 23
    A = rng.random((n, p)) * (rng.random((n, p)) < 0.4)
    norm = _irls.column_norms(A)
    packed = _irls.pack_blocks(A, norm, 64)
    sw, v = rng.uniform(0.2, 2.0, n), rng.normal(size=n)
    M, rhs = np.empty((p, p)), np.empty(p)
    _irls._normal(n, p, 64, *packed, sw, v, M, rhs)
    M0, rhs0 = _normal_scalar(n, p, 64, *packed, sw, v)
    np.testing.assert_array_equal(M, M0)
    np.testing.assert_array_equal(rhs, rhs0)
    # the elimination: gram_nnls with every column free is the Cholesky solve of the scaled,
    # ridged system; the same steps in plain Python floats
    signed = np.ones(p, dtype=bool)
    out = np.empty(p)
    assert _irls.gram_nnls(M, rhs, signed, 1e-10, np.zeros(p, bool), False, out)
    scale = [float(np.sqrt(max(M[i, i], 1e-300))) for i in range(p)]
    S = [[M[i, j] / (scale[i] * scale[j]) if j >= i else 0.0 for j in range(p)]
         for i in range(p)]  # fmt: skip
    z = [rhs[i] / scale[i] for i in range(p)]
    for i in range(p):
        S[i][i] += 1e-10
    for j in range(p):
        d = float(np.sqrt(S[j][j]))
        for t in range(j, p):
            S[j][t] /= d
        z[j] /= d
        for i in range(j + 1, p):
            f = S[j][i]
            if f != 0.0:
                for t in range(i, p):
                    S[i][t] -= f * S[j][t]
                z[i] -= f * z[j]
    x = [0.0] * p
    for i in range(p - 1, -1, -1):
        s = z[i]
        for k in range(i + 1, p):
            s -= S[i][k] * x[k]
        x[i] = s / S[i][i]
    np.testing.assert_array_equal(out, np.array(x) / np.array(scale))


def test_cast_masks_and_tied_columns_are_the_same(fresh, monkeypatch):
    """The dispersion with the channel masks kept as C-order 0/1 values equals the one that
    casts the boolean masks at each product (the masks of a selection are in Fortran order,
    as a column selection gives them); the tied columns copied 64 channels at a time equal
    NumPy's."""
    cols = idm._columns(AXIS, 200.0, idm.candidate_elements(), DET)
    _, ring = idm._neighbourhoods(cols, AXIS, DET)
    sel = list(range(3, 60, 2))
    d = np.random.default_rng(2).gamma(1.0, 2.0, AXIS.size)
    got = {}
    for cast in (False, True):
        monkeypatch.setattr(idm, "CAST_MASKS", cast)
        kept = idm._Selection(cols.tied[:, sel], ring[:, sel])
        assert not kept.ring.flags.c_contiguous
        got[cast] = kept.dispersion(d, 40)
    np.testing.assert_array_equal(got[True], got[False])
    rng = np.random.default_rng(0)
    Gt = rng.random((141, 1980))
    first = np.sort(rng.choice(140, 78, replace=False)).astype(np.int64)
    two = rng.random(78) < 0.6
    want = np.ascontiguousarray(Gt.T[:, first])
    want[:, two] += Gt.T[:, first[two] + 1]
    np.testing.assert_array_equal(_irls.tied_columns(Gt, first, two), want)


def test_warm_artefact_fit_finds_the_same(monkeypatch):
    """The fit with the escape and sum peaks from the fitted line counts, started from the
    previous fit's amplitudes (``WARM_ARTEFACT_FIT``), finds the same elements as the cold
    start, with the same test statistics to the IRLS stopping rule (relative change of the
    fitted spectrum 1e-4 per step), and does start warm."""
    from esmpy_hs.physics import build_G
    from esmpy_hs.physics import identification as idm

    axis = (0.2553, 0.01001, 1980)
    comp = {"O": 0.55, "Mg": 0.18, "Si": 0.17, "Fe": 0.05, "Ca": 0.05}
    model = build_G(axis, 200.0, list(comp))
    W = np.zeros(model.n_columns)
    for el, j in model.element_rows.items():
        W[j] = comp[el]
    for j, label in enumerate(model.labels):  # the continuum with the elements' weight
        if label.startswith("continuum"):
            W[j] = 0.5
    mean = model.G @ W
    mean *= 4e6 / mean.sum()
    y = np.random.default_rng(11).poisson(mean).astype(float)
    without_ca = model.G.copy()
    without_ca[:, model.element_rows["Ca"]] = 0.0
    explained = without_ca @ W * (4e6 / (model.G @ W).sum())
    starts = []
    original = idm._fit

    original_packed = idm._fit_packed

    def spy(A, signed, y_, offset, a0=None, n_iter=20):
        starts.append(a0 is not None)
        return original(A, signed, y_, offset, a0, n_iter)

    def spy_packed(n, norm, packed, signed, y_, offset, a0=None, n_iter=20):
        starts.append(a0 is not None)
        return original_packed(n, norm, packed, signed, y_, offset, a0, n_iter)

    runs = {}
    for warm in (False, True):
        monkeypatch.setattr(idm, "WARM_ARTEFACT_FIT", warm)
        monkeypatch.setattr(idm, "_fit", spy)
        monkeypatch.setattr(idm, "_fit_packed", spy_packed)
        starts.clear()
        r = idm.identify(y, axis, 200.0, known=["O", "Mg", "Si", "Fe"], explained=explained)
        runs[warm] = (r, list(starts))
    (cold, cold_starts), (warm, warm_starts) = runs[False], runs[True]
    assert "Ca" in cold.elements and cold.elements == warm.elements
    assert sum(warm_starts) > sum(cold_starts)
    Tc = {e.element: e.statistic for e in cold.evidence}
    Tw = {e.element: e.statistic for e in warm.evidence}
    assert Tc.keys() == Tw.keys()
    for e in Tc:
        assert abs(Tc[e] - Tw[e]) <= 1e-2 * max(abs(Tc[e]), 1.0), e


def _state_with_elements(elements):
    rng = np.random.default_rng(3)
    m = build_G(AXIS, 200, ["Mg", "Si", "O", "Fe"])
    y = rng.poisson(m.G @ np.full(m.G.shape[1], 1e5)).astype(float)
    cols = idm._columns(AXIS, 200.0, idm.candidate_elements(), DET)
    state = idm._State(y, np.zeros_like(y), cols, AXIS, DET, 0.5 * y)
    for e in elements:
        state.add(e)
    return state


def test_packed_from_the_blocks_is_pack_blocks_of_the_matrix(fresh):
    """The model's packed blocks merged from each column block's pack (``_State.packed``):
    the same norms as ``_irls.column_norms`` of the dense matrix and the same arrays as
    ``_irls.pack_blocks`` of it, before and after the fit appends the escape and sum peaks,
    with an element added afterwards (its blocks' packs new, the others' kept), and for
    column blocks of another layout and of no columns."""
    state = _state_with_elements(("Mg", "Si", "O"))

    def same():
        A, lower, _ = state.matrix()
        norm = _irls.column_norms(A)
        ref = _irls.pack_blocks(A, norm, _irls.BLOCK)
        got_norm, got, got_lower = state.packed()
        np.testing.assert_array_equal(got_norm, norm)
        np.testing.assert_array_equal(got_lower, lower)
        for x, z in zip(ref, got, strict=True):
            assert x.dtype == z.dtype
            np.testing.assert_array_equal(x, z)
        return ref

    same()
    state.fit()
    assert any(b[3] for b in state.blocks)  # (the artefacts appended)
    same()
    state.add("Fe")
    same()
    # a Fortran-order block with zero columns here and there, and an empty block
    F = np.asfortranarray(state.cols.tied[:, :7] * (np.arange(7) % 3 != 0))
    state.blocks.append((F, np.zeros(7), [None] * 7, False))
    state.blocks.append((np.zeros((state.y.size, 0)), np.zeros(0), [], False))
    cptr = same()[0]
    assert np.all(np.diff(cptr) < state.n_params)  # (blocks without some columns: packed)


def test_packed_matrix_switch_gives_the_same_identification(fresh, monkeypatch):
    """``identify`` with the fits on the merged packs (``PACKED_MATRIX``) and on the dense
    matrix: the same elements and every statistic bit for bit, and the packed path taken."""
    rng = np.random.default_rng(5)
    m = build_G(AXIS, 200, ["Mg", "Si", "O", "Fe", "Ca"])
    y = rng.poisson(m.G @ np.full(m.G.shape[1], 3e4)).astype(float)
    calls = []
    original = idm._fit_packed

    def spy(*args, **kw):
        calls.append(1)
        return original(*args, **kw)

    monkeypatch.setattr(idm, "_fit_packed", spy)
    runs = {}
    for packed in (False, True):
        monkeypatch.setattr(idm, "PACKED_MATRIX", packed)
        calls.clear()
        r = idm.identify(y, AXIS, 200.0, known=["Mg", "Si", "O"], detector=DET)
        runs[packed] = (r, len(calls))
    (old, n_old), (new, n_new) = runs[False], runs[True]
    assert n_old == 0 and n_new > 0
    assert old.elements == new.elements and "Fe" in new.elements
    assert [(e.element, e.statistic) for e in old.evidence] == \
        [(e.element, e.statistic) for e in new.evidence]  # fmt: skip
    np.testing.assert_array_equal(old.fitted, new.fitted)


@pytest.mark.parametrize("order", ["C", "F"])
def test_pack_columns_is_column_norms_and_pack_blocks(order):
    """A column block's norms and pack in one call (``_irls.pack_columns``, column by column
    for a narrow block, row by row otherwise) equal ``column_norms`` and ``pack_blocks`` of
    the C-order block: zero columns, columns zero in some row blocks, a short last block."""
    rng = np.random.default_rng(2)
    for m in (1, 2, 3, 7):
        X = rng.random((700, m)) * (rng.random((700, 1)) < 0.3)
        X[:300, 0] = 0.0
        if m > 1:
            X[:, -1] = 0.0
        X = np.asarray(X, order=order)
        C = np.ascontiguousarray(X)
        norm = _irls.column_norms(C)
        got = _irls.pack_columns(X, _irls.BLOCK)
        for x, z in zip((norm, *_irls.pack_blocks(C, norm, _irls.BLOCK)), got, strict=True):
            np.testing.assert_array_equal(x, z)
