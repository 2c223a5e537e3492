"""Which smoothing prior on a map where every phase is present almost everywhere.

``decomposition(algorithm="smart_nmf")`` without ``smoothing`` fits with the Laplacian of the
abundance shares (``smoothing="shares"``). On a map whose start shows the dominant phase to be
a mixture itself (the test that also starts the held-out check of μ,
:func:`esmpy_hs.signals._prior_cv.auto_mu`), that prior decides more than the counts do: under
the H simplex the counts cannot see a remixing of the spectra with the inverse remixing of the
abundances, and the shares' Laplacian leans along it (docs/validation.rst, "Which way the priors
lean"). The smoothing of the model's counts (``smoothing="model"``,
:mod:`esmpy_hs.nmf._model_smoothing`) does not lean, but its fit can end in another valley.

So on such a map the fit is made both ways — each with its own held-out check of μ — and the
fit whose model the counts prefer is kept: the one with the lower Poisson deviance
2 Σ [y log(y/m) − y + m] over the fitted channels (both fits have the same number of phases,
the same λ and, where the checks agree, the same μ; the check of μ has already judged each
prior on held-out counts). Nothing is chosen by a threshold fitted to a map: the deviance
decides. ``metadata.SmartNMF_smoothing`` records the choice: ``chosen`` ("shares" or
"model"), ``deviance_per_count_shares`` and ``deviance_per_count_model`` (dimensionless),
``deviance_difference`` (model − shares, summed over the counts), ``mu_shares`` and
``mu_model`` (the μ of each fit) and ``seconds`` (the second check and fit). Passing
``smoothing`` (either value), or ``mu`` (no check of μ runs then), skips the second fit.

Measured on the validation matrix, the independent maps and the real map:
docs/validation.rst, "Both smoothings on a mixed map".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

#: metadata node of the choice
NODE = "SmartNMF_smoothing"


def forget(signal) -> None:
    """Remove the record of an earlier fit's choice (a new fit makes its own)."""
    _restore(signal, NODE, None)


def choose_smoothing(signal, first: tuple[Any, Any, dict], compact, fit_with: Callable,
                     check_mu: Callable, print_info: bool) -> tuple[Any, Any, dict]:  # fmt: skip
    """The fit of ``first`` (estimator, loadings, parameters; made with the shares' Laplacian
    and a checked μ) or the same map fitted with ``smoothing="model"``, whichever has the lower
    Poisson deviance of ``compact`` (the fitted channels' counts).

    ``fit_with(params)`` fits the map and returns (estimator, loadings); ``check_mu(params)``
    is the held-out check of μ for those parameters (a number, or None when it does not run).
    The record of the μ check that belongs to the kept fit stays in ``metadata.SmartNMF_mu``.
    An interrupted second fit is dropped (the first is complete). Returns the kept
    (estimator, loadings, parameters).
    """
    from esmpy_hs.nmf import SmartNMF
    from esmpy_hs.nmf._split import poisson_deviance
    from esmpy_hs.signals._record import NODE_MU

    t0 = time.perf_counter()
    estimator, _, params = first
    mu_node = signal.metadata.get_item(NODE_MU)
    mu_first = None if mu_node is None else mu_node.as_dictionary()
    if print_info:
        print("smart_nmf: the map is also fitted with smoothing='model' (the smoothing of the "
              "model's counts, which does not lean where no pixel is pure); the fit whose "
              "model the counts prefer is kept (pass smoothing= to skip)")  # fmt: skip
    alt = {key: v for key, v in params.items() if key != "mu"}
    alt["smoothing"] = "model"
    mu = check_mu(alt)
    if mu is not None:
        alt["mu"] = mu
    other, other_loadings = fit_with(alt)
    if other.stop_reason_ == "interrupted":
        _restore(signal, NODE_MU, mu_first)
        return first
    deviance = {
        "shares": poisson_deviance(compact, estimator.components_, estimator.H_),
        "model": poisson_deviance(compact, other.components_, other.H_),
    }
    chosen = "model" if deviance["model"] < deviance["shares"] else "shares"
    node = {
        "automatic": True,
        "chosen": chosen,
        "deviance_per_count_shares": float(deviance["shares"]),
        "deviance_per_count_model": float(deviance["model"]),
        "deviance_difference": float((deviance["model"] - deviance["shares"]) * compact.total),
        "mu_shares": float(params.get("mu", float("nan"))),
        "mu_model": float(alt.get("mu", SmartNMF().mu)),  # the estimator's default
        "seconds": float(time.perf_counter() - t0),
    }
    if chosen == "shares":
        _restore(signal, NODE_MU, mu_first)
    signal.metadata.set_item(NODE, node)
    if print_info:
        print(f"smart_nmf: {smoothing_text(node)}")
    if chosen == "shares":
        return first
    return other, other_loadings, alt


def smoothing_text(node: dict) -> str:
    """One line on a choice of :func:`choose_smoothing` (its record)."""
    diff = node["deviance_difference"]
    kept, other = (("model", "shares") if node["chosen"] == "model" else ("shares", "model"))
    return (f"smoothing={kept!r} kept: its Poisson deviance is {abs(diff):.0f} below that of "
            f"smoothing={other!r} ({node['seconds']:.0f} s for the second fit)")  # fmt: skip


def _restore(signal, name: str, node: dict | None) -> None:
    """Set the metadata node ``name`` to ``node``, or remove it when ``node`` is None."""
    if node is None:
        if signal.metadata.get_item(name) is not None:
            delattr(signal.metadata, name)
    else:
        signal.metadata.set_item(name, node)
