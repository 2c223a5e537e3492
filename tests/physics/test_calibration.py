"""Detector self-calibration on a summed spectrum (esmpy_hs.physics.calibration).

The spectra are the project's simulator (the reference sample's three phases, their continuum,
100 nm at 4.5 g/cm³, the maps of a 64 × 64 map at 293 counts per pixel) on a TRUE axis and with a
TRUE width law; the calibration sees the RECORDED axis (0.3 keV + 10 eV channels) and the
recorded 130 eV at Mn Kα. The summed spectrum of a map is one Poisson draw of the summed
expected counts, which is what is drawn here.
"""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.datasets import REFERENCE_COMPOSITIONS, REFERENCE_CONTINUUM, reference_maps
from esmpy_hs.physics import Detector, Specimen, build_G, simulate_spectrum
from esmpy_hs.physics.calibration import REPORT_LINES, Calibration, calibrate_detector

OFFSET, SCALE, SIZE = 0.3, 0.01, 1980
ELEMENTS = sorted({e for c in REFERENCE_COMPOSITIONS.values() for e in c})
SPECIMEN = Specimen(100.0, 4.5, 35.0)


def summed_spectrum(detector, shift_eV=0.0, gain=1.0, *, dose=293.0, shape=(64, 64), seed=0,
                    compositions=REFERENCE_COMPOSITIONS, elements=ELEMENTS):  # fmt: skip
    """Counts summed over a reference-sample map whose true axis is (OFFSET + shift) +
    i·SCALE·gain and whose peaks follow ``detector``."""
    axis = (OFFSET + shift_eV / 1000.0, SCALE * gain, SIZE)
    model = build_G(axis, 200.0, elements, detector=detector, specimen=SPECIMEN)
    maps = reference_maps(shape)
    weights = [1.0, 0.8, 1.2]
    mix = np.zeros(SIZE)
    for comp, b, w, m in zip(compositions.values(), REFERENCE_CONTINUUM, weights, maps,
                             strict=True):  # fmt: skip
        spec = simulate_spectrum(comp, model, continuum=tuple(b))
        mix += m.mean() * w * spec / spec.sum()
    expected = mix / mix.sum() * dose * shape[0] * shape[1]
    return np.random.default_rng(seed).poisson(expected).astype(float)


def calibrate(y, **kw):
    kw.setdefault("detector", Detector(resolution_mnka=130.0))
    kw.setdefault("specimen", SPECIMEN)
    return calibrate_detector((OFFSET, SCALE, SIZE), y, 200.0, ELEMENTS, **kw)


CASES = [
    ("Fiori 130 eV, none", Detector(resolution_mnka=130.0), 0.0, 1.0),
    ("Fiori 120 eV", Detector(resolution_mnka=120.0), -20.0, 1.003),
    ("Fiori 150 eV", Detector(resolution_mnka=150.0), 20.0, 0.997),
    ("linear 65 eV + 0.01 E", Detector(fwhm_model="linear", fwhm_linear=(0.01, 0.065)), 10.0,
     1.002),
    ("linear 50 eV + 0.012 E", Detector(fwhm_model="linear", fwhm_linear=(0.012, 0.05)), -10.0,
     0.999),
]  # fmt: skip


@pytest.mark.parametrize("label,truth,shift,gain", CASES, ids=[c[0] for c in CASES])
def test_recovers_offset_gain_and_widths(label, truth, shift, gain):
    cal = calibrate(summed_spectrum(truth, shift, gain, seed=len(label)))
    assert cal.applied, cal.message
    assert cal.offset_shift_eV == pytest.approx(shift, abs=1.0)
    assert cal.gain == pytest.approx(gain, abs=2e-4)  # 0.02 %
    for line in ("O Ka", "Mn Ka"):
        true_fwhm = 1000.0 * float(truth.fwhm(REPORT_LINES[line]))
        assert cal.fwhm_eV[line] == pytest.approx(true_fwhm, abs=2.0), line
    # the deviance falls to about its degrees of freedom (the model is right)
    assert cal.deviance <= cal.deviance_file + 1e-6
    assert cal.deviance < 1.3 * cal.degrees_of_freedom
    # with a linear axis nothing is left between the data's peaks and the model's
    assert len(cal.peak_offsets_eV) >= 4
    assert max(abs(v) for v in cal.peak_offsets_eV.values()) < 2.0
    # the stated uncertainties are small but not zero
    assert 0 < cal.uncertainty["offset_shift_eV"] < 1.0
    assert 0 < cal.uncertainty["fwhm O Ka"] < 2.0


