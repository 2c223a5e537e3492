"""``quantify_phases(uncertainty=...)``: counting ⊕ spread of refits over count splits ⊕ systematic.

Modes: ``"counting"`` (the Poisson floor, :func:`esmpy_hs.signals._decomposition.quantify`),
``"splits"`` (counting ⊕ splits), ``"systematic"`` (counting ⊕ the stated accuracy of the
physics model, :mod:`esmpy_hs.physics.systematics`; no refits of the map) and ``"total"``
(counting ⊕ splits ⊕ systematic). The parts are kept in the result (``error_parts``) and in
``metadata.SmartNMF_uncertainty``.

The split spread:

The counting error of :meth:`EDSespm.quantify_phases` is the Poisson floor of the counts given
to each element; it ignores how much the *fit* moves with the noise (the spectra and maps are
fitted together, the priors pull, the start differs). Count splitting measures that directly:
each count goes to one of two halves A and B with probability ½, so A and B are independent maps
of the same expected counts at half the dose (:func:`esmpy_hs.nmf._split.split_counts`). The
fit is repeated on A and on B, with the options of the stored fit; for a composition c,
Var(c_A − c_B) = 2 σ²_half and a half-dose fit's σ is √2 × the full-dose one, so
σ²_full ≈ mean over splits of (c_A − c_B)² / 4. Phases are matched to the stored fit's by
composition.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

#: metadata node of the last split uncertainty
NODE = "SmartNMF_uncertainty"


def _refit_params(parameters: dict) -> dict:
    from esmpy_hs.nmf._plan import PARAMETERS

    if parameters.get("fixed_W") is not None or parameters.get("simplex") == "W":
        raise ValueError(
            "uncertainty='splits' refits the map without phase priors; it is not available "
            "for a fit with phases={...} priors"
        )
    skip = {"G", "n_components", "simplex_rows", "callback", "fixed_H", "progress"}
    out = {k: v for k, v in parameters.items() if k in PARAMETERS and k not in skip}
    if not isinstance(out.get("init", "auto"), str):
        out.pop("init")
    if out.get("shape_2d") is not None:
        out["shape_2d"] = tuple(out["shape_2d"])
    out["progress"] = False
    return out


def _match(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Column order of ``other`` (elements × k) that best matches ``reference`` (L1 distance)."""
    from scipy.optimize import linear_sum_assignment

    cost = np.nan_to_num(np.abs(reference[:, :, None] - other[:, None, :]), nan=1.0).sum(axis=0)
    _, cols = linear_sum_assignment(cost)
    return cols


MODES = ("counting", "splits", "systematic", "total")

#: how each mode's errors are described in the tables
_DESCRIBE = {
    "splits": "counting ⊕ spread of refits over {n} count split(s)",
    "systematic": "counting ⊕ systematic (atomic data, detector efficiency, absorption, "
    "calibration)",
    "total": "counting ⊕ spread of refits over {n} count split(s) ⊕ systematic (atomic data, "
    "detector efficiency, absorption, calibration)",
}


def _split_spread(signal, rec, model, q, family, n_splits, random_state, absorption_every):
    """(atomic σ, weight σ) of the refits over ``n_splits`` count splits, at the full dose."""
    from esmpy_hs.nmf._split import split_counts
    from esmpy_hs.signals._decomposition import physics_estimator
    from esmpy_hs.signals._priors import parse_phases

    params = _refit_params(rec.parameters)
    if params.get("spectra_from", "auto") == "auto" and rec.spectra_from in ("pixels", "blocks"):
        params["spectra_from"] = rec.spectra_from  # the same estimator at half the dose
    k = rec.k
    c0, c1 = rec.channels
    X = np.asarray(signal.data[..., c0:c1]).reshape(-1, c1 - c0)
    if X.size and (X.min() < 0 or not np.all(X == np.round(X))):
        raise ValueError("uncertainty='splits' splits the counts: the data must be integer counts")
    X = X.astype(np.int64)
    rng = np.random.default_rng(random_state)

    def fit(counts):
        est = physics_estimator(model, parse_phases(None, k, model), k, dict(params),
                                absorption_every)  # fmt: skip
        est.fit(counts)
        part = dataclasses.replace(rec, W=est.W_, H_sums=est.H_.sum(axis=1))
        qq = part.quantification(family, model)
        order = _match(q.atomic_fractions, qq.atomic_fractions)
        return qq.atomic_fractions[:, order], qq.weight_fractions[:, order]

    d_at, d_wt = [], []
    for _ in range(n_splits):
        A, B = split_counts(X, rng)
        a_at, a_wt = fit(A)
        b_at, b_wt = fit(B)
        d_at.append(a_at - b_at)
        d_wt.append(a_wt - b_wt)
    return (np.sqrt(np.mean(np.square(d_at), axis=0) / 4.0),
            np.sqrt(np.mean(np.square(d_wt), axis=0) / 4.0))  # fmt: skip


def _key(part: str) -> str:
    return part.replace(" ", "_")


