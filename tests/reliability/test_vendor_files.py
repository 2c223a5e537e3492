"""Real vendor files end to end: hs.load → EDS_ESMPY → smart_nmf → quantify_phases.

The files are in ``../shared/data/vendor/`` (small acquisitions from RosettaSciIO's test data,
see ``shared/data/README.md``); every test skips when they are absent.
"""

from __future__ import annotations

import hyperspy.api as hs
import numpy as np
import pytest

from tests.conftest import SHARED

VENDOR = SHARED / "data" / "vendor"
FILES = {
    "velox_test_SI_16x16.emd": {"beam": 300.0, "sem": False},
    "bcf_v2_50x50px.bcf": {"beam": 20.0, "sem": True},
    "30x30_instructively_packed_16bit_compressed.bcf": {"beam": 20.0, "sem": True},
}
EDS = "Acquisition_instrument.TEM.Detector.EDS"


def _spectrum_image(name: str):
    path = VENDOR / name
    if not path.exists():
        pytest.skip(f"vendor file not found at {path}")
    loaded = hs.load(path)
    signals = loaded if isinstance(loaded, list) else [loaded]
    maps = [s for s in signals if s.axes_manager.signal_dimension == 1
            and s.axes_manager.navigation_dimension == 2]  # fmt: skip
    assert len(maps) == 1, [type(s).__name__ for s in signals]
    return maps[0]


def test_sparse_is_installed_for_velox():
    import sparse  # noqa: F401  (a dependency of the package: Velox EDS streams need it)


@pytest.mark.parametrize("name", list(FILES))
def test_vendor_file_end_to_end(name, capsys):
    from exspy import preferences
    from exspy.utils.eds import take_off_angle

    s = _spectrum_image(name)
    file_elements = list(s.metadata.Sample.elements)
    s.set_signal_type("EDS_ESMPY")
    assert type(s).__name__ == "EDSespm"

    from esmpy_hs.signals._metadata import read_acquisition

    acq = read_acquisition(s)
    md = s.metadata.Acquisition_instrument.TEM
    assert acq.beam_energy == FILES[name]["beam"]
    assert acq.elements == tuple(file_elements)
    assert acq.energy_resolution_MnKa == float(md.Detector.EDS.energy_resolution_MnKa)
    expected_toa = take_off_angle(
        float(md.Stage.tilt_alpha),
        float(md.Detector.EDS.azimuth_angle),
        float(md.Detector.EDS.elevation_angle),
        float(md.Stage.get_item("tilt_beta", 0.0)),
    )
    assert acq.take_off_angle == pytest.approx(expected_toa, rel=1e-12)

    s.decomposition(algorithm="smart_nmf", output_dimension=2, max_iter=10)
    out = capsys.readouterr().out
    # SEM maps: one line on the thin-specimen assumption
    assert ("compositions assume a thin specimen" in out) == FILES[name]["sem"]
    # detector fields that may be exspy's fill-ins are named
    defaults = {
        "elevation_angle": preferences.EDS.eds_detector_elevation,
        "azimuth_angle": preferences.EDS.eds_detector_azimuth,
        "energy_resolution_MnKa": preferences.EDS.eds_mn_ka,
    }
    for key, value in defaults.items():
        if float(s.metadata.get_item(f"{EDS}.{key}")) == float(value):
            assert f"{key} = {float(value):g}" in out, key
    q = s.quantify_phases()
    assert set(q.elements) <= set(file_elements) and len(q.elements) >= 2
    # each phase sums to 1, or is said to be not determined (NaN, with the reason printed)
    determined = [j for j, n in enumerate(q.phase_names) if n not in q.undetermined]
    assert determined
    np.testing.assert_allclose(q.atomic_fractions[:, determined].sum(axis=0), 1.0, rtol=1e-9)
    for j, n in enumerate(q.phase_names):
        if n in q.undetermined:
            assert np.all(np.isnan(q.atomic_fractions[:, j]))
            assert f"{n}: not determined" in str(q)
    assert np.all(np.isfinite(q.atomic_errors[:, determined]))


def test_vendor_file_missing_field_is_named():
    s = _spectrum_image("velox_test_SI_16x16.emd")
    s.set_signal_type("EDS_ESMPY")
    del s.metadata.Acquisition_instrument.TEM.beam_energy
    with pytest.raises(ValueError, match=r"beam_energy.*set_microscope_parameters"):
        s.decomposition(algorithm="smart_nmf", output_dimension=2, print_info=False)


def test_set_microscope_parameters_silences_the_defaults_note(capsys):
    s = _spectrum_image("velox_test_SI_16x16.emd")
    s.set_signal_type("EDS_ESMPY")
    s.set_microscope_parameters(elevation_angle=35.0, azimuth_angle=0.0,
                                energy_resolution_MnKa=130.0)  # fmt: skip
    s.decomposition(algorithm="smart_nmf", output_dimension=2, max_iter=5)
    assert "exspy's default" not in capsys.readouterr().out


@pytest.mark.parametrize("name", list(FILES))
def test_vendor_file_through_the_command(name, tmp_path, capsys):
    """Velox files hold the map and one sum spectrum per detector: the map is fitted."""
    from esmpy_hs.cli import main

    path = VENDOR / name
    if not path.exists():
        pytest.skip(f"vendor file not found at {path}")
    out = tmp_path / "fit.hspy"
    assert main(["decompose", str(path), "-k", "2", "--max-iter", "5", "-q", "-o", str(out)]) == 0
    fitted = hs.load(out)
    assert fitted.axes_manager.navigation_dimension == 2
    assert fitted.quantify_phases().atomic_fractions.shape[1] == 2
