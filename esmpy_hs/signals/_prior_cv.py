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
  half applies to the full map. ``decomposition`` without ``mu`` makes this choice itself when
  the start's binned blocks show such a map (:func:`auto_mu`).
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from esmpy_hs.signals._record import NODE_MU  # the node of the last μ choice

#: metadata node of the last λ choice
NODE = "SmartNMF_lambda"
#: ``decomposition(algorithm="smart_nmf")`` without ``mu`` asks the held-out counts whether the
#: sparsity prior suits the map (:func:`auto_mu`) when more than this share of the counts lies
#: in binned blocks behind the dominant cluster (:func:`esmpy_hs.nmf._init.behind_share`): 0 or
#: nearly so where a matrix is seen pure, large where every phase is present almost everywhere
#: (the measured shares are in docs/validation.rst)
MIXED_SHARE = 0.05
#: fewer binned blocks than this (a map of fewer than about 64 × 3000 counts) is too small for
#: the share and for three count splits: no check
MIN_BLOCKS = 64
#: False: the fit never makes that check (the default μ, as before)
AUTO_MU = True
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


def _prepared(signal, k: int, desc: str, kwargs: dict):
    """The model of ``decomposition(algorithm="smart_nmf")`` and the unbinned counts of a 2-D
    map (:func:`._nphases.prepare`), checked for a choice of the priors' weights."""
    from esmpy_hs.signals._nphases import prepare

    ho = prepare(signal, bin=1, **kwargs)
    if ho.shape is None or len(ho.shape) != 2:
        raise ValueError(f"{desc} needs a 2-D map: the priors act on the pixel grid")
    if k > ho.max_k(k):
        raise ValueError(f"output_dimension={k} is more than the model's columns allow")
    return ho


def _heldout_choice(
    ho,
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
) -> tuple[int, np.ndarray, dict]:
    """Fit one half of ``ho``'s counts per candidate, score the other; returns (chosen index,
    scores of shape (n_splits, n_candidates), the paired-SE summary).

    ``params_of(i, counts, pixels)`` gives the SmartNMF parameters of candidate i for a half
    holding ``counts``. The ``default`` candidate is kept unless another scores better by more
    than one paired standard error (with one split: the best).
    """
    from esmpy_hs.nmf._split import heldout_curve, one_se_choice
    from esmpy_hs.signals._nphases import _check_int

    n_splits = _check_int("n_splits", n_splits, 1)
    max_iter = _check_int("max_iter", max_iter, 1)
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
    return chosen, scores, one_se_choice(np.asarray(idx), scores)


def _curve(scores: np.ndarray, choice: dict, k: int, max_iter: int) -> dict:
    """The part of a choice's metadata record that λ and μ share: the held-out deviance per
    count of every split and candidate, its mean, the paired standard errors, the settings."""
    return {
        "deviance": np.asarray(scores.mean(axis=0)),
        "deviance_se_diff": np.asarray(choice["se_diff"]),
        "scores": np.asarray(scores),
        "n_components": k,
        "n_splits": scores.shape[0],
        "max_iter": int(max_iter),
    }


def _default_mu() -> float:
    """The estimator's default μ: the one a choice keeps unless the counts say otherwise."""
    from esmpy_hs.nmf.estimator import SmartNMF

    return float(SmartNMF().mu)


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

    ho = _prepared(signal, k, "estimate_lambda", kwargs)
    chosen, scores, choice = _heldout_choice(
        ho, k, len(factors), 0 if default is None else default, params_of,
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
        **_curve(scores, choice, k, max_iter),
        "seconds": float(time.perf_counter() - t0),
    })  # fmt: skip
    if print_info:
        print(
            f"estimate_lambda: λ = {lam:.4g} ({factors[chosen]:g} × the dose formula's "
            f"{formula:.4g}); {scores.shape[0]} splits, {time.perf_counter() - t0:.0f} s"
        )
    return float(lam)


def choose_mu(ho, k: int, values: tuple[float, ...], default_mu: float, *, n_splits: int = 3,
              max_iter: int = 400, random_state: Any = 0, print_info: bool = False,
              kwargs: dict | None = None) -> tuple[float, dict]:  # fmt: skip
    """μ among ``values`` (checked by :func:`_check_mu_values`) for the prepared map ``ho``;
    returns μ and the record stored in ``metadata.SmartNMF_mu`` (without the seconds)."""
    default = values.index(default_mu)
    chosen, scores, choice = _heldout_choice(
        ho, k, len(values), default, lambda i, counts, p: {"mu": values[i]}, n_splits=n_splits,
        max_iter=max_iter, random_state=random_state, print_info=print_info,
        desc="estimate_mu", kwargs=kwargs or {},
    )  # fmt: skip
    return values[chosen], {
        "mu": float(values[chosen]),
        "default": default_mu,
        "values": np.asarray(values),
        **_curve(scores, choice, k, max_iter),
    }


