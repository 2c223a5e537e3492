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

Angles, energies and lengths may be numbers (in the units above) or strings with units
(``"35 deg"``, ``"200 kV"``, ``"80 nm"``). Values no instrument can have are refused with the
value seen and how to set it (beam energy outside 1–1000 keV, elevation outside 0–90°, a
take-off angle ≤ 0°, a transmission specimen thicker than :data:`MAX_THICKNESS_NM`, a density
above :data:`MAX_DENSITY`); values that are possible but suspicious (a thickness above
:data:`WARN_THICKNESS_NM` or below 1 nm, a density below :data:`MIN_DENSITY`, an elevation below
2° that looks like radians) give an :class:`ImplausibleInputWarning`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from esmpy_hs._units import to_float
from esmpy_hs.physics import EnergyAxis

TEM = "Acquisition_instrument.TEM"
EDS = f"{TEM}.Detector.EDS"

#: Metadata node of ours on where the acquisition fields came from: ``from_SEM`` (bool, set by
#: EDSespm's constructor for an EDS_SEM map) and ``confirmed`` (the detector fields the user set
#: with ``s.set_microscope_parameters``).
INPUT_NODE = "ESMPY_input"

#: Beam energies (keV) outside this range are refused (no SEM/TEM works there).
BEAM_RANGE_KEV = (1.0, 1000.0)
#: A transmission specimen thicker than this (nm) is refused: X-rays of a bulk specimen need a
#: ZAF correction that the thin-film model does not make.
MAX_THICKNESS_NM = 5000.0
#: Above this thickness (nm) a warning says that absorption dominates.
WARN_THICKNESS_NM = 1000.0
#: Densities (g/cm³) above this are refused; below MIN_DENSITY they give a warning.
MAX_DENSITY = 30.0
MIN_DENSITY = 0.5


class MissingMetadataError(ValueError):
    """A metadata field that the model needs is absent; the message says how to set it."""


