"""The detection core of the element identification and the model check (issue #13):
its fast column build, its NNLS with free columns, and the line-set rules."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.optimize import nnls

from esmpy_hs.physics import Detector, EnergyAxis, build_G
from esmpy_hs.physics import identification as idm
from esmpy_hs.physics.detector import peak_matrix


def test_candidate_columns_equal_build_g():
    """The columns assembled line by line over each peak's channels are build_G's (family
    split, shared scale, continuum), on a calibrated-looking axis and a non-default detector."""
    ax = EnergyAxis(0.213, 0.0101, 1900)
    det = Detector(resolution_mnka=128.0)
    els = idm.candidate_elements()
    cols = idm._build_columns(ax, 200.0, els, det)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = build_G(ax, 200.0, els, detector=det, split={e: None for e in els})
    kinds = np.array(ref.kinds)
    col_el = np.array([str(c) for c in ref.column_elements], dtype=object)
    assert cols.elements == [e for e in ref.elements if e in cols.family]
    for e in cols.elements:
        F = ref.G[:, np.nonzero((col_el == e) & (kinds == "element"))[0]]
        np.testing.assert_allclose(cols.family[e], F, rtol=1e-10, atol=1e-14 * F.max())
    np.testing.assert_allclose(cols.continuum, ref.G[:, kinds == "continuum"], rtol=1e-10)


def test_windowed_peaks_equal_peak_matrix():
    ax = EnergyAxis(0.3, 0.01, 1500)
    rng = np.random.default_rng(0)
    E = rng.uniform(0.2, 15.5, 60)  # some centres near and beyond the axis ends
    fw = Detector().fwhm(E)
    w = rng.uniform(0, 1, 60)
    col = rng.integers(0, 3, 60)
    got = idm._peaks(ax.edges, E, fw, w, col, 3)
    P = peak_matrix(ax.edges, E, fw) * w
    want = np.stack([P[:, col == j].sum(axis=1) for j in range(3)], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_mixed_nnls_matches_doubled_columns():
    """Free columns eliminated through the Cholesky factor give the solution of the NNLS with
    each free column as a positive and a negative copy."""
    rng = np.random.default_rng(2)
    A = np.abs(rng.normal(size=(300, 12)))
    signed = np.zeros(12, dtype=bool)
    signed[[1, 4, 7]] = True
    A[:, signed] = rng.normal(size=(300, 3))
    truth = np.abs(rng.normal(size=12))
    truth[[2, 5]] = 0.0
    truth[4] = -0.7
    y = A @ truth + rng.normal(scale=0.05, size=300)
    w = rng.uniform(0.5, 2.0, 300)
    got = idm._mixed_nnls(A, y, w, signed, ridge=0.0)
    Ax = np.concatenate([A, -A[:, signed]], axis=1) * np.sqrt(w)[:, None]
    a, _ = nnls(Ax, y * np.sqrt(w))
    want = a[:12].copy()
    want[signed] -= a[12:]
    np.testing.assert_allclose(got, want, atol=1e-8)
    assert np.all(got[~signed] >= 0) and got[4] < 0


def _overlap_spectrum(seed):
    """Mg, Si, O, Fe on a 0.3–20 keV axis at 200 kV, plus a peak at 1.48 keV with the shape of
    Br's L lines but no Br K lines (11.9 keV): what a missing Al Kα that a fitted model has
    partly absorbed can look like. The test range stops at 10 keV."""
    full = EnergyAxis(0.3, 0.01, 1970)
    c1 = round((10.0 - 0.3) / 0.01)
    base = build_G(full, 200, ["Mg", "Si", "O", "Fe"]).G @ np.array(
        [2e5, 2e5, 3e5, 1e5, 3e5, 1e5])  # fmt: skip
    br = build_G(EnergyAxis(0.3, 0.01, c1), 200, ["Br"], continuum=False).G[:, 0]
    extra = np.zeros(full.size)
    extra[:c1] = 2e4 * br / br.sum()
    y = np.random.default_rng(seed).poisson(base + extra).astype(float)
    return y, c1, EnergyAxis(0.3, 0.01, c1)


def test_lines_above_the_range_decide_between_overlapping_candidates():
    """Issue #13: Br Lα (1.48 keV) and Al Kα (1.49 keV) overlap; with the counts above the
    tested range given, Br, whose Kα at 11.9 keV is absent there, is not named."""
    for seed in range(2):
        y, c1, win = _overlap_spectrum(seed)
        known = ["Mg", "Si", "O", "Fe"]
        blind = idm.identify(y[:c1], win, 200, known=known)
        assert blind.elements[0] == "Br"  # the peak alone: Br L fits it best
        seen = idm.identify(y[:c1], win, 200, known=known, beyond=y[c1:])
        assert "Br" not in seen.elements and "Al" in seen.elements


def test_lines_above_the_range_keep_a_present_element():
    """Br really there (its K lines above the range too): still found with ``beyond``."""
    full = EnergyAxis(0.3, 0.01, 1970)
    c1 = round((10.0 - 0.3) / 0.01)
    G = build_G(full, 200, ["Mg", "Si", "O", "Fe", "Br"]).G
    y = np.random.default_rng(4).poisson(G @ np.array([2e5, 2e5, 3e5, 1e5, 2e4, 3e5, 1e5]))
    y = y.astype(float)
    r = idm.identify(y[:c1], EnergyAxis(0.3, 0.01, c1), 200, known=["Mg", "Si", "O", "Fe"],
                     beyond=y[c1:])  # fmt: skip
    assert r.elements == ["Br"]


def test_sum_peaks_follow_fitted_counts_per_pair():
    """Pile-up of two strong lines whose count ratio is far from σ·ε (a bulk specimen):
    the sum peaks are modelled from the products of the lines' fitted counts (not of σ·ε), so
    the Al Kα + Ag Lα sum peak (4.47 keV) is not read as Ti Kα (4.51 keV) or Ba Lα (4.47 keV).
    With σ·ε weights, Ba was found here."""
    ax = EnergyAxis(0.3, 0.01, 1900)
    G = build_G(ax, 20, ["Al", "Ag"]).G
    mu = G @ np.array([4e5, 1e5, 2e5, 5e4])
    det = Detector()
    counts = {"Al": 4e5, "Ag": 1e5}
    # pile-up of each pair of lines, proportional to the product of their counts
    lines = {e: [(x[1], x[2]) for x in idm._build_columns(ax, 20, [e], det).lines[e]]
             for e in counts}  # fmt: skip
    pile = np.zeros(ax.size)
    for a in counts:
        for b in counts:
            for Ea, wa in lines[a]:
                for Eb, wb in lines[b]:
                    na = counts[a] * wa / sum(w for _, w in lines[a])
                    nb = counts[b] * wb / sum(w for _, w in lines[b])
                    if Ea + Eb < ax.edges[-1]:
                        pile += 1e-2 * na * nb / 5e5 * peak_matrix(
                            ax.edges, [Ea + Eb], det.fwhm([Ea + Eb]))[:, 0]
    y = np.random.default_rng(1).poisson(mu + pile).astype(float)
    r = idm.identify(y, ax, 20, known=["Al", "Ag"])
    assert not {"Ti", "Ba"} & set(r.elements), r.table()


def test_gram_by_row_blocks_and_sparse_screen_equal_the_dense_sums():
    """The check's cheaper sums (issue #13): the Gram matrix summed over row blocks and each
    block's nonzero columns, and the screen over each column's nonzero channels, equal the
    dense products (a matrix of local peaks, a dense column and an all-zero column)."""
    rng = np.random.default_rng(0)
    n, m = 700, 30
    A = np.zeros((n, m))
    for j in range(m - 2):
        c = rng.integers(0, n)
        A[max(c - 15, 0): c + 15, j] = rng.random(min(c + 15, n) - max(c - 15, 0))
    A[:, m - 2] = rng.random(n)  # dense (the continuum)
    B = A * np.sqrt(rng.random(n) + 0.5)[:, None]
    M = idm._gram(B, idm._row_blocks(A))
    assert np.allclose(M, B.T @ B, rtol=1e-12, atol=1e-12 * np.abs(B.T @ B).max())
    mu = 50.0 + 10.0 * rng.random(n)
    y = rng.poisson(mu + 40.0 * A[:, 3]).astype(float)
    b, gain = idm._screen(y, mu, A)
    # the dense Newton steps, written out
    w = 1.0 / mu
    bd = np.maximum((A * ((y - mu) * w)[:, None]).sum(0)
                    / np.maximum((A**2 * w[:, None]).sum(0), 1e-300), 0.0)
    for _ in range(12):
        mm = mu[:, None] + A * bd
        r = y[:, None] / mm
        bd = np.maximum(bd + (A * (r - 1.0)).sum(0) / np.maximum((A**2 * r / mm).sum(0), 1e-300),
                        0.0)
    mm = mu[:, None] + A * bd
    gd = np.maximum(2.0 * (np.where(y[:, None] > 0, y[:, None] * np.log(mm / mu[:, None]), 0.0)
                           - A * bd).sum(0), 0.0)
    assert np.allclose(b, bd, rtol=1e-10, atol=1e-12) and np.allclose(gain, gd, rtol=1e-9,
                                                                      atol=1e-9)
    assert b[3] > 10 and gain[3] > 100 and b[m - 1] == 0 and gain[m - 1] == 0



def test_detection_threshold_is_the_chi2_quantile_of_the_bonferroni_level():
    # P(T > t) = ½ P(χ²₁ > t) = α / m: t is χ²₁'s quantile at 2α/m (scipy.stats as reference)
    from scipy.stats import chi2

    from esmpy_hs.physics.identification import detection_threshold

    for m in (1, 12, 76, 300):
        for alpha in (0.01, 0.05, 0.3):
            assert detection_threshold(m, alpha) == chi2.isf(min(2 * alpha / m, 1.0), df=1)
    assert detection_threshold(76, 0.01) == pytest.approx(13.32, abs=0.01)  # the docs' figure
    with pytest.raises(ValueError, match="alpha must lie in"):
        detection_threshold(10, 1.5)
