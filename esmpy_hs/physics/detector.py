"""EDX detector response: peak shape, energy resolution and efficiency.

* Peaks are unit-area Gaussians integrated over each channel (difference of erf at the channel
  edges), so a narrow peak on a coarse axis keeps its area.
* Width: ``fwhm_model="fiori"`` (default) uses FWHM(E)² = FWHM_MnKa² + 2.5 (E - 5.8987 keV)·1000,
  all in eV (C. E. Fiori, D. E. Newbury, Scanning Electron Microsc. 1978/I, 401; the form used by
  exspy with ``energy_resolution_MnKa``); ``fwhm_model="linear"`` uses FWHM = a·E + b (keV), the
  earlier espm default a = 0.01, b = 0.065 keV; ``fwhm_model="quadratic"`` uses
  FWHM(E)² = c0 + c1·E + c2·E² (eV², E in keV): electronic noise (c0), Fano statistics (c1 ∝ F·ε,
  the term Fiori fixes at 2500 eV²/keV) and an incomplete-charge term (c2). Both other laws are
  special cases (Fiori: c2 = 0; linear: c0 = b², c1 = 2ab, c2 = a², in eV). The detector
  self-calibration (:mod:`esmpy_hs.physics.calibration`) fits it.
* Efficiency of a silicon drift detector at normal incidence::

      ε(E) = f_open · Π_layers exp(-(μ/ρ) ρ t)
             · exp(-(μ/ρ)_Si ρ_Si t_dead) · [1 - exp(-(μ/ρ)_Si ρ_Si t_Si)]

  with window presets (``WINDOW_PRESETS``): ``"windowless"``; ``"Si3N4"`` = Si3N4 40 nm + Al 30 nm
  (the **default**: a modern thin-window SDD, and the configuration whose efficiency values are
  quoted in the project notes); ``"polymer"`` = C10H8O4N 300 nm + Al 40 nm on a 77 %-open grid;
  ``"Be"`` = Be 8 µm. Crystal 450 µm Si, dead layer 50 nm Si by default. Densities (g/cm³):
  Si 2.33, Al 2.70, Si3N4 3.44, polymer 1.39, Be 1.85. Alternatively a measured curve
  (energies in keV, efficiencies) is interpolated linearly (end values held outside its range).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import erf

from esmpy_hs._units import to_float
from esmpy_hs.physics.attenuation import mass_attenuation

__all__ = [
    "DEFAULT_WINDOW",
    "GRID_OPEN_FRACTION",
    "WINDOW_PRESETS",
    "Detector",
    "Layer",
    "peak_matrix",
]

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
_MNKA_KEV = 5.8987
_FIORI_SLOPE = 2500.0  # eV²/keV, the Fano term of the Fiori law
_SI_DENSITY = 2.33


@dataclass(frozen=True)
class Layer:
    """An absorbing layer in front of the detector crystal.

    Attributes
    ----------
    material : str
        Element symbol or chemical formula (``"Si3N4"``, ``"C10H8O4N"``).
    thickness_nm : float
        Thickness (nm).
    density : float
        Density (g/cm³).
    """

    material: str
    thickness_nm: float
    density: float

    def transmission(self, energy_keV: ArrayLike) -> NDArray[np.float64]:
        """exp(-(μ/ρ) ρ t) at ``energy_keV``."""
        mu = np.asarray(mass_attenuation(self.material, energy_keV))
        return np.exp(-mu * self.density * self.thickness_nm * 1e-7)


WINDOW_PRESETS: dict[str, tuple[Layer, ...]] = {
    "windowless": (),
    "Si3N4": (Layer("Si3N4", 40.0, 3.44), Layer("Al", 30.0, 2.70)),
    "polymer": (Layer("C10H8O4N", 300.0, 1.39), Layer("Al", 40.0, 2.70)),
    "Be": (Layer("Be", 8000.0, 1.85),),
}
#: The window assumed when none is stated (a modern thin-window SDD).
DEFAULT_WINDOW = "Si3N4"
#: Open fraction of the window support grid for presets that have one.
GRID_OPEN_FRACTION: dict[str, float] = {"polymer": 0.77}


def peak_matrix(
    edges_keV: ArrayLike, centres_keV: ArrayLike, fwhm_keV: ArrayLike
) -> NDArray[np.float64]:
    """Unit-area Gaussian peaks integrated over channels.

    Parameters
    ----------
    edges_keV
        Channel edges (keV), shape (n + 1,), increasing.
    centres_keV, fwhm_keV
        Peak centres and full widths at half maximum (keV), shape (L,).

    Returns
    -------
    numpy.ndarray
        (n, L) array; column l is the fraction of peak l's area falling in each channel.
    """
    edges = np.asarray(edges_keV, dtype=np.float64)
    c = np.asarray(centres_keV, dtype=np.float64).reshape(-1)
    s = np.asarray(fwhm_keV, dtype=np.float64).reshape(-1) * _FWHM_TO_SIGMA
    if np.any(s <= 0):
        raise ValueError("Peak widths must be positive")
    cdf = 0.5 * erf((edges[:, None] - c[None, :]) / (np.sqrt(2.0) * s[None, :]))
    return np.diff(cdf, axis=0)


class Detector:
    """Energy resolution and efficiency of an EDX detector.

    Parameters
    ----------
    window
        Window preset name (see ``WINDOW_PRESETS``) or a sequence of :class:`Layer` (or
        ``(material, thickness_nm, density)`` tuples / dicts). ``None`` (default): the window
        is not stated and :data:`DEFAULT_WINDOW` is assumed; ``window_stated`` is then False,
        and the stated systematic uncertainty (:mod:`esmpy_hs.physics.systematics`) includes
        the range of window types in use.
    resolution_mnka
        FWHM at Mn Kα (eV, or a string such as ``"130 eV"``); used by ``fwhm_model="fiori"``.
    fwhm_model
        ``"fiori"`` (default), ``"linear"`` or ``"quadratic"``.
    fwhm_linear
        ``(a, b)`` of FWHM = a·E + b, ``a`` dimensionless and ``b`` in keV (default (0.01, 0.065)).
    fwhm_quadratic
        ``(c0, c1, c2)`` of FWHM² = c0 + c1·E + c2·E², in eV², eV²/keV and eV²/keV² (E in keV);
        used by ``fwhm_model="quadratic"``. Default: the Fiori law of ``resolution_mnka``.
    crystal_thickness
        Si crystal thickness (µm, or a string such as ``"0.45 mm"``); default 450 µm.
    dead_layer
        Si dead layer (nm); default 50 nm.
    grid_open_fraction
        Open fraction of a window support grid; default from ``GRID_OPEN_FRACTION`` for presets,
        1 otherwise.
    efficiency_curve
        Optional measured efficiency, ``(energies_keV, efficiencies)``; when given it replaces the
        layer model.
    """

    def __init__(
        self,
        window: str | Sequence[Layer | tuple | Mapping] | None = None,
        *,
        resolution_mnka: float | str = 130.0,
        fwhm_model: str = "fiori",
        fwhm_linear: tuple[float, float] = (0.01, 0.065),
        fwhm_quadratic: tuple[float, float, float] | None = None,
        crystal_thickness: float | str = 450.0,
        dead_layer: float | str = 50.0,
        grid_open_fraction: float | None = None,
        efficiency_curve: tuple[ArrayLike, ArrayLike] | None = None,
    ) -> None:
        #: whether the window was given (False: the default preset is an assumption)
        self.window_stated: bool = window is not None
        if window is None:
            window = DEFAULT_WINDOW
        if isinstance(window, str):
            if window not in WINDOW_PRESETS:
                raise ValueError(
                    f"Unknown window preset {window!r}; expected one of {sorted(WINDOW_PRESETS)}"
                    " or a list of layers"
                )
            self.window_name: str | None = window
            self.layers: tuple[Layer, ...] = WINDOW_PRESETS[window]
            default_open = GRID_OPEN_FRACTION.get(window, 1.0)
        else:
            self.window_name = None
            self.layers = tuple(_as_layer(x) for x in window)
            default_open = 1.0
        self.grid_open_fraction = float(
            default_open if grid_open_fraction is None else grid_open_fraction
        )
        if not 0.0 < self.grid_open_fraction <= 1.0:
            raise ValueError("grid_open_fraction must be in (0, 1]")
        self.resolution_mnka_eV = float(to_float(resolution_mnka, "eV", "resolution_mnka"))
        if not self.resolution_mnka_eV > 0:
            raise ValueError("resolution_mnka must be positive")
        if fwhm_model not in ("fiori", "linear", "quadratic"):
            raise ValueError(
                f"fwhm_model must be 'fiori', 'linear' or 'quadratic', got {fwhm_model!r}"
            )
        self.fwhm_model = fwhm_model
        a, b = (float(v) for v in fwhm_linear)
        self.fwhm_linear = (a, b)
        if fwhm_quadratic is None:
            fwhm_quadratic = (
                self.resolution_mnka_eV**2 - _FIORI_SLOPE * _MNKA_KEV,
                _FIORI_SLOPE,
                0.0,
            )
        c0, c1, c2 = (float(v) for v in fwhm_quadratic)
        self.fwhm_quadratic = (c0, c1, c2)
        self.crystal_thickness_um = float(
            to_float(crystal_thickness, "micrometer", "crystal_thickness")
        )
        self.dead_layer_nm = float(to_float(dead_layer, "nm", "dead_layer"))
        if self.crystal_thickness_um <= 0 or self.dead_layer_nm < 0:
            raise ValueError("crystal_thickness must be > 0 and dead_layer >= 0")
        for layer in self.layers:
            if layer.thickness_nm < 0 or layer.density <= 0:
                raise ValueError(f"Invalid window layer {layer}")
        self.efficiency_curve: tuple[NDArray, NDArray] | None = None
        if efficiency_curve is not None:
            e, v = (np.asarray(x, dtype=np.float64).reshape(-1) for x in efficiency_curve)
            if e.size != v.size or e.size < 2:
                raise ValueError("efficiency_curve needs two arrays of equal length >= 2")
            order = np.argsort(e)
            e, v = e[order], v[order]
            if np.any(np.diff(e) <= 0) or np.any(v < 0):
                raise ValueError("efficiency_curve: energies must be distinct, efficiencies >= 0")
            self.efficiency_curve = (e, v)

    # -- resolution -----------------------------------------------------------------------
    def fwhm(self, energy_keV: ArrayLike) -> NDArray[np.float64]:
        """Peak FWHM (keV) at ``energy_keV``."""
        e = np.asarray(energy_keV, dtype=np.float64)
        if self.fwhm_model == "linear":
            a, b = self.fwhm_linear
            out = a * e + b
        elif self.fwhm_model == "quadratic":
            c0, c1, c2 = self.fwhm_quadratic
            out = np.sqrt(np.maximum(c0 + (c1 + c2 * e) * e, 1.0)) / 1000.0  # floor at 1 eV
        else:
            fwhm2_eV2 = self.resolution_mnka_eV**2 + _FIORI_SLOPE * (e - _MNKA_KEV)
            out = np.sqrt(np.maximum(fwhm2_eV2, 1.0)) / 1000.0  # floor at 1 eV
        if np.any(out <= 0):
            raise ValueError("The resolution model gives a non-positive FWHM on this axis")
        return out

    # -- efficiency -----------------------------------------------------------------------
    def efficiency(self, energy_keV: ArrayLike) -> NDArray[np.float64]:
        """Detection efficiency (0-1) at ``energy_keV``."""
        e = np.asarray(energy_keV, dtype=np.float64)
        if self.efficiency_curve is not None:
            ce, cv = self.efficiency_curve
            return np.interp(e, ce, cv)
        out = np.full(e.shape, self.grid_open_fraction)
        for layer in self.layers:
            out = out * layer.transmission(e)
        mu_si = np.asarray(mass_attenuation("Si", e))
        out = out * np.exp(-mu_si * _SI_DENSITY * self.dead_layer_nm * 1e-7)
        out = out * -np.expm1(-mu_si * _SI_DENSITY * self.crystal_thickness_um * 1e-4)
        return out

    # -- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-dict description (lists, floats, str) for metadata; see :meth:`from_dict`."""
        d: dict[str, Any] = {
            "window": None
            if not self.window_stated
            else self.window_name
            if self.window_name is not None
            else [[x.material, x.thickness_nm, x.density] for x in self.layers],
            "resolution_mnka": self.resolution_mnka_eV,
            "fwhm_model": self.fwhm_model,
            "fwhm_linear": list(self.fwhm_linear),
            "fwhm_quadratic": list(self.fwhm_quadratic),
            "crystal_thickness": self.crystal_thickness_um,
            "dead_layer": self.dead_layer_nm,
            "grid_open_fraction": self.grid_open_fraction,
            "efficiency_curve": None,
        }
        if self.efficiency_curve is not None:
            d["efficiency_curve"] = [
                self.efficiency_curve[0].tolist(),
                self.efficiency_curve[1].tolist(),
            ]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Detector:
        """Rebuild a detector from :meth:`to_dict` output."""
        d = dict(d)
        return cls(d.pop("window", None), **d)

    def __repr__(self) -> str:
        win = self.window_name or list(self.layers)
        if not self.window_stated:
            win = f"{win} (assumed)"
        return (
            f"Detector(window={win!r}, fwhm_model={self.fwhm_model!r}, "
            f"resolution_mnka={self.resolution_mnka_eV} eV, "
            f"crystal_thickness={self.crystal_thickness_um} µm, dead_layer={self.dead_layer_nm} nm"
            f"{', efficiency_curve' if self.efficiency_curve is not None else ''})"
        )


def _as_layer(x: Layer | tuple | Mapping) -> Layer:
    if isinstance(x, Layer):
        return x
    if isinstance(x, Mapping):
        return Layer(str(x["material"]), float(x["thickness_nm"]), float(x["density"]))
    material, thickness, density = x
    return Layer(str(material), float(to_float(thickness, "nm", "layer thickness")), float(density))