def test_uncertainties_match_the_scatter_over_draws():
    truth = Detector(resolution_mnka=130.0)
    cals = [calibrate(summed_spectrum(truth, 5.0, 1.001, shape=(24, 24), seed=s))
            for s in range(6)]  # fmt: skip
    shifts = np.array([c.offset_shift_eV for c in cals])
    sigma = np.mean([c.uncertainty["offset_shift_eV"] for c in cals])
    # six draws: the sample standard deviation is within a factor ~2.5 of σ (χ² with 5 d.o.f.)
    assert 0.3 * sigma < shifts.std(ddof=1) < 2.5 * sigma
    assert abs(shifts.mean() - 5.0) < 4 * sigma


def test_large_corrections_are_reported():
    truth = Detector(resolution_mnka=130.0)
    cal = calibrate(summed_spectrum(truth, 70.0, 1.0))
    assert cal.applied
    assert cal.offset_shift_eV == pytest.approx(70.0, abs=1.0)
    assert any("offset moved by +70 eV" in w for w in cal.warnings)


def test_a_nonlinear_axis_is_reported():
    """Channels above 3.5 keV recorded 25 eV lower than below: no offset and gain fit both."""
    truth = Detector(resolution_mnka=130.0)
    low = summed_spectrum(truth, 0.0, 1.0, seed=5)
    high = summed_spectrum(truth, 25.0, 1.0, seed=6)
    cut = int((3.5 - OFFSET) / SCALE)
    y = np.concatenate([low[:cut], high[cut:]])
    cal = calibrate(y)
    assert cal.applied
    assert any("axis is not linear" in w for w in cal.warnings), cal.peak_offsets_eV
    assert max(abs(v) for v in cal.peak_offsets_eV.values()) > 5.0


def test_unmodelled_line_is_left_out():
    """Cu in the specimen but not in the element list: its lines are masked, the rest holds."""
    truth = Detector(fwhm_model="linear", fwhm_linear=(0.01, 0.065))
    comps = {k: dict(v) for k, v in REFERENCE_COMPOSITIONS.items()}
    for c in comps.values():
        c["Cu"] = 0.15
    y = summed_spectrum(truth, -10.0, 1.0, compositions=comps)
    elements = [e for e in ELEMENTS if e != "Cu"]
    cal = calibrate_detector(
        (OFFSET, SCALE, SIZE), y, 200.0, elements, detector=Detector(resolution_mnka=130.0),
        specimen=SPECIMEN,
    )  # fmt: skip
    assert cal.applied, cal.message
    assert cal.masked_channels > 0
    mask = cal.curves["mask"]
    energies = OFFSET + SCALE * (np.arange(SIZE) - 0.0)
    c0 = cal.curves["channels"][0]
    e_fit = energies[c0 : c0 + mask.size]
    assert not mask[np.argmin(np.abs(e_fit - 8.04))]  # Cu Kα left out
    assert cal.offset_shift_eV == pytest.approx(-10.0, abs=1.0)
    assert cal.fwhm_eV["Mn Ka"] == pytest.approx(1000 * float(truth.fwhm(5.8987)), abs=2.0)


