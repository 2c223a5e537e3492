"""``EDSespm.estimate_lambda`` and ``estimate_mu``: the priors' weights from held-out counts.

The counts are split in two independent halves (binomial thinning, as for
:func:`._nphases.estimate_n_phases`); SmartNMF of k phases, on the model of
``decomposition(algorithm="smart_nmf")``, is fitted to one half for each candidate weight, and
the other half is scored (Poisson deviance per count). The default weight wins unless another
candidate is better by more than one paired standard error over the splits
(:func:`_heldout_choice`). The maps are not binned: λ acts on the pixel grid, and μ on each
pixel's abundances.

- λ (``lambda_L``): candidates are factors f on the dose formula
  (:func:`esmpy_hs.nmf._plan.default_lambda` at the half's scale). The formula keeps the weight
  of the Laplacian against the counts the same at every dose (λ·scale is constant), so the
  factor chosen on a half applies to the full map: λ = f × default_lambda(full map's scale).
- μ (``mu``, the log-sparsity prior): candidates are values of μ, by default the estimator's
  default and 0. The prior keeps a phase that is absent from part of the map at zero there; a
  map where every phase is present almost everywhere (smooth mixtures) is fitted worse with it,
  and the held-out counts show it (docs/validation.rst, "Is the sparsity prior right for this
  map?"). μ weighs a term per pixel against counts in the data's scale, so a value chosen on a
  half applies to the full map.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable
from typing import Any

import numpy as np

#: metadata node of the last λ choice
NODE = "SmartNMF_lambda"
#: metadata node of the last μ choice
NODE_MU = "SmartNMF_mu"
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


def _check_mu_values(values, default: float) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"values must be a sequence of numbers ≥ 0, got {values!r}") from None
    if not out or any(not (np.isfinite(v) and v >= 0) for v in out) or len(set(out)) != len(out):
        raise ValueError(f"values must be distinct finite numbers ≥ 0, got {values!r}")
    if default not in out:
        raise ValueError(f"values must hold the default μ = {default:g} (the one kept unless "
                         f"another is clearly better), got {values!r}")  # fmt: skip
    return tuple(sorted(out, reverse=True))


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"output_dimension must be an integer ≥ 1, got {k!r}")
    return int(k)


def _heldout_choice(
    signal,
    k: int,
    n_candidates: int,
    default: int,
    params_of: Callable[[int, np.ndarray, int], dict],
    *,
    n_splits: int,
    max_iter: int,
    random_state: Any,
    print_info: bool,
    desc: str,
    kwargs: dict,
) -> tuple[int, np.ndarray, dict, Any]:
    """Fit one half per candidate, score the other; returns (chosen index, scores of shape
    (n_splits, n_candidates), the paired-SE summary, the prepared map).

    ``params_of(i, counts, pixels)`` gives the SmartNMF parameters of candidate i for a half
    holding ``counts``. The ``default`` candidate is kept unless another scores better by more
    than one paired standard error (with one split: the best).
    """
    from esmpy_hs.nmf._split import heldout_curve, one_se_choice
    from esmpy_hs.signals._nphases import _check_int, prepare

    n_splits = _check_int("n_splits", n_splits, 1)
    max_iter = _check_int("max_iter", max_iter, 1)
    ho = prepare(signal, bin=1, **kwargs)
    if ho.shape is None or len(ho.shape) != 2:
        raise ValueError(f"{desc} needs a 2-D map: the priors act on the pixel grid")
    if k > ho.max_k(k):
        raise ValueError(f"output_dimension={k} is more than the model's columns allow")
    p = ho.X.shape[0]
    fixed = {**HELDOUT_PARAMS, **{n: v for n, v in kwargs.items() if n in HELDOUT_PARAMS},
             "max_iter": max_iter}  # fmt: skip

    def fit(i: int, counts: np.ndarray):
        est = ho.fit(k, counts, None, **fixed, **params_of(i, counts, p))
        return est.components_, est.H_

    idx = list(range(n_candidates))
    scores = heldout_curve(ho.X, fit, idx, n_splits=n_splits, random_state=random_state,
                           progress=print_info, desc=desc)  # fmt: skip
    best = int(np.argmin(scores.mean(axis=0)))
    chosen = best
    if n_splits > 1:
        d = scores[:, default] - scores[:, best]
        se = d.std(ddof=1) / np.sqrt(n_splits)
        chosen = default if d.mean() <= se else best
    return chosen, scores, one_se_choice(np.asarray(idx), scores), ho


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

    t0 = time.perf_counter()
    k = _check_k(output_dimension)
    factors = _check_factors(factors)
    if "lambda_L" in kwargs or "bin" in kwargs:
        raise TypeError("estimate_lambda sets lambda_L (and uses the map unbinned) itself")
    default = factors.index(1.0) if 1.0 in factors else None

    def params_of(i: int, counts: np.ndarray, p: int) -> dict:
        return {"lambda_L": factors[i] * default_lambda(float(counts.sum()) / (p * k))}

    chosen, scores, choice, ho = _heldout_choice(
        signal, k, len(factors), 0 if default is None else default, params_of,
        n_splits=n_splits, max_iter=max_iter, random_state=random_state,
        print_info=print_info, desc="estimate_lambda", kwargs=kwargs,
    )  # fmt: skip
    if default is None:  # no formula among the candidates: the best
        chosen = int(np.argmin(scores.mean(axis=0)))
    formula = default_lambda(float(ho.X.sum()) / (ho.X.shape[0] * k))
    lam = factors[chosen] * formula
    signal.metadata.set_item(NODE, {
        "lambda_L": float(lam),
        "factor": float(factors[chosen]),
        "formula": float(formula),
        "factors": np.asarray(factors),
        "deviance": np.asarray(scores.mean(axis=0)),
        "deviance_se_diff": np.asarray(choice["se_diff"]),
        "scores": np.asarray(scores),
        "n_components": k,
        "n_splits": scores.shape[0],
        "max_iter": int(max_iter),
        "seconds": float(time.perf_counter() - t0),
    })  # fmt: skip
    if print_info:
        print(
            f"estimate_lambda: λ = {lam:.4g} ({factors[chosen]:g} × the dose formula's "
            f"{formula:.4g}); {scores.shape[0]} splits, {time.perf_counter() - t0:.0f} s"
        )
    return float(lam)


def estimate_mu(
    signal,
    output_dimension: int,
    *,
    values=None,
    n_splits: int = 3,
    max_iter: int = 400,
    random_state: Any = 0,
    print_info: bool = True,
    **kwargs,
) -> float:
    """Choose μ by held-out counts; see :meth:`EDSespm.estimate_mu`."""
    from esmpy_hs.nmf.estimator import SmartNMF

    t0 = time.perf_counter()
    k = _check_k(output_dimension)
    default_mu = float(SmartNMF().mu)
    values = _check_mu_values((default_mu, 0.0) if values is None else values, default_mu)
    if "mu" in kwargs or "bin" in kwargs:
        raise TypeError("estimate_mu sets mu (and uses the map unbinned) itself")

    def params_of(i: int, counts: np.ndarray, p: int) -> dict:
        return {"mu": values[i]}

    default = values.index(default_mu)
    chosen, scores, choice, _ = _heldout_choice(
        signal, k, len(values), default, params_of, n_splits=n_splits, max_iter=max_iter,
        random_state=random_state, print_info=print_info, desc="estimate_mu", kwargs=kwargs,
    )  # fmt: skip
    mu = values[chosen]
    signal.metadata.set_item(NODE_MU, {
        "mu": float(mu),
        "default": default_mu,
        "values": np.asarray(values),
        "deviance": np.asarray(scores.mean(axis=0)),
        "deviance_se_diff": np.asarray(choice["se_diff"]),
        "scores": np.asarray(scores),
        "n_components": k,
        "n_splits": scores.shape[0],
        "max_iter": int(max_iter),
        "seconds": float(time.perf_counter() - t0),
    })  # fmt: skip
    if print_info:
        d = scores[:, default] - scores[:, chosen]
        print(
            f"estimate_mu: μ = {mu:g}"
            + (" (the default)" if chosen == default else
               f" (held-out deviance per count {d.mean():.3g} below that of the default "
               f"μ = {default_mu:g})")
            + f"; {scores.shape[0]} splits, {time.perf_counter() - t0:.0f} s"
        )  # fmt: skip
    return float(mu)