class ImplausibleInputWarning(UserWarning):
    """An input that is possible but unlikely to be meant (units mixed up, scaled data)."""


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
    units = {"ev": "eV", "kev": "keV"}.get(units.lower(), units)  # "KeV", "kev", "EV"
    if units not in ("eV", "keV"):
        raise ValueError(
            f"the energy axis has units {units!r}; only 'eV' and 'keV' are supported. "
            "Set them with s.axes_manager.signal_axes[0].units = 'keV' "
            "(and scale/offset in the same unit)."
        )
    if not getattr(ax, "is_uniform", True):
        # a functional or data axis may still be uniform (e.g. "a * x + b")
        e = np.asarray(ax.axis, dtype=np.float64)
        step = np.diff(e)
        if e.size < 2 or not np.allclose(step, step.mean(), rtol=1e-6, atol=0.0):
            raise ValueError(
                "the energy axis is not uniform (channel widths from "
                f"{step.min() if e.size > 1 else 0:.6g} to {step.max() if e.size > 1 else 0:.6g} "
                f"{units}); the model needs a constant channel width: interpolate the spectra "
                "onto a uniform axis first (e.g. s.interpolate_on_axis(new_uniform_axis, 0))"
            )
        ax = {"offset": float(e[0]), "scale": float(step.mean()), "size": int(e.size)}
        offset, scale = ax["offset"], ax["scale"]
    else:
        offset, scale = float(ax.offset), float(ax.scale)
    if not scale > 0:
        raise ValueError(
            f"the energy axis decreases (scale {scale:g} {units}, offset {offset:g} {units}); "
            "the model needs increasing energies: reverse the channels with "
            "s.data = s.data[..., ::-1]; ax = s.axes_manager.signal_axes[0]; "
            "ax.offset, ax.scale = ax.axis[-1], -ax.scale"
        )
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
    lo, hi = BEAM_RANGE_KEV
    if not lo <= beam_energy <= hi:
        hint = (
            f" (in eV that is {beam_energy / 1000:g} keV)" if beam_energy > hi else
            f" (in MeV that is {beam_energy * 1000:g} keV)" if 0 < beam_energy < lo else ""
        )  # fmt: skip
        raise ValueError(
            f"the beam energy {beam_energy:g} keV is outside {lo:g}–{hi:g} keV{hint}; numbers "
            "are keV: set it with s.set_microscope_parameters(beam_energy=200) or a string "
            "with units ('200 kV')"
        )

    if elements is None:
        elements = _get(md, "Sample.elements")
    if elements is None or len(elements) == 0:
        raise MissingMetadataError(
            "no elements are set: metadata.Sample.elements is empty. "
            "Set them with s.add_elements(['Fe', 'O', ...]), find them in the summed spectrum "
            "with s.identify_elements() (add=True writes them), or let smart_nmf do that "
            "first with decomposition(algorithm='smart_nmf', elements='auto', ...)."
        )
    if isinstance(elements, str):
        raise TypeError(
            f"elements must be a list of element symbols such as ['Fe', 'O'], got the string "
            f"{elements!r}"
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
    if not 40.0 <= resolution <= 1000.0:
        raise ValueError(
            f"the detector resolution (FWHM at Mn Kα) {resolution:g} eV is outside 40–1000 eV"
            + (f" (in keV that is {resolution * 1000:g} eV)" if 0 < resolution < 1 else "")
            + "; numbers are eV: set it with "
            "s.set_microscope_parameters(energy_resolution_MnKa=130)"
        )

    for key in ("Stage.tilt_alpha", "Detector.EDS.azimuth_angle", "Detector.EDS.elevation_angle"):
        if _get(md, f"{TEM}.{key}") is None:
            name = {"Stage.tilt_alpha": "tilt_stage"}.get(key, key.rsplit(".", 1)[1])
            raise MissingMetadataError(
                f"metadata.{TEM}.{key} (degrees) is missing; it is needed for the "
                f"take-off angle. Set it with s.set_microscope_parameters({name}=...)."
            )
    toa = take_off_angle(md)

    thickness = _get(md, "Sample.thickness")
    density = _get(md, "Sample.density")
    if thickness is not None:
        thickness = to_float(thickness, "nm", "Sample.thickness")
        check_thickness(thickness)
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
        if not 0 < density <= MAX_DENSITY:
            raise ValueError(
                f"metadata.Sample.density is {density:.4g} g/cm³: a solid lies between about "
                f"0.1 and {MAX_DENSITY:g} g/cm³ (osmium, the densest, 22.6); numbers are g/cm³: "
                "set it with s.metadata.set_item('Sample.density', '4.5 g/cm^3')"
            )
        if density < MIN_DENSITY:
            warnings.warn(
                f"metadata.Sample.density is {density:.4g} g/cm³, lighter than any solid "
                f"specimen (numbers are g/cm³; 4.5 kg/m³ is 0.0045 g/cm³)",
                ImplausibleInputWarning,
                stacklevel=3,
            )

    notices.extend(input_notices(md))

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


def _angle(md, key: str, default: float | None = None) -> float:
    value = _get(md, f"{TEM}.{key}")
    if value is None:
        return default  # type: ignore[return-value]
    return to_float(value, "degree", f"metadata.{TEM}.{key}")


def take_off_angle(md) -> float:
    """Take-off angle (degrees) from stage tilts and detector elevation/azimuth, checked.

    Angles may be numbers (degrees) or strings with units (``"35 deg"``, ``"0.6 rad"``).

    Raises
    ------
    ValueError
        Elevation outside 0–90°, a tilt beyond ±90°, or a take-off angle ≤ 0° (the detector
        would see the specimen from behind).
    """
    from exspy.utils.eds import take_off_angle as _toa

    tilt_a = _angle(md, "Stage.tilt_alpha", 0.0)
    tilt_b = _angle(md, "Stage.tilt_beta", 0.0)
    azimuth = _angle(md, "Detector.EDS.azimuth_angle", 0.0)
    elevation = _angle(md, "Detector.EDS.elevation_angle")
    if elevation is None:
        raise MissingMetadataError(
            f"metadata.{EDS}.elevation_angle (degrees) is missing; it is needed for the "
            "take-off angle. Set it with s.set_microscope_parameters(elevation_angle=...)."
        )
    if not 0.0 <= elevation <= 90.0:
        raise ValueError(
            f"the detector elevation angle {elevation:g}° is outside 0–90° "
            f"(metadata.{EDS}.elevation_angle); set it with "
            "s.set_microscope_parameters(elevation_angle=...) (degrees)"
        )
    if 0.0 < elevation <= math.pi / 2 and elevation < 2.0:
        warnings.warn(
            f"the detector elevation angle is {elevation:g}°: if the file gave radians, that is "
            f"{math.degrees(elevation):.1f}°; set it with "
            "s.set_microscope_parameters(elevation_angle=...) (degrees)",
            ImplausibleInputWarning,
            stacklevel=4,
        )
    for name, tilt in (("tilt_alpha", tilt_a), ("tilt_beta", tilt_b)):
        if not -90.0 <= tilt <= 90.0:
            raise ValueError(
                f"the stage {name} {tilt:g}° is outside ±90° (metadata.{TEM}.Stage.{name}); "
                "set it with s.set_microscope_parameters(tilt_stage=...) (degrees)"
            )
    toa = float(_toa(tilt_a, azimuth, elevation, tilt_b))
    if not 0.0 < toa <= 90.0:
        raise ValueError(
            f"the take-off angle is {toa:.3g}° (tilt_alpha {tilt_a:g}°, tilt_beta {tilt_b:g}°, "
            f"azimuth {azimuth:g}°, elevation {elevation:g}°): the detector cannot see the "
            "specimen's surface; check the stage tilts and the detector angles (degrees)"
        )
    return toa


def check_thickness(thickness: float) -> None:
    """Refuse a thickness (nm) no transmission specimen has; warn above 1 µm."""
    if not thickness >= 0 or not math.isfinite(thickness):
        raise ValueError(
            f"metadata.Sample.thickness must be a finite number ≥ 0 nm, got {thickness:g} nm; "
            "set it with s.metadata.set_item('Sample.thickness', '80 nm')"
        )
    if thickness > MAX_THICKNESS_NM:
        raise ValueError(
            f"metadata.Sample.thickness is {thickness:.4g} nm ({thickness / 1000:.4g} µm): "
            f"beyond {MAX_THICKNESS_NM / 1000:g} µm no electron beam goes through and the "
            "thin-specimen model does not hold; numbers are nm: set it with "
            "s.metadata.set_item('Sample.thickness', '80 nm'), or remove it for no absorption "
            "correction"
        )
    if thickness > WARN_THICKNESS_NM:
        warnings.warn(
            f"metadata.Sample.thickness is {thickness:.4g} nm: transmission specimens are "
            "rarely thicker than 1 µm (numbers are nm; '80 nm' sets 80 nm)",
            ImplausibleInputWarning,
            stacklevel=4,
        )
    elif 0 < thickness < 1.0:
        warnings.warn(
            f"metadata.Sample.thickness is {thickness:g} nm, less than one atomic layer: "
            f"numbers are nm (if you meant µm, set '{thickness:g} um')",
            ImplausibleInputWarning,
            stacklevel=4,
        )


def input_notices(md) -> list[str]:
    """One-line notes on where the acquisition came from.

    An SEM map (``ESMPY_input.from_SEM``, see :data:`INPUT_NODE`) is fitted as a thin film.
    Detector fields equal to exspy's defaults, which exspy fills in when a file lacks them, are
    named unless the user set them with ``s.set_microscope_parameters`` (a file cannot tell).
    """
    out = []
    if bool(md.get_item(f"{INPUT_NODE}.from_SEM", False)):
        out.append(
            "an SEM map (EDS_SEM): compositions assume a thin specimen that electrons cross "
            "(no bulk ZAF correction: absorption and fluorescence in a bulk specimen are not "
            "modelled)"
        )
    try:
        from exspy import preferences

        defaults = {
            "elevation_angle": preferences.EDS.eds_detector_elevation,
            "azimuth_angle": preferences.EDS.eds_detector_azimuth,
            "energy_resolution_MnKa": preferences.EDS.eds_mn_ka,
        }
    except (ImportError, AttributeError):  # pragma: no cover - other exspy versions
        defaults = {}
    confirmed = set(md.get_item(f"{INPUT_NODE}.confirmed", []))
    same = []
    for key, default in defaults.items():
        value = _get(md, f"{TEM}.{DEFAULTED_FIELDS[key]}")
        if key in confirmed or value is None:
            continue
        try:
            equal = float(value) == float(default)
        except (TypeError, ValueError):
            equal = False
        if equal:
            same.append(f"{key} = {float(value):g}")
    if same:
        out.append(
            f"{', '.join(same)}: exspy's default{'s' if len(same) > 1 else ''}, which it fills "
            "in when a file lacks them; if your detector differs, set the true values with "
            "s.set_microscope_parameters(...)"
        )
    return out


#: detector fields exspy fills from its preferences when a file lacks them: name -> path
DEFAULTED_FIELDS = {
    "tilt_stage": "Stage.tilt_alpha",
    "elevation_angle": "Detector.EDS.elevation_angle",
    "azimuth_angle": "Detector.EDS.azimuth_angle",
    "energy_resolution_MnKa": "Detector.EDS.energy_resolution_MnKa",
}
