"""The simulated signal: class, axes, metadata, ground truth, .hspy round trip."""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.datasets import get_truth, make_signal, reference_maps, simulate
from esmpy_hs.signals import EDSespm

COMPS = {
    "matrix": {"Si": 0.3, "O": 0.7},
    "Fe-rich": {"Fe": 0.5, "O": 0.5},
    "Ca-perovskite": {"Ca": 0.2, "Ti": 0.2, "O": 0.6},
}


@pytest.fixture(scope="module")
def sim():
    rng = np.random.default_rng(0)
    spectra = rng.random((3, 150))
    return simulate(
        spectra,
        reference_maps((24, 20)),
        dose=100,
        random_state=7,
        phase_names=list(COMPS),
        compositions=COMPS,
        density_factors=[1.0, 0.8, 1.2],
        energy_offset=0.5,
        energy_scale=0.02,
        beam_energy=200,
        energy_resolution_MnKa=128,
        take_off_angle=22.0,
        thickness="80 nm",
        density=4.5,
        description="toy",
    )


def test_class_axes_and_dtype(sim):
    assert isinstance(sim, EDSespm)
    assert sim.metadata.Signal.signal_type == "EDS_ESMPY"
    assert sim.data.shape == (24, 20, 150)
    assert np.issubdtype(sim.data.dtype, np.integer)
    assert sim.axes_manager.navigation_shape == (20, 24)
    ax = sim.axes_manager.signal_axes[0]
    assert (ax.name, ax.units, ax.size) == ("Energy", "keV", 150)
    assert ax.offset == pytest.approx(0.5) and ax.scale == pytest.approx(0.02)


def test_metadata(sim):
    md = sim.metadata
    tem = md.Acquisition_instrument.TEM
    assert tem.beam_energy == 200
    assert "beam_energy" in tem.as_dictionary()
    assert "beam_energy " not in tem.as_dictionary()
    assert tem.Detector.EDS.energy_resolution_MnKa == 128
    assert sim.get_take_off_angle() == pytest.approx(22.0)
    assert list(md.Sample.elements) == ["Ca", "Fe", "O", "Si", "Ti"]
    assert md.Sample.thickness == pytest.approx(80.0)
    assert md.Sample.density == pytest.approx(4.5)
    assert md.General.title == "toy"


def test_physics_reader_accepts_it(sim):
    from esmpy_hs.signals._metadata import read_acquisition

    acq = read_acquisition(sim)
    assert acq.beam_energy == 200 and acq.take_off_angle == pytest.approx(22.0)
    assert acq.thickness == pytest.approx(80) and acq.density == pytest.approx(4.5)
    assert acq.axis.offset == pytest.approx(0.5) and acq.axis.size == 150


def _check_truth(truth, sim):
    assert truth["phase_names"] == list(COMPS)
    assert truth["spectra"].shape == (3, 150)
    assert truth["maps"].shape == (3, 24, 20)
    np.testing.assert_allclose(truth["maps"], reference_maps((24, 20)))
    assert truth["dose"] == pytest.approx(100)
    assert truth["random_state"] == 7
    assert truth["noise"] == "poisson"
    assert truth["compositions"] == COMPS
    np.testing.assert_allclose(truth["density_factors"], [1.0, 0.8, 1.2])
    assert truth["energy_axis"] == {"offset": 0.5, "scale": 0.02, "size": 150}
    # the stored spectra are in counts: the noiseless image is Σ maps·spectra
    expected = np.tensordot(truth["maps"], truth["spectra"], axes=(0, 0))
    assert expected.sum(axis=-1).mean() == pytest.approx(100)
    assert abs(sim.data.sum(axis=-1).mean() - 100) < 5 * np.sqrt(100 / 480)


def test_truth(sim):
    _check_truth(get_truth(sim), sim)


def test_hspy_round_trip(sim, tmp_path):
    import hyperspy.api as hs

    path = tmp_path / "sim.hspy"
    sim.save(path)
    back = hs.load(path)
    assert isinstance(back, EDSespm)
    assert back.metadata.Signal.signal_type == "EDS_ESMPY"
    np.testing.assert_array_equal(back.data, sim.data)
    assert back.data.dtype == sim.data.dtype
    assert back.get_take_off_angle() == pytest.approx(22.0)
    truth = get_truth(back)
    _check_truth(truth, back)
    np.testing.assert_array_equal(truth["spectra"], get_truth(sim)["spectra"])


def test_noiseless_and_no_truth():
    spectra = np.ones((2, 10))
    maps = np.stack([np.full((3, 4), 0.25), np.full((3, 4), 0.75)])
    s = simulate(spectra, maps, dose=20, noise=False)
    assert s.data.dtype == np.float64
    np.testing.assert_allclose(s.data.sum(axis=-1), 20)
    t = get_truth(s)
    assert t["noise"] == "none" and "random_state" not in t and "compositions" not in t
    assert t["phase_names"] == ["phase 0", "phase 1"]
    bare = make_signal(np.zeros((2, 2, 5), dtype=np.uint16), efficiency="polymer")
    assert bare.metadata.Acquisition_instrument.TEM.Detector.EDS.efficiency == "polymer"
    with pytest.raises(ValueError, match="no ground truth"):
        get_truth(bare)
