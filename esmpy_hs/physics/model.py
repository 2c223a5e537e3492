"""G, the physics dictionary of the factorisation Y ≈ G·W·H: the model and how it is built.

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

:func:`build_G` lays out the columns (``_columns``), computes the response tables and the column
scales (``_response``) and passes them to the :class:`PhysicsModel` constructor.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from esmpy_hs._units import to_float
from esmpy_hs.physics._columns import BuildOptions, ColumnLayout, check_elements, column_layout
from esmpy_hs.physics._response import (
    ResponseTables,
    column_scales,
    reference_weights,
    response_tables,
)
from esmpy_hs.physics.absorption import Specimen
from esmpy_hs.physics.composition import Quantification, quantify_W
from esmpy_hs.physics.detector import Detector
from esmpy_hs.physics.energy_axis import EnergyAxis, first_valid_channel

__all__ = ["PhysicsModel", "build_G"]

logger = logging.getLogger("esmpy_hs.physics")

_SCHEMA = 1


class PhysicsModel:
    """G and everything needed to use it, refresh it per phase and read W.

    Build it with :func:`build_G` (or :meth:`from_dict`); the constructor takes the parts
    :func:`build_G` computes, checks that they agree, and computes the reference G.

    Parameters
    ----------
    axis, beam_energy, detector, specimen
        The energy axis (channel centres all > 0 keV), E0 (keV), the detector and the specimen.
    layout
        ``esmpy_hs.physics._columns.ColumnLayout``: which lines feed which column.
    response
        ``esmpy_hs.physics._response.ResponseTables`` of ``layout``, with the column scales.
    options
        ``esmpy_hs.physics._columns.BuildOptions`` the layout was made with.

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
    lines, line_columns
        The emission lines in G and the column each one adds to.
    notes : list of str
        Decisions and missing-data notes (also logged on the ``esmpy_hs.physics`` logger).
    """

    def __init__(
        self,
        axis: EnergyAxis,
        beam_energy: float,
        detector: Detector,
        specimen: Specimen,
        layout: ColumnLayout,
        response: ResponseTables,
        options: BuildOptions,
    ) -> None:
        for value, kind in ((axis, EnergyAxis), (detector, Detector), (specimen, Specimen),
                            (layout, ColumnLayout), (response, ResponseTables),
                            (options, BuildOptions)):  # fmt: skip
            if not isinstance(value, kind):
                raise TypeError(f"expected a {kind.__name__}, got {type(value).__name__}")
        if not float(beam_energy) > 0:
            raise ValueError(f"beam_energy must be > 0 keV, got {beam_energy!r}")
        if not axis.energies[0] > 0:
            raise ValueError("the energy axis must start above 0 keV")
        layout.validate()
        response.check(layout, axis.size, specimen.absorbs)
        if options.continuum != bool(layout.continuum_columns):
            raise ValueError("options.continuum does not match the continuum columns")
        self.axis, self.beam_energy = axis, float(beam_energy)
        self.detector, self.specimen = detector, specimen
        self.continuum, self.vacancy_transfer = options.continuum, options.vacancy_transfer
        self.quant_family = options.quant_family
        self.stray_min_relative = options.stray_min_relative
        self.stray_merge_fwhm = options.stray_merge_fwhm
        self.labels, self.kinds = list(layout.labels), list(layout.kinds)
        self.column_elements = list(layout.column_elements)
        self.simplex_mask = np.array(layout.simplex, dtype=bool)
        self.lines = list(layout.lines)
        self.line_columns = np.array(layout.line_columns, dtype=np.intp)
        self.elements, self.stray_elements = list(layout.elements), list(layout.stray_elements)
        self.dropped_elements = list(layout.dropped_elements)
        self.split = dict(layout.split)
        self._split_partner = dict(layout.split_partners)
        self._response = response
        self.scales = response.scales
        self.G = response.G(reference_weights(response, specimen))[0]
        notes = [*layout.notes]
        if not specimen.absorbs:
            notes.append("no specimen thickness: absorption is off (A = 1)")
        elif specimen.composition is None:
            notes.append(
                "specimen has a thickness but no composition: the reference G has no absorption;"
                " use G_for_phases(W) for per-phase absorption"
            )
        sums = self.G.sum(axis=0)
        empty = [lab for lab, total in zip(self.labels, sums, strict=True) if not total > 0]
        if empty:
            notes.append(f"columns with no signal on the axis: {', '.join(empty)}")
        self.notes = list(dict.fromkeys(notes))
        for text in self.notes:
            logger.debug(text)

    # ---- basic properties ---------------------------------------------------------------
    @property
    def energies(self) -> NDArray[np.float64]:
        """Channel centres (keV)."""
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
        given = W_or_compositions
        if isinstance(given, Mapping):
            raise TypeError("Pass a list of compositions (one per phase), or W")
        if isinstance(given, Sequence) and len(given) > 0 and isinstance(given[0], Mapping):
            comps = list(given)
            if not self.specimen.absorbs:
                return np.repeat(self.G[None], len(comps), axis=0)
            weights = np.stack([self._response.absorber_weights(c, fractions) for c in comps])
            return self._response.G(weights)
        W = np.asarray(given, dtype=np.float64)
        if W.ndim != 2 or W.shape[0] != self.n_columns:
            raise ValueError(f"W must have shape ({self.n_columns}, k), got {W.shape}")
        if not self.specimen.absorbs:
            return np.repeat(self.G[None], W.shape[1], axis=0)
        rows = np.nonzero(self.simplex_mask)[0]
        atoms = np.clip(W[rows], 0.0, None).T  # (k, e) proportional to atomic fractions
        symbols = [str(self.column_elements[j]) for j in rows]
        return self._response.G(self._response.weights_from_atoms(atoms, symbols))

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
        """Rebuild a model from :meth:`to_dict` output (same G, labels and scales), through
        :func:`build_G` and so through the same constructor."""
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
    if ax.energies[0] <= 0:
        raise ValueError(
            f"The energy axis starts at {ax.energies[0]:.4g} keV: channels at or below 0 keV "
            f"must be cropped first (e.g. keep channels from first_valid_channel(axis, "
            f"cut_keV=...) = {first_valid_channel(ax)})"
        )
    options = BuildOptions(
        continuum, vacancy_transfer, quant_family, stray_min_relative, stray_merge_fwhm
    )
    elems, strays, split_req = check_elements(elements, stray_elements, split)
    detector = Detector() if detector is None else detector
    specimen = Specimen() if specimen is None else specimen
    energy_range = (float(ax.edges[0]), float(min(ax.edges[-1], e0)))
    layout = column_layout(elems, strays, split_req, e0, energy_range, detector, options)
    tables = response_tables(layout, ax, e0, detector, specimen)
    scales = column_scales(tables.G(reference_weights(tables, specimen))[0], layout.kinds)
    return PhysicsModel(ax, e0, detector, specimen, layout, tables.scaled(scales), options)
