"""Bote-Salvat ionisation cross sections against the reference table of the project notes."""

from importlib import resources

import numpy as np
import pytest

from esmpy_hs.physics import SHELLS, ionisation_cross_section, ionisation_energy
from esmpy_hs.physics.cross_sections import _branches_at_switch, _tables

# σ (barn) at 80, 120, 200, 300 keV: formula checked against PENELOPE's tables (max 0.17 %),
# shared/notes/physics.md §1.
REFERENCE = {
    ("C", "K"): (2.612e4, 2.012e4, 1.517e4, 1.273e4),
    ("O", "K"): (1.282e4, 9935, 7539, 6351),
    ("Al", "K"): (3536, 2782, 2143, 1822),
    ("Si", "K"): (2865, 2262, 1747, 1488),
    ("Fe", "K"): (471.5, 393.9, 318.4, 278.4),
    ("Fe", "L3"): (2.012e4, 1.567e4, 1.196e4, 1.011e4),
    ("Cu", "K"): (336.1, 285.8, 234.8, 206.9),
    ("Cu", "L3"): (1.451e4, 1.135e4, 8689, 7364),
    ("Mo", "K"): (90.97, 86.43, 77.48, 71.63),
    ("Mo", "L3"): (4029, 3199, 2482, 2119),
    ("Ag", "L3"): (2770, 2214, 1728, 1481),
    ("Au", "L3"): (479, 407.3, 334.4, 293.2),
    ("Au", "M5"): (8478, 6746, 5253, 4501),
}


@pytest.mark.parametrize(("element", "shell"), list(REFERENCE))
def test_reference_values(element, shell):
    sigma = ionisation_cross_section(element, shell, [80.0, 120.0, 200.0, 300.0])
    # the reference values carry 4 significant figures; 0.5 % is the tolerance of the notes
    np.testing.assert_allclose(sigma, REFERENCE[(element, shell)], rtol=5e-3)


@pytest.mark.parametrize(("element", "shell"), list(REFERENCE))
def test_branches_continuous_at_U16(element, shell):
    # with the wrong sign on the (1-β²)^(1/4) term the Born branch jumps by several %
    low, high = _branches_at_switch(element, shell)
    assert abs(high / low - 1) < 1e-3


def test_all_table_entries_continuous():
    # a transcription error in any of the ~4000 coefficients would show up as a jump; the fit
    # itself joins to better than 0.15 % everywhere (worst: M shells of 3d elements)
    jumps = [abs(b / a - 1) for a, b in (_branches_at_switch(z, s) for z, s in _tables())]
    # shells per Z: H-Ne 1, Na 2, Mg-K 4, Ca-Ti 5, V 6, Cr-Ge 7, As-Es 9
    assert len(jumps) == 10 * 1 + 1 * 2 + 8 * 4 + 3 * 5 + 1 * 6 + 9 * 7 + 67 * 9
    assert max(jumps) < 2e-3


def test_shell_counts_of_light_elements():
    assert [s for s in SHELLS if ionisation_cross_section("Ne", s, 100.0) > 0] == ["K"]
    assert [s for s in SHELLS if ionisation_cross_section("Na", s, 100.0) > 0] == ["K", "L1"]
    assert ionisation_cross_section("Ge", "M5", 100.0) == 0.0
    assert ionisation_cross_section("As", "M5", 100.0) > 0.0


def test_vectorised_shapes_and_threshold():
    e = np.linspace(1.0, 300.0, 12).reshape(3, 4)
    s = ionisation_cross_section("Fe", "K", e)
    assert s.shape == (3, 4)
    assert isinstance(ionisation_cross_section("Fe", "K", 200.0), float)
    assert ionisation_cross_section("Fe", "K", 7.0) == 0.0  # below Ui = 7.083 keV
    assert ionisation_cross_section("Fe", "K", 7.2) > 0.0
    assert ionisation_energy("Fe", "K") == pytest.approx(7.08348)
    assert np.all(np.diff(ionisation_cross_section("Fe", "K", np.linspace(40, 300, 20))) < 0)


def test_bad_inputs():
    with pytest.raises(ValueError, match="Xx"):
        ionisation_cross_section("Xx", "K", 200.0)
    with pytest.raises(ValueError, match="N1"):
        ionisation_cross_section("Fe", "N1", 200.0)
    with pytest.raises(ValueError):
        ionisation_cross_section(100, "K", 200.0)


def test_data_file_provenance():
    text = resources.files("esmpy_hs.physics").joinpath("data/bote_salvat_2009.csv").read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert "usnistgov/EPQ" in header
    assert "SalvatXionA.csv" in header and "SalvatXionB.csv" in header and "xionUis.csv" in header
    assert "public" in header and "NIST" in header
    assert "Atomic Data and Nuclear Data Tables 95 (2009) 871-909" in header
