"""exspy's own EDS methods give the same numbers on an EDS_ESMPY signal."""

from __future__ import annotations

import exspy
import hyperspy.api as hs
import numpy as np
import pytest

from esmpy_hs.signals import EDSespm


@pytest.fixture
def pair():
    """exspy's bundled FePt spectrum as EDS_TEM and as EDS_ESMPY."""
    tem = exspy.data.EDS_TEM_FePt_nanoparticles()
    ours = tem.deepcopy()
    ours.set_signal_type("EDS_ESMPY")
    assert type(ours) is EDSespm
    return tem, ours


def test_type_survives_reinitialisation(pair):
    _, ours = pair
    # _set_default_param runs in __init__ and would rewrite the type to EDS_TEM
    copy = ours.deepcopy()
    assert copy.metadata.Signal.signal_type == "EDS_ESMPY"
    assert type(copy) is EDSespm


def test_take_off_angle(pair):
    tem, ours = pair
    assert ours.get_take_off_angle() == pytest.approx(tem.get_take_off_angle())
    for s in pair:
        s.set_microscope_parameters(tilt_stage=15.0, azimuth_angle=45.0)
    assert ours.get_take_off_angle() == pytest.approx(tem.get_take_off_angle())
    assert ours.get_take_off_angle() != pytest.approx(22.0)


def test_add_lines_and_intensities(pair):
    tem, ours = pair
    for s in pair:
        s.add_lines()
    assert ours.metadata.Sample.xray_lines == tem.metadata.Sample.xray_lines
    i_tem = tem.get_lines_intensity()
    i_ours = ours.get_lines_intensity()
    assert [s.metadata.Sample.xray_lines for s in i_ours] == [
        s.metadata.Sample.xray_lines for s in i_tem
    ]
    for a, b in zip(i_tem, i_ours, strict=True):
        np.testing.assert_allclose(b.data, a.data)
        assert b.data.sum() > 0


def test_integration_windows_and_background(pair):
    tem, ours = pair
    np.testing.assert_allclose(
        ours.estimate_integration_windows(), tem.estimate_integration_windows()
    )
    w_tem = tem.estimate_background_windows()
    w_ours = ours.estimate_background_windows()
    np.testing.assert_allclose(w_ours, w_tem)


def test_create_model_fits_the_same(pair):
    results = []
    for s in pair:
        m = s.create_model(auto_background=False)
        m.fit()
        results.append({c.name: c.A.value for c in m if hasattr(c, "A")})
    assert results[0].keys() == results[1].keys()
    for name, value in results[0].items():
        assert results[1][name] == pytest.approx(value, rel=1e-9)


def test_cliff_lorimer_quantification(pair):
    kfactors = [1.450226, 5.075602]  # Fe_Ka, Pt_La (exspy documentation values)
    out = []
    for s in pair:
        s.add_lines()
        intensities = s.get_lines_intensity()
        res = s.quantification(intensities, method="CL", factors=kfactors)
        out.append([r.data for r in res])
    for a, b in zip(*out, strict=True):
        np.testing.assert_allclose(b, a)
    assert sum(float(np.ravel(r)[0]) for r in out[1]) == pytest.approx(100.0)


def test_quantification_on_a_map(pair):
    """A small map built from the spectrum quantifies pixel by pixel as EDS_TEM does."""
    tem, _ = pair
    rng = np.random.default_rng(3)
    data = rng.poisson(np.broadcast_to(tem.data, (2, 3, tem.data.size))).astype(float)
    maps = []
    for stype in ("EDS_TEM", "EDS_ESMPY"):
        s = hs.signals.Signal1D(data.copy())
        s.axes_manager.signal_axes[0].update_from(
            tem.axes_manager.signal_axes[0], ("offset", "scale", "units", "name")
        )
        s.metadata.add_dictionary(tem.metadata.as_dictionary())
        s.metadata.Signal.signal_type = "EDS_TEM"
        s.set_signal_type(stype)
        s.add_lines()
        res = s.quantification(s.get_lines_intensity(), "CL", [1.450226, 5.075602])
        maps.append(np.stack([r.data for r in res]))
    assert maps[0].shape == (2, 2, 3)
    np.testing.assert_allclose(maps[1], maps[0])
