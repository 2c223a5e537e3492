"""Implausible or unusual physical inputs: refused with the value and the fix, or understood."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from esmpy_hs.signals._metadata import ImplausibleInputWarning, read_acquisition
from tests.reliability.conftest import FAST

TEM = "Acquisition_instrument.TEM"
EDS = f"{TEM}.Detector.EDS"


#: the fits of float data use k = 3, the k for which other tests compile the kernels of float
#: counts already: each further k of those kernels costs the suite 40–60 s of compilation
FLOAT_K = 3


def _fit(s, k=2, **kwargs):
    s.decomposition(algorithm="smart_nmf", output_dimension=k, **FAST, **kwargs)


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        ("Sample.thickness", "100 um", ["100 µm", "nm", "80 nm"]),
        ("Sample.thickness", "80 furlongs", ["µm", "nm", "80 nm"]),
        ("Sample.thickness", -5, ["≥ 0 nm", "-5"]),
        (f"{EDS}.elevation_angle", 95, ["95°", "0–90°", "elevation_angle="]),
        (f"{EDS}.elevation_angle", "95 deg", ["95°", "0–90°"]),
        (f"{TEM}.beam_energy", 200000, ["200000 keV", "1–1000 keV", "200 keV", "'200 kV'"]),
        (f"{TEM}.beam_energy", 0.2, ["0.2 keV", "1–1000 keV", "200 keV"]),
        (f"{TEM}.Stage.tilt_alpha", 120, ["120°", "±90°", "tilt_stage="]),
        (f"{EDS}.energy_resolution_MnKa", 0.13, ["0.13 eV", "130 eV", "energy_resolution_MnKa="]),
        ("Sample.density", 4500, ["4500 g/cm³", "22.6", "'4.5 g/cm^3'"]),
        ("Sample.thickness", float("nan"), ["finite", "nan nm", "'80 nm'"]),
        (f"{TEM}.beam_energy", float("nan"), ["nan keV", "1–1000 keV"]),
    ],
)
def test_implausible_value_is_refused(small, path, value, words):
    small.metadata.set_item(path, value)
    with pytest.raises(ValueError) as info:
        _fit(small)
    for w in words:
        assert w in str(info.value), (w, str(info.value))
    assert "SmartNMF" not in small.metadata


def test_take_off_angle_behind_the_specimen_is_refused(small):
    small.metadata.set_item(f"{EDS}.elevation_angle", 10.0)
    small.metadata.set_item(f"{TEM}.Stage.tilt_alpha", -30.0)  # tilted away from the detector
    with pytest.raises(ValueError, match=r"take-off angle is -?\d.*cannot see"):
        _fit(small)


def test_thick_but_possible_specimen_warns(small):
    small.metadata.set_item("Sample.thickness", "2 um")
    with pytest.warns(ImplausibleInputWarning, match="2000 nm"):
        _fit(small)


def test_elevation_in_radians_warns(small):
    small.metadata.set_item(f"{EDS}.elevation_angle", 0.61)
    with pytest.warns(ImplausibleInputWarning, match=r"radians.*35\.0°"):
        read_acquisition(small)


@pytest.mark.parametrize(
    ("path", "text", "number"),
    [
        (f"{TEM}.beam_energy", "200 kV", 200.0),
        (f"{TEM}.beam_energy", "0.2 MeV", 200.0),
        (f"{TEM}.beam_energy", "200", 200.0),
        (f"{EDS}.elevation_angle", "35 deg", 35.0),
        (f"{EDS}.elevation_angle", "35.000", 35.0),  # Velox writes angles as strings
        (f"{EDS}.azimuth_angle", "0.5 rad", np.degrees(0.5)),
        ("Sample.thickness", "0.1 um", 100.0),
    ],
)
def test_strings_with_units_are_converted(small, path, text, number):
    ref = small.deepcopy()
    ref.metadata.set_item(path, number)
    small.metadata.set_item(path, text)
    a, b = read_acquisition(small), read_acquisition(ref)
    assert a.beam_energy == pytest.approx(b.beam_energy, rel=1e-12)
    assert a.take_off_angle == pytest.approx(b.take_off_angle, rel=1e-12)
    assert a.thickness == pytest.approx(b.thickness, rel=1e-12)
    assert small.get_take_off_angle() == pytest.approx(ref.get_take_off_angle(), rel=1e-12)


def test_scaled_data_warn_that_they_are_not_counts(small):
    small.change_dtype("float64")
    small.data /= 1000.0  # e.g. "normalised" data
    with pytest.warns(ImplausibleInputWarning, match="not integer counts.*divided"):
        _fit(small, k=FLOAT_K)
    assert "SmartNMF" in small.metadata  # the fit goes on, with the warning


def test_non_integer_floats_warn(small):
    small.change_dtype("float64")
    small.data += np.random.default_rng(0).uniform(0, 0.5, small.data.shape)
    with pytest.warns(ImplausibleInputWarning, match="not integer counts"):
        _fit(small, k=FLOAT_K)


def test_integer_valued_floats_are_counts(small):
    small.change_dtype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImplausibleInputWarning)
        _fit(small)


def test_lazy_scaled_data_warn(small):
    lazy = small.as_lazy()
    lazy.change_dtype("float64")
    lazy.data = lazy.data / 1000.0
    with pytest.warns(ImplausibleInputWarning, match="not integer counts"):
        _fit(lazy, k=FLOAT_K)


def test_negative_data_are_refused(small):
    small.change_dtype("float64")
    small.data -= small.data.mean()  # centred
    with pytest.raises(ValueError, match=r"negative values.*raw map"):
        _fit(small)


def test_density_in_kg_per_cubic_metre_warns(small):
    small.metadata.set_item("Sample.density", "4.5 kg/m^3")
    with pytest.warns(ImplausibleInputWarning, match=r"0\.0045 g/cm³"):
        read_acquisition(small)


def test_elements_as_one_string_are_refused(small):
    with pytest.raises(TypeError, match=r"list of element symbols.*'FeO'"):
        _fit(small, elements="FeO")


def test_energy_units_in_other_cases_are_understood(small):
    ref = read_acquisition(small).axis
    small.axes_manager.signal_axes[0].units = "KeV"
    assert read_acquisition(small).axis == ref


def test_zero_dimensional_arrays_are_numbers(small):
    small.metadata.set_item(f"{TEM}.beam_energy", np.array(200.0))
    assert read_acquisition(small).beam_energy == 200.0
