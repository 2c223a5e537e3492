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
* for each element in the model with ≥ 2000 counts within 0.3 keV of one of its absorption
  edges on the axis, the continuum times its mass attenuation μ/ρ(E) (signed): the first-order
  absorption of the continuum in the specimen, a step at each edge that the smooth shape
  correction cannot follow (large in a bulk SEM specimen);
* the Si-escape peaks of the model's lines and their sum peaks (one column each), weighted by
  the lines' fitted counts (escape) or products of counts (sum) and rebuilt after each fit
  (amplitudes ≥ 0): at millions of counts these detector artefacts pass for another element's
  line, and their ratios follow the counts (a bulk specimen's absorption), not σ·ε.

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
amplitudes free, which gives the exact gain that is tested. The held gain is a lower bound of
the refitted one (the refit maximises over more amplitudes, from the same point), and a
candidate whose score (the log-likelihood's slope in its amplitude at b = 0, at the current
fit) is ≤ 0 has a held gain of exactly 0 (the log-likelihood is concave in b), so its Newton
steps are skipped (:data:`FAST_PATH`). A candidate that passes is
selected only if its other lines agree: its highest family shows at least half the counts its
column predicts when that is detectable, and so do its lines above the tested range when the
caller gives those channels (``beyond``; Br Lα at 1.48 keV with no Br Kα at 11.9 keV is not
taken for Al Kα's peak).

The false-alarm and detection figures measured on real and independent maps are in
``docs/validation.rst``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import chdtri  # χ² inverse survival (scipy.stats takes 0.3–1.3 s to import)

# one BLAS thread around the small products of the tests (the libraries looked up once per
# process, Ctrl-C kept during the look-up)
from esmpy_hs.nmf._blas import one_blas_thread
from esmpy_hs.physics._elements import symbol
from esmpy_hs.physics.calibration import _weighted_nnls
from esmpy_hs.physics.detector import Detector
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
#: below ``LOW_ENERGY_TOP_KEV`` (keV) the continuum shape correction of the listed elements'
#: test on one phase's pure pixels (:func:`_nuisance` with ``fine_low``) has knots every
#: ``LOW_ENERGY_KNOT_KEV`` as well (not the search for unlisted elements, whose findings on the
#: Bruker SEM file it moved from Ho to a warned Ta, nor the test on a map's sum, where it took
#: the N of espm's minor particles too): the window's and the dead layer's absorption
#: edges (C K 0.28, N K 0.40, O K 0.53 keV) and the noise peak's tail shape the efficiency
#: there on a finer scale than 1 keV, and a window that is not stated may be any of them
#: (espm's shipped efficiency rises to 0.2 keV with no edge: the matrix of its particles map
#: read 62.7 at.% N). None: the 1 keV knots alone, as before (docs/validation.rst, "Maps
#: espm's defaults make")
LOW_ENERGY_KNOT_KEV: float | None = 0.2
LOW_ENERGY_TOP_KEV = 1.0
_RESOLVED = 2000.0  # counts above which a peak's position/width or the continuum's shape is
# resolved well enough to need a correction column

#: The same tests with less work (issue #13; docs/validation.rst, "The same tests with less
#: work"): the Poisson fits on the nonzero row blocks of their matrix with each NNLS step
#: started from the previous step's support, the screen's Newton steps over the candidates with
#: a positive score only, the peaks and the lines' neighbourhoods in fewer passes, the testable
#: candidates and the nuisance columns' basis kept per axis, and (``identify(absent=False)``)
#: no evidence for the candidates not found; and since the fifth part (docs/validation.rst):
#: the candidates' columns from each element's line arrays kept across maps, the peaks over
#: the channels where erf is not yet ±1, the candidates' nonzero entries and dispersion
#: channels kept per candidate set, the highest families built when asked for, and the columns
#: kept by element set (not order). False: the path before it, for the same-process benchmark
#: and the comparison of both (``benchmarks/compare_model_check.py``).
FAST_PATH = True

#: With :data:`FAST_PATH`: each Poisson fit (:func:`_fit`) as one compiled call and each
#: weighted NNLS from normal equations (:func:`_gram_nnls`) compiled
#: (:mod:`esmpy_hs.physics._irls`): the same problems, solved to rounding (the sums in
#: another order; docs/validation.rst). False: the NumPy/SciPy steps.
COMPILED = True


def candidate_elements() -> list[str]:
    """The default candidates: C (Z = 6) to U (Z = 92) without the short-lived elements."""
    return list(_candidates())


@lru_cache(maxsize=1)
def _candidates() -> tuple[str, ...]:
    return tuple(e for e in (symbol(z) for z in range(6, 93)) if e not in _NOT_CANDIDATES)


@lru_cache(maxsize=256)
def detection_threshold(n_candidates: int, alpha: float = DEFAULT_ALPHA) -> float:
    """Threshold on ``T = 2ΔlogL/φ`` for ``n_candidates`` tests at family-wise level ``alpha``.

    One-sided (amplitude ≥ 0): ``P(T > t) = ½ P(χ²₁ > t) = α / n_candidates``.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    m = max(int(n_candidates), 1)
    return float(chdtri(1, min(2.0 * alpha / m, 1.0)))  # = scipy.stats.chi2.isf(q, df=1)


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
    lines: Mapping[str, list[tuple[str, float, float]]]  # element -> (name, keV, weight)
    #: line groups per element and artefact columns per set of elements, built once
    memo: dict[Any, Any] = field(default_factory=dict)


#: candidate columns by (axis, beam energy, elements, detector): a fit's check calls identify
#: once per phase, and refits of the same map have the same calibrated axis
_CACHE: dict[str, _Columns] = {}
_CACHE_SIZE = 8


def _columns(axis: EnergyAxis, beam_energy: float, elements: Sequence[str],
             detector: Detector) -> _Columns:  # fmt: skip
    """:func:`_build_columns`, the last few results kept."""
    import json

    # the same elements in another order are the same columns (every use looks them up by
    # name): a phase's check, with the map's findings moved to the front of the list, finds
    # the map's columns built
    names = sorted(elements) if FAST_PATH else list(elements)
    key = json.dumps([axis.to_dict(), float(beam_energy), names, detector.to_dict()],
                     sort_keys=True, default=str)  # fmt: skip
    if key in _CACHE:
        _CACHE[key] = _CACHE.pop(key)  # most recently used last
    else:
        while len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        for older in _CACHE.values():  # (the lines' erf values: the newest axis's only)
            older.memo.pop("line erf", None)
        _CACHE[key] = _build_columns(axis, beam_energy, elements, detector)
    return _CACHE[key]


def _peaks(edges: NDArray, centres: NDArray, fwhm: NDArray, weights: NDArray,
           column: NDArray, n_columns: int) -> NDArray:  # fmt: skip
    """Σ over peaks of ``weights`` × the unit-area Gaussian peak (channel integrals, as
    :func:`~esmpy_hs.physics.detector.peak_matrix`), each peak added to its ``column``:
    (n, n_columns). Only the channels within 9 σ of each centre are evaluated (8.4 σ with
    :data:`FAST_PATH`, :func:`_peaks_fast`): beyond them erf is exactly ±1 in double
    precision, so each peak is the same as peak_matrix's column while the cost follows the
    peaks' widths rather than the axis length."""
    from scipy.special import erf

    from esmpy_hs.physics.detector import _FWHM_TO_SIGMA

    n = edges.size - 1
    out = np.zeros(n * n_columns)
    if centres.size == 0:
        return out.reshape(n, n_columns)
    sig = np.asarray(fwhm, dtype=np.float64) * _FWHM_TO_SIGMA
    if FAST_PATH:
        return _peaks_fast(edges, centres, sig, weights, column, n_columns)
    lo = np.clip(np.searchsorted(edges, centres - 9.0 * sig) - 1, 0, n)
    hi = np.clip(np.searchsorted(edges, centres + 9.0 * sig), 0, n)
    m = hi - lo + 1  # edges lo..hi of each peak
    pk = np.repeat(np.arange(centres.size), m)
    first = np.repeat(np.cumsum(m) - m, m)
    idx = np.arange(int(m.sum())) - first + lo[pk]
    cdf = 0.5 * erf((edges[idx] - centres[pk]) / (np.sqrt(2.0) * sig[pk]))
    inner = np.ones(cdf.size, dtype=bool)
    inner[np.cumsum(m) - m] = False  # a channel lies between an edge and the one before
    val = (cdf[1:] - cdf[:-1])[inner[1:]] * weights[pk[1:][inner[1:]]]
    ch = idx[1:][inner[1:]] - 1
    # the sums by (channel, column) in input order, as np.add.at would (bincount is ~10 × faster)
    out += np.bincount(ch * n_columns + column[pk[1:][inner[1:]]], weights=val,
                       minlength=out.size)
    return out.reshape(n, n_columns)


def _unique_erfs(edges: NDArray, centres: NDArray, sig: NDArray, lo: NDArray,
                 m: NDArray) -> tuple[NDArray, NDArray]:  # fmt: skip
    """erf of the peaks' edge arguments, evaluated once per (centre, σ): ``(x, pos)``, peak
    p's ``m_p`` values at ``x[pos_p:pos_p + m_p]`` (its edges from ``lo_p``), as
    :func:`esmpy_hs.physics._irls.peak_sums_at` reads them. The values do not depend on which
    peak of a (centre, σ) they were computed for, so the sums are those of one erf per peak."""
    from scipy.special import erf

    from esmpy_hs.physics import _irls

    order = np.lexsort((sig, centres))
    cs, ss = centres[order], sig[order]
    new = np.ones(cs.size, dtype=bool)
    new[1:] = (cs[1:] != cs[:-1]) | (ss[1:] != ss[:-1])
    first = order[new]  # one peak of each (centre, σ)
    which = np.empty(cs.size, dtype=np.intp)
    which[order] = np.cumsum(new) - 1  # each peak's representative, in sorted order
    x = _irls.peak_arguments(np.ascontiguousarray(edges, dtype=np.float64),
                             np.ascontiguousarray(centres[first], dtype=np.float64),
                             np.ascontiguousarray(sig[first], dtype=np.float64),
                             lo[first], m[first])  # fmt: skip
    erf(x, out=x)
    return x, (np.cumsum(m[first]) - m[first])[which].astype(np.int64)


def _peaks_by_column(edges: NDArray, centres: NDArray, fwhm: NDArray, weights: NDArray,
                     column: NDArray, n_columns: int
                     ) -> tuple[NDArray, NDArray, tuple]:  # fmt: skip
    """:func:`_peaks` (compiled) as the transpose of a (n_columns, n) array — each column's
    channels contiguous, so that each peak adds to consecutive memory — and the columns' sums
    (those of ``G.sum(axis=0)``): the same numbers, a view in Fortran order; and each peak's
    erf values with its first edge and count and where they start (``(erfs, lo, m, pos)``;
    peaks of the same centre and width share theirs)."""

    from esmpy_hs.physics import _irls
    from esmpy_hs.physics.detector import _FWHM_TO_SIGMA

    n = edges.size - 1
    sig = np.asarray(fwhm, dtype=np.float64) * _FWHM_TO_SIGMA
    lo = np.clip(np.searchsorted(edges, centres - _SATURATED * sig) - 1, 0, n)
    hi = np.clip(np.searchsorted(edges, centres + _SATURATED * sig), 0, n)
    m = hi - lo + 1
    x, pos = _unique_erfs(edges, centres, sig, lo, m)  # lines of the same energy: one in eight
    Gt, sums = _irls.peak_sums_columns(x, pos, lo, m,
                                       np.ascontiguousarray(weights, dtype=np.float64),
                                       np.ascontiguousarray(column, dtype=np.int64), n,
                                       int(n_columns))  # fmt: skip
    return Gt.T, sums, (x, lo, m, pos)


#: erf(x) is exactly ±1 in double precision for |x| ≥ 5.93: a peak's channel integrals are
#: evaluated within ±_SATURATED σ of its centre only (5.94 √2), the same numbers as over ±9 σ
_SATURATED = 8.4


def _peaks_fast(edges: NDArray, centres: NDArray, sig: NDArray, weights: NDArray,
                column: NDArray, n_columns: int) -> NDArray:  # fmt: skip
    """:func:`_peaks` (σ given) in fewer passes: each peak's window ends where erf is exactly
    ±1 (the channels beyond would add exact zeros), the difference across two peaks' windows
    is weighted 0 instead of masked out, and the arrays are updated in place. The same sums
    in the same order: bit-identical columns."""
    from scipy.special import erf

    n = edges.size - 1
    lo = np.clip(np.searchsorted(edges, centres - _SATURATED * sig) - 1, 0, n)
    hi = np.clip(np.searchsorted(edges, centres + _SATURATED * sig), 0, n)
    m = hi - lo + 1  # edges lo..hi of each peak
    if COMPILED and centres.size >= 32:  # peaks of the same centre and width: erf once
        from esmpy_hs.physics import _irls

        x, pos = _unique_erfs(edges, centres, sig, lo, m)
        return _irls.peak_sums_at(x, pos, lo, m, np.ascontiguousarray(weights, dtype=np.float64),
                                  np.ascontiguousarray(column, dtype=np.int64), n,
                                  int(n_columns)).reshape(n, n_columns)  # fmt: skip
    if COMPILED:  # the same arguments, erf values and sums without the index arrays
        from esmpy_hs.physics import _irls

        x = _irls.peak_arguments(np.ascontiguousarray(edges, dtype=np.float64),
                                 np.ascontiguousarray(centres, dtype=np.float64),
                                 np.ascontiguousarray(sig, dtype=np.float64), lo, m)  # fmt: skip
        erf(x, out=x)
        return _irls.peak_sums_at(x, (np.cumsum(m) - m).astype(np.int64), lo, m,
                                  np.ascontiguousarray(weights, dtype=np.float64),
                                  np.ascontiguousarray(column, dtype=np.int64), n,
                                  int(n_columns)).reshape(n, n_columns)  # fmt: skip
    starts = np.cumsum(m) - m
    pk = np.repeat(np.arange(centres.size), m)
    idx = np.arange(int(m[-1] + starts[-1]))
    idx += np.repeat(lo - starts, m)
    cdf = edges[idx]
    cdf -= centres[pk]
    cdf /= (np.sqrt(2.0) * sig)[pk]
    erf(cdf, out=cdf)
    cdf *= 0.5
    val = cdf[1:] - cdf[:-1]  # channel idx lies between edges idx and idx + 1
    w = weights[pk[:-1]]
    w[starts[1:] - 1] = 0.0  # the difference from one peak's last edge to the next one's first
    val *= w
    keys = idx[:-1] * n_columns
    keys += column[pk[:-1]]
    keys[starts[1:] - 1] = 0  # (weight 0: adds an exact 0 to a valid bin)
    return np.bincount(keys, weights=val, minlength=n * n_columns).reshape(n, n_columns)


_EFFICIENCY: dict[str, dict[float, float]] = {}


def _efficiency(detector: Detector, energies: NDArray) -> NDArray:
    """``detector.efficiency(energies)``, each energy's value kept for the next maps (the
    candidates' line energies are the same for every map, and the efficiency does not depend
    on the width law a calibration changes)."""
    import json

    d = detector.to_dict()
    fields = ("window", "crystal_thickness", "dead_layer", "grid_open_fraction",
              "efficiency_curve")  # fmt: skip
    key = json.dumps([d[k] for k in fields], default=str)
    memo = _EFFICIENCY.setdefault(key, {})
    if len(_EFFICIENCY) > 4 or len(memo) > 200_000:
        _EFFICIENCY.clear()
        memo = _EFFICIENCY.setdefault(key, {})
    e = np.asarray(energies, dtype=np.float64).reshape(-1)
    new = np.array(sorted({float(x) for x in e} - memo.keys()))
    if new.size:
        memo.update(zip(new.tolist(), detector.efficiency(new).tolist(), strict=True))
    return np.array([memo[float(x)] for x in e])


def _build_columns(axis: EnergyAxis, beam_energy: float, elements: Sequence[str],
                   detector: Detector) -> _Columns:  # fmt: skip
    """The columns of :func:`~esmpy_hs.physics.build_G` (thin specimen, no absorption, each
    element split by family) for all candidates, assembled line by line over each peak's
    channels only (the dense build costs about as much as the whole check)."""
    from esmpy_hs.physics._columns import BuildOptions, column_layout
    from esmpy_hs.physics.continuum import continuum_basis

    e0 = float(beam_energy)
    energy_range = (float(axis.edges[0]), float(min(axis.edges[-1], e0)))
    if FAST_PATH:
        return _build_columns_fast(axis, e0, elements, detector, energy_range)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # elements without a line on the axis are dropped
        layout = column_layout(list(elements), [], {e: None for e in elements}, e0,
                               energy_range, detector, BuildOptions())  # fmt: skip
    line_e = np.array([x.energy_keV for x in layout.lines], dtype=np.float64)
    eff = _efficiency(detector, line_e)
    base = np.array([x.cross_section for x in layout.lines], dtype=np.float64) * eff
    G = _peaks(axis.edges, line_e, detector.fwhm(line_e) if line_e.size else line_e, base,
               np.array(layout.line_columns, dtype=np.intp), layout.n_columns)  # fmt: skip
    kinds = np.array(layout.kinds)
    elem = kinds == "element"
    sums = G.sum(axis=0)
    if np.any(elem) and sums[elem].mean() > 0:
        G = G / sums[elem].mean()  # build_G's shared scale of the element columns
    cont = continuum_basis(axis.energies, e0) * _efficiency(detector, axis.energies)[:, None]
    cont = cont / np.where(cont.sum(axis=0) > 0, cont.sum(axis=0), 1.0)
    col_el = np.array([str(c) for c in layout.column_elements], dtype=object)
    names, family, tied = [], {}, []
    for e in layout.elements:
        F = G[:, np.nonzero((col_el == e) & elem)[0]]
        if not F.sum() > 0:
            continue
        names.append(e)
        family[e] = F
        tied.append(F.sum(axis=1))  # all families with their tabulated ratios: one column
    lines: dict[str, list[tuple[str, float, float]]] = {e: [] for e in names}
    for x, w in zip(layout.lines, base, strict=True):
        if x.element in lines:
            lines[x.element].append((f"{x.element} {x.siegbahn or x.iupac}", float(x.energy_keV),
                                     float(w)))  # fmt: skip
    T = np.stack(tied, axis=1) if tied else np.zeros((axis.size, 0))
    return _Columns(names, T, family, cont, lines)


#: the families in :func:`_element_lines`' codes
_FAMILY_CODE = {"K": 0, "L": 1, "M": 2}


@lru_cache(maxsize=512)
def _element_lines(element: str, beam_energy: float) -> tuple[NDArray, NDArray, NDArray,
                                                             tuple[str, ...]]:  # fmt: skip
    """All emission lines of ``element`` at E0 (:func:`~esmpy_hs.physics.lines.emission_lines`
    without an energy window, vacancy transfer on as in ``BuildOptions``) as arrays: energies
    (keV), cross sections (barn), family codes (K 0, L 1, M 2) and names ("Fe Ka1"). They do
    not depend on the axis: kept for the next maps."""
    from esmpy_hs.physics._elements import atomic_number
    from esmpy_hs.physics.lines import _all_lines

    ls = _all_lines(atomic_number(element), float(beam_energy), True)
    return (np.array([x.energy_keV for x in ls], dtype=np.float64),
            np.array([x.cross_section for x in ls], dtype=np.float64),
            np.array([_FAMILY_CODE[x.family] for x in ls], dtype=np.intp),
            tuple(f"{x.element} {x.siegbahn or x.iupac}" for x in ls))  # fmt: skip


#: σ·ε of each element's lines (:func:`_element_lines`) per detector efficiency and E0
_LINE_WEIGHTS: dict[tuple[str, str, float], NDArray] = {}


def _efficiency_key(detector: Detector) -> str:
    """What of ``detector`` the efficiency depends on (not its width law), as a key."""
    import json

    d = detector.to_dict()
    fields = ("window", "crystal_thickness", "dead_layer", "grid_open_fraction",
              "efficiency_curve")  # fmt: skip
    return json.dumps([d[k] for k in fields], default=str)


def _line_weights(detector: Detector, element: str, beam_energy: float,
                  key: str | None = None) -> NDArray:  # fmt: skip
    """σ·ε of all of ``element``'s lines (:func:`_element_lines` order), kept per detector
    efficiency (not its width law, which a calibration changes) and E0. ``key``: the
    detector's :func:`_efficiency_key` when the caller has it."""
    key = (_efficiency_key(detector) if key is None else key, element, float(beam_energy))
    if key not in _LINE_WEIGHTS:
        if len(_LINE_WEIGHTS) > 2048:
            _LINE_WEIGHTS.clear()
        E, sigma, _, _ = _element_lines(element, float(beam_energy))
        _LINE_WEIGHTS[key] = sigma * _efficiency(detector, E)
    return _LINE_WEIGHTS[key]


#: :func:`_build_columns_fast` selects the lines in the axis's window from all elements' lines
#: joined (:func:`_window_lines`, kept per detector efficiency, E0 and element list) in a few
#: array operations; False: element by element (the same lines, columns and order)
LINE_TABLE = True

#: all lines of a list of elements joined (:func:`_joined_lines`), by detector efficiency, E0
#: and list
_JOINED: dict[tuple, tuple] = {}


def _joined_lines(detector: Detector, eff_key: str, e0: float, elements: tuple[str, ...]
                  ) -> tuple:  # fmt: skip
    """The lines of ``elements`` (those with lines at E0, in order; :func:`_element_lines`
    and their σ·ε, :func:`_line_weights`) joined: ``(names, E, w, family, owner, starts,
    line_names)``. They do not depend on the axis: kept for the next maps."""
    key = (eff_key, float(e0), elements)
    if key not in _JOINED:
        if len(_JOINED) >= 8:
            _JOINED.pop(next(iter(_JOINED)))
        names, E, w, fam, line_names = [], [], [], [], []
        for el in elements:
            E_el, _, fam_el, names_el = _element_lines(el, e0)
            if not E_el.size:
                continue  # (no line at E0: never in the window)
            names.append(el)
            E.append(E_el)
            w.append(_line_weights(detector, el, e0, eff_key))
            fam.append(fam_el)
            line_names.append(names_el)
        counts = np.array([x.size for x in E], dtype=np.intp)
        if not names:  # (nothing joined)
            E, w, fam = [np.zeros(0)], [np.zeros(0)], [np.zeros(0, dtype=np.intp)]
        _JOINED[key] = (names, np.concatenate(E), np.concatenate(w), np.concatenate(fam),
                        np.repeat(np.arange(len(names), dtype=np.intp), counts),
                        np.cumsum(counts) - counts, line_names)  # fmt: skip
    return _JOINED[key]


def _window_lines(detector: Detector, eff_key: str, e0: float, elements: Sequence[str],
                  lo: float, hi: float) -> tuple[list, list, int, tuple | None]:  # fmt: skip
    """:func:`_build_columns_fast`'s loop over the elements in array operations on their
    joined lines (:func:`_joined_lines`): each element with a line in ``lo ≤ E ≤ hi`` gets one
    column for its highest family's lines there (K, else L, else M) and a second for the
    others when it has any; the same ``kept`` and ``parts`` (views of the joined arrays),
    the number of columns, and the lines' energies, weights and columns joined."""
    names, E, w, fam, owner, starts, line_names = _joined_lines(
        detector, eff_key, e0, tuple(dict.fromkeys(elements)))
    if not names:
        return [], [], 0, None
    ne = len(names)
    inside = (lo <= E) & (E <= hi)
    n_in = np.bincount(owner[inside], minlength=ne)
    fmin = np.minimum.reduceat(np.where(inside, fam, 3), starts)  # (codes 0-2)
    low = inside & (fam != fmin[owner])  # lines of a lower family than the highest one
    two = np.bincount(owner[low], minlength=ne) > 0
    n_here = np.where(n_in > 0, 1 + two, 0)
    first = np.cumsum(n_here) - n_here
    line_e, base = E[inside], w[inside]
    columns = (first[owner] + low)[inside].astype(np.intp)
    at = np.cumsum(n_in) - n_in  # each element's first line in the joined window
    ends = np.append(starts[1:], E.size)
    kept, parts = [], []
    for k in np.nonzero(n_in)[0].tolist():
        a, b = int(at[k]), int(at[k] + n_in[k])
        kept.append((names[k], int(first[k]), int(n_here[k]), inside[starts[k]: ends[k]],
                     line_names[k]))  # fmt: skip
        parts.append((line_e[a:b], base[a:b], columns[a:b]))
    return kept, parts, int(n_here.sum()), (line_e, base, columns)


def _build_columns_fast(axis: EnergyAxis, e0: float, elements: Sequence[str],
                        detector: Detector, energy_range: tuple[float, float]
                        ) -> _Columns:  # fmt: skip
    """:func:`_build_columns` from each element's line arrays (:func:`_element_lines`, kept
    across maps) instead of a :func:`~esmpy_hs.physics._columns.column_layout` per axis: the
    same lines in the window (``lo ≤ E ≤ hi``), the same split (the lines of the highest family
    present in one column, the others in a second when there are any), the same columns."""
    from esmpy_hs.physics.continuum import continuum_basis

    lo, hi = energy_range
    eff_key = _efficiency_key(detector)  # once, not per element
    if LINE_TABLE:  # all elements' lines at once (the same lines, columns and order)
        kept, parts, n_col, joined = _window_lines(detector, eff_key, e0, elements, lo, hi)
    else:
        kept, parts, n_col, joined = [], [], 0, None
        for el in dict.fromkeys(elements):
            E, _, fam, names = _element_lines(el, e0)
            inside = (lo <= E) & (E <= hi)
            if not inside.any():
                continue  # no line on the axis: dropped, as column_layout does
            f = fam[inside]
            high = f == f.min()
            col = np.where(high, n_col, n_col + 1) if not high.all() else np.full(f.size, n_col)
            n_here = 1 if high.all() else 2
            kept.append((el, n_col, n_here, inside, names))
            parts.append((E[inside], _line_weights(detector, el, e0, eff_key)[inside], col))
            n_col += n_here
    sums = erfs = None
    if parts:
        if joined is not None:
            line_e, base, columns = joined
        else:
            line_e = np.concatenate([p[0] for p in parts])
            base = np.concatenate([p[1] for p in parts])
            columns = np.concatenate([p[2] for p in parts]).astype(np.intp)
        if COMPILED:  # the same columns, stored column by column, and their sums
            G, sums, erfs = _peaks_by_column(axis.edges, line_e, detector.fwhm(line_e), base,
                                             columns, n_col)  # fmt: skip
        else:
            G = _peaks(axis.edges, line_e, detector.fwhm(line_e), base, columns, n_col)
    else:
        G = np.zeros((axis.size, 0))
    if sums is None:
        sums = G.sum(axis=0)
    if n_col and sums.mean() > 0:
        G /= sums.mean()  # build_G's shared scale of the element columns (in place)
    # (the efficiency at this axis's channels directly: a new axis's energies are all new to
    # the memo of _efficiency, the same values)
    cont = continuum_basis(axis.energies, e0) * detector.efficiency(axis.energies)[:, None]
    cont = cont / np.where(cont.sum(axis=0) > 0, cont.sum(axis=0), 1.0)
    if COMPILED:
        out = _assemble(G, kept, parts, cont, axis.size)
        if erfs is not None:  # each line's erf values, for its element's line groups
            first = np.cumsum([0] + [p[0].size for p in parts[:-1]])
            x, lo_, m_, pos = erfs
            out.memo["line erf"] = (x, lo_, m_, pos,
                                    {k[0]: int(f) for k, f in zip(kept, first, strict=True)})
        return out
    names_out, family, tied, lines = [], {}, [], {}
    for (el, c0, n_here, inside, names), (E, w, _) in zip(kept, parts, strict=True):
        F = G[:, c0: c0 + n_here].copy()
        if not F.sum() > 0:
            continue
        names_out.append(el)
        family[el] = F
        tied.append(F.sum(axis=1))  # all families with their tabulated ratios: one column
        lines[el] = list(zip([names[i] for i in np.nonzero(inside)[0]], E.tolist(), w.tolist(),
                             strict=True))  # fmt: skip
    T = np.stack(tied, axis=1) if tied else np.zeros((axis.size, 0))
    return _Columns(names_out, T, family, cont, lines)


class _Families(dict):
    """Each element's family columns (n, 1 or 2), copied out of the candidates' shared matrix
    when first asked for (the tests ask for a few of the ≈ 75 candidates)."""

    def __init__(self, G: NDArray, where: dict[str, tuple[int, int]]) -> None:
        super().__init__()
        self._G, self._where = G, where

    def __contains__(self, element: object) -> bool:
        return element in self._where

    def __missing__(self, element: str) -> NDArray:
        c0, n = self._where[element]  # KeyError for an element without columns
        F = self[element] = self._G[:, c0: c0 + n].copy()
        return F


class _Lines(Mapping):
    """Each element's ``(name, keV, weight)`` lines (:attr:`_Columns.lines`), the list made
    when first asked for from the arrays the columns were built from (the tests read the
    lists of a few of the ≈ 75 candidates, the arrays of the others)."""

    def __init__(self, source: dict[str, tuple]) -> None:
        self._source, self._made = source, {}

    def __getitem__(self, element: str) -> list[tuple[str, float, float]]:
        if element not in self._made:
            inside, names, E, w = self._source[element]  # KeyError for an unknown element
            self._made[element] = list(zip([names[i] for i in np.nonzero(inside)[0]],
                                           E.tolist(), w.tolist(), strict=True))  # fmt: skip
        return self._made[element]

    def __contains__(self, element: object) -> bool:
        return element in self._source

    def __iter__(self):
        return iter(self._source)

    def __len__(self) -> int:
        return len(self._source)


def _assemble(G: NDArray, kept: list, parts: list, cont: NDArray, n: int) -> _Columns:
    """:func:`_build_columns_fast`'s last part over all candidates at once: the same columns.
    The peaks are ≥ 0, so a family's ``F.sum() > 0`` is "some entry > 0"; a tied column is
    the family's one column, or its two added (``F.sum(axis=1)`` of two columns is that one
    addition); the families are copied when asked for (:class:`_Families`), the lines' lists
    made when asked for (:class:`_Lines`; their energies and weights kept as arrays,
    :func:`_line_arrays`)."""
    positive = (G > 0).any(axis=0)
    use = [k for k in range(len(kept))
           if positive[kept[k][1]] or (kept[k][2] == 2 and positive[kept[k][1] + 1])]  # fmt: skip
    if not use:
        return _Columns([], np.zeros((n, 0)), _Families(G, {}), cont, {})
    first = np.array([kept[k][1] for k in use], dtype=np.intp)
    two = np.array([kept[k][2] == 2 for k in use])
    if G.flags.f_contiguous and G.shape[1] > 1:  # (_peaks_by_column's layout)
        from esmpy_hs.physics import _irls

        T = _irls.tied_columns(G.T, first.astype(np.int64), two)
    else:
        T = np.ascontiguousarray(G[:, first])
        T[:, two] += G[:, first[two] + 1]  # all families with their tabulated ratios: one column
    names_out = [kept[k][0] for k in use]
    where = {kept[k][0]: (kept[k][1], kept[k][2]) for k in use}
    source = {kept[k][0]: (kept[k][3], kept[k][4], parts[k][0], parts[k][1]) for k in use}
    out = _Columns(names_out, T, _Families(G, where), cont, _Lines(source))
    out.memo["line_arrays"] = {el: (v[2], v[3]) for el, v in source.items()}
    return out


def _main_lines(cols: _Columns) -> tuple[NDArray, NDArray]:
    """The main lines (≥ 10 % of the strongest line's weight) of all candidates, in the
    order of ``cols.elements`` and of each one's lines: their energies (keV) and the index
    of their element; kept in ``cols.memo`` (the same lines as :func:`_main_line_energies`
    of each element, selected over all elements at once)."""
    if "main lines" not in cols.memo:
        parts = [(j, *_line_arrays(cols, el)) for j, el in enumerate(cols.elements)]
        parts = [p for p in parts if p[1].size]
        if not parts:
            cols.memo["main lines"] = (np.zeros(0), np.zeros(0, dtype=np.intp))
        else:
            E = np.concatenate([p[1] for p in parts])
            w = np.concatenate([p[2] for p in parts])
            owner = np.concatenate([np.full(p[1].size, p[0], dtype=np.intp) for p in parts])
            starts = np.cumsum([0] + [p[1].size for p in parts[:-1]])
            top = np.repeat(np.maximum.reduceat(w, starts), [p[1].size for p in parts])
            main = w >= 0.1 * top
            cols.memo["main lines"] = (E[main], owner[main])
    return cols.memo["main lines"]


def _line_arrays(cols: _Columns, element: str) -> tuple[NDArray, NDArray]:
    """The energies (keV) and weights of ``element``'s lines in ``cols.lines`` (the same
    numbers, as arrays), kept in ``cols.memo``."""
    memo = cols.memo.setdefault("line_arrays", {})
    if element not in memo:
        ls = cols.lines[element]
        memo[element] = (np.array([x[1] for x in ls], dtype=np.float64),
                         np.array([x[2] for x in ls], dtype=np.float64))  # fmt: skip
    return memo[element]


def _line_groups(axis: EnergyAxis, detector: Detector, energies: NDArray, weights: NDArray
                 ) -> tuple[NDArray, NDArray, NDArray]:  # fmt: skip
    """One column per group of an element's lines (lines closer than 1 FWHM share a group),
    each weighted by σ·ε within its group, and which groups hold ≥ 2 % of the element's weight
    (those get derivative columns). Once an element is in the model, the ratios between its
    groups are free: tabulated ratios within a family (Mζ/Mα, Lβ/Lα) and the specimen's
    absorption are known to tens of per cent only, and their mismatch must not be read as
    another element's line. ``energies`` (keV) and ``weights``: the element's lines
    (:func:`_line_arrays`); those inside the axis are taken in order of energy (a stable
    sort: lines of the same energy in their given order)."""
    e_lo, e_hi = float(axis.edges[0]), float(axis.edges[-1])
    inside = (e_lo < energies) & (energies < e_hi)
    if not inside.any():
        return np.zeros((axis.size, 0)), np.zeros(0, dtype=bool), np.zeros((0, 3))
    E, w = energies[inside], weights[inside]
    order = np.argsort(E, kind="stable")
    E, w = E[order], w[order]
    fw = detector.fwhm(E)
    group = np.concatenate([[0], np.cumsum(np.diff(E) > fw[1:])])
    n_g = int(group[-1]) + 1
    cols = _peaks(axis.edges, E, fw, w, group, n_g)
    weight = np.bincount(group, weights=w, minlength=n_g)
    keep = cols.sum(axis=0) > 0
    new_index = np.cumsum(keep) - 1
    # each line: energy, weight, and its column (-1 if that column is empty)
    line_table = np.stack([E, w, np.where(keep[group], new_index[group], -1)], axis=1)
    return cols[:, keep], (weight >= 0.02 * weight.sum())[keep], line_table


def _prepare_known(cols: _Columns, axis: EnergyAxis, detector: Detector,
                   elements: Sequence[str]) -> None:
    """The line groups (:func:`_line_groups`) and absorption-edge columns (:func:`_edge_column`)
    of ``elements`` that ``cols.memo`` does not hold yet, built together: all their lines' peaks
    in one pass (each group's column sums its own lines in the same order as alone: the same
    columns) and μ/ρ of all of them in one call (the same values). :meth:`_State.add` then
    finds them built."""
    from esmpy_hs.physics._elements import atomic_number
    from esmpy_hs.physics.attenuation import elements_mass_attenuation

    memo = cols.memo
    e_lo, e_hi = float(axis.edges[0]), float(axis.edges[-1])
    todo = [e for e in dict.fromkeys(elements) if ("groups", e) not in memo]
    erfs = memo.get("line erf")
    parts = []
    for el in todo:
        energies, weights = _line_arrays(cols, el)
        inside = (e_lo < energies) & (energies < e_hi)
        if not inside.any():
            memo[("groups", el)] = _line_groups(axis, detector, energies, weights)
            continue
        index = np.nonzero(inside)[0]
        E, w = energies[inside], weights[inside]
        order = np.argsort(E, kind="stable")
        E, w, index = E[order], w[order], index[order]
        fw = detector.fwhm(E)
        group = np.concatenate([[0], np.cumsum(np.diff(E) > fw[1:])])
        parts.append((el, E, w, fw, group, int(group[-1]) + 1, index))
    if parts:
        first = np.cumsum([0] + [p[5] for p in parts])
        column = np.concatenate([p[4] + f for p, f in zip(parts, first, strict=False)])
        weight = np.concatenate([p[2] for p in parts])
        if (erfs is not None and COMPILED
                and all(p[0] in erfs[4] for p in parts)):  # fmt: skip
            # the peaks of these same lines on this axis were computed with the candidates'
            # columns: their erf values taken from there (the same values, the same sums)
            from esmpy_hs.physics import _irls

            x, lo_all, m_all, pos_all, start = erfs
            line = np.concatenate([start[p[0]] + p[6] for p in parts])
            n_g = int(first[-1])
            every = _irls.peak_sums_at(x, pos_all[line], lo_all[line], m_all[line], weight,
                                       column.astype(np.int64), axis.size,
                                       n_g).reshape(axis.size, n_g)  # fmt: skip
        else:
            every = _peaks(axis.edges, np.concatenate([p[1] for p in parts]),
                           np.concatenate([p[3] for p in parts]), weight, column,
                           int(first[-1]))  # fmt: skip
        for (el, E, w, _, group, n_g, _), f in zip(parts, first, strict=False):
            # the rest as in _line_groups
            g_cols = np.ascontiguousarray(every[:, f: f + n_g])
            weight = np.bincount(group, weights=w, minlength=n_g)
            keep = g_cols.sum(axis=0) > 0
            new_index = np.cumsum(keep) - 1
            line_table = np.stack([E, w, np.where(keep[group], new_index[group], -1)], axis=1)
            memo[("groups", el)] = (g_cols[:, keep], (weight >= 0.02 * weight.sum())[keep],
                                    line_table)  # fmt: skip
    todo = [e for e in dict.fromkeys(elements) if ("edges", e) not in memo]
    if todo:
        rows = _handed_attenuation(axis, todo)  # (the fit's, at these channels)
        rest = [e for e in todo if e not in rows]
        if rest:
            mu = elements_mass_attenuation([atomic_number(e) for e in rest], axis.energies)
            rows.update(zip(rest, mu, strict=True))
        if COMPILED and EDGES_TOGETHER:
            memo.update(zip([("edges", el) for el in todo],
                            _edge_columns(axis, cols.continuum, [rows[el] for el in todo]),
                            strict=True))  # fmt: skip
        else:
            for el in todo:
                memo[("edges", el)] = _edge_column(axis, cols.continuum, el, rows[el])


#: :func:`_prepare_known`'s edge columns of all its elements in one pass
#: (:func:`_edge_columns`); False: element by element (the same columns)
EDGES_TOGETHER = True


def _edge_columns(axis: EnergyAxis, continuum: NDArray, mu: Sequence[NDArray]
                  ) -> list[tuple[NDArray | None, NDArray]]:  # fmt: skip
    """:func:`_edge_column` of several elements, their μ/ρ at the channels given (``mu``, one
    row each): the same comparisons, products and quotients on all rows at once, the
    channels near each edge marked by a compiled loop (the same comparisons as
    :func:`_edge_column`'s)."""
    from esmpy_hs.physics import _irls

    if not len(mu):
        return []
    e = axis.energies
    M = np.stack([np.asarray(m, dtype=np.float64) for m in mu])
    jump = M[:, 1:] > 1.2 * M[:, :-1]  # an edge: μ rises by > 20 % in one channel
    near = _irls.edge_channels(np.ascontiguousarray(e, dtype=np.float64), jump, 0.3, 0.31)
    col = continuum.sum(axis=1) * M
    col /= np.maximum(col.max(axis=1), 1e-300)[:, None]
    has = jump.any(axis=1)
    return [(col[k] if has[k] else None, near[k]) for k in range(M.shape[0])]


#: μ/ρ at an axis's channel energies handed over by the caller (:func:`hand_attenuation`):
#: ``(energies, {element: row})``, the last one handed
_HANDED_MU: dict[str, tuple[NDArray, dict[str, NDArray]]] = {}


def hand_attenuation(energies: ArrayLike | None,
                     table: Mapping[str, ArrayLike] | None = None) -> None:
    """Hand the check μ/ρ (cm²/g) of elements at an axis's channel energies (keV) that the
    caller computed already with :func:`~esmpy_hs.physics.attenuation.element_mass_attenuation`
    (the fit's absorption tables): the edge columns of :func:`_prepare_known` take an
    element's row from here when the axis has exactly these energies, instead of computing
    the same values again. ``None`` forgets what was handed."""
    _HANDED_MU.clear()
    if energies is not None and table:
        _HANDED_MU["last"] = (np.array(energies, dtype=np.float64).reshape(-1),
                              {symbol(k): np.ascontiguousarray(v, dtype=np.float64)
                               for k, v in table.items()})  # fmt: skip


def _handed_attenuation(axis: EnergyAxis, elements: Sequence[str]) -> dict[str, NDArray]:
    """The rows of ``elements`` handed over for this axis's channels (:func:`hand_attenuation`)."""
    kept = _HANDED_MU.get("last")
    if kept is None or not HANDED_TABLES:
        return {}
    energies, table = kept
    e = axis.energies
    if energies.shape != e.shape or not np.array_equal(energies, e):
        return {}
    return {el: table[el] for el in elements if el in table and table[el].shape == e.shape}


#: the edge columns take μ/ρ handed over by the caller (:func:`hand_attenuation`); False:
#: always computed here (the same values)
HANDED_TABLES = True


def _derivatives(F: NDArray, scale: float) -> NDArray:
    """First and second derivative along the channels of each column of ``F`` (n, f)."""
    if FAST_PATH and COMPILED and F.shape[0] >= 3:  # the same operations, compiled
        from esmpy_hs.physics import _irls

        return _irls.derivatives(np.ascontiguousarray(F, dtype=np.float64), float(scale))
    d1 = np.gradient(F, axis=0) / scale
    d2 = np.gradient(d1, axis=0) / scale
    return np.concatenate([d1, d2], axis=1)


def _peak_regions(memo: dict, key: Any, F: NDArray) -> NDArray:
    """Each column's peak region (channels ≥ 10 % of its maximum) of ``F`` (n, f), as
    ``(f, n)`` 0/1 values to sum counts with; kept in ``memo`` under ``key`` (a
    :class:`_Columns`' memo; the same array as computed afresh) with :data:`FAST_PATH`."""
    if not FAST_PATH:
        return (F / np.maximum(F.max(axis=0), 1e-300) >= 0.1).T.astype(np.float64)
    k = ("regions", key)
    if k not in memo:
        memo[k] = (F / np.maximum(F.max(axis=0), 1e-300) >= 0.1).T.astype(np.float64)
    return memo[k]


def _kept_derivatives(memo: dict, key: Any, F: NDArray, use: NDArray, scale: float) -> NDArray:
    """:func:`_derivatives` of the columns ``use`` of ``F``, kept in ``memo`` (a
    :class:`_Columns`' memo; ``key`` names ``F`` there): the map and each phase of a check
    mostly derive the same columns of the same element."""
    if not FAST_PATH:
        return _derivatives(F[:, use], scale)
    k = ("derivatives", key, np.asarray(use, dtype=bool).tobytes())
    if k not in memo:
        memo[k] = _derivatives(F[:, use], scale)
    return memo[k]


def _artefacts_by_counts(axis: EnergyAxis, detector: Detector,
                         groups: dict[str, tuple[NDArray, NDArray]]) -> NDArray:  # fmt: skip
    """Escape peaks and sum peaks (one column each) of fitted lines
    ``{element: (keV, counts)}`` (arrays; lines with ≥ 3 % of the strongest line's counts),
    each escape peak weighted by its line's counts and each sum peak by the product of the
    two lines' counts (twice for two different lines): pile-up goes with the product of the
    count rates. (n, c) with c ≤ 2."""
    e_lo, e_hi = axis.edges[0], axis.edges[-1]
    if not any(g[1].size for g in groups.values()):
        return np.zeros((axis.size, 0))
    top = max(float(g[1].max()) for g in groups.values() if g[1].size)
    main = {}
    for el, (E, n) in groups.items():
        big = n >= 0.03 * top
        if big.any():
            main[el] = (E[big], n[big])
    out = []
    E = np.concatenate([g[0] for g in main.values()])
    n = np.concatenate([g[1] for g in main.values()])
    esc = (E > _SI_K_EDGE) & (E - _SI_KA > e_lo)
    escape = None
    if np.any(esc):
        c = E[esc] - _SI_KA
        escape = (c, n[esc])
        if not (FAST_PATH and COMPILED):
            out.append(_peaks(axis.edges, c, detector.fwhm(c), n[esc],
                              np.zeros(c.size, dtype=np.intp), 1)[:, 0])  # fmt: skip
    if FAST_PATH and COMPILED:  # the same centres and weights, in the same order
        from esmpy_hs.physics import _irls

        starts = np.cumsum([0] + [g[0].size for g in main.values()]).astype(np.int64)
        cen, w = _irls.sum_peaks(E, n, starts, float(e_lo), float(e_hi))
        # the escape peaks (column 0) and the sum peaks (column 1) in one pass: each column
        # the same sums in the same order as alone
        parts = ([escape] if escape is not None else []) + ([(cen, w)] if cen.size else [])
        if not parts:
            return np.zeros((axis.size, 0))
        centres = np.concatenate([p[0] for p in parts])
        column = np.concatenate([np.full(p[0].size, k, dtype=np.intp)
                                 for k, p in enumerate(parts)])  # fmt: skip
        return _peaks(axis.edges, centres, detector.fwhm(centres),
                      np.concatenate([p[1] for p in parts]), column, len(parts))
    else:
        els = list(main)
        pairs = []
        for i, a in enumerate(els):
            for b in els[i:]:
                (Ea, na), (Eb, nb) = main[a], main[b]
                cen = (Ea[:, None] + Eb[None, :]).ravel()
                w = (na[:, None] * nb[None, :]).ravel()
                ok = (cen > e_lo) & (cen < e_hi)
                if np.any(ok):
                    pairs.append((cen[ok], w[ok] * (1.0 if a == b else 2.0)))
    if pairs:
        cen = np.concatenate([p[0] for p in pairs])
        w = np.concatenate([p[1] for p in pairs])
        out.append(_peaks(axis.edges, cen, detector.fwhm(cen), w,
                          np.zeros(cen.size, dtype=np.intp), 1)[:, 0])  # fmt: skip
    if not out:
        return np.zeros((axis.size, 0))
    return np.stack(out, axis=1)


def _edge_column(axis: EnergyAxis, continuum: NDArray, element: str,
                 mu: NDArray | None = None) -> tuple[NDArray | None, NDArray]:  # fmt: skip
    """The continuum times the element's mass attenuation μ/ρ(E), and the channels within
    0.3 keV of its absorption edges on the axis; (None, ...) without an edge there.

    A specimen absorbs its own continuum: exp(−μ(E) ρt) ≈ 1 − μ(E) ρt, a step down above each
    absorption edge of its elements. A thin specimen hardly does, a bulk (SEM) specimen does
    by tens of per cent, and a step at the Al K edge (1.56 keV) is no smooth shape the spline
    correction can follow: the counts it leaves below the edge were read as element lines.
    The column is signed (its amplitude is −ρt, up to the scale). ``mu``: the element's μ/ρ
    at the channels when the caller has it (:func:`_prepare_known`)."""
    from esmpy_hs.physics._elements import atomic_number
    from esmpy_hs.physics.attenuation import element_mass_attenuation

    e = axis.energies
    if mu is None:
        mu = element_mass_attenuation(atomic_number(element), e)
    jump = np.nonzero(mu[1:] > 1.2 * mu[:-1])[0]  # an edge: μ rises by > 20 % in one channel
    near = np.zeros(e.size, dtype=bool)
    if jump.size == 0:
        return None, near
    for j in jump:
        if FAST_PATH:  # only the channels that can be within 0.3 keV (the axis ascends)
            lo = int(np.searchsorted(e, e[j] - 0.31))
            hi = int(np.searchsorted(e, e[j] + 0.31, side="right"))
            near[lo:hi] |= np.abs(e[lo:hi] - e[j]) <= 0.3
        else:
            near |= np.abs(e - e[j]) <= 0.3
    col = continuum.sum(axis=1) * mu
    return col / max(float(col.max()), 1e-300), near


# ---- Poisson fits -------------------------------------------------------------------------
def _deviance_terms(y: NDArray, mu: NDArray) -> NDArray:
    mu = np.maximum(mu, 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(y > 0, y * np.log(y / mu), 0.0)
    return 2.0 * (t - (y - mu))


#: channels per block of :func:`_row_blocks`
_ROW_BLOCK = 128


def _row_blocks(A: NDArray) -> list[tuple[int, NDArray]]:
    """Blocks of ``_ROW_BLOCK`` channels of ``A`` and the columns not zero in each: most
    columns are line groups and their derivatives, 0 beyond ±9 σ of their lines (85 % of the
    entries of a check's fit), so the Gram matrix summed block by block over each block's
    columns costs about a third of the dense product."""
    nz = A != 0
    out = []
    for start in range(0, A.shape[0], _ROW_BLOCK):
        out.append((start, np.nonzero(nz[start: start + _ROW_BLOCK].any(axis=0))[0]))
    return out


def _gram(B: NDArray, blocks: list[tuple[int, NDArray]] | None) -> NDArray:
    """``BᵀB``, by the row blocks of :func:`_row_blocks` when given (the same sums, in
    another order: equal to 1e-15)."""
    if blocks is None:
        return B.T @ B  # NumPy hands a product with its own transpose to BLAS's syrk
    M = np.zeros((B.shape[1], B.shape[1]))
    for start, cols in blocks:
        Bb = B[start: start + _ROW_BLOCK, cols]
        M[np.ix_(cols, cols)] += Bb.T @ Bb
    return M


def _mixed_nnls(A: NDArray, y: NDArray, w: NDArray, signed: NDArray,
                ridge: float = 1e-10, blocks: list[tuple[int, NDArray]] | None = None
                ) -> NDArray:  # fmt: skip
    """argmin Σ w (A a − y)² with a ≥ 0 except the ``signed`` entries (free).

    Through the Cholesky factor R of the normalised AᵀWA (plus ``ridge`` on its diagonal) with
    the free columns first: ``‖R x − z‖² = ‖R₁₁ x_f + R₁₂ x_p − z₁‖² + ‖R₂₂ x_p − z₂‖²``, and
    the first term is 0 at its minimum over x_f, so only the non-negative part is an NNLS
    problem (of the size of the non-negative columns; a free column as a positive and a
    negative copy would make it larger and slower). ``blocks``: :func:`_row_blocks` of ``A``.
    """
    # AᵀWA as BᵀB with B = W^½ A (half the work of a general product, or less by blocks)
    B = A * np.sqrt(w)[:, None]
    try:
        return _gram_nnls(_gram(B, blocks), (y * w) @ A, signed, ridge)
    except np.linalg.LinAlgError:  # pragma: no cover - the ridge keeps it positive definite
        Ax = np.concatenate([A, -A[:, signed]], axis=1)
        a = _weighted_nnls(Ax, y, w, ridge=ridge)
        out = a[: A.shape[1]].copy()
        out[signed] -= a[A.shape[1]:]
        return out


def _gram_nnls(M: NDArray, b: NDArray, signed: NDArray, ridge: float = 1e-10,
               passive: NDArray | None = None) -> NDArray:  # fmt: skip
    """:func:`_mixed_nnls` from its normal equations: ``M = AᵀWA``, ``b = AᵀWy`` (raises
    ``LinAlgError`` when the Cholesky factorisation fails).

    ``passive`` (bool, one per column; with :data:`FAST_PATH`): a guess of the non-negative
    columns with amplitude > 0 at the solution (the previous IRLS step's). The problem is
    ``min ½ xᵀMx − bᵀx`` with ``x ≥ 0`` off the signed columns, strictly convex (the ridge):
    its solution is unique, and when the guess's equality solution is ≥ 0 on the guess and the
    gradient is ≥ 0 on the columns held at 0 (the optimality conditions), that solution is it;
    otherwise the full NNLS below runs."""
    if FAST_PATH and COMPILED:
        from esmpy_hs.physics import _irls

        out = np.empty(np.shape(b)[0])
        use = passive is not None
        if _irls.gram_nnls(np.ascontiguousarray(M, dtype=np.float64),
                           np.ascontiguousarray(b, dtype=np.float64),
                           np.ascontiguousarray(signed, dtype=np.bool_), float(ridge),
                           np.ascontiguousarray(passive if use else signed, dtype=np.bool_),
                           use, out):  # fmt: skip
            return out
    order = np.concatenate([np.nonzero(signed)[0], np.nonzero(~signed)[0]])
    nf = int(signed.sum())
    M = M[np.ix_(order, order)]
    b = b[order]
    scale = np.sqrt(np.maximum(np.diag(M), 1e-300))
    Ms = M / np.outer(scale, scale) + ridge * np.eye(M.shape[0])
    bs = b / scale
    if passive is not None and FAST_PATH:
        x = _guess_nnls(Ms, bs, nf, np.asarray(passive, dtype=bool)[order])
        if x is not None:
            out = np.empty_like(x)
            out[order] = x / scale
            return out
    R = np.linalg.cholesky(Ms).T  # Ms = Rᵀ R, R upper triangular
    from scipy.linalg import solve_triangular
    from scipy.optimize import nnls

    z = solve_triangular(R, bs, trans="T")
    x = np.zeros(M.shape[0])
    if nf < M.shape[0]:
        x[nf:], _ = nnls(R[nf:, nf:], z[nf:], maxiter=50 * (M.shape[0] - nf))
    if nf:
        x[:nf] = solve_triangular(R[:nf, :nf], z[:nf] - R[:nf, nf:] @ x[nf:])
    out = np.empty_like(x)
    out[order] = x / scale
    return out


def _guess_nnls(Ms: NDArray, bs: NDArray, nf: int, passive: NDArray) -> NDArray | None:
    """The solution of ``min ½ xᵀ Ms x − bsᵀ x``, x ≥ 0 beyond the first ``nf`` (free)
    entries, if the set ``free ∪ passive`` is its support (the KKT conditions hold); else
    None."""
    from scipy.linalg import cho_factor, cho_solve

    on = passive.copy()
    on[:nf] = True
    idx = np.nonzero(on)[0]
    x = np.zeros(bs.size)
    if idx.size:
        try:
            x[idx] = cho_solve(cho_factor(Ms[np.ix_(idx, idx)], check_finite=False), bs[idx],
                               check_finite=False)  # fmt: skip
        except np.linalg.LinAlgError:  # pragma: no cover - the ridge keeps it definite
            return None
    if np.any(x[nf:][on[nf:]] <= 0.0):
        return None
    grad = Ms @ x - bs  # ≥ 0 where an amplitude is held at 0
    tol = 1e-12 * max(float(np.abs(bs).max()), 1e-300)
    if np.any(grad[~on] < -tol):
        return None
    return x


#: the fit with the escape and sum peaks from the fitted line counts starts from the previous
#: fit's amplitudes (the new peaks at 0) instead of from nothing: the same strictly convex
#: problem and stopping rule, fewer steps (docs/validation.rst, issue 13, ninth part); False:
#: the cold start, as before
WARM_ARTEFACT_FIT = True


def _fit(A: NDArray, signed: NDArray, y: NDArray, offset: NDArray, a0: NDArray | None = None,
         n_iter: int = 20, norm: NDArray | None = None) -> tuple[NDArray, NDArray]:  # fmt: skip
    """Poisson ML of ``y`` under ``offset + A a``, ``a ≥ 0`` except the ``signed`` columns
    (IRLS with weights 1/μ, each step :func:`_mixed_nnls`).

    Returns the amplitudes and μ (floored at a small positive value). With :data:`FAST_PATH`,
    :func:`_fit_blocks` (the same steps on the matrix's nonzero blocks); ``norm``: the
    columns' norms when the caller has them (zeros set to 1), that path only.
    """
    if FAST_PATH:
        return _fit_blocks(A, signed, y, offset, a0, n_iter, norm)
    norm = np.sqrt((A**2).sum(axis=0))
    norm[norm <= 0] = 1.0
    An = A / norm
    floor = 1e-3 * max(float(y.mean()), 1e-9)
    w = 1.0 / np.maximum(y + offset, 1.0) if a0 is None else None
    a = None
    if a0 is not None:
        a = a0 * norm
        a[~signed] = np.maximum(a[~signed], 0.0)
        w = 1.0 / np.maximum(offset + An @ a, floor)
    blocks = _row_blocks(An)  # A is the same at every step, only the weights change
    for _ in range(n_iter):
        a_new = _mixed_nnls(An, y - offset, w, signed, blocks=blocks)
        change = np.inf if a is None else (
            np.abs(An @ (a_new - a)).max() / max(float(np.abs(An @ a_new).max()), 1e-12))
        a = a_new
        w = 1.0 / np.maximum(offset + An @ a, floor)
        if change < 1e-4:
            break
    mu = np.maximum(offset + An @ a, floor)
    return a / norm, mu


class _BlockMatrix:
    """An (n, p) matrix kept as its blocks of ``_ROW_BLOCK`` rows, each with only the columns
    not zero in it (line groups and their derivatives end at ±9 σ of their lines: 85 % of the
    entries of a check's fit are 0). The products of an IRLS step (``Aᵀ W A``, ``Aᵀ v``,
    ``A a``) over the blocks give the same sums as the dense ones (the Gram matrix block by
    block as :func:`_gram`; the others in another order, equal to rounding) at a fraction of
    the passes over the matrix, which is built once per fit."""

    def __init__(self, A: NDArray) -> None:
        self.n, self.p = A.shape
        starts = range(0, self.n, _ROW_BLOCK)
        # the columns not zero in each block, for all blocks in one pass
        used = np.logical_or.reduceat(A != 0, np.arange(0, self.n, _ROW_BLOCK), axis=0) \
            if self.n else np.zeros((0, self.p), dtype=bool)  # fmt: skip
        self.parts = []
        for b, start in enumerate(starts):
            stop = min(start + _ROW_BLOCK, self.n)
            cols = np.nonzero(used[b])[0]
            flat = (cols[:, None] * self.p + cols[None, :]).reshape(-1)
            self.parts.append((start, stop, cols, np.ascontiguousarray(A[start:stop, cols]), flat))

    @classmethod
    def from_packed(cls, n: int, p: int, cptr: NDArray, cols: NDArray, vptr: NDArray,
                    vals: NDArray) -> _BlockMatrix:  # fmt: skip
        """The blocks of ``A / norm`` from :func:`esmpy_hs.physics._irls.pack_blocks` (its
        ``_ROW_BLOCK``-row blocks, each block's columns where ``A`` is not 0 and their
        quotients): the same parts as ``_BlockMatrix(A / norm)`` without forming the
        quotients of the whole matrix again (a quotient that underflowed to 0 would keep its
        column in a block, adding exact zeros)."""
        self = cls.__new__(cls)
        self.n, self.p = n, p
        self.parts = []
        for b, start in enumerate(range(0, n, _ROW_BLOCK)):
            stop = min(start + _ROW_BLOCK, n)
            c = cols[cptr[b]: cptr[b + 1]]
            flat = (c[:, None] * p + c[None, :]).reshape(-1)
            Ab = vals[vptr[b]: vptr[b + 1]].reshape(stop - start, c.size)
            self.parts.append((start, stop, c, Ab, flat))
        return self

    def gram(self, sqrt_w: NDArray) -> NDArray:
        """``Aᵀ diag(w) A`` from ``sqrt_w`` = √w (n,)."""
        M = np.zeros(self.p * self.p)
        for start, stop, _, Ab, flat in self.parts:
            Bb = Ab * sqrt_w[start:stop, None]
            M[flat] += (Bb.T @ Bb).reshape(-1)
        return M.reshape(self.p, self.p)

    def normal(self, sqrt_w: NDArray, v: NDArray) -> tuple[NDArray, NDArray]:
        """:meth:`gram` and :meth:`rmatvec` of ``v`` in one pass over the blocks (the same
        products in the same order)."""
        M = np.zeros(self.p * self.p)
        out = np.zeros(self.p)
        for start, stop, cols, Ab, flat in self.parts:
            Bb = Ab * sqrt_w[start:stop, None]
            M[flat] += (Bb.T @ Bb).reshape(-1)
            out[cols] += v[start:stop] @ Ab
        return M.reshape(self.p, self.p), out

    def rmatvec(self, v: NDArray) -> NDArray:
        """``Aᵀ v``."""
        out = np.zeros(self.p)
        for start, stop, cols, Ab, _ in self.parts:
            out[cols] += v[start:stop] @ Ab
        return out

    def matvec(self, a: NDArray) -> NDArray:
        """``A a``."""
        out = np.empty(self.n)
        for start, stop, cols, Ab, _ in self.parts:
            out[start:stop] = Ab @ a[cols]
        return out


def _fit_blocks(A: NDArray, signed: NDArray, y: NDArray, offset: NDArray,
                a0: NDArray | None = None, n_iter: int = 20, norm: NDArray | None = None
                ) -> tuple[NDArray, NDArray]:  # fmt: skip
    """:func:`_fit`'s IRLS, the products on :class:`_BlockMatrix` and each weighted NNLS
    step started from the previous step's set of positive amplitudes (:func:`_gram_nnls`'s
    ``passive``): the same steps, the same stopping rule, the same solution of each step
    (each is a strictly convex problem; the warm set is only taken when it satisfies the
    optimality conditions)."""
    floor = 1e-3 * max(float(y.mean()), 1e-9)
    if COMPILED:  # (A / norm formed inside, as it is read: the same quotients)
        from esmpy_hs.physics import _irls

        if norm is not None:  # (the caller's)
            A = np.ascontiguousarray(A, dtype=np.float64)
        elif A.flags.c_contiguous and A.dtype == np.float64:
            norm = _irls.column_norms(A)  # the same norms, without an (n, p) array of squares
        else:  # (NumPy sums the columns of another layout in another order: kept as it was)
            norm = np.sqrt((A**2).sum(axis=0))
            norm[norm <= 0] = 1.0
            A = np.ascontiguousarray(A, dtype=np.float64)
        signed = np.ascontiguousarray(signed, dtype=np.bool_)
        start = np.zeros(A.shape[1])
        if a0 is not None:
            start = a0 * norm
            start[~signed] = np.maximum(start[~signed], 0.0)
        offset = np.ascontiguousarray(offset, dtype=np.float64)
        a, fitted, ok = _irls.irls(A, norm, signed,
                                   np.ascontiguousarray(y, dtype=np.float64), offset,
                                   start, a0 is not None, int(n_iter), float(floor))  # fmt: skip
        if ok:
            return a / norm, np.maximum(offset + fitted, floor)
    elif norm is None:
        norm = np.sqrt((A**2).sum(axis=0))
        norm[norm <= 0] = 1.0
    return _irls_steps(_BlockMatrix(A / norm), norm, signed, y, offset, a0, n_iter, floor)


def _irls_steps(op: _BlockMatrix, norm: NDArray, signed: NDArray, y: NDArray, offset: NDArray,
                a0: NDArray | None, n_iter: int, floor: float) -> tuple[NDArray, NDArray]:
    """:func:`_fit_blocks`'s NumPy IRLS on the blocks ``op`` of ``A / norm``."""
    r = y - offset
    w = 1.0 / np.maximum(y + offset, 1.0) if a0 is None else None
    a = None
    fitted = None
    if a0 is not None:
        a = a0 * norm
        a[~signed] = np.maximum(a[~signed], 0.0)
        fitted = op.matvec(a)
        w = 1.0 / np.maximum(offset + fitted, floor)
    for _ in range(n_iter):
        passive = None if a is None else (a > 0) & ~signed
        a_new = _gram_nnls(*op.normal(np.sqrt(w), r * w), signed, passive=passive)
        new = op.matvec(a_new)
        change = np.inf if a is None else (
            np.abs(new - fitted).max() / max(float(np.abs(new).max()), 1e-12))
        a, fitted = a_new, new
        w = 1.0 / np.maximum(offset + fitted, floor)
        if change < 1e-4:
            break
    mu = np.maximum(offset + fitted, floor)
    return a / norm, mu


def _fit_packed(n: int, norm: NDArray, packed: tuple[NDArray, NDArray, NDArray, NDArray],
                signed: NDArray, y: NDArray, offset: NDArray, a0: NDArray | None = None,
                n_iter: int = 20) -> tuple[NDArray, NDArray]:  # fmt: skip
    """:func:`_fit_blocks` (compiled) on a matrix given as its column norms ``norm`` and the
    packed blocks of ``A / norm`` (:func:`esmpy_hs.physics._irls.pack_blocks`'s form, from
    :meth:`_State.packed`): the same steps on the same arrays, without the dense matrix."""
    from esmpy_hs.physics import _irls

    floor = 1e-3 * max(float(y.mean()), 1e-9)
    cptr, cols, vptr, vals = packed
    p = norm.size
    signed = np.ascontiguousarray(signed, dtype=np.bool_)
    start = np.zeros(p)
    if a0 is not None:
        start = a0 * norm
        start[~signed] = np.maximum(start[~signed], 0.0)
    offset = np.ascontiguousarray(offset, dtype=np.float64)
    a, fitted, ok = _irls.irls_packed(n, p, cptr, cols, vptr, vals, signed,
                                      np.ascontiguousarray(y, dtype=np.float64), offset, start,
                                      a0 is not None, int(n_iter), float(floor))  # fmt: skip
    if ok:
        return a / norm, np.maximum(offset + fitted, floor)
    op = _BlockMatrix.from_packed(n, p, cptr, cols, vptr, vals)  # pragma: no cover - fallback
    return _irls_steps(op, norm, signed, y, offset, a0, n_iter, floor)  # pragma: no cover


def _block_pack(memo: dict, X: NDArray) -> tuple[NDArray, NDArray, NDArray, NDArray, NDArray]:
    """One column block's norms (as :func:`esmpy_hs.physics._irls.column_norms` sums each
    column of a matrix that holds it: row by row, on its own) and the packed blocks of
    ``X / norm`` (:func:`esmpy_hs.physics._irls.pack_blocks`), kept in ``memo`` by the array's
    identity (the arrays of the model's blocks are never changed in place)."""
    from esmpy_hs.physics import _irls

    store = memo.setdefault("packed blocks", {})
    kept = store.get(id(X))
    if kept is not None and kept[0] is X:
        return kept[1]
    Xf = X if X.dtype == np.float64 else X.astype(np.float64)
    out = _irls.pack_columns(Xf, _irls.BLOCK)
    if len(store) >= _PACKED_KEPT:
        store.clear()
    store[id(X)] = (X, out)  # (the array held with its pack: its id is not reused meanwhile)
    return out


#: at most so many column blocks' packs kept per axis (:func:`_block_pack`)
_PACKED_KEPT = 256


def _screen(y: NDArray, mu: NDArray, C: NDArray, n_iter: int = 12,
            nz: tuple[NDArray, NDArray, NDArray] | None = None
            ) -> tuple[NDArray, NDArray]:  # fmt: skip
    """Best amplitude b ≥ 0 of each column of ``C`` added to ``mu`` (others held) and the
    Poisson gain 2ΔlogL of it; vectorised Newton steps.

    Over each column's nonzero channels only (a candidate's lines cover a few per cent of the
    axis; a channel where the column is 0 adds exactly 0 to its score, information and gain),
    the sums per column by ``np.bincount``."""
    m = C.shape[1]
    if nz is None:
        i, j = np.nonzero(C)
        c = C[i, j]
    else:  # ``np.nonzero(C)`` and those entries, kept (:func:`_selection`)
        i, j, c = nz
    yy, mm = y[i], mu[i]
    if FAST_PATH and COMPILED:  # the same steps and sums, compiled (the log in NumPy)
        from esmpy_hs.physics import _irls

        yy = np.ascontiguousarray(yy, dtype=np.float64)
        mm = np.ascontiguousarray(mm, dtype=np.float64)
        c = np.ascontiguousarray(c, dtype=np.float64)
        j = np.ascontiguousarray(j, dtype=np.int64)
        b, kept, ratio = _irls.screen_newton(yy, mm, c, j, m, n_iter)
        return b, _irls.screen_gain(yy, c, j, b, kept, np.log(ratio), m)
    w = 1.0 / mm
    score = np.bincount(j, c * (yy - mm) * w, m)  # the score dℓ/db at b = 0
    if FAST_PATH:
        # the log-likelihood is concave in b: a score ≤ 0 at b = 0 puts the maximum over
        # b ≥ 0 at b = 0, gain 0 (what the Newton steps below give from there, exactly:
        # their first b is max(score / information, 0) = 0 and every step keeps it, so every
        # sum of such a column is 0); the steps run over the channels of the candidates with
        # a positive score only (each column's sums over the same channels, in the same order)
        keep = (score > 0)[j]
        i, j, c, yy, mm, w = i[keep], j[keep], c[keep], yy[keep], mm[keep], w[keep]
        info = np.maximum(np.bincount(j, c * c * w, m), 1e-300)
        b = np.divide(score, info, out=np.zeros(m), where=score > 0)  # (no 0/0 or −x/1e-300)
    else:
        b = np.maximum(score / np.maximum(np.bincount(j, c * c * w, m), 1e-300), 0.0)
    for _ in range(n_iter):
        mt = mm + c * b[j]
        r = yy / mt
        score = np.bincount(j, c * (r - 1.0), m)
        info = np.bincount(j, c * c * r / mt, m)
        b = np.maximum(b + score / np.maximum(info, 1e-300), 0.0)
    mt = mm + c * b[j]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(yy > 0, yy * np.log(mt / mm), 0.0) - c * b[j]
    gain = 2.0 * np.bincount(j, terms, m)
    return b, np.maximum(gain, 0.0)


def _nuisance(axis: EnergyAxis, continuum: NDArray, y: NDArray, fine_low: bool = False
              ) -> tuple[NDArray, NDArray]:  # fmt: skip
    """Smooth corrections that no element line can stand in for.

    * the continuum times a cubic B-spline basis with knots every 1 keV (signed; only the basis
      functions with ≥ 2000 counts under them, where a shape error is resolved): the
      continuum's shape (efficiency, absorption edges, the bremsstrahlung law) is known to a
      few per cent only, and such broad residuals must not be read as many weak lines; with
      ``fine_low`` (the test of the listed elements on one phase's pure pixels,
      :mod:`esmpy_hs.physics.presence`) also every :data:`LOW_ENERGY_KNOT_KEV` below
      :data:`LOW_ENERGY_TOP_KEV` (built once per axis, :func:`_fine_low_shape`), so that a
      broad low-energy excess is not read as a listed light element;
    * exponential tails from the first channel (decay 0.05, 0.1 and 0.2 keV, ≥ 0): the tail of
      the detector's noise peak and incomplete charge collection at the lowest energies.
    """
    key = (axis.offset, axis.scale, axis.size)
    kept = _NUISANCE.get("last")
    if FAST_PATH and kept is not None and kept[0] == key and kept[1] is continuum:
        shape, inside, nonzero, tail = kept[2]  # the same axis and continuum (the same object)
    else:
        e = axis.energies
        lo, hi = float(e[0]), float(e[-1])
        basis = _clamped_splines(e, lo, hi, _KNOT_KEV)
        cont = continuum.sum(axis=1)
        shape = basis * cont[:, None]
        inside = (basis > 0.05).T.astype(np.float64)
        nonzero = shape.sum(axis=0) > 0
        tail = np.stack([np.exp(-(e - lo) / tau) for tau in (0.05, 0.1, 0.2)], axis=1)
        _NUISANCE["last"] = (key, continuum, (shape, inside, nonzero, tail))
    # only where the data resolve a shape error: ≥ _RESOLVED counts under the basis function
    support = inside @ y
    shape = shape[:, nonzero & (support >= _RESOLVED)]
    if fine_low and LOW_ENERGY_KNOT_KEV is not None:
        low, low_inside = _fine_low_shape(axis, continuum, key)
        if low.shape[1]:
            low = low[:, low_inside @ y >= _RESOLVED]
            shape = np.concatenate([shape, low], axis=1)
    return shape, tail


def _clamped_splines(x: NDArray, lo: float, hi: float, knot: float) -> NDArray:
    """Cubic B-splines on [lo, hi] with clamped ends and knots every ``knot`` (or fewer, to fit
    evenly), evaluated at ``x`` (clipped to [lo, hi]): (x.size, number of splines)."""
    from scipy.interpolate import BSpline

    inner = np.linspace(lo, hi, max(int(np.ceil((hi - lo) / knot)), 1) + 1)
    t = np.concatenate([[lo] * 3, inner, [hi] * 3])
    return BSpline.design_matrix(np.clip(x, lo, hi), t, 3).toarray()


def _fine_low_shape(axis: EnergyAxis, continuum: NDArray, key: tuple
                    ) -> tuple[NDArray, NDArray]:  # fmt: skip
    """The continuum times cubic B-splines with knots every :data:`LOW_ENERGY_KNOT_KEV` below
    :data:`LOW_ENERGY_TOP_KEV` (zero above), and where each is above 5 % of its peak; kept with
    the axis and continuum, as the 1 keV basis is."""
    kept = _NUISANCE.get("low")
    if FAST_PATH and kept is not None and kept[0] == key and kept[1] is continuum:
        return kept[2]
    e = axis.energies
    lo = float(e[0])
    top = min(LOW_ENERGY_TOP_KEV, float(e[-1]))
    if not top - lo > LOW_ENERGY_KNOT_KEV:
        out = (np.zeros((e.size, 0)), np.zeros((0, e.size)))
    else:
        below = int(np.searchsorted(e, top, side="right"))
        low = _clamped_splines(e[:below], lo, top, LOW_ENERGY_KNOT_KEV)
        basis = np.zeros((e.size, low.shape[1]))
        basis[:below] = low
        shape = basis * continuum.sum(axis=1)[:, None]
        keep = shape.sum(axis=0) > 0
        out = (shape[:, keep], (basis[:, keep] > 0.05).T.astype(np.float64))
    _NUISANCE["low"] = (key, continuum, out)
    return out


#: the last axis's spline basis and tails of :func:`_nuisance` (a check asks for them once per
#: spectrum tested, twice per spectrum with the presence test, on the same axis; ``"low"``: the
#: finer low-energy basis of :func:`_fine_low_shape`)
_NUISANCE: dict[str, Any] = {}


def _testable(cols: _Columns, axis: EnergyAxis, detector: Detector) -> set[str]:
    """Elements with a main line (≥ 10 % of its strongest) at least 3 FWHM above the first
    channel: below that the tail of the detector's noise peak and the window's absorption edges
    shape the counts more than any model of them (C and N at the default 0.25 keV cut)."""
    e0 = float(axis.energies[0])
    start = e0 + 3.0 * float(detector.fwhm(e0))
    E, owner = _main_lines(cols)
    return {cols.elements[j] for j in np.unique(owner[E >= start])}


def _main_line_energies(lines: list) -> NDArray | None:
    """Energies (keV) of an element's main lines: those with at least a tenth of its strongest
    line's weight (``lines``: its ``(name, keV, weight)`` tuples), or None without lines."""
    if not lines:
        return None
    w = np.array([x[2] for x in lines])
    return np.array([x[1] for x in lines])[w >= 0.1 * w.max()]


def _neighbourhoods(cols: _Columns, axis: EnergyAxis, detector: Detector
                    ) -> tuple[NDArray, NDArray]:  # fmt: skip
    """Per element (columns of ``cols.tied``): the channels within 1.5 FWHM of its main lines
    (≥ 10 % of its strongest), and the ring from 1.5 to 4 FWHM around them."""
    n, m = axis.size, len(cols.elements)
    near = np.zeros((n, m), dtype=bool)
    wide = np.zeros((n, m), dtype=bool)
    e = axis.energies
    if FAST_PATH:
        # all elements' main lines at once, each compared with the channels within 4 FWHM
        # (and one channel more) of it only: the same comparisons where they can hold
        E, j = _main_lines(cols)  # (_main_line_energies of each element)
        if not E.size:
            return near, wide
        fw = detector.fwhm(E)
        lo = np.clip(np.searchsorted(e, E - 4.0 * fw) - 1, 0, n)
        hi = np.clip(np.searchsorted(e, E + 4.0 * fw) + 1, 0, n)
        if COMPILED:  # the same distances and comparisons, without the index arrays
            from esmpy_hs.physics import _irls

            _irls.mark_neighbourhoods(np.ascontiguousarray(e, dtype=np.float64),
                                      np.ascontiguousarray(E, dtype=np.float64),
                                      np.ascontiguousarray(fw, dtype=np.float64),
                                      lo.astype(np.int64), hi.astype(np.int64),
                                      j.astype(np.int64), near, wide)  # fmt: skip
            return near, wide & ~near
        m_ = hi - lo
        pk = np.repeat(np.arange(E.size), m_)
        ch = np.arange(int(m_.sum())) - np.repeat(np.cumsum(m_) - m_, m_) + lo[pk]
        dist = np.abs(e[ch] - E[pk]) / fw[pk]
        near[ch[dist <= 1.5], j[pk][dist <= 1.5]] = True
        wide[ch[dist <= 4.0], j[pk][dist <= 4.0]] = True
        return near, wide & ~near
    for j, el in enumerate(cols.elements):
        E = _main_line_energies(cols.lines[el])
        if E is None:
            continue
        fw = detector.fwhm(E)
        dist = np.abs(e[:, None] - E[None, :]) / fw[None, :]
        near[:, j] = (dist <= 1.5).any(axis=1)
        wide[:, j] = (dist <= 4.0).any(axis=1)
    return near, wide & ~near


#: :class:`_Selection` keeps its channel masks cast to 0/1 values in C order, as NumPy casts a
#: boolean operand of a product (the same products); False: cast at each product
CAST_MASKS = True


class _Selection:
    """The columns of a set of candidates (``cols.tied[:, sel]``) and what the tests read of
    them that does not depend on the spectrum, kept with the columns per set
    (:func:`_selection`): the nonzero entries the screen runs over (the same entries in the
    same order as ``np.nonzero`` at each step), and the channels away from each candidate's
    lines and in the ring around them with their counts (the same sums as
    :func:`_dispersion`'s)."""

    def __init__(self, C: NDArray, ring: NDArray) -> None:
        self.C = C
        if COMPILED:  # the same entries in the same order
            from esmpy_hs.physics import _irls

            self.nz = _irls.nonzero_entries(np.ascontiguousarray(C, dtype=np.float64))
        else:
            i, j = np.nonzero(C)
            self.nz = (i, j, C[i, j])
        self.away = C < _AWAY * C.max(axis=0)
        self.n_away = self.away.sum(0)
        self.ring = ring
        self.n_ring = ring.sum(0)
        self._column_sums: NDArray | None = None
        # the masks as the 0/1 values NumPy casts them to for each product with a deviance
        # (a C-order copy: the same product, the same sums) once, not at each product
        self._weights = (np.ascontiguousarray(self.away, dtype=np.float64),
                         np.ascontiguousarray(ring, dtype=np.float64)) \
            if CAST_MASKS else (self.away, ring)  # fmt: skip

    def column_sums(self) -> NDArray:
        """``C[:, i].sum()`` of each candidate (the same sums), computed once."""
        if self._column_sums is None:
            self._column_sums = np.array([self.C[:, i].sum() for i in range(self.C.shape[1])],
                                         dtype=np.float64)  # fmt: skip
        return self._column_sums

    def dispersion(self, d: NDArray, p: int) -> NDArray:
        """:func:`_dispersion` of these candidates."""
        away, ring = self._weights
        phi_all = (d @ away) / np.maximum(self.n_away - p, 1)
        phi_ring = np.where(self.n_ring >= 5, (d @ ring) / np.maximum(self.n_ring, 1),
                            0.0)  # fmt: skip
        return np.maximum(np.maximum(phi_all, phi_ring), 1.0)


def _selection(cols: _Columns, sel: Sequence[int], ring: NDArray) -> _Selection:
    """The :class:`_Selection` of the candidates ``sel`` (indices into ``cols.elements``;
    ``ring``: the rings of all of them, :func:`_neighbourhoods`), kept in ``cols.memo``."""
    key = ("selection", tuple(int(k) for k in sel))
    if key not in cols.memo:
        n_kept = sum(1 for k in cols.memo if isinstance(k, tuple) and k[0] == "selection")
        if n_kept >= 4:  # a forward selection shrinks its pool by one per step: a few sets
            for k in [k for k in cols.memo if isinstance(k, tuple) and k[0] == "selection"]:
                del cols.memo[k]
        cols.memo[key] = _Selection(cols.tied[:, list(sel)], ring[:, list(sel)])
    return cols.memo[key]


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


class _ByElement(dict):
    """A dict whose missing entries are computed when first asked for (``make(element)``)."""

    def __init__(self, make) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, element: str):
        value = self[element] = self._make(element)
        return value


def _high_of(cols: _Columns, element: str) -> tuple[NDArray, float] | None:
    """:func:`_high_family`, kept with the columns (``cols.memo["high"]``) for the elements
    asked for (the tests ask for a few of the ≈ 75 candidates)."""
    if FAST_PATH:
        if "high" not in cols.memo:
            cols.memo["high"] = _ByElement(lambda e: _high_family(cols, e))
        return cols.memo["high"][element]
    return _high_family(cols, element)


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


class _Beyond:
    """The channels above the tested range: whether a candidate's lines there show the counts
    its lines in the range predict (see ``beyond`` in :func:`identify`). Built when first
    asked (most checks never select a candidate)."""

    def __init__(self, y: ArrayLike | None, axis: EnergyAxis, beam_energy: float,
                 detector: Detector, cols: _Columns, known: Sequence[str]) -> None:  # fmt: skip
        self.y = None if y is None else np.asarray(y, dtype=np.float64).reshape(-1)
        self.axis, self.e0, self.detector, self.cols = axis, beam_energy, detector, cols
        self.known = [e for e in known if e in cols.lines]
        self.ready = False

    def _prepare(self) -> None:
        self.ready = True
        self.bcols = None
        if self.y is None or self.y.size < 8 or self.y.sum() <= 0:
            return
        ax = self.axis
        top = float(ax.edges[-1])
        if top >= self.e0:
            return
        n = min(self.y.size, int(np.floor((self.e0 - top) / ax.scale)))
        if n < 8:
            return
        self.y = self.y[:n]
        self.bax = EnergyAxis(top + 0.5 * ax.scale, ax.scale, n)
        self.bcols = _columns(self.bax, self.e0, list(self.cols.elements), self.detector)
        # base: continuum, its shape correction and the known elements' lines there
        shape, _ = _nuisance(self.bax, self.bcols.continuum, self.y)
        index = {e: i for i, e in enumerate(self.bcols.elements)}
        K = self.bcols.tied[:, [index[e] for e in self.known if e in index]]
        A = np.concatenate([self.bcols.continuum, shape, K], axis=1)
        signed = np.zeros(A.shape[1], dtype=bool)
        signed[self.bcols.continuum.shape[1]: self.bcols.continuum.shape[1] + shape.shape[1]] = 1
        _, self.mu = _fit(A, signed, self.y, np.zeros_like(self.y))

    def consistent(self, element: str, counts: float) -> bool:
        """Whether ``element``, with ``counts`` in the tested range, is consistent above it."""
        if self.y is None or not counts > 0:
            return True
        if not self.ready:
            self._prepare()
        if self.bcols is None or element not in self.bcols.lines:
            return True
        w_in = sum(x[2] for x in self.cols.lines[element])
        w_out = sum(x[2] for x in self.bcols.lines[element])
        if not (w_in > 0 and w_out > 0):
            return True
        predicted = counts * w_out / w_in
        col = self.bcols.tied[:, self.bcols.elements.index(element)]
        region = col >= 0.1 * col.max()
        if predicted <= 5.0 * np.sqrt(self.mu[region].sum()):
            return True
        b, _ = _screen(self.y, self.mu, col[:, None])
        return bool(b[0] * col.sum() >= 0.5 * predicted)


#: :meth:`_State.matrix` copies the columns of the blocks it shares, first and in order, with
#: the matrix it built before from that matrix in one piece (the same matrix); False: from
#: each block
MATRIX_PREFIX = True

#: With :data:`FAST_PATH` and :data:`COMPILED`: :meth:`_State.fit`'s Poisson fits on the
#: packed row blocks merged from each column block's pack (kept per block,
#: :func:`_block_pack`), without the dense matrix (≈ 85 % zeros) and its packing; the same
#: arrays as ``_irls.pack_blocks`` of it, so the same fits (docs/validation.rst, issue #13,
#: tenth part). False: the dense matrix, as before
PACKED_MATRIX = True


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
        self.line_tables: dict[str, NDArray] = {}
        self.a: NDArray | None = None
        self.mu = np.maximum(offset, 1e-9)

    @property
    def n_params(self) -> int:
        return sum(b[0].shape[1] for b in self.blocks)

    def matrix(self) -> tuple[NDArray, NDArray, list[str | None]]:
        # kept until the blocks change (the blocks' arrays are never changed in place): the
        # evidence asks for it once per element, a copy of the whole matrix each time
        # (the arrays themselves are kept and compared by identity)
        src = [b[0] for b in self.blocks]
        kept = getattr(self, "_matrix_src", None)
        if kept is None or len(kept) != len(src) or any(
                a is not b for a, b in zip(kept, src, strict=True)):
            k = 0  # the blocks the kept matrix starts with, in the same order
            while (MATRIX_PREFIX and kept is not None and k < min(len(kept), len(src))
                   and kept[k] is src[k]):  # fmt: skip
                k += 1
            if k > 1:  # those columns copied from it in one piece (the same values)
                head = self._matrix[0][:, :sum(a.shape[1] for a in src[:k])]
                A = np.concatenate([head, *src[k:]], axis=1)
            else:
                A = np.concatenate(src, axis=1)
            lower = np.concatenate([b[1] for b in self.blocks])
            owner = [o for b in self.blocks for o in b[2]]
            self._matrix_src, self._matrix = src, (A, lower, owner)
        return self._matrix

    def packed(self) -> tuple[NDArray, tuple[NDArray, NDArray, NDArray, NDArray], NDArray]:
        """The column norms and packed blocks of the model's matrix (:func:`_fit_packed`'s
        input: :func:`esmpy_hs.physics._irls.merge_packs` of its blocks' packs) and the
        lower bounds, without forming the matrix."""
        from esmpy_hs.physics import _irls

        # (a block of no columns adds nothing: left out)
        blocks = [b[0] for b in self.blocks if b[0].shape[1]]
        parts = [_block_pack(self.cols.memo, X) for X in blocks]
        widths = np.array([X.shape[1] for X in blocks], dtype=np.int64)
        c_len = np.array([q[2].size for q in parts], dtype=np.int64)
        v_len = np.array([q[4].size for q in parts], dtype=np.int64)
        packed = _irls.merge_packs(
            self.y.size, _irls.BLOCK, np.stack([q[1] for q in parts]),
            np.stack([q[3] for q in parts]), np.cumsum(c_len) - c_len,
            np.cumsum(v_len) - v_len, np.cumsum(widths) - widths,
            np.concatenate([q[2] for q in parts]), np.concatenate([q[4] for q in parts]))
        norm = np.concatenate([q[0] for q in parts])
        return norm, packed, np.concatenate([b[1] for b in self.blocks])

    def _fit_model(self, a0: NDArray | None, n_iter: int = 20) -> None:
        """The current blocks' Poisson fit from ``a0`` (when it has their size)."""
        if PACKED_MATRIX and FAST_PATH and COMPILED and self.y.size:
            norm, packed, lower = self.packed()
            if a0 is not None and a0.size != norm.size:
                a0 = None
            self.a, self.mu = _fit_packed(self.y.size, norm, packed, np.isinf(lower), self.y,
                                          self.offset, a0, n_iter)  # fmt: skip
            return
        A, lower, _ = self.matrix()
        if a0 is not None and a0.size != A.shape[1]:
            a0 = None
        self.a, self.mu = _fit(A, np.isinf(lower), self.y, self.offset, a0, n_iter=n_iter)

    def add(self, element: str) -> None:
        """Add ``element``'s line-group columns and their derivatives; rebuild the artefacts."""
        memo = self.cols.memo
        if ("groups", element) not in memo:
            memo[("groups", element)] = _line_groups(self.axis, self.detector,
                                                     *_line_arrays(self.cols, element))  # fmt: skip
        F, strong, table = memo[("groups", element)]
        if F.shape[1] == 0:
            F = self.cols.family[element]
            F = F[:, F.sum(axis=0) > 0]
            strong = np.ones(F.shape[1], dtype=bool)
            table = np.zeros((0, 3))
        self.line_tables[element] = table
        self.blocks = [b for b in self.blocks if not b[3]]
        self.blocks.append((F, np.zeros(F.shape[1]), [element] * F.shape[1], False))
        # derivatives where the data resolve a position or width error: ≥ _RESOLVED counts
        # within the group's peak (a sparse spectrum cannot, and signed columns there only
        # trade counts with the element's own column)
        under = _peak_regions(memo, ("groups", element), F) @ self.y
        D = _kept_derivatives(memo, ("groups", element), F, strong & (under >= _RESOLVED),
                              self.axis.scale)  # fmt: skip
        self.blocks.append((D, np.full(D.shape[1], -np.inf), [None] * D.shape[1], False))
        if ("edges", element) not in memo:
            memo[("edges", element)] = _edge_column(self.axis, self.cols.continuum, element)
        edge, near_edge = memo[("edges", element)]
        if edge is not None and float(self.y[near_edge].sum()) >= _RESOLVED:
            if ("edge block", element) not in memo:  # (one (n, 1) view: its pack kept with it)
                memo[("edge block", element)] = edge[:, None]
            self.blocks.append((memo[("edge block", element)], np.full(1, -np.inf), [None],
                                False))  # fmt: skip
        self.members.append(element)  # its escape and sum peaks: at the next fit

    def fit(self) -> None:
        # with elements in the model, this first fit gives the line counts that weight their
        # escape and sum peaks (a few iterations do), then the fit with those
        self._fit_model(self.a, n_iter=3 if self.members else 20)
        if not self.members:
            return
        # the escape and sum peaks again, from the fitted counts of each line instead of the
        # tabulated σ·ε: pile-up goes with the product of the two lines' count rates, which a
        # bulk specimen's absorption sets far from σ·ε (a bulk Al/Ag SEM map: its Al Kα + Ag Lα
        # sum peak at 4.47 keV was read as Ti Kα)
        groups: dict[str, tuple[NDArray, NDArray]] = {}
        start = 0
        for F, low, owner, artefact in self.blocks:
            m = F.shape[1]
            if not artefact and owner and owner[0] is not None and np.all(low == 0):
                # each line's counts: its group's fitted amplitude times its weight (the
                # lines with counts > 0, in the table's order)
                amp = np.maximum(self.a[start: start + m], 0.0)
                E_ok, w_ok, g_ok = self._lines_with_columns(owner[0])
                counts = w_ok * amp[g_ok]
                pos = counts > 0
                groups[owner[0]] = (E_ok[pos], counts[pos])
            start += m
        art = _artefacts_by_counts(self.axis, self.detector, groups)
        keep = [b for b in self.blocks if not b[3]]
        a0 = None
        if WARM_ARTEFACT_FIT:  # the kept columns start from their amplitudes, the new peaks at 0
            kept_amp = [self.a[i: i + b[0].shape[1]] for i, b in
                        zip(np.cumsum([0] + [b[0].shape[1] for b in self.blocks[:-1]]),
                            self.blocks, strict=True) if not b[3]]  # fmt: skip
            a0 = np.concatenate([*kept_amp, np.zeros(art.shape[1])])
        if art.shape[1]:
            keep.append((art, np.zeros(art.shape[1]), [None] * art.shape[1], True))
        self.blocks = keep
        if a0 is None or a0.size != self.n_params:
            a0 = self.a if self.a is not None and self.a.size == self.n_params else None
        self._fit_model(a0)

    def _lines_with_columns(self, element: str) -> tuple[NDArray, NDArray, NDArray]:
        """The energies, weights and group columns of ``element``'s lines whose group has a
        column (its line table's rows with a column ≥ 0), kept with the columns' memo for
        the table the element was added with."""
        table = self.line_tables.get(element, np.zeros((0, 3)))
        key = ("lines with columns", element)
        kept = self.cols.memo.get(key)
        if kept is None or kept[0] is not table:
            g = table[:, 2].astype(np.intp)
            ok = g >= 0
            kept = (table, table[ok, 0], table[ok, 1], g[ok])
            if len(table):  # (an empty table is made anew each time: not kept)
                self.cols.memo[key] = kept
        return kept[1], kept[2], kept[3]

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

    def _own_blocks(self) -> dict[str, tuple[int, NDArray]]:
        """The elements whose columns are one C-contiguous block owned by them alone: its
        first column in the matrix and the block (kept until the blocks change)."""
        src = [b[0] for b in self.blocks]
        kept = getattr(self, "_own_src", None)
        if kept is None or len(kept) != len(src) or any(
                a is not b for a, b in zip(kept, src, strict=True)):  # fmt: skip
            start, found, many = 0, {}, set()
            for F, _, owner, _ in self.blocks:
                names = set(owner) - {None}
                for el in names:
                    if el in found or len(names) > 1 or None in owner:
                        many.add(el)
                    found[el] = (start, F)
                start += F.shape[1]
            self._own_src = src
            self._own = {el: v for el, v in found.items()
                         if el not in many and v[1].flags.c_contiguous}  # fmt: skip
        return self._own

    def element_counts(self, element: str) -> NDArray:
        """Per-channel counts of ``element``'s family columns in the current fit."""
        if FAST_PATH:  # its one block of columns (the same product as over A's copy of it)
            own = self._own_blocks()
            if element in own:
                start, F = own[element]
                return F @ self.a[start: start + F.shape[1]]
        A, _, owner = self.matrix()
        sel = np.array([o == element for o in owner], dtype=bool)
        return A[:, sel] @ self.a[sel]


def _tied_counts(state: _State, cols: _Columns, elements: Sequence[str]) -> dict[str, NDArray]:
    """Per-channel counts of each of ``elements`` in a fit of the state's other columns
    (continuum, shape corrections, peak-shape derivatives, artefacts) plus, per element, one
    column with all its lines at their tabulated ratios and one with its highest family alone
    (K, else L; amplitudes ≥ 0). Within a family the ratios hold well enough that a weak
    line cannot take another element's peak (Lu Mζ and Mg Kα). Between families, absorption
    in the specimen can only lower the low-energy family against the high one, and in a bulk
    specimen by most of it (Mn L under O Kα and Fe L in an SEM mineral map, with Mn Kα plain
    at 5.9 keV): the second column lets the high family exceed its tabulated share, never the
    low one."""
    A, lower, owner = state.matrix()
    keep = np.array([o is None for o in owner], dtype=bool)
    index = {e: i for i, e in enumerate(cols.elements)}
    blocks = []
    for e in elements:
        tied = cols.tied[:, index[e]][:, None]
        high = _high_of(cols, e)
        blocks.append(tied if high is None else np.concatenate([tied, high[0][:, None]], axis=1))
    A2 = np.concatenate([A[:, keep], *blocks], axis=1)
    n_el = sum(b.shape[1] for b in blocks)
    signed = np.append(np.isinf(lower[keep]), np.zeros(n_el, dtype=bool))
    a, _ = _fit(A2, signed, state.y, state.offset)
    out = {}
    j = int(keep.sum())
    for e, F in zip(elements, blocks, strict=True):
        out[e] = F @ np.maximum(a[j: j + F.shape[1]], 0.0)
        j += F.shape[1]
    return out


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
    beyond: ArrayLike | None = None,
    absent: bool = True,
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
    beyond
        Counts per channel of the same spectrum in the channels just above ``axis`` (same
        channel width), when the data go further than the tested range (e.g. a fit to 10 keV
        of a spectrum recorded to 20 keV). A candidate whose lines there are predicted, from its
        counts in the tested range, to be detectable (> 5 σ of the counts under them) must show
        at least half of them, or it is not selected at that step: Br (Lα 1.48 keV, Kα 11.9 keV)
        is not named for the counts of Al Kα (1.49 keV) when 11.9 keV holds no Br Kα.
    absent
        Whether ``evidence`` also lists the candidates not found (their counts, statistic and
        lines); False lists the found ones only (what the model check reads), the same
        selection and statistics.

    Returns
    -------
    Identification
        Evidence per candidate; ``.elements`` the elements found in selection order.
    """
    from esmpy_hs.physics.attenuation import one_openmp_thread

    with one_blas_thread(), one_openmp_thread():  # each set once for all the fits and μ/ρ
        return _identify(spectrum, axis, beam_energy, detector, candidates, known, explained,
                         alpha, max_elements, beyond, absent)  # fmt: skip


def _identify(spectrum, axis, beam_energy, detector, candidates, known, explained, alpha,
              max_elements, beyond=None, absent=True) -> Identification:  # fmt: skip
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
    if FAST_PATH:  # the known elements' line groups and edge columns built together
        _prepare_known(cols, ax, det, [e for e in known if e in cols.family])
    for e in known:
        if e in cols.family:
            state.add(e)
    state.fit()
    if FAST_PATH:  # a property of the columns (axis, detector), kept with them
        if "testable" not in cols.memo:
            cols.memo["testable"] = _testable(cols, ax, det)
        testable = cols.memo["testable"]
    else:
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
    if "neighbourhoods" not in cols.memo:  # (the presence test may have built them)
        cols.memo["neighbourhoods"] = _neighbourhoods(cols, ax, det)
    near, ring = cols.memo["neighbourhoods"]
    outside = _Beyond(beyond, ax, float(beam_energy), det, cols, known)
    while pool and step < max_elements:
        sel = [index[e] for e in pool]
        d = _deviance_terms(y, state.mu)
        if FAST_PATH:  # the same numbers from what is kept per candidate set
            kept = _selection(cols, sel, ring)
            C = kept.C
            phi = kept.dispersion(d, state.n_params)
            b, gain = _screen(y, state.mu, C, nz=kept.nz)
            col_sums = kept.column_sums()
        else:
            C = cols.tied[:, sel]
            phi = _dispersion(d, C, near[:, sel], ring[:, sel], state.n_params)
            b, gain = _screen(y, state.mu, C)
            col_sums = [C[:, i].sum() for i in range(C.shape[1])]
        T = gain / phi
        # (the same Python floats as float() of each entry)
        for e, t_i, g_i, p_i, n_i in zip(pool, T.tolist(), gain.tolist(), phi.tolist(),
                                         (b * np.asarray(col_sums)).tolist(), strict=True):
            last[e] = (t_i, g_i, p_i, n_i)
        # the largest likelihood gains first (forward selection); the test is on T
        order = np.argsort(gain)[::-1]
        dev0 = float(d.sum())
        best, best_T, best_gain, tried = None, -np.inf, -np.inf, 0
        for i in order:
            if tried >= _N_REFIT:
                break
            if T[i] <= threshold:
                continue
            if not (_consistent(y, state.mu, b[i], C[:, i], _high_of(cols, pool[i]))
                    and outside.consistent(pool[i], b[i] * C[:, i].sum())):
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
    if found or absent or not FAST_PATH:  # (the shares of what is reported; none without)
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
    rest = sorted((e for e in last if e not in found), key=lambda e: -last[e][0]) if absent \
        else []  # fmt: skip
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
