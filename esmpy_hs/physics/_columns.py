"""The column layout of G: which column holds which element, split family, stray line or continuum.

The layout is pure bookkeeping, decided before any spectrum is computed: the emission lines of
each element (energies in keV, cross sections in barn per atom) and the column each line adds to.

* a specimen element has one column (label ``"Fe"``), or two if it is split at an energy or by
  family (``"Fe_K"``/``"Fe_L"``); both columns count atoms of the same element;
* a stray element (not part of the specimen, e.g. Cu from the grid) has one column per group of
  lines that the detector cannot separate (label of the strongest line, ``"Cu_Ka1"``);
* the continuum has two columns (``"continuum_0"``, ``"continuum_1"``) and no lines.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from esmpy_hs._units import to_float
from esmpy_hs.physics._elements import symbol
from esmpy_hs.physics.composition import FAMILIES
from esmpy_hs.physics.detector import Detector
from esmpy_hs.physics.lines import EmissionLine, emission_lines, line_notes

__all__ = ["BuildOptions", "ColumnLayout", "check_elements", "column_layout"]

_KINDS = ("element", "stray", "continuum")


@dataclass(frozen=True)
class BuildOptions:
    """The options of :func:`esmpy_hs.physics.build_G` that shape the columns (validated).

    ``stray_min_relative`` is a fraction of an element's strongest line (σ·ε, dimensionless);
    ``stray_merge_fwhm`` is a multiple of the detector FWHM at the line (dimensionless).
    """

    continuum: bool = True
    vacancy_transfer: bool = True
    quant_family: str = "high"
    stray_min_relative: float = 0.01
    stray_merge_fwhm: float = 0.5

    def __post_init__(self) -> None:
        if self.quant_family not in FAMILIES:
            raise ValueError(f"quant_family must be one of {FAMILIES}, got {self.quant_family!r}")
        if not (self.stray_min_relative >= 0 and self.stray_merge_fwhm >= 0):
            raise ValueError("stray_min_relative and stray_merge_fwhm must be >= 0")
        for name in ("continuum", "vacancy_transfer"):
            object.__setattr__(self, name, bool(getattr(self, name)))
        for name in ("stray_min_relative", "stray_merge_fwhm"):
            object.__setattr__(self, name, float(getattr(self, name)))


@dataclass
class ColumnLayout:
    """What each column of G holds and which lines feed it.

    Attributes
    ----------
    labels, kinds, column_elements, simplex
        Per column: label, ``"element"``/``"stray"``/``"continuum"``, element symbol (``None``
        for the continuum), and whether the column is a row of the W simplex.
    lines, line_columns, line_absorbed
        Per emission line: the line, the column it adds to, and whether the specimen absorbs it
        (specimen lines yes, stray lines no).
    elements, stray_elements, dropped_elements
        Specimen and stray elements that have columns; requested elements without a line.
    split, split_partners
        Split elements: the split energy (keV, ``None`` by family) and the (high, low) columns.
    notes
        Decisions and missing-data notes made while laying out the columns.
    """

    labels: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    column_elements: list[str | None] = field(default_factory=list)
    simplex: list[bool] = field(default_factory=list)
    lines: list[EmissionLine] = field(default_factory=list)
    line_columns: list[int] = field(default_factory=list)
    line_absorbed: list[bool] = field(default_factory=list)
    elements: list[str] = field(default_factory=list)
    stray_elements: list[str] = field(default_factory=list)
    dropped_elements: list[str] = field(default_factory=list)
    split: dict[str, float | None] = field(default_factory=dict)
    split_partners: dict[str, tuple[int, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def n_columns(self) -> int:
        return len(self.labels)

    @property
    def continuum_columns(self) -> list[int]:
        return [j for j, kind in enumerate(self.kinds) if kind == "continuum"]

    def add_column(self, label: str, kind: str, element: str | None, in_simplex: bool) -> int:
        """Append a column; returns its index."""
        self.labels.append(label)
        self.kinds.append(kind)
        self.column_elements.append(element)
        self.simplex.append(in_simplex)
        return len(self.labels) - 1

    def add_line(self, line: EmissionLine, column: int, absorbed: bool) -> None:
        """Let ``line`` add to ``column``."""
        self.lines.append(line)
        self.line_columns.append(column)
        self.line_absorbed.append(absorbed)

    def validate(self) -> None:
        """Raise ``ValueError`` if the per-column or per-line lists disagree."""
        m = self.n_columns
        per_column = (self.kinds, self.column_elements, self.simplex)
        per_line = (self.line_columns, self.line_absorbed)
        if any(len(x) != m for x in per_column) or any(len(x) != len(self.lines) for x in per_line):
            raise ValueError("column layout: per-column or per-line lists of different lengths")
        if any(k not in _KINDS for k in self.kinds):
            raise ValueError(f"column layout: kinds must be among {_KINDS}")
        if any(not 0 <= j < m for j in self.line_columns):
            raise ValueError("column layout: a line adds to a column that does not exist")
        pairs = self.split_partners.values()
        if any(not (0 <= j < m and self.kinds[j] == "element") for p in pairs for j in p):
            raise ValueError("column layout: split partners must be element columns")


def check_elements(
    elements: Sequence[str] | str,
    stray_elements: Sequence[str] | str,
    split: Mapping[str, float | str | None] | None,
) -> tuple[list[str], list[str], dict[str, float | None]]:
    """Canonical specimen and stray symbols, and the split energies (keV, ``None``: by family).

    Raises ``ValueError`` for an unknown symbol (named), an element given twice or both as
    specimen and stray element, or a split of an element that is not a specimen element.
    """
    if isinstance(elements, str):
        elements = [elements]
    if isinstance(stray_elements, str):
        stray_elements = [stray_elements]
    elems = [symbol(e) for e in elements]  # ValueError naming an unknown symbol
    strays = [symbol(e) for e in stray_elements]
    for group, name in ((elems, "elements"), (strays, "stray_elements")):
        dup = sorted({e for e in group if group.count(e) > 1})
        if dup:
            raise ValueError(f"Element(s) given twice in {name}: {', '.join(dup)}")
    both = sorted(set(elems) & set(strays))
    if both:
        raise ValueError(f"Element(s) both in elements and stray_elements: {', '.join(both)}")
    split_req: dict[str, float | None] = {}
    for k, v in (split or {}).items():
        s = symbol(k)
        if s not in elems:
            raise ValueError(f"split: {s} is not one of the specimen elements")
        split_req[s] = None if v is None else float(to_float(v, "keV", f"split[{s}]"))
    return elems, strays, split_req


def _family_label(element: str, lines: Sequence[EmissionLine]) -> str:
    """``"Fe_K"``, ``"Hf_LM"``: the element and the families of its lines, K first."""
    fams = sorted({x.family for x in lines}, key="KLM".index)
    return f"{element}_{''.join(fams)}"


def _split_sides(lines: Sequence[EmissionLine], cut: float | None) -> tuple[list[bool], str]:
    """Which lines go to the high column: at or above ``cut`` (keV), or, for ``cut=None``, the
    lines of the highest family present (K, else L) against the others. Also says where."""
    if cut is None:
        top = min({x.family for x in lines}, key="KLM".index)
        return [x.family == top for x in lines], f"{top} family"
    return [x.energy_keV >= cut for x in lines], f"{cut:g} keV"


def _add_element(
    layout: ColumnLayout,
    element: str,
    lines: Sequence[EmissionLine],
    split: Mapping[str, float | None],
    quant_family: str,
) -> None:
    """The column(s) of a specimen element: one, or a high and a low one if it is split and
    both sides have lines. The simplex row of a split element is its low column if
    ``quant_family == "low"``, else its high column."""
    if element in split:
        cut = split[element]
        is_high, where = _split_sides(lines, cut)
        high = [x for x, h in zip(lines, is_high, strict=True) if h]
        low = [x for x, h in zip(lines, is_high, strict=True) if not h]
        if not (high and low):
            layout.notes.append(f"split of {element} at {where} leaves one side empty: not split")
        else:
            lab_h, lab_l = _family_label(element, high), _family_label(element, low)
            if lab_h == lab_l:
                lab_h, lab_l = f"{element}_high", f"{element}_low"
            jh = layout.add_column(lab_h, "element", element, quant_family != "low")
            jl = layout.add_column(lab_l, "element", element, quant_family == "low")
            layout.split_partners[element] = (jh, jl)
            layout.split[element] = cut
            for x, h in zip(lines, is_high, strict=True):
                layout.add_line(x, jh if h else jl, absorbed=True)
            return
    j = layout.add_column(element, "element", element, True)
    for x in lines:
        layout.add_line(x, j, absorbed=True)


def _add_stray(
    layout: ColumnLayout,
    element: str,
    lines: Sequence[EmissionLine],
    detector: Detector,
    options: BuildOptions,
) -> None:
    """The columns of a stray element, one per group of lines the detector cannot separate.

    Lines are taken strongest first (σ·ε). A line within ``options.stray_merge_fwhm`` × FWHM
    (keV) of a retained line joins the nearest one; otherwise it opens a column. A line weaker
    than ``options.stray_min_relative`` × the strongest joins the column of the nearest
    retained line. Stray lines are not absorbed by the specimen.
    """
    min_relative, merge_fwhm = options.stray_min_relative, options.stray_merge_fwhm
    eff_sigma = np.array([x.cross_section for x in lines]) * detector.efficiency(
        [x.energy_keV for x in lines]
    )
    top = eff_sigma.max()
    groups: list[tuple[int, float]] = []  # (column, energy of its main line in keV)
    weak = []
    for i in np.argsort(-eff_sigma, kind="stable"):
        x = lines[i]
        if eff_sigma[i] < min_relative * top:
            weak.append(x)
            continue
        tol = merge_fwhm * float(detector.fwhm(x.energy_keV))
        near = [g for g in groups if abs(g[1] - x.energy_keV) <= tol]
        if near:
            j = min(near, key=lambda g: abs(g[1] - x.energy_keV))[0]
        else:
            j = layout.add_column(x.label, "stray", element, False)
            groups.append((j, x.energy_keV))
        layout.add_line(x, j, absorbed=False)
    for x in weak:
        j = min(groups, key=lambda g: abs(g[1] - x.energy_keV))[0]
        layout.add_line(x, j, absorbed=False)


def column_layout(
    elements: Sequence[str],
    stray_elements: Sequence[str],
    split: Mapping[str, float | None],
    beam_energy: float,
    energy_range: tuple[float, float],
    detector: Detector,
    options: BuildOptions,
) -> ColumnLayout:
    """Lay out the columns: specimen elements, then stray elements, then the continuum.

    Parameters
    ----------
    elements, stray_elements, split
        As returned by :func:`check_elements` (split energies in keV).
    beam_energy
        E0 (keV).
    energy_range
        (low, high) keV: lines outside are not on the axis.
    detector
        Its FWHM and efficiency decide which stray lines share a column.
    options
        The build options.

    Warns
    -----
    UserWarning
        For each element without a line in ``energy_range``; it is listed in
        ``dropped_elements``.
    """
    lo, hi = energy_range
    layout = ColumnLayout()
    for el, stray in [(e, False) for e in elements] + [(e, True) for e in stray_elements]:
        lines = emission_lines(el, beam_energy, lo, hi, vacancy_transfer=options.vacancy_transfer)
        if not lines:
            layout.dropped_elements.append(el)
            where = f"between {lo:.3f} and {hi:.3f} keV"
            text = (
                f"stray element {el} has no X-ray line {where}: dropped"
                if stray
                else f"{el} has no X-ray line {where} at E0 = {beam_energy:g} keV: its column is "
                "dropped"
            )
            warnings.warn(text, UserWarning, stacklevel=3)
            continue
        if stray:
            layout.stray_elements.append(el)
            _add_stray(layout, el, lines, detector, options)
        else:
            layout.elements.append(el)
            layout.notes.extend(line_notes(el))
            _add_element(layout, el, lines, split, options.quant_family)
    if options.continuum:
        for i in range(2):
            layout.add_column(f"continuum_{i}", "continuum", None, False)
    if not layout.labels:
        raise ValueError("G would have no column: no element line on the axis and no continuum")
    return layout