def mu_text(node: dict) -> str:
    """One line on a choice of :func:`choose_mu` (the record it returns)."""
    values = list(node["values"])
    chosen, default = values.index(node["mu"]), values.index(node["default"])
    d = np.asarray(node["scores"])[:, default] - np.asarray(node["scores"])[:, chosen]
    why = ("the default" if chosen == default else
           f"held-out deviance per count {d.mean():.3g} below that of the default "
           f"μ = {node['default']:g}")  # fmt: skip
    return f"μ = {node['mu']:g} ({why}; {node['n_splits']} count splits)"


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
    t0 = time.perf_counter()
    k = _check_k(output_dimension)
    default_mu = _default_mu()
    values = _check_mu_values((default_mu, 0.0) if values is None else values, default_mu)
    if "mu" in kwargs or "bin" in kwargs:
        raise TypeError("estimate_mu sets mu (and uses the map unbinned) itself")
    ho = _prepared(signal, k, "estimate_mu", kwargs)
    mu, node = choose_mu(ho, k, values, default_mu, n_splits=n_splits, max_iter=max_iter,
                         random_state=random_state, print_info=print_info,
                         kwargs=kwargs)  # fmt: skip
    node["seconds"] = float(time.perf_counter() - t0)
    signal.metadata.set_item(NODE_MU, node)
    if print_info:
        print(f"estimate_mu: {mu_text(node)}, {node['seconds']:.0f} s")
    return float(mu)


def auto_mu(signal, model, k: int, channels: tuple[int, int], grid, params: dict,
            absorption_every: int, print_info: bool, compact) -> float | None:  # fmt: skip
    """μ for ``decomposition(algorithm="smart_nmf")`` when the caller gave none: the default
    and 0 compared on held-out counts (:func:`choose_mu`) when the "auto" start's blocks show
    the dominant cluster to be mixed (more than :data:`MIXED_SHARE` of the counts behind it),
    else None (the default μ, no check). ``compact``: the fitted channels' counts
    (:class:`esmpy_hs.nmf._data.CompactCounts`).

    Only where the spectra are fitted at full resolution (the held-out choice does not help
    the low-dose blocks mode, docs/validation.rst), for a 2-D map of integer counts of at
    least :data:`MIN_BLOCKS` blocks, k ≥ 2, the ``"auto"`` start, the H simplex and no known
    phases. The choice and the share are stored in ``metadata.SmartNMF_mu``; such a record of
    an earlier fit is removed (one left by :func:`estimate_mu` stays).
    """
    from esmpy_hs.nmf._init import dominant_mixed_share
    from esmpy_hs.nmf._plan import LOW_DOSE_COUNTS
    from esmpy_hs.signals._nphases import HeldOut, count_array

    node = signal.metadata.get_item(NODE_MU)
    if node is not None and node.get_item("automatic", False):
        delattr(signal.metadata, NODE_MU)  # the check of an earlier fit: not this one's
    if not AUTO_MU or "mu" in params or k < 2 or grid is None or len(grid) != 2:
        return None
    if params.get("init", "auto") != "auto" or params.get("simplex", "H") != "H" \
            or "fixed_W" in params or "fixed_H" in params:  # fmt: skip
        return None
    stored = compact.dense if compact.dense is not None else compact.counts
    if stored.dtype.kind == "f" and not np.array_equal(stored, np.round(stored)):
        return None  # not counts: they cannot be split
    mode = params.get("spectra_from", "auto")
    if mode == "blocks" or (mode == "auto" and compact.total / compact.n_pixels < LOW_DOSE_COUNTS):
        return None
    t0 = time.perf_counter()
    G = np.asarray(model.G, dtype=np.float64)
    share, blocks = dominant_mixed_share(compact, G, k, tuple(grid))
    if blocks < MIN_BLOCKS or not share > MIXED_SHARE:
        return None
    default_mu = _default_mu()
    c0, c1 = channels
    counts = count_array(np.asarray(signal.data).reshape(-1, signal.data.shape[-1])[:, c0:c1])
    # the held-out fits take the caller's model settings, not its callback or progress bar
    own = {n: v for n, v in params.items() if n not in ("callback", "callback_every", "progress")}
    ho = HeldOut(model, counts, tuple(grid), 1, own, absorption_every)
    if print_info:
        print(f"smart_nmf: {100 * share:.0f} % of the counts lie in blocks with less of a phase "
              "than the map's dominant cluster: every phase may be present almost everywhere; "
              "the sparsity prior is checked on held-out counts (pass mu= to skip)")  # fmt: skip
    mu, node = choose_mu(ho, k, (default_mu, 0.0), default_mu, print_info=print_info)
    node.update(mixed_share=share, seconds=float(time.perf_counter() - t0), automatic=True)
    signal.metadata.set_item(NODE_MU, node)
    if print_info:
        print(f"smart_nmf: sparsity prior {mu_text(node)}, {node['seconds']:.0f} s")
    return float(mu)
