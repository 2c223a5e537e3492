"""Compositions: atomic ↔ weight fractions, and quantification of phases from W.

A composition is a mapping element symbol → fraction. Whether the fractions are **atomic**
(number) or **weight** (mass) fractions is always stated explicitly with ``fractions="atomic"``
(the default everywhere in this package) or ``fractions="weight"``; they are normalised to sum 1.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from esmpy_hs.physics._elements import atomic_weight, symbol

__all__ = [
    "FAMILIES",
    "MIN_PHASE_SHARE",
    "PURE_LEVEL",
    "Quantification",
    "mark_never_pure",
    "mark_not_detected",
    "mark_undetermined",
    "never_pure_note",
    "normalise_composition",
    "quantify_W",
    "quantify_rows",
    "traded_note",
    "traded_phases",
]

_FRACTIONS = ("atomic", "weight")
#: How a split element is quantified: its high column, its low column, or both combined.
FAMILIES = ("high", "low", "combined")
#: a phase holding less than this share of the map's abundance (or of its element counts) is
#: not quantified: its composition rests on too few counts to mean anything
MIN_PHASE_SHARE = 0.005
#: elements at or above this atomic fraction of a phase decide whether its composition is
#: determined (their 1-σ error must be below their value)
MAJOR_FRACTION = 0.05
#: a phase is seen pure when some pixel holds at least this share of it (the level the fit's
#: move to the composition bound also uses for "pure", :data:`esmpy_hs.nmf._fit.PURE_SHARE`)
PURE_LEVEL = 0.9


def normalise_composition(
    composition: Mapping[str, float], fractions: str = "atomic"
) -> tuple[list[str], NDArray[np.float64], NDArray[np.float64]]:
    """Read a composition.

    Parameters
    ----------
    composition
        Mapping element symbol → fraction (any positive scale; normalised to sum 1).
    fractions
        ``"atomic"`` or ``"weight"``: what the numbers are.

    Returns
    -------
    symbols, atomic_fractions, weight_fractions
        Canonical symbols and the two normalised fraction vectors.
    """
    if fractions not in _FRACTIONS:
        raise ValueError(f"fractions must be 'atomic' or 'weight', got {fractions!r}")
    if not isinstance(composition, Mapping) or not composition:
        raise ValueError("A composition is a non-empty mapping element symbol -> fraction")
    symbols = [symbol(k) for k in composition]
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"Element given twice in composition {dict(composition)!r}")
    values = np.array([float(v) for v in composition.values()], dtype=np.float64)
    if np.any(~np.isfinite(values)) or np.any(values < 0) or not values.sum() > 0:
        raise ValueError(f"Composition fractions must be >= 0 with a positive sum: {composition}")
    weights = np.array([atomic_weight(s) for s in symbols])
    if fractions == "atomic":
        at = values / values.sum()
        wt = at * weights / np.sum(at * weights)
    else:
        wt = values / values.sum()
        at = (wt / weights) / np.sum(wt / weights)
    return symbols, at, wt


#: what the errors of a quantification contain when they are counting errors alone (the default
#: of :attr:`Quantification.errors`): the Poisson floor of the counts given to each element, not
#: the accuracy of the compositions
COUNTING_ONLY = (
    "counting only (the Poisson floor of each element's counts; the accuracy of the physics "
    "model is not included: uncertainty 'systematic' adds it)"
)


@dataclass
class Quantification:
    """Composition of each phase derived from W.

    Arrays have shape (n_elements, n_phases); fractions sum to 1 over the elements of each phase.

    Attributes
    ----------
    elements : list of str
        Quantified elements (rows).
    atomic_fractions, weight_fractions : numpy.ndarray
        Atomic and weight fractions.
    atomic_errors, weight_errors : numpy.ndarray
        1-σ counting (Poisson floor) uncertainties of the fractions.
    counts : numpy.ndarray
        Counts attributed to each element in each phase, N_ek = (Σ_c G_ce) W_ek (Σ_p H_kp).
    family : str
        How split elements were quantified (``"high"``, ``"low"`` or ``"combined"``).
    notes : list of str
        Remarks (e.g. phases with no element signal).
    phase_names : list of str
        One name per phase (default ``"phase 0"``, ``"phase 1"``, …).
    undetermined : dict
        ``{phase name: reason}`` for phases whose composition means nothing (see
        :func:`mark_undetermined`): their fractions and errors are NaN and the tables print
        "not determined" instead of numbers.
    never_pure : dict
        ``{phase name: largest share}`` for phases that no pixel holds pure: the largest share
        of a pixel's abundance the phase reaches in the fit (below :data:`PURE_LEVEL`). Such a
        composition is inferred from mixed pixels, and the priors choose it along directions
        the counts cannot see (docs/choosing.rst, "Phases never seen pure"); the tables say so.
    not_detected : dict
        ``{phase name: {element: T}}``: listed elements whose lines the data do not need in
        that phase (the model check's drop-one test, :mod:`esmpy_hs.physics.presence`; ``T``
        its statistic, at or below the threshold). Their fractions and errors are 0 in the
        arrays, the phase's other elements are renormalised without them (see
        :func:`mark_not_detected`), and the tables and the CSV print "—" (empty) and a footer
        line.
    traded : dict
        ``{phase name: short reason}`` for the phases of :attr:`undetermined` that traded their
        abundance against the scale of their spectrum (:func:`traded_phases`); the short form,
        without the figures of a pure pixel, labels the phase's panel in ``plot_phases``.
    errors : str
        What the 1-σ errors contain, as ``print(q)`` says it (by default :data:`COUNTING_ONLY`;
        ``quantify_phases(uncertainty=...)`` also adds the spread over count splits and a
        systematic part).
    error_parts : dict
        ``{part: (atomic σ, weight σ)}`` (fractions, arrays like ``atomic_fractions``): the
        parts that ``atomic_errors``/``weight_errors`` add in quadrature, when more than the
        counting error was asked for (see :meth:`EDSespm.quantify_phases`).

    The dictionaries :attr:`atomic_percent`, :attr:`weight_percent` and their ``_error``
    twins give ``{phase name: {element: percent}}``; ``print(q)`` shows both tables.
    """

    elements: list[str]
    atomic_fractions: NDArray[np.float64]
    weight_fractions: NDArray[np.float64]
    atomic_errors: NDArray[np.float64]
    weight_errors: NDArray[np.float64]
    counts: NDArray[np.float64]
    family: str = "high"
    notes: list[str] = field(default_factory=list)
    phase_names: list[str] | None = None
    undetermined: dict[str, str] = field(default_factory=dict)
    never_pure: dict[str, float] = field(default_factory=dict)
    not_detected: dict[str, dict[str, float]] = field(default_factory=dict)
    traded: dict[str, str] = field(default_factory=dict)
    errors: str = COUNTING_ONLY
    error_parts: dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]] = field(
        default_factory=dict
    )

    def __post_init__(self) -> None:
        if self.phase_names is None:
            self.phase_names = [f"phase {k}" for k in range(self.n_phases)]
        elif len(self.phase_names) != self.n_phases:
            names = self.phase_names
            raise ValueError(f"{len(names)} phase names for {self.n_phases} phases: {names}")

    @property
    def n_phases(self) -> int:
        return int(self.atomic_fractions.shape[1])

    def _percent(self, table: NDArray) -> dict[str, dict[str, float]]:
        return {
            name: {el: float(100.0 * table[i, k]) for i, el in enumerate(self.elements)}
            for k, name in enumerate(self.phase_names)
        }

    @property
    def atomic_percent(self) -> dict[str, dict[str, float]]:
        """``{phase name: {element: at.%}}``."""
        return self._percent(self.atomic_fractions)

    @property
    def atomic_percent_error(self) -> dict[str, dict[str, float]]:
        """``{phase name: {element: 1-σ error, at.%}}``."""
        return self._percent(self.atomic_errors)

    @property
    def weight_percent(self) -> dict[str, dict[str, float]]:
        """``{phase name: {element: wt.%}}``."""
        return self._percent(self.weight_fractions)

    @property
    def weight_percent_error(self) -> dict[str, dict[str, float]]:
        """``{phase name: {element: 1-σ error, wt.%}}``."""
        return self._percent(self.weight_errors)

    def to_csv(self, path: str | Path | None = None) -> str:
        """The table as CSV, one row per phase and element (and written to ``path`` if given).

        Columns: ``phase, element, at%, at%_err, wt%, wt%_err, counts``.
        """
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["phase", "element", "at%", "at%_err", "wt%", "wt%_err", "counts"])
        for k, name in enumerate(self.phase_names):
            for i, el in enumerate(self.elements):
                writer.writerow(
                    [name, el]
                    + [
                        "" if name in self.undetermined or el in self.not_detected.get(name, ())
                        else f"{100 * a[i, k]:.4f}"
                        for a in (
                            self.atomic_fractions,
                            self.atomic_errors,
                            self.weight_fractions,
                            self.weight_errors,
                        )
                    ]
                    + [f"{self.counts[i, k]:.1f}"]
                )
        text = buf.getvalue()
        if path is not None:
            Path(path).write_text(text)
        return text

    def as_dict(self) -> dict:
        """``{phase name: {element: {"atomic": x, "atomic_error": s, "weight": w, "weight_error": s,
        "counts": n}}}`` with plain floats."""
        out: dict = {}
        for k, name in enumerate(self.phase_names):
            out[name] = {
                el: {
                    "atomic": float(self.atomic_fractions[i, k]),
                    "atomic_error": float(self.atomic_errors[i, k]),
                    "weight": float(self.weight_fractions[i, k]),
                    "weight_error": float(self.weight_errors[i, k]),
                    "counts": float(self.counts[i, k]),
                }
                for i, el in enumerate(self.elements)
            }
        return out

    def table(self, kind: str = "atomic") -> str:
        """Text table of percentages ± 1 σ (``kind`` ``"atomic"`` or ``"weight"``)."""
        frac = self.atomic_fractions if kind == "atomic" else self.weight_fractions
        err = self.atomic_errors if kind == "atomic" else self.weight_errors
        if kind not in ("atomic", "weight"):
            raise ValueError(f"kind must be 'atomic' or 'weight', got {kind!r}")
        width = max(18, *(len(name) + 2 for name in self.phase_names))
        head = ("at.%" if kind == "atomic" else "wt.%").ljust(8) + "".join(
            name.rjust(width) for name in self.phase_names
        )
        rows = [head]
        for i, el in enumerate(self.elements):
            cells = "".join(
                ("—" if name in self.undetermined or el in self.not_detected.get(name, ())
                 else f"{100 * frac[i, k]:.2f} ± {100 * err[i, k]:.2f}").rjust(width)
                for k, name in enumerate(self.phase_names)
            )  # fmt: skip
            rows.append(el.ljust(8) + cells)
        rows += [f"{name}: not determined — {why}" for name, why in self.undetermined.items()]
        rows += [never_pure_note(name, share) for name, share in self.never_pure.items()
                 if name not in self.undetermined]  # fmt: skip
        rows += [not_detected_note(name, found) for name, found in self.not_detected.items()
                 if found and name not in self.undetermined]  # fmt: skip
        return "\n".join(rows)

    def __str__(self) -> str:
        text = self.table("atomic") + "\n\n" + self.table("weight")
        return text + f"\n± 1σ: {self.errors}"

    def __repr__(self) -> str:
        return f"Quantification(family={self.family!r})\n{self}"


def never_pure_note(name: str, share: float) -> str:
    """The table's line for a phase that no pixel holds pure (largest share ``share``)."""
    return (f"{name}: never pure in a pixel (at most {100 * share:.0f} % of one): its "
            "composition is inferred from mixtures and set by the priors where the counts "
            "cannot tell (docs/choosing.rst, 'Phases never seen pure')")  # fmt: skip


