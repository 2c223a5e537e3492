"""Which elements a spectrum holds: forward selection of whole line families with a
quasi-Poisson likelihood-ratio test. HyperSpy-free.

The spectrum ``y`` (counts per channel, e.g. a map's summed spectrum) is modelled as

    μ = μ₀ + Σ_j a_j · B_j,

with ``μ₀`` a fixed part that is already explained (0, or the summed spectrum of a fitted model)
and the columns ``B_j``:

* the two continuum columns of :func:`~esmpy_hs.physics.build_G` (amplitudes ≥ 0), the
  continuum times a cubic B-spline basis with knots every 1 keV (signed: its shape is known to
  a few per cent only) and three exponential tails from the first channel (≥ 0: the detector's
  noise peak);
* ``μ₀`` itself, when given, with a free scale ≥ 0;
* for each element already in the model (``known``, then each element selected so far): its
  lines in groups (lines closer than 1 FWHM together), one column per group (amplitudes ≥ 0),
  so that errors in the tabulated ratios between and within families (Lβ/Lα, Mζ/Mα) and the
  specimen's absorption of the low-energy lines do not leave a residual that looks like
  another element;
* for each group with ≥ 2 % of its element's weight and ≥ 2000 counts under its peak, its first
  and second derivative along the energy axis
  (signed amplitudes): a peak a few eV off or a little too narrow or wide — the non-linear
  energy axis and the width law of a real detector — is absorbed there instead of being read as a
  new line;
* for each selected element, its Si-escape peaks (lines above the Si K edge, 1.740 keV lower)
  and its sum peaks with itself and the other selected elements (amplitudes ≥ 0): at millions of
  counts these detector artefacts are strong enough to pass for another element's line.

Each candidate element enters as ONE column: all its lines (K, L and M families) with their
tabulated emission cross sections times the detector efficiency (a column of
:func:`~esmpy_hs.physics.build_G`, no absorption), so that overlapping lines (S Kα, Mo Lα,
Pb Mα at 2.3 keV) are told apart by the element's other lines.

The test
--------
For a candidate column ``g`` the statistic is the Poisson likelihood gain of adding it with an
amplitude b ≥ 0, ``2ΔlogL = D(μ) − D(μ + b·g)`` (``D`` the Poisson deviance), divided by a
quasi-Poisson dispersion φ: the deviance per degree of freedom of the current fit measured over
the channels away from the candidate's lines (where its column is < 1 % of its maximum),
``φ = Σ_away D_i / (n_away − p)``, floored at 1. On a summed spectrum of millions of counts the
model is never exact (continuum shape, efficiency, peak shape), so the pure Poisson gain of any
column that overlaps a residual is large; φ measures how far the data stray from the model in
general and scales the gain down by it (quasi-likelihood; McCullagh & Nelder, *Generalized
Linear Models*, 2nd ed., §9.2). Under the null (the element absent) and with b ≥ 0 on the
boundary, ``T = 2ΔlogL/φ`` follows ½χ²₀ + ½χ²₁ (Self & Liang 1987), so
``P(T > t) = ½ P(χ²₁ > t)``. With ``m`` candidates tested at each step, the Bonferroni bound
gives the threshold ``t = χ²₁.isf(2α/m)``: the probability of one or more false detections
at a step is at most ``α`` (default 0.01). The steps are sequential (each adds the best
candidate, refits, and tests again) and stop at the first step where no candidate passes.

Screening: every candidate's gain is first computed with the other amplitudes held (a
one-parameter Newton fit, vectorised over all candidates); the few best are refitted with all
amplitudes free, which gives the exact gain that is tested.

The false-alarm and detection figures measured on real and independent maps are in
``docs/validation.rst``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import chi2

from esmpy_hs.physics._elements import symbol
from esmpy_hs.physics.calibration import _weighted_nnls
from esmpy_hs.physics.detector import Detector, peak_matrix
from esmpy_hs.physics.energy_axis import EnergyAxis

__all__ = [
    "DEFAULT_ALPHA",
    "STRAY_SOURCES",
    "Evidence",
    "Identification",
    "candidate_elements",
    "detection_threshold",
    "identify",
]

#: Family-wise false-detection probability per selection step (Bonferroni over the candidates).
DEFAULT_ALPHA = 0.01

#: Elements that are often seen in a STEM-EDX spectrum without being part of the specimen, with
#: their usual source. They are identified like any element and named as such, never dropped.
STRAY_SOURCES: dict[str, str] = {
    "Cu": "grid, holder or pole piece (Cu)",
    "Mo": "grid (Mo)",
    "Au": "grid (Au)",
    "Ni": "grid (Ni)",
    "Si": "detector internal fluorescence (Si)",
    "Ga": "FIB implantation (Ga)",
    "Pt": "FIB protective layer (Pt)",
    "C": "contamination or support film (C)",
    "Ar": "ion milling (Ar)",
}

#: Below this share of the characteristic counts, Si is read as the detector's internal
#: fluorescence rather than a specimen element (the Si dead layer gives a few 0.1 %).
SI_FLUORESCENCE_SHARE = 0.01

_NOT_CANDIDATES = frozenset({"Tc", "Pm", "Po", "At", "Rn", "Fr", "Ra", "Ac", "Pa"})
_SI_K_EDGE = 1.839  # keV
_SI_KA = 1.740  # keV
_AWAY = 0.01  # a channel is "away" from a column where it is below 1 % of its maximum
_N_REFIT = 3  # candidates refitted exactly at each step
_KNOT_KEV = 1.0  # knot spacing of the continuum shape correction
_RESOLVED = 2000.0  # counts above which a peak's position/width or the continuum's shape is
# resolved well enough to need a correction column


def candidate_elements() -> list[str]:
    """The default candidates: C (Z = 6) to U (Z = 92) without the short-lived elements."""
    out = [symbol(z) for z in range(6, 93)]
    return [e for e in out if e not in _NOT_CANDIDATES]


def detection_threshold(n_candidates: int, alpha: float = DEFAULT_ALPHA) -> float:
    """Threshold on ``T = 2ΔlogL/φ`` for ``n_candidates`` tests at family-wise level ``alpha``.

    One-sided (amplitude ≥ 0): ``P(T > t) = ½ P(χ²₁ > t) = α / n_candidates``.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    m = max(int(n_candidates), 1)
    return float(chi2.isf(min(2.0 * alpha / m, 1.0), df=1))


