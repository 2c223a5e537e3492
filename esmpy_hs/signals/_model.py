"""The physics model of a signal: its fitted channels, its detector and G.

Shared by the fit (:mod:`._decomposition`) and the detector calibration (:mod:`._calibration`).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from esmpy_hs.signals._metadata import read_acquisition

#: Default low-energy cut (keV): the detector noise peak ends near 0.1–0.15 keV.
DEFAULT_LOW_CUT_KEV = 0.25



def fit_channels(axis, beam_energy: float, energy_range=None) -> tuple[int, int]:
    """The channel range ``[first, stop)`` to fit.

    Channels at or below ``energy_range[0]`` (default :data:`DEFAULT_LOW_CUT_KEV`, and always
    above 0 keV) and at or above ``energy_range[1]`` (default: the beam energy) are left out.
    """
    low, high = (None, None) if energy_range is None else energy_range
    low = DEFAULT_LOW_CUT_KEV if low is None else float(low)
    high = beam_energy if high is None else min(float(high), beam_energy)
    e = axis.energies
    keep = np.nonzero((e > max(low, 0.0)) & (e < high))[0]
    if keep.size < 2:
        raise ValueError(
            f"no channels to fit between {max(low, 0.0):.3g} and {high:.3g} keV on an axis from "
            f"{e[0]:.3g} to {e[-1]:.3g} keV; check the energy axis (offset, scale, units) "
            "or energy_range"
        )
    return int(keep[0]), int(keep[-1]) + 1


def _detector(acq, detector):
    from esmpy_hs.physics import Detector

    if isinstance(detector, Detector):
        return detector
    spec = acq.efficiency if detector is None else detector
    kwargs: dict[str, Any] = {"resolution_mnka": acq.energy_resolution_MnKa}
    if spec is None:
        pass
    elif isinstance(spec, str):
        kwargs["window"] = spec
    elif isinstance(spec, dict) and {"energy", "efficiency"} <= set(spec):
        kwargs["efficiency_curve"] = (np.asarray(spec["energy"]), np.asarray(spec["efficiency"]))
    else:
        raise ValueError(
            "the detector efficiency must be a preset name (see "
            "esmpy_hs.physics.WINDOW_PRESETS) or {'energy': [...keV], 'efficiency': [...]}, "
            f"got {spec!r}"
        )
    return Detector(**kwargs)


def build_model(signal, *, elements=None, stray_elements=(), split=None, continuum=True,
                energy_range=None, detector=None, vacancy_transfer=True,
                calibration=None, acquisition=None):  # fmt: skip
    """Build the physics model of ``signal`` on its fitted channels.

    ``calibration`` (an :class:`esmpy_hs.physics.calibration.Calibration`) replaces the recorded
    energy axis and width law in the model; the fitted channels stay those of the recorded axis.

    Returns
    -------
    model : esmpy_hs.physics.PhysicsModel
    channels : tuple of int
        ``[first, stop)`` on the signal axis.
    acquisition : Acquisition
    """
    from esmpy_hs.physics import EnergyAxis, Specimen, build_G

    acq = read_acquisition(signal, elements) if acquisition is None else acquisition
    stray = tuple(stray_elements or ())
    specimen_elements = tuple(e for e in acq.elements if e not in stray)
    c0, c1 = fit_channels(acq.axis, acq.beam_energy, energy_range)
    full = acq.axis if calibration is None else calibration.axis(acq.axis)
    axis = EnergyAxis(full.offset + c0 * full.scale, full.scale, c1 - c0)
    det = _detector(acq, detector)
    if calibration is not None:
        det = calibration.detector(det)
    specimen = Specimen(
        thickness=acq.thickness, density=acq.density, take_off_angle=acq.take_off_angle
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build_G(
            axis,
            acq.beam_energy,
            specimen_elements,
            detector=det,
            specimen=specimen,
            split=split,
            stray_elements=stray,
            continuum=continuum,
            vacancy_transfer=vacancy_transfer,
        )
    if specimen_elements and not model.elements:
        window = f"{model.energies[0]:.3g}–{model.energies[-1]:.3g} keV"
        raise ValueError(
            f"none of the elements {', '.join(specimen_elements)} has an X-ray line the model "
            f"can see in the fitted window {window} (H and He emit none; Li and Be lines lie "
            "below the low cut): nothing to quantify. Set the specimen's elements with "
            "s.set_elements([...]) or widen energy_range"
        )
    for w in caught:  # e.g. one element without a line in the window: its column is dropped
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return model, (c0, c1), acq