def not_detected_note(name: str, elements: dict[str, float]) -> str:
    """The table's line for the listed elements whose lines a phase's data do not need (``T``
    the test's statistic or its one-step upper bound, :mod:`esmpy_hs.physics.presence`)."""
    which = ", ".join(f"{el} (T ≤ {t:.3g})" for el, t in elements.items())
    return (f"{name}: {which} not detected — the data do not need these lines (model check); "
            "not shown, the other elements renormalised without them")


def mark_not_detected(q: Quantification, not_detected: dict[str, dict[str, float]]
                      ) -> Quantification:  # fmt: skip
    """Record in ``q.not_detected`` the listed elements whose lines a phase's data do not need
    (``{phase name: {element: T}}``, the model check's ``listed["not_detected"]``), set their
    fractions and errors to 0 and renormalise the phase's other fractions without them (in
    place; returns ``q``). The tables, the CSV and ``plot_phases`` show "—" for them (the 0 in
    the arrays keeps each phase's fractions summing to 1; ``q.not_detected`` says which).

    Why renormalise rather than print the value with a flag: an element whose lines the data
    do not need has an amount that is not a measurement but whatever the fit put into its
    column (a broad excess of low-energy counts read as N, tens of at.% for a light element's
    small fluorescence yield), and the other elements' fractions are shares of a total that
    includes it. Without it, they are the shares of what the data show. The errors of the others
    are scaled by the same factor (the counting error of the removed amount is left out).
    Phases not determined are left as they are; a phase none of whose elements is detected is
    marked not determined (``q.undetermined``, its fractions NaN).
    """
    index = {el: i for i, el in enumerate(q.elements)}
    for k, name in enumerate(q.phase_names):
        found = {el: float(t) for el, t in not_detected.get(name, {}).items() if el in index}
        if not found or name in q.undetermined:
            continue
        rows = [index[el] for el in found]
        if not 1.0 - float(q.atomic_fractions[rows, k].sum()) > 1e-12:
            # every element the phase holds is one its pixels do not need: nothing is left
            # to renormalise, and no number means anything
            q.undetermined[name] = ("none of its elements is detected in its pixels (model "
                                    "check): no element signal")  # fmt: skip
            for table in (q.atomic_fractions, q.weight_fractions, q.atomic_errors,
                          q.weight_errors):  # fmt: skip
                table[:, k] = np.nan
            continue
        q.not_detected[name] = found
        for frac, err in ((q.atomic_fractions, q.atomic_errors),
                          (q.weight_fractions, q.weight_errors)):  # fmt: skip
            rest = 1.0 - float(frac[rows, k].sum())
            frac[rows, k] = 0.0
            err[rows, k] = 0.0
            if rest > 0:
                frac[:, k] /= rest
                err[:, k] /= rest
    return q