@dataclass(frozen=True)
class Evidence:
    """What the spectrum says about one candidate element.

    Attributes
    ----------
    element : str
    present : bool
        Whether its test passed (``statistic > threshold``).
    counts : float
        Counts its lines explain in the spectrum (present: from the final fit; absent: the
        best amplitude ≥ 0 with the others held).
    peak_fraction : float
        ``counts`` in its peak region (channels where its fitted lines give ≥ 10 % of their
        maximum) over the data counts there, at most 1: for an element added on top of a fitted
        model, the share of the peak's counts that the model left unexplained.
    statistic : float
        ``T = 2ΔlogL / φ`` when it was tested (see the module docstring).
    gain : float
        ``2ΔlogL``, the Poisson likelihood gain of adding its column.
    dispersion : float
        φ, the quasi-Poisson dispersion it was tested with.
    energy : float
        Energy (keV) of its strongest line in counts.
    line : str
        Name of that line, e.g. ``"Si Ka1"``.
    lines : tuple of str
        Its lines that carry ≥ 5 % of its strongest line's counts (the pattern that was matched).
    source : str
        ``"specimen"``, or the likely stray source (``STRAY_SOURCES``).
    step : int
        Order of selection (1 = first); 0 when not selected.
    share : float
        ``counts`` over all characteristic counts of the final fit (known and found elements).
    """

    element: str
    present: bool
    counts: float
    peak_fraction: float
    statistic: float
    gain: float
    dispersion: float
    energy: float
    line: str
    lines: tuple[str, ...]
    source: str = "specimen"
    step: int = 0
    share: float = 0.0

    @property
    def stray(self) -> bool:
        """Whether its likely source is not the specimen."""
        return self.source != "specimen"