def quantify_with_uncertainty(signal, family: str | None = None, *, uncertainty: str = "splits",
                              n_splits: int = 2, random_state: Any = 0,
                              budget=None, absorption_every: int = 10):  # fmt: skip
    """The stored fit's compositions with the errors of ``uncertainty`` (see the module).

    Parameters
    ----------
    signal
        A signal with a current smart_nmf fit.
    family
        Split elements' family (default: the model's).
    uncertainty : {"splits", "systematic", "total"}
        What is added in quadrature to the counting error.
    n_splits, random_state
        Count splits (``"splits"``/``"total"``) and their seed.
    budget : esmpy_hs.physics.systematics.SystematicBudget, optional
        Relative 1σ accuracies of the physics (default: the cited default budget).

    Returns
    -------
    esmpy_hs.physics.Quantification
        ``atomic_errors``/``weight_errors`` (fractions) are the parts added in quadrature; the
        parts are in ``error_parts`` (``"counting"``, ``"splits"``, ``"systematic"`` and the
        systematic sub-parts ``"atomic data"``, ``"detector efficiency"``, ``"absorption"``,
        ``"calibration"``), and for the splits and counting parts also in
        ``counting_atomic_errors``/``split_atomic_errors`` (and the ``weight`` twins);
        ``systematic_atomic_errors``/``systematic_weight_errors`` for the systematic part.
    """
    import json

    from esmpy_hs.physics.systematics import DEFAULT_BUDGET, PART_NAMES, SystematicBudget
    from esmpy_hs.signals._decomposition import quantify

    if uncertainty not in MODES[1:]:
        raise ValueError(f"uncertainty must be one of {MODES}, got {uncertainty!r}")
    if isinstance(n_splits, bool) or not isinstance(n_splits, int) or n_splits < 1:
        raise ValueError(f"n_splits must be an integer ≥ 1, got {n_splits!r}")
    budget = DEFAULT_BUDGET if budget is None else budget
    if not isinstance(budget, SystematicBudget):
        raise TypeError(
            f"budget must be an esmpy_hs.physics.systematics.SystematicBudget, got {budget!r}"
        )
    q = quantify(signal, family)
    rec = read_record_checked(signal)
    model = rec.physics_model()
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "counting": (q.atomic_errors, q.weight_errors)
    }
    if uncertainty in ("splits", "total"):
        _refit_params(rec.parameters)  # refuses fits with phase priors before any work
        parts["splits"] = _split_spread(signal, rec, model, q, family, n_splits, random_state,
                                        absorption_every)  # fmt: skip
    if uncertainty in ("systematic", "total"):
        from esmpy_hs.physics.systematics import systematic_errors

        sys_parts = systematic_errors(model, rec.W, q.atomic_fractions, q.weight_fractions,
                                      budget, family=family,
                                      calibration=rec.calibration)  # fmt: skip
        parts["systematic"] = sys_parts["total"]
        for p in PART_NAMES:
            parts[p] = sys_parts[p]
    top = [p for p in ("counting", "splits", "systematic") if p in parts]
    at_err = np.sqrt(sum(parts[p][0] ** 2 for p in top))
    wt_err = np.sqrt(sum(parts[p][1] ** 2 for p in top))
    out = dataclasses.replace(
        q,
        atomic_errors=at_err,
        weight_errors=wt_err,
        notes=list(q.notes),
        errors=_DESCRIBE[uncertainty].format(n=n_splits),
        error_parts=parts,
    )
    out.counting_atomic_errors, out.counting_weight_errors = parts["counting"]
    node: dict[str, Any] = {
        "uncertainty": uncertainty,
        "elements": list(q.elements),
        "phase_names": list(q.phase_names),
    }
    if "splits" in parts:
        out.split_atomic_errors, out.split_weight_errors = parts["splits"]
        node.update(split_atomic_errors=parts["splits"][0], split_weight_errors=parts["splits"][1],
                    n_splits=int(n_splits))  # fmt: skip
    if "systematic" in parts:
        out.systematic_atomic_errors, out.systematic_weight_errors = parts["systematic"]
        node["systematic_atomic_errors"] = parts["systematic"][0]
        node["systematic_weight_errors"] = parts["systematic"][1]
        node["systematic_parts_atomic"] = {_key(p): parts[p][0] for p in PART_NAMES}
        node["budget"] = json.dumps(budget.to_dict())
    signal.metadata.set_item(NODE, node)
    return out


def read_record_checked(signal):
    """The current fit record (refuses a stale one)."""
    from esmpy_hs.signals._record import check_current

    return check_current(signal)


def split_uncertainty(signal, family: str | None = None, *, n_splits: int = 2,
                      random_state: Any = 0, absorption_every: int = 10):  # fmt: skip
    """The stored fit's compositions with the split spread added to the counting error
    (``quantify_with_uncertainty(..., uncertainty="splits")``)."""
    return quantify_with_uncertainty(signal, family, uncertainty="splits", n_splits=n_splits,
                                     random_state=random_state,
                                     absorption_every=absorption_every)  # fmt: skip
