"""The extension is registered with HyperSpy and its classes round-trip."""

from __future__ import annotations

import subprocess
import sys

import hyperspy.api as hs
import numpy as np
import pytest

import esmpy_hs
from esmpy_hs.signals import EDSespm, LazyEDSespm


def _signal(shape=(3, 4, 64)) -> hs.signals.Signal1D:
    rng = np.random.default_rng(0)
    s = hs.signals.Signal1D(rng.poisson(2.0, size=shape).astype(float))
    ax = s.axes_manager.signal_axes[0]
    ax.offset, ax.scale, ax.units, ax.name = 0.2, 0.01, "keV", "Energy"
    return s


def test_version_is_defined():
    assert isinstance(esmpy_hs.__version__, str)
    assert esmpy_hs.__version__.count(".") >= 2


def test_extension_is_registered():
    from hyperspy.extensions import ALL_EXTENSIONS

    signals = ALL_EXTENSIONS["signals"]
    assert signals["EDSespm"]["signal_type"] == "EDS_ESMPY"
    assert signals["EDSespm"]["lazy"] is False
    assert signals["LazyEDSespm"]["signal_type"] == "EDS_ESMPY"
    assert signals["LazyEDSespm"]["lazy"] is True
    assert signals["EDSespm"]["module"] == "esmpy_hs.signals.eds_espm"


def test_known_signal_types_lists_ours(capsys):
    hs.print_known_signal_types()
    assert "EDS_ESMPY" in capsys.readouterr().out


def test_set_signal_type_eager_and_lazy():
    s = _signal()
    s.set_signal_type("EDS_ESMPY")
    assert type(s) is EDSespm
    assert s.metadata.Signal.signal_type == "EDS_ESMPY"

    lazy = _signal().as_lazy()
    lazy.set_signal_type("EDS_ESMPY")
    assert type(lazy) is LazyEDSespm
    assert lazy.metadata.Signal.signal_type == "EDS_ESMPY"


def test_alias_and_from_eds_tem():
    s = _signal()
    s.set_signal_type("EDS_TEM")
    s.set_signal_type("esmpy")
    assert type(s) is EDSespm
    assert s.metadata.Signal.signal_type == "EDS_ESMPY"


def test_as_lazy_and_compute_switch_twins():
    s = _signal()
    s.set_signal_type("EDS_ESMPY")
    lazy = s.as_lazy()
    assert type(lazy) is LazyEDSespm
    assert lazy.metadata.Signal.signal_type == "EDS_ESMPY"
    lazy.compute()
    assert type(lazy) is EDSespm
    np.testing.assert_array_equal(lazy.data, s.data)


@pytest.mark.parametrize("lazy", [False, True])
def test_hspy_round_trip(tmp_path, lazy):
    s = _signal()
    s.set_signal_type("EDS_ESMPY")
    s.set_microscope_parameters(beam_energy=200.0, energy_resolution_MnKa=128.0)
    s.add_elements(["Fe", "O"])
    s.metadata.set_item("Sample.thickness", 80.0)
    fname = tmp_path / "map.hspy"
    s.save(fname)
    r = hs.load(fname, lazy=lazy)
    assert type(r) is (LazyEDSespm if lazy else EDSespm)
    assert r.metadata.Signal.signal_type == "EDS_ESMPY"
    assert r.metadata.Sample.elements == ["Fe", "O"]
    assert r.metadata.Sample.thickness == 80.0
    assert r.metadata.get_item("Acquisition_instrument.TEM.beam_energy") == 200.0
    assert (
        r.metadata.get_item("Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa")
        == 128.0
    )
    if lazy:
        r.compute()
    np.testing.assert_array_equal(r.data, s.data)


def test_import_is_light():
    """Importing esmpy_hs after hyperspy.api adds well under a second."""
    code = (
        "import sys, time\n"
        "import hyperspy.api\n"
        "before = set(sys.modules)\n"
        "t = time.perf_counter()\n"
        "import esmpy_hs\n"
        "dt = time.perf_counter() - t\n"
        "print(dt)\n"
        "print(','.join(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    dt, new = float(out[0]), out[1].split(",")
    assert dt < 0.2, f"import esmpy_hs took {dt:.3f} s"
    assert not {"numba", "xraylib", "esmpy_hs.nmf", "esmpy_hs.physics"} & set(new), new
