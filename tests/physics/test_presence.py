"""The drop-one test of each listed element's presence (issue #13, honest phase tables)."""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.physics import EnergyAxis, build_G
from esmpy_hs.physics.presence import listed_presence

AXIS = EnergyAxis(0.255, 0.01, 1975)  # 0.25–20 keV
PRESENT = ["Mg", "Si", "O", "Fe"]


def _mean(low_excess: float = 0.0, nitrogen: float = 0.0) -> np.ndarray:
    """Mg, Si, O, Fe and the continuum at 200 kV; ``low_excess``: the low-energy counts of a
    detector more efficient there than the model's (a broad factor 1 + low_excess·e^(−(E −
    0.25)/0.15)); ``nitrogen``: N lines holding that many counts."""
    model = build_G(AXIS, 200, PRESENT)
    amp = np.zeros(model.G.shape[1])
    for j, (el, kind) in enumerate(zip(model.column_elements, model.kinds, strict=True)):
        amp[j] = {"Mg": 2e5, "Si": 2e5, "O": 3e5, "Fe": 1e5}.get(str(el), 0.0) \
            if kind == "element" else 2e5  # fmt: skip
    mu = model.G @ amp
    mu = mu * (1.0 + low_excess * np.exp(-(AXIS.energies - 0.25) / 0.15))
    if nitrogen:
        n = build_G(AXIS, 200, ["N"], continuum=False).G[:, 0]
        mu = mu + nitrogen * n / n.sum()
    return mu


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_absent_listed_elements_are_flagged_and_present_ones_are_not(seed):
    y = np.random.default_rng(seed).poisson(_mean()).astype(float)
    r = listed_presence(y, AXIS, 200, [*PRESENT, "Zr", "Cr", "N"])
    assert set(r["not_detected"]) == {"Zr", "Cr", "N"}
    for el in PRESENT:
        assert r["statistic"][el] > 10 * r["threshold"]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_broad_low_energy_excess_is_not_nitrogen(seed):
    """The continuum's shape columns take a smooth excess below 0.5 keV; N's lines on top of the
    same excess are still needed."""
    rng = np.random.default_rng(seed)
    y = rng.poisson(_mean(low_excess=1.0)).astype(float)
    r = listed_presence(y, AXIS, 200, [*PRESENT, "N"])
    assert r["not_detected"] == ["N"]
    y = rng.poisson(_mean(low_excess=1.0, nitrogen=3e3)).astype(float)
    r = listed_presence(y, AXIS, 200, [*PRESENT, "N"])
    assert r["not_detected"] == []
