"""Stale results refused; inputs that used to crash deep inside get a clear message or work."""

from __future__ import annotations

import hyperspy.api as hs
import matplotlib.pyplot as plt
import numpy as np
import pytest

from esmpy_hs.signals._decomposition import StaleResultError
from esmpy_hs.signals._metadata import read_acquisition, read_energy_axis
from tests.reliability.conftest import FAST


def _fit(s, k=2, **kwargs):
    s.decomposition(algorithm="smart_nmf", output_dimension=k, **{**FAST, **kwargs})


# -- stale results -------------------------------------------------------------------------


def _svd(s):
    s.change_dtype("float64")
    s.decomposition(algorithm="SVD", output_dimension=3, print_info=False)


def test_plot_phases_after_another_decomposition_is_refused(fitted):
    _svd(fitted)
    with pytest.raises(StaleResultError, match=r"'SVD', not smart_nmf.*algorithm='smart_nmf'"):
        fitted.plot_phases()
    assert plt.get_fignums() == []


def test_quantify_after_another_decomposition_is_refused(fitted):
    _svd(fitted)
    with pytest.raises(StaleResultError, match=r"'SVD'.*del s\.metadata\.SmartNMF"):
        fitted.quantify_phases()


def test_quantify_after_a_crop_is_refused(fitted):
    crop = fitted.inav[:6, :6]
    with pytest.raises(StaleResultError, match=r"\(12, 12, \d+\).*\(6, 6, \d+\).*inav"):
        crop.quantify_phases()
    with pytest.raises(StaleResultError, match="cropped"):
        crop.plot_phases()
    # refitting the crop gives a current result
    _fit(crop, 3)
    assert crop.quantify_phases().atomic_fractions.shape[1] == 3


def test_result_survives_save_and_load(fitted, tmp_path):
    before = fitted.quantify_phases()
    fitted.save(tmp_path / "f.hspy")
    again = hs.load(tmp_path / "f.hspy")
    np.testing.assert_array_equal(again.quantify_phases().atomic_fractions,
                                  before.atomic_fractions)  # fmt: skip


# -- crashes -------------------------------------------------------------------------------


def test_elements_without_lines_are_refused_before_the_fit(small):
    small.set_elements(["H", "He"])
    with pytest.raises(ValueError, match=r"H, He.*no|none of the elements H, He"):
        _fit(small)
    assert "SmartNMF" not in small.metadata


def test_an_element_without_lines_is_named_and_left_out(small):
    small.add_elements(["H"])
    with pytest.warns(UserWarning, match="H has no X-ray line.*dropped"):
        _fit(small)
    q = small.quantify_phases()
    assert "H" not in q.elements and "Fe" in q.elements


def test_elevation_with_units_fits(small):
    small.metadata.set_item("Acquisition_instrument.TEM.Detector.EDS.elevation_angle", "35 deg")
    _fit(small)
    assert small.quantify_phases().atomic_fractions.shape[1] == 2


@pytest.mark.parametrize("client", ["abc", True, 3])
def test_bad_client_is_refused(small, client):
    lazy = small.as_lazy()
    with pytest.raises(TypeError, match=r"client must be None.*False.*dask\.distributed\.Client"):
        _fit(lazy, client=client)


# zarr 2.18 announces its next major version on every .zspy save
@pytest.mark.filterwarnings("ignore:The NestedDirectoryStore is deprecated:FutureWarning")
def test_zspy_round_trip(fitted, tmp_path):
    pytest.importorskip("zarr")
    path = tmp_path / "f.zspy"
    fitted.save(path)
    again = hs.load(path)
    assert type(again).__name__ == "EDSespm"
    np.testing.assert_array_equal(again.data, fitted.data)
    np.testing.assert_array_equal(again.quantify_phases().atomic_fractions,
                                  fitted.quantify_phases().atomic_fractions)  # fmt: skip


def test_beam_energy_in_kilovolts_fits(small):
    ref = small.deepcopy()
    small.metadata.set_item("Acquisition_instrument.TEM.beam_energy", "200 kV")
    _fit(small)
    _fit(ref)
    np.testing.assert_array_equal(small.metadata.SmartNMF.W, ref.metadata.SmartNMF.W)


def test_decreasing_axis_names_the_fix_and_the_fix_works(small):
    ref = small.deepcopy()
    ax = small.axes_manager.signal_axes[0]
    small.data = small.data[..., ::-1].copy()
    ax.offset, ax.scale = ax.axis[-1], -ax.scale  # a file written high energy first
    with pytest.raises(ValueError, match=r"decreases.*reverse the channels") as info:
        _fit(small)
    # the fix the message gives, applied as written
    fix = str(info.value).split("reverse the channels with ", 1)[1]
    exec(fix.replace("; ", "\n"), {"s": small})
    got, want = read_energy_axis(small), read_energy_axis(ref)
    assert got.size == want.size and got.scale == want.scale
    assert got.offset == pytest.approx(want.offset, abs=1e-9)
    np.testing.assert_array_equal(small.data, ref.data)


def test_uniform_functional_axis_is_uniform(small):
    ref = read_energy_axis(small)
    ax = small.axes_manager.signal_axes[0]
    ax.convert_to_functional_data_axis(expression="a * x + b", a=1000.0, b=0.0)  # x: keV
    ax = small.axes_manager.signal_axes[0]
    ax.units = "eV"
    assert not ax.is_uniform
    got = read_energy_axis(small)
    assert got.size == ref.size
    assert got.offset == pytest.approx(ref.offset, abs=1e-12)
    assert got.scale == pytest.approx(ref.scale, rel=1e-9)
    _fit(small)


def test_non_uniform_axis_is_refused_with_the_widths(small):
    ax = small.axes_manager.signal_axes[0]
    ax.convert_to_functional_data_axis(expression="a * x**2 + b", a=1e-5, b=ax.offset)
    with pytest.raises(ValueError, match=r"not uniform \(channel widths from .*interpolate"):
        read_acquisition(small)
