"""The calibration's width warning names only lines on the fitted channels.

espm's grain-boundary map starts at 1.27 keV; its detector's width law (0.065 keV + 0.01·E)
is 62 % wider at O Kα than the Fiori law of its recorded Mn Kα resolution, and the calibration
warned "the FWHM at O Ka changed by +62 %" for a line that is not on the axis.
"""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.physics import Detector, EnergyAxis, build_G
from esmpy_hs.physics.calibration import calibrate_detector


def _sum_spectrum(axis: EnergyAxis, elements: list[str]) -> np.ndarray:
    true = Detector(fwhm_model="linear", fwhm_linear=(0.01, 0.065), resolution_mnka=124.0)
    m = build_G(axis, 200.0, elements, detector=true)
    w = np.array([0.5 if lab in ("Ca", "P", "O") else 0.05 for lab in m.labels])
    w[[i for i, lab in enumerate(m.labels) if lab.startswith("continuum")]] = 0.5
    mu = m.G @ w
    return np.random.default_rng(0).poisson(2e7 * mu / mu.sum()).astype(float)


@pytest.mark.parametrize("offset, o_on_axis", [(1.27, False), (0.2, True)])
def test_width_warning_only_for_lines_on_the_axis(offset, o_on_axis):
    axis = EnergyAxis(offset, 0.005 if offset > 1 else 0.01, 3746 if offset > 1 else 1980)
    elements = ["Ca", "P", "Sr", "Cu"] + (["O"] if o_on_axis else [])
    cal = calibrate_detector(axis, _sum_spectrum(axis, elements), 200.0, elements,
                             detector=Detector(resolution_mnka=124.0))  # fmt: skip
    assert cal.fwhm_eV["O Ka"] / cal.file_fwhm_eV["O Ka"] - 1.0 > 0.5  # the law is that wide
    warned = any("FWHM at O Ka" in w for w in cal.warnings)
    assert warned == o_on_axis