def mark_never_pure(q: Quantification, largest_share: ArrayLike,
                    level: float = PURE_LEVEL) -> Quantification:  # fmt: skip
    """Record in ``q.never_pure`` the phases whose largest share of a pixel's abundance
    (``largest_share``, one value per phase, in [0, 1]) is below ``level`` (in place; returns
    ``q``). Phases already marked not determined are left out."""
    largest = np.asarray(largest_share, dtype=np.float64).ravel()
    if largest.size != q.n_phases:
        raise ValueError(f"{largest.size} largest shares for {q.n_phases} phases")
    for k, name in enumerate(q.phase_names):
        if name not in q.undetermined and largest[k] < level:
            q.never_pure[name] = float(largest[k])
    return q


def traded_phases(H_sums: ArrayLike, element_counts: ArrayLike,
                  min_share: float = MIN_PHASE_SHARE) -> NDArray[np.bool_]:  # fmt: skip
    """(k,) whether each phase holds less than ``min_share`` of the map's abundance but at
    least ``min_share`` of its element counts.

    Under the abundance simplex a phase's spectrum carries its counts per unit abundance (the
    counts of a pure pixel). Such a phase has traded abundance against the scale of its
    spectrum: a spectrum many times richer than any pixel, present in tiny shares, holds counts
    that belong to the other phases' compositions (a prior that rewards small abundances, the
    log-sparsity term, drives the trade; see docs/validation.rst). ``H_sums``: Σ over pixels
    of each phase's abundance; ``element_counts``: (k,) or (elements, k) counts.
    """
    H = np.asarray(H_sums, dtype=np.float64).ravel()
    c = np.asarray(element_counts, dtype=np.float64)
    c = c.sum(axis=0) if c.ndim == 2 else c.ravel()
    share = H / H.sum() if H.sum() > 0 else np.zeros_like(H)
    count_share = c / c.sum() if c.sum() > 0 else np.zeros_like(c)
    return (share < min_share) & (count_share >= min_share)


