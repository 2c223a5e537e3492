"""Scores for an unmixing result against a known ground truth.

The metrics of the reference study (``shared/notes/validation.md``):

* the **spectral angle** (degrees) between each true phase spectrum and the
  matched estimated spectrum (a column of G·W, i.e. of HyperSpy's
  ``learning_results.factors``);
* the **abundance-map MSE** between true and estimated abundances (the
  estimated maps optionally rescaled so that each pixel's abundances sum to 1);
* the **matching** of estimated to true phases: the permutation minimising the
  total angle (Hungarian assignment), with a flag when matching by map MSE
  would pair them differently;
* the absolute **error in at.%** per element per phase of a quantification.

:func:`score` does all of it in one call for a fitted ``EDS_ESMPY`` signal that
was made by :mod:`esmpy_hs.datasets` (which stores the ground truth in the
signal's metadata). Nothing here imports HyperSpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "PhaseMatch",
    "Score",
    "composition_errors",
    "map_mse",
    "match_phases",
    "score",
    "spectral_angle",
]


# ---------------------------------------------------------------------------
# elementary metrics
# ---------------------------------------------------------------------------


def spectral_angle(a: ArrayLike, b: ArrayLike) -> np.ndarray | float:
    """Angle between spectra, in degrees.

    The angle between two vectors of channel values,
    ``arccos(a·b / (|a| |b|))``, computed as ``2·arctan2(|â − b̂|, |â + b̂|)``
    (â = a/|a|) so that identical spectra give exactly 0 and nearly parallel
    ones keep their precision. It is blind to the overall scale of either
    spectrum.

    Parameters
    ----------
    a, b : array_like, shape (..., channels)
        Spectra along the last axis (any units; the angle is scale-free).
        Leading axes broadcast against each other, so ``a`` of shape
        (k, channels) and ``b`` of shape (k, channels) give k angles, row by
        row.

    Returns
    -------
    float or numpy.ndarray
        Angle(s) in degrees, in [0, 180] (non-negative spectra: [0, 90]).
        A zero spectrum has no direction: its angle is NaN.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"spectra have different numbers of channels: {a.shape[-1]} and {b.shape[-1]}"
        )
    na = np.linalg.norm(a, axis=-1, keepdims=True)
    nb = np.linalg.norm(b, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        ua = a / na
        ub = b / nb
    diff = np.linalg.norm(ua - ub, axis=-1)
    summ = np.linalg.norm(ua + ub, axis=-1)
    angle = np.degrees(2.0 * np.arctan2(diff, summ))
    if np.ndim(angle) == 0:
        return float(angle)
    return angle


def _renormalise(maps: np.ndarray) -> np.ndarray:
    """Divide each pixel's abundances (axis 0) by their sum; pixels summing to 0 stay 0."""
    total = maps.sum(axis=0, keepdims=True)
    out = np.zeros_like(maps, dtype=float)
    np.divide(maps, total, out=out, where=total > 0)
    return out


def map_mse(
    true_maps: ArrayLike,
    est_maps: ArrayLike,
    *,
    renormalise: bool = False,
    per_phase: bool = False,
) -> np.ndarray | float:
    """Mean squared error between abundance maps.

    Parameters
    ----------
    true_maps, est_maps : array_like, shape (k, ...)
        Abundances (dimensionless fractions), phase first, then any pixel
        layout (rows × cols or a flat pixel axis); both must have the same
        shape and the phases in the same order (see :func:`match_phases`).
    renormalise : bool
        Rescale ``est_maps`` first so that each pixel's abundances sum to 1
        (for fits without the simplex constraint on H, whose maps carry the
        count scale). Pixels whose estimated abundances sum to 0 become 0.
    per_phase : bool
        Return one MSE per phase instead of their mean.

    Returns
    -------
    float or numpy.ndarray of shape (k,)
        Mean over pixels (and, unless ``per_phase``, over phases) of the
        squared difference, in squared abundance units. NaN pixels of the
        estimate (masked pixels) are ignored.
    """
    t = np.asarray(true_maps, dtype=float)
    e = np.asarray(est_maps, dtype=float)
    if t.shape != e.shape:
        raise ValueError(f"map shapes differ: true {t.shape}, estimated {e.shape}")
    if renormalise:
        e = _nan_renorm(e)
    sq = (t - e) ** 2
    per = np.nanmean(sq.reshape(sq.shape[0], -1), axis=1)
    if per_phase:
        return per
    return float(per.mean())


def _nan_renorm(e: np.ndarray) -> np.ndarray:
    """Renormalise each pixel (axis 0) to sum 1, keeping pixels with a NaN as NaN."""
    nan = np.isnan(e).any(axis=0, keepdims=True)
    out = _renormalise(np.where(nan, 0.0, e))
    return np.where(nan, np.nan, out)


# ---------------------------------------------------------------------------
# matching
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseMatch:
    """Which estimated component matches which true phase.

    Attributes
    ----------
    permutation : tuple of int
        ``permutation[i]`` is the index of the estimated component matched
        to true phase ``i`` (by the criterion ``by``).
    by : str
        ``"angle"`` or ``"mse"``.
    angle_permutation : tuple of int
        The matching that minimises the total spectral angle.
    mse_permutation : tuple of int or None
        The matching that minimises the total map MSE (None without maps).
    disagree : bool
        True when both matchings are available and differ.
    angles : numpy.ndarray, shape (k_true, k_est)
        Angle (degrees) between every true and every estimated spectrum.
    mse : numpy.ndarray or None, shape (k_true, k_est)
        Map MSE between every true and every estimated map (None without maps).
    """

    permutation: tuple[int, ...]
    by: str
    angle_permutation: tuple[int, ...]
    mse_permutation: tuple[int, ...] | None
    disagree: bool
    angles: np.ndarray
    mse: np.ndarray | None


def _assign(cost: np.ndarray) -> tuple[int, ...]:
    from scipy.optimize import linear_sum_assignment

    c = np.where(np.isfinite(cost), cost, np.nanmax(cost[np.isfinite(cost)], initial=0) + 1e6)
    rows, cols = linear_sum_assignment(c)
    perm = np.empty(cost.shape[0], dtype=int)
    perm[rows] = cols
    return tuple(int(i) for i in perm)


def match_phases(
    true_spectra: ArrayLike,
    est_spectra: ArrayLike,
    true_maps: ArrayLike | None = None,
    est_maps: ArrayLike | None = None,
    by: str = "angle",
    *,
    renormalise: bool = True,
) -> PhaseMatch:
    """Pair estimated components with true phases (Hungarian assignment).

    Parameters
    ----------
    true_spectra : array_like, shape (k_true, channels)
        True phase spectra, one per row (any intensity units).
    est_spectra : array_like, shape (k_est, channels)
        Estimated spectra, one per row; ``k_est ≥ k_true`` (extra
        components stay unmatched).
    true_maps, est_maps : array_like, shape (k_true, ...) and (k_est, ...), optional
        Abundance maps, phase first. Needed for matching by MSE and for the
        disagreement flag.
    by : {"angle", "mse"}
        Criterion of the returned ``permutation``: minimal total spectral
        angle (degrees) or minimal total map MSE.
    renormalise : bool
        Rescale the estimated maps so each pixel sums to 1 before computing
        MSEs (see :func:`map_mse`).

    Returns
    -------
    PhaseMatch
        The permutation, both matchings, whether they disagree, and the
        cost matrices.
    """
    if by not in ("angle", "mse"):
        raise ValueError(f"by must be 'angle' or 'mse', not {by!r}")
    ts = np.atleast_2d(np.asarray(true_spectra, dtype=float))
    es = np.atleast_2d(np.asarray(est_spectra, dtype=float))
    if es.shape[0] < ts.shape[0]:
        raise ValueError(
            f"{es.shape[0]} estimated components cannot match {ts.shape[0]} true phases"
        )
    angles = spectral_angle(ts[:, None, :], es[None, :, :])
    angle_perm = _assign(angles)

    mse = None
    mse_perm = None
    if (true_maps is None) != (est_maps is None):
        raise ValueError("give both true_maps and est_maps, or neither")
    if true_maps is not None:
        tm = np.asarray(true_maps, dtype=float)
        em = np.asarray(est_maps, dtype=float)
        if tm.shape[0] != ts.shape[0] or em.shape[0] != es.shape[0]:
            raise ValueError("maps must have one leading entry per spectrum (phase first)")
        tm = tm.reshape(tm.shape[0], -1)
        em = em.reshape(em.shape[0], -1)
        if tm.shape[1] != em.shape[1]:
            raise ValueError(f"maps have {tm.shape[1]} and {em.shape[1]} pixels")
        if renormalise:
            em = _nan_renorm(em)
        mse = np.nanmean((tm[:, None, :] - em[None, :, :]) ** 2, axis=-1)
        mse_perm = _assign(mse)
    elif by == "mse":
        raise ValueError("matching by MSE needs true_maps and est_maps")

    perm = angle_perm if by == "angle" else mse_perm
    return PhaseMatch(
        permutation=perm,
        by=by,
        angle_permutation=angle_perm,
        mse_permutation=mse_perm,
        disagree=mse_perm is not None and mse_perm != angle_perm,
        angles=angles,
        mse=mse,
    )


# ---------------------------------------------------------------------------
# quantification
# ---------------------------------------------------------------------------


def _is_single(comp: Mapping) -> bool:
    return all(not isinstance(v, Mapping) for v in comp.values())


def _to_percent(comp: Mapping[str, float], elements: Sequence[str]) -> dict[str, float]:
    values = np.array([float(comp.get(el, 0.0)) for el in elements])
    total = values.sum()
    if total <= 0:
        return dict.fromkeys(elements, float("nan"))
    return {el: float(100.0 * v / total) for el, v in zip(elements, values, strict=True)}


def composition_errors(
    true_at: Mapping[str, Any], est_at: Mapping[str, Any]
) -> dict[str, dict[str, float]] | dict[str, float]:
    """Absolute errors in at.% per element (per phase).

    Both compositions are renormalised to 100 at.% over the **modelled
    elements** (the elements of the estimate): a true element that was not
    modelled is left out of the comparison, a modelled element absent from the
    truth counts as 0 at.%. Inputs may be atomic fractions or at.% (only
    their ratios matter).

    Parameters
    ----------
    true_at : dict
        ``{phase: {element: amount}}`` or, for one phase, ``{element: amount}``.
    est_at : dict
        Same layout, same phase keys as ``true_at`` (compare matched phases;
        see :func:`score` for the matching).

    Returns
    -------
    dict
        ``{phase: {element: |est − true| in at.%}}`` (or ``{element: error}``
        for single compositions), over the elements of each estimated phase.
    """
    if _is_single(true_at) and _is_single(est_at):
        elements = list(est_at)
        t = _to_percent(true_at, elements)
        e = _to_percent(est_at, elements)
        return {el: abs(e[el] - t[el]) for el in elements}
    missing = [p for p in true_at if p not in est_at]
    if missing:
        raise KeyError(f"phases {missing} of the truth have no estimate")
    out: dict[str, dict[str, float]] = {}
    for phase, true_comp in true_at.items():
        out[phase] = composition_errors(true_comp, est_at[phase])  # type: ignore[assignment]
    return out


# ---------------------------------------------------------------------------
# one-call scoring of a fitted, simulated signal
# ---------------------------------------------------------------------------


@dataclass
class Score:
    """The scores of a fitted signal against its simulated ground truth.

    Attributes
    ----------
    phase_names : list of str
        True phases, in the order of the truth.
    angles : numpy.ndarray, shape (k,)
        Spectral angle (degrees) of each true phase with its matched component.
    mean_angle : float
        Their mean, degrees.
    mse : numpy.ndarray, shape (k,)
        Abundance-map MSE of each true phase with its matched component.
    mean_mse : float
        Their mean.
    permutation : tuple of int
        ``permutation[i]``: the fitted component matched to true phase ``i``.
    match : PhaseMatch
        Full matching information (both permutations, cost matrices).
    disagree : bool
        True when matching by map MSE would pair phases differently.
    composition_errors : dict or None
        ``{true phase: {element: |error| in at.%}}``, or None when no
        quantification was available (see ``notes``).
    mean_composition_error : float or None
        Mean absolute at.% error over all phases and modelled elements.
    notes : list of str
        What was skipped and why.
    """

    phase_names: list[str]
    angles: np.ndarray
    mean_angle: float
    mse: np.ndarray
    mean_mse: float
    permutation: tuple[int, ...]
    match: PhaseMatch
    disagree: bool
    composition_errors: dict[str, dict[str, float]] | None = None
    mean_composition_error: float | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain-Python summary (lists and floats), e.g. for JSON."""
        return {
            "phase_names": list(self.phase_names),
            "angles_deg": [float(a) for a in self.angles],
            "mean_angle_deg": float(self.mean_angle),
            "mse": [float(m) for m in self.mse],
            "mean_mse": float(self.mean_mse),
            "permutation": list(self.permutation),
            "angle_permutation": list(self.match.angle_permutation),
            "mse_permutation": (
                None if self.match.mse_permutation is None else list(self.match.mse_permutation)
            ),
            "matchings_disagree": bool(self.disagree),
            "composition_errors_at_percent": self.composition_errors,
            "mean_composition_error_at_percent": self.mean_composition_error,
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        lines = [f"{'phase':<24} {'comp.':>5} {'angle (°)':>10} {'map MSE':>10}"]
        for i, name in enumerate(self.phase_names):
            lines.append(
                f"{name:<24} {self.permutation[i]:>5} {self.angles[i]:>10.2f} {self.mse[i]:>10.5f}"
            )
        lines.append(f"{'mean':<24} {'':>5} {self.mean_angle:>10.2f} {self.mean_mse:>10.5f}")
        if self.disagree:
            lines.append(f"matching by map MSE differs: {list(self.match.mse_permutation or ())}")
        if self.mean_composition_error is not None:
            lines.append(f"mean |at.% error|: {self.mean_composition_error:.2f}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _truth_on_axis(truth: Mapping[str, Any], signal) -> np.ndarray:
    """True spectra (k × channels) restricted to the signal's channels (it may be cropped)."""
    spectra = np.asarray(truth["spectra"], dtype=float)
    n = signal.axes_manager.signal_axes[0].size
    if spectra.shape[1] == n and "energy_axis" not in truth:
        return spectra
    ax = signal.axes_manager.signal_axes[0]
    units = str(ax.units).strip()
    factor = 1e-3 if units == "eV" else 1.0
    t_axis = truth.get("energy_axis")
    if t_axis is None:
        raise ValueError(
            f"the signal has {n} channels but the stored truth has {spectra.shape[1]} "
            "and no energy axis to align them"
        )
    t_off, t_scale = float(t_axis["offset"]), float(t_axis["scale"])
    energies = float(ax.offset) * factor + np.arange(n) * float(ax.scale) * factor
    idx = (energies - t_off) / t_scale
    ridx = np.rint(idx).astype(int)
    if (
        not np.allclose(idx, ridx, atol=1e-3)
        or ridx.min() < 0
        or ridx.max() >= spectra.shape[1]
        or not np.isclose(float(ax.scale) * factor, t_scale, rtol=1e-6)
    ):
        raise ValueError(
            "the signal's energy axis is not a crop of the simulated one: cannot compare "
            "the fitted spectra with the stored truth"
        )
    return spectra[:, ridx]


def score(
    signal,
    *,
    by: str = "angle",
    renormalise_maps: bool = True,
    quantify: bool | str = "auto",
) -> Score:
    """Score a fitted ``EDS_ESMPY`` signal against the ground truth stored with it.

    Parameters
    ----------
    signal : EDSespm
        A signal made by :mod:`esmpy_hs.datasets` (ground truth in
        ``metadata.ESMPY_truth``) after ``decomposition``: its
        ``learning_results.factors`` (channels × k, the spectra G·W) and
        ``learning_results.loadings`` (pixels × k, the maps) are compared with
        the truth. The signal's energy axis may be a crop of the simulated one;
        after ``smart_nmf`` only its fitted channels (``metadata.SmartNMF.channels``)
        enter the angles.
    by : {"angle", "mse"}
        Matching criterion (see :func:`match_phases`); the other one is
        computed too and disagreement is reported.
    renormalise_maps : bool
        Rescale the fitted maps so each pixel's abundances sum to 1 (the
        reference study's convention for fits without the H simplex; a no-op
        for maps that already sum to 1).
    quantify : bool or "auto"
        Compare ``signal.quantify_phases().atomic_percent`` with the true
        compositions (phases in component order). "auto": skip with a note
        when the signal has no ``quantify_phases``, when it fails with a
        ValueError (e.g. the fit was not ``smart_nmf``) or when the truth has
        no compositions; True: raise instead; False: skip.

    Returns
    -------
    Score
        Per-phase and mean angles (degrees) and map MSEs, the permutation and
        the at.% errors.

    Raises
    ------
    ValueError
        If the signal has no ground truth or no decomposition results.
    AttributeError
        If ``quantify=True`` and the signal has no ``quantify_phases``
        (``quantify_phases``'s own ValueError passes through likewise).
    """
    from esmpy_hs._learning_results import decomposition_arrays
    from esmpy_hs.datasets._truth import get_truth

    truth = get_truth(signal)
    factors, loadings = decomposition_arrays(signal)
    names = [str(n) for n in truth["phase_names"]]
    true_spectra = _truth_on_axis(truth, signal)
    true_maps = np.asarray(truth["maps"], dtype=float)
    k_true = true_maps.shape[0]
    est_spectra = np.asarray(factors, dtype=float).T
    loadings = np.asarray(loadings, dtype=float)
    if loadings.shape[0] != true_maps[0].size:
        raise ValueError(f"loadings have {loadings.shape[0]} pixels, the truth {true_maps[0].size}")
    est_maps = loadings.T.reshape(loadings.shape[1], *true_maps.shape[1:])

    notes: list[str] = []
    from esmpy_hs.signals._record import fitted_channels

    fitted = fitted_channels(signal)
    if fitted is not None:  # smart_nmf leaves the factors at 0 outside the fitted channels
        c0, c1 = fitted
        if (c0, c1) != (0, true_spectra.shape[1]):
            notes.append(f"spectral angles over the fitted channels {c0}–{c1 - 1} only")
        true_spectra = true_spectra[:, c0:c1]
        est_spectra = est_spectra[:, c0:c1]

    m = match_phases(
        true_spectra, est_spectra, true_maps, est_maps, by=by, renormalise=renormalise_maps
    )
    perm = list(m.permutation)
    rows = np.arange(k_true)
    angles = m.angles[rows, perm]
    mse = m.mse[rows, perm]  # type: ignore[index]
    if est_spectra.shape[0] > k_true:
        notes.append(
            f"{est_spectra.shape[0]} components for {k_true} true phases: "
            "unmatched components are ignored"
        )

    comp_err = None
    mean_comp = None
    compositions = truth.get("compositions")
    est_at = None
    if quantify:
        quant = getattr(signal, "quantify_phases", None)
        if quant is None:
            msg = (
                "the signal has no quantify_phases() method (quantification is not available "
                "in this version of esmpy_hs): composition errors not computed"
            )
            if quantify is True:
                raise AttributeError(msg)
            notes.append(msg)
        elif not compositions:
            msg = "the stored truth has no compositions: composition errors not computed"
            if quantify is True:
                raise ValueError(msg)
            notes.append(msg)
        else:
            try:
                est_at = quant().atomic_percent
            except ValueError as exc:  # e.g. the fit was not a smart_nmf one
                if quantify is True:
                    raise
                notes.append(f"quantify_phases() failed ({exc}): composition errors not computed")
        if est_at is not None:
            est_names = list(est_at)
            if len(est_names) != est_spectra.shape[0]:
                raise ValueError(
                    f"quantify_phases() gave {len(est_names)} phases for "
                    f"{est_spectra.shape[0]} components"
                )
            # quantify_phases lists the phases in component order
            paired = {name: est_at[est_names[perm[i]]] for i, name in enumerate(names)}
            comp_err = composition_errors({n: compositions[n] for n in names}, paired)  # type: ignore[assignment,index]
            vals = [v for phase in comp_err.values() for v in phase.values()]  # type: ignore[union-attr]
            mean_comp = float(np.nanmean(vals)) if vals else None

    return Score(
        phase_names=names,
        angles=np.asarray(angles, dtype=float),
        mean_angle=float(np.mean(angles)),
        mse=np.asarray(mse, dtype=float),
        mean_mse=float(np.mean(mse)),
        permutation=tuple(perm),
        match=m,
        disagree=m.disagree,
        composition_errors=comp_err,  # type: ignore[arg-type]
        mean_composition_error=mean_comp,
        notes=notes,
    )
