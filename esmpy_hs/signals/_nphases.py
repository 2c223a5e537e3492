"""``EDSespm.estimate_n_phases``: the number of phases from held-out counts.

The counts are split in two independent halves (binomial thinning, :mod:`esmpy_hs.nmf._split`);
SmartNMF, on the same physics model as ``decomposition(algorithm="smart_nmf")``
(:func:`._decomposition.build_model`, :func:`._decomposition.physics_estimator`), is fitted to
one half for k = 1 … ``max_phases`` and the other half is scored under each fit. The suggestion
is the smallest k within one paired standard error of the best among the candidate ks, those
that improve on every smaller k by at least :data:`MIN_GAIN_SHARE` of the whole improvement
(:func:`gain_candidates`). The curve and the suggestion are stored in
``metadata.SmartNMF_n_phases`` (:data:`NODE`), apart from the fit record ``metadata.SmartNMF``.
:func:`prepare` and :class:`HeldOut` (the model and the binned counts) are shared with
:mod:`._prior_cv`. docs/choosing.rst explains the method and its limits.
"""

from __future__ import annotations

import itertools
import numbers
import time
from typing import Any

import numpy as np

#: metadata node of the curve
NODE = "SmartNMF_n_phases"
#: iterations of each fit on a half (a default fit converges in a few hundred; the held-out
#: score settles well before the spectra do, see docs/choosing.rst)
DEFAULT_MAX_ITER = 60


def _check_int(name: str, value, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f"{name} must be an integer ≥ {lo}, got {value!r}")
    return int(value)


#: a line's window holds the channels where its peak (the model's G column) is above this share
#: of its maximum: ±1.6 FWHM of a Gaussian line (exp(−x²/2σ²) = 10⁻³ at x = 3.7 σ)
LINE_LEVEL = 1e-3
#: channels without a line are scored in windows of this many FWHM (the detector's width there)
CONTINUUM_FWHM = 2.0


