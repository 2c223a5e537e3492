"""From ionised shells to characteristic X-ray lines (vacancy cascade and emission cross sections).

Atomic data come from xraylib (T. Schoonjans et al., Spectrochim. Acta B 66 (2011) 776-784):
line energies (``LineEnergy``), radiative rates (``RadRate``), fluorescence yields
(``FluorYield``), Coster-Kronig probabilities (``CosKronTransProb``) and Auger data
(``AugerYield``, ``AugerRate``). Ionisation cross sections are Bote-Salvat
(:mod:`esmpy_hs.physics.cross_sections`).

Emission cross section of line X (initial vacancy in shell i): σ_X = n_i ω_i R_X, with n_i the
number of vacancies per atom in shell i after the cascade (barn):

* n_K  = σ_K
* n_L1 = σ_L1 + T(K→L1)
* n_L2 = σ_L2 + T(K→L2) + f12 n_L1
* n_L3 = σ_L3 + T(K→L3) + f23 n_L2 + (f13 + f'13) n_L1
* n_M1..n_M5 alike, with T(K→Mj) + Σ_i T(Li→Mj) and the FMij Coster-Kronig transitions.

T(i→j) is the *vacancy transfer* from a deeper shell: n_i [ω_i Σ R(i→j lines)
+ a_i Σ_Auger AugerRate(i-XY) × (number of j among X, Y)], a_i the Auger yield of shell i.
It is switched by ``vacancy_transfer`` (K→L adds ≈ 2 % to n_L3 of Fe at 200 keV).

Lines are enumerated from xraylib's single-line IUPAC macros (``KL3_LINE``, ``L3M5_LINE``,
``M5N7_LINE``, ...); combined macros (``KA_LINE``, ``L1N67_LINE``) are never used.

Missing xraylib values are never silent: a transition that xraylib has no radiative rate for is
not a line of the element (that is how xraylib encodes it); any other missing value that enters
a non-zero cross section (a fluorescence yield, a Coster-Kronig probability, an energy of a line
with a rate, an Auger yield) is taken as 0 (or, for the Auger yield, as 1 - ω - Σf) and recorded
as a note, returned by :func:`line_notes` and logged once at INFO level on the
``esmpy_hs.physics`` logger. Known case: xraylib has no L2→L3 Coster-Kronig value for Fe (0).
Databases also disagree on some Coster-Kronig values (Cu f23: 0.028 in xraylib, ~0.45 elsewhere);
xraylib's values are used as they are.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import xraylib

from esmpy_hs._units import to_float
from esmpy_hs.physics._elements import atomic_number, symbol
from esmpy_hs.physics.cross_sections import SHELLS, ionisation_cross_section

__all__ = [
    "SIEGBAHN",
    "EmissionLine",
    "emission_lines",
    "line_notes",
    "vacancies",
]

logger = logging.getLogger("esmpy_hs.physics")

# IUPAC -> Siegbahn names (HyperSpy spelling: Lη is "Ln", Ll "Ll"). Standard nomenclature,
# see IUPAC (R. Jenkins et al., X-Ray Spectrom. 20 (1991) 149); the assignments match xraylib's
# Siegbahn aliases (KA1_LINE == KL3_LINE, ...), which a test checks.
SIEGBAHN: dict[str, str] = {
    "KL3": "Ka1", "KL2": "Ka2", "KL1": "Ka3",
    "KM3": "Kb1", "KN3": "Kb2", "KM2": "Kb3", "KN5": "Kb4", "KM5": "Kb5",
    "L3M5": "La1", "L3M4": "La2",
    "L2M4": "Lb1", "L3N5": "Lb2", "L1M3": "Lb3", "L1M2": "Lb4", "L3N1": "Lb6", "L3O1": "Lb7",
    "L1M5": "Lb9", "L1M4": "Lb10", "L3N4": "Lb15", "L2M3": "Lb17",
    "L2N4": "Lg1", "L1N2": "Lg2", "L1N3": "Lg3", "L1O3": "Lg4", "L2N1": "Lg5", "L2O4": "Lg6",
    "L2O1": "Lg8",
    "L2M1": "Ln", "L3M1": "Ll", "L3M3": "Ls", "L3M2": "Lt", "L3N6": "Lu", "L2N6": "Lv",
    "M5N7": "Ma1", "M5N6": "Ma2", "M4N6": "Mb", "M3N5": "Mg", "M5N3": "Mz1", "M4N2": "Mz2",
}  # fmt: skip

_IUPAC_RE = re.compile(r"^(K|L[1-3]|M[1-5])([KLMNOPQ][1-7])$")
_AUGER_RE = re.compile(r"^(K|L[1-3])_([KLMNOPQ][1-7])([KLMNOPQ][1-7])_AUGER$")

# Coster-Kronig transitions (from, to, xraylib macro names whose values are added)
_CK: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("L1", "L2", ("FL12_TRANS",)),
    ("L1", "L3", ("FL13_TRANS", "FLP13_TRANS")),
    ("L2", "L3", ("FL23_TRANS",)),
    ("M1", "M2", ("FM12_TRANS",)),
    ("M1", "M3", ("FM13_TRANS",)),
    ("M1", "M4", ("FM14_TRANS",)),
    ("M1", "M5", ("FM15_TRANS",)),
    ("M2", "M3", ("FM23_TRANS",)),
    ("M2", "M4", ("FM24_TRANS",)),
    ("M2", "M5", ("FM25_TRANS",)),
    ("M3", "M4", ("FM34_TRANS",)),
    ("M3", "M5", ("FM35_TRANS",)),
    ("M4", "M5", ("FM45_TRANS",)),
)

_logged: set[str] = set()


def _note(notes: list[str], text: str) -> None:
    notes.append(text)
    if text not in _logged:
        _logged.add(text)
        logger.info(text)


@lru_cache(maxsize=1)
def _iupac_lines() -> tuple[tuple[str, str, str, int], ...]:
    """All single IUPAC line macros of xraylib: (name, initial shell, final shell, macro)."""
    out = []
    for attr in dir(xraylib):
        if not attr.endswith("_LINE"):
            continue
        m = _IUPAC_RE.match(attr[:-5])
        if m:
            out.append((attr[:-5], m.group(1), m.group(2), int(getattr(xraylib, attr))))
    return tuple(sorted(out, key=lambda t: (SHELLS.index(t[1]), t[0])))


@lru_cache(maxsize=1)
def _auger_transitions() -> tuple[tuple[str, str, str, int], ...]:
    """Auger macros starting from K or L shells: (initial, X, Y, macro)."""
    out = []
    for attr in dir(xraylib):
        m = _AUGER_RE.match(attr)
        if m:
            out.append((m.group(1), m.group(2), m.group(3), int(getattr(xraylib, attr))))
    return tuple(out)


def _try(func, *args) -> float | None:
    try:
        return float(func(*args))
    except ValueError:
        return None


@lru_cache(maxsize=256)
def _element_atomic_data(z: int) -> tuple[dict, tuple[str, ...]]:
    """Per-element xraylib data independent of the beam energy (cached)."""
    notes: list[str] = []
    sym = symbol(z)
    # shells present in the ionisation table
    present = [s for s in SHELLS if ionisation_cross_section(z, s, 1e6) > 0]
    omega: dict[str, float] = {}
    for s in present:
        w = _try(xraylib.FluorYield, z, getattr(xraylib, f"{s}_SHELL"))
        if w is None:
            _note(notes, f"{sym} {s}: xraylib has no fluorescence yield; taken as 0 (no lines)")
            w = 0.0
        omega[s] = w
    ck: dict[tuple[str, str], float] = {}
    for src, dst, names in _CK:
        if src not in present or dst not in present:
            continue
        total = 0.0
        for name in names:
            v = _try(xraylib.CosKronTransProb, z, getattr(xraylib, name))
            if v is None:
                _note(
                    notes,
                    f"{sym} {src}->{dst}: xraylib has no Coster-Kronig value {name}; taken as 0",
                )
                v = 0.0
            total += v
        ck[(src, dst)] = total
    # radiative lines
    lines = []
    for name, initial, final, macro in _iupac_lines():
        if initial not in present:
            continue
        rate = _try(xraylib.RadRate, z, macro)
        if rate is None or rate <= 0.0:
            continue  # xraylib has no such transition for this element: not a line
        energy = _try(xraylib.LineEnergy, z, macro)
        if energy is None or energy <= 0.0:
            _note(notes, f"{sym} {name}: radiative rate {rate:g} but no line energy; line skipped")
            continue
        lines.append((name, initial, final, rate, energy))
    # Auger yields and transfer fractions for K and L shells
    auger_yield: dict[str, float] = {}
    auger_to: dict[str, dict[str, float]] = {}
    for s in ("K", "L1", "L2", "L3"):
        if s not in present:
            continue
        a = _try(xraylib.AugerYield, z, getattr(xraylib, f"{s}_SHELL"))
        if a is None:
            a = max(0.0, 1.0 - omega[s] - sum(v for (i, _), v in ck.items() if i == s))
            if s != "K" or z > 2:
                _note(notes, f"{sym} {s}: xraylib has no Auger yield; using 1 - ω - Σf = {a:.4g}")
        auger_yield[s] = a
        counts: dict[str, float] = {}
        for initial, x, y, macro in _auger_transitions():
            if initial != s:
                continue
            r = _try(xraylib.AugerRate, z, macro)
            if not r:
                continue
            for shell in (x, y):
                counts[shell] = counts.get(shell, 0.0) + r
        auger_to[s] = counts
    data = {
        "present": tuple(present),
        "omega": omega,
        "ck": ck,
        "lines": tuple(lines),
        "auger_yield": auger_yield,
        "auger_to": auger_to,
    }
    return data, tuple(notes)


@lru_cache(maxsize=1024)
def _vacancies_cached(z: int, e0: float, transfer: bool) -> tuple[tuple[str, float], ...]:
    data, _ = _element_atomic_data(z)
    present = data["present"]
    sigma = {s: float(ionisation_cross_section(z, s, e0)) for s in present}
    n: dict[str, float] = {}
    for s in SHELLS:
        if s not in present:
            continue
        v = sigma[s]
        # Coster-Kronig feeding from shells of the same family already processed
        for (src, dst), f in data["ck"].items():
            if dst == s and src in n:
                v += f * n[src]
        if transfer:
            for src in ("K", "L1", "L2", "L3"):
                if src not in n or src[0] == s[0]:
                    continue
                # radiative transfer: lines src -> s
                rad = sum(
                    rate for name, ini, fin, rate, _ in data["lines"] if ini == src and fin == s
                )
                aug = data["auger_to"].get(src, {}).get(s, 0.0)
                v += n[src] * (data["omega"][src] * rad + data["auger_yield"][src] * aug)
        n[s] = v
    return tuple(n.items())


def vacancies(
    element: str | int, beam_energy: float | str, *, vacancy_transfer: bool = True
) -> dict[str, float]:
    """Vacancies per atom in each shell after the cascade (barn), at ``beam_energy`` (keV).

    See the module docstring for the cascade. ``vacancy_transfer=False`` keeps the
    Coster-Kronig redistribution but drops the K→L, K→M and L→M transfers.
    """
    e0 = to_float(beam_energy, "keV", "beam_energy")
    return dict(_vacancies_cached(atomic_number(element), float(e0), bool(vacancy_transfer)))


@dataclass(frozen=True)
class EmissionLine:
    """One characteristic X-ray line of an element at a given beam energy.

    Attributes
    ----------
    element : str
        Element symbol.
    iupac : str
        IUPAC name without separator, e.g. ``"KL3"``, ``"L3M5"``.
    siegbahn : str
        Siegbahn name in HyperSpy spelling (``"Ka1"``, ``"La1"``, ``"Ma1"``), or ``""``.
    energy_keV : float
        Line energy (keV), xraylib ``LineEnergy``.
    cross_section : float
        Emission cross section σ_X = n_i ω_i R_X (barn per atom).
    shell : str
        Initial vacancy shell (``"K"``, ``"L3"``, ...).
    """

    element: str
    iupac: str
    siegbahn: str
    energy_keV: float
    cross_section: float
    shell: str

    @property
    def family(self) -> str:
        """Line family: ``"K"``, ``"L"`` or ``"M"``."""
        return self.shell[0]

    @property
    def name(self) -> str:
        """Siegbahn name if there is one, else the IUPAC name."""
        return self.siegbahn or self.iupac

    @property
    def label(self) -> str:
        """``"Cu_Ka1"`` style label."""
        return f"{self.element}_{self.name}"


@lru_cache(maxsize=1024)
def _all_lines(z: int, e0: float, transfer: bool) -> tuple[EmissionLine, ...]:
    data, _ = _element_atomic_data(z)
    n = dict(_vacancies_cached(z, e0, transfer))
    sym = symbol(z)
    out = []
    for name, initial, _final, rate, energy in data["lines"]:
        sigma_x = n.get(initial, 0.0) * data["omega"].get(initial, 0.0) * rate
        if sigma_x <= 0.0:
            continue
        out.append(EmissionLine(sym, name, SIEGBAHN.get(name, ""), energy, sigma_x, initial))
    out.sort(key=lambda line: line.energy_keV)
    return tuple(out)


def emission_lines(
    element: str | int,
    beam_energy: float | str,
    e_min: float | str = 0.0,
    e_max: float | str | None = None,
    *,
    vacancy_transfer: bool = True,
    min_relative: float = 0.0,
) -> list[EmissionLine]:
    """Characteristic lines of ``element`` excited at ``beam_energy`` within [e_min, e_max].

    Parameters
    ----------
    element
        Symbol or atomic number.
    beam_energy
        Electron beam energy (keV, or a string such as ``"200 keV"``).
    e_min, e_max
        Energy window (keV); ``e_max`` defaults to the beam energy.
    vacancy_transfer
        Include K→L, K→M and L→M vacancy transfer (radiative and Auger) in the cascade.
    min_relative
        Drop lines whose cross section is below this fraction of the element's strongest line in
        the window (0 keeps all).

    Returns
    -------
    list of EmissionLine
        Sorted by energy; each with its IUPAC and Siegbahn names, energy (keV) and emission cross
        section (barn per atom). Results are cached per (element, beam energy, vacancy_transfer).
    """
    z = atomic_number(element)
    e0 = float(to_float(beam_energy, "keV", "beam_energy"))
    if not e0 > 0:
        raise ValueError(f"beam_energy must be positive, got {beam_energy!r}")
    lo = float(to_float(e_min, "keV", "e_min"))
    hi = e0 if e_max is None else float(to_float(e_max, "keV", "e_max"))
    lines = [x for x in _all_lines(z, e0, bool(vacancy_transfer)) if lo <= x.energy_keV <= hi]
    if lines and min_relative > 0:
        top = max(x.cross_section for x in lines)
        lines = [x for x in lines if x.cross_section >= min_relative * top]
    return lines


def line_notes(element: str | int) -> list[str]:
    """Notes about xraylib values that were missing for ``element`` and how they were handled."""
    return list(_element_atomic_data(atomic_number(element))[1])


def lines_table(lines: Sequence[EmissionLine]) -> np.ndarray:
    """Energies (keV) and cross sections (barn) of ``lines`` as a (n, 2) array."""
    return np.array([(x.energy_keV, x.cross_section) for x in lines], dtype=float).reshape(-1, 2)