@dataclass
class Identification:
    """Result of :func:`identify`: evidence per candidate, present ones first.

    Attributes
    ----------
    evidence : list of Evidence
        The selected elements in selection order, then the others by decreasing statistic.
    threshold : float
        The threshold on the statistic (:func:`detection_threshold`).
    alpha : float
        The family-wise false-detection probability per step.
    n_candidates : int
        Number of candidates tested at the first step.
    known : tuple of str
        Elements that were in the model from the start (not tested).
    untested : tuple of str
        Candidates whose main lines all lie within 3 FWHM of the first channel (not tested).
    dispersion : float
        Deviance per degree of freedom of the final fit over all channels.
    seconds : float
        Wall time (s).
    fitted : numpy.ndarray
        The final fitted spectrum (counts per channel).
    notes : tuple of str
        What the caller knows that limits the result (e.g. a bulk SEM specimen), printed
        under the table.
    """

    evidence: list[Evidence]
    threshold: float
    alpha: float
    n_candidates: int
    known: tuple[str, ...] = ()
    untested: tuple[str, ...] = ()
    dispersion: float = float("nan")
    seconds: float = 0.0
    fitted: NDArray[np.float64] | None = field(default=None, repr=False)
    notes: tuple[str, ...] = ()

    @property
    def present(self) -> list[Evidence]:
        """Evidence of the elements found, in selection order."""
        return [e for e in self.evidence if e.present]

    @property
    def elements(self) -> list[str]:
        """All elements found (specimen and stray), in selection order."""
        return [e.element for e in self.present]

    @property
    def specimen_elements(self) -> list[str]:
        """Elements found whose likely source is the specimen."""
        return [e.element for e in self.present if not e.stray]

    @property
    def stray_elements(self) -> list[str]:
        """Elements found that are likely stray signal (grid, FIB, contamination, detector)."""
        return [e.element for e in self.present if e.stray]

    def __getitem__(self, element: str) -> Evidence:
        for e in self.evidence:
            if e.element == element:
                return e
        raise KeyError(element)

    def table(self, n_absent: int = 5) -> str:
        """A text table: the elements found, then the ``n_absent`` strongest others."""
        head = (f"{'element':<8}{'present':<9}{'counts':>12}{'peak %':>8}{'T':>11}"
                f"  {'line (keV)':<18}{'likely source':<38}lines")  # fmt: skip
        rows = [head, "-" * len(head)]
        absent = [e for e in self.evidence if not e.present][:n_absent]
        for e in [*self.present, *absent]:
            rows.append(
                f"{e.element:<8}{'yes' if e.present else 'no':<9}{e.counts:>12.4g}"
                f"{100 * e.peak_fraction:>8.1f}{e.statistic:>11.4g}"
                f"  {f'{e.line} ({e.energy:.3f})':<18}{e.source:<38}{', '.join(e.lines)}"
            )
        rows.append(
            f"threshold T > {self.threshold:.3g} (α = {self.alpha:g} over "
            f"{self.n_candidates} candidates, quasi-Poisson); final dispersion "
            f"{self.dispersion:.3g}; {self.seconds:.2g} s"
        )
        rows += [f"note: {n}" for n in self.notes]
        return "\n".join(rows)

    def __repr__(self) -> str:
        return f"Identification({', '.join(self.elements) or 'nothing found'})\n{self.table()}"

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable form (without the fitted spectrum)."""
        return {
            "elements": self.elements,
            "threshold": float(self.threshold),
            "alpha": float(self.alpha),
            "n_candidates": int(self.n_candidates),
            "known": list(self.known),
            "evidence": [
                {**e.__dict__, "lines": list(e.lines)} for e in self.evidence if e.present
            ],
        }


# ---- columns ------------------------------------------------------------------------------
@dataclass
class _Columns:
    """Candidate columns on the axis: one tied column per element, its families split."""

    elements: list[str]
    tied: NDArray[np.float64]  # (n, m)
    family: dict[str, NDArray[np.float64]]  # element -> (n, f)
    continuum: NDArray[np.float64]  # (n, 2)
    lines: dict[str, list[tuple[str, float, float]]]  # element -> (name, keV, weight)


_CACHE: dict[str, Any] = {"key": None, "value": None}


def _columns(axis: EnergyAxis, beam_energy: float, elements: Sequence[str],
             detector: Detector) -> _Columns:  # fmt: skip
    """:func:`_build_columns`, the last result kept (a model check calls it once per phase)."""
    import json

    key = json.dumps([axis.to_dict(), float(beam_energy), list(elements), detector.to_dict()],
                     sort_keys=True, default=str)  # fmt: skip
    if _CACHE["key"] != key:
        _CACHE["value"] = _build_columns(axis, beam_energy, elements, detector)
        _CACHE["key"] = key
    return _CACHE["value"]


def _build_columns(axis: EnergyAxis, beam_energy: float, elements: Sequence[str],
                   detector: Detector) -> _Columns:  # fmt: skip
    from esmpy_hs.physics.model import build_G

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # elements without a line on the axis are dropped
        split = build_G(axis, beam_energy, list(elements), detector=detector,
                        split={e: None for e in elements})  # fmt: skip
    kinds = np.array(split.kinds)
    col_el = np.array([str(c) for c in split.column_elements], dtype=object)
    names, family, tied = [], {}, []
    for e in split.elements:
        idx = np.nonzero((col_el == e) & (kinds == "element"))[0]
        F = split.G[:, idx]
        if not F.sum() > 0:
            continue
        names.append(e)
        family[e] = F
        tied.append(F.sum(axis=1))  # all families with their tabulated ratios: one column
    eff = detector.efficiency([x.energy_keV for x in split.lines]) if split.lines else []
    lines: dict[str, list[tuple[str, float, float]]] = {e: [] for e in names}
    for x, ef in zip(split.lines, eff, strict=True):
        if x.element in lines:
            lines[x.element].append((f"{x.element} {x.siegbahn or x.iupac}", float(x.energy_keV),
                                     float(x.cross_section * ef)))  # fmt: skip
    G = np.stack(tied, axis=1) if tied else np.zeros((axis.size, 0))
    keep = np.ones(len(names), dtype=bool)
    return _Columns(names, G[:, keep], family, split.G[:, kinds == "continuum"], lines)


def _line_groups(axis: EnergyAxis, detector: Detector,
                 lines: Sequence[tuple[str, float, float]]) -> tuple[NDArray, NDArray]:  # fmt: skip
    """One column per group of an element's lines (lines closer than 1 FWHM share a group),
    each weighted by σ·ε within its group, and which groups hold ≥ 2 % of the element's weight
    (those get derivative columns). Once an element is in the model, the ratios between its
    groups are free: tabulated ratios within a family (Mζ/Mα, Lβ/Lα) and the specimen's
    absorption are known to tens of per cent only, and their mismatch must not be read as
    another element's line."""
    e_lo, e_hi = float(axis.edges[0]), float(axis.edges[-1])
    ls = sorted((x for x in lines if e_lo < x[1] < e_hi), key=lambda x: x[1])
    if not ls:
        return np.zeros((axis.size, 0)), np.zeros(0, dtype=bool)
    E = np.array([x[1] for x in ls])
    w = np.array([x[2] for x in ls])
    fw = detector.fwhm(E)
    group = np.concatenate([[0], np.cumsum(np.diff(E) > fw[1:])])
    P = peak_matrix(axis.edges, E, fw) * w[None, :]
    n_g = int(group[-1]) + 1
    cols = np.zeros((axis.size, n_g))
    np.add.at(cols.T, group, P.T)
    weight = np.bincount(group, weights=w, minlength=n_g)
    keep = cols.sum(axis=0) > 0
    return cols[:, keep], (weight >= 0.02 * weight.sum())[keep]


