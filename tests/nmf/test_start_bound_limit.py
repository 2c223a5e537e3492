"""``START_BOUND_LIMIT``: in the low-dose blocks mode the start's move to the composition bound
leaves a phase alone whose bound is implausibly far in the binned blocks, and the pixels'
abundances decide for it after the fit, as after a full-resolution fit.

A grain boundary enriched in one element holds every element of the grains around it: moving
its (mixed) spectrum away from the grain reaches zero only where the enriched element alone is
left, far beyond every pixel. At a low dose (spectra from binned blocks, where the start's move
is the last word on the spectra) that move made a boundary of Sr alone out of espm's Ca–P–Sr map
(docs/validation.rst, "Maps espm's defaults make"); the same limit as the move after the fit
(a bound that leaves the phase's largest abundance below a quarter of the measured one is not
evidence of an embedded phase), applied to the pixels' abundances, keeps the enriched phase's
composition; a particle smaller than a block, as far from its bound in every block, is still
moved once the pixels show it (tests/test_validation_small.py at 18 counts per pixel).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import esmpy_hs.nmf._init as init
from esmpy_hs.datasets import gaussian_ripple_map, phase_spectra, simulate

GRAIN = {"Ca": 0.25, "P": 0.15, "O": 0.58, "Sr": 0.02}
BOUNDARY = {"Ca": 0.21, "P": 0.15, "O": 0.58, "Sr": 0.06}


def _map(dose: float):
    band = gaussian_ripple_map((48, 48), width=4.0, wavelength=200, amplitude=0, angle=90.0,
                               max_abundance=1.0)  # fmt: skip
    maps = np.stack([1.0 - band, band])
    comps = {"grain": GRAIN, "boundary": BOUNDARY}
    spectra = phase_spectra(comps, energy_resolution_MnKa=130.0, thickness=None)
    s = simulate(spectra, maps, dose=dose, random_state=3, compositions=comps,
                 phase_names=list(comps))  # fmt: skip
    s.set_signal_type("EDS_ESMPY")
    return s


def _fit(s):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.decomposition(algorithm="smart_nmf", output_dimension=2, print_info=False)
    q = s.quantify_phases()
    sr = q.atomic_fractions[q.elements.index("Sr")]
    ca = q.atomic_fractions[q.elements.index("Ca")]
    j = int(np.argmax(sr / np.maximum(ca, 1e-12)))  # the Sr-rich phase
    return float(sr[j]), float(ca[j]), str(s.metadata.SmartNMF.spectra_from)


@pytest.mark.parametrize("dose", [30.0])
def test_enriched_boundary_keeps_its_composition(dose, monkeypatch):
    truth_sr = BOUNDARY["Sr"] / sum(BOUNDARY.values())
    assert init.START_BOUND_LIMIT  # the default
    sr, ca, mode = _fit(_map(dose))
    print(f"with the limit Sr {sr:.4f}, Ca {ca:.4f}")
    assert mode == "blocks"  # the low-dose mode, where the start's move sets the spectra
    # the truth is 0.060; the bound where Ca reaches zero reads ≈ 0.3
    assert 0.5 * truth_sr < sr < 2.0 * truth_sr
    assert ca > 0.1
    # without the limit the start moves the boundary out to where Ca reaches zero
    monkeypatch.setattr(init, "START_BOUND_LIMIT", False)
    sr_old, ca_old, _ = _fit(_map(dose))
    print(f"without Sr {sr_old:.4f}, Ca {ca_old:.4f}")
    assert sr_old > 3.0 * truth_sr
