"""Wrap simulated counts into an ``EDS_ESMPY`` signal with complete metadata."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from esmpy_hs._units import to_float
from esmpy_hs.datasets._sample import dose_scale, expected_counts, sample_counts
from esmpy_hs.datasets._truth import TRUTH_NODE, truth_dict


def make_signal(
    data: ArrayLike,
    *,
    energy_offset: float = 0.3,
    energy_scale: float = 0.01,
    beam_energy: float = 200.0,
    energy_resolution_MnKa: float = 130.0,
    take_off_angle: float = 35.0,
    elements: Sequence[str] | None = None,
    thickness: float | str | None = None,
    density: float | str | None = None,
    pixel_size: float | None = None,
    efficiency: str | None = None,
    truth: Mapping[str, Any] | None = None,
    title: str = "",
):
    """An ``EDSespm`` signal (signal_type ``"EDS_ESMPY"``) around a data cube.

    Parameters
    ----------
    data : array_like, shape (rows, cols, channels)
        Counts (integers) or expected counts (floats).
    energy_offset : float
        Energy of the first channel's centre, keV.
    energy_scale : float
        Channel width, keV.
    beam_energy : float
        Beam energy, keV.
    energy_resolution_MnKa : float
        Detector FWHM at Mn Kα, eV.
    take_off_angle : float
        Detector take-off angle, degrees: stored as ``elevation_angle`` with
        ``tilt_alpha = 0``, ``tilt_beta = 0`` and ``azimuth_angle = 0``, so
        ``s.get_take_off_angle()`` returns it.
    elements : list of str, optional
        Element symbols (``s.add_elements``).
    thickness : float or str, optional
        Specimen thickness, nm (or a string such as ``"100 nm"``), stored as
        ``metadata.Sample.thickness`` in nm.
    density : float or str, optional
        Specimen density, g/cm³ (or ``"4.5 g/cm^3"``), stored as
        ``metadata.Sample.density`` in g/cm³.
    pixel_size : float, optional
        Navigation pixel size, nm (default: axes in pixels, scale 1).
    efficiency : str, optional
        Detector window preset (:data:`esmpy_hs.physics.WINDOW_PRESETS`),
        stored as ``Acquisition_instrument.TEM.Detector.EDS.efficiency``;
        give the same ``window`` as to :func:`phase_spectra` (default: none
        stored, i.e. the physics model's default detector).
    truth : dict, optional
        Ground truth stored as ``metadata.ESMPY_truth`` (see
        :func:`esmpy_hs.datasets.get_truth`).
    title : str
        ``metadata.General.title``.

    Returns
    -------
    EDSespm
        Navigation shape (cols, rows) in HyperSpy's (x, y) order, i.e. data
        shape (rows, cols, channels); energy axis in keV named "Energy".
    """
    import hyperspy.api as hs

    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"data must be (rows, cols, channels), got shape {data.shape}")
    s = hs.signals.Signal1D(data)
    s.set_signal_type("EDS_ESMPY")
    s.metadata.General.title = title
    ax = s.axes_manager.signal_axes[0]
    ax.name = "Energy"
    ax.units = "keV"
    ax.offset = float(energy_offset)
    ax.scale = float(energy_scale)
    for nav, name in zip(s.axes_manager.navigation_axes, ("x", "y"), strict=True):
        nav.name = name
        if pixel_size is not None:
            nav.scale = float(pixel_size)
            nav.units = "nm"

    s.set_microscope_parameters(
        beam_energy=float(beam_energy),
        energy_resolution_MnKa=float(energy_resolution_MnKa),
        tilt_stage=0.0,
        elevation_angle=float(take_off_angle),
        azimuth_angle=0.0,
    )
    tem = "Acquisition_instrument.TEM"
    # exspy stores the key as "beam_energy " (trailing space, same attribute slug):
    # setting it again rewrites the key cleanly
    s.metadata.set_item(f"{tem}.beam_energy", float(beam_energy))
    s.metadata.set_item(f"{tem}.Stage.tilt_beta", 0.0)

    if efficiency is not None:
        s.metadata.set_item(f"{tem}.Detector.EDS.efficiency", str(efficiency))
    if elements:
        s.add_elements(sorted(set(elements)))
    if thickness is not None:
        s.metadata.set_item("Sample.thickness", to_float(thickness, "nm", "thickness"))
    if density is not None:
        s.metadata.set_item("Sample.density", to_float(density, "g/cm^3", "density"))
    if truth is not None:
        s.metadata.set_item(TRUTH_NODE, dict(truth))
    return s


def simulate(
    spectra: ArrayLike,
    maps: ArrayLike,
    *,
    dose: float | None = None,
    random_state: int | np.random.Generator | None = None,
    noise: bool = True,
    phase_names: Sequence[str] | None = None,
    compositions: Mapping[str, Mapping[str, float]] | None = None,
    density_factors: ArrayLike | None = None,
    continuum: ArrayLike | None = None,
    description: str | None = None,
    **signal_kwargs: Any,
):
    """A simulated spectrum image, with its ground truth, from spectra and maps.

    Parameters
    ----------
    spectra : array_like, shape (k, channels)
        Phase spectra: relative count rates per unit abundance, per channel
        (from :func:`phase_spectra` or given directly).
    maps : array_like, shape (k, rows, cols)
        Abundances (fractions).
    dose : float, optional
        Mean expected counts per pixel; None keeps the spectra's own scale
        (counts per pixel per unit abundance).
    random_state : int, numpy.random.Generator or None
        Seed of the Poisson draw.
    noise : bool
        Draw Poisson counts (integer data) or keep the expected counts
        (float64 data).
    phase_names : list of str, optional
        Default ``["phase 0", "phase 1", ...]``.
    compositions : dict, optional
        ``{phase name: {element: atomic fraction}}``, stored with the truth;
        its elements are added to the signal unless ``elements`` is given.
    density_factors, continuum : array_like, optional
        Stored with the truth (documentation of how the spectra were made).
    description : str, optional
        Stored with the truth and used as the title unless ``title`` is given.
    **signal_kwargs
        Passed to :func:`make_signal` (energy axis, beam energy, detector,
        elements, thickness, density, pixel size, title).

    Returns
    -------
    EDSespm
        Data (rows, cols, channels); ``metadata.ESMPY_truth`` holds the
        spectra scaled to counts (so that the noiseless data equal
        ``Σ_k maps_k · spectra_k``), the maps, the dose and the seed.
    """
    sp = np.atleast_2d(np.asarray(spectra, dtype=float))
    mp = np.asarray(maps, dtype=float)
    if mp.ndim == 2:
        mp = mp[None]
    s_factor = dose_scale(sp, mp, dose)
    if noise:
        data = sample_counts(sp, mp, dose, random_state)
    else:
        data = expected_counts(sp, mp, dose)
    if phase_names is None:
        phase_names = [f"phase {i}" for i in range(sp.shape[0])]
    if compositions is not None and "elements" not in signal_kwargs:
        signal_kwargs["elements"] = sorted({el for c in compositions.values() for el in c})
    signal_kwargs.setdefault("title", description or "simulated EDX spectrum image")
    axis = {
        "offset": float(signal_kwargs.get("energy_offset", 0.3)),
        "scale": float(signal_kwargs.get("energy_scale", 0.01)),
        "size": sp.shape[1],
    }
    true_spectra = sp * s_factor
    mean_dose = float(np.tensordot(mp.mean(axis=(1, 2)), true_spectra.sum(axis=1), axes=1))
    truth = truth_dict(
        phase_names=phase_names,
        spectra=true_spectra,
        maps=mp,
        dose=mean_dose,
        noise="poisson" if noise else "none",
        energy_axis=axis,
        random_state=random_state,
        compositions=compositions,
        density_factors=density_factors,
        continuum=continuum,
        description=description,
    )
    return make_signal(data, truth=truth, **signal_kwargs)
