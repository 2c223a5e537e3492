"""Parsing of physical quantities given as numbers, pint strings ("80 nm") or pint quantities."""

from __future__ import annotations

from functools import lru_cache
from numbers import Real
from typing import Any

__all__ = ["to_float"]


@lru_cache(maxsize=1)
def _registry():
    import pint

    return pint.UnitRegistry()


def to_float(value: Any, unit: str, name: str, *, allow_none: bool = False) -> float | None:
    """Convert ``value`` to a float in ``unit``.

    ``value`` is a plain number (taken to be in ``unit`` already), a pint string such as
    ``"100 nm"`` or ``"4.5 g/cm^3"``, or a pint ``Quantity``. ``name`` is used in error messages.
    """
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{name} is required (a number in {unit} or a string with units)")
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected a number or a quantity string, got {value!r}")
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        value = value.item()  # a 0-d NumPy array, e.g. from an HDF5 attribute
    if isinstance(value, Real):
        return float(value)
    ureg = _registry()
    if not isinstance(value, str) and not hasattr(value, "to"):
        raise TypeError(f"{name}: expected a number or a quantity string, got {value!r}")
    try:
        q = ureg.Quantity(value.strip()) if isinstance(value, str) else value
        if not hasattr(q, "to"):  # a bare number parsed from a string
            return float(q)
        if q.unitless:  # "200": a number written as a string, in the documented unit
            return float(q.magnitude)
        target = ureg.Quantity(1.0, unit)
        if q.check("[electric_potential]") and target.check("[energy]"):
            # an accelerating voltage ("200 kV") gives the electrons e·V of kinetic energy
            q = q * ureg.elementary_charge
        return float(q.to(unit).magnitude)
    except Exception as exc:  # pint's parse and dimensionality errors
        raise ValueError(
            f"{name}: cannot read {value!r} as a quantity in {unit} ({_one_line(exc)}); give a "
            f"number in {unit} or a string such as '{_EXAMPLES.get(unit, '1 ' + unit)}'"
        ) from None


_EXAMPLES = {"keV": "200 kV", "nm": "80 nm", "eV": "130 eV", "g/cm^3": "4.5 g/cm^3",
             "degree": "35 deg"}  # fmt: skip


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
