"""Element symbols, atomic numbers and atomic weights (private helpers)."""

from __future__ import annotations

from functools import lru_cache

import xraylib

__all__ = ["atomic_number", "atomic_weight", "symbol"]


@lru_cache(maxsize=256)
def atomic_number(element: str | int) -> int:
    """Atomic number of ``element`` (a symbol such as ``"Fe"`` or an integer 1-99).

    Raises
    ------
    ValueError
        If the symbol is unknown or the number is outside 1-99, with the offending value named.
    """
    if isinstance(element, bool):
        raise ValueError(f"Unknown element {element!r}")
    if isinstance(element, int):
        z = element
    else:
        name = str(element).strip()
        try:
            z = xraylib.SymbolToAtomicNumber(name)
        except ValueError:
            raise ValueError(f"Unknown element symbol {element!r}") from None
        # xraylib is case sensitive but be explicit about what it accepted
        if xraylib.AtomicNumberToSymbol(z) != name:
            raise ValueError(f"Unknown element symbol {element!r}")
    if not 1 <= z <= 99:
        raise ValueError(f"Element {element!r}: atomic number {z} outside the supported 1-99")
    return z


@lru_cache(maxsize=512, typed=True)
def symbol(element: str | int) -> str:
    """Canonical symbol of ``element`` (kept per argument and its type: ``True`` is no 1)."""
    return xraylib.AtomicNumberToSymbol(atomic_number(element))


@lru_cache(maxsize=256)
def atomic_weight(element: str | int) -> float:
    """Standard atomic weight (g/mol) of ``element`` from xraylib."""
    return float(xraylib.AtomicWeight(atomic_number(element)))
