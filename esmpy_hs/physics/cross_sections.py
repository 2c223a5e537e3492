"""Inner-shell ionisation cross sections by electron impact (Bote-Salvat 2009).

Reference: D. Bote, F. Salvat, A. Jablonski, C. J. Powell, *Atomic Data and Nuclear Data Tables*
95 (2009) 871-909. The fit parameters (NIST DTSA-II/EPQ tables, public domain) are shipped as
``data/bote_salvat_2009.csv``; the file's header gives their provenance.

With E the electron kinetic energy, Ui the shell ionisation energy and U = E/Ui:

* U <= 16 (distorted-wave fit)::

      σ = 4πa0² (U-1)/U² [a1 + a2 U + a3/(1+U) + a4/(1+U)³ + a5/(1+U)⁵]²

* U > 16 (plane-wave Born, Bethe-like)::

      σ = U/(U+b) 4πa0² (A/β²) {(ln X² - β²)(1 + g1/X) + g2 + g3 (1-β²)^(1/4) + g4/X}

  with β² = E(E+2mc²)/(E+mc²)² and X = √(E(E+2mc²))/mc².

The exponent on (1-β²) is **+1/4** (some public tables used -1/4, which makes K-shell σ at
200 keV several per cent too low); the two branches then join continuously at U = 16.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
from numpy.typing import ArrayLike, NDArray

from esmpy_hs.physics._elements import atomic_number

__all__ = [
    "SHELLS",
    "BoteSalvatParameters",
    "bote_salvat_parameters",
    "ionisation_cross_section",
    "ionisation_energy",
]

#: Shells covered by the Bote-Salvat tables, in table order.
SHELLS: tuple[str, ...] = ("K", "L1", "L2", "L3", "M1", "M2", "M3", "M4", "M5")

_MC2_EV = 510998.95  # electron rest energy (eV)
_A0_CM = 5.29177210903e-9  # Bohr radius (cm)
_FOUR_PI_A0_SQ_CM2 = 4.0 * np.pi * _A0_CM**2  # ≈ 3.5190e-16 cm²
_BARN_CM2 = 1e-24
_U_SWITCH = 16.0  # overvoltage where the fit changes from distorted-wave to Born


@dataclass(frozen=True)
class BoteSalvatParameters:
    """Parameters of one (Z, shell): ionisation energy ``Ui_eV``, ``a`` (a1..a5) and
    ``b_params`` (b, A, g1, g2, g3, g4)."""

    Z: int
    shell: str
    Ui_eV: float
    a: tuple[float, float, float, float, float]
    b_params: tuple[float, float, float, float, float, float]


@lru_cache(maxsize=1)
def _tables() -> dict[tuple[int, str], BoteSalvatParameters]:
    text = resources.files("esmpy_hs.physics").joinpath("data/bote_salvat_2009.csv").read_text()
    rows: dict[str, dict[int, list[float]]] = {"U": {}, "A": {}, "B": {}}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")]
        rows[fields[0]][int(fields[1])] = [float(f) for f in fields[2:]]
    out: dict[tuple[int, str], BoteSalvatParameters] = {}
    for z, uis in rows["U"].items():
        a_row, b_row = rows["A"][z], rows["B"][z]
        if len(a_row) != 5 * len(uis) or len(b_row) != 6 * len(uis):  # pragma: no cover
            raise RuntimeError(f"Corrupt Bote-Salvat table for Z={z}")
        for i, ui in enumerate(uis):
            out[(z, SHELLS[i])] = BoteSalvatParameters(
                Z=z,
                shell=SHELLS[i],
                Ui_eV=ui,
                a=tuple(a_row[5 * i : 5 * i + 5]),  # type: ignore[arg-type]
                b_params=tuple(b_row[6 * i : 6 * i + 6]),  # type: ignore[arg-type]
            )
    return out


def _check_shell(shell: str) -> str:
    s = str(shell).strip().upper()
    if s not in SHELLS:
        raise ValueError(f"Unknown shell {shell!r}; expected one of {', '.join(SHELLS)}")
    return s


def bote_salvat_parameters(element: str | int, shell: str) -> BoteSalvatParameters | None:
    """Table parameters of ``element``'s ``shell``, or ``None`` if the table has no such shell
    (e.g. M shells of light elements)."""
    return _tables().get((atomic_number(element), _check_shell(shell)))


def ionisation_energy(element: str | int, shell: str) -> float:
    """Ionisation energy Ui (keV) of ``shell`` in the Bote-Salvat table (NaN if absent)."""
    p = bote_salvat_parameters(element, shell)
    return float("nan") if p is None else p.Ui_eV / 1000.0


def _sigma_cm2(p: BoteSalvatParameters, energy_eV: NDArray[np.float64]) -> NDArray[np.float64]:
    E = np.asarray(energy_eV, dtype=np.float64)
    U = E / p.Ui_eV
    sigma = np.zeros_like(U)
    # distorted-wave branch, 1 < U <= 16
    low = (U > 1.0) & (U <= _U_SWITCH)
    if np.any(low):
        u = U[low]
        a1, a2, a3, a4, a5 = p.a
        up1 = 1.0 + u
        bracket = a1 + a2 * u + a3 / up1 + a4 / up1**3 + a5 / up1**5
        sigma[low] = _FOUR_PI_A0_SQ_CM2 * (u - 1.0) / u**2 * bracket**2
    high = U > _U_SWITCH
    if np.any(high):
        u = U[high]
        e = E[high]
        b, A, g1, g2, g3, g4 = p.b_params
        beta2 = e * (e + 2.0 * _MC2_EV) / (e + _MC2_EV) ** 2
        X = np.sqrt(e * (e + 2.0 * _MC2_EV)) / _MC2_EV
        curly = (np.log(X**2) - beta2) * (1.0 + g1 / X) + g2 + g3 * (1.0 - beta2) ** 0.25 + g4 / X
        sigma[high] = u / (u + b) * _FOUR_PI_A0_SQ_CM2 * (A / beta2) * curly
    return np.maximum(sigma, 0.0)


def ionisation_cross_section(
    element: str | int, shell: str, energy_keV: ArrayLike
) -> NDArray[np.float64] | float:
    """Ionisation cross section of one inner shell by electron impact (Bote-Salvat 2009).

    Parameters
    ----------
    element
        Element symbol (``"Fe"``) or atomic number (1-99).
    shell
        ``"K"``, ``"L1"``, ``"L2"``, ``"L3"``, ``"M1"`` ... ``"M5"``.
    energy_keV
        Electron kinetic energy or energies (keV); any shape. Valid up to 1 GeV.

    Returns
    -------
    float or numpy.ndarray
        Cross section per atom for the whole subshell, in **barn** (1 b = 1e-24 cm²), same
        shape as ``energy_keV`` (a float for a scalar). 0 below the ionisation energy and for
        shells the element does not have in the table.

    Raises
    ------
    ValueError
        Unknown element or shell.
    """
    p = bote_salvat_parameters(element, shell)
    e = np.asarray(energy_keV, dtype=np.float64)
    if p is None:
        out = np.zeros_like(e)
    else:
        out = _sigma_cm2(p, e.reshape(-1) * 1000.0).reshape(e.shape) / _BARN_CM2
    return float(out) if out.ndim == 0 else out


def _branches_at_switch(element: str | int, shell: str) -> tuple[float, float]:
    """Both branches of the fit evaluated at U = 16 (barn): a continuity diagnostic."""
    p = bote_salvat_parameters(element, shell)
    if p is None:
        raise ValueError(f"{element} has no {shell} shell in the Bote-Salvat table")
    e = np.array([_U_SWITCH * p.Ui_eV])
    low = _sigma_cm2(p, e)[0] / _BARN_CM2
    nudged = _sigma_cm2(p, e * (1.0 + 1e-12))[0] / _BARN_CM2
    return float(low), float(nudged)
