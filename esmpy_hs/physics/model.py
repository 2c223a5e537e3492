"""Assembling G, the physics dictionary of the factorisation Y ≈ G·W·H.

Column j of G is the spectrum, on the data's energy axis, that one unit of element j (or of a
continuum basis function) produces in the detector:

* element column e = Σ_lines σ_X(E0) · ε(E_X) · A(E_X) · peak_X(channels), σ_X the emission cross
  section per atom (barn, :mod:`lines`), ε the detector efficiency, A the specimen absorption and
  peak_X a unit-area Gaussian integrated over the channels;
* optionally an element is split in two columns at an energy (e.g. K and L families);
* elements that are not part of the specimen (``stray_elements``, e.g. Cu from the grid) get
  one column per line, without absorption, outside the W simplex and the quantification;
* two continuum columns B0·ε·A and B1·ε·A (:mod:`continuum`).

All element and stray columns are multiplied by ONE common constant (so that W is O(1) for data
normalised to unit sum: the mean sum of the element columns is 1); each continuum column is
scaled to unit sum on its own. ``PhysicsModel.scales`` records the multipliers, which stay fixed
when absorption is recomputed per phase. Hence W[e, k] is proportional to the number of atoms of
element e in phase k.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from esmpy_hs._units import to_float
from esmpy_hs.physics._elements import atomic_number, atomic_weight, symbol
from esmpy_hs.physics.absorption import Specimen, absorption_from_chi
from esmpy_hs.physics.attenuation import element_mass_attenuation
from esmpy_hs.physics.composition import (
    FAMILIES,
    Quantification,
    normalise_composition,
    quantify_W,
)
from esmpy_hs.physics.continuum import continuum_basis
from esmpy_hs.physics.detector import Detector, peak_matrix
from esmpy_hs.physics.energy_axis import EnergyAxis, first_valid_channel
from esmpy_hs.physics.lines import EmissionLine, emission_lines, line_notes

__all__ = ["PhysicsModel", "build_G"]

logger = logging.getLogger("esmpy_hs.physics")

_SCHEMA = 1


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------
class PhysicsModel:
    """G and everything needed to use it, refresh it per phase and read W.

    Built by :func:`build_G`; do not construct directly.

    Attributes
    ----------
    G : numpy.ndarray
        (n_channels, n_columns) float64, all >= 0. Absorption of ``specimen.composition`` if it
        was given, none otherwise (use :meth:`G_for_phases` for per-phase absorption).
    labels : list of str
        Column labels: ``"Fe"``; ``"Fe_K"``/``"Fe_L"`` for a split element; ``"Cu_Ka1"`` for a
        stray line; ``"continuum_0"``, ``"continuum_1"``.
    kinds : list of str
        ``"element"``, ``"stray"`` or ``"continuum"`` per column.
    column_elements : list of str or None
        Element of each column (``None`` for the continuum).
    scales : numpy.ndarray
        Multiplier applied to each raw column (raw element columns are in barn per atom × ε × A;
        raw continuum columns are B_j ε A in keV⁻¹).
    simplex_mask : numpy.ndarray of bool
        Rows of W that form the W simplex: one per specimen element (for a split element the
        column of ``quant_family``); not stray lines, not the continuum.
    energies : numpy.ndarray
        Channel centres (keV).
    elements : list of str
        Specimen elements that have a column. ``dropped_elements`` lists the requested elements
        (specimen or stray) that had no line on the axis.
    notes : list of str
        Decisions and missing-data notes (also logged on the ``esmpy_hs.physics`` logger).
    """

    def __init__(self) -> None:  # filled by build_G
        self.G: NDArray[np.float64]
        self.labels: list[str] = []
        self.kinds: list[str] = []
        self.column_elements: list[str | None] = []
        self.scales: NDArray[np.float64]
        self.simplex_mask: NDArray[np.bool_]
        self.axis: EnergyAxis
        self.beam_energy: float
        self.detector: Detector
        self.specimen: Specimen
        self.elements: list[str] = []
        self.stray_elements: list[str] = []
        self.dropped_elements: list[str] = []
        self.split: dict[str, float | None] = {}
        self.continuum: bool = True
        self.vacancy_transfer: bool = True
        self.quant_family: str = "high"
        self.stray_min_relative: float = 0.01
        self.stray_merge_fwhm: float = 0.5
        self.notes: list[str] = []
        self.lines: list[EmissionLine] = []
        self.line_columns: NDArray[np.intp]
        # internals for fast per-phase recomputation
        self._P: NDArray[np.float64]  # (n, L) unit-area peaks
        self._line_base: NDArray[np.float64]  # (L,) σ ε × column scale
        self._line_absorbed: NDArray[np.bool_]
        self._absorbers: list[str] = []
        self._mu_lines: NDArray[np.float64]  # (L, a)
        self._mu_channels: NDArray[np.float64]  # (n, a)
        self._cont_base: NDArray[np.float64]  # (n, c) B_j ε × column scale
        self._cont_cols: list[int] = []
        self._split_partner: dict[str, tuple[int, int]] = {}  # element -> (high col, low col)

    # ---- basic properties ---------------------------------------------------------------
    @property
    def energies(self) -> NDArray[np.float64]:
        return self.axis.energies

    @property
    def n_channels(self) -> int:
        return int(self.G.shape[0])

    @property
    def n_columns(self) -> int:
        return int(self.G.shape[1])

    @property
    def element_rows(self) -> dict[str, int]:
        """Row of W (column of G) used to quantify each specimen element."""
        return {
            self.column_elements[j]: j  # type: ignore[misc]
            for j in np.nonzero(self.simplex_mask)[0]
        }

    def __repr__(self) -> str:
        return (
            f"PhysicsModel({self.n_channels} channels × {self.n_columns} columns, "
            f"E0={self.beam_energy} keV, columns={self.labels})"
        )

    # ---- G for given absorber compositions ----------------------------------------------
    def _absorber_weights(self, composition: Mapping[str, float], fractions: str) -> NDArray:
        symbols, _, wt = normalise_composition(composition, fractions)
        missing = [s for s in symbols if s not in self._absorbers]
        if missing:
            self._add_absorbers(missing)
        w = np.zeros(len(self._absorbers))
        for s, v in zip(symbols, wt, strict=True):
            w[self._absorbers.index(s)] = v
        return w

    def _add_absorbers(self, symbols: Sequence[str]) -> None:
        line_e = np.array([x.energy_keV for x in self.lines], dtype=np.float64)
        new_l = [element_mass_attenuation(atomic_number(s), line_e) for s in symbols]
        new_c = [element_mass_attenuation(atomic_number(s), self.energies) for s in symbols]
        self._mu_lines = np.column_stack([self._mu_lines, *new_l])
        self._mu_channels = np.column_stack([self._mu_channels, *new_c])
        self._absorbers = [*self._absorbers, *symbols]

    def _G_from_weights(self, weights: NDArray | None) -> NDArray[np.float64]:
        """G for absorber weight fractions ``weights`` of shape (k, a) (``None``: no
        absorption), returned as (k, n, m) (k = 1 for ``None``)."""
        n, m = self.axis.size, len(self.labels)
        L = len(self.lines)
        if weights is None or not self.specimen.absorbs:
            k = 1 if weights is None else weights.shape[0]
            a_lines = np.ones((k, L))
            a_ch = np.ones((k, n))
        else:
            pf = self.specimen.path_factor
            a_lines = absorption_from_chi((weights @ self._mu_lines.T) * pf)  # (k, L)
            a_lines[:, ~self._line_absorbed] = 1.0
            a_ch = absorption_from_chi((weights @ self._mu_channels.T) * pf)  # (k, n)
            # a phase with no composition information: no absorption
            empty = ~(weights.sum(axis=1) > 0)
            a_lines[empty] = 1.0
            a_ch[empty] = 1.0
        k = a_lines.shape[0]
        out = np.zeros((k, n, m))
        if L:
            # coefficient of line l in column c for phase q: base_l * A_ql * [col(l) == c]
            coef = np.zeros((L, k, m))
            coef[np.arange(L), :, self.line_columns] = (self._line_base[None, :] * a_lines).T
            out += (self._P @ coef.reshape(L, k * m)).reshape(n, k, m).transpose(1, 0, 2)
        if self._cont_cols:
            out[:, :, self._cont_cols] = self._cont_base[None, :, :] * a_ch[:, :, None]
        np.maximum(out, 0.0, out=out)
        return out

    def G_for_phases(
        self,
        W_or_compositions: ArrayLike | Sequence[Mapping[str, float]],
        fractions: str = "atomic",
    ) -> NDArray[np.float64]:
        """G with the absorption of each phase's own composition.

        Parameters
        ----------
        W_or_compositions
            Either W (n_columns × k): the atomic fractions of phase k are read from W's simplex
            rows (one per specimen element; negative values clipped to 0); or a sequence of k
            compositions (mappings symbol → fraction, see ``fractions``).
        fractions
            For compositions: ``"atomic"`` (default) or ``"weight"``.

        Returns
        -------
        numpy.ndarray
            (k, n_channels, n_columns) float64 copy. Without a specimen thickness every slice is
            the absorption-free ``G``. The column scales are those of ``G`` (fixed at build
            time), so W keeps its meaning. A phase whose element rows are all 0 gets no
            absorption.
        """
        if isinstance(W_or_compositions, Mapping):
            raise TypeError("Pass a list of compositions (one per phase), or W")
        if (
            isinstance(W_or_compositions, Sequence)
            and len(W_or_compositions) > 0
            and isinstance(W_or_compositions[0], Mapping)
        ):
            comps = list(W_or_compositions)
            if not self.specimen.absorbs:
                return np.repeat(self.G[None], len(comps), axis=0)
            weights = np.stack([self._absorber_weights(c, fractions) for c in comps])
            return self._G_from_weights(weights)
        W = np.asarray(W_or_compositions, dtype=np.float64)
        if W.ndim != 2 or W.shape[0] != self.n_columns:
            raise ValueError(f"W must have shape ({self.n_columns}, k), got {W.shape}")
        k = W.shape[1]
        if not self.specimen.absorbs:
            return np.repeat(self.G[None], k, axis=0)
        rows = np.nonzero(self.simplex_mask)[0]
        at = np.clip(W[rows], 0.0, None).T  # (k, e) proportional to atomic fractions
        aw = np.array([atomic_weight(self.column_elements[j]) for j in rows])  # type: ignore[arg-type]
        mass = at * aw[None, :]
        tot = mass.sum(axis=1, keepdims=True)
        wt = np.divide(mass, tot, out=np.zeros_like(mass), where=tot > 0)
        weights = np.zeros((k, len(self._absorbers)))
        for i, j in enumerate(rows):
            weights[:, self._absorbers.index(self.column_elements[j])] = wt[:, i]  # type: ignore[arg-type]
        return self._G_from_weights(weights)

    # ---- reading W ----------------------------------------------------------------------
    def composition(
        self,
        W: ArrayLike,
        H_sums: ArrayLike | None = None,
        *,
        family: str | None = None,
        G: ArrayLike | None = None,
    ) -> Quantification:
        """Atomic and weight fractions of each phase, with counting uncertainties.

        Parameters
        ----------
        W
            (n_columns, k) as fitted with this model's G (same column scales).
        H_sums
            (k,) Σ_p H_kp, the abundance sums over pixels. ``None``: ones (W already carries the
            intensity, e.g. for a single spectrum fitted with H = 1).
        family
            For split elements: ``"high"`` (the column above the split energy, the default set
            at build time), ``"low"``, or ``"combined"`` (counts-weighted mean of both columns,
            which both count atoms on the same scale).
        G
            G used in the fit if not ``self.G`` (2-D, or 3-D per phase from
            :meth:`G_for_phases`) for the counts N_ek = (Σ_c G_ce) W_ek (Σ_p H_kp).

        Returns
        -------
        Quantification
            Fractions over the specimen elements (stray lines and continuum excluded); 1-σ errors
            from the Poisson floor σ(W_ek)/W_ek = 1/√N_ek, propagated through the normalisation
            c_e = W_e/Σ W (var c_e = [(1-c_e)² σ_e² + c_e² Σ_{j≠e} σ_j²]/(Σ W)²).
        """
        family = self.quant_family if family is None else family
        Gm = self.G if G is None else G
        return quantify_W(W, H_sums, Gm, self.element_rows, self._split_partner, family)

    # ---- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Settings that rebuild this model identically with :meth:`from_dict` (plain dicts,
        lists, floats, str, bool, None; JSON-serialisable)."""
        return {
            "schema": _SCHEMA,
            "axis": self.axis.to_dict(),
            "beam_energy": float(self.beam_energy),
            "elements": list(self.elements),
            "stray_elements": list(self.stray_elements),
            "dropped_elements": list(self.dropped_elements),
            "split": {k: (None if v is None else float(v)) for k, v in self.split.items()},
            "continuum": bool(self.continuum),
            "vacancy_transfer": bool(self.vacancy_transfer),
            "quant_family": self.quant_family,
            "stray_min_relative": self.stray_min_relative,
            "stray_merge_fwhm": self.stray_merge_fwhm,
            "detector": self.detector.to_dict(),
            "specimen": self.specimen.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PhysicsModel:
        """Rebuild a model from :meth:`to_dict` output (same G, labels and scales)."""
        d = dict(d)
        schema = d.pop("schema", _SCHEMA)
        if schema != _SCHEMA:
            raise ValueError(f"Unsupported PhysicsModel schema {schema}")
        d.pop("dropped_elements", None)
        return build_G(
            d.pop("axis"),
            d.pop("beam_energy"),
            d.pop("elements"),
            detector=Detector.from_dict(d.pop("detector")),
            specimen=Specimen.from_dict(d.pop("specimen")),
            **d,
        )


# --------------------------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------------------------
def _family_label(element: str, lines: Sequence[EmissionLine]) -> str:
    fams = sorted({x.family for x in lines}, key="KLM".index)
    return f"{element}_{''.join(fams)}"


def build_G(
    axis: Any,
    beam_energy: float | str,
    elements: Sequence[str],
    *,
    detector: Detector | None = None,
    specimen: Specimen | None = None,
    split: Mapping[str, float | str | None] | None = None,
    stray_elements: Sequence[str] = (),
    continuum: bool = True,
    vacancy_transfer: bool = True,
    quant_family: str = "high",
    stray_min_relative: float = 0.01,
    stray_merge_fwhm: float = 0.5,
    units: str | None = None,
) -> PhysicsModel:
    """Build G for an energy axis, a beam energy, elements, a detector and a specimen.

    Parameters
    ----------
    axis
        Energy axis: :class:`EnergyAxis`, a mapping/object with ``offset``, ``scale``, ``size``
        (and ``units``), or ``(offset, scale, size)``. Channel centres must all be > 0 keV:
        crop first (see :func:`first_valid_channel`).
    beam_energy
        Beam energy (keV, or ``"200 keV"``).
    elements
        Specimen element symbols (one column each, in the W simplex).
    detector
        :class:`Detector` (default ``Detector()``: Si3N4 window, 130 eV at Mn Kα).
    specimen
        :class:`Specimen` (default: no thickness, so no absorption).
    split
        ``{element: energy}``: split the element in two columns, lines at or above the energy
        (keV, or a string) in the "high" column and the others in the "low" one; ``None`` splits
        by family: lines of the highest family present (K, else L) against the rest. Labels are
        ``"Fe_K"``/``"Fe_L"`` (families of the lines in the column), ``"_high"``/``"_low"`` if
        both columns hold the same families.
    stray_elements
        Elements that are not part of the specimen (e.g. ``["Cu"]`` for the grid): one column
        per line on the axis (label ``"Cu_Ka1"``), without absorption, excluded from the W
        simplex and the quantification. Lines that the detector cannot separate share a column:
        a line within ``stray_merge_fwhm`` × FWHM of a stronger retained line joins its column
        (Cu Kα2 joins Cu_Ka1), and a line weaker than ``stray_min_relative`` × the element's
        strongest line (σ·ε) joins the column of the nearest retained line. With both set to 0
        every line has its own column, except lines at exactly the same energy.
    continuum
        Add the two continuum columns.
    vacancy_transfer
        K→L, K→M and L→M vacancy transfer in the cascade (see :mod:`lines`).
    quant_family
        Default family used to quantify split elements (``"high"``, ``"low"``, ``"combined"``);
        the simplex row of a split element is its ``"low"`` column if ``"low"``, else ``"high"``.
    units
        ``"keV"`` or ``"eV"`` for ``axis`` if it does not say (default keV).

    Returns
    -------
    PhysicsModel

    Raises
    ------
    ValueError
        Unknown element (named), an axis reaching 0 keV, a non-positive beam energy, an element
        both in ``elements`` and ``stray_elements``, no column at all.

    Warns
    -----
    UserWarning
        For each element without any line on the axis; its column is dropped and the element is
        listed in ``model.dropped_elements``.
    """
    ax = EnergyAxis.from_any(axis, units)
    e0 = float(to_float(beam_energy, "keV", "beam_energy"))
    if not e0 > 0:
        raise ValueError(f"beam_energy must be > 0 keV, got {beam_energy!r}")
    energies = ax.energies
    if energies[0] <= 0:
        raise ValueError(
            f"The energy axis starts at {energies[0]:.4g} keV: channels at or below 0 keV must "
            f"be cropped first (e.g. keep channels from first_valid_channel(axis, cut_keV=...) "
            f"= {first_valid_channel(ax)})"
        )
    if quant_family not in FAMILIES:
        raise ValueError(f"quant_family must be one of {FAMILIES}, got {quant_family!r}")
    if not (stray_min_relative >= 0 and stray_merge_fwhm >= 0):
        raise ValueError("stray_min_relative and stray_merge_fwhm must be >= 0")
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
    detector = Detector() if detector is None else detector
    specimen = Specimen() if specimen is None else specimen

    model = PhysicsModel()
    model.axis, model.beam_energy = ax, e0
    model.detector, model.specimen = detector, specimen
    model.continuum, model.vacancy_transfer = bool(continuum), bool(vacancy_transfer)
    model.quant_family = quant_family
    model.stray_min_relative, model.stray_merge_fwhm = (
        float(stray_min_relative),
        float(stray_merge_fwhm),
    )
    notes: list[str] = []
    edges = ax.edges
    lo, hi = float(edges[0]), float(min(edges[-1], e0))

    labels: list[str] = []
    kinds: list[str] = []
    col_el: list[str | None] = []
    simplex: list[bool] = []
    all_lines: list[EmissionLine] = []
    line_cols: list[int] = []
    absorbed: list[bool] = []
    dropped: list[str] = []
    kept: list[str] = []
    split_used: dict[str, float | None] = {}
    partners: dict[str, tuple[int, int]] = {}

    def add_column(label: str, kind: str, el: str | None, in_simplex: bool) -> int:
        labels.append(label)
        kinds.append(kind)
        col_el.append(el)
        simplex.append(in_simplex)
        return len(labels) - 1

    for el in elems:
        lines = emission_lines(el, e0, lo, hi, vacancy_transfer=vacancy_transfer)
        if not lines:
            dropped.append(el)
            warnings.warn(
                f"{el} has no X-ray line between {lo:.3f} and {hi:.3f} keV at E0 = {e0:g} keV: "
                f"its column is dropped",
                UserWarning,
                stacklevel=2,
            )
            continue
        kept.append(el)
        for text in line_notes(el):
            notes.append(text)
        if el in split_req:
            cut = split_req[el]
            if cut is None:  # by family: the highest family present against the others
                top = min({x.family for x in lines}, key="KLM".index)
                is_high = [x.family == top for x in lines]
                where = f"{top} family"
            else:
                is_high = [x.energy_keV >= cut for x in lines]
                where = f"{cut:g} keV"
            high = [x for x, h in zip(lines, is_high, strict=True) if h]
            low = [x for x, h in zip(lines, is_high, strict=True) if not h]
            if high and low:
                lab_h, lab_l = _family_label(el, high), _family_label(el, low)
                if lab_h == lab_l:
                    lab_h, lab_l = f"{el}_high", f"{el}_low"
                jh = add_column(lab_h, "element", el, quant_family != "low")
                jl = add_column(lab_l, "element", el, quant_family == "low")
                partners[el] = (jh, jl)
                split_used[el] = cut
                for x, h in zip(lines, is_high, strict=True):
                    all_lines.append(x)
                    line_cols.append(jh if h else jl)
                    absorbed.append(True)
                continue
            notes.append(f"split of {el} at {where} leaves one side empty: not split")
        j = add_column(el, "element", el, True)
        all_lines.extend(lines)
        line_cols.extend([j] * len(lines))
        absorbed.extend([True] * len(lines))

    kept_strays: list[str] = []
    for el in strays:
        lines = emission_lines(el, e0, lo, hi, vacancy_transfer=vacancy_transfer)
        if not lines:
            dropped.append(el)
            warnings.warn(
                f"stray element {el} has no X-ray line between {lo:.3f} and {hi:.3f} keV: dropped",
                UserWarning,
                stacklevel=2,
            )
            continue
        kept_strays.append(el)
        eff_sigma = np.array([x.cross_section for x in lines]) * detector.efficiency(
            [x.energy_keV for x in lines]
        )
        top = eff_sigma.max()
        groups: list[tuple[int, float]] = []  # (column, energy of its main line)
        order = np.argsort(-eff_sigma, kind="stable")
        weak = []
        for i in order:
            x = lines[i]
            if eff_sigma[i] < stray_min_relative * top:
                weak.append(i)
                continue
            tol = stray_merge_fwhm * float(detector.fwhm(x.energy_keV))
            near = [g for g in groups if abs(g[1] - x.energy_keV) <= tol]
            if near:
                j = min(near, key=lambda g: abs(g[1] - x.energy_keV))[0]
            else:
                j = add_column(x.label, "stray", el, False)
                groups.append((j, x.energy_keV))
            all_lines.append(x)
            line_cols.append(j)
            absorbed.append(False)
        for i in weak:  # weak lines join the column of the nearest retained line
            x = lines[i]
            j = min(groups, key=lambda g: abs(g[1] - x.energy_keV))[0]
            all_lines.append(x)
            line_cols.append(j)
            absorbed.append(False)

    cont_cols: list[int] = []
    if continuum:
        cont_cols = [add_column(f"continuum_{i}", "continuum", None, False) for i in range(2)]
    if not labels:
        raise ValueError("G would have no column: no element line on the axis and no continuum")

    model.labels, model.kinds, model.column_elements = labels, kinds, col_el
    model.simplex_mask = np.array(simplex, dtype=bool)
    model.lines = all_lines
    model.line_columns = np.array(line_cols, dtype=np.intp)
    model._line_absorbed = np.array(absorbed, dtype=bool)
    model.elements, model.stray_elements, model.dropped_elements = kept, kept_strays, dropped
    model.split = split_used
    model._split_partner = partners
    model._cont_cols = cont_cols

    # detector response and attenuation, computed once
    line_e = np.array([x.energy_keV for x in all_lines], dtype=np.float64)
    sigma = np.array([x.cross_section for x in all_lines], dtype=np.float64)
    model._P = (
        peak_matrix(edges, line_e, detector.fwhm(line_e)) if all_lines else np.zeros((ax.size, 0))
    )
    eff_lines = detector.efficiency(line_e)
    absorbers = list(kept)
    if specimen.composition is not None:
        absorbers += [s for s in specimen.composition if s not in absorbers]
    model._absorbers = absorbers
    if specimen.absorbs:
        model._mu_lines = (
            np.column_stack([element_mass_attenuation(atomic_number(s), line_e) for s in absorbers])
            if absorbers
            else np.zeros((len(all_lines), 0))
        )
        model._mu_channels = (
            np.column_stack(
                [element_mass_attenuation(atomic_number(s), energies) for s in absorbers]
            )
            if absorbers
            else np.zeros((ax.size, 0))
        )
    else:
        model._mu_lines = np.zeros((len(all_lines), len(absorbers)))
        model._mu_channels = np.zeros((ax.size, len(absorbers)))
    model._line_base = sigma * eff_lines
    if continuum:
        model._cont_base = continuum_basis(energies, e0) * detector.efficiency(energies)[:, None]
    else:
        model._cont_base = np.zeros((ax.size, 0))

    # reference G with unit scales, then fix the scales
    m = len(labels)
    model.scales = np.ones(m)
    ref_weights = None
    if specimen.absorbs:
        if specimen.composition is not None:
            ref_weights = model._absorber_weights(specimen.composition, specimen.fractions)[None]
        else:
            notes.append(
                "specimen has a thickness but no composition: the reference G has no absorption;"
                " use G_for_phases(W) for per-phase absorption"
            )
    else:
        notes.append("no specimen thickness: absorption is off (A = 1)")
    G_raw = model._G_from_weights(ref_weights)[0]
    sums = G_raw.sum(axis=0)
    scales = np.ones(m)
    elem_like = [j for j, k in enumerate(kinds) if k in ("element", "stray")]
    spec_cols = [j for j, k in enumerate(kinds) if k == "element"]
    ref_cols = spec_cols or elem_like
    if ref_cols:
        mean_sum = float(np.mean(sums[ref_cols]))
        if mean_sum > 0:
            scales[elem_like] = 1.0 / mean_sum
    for j in cont_cols:
        if sums[j] > 0:
            scales[j] = 1.0 / sums[j]
    model.scales = scales
    model._line_base = (
        model._line_base * scales[model.line_columns] if all_lines else model._line_base
    )
    if cont_cols:
        model._cont_base = model._cont_base * scales[cont_cols][None, :]
    model.G = G_raw * scales[None, :]
    empty = [labels[j] for j in range(m) if not model.G[:, j].sum() > 0]
    if empty:
        notes.append(f"columns with no signal on the axis: {', '.join(empty)}")
    model.notes = list(dict.fromkeys(notes))
    for text in model.notes:
        logger.debug(text)
    return model
