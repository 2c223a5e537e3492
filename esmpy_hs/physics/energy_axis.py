"""The energy axis of a spectrum: uniform channels in keV.

:class:`EnergyAxis` reads the axis of a HyperSpy signal (or a mapping, an object or a tuple) in
keV or eV; :func:`first_valid_channel` finds where the channels above the noise peak begin, the
part of the axis :func:`esmpy_hs.physics.build_G` accepts (all channel centres > 0 keV).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from esmpy_hs._units import to_float

__all__ = ["EnergyAxis", "first_valid_channel"]


@dataclass(frozen=True)
class EnergyAxis:
    """A uniform energy axis in keV: channel i is centred on ``offset + i * scale``.

    Build it with :meth:`from_any` to accept eV or keV (``units="eV"`` divides by 1000).
    """

    offset: float
    scale: float
    size: int

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"Energy axis scale must be > 0, got {self.scale}")
        if int(self.size) < 1:
            raise ValueError(f"Energy axis size must be >= 1, got {self.size}")

    @classmethod
    def from_any(cls, axis: Any, units: str | None = None) -> EnergyAxis:
        """From an :class:`EnergyAxis`, a mapping with ``offset``, ``scale``, ``size`` and
        optionally ``units`` (a HyperSpy axis dict), an object with those attributes, or a tuple
        ``(offset, scale, size)``. ``units`` ("keV" or "eV") overrides the axis' own units;
        the default is keV."""
        if isinstance(axis, EnergyAxis):
            if units not in (None, "keV"):
                raise ValueError("An EnergyAxis is already in keV")
            return axis
        if isinstance(axis, Mapping):
            offset, scale, size = axis["offset"], axis["scale"], axis["size"]
            ax_units = axis.get("units")
        elif isinstance(axis, Sequence) and len(axis) == 3:
            offset, scale, size = axis
            ax_units = None
        elif all(hasattr(axis, a) for a in ("offset", "scale", "size")):
            offset, scale, size = axis.offset, axis.scale, axis.size
            ax_units = getattr(axis, "units", None)
        else:
            raise TypeError(
                "axis must be an EnergyAxis, a mapping or object with offset/scale/size, "
                "or a tuple (offset, scale, size)"
            )
        u = units if units is not None else ax_units
        if not isinstance(u, str) or not u.strip():
            u = None  # e.g. HyperSpy's <undefined> units: keV, the EDS default
        if u in (None, "keV", "kev", "KeV"):
            factor = 1.0
        elif u in ("eV", "ev"):
            factor = 1e-3
        else:
            raise ValueError(f"Energy axis units must be 'keV' or 'eV', got {u!r}")
        return cls(float(offset) * factor, float(scale) * factor, int(size))

    @property
    def energies(self) -> NDArray[np.float64]:
        """Channel centres (keV)."""
        return self.offset + self.scale * np.arange(self.size, dtype=np.float64)

    @property
    def edges(self) -> NDArray[np.float64]:
        """Channel edges (keV), size + 1 values."""
        return self.offset + self.scale * (np.arange(self.size + 1, dtype=np.float64) - 0.5)

    def to_dict(self) -> dict[str, Any]:
        """``{"offset", "scale", "size", "units": "keV"}``, readable by :meth:`from_any`."""
        return {"offset": self.offset, "scale": self.scale, "size": self.size, "units": "keV"}


def first_valid_channel(axis: Any, cut_keV: float | str = 0.0, units: str | None = None) -> int:
    """Index of the first channel whose centre is above ``cut_keV`` (and above 0 keV).

    The signal layer crops channels ``[:first_valid_channel(axis, cut)]`` (noise peak, negative
    offsets) before calling :func:`build_G`. Returns ``axis.size`` if no channel qualifies.
    """
    ax = EnergyAxis.from_any(axis, units)
    cut = max(float(to_float(cut_keV, "keV", "cut_keV")), 0.0)
    above = np.nonzero(ax.energies > cut)[0]
    return int(above[0]) if above.size else ax.size