def line_windows(model) -> np.ndarray:
    """Energy windows of the held-out score: one per group of overlapping lines, the continuum
    between them in pieces of :data:`CONTINUUM_FWHM` detector widths.

    A line's window spans the channels where its shape in the physics model (each line column of
    G) is above :data:`LINE_LEVEL` of its peak; overlapping windows merge. Counts moved within a
    window by a peak shape or energy axis that the model does not describe exactly (a non-linear
    axis, a detector width a few eV off, an energy offset) leave the window sums unchanged; the
    relative intensities of the lines — the compositions — still count in full.

    Parameters
    ----------
    model : esmpy_hs.physics.PhysicsModel

    Returns
    -------
    ndarray of int, shape (channels,)
        Window index of every fitted channel, increasing with energy.
    """
    G = np.asarray(model.G, dtype=np.float64)
    if G.ndim == 3:
        G = G.mean(axis=0)
    lines = [j for j, kind in enumerate(model.kinds) if kind != "continuum"]
    n = G.shape[0]
    mask = np.zeros(n, dtype=bool)
    for j in lines:
        col = G[:, j]
        if col.max() > 0:
            mask |= col >= LINE_LEVEL * col.max()
    E = np.asarray(model.energies, dtype=np.float64)
    step = float(np.median(np.diff(E))) if n > 1 else 1.0
    width = np.maximum(CONTINUUM_FWHM * model.detector.fwhm(E) / abs(step), 1.0)
    out = np.empty(n, dtype=np.int64)
    w = -1
    c = 0
    while c < n:
        e = c + 1
        if mask[c]:
            while e < n and mask[e]:
                e += 1
            w += 1
            out[c:e] = w
        else:
            while e < n and not mask[e]:
                e += 1
            # the run c … e − 1 without lines, in pieces of about `width` channels
            pieces = max(1, round((e - c) / float(width[(c + e - 1) // 2])))
            edges = np.linspace(c, e, pieces + 1).round().astype(int)
            for a, b in itertools.pairwise(edges):
                if b > a:
                    w += 1
                    out[a:b] = w
        c = e
    return out


class HeldOut:
    """The binned counts of a map and the fit of its held-out curves (see :func:`prepare`).

    ``X`` (pixels × fitted channels, integer counts, binned ``b`` × ``b``), ``shape`` (binned
    grid), ``model`` (the physics model of decomposition) and ``estimator(k, **params)`` (the
    SmartNMF of k phases on that model, the caller's parameters and ``params`` on top).
    """

    def __init__(self, model, X, shape, b, params, absorption_every):
        self.model, self.X, self.shape, self.b = model, X, shape, int(b)
        self.params, self.absorption_every = dict(params), int(absorption_every)

    def estimator(self, k: int, **params):
        from esmpy_hs.signals._decomposition import physics_estimator
        from esmpy_hs.signals._priors import parse_phases

        full = {**self.params, "shape_2d": self.shape, "progress": False, **params}
        return physics_estimator(self.model, parse_phases(None, k, self.model), k, full,
                                 self.absorption_every)  # fmt: skip

    def fit(self, k: int, counts: np.ndarray, previous=None, **params):
        """SmartNMF of k phases fitted to ``counts``; from ``previous`` (a fit of k − 1 phases to
        the same counts) plus one new phase (:func:`add_phase`) when given, else from the
        ``"auto"`` start."""
        if previous is not None and previous.n_components_ == k - 1 and k >= 2:
            params["init"] = add_phase(self.model, previous, counts)
        est = self.estimator(k, **params)
        est.fit(counts)
        return est

    def max_k(self, max_phases: int) -> int:
        return min(max_phases, len(self.model.labels), self.X.shape[0], self.X.shape[1])


#: share of the pixels (at least one) whose counts the k − 1 phases explain worst; their mean
#: spectrum starts the new phase of a warm start (:func:`add_phase`)
NEW_PHASE_PIXELS = 0.01
#: abundance of the new phase of a warm start in those pixels (elsewhere NEW_PHASE_FLOOR)
NEW_PHASE_ABUNDANCE = 0.5
NEW_PHASE_FLOOR = 0.02


def add_phase(model, previous, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start ``(W, H)`` of a k-phase fit: the k − 1 phases of ``previous`` and one new phase.

    The new phase is the one the previous fit misses most: the mean spectrum of the
    :data:`NEW_PHASE_PIXELS` share of pixels with the largest Poisson deviance under the
    previous model, fitted on G (non-negative least squares). It takes
    :data:`NEW_PHASE_ABUNDANCE` of those pixels and :data:`NEW_PHASE_FLOOR` elsewhere, the other
    phases keeping their proportions (the abundances still sum to 1).

    Parameters
    ----------
    model : esmpy_hs.physics.PhysicsModel
    previous : esmpy_hs.nmf.SmartNMF
        Fitted to ``counts`` with k − 1 phases (W in the units of ``W_``).
    counts : ndarray, shape (pixels, channels)

    Returns
    -------
    (W, H)
        Shapes (columns, k) and (k, pixels), units of ``W_``/``H_``.
    """
    from esmpy_hs.nmf._init import extrapolate_minor_phases, fit_W_columns

    Y = np.asarray(counts, dtype=np.float64)
    H0 = np.asarray(previous.H_, dtype=np.float64)
    M = H0.T @ previous.components_
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(Y > 0, Y * np.log(Y / np.maximum(M, 1e-300)), 0.0)
    dev = 2.0 * (t - Y + M).sum(axis=1)
    n = max(1, round(NEW_PHASE_PIXELS * Y.shape[0]))
    worst = np.argsort(dev)[::-1][:n]
    G = np.asarray(model.G, dtype=np.float64)
    w = fit_W_columns(Y[worst].mean(axis=0)[:, None], G)
    W = np.concatenate([np.asarray(previous.W_, dtype=np.float64), w], axis=1)
    h = np.full(Y.shape[0], NEW_PHASE_FLOOR)
    h[worst] = NEW_PHASE_ABUNDANCE
    H = np.concatenate([H0 * (1.0 - h)[None, :], h[None, :]], axis=0)
    # those pixels mix the new phase with the others: as the "auto" start does for its minor
    # phases, move it away from the dominant phase towards its composition bound (by the
    # previous fit's start extrapolation), its abundance the other way
    gamma = float(getattr(previous, "init_extrapolation_", 0.0))
    if gamma > 0 and W.shape[1] >= 2:
        movable = np.zeros(W.shape[1], dtype=bool)
        movable[-1] = True
        anchor = int(np.argmax(H0.sum(axis=1)))
        W, Ht, _ = extrapolate_minor_phases(W, H.T, previous.plan_.wp, anchor, gamma,
                                            movable=movable)  # fmt: skip
        H = Ht.T
    return W, H


#: a k counts as a candidate only when its held-out deviance improves on every smaller k by at
#: least this share of the whole improvement (lowest deviance against k = 1): each phase must
#: account for a practical share of what the phases explain, not only beat the split noise
#: (see docs/choosing.rst for the reasoning and the measurements)
MIN_GAIN_SHARE = 0.05
#: parameters of the fits to a half (the caller's win): no move to the composition bound at the
#: end — it moves a phase along a direction the likelihood cannot see, and its refit of the
#: abundances costs up to max_iter passes more. (The start's extrapolation stays: without it the
#: 100 iterations of a held-out fit do not always reach a particle never seen pure, measured on
#: the simulator, docs/choosing.rst.) The start's refinement on binned blocks runs 20 iterations
#: instead of 100.
HELDOUT_PARAMS = {"final_extrapolation": 0.0, "init_iter": 20}


def gain_candidates(mean: np.ndarray, share: float = MIN_GAIN_SHARE) -> np.ndarray:
    """The ks (as a mask over the curve) whose mean held-out deviance is below that of every
    smaller k by at least ``share`` of the whole improvement ``mean[0] − min(mean)``; the first
    is always one."""
    mean = np.asarray(mean, dtype=np.float64)
    total = mean[0] - mean.min()
    out = np.zeros(mean.size, dtype=bool)
    out[0] = True
    for j in range(1, mean.size):
        out[j] = total > 0 and mean[:j].min() - mean[j] >= share * total
    return out


def prepare(
    signal,
    *,
    bin: int | None = None,
    elements=None,
    stray_elements=(),
    split=None,
    continuum: bool = True,
    energy_range=None,
    detector=None,
    absorption_every: int = 10,
    vacancy_transfer: bool = True,
    calibrate: Any = "auto",
    **estimator_params,
) -> HeldOut:
    """The model of ``decomposition(algorithm="smart_nmf")`` and the binned counts of a map."""
    from esmpy_hs.nmf._split import bin_pixels, choose_bin
    from esmpy_hs.signals._calibration import calibrate_signal
    from esmpy_hs.signals._decomposition import (
        _check_estimator_params,
        _navigation_grid,
        build_model,
    )

    reserved = {"max_iter", "shape_2d", "progress", "n_components"}
    if reserved & set(estimator_params):
        raise TypeError(
            f"estimate_n_phases sets {', '.join(sorted(reserved & set(estimator_params)))} itself"
        )
    _check_estimator_params(estimator_params, _navigation_grid(signal))
    nav_dim = signal.axes_manager.navigation_dimension
    if nav_dim == 0:
        raise ValueError("estimate_n_phases needs a map (or a line) of spectra, got one spectrum")
    # the model of decomposition(algorithm="smart_nmf"): the same calibration, G and absorption
    calibration = calibrate_signal(
        signal, calibrate, elements=elements, stray_elements=stray_elements,
        energy_range=energy_range, detector=detector, vacancy_transfer=vacancy_transfer,
    )  # fmt: skip
    model, (c0, c1), _acq = build_model(
        signal, elements=elements, stray_elements=stray_elements, split=split,
        continuum=continuum, energy_range=energy_range, detector=detector,
        vacancy_transfer=vacancy_transfer, calibration=calibration,
    )  # fmt: skip
    X = np.asarray(signal.data[..., c0:c1]).reshape(-1, c1 - c0)
    shape = _navigation_grid(signal)
    b = choose_bin(shape) if bin is None else _check_int("bin", bin, 1)
    if b > 1 and shape is not None:
        X, shape = bin_pixels(X, shape, b)
    if X.size and (X.min() < 0 or not np.all(X == np.round(X))):
        raise ValueError(
            "estimate_n_phases splits the counts: the data must be non-negative integer counts"
        )
    return HeldOut(model, count_array(X), shape, b, estimator_params, absorption_every)


def count_array(X: np.ndarray) -> np.ndarray:
    """Integer counts (pixels × channels) as the splits take them: uint16, or int64 where a
    channel holds more than 65 535."""
    return X.astype(np.int64 if X.max(initial=0) > np.iinfo(np.uint16).max else np.uint16)


def estimate_n_phases(
    signal,
    max_phases: int = 6,
    *,
    n_splits: int = 3,
    max_iter: int = DEFAULT_MAX_ITER,
    random_state: Any = 0,
    plot: bool = False,
    print_info: bool = True,
    score: str = "channels",
    warm_start: bool = False,
    rule: str = "gain",
    **kwargs,
) -> int:
    """Suggest the number of phases; see :meth:`EDSespm.estimate_n_phases`."""
    from esmpy_hs.nmf._split import heldout_curve, one_se_choice

    t0 = time.perf_counter()
    max_phases = _check_int("max_phases", max_phases, 1)
    n_splits = _check_int("n_splits", n_splits, 1)
    max_iter = _check_int("max_iter", max_iter, 1)
    if rule not in ("gain", "one_se"):
        raise ValueError(f"rule must be 'gain' or 'one_se', got {rule!r}")
    if score not in ("windows", "channels"):
        raise ValueError(f"score must be 'windows' or 'channels', got {score!r}")
    ho = prepare(signal, **kwargs)
    windows = line_windows(ho.model) if score == "windows" else None
    X, b = ho.X, ho.b
    ks = list(range(1, ho.max_k(max_phases) + 1))

    last: dict = {}
    params = {**HELDOUT_PARAMS, **{k: v for k, v in kwargs.items() if k in HELDOUT_PARAMS},
              "max_iter": max_iter}  # fmt: skip

    def fit(k: int, counts: np.ndarray):
        # heldout_curve goes up in k on each half: the k − 1 fit is the last one on these counts
        if last.get("counts") is not counts:
            last.update(est=None, counts=counts)
        est = ho.fit(k, counts, last["est"] if warm_start else None, **params)
        last["est"] = est
        return est.components_, est.H_

    scores = heldout_curve(X, fit, ks, n_splits=n_splits, random_state=random_state,
                           progress=print_info, desc="estimate_n_phases",
                           windows=windows)  # fmt: skip
    mean = scores.mean(axis=0)
    candidates = gain_candidates(mean) if rule == "gain" else np.ones(len(ks), dtype=bool)
    choice = one_se_choice(np.asarray(ks), scores, candidates)
    seconds = time.perf_counter() - t0
    signal.metadata.set_item(NODE, {
        "k": int(choice["k"]),
        "best_k": int(choice["best_k"]),
        "ks": np.asarray(ks),
        "deviance": np.asarray(choice["mean"]),
        "deviance_se": np.asarray(choice["se"]),
        "deviance_se_diff": np.asarray(choice["se_diff"]),
        "explained": _explained(np.asarray(choice["mean"])),
        "scores": np.asarray(scores),
        "n_splits": n_splits,
        "bin": int(b),
        "max_iter": max_iter,
        "score": score,
        "warm_start": bool(warm_start),
        "candidates": candidates,
        "n_windows": int(windows.max() + 1) if windows is not None else ho.X.shape[1],
        "random_state": random_state if isinstance(random_state, int | None) else None,
        "rule": "smallest k with mean(d_k - d_best) <= SE(d_k - d_best) over splits" + (
            f", among the k whose deviance is below every smaller k's by ≥ {MIN_GAIN_SHARE:.0%}"
            " of d_1 - min d" if rule == "gain" else ""),
        "seconds": float(seconds),
    })  # fmt: skip
    if print_info:
        print(
            f"estimate_n_phases: {choice['k']} phases suggested (lowest held-out deviance at "
            f"k = {choice['best_k']}); {n_splits} splits, {b} × {b} binning, {seconds:.0f} s"
        )
    if plot:
        plot_n_phases(signal)
    return int(choice["k"])


def _explained(mean: np.ndarray) -> np.ndarray:
    """Share of the held-out improvement from k = 1 to the best k reached at each k."""
    gain = mean[0] - mean.min()
    return (mean[0] - mean) / gain if gain > 0 else np.zeros_like(mean)


def plot_n_phases(signal, ax=None, filename=None):
    """Draw the held-out deviance per k (mean ± 1 SE over splits), the suggestion marked.

    Reads ``metadata.SmartNMF_n_phases`` written by :func:`estimate_n_phases`; returns the
    matplotlib figure.
    """
    import matplotlib.pyplot as plt

    if not signal.metadata.has_item(NODE):
        raise ValueError("no curve stored: run s.estimate_n_phases() first")
    node = signal.metadata.get_item(NODE)
    ks = np.asarray(node.ks)
    mean = np.asarray(node.deviance)
    se = np.asarray(node.deviance_se)
    ref = mean.min()
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.5))
    else:
        fig = ax.figure
    ax.errorbar(ks, mean - ref, yerr=se, marker="o", color="k", capsize=3,
                label="held-out deviance")  # fmt: skip
    i = int(np.flatnonzero(ks == node.k)[0])
    ax.plot([ks[i]], [mean[i] - ref], "o", ms=12, mfc="none", mec="C3",
            label=f"suggested k = {node.k}")  # fmt: skip
    ax.set_xlabel("number of phases k")
    ax.set_ylabel("deviance per count − lowest")
    ax.set_xticks(ks)
    ax.set_yscale("symlog", linthresh=max(float(np.median(se)) if se.size else 0, 1e-6))
    ax.legend()
    ax.set_title(f"{node.n_splits} count splits, {node.bin} × {node.bin} binned")
    fig.tight_layout()
    if filename is not None:
        fig.savefig(filename, dpi=120)
    return fig
