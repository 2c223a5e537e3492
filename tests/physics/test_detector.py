"""Detector resolution, efficiency and peak shape."""

import json

import numpy as np
import pytest

from esmpy_hs.physics import WINDOW_PRESETS, Detector, Layer, peak_matrix


def test_efficiency_sanity_values():
    # 450 µm Si, 50 nm dead layer, 30 nm Al, 40 nm Si3N4 (the default "Si3N4" preset);
    # values quoted to two digits in shared/notes/physics.md §3
    det = Detector("Si3N4", crystal_thickness=450, dead_layer=50)
    e = {"C Ka": 0.277, "O Ka": 0.525, "Si Ka": 1.740, "15 keV": 15.0, "20 keV": 20.0}
    expected = {"C Ka": 0.41, "O Ka": 0.75, "Si Ka": 0.96, "15 keV": 0.66, "20 keV": 0.37}
    got = dict(zip(e, det.efficiency(list(e.values())), strict=True))
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, abs=0.006), k
    assert np.all(det.efficiency(np.linspace(6, 8, 21)) > 0.99)


def test_presets_are_ordered_sensibly():
    e = np.array([0.525, 1.0, 10.0])
    eff = {name: Detector(name).efficiency(e) for name in WINDOW_PRESETS}
    assert np.all(eff["windowless"] >= eff["Si3N4"])
    assert eff["Be"][0] < 0.01  # a Be window stops O Kα
    assert eff["polymer"][2] == pytest.approx(0.77 * eff["windowless"][2], rel=0.01)


def test_custom_layers_and_curve():
    det = Detector([Layer("Al", 30, 2.7), ("Si3N4", "40 nm", 3.44)])
    np.testing.assert_allclose(det.efficiency([1.0, 5.0]), Detector("Si3N4").efficiency([1.0, 5.0]))
    curve = Detector(efficiency_curve=([1.0, 2.0, 3.0], [0.5, 0.7, 0.9]))
    np.testing.assert_allclose(curve.efficiency([1.5, 2.5, 0.5, 4.0]), [0.6, 0.8, 0.5, 0.9])
    with pytest.raises(ValueError):
        Detector("beryllium")
    with pytest.raises(ValueError):
        Detector(efficiency_curve=([1.0], [0.5]))


def test_resolution_models():
    det = Detector(resolution_mnka="130 eV")
    assert det.fwhm(5.8987) == pytest.approx(0.130)
    assert det.fwhm(0.5) < det.fwhm(5.8987) < det.fwhm(10.0)
    lin = Detector(fwhm_model="linear", fwhm_linear=(0.01, 0.065))
    assert lin.fwhm(5.0) == pytest.approx(0.115)


def test_peak_area_is_conserved():
    edges = 0.3 + 0.01 * (np.arange(1981) - 0.5)
    centres = np.array([1.0, 6.4, 15.0])
    p = peak_matrix(edges, centres, Detector().fwhm(centres))
    np.testing.assert_allclose(p.sum(axis=0), 1.0, atol=1e-6)
    assert np.all(p >= 0)
    # a narrow peak on a coarse axis keeps its area too
    coarse = peak_matrix(np.arange(0.0, 10.01, 0.5), [5.1], [0.05])
    assert coarse.sum() == pytest.approx(1.0, abs=1e-12)


def test_round_trip_dict():
    for det in (
        Detector(),
        Detector("polymer", fwhm_model="linear"),
        Detector([("Be", 8000, 1.85)]),
        Detector(efficiency_curve=([1, 2], [0.4, 0.5])),
    ):
        d = json.loads(json.dumps(det.to_dict()))
        again = Detector.from_dict(d)
        e = np.linspace(0.3, 20, 50)
        np.testing.assert_array_equal(again.efficiency(e), det.efficiency(e))
        np.testing.assert_array_equal(again.fwhm(e), det.fwhm(e))