def traded_note(abundance_share: float, count_share: float, pure_counts: float | None = None,
                pixel_counts: float | None = None, *, short: bool = False) -> str:  # fmt: skip
    """Why a phase of :func:`traded_phases` is not determined (shares as fractions; counts of a
    pure pixel of the phase and the 99th percentile of the map's pixels, both over the fitted
    channels, when known). ``short``: the shares and a four-word reason, for a plot's panel."""
    text = (f"holds {100 * abundance_share:.2g} % of the map's abundance but "
            f"{100 * count_share:.2g} % of its element counts")  # fmt: skip
    if short:
        return text + ": abundance traded for scale"
    if pure_counts is not None and pixel_counts is not None and pixel_counts > 0:
        text += (f" (a pure pixel of it would hold {pure_counts:.3g} counts, "
                 f"{pure_counts / pixel_counts:.3g}× the map's richest pixels)")  # fmt: skip
    return (text + ": the fit traded its abundance against the scale of its spectrum, and the "
            "other phases' compositions lack these counts")


def mark_undetermined(q: Quantification, H_sums: ArrayLike,
                      min_share: float = MIN_PHASE_SHARE, *, pure_counts: ArrayLike | None = None,
                      pixel_counts: float | None = None) -> Quantification:  # fmt: skip
    """Mark the phases of ``q`` whose composition means nothing (in place; returns ``q``).

    A phase is not determined when it holds less than ``min_share`` of the map's abundance
    (``H_sums``: Σ over pixels of each phase's abundance) or of the element counts, when it
    has no element signal, or when an element at or above :data:`MAJOR_FRACTION` of it, or any
    element, has a 1-σ error at least as large as its value (or above 100 %). Its fractions and
    errors become NaN and ``q.undetermined`` says why. A phase with almost no abundance but a
    share of the counts (:func:`traded_phases`) is said to be one: ``pure_counts`` ((k,) counts
    of a pure pixel of each phase) and ``pixel_counts`` (the 99th percentile of the map's pixel
    counts), both over the fitted channels, put a figure on it when given.
    """
    H = np.asarray(H_sums, dtype=np.float64).ravel()
    share = H / H.sum() if H.sum() > 0 else np.zeros_like(H)
    counts = q.counts.sum(axis=0)
    count_share = counts / counts.sum() if counts.sum() > 0 else np.zeros_like(counts)
    traded = traded_phases(H, counts, min_share)
    pure = None if pure_counts is None else np.asarray(pure_counts, dtype=np.float64).ravel()
    for k, name in enumerate(q.phase_names):
        at, err = q.atomic_fractions[:, k], q.atomic_errors[:, k]
        major = at >= MAJOR_FRACTION
        if not counts[k] > 0:
            why = "no element signal"
        elif traded[k]:
            why = traded_note(share[k], count_share[k], None if pure is None else pure[k],
                              pixel_counts)  # fmt: skip
            q.traded[name] = traded_note(share[k], count_share[k], short=True)
        elif share[k] < min_share:
            why = f"holds {100 * share[k]:.2g} % of the map's abundance"
        elif count_share[k] < min_share:
            why = f"holds {100 * count_share[k]:.2g} % of the element counts"
        elif np.any(err[major] >= at[major]) or np.any(err > 1.0):
            i = int(np.argmax(np.where(major, err / np.maximum(at, 1e-300), err)))
            why = (f"its uncertainty is larger than its value ({q.elements[i]} "
                   f"{100 * at[i]:.3g} ± {100 * err[i]:.3g} at.%): too few counts")  # fmt: skip
        else:
            continue
        q.undetermined[name] = why
        for table in (q.atomic_fractions, q.weight_fractions, q.atomic_errors, q.weight_errors):
            table[:, k] = np.nan
    return q


