"""Read what the physics model needs from an EDS signal's metadata.

Every field comes from the standard exspy/HyperSpy places; the two specimen
fields are ours (exspy never reads them):

``Acquisition_instrument.TEM.beam_energy``
    Beam energy, keV.
``Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa``
    FWHM of Mn Kα, eV.
``Acquisition_instrument.TEM.Stage.tilt_alpha`` / ``tilt_beta``,
``Acquisition_instrument.TEM.Detector.EDS.azimuth_angle`` / ``elevation_angle``
    Degrees; they give the take-off angle.
``Acquisition_instrument.TEM.Detector.EDS.efficiency``
    Optional: the name of a detector efficiency preset (see
    :class:`esmpy_hs.physics.Detector`) or a dictionary
    ``{"energy": [...keV], "efficiency": [...]}``.
``Sample.elements``
    Element symbols.
``Sample.thickness``
    Specimen thickness, nm (a number, or a string such as ``"80 nm"``).
    Absent: no absorption correction.
``Sample.density``
    Specimen density, g/cm³ (a number, or ``"4.5 g/cm^3"``). Needed with a thickness.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from esmpy_hs._units import to_float
from esmpy_hs.physics import EnergyAxis

TEM = "Acquisition_instrument.TEM"
EDS = f"{TEM}.Detector.EDS"


class MissingMetadataError(ValueError):
    """A metadata field that the model needs is absent; the message says how to set it."""


@dataclass(frozen=True)
class Acquisition:
    """Everything the physics model reads from the metadata."""

    beam_energy: float  #: keV
    elements: tuple[str, ...]
    energy_resolution_MnKa: float  #: eV
    take_off_angle: float  #: degrees
    axis: EnergyAxis
    thickness: float | None = None  #: nm
    density: float | None = None  #: g/cm³
    efficiency: Any = None  #: preset name, {"energy", "efficiency"} dict or None (default)
    notices: list[str] = field(default_factory=list)


def _get(metadata, path: str):
    value = metadata.get_item(path, None)
    if value is None and path.endswith("beam_energy"):
        # exspy's set_microscope_parameters once stored "beam_energy " (trailing space)
        value = metadata.get_item(path + " ", None)
    return value


def read_energy_axis(signal) -> EnergyAxis:
    """The signal axis as offset/scale/size in keV.

    Raises
    ------
    ValueError
        If the axis is not uniform or its units are neither eV nor keV.
    """
    ax = signal.axes_manager.signal_axes[0]
    units = str(ax.units).strip() if ax.units is not None else ""
    if units not in ("eV", "keV"):
        raise ValueError(
            f"the energy axis has units {units!r}; only 'eV' and 'keV' are supported. "
            "Set them with s.axes_manager.signal_axes[0].units = 'keV' "
            "(and scale/offset in the same unit)."
        )
    if not getattr(ax, "is_uniform", True):
        raise ValueError("the energy axis must be uniform (constant channel width)")
    return EnergyAxis.from_any(ax, units)


def read_acquisition(signal, elements=None) -> Acquisition:
    """Read beam energy, elements, detector and specimen from ``signal.metadata``.

    Parameters
    ----------
    signal : EDSespm
        The signal.
    elements : list of str, optional
        Overrides ``metadata.Sample.elements``.

    Returns
    -------
    Acquisition

    Raises
    ------
    MissingMetadataError
        Naming the missing metadata path and the call that sets it.
    """
    md = signal.metadata
    notices: list[str] = []

    beam_energy = _get(md, f"{TEM}.beam_energy")
    if beam_energy is None:
        raise MissingMetadataError(
            f"the beam energy is missing: metadata.{TEM}.beam_energy (keV). "
            "Set it with s.set_microscope_parameters(beam_energy=200)."
        )
    beam_energy = to_float(beam_energy, "keV", "beam energy")
    if not beam_energy > 0:
        raise ValueError(f"the beam energy must be positive, got {beam_energy} keV")

    if elements is None:
        elements = _get(md, "Sample.elements")
    if elements is None or len(elements) == 0:
        raise MissingMetadataError(
            "no elements are set: metadata.Sample.elements is empty. "
            "Set them with s.add_elements(['Fe', 'O', ...])."
        )
    elements = tuple(str(e) for e in elements)

    resolution = _get(md, f"{EDS}.energy_resolution_MnKa")
    if resolution is None:
        raise MissingMetadataError(
            f"the detector resolution is missing: metadata.{EDS}.energy_resolution_MnKa "
            "(eV, FWHM at Mn Kα). Set it with "
            "s.set_microscope_parameters(energy_resolution_MnKa=130)."
        )
    resolution = to_float(resolution, "eV", "energy_resolution_MnKa")

    for key in ("Stage.tilt_alpha", "Detector.EDS.azimuth_angle", "Detector.EDS.elevation_angle"):
        if _get(md, f"{TEM}.{key}") is None:
            name = {"Stage.tilt_alpha": "tilt_stage"}.get(key, key.rsplit(".", 1)[1])
            raise MissingMetadataError(
                f"metadata.{TEM}.{key} (degrees) is missing; it is needed for the "
                f"take-off angle. Set it with s.set_microscope_parameters({name}=...)."
            )
    toa = float(signal.get_take_off_angle())

    thickness = _get(md, "Sample.thickness")
    density = _get(md, "Sample.density")
    if thickness is not None:
        thickness = to_float(thickness, "nm", "Sample.thickness")
        if thickness < 0:
            raise ValueError(f"metadata.Sample.thickness must be ≥ 0 nm, got {thickness}")
        if density is None:
            raise MissingMetadataError(
                "metadata.Sample.thickness is set but metadata.Sample.density is not; "
                "absorption needs both. Set it with "
                "s.metadata.set_item('Sample.density', '4.5 g/cm^3') (g/cm³), "
                "or remove the thickness to fit without absorption correction."
            )
    else:
        notices.append(
            "no metadata.Sample.thickness: fitting without absorption correction "
            "(set it with s.metadata.set_item('Sample.thickness', '80 nm'))"
        )
    if density is not None:
        density = to_float(density, "g/cm^3", "Sample.density")
        if density <= 0:
            raise ValueError(f"metadata.Sample.density must be > 0 g/cm³, got {density}")

    efficiency = _get(md, f"{EDS}.efficiency")
    if efficiency is not None and hasattr(efficiency, "as_dictionary"):
        efficiency = efficiency.as_dictionary()

    return Acquisition(
        beam_energy=beam_energy,
        elements=elements,
        energy_resolution_MnKa=resolution,
        take_off_angle=toa,
        axis=read_energy_axis(signal),
        thickness=thickness,
        density=density,
        efficiency=efficiency,
        notices=notices,
    )
