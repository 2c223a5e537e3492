"""``EDSespm.estimate_lambda``: the Laplacian weight λ from held-out counts.

The counts are split in two independent halves (binomial thinning, as for
:func:`._nphases.estimate_n_phases`); SmartNMF of k phases, on the model of
``decomposition(algorithm="smart_nmf")``, is fitted to one half with λ = f × the dose formula
(:func:`esmpy_hs.nmf._plan.default_lambda` at the half's scale) for each factor f, and the other
half is scored (Poisson deviance per count). The formula keeps the weight of the Laplacian
against the counts the same at every dose (λ·scale is constant), so the factor chosen on a half
applies to the full map: λ = f × default_lambda(full map's scale). The formula's own factor, 1,
wins unless another factor is better by more than one paired standard error over the splits.
The maps are not binned: λ acts on the pixel grid.
"""

from __future__ import annotations

import numbers
import time
from typing import Any

import numpy as np

#: metadata node of the last choice
NODE = "SmartNMF_lambda"
#: factors on the dose formula tried by default
DEFAULT_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
#: parameters of the fits to a half (the caller's win): no final move to the composition bound
#: (see :data:`._nphases.HELDOUT_PARAMS`)
HELDOUT_PARAMS = {"final_extrapolation": 0.0}


def _check_factors(factors) -> tuple[float, ...]:
    try:
        out = tuple(float(f) for f in factors)
    except (TypeError, ValueError):
        raise ValueError(f"factors must be a sequence of numbers > 0, got {factors!r}") from None
    if not out or any(not (np.isfinite(f) and f > 0) for f in out) or len(set(out)) != len(out):
        raise ValueError(f"factors must be distinct finite numbers > 0, got {factors!r}")
    return tuple(sorted(out))


def estimate_lambda(
    signal,
    output_dimension: int,
    *,
    factors=DEFAULT_FACTORS,
    n_splits: int = 2,
    max_iter: int = 100,
    random_state: Any = 0,
    print_info: bool = True,
    **kwargs,
) -> float:
    """Choose λ by held-out counts; see :meth:`EDSespm.estimate_lambda`."""
    from esmpy_hs.nmf._plan import default_lambda
    from esmpy_hs.nmf._split import heldout_curve, one_se_choice
    from esmpy_hs.signals._nphases import _check_int, prepare

    t0 = time.perf_counter()
    k = output_dimension
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"output_dimension must be an integer ≥ 1, got {k!r}")
    k = int(k)
    factors = _check_factors(factors)
    n_splits = _check_int("n_splits", n_splits, 1)
    max_iter = _check_int("max_iter", max_iter, 1)
    if "lambda_L" in kwargs or "bin" in kwargs:
        raise TypeError("estimate_lambda sets lambda_L (and uses the map unbinned) itself")
    ho = prepare(signal, bin=1, **kwargs)
    if ho.shape is None or len(ho.shape) != 2:
        raise ValueError("estimate_lambda needs a 2-D map: λ weighs the Laplacian of the grid")
    if k > ho.max_k(k):
        raise ValueError(f"output_dimension={k} is more than the model's columns allow")
    p = ho.X.shape[0]
    params = {**HELDOUT_PARAMS, **{n: v for n, v in kwargs.items() if n in HELDOUT_PARAMS},
              "max_iter": max_iter}  # fmt: skip

    def fit(i: int, counts: np.ndarray):
        lam = factors[i] * default_lambda(float(counts.sum()) / (p * k))
        est = ho.fit(k, counts, None, lambda_L=lam, **params)
        return est.components_, est.H_

    idx = list(range(len(factors)))
    scores = heldout_curve(ho.X, fit, idx, n_splits=n_splits, random_state=random_state,
                           progress=print_info, desc="estimate_lambda")  # fmt: skip
    one = factors.index(1.0) if 1.0 in factors else None
    mean = scores.mean(axis=0)
    best = int(np.argmin(mean))
    if one is not None and n_splits > 1:
        d = scores[:, one] - scores[:, best]
        se = d.std(ddof=1) / np.sqrt(n_splits)
        chosen = one if d.mean() <= se else best
    else:
        chosen = best
    formula = default_lambda(float(ho.X.sum()) / (p * k))
    lam = factors[chosen] * formula
    choice = one_se_choice(np.asarray(idx), scores)  # for the standard errors
    signal.metadata.set_item(NODE, {
        "lambda_L": float(lam),
        "factor": float(factors[chosen]),
        "formula": float(formula),
        "factors": np.asarray(factors),
        "deviance": np.asarray(mean),
        "deviance_se_diff": np.asarray(choice["se_diff"]),
        "scores": np.asarray(scores),
        "n_components": k,
        "n_splits": n_splits,
        "max_iter": max_iter,
        "seconds": float(time.perf_counter() - t0),
    })  # fmt: skip
    if print_info:
        print(
            f"estimate_lambda: λ = {lam:.4g} ({factors[chosen]:g} × the dose formula's "
            f"{formula:.4g}); {n_splits} splits, {time.perf_counter() - t0:.0f} s"
        )
    return float(lam)
