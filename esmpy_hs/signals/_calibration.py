"""Detector self-calibration of an EDS_ESMPY signal (glue around
:func:`esmpy_hs.physics.calibration.calibrate_detector`).

The summed spectrum over all pixels is fitted on the channels that ``smart_nmf`` fits, with the
signal's elements, detector and specimen. The signal's axis and metadata are never changed: the
result only enters the physics model (:func:`esmpy_hs.signals._model.build_model`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from esmpy_hs.physics.calibration import Calibration, calibrate_detector

_logger = logging.getLogger("esmpy_hs.signals")

#: Values ``calibrate`` accepts besides a dict and a Calibration.
_AUTO = ("auto", True)
_OFF = (False, None, "off")


def summed_spectrum(signal) -> np.ndarray:
    """Counts summed over all navigation pixels, shape (channels,), float64 (lazy: computed)."""
    nav = signal.axes_manager.navigation_dimension
    data = signal.data
    total = data.sum(axis=tuple(range(nav))) if nav else data
    if hasattr(total, "compute"):
        total = total.compute()
    return np.asarray(total, dtype=np.float64).reshape(-1)


def calibrate_signal(signal, calibrate: Any = "auto", *, elements=None, stray_elements=(),
                     energy_range=None, detector=None, vacancy_transfer=True,
                     acquisition=None, summed=None) -> Calibration | None:  # fmt: skip
    """The calibration that ``smart_nmf`` uses for ``calibrate``.

    Parameters
    ----------
    signal : EDSespm
    calibrate : "auto", True, False, None, dict or Calibration
        ``"auto"``/True: fit offset, gain and width law on the summed spectrum; False/None: use
        the recorded values (returns None); a dict of known values (keys of
        :func:`~esmpy_hs.physics.calibration.calibrate_detector`'s ``fixed``: ``offset_shift_eV``,
        ``gain``, ``fwhm_quadratic``, ``fwhm_linear``, ``resolution_mnka``): those are held and
        the rest fitted; a :class:`Calibration` (or its ``to_dict()``): used as it is.
    elements, stray_elements, energy_range, detector, vacancy_transfer
        As for ``decomposition(algorithm="smart_nmf")``.
    acquisition, summed
        The signal's :class:`~esmpy_hs.signals._metadata.Acquisition` and summed spectrum when
        the caller has them already (None: read here).

    Returns
    -------
    Calibration or None
    """
    from esmpy_hs.physics import Specimen
    from esmpy_hs.signals._metadata import read_acquisition
    from esmpy_hs.signals._model import _detector, fit_channels

    if isinstance(calibrate, Calibration):
        return calibrate
    if isinstance(calibrate, str) and calibrate not in ("auto", "off"):
        raise ValueError(
            f"calibrate must be 'auto', True, False, a dict of known values or a Calibration, "
            f"got {calibrate!r}"
        )
    if any(calibrate is v or (isinstance(calibrate, str) and calibrate == v) for v in _OFF):
        return None
    fixed: dict[str, Any] = {}
    if isinstance(calibrate, Mapping):
        if "applied" in calibrate and "fwhm_eV" in calibrate:  # a stored Calibration
            return Calibration.from_dict(calibrate)
        fixed = dict(calibrate)
    elif not any(calibrate is v or (isinstance(calibrate, str) and calibrate == v)
                 for v in _AUTO):  # fmt: skip
        raise ValueError(
            f"calibrate must be 'auto', True, False, a dict of known values or a Calibration, "
            f"got {calibrate!r}"
        )
    acq = read_acquisition(signal, elements) if acquisition is None else acquisition
    stray = tuple(stray_elements or ())
    specimen_elements = [e for e in acq.elements if e not in stray]
    channels = fit_channels(acq.axis, acq.beam_energy, energy_range)
    specimen = Specimen(
        thickness=acq.thickness, density=acq.density, take_off_angle=acq.take_off_angle
    )
    return calibrate_detector(
        acq.axis,
        summed_spectrum(signal) if summed is None else summed,
        acq.beam_energy,
        specimen_elements,
        detector=_detector(acq, detector),
        specimen=specimen,
        stray_elements=stray,
        channels=channels,
        fixed=fixed,
        vacancy_transfer=vacancy_transfer,
    )


def report(calibration: Calibration | None, print_info: bool) -> None:
    """Print (``print_info``) and log the calibration line and its warnings."""
    import warnings

    if calibration is None:
        return
    text = calibration.summary()
    _logger.info(text)
    if print_info:
        print(f"smart_nmf: {text}")
    for note in calibration.warnings:
        warnings.warn(f"detector calibration: {note}", UserWarning, stacklevel=4)


def plot_calibration(calibration: Calibration, energies: np.ndarray, title: str = ""):
    """Summed spectrum, model and residual with the recorded and the calibrated detector.

    Parameters
    ----------
    calibration : Calibration
        With ``curves`` (as returned by :func:`calibrate_detector`).
    energies : numpy.ndarray
        Recorded channel centres (keV) of the whole axis.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    curves = calibration.curves
    if curves is None:
        raise ValueError("this calibration carries no curves to plot (it was read back)")
    c0, c1 = curves["channels"]
    e = energies[c0:c1]
    y = curves["data"]
    fig, axes = plt.subplots(
        3, 1, figsize=(11, 7), sharex=True, layout="constrained",
        gridspec_kw={"height_ratios": (3, 1, 1)},
    )  # fmt: skip
    ax = axes[0]
    ax.plot(e, y, color="0.5", lw=0.8, label="summed spectrum")
    ax.plot(e, curves["model_file"], color="C1", lw=0.8, label="model, recorded detector")
    if calibration.applied:
        ax.plot(e, curves["model"], color="C0", lw=0.8, label="model, calibrated detector")
    mask = curves.get("mask")
    if mask is not None and not np.all(mask):
        for axm in axes:
            axm.fill_between(e, 0, 1, where=~np.asarray(mask), color="0.85", step="mid",
                             transform=axm.get_xaxis_transform(), zorder=0,
                             label="left out (unexplained)" if axm is ax else None)  # fmt: skip
    ax.set_yscale("log")
    ax.set_ylim(max(float(np.min(y[y > 0])) if np.any(y > 0) else 0.5, 0.5) * 0.5, None)
    ax.set_ylabel("counts")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title + ("\n" if title else "") + calibration.summary(), fontsize=9)
    for axr, key, colour, label in (
        (axes[1], "model_file", "C1", f"recorded: deviance {calibration.deviance_file:.0f}"),
        (axes[2], "model", "C0", f"calibrated: deviance {calibration.deviance:.0f}"),
    ):
        mu = np.maximum(curves[key], 1e-9)
        resid = (y - mu) / np.sqrt(mu)
        if mask is not None:  # channels left out are not part of the fit
            resid = np.where(np.asarray(mask), resid, np.nan)
        axr.plot(e, resid, color=colour, lw=0.6)
        axr.axhline(0.0, color="0.3", lw=0.5)
        axr.set_ylabel("(data − model)/√model", fontsize=8)
        axr.set_title(f"residual, {label} for {calibration.degrees_of_freedom} d.o.f.",
                      fontsize=8)  # fmt: skip
    axes[-1].set_xlabel("energy (keV), recorded axis")
    return fig
