"""Detector self-calibration through the signal API: s.calibrate_detector() and
decomposition(algorithm="smart_nmf", calibrate=...)."""

from __future__ import annotations

import json

import hyperspy.api as hs
import numpy as np
import pytest

from esmpy_hs.datasets import reference_sample
from esmpy_hs.metrics import spectral_angle


@pytest.fixture(scope="module")
def sample():
    """The reference sample, 64 × 64 at 293 counts/px, simulated with the recorded detector."""
    return reference_sample(dose=293.0, shape=(64, 64), random_state=3)


@pytest.fixture(scope="module")
def fits(sample):
    """The same map fitted with calibrate="auto" (the default) and calibrate=False."""
    out = {}
    for calibrate in ("auto", False):
        s = sample.deepcopy()
        s.decomposition(algorithm="smart_nmf", output_dimension=3, print_info=False,
                        calibrate=calibrate, random_state=0)  # fmt: skip
        out[calibrate] = s
    return out


def test_calibrate_detector_finds_a_recorded_offset_error(sample, tmp_path):
    s = sample.deepcopy()
    s.axes_manager.signal_axes[0].offset = 0.3 - 0.012  # recorded 12 eV low
    before = s.metadata.Acquisition_instrument.as_dictionary()
    cal = s.calibrate_detector(filename=str(tmp_path / "cal.png"))
    assert cal.applied, cal.message
    assert cal.offset_shift_eV == pytest.approx(12.0, abs=1.0)
    assert cal.gain == pytest.approx(1.0, abs=2e-4)
    assert cal.fwhm_eV["Mn Ka"] == pytest.approx(130.0, abs=2.0)
    assert cal.figure is not None and (tmp_path / "cal.png").stat().st_size > 0
    # the signal is not changed
    assert s.axes_manager.signal_axes[0].offset == pytest.approx(0.3 - 0.012)
    assert s.metadata.Acquisition_instrument.as_dictionary() == before
    assert not s.metadata.has_item("SmartNMF")


def test_no_miscalibration_changes_nothing_that_matters(fits):
    auto, off = fits["auto"], fits[False]
    cal = json.loads(auto.metadata.SmartNMF.calibration)
    assert json.loads(off.metadata.SmartNMF.calibration) is None
    assert cal["applied"]
    assert abs(cal["offset_shift_eV"]) < 1.0
    assert cal["fwhm_eV"]["Mn Ka"] == pytest.approx(130.0, abs=2.0)
    c0, c1 = (int(c) for c in auto.metadata.SmartNMF.channels)
    fa = np.asarray(auto.learning_results.factors)[c0:c1].T
    fo = np.asarray(off.learning_results.factors)[c0:c1].T
    angles = [float(spectral_angle(a, b)) for a, b in zip(fa, fo, strict=True)]
    assert max(angles) < 0.2, angles


def test_round_trip_keeps_the_calibration(fits, tmp_path):
    s = fits["auto"]
    path = tmp_path / "fitted.hspy"
    s.save(path)
    t = hs.load(path)
    assert t.metadata.SmartNMF.calibration == s.metadata.SmartNMF.calibration
    model = json.loads(t.metadata.SmartNMF.model)
    assert model["detector"]["fwhm_model"] == "quadratic"
    cal = json.loads(t.metadata.SmartNMF.calibration)
    assert model["axis"]["offset"] == pytest.approx(
        s.axes_manager.signal_axes[0].offset
        + cal["offset_shift_eV"] / 1000
        + (s.metadata.SmartNMF.channels[0]) * s.axes_manager.signal_axes[0].scale * cal["gain"]
    )
    assert str(t.quantify_phases()) == str(s.quantify_phases())
    assert t.quantify_phases().atomic_percent == s.quantify_phases().atomic_percent


def test_summary_and_plot_show_the_calibration(fits, capsys):
    s = fits["auto"].deepcopy()
    s.decomposition(algorithm="smart_nmf", output_dimension=3, max_iter=5)
    out = capsys.readouterr().out
    assert "calibration: offset" in out and "FWHM (eV)" in out
    fig = s.plot_phases()
    assert "calibration: offset" in fig._suptitle.get_text()


def test_known_values_and_bad_values(sample):
    s = sample.deepcopy()
    known = {"offset_shift_eV": 5.0, "gain": 1.0, "resolution_mnka": 128.0}
    s.decomposition(algorithm="smart_nmf", output_dimension=3, print_info=False,
                    calibrate=known, max_iter=5)  # fmt: skip
    cal = json.loads(s.metadata.SmartNMF.calibration)
    assert cal["offset_shift_eV"] == pytest.approx(5.0)
    assert cal["fwhm_eV"]["Mn Ka"] == pytest.approx(128.0)
    assert cal["fitted"] == []
    assert s.axes_manager.signal_axes[0].offset == pytest.approx(0.3)
    with pytest.raises(ValueError, match="calibrate must be"):
        s.decomposition(algorithm="smart_nmf", output_dimension=3, calibrate="yes")
    with pytest.raises(ValueError, match="unknown calibration value"):
        s.decomposition(algorithm="smart_nmf", output_dimension=3, calibrate={"shift": 3})