def _derivatives(F: NDArray, scale: float) -> NDArray:
    """First and second derivative along the channels of each column of ``F`` (n, f)."""
    d1 = np.gradient(F, axis=0) / scale
    d2 = np.gradient(d1, axis=0) / scale
    return np.concatenate([d1, d2], axis=1)


def _artefacts(axis: EnergyAxis, detector: Detector,
               lines: Sequence[tuple[str, float, float]]) -> NDArray:  # fmt: skip
    """Escape and sum peaks of ``lines`` (name, keV, weight): two columns (n, 2) or (n, 0)."""
    if not lines:
        return np.zeros((axis.size, 0))
    E = np.array([x[1] for x in lines])
    w = np.array([x[2] for x in lines])
    main = w >= 0.1 * w.max()
    E, w = E[main], w[main]
    e_lo, e_hi = axis.edges[0], axis.edges[-1]
    out = []
    esc = E > _SI_K_EDGE
    centres = E[esc] - _SI_KA
    ok = (centres > e_lo) & (centres < e_hi)
    if np.any(ok):
        P = peak_matrix(axis.edges, centres[ok], detector.fwhm(centres[ok]))
        out.append(P @ w[esc][ok])
    i, j = np.triu_indices(E.size)
    centres = E[i] + E[j]
    ok = (centres > e_lo) & (centres < e_hi)
    if np.any(ok):
        P = peak_matrix(axis.edges, centres[ok], detector.fwhm(centres[ok]))
        out.append(P @ (w[i] * w[j])[ok])
    if not out:
        return np.zeros((axis.size, 0))
    return np.stack(out, axis=1)


