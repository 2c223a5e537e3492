"""The reference sample through the physics model: spectra consistent with the compositions."""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.datasets import (
    REFERENCE_COMPOSITIONS,
    REFERENCE_DENSITY_FACTORS,
    REFERENCE_PHASES,
    get_truth,
    phase_spectra,
    reference_maps,
    reference_sample,
    reference_spectra,
)

ENERGY = 0.3 + 0.01 * np.arange(1980)  # keV, channel centres of the reference axis


@pytest.fixture(scope="module")
def spectra_phase():
    return reference_spectra()


@pytest.fixture(scope="module")
def spectra_atoms():
    return reference_spectra(rates="atoms")


def _peak_area(spectrum, centre, half_width=0.15, side=0.1):
    """Counts in [centre ± half_width] keV above a straight background fitted on both sides."""
    inside = np.abs(ENERGY - centre) <= half_width
    left = (ENERGY < centre - half_width) & (ENERGY >= centre - half_width - side)
    right = (ENERGY > centre + half_width) & (ENERGY <= centre + half_width + side)
    bg = left | right
    coef = np.polyfit(ENERGY[bg], spectrum[bg], 1)
    return float((spectrum[inside] - np.polyval(coef, ENERGY[inside])).sum())


def test_reference_spectra_shape_and_density_factors(spectra_phase):
    assert spectra_phase.shape == (3, 1980)
    assert np.all(spectra_phase >= 0)
    # rates="phase": each phase's total count rate is its density factor
    np.testing.assert_allclose(spectra_phase.sum(axis=1), REFERENCE_DENSITY_FACTORS, rtol=1e-12)


def test_rates_conventions_differ_by_one_factor_per_phase(spectra_phase, spectra_atoms):
    for i in range(3):
        a = spectra_atoms[i] / spectra_atoms[i].sum()
        p = spectra_phase[i] / spectra_phase[i].sum()
        np.testing.assert_allclose(a, p, rtol=1e-10, atol=1e-15)


def test_fe_ka_area_follows_atomic_fraction_and_density(spectra_atoms):
    # rates="atoms": a line's area ∝ density factor × atomic fraction × absorption; Fe Kα
    # (6.40 keV) is barely absorbed in 100 nm (A ≈ 0.99 in every phase), so the ratio between
    # the two Sm/Nd-free phases should match x_Fe·d within a few per cent (the window
    # background and the small difference of absorption between phases).
    c = REFERENCE_COMPOSITIONS
    d = REFERENCE_DENSITY_FACTORS
    fe = [_peak_area(s, 6.40) for s in spectra_atoms]
    expected = (c["ferropericlase"]["Fe"] * d[1]) / (c["bridgmanite"]["Fe"] * d[0])
    assert fe[1] / fe[0] == pytest.approx(expected, rel=0.03)


def test_element_ratios_within_phases(spectra_phase):
    # per-phase normalisation cannot change ratios inside a phase: Fe Kα / Cu Kα (both
    # K lines at 6.4 and 8.0 keV, little absorbed) tracks x_Fe / x_Cu from phase to phase.
    c = REFERENCE_COMPOSITIONS
    r = [_peak_area(s, 6.40) / _peak_area(s, 8.04) for s in spectra_phase[:2]]
    x = [c[p]["Fe"] / c[p]["Cu"] for p in REFERENCE_PHASES[:2]]
    assert r[1] / r[0] == pytest.approx(x[1] / x[0], rel=0.03)


def test_noiseless_reference_sample_mean_phase_spectra(spectra_phase):
    s = reference_sample(shape=(32, 32), noise=False)
    truth = get_truth(s)
    assert s.data.dtype == np.float64 and s.data.shape == (32, 32, 1980)
    assert s.data.sum(axis=-1).mean() == pytest.approx(293)
    # phase spectra recovered from the data and the true maps (least squares)
    H = reference_maps((32, 32)).reshape(3, -1).T
    est, *_ = np.linalg.lstsq(H, s.data.reshape(-1, 1980), rcond=None)
    np.testing.assert_allclose(est, truth["spectra"], rtol=1e-6, atol=1e-9)
    # and they are the physics spectra scaled to the dose
    scale = 293 / float(H.mean(axis=0) @ spectra_phase.sum(axis=1))
    np.testing.assert_allclose(truth["spectra"], scale * spectra_phase, rtol=1e-10)
    # Fe Kα in the data follows the Fe content: the particle-free corner vs the Fe-rich centre
    fe_matrix = _peak_area(est[0], 6.40)
    fe_fp = _peak_area(est[1], 6.40)
    assert fe_fp > 2 * fe_matrix


def test_reference_sample_full_size():
    s = reference_sample(dose=293, random_state=0)
    assert s.data.shape == (128, 128, 1980)
    assert s.data.dtype == np.uint16
    n_pix = 128 * 128
    # total counts are Poisson(293·P): 5 standard deviations of the per-pixel mean
    assert abs(s.data.sum(axis=-1, dtype=np.int64).mean() - 293) < 5 * np.sqrt(293 / n_pix)
    truth = get_truth(s)
    assert truth["phase_names"] == list(REFERENCE_PHASES)
    assert truth["random_state"] == 0 and truth["dose"] == pytest.approx(293)
    assert s.metadata.Sample.thickness == 100 and s.metadata.Sample.density == 4.5
    assert s.get_take_off_angle() == pytest.approx(35)
    assert s.metadata.Acquisition_instrument.TEM.beam_energy == 200
    ax = s.axes_manager.signal_axes[0]
    assert (ax.offset, ax.scale, ax.units) == (pytest.approx(0.3), pytest.approx(0.01), "keV")
    # a low-dose draw with the same seed is reproducible
    a = reference_sample(dose=18, shape=(16, 16), random_state=3)
    b = reference_sample(dose=18, shape=(16, 16), random_state=3)
    np.testing.assert_array_equal(a.data, b.data)


def test_phase_spectra_options():
    comps = {"a": {"Fe": 1.0}, "b": {"Fe": 0.5, "O": 0.5}}
    sp = phase_spectra(comps, channels=500, density_factors=[1.0, 2.0])
    np.testing.assert_allclose(sp.sum(axis=1), [1.0, 2.0])
    with_cont = phase_spectra(comps, channels=500, continuum=[[1e-3, 1e-3], [0, 0]])
    at_3kev = round((3.0 - 0.3) / 0.01)  # no line near 3 keV: only continuum
    assert with_cont[0, at_3kev] > 10 * sp[0, at_3kev]
    np.testing.assert_allclose(with_cont[1], sp[1] / 2.0)
    stray = phase_spectra([{"Fe": 0.9, "Cu": 0.1}], channels=900, stray_elements=["Cu"])
    assert _peak_area(np.pad(stray[0], (0, 1080)), 8.04) > 0
    with pytest.raises(ValueError):
        phase_spectra(comps, continuum=[[0, 0]])
    with pytest.raises(ValueError):
        phase_spectra(comps, rates="other")