def _fraction_errors(values: NDArray, sigmas: NDArray) -> tuple[NDArray, NDArray]:
    """Fractions c_e = v_e / Σ v and their 1-σ errors for independent σ(v_e) (per column)."""
    total = values.sum(axis=0, keepdims=True)
    safe = np.where(total > 0, total, 1.0)
    c = np.where(total > 0, values / safe, 0.0)
    s2 = sigmas**2
    # var(c_e) = [(1-c_e)² σ_e² + c_e² Σ_{j≠e} σ_j²] / T²
    var = ((1.0 - c) ** 2 * s2 + c**2 * (s2.sum(axis=0, keepdims=True) - s2)) / safe**2
    return c, np.sqrt(np.where(total > 0, var, 0.0))


def quantify_rows(
    elements: Sequence[str],
    W_rows: NDArray[np.float64],
    col_sums: NDArray[np.float64],
    H_sums: NDArray[np.float64],
    family: str = "high",
) -> Quantification:
    """Quantify phases from element rows of W.

    Parameters
    ----------
    elements
        Element of each row.
    W_rows
        (e, k) rows of W, proportional to the number of atoms (G columns per atom on a common
        scale).
    col_sums
        (e,) or (e, k): Σ_c G_ce of each row's column (per phase if 2-D).
    H_sums
        (k,): Σ_p H_kp.
    """
    W_rows = np.clip(np.asarray(W_rows, dtype=np.float64), 0.0, None)
    S = np.asarray(col_sums, dtype=np.float64)
    if S.ndim == 1:
        S = S[:, None]
    H = np.asarray(H_sums, dtype=np.float64).reshape(1, -1)
    counts = S * W_rows * H
    # Poisson floor: σ(W_ek) = W_ek / √N_ek = √(W_ek / (S_e H_k))
    denom = S * H
    sig_w = np.sqrt(np.divide(W_rows, denom, out=np.zeros_like(W_rows), where=denom > 0))
    at, at_err = _fraction_errors(W_rows, sig_w)
    aw = np.array([atomic_weight(e) for e in elements])[:, None]
    wt, wt_err = _fraction_errors(W_rows * aw, sig_w * aw)
    notes = [
        f"phase {k}: no element signal (all element rows of W are 0)"
        for k in range(W_rows.shape[1])
        if not W_rows[:, k].sum() > 0
    ]
    return Quantification(list(elements), at, wt, at_err, wt_err, counts, family, notes)


