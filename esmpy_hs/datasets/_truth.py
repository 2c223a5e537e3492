"""The ground truth that a simulated signal carries in its metadata.

It lives in ``metadata.ESMPY_truth`` (so it survives ``.hspy``/``.zspy``
save and load) with these items:

``phase_names`` : list of str, length k
    Names of the phases, in the order of the other items.
``spectra`` : float64 array, (k, channels)
    Expected counts per pixel and channel for a pixel made of pure phase k
    (abundance 1): the noiseless data are exactly
    ``Σ_k maps[k, i, j] · spectra[k, :]``.
``maps`` : float64 array, (k, rows, cols)
    Abundances (fractions; they sum to 1 per pixel for the built-in samples).
``dose`` : float
    Mean expected counts per pixel (counts/pixel).
``noise`` : str
    ``"poisson"`` (the data are one Poisson draw) or ``"none"`` (the data
    are the expected counts).
``energy_axis`` : dict
    ``{"offset": keV, "scale": keV/channel, "size": channels}`` of the
    simulated spectra (lets scores align a cropped signal).
``random_state`` : int, optional
    The integer seed of the draw (absent when none or a Generator was given).
``compositions`` : dict, optional
    ``{phase name: {element: atomic fraction}}`` as given to the simulator.
``density_factors`` : float array (k,), optional
    Relative count rates of the phases (see :func:`phase_spectra`).
``continuum`` : float array (k, 2), optional
    Continuum coefficients (b0, b1) per phase.
``description`` : str, optional
    What the sample is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: Metadata node (directly under ``metadata``) that holds the ground truth.
TRUTH_NODE = "ESMPY_truth"

_REQUIRED = ("phase_names", "spectra", "maps")


def _plain(value: Any) -> Any:
    """numpy scalars → Python numbers, nested mappings → dicts (arrays stay arrays)."""
    if hasattr(value, "as_dictionary"):
        value = value.as_dictionary()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def truth_dict(
    *,
    phase_names,
    spectra,
    maps,
    dose: float,
    noise: str,
    energy_axis: Mapping[str, float],
    random_state=None,
    compositions: Mapping | None = None,
    density_factors=None,
    continuum=None,
    description: str | None = None,
) -> dict[str, Any]:
    """Assemble (and check) the ground-truth dictionary stored with a signal.

    See the module docstring for the items and their units.
    """
    spectra = np.asarray(spectra, dtype=float)
    maps = np.asarray(maps, dtype=float)
    names = [str(n) for n in phase_names]
    if spectra.ndim != 2 or maps.ndim != 3:
        raise ValueError("spectra must be (k, channels) and maps (k, rows, cols)")
    if not (len(names) == spectra.shape[0] == maps.shape[0]):
        raise ValueError(
            f"{len(names)} phase names, {spectra.shape[0]} spectra, {maps.shape[0]} maps"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"phase names must be unique, got {names}")
    truth: dict[str, Any] = {
        "phase_names": names,
        "spectra": spectra,
        "maps": maps,
        "dose": float(dose),
        "noise": str(noise),
        "energy_axis": {
            "offset": float(energy_axis["offset"]),
            "scale": float(energy_axis["scale"]),
            "size": int(energy_axis["size"]),
        },
    }
    if isinstance(random_state, int | np.integer) and not isinstance(random_state, bool):
        truth["random_state"] = int(random_state)
    if compositions is not None:
        missing = [n for n in names if n not in compositions]
        if missing:
            raise ValueError(f"no composition for phases {missing}")
        truth["compositions"] = {
            n: {str(el): float(x) for el, x in compositions[n].items()} for n in names
        }
    if density_factors is not None:
        truth["density_factors"] = np.asarray(density_factors, dtype=float)
    if continuum is not None:
        truth["continuum"] = np.asarray(continuum, dtype=float)
    if description:
        truth["description"] = str(description)
    return truth


def get_truth(signal) -> dict[str, Any]:
    """The ground truth stored with a simulated signal.

    Parameters
    ----------
    signal : BaseSignal
        A signal made by :mod:`esmpy_hs.datasets` (or loaded from a file
        saved from one).

    Returns
    -------
    dict
        The items of ``metadata.ESMPY_truth`` (see the module docstring):
        ``phase_names``, ``spectra`` (k × channels, counts per pixel per unit
        abundance), ``maps`` (k × rows × cols), ``dose``, ``noise``,
        ``energy_axis`` and, when known, ``random_state``,
        ``compositions``, ``density_factors``, ``continuum``,
        ``description``. Arrays are numpy arrays, numbers Python numbers.

    Raises
    ------
    ValueError
        If the signal carries no ground truth.
    """
    node = signal.metadata.get_item(TRUTH_NODE, None)
    if node is None:
        raise ValueError(
            f"the signal has no ground truth (metadata.{TRUTH_NODE}); only signals simulated "
            "with esmpy_hs.datasets carry one"
        )
    truth = _plain(node)
    missing = [k for k in _REQUIRED if k not in truth]
    if missing:
        raise ValueError(f"metadata.{TRUTH_NODE} lacks {missing}")
    truth["spectra"] = np.asarray(truth["spectra"], dtype=float)
    truth["maps"] = np.asarray(truth["maps"], dtype=float)
    truth["phase_names"] = [str(n) for n in truth["phase_names"]]
    for key in ("density_factors", "continuum"):
        if key in truth:
            truth[key] = np.asarray(truth[key], dtype=float)
    return truth
