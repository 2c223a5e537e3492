"""What the model check keeps between maps (issue #13, its cost) is never stale: the candidates'
columns are kept per energy axis, E0 and detector, each element's lines per E0 and their σ·ε
per detector efficiency; a changed calibration, beam energy, width law or efficiency gives the
columns built from nothing for it."""

from __future__ import annotations

import numpy as np

from esmpy_hs.physics import Detector, EnergyAxis
from esmpy_hs.physics import identification as idm

AXIS = EnergyAxis(0.255, 0.01, 1975)
ELEMENTS = ["Mg", "Si", "O", "Fe", "Ca", "Al", "Cu", "Pb", "S", "Mo"]


def _fresh(axis, e0, det):
    """The columns with every store emptied first."""
    idm._CACHE.clear()
    idm._LINE_WEIGHTS.clear()
    idm._EFFICIENCY.clear()
    idm._element_lines.cache_clear()
    return idm._build_columns(axis, e0, ELEMENTS, det)


def _same(a, b) -> bool:
    return (a.elements == b.elements and a.lines == b.lines
            and np.array_equal(a.tied, b.tied) and np.array_equal(a.continuum, b.continuum)
            and all(np.array_equal(a.family[e], b.family[e]) for e in a.elements))


def test_a_changed_calibration_gives_the_changed_columns():
    det = Detector()
    idm._CACHE.clear()
    first = idm._columns(AXIS, 200.0, ELEMENTS, det)
    assert idm._columns(AXIS, 200.0, ELEMENTS[::-1], det) is first  # same set, other order
    changed = [
        (EnergyAxis(0.260, 0.01, 1975), 200.0, det),  # offset +5 eV
        (EnergyAxis(0.255, 0.01002, 1975), 200.0, det),  # gain +0.2 %
        (EnergyAxis(0.255, 0.01, 1500), 200.0, det),  # fewer channels
        (AXIS, 30.0, det),  # beam energy
        (AXIS, 200.0, Detector(resolution_mnka=140.0)),  # width law
        (AXIS, 200.0, Detector(window="Be", crystal_thickness=300.0)),  # efficiency
    ]
    for axis, e0, d in changed:
        idm._CACHE.clear()
        idm._columns(AXIS, 200.0, ELEMENTS, det)  # the first map's columns and line weights
        got = idm._columns(axis, e0, ELEMENTS, d)
        assert got is not first
        assert _same(got, _fresh(axis, e0, d)), (axis, e0, d)
        if axis.size == AXIS.size:
            assert not np.array_equal(got.tied, first.tied)
    # and back to the first calibration: the first columns again
    idm._CACHE.clear()
    assert _same(idm._columns(AXIS, 200.0, ELEMENTS, det), _fresh(AXIS, 200.0, det))


def test_kept_line_weights_follow_the_detector_efficiency():
    thin = Detector()
    thick = Detector(crystal_thickness=100.0)  # less efficient at high energy
    w_thin = idm._line_weights(thin, "Mo", 200.0)
    w_thick = idm._line_weights(thick, "Mo", 200.0)
    E, sigma, _, _ = idm._element_lines("Mo", 200.0)
    np.testing.assert_array_equal(w_thin, sigma * thin.efficiency(E))
    np.testing.assert_array_equal(w_thick, sigma * thick.efficiency(E))
    assert w_thick[E > 15].sum() < 0.9 * w_thin[E > 15].sum()  # Mo K at 17.5 keV
    # the width law does not enter: a calibrated width keeps the same weights
    assert idm._line_weights(Detector(resolution_mnka=150.0), "Mo", 200.0) is w_thin


def test_kept_selection_gives_the_dispersion_and_screen_of_its_columns():
    rng = np.random.default_rng(0)
    cols = idm._build_columns(AXIS, 200.0, ELEMENTS, Detector())
    near, ring = idm._neighbourhoods(cols, AXIS, Detector())
    sel = [1, 3, 4, 7]
    y = rng.poisson(50.0, AXIS.size).astype(float)
    mu = np.full(AXIS.size, 50.0)
    d = idm._deviance_terms(y, mu)
    kept = idm._selection(cols, sel, ring)
    assert idm._selection(cols, sel, ring) is kept
    C = cols.tied[:, sel]
    np.testing.assert_array_equal(kept.dispersion(d, 12),
                                  idm._dispersion(d, C, near[:, sel], ring[:, sel], 12))
    for got, ref in zip(idm._screen(y, mu, C, nz=kept.nz), idm._screen(y, mu, C), strict=True):
        np.testing.assert_array_equal(got, ref)
    # the highest family, asked for one element at a time
    high = idm._high_of(cols, "Fe")
    F, share = idm._high_family(cols, "Fe")
    np.testing.assert_array_equal(high[0], F)
    assert high[1] == share and 0 < share < 1