# ---- Poisson fits -------------------------------------------------------------------------
def _deviance_terms(y: NDArray, mu: NDArray) -> NDArray:
    mu = np.maximum(mu, 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(y > 0, y * np.log(y / mu), 0.0)
    return 2.0 * (t - (y - mu))


def _fit(A: NDArray, signed: NDArray, y: NDArray, offset: NDArray, a0: NDArray | None = None,
         n_iter: int = 20) -> tuple[NDArray, NDArray]:  # fmt: skip
    """Poisson ML of ``y`` under ``offset + A a``, ``a ≥ 0`` except the ``signed`` columns
    (IRLS with weights 1/μ; a signed column enters as a positive and a negative copy).

    Returns the amplitudes and μ (floored at a small positive value).
    """
    norm = np.sqrt((A**2).sum(axis=0))
    norm[norm <= 0] = 1.0
    An = A / norm
    Ax = np.concatenate([An, -An[:, signed]], axis=1)
    floor = 1e-3 * max(float(y.mean()), 1e-9)
    w = 1.0 / np.maximum(y + offset, 1.0) if a0 is None else None
    a = None
    if a0 is not None:
        a = np.concatenate([np.maximum(a0 * norm, 0), np.maximum(-(a0 * norm)[signed], 0)])
        w = 1.0 / np.maximum(offset + Ax @ a, floor)
    for _ in range(n_iter):
        a_new = _weighted_nnls(Ax, y - offset, w, ridge=1e-10)
        change = np.inf if a is None else (
            np.abs(Ax @ (a_new - a)).max() / max(float(np.abs(Ax @ a_new).max()), 1e-12))
        a = a_new
        w = 1.0 / np.maximum(offset + Ax @ a, floor)
        if change < 1e-4:
            break
    mu = np.maximum(offset + Ax @ a, floor)
    out = a[: An.shape[1]].copy()
    out[signed] -= a[An.shape[1]:]
    return out / norm, mu


def _screen(y: NDArray, mu: NDArray, C: NDArray, n_iter: int = 12) -> tuple[NDArray, NDArray]:
    """Best amplitude b ≥ 0 of each column of ``C`` added to ``mu`` (others held) and the
    Poisson gain 2ΔlogL of it; vectorised Newton steps."""
    w = 1.0 / mu
    b = np.maximum((C * ((y - mu) * w)[:, None]).sum(0) / np.maximum((C**2 * w[:, None]).sum(0),
                                                                      1e-300), 0.0)  # fmt: skip
    for _ in range(n_iter):
        m = mu[:, None] + C * b
        r = y[:, None] / m
        score = (C * (r - 1.0)).sum(0)
        info = (C**2 * r / m).sum(0)
        b = np.maximum(b + score / np.maximum(info, 1e-300), 0.0)
    m = mu[:, None] + C * b
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = 2.0 * (np.where(y[:, None] > 0, y[:, None] * np.log(m / mu[:, None]), 0.0)
                      - C * b).sum(0)  # fmt: skip
    return b, np.maximum(gain, 0.0)


def _nuisance(axis: EnergyAxis, continuum: NDArray, y: NDArray) -> tuple[NDArray, NDArray]:
    """Smooth corrections that no element line can stand in for.

    * the continuum times a cubic B-spline basis with knots every 1 keV (signed; only the basis
      functions with ≥ 2000 counts under them, where a shape error is resolved): the
      continuum's shape (efficiency, absorption edges, the bremsstrahlung law) is known to a
      few per cent only, and such broad residuals must not be read as many weak lines;
    * exponential tails from the first channel (decay 0.05, 0.1 and 0.2 keV, ≥ 0): the tail of
      the detector's noise peak and incomplete charge collection at the lowest energies.
    """
    from scipy.interpolate import BSpline

    e = axis.energies
    lo, hi = float(e[0]), float(e[-1])
    inner = np.linspace(lo, hi, max(int(np.ceil((hi - lo) / _KNOT_KEV)), 1) + 1)
    t = np.concatenate([[lo] * 3, inner, [hi] * 3])
    basis = BSpline.design_matrix(np.clip(e, lo, hi), t, 3).toarray()
    cont = continuum.sum(axis=1)
    shape = basis * cont[:, None]
    # only where the data resolve a shape error: ≥ _RESOLVED counts under the basis function
    support = (basis > 0.05).T.astype(np.float64) @ y
    shape = shape[:, (shape.sum(axis=0) > 0) & (support >= _RESOLVED)]
    tail = np.stack([np.exp(-(e - lo) / tau) for tau in (0.05, 0.1, 0.2)], axis=1)
    return shape, tail


def _testable(cols: _Columns, axis: EnergyAxis, detector: Detector) -> set[str]:
    """Elements with a main line (≥ 10 % of its strongest) at least 3 FWHM above the first
    channel: below that the tail of the detector's noise peak and the window's absorption edges
    shape the counts more than any model of them (C and N at the default 0.25 keV cut)."""
    e0 = float(axis.energies[0])
    start = e0 + 3.0 * float(detector.fwhm(e0))
    out = set()
    for el in cols.elements:
        ls = cols.lines[el]
        if not ls:
            continue
        w = np.array([x[2] for x in ls])
        E = np.array([x[1] for x in ls])
        if np.any(E[w >= 0.1 * w.max()] >= start):
            out.add(el)
    return out


def _neighbourhoods(cols: _Columns, axis: EnergyAxis, detector: Detector
                    ) -> tuple[NDArray, NDArray]:  # fmt: skip
    """Per element (columns of ``cols.tied``): the channels within 1.5 FWHM of its main lines
    (≥ 10 % of its strongest), and the ring from 1.5 to 4 FWHM around them."""
    n, m = axis.size, len(cols.elements)
    near = np.zeros((n, m), dtype=bool)
    wide = np.zeros((n, m), dtype=bool)
    e = axis.energies
    for j, el in enumerate(cols.elements):
        ls = cols.lines[el]
        if not ls:
            continue
        w = np.array([x[2] for x in ls])
        E = np.array([x[1] for x in ls])[w >= 0.1 * w.max()]
        fw = detector.fwhm(E)
        dist = np.abs(e[:, None] - E[None, :]) / fw[None, :]
        near[:, j] = (dist <= 1.5).any(axis=1)
        wide[:, j] = (dist <= 4.0).any(axis=1)
    return near, wide & ~near


def _dispersion(d: NDArray, C: NDArray, near: NDArray, ring: NDArray, p: int) -> NDArray:
    """Quasi-Poisson dispersion per candidate: the larger of the deviance per degree of freedom
    over all channels away from its lines and over the ring around its lines (≥ 1)."""
    away = C < _AWAY * C.max(axis=0)
    phi_all = (d @ away) / np.maximum(away.sum(0) - p, 1)
    n_ring = ring.sum(0)
    phi_ring = np.where(n_ring >= 5, (d @ ring) / np.maximum(n_ring, 1), 0.0)
    return np.maximum(np.maximum(phi_all, phi_ring), 1.0)


def _high_family(cols: _Columns, element: str) -> tuple[NDArray, float] | None:
    """The column of the element's highest-energy family (K, else L) and its share of the
    element's tied column; None for a single family."""
    F = cols.family[element]
    F = F[:, F.sum(axis=0) > 0]
    if F.shape[1] < 2:
        return None
    e = np.arange(F.shape[0], dtype=np.float64)
    centre = (F * e[:, None]).sum(0) / F.sum(0)
    j = int(np.argmax(centre))
    j_tied = cols.elements.index(element)
    kappa = cols.tied[:, j_tied].sum() / F.sum()
    return F[:, j] * kappa, float(F[:, j].sum() * kappa / cols.tied[:, j_tied].sum())


def _consistent(y: NDArray, mu: NDArray, b: float, column: NDArray,
                high: tuple[NDArray, float] | None) -> bool:  # fmt: skip
    """Whether the element's highest-energy family shows at least half the counts its tied
    column predicts, when that prediction is detectable (> 5 σ of the counts under it): an
    element is never found from a low-energy line (M or L) alone that another line explains."""
    if high is None or not b > 0:
        return True
    F_hi, _ = high
    predicted = b * F_hi
    region = F_hi >= 0.1 * F_hi.max()
    if predicted[region].sum() <= 5.0 * np.sqrt(mu[region].sum()):
        return True
    b_hi, _ = _screen(y, mu, F_hi[:, None])
    return bool(b_hi[0] >= 0.5 * b)


class _State:
    """The current model: its column blocks (columns, lower bounds, owners) and its fit."""

    def __init__(self, y: NDArray, offset: NDArray, cols: _Columns, axis: EnergyAxis,
                 detector: Detector, explained: NDArray | None) -> None:  # fmt: skip
        self.y, self.offset, self.cols, self.axis, self.detector = y, offset, cols, axis, detector
        # (columns, lower bounds, owner element per column or None, is an artefact block)
        self.blocks: list[tuple[NDArray, NDArray, list[str | None], bool]] = [
            (cols.continuum, np.zeros(cols.continuum.shape[1]),
             [None] * cols.continuum.shape[1], False)
        ]  # fmt: skip
        if explained is not None:
            self.blocks.append((explained[:, None], np.zeros(1), [None], False))
        shape, tail = _nuisance(axis, cols.continuum, y)
        self.blocks.append((shape, np.full(shape.shape[1], -np.inf), [None] * shape.shape[1],
                            False))  # fmt: skip
        self.blocks.append((tail, np.zeros(tail.shape[1]), [None] * tail.shape[1], False))
        self.members: list[str] = []
        self.a: NDArray | None = None
        self.mu = np.maximum(offset, 1e-9)

    @property
    def n_params(self) -> int:
        return sum(b[0].shape[1] for b in self.blocks)

    def matrix(self) -> tuple[NDArray, NDArray, list[str | None]]:
        A = np.concatenate([b[0] for b in self.blocks], axis=1)
        lower = np.concatenate([b[1] for b in self.blocks])
        owner = [o for b in self.blocks for o in b[2]]
        return A, lower, owner

    def add(self, element: str) -> None:
        """Add ``element``'s line-group columns and their derivatives; rebuild the artefacts."""
        F, strong = _line_groups(self.axis, self.detector, self.cols.lines[element])
        if F.shape[1] == 0:
            F = self.cols.family[element]
            F = F[:, F.sum(axis=0) > 0]
            strong = np.ones(F.shape[1], dtype=bool)
        self.blocks = [b for b in self.blocks if not b[3]]
        self.blocks.append((F, np.zeros(F.shape[1]), [element] * F.shape[1], False))
        # derivatives where the data resolve a position or width error: ≥ _RESOLVED counts
        # within the group's peak (a sparse spectrum cannot, and signed columns there only
        # trade counts with the element's own column)
        under = (F / np.maximum(F.max(axis=0), 1e-300) >= 0.1).T.astype(np.float64) @ self.y
        D = _derivatives(F[:, strong & (under >= _RESOLVED)], self.axis.scale)
        self.blocks.append((D, np.full(D.shape[1], -np.inf), [None] * D.shape[1], False))
        self.members.append(element)
        art = _artefacts(self.axis, self.detector,
                         [x for e in self.members for x in self.cols.lines[e]])
        if art.shape[1]:
            self.blocks.append((art, np.zeros(art.shape[1]), [None] * art.shape[1], True))

    def fit(self) -> None:
        A, lower, _ = self.matrix()
        self.a, self.mu = _fit(A, np.isinf(lower), self.y, self.offset, self.a_start(A))

    def trial(self, column: NDArray) -> float:
        """Deviance with ``column`` (amplitude ≥ 0) added and all amplitudes refitted."""
        A, lower, _ = self.matrix()
        a0 = self.a_start(A)
        _, mu = _fit(np.concatenate([A, column[:, None]], axis=1), np.append(np.isinf(lower),
                     False), self.y, self.offset, None if a0 is None else np.append(a0, 0.0))
        return float(_deviance_terms(self.y, mu).sum())

    def a_start(self, A: NDArray) -> NDArray | None:
        """The current amplitudes as a start when the columns did not change."""
        if self.a is None or self.a.size != A.shape[1]:
            return None
        return self.a

    def element_counts(self, element: str) -> NDArray:
        """Per-channel counts of ``element``'s family columns in the current fit."""
        A, _, owner = self.matrix()
        sel = np.array([o == element for o in owner], dtype=bool)
        return A[:, sel] @ self.a[sel]


def _tied_counts(state: _State, cols: _Columns, elements: Sequence[str]) -> dict[str, NDArray]:
    """Per-channel counts of each of ``elements`` in a fit of the state's other columns
    (continuum, shape and tail corrections, peak-shape derivatives, artefacts) plus one column
    per element with all its lines at their tabulated ratios."""
    A, lower, owner = state.matrix()
    keep = np.array([o is None for o in owner], dtype=bool)
    index = {e: i for i, e in enumerate(cols.elements)}
    T = cols.tied[:, [index[e] for e in elements]]
    A2 = np.concatenate([A[:, keep], T], axis=1)
    signed = np.append(np.isinf(lower[keep]), np.zeros(len(elements), dtype=bool))
    a, _ = _fit(A2, signed, state.y, state.offset)
    amp = a[int(keep.sum()):]
    return {e: T[:, i] * max(float(amp[i]), 0.0) for i, e in enumerate(elements)}


def _source(element: str, share: float) -> str:
    if element not in STRAY_SOURCES:
        return "specimen"
    if element == "Si" and share >= SI_FLUORESCENCE_SHARE:
        return "specimen"
    return STRAY_SOURCES[element]


def _line_info(cols: _Columns, element: str, counts: NDArray, axis: EnergyAxis
               ) -> tuple[float, str, tuple[str, ...]]:  # fmt: skip
    ls = cols.lines.get(element, [])
    if not ls:
        return float("nan"), "", ()
    w = np.array([x[2] for x in ls])
    order = np.argsort(w)[::-1]
    used = tuple(ls[i][0] for i in order if w[i] >= 0.05 * w[order[0]])
    # strongest line in counts: where the element's fitted counts peak
    if counts is not None and np.any(counts > 0):
        e_peak = axis.energies[int(np.argmax(counts))]
        k = min(order[: max(len(used), 1)], key=lambda i: abs(ls[i][1] - e_peak))
    else:
        k = order[0]
    return ls[k][1], ls[k][0], used


def _region(counts: NDArray) -> NDArray:
    return counts >= 0.1 * counts.max() if counts.size and counts.max() > 0 else \
        np.zeros(counts.shape, bool)  # fmt: skip


def identify(
    spectrum: ArrayLike,
    axis: Any,
    beam_energy: float,
    *,
    detector: Detector | None = None,
    candidates: Sequence[str] | None = None,
    known: Sequence[str] = (),
    explained: ArrayLike | None = None,
    alpha: float = DEFAULT_ALPHA,
    max_elements: int = 30,
) -> Identification:
    """Find the elements whose lines a spectrum holds (forward selection, quasi-Poisson test).

    Parameters
    ----------
    spectrum
        Counts per channel (n,), e.g. the summed spectrum of a map over the fitted channels.
    axis
        The energy axis of ``spectrum`` (:class:`EnergyAxis` or ``(offset, scale, size)`` in
        keV); all channel centres > 0 keV. Use the calibrated axis when there is one: the
        test reads peaks at their tabulated energies.
    beam_energy
        E0 (keV).
    detector
        Width law and efficiency (default ``Detector()``); the calibrated one when known.
    candidates
        Elements to test (default :func:`candidate_elements`, C to U). Elements without a line
        on the axis are left out.
    known
        Elements already in the model: their families, derivatives and artefacts are part of
        the base model from the start and they are not tested.
    explained
        A fixed spectrum (n,) already explained, e.g. the summed spectrum of a fitted model;
        it enters with a free scale ≥ 0 (so a model check tests what that model leaves).
    alpha
        Family-wise false-detection probability per selection step (Bonferroni over the
        candidates; see the module docstring).
    max_elements
        Stop after this many selections.

    Returns
    -------
    Identification
        Evidence per candidate; ``.elements`` the elements found in selection order.
    """
    try:  # one BLAS thread: the matrices are small, and threads on a loaded machine cost more
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return _identify(spectrum, axis, beam_energy, detector, candidates, known, explained,
                         alpha, max_elements)  # fmt: skip
    with threadpool_limits(limits=1, user_api="blas"):
        return _identify(spectrum, axis, beam_energy, detector, candidates, known, explained,
                         alpha, max_elements)  # fmt: skip


def _identify(spectrum, axis, beam_energy, detector, candidates, known, explained, alpha,
              max_elements) -> Identification:  # fmt: skip
    import time

    t0 = time.perf_counter()
    ax = EnergyAxis.from_any(axis)
    y = np.asarray(spectrum, dtype=np.float64).reshape(-1)
    if y.size != ax.size:
        raise ValueError(f"spectrum has {y.size} channels, the axis {ax.size}")
    if not np.all(np.isfinite(y)) or np.any(y < 0):
        raise ValueError("spectrum must hold finite counts ≥ 0")
    det = Detector() if detector is None else detector
    known = tuple(symbol(e) for e in known)
    cands = candidate_elements() if candidates is None else [symbol(e) for e in candidates]
    cands = [e for e in dict.fromkeys(cands) if e not in known]
    cols = _columns(ax, float(beam_energy), list(dict.fromkeys([*known, *cands])), det)
    mu0 = None if explained is None else np.asarray(explained, dtype=np.float64).reshape(-1)
    if mu0 is not None and mu0.size != y.size:
        raise ValueError(f"explained has {mu0.size} channels, the spectrum {y.size}")
    state = _State(y, np.zeros_like(y), cols, ax, det, mu0)
    for e in known:
        if e in cols.family:
            state.add(e)
    state.fit()
    testable = _testable(cols, ax, det)
    untested = [e for e in cands if e in cols.elements and e not in testable]
    pool = [e for e in cands if e in testable]
    index = {e: i for i, e in enumerate(cols.elements)}
    threshold = detection_threshold(len(pool), alpha)
    n_first = len(pool)
    found: dict[str, tuple[float, float, float, int]] = {}
    last: dict[str, tuple[float, float, float, float]] = {}
    inconsistent: set[str] = set()
    step = 0
    near, ring = _neighbourhoods(cols, ax, det)
    high = {e: _high_family(cols, e) for e in cols.elements}
    while pool and step < max_elements:
        sel = [index[e] for e in pool]
        C = cols.tied[:, sel]
        d = _deviance_terms(y, state.mu)
        phi = _dispersion(d, C, near[:, sel], ring[:, sel], state.n_params)
        b, gain = _screen(y, state.mu, C)
        T = gain / phi
        for i, e in enumerate(pool):
            last[e] = (float(T[i]), float(gain[i]), float(phi[i]), float(b[i] * C[:, i].sum()))
        # the largest likelihood gains first (forward selection); the test is on T
        order = np.argsort(gain)[::-1]
        dev0 = float(d.sum())
        best, best_T, best_gain, tried = None, -np.inf, -np.inf, 0
        for i in order:
            if tried >= _N_REFIT:
                break
            if T[i] <= threshold:
                continue
            if not _consistent(y, state.mu, b[i], C[:, i], high[pool[i]]):
                last[pool[i]] = (float(T[i]), float(gain[i]), float(phi[i]), 0.0)
                inconsistent.add(pool[i])
                continue
            tried += 1
            g_exact = max(dev0 - state.trial(C[:, i]), 0.0)
            t_exact = g_exact / phi[i]
            last[pool[i]] = (t_exact, g_exact, float(phi[i]), last[pool[i]][3])
            if t_exact > threshold and g_exact > best_gain:
                best, best_T, best_gain = i, t_exact, g_exact
        if best is None or best_T <= threshold:
            break
        e = pool.pop(int(best))
        inconsistent.discard(e)
        step += 1
        found[e] = (best_T, best_gain, float(phi[best]), step)
        state.add(e)
        state.fit()
        threshold = detection_threshold(max(len(pool), 1), alpha)
    # evidence. Without an explained part (identification from scratch) each element's counts
    # come from one more fit with its whole line set tied at the tabulated ratios: the free line
    # groups of the selection let one element's weak line take an overlapping strong line of
    # another (Lu Mζ the counts of Mg Kα on the reference sample). On top of a fitted model
    # (the model check) the free groups stay, as the check's thresholds were measured with them
    if mu0 is None:
        listed = [e for e in (*known, *found) if e in cols.family]
        tied = _tied_counts(state, cols, listed)
        count = tied.__getitem__
    else:
        count = state.element_counts
    lines_total = 0.0
    counts_of = {}
    for e in found:
        counts_of[e] = count(e)
        lines_total += float(counts_of[e].sum())
    for e in known:
        if e in cols.family:
            lines_total += float(count(e).sum())
    evidence = []
    for e, (T_e, g_e, phi_e, st) in found.items():
        c = counts_of[e]
        reg = _region(c)
        frac = min(float(c[reg].sum() / max(y[reg].sum(), 1e-12)), 1.0)
        energy, line, used = _line_info(cols, e, c, ax)
        share = float(c.sum()) / max(lines_total, 1e-12)
        # selected earlier, but with whole line sets its lines are the others' (amplitude 0 in
        # the final tied fit): not present, rather than "present with 0 counts"
        kept = mu0 is not None or float(c.sum()) > 0
        evidence.append(Evidence(e, kept, float(c.sum()), frac, T_e, g_e, phi_e, energy, line,
                                 used, _source(e, share), st, share))  # fmt: skip
    rest = sorted((e for e in last if e not in found), key=lambda e: -last[e][0])
    for e in rest:
        T_e, g_e, phi_e, n_e = last[e]
        col = cols.tied[:, index[e]]
        c = col * (n_e / max(col.sum(), 1e-300))
        reg = _region(c)
        frac = min(float(c[reg].sum() / max(y[reg].sum(), 1e-12)), 1.0)
        energy, line, used = _line_info(cols, e, c, ax)
        evidence.append(Evidence(e, False, n_e, frac, T_e, g_e, phi_e, energy, line, used,
                                 _source(e, 0.0), 0, n_e / max(lines_total, 1e-12)))  # fmt: skip
    d = _deviance_terms(y, state.mu)
    p = state.n_params
    return Identification(
        evidence=evidence,
        threshold=detection_threshold(n_first, alpha),
        alpha=float(alpha),
        n_candidates=n_first,
        known=known,
        untested=tuple(untested),
        dispersion=float(d.sum() / max(y.size - p, 1)),
        seconds=time.perf_counter() - t0,
        fitted=state.mu.copy(),
    )
