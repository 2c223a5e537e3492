"""Thin-film absorption and mass attenuation."""

import numpy as np
import pytest

from esmpy_hs.physics import Specimen, absorption_factor, mass_attenuation
from esmpy_hs.physics.absorption import absorption_from_chi

COMP = {"Mg": 0.245, "Fe": 0.035, "Si": 0.219, "O": 0.436, "Ca": 0.031}
E = np.array([0.525, 1.25, 1.74, 3.69, 6.40])


def test_limit_of_zero_thickness_is_one():
    for t in (0.0, 1e-6, 1e-3):
        np.testing.assert_allclose(
            absorption_factor(COMP, E, thickness=t, density=4.5), 1.0, atol=1e-4
        )
    np.testing.assert_array_equal(absorption_factor(COMP, E, Specimen()), 1.0)
    assert absorption_from_chi(0.0) == 1.0
    assert absorption_from_chi(1e-12) == pytest.approx(1.0)


def test_decreases_with_thickness_and_toa():
    a = [absorption_factor(COMP, E, thickness=t, density=4.5) for t in (10, 50, 100, 500)]
    assert np.all(np.diff(np.array(a), axis=0) < 0)
    assert np.all(a[-1] > 0) and np.all(a[0] <= 1)
    low = absorption_factor(COMP, E, thickness=100, density=4.5, take_off_angle=10)
    assert np.all(low < a[2])
    # soft O Kα is absorbed more than Fe Kα
    assert a[2][0] < a[2][-1]


def test_formula():
    spec = Specimen("100 nm", "4.5 g/cm^3", "35 deg")
    mu = sum(w * mass_attenuation(el, 1.0) for el, w in {"Fe": 0.5, "O": 0.5}.items())
    chi = mu * 4.5 * 100e-7 / np.sin(np.deg2rad(35))
    got = absorption_factor({"Fe": 0.5, "O": 0.5}, 1.0, spec, fractions="weight")
    assert got == pytest.approx((1 - np.exp(-chi)) / chi, rel=1e-12)


def test_atomic_and_weight_fractions_agree():
    at = {"Fe": 1.0, "O": 1.0}  # FeO
    w_fe = 55.845 / (55.845 + 15.999)
    wt = {"Fe": w_fe, "O": 1 - w_fe}
    spec = Specimen(100, 4.5)
    np.testing.assert_allclose(
        absorption_factor(at, E, spec),
        absorption_factor(wt, E, spec, fractions="weight"),
        rtol=2e-4,
    )


def test_mass_attenuation_does_not_ring_across_edges():
    e = np.linspace(6.9, 7.3, 401)  # Fe K edge at 7.112 keV
    mu = mass_attenuation("Fe", e)
    jumps = np.diff(mu)
    assert np.sum(jumps > 0) == 1  # monotonic decrease except the edge itself
    assert mass_attenuation("Fe", 0.05) == mass_attenuation("Fe", 0.1)  # clipped below 0.1 keV


def test_specimen_validation():
    with pytest.raises(ValueError, match="thickness"):
        Specimen(-5, 4.5)
    with pytest.raises(ValueError, match="density"):
        Specimen(100, -1)
    with pytest.raises(ValueError, match="density"):
        Specimen(100)
    with pytest.raises(ValueError, match="take_off_angle"):
        Specimen(100, 4.5, 0)
    with pytest.raises(ValueError):
        Specimen("100 kg", 4.5)
    s = Specimen("0.1 um", "4500 kg/m^3", "35 degree")
    assert s.thickness_nm == pytest.approx(100) and s.density == pytest.approx(4.5)
    assert Specimen.from_dict(s.to_dict()).path_factor == s.path_factor
