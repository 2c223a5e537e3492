"""The tables G is assembled from, for any absorbing composition, and the column scales.

For absorber weight fractions w (one row per phase), column c of G is

    G[:, c] = Σ_{lines l of c} s_c σ_l ε(E_l) A_w(E_l) P_l  +  (continuum c) s_c B_c(E) ε(E) A_w(E),

with σ_l the emission cross section (barn per atom), ε the detector efficiency, P_l the unit-area
peak of line l integrated over the channels, B_c the continuum basis (keV⁻¹), A_w the thin-film
absorption of the phase (1 without thickness, and for stray lines) and s_c the column scale.
Everything except A_w is computed once (:func:`response_tables`); the mass attenuation
coefficients (cm²/g) of each absorber at the line energies and the channel centres are kept so
that A_w costs one small matrix product per phase (:meth:`ResponseTables.G`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from esmpy_hs.physics._columns import ColumnLayout
from esmpy_hs.physics._elements import atomic_number, atomic_weight
from esmpy_hs.physics.absorption import Specimen, absorption_from_chi
from esmpy_hs.physics.attenuation import element_mass_attenuation
from esmpy_hs.physics.composition import normalise_composition
from esmpy_hs.physics.continuum import continuum_basis
from esmpy_hs.physics.detector import Detector, peak_matrix
from esmpy_hs.physics.energy_axis import EnergyAxis

__all__ = ["ResponseTables", "column_scales", "reference_weights", "response_tables"]

#: :meth:`ResponseTables.G` sums the lines of each column with one product per column, over
#: that column's lines only (k × n × L multiplications; ≈ 1.8 → 0.3 ms per refresh of a
#: 1980-channel, 471-line G, issue 18); False: one product with the (L × k·m) coefficients,
#: mostly zeros (before; kept for same-process baselines). The same sums up to rounding.
GROUPED_LINES = True


@dataclass
class ResponseTables:
    """Per-line and per-channel factors of G (n channels, L lines, m columns, a absorbers).

    Attributes
    ----------
    peaks : numpy.ndarray
        (n, L) unit-area peak of each line, integrated over each channel.
    line_base : numpy.ndarray
        (L,) σ_l ε(E_l) × the scale of the line's column (barn per atom × scale).
    line_columns, line_absorbed : numpy.ndarray
        (L,) column of each line; whether the specimen absorbs it.
    continuum_base : numpy.ndarray
        (n, c) B_j(E) ε(E) × the column scale, for the continuum columns ``continuum_columns``.
    n_columns : int
        m.
    path_factor : float or None
        ρt / sin(TOA) (g/cm²); ``None``: no absorption.
    absorbers : list of str
        Elements with attenuation tables; grows when a composition names a new one.
    mu_lines, mu_channels : numpy.ndarray
        (L, a) and (n, a) mass attenuation coefficients (cm²/g) at the line energies and the
        channel centres (zeros when nothing absorbs).
    line_energies, channel_energies : numpy.ndarray
        (L,) and (n,) keV.
    scales : numpy.ndarray
        (m,) column scales already applied to ``line_base`` and ``continuum_base``.
    """

    peaks: NDArray[np.float64]
    line_base: NDArray[np.float64]
    line_columns: NDArray[np.intp]
    line_absorbed: NDArray[np.bool_]
    continuum_base: NDArray[np.float64]
    continuum_columns: list[int]
    n_columns: int
    path_factor: float | None
    absorbers: list[str]
    mu_lines: NDArray[np.float64]
    mu_channels: NDArray[np.float64]
    line_energies: NDArray[np.float64]
    channel_energies: NDArray[np.float64]
    scales: NDArray[np.float64]

    def check(self, layout: ColumnLayout, n_channels: int, absorbs: bool) -> None:
        """Raise ``ValueError`` unless the tables fit ``layout``, an axis of ``n_channels``
        channels, and a specimen that absorbs (``absorbs``) or not."""
        m, L = layout.n_columns, len(layout.lines)
        if (
            self.peaks.shape != (n_channels, L)
            or self.line_base.shape != (L,)
            or self.continuum_base.shape != (n_channels, len(layout.continuum_columns))
            or self.n_columns != m
            or self.scales.shape != (m,)
            or not np.all(np.isfinite(self.scales) & (self.scales > 0))
            or self.continuum_columns != layout.continuum_columns
            or not np.array_equal(self.line_columns, layout.line_columns)
            or not np.array_equal(self.line_absorbed, layout.line_absorbed)
        ):
            raise ValueError("response tables do not match the column layout and the axis")
        if (self.path_factor is None) == absorbs:
            raise ValueError("response tables and specimen disagree on absorption")

    def add_absorbers(self, symbols: Sequence[str]) -> None:
        """Attenuation tables (cm²/g) for new absorbing elements."""
        self.mu_lines = np.column_stack([self.mu_lines, _attenuation(symbols, self.line_energies)])
        self.mu_channels = np.column_stack(
            [self.mu_channels, _attenuation(symbols, self.channel_energies)]
        )
        self.absorbers = [*self.absorbers, *symbols]

    def absorber_weights(self, composition: Mapping[str, float], fractions: str) -> NDArray:
        """(a,) weight fractions of a composition over ``absorbers`` (adding new ones)."""
        symbols, _, wt = normalise_composition(composition, fractions)
        missing = [s for s in symbols if s not in self.absorbers]
        if missing:
            self.add_absorbers(missing)
        w = np.zeros(len(self.absorbers))
        for s, v in zip(symbols, wt, strict=True):
            w[self.absorbers.index(s)] = v
        return w

    def weights_from_atoms(self, atoms: NDArray, symbols: Sequence[str]) -> NDArray:
        """(k, a) weight fractions from (k, e) numbers of atoms of ``symbols`` (any scale; a row
        of zeros stays zeros, i.e. no absorption). The symbols must be absorbers."""
        mass = atoms * np.array([atomic_weight(s) for s in symbols])[None, :]
        tot = mass.sum(axis=1, keepdims=True)
        wt = np.divide(mass, tot, out=np.zeros_like(mass), where=tot > 0)
        weights = np.zeros((atoms.shape[0], len(self.absorbers)))
        for i, s in enumerate(symbols):
            weights[:, self.absorbers.index(s)] = wt[:, i]
        return weights

    def G(self, weights: NDArray | None) -> NDArray[np.float64]:
        """G for absorber weight fractions ``weights`` (k, a), as (k, n, m); ``None``: one G
        without absorption. A row of zeros (no composition information) has no absorption."""
        n, L = self.channel_energies.size, len(self.line_base)
        if weights is None or self.path_factor is None:
            k = 1 if weights is None else weights.shape[0]
            a_lines, a_ch = np.ones((k, L)), np.ones((k, n))
        else:
            a_lines = absorption_from_chi((weights @ self.mu_lines.T) * self.path_factor)
            a_lines[:, ~self.line_absorbed] = 1.0
            a_ch = absorption_from_chi((weights @ self.mu_channels.T) * self.path_factor)
            empty = ~(weights.sum(axis=1) > 0)
            a_lines[empty] = 1.0
            a_ch[empty] = 1.0
        k, m = a_lines.shape[0], self.n_columns
        out = np.zeros((k, n, m))
        if L and GROUPED_LINES:
            w = self.line_base[None, :] * a_lines  # (k, L)
            for c, idx, P in self._line_groups():
                out[:, :, c] = (P @ w[:, idx].T).T
        elif L:
            # coefficient of line l in column c for phase q: base_l * A_ql * [col(l) == c]
            coef = np.zeros((L, k, m))
            coef[np.arange(L), :, self.line_columns] = (self.line_base[None, :] * a_lines).T
            out += (self.peaks @ coef.reshape(L, k * m)).reshape(n, k, m).transpose(1, 0, 2)
        if self.continuum_columns:
            out[:, :, self.continuum_columns] = self.continuum_base[None] * a_ch[:, :, None]
        np.maximum(out, 0.0, out=out)
        return out

    def _line_groups(self) -> list[tuple[int, NDArray[np.intp] | slice, NDArray[np.float64]]]:
        """``(column, its lines, their peaks (n × lines))`` for every column with lines; kept
        until ``peaks`` or ``line_columns`` is replaced (not pickled). Where a column's lines
        are consecutive (the layout lists them so) the peaks are a view of ``peaks``."""
        cached = self.__dict__.get("_groups")
        key = self.line_columns.tobytes()
        if cached is None or cached[0] is not self.peaks or cached[1] != key:
            groups: list = []
            for c in np.unique(self.line_columns):
                idx = np.flatnonzero(self.line_columns == c)
                if idx[-1] - idx[0] + 1 == idx.size:
                    sel = slice(int(idx[0]), int(idx[-1]) + 1)
                    groups.append((int(c), sel, self.peaks[:, sel]))
                else:
                    groups.append((int(c), idx, np.ascontiguousarray(self.peaks[:, idx])))
            cached = (self.peaks, key, groups)
            self.__dict__["_groups"] = cached
        return cached[2]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_groups", None)
        return state

    def scaled(self, scales: NDArray[np.float64]) -> ResponseTables:
        """The same tables with the column scales ``scales`` (m,) applied (to unit-scale
        tables)."""
        return replace(
            self,
            line_base=self.line_base * scales[self.line_columns],
            continuum_base=self.continuum_base * scales[self.continuum_columns][None, :],
            absorbers=list(self.absorbers),
            scales=np.asarray(scales, dtype=np.float64).copy(),
        )


def _attenuation(symbols: Sequence[str], energies: NDArray) -> NDArray[np.float64]:
    """(len(energies), len(symbols)) mass attenuation coefficients (cm²/g) at ``energies``
    (keV)."""
    if not symbols:
        return np.zeros((energies.size, 0))
    return np.column_stack([element_mass_attenuation(atomic_number(s), energies) for s in symbols])


def response_tables(
    layout: ColumnLayout,
    axis: EnergyAxis,
    beam_energy: float,
    detector: Detector,
    specimen: Specimen,
) -> ResponseTables:
    """Detector response, continuum and attenuation tables of a layout, with unit scales.

    The absorbers are the specimen elements of the layout, then any other element of
    ``specimen.composition``. Peaks are Gaussians of the detector FWHM at each line (keV),
    integrated over the channel edges of ``axis``; the continuum basis is evaluated at the
    channel centres for beam energy ``beam_energy`` (keV).
    """
    energies = axis.energies
    line_e = np.array([x.energy_keV for x in layout.lines], dtype=np.float64)
    sigma = np.array([x.cross_section for x in layout.lines], dtype=np.float64)
    peaks = (
        peak_matrix(axis.edges, line_e, detector.fwhm(line_e))
        if layout.lines
        else np.zeros((axis.size, 0))
    )
    absorbers = list(layout.elements)
    if specimen.composition is not None:
        absorbers += [s for s in specimen.composition if s not in absorbers]
    if specimen.absorbs:
        mu_lines = _attenuation(absorbers, line_e)
        mu_channels = _attenuation(absorbers, energies)
    else:
        mu_lines = np.zeros((len(line_e), len(absorbers)))
        mu_channels = np.zeros((axis.size, len(absorbers)))
    cont_cols = layout.continuum_columns
    if cont_cols:
        cont = continuum_basis(energies, beam_energy) * detector.efficiency(energies)[:, None]
    else:
        cont = np.zeros((axis.size, 0))
    return ResponseTables(
        peaks=peaks,
        line_base=sigma * detector.efficiency(line_e),
        line_columns=np.array(layout.line_columns, dtype=np.intp),
        line_absorbed=np.array(layout.line_absorbed, dtype=bool),
        continuum_base=cont,
        continuum_columns=cont_cols,
        n_columns=layout.n_columns,
        path_factor=specimen.path_factor if specimen.absorbs else None,
        absorbers=absorbers,
        mu_lines=mu_lines,
        mu_channels=mu_channels,
        line_energies=line_e,
        channel_energies=energies,
        scales=np.ones(layout.n_columns),
    )


def reference_weights(tables: ResponseTables, specimen: Specimen) -> NDArray | None:
    """(1, a) absorber weights of ``specimen.composition`` when the specimen absorbs, else
    ``None`` (the reference G then has no absorption)."""
    if not specimen.absorbs or specimen.composition is None:
        return None
    return tables.absorber_weights(specimen.composition, specimen.fractions)[None]


def column_scales(G_raw: NDArray[np.float64], kinds: Sequence[str]) -> NDArray[np.float64]:
    """Column scales (m,) that make W O(1) for data normalised to unit sum.

    All element and stray columns share one scale: 1 / the mean sum over channels of the
    specimen element columns of ``G_raw`` (of the stray columns if there is no specimen
    column). Each continuum column is scaled to unit sum on its own. A column sum of 0 keeps
    the scale 1.
    """
    sums = G_raw.sum(axis=0)
    scales = np.ones(G_raw.shape[1])
    elem_like = [j for j, k in enumerate(kinds) if k in ("element", "stray")]
    ref_cols = [j for j, k in enumerate(kinds) if k == "element"] or elem_like
    if ref_cols:
        mean_sum = float(np.mean(sums[ref_cols]))
        if mean_sum > 0:
            scales[elem_like] = 1.0 / mean_sum
    for j, k in enumerate(kinds):
        if k == "continuum" and sums[j] > 0:
            scales[j] = 1.0 / sums[j]
    return scales