def test_too_few_counts_or_lines_keep_the_recorded_values():
    truth = Detector(resolution_mnka=130.0)
    few = summed_spectrum(truth, 10.0, 1.0, dose=0.5, shape=(4, 4))
    cal = calibrate(few)
    assert not cal.applied
    assert "too few" in cal.message
    assert cal.offset_shift_eV == 0.0 and cal.gain == 1.0
    assert cal.axis((OFFSET, SCALE, SIZE)).offset == OFFSET
    det = Detector(resolution_mnka=130.0)
    assert cal.detector(det) is det
    # a pure-Fe spectrum: Kα/Kβ and L, two separated peaks only
    axis = (OFFSET, SCALE, SIZE)
    fe = simulate_spectrum({"Fe": 1.0}, build_G(axis, 200.0, ["Fe"]), continuum=(1e-3, 1e-3))
    y = np.random.default_rng(1).poisson(fe / fe.sum() * 1e6).astype(float)
    cal = calibrate_detector(axis, y, 200.0, ["Fe"])
    assert not cal.applied
    assert "separated peaks" in cal.message


def test_known_values_are_held():
    truth = Detector(resolution_mnka=125.0)
    y = summed_spectrum(truth, 8.0, 1.0)
    full = calibrate(y, fixed={"offset_shift_eV": 8.0, "gain": 1.0, "resolution_mnka": 125.0})
    assert full.applied and full.fitted == ()
    assert full.offset_shift_eV == pytest.approx(8.0)
    assert full.fwhm_eV["Mn Ka"] == pytest.approx(125.0)
    part = calibrate(y, fixed={"gain": 1.0})
    assert part.gain == 1.0 and "gain" not in part.fitted
    assert part.offset_shift_eV == pytest.approx(8.0, abs=1.0)
    assert part.fwhm_eV["Mn Ka"] == pytest.approx(125.0, abs=2.0)
    with pytest.raises(ValueError, match="unknown calibration value"):
        calibrate(y, fixed={"offset": 3.0})


def test_result_applies_and_round_trips():
    truth = Detector(fwhm_model="linear", fwhm_linear=(0.01, 0.065))
    cal = calibrate(summed_spectrum(truth, 12.0, 1.001))
    ax = cal.axis((OFFSET, SCALE, SIZE))
    assert ax.offset == pytest.approx(OFFSET + cal.offset_shift_eV / 1000.0)
    assert ax.scale == pytest.approx(SCALE * cal.gain)
    det = cal.detector(Detector("Si3N4", resolution_mnka=130.0))
    assert det.fwhm_model == "quadratic"
    assert 1000 * float(det.fwhm(REPORT_LINES["O Ka"])) == pytest.approx(cal.fwhm_eV["O Ka"])
    back = Calibration.from_dict(cal.to_dict())
    assert back == cal
    assert back.curves is None
    assert "offset +12" in cal.summary()
    # a model built from the calibrated axis and detector rebuilds identically from its dict
    model = build_G(ax, 200.0, ["Fe", "O"], detector=det)
    again = type(model).from_dict(model.to_dict())
    np.testing.assert_allclose(again.G, model.G)


def test_quadratic_width_law_contains_fiori_and_linear():
    e = np.linspace(0.2, 15.0, 50)
    fiori = Detector(resolution_mnka=128.0)
    np.testing.assert_allclose(Detector(resolution_mnka=128.0, fwhm_model="quadratic").fwhm(e),
                               fiori.fwhm(e), rtol=1e-12)  # fmt: skip
    lin = Detector(fwhm_model="linear", fwhm_linear=(0.012, 0.05))
    quad = Detector(fwhm_model="quadratic", fwhm_quadratic=(50.0**2, 2 * 12.0 * 50.0, 12.0**2))
    np.testing.assert_allclose(quad.fwhm(e), lin.fwhm(e), rtol=1e-12)
    d = Detector.from_dict(quad.to_dict())
    assert d.fwhm_model == "quadratic" and d.fwhm_quadratic == quad.fwhm_quadratic