def quantify_W(
    W: ArrayLike,
    H_sums: ArrayLike | None,
    G: ArrayLike,
    element_rows: Mapping[str, int],
    split_partners: Mapping[str, tuple[int, int]],
    family: str = "high",
) -> Quantification:
    """Quantify phases from a whole W (see :meth:`PhysicsModel.composition`).

    Parameters
    ----------
    W
        (m, k) or (m,): W as fitted with ``G`` (columns per atom on a common scale).
    H_sums
        (k,) Σ_p H_kp; ``None``: ones.
    G
        (n, m), or (k, n, m) per phase: its column sums Σ_c G_ce turn W into counts.
    element_rows
        Specimen element → its row of W in the simplex.
    split_partners
        Split element → its (high, low) rows of W.
    family
        ``"high"``, ``"low"`` or ``"combined"`` (counts-weighted mean of both rows) for split
        elements.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    W = np.asarray(W, dtype=np.float64)
    if W.ndim == 1:
        W = W[:, None]
    G = np.asarray(G, dtype=np.float64)
    m, k = G.shape[-1], W.shape[1]
    if W.shape[0] != m:
        raise ValueError(f"W must have {m} rows, got {W.shape[0]}")
    Hs = np.ones(k) if H_sums is None else np.asarray(H_sums, dtype=np.float64).reshape(-1)
    if Hs.size != k:
        raise ValueError(f"H_sums must have {k} values")
    colsum = G.sum(axis=-2)  # (m,) or (k, m)
    colsum = np.broadcast_to(colsum if colsum.ndim == 2 else colsum[None], (k, m))
    rows, sums = [], []
    for el, j in element_rows.items():
        pair = split_partners.get(el)
        if pair is None or family != "combined":
            jj = j if pair is None else pair[family == "low"]
            rows.append(W[jj])
            sums.append(colsum[:, jj])
        else:  # counts-weighted mean of the two rows
            hi, lo = pair
            s = colsum[:, hi] + colsum[:, lo]
            n_counts = colsum[:, hi] * W[hi] + colsum[:, lo] * W[lo]
            rows.append(np.divide(n_counts, s, out=np.zeros_like(s), where=s > 0))
            sums.append(s)
    return quantify_rows(list(element_rows), np.array(rows), np.array(sums), Hs, family)
