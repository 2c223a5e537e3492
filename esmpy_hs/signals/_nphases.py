"""``EDSespm.estimate_n_phases``: the number of phases from held-out counts.

The counts are split in two independent halves (binomial thinning, :mod:`esmpy_hs.nmf._split`);
SmartNMF, on the same physics model as ``decomposition(algorithm="smart_nmf")``
(:func:`._decomposition.build_model`, :func:`._decomposition.physics_estimator`), is fitted to
one half for k = 1 … ``max_phases`` and the other half is scored under each fit. The curve and
the suggestion are stored in ``metadata.SmartNMF_n_phases`` (:data:`NODE`), apart from the fit
record ``metadata.SmartNMF``. docs/choosing.rst explains the method and its limits.
"""

from __future__ import annotations

import numbers
import time
from typing import Any

import numpy as np

#: metadata node of the curve
NODE = "SmartNMF_n_phases"
#: iterations of each fit on a half (a default fit converges in a few hundred; the held-out
#: score settles well before the spectra do, see docs/choosing.rst)
DEFAULT_MAX_ITER = 100


def _check_int(name: str, value, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f"{name} must be an integer ≥ {lo}, got {value!r}")
    return int(value)


def estimate_n_phases(
    signal,
    max_phases: int = 6,
    *,
    n_splits: int = 3,
    bin: int | None = None,
    max_iter: int = DEFAULT_MAX_ITER,
    random_state: Any = 0,
    plot: bool = False,
    print_info: bool = True,
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
) -> int:
    """Suggest the number of phases; see :meth:`EDSespm.estimate_n_phases`."""
    from esmpy_hs.nmf._split import bin_pixels, choose_bin, heldout_curve, one_se_choice
    from esmpy_hs.signals._calibration import calibrate_signal
    from esmpy_hs.signals._decomposition import (
        _check_estimator_params,
        _navigation_grid,
        build_model,
        physics_estimator,
    )
    from esmpy_hs.signals._priors import parse_phases

    t0 = time.perf_counter()
    max_phases = _check_int("max_phases", max_phases, 1)
    n_splits = _check_int("n_splits", n_splits, 1)
    max_iter = _check_int("max_iter", max_iter, 1)
    reserved = {"max_iter", "shape_2d", "progress", "n_components"}
    if reserved & set(estimator_params):
        raise TypeError(
            f"estimate_n_phases sets {', '.join(sorted(reserved & set(estimator_params)))} itself"
        )
    _check_estimator_params(estimator_params)
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
    nav_dim = signal.axes_manager.navigation_dimension
    data = signal.data
    if nav_dim == 0:
        raise ValueError("estimate_n_phases needs a map (or a line) of spectra, got one spectrum")
    X = np.asarray(data[..., c0:c1]).reshape(-1, c1 - c0)
    shape = _navigation_grid(signal)
    b = choose_bin(shape) if bin is None else _check_int("bin", bin, 1)
    if b > 1 and shape is not None:
        X, shape = bin_pixels(X, shape, b)
    if X.size and (X.min() < 0 or not np.all(X == np.round(X))):
        raise ValueError(
            "estimate_n_phases splits the counts: the data must be non-negative integer counts"
        )
    X = X.astype(np.int64 if X.max(initial=0) > np.iinfo(np.uint16).max else np.uint16)
    ks = list(range(1, min(max_phases, len(model.labels), X.shape[0], X.shape[1]) + 1))

    def fit(k: int, counts: np.ndarray):
        params = {**estimator_params, "shape_2d": shape, "progress": False, "max_iter": max_iter}
        est = physics_estimator(model, parse_phases(None, k, model), k, params,
                                absorption_every)  # fmt: skip
        est.fit(counts)
        return est.components_, est.H_

    scores = heldout_curve(X, fit, ks, n_splits=n_splits, random_state=random_state,
                           progress=print_info, desc="estimate_n_phases")  # fmt: skip
    choice = one_se_choice(np.asarray(ks), scores)
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
        "random_state": random_state if isinstance(random_state, int | None) else None,
        "rule": "smallest k with mean(d_k - d_best) <= SE(d_k - d_best) over splits",
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
