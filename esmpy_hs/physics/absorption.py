"""Absorption of X-rays in a thin specimen.

For a film of mass thickness ρt seen at take-off angle TOA, a line of energy E generated
uniformly in depth leaves with the fraction

    A(E) = (1 - e^(-χ)) / χ,   χ = (μ/ρ)_mix(E) · ρt / sin(TOA),

with (μ/ρ)_mix = Σ_i w_i (μ/ρ)_i (weight fractions w_i of the *emitting* phase; μ/ρ from
:mod:`esmpy_hs.physics.attenuation`). A → 1 as ρt → 0; without a thickness absorption is off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from esmpy_hs._units import to_float
from esmpy_hs.physics._elements import atomic_number
from esmpy_hs.physics.attenuation import element_mass_attenuation
from esmpy_hs.physics.composition import normalise_composition

__all__ = ["Specimen", "absorption_factor", "absorption_from_chi"]


class Specimen:
    """A thin specimen: thickness, density, take-off angle and (optionally) a composition.

    Parameters
    ----------
    thickness
        Thickness (nm, or a string such as ``"100 nm"``). ``None``: absorption off.
    density
        Density (g/cm³, or ``"4.5 g/cm^3"``). Required with a thickness.
    take_off_angle
        Take-off angle (degrees, or ``"35 deg"``), 0 < TOA <= 90; default 35°.
    composition
        Optional bulk composition (symbol → fraction) used for the absorption of the reference
        G; per-phase absorption uses each phase's own composition
        (:meth:`PhysicsModel.G_for_phases`).
    fractions
        ``"atomic"`` (default) or ``"weight"``: how ``composition`` is expressed.
    """

    def __init__(
        self,
        thickness: float | str | None = None,
        density: float | str | None = None,
        take_off_angle: float | str = 35.0,
        composition: Mapping[str, float] | None = None,
        fractions: str = "atomic",
    ) -> None:
        self.thickness_nm = to_float(thickness, "nm", "thickness", allow_none=True)
        self.density = to_float(density, "g/cm^3", "density", allow_none=True)
        self.take_off_angle = float(to_float(take_off_angle, "degree", "take_off_angle"))
        if self.thickness_nm is not None and not (self.thickness_nm >= 0):
            raise ValueError(f"thickness must be >= 0 nm, got {thickness!r}")
        if self.density is not None and not (self.density > 0):
            raise ValueError(f"density must be > 0 g/cm^3, got {density!r}")
        if self.thickness_nm is not None and self.density is None:
            raise ValueError("A specimen with a thickness needs a density (g/cm^3)")
        if not 0.0 < self.take_off_angle <= 90.0:
            raise ValueError(f"take_off_angle must be in (0, 90] degrees, got {take_off_angle!r}")
        self.composition: dict[str, float] | None = None
        self.fractions = fractions
        if composition is not None:
            symbols, at, wt = normalise_composition(composition, fractions)
            frac = at if fractions == "atomic" else wt
            self.composition = dict(zip(symbols, frac.tolist(), strict=True))

    @property
    def absorbs(self) -> bool:
        """True when a thickness > 0 is set."""
        return bool(self.thickness_nm)

    @property
    def mass_thickness(self) -> float:
        """ρt (g/cm²); 0 without a thickness."""
        if not self.absorbs:
            return 0.0
        return float(self.density) * float(self.thickness_nm) * 1e-7  # type: ignore[arg-type]

    @property
    def path_factor(self) -> float:
        """ρt / sin(TOA) (g/cm²)."""
        return self.mass_thickness / np.sin(np.deg2rad(self.take_off_angle))

    def weight_fractions(self) -> dict[str, float] | None:
        """Weight fractions of the bulk composition (``None`` if not given)."""
        if self.composition is None:
            return None
        symbols, _, wt = normalise_composition(self.composition, self.fractions)
        return dict(zip(symbols, wt.tolist(), strict=True))

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict description; see :meth:`from_dict`."""
        return {
            "thickness": self.thickness_nm,
            "density": self.density,
            "take_off_angle": self.take_off_angle,
            "composition": None if self.composition is None else dict(self.composition),
            "fractions": self.fractions,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Specimen:
        """Rebuild from :meth:`to_dict` output."""
        return cls(**dict(d))

    def __repr__(self) -> str:
        return (
            f"Specimen(thickness={self.thickness_nm} nm, density={self.density} g/cm^3, "
            f"take_off_angle={self.take_off_angle}°, composition={self.composition})"
        )


def absorption_from_chi(chi: ArrayLike) -> NDArray[np.float64]:
    """(1 - e^(-χ))/χ, equal to 1 at χ = 0 (numerically stable for small χ)."""
    chi = np.asarray(chi, dtype=np.float64)
    small = chi < 1e-8
    safe = np.where(small, 1.0, chi)
    return np.where(small, 1.0 - 0.5 * chi, -np.expm1(-safe) / safe)


def absorption_factor(
    composition: Mapping[str, float],
    energy_keV: ArrayLike,
    specimen: Specimen | None = None,
    *,
    thickness: float | str | None = None,
    density: float | str | None = None,
    take_off_angle: float | str = 35.0,
    fractions: str = "atomic",
) -> NDArray[np.float64] | float:
    """Thin-film absorption factor A(E) = (1 - e^(-χ))/χ.

    Parameters
    ----------
    composition
        Mapping symbol → fraction of the emitting phase.
    energy_keV
        Photon energies (keV).
    specimen
        A :class:`Specimen`; otherwise ``thickness`` (nm), ``density`` (g/cm³) and
        ``take_off_angle`` (degrees) are used.
    fractions
        ``"atomic"`` (default) or ``"weight"``.

    Returns
    -------
    float or numpy.ndarray
        A(E) in (0, 1], same shape as ``energy_keV``; 1 everywhere without a thickness.
    """
    if specimen is None:
        specimen = Specimen(thickness, density, take_off_angle)
    symbols, _, wt = normalise_composition(composition, fractions)
    e = np.asarray(energy_keV, dtype=np.float64)
    mu = np.zeros_like(e)
    if specimen.absorbs:
        for s, w in zip(symbols, wt, strict=True):
            mu = mu + w * element_mass_attenuation(atomic_number(s), e)
    out = absorption_from_chi(mu * specimen.path_factor)
    return float(out) if out.ndim == 0 else out
